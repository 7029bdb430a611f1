//! File metadata, revisions and the change journal in the metadata database: one
//! [`MetadataStore`], its methods grouped by what they own — the write path and the
//! mutations (here), files and the name rules ([`files`]), the journal and the rows one
//! commit writes ([`journal`]), history, restore and trash ([`revisions`]), [`quota`], chunked contents'
//! manifests ([`manifests`]) and the ledger of uploaded, uncommitted chunks ([`staged`]). Never decides HTTP statuses.
//!
//! Every mutating operation runs in one transaction that increments the user's journal head
//! (`journal_heads.last_seq`): first on PostgreSQL, where that row lock serialises a user's
//! commits; last on SQLite, which has a single writer anyway. So the `parent_rev` check, the
//! metadata update, the revision row and the journal entry are atomic and `seq` is gap-free.
//! On SQLite the operation runs inside a group commit ([`crate::group_commit`]): operations
//! queued behind each other share one transaction and one `COMMIT`, which is why every
//! operation makes all of its checks before its first write.

mod files;
mod journal;
mod manifests;
pub(crate) use manifests::parse_manifest;
mod quota;
mod revisions;
pub mod staged;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use syncsphere_protocol::DeviceId;
use syncsphere_protocol::{FileId, Rev, UserId};

use futures_util::future::BoxFuture;
use sqlx::Row as _;
use syncsphere_db::{Db, Dialect};
use syncsphere_protocol::{ChangeEvent, ChangeKind, ChunkRef, FileMeta};

use crate::group_commit::{GroupCommit, Op, OpTx};
use crate::{FilesError, now_ms, rekey};
use files::stale;
use journal::Outcome;

pub use syncsphere_protocol::path_key;

/// Largest page of `GET /v1/changes`.
pub const MAX_CHANGES_PAGE: i64 = 1000;

#[derive(Debug, Clone)]
pub struct MetadataStore {
    db: Db,
    /// Most bytes a user's live files may hold (`None`: unlimited).
    quota: Option<i64>,
    /// How uploaded, not yet committed chunks are bounded (see [`staged`]).
    staged: staged::StagedPolicy,
    /// The staged-chunk figures `/metrics` reports; shared by clones.
    staged_stats: Arc<staged::StagedStats>,
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
    pub parent_rev: Option<Rev>,
    pub size: i64,
    pub sha256: &'a str,
    pub device: Option<&'a DeviceId>,
    /// The content's bytes, when it is small enough to live in the metadata database. The
    /// caller has checked that they hash to `sha256` and are `size` bytes long.
    pub inline: Option<&'a [u8]>,
    /// A content made of chunks: their list, recorded as its manifest with the commit.
    pub manifest: Option<&'a [ChunkRef]>,
}

/// Blobs a commit uses that must still exist once it holds the collector's lock: checked
/// inside the commit's transaction (see [`MetadataStore::commit_content_checked`]).
/// Given the commit's transaction, for what lives in the database (inline contents).
pub type Recheck = Box<
    dyn for<'c> FnOnce(&'c mut sqlx::AnyConnection) -> BoxFuture<'c, Result<(), FilesError>> + Send,
>;

/// Boxes a [`Recheck`] (the signature guides closure inference).
pub fn recheck_op(
    f: impl for<'c> FnOnce(&'c mut sqlx::AnyConnection) -> BoxFuture<'c, Result<(), FilesError>>
    + Send
    + 'static,
) -> Recheck {
    Box::new(f)
}

/// The PostgreSQL advisory lock that stands for [`crate::gc::GcLock`] across processes: content
/// commits hold it shared inside their transaction, the collector's sweep exclusively while it
/// deletes (decision 0049). `0x5359_4e43_4743` is "SYNCGC".
pub(crate) const GC_ADVISORY_LOCK: i64 = 0x5359_4e43_4743;

/// How long a commit waits for the collector's batch before it answers `503` (a batch deletes
/// 256 blobs: seconds at most).
const GC_SHARED_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// What a PostgreSQL transaction runs before its operation (the collector's lock).
pub(crate) type Guard = Box<
    dyn for<'t> FnOnce(
            &'t MetadataStore,
            &'t mut sqlx::Transaction<'static, sqlx::Any>,
        ) -> BoxFuture<'t, Result<(), FilesError>>
        + Send,
>;

/// Boxes a [`Guard`] (the signature guides closure inference).
fn guard_op(
    f: impl for<'t> FnOnce(
        &'t MetadataStore,
        &'t mut sqlx::Transaction<'static, sqlx::Any>,
    ) -> BoxFuture<'t, Result<(), FilesError>>
    + Send
    + 'static,
) -> Guard {
    Box::new(f)
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

impl MetadataStore {
    pub fn new(db: Db) -> Self {
        MetadataStore {
            db,
            quota: None,
            staged: staged::StagedPolicy::default(),
            staged_stats: Arc::default(),
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

    /// On PostgreSQL, the collector's advisory lock taken shared first in a transaction.
    pub(crate) fn gc_shared_guard(&self) -> Option<Guard> {
        (self.db.dialect == Dialect::Postgres).then(|| guard_op(|_, _| Box::pin(async { Ok(()) })))
    }

    /// The collector's lock across processes, held until the guard is dropped: on PostgreSQL a
    /// transaction holding [`GC_ADVISORY_LOCK`] exclusively (it waits for the commits that
    /// hold it shared, and new ones wait for it); `None` on SQLite, where the one process's
    /// [`crate::gc::GcLock`] is the whole of it.
    pub async fn gc_exclusive(
        &self,
    ) -> Result<Option<sqlx::Transaction<'static, sqlx::Any>>, FilesError> {
        match self.db.dialect {
            Dialect::Postgres => {
                let mut tx = self.db.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(GC_ADVISORY_LOCK)
                    .execute(&mut *tx)
                    .await?;
                Ok(Some(tx))
            }
            Dialect::Sqlite => Ok(None),
        }
    }

    /// A transaction holding the collector's advisory lock shared. While a sweep holds or waits
    /// for it exclusively the try fails, and the transaction is given back and tried again a
    /// little later: a commit waiting for the sweep holds no pooled connection meanwhile (the
    /// sweep needs some for its own queries; sixteen waiting commits would take them all).
    async fn begin_gc_shared(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, FilesError> {
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(5);
        loop {
            let mut tx = self.db.pool.begin().await?;
            let held: bool = sqlx::query("SELECT pg_try_advisory_xact_lock_shared($1) AS held")
                .bind(GC_ADVISORY_LOCK)
                .fetch_one(&mut *tx)
                .await?
                .get("held");
            if held {
                return Ok(tx);
            }
            tx.rollback().await?;
            if started.elapsed() > GC_SHARED_WAIT {
                return Err(FilesError::Unavailable(
                    "the garbage collector holds the file store; try again".into(),
                ));
            }
            tokio::time::sleep(pause).await;
            // At most 40 ms: the sweep leaves 100 ms between two batches for those waiting.
            pause = (pause * 2).min(std::time::Duration::from_millis(40));
        }
    }

    /// Runs a mutating operation in a transaction and commits it: its own on PostgreSQL, the
    /// next group commit's on SQLite. The result comes back once committed.
    async fn write<T: Send + 'static>(&self, op: Op<T>) -> Result<T, FilesError> {
        self.write_guarded(op, None).await
    }

    /// [`Self::write`], with `guard` run first in the PostgreSQL transaction.
    async fn write_guarded<T: Send + 'static>(
        &self,
        op: Op<T>,
        guard: Option<Guard>,
    ) -> Result<T, FilesError> {
        self.upgrade_path_keys().await?;
        match self.db.dialect {
            Dialect::Postgres => {
                let mut tx = match guard {
                    Some(_) => self.begin_gc_shared().await?,
                    None => self.db.pool.begin().await?,
                };
                if let Some(guard) = guard {
                    guard(self, &mut tx).await?;
                }
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
        user_id: &UserId,
        new: NewContent<'_>,
    ) -> Result<(FileMeta, ChangeEvent), FilesError> {
        self.commit_content_checked(user_id, new, None).await
    }

    /// [`Self::commit_content`], guarded against a garbage collector in another process
    /// (decision 0049). On PostgreSQL the transaction first takes the collector's advisory lock
    /// shared — a sweep deletes only while it holds it exclusively, so the sweep either
    /// finished its deletes before (and `recheck`, run next, finds what it deleted missing)
    /// or starts them after this commit (and finds it in the journal) — then records the
    /// manifest, so one a sweep just deleted is written again. On SQLite (one process, one
    /// writer) the caller's hold on [`crate::gc::GcLock`] is the guard and `recheck` is not run.
    pub async fn commit_content_checked(
        &self,
        user_id: &UserId,
        new: NewContent<'_>,
        recheck: Option<Recheck>,
    ) -> Result<(FileMeta, ChangeEvent), FilesError> {
        let user = user_id.to_owned();
        let (path, sha256) = (new.path.to_owned(), new.sha256.to_owned());
        let device = new.device.cloned();
        let inline = new.inline.map(<[u8]>::to_vec);
        let manifest = new.manifest.map(<[ChunkRef]>::to_vec);
        let (parent_rev, size) = (new.parent_rev, new.size);
        if let (Dialect::Sqlite, Some(chunks)) = (self.db.dialect, &manifest) {
            self.put_manifest(&user, &sha256, size, chunks).await?;
        }
        let guard = match self.db.dialect {
            Dialect::Postgres => Some((recheck, manifest)),
            Dialect::Sqlite => None,
        };
        self.write_guarded(
            op(move |store, tx| {
                Box::pin(async move {
                    let new = NewContent {
                        path: &path,
                        parent_rev,
                        size,
                        sha256: &sha256,
                        device: device.as_ref(),
                        inline: inline.as_deref(),
                        manifest: None,
                    };
                    store.commit_content_in(tx, &user, new).await
                })
            }),
            guard.map(|(recheck, manifest)| {
                let (user, sha256) = (user_id.to_owned(), new.sha256.to_owned());
                guard_op(move |store, tx| {
                    Box::pin(async move {
                        if let Some(chunks) = manifest {
                            store
                                .put_manifest_in(tx, &user, &sha256, size, &chunks)
                                .await?;
                        }
                        if let Some(recheck) = recheck {
                            recheck(tx).await?;
                        }
                        Ok(())
                    })
                })
            }),
        )
        .await
    }

    /// Deletes the live file `file_id` if it is at `parent_rev`.
    pub async fn delete(
        &self,
        user_id: &UserId,
        file_id: &FileId,
        parent_rev: Rev,
        device: Option<&DeviceId>,
    ) -> Result<(FileMeta, ChangeEvent), FilesError> {
        let (user, file) = (user_id.to_owned(), file_id.to_owned());
        let device = device.cloned();
        self.write(op(move |store, tx| {
            Box::pin(async move {
                store
                    .delete_in(tx, &user, &file, parent_rev, device.as_ref())
                    .await
            })
        }))
        .await
    }

    /// Moves or renames the live file `file_id` (keeping its id) if it is at `parent_rev`.
    pub async fn move_file(
        &self,
        user_id: &UserId,
        file_id: &FileId,
        new_path: &str,
        parent_rev: Rev,
        device: Option<&DeviceId>,
    ) -> Result<(FileMeta, ChangeEvent), FilesError> {
        let (user, file, path) = (user_id.to_owned(), file_id.to_owned(), new_path.to_owned());
        let device = device.cloned();
        self.write(op(move |store, tx| {
            Box::pin(async move {
                store
                    .move_file_in(tx, &user, &file, &path, parent_rev, device.as_ref())
                    .await
            })
        }))
        .await
    }

    async fn commit_content_in(
        &self,
        tx: &mut OpTx<'_>,
        user_id: &UserId,
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
                        file_id: uuid::Uuid::new_v4().to_string().into(),
                        path: new.path.to_owned(),
                        rev: Rev(1),
                        size: new.size,
                        sha256: new.sha256.to_owned().into(),
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
                    sha256: new.sha256.to_owned().into(),
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

    async fn delete_in(
        &self,
        tx: &mut OpTx<'_>,
        user_id: &UserId,
        file_id: &FileId,
        parent_rev: Rev,
        device: Option<&DeviceId>,
    ) -> Result<(FileMeta, ChangeEvent), FilesError> {
        let seq = self.seq_first(tx, user_id).await?;
        let cur = Self::live_at_rev(tx, user_id, file_id, parent_rev).await?;
        let meta = FileMeta {
            rev: cur.rev + 1,
            size: 0,
            sha256: String::new().into(),
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
        user_id: &UserId,
        file_id: &FileId,
        new_path: &str,
        parent_rev: Rev,
        device: Option<&DeviceId>,
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
}
