//! Uploaded, uncommitted chunks through the API: bounded per user (`429 staged_limit` with
//! `Retry-After`), freed by the commit that uses them, and counted against the quota.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;
use syncsphere_files::store::staged::StagedPolicy;

use crate::harness::{harness_with, sha_hex};

fn chunk(fill: u8) -> Vec<u8> {
    vec![fill; 1000]
}

async fn staged_limit(db: Option<String>) {
    let policy = StagedPolicy {
        per_user: Some(3000),
        window: Duration::from_secs(3600),
    };
    let h = harness_with(db, None, policy).await;
    let (t, _) = h.user("stager@example.com").await;
    let (other, _) = h.user("other@example.com").await;
    for fill in [b'a', b'b', b'c'] {
        let r = h.put_chunk(&t, &chunk(fill)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    }
    // A fourth chunk would hold 4000 bytes that belong to no file.
    let r = h.put_chunk(&t, &chunk(b'd')).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.json);
    assert_eq!(r.json["error"], "staged_limit");
    let message = r.json["message"].as_str().unwrap();
    assert!(message.contains("3000 bytes of chunks") && message.contains("at most 3000"));
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((3500..=3600).contains(&retry), "Retry-After {retry}");
    // Another user is not affected; a chunk already held is not staged twice.
    assert_eq!(
        h.put_chunk(&other, &chunk(b'd')).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        h.put_chunk(&t, &chunk(b'a')).await.status,
        StatusCode::NO_CONTENT
    );
    // Asking which chunks are missing (a resumed upload) counts nothing new.
    let shas: Vec<String> = [b'a', b'd'].map(|f| sha_hex(&chunk(f))).into();
    let r = h
        .request("POST", &t, "/v1/chunks/missing", json!({ "chunks": shas }))
        .await;
    assert_eq!(r.json["missing"], json!([shas[1]]), "{}", r.json);
    // Committing a file made of two of them frees their bytes.
    let (a, b) = (chunk(b'a'), chunk(b'b'));
    let whole = [a.as_slice(), b.as_slice()].concat();
    let r = h
        .request(
            "POST",
            &t,
            "/v1/files/commit",
            json!({"path": "ab.bin", "size": 2000, "sha256": sha_hex(&whole),
                   "chunks": [{"sha256": sha_hex(&a), "size": 1000},
                              {"sha256": sha_hex(&b), "size": 1000}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    for fill in [b'd', b'e'] {
        let r = h.put_chunk(&t, &chunk(fill)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    }
    assert_eq!(
        h.put_chunk(&t, &chunk(b'f')).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

async fn quota_counts_uploads_in_flight(db: Option<String>) {
    let policy = StagedPolicy {
        per_user: None,
        window: Duration::from_secs(3600),
    };
    let h = harness_with(db, Some(2500), policy).await;
    let (t, _) = h.user("inflight@example.com").await;
    for fill in [b'a', b'b'] {
        assert_eq!(
            h.put_chunk(&t, &chunk(fill)).await.status,
            StatusCode::CREATED
        );
    }
    // 2000 staged + 1000 would pass 2500, though no file holds a byte yet.
    let r = h.put_chunk(&t, &chunk(b'c')).await;
    assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE, "{}", r.json);
    assert_eq!(r.json["error"], "quota_exceeded");
    let message = r.json["message"].as_str().unwrap();
    assert!(
        message.contains("0 of 2500 bytes used by files and 2000 by uploads not committed yet"),
        "{message}"
    );
    assert_eq!(h.get(&t, "/v1/account/usage").await.json["used_bytes"], 0);
}

syncsphere_test_support::on_both_stores! {
    staged_limit => staged_limit_on_sqlite, staged_limit_on_postgres;
    quota_counts_uploads_in_flight => quota_counts_uploads_in_flight_on_sqlite, quota_counts_uploads_in_flight_on_postgres;
}
