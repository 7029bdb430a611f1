//! The REST operations, one description each: method, path template, query, request and
//! response types. The routers mount them, the client builds its URLs from them, and the
//! OpenAPI document is checked against them — the contract has this one source.
//!
//! Body types: `()` is none (a response `()` is an empty 2xx), [`Bytes`] raw octets,
//! [`External`] a body another specification defines (Cognito's JSON API, JWKS, metrics).

use serde::{Deserialize, Serialize};

use crate::{
    ChangesPage, CommitRequest, ContentChunks, ContentsRequest, DeviceList, FileList, FileMeta,
    MissingChunks, MissingChunksRequest, MoveRequest, RestoreRequest, Rev, RevisionList, Seq,
    ServerConfig, TrashList, UploadResults, Usage,
};

/// HTTP method of an endpoint (plain data: the server and client map it to their types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Put,
    Post,
    Delete,
}

impl Method {
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// A body of raw octets (`application/octet-stream`).
#[derive(Debug, Clone, Copy)]
pub struct Bytes;

/// A body another specification defines (its schema is not ours to give).
#[derive(Debug, Clone, Copy)]
pub struct External;

/// A type an endpoint's query, request or response may be: with the `openapi` feature, one
/// whose JSON Schema is known (the document is generated from them).
#[cfg(feature = "openapi")]
pub trait Documented: schemars::JsonSchema + 'static {}
#[cfg(feature = "openapi")]
impl<T: schemars::JsonSchema + 'static> Documented for T {}
/// A type an endpoint's query, request or response may be.
#[cfg(not(feature = "openapi"))]
pub trait Documented {}
#[cfg(not(feature = "openapi"))]
impl<T: ?Sized> Documented for T {}

/// Not a JSON body: the document describes it by hand.
#[cfg(feature = "openapi")]
impl schemars::JsonSchema for Bytes {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Bytes".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "format": "binary" })
    }
}

/// Not ours to describe: the document describes it by hand.
#[cfg(feature = "openapi")]
impl schemars::JsonSchema for External {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "External".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!(true)
    }
}

/// One REST operation.
pub trait Endpoint {
    const METHOD: Method;
    /// Path template, `{name}` for one segment (also axum's syntax).
    const PATH: &'static str;
    /// The operation's `operationId` in the OpenAPI document.
    const OPERATION_ID: &'static str;
    /// The query string's fields (`()`: none).
    type Query: Documented;
    type Request: Documented;
    type Response: Documented;

    /// [`Endpoint::PATH`] with its `{…}` segments replaced by `params`, in order, each
    /// percent-encoded as one segment.
    fn path(params: &[&str]) -> String {
        fill(Self::PATH, params)
    }
}

/// An endpoint's description as a value (for the checks of the OpenAPI document).
#[derive(Debug, Clone, Copy)]
pub struct Description {
    pub method: Method,
    pub path: &'static str,
    pub operation_id: &'static str,
    /// The full names of the query, request and response types.
    pub query: fn() -> &'static str,
    pub request: fn() -> &'static str,
    pub response: fn() -> &'static str,
    /// The JSON Schemas of the query, request and response types (what the OpenAPI document
    /// is generated from).
    #[cfg(feature = "openapi")]
    pub schemas: fn(&mut schemars::SchemaGenerator) -> crate::openapi::Shapes,
}

impl Description {
    pub const fn of<E: Endpoint>() -> Self {
        Description {
            method: E::METHOD,
            path: E::PATH,
            operation_id: E::OPERATION_ID,
            query: std::any::type_name::<E::Query>,
            request: std::any::type_name::<E::Request>,
            response: std::any::type_name::<E::Response>,
            #[cfg(feature = "openapi")]
            schemas: crate::openapi::shapes::<E>,
        }
    }
}

/// `template` with each `{…}` segment replaced by the next of `params`, percent-encoded
/// (everything but RFC 3986's unreserved characters).
///
/// # Panics
/// If the number of `params` is not the number of `{…}` segments (a programming error).
pub fn fill(template: &str, params: &[&str]) -> String {
    let mut out = String::with_capacity(template.len() + 40);
    let mut params = params.iter();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').expect("a closed `{…}`") + open;
        out.push_str(&rest[..open]);
        let value = params.next().expect("a value for every `{…}` of the path");
        for b in value.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    out.push(b as char)
                }
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        rest = &rest[close + 1..];
    }
    assert!(
        params.next().is_none(),
        "more values than `{{…}}` in {template}"
    );
    out.push_str(rest);
    out
}

/// Query of `PUT /v1/files/content`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct UploadQuery {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_rev: Option<Rev>,
}

/// Query of `GET /v1/files/{file_id}/content`: an older revision's content.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct DownloadQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<Rev>,
}

/// Query of `DELETE /v1/files/{file_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct DeleteQuery {
    pub parent_rev: Rev,
}

/// Query of `GET /v1/files`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ListFilesQuery {
    /// The files after this path (the previous page's `next`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Page size, at most `LIST_PAGE_MAX` (the default); below 1 is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

/// Query of `GET /v1/changes`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ChangesQuery {
    /// Last seq already applied (0 = from the start).
    #[serde(default)]
    pub cursor: Seq,
    /// Page size, clamped by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

macro_rules! endpoints {
    ($(
        $(#[$doc:meta])*
        $name:ident: $method:ident $path:literal as $op:literal,
            query $query:ty, request $request:ty, response $response:ty;
    )*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy)]
            pub struct $name;

            impl Endpoint for $name {
                const METHOD: Method = Method::$method;
                const PATH: &'static str = $path;
                const OPERATION_ID: &'static str = $op;
                type Query = $query;
                type Request = $request;
                type Response = $response;
            }
        )*

        /// Every endpoint, in the order of the document.
        pub const ALL: &[Description] = &[$(Description::of::<$name>()),*];
    };
}

endpoints! {
    /// Liveness: `{"status": "ok"}`.
    Health: Get "/healthz" as "health", query (), request (), response External;
    /// Prometheus metrics of the State service.
    Metrics: Get "/metrics" as "metrics", query (), request (), response External;
    /// The OpenAPI document.
    OpenApiDocument: Get "/v1/openapi.json" as "openApiDocument",
        query (), request (), response External;
    /// Where and how a client signs in (public).
    GetConfig: Get "/v1/config" as "getConfig", query (), request (), response ServerConfig;
    /// The built-in identity provider's Cognito JSON API (`X-Amz-Target` names the operation).
    CognitoApi: Post "/auth/cognito" as "cognitoApi",
        query (), request External, response External;
    /// The same, as the AWS SDK calls it (endpoint URL plus `/`).
    CognitoApiSlash: Post "/auth/cognito/" as "cognitoApiSlash",
        query (), request External, response External;
    /// The user pool's public keys.
    GetJwks: Get "/{user_pool_id}/.well-known/jwks.json" as "getJwks",
        query (), request (), response External;
    /// The live files, a page at a time in path order, and the journal position the listing
    /// matches.
    ListFiles: Get "/v1/files" as "listFiles", query ListFilesQuery, request (), response FileList;
    /// A small file's content in one request.
    UploadFile: Put "/v1/files/content" as "uploadFile",
        query UploadQuery, request Bytes, response FileMeta;
    /// Several small files' contents in one request (see [`crate::UploadFrame`]).
    UploadFiles: Post "/v1/files/upload" as "uploadFiles",
        query (), request Bytes, response UploadResults;
    /// Commits a content made of uploaded chunks.
    CommitChunks: Post "/v1/files/commit" as "commitChunks",
        query (), request CommitRequest, response FileMeta;
    /// Which chunks the server lacks.
    FindMissingChunks: Post "/v1/chunks/missing" as "missingChunks",
        query (), request MissingChunksRequest, response MissingChunks;
    /// One chunk, by its SHA-256 (201 stored, 204 already held).
    PutChunk: Put "/v1/chunks/{sha256}" as "putChunk", query (), request Bytes, response ();
    /// A file's current metadata.
    GetFile: Get "/v1/files/{file_id}" as "getFile", query (), request (), response FileMeta;
    /// Deletes a file (into the trash).
    DeleteFile: Delete "/v1/files/{file_id}" as "deleteFile",
        query DeleteQuery, request (), response FileMeta;
    /// A file's content (`Range` supported).
    DownloadFile: Get "/v1/files/{file_id}/content" as "downloadFile",
        query DownloadQuery, request (), response Bytes;
    /// What a revision's content is made of (its chunks, in order), for delta downloads.
    GetFileChunks: Get "/v1/files/{file_id}/chunks" as "getFileChunks",
        query DownloadQuery, request (), response ContentChunks;
    /// Several small files' contents in one response (see [`crate::ContentFrame`]).
    DownloadContents: Post "/v1/files/contents" as "downloadContents",
        query (), request ContentsRequest, response Bytes;
    /// Renames or moves a file.
    MoveFile: Post "/v1/files/{file_id}/move" as "moveFile",
        query (), request MoveRequest, response FileMeta;
    /// A file's revisions, newest first.
    ListRevisions: Get "/v1/files/{file_id}/revisions" as "listRevisions",
        query (), request (), response RevisionList;
    /// Makes an older revision current again (also undeletes).
    RestoreRevision: Post "/v1/files/{file_id}/restore" as "restoreRevision",
        query (), request RestoreRequest, response FileMeta;
    /// Deleted files, most recent first.
    ListTrash: Get "/v1/trash" as "listTrash", query (), request (), response TrashList;
    /// The change journal from a cursor.
    ListChanges: Get "/v1/changes" as "listChanges",
        query ChangesQuery, request (), response ChangesPage;
    /// Storage used and the quota.
    GetUsage: Get "/v1/account/usage" as "getUsage", query (), request (), response Usage;
    /// The account's devices.
    ListDevices: Get "/v1/devices" as "listDevices", query (), request (), response DeviceList;
    /// Registers or renames a device.
    RegisterDevice: Put "/v1/devices/{device_id}" as "registerDevice",
        query (), request crate::api::RegisterDevice, response ();
    /// Revokes (unlinks) a device.
    RevokeDevice: Delete "/v1/devices/{device_id}" as "revokeDevice",
        query (), request (), response ();
    /// Signs the account out everywhere: every access token issued until now is refused by
    /// every service, and the account's push connections close (4001).
    SignOutEverywhere: Post "/v1/account/sign-out" as "signOutEverywhere",
        query (), request (), response ();
    /// The push WebSocket (messages in [`crate::ws`]).
    PushSocket: Get "/v1/ws" as "pushSocket", query (), request (), response External;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_filled_segment_by_segment() {
        assert_eq!(GetFile::path(&["ab-12"]), "/v1/files/ab-12");
        assert_eq!(RestoreRevision::path(&["ab-12"]), "/v1/files/ab-12/restore");
        assert_eq!(GetFile::path(&["a/b?c"]), "/v1/files/a%2Fb%3Fc");
        assert_eq!(
            RevokeDevice::path(&["my laptop"]),
            "/v1/devices/my%20laptop"
        );
        assert_eq!(ListFiles::path(&[]), "/v1/files");
    }

    #[test]
    fn operations_are_unique_and_paths_rooted() {
        let mut ids = std::collections::BTreeSet::new();
        let mut routes = std::collections::BTreeSet::new();
        for d in ALL {
            assert!(d.path.starts_with('/'), "{d:?}");
            assert!(ids.insert(d.operation_id), "{d:?}");
            assert!(routes.insert((d.path, d.method.as_str())), "{d:?}");
        }
    }

    #[test]
    fn queries_are_what_the_client_always_sent() {
        let q = |v: &ChangesQuery| serde_json::to_value(v).unwrap();
        assert_eq!(
            q(&ChangesQuery::default()),
            serde_json::json!({"cursor": 0})
        );
        let u = UploadQuery {
            path: "a".into(),
            parent_rev: None,
        };
        assert_eq!(
            serde_json::to_value(&u).unwrap(),
            serde_json::json!({"path": "a"})
        );
    }
}
