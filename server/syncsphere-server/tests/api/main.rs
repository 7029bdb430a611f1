//! Service tests of the assembled server (auth + files + state routers) through
//! `tower::ServiceExt::oneshot`, each run twice: on embedded SQLite with blobs on disk, and on a
//! real PostgreSQL with blobs in a real S3-compatible server (s3s-fs) — the same suite against
//! both metadata stores and both blob stores. Suites that need only the files service are in
//! `server/files/tests/service/`. The suites are by room in the modules below; the helpers
//! they share are here.

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
    harness_with(database_url, |_| {}).await
}

/// [`harness`] with more settings made by `configure`.
async fn harness_with(
    database_url: Option<String>,
    configure: impl FnOnce(&mut AppConfig),
) -> Harness {
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
    if let Some(s3) = s3 {
        config.files.s3 = s3;
    }
    configure(&mut config);
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
        self.cognito_from(op, body, None).await
    }

    /// [`Harness::cognito`] with `X-Forwarded-For: from` (the address a trusted proxy saw).
    async fn cognito_from(&self, op: &str, body: &str, from: Option<&str>) -> Reply {
        let mut req = Request::post("/auth/cognito/");
        if let Some(from) = from {
            req = req.header("x-forwarded-for", format!("198.51.100.99, {from}"));
        }
        self.send(
            req.header("content-type", "application/x-amz-json-1.1")
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
                &json!({"ClientId": CLIENT_ID, "Username": email, "Password": "Password-123"})
                    .to_string(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        self.sign_in(email).await
    }

    /// Signs in (no device); returns (access token, refresh token).
    async fn sign_in(&self, email: &str) -> (String, String) {
        let r = self
            .cognito(
                "InitiateAuth",
                &json!({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": CLIENT_ID,
                        "AuthParameters": {"USERNAME": email, "PASSWORD": "Password-123"}})
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

mod batches;
mod chunks;
mod devices;
mod files;
mod gc;
mod history;
mod identity;
mod mail;
mod srp;
mod throttle;

use batches::{contents_in_one_response, small_contents_inline, uploads_in_one_request};
use chunks::{chunked_uploads_resume_dedup_and_ranges, chunks_sent_with_their_place};
use devices::{
    devices_registration_listing_and_revocation, sessions_are_bound_to_the_device_that_registers,
};
use files::files_commit_rules_and_bad_input;
use gc::{collection_pages_through_large_stores, retention_and_garbage_collection};
use history::revisions_restore_and_trash;
use identity::cognito_api_and_token_rules;
use mail::mailed_codes_confirm_sign_ups_and_reset_passwords;
use srp::srp_sign_in;
use throttle::password_guessing_is_slowed_per_account_and_address;

impl Harness {
    /// Signs in as a device (Cognito `DEVICE_KEY`); returns (access token, refresh token).
    async fn device_sign_in(&self, email: &str, device: &str) -> Reply {
        self.cognito(
            "InitiateAuth",
            &json!({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": CLIENT_ID,
                    "AuthParameters": {"USERNAME": email, "PASSWORD": "Password-123", "DEVICE_KEY": device}})
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

fn sha_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

// Every suite twice: on SQLite with blobs on disk, and on PostgreSQL with blobs in S3.
syncsphere_test_support::on_both_stores! {
    uploads_in_one_request => uploads_in_one_request_on_sqlite, uploads_in_one_request_on_postgres;
    contents_in_one_response => contents_in_one_response_on_sqlite, contents_in_one_response_on_postgres;
    small_contents_inline => small_contents_inline_on_sqlite, small_contents_inline_on_postgres;
    chunks_sent_with_their_place => chunks_sent_with_their_place_on_sqlite, chunks_sent_with_their_place_on_postgres;
    retention_and_garbage_collection => retention_and_garbage_collection_on_sqlite, retention_and_garbage_collection_on_postgres;
    collection_pages_through_large_stores => collection_pages_through_large_stores_on_sqlite, collection_pages_through_large_stores_on_postgres;
    chunked_uploads_resume_dedup_and_ranges => chunked_uploads_resume_dedup_and_ranges_on_sqlite, chunked_uploads_resume_dedup_and_ranges_on_postgres;
    devices_registration_listing_and_revocation => devices_registration_listing_and_revocation_on_sqlite, devices_registration_listing_and_revocation_on_postgres;
    sessions_are_bound_to_the_device_that_registers => sessions_are_bound_to_the_device_that_registers_on_sqlite, sessions_are_bound_to_the_device_that_registers_on_postgres;
    revisions_restore_and_trash => revisions_restore_and_trash_on_sqlite, revisions_restore_and_trash_on_postgres;
    cognito_api_and_token_rules => cognito_api_and_token_rules_on_sqlite, cognito_api_and_token_rules_on_postgres;
    srp_sign_in => srp_sign_in_on_sqlite, srp_sign_in_on_postgres;
    password_guessing_is_slowed_per_account_and_address => password_guessing_is_slowed_per_account_and_address_on_sqlite, password_guessing_is_slowed_per_account_and_address_on_postgres;
    mailed_codes_confirm_sign_ups_and_reset_passwords => mailed_codes_confirm_sign_ups_and_reset_passwords_on_sqlite, mailed_codes_confirm_sign_ups_and_reset_passwords_on_postgres;
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
