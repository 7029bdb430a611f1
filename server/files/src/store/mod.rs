//! File metadata, revisions and the change journal in the metadata database.
//!
//! Every mutating operation runs in one transaction that increments the user's journal head
//! (`journal_heads.last_seq`): first on PostgreSQL, where that row lock serialises a user's
//! commits; last on SQLite, which has a single writer anyway. So the `parent_rev` check, the
//! metadata update, the revision row and the journal entry are atomic and `seq` is gap-free.
//! On SQLite the operation runs inside a group commit ([`crate::group_commit`]): operations
//! queued behind each other share one transaction and one `COMMIT`, which is why every
//! operation makes all of its checks before its first write.

use sqlx::any::AnyRow;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use sqlx::{Any, AnyConnection, Row};
use syncsphere_db::{Db, Dialect};
use syncsphere_protocol::{
    ChangeEvent, ChangeKind, ChangesPage, ChunkRef, FileList, FileMeta, Revision,
};

use crate::group_commit::{GroupCommit, Op, OpTx};
use crate::{FilesError, now_ms, rekey};

pub use syncsphere_protocol::path_key;

/// Largest page of `GET /v1/changes`.
pub const MAX_CHANGES_PAGE: i64 = 1000;

#[derive(Debug, Clone)]
pub struct MetadataStore {
    db: Db,
    /// Most bytes a user's live files may hold (`None`: unlimited).
    quota: Option<i64>,
    /// The SQLite writer's batches (unused on PostgreSQL); shared by clones.
    group: Arc<GroupCommit>,
    /// Set once `files.path_key` holds the current keys (see [`crate::rekey`]); shared by clones.
    keys_current: Arc<tokio::sync::OnceCell<()>>,
}

/// New content for a path: already durable in the blob store, or carried here (`inline`) to
/// be written into `inline_blobs` by the commit itself (see [`crate::inline`]).
#[derive(Debug, Clone)]
pub struct NewContent<'a> {
    pub path: &'a str,
    pub parent_rev: Option<i64>,
    pub size: i64,
    pub sha256: &'a str,
    pub device: Option<&'a str>,
    /// The content's bytes, when it is small enough to live in the metadata database. The
    /// caller has checked that they hash to `sha256` and are `size` bytes long.
    pub inline: Option<&'a [u8]>,
}

/// What an operation writes once its checks passed (see [`MetadataStore::finish`]).
#[derive(Clone, Copy)]
struct Outcome<'a> {
    meta: &'a FileMeta,
    event: ChangeKind,
    old_path: Option<&'a str>,
    device: Option<&'a str>,
    /// A small content's bytes, kept in `inline_blobs` (see [`crate::inline`]).
    inline: Option<&'a [u8]>,
}

impl<'a> Outcome<'a> {
    /// The journal entry (and push) of this outcome as change `seq`.
    fn change(&self, seq: i64) -> ChangeEvent {
        ChangeEvent {
            seq,
            file_id: self.meta.file_id.clone(),
            event: self.event,
            path: self.meta.path.clone(),
            old_path: self.old_path.map(str::to_owned),
            rev: self.meta.rev,
            size: self.meta.size,
            sha256: self.meta.sha256.clone(),
            origin_device: self.device.map(str::to_owned),
            at_ms: self.meta.modified_ms,
        }
    }

    fn of(
        meta: &'a FileMeta,
        event: ChangeKind,
        old_path: Option<&'a str>,
        device: Option<&'a str>,
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

const FILE_COLUMNS: &str = "file_id, path, rev, size, sha256, deleted, modified_ms";

fn file_from_row(row: &AnyRow) -> Result<FileMeta, sqlx::Error> {
    Ok(FileMeta {
        file_id: row.try_get("file_id")?,
        path: row.try_get("path")?,
        rev: row.try_get("rev")?,
        size: row.try_get("size")?,
        sha256: row.try_get("sha256")?,
        deleted: row.try_get::<i64, _>("deleted")? != 0,
        modified_ms: row.try_get("modified_ms")?,
    })
}

fn revision_from_row(row: &AnyRow) -> Result<Revision, sqlx::Error> {
    Ok(Revision {
        rev: row.try_get("rev")?,
        path: row.try_get("path")?,
        size: row.try_get("size")?,
        sha256: row.try_get("sha256")?,
        deleted: row.try_get::<i64, _>("deleted")? != 0,
        modified_ms: row.try_get("modified_ms")?,
        origin_device: row.try_get("origin_device")?,
    })
}

const REVISION_COLUMNS: &str =
    "r.rev, r.path, r.size, r.sha256, r.deleted, r.modified_ms, r.origin_device";

fn change_from_row(row: &AnyRow) -> Result<ChangeEvent, sqlx::Error> {
    let event: String = row.try_get("event")?;
    Ok(ChangeEvent {
        seq: row.try_get("seq")?,
        file_id: row.try_get("file_id")?,
        event: ChangeKind::parse(&event).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown journal event '{event}'").into())
        })?,
        path: row.try_get("path")?,
        old_path: row.try_get("old_path")?,
        rev: row.try_get("rev")?,
        size: row.try_get("size")?,
        sha256: row.try_get("sha256")?,
        origin_device: row.try_get("origin_device")?,
        at_ms: row.try_get("at_ms")?,
    })
}

fn stale(cur: FileMeta, parent_rev: i64) -> FilesError {
    FilesError::conflict(
        format!(
            "'{}' is at revision {}, not {parent_rev}",
            cur.path, cur.rev
        ),
        Some(cur),
    )
}

/// Boxes an operation for [`MetadataStore::write`] (the signature guides closure inference).
fn op<T>(
    f: impl for<'t, 'c> FnOnce(
        &'t MetadataStore,
        &'t mut OpTx<'c>,
    ) -> BoxFuture<'t, Result<T, FilesError>>
    + Send
    + 'static,
) -> Op<T> {
    Box::new(f)
}

/// What a path names among a user's live files (see [`MetadataStore::path_state`]).
struct PathState {
    /// The live files at the path's key: one, or none — several only where names that one key
    /// now equates were both live before keys were case-folded (see [`crate::rekey`]).
    at: Vec<FileMeta>,
    /// A live file that clashes with a file at the path by the file-or-directory rule.
    clash: Option<FileMeta>,
}

impl PathState {
    /// The live file a commit to `path` replaces: the one at its key or, among files that
    /// share the key, the one spelled exactly `path` (a conflict if none is).
    fn take_current(&mut self, path: &str) -> Result<Option<FileMeta>, FilesError> {
        if self.at.len() < 2 {
            return Ok(self.at.pop());
        }
        match self.at.iter().position(|f| f.path == path) {
            Some(i) => Ok(Some(self.at.swap_remove(i))),
            None => {
                let names: Vec<&str> = self.at.iter().map(|f| f.path.as_str()).collect();
                Err(FilesError::conflict(
                    format!(
                        "'{path}' names {} files that case-insensitive disks cannot tell apart ({}); use one exact name",
                        names.len(),
                        names.join(", ")
                    ),
                    self.at.first().cloned(),
                ))
            }
        }
    }
}

impl MetadataStore {
    pub fn new(db: Db) -> Self {
        MetadataStore {
            db,
            quota: None,
            group: Arc::default(),
            keys_current: Arc::default(),
        }
    }

    /// Brings the stored path keys up to the current key function (once per database, see
    /// [`crate::rekey`]; once per process it is checked). Writes and the name check wait for
    /// it; a server may call it at start-up to fail early.
    pub async fn upgrade_path_keys(&self) -> Result<(), FilesError> {
        self.keys_current
            .get_or_try_init(|| async {
                let report = rekey::rekey(&self.db).await?;
                if report != rekey::RekeyReport::default() {
                    tracing::info!(?report, "path keys recomputed");
                }
                Ok::<_, FilesError>(())
            })
            .await?;
        Ok(())
    }

    /// Runs a mutating operation in a transaction and commits it: its own on PostgreSQL, the
    /// next group commit's on SQLite. The result comes back once committed.
    async fn write<T: Send + 'static>(&self, op: Op<T>) -> Result<T, FilesError> {
        self.upgrade_path_keys().await?;
        match self.db.dialect {
            Dialect::Postgres => {
                let mut tx = self.db.pool.begin().await?;
                let value = op(self, &mut OpTx::new(&mut tx)).await?;
                tx.commit().await?;
                Ok(value)
            }
            Dialect::Sqlite => self.group.submit(self.clone(), op).await,
        }
    }

    /// Creates a file (`parent_rev` = `None`) or replaces the content of the live file at the
    /// path whose current revision is `parent_rev`.
    pub async fn commit_content(
        &self,
        user_id: &str,
        new: NewContent<'_>,
    ) -> Result<(FileMeta, ChangeEvent), FilesError> {
        let user = user_id.to_owned();
        let (path, sha256) = (new.path.to_owned(), new.sha256.to_owned());
        let device = new.device.map(str::to_owned);
        let inline = new.inline.map(<[u8]>::to_vec);
        let (parent_rev, size) = (new.parent_rev, new.size);
        self.write(op(move |store, tx| {
            Box::pin(async move {
                let new = NewContent {
                    path: &path,
                    parent_rev,
                    size,
                    sha256: &sha256,
                    device: device.as_deref(),
                    inline: inline.as_deref(),
                };
                store.commit_content_in(tx, &user, new).await
            })
        }))
        .await
    }

    /// Deletes the live file `file_id` if it is at `parent_rev`.
    pub async fn delete(
        &self,
        user_id: &str,
        file_id: &str,
        parent_rev: i64,
        device: Option<&str>,
    ) -> Result<(FileMeta, ChangeEvent), FilesError> {
        let (user, file) = (user_id.to_owned(), file_id.to_owned());
        let device = device.map(str::to_owned);
        self.write(op(move |store, tx| {
            Box::pin(async move {
                store
                    .delete_in(tx, &user, &file, parent_rev, device.as_deref())
                    .await
            })
        }))
        .await
    }

    /// Moves or renames the live file `file_id` (keeping its id) if it is at `parent_rev`.
    pub async fn move_file(
        &self,
        user_id: &str,
        file_id: &str,
        new_path: &str,
        parent_rev: i64,
        device: Option<&str>,
    ) -> Result<(FileMeta, ChangeEvent), FilesError> {
        let (user, file, path) = (user_id.to_owned(), file_id.to_owned(), new_path.to_owned());
        let device = device.map(str::to_owned);
        self.write(op(move |store, tx| {
            Box::pin(async move {
                store
                    .move_file_in(tx, &user, &file, &path, parent_rev, device.as_deref())
                    .await
            })
        }))
        .await
    }

    /// Makes the content of revision `rev` current again, as a new revision on top of
    /// `parent_rev`. On a deleted file this is an undelete at its last path (which must be free).
    pub async fn restore(
        &self,
        user_id: &str,
        file_id: &str,
        rev: i64,
        parent_rev: i64,
        device: Option<&str>,
    ) -> Result<(FileMeta, ChangeEvent), FilesError> {
        let (user, file) = (user_id.to_owned(), file_id.to_owned());
        let device = device.map(str::to_owned);
        self.write(op(move |store, tx| {
            Box::pin(async move {
                store
                    .restore_in(tx, &user, &file, rev, parent_rev, device.as_deref())
                    .await
            })
        }))
        .await
    }

    /// On PostgreSQL, the user's next journal `seq`, taken before anything else: its row lock
    /// serialises the user's commits, so the checks that follow see every earlier commit. On
    /// SQLite (one writer) `None`: [`Self::finish`] takes it after the checks, so an operation
    /// refused by a check has written nothing (what group commit relies on).
    async fn seq_first(
        &self,
        tx: &mut AnyConnection,
        user_id: &str,
    ) -> Result<Option<i64>, FilesError> {
        match self.db.dialect {
            Dialect::Postgres => Ok(Some(Self::next_seq(tx, user_id).await?)),
            Dialect::Sqlite => Ok(None),
        }
    }

    /// The user's next journal `seq` (the head row is created on a user's first commit). Its
    /// row lock serialises the user's commits on PostgreSQL.
    async fn next_seq(tx: &mut AnyConnection, user_id: &str) -> Result<i64, FilesError> {
        const NEXT_SEQ: &str = "UPDATE journal_heads SET last_seq = last_seq + 1 WHERE user_id = $1 RETURNING last_seq";
        let row = match sqlx::query(NEXT_SEQ)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?
        {
            Some(row) => row,
            None => {
                sqlx::query(
                    "INSERT INTO journal_heads (user_id, last_seq) VALUES ($1, 0)
                     ON CONFLICT (user_id) DO NOTHING",
                )
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(NEXT_SEQ)
                    .bind(user_id)
                    .fetch_one(&mut *tx)
                    .await?
            }
        };
        Ok(row.try_get("last_seq")?)
    }

    /// A live file other than `file_id` whose name is `path` (by key).
    async fn other_live_at(
        tx: &mut AnyConnection,
        user_id: &str,
        path: &str,
        file_id: &str,
    ) -> Result<Option<FileMeta>, FilesError> {
        let row = sqlx::query(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE user_id = $1 AND path_key = $2 AND deleted = 0
             AND file_id <> $3 LIMIT 1"
        ))
        .bind(user_id)
        .bind(path_key(path))
        .bind(file_id)
        .fetch_optional(&mut *tx)
        .await?;
        Ok(row.as_ref().map(file_from_row).transpose()?)
    }

    async fn by_id(
        executor: impl sqlx::Executor<'_, Database = Any>,
        user_id: &str,
        file_id: &str,
    ) -> Result<Option<FileMeta>, FilesError> {
        let row = sqlx::query(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE user_id = $1 AND file_id = $2"
        ))
        .bind(user_id)
        .bind(file_id)
        .fetch_optional(executor)
        .await?;
        Ok(row.as_ref().map(file_from_row).transpose()?)
    }

    /// The rule beside case-insensitive uniqueness: a name is a file or a directory, never both.
    /// `path` may not have a live file at an ancestor (`d` when creating `d/e`) nor live files
    /// below it (`d/e` when creating `d`); `moving` is the file taking the name, which does not
    /// stand in its own way. A clash is a conflict carrying the file in the way.
    async fn ensure_file_or_directory(
        tx: &mut AnyConnection,
        user_id: &str,
        path: &str,
        moving: Option<&str>,
    ) -> Result<(), FilesError> {
        match Self::path_state(tx, user_id, path, moving, false)
            .await?
            .clash
        {
            Some(other) => Err(Self::clash(path, other)),
            None => Ok(()),
        }
    }

    /// In one query: the live files at `path`'s key (when `with_self`), and a live file that
    /// clashes with a file at `path` by the file-or-directory rule (see
    /// [`Self::ensure_file_or_directory`]).
    async fn path_state(
        tx: &mut AnyConnection,
        user_id: &str,
        path: &str,
        moving: Option<&str>,
        with_self: bool,
    ) -> Result<PathState, FilesError> {
        let key = path_key(path);
        let ancestors: Vec<&str> = key.match_indices('/').map(|(i, _)| &key[..i]).collect();
        let mut sql = String::new();
        if with_self {
            sql.push_str(&format!(
                "SELECT {FILE_COLUMNS} FROM files WHERE user_id = $1 AND deleted = 0
                 AND path_key = $5 UNION ALL "
            ));
        }
        // Keys below `key` are those in [`key/`, `key0`): '0' follows '/' bytewise, and keys
        // compare bytewise (SQLite's BINARY; PostgreSQL's column is COLLATE "C").
        sql.push_str(&format!(
            "SELECT {FILE_COLUMNS} FROM (SELECT {FILE_COLUMNS} FROM files
             WHERE user_id = $1 AND deleted = 0 AND file_id <> $2
             AND ((path_key >= $3 AND path_key < $4)"
        ));
        let first_ancestor = if with_self { 6 } else { 5 };
        for i in 0..ancestors.len() {
            sql.push_str(&format!(" OR path_key = ${}", i + first_ancestor));
        }
        sql.push_str(") LIMIT 1) AS clash");
        let mut query = sqlx::query(&sql)
            .bind(user_id)
            .bind(moving.unwrap_or(""))
            .bind(format!("{key}/"))
            .bind(format!("{key}0"));
        if with_self {
            query = query.bind(key.clone());
        }
        for a in &ancestors {
            query = query.bind(*a);
        }
        let mut state = PathState {
            at: Vec::new(),
            clash: None,
        };
        for row in query.fetch_all(&mut *tx).await? {
            let file = file_from_row(&row)?;
            if path_key(&file.path) == key {
                state.at.push(file);
            } else {
                state.clash.get_or_insert(file);
            }
        }
        Ok(state)
    }

    fn clash(path: &str, other: FileMeta) -> FilesError {
        let key = path_key(path);
        let message = if path_key(&other.path).len() < key.len() {
            format!("'{}' is a file, so it cannot hold '{path}'", other.path)
        } else {
            format!(
                "'{path}' is a folder (it holds '{}'), so it cannot be a file",
                other.path
            )
        };
        FilesError::conflict(message, Some(other))
    }

    /// The live file `file_id`, which must be at `parent_rev` (else a conflict with its metadata).
    async fn live_at_rev(
        tx: &mut AnyConnection,
        user_id: &str,
        file_id: &str,
        parent_rev: i64,
    ) -> Result<FileMeta, FilesError> {
        let cur = Self::by_id(&mut *tx, user_id, file_id)
            .await?
            .filter(|m| !m.deleted)
            .ok_or(FilesError::NotFound)?;
        if cur.rev != parent_rev {
            return Err(stale(cur, parent_rev));
        }
        Ok(cur)
    }

    /// Writes the new state of `meta` (revision row, file row, journal entry); the caller's
    /// transaction commits it.
    async fn finish(
        tx: &mut OpTx<'_>,
        user_id: &str,
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
            .bind(user_id)
            .bind(&meta.sha256)
            .bind(meta.size)
            .bind(data)
            .bind(meta.modified_ms)
            .execute(&mut **tx)
            .await?;
        }
        let deleted = i64::from(meta.deleted);
        if meta.rev == 1 {
            sqlx::query(
                "INSERT INTO files (file_id, user_id, path, path_key, rev, size, sha256, deleted, modified_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&meta.file_id)
            .bind(user_id)
            .bind(&meta.path)
            .bind(path_key(&meta.path))
            .bind(meta.rev)
            .bind(meta.size)
            .bind(&meta.sha256)
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
            .bind(meta.rev)
            .bind(meta.size)
            .bind(&meta.sha256)
            .bind(deleted)
            .bind(meta.modified_ms)
            .bind(&meta.file_id)
            .bind(user_id)
            .execute(&mut **tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO revisions (file_id, rev, path, size, sha256, deleted, modified_ms, origin_device)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&meta.file_id)
        .bind(meta.rev)
        .bind(&meta.path)
        .bind(meta.size)
        .bind(&meta.sha256)
        .bind(deleted)
        .bind(meta.modified_ms)
        .bind(device)
        .execute(&mut **tx)
        .await?;
        let change = outcome.change(seq);
        sqlx::query(
            "INSERT INTO journal (user_id, seq, file_id, event, path, old_path, rev, size, sha256, origin_device, at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(user_id)
        .bind(seq)
        .bind(&change.file_id)
        .bind(event.as_str())
        .bind(&change.path)
        .bind(&change.old_path)
        .bind(change.rev)
        .bind(change.size)
        .bind(&change.sha256)
        .bind(&change.origin_device)
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
    async fn finish_at_once(
        tx: &mut OpTx<'_>,
        user_id: &str,
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
            if meta.rev == 1 { CREATE } else { UPDATE }
        );
        let rows = sqlx::query(&sql)
            .bind(user_id)
            .bind(&meta.file_id)
            .bind(&meta.path)
            .bind(path_key(&meta.path))
            .bind(meta.rev)
            .bind(meta.size)
            .bind(&meta.sha256)
            .bind(i64::from(meta.deleted))
            .bind(meta.modified_ms)
            .bind(device)
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

    async fn commit_content_in(
        &self,
        tx: &mut OpTx<'_>,
        user_id: &str,
        new: NewContent<'_>,
    ) -> Result<(FileMeta, ChangeEvent), FilesError> {
        let seq = self.seq_first(tx, user_id).await?;
        let mut state = Self::path_state(tx, user_id, new.path, None, true).await?;
        let current = state.take_current(new.path)?;
        let clash = state.clash;
        let old_size = current.as_ref().map_or(0, |c| c.size);
        self.check_quota(tx, user_id, old_size, new.size).await?;
        let now = now_ms();
        let (meta, event) = match (current, new.parent_rev) {
            (None, None) => {
                if let Some(other) = clash {
                    return Err(Self::clash(new.path, other));
                }
                (
                    FileMeta {
                        file_id: uuid::Uuid::new_v4().to_string(),
                        path: new.path.to_owned(),
                        rev: 1,
                        size: new.size,
                        sha256: new.sha256.to_owned(),
                        deleted: false,
                        modified_ms: now,
                    },
                    ChangeKind::Created,
                )
            }
            (Some(cur), Some(parent)) if cur.rev == parent => (
                FileMeta {
                    path: new.path.to_owned(),
                    rev: cur.rev + 1,
                    size: new.size,
                    sha256: new.sha256.to_owned(),
                    modified_ms: now,
                    ..cur
                },
                ChangeKind::Updated,
            ),
            (Some(cur), None) => {
                return Err(FilesError::conflict(
                    format!("'{}' already exists", cur.path),
                    Some(cur),
                ));
            }
            (Some(cur), Some(parent)) => return Err(stale(cur, parent)),
            (None, Some(parent)) => {
                return Err(FilesError::conflict(
                    format!(
                        "'{}' no longer exists (expected revision {parent})",
                        new.path
                    ),
                    None,
                ));
            }
        };
        let outcome = Outcome {
            meta: &meta,
            event,
            old_path: None,
            device: new.device,
            inline: new.inline,
        };
        let change = Self::finish(tx, user_id, seq, outcome).await?;
        Ok((meta, change))
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Limits every user's live files to `bytes` (checked by every commit that grows them).
    pub fn with_quota(mut self, bytes: Option<i64>) -> Self {
        self.quota = bytes;
        self
    }

    pub fn quota(&self) -> Option<i64> {
        self.quota
    }

    /// Bytes held by the user's live files.
    pub async fn usage(&self, user_id: &str) -> Result<i64, FilesError> {
        Ok(Self::used(&self.db.pool, user_id).await?)
    }

    async fn used(
        executor: impl sqlx::Executor<'_, Database = Any>,
        user_id: &str,
    ) -> Result<i64, sqlx::Error> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) AS used FROM files
             WHERE user_id = $1 AND deleted = 0",
        )
        .bind(user_id)
        .fetch_one(executor)
        .await?;
        row.try_get("used")
    }

    /// Refuses a change that replaces `old` live bytes by `new` if it would pass the quota.
    /// Shrinking is always allowed, even over the quota (a user must be able to clean up).
    async fn check_quota(
        &self,
        tx: &mut AnyConnection,
        user_id: &str,
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
                quota,
                needed: new - old,
            });
        }
        Ok(())
    }

    /// Records that content `sha256` of the user is the concatenation of `chunks` (idempotent).
    pub async fn put_manifest(
        &self,
        user_id: &str,
        sha256: &str,
        size: i64,
        chunks: &[ChunkRef],
    ) -> Result<(), FilesError> {
        let list: Vec<(&str, i64)> = chunks.iter().map(|c| (c.sha256.as_str(), c.size)).collect();
        sqlx::query(
            "INSERT INTO content_manifests (user_id, sha256, size, chunks, created_ms)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, sha256) DO NOTHING",
        )
        .bind(user_id)
        .bind(sha256)
        .bind(size)
        .bind(serde_json::to_string(&list).expect("chunk lists serialise"))
        .bind(now_ms())
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// The chunks of a chunked content, or `None` for a content stored as one blob.
    pub async fn manifest(
        &self,
        user_id: &str,
        sha256: &str,
    ) -> Result<Option<Vec<ChunkRef>>, FilesError> {
        let row =
            sqlx::query("SELECT chunks FROM content_manifests WHERE user_id = $1 AND sha256 = $2")
                .bind(user_id)
                .bind(sha256)
                .fetch_optional(&self.db.pool)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let list: Vec<(String, i64)> = serde_json::from_str(&row.get::<String, _>("chunks"))
            .map_err(|e| FilesError::Blob(std::io::Error::other(format!("bad manifest: {e}"))))?;
        Ok(Some(
            list.into_iter()
                .map(|(sha256, size)| ChunkRef { sha256, size })
                .collect(),
        ))
    }

    async fn delete_in(
        &self,
        tx: &mut OpTx<'_>,
        user_id: &str,
        file_id: &str,
        parent_rev: i64,
        device: Option<&str>,
    ) -> Result<(FileMeta, ChangeEvent), FilesError> {
        let seq = self.seq_first(tx, user_id).await?;
        let cur = Self::live_at_rev(tx, user_id, file_id, parent_rev).await?;
        let meta = FileMeta {
            rev: cur.rev + 1,
            size: 0,
            sha256: String::new(),
            deleted: true,
            modified_ms: now_ms(),
            ..cur
        };
        let outcome = Outcome::of(&meta, ChangeKind::Deleted, None, device);
        let change = Self::finish(tx, user_id, seq, outcome).await?;
        Ok((meta, change))
    }

    async fn move_file_in(
        &self,
        tx: &mut OpTx<'_>,
        user_id: &str,
        file_id: &str,
        new_path: &str,
        parent_rev: i64,
        device: Option<&str>,
    ) -> Result<(FileMeta, ChangeEvent), FilesError> {
        let seq = self.seq_first(tx, user_id).await?;
        let cur = Self::live_at_rev(tx, user_id, file_id, parent_rev).await?;
        if let Some(other) = Self::other_live_at(tx, user_id, new_path, file_id).await? {
            return Err(FilesError::conflict(
                format!("'{}' already exists", other.path),
                Some(other),
            ));
        }
        Self::ensure_file_or_directory(tx, user_id, new_path, Some(file_id)).await?;
        let old_path = cur.path.clone();
        let meta = FileMeta {
            path: new_path.to_owned(),
            rev: cur.rev + 1,
            modified_ms: now_ms(),
            ..cur
        };
        let outcome = Outcome::of(&meta, ChangeKind::Moved, Some(&old_path), device);
        let change = Self::finish(tx, user_id, seq, outcome).await?;
        Ok((meta, change))
    }

    async fn restore_in(
        &self,
        tx: &mut OpTx<'_>,
        user_id: &str,
        file_id: &str,
        rev: i64,
        parent_rev: i64,
        device: Option<&str>,
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

    async fn revision_of(
        executor: impl sqlx::Executor<'_, Database = Any>,
        user_id: &str,
        file_id: &str,
        rev: i64,
    ) -> Result<Option<Revision>, FilesError> {
        let row = sqlx::query(&format!(
            "SELECT {REVISION_COLUMNS} FROM revisions r JOIN files f ON f.file_id = r.file_id
             WHERE f.user_id = $1 AND r.file_id = $2 AND r.rev = $3"
        ))
        .bind(user_id)
        .bind(file_id)
        .bind(rev)
        .fetch_optional(executor)
        .await?;
        Ok(row.as_ref().map(revision_from_row).transpose()?)
    }

    /// One revision of a user's file.
    pub async fn revision(
        &self,
        user_id: &str,
        file_id: &str,
        rev: i64,
    ) -> Result<Option<Revision>, FilesError> {
        Self::revision_of(&self.db.pool, user_id, file_id, rev).await
    }

    /// Every revision of a user's file, newest first (`None` if the file is not theirs).
    pub async fn revisions(
        &self,
        user_id: &str,
        file_id: &str,
    ) -> Result<Option<Vec<Revision>>, FilesError> {
        let rows = sqlx::query(&format!(
            "SELECT {REVISION_COLUMNS} FROM revisions r JOIN files f ON f.file_id = r.file_id
             WHERE f.user_id = $1 AND r.file_id = $2 ORDER BY r.rev DESC"
        ))
        .bind(user_id)
        .bind(file_id)
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
    pub async fn trash(&self, user_id: &str) -> Result<Vec<FileMeta>, FilesError> {
        let rows = sqlx::query(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE user_id = $1 AND deleted = 1
             ORDER BY modified_ms DESC LIMIT $2"
        ))
        .bind(user_id)
        .bind(MAX_CHANGES_PAGE)
        .fetch_all(&self.db.pool)
        .await?;
        Ok(rows.iter().map(file_from_row).collect::<Result<_, _>>()?)
    }

    pub async fn get(&self, user_id: &str, file_id: &str) -> Result<Option<FileMeta>, FilesError> {
        Self::by_id(&self.db.pool, user_id, file_id).await
    }

    /// Live files that break a name rule, which only data written before the rule can hold:
    /// a live file under another one (before the file-or-folder rule), and live files whose
    /// names one key equates (before keys were case-folded, see [`crate::rekey`]):
    /// (user, file id, revision, what is wrong).
    pub async fn name_clashes(&self) -> Result<Vec<(String, String, i64, String)>, FilesError> {
        self.upgrade_path_keys().await?;
        let rows = sqlx::query(
            "SELECT user_id, file_id, rev, path, path_key FROM files WHERE deleted = 0
             ORDER BY user_id, path_key, key_twin",
        )
        .fetch_all(&self.db.pool)
        .await?;
        let mut live = Vec::with_capacity(rows.len());
        for row in &rows {
            live.push((
                row.try_get::<String, _>("user_id")?,
                row.try_get::<String, _>("file_id")?,
                row.try_get::<i64, _>("rev")?,
                row.try_get::<String, _>("path")?,
                row.try_get::<String, _>("path_key")?,
            ));
        }
        let mut keys: std::collections::HashSet<(&str, &str)> = Default::default();
        for (user, _, _, _, key) in &live {
            keys.insert((user, key));
        }
        let mut clashes = Vec::new();
        // Sorted by user and key: files that share a key are neighbours.
        for pair in live.windows(2) {
            let ((user, _, _, first, key), (u, file_id, rev, path, k)) = (&pair[0], &pair[1]);
            if (user, key) == (u, k) {
                clashes.push((
                    user.clone(),
                    file_id.clone(),
                    *rev,
                    format!(
                        "'{path}' and '{first}' are one name on case-insensitive disks (rename one of them)"
                    ),
                ));
            }
        }
        for (user, file_id, rev, path, key) in &live {
            let above = key
                .match_indices('/')
                .map(|(i, _)| &key[..i])
                .find(|a| keys.contains(&(user.as_str(), *a)));
            if let Some(above) = above {
                clashes.push((
                    user.clone(),
                    file_id.clone(),
                    *rev,
                    format!(
                        "'{path}' is under '{above}', which is a file too (rename one of them)"
                    ),
                ));
            }
        }
        Ok(clashes)
    }

    /// Every live file, with the journal position the listing includes at least.
    pub async fn list(&self, user_id: &str) -> Result<FileList, FilesError> {
        // Read the cursor first: the listing that follows may include later commits, which a
        // client replaying the journal from this cursor recognises by their revision.
        let cursor = self.head(user_id).await?;
        let rows = sqlx::query(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE user_id = $1 AND deleted = 0 ORDER BY path"
        ))
        .bind(user_id)
        .fetch_all(&self.db.pool)
        .await?;
        let files = rows.iter().map(file_from_row).collect::<Result<_, _>>()?;
        Ok(FileList { files, cursor })
    }

    /// Latest journal `seq` of the user (0 before the first commit).
    pub async fn head(&self, user_id: &str) -> Result<i64, FilesError> {
        let row = sqlx::query("SELECT last_seq FROM journal_heads WHERE user_id = $1")
            .bind(user_id)
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
        user_id: &str,
        cursor: i64,
        limit: i64,
    ) -> Result<ChangesPage, FilesError> {
        let limit = limit.clamp(1, MAX_CHANGES_PAGE);
        let rows = sqlx::query(
            "SELECT seq, file_id, event, path, old_path, rev, size, sha256, origin_device, at_ms
             FROM journal WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(user_id)
        .bind(cursor)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Data written before the file-or-folder rule (inserted directly here, since the store
    /// refuses it now) is reported by `name_clashes`, per user.
    #[tokio::test]
    async fn reports_files_under_files_from_before_the_rule() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_embedded(dir.path()).await.unwrap();
        for (user, id, path, deleted) in [
            ("u1", "f1", "d", 0),
            ("u1", "f2", "D/e", 0),
            ("u1", "f3", "d.txt", 0),
            ("u1", "f4", "x", 1),
            ("u1", "f5", "x/y", 0),
            ("u2", "f6", "d/e", 0),
        ] {
            sqlx::query(
                "INSERT INTO files (file_id, user_id, path, path_key, rev, size, sha256, deleted, modified_ms)
                 VALUES ($1, $2, $3, $4, 1, 0, '', $5, 0)",
            )
            .bind(id)
            .bind(user)
            .bind(path)
            .bind(path_key(path))
            .bind(deleted)
            .execute(&db.pool)
            .await
            .unwrap();
        }
        let clashes = MetadataStore::new(db).name_clashes().await.unwrap();
        assert_eq!(clashes.len(), 1, "{clashes:?}");
        assert_eq!((clashes[0].0.as_str(), clashes[0].1.as_str()), ("u1", "f2"));
        assert!(
            clashes[0].3.contains("'D/e' is under 'd'"),
            "{}",
            clashes[0].3
        );
    }

    fn content<'a>(path: &'a str, parent_rev: Option<i64>) -> NewContent<'a> {
        NewContent {
            path,
            parent_rev,
            size: 1,
            sha256: "00",
            device: Some("laptop"),
            inline: None,
        }
    }

    /// Commits queued behind each other on SQLite share transactions; each one's effects and
    /// its journal `seq` stand or fall alone: conflicts inside a batch leave no trace.
    #[tokio::test]
    async fn concurrent_commits_share_transactions_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::new(Db::open_embedded(dir.path()).await.unwrap());
        let (paths, dupes): (Vec<String>, Vec<String>) = (0..60)
            .map(|i| (format!("f{i}.txt"), format!("F{i}.TXT")))
            .unzip();
        let mut tasks = Vec::new();
        for (path, dupe) in paths.iter().zip(&dupes) {
            for p in [path.clone(), dupe.clone()] {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    store.commit_content("u1", content(&p, None)).await
                }));
            }
        }
        let mut committed = Vec::new();
        let mut conflicts = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok((meta, change)) => committed.push((meta, change)),
                Err(FilesError::Conflict { .. }) => conflicts += 1,
                Err(other) => panic!("unexpected error: {other}"),
            }
        }
        // One of each case-insensitive pair wins, the other is a conflict.
        assert_eq!((committed.len(), conflicts), (60, 60));
        let mut seqs: Vec<i64> = committed.iter().map(|(_, c)| c.seq).collect();
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (1..=60).collect::<Vec<_>>(),
            "gap-free: conflicts used no seq"
        );
        assert_eq!(store.head("u1").await.unwrap(), 60);
        let listed = store.list("u1").await.unwrap();
        assert_eq!(listed.files.len(), 60);
        let journal = store.changes("u1", 0, 1000).await.unwrap();
        assert_eq!(journal.changes.len(), 60);
        assert!(
            store.group.batches() < 120,
            "{} transactions for 120 queued commits",
            store.group.batches()
        );

        // A batch after a failure still works, and a stale parent is refused inside it.
        let (first, _) = &committed[0];
        let (updated, _) = store
            .commit_content("u1", content(&first.path, Some(first.rev)))
            .await
            .unwrap();
        assert_eq!(updated.rev, first.rev + 1);
        let stale = store
            .commit_content("u1", content(&first.path, Some(first.rev)))
            .await;
        assert!(
            matches!(stale, Err(FilesError::Conflict { .. })),
            "{stale:?}"
        );
        assert_eq!(store.head("u1").await.unwrap(), 61);
    }

    /// An operation that panics fails its batch, not the writer: later commits go through.
    #[tokio::test]
    async fn a_panicking_operation_does_not_stop_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::new(Db::open_embedded(dir.path()).await.unwrap());
        let boom = store
            .write::<()>(op(|_, _| Box::pin(async { panic!("boom") })))
            .await;
        assert!(matches!(boom, Err(FilesError::Store(_))), "{boom:?}");
        let (meta, change) = store
            .commit_content("u1", content("after.txt", None))
            .await
            .unwrap();
        assert_eq!((meta.rev, change.seq), (1, 1));
    }

    /// An operation that fails in the database after writing dooms its whole batch: nothing
    /// of the batch is committed (no partial operation survives), every caller hears of it,
    /// and the next batch works. A refused operation in a batch leaves no trace.
    #[tokio::test]
    async fn a_database_failure_rolls_back_its_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::new(Db::open_embedded(dir.path()).await.unwrap());
        store
            .commit_content("u1", content("taken.txt", None))
            .await
            .unwrap();
        // Hold the writer so that the operations below queue up and form one batch.
        let (release, held) = tokio::sync::oneshot::channel::<()>();
        let holder = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .write(op(move |_, _| {
                        Box::pin(async move {
                            let _ = held.await;
                            Ok(())
                        })
                    }))
                    .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let spawn_commit = |path: &'static str| {
            let store = store.clone();
            tokio::spawn(async move { store.commit_content("u1", content(path, None)).await })
        };
        let before = spawn_commit("before.txt");
        let refused = spawn_commit("TAKEN.TXT");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let broken = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .write::<()>(op(|_, tx| {
                        Box::pin(async move {
                            sqlx::query("UPDATE journal_heads SET last_seq = last_seq + 100")
                                .execute(&mut **tx)
                                .await?;
                            sqlx::query("INSERT INTO no_such_table VALUES (1)")
                                .execute(&mut **tx)
                                .await?;
                            Ok(())
                        })
                    }))
                    .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let after = spawn_commit("after.txt");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        let batches_before = store.group.batches();
        assert!(matches!(broken.await.unwrap(), Err(FilesError::Store(_))));
        assert!(
            matches!(refused.await.unwrap(), Err(FilesError::Conflict { .. })),
            "a refused operation keeps its own error"
        );
        // Its batch companions, before and after it, failed with it.
        assert!(before.await.unwrap().is_err());
        assert!(after.await.unwrap().is_err());
        assert_eq!(store.group.batches(), batches_before, "nothing committed");
        assert_eq!(
            store.head("u1").await.unwrap(),
            1,
            "the +100 was rolled back"
        );
        let names: Vec<String> = store
            .list("u1")
            .await
            .unwrap()
            .files
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(names, ["taken.txt"]);
        // The writer goes on.
        let (_, change) = store
            .commit_content("u1", content("later.txt", None))
            .await
            .unwrap();
        assert_eq!(change.seq, 2);
    }

    /// An operation that writes and is then refused (which would leave its writes in the
    /// batch) fails its whole batch in every build: the writes of that batch, its own and its
    /// companions', are rolled back and every caller gets an error; the next batch works.
    #[tokio::test]
    async fn a_refusal_after_a_write_fails_its_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::new(Db::open_embedded(dir.path()).await.unwrap());
        store
            .commit_content("u1", content("first.txt", None))
            .await
            .unwrap();
        let (release, held) = tokio::sync::oneshot::channel::<()>();
        let holder = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .write(op(move |_, _| {
                        Box::pin(async move {
                            let _ = held.await;
                            Ok(())
                        })
                    }))
                    .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let spawn_commit = |path: &'static str| {
            let store = store.clone();
            tokio::spawn(async move { store.commit_content("u1", content(path, None)).await })
        };
        let before = spawn_commit("before.txt");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let bad = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .write::<()>(op(|_, tx| {
                        Box::pin(async move {
                            sqlx::query(
                                "INSERT INTO journal_heads (user_id, last_seq) VALUES ('u9', 7)",
                            )
                            .execute(&mut **tx)
                            .await?;
                            Err(FilesError::NotFound)
                        })
                    }))
                    .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let after = spawn_commit("after.txt");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        release.send(()).unwrap();
        holder.await.unwrap().unwrap();
        let batches_before = store.group.batches();
        let bad = bad.await.unwrap();
        assert!(
            matches!(&bad, Err(FilesError::Store(e)) if e.to_string().contains("already written rows")),
            "{bad:?}"
        );
        assert!(before.await.unwrap().is_err(), "committed with the bad one");
        assert!(after.await.unwrap().is_err(), "committed with the bad one");
        assert_eq!(store.group.batches(), batches_before, "nothing committed");
        assert_eq!(
            store.head("u9").await.unwrap(),
            0,
            "the write was rolled back"
        );
        assert_eq!(store.head("u1").await.unwrap(), 1);
        let (_, change) = store
            .commit_content("u1", content("later.txt", None))
            .await
            .unwrap();
        assert_eq!(change.seq, 2);
    }
}
