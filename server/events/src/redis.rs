//! Cross-instance fan-out through Redis pub/sub, for running several State instances (and a
//! separate Files instance) behind a load balancer.
//!
//! Each user has a channel `syncsphere:user:{user_id}` carrying that user's [`Event`]s as JSON
//! ([`Wire`], the only serialised form of an event): committed changes and device revocations
//! (published by the Files side, [`RedisPublisher`]) and presence notices. A State instance subscribes to a user's channel only while it holds a connection
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
//! **Revocations**: revoking a device sets `syncsphere:revoked:{user_id}:{device_id}` and then
//! publishes `revoked`: instances close the device's sockets with 4004, and refuse its tokens on
//! new connections ([`RedisRevocations`]). A sign-in session bound to a device (0038) is
//! `syncsphere:session:{user_id}:{origin_jti}` = the device id, kept [`SESSION_TTL_SECS`] from
//! its last registration; a revocation keeps the device's key and its sessions' keys for good
//! (an external pool's refresh token may mint tokens of a revoked session for years; revoking
//! is rare, so the keys are few).
//! Signing out everywhere sets `syncsphere:signed-out:{user_id}` to the cut-off second (the
//! larger one wins, kept as long) and publishes `signed_out`: instances close all the user's
//! sockets with 4001 and refuse tokens issued before the cut-off.
//!
//! Redis pub/sub is fire-and-forget: a change published while Redis is unreachable is not
//! pushed, and clients see it at their next journal read (reconnect or fallback poll). The
//! journal stays the truth.
//!
//! **Boundary**: this module owns every Redis key and channel name and the wire format; it never
//! touches a socket — what arrives goes to the instance's [`Recipient`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use std::collections::BTreeMap;

use ::redis::AsyncCommands;
use ::redis::aio::MultiplexedConnection;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use syncsphere_protocol::ws::OnlineDevice;
use syncsphere_protocol::{ChangeEvent, DeviceId, UserId};
use tokio::sync::{mpsc, oneshot};

mod endpoint;
pub use endpoint::RedisEndpoint;

use crate::{
    Event, EventsError, Presence, Publisher, Recipient, Revocation, Revocations, Subscriber,
};

const CHANNEL_PREFIX: &str = "syncsphere:user:";
/// Changes waiting to be published before new ones are dropped (and logged).
const PUBLISH_QUEUE: usize = 65_536;
/// How long a revocation is remembered in Redis: longer than any access token lives.
const REVOKED_TTL_SECS: u64 = 7 * 24 * 3600;
/// How long a session's binding to its device is kept after its last registration (clients
/// register at every start).
pub const SESSION_TTL_SECS: u64 = 400 * 24 * 3600;
const INSTANCE_TTL_SECS: u64 = 30;
const INSTANCE_REFRESH: Duration = Duration::from_secs(10);

/// An [`Event`] as it travels on a user's channel (`{"type":"change",…}`, `{"type":"presence"}`,
/// `{"type":"revoked","device_id":…}`, `{"type":"signed_out","before":…}`); instances of other versions read each other's messages.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Wire {
    Change(ChangeEvent),
    /// The user's online devices changed on some instance: re-read the presence hash.
    Presence,
    Revoked {
        device_id: DeviceId,
    },
    SignedOut {
        before: u64,
    },
    GatewayDisconnected {
        connection: String,
    },
}

impl Wire {
    /// What goes on the wire for `event`; `None` for what is only recorded (a session binding).
    fn of(event: Event) -> Option<Wire> {
        Some(match event {
            Event::Change(change) => Wire::Change(change),
            Event::PresenceChanged => Wire::Presence,
            Event::DeviceRevoked { device_id, .. } => Wire::Revoked { device_id },
            Event::SignedOut { before } => Wire::SignedOut { before },
            Event::GatewayDisconnected { connection } => Wire::GatewayDisconnected { connection },
            Event::SessionBound { .. } => return None,
        })
    }
}

impl From<Wire> for Event {
    fn from(wire: Wire) -> Self {
        match wire {
            Wire::Change(change) => Event::Change(change),
            Wire::Presence => Event::PresenceChanged,
            Wire::Revoked { device_id } => Event::DeviceRevoked {
                device_id,
                sessions: Vec::new(),
            },
            Wire::SignedOut { before } => Event::SignedOut { before },
            Wire::GatewayDisconnected { connection } => Event::GatewayDisconnected { connection },
        }
    }
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

fn session_key(user_id: &str, session: &str) -> String {
    format!("syncsphere:session:{user_id}:{session}")
}

fn signed_out_key(user_id: &str) -> String {
    format!("syncsphere:signed-out:{user_id}")
}

/// Sets `KEYS[1]` to `ARGV[1]` unless it holds a larger number, with expiry `ARGV[2]` seconds.
const SET_MAX: &str = "local v = tonumber(redis.call('GET', KEYS[1]) or '0') \
    if tonumber(ARGV[1]) > v then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end \
    return 0";

fn payload(wire: Wire) -> String {
    serde_json::to_string(&wire).expect("events serialise")
}

fn parse(payload: &[u8]) -> Result<Event, serde_json::Error> {
    serde_json::from_slice::<Wire>(payload).map(Event::from)
}

/// The user's online devices over all live instances.
async fn read_presence(
    conn: &mut MultiplexedConnection,
    user_id: &UserId,
) -> Result<Vec<OnlineDevice>, ::redis::RedisError> {
    let views: HashMap<String, String> = conn.hgetall(presence_key(user_id)).await?;
    if views.is_empty() {
        return Ok(Vec::new());
    }
    let instances: Vec<&String> = views.keys().collect();
    let keys: Vec<String> = instances.iter().map(|i| instance_key(i)).collect();
    let alive: Vec<Option<String>> = ::redis::cmd("MGET").arg(&keys).query_async(conn).await?;
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

/// Merges per-instance device lists into one (connection counts added), sorted by id.
fn merge_devices(lists: impl IntoIterator<Item = Vec<OnlineDevice>>) -> Vec<OnlineDevice> {
    let mut devices: BTreeMap<DeviceId, OnlineDevice> = BTreeMap::new();
    for d in lists.into_iter().flatten() {
        match devices.get_mut(&d.device_id) {
            Some(known) => {
                known.connections += d.connections;
                if known.device_name.is_none() {
                    known.device_name = d.device_name;
                }
            }
            None => {
                devices.insert(d.device_id.clone(), d);
            }
        }
    }
    devices.into_values().collect()
}

enum Outgoing {
    Publish(String, String),
    Revoke {
        user_id: UserId,
        device_id: DeviceId,
        sessions: Vec<String>,
    },
    Bind {
        user_id: UserId,
        session: String,
        device_id: DeviceId,
    },
    SignOut {
        user_id: UserId,
        before: u64,
    },
}

/// Publishes committed changes and revocations to their user's channel, from a background task
/// so that a commit never waits for Redis, in the order they were handed over; answers
/// [`Presence`] from the merged presence hash.
pub struct RedisPublisher {
    tx: mpsc::Sender<Outgoing>,
    conn: MultiplexedConnection,
}

impl RedisPublisher {
    pub async fn connect(endpoint: &RedisEndpoint) -> Result<Arc<Self>, EventsError> {
        let conn = endpoint.open().await?;
        let mut task_conn = conn.clone();
        let (tx, mut rx) = mpsc::channel::<Outgoing>(PUBLISH_QUEUE);
        tokio::spawn(async move {
            while let Some(out) = rx.recv().await {
                let (channel, payload) = match out {
                    Outgoing::Publish(channel, payload) => (channel, payload),
                    Outgoing::Revoke {
                        user_id,
                        device_id,
                        sessions,
                    } => {
                        // Remembered first: a socket opened after the notice must be refused.
                        let mut record = ::redis::pipe();
                        record.atomic().set(revoked_key(&user_id, &device_id), "1");
                        for session in &sessions {
                            record.set(session_key(&user_id, session), device_id.as_str());
                        }
                        let set: Result<(), _> = record.query_async(&mut task_conn).await;
                        if let Err(e) = set {
                            tracing::error!(error = %e, "recording a revocation in Redis failed");
                        }
                        (channel(&user_id), payload(Wire::Revoked { device_id }))
                    }
                    Outgoing::Bind {
                        user_id,
                        session,
                        device_id,
                    } => {
                        let set: Result<(), _> = task_conn
                            .set_ex(
                                session_key(&user_id, &session),
                                device_id.as_str(),
                                SESSION_TTL_SECS,
                            )
                            .await;
                        if let Err(e) = set {
                            tracing::error!(error = %e, "recording a session's device in Redis failed");
                        }
                        continue;
                    }
                    Outgoing::SignOut { user_id, before } => {
                        let set: Result<i64, _> = ::redis::cmd("EVAL")
                            .arg(SET_MAX)
                            .arg(1)
                            .arg(signed_out_key(&user_id))
                            .arg(before)
                            .arg(REVOKED_TTL_SECS)
                            .query_async(&mut task_conn)
                            .await;
                        if let Err(e) = set {
                            tracing::error!(error = %e, "recording a sign-out in Redis failed");
                        }
                        (channel(&user_id), payload(Wire::SignedOut { before }))
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

impl Publisher for RedisPublisher {
    fn publish(&self, user_id: &UserId, event: Event) {
        match event {
            Event::DeviceRevoked {
                device_id,
                sessions,
            } => {
                let out = Outgoing::Revoke {
                    user_id: user_id.to_owned(),
                    device_id: device_id.clone(),
                    sessions,
                };
                if self.tx.try_send(out).is_err() {
                    tracing::error!(
                        %user_id,
                        %device_id,
                        "Redis publish queue full; revocation not pushed"
                    );
                }
            }
            Event::SessionBound { session, device_id } => {
                let out = Outgoing::Bind {
                    user_id: user_id.to_owned(),
                    session,
                    device_id,
                };
                if self.tx.try_send(out).is_err() {
                    tracing::error!(%user_id, "Redis publish queue full; session binding not recorded");
                }
            }
            Event::SignedOut { before } => {
                let out = Outgoing::SignOut {
                    user_id: user_id.to_owned(),
                    before,
                };
                if self.tx.try_send(out).is_err() {
                    tracing::error!(%user_id, "Redis publish queue full; sign-out not pushed");
                }
            }
            event => {
                let seq = match &event {
                    Event::Change(change) => Some(change.seq),
                    _ => None,
                };
                let Some(wire) = Wire::of(event) else {
                    return;
                };
                let out = Outgoing::Publish(channel(user_id), payload(wire));
                if self.tx.try_send(out).is_err() {
                    tracing::error!(%user_id, ?seq, "Redis publish queue full; push dropped");
                }
            }
        }
    }
}

impl Presence for RedisPublisher {
    fn online<'a>(
        &'a self,
        user_id: &'a UserId,
    ) -> BoxFuture<'a, Result<Vec<OnlineDevice>, EventsError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            read_presence(&mut conn, user_id)
                .await
                .map_err(EventsError::Query)
        })
    }
}

/// Revoked devices and sign-outs as recorded in Redis, for State instances that have no
/// database.
pub struct RedisRevocations {
    conn: MultiplexedConnection,
}

impl RedisRevocations {
    pub async fn connect(endpoint: &RedisEndpoint) -> Result<Arc<Self>, EventsError> {
        Ok(Arc::new(RedisRevocations {
            conn: endpoint.open().await?,
        }))
    }
}

impl Revocations for RedisRevocations {
    fn lookup<'a>(
        &'a self,
        user_id: &'a UserId,
        device_key: Option<&'a DeviceId>,
        session: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Revocation, EventsError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            // One round trip: the cut-off, the session's device, the token's device's revocation.
            let mut keys = vec![signed_out_key(user_id)];
            let mut add = |key: String| {
                keys.push(key);
                keys.len() - 1
            };
            let session_at = session.map(|s| add(session_key(user_id, s)));
            let revoked_at = device_key.map(|d| add(revoked_key(user_id, d)));
            let found: Vec<Option<String>> = ::redis::cmd("MGET")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .map_err(EventsError::Query)?;
            let at = |i: Option<usize>| i.and_then(|i| found.get(i).cloned().flatten());
            // An unreadable cut-off refuses every token rather than none.
            let signed_out_before = at(Some(0)).map(|v| v.parse().unwrap_or(u64::MAX));
            let session_device = at(session_at).map(DeviceId::from);
            let mut device_revoked = at(revoked_at).is_some();
            // A token bound to no device acts as its session's: a second round trip, taken only
            // by such tokens (an external pool's), on connect and re-authentication.
            if device_key.is_none()
                && let Some(device) = &session_device
            {
                let revoked: Option<String> = conn
                    .get(revoked_key(user_id, device))
                    .await
                    .map_err(EventsError::Query)?;
                device_revoked = revoked.is_some();
            }
            Ok(Revocation {
                device_revoked,
                session_device,
                signed_out_before,
            })
        })
    }
}

enum Interest {
    Subscribe(UserId, oneshot::Sender<Result<(), EventsError>>),
    Unsubscribe(UserId),
}

/// A new instance id, whose key `syncsphere:instance:{id}` lives (refreshed every 10 s,
/// expiring 30 s after the last refresh) as long as this process does.
async fn keep_alive(conn: &MultiplexedConnection) -> Result<String, EventsError> {
    let instance = uuid::Uuid::new_v4().to_string();
    let mut beat = conn.clone();
    let key = instance_key(&instance);
    let _: () = beat
        .set_ex(&key, "1", INSTANCE_TTL_SECS)
        .await
        .map_err(EventsError::Query)?;
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
    Ok(instance)
}

fn gateway_key(connection: &str) -> String {
    format!("syncsphere:gateway:{connection}")
}

fn gateway_claim_key(connection: &str) -> String {
    format!("syncsphere:gateway-claim:{connection}")
}

/// The connections an instance serves (a set), and the instances that serve any.
const GATEWAY_SERVED_PREFIX: &str = "syncsphere:gateway-served:";
const GATEWAY_INSTANCES: &str = "syncsphere:gateway-instances";

/// Claims `KEYS[1]` (a connection's claim) for instance `ARGV[1]` for `ARGV[2]` seconds if
/// nobody holds it, and lists the connection `ARGV[3]` among the instance's.
const CLAIM: &str = "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then \
    redis.call('SADD', KEYS[2], ARGV[3]) redis.call('SADD', KEYS[3], ARGV[1]) return 1 end \
    return 0";

/// Removes a connection's record `KEYS[1]` and claim `KEYS[2]`, and the connection `ARGV[2]`
/// from its instance's set (prefix `ARGV[1]`); returns the record.
const FORGET: &str = "local record = redis.call('GET', KEYS[1]) \
    local owner = redis.call('GET', KEYS[2]) \
    redis.call('DEL', KEYS[1], KEYS[2]) \
    if owner then redis.call('SREM', ARGV[1] .. owner, ARGV[2]) end \
    return record";

/// The gateway connections of every State instance: `syncsphere:gateway:{id}` holds a
/// connection's record, `syncsphere:gateway-claim:{id}` the instance serving its pushes (alive
/// while its instance key is); both expire with the connection's longest life. An instance's
/// served connections are also in the set `syncsphere:gateway-served:{instance}`, and the
/// instances with such a set in `syncsphere:gateway-instances`, so that a live instance can
/// adopt a crashed one's connections (a `RENAME` of its set: one adopter).
pub struct RedisGatewayConnections {
    conn: MultiplexedConnection,
    instance: String,
}

impl RedisGatewayConnections {
    pub async fn connect(endpoint: &RedisEndpoint) -> Result<Arc<Self>, EventsError> {
        let conn = endpoint.open().await?;
        let instance = keep_alive(&conn).await?;
        Ok(Arc::new(RedisGatewayConnections { conn, instance }))
    }
}

fn ttl_secs(ttl: Duration) -> u64 {
    ttl.as_secs().max(1)
}

impl crate::GatewayConnections for RedisGatewayConnections {
    fn insert<'a>(
        &'a self,
        id: &'a str,
        record: String,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), EventsError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            conn.set_ex(gateway_key(id), record, ttl_secs(ttl))
                .await
                .map_err(EventsError::Query)
        })
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<String>, EventsError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            conn.get(gateway_key(id)).await.map_err(EventsError::Query)
        })
    }

    fn update<'a>(
        &'a self,
        id: &'a str,
        record: String,
    ) -> BoxFuture<'a, Result<bool, EventsError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let set: Option<String> = ::redis::cmd("SET")
                .arg(gateway_key(id))
                .arg(record)
                .arg("XX")
                .arg("KEEPTTL")
                .query_async(&mut conn)
                .await
                .map_err(EventsError::Query)?;
            Ok(set.is_some())
        })
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<String>, EventsError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            ::redis::cmd("EVAL")
                .arg(FORGET)
                .arg(2)
                .arg(gateway_key(id))
                .arg(gateway_claim_key(id))
                .arg(GATEWAY_SERVED_PREFIX)
                .arg(id)
                .query_async(&mut conn)
                .await
                .map_err(EventsError::Query)
        })
    }

    fn claim<'a>(&'a self, id: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool, EventsError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let won: i64 = ::redis::cmd("EVAL")
                .arg(CLAIM)
                .arg(3)
                .arg(gateway_claim_key(id))
                .arg(format!("{GATEWAY_SERVED_PREFIX}{}", self.instance))
                .arg(GATEWAY_INSTANCES)
                .arg(&self.instance)
                .arg(ttl_secs(ttl))
                .arg(id)
                .query_async(&mut conn)
                .await
                .map_err(EventsError::Query)?;
            Ok(won == 1)
        })
    }

    fn served<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<bool>, EventsError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let owner: Option<String> = conn
                .get(gateway_claim_key(id))
                .await
                .map_err(EventsError::Query)?;
            let Some(owner) = owner else {
                return Ok(None);
            };
            if owner == self.instance {
                return Ok(Some(true));
            }
            let alive: bool = conn
                .exists(instance_key(&owner))
                .await
                .map_err(EventsError::Query)?;
            Ok(Some(alive))
        })
    }
    fn adopt_orphans(&self) -> BoxFuture<'_, Result<Vec<String>, EventsError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let instances: Vec<String> = conn
                .smembers(GATEWAY_INSTANCES)
                .await
                .map_err(EventsError::Query)?;
            let mut orphans = Vec::new();
            for instance in instances.into_iter().filter(|i| *i != self.instance) {
                let alive: bool = conn
                    .exists(instance_key(&instance))
                    .await
                    .map_err(EventsError::Query)?;
                if alive {
                    continue;
                }
                // Taken by one instance only: RENAME fails once another took the set.
                let served = format!("{GATEWAY_SERVED_PREFIX}{instance}");
                let taken = format!("syncsphere:gateway-adopting:{}:{instance}", self.instance);
                let renamed: Result<(), _> = conn.rename(&served, &taken).await;
                if renamed.is_ok() {
                    let ids: Vec<String> =
                        conn.smembers(&taken).await.map_err(EventsError::Query)?;
                    let _: i64 = conn.del(&taken).await.map_err(EventsError::Query)?;
                    orphans.extend(ids);
                }
                let _: i64 = conn
                    .srem(GATEWAY_INSTANCES, &instance)
                    .await
                    .map_err(EventsError::Query)?;
            }
            Ok(orphans)
        })
    }
}

/// Subscribes to the channels of the users this instance holds and hands their events to the
/// instance's [`Recipient`]; keeps the instance's share of presence in Redis.
pub struct RedisSubscriber {
    tx: mpsc::UnboundedSender<Interest>,
}

impl RedisSubscriber {
    pub async fn connect(
        endpoint: &RedisEndpoint,
        hub: Arc<dyn Recipient>,
    ) -> Result<Arc<Self>, EventsError> {
        let client = endpoint.client()?;
        let conn = endpoint.open().await?;
        // Liveness first: presence written by this instance counts only while this key lives.
        let instance = keep_alive(&conn).await?;
        // Local joins and leaves: write this instance's view, then tell every instance.
        let (joined_tx, mut joined_rx) = mpsc::unbounded_channel::<UserId>();
        hub.report_presence_changes(joined_tx);
        let (writer_hub, mut writer_conn, writer_instance) =
            (hub.clone(), conn.clone(), instance.clone());
        tokio::spawn(async move {
            while let Some(user_id) = joined_rx.recv().await {
                let devices = writer_hub.local_devices(&user_id);
                let written: Result<(), ::redis::RedisError> = async {
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
                        .publish(channel(&user_id), payload(Wire::Presence))
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
        let (notice_tx, mut notice_rx) = mpsc::unbounded_channel::<UserId>();
        let (reader_hub, mut reader_conn) = (hub.clone(), conn.clone());
        tokio::spawn(async move {
            while let Some(user_id) = notice_rx.recv().await {
                match read_presence(&mut reader_conn, &user_id).await {
                    Ok(devices) => reader_hub.show_presence(&user_id, devices),
                    Err(e) => tracing::warn!(error = %e, "reading presence from Redis failed"),
                }
            }
        });
        let (mut sink, mut stream) = client
            .get_async_pubsub()
            .await
            .map_err(|source| EventsError::Connect {
                at: endpoint.address(),
                source,
            })?
            .split();
        tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                let Some(user_id) = msg.get_channel_name().strip_prefix(CHANNEL_PREFIX) else {
                    continue;
                };
                let user_id = UserId::from(user_id);
                match parse(msg.get_payload_bytes()) {
                    // A notice only: the merged view is read from the hash, in order.
                    Ok(Event::PresenceChanged) => {
                        let _ = notice_tx.send(user_id);
                    }
                    Ok(event) => hub.deliver(&user_id, event),
                    Err(e) => tracing::warn!(error = %e, "unreadable message from Redis"),
                }
            }
            tracing::error!("Redis subscription stream ended");
        });
        let (tx, mut rx) = mpsc::unbounded_channel::<Interest>();
        // One task applies interest changes in order, with a reference count per user.
        tokio::spawn(async move {
            let mut held: HashMap<UserId, usize> = HashMap::new();
            while let Some(interest) = rx.recv().await {
                match interest {
                    Interest::Subscribe(user, ack) => {
                        let count = held.entry(user.clone()).or_default();
                        *count += 1;
                        let result = if *count == 1 {
                            sink.subscribe(channel(&user))
                                .await
                                .map_err(EventsError::Subscribe)
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
}

/// A hold is a subscription to the user's channel, resolved once Redis has confirmed it.
impl Subscriber for RedisSubscriber {
    fn hold<'a>(&'a self, user_id: &'a UserId) -> BoxFuture<'a, Result<(), EventsError>> {
        Box::pin(async move {
            let (ack, done) = oneshot::channel();
            self.tx
                .send(Interest::Subscribe(user_id.to_owned(), ack))
                .map_err(|_| EventsError::Stopped)?;
            done.await.map_err(|_| EventsError::Stopped)?
        })
    }

    fn release(&self, user_id: &UserId) {
        let _ = self.tx.send(Interest::Unsubscribe(user_id.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use syncsphere_protocol::ChangeKind;
    use syncsphere_protocol::{Rev, Seq};

    use super::*;

    /// The JSON on the channel is what instances of the previous version (`BusMessage` in the
    /// State crate) wrote and read: a cluster can be upgraded one instance at a time.
    #[test]
    fn the_wire_format_is_the_one_of_bus_message() {
        let change = ChangeEvent {
            seq: Seq(7),
            file_id: "f1".into(),
            event: ChangeKind::Moved,
            path: "b".into(),
            old_path: Some("a".into()),
            rev: Rev(3),
            size: 5,
            sha256: "ab".into(),
            origin_device: Some("dev-a".into()),
            at_ms: 11,
        };
        let check = |event: Event, expected: serde_json::Value| {
            let text = payload(Wire::of(event.clone()).unwrap());
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&text).unwrap(),
                expected
            );
            assert_eq!(parse(text.as_bytes()).unwrap(), event);
        };
        let mut expected = serde_json::to_value(&change).unwrap();
        expected["type"] = "change".into();
        check(Event::Change(change), expected);
        check(
            Event::PresenceChanged,
            serde_json::json!({ "type": "presence" }),
        );
        check(
            Event::DeviceRevoked {
                device_id: "dev-b".into(),
                sessions: vec![],
            },
            serde_json::json!({ "type": "revoked", "device_id": "dev-b" }),
        );
        let bound = Event::SessionBound {
            session: "s".into(),
            device_id: "dev-b".into(),
        };
        assert!(Wire::of(bound).is_none(), "recorded, never sent");
        check(
            Event::SignedOut {
                before: 1_800_000_000,
            },
            serde_json::json!({ "type": "signed_out", "before": 1_800_000_000u64 }),
        );
        assert!(parse(br#"{"type":"unknown"}"#).is_err());
    }

    #[test]
    fn merged_presence_adds_connections_of_a_device_on_several_instances() {
        let d = |id: &str, name: Option<&str>, n| OnlineDevice {
            device_id: id.into(),
            device_name: name.map(Into::into),
            connections: n,
        };
        let merged = merge_devices(vec![
            vec![d("b", None, 1), d("a", Some("laptop"), 1)],
            vec![d("b", Some("desk"), 2)],
            vec![],
        ]);
        assert_eq!(
            merged,
            vec![d("a", Some("laptop"), 1), d("b", Some("desk"), 3)]
        );
    }
}
