//! Every error the assembled server answers is a JSON [`ErrorBody`], as `openapi.json`
//! promises — the framework's own answers included: an unknown route (404), a method a route
//! does not have (405, with its `Allow` header), and any extractor rejection a handler did not
//! turn into its service's error itself (a path that is not UTF-8, a WebSocket upgrade that is
//! not one, …). The services map their own errors (`FilesError`, `DeviceError`, `AuthRejection`);
//! this layer is the guarantee for what slips past them. It keeps the status and headers and
//! only replaces a body that is not JSON, with the code [`ErrorCode::for_status`] gives. The
//! Cognito API's errors are Cognito-shaped JSON (`application/x-amz-json-1.1`) and stay so.

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::Response;
use syncsphere_protocol::{ApiError, ErrorCode};

/// Message of the 404 for a path no route has (tests tell it from a route's own 404 by it).
pub const NO_ROUTE: &str = "no route for";

/// Longest non-JSON error body carried over into the message.
const MAX_MESSAGE_BYTES: usize = 1024;

/// The router's fallback: a JSON 404 naming what was asked for.
pub(crate) async fn no_route(method: Method, uri: Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        format!("{NO_ROUTE} {method} {}", uri.path()),
    )
}

/// An error answer the framework chose the status of: the code the table gives that status.
fn error_response(status: StatusCode, message: String) -> Response {
    let code = ErrorCode::for_status(status.as_u16());
    let mut response = syncsphere_auth::api_error::respond(ApiError::new(code, message));
    // The framework's status stands even where the code's general one differs (a 422).
    *response.status_mut() = status;
    response
}

fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.eq_ignore_ascii_case("application/x-amz-json-1.1")
        || essence.to_ascii_lowercase().ends_with("+json")
}

/// Middleware: an error response whose body is not JSON gets an [`ErrorBody`] instead.
pub(crate) async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || is_json(response.headers().get(header::CONTENT_TYPE))
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_MESSAGE_BYTES)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let message = match (text, status.is_server_error()) {
        (Some(text), false) => text,
        _ => status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase(),
    };
    let json = error_response(status, message);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let (_, body) = json.into_parts();
    Response::from_parts(parts, body)
}
