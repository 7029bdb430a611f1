//! The push channel behind API Gateway's WebSocket API (AWS mode, decision 0042).
//!
//! API Gateway holds the client's socket; this service sees three HTTP calls per connection,
//! each of which may reach a different instance behind the load balancer:
//! - `POST /v1/apigw/connect` (`$connect`): the token of the handshake's `Authorization`
//!   header is checked (a refusal is the handshake's status) and the connection recorded in
//!   the shared [`GatewayConnections`] registry;
//! - `POST /v1/apigw/default` (`$default`, every message): `hello` makes the instance that
//!   receives it the one that serves the connection's pushes (a claim in the registry): it
//!   registers the connection in its hub, as a socket it held would be, and a task of its own
//!   drains the connection's queue into `@connections` POSTs (`welcome` first). `auth`
//!   (answering `reauth`) refreshes the record the serving instance reads; `ping` (the client's
//!   heartbeat, which keeps API Gateway's idle timeout away) checks that the serving instance
//!   is alive, and closes a connection whose instance died so the client reconnects;
//! - `POST /v1/apigw/disconnect` (`$disconnect`, best effort): the record goes, and the serving
//!   instance lets the connection go ([`Event::GatewayDisconnected`] on the user's channel).
//!
//! Every call must carry the shared secret API Gateway's integration adds as a static header
//! ([`SECRET_HEADER`]); the connection id comes in the mapped `connectionId` header. API
//! Gateway closes connections with 1000 only: a close code of ours travels as a `bye` message
//! first. A connection `@connections` finds gone ends here too (no `$disconnect` needed).
//!
//! **Invariants**: the same as the native socket's (`ws.rs`): no push to the origin device,
//! a revoked device or signed-out user is cut off, a token that expires without a fresh one
//! ends the connection, a connection that falls behind is told to `resync`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use syncsphere_auth::{AuthRejection, AuthUser};
use syncsphere_events::{Event, GatewayConnections, Publisher};
use syncsphere_protocol::ws::{
    CLOSE_DEVICE_UNREGISTERED, CLOSE_GOING_AWAY, CLOSE_PROTOCOL, CLOSE_TOO_MANY_CONNECTIONS,
    CLOSE_UNAUTHORIZED, ClientMessage, ConnectionLimits, ServerMessage,
};
use syncsphere_protocol::{ApiError, DeviceId, ErrorCode, UserId};
use tracing::Instrument;

use crate::StateService;
use crate::hub::{ENDED_GONE, ENDED_OVERFLOW, ENDED_REVOKED, ENDED_SIGNED_OUT, Registration};
use crate::ws::{
    REAUTH_GRACE_SECS, check_registered, fresh_user, instant_at, reauth_time, refused, same_session,
};

/// The integrations' paths: internal (only API Gateway calls them, with the secret), so they
/// are not endpoints of the public API (`syncsphere_protocol::endpoint`, the OpenAPI document).
pub const CONNECT_PATH: &str = "/v1/apigw/connect";
pub const MESSAGE_PATH: &str = "/v1/apigw/default";
pub const DISCONNECT_PATH: &str = "/v1/apigw/disconnect";

/// The header API Gateway's integrations carry the shared secret in (a static mapping:
/// `integration.request.header.x-syncsphere-gateway-secret: "'…'"`).
pub const SECRET_HEADER: &str = "x-syncsphere-gateway-secret";
/// The header the integrations map `context.connectionId` to.
pub const CONNECTION_ID_HEADER: &str = "connectionid";
/// The largest message `@connections` accepts (128 KB); API Gateway cuts it into frames of
/// 32 KB itself.
pub const MESSAGE_MAX: usize = 128 * 1024;

/// Why an `@connections` call failed.
#[derive(Debug, thiserror::Error)]
pub enum ManagementError {
    /// The connection is closed, or not yet open (`GoneException`, 410).
    #[error("the connection is gone")]
    Gone,
    /// The client does not read fast enough, or the account's rate is spent
    /// (`LimitExceededException`, 429).
    #[error("the connection's limit is exceeded")]
    LimitExceeded,
    #[error("@connections call failed: {0}")]
    Other(String),
}

/// API Gateway's `@connections` API: what the service does to connections it does not hold.
pub trait Management: Send + Sync + 'static {
    /// Sends `data` to the connection as one text message.
    fn post<'a>(&'a self, id: &'a str, data: Vec<u8>)
    -> BoxFuture<'a, Result<(), ManagementError>>;
    /// Closes the connection (API Gateway sends 1000).
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ManagementError>>;
}

/// The `@connections` API through the AWS SDK, signed with the default credential chain (the
/// task role on Fargate).
pub struct AwsManagement {
    client: aws_sdk_apigatewaymanagement::Client,
}

impl AwsManagement {
    /// A client of `endpoint` (`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`);
    /// the region is `region`, else the one in the endpoint's host, else the default chain's.
    pub async fn new(endpoint: &str, region: Option<String>) -> Self {
        let region = region.or_else(|| region_of(endpoint));
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region));
        }
        let shared = loader.load().await;
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(&shared)
            .endpoint_url(endpoint.trim_end_matches('/'))
            .build();
        AwsManagement {
            client: aws_sdk_apigatewaymanagement::Client::from_conf(config),
        }
    }
}

/// The region in an `execute-api` host name, if the URL has one.
fn region_of(endpoint: &str) -> Option<String> {
    let host = endpoint.split("://").nth(1)?.split(['/', ':']).next()?;
    let mut labels = host.split('.');
    labels.next()?;
    (labels.next()? == "execute-api").then_some(())?;
    labels.next().map(str::to_owned)
}

impl Management for AwsManagement {
    fn post<'a>(
        &'a self,
        id: &'a str,
        data: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), ManagementError>> {
        use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
        Box::pin(async move {
            self.client
                .post_to_connection()
                .connection_id(id)
                .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(data))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| match e.as_service_error() {
                    Some(PostToConnectionError::GoneException(_)) => ManagementError::Gone,
                    Some(PostToConnectionError::LimitExceededException(_)) => {
                        ManagementError::LimitExceeded
                    }
                    _ => ManagementError::Other(
                        aws_sdk_apigatewaymanagement::error::DisplayErrorContext(&e).to_string(),
                    ),
                })
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ManagementError>> {
        use aws_sdk_apigatewaymanagement::operation::delete_connection::DeleteConnectionError;
        Box::pin(async move {
            self.client
                .delete_connection()
                .connection_id(id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| match e.as_service_error() {
                    Some(DeleteConnectionError::GoneException(_)) => ManagementError::Gone,
                    Some(DeleteConnectionError::LimitExceededException(_)) => {
                        ManagementError::LimitExceeded
                    }
                    _ => ManagementError::Other(
                        aws_sdk_apigatewaymanagement::error::DisplayErrorContext(&e).to_string(),
                    ),
                })
        })
    }
}

/// What the State service needs to serve connections API Gateway holds.
pub struct Gateway {
    pub management: Arc<dyn Management>,
    pub connections: Arc<dyn GatewayConnections>,
    /// Where `$disconnect` tells the serving instance (the user's channel).
    pub events: Arc<dyn Publisher>,
    /// The secret every call must carry in [`SECRET_HEADER`].
    pub secret: String,
    /// API Gateway's idle timeout and maximum connection duration, told to clients.
    pub limits: ConnectionLimits,
}

impl Gateway {
    /// How long a connection's record and claim are kept: its longest life, and a minute.
    fn ttl(&self) -> Duration {
        Duration::from_secs(self.limits.max_duration_secs + 60)
    }
}

/// A connection as `$connect` found it, and the device `hello` named.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    user_id: UserId,
    username: String,
    expires_at: u64,
    issued_at: Option<u64>,
    device_key: Option<DeviceId>,
    session: Option<String>,
    /// Set once `hello` registered the connection.
    device_id: Option<DeviceId>,
}

impl Record {
    fn of(user: &AuthUser) -> Self {
        Record {
            user_id: user.user_id.clone(),
            username: user.username.clone(),
            expires_at: user.expires_at,
            issued_at: user.issued_at,
            device_key: user.device_key.clone(),
            session: user.session.clone(),
            device_id: None,
        }
    }

    fn user(&self) -> AuthUser {
        AuthUser {
            user_id: self.user_id.clone(),
            username: self.username.clone(),
            expires_at: self.expires_at,
            issued_at: self.issued_at,
            device_key: self.device_key.clone(),
            session: self.session.clone(),
        }
    }

    fn json(&self) -> String {
        serde_json::to_string(self).expect("records serialise")
    }
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "{what}");
    syncsphere_auth::api_error::respond(ApiError::new(
        ErrorCode::Unavailable,
        format!("{what}; try again"),
    ))
}

/// The gateway's connection id, if the call comes from our API Gateway: the secret checked
/// (in constant time), the id present.
fn from_gateway(gw: &Gateway, headers: &HeaderMap) -> Result<String, ApiError> {
    let given = headers
        .get(SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let expected = gw.secret.as_bytes();
    let same = given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "not called by this service's API Gateway",
        ));
    }
    headers
        .get(CONNECTION_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128)
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::BadRequest,
                "missing connectionId header (map context.connectionId to it)",
            )
        })
}

/// `$connect`: the handshake's token decides; the connection is recorded for the calls after.
pub(crate) async fn connect(State(state): State<StateService>, headers: HeaderMap) -> Response {
    let gw = state.gateway.as_ref().expect("routed only with a gateway");
    let id = match from_gateway(gw, &headers) {
        Ok(id) => id,
        Err(refusal) => return syncsphere_auth::api_error::respond(refusal),
    };
    let user = match AuthUser::from_headers(&headers, &state.verifier).await {
        Ok(user) => user,
        Err(e) => return AuthRejection(e).into_response(),
    };
    if let Err(e) = gw
        .connections
        .insert(&id, Record::of(&user).json(), gw.ttl())
        .await
    {
        return unavailable("recording the connection failed", e);
    }
    tracing::debug!(connection = id, user = %user.user_id, "gateway connection opened");
    StatusCode::OK.into_response()
}

/// `$disconnect`: the record goes; the instance serving the connection lets it go.
pub(crate) async fn disconnect(State(state): State<StateService>, headers: HeaderMap) -> Response {
    let gw = state.gateway.as_ref().expect("routed only with a gateway");
    let id = match from_gateway(gw, &headers) {
        Ok(id) => id,
        Err(refusal) => return syncsphere_auth::api_error::respond(refusal),
    };
    match gw.connections.remove(&id).await {
        Ok(Some(record)) => {
            if let Ok(record) = serde_json::from_str::<Record>(&record)
                && record.device_id.is_some()
            {
                gw.events.publish(
                    &record.user_id,
                    Event::GatewayDisconnected { connection: id },
                );
            }
            StatusCode::OK.into_response()
        }
        Ok(None) => StatusCode::OK.into_response(),
        Err(e) => unavailable("forgetting the connection failed", e),
    }
}

/// `$default`: a message of the client's.
pub(crate) async fn message(
    State(state): State<StateService>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let gw = state.gateway.clone().expect("routed only with a gateway");
    let id = match from_gateway(&gw, &headers) {
        Ok(id) => id,
        Err(refusal) => return syncsphere_auth::api_error::respond(refusal),
    };
    let record = match gw.connections.get(&id).await {
        Ok(Some(record)) => serde_json::from_str::<Record>(&record).ok(),
        Ok(None) => None,
        Err(e) => return unavailable("reading the connection failed", e),
    };
    let Some(record) = record else {
        // Recorded nowhere (its record expired, or `$connect` came from elsewhere).
        end(&gw, &id, None, CLOSE_UNAUTHORIZED, "unknown connection").await;
        return StatusCode::OK.into_response();
    };
    let msg = match serde_json::from_slice::<ClientMessage>(&body) {
        Ok(msg) => msg,
        Err(_) if record.device_id.is_none() => {
            end(&gw, &id, Some(&record), CLOSE_PROTOCOL, "expected hello").await;
            return StatusCode::OK.into_response();
        }
        // As on a socket: what cannot be read after `hello` is ignored.
        Err(_) => return StatusCode::OK.into_response(),
    };
    let span = tracing::info_span!("gateway", connection = %id, user = %record.user_id);
    async move {
        match msg {
            ClientMessage::Hello {
                device_id,
                device_name,
                ..
            } => hello(&state, &gw, id, record, device_id, device_name).await,
            ClientMessage::Auth { token } => reauth(&state, &gw, &id, record, &token).await,
            ClientMessage::Ping => heartbeat(&gw, &id, &record).await,
        }
    }
    .instrument(span)
    .await;
    StatusCode::OK.into_response()
}

/// Says `bye` with `code` and closes the connection (API Gateway closes with 1000); forgets
/// it, and tells the instance serving it if one does.
async fn end(gw: &Gateway, id: &str, record: Option<&Record>, code: u16, reason: &str) {
    let bye = ServerMessage::Bye {
        code,
        reason: reason.into(),
    };
    if let Err(e) = gw
        .management
        .post(id, serde_json::to_vec(&bye).expect("messages serialise"))
        .await
    {
        tracing::debug!(error = %e, "bye not delivered");
    }
    close(gw, id).await;
    if let Ok(Some(_)) = gw.connections.remove(id).await
        && let Some(record) = record.filter(|r| r.device_id.is_some())
    {
        gw.events.publish(
            &record.user_id,
            Event::GatewayDisconnected {
                connection: id.to_owned(),
            },
        );
    }
}

/// Closes the connection at API Gateway (gone already is fine).
async fn close(gw: &Gateway, id: &str) {
    match gw.management.delete(id).await {
        Ok(()) | Err(ManagementError::Gone) => {}
        Err(e) => tracing::warn!(error = %e, "closing a gateway connection failed"),
    }
}

async fn hello(
    state: &StateService,
    gw: &Arc<Gateway>,
    id: String,
    mut record: Record,
    device_id: DeviceId,
    device_name: Option<String>,
) {
    if record.device_id.is_some() {
        tracing::debug!("second hello ignored");
        return;
    }
    if device_id.is_empty() || device_id.len() > 128 {
        return end(gw, &id, Some(&record), CLOSE_PROTOCOL, "expected hello").await;
    }
    // As on a socket (ws.rs): a token speaks for its own device only, and needs one.
    match &record.device_key {
        Some(bound) if *bound != device_id => {
            let reason = "device id does not match the token";
            return end(gw, &id, Some(&record), CLOSE_PROTOCOL, reason).await;
        }
        Some(_) => {}
        None => {
            let reason = "register the device first";
            return end(gw, &id, Some(&record), CLOSE_DEVICE_UNREGISTERED, reason).await;
        }
    }
    match gw.connections.claim(&id, gw.ttl()).await {
        Ok(true) => {}
        Ok(false) => return, // a concurrent hello on another instance serves it
        Err(e) => {
            tracing::error!(error = %e, "claiming the connection failed");
            return end(gw, &id, None, CLOSE_GOING_AWAY, "registry unavailable").await;
        }
    }
    let user = record.user();
    // Subscribed before `welcome`, as on a socket: the catch-up after it misses nothing.
    if let Err(e) = state.subscriber.hold(&user.user_id).await {
        tracing::error!(error = %e, "cannot subscribe to the user's changes");
        return end(gw, &id, None, CLOSE_GOING_AWAY, "fan-out unavailable").await;
    }
    let device_name = device_name.map(|n| n.chars().take(128).collect());
    let gateway_id: Arc<str> = id.as_str().into();
    let Ok(reg) = state.hub.register_as(
        &user.user_id,
        &device_id,
        device_name,
        Some(gateway_id.clone()),
    ) else {
        tracing::warn!("connection limit reached");
        state.subscriber.release(&user.user_id);
        let reason = "too many connections";
        return end(gw, &id, None, CLOSE_TOO_MANY_CONNECTIONS, reason).await;
    };
    let leave = |state: &StateService, reg: &Registration| {
        state.hub.unregister(&user.user_id, reg.id);
        state.subscriber.release(&user.user_id);
    };
    if let Err(e) = check_registered(state, &user, &device_id).await {
        leave(state, &reg);
        let (code, reason) = refused(&e);
        return end(gw, &id, None, code, reason).await;
    }
    record.device_id = Some(device_id.clone());
    match gw.connections.update(&id, record.json()).await {
        Ok(true) => {}
        // `$disconnect` came meanwhile.
        Ok(false) => return leave(state, &reg),
        Err(e) => {
            leave(state, &reg);
            tracing::error!(error = %e, "recording the connection's device failed");
            return end(gw, &id, None, CLOSE_GOING_AWAY, "registry unavailable").await;
        }
    }
    tracing::info!(conn = reg.id, device = %device_id, "gateway device connected");
    let (state, gw) = (state.clone(), gw.clone());
    let span = tracing::info_span!("gateway", connection = %gateway_id, device = %device_id);
    tokio::spawn(serve(state, gw, gateway_id, reg, record).instrument(span));
}

/// An `auth` message (the answer to `reauth`): a token of the same session refreshes the
/// record the serving instance reads when the old token runs out.
async fn reauth(state: &StateService, gw: &Gateway, id: &str, mut record: Record, token: &str) {
    let Some(device_id) = record.device_id.clone() else {
        return end(gw, id, Some(&record), CLOSE_PROTOCOL, "expected hello").await;
    };
    match fresh_user(state, token).await {
        Ok(fresh) if same_session(&record.user(), &fresh, &device_id) => {
            if fresh.expires_at > record.expires_at {
                record.expires_at = fresh.expires_at;
                record.issued_at = fresh.issued_at;
                record.device_key = fresh.device_key;
                if let Err(e) = gw.connections.update(id, record.json()).await {
                    tracing::warn!(error = %e, "recording a fresh token failed");
                }
            }
        }
        Ok(_) => {
            let reason = "token of another user or device";
            end(gw, id, Some(&record), CLOSE_UNAUTHORIZED, reason).await;
        }
        Err(e) => {
            let (code, reason) = refused(&e);
            end(gw, id, Some(&record), code, reason).await;
        }
    }
}

/// A `ping`: a connection whose serving instance is gone (it crashed) is closed, so the
/// client reconnects to a live one.
async fn heartbeat(gw: &Gateway, id: &str, record: &Record) {
    if record.device_id.is_none() {
        return;
    }
    match gw.connections.served(id).await {
        Ok(Some(true)) => {}
        Ok(_) => {
            tracing::info!("the instance serving the connection is gone; closing it");
            end(gw, id, Some(record), CLOSE_GOING_AWAY, "reconnect").await;
        }
        Err(e) => tracing::warn!(error = %e, "checking the serving instance failed"),
    }
}

/// How often an instance looks for connections whose serving instance is gone.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Runs for the life of the service: every 10 s, the connections claimed by an instance that
/// is gone (crashed: its liveness key expired, 30 s after its last refresh) are adopted — by one
/// instance — and closed with `bye` 1001, so their clients reconnect to a live instance at once
/// instead of at their next heartbeat.
pub async fn sweep_orphans(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tick.tick().await;
        let orphans = match gw.connections.adopt_orphans().await {
            Ok(orphans) => orphans,
            Err(e) => {
                tracing::warn!(error = %e, "looking for orphaned gateway connections failed");
                continue;
            }
        };
        for id in orphans {
            let record = match gw.connections.get(&id).await {
                Ok(Some(record)) => serde_json::from_str::<Record>(&record).ok(),
                _ => None,
            };
            tracing::info!(
                connection = id,
                "closing a connection whose instance is gone"
            );
            end(&gw, &id, record.as_ref(), CLOSE_GOING_AWAY, "reconnect").await;
        }
    }
}

/// How the serving task ends.
enum Ending {
    /// `bye` with this code, then closed.
    Close(u16, &'static str),
    /// `resync`, then closed.
    Resync(&'static str),
    /// The connection is gone already.
    Gone,
}

/// Posts `msg`; `Err` with the ending a failure means.
async fn post(
    gw: &Gateway,
    state: &StateService,
    id: &str,
    msg: &ServerMessage,
) -> Result<(), Ending> {
    let data = serde_json::to_vec(msg).expect("messages serialise");
    if data.len() > MESSAGE_MAX {
        // Never happens with today's messages (a change is a few hundred bytes, presence lists
        // 32 devices at most); should one grow, the journal says the same.
        tracing::warn!(
            bytes = data.len(),
            "message over API Gateway's limit, asking for a resync"
        );
        return Err(Ending::Resync("message too large for the gateway"));
    }
    match gw.management.post(id, data).await {
        Ok(()) => Ok(()),
        Err(ManagementError::Gone) => Err(Ending::Gone),
        Err(ManagementError::LimitExceeded) => {
            state.hub.metrics.queue_overflows.inc();
            Err(Ending::Resync("push rate exceeded"))
        }
        Err(e) => {
            // A push is a hint: the client's next catch-up finds what this one said.
            state.hub.metrics.gateway_failures.inc();
            tracing::warn!(error = %e, "push to a gateway connection failed");
            Ok(())
        }
    }
}

/// The serving instance's side of a connection after `hello`: its queue drained into
/// `@connections` POSTs, `reauth` and expiry, shutdown; then the connection let go.
async fn serve(
    state: StateService,
    gw: Arc<Gateway>,
    id: Arc<str>,
    mut reg: Registration,
    mut record: Record,
) {
    let metrics = &state.hub.metrics;
    let mut shutdown = state.hub.shutdown_signal();
    let welcome = ServerMessage::Welcome {
        device_id: record.device_id.clone().expect("set by hello"),
        connection_id: id.to_string(),
        limits: Some(gw.limits),
    };
    let ending = match post(&gw, &state, &id, &welcome).await {
        Err(ending) => ending,
        Ok(()) => {
            let mut reauth_sent = false;
            loop {
                let reauth_at = instant_at(reauth_time(&record.user()));
                let expired_at = instant_at(record.expires_at + REAUTH_GRACE_SECS);
                tokio::select! {
                    _ = tokio::time::sleep_until(reauth_at), if !reauth_sent => {
                        reauth_sent = true;
                        let reauth = ServerMessage::Reauth { expires_at: record.expires_at };
                        if let Err(ending) = post(&gw, &state, &id, &reauth).await {
                            break ending;
                        }
                    }
                    _ = tokio::time::sleep_until(expired_at) => {
                        // The fresh token may have reached another instance: it is recorded.
                        match gw.connections.get(&id).await {
                            Ok(Some(current)) => match serde_json::from_str::<Record>(&current) {
                                Ok(current) if current.expires_at > record.expires_at => {
                                    record = current;
                                    reauth_sent = false;
                                }
                                _ => {
                                    tracing::info!("token expired without reauth, closing");
                                    break Ending::Close(CLOSE_UNAUTHORIZED, "token expired");
                                }
                            },
                            Ok(None) => break Ending::Gone,
                            Err(e) => {
                                tracing::warn!(error = %e, "reading the connection failed");
                                break Ending::Close(CLOSE_GOING_AWAY, "registry unavailable");
                            }
                        }
                    }
                    queued = reg.rx.recv() => {
                        match reg.ended.get() {
                            ENDED_OVERFLOW => break Ending::Resync("push queue overflow"),
                            ENDED_REVOKED => break Ending::Close(syncsphere_protocol::ws::CLOSE_DEVICE_REVOKED, "device revoked"),
                            ENDED_SIGNED_OUT => break Ending::Close(CLOSE_UNAUTHORIZED, "signed out"),
                            ENDED_GONE => break Ending::Gone,
                            _ => {}
                        }
                        let Some(queued) = queued else { break Ending::Gone };
                        if let Err(ending) = post(&gw, &state, &id, &queued.msg).await {
                            break ending;
                        }
                        metrics.messages_pushed.inc();
                        if matches!(*queued.msg, ServerMessage::Change(_)) {
                            metrics.push_latency.observe(queued.since.elapsed().as_secs_f64());
                        }
                    }
                    _ = shutdown.changed() => break Ending::Close(CLOSE_GOING_AWAY, "server shutting down"),
                }
            }
        }
    };
    match ending {
        Ending::Close(code, reason) => {
            let bye = ServerMessage::Bye {
                code,
                reason: reason.into(),
            };
            let _ = post(&gw, &state, &id, &bye).await;
            close(&gw, &id).await;
        }
        Ending::Resync(reason) => {
            let resync = ServerMessage::Resync {
                reason: reason.into(),
            };
            let _ = post(&gw, &state, &id, &resync).await;
            close(&gw, &id).await;
        }
        Ending::Gone => {}
    }
    if let Err(e) = gw.connections.remove(&id).await {
        tracing::warn!(error = %e, "forgetting the connection failed");
    }
    state.hub.unregister(&record.user_id, reg.id);
    state.subscriber.release(&record.user_id);
    tracing::info!(conn = reg.id, "gateway device disconnected");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_comes_from_an_execute_api_host() {
        assert_eq!(
            region_of("https://abc123.execute-api.eu-west-1.amazonaws.com/prod").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(region_of("http://127.0.0.1:9000/prod"), None);
        assert_eq!(region_of("https://push.example.com/prod"), None);
    }
}
