//! Uploads: a small file in one request, several in one, larger ones as the chunks the server
//! lacks.

use super::*;

impl Api {
    /// Uploads `file` as the new content of `path`: small files in one request, larger ones in
    /// content-defined chunks of which only those the server lacks are sent (so an interrupted
    /// upload resumes, and an edit re-sends only the chunks around it).
    /// Only content hashing to `expected` (what the scan saw) is sent; anything else means the
    /// file is still being written ([`SyncError::Busy`]).
    pub(crate) async fn upload(
        &self,
        path: &str,
        parent_rev: Option<i64>,
        file: &Path,
        expected: &str,
        progress: &Transfer,
    ) -> Result<FileMeta, SyncError> {
        let len = tokio::fs::metadata(file)
            .await
            .map_err(|e| SyncError::Io(format!("reading {}", file.display()), e))?
            .len();
        if len > SINGLE_REQUEST_MAX {
            return self
                .upload_chunked(path, parent_rev, file, expected, progress)
                .await;
        }
        // Small: read it whole, so exactly the bytes that were checked go up.
        let bytes = tokio::fs::read(file)
            .await
            .map_err(|e| SyncError::Io(format!("reading {}", file.display()), e))?;
        if hex::encode(Sha256::digest(&bytes)) != expected {
            return Err(SyncError::Busy(path.to_owned()));
        }
        self.up.consume(bytes.len() as u64).await;
        let query = UploadQuery {
            path: path.to_owned(),
            parent_rev: parent_rev.map(Rev),
        };
        let req = self.request::<endpoint::UploadFile>(&[]).query(&query);
        let meta: FileMeta = self.json(req.body(bytes)).await?;
        self.uploaded
            .fetch_add(meta.size.max(0) as u64, Ordering::Relaxed);
        progress.add(meta.size.max(0) as u64);
        Ok(meta)
    }

    /// Uploads several small files in one request (`POST /v1/files/upload`): each read whole
    /// and sent only if it still hashes to what the scan saw (else [`SyncError::Busy`]), each
    /// committed with its own result, in order — as [`Api::upload`] would for one. Files over
    /// [`SINGLE_REQUEST_MAX`] (and all of them, to a server without the call) go alone.
    pub(crate) async fn upload_many(
        &self,
        files: &[Sending<'_>],
    ) -> Vec<Result<FileMeta, SyncError>> {
        let mut results: Vec<Option<Result<FileMeta, SyncError>>> =
            files.iter().map(|_| None).collect();
        let paths: Vec<PathBuf> = files.iter().map(|f| f.file.to_owned()).collect();
        let read = tokio::task::spawn_blocking(move || {
            paths
                .into_iter()
                .map(|p| -> std::io::Result<Option<Vec<u8>>> {
                    if std::fs::symlink_metadata(&p)?.len() > SINGLE_REQUEST_MAX {
                        return Ok(None);
                    }
                    std::fs::read(&p).map(Some)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_else(|e| panic!("reading files to upload panicked: {e}"));
        let mut body = Vec::new();
        let mut sent = Vec::new();
        for (i, (f, got)) in files.iter().zip(read).enumerate() {
            match got {
                Err(e) => {
                    results[i] = Some(Err(SyncError::Io(
                        format!("reading {}", f.file.display()),
                        e,
                    )))
                }
                Ok(None) => {} // large: alone, below
                Ok(Some(bytes)) if hex::encode(Sha256::digest(&bytes)) != f.expected => {
                    results[i] = Some(Err(SyncError::Busy(f.path.to_owned())));
                }
                Ok(Some(bytes)) => {
                    let frame = UploadFrame {
                        path: f.path.to_owned(),
                        parent_rev: f.parent_rev.map(Rev),
                        size: bytes.len() as i64,
                        sha256: f.expected.to_owned().into(),
                    };
                    serde_json::to_writer(&mut body, &frame).expect("a header is JSON");
                    body.push(b'\n');
                    body.extend_from_slice(&bytes);
                    sent.push(i);
                }
            }
        }
        if sent.len() >= 2 {
            self.up.consume(body.len() as u64).await;
            let req = self.request::<endpoint::UploadFiles>(&[]).body(body);
            match self.json::<UploadResults>(req).await {
                Ok(answer) if answer.results.len() == sent.len() => {
                    for (&i, result) in sent.iter().zip(answer.results) {
                        results[i] = Some(match (result.file, result.error) {
                            (Some(meta), _) => {
                                let size = meta.size.max(0) as u64;
                                self.uploaded.fetch_add(size, Ordering::Relaxed);
                                files[i].progress.add(size);
                                Ok(meta)
                            }
                            (None, error) => {
                                let status = error
                                    .as_ref()
                                    .and_then(|e| StatusCode::from_u16(e.error.status()).ok())
                                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                                Err(error_of(status, error))
                            }
                        });
                    }
                }
                Ok(answer) => {
                    let e = SyncError::Http(format!(
                        "{} results for {} files from {}",
                        answer.results.len(),
                        sent.len(),
                        self.base
                    ));
                    for &i in &sent {
                        results[i] = Some(Err(for_each_file(&e)));
                    }
                }
                // A server from before the call: each file alone.
                Err(SyncError::Server {
                    status: 404 | 405, ..
                }) => {}
                Err(e) => {
                    for &i in &sent {
                        results[i] = Some(Err(for_each_file(&e)));
                    }
                }
            }
        }
        // The rest alone, one after the other: large files, a lone small one, or all of them
        // for a server without the call.
        for (i, f) in files.iter().enumerate() {
            if results[i].is_none() {
                results[i] = Some(
                    self.upload(f.path, f.parent_rev, f.file, f.expected, f.progress)
                        .await,
                );
            }
        }
        results.into_iter().flatten().collect()
    }

    async fn upload_chunked(
        &self,
        path: &str,
        parent_rev: Option<i64>,
        file: &Path,
        expected: &str,
        progress: &Transfer,
    ) -> Result<FileMeta, SyncError> {
        // Twice at most: chunks can vanish between the check and the commit only if the
        // server lost them meanwhile (a crash before they were durable, or collected as
        // orphans).
        for _ in 0..2 {
            progress.set_done(0);
            let chunked = self.send_chunks(path, file, expected, progress).await?;
            // The server checks that the chunks add up to `expected`, what the scan saw: a
            // file written to since then fails there (`hash_mismatch`) and is retried once it
            // settles.
            let commit = CommitRequest {
                path: path.to_owned(),
                parent_rev: parent_rev.map(Rev),
                size: chunked.size as i64,
                sha256: expected.to_owned().into(),
                chunks: chunked.refs(),
            };
            match self.submit::<endpoint::CommitChunks>(&[], &commit).await {
                Err(SyncError::Server {
                    code: ErrorCode::MissingChunks,
                    ..
                }) => continue,
                Err(SyncError::Server {
                    code: ErrorCode::HashMismatch,
                    ..
                }) => return Err(SyncError::Busy(path.to_owned())),
                other => return other,
            }
        }
        Err(SyncError::Http(format!(
            "the server keeps losing the chunks of {path}"
        )))
    }

    /// Reads `file` once and sends the server the chunks it lacks: a blocking thread cuts the
    /// file into chunks and hands each over as it is cut; every [`MISSING_BATCH`] of them the
    /// server is asked which it lacks, and those go up ([`PARALLEL_CHUNKS`] at once) while the
    /// file is still being read. What the server holds already counts as sent. Memory stays
    /// bounded: the chunker waits when [`CHUNKS_AHEAD`] chunks are not yet taken.
    async fn send_chunks(
        &self,
        path: &str,
        file: &Path,
        content: &str,
        progress: &Transfer,
    ) -> Result<ChunkedFile, SyncError> {
        let (tx, rx) = tokio::sync::mpsc::channel::<(Chunk, bytes::Bytes)>(CHUNKS_AHEAD);
        let owned = file.to_path_buf();
        // The scan's chunk list of this content, if the file is as the scan read it: then the
        // file is only read, not cut and hashed again (the server checks each chunk it gets).
        let id = ContentHash::from(content);
        let listed = crate::local_fs::stamp_now(file)
            .ok()
            .and_then(|stamp| crate::chunker::recent::take(file, stamp, &id));
        let chunker = tokio::task::spawn_blocking(move || {
            let send = |chunk: &Chunk, data: &[u8]| {
                tx.blocking_send((chunk.clone(), bytes::Bytes::copy_from_slice(data)))
                    .is_ok()
            };
            match listed {
                Some(listed) => read_as_listed(&owned, &listed, send).map(|()| (*listed).clone()),
                None => chunk_file_with(&owned, send),
            }
        });
        let sends = self.send_cut_chunks(path, content, rx, progress).await;
        let chunked = chunker
            .await
            .map_err(|e| SyncError::Io("chunking".into(), std::io::Error::other(e)));
        // A failed send explains a stopped chunker; otherwise the chunker's error counts.
        sends?;
        let chunked =
            chunked?.map_err(|e| SyncError::Io(format!("reading {}", file.display()), e))?;
        tracing::debug!(path, chunks = chunked.chunks.len(), "chunks sent");
        Ok(chunked)
    }

    /// Takes the chunks `rx` receives as they are cut, asks the server which it lacks (up to
    /// [`MISSING_BATCH`] per request, whatever has been cut by then) and sends those,
    /// [`PARALLEL_CHUNKS`] at once, while the next are asked about.
    async fn send_cut_chunks(
        &self,
        path: &str,
        content: &str,
        mut rx: tokio::sync::mpsc::Receiver<(Chunk, bytes::Bytes)>,
        progress: &Transfer,
    ) -> Result<(), SyncError> {
        type Pending<'a, T> =
            std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, SyncError>> + Send + 'a>>;
        let mut queued: HashSet<String> = HashSet::new();
        let mut todo: std::collections::VecDeque<(Chunk, bytes::Bytes)> = Default::default();
        let mut asking: Option<Pending<'_, Vec<(Chunk, bytes::Bytes)>>> = None;
        let mut puts = futures_util::stream::FuturesUnordered::<Pending<'_, ()>>::new();
        let mut reading = true;
        loop {
            while puts.len() < PARALLEL_CHUNKS {
                let Some((chunk, data)) = todo.pop_front() else {
                    break;
                };
                puts.push(Box::pin(
                    self.put_chunk(path, content, chunk, data, progress),
                ));
            }
            if !reading && asking.is_none() && todo.is_empty() && puts.is_empty() {
                return Ok(());
            }
            // Ask about more only when the uploads are about to run dry.
            let want_more = reading && asking.is_none() && todo.len() < PARALLEL_CHUNKS;
            tokio::select! {
                Some(put) = puts.next(), if !puts.is_empty() => put?,
                answer = async {
                    match asking.as_mut() {
                        Some(question) => question.await,
                        None => std::future::pending().await,
                    }
                }, if asking.is_some() => {
                    asking = None;
                    todo.extend(answer?);
                }
                cut = rx.recv(), if want_more => match cut {
                    None => reading = false,
                    Some(first) => {
                        let mut batch = vec![first];
                        while batch.len() < MISSING_BATCH {
                            match rx.try_recv() {
                                Ok(next) => batch.push(next),
                                Err(_) => break,
                            }
                        }
                        // A chunk that occurs twice in the file goes up once but counts for
                        // both places.
                        let mut ask = Vec::new();
                        for (chunk, data) in batch {
                            if queued.insert(chunk.sha256.clone()) {
                                ask.push((chunk, data));
                            } else {
                                progress.add(u64::from(chunk.size));
                            }
                        }
                        asking = Some(Box::pin(self.missing_of(ask, progress)));
                    }
                },
            }
        }
    }

    /// Of `chunks`, those the server lacks; the others count as sent.
    async fn missing_of(
        &self,
        chunks: Vec<(Chunk, bytes::Bytes)>,
        progress: &Transfer,
    ) -> Result<Vec<(Chunk, bytes::Bytes)>, SyncError> {
        if chunks.is_empty() {
            return Ok(chunks);
        }
        let req = MissingChunksRequest {
            chunks: chunks
                .iter()
                .map(|(c, _)| c.sha256.as_str().into())
                .collect(),
        };
        let page: MissingChunks = self
            .submit::<endpoint::FindMissingChunks>(&[], &req)
            .await?;
        let missing: HashSet<ContentHash> = page.missing.into_iter().collect();
        let (todo, held): (Vec<_>, Vec<_>) = chunks
            .into_iter()
            .partition(|(c, _)| missing.contains(&ContentHash::from(c.sha256.as_str())));
        progress.add(held.iter().map(|(c, _)| u64::from(c.size)).sum());
        Ok(todo)
    }

    /// `PUT /v1/chunks/{id}`. For a content named by its SHA-256 (stored before chunked ids),
    /// the server is told which content and where, so it can hash the content as the chunks
    /// arrive instead of reading it back at commit; a chunked id needs no bytes at commit.
    async fn put_chunk(
        &self,
        path: &str,
        content: &str,
        chunk: Chunk,
        data: bytes::Bytes,
        progress: &Transfer,
    ) -> Result<(), SyncError> {
        self.up.consume(u64::from(chunk.size)).await;
        let mut req = self.request::<endpoint::PutChunk>(&[chunk.sha256.as_str()]);
        if ContentHash::from(content).is_sha256() {
            req = req
                .header(CHUNK_CONTENT_HEADER, content)
                .header(CHUNK_OFFSET_HEADER, chunk.offset);
        }
        match self.send(req.body(data)).await {
            // Cannot happen with bytes hashed as read, unless they are corrupted on the way.
            Err(SyncError::Server {
                code: ErrorCode::HashMismatch,
                ..
            }) => return Err(SyncError::Busy(path.to_owned())),
            other => {
                other?;
            }
        }
        self.uploaded
            .fetch_add(u64::from(chunk.size), Ordering::Relaxed);
        progress.add(u64::from(chunk.size));
        Ok(())
    }
}
