//! REST edge of the File Management Service: the router and what every handler shares
//! (query and JSON parsing, the device header); the handlers by room in the submodules.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};
use syncsphere_auth::AuthUser;
use syncsphere_auth::routes::{Mount, RouterExt};
use syncsphere_events::Event;
use syncsphere_protocol::endpoint::{self, Endpoint};
use syncsphere_protocol::{
    CHUNK_CONTENT_HEADER, CHUNK_OFFSET_HEADER, CHUNKED_ID_ABOVE, CHUNKED_ID_PREFIX,
    CONTENTS_MAX_FILES, CONTENTS_MAX_SIZE, ChangesPage, ChangesQuery, ChunkRef, CommitRequest,
    ContentChunks, ContentFrame, ContentHash, ContentWanted, ContentsRequest, DEVICE_HEADER,
    DeleteQuery, DownloadQuery, FileList, FileMeta, MAX_CHUNK_SIZE, MAX_CHUNKS_PER_REQUEST,
    MissingChunks, MissingChunksRequest, MoveRequest, RestoreRequest, RevisionList,
    SINGLE_REQUEST_MAX, TrashList, UploadFrame, UploadQuery, UploadResult, UploadResults, Usage,
    chunked_content_id, normalize_path,
};
use syncsphere_protocol::{DeviceId, Seq};
use syncsphere_protocol::{FileId, Rev};

use crate::content::{Content, parse_range};

use crate::store::NewContent;
use crate::{FilesError, FilesState};

mod chunks;
mod download;
mod history;
mod listing;
mod upload;

use chunks::{commit_chunks, missing_chunks, put_chunk};
use download::{chunks, contents, download, metadata};
use history::{delete, move_file, restore, revisions, trash};
use listing::{changes, list, usage};
use upload::{upload, upload_files};

/// Response headers of a download: which revision and content the bytes are.
pub const REV_HEADER: &str = "x-syncsphere-rev";
pub const SHA256_HEADER: &str = "x-syncsphere-sha256";

pub fn router(state: FilesState) -> Router {
    Router::new()
        .endpoint(endpoint::ListFiles, list)
        .route(
            endpoint::UploadFile::PATH,
            endpoint::UploadFile::on(upload).layer(DefaultBodyLimit::disable()),
        )
        .route(
            endpoint::UploadFiles::PATH,
            endpoint::UploadFiles::on(upload_files).layer(DefaultBodyLimit::disable()),
        )
        .endpoint(endpoint::CommitChunks, commit_chunks)
        .endpoint(endpoint::FindMissingChunks, missing_chunks)
        .route(
            endpoint::PutChunk::PATH,
            endpoint::PutChunk::on(put_chunk).layer(DefaultBodyLimit::disable()),
        )
        .endpoint(endpoint::GetFile, metadata)
        .endpoint(endpoint::DeleteFile, delete)
        .endpoint(endpoint::DownloadFile, download)
        .endpoint(endpoint::GetFileChunks, chunks)
        .endpoint(endpoint::DownloadContents, contents)
        .endpoint(endpoint::MoveFile, move_file)
        .endpoint(endpoint::ListRevisions, revisions)
        .endpoint(endpoint::RestoreRevision, restore)
        .endpoint(endpoint::ListTrash, trash)
        .endpoint(endpoint::ListChanges, changes)
        .endpoint(endpoint::GetUsage, usage)
        .with_state(state)
}

pub(super) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, FilesError> {
    q.map(|Query(t)| t)
        .map_err(|e| FilesError::BadRequest(e.body_text()))
}

/// A JSON body, or the service's error for it: over the body limit 413, not declared as JSON
/// 415, anything else 400 — a body that is not an object too (serde would take an array for a
/// struct, field by field).
pub(super) fn json<T: DeserializeOwned>(
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<T, FilesError> {
    let Json(value) = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => FilesError::TooLarge(e.body_text()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => FilesError::UnsupportedMediaType(e.body_text()),
        _ => FilesError::BadRequest(e.body_text()),
    })?;
    if !value.is_object() {
        return Err(FilesError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    }
    T::deserialize(value).map_err(|e| FilesError::BadRequest(format!("invalid body: {e}")))
}

/// The device a request comes from: the optional `X-SyncSphere-Device` header (a short
/// printable id), which must agree with the token's device when the token is device-bound.
pub(super) fn device(headers: &HeaderMap, user: &AuthUser) -> Result<Option<DeviceId>, FilesError> {
    let Some(value) = headers.get(DEVICE_HEADER) else {
        return Ok(user.device_key.clone());
    };
    let value = value
        .to_str()
        .map_err(|_| FilesError::BadRequest("device id must be ASCII".into()))?;
    if value.is_empty() || value.len() > 128 || value.chars().any(|c| c.is_control()) {
        return Err(FilesError::BadRequest(
            "device id must be 1-128 printable characters".into(),
        ));
    }
    if user.device_key.as_ref().is_some_and(|bound| bound != value) {
        return Err(FilesError::BadRequest(
            "the device header does not match the token's device".into(),
        ));
    }
    Ok(Some(DeviceId::from(value)))
}
