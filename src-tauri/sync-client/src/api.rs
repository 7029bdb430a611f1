//! The File Management Service's REST API, as the sync engine uses it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use syncsphere_protocol::{
    ChangesPage, DEVICE_HEADER, DeviceList, ErrorBody, ErrorCode, FileMeta, MoveRequest,
    RegisterDevice, ServerConfig,
};
use tokio::io::AsyncWriteExt;

use crate::SyncError;
use crate::auth::TokenSource;

pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    tokens: Arc<TokenSource>,
    device_id: String,
}

pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
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
        .get(format!("{base}/v1/config"))
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
        }
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
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

    /// `PUT /v1/devices/{id}`: this device's name and platform, for the user's device list.
    pub(crate) async fn register_device(&self, name: &str) -> Result<(), SyncError> {
        let body = RegisterDevice {
            name: Some(name.to_owned()),
            platform: Some(std::env::consts::OS.to_owned()),
        };
        self.send(
            self.http
                .put(format!("{}/v1/devices/{}", self.base, self.device_id))
                .json(&body),
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn devices(&self) -> Result<DeviceList, SyncError> {
        self.json(self.http.get(format!("{}/v1/devices", self.base)))
            .await
    }

    pub(crate) async fn revoke_device(&self, device_id: &str) -> Result<(), SyncError> {
        let mut url = reqwest::Url::parse(&format!("{}/v1/devices/", self.base))
            .map_err(|e| SyncError::Config(format!("bad server URL: {e}")))?;
        url.path_segments_mut()
            .map_err(|_| SyncError::Config("bad server URL".into()))?
            .pop_if_empty()
            .push(device_id);
        self.send(self.http.delete(url)).await?;
        Ok(())
    }

    pub(crate) async fn changes(&self, cursor: i64) -> Result<ChangesPage, SyncError> {
        self.json(
            self.http
                .get(format!("{}/v1/changes", self.base))
                .query(&[("cursor", cursor)]),
        )
        .await
    }

    pub(crate) async fn upload(
        &self,
        path: &str,
        parent_rev: Option<i64>,
        file: &Path,
    ) -> Result<FileMeta, SyncError> {
        let f = tokio::fs::File::open(file)
            .await
            .map_err(|e| SyncError::Io(format!("opening {}", file.display()), e))?;
        let mut req = self
            .http
            .put(format!("{}/v1/files/content", self.base))
            .query(&[("path", path)]);
        if let Some(rev) = parent_rev {
            req = req.query(&[("parent_rev", rev)]);
        }
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(f));
        self.json(req.body(body)).await
    }

    /// Streams the file's current content into `dest` (fsynced) and returns its revision and
    /// verified SHA-256.
    pub(crate) async fn download(
        &self,
        file_id: &str,
        dest: &Path,
    ) -> Result<(i64, String), SyncError> {
        let resp = self
            .send(
                self.http
                    .get(format!("{}/v1/files/{file_id}/content", self.base)),
            )
            .await?;
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
        let io = |e| SyncError::Io(format!("writing {}", dest.display()), e);
        let mut out = tokio::fs::File::create(dest).await.map_err(io)?;
        let mut hasher = Sha256::new();
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| transport(&self.base, e))?;
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(io)?;
        }
        out.sync_all().await.map_err(io)?;
        let sha = hex::encode(hasher.finalize());
        if sha != expected {
            return Err(SyncError::Http(format!(
                "downloaded content does not match its hash ({sha} != {expected})"
            )));
        }
        Ok((rev, sha))
    }

    pub(crate) async fn delete(&self, file_id: &str, rev: i64) -> Result<FileMeta, SyncError> {
        self.json(
            self.http
                .delete(format!("{}/v1/files/{file_id}", self.base))
                .query(&[("parent_rev", rev)]),
        )
        .await
    }

    pub(crate) async fn move_file(
        &self,
        file_id: &str,
        new_path: &str,
        rev: i64,
    ) -> Result<FileMeta, SyncError> {
        self.json(
            self.http
                .post(format!("{}/v1/files/{file_id}/move", self.base))
                .json(&MoveRequest {
                    new_path: new_path.to_owned(),
                    parent_rev: rev,
                }),
        )
        .await
    }
}
