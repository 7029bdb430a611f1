//! Revisions, restore and the trash.

use super::*;

pub(super) async fn revisions_restore_and_trash(db: Option<String>) {
    let h = harness(db).await;
    let (t, _) = h.user("hana@example.com").await;
    let (other, _) = h.user("ivan@example.com").await;
    let post = |uri: String, body: Value| {
        Request::post(uri)
            .header("authorization", format!("Bearer {t}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let id = h.put(&t, "path=notes.txt", b"first").await.json["file_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        h.put(&t, "path=notes.txt&parent_rev=1", b"second")
            .await
            .json["rev"],
        2
    );

    // History, newest first; old content downloadable by revision.
    let list = h.get(&t, &format!("/v1/files/{id}/revisions")).await;
    let revs: Vec<i64> = list.json["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rev"].as_i64().unwrap())
        .collect();
    assert_eq!(revs, vec![2, 1]);
    assert_eq!(list.json["revisions"][1]["origin_device"], "dev-1");
    assert_eq!(
        h.get(&t, &format!("/v1/files/{id}/content?rev=1"))
            .await
            .bytes,
        b"first"
    );
    assert_eq!(
        h.get(&t, &format!("/v1/files/{id}/content?rev=9"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.get(&other, &format!("/v1/files/{id}/revisions"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.get(&other, &format!("/v1/files/{id}/content?rev=1"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Restore is a new revision on top of the current one; a stale parent is a conflict.
    let stale = h
        .send(post(
            format!("/v1/files/{id}/restore"),
            json!({"rev": 1, "parent_rev": 1}),
        ))
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    let restored = h
        .send(post(
            format!("/v1/files/{id}/restore"),
            json!({"rev": 1, "parent_rev": 2}),
        ))
        .await;
    assert_eq!(restored.status, StatusCode::OK, "{}", restored.json);
    assert_eq!(restored.json["rev"], 3);
    assert_eq!(
        h.get(&t, &format!("/v1/files/{id}/content")).await.bytes,
        b"first"
    );
    let bad = h
        .send(post(
            format!("/v1/files/{id}/restore"),
            json!({"rev": "one"}),
        ))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // Delete → trash → undelete at the old path; a revision that deleted cannot be restored.
    let del = Request::delete(format!("/v1/files/{id}?parent_rev=3"))
        .header("authorization", format!("Bearer {t}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.send(del).await.status, StatusCode::OK);
    let trash = h.get(&t, "/v1/trash").await;
    assert_eq!(trash.json["files"][0]["file_id"], id.as_str());
    assert_eq!(h.get(&other, "/v1/trash").await.json["files"], json!([]));
    let r = h
        .send(post(
            format!("/v1/files/{id}/restore"),
            json!({"rev": 4, "parent_rev": 4}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "rev 4 is the deletion");
    assert_eq!(r.json["current"]["file_id"], id.as_str(), "{}", r.json);
    // While another file holds the path, undelete is a conflict naming that file.
    let squatter = h.put(&t, "path=NOTES.txt", b"new file").await.json;
    let r = h
        .send(post(
            format!("/v1/files/{id}/restore"),
            json!({"rev": 2, "parent_rev": 4}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json["current"]["file_id"], squatter["file_id"]);
    let del = Request::delete(format!(
        "/v1/files/{}?parent_rev=1",
        squatter["file_id"].as_str().unwrap()
    ))
    .header("authorization", format!("Bearer {t}"))
    .body(Body::empty())
    .unwrap();
    assert_eq!(h.send(del).await.status, StatusCode::OK);
    let r = h
        .send(post(
            format!("/v1/files/{id}/restore"),
            json!({"rev": 2, "parent_rev": 4}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["deleted"], false);
    assert_eq!(r.json["path"], "notes.txt");
    assert_eq!(
        h.get(&t, &format!("/v1/files/{id}/content")).await.bytes,
        b"second"
    );

    // The journal tells other devices: the undelete is a `created` of the same file id.
    let page = h.get(&t, "/v1/changes?cursor=0").await.json;
    let last = page["changes"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"], "created");
    assert_eq!(last["file_id"], id.as_str());
    assert_eq!(last["rev"], 5);
}
