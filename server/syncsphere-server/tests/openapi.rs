//! The OpenAPI document is generated from the protocol (its endpoint descriptions and types,
//! with `server/protocol/openapi-overlay.json` laid over them): the committed `openapi.json` is
//! exactly that output. It also describes exactly the protocol's endpoints (path, method,
//! `operationId`, request and response schemas), every described operation is routed by the
//! assembled server, and the routers mount endpoint descriptions only (no path written out
//! again).

use std::collections::BTreeSet;
use std::path::Path;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use syncsphere_protocol::endpoint;
use syncsphere_server::{AppConfig, NO_ROUTE, OPENAPI_JSON, build};
use tower::ServiceExt;

/// `openapi.json` is what the protocol generates. After changing a wire type, an endpoint or
/// the overlay, write it again with `UPDATE_OPENAPI=1 cargo test -p syncsphere-server --test
/// openapi`.
#[test]
fn the_committed_document_is_the_generated_one() {
    let generated = syncsphere_protocol::openapi::document_text()
        .unwrap_or_else(|e| panic!("the overlay contradicts the code:\n{e}"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    assert!(
        OPENAPI_JSON == generated,
        "openapi.json is not what the protocol generates: run \
         UPDATE_OPENAPI=1 cargo test -p syncsphere-server --test openapi, and review the diff"
    );
}

fn documented() -> (Value, BTreeSet<(String, String)>) {
    let doc: Value = serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.insert((path.clone(), method.to_uppercase()));
        }
    }
    (doc, ops)
}

/// The last segment of a type's full name (`syncsphere_protocol::api::FileMeta` → `FileMeta`).
fn short(type_name: &str) -> &str {
    type_name.rsplit("::").next().unwrap_or(type_name)
}

#[test]
fn the_document_describes_exactly_the_endpoints() {
    let (doc, documented) = documented();
    let described: BTreeSet<(String, String)> = endpoint::ALL
        .iter()
        .map(|d| (d.path.to_owned(), d.method.as_str().to_owned()))
        .collect();
    assert_eq!(
        described.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "endpoints missing from openapi.json"
    );
    assert_eq!(
        documented.difference(&described).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "operations of openapi.json that are no endpoint description"
    );
    for d in endpoint::ALL {
        let op = &doc["paths"][d.path][d.method.as_str().to_lowercase()];
        assert_eq!(op["operationId"], d.operation_id, "{d:?}");
        let request = &op["requestBody"]["content"];
        match short((d.request)()) {
            "()" => assert!(request.is_null(), "{d:?} has no body"),
            "Bytes" => assert!(!request["application/octet-stream"].is_null(), "{d:?}"),
            "External" => assert!(!request.is_null(), "{d:?}"),
            name => assert_eq!(
                request["application/json"]["schema"]["$ref"],
                format!("#/components/schemas/{name}"),
                "{d:?}"
            ),
        }
        let ok: Vec<&Value> = op["responses"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(status, _)| status.starts_with('2'))
            .map(|(_, r)| r)
            .collect();
        match short((d.response)()) {
            "()" => assert!(ok.iter().all(|r| r["content"].is_null()), "{d:?}"),
            "Bytes" | "External" => {}
            name => assert!(
                ok.iter()
                    .any(|r| r["content"]["application/json"]["schema"]["$ref"]
                        == format!("#/components/schemas/{name}").as_str()),
                "{d:?} answers {name}"
            ),
        }
        let query: BTreeSet<&str> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query")
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(
            query.is_empty(),
            (d.query)() == "()",
            "{d:?}: query {query:?}"
        );
    }
}

/// Every `.route(` call in the server crates' sources mounts an endpoint description — but API
/// Gateway's WebSocket integrations (`apigw::*_PATH`: only the gateway calls them, with a shared
/// secret; README "AWS mode", decision 0042), which are not part of the public API.
#[test]
fn routers_mount_endpoint_descriptions_only() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for krate in std::fs::read_dir(&root).unwrap().flatten() {
        let src = krate.path().join("src");
        if src.is_dir() {
            collect_rs(&src, &mut files);
        }
    }
    let mut routes = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices(".route(") {
            let arg = text[at + ".route(".len()..]
                .trim_start()
                .split(',')
                .next()
                .unwrap_or("");
            routes += 1;
            assert!(
                arg.ends_with("::PATH")
                    || arg == "&jwks_path"
                    || (arg.starts_with("apigw::") && arg.ends_with("_PATH")),
                "{}: `.route({arg}, …)` — mount an endpoint of syncsphere_protocol::endpoint",
                file.display()
            );
        }
    }
    assert!(routes >= 3, "found only {routes} .route( calls");
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
fn every_schema_reference_resolves() {
    let (doc, _) = documented();
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                    out.push(r.to_owned());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
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
