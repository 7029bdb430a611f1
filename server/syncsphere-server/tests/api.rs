//! Service tests of the assembled server (auth + files + state routers) through
//! `tower::ServiceExt::oneshot`, each run twice: on embedded SQLite with blobs on disk, and on a
//! real PostgreSQL with blobs in a real S3-compatible server (s3s-fs) — the same suite against
//! both metadata stores and both blob stores. Suites that need only the files service are in
//! `server/files/tests/service/`.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use syncsphere_e2e::noise;
use syncsphere_server::{AppConfig, build};
use tower::ServiceExt;

const CLIENT_ID: &str = "test-client";
const POOL: &str = "local_test";
const PUBLIC_URL: &str = "http://127.0.0.1:9";

struct Harness {
    app: Router,
    maintenance: syncsphere_server::Maintenance,
    dir: tempfile::TempDir,
    /// The metadata database, for tests that look at what the server stored.
    database_url: String,
}

async fn harness(database_url: Option<String>) -> Harness {
    harness_with_quota(database_url, None).await
}

async fn harness_with_quota(database_url: Option<String>, quota_bytes: Option<i64>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    // PostgreSQL runs pair with S3; each harness gets its own key prefix, so one test's garbage
    // collection never sees another test's blobs.
    let s3 = database_url
        .as_ref()
        .and_then(|_| syncsphere_test_support::s3_settings())
        .map(|s3| syncsphere_server::S3Args {
            s3_bucket: Some(s3.bucket),
            s3_region: "us-east-1".into(),
            s3_endpoint: Some(s3.endpoint),
            s3_path_style: true,
            s3_prefix: format!("test-{}/", uuid_like()),
            s3_credentials: Some((s3.access_key, s3.secret_key)),
        });
    let db_url = database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("metadata.db").display()));
    let mut config = AppConfig::embedded(dir.path().to_path_buf(), PUBLIC_URL.into());
    config.server.database_url = database_url;
    config.idp.user_pool_id = POOL.into();
    config.idp.client_id = CLIENT_ID.into();
    config.files.quota_bytes = quota_bytes;
    if let Some(s3) = s3 {
        config.files.s3 = s3;
    }
    let app = build(&config).await.unwrap();
    Harness {
        app: app.router,
        maintenance: app.maintenance.expect("the all role has a file store"),
        dir,
        database_url: db_url,
    }
}

struct Reply {
    status: StatusCode,
    json: Value,
    bytes: Vec<u8>,
}

impl Harness {
    async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            json,
            bytes,
        }
    }

    async fn cognito(&self, op: &str, body: &str) -> Reply {
        self.send(
            Request::post("/auth/cognito/")
                .header("content-type", "application/x-amz-json-1.1")
                .header(
                    "x-amz-target",
                    format!("AWSCognitoIdentityProviderService.{op}"),
                )
                .body(Body::from(body.to_owned()))
                .unwrap(),
        )
        .await
    }

    /// Signs up and in; returns (access token, refresh token).
    async fn user(&self, email: &str) -> (String, String) {
        let r = self
            .cognito(
                "SignUp",
                &json!({"ClientId": CLIENT_ID, "Username": email, "Password": "password123"})
                    .to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        let r = self
            .cognito(
                "InitiateAuth",
                &json!({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": CLIENT_ID,
                        "AuthParameters": {"USERNAME": email, "PASSWORD": "password123"}})
                .to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        let result = &r.json["AuthenticationResult"];
        (
            result["AccessToken"].as_str().unwrap().to_owned(),
            result["RefreshToken"].as_str().unwrap().to_owned(),
        )
    }

    async fn put(&self, token: &str, query: &str, body: &'static [u8]) -> Reply {
        self.send(
            Request::put(format!("/v1/files/content?{query}"))
                .header("authorization", format!("Bearer {token}"))
                .header("x-syncsphere-device", "dev-1")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    /// `PUT /v1/chunks/{id}` with `body`.
    async fn put_chunk(&self, token: &str, id: &str, body: Vec<u8>) -> Reply {
        self.send(
            Request::put(format!("/v1/chunks/{id}"))
                .header("authorization", format!("Bearer {token}"))
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    /// `PUT /v1/chunks/{id}` with the content and offset headers (or only one of them).
    async fn put_placed_chunk(
        &self,
        token: &str,
        id: &str,
        content: Option<&str>,
        offset: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        let mut req = Request::put(format!("/v1/chunks/{id}"))
            .header("authorization", format!("Bearer {token}"));
        if let Some(content) = content {
            req = req.header("x-syncsphere-content", content);
        }
        if let Some(offset) = offset {
            req = req.header("x-syncsphere-offset", offset);
        }
        self.send(req.body(Body::from(body)).unwrap()).await
    }

    async fn get(&self, token: &str, uri: &str) -> Reply {
        self.send(
            Request::get(uri)
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// Signs claims with the server's own key (to forge expired or mis-addressed tokens).
    fn sign(&self, kid: &str, claims: Value) -> String {
        let pem = std::fs::read(self.dir.path().join("idp-signing-key.pem")).unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
        )
        .unwrap()
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        now(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn cognito_api_and_token_rules(db: Option<String>) {
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
        ("SignUp", json!({"ClientId": CLIENT_ID, "Username": "bob@example.com", "Password": "password123"}).to_string(), "UsernameExistsException"),
        ("SignUp", json!({"ClientId": CLIENT_ID, "Username": "new@example.com", "Password": "short"}).to_string(), "InvalidPasswordException"),
        ("SignUp", json!({"ClientId": "wrong", "Username": "x@example.com", "Password": "password123"}).to_string(), "ResourceNotFoundException"),
        ("InitiateAuth", json!({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": CLIENT_ID, "AuthParameters": {"USERNAME": "bob@example.com", "PASSWORD": "wrong-password"}}).to_string(), "NotAuthorizedException"),
        ("InitiateAuth", json!({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": CLIENT_ID, "AuthParameters": {"USERNAME": "nobody@example.com", "PASSWORD": "password123"}}).to_string(), "NotAuthorizedException"),
        ("InitiateAuth", json!({"AuthFlow": "REFRESH_TOKEN_AUTH", "ClientId": CLIENT_ID, "AuthParameters": {"REFRESH_TOKEN": "forged"}}).to_string(), "NotAuthorizedException"),
        ("InitiateAuth", "{not json".to_owned(), "SerializationException"),
        ("DeleteUserPool", "{}".to_owned(), "UnknownOperationException"),
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
}

async fn files_commit_rules_and_bad_input(db: Option<String>) {
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

async fn revisions_restore_and_trash(db: Option<String>) {
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

impl Harness {
    /// Signs in as a device (Cognito `DEVICE_KEY`); returns (access token, refresh token).
    async fn device_sign_in(&self, email: &str, device: &str) -> Reply {
        self.cognito(
            "InitiateAuth",
            &json!({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": CLIENT_ID,
                    "AuthParameters": {"USERNAME": email, "PASSWORD": "password123", "DEVICE_KEY": device}})
            .to_string(),
        )
        .await
    }

    async fn device_tokens(&self, email: &str, device: &str) -> (String, String) {
        let r = self.device_sign_in(email, device).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        let result = &r.json["AuthenticationResult"];
        (
            result["AccessToken"].as_str().unwrap().to_owned(),
            result["RefreshToken"].as_str().unwrap().to_owned(),
        )
    }

    async fn refresh(&self, refresh: &str) -> Reply {
        self.cognito(
            "InitiateAuth",
            &json!({"AuthFlow": "REFRESH_TOKEN_AUTH", "ClientId": CLIENT_ID, "AuthParameters": {"REFRESH_TOKEN": refresh}})
                .to_string(),
        )
        .await
    }

    async fn request(&self, method: &str, token: &str, uri: &str, body: Value) -> Reply {
        self.send(
            Request::builder()
                .method(method)
                .uri(uri)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }
}

fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

async fn devices_registration_listing_and_revocation(db: Option<String>) {
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
}

fn sha_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

async fn chunked_uploads_resume_dedup_and_ranges(db: Option<String>) {
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

/// Retention purges old revisions and old trash; the collector deletes what nothing refers to
/// (after the grace period, which asking about a chunk restarts) and the check stays clean.
async fn retention_and_garbage_collection(db: Option<String>) {
    use std::time::{Duration, SystemTime};
    use syncsphere_files::gc::{GcPolicy, check, collect};
    let h = harness(db).await;
    let m = h.maintenance.clone();
    let (t, _) = h.user("gc@example.com").await;
    let keep_all = GcPolicy {
        retention: Duration::from_secs(30 * 24 * 3600),
        grace: Duration::from_secs(3600),
    };
    // History: f has three revisions, g is in the trash, h is a chunked file.
    let f = h.put(&t, "path=f.txt", b"v1").await.json;
    let id = f["file_id"].as_str().unwrap().to_owned();
    h.put(&t, "path=f.txt&parent_rev=1", b"v2").await;
    h.put(&t, "path=f.txt&parent_rev=2", b"v3").await;
    let g = h.put(&t, "path=g.txt", b"trash me").await.json;
    let r = h
        .request(
            "DELETE",
            &t,
            &format!("/v1/files/{}?parent_rev=1", g["file_id"].as_str().unwrap()),
            Value::Null,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let pieces: Vec<Vec<u8>> = (0..3).map(|i| noise(64 * 1024, 101 + 2 * i)).collect();
    let whole: Vec<u8> = pieces.concat();
    for p in &pieces {
        let r = h.put_chunk(&t, &sha_hex(p), p.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let refs: Vec<Value> = pieces
        .iter()
        .map(|p| json!({"sha256": sha_hex(p), "size": p.len()}))
        .collect();
    let hfile = h
        .request("POST", &t, "/v1/files/commit", json!({"path": "h.bin", "size": whole.len(), "sha256": sha_hex(&whole), "chunks": refs}))
        .await;
    assert_eq!(hfile.status, StatusCode::OK, "{}", hfile.json);
    // Two orphan chunks of interrupted uploads.
    let orphans: Vec<Vec<u8>> = vec![noise(1000, 7), noise(1000, 8)];
    for o in &orphans {
        let r = h.put_chunk(&t, &sha_hex(o), o.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    // A chunk is acknowledged before it is durable; asking about it waits until it is stored.
    let stored = h
        .request(
            "POST",
            &t,
            "/v1/chunks/missing",
            json!({"chunks": orphans.iter().map(|o| sha_hex(o)).collect::<Vec<_>>()}),
        )
        .await;
    assert_eq!(stored.json["missing"], json!([]), "{}", stored.json);
    let user = claims(&t)["sub"].as_str().unwrap().to_owned();
    let on_disk = m.blobs.touch_extends_grace();
    let exists = |sha: String| {
        let (blobs, user) = (m.blobs.clone(), user.clone());
        async move { blobs.stat(&user, &sha).await.unwrap().is_some() }
    };
    // Disk blobs can be aged by their modification time; S3 objects cannot, so there the
    // "aged" passes use a zero grace period instead.
    let age = |sha: &str| {
        if on_disk {
            let path = h
                .dir
                .path()
                .join("blobs")
                .join(&user)
                .join(&sha[..2])
                .join(sha);
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(SystemTime::now() - Duration::from_secs(7200))
                .unwrap();
        }
    };
    let aged = if on_disk {
        keep_all
    } else {
        GcPolicy {
            grace: Duration::ZERO,
            ..keep_all
        }
    };

    // Within the grace period nothing goes, and the store checks clean.
    let report = collect(&m.store, &m.blobs, &m.staging, &m.lock, keep_all)
        .await
        .unwrap();
    assert_eq!(report.blobs_deleted, 0, "{report:?}");
    assert_eq!(report.revisions_purged, 0);
    let checked = check(&m.store, &m.blobs).await.unwrap();
    assert!(checked.problems.is_empty(), "{checked:?}");
    assert_eq!(
        checked.revisions_checked, 5,
        "f×3, g before its deletion, h"
    );

    // Both orphans age past the grace period; a client then asks about one of them (resuming
    // its upload): on disk that restarts its grace period and it survives (S3 cannot, and the
    // client re-sends it at commit). Kept content never goes.
    for o in &orphans {
        age(&sha_hex(o));
    }
    for p in &pieces {
        age(&sha_hex(p));
    }
    let asked = h
        .request(
            "POST",
            &t,
            "/v1/chunks/missing",
            json!({"chunks": [sha_hex(&orphans[0])]}),
        )
        .await;
    assert_eq!(asked.json["missing"], json!([]));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let report = collect(&m.store, &m.blobs, &m.staging, &m.lock, aged)
        .await
        .unwrap();
    assert_eq!(
        report.blobs_deleted,
        if on_disk { 1 } else { 2 },
        "{report:?}"
    );
    assert_eq!(exists(sha_hex(&orphans[0])).await, on_disk);
    assert!(!exists(sha_hex(&orphans[1])).await);
    for p in &pieces {
        assert!(
            exists(sha_hex(p)).await,
            "a chunk of a kept file was collected"
        );
    }
    let got = h
        .get(
            &t,
            &format!(
                "/v1/files/{}/content",
                hfile.json["file_id"].as_str().unwrap()
            ),
        )
        .await;
    assert!(got.bytes == whole);

    // Retention 0: old revisions and the trash go, the current revisions stay.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let purge = GcPolicy {
        retention: Duration::ZERO,
        grace: Duration::ZERO,
    };
    let report = collect(&m.store, &m.blobs, &m.staging, &m.lock, purge)
        .await
        .unwrap();
    assert_eq!(
        report.revisions_purged, 4,
        "f v1+v2, g's two revisions: {report:?}"
    );
    assert_eq!(report.files_purged, 1);
    assert!(
        report.blobs_deleted >= 3,
        "v1, v2 and g's content: {report:?}"
    );
    for gone in [b"v1".as_slice(), b"v2", b"trash me"] {
        assert!(!exists(sha_hex(gone)).await);
    }
    let revs = h.get(&t, &format!("/v1/files/{id}/revisions")).await.json;
    assert_eq!(revs["revisions"].as_array().unwrap().len(), 1, "{revs}");
    assert_eq!(h.get(&t, "/v1/trash").await.json["files"], json!([]));
    let cur = h.get(&t, &format!("/v1/files/{id}/content")).await;
    assert_eq!(cur.bytes, b"v3");
    let checked = check(&m.store, &m.blobs).await.unwrap();
    assert!(checked.problems.is_empty(), "{checked:?}");
    assert_eq!(checked.revisions_checked, 2);

    // Deleting the chunked file and purging it removes its manifest and chunks.
    let r = h
        .request(
            "DELETE",
            &t,
            &format!(
                "/v1/files/{}?parent_rev=1",
                hfile.json["file_id"].as_str().unwrap()
            ),
            Value::Null,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let report = collect(&m.store, &m.blobs, &m.staging, &m.lock, purge)
        .await
        .unwrap();
    assert_eq!(report.manifests_purged, 1, "{report:?}");
    for p in &pieces {
        assert!(!exists(sha_hex(p)).await);
    }
    // A damaged store is reported: remove the current content of f.
    m.blobs.delete(&user, &sha_hex(b"v3")).await.unwrap();
    let checked = check(&m.store, &m.blobs).await.unwrap();
    assert_eq!(checked.problems.len(), 1, "{checked:?}");
    assert!(checked.problems[0].3.contains("missing"));
}

/// Small contents uploaded in one request live in the metadata database, committed with their
/// revision; larger ones (also when the request does not say its length) go to the blob store.
/// Both read back whole and by range, and a content committed twice is stored once.
async fn small_contents_inline(db: Option<String>) {
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

/// Chunks sent with `x-syncsphere-content`/`x-syncsphere-offset` (in any order) commit like
/// any others; what the headers claim never replaces the check of the committed hash; bad
/// header values are refused before anything is stored.
async fn chunks_sent_with_their_place(db: Option<String>) {
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

/// Splits a `POST /v1/files/contents` body into its frames: (header, content).
fn frames(mut body: &[u8]) -> Vec<(Value, Vec<u8>)> {
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

async fn contents_in_one_response(db: Option<String>) {
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

fn upload_body(files: &[Sent<'_>]) -> Vec<u8> {
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

async fn uploads_in_one_request(db: Option<String>) {
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

// Every suite twice: on SQLite with blobs on disk, and on PostgreSQL with blobs in S3.
syncsphere_test_support::on_both_stores! {
    uploads_in_one_request => uploads_in_one_request_on_sqlite, uploads_in_one_request_on_postgres;
    contents_in_one_response => contents_in_one_response_on_sqlite, contents_in_one_response_on_postgres;
    small_contents_inline => small_contents_inline_on_sqlite, small_contents_inline_on_postgres;
    chunks_sent_with_their_place => chunks_sent_with_their_place_on_sqlite, chunks_sent_with_their_place_on_postgres;
    retention_and_garbage_collection => retention_and_garbage_collection_on_sqlite, retention_and_garbage_collection_on_postgres;
    chunked_uploads_resume_dedup_and_ranges => chunked_uploads_resume_dedup_and_ranges_on_sqlite, chunked_uploads_resume_dedup_and_ranges_on_postgres;
    devices_registration_listing_and_revocation => devices_registration_listing_and_revocation_on_sqlite, devices_registration_listing_and_revocation_on_postgres;
    revisions_restore_and_trash => revisions_restore_and_trash_on_sqlite, revisions_restore_and_trash_on_postgres;
    cognito_api_and_token_rules => cognito_api_and_token_rules_on_sqlite, cognito_api_and_token_rules_on_postgres;
    files_commit_rules_and_bad_input => files_commit_rules_and_bad_input_on_sqlite, files_commit_rules_and_bad_input_on_postgres;
}

/// The S3 server checks signatures: wrong credentials stop the server at start with a clear
/// error instead of failing uploads later.
#[tokio::test]
async fn s3_with_wrong_credentials_is_refused_at_start() {
    let Some(syncsphere_test_support::S3Settings {
        endpoint,
        bucket,
        access_key,
        ..
    }) = syncsphere_test_support::s3_settings()
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s3 = |bucket: String, secret: &str| syncsphere_server::S3Args {
        s3_bucket: Some(bucket),
        s3_region: "us-east-1".into(),
        s3_endpoint: Some(endpoint.clone()),
        s3_path_style: true,
        s3_prefix: String::new(),
        s3_credentials: Some((access_key.clone(), secret.into())),
    };
    for (s3, what) in [
        (s3(bucket.clone(), "not-the-secret"), "wrong secret"),
        (s3("no-such-bucket".into(), "x"), "unknown bucket"),
    ] {
        let mut config = AppConfig::embedded(dir.path().to_path_buf(), PUBLIC_URL.into());
        config.files.s3 = s3;
        let err = build(&config)
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: the server started"));
        let text = format!("{err:#}");
        assert!(text.contains("S3 bucket"), "{what}: {text}");
    }
}
