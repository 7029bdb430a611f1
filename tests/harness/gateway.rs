//! A test double of Amazon API Gateway's **REST API** in front of the files service: one
//! `{proxy+}` resource with an `HTTP_PROXY` integration (through a VPC link, in the product
//! owner's topology), in API Gateway's default (buffered) transfer mode. Written from AWS's
//! documentation, because no emulator of API Gateway's data plane runs here.
//!
//! What it does, as API Gateway does:
//! - reads the whole request before calling the integration; a body over 10 MB
//!   ([`PAYLOAD_MAX`] = 10,485,760 bytes) is refused with `413 {"message":"Request Too Long"}`;
//! - forwards method, path, query, headers (hop-by-hop ones dropped, `X-Forwarded-For`,
//!   `X-Amzn-Trace-Id` added) and body, and waits for the *whole* response at most the
//!   integration timeout ([`INTEGRATION_TIMEOUT`], 29 s) — past it `504 {"message":"Endpoint
//!   request timed out"}`;
//! - refuses an integration response over 10 MB with `500 {"message":"Internal server error"}`
//!   (its log says "Integration response of reported length … is larger than allowed maximum
//!   of 10485760 bytes"), and an unreachable integration with `502`;
//! - answers with the integration's status, headers and body, plus `x-amzn-RequestId`.
//!
//! It records every exchange (method, path, request and response sizes, status, refusals) so a
//! test can show that none came near a limit.
//!
//! What it does not model: API Gateway's `STREAM` response transfer mode (which lifts both
//! limits for proxy integrations), binary media types (the deployment must declare `*/*` as
//! binary, or bodies are re-encoded as text), authorizers (the service checks every token
//! itself), throttling and quotas, caching, custom domains, mTLS, request validation, stage
//! variables, and the WebSocket API (another API, with its own double).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

/// API Gateway's REST API payload limit, each way.
pub const PAYLOAD_MAX: usize = 10_485_760;
/// API Gateway's default (and, for REST APIs, maximum without a quota increase) integration
/// timeout.
pub const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(29);

/// Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1), and those the
/// double sets itself.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// One request through the double.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub request_bytes: usize,
    pub response_bytes: usize,
    pub status: u16,
    /// Why the double refused it (a limit), if it did.
    pub refused: Option<String>,
}

struct Gateway {
    upstream: String,
    http: reqwest::Client,
    timeout: Duration,
    log: Mutex<Vec<Exchange>>,
}

/// A running REST API double.
pub struct RestGateway {
    /// Where clients send their REST requests (the stage's invoke URL).
    pub url: String,
    gateway: Arc<Gateway>,
    task: tokio::task::JoinHandle<()>,
}

impl RestGateway {
    /// Starts the double on a free loopback port, proxying to `upstream` (a base URL).
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        Self::start_with_timeout(upstream, INTEGRATION_TIMEOUT).await
    }

    /// [`RestGateway::start`] with another integration timeout (tests of the timeout itself).
    pub async fn start_with_timeout(upstream: &str, timeout: Duration) -> anyhow::Result<Self> {
        let gateway = Arc::new(Gateway {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            timeout,
            log: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .fallback(proxy)
            .with_state(gateway.clone())
            .into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(RestGateway { url, gateway, task })
    }

    /// Every exchange so far, in order.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.gateway.log.lock().expect("log").clone()
    }
}

impl Drop for RestGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn message(status: StatusCode, text: &str) -> Response {
    let body = serde_json::json!({ "message": text }).to_string();
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static("GatewayError"));
    resp
}

async fn proxy(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let method = parts.method.to_string();
    let path = parts.uri.path().to_owned();
    let mut exchange = Exchange {
        method: method.clone(),
        path: path.clone(),
        request_bytes: 0,
        response_bytes: 0,
        status: 0,
        refused: None,
    };
    let (resp, exchange) = 'done: {
        // The whole request first, as API Gateway reads it.
        let body = match axum::body::to_bytes(body, PAYLOAD_MAX).await {
            Ok(body) => body,
            Err(_) => {
                exchange.refused = Some("request over 10 MB".into());
                break 'done (
                    message(StatusCode::PAYLOAD_TOO_LARGE, "Request Too Long"),
                    exchange,
                );
            }
        };
        exchange.request_bytes = body.len();
        let target = format!(
            "{}{}",
            gw.upstream,
            parts.uri.path_and_query().map_or("/", |p| p.as_str())
        );
        let mut forward = gw.http.request(parts.method.clone(), &target);
        for (name, value) in &parts.headers {
            if !HOP_BY_HOP.contains(&name.as_str()) && name != "content-length" {
                forward = forward.header(name, value);
            }
        }
        let request_id = format!("{:032x}", rand::random::<u128>());
        forward = forward
            .header("x-forwarded-for", peer.ip().to_string())
            .header("x-amzn-trace-id", format!("Root=1-{}", &request_id[..24]))
            .body(body);
        let integration = async {
            let resp = forward.send().await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let mut body = Vec::new();
            let mut stream = resp.bytes_stream();
            while let Some(piece) = stream.next().await {
                let piece = piece?;
                body.extend_from_slice(&piece);
                if body.len() > PAYLOAD_MAX {
                    return Ok::<_, reqwest::Error>(Err(body.len()));
                }
            }
            Ok(Ok((status, headers, Bytes::from(body))))
        };
        match tokio::time::timeout(gw.timeout, integration).await {
            Err(_) => {
                exchange.refused = Some("integration timed out".into());
                (
                    message(StatusCode::GATEWAY_TIMEOUT, "Endpoint request timed out"),
                    exchange,
                )
            }
            Ok(Err(e)) => {
                exchange.refused = Some(format!("integration unreachable: {e}"));
                (
                    message(StatusCode::BAD_GATEWAY, "Internal server error"),
                    exchange,
                )
            }
            Ok(Ok(Err(len))) => {
                exchange.refused = Some(format!(
                    "Integration response of reported length {len}+ is larger than allowed \
                     maximum of {PAYLOAD_MAX} bytes"
                ));
                (
                    message(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error"),
                    exchange,
                )
            }
            Ok(Ok(Ok((status, headers, body)))) => {
                exchange.response_bytes = body.len();
                let mut resp = Response::new(Body::from(body));
                *resp.status_mut() = status;
                copy_headers(&headers, resp.headers_mut());
                if let Ok(v) = HeaderValue::from_str(&request_id) {
                    resp.headers_mut().insert("x-amzn-requestid", v);
                }
                (resp, exchange)
            }
        }
    };
    let mut exchange = exchange;
    exchange.status = resp.status().as_u16();
    gw.log.lock().expect("log").push(exchange);
    resp
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            to.append(name.clone(), value.clone());
        }
    }
}
