//! The OpenAPI document and the routers agree: every route the source registers is described
//! (path and method), and every described operation is routed by the assembled server.

use std::collections::BTreeSet;
use std::path::Path;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use syncsphere_server::{AppConfig, NO_ROUTE, OPENAPI_JSON, build};
use tower::ServiceExt;

fn documented() -> (serde_json::Value, BTreeSet<(String, String)>) {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.insert((path.clone(), method.to_uppercase()));
        }
    }
    (doc, ops)
}

/// Paths registered through a constant or a computed value, as the document writes them.
fn resolve(arg: &str) -> String {
    match arg {
        a if a.starts_with('"') => a.trim_matches('"').to_owned(),
        "COGNITO_API_PATH" => "/auth/cognito".into(),
        "&format!(\"{COGNITO_API_PATH}/\")" => "/auth/cognito/".into(),
        "&jwks_path" => "/{user_pool_id}/.well-known/jwks.json".into(),
        other => panic!("route registered with `{other}`: teach tests/openapi.rs what path it is"),
    }
}

/// Every `.route(PATH, METHODS)` call in the server crates' sources.
fn registered() -> BTreeSet<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = BTreeSet::new();
    let mut files = Vec::new();
    for krate in std::fs::read_dir(&root).unwrap().flatten() {
        let src = krate.path().join("src");
        if src.is_dir() {
            collect_rs(&src, &mut files);
        }
    }
    let method_re = ["get(", "post(", "put(", "delete(", "patch("];
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            // The call's text up to its closing parenthesis.
            let (mut depth, mut end) = (1, 0);
            for (i, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = i;
                    break;
                }
            }
            let call = &rest[..end];
            let (arg, methods) = split_first_arg(call);
            let path = resolve(arg.trim());
            for m in method_re {
                let mut search = methods;
                while let Some(pos) = search.find(m) {
                    let before = methods[..methods.len() - search.len() + pos].chars().last();
                    if before.is_none_or(|c| !c.is_alphanumeric() && c != '_') {
                        found.insert((path.clone(), m.trim_end_matches('(').to_uppercase()));
                    }
                    search = &search[pos + m.len()..];
                }
            }
        }
    }
    found
}

fn split_first_arg(call: &str) -> (&str, &str) {
    let mut depth = 0;
    for (i, c) in call.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => return (&call[..i], &call[i + 1..]),
            _ => {}
        }
    }
    (call, "")
}

fn collect_rs(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            collect_rs(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_registered_route_is_documented() {
    let (_, documented) = documented();
    let registered = registered();
    assert!(registered.len() >= 20, "found only {registered:?}");
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.json: {undocumented:?}"
    );
}

#[test]
fn every_schema_reference_resolves() {
    let (doc, _) = documented();
    fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                    out.push(r.to_owned());
                }
                m.values().for_each(|v| refs(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .expect("local schema ref");
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling {r}"
        );
    }
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let config = AppConfig::embedded(dir.path().to_path_buf(), "http://127.0.0.1:9".into());
    let app = build(&config).await.unwrap().router;
    let (_, documented) = documented();
    for (path, method) in documented {
        let uri = path
            .replace("{user_pool_id}", &config.idp.user_pool_id)
            .replace("{sha256}", &"0".repeat(64))
            .replace("{file_id}", "no-such-file")
            .replace("{device_id}", "no-such-device");
        let req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(&uri)
            .body(Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let unrouted = json["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(NO_ROUTE));
        assert!(
            !(status == StatusCode::NOT_FOUND && unrouted),
            "{method} {path} is documented but not routed"
        );
    }
    // And the document is served.
    let resp = app
        .oneshot(
            Request::get("/v1/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], OPENAPI_JSON.as_bytes());
}
