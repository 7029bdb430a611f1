//! The listener against real sockets on 127.0.0.1: unfinished headers are cut off, an address
//! past its connection limit is refused with a JSON 429 (WebSockets counting until they close),
//! shutdown still ends idle connections; the binary's flag sets the limit; a stalled request
//! body is answered 408 and its connection closed, a slow but steady one is read.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::routing::get;
use futures_util::StreamExt;
use syncsphere_server::transport::{Transport, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `/healthz`, and `/ws`: a WebSocket that stays open until the client closes it.
fn app() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/ws",
            get(|ws: WebSocketUpgrade| async move {
                ws.on_upgrade(|mut socket| async move { while socket.recv().await.is_some() {} })
            }),
        )
}

/// Serves [`app`] with `transport`; dropping the sender shuts the server down.
async fn start(transport: Transport) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, app(), transport, async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// Sends `GET path` on a fresh connection and returns the status code and body.
async fn get_once(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .expect("an answer in time")
        .unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

/// How long the server keeps a connection that sent `bytes` and then nothing.
async fn held_after(addr: SocketAddr, bytes: &[u8]) -> Duration {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    // The end of the stream, or a reset: either way the server let go.
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
        .await
        .expect("the server cut the connection off");
    started.elapsed()
}

#[tokio::test]
async fn unfinished_headers_are_cut_off_after_the_header_timeout() {
    let timeout = Duration::from_millis(500);
    let (addr, _stop) = start(Transport {
        header_read_timeout: timeout,
        ..Transport::default()
    })
    .await;
    for sent in [
        &b""[..],
        b"GET /heal",
        b"GET /healthz HTTP/1.1\r\nHost: test\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: aaaa",
    ] {
        let held = held_after(addr, sent).await;
        let shown = String::from_utf8_lossy(sent);
        assert!(
            held >= timeout - Duration::from_millis(50),
            "{shown:?}: {held:?}"
        );
        assert!(held < timeout * 4, "{shown:?}: held {held:?}");
    }
    assert_eq!(get_once(addr, "/healthz").await, (200, "ok".into()));
}

#[tokio::test]
async fn an_address_past_its_limit_is_refused_until_a_connection_closes() {
    let (addr, _stop) = start(Transport {
        max_connections_per_address: 2,
        ..Transport::default()
    })
    .await;
    let idle = TcpStream::connect(addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    let (status, body) = get_once(addr, "/healthz").await;
    assert_eq!(status, 429);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "too_many_connections", "{body}");
    // The upgraded WebSocket counts until its socket closes, then its place is free.
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    drop(ws);
    freed(addr).await;
    // So does a plain connection.
    let _ws = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    assert_eq!(get_once(addr, "/healthz").await.0, 429);
    drop(idle);
    freed(addr).await;
}

/// Waits until `/healthz` is served again (the server noticed a closed connection).
async fn freed(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match get_once(addr, "/healthz").await.0 {
            200 => return,
            429 if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            other => panic!("still refused ({other}) after a connection closed"),
        }
    }
}

#[tokio::test]
async fn shutdown_ends_idle_connections_and_returns() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, app(), Transport::default(), async move {
        let _ = stopped.await;
    }));
    // A keep-alive connection after one request, idle.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0; 256];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns once connections are done")
        .unwrap();
    assert_eq!(
        idle.read(&mut buf).await.unwrap(),
        0,
        "idle connection closed"
    );
}

#[tokio::test]
async fn the_binary_takes_its_per_address_limit_from_the_flag() {
    let server = syncsphere_e2e::Server::start_with(None, &["--max-connections-per-address", "1"])
        .expect("server starts");
    let addr: SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();
    let held = TcpStream::connect(addr).await.unwrap();
    let (status, body) = get_once(addr, "/healthz").await;
    assert_eq!(status, 429, "{body}");
    drop(held);
    freed(addr).await;
}

/// Sends a request whose body (`Content-Length` long) comes as `pieces`, `gap` apart, then
/// nothing; returns the status, the body and how long after the last piece the answer came.
async fn slow_post(
    addr: SocketAddr,
    length: usize,
    pieces: &[&[u8]],
    gap: Duration,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /auth/cognito HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Content-Type: application/x-amz-json-1.1\r\n\
         X-Amz-Target: AWSCognitoIdentityProviderService.InitiateAuth\r\n\
         Content-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for piece in pieces {
        tokio::time::sleep(gap).await;
        stream.write_all(piece).await.unwrap();
    }
    let mut response = Vec::new();
    // The whole answer and then the end of the stream: a stalled request's connection closes.
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("an answer and a closed connection in time")
        .unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response[9..12].parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[tokio::test]
async fn a_stalled_request_body_is_answered_408_and_a_slow_steady_one_is_not() {
    let server = syncsphere_e2e::Server::start_with(None, &["--body-timeout-secs", "1"])
        .expect("server starts");
    let addr: SocketAddr = server.url.trim_start_matches("http://").parse().unwrap();

    // Half a body, then nothing: cut off a second later.
    let started = Instant::now();
    let (status, body) = slow_post(addr, 100, &[b"{\"AuthFlow\":"], Duration::ZERO).await;
    let took = started.elapsed();
    assert_eq!(status, 408, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).expect("a JSON ErrorBody");
    assert_eq!(error["error"], "request_timeout", "{body}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "answered after {took:?}"
    );

    // A whole body that takes 2.4 s but never pauses 1 s: read, and answered by the API
    // itself (Cognito's 400 for a sign-in without parameters).
    let whole: &[u8] = b"{\"AuthFlow\":\"USER_PASSWORD_AUTH\"}";
    let pieces: Vec<&[u8]> = whole.chunks(whole.len().div_ceil(6)).collect();
    let (status, body) = slow_post(addr, whole.len(), &pieces, Duration::from_millis(400)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("__type"), "Cognito's error shape: {body}");
}
