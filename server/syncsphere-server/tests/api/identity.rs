//! The built-in identity provider's Cognito API and the token rules every service applies.

use super::*;

pub(super) async fn cognito_api_and_token_rules(db: Option<String>) {
    let h = harness(db).await;
    let (token, refresh) = h.user("bob@example.com").await;

    // JWKS served at {iss}/.well-known/jwks.json, with the kid the tokens carry.
    let jwks = h.get("", &format!("/{POOL}/.well-known/jwks.json")).await;
    assert_eq!(jwks.status, StatusCode::OK);
    let kid = jwks.json["keys"][0]["kid"].as_str().unwrap().to_owned();
    assert_eq!(
        jsonwebtoken::decode_header(&token).unwrap().kid.as_deref(),
        Some(kid.as_str())
    );

    // Cognito's claims.
    let payload = token.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["iss"], format!("{PUBLIC_URL}/{POOL}"));
    assert_eq!(claims["token_use"], "access");
    assert_eq!(claims["client_id"], CLIENT_ID);
    assert_eq!(claims["username"], "bob@example.com");
    assert!(claims["exp"].as_u64().unwrap() > now());

    // Bad input: each a 400 with Cognito's exception name.
    let cases = [
        ("SignUp", json!({"ClientId": CLIENT_ID, "Username": "bob@example.com", "Password": "Password-123"}).to_string(), "UsernameExistsException"),
        ("SignUp", json!({"ClientId": CLIENT_ID, "Username": "new@example.com", "Password": "short"}).to_string(), "InvalidPasswordException"),
        ("SignUp", json!({"ClientId": CLIENT_ID, "Username": "new@example.com", "Password": "        "}).to_string(), "InvalidPasswordException"),
        ("SignUp", json!({"ClientId": CLIENT_ID, "Username": "new@example.com", "Password": "password123"}).to_string(), "InvalidPasswordException"),
        ("SignUp", json!({"ClientId": "wrong", "Username": "x@example.com", "Password": "Password-123"}).to_string(), "ResourceNotFoundException"),
        ("InitiateAuth", json!({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": CLIENT_ID, "AuthParameters": {"USERNAME": "bob@example.com", "PASSWORD": "wrong-password"}}).to_string(), "NotAuthorizedException"),
        ("InitiateAuth", json!({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": CLIENT_ID, "AuthParameters": {"USERNAME": "nobody@example.com", "PASSWORD": "Password-123"}}).to_string(), "NotAuthorizedException"),
        ("InitiateAuth", json!({"AuthFlow": "REFRESH_TOKEN_AUTH", "ClientId": CLIENT_ID, "AuthParameters": {"REFRESH_TOKEN": "forged"}}).to_string(), "NotAuthorizedException"),
        ("InitiateAuth", "{not json".to_owned(), "SerializationException"),
        ("DeleteUserPool", "{}".to_owned(), "UnknownOperationException"),
        ("ForgotPassword", json!({"ClientId": CLIENT_ID, "Username": "bob@example.com"}).to_string(), "InvalidParameterException"),
    ];
    for (op, body, expected) in cases {
        let r = h.cognito(op, &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{op} {body}");
        assert_eq!(r.json["__type"], expected, "{op} {body}: {}", r.json);
        assert!(r.json["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // The failed sign-up created nobody.
    let r = h
        .cognito("InitiateAuth", &json!({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": CLIENT_ID, "AuthParameters": {"USERNAME": "new@example.com", "PASSWORD": "short"}}).to_string())
        .await;
    assert_eq!(r.json["__type"], "NotAuthorizedException");

    // Refresh gives a new working access token.
    let r = h
        .cognito("InitiateAuth", &json!({"AuthFlow": "REFRESH_TOKEN_AUTH", "ClientId": CLIENT_ID, "AuthParameters": {"REFRESH_TOKEN": refresh}}).to_string())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let fresh = r.json["AuthenticationResult"]["AccessToken"]
        .as_str()
        .unwrap();
    assert_eq!(h.get(fresh, "/v1/files").await.status, StatusCode::OK);

    // Token rules: each forged or broken token is a 401 JSON error.
    let sub = claims["sub"].as_str().unwrap();
    let base = json!({"sub": sub, "iss": format!("{PUBLIC_URL}/{POOL}"), "token_use": "access", "client_id": CLIENT_ID, "exp": now() + 600, "username": "bob@example.com"});
    let with = |k: &str, v: Value| {
        let mut c = base.clone();
        c[k] = v;
        c
    };
    assert_eq!(
        h.get(&h.sign(&kid, base.clone()), "/v1/files").await.status,
        StatusCode::OK,
        "control token must pass"
    );
    let bad_tokens = [
        ("expired", h.sign(&kid, with("exp", json!(now() - 120)))),
        (
            "wrong issuer",
            h.sign(
                &kid,
                with(
                    "iss",
                    json!("https://cognito-idp.us-east-1.amazonaws.com/other"),
                ),
            ),
        ),
        (
            "wrong client",
            h.sign(&kid, with("client_id", json!("other-client"))),
        ),
        (
            "wrong token_use",
            h.sign(&kid, with("token_use", json!("refresh"))),
        ),
        (
            "id token for another audience",
            h.sign(&kid, with("token_use", json!("id"))),
        ),
        ("garbage", "not.a.jwt".to_owned()),
        ("tampered", {
            let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
            parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(with("sub", json!("someone-else")).to_string());
            parts.join(".")
        }),
    ];
    for (what, bad) in bad_tokens {
        let r = h.get(&bad, "/v1/files").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(r.json["error"], "unauthorized", "{what}");
    }
    let r = h
        .send(Request::get("/v1/files").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // A verified token is remembered (no second signature check), but never past its expiry,
    // and an altered copy of a remembered token is still refused. This one expires (with the
    // 30 s leeway) about 2 s from now.
    let short = h.sign(&kid, with("exp", json!(now() - 28)));
    assert_eq!(h.get(&short, "/v1/files").await.status, StatusCode::OK);
    assert_eq!(h.get(&short, "/v1/files").await.status, StatusCode::OK);
    let mut altered = short.clone().into_bytes();
    let at = altered.len() - 20; // inside the signature
    altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    assert_eq!(
        h.get(&altered, "/v1/files").await.status,
        StatusCode::UNAUTHORIZED
    );
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let r = h.get(&short, "/v1/files").await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "expired while remembered"
    );

    // ChangePassword: the current password proves it, the new one meets the policy; then the
    // new one signs in and the old one does not.
    let change = |previous: &str, proposed: &str| {
        json!({"AccessToken": token, "PreviousPassword": previous, "ProposedPassword": proposed})
            .to_string()
    };
    let r = h
        .cognito(
            "ChangePassword",
            &change("Wrong-passw0rd", "Newer-passw0rd"),
        )
        .await;
    assert_eq!(r.json["__type"], "NotAuthorizedException", "{}", r.json);
    let r = h
        .cognito("ChangePassword", &change("Password-123", "weak"))
        .await;
    assert_eq!(r.json["__type"], "InvalidPasswordException", "{}", r.json);
    let r = h
        .cognito("ChangePassword", &change("Password-123", "Newer-passw0rd"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let signin = |password: &str| {
        json!({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": CLIENT_ID,
               "AuthParameters": {"USERNAME": "bob@example.com", "PASSWORD": password}})
        .to_string()
    };
    let r = h.cognito("InitiateAuth", &signin("Password-123")).await;
    assert_eq!(
        r.json["__type"], "NotAuthorizedException",
        "the old password: {}",
        r.json
    );
    let r = h.cognito("InitiateAuth", &signin("Newer-passw0rd")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = h
        .cognito("ChangePassword", &change("Newer-passw0rd", "Password-123"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "and back: {}", r.json);

    // RevokeToken ends that refresh token only (an unknown one is no error, RFC 7009).
    let (_, second) = h.sign_in("bob@example.com").await;
    for token in [second.as_str(), "never-issued"] {
        let r = h
            .cognito(
                "RevokeToken",
                &json!({"ClientId": CLIENT_ID, "Token": token}).to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    }
    assert_eq!(
        h.refresh(&second).await.json["__type"],
        "NotAuthorizedException"
    );
    assert_eq!(
        h.refresh(&refresh).await.status,
        StatusCode::OK,
        "the other session stays"
    );
    let r = h
        .cognito(
            "RevokeToken",
            &json!({"ClientId": "other", "Token": refresh}).to_string(),
        )
        .await;
    assert_eq!(r.json["__type"], "ResourceNotFoundException", "{}", r.json);

    // GetUser and GlobalSignOut.
    let r = h
        .cognito("GetUser", &json!({"AccessToken": token}).to_string())
        .await;
    assert_eq!(r.json["Username"], "bob@example.com");
    let r = h
        .cognito("GlobalSignOut", &json!({"AccessToken": token}).to_string())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h
        .cognito("InitiateAuth", &json!({"AuthFlow": "REFRESH_TOKEN_AUTH", "ClientId": CLIENT_ID, "AuthParameters": {"REFRESH_TOKEN": refresh}}).to_string())
        .await;
    assert_eq!(
        r.json["__type"], "NotAuthorizedException",
        "refresh token revoked by GlobalSignOut"
    );
    // Beyond Cognito: the access tokens issued before it are void at once, everywhere — the
    // REST API (`signed_out`), GetUser, and GlobalSignOut itself — not only once they expire.
    for old in [&token, fresh] {
        let r = h.get(old, "/v1/files").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.json);
        assert_eq!(r.json["error"], "signed_out", "{}", r.json);
        let r = h
            .cognito("GetUser", &json!({"AccessToken": old}).to_string())
            .await;
        assert_eq!(r.json["__type"], "NotAuthorizedException", "{}", r.json);
        assert_eq!(r.json["message"], "Access Token has been revoked");
    }
    // A token minted with an earlier `iat` (or none) is refused too; signing in again works
    // at once, in the very second of the sign-out.
    let mut no_iat = base.clone();
    no_iat["exp"] = json!(now() + 600);
    let r = h.get(&h.sign(&kid, no_iat), "/v1/files").await;
    assert_eq!(r.json["error"], "signed_out", "{}", r.json);
    let (again, _) = h.sign_in("bob@example.com").await;
    assert_eq!(h.get(&again, "/v1/files").await.status, StatusCode::OK);
    let r = h
        .cognito("GetUser", &json!({"AccessToken": again}).to_string())
        .await;
    assert_eq!(r.json["Username"], "bob@example.com", "{}", r.json);
}
