//! The one place an [`ApiError`] becomes an HTTP response: the status from the one table
//! ([`ErrorCode::status`]), the JSON [`ErrorBody`](syncsphere_protocol::ErrorBody), and the
//! headers a status requires (`WWW-Authenticate` on a 401). Every service's error converts
//! into an [`ApiError`] and is answered here; the Cognito JSON API keeps Cognito's shape.

use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use syncsphere_protocol::{ApiError, ErrorCode};

/// An [`ApiError`] as an axum response (the orphan rule keeps `IntoResponse` off the
/// protocol type itself).
#[derive(Debug)]
pub struct ApiResponse(pub ApiError);

impl From<ApiError> for ApiResponse {
    fn from(e: ApiError) -> Self {
        ApiResponse(e)
    }
}

impl IntoResponse for ApiResponse {
    fn into_response(self) -> Response {
        respond(self.0)
    }
}

/// The response for `err`.
pub fn respond(err: ApiError) -> Response {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(err.into_body())).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// A JSON body the extractor refused: over the body limit `payload_too_large`, not declared
/// as JSON `unsupported_media_type`, anything else (syntax, shape) `bad_request`.
pub fn json_rejection(e: JsonRejection) -> ApiError {
    let code = match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        _ => ErrorCode::BadRequest,
    };
    ApiError::new(code, e.body_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_is_the_codes_and_a_401_challenges() {
        for code in ErrorCode::ALL {
            let r = respond(ApiError::new(code, "m"));
            assert_eq!(r.status().as_u16(), code.status(), "{code:?}");
            assert_eq!(
                r.headers().contains_key(header::WWW_AUTHENTICATE),
                code.status() == 401,
                "{code:?}"
            );
            assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        }
    }
}
