//! One WebSocket connection: auth, `hello`/`welcome`, pushes, heartbeats, shutdown, and how it
//! ends (which close code, after what). Bounded writes and the close handshake are `socket.rs`'s.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::{BoxFuture, FutureExt};
use syncsphere_auth::{AuthError, AuthRejection, AuthUser};
use syncsphere_protocol::ws::{
    CLOSE_DEVICE_REVOKED, CLOSE_DEVICE_UNREGISTERED, CLOSE_GOING_AWAY, CLOSE_PROTOCOL,
    CLOSE_RESYNC, CLOSE_TOO_MANY_CONNECTIONS, CLOSE_UNAUTHORIZED, ClientMessage, ServerMessage,
};
use syncsphere_protocol::{ApiError, ErrorCode};

use tracing::Instrument;

use crate::StateService;
use crate::hub::{ENDED_OVERFLOW, ENDED_REVOKED, ENDED_SIGNED_OUT};
use crate::metrics::PushMetrics;
use crate::socket::{Incoming, Socket, WriteError};

/// A browser without an `Authorization` header must send `auth` within this time.
const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after its token's expiry a connection that ignored `reauth` is closed.
pub(crate) const REAUTH_GRACE_SECS: u64 = 10;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The instant `unix_secs` (seconds since the epoch) on tokio's clock.
pub(crate) fn instant_at(unix_secs: u64) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(unix_secs.saturating_sub(unix_now()))
}

/// When to ask for a fresh token: a minute before expiry, or halfway through short lifetimes.
pub(crate) fn reauth_time(user: &AuthUser) -> u64 {
    let lifetime = user
        .issued_at
        .map_or(3600, |iat| user.expires_at.saturating_sub(iat));
    user.expires_at.saturating_sub((lifetime / 2).min(60))
}

/// Checks the token of an `auth` message sent on a live connection. Boxed, like the close
/// path (`socket.rs`): a token check (~1.5 KiB of future) is rare, the loop around it is not.
pub(crate) fn fresh_user<'a>(
    state: &'a StateService,
    token: &'a str,
) -> BoxFuture<'a, Result<AuthUser, AuthError>> {
    async move {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}")
                .parse()
                .map_err(|_| AuthError::Malformed("not a header value".into()))?,
        );
        AuthUser::from_headers(&headers, &state.verifier).await
    }
    .boxed()
}

/// Whether a token sent on a live connection may carry on the connection of `user`'s device
/// `device_id`: the same user and the same device binding — or a binding its session gained
/// since (the device registered meanwhile, 0038) to this very device.
pub(crate) fn same_session(user: &AuthUser, fresh: &AuthUser, device_id: &str) -> bool {
    fresh.user_id == user.user_id
        && (fresh.device_key == user.device_key
            || (user.device_key.is_none()
                && fresh.device_key.as_ref().is_some_and(|d| *d == device_id)))
}

/// The revocation check after a connection registered (a revocation or sign-out between the
/// token check and the registration found nothing to close), for the device the connection
/// speaks for: a token bound to no device (a tool's, a session that never registered) names it
/// in `hello` only, and a revoked one is refused as its own tokens are.
pub(crate) async fn check_registered(
    state: &StateService,
    user: &AuthUser,
    device_id: &str,
) -> Result<(), AuthError> {
    let speaking_for = AuthUser {
        device_key: Some(user.device_key.clone().unwrap_or_else(|| device_id.into())),
        ..user.clone()
    };
    state
        .verifier
        .check_revocations(&speaking_for)
        .await
        .map(|_| ())
}

/// The close code for a token that was refused.
pub(crate) fn refused(e: &AuthError) -> (u16, &'static str) {
    match e {
        AuthError::DeviceRevoked => (CLOSE_DEVICE_REVOKED, "device revoked"),
        AuthError::SignedOut => (CLOSE_UNAUTHORIZED, "signed out"),
        // Not the token's fault: the client reconnects later.
        AuthError::RevocationCheck(_) => (CLOSE_GOING_AWAY, "revocations unavailable"),
        _ => (CLOSE_UNAUTHORIZED, "invalid token"),
    }
}

pub(crate) async fn upgrade(
    State(state): State<StateService>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // Native clients authenticate the upgrade itself; a header that is present must be valid
    // (checked first, so a bad token is a 401 whatever else is wrong with the request).
    let user = if headers.contains_key(header::AUTHORIZATION) {
        match AuthUser::from_headers(&headers, &state.verifier).await {
            Ok(user) => Some(user),
            Err(e) => return AuthRejection(e).into_response(),
        }
    } else {
        None
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => return not_an_upgrade(e),
    };
    // Small buffers: an idle connection must cost kilobytes, not tungstenite's 2×128 KiB.
    ws.read_buffer_size(4096)
        .write_buffer_size(4096)
        .max_message_size(64 * 1024)
        .max_frame_size(64 * 1024)
        .on_upgrade(move |ws| async move {
            let socket = Socket::new(ws, state.timeouts, state.hub.metrics.sockets.clone());
            run(socket, user, state).await;
        })
}

/// A request to `/v1/ws` that is not a WebSocket upgrade: the framework's status (400, or 426
/// when the connection cannot be upgraded) and the code the table gives it.
fn not_an_upgrade(e: WebSocketUpgradeRejection) -> Response {
    let code = ErrorCode::for_status(e.status().as_u16());
    syncsphere_auth::api_error::respond(ApiError::new(
        code,
        format!("not a WebSocket upgrade: {}", e.body_text()),
    ))
}

/// Why a connection's first message (`auth`, `hello`) did not come.
enum Early {
    /// Something else came, or nothing in time.
    Unexpected,
    /// The peer closed.
    Closed,
    /// A frame over the size limit.
    TooBig,
    /// The connection is gone.
    Gone,
}

/// The next client message, if it arrives in time and parses.
async fn first_message(socket: &mut Socket, within: Duration) -> Result<ClientMessage, Early> {
    match tokio::time::timeout(within, socket.recv()).await {
        Ok(Incoming::Text(text)) => serde_json::from_str(&text).map_err(|_| Early::Unexpected),
        Ok(Incoming::Close) => Err(Early::Closed),
        Ok(Incoming::TooBig) => Err(Early::TooBig),
        Ok(Incoming::Gone) => Err(Early::Gone),
        Ok(Incoming::Other) | Err(_) => Err(Early::Unexpected),
    }
}

/// Ends a connection whose first message did not come: with `code`, unless the peer closed,
/// sent too much or is gone.
async fn refuse(socket: Socket, why: Early, code: u16, reason: &'static str) {
    match why {
        Early::Unexpected => socket.close(code, reason).await,
        Early::Closed => socket.answer_close().await,
        Early::TooBig => socket.close_too_big().await,
        Early::Gone => {}
    }
}

async fn run(mut socket: Socket, user: Option<AuthUser>, state: StateService) {
    let user = match user {
        Some(user) => user,
        None => match first_message(&mut socket, AUTH_TIMEOUT).await {
            Ok(ClientMessage::Auth { token }) => match fresh_user(&state, &token).await {
                Ok(user) => user,
                Err(e) => {
                    let (code, reason) = refused(&e);
                    return socket.close(code, reason).await;
                }
            },
            Ok(_) => return socket.close(CLOSE_UNAUTHORIZED, "expected auth").await,
            Err(why) => return refuse(socket, why, CLOSE_UNAUTHORIZED, "expected auth").await,
        },
    };
    let (device_id, device_name) = match first_message(&mut socket, HELLO_TIMEOUT).await {
        Ok(ClientMessage::Hello {
            device_id,
            device_name,
            ..
        }) if !device_id.is_empty() && device_id.len() <= 128 => (
            device_id,
            device_name.map(|n| n.chars().take(128).collect()),
        ),
        Ok(_) => return socket.close(CLOSE_PROTOCOL, "expected hello").await,
        Err(why) => return refuse(socket, why, CLOSE_PROTOCOL, "expected hello").await,
    };
    // A token speaks for the device it is bound to, and only for it (else a revoked device
    // could reconnect under another id, or a device could pose as another one); one bound to
    // no device yet must register first (issue 19: no `hello` as any device id).
    match &user.device_key {
        Some(bound) if *bound != device_id => {
            return socket
                .close(CLOSE_PROTOCOL, "device id does not match the token")
                .await;
        }
        Some(_) => {}
        None => {
            return socket
                .close(CLOSE_DEVICE_UNREGISTERED, "register the device first")
                .await;
        }
    }
    // The span must be attached to the future, not entered across `.await`s: an entered guard
    // would leak into whatever else runs on this worker thread (other connections' logs).
    let span = tracing::info_span!("ws", user = %user.user_id, device = %device_id);
    serve(socket, user, device_id.to_string(), device_name, state)
        .instrument(span)
        .await;
}

/// How a registered connection ends.
enum Ending {
    /// Our close frame with this code.
    Close(u16, &'static str),
    /// It fell behind (queue overflow, or a write that did not finish): `resync`, then 4000.
    Resync(&'static str),
    /// The peer closed: echo its close frame.
    PeerClosed,
    /// A frame over the size limit: 1009.
    TooBig,
    /// Nothing to say: the peer is gone or missed its heartbeats.
    Drop,
}

/// How a connection whose queue the hub ended (`ENDED_*`) ends, if it did.
fn ended(why: u8) -> Option<Ending> {
    match why {
        ENDED_OVERFLOW => Some(Ending::Resync("push queue overflow")),
        ENDED_REVOKED => Some(Ending::Close(CLOSE_DEVICE_REVOKED, "device revoked")),
        ENDED_SIGNED_OUT => Some(Ending::Close(CLOSE_UNAUTHORIZED, "signed out")),
        _ => None,
    }
}

/// The ending for a failed write.
fn write_failed(e: WriteError, metrics: &PushMetrics) -> Ending {
    match e {
        WriteError::Stalled => {
            tracing::warn!("socket write timed out (peer not reading), closing");
            metrics.write_timeouts.inc();
            Ending::Resync("socket write timed out")
        }
        WriteError::Gone => Ending::Drop,
    }
}

/// A connection after `hello`: registration, pushes, heartbeats, reauth, shutdown.
async fn serve(
    mut socket: Socket,
    user: AuthUser,
    device_id: String,
    device_name: Option<String>,
    state: StateService,
) {
    let mut user = user;
    // With several instances, subscribe to the user's channel before welcoming: the client's
    // catch-up after `welcome` then cannot miss a change committed in between.
    if let Err(e) = state.subscriber.hold(&user.user_id).await {
        tracing::error!(error = %e, "cannot subscribe to the user's changes");
        return socket.close(CLOSE_GOING_AWAY, "fan-out unavailable").await;
    }
    let user_id = user.user_id.clone();
    let release = |state: &StateService| state.subscriber.release(&user_id);
    let Ok(mut reg) = state.hub.register(&user.user_id, &device_id, device_name) else {
        tracing::warn!("connection limit reached");
        release(&state);
        return socket
            .close(CLOSE_TOO_MANY_CONNECTIONS, "too many connections")
            .await;
    };
    if let Err(e) = check_registered(&state, &user, &device_id).await {
        state.hub.unregister(&user.user_id, reg.id);
        release(&state);
        let (code, reason) = refused(&e);
        return socket.close(code, reason).await;
    }
    tracing::info!(conn = reg.id, "device connected");
    let mut shutdown = state.hub.shutdown_signal();
    let metrics = &state.hub.metrics;
    let welcome = ServerMessage::Welcome {
        device_id: device_id.clone().into(),
        connection_id: reg.id.to_string(),
        limits: None,
    };
    let ending = match socket.send(&welcome).await {
        Err(e) => write_failed(e, metrics),
        Ok(()) => {
            let mut ping = tokio::time::interval(state.timeouts.ping);
            ping.tick().await;
            let mut last_heard = tokio::time::Instant::now();
            let mut reauth_sent = false;
            loop {
                // Ended while a write waited (see below): no other write is tried.
                if let Some(ending) = ended(reg.ended.get()) {
                    break ending;
                }
                let reauth_at = instant_at(reauth_time(&user));
                let expired_at = instant_at(user.expires_at + REAUTH_GRACE_SECS);
                tokio::select! {
                    _ = tokio::time::sleep_until(reauth_at), if !reauth_sent => {
                        reauth_sent = true;
                        let reauth = ServerMessage::Reauth { expires_at: user.expires_at };
                        if let Err(e) = socket.send(&reauth).await {
                            break write_failed(e, metrics);
                        }
                    }
                    _ = tokio::time::sleep_until(expired_at) => {
                        tracing::info!("token expired without reauth, closing");
                        break Ending::Close(CLOSE_UNAUTHORIZED, "token expired");
                    }
                    queued = reg.rx.recv() => {
                        // Once the hub has ended the queue, what is still in it is not sent.
                        if let Some(ending) = ended(reg.ended.get()) {
                            break ending;
                        }
                        let Some(queued) = queued else { break Ending::Drop };
                        let sent = tokio::select! {
                            sent = socket.send(&queued.msg) => sent,
                            // The hub gave up on this connection while its write waits (a peer
                            // that stopped reading): stop waiting; the next turn reads why.
                            () = reg.ended.notified() => continue,
                        };
                        if let Err(e) = sent {
                            break write_failed(e, metrics);
                        }
                        metrics.messages_pushed.inc();
                        if matches!(*queued.msg, ServerMessage::Change(_)) {
                            metrics.push_latency.observe(queued.since.elapsed().as_secs_f64());
                        }
                    }
                    incoming = socket.recv() => match incoming {
                        Incoming::Close => break Ending::PeerClosed,
                        Incoming::TooBig => break Ending::TooBig,
                        Incoming::Gone => break Ending::Drop,
                        Incoming::Other => last_heard = tokio::time::Instant::now(),
                        Incoming::Text(text) => {
                            last_heard = tokio::time::Instant::now();
                            if let Ok(ClientMessage::Auth { token }) = serde_json::from_str(&text) {
                                match fresh_user(&state, &token).await {
                                    Ok(fresh) if same_session(&user, &fresh, &device_id) => {
                                        if fresh.expires_at > user.expires_at {
                                            reauth_sent = false;
                                        }
                                        user = fresh;
                                    }
                                    Ok(_) => break Ending::Close(CLOSE_UNAUTHORIZED, "token of another user or device"),
                                    Err(e) => {
                                        let (code, reason) = refused(&e);
                                        break Ending::Close(code, reason);
                                    }
                                }
                            }
                        }
                    },
                    _ = ping.tick() => {
                        if last_heard.elapsed() > state.timeouts.silence {
                            tracing::info!("peer missed heartbeats, closing");
                            metrics.silent_peers.inc();
                            break Ending::Drop;
                        }
                        if let Err(e) = socket.ping().await {
                            break write_failed(e, metrics);
                        }
                    }
                    _ = shutdown.changed() => break Ending::Close(CLOSE_GOING_AWAY, "server shutting down"),
                }
            }
        }
    };
    let leave = |state: &StateService| {
        state.hub.unregister(&user_id, reg.id);
        release(state);
        tracing::info!(conn = reg.id, "device disconnected");
    };
    // Our closing frames go out before the hub lets go (shutdown waits for that), then the
    // peer has what is left of the close timeout to answer.
    match ending {
        Ending::Close(code, reason) => {
            let deadline = socket.start_close(None, code, reason).await;
            leave(&state);
            socket.finish_close(deadline).await;
        }
        Ending::Resync(reason) => {
            let resync = ServerMessage::Resync {
                reason: reason.into(),
            };
            let deadline = socket
                .start_close(Some(&resync), CLOSE_RESYNC, "resync")
                .await;
            leave(&state);
            socket.finish_close(deadline).await;
        }
        Ending::PeerClosed => {
            leave(&state);
            socket.answer_close().await;
        }
        Ending::TooBig => {
            leave(&state);
            socket.close_too_big().await;
        }
        Ending::Drop => leave(&state),
    }
}
