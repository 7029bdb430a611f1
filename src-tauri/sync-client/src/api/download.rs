//! Downloads: whole or resumed, several small contents in one response, and edited files as
//! their changed chunks (delta).

use super::check::ContentCheck;
use super::*;

impl Api {
    /// Streams the file's current content into `dest` (fsynced) and returns its revision and
    /// verified id (checked as [`ContentCheck`] does). The content comes in windows of at most [`DOWNLOAD_WINDOW`] bytes
    /// (`Range` requests of one revision), so no response passes API Gateway's 10 MB limit
    /// (0040). When `dest` already holds the start of the content `resume_sha` (a download
    /// interrupted earlier), only the rest is fetched — if the file still has that content
    /// (one metadata request tells); else it starts over. Otherwise a chunked content is put
    /// together from the chunks the `seeds` (local files, such as the old version of this one)
    /// already hold and ranges of the content for the rest ([`Api::download_delta`]).
    pub(crate) async fn download(
        &self,
        file_id: &str,
        dest: &Path,
        resume_sha: Option<&str>,
        seeds: &[PathBuf],
        progress: &Transfer,
    ) -> Result<(i64, String), SyncError> {
        let io = |e| SyncError::Io(format!("writing {}", dest.display()), e);
        let mut have = match (resume_sha, tokio::fs::metadata(dest).await) {
            (Some(_), Ok(m)) => m.len(),
            _ => 0,
        };
        if have == 0
            && !seeds.is_empty()
            && let Some(done) = self.download_delta(file_id, dest, seeds, progress).await?
        {
            return Ok(done);
        }
        // The revision every window is read from: learnt from the first answer, or — when
        // resuming — from the file's metadata, if it still has the content begun.
        let mut pinned: Option<(i64, String)> = None;
        // The content's size, once known.
        let mut total: Option<u64> = None;
        // The check of the bytes, once the content is known.
        let mut check: Option<ContentCheck> = None;
        if have > 0 {
            let meta: FileMeta = self.fetch::<endpoint::GetFile>(&[file_id]).await?;
            let size = meta.size.max(0) as u64;
            if resume_sha.is_some_and(|s| meta.sha256 == *s) && !meta.deleted && have <= size {
                tracing::info!(file_id, resumed_at = have, "resuming a download");
                pinned = Some((meta.rev.into(), meta.sha256.to_string()));
                check = Some(
                    self.check_of(file_id, meta.rev.into(), &meta.sha256)
                        .await?,
                );
                // A partial file that is already whole needs no window, only its check below.
                total = Some(size);
            } else {
                have = 0;
            }
        }
        let mut out = if let Some(check) = check.as_mut().filter(|_| have > 0) {
            // Check what is already there, then append.
            let mut existing = tokio::fs::File::open(dest).await.map_err(io)?;
            let mut buf = vec![0; 256 * 1024];
            loop {
                let n = existing.read(&mut buf).await.map_err(io)?;
                if n == 0 {
                    break;
                }
                check.update(&buf[..n]);
            }
            tokio::fs::OpenOptions::new()
                .append(true)
                .open(dest)
                .await
                .map_err(io)?
        } else {
            tokio::fs::File::create(dest).await.map_err(io)?
        };
        progress.set_done(have);
        while total.is_none_or(|t| have < t) {
            let window = self.window(file_id, pinned.as_ref(), have).await?;
            let Window {
                resp,
                rev,
                sha256,
                start,
                total: size,
            } = window;
            if start != have {
                // The whole content came back (no range: an empty file, or an old server).
                out.set_len(0).await.map_err(io)?;
                check = None;
                progress.set_done(0);
            }
            progress.set_total(size);
            total = Some(size);
            let (rev, sha256) = pinned.get_or_insert((rev, sha256)).clone();
            if check.is_none() {
                check = Some(self.check_of(file_id, rev, &sha256.as_str().into()).await?);
            }
            let len = resp.content_length();
            let check = check.as_mut().expect("made above");
            self.receive(resp, &mut out, check, dest, progress).await?;
            // tokio's File writes in the background: flushed, the length is what was written.
            out.flush().await.map_err(io)?;
            have = out.metadata().await.map_err(io)?.len();
            if len.is_none_or(|l| start + l != have) {
                return Err(SyncError::Http(format!(
                    "a window of {file_id} ended at {have} bytes, not {:?}",
                    len.map(|l| start + l)
                )));
            }
        }
        out.sync_all().await.map_err(io)?;
        let (Some((rev, expected)), Some(check)) = (pinned, check) else {
            return Err(SyncError::Http(format!("no content of {file_id} came")));
        };
        let sha = check.finish().to_string();
        if sha != expected {
            let _ = tokio::fs::remove_file(dest).await;
            return Err(SyncError::Http(format!(
                "downloaded content does not match its hash ({sha} != {expected})"
            )));
        }
        Ok((rev, sha))
    }

    /// The check of revision `rev` of a file, whose content is `id`: for a chunked id, with the
    /// revision's chunk list (one small request).
    async fn check_of(
        &self,
        file_id: &str,
        rev: i64,
        id: &ContentHash,
    ) -> Result<ContentCheck, SyncError> {
        if !id.is_chunked() {
            return Ok(ContentCheck::new(id, None));
        }
        let query = DownloadQuery {
            rev: Some(Rev(rev)),
        };
        let listed: ContentChunks = self
            .fetch_with::<endpoint::GetFileChunks>(&[file_id], &query)
            .await?;
        if listed.sha256 != *id {
            return Err(SyncError::Http(format!(
                "the chunk list of {file_id} at revision {rev} is of {}, not {id}",
                listed.sha256
            )));
        }
        Ok(ContentCheck::new(id, Some(&listed)))
    }

    /// Asks for the window of at most [`DOWNLOAD_WINDOW`] bytes at `from` of the content
    /// (`pinned`: of that revision; else of the current one).
    async fn window(
        &self,
        file_id: &str,
        pinned: Option<&(i64, String)>,
        from: u64,
    ) -> Result<Window, SyncError> {
        let request = |ranged: bool| {
            let mut req = self.request::<endpoint::DownloadFile>(&[file_id]);
            if let Some((rev, _)) = pinned {
                req = req.query(&DownloadQuery {
                    rev: Some(Rev(*rev)),
                });
            }
            if ranged {
                let end = from + DOWNLOAD_WINDOW - 1;
                req = req.header("range", format!("bytes={from}-{end}"));
            }
            req
        };
        let resp = match self.send(request(true)).await {
            // An empty content has no range to ask for.
            Err(SyncError::Server { status: 416, .. }) if from == 0 => {
                self.send(request(false)).await?
            }
            other => other?,
        };
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let rev: i64 = header("x-syncsphere-rev")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| SyncError::Http("download without revision header".into()))?;
        let sha256 = header("x-syncsphere-sha256").unwrap_or_default();
        let (start, total) = if resp.status() == StatusCode::PARTIAL_CONTENT {
            header("content-range")
                .as_deref()
                .and_then(parse_content_range)
                .ok_or_else(|| SyncError::Http("a window without Content-Range".into()))?
        } else {
            (0, resp.content_length().unwrap_or(0))
        };
        Ok(Window {
            resp,
            rev,
            sha256,
            start,
            total,
        })
    }

    /// Downloads several small files in one request (`POST /v1/files/contents`), each written
    /// to its `dest`, verified against its hash and flushed to disk, as [`Api::download`] does
    /// for one. One result per wanted file, in order: a file gone meanwhile is a 404 error; one
    /// larger than [`BATCH_CONTENT_MAX`] (or all, from a server without the call) is downloaded
    /// alone.
    pub(crate) async fn download_many(&self, wanted: &[Wanted<'_>]) -> Vec<Fetched> {
        let mut results: Vec<Option<Fetched>> = wanted.iter().map(|_| None).collect();
        // A response carries at most CONTENTS_MAX_TOTAL bytes (API Gateway's limit, 0040): the
        // files past it come back `too_large` and are asked for again, while a round settles
        // any; what no round takes (larger than a batch may carry) comes down alone.
        let mut failed = None;
        loop {
            let pending: Vec<usize> = (0..wanted.len())
                .filter(|&i| results[i].is_none())
                .collect();
            if pending.len() < 2 {
                break;
            }
            let req = ContentsRequest {
                files: pending
                    .iter()
                    .map(|&i| ContentWanted {
                        file_id: wanted[i].file_id.to_owned().into(),
                        rev: None,
                    })
                    .collect(),
                max_size: Some(BATCH_CONTENT_MAX),
            };
            let sent = self
                .send(self.request::<endpoint::DownloadContents>(&[]).json(&req))
                .await;
            let subset: Vec<Wanted<'_>> = pending.iter().map(|&i| wanted[i]).collect();
            let mut round: Vec<Option<Fetched>> = subset.iter().map(|_| None).collect();
            failed = match sent {
                Ok(resp) => self.receive_frames(resp, &subset, &mut round).await.err(),
                // A server from before the call: each file alone.
                Err(SyncError::Server {
                    status: 404 | 405, ..
                }) => None,
                Err(e) => Some(e),
            };
            let mut settled = 0;
            for (&i, r) in pending.iter().zip(round) {
                if r.is_some() {
                    results[i] = r;
                    settled += 1;
                }
            }
            if settled == 0 || failed.is_some() {
                break;
            }
        }
        // The rest alone (a few at a time: large files, or all from an old server).
        let failed = &failed;
        let alone: Vec<_> = results
            .iter()
            .zip(wanted)
            .enumerate()
            .filter(|(_, (r, _))| r.is_none())
            .map(|(i, (_, w))| async move {
                let result = match failed {
                    Some(e) => Err(for_each_file(e)),
                    None => {
                        self.download(w.file_id, w.dest, Some(w.sha256), &[], w.progress)
                            .await
                    }
                };
                (i, result)
            })
            .collect();
        let done: Vec<_> = futures_util::stream::iter(alone)
            .buffer_unordered(PARALLEL_ALONE)
            .collect()
            .await;
        for (i, result) in done {
            results[i] = Some(result);
        }
        results.into_iter().flatten().collect()
    }

    /// Reads a contents response: each frame's header line and bytes, hashed as they come,
    /// written out in groups of about [`BATCH_WRITE_BYTES`]. Sets the result of every file the
    /// response settles (a `too_large` one stays unset); an error means the response broke off
    /// or made no sense, and the files not yet settled share it.
    async fn receive_frames(
        &self,
        resp: reqwest::Response,
        wanted: &[Wanted<'_>],
        results: &mut [Option<Fetched>],
    ) -> Result<(), SyncError> {
        let bad = |what: String| SyncError::Http(format!("bad contents response: {what}"));
        let mut body = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        let mut next = 0;
        // The file being received: its header, bytes so far and running hash (none for a
        // chunked id: the bytes are cut and hashed once they are all there).
        let mut current: Option<(ContentFrame, Vec<u8>, Option<Sha256>)> = None;
        let mut ready = Vec::new();
        let mut ready_bytes = 0;
        let mut ended = false;
        loop {
            // Take what the buffer holds: headers, and content bytes for the current file.
            let mut used = 0;
            loop {
                if let Some((frame, data, hasher)) = &mut current {
                    let size = frame.size.unwrap_or(0) as usize;
                    let take = (size - data.len()).min(buf.len() - used);
                    let piece = &buf[used..used + take];
                    if let Some(hasher) = hasher {
                        hasher.update(piece);
                    }
                    data.extend_from_slice(piece);
                    wanted[next].progress.add(take as u64);
                    used += take;
                    if data.len() < size {
                        break;
                    }
                    let (frame, data, hasher) = current.take().expect("current file");
                    let sha = match hasher {
                        Some(hasher) => hex::encode(hasher.finalize()),
                        None => crate::chunker::content_id_of_bytes(&data).to_string(),
                    };
                    let expected = frame.sha256.unwrap_or_default();
                    if sha != expected {
                        results[next] = Some(Err(SyncError::Http(format!(
                            "downloaded content does not match its hash ({sha} != {expected})"
                        ))));
                    } else {
                        ready_bytes += data.len();
                        let dest = wanted[next].dest.to_owned();
                        ready.push((next, dest, data, frame.rev.unwrap_or_default().get(), sha));
                    }
                    next += 1;
                    continue;
                }
                let Some(end) = buf[used..].iter().position(|&b| b == b'\n') else {
                    break;
                };
                let frame: ContentFrame = serde_json::from_slice(&buf[used..used + end])
                    .map_err(|e| bad(format!("a header that is not one ({e})")))?;
                used += end + 1;
                let Some(w) = wanted.get(next) else {
                    return Err(bad(format!("an extra file {}", frame.file_id)));
                };
                if frame.file_id != w.file_id {
                    return Err(bad(format!(
                        "{} where {} was due",
                        frame.file_id, w.file_id
                    )));
                }
                match frame.error.as_deref() {
                    None => {
                        let size = frame.size.unwrap_or(-1);
                        if !(0..=BATCH_CONTENT_MAX).contains(&size) || frame.rev.is_none() {
                            return Err(bad(format!("a header without a usable size: {frame:?}")));
                        }
                        w.progress.set_total(size as u64);
                        let chunked = frame.sha256.as_ref().is_some_and(ContentHash::is_chunked);
                        let hasher = (!chunked).then(Sha256::new);
                        current = Some((frame, Vec::with_capacity(size as usize), hasher));
                    }
                    Some("not_found") => {
                        results[next] = Some(Err(SyncError::Server {
                            status: 404,
                            code: ErrorCode::NotFound,
                            message: "file not found".into(),
                        }));
                        next += 1;
                    }
                    // Left unset: fetched alone.
                    Some(_) => next += 1,
                }
            }
            buf.drain(..used);
            if ready_bytes >= BATCH_WRITE_BYTES || (ended && !ready.is_empty()) {
                for (i, result) in write_out(std::mem::take(&mut ready)).await {
                    results[i] = Some(result);
                }
                ready_bytes = 0;
            }
            if ended {
                break;
            }
            match body.next().await {
                Some(bytes) => {
                    let bytes = bytes.map_err(|e| transport(&self.base, e))?;
                    self.down.consume(bytes.len() as u64).await;
                    self.downloaded
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    buf.extend_from_slice(&bytes);
                }
                None => ended = true,
            }
        }
        if current.is_some() || !buf.is_empty() || next < wanted.len() {
            return Err(SyncError::Http(format!(
                "the contents response from {} ended early",
                self.base
            )));
        }
        Ok(())
    }

    /// Appends a response's body to `out` (at the download bandwidth limit), hashing it and
    /// counting it as downloaded.
    async fn receive(
        &self,
        resp: reqwest::Response,
        out: &mut tokio::fs::File,
        check: &mut ContentCheck,
        dest: &Path,
        progress: &Transfer,
    ) -> Result<(), SyncError> {
        let mut body = resp.bytes_stream();
        while let Some(bytes) = body.next().await {
            let bytes = bytes.map_err(|e| transport(&self.base, e))?;
            self.down.consume(bytes.len() as u64).await;
            check.update(&bytes);
            out.write_all(&bytes)
                .await
                .map_err(|e| SyncError::Io(format!("writing {}", dest.display()), e))?;
            self.downloaded
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            progress.add(bytes.len() as u64);
        }
        Ok(())
    }

    /// The delta path of [`Api::download`]: asks what the current revision is made of, finds
    /// which of its chunks the `seeds` hold, and writes the content into `dest` in order —
    /// copies from the seeds, `Range` requests of that revision for the rest — hashing as it
    /// goes. `None` when it does not apply (a content of one chunk, nothing held locally) or
    /// the result does not hash to the content (a seed changed while it was read): the caller
    /// then downloads the whole content.
    async fn download_delta(
        &self,
        file_id: &str,
        dest: &Path,
        seeds: &[PathBuf],
        progress: &Transfer,
    ) -> Result<Option<(i64, String)>, SyncError> {
        // No request at all unless a seed could hold a chunk (most downloads replace small
        // files).
        let seeds: Vec<PathBuf> = seeds.iter().filter(|s| delta::usable(s)).cloned().collect();
        if seeds.is_empty() {
            return Ok(None);
        }
        let listed: ContentChunks = match self
            .fetch_with::<endpoint::GetFileChunks>(&[file_id], &DownloadQuery::default())
            .await
        {
            Ok(listed) => listed,
            // Gone (the whole download says so), or a server without the call.
            Err(SyncError::Server {
                status: 404 | 405, ..
            }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if listed.chunks.len() < 2 {
            return Ok(None);
        }
        let wanted: HashSet<String> = listed.chunks.iter().map(|c| c.sha256.to_string()).collect();
        let owned = seeds.clone();
        let held = tokio::task::spawn_blocking(move || delta::index_seeds(&owned, &wanted))
            .await
            .map_err(|e| SyncError::Io("reading local chunks".into(), std::io::Error::other(e)))?;
        let pieces = delta::pieces(&listed.chunks, &held);
        let reused = delta::local_bytes(&pieces);
        if reused == 0 {
            return Ok(None);
        }
        tracing::debug!(
            file_id,
            reused,
            fetched = listed.size as u64 - reused,
            "downloading only what changed"
        );
        self.assemble(file_id, dest, &listed, &pieces, &seeds, progress)
            .await
    }

    /// Writes `listed`'s content into `dest` piece by piece (see [`Api::download_delta`]).
    pub(super) async fn assemble(
        &self,
        file_id: &str,
        dest: &Path,
        listed: &ContentChunks,
        pieces: &[delta::Piece],
        seeds: &[PathBuf],
        progress: &Transfer,
    ) -> Result<Option<(i64, String)>, SyncError> {
        let io = |e| SyncError::Io(format!("writing {}", dest.display()), e);
        progress.set_done(0);
        progress.set_total(listed.size.max(0) as u64);
        let mut check = ContentCheck::new(&listed.sha256, Some(listed));
        let mut out = tokio::fs::File::create(dest).await.map_err(io)?;
        let mut buf = Vec::new();
        for &piece in pieces {
            match piece {
                delta::Piece::Local { seed, from, len } => {
                    // Copied as read; checked only as part of the whole content below.
                    let mut file = tokio::fs::File::open(&seeds[seed]).await.map_err(io)?;
                    file.seek(std::io::SeekFrom::Start(from))
                        .await
                        .map_err(io)?;
                    let mut left = len;
                    while left > 0 {
                        let n = left.min(COPY_BUFFER) as usize;
                        buf.resize(n, 0);
                        if file.read_exact(&mut buf).await.is_err() {
                            // The seed shrank meanwhile: fetch it all instead.
                            drop(out);
                            let _ = tokio::fs::remove_file(dest).await;
                            return Ok(None);
                        }
                        check.update(&buf);
                        out.write_all(&buf).await.map_err(io)?;
                        progress.add(n as u64);
                        left -= n as u64;
                    }
                }
                delta::Piece::Remote { start, len } => {
                    // Windows of at most DOWNLOAD_WINDOW (API Gateway's limit, 0040).
                    let end = start + len;
                    let mut at = start;
                    while at < end {
                        let len = (end - at).min(DOWNLOAD_WINDOW);
                        let req = self
                            .request::<endpoint::DownloadFile>(&[file_id])
                            .query(&DownloadQuery {
                                rev: Some(listed.rev),
                            })
                            .header("range", format!("bytes={at}-{}", at + len - 1));
                        let resp = self.send(req).await?;
                        if resp.status() != StatusCode::PARTIAL_CONTENT
                            || resp.content_length() != Some(len)
                        {
                            return Err(SyncError::Http(format!(
                                "a range of {file_id} came back as {} of {:?} bytes",
                                resp.status(),
                                resp.content_length()
                            )));
                        }
                        self.receive(resp, &mut out, &mut check, dest, progress)
                            .await?;
                        at += len;
                    }
                }
            }
        }
        out.sync_all().await.map_err(io)?;
        let sha = check.finish().to_string();
        if sha != listed.sha256 {
            tracing::warn!(
                file_id,
                "a local file changed while its chunks were reused; downloading the whole file"
            );
            drop(out);
            let _ = tokio::fs::remove_file(dest).await;
            return Ok(None);
        }
        Ok(Some((listed.rev.into(), sha)))
    }
}

/// One answer of [`Api::window`]: the response (its body not read yet), the revision and hash
/// of the content, where the body starts in it, and the content's whole size.
struct Window {
    resp: reqwest::Response,
    rev: i64,
    sha256: String,
    start: u64,
    total: u64,
}

/// `bytes START-END/TOTAL` → (START, TOTAL).
fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let (range, total) = v.strip_prefix("bytes ")?.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()?))
}

#[cfg(test)]
mod window_tests {
    use super::parse_content_range;

    #[test]
    fn content_ranges_are_read() {
        assert_eq!(parse_content_range("bytes 0-9/100"), Some((0, 100)));
        assert_eq!(
            parse_content_range("bytes 8388608-9999999/10000000"),
            Some((8388608, 10000000))
        );
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(parse_content_range("items 0-9/100"), None);
    }
}
