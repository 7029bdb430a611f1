//! The State service behind API Gateway's WebSocket API (`apigw.rs`), in process: the three
//! integration endpoints called as API Gateway calls them, `@connections` recorded by a fake
//! of the [`Management`] trait (the real SDK client against the WebSocket API double runs in
//! `tests/e2e/aws_gateway.rs`), the registry in memory, tokens from a test key.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use syncsphere_auth::idp::SigningKey;
use syncsphere_auth::{JwksSource, Verifier};
use syncsphere_events::{Event, LocalBus, LocalGatewayConnections, Recipient};
use syncsphere_protocol::ws::{
    CLOSE_DEVICE_REVOKED, CLOSE_DEVICE_UNREGISTERED, CLOSE_PROTOCOL, ConnectionLimits,
};
use syncsphere_protocol::{ChangeEvent, ChangeKind, Rev, Seq};
use syncsphere_state::apigw::{Gateway, Management, ManagementError, SECRET_HEADER};
use syncsphere_state::{PushHub, StateService, WsTimeouts};
use tower::ServiceExt;

const ISSUER: &str = "http://issuer.test/pool";
const CLIENT_ID: &str = "test-client";
const USER: &str = "user-1";
const SECRET: &str = "0123456789abcdef-gateway";

/// What the service did through `@connections`.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Post(String, Value),
    Delete(String),
}

/// Records calls; connections in `gone` answer 410.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<Call>>,
    gone: Mutex<Vec<String>>,
}

impl Management for Recorder {
    fn post<'a>(
        &'a self,
        id: &'a str,
        data: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), ManagementError>> {
        Box::pin(async move {
            if self.gone.lock().unwrap().iter().any(|g| g == id) {
                return Err(ManagementError::Gone);
            }
            let msg = serde_json::from_slice(&data).expect("messages are JSON");
            self.calls.lock().unwrap().push(Call::Post(id.into(), msg));
            Ok(())
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), ManagementError>> {
        Box::pin(async move {
            self.calls.lock().unwrap().push(Call::Delete(id.into()));
            self.gone.lock().unwrap().push(id.into());
            Ok(())
        })
    }
}

struct Service {
    app: Router,
    hub: Arc<PushHub>,
    calls: Arc<Recorder>,
    key: SigningKey,
    _dir: tempfile::TempDir,
}

fn service() -> Service {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::load_or_create(&dir.path().join("key.pem")).unwrap();
    let verifier = Verifier::new(ISSUER, [CLIENT_ID], JwksSource::Static(key.jwks()));
    let hub = PushHub::new();
    let bus = LocalBus::new(hub.clone());
    let calls = Arc::new(Recorder::default());
    let gateway = Gateway {
        management: calls.clone(),
        connections: LocalGatewayConnections::new(),
        events: bus.clone(),
        secret: SECRET.into(),
        limits: ConnectionLimits {
            idle_timeout_secs: 600,
            max_duration_secs: 7200,
        },
    };
    let app = syncsphere_state::router(StateService {
        hub: hub.clone(),
        verifier: Arc::new(verifier),
        subscriber: bus,
        timeouts: WsTimeouts::default(),
        gateway: Some(Arc::new(gateway)),
    });
    Service {
        app,
        hub,
        calls,
        key,
        _dir: dir,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn change(seq: i64, origin: &str) -> ChangeEvent {
    ChangeEvent {
        seq: Seq(seq),
        file_id: "f1".into(),
        event: ChangeKind::Created,
        path: "a.txt".into(),
        old_path: None,
        rev: Rev(1),
        size: 1,
        sha256: "00".into(),
        origin_device: Some(origin.into()),
        at_ms: 0,
    }
}

impl Service {
    fn token(&self, lifetime: u64, device: Option<&str>) -> String {
        let now = now();
        let mut claims = json!({"sub": USER, "iss": ISSUER, "client_id": CLIENT_ID,
                                "token_use": "access", "iat": now, "exp": now + lifetime});
        if let Some(device) = device {
            claims["device_key"] = json!(device);
        }
        self.key.sign(&claims).unwrap()
    }

    /// An integration call as API Gateway makes it.
    async fn call(
        &self,
        route: &str,
        id: &str,
        secret: &str,
        token: Option<&str>,
        body: &str,
    ) -> StatusCode {
        let mut req = Request::post(format!("/v1/apigw/{route}"))
            .header(SECRET_HEADER, secret)
            .header("connectionId", id);
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        resp.status()
    }

    /// `$connect` with a token bound to `device`, then `hello` as `device`.
    async fn connect(&self, id: &str, device: &str) {
        let token = self.token(3600, Some(device));
        assert_eq!(
            self.call("connect", id, SECRET, Some(&token), "").await,
            StatusCode::OK
        );
        let hello = json!({"type": "hello", "device_id": device, "cursor": 0}).to_string();
        assert_eq!(
            self.call("default", id, SECRET, None, &hello).await,
            StatusCode::OK
        );
        self.wait_for(|calls| {
            calls
                .iter()
                .any(|c| matches!(c, Call::Post(to, m) if to == id && m["type"] == "welcome"))
        })
        .await;
    }

    async fn wait_for(&self, done: impl Fn(&[Call]) -> bool) -> Vec<Call> {
        self.wait_up_to(Duration::from_secs(5), done).await
    }

    async fn wait_up_to(&self, limit: Duration, done: impl Fn(&[Call]) -> bool) -> Vec<Call> {
        let deadline = Instant::now() + limit;
        loop {
            let calls = self.calls.calls.lock().unwrap().clone();
            if done(&calls) {
                return calls;
            }
            assert!(
                Instant::now() < deadline,
                "not seen in {limit:?}: {calls:#?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn posts_to(&self, id: &str, kind: &str) -> Vec<Value> {
        self.calls
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter_map(|c| match c {
                Call::Post(to, m) if to == id && m["type"] == kind => Some(m.clone()),
                _ => None,
            })
            .collect()
    }
}

#[tokio::test]
async fn only_our_gateway_may_call_and_only_with_a_valid_token() {
    let s = service();
    let token = s.token(3600, None);
    assert_eq!(
        s.call("connect", "c1", "wrong-secret", Some(&token), "")
            .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.call("connect", "c1", "", Some(&token), "").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.call("disconnect", "c1", "nope", None, "").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.call("connect", "c1", SECRET, None, "").await,
        StatusCode::UNAUTHORIZED,
        "no token: the handshake is refused"
    );
    assert_eq!(
        s.call("connect", "c1", SECRET, Some("not.a.token"), "")
            .await,
        StatusCode::UNAUTHORIZED
    );
    // An ID token where an access token is required, a token of another app client, an
    // expired one: refused as on every other route.
    let now = now();
    for claims in [
        json!({"sub": USER, "iss": ISSUER, "aud": CLIENT_ID, "token_use": "id",
               "iat": now, "exp": now + 3600}),
        json!({"sub": USER, "iss": ISSUER, "client_id": "another-client",
               "token_use": "access", "iat": now, "exp": now + 3600}),
        json!({"sub": USER, "iss": ISSUER, "client_id": CLIENT_ID,
               "token_use": "access", "iat": now - 7200, "exp": now - 3600}),
    ] {
        let token = s.key.sign(&claims).unwrap();
        assert_eq!(
            s.call("connect", "c1", SECRET, Some(&token), "").await,
            StatusCode::UNAUTHORIZED,
            "{claims}"
        );
    }
    // No connection id: the integration is misconfigured.
    let good = s.token(3600, None);
    let resp = s
        .app
        .clone()
        .oneshot(
            Request::post("/v1/apigw/connect")
                .header(SECRET_HEADER, SECRET)
                .header("authorization", format!("Bearer {good}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // A message on a connection nobody recorded is closed.
    let hello = json!({"type": "hello", "device_id": "d", "cursor": 0}).to_string();
    assert_eq!(
        s.call("default", "c1", SECRET, None, &hello).await,
        StatusCode::OK
    );
    s.wait_for(|calls| calls.contains(&Call::Delete("c1".into())))
        .await;
    assert_eq!(s.hub.connections(USER), 0);
}

#[tokio::test]
async fn hello_registers_and_pushes_go_to_other_devices_through_connections() {
    let s = service();
    s.connect("conn-a=", "dev-a").await;
    s.connect("conn-b=", "dev-b").await;
    assert_eq!(s.hub.connections(USER), 2);
    let welcome = &s.posts_to("conn-a=", "welcome")[0];
    assert_eq!(welcome["connection_id"], "conn-a=");
    assert_eq!(welcome["limits"]["idle_timeout_secs"], 600);
    assert_eq!(welcome["limits"]["max_duration_secs"], 7200);
    s.hub
        .deliver(&USER.into(), Event::Change(change(1, "dev-a")));
    s.wait_for(|calls| {
        calls
            .iter()
            .any(|c| matches!(c, Call::Post(to, m) if to == "conn-b=" && m["type"] == "change"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        s.posts_to("conn-a=", "change").is_empty(),
        "never to the origin device"
    );
    // Presence spans both.
    let presence = s.posts_to("conn-a=", "presence");
    assert_eq!(
        presence.last().unwrap()["devices"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // A second hello on the same connection changes nothing.
    let hello = json!({"type": "hello", "device_id": "dev-z", "cursor": 0}).to_string();
    s.call("default", "conn-a=", SECRET, None, &hello).await;
    assert_eq!(s.hub.connections(USER), 2);
    // Heartbeats keep it (this instance serves it, alive).
    s.call("default", "conn-a=", SECRET, None, r#"{"type":"ping"}"#)
        .await;
    assert!(
        !s.calls
            .calls
            .lock()
            .unwrap()
            .contains(&Call::Delete("conn-a=".into()))
    );
}

#[tokio::test]
async fn disconnect_and_gone_connections_are_let_go() {
    let s = service();
    s.connect("a", "dev-a").await;
    s.connect("b", "dev-b").await;
    // `$disconnect` reaches the service: the hub lets go, presence follows.
    assert_eq!(
        s.call("disconnect", "a", SECRET, None, "").await,
        StatusCode::OK
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.hub.connections(USER) != 1 {
        assert!(Instant::now() < deadline, "disconnect not applied");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Idempotent.
    assert_eq!(
        s.call("disconnect", "a", SECRET, None, "").await,
        StatusCode::OK
    );
    // `$disconnect` never came for b, but @connections says it is gone: the first push finds out.
    s.calls.gone.lock().unwrap().push("b".into());
    s.hub
        .deliver(&USER.into(), Event::Change(change(2, "elsewhere")));
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.hub.connections(USER) != 0 {
        assert!(Instant::now() < deadline, "gone connection kept");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.hub.metrics.connections.get(), 0);
}

#[tokio::test]
async fn revocation_and_protocol_errors_say_bye_with_the_code_then_close() {
    let s = service();
    s.connect("a", "dev-a").await;
    s.hub.deliver(
        &USER.into(),
        Event::DeviceRevoked {
            device_id: "dev-a".into(),
            sessions: Vec::new(),
        },
    );
    let calls = s
        .wait_for(|calls| calls.contains(&Call::Delete("a".into())))
        .await;
    let bye = calls
        .iter()
        .find_map(|c| match c {
            Call::Post(to, m) if to == "a" && m["type"] == "bye" => Some(m.clone()),
            _ => None,
        })
        .expect("bye before the close");
    assert_eq!(bye["code"], CLOSE_DEVICE_REVOKED);
    assert_eq!(s.hub.connections(USER), 0);

    // A device-bound token speaks for its device only.
    let token = s.token(3600, Some("dev-bound"));
    assert_eq!(
        s.call("connect", "b", SECRET, Some(&token), "").await,
        StatusCode::OK
    );
    let hello = json!({"type": "hello", "device_id": "dev-other", "cursor": 0}).to_string();
    s.call("default", "b", SECRET, None, &hello).await;
    let calls = s
        .wait_for(|calls| calls.contains(&Call::Delete("b".into())))
        .await;
    assert!(calls.iter().any(
        |c| matches!(c, Call::Post(to, m) if to == "b" && m["type"] == "bye" && m["code"] == CLOSE_PROTOCOL)
    ));
    assert_eq!(s.hub.connections(USER), 0);
}

/// A token bound to no device (a pool sign-in before the device registered) may not say
/// `hello` as any device: `bye` 4005 and the connection is closed, nothing registered.
#[tokio::test]
async fn a_token_bound_to_no_device_must_register_first() {
    let s = service();
    let token = s.token(3600, None);
    assert_eq!(
        s.call("connect", "u", SECRET, Some(&token), "").await,
        StatusCode::OK
    );
    let hello = json!({"type": "hello", "device_id": "dev-anything", "cursor": 0}).to_string();
    s.call("default", "u", SECRET, None, &hello).await;
    let calls = s
        .wait_for(|calls| calls.contains(&Call::Delete("u".into())))
        .await;
    assert!(calls.iter().any(|c| matches!(c,
        Call::Post(to, m) if to == "u" && m["type"] == "bye" && m["code"] == CLOSE_DEVICE_UNREGISTERED)));
    assert!(
        !calls
            .iter()
            .any(|c| matches!(c, Call::Post(_, m) if m["type"] == "welcome")),
        "never welcomed"
    );
    assert_eq!(s.hub.connections(USER), 0);
}

#[tokio::test]
async fn a_token_that_runs_out_without_a_fresh_one_ends_the_connection() {
    let s = service();
    // Lives 4 s: reauth is asked halfway (2 s), the connection ends 10 s after expiry unless
    // a fresh token comes. One comes for connection a, none for b.
    for id in ["a", "b"] {
        let token = s.token(4, Some(&format!("dev-{id}")));
        assert_eq!(
            s.call("connect", id, SECRET, Some(&token), "").await,
            StatusCode::OK
        );
        let hello = json!({"type": "hello", "device_id": format!("dev-{id}"), "cursor": 0});
        s.call("default", id, SECRET, None, &hello.to_string())
            .await;
    }
    s.wait_up_to(Duration::from_secs(10), |calls| {
        calls
            .iter()
            .filter(|c| matches!(c, Call::Post(_, m) if m["type"] == "reauth"))
            .count()
            == 2
    })
    .await;
    let fresh = s.token(3600, Some("dev-a"));
    let auth = json!({"type": "auth", "token": fresh}).to_string();
    s.call("default", "a", SECRET, None, &auth).await;
    let calls = s
        .wait_up_to(Duration::from_secs(20), |calls| {
            calls.contains(&Call::Delete("b".into()))
        })
        .await;
    assert!(calls.iter().any(
        |c| matches!(c, Call::Post(to, m) if to == "b" && m["type"] == "bye" && m["code"] == 4001)
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !s.calls
            .calls
            .lock()
            .unwrap()
            .contains(&Call::Delete("a".into())),
        "the fresh token keeps a"
    );
    assert_eq!(s.hub.connections(USER), 1);
}
