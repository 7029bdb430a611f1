//! Cross-instance fan-out through Redis pub/sub, for running several State instances (and a
//! separate Files instance) behind a load balancer.
//!
//! Each user has a channel `syncsphere:user:{user_id}`. The Files side publishes every committed
//! change there ([`RedisPublisher`]); a State instance subscribes to a user's channel only while
//! it holds a connection of that user ([`RedisSubscriber`]), so an instance receives only the
//! events of users it serves. A connection is welcomed only after its user's subscription is
//! confirmed, so the client's catch-up right after `welcome` cannot miss a change.
//!
//! Redis pub/sub is fire-and-forget: a change published while Redis is unreachable is not
//! pushed, and clients see it at their next journal read (reconnect or fallback poll). The
//! journal stays the truth.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use syncsphere_files::ChangeSink;
use syncsphere_protocol::ChangeEvent;
use tokio::sync::{mpsc, oneshot};

use crate::PushHub;

const CHANNEL_PREFIX: &str = "syncsphere:user:";
/// Changes waiting to be published before new ones are dropped (and logged).
const PUBLISH_QUEUE: usize = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("could not connect to Redis: {0}")]
    Connect(#[source] redis::RedisError),
    #[error("Redis subscription failed: {0}")]
    Subscribe(#[source] redis::RedisError),
    #[error("the Redis subscriber has stopped")]
    Stopped,
}

fn channel(user_id: &str) -> String {
    format!("{CHANNEL_PREFIX}{user_id}")
}

/// Publishes committed changes to their user's channel, from a background task so that a
/// commit never waits for Redis.
pub struct RedisPublisher {
    tx: mpsc::Sender<(String, String)>,
}

impl RedisPublisher {
    pub async fn connect(url: &str) -> Result<Arc<Self>, BusError> {
        let client = redis::Client::open(url).map_err(BusError::Connect)?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(BusError::Connect)?;
        let (tx, mut rx) = mpsc::channel::<(String, String)>(PUBLISH_QUEUE);
        tokio::spawn(async move {
            while let Some((channel, payload)) = rx.recv().await {
                let sent: Result<i64, _> = redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(&payload)
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = sent {
                    tracing::warn!(error = %e, channel, "publishing a change to Redis failed");
                }
            }
        });
        Ok(Arc::new(RedisPublisher { tx }))
    }
}

impl ChangeSink for RedisPublisher {
    fn publish(&self, user_id: &str, change: &ChangeEvent) {
        let payload = serde_json::to_string(change).expect("changes serialise");
        if self.tx.try_send((channel(user_id), payload)).is_err() {
            tracing::error!(
                user_id,
                seq = change.seq,
                "Redis publish queue full; push dropped"
            );
        }
    }
}

enum Interest {
    Subscribe(String, oneshot::Sender<Result<(), BusError>>),
    Unsubscribe(String),
}

/// Subscribes to the channels of the users this instance holds and hands their changes to the
/// local [`PushHub`].
pub struct RedisSubscriber {
    tx: mpsc::UnboundedSender<Interest>,
}

impl RedisSubscriber {
    pub async fn connect(url: &str, hub: Arc<PushHub>) -> Result<Arc<Self>, BusError> {
        let client = redis::Client::open(url).map_err(BusError::Connect)?;
        let (mut sink, mut stream) = client
            .get_async_pubsub()
            .await
            .map_err(BusError::Connect)?
            .split();
        tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                let Some(user_id) = msg.get_channel_name().strip_prefix(CHANNEL_PREFIX) else {
                    continue;
                };
                match serde_json::from_slice::<ChangeEvent>(msg.get_payload_bytes()) {
                    Ok(change) => hub.publish(user_id, &change),
                    Err(e) => tracing::warn!(error = %e, "unreadable change from Redis"),
                }
            }
            tracing::error!("Redis subscription stream ended");
        });
        let (tx, mut rx) = mpsc::unbounded_channel::<Interest>();
        // One task applies interest changes in order, with a reference count per user.
        tokio::spawn(async move {
            let mut held: HashMap<String, usize> = HashMap::new();
            while let Some(interest) = rx.recv().await {
                match interest {
                    Interest::Subscribe(user, ack) => {
                        let count = held.entry(user.clone()).or_default();
                        *count += 1;
                        let result = if *count == 1 {
                            sink.subscribe(channel(&user))
                                .await
                                .map_err(BusError::Subscribe)
                        } else {
                            Ok(())
                        };
                        if result.is_err() {
                            // Not subscribed: forget the reference so a retry subscribes again.
                            held.remove(&user);
                        }
                        let _ = ack.send(result);
                    }
                    Interest::Unsubscribe(user) => {
                        let Some(count) = held.get_mut(&user) else {
                            continue;
                        };
                        *count -= 1;
                        if *count == 0 {
                            held.remove(&user);
                            if let Err(e) = sink.unsubscribe(channel(&user)).await {
                                tracing::warn!(error = %e, "Redis unsubscribe failed");
                            }
                        }
                    }
                }
            }
        });
        Ok(Arc::new(RedisSubscriber { tx }))
    }

    /// Holds a subscription to the user's channel until [`RedisSubscriber::release`]; returns
    /// once Redis has confirmed it.
    pub(crate) async fn hold(&self, user_id: &str) -> Result<(), BusError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Interest::Subscribe(user_id.to_owned(), ack))
            .map_err(|_| BusError::Stopped)?;
        done.await.map_err(|_| BusError::Stopped)?
    }

    pub(crate) fn release(&self, user_id: &str) {
        let _ = self.tx.send(Interest::Unsubscribe(user_id.to_owned()));
    }
}
