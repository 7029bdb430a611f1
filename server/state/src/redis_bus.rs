//! Cross-instance fan-out through Redis pub/sub, for running several State instances (and a
//! separate Files instance) behind a load balancer.
//!
//! Each user has a channel `syncsphere:user:{user_id}` carrying [`BusMessage`]s: committed
//! changes (published by the Files side, [`RedisPublisher`]), presence notices and device
//! revocations. A State instance subscribes to a user's channel only while it holds a connection
//! of that user ([`RedisSubscriber`]), so an instance receives only the events of users it
//! serves. A connection is welcomed only after its user's subscription is confirmed, so the
//! client's catch-up right after `welcome` cannot miss a change.
//!
//! **Presence across instances**: each instance writes its own view of a user's online devices
//! to the hash `syncsphere:presence:{user_id}` (field = instance id) and publishes a `presence`
//! notice; every instance holding the user then reads the hash, merges the views of live
//! instances (an instance is live while its key `syncsphere:instance:{id}`, refreshed every
//! 10 s with a 30 s expiry, exists) and sends `presence` to its connections. A crashed
//! instance's devices therefore disappear from presence within 30 s.
//!
//! **Revocations**: revoking a device sets `syncsphere:revoked:{user_id}:{device_id}` (kept
//! 7 days, longer than any access token lives) and then publishes `revoked`: instances close
//! the device's sockets with 4004, and refuse its tokens on new connections ([`RedisRevocations`]).
//!
//! Redis pub/sub is fire-and-forget: a change published while Redis is unreachable is not
//! pushed, and clients see it at their next journal read (reconnect or fallback poll). The
//! journal stays the truth.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use syncsphere_auth::devices::DeviceEvents;
use syncsphere_auth::{BoxFuture, DeviceRevocations};
use syncsphere_files::ChangeSink;
use syncsphere_protocol::ChangeEvent;
use syncsphere_protocol::ws::OnlineDevice;
use tokio::sync::{mpsc, oneshot};

use crate::PushHub;
use crate::hub::merge_devices;

const CHANNEL_PREFIX: &str = "syncsphere:user:";
/// Changes waiting to be published before new ones are dropped (and logged).
const PUBLISH_QUEUE: usize = 65_536;
/// How long a revocation is remembered in Redis: longer than any access token lives.
const REVOKED_TTL_SECS: u64 = 7 * 24 * 3600;
const INSTANCE_TTL_SECS: u64 = 30;
const INSTANCE_REFRESH: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("could not connect to Redis: {0}")]
    Connect(#[source] redis::RedisError),
    #[error("Redis subscription failed: {0}")]
    Subscribe(#[source] redis::RedisError),
    #[error("the Redis subscriber has stopped")]
    Stopped,
}

/// What travels on a user's channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BusMessage {
    /// A committed change: push it to the user's devices other than its origin.
    Change(ChangeEvent),
    /// The user's online devices changed on some instance: re-read the presence hash.
    Presence,
    /// The device was revoked: close its sockets.
    Revoked { device_id: String },
}

fn channel(user_id: &str) -> String {
    format!("{CHANNEL_PREFIX}{user_id}")
}

fn presence_key(user_id: &str) -> String {
    format!("syncsphere:presence:{user_id}")
}

fn instance_key(instance: &str) -> String {
    format!("syncsphere:instance:{instance}")
}

fn revoked_key(user_id: &str, device_id: &str) -> String {
    format!("syncsphere:revoked:{user_id}:{device_id}")
}

async fn open(url: &str) -> Result<MultiplexedConnection, BusError> {
    redis::Client::open(url)
        .map_err(BusError::Connect)?
        .get_multiplexed_async_connection()
        .await
        .map_err(BusError::Connect)
}

fn payload(msg: &BusMessage) -> String {
    serde_json::to_string(msg).expect("bus messages serialise")
}

/// The user's online devices over all live instances.
async fn read_presence(
    conn: &mut MultiplexedConnection,
    user_id: &str,
) -> Result<Vec<OnlineDevice>, redis::RedisError> {
    let views: HashMap<String, String> = conn.hgetall(presence_key(user_id)).await?;
    if views.is_empty() {
        return Ok(Vec::new());
    }
    let instances: Vec<&String> = views.keys().collect();
    let keys: Vec<String> = instances.iter().map(|i| instance_key(i)).collect();
    let alive: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(conn).await?;
    let mut lists = Vec::new();
    let mut dead = Vec::new();
    for (instance, alive) in instances.into_iter().zip(alive) {
        if alive.is_none() {
            dead.push(instance.clone());
            continue;
        }
        match serde_json::from_str::<Vec<OnlineDevice>>(&views[instance]) {
            Ok(list) => lists.push(list),
            Err(e) => tracing::warn!(error = %e, "unreadable presence entry in Redis"),
        }
    }
    if !dead.is_empty() {
        let _: Result<i64, _> = conn.hdel(presence_key(user_id), dead).await;
    }
    Ok(merge_devices(lists))
}

enum Outgoing {
    Publish(String, String),
    Revoke { user_id: String, device_id: String },
}

/// Publishes committed changes and revocations to their user's channel, from a background task
/// so that a commit never waits for Redis, in the order they were handed over.
pub struct RedisPublisher {
    tx: mpsc::Sender<Outgoing>,
    conn: MultiplexedConnection,
}

impl RedisPublisher {
    pub async fn connect(url: &str) -> Result<Arc<Self>, BusError> {
        let conn = open(url).await?;
        let mut task_conn = conn.clone();
        let (tx, mut rx) = mpsc::channel::<Outgoing>(PUBLISH_QUEUE);
        tokio::spawn(async move {
            while let Some(out) = rx.recv().await {
                let (channel, payload) = match out {
                    Outgoing::Publish(channel, payload) => (channel, payload),
                    Outgoing::Revoke { user_id, device_id } => {
                        // Remembered first: a socket opened after the notice must be refused.
                        let set: Result<(), _> = task_conn
                            .set_ex(revoked_key(&user_id, &device_id), "1", REVOKED_TTL_SECS)
                            .await;
                        if let Err(e) = set {
                            tracing::error!(error = %e, "recording a revocation in Redis failed");
                        }
                        (
                            channel(&user_id),
                            payload(&BusMessage::Revoked { device_id }),
                        )
                    }
                };
                let sent: Result<i64, _> = task_conn.publish(&channel, &payload).await;
                if let Err(e) = sent {
                    tracing::warn!(error = %e, channel, "publishing to Redis failed");
                }
            }
        });
        Ok(Arc::new(RedisPublisher { tx, conn }))
    }
}

impl ChangeSink for RedisPublisher {
    fn publish(&self, user_id: &str, change: &ChangeEvent) {
        let payload = payload(&BusMessage::Change(change.clone()));
        if self
            .tx
            .try_send(Outgoing::Publish(channel(user_id), payload))
            .is_err()
        {
            tracing::error!(
                user_id,
                seq = change.seq,
                "Redis publish queue full; push dropped"
            );
        }
    }
}

impl DeviceEvents for RedisPublisher {
    fn online<'a>(&'a self, user_id: &'a str) -> BoxFuture<'a, Result<Vec<OnlineDevice>, String>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            read_presence(&mut conn, user_id)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn device_revoked(&self, user_id: &str, device_id: &str) {
        let out = Outgoing::Revoke {
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
        };
        if self.tx.try_send(out).is_err() {
            tracing::error!(
                user_id,
                device_id,
                "Redis publish queue full; revocation not pushed"
            );
        }
    }
}

/// Revoked devices as recorded in Redis, for State instances that have no database.
pub struct RedisRevocations {
    conn: MultiplexedConnection,
}

impl RedisRevocations {
    pub async fn connect(url: &str) -> Result<Arc<Self>, BusError> {
        Ok(Arc::new(RedisRevocations {
            conn: open(url).await?,
        }))
    }
}

impl DeviceRevocations for RedisRevocations {
    fn is_revoked<'a>(
        &'a self,
        user_id: &'a str,
        device_key: &'a str,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            conn.exists(revoked_key(user_id, device_key))
                .await
                .map_err(|e| e.to_string())
        })
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
        let conn = open(url).await?;
        let instance = uuid::Uuid::new_v4().to_string();
        // Liveness first: presence written by this instance counts only while this key lives.
        let mut beat = conn.clone();
        let key = instance_key(&instance);
        let _: () = beat
            .set_ex(&key, "1", INSTANCE_TTL_SECS)
            .await
            .map_err(BusError::Connect)?;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(INSTANCE_REFRESH);
            loop {
                tick.tick().await;
                let refreshed: Result<(), _> = beat.set_ex(&key, "1", INSTANCE_TTL_SECS).await;
                if let Err(e) = refreshed {
                    tracing::warn!(error = %e, "refreshing the instance key in Redis failed");
                }
            }
        });
        // Local joins and leaves: write this instance's view, then tell every instance.
        let (joined_tx, mut joined_rx) = mpsc::unbounded_channel::<String>();
        hub.set_presence_listener(joined_tx);
        let (writer_hub, mut writer_conn, writer_instance) =
            (hub.clone(), conn.clone(), instance.clone());
        tokio::spawn(async move {
            while let Some(user_id) = joined_rx.recv().await {
                let devices = writer_hub.local_devices(&user_id);
                let written: Result<(), redis::RedisError> = async {
                    if devices.is_empty() {
                        let _: i64 = writer_conn
                            .hdel(presence_key(&user_id), &writer_instance)
                            .await?;
                    } else {
                        let view = serde_json::to_string(&devices).expect("presence serialises");
                        let _: i64 = writer_conn
                            .hset(presence_key(&user_id), &writer_instance, view)
                            .await?;
                    }
                    let _: i64 = writer_conn
                        .publish(channel(&user_id), payload(&BusMessage::Presence))
                        .await?;
                    Ok(())
                }
                .await;
                if let Err(e) = written {
                    tracing::warn!(error = %e, "writing presence to Redis failed");
                }
            }
        });
        // Presence notices: read the merged view in order, so the last one sent is the newest.
        let (notice_tx, mut notice_rx) = mpsc::unbounded_channel::<String>();
        let (reader_hub, mut reader_conn) = (hub.clone(), conn.clone());
        tokio::spawn(async move {
            while let Some(user_id) = notice_rx.recv().await {
                match read_presence(&mut reader_conn, &user_id).await {
                    Ok(devices) => reader_hub.send_presence(&user_id, devices),
                    Err(e) => tracing::warn!(error = %e, "reading presence from Redis failed"),
                }
            }
        });
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
                match serde_json::from_slice::<BusMessage>(msg.get_payload_bytes()) {
                    Ok(BusMessage::Change(change)) => hub.publish(user_id, &change),
                    Ok(BusMessage::Presence) => {
                        let _ = notice_tx.send(user_id.to_owned());
                    }
                    Ok(BusMessage::Revoked { device_id }) => {
                        hub.revoke_device(user_id, &device_id);
                    }
                    Err(e) => tracing::warn!(error = %e, "unreadable message from Redis"),
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
