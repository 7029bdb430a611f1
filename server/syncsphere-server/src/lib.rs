//! Assembly of the SyncSphere services into one application, shared by the `syncsphere-server`
//! binary and the service-level tests.
//!
//! Roles: `all` (default: auth + files + state in one process, changes handed to the push hub
//! in-process, or through Redis when `redis_url` is set so the instance can join a cluster),
//! `files` (identity provider + File service; publishes changes to Redis) and `state` (push
//! WebSockets only; verifies tokens against the issuer's JWKS over HTTP and subscribes to Redis).
//! [`transport::serve`] puts the assembled router on a TCP listener, with its limits.

mod json_errors;
pub mod transport;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::Router;
use axum::routing::get;
pub use json_errors::NO_ROUTE;
use syncsphere_auth::devices::{DeviceRegistry, DevicesState};
use syncsphere_auth::idp::{IdentityProvider, IdpConfig, cognito_api};
use syncsphere_auth::{JwksSource, Verifier};
use syncsphere_db::Db;
use syncsphere_events::redis::{RedisPublisher, RedisRevocations, RedisSubscriber};
use syncsphere_events::{LocalBus, Presence, Publisher, Subscriber};
use syncsphere_files::gc::{GcLock, GcPolicy};
use syncsphere_files::inline::InlineBlobStore;
use syncsphere_files::s3::S3BlobStore;
pub use syncsphere_files::s3::S3Config;
use syncsphere_files::{BlobStore, DiskBlobStore, FilesState, MetadataStore, PendingPuts, Staging};
use syncsphere_protocol::{CognitoConfig, ServerConfig};
use syncsphere_state::{PushHub, StateService, WsTimeouts};
use tower_http::trace::TraceLayer;

/// Which services this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    All,
    Files,
    State,
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(Role::All),
            "files" => Ok(Role::Files),
            "state" => Ok(Role::State),
            other => Err(format!(
                "unknown role '{other}' (expected all, files or state)"
            )),
        }
    }
}

/// Settings of the server.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub role: Role,
    pub data_dir: PathBuf,
    /// `postgres://…`; `None` means embedded SQLite in `data_dir`.
    pub database_url: Option<String>,
    pub public_url: String,
    pub user_pool_id: String,
    pub client_id: String,
    pub region: String,
    pub access_token_ttl: u64,
    pub refresh_token_ttl: u64,
    /// Simultaneous WebSocket connections allowed per user.
    pub max_connections_per_user: usize,
    /// How long a push socket's write and close handshake may take.
    pub ws_timeouts: WsTimeouts,
    /// `redis://…` for cross-instance fan-out (required by the `files` and `state` roles).
    pub redis_url: Option<String>,
    /// `state` role: the token issuer (`{files public URL}/{pool id}` or a Cognito pool URL).
    pub auth_issuer: Option<String>,
    /// `state` role: where the issuer's keys are; default `{issuer}/.well-known/jwks.json`.
    pub jwks_url: Option<String>,
    /// State instances clients should push-connect to (announced in `/v1/config`).
    pub push_urls: Vec<String>,
    /// Most bytes one user's live files may hold; `None` means unlimited.
    pub quota_bytes: Option<i64>,
    /// Retention of old revisions and trash, and the orphan grace period.
    pub gc_policy: GcPolicy,
    /// Seconds between garbage-collection passes; 0 disables the background collector.
    pub gc_interval_secs: u64,
    /// Blobs in S3 instead of `data_dir/blobs`.
    pub s3: Option<S3Config>,
    /// Contents up to this many bytes uploaded in one request live in the metadata database
    /// (0: every content goes to the blob store; clamped to `inline::MAX_INLINE_BYTES`).
    pub inline_max_bytes: u64,
}

impl AppConfig {
    /// The embedded defaults for `data_dir`, as the binary uses them with no flags.
    pub fn embedded(data_dir: PathBuf, public_url: String) -> Self {
        AppConfig {
            role: Role::All,
            data_dir,
            database_url: None,
            public_url,
            user_pool_id: "local_syncsphere".into(),
            client_id: "syncsphere-desktop".into(),
            region: "local-1".into(),
            access_token_ttl: 3600,
            refresh_token_ttl: 30 * 24 * 3600,
            max_connections_per_user: syncsphere_state::DEFAULT_MAX_CONNECTIONS_PER_USER,
            ws_timeouts: WsTimeouts::default(),
            redis_url: None,
            auth_issuer: None,
            jwks_url: None,
            push_urls: Vec::new(),
            quota_bytes: None,
            gc_policy: GcPolicy::default(),
            gc_interval_secs: 3600,
            s3: None,
            inline_max_bytes: syncsphere_files::inline::DEFAULT_INLINE_MAX_BYTES,
        }
    }

    fn redis_url(&self) -> anyhow::Result<&str> {
        match &self.redis_url {
            Some(url) => Ok(url),
            None => bail!("the {:?} role needs --redis-url (or REDIS_URL)", self.role),
        }
    }
}

/// The assembled application and the handles the binary needs for shutdown.
pub struct App {
    pub router: Router,
    pub hub: Arc<PushHub>,
    /// The file store, for maintenance (garbage collection, checks); `None` in the state role.
    pub maintenance: Option<Maintenance>,
}

/// What retention, garbage collection and the consistency check work on.
#[derive(Clone)]
pub struct Maintenance {
    pub store: MetadataStore,
    pub blobs: Arc<dyn BlobStore>,
    pub staging: Arc<Staging>,
    pub lock: Arc<GcLock>,
}

/// The OpenAPI description of every route (checked against the routers by `tests/openapi.rs`).
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

fn health() -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route(
            "/v1/openapi.json",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    OPENAPI_JSON,
                )
            }),
        )
}

/// What every role puts around its routes: JSON errors for whatever the routes leave to the
/// framework (unknown paths, methods, rejections), and request tracing.
fn edge(router: Router) -> Router {
    router
        .fallback(json_errors::no_route)
        .layer(axum::middleware::from_fn(json_errors::json_errors))
        .layer(TraceLayer::new_for_http())
}

pub async fn build(config: &AppConfig) -> anyhow::Result<App> {
    let hub = Arc::new(PushHub::with_limit(config.max_connections_per_user));
    let mut router = health();
    if config.role == Role::State {
        let issuer = config
            .auth_issuer
            .clone()
            .context("the state role needs --auth-issuer (the token issuer URL)")?;
        let jwks = config
            .jwks_url
            .clone()
            .unwrap_or_else(|| format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')));
        let redis_url = config.redis_url()?;
        let revocations = RedisRevocations::connect(redis_url)
            .await
            .context("connecting to Redis")?;
        let verifier = Arc::new(
            Verifier::new(issuer, config.client_id.clone(), JwksSource::Remote(jwks))
                .with_revocations(revocations),
        );
        let subscriber = RedisSubscriber::connect(config.redis_url()?, hub.clone())
            .await
            .context("subscribing to Redis")?;
        router = router.merge(syncsphere_state::router(StateService {
            hub: hub.clone(),
            verifier,
            subscriber,
            timeouts: config.ws_timeouts,
        }));
        return Ok(App {
            router: edge(router),
            hub,
            maintenance: None,
        });
    }

    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let db = match &config.database_url {
        Some(url) => Db::connect(url)
            .await
            .with_context(|| format!("opening {}", syncsphere_db::redact(url)))?,
        None => Db::open_embedded(&config.data_dir)
            .await
            .context("opening the embedded SQLite database")?,
    };
    let public_url = config.public_url.trim_end_matches('/').to_owned();
    let idp = IdentityProvider::open(
        IdpConfig {
            public_url: public_url.clone(),
            region: config.region.clone(),
            user_pool_id: config.user_pool_id.clone(),
            client_id: config.client_id.clone(),
            access_token_ttl_secs: config.access_token_ttl,
            refresh_token_ttl_secs: config.refresh_token_ttl,
        },
        db.clone(),
        &config.data_dir.join("idp-signing-key.pem"),
    )
    .context("starting the built-in identity provider")?;
    let registry = DeviceRegistry::new(db.clone());
    let verifier = Arc::new(idp.verifier().with_revocations(registry.clone()));
    // Where committed changes and revocations go, and where presence comes from and the hub's
    // events (all role) are brought from: Redis in a cluster, else this process's hub.
    type Bus = (
        Arc<dyn Publisher>,
        Arc<dyn Presence>,
        Option<Arc<dyn Subscriber>>,
    );
    let (events, presence, subscriber): Bus = match &config.redis_url {
        Some(url) => {
            let publisher = RedisPublisher::connect(url)
                .await
                .context("connecting to Redis")?;
            let subscriber: Option<Arc<dyn Subscriber>> = if config.role == Role::All {
                Some(
                    RedisSubscriber::connect(url, hub.clone())
                        .await
                        .context("subscribing to Redis")?,
                )
            } else {
                None
            };
            (publisher.clone(), publisher, subscriber)
        }
        None if config.role == Role::Files => {
            bail!("the files role needs --redis-url (or REDIS_URL)")
        }
        None => {
            let local = LocalBus::new(hub.clone());
            (local.clone(), local.clone(), Some(local))
        }
    };
    let (blobs, staging): (Arc<dyn BlobStore>, Staging) = match &config.s3 {
        None => {
            let (disk, staging) = DiskBlobStore::open(config.data_dir.join("blobs"))
                .context("opening the blob store")?;
            (Arc::new(disk), staging)
        }
        Some(s3) => {
            let store = S3BlobStore::connect(s3)
                .await
                .with_context(|| format!("opening the S3 bucket '{}'", s3.bucket))?;
            let staging = Staging::open(config.data_dir.join("staging"))
                .context("opening the staging directory")?;
            (Arc::new(store), staging)
        }
    };
    // Small contents live in the metadata database, in front of the blob store.
    let blobs: Arc<dyn BlobStore> = Arc::new(InlineBlobStore::new(db.clone(), blobs));
    let maintenance = Maintenance {
        store: MetadataStore::new(db).with_quota(config.quota_bytes),
        blobs,
        staging: Arc::new(staging),
        lock: Arc::new(GcLock::default()),
    };
    // Path keys of a database from before `path_key` are recomputed now, so a problem stops
    // the start instead of failing the first write.
    maintenance
        .store
        .upgrade_path_keys()
        .await
        .context("recomputing the path keys of the metadata database")?;
    if config.gc_interval_secs > 0 {
        spawn_collector(
            maintenance.clone(),
            config.gc_policy,
            std::time::Duration::from_secs(config.gc_interval_secs),
        );
    }
    let files = syncsphere_files::router(FilesState {
        store: maintenance.store.clone(),
        blobs: maintenance.blobs.clone(),
        staging: maintenance.staging.clone(),
        inline_max: config
            .inline_max_bytes
            .min(syncsphere_files::inline::MAX_INLINE_BYTES),
        pending: Arc::new(PendingPuts::new(maintenance.blobs.clone())),
        running: Arc::default(),
        gc_lock: maintenance.lock.clone(),
        events: events.clone(),
        verifier: verifier.clone(),
        devices: Some(registry.clone()),
    });
    let devices = syncsphere_auth::devices::router(DevicesState {
        registry,
        verifier: verifier.clone(),
        presence,
        events,
    });
    let client_config = ServerConfig {
        cognito: CognitoConfig {
            endpoint: format!("{public_url}{}", cognito_api::COGNITO_API_PATH),
            region: config.region.clone(),
            user_pool_id: config.user_pool_id.clone(),
            client_id: config.client_id.clone(),
            device_keys: true,
        },
        push_urls: config.push_urls.clone(),
    };
    router = router
        .route(
            "/v1/config",
            get(move || {
                let config = client_config.clone();
                async move { axum::Json(config) }
            }),
        )
        .merge(cognito_api::router(idp))
        .merge(files)
        .merge(devices);
    // Only the all role serves push, and only it has a subscriber.
    if let Some(subscriber) = subscriber {
        router = router.merge(syncsphere_state::router(StateService {
            hub: hub.clone(),
            verifier,
            subscriber,
            timeouts: config.ws_timeouts,
        }));
    }
    Ok(App {
        router: edge(router),
        hub,
        maintenance: Some(maintenance),
    })
}

/// Runs retention and garbage collection every `every` (first pass after one interval).
fn spawn_collector(m: Maintenance, policy: GcPolicy, every: std::time::Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) =
                syncsphere_files::gc::collect(&m.store, &m.blobs, &m.staging, &m.lock, policy).await
            {
                tracing::error!(error = %e, "garbage collection failed");
            }
        }
    });
}
