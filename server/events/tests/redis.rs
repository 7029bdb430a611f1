//! The Redis bus against a real Redis (`SYNCSPHERE_TEST_REDIS_URL`, which `scripts/test.sh`
//! sets; skipped without it, required under `CI`): instances are fake [`Recipient`]s.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use syncsphere_events::redis::{RedisEndpoint, RedisPublisher, RedisRevocations, RedisSubscriber};
use syncsphere_events::{
    Event, Presence, Publisher, Recipient, Revocation, Revocations, Subscriber,
};
use syncsphere_protocol::ws::OnlineDevice;
use syncsphere_protocol::{ChangeEvent, ChangeKind, Rev, Seq, UserId};
use syncsphere_test_support::redis_url;
use tokio::sync::mpsc;

/// A user id no other run of these tests uses (they may share one Redis).
fn fresh_user(name: &str) -> UserId {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("events-test-{name}-{}-{nanos}", std::process::id()).into()
}

/// One State instance as the bus sees it.
#[derive(Default)]
struct Instance {
    delivered: Mutex<Vec<(UserId, Event)>>,
    shown: Mutex<Vec<(UserId, Vec<OnlineDevice>)>>,
    local: Mutex<Vec<OnlineDevice>>,
    joins: Mutex<Option<mpsc::UnboundedSender<UserId>>>,
}

impl Recipient for Instance {
    fn deliver(&self, user_id: &UserId, event: Event) {
        self.delivered
            .lock()
            .unwrap()
            .push((user_id.to_owned(), event));
    }
    fn local_devices(&self, _user_id: &UserId) -> Vec<OnlineDevice> {
        self.local.lock().unwrap().clone()
    }
    fn show_presence(&self, user_id: &UserId, devices: Vec<OnlineDevice>) {
        self.shown
            .lock()
            .unwrap()
            .push((user_id.to_owned(), devices));
    }
    fn report_presence_changes(&self, to: mpsc::UnboundedSender<UserId>) {
        *self.joins.lock().unwrap() = Some(to);
    }
}

impl Instance {
    fn delivered(&self) -> Vec<(UserId, Event)> {
        self.delivered.lock().unwrap().clone()
    }

    /// A device of `user_id` joined or left this instance: its view is now `devices`.
    fn joined(&self, user_id: &str, devices: Vec<OnlineDevice>) {
        *self.local.lock().unwrap() = devices;
        let joins = self.joins.lock().unwrap();
        joins
            .as_ref()
            .expect("listening")
            .send(user_id.into())
            .unwrap();
    }

    fn last_shown(&self) -> Option<Vec<OnlineDevice>> {
        self.shown.lock().unwrap().last().map(|(_, d)| d.clone())
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn change(seq: i64) -> ChangeEvent {
    ChangeEvent {
        seq: Seq(seq),
        file_id: format!("f{seq}").into(),
        event: ChangeKind::Created,
        path: format!("file {seq}.txt"),
        old_path: None,
        rev: Rev(1),
        size: 3,
        sha256: "ab".into(),
        origin_device: Some("dev-a".into()),
        at_ms: 1,
    }
}

fn device(id: &str, connections: u32) -> OnlineDevice {
    OnlineDevice {
        device_id: id.into(),
        device_name: None,
        connections,
    }
}

#[tokio::test]
async fn events_reach_the_instance_only_while_it_holds_the_user() {
    let Some(url) = redis_url() else { return };
    let redis = RedisEndpoint::from(url.as_str());
    let (user, other) = (fresh_user("held"), fresh_user("other"));
    let publisher = RedisPublisher::connect(&redis).await.unwrap();
    let instance = Arc::new(Instance::default());
    let subscriber = RedisSubscriber::connect(&redis, instance.clone())
        .await
        .unwrap();
    // Held twice (two connections of the user): one release keeps the subscription.
    subscriber.hold(&user).await.unwrap();
    subscriber.hold(&user).await.unwrap();
    publisher.publish(&other, Event::Change(change(1)));
    publisher.publish(&user, Event::Change(change(2)));
    // A sign-in session bound to a device: recorded, not announced (handed over before the
    // revocation, so recorded once that arrives).
    let bound = |session: &str, device: &str| Event::SessionBound {
        session: session.into(),
        device_id: device.into(),
    };
    publisher.publish(&user, bound("s-live", "dev-a"));
    publisher.publish(&user, bound("s-lost", "dev-b"));
    publisher.publish(
        &user,
        Event::DeviceRevoked {
            device_id: "dev-b".into(),
            sessions: vec!["s-lost".into()],
        },
    );
    let expected = vec![
        (user.clone(), Event::Change(change(2))),
        (
            user.clone(),
            Event::DeviceRevoked {
                device_id: "dev-b".into(),
                sessions: vec![],
            },
        ),
    ];
    wait_for("the change and the revocation", || {
        instance.delivered().len() >= 2
    })
    .await;
    assert_eq!(
        instance.delivered(),
        expected,
        "in order, only the held user"
    );
    // The revocation was recorded before it was announced.
    let revocations = RedisRevocations::connect(&redis).await.unwrap();
    let lookup = |user: UserId, device: &'static str| {
        let revocations = revocations.clone();
        async move {
            revocations
                .lookup(&user, Some(&device.into()), None)
                .await
                .unwrap()
        }
    };
    let revoked_device = Revocation {
        device_revoked: true,
        ..Revocation::default()
    };
    assert_eq!(lookup(user.clone(), "dev-b").await, revoked_device);
    assert_eq!(lookup(user.clone(), "dev-a").await, Revocation::default());
    assert_eq!(lookup(other.clone(), "dev-b").await, Revocation::default());
    // A token bound to no device acts as its session's device, revoked with it.
    let by_session = |user: UserId, session: &'static str| {
        let revocations = revocations.clone();
        async move {
            revocations
                .lookup(&user, None, Some(session))
                .await
                .unwrap()
        }
    };
    assert_eq!(
        by_session(user.clone(), "s-lost").await,
        Revocation {
            device_revoked: true,
            session_device: Some("dev-b".into()),
            signed_out_before: None,
        }
    );
    assert_eq!(
        by_session(user.clone(), "s-live").await,
        Revocation {
            session_device: Some("dev-a".into()),
            ..Revocation::default()
        }
    );
    assert_eq!(
        by_session(user.clone(), "s-new").await,
        Revocation::default()
    );
    assert_eq!(
        by_session(other.clone(), "s-lost").await,
        Revocation::default()
    );
    // The token's own device comes first: its session's binding is reported beside it.
    let both = revocations
        .lookup(&user, Some(&"dev-a".into()), Some("s-lost"))
        .await
        .unwrap();
    assert!(!both.device_revoked);
    assert_eq!(both.session_device, Some("dev-b".into()));

    // Signing out everywhere: recorded (the later cut-off wins), then announced.
    publisher.publish(&user, Event::SignedOut { before: 2_000 });
    publisher.publish(&user, Event::SignedOut { before: 1_000 });
    wait_for("both sign-outs", || instance.delivered().len() >= 4).await;
    assert_eq!(
        instance.delivered()[2..],
        [
            (user.clone(), Event::SignedOut { before: 2_000 }),
            (user.clone(), Event::SignedOut { before: 1_000 }),
        ]
    );
    assert_eq!(
        lookup(user.clone(), "dev-a").await,
        Revocation {
            signed_out_before: Some(2_000),
            ..Revocation::default()
        }
    );
    assert_eq!(
        revocations
            .lookup(&user, None, None)
            .await
            .unwrap()
            .signed_out_before,
        Some(2_000)
    );
    assert_eq!(lookup(other.clone(), "dev-a").await, Revocation::default());

    subscriber.release(&user);
    publisher.publish(&user, Event::Change(change(3)));
    wait_for("the change after one release", || {
        instance.delivered().len() == 5
    })
    .await;
    subscriber.release(&user);
    // Interest changes are applied in order by one task; give it time to unsubscribe.
    tokio::time::sleep(Duration::from_millis(300)).await;
    publisher.publish(&user, Event::Change(change(4)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        instance.delivered().len(),
        5,
        "released: nothing more arrives"
    );
}

#[tokio::test]
async fn presence_is_merged_over_the_instances_holding_the_user() {
    let Some(url) = redis_url() else { return };
    let redis = RedisEndpoint::from(url.as_str());
    let user = fresh_user("presence");
    let (a, b) = (Arc::new(Instance::default()), Arc::new(Instance::default()));
    let sub_a = RedisSubscriber::connect(&redis, a.clone()).await.unwrap();
    let sub_b = RedisSubscriber::connect(&redis, b.clone()).await.unwrap();
    sub_a.hold(&user).await.unwrap();
    sub_b.hold(&user).await.unwrap();

    a.joined(&user, vec![device("dev-a", 1)]);
    wait_for("a's view shown on b", || {
        b.last_shown() == Some(vec![device("dev-a", 1)])
    })
    .await;
    b.joined(&user, vec![device("dev-a", 1), device("dev-b", 1)]);
    let merged = vec![device("dev-a", 2), device("dev-b", 1)];
    for instance in [&a, &b] {
        wait_for("the merged view", || {
            instance.last_shown() == Some(merged.clone())
        })
        .await;
    }
    assert!(
        a.delivered().is_empty(),
        "presence notices are not delivered as events"
    );
    let publisher = RedisPublisher::connect(&redis).await.unwrap();
    assert_eq!(publisher.online(&user).await.unwrap(), merged);

    a.joined(&user, Vec::new());
    wait_for("a's devices gone", || {
        b.last_shown() == Some(vec![device("dev-a", 1), device("dev-b", 1)])
    })
    .await;
}

/// The gateway registry two instances share: records and claims are one per connection, a
/// record keeps its expiry when updated, and an instance's claim counts as alive while that
/// instance's key lives. `$disconnect` travels to the serving instance on the user's channel.
#[tokio::test]
async fn gateway_connections_are_shared_claimed_once_and_announced_when_gone() {
    use syncsphere_events::GatewayConnections;
    use syncsphere_events::redis::RedisGatewayConnections;
    let Some(url) = redis_url() else { return };
    let redis = RedisEndpoint::from(url.as_str());
    let a = RedisGatewayConnections::connect(&redis).await.unwrap();
    let b = RedisGatewayConnections::connect(&redis).await.unwrap();
    let id = format!("Gw-{}=", rand_suffix());
    let ttl = Duration::from_secs(60);
    a.insert(&id, "one".into(), ttl).await.unwrap();
    assert_eq!(b.get(&id).await.unwrap().as_deref(), Some("one"));
    assert!(b.update(&id, "two".into()).await.unwrap());
    assert_eq!(a.get(&id).await.unwrap().as_deref(), Some("two"));
    assert!(!a.update("never-recorded", "x".into()).await.unwrap());
    assert_eq!(a.served(&id).await.unwrap(), None, "nobody serves it yet");
    assert!(b.claim(&id, ttl).await.unwrap());
    assert!(!a.claim(&id, ttl).await.unwrap(), "claimed once");
    assert_eq!(a.served(&id).await.unwrap(), Some(true), "b is alive");
    assert_eq!(b.served(&id).await.unwrap(), Some(true));
    // An instance whose key is gone (it crashed 30 s ago) serves nothing.
    let mut conn = ::redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let claim_of: String =
        ::redis::AsyncCommands::get(&mut conn, format!("syncsphere:gateway-claim:{id}"))
            .await
            .unwrap();
    let _: i64 = ::redis::AsyncCommands::del(&mut conn, format!("syncsphere:instance:{claim_of}"))
        .await
        .unwrap();
    assert_eq!(a.served(&id).await.unwrap(), Some(false));
    // A live instance adopts the crashed one's connections — once, whoever asks next.
    let adopted = a.adopt_orphans().await.unwrap();
    assert!(adopted.contains(&id), "{adopted:?}");
    assert!(!a.adopt_orphans().await.unwrap().contains(&id));
    assert_eq!(a.remove(&id).await.unwrap().as_deref(), Some("two"));
    assert_eq!(b.remove(&id).await.unwrap(), None);
    assert_eq!(a.served(&id).await.unwrap(), None, "the claim went with it");
    // The record expires with its connection's longest life.
    a.insert(&id, "short".into(), Duration::from_secs(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(b.get(&id).await.unwrap(), None);

    // `$disconnect` on one instance reaches the instance holding the user.
    let user = fresh_user("gw-user");
    let publisher = RedisPublisher::connect(&redis).await.unwrap();
    let instance = Arc::new(Instance::default());
    let subscriber = RedisSubscriber::connect(&redis, instance.clone())
        .await
        .unwrap();
    subscriber.hold(&user).await.unwrap();
    let gone = Event::GatewayDisconnected {
        connection: id.clone(),
    };
    publisher.publish(&user, gone.clone());
    wait_for("the disconnect", || {
        instance.delivered().contains(&(user.clone(), gone.clone()))
    })
    .await;
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}
