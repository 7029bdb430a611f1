//! Reading: a file's metadata, its content (ranges, older revisions), its
//! chunk list (delta downloads) and several small contents in one body.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use syncsphere_protocol::CONTENTS_MAX_TOTAL;

use super::*;

pub(super) async fn metadata(
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
pub(super) async fn live_revision(
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
pub(super) async fn chunks(
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
pub(super) async fn download(
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
pub(super) async fn contents(
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
    // The response's budget, spent in request order (the frames are made one after another).
    let left = Arc::new(AtomicI64::new(CONTENTS_MAX_TOTAL));
    let frames = futures_util::stream::iter(req.files)
        .then(move |wanted| {
            let (state, user, left) = (state.clone(), user.clone(), left.clone());
            async move {
                let max_size = max_size.min(left.load(Ordering::Relaxed));
                let (frames, sent) = content_frame(&state, &user, wanted, max_size).await;
                left.fetch_sub(sent, Ordering::Relaxed);
                frames
            }
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

/// One file's part of a contents body: its header line, then its bytes; and how many content
/// bytes that is.
pub(super) async fn content_frame(
    state: &FilesState,
    user: &AuthUser,
    wanted: ContentWanted,
    max_size: i64,
) -> (Frames, i64) {
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
        Err(FilesError::NotFound) => {
            return (refused(wanted.file_id.to_string(), "not_found"), 0);
        }
        Err(e) => return (failed(e), 0),
    };
    if size > max_size {
        return (refused(wanted.file_id.to_string(), "too_large"), 0);
    }
    let content =
        match Content::locate(&state.store, &state.blobs, &user.user_id, &sha256, size).await {
            Ok(content) => content,
            Err(e) => return (failed(e), 0),
        };
    let frame = ContentFrame {
        file_id: wanted.file_id,
        rev: Some(Rev(rev)),
        sha256: Some(sha256.into()),
        size: Some(content.size as i64),
        error: None,
    };
    let frames = futures_util::stream::once(std::future::ready(Ok(line(&frame))))
        .chain(content.stream(0, content.size))
        .boxed();
    (frames, content.size as i64)
}

/// A body that ends with `e` (a store failed: the client sees a cut download).
fn failed(e: impl std::fmt::Display) -> Frames {
    let e = std::io::Error::other(e.to_string());
    futures_util::stream::once(std::future::ready(Err(e))).boxed()
}
