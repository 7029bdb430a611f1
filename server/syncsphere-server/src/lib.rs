//! Assembly of the SyncSphere services into one application, shared by the `syncsphere-server`
//! binary and the service-level tests.
//!
//! Roles: `all` (default: auth + files + state in one process, changes handed to the push hub
//! in-process, or through Redis when `redis_url` is set so the instance can join a cluster),
//! `files` (identity provider + File service; publishes changes to Redis) and `state` (push
//! WebSockets only; verifies tokens against the issuer's JWKS over HTTP and subscribes to Redis).
//! Identity: the built-in provider, or — when a Cognito user pool is configured — that pool,
//! whose tokens every role then verifies (and the built-in provider is not served).
//! [`transport::serve`] puts the assembled router on a TCP listener, with its limits.

mod config;
mod json_errors;
pub mod stalled_body;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
pub use json_errors::NO_ROUTE;
use syncsphere_auth::devices::{DeviceRegistry, DevicesState};
use syncsphere_auth::idp::{IdentityProvider, cognito_api};
use syncsphere_auth::routes::RouterExt;
use syncsphere_auth::sign_out::DbRevocations;
use syncsphere_auth::{JwksSource, Verifier};
use syncsphere_db::Db;
use syncsphere_events::redis::{
    RedisGatewayConnections, RedisPublisher, RedisRevocations, RedisSubscriber,
};
use syncsphere_events::{
    GatewayConnections, LocalBus, LocalGatewayConnections, Presence, Publisher, Subscriber,
};
use syncsphere_files::{FilesDeps, FilesService};
use syncsphere_protocol::endpoint;
use syncsphere_protocol::{CognitoConfig, PasswordFlow, ServerConfig};
use syncsphere_state::PushHub;
use syncsphere_state::apigw::{AwsManagement, Gateway};
use tower_http::trace::TraceLayer;

pub use config::{AppConfig, CheckArgs, Cli, Command, HealthcheckArgs, Role, ServerArgs};
pub use syncsphere_files::s3::S3Config;
pub use syncsphere_files::{Maintenance, S3Args};

/// The assembled application and the handles the binary needs for shutdown.
pub struct App {
    pub router: Router,
    pub hub: Arc<PushHub>,
    /// The file store, for maintenance (garbage collection, checks); `None` in the state role.
    pub maintenance: Option<Maintenance>,
}

/// The OpenAPI description of every route (checked against the routers by `tests/openapi.rs`).
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

fn health() -> Router {
    Router::new()
        .endpoint(endpoint::Health, || async {
            axum::Json(serde_json::json!({ "status": "ok" }))
        })
        .endpoint(endpoint::OpenApiDocument, || async {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                OPENAPI_JSON,
            )
        })
}

/// What every role puts around its routes: JSON errors for whatever the routes leave to the
/// framework (unknown paths, methods, rejections), stalled bodies cut off, and request tracing.
fn edge(router: Router, body_timeout: Duration) -> Router {
    router
        .fallback(json_errors::no_route)
        .layer(axum::middleware::from_fn(json_errors::json_errors))
        .layer(axum::middleware::from_fn_with_state(
            body_timeout,
            stalled_body::cut_stalled_bodies,
        ))
        .layer(TraceLayer::new_for_http())
}

/// Checks the role's requirements (all of them, in one message), then opens its services.
pub async fn build(config: &AppConfig) -> anyhow::Result<App> {
    config.check_requirements()?;
    let hub = config.state.hub();
    if let Some(publisher) = config
        .state
        .cloudwatch
        .publisher(hub.metrics.connections.clone())
        .await
        .context("--cloudwatch-namespace")?
    {
        tokio::spawn(publisher.run());
    }
    let (services, maintenance) = match config.server.role {
        Role::State => (state_alone(config, &hub).await?, None),
        Role::All | Role::Files => {
            let (router, maintenance) = files_and_identity(config, &hub).await?;
            (router, Some(maintenance))
        }
    };
    Ok(App {
        router: edge(health().merge(services), config.server.body_timeout()),
        hub,
        maintenance,
    })
}

/// The state role: push only, tokens checked against the issuer's (or the pool's) JWKS, events
/// from Redis.
async fn state_alone(config: &AppConfig, hub: &Arc<PushHub>) -> anyhow::Result<Router> {
    let verifier = match config.pool()? {
        Some(pool) => pool.verifier(),
        None => {
            let (issuer, jwks) = config
                .state
                .issuer_and_jwks()
                .context("checked: --auth-issuer")?;
            Verifier::new(
                issuer,
                [config.idp.client_id.clone()],
                JwksSource::Remote(jwks),
            )
        }
    };
    let redis = config.server.redis().context("checked: --redis-url")?;
    let revocations = RedisRevocations::connect(&redis)
        .await
        .context("connecting to Redis")?;
    let verifier = Arc::new(verifier.with_revocations(revocations));
    let subscriber = RedisSubscriber::connect(&redis, hub.clone())
        .await
        .context("subscribing to Redis")?;
    let gateway = match config.state.gateway.apigw_endpoint {
        Some(_) => {
            let events = RedisPublisher::connect(&redis)
                .await
                .context("connecting to Redis")?;
            gateway(config, events).await?
        }
        None => None,
    };
    Ok(syncsphere_state::router(config.state.open(
        hub.clone(),
        verifier,
        subscriber,
        gateway,
    )))
}

/// AWS mode's push (`--apigw-endpoint`): API Gateway's `@connections` API, the registry of its
/// connections (Redis across instances, else this process's memory), and where `$disconnect`
/// is told.
async fn gateway(
    config: &AppConfig,
    events: Arc<dyn Publisher>,
) -> anyhow::Result<Option<Arc<Gateway>>> {
    let args = &config.state.gateway;
    let Some(endpoint) = &args.apigw_endpoint else {
        return Ok(None);
    };
    let secret = args
        .secret()
        .map_err(anyhow::Error::msg)?
        .context("checked: --apigw-secret")?;
    let connections: Arc<dyn GatewayConnections> = match config.server.redis() {
        Some(redis) => RedisGatewayConnections::connect(&redis)
            .await
            .context("connecting to Redis")?,
        None => LocalGatewayConnections::new(),
    };
    let management = Arc::new(AwsManagement::new(endpoint, args.apigw_region.clone()).await);
    tracing::info!(endpoint, "pushing through API Gateway's WebSocket API");
    let gateway = Arc::new(Gateway {
        management,
        connections,
        events,
        secret,
        limits: args.limits(),
    });
    tokio::spawn(syncsphere_state::apigw::sweep_orphans(gateway.clone()));
    Ok(Some(gateway))
}

/// The all and files roles: identity provider, devices, files, `/v1/config`; and push in the
/// all role.
async fn files_and_identity(
    config: &AppConfig,
    hub: &Arc<PushHub>,
) -> anyhow::Result<(Router, Maintenance)> {
    let data_dir = &config.server.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let db = match &config.server.database_url {
        Some(url) => Db::connect(url)
            .await
            .with_context(|| format!("opening {}", syncsphere_db::redact(url)))?,
        None => Db::open_embedded(data_dir)
            .await
            .context("opening the embedded SQLite database")?,
    };
    let public_url = config.server.public_url();
    let registry = DeviceRegistry::new(db.clone());
    let bus = Bus::open(config, hub).await?;
    // Who signs users in: the configured Cognito pool, or the built-in provider (served here).
    let (verifier, cognito, identity_routes) = match config.pool()? {
        Some(pool) => (pool.verifier(), pool.client_config(), Router::new()),
        None => {
            let idp = IdentityProvider::open(
                config.idp.config(&public_url),
                db.clone(),
                &data_dir.join("idp-signing-key.pem"),
                bus.publisher.clone(),
            )
            .context("starting the built-in identity provider")?;
            let cognito = CognitoConfig {
                endpoint: format!("{public_url}{}", cognito_api::COGNITO_API_PATH),
                region: config.idp.region.clone(),
                user_pool_id: config.idp.user_pool_id.clone(),
                client_id: config.idp.client_id.clone(),
                device_keys: true,
                auth_flow: PasswordFlow::UserSrpAuth,
            };
            hub.metrics.register_collector(Box::new(idp.budgets()));
            (idp.verifier(), cognito, cognito_api::router(idp))
        }
    };
    let verifier = Arc::new(verifier.with_revocations(DbRevocations::new(db.clone())));
    let files = FilesService::open(
        &config.files,
        FilesDeps {
            db,
            data_dir: data_dir.clone(),
            events: bus.publisher.clone(),
            verifier: verifier.clone(),
            devices: Some(registry.clone()),
        },
    )
    .await?;
    files.spawn_collector();
    files.spawn_staged_pruner();
    hub.metrics.register_collector(Box::new(files.budgets()));
    let devices = syncsphere_auth::devices::router(DevicesState {
        registry,
        verifier: verifier.clone(),
        presence: bus.presence,
        events: bus.publisher.clone(),
    });
    let client_config = ServerConfig {
        cognito,
        push_urls: config.server.push_urls.clone(),
        chunked_ids: true,
    };
    let mut router = Router::new()
        .endpoint(endpoint::GetConfig, move || {
            let config = client_config.clone();
            async move { axum::Json(config) }
        })
        .merge(identity_routes)
        .merge(files.router())
        .merge(devices);
    // Only the all role serves push, and only it has a subscriber; the files role serves its
    // metrics alone.
    if bus.subscriber.is_none() {
        router = router.merge(syncsphere_state::metrics_router(hub.clone()));
    }
    if let Some(subscriber) = bus.subscriber {
        let gateway = gateway(config, bus.publisher.clone()).await?;
        router = router.merge(syncsphere_state::router(config.state.open(
            hub.clone(),
            verifier,
            subscriber,
            gateway,
        )));
    }
    Ok((router, files.maintenance()))
}

/// Where committed changes and revocations go, where presence comes from, and (all role) what
/// brings events to the hub: Redis in a cluster, else this process's hub.
struct Bus {
    publisher: Arc<dyn Publisher>,
    presence: Arc<dyn Presence>,
    subscriber: Option<Arc<dyn Subscriber>>,
}

impl Bus {
    async fn open(config: &AppConfig, hub: &Arc<PushHub>) -> anyhow::Result<Bus> {
        let Some(redis) = config.server.redis() else {
            // Only the all role runs without Redis (checked by `check_requirements`).
            let local = LocalBus::new(hub.clone());
            return Ok(Bus {
                publisher: local.clone(),
                presence: local.clone(),
                subscriber: Some(local),
            });
        };
        let publisher = RedisPublisher::connect(&redis)
            .await
            .context("connecting to Redis")?;
        let subscriber: Option<Arc<dyn Subscriber>> = match config.server.role {
            Role::All => Some(
                RedisSubscriber::connect(&redis, hub.clone())
                    .await
                    .context("subscribing to Redis")?,
            ),
            Role::Files | Role::State => None,
        };
        Ok(Bus {
            publisher: publisher.clone(),
            presence: publisher,
            subscriber,
        })
    }
}
