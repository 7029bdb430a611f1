//! Every error of the assembled server is a JSON `ErrorBody` with the status `openapi.json`
//! gives — the framework's answers included: unknown routes and methods, and the extractors'
//! rejections (JSON, path, query, content type, body size, WebSocket upgrade). The Cognito
//! API's errors stay Cognito-shaped.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use syncsphere_server::{AppConfig, NO_ROUTE, build};
use tower::ServiceExt;

struct Server {
    app: Router,
    token: String,
    _dir: tempfile::TempDir,
}

async fn cognito(app: &Router, op: &str, body: Value) -> Value {
    let resp = app
        .clone()
        .oneshot(
            Request::post("/auth/cognito/")
                .header("content-type", "application/x-amz-json-1.1")
                .header(
                    "x-amz-target",
                    format!("AWSCognitoIdentityProviderService.{op}"),
                )
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{op}");
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let config = AppConfig::embedded(dir.path().to_path_buf(), "http://127.0.0.1:9".into());
    let app = build(&config).await.unwrap().router;
    let (client, user) = (config.idp.client_id.as_str(), "errors@example.com");
    cognito(
        &app,
        "SignUp",
        json!({"ClientId": client, "Username": user, "Password": "Password-123"}),
    )
    .await;
    let auth = cognito(
        &app,
        "InitiateAuth",
        json!({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": client,
               "AuthParameters": {"USERNAME": user, "PASSWORD": "Password-123"}}),
    )
    .await;
    let token = auth["AuthenticationResult"]["AccessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    Server {
        app,
        token,
        _dir: dir,
    }
}

struct Reply {
    status: StatusCode,
    content_type: String,
    headers: axum::http::HeaderMap,
    json: Value,
}

impl Server {
    async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            content_type,
            headers,
            json,
        }
    }

    /// A request signed in as the test's user (`headers` as `name: value`).
    fn request(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Request<Body> {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {}", self.token));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.body(body).unwrap()
    }

    /// Sends the request and checks that the answer is an `ErrorBody` with `status` and `code`.
    async fn check(&self, req: Request<Body>, status: StatusCode, code: &str) -> Reply {
        let what = format!("{} {}", req.method(), req.uri());
        let r = self.send(req).await;
        assert_eq!(r.status, status, "{what}: {}", r.json);
        assert_eq!(r.content_type, "application/json", "{what}: {}", r.json);
        assert_eq!(r.json["error"], code, "{what}: {}", r.json);
        assert!(
            r.json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {}",
            r.json
        );
        r
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");

/// Method, path, headers, body, and the status and code it must get.
type BodyCase = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
    String,
    StatusCode,
    &'static str,
);

#[tokio::test]
async fn unknown_routes_and_methods_are_json() {
    let s = server().await;
    for uri in [
        "/nowhere",
        "/v1/files/a/b/c",
        "/v1/",
        "/local_other/.well-known/jwks.json",
    ] {
        let r = s
            .check(
                s.request("GET", uri, &[], Body::empty()),
                StatusCode::NOT_FOUND,
                "not_found",
            )
            .await;
        assert!(r.json["message"].as_str().unwrap().starts_with(NO_ROUTE));
    }
    for (method, uri, allow) in [
        ("POST", "/v1/files", "GET"),
        ("PATCH", "/v1/devices/laptop", "PUT,DELETE"),
        ("GET", "/v1/files/commit", "POST"),
        ("DELETE", "/v1/ws", "GET"),
        ("GET", "/auth/cognito", "POST"),
    ] {
        let r = s
            .check(
                s.request(method, uri, &[], Body::empty()),
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            )
            .await;
        let allowed = r.headers[header::ALLOW].to_str().unwrap().replace(' ', "");
        for m in allow.split(',') {
            assert!(allowed.contains(m), "{method} {uri}: Allow {allowed}");
        }
    }
}

#[tokio::test]
async fn json_body_rejections_are_json_with_their_status() {
    let s = server().await;
    let big = format!("{{\"chunks\": [\"{}\"]}}", "0".repeat(3 * 1024 * 1024));
    let cases: Vec<BodyCase> = vec![
        // Not JSON at all, or not the shape.
        (
            "POST",
            "/v1/files/commit",
            vec![JSON],
            "{not json".into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "POST",
            "/v1/files/commit",
            vec![JSON],
            "{}".into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "POST",
            "/v1/chunks/missing",
            vec![JSON],
            r#"{"chunks": "x"}"#.into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "POST",
            "/v1/files/f/move",
            vec![JSON],
            r#"{"new_path": "a", "parent_rev": 1.5}"#.into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/devices/laptop",
            vec![JSON],
            "\u{0}".into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        // An array is not an object, though serde would take it for the struct.
        (
            "PUT",
            "/v1/devices/laptop",
            vec![JSON],
            "[null, null]".into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "POST",
            "/v1/files/f/move",
            vec![JSON],
            r#"["a", 1]"#.into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "POST",
            "/v1/files/f/restore",
            vec![JSON],
            "[1, 1]".into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        // Not said to be JSON.
        (
            "POST",
            "/v1/files/commit",
            vec![],
            "{}".into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/v1/files/f/restore",
            vec![("content-type", "text/plain")],
            r#"{"rev": 1, "parent_rev": 1}"#.into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "PUT",
            "/v1/devices/laptop",
            vec![],
            "{}".into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        // Over the body limit.
        (
            "POST",
            "/v1/chunks/missing",
            vec![JSON],
            big.clone(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "PUT",
            "/v1/devices/laptop",
            vec![JSON],
            big,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (method, uri, headers, body, status, code) in cases {
        s.check(
            s.request(method, uri, &headers, Body::from(body)),
            status,
            code,
        )
        .await;
    }
}

#[tokio::test]
async fn path_and_query_rejections_are_json() {
    let s = server().await;
    for (method, uri) in [
        // Path segments that are not UTF-8 once decoded.
        ("GET", "/v1/files/%FF"),
        ("DELETE", "/v1/devices/%C3%28"),
        // Query strings the handler cannot take.
        ("DELETE", "/v1/files/f"),
        ("DELETE", "/v1/files/f?parent_rev=one"),
        ("GET", "/v1/files/f/content?rev=null"),
        ("GET", "/v1/changes?cursor=abc"),
        ("PUT", "/v1/files/content"),
        // What the handlers check themselves.
        ("DELETE", "/v1/devices/has%20space"),
        ("PUT", "/v1/chunks/not-a-chunk-id"),
    ] {
        s.check(
            s.request(method, uri, &[], Body::empty()),
            StatusCode::BAD_REQUEST,
            "bad_request",
        )
        .await;
    }
}

#[tokio::test]
async fn a_push_socket_request_that_is_no_upgrade_is_json() {
    let s = server().await;
    // A token that is present must be valid, whatever else is wrong.
    let r = s
        .send(
            Request::get("/v1/ws")
                .header("authorization", "Bearer forged")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.json);
    assert_eq!(r.json["error"], "unauthorized");
    // Without a token (browsers send it in a first message) or with a good one: not an upgrade.
    s.check(
        Request::get("/v1/ws").body(Body::empty()).unwrap(),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    s.check(
        s.request("GET", "/v1/ws", &[], Body::empty()),
        StatusCode::BAD_REQUEST,
        "bad_request",
    )
    .await;
    // Every upgrade header right, but `oneshot` has no connection to hand over.
    let upgrade = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    s.check(
        s.request("GET", "/v1/ws", &upgrade, Body::empty()),
        StatusCode::UPGRADE_REQUIRED,
        "upgrade_required",
    )
    .await;
}

#[tokio::test]
async fn request_integers_may_be_written_with_a_zero_fraction() {
    let s = server().await;
    let r = s
        .send(s.request("PUT", "/v1/files/content?path=a.txt", &[], Body::from("x")))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let id = r.json["file_id"].as_str().unwrap().to_owned();
    let r = s
        .send(s.request(
            "POST",
            &format!("/v1/files/{id}/move"),
            &[JSON],
            Body::from(r#"{"new_path": "b.txt", "parent_rev": 1.0}"#),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        (r.json["path"].as_str(), r.json["rev"].as_i64()),
        (Some("b.txt"), Some(2))
    );
}

#[tokio::test]
async fn cognito_errors_stay_cognito_shaped() {
    let s = server().await;
    let r = s
        .send(
            Request::post("/auth/cognito/")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.content_type, "application/x-amz-json-1.1");
    assert_eq!(r.json["__type"], "UnknownOperationException", "{}", r.json);
}
