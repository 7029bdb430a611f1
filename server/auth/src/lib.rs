//! Authentication for SyncSphere: verifying Amazon Cognito JWTs ([`Verifier`]) and a built-in,
//! Cognito-compatible identity provider ([`idp`]) for self-hosting and tests.
//!
//! **Invariant**: tokens are verified exactly as AWS documents for Cognito — RS256 against the
//! pool's JWKS by `kid`, `iss` equal to the configured issuer, `token_use` `access` and a
//! `client_id` among the allowed app clients, `exp`/`nbf` with a small leeway (ID tokens do not
//! act on the API).
//! The built-in provider's tokens go through the very same check.
//!
//! **Boundary**: HTTP statuses come from the one table in `syncsphere_protocol`
//! ([`ErrorCode::status`](syncsphere_protocol::ErrorCode::status)), answered by [`api_error`]
//! for every service; only the Cognito JSON API answers in Cognito's shape.

pub mod api_error;
pub mod devices;
pub mod idp;
pub mod pool;
pub mod routes;
pub mod sign_out;
mod verify;

pub use verify::{AuthError, AuthRejection, AuthUser, BoxFuture, Claims, JwksSource, Verifier};

/// The address a request came from (the TCP peer), put in the request's extensions by the
/// server's listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub std::net::IpAddr);

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
