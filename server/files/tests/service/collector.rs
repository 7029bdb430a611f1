//! The garbage collector against commits made in another process — the AWS topology, where
//! the maintenance task collects while the files tasks commit, and the in-process `GcLock`s of
//! the two do not see each other (decision 0049). Here the collector runs beside the service
//! on the same database and blob store with a lock of its own, as another process would.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use serde_json::json;
use syncsphere_auth::BoxFuture;
use syncsphere_files::blobs::{BlobPages, ByteStream, StagedBlob};
use syncsphere_files::gc::{GcLock, GcPolicy, GcReport, check, collect, collect_pausing};
use syncsphere_files::{BlobStore, FilesError};
use tokio::sync::Notify;

use crate::harness::{Harness, harness_with_grace, sha_hex};

/// The collector's view of the blob store: its last look at one blob before deleting it (the
/// age re-check, made under the collector's lock) waits until the test lets it go.
struct PauseBeforeDeleting {
    inner: Arc<dyn BlobStore>,
    sha256: String,
    fired: AtomicBool,
    reached: Notify,
    go: Notify,
}

impl BlobStore for PauseBeforeDeleting {
    fn put<'a>(
        &'a self,
        user_id: &'a str,
        staged: &'a StagedBlob,
    ) -> BoxFuture<'a, Result<(), FilesError>> {
        self.inner.put(user_id, staged)
    }
    fn touch<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, SystemTime)>, FilesError>> {
        self.inner.touch(user_id, sha256)
    }
    fn stat<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, SystemTime)>, FilesError>> {
        Box::pin(async move {
            if sha256 == self.sha256 && !self.fired.swap(true, Ordering::SeqCst) {
                self.reached.notify_one();
                self.go.notified().await;
            }
            self.inner.stat(user_id, sha256).await
        })
    }
    fn read<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
        start: u64,
        len: u64,
    ) -> BoxFuture<'a, Result<ByteStream, FilesError>> {
        self.inner.read(user_id, sha256, start, len)
    }
    fn list(&self) -> BlobPages<'_> {
        self.inner.list()
    }
    fn delete<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<(), FilesError>> {
        self.inner.delete(user_id, sha256)
    }
    fn touch_extends_grace(&self) -> bool {
        self.inner.touch_extends_grace()
    }
}

/// A collection pass as another process runs it — its own lock, a zero grace period, the given
/// retention — that pauses before deleting `sha256` until told to go.
fn sweep_paused_before_deleting(
    h: &Harness,
    sha256: &str,
    retention: Duration,
) -> (
    Arc<PauseBeforeDeleting>,
    tokio::task::JoinHandle<Result<GcReport, FilesError>>,
) {
    let paused = Arc::new(PauseBeforeDeleting {
        inner: h.blobs.clone(),
        sha256: sha256.to_owned(),
        fired: AtomicBool::new(false),
        reached: Notify::new(),
        go: Notify::new(),
    });
    let (store, staging) = (h.store.clone(), h.staging.clone());
    let blobs: Arc<dyn BlobStore> = paused.clone();
    let sweep = tokio::spawn(async move {
        let policy = GcPolicy {
            retention,
            grace: Duration::ZERO,
        };
        collect(&store, &blobs, &staging, &GcLock::default(), policy).await
    });
    (paused, sweep)
}

/// An orphan chunk (uploaded, never committed) is being deleted by a collector in another
/// process when a commit that uses it arrives: the commit waits for the collector's deletes
/// (PostgreSQL's advisory lock), then finds the chunk gone and says so (`missing_chunks`), and
/// the client's second try, with the chunk sent again, commits a file that is whole. Without
/// the cross-process lock the commit went through at once and the collector then deleted the
/// chunk under it. PostgreSQL + S3 only: SQLite is one process by construction.
async fn a_commit_from_another_process_waits_for_the_collector(db: Option<String>) {
    // Every blob counts as old enough to be collected: commits re-check all they use.
    let h = harness_with_grace(db, Duration::ZERO).await;
    let (t, _) = h.user("racer@example.com").await;
    let chunk = b"a chunk uploaded once and never committed".repeat(100);
    let sha = sha_hex(&chunk);
    assert_eq!(h.put_chunk(&t, &chunk).await.status, StatusCode::CREATED);
    // Asking about it waits until it is durable.
    let r = h
        .request("POST", &t, "/v1/chunks/missing", json!({"chunks": [sha]}))
        .await;
    assert_eq!(r.json["missing"], json!([]), "{}", r.json);
    tokio::time::sleep(Duration::from_millis(5)).await;

    // The other process: its own lock, a zero grace period (the chunk is old enough).
    let (paused, sweep) = sweep_paused_before_deleting(&h, &sha, Duration::from_secs(30 * 86400));
    paused.reached.notified().await;

    // The collector is about to delete the chunk; a commit that uses it comes in.
    let commit = json!({"path": "raced.bin", "size": chunk.len(), "sha256": sha,
                        "chunks": [{"sha256": sha, "size": chunk.len()}]});
    let first = h.request("POST", &t, "/v1/files/commit", commit.clone());
    tokio::pin!(first);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut first)
            .await
            .is_err(),
        "the commit went through while the collector was deleting its chunk"
    );
    paused.go.notify_one();
    let report = sweep.await.unwrap().unwrap();
    assert_eq!(report.blobs_deleted, 1, "{report:?}");
    let first = first.await;
    assert_eq!(first.status, StatusCode::BAD_REQUEST, "{}", first.json);
    assert_eq!(first.json["error"], "missing_chunks", "{}", first.json);
    assert_eq!(first.json["missing"], json!([sha]), "{}", first.json);
    assert_eq!(h.get(&t, "/v1/files").await.json["files"], json!([]));

    // The client sends the chunk again and commits: the file is whole.
    assert_eq!(h.put_chunk(&t, &chunk).await.status, StatusCode::CREATED);
    let second = h.request("POST", &t, "/v1/files/commit", commit).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.json);
    let id = second.json["file_id"].as_str().unwrap();
    let content = h.get(&t, &format!("/v1/files/{id}/content")).await;
    assert!(content.bytes == chunk);
    let checked = check(&h.store, &h.blobs).await.unwrap();
    assert!(checked.problems.is_empty(), "{checked:?}");
    assert_eq!(checked.revisions_checked, 1);
}

/// The same race for a whole content sent in one request: it was an old orphan (a purged
/// file's), so storing it was a no-op on S3 and the collector in the other process then deleted
/// it before the commit — which, holding the collector's lock, stores it again from the
/// request's staged copy and commits a whole file.
async fn an_upload_whose_old_copy_is_collected_is_stored_again(db: Option<String>) {
    // Every blob counts as old enough to be collected: commits re-check all they use.
    let h = harness_with_grace(db, Duration::ZERO).await;
    let (t, _) = h.user("reuploader@example.com").await;
    // Over the inline limit: a blob in the store, not a row of the database.
    let data: &'static [u8] =
        Box::leak(b"a whole content, 40 KiB ".repeat(1700).into_boxed_slice());
    let sha = sha_hex(data);
    let first = h.put(&t, "path=first.bin", data).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.json);
    let id = first.json["file_id"].as_str().unwrap();
    let r = h
        .request(
            "DELETE",
            &t,
            &format!("/v1/files/{id}?parent_rev=1"),
            json!(null),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    tokio::time::sleep(Duration::from_millis(5)).await;

    // Retention 0 purges the trashed file: its content is an orphan.
    let (paused, sweep) = sweep_paused_before_deleting(&h, &sha, Duration::ZERO);
    paused.reached.notified().await;
    let second = h.put(&t, "path=second.bin", data);
    tokio::pin!(second);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut second)
            .await
            .is_err(),
        "the upload committed while the collector was deleting its content"
    );
    paused.go.notify_one();
    let report = sweep.await.unwrap().unwrap();
    assert_eq!(
        (report.files_purged, report.blobs_deleted),
        (1, 1),
        "{report:?}"
    );
    let second = second.await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.json);
    let id = second.json["file_id"].as_str().unwrap();
    let content = h.get(&t, &format!("/v1/files/{id}/content")).await;
    assert_eq!(
        (content.status, content.bytes.len()),
        (StatusCode::OK, data.len())
    );
    assert!(content.bytes == data);
    let checked = check(&h.store, &h.blobs).await.unwrap();
    assert!(checked.problems.is_empty(), "{checked:?}");
}

/// A commit that reuses an orphan after the collector read the kept revisions, before the
/// batch of deletes numbered `pause_before` (batches go in key order: 256 decoys sort before
/// the orphan, so the orphan is in batch 1). Before batch 1: that batch finds the commit in
/// the journal. Before batch 0: batch 0 reads it (the user's journal head moves on), and batch
/// 1 must still keep the chunk.
async fn a_commit_between_batches_is_read_from_the_journal(
    db: Option<String>,
    pause_before: usize,
) {
    let h = harness_with_grace(db, Duration::ZERO).await;
    let (t, _) = h.user(&format!("between-{pause_before}@example.com")).await;
    let decoys: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("decoy {i}").into_bytes())
        .collect();
    let mut hashes: Vec<String> = decoys.iter().map(|d| sha_hex(d)).collect();
    hashes.sort();
    let orphan = (0..)
        .map(|i| format!("the orphan, take {i}").into_bytes())
        .find(|o| sha_hex(o) > hashes[255])
        .unwrap();
    let sha = sha_hex(&orphan);
    for chunk in decoys.iter().chain([&orphan]) {
        assert_eq!(h.put_chunk(&t, chunk).await.status, StatusCode::CREATED);
    }
    let r = h
        .request("POST", &t, "/v1/chunks/missing", json!({"chunks": [sha]}))
        .await;
    assert_eq!(r.json["missing"], json!([]), "{}", r.json);
    tokio::time::sleep(Duration::from_millis(5)).await;

    // The other process's pass, paused before a batch of deletes.
    let reached = Arc::new(Notify::new());
    let go = Arc::new(Notify::new());
    let sweep = tokio::spawn({
        let (store, blobs, staging) = (h.store.clone(), h.blobs.clone(), h.staging.clone());
        let (reached, go) = (reached.clone(), go.clone());
        async move {
            let policy = GcPolicy {
                retention: Duration::from_secs(30 * 86400),
                grace: Duration::ZERO,
            };
            let pause = move |batch: usize| {
                let (reached, go) = (reached.clone(), go.clone());
                Box::pin(async move {
                    if batch == pause_before {
                        reached.notify_one();
                        go.notified().await;
                    }
                }) as futures_util::future::BoxFuture<'static, ()>
            };
            collect_pausing(&store, &blobs, &staging, &GcLock::default(), policy, &pause).await
        }
    });
    reached.notified().await;
    let commit = json!({"path": "between.bin", "size": orphan.len(), "sha256": sha,
                        "chunks": [{"sha256": sha, "size": orphan.len()}]});
    let committed = h.request("POST", &t, "/v1/files/commit", commit).await;
    assert_eq!(committed.status, StatusCode::OK, "{}", committed.json);
    go.notify_one();
    let report = sweep.await.unwrap().unwrap();
    assert_eq!(
        report.blobs_deleted, 300,
        "the decoys, not the orphan: {report:?}"
    );
    let id = committed.json["file_id"].as_str().unwrap();
    let content = h.get(&t, &format!("/v1/files/{id}/content")).await;
    assert!(content.bytes == orphan);
    let checked = check(&h.store, &h.blobs).await.unwrap();
    assert!(checked.problems.is_empty(), "{checked:?}");
}

/// Many whole contents in one batch upload, each re-checked under the collector's lock inside
/// its commit's transaction, more of them at once than the database pool has connections: the
/// re-check must not need a second connection (it asks the blob store, not the inline table).
async fn a_large_batch_commits_without_exhausting_the_pool(db: Option<String>) {
    let h = harness_with_grace(db, Duration::ZERO).await;
    let (t, _) = h.user("batcher@example.com").await;
    let contents: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| {
            (
                format!("batch/{i}.bin"),
                format!("file {i} ").repeat(3000).into_bytes(),
            )
        })
        .collect();
    let mut body = Vec::new();
    for (path, data) in &contents {
        let header = json!({"path": path, "size": data.len(), "sha256": sha_hex(data)});
        body.extend_from_slice(header.to_string().as_bytes());
        body.push(b'\n');
        body.extend_from_slice(data);
    }
    let sent = h.send(
        axum::http::Request::post("/v1/files/upload")
            .header("authorization", format!("Bearer {t}"))
            .header("x-syncsphere-device", "dev-1")
            .body(axum::body::Body::from(body))
            .unwrap(),
    );
    let r = tokio::time::timeout(Duration::from_secs(20), sent)
        .await
        .expect("the batch's commits waited on each other for connections");
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let results = r.json["results"].as_array().unwrap();
    assert_eq!(results.len(), 40);
    assert!(results.iter().all(|r| r["error"].is_null()), "{}", r.json);
}

#[tokio::test]
async fn a_commit_between_batches_is_read_from_the_journal_on_postgres() {
    // PostgreSQL with blobs in S3 (on disk a touch or a put makes a blob new again).
    if let Some(url) = syncsphere_test_support::postgres_database().await
        && syncsphere_test_support::s3_settings().is_some()
    {
        a_commit_between_batches_is_read_from_the_journal(Some(url), 1).await;
    }
}

#[tokio::test]
async fn a_commit_read_by_an_earlier_batch_is_kept_by_a_later_one_on_postgres() {
    if let Some(url) = syncsphere_test_support::postgres_database().await
        && syncsphere_test_support::s3_settings().is_some()
    {
        a_commit_between_batches_is_read_from_the_journal(Some(url), 0).await;
    }
}

/// A chunk held only as a small inline content (a file uploaded whole) is part of a chunked
/// commit: the check under the collector's lock finds it in the inline table, through the
/// commit's own transaction — it is neither "missing" (which no re-upload could fix: the
/// upload finds it held and stores nothing) nor asked for on a second connection.
async fn a_chunk_held_inline_commits(db: Option<String>) {
    let h = harness_with_grace(db, Duration::ZERO).await;
    let (t, _) = h.user("inline-chunk@example.com").await;
    let small: &'static [u8] = b"a small file, kept inline, later a chunk of a larger one";
    assert_eq!(
        h.put(&t, "path=small.txt", small).await.status,
        StatusCode::OK
    );
    let other = b"the other chunk".repeat(100);
    assert_eq!(h.put_chunk(&t, &other).await.status, StatusCode::CREATED);
    // Asking about the inline one: held, nothing to upload.
    let r = h
        .request(
            "POST",
            &t,
            "/v1/chunks/missing",
            json!({"chunks": [sha_hex(small)]}),
        )
        .await;
    assert_eq!(r.json["missing"], json!([]), "{}", r.json);
    let whole = [small, other.as_slice()].concat();
    let commit = json!({"path": "both.bin", "size": whole.len(), "sha256": sha_hex(&whole),
                        "chunks": [{"sha256": sha_hex(small), "size": small.len()},
                                   {"sha256": sha_hex(&other), "size": other.len()}]});
    let r = h.request("POST", &t, "/v1/files/commit", commit).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let id = r.json["file_id"].as_str().unwrap();
    assert!(h.get(&t, &format!("/v1/files/{id}/content")).await.bytes == whole);
}

#[tokio::test]
async fn a_chunk_held_inline_commits_on_postgres() {
    if let Some(url) = syncsphere_test_support::postgres_database().await
        && syncsphere_test_support::s3_settings().is_some()
    {
        a_chunk_held_inline_commits(Some(url)).await;
    }
}

#[tokio::test]
async fn a_large_batch_commits_without_exhausting_the_pool_on_postgres() {
    // PostgreSQL with blobs in S3 (on disk a touch or a put makes a blob new again).
    if let Some(url) = syncsphere_test_support::postgres_database().await
        && syncsphere_test_support::s3_settings().is_some()
    {
        a_large_batch_commits_without_exhausting_the_pool(Some(url)).await;
    }
}

#[tokio::test]
async fn an_upload_whose_old_copy_is_collected_is_stored_again_on_postgres() {
    // PostgreSQL with blobs in S3 (on disk a touch or a put makes a blob new again).
    if let Some(url) = syncsphere_test_support::postgres_database().await
        && syncsphere_test_support::s3_settings().is_some()
    {
        an_upload_whose_old_copy_is_collected_is_stored_again(Some(url)).await;
    }
}

#[tokio::test]
async fn a_commit_from_another_process_waits_for_the_collector_on_postgres() {
    // PostgreSQL with blobs in S3 (on disk a touch or a put makes a blob new again).
    if let Some(url) = syncsphere_test_support::postgres_database().await
        && syncsphere_test_support::s3_settings().is_some()
    {
        a_commit_from_another_process_waits_for_the_collector(Some(url)).await;
    }
}
