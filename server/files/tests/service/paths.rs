//! Path rules through every endpoint that takes a path: bad shapes refused, NFC, a name is a
//! file or a folder, names compared by case folding.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::harness::{harness, percent_encode, sha_hex};

/// Every bad path the API must refuse, through every endpoint that takes a path: each is a
/// `400 invalid_path` and nothing is written (the journal does not move).
async fn path_attack_table(db: Option<String>) {
    let h = harness(db).await;
    let (t, _) = h.user("mallory@example.com").await;
    let seed = h.put(&t, "path=seed.txt", b"seed").await;
    assert_eq!(seed.status, StatusCode::OK);
    let seed_id = seed.json["file_id"].as_str().unwrap().to_owned();
    let long_name = "n".repeat(256);
    let long_path = format!("{}/x", "d".repeat(200)).repeat(25);
    let attacks: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("absolute", "/etc/passwd".into()),
        ("parent escape", "../outside".into()),
        ("nested escape", "a/../../outside".into()),
        ("dot segment", "a/./b".into()),
        ("dot", ".".into()),
        ("dot dot", "..".into()),
        ("empty segment", "a//b".into()),
        ("trailing slash", "a/".into()),
        ("backslash", "a\\b".into()),
        ("windows escape", "..\\..\\x".into()),
        ("NUL", "a\0b".into()),
        ("newline", "a\nb".into()),
        ("carriage return", "a\rb".into()),
        ("tab", "a\tb".into()),
        ("escape", "a\u{1b}[31mred".into()),
        ("DEL", "a\u{7f}".into()),
        ("C1 control", "a\u{85}b".into()),
        ("CON", "CON".into()),
        ("con lower", "docs/con".into()),
        ("aux.txt", "aux.txt".into()),
        ("Nul.tar.gz", "Nul.tar.gz".into()),
        ("COM1", "COM1".into()),
        ("com9.log", "x/com9.log".into()),
        ("LPT3", "lpt3".into()),
        ("COM superscript", "COM\u{b9}".into()),
        ("PRN", "PRN.md".into()),
        ("colon", "a:b".into()),
        ("drive", "C:/x".into()),
        ("less than", "a<b".into()),
        ("greater than", "a>b".into()),
        ("quote", "a\"b".into()),
        ("pipe", "a|b".into()),
        ("question mark", "a?b".into()),
        ("star", "*.txt".into()),
        ("trailing space", "name ".into()),
        ("trailing dot", "dir./x".into()),
        ("name too long", long_name),
        ("path too long", long_path),
    ];
    for (what, path) in &attacks {
        let r = h
            .put(&t, &format!("path={}", percent_encode(path)), b"x")
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "PUT {what}: {}", r.json);
        assert_eq!(r.json["error"], "invalid_path", "PUT {what}: {}", r.json);
        let r = h
            .request(
                "POST",
                &t,
                "/v1/files/commit",
                json!({"path": path, "size": 0, "sha256": sha_hex(b""), "chunks": []}),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "commit {what}: {}",
            r.json
        );
        assert_eq!(r.json["error"], "invalid_path", "commit {what}: {}", r.json);
        let r = h.move_file(&t, &seed_id, path, 1).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "move {what}: {}", r.json);
        assert_eq!(r.json["error"], "invalid_path", "move {what}: {}", r.json);
    }
    let listing = h.get(&t, "/v1/files").await.json;
    assert_eq!(listing["files"].as_array().unwrap().len(), 1, "{listing}");
    assert_eq!(listing["files"][0]["path"], "seed.txt");
    assert_eq!(listing["cursor"], 1, "no attack reached the journal");

    // NFC: a decomposed name is stored composed, and the composed spelling is the same file.
    let r = h
        .put(
            &t,
            &format!("path={}", percent_encode("cafe\u{301}.txt")),
            b"1",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["path"], "caf\u{e9}.txt");
    let r = h
        .put(
            &t,
            &format!("path={}", percent_encode("caf\u{e9}.txt")),
            b"2",
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.json);
    // Case-only renames are allowed (the same file, new spelling).
    let r = h.move_file(&t, &seed_id, "SEED.txt", 1).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["path"], "SEED.txt");
}

/// A name is a file or a folder, never both (case-insensitively): creating, committing, moving
/// or undeleting a file under a live file, or at a name that holds live files, is a 409 carrying
/// the file in the way, and writes nothing.
async fn a_name_is_a_file_or_a_folder(db: Option<String>) {
    let h = harness(db).await;
    let (t, _) = h.user("tree@example.com").await;
    let file = h.put(&t, "path=d", b"a file").await;
    assert_eq!(file.status, StatusCode::OK, "{}", file.json);
    let inside = h.put(&t, "path=docs/e.txt", b"in a folder").await;
    assert_eq!(inside.status, StatusCode::OK, "{}", inside.json);
    let inside_id = inside.json["file_id"].as_str().unwrap().to_owned();
    let cursor = h.get(&t, "/v1/files").await.json["cursor"].clone();

    for (what, path, in_the_way) in [
        ("under a file", "d/e", "d"),
        ("under a file, other case", "D/e/f", "d"),
        ("a file where a folder is", "docs", "docs/e.txt"),
        ("a file where a folder is, other case", "DOCS", "docs/e.txt"),
    ] {
        let r = h
            .put(&t, &format!("path={}", percent_encode(path)), b"x")
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "PUT {what}: {}", r.json);
        assert_eq!(r.json["error"], "conflict", "PUT {what}: {}", r.json);
        assert_eq!(
            r.json["current"]["path"], in_the_way,
            "PUT {what}: {}",
            r.json
        );
        let r = h
            .request(
                "POST",
                &t,
                "/v1/files/commit",
                json!({"path": path, "size": 0, "sha256": sha_hex(b""), "chunks": []}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "commit {what}: {}", r.json);
    }
    let r = h.move_file(&t, &inside_id, "d/e.txt", 1).await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "move under a file: {}",
        r.json
    );
    assert_eq!(r.json["current"]["path"], "d");
    let after = h.get(&t, "/v1/files").await.json;
    assert_eq!(
        after["cursor"], cursor,
        "nothing reached the journal: {after}"
    );

    // Names that merely start alike are not in each other's way.
    for path in ["d.txt", "dx/e", "docs2", "docs.txt"] {
        let r = h.put(&t, &format!("path={path}"), b"x").await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.json);
    }
    // The file taking a name does not stand in its own way: `docs/e.txt` → `docs`.
    let r = h.move_file(&t, &inside_id, "docs", 1).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);

    // Undeleting a file whose name became a folder meanwhile is refused too.
    let file_id = file.json["file_id"].as_str().unwrap();
    let r = h
        .request(
            "DELETE",
            &t,
            &format!("/v1/files/{file_id}?parent_rev=1"),
            Value::Null,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = h.put(&t, "path=d/new", b"now a folder").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = h.restore(&t, file_id, 1, 2).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "undelete: {}", r.json);
    assert_eq!(r.json["current"]["path"], "d/new");
}

/// Names are compared by Unicode case folding, like the case-insensitive disks clients have
/// (NTFS, APFS): final and medial sigma, ß and ss, the Kelvin sign and k are one name each, and
/// a second spelling is a 409 carrying the file in the way — for uploads, commits and moves.
/// Turkish dotless ı is not i, on those disks or here.
async fn names_fold_like_case_insensitive_disks(db: Option<String>) {
    let h = harness(db).await;
    let (t, _) = h.user("folding@example.com").await;
    let put = |path: &str| {
        let query = format!("path={}", percent_encode(path));
        let (h, t) = (&h, t.clone());
        async move { h.put(&t, &query, b"x").await }
    };
    for (first, others) in [
        ("οδος.txt", ["ΟΔΟΣ.txt", "οδοσ.txt", "Οδος.TXT"]),
        ("straße.txt", ["STRASSE.txt", "strasse.txt", "STRAẞE.txt"]),
        (
            "kelvin.txt",
            ["\u{212A}elvin.txt", "KELVIN.txt", "Kelvin.txt"],
        ),
    ] {
        let r = put(first).await;
        assert_eq!(r.status, StatusCode::OK, "{first}: {}", r.json);
        for other in others {
            let r = put(other).await;
            assert_eq!(
                r.status,
                StatusCode::CONFLICT,
                "{other} after {first}: {}",
                r.json
            );
            assert_eq!(r.json["error"], "conflict", "{other}: {}", r.json);
            assert_eq!(r.json["current"]["path"], first, "{other}: {}", r.json);
            let r = h
                .request(
                    "POST",
                    &t,
                    "/v1/files/commit",
                    json!({"path": other, "size": 0, "sha256": sha_hex(b""), "chunks": []}),
                )
                .await;
            assert_eq!(r.status, StatusCode::CONFLICT, "commit {other}: {}", r.json);
        }
    }
    // A folder's name folds too: `ΟΔΟΣ/a` is in the folder of `οδος/b`, so `οδοσ` cannot be a file.
    let r = put("ΟΔΟΣ/a.txt").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = put("οδοσ").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.json);
    assert_eq!(r.json["current"]["path"], "ΟΔΟΣ/a.txt");
    // Moves are refused the same way.
    let r = put("other.txt").await;
    let other_id = r.json["file_id"].as_str().unwrap().to_owned();
    let r = h.move_file(&t, &other_id, "ΟΔΟΣ.TXT", 1).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.json);
    assert_eq!(r.json["current"]["path"], "οδος.txt");
    // The file itself may change its spelling.
    let first_id = h.get(&t, "/v1/files").await.json["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "οδος.txt")
        .unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = h.move_file(&t, &first_id, "ΟΔΟΣ.txt", 1).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    // Not special: dotless ı and dotted İ are not i.
    for path in ["i.txt", "ı.txt", "İ.txt"] {
        let r = put(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.json);
    }
    let r = put("I.txt").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.json);
    assert_eq!(r.json["current"]["path"], "i.txt");
}

syncsphere_test_support::on_both_stores! {
    path_attack_table => path_attack_table_on_sqlite, path_attack_table_on_postgres;
    a_name_is_a_file_or_a_folder => a_name_is_a_file_or_a_folder_on_sqlite, a_name_is_a_file_or_a_folder_on_postgres;
    names_fold_like_case_insensitive_disks => names_fold_like_case_insensitive_disks_on_sqlite, names_fold_like_case_insensitive_disks_on_postgres;
}
