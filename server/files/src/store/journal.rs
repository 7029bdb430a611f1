//! The change journal: each user's gap-free `seq` (`journal_heads`), the rows one change writes
//! in its transaction (file row, revision, journal entry, inline content), and reading the
//! journal back.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use syncsphere_db::Dialect;
use syncsphere_protocol::DeviceId;
use syncsphere_protocol::Rev;
use syncsphere_protocol::{ChangeEvent, ChangeKind, ChangesPage, FileMeta};
use syncsphere_protocol::{Seq, UserId};

use super::files::{number, optional_text, text};
use super::{MAX_CHANGES_PAGE, MetadataStore, path_key};
use crate::FilesError;
use crate::group_commit::OpTx;

/// What an operation writes once its checks passed (see [`MetadataStore::finish`]).
#[derive(Clone, Copy)]
pub(super) struct Outcome<'a> {
    pub(super) meta: &'a FileMeta,
    pub(super) event: ChangeKind,
    pub(super) old_path: Option<&'a str>,
    pub(super) device: Option<&'a DeviceId>,
    /// A small content's bytes, kept in `inline_blobs` (see [`crate::inline`]).
    pub(super) inline: Option<&'a [u8]>,
}

impl<'a> Outcome<'a> {
    /// The journal entry (and push) of this outcome as change `seq`.
    fn change(&self, seq: i64) -> ChangeEvent {
        ChangeEvent {
            seq: Seq(seq),
            file_id: self.meta.file_id.clone(),
            event: self.event,
            path: self.meta.path.clone(),
            old_path: self.old_path.map(str::to_owned),
            rev: self.meta.rev,
            size: self.meta.size,
            sha256: self.meta.sha256.clone(),
            origin_device: self.device.cloned(),
            at_ms: self.meta.modified_ms,
        }
    }

    pub(super) fn of(
        meta: &'a FileMeta,
        event: ChangeKind,
        old_path: Option<&'a str>,
        device: Option<&'a DeviceId>,
    ) -> Self {
        Outcome {
            meta,
            event,
            old_path,
            device,
            inline: None,
        }
    }
}

pub(super) fn change_from_row(row: &AnyRow) -> Result<ChangeEvent, sqlx::Error> {
    let event: String = row.try_get("event")?;
    Ok(ChangeEvent {
        seq: number(row, "seq")?,
        file_id: text(row, "file_id")?,
        event: ChangeKind::parse(&event).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown journal event '{event}'").into())
        })?,
        path: row.try_get("path")?,
        old_path: row.try_get("old_path")?,
        rev: number(row, "rev")?,
        size: row.try_get("size")?,
        sha256: text(row, "sha256")?,
        origin_device: optional_text(row, "origin_device")?,
        at_ms: row.try_get("at_ms")?,
    })
}

impl MetadataStore {
    /// On PostgreSQL, the user's next journal `seq`, taken before anything else: its row lock
    /// serialises the user's commits, so the checks that follow see every earlier commit. On
    /// SQLite (one writer) `None`: [`Self::finish`] takes it after the checks, so an operation
    /// refused by a check has written nothing (what group commit relies on).
    pub(super) async fn seq_first(
        &self,
        tx: &mut AnyConnection,
        user_id: &UserId,
    ) -> Result<Option<i64>, FilesError> {
        match self.db.dialect {
            Dialect::Postgres => Ok(Some(Self::next_seq(tx, user_id).await?)),
            Dialect::Sqlite => Ok(None),
        }
    }

    /// The user's next journal `seq` (the head row is created on a user's first commit). Its
    /// row lock serialises the user's commits on PostgreSQL.
    pub(super) async fn next_seq(
        tx: &mut AnyConnection,
        user_id: &UserId,
    ) -> Result<i64, FilesError> {
        const NEXT_SEQ: &str = "UPDATE journal_heads SET last_seq = last_seq + 1 WHERE user_id = $1 RETURNING last_seq";
        let row = match sqlx::query(NEXT_SEQ)
            .bind(user_id.as_str())
            .fetch_optional(&mut *tx)
            .await?
        {
            Some(row) => row,
            None => {
                sqlx::query(
                    "INSERT INTO journal_heads (user_id, last_seq) VALUES ($1, 0)
                     ON CONFLICT (user_id) DO NOTHING",
                )
                .bind(user_id.as_str())
                .execute(&mut *tx)
                .await?;
                sqlx::query(NEXT_SEQ)
                    .bind(user_id.as_str())
                    .fetch_one(&mut *tx)
                    .await?
            }
        };
        Ok(row.try_get("last_seq")?)
    }

    /// Writes the new state of `meta` (revision row, file row, journal entry); the caller's
    /// transaction commits it.
    pub(super) async fn finish(
        tx: &mut OpTx<'_>,
        user_id: &UserId,
        seq: Option<i64>,
        outcome: Outcome<'_>,
    ) -> Result<ChangeEvent, FilesError> {
        let Some(seq) = seq else {
            return Self::finish_at_once(tx, user_id, outcome).await;
        };
        let Outcome {
            meta,
            event,
            device,
            inline,
            ..
        } = outcome;
        if let Some(data) = inline {
            // The same content committed again (another path, or back to an old version) is
            // already there: same user, same hash, same bytes.
            sqlx::query(
                "INSERT INTO inline_blobs (user_id, sha256, size, data, modified_ms)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (user_id, sha256) DO UPDATE SET modified_ms = excluded.modified_ms",
            )
            .bind(user_id.as_str())
            .bind(meta.sha256.to_string())
            .bind(meta.size)
            .bind(data)
            .bind(meta.modified_ms)
            .execute(&mut **tx)
            .await?;
        }
        let deleted = i64::from(meta.deleted);
        if meta.rev == Rev(1) {
            sqlx::query(
                "INSERT INTO files (file_id, user_id, path, path_key, rev, size, sha256, deleted, modified_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&*meta.file_id)
            .bind(user_id.as_str())
            .bind(&meta.path)
            .bind(path_key(&meta.path))
            .bind(meta.rev.get())
            .bind(meta.size)
            .bind(meta.sha256.to_string())
            .bind(deleted)
            .bind(meta.modified_ms)
            .execute(&mut **tx)
            .await?;
        } else {
            sqlx::query(
                "UPDATE files SET path = $1, path_key = $2,
                 key_twin = CASE WHEN path_key = $2 THEN key_twin ELSE 0 END,
                 rev = $3, size = $4, sha256 = $5,
                 deleted = $6, modified_ms = $7 WHERE file_id = $8 AND user_id = $9",
            )
            .bind(&meta.path)
            .bind(path_key(&meta.path))
            .bind(meta.rev.get())
            .bind(meta.size)
            .bind(meta.sha256.to_string())
            .bind(deleted)
            .bind(meta.modified_ms)
            .bind(&*meta.file_id)
            .bind(user_id.as_str())
            .execute(&mut **tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO revisions (file_id, rev, path, size, sha256, deleted, modified_ms, origin_device)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&*meta.file_id)
        .bind(meta.rev.get())
        .bind(&meta.path)
        .bind(meta.size)
        .bind(meta.sha256.to_string())
        .bind(deleted)
        .bind(meta.modified_ms)
        .bind(device.map(|d| d.as_str()))
        .execute(&mut **tx)
        .await?;
        let change = outcome.change(seq);
        sqlx::query(
            "INSERT INTO journal (user_id, seq, file_id, event, path, old_path, rev, size, sha256, origin_device, at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(user_id.as_str())
        .bind(seq)
        .bind(&*change.file_id)
        .bind(event.as_str())
        .bind(&change.path)
        .bind(&change.old_path)
        .bind(change.rev.get())
        .bind(change.size)
        .bind(change.sha256.to_string())
        .bind(change.origin_device.as_deref())
        .bind(change.at_ms)
        .execute(&mut **tx)
        .await?;
        Ok(change)
    }

    /// [`Self::finish`] on SQLite, where the journal `seq` is taken last: the same writes,
    /// with the seq taken from the journal head, sent as one multi-statement command (one
    /// round trip to the SQLite worker thread instead of up to six — per-statement round trips
    /// were what the embedded server spent its time on under load). SQLite binds `$N` by
    /// number across the statements; PostgreSQL cannot prepare several statements at once,
    /// which is why it keeps the statement-by-statement form. Its last statement also reads
    /// how many rows the connection has changed, for the group commit's check ([`OpTx::wrote`]).
    pub(super) async fn finish_at_once(
        tx: &mut OpTx<'_>,
        user_id: &UserId,
        outcome: Outcome<'_>,
    ) -> Result<ChangeEvent, FilesError> {
        let Outcome {
            meta,
            event,
            old_path,
            device,
            inline,
        } = outcome;
        const INLINE: &str = "INSERT INTO inline_blobs (user_id, sha256, size, data, modified_ms)
                VALUES ($1, $7, $6, $13, $9)
                ON CONFLICT (user_id, sha256) DO UPDATE SET modified_ms = excluded.modified_ms;";
        const HEAD: &str = "INSERT INTO journal_heads (user_id, last_seq) VALUES ($1, 0)
                ON CONFLICT (user_id) DO NOTHING;
            UPDATE journal_heads SET last_seq = last_seq + 1 WHERE user_id = $1;";
        const CREATE: &str = "INSERT INTO files (file_id, user_id, path, path_key, rev, size, sha256, deleted, modified_ms)
                VALUES ($2, $1, $3, $4, $5, $6, $7, $8, $9);";
        // A file that keeps its key keeps its place among the files sharing it (`key_twin`,
        // see crate::rekey); one that takes a new name is alone at it.
        const UPDATE: &str = "UPDATE files SET path = $3, path_key = $4,
                key_twin = CASE WHEN path_key = $4 THEN key_twin ELSE 0 END,
                rev = $5, size = $6, sha256 = $7,
                deleted = $8, modified_ms = $9 WHERE file_id = $2 AND user_id = $1;";
        const HISTORY: &str = "INSERT INTO revisions (file_id, rev, path, size, sha256, deleted, modified_ms, origin_device)
                VALUES ($2, $5, $3, $6, $7, $8, $9, $10);
            INSERT INTO journal (user_id, seq, file_id, event, path, old_path, rev, size, sha256, origin_device, at_ms)
                SELECT $1, last_seq, $2, $11, $3, $12, $5, $6, $7, $10, $9 FROM journal_heads WHERE user_id = $1;
            SELECT last_seq, total_changes() AS total_changes FROM journal_heads WHERE user_id = $1";
        let sql = format!(
            "{}\n{HEAD}\n{}\n{HISTORY}",
            if inline.is_some() { INLINE } else { "" },
            if meta.rev == Rev(1) { CREATE } else { UPDATE }
        );
        let rows = sqlx::query(&sql)
            .bind(user_id.as_str())
            .bind(&*meta.file_id)
            .bind(&meta.path)
            .bind(path_key(&meta.path))
            .bind(meta.rev.get())
            .bind(meta.size)
            .bind(meta.sha256.to_string())
            .bind(i64::from(meta.deleted))
            .bind(meta.modified_ms)
            .bind(device.map(|d| d.as_str()))
            .bind(event.as_str())
            .bind(old_path)
            .bind(inline)
            .fetch_all(&mut **tx)
            .await?;
        // The final SELECT's row (the statements before it return none).
        let row = rows.last().ok_or(sqlx::Error::RowNotFound)?;
        tx.wrote(row.try_get("total_changes")?);
        Ok(outcome.change(row.try_get("last_seq")?))
    }

    /// Latest journal `seq` of the user (0 before the first commit).
    pub async fn head(&self, user_id: &UserId) -> Result<i64, FilesError> {
        let row = sqlx::query("SELECT last_seq FROM journal_heads WHERE user_id = $1")
            .bind(user_id.as_str())
            .fetch_optional(&self.db.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get("last_seq")?,
            None => 0,
        })
    }

    /// Journal entries with `seq > cursor`, oldest first, at most `limit`.
    pub async fn changes(
        &self,
        user_id: &UserId,
        cursor: Seq,
        limit: i64,
    ) -> Result<ChangesPage, FilesError> {
        let limit = limit.clamp(1, MAX_CHANGES_PAGE);
        let rows = sqlx::query(
            "SELECT seq, file_id, event, path, old_path, rev, size, sha256, origin_device, at_ms
             FROM journal WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(user_id.as_str())
        .bind(cursor.get())
        .bind(limit + 1)
        .fetch_all(&self.db.pool)
        .await?;
        let has_more = rows.len() as i64 > limit;
        let changes: Vec<ChangeEvent> = rows
            .iter()
            .take(limit as usize)
            .map(change_from_row)
            .collect::<Result<_, _>>()?;
        let cursor = changes.last().map_or(cursor, |c| c.seq);
        Ok(ChangesPage {
            changes,
            cursor,
            has_more,
        })
    }
}
