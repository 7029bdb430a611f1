//! The registry of live connections per user and the non-blocking fan-out to them.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use syncsphere_protocol::UserId;

use syncsphere_events::{Event, Recipient};
use syncsphere_protocol::ChangeEvent;
use syncsphere_protocol::ws::{OnlineDevice, ServerMessage};
use tokio::sync::{mpsc, watch};

use crate::metrics::PushMetrics;

/// Messages queued per connection before it counts as too slow.
pub const QUEUE_CAPACITY: usize = 256;
/// Default limit of simultaneous connections per user (all devices together).
pub const DEFAULT_MAX_CONNECTIONS_PER_USER: usize = 32;

/// A message waiting in a connection's queue, with when it was handed to the hub. The message
/// is shared: one allocation per fan-out, and a queue slot stays small (tokio allocates queue
/// slots in blocks of 32, so a fat slot would cost every idle connection kilobytes).
pub(crate) struct Queued {
    pub msg: Arc<ServerMessage>,
    pub since: Instant,
}

/// Why the hub ended a connection's queue ([`Registration::ended`]).
pub(crate) const ENDED_NO: u8 = 0;
/// The connection fell behind: send `resync` and close with 4000.
pub(crate) const ENDED_OVERFLOW: u8 = 1;
/// The connection's device was revoked: close with 4004.
pub(crate) const ENDED_REVOKED: u8 = 2;
/// The user signed out everywhere: close with 4001.
pub(crate) const ENDED_SIGNED_OUT: u8 = 3;
/// The connection is gone already (API Gateway's `$disconnect`): nothing to send.
pub(crate) const ENDED_GONE: u8 = 4;

/// Why the hub ended a connection's queue (`ENDED_*`), and a wake-up for its task: a task
/// stuck writing to a peer that stopped reading stops waiting at once, instead of after the
/// write timeout (abuse suite: stalled sockets are let go within the close timeout).
#[derive(Debug, Default)]
pub(crate) struct Ended {
    why: AtomicU8,
    notify: tokio::sync::Notify,
}

impl Ended {
    pub(crate) fn set(&self, why: u8) {
        self.why.store(why, Ordering::Relaxed);
        self.notify.notify_one();
    }

    pub(crate) fn get(&self) -> u8 {
        self.why.load(Ordering::Relaxed)
    }

    /// Completes once the queue is ended (at once if it already was).
    pub(crate) async fn notified(&self) {
        if self.get() != ENDED_NO {
            return;
        }
        self.notify.notified().await;
    }
}

struct Conn {
    id: u64,
    device_id: String,
    device_name: Option<String>,
    /// API Gateway's id of the connection, when API Gateway holds it (AWS mode).
    gateway: Option<Arc<str>>,
    tx: mpsc::Sender<Queued>,
    ended: Arc<Ended>,
}

/// What a registered connection gets back: its id, its queue, and why the hub ended the queue
/// if it did (`ENDED_*`).
pub(crate) struct Registration {
    pub id: u64,
    pub rx: mpsc::Receiver<Queued>,
    pub ended: Arc<Ended>,
}

/// The user already holds the maximum number of connections.
#[derive(Debug)]
pub(crate) struct TooManyConnections;

pub struct PushHub {
    users: Mutex<HashMap<String, Vec<Conn>>>,
    next_id: AtomicU64,
    shutdown: watch::Sender<bool>,
    max_per_user: usize,
    /// Set when presence spans several instances (Redis): joins and leaves are reported here
    /// instead of being broadcast from this hub's local view.
    presence_listener: OnceLock<mpsc::UnboundedSender<UserId>>,
    pub metrics: PushMetrics,
}

impl Default for PushHub {
    fn default() -> Self {
        Self::with_limit(DEFAULT_MAX_CONNECTIONS_PER_USER)
    }
}

impl PushHub {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A hub that accepts at most `max_per_user` simultaneous connections per user.
    pub fn with_limit(max_per_user: usize) -> Self {
        PushHub {
            users: Mutex::default(),
            next_id: AtomicU64::new(1),
            shutdown: watch::channel(false).0,
            max_per_user,
            presence_listener: OnceLock::new(),
            metrics: PushMetrics::default(),
        }
    }

    fn presence_changed(&self, user_id: &str, conns: &mut Vec<Conn>) {
        match self.presence_listener.get() {
            Some(listener) => {
                let _ = listener.send(user_id.to_owned().into());
            }
            None => {
                let devices = online_devices(conns);
                self.fan_out(conns, ServerMessage::Presence { devices }, |_| true);
            }
        }
    }

    /// The user's devices connected to this instance.
    pub fn local_devices(&self, user_id: &str) -> Vec<OnlineDevice> {
        self.users
            .lock()
            .expect("hub lock")
            .get(user_id)
            .map(|conns| online_devices(conns))
            .unwrap_or_default()
    }

    /// Sends `presence` with `devices` (gathered from every instance) to the user's local
    /// connections.
    pub fn send_presence(&self, user_id: &str, devices: Vec<OnlineDevice>) {
        let mut users = self.users.lock().expect("hub lock");
        if let Some(conns) = users.get_mut(user_id) {
            self.fan_out(conns, ServerMessage::Presence { devices }, |_| true);
        }
    }

    /// Closes every local connection of the device with 4004. Returns how many were closed.
    pub fn revoke_device(&self, user_id: &str, device_id: &str) -> usize {
        self.end(user_id, Some(device_id), ENDED_REVOKED)
    }

    /// Ends every connection of the user (signed out everywhere; they close with 4001).
    pub fn sign_out(&self, user_id: &str) -> usize {
        self.end(user_id, None, ENDED_SIGNED_OUT)
    }

    /// Lets go of the user's connection that API Gateway knows as `gateway_id` (it ended).
    pub fn gateway_disconnected(&self, user_id: &str, gateway_id: &str) -> usize {
        self.end_where(user_id, ENDED_GONE, |c| {
            c.gateway.as_deref() == Some(gateway_id)
        })
    }

    /// Ends the user's connections of `device_id` (all of them without one), for `why`.
    fn end(&self, user_id: &str, device_id: Option<&str>, why: u8) -> usize {
        self.end_where(user_id, why, |c| device_id.is_none_or(|d| c.device_id == d))
    }

    /// Ends the user's connections `which` selects, for `why`.
    fn end_where(&self, user_id: &str, why: u8, which: impl Fn(&Conn) -> bool) -> usize {
        let mut users = self.users.lock().expect("hub lock");
        let Some(conns) = users.get_mut(user_id) else {
            return 0;
        };
        let before = conns.len();
        conns.retain(|c| {
            if which(c) {
                // Dropping the sender ends the queue; the task reads why and closes.
                c.ended.set(why);
                false
            } else {
                true
            }
        });
        let closed = before - conns.len();
        if closed > 0 {
            self.metrics.connections.dec_by(closed as i64);
            tracing::info!(user_id, closed, why, "ended connections");
            self.presence_changed(user_id, conns);
        }
        if conns.is_empty() {
            users.remove(user_id);
        }
        closed
    }

    pub(crate) fn register(
        &self,
        user_id: &str,
        device_id: &str,
        device_name: Option<String>,
    ) -> Result<Registration, TooManyConnections> {
        self.register_as(user_id, device_id, device_name, None)
    }

    /// [`PushHub::register`] for a connection API Gateway holds as `gateway`, if it does.
    pub(crate) fn register_as(
        &self,
        user_id: &str,
        device_id: &str,
        device_name: Option<String>,
        gateway: Option<Arc<str>>,
    ) -> Result<Registration, TooManyConnections> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let ended = Arc::new(Ended::default());
        let mut users = self.users.lock().expect("hub lock");
        let conns = users.entry(user_id.to_owned()).or_default();
        if conns.len() >= self.max_per_user {
            self.metrics.connections_refused.inc();
            return Err(TooManyConnections);
        }
        conns.push(Conn {
            id,
            device_id: device_id.to_owned(),
            device_name,
            gateway,
            tx,
            ended: ended.clone(),
        });
        self.metrics.connections.inc();
        self.presence_changed(user_id, conns);
        Ok(Registration { id, rx, ended })
    }

    pub(crate) fn unregister(&self, user_id: &str, id: u64) {
        let mut users = self.users.lock().expect("hub lock");
        if let Some(conns) = users.get_mut(user_id) {
            let before = conns.len();
            conns.retain(|c| c.id != id);
            if conns.len() < before {
                self.metrics.connections.dec();
                self.presence_changed(user_id, conns);
            }
            if conns.is_empty() {
                users.remove(user_id);
            }
        }
    }

    /// Number of live connections of a user (all devices).
    pub fn connections(&self, user_id: &str) -> usize {
        self.users
            .lock()
            .expect("hub lock")
            .get(user_id)
            .map_or(0, Vec::len)
    }

    /// Asks every connection to close with "going away" so clients reconnect elsewhere.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// After [`PushHub::shutdown`]: waits until every connection has sent its close frame and
    /// unregistered (upgraded sockets are not tracked by the HTTP server's graceful shutdown),
    /// at most `timeout`. Returns whether all are gone.
    pub async fn drained(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.users.lock().expect("hub lock").is_empty() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Queues the change on every connection of the user except those of its origin device.
    fn push_change(&self, user_id: &str, change: ChangeEvent) {
        let mut users = self.users.lock().expect("hub lock");
        let Some(conns) = users.get_mut(user_id) else {
            return;
        };
        let origin = change.origin_device.clone();
        self.fan_out(conns, ServerMessage::Change(change), |conn| {
            origin.as_deref() != Some(conn.device_id.as_str())
        });
        if conns.is_empty() {
            users.remove(user_id);
        }
    }

    /// Queues `msg` on every connection `to` selects; drops connections whose queue is full.
    fn fan_out(&self, conns: &mut Vec<Conn>, msg: ServerMessage, to: impl Fn(&Conn) -> bool) {
        let since = Instant::now();
        let msg = Arc::new(msg);
        let before = conns.len();
        conns.retain(|conn| {
            if !to(conn) {
                return true;
            }
            let queued = Queued {
                msg: msg.clone(),
                since,
            };
            match conn.tx.try_send(queued) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Dropping the sender ends the connection's queue; its task then sends
                    // `resync` and closes. Nobody else waits for this consumer.
                    tracing::warn!(device = %conn.device_id, "push queue full, dropping connection");
                    conn.ended.set(ENDED_OVERFLOW);
                    self.metrics.queue_overflows.inc();
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        let dropped = before - conns.len();
        if dropped > 0 {
            self.metrics.connections.dec_by(dropped as i64);
        }
    }
}

/// The devices of `conns`, one entry per device with its connection count, sorted by id.
fn online_devices(conns: &[Conn]) -> Vec<OnlineDevice> {
    let mut devices: BTreeMap<&str, OnlineDevice> = BTreeMap::new();
    for c in conns {
        devices
            .entry(&c.device_id)
            .or_insert_with(|| OnlineDevice {
                device_id: c.device_id.clone().into(),
                device_name: c.device_name.clone(),
                connections: 0,
            })
            .connections += 1;
    }
    devices.into_values().collect()
}

/// The hub is where the bus delivers: a change is pushed to the user's other devices, a
/// revocation closes the device's connections, a presence change is shown from this hub's view.
impl Recipient for PushHub {
    fn deliver(&self, user_id: &UserId, event: Event) {
        match event {
            Event::Change(change) => self.push_change(user_id, change),
            Event::DeviceRevoked { device_id, .. } => {
                self.revoke_device(user_id, &device_id);
            }
            // Recorded where revocations are looked up; no connection changes.
            Event::SessionBound { .. } => {}
            Event::SignedOut { .. } => {
                self.sign_out(user_id);
            }
            Event::PresenceChanged => self.send_presence(user_id, self.local_devices(user_id)),
            Event::GatewayDisconnected { connection } => {
                self.gateway_disconnected(user_id, &connection);
            }
        }
    }

    fn local_devices(&self, user_id: &UserId) -> Vec<OnlineDevice> {
        PushHub::local_devices(self, user_id)
    }

    fn show_presence(&self, user_id: &UserId, devices: Vec<OnlineDevice>) {
        self.send_presence(user_id, devices);
    }

    fn report_presence_changes(&self, to: mpsc::UnboundedSender<UserId>) {
        let _ = self.presence_listener.set(to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncsphere_protocol::ChangeKind;
    use syncsphere_protocol::DeviceId;
    use syncsphere_protocol::{Rev, Seq};

    fn change(seq: i64, origin: &str) -> ChangeEvent {
        ChangeEvent {
            seq: Seq(seq),
            file_id: "f".into(),
            event: ChangeKind::Created,
            path: "a".into(),
            old_path: None,
            rev: Rev(1),
            size: 0,
            sha256: String::new().into(),
            origin_device: Some(origin.into()),
            at_ms: 0,
        }
    }

    fn drain(reg: &mut Registration) -> Vec<ServerMessage> {
        std::iter::from_fn(|| reg.rx.try_recv().ok().map(|q| (*q.msg).clone())).collect()
    }

    fn changes(reg: &mut Registration) -> Vec<ServerMessage> {
        drain(reg)
            .into_iter()
            .filter(|m| matches!(m, ServerMessage::Change(_)))
            .collect()
    }

    #[test]
    fn pushes_to_other_devices_of_the_same_user_only() {
        let hub = PushHub::default();
        let mut a = hub.register("u1", "dev-a", None).unwrap();
        let mut b = hub.register("u1", "dev-b", None).unwrap();
        let mut other_user = hub.register("u2", "dev-c", None).unwrap();
        hub.deliver(&"u1".into(), Event::Change(change(1, "dev-a")));
        assert!(
            changes(&mut a).is_empty(),
            "origin device must not get its own change"
        );
        assert_eq!(
            changes(&mut b),
            vec![ServerMessage::Change(change(1, "dev-a"))]
        );
        assert!(changes(&mut other_user).is_empty());
    }

    #[test]
    fn a_full_queue_drops_only_that_connection() {
        let hub = PushHub::default();
        let slow = hub.register("u1", "slow", None).unwrap();
        let mut fast = hub.register("u1", "fast", None).unwrap();
        for seq in 0..QUEUE_CAPACITY as i64 + 1 {
            hub.deliver(&"u1".into(), Event::Change(change(seq, "elsewhere")));
            drain(&mut fast);
        }
        assert_eq!(slow.ended.get(), ENDED_OVERFLOW);
        assert_eq!(fast.ended.get(), ENDED_NO);
        assert_eq!(hub.connections("u1"), 1);
        assert_eq!(hub.metrics.queue_overflows.get(), 1);
        assert_eq!(hub.metrics.connections.get(), 1);
        hub.unregister("u1", fast.id);
        assert_eq!(hub.connections("u1"), 0);
        assert_eq!(hub.metrics.connections.get(), 0);
    }

    #[test]
    fn presence_lists_online_devices_on_every_join_and_leave() {
        let hub = PushHub::default();
        let mut a = hub.register("u1", "dev-a", Some("laptop".into())).unwrap();
        let b = hub.register("u1", "dev-b", Some("desktop".into())).unwrap();
        let _b2 = hub.register("u1", "dev-b", Some("desktop".into())).unwrap();
        let online = |msgs: Vec<ServerMessage>| -> Vec<Vec<(DeviceId, u32)>> {
            msgs.into_iter()
                .filter_map(|m| match m {
                    ServerMessage::Presence { devices } => Some(
                        devices
                            .into_iter()
                            .map(|d| (d.device_id, d.connections))
                            .collect(),
                    ),
                    _ => None,
                })
                .collect()
        };
        let seen = online(drain(&mut a));
        assert_eq!(
            seen,
            vec![
                vec![("dev-a".into(), 1)],
                vec![("dev-a".into(), 1), ("dev-b".into(), 1)],
                vec![("dev-a".into(), 1), ("dev-b".into(), 2)],
            ]
        );
        hub.unregister("u1", b.id);
        assert_eq!(
            online(drain(&mut a)),
            vec![vec![("dev-a".into(), 1), ("dev-b".into(), 1)]]
        );
    }

    #[test]
    fn revoking_a_device_ends_only_its_connections_and_updates_presence() {
        let hub = PushHub::default();
        let mut a = hub.register("u1", "dev-a", None).unwrap();
        let mut b1 = hub.register("u1", "dev-b", None).unwrap();
        let mut b2 = hub.register("u1", "dev-b", None).unwrap();
        let mut other = hub.register("u2", "dev-b", None).unwrap();
        drain(&mut a);
        assert_eq!(hub.revoke_device("u1", "dev-b"), 2);
        for b in [&mut b1, &mut b2] {
            drain(b);
            assert!(b.rx.try_recv().is_err(), "queue ended");
            assert_eq!(b.ended.get(), ENDED_REVOKED);
        }
        assert_eq!(hub.connections("u1"), 1);
        assert_eq!(hub.metrics.connections.get(), 2);
        let presence = drain(&mut a);
        assert_eq!(
            presence,
            vec![ServerMessage::Presence {
                devices: vec![OnlineDevice {
                    device_id: "dev-a".into(),
                    device_name: None,
                    connections: 1
                }]
            }]
        );
        assert_eq!(other.ended.get(), ENDED_NO, "other users untouched");
        drain(&mut other);
        assert_eq!(hub.revoke_device("u1", "unknown"), 0);
    }

    #[test]
    fn signing_out_ends_every_connection_of_the_user_only() {
        let hub = PushHub::default();
        let mut a = hub.register("u1", "dev-a", None).unwrap();
        let mut b = hub.register("u1", "dev-b", None).unwrap();
        let other = hub.register("u2", "dev-a", None).unwrap();
        hub.deliver(&"u1".into(), Event::SignedOut { before: 10 });
        for conn in [&mut a, &mut b] {
            drain(conn);
            assert!(conn.rx.try_recv().is_err(), "queue ended");
            assert_eq!(conn.ended.get(), ENDED_SIGNED_OUT);
        }
        assert_eq!(hub.connections("u1"), 0);
        assert_eq!(hub.connections("u2"), 1);
        assert_eq!(other.ended.get(), ENDED_NO);
        assert_eq!(hub.metrics.connections.get(), 1);
        assert_eq!(hub.sign_out("u1"), 0, "nothing left to end");
    }

    #[test]
    fn refuses_connections_past_the_per_user_limit() {
        let hub = PushHub::with_limit(2);
        let first = hub.register("u1", "a", None).unwrap();
        let _second = hub.register("u1", "b", None).unwrap();
        assert!(hub.register("u1", "c", None).is_err());
        assert!(
            hub.register("u2", "c", None).is_ok(),
            "the limit is per user"
        );
        assert_eq!(hub.metrics.connections_refused.get(), 1);
        hub.unregister("u1", first.id);
        assert!(hub.register("u1", "c", None).is_ok());
    }
}
