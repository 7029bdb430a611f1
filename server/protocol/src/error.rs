//! The REST API's errors: the machine-readable [`ErrorCode`], the one table from code to HTTP
//! status ([`ErrorCode::status`]), the one error every service's error becomes ([`ApiError`])
//! and its wire form ([`ErrorBody`]).
//!
//! **Boundary**: statuses are plain `u16`s here; the one place that turns an [`ApiError`] into
//! an HTTP response is `syncsphere_auth::api_error` (the Cognito JSON API is Cognito-shaped and
//! not an [`ApiError`]).

use serde::{Deserialize, Serialize};

use crate::FileMeta;

/// Machine-readable error codes of the REST API. The UI and client match on these, never on
/// the message text. Each code has exactly one HTTP status ([`ErrorCode::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    InvalidPath,
    /// Missing, malformed or expired token.
    Unauthorized,
    /// A device-bound token acting for another device.
    Forbidden,
    NotFound,
    /// The path has no such method (the `Allow` header lists those it has).
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    /// The body is not declared as what the operation takes (`Content-Type`).
    UnsupportedMediaType,
    /// The device was revoked ("unlinked"): its tokens are refused and it cannot be registered
    /// again; sign in again as a new device; retrying with the same device id never succeeds.
    DeviceRevoked,
    /// The account signed out everywhere after this token was issued: sign in again (the
    /// device stays linked).
    SignedOut,
    /// A commit names chunks the server does not hold (listed in `missing`): upload them first.
    MissingChunks,
    /// Uploaded bytes do not hash to the id they were sent under, or a commit's size or hash
    /// does not match its chunks.
    HashMismatch,
    /// The range of a `Range` request is outside the content.
    RangeNotSatisfiable,
    /// The push socket's connection cannot be upgraded to a WebSocket.
    UpgradeRequired,
    /// The commit would take the account past its storage quota.
    QuotaExceeded,
    /// The request's body stopped arriving (nothing for the server's body timeout): send the
    /// request again.
    RequestTimeout,
    /// The client's address already holds the server's maximum of open connections (before
    /// any route): close some and retry after `Retry-After` seconds.
    TooManyConnections,
    /// The account's uploaded, not yet committed chunks are at the server's limit: commit the
    /// files they belong to, or retry after `Retry-After` seconds, when the oldest expire.
    StagedLimit,
    Internal,
    /// A service this request needs (e.g. the revocation list) cannot be reached; retry.
    Unavailable,
}

impl ErrorCode {
    /// Every code, in the order of the enum.
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::BadRequest,
        ErrorCode::InvalidPath,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::DeviceRevoked,
        ErrorCode::SignedOut,
        ErrorCode::MissingChunks,
        ErrorCode::HashMismatch,
        ErrorCode::RangeNotSatisfiable,
        ErrorCode::UpgradeRequired,
        ErrorCode::QuotaExceeded,
        ErrorCode::RequestTimeout,
        ErrorCode::TooManyConnections,
        ErrorCode::StagedLimit,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
    ];

    /// The HTTP status of every answer that carries this code — the one table.
    pub const fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::InvalidPath
            | ErrorCode::MissingChunks
            | ErrorCode::HashMismatch => 400,
            // What the client relies on: its tokens are no longer good (0027).
            ErrorCode::Unauthorized | ErrorCode::DeviceRevoked | ErrorCode::SignedOut => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::RangeNotSatisfiable => 416,
            ErrorCode::UpgradeRequired => 426,
            ErrorCode::TooManyConnections | ErrorCode::StagedLimit => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
            ErrorCode::QuotaExceeded => 507,
        }
    }

    /// The code for an error status the framework chose (an unknown route, a rejected
    /// extractor): the general code of that status in the table, else `bad_request` for a
    /// 4xx and `internal` for a 5xx.
    pub fn for_status(status: u16) -> ErrorCode {
        match status {
            401 => ErrorCode::Unauthorized,
            403 => ErrorCode::Forbidden,
            404 => ErrorCode::NotFound,
            405 => ErrorCode::MethodNotAllowed,
            408 => ErrorCode::RequestTimeout,
            409 => ErrorCode::Conflict,
            413 => ErrorCode::PayloadTooLarge,
            415 => ErrorCode::UnsupportedMediaType,
            416 => ErrorCode::RangeNotSatisfiable,
            426 => ErrorCode::UpgradeRequired,
            429 => ErrorCode::TooManyConnections,
            503 => ErrorCode::Unavailable,
            507 => ErrorCode::QuotaExceeded,
            s if s >= 500 => ErrorCode::Internal,
            _ => ErrorCode::BadRequest,
        }
    }
}

/// Body of every non-2xx JSON response of the REST API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ErrorBody {
    pub error: ErrorCode,
    pub message: String,
    /// For `conflict`: the file's current metadata, so the client can decide without a round trip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<FileMeta>,
    /// For `missing_chunks`: the chunk ids to upload before committing again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

/// The one error of the REST API: every service's error becomes one of these, answered with
/// its code's status and an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub current: Option<Box<FileMeta>>,
    pub missing: Vec<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            current: None,
            missing: Vec::new(),
        }
    }

    /// An internal error: its details are logged by the service, never sent.
    pub fn internal() -> Self {
        ApiError::new(ErrorCode::Internal, "internal server error")
    }

    /// A `conflict` carrying the file's current metadata.
    pub fn conflict(message: impl Into<String>, current: Option<FileMeta>) -> Self {
        ApiError {
            current: current.map(Box::new),
            ..ApiError::new(ErrorCode::Conflict, message)
        }
    }

    /// `missing_chunks`, listing them.
    pub fn missing_chunks(message: impl Into<String>, missing: Vec<String>) -> Self {
        ApiError {
            missing,
            ..ApiError::new(ErrorCode::MissingChunks, message)
        }
    }

    /// The HTTP status, from the one table.
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    pub fn into_body(self) -> ErrorBody {
        ErrorBody {
            error: self.code,
            message: self.message,
            current: self.current.map(|c| *c),
            missing: self.missing,
        }
    }
}

impl From<ErrorBody> for ApiError {
    fn from(b: ErrorBody) -> Self {
        ApiError {
            code: b.error,
            message: b.message,
            current: b.current.map(Box::new),
            missing: b.missing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_one_status_and_a_framework_status_finds_its_code() {
        for code in ErrorCode::ALL {
            let status = code.status();
            assert!((400..600).contains(&status), "{code:?}");
            // A status the framework answers with is given the general code of that status.
            assert_eq!(ErrorCode::for_status(status).status(), status, "{code:?}");
        }
        assert_eq!(ErrorCode::for_status(422), ErrorCode::BadRequest);
        assert_eq!(ErrorCode::for_status(502), ErrorCode::Internal);
        assert_eq!(ErrorCode::DeviceRevoked.status(), 401);
    }

    #[test]
    fn codes_are_snake_case_on_the_wire() {
        let check = |code: ErrorCode, wire: &str| {
            assert_eq!(serde_json::to_value(code).unwrap(), wire);
        };
        check(ErrorCode::DeviceRevoked, "device_revoked");
        check(ErrorCode::SignedOut, "signed_out");
        check(ErrorCode::UnsupportedMediaType, "unsupported_media_type");
        check(ErrorCode::TooManyConnections, "too_many_connections");
        let all: Vec<_> = ErrorCode::ALL
            .iter()
            .map(|c| serde_json::to_value(c).unwrap())
            .collect();
        let unique: std::collections::BTreeSet<_> = all.iter().map(|v| v.to_string()).collect();
        assert_eq!(unique.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn an_api_error_is_its_body_on_the_wire() {
        let body = ApiError::missing_chunks("2 missing", vec!["a".into(), "b".into()]).into_body();
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"error": "missing_chunks", "message": "2 missing", "missing": ["a", "b"]})
        );
        let body = ApiError::internal().into_body();
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":"internal","message":"internal server error"}"#
        );
    }
}
