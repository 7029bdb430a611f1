//! Chunked uploads: resumption, dedup, ranges, and chunks sent with their place in the content.

use super::*;

pub(super) async fn chunked_uploads_resume_dedup_and_ranges(db: Option<String>) {
    let h = harness(db).await;
    let (t, _) = h.user("chunky@example.com").await;
    let data = noise(3 * 1024 * 1024 + 17, 7);
    let cuts = [0, 1024 * 1024, 2 * 1024 * 1024 + 5, data.len()];
    let pieces: Vec<&[u8]> = cuts.windows(2).map(|w| &data[w[0]..w[1]]).collect();
    let ids: Vec<String> = pieces.iter().map(|p| sha_hex(p)).collect();
    let refs: Vec<Value> = pieces
        .iter()
        .zip(&ids)
        .map(|(p, id)| json!({"sha256": id, "size": p.len()}))
        .collect();
    let whole = sha_hex(&data);
    let put_chunk = |id: String, body: Vec<u8>| {
        let (h, t) = (&h, t.clone());
        async move { h.put_chunk(&t, &id, body).await }
    };
    let missing = |token: String, list: Vec<String>| {
        let h = &h;
        async move {
            let r = h
                .request(
                    "POST",
                    &token,
                    "/v1/chunks/missing",
                    json!({ "chunks": list }),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.json);
            r.json["missing"].clone()
        }
    };
    let commit = |body: Value| {
        let t = t.clone();
        let h = &h;
        async move { h.request("POST", &t, "/v1/files/commit", body).await }
    };

    // The server lacks every chunk (duplicates asked once, in order).
    let mut asked = ids.clone();
    asked.push(ids[0].clone());
    assert_eq!(missing(t.clone(), asked).await, json!(ids));
    // Bytes that do not hash to the id are refused and not stored.
    let r = put_chunk(ids[0].clone(), b"not the chunk".to_vec()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert_eq!(r.json["error"], "hash_mismatch");
    assert_eq!(
        put_chunk(ids[0].clone(), pieces[0].to_vec()).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        put_chunk(ids[0].clone(), pieces[0].to_vec()).await.status,
        StatusCode::NO_CONTENT,
        "idempotent"
    );
    // "Interrupted" after the first chunk: committing names what is still missing, and writes
    // nothing.
    let good =
        json!({"path": "big/video.bin", "size": data.len(), "sha256": whole, "chunks": refs});
    let r = commit(good.clone()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert_eq!(r.json["error"], "missing_chunks");
    assert_eq!(r.json["missing"], json!([ids[1], ids[2]]));
    assert_eq!(h.get(&t, "/v1/files").await.json["files"], json!([]));
    // Resume: only the missing chunks go up.
    assert_eq!(
        missing(t.clone(), ids.clone()).await,
        json!([ids[1], ids[2]])
    );
    for i in 1..3 {
        assert_eq!(
            put_chunk(ids[i].clone(), pieces[i].to_vec()).await.status,
            StatusCode::CREATED
        );
    }
    // Commits whose size or hash disagree with the chunks are refused.
    let mut wrong_size = good.clone();
    wrong_size["size"] = json!(data.len() + 1);
    let mut wrong_hash = good.clone();
    wrong_hash["sha256"] = json!(sha_hex(b"something else"));
    let mut lying_chunk = good.clone();
    lying_chunk["chunks"][0]["size"] = json!(pieces[0].len() - 1);
    lying_chunk["chunks"][1]["size"] = json!(pieces[1].len() + 1);
    for (body, code) in [
        (wrong_size, "hash_mismatch"),
        (wrong_hash, "hash_mismatch"),
        (lying_chunk, "hash_mismatch"),
        (
            json!({"path": "x", "size": 1, "sha256": "nothex", "chunks": []}),
            "bad_request",
        ),
        (
            json!({"path": "../x", "size": 0, "sha256": sha_hex(b""), "chunks": []}),
            "invalid_path",
        ),
        (
            json!({"path": "x", "size": 3, "sha256": whole, "chunks": [{"sha256": ids[0], "size": 0}]}),
            "bad_request",
        ),
    ] {
        let r = commit(body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.json);
        assert_eq!(r.json["error"], code, "{body}: {}", r.json);
    }
    assert_eq!(h.get(&t, "/v1/files").await.json["files"], json!([]));
    let r = commit(good.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["sha256"], whole.as_str());
    assert_eq!(r.json["size"], data.len());
    let id = r.json["file_id"].as_str().unwrap().to_owned();
    let rev = r.json["rev"].clone();

    // What the content is made of (for delta downloads), current and by revision; a file that
    // is not there (or another user's) is not found.
    let listed = h.get(&t, &format!("/v1/files/{id}/chunks")).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.json);
    assert_eq!(
        listed.json,
        json!({"rev": rev, "sha256": whole, "size": data.len(), "chunks": refs})
    );
    let by_rev = h.get(&t, &format!("/v1/files/{id}/chunks?rev={rev}")).await;
    assert_eq!(by_rev.json, listed.json);
    for uri in [
        format!("/v1/files/{id}/chunks?rev=99"),
        "/v1/files/no-such-file/chunks".to_owned(),
    ] {
        assert_eq!(h.get(&t, &uri).await.status, StatusCode::NOT_FOUND, "{uri}");
    }
    let (stranger, _) = h.user("stranger-chunky@example.com").await;
    let theirs = h.get(&stranger, &format!("/v1/files/{id}/chunks")).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);

    // Download: whole, and ranges within and across chunks.
    let uri = format!("/v1/files/{id}/content");
    let full = h.get(&t, &uri).await;
    assert_eq!(full.status, StatusCode::OK);
    assert!(
        full.bytes == data,
        "whole content streams back byte-identical"
    );
    let ranged = |range: String| {
        let (t, uri) = (t.clone(), uri.clone());
        let h = &h;
        async move {
            let resp = h
                .app
                .clone()
                .oneshot(
                    Request::get(&uri)
                        .header("authorization", format!("Bearer {t}"))
                        .header("range", range)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            let status = resp.status();
            let content_range = resp
                .headers()
                .get("content-range")
                .map(|v| v.to_str().unwrap().to_owned());
            let bytes = resp
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec();
            (status, content_range, bytes)
        }
    };
    let n = data.len();
    for (spec, start, end) in [
        ("bytes=0-9".to_owned(), 0, 9),
        (
            format!("bytes={}-{}", cuts[1] - 3, cuts[1] + 3),
            cuts[1] - 3,
            cuts[1] + 3,
        ),
        (format!("bytes={}-", cuts[2] - 1), cuts[2] - 1, n - 1),
        ("bytes=-100".to_owned(), n - 100, n - 1),
    ] {
        let (status, content_range, bytes) = ranged(spec.clone()).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{spec}");
        assert_eq!(content_range.unwrap(), format!("bytes {start}-{end}/{n}"));
        assert!(bytes == data[start..=end], "{spec}");
    }
    let (status, content_range, _) = ranged(format!("bytes={n}-")).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(content_range.unwrap(), format!("bytes */{n}"));

    // Dedup within the user: a copy needs no upload at all; a one-byte edit at the start needs
    // only its first chunk.
    assert_eq!(missing(t.clone(), ids.clone()).await, json!([]));
    let mut copy = good.clone();
    copy["path"] = json!("big/copy.bin");
    assert_eq!(commit(copy).await.status, StatusCode::OK);
    // No cross-user dedup: another user holds none of these chunks.
    let (other, _) = h.user("other-chunky@example.com").await;
    assert_eq!(missing(other.clone(), ids.clone()).await, json!(ids));
    let r = h
        .request("POST", &other, "/v1/files/commit", good.clone())
        .await;
    assert_eq!(r.json["error"], "missing_chunks", "{}", r.json);

    // Limits and ids.
    let r = put_chunk(sha_hex(&[0; 9 * 1024 * 1024]), vec![0; 9 * 1024 * 1024]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.json);
    for bad in ["abc", &"G".repeat(64), &ids[0].to_uppercase()] {
        let r = put_chunk(bad.to_owned(), b"x".to_vec()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // An empty file commits with no chunks and downloads empty.
    let r =
        commit(json!({"path": "empty.txt", "size": 0, "sha256": sha_hex(b""), "chunks": []})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let empty = h
        .get(
            &t,
            &format!("/v1/files/{}/content", r.json["file_id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.bytes.is_empty());
    let empty_chunks = h
        .get(
            &t,
            &format!("/v1/files/{}/chunks", r.json["file_id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(
        empty_chunks.json["chunks"],
        json!([]),
        "{}",
        empty_chunks.json
    );
    // Single-request uploads serve ranges too, and are one chunk: their own hash.
    let small = h.put(&t, "path=small.txt", b"0123456789").await.json;
    let small_chunks = h
        .get(
            &t,
            &format!("/v1/files/{}/chunks", small["file_id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(
        small_chunks.json["chunks"],
        json!([{"sha256": sha_hex(b"0123456789"), "size": 10}])
    );
    let (status, _, bytes) = {
        let resp = h
            .app
            .clone()
            .oneshot(
                Request::get(format!(
                    "/v1/files/{}/content",
                    small["file_id"].as_str().unwrap()
                ))
                .header("authorization", format!("Bearer {t}"))
                .header("range", "bytes=3-5")
                .body(Body::empty())
                .unwrap(),
            )
            .await
            .unwrap();
        (
            resp.status(),
            (),
            resp.into_body().collect().await.unwrap().to_bytes(),
        )
    };
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&bytes[..], b"345");
}

/// Chunks sent with `x-syncsphere-content`/`x-syncsphere-offset` (in any order) commit like
/// any others; what the headers claim never replaces the check of the committed hash; bad
/// header values are refused before anything is stored.
pub(super) async fn chunks_sent_with_their_place(db: Option<String>) {
    let h = harness(db).await;
    let (t, _) = h.user("placed@example.com").await;
    let data = noise(2 * 1024 * 1024 + 999, 21);
    let cuts = [0, 700_000, 1_500_000, data.len()];
    let pieces: Vec<Vec<u8>> = cuts.windows(2).map(|w| data[w[0]..w[1]].to_vec()).collect();
    let ids: Vec<String> = pieces.iter().map(|p| sha_hex(p)).collect();
    let refs: Vec<Value> = pieces
        .iter()
        .zip(&ids)
        .map(|(p, id)| json!({"sha256": id, "size": p.len()}))
        .collect();
    let whole = sha_hex(&data);

    // Bad places: refused, nothing stored.
    for (content, offset, why) in [
        (Some(whole.as_str()), None, "content without offset"),
        (None, Some("0"), "offset without content"),
        (Some("not-a-hash"), Some("0"), "content not a hash"),
        (Some(whole.as_str()), Some("-1"), "negative offset"),
        (Some(whole.as_str()), Some("12abc"), "offset not a number"),
    ] {
        let r = h
            .put_placed_chunk(&t, &ids[0], content, offset, pieces[0].clone())
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{why}: {}", r.json);
    }
    let asked = h
        .request("POST", &t, "/v1/chunks/missing", json!({"chunks": ids}))
        .await;
    assert_eq!(asked.json["missing"], json!(ids), "nothing was stored");

    // Out of order, each with its place: the commit verifies and the content reads back whole.
    for i in [2, 0, 1] {
        let r = h
            .put_placed_chunk(
                &t,
                &ids[i],
                Some(&whole),
                Some(&cuts[i].to_string()),
                pieces[i].clone(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    }
    let r = h
        .request(
            "POST",
            &t,
            "/v1/files/commit",
            json!({"path": "placed.bin", "size": data.len(), "sha256": whole, "chunks": refs}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let file_id = r.json["file_id"].as_str().unwrap().to_owned();
    let got = h
        .send(
            Request::get(format!("/v1/files/{file_id}/content"))
                .header("authorization", format!("Bearer {t}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(sha_hex(&got.bytes), whole);

    // Chunks placed under one content, committed in another order under another hash: the
    // headers vouch for nothing, the commit is checked (and refused).
    let other = noise(1_200_000, 22);
    let other_cuts = [0, 600_000, other.len()];
    let other_pieces: Vec<Vec<u8>> = other_cuts
        .windows(2)
        .map(|w| other[w[0]..w[1]].to_vec())
        .collect();
    let other_ids: Vec<String> = other_pieces.iter().map(|p| sha_hex(p)).collect();
    for i in 0..2 {
        let r = h
            .put_placed_chunk(
                &t,
                &other_ids[i],
                Some(&sha_hex(&other)),
                Some(&other_cuts[i].to_string()),
                other_pieces[i].clone(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    }
    let commit_in_order = |path: &'static str, order: [usize; 2]| {
        let chunks: Vec<Value> = order
            .iter()
            .map(|&i| json!({"sha256": other_ids[i], "size": other_pieces[i].len()}))
            .collect();
        let body =
            json!({"path": path, "size": other.len(), "sha256": sha_hex(&other), "chunks": chunks});
        let (h, t) = (&h, t.clone());
        async move { h.request("POST", &t, "/v1/files/commit", body).await }
    };
    let r = commit_in_order("swapped.bin", [1, 0]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert_eq!(r.json["error"], "hash_mismatch");
    // In the right order it commits (read back: the run above was used up by the refusal).
    let r = commit_in_order("other.bin", [0, 1]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
}
