//! The account's views: every live file, the change journal and usage.

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

pub(super) async fn list(
    State(state): State<FilesState>,
    user: AuthUser,
) -> Result<Json<FileList>, FilesError> {
    Ok(Json(state.store.list(&user.user_id).await?))
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
