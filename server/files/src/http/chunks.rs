//! Chunked uploads: which chunks are missing, one chunk, and the commit of a
//! content made of chunks.

use super::*;
use crate::now_ms;
use futures_util::TryStreamExt as _;
use syncsphere_protocol::UserId;

pub(super) fn check_chunk_id(sha256: &str) -> Result<(), FilesError> {
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
pub(super) async fn missing_chunks(
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
    let mut present = Vec::new();
    for sha in req.chunks {
        check_chunk_id(&sha.to_string())?;
        if !seen.insert(sha.clone()) {
            continue;
        }
        // Asking about a chunk the server holds restarts its grace period: the client is
        // about to commit it.
        state.pending.settled(&user.user_id, &sha.to_string()).await;
        if state
            .blobs
            .touch(&user.user_id, &sha.to_string())
            .await?
            .is_some()
        {
            present.push(sha.to_string());
        } else {
            missing.push(sha);
        }
    }
    // Those still staged count from now again, as the collector keeps them from now.
    let present: Vec<&str> = present.iter().map(String::as_str).collect();
    state
        .store
        .refresh_staged(&user.user_id, &present, now_ms())
        .await?;
    Ok(Json(MissingChunks { missing }))
}

/// `PUT /v1/chunks/{sha256}`: stores one chunk; idempotent; the bytes must hash to the id.
/// Acknowledged once received and verified; the chunk becomes durable in the background and
/// the commit that uses it waits for that (a chunk lost meanwhile is reported missing there).
/// With `x-syncsphere-content`/`x-syncsphere-offset` the chunk also goes into that content's
/// running hash (see [`crate::running`]).
pub(super) async fn put_chunk(
    State(state): State<FilesState>,
    user: AuthUser,
    Path(sha256): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::http::StatusCode, FilesError> {
    let place = match before_the_body(&state, &user.user_id, &sha256, &headers).await {
        Ok(Some(place)) => place,
        early => {
            // Answered without the bytes (held already, refused): they are read and dropped
            // first. A server that answers and closes with the body unread resets the
            // connection under the client's write, which then sees a broken pipe instead of
            // the answer (and its `Retry-After`). A chunk is at most `MAX_CHUNK_SIZE`.
            discard(body).await;
            return early.map(|_| axum::http::StatusCode::NO_CONTENT);
        }
    };
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
    let size = staged.size;
    state.pending.spawn(user.user_id.to_string(), staged, slot);
    state
        .store
        .record_staged(&user.user_id, &sha256, size, now_ms())
        .await?;
    Ok(axum::http::StatusCode::CREATED)
}

/// The checks of a chunk upload that need no bytes: `Some(place)` when the bytes are to be
/// stored (with the content and offset they go to, if given), `None` when the user's store
/// holds the chunk already; an error refuses it (a bad id or place, the staged limit).
async fn before_the_body(
    state: &FilesState,
    user_id: &UserId,
    sha256: &str,
    headers: &HeaderMap,
) -> Result<Option<Option<(String, u64)>>, FilesError> {
    check_chunk_id(sha256)?;
    let place = chunk_place(headers)?;
    state.pending.settled(user_id, sha256).await;
    if state.blobs.touch(user_id, sha256).await?.is_some() {
        return Ok(None);
    }
    // A new chunk is staged until a commit uses it: the user's staged bytes are bounded, and
    // with a quota they count against it (an account cannot pile up chunks it will never be
    // allowed to commit, nor escape its quota by never committing; see `store::staged`). A
    // body of unknown length (chunked transfer) counts as the largest chunk: counted as
    // nothing, it passed a limit just reached.
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(MAX_CHUNK_SIZE as i64);
    state.store.admit_chunk(user_id, declared, now_ms()).await?;
    Ok(Some(place))
}

/// Reads and drops a request body, at most a chunk's size of it (a larger one is cut where
/// the connection closes; a stalled one by the server's body timeout).
async fn discard(body: Body) {
    let mut left = MAX_CHUNK_SIZE as usize + 1;
    let mut stream = body.into_data_stream();
    while let Ok(Some(piece)) = stream.try_next().await {
        left = left.saturating_sub(piece.len());
        if left == 0 {
            break;
        }
    }
}

/// The optional content and offset headers of a chunk upload: both or neither.
pub(super) fn chunk_place(headers: &HeaderMap) -> Result<Option<(String, u64)>, FilesError> {
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
pub(super) async fn commit_chunks(
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
    if req.sha256.is_chunked() {
        if req.size as u64 <= CHUNKED_ID_ABOVE {
            return Err(FilesError::BadRequest(format!(
                "a content of {} bytes is named by the SHA-256 of its bytes, not a chunked id \
                 (those are for contents over {CHUNKED_ID_ABOVE} bytes)",
                req.size
            )));
        }
    } else if !req.sha256.is_sha256() {
        return Err(FilesError::BadRequest(format!(
            "'{}' is not a content id (64 lowercase hex digits of SHA-256, or {CHUNKED_ID_PREFIX} \
             and 64 of a chunked id)",
            req.sha256.to_string().chars().take(80).collect::<String>()
        )));
    }
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
    let mut touched = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for c in &req.chunks {
        if !seen.insert(&c.sha256) {
            continue;
        }
        state
            .pending
            .settled(&user.user_id, &c.sha256.to_string())
            .await;
        match state
            .blobs
            .touch(&user.user_id, &c.sha256.to_string())
            .await?
        {
            None => missing.push(c.sha256.to_string()),
            Some((size, _)) if size != c.size as u64 => {
                return Err(FilesError::HashMismatch(format!(
                    "chunk {} is {size} bytes, not {}",
                    c.sha256, c.size
                )));
            }
            Some((_, modified)) => touched.push((c.sha256.to_string(), modified)),
        }
    }
    if !missing.is_empty() {
        return Err(FilesError::MissingChunks(missing));
    }
    let durable = started.elapsed();
    // The file's id is the server's promise to every device that downloads it. A chunked id
    // is the fold of the chunk hashes: each chunk was verified as it was stored and its size
    // was just checked, so no byte is read again (decision 0051). The SHA-256 of the bytes
    // (clients from before chunked ids) comes from the running hash when the chunks came in
    // order with their place, else from reading the content back.
    let (actual, how) = if req.sha256.is_chunked() {
        let hashes = req.chunks.iter().filter_map(|c| match &c.sha256 {
            ContentHash::Sha256(bytes) => Some(bytes),
            _ => None, // cannot be: each passed `check_chunk_id`
        });
        (
            chunked_content_id(req.size as u64, hashes),
            "folded the chunk hashes",
        )
    } else {
        match state
            .running
            .finish(&user.user_id, &req.sha256.to_string(), &req.chunks)
        {
            Some(hash) => (hash.as_str().into(), "hashed as received"),
            None => (
                Content::of_chunks(&state.blobs, &user.user_id, &req.chunks)?
                    .sha256()
                    .await?
                    .into(),
                "read back",
            ),
        }
    };
    tracing::debug!(
        chunks = req.chunks.len(),
        durable_ms = durable.as_millis() as u64,
        verified_ms = (started.elapsed() - durable).as_millis() as u64,
        how,
        "commit: chunks durable and verified"
    );
    if actual != req.sha256 {
        return Err(FilesError::HashMismatch(format!(
            "the chunks hash to {actual}, not {}",
            req.sha256
        )));
    }
    let single_blob = req.chunks.len() == 1 && req.chunks[0].sha256 == req.sha256;
    let (meta, change) = state
        .store
        .commit_content_checked(
            &user.user_id,
            NewContent {
                path: &path,
                parent_rev: req.parent_rev,
                size: req.size,
                sha256: &req.sha256.to_string(),
                device: device.as_ref(),
                inline: None,
                manifest: (!single_blob).then_some(req.chunks.as_slice()),
            },
            recheck(&state, &user.user_id, touched),
        )
        .await?;
    // Its chunks are no longer staged. The commit stands if this fails: the rows then leave
    // the ledger's window after the grace period.
    if let Err(e) = state.store.unstage(&user.user_id, &req.chunks).await {
        tracing::warn!(user = %user.user_id, error = %e, "could not clear the committed chunks from the staged ledger");
    }
    tracing::info!(user = %user.user_id, path = %meta.path, rev = meta.rev.get(), seq = change.seq.get(), chunks = req.chunks.len(), "committed chunks");
    state.events.publish(&user.user_id, Event::Change(change));
    Ok(Json(meta))
}

/// Whether a blob last modified at `modified` is old enough that a sweep of the collector may
/// be deleting it now (it deletes only what is older than its grace period; half of it is the
/// margin for clocks and for the commit's own time). Only those are checked again under the
/// collector's lock.
pub(super) fn collectable(grace: std::time::Duration, modified: std::time::SystemTime) -> bool {
    modified < std::time::SystemTime::now() - grace / 2
}

/// The check a commit makes under the collector's lock: each of the `touched` blobs (with
/// their times before the touch) that a sweep could be deleting — judged then, once the lock
/// is held — still exists, or the commit fails with them missing (the client uploads them
/// again).
pub(super) fn recheck(
    state: &FilesState,
    user_id: &UserId,
    touched: Vec<(String, std::time::SystemTime)>,
) -> Option<crate::store::Recheck> {
    let (store, user_id, grace) = (state.blobs.clone(), user_id.to_string(), state.gc_grace);
    Some(crate::store::recheck_op(move |conn| {
        Box::pin(async move {
            let blobs: Vec<String> = touched
                .into_iter()
                .filter(|(_, modified)| collectable(grace, *modified))
                .map(|(sha256, _)| sha256)
                .collect();
            // The store first, several at once; what it lacks may be a small content held
            // inline, asked through the commit's own transaction.
            let (store, user) = (&store, user_id.as_str());
            let not_stored: Vec<String> = futures_util::stream::iter(blobs)
                .map(|sha256| async move {
                    let stored = store.stat_in_store(user, &sha256).await?.is_some();
                    Ok::<_, FilesError>((!stored).then_some(sha256))
                })
                .buffer_unordered(16)
                .try_filter_map(|found| async move { Ok(found) })
                .try_collect()
                .await?;
            let mut missing = Vec::new();
            for sha256 in not_stored {
                if !crate::inline::held_inline(conn, user, &sha256).await? {
                    missing.push(sha256);
                }
            }
            if missing.is_empty() {
                Ok(())
            } else {
                tracing::info!(user = %user_id, ?missing, "a commit's blobs were collected meanwhile");
                Err(FilesError::MissingChunks(missing))
            }
        })
    }))
}
