//! WebSocket messages of `GET /v1/ws`, JSON text frames tagged by `type`, and close codes.
//!
//! Closing: a client's close frame is echoed, then the server ends the connection; a close the
//! server starts waits at most 2 s for the client's answer, then the TCP connection is dropped.

use serde::{Deserialize, Serialize};

use crate::api::ChangeEvent;
use crate::{DeviceId, Seq};

/// Close code sent when a connection fell behind — its outbound queue overflowed, or a write
/// to it did not finish within 10 s because it stopped reading — after a `resync` message
/// (both written only if the peer reads them within 2 s): catch up from the cursor.
pub const CLOSE_RESYNC: u16 = 4000;
/// Close code for a missing, invalid or expired token: no valid `auth` first (browsers), or no
/// fresh token in answer to `reauth` before the old one expired.
pub const CLOSE_UNAUTHORIZED: u16 = 4001;
/// Close code for a protocol violation (e.g. no `hello` first).
pub const CLOSE_PROTOCOL: u16 = 4002;
/// Close code when the user already has the maximum number of connections.
pub const CLOSE_TOO_MANY_CONNECTIONS: u16 = 4003;
/// Close code when the connection's device was revoked: do not reconnect with this device id;
/// sign in again as a new device.
pub const CLOSE_DEVICE_REVOKED: u16 = 4004;
/// Close code for a `hello` whose token speaks for no device: a sign-in session not yet bound
/// to one (an Amazon Cognito token before `PUT /v1/devices/{id}`). Register the device, then
/// reconnect; a token may only ever say `hello` as the device it is bound to.
pub const CLOSE_DEVICE_UNREGISTERED: u16 = 4005;
/// Close code sent when the server shuts down: reconnect (with backoff) to any instance.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for a frame or message over 64 KiB (RFC 6455 "message too big").
pub const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;

/// Messages a device sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// First message of a connection opened without an `Authorization` header (browsers cannot
    /// set one): the bearer token, within 5 s of connecting; also the answer to `reauth`. Never
    /// put tokens in the URL.
    Auth { token: String },
    /// First message on every authenticated connection.
    Hello {
        device_id: DeviceId,
        cursor: Seq,
        /// Human-readable name shown to the user's other devices in `presence`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device_name: Option<String>,
    },
    /// A heartbeat: nothing is answered. Behind API Gateway's WebSocket API (whose idle
    /// timeout counts data messages only, not ping frames) clients send one at the interval
    /// `welcome`'s `limits` imply; elsewhere it is harmless.
    Ping,
}

/// What the connection's carrier imposes, told in `welcome` when it is not the service itself
/// (API Gateway's WebSocket API: 10 minutes idle, 2 hours at most).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionLimits {
    /// The connection closes after this many seconds without a data message either way: send
    /// `ping` well within it.
    pub idle_timeout_secs: u64,
    /// The connection closes this many seconds after it opened: reconnect before.
    pub max_duration_secs: u64,
}

/// One online device in a `presence` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineDevice {
    pub device_id: DeviceId,
    pub device_name: Option<String>,
    /// Open connections of this device (usually 1).
    pub connections: u32,
}

/// Messages the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Answer to `hello`: the connection is registered and will receive pushes from now on.
    Welcome {
        device_id: DeviceId,
        connection_id: String,
        /// Set when the connection goes through a carrier with limits of its own (API Gateway).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limits: Option<ConnectionLimits>,
    },
    /// A committed change made by another device of the same user.
    Change(ChangeEvent),
    /// The server dropped events for this connection: read the journal from your cursor.
    Resync { reason: String },
    /// The connection's token expires at `expires_at` (seconds since the epoch): answer with an
    /// `auth` message carrying a fresh token, or the connection closes with 4001 soon after.
    Reauth { expires_at: u64 },
    /// The user's online devices, sent to all of them whenever one connects or disconnects.
    Presence { devices: Vec<OnlineDevice> },
    /// The server ends the connection with this close code (one of `CLOSE_*`), when the
    /// connection's carrier cannot send close codes (API Gateway closes with 1000): the client
    /// acts as on a close frame with `code`. The connection closes right after.
    Bye { code: u16, reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ChangeKind;

    #[test]
    fn change_push_has_the_documented_flat_shape() {
        let msg = ServerMessage::Change(ChangeEvent {
            seq: crate::Seq(7),
            file_id: "f1".into(),
            event: ChangeKind::Updated,
            path: "a.txt".into(),
            old_path: None,
            rev: crate::Rev(2),
            size: 3,
            sha256: "ab".into(),
            origin_device: Some("dev-a".into()),
            at_ms: 1,
        });
        let v: serde_json::Value = serde_json::to_value(&msg).unwrap();
        assert_eq!(v["type"], "change");
        assert_eq!(v["file_id"], "f1");
        assert_eq!(v["event"], "updated");
        assert_eq!(v["path"], "a.txt");
        assert_eq!(v["rev"], 2);
        assert_eq!(v["seq"], 7);
        assert_eq!(v["origin_device"], "dev-a");
        let back: ServerMessage = serde_json::from_value(v).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn ping_and_bye_have_their_documented_shape() {
        assert_eq!(
            serde_json::to_string(&ClientMessage::Ping).unwrap(),
            r#"{"type":"ping"}"#
        );
        let bye = ServerMessage::Bye {
            code: CLOSE_DEVICE_REVOKED,
            reason: "device revoked".into(),
        };
        let v: serde_json::Value = serde_json::to_value(&bye).unwrap();
        assert_eq!(v["type"], "bye");
        assert_eq!(v["code"], 4004);
        // A welcome without limits is what servers before them sent.
        let welcome: ServerMessage =
            serde_json::from_str(r#"{"type":"welcome","device_id":"d","connection_id":"1"}"#)
                .unwrap();
        assert!(matches!(
            welcome,
            ServerMessage::Welcome { limits: None, .. }
        ));
    }

    #[test]
    fn hello_parses_from_client_json() {
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"hello","device_id":"d","cursor":12}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::Hello {
                device_id: "d".into(),
                cursor: crate::Seq(12),
                device_name: None,
            }
        );
    }
}
