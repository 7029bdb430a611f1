//! Assembly of the SyncSphere services into one application (all roles in one process), shared
//! by the `syncsphere-server` binary and the service-level tests.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use syncsphere_auth::idp::{IdentityProvider, IdpConfig, cognito_api};
use syncsphere_db::Db;
use syncsphere_files::{DiskBlobStore, FilesState, MetadataStore};
use syncsphere_protocol::{CognitoConfig, ServerConfig};
use syncsphere_state::{PushHub, StateService};
use tower_http::trace::TraceLayer;

/// Settings of the all-in-one server.
#[derive(Debug, Clone)]
pub struct AppConfig {
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
}

/// The assembled application and the handles the binary needs for shutdown.
pub struct App {
    pub router: Router,
    pub hub: Arc<PushHub>,
}

pub async fn build(config: &AppConfig) -> anyhow::Result<App> {
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
    let verifier = Arc::new(idp.verifier());
    let hub = Arc::new(PushHub::with_limit(config.max_connections_per_user));
    let blobs =
        DiskBlobStore::open(config.data_dir.join("blobs")).context("opening the blob store")?;
    let files = syncsphere_files::router(FilesState {
        store: MetadataStore::new(db),
        blobs: Arc::new(blobs),
        sink: hub.clone(),
        verifier: verifier.clone(),
    });
    let state = syncsphere_state::router(StateService {
        hub: hub.clone(),
        verifier,
    });
    let client_config = ServerConfig {
        cognito: CognitoConfig {
            endpoint: format!("{public_url}{}", cognito_api::COGNITO_API_PATH),
            region: config.region.clone(),
            user_pool_id: config.user_pool_id.clone(),
            client_id: config.client_id.clone(),
        },
    };
    let router = Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route(
            "/v1/config",
            get(move || {
                let config = client_config.clone();
                async move { axum::Json(config) }
            }),
        )
        .merge(cognito_api::router(idp))
        .merge(files)
        .merge(state)
        .layer(TraceLayer::new_for_http());
    Ok(App { router, hub })
}
