//! The files router on a fresh metadata database and blob store, and requests to it.

use std::sync::Arc;
use syncsphere_protocol::UserId;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use syncsphere_auth::idp::{IdentityProvider, IdpConfig};
use syncsphere_db::Db;
use syncsphere_events::{Event, Publisher};
use syncsphere_files::inline::{DEFAULT_INLINE_MAX_BYTES, InlineBlobStore};
use syncsphere_files::s3::{S3BlobStore, S3Config};
use syncsphere_files::store::staged::StagedPolicy;
use syncsphere_files::{BlobStore, DiskBlobStore, FilesState, MetadataStore, PendingPuts, Staging};
use tower::ServiceExt;

const CLIENT_ID: &str = "test-client";
const PASSWORD: &str = "Password-123";

pub(crate) struct Harness {
    app: Router,
    idp: Arc<IdentityProvider>,
    /// The service's metadata store, blob store and staging area (for the collector).
    pub(crate) store: MetadataStore,
    pub(crate) blobs: Arc<dyn BlobStore>,
    pub(crate) staging: Arc<Staging>,
    _dir: tempfile::TempDir,
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: axum::http::HeaderMap,
    pub(crate) json: Value,
    pub(crate) bytes: bytes::Bytes,
}

/// Committed changes go nowhere: pushes are the state service's, not under test here.
struct NoPush;

impl Publisher for NoPush {
    fn publish(&self, _: &UserId, _: Event) {}
}

pub(crate) async fn harness(database_url: Option<String>) -> Harness {
    harness_with_quota(database_url, None).await
}

/// PostgreSQL runs pair with S3 (when the test S3 server is set), each harness under its own
/// key prefix; SQLite runs keep blobs on disk. Small contents live inline, as in the server.
pub(crate) async fn harness_with_quota(
    database_url: Option<String>,
    quota_bytes: Option<i64>,
) -> Harness {
    harness_with(database_url, quota_bytes, StagedPolicy::default()).await
}

/// With a quota and a policy for uploaded, uncommitted chunks.
pub(crate) async fn harness_with(
    database_url: Option<String>,
    quota_bytes: Option<i64>,
    staged: StagedPolicy,
) -> Harness {
    harness_full(database_url, quota_bytes, staged, DEFAULT_GRACE).await
}

/// The collector's default grace period (a day), as the service is told it.
const DEFAULT_GRACE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// With the collector's grace period as the service is told it: blobs older than half of it
/// are re-checked by commits under the collector's lock (`Duration::ZERO`: all of them).
pub(crate) async fn harness_with_grace(
    database_url: Option<String>,
    gc_grace: std::time::Duration,
) -> Harness {
    harness_full(database_url, None, StagedPolicy::default(), gc_grace).await
}

async fn harness_full(
    database_url: Option<String>,
    quota_bytes: Option<i64>,
    staged: StagedPolicy,
    gc_grace: std::time::Duration,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let db = match &database_url {
        Some(url) => Db::connect(url).await.unwrap(),
        None => Db::open_embedded(dir.path()).await.unwrap(),
    };
    let s3 = database_url
        .as_ref()
        .and_then(|_| syncsphere_test_support::s3_settings());
    let (blobs, staging): (Arc<dyn BlobStore>, Staging) = match s3 {
        Some(s3) => {
            let store = S3BlobStore::connect(&S3Config {
                bucket: s3.bucket,
                region: "us-east-1".into(),
                endpoint: Some(s3.endpoint),
                path_style: true,
                prefix: format!("files-test-{}/", uuid::Uuid::new_v4().simple()),
                access_key: Some(s3.access_key),
                secret_key: Some(s3.secret_key),
            })
            .await
            .unwrap();
            let staging = Staging::open(dir.path().join("staging")).unwrap();
            (Arc::new(store), staging)
        }
        None => {
            let (disk, staging) = DiskBlobStore::open(dir.path().join("blobs")).unwrap();
            (Arc::new(disk), staging)
        }
    };
    let blobs: Arc<dyn BlobStore> = Arc::new(InlineBlobStore::new(db.clone(), blobs));
    let idp = IdentityProvider::open(
        IdpConfig {
            public_url: "http://127.0.0.1:9".into(),
            region: "local-1".into(),
            user_pool_id: "local_test".into(),
            client_id: CLIENT_ID.into(),
            access_token_ttl_secs: 3600,
            refresh_token_ttl_secs: 3600,
            password_policy: Default::default(),
            mail: None,
            client_address_header: None,
        },
        db.clone(),
        &dir.path().join("idp-signing-key.pem"),
        Arc::new(NoPush),
    )
    .unwrap();
    let store = MetadataStore::new(db)
        .with_quota(quota_bytes)
        .with_staged_policy(staged);
    store.upgrade_path_keys().await.unwrap();
    let staging = Arc::new(staging);
    let app = syncsphere_files::router(FilesState {
        store: store.clone(),
        blobs: blobs.clone(),
        staging: staging.clone(),
        inline_max: DEFAULT_INLINE_MAX_BYTES,
        pending: Arc::new(PendingPuts::new(blobs.clone())),
        running: Arc::default(),
        events: Arc::new(NoPush),
        verifier: Arc::new(idp.verifier()),
        gc_lock: Arc::default(),
        gc_grace,
        devices: None,
    });
    Harness {
        app,
        idp,
        store,
        blobs,
        staging,
        _dir: dir,
    }
}

impl Harness {
    pub(crate) async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            json,
            bytes,
        }
    }

    /// Signs up and in; returns (access token, refresh token).
    pub(crate) async fn user(&self, email: &str) -> (String, String) {
        self.idp
            .sign_up(CLIENT_ID, email, PASSWORD, Some(email))
            .await
            .unwrap();
        let result = self
            .idp
            .password_auth(CLIENT_ID, (email, PASSWORD), None, None)
            .await
            .unwrap();
        (
            result.access_token,
            result.refresh_token.unwrap_or_default(),
        )
    }

    /// `PUT /v1/files/content?{query}` with `body`.
    pub(crate) async fn put(&self, token: &str, query: &str, body: &'static [u8]) -> Reply {
        self.send(
            Request::put(format!("/v1/files/content?{query}"))
                .header("authorization", format!("Bearer {token}"))
                .header("x-syncsphere-device", "dev-1")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    /// `PUT /v1/chunks/{sha256 of body}` with its `Content-Length`.
    pub(crate) async fn put_chunk(&self, token: &str, body: &[u8]) -> Reply {
        self.send(
            Request::put(format!("/v1/chunks/{}", sha_hex(body)))
                .header("authorization", format!("Bearer {token}"))
                .header("content-length", body.len())
                .body(Body::from(body.to_vec()))
                .unwrap(),
        )
        .await
    }

    pub(crate) async fn get(&self, token: &str, uri: &str) -> Reply {
        self.send(
            Request::get(uri)
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    pub(crate) async fn request(&self, method: &str, token: &str, uri: &str, body: Value) -> Reply {
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

    /// `POST /v1/files/{id}/restore`.
    pub(crate) async fn restore(
        &self,
        token: &str,
        file_id: &str,
        rev: i64,
        parent_rev: i64,
    ) -> Reply {
        self.request(
            "POST",
            token,
            &format!("/v1/files/{file_id}/restore"),
            serde_json::json!({"rev": rev, "parent_rev": parent_rev}),
        )
        .await
    }

    /// `POST /v1/files/{id}/move`.
    pub(crate) async fn move_file(
        &self,
        token: &str,
        file_id: &str,
        new_path: &str,
        parent_rev: i64,
    ) -> Reply {
        self.request(
            "POST",
            token,
            &format!("/v1/files/{file_id}/move"),
            serde_json::json!({"new_path": new_path, "parent_rev": parent_rev}),
        )
        .await
    }
}

pub(crate) fn sha_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

pub(crate) fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
