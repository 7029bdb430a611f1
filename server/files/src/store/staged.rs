//! The ledger of staged chunks: chunks a user uploaded that no commit has used yet (issue 19).
//!
//! A chunk is stored when it arrives and referenced only when the commit naming it lands, so
//! between the two its bytes belong to no file: no listing shows them and the quota on live
//! files does not see them. Without a ledger, one account could upload chunks it never commits
//! and make the server keep them for the collector's grace period (a day) — any number of
//! them. Each new chunk is therefore recorded here (`staged_chunks`, one row per user and
//! chunk, in the metadata database so every `files` instance of a cluster sees the same
//! ledger), its commit deletes its rows, and before a new chunk is accepted the user's staged
//! bytes recorded within the grace period are checked:
//! - against `--max-staged-bytes-per-user` (past it: `429 staged_limit` with `Retry-After`,
//!   the time until the oldest of them leaves the window);
//! - with a quota, together with the live bytes against the quota (`507 quota_exceeded`): the
//!   quota covers uploads in flight too.
//!
//! The ledger errs on the side of counting: a commit whose row deletion fails (the commit
//! itself succeeded) leaves rows that leave the window after the grace period. Rows older than
//! the window are pruned by [`MetadataStore::prune_staged`], which every `files` process runs
//! periodically. Concurrent uploads of one user are checked before their bodies arrive, so a
//! user can pass the limit by at most the chunks in flight at that moment (each at most
//! [`syncsphere_protocol::MAX_CHUNK_SIZE`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::Row;
use syncsphere_protocol::{ChunkRef, UserId};

use super::MetadataStore;
use crate::FilesError;

/// Default of `--max-staged-bytes-per-user`: 64 GiB. Also the largest file a user can upload,
/// since a file's chunks are all staged before its commit.
pub const DEFAULT_MAX_STAGED_BYTES_PER_USER: i64 = 64 << 30;

/// Rows deleted or refreshed per statement.
const BATCH: usize = 500;

/// How staged chunks are counted and bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagedPolicy {
    /// Most staged bytes per user (`None`: unlimited).
    pub per_user: Option<i64>,
    /// How long a staged chunk counts: the collector's grace period (after it the collector
    /// may delete the chunk).
    pub window: Duration,
}

impl Default for StagedPolicy {
    fn default() -> Self {
        StagedPolicy {
            per_user: Some(DEFAULT_MAX_STAGED_BYTES_PER_USER),
            window: Duration::from_secs(crate::config::DEFAULT_GC_GRACE_SECS),
        }
    }
}

/// A user's staged chunks within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StagedUsage {
    pub bytes: i64,
    /// When the oldest of them was staged (ms since the epoch).
    pub oldest_ms: Option<i64>,
}

/// What `/metrics` reports of the ledger (shared by clones of the store).
#[derive(Debug, Default)]
pub struct StagedStats {
    /// Staged bytes of all users within the window, as of the last [`MetadataStore::prune_staged`].
    pub total_bytes: AtomicI64,
    /// Chunks refused by the per-user limit since the process started.
    pub refusals: AtomicU64,
}

impl MetadataStore {
    /// Bounds and counts staged chunks by `policy`.
    pub fn with_staged_policy(mut self, policy: StagedPolicy) -> Self {
        self.staged = policy;
        self
    }

    pub fn staged_policy(&self) -> StagedPolicy {
        self.staged
    }

    pub fn staged_stats(&self) -> Arc<StagedStats> {
        self.staged_stats.clone()
    }

    fn window_start(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(self.staged.window.as_millis() as i64)
    }

    /// The user's staged chunks recorded within the window.
    pub async fn staged(&self, user_id: &UserId, now_ms: i64) -> Result<StagedUsage, FilesError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes, MIN(staged_ms) AS oldest
             FROM staged_chunks WHERE user_id = $1 AND staged_ms >= $2",
        )
        .bind(user_id.as_str())
        .bind(self.window_start(now_ms))
        .fetch_one(&self.db.pool)
        .await?;
        Ok(StagedUsage {
            bytes: row.try_get("bytes")?,
            oldest_ms: row.try_get("oldest")?,
        })
    }

    /// Refuses a new chunk of about `incoming` bytes (its `Content-Length`, else 0) that would
    /// take the user past the staged limit or, with the live files, past the quota.
    pub async fn admit_chunk(
        &self,
        user_id: &UserId,
        incoming: i64,
        now_ms: i64,
    ) -> Result<(), FilesError> {
        let staged = self.staged(user_id, now_ms).await?;
        if let Some(limit) = self.staged.per_user
            && staged.bytes.saturating_add(incoming) > limit
        {
            self.staged_stats.refusals.fetch_add(1, Ordering::Relaxed);
            let leaves_ms = staged
                .oldest_ms
                .map(|oldest| oldest + self.staged.window.as_millis() as i64 - now_ms)
                .unwrap_or(0);
            return Err(FilesError::StagedLimit {
                staged: staged.bytes,
                limit,
                retry_after_secs: (leaves_ms.max(0) as u64).div_ceil(1000).max(1),
            });
        }
        if let Some(quota) = self.quota {
            let live = self.usage(user_id).await?;
            let needed = incoming.max(1);
            if live.saturating_add(staged.bytes).saturating_add(needed) > quota {
                return Err(FilesError::QuotaExceeded {
                    used: live,
                    staged: staged.bytes,
                    quota,
                    needed,
                });
            }
        }
        Ok(())
    }

    /// Records a chunk the user has just stored (or stored again), staged now.
    pub async fn record_staged(
        &self,
        user_id: &UserId,
        sha256: &str,
        size: i64,
        now_ms: i64,
    ) -> Result<(), FilesError> {
        sqlx::query(
            "INSERT INTO staged_chunks (user_id, sha256, size, staged_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id, sha256) DO UPDATE SET staged_ms = excluded.staged_ms",
        )
        .bind(user_id.as_str())
        .bind(sha256)
        .bind(size)
        .bind(now_ms)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// The statement `{head} ($k, …)` over `shas` in batches, `binds` first.
    async fn each_batch(
        &self,
        head: &str,
        binds: (&str, Option<i64>),
        shas: &[&str],
    ) -> Result<u64, FilesError> {
        let mut affected = 0;
        let fixed = 1 + usize::from(binds.1.is_some());
        for batch in shas.chunks(BATCH) {
            let list: Vec<String> = (0..batch.len())
                .map(|i| format!("${}", i + fixed + 1))
                .collect();
            let sql = format!("{head} ({})", list.join(", "));
            let mut q = sqlx::query(&sql).bind(binds.0);
            if let Some(v) = binds.1 {
                q = q.bind(v);
            }
            for sha in batch {
                q = q.bind(*sha);
            }
            affected += q.execute(&self.db.pool).await?.rows_affected();
        }
        Ok(affected)
    }

    /// A commit used these chunks: they are no longer staged. Returns the rows deleted.
    pub async fn unstage(&self, user_id: &UserId, chunks: &[ChunkRef]) -> Result<u64, FilesError> {
        let shas: Vec<String> = chunks.iter().map(|c| c.sha256.to_string()).collect();
        let mut refs: Vec<&str> = shas.iter().map(String::as_str).collect();
        refs.sort_unstable();
        refs.dedup();
        self.each_batch(
            "DELETE FROM staged_chunks WHERE user_id = $1 AND sha256 IN",
            (user_id.as_str(), None),
            &refs,
        )
        .await
    }

    /// A client resuming an upload asked about these chunks (which restarts their grace
    /// period in the blob store): those still staged count from now again.
    pub async fn refresh_staged(
        &self,
        user_id: &UserId,
        shas: &[&str],
        now_ms: i64,
    ) -> Result<(), FilesError> {
        self.each_batch(
            "UPDATE staged_chunks SET staged_ms = $2 WHERE user_id = $1 AND sha256 IN",
            (user_id.as_str(), Some(now_ms)),
            shas,
        )
        .await?;
        Ok(())
    }

    /// Deletes rows that left the window and refreshes [`StagedStats::total_bytes`]. Returns
    /// the rows deleted.
    pub async fn prune_staged(&self, now_ms: i64) -> Result<u64, FilesError> {
        let start = self.window_start(now_ms);
        let deleted = sqlx::query("DELETE FROM staged_chunks WHERE staged_ms < $1")
            .bind(start)
            .execute(&self.db.pool)
            .await?
            .rows_affected();
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes FROM staged_chunks
             WHERE staged_ms >= $1",
        )
        .bind(start)
        .fetch_one(&self.db.pool)
        .await?;
        self.staged_stats
            .total_bytes
            .store(row.try_get("bytes")?, Ordering::Relaxed);
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store(policy: StagedPolicy, quota: Option<i64>) -> MetadataStore {
        // Kept for the test process's life (the store outlives this function).
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        let db = syncsphere_db::Db::open_embedded(dir.path()).await.unwrap();
        MetadataStore::new(db)
            .with_quota(quota)
            .with_staged_policy(policy)
    }

    fn chunk(sha: &str, size: i64) -> ChunkRef {
        ChunkRef {
            sha256: sha.to_owned().into(),
            size,
        }
    }

    #[tokio::test]
    async fn the_limit_counts_uncommitted_chunks_within_the_window() {
        let policy = StagedPolicy {
            per_user: Some(100),
            window: Duration::from_secs(60),
        };
        let s = store(policy, None).await;
        let (alice, bob) = (UserId::from("alice"), UserId::from("bob"));
        s.admit_chunk(&alice, 60, 1_000_000).await.unwrap();
        s.record_staged(&alice, "a1", 60, 1_000_000).await.unwrap();
        s.record_staged(&alice, "a2", 30, 1_010_000).await.unwrap();
        // 90 staged: 10 more fit, 11 do not; another user is not affected.
        s.admit_chunk(&alice, 10, 1_020_000).await.unwrap();
        match s.admit_chunk(&alice, 11, 1_020_000).await {
            Err(FilesError::StagedLimit {
                staged: 90,
                limit: 100,
                retry_after_secs,
            }) => assert_eq!(retry_after_secs, 40, "a1 leaves the window at 1,060,000"),
            other => panic!("expected the staged limit, got {other:?}"),
        }
        s.admit_chunk(&bob, 100, 1_020_000).await.unwrap();
        assert_eq!(s.staged_stats().refusals.load(Ordering::Relaxed), 1);
        // Staging the same chunk again counts it once.
        s.record_staged(&alice, "a2", 30, 1_020_000).await.unwrap();
        assert_eq!(s.staged(&alice, 1_020_000).await.unwrap().bytes, 90);
        // A commit of a1 frees its bytes.
        assert_eq!(
            s.unstage(&alice, &[chunk("a1", 60), chunk("a1", 60)])
                .await
                .unwrap(),
            1
        );
        s.admit_chunk(&alice, 70, 1_020_000).await.unwrap();
        // After the window the rest leaves too, and pruning deletes it.
        assert_eq!(s.staged(&alice, 1_080_001).await.unwrap().bytes, 0);
        s.record_staged(&bob, "b1", 5, 1_080_000).await.unwrap();
        assert_eq!(s.prune_staged(1_080_001).await.unwrap(), 1);
        assert_eq!(s.staged_stats().total_bytes.load(Ordering::Relaxed), 5);
    }

    #[tokio::test]
    async fn asking_about_a_chunk_restarts_its_window() {
        let policy = StagedPolicy {
            per_user: Some(100),
            window: Duration::from_secs(60),
        };
        let s = store(policy, None).await;
        let alice = UserId::from("alice");
        s.record_staged(&alice, "a1", 80, 0).await.unwrap();
        s.refresh_staged(&alice, &["a1", "unknown"], 50_000)
            .await
            .unwrap();
        assert_eq!(s.staged(&alice, 100_000).await.unwrap().bytes, 80);
        assert!(matches!(
            s.admit_chunk(&alice, 30, 100_000).await,
            Err(FilesError::StagedLimit { .. })
        ));
    }

    #[tokio::test]
    async fn the_quota_covers_uploads_in_flight() {
        let s = store(
            StagedPolicy {
                per_user: None,
                window: Duration::from_secs(60),
            },
            Some(1000),
        )
        .await;
        let alice = UserId::from("alice");
        s.record_staged(&alice, "a1", 900, 0).await.unwrap();
        s.admit_chunk(&alice, 100, 1).await.unwrap();
        match s.admit_chunk(&alice, 101, 1).await {
            Err(FilesError::QuotaExceeded {
                used: 0,
                staged: 900,
                quota: 1000,
                needed: 101,
            }) => {}
            other => panic!("expected the quota, got {other:?}"),
        }
        // A chunk of unknown length needs at least a byte.
        s.record_staged(&alice, "a2", 100, 2).await.unwrap();
        assert!(s.admit_chunk(&alice, 0, 3).await.is_err());
    }
}
