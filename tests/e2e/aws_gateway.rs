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
