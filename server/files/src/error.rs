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
            FilesError::NotFound => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            FilesError::Conflict { .. } => (StatusCode::CONFLICT, ErrorCode::Conflict),
            FilesError::Store(_) | FilesError::Blob(_) => {
                tracing::error!(error = %self, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal)
            }
        };
        let message = match code {
            ErrorCode::Internal => "internal server error".to_owned(),
            _ => self.to_string(),
        };
        let current = match self {
            FilesError::Conflict { current, .. } => current.map(|c| *c),
            _ => None,
        };
        (
            status,
            axum::Json(ErrorBody {
                error: code,
                message,
                current,
            }),
        )
            .into_response()
    }
}
