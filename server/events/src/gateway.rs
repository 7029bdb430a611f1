//! The registry of connections API Gateway's WebSocket API holds on the service's behalf (AWS
//! mode, decision 0042): `$connect`, each message and `$disconnect` of one connection are
//! separate HTTP requests that may each reach a different State instance, so what one of them
//! learns (who the connection is, which instance serves its pushes) is written here for the
//! others. In one process: [`LocalGatewayConnections`]; across instances: Redis
//! (`redis::RedisGatewayConnections`).
//!
//! **Boundary**: a record is opaque here (the State service's JSON); this crate only keeps it,
//! expires it and says which instance serves the connection.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use crate::EventsError;

/// Shared records of gateway connections, by API Gateway's connection id.
pub trait GatewayConnections: Send + Sync + 'static {
    /// Records connection `id` for `ttl` (a connection API Gateway holds lives 2 h at most).
    fn insert<'a>(
        &'a self,
        id: &'a str,
        record: String,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), EventsError>>;
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<String>, EventsError>>;
    /// Replaces the record of `id`, keeping its expiry; `false` (nothing written) when there
    /// is none.
    fn update<'a>(
        &'a self,
        id: &'a str,
        record: String,
    ) -> BoxFuture<'a, Result<bool, EventsError>>;
    /// Forgets `id` (record and claim); returns the record it had.
    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<String>, EventsError>>;
    /// Makes this instance the one that serves `id`'s pushes unless one already does; `true`
    /// if this instance now does. The claim expires with `ttl`.
    fn claim<'a>(&'a self, id: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool, EventsError>>;
    /// Whether the instance serving `id` is alive; `None` when none claimed it (or the claim
    /// is gone).
    fn served<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<bool>, EventsError>>;
    /// The connections claimed by instances that are gone (crashed), each handed to one
    /// caller once: this instance now answers for closing them.
    fn adopt_orphans(&self) -> BoxFuture<'_, Result<Vec<String>, EventsError>>;
}

#[derive(Default)]
struct Entries {
    records: HashMap<String, (String, Instant)>,
    claims: HashMap<String, Instant>,
}

impl Entries {
    fn live(&mut self, id: &str) -> Option<&mut (String, Instant)> {
        let now = Instant::now();
        self.records.retain(|_, (_, until)| *until > now);
        self.claims.retain(|_, until| *until > now);
        self.records.get_mut(id)
    }
}

/// The registry of a single instance (the all-in-one server behind API Gateway): in memory,
/// every claim is this instance's and it is alive.
#[derive(Default)]
pub struct LocalGatewayConnections {
    entries: Mutex<Entries>,
}

impl LocalGatewayConnections {
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self::default())
    }
}

impl GatewayConnections for LocalGatewayConnections {
    fn insert<'a>(
        &'a self,
        id: &'a str,
        record: String,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), EventsError>> {
        let mut entries = self.entries.lock().expect("registry lock");
        entries
            .records
            .insert(id.to_owned(), (record, Instant::now() + ttl));
        Box::pin(async { Ok(()) })
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<String>, EventsError>> {
        let found = self
            .entries
            .lock()
            .expect("registry lock")
            .live(id)
            .map(|(record, _)| record.clone());
        Box::pin(async { Ok(found) })
    }

    fn update<'a>(
        &'a self,
        id: &'a str,
        record: String,
    ) -> BoxFuture<'a, Result<bool, EventsError>> {
        let mut entries = self.entries.lock().expect("registry lock");
        let updated = match entries.live(id) {
            Some(entry) => {
                entry.0 = record;
                true
            }
            None => false,
        };
        Box::pin(async move { Ok(updated) })
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<String>, EventsError>> {
        let mut entries = self.entries.lock().expect("registry lock");
        entries.claims.remove(id);
        let removed = entries.live(id).is_some();
        let record = if removed {
            entries.records.remove(id).map(|(record, _)| record)
        } else {
            None
        };
        Box::pin(async { Ok(record) })
    }

    fn claim<'a>(&'a self, id: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool, EventsError>> {
        let mut entries = self.entries.lock().expect("registry lock");
        entries.live(id);
        let won = !entries.claims.contains_key(id);
        if won {
            entries.claims.insert(id.to_owned(), Instant::now() + ttl);
        }
        Box::pin(async move { Ok(won) })
    }

    fn served<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<bool>, EventsError>> {
        let mut entries = self.entries.lock().expect("registry lock");
        entries.live(id);
        let served = entries.claims.contains_key(id).then_some(true);
        Box::pin(async move { Ok(served) })
    }

    /// One instance: nobody else's claims to adopt.
    fn adopt_orphans(&self) -> BoxFuture<'_, Result<Vec<String>, EventsError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_expire_update_in_place_and_are_claimed_once() {
        let reg = LocalGatewayConnections::default();
        reg.insert("c1", "one".into(), Duration::from_secs(60))
            .await
            .unwrap();
        reg.insert("c2", "two".into(), Duration::from_millis(30))
            .await
            .unwrap();
        assert_eq!(reg.get("c1").await.unwrap().as_deref(), Some("one"));
        assert!(reg.update("c1", "uno".into()).await.unwrap());
        assert!(!reg.update("nope", "x".into()).await.unwrap());
        assert_eq!(reg.get("nope").await.unwrap(), None);
        assert_eq!(reg.served("c1").await.unwrap(), None);
        assert!(reg.claim("c1", Duration::from_secs(60)).await.unwrap());
        assert!(!reg.claim("c1", Duration::from_secs(60)).await.unwrap());
        assert_eq!(reg.served("c1").await.unwrap(), Some(true));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(reg.get("c2").await.unwrap(), None, "expired");
        assert_eq!(reg.remove("c1").await.unwrap().as_deref(), Some("uno"));
        assert_eq!(reg.remove("c1").await.unwrap(), None);
        assert_eq!(reg.served("c1").await.unwrap(), None, "claim gone with it");
    }
}
