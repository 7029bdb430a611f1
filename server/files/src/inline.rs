//! Small contents inside the metadata database.
//!
//! A content of at most the server's inline limit (16 KiB by default) that arrives in one
//! upload request is not written to the blob store: the commit that uses it inserts it into
//! `inline_blobs` in the same transaction as the revision ([`crate::store::NewContent::inline`]).
//! On the embedded database that makes a small file durable with the group commit's one WAL
//! fsync, shared by every commit of the batch, instead of a staged file, two fsyncs and a
//! rename each; on PostgreSQL + S3 it saves an object PUT per small file.
//!
//! [`InlineBlobStore`] puts the table in front of the real store, so everything that reads,
//! lists, checks or collects blobs sees both without knowing where a blob lives.
//!
//! **Invariants**
//! - An inline blob is written only together with the revision that refers to it, so it is
//!   never an orphan when written and never missing under a committed revision.
//! - Reads look in the table first, then in the store: a content may be in both (uploaded in
//!   chunks once, inline another time); both copies are the same bytes under the same hash.
//! - Deleting a blob (garbage collection) deletes it from both places.
//! - No inline blob is larger than [`MAX_INLINE_BYTES`] (the configured limit is clamped to it).
//! - Touching an inline blob does not restart its grace period (like S3 objects): it needs
//!   none, since it was written with its commit, and a commit by hash that reuses it holds the
//!   GC lock, under which the sweep computes what is referenced.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use sqlx::Row;
use syncsphere_auth::BoxFuture;
use syncsphere_db::Db;

use crate::FilesError;
use crate::blobs::{
    BlobInfo, BlobPages, BlobStore, ByteStream, LIST_PAGE, StagedBlob, check_address,
};

/// The default limit: contents up to this size uploaded in one request are kept inline.
pub const DEFAULT_INLINE_MAX_BYTES: u64 = 16 * 1024;
/// The largest limit a server may be configured with, so no inline blob is ever larger: reads
/// of a range past it (every chunk of a chunked file: chunks are at least 256 KiB, but for a
/// file's last one) go straight to the store without asking the database.
pub const MAX_INLINE_BYTES: u64 = 64 * 1024;

/// The metadata database's `inline_blobs` in front of a blob store.
pub struct InlineBlobStore {
    db: Db,
    store: Arc<dyn BlobStore>,
}

impl std::fmt::Debug for InlineBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineBlobStore").finish_non_exhaustive()
    }
}

impl InlineBlobStore {
    pub fn new(db: Db, store: Arc<dyn BlobStore>) -> Self {
        InlineBlobStore { db, store }
    }

    /// The store behind the table.
    pub fn store(&self) -> &Arc<dyn BlobStore> {
        &self.store
    }

    async fn inline_stat(
        &self,
        user_id: &str,
        sha256: &str,
    ) -> Result<Option<(u64, SystemTime)>, FilesError> {
        let row = sqlx::query(
            "SELECT size, modified_ms FROM inline_blobs WHERE user_id = $1 AND sha256 = $2",
        )
        .bind(user_id)
        .bind(sha256)
        .fetch_optional(&self.db.pool)
        .await?;
        Ok(row.map(|r| {
            (
                r.get::<i64, _>("size") as u64,
                time_of(r.get("modified_ms")),
            )
        }))
    }
}

/// Whether the user's inline table holds `sha256`, asked on `conn` (a commit's transaction,
/// which must not wait for a second pooled connection).
pub(crate) async fn held_inline(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    sha256: &str,
) -> Result<bool, FilesError> {
    Ok(
        sqlx::query("SELECT 1 AS held FROM inline_blobs WHERE user_id = $1 AND sha256 = $2")
            .bind(user_id)
            .bind(sha256)
            .fetch_optional(conn)
            .await?
            .is_some(),
    )
}

fn time_of(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

impl BlobStore for InlineBlobStore {
    /// Staged blobs always go to the store: inline blobs are written by their commit.
    fn put<'a>(
        &'a self,
        user_id: &'a str,
        staged: &'a StagedBlob,
    ) -> BoxFuture<'a, Result<(), FilesError>> {
        self.store.put(user_id, staged)
    }

    fn put_many<'a>(
        &'a self,
        batch: &'a [(String, StagedBlob)],
    ) -> BoxFuture<'a, Vec<Result<(), FilesError>>> {
        self.store.put_many(batch)
    }

    fn touch<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, SystemTime)>, FilesError>> {
        Box::pin(async move {
            // The store first: chunks (asked about for every chunk of an upload) live there.
            if let Some(found) = self.store.touch(user_id, sha256).await? {
                return Ok(Some(found));
            }
            self.inline_stat(user_id, sha256).await
        })
    }

    fn stat<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, SystemTime)>, FilesError>> {
        Box::pin(async move {
            // Both copies may exist; the collector deletes both, so it must see the newer one
            // (an old inline row beside a chunk just uploaded is not garbage).
            match (
                self.inline_stat(user_id, sha256).await?,
                self.store.stat(user_id, sha256).await?,
            ) {
                (Some((size, inline)), Some((_, stored))) => Ok(Some((size, inline.max(stored)))),
                (Some(found), None) | (None, Some(found)) => Ok(Some(found)),
                (None, None) => Ok(None),
            }
        })
    }

    fn stat_in_store<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, SystemTime)>, FilesError>> {
        self.store.stat(user_id, sha256)
    }

    fn read<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
        start: u64,
        len: u64,
    ) -> BoxFuture<'a, Result<ByteStream, FilesError>> {
        Box::pin(async move {
            if start.saturating_add(len) > MAX_INLINE_BYTES {
                return self.store.read(user_id, sha256, start, len).await;
            }
            let row =
                sqlx::query("SELECT data FROM inline_blobs WHERE user_id = $1 AND sha256 = $2")
                    .bind(user_id)
                    .bind(sha256)
                    .fetch_optional(&self.db.pool)
                    .await?;
            let Some(row) = row else {
                return self.store.read(user_id, sha256, start, len).await;
            };
            let data = Bytes::from(row.try_get::<Vec<u8>, _>("data")?);
            // Past the end gives what there is, as the other stores do: the caller's size or
            // hash check reports a short blob.
            let from = (start.min(data.len() as u64)) as usize;
            let to = (start.saturating_add(len).min(data.len() as u64)) as usize;
            let piece = data.slice(from..to);
            let stream: ByteStream = Box::pin(futures_util::stream::iter(
                (!piece.is_empty()).then_some(Ok(piece)),
            ));
            Ok(stream)
        })
    }

    fn list(&self) -> BlobPages<'_> {
        // The store's pages, then the table's, read by key a page at a time so no query holds
        // the (embedded database's one) connection for the whole table.
        let table = futures_util::stream::unfold(Some(None), move |after| async move {
            let after: Option<(String, String)> = after?;
            let rows = match &after {
                None => {
                    sqlx::query(
                        "SELECT user_id, sha256, size, modified_ms FROM inline_blobs
                         ORDER BY user_id, sha256 LIMIT $1",
                    )
                    .bind(LIST_PAGE as i64)
                    .fetch_all(&self.db.pool)
                    .await
                }
                Some((user, sha)) => {
                    sqlx::query(
                        "SELECT user_id, sha256, size, modified_ms FROM inline_blobs
                         WHERE user_id > $1 OR (user_id = $1 AND sha256 > $2)
                         ORDER BY user_id, sha256 LIMIT $3",
                    )
                    .bind(user)
                    .bind(sha)
                    .bind(LIST_PAGE as i64)
                    .fetch_all(&self.db.pool)
                    .await
                }
            };
            let rows = match rows {
                Ok(rows) => rows,
                Err(e) => return Some((Err(FilesError::from(e)), None)),
            };
            let page: Vec<BlobInfo> = rows
                .iter()
                .map(|r| BlobInfo {
                    user_id: r.get("user_id"),
                    sha256: r.get("sha256"),
                    size: r.get::<i64, _>("size") as u64,
                    modified: time_of(r.get("modified_ms")),
                })
                .collect();
            let next = (page.len() == LIST_PAGE).then(|| {
                let last = &page[page.len() - 1];
                Some((last.user_id.clone(), last.sha256.clone()))
            });
            (!page.is_empty()).then_some((Ok(page), next))
        });
        self.store.list().chain(table).boxed()
    }

    fn delete<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<(), FilesError>> {
        Box::pin(async move {
            check_address(user_id, sha256)?;
            sqlx::query("DELETE FROM inline_blobs WHERE user_id = $1 AND sha256 = $2")
                .bind(user_id)
                .bind(sha256)
                .execute(&self.db.pool)
                .await?;
            self.store.delete(user_id, sha256).await
        })
    }

    fn touch_extends_grace(&self) -> bool {
        self.store.touch_extends_grace()
    }
}
