//! End to end, AWS mode's REST path: two real clients whose every REST request goes through
//! the API Gateway REST API double (`harness/gateway.rs`: buffered, 10 MB each way, 29 s) to
//! the real server — a file larger than a response may be, an edit of it, and many small files
//! at once all arrive, and no request or response comes near the limits (0040). Pushes go to
//! the server directly here (the WebSocket API is another double).

use std::time::Duration;

use syncsphere_e2e::gateway::{PAYLOAD_MAX, RestGateway};
use syncsphere_e2e::{Server, free_loopback_port, noise, same_bytes, signed_in_pair, wait_for};

const SETTLE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_sync_through_the_rest_api_within_its_limits() {
    let port = free_loopback_port();
    let direct = format!("http://127.0.0.1:{port}");
    let mut server = Server::start_at(&format!("127.0.0.1:{port}"), None, &["--push-url", &direct])
        .expect("server starts");
    let gateway = RestGateway::start(&server.url)
        .await
        .expect("gateway starts");
    // The clients know the gateway's URL only (sign-in included: the built-in provider's API
    // is a REST route too).
    server.url = gateway.url.clone();
    let (a, b) = signed_in_pair(&server, "gia@example.com");
    std::fs::create_dir_all(&a.folder).unwrap();
    let _pa = a.start_sync().unwrap();
    let _pb = b.start_sync().unwrap();

    // 24 MiB: more than two responses may carry; uploaded in chunks, downloaded in windows.
    let big = noise(24 << 20, 7);
    std::fs::write(a.path("big.bin"), &big).unwrap();
    assert!(
        wait_for(SETTLE, || same_bytes(&a, &b, "big.bin")).is_some(),
        "the big file through the gateway\n{}\n{}",
        a.log(),
        b.log()
    );
    // One byte changed: the other device fetches what changed, in windows too.
    let mut edited = big.clone();
    edited[12 << 20] ^= 0xff;
    std::fs::write(a.path("big.bin"), &edited).unwrap();
    assert!(
        wait_for(SETTLE, || std::fs::read(b.path("big.bin")).ok()
            == Some(edited.clone()))
        .is_some(),
        "the edit through the gateway\n{}\n{}",
        a.log(),
        b.log()
    );
    // 200 files of 300 KiB (60 MB) appear at once: batches up, batches down, each response
    // under the limit.
    std::fs::create_dir_all(a.path("many")).unwrap();
    for i in 0..200u64 {
        std::fs::write(a.path(&format!("many/f{i}.bin")), noise(300 << 10, 100 + i)).unwrap();
    }
    assert!(
        wait_for(SETTLE, || (0..200).all(|i| same_bytes(
            &a,
            &b,
            &format!("many/f{i}.bin")
        )))
        .is_some(),
        "the small files through the gateway\n{}\n{}",
        a.log(),
        b.log()
    );

    let exchanges = gateway.exchanges();
    let refused: Vec<_> = exchanges.iter().filter(|e| e.refused.is_some()).collect();
    assert!(refused.is_empty(), "the gateway refused: {refused:#?}");
    let largest = |f: fn(&syncsphere_e2e::gateway::Exchange) -> usize| {
        exchanges.iter().map(f).max().unwrap_or(0)
    };
    let (up, down) = (largest(|e| e.request_bytes), largest(|e| e.response_bytes));
    assert!(up <= PAYLOAD_MAX && down <= PAYLOAD_MAX, "{up} / {down}");
    // The windows were used: the largest response is a whole window, not the whole file.
    assert!(down >= 4 << 20, "largest response {down}");
    let downloads = exchanges
        .iter()
        .filter(|e| e.method == "GET" && e.path.ends_with("/content"))
        .count();
    assert!(
        downloads >= 3,
        "the big file came in windows ({downloads} requests)"
    );
    eprintln!(
        "{} requests through the gateway; largest request {up} bytes, largest response {down}",
        exchanges.len()
    );
}

/// The double itself refuses what API Gateway refuses: a request body over 10 MB (413), an
/// integration response over 10 MB (500), an integration slower than the timeout (504) — and
/// passes everything else through unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_double_enforces_api_gateways_limits() {
    use axum::routing::{get, post};
    let upstream = axum::Router::new()
        .route("/small", get(|| async { "hello" }))
        .route("/huge", get(|| async { vec![b'x'; PAYLOAD_MAX + 1] }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        )
        .route("/echo", post(|body: axum::body::Bytes| async move { body }))
        .layer(axum::extract::DefaultBodyLimit::disable());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, upstream).await });
    let gateway = RestGateway::start_with_timeout(&upstream_url, Duration::from_secs(1))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", gateway.url)).send();
    let r = get("/small?x=1").await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-amzn-requestid"));
    assert_eq!(r.text().await.unwrap(), "hello");
    let r = get("/huge").await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"message":"Internal server error"}"#
    );
    let r = get("/slow").await.unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"message":"Endpoint request timed out"}"#
    );
    let post = |len: usize| {
        http.post(format!("{}/echo", gateway.url))
            .body(vec![b'y'; len])
            .send()
    };
    let r = post(PAYLOAD_MAX).await.unwrap();
    assert_eq!(r.status(), 200, "exactly 10 MB passes");
    assert_eq!(r.bytes().await.unwrap().len(), PAYLOAD_MAX);
    let r = post(PAYLOAD_MAX + 1).await.unwrap();
    assert_eq!(r.status(), 413);
    let refused: Vec<_> = gateway
        .exchanges()
        .into_iter()
        .filter_map(|e| e.refused.map(|why| (e.path, why)))
        .collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
}

/// The WebSocket API double (`harness/ws_gateway.rs`) behaves as API Gateway documents, seen
/// through the real `aws-sdk-apigatewaymanagement` client (SigV4 as AWS signs it): `$connect`
/// decides the handshake, messages reach `$default` with the connection id, `@connections`
/// posts, describes and deletes connections (410 once gone, 403 unsigned or wrongly signed),
/// binary frames, over-long messages and idle connections are closed, `$disconnect` follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_gateway_double_follows_api_gateway() {
    use aws_sdk_apigatewaymanagement as mgmt;
    use futures_util::{SinkExt, StreamExt};
    use syncsphere_e2e::ws_gateway::{Logged, MESSAGE_MAX, WsGateway, WsGatewayConfig};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    // A service: `$connect` wants `Authorization: Bearer good`; `$default` echoes through
    // `@connections` (signed by the SDK, as a service's task role would).
    #[derive(Clone, Default)]
    struct Service {
        client: std::sync::Arc<std::sync::OnceLock<mgmt::Client>>,
        seen: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    }
    let service = Service::default();
    let app = axum::Router::new()
        .route(
            "/v1/apigw/connect",
            axum::routing::post(|headers: axum::http::HeaderMap| async move {
                let good = headers
                    .get("authorization")
                    .is_some_and(|v| v == "Bearer good");
                let has_id = headers.contains_key("connectionid");
                if good && has_id {
                    axum::http::StatusCode::OK
                } else {
                    axum::http::StatusCode::UNAUTHORIZED
                }
            }),
        )
        .route(
            "/v1/apigw/default",
            axum::routing::post(
                |axum::extract::State(s): axum::extract::State<Service>,
                 headers: axum::http::HeaderMap,
                 body: String| async move {
                    let id = headers["connectionid"].to_str().unwrap().to_owned();
                    s.seen.lock().unwrap().push((id.clone(), body.clone()));
                    let client = s.client.get().unwrap().clone();
                    tokio::spawn(async move {
                        client
                            .post_to_connection()
                            .connection_id(id)
                            .data(mgmt::primitives::Blob::new(format!("echo: {body}")))
                            .send()
                            .await
                            .expect("the echo is posted");
                    });
                    axum::http::StatusCode::OK
                },
            ),
        )
        .route("/v1/apigw/disconnect", axum::routing::post(|| async { "" }))
        .with_state(service.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut config = WsGatewayConfig::for_service(&service_url);
    config.idle_timeout = Duration::from_millis(1500);
    let gateway = WsGateway::start(config).await.unwrap();
    let sdk = |secret: &str| {
        let (key, _, region) = gateway.credentials();
        let conf = mgmt::config::Builder::new()
            .behavior_version(mgmt::config::BehaviorVersion::latest())
            .region(mgmt::config::Region::new(region.to_owned()))
            .credentials_provider(mgmt::config::Credentials::new(
                key, secret, None, None, "test",
            ))
            .endpoint_url(&gateway.management_url)
            .build();
        mgmt::Client::from_conf(conf)
    };
    let client = sdk(gateway.credentials().1);
    service.client.set(client.clone()).ok();
    let connect = |token: &str| {
        let mut req = gateway.ws_url.as_str().into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        tokio_tungstenite::connect_async(req)
    };

    // `$connect` refuses: the handshake gets its status.
    match connect("bad").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("a refused handshake, not {:?}", other.map(|_| ())),
    }
    // Accepted: a message reaches `$default` with the connection id; the echo comes back
    // through `@connections`, signed by the SDK.
    let (mut ws, _) = connect("good").await.expect("accepted");
    ws.send(Message::Text("hello".into())).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap();
    assert_eq!(echo.unwrap().unwrap(), Message::Text("echo: hello".into()));
    let id = service.seen.lock().unwrap()[0].0.clone();
    assert!(id.ends_with('='), "ids look like AWS's: {id}");
    let info = client
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap();
    assert!(info.connected_at().is_some() && info.last_active_at().is_some());
    // A wrong secret: 403.
    let forged = sdk("not-the-secret")
        .post_to_connection()
        .connection_id(&id)
        .data(mgmt::primitives::Blob::new("x"))
        .send()
        .await
        .unwrap_err();
    assert!(
        forged
            .as_service_error()
            .is_some_and(|e| e.is_forbidden_exception()),
        "{forged:?}"
    );
    // Too long for one message: 413.
    let long = client
        .post_to_connection()
        .connection_id(&id)
        .data(mgmt::primitives::Blob::new(vec![b'x'; MESSAGE_MAX + 1]))
        .send()
        .await
        .unwrap_err();
    assert!(
        long.as_service_error()
            .is_some_and(|e| e.is_payload_too_large_exception()),
        "{long:?}"
    );
    // DELETE closes with 1000; the connection is gone (410) from then on.
    client
        .delete_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap();
    assert!(
        matches!(closed, Some(Ok(Message::Close(Some(ref f)))) if u16::from(f.code) == 1000),
        "{closed:?}"
    );
    let gone = client
        .post_to_connection()
        .connection_id(&id)
        .data(mgmt::primitives::Blob::new("late"))
        .send()
        .await
        .unwrap_err();
    assert!(
        gone.as_service_error()
            .is_some_and(|e| e.is_gone_exception()),
        "{gone:?}"
    );

    // A binary frame: 1003. A message over 128 KB: 1009. Nothing for the idle time: 1001.
    async fn close_code<S>(ws: &mut S) -> Option<u16>
    where
        S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
            + Unpin,
    {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => Some(u16::from(f.code)),
            other => panic!("a close frame, not {other:?}"),
        }
    }
    let (mut ws, _) = connect("good").await.unwrap();
    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1003));
    let (mut ws, _) = connect("good").await.unwrap();
    let _ = ws
        .send(Message::Text("y".repeat(MESSAGE_MAX + 1).into()))
        .await;
    assert_eq!(close_code(&mut ws).await, Some(1009));
    let (mut ws, _) = connect("good").await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1001), "idle");
    // Every ended connection got its `$disconnect`.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = gateway.log();
    let closed = log
        .iter()
        .filter(|l| matches!(l, Logged::Closed { .. }))
        .count();
    let disconnects = log
        .iter()
        .filter(|l| {
            matches!(
                l,
                Logged::Integration {
                    route: "$disconnect",
                    status: 200,
                    ..
                }
            )
        })
        .count();
    assert_eq!((closed, disconnects), (4, 4), "{log:#?}");
    assert!(gateway.open_connections().is_empty());
}

/// End to end, AWS mode's push path: two real clients whose push channel goes through the
/// WebSocket API double (`harness/ws_gateway.rs`) to the real server, which serves API
/// Gateway's three integrations (`/v1/apigw/*`, with the shared secret) and pushes through
/// `@connections` with the AWS SDK (SigV4 checked by the double). A save arrives by push (far
/// sooner than the 60 s poll); with test-sized limits (idle 3 s, 20 s at most) the clients'
/// heartbeats keep their connections through idle time and they renew them before the maximum
/// duration, so the double never has to close one; a client that stops leaves through
/// `$disconnect` and the other device's presence shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_get_pushes_through_the_websocket_api() {
    use syncsphere_e2e::ws_gateway::{Logged, WsGateway, WsGatewayConfig};
    const SECRET: &str = "e2e-gateway-secret-0123456789";
    let port = free_loopback_port();
    let service = format!("http://127.0.0.1:{port}");
    let mut config = WsGatewayConfig::for_service(&service);
    config.idle_timeout = Duration::from_secs(3);
    config.max_duration = Duration::from_secs(20);
    config.static_headers = vec![("x-syncsphere-gateway-secret".into(), SECRET.into())];
    let gateway = WsGateway::start(config).await.unwrap();
    let (key, secret, region) = gateway.credentials();
    let server = Server::start_env(
        &format!("127.0.0.1:{port}"),
        None,
        &[
            "--push-url",
            &gateway.ws_url,
            "--apigw-endpoint",
            &gateway.management_url,
            "--apigw-secret",
            SECRET,
            "--apigw-idle-timeout-secs",
            "3",
            "--apigw-max-duration-secs",
            "20",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", key),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_REGION", region),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    )
    .expect("server starts");
    let (a, b) = signed_in_pair(&server, "wsgw@example.com");
    std::fs::create_dir_all(&a.folder).unwrap();
    let _pa = a.start_sync().unwrap();
    let mut pb = b.start_sync().unwrap();
    let connected = |d: &syncsphere_e2e::Device| {
        d.status()
            .is_some_and(|s| s["connected"] == true && s["state"] == "up_to_date")
    };
    assert!(
        wait_for(SETTLE, || connected(&a) && connected(&b)).is_some(),
        "both push channels up through the gateway\n{}\n{}\n{}",
        a.log(),
        b.log(),
        server.log()
    );

    // A save arrives by push.
    let arrives = |name: &str, body: &[u8]| {
        std::fs::write(a.path(name), body).unwrap();
        wait_for(Duration::from_secs(30), || {
            std::fs::read(b.path(name)).ok().as_deref() == Some(body)
        })
    };
    let first = arrives("pushed.txt", b"through API Gateway").expect("arrives");
    assert!(
        first < Duration::from_secs(10),
        "pushed, not polled: {first:?}"
    );

    // Idle for longer than the idle timeout, and past the maximum duration: heartbeats and
    // renewals keep the channel without the double closing anything.
    std::thread::sleep(Duration::from_secs(25));
    assert!(
        connected(&a) && connected(&b),
        "still connected\n{}",
        gateway.timed_log()
    );
    let later = arrives("later.txt", b"still pushed").expect("arrives");
    assert!(
        later < Duration::from_secs(10),
        "pushed, not polled: {later:?}"
    );
    let log = gateway.log();
    let closed_by_gateway: Vec<_> = log
        .iter()
        .filter(|l| matches!(l, Logged::Closed { code: Some(_), .. }))
        .collect();
    assert!(
        closed_by_gateway.is_empty(),
        "the gateway closed connections: {closed_by_gateway:?}\n{}\n--- a\n{}\n--- b\n{}\n--- server\n{}",
        gateway.timed_log(),
        a.log(),
        b.log(),
        server.log()
    );
    let connects = log
        .iter()
        .filter(|l| {
            matches!(
                l,
                Logged::Integration {
                    route: "$connect",
                    status: 200,
                    ..
                }
            )
        })
        .count();
    assert!(
        connects >= 4,
        "each client renewed its connection: {connects} connects\n{log:#?}"
    );
    let pushes = log
        .iter()
        .filter(|l| matches!(l, Logged::Management { method, status: 200, .. } if method == "POST"))
        .count();
    assert!(pushes >= 4, "pushes went through @connections: {log:#?}");

    // The desktop stops: `$disconnect` lets its connection go; the laptop sees it offline.
    pb.stop();
    let offline = wait_for(Duration::from_secs(15), || {
        a.status()
            .is_some_and(|s| s["online_devices"].as_array().is_some_and(|d| d.len() == 1))
    });
    assert!(
        offline.is_some(),
        "presence after $disconnect: {:?}\n{}",
        a.status(),
        server.log()
    );
    assert!(
        gateway.log().iter().any(|l| matches!(
            l,
            Logged::Integration {
                route: "$disconnect",
                status: 200,
                ..
            }
        )),
        "$disconnect reached the service"
    );
}
