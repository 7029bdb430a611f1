//! One WebSocket connection: auth, `hello`/`welcome`, pushes, heartbeats, shutdown.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use syncsphere_auth::{AuthError, AuthRejection, AuthUser};
use syncsphere_protocol::ws::{
    CLOSE_DEVICE_REVOKED, CLOSE_GOING_AWAY, CLOSE_PROTOCOL, CLOSE_RESYNC,
    CLOSE_TOO_MANY_CONNECTIONS, CLOSE_UNAUTHORIZED, ClientMessage, ServerMessage,
};

use tracing::Instrument;

use crate::StateService;
use crate::hub::{ENDED_OVERFLOW, ENDED_REVOKED};

/// A browser without an `Authorization` header must send `auth` within this time.
const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
const PING_INTERVAL: Duration = Duration::from_secs(20);
/// A peer silent for this long (no pong, no message) is considered dead.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long after its token's expiry a connection that ignored `reauth` is closed.
const REAUTH_GRACE_SECS: u64 = 10;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The instant `unix_secs` (seconds since the epoch) on tokio's clock.
fn instant_at(unix_secs: u64) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(unix_secs.saturating_sub(unix_now()))
}

/// When to ask for a fresh token: a minute before expiry, or halfway through short lifetimes.
fn reauth_time(user: &AuthUser) -> u64 {
    let lifetime = user
        .issued_at
        .map_or(3600, |iat| user.expires_at.saturating_sub(iat));
    user.expires_at.saturating_sub((lifetime / 2).min(60))
}

/// Checks the token of an `auth` message sent on a live connection.
async fn fresh_user(state: &StateService, token: &str) -> Result<AuthUser, AuthError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        format!("Bearer {token}")
            .parse()
            .map_err(|_| AuthError::Malformed("not a header value".into()))?,
    );
    AuthUser::from_headers(&headers, &state.verifier).await
}

/// The close code for a token that was refused.
fn refused(e: &AuthError) -> (u16, &'static str) {
    match e {
        AuthError::DeviceRevoked => (CLOSE_DEVICE_REVOKED, "device revoked"),
        _ => (CLOSE_UNAUTHORIZED, "invalid token"),
    }
}

pub(crate) async fn upgrade(
    State(state): State<StateService>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // Native clients authenticate the upgrade itself; a header that is present must be valid.
    let user = if headers.contains_key(header::AUTHORIZATION) {
        match AuthUser::from_headers(&headers, &state.verifier).await {
            Ok(user) => Some(user),
            Err(e) => return AuthRejection(e).into_response(),
        }
    } else {
        None
    };
    // Small buffers: an idle connection must cost kilobytes, not tungstenite's 2×128 KiB.
    ws.read_buffer_size(4096)
        .write_buffer_size(4096)
        .max_message_size(64 * 1024)
        .max_frame_size(64 * 1024)
        .on_upgrade(move |socket| async move {
            run(socket, user, state).await;
        })
}

async fn send(socket: &mut WebSocket, msg: &ServerMessage) -> Result<(), axum::Error> {
    let text = serde_json::to_string(msg).expect("server messages serialise");
    socket.send(Message::Text(text.into())).await
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        })))
        .await;
}

/// The next client message, if it arrives in time and parses.
async fn first_message(socket: &mut WebSocket, within: Duration) -> Option<ClientMessage> {
    match tokio::time::timeout(within, socket.recv()).await {
        Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str(&text).ok(),
        _ => None,
    }
}

async fn run(mut socket: WebSocket, user: Option<AuthUser>, state: StateService) {
    let user = match user {
        Some(user) => user,
        None => {
            let Some(ClientMessage::Auth { token }) =
                first_message(&mut socket, AUTH_TIMEOUT).await
            else {
                return close(&mut socket, CLOSE_UNAUTHORIZED, "expected auth").await;
            };
            match fresh_user(&state, &token).await {
                Ok(user) => user,
                Err(e) => {
                    let (code, reason) = refused(&e);
                    return close(&mut socket, code, reason).await;
                }
            }
        }
    };
    let (device_id, device_name) = match first_message(&mut socket, HELLO_TIMEOUT).await {
        Some(ClientMessage::Hello {
            device_id,
            device_name,
            ..
        }) if !device_id.is_empty() && device_id.len() <= 128 => (
            device_id,
            device_name.map(|n| n.chars().take(128).collect()),
        ),
        _ => return close(&mut socket, CLOSE_PROTOCOL, "expected hello").await,
    };
    // A device-bound token speaks for its device only (else a revoked device could reconnect
    // under another id, or a device could pose as another one).
    if user
        .device_key
        .as_ref()
        .is_some_and(|bound| *bound != device_id)
    {
        return close(
            &mut socket,
            CLOSE_PROTOCOL,
            "device id does not match the token",
        )
        .await;
    }
    // The span must be attached to the future, not entered across `.await`s: an entered guard
    // would leak into whatever else runs on this worker thread (other connections' logs).
    let span = tracing::info_span!("ws", user = %user.user_id, device = %device_id);
    serve(socket, user, device_id, device_name, state)
        .instrument(span)
        .await;
}

/// A connection after `hello`: registration, pushes, heartbeats, reauth, shutdown.
async fn serve(
    mut socket: WebSocket,
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
        return close(&mut socket, CLOSE_GOING_AWAY, "fan-out unavailable").await;
    }
    let user_id = user.user_id.clone();
    let release = |state: &StateService| state.subscriber.release(&user_id);
    let Ok(mut reg) = state.hub.register(&user.user_id, &device_id, device_name) else {
        tracing::warn!("connection limit reached");
        release(&state);
        return close(
            &mut socket,
            CLOSE_TOO_MANY_CONNECTIONS,
            "too many connections",
        )
        .await;
    };
    // A revocation between the token check and the registration found no socket to close.
    if let Some(device) = &user.device_key
        && !matches!(
            state.verifier.device_revoked(&user.user_id, device).await,
            Ok(false)
        )
    {
        state.hub.unregister(&user.user_id, reg.id);
        release(&state);
        return close(&mut socket, CLOSE_DEVICE_REVOKED, "device revoked").await;
    }
    tracing::info!(conn = reg.id, "device connected");
    let mut shutdown = state.hub.shutdown_signal();
    let metrics = &state.hub.metrics;
    let welcome = ServerMessage::Welcome {
        device_id: device_id.clone(),
        connection_id: reg.id.to_string(),
    };
    if send(&mut socket, &welcome).await.is_ok() {
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.tick().await;
        let mut last_heard = tokio::time::Instant::now();
        let mut reauth_sent = false;
        loop {
            let reauth_at = instant_at(reauth_time(&user));
            let expired_at = instant_at(user.expires_at + REAUTH_GRACE_SECS);
            tokio::select! {
                _ = tokio::time::sleep_until(reauth_at), if !reauth_sent => {
                    reauth_sent = true;
                    if send(&mut socket, &ServerMessage::Reauth { expires_at: user.expires_at }).await.is_err() {
                        break;
                    }
                }
                _ = tokio::time::sleep_until(expired_at) => {
                    tracing::info!("token expired without reauth, closing");
                    close(&mut socket, CLOSE_UNAUTHORIZED, "token expired").await;
                    break;
                }
                queued = reg.rx.recv() => match queued {
                    Some(queued) => {
                        if send(&mut socket, &queued.msg).await.is_err() {
                            break;
                        }
                        metrics.messages_pushed.inc();
                        if matches!(*queued.msg, ServerMessage::Change(_)) {
                            metrics.push_latency.observe(queued.since.elapsed().as_secs_f64());
                        }
                    }
                    None => {
                        match reg.ended.load(Ordering::Relaxed) {
                            ENDED_OVERFLOW => {
                                let _ = send(&mut socket, &ServerMessage::Resync { reason: "push queue overflow".into() }).await;
                                close(&mut socket, CLOSE_RESYNC, "resync").await;
                            }
                            ENDED_REVOKED => close(&mut socket, CLOSE_DEVICE_REVOKED, "device revoked").await,
                            _ => {}
                        }
                        break;
                    }
                },
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(Message::Text(text))) => {
                        last_heard = tokio::time::Instant::now();
                        if let Ok(ClientMessage::Auth { token }) = serde_json::from_str(&text) {
                            match fresh_user(&state, &token).await {
                                Ok(fresh) if fresh.user_id == user.user_id && fresh.device_key == user.device_key => {
                                    if fresh.expires_at > user.expires_at {
                                        reauth_sent = false;
                                    }
                                    user = fresh;
                                }
                                Ok(_) => {
                                    close(&mut socket, CLOSE_UNAUTHORIZED, "token of another user or device").await;
                                    break;
                                }
                                Err(e) => {
                                    let (code, reason) = refused(&e);
                                    close(&mut socket, code, reason).await;
                                    break;
                                }
                            }
                        }
                    }
                    Some(Ok(_)) => last_heard = tokio::time::Instant::now(),
                },
                _ = ping.tick() => {
                    if last_heard.elapsed() > IDLE_TIMEOUT {
                        tracing::info!("peer missed heartbeats, closing");
                        break;
                    }
                    if socket.send(Message::Ping(Default::default())).await.is_err() {
                        break;
                    }
                }
                _ = shutdown.changed() => {
                    close(&mut socket, CLOSE_GOING_AWAY, "server shutting down").await;
                    break;
                }
            }
        }
    }
    state.hub.unregister(&user.user_id, reg.id);
    release(&state);
    tracing::info!(conn = reg.id, "device disconnected");
}
