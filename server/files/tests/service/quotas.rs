//! The per-user quota through the API.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::harness::{harness_with_quota, sha_hex};

/// A per-user quota: commits that would pass it are `507 quota_exceeded` and write nothing;
/// shrinking, deleting and other users are unaffected.
async fn quotas(db: Option<String>) {
    let h = harness_with_quota(db, Some(1000)).await;
    let (t, _) = h.user("quota@example.com").await;
    let (other, _) = h.user("roomy@example.com").await;
    let usage = h.get(&t, "/v1/account/usage").await.json;
    assert_eq!(usage, json!({"used_bytes": 0, "quota_bytes": 1000}));
    let big: &'static [u8] = Box::leak(vec![b'x'; 600].into_boxed_slice());
    let small: &'static [u8] = Box::leak(vec![b'y'; 300].into_boxed_slice());
    let a = h.put(&t, "path=a.bin", big).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    let r = h.put(&t, "path=b.bin", big).await;
    assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE, "{}", r.json);
    assert_eq!(r.json["error"], "quota_exceeded");
    assert!(
        r.json["message"].as_str().unwrap().contains("600 of 1000"),
        "{}",
        r.json
    );
    // A body larger than the whole quota is refused before it is read.
    let huge: &'static [u8] = Box::leak(vec![b'z'; 1001].into_boxed_slice());
    assert_eq!(
        h.put(&t, "path=huge.bin", huge).await.status,
        StatusCode::INSUFFICIENT_STORAGE
    );
    // Chunked commits count too.
    let r = h
        .request(
            "POST",
            &t,
            "/v1/files/commit",
            json!({"path": "c.bin", "size": 600, "sha256": sha_hex(big),
                   "chunks": [{"sha256": sha_hex(big), "size": 600}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE, "{}", r.json);
    let files = h.get(&t, "/v1/files").await.json;
    assert_eq!(
        files["files"].as_array().unwrap().len(),
        1,
        "nothing written: {files}"
    );
    assert_eq!(files["cursor"], 1);
    // Fits: 600 + 300.
    assert_eq!(h.put(&t, "path=b.bin", small).await.status, StatusCode::OK);
    // The other user has a quota of their own.
    assert_eq!(
        h.put(&other, "path=a.bin", big).await.status,
        StatusCode::OK
    );
    // Shrinking is always allowed; deleting frees space; restoring counts again.
    let id = a.json["file_id"].as_str().unwrap().to_owned();
    let shrunk = h.put(&t, "path=a.bin&parent_rev=1", b"tiny").await;
    assert_eq!(shrunk.status, StatusCode::OK, "{}", shrunk.json);
    assert_eq!(h.get(&t, "/v1/account/usage").await.json["used_bytes"], 304);
    let r = h.restore(&t, &id, 1, 2).await;
    assert_eq!(r.status, StatusCode::OK, "600 + 300 fits again: {}", r.json);
    assert_eq!(
        h.put(&t, "path=d.bin", small).await.status,
        StatusCode::INSUFFICIENT_STORAGE
    );
    let r = h
        .request(
            "DELETE",
            &t,
            &format!("/v1/files/{id}?parent_rev=3"),
            Value::Null,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(h.put(&t, "path=d.bin", small).await.status, StatusCode::OK);
    assert_eq!(h.get(&t, "/v1/account/usage").await.json["used_bytes"], 600);
}

syncsphere_test_support::on_both_stores! {
    quotas => quotas_on_sqlite, quotas_on_postgres;
}
