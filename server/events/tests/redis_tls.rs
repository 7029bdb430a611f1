//! The Redis bus over TLS with a password, as ElastiCache with in-transit encryption and an
//! AUTH token: a `rediss://` URL, the password given apart from it, the server's certificate
//! checked against `SSL_CERT_FILE` (the system trust store stands in for Amazon's public CA).
//! Against the test Redis of `SYNCSPHERE_TEST_REDIS_TLS_*` (skipped without it, required under
//! `CI`). `SSL_CERT_FILE` is process-wide, so what uses TLS runs in a child process.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use syncsphere_events::redis::{RedisEndpoint, RedisPublisher, RedisSubscriber};
use syncsphere_events::{Event, EventsError, Publisher, Recipient, Subscriber};
use syncsphere_protocol::ws::OnlineDevice;
use syncsphere_protocol::{ChangeEvent, ChangeKind, Rev, Seq, UserId};
use syncsphere_test_support::{is_child, redis_tls, run_child, unrelated_ca};
use tokio::sync::mpsc;

/// An instance that only keeps what it is delivered.
#[derive(Default)]
struct Instance {
    delivered: Mutex<Vec<(UserId, Event)>>,
}

impl Recipient for Instance {
    fn deliver(&self, user_id: &UserId, event: Event) {
        self.delivered
            .lock()
            .unwrap()
            .push((user_id.to_owned(), event));
    }
    fn local_devices(&self, _user_id: &UserId) -> Vec<OnlineDevice> {
        Vec::new()
    }
    fn show_presence(&self, _user_id: &UserId, _devices: Vec<OnlineDevice>) {}
    fn report_presence_changes(&self, _to: mpsc::UnboundedSender<UserId>) {}
}

fn change() -> ChangeEvent {
    ChangeEvent {
        seq: Seq(1),
        file_id: "f1".into(),
        event: ChangeKind::Created,
        path: "over tls.txt".into(),
        old_path: None,
        rev: Rev(1),
        size: 3,
        sha256: "ab".into(),
        origin_device: Some("dev-a".into()),
        at_ms: 1,
    }
}

/// The connect error of `endpoint`, as the server would print it (the whole chain).
async fn connect_error(endpoint: &RedisEndpoint) -> String {
    let err: EventsError =
        tokio::time::timeout(Duration::from_secs(10), RedisPublisher::connect(endpoint))
            .await
            .expect("connecting ended within 10 s")
            .err()
            .expect("connecting failed");
    assert!(matches!(err, EventsError::Connect { .. }), "{err:?}");
    err.to_string()
}

#[tokio::test]
async fn the_bus_works_over_tls_with_the_password_given_apart() {
    let Some(redis) = redis_tls() else { return };
    run_child(
        "child_bus_over_tls",
        &[("SSL_CERT_FILE", redis.ca.as_os_str())],
    );
}

#[tokio::test]
async fn child_bus_over_tls() {
    if !is_child("child_bus_over_tls") {
        return;
    }
    let redis = redis_tls().unwrap();
    let endpoint = RedisEndpoint::new(redis.url.as_str(), Some(redis.password.clone()));
    let publisher = RedisPublisher::connect(&endpoint).await.unwrap();
    let instance = Arc::new(Instance::default());
    let subscriber = RedisSubscriber::connect(&endpoint, instance.clone())
        .await
        .unwrap();
    let user = UserId::from(format!("tls-{}", std::process::id()));
    subscriber.hold(&user).await.unwrap();
    publisher.publish(&user, Event::Change(change()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while instance.delivered.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no event over TLS within 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        *instance.delivered.lock().unwrap(),
        vec![(user, Event::Change(change()))]
    );

    // A wrong password and none at all: refused at connect, saying so, showing no password.
    let wrong = RedisEndpoint::new(redis.url.as_str(), Some("not-the-token".into()));
    let err = connect_error(&wrong).await;
    // The crate reports Redis's WRONGPASS as its own `AuthenticationFailed`.
    assert!(err.contains("Password authentication failed"), "{err}");
    assert!(!err.contains("not-the-token"), "{err}");
    let err = connect_error(&RedisEndpoint::new(redis.url.as_str(), None)).await;
    assert!(err.contains("NOAUTH"), "{err}");
    eprintln!("no password: {err}");
    assert!(err.contains(redis.url.as_str()), "names the address: {err}");
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    if redis_tls().is_none() {
        return;
    }
    run_child(
        "child_untrusted_certificate",
        &[("SSL_CERT_FILE", unrelated_ca().as_os_str())],
    );
}

#[tokio::test]
async fn child_untrusted_certificate() {
    if !is_child("child_untrusted_certificate") {
        return;
    }
    let redis = redis_tls().unwrap();
    let endpoint = RedisEndpoint::new(redis.url.as_str(), Some(redis.password.clone()));
    let err = connect_error(&endpoint).await;
    assert!(
        err.contains("certificate") && err.contains("UnknownIssuer"),
        "{err}"
    );
    assert!(!err.contains(&redis.password), "{err}");
    eprintln!("untrusted: {err}");
}

/// `redis://` to a port that speaks TLS only: an error within the connect timeout, not a hang.
#[tokio::test]
async fn plain_redis_to_the_tls_port_fails_promptly() {
    let Some(redis) = redis_tls() else { return };
    let plain = redis.url.replacen("rediss://", "redis://", 1);
    let endpoint = RedisEndpoint::new(plain, Some(redis.password.clone()));
    let err = connect_error(&endpoint).await;
    assert!(!err.contains(&redis.password), "{err}");
    eprintln!("plain to TLS: {err}");
}
