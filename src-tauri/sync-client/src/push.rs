//! The push channel: a WebSocket to the State service that turns "another device committed
//! something" into an immediate sync pass. Reconnects with exponential backoff and jitter, and
//! every (re)connect triggers a catch-up from the journal cursor, so a missed push costs
//! latency, never data.

use std::sync::Arc;
use std::time::Duration;
use syncsphere_protocol::Seq;

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use syncsphere_protocol::ws::{
    CLOSE_DEVICE_REVOKED, CLOSE_DEVICE_UNREGISTERED, CLOSE_UNAUTHORIZED, ClientMessage,
    ConnectionLimits, ServerMessage,
};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::SyncError;
use crate::auth::TokenSource;
use crate::engine::Trigger;
use crate::status::Status;

/// The server pings every 20 s (behind API Gateway, the client pings and API Gateway
/// answers); this much silence means the connection is dead.
const SILENCE_LIMIT: Duration = Duration::from_secs(75);
/// How often the client pings when the server does not (a connection through API Gateway).
const CLIENT_PING: Duration = Duration::from_secs(25);
/// `welcome` not come this long after `hello`: the connection is of no use (behind API
/// Gateway, a `hello` whose integration call failed is lost, and the socket stays open).
const WELCOME_TIMEOUT: Duration = Duration::from_secs(15);

/// For a connection whose carrier has `limits` (API Gateway): how often to send a `ping`
/// message (half the idle timeout, at most 5 minutes, at least 1 s), and when to reconnect
/// ahead of the maximum duration (5 minutes before, less up to 2 minutes of jitter so that
/// many clients do not reconnect at once; at least half the duration).
pub(crate) fn gateway_timers(limits: ConnectionLimits) -> (Duration, Duration) {
    let heartbeat = (limits.idle_timeout_secs / 2).clamp(1, 300);
    let jitter = rand::thread_rng().gen_range(0..=120);
    let lifetime = limits
        .max_duration_secs
        .saturating_sub(300 + jitter)
        .max(limits.max_duration_secs / 2);
    (
        Duration::from_secs(heartbeat),
        Duration::from_secs(lifetime),
    )
}

/// The WebSocket URL of a push endpoint: a `ws(s)://` URL as it is (API Gateway's WebSocket
/// API), else the State service's `/v1/ws` under an `http(s)://` base.
pub(crate) fn push_socket_url(base: &str) -> String {
    if base.starts_with("wss://") || base.starts_with("ws://") {
        return base.to_owned();
    }
    format!(
        "{}/v1/ws",
        base.trim_end_matches('/')
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1)
    )
}

/// Delay before retry number `failures` (1-based): exponential from 0.5 s, capped at 30 s, with
/// "equal jitter" so that many clients do not reconnect in lockstep.
pub(crate) fn backoff(failures: u32) -> Duration {
    let base_ms = 500u64
        .saturating_mul(1 << failures.saturating_sub(1).min(6))
        .min(30_000);
    let jitter = rand::thread_rng().gen_range(0..=base_ms / 2);
    Duration::from_millis(base_ms / 2 + jitter)
}

pub(crate) struct Push {
    /// Push endpoints; connections start at a random one and move to the next on failure.
    pub ws_urls: Vec<String>,
    pub tokens: Arc<TokenSource>,
    /// Registers the device when the server says the session speaks for none (4005).
    pub api: Arc<crate::api::Api>,
    pub device_id: String,
    pub device_name: String,
    pub cursor: watch::Receiver<i64>,
    pub triggers: mpsc::Sender<Trigger>,
    pub status: watch::Sender<Status>,
}

impl Push {
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut failures = 0u32;
        // Set when the channel was lost: the first reconnect that fails asks for a pass again.
        let mut recheck = false;
        let mut next = rand::thread_rng().gen_range(0..self.ws_urls.len().max(1));
        loop {
            let url = self.ws_urls[next % self.ws_urls.len()].clone();
            next += 1;
            let mut session_stop = stop.clone();
            let outcome = tokio::select! {
                r = self.session(&url, &mut session_stop) => r,
                _ = stop.changed() => return,
            };
            let was_connected = self.status.borrow().connected;
            self.status.send_modify(|s| {
                s.connected = false;
                // Presence is only known while connected.
                s.online_devices.clear();
            });
            // Find out at once whether the server itself is gone, so the status says "offline"
            // instead of a stale "up to date". A server that drains closes push sockets before
            // it stops answering requests, so the pass at the disconnect may still succeed: the
            // first reconnect that fails asks again.
            if was_connected || (recheck && outcome.is_err()) {
                let _ = self.triggers.try_send(Trigger::Remote);
                recheck = was_connected;
            }
            match outcome {
                Ok(()) => failures = 1,
                Err(e) => {
                    failures += 1;
                    tracing::info!(error = %e, "push channel down");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff(failures)) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// One connection, from connect to close.
    async fn session(&self, url: &str, stop: &mut watch::Receiver<bool>) -> Result<(), SyncError> {
        let token = self.tokens.access_token().await?;
        let mut request = url
            .into_client_request()
            .map_err(|e| SyncError::Config(format!("bad push URL {url}: {e}")))?;
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| SyncError::Auth(e.to_string()))?,
        );
        // tungstenite's default 128 KiB read buffer is zeroed for every read; push messages
        // are a few hundred bytes (larger ones are read in several pieces).
        let config = WebSocketConfig::default()
            .read_buffer_size(8 * 1024)
            .write_buffer_size(8 * 1024);
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
            .await
            .map_err(|e| SyncError::Offline(format!("push channel: {e}")))?;
        let hello = ClientMessage::Hello {
            device_id: self.device_id.clone().into(),
            cursor: Seq(*self.cursor.borrow()),
            device_name: Some(self.device_name.clone()),
        };
        ws.send(Message::Text(
            serde_json::to_string(&hello)
                .expect("hello serialises")
                .into(),
        ))
        .await
        .map_err(|e| SyncError::Offline(format!("push channel: {e}")))?;
        let send_err = |e| SyncError::Offline(format!("push channel: {e}"));
        // Behind API Gateway (`welcome` says its limits): the client pings, sends heartbeats
        // and reconnects before the connection's maximum duration.
        let far = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let mut ping_at = far;
        let mut heartbeat: Option<Duration> = None;
        let mut heartbeat_at = far;
        let mut renew_at = far;
        let mut welcome_by = Some(tokio::time::Instant::now() + WELCOME_TIMEOUT);
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(SILENCE_LIMIT, ws.next()) => next,
                _ = stop.changed() => {
                    let _ = ws.close(None).await;
                    return Ok(());
                }
                _ = tokio::time::sleep_until(ping_at) => {
                    ws.send(Message::Ping(Vec::new().into())).await.map_err(send_err)?;
                    ping_at = tokio::time::Instant::now() + CLIENT_PING;
                    continue;
                }
                _ = tokio::time::sleep_until(heartbeat_at) => {
                    let ping = serde_json::to_string(&ClientMessage::Ping).expect("ping serialises");
                    ws.send(Message::Text(ping.into())).await.map_err(send_err)?;
                    heartbeat_at = tokio::time::Instant::now() + heartbeat.unwrap_or(Duration::MAX / 4);
                    continue;
                }
                _ = tokio::time::sleep_until(welcome_by.unwrap_or(far)) => {
                    let _ = ws.close(None).await;
                    return Err(SyncError::Offline("push channel: no welcome".into()));
                }
                _ = tokio::time::sleep_until(renew_at) => {
                    // The carrier would close it soon: a new connection (and a catch-up) now.
                    tracing::info!("renewing the push connection before its maximum duration");
                    let _ = ws.close(None).await;
                    return Ok(());
                }
            };
            let msg = match next {
                Err(_) => return Err(SyncError::Offline("push channel went silent".into())),
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => return Err(SyncError::Offline(format!("push channel: {e}"))),
                Ok(Some(Ok(msg))) => msg,
            };
            let Message::Text(text) = msg else {
                if let Message::Close(frame) = msg {
                    tracing::info!(?frame, "server closed the push channel");
                    return self.closed(frame.as_ref().map(|f| u16::from(f.code))).await;
                }
                continue; // pings are answered by tungstenite
            };
            match serde_json::from_str::<ServerMessage>(&text) {
                Ok(ServerMessage::Bye { code, reason }) => {
                    // A close code API Gateway cannot carry; the close (1000) follows.
                    tracing::info!(code, reason, "server ended the push channel");
                    let _ = ws.close(None).await;
                    return self.closed(Some(code)).await;
                }
                Ok(ServerMessage::Welcome {
                    connection_id,
                    limits,
                    ..
                }) => {
                    tracing::info!(connection_id, ?limits, "push channel connected");
                    welcome_by = None;
                    if let Some(limits) = limits {
                        let (every, lifetime) = gateway_timers(limits);
                        let now = tokio::time::Instant::now();
                        heartbeat = Some(every);
                        heartbeat_at = now + every;
                        ping_at = now + CLIENT_PING;
                        renew_at = now + lifetime;
                    }
                    self.status.send_modify(|s| s.connected = true);
                    // Catch up on whatever happened while disconnected.
                    let _ = self.triggers.try_send(Trigger::Remote);
                }
                Ok(ServerMessage::Change(change)) => {
                    tracing::debug!(seq = change.seq.get(), path = change.path, "push");
                    if change.seq > Seq(*self.cursor.borrow()) {
                        let _ = self.triggers.try_send(Trigger::Remote);
                    }
                }
                Ok(ServerMessage::Reauth { expires_at }) => {
                    let token = self.tokens.token_expiring_after(expires_at).await?;
                    let auth = ClientMessage::Auth { token };
                    ws.send(Message::Text(
                        serde_json::to_string(&auth)
                            .expect("auth serialises")
                            .into(),
                    ))
                    .await
                    .map_err(send_err)?;
                    tracing::debug!("answered reauth with a fresh token");
                }
                Ok(ServerMessage::Presence { devices }) => {
                    tracing::debug!(online = devices.len(), "presence");
                    let mut online: Vec<String> = devices
                        .into_iter()
                        .map(|d| d.device_id.into_string())
                        .collect();
                    online.sort();
                    online.dedup();
                    self.status.send_if_modified(|s| {
                        let changed = s.online_devices != online;
                        s.online_devices = online;
                        changed
                    });
                }
                Ok(ServerMessage::Resync { reason }) => {
                    tracing::info!(reason, "server asked for a resync");
                    let _ = self.triggers.try_send(Trigger::Remote);
                }
                Err(e) => tracing::warn!(error = %e, "unknown push message"),
            }
        }
    }

    /// The end of a connection the server closed with `code` (a close frame's, or `bye`'s).
    async fn closed(&self, code: Option<u16>) -> Result<(), SyncError> {
        if code == Some(CLOSE_DEVICE_UNREGISTERED) {
            // Our sign-in session is bound to no device (registration at start failed, e.g.
            // offline): register now, then the next connection speaks for this device.
            tracing::info!("push channel: the device is not registered; registering it");
            return self.api.register_device(&self.device_name).await;
        }
        if code == Some(CLOSE_DEVICE_REVOKED) {
            // The engine's next request learns the same and stops the sync.
            let _ = self.triggers.try_send(Trigger::Remote);
            return Err(SyncError::DeviceRevoked);
        }
        // Refused token (e.g. signed out everywhere): the engine's next request says whether
        // the session ended, and stops the sync if so.
        if code == Some(CLOSE_UNAUTHORIZED) {
            let _ = self.triggers.try_send(Trigger::Remote);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters_within_bounds() {
        for failures in 1..20 {
            let base = (500u64 << (failures - 1).min(6)).min(30_000);
            let d = backoff(failures).as_millis() as u64;
            assert!(
                d >= base / 2 && d <= base,
                "failures {failures}: {d} ms not in [{}, {base}]",
                base / 2
            );
        }
        assert!(backoff(30) <= Duration::from_secs(30));
    }

    #[test]
    fn gateway_timers_beat_the_idle_timeout_and_renew_before_the_maximum() {
        let aws = ConnectionLimits {
            idle_timeout_secs: 600,
            max_duration_secs: 7200,
        };
        for _ in 0..50 {
            let (heartbeat, lifetime) = gateway_timers(aws);
            assert_eq!(heartbeat, Duration::from_secs(300));
            assert!(
                lifetime >= Duration::from_secs(7200 - 420)
                    && lifetime <= Duration::from_secs(7200 - 300),
                "{lifetime:?}"
            );
        }
        // Test-sized limits stay sensible.
        let (heartbeat, lifetime) = gateway_timers(ConnectionLimits {
            idle_timeout_secs: 4,
            max_duration_secs: 60,
        });
        assert_eq!(heartbeat, Duration::from_secs(2));
        assert_eq!(lifetime, Duration::from_secs(30));
    }

    #[test]
    fn push_urls_are_service_bases_or_whole_websocket_urls() {
        assert_eq!(
            push_socket_url("https://sync.example.com/"),
            "wss://sync.example.com/v1/ws"
        );
        assert_eq!(
            push_socket_url("http://127.0.0.1:8787"),
            "ws://127.0.0.1:8787/v1/ws"
        );
        // API Gateway's WebSocket API: its URL as the stack prints it.
        let apigw = "wss://abc123.execute-api.eu-west-1.amazonaws.com/prod";
        assert_eq!(push_socket_url(apigw), apigw);
        assert_eq!(
            push_socket_url("ws://127.0.0.1:9/prod"),
            "ws://127.0.0.1:9/prod"
        );
    }
}
