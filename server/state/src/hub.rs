//! The registry of live connections per user and the non-blocking fan-out to them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use syncsphere_files::ChangeSink;
use syncsphere_protocol::ChangeEvent;
use syncsphere_protocol::ws::ServerMessage;
use tokio::sync::{mpsc, watch};

/// Messages queued per connection before it counts as too slow.
pub const QUEUE_CAPACITY: usize = 256;

struct Conn {
    id: u64,
    device_id: String,
    tx: mpsc::Sender<ServerMessage>,
    overflowed: Arc<AtomicBool>,
}

/// What a registered connection gets back: its id, its queue, and whether it overflowed.
pub(crate) struct Registration {
    pub id: u64,
    pub rx: mpsc::Receiver<ServerMessage>,
    pub overflowed: Arc<AtomicBool>,
}

pub struct PushHub {
    users: Mutex<HashMap<String, Vec<Conn>>>,
    next_id: AtomicU64,
    shutdown: watch::Sender<bool>,
}

impl Default for PushHub {
    fn default() -> Self {
        PushHub {
            users: Mutex::default(),
            next_id: AtomicU64::new(1),
            shutdown: watch::channel(false).0,
        }
    }
}

impl PushHub {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(crate) fn register(&self, user_id: &str, device_id: &str) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let overflowed = Arc::new(AtomicBool::new(false));
        self.users
            .lock()
            .expect("hub lock")
            .entry(user_id.to_owned())
            .or_default()
            .push(Conn {
                id,
                device_id: device_id.to_owned(),
                tx,
                overflowed: overflowed.clone(),
            });
        Registration { id, rx, overflowed }
    }

    pub(crate) fn unregister(&self, user_id: &str, id: u64) {
        let mut users = self.users.lock().expect("hub lock");
        if let Some(conns) = users.get_mut(user_id) {
            conns.retain(|c| c.id != id);
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

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

impl ChangeSink for PushHub {
    fn publish(&self, user_id: &str, change: &ChangeEvent) {
        let mut users = self.users.lock().expect("hub lock");
        let Some(conns) = users.get_mut(user_id) else {
            return;
        };
        conns.retain(|conn| {
            if change.origin_device.as_deref() == Some(conn.device_id.as_str()) {
                return true;
            }
            match conn.tx.try_send(ServerMessage::Change(change.clone())) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Dropping the sender ends the connection's queue; its task then sends
                    // `resync` and closes. Nobody else waits for this consumer.
                    tracing::warn!(user_id, device = %conn.device_id, "push queue full, dropping connection");
                    conn.overflowed.store(true, Ordering::Relaxed);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        if conns.is_empty() {
            users.remove(user_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncsphere_protocol::ChangeKind;

    fn change(seq: i64, origin: &str) -> ChangeEvent {
        ChangeEvent {
            seq,
            file_id: "f".into(),
            event: ChangeKind::Created,
            path: "a".into(),
            old_path: None,
            rev: 1,
            size: 0,
            sha256: String::new(),
            origin_device: Some(origin.into()),
            at_ms: 0,
        }
    }

    #[test]
    fn pushes_to_other_devices_of_the_same_user_only() {
        let hub = PushHub::default();
        let mut a = hub.register("u1", "dev-a");
        let mut b = hub.register("u1", "dev-b");
        let mut other_user = hub.register("u2", "dev-c");
        hub.publish("u1", &change(1, "dev-a"));
        assert!(
            a.rx.try_recv().is_err(),
            "origin device must not get its own change"
        );
        assert_eq!(
            b.rx.try_recv().unwrap(),
            ServerMessage::Change(change(1, "dev-a"))
        );
        assert!(other_user.rx.try_recv().is_err());
    }

    #[test]
    fn a_full_queue_drops_only_that_connection() {
        let hub = PushHub::default();
        let slow = hub.register("u1", "slow");
        let mut fast = hub.register("u1", "fast");
        for seq in 0..QUEUE_CAPACITY as i64 + 1 {
            hub.publish("u1", &change(seq, "elsewhere"));
            while fast.rx.try_recv().is_ok() {}
        }
        assert!(slow.overflowed.load(Ordering::Relaxed));
        assert!(!fast.overflowed.load(Ordering::Relaxed));
        assert_eq!(hub.connections("u1"), 1);
        hub.unregister("u1", fast.id);
        assert_eq!(hub.connections("u1"), 0);
    }
}
