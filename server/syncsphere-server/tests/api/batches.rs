//! Small files: contents kept inline, several contents in one response, several uploads in one
//! request.

use super::*;

/// Small contents uploaded in one request live in the metadata database, committed with their
/// revision; larger ones (also when the request does not say its length) go to the blob store.
/// Both read back whole and by range, and a content committed twice is stored once.
pub(super) async fn small_contents_inline(db: Option<String>) {
    use syncsphere_files::inline::DEFAULT_INLINE_MAX_BYTES;
    let on_disk = db.is_none();
    let h = harness(db).await;
    let (t, _) = h.user("inline@example.com").await;
    let user = claims(&t)["sub"].as_str().unwrap().to_owned();
    let meta_db = syncsphere_db::Db::connect(&h.database_url).await.unwrap();
    let inline_rows = |sha: String| {
        let (pool, user) = (meta_db.pool.clone(), user.clone());
        async move {
            syncsphere_db::sqlx::query(
                "SELECT size FROM inline_blobs WHERE user_id = $1 AND sha256 = $2",
            )
            .bind(user)
            .bind(sha)
            .fetch_all(&pool)
            .await
            .unwrap()
            .len()
        }
    };
    let disk_blob = |sha: &str| {
        h.dir
            .path()
            .join("blobs")
            .join(&user)
            .join(&sha[..2])
            .join(sha)
    };
    // A body streamed in pieces without a length, like a client that does not announce one.
    let streamed = |token: &str, query: &str, pieces: Vec<Vec<u8>>| {
        let stream = futures_util::stream::iter(
            pieces
                .into_iter()
                .map(|p| Ok::<_, std::io::Error>(bytes::Bytes::from(p))),
        );
        Request::put(format!("/v1/files/content?{query}"))
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from_stream(stream))
            .unwrap()
    };

    let small = b"a small file, kept inline";
    let r = h.put(&t, "path=small.txt", small).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let small_id = r.json["file_id"].as_str().unwrap().to_owned();
    assert_eq!(inline_rows(sha_hex(small)).await, 1);
    if on_disk {
        assert!(
            !disk_blob(&sha_hex(small)).exists(),
            "not in the blob store"
        );
    }
    let got = h.get(&t, &format!("/v1/files/{small_id}/content")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.bytes, small);
    let ranged = h
        .send(
            Request::get(format!("/v1/files/{small_id}/content"))
                .header("authorization", format!("Bearer {t}"))
                .header("range", "bytes=2-6")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(ranged.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.bytes, b"small");

    // The same content at another path, and a streamed small body: one row per content.
    let r = h.put(&t, "path=copy.txt", small).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(inline_rows(sha_hex(small)).await, 1);
    let pieces = vec![b"in ".to_vec(), b"three ".to_vec(), b"pieces".to_vec()];
    let r = h.send(streamed(&t, "path=pieces.txt", pieces)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["size"], 15);
    assert_eq!(inline_rows(sha_hex(b"in three pieces")).await, 1);

    // Exactly at the limit is inline; one byte more goes to the store.
    let at_limit = noise(DEFAULT_INLINE_MAX_BYTES as usize, 31);
    let over = noise(DEFAULT_INLINE_MAX_BYTES as usize + 1, 32);
    for (name, data, inline) in [("limit.bin", &at_limit, true), ("over.bin", &over, false)] {
        let r = h
            .send(
                Request::put(format!("/v1/files/content?path={name}"))
                    .header("authorization", format!("Bearer {t}"))
                    .header("content-length", data.len())
                    .body(Body::from(data.clone()))
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{name}: {}", r.json);
        assert_eq!(
            inline_rows(sha_hex(data)).await,
            usize::from(inline),
            "{name}"
        );
        if on_disk {
            assert_eq!(disk_blob(&sha_hex(data)).exists(), !inline, "{name}");
        }
        let id = r.json["file_id"].as_str().unwrap();
        assert!(h.get(&t, &format!("/v1/files/{id}/content")).await.bytes == *data);
    }
    // Streamed without a length and over the limit: what was read ahead is not lost.
    let big: Vec<u8> = noise(40 * 1024, 33);
    let pieces: Vec<Vec<u8>> = big.chunks(5000).map(<[u8]>::to_vec).collect();
    let r = h.send(streamed(&t, "path=big.bin", pieces)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["sha256"], sha_hex(&big));
    assert_eq!(inline_rows(sha_hex(&big)).await, 0);
    let id = r.json["file_id"].as_str().unwrap();
    assert!(h.get(&t, &format!("/v1/files/{id}/content")).await.bytes == big);

    // A new revision of the small file, and the store checks clean.
    let r = h
        .put(&t, "path=small.txt&parent_rev=1", b"its second version")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let old = h
        .get(&t, &format!("/v1/files/{small_id}/content?rev=1"))
        .await;
    assert_eq!(old.bytes, small, "{:?}", old.status);
    let checked = syncsphere_files::gc::check(&h.maintenance.store, &h.maintenance.blobs)
        .await
        .unwrap();
    assert!(checked.problems.is_empty(), "{checked:?}");
}

/// Splits a `POST /v1/files/contents` body into its frames: (header, content).
pub(super) fn frames(mut body: &[u8]) -> Vec<(Value, Vec<u8>)> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let end = body
            .iter()
            .position(|&b| b == b'\n')
            .expect("a header line");
        let header: Value = serde_json::from_slice(&body[..end]).expect("a JSON header");
        body = &body[end + 1..];
        let size = header["size"].as_u64().unwrap_or(0) as usize;
        assert!(
            size <= body.len(),
            "{header}: {size} bytes announced, {} left",
            body.len()
        );
        out.push((header, body[..size].to_vec()));
        body = &body[size..];
    }
    out
}

pub(super) async fn contents_in_one_response(db: Option<String>) {
    let h = harness(db).await;
    let (t, _) = h.user("contents@example.com").await;
    let upload = |path: &str, body: &'static [u8]| {
        let (h, t, query) = (&h, t.clone(), format!("path={path}"));
        async move {
            let r = h.put(&t, &query, body).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.json);
            (
                r.json["file_id"].as_str().unwrap().to_owned(),
                r.json["rev"].as_i64().unwrap(),
            )
        }
    };
    let (a, _) = upload("a.txt", b"first file").await;
    let (b, b1) = upload("b.txt", b"second, version one").await;
    let r = h
        .put(
            &t,
            &format!("path=b.txt&parent_rev={b1}"),
            b"second, version two",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let (empty, _) = upload("empty.txt", b"").await;
    let (gone, gone_rev) = upload("gone.txt", b"deleted soon").await;
    let r = h
        .request(
            "DELETE",
            &t,
            &format!("/v1/files/{gone}?parent_rev={gone_rev}"),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    // What a revision is made of is for live files (delta downloads) only.
    let r = h
        .get(&t, &format!("/v1/files/{gone}/chunks?rev={gone_rev}"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.json);
    let big: &'static [u8] = Box::leak(vec![7u8; (4 << 20) + 1].into_boxed_slice());
    let (large, _) = upload("large.bin", big).await;
    let (stranger, _) = h.user("contents-stranger@example.com").await;
    let r = h.put(&stranger, "path=theirs.txt", b"not yours").await;
    let theirs = r.json["file_id"].as_str().unwrap().to_owned();

    let asked = json!({"files": [
        {"file_id": a}, {"file_id": b}, {"file_id": b, "rev": b1}, {"file_id": empty},
        {"file_id": gone}, {"file_id": "no-such-file"}, {"file_id": theirs},
        {"file_id": large}, {"file_id": a, "rev": 99}, {"file_id": a},
    ]});
    let r = h.request("POST", &t, "/v1/files/contents", asked).await;
    assert_eq!(r.status, StatusCode::OK);
    let got = frames(&r.bytes);
    let expect: [(&str, Option<&[u8]>); 10] = [
        (&a, Some(b"first file")),
        (&b, Some(b"second, version two")),
        (&b, Some(b"second, version one")),
        (&empty, Some(b"")),
        (&gone, None),
        ("no-such-file", None),
        (&theirs, None),
        (&large, None),
        (&a, None),
        (&a, Some(b"first file")),
    ];
    assert_eq!(got.len(), expect.len(), "one frame per file asked: {got:?}");
    for ((header, bytes), (id, content)) in got.iter().zip(expect) {
        assert_eq!(header["file_id"], id, "{header}");
        match content {
            Some(content) => {
                assert_eq!(bytes, content, "{header}");
                assert_eq!(header["sha256"], sha_hex(content), "{header}");
                assert_eq!(header["size"], content.len(), "{header}");
                assert!(
                    header["rev"].as_i64().is_some() && header["error"].is_null(),
                    "{header}"
                );
            }
            None => {
                let want = if id == large.as_str() {
                    "too_large"
                } else {
                    "not_found"
                };
                assert_eq!(header["error"], want, "{header}");
                assert!(header["size"].is_null() && bytes.is_empty(), "{header}");
            }
        }
    }
    assert_eq!(got[2].0["rev"], b1);

    // A response carries at most CONTENTS_MAX_TOTAL (8 MiB) of content, within API Gateway's
    // 10 MB (0040): a file past it is `too_large` (the client asks for it again), the smaller
    // ones after it still come.
    let three: &'static [u8] = Box::leak(vec![3u8; 3 << 20].into_boxed_slice());
    let (c1, _) = upload("c1.bin", three).await;
    let (c2, _) = upload("c2.bin", three).await;
    let (c3, _) = upload("c3.bin", three).await;
    let asked =
        json!({"files": [{"file_id": c1}, {"file_id": c2}, {"file_id": c3}, {"file_id": a}]});
    let r = h.request("POST", &t, "/v1/files/contents", asked).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.bytes.len() <= 10_485_760, "{} bytes", r.bytes.len());
    let got = frames(&r.bytes);
    assert_eq!(got[0].1.len(), 3 << 20);
    assert_eq!(got[1].1.len(), 3 << 20);
    assert_eq!(got[2].0["error"], "too_large", "{}", got[2].0);
    assert_eq!(got[3].1, b"first file");
    let asked = json!({"files": [{"file_id": c3}]});
    let r = h.request("POST", &t, "/v1/files/contents", asked).await;
    assert_eq!(frames(&r.bytes)[0].1.len(), 3 << 20, "alone it fits");

    // Bad requests: too many files, not a request, no token.
    let many: Vec<Value> = (0..257).map(|_| json!({"file_id": a})).collect();
    let r = h
        .request("POST", &t, "/v1/files/contents", json!({"files": many}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert!(
        r.json["message"].as_str().unwrap().contains("at most 256"),
        "{}",
        r.json
    );
    for bad in [
        json!({"file_ids": [a]}),
        json!({"files": [], "max_size": -1}),
        json!({"files": [{"file_id": a, "rev": 0}]}),
        json!({"files": [{"file_id": a, "rev": 1.5}]}),
    ] {
        let r = h
            .request("POST", &t, "/v1/files/contents", bad.clone())
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.json);
    }
    // null is absent (the document says so).
    let asked = json!({"files": [{"file_id": a, "rev": null}], "max_size": null});
    let r = h.request("POST", &t, "/v1/files/contents", asked).await;
    assert_eq!(frames(&r.bytes)[0].1, b"first file");
    // Integers as JSON Schema means them: 1.0 is 1.
    let r = h
        .request(
            "POST",
            &t,
            "/v1/files/contents",
            json!({"files": [{"file_id": a, "rev": 1.0}]}),
        )
        .await;
    assert_eq!(frames(&r.bytes)[0].1, b"first file");
    let r = h
        .request(
            "POST",
            "not-a-token",
            "/v1/files/contents",
            json!({"files": []}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.json);
    let r = h
        .request("POST", &t, "/v1/files/contents", json!({"files": []}))
        .await;
    assert_eq!((r.status, r.bytes.len()), (StatusCode::OK, 0));
}

/// A `POST /v1/files/upload` body: per file its header line and its bytes (`sha` overrides the
/// content's hash, to lie).
/// One file of a batch upload body: path, parent revision, content, declared hash (if a lie).
type Sent<'a> = (&'a str, Option<i64>, &'a [u8], Option<String>);

pub(super) fn upload_body(files: &[Sent<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for (path, parent, data, sha) in files {
        let mut header = json!({"path": path, "size": data.len(),
                                "sha256": sha.clone().unwrap_or_else(|| sha_hex(data))});
        if let Some(p) = parent {
            header["parent_rev"] = json!(p);
        }
        body.extend_from_slice(header.to_string().as_bytes());
        body.push(b'\n');
        body.extend_from_slice(data);
    }
    body
}

pub(super) async fn uploads_in_one_request(db: Option<String>) {
    let h = harness(db).await;
    let (t, _) = h.user("batch-up@example.com").await;
    let post = |body: Vec<u8>| {
        let (h, t) = (&h, t.clone());
        async move {
            h.send(
                Request::post("/v1/files/upload")
                    .header("authorization", format!("Bearer {t}"))
                    .header("x-syncsphere-device", "dev-1")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
        }
    };
    let r = h.put(&t, "path=c.txt", b"c, first").await;
    let c = r.json.clone();
    // (The files of a batch are committed together, in no set order: the stale one is its own.)
    let r = h.put(&t, "path=d.txt", b"d, first").await;
    let d = r.json.clone();
    let big = vec![b'z'; 40 * 1024]; // over the inline limit: staged and stored as a blob
    let files: [Sent<'_>; 7] = [
        ("a.txt", None, b"new file a", None),
        ("big.bin", None, &big, None),
        ("c.txt", c["rev"].as_i64(), b"c, second", None),
        ("d.txt", Some(99), b"d, stale", None),
        ("bad/../path", None, b"x", None),
        (
            "liar.txt",
            None,
            b"not what it says",
            Some(sha_hex(b"something else")),
        ),
        ("empty.txt", None, b"", None),
    ];
    let r = post(upload_body(&files)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let results = r.json["results"].as_array().unwrap();
    assert_eq!(results.len(), files.len(), "{}", r.json);
    for (i, (path, _, data, _)) in files.iter().enumerate() {
        let (file, error) = (&results[i]["file"], &results[i]["error"]);
        match i {
            3 => {
                assert_eq!(error["error"], "conflict", "{}", results[i]);
                assert_eq!(error["current"], d, "{}", results[i]);
            }
            4 => assert_eq!(error["error"], "invalid_path", "{}", results[i]),
            5 => assert_eq!(error["error"], "hash_mismatch", "{}", results[i]),
            _ => {
                assert!(error.is_null(), "{}", results[i]);
                assert_eq!(
                    (file["path"].as_str(), file["size"].as_u64()),
                    (Some(*path), Some(data.len() as u64))
                );
                assert_eq!(file["sha256"], sha_hex(data));
                let id = file["file_id"].as_str().unwrap();
                let got = h.get(&t, &format!("/v1/files/{id}/content")).await;
                assert_eq!(got.bytes, *data, "{path} reads back");
            }
        }
    }
    let listed = h.get(&t, "/v1/files").await.json;
    assert!(listed.get("next").is_none(), "one page: {listed}");
    // Pages (API Gateway's 10 MB, 0040): `next` leads on, in path order, to the last page.
    let all = listed["files"].as_array().unwrap().len();
    let mut seen = Vec::new();
    let mut uri = "/v1/files?limit=2".to_owned();
    loop {
        let page = h.get(&t, &uri).await.json;
        let files = page["files"].as_array().unwrap();
        assert!(files.len() <= 2, "{page}");
        seen.extend(files.iter().map(|f| f["path"].as_str().unwrap().to_owned()));
        match page["next"].as_str() {
            Some(next) => uri = format!("/v1/files?limit=2&after={next}"),
            None => break,
        }
    }
    let whole: Vec<String> = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        seen, whole,
        "the pages are the one listing, in its order ({all} files)"
    );
    let r = h.get(&t, "/v1/files?limit=0").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    let mut paths: Vec<&str> = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    paths.sort();
    assert_eq!(paths, ["a.txt", "big.bin", "c.txt", "d.txt", "empty.txt"]);
    // The journal has each commit, made by the device that sent the batch.
    let changes = h.get(&t, "/v1/changes?cursor=0").await.json;
    let journal = changes["changes"].as_array().unwrap();
    assert_eq!(journal.len(), 6, "{changes}");
    assert!(
        journal.iter().all(|c| c["origin_device"] == "dev-1"),
        "{changes}"
    );

    // Bodies that break the format are refused whole: nothing committed.
    let one = upload_body(&[("x1.txt", None, b"one", None)]);
    let mut cut = upload_body(&[
        ("x2.txt", None, b"two", None),
        ("x3.txt", None, b"three", None),
    ]);
    cut.truncate(cut.len() - 2);
    let too_large = vec![0u8; 1024 * 1024 + 1];
    let many: Vec<Sent<'_>> = (0..257).map(|_| ("m.txt", None, &b"m"[..], None)).collect();
    for (body, code) in [
        (
            [one.clone(), b"{not json}\n".to_vec()].concat(),
            "bad_request",
        ),
        (cut, "bad_request"),
        (
            [one.clone(), b"{\"path\": \"x4\"".to_vec()].concat(),
            "bad_request",
        ),
        (
            [
                one.clone(),
                upload_body(&[("huge.bin", None, &too_large, None)]),
            ]
            .concat(),
            "payload_too_large",
        ),
        (upload_body(&many), "bad_request"),
    ] {
        let r = post(body).await;
        assert_eq!(r.json["error"], code, "{}", r.json);
    }
    let after = h.get(&t, "/v1/files").await.json;
    assert_eq!(after["files"].as_array().unwrap().len(), 5, "{after}");
    let r = post(Vec::new()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert_eq!(r.json["message"], "the body holds no files");
}
