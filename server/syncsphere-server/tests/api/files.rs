//! Commits of whole files: path rules, `parent_rev`, and bad input refused whole.

use super::*;

pub(super) async fn files_commit_rules_and_bad_input(db: Option<String>) {
    let h = harness(db).await;
    let (t, _) = h.user("carol@example.com").await;
    let (other, _) = h.user("dave@example.com").await;

    // Invalid paths: 400 invalid_path and nothing written.
    let long_name = format!("path={}", "a".repeat(300));
    let bad = [
        "path=..%2Fescape",
        "path=%2Fabsolute",
        "path=a%2F%2Fb",
        "path=a%2F",
        "path=a%00b",
        "path=a%0Ab",
        "path=",
        "path=.",
        "path=a%5Cb",
        long_name.as_str(),
    ];
    for q in bad {
        let r = h.put(&t, q, b"x").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.json);
        assert_eq!(r.json["error"], "invalid_path", "{q}");
    }
    let r = h.put(&t, "parent_rev=1", b"x").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["error"], "bad_request");
    let r = h.put(&t, "path=a.txt&parent_rev=zero", b"x").await;
    assert_eq!(r.json["error"], "bad_request");
    let listing = h.get(&t, "/v1/files").await;
    assert_eq!(listing.json["files"], json!([]));
    assert_eq!(listing.json["cursor"], 0, "nothing reached the journal");

    // Create, then the parent_rev rules.
    let created = h.put(&t, "path=docs%2FPlan.txt", b"v1").await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.json);
    assert_eq!(created.json["rev"], 1);
    let id = created.json["file_id"].as_str().unwrap().to_owned();
    let again = h.put(&t, "path=docs%2FPlan.txt", b"other").await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.json["current"]["rev"], 1);
    let case = h.put(&t, "path=DOCS%2Fplan.TXT", b"other").await;
    assert_eq!(
        case.status,
        StatusCode::CONFLICT,
        "paths are unique regardless of case"
    );
    let updated = h.put(&t, "path=docs%2FPlan.txt&parent_rev=1", b"v2").await;
    assert_eq!(updated.json["rev"], 2);
    let stale = h
        .put(&t, "path=docs%2FPlan.txt&parent_rev=1", b"lost?")
        .await;
    assert_eq!(
        stale.status,
        StatusCode::CONFLICT,
        "a stale parent never overwrites"
    );
    assert_eq!(stale.json["error"], "conflict");
    assert_eq!(stale.json["current"]["rev"], 2);
    let gone = h.put(&t, "path=never.txt&parent_rev=3", b"x").await;
    assert_eq!(gone.status, StatusCode::CONFLICT);

    // Download returns the committed bytes with their revision; other users see nothing.
    let dl = h.get(&t, &format!("/v1/files/{id}/content")).await;
    assert_eq!(dl.bytes, b"v2");
    assert_eq!(
        h.get(&other, &format!("/v1/files/{id}/content"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.get(&other, "/v1/files").await.json["files"], json!([]));

    // Move keeps the id; moving onto a live path conflicts; malformed JSON is a JSON 400.
    let mv = |body: String| {
        Request::post(format!("/v1/files/{id}/move"))
            .header("authorization", format!("Bearer {t}"))
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let r = h.send(mv("{oops".into())).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["error"], "bad_request");
    assert_eq!(
        h.put(&t, "path=taken.txt", b"t").await.status,
        StatusCode::OK
    );
    let r = h
        .send(mv(
            json!({"new_path": "TAKEN.txt", "parent_rev": 2}).to_string()
        ))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = h
        .send(mv(json!({"new_path": "../x", "parent_rev": 2}).to_string()))
        .await;
    assert_eq!(r.json["error"], "invalid_path");
    let r = h
        .send(mv(
            json!({"new_path": "archive/plan.txt", "parent_rev": 2}).to_string()
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["file_id"], id.as_str());
    assert_eq!(r.json["rev"], 3);

    // Delete needs the current revision.
    let del = |rev: i64| {
        Request::delete(format!("/v1/files/{id}?parent_rev={rev}"))
            .header("authorization", format!("Bearer {t}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(h.send(del(2)).await.status, StatusCode::CONFLICT);
    let r = h.send(del(3)).await;
    assert_eq!(r.json["deleted"], true);
    assert_eq!(
        h.get(&t, &format!("/v1/files/{id}/content")).await.status,
        StatusCode::NOT_FOUND
    );

    // The journal: strictly increasing seq, one entry per commit, pageable.
    let page = h.get(&t, "/v1/changes?cursor=0").await.json;
    let events: Vec<(i64, String)> = page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["seq"].as_i64().unwrap(),
                c["event"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        events,
        vec![
            (1, "created".into()),
            (2, "updated".into()),
            (3, "created".into()),
            (4, "moved".into()),
            (5, "deleted".into())
        ]
    );
    assert_eq!(page["changes"][3]["old_path"], "docs/Plan.txt");
    assert_eq!(page["changes"][0]["origin_device"], "dev-1");
    let first = h.get(&t, "/v1/changes?cursor=0&limit=2").await.json;
    assert_eq!(first["has_more"], true);
    assert_eq!(first["cursor"], 2);
    let rest = h.get(&t, "/v1/changes?cursor=2&limit=10").await.json;
    assert_eq!(rest["has_more"], false);
    assert_eq!(rest["changes"].as_array().unwrap().len(), 3);
    assert_eq!(
        h.get(&t, "/v1/changes?cursor=-1").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.get(&other, "/v1/changes?cursor=0").await.json["changes"],
        json!([])
    );
}
