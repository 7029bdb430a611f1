//! The File Management Service's REST API, as the sync engine uses it. Every URL and method
//! comes from the protocol's endpoint descriptions ([`syncsphere_protocol::endpoint`]), and
//! so do the body and answer types of the typed calls ([`Api::fetch`], [`Api::submit`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use syncsphere_protocol::endpoint::{self, Endpoint};
use syncsphere_protocol::{
    CHUNK_CONTENT_HEADER, CHUNK_OFFSET_HEADER, ChangesPage, ChangesQuery, CommitRequest,
    ContentChunks, ContentFrame, ContentWanted, ContentsRequest, DEVICE_HEADER, DOWNLOAD_WINDOW,
    DeleteQuery, DeviceList, DownloadQuery, ErrorBody, ErrorCode, FileMeta, ListFilesQuery,
    MissingChunks, MissingChunksRequest, MoveRequest, RegisterDevice, SINGLE_REQUEST_MAX,
    ServerConfig, UploadFrame, UploadQuery, UploadResults,
};
use syncsphere_protocol::{ContentHash, Rev, Seq};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::SyncError;
use crate::auth::TokenSource;
use crate::chunker::{Chunk, ChunkedFile, chunk_file_with, read_as_listed};
use crate::delta;
use crate::throttle::Throttle;
use crate::transfer::Transfer;

mod check;
mod download;
mod upload;

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
    /// The server takes chunked content ids ([`Api::set_chunked_ids`]).
    chunked_ids: std::sync::atomic::AtomicBool,
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
#[derive(Clone, Copy)]
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
        SyncError::SignedOut => SyncError::SignedOut,
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
        Some(b) if b.error == ErrorCode::SignedOut => SyncError::SignedOut,
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
    /// The device the requests speak for (`x-syncsphere-device`).
    pub(crate) fn device(&self) -> &str {
        &self.device_id
    }

    /// Whether the server takes chunked content ids (`/v1/config`); until told, it does not.
    pub(crate) fn set_chunked_ids(&self, on: bool) {
        self.chunked_ids.store(on, Ordering::Relaxed);
    }

    pub(crate) fn chunked_ids(&self) -> bool {
        self.chunked_ids.load(Ordering::Relaxed)
    }

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
            chunked_ids: Default::default(),
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

    /// Every live file, page by page (`GET /v1/files` answers at most `LIST_PAGE_MAX` at once:
    /// API Gateway's 10 MB, 0040), in path order.
    pub(crate) async fn list_files(&self) -> Result<Vec<FileMeta>, SyncError> {
        let mut files = Vec::new();
        let mut query = ListFilesQuery::default();
        loop {
            let page = self.fetch_with::<endpoint::ListFiles>(&[], &query).await?;
            files.extend(page.files);
            match page.next {
                // A server that pages must move on; one that does not sends no `next`.
                Some(next) if query.after.as_ref() != Some(&next) => query.after = Some(next),
                _ => return Ok(files),
            }
        }
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

    /// `POST /v1/account/sign-out`: every access token of the account issued until now stops
    /// working on every service.
    pub(crate) async fn sign_out_everywhere(&self) -> Result<(), SyncError> {
        self.send(self.request::<endpoint::SignOutEverywhere>(&[]))
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
mod tests;
