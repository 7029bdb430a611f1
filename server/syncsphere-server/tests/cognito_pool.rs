//! AWS mode's identity: the server configured with an Amazon Cognito user pool — here moto's,
//! created through the AWS API in the test — accepts that pool's access tokens and nothing else,
//! and no longer serves the built-in provider. Tokens come from moto's real sign-in
//! (`USER_PASSWORD_AUTH`, `REFRESH_TOKEN_AUTH`) and, for the negative matrix, are minted with
//! the key moto signs with (it ships inside moto; production never trusts it).

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use syncsphere_e2e::cognito::{Pool, call};
use syncsphere_server::{AppConfig, Role, build};
use syncsphere_test_support::Moto;
use tower::ServiceExt;

const PASSWORD: &str = "Correct-horse-9";

/// The pool of these tests: moto's, with a second app client.
struct TestPool {
    pool: Pool,
    other_client: String,
}

async fn create_pool(moto: &Moto) -> TestPool {
    let pool = Pool::create(&moto.url).await;
    let other_client = pool.add_client("another-app").await;
    TestPool { pool, other_client }
}

/// Signs `email` up, confirms it as an administrator, signs in; the AuthenticationResult.
async fn sign_up_and_in(pool: &Pool, email: &str) -> Value {
    let moto = &pool.moto_url;
    call(
        moto,
        "SignUp",
        json!({"ClientId": pool.client_id, "Username": email, "Password": PASSWORD,
               "UserAttributes": [{"Name": "email", "Value": email}]}),
    )
    .await;
    call(
        moto,
        "AdminConfirmSignUp",
        json!({"UserPoolId": pool.id, "Username": email}),
    )
    .await;
    call(
        moto,
        "InitiateAuth",
        json!({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": pool.client_id,
               "AuthParameters": {"USERNAME": email, "PASSWORD": PASSWORD}}),
    )
    .await["AuthenticationResult"]
        .clone()
}

fn config_for(dir: &std::path::Path, pool: &Pool) -> AppConfig {
    let mut config = AppConfig::embedded(dir.to_path_buf(), "http://127.0.0.1:9".into());
    config.pool.cognito_user_pool_id = Some(pool.id.clone());
    config.pool.cognito_client_ids = vec![pool.client_id.clone()];
    config.pool.cognito_jwks_url = Some(pool.jwks_url());
    config.pool.cognito_endpoint = Some(pool.moto_url.clone());
    config
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn get(app: &Router, token: &str, uri: &str) -> (StatusCode, Value) {
    send(
        app,
        Request::get(uri)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn the_pools_access_tokens_work_and_nothing_else_does() {
    let Some(moto) = syncsphere_test_support::moto() else {
        return;
    };
    let TestPool { pool, other_client } = create_pool(&moto).await;
    let dir = tempfile::tempdir().unwrap();
    let app = build(&config_for(dir.path(), &pool)).await.unwrap().router;

    // Clients are sent to the pool, not to a built-in provider (which is not served).
    let (status, config) = send(
        &app,
        Request::get("/v1/config").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        config["cognito"],
        json!({"endpoint": moto.url, "region": "us-east-1", "user_pool_id": pool.id,
               "client_id": pool.client_id, "device_keys": false,
               "auth_flow": "USER_SRP_AUTH"})
    );
    let (status, _) = send(
        &app,
        Request::post("/auth/cognito/")
            .header("content-type", "application/x-amz-json-1.1")
            .header(
                "x-amz-target",
                "AWSCognitoIdentityProviderService.InitiateAuth",
            )
            .body(Body::from("{}"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "built-in provider is off");

    // A real sign-in at the pool: the access token reads and writes files.
    let result = sign_up_and_in(&pool, "ada@example.com").await;
    let access = result["AccessToken"].as_str().unwrap();
    let claims = claims_of(access);
    assert_eq!(
        claims["iss"],
        format!("https://cognito-idp.us-east-1.amazonaws.com/{}", pool.id)
    );
    let (status, body) = send(
        &app,
        Request::put("/v1/files/content?path=hello.txt")
            .header("authorization", format!("Bearer {access}"))
            .header("x-syncsphere-device", "laptop")
            .body(Body::from("hello from a Cognito user"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, listing) = get(&app, access, "/v1/files").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listing["files"][0]["path"], "hello.txt", "{listing}");

    // Refreshing at the pool gives a token that works too, for the same user.
    let refreshed = call(
        &moto.url,
        "InitiateAuth",
        json!({"AuthFlow": "REFRESH_TOKEN_AUTH", "ClientId": pool.client_id,
               "AuthParameters": {"REFRESH_TOKEN": result["RefreshToken"]}}),
    )
    .await;
    let fresh = refreshed["AuthenticationResult"]["AccessToken"]
        .as_str()
        .unwrap();
    assert_eq!(claims_of(fresh)["sub"], claims["sub"]);
    let (status, listing) = get(&app, fresh, "/v1/files").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listing["files"].as_array().unwrap().len(), 1);

    // The pool's real ID token is refused: only access tokens act on the API.
    let (status, body) = get(&app, result["IdToken"].as_str().unwrap(), "/v1/files").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "ID token: {body}");

    // A real token of another app client of the same pool is refused.
    let other = call(
        &moto.url,
        "InitiateAuth",
        json!({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": other_client,
               "AuthParameters": {"USERNAME": "ada@example.com", "PASSWORD": PASSWORD}}),
    )
    .await;
    let (status, _) = get(
        &app,
        other["AuthenticationResult"]["AccessToken"]
            .as_str()
            .unwrap(),
        "/v1/files",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "another app client");

    // The negative matrix, with tokens minted by moto's own key (kid `dummy`).
    let key = EncodingKey::from_rsa_pem(&moto.signing_key_pem).unwrap();
    let mint = |kid: &str, claims: &Value| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    };
    let base = json!({"sub": claims["sub"], "iss": claims["iss"], "token_use": "access",
                      "client_id": pool.client_id, "username": claims["username"],
                      "iat": now(), "exp": now() + 600});
    let with = |k: &str, v: Value| {
        let mut c = base.clone();
        c[k] = v;
        c
    };
    let (status, _) = get(&app, &mint("dummy", &base), "/v1/files").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "control: minted like the pool's own"
    );
    let unsigned = {
        let enc =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            enc(&json!({"alg": "none", "kid": "dummy"})),
            enc(&base)
        )
    };
    let hs256 = {
        // Algorithm confusion: an HMAC "signed" with the pool's public key as the secret.
        let jwks: Value = reqwest::get(pool.jwks_url())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("dummy".into());
        let secret = jwks["keys"][0]["n"].as_str().unwrap().as_bytes().to_vec();
        jsonwebtoken::encode(&header, &base, &EncodingKey::from_secret(&secret)).unwrap()
    };
    let bad = [
        ("expired", mint("dummy", &with("exp", json!(now() - 120)))),
        (
            "not yet valid",
            mint("dummy", &with("nbf", json!(now() + 600))),
        ),
        (
            "another app client",
            mint("dummy", &with("client_id", json!(other_client))),
        ),
        ("no client", mint("dummy", &with("client_id", Value::Null))),
        (
            "another pool",
            mint(
                "dummy",
                &with(
                    "iss",
                    json!("https://cognito-idp.us-east-1.amazonaws.com/us-east-1_other"),
                ),
            ),
        ),
        ("ID token", {
            let mut c = with("token_use", json!("id"));
            c["aud"] = json!(pool.client_id);
            mint("dummy", &c)
        }),
        (
            "refresh token_use",
            mint("dummy", &with("token_use", json!("refresh"))),
        ),
        ("unknown kid", mint("rotated-away", &base)),
        ("alg none", unsigned),
        ("HS256 with the public key", hs256),
    ];
    for (what, token) in bad {
        let (status, body) = get(&app, &token, "/v1/files").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body["error"], "unauthorized", "{what}");
    }
}

/// The state role verifies the pool's tokens too (keys from the pool's JWKS over HTTP).
#[tokio::test]
async fn the_state_role_takes_the_pool_instead_of_an_issuer() {
    let (Some(moto), Some(redis)) = (
        syncsphere_test_support::moto(),
        syncsphere_test_support::redis_url(),
    ) else {
        return;
    };
    let TestPool { pool, other_client } = create_pool(&moto).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(dir.path(), &pool);
    config.server.role = Role::State;
    config.server.redis_url = Some(redis);
    let app = build(&config).await.unwrap().router;
    let access = sign_up_and_in(&pool, "grace@example.com").await["AccessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    // The token is checked before the upgrade: a valid one gets as far as the missing
    // handshake (400/426), one of another client is 401.
    let (status, body) = get(&app, &access, "/v1/ws").await;
    assert!(
        [StatusCode::BAD_REQUEST, StatusCode::UPGRADE_REQUIRED].contains(&status),
        "{status} {body}"
    );
    let key = EncodingKey::from_rsa_pem(&moto.signing_key_pem).unwrap();
    let mut claims = claims_of(&access);
    claims["client_id"] = json!(other_client);
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("dummy".into());
    let other = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    let (status, _) = get(&app, &other, "/v1/ws").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
