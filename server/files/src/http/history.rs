//! A file's history and life: revisions, restore, trash, delete and move.

use super::*;

pub(super) async fn revisions(
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

pub(super) async fn restore(
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

pub(super) async fn trash(
    State(state): State<FilesState>,
    user: AuthUser,
) -> Result<Json<TrashList>, FilesError> {
    Ok(Json(TrashList {
        files: state.store.trash(&user.user_id).await?,
    }))
}

pub(super) async fn delete(
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

pub(super) async fn move_file(
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
