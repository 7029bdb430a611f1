//! The per-user quota on live bytes, checked inside every commit that grows them.

use sqlx::{Any, AnyConnection, Row};
use syncsphere_protocol::UserId;

use super::MetadataStore;
use crate::FilesError;

impl MetadataStore {
    /// Limits every user's live files to `bytes` (checked by every commit that grows them).
    pub fn with_quota(mut self, bytes: Option<i64>) -> Self {
        self.quota = bytes;
        self
    }

    pub fn quota(&self) -> Option<i64> {
        self.quota
    }

    /// Bytes held by the user's live files.
    pub async fn usage(&self, user_id: &UserId) -> Result<i64, FilesError> {
        Ok(Self::used(&self.db.pool, user_id).await?)
    }

    pub(super) async fn used(
        executor: impl sqlx::Executor<'_, Database = Any>,
        user_id: &UserId,
    ) -> Result<i64, sqlx::Error> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) AS used FROM files
             WHERE user_id = $1 AND deleted = 0",
        )
        .bind(user_id.as_str())
        .fetch_one(executor)
        .await?;
        row.try_get("used")
    }

    /// Refuses a change that replaces `old` live bytes by `new` if it would pass the quota.
    /// Shrinking is always allowed, even over the quota (a user must be able to clean up).
    pub(super) async fn check_quota(
        &self,
        tx: &mut AnyConnection,
        user_id: &UserId,
        old: i64,
        new: i64,
    ) -> Result<(), FilesError> {
        let Some(quota) = self.quota else {
            return Ok(());
        };
        if new <= old {
            return Ok(());
        }
        let used = Self::used(&mut *tx, user_id).await?;
        if used - old + new > quota {
            return Err(FilesError::QuotaExceeded {
                used,
                staged: 0,
                quota,
                needed: new - old,
            });
        }
        Ok(())
    }
}
