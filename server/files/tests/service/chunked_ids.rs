//! Chunked content ids (decision 0051): a content over `CHUNKED_ID_ABOVE` bytes committed under
//! the fold of its chunks' hashes is checked without reading a byte — and refused when the
//! fold, a chunk's size or the kind of id does not agree — downloads whole, and its manifest
//! is kept while a revision uses it and collected after, as a SHA-256-named one is.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use syncsphere_files::gc::{GcLock, GcPolicy, check, collect};
use syncsphere_protocol::{CHUNKED_ID_ABOVE, chunked_content_id};

use crate::harness::{Harness, harness_with_grace, sha_hex};

/// `len` bytes that differ from every other `fill`'s.
fn piece(fill: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ fill)
        .collect()
}

fn listed(parts: &[&Vec<u8>], sizes: &[usize]) -> Value {
    parts
        .iter()
        .zip(sizes)
        .map(|(p, size)| json!({ "sha256": sha_hex(p), "size": size }))
        .collect()
}

async fn commit(h: &Harness, t: &str, path: &str, size: usize, id: &str, chunks: Value) -> Value {
    let r = h
        .request(
            "POST",
            t,
            "/v1/files/commit",
            json!({ "path": path, "size": size, "sha256": id, "chunks": chunks }),
        )
        .await;
    json!({ "status": r.status.as_u16(), "body": r.json })
}

async fn sweep(h: &Harness, retention: Duration) -> syncsphere_files::gc::GcReport {
    let policy = GcPolicy {
        retention,
        grace: Duration::ZERO,
    };
    collect(&h.store, &h.blobs, &h.staging, &GcLock::default(), policy)
        .await
        .unwrap()
}

async fn chunked_ids(db: Option<String>) {
    // No grace period: every manifest and chunk not in use is collected at once.
    let h = harness_with_grace(db, Duration::ZERO).await;
    let (t, _) = h.user("chunked@example.com").await;
    let (a, b, c) = (piece(1, 600_000), piece(2, 500_000), piece(3, 100_000));
    let total = a.len() + b.len() + c.len();
    assert!(total as u64 > CHUNKED_ID_ABOVE);
    for p in [&a, &b, &c] {
        let r = h.put_chunk(&t, p).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    }
    let raw = |p: &[u8]| -> [u8; 32] { Sha256::digest(p).into() };
    let id = chunked_content_id(total as u64, [&raw(&a), &raw(&b), &raw(&c)]).to_string();
    assert!(id.starts_with("cdc1-"), "{id}");
    let sizes = [a.len(), b.len(), c.len()];

    // Refused, the id right: the same chunks in another order (another content), and a chunk
    // listed at a size it does not have, the total still right (downloads would cut the
    // content in the wrong places).
    let refused = [
        (
            listed(&[&b, &a, &c], &[500_000, 600_000, 100_000]),
            "hash to",
        ),
        (
            listed(&[&a, &b, &c], &[600_001, 499_999, 100_000]),
            "is 600000 bytes, not 600001",
        ),
    ];
    for (chunks, says) in refused {
        let r = commit(&h, &t, "big.bin", total, &id, chunks).await;
        assert_eq!(r["body"]["error"], "hash_mismatch", "{r}");
        let message = r["body"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{r}");
    }
    // A content of at most CHUNKED_ID_ABOVE bytes is named by its SHA-256 only.
    let small = chunked_content_id(c.len() as u64, [&raw(&c)]).to_string();
    let r = commit(
        &h,
        &t,
        "small.bin",
        c.len(),
        &small,
        listed(&[&c], &[c.len()]),
    )
    .await;
    assert_eq!(
        (r["status"].as_u64(), &r["body"]["error"]),
        (Some(400), &json!("bad_request")),
        "{r}"
    );
    // Nor does any other text pass for an id.
    let r = commit(
        &h,
        &t,
        "big.bin",
        total,
        &id.replace("cdc1-", "cdc9-"),
        listed(&[&a, &b, &c], &sizes),
    )
    .await;
    assert_eq!(r["body"]["error"], "bad_request", "{r}");

    let r = commit(&h, &t, "big.bin", total, &id, listed(&[&a, &b, &c], &sizes)).await;
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["body"]["sha256"], id.as_str());
    let file = r["body"]["file_id"].as_str().unwrap().to_owned();
    let got = h.get(&t, &format!("/v1/files/{file}/content")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.bytes == [a.as_slice(), &b, &c].concat());
    let chunks = h.get(&t, &format!("/v1/files/{file}/chunks")).await;
    assert_eq!(chunks.json["sha256"], id.as_str(), "{}", chunks.json);
    assert_eq!(chunks.json["chunks"], listed(&[&a, &b, &c], &sizes));

    // In use: the collector keeps the manifest and its chunks.
    let report = sweep(&h, Duration::from_secs(3600)).await;
    assert_eq!(
        (report.manifests_purged, report.blobs_deleted),
        (0, 0),
        "{report:?}"
    );
    let chunks = h.get(&t, &format!("/v1/files/{file}/chunks")).await;
    assert_eq!(chunks.json["chunks"], listed(&[&a, &b, &c], &sizes));
    // Deleted and past retention: the manifest, found by its chunked id, goes with its chunks.
    let r = h
        .request(
            "DELETE",
            &t,
            &format!("/v1/files/{file}?parent_rev=1"),
            json!(null),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let report = sweep(&h, Duration::ZERO).await;
    assert_eq!(
        (report.manifests_purged, report.blobs_deleted),
        (1, 3),
        "{report:?}"
    );
    let checked = check(&h.store, &h.blobs).await.unwrap();
    assert!(checked.problems.is_empty(), "{checked:?}");
}

syncsphere_test_support::on_both_stores! {
    chunked_ids => chunked_ids_on_sqlite, chunked_ids_on_postgres;
}
