//! The OpenAPI document, generated (feature `openapi`).
//!
//! What the code knows comes from the code: every operation's path, method and `operationId`
//! from [`endpoint::ALL`]; its path and query parameters, its JSON request body and its JSON
//! success body from the endpoint's types; every JSON error body is [`ErrorBody`]; and
//! `components.schemas` are the JSON Schemas of the types themselves (fields, types, which are
//! required, which may be null, enums). What the code cannot know is written in
//! `openapi-overlay.json` beside this crate and laid over the generated facts: prose
//! (summaries, descriptions), which statuses an operation answers, the bounds and patterns the
//! server enforces, links, headers, and the bodies that are not ours (octets, Cognito's API,
//! JWKS, metrics).
//!
//! **Invariant**: the overlay may add to the facts and reword their descriptions, never
//! contradict them: a value of the overlay that differs from a generated one (other than a
//! `description`, `summary` or `title`) fails [`document`], as do an operation, parameter or
//! schema the code does not have.

use std::any::TypeId;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::ErrorBody;
use crate::endpoint::{self, Bytes, Endpoint, External};

/// The overlay: what the document says that the code cannot.
pub const OVERLAY: &str = include_str!("../openapi-overlay.json");

/// One body of an operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    None,
    /// Raw octets: described by the overlay.
    Bytes,
    /// Another specification's: described by the overlay.
    External,
    /// JSON of this schema (a `$ref` for a named type).
    Json(Value),
}

/// The JSON Schemas of one endpoint's types.
#[derive(Debug, Clone, PartialEq)]
pub struct Shapes {
    /// The query type's object schema, if the endpoint has a query.
    pub query: Option<Value>,
    pub request: Body,
    pub response: Body,
}

fn body<T: JsonSchema + 'static>(g: &mut SchemaGenerator) -> Body {
    let t = TypeId::of::<T>();
    if t == TypeId::of::<()>() {
        Body::None
    } else if t == TypeId::of::<Bytes>() {
        Body::Bytes
    } else if t == TypeId::of::<External>() {
        Body::External
    } else {
        Body::Json(g.subschema_for::<T>().to_value())
    }
}

/// The shapes of endpoint `E` (what [`endpoint::Description::schemas`] points at).
pub fn shapes<E: Endpoint>(g: &mut SchemaGenerator) -> Shapes {
    let query = (TypeId::of::<E::Query>() != TypeId::of::<()>())
        .then(|| <E::Query as JsonSchema>::json_schema(g).to_value());
    Shapes {
        query,
        request: body::<E::Request>(g),
        response: body::<E::Response>(g),
    }
}

/// The `{name}` segments of a path template, in order.
fn path_parameters(template: &str) -> impl Iterator<Item = &str> {
    template
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
}

/// A query string has no null: an optional parameter is one that may be left out.
fn not_null(mut schema: Value) -> Value {
    if let Some(types) = schema["type"].as_array() {
        let types: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        schema["type"] = match <[Value; 1]>::try_from(types) {
            Ok([one]) => one,
            Err(many) => many.into(),
        };
    }
    schema
}

/// The facts of the document: everything the code knows. `statuses` gives, per path and
/// method, the statuses the overlay documents (the code knows what a success and an error
/// carry, not which statuses an operation answers).
pub fn generated(statuses: impl Fn(&str, &str) -> Vec<String>) -> Value {
    let mut g = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    let error = g.subschema_for::<ErrorBody>().to_value();
    // The header lines of the framed octet bodies (`uploadFiles`, `downloadContents`): no
    // endpoint type names them, the overlay's prose does.
    g.subschema_for::<crate::UploadFrame>();
    g.subschema_for::<crate::ContentFrame>();
    let mut paths = Map::new();
    for d in endpoint::ALL {
        let shapes = (d.schemas)(&mut g);
        let method = d.method.as_str().to_lowercase();
        let mut op = Map::new();
        op.insert("operationId".into(), d.operation_id.into());
        let mut parameters: Vec<Value> = path_parameters(d.path)
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if let Some(query) = &shapes.query {
            let required: Vec<&str> = query["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for (name, schema) in query["properties"].as_object().into_iter().flatten() {
                parameters.push(json!({
                    "name": name,
                    "in": "query",
                    "required": required.contains(&name.as_str()),
                    "schema": not_null(schema.clone()),
                }));
            }
        }
        if !parameters.is_empty() {
            op.insert("parameters".into(), parameters.into());
        }
        if let Body::Json(schema) = &shapes.request {
            op.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"application/json": {"schema": schema}}}),
            );
        }
        let mut responses = Map::new();
        for status in statuses(d.path, &method) {
            let code: u16 = status.parse().unwrap_or(0);
            let content = match &shapes.response {
                Body::Json(schema) if (200..300).contains(&code) => Some(schema),
                // Every error of ours is an ErrorBody; another specification's API answers
                // in its own shape.
                _ if code >= 400 && shapes.request != Body::External => Some(&error),
                _ => None,
            };
            let response = match content {
                Some(schema) => json!({"content": {"application/json": {"schema": schema}}}),
                None => json!({}),
            };
            responses.insert(status, response);
        }
        op.insert("responses".into(), responses.into());
        paths
            .entry(d.path.to_owned())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("a path item is an object")
            .insert(method, op.into());
    }
    json!({
        "openapi": "3.1.0",
        "paths": paths,
        "components": {"schemas": g.take_definitions(true)},
    })
}

/// Keys whose value the overlay may reword.
const PROSE: &[&str] = &["description", "summary", "title"];

/// Lays `over` onto `facts` at JSON pointer `at`; records each contradiction in `errors`.
fn lay(facts: &mut Value, over: &Value, at: &str, errors: &mut Vec<String>) {
    match (facts, over) {
        (Value::Object(facts), Value::Object(over)) => {
            for (key, value) in over {
                let here = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                match facts.get_mut(key) {
                    Some(fact) if key == "parameters" => lay_parameters(fact, value, &here, errors),
                    Some(fact) => lay(fact, value, &here, errors),
                    None if at == "/paths" || at == "/components/schemas" => {
                        errors.push(format!("{here}: the code has no such operation or type"))
                    }
                    None if at.starts_with("/paths/") && at.matches('/').count() == 2 => {
                        errors.push(format!("{here}: the code has no such operation"))
                    }
                    None => {
                        facts.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (fact, over) if fact == over => {}
        (fact, over) => {
            let key = at.rsplit('/').next().unwrap_or("");
            if PROSE.contains(&key) {
                *fact = over.clone();
            } else {
                errors.push(format!("{at}: the overlay says {over}, the code {fact}"));
            }
        }
    }
}

/// Parameters are matched by `name` and `in`; the overlay may add headers (no type models
/// them), never a path or query parameter the code does not have.
fn lay_parameters(facts: &mut Value, over: &Value, at: &str, errors: &mut Vec<String>) {
    let (Some(facts), Some(over)) = (facts.as_array_mut(), over.as_array()) else {
        errors.push(format!("{at}: parameters are a list"));
        return;
    };
    for p in over {
        let found = facts
            .iter_mut()
            .find(|f| f["name"] == p["name"] && f["in"] == p["in"]);
        match found {
            Some(fact) => lay(fact, p, &format!("{at}/{}", p["name"]), errors),
            None if p["in"] == "header" => facts.push(p.clone()),
            None => errors.push(format!("{at}: the code has no parameter {}", p["name"])),
        }
    }
}

/// The document: the generated facts with the overlay laid over them.
pub fn document() -> Result<Value, String> {
    let overlay: Value =
        serde_json::from_str(OVERLAY).map_err(|e| format!("openapi-overlay.json: {e}"))?;
    let statuses = |path: &str, method: &str| -> Vec<String> {
        overlay["paths"][path][method]["responses"]
            .as_object()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut doc = generated(statuses);
    let mut errors = Vec::new();
    lay(&mut doc, &overlay, "", &mut errors);
    if errors.is_empty() {
        Ok(doc)
    } else {
        Err(errors.join("\n"))
    }
}

/// The document as it is committed and served: pretty JSON, keys sorted, ending in a newline.
pub fn document_text() -> Result<String, String> {
    let doc = document()?;
    Ok(serde_json::to_string_pretty(&doc).expect("JSON serialises") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overlay_may_add_and_reword_but_not_contradict() {
        let mut facts = json!({"paths": {"/a": {"get": {"operationId": "a",
            "parameters": [{"name": "x", "in": "query", "schema": {"type": "integer"}}]}}}});
        let over = json!({"paths": {"/a": {"get": {"summary": "A", "parameters": [
            {"name": "x", "in": "query", "schema": {"minimum": 1}, "description": "X"},
            {"name": "Range", "in": "header"}]}}}});
        let mut errors = Vec::new();
        lay(&mut facts, &over, "", &mut errors);
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(
            facts["paths"]["/a"]["get"]["parameters"][0]["schema"]["minimum"],
            1
        );
        assert_eq!(
            facts["paths"]["/a"]["get"]["parameters"][1]["name"],
            "Range"
        );

        for (over, why) in [
            (json!({"paths": {"/b": {}}}), "no such operation"),
            (json!({"paths": {"/a": {"put": {}}}}), "no such operation"),
            (
                json!({"paths": {"/a": {"get": {"operationId": "b"}}}}),
                "the overlay says",
            ),
            (
                json!({"paths": {"/a": {"get": {"parameters": [{"name": "y", "in": "query"}]}}}}),
                "no parameter",
            ),
            (
                json!({"paths": {"/a": {"get": {"parameters": [{"name": "x", "in": "query",
                    "schema": {"type": "string"}}]}}}}),
                "the overlay says",
            ),
        ] {
            let mut errors = Vec::new();
            lay(&mut facts.clone(), &over, "", &mut errors);
            assert!(
                errors.len() == 1 && errors[0].contains(why),
                "{over}: {errors:?}"
            );
        }
    }

    #[test]
    fn ids_are_inline_strings_and_integers() {
        let mut g = SchemaGenerator::default();
        let meta = crate::FileMeta::json_schema(&mut g).to_value();
        assert_eq!(meta["properties"]["file_id"]["type"], "string");
        assert_eq!(meta["properties"]["rev"]["type"], "integer");
        assert_eq!(meta["properties"]["rev"]["minimum"], 1);
        assert_eq!(meta["properties"]["sha256"]["type"], "string");
    }
}
