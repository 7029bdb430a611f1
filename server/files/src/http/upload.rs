//! Uploads of whole small files: one (`PUT /v1/files/content`) or a batch
//! (`POST /v1/files/upload`).

use super::*;
use std::sync::Arc;
use syncsphere_protocol::UserId;

use crate::blobs::StagedBlob;

pub(super) async fn upload(
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
            staged: 0,
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
    let (size, sha256, _gc, recheck) = match &small {
        Some(data) => (
            data.len() as i64,
            hex::encode(Sha256::digest(data)),
            state.gc_lock.read().await,
            None,
        ),
        None => {
            let rest = futures_util::stream::iter(head.into_iter().map(Ok)).chain(body);
            let staged = state.staging.stage(rest).await?;
            let gc = state.gc_lock.read().await;
            // Made durable right here (fsync, rename, fsync of the directory): concurrent
            // uploads get their fsyncs merged by the filesystem's journal, without queueing
            // behind the chunk worker's batches.
            state.blobs.put(&user.user_id, &staged).await?;
            let (size, sha256) = (staged.size, staged.sha256.clone());
            (
                size,
                sha256,
                gc,
                stored_again(&state, &user.user_id, Arc::new(staged)),
            )
        }
    };
    let (meta, change) = state
        .store
        .commit_content_checked(
            &user.user_id,
            NewContent {
                path: &path,
                parent_rev: q.parent_rev,
                size,
                sha256: &sha256,
                device: device.as_ref(),
                inline: small.as_deref(),
                manifest: None,
            },
            recheck,
        )
        .await?;
    tracing::info!(user = %user.user_id, path = %meta.path, rev = meta.rev.get(), seq = change.seq.get(), "committed");
    state.events.publish(&user.user_id, Event::Change(change));
    Ok(Json(meta))
}

/// Longest header line of a `POST /v1/files/upload` body.
pub(super) const UPLOAD_HEADER_MAX: usize = 8 * 1024;

/// One file of a batch upload, checked and ready to commit: inline, or staged for the store.
pub(super) struct Prepared {
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
pub(super) async fn upload_files(
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
    let staged: std::collections::HashMap<String, Arc<StagedBlob>> = staged
        .into_iter()
        .map(|(_, blob)| (blob.sha256.clone(), Arc::new(blob)))
        .collect();
    let commits: Vec<_> = files
        .into_iter()
        .map(|file| {
            let (state, user, device) = (&state, &user, device.as_ref());
            let blob = file
                .as_ref()
                .ok()
                .filter(|f| f.inline.is_none())
                .and_then(|f| staged.get(&f.sha256).cloned());
            async move {
                let file = file?;
                let recheck = blob.and_then(|blob| stored_again(state, &user.user_id, blob));
                let (meta, change) = state
                    .store
                    .commit_content_checked(
                        &user.user_id,
                        NewContent {
                            path: &file.path,
                            parent_rev: file.parent_rev,
                            size: file.size,
                            sha256: &file.sha256,
                            device,
                            inline: file.inline.as_deref(),
                            manifest: None,
                        },
                        recheck,
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

/// The check a whole-content commit makes under the collector's lock (decision 0049): its blob
/// still exists, else it is stored again from the staged copy — it may have been an old
/// orphan that a sweep in another process deleted between this request's store and commit.
fn stored_again(
    state: &FilesState,
    user_id: &UserId,
    staged: Arc<StagedBlob>,
) -> Option<crate::store::Recheck> {
    let (store, user_id) = (state.blobs.clone(), user_id.to_string());
    Some(crate::store::recheck_op(move |_| {
        Box::pin(async move {
            if store
                .stat_in_store(&user_id, &staged.sha256)
                .await?
                .is_none()
            {
                tracing::info!(user = %user_id, sha256 = %staged.sha256, "an uploaded content was collected meanwhile: stored again");
                store.put(&user_id, &staged).await?;
            }
            Ok(())
        })
    }))
}
