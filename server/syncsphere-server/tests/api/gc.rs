//! Retention and garbage collection.

use super::*;

/// Retention purges old revisions and old trash; the collector deletes what nothing refers to
/// (after the grace period, which asking about a chunk restarts) and the check stays clean.
pub(super) async fn retention_and_garbage_collection(db: Option<String>) {
    use std::time::{Duration, SystemTime};
    use syncsphere_files::gc::{GcPolicy, check, collect};
    let h = harness(db).await;
    let m = h.maintenance.clone();
    let (t, _) = h.user("gc@example.com").await;
    let keep_all = GcPolicy {
        retention: Duration::from_secs(30 * 24 * 3600),
        grace: Duration::from_secs(3600),
    };
    // History: f has three revisions, g is in the trash, h is a chunked file.
    let f = h.put(&t, "path=f.txt", b"v1").await.json;
    let id = f["file_id"].as_str().unwrap().to_owned();
    h.put(&t, "path=f.txt&parent_rev=1", b"v2").await;
    h.put(&t, "path=f.txt&parent_rev=2", b"v3").await;
    let g = h.put(&t, "path=g.txt", b"trash me").await.json;
    let r = h
        .request(
            "DELETE",
            &t,
            &format!("/v1/files/{}?parent_rev=1", g["file_id"].as_str().unwrap()),
            Value::Null,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let pieces: Vec<Vec<u8>> = (0..3).map(|i| noise(64 * 1024, 101 + 2 * i)).collect();
    let whole: Vec<u8> = pieces.concat();
    for p in &pieces {
        let r = h.put_chunk(&t, &sha_hex(p), p.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let refs: Vec<Value> = pieces
        .iter()
        .map(|p| json!({"sha256": sha_hex(p), "size": p.len()}))
        .collect();
    let hfile = h
        .request("POST", &t, "/v1/files/commit", json!({"path": "h.bin", "size": whole.len(), "sha256": sha_hex(&whole), "chunks": refs}))
        .await;
    assert_eq!(hfile.status, StatusCode::OK, "{}", hfile.json);
    // Two orphan chunks of interrupted uploads.
    let orphans: Vec<Vec<u8>> = vec![noise(1000, 7), noise(1000, 8)];
    for o in &orphans {
        let r = h.put_chunk(&t, &sha_hex(o), o.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    // A chunk is acknowledged before it is durable; asking about it waits until it is stored.
    let stored = h
        .request(
            "POST",
            &t,
            "/v1/chunks/missing",
            json!({"chunks": orphans.iter().map(|o| sha_hex(o)).collect::<Vec<_>>()}),
        )
        .await;
    assert_eq!(stored.json["missing"], json!([]), "{}", stored.json);
    let user = claims(&t)["sub"].as_str().unwrap().to_owned();
    let on_disk = m.blobs.touch_extends_grace();
    let exists = |sha: String| {
        let (blobs, user) = (m.blobs.clone(), user.clone());
        async move { blobs.stat(&user, &sha).await.unwrap().is_some() }
    };
    // Disk blobs can be aged by their modification time; S3 objects cannot, so there the
    // "aged" passes use a zero grace period instead.
    let age = |sha: &str| {
        if on_disk {
            let path = h
                .dir
                .path()
                .join("blobs")
                .join(&user)
                .join(&sha[..2])
                .join(sha);
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(SystemTime::now() - Duration::from_secs(7200))
                .unwrap();
        }
    };
    let aged = if on_disk {
        keep_all
    } else {
        GcPolicy {
            grace: Duration::ZERO,
            ..keep_all
        }
    };

    // Within the grace period nothing goes, and the store checks clean.
    let report = collect(&m.store, &m.blobs, &m.staging, &m.lock, keep_all)
        .await
        .unwrap();
    assert_eq!(report.blobs_deleted, 0, "{report:?}");
    assert_eq!(report.revisions_purged, 0);
    let checked = check(&m.store, &m.blobs).await.unwrap();
    assert!(checked.problems.is_empty(), "{checked:?}");
    assert_eq!(
        checked.revisions_checked, 5,
        "f×3, g before its deletion, h"
    );

    // Both orphans age past the grace period; a client then asks about one of them (resuming
    // its upload): on disk that restarts its grace period and it survives (S3 cannot, and the
    // client re-sends it at commit). Kept content never goes.
    for o in &orphans {
        age(&sha_hex(o));
    }
    for p in &pieces {
        age(&sha_hex(p));
    }
    let asked = h
        .request(
            "POST",
            &t,
            "/v1/chunks/missing",
            json!({"chunks": [sha_hex(&orphans[0])]}),
        )
        .await;
    assert_eq!(asked.json["missing"], json!([]));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let report = collect(&m.store, &m.blobs, &m.staging, &m.lock, aged)
        .await
        .unwrap();
    assert_eq!(
        report.blobs_deleted,
        if on_disk { 1 } else { 2 },
        "{report:?}"
    );
    assert_eq!(exists(sha_hex(&orphans[0])).await, on_disk);
    assert!(!exists(sha_hex(&orphans[1])).await);
    for p in &pieces {
        assert!(
            exists(sha_hex(p)).await,
            "a chunk of a kept file was collected"
        );
    }
    assert!(content_of(&h, &t, &hfile.json).await == whole);

    // Retention 0: old revisions and the trash go, the current revisions stay.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let purge = GcPolicy {
        retention: Duration::ZERO,
        grace: Duration::ZERO,
    };
    let report = collect(&m.store, &m.blobs, &m.staging, &m.lock, purge)
        .await
        .unwrap();
    assert_eq!(
        report.revisions_purged, 4,
        "f v1+v2, g's two revisions: {report:?}"
    );
    assert_eq!(report.files_purged, 1);
    assert!(
        report.blobs_deleted >= 3,
        "v1, v2 and g's content: {report:?}"
    );
    for gone in [b"v1".as_slice(), b"v2", b"trash me"] {
        assert!(!exists(sha_hex(gone)).await);
    }
    let revs = h.get(&t, &format!("/v1/files/{id}/revisions")).await.json;
    assert_eq!(revs["revisions"].as_array().unwrap().len(), 1, "{revs}");
    assert_eq!(h.get(&t, "/v1/trash").await.json["files"], json!([]));
    let cur = h.get(&t, &format!("/v1/files/{id}/content")).await;
    assert_eq!(cur.bytes, b"v3");
    let checked = check(&m.store, &m.blobs).await.unwrap();
    assert!(checked.problems.is_empty(), "{checked:?}");
    assert_eq!(checked.revisions_checked, 2);

    // Deleting the chunked file and purging it removes its manifest and chunks.
    let r = h
        .request(
            "DELETE",
            &t,
            &format!(
                "/v1/files/{}?parent_rev=1",
                hfile.json["file_id"].as_str().unwrap()
            ),
            Value::Null,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let report = collect(&m.store, &m.blobs, &m.staging, &m.lock, purge)
        .await
        .unwrap();
    assert_eq!(report.manifests_purged, 1, "{report:?}");
    for p in &pieces {
        assert!(!exists(sha_hex(p)).await);
    }
    // A damaged store is reported: remove the current content of f.
    m.blobs.delete(&user, &sha_hex(b"v3")).await.unwrap();
    let checked = check(&m.store, &m.blobs).await.unwrap();
    assert_eq!(checked.problems.len(), 1, "{checked:?}");
    assert!(checked.problems[0].3.contains("missing"));
}

/// The current content of `file` (its metadata as the server answered it).
async fn content_of(h: &Harness, token: &str, file: &Value) -> Vec<u8> {
    let id = file["file_id"].as_str().unwrap();
    h.get(token, &format!("/v1/files/{id}/content"))
        .await
        .bytes
        .to_vec()
}

/// A pass over stores larger than the collector's pages (1,000 blobs listed, 1,000 kept
/// revisions read at a time; the inline table, the disk store and S3 each page on their own):
/// every unreferenced blob goes, every referenced one stays, whichever page it was on.
pub(super) async fn collection_pages_through_large_stores(db: Option<String>) {
    use std::time::Duration;
    use syncsphere_files::gc::{GcPolicy, check, collect};
    let h = harness(db).await;
    let m = h.maintenance.clone();
    let (a, _) = h.user("gc-pages-a@example.com").await;
    let (b, _) = h.user("gc-pages-b@example.com").await;
    let post = |token: &str, body: Vec<u8>| {
        let (h, token) = (&h, token.to_owned());
        async move {
            let r = h
                .send(
                    Request::post("/v1/files/upload")
                        .header("authorization", format!("Bearer {token}"))
                        .header("x-syncsphere-device", "dev-1")
                        .body(Body::from(body))
                        .unwrap(),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.json);
            r.json["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    assert!(r["error"].is_null(), "{r}");
                    r["file"].clone()
                })
                .collect::<Vec<Value>>()
        }
    };
    // A: 1,200 small (inline) files, 600 of them then changed: their first contents become
    // garbage once retention drops the old revisions.
    let text = |i: usize, v: u32| format!("file {i} of A, version {v}").into_bytes();
    let mut ids = Vec::new();
    for start in (0..1200).step_by(200) {
        let contents: Vec<(String, Vec<u8>)> = (start..start + 200)
            .map(|i| (format!("a/{i}.txt"), text(i, 1)))
            .collect();
        let sent: Vec<_> = contents
            .iter()
            .map(|(p, d)| (p.as_str(), None, d.as_slice(), None))
            .collect();
        ids.extend(
            post(&a, batches::upload_body(&sent))
                .await
                .iter()
                .map(|f| f["file_id"].as_str().unwrap().to_owned()),
        );
    }
    for start in (0..600).step_by(200) {
        let contents: Vec<(String, Vec<u8>)> = (start..start + 200)
            .map(|i| (format!("a/{i}.txt"), text(i, 2)))
            .collect();
        let sent: Vec<_> = contents
            .iter()
            .map(|(p, d)| (p.as_str(), Some(1), d.as_slice(), None))
            .collect();
        post(&a, batches::upload_body(&sent)).await;
    }
    // B: a chunked file (3 chunks in the blob store) and 1,010 orphan chunks beside them.
    let pieces: Vec<Vec<u8>> = (0..3).map(|i| noise(64 * 1024, 301 + 2 * i)).collect();
    for p in &pieces {
        assert_eq!(
            h.put_chunk(&b, &sha_hex(p), p.clone()).await.status,
            StatusCode::CREATED
        );
    }
    let whole = pieces.concat();
    let refs: Vec<Value> = pieces
        .iter()
        .map(|p| json!({"sha256": sha_hex(p), "size": p.len()}))
        .collect();
    let chunked = h
        .request("POST", &b, "/v1/files/commit", json!({"path": "big.bin", "size": whole.len(), "sha256": sha_hex(&whole), "chunks": refs}))
        .await;
    assert_eq!(chunked.status, StatusCode::OK, "{}", chunked.json);
    let orphans: Vec<Vec<u8>> = (0..1010)
        .map(|i| format!("orphan chunk {i}").into_bytes())
        .collect();
    for o in &orphans {
        assert_eq!(
            h.put_chunk(&b, &sha_hex(o), o.clone()).await.status,
            StatusCode::CREATED
        );
    }
    let stored = h
        .request(
            "POST",
            &b,
            "/v1/chunks/missing",
            json!({"chunks": [sha_hex(orphans.last().unwrap())]}),
        )
        .await;
    assert_eq!(stored.json["missing"], json!([]), "{}", stored.json);

    // Everything is past a zero grace period: only references keep a blob.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let purge = GcPolicy {
        retention: Duration::ZERO,
        grace: Duration::ZERO,
    };
    let report = collect(&m.store, &m.blobs, &m.staging, &m.lock, purge)
        .await
        .unwrap();
    assert_eq!(report.revisions_purged, 600, "{report:?}");
    assert_eq!(
        report.blobs_deleted,
        600 + 1010,
        "A's 600 first versions and B's orphans: {report:?}"
    );
    let checked = check(&m.store, &m.blobs).await.unwrap();
    assert!(checked.problems.is_empty(), "{checked:?}");
    assert_eq!(checked.revisions_checked, 1200 + 1);
    let user_b = claims(&b)["sub"].as_str().unwrap().to_owned();
    for o in orphans.iter().step_by(101) {
        assert!(m.blobs.stat(&user_b, &sha_hex(o)).await.unwrap().is_none());
    }
    for (i, id) in ids.iter().enumerate().step_by(97) {
        let got = h.get(&a, &format!("/v1/files/{id}/content")).await;
        assert_eq!(got.bytes, text(i, if i < 600 { 2 } else { 1 }), "a/{i}.txt");
    }
    assert!(content_of(&h, &b, &chunked.json).await == whole);
    // A second pass finds nothing more to do.
    let again = collect(&m.store, &m.blobs, &m.staging, &m.lock, purge)
        .await
        .unwrap();
    assert_eq!(again.blobs_deleted, 0, "{again:?}");
}
