//! Errors of the File Management Service, and their HTTP mapping (the service's edge).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use syncsphere_protocol::{ErrorBody, ErrorCode, FileMeta, PathError};

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("invalid path: {0}")]
    InvalidPath(#[from] PathError),
    #[error("{0}")]
    BadRequest(String),
    /// A body that does not say it is what the operation takes (HTTP 415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("file not found")]
    NotFound,
    #[error("{message}")]
    Conflict {
        message: String,
        current: Option<Box<FileMeta>>,
    },
    #[error("metadata store failed: {0}")]
    Store(#[from] sqlx::Error),
    #[error("blob store failed: {0}")]
    Blob(#[from] std::io::Error),
    #[error("{} chunk(s) are not uploaded yet", .0.len())]
    MissingChunks(Vec<String>),
    #[error("{0}")]
    HashMismatch(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("range not satisfiable (content is {size} bytes)")]
    RangeNotSatisfiable { size: i64 },
    #[error(
        "storage quota exceeded: {used} of {quota} bytes used, this needs {needed} more; delete files or ask for more space"
    )]
    QuotaExceeded { used: i64, quota: i64, needed: i64 },
}

impl FilesError {
    pub(crate) fn conflict(message: impl Into<String>, current: Option<FileMeta>) -> Self {
        FilesError::Conflict {
            message: message.into(),
            current: current.map(Box::new),
        }
    }
}

impl IntoResponse for FilesError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            FilesError::InvalidPath(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidPath),
            FilesError::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            FilesError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, ErrorCode::BadRequest)
            }
            FilesError::NotFound => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            FilesError::Conflict { .. } => (StatusCode::CONFLICT, ErrorCode::Conflict),
            FilesError::MissingChunks(_) => (StatusCode::BAD_REQUEST, ErrorCode::MissingChunks),
            FilesError::HashMismatch(_) => (StatusCode::BAD_REQUEST, ErrorCode::HashMismatch),
            FilesError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge),
            FilesError::QuotaExceeded { .. } => {
                (StatusCode::INSUFFICIENT_STORAGE, ErrorCode::QuotaExceeded)
            }
            FilesError::RangeNotSatisfiable { .. } => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorCode::RangeNotSatisfiable,
            ),
            FilesError::Store(_) | FilesError::Blob(_) => {
                tracing::error!(error = %self, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal)
            }
        };
        let message = match code {
            ErrorCode::Internal => "internal server error".to_owned(),
            _ => self.to_string(),
        };
        let content_range = match &self {
            FilesError::RangeNotSatisfiable { size } => Some(format!("bytes */{size}")),
            _ => None,
        };
        let (current, missing) = match self {
            FilesError::Conflict { current, .. } => (current.map(|c| *c), Vec::new()),
            FilesError::MissingChunks(missing) => (None, missing),
            _ => (None, Vec::new()),
        };
        let mut response = (
            status,
            axum::Json(ErrorBody {
                error: code,
                message,
                current,
                missing,
            }),
        )
            .into_response();
        if let Some(v) = content_range.and_then(|v| v.parse().ok()) {
            response
                .headers_mut()
                .insert(axum::http::header::CONTENT_RANGE, v);
        }
        response
    }
}
