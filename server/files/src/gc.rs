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
//! metadata commit, while the sweep holds it for writing around each batch of re-checks and
//! deletes. Across processes (a collector in one, commits in others) PostgreSQL's advisory
//! lock does the same: commits take it shared in their transaction and re-check the blobs a
//! sweep could be deleting, each batch of the sweep takes it exclusively after reading what was
//! committed since it began (decision 0049). So a crash between chunk upload and commit leaves
//! only orphans, and the collector never makes a file point at a missing chunk.
//!
//! **Memory**: a few bytes per candidate blob and one page of rows (decision 0048).
//!
//! **Check**: [`check`] verifies that every kept revision's content is fully present with the
//! recorded sizes — the invariant the rest of this module protects.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use futures_util::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sqlx::Row;
use syncsphere_protocol::{ChunkRef, ContentHash};
use tokio::sync::RwLock;

use std::sync::Arc;

use crate::blobs::{BlobStore, Staging};
use crate::store::{MetadataStore, parse_manifest};
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

/// What the collector did since the process started, for `/metrics`.
#[derive(Debug, Default)]
pub struct GcStats {
    pub passes: AtomicU64,
    pub failures: AtomicU64,
    /// How long the last pass took, in milliseconds.
    pub last_pass_ms: AtomicU64,
    pub blobs_deleted: AtomicU64,
    pub bytes_freed: AtomicU64,
}

impl GcStats {
    /// Counts a pass that took `took` and ended with `outcome`.
    pub fn record(&self, took: Duration, outcome: &Result<GcReport, FilesError>) {
        self.last_pass_ms
            .store(took.as_millis() as u64, Ordering::Relaxed);
        match outcome {
            Ok(report) => {
                self.passes.fetch_add(1, Ordering::Relaxed);
                self.blobs_deleted
                    .fetch_add(report.blobs_deleted, Ordering::Relaxed);
                self.bytes_freed
                    .fetch_add(report.bytes_freed, Ordering::Relaxed);
            }
            Err(_) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Problems [`check`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub revisions_checked: u64,
    /// `(user, file, rev, what is wrong)`.
    pub problems: Vec<(String, String, i64, String)>,
}

/// One kept revision's content: who owns it, what it is and, for a chunked content, its
/// manifest's chunk list (JSON).
struct KeptContent {
    user_id: String,
    file_id: String,
    rev: i64,
    sha256: String,
    size: i64,
    manifest: Option<String>,
}

impl KeptContent {
    /// The chunks of the content: its manifest's, or the content itself as one blob.
    fn chunks(&self) -> Result<Vec<ChunkRef>, FilesError> {
        match &self.manifest {
            Some(json) => parse_manifest(json),
            None => Ok(vec![ChunkRef {
                sha256: self.sha256.clone().into(),
                size: self.size,
            }]),
        }
    }
}

/// Kept revisions (not deletion markers) are read in pages of this many, by key.
const KEPT_PAGE: i64 = 1000;

/// The kept revisions after `(file_id, rev)` in key order, at most [`KEPT_PAGE`], each with
/// its manifest. Reading by key a page at a time keeps memory flat at any store size and lets
/// other queries take the embedded database's one connection between pages.
async fn kept_page(
    store: &MetadataStore,
    after: &(String, i64),
) -> Result<Vec<KeptContent>, FilesError> {
    let rows = sqlx::query(
        "SELECT f.user_id, r.file_id, r.rev, r.sha256, r.size, m.chunks FROM revisions r
         JOIN files f ON f.file_id = r.file_id
         LEFT JOIN content_manifests m ON m.user_id = f.user_id AND m.sha256 = r.sha256
         WHERE r.deleted = 0 AND (r.file_id > $1 OR (r.file_id = $1 AND r.rev > $2))
         ORDER BY r.file_id, r.rev LIMIT $3",
    )
    .bind(&after.0)
    .bind(after.1)
    .bind(KEPT_PAGE)
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
            manifest: r.get("chunks"),
        })
        .collect())
}

/// Every kept revision's content, a page at a time.
struct KeptPages {
    after: (String, i64),
    done: bool,
}

impl KeptPages {
    fn new() -> Self {
        KeptPages {
            after: (String::new(), i64::MIN),
            done: false,
        }
    }

    async fn next(
        &mut self,
        store: &MetadataStore,
    ) -> Result<Option<Vec<KeptContent>>, FilesError> {
        if self.done {
            return Ok(None);
        }
        let page = kept_page(store, &self.after).await?;
        self.done = (page.len() as i64) < KEPT_PAGE;
        if let Some(last) = page.last() {
            self.after = (last.file_id.clone(), last.rev);
        }
        Ok(Some(page))
    }
}

/// Blobs (or manifests) deleted per hold of the collector's lock: commits wait for one batch
/// at most.
const SWEEP_BATCH: usize = 256;
/// Blobs a batch re-checks and deletes at once.
const SWEEP_PARALLEL: usize = 16;

/// Strikes off the candidates and old manifests what one content uses: its manifest (`content`)
/// and its chunks (the content itself when it is one blob).
fn strike(
    users: &Users,
    user_id: &str,
    content: Option<Key>,
    chunks: Vec<ChunkRef>,
    candidates: &mut BTreeMap<Key, u64>,
    old_manifests: &mut BTreeSet<Key>,
) {
    if let Some(key) = content {
        old_manifests.remove(&key);
    }
    for c in chunks {
        if let Some(key) = users.key(user_id, &c.sha256.to_string()) {
            candidates.remove(&key);
        }
    }
}

/// Between two batches on PostgreSQL, commits of other processes that waited for the lock get
/// it (they retry every 40 ms at most, see `MetadataStore::begin_gc_shared`): a long sweep must
/// not starve them. (This process's commits wait on `GcLock`, which lets them in by itself.)
async fn breathe(another_batch: bool) {
    if another_batch {
        tokio::time::sleep(BATCH_GAP).await;
    }
}

/// The pause between two batches.
const BATCH_GAP: std::time::Duration = std::time::Duration::from_millis(100);

/// Ends a batch's transaction, which releases the advisory lock (not left to a drop), and
/// returns the batch's outcome — its own error first.
async fn release(
    cluster: Option<sqlx::Transaction<'static, sqlx::Any>>,
    swept: Result<(), FilesError>,
) -> Result<(), FilesError> {
    let released = match cluster {
        Some(tx) => tx.rollback().await.map_err(FilesError::from),
        None => Ok(()),
    };
    if let (Err(e), Err(_)) = (&released, &swept) {
        tracing::warn!(error = %e, "releasing the collector's lock after a failed batch");
    }
    swept.and(released)
}

/// How far back, before its pass began, a batch looks for manifests written meanwhile: other
/// processes' clocks may be behind this one's.
const MANIFEST_CLOCK_SLACK_MS: i64 = 10 * 60 * 1000;

/// Strikes off the candidates every chunk a manifest names, reading the manifests by key a
/// page at a time.
async fn strike_manifest_chunks(
    store: &MetadataStore,
    users: &Users,
    candidates: &mut BTreeMap<Key, u64>,
) -> Result<(), FilesError> {
    let mut after = (String::new(), String::new());
    loop {
        let rows = sqlx::query(
            "SELECT user_id, sha256, chunks FROM content_manifests
             WHERE user_id > $1 OR (user_id = $1 AND sha256 > $2)
             ORDER BY user_id, sha256 LIMIT $3",
        )
        .bind(&after.0)
        .bind(&after.1)
        .bind(KEPT_PAGE)
        .fetch_all(&store.db().pool)
        .await?;
        for row in &rows {
            let user_id: String = row.get("user_id");
            if users.ids.contains_key(&user_id) {
                for key in users.chunk_keys(&user_id, &row.get::<String, _>("chunks"))? {
                    candidates.remove(&key);
                }
            }
            after = (user_id, row.get("sha256"));
        }
        if (rows.len() as i64) < KEPT_PAGE {
            return Ok(());
        }
    }
}

/// The chunks, of the batch's users, named by manifests written at `since_ms` or later (read
/// by age, which the index on `created_ms` serves).
async fn recent_manifest_chunks(
    store: &MetadataStore,
    users: &Users,
    batch_users: &BTreeSet<u32>,
    since_ms: i64,
) -> Result<HashSet<Key>, FilesError> {
    let mut named = HashSet::new();
    let mut after = (since_ms, String::new(), String::new());
    loop {
        let rows = sqlx::query(
            "SELECT created_ms, user_id, sha256, chunks FROM content_manifests
             WHERE created_ms > $1 OR (created_ms = $1 AND (user_id > $2
                   OR (user_id = $2 AND sha256 > $3)))
             ORDER BY created_ms, user_id, sha256 LIMIT $4",
        )
        .bind(after.0)
        .bind(&after.1)
        .bind(&after.2)
        .bind(KEPT_PAGE)
        .fetch_all(&store.db().pool)
        .await?;
        for row in &rows {
            let user_id: String = row.get("user_id");
            if users
                .ids
                .get(&user_id)
                .is_some_and(|n| batch_users.contains(n))
            {
                named.extend(users.chunk_keys(&user_id, &row.get::<String, _>("chunks"))?);
            }
            after = (row.get("created_ms"), user_id, row.get("sha256"));
        }
        if (rows.len() as i64) < KEPT_PAGE {
            return Ok(named);
        }
    }
}

/// Every user's journal head (`journal_heads.last_seq`), read by key a page at a time.
async fn journal_heads(store: &MetadataStore) -> Result<HashMap<String, i64>, FilesError> {
    let mut heads = HashMap::new();
    let mut after = String::new();
    loop {
        let rows = sqlx::query(
            "SELECT user_id, last_seq FROM journal_heads WHERE user_id > $1
             ORDER BY user_id LIMIT $2",
        )
        .bind(&after)
        .bind(KEPT_PAGE)
        .fetch_all(&store.db().pool)
        .await?;
        for row in &rows {
            after = row.get("user_id");
            heads.insert(after.clone(), row.get::<i64, _>("last_seq"));
        }
        if (rows.len() as i64) < KEPT_PAGE {
            return Ok(heads);
        }
    }
}

/// What was committed since `heads` (the journal's entries after each user's head, with their
/// manifests' chunks): the keys of the contents and chunks those commits use, among the users
/// of this pass. Moves `heads` on.
async fn strike_new_commits(
    store: &MetadataStore,
    users: &Users,
    heads: &mut HashMap<String, i64>,
    only: Option<&BTreeSet<u32>>,
) -> Result<HashSet<Key>, FilesError> {
    let mut used = HashSet::new();
    let now = match only {
        None => journal_heads(store).await?,
        // Only these users' contents are at stake: their heads alone.
        Some(numbers) => {
            let mut now = HashMap::new();
            for &n in numbers {
                let row = sqlx::query("SELECT last_seq FROM journal_heads WHERE user_id = $1")
                    .bind(users.name(n))
                    .fetch_optional(&store.db().pool)
                    .await?;
                if let Some(row) = row {
                    now.insert(users.name(n).to_owned(), row.get::<i64, _>("last_seq"));
                }
            }
            now
        }
    };
    for (user_id, head) in now {
        let mut seen = heads.get(&user_id).copied().unwrap_or(0);
        if head <= seen {
            continue;
        }
        // A user with no number has no candidate: nothing of theirs can be struck.
        if users.ids.contains_key(&user_id) {
            loop {
                let rows = sqlx::query(
                    "SELECT j.seq, j.sha256, m.chunks FROM journal j
                     LEFT JOIN content_manifests m ON m.user_id = j.user_id AND m.sha256 = j.sha256
                     WHERE j.user_id = $1 AND j.seq > $2 ORDER BY j.seq LIMIT $3",
                )
                .bind(&user_id)
                .bind(seen)
                .bind(KEPT_PAGE)
                .fetch_all(&store.db().pool)
                .await?;
                for row in &rows {
                    seen = row.get("seq");
                    let sha256: String = row.get("sha256");
                    let chunks = match row.get::<Option<String>, _>("chunks") {
                        Some(json) => parse_manifest(&json)?,
                        None => vec![ChunkRef {
                            sha256: sha256.clone().into(),
                            size: 0,
                        }],
                    };
                    used.extend(users.key(&user_id, &sha256));
                    for c in chunks {
                        used.extend(users.key(&user_id, &c.sha256.to_string()));
                    }
                }
                if (rows.len() as i64) < KEPT_PAGE {
                    break;
                }
            }
        }
        heads.insert(user_id, head);
    }
    Ok(used)
}

/// A blob's address in a few bytes: the user's number in this pass and the raw hash.
type Key = (u32, [u8; 32]);

/// The users of one pass, numbered (so a key does not repeat the user's id).
#[derive(Default)]
struct Users {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Users {
    fn number(&mut self, user_id: &str) -> u32 {
        if let Some(&n) = self.ids.get(user_id) {
            return n;
        }
        let n = u32::try_from(self.names.len())
            .ok()
            .filter(|n| n & CHUNKED_KEY == 0)
            .expect("fewer than 2^31 users in one pass");
        self.ids.insert(user_id.to_owned(), n);
        self.names.push(user_id.to_owned());
        n
    }

    /// The key of a user's hash, if the user has a number and the hash is one.
    fn key(&self, user_id: &str, sha256: &str) -> Option<Key> {
        id_key(*self.ids.get(user_id)?, sha256)
    }

    /// The keys of the chunks a manifest (its JSON list) names, for a user of the pass.
    fn chunk_keys(&self, user_id: &str, manifest: &str) -> Result<Vec<Key>, FilesError> {
        Ok(parse_manifest(manifest)?
            .iter()
            .filter_map(|c| self.key(user_id, &c.sha256.to_string()))
            .collect())
    }

    fn name(&self, n: u32) -> &str {
        &self.names[(n & !CHUNKED_KEY) as usize]
    }
}

/// Set in a key's user number when its hash is a chunked content id (decision 0051): only
/// contents and their manifests have those, blobs never, and a chunked id's 32 bytes must not
/// read as the SHA-256 of the same bytes (a manifest is deleted by its id's text).
const CHUNKED_KEY: u32 = 1 << 31;

/// The key of user number `n`'s content or chunk id `id`, if it is one.
fn id_key(n: u32, id: &str) -> Option<Key> {
    match ContentHash::from(id) {
        ContentHash::Sha256(raw) => Some((n, raw)),
        ContentHash::Chunked(raw) => Some((n | CHUNKED_KEY, raw)),
        ContentHash::Text(_) => None,
    }
}

/// The id text of a key's hash (see [`CHUNKED_KEY`]).
fn id_text(&(n, raw): &Key) -> String {
    if n & CHUNKED_KEY == 0 {
        ContentHash::Sha256(raw).to_string()
    } else {
        ContentHash::Chunked(raw).to_string()
    }
}

fn raw_hash(sha256: &str) -> Option<[u8; 32]> {
    let mut raw = [0u8; 32];
    hex::decode_to_slice(sha256, &mut raw).ok()?;
    Some(raw)
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
///
/// Memory: a few dozen bytes per blob old enough to collect and per old manifest (numbered
/// users and raw hashes), never a listing or a query's rows at once; the kept revisions are
/// read by key a page at a time and strike what they use off the candidates.
///
/// Deletes come last, in batches under the collector's lock — this process's `GcLock` and, on
/// PostgreSQL, the advisory lock every process's commits take shared (decision 0049) — each
/// after striking what the batch's users committed since the pass began (the journal): a
/// commit either finished before the batch took the lock, or waits for it and then finds what
/// it deleted missing. Manifests go before blobs, and a blob any surviving manifest names is
/// kept, so no manifest ever names a deleted chunk.
pub async fn collect(
    store: &MetadataStore,
    blobs: &Arc<dyn BlobStore>,
    staging: &Staging,
    lock: &GcLock,
    policy: GcPolicy,
) -> Result<GcReport, FilesError> {
    collect_pausing(store, blobs, staging, lock, policy, &|_| Box::pin(async {})).await
}

/// Awaited before each batch of blob deletes (numbered from 0), outside the lock.
pub type BeforeBatch = dyn Fn(usize) -> futures_util::future::BoxFuture<'static, ()> + Send + Sync;

/// [`collect`], awaiting `before_blob_batch` before each batch of blob deletes: tests interleave
/// commits with a pass there.
#[doc(hidden)]
pub async fn collect_pausing(
    store: &MetadataStore,
    blobs: &Arc<dyn BlobStore>,
    staging: &Staging,
    lock: &GcLock,
    policy: GcPolicy,
    before_blob_batch: &BeforeBatch,
) -> Result<GcReport, FilesError> {
    let mut report = GcReport::default();
    apply_retention(store, policy, now_ms(), &mut report).await?;
    let horizon = SystemTime::now() - policy.grace;
    let began_ms = now_ms();
    // Where each user's journal stood before the kept revisions are read.
    let mut heads = journal_heads(store).await?;
    // Candidates first: anything written or touched later is not one.
    let mut users = Users::default();
    let mut candidates: BTreeMap<Key, u64> = BTreeMap::new();
    let mut pages = blobs.list();
    while let Some(page) = pages.next().await {
        for b in page? {
            if b.modified >= horizon {
                continue;
            }
            let Some(hash) = raw_hash(&b.sha256) else {
                continue;
            };
            candidates.insert((users.number(&b.user_id), hash), b.size);
        }
    }
    drop(pages);
    // Manifests older than the grace period, until a kept revision claims them.
    let cutoff_ms = now_ms() - policy.grace.as_millis() as i64;
    let mut old_manifests: BTreeSet<Key> = BTreeSet::new();
    let mut after = (String::new(), String::new());
    loop {
        let rows = sqlx::query(
            "SELECT user_id, sha256 FROM content_manifests WHERE created_ms < $1
             AND (user_id > $2 OR (user_id = $2 AND sha256 > $3))
             ORDER BY user_id, sha256 LIMIT $4",
        )
        .bind(cutoff_ms)
        .bind(&after.0)
        .bind(&after.1)
        .bind(KEPT_PAGE)
        .fetch_all(&store.db().pool)
        .await?;
        for row in &rows {
            let (user_id, sha256): (String, String) = (row.get("user_id"), row.get("sha256"));
            let n = users.number(&user_id);
            old_manifests.extend(id_key(n, &sha256));
            after = (user_id, sha256);
        }
        if (rows.len() as i64) < KEPT_PAGE {
            break;
        }
    }
    // What the kept revisions use is not garbage. This reads while commits go on: what they
    // commit from here on is in the journal after `heads`.
    let mut kept = KeptPages::new();
    while let Some(page) = kept.next(store).await? {
        for k in page {
            let (content, chunks) = (users.key(&k.user_id, &k.sha256), k.chunks()?);
            strike(
                &users,
                &k.user_id,
                content,
                chunks,
                &mut candidates,
                &mut old_manifests,
            );
        }
    }
    // What was committed meanwhile, once without the lock (each batch then reads only what
    // came after, for its own users).
    for used in strike_new_commits(store, &users, &mut heads, None).await? {
        old_manifests.remove(&used);
        candidates.remove(&used);
    }
    // Manifests first.
    let postgres = store.db().dialect == syncsphere_db::Dialect::Postgres;
    while !old_manifests.is_empty() {
        let batch: Vec<Key> = (0..SWEEP_BATCH)
            .map_while(|_| old_manifests.pop_first())
            .collect();
        let batch_users: BTreeSet<u32> =
            batch.iter().map(|(user, _)| *user & !CHUNKED_KEY).collect();
        let local = lock.write().await;
        let cluster = store.gc_exclusive().await?;
        let swept = async {
            // What the batch's users committed since: kept, in this batch and every later one.
            let committed =
                strike_new_commits(store, &users, &mut heads, Some(&batch_users)).await?;
            for key in &committed {
                old_manifests.remove(key);
                candidates.remove(key);
            }
            for key in batch {
                if committed.contains(&key) {
                    continue;
                }
                sqlx::query("DELETE FROM content_manifests WHERE user_id = $1 AND sha256 = $2")
                    .bind(users.name(key.0))
                    .bind(id_text(&key))
                    .execute(&store.db().pool)
                    .await?;
                report.manifests_purged += 1;
            }
            Ok::<(), FilesError>(())
        }
        .await;
        release(cluster, swept).await?;
        drop(local);
        breathe(postgres && !(old_manifests.is_empty() && candidates.is_empty())).await;
    }
    // A chunk a surviving manifest names stays (a manifest not past its grace period yet, or
    // one whose commit failed: the next commit of its content reads through it).
    strike_manifest_chunks(store, &users, &mut candidates).await?;
    // Then blobs.
    let mut batch_number = 0;
    while !candidates.is_empty() {
        before_blob_batch(batch_number).await;
        batch_number += 1;
        let batch: Vec<(Key, u64)> = (0..SWEEP_BATCH)
            .map_while(|_| candidates.pop_first())
            .collect();
        let batch_users: BTreeSet<u32> = batch.iter().map(|((user, _), _)| *user).collect();
        let local = lock.write().await;
        let cluster = store.gc_exclusive().await?;
        let swept = async {
            let mut kept =
                strike_new_commits(store, &users, &mut heads, Some(&batch_users)).await?;
            // Manifests written since the pass began, whether or not their commit stood.
            kept.extend(
                recent_manifest_chunks(
                    store,
                    &users,
                    &batch_users,
                    began_ms - MANIFEST_CLOCK_SLACK_MS,
                )
                .await?,
            );
            // Kept in every later batch too.
            for key in &kept {
                candidates.remove(key);
            }
            // Several at once: commits wait while the batch holds the lock (S3 answers each
            // request in milliseconds; one after the other, 256 of them would add up).
            let (users, kept) = (&users, &kept);
            let deletes = batch
                .into_iter()
                .filter(|(key, _)| !kept.contains(key))
                .map(|((user, hash), size)| async move {
                    let (user_id, sha256) = (users.name(user), hex::encode(hash));
                    // Re-check the age: a resuming client may have asked about it since it was
                    // listed.
                    match blobs.stat(user_id, &sha256).await? {
                        Some((_, modified)) if modified < horizon => {}
                        _ => return Ok(None),
                    }
                    blobs.delete(user_id, &sha256).await?;
                    Ok::<_, FilesError>(Some(size))
                });
            let mut deleted = futures_util::stream::iter(deletes).buffer_unordered(SWEEP_PARALLEL);
            while let Some(outcome) = deleted.next().await {
                if let Some(size) = outcome? {
                    report.blobs_deleted += 1;
                    report.bytes_freed += size;
                }
            }
            Ok::<(), FilesError>(())
        }
        .await;
        release(cluster, swept).await?;
        drop(local);
        breathe(postgres && !candidates.is_empty()).await;
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
    let mut kept = KeptPages::new();
    while let Some(page) = kept.next(store).await? {
        for k in page {
            report.revisions_checked += 1;
            let chunks = k.chunks()?;
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
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use syncsphere_db::Db;
    use syncsphere_protocol::UserId;

    use super::*;
    use crate::store::NewContent;

    fn hash(fill: char) -> String {
        std::iter::repeat_n(fill, 64).collect()
    }

    /// What commits since the heads were read use is struck — the content, and a chunked
    /// content's chunks — for users of the pass only, and the heads move on so that the next
    /// read starts after them.
    #[tokio::test]
    async fn commits_after_the_heads_strike_what_they_use() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::new(Db::open_embedded(dir.path()).await.unwrap());
        let (u1, u2): (UserId, UserId) = ("u1".into(), "u2".into());
        let commit =
            |user: &UserId, path: &'static str, sha: String, manifest: Option<Vec<ChunkRef>>| {
                let (store, user) = (store.clone(), user.clone());
                async move {
                    store
                        .commit_content(
                            &user,
                            NewContent {
                                path,
                                parent_rev: None,
                                size: 2,
                                sha256: &sha,
                                device: None,
                                inline: None,
                                manifest: manifest.as_deref(),
                            },
                        )
                        .await
                        .unwrap();
                }
            };
        commit(&u1, "before.txt", hash('a'), None).await;
        let mut heads = journal_heads(&store).await.unwrap();
        assert_eq!(heads.get("u1"), Some(&1));
        let mut users = Users::default();
        let (n1, n2) = (users.number("u1"), users.number("u2"));
        // Nothing committed since: nothing struck.
        assert!(
            strike_new_commits(&store, &users, &mut heads, None)
                .await
                .unwrap()
                .is_empty()
        );

        let chunks = vec![
            ChunkRef {
                sha256: hash('c').into(),
                size: 1,
            },
            ChunkRef {
                sha256: hash('d').into(),
                size: 1,
            },
        ];
        commit(&u1, "chunked.bin", hash('b'), Some(chunks)).await;
        commit(&u2, "theirs.txt", hash('e'), None).await;
        let struck = strike_new_commits(&store, &users, &mut heads, None)
            .await
            .unwrap();
        let raw = |c| raw_hash(&hash(c)).unwrap();
        let expected: HashSet<Key> = [
            (n1, raw('b')),
            (n1, raw('c')),
            (n1, raw('d')),
            (n2, raw('e')),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            struck, expected,
            "the content before the heads ('a') is not struck"
        );
        assert_eq!((heads.get("u1"), heads.get("u2")), (Some(&2), Some(&1)));
        assert!(
            strike_new_commits(&store, &users, &mut heads, None)
                .await
                .unwrap()
                .is_empty()
        );

        // A batch reads its own users' commits only.
        commit(&u1, "third.txt", hash('1'), None).await;
        commit(&u2, "fourth.txt", hash('2'), None).await;
        let only_u2: BTreeSet<u32> = [n2].into_iter().collect();
        let struck = strike_new_commits(&store, &users, &mut heads, Some(&only_u2))
            .await
            .unwrap();
        assert_eq!(
            struck,
            [(n2, raw('2'))].into_iter().collect::<HashSet<Key>>()
        );
        let struck = strike_new_commits(&store, &users, &mut heads, None)
            .await
            .unwrap();
        assert_eq!(
            struck,
            [(n1, raw('1'))].into_iter().collect::<HashSet<Key>>()
        );

        // A user the pass never numbered has no candidates: their commits strike nothing.
        commit(&"u3".into(), "other.txt", hash('f'), None).await;
        assert!(
            strike_new_commits(&store, &users, &mut heads, None)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(heads.get("u3"), Some(&1));
    }
}
