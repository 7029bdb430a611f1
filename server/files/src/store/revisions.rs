//! History: every commit is a revision row; restore makes an old one current again (as a new
//! revision; on a deleted file, an undelete), and the trash lists deleted files.

use sqlx::any::AnyRow;
use sqlx::{Any, Row};
use syncsphere_protocol::DeviceId;
use syncsphere_protocol::{ChangeEvent, ChangeKind, FileMeta, Revision};
use syncsphere_protocol::{FileId, Rev, UserId};

use super::files::{FILE_COLUMNS, file_from_row, number, optional_text, stale, text};
use super::journal::Outcome;
use super::{MAX_CHANGES_PAGE, MetadataStore, op};
use crate::group_commit::OpTx;
use crate::{FilesError, now_ms};

pub(super) fn revision_from_row(row: &AnyRow) -> Result<Revision, sqlx::Error> {
    Ok(Revision {
        rev: number(row, "rev")?,
        path: row.try_get("path")?,
        size: row.try_get("size")?,
        sha256: text(row, "sha256")?,
        deleted: row.try_get::<i64, _>("deleted")? != 0,
        modified_ms: row.try_get("modified_ms")?,
        origin_device: optional_text(row, "origin_device")?,
    })
}

pub(super) const REVISION_COLUMNS: &str =
    "r.rev, r.path, r.size, r.sha256, r.deleted, r.modified_ms, r.origin_device";

impl MetadataStore {
    /// Makes the content of revision `rev` current again, as a new revision on top of
    /// `parent_rev`. On a deleted file this is an undelete at its last path (which must be free).
    pub async fn restore(
        &self,
        user_id: &UserId,
        file_id: &FileId,
        rev: Rev,
        parent_rev: Rev,
        device: Option<&DeviceId>,
    ) -> Result<(FileMeta, ChangeEvent), FilesError> {
        let (user, file) = (user_id.to_owned(), file_id.to_owned());
        let device = device.cloned();
        // A restored revision's content must not be collected meanwhile: the collector's
        // lock, shared (the revision it reads may be one retention is purging).
        self.write_guarded(
            op(move |store, tx| {
                Box::pin(async move {
                    store
                        .restore_in(tx, &user, &file, rev, parent_rev, device.as_ref())
                        .await
                })
            }),
            self.gc_shared_guard(),
        )
        .await
    }

    pub(super) async fn restore_in(
        &self,
        tx: &mut OpTx<'_>,
        user_id: &UserId,
        file_id: &FileId,
        rev: Rev,
        parent_rev: Rev,
        device: Option<&DeviceId>,
    ) -> Result<(FileMeta, ChangeEvent), FilesError> {
        let seq = self.seq_first(tx, user_id).await?;
        let cur = Self::by_id(&mut **tx, user_id, file_id)
            .await?
            .ok_or(FilesError::NotFound)?;
        if cur.rev != parent_rev {
            return Err(stale(cur, parent_rev));
        }
        let old = Self::revision_of(&mut **tx, user_id, file_id, rev)
            .await?
            .ok_or(FilesError::NotFound)?;
        if old.deleted {
            return Err(FilesError::BadRequest(format!(
                "revision {rev} deleted the file; restore an earlier revision"
            )));
        }
        let live_size = if cur.deleted { 0 } else { cur.size };
        self.check_quota(tx, user_id, live_size, old.size).await?;
        let event = if cur.deleted {
            if let Some(other) = Self::other_live_at(tx, user_id, &cur.path, file_id).await? {
                return Err(FilesError::conflict(
                    format!("'{}' already exists", other.path),
                    Some(other),
                ));
            }
            Self::ensure_file_or_directory(tx, user_id, &cur.path, Some(file_id)).await?;
            ChangeKind::Created
        } else {
            ChangeKind::Updated
        };
        let meta = FileMeta {
            rev: cur.rev + 1,
            size: old.size,
            sha256: old.sha256,
            deleted: false,
            modified_ms: now_ms(),
            ..cur
        };
        let change =
            Self::finish(tx, user_id, seq, Outcome::of(&meta, event, None, device)).await?;
        Ok((meta, change))
    }

    pub(super) async fn revision_of(
        executor: impl sqlx::Executor<'_, Database = Any>,
        user_id: &UserId,
        file_id: &FileId,
        rev: Rev,
    ) -> Result<Option<Revision>, FilesError> {
        let row = sqlx::query(&format!(
            "SELECT {REVISION_COLUMNS} FROM revisions r JOIN files f ON f.file_id = r.file_id
             WHERE f.user_id = $1 AND r.file_id = $2 AND r.rev = $3"
        ))
        .bind(user_id.as_str())
        .bind(file_id.as_str())
        .bind(rev.get())
        .fetch_optional(executor)
        .await?;
        Ok(row.as_ref().map(revision_from_row).transpose()?)
    }

    /// One revision of a user's file.
    pub async fn revision(
        &self,
        user_id: &UserId,
        file_id: &FileId,
        rev: Rev,
    ) -> Result<Option<Revision>, FilesError> {
        Self::revision_of(&self.db.pool, user_id, file_id, rev).await
    }

    /// Every revision of a user's file, newest first (`None` if the file is not theirs).
    pub async fn revisions(
        &self,
        user_id: &UserId,
        file_id: &FileId,
    ) -> Result<Option<Vec<Revision>>, FilesError> {
        let rows = sqlx::query(&format!(
            "SELECT {REVISION_COLUMNS} FROM revisions r JOIN files f ON f.file_id = r.file_id
             WHERE f.user_id = $1 AND r.file_id = $2 ORDER BY r.rev DESC"
        ))
        .bind(user_id.as_str())
        .bind(file_id.as_str())
        .fetch_all(&self.db.pool)
        .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            rows.iter()
                .map(revision_from_row)
                .collect::<Result<_, _>>()?,
        ))
    }

    /// Deleted files, most recently deleted first (at most [`MAX_CHANGES_PAGE`]).
    pub async fn trash(&self, user_id: &UserId) -> Result<Vec<FileMeta>, FilesError> {
        let rows = sqlx::query(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE user_id = $1 AND deleted = 1
             ORDER BY modified_ms DESC LIMIT $2"
        ))
        .bind(user_id.as_str())
        .bind(MAX_CHANGES_PAGE)
        .fetch_all(&self.db.pool)
        .await?;
        Ok(rows.iter().map(file_from_row).collect::<Result<_, _>>()?)
    }
}
