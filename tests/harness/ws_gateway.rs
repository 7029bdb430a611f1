//! A test double of Amazon API Gateway's **WebSocket API** data plane, written from AWS's
//! documentation (no emulator of it runs here: LocalStack's needs Docker and a paid tier,
//! serverless-offline only invokes Lambdas, moto's `@connections` never answers 410). Notes
//! with the sources (the developer guide's WebSocket chapters and quotas page, the
//! `apigatewaymanagementapi` service model): `docs/research/apigw-websocket.md`.
//!
//! What it does, as API Gateway does:
//! - **`$connect`**: holds a client's WebSocket handshake (`GET /{stage}`) and calls the
//!   `$connect` integration (`HTTP_PROXY`: `POST` to its URI, the client's query string, its
//!   handshake headers — `Authorization` included — and the mapped header
//!   `connectionId: {context.connectionId}`, plus `X-Forwarded-For` and
//!   `X-Amzn-Apigateway-Api-Id`). Every integration call also carries the configured static
//!   headers (request parameters mapped from `'static'` values). A 2xx accepts the connection (101); any other status refuses
//!   the handshake with that status; no answer within 29 s is a 504.
//! - **messages**: each text message goes to the `$default` integration as the body of a
//!   `POST` (the service routes by itself; no route selection expression, no route response: the
//!   integration's answer is not relayed). The connection goes on reading while a call is in
//!   flight; calls are made one at a time, in the order the messages came. A binary frame
//!   closes the connection with 1003; a frame over 32 KB or a message over 128 KB with 1009.
//! - **`@connections`** (`/{stage}/@connections/{id}`, on the same port): `POST` sends the body
//!   as one text message (200; over 128 KB: 413 `PayloadTooLargeException`), `GET` describes the
//!   connection (200 JSON: `connectedAt`, `lastActiveAt`, `identity`), `DELETE` closes it with
//!   1000 (204). A connection that is gone or not yet accepted is `410` with
//!   `X-Amzn-ErrorType: GoneException`. Every call must carry a valid SigV4 signature (service
//!   `execute-api`, the double's region and key; path double-encoded, as AWS signs it): else
//!   `403 ForbiddenException`.
//! - **timeouts**: a connection with no data frame either way for the idle timeout (10 min) or
//!   open for the maximum duration (2 h) is closed with 1001 (both configurable, for tests).
//! - **`$disconnect`**: after a connection ends, its integration gets a `POST` with the
//!   `connectionId` header — best effort, as API Gateway's (a test can turn it off).
//!
//! It records every integration call, `@connections` call and close.
//!
//! What it does not model: routes other than the three, route selection expressions and route
//! responses; authorizers (the service authorizes `$connect` itself); throttling
//! (`LimitExceededException`), the client-side buffer; custom domains; whether ping/pong frames
//! count as activity (here they do not: AWS does not say, and clients send messages); the exact
//! close codes of the timeouts (undocumented; 1001 here); the body of a real 410 (empty here).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// API Gateway's WebSocket frame limit.
pub const FRAME_MAX: usize = 32 * 1024;
/// API Gateway's WebSocket message limit (and `@connections` payload limit).
pub const MESSAGE_MAX: usize = 128 * 1024;
/// The integration timeout.
pub const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(29);

/// How the double is set up.
#[derive(Debug, Clone)]
pub struct WsGatewayConfig {
    /// Integration URIs of the three routes.
    pub connect_uri: String,
    pub default_uri: String,
    pub disconnect_uri: String,
    pub stage: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    pub idle_timeout: Duration,
    pub max_duration: Duration,
    /// Headers every integration request carries with a fixed value: the integrations'
    /// request parameters mapped from static values
    /// (`integration.request.header.x-name: "'value'"`).
    pub static_headers: Vec<(String, String)>,
    /// Service bases the integration URIs' base is spread over, one request after the other
    /// (the Network Load Balancer in front of several tasks); empty: the URIs as they are.
    pub balance_over: Vec<String>,
}

impl WsGatewayConfig {
    /// The three routes at `{service}/v1/apigw/{connect,default,disconnect}`, AWS's limits.
    pub fn for_service(service: &str) -> Self {
        let base = service.trim_end_matches('/');
        WsGatewayConfig {
            connect_uri: format!("{base}/v1/apigw/connect"),
            default_uri: format!("{base}/v1/apigw/default"),
            disconnect_uri: format!("{base}/v1/apigw/disconnect"),
            stage: "prod".into(),
            region: "us-east-1".into(),
            access_key: "AKIDWSGATEWAYDOUBLE".into(),
            secret_key: format!("{:032x}", rand::random::<u128>()),
            idle_timeout: Duration::from_secs(600),
            max_duration: Duration::from_secs(7200),
            static_headers: Vec::new(),
            balance_over: Vec::new(),
        }
    }

    /// [`WsGatewayConfig::for_service`] over several instances of the service: each
    /// integration request goes to the next one, whatever connection it is for.
    pub fn for_services(services: &[String]) -> Self {
        let mut config = Self::for_service(&services[0]);
        config.balance_over = services
            .iter()
            .map(|s| s.trim_end_matches('/').to_owned())
            .collect();
        config
    }
}

/// Something the double did, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logged {
    /// An integration call: route, connection id, the integration's status (0: no answer).
    Integration {
        route: &'static str,
        connection: String,
        status: u16,
    },
    /// An `@connections` call and its answer.
    Management {
        method: String,
        connection: String,
        status: u16,
    },
    /// A connection ended, with the close code the double sent (None: the client closed or
    /// went away).
    Closed {
        connection: String,
        code: Option<u16>,
    },
}

struct Connection {
    tx: mpsc::Sender<Outgoing>,
    connected_at: SystemTime,
    last_active: Arc<Mutex<SystemTime>>,
    source_ip: String,
    user_agent: String,
}

enum Outgoing {
    Text(String),
    Close(u16, &'static str),
}

struct Inner {
    config: WsGatewayConfig,
    http: reqwest::Client,
    connections: Mutex<HashMap<String, Connection>>,
    /// What happened, and when (since the double started).
    log: Mutex<Vec<(Duration, Logged)>>,
    started: Instant,
    send_disconnect: AtomicBool,
    next_target: std::sync::atomic::AtomicUsize,
    /// The instances requests are spread over now (the load balancer's healthy targets).
    balance: Mutex<Vec<String>>,
}

impl Inner {
    fn record(&self, entry: Logged) {
        let at = self.started.elapsed();
        self.log.lock().expect("log").push((at, entry));
    }

    /// Where an integration request for `uri` goes: `uri` itself, or the same path on the
    /// next of the balanced instances.
    fn target(&self, uri: &str) -> String {
        let Some(first) = self.config.balance_over.first() else {
            return uri.to_owned();
        };
        let path = uri.strip_prefix(first.as_str()).unwrap_or(uri);
        let over = self.balance.lock().expect("balance");
        let i = self.next_target.fetch_add(1, Ordering::Relaxed) % over.len().max(1);
        format!("{}{path}", over.get(i).unwrap_or(first))
    }
}

/// A running WebSocket API double.
pub struct WsGateway {
    /// The stage's WebSocket URL (`ws://…/{stage}`) clients connect to.
    pub ws_url: String,
    /// The stage's HTTPS-style base (`http://…/{stage}`): `@connections` is under it (the
    /// management API's endpoint).
    pub management_url: String,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl WsGateway {
    pub async fn start(config: WsGatewayConfig) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stage = config.stage.clone();
        let balance = Mutex::new(config.balance_over.clone());
        let inner = Arc::new(Inner {
            config,
            http: reqwest::Client::builder()
                .timeout(INTEGRATION_TIMEOUT)
                .build()?,
            connections: Mutex::default(),
            log: Mutex::default(),
            started: Instant::now(),
            send_disconnect: AtomicBool::new(true),
            next_target: std::sync::atomic::AtomicUsize::new(0),
            balance,
        });
        let app = axum::Router::new()
            .route(&format!("/{stage}"), get(handshake))
            .route(&format!("/{stage}/@connections/{{id}}"), any(management))
            .route(&format!("/{stage}/%40connections/{{id}}"), any(management))
            .with_state(inner.clone())
            .into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(WsGateway {
            ws_url: format!("ws://{addr}/{stage}"),
            management_url: format!("http://{addr}/{stage}"),
            inner,
            task,
        })
    }

    /// Everything logged so far.
    pub fn log(&self) -> Vec<Logged> {
        let log = self.inner.log.lock().expect("log");
        log.iter().map(|(_, l)| l.clone()).collect()
    }

    /// [`WsGateway::log`], each entry with when it happened (since the double started), for
    /// a failing test's message.
    pub fn timed_log(&self) -> String {
        let log = self.inner.log.lock().expect("log");
        log.iter()
            .map(|(t, l)| format!("{:>8.3}s {l:?}\n", t.as_secs_f64()))
            .collect()
    }

    /// Connection ids open now.
    pub fn open_connections(&self) -> Vec<String> {
        self.inner
            .connections
            .lock()
            .expect("connections")
            .keys()
            .cloned()
            .collect()
    }

    /// The instances integration requests are spread over from now on (a load balancer's
    /// health check deregistering a stopped task, or registering a new one).
    pub fn set_balance(&self, services: &[String]) {
        *self.inner.balance.lock().expect("balance") = services
            .iter()
            .map(|s| s.trim_end_matches('/').to_owned())
            .collect();
    }

    /// Whether `$disconnect` is called (API Gateway's is best effort: tests turn it off).
    pub fn set_send_disconnect(&self, on: bool) {
        self.inner.send_disconnect.store(on, Ordering::Relaxed);
    }

    /// The credentials `@connections` calls must be signed with.
    pub fn credentials(&self) -> (&str, &str, &str) {
        let c = &self.inner.config;
        (&c.access_key, &c.secret_key, &c.region)
    }
}

impl Drop for WsGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An id shaped like API Gateway's (base64-ish, with `=`), so encoding mistakes show.
fn connection_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut n = rand::random::<u64>();
    let mut id = String::new();
    for _ in 0..11 {
        id.push(ALPHABET[(n % 64) as usize] as char);
        n /= 64;
    }
    id.push('=');
    id
}

/// Headers not forwarded to an integration (one connection's).
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "upgrade",
    "host",
    "content-length",
    "transfer-encoding",
    "keep-alive",
];

async fn handshake(
    State(gw): State<Arc<Inner>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let id = connection_id();
    let mut uri = gw.target(&gw.config.connect_uri);
    if let Some(q) = &query {
        uri = format!("{uri}?{q}");
    }
    let mut call = gw.http.post(&uri);
    for (name, value) in &headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            call = call.header(name, value);
        }
    }
    let call = with_context(call, &gw, &id, peer);
    let status = match call.send().await {
        Ok(resp) => resp.status().as_u16(),
        Err(e) if e.is_timeout() => 504,
        Err(_) => 502,
    };
    gw.record(Logged::Integration {
        route: "$connect",
        connection: id.clone(),
        status,
    });
    if !(200..300).contains(&status) {
        return StatusCode::from_u16(status)
            .unwrap_or(StatusCode::BAD_GATEWAY)
            .into_response();
    }
    let user_agent = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    upgrade
        .max_frame_size(FRAME_MAX)
        .max_message_size(MESSAGE_MAX)
        .on_upgrade(move |socket| serve(gw, socket, id, peer, user_agent))
}

/// The mapped `connectionId` header and what API Gateway adds to every integration request.
fn with_context(
    call: reqwest::RequestBuilder,
    gw: &Inner,
    id: &str,
    peer: SocketAddr,
) -> reqwest::RequestBuilder {
    let mut call = call
        .header("connectionId", id)
        .header("x-forwarded-for", peer.ip().to_string())
        .header("x-amzn-apigateway-api-id", "wsdouble")
        .header("x-stage", gw.config.stage.as_str());
    for (name, value) in &gw.config.static_headers {
        call = call.header(name, value);
    }
    call
}

async fn serve(gw: Arc<Inner>, socket: WebSocket, id: String, peer: SocketAddr, ua: String) {
    let (tx, mut rx) = mpsc::channel::<Outgoing>(64);
    let last_active = Arc::new(Mutex::new(SystemTime::now()));
    gw.connections.lock().expect("connections").insert(
        id.clone(),
        Connection {
            tx,
            connected_at: SystemTime::now(),
            last_active: last_active.clone(),
            source_ip: peer.ip().to_string(),
            user_agent: ua,
        },
    );
    let (mut sink, mut stream) = futures_util::StreamExt::split(socket);
    use futures_util::{SinkExt, StreamExt};
    let opened = Instant::now();
    let mut active = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let close = |code: u16, reason: &'static str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
    };
    // Each message's `$default` call is made by a task of its own, one call after another in
    // the order they came: the connection goes on reading (and its idle clock on seeing
    // messages) while an integration is slow, as API Gateway's does.
    let (messages, mut queued) = mpsc::unbounded_channel::<String>();
    let integrations = {
        let gw = gw.clone();
        let id = id.clone();
        tokio::spawn(async move {
            while let Some(text) = queued.recv().await {
                let call = with_context(
                    gw.http.post(gw.target(&gw.config.default_uri)),
                    &gw,
                    &id,
                    peer,
                )
                .header("content-type", "application/json")
                .body(text);
                let status = match call.send().await {
                    Ok(resp) => resp.status().as_u16(),
                    Err(_) => 0,
                };
                gw.record(Logged::Integration {
                    route: "$default",
                    connection: id.clone(),
                    status,
                });
            }
        })
    };
    let sent_code: Option<u16> = loop {
        tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    active = Instant::now();
                    *last_active.lock().expect("active") = SystemTime::now();
                    // Queued (unbounded: a test's message counts are small) for the task below.
                    let _ = messages.send(text.to_string());
                }
                Some(Ok(Message::Binary(_))) => {
                    let _ = sink.send(close(1003, "Binary frames are not supported")).await;
                    break Some(1003);
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => break None,
                Some(Err(e)) => {
                    // Over the frame or message limit (or a broken stream).
                    let too_big = e.to_string().to_lowercase().contains("too long")
                        || e.to_string().to_lowercase().contains("size");
                    if too_big {
                        let _ = sink.send(close(1009, "Message too big")).await;
                        break Some(1009);
                    }
                    break None;
                }
            },
            out = rx.recv() => match out {
                Some(Outgoing::Text(text)) => {
                    active = Instant::now();
                    *last_active.lock().expect("active") = SystemTime::now();
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break None;
                    }
                }
                Some(Outgoing::Close(code, reason)) => {
                    let _ = sink.send(close(code, reason)).await;
                    break Some(code);
                }
                None => break None,
            },
            _ = tick.tick() => {
                if active.elapsed() >= gw.config.idle_timeout {
                    let _ = sink.send(close(1001, "Going away")).await;
                    break Some(1001);
                }
                if opened.elapsed() >= gw.config.max_duration {
                    let _ = sink.send(close(1001, "Going away")).await;
                    break Some(1001);
                }
            }
        }
    };
    gw.connections.lock().expect("connections").remove(&id);
    gw.record(Logged::Closed {
        connection: id.clone(),
        code: sent_code,
    });
    // Messages already read still reach the service, before `$disconnect`.
    drop(messages);
    let _ = integrations.await;
    if gw.send_disconnect.load(Ordering::Relaxed) {
        let call = with_context(
            gw.http.post(gw.target(&gw.config.disconnect_uri)),
            &gw,
            &id,
            peer,
        );
        let status = call.send().await.map_or(0, |r| r.status().as_u16());
        gw.record(Logged::Integration {
            route: "$disconnect",
            connection: id,
            status,
        });
    }
}

fn error(status: StatusCode, kind: &'static str, message: &str) -> Response {
    let mut resp = (
        status,
        if message.is_empty() {
            String::new()
        } else {
            serde_json::json!({ "message": message }).to_string()
        },
    )
        .into_response();
    resp.headers_mut()
        .insert("x-amzn-errortype", kind.parse().expect("a header value"));
    resp
}

async fn management(
    State(gw): State<Arc<Inner>>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let resp = 'answer: {
        if let Err(why) = check_signature(&gw.config, &method, &uri, &headers, &body) {
            break 'answer error(StatusCode::FORBIDDEN, "ForbiddenException", &why);
        }
        let connections = gw.connections.lock().expect("connections");
        let Some(conn) = connections.get(&id) else {
            break 'answer error(StatusCode::GONE, "GoneException", "");
        };
        match method {
            Method::POST => {
                if body.len() > MESSAGE_MAX {
                    break 'answer error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "PayloadTooLargeException",
                        "Message too long",
                    );
                }
                let text = String::from_utf8_lossy(&body).into_owned();
                match conn.tx.try_send(Outgoing::Text(text)) {
                    Ok(()) => StatusCode::OK.into_response(),
                    Err(mpsc::error::TrySendError::Full(_)) => error(
                        StatusCode::TOO_MANY_REQUESTS,
                        "LimitExceededException",
                        "the client side buffer is full",
                    ),
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        error(StatusCode::GONE, "GoneException", "")
                    }
                }
            }
            Method::GET => {
                let iso = |t: SystemTime| {
                    let secs = t
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    iso8601(secs)
                };
                let body = serde_json::json!({
                    "connectedAt": iso(conn.connected_at),
                    "lastActiveAt": iso(*conn.last_active.lock().expect("active")),
                    "identity": { "sourceIp": conn.source_ip, "userAgent": conn.user_agent },
                });
                (StatusCode::OK, body.to_string()).into_response()
            }
            Method::DELETE => {
                let _ = conn
                    .tx
                    .try_send(Outgoing::Close(1000, "Connection Closed Normally"));
                StatusCode::NO_CONTENT.into_response()
            }
            _ => error(StatusCode::FORBIDDEN, "ForbiddenException", "Forbidden"),
        }
    };
    gw.record(Logged::Management {
        method: method.to_string(),
        connection: id,
        status: resp.status().as_u16(),
    });
    resp
}

/// `YYYY-MM-DDTHH:MM:SSZ` of seconds since the epoch (civil-from-days, proleptic Gregorian).
fn iso8601(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(key).expect("any key length");
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// URI-encodes `s` as SigV4 does (everything but unreserved characters and, when `keep_slash`,
/// `/`).
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Checks the request's SigV4 signature (`Authorization: AWS4-HMAC-SHA256 Credential=…,
/// SignedHeaders=…, Signature=…`) for service `execute-api`: the canonical request of the
/// signed headers, the path encoded once more than it was sent (as AWS signs execute-api
/// paths), the payload's SHA-256; date within 15 minutes.
fn check_signature(
    config: &WsGatewayConfig,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or("Missing Authentication Token")?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("not AWS4-HMAC-SHA256")?;
    let field = |name: &str| {
        rest.split(',')
            .map(str::trim)
            .find_map(|p| p.strip_prefix(name))
            .map(str::to_owned)
            .ok_or(format!("no {name}"))
    };
    let credential = field("Credential=")?;
    let signed_headers = field("SignedHeaders=")?;
    let signature = field("Signature=")?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [key, date, region, service, "aws4_request"] = parts[..] else {
        return Err("malformed Credential".into());
    };
    if key != config.access_key {
        return Err("The security token included in the request is invalid.".into());
    }
    if region != config.region || service != "execute-api" {
        return Err(format!(
            "Credential should be scoped to {}/execute-api",
            config.region
        ));
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or("no X-Amz-Date")?;
    if !amz_date.starts_with(date) {
        return Err("date mismatch".into());
    }
    let now = iso8601(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
    .replace(['-', ':'], "");
    let skew = |t: &str| -> i64 {
        // HHMMSS within the same day is enough for a loopback test double.
        t.get(9..15).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    if !now.starts_with(&amz_date[..8]) || (skew(&now) - skew(amz_date)).abs() > 1500 {
        return Err("Signature expired".into());
    }
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let mut query: Vec<(String, String)> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let payload = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| hex::encode(Sha256::digest(body)), str::to_owned);
    let canonical = format!(
        "{method}\n{}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload}",
        uri_encode(uri.path(), true)
    );
    let scope = format!("{date}/{region}/execute-api/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{}", config.secret_key).as_bytes(), date);
    let k_region = hmac(&k_date, region);
    let k_service = hmac(&k_region, "execute-api");
    let k_signing = hmac(&k_service, "aws4_request");
    let expected = hex::encode(hmac(&k_signing, &to_sign));
    if expected != signature {
        return Err(
            "The request signature we calculated does not match the signature you provided.".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_encodings() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_796_416_757), "2026-12-04T20:39:17Z");
        assert_eq!(
            uri_encode("/prod/@connections/abc%3D", true),
            "/prod/%40connections/abc%253D"
        );
    }
}
