//! REST edge of the File Management Service: request parsing, auth, and the mapping of
//! [`FilesError`] to HTTP statuses.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use syncsphere_auth::AuthUser;
use syncsphere_protocol::{
    ChangesPage, DEVICE_HEADER, FileList, FileMeta, MoveRequest, RestoreRequest, RevisionList,
    TrashList, normalize_path,
};
use tokio_util::io::ReaderStream;

use crate::store::NewContent;
use crate::{FilesError, FilesState};

/// Response headers of a download: which revision and content the bytes are.
pub const REV_HEADER: &str = "x-syncsphere-rev";
pub const SHA256_HEADER: &str = "x-syncsphere-sha256";

pub fn router(state: FilesState) -> Router {
    Router::new()
        .route("/v1/files", get(list))
        .route(
            "/v1/files/content",
            put(upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/files/{file_id}", get(metadata).delete(delete))
        .route("/v1/files/{file_id}/content", get(download))
        .route("/v1/files/{file_id}/move", post(move_file))
        .route("/v1/files/{file_id}/revisions", get(revisions))
        .route("/v1/files/{file_id}/restore", post(restore))
        .route("/v1/trash", get(trash))
        .route("/v1/changes", get(changes))
        .with_state(state)
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, FilesError> {
    q.map(|Query(t)| t)
        .map_err(|e| FilesError::BadRequest(e.body_text()))
}

/// The device a request comes from: the optional `X-SyncSphere-Device` header (a short
/// printable id), which must agree with the token's device when the token is device-bound.
fn device(headers: &HeaderMap, user: &AuthUser) -> Result<Option<String>, FilesError> {
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
    Ok(Some(value.to_owned()))
}

#[derive(Deserialize)]
struct UploadQuery {
    path: String,
    parent_rev: Option<i64>,
}

async fn upload(
    State(state): State<FilesState>,
    user: AuthUser,
    headers: HeaderMap,
    q: Result<Query<UploadQuery>, QueryRejection>,
    body: Body,
) -> Result<Json<FileMeta>, FilesError> {
    let q = query(q)?;
    let path = normalize_path(&q.path)?;
    if q.parent_rev.is_some_and(|r| r < 1) {
        return Err(FilesError::BadRequest(
            "parent_rev must be at least 1".into(),
        ));
    }
    let device = device(&headers, &user)?;
    let staged = state.blobs.stage(body.into_data_stream()).await?;
    state.blobs.commit(&user.user_id, &staged).await?;
    let (meta, change) = state
        .store
        .commit_content(
            &user.user_id,
            NewContent {
                path: &path,
                parent_rev: q.parent_rev,
                size: staged.size,
                sha256: &staged.sha256,
                device: device.as_deref(),
            },
        )
        .await?;
    tracing::info!(user = %user.user_id, path = %meta.path, rev = meta.rev, seq = change.seq, "committed");
    state.sink.publish(&user.user_id, &change);
    Ok(Json(meta))
}

async fn metadata(
    State(state): State<FilesState>,
    user: AuthUser,
    Path(file_id): Path<String>,
) -> Result<Json<FileMeta>, FilesError> {
    state
        .store
        .get(&user.user_id, &file_id)
        .await?
        .map(Json)
        .ok_or(FilesError::NotFound)
}

#[derive(Deserialize)]
struct DownloadQuery {
    rev: Option<i64>,
}

/// The current content, or with `?rev=N` the content of an older revision.
async fn download(
    State(state): State<FilesState>,
    user: AuthUser,
    Path(file_id): Path<String>,
    q: Result<Query<DownloadQuery>, QueryRejection>,
) -> Result<Response, FilesError> {
    let q = query(q)?;
    let (rev, size, sha256) = match q.rev {
        None => {
            let meta = state
                .store
                .get(&user.user_id, &file_id)
                .await?
                .filter(|m| !m.deleted)
                .ok_or(FilesError::NotFound)?;
            (meta.rev, meta.size, meta.sha256)
        }
        Some(rev) => {
            let r = state
                .store
                .revision(&user.user_id, &file_id, rev)
                .await?
                .filter(|r| !r.deleted)
                .ok_or(FilesError::NotFound)?;
            (r.rev, r.size, r.sha256)
        }
    };
    let file = state.blobs.open_blob(&user.user_id, &sha256).await?;
    let mut response = Body::from_stream(ReaderStream::new(file)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    headers.insert(REV_HEADER, HeaderValue::from(rev));
    if let Ok(v) = HeaderValue::from_str(&sha256) {
        headers.insert(SHA256_HEADER, v);
    }
    Ok(response)
}

async fn revisions(
    State(state): State<FilesState>,
    user: AuthUser,
    Path(file_id): Path<String>,
) -> Result<Json<RevisionList>, FilesError> {
    let revisions = state
        .store
        .revisions(&user.user_id, &file_id)
        .await?
        .ok_or(FilesError::NotFound)?;
    Ok(Json(RevisionList { file_id, revisions }))
}

async fn restore(
    State(state): State<FilesState>,
    user: AuthUser,
    headers: HeaderMap,
    Path(file_id): Path<String>,
    body: Result<Json<RestoreRequest>, JsonRejection>,
) -> Result<Json<FileMeta>, FilesError> {
    let Json(req) = body.map_err(|e| FilesError::BadRequest(e.body_text()))?;
    let device = device(&headers, &user)?;
    let (meta, change) = state
        .store
        .restore(
            &user.user_id,
            &file_id,
            req.rev,
            req.parent_rev,
            device.as_deref(),
        )
        .await?;
    tracing::info!(user = %user.user_id, path = %meta.path, from_rev = req.rev, rev = meta.rev, seq = change.seq, "restored");
    state.sink.publish(&user.user_id, &change);
    Ok(Json(meta))
}

async fn trash(
    State(state): State<FilesState>,
    user: AuthUser,
) -> Result<Json<TrashList>, FilesError> {
    Ok(Json(TrashList {
        files: state.store.trash(&user.user_id).await?,
    }))
}

#[derive(Deserialize)]
struct RevQuery {
    parent_rev: i64,
}

async fn delete(
    State(state): State<FilesState>,
    user: AuthUser,
    headers: HeaderMap,
    Path(file_id): Path<String>,
    q: Result<Query<RevQuery>, QueryRejection>,
) -> Result<Json<FileMeta>, FilesError> {
    let q = query(q)?;
    let device = device(&headers, &user)?;
    let (meta, change) = state
        .store
        .delete(&user.user_id, &file_id, q.parent_rev, device.as_deref())
        .await?;
    tracing::info!(user = %user.user_id, path = %meta.path, seq = change.seq, "deleted");
    state.sink.publish(&user.user_id, &change);
    Ok(Json(meta))
}

async fn move_file(
    State(state): State<FilesState>,
    user: AuthUser,
    headers: HeaderMap,
    Path(file_id): Path<String>,
    body: Result<Json<MoveRequest>, JsonRejection>,
) -> Result<Json<FileMeta>, FilesError> {
    let Json(req) = body.map_err(|e| FilesError::BadRequest(e.body_text()))?;
    let new_path = normalize_path(&req.new_path)?;
    let device = device(&headers, &user)?;
    let (meta, change) = state
        .store
        .move_file(
            &user.user_id,
            &file_id,
            &new_path,
            req.parent_rev,
            device.as_deref(),
        )
        .await?;
    tracing::info!(user = %user.user_id, from = ?change.old_path, to = %meta.path, seq = change.seq, "moved");
    state.sink.publish(&user.user_id, &change);
    Ok(Json(meta))
}

async fn list(
    State(state): State<FilesState>,
    user: AuthUser,
) -> Result<Json<FileList>, FilesError> {
    Ok(Json(state.store.list(&user.user_id).await?))
}

#[derive(Deserialize)]
struct ChangesQuery {
    #[serde(default)]
    cursor: i64,
    limit: Option<i64>,
}

async fn changes(
    State(state): State<FilesState>,
    user: AuthUser,
    headers: HeaderMap,
    q: Result<Query<ChangesQuery>, QueryRejection>,
) -> Result<Json<ChangesPage>, FilesError> {
    let q = query(q)?;
    // A journal read is the device checking in: it updates the device's "last seen".
    if let (Some(devices), Some(device)) = (&state.devices, device(&headers, &user)?)
        && let Err(e) = devices.touch(&user.user_id, &device).await
    {
        tracing::warn!(error = %e, "recording when the device was last seen failed");
    }
    if q.cursor < 0 {
        return Err(FilesError::BadRequest("cursor must not be negative".into()));
    }
    let limit = q.limit.unwrap_or(crate::store::MAX_CHANGES_PAGE);
    Ok(Json(
        state.store.changes(&user.user_id, q.cursor, limit).await?,
    ))
}
