//! The File Management Service's REST API, as the sync engine uses it. Every URL and method
//! comes from the protocol's endpoint descriptions ([`syncsphere_protocol::endpoint`]), and
//! so do the body and answer types of the typed calls ([`Api::fetch`], [`Api::submit`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use syncsphere_protocol::{ContentHash, Rev, Seq};

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use syncsphere_protocol::endpoint::{self, Endpoint};
use syncsphere_protocol::{
    CHUNK_CONTENT_HEADER, CHUNK_OFFSET_HEADER, ChangesPage, ChangesQuery, CommitRequest,
    ContentChunks, ContentFrame, ContentWanted, ContentsRequest, DEVICE_HEADER, DeleteQuery,
    DeviceList, DownloadQuery, ErrorBody, ErrorCode, FileMeta, MissingChunks, MissingChunksRequest,
    MoveRequest, RegisterDevice, SINGLE_REQUEST_MAX, ServerConfig, UploadFrame, UploadQuery,
    UploadResults,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::SyncError;
use crate::auth::TokenSource;
use crate::chunker::{Chunk, ChunkedFile, chunk_file_with};
use crate::delta;
use crate::throttle::Throttle;
use crate::transfer::Transfer;

pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    tokens: Arc<TokenSource>,
    device_id: String,
    /// Content bytes sent and received since start (for the status stream and benchmarks).
    pub uploaded: AtomicU64,
    pub downloaded: AtomicU64,
    up: Throttle,
    down: Throttle,
}

/// Chunk uploads in flight at once.
const PARALLEL_CHUNKS: usize = 8;
/// At most this many chunks are asked about in one `POST /v1/chunks/missing` (fewer when the
/// uploads are ahead of the reading: whatever is cut by then).
const MISSING_BATCH: usize = 16;
/// Chunks cut and not yet taken by the uploaders before the chunker waits.
const CHUNKS_AHEAD: usize = 8;
/// Bytes copied at a time from a local file into a delta download.
const COPY_BUFFER: u64 = 1024 * 1024;
/// A batch download ([`Api::download_many`]) takes contents up to this size; larger ones are
/// fetched alone (progress, resumption, delta).
pub(crate) const BATCH_CONTENT_MAX: i64 = 1 << 20;
/// Files of a batch fetched alone at once (those too large for it).
const PARALLEL_ALONE: usize = 4;
/// Received contents of a batch held in memory before they are written out together.
const BATCH_WRITE_BYTES: usize = 1 << 20;

/// One file of a batch download: its id, where its content goes, and its progress.
pub(crate) struct Wanted<'a> {
    pub file_id: &'a str,
    /// The content expected (`dest` may hold the start of it: a download cut earlier).
    pub sha256: &'a str,
    pub dest: &'a Path,
    pub progress: &'a Transfer,
}

/// One result of a batch download per wanted file: its revision and hash, as for
/// [`Api::download`].
pub(crate) type Fetched = Result<(i64, String), SyncError>;

/// One file of a batch upload: where it goes, on top of which revision, where it is on disk,
/// the hash the scan saw, and its progress.
pub(crate) struct Sending<'a> {
    pub path: &'a str,
    pub parent_rev: Option<i64>,
    pub file: &'a Path,
    pub expected: &'a str,
    pub progress: &'a Transfer,
}

/// The same failure for each file of a batch that failed as a whole (errors are not `Clone`:
/// an `io::Error` inside).
fn for_each_file(e: &SyncError) -> SyncError {
    match e {
        SyncError::Offline(m) => SyncError::Offline(m.clone()),
        SyncError::Auth(m) => SyncError::Auth(m.clone()),
        SyncError::DeviceRevoked => SyncError::DeviceRevoked,
        SyncError::Server {
            status,
            code,
            message,
        } => SyncError::Server {
            status: *status,
            code: *code,
            message: message.clone(),
        },
        e => SyncError::Http(e.to_string()),
    }
}

/// Writes received contents to their files, each flushed to disk (`fsync`) before it counts
/// as downloaded — as [`Api::download`] does, one blocking task for all of them.
async fn write_out(files: Vec<(usize, PathBuf, Vec<u8>, i64, String)>) -> Vec<(usize, Fetched)> {
    let written = tokio::task::spawn_blocking(move || {
        files
            .into_iter()
            .map(|(i, dest, data, rev, sha)| {
                let write = || -> std::io::Result<()> {
                    use std::io::Write as _;
                    let mut f = std::fs::File::create(&dest)?;
                    f.write_all(&data)?;
                    f.sync_all()
                };
                let result = write()
                    .map(|()| (rev, sha))
                    .map_err(|e| SyncError::Io(format!("writing {}", dest.display()), e));
                (i, result)
            })
            .collect()
    })
    .await;
    written.unwrap_or_else(|e| panic!("writing downloaded files panicked: {e}"))
}

pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        // The server closes a connection idle for its header timeout (30 s by default): let
        // go of idle ones before that, so no request is sent on a connection being closed.
        .pool_idle_timeout(Duration::from_secs(20))
        .build()
        .expect("building the HTTP client")
}

fn transport(base: &str, e: reqwest::Error) -> SyncError {
    if e.is_connect() || e.is_timeout() || e.is_request() {
        SyncError::Offline(format!("cannot reach {base}: {e}"))
    } else {
        SyncError::Http(e.to_string())
    }
}

async fn api_error(resp: reqwest::Response) -> SyncError {
    let status = resp.status();
    let body: Option<ErrorBody> = resp.json().await.ok();
    error_of(status, body)
}

/// The error a failed call (or one file's part of a batch) is answered with.
fn error_of(status: StatusCode, body: Option<ErrorBody>) -> SyncError {
    match body {
        Some(b) if b.error == ErrorCode::DeviceRevoked => SyncError::DeviceRevoked,
        Some(b) if b.error == ErrorCode::Conflict => SyncError::Conflict(b.current.map(Box::new)),
        Some(b) => SyncError::Server {
            status: status.as_u16(),
            code: b.error,
            message: b.message,
        },
        None if status == StatusCode::UNAUTHORIZED => {
            SyncError::Auth("the server rejected the session; sign in again".into())
        }
        None => SyncError::Http(format!("unexpected HTTP {status}")),
    }
}

/// `GET /v1/config` of a server: where to sign in.
pub(crate) async fn fetch_server_config(server_url: &str) -> Result<ServerConfig, SyncError> {
    let base = server_url.trim_end_matches('/');
    let resp = http_client()
        .get(format!("{base}{}", endpoint::GetConfig::PATH))
        .send()
        .await
        .map_err(|e| transport(base, e))?;
    if !resp.status().is_success() {
        return Err(api_error(resp).await);
    }
    resp.json()
        .await
        .map_err(|e| SyncError::Http(format!("{base} is not a SyncSphere server: {e}")))
}

impl Api {
    pub(crate) fn new(server_url: &str, tokens: Arc<TokenSource>, device_id: String) -> Self {
        Api {
            http: http_client(),
            base: server_url.trim_end_matches('/').to_owned(),
            tokens,
            device_id,
            uploaded: AtomicU64::new(0),
            downloaded: AtomicU64::new(0),
            up: Throttle::new(None),
            down: Throttle::new(None),
        }
    }

    /// Limits uploads and downloads to these many bytes per second (`None`: unlimited).
    pub(crate) fn with_limits(mut self, up: Option<u64>, down: Option<u64>) -> Self {
        self.up = Throttle::new(up);
        self.down = Throttle::new(down);
        self
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// A request for endpoint `E`, its `{…}` path segments filled with `params`.
    fn request<E: Endpoint>(&self, params: &[&str]) -> reqwest::RequestBuilder {
        let method = match E::METHOD {
            endpoint::Method::Get => reqwest::Method::GET,
            endpoint::Method::Put => reqwest::Method::PUT,
            endpoint::Method::Post => reqwest::Method::POST,
            endpoint::Method::Delete => reqwest::Method::DELETE,
        };
        self.http
            .request(method, format!("{}{}", self.base, E::path(params)))
    }

    /// Endpoint `E` without query or body: its JSON answer.
    pub(crate) async fn fetch<E>(&self, params: &[&str]) -> Result<E::Response, SyncError>
    where
        E: Endpoint<Query = (), Request = ()>,
        E::Response: serde::de::DeserializeOwned,
    {
        self.json(self.request::<E>(params)).await
    }

    /// Endpoint `E` with its query, without body: its JSON answer.
    async fn fetch_with<E>(
        &self,
        params: &[&str],
        query: &E::Query,
    ) -> Result<E::Response, SyncError>
    where
        E: Endpoint<Request = ()>,
        E::Query: serde::Serialize,
        E::Response: serde::de::DeserializeOwned,
    {
        self.json(self.request::<E>(params).query(query)).await
    }

    /// Endpoint `E` with its JSON body: its JSON answer.
    pub(crate) async fn submit<E>(
        &self,
        params: &[&str],
        body: &E::Request,
    ) -> Result<E::Response, SyncError>
    where
        E: Endpoint<Query = ()>,
        E::Request: serde::Serialize,
        E::Response: serde::de::DeserializeOwned,
    {
        self.json(self.request::<E>(params).json(body)).await
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, SyncError> {
        let token = self.tokens.access_token().await?;
        let resp = req
            .bearer_auth(token)
            .header(DEVICE_HEADER, &self.device_id)
            .send()
            .await
            .map_err(|e| transport(&self.base, e))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(api_error(resp).await)
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, SyncError> {
        self.send(req)
            .await?
            .json()
            .await
            .map_err(|e| SyncError::Http(format!("bad response from {}: {e}", self.base)))
    }

    /// `GET {server}{path}`, JSON in return (the simulation's observer).
    #[cfg(test)]
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, SyncError> {
        self.json(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    /// `PUT /v1/devices/{id}`: this device's name and platform, for the user's device list.
    pub(crate) async fn register_device(&self, name: &str) -> Result<(), SyncError> {
        let body = RegisterDevice {
            name: Some(name.to_owned()),
            platform: Some(std::env::consts::OS.to_owned()),
        };
        self.send(
            self.request::<endpoint::RegisterDevice>(&[self.device_id.as_str()])
                .json(&body),
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn devices(&self) -> Result<DeviceList, SyncError> {
        self.fetch::<endpoint::ListDevices>(&[]).await
    }

    pub(crate) async fn revoke_device(&self, device_id: &str) -> Result<(), SyncError> {
        self.send(self.request::<endpoint::RevokeDevice>(&[device_id]))
            .await?;
        Ok(())
    }

    pub(crate) async fn changes(&self, cursor: i64) -> Result<ChangesPage, SyncError> {
        let query = ChangesQuery {
            cursor: Seq(cursor),
            limit: None,
        };
        self.fetch_with::<endpoint::ListChanges>(&[], &query).await
    }

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
        let chunker = tokio::task::spawn_blocking(move || {
            chunk_file_with(&owned, |chunk, data| {
                tx.blocking_send((chunk.clone(), data.into())).is_ok()
            })
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

    /// `PUT /v1/chunks/{id}`, telling the server which content (the scan's hash) and where, so
    /// it can hash the content as the chunks arrive instead of reading it back at commit.
    async fn put_chunk(
        &self,
        path: &str,
        content: &str,
        chunk: Chunk,
        data: bytes::Bytes,
        progress: &Transfer,
    ) -> Result<(), SyncError> {
        self.up.consume(u64::from(chunk.size)).await;
        match self
            .send(
                self.request::<endpoint::PutChunk>(&[chunk.sha256.as_str()])
                    .header(CHUNK_CONTENT_HEADER, content)
                    .header(CHUNK_OFFSET_HEADER, chunk.offset)
                    .body(data),
            )
            .await
        {
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

    /// Streams the file's current content into `dest` (fsynced) and returns its revision and
    /// verified SHA-256. When `dest` already holds the start of the content `resume_sha`
    /// (a download interrupted earlier), only the rest is fetched (`Range` + `If-Range`: if the
    /// file changed meanwhile, the server sends it whole and `dest` starts over). Otherwise a
    /// chunked content is put together from the chunks the `seeds` (local files, such as the
    /// old version of this one) already hold and ranges of the content for the rest
    /// ([`Api::download_delta`]).
    pub(crate) async fn download(
        &self,
        file_id: &str,
        dest: &Path,
        resume_sha: Option<&str>,
        seeds: &[PathBuf],
        progress: &Transfer,
    ) -> Result<(i64, String), SyncError> {
        let io = |e| SyncError::Io(format!("writing {}", dest.display()), e);
        let have = match (resume_sha, tokio::fs::metadata(dest).await) {
            (Some(_), Ok(m)) => m.len(),
            _ => 0,
        };
        if have == 0
            && !seeds.is_empty()
            && let Some(done) = self.download_delta(file_id, dest, seeds, progress).await?
        {
            return Ok(done);
        }
        let mut req = self.request::<endpoint::DownloadFile>(&[file_id]);
        if let (Some(sha), true) = (resume_sha, have > 0) {
            req = req
                .header("range", format!("bytes={have}-"))
                .header("if-range", format!("\"{sha}\""));
        }
        let resp = match self.send(req).await {
            // The partial file is already the whole content.
            Err(SyncError::Server { status: 416, .. }) if have > 0 => {
                let _ = tokio::fs::remove_file(dest).await;
                return Box::pin(self.download(file_id, dest, None, &[], progress)).await;
            }
            other => other?,
        };
        let resumed = resp.status() == StatusCode::PARTIAL_CONTENT;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let rev: i64 = header("x-syncsphere-rev")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| SyncError::Http("download without revision header".into()))?;
        let expected = header("x-syncsphere-sha256").unwrap_or_default();
        let have = if resumed { have } else { 0 };
        progress.set_done(have);
        if let Some(len) = resp.content_length() {
            progress.set_total(have + len);
        }
        let mut hasher = Sha256::new();
        let mut out = if resumed {
            // Hash what is already there, then append.
            let mut existing = tokio::fs::File::open(dest).await.map_err(io)?;
            let mut buf = vec![0; 256 * 1024];
            loop {
                let n = existing.read(&mut buf).await.map_err(io)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            tracing::info!(file_id, resumed_at = have, "resuming a download");
            tokio::fs::OpenOptions::new()
                .append(true)
                .open(dest)
                .await
                .map_err(io)?
        } else {
            tokio::fs::File::create(dest).await.map_err(io)?
        };
        self.receive(resp, &mut out, &mut hasher, dest, progress)
            .await?;
        out.sync_all().await.map_err(io)?;
        let sha = hex::encode(hasher.finalize());
        if sha != expected {
            let _ = tokio::fs::remove_file(dest).await;
            return Err(SyncError::Http(format!(
                "downloaded content does not match its hash ({sha} != {expected})"
            )));
        }
        Ok((rev, sha))
    }

    /// Downloads several small files in one request (`POST /v1/files/contents`), each written
    /// to its `dest`, verified against its hash and flushed to disk, as [`Api::download`] does
    /// for one. One result per wanted file, in order: a file gone meanwhile is a 404 error; one
    /// larger than [`BATCH_CONTENT_MAX`] (or all, from a server without the call) is downloaded
    /// alone.
    pub(crate) async fn download_many(&self, wanted: &[Wanted<'_>]) -> Vec<Fetched> {
        let mut results: Vec<Option<Fetched>> = wanted.iter().map(|_| None).collect();
        let req = ContentsRequest {
            files: wanted
                .iter()
                .map(|w| ContentWanted {
                    file_id: w.file_id.to_owned().into(),
                    rev: None,
                })
                .collect(),
            max_size: Some(BATCH_CONTENT_MAX),
        };
        let sent = self
            .send(self.request::<endpoint::DownloadContents>(&[]).json(&req))
            .await;
        let failed = match sent {
            Ok(resp) => self.receive_frames(resp, wanted, &mut results).await.err(),
            // A server from before the call: each file alone.
            Err(SyncError::Server {
                status: 404 | 405, ..
            }) => None,
            Err(e) => Some(e),
        };
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
        // The file being received: its header, bytes so far and running hash.
        let mut current: Option<(ContentFrame, Vec<u8>, Sha256)> = None;
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
                    hasher.update(piece);
                    data.extend_from_slice(piece);
                    wanted[next].progress.add(take as u64);
                    used += take;
                    if data.len() < size {
                        break;
                    }
                    let (frame, data, hasher) = current.take().expect("current file");
                    let sha = hex::encode(hasher.finalize());
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
                        current = Some((frame, Vec::with_capacity(size as usize), Sha256::new()));
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
        hasher: &mut Sha256,
        dest: &Path,
        progress: &Transfer,
    ) -> Result<(), SyncError> {
        let mut body = resp.bytes_stream();
        while let Some(bytes) = body.next().await {
            let bytes = bytes.map_err(|e| transport(&self.base, e))?;
            self.down.consume(bytes.len() as u64).await;
            hasher.update(&bytes);
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
    async fn assemble(
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
        let mut hasher = Sha256::new();
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
                        hasher.update(&buf);
                        out.write_all(&buf).await.map_err(io)?;
                        progress.add(n as u64);
                        left -= n as u64;
                    }
                }
                delta::Piece::Remote { start, len } => {
                    let req = self
                        .request::<endpoint::DownloadFile>(&[file_id])
                        .query(&DownloadQuery {
                            rev: Some(listed.rev),
                        })
                        .header("range", format!("bytes={start}-{}", start + len - 1));
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
                    self.receive(resp, &mut out, &mut hasher, dest, progress)
                        .await?;
                }
            }
        }
        out.sync_all().await.map_err(io)?;
        let sha = hex::encode(hasher.finalize());
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

    pub(crate) async fn delete(&self, file_id: &str, rev: i64) -> Result<FileMeta, SyncError> {
        let query = DeleteQuery {
            parent_rev: Rev(rev),
        };
        self.fetch_with::<endpoint::DeleteFile>(&[file_id], &query)
            .await
    }

    pub(crate) async fn move_file(
        &self,
        file_id: &str,
        new_path: &str,
        rev: i64,
    ) -> Result<FileMeta, SyncError> {
        let body = MoveRequest {
            new_path: new_path.to_owned(),
            parent_rev: Rev(rev),
        };
        self.submit::<endpoint::MoveFile>(&[file_id], &body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunker::noise;
    use crate::sim::real::RealServer;
    use crate::status::Direction;
    use crate::transfer::Transfers;

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    /// Uploads `data` as `path` (through a file in `dir`), on top of `parent`.
    async fn put(api: &Api, dir: &Path, path: &str, parent: Option<i64>, data: &[u8]) -> FileMeta {
        let file = dir.join("upload");
        std::fs::write(&file, data).unwrap();
        let t = Transfers::default();
        let active = t.start(path, Direction::Upload, 0);
        api.upload(path, parent, &file, &sha(data), &active.transfer)
            .await
            .expect("the upload")
    }

    /// Downloads `file_id` into `dest` with `seeds`: the content's revision and hash, and the
    /// bytes that came over the network for it.
    async fn get(api: &Api, file_id: &str, dest: &Path, seeds: &[PathBuf]) -> ((i64, String), u64) {
        let before = api.downloaded.load(Ordering::Relaxed);
        let t = Transfers::default();
        let active = t.start("x", Direction::Download, 0);
        let got = api
            .download(file_id, dest, None, seeds, &active.transfer)
            .await
            .expect("the download");
        (got, api.downloaded.load(Ordering::Relaxed) - before)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_edited_file_comes_down_as_its_changed_chunks_and_a_lying_seed_costs_only_time() {
        let server = RealServer::start().await;
        let api = server.api();
        let dir = tempfile::tempdir().unwrap();
        let old = noise(6 * 1024 * 1024 + 99, 5);
        let first = put(api, dir.path(), "big.bin", None, &old).await;
        let mut new = vec![b'#'];
        new.extend_from_slice(&old);
        // Also changed in the middle: two stretches to fetch, the rest copied.
        new[3 * 1024 * 1024] ^= 0xff;
        let second = put(api, dir.path(), "big.bin", Some(first.rev.into()), &new).await;

        let seed = dir.path().join("old version");
        std::fs::write(&seed, &old).unwrap();
        let dest = dir.path().join("dest");
        let ((rev, got_sha), fetched) =
            get(api, &second.file_id, &dest, std::slice::from_ref(&seed)).await;
        assert_eq!(
            (rev, got_sha.as_str()),
            (second.rev.get(), second.sha256.to_string().as_str())
        );
        assert!(
            std::fs::read(&dest).unwrap() == new,
            "the assembled file is the new content"
        );
        assert!(fetched > 0);
        assert!(
            fetched <= 2 * u64::from(syncsphere_protocol::CHUNK_MAX_SIZE) + 2,
            "fetched {fetched} of {} bytes",
            new.len()
        );
        assert_eq!(std::fs::read(&seed).unwrap(), old, "the seed is only read");

        // Without a seed, or with one that shares nothing: the whole content.
        for seeds in [vec![], vec![dir.path().join("missing")]] {
            std::fs::remove_file(&dest).unwrap();
            let (_, fetched) = get(api, &second.file_id, &dest, &seeds).await;
            assert_eq!(fetched, new.len() as u64, "{seeds:?}");
            assert!(std::fs::read(&dest).unwrap() == new);
        }

        // A seed whose bytes are not what its chunks were (written to after it was read):
        // the result does not hash to the content, nothing of it is kept, and the download
        // falls back to the whole content.
        let listed: ContentChunks = api
            .fetch_with::<endpoint::GetFileChunks>(&[&second.file_id], &DownloadQuery::default())
            .await
            .unwrap();
        let held: delta::Held = listed
            .chunks
            .iter()
            .map(|c| (c.sha256.to_string(), (0, 0)))
            .collect();
        let lying = delta::pieces(&listed.chunks, &held);
        let t = Transfers::default();
        let active = t.start("x", Direction::Download, 0);
        std::fs::remove_file(&dest).unwrap();
        let shrunk = dir.path().join("shrunk");
        std::fs::write(&shrunk, &old[..1000]).unwrap();
        for seed in [seed.clone(), shrunk] {
            let assembled = api
                .assemble(
                    &second.file_id,
                    &dest,
                    &listed,
                    &lying,
                    std::slice::from_ref(&seed),
                    &active.transfer,
                )
                .await
                .unwrap();
            assert_eq!(assembled, None, "{}", seed.display());
            assert!(!dest.exists(), "a failed assembly leaves nothing behind");
        }

        // A content of one chunk is fetched whole, in one request.
        let small = put(api, dir.path(), "small.bin", None, b"tiny").await;
        let (_, fetched) = get(api, &small.file_id, &dest, &[seed]).await;
        assert_eq!(fetched, 4);
        assert_eq!(std::fs::read(&dest).unwrap(), b"tiny");
    }

    /// Many small files come down in one request, each verified and written; a file too large
    /// for the batch comes alone, a deleted one is "not found", and a partial file left from
    /// an earlier download is replaced, not appended to.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_files_come_down_together_and_the_rest_alone() {
        let server = RealServer::start().await;
        let api = server.api();
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for i in 0..40 {
            let data = format!("small file number {i}").repeat(i + 1).into_bytes();
            files.push((
                put(api, dir.path(), &format!("s/{i}.txt"), None, &data).await,
                data,
            ));
        }
        let large = noise(BATCH_CONTENT_MAX as usize + 1, 9);
        files.push((put(api, dir.path(), "large.bin", None, &large).await, large));
        let empty = put(api, dir.path(), "empty", None, b"").await;
        files.push((empty, Vec::new()));
        let gone = put(api, dir.path(), "gone.txt", None, b"soon deleted").await;
        api.delete(&gone.file_id, gone.rev.into()).await.unwrap();

        let dests: Vec<PathBuf> = (0..=files.len())
            .map(|i| dir.path().join(format!("d{i}")))
            .collect();
        // Rubbish where the first file goes: written over.
        std::fs::write(&dests[0], b"left over from before, longer than the file").unwrap();
        let t = Transfers::default();
        let active: Vec<_> = dests
            .iter()
            .map(|_| t.start("x", Direction::Download, 0))
            .collect();
        let hashes: Vec<String> = files.iter().map(|(m, _)| m.sha256.to_string()).collect();
        let gone_sha = gone.sha256.to_string();
        let mut wanted: Vec<Wanted> = files
            .iter()
            .zip(&hashes)
            .zip(&dests)
            .zip(&active)
            .map(|((((meta, _), sha), dest), a)| Wanted {
                file_id: &meta.file_id,
                sha256: sha,
                dest,
                progress: &a.transfer,
            })
            .collect();
        wanted.push(Wanted {
            file_id: &gone.file_id,
            sha256: &gone_sha,
            dest: dests.last().unwrap(),
            progress: &active.last().unwrap().transfer,
        });
        let before = api.downloaded.load(Ordering::Relaxed);
        let got = api.download_many(&wanted).await;
        assert_eq!(got.len(), wanted.len());
        for (((meta, data), dest), result) in files.iter().zip(&dests).zip(&got) {
            let (rev, sha) = result.as_ref().expect("downloaded");
            assert_eq!(
                (*rev, sha),
                (meta.rev.get(), &meta.sha256.to_string()),
                "{}",
                meta.path
            );
            assert!(
                std::fs::read(dest).unwrap() == *data,
                "{} written",
                meta.path
            );
        }
        assert!(
            matches!(got.last(), Some(Err(SyncError::Server { status: 404, .. }))),
            "{:?}",
            got.last()
        );
        assert!(!dests.last().unwrap().exists());
        let total: usize = files.iter().map(|(_, d)| d.len()).sum();
        let fetched = (api.downloaded.load(Ordering::Relaxed) - before) as usize;
        // Every content once, plus the header lines.
        assert!(
            fetched >= total && fetched < total + 200 * files.len(),
            "{fetched} for {total}"
        );
        assert_eq!(api.download_many(&[]).await.len(), 0);
    }

    /// Small files go up in one request, each with its own result: a file changed since its
    /// hash was taken is busy (and not sent), a stale parent a conflict, a large file goes
    /// alone; what committed reads back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_files_go_up_together_each_with_its_own_result() {
        let server = RealServer::start().await;
        let api = server.api();
        let dir = tempfile::tempdir().unwrap();
        let old = put(api, dir.path(), "old.txt", None, b"old content").await;
        let large = noise(SINGLE_REQUEST_MAX as usize + 10, 3);
        let contents: Vec<(&str, Option<i64>, Vec<u8>)> = vec![
            ("one.txt", None, b"first".to_vec()),
            ("two.txt", None, b"second".to_vec()),
            (
                "old.txt",
                Some(old.rev.into()),
                b"old content, edited".to_vec(),
            ),
            ("stale.txt", None, b"x".to_vec()),
            ("busy.txt", None, b"as hashed".to_vec()),
            ("large.bin", None, large.clone()),
        ];
        let files: Vec<PathBuf> = contents
            .iter()
            .enumerate()
            .map(|(i, (_, _, data))| {
                let f = dir.path().join(format!("f{i}"));
                std::fs::write(&f, data).unwrap();
                f
            })
            .collect();
        let hashes: Vec<String> = contents.iter().map(|(_, _, d)| sha(d)).collect();
        // Written to after it was hashed.
        std::fs::write(&files[4], b"changed since").unwrap();
        // Its parent is a revision the server does not have.
        let stale_parent = Some(99);
        let t = Transfers::default();
        let active: Vec<_> = files
            .iter()
            .map(|_| t.start("x", Direction::Upload, 0))
            .collect();
        let sending: Vec<Sending> = contents
            .iter()
            .enumerate()
            .map(|(i, (path, parent, _))| Sending {
                path,
                parent_rev: if i == 3 { stale_parent } else { *parent },
                file: &files[i],
                expected: &hashes[i],
                progress: &active[i].transfer,
            })
            .collect();
        let got = api.upload_many(&sending).await;
        assert_eq!(got.len(), sending.len());
        for (i, (path, _, data)) in contents.iter().enumerate() {
            match (i, &got[i]) {
                (3, Err(SyncError::Server { status: 404, .. } | SyncError::Conflict(_))) => {}
                (4, Err(SyncError::Busy(p))) => assert_eq!(p, path),
                (3 | 4, other) => panic!("{path}: {other:?}"),
                (_, Ok(meta)) => {
                    assert_eq!(
                        (meta.path.as_str(), meta.sha256.to_string()),
                        (*path, sha(data))
                    );
                    let dest = dir.path().join(format!("back{i}"));
                    get(api, &meta.file_id, &dest, &[]).await;
                    assert!(std::fs::read(&dest).unwrap() == *data, "{path} reads back");
                }
                (_, Err(e)) => panic!("{path}: {e}"),
            }
        }
        assert_eq!(api.upload_many(&[]).await.len(), 0);
    }
}
