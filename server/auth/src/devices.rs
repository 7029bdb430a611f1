//! The user's devices: registration, `GET /v1/devices`, and revocation ("unlink this device").
//!
//! A device is identified by the id it generated at its first sign-in, sent as Cognito's
//! `DEVICE_KEY` when it signs in, so its tokens carry a `device_key` claim. Revoking a device
//! marks it in the metadata database; from then on:
//! - its refresh tokens are revoked and it cannot sign in again with the same device id;
//! - every request with an access token bound to it is refused with `401 device_revoked`
//!   (the [`Verifier`] consults the registry through
//!   [`DbRevocations`](crate::sign_out::DbRevocations)), and so is registering it again (0027);
//! - its push sockets are closed with `4004` (an [`Event::DeviceRevoked`] is published).
//!
//! An external pool's tokens carry no `device_key`; their sign-in session (`origin_jti`) is
//! bound to the device that registers with it, and they then act as that device's, revoked
//! with it (0038). Tokens bound to no device either way (tools that never register) are not
//! affected by a device revocation; signing out everywhere (`POST /v1/account/sign-out`, or the built-in provider's
//! `GlobalSignOut`) ends those too ([`crate::sign_out`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize as _;
use sqlx::Row;
use syncsphere_db::Db;
use syncsphere_events::{Event, EventsError, Presence, Publisher};
use syncsphere_protocol::endpoint;
use syncsphere_protocol::ws::OnlineDevice;
use syncsphere_protocol::{
    ApiError, Device, DeviceId, DeviceList, ErrorCode, RegisterDevice, UserId,
};

use crate::now_ms;
use crate::routes::RouterExt;
use crate::verify::{AuthUser, Verifier};

/// Longest device id, name and platform accepted.
pub const MAX_DEVICE_ID_LEN: usize = 128;
pub const MAX_DEVICE_NAME_LEN: usize = 128;
pub const MAX_PLATFORM_LEN: usize = 32;
/// `last_seen` is written at most this often per device.
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device id must be 1-{MAX_DEVICE_ID_LEN} printable ASCII characters without spaces")]
    InvalidId,
    #[error("{0}")]
    BadRequest(String),
    /// A body the JSON extractor refused (too large, not declared as JSON, not JSON).
    #[error("{0}")]
    Json(ApiError),
    #[error("a token bound to device {0} can only act for that device")]
    WrongDevice(String),
    #[error("this device was unlinked from the account; sign in again as a new device")]
    Revoked,
    #[error("metadata store failed: {0}")]
    Store(#[from] sqlx::Error),
    #[error("presence unavailable: {0}")]
    Presence(#[source] EventsError),
}

impl From<DeviceError> for ApiError {
    fn from(e: DeviceError) -> Self {
        let code = match &e {
            DeviceError::InvalidId | DeviceError::BadRequest(_) => ErrorCode::BadRequest,
            DeviceError::Json(rejection) => return rejection.clone(),
            DeviceError::WrongDevice(_) => ErrorCode::Forbidden,
            DeviceError::Revoked => ErrorCode::DeviceRevoked,
            DeviceError::Store(_) | DeviceError::Presence(_) => {
                tracing::error!(error = %e, "internal error");
                return ApiError::internal();
            }
        };
        ApiError::new(code, e.to_string())
    }
}

impl IntoResponse for DeviceError {
    fn into_response(self) -> Response {
        crate::api_error::respond(self.into())
    }
}

impl From<JsonRejection> for DeviceError {
    fn from(e: JsonRejection) -> Self {
        DeviceError::Json(crate::api_error::json_rejection(e))
    }
}

/// Checks a client-chosen device id: printable ASCII, no spaces, bounded length.
pub fn check_device_id(id: &str) -> Result<(), DeviceError> {
    if id.is_empty() || id.len() > MAX_DEVICE_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(DeviceError::InvalidId);
    }
    Ok(())
}

fn clean_label(
    value: Option<String>,
    max: usize,
    what: &str,
) -> Result<Option<String>, DeviceError> {
    let Some(value) = value else { return Ok(None) };
    let value = value.trim().to_owned();
    if value.chars().any(char::is_control) {
        return Err(DeviceError::BadRequest(format!(
            "{what} must not contain control characters"
        )));
    }
    if value.chars().count() > max {
        return Err(DeviceError::BadRequest(format!(
            "{what} must be at most {max} characters"
        )));
    }
    Ok((!value.is_empty()).then_some(value))
}

/// The registered devices of every user, in the metadata database.
pub struct DeviceRegistry {
    db: Db,
    touched: Mutex<HashMap<(UserId, DeviceId), Instant>>,
}

/// A row of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub device_id: DeviceId,
    pub name: Option<String>,
    pub platform: Option<String>,
    pub created_ms: i64,
    pub last_seen_ms: i64,
    pub revoked: bool,
}

impl DeviceRegistry {
    pub fn new(db: Db) -> Arc<Self> {
        Arc::new(DeviceRegistry {
            db,
            touched: Mutex::default(),
        })
    }

    /// Registers the device or updates its name and platform, and binds the sign-in `session`
    /// of the token that registers it to it (the first binding of a session stays); refused
    /// for a revoked device.
    pub async fn register(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        (name, platform): (Option<&str>, Option<&str>),
        session: Option<&str>,
    ) -> Result<(), DeviceError> {
        check_device_id(device_id)?;
        let now = now_ms();
        let mut tx = self.db.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO devices (user_id, device_id, name, platform, created_ms, last_seen_ms)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (user_id, device_id) DO UPDATE
             SET name = excluded.name, platform = excluded.platform, last_seen_ms = excluded.last_seen_ms
             WHERE devices.revoked_ms IS NULL",
        )
        .bind(user_id.as_str())
        .bind(device_id.as_str())
        .bind(name)
        .bind(platform)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(DeviceError::Revoked);
        }
        if let Some(session) = session {
            sqlx::query(
                "INSERT INTO device_sessions (user_id, origin_jti, device_id, created_ms)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, origin_jti) DO NOTHING",
            )
            .bind(user_id.as_str())
            .bind(session)
            .bind(device_id.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.touched
            .lock()
            .expect("touch lock")
            .insert((user_id.clone(), device_id.clone()), Instant::now());
        Ok(())
    }

    /// Records that the device was seen now (written at most once a minute per device).
    pub async fn touch(&self, user_id: &UserId, device_id: &DeviceId) -> Result<(), DeviceError> {
        {
            let mut touched = self.touched.lock().expect("touch lock");
            let key = (user_id.to_owned(), device_id.to_owned());
            if touched
                .get(&key)
                .is_some_and(|at| at.elapsed() < TOUCH_INTERVAL)
            {
                return Ok(());
            }
            if touched.len() > 100_000 {
                touched.retain(|_, at| at.elapsed() < TOUCH_INTERVAL);
            }
            touched.insert(key, Instant::now());
        }
        sqlx::query(
            "UPDATE devices SET last_seen_ms = $3
             WHERE user_id = $1 AND device_id = $2 AND last_seen_ms < $3",
        )
        .bind(user_id.as_str())
        .bind(device_id.as_str())
        .bind(now_ms())
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    pub async fn list(&self, user_id: &UserId) -> Result<Vec<DeviceRecord>, DeviceError> {
        let rows = sqlx::query(
            "SELECT device_id, name, platform, created_ms, last_seen_ms, revoked_ms
             FROM devices WHERE user_id = $1",
        )
        .bind(user_id.as_str())
        .fetch_all(&self.db.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| DeviceRecord {
                device_id: r.get::<String, _>("device_id").into(),
                name: r.get("name"),
                platform: r.get("platform"),
                created_ms: r.get("created_ms"),
                last_seen_ms: r.get("last_seen_ms"),
                revoked: r.get::<Option<i64>, _>("revoked_ms").is_some(),
            })
            .collect())
    }

    /// Revokes the device (also one that never registered but holds a bound token) and every
    /// refresh token issued to it, in one transaction. Returns the sign-in sessions bound to
    /// it, refused from now on with it.
    pub async fn revoke(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
    ) -> Result<Vec<String>, DeviceError> {
        check_device_id(device_id)?;
        let now = now_ms();
        let mut tx = self.db.pool.begin().await?;
        sqlx::query(
            "INSERT INTO devices (user_id, device_id, created_ms, last_seen_ms, revoked_ms)
             VALUES ($1, $2, $3, $3, $3)
             ON CONFLICT (user_id, device_id) DO UPDATE
             SET revoked_ms = excluded.revoked_ms WHERE devices.revoked_ms IS NULL",
        )
        .bind(user_id.as_str())
        .bind(device_id.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE idp_refresh_tokens SET revoked = 1 WHERE user_id = $1 AND device_key = $2",
        )
        .bind(user_id.as_str())
        .bind(device_id.as_str())
        .execute(&mut *tx)
        .await?;
        let sessions = sqlx::query(
            "SELECT origin_jti FROM device_sessions WHERE user_id = $1 AND device_id = $2",
        )
        .bind(user_id.as_str())
        .bind(device_id.as_str())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.get::<String, _>("origin_jti"))
        .collect::<Vec<_>>();
        tx.commit().await?;
        tracing::info!(%user_id, %device_id, sessions = sessions.len(), "device revoked");
        Ok(sessions)
    }

    /// Signs the user out everywhere ([`crate::sign_out::record`]); returns the cut-off.
    pub async fn sign_out_everywhere(&self, user_id: &UserId) -> Result<u64, DeviceError> {
        Ok(crate::sign_out::record(&self.db, user_id).await?)
    }
}

/// State of the `/v1/devices` routes.
#[derive(Clone)]
pub struct DevicesState {
    pub registry: Arc<DeviceRegistry>,
    pub verifier: Arc<Verifier>,
    /// Who is online: the push hub in this process, or Redis across instances.
    pub presence: Arc<dyn Presence>,
    /// Where a revocation is announced, so the device's push connections close.
    pub events: Arc<dyn Publisher>,
}

impl FromRef<DevicesState> for Arc<Verifier> {
    fn from_ref(state: &DevicesState) -> Self {
        state.verifier.clone()
    }
}

/// `GET /v1/devices`, `PUT /v1/devices/{device_id}`, `DELETE /v1/devices/{device_id}`, and
/// `POST /v1/account/sign-out`.
pub fn router(state: DevicesState) -> Router {
    Router::new()
        .endpoint(endpoint::ListDevices, list)
        .endpoint(endpoint::RegisterDevice, register)
        .endpoint(endpoint::RevokeDevice, revoke)
        .endpoint(endpoint::SignOutEverywhere, sign_out_everywhere)
        .with_state(state)
}

/// Merges the registry with live presence: online devices first, then most recently seen.
pub fn device_list(
    records: Vec<DeviceRecord>,
    online: Vec<OnlineDevice>,
    current: Option<&str>,
    now_ms: i64,
) -> DeviceList {
    let mut devices: Vec<Device> = records
        .into_iter()
        .map(|r| Device {
            online: !r.revoked && online.iter().any(|o| o.device_id == r.device_id),
            current: current == Some(r.device_id.as_str()),
            device_id: r.device_id,
            name: r.name,
            platform: r.platform,
            created_ms: r.created_ms,
            last_seen_ms: r.last_seen_ms,
            revoked: r.revoked,
        })
        .collect();
    for o in online {
        if !devices.iter().any(|d| d.device_id == o.device_id) {
            devices.push(Device {
                current: current == Some(o.device_id.as_str()),
                device_id: o.device_id,
                name: o.device_name,
                platform: None,
                created_ms: 0,
                last_seen_ms: now_ms,
                online: true,
                revoked: false,
            });
        }
    }
    for d in devices.iter_mut().filter(|d| d.online) {
        d.last_seen_ms = now_ms;
    }
    devices.sort_by(|a, b| {
        (b.online, b.last_seen_ms, &a.device_id).cmp(&(a.online, a.last_seen_ms, &b.device_id))
    });
    DeviceList { devices }
}

async fn list(
    State(state): State<DevicesState>,
    user: AuthUser,
) -> Result<Json<DeviceList>, DeviceError> {
    let records = state.registry.list(&user.user_id).await?;
    let online = state
        .presence
        .online(&user.user_id)
        .await
        .map_err(DeviceError::Presence)?;
    Ok(Json(device_list(
        records,
        online,
        user.device_key.as_deref(),
        now_ms(),
    )))
}

async fn register(
    State(state): State<DevicesState>,
    user: AuthUser,
    Path(device_id): Path<String>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<StatusCode, DeviceError> {
    check_device_id(&device_id)?;
    let Json(body) = body?;
    // An object only: serde would take an array for the struct, field by field.
    if !body.is_object() {
        return Err(DeviceError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    }
    let body = RegisterDevice::deserialize(body)
        .map_err(|e| DeviceError::BadRequest(format!("invalid body: {e}")))?;
    if let Some(bound) = &user.device_key
        && *bound != device_id
    {
        return Err(DeviceError::WrongDevice(bound.to_string()));
    }
    let name = clean_label(body.name, MAX_DEVICE_NAME_LEN, "device name")?;
    let platform = clean_label(body.platform, MAX_PLATFORM_LEN, "platform")?;
    let device_id = DeviceId::from(&device_id);
    state
        .registry
        .register(
            &user.user_id,
            &device_id,
            (name.as_deref(), platform.as_deref()),
            user.session.as_deref(),
        )
        .await?;
    // Where revocations are looked up without the database (State instances on Redis), the
    // binding is recorded too (and its expiry pushed back: clients register at every start).
    if let Some(session) = user.session {
        state
            .events
            .publish(&user.user_id, Event::SessionBound { session, device_id });
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn revoke(
    State(state): State<DevicesState>,
    user: AuthUser,
    Path(device_id): Path<String>,
) -> Result<StatusCode, DeviceError> {
    check_device_id(&device_id)?;
    let device_id = DeviceId::from(&device_id);
    let sessions = state.registry.revoke(&user.user_id, &device_id).await?;
    state.events.publish(
        &user.user_id,
        Event::DeviceRevoked {
            device_id,
            sessions,
        },
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Every access token of the user issued until now stops working, on every role; push
/// connections close (4001).
async fn sign_out_everywhere(
    State(state): State<DevicesState>,
    user: AuthUser,
) -> Result<StatusCode, DeviceError> {
    let before = state.registry.sign_out_everywhere(&user.user_id).await?;
    state
        .events
        .publish(&user.user_id, Event::SignedOut { before });
    // Answered once the cut-off second has begun (at most a second from now): a token an
    // external pool issues after this answer says `iat >= before`, so signing in again right
    // away is never refused (the built-in provider sees to that itself).
    crate::sign_out::wait_past(before).await;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, last_seen_ms: i64, revoked: bool) -> DeviceRecord {
        DeviceRecord {
            device_id: id.into(),
            name: Some(format!("{id} name")),
            platform: Some("linux".into()),
            created_ms: 1,
            last_seen_ms,
            revoked,
        }
    }

    fn online(id: &str) -> OnlineDevice {
        OnlineDevice {
            device_id: id.into(),
            device_name: Some("live".into()),
            connections: 1,
        }
    }

    #[test]
    fn list_puts_online_first_then_most_recent_and_adds_unregistered_online_devices() {
        let list = device_list(
            vec![
                record("old", 10, false),
                record("recent", 20, false),
                record("laptop", 5, false),
                record("gone", 30, true),
            ],
            vec![online("laptop"), online("cli"), online("gone")],
            Some("laptop"),
            1000,
        );
        let order: Vec<(&str, bool, bool)> = list
            .devices
            .iter()
            .map(|d| (d.device_id.as_str(), d.online, d.current))
            .collect();
        assert_eq!(
            order,
            vec![
                ("cli", true, false),
                ("laptop", true, true),
                ("gone", false, false),
                ("recent", false, false),
                ("old", false, false),
            ]
        );
        assert_eq!(list.devices[1].last_seen_ms, 1000, "online means seen now");
        assert_eq!(list.devices[1].name.as_deref(), Some("laptop name"));
        assert_eq!(list.devices[0].name.as_deref(), Some("live"));
        assert!(list.devices[2].revoked);
    }

    #[test]
    fn device_ids_are_printable_and_bounded() {
        assert!(check_device_id("3f2a-laptop_1").is_ok());
        for bad in ["", "has space", "tab\t", "é", &"x".repeat(129)] {
            assert!(check_device_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn labels_are_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(
            clean_label(Some("  Anna's laptop ".into()), 128, "name").unwrap(),
            Some("Anna's laptop".into())
        );
        assert_eq!(clean_label(Some("  ".into()), 128, "name").unwrap(), None);
        assert!(clean_label(Some("a\nb".into()), 128, "name").is_err());
        assert!(clean_label(Some("x".repeat(33)), 32, "platform").is_err());
    }
}
