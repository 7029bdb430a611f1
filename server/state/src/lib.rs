//! State Management Service: one WebSocket per connected device (`GET /v1/ws`), the registry
//! of who is connected, and the fan-out of committed changes to a user's *other* devices.
//!
//! **Invariants**
//! - A change is never pushed to a connection of the device that made it (`origin_device`).
//! - Delivery never blocks: each connection has a bounded queue; a connection that falls
//!   behind is told to `resync` and closed, and catches up from its journal cursor. Pushes are
//!   hints; the journal in the File service is the truth.
//! - A peer never holds the server up: a write not done in 10 s ends the connection (`resync`,
//!   4000), every close is a handshake of at most 2 s after which the TCP connection is dropped,
//!   a client's close is echoed, a frame over 64 KiB is closed with 1009.
//! - Tokens never travel in URLs: native clients send `Authorization` on the upgrade, browsers
//!   an `auth` message within 5 s. Every close code is in `syncsphere_protocol::ws`.
//!
//! **Boundary**: this crate never reads the metadata database and knows nothing of the File
//! service; it learns of changes, revocations and presence only as [`syncsphere_events::Event`]s
//! delivered to its [`PushHub`] (the hub is the bus's [`syncsphere_events::Recipient`]) — in
//! process, or from Redis.

pub mod apigw;
pub mod cloudwatch;
mod config;
mod hub;
mod metrics;
mod socket;
mod ws;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use syncsphere_auth::Verifier;
use syncsphere_auth::routes::RouterExt;
use syncsphere_events::Subscriber;
use syncsphere_protocol::endpoint;

pub use config::{CloudWatchArgs, GatewayArgs, StateArgs};
pub use hub::{DEFAULT_MAX_CONNECTIONS_PER_USER, PushHub, QUEUE_CAPACITY};
pub use metrics::PushMetrics;
pub use socket::WsTimeouts;

#[derive(Clone)]
pub struct StateService {
    pub hub: Arc<PushHub>,
    pub verifier: Arc<Verifier>,
    /// Brings the events of each connected user to the hub: Redis across instances, or the
    /// in-process bus when the File service runs in this process and feeds the hub directly.
    pub subscriber: Arc<dyn Subscriber>,
    /// How long a socket write and a close handshake may take.
    pub timeouts: WsTimeouts,
    /// Set in AWS mode: connections API Gateway's WebSocket API holds (`/v1/apigw/*`).
    pub gateway: Option<Arc<apigw::Gateway>>,
}

impl FromRef<StateService> for Arc<Verifier> {
    fn from_ref(state: &StateService) -> Self {
        state.verifier.clone()
    }
}

/// `GET /v1/ws` and `GET /metrics` (Prometheus text; keep it off the public internet); with a
/// gateway, API Gateway's three integrations `POST /v1/apigw/{connect,default,disconnect}`
/// (not in the OpenAPI document: only API Gateway calls them, with the shared secret).
pub fn router(state: StateService) -> Router {
    let mut router = Router::new()
        .endpoint(endpoint::PushSocket, ws::upgrade)
        .endpoint(endpoint::Metrics, metrics);
    if state.gateway.is_some() {
        router = router
            .route(apigw::CONNECT_PATH, axum::routing::post(apigw::connect))
            .route(apigw::MESSAGE_PATH, axum::routing::post(apigw::message))
            .route(
                apigw::DISCONNECT_PATH,
                axum::routing::post(apigw::disconnect),
            );
    }
    router.with_state(state)
}

async fn metrics(
    axum::extract::State(state): axum::extract::State<StateService>,
) -> impl axum::response::IntoResponse {
    render_metrics(&state.hub)
}

fn render_metrics(hub: &PushHub) -> impl axum::response::IntoResponse + use<> {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        hub.metrics.render(),
    )
}

/// `GET /metrics` alone, for a process that serves no push (the files role): its hub's
/// registry holds the other services' metrics.
pub fn metrics_router(hub: Arc<PushHub>) -> Router {
    Router::new().endpoint(endpoint::Metrics, move || {
        let hub = hub.clone();
        async move { render_metrics(&hub) }
    })
}
