//! One WebSocket connection: auth, `hello`/`welcome`, pushes, heartbeats, shutdown.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use syncsphere_auth::{AuthRejection, AuthUser};
use syncsphere_protocol::ws::{
    CLOSE_GOING_AWAY, CLOSE_PROTOCOL, CLOSE_RESYNC, ClientMessage, ServerMessage,
};

use crate::StateService;

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
const PING_INTERVAL: Duration = Duration::from_secs(20);
/// A peer silent for this long (no pong, no message) is considered dead.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) async fn upgrade(
    State(state): State<StateService>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let user = match AuthUser::from_headers(&headers, &state.verifier).await {
        Ok(user) => user,
        Err(e) => return AuthRejection(e).into_response(),
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

async fn run(mut socket: WebSocket, user: AuthUser, state: StateService) {
    let hello = tokio::time::timeout(HELLO_TIMEOUT, socket.recv()).await;
    let device_id = match hello {
        Ok(Some(Ok(Message::Text(text)))) => match serde_json::from_str::<ClientMessage>(&text) {
            Ok(ClientMessage::Hello { device_id, .. })
                if !device_id.is_empty() && device_id.len() <= 128 =>
            {
                device_id
            }
            _ => return close(&mut socket, CLOSE_PROTOCOL, "expected hello").await,
        },
        _ => return close(&mut socket, CLOSE_PROTOCOL, "expected hello").await,
    };
    let span = tracing::info_span!("ws", user = %user.user_id, device = %device_id);
    let _enter = span.enter();
    let mut reg = state.hub.register(&user.user_id, &device_id);
    tracing::info!(conn = reg.id, "device connected");
    let mut shutdown = state.hub.shutdown_signal();
    let welcome = ServerMessage::Welcome {
        device_id: device_id.clone(),
        connection_id: reg.id.to_string(),
    };
    if send(&mut socket, &welcome).await.is_ok() {
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.tick().await;
        let mut last_heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                msg = reg.rx.recv() => match msg {
                    Some(msg) => {
                        if send(&mut socket, &msg).await.is_err() {
                            break;
                        }
                    }
                    None => {
                        if reg.overflowed.load(Ordering::Relaxed) {
                            let _ = send(&mut socket, &ServerMessage::Resync { reason: "push queue overflow".into() }).await;
                            close(&mut socket, CLOSE_RESYNC, "resync").await;
                        }
                        break;
                    }
                },
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
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
    tracing::info!(conn = reg.id, "device disconnected");
}
