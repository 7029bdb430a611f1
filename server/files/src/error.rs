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
        "storage quota exceeded: {used} of {quota} bytes used by files{}, this needs {needed} more; delete files or ask for more space",
        if *.staged > 0 { format!(" and {} by uploads not committed yet", .staged) } else { String::new() }
    )]
    QuotaExceeded {
        used: i64,
        /// Bytes of chunks uploaded and not yet committed (see [`crate::store::staged`]).
        staged: i64,
        quota: i64,
        needed: i64,
    },
    /// The user's uploaded, uncommitted chunks are at the server's limit (HTTP 429 with
    /// `Retry-After`; see [`crate::store::staged`]).
    #[error(
        "{staged} bytes of chunks were uploaded and not committed yet, and this server holds at most {limit} per user: commit the files they belong to, or retry in {retry_after_secs} s when the oldest expire"
    )]
    StagedLimit {
        staged: i64,
        limit: i64,
        retry_after_secs: u64,
    },
    /// Busy for a moment (HTTP 503 with `Retry-After`): a commit waited too long for the
    /// garbage collector's lock.
    #[error("{0}")]
    Unavailable(String),
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
            FilesError::StagedLimit { .. } => ErrorCode::StagedLimit,
            FilesError::Unavailable(_) => ErrorCode::Unavailable,
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
        use axum::http::header::{CONTENT_RANGE, RETRY_AFTER};
        let header = match &self {
            FilesError::RangeNotSatisfiable { size } => {
                Some((CONTENT_RANGE, format!("bytes */{size}")))
            }
            FilesError::StagedLimit {
                retry_after_secs, ..
            } => Some((RETRY_AFTER, retry_after_secs.to_string())),
            FilesError::Unavailable(_) => Some((RETRY_AFTER, "5".to_owned())),
            _ => None,
        };
        let mut response = syncsphere_auth::api_error::respond(self.into());
        if let Some((name, value)) = header
            && let Ok(value) = value.parse()
        {
            response.headers_mut().insert(name, value);
        }
        response
    }
}
