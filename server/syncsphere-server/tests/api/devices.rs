//! Device registration, listing and revocation (and what a revoked device's tokens can do).

use super::*;

pub(super) async fn devices_registration_listing_and_revocation(db: Option<String>) {
    let h = harness(db).await;
    let (unbound, _) = h.user("dana@example.com").await;
    assert!(claims(&unbound).get("device_key").is_none());
    let (laptop, _) = h.device_tokens("dana@example.com", "laptop-1").await;
    let (desk, desk_refresh) = h.device_tokens("dana@example.com", "desk-1").await;
    assert_eq!(claims(&laptop)["device_key"], "laptop-1");
    // A refreshed token stays bound to its device.
    let r = h.refresh(&desk_refresh).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let desk = {
        let fresh = r.json["AuthenticationResult"]["AccessToken"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(claims(&fresh)["device_key"], "desk-1");
        assert_ne!(fresh, desk);
        fresh
    };

    // Registration: a device names itself; bad input is refused and nothing is written.
    let register = |token: &str, id: &str, body: Value| {
        let (token, uri) = (token.to_owned(), format!("/v1/devices/{id}"));
        let h = &h;
        async move { h.request("PUT", &token, &uri, body).await }
    };
    let ok = json!({"name": "  Dana's laptop ", "platform": "linux"});
    assert_eq!(
        register(&laptop, "laptop-1", ok.clone()).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        register(
            &desk,
            "desk-1",
            json!({"name": "Desk", "platform": "windows"})
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    for (token, id, body, status) in [
        (&laptop, "desk-1", ok.clone(), StatusCode::FORBIDDEN),
        (&unbound, "has%20space", ok.clone(), StatusCode::BAD_REQUEST),
        (
            &unbound,
            &"x".repeat(129),
            ok.clone(),
            StatusCode::BAD_REQUEST,
        ),
        (
            &laptop,
            "laptop-1",
            json!({"name": "a\nb"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            &laptop,
            "laptop-1",
            json!({"platform": "p".repeat(33)}),
            StatusCode::BAD_REQUEST,
        ),
        (
            &laptop,
            "laptop-1",
            json!("not an object"),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = register(token, id, body.clone()).await;
        assert_eq!(r.status, status, "{id} {body}: {}", r.json);
    }
    let list = h.get(&laptop, "/v1/devices").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.json);
    let devices = list.json["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2, "{}", list.json);
    let laptop_row = devices
        .iter()
        .find(|d| d["device_id"] == "laptop-1")
        .unwrap();
    assert_eq!(laptop_row["name"], "Dana's laptop");
    assert_eq!(laptop_row["platform"], "linux");
    assert_eq!(laptop_row["current"], true);
    assert_eq!(laptop_row["online"], false);
    assert_eq!(laptop_row["revoked"], false);
    let desk_row = devices.iter().find(|d| d["device_id"] == "desk-1").unwrap();
    assert_eq!(desk_row["current"], false);
    assert!(desk_row["last_seen_ms"].as_i64().unwrap() > 0);

    // A device-bound token speaks for its own device only.
    let spoofed = h
        .send(
            Request::put("/v1/files/content?path=spoof.txt")
                .header("authorization", format!("Bearer {laptop}"))
                .header("x-syncsphere-device", "desk-1")
                .body(Body::from("x"))
                .unwrap(),
        )
        .await;
    assert_eq!(spoofed.status, StatusCode::BAD_REQUEST, "{}", spoofed.json);
    // The desk uploads a file; revoking the desk must not lose it.
    let r = h
        .send(
            Request::put("/v1/files/content?path=from-desk.txt")
                .header("authorization", format!("Bearer {desk}"))
                .body(Body::from("kept"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let page = h.get(&laptop, "/v1/changes?cursor=0").await.json;
    assert_eq!(page["changes"][0]["origin_device"], "desk-1", "{page}");

    // Revoke the desk from the laptop.
    let r = h
        .request("DELETE", &laptop, "/v1/devices/desk-1", Value::Null)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.json);
    let r = h.get(&desk, "/v1/files").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.json);
    assert_eq!(r.json["error"], "device_revoked");
    let r = h.refresh(&desk_refresh).await;
    assert_eq!(r.json["__type"], "NotAuthorizedException", "{}", r.json);
    assert_eq!(r.json["message"], "Device has been revoked");
    let r = h.device_sign_in("dana@example.com", "desk-1").await;
    assert_eq!(r.json["__type"], "NotAuthorizedException", "{}", r.json);
    assert_eq!(r.json["message"], "Device has been revoked");
    // Registering a revoked device again: the same status as its tokens get (0027).
    let r = register(&unbound, "desk-1", ok.clone()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.json);
    assert_eq!(r.json["error"], "device_revoked");
    // Revoking twice is harmless; the other devices keep working and see the file.
    let r = h
        .request("DELETE", &laptop, "/v1/devices/desk-1", Value::Null)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let files = h.get(&laptop, "/v1/files").await;
    assert_eq!(files.status, StatusCode::OK);
    assert_eq!(files.json["files"][0]["path"], "from-desk.txt");
    assert_eq!(h.get(&unbound, "/v1/files").await.status, StatusCode::OK);
    let list = h.get(&unbound, "/v1/devices").await.json;
    let desk_row = list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_id"] == "desk-1")
        .unwrap();
    assert_eq!(desk_row["revoked"], true);
    // The same desk signs in again as a new device.
    let (again, _) = h.device_tokens("dana@example.com", "desk-2").await;
    assert_eq!(h.get(&again, "/v1/files").await.status, StatusCode::OK);
    // Bad device keys at sign-in, and another user cannot touch this user's devices.
    let r = h.device_sign_in("dana@example.com", "has space").await;
    assert_eq!(r.json["__type"], "InvalidParameterException", "{}", r.json);
    let (other, _) = h.user("eve@example.com").await;
    let r = h
        .request("DELETE", &other, "/v1/devices/laptop-1", Value::Null)
        .await;
    assert_eq!(
        r.status,
        StatusCode::NO_CONTENT,
        "revoking is scoped to the caller's devices"
    );
    assert_eq!(h.get(&laptop, "/v1/files").await.status, StatusCode::OK);
    assert_eq!(
        h.get(&other, "/v1/devices").await.json["devices"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Signing out everywhere (what the apps call; with a Cognito pool they call the pool's
    // GlobalSignOut after it): every token of the user issued until now is refused at once,
    // bound or not; refresh tokens are revoked; the devices stay linked (not revoked); another
    // user is untouched; signing in again works at once with the same device id.
    let (_, laptop_refresh) = h.device_tokens("dana@example.com", "laptop-1").await;
    let r = h
        .request("POST", &again, "/v1/account/sign-out", Value::Null)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.json);
    for token in [&laptop, &again, &unbound] {
        let r = h.get(token, "/v1/files").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.json);
        assert_eq!(r.json["error"], "signed_out", "{}", r.json);
    }
    let r = h.refresh(&laptop_refresh).await;
    assert_eq!(r.json["__type"], "NotAuthorizedException", "{}", r.json);
    assert_eq!(h.get(&other, "/v1/files").await.status, StatusCode::OK);
    // The answer comes once the cut-off second has begun: a token an external pool issues from
    // now on (`iat` = now) is accepted, so signing in again at once works with any pool.
    let mut issued_now = claims(&laptop);
    issued_now["iat"] = json!(now());
    issued_now["exp"] = json!(now() + 600);
    let kid = jsonwebtoken::decode_header(&laptop).unwrap().kid.unwrap();
    let r = h.get(&h.sign(&kid, issued_now), "/v1/files").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = h
        .request("POST", &laptop, "/v1/account/sign-out", Value::Null)
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a void token cannot sign out again"
    );
    let (laptop, _) = h.device_tokens("dana@example.com", "laptop-1").await;
    assert_eq!(h.get(&laptop, "/v1/files").await.status, StatusCode::OK);
    let list = h.get(&laptop, "/v1/devices").await.json;
    let laptop_row = list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_id"] == "laptop-1")
        .cloned()
        .unwrap();
    assert_eq!(laptop_row["revoked"], false, "{list}");
}

/// Tokens that carry no device (an external Cognito pool's) act for the device that registered
/// with their sign-in session (`origin_jti`, kept by refreshed tokens), and stop working when it
/// is revoked — refreshed ones and ones the pool issues later too (0038).
pub(super) async fn sessions_are_bound_to_the_device_that_registers(db: Option<String>) {
    let h = harness(db).await;
    let (laptop, laptop_refresh) = h.user("pat@example.com").await;
    let session = claims(&laptop)["origin_jti"].clone();
    assert!(session.is_string(), "{}", claims(&laptop));
    assert!(claims(&laptop).get("device_key").is_none());
    let refreshed = |refresh: &str| {
        let (h, refresh) = (&h, refresh.to_owned());
        async move {
            let r = h.refresh(&refresh).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.json);
            r.json["AuthenticationResult"]["AccessToken"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let laptop_again = refreshed(&laptop_refresh).await;
    assert_ne!(laptop_again, laptop);
    assert_eq!(
        claims(&laptop_again)["origin_jti"],
        session,
        "one sign-in, one session"
    );
    let body = json!({"name": "Pat's laptop"});
    let register = |token: &str, id: &str| {
        let (h, token, uri) = (&h, token.to_owned(), format!("/v1/devices/{id}"));
        let body = body.clone();
        async move { h.request("PUT", &token, &uri, body).await }
    };
    // Before it registers, the session may still name any device.
    let upload = |token: &str, device: &str, path: &str| {
        let (h, token, device) = (&h, token.to_owned(), device.to_owned());
        let uri = format!("/v1/files/content?path={path}");
        async move {
            h.send(
                Request::put(uri)
                    .header("authorization", format!("Bearer {token}"))
                    .header("x-syncsphere-device", device)
                    .body(Body::from("x"))
                    .unwrap(),
            )
            .await
        }
    };
    assert_eq!(
        upload(&laptop, "anything", "a.txt").await.status,
        StatusCode::OK
    );
    let r = register(&laptop, "pat-laptop").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.json);
    // From now on every token of the session is the laptop's, and only the laptop's.
    for (i, token) in [&laptop, &laptop_again].into_iter().enumerate() {
        let r = register(token, "pat-desk").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json);
        let r = upload(token, "pat-desk", "b.txt").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
        assert_eq!(
            upload(token, "pat-laptop", &format!("c-{i}.txt"))
                .await
                .status,
            StatusCode::OK
        );
        let list = h.get(token, "/v1/devices").await.json;
        assert_eq!(list["devices"][0]["device_id"], "pat-laptop", "{list}");
        assert_eq!(list["devices"][0]["current"], true, "{list}");
    }
    assert_eq!(
        register(&laptop, "pat-laptop").await.status,
        StatusCode::NO_CONTENT,
        "registering again is fine"
    );
    // A second sign-in is a session of its own, bound by the device that registers with it.
    let (desk, _) = h.sign_in("pat@example.com").await;
    assert_ne!(claims(&desk)["origin_jti"], session);
    let r = register(&desk, "pat-desk").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.json);

    // The desk unlinks the laptop: the laptop's session is refused — its tokens, a refreshed
    // one, and one the pool issues later (minted here as a pool would, with the same session).
    let r = h
        .request("DELETE", &desk, "/v1/devices/pat-laptop", Value::Null)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.json);
    let mut later = claims(&laptop);
    later["iat"] = json!(now());
    later["exp"] = json!(now() + 600);
    let kid = jsonwebtoken::decode_header(&laptop).unwrap().kid.unwrap();
    let later = h.sign(&kid, later);
    let refreshed_after = refreshed(&laptop_refresh).await;
    for token in [&laptop, &laptop_again, &later, &refreshed_after] {
        let r = h.get(token, "/v1/files").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.json);
        assert_eq!(r.json["error"], "device_revoked", "{}", r.json);
    }
    // Nothing of the laptop's work is lost; the desk and a new sign-in carry on.
    let files = h.get(&desk, "/v1/files").await;
    assert_eq!(files.status, StatusCode::OK, "{}", files.json);
    assert_eq!(
        files.json["files"].as_array().unwrap().len(),
        3,
        "{}",
        files.json
    );
    let (fresh, _) = h.sign_in("pat@example.com").await;
    assert_eq!(h.get(&fresh, "/v1/files").await.status, StatusCode::OK);
    let r = register(&fresh, "pat-laptop").await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a revoked id stays revoked"
    );
    assert_eq!(
        register(&fresh, "pat-laptop-2").await.status,
        StatusCode::NO_CONTENT
    );
}
