//! What crosses between SyncSphere's services and instances: one closed [`Event`] enum, the
//! traits that move it ([`Publisher`], [`Subscriber`], [`Recipient`]) and answer questions about
//! what was published ([`Presence`], [`Revocations`]), and their two implementations:
//! in-process ([`LocalBus`]) and Redis pub/sub (`redis`, feature `redis`).
//!
//! Producers (the File service on commit, the device registry on revocation, sign-out
//! everywhere) publish; the State
//! service's push hub is the [`Recipient`] a subscriber delivers to. Neither side knows the other.
//!
//! **Invariants**
//! - Publishing never blocks: it is called on request paths, after the fact it reports (a change
//!   after its transaction committed, a revocation after it was recorded).
//! - Events are hints: one lost on the way (Redis down, a queue full) is logged, and clients
//!   catch up from the journal, which stays the truth.
//!
//! **Boundary**: this crate never reads the metadata database and knows nothing of HTTP, files or
//! sockets; only its `redis` module knows the wire format, and [`Event`] is not serialisable.

mod gateway;
mod local;
#[cfg(feature = "redis")]
pub mod redis;

use futures_util::future::BoxFuture;
use syncsphere_protocol::ws::OnlineDevice;
use syncsphere_protocol::{ChangeEvent, DeviceId, UserId};
use tokio::sync::mpsc;

pub use gateway::{GatewayConnections, LocalGatewayConnections};
pub use local::LocalBus;

/// Everything that crosses between services, addressed to one user (the address travels beside
/// the event: [`Publisher::publish`] takes the user id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A committed change: push it to the user's devices other than its origin.
    Change(ChangeEvent),
    /// The user's online devices changed somewhere: show the user's presence again.
    PresenceChanged,
    /// The device was revoked: close its push connections (4004). `sessions` are the sign-in
    /// sessions bound to it (Cognito `origin_jti`s), refused from now on with the device; they
    /// matter only where revocations are recorded (Redis), never on the wire.
    DeviceRevoked {
        device_id: DeviceId,
        sessions: Vec<String>,
    },
    /// A sign-in session (the `origin_jti` every token of one sign-in shares, refreshed ones
    /// too) was bound to a device when it registered: its tokens act for that device only,
    /// and stop working when the device is revoked. Nothing is pushed.
    SessionBound {
        session: String,
        device_id: DeviceId,
    },
    /// The user signed out everywhere: access tokens issued before `before` (seconds since the
    /// epoch) are refused from now on, and every push connection of the user closes (4001).
    SignedOut { before: u64 },
    /// A connection API Gateway's WebSocket API held for the user ended (its `$disconnect`
    /// reached some instance): the instance serving `connection` lets it go.
    GatewayDisconnected { connection: String },
}

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[cfg(feature = "redis")]
    /// Connecting failed: refused, TLS handshake (an untrusted certificate, a plain `redis://`
    /// to a TLS port), `AUTH` refused (`WRONGPASS`, `NOAUTH`). `at` is the URL without a password.
    #[error("could not connect to Redis at {at}: {source}")]
    Connect {
        at: String,
        #[source]
        source: ::redis::RedisError,
    },
    #[cfg(feature = "redis")]
    #[error("Redis subscription failed: {0}")]
    Subscribe(#[source] ::redis::RedisError),
    /// A Redis command failed on a working connection (the message is Redis's own).
    #[cfg(feature = "redis")]
    #[error(transparent)]
    Query(::redis::RedisError),
    #[cfg(feature = "redis")]
    #[error("the Redis subscriber has stopped")]
    Stopped,
    /// A source outside this crate failed (the device registry in the metadata database); the
    /// message is the source's own.
    #[error(transparent)]
    Source(Box<dyn std::error::Error + Send + Sync>),
}

/// Sends events on their way: to this process's push hub ([`LocalBus`]) or to Redis.
pub trait Publisher: Send + Sync + 'static {
    /// Hands `event` for `user_id` over, in order with the earlier ones. Never blocks; an event
    /// that cannot be sent is logged and dropped.
    fn publish(&self, user_id: &UserId, event: Event);
}

/// Brings the events of the users this instance holds to its [`Recipient`].
pub trait Subscriber: Send + Sync + 'static {
    /// Receives `user_id`'s events until the matching [`Subscriber::release`] (holds are counted
    /// per user). Resolves once no event published from then on can be missed.
    fn hold<'a>(&'a self, user_id: &'a UserId) -> BoxFuture<'a, Result<(), EventsError>>;
    fn release(&self, user_id: &UserId);
}

/// Where a subscriber delivers: this instance's push connections (the State service's hub).
pub trait Recipient: Send + Sync + 'static {
    /// An event for one of the users this instance holds.
    fn deliver(&self, user_id: &UserId, event: Event);
    /// The user's devices connected to this instance.
    fn local_devices(&self, user_id: &UserId) -> Vec<OnlineDevice>;
    /// Shows `devices`, gathered from every instance, as the user's presence.
    fn show_presence(&self, user_id: &UserId, devices: Vec<OnlineDevice>);
    /// From now on, reports the user id of every local join and leave to `to` instead of
    /// showing presence from this instance's connections alone (presence spans instances).
    fn report_presence_changes(&self, to: mpsc::UnboundedSender<UserId>);
}

/// Who is online: the user's devices holding a push connection now, on any instance.
pub trait Presence: Send + Sync + 'static {
    fn online<'a>(
        &'a self,
        user_id: &'a UserId,
    ) -> BoxFuture<'a, Result<Vec<OnlineDevice>, EventsError>>;
}

/// What was revoked of a user's sessions: a device's, or every token issued before a sign-out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocation {
    /// The device asked about (the token's, else the one its session is bound to) was revoked.
    pub device_revoked: bool,
    /// The device the token's sign-in session is bound to ([`Event::SessionBound`]), if it is.
    pub session_device: Option<DeviceId>,
    /// The user signed out everywhere: tokens issued before this second are void.
    pub signed_out_before: Option<u64>,
}

/// What was revoked, as the token verifier asks on every request: the metadata database, or
/// Redis for State instances that have no database.
pub trait Revocations: Send + Sync {
    /// The user's revocations; the device `session` (the token's `origin_jti`) is bound to; and
    /// whether the token's device — `device_key` if it names one, else the session's — is
    /// revoked.
    fn lookup<'a>(
        &'a self,
        user_id: &'a UserId,
        device_key: Option<&'a DeviceId>,
        session: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Revocation, EventsError>>;
}
