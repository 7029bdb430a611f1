//! Errors of the File Management Service, and what each is as the one [`ApiError`] (whose
//! status comes from the protocol's table).

use axum::response::{IntoResponse, Response};
use syncsphere_protocol::{ApiError, ErrorCode, FileMeta, PathError};

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

impl From<FilesError> for ApiError {
    fn from(e: FilesError) -> Self {
        let code = match &e {
            FilesError::InvalidPath(_) => ErrorCode::InvalidPath,
            FilesError::BadRequest(_) => ErrorCode::BadRequest,
            FilesError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            FilesError::NotFound => ErrorCode::NotFound,
            FilesError::Conflict { .. } => ErrorCode::Conflict,
            FilesError::MissingChunks(_) => ErrorCode::MissingChunks,
            FilesError::HashMismatch(_) => ErrorCode::HashMismatch,
            FilesError::TooLarge(_) => ErrorCode::PayloadTooLarge,
            FilesError::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            FilesError::RangeNotSatisfiable { .. } => ErrorCode::RangeNotSatisfiable,
            FilesError::Store(_) | FilesError::Blob(_) => {
                tracing::error!(error = %e, "internal error");
                return ApiError::internal();
            }
        };
        let message = e.to_string();
        match e {
            FilesError::Conflict { current, .. } => ApiError {
                current,
                ..ApiError::new(code, message)
            },
            FilesError::MissingChunks(missing) => ApiError::missing_chunks(message, missing),
            _ => ApiError::new(code, message),
        }
    }
}

impl IntoResponse for FilesError {
    fn into_response(self) -> Response {
        let content_range = match &self {
            FilesError::RangeNotSatisfiable { size } => Some(format!("bytes */{size}")),
            _ => None,
        };
        let mut response = syncsphere_auth::api_error::respond(self.into());
        if let Some(v) = content_range.and_then(|v| v.parse().ok()) {
            response
                .headers_mut()
                .insert(axum::http::header::CONTENT_RANGE, v);
        }
        response
    }
}
