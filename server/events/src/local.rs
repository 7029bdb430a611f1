//! The bus of a process that runs the push hub itself: events go straight to its [`Recipient`].
//! Owns nothing but that hand-over; never queues, never spawns.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use syncsphere_protocol::UserId;
use syncsphere_protocol::ws::OnlineDevice;

use crate::{Event, EventsError, Presence, Publisher, Recipient, Subscriber};

/// Publishes by delivering to this process's recipient, on the caller's thread; every user's
/// events are always held, and presence is the recipient's own.
pub struct LocalBus {
    to: Arc<dyn Recipient>,
}

impl LocalBus {
    pub fn new(to: Arc<dyn Recipient>) -> Arc<Self> {
        Arc::new(LocalBus { to })
    }
}

impl Publisher for LocalBus {
    fn publish(&self, user_id: &UserId, event: Event) {
        self.to.deliver(user_id, event);
    }
}

impl Subscriber for LocalBus {
    fn hold<'a>(&'a self, _user_id: &'a UserId) -> BoxFuture<'a, Result<(), EventsError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn release(&self, _user_id: &UserId) {}
}

impl Presence for LocalBus {
    fn online<'a>(
        &'a self,
        user_id: &'a UserId,
    ) -> BoxFuture<'a, Result<Vec<OnlineDevice>, EventsError>> {
        Box::pin(std::future::ready(Ok(self.to.local_devices(user_id))))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::sync::mpsc;

    use super::*;

    #[derive(Default)]
    struct Seen(Mutex<Vec<(String, Event)>>);

    impl Recipient for Seen {
        fn deliver(&self, user_id: &UserId, event: Event) {
            self.0.lock().unwrap().push((user_id.to_string(), event));
        }
        fn local_devices(&self, user_id: &UserId) -> Vec<OnlineDevice> {
            vec![OnlineDevice {
                device_id: format!("{user_id}-dev").into(),
                device_name: None,
                connections: 1,
            }]
        }
        fn show_presence(&self, _: &UserId, _: Vec<OnlineDevice>) {}
        fn report_presence_changes(&self, _: mpsc::UnboundedSender<UserId>) {}
    }

    #[tokio::test]
    async fn delivers_in_order_and_answers_presence_from_the_recipient() {
        let seen = Arc::new(Seen::default());
        let bus = LocalBus::new(seen.clone());
        bus.hold(&"u1".into()).await.unwrap();
        bus.publish(&"u1".into(), Event::PresenceChanged);
        bus.publish(
            &"u2".into(),
            Event::DeviceRevoked {
                device_id: "d".into(),
                sessions: vec![],
            },
        );
        bus.release(&"u1".into());
        assert_eq!(
            *seen.0.lock().unwrap(),
            vec![
                ("u1".to_owned(), Event::PresenceChanged),
                (
                    "u2".to_owned(),
                    Event::DeviceRevoked {
                        device_id: "d".into(),
                        sessions: vec![],
                    }
                ),
            ]
        );
        let online = bus.online(&"u1".into()).await.unwrap();
        assert_eq!(online[0].device_id, "u1-dev");
    }
}
