//! Retention, garbage collection and the consistency check of the file store.
//!
//! **Retention**: revisions older than the retention period are purged, except the current
//! revision of every live file; a deleted file stays whole in the trash until its deletion is
//! older than the retention period, then it is purged entirely.
//!
//! **Garbage collection**: a blob (whole content or chunk) is live while a kept revision's
//! content refers to it (directly, or through its manifest). Blobs that are not live and were
//! not written or referenced for the grace period are deleted, as are abandoned uploads in the
//! staging area. Uploads in progress are safe: a chunk is "touched" whenever a client asks about
//! it or a commit uses it, and commits hold [`GcLock`] for reading from that touch to their
//! metadata commit, while the sweep holds it for writing around each re-check and delete. So a
//! crash between chunk upload and commit leaves only orphans, and the collector never makes a
//! file point at a missing chunk.
//!
//! **Check**: [`check`] verifies that every kept revision's content is fully present with the
//! recorded sizes — the invariant the rest of this module protects.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use sqlx::Row;
use syncsphere_protocol::ChunkRef;
use tokio::sync::RwLock;

use std::sync::Arc;

use crate::blobs::{BlobStore, Staging};
use crate::store::MetadataStore;
use crate::{FilesError, now_ms};

/// Serialises the sweep's deletes against commits that use existing chunks.
pub type GcLock = RwLock<()>;

#[derive(Debug, Clone, Copy)]
pub struct GcPolicy {
    /// How long old revisions and trashed files are kept.
    pub retention: Duration,
    /// How long an unreferenced blob survives (uploads in progress, resumable uploads).
    pub grace: Duration,
}

/// What one retention + collection pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub revisions_purged: u64,
    pub files_purged: u64,
    pub manifests_purged: u64,
    pub blobs_deleted: u64,
    pub bytes_freed: u64,
    pub staging_deleted: u64,
}

/// Problems [`check`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub revisions_checked: u64,
    /// `(user, file, rev, what is wrong)`.
    pub problems: Vec<(String, String, i64, String)>,
}

/// One kept revision's content: who owns it and what it is.
struct KeptContent {
    user_id: String,
    file_id: String,
    rev: i64,
    sha256: String,
    size: i64,
}

async fn kept_contents(store: &MetadataStore) -> Result<Vec<KeptContent>, FilesError> {
    let rows = sqlx::query(
        "SELECT f.user_id, r.file_id, r.rev, r.sha256, r.size FROM revisions r
         JOIN files f ON f.file_id = r.file_id WHERE r.deleted = 0",
    )
    .fetch_all(&store.db().pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| KeptContent {
            user_id: r.get("user_id"),
            file_id: r.get("file_id"),
            rev: r.get("rev"),
            sha256: r.get("sha256"),
            size: r.get("size"),
        })
        .collect())
}

/// The chunks of a content: its manifest, or the content itself as one blob.
async fn chunks_of(
    store: &MetadataStore,
    user_id: &str,
    sha256: &str,
    size: i64,
) -> Result<Vec<ChunkRef>, FilesError> {
    Ok(store.manifest(user_id, sha256).await?.unwrap_or_else(|| {
        vec![ChunkRef {
            sha256: sha256.to_owned().into(),
            size,
        }]
    }))
}

/// Purges revisions and trashed files past the retention period.
pub async fn apply_retention(
    store: &MetadataStore,
    policy: GcPolicy,
    now_ms: i64,
    report: &mut GcReport,
) -> Result<(), FilesError> {
    let cutoff = now_ms - policy.retention.as_millis() as i64;
    let pool = &store.db().pool;
    let mut tx = pool.begin().await?;
    // Trashed files deleted before the cutoff go entirely.
    let purged = sqlx::query("DELETE FROM revisions WHERE file_id IN (SELECT file_id FROM files WHERE deleted = 1 AND modified_ms < $1)")
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
    report.revisions_purged += purged.rows_affected();
    let files = sqlx::query("DELETE FROM files WHERE deleted = 1 AND modified_ms < $1")
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
    report.files_purged += files.rows_affected();
    // Old revisions of the remaining files, never the current one; a trashed file keeps all
    // of its history until it is purged (so it can be restored).
    let old = sqlx::query(
        "DELETE FROM revisions WHERE modified_ms < $1
         AND EXISTS (SELECT 1 FROM files f WHERE f.file_id = revisions.file_id
                     AND f.deleted = 0 AND f.rev > revisions.rev)",
    )
    .bind(cutoff)
    .execute(&mut *tx)
    .await?;
    report.revisions_purged += old.rows_affected();
    tx.commit().await?;
    Ok(())
}

/// One full pass: retention, then manifests and blobs no kept revision refers to.
pub async fn collect(
    store: &MetadataStore,
    blobs: &Arc<dyn BlobStore>,
    staging: &Staging,
    lock: &GcLock,
    policy: GcPolicy,
) -> Result<GcReport, FilesError> {
    let mut report = GcReport::default();
    apply_retention(store, policy, now_ms(), &mut report).await?;
    let horizon = SystemTime::now() - policy.grace;
    // Candidates first: anything written or touched later is not one.
    let candidates: Vec<_> = blobs
        .list()
        .await?
        .into_iter()
        .filter(|b| b.modified < horizon)
        .collect();
    // The live set is computed with commits held off, so no commit can start using a
    // candidate between this computation and its deletion: a commit either finished before
    // (its chunks are live) or starts after the sweep (and finds deleted chunks missing).
    let _sweep = lock.write().await;
    let kept = kept_contents(store).await?;
    let mut live: HashSet<(String, String)> = HashSet::new();
    let mut live_manifests: HashSet<(String, String)> = HashSet::new();
    for k in &kept {
        live_manifests.insert((k.user_id.clone(), k.sha256.clone()));
        for c in chunks_of(store, &k.user_id, &k.sha256, k.size).await? {
            live.insert((k.user_id.clone(), c.sha256.to_string()));
        }
    }
    // Manifests of contents no revision keeps, older than the grace period.
    let cutoff_ms = now_ms() - policy.grace.as_millis() as i64;
    let rows = sqlx::query("SELECT user_id, sha256 FROM content_manifests WHERE created_ms < $1")
        .bind(cutoff_ms)
        .fetch_all(&store.db().pool)
        .await?;
    for row in rows {
        let key: (String, String) = (row.get("user_id"), row.get("sha256"));
        if !live_manifests.contains(&key) {
            sqlx::query("DELETE FROM content_manifests WHERE user_id = $1 AND sha256 = $2")
                .bind(&key.0)
                .bind(&key.1)
                .execute(&store.db().pool)
                .await?;
            report.manifests_purged += 1;
        }
    }
    for b in candidates {
        if live.contains(&(b.user_id.clone(), b.sha256.clone())) {
            continue;
        }
        // Re-check the age: a resuming client may have asked about it since it was listed.
        match blobs.stat(&b.user_id, &b.sha256).await? {
            Some((_, modified)) if modified < horizon => {}
            _ => continue,
        }
        blobs.delete(&b.user_id, &b.sha256).await?;
        report.blobs_deleted += 1;
        report.bytes_freed += b.size;
    }
    report.staging_deleted = staging.clean(horizon).await?;
    tracing::info!(?report, "garbage collection pass");
    Ok(report)
}

/// Verifies that every kept revision's content is present, complete and of the recorded size,
/// and that no live file lies under another (data from before the file-or-folder rule).
pub async fn check(
    store: &MetadataStore,
    blobs: &Arc<dyn BlobStore>,
) -> Result<CheckReport, FilesError> {
    let mut report = CheckReport::default();
    report.problems.extend(store.name_clashes().await?);
    for k in kept_contents(store).await? {
        report.revisions_checked += 1;
        let chunks = chunks_of(store, &k.user_id, &k.sha256, k.size).await?;
        let total: i64 = chunks.iter().map(|c| c.size).sum();
        if total != k.size {
            report.problems.push((
                k.user_id.clone(),
                k.file_id.clone(),
                k.rev,
                format!(
                    "chunks add up to {total} bytes, the revision says {}",
                    k.size
                ),
            ));
        }
        for c in chunks.iter().filter(|c| c.size > 0) {
            match blobs.stat(&k.user_id, &c.sha256.to_string()).await? {
                Some((len, _)) if len == c.size as u64 => {}
                Some((len, _)) => report.problems.push((
                    k.user_id.clone(),
                    k.file_id.clone(),
                    k.rev,
                    format!("blob {} has {len} bytes, expected {}", c.sha256, c.size),
                )),
                None => report.problems.push((
                    k.user_id.clone(),
                    k.file_id.clone(),
                    k.rev,
                    format!("blob {} is missing", c.sha256),
                )),
            }
        }
    }
    Ok(report)
}
