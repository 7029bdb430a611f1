//! REST edge of the File Management Service: request parsing, auth, and the mapping of
//! [`FilesError`] to HTTP statuses.

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
    CHUNK_CONTENT_HEADER, CHUNK_OFFSET_HEADER, CONTENTS_MAX_FILES, CONTENTS_MAX_SIZE, ChangesPage,
    ChangesQuery, ChunkRef, CommitRequest, ContentChunks, ContentFrame, ContentWanted,
    ContentsRequest, DEVICE_HEADER, DeleteQuery, DownloadQuery, FileList, FileMeta, MAX_CHUNK_SIZE,
    MAX_CHUNKS_PER_REQUEST, MissingChunks, MissingChunksRequest, MoveRequest, RestoreRequest,
    RevisionList, SINGLE_REQUEST_MAX, TrashList, UploadFrame, UploadQuery, UploadResult,
    UploadResults, Usage, normalize_path,
};
use syncsphere_protocol::{DeviceId, Seq};
use syncsphere_protocol::{FileId, Rev};

use crate::content::{Content, parse_range};

use crate::store::NewContent;
use crate::{FilesError, FilesState};

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

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, FilesError> {
    q.map(|Query(t)| t)
        .map_err(|e| FilesError::BadRequest(e.body_text()))
}

/// A JSON body, or the service's error for it: over the body limit 413, not declared as JSON
/// 415, anything else 400 — a body that is not an object too (serde would take an array for a
/// struct, field by field).
fn json<T: DeserializeOwned>(
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
fn device(headers: &HeaderMap, user: &AuthUser) -> Result<Option<DeviceId>, FilesError> {
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

async fn upload(
    State(state): State<FilesState>,
    user: AuthUser,
    headers: HeaderMap,
    q: Result<Query<UploadQuery>, QueryRejection>,
    body: Body,
) -> Result<Json<FileMeta>, FilesError> {
    let q = query(q)?;
    let path = normalize_path(&q.path)?;
    if q.parent_rev.is_some_and(|r| r < Rev(1)) {
        return Err(FilesError::BadRequest(
            "parent_rev must be at least 1".into(),
        ));
    }
    let device = device(&headers, &user)?;
    // Refuse before reading a body that can never fit (the commit checks again, exactly).
    if let (Some(quota), Some(len)) = (
        state.store.quota(),
        headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok()),
    ) && len > quota
    {
        return Err(FilesError::QuotaExceeded {
            used: state.store.usage(&user.user_id).await?,
            quota,
            needed: len,
        });
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = body.into_data_stream();
    // A small content is read into memory and committed inline (see [`crate::inline`]); a
    // larger one, or one that turns out larger than it said, streams into staging.
    let mut head = Vec::new();
    let mut small = None;
    if state.inline_max > 0 && declared.is_none_or(|len| len <= state.inline_max) {
        let mut len = 0u64;
        loop {
            match body.next().await {
                Some(Ok(piece)) => {
                    len += piece.len() as u64;
                    head.push(piece);
                    if len > state.inline_max {
                        break;
                    }
                }
                Some(Err(e)) => {
                    return Err(FilesError::BadRequest(format!("upload interrupted: {e}")));
                }
                None => {
                    small = Some(head.concat());
                    break;
                }
            }
        }
    }
    // The blob may already exist as an orphan: keep the collector off it until committed.
    let (size, sha256, _gc) = match &small {
        Some(data) => (
            data.len() as i64,
            hex::encode(Sha256::digest(data)),
            state.gc_lock.read().await,
        ),
        None => {
            let rest = futures_util::stream::iter(head.into_iter().map(Ok)).chain(body);
            let staged = state.staging.stage(rest).await?;
            let gc = state.gc_lock.read().await;
            // Made durable right here (fsync, rename, fsync of the directory): concurrent
            // uploads get their fsyncs merged by the filesystem's journal, without queueing
            // behind the chunk worker's batches.
            state.blobs.put(&user.user_id, &staged).await?;
            (staged.size, staged.sha256.clone(), gc)
        }
    };
    let (meta, change) = state
        .store
        .commit_content(
            &user.user_id,
            NewContent {
                path: &path,
                parent_rev: q.parent_rev,
                size,
                sha256: &sha256,
                device: device.as_ref(),
                inline: small.as_deref(),
            },
        )
        .await?;
    tracing::info!(user = %user.user_id, path = %meta.path, rev = meta.rev.get(), seq = change.seq.get(), "committed");
    state.events.publish(&user.user_id, Event::Change(change));
    Ok(Json(meta))
}

/// Longest header line of a `POST /v1/files/upload` body.
const UPLOAD_HEADER_MAX: usize = 8 * 1024;

/// One file of a batch upload, checked and ready to commit: inline, or staged for the store.
struct Prepared {
    path: String,
    parent_rev: Option<Rev>,
    size: i64,
    sha256: String,
    inline: Option<bytes::Bytes>,
}

/// `POST /v1/files/upload`: several small files in one request, each an [`UploadFrame`] line
/// and its bytes. Each file is checked and committed as its own `PUT /v1/files/content` would
/// be (path rules, `parent_rev`, its hash, the quota), with its own result; the commits go to
/// the store together (merged into few transactions by the group commit) and each is
/// announced to the user's other devices. A body that breaks the format (a bad header, too
/// many or too large files, cut short) is refused whole, before anything is committed.
async fn upload_files(
    State(state): State<FilesState>,
    user: AuthUser,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<UploadResults>, FilesError> {
    let device = device(&headers, &user)?;
    let mut body = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    // Per file: what to commit, or the error it gets.
    let mut files: Vec<Result<Prepared, FilesError>> = Vec::new();
    let mut staged = Vec::new();
    loop {
        let line = loop {
            if let Some(end) = buf.iter().position(|&b| b == b'\n') {
                break Some(buf.split_to(end + 1));
            }
            if buf.len() > UPLOAD_HEADER_MAX {
                return Err(FilesError::BadRequest(format!(
                    "file {}: a header line over {UPLOAD_HEADER_MAX} bytes",
                    files.len() + 1
                )));
            }
            match body.next().await {
                Some(Ok(piece)) => buf.extend_from_slice(&piece),
                Some(Err(e)) => {
                    return Err(FilesError::BadRequest(format!("upload interrupted: {e}")));
                }
                None => break None,
            }
        };
        let Some(line) = line else {
            if buf.is_empty() {
                break;
            }
            return Err(FilesError::BadRequest(
                "the body ends inside a header line".into(),
            ));
        };
        if files.len() == CONTENTS_MAX_FILES {
            return Err(FilesError::BadRequest(format!(
                "at most {CONTENTS_MAX_FILES} files per request"
            )));
        }
        let frame: UploadFrame = serde_json::from_slice(&line[..line.len() - 1]).map_err(|e| {
            FilesError::BadRequest(format!(
                "file {}: not an upload header: {e}",
                files.len() + 1
            ))
        })?;
        if !(0..=SINGLE_REQUEST_MAX as i64).contains(&frame.size) {
            return Err(FilesError::TooLarge(format!(
                "{}: {} bytes; a batch takes files of at most {SINGLE_REQUEST_MAX} bytes (send \
                 larger ones alone)",
                frame.path, frame.size
            )));
        }
        let size = frame.size as usize;
        while buf.len() < size {
            match body.next().await {
                Some(Ok(piece)) => buf.extend_from_slice(&piece),
                Some(Err(e)) => {
                    return Err(FilesError::BadRequest(format!("upload interrupted: {e}")));
                }
                None => {
                    return Err(FilesError::BadRequest(format!(
                        "the body ends inside the content of {}",
                        frame.path
                    )));
                }
            }
        }
        let data = buf.split_to(size).freeze();
        let prepared = async {
            let path = normalize_path(&frame.path)?;
            if frame.parent_rev.is_some_and(|r| r < Rev(1)) {
                return Err(FilesError::BadRequest(
                    "parent_rev must be at least 1".into(),
                ));
            }
            let sha256 = hex::encode(Sha256::digest(&data));
            if sha256 != frame.sha256 {
                return Err(FilesError::HashMismatch(format!(
                    "the content of {path} hashes to {sha256}, not {}",
                    frame.sha256
                )));
            }
            let inline = if data.len() as u64 <= state.inline_max {
                Some(data)
            } else {
                let piece = futures_util::stream::iter([Ok::<_, std::io::Error>(data)]);
                staged.push((user.user_id.to_string(), state.staging.stage(piece).await?));
                None
            };
            Ok(Prepared {
                path,
                parent_rev: frame.parent_rev,
                size: frame.size,
                sha256,
                inline,
            })
        }
        .await;
        files.push(prepared);
    }
    if files.is_empty() {
        return Err(FilesError::BadRequest("the body holds no files".into()));
    }
    // Blobs durable, then the commits — under the collector's lock, so a blob it found
    // orphaned cannot vanish between the two.
    let _gc = state.gc_lock.read().await;
    let stored = state.blobs.put_many(&staged).await;
    if let Some(Err(e)) = stored.into_iter().find(Result::is_err) {
        return Err(e);
    }
    let commits: Vec<_> = files
        .into_iter()
        .map(|file| {
            let (state, user, device) = (&state, &user, device.as_ref());
            async move {
                let file = file?;
                let (meta, change) = state
                    .store
                    .commit_content(
                        &user.user_id,
                        NewContent {
                            path: &file.path,
                            parent_rev: file.parent_rev,
                            size: file.size,
                            sha256: &file.sha256,
                            device,
                            inline: file.inline.as_deref(),
                        },
                    )
                    .await?;
                tracing::info!(user = %user.user_id, path = %meta.path, rev = meta.rev.get(), seq = change.seq.get(), "committed");
                state.events.publish(&user.user_id, Event::Change(change));
                Ok::<_, FilesError>(meta)
            }
        })
        .collect();
    let results = futures_util::future::join_all(commits)
        .await
        .into_iter()
        .map(|result| match result {
            Ok(meta) => UploadResult {
                file: Some(meta),
                error: None,
            },
            Err(e) => UploadResult {
                file: None,
                error: Some(syncsphere_protocol::ApiError::from(e).into_body()),
            },
        })
        .collect();
    Ok(Json(UploadResults { results }))
}

fn check_chunk_id(sha256: &str) -> Result<(), FilesError> {
    if sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(FilesError::BadRequest(format!(
            "'{}' is not a chunk id (64 lowercase hex digits of SHA-256)",
            sha256.chars().take(80).collect::<String>()
        )))
    }
}

/// `POST /v1/chunks/missing`: the chunks of the list this user's store lacks.
async fn missing_chunks(
    State(state): State<FilesState>,
    user: AuthUser,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Json<MissingChunks>, FilesError> {
    let req: MissingChunksRequest = json(body)?;
    if req.chunks.len() > MAX_CHUNKS_PER_REQUEST {
        return Err(FilesError::TooLarge(format!(
            "at most {MAX_CHUNKS_PER_REQUEST} chunk ids per request"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    let mut missing = Vec::new();
    for sha in req.chunks {
        check_chunk_id(&sha.to_string())?;
        if !seen.insert(sha.clone()) {
            continue;
        }
        // Asking about a chunk the server holds restarts its grace period: the client is
        // about to commit it.
        state.pending.settled(&user.user_id, &sha.to_string()).await;
        if !state.blobs.touch(&user.user_id, &sha.to_string()).await? {
            missing.push(sha);
        }
    }
    Ok(Json(MissingChunks { missing }))
}

/// `PUT /v1/chunks/{sha256}`: stores one chunk; idempotent; the bytes must hash to the id.
/// Acknowledged once received and verified; the chunk becomes durable in the background and
/// the commit that uses it waits for that (a chunk lost meanwhile is reported missing there).
/// With `x-syncsphere-content`/`x-syncsphere-offset` the chunk also goes into that content's
/// running hash (see [`crate::running`]).
async fn put_chunk(
    State(state): State<FilesState>,
    user: AuthUser,
    Path(sha256): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::http::StatusCode, FilesError> {
    check_chunk_id(&sha256)?;
    let place = chunk_place(&headers)?;
    state.pending.settled(&user.user_id, &sha256).await;
    if state.blobs.touch(&user.user_id, &sha256).await? {
        return Ok(axum::http::StatusCode::NO_CONTENT);
    }
    // An account at its quota cannot pile up chunks it will never be allowed to commit.
    if let Some(quota) = state.store.quota() {
        let used = state.store.usage(&user.user_id).await?;
        if used >= quota {
            return Err(FilesError::QuotaExceeded {
                used,
                quota,
                needed: 1,
            });
        }
    }
    let slot = state.pending.slot().await;
    let (staged, pieces) = state
        .staging
        .stage_keeping(body.into_data_stream(), MAX_CHUNK_SIZE)
        .await?;
    if staged.sha256 != sha256 {
        return Err(FilesError::HashMismatch(format!(
            "the uploaded bytes hash to {}, not {sha256}",
            staged.sha256
        )));
    }
    if let Some((content, offset)) = place {
        let (running, user_id) = (state.running.clone(), user.user_id.clone());
        let chunk = ChunkRef {
            sha256: sha256.clone().into(),
            size: staged.size,
        };
        tokio::task::spawn_blocking(move || {
            running.feed(&user_id, &content, offset, chunk, pieces);
        })
        .await
        .map_err(|e| FilesError::Blob(std::io::Error::other(e)))?;
    }
    state.pending.spawn(user.user_id.to_string(), staged, slot);
    Ok(axum::http::StatusCode::CREATED)
}

/// The optional content and offset headers of a chunk upload: both or neither.
fn chunk_place(headers: &HeaderMap) -> Result<Option<(String, u64)>, FilesError> {
    let value = |name: &str| -> Result<Option<&str>, FilesError> {
        headers
            .get(name)
            .map(|v| {
                v.to_str()
                    .map_err(|_| FilesError::BadRequest(format!("{name} must be ASCII")))
            })
            .transpose()
    };
    match (value(CHUNK_CONTENT_HEADER)?, value(CHUNK_OFFSET_HEADER)?) {
        (None, None) => Ok(None),
        (Some(content), Some(offset)) => {
            check_chunk_id(content)?;
            let offset = offset.parse::<u64>().map_err(|_| {
                FilesError::BadRequest(format!(
                    "{CHUNK_OFFSET_HEADER} must be a byte offset, not '{}'",
                    offset.chars().take(40).collect::<String>()
                ))
            })?;
            Ok(Some((content.to_owned(), offset)))
        }
        _ => Err(FilesError::BadRequest(format!(
            "{CHUNK_CONTENT_HEADER} and {CHUNK_OFFSET_HEADER} go together"
        ))),
    }
}

/// `POST /v1/files/commit`: creates or replaces a file from uploaded chunks.
async fn commit_chunks(
    State(state): State<FilesState>,
    user: AuthUser,
    headers: HeaderMap,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Json<FileMeta>, FilesError> {
    let req: CommitRequest = json(body)?;
    let path = normalize_path(&req.path)?;
    if req.parent_rev.is_some_and(|r| r < Rev(1)) {
        return Err(FilesError::BadRequest(
            "parent_rev must be at least 1".into(),
        ));
    }
    check_chunk_id(&req.sha256.to_string())?;
    if req.chunks.len() > MAX_CHUNKS_PER_REQUEST {
        return Err(FilesError::TooLarge(format!(
            "at most {MAX_CHUNKS_PER_REQUEST} chunks per file"
        )));
    }
    let mut total: i64 = 0;
    for c in &req.chunks {
        check_chunk_id(&c.sha256.to_string())?;
        if c.size < 1 || c.size as u64 > MAX_CHUNK_SIZE {
            return Err(FilesError::BadRequest(format!(
                "chunk {} has an invalid size {}",
                c.sha256, c.size
            )));
        }
        total = total.saturating_add(c.size);
    }
    if total != req.size {
        return Err(FilesError::HashMismatch(format!(
            "the chunks add up to {total} bytes, not {}",
            req.size
        )));
    }
    let device = device(&headers, &user)?;
    // From here to the metadata commit the collector cannot delete a chunk this commit uses:
    // each is touched (fresh for the grace period) under the read side of the GC lock.
    let _gc = state.gc_lock.read().await;
    let started = std::time::Instant::now();
    let mut missing = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for c in &req.chunks {
        if !seen.insert(&c.sha256) {
            continue;
        }
        state
            .pending
            .settled(&user.user_id, &c.sha256.to_string())
            .await;
        if !state
            .blobs
            .touch(&user.user_id, &c.sha256.to_string())
            .await?
        {
            missing.push(c.sha256.to_string());
        }
    }
    if !missing.is_empty() {
        return Err(FilesError::MissingChunks(missing));
    }
    let durable = started.elapsed();
    // The file's hash is the server's promise to every device that downloads it: from the
    // running hash when the chunks came in order with their place, else by reading the
    // content back (which also checks the chunk sizes against the stored chunks).
    let running = state
        .running
        .finish(&user.user_id, &req.sha256.to_string(), &req.chunks);
    let hashed_as_received = running.is_some();
    let actual = match running {
        Some(hash) => hash,
        None => {
            Content::of_chunks(&state.blobs, &user.user_id, &req.chunks)?
                .sha256()
                .await?
        }
    };
    tracing::debug!(
        chunks = req.chunks.len(),
        durable_ms = durable.as_millis() as u64,
        verified_ms = (started.elapsed() - durable).as_millis() as u64,
        hashed_as_received,
        "commit: chunks durable and verified"
    );
    if actual != req.sha256 {
        return Err(FilesError::HashMismatch(format!(
            "the chunks hash to {actual}, not {}",
            req.sha256
        )));
    }
    let single_blob = req.chunks.len() == 1 && req.chunks[0].sha256 == req.sha256;
    if !single_blob {
        state
            .store
            .put_manifest(
                &user.user_id,
                &req.sha256.to_string(),
                req.size,
                &req.chunks,
            )
            .await?;
    }
    let (meta, change) = state
        .store
        .commit_content(
            &user.user_id,
            NewContent {
                path: &path,
                parent_rev: req.parent_rev,
                size: req.size,
                sha256: &req.sha256.to_string(),
                device: device.as_ref(),
                inline: None,
            },
        )
        .await?;
    tracing::info!(user = %user.user_id, path = %meta.path, rev = meta.rev.get(), seq = change.seq.get(), chunks = req.chunks.len(), "committed chunks");
    state.events.publish(&user.user_id, Event::Change(change));
    Ok(Json(meta))
}

/// `GET /v1/account/usage`.
async fn usage(State(state): State<FilesState>, user: AuthUser) -> Result<Json<Usage>, FilesError> {
    Ok(Json(Usage {
        used_bytes: state.store.usage(&user.user_id).await?,
        quota_bytes: state.store.quota(),
    }))
}

async fn metadata(
    State(state): State<FilesState>,
    user: AuthUser,
    Path(file_id): Path<FileId>,
) -> Result<Json<FileMeta>, FilesError> {
    state
        .store
        .get(&user.user_id, &file_id)
        .await?
        .map(Json)
        .ok_or(FilesError::NotFound)
}

/// The revision `q.rev` (default: the current one) of a live file: its number, size and hash.
async fn live_revision(
    state: &FilesState,
    user: &AuthUser,
    file_id: &FileId,
    q: &DownloadQuery,
) -> Result<(i64, i64, String), FilesError> {
    Ok(match q.rev {
        None => {
            let meta = state
                .store
                .get(&user.user_id, file_id)
                .await?
                .filter(|m| !m.deleted)
                .ok_or(FilesError::NotFound)?;
            (meta.rev.into(), meta.size, meta.sha256.to_string())
        }
        Some(rev) => {
            let r = state
                .store
                .revision(&user.user_id, file_id, rev)
                .await?
                .filter(|r| !r.deleted)
                .ok_or(FilesError::NotFound)?;
            (r.rev.into(), r.size, r.sha256.to_string())
        }
    })
}

/// `GET /v1/files/{file_id}/chunks`: the chunks of a revision's content of a live file, in
/// file order (a content uploaded in one request is one chunk, its own hash), so a device
/// holding some of them fetches only the rest as ranges of `…/content?rev=`.
async fn chunks(
    State(state): State<FilesState>,
    user: AuthUser,
    Path(file_id): Path<FileId>,
    q: Result<Query<DownloadQuery>, QueryRejection>,
) -> Result<Json<ContentChunks>, FilesError> {
    let q = query(q)?;
    // For delta downloads of live files only: a deleted file's history is read whole.
    if q.rev.is_some() {
        live_revision(&state, &user, &file_id, &DownloadQuery::default()).await?;
    }
    let (rev, size, sha256) = live_revision(&state, &user, &file_id, &q).await?;
    let chunks = match state.store.manifest(&user.user_id, &sha256).await? {
        Some(chunks) => chunks,
        None if size > 0 => vec![ChunkRef {
            sha256: sha256.clone().into(),
            size,
        }],
        None => Vec::new(),
    };
    Ok(Json(ContentChunks {
        rev: Rev(rev),
        sha256: sha256.into(),
        size,
        chunks,
    }))
}

/// The current content, or with `?rev=N` the content of an older revision.
async fn download(
    State(state): State<FilesState>,
    user: AuthUser,
    Path(file_id): Path<FileId>,
    headers: HeaderMap,
    q: Result<Query<DownloadQuery>, QueryRejection>,
) -> Result<Response, FilesError> {
    let q = query(q)?;
    let (rev, size, sha256) = live_revision(&state, &user, &file_id, &q).await?;
    let content = Content::locate(&state.store, &state.blobs, &user.user_id, &sha256, size).await?;
    let total = content.size;
    let range = parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        total,
    )?;
    // A `Range` that names an older revision (If-Range with another rev) gets the whole body.
    let range = range.filter(|_| {
        headers
            .get(header::IF_RANGE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.trim_matches('"') == sha256)
    });
    let (start, len) = range.unwrap_or((0, total));
    let mut response = Body::from_stream(content.stream(start, len)).into_response();
    if range.is_some() {
        *response.status_mut() = axum::http::StatusCode::PARTIAL_CONTENT;
    }
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if range.is_some()
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{total}", start + len - 1))
    {
        headers.insert(header::CONTENT_RANGE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{sha256}\"")) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(REV_HEADER, HeaderValue::from(rev));
    if let Ok(v) = HeaderValue::from_str(&sha256) {
        headers.insert(SHA256_HEADER, v);
    }
    Ok(response)
}

/// `POST /v1/files/contents`: the contents of several (small) files in one streamed body, each
/// a [`ContentFrame`] line and its bytes, in request order. A file that is gone or too large for
/// a batch is a frame with an `error` (the others still come); a failure of the stores while
/// streaming ends the body early, which the client sees as a cut download.
async fn contents(
    State(state): State<FilesState>,
    user: AuthUser,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Response, FilesError> {
    let req: ContentsRequest = json(body)?;
    if req.files.len() > CONTENTS_MAX_FILES {
        return Err(FilesError::BadRequest(format!(
            "at most {CONTENTS_MAX_FILES} files per request ({} asked)",
            req.files.len()
        )));
    }
    if req.max_size.is_some_and(|m| m < 0) {
        return Err(FilesError::BadRequest(
            "max_size must not be negative".into(),
        ));
    }
    if let Some(w) = req.files.iter().find(|w| w.rev.is_some_and(|r| r < Rev(1))) {
        return Err(FilesError::BadRequest(format!(
            "{}: rev must be at least 1",
            w.file_id
        )));
    }
    let max_size = req
        .max_size
        .map_or(CONTENTS_MAX_SIZE, |m| m.min(CONTENTS_MAX_SIZE));
    let frames = futures_util::stream::iter(req.files)
        .then(move |wanted| {
            let (state, user) = (state.clone(), user.clone());
            async move { content_frame(&state, &user, wanted, max_size).await }
        })
        .flatten();
    let mut response = Body::from_stream(frames).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

type Frames = futures_util::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>;

/// One file's part of a contents body: its header line, then its bytes.
async fn content_frame(
    state: &FilesState,
    user: &AuthUser,
    wanted: ContentWanted,
    max_size: i64,
) -> Frames {
    let line = |frame: &ContentFrame| {
        let mut line = serde_json::to_vec(frame).unwrap_or_default();
        line.push(b'\n');
        bytes::Bytes::from(line)
    };
    let refused = |file_id: String, error: &str| {
        let frame = ContentFrame {
            file_id: file_id.into(),
            rev: None,
            sha256: None,
            size: None,
            error: Some(error.to_owned()),
        };
        futures_util::stream::once(std::future::ready(Ok(line(&frame)))).boxed()
    };
    let q = DownloadQuery { rev: wanted.rev };
    let (rev, size, sha256) = match live_revision(state, user, &wanted.file_id, &q).await {
        Ok(found) => found,
        Err(FilesError::NotFound) => return refused(wanted.file_id.to_string(), "not_found"),
        Err(e) => {
            return futures_util::stream::once(std::future::ready(Err(std::io::Error::other(e))))
                .boxed();
        }
    };
    if size > max_size {
        return refused(wanted.file_id.to_string(), "too_large");
    }
    let content = match Content::locate(&state.store, &state.blobs, &user.user_id, &sha256, size)
        .await
    {
        Ok(content) => content,
        Err(e) => {
            return futures_util::stream::once(std::future::ready(Err(std::io::Error::other(e))))
                .boxed();
        }
    };
    let frame = ContentFrame {
        file_id: wanted.file_id,
        rev: Some(Rev(rev)),
        sha256: Some(sha256.into()),
        size: Some(content.size as i64),
        error: None,
    };
    futures_util::stream::once(std::future::ready(Ok(line(&frame))))
        .chain(content.stream(0, content.size))
        .boxed()
}

async fn revisions(
    State(state): State<FilesState>,
    user: AuthUser,
    Path(file_id): Path<FileId>,
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
    Path(file_id): Path<FileId>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Json<FileMeta>, FilesError> {
    let req: RestoreRequest = json(body)?;
    let device = device(&headers, &user)?;
    // A revision that deleted the file has no content to bring back: the file's state refuses
    // the request, not its form (a revision never changes, so this check before the
    // transaction is exact; the store refuses it too).
    if let Some(old) = state
        .store
        .revision(&user.user_id, &file_id, req.rev)
        .await?
        && old.deleted
    {
        return Err(FilesError::conflict(
            format!(
                "revision {} deleted the file; restore an earlier revision",
                req.rev
            ),
            state.store.get(&user.user_id, &file_id).await?,
        ));
    }
    let (meta, change) = state
        .store
        .restore(
            &user.user_id,
            &file_id,
            req.rev,
            req.parent_rev,
            device.as_ref(),
        )
        .await?;
    tracing::info!(user = %user.user_id, path = %meta.path, from_rev = req.rev.get(), rev = meta.rev.get(), seq = change.seq.get(), "restored");
    state.events.publish(&user.user_id, Event::Change(change));
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

async fn delete(
    State(state): State<FilesState>,
    user: AuthUser,
    headers: HeaderMap,
    Path(file_id): Path<FileId>,
    q: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Json<FileMeta>, FilesError> {
    let q = query(q)?;
    let device = device(&headers, &user)?;
    let (meta, change) = state
        .store
        .delete(&user.user_id, &file_id, q.parent_rev, device.as_ref())
        .await?;
    tracing::info!(user = %user.user_id, path = %meta.path, seq = change.seq.get(), "deleted");
    state.events.publish(&user.user_id, Event::Change(change));
    Ok(Json(meta))
}

async fn move_file(
    State(state): State<FilesState>,
    user: AuthUser,
    headers: HeaderMap,
    Path(file_id): Path<FileId>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Json<FileMeta>, FilesError> {
    let req: MoveRequest = json(body)?;
    let new_path = normalize_path(&req.new_path)?;
    let device = device(&headers, &user)?;
    let (meta, change) = state
        .store
        .move_file(
            &user.user_id,
            &file_id,
            &new_path,
            req.parent_rev,
            device.as_ref(),
        )
        .await?;
    tracing::info!(user = %user.user_id, from = ?change.old_path, to = %meta.path, seq = change.seq.get(), "moved");
    state.events.publish(&user.user_id, Event::Change(change));
    Ok(Json(meta))
}

async fn list(
    State(state): State<FilesState>,
    user: AuthUser,
) -> Result<Json<FileList>, FilesError> {
    Ok(Json(state.store.list(&user.user_id).await?))
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
    if q.cursor < Seq(0) {
        return Err(FilesError::BadRequest("cursor must not be negative".into()));
    }
    let limit = q.limit.unwrap_or(crate::store::MAX_CHANGES_PAGE);
    Ok(Json(
        state.store.changes(&user.user_id, q.cursor, limit).await?,
    ))
}
