//! The push socket against real sockets on 127.0.0.1: how a connection ends when the peer stops
//! reading, closes, or sends too much. The server is the State router alone (in-process bus,
//! tokens from a test key); pushes are handed to its hub as the bus would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use syncsphere_protocol::{Rev, Seq};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use syncsphere_auth::idp::SigningKey;
use syncsphere_auth::{JwksSource, Verifier};
use syncsphere_events::{Event, LocalBus, Recipient};
use syncsphere_protocol::ws::{
    CLOSE_DEVICE_UNREGISTERED, CLOSE_MESSAGE_TOO_BIG, CLOSE_PROTOCOL, CLOSE_RESYNC,
};
use syncsphere_protocol::{ChangeEvent, ChangeKind};
use syncsphere_state::{PushHub, StateService, WsTimeouts};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const ISSUER: &str = "http://issuer.test/pool";
const CLIENT_ID: &str = "test-client";
const USER: &str = "user-1";

type Client = WebSocketStream<TcpStream>;

struct Server {
    addr: SocketAddr,
    hub: Arc<PushHub>,
    key: SigningKey,
    _dir: tempfile::TempDir,
}

async fn server(timeouts: WsTimeouts) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::load_or_create(&dir.path().join("key.pem")).unwrap();
    let verifier = Verifier::new(ISSUER, [CLIENT_ID], JwksSource::Static(key.jwks()));
    let hub = PushHub::new();
    let router = syncsphere_state::router(StateService {
        hub: hub.clone(),
        verifier: Arc::new(verifier),
        subscriber: LocalBus::new(hub.clone()),
        timeouts,
        gateway: None,
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Server {
        addr,
        hub,
        key,
        _dir: dir,
    }
}

impl Server {
    /// An access token bound to `device` (none: a sign-in session bound to no device).
    fn token(&self, device: Option<&str>) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut claims = json!({"sub": USER, "iss": ISSUER, "client_id": CLIENT_ID,
                                "token_use": "access", "iat": now, "exp": now + 3600});
        if let Some(device) = device {
            claims["device_key"] = json!(device);
        }
        self.key.sign(&claims).unwrap()
    }

    /// Opens `/v1/ws` over `stream` with a token of device `dev-1`, before `hello`.
    async fn open(&self, stream: TcpStream) -> Client {
        self.open_as(stream, Some("dev-1")).await
    }

    /// Opens `/v1/ws` over `stream` with a token bound to `device`, before `hello`.
    async fn open_as(&self, stream: TcpStream, device: Option<&str>) -> Client {
        let mut req = format!("ws://{}/v1/ws", self.addr)
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {}", self.token(device)).parse().unwrap(),
        );
        tokio_tungstenite::client_async(req, stream)
            .await
            .unwrap()
            .0
    }

    /// A connection past `welcome`.
    async fn connect(&self, stream: TcpStream) -> Client {
        let mut ws = self.open(stream).await;
        let hello = json!({"type": "hello", "device_id": "dev-1", "cursor": 0});
        ws.send(Message::text(hello.to_string())).await.unwrap();
        loop {
            if next_json(&mut ws).await["type"] == "welcome" {
                return ws;
            }
        }
    }

    async fn tcp(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    /// A TCP connection with a small receive buffer, so a client that stops reading stalls
    /// the server's writes after little data.
    async fn small_tcp(&self) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(self.addr).await.unwrap()
    }

    /// Pushes 200 changes of 64 KiB — 12.8 MB, more than the kernel buffers of a client that
    /// does not read hold (a send buffer grows to 4 MiB), fewer messages than the push queue
    /// holds — and waits until a write times out.
    async fn push_until_a_write_times_out(&self) {
        for seq in 0..200 {
            self.hub.deliver(&USER.into(), Event::Change(change(seq)));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.hub.metrics.write_timeouts.get() == 0 {
            assert!(Instant::now() < deadline, "no write timed out");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            self.hub.metrics.queue_overflows.get(),
            0,
            "the queue never filled"
        );
    }

    /// Waits until the server holds no socket (registered, authenticating or closing).
    async fn sockets_gone(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.hub.metrics.sockets.get() != 0 {
            assert!(
                Instant::now() < deadline,
                "the server still holds the socket"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(self.hub.connections(USER), 0);
        assert_eq!(self.hub.metrics.connections.get(), 0);
    }
}

fn change(seq: i64) -> ChangeEvent {
    ChangeEvent {
        seq: Seq(seq),
        file_id: format!("f{seq}").into(),
        event: ChangeKind::Created,
        path: "p".repeat(64 * 1024),
        old_path: None,
        rev: Rev(1),
        size: 0,
        sha256: String::new().into(),
        origin_device: Some("elsewhere".into()),
        at_ms: 0,
    }
}

async fn next_json(ws: &mut Client) -> Value {
    let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a message in time")
        .expect("stream open")
        .expect("a message");
    match msg {
        Message::Text(text) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Reads until the server's close frame; returns it and the types of the text messages just
/// before it.
async fn read_to_close(ws: &mut Client) -> (Option<CloseFrame>, Vec<String>) {
    let mut last_types = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the server closes in time")
            .expect("a close frame before the end of the stream")
            .expect("no error before the close frame");
        match msg {
            Message::Text(text) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                last_types.push(v["type"].as_str().unwrap().to_owned());
                if last_types.len() > 3 {
                    last_types.remove(0);
                }
            }
            Message::Close(frame) => return (frame, last_types),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_gets_resync_and_4000_once_it_reads_again() {
    // A short write timeout; a long close timeout so the client can read in between.
    let s = server(WsTimeouts {
        write: Duration::from_millis(300),
        close: Duration::from_secs(20),
        ..WsTimeouts::default()
    })
    .await;
    let mut ws = s.connect(s.small_tcp().await).await;
    s.push_until_a_write_times_out().await;
    assert_eq!(s.hub.metrics.sockets.get(), 1, "held while it closes");
    let (frame, before) = read_to_close(&mut ws).await;
    assert_eq!(frame.map(|f| f.code), Some(CloseCode::from(CLOSE_RESYNC)));
    assert_eq!(before.last().map(String::as_str), Some("resync"));
    // The client answers the close; the server then lets go at once.
    assert!(ws.next().await.is_none());
    s.sockets_gone(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_client_that_never_reads_again_is_dropped_after_the_close_timeout() {
    let s = server(WsTimeouts {
        write: Duration::from_millis(300),
        close: Duration::from_millis(300),
        ..WsTimeouts::default()
    })
    .await;
    let _ws = s.connect(s.small_tcp().await).await;
    s.push_until_a_write_times_out().await;
    s.sockets_gone(Duration::from_secs(3)).await;
}

/// The server pings; a peer that answers (any client that reads: pongs are automatic) stays
/// past the silence limit, and one that answers nothing — gone without a close, or not reading
/// at all — is dropped within a ping interval after it, and counted.
#[tokio::test]
async fn a_peer_that_answers_no_ping_is_dropped_after_the_silence_limit() {
    let s = server(WsTimeouts {
        ping: Duration::from_millis(100),
        silence: Duration::from_millis(500),
        close: Duration::from_millis(300),
        ..WsTimeouts::default()
    })
    .await;
    let mut answering = s.connect(s.tcp().await).await;
    // Three silence limits of reading (and so answering pings), no message either way.
    let pings = tokio::time::timeout(Duration::from_millis(1500), async {
        let mut pings = 0;
        while let Some(Ok(msg)) = answering.next().await {
            pings += usize::from(matches!(msg, Message::Ping(_)));
        }
        pings
    })
    .await;
    assert!(pings.is_err(), "the connection stayed open: {pings:?}");
    assert_eq!(s.hub.metrics.silent_peers.get(), 0);
    assert_eq!(s.hub.connections(USER), 1);
    drop(answering);
    s.sockets_gone(Duration::from_secs(3)).await;

    let started = Instant::now();
    let _silent = s.connect(s.tcp().await).await;
    s.sockets_gone(Duration::from_secs(3)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "dropped before the silence limit: {:?}",
        started.elapsed()
    );
    assert_eq!(s.hub.metrics.silent_peers.get(), 1);
    assert_eq!(s.hub.metrics.write_timeouts.get(), 0);
}

/// A write stuck on a client that stopped reading does not wait out the write timeout once the
/// hub has given up on the connection (its queue overflowed): the socket is gone within the
/// close timeout.
#[tokio::test]
async fn a_connection_the_hub_gave_up_on_stops_waiting_for_its_stuck_write() {
    let s = server(WsTimeouts {
        write: Duration::from_secs(60),
        close: Duration::from_millis(500),
        ..WsTimeouts::default()
    })
    .await;
    let _ws = s.connect(s.small_tcp().await).await;
    // 64 KiB changes: the kernel buffers fill after some, the writer then waits; the rest
    // overflow the queue.
    for seq in 0..(200 + syncsphere_state::QUEUE_CAPACITY as i64 + 1) {
        s.hub.deliver(&USER.into(), Event::Change(change(seq)));
        tokio::task::yield_now().await;
    }
    let given_up = Instant::now();
    assert!(
        s.hub.metrics.queue_overflows.get() >= 1,
        "the queue overflowed"
    );
    s.sockets_gone(Duration::from_secs(5)).await;
    assert!(
        given_up.elapsed() < Duration::from_secs(5),
        "held {:?} after the hub gave up",
        given_up.elapsed()
    );
    assert_eq!(s.hub.metrics.write_timeouts.get(), 0, "no write timed out");
}

#[tokio::test]
async fn a_client_close_is_echoed_then_the_connection_ends() {
    let s = server(WsTimeouts::default()).await;
    let mut ws = s.connect(s.tcp().await).await;
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    let (frame, _) = read_to_close(&mut ws).await;
    assert_eq!(frame.map(|f| f.code), Some(CloseCode::Normal));
    assert!(ws.next().await.is_none(), "then the end of the stream");
    s.sockets_gone(Duration::from_secs(2)).await;
}

/// A token says `hello` only as the device it is bound to; one bound to no device (a pool
/// sign-in before the device registered) gets 4005 whatever id it names, and nothing is
/// registered.
#[tokio::test]
async fn hello_speaks_only_for_the_tokens_device() {
    let s = server(WsTimeouts::default()).await;
    for (token_device, hello_device, code) in [
        (None, "dev-1", CLOSE_DEVICE_UNREGISTERED),
        (Some("dev-1"), "dev-2", CLOSE_PROTOCOL),
    ] {
        let mut ws = s.open_as(s.tcp().await, token_device).await;
        let hello = json!({"type": "hello", "device_id": hello_device, "cursor": 0});
        ws.send(Message::text(hello.to_string())).await.unwrap();
        let (frame, _) = read_to_close(&mut ws).await;
        assert_eq!(
            frame.map(|f| f.code),
            Some(CloseCode::from(code)),
            "{token_device:?} as {hello_device}"
        );
    }
    assert_eq!(s.hub.connections(USER), 0);
    s.sockets_gone(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn an_oversized_message_is_closed_with_1009_before_and_after_hello() {
    let s = server(WsTimeouts::default()).await;
    let too_big = Message::text("x".repeat(64 * 1024 + 1));
    let before_hello = s.open(s.tcp().await).await;
    let after_hello = s.connect(s.tcp().await).await;
    for (when, mut ws) in [("before hello", before_hello), ("after hello", after_hello)] {
        ws.send(too_big.clone()).await.unwrap();
        let (frame, _) = read_to_close(&mut ws).await;
        assert_eq!(
            frame.map(|f| f.code),
            Some(CloseCode::from(CLOSE_MESSAGE_TOO_BIG)),
            "{when}"
        );
    }
    s.sockets_gone(Duration::from_secs(2)).await;
}
