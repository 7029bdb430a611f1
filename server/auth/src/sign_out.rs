//! Signing out everywhere: a per-user cut-off in the metadata database (`sign_outs`) before
//! which every access token of the user is refused, by every role and on every path.
//!
//! Cognito's `GlobalSignOut` revokes refresh tokens and makes Cognito's own APIs refuse the
//! user's access tokens, but a resource server that checks signatures alone keeps accepting
//! them until they expire (up to a day). Here the cut-off is recorded, then announced as
//! [`Event::SignedOut`] so push connections close at once (and, through Redis, so State
//! instances without a database learn it); the [`Verifier`](crate::Verifier) consults it on
//! every request through [`DbRevocations`] (one query with the device check).
//!
//! The cut-off is the second after the sign-out (`iat` has one-second resolution): a token
//! issued in the same second is refused too. So that signing in again works at once, the
//! built-in provider never issues a token older than the cut-off ([`issue_time`]), and
//! `POST /v1/account/sign-out` answers only once the cut-off second has begun ([`wait_past`]):
//! what an external pool issues after that is newer.

use std::sync::Arc;

use sqlx::Row;
use syncsphere_db::Db;
use syncsphere_events::{EventsError, Revocation, Revocations};
use syncsphere_protocol::{DeviceId, UserId};

use crate::now_ms;
use crate::verify::BoxFuture;

/// Records that `user_id` signed out everywhere now, and revokes the built-in provider's refresh
/// tokens of the user, in one transaction. Returns the cut-off: tokens issued before it (seconds
/// since the epoch) are void.
pub async fn record(db: &Db, user_id: &UserId) -> Result<u64, sqlx::Error> {
    let before = (now_ms() / 1000 + 1) as u64;
    let mut tx = db.pool.begin().await?;
    sqlx::query(
        "INSERT INTO sign_outs (user_id, before_s) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET before_s = excluded.before_s
         WHERE sign_outs.before_s < excluded.before_s",
    )
    .bind(user_id.as_str())
    .bind(before as i64)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE idp_refresh_tokens SET revoked = 1 WHERE user_id = $1")
        .bind(user_id.as_str())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(%user_id, before, "signed out everywhere");
    Ok(before)
}

/// The user's sign-out cut-off, the device `session` is bound to, and whether the token's device
/// (`device_id`, else the session's) is revoked, in one query.
pub async fn lookup(
    db: &Db,
    user_id: &UserId,
    device_id: Option<&DeviceId>,
    session: Option<&str>,
) -> Result<Revocation, sqlx::Error> {
    let row = sqlx::query(
        "SELECT (SELECT before_s FROM sign_outs WHERE user_id = $1) AS before_s,
                (SELECT device_id FROM device_sessions
                 WHERE user_id = $1 AND origin_jti = $3) AS session_device,
                (SELECT revoked_ms FROM devices
                 WHERE user_id = $1 AND device_id = COALESCE($2,
                     (SELECT device_id FROM device_sessions
                      WHERE user_id = $1 AND origin_jti = $3))) AS revoked_ms",
    )
    .bind(user_id.as_str())
    .bind(device_id.map(DeviceId::as_str))
    .bind(session)
    .fetch_one(&db.pool)
    .await?;
    Ok(Revocation {
        device_revoked: row.get::<Option<i64>, _>("revoked_ms").is_some(),
        session_device: row
            .get::<Option<String>, _>("session_device")
            .map(DeviceId::from),
        signed_out_before: row
            .get::<Option<i64>, _>("before_s")
            .map(|s| u64::try_from(s).unwrap_or(0)),
    })
}

/// When a token issued now for `user_id` must say it was issued: now, or the sign-out cut-off
/// if that is later (the second of a sign-out), so a fresh sign-in is never refused.
pub async fn issue_time(db: &Db, user_id: &UserId) -> Result<u64, sqlx::Error> {
    let now = (now_ms() / 1000) as u64;
    let cut_off = lookup(db, user_id, None, None).await?.signed_out_before;
    Ok(cut_off.map_or(now, |c| c.max(now)))
}

/// Returns once the second `before` (seconds since the epoch) has begun.
pub async fn wait_past(before: u64) {
    let wait_ms = (before as i64) * 1000 - now_ms();
    if wait_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(wait_ms as u64)).await;
    }
}

/// Revocations recorded in the metadata database (the files and all roles).
pub struct DbRevocations {
    db: Db,
}

impl DbRevocations {
    pub fn new(db: Db) -> Arc<Self> {
        Arc::new(DbRevocations { db })
    }
}

impl Revocations for DbRevocations {
    fn lookup<'a>(
        &'a self,
        user_id: &'a UserId,
        device_key: Option<&'a DeviceId>,
        session: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Revocation, EventsError>> {
        Box::pin(async move {
            lookup(&self.db, user_id, device_key, session)
                .await
                .map_err(|e| EventsError::Source(Box::new(e)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_embedded(dir.path()).await.unwrap();
        (dir, db)
    }

    #[tokio::test]
    async fn a_sign_out_sets_a_cut_off_that_only_moves_forward_and_sign_ins_start_at_it() {
        let (_dir, db) = db().await;
        let (user, other): (UserId, UserId) = ("u1".into(), "u2".into());
        assert_eq!(
            lookup(&db, &user, None, None).await.unwrap(),
            Revocation::default()
        );
        let now = (now_ms() / 1000) as u64;
        let before = record(&db, &user).await.unwrap();
        assert_eq!(before, now + 1, "the second after the sign-out");
        let found = lookup(&db, &user, Some(&"dev".into()), None).await.unwrap();
        assert_eq!(
            found,
            Revocation {
                signed_out_before: Some(before),
                ..Revocation::default()
            }
        );
        assert_eq!(issue_time(&db, &user).await.unwrap(), before);
        assert_eq!(
            lookup(&db, &other, None, None).await.unwrap(),
            Revocation::default()
        );
        // An earlier cut-off never replaces a later one.
        sqlx::query("UPDATE sign_outs SET before_s = before_s + 100")
            .execute(&db.pool)
            .await
            .unwrap();
        record(&db, &user).await.unwrap();
        let kept = lookup(&db, &user, None, None)
            .await
            .unwrap()
            .signed_out_before;
        assert_eq!(kept, Some(before + 100));
    }

    #[tokio::test]
    async fn the_lookup_reports_a_revoked_device_of_the_user_only() {
        let (_dir, db) = db().await;
        sqlx::query(
            "INSERT INTO devices (user_id, device_id, created_ms, last_seen_ms, revoked_ms)
             VALUES ('u1', 'dev', 1, 1, 2), ('u1', 'live', 1, 1, NULL)",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        let revoked = |user: &'static str, device: Option<&'static str>| {
            let db = db.clone();
            async move {
                lookup(&db, &user.into(), device.map(DeviceId::from).as_ref(), None)
                    .await
                    .unwrap()
                    .device_revoked
            }
        };
        assert!(revoked("u1", Some("dev")).await);
        assert!(!revoked("u1", Some("live")).await);
        assert!(!revoked("u1", None).await);
        assert!(!revoked("u2", Some("dev")).await);
    }

    #[tokio::test]
    async fn a_token_without_a_device_acts_as_its_sessions_device() {
        let (_dir, db) = db().await;
        sqlx::query(
            "INSERT INTO devices (user_id, device_id, created_ms, last_seen_ms, revoked_ms)
             VALUES ('u1', 'lost', 1, 1, 2), ('u1', 'live', 1, 1, NULL)",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO device_sessions (user_id, origin_jti, device_id, created_ms)
             VALUES ('u1', 's-lost', 'lost', 1), ('u1', 's-live', 'live', 1)",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        let found = |user: &'static str, device: Option<&'static str>, session: &'static str| {
            let db = db.clone();
            async move {
                let device = device.map(DeviceId::from);
                lookup(&db, &user.into(), device.as_ref(), Some(session))
                    .await
                    .unwrap()
            }
        };
        assert_eq!(
            found("u1", None, "s-lost").await,
            Revocation {
                device_revoked: true,
                session_device: Some("lost".into()),
                signed_out_before: None,
            }
        );
        assert_eq!(
            found("u1", None, "s-live").await,
            Revocation {
                session_device: Some("live".into()),
                ..Revocation::default()
            }
        );
        assert_eq!(found("u1", None, "s-new").await, Revocation::default());
        assert_eq!(found("u2", None, "s-lost").await, Revocation::default());
        // A token's own device comes first (the Redis lookup answers the same).
        let both = found("u1", Some("live"), "s-lost").await;
        assert!(!both.device_revoked);
        assert_eq!(both.session_device, Some("lost".into()));
    }
}
