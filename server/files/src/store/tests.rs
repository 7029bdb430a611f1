//! The write path on SQLite: group commits share transactions, and each operation in one
//! stands or falls alone.

use std::sync::LazyLock;

use syncsphere_protocol::{DeviceId, Seq};

use super::*;

static LAPTOP: LazyLock<DeviceId> = LazyLock::new(|| "laptop".into());

fn content<'a>(path: &'a str, parent_rev: Option<Rev>) -> NewContent<'a> {
    NewContent {
        path,
        parent_rev,
        size: 1,
        sha256: "00",
        device: Some(&*LAPTOP),
        inline: None,
        manifest: None,
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
                store.commit_content(&"u1".into(), content(&p, None)).await
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
    let mut seqs: Vec<i64> = committed.iter().map(|(_, c)| c.seq.get()).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=60).collect::<Vec<_>>(),
        "gap-free: conflicts used no seq"
    );
    assert_eq!(store.head(&"u1".into()).await.unwrap(), 60);
    let listed = store.list(&"u1".into(), None, 5000).await.unwrap();
    assert_eq!(listed.files.len(), 60);
    assert_eq!(listed.next, None);
    // In pages: each file once, in path order, `next` naming where the next page starts.
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list(&"u1".into(), after.as_deref(), 25)
            .await
            .unwrap();
        assert!(page.files.len() <= 25);
        paged.extend(page.files.iter().map(|f| f.path.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let all: Vec<String> = listed.files.iter().map(|f| f.path.clone()).collect();
    assert_eq!(paged, all, "three pages, the same files");
    let journal = store.changes(&"u1".into(), Seq(0), 1000).await.unwrap();
    assert_eq!(journal.changes.len(), 60);
    assert!(
        store.group.batches() < 120,
        "{} transactions for 120 queued commits",
        store.group.batches()
    );

    // A batch after a failure still works, and a stale parent is refused inside it.
    let (first, _) = &committed[0];
    let (updated, _) = store
        .commit_content(&"u1".into(), content(&first.path, Some(first.rev)))
        .await
        .unwrap();
    assert_eq!(updated.rev, first.rev + 1);
    let stale = store
        .commit_content(&"u1".into(), content(&first.path, Some(first.rev)))
        .await;
    assert!(
        matches!(stale, Err(FilesError::Conflict { .. })),
        "{stale:?}"
    );
    assert_eq!(store.head(&"u1".into()).await.unwrap(), 61);
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
        .commit_content(&"u1".into(), content("after.txt", None))
        .await
        .unwrap();
    assert_eq!((meta.rev, change.seq), (Rev(1), Seq(1)));
}

/// An operation that fails in the database after writing dooms its whole batch: nothing
/// of the batch is committed (no partial operation survives), every caller hears of it,
/// and the next batch works. A refused operation in a batch leaves no trace.
#[tokio::test]
async fn a_database_failure_rolls_back_its_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = MetadataStore::new(Db::open_embedded(dir.path()).await.unwrap());
    store
        .commit_content(&"u1".into(), content("taken.txt", None))
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
        tokio::spawn(async move {
            store
                .commit_content(&"u1".into(), content(path, None))
                .await
        })
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
        store.head(&"u1".into()).await.unwrap(),
        1,
        "the +100 was rolled back"
    );
    let names: Vec<String> = store
        .list(&"u1".into(), None, 5000)
        .await
        .unwrap()
        .files
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert_eq!(names, ["taken.txt"]);
    // The writer goes on.
    let (_, change) = store
        .commit_content(&"u1".into(), content("later.txt", None))
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
        .commit_content(&"u1".into(), content("first.txt", None))
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
        tokio::spawn(async move {
            store
                .commit_content(&"u1".into(), content(path, None))
                .await
        })
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
        store.head(&"u9".into()).await.unwrap(),
        0,
        "the write was rolled back"
    );
    assert_eq!(store.head(&"u1".into()).await.unwrap(), 1);
    let (_, change) = store
        .commit_content(&"u1".into(), content("later.txt", None))
        .await
        .unwrap();
    assert_eq!(change.seq, 2);
}

/// Every part of the name-clash query is an index lookup: a scan of the user's files per
/// commit made a first upload of many files quadratic.
#[tokio::test]
async fn the_clash_query_looks_up_the_index_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_embedded(dir.path()).await.unwrap();
    for (with_self, ancestors) in [(true, 0), (true, 3), (false, 2)] {
        let sql = super::files::path_state_sql(with_self, ancestors);
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let mut query = sqlx::query(&explain);
        for _ in 0..(4 + usize::from(with_self) + ancestors) {
            query = query.bind("x");
        }
        let plan: Vec<String> = query
            .fetch_all(&db.pool)
            .await
            .unwrap()
            .iter()
            .map(|row| sqlx::Row::get::<String, _>(row, "detail"))
            .collect();
        let lookups = plan.iter().filter(|d| d.contains("SEARCH files")).count();
        assert_eq!(lookups, 1 + usize::from(with_self) + ancestors, "{plan:#?}");
        for d in plan.iter().filter(|d| d.contains("files")) {
            assert!(
                d.contains("USING INDEX files_live_path (user_id=? AND path_key"),
                "{d}: {plan:#?}"
            );
        }
    }
}
