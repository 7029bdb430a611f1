//! The account's views: every live file, the change journal and usage.

use syncsphere_protocol::{LIST_PAGE_MAX, ListFilesQuery};

use super::*;

/// `GET /v1/account/usage`.
pub(super) async fn usage(
    State(state): State<FilesState>,
    user: AuthUser,
) -> Result<Json<Usage>, FilesError> {
    Ok(Json(Usage {
        used_bytes: state.store.usage(&user.user_id).await?,
        quota_bytes: state.store.quota(),
    }))
}

/// `GET /v1/files`: a page of the live files in path order (at most `LIST_PAGE_MAX`, 0040).
pub(super) async fn list(
    State(state): State<FilesState>,
    user: AuthUser,
    q: Result<Query<ListFilesQuery>, QueryRejection>,
) -> Result<Json<FileList>, FilesError> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(LIST_PAGE_MAX);
    if limit < 1 {
        return Err(FilesError::BadRequest("limit must be at least 1".into()));
    }
    let page = state
        .store
        .list(&user.user_id, q.after.as_deref(), limit.min(LIST_PAGE_MAX))
        .await?;
    Ok(Json(page))
}

pub(super) async fn changes(
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
