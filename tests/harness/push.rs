//! A raw WebSocket "device" speaking the push protocol directly, to observe what the State
//! service sends.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use syncsphere_protocol::endpoint::{self, Endpoint};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// `ws://…/v1/ws` of a server's `http://…` base URL.
fn push_url(base_url: &str) -> String {
    let base = base_url.replacen("http://", "ws://", 1);
    format!("{base}{}", endpoint::PushSocket::PATH)
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to `{base_url}/v1/ws` with a bearer token, says hello and waits for `welcome`.
pub async fn raw_device(base_url: &str, token: &str, device_id: &str) -> Ws {
    let mut req = push_url(base_url).into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("ws connect");
    hello(ws, device_id).await
}

/// [`raw_device`] over a TCP connection the caller made (e.g. with a small receive buffer).
pub async fn raw_device_on(
    stream: tokio::net::TcpStream,
    base_url: &str,
    token: &str,
    device_id: &str,
) -> Ws {
    let mut req = push_url(base_url).into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, _) =
        tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .expect("ws connect");
    hello(ws, device_id).await
}

async fn hello(mut ws: Ws, device_id: &str) -> Ws {
    let hello = serde_json::json!({"type": "hello", "device_id": device_id, "cursor": 0});
    ws.send(Message::Text(hello.to_string().into()))
        .await
        .unwrap();
    let welcome = next_json(&mut ws, Duration::from_secs(10))
        .await
        .expect("welcome");
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    ws
}

/// The next JSON text message within `timeout`.
pub async fn next_json(ws: &mut Ws, timeout: Duration) -> Option<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .ok()??
            .ok()?;
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).ok();
        }
    }
}

/// The next `change` push, skipping `presence` and other messages.
pub async fn next_change(ws: &mut Ws, timeout: Duration) -> Option<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let msg = next_json(ws, left).await?;
        if msg["type"] == "change" {
            return Some(msg);
        }
    }
}

/// Waits (up to 20 s) for the server to close the socket with `code`.
pub async fn expect_close(ws: &mut Ws, code: u16) {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(
                    u16::from(frame.code),
                    code,
                    "close reason {:?}",
                    frame.reason
                );
                return;
            }
            Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a close frame with code {code}, got {other:?}"),
        }
    }
}

/// The HTTP status with which `{base_url}/v1/ws` refuses an upgrade carrying
/// `authorization` (panics if the upgrade is accepted).
pub async fn refused_upgrade(base_url: &str, authorization: &str) -> u16 {
    let mut req = push_url(base_url).into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", authorization.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        other => panic!(
            "expected the upgrade to be refused, got {:?}",
            other.map(|_| ())
        ),
    }
}

/// The online device ids of the next `presence` message that satisfies `want` (within 10 s).
pub async fn presence_until(ws: &mut Ws, want: impl Fn(&[String]) -> bool) -> Vec<String> {
    loop {
        let m = next_json(ws, Duration::from_secs(10))
            .await
            .expect("a presence message in time");
        if m["type"] != "presence" {
            continue;
        }
        let ids: Vec<String> = m["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["device_id"].as_str().unwrap().to_owned())
            .collect();
        if want(&ids) {
            return ids;
        }
    }
}
