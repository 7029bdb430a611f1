//! REST data transfer objects (`/v1/...`), as JSON.

use serde::{Deserialize, Serialize};

use crate::{ContentHash, DeviceId, FileId, Rev, Seq};

/// Header carrying the id of the device that makes a change, echoed as `origin_device` in the
/// journal so the state service can skip that device when pushing.
pub const DEVICE_HEADER: &str = "x-syncsphere-device";
/// Optional on `PUT /v1/chunks/{id}`: the SHA-256 of the whole content this chunk belongs to,
/// with [`CHUNK_OFFSET_HEADER`] its place in it. A server that sees a content's chunks arrive
/// this way hashes the content as they come and need not read it back at commit. Only for a
/// content named by its SHA-256: a chunked id needs no bytes at commit (and is refused here).
pub const CHUNK_CONTENT_HEADER: &str = "x-syncsphere-content";
/// Optional on `PUT /v1/chunks/{id}`: the chunk's byte offset in the content.
pub const CHUNK_OFFSET_HEADER: &str = "x-syncsphere-offset";

/// Content-defined chunking parameters (FastCDC 2020) clients use; the server only enforces
/// [`MAX_CHUNK_SIZE`]. Changing them changes chunk boundaries (and so dedup with older uploads),
/// never correctness.
pub const CHUNK_MIN_SIZE: u32 = 256 * 1024;
pub const CHUNK_AVG_SIZE: u32 = 1024 * 1024;
pub const CHUNK_MAX_SIZE: u32 = 4 * 1024 * 1024;
/// FastCDC's normalisation level (0–3): how tightly chunk sizes gather around the average.
/// Level 3 keeps chunks within about twice the average (none over 2 MiB in 945 chunks of
/// 1 GiB of random data, against 9.9 % at level 1), so inserting a byte at the start of a file
/// re-sends at most ~2 MiB; the average is 1.1 MiB.
pub const CHUNK_NORMALIZATION_LEVEL: u8 = 3;
/// Largest chunk the server accepts in `PUT /v1/chunks/{sha256}`.
pub const MAX_CHUNK_SIZE: u64 = 8 * 1024 * 1024;
/// Most chunk ids in one `POST /v1/chunks/missing` and one commit's chunk list (4 TiB at the
/// average chunk size).
pub const MAX_CHUNKS_PER_REQUEST: usize = 4 * 1024 * 1024;
/// Files up to this size are uploaded in one request (`PUT /v1/files/content`) instead of chunks.
pub const SINGLE_REQUEST_MAX: u64 = 1024 * 1024;

/// Metadata of one file revision as the server knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct FileMeta {
    pub file_id: FileId,
    pub path: String,
    /// Revision number of this file, starting at 1 and increasing by one per commit.
    pub rev: Rev,
    pub size: i64,
    /// Lower-case hex SHA-256 of the content (empty for a deleted file).
    pub sha256: ContentHash,
    pub deleted: bool,
    pub modified_ms: i64,
}

/// What happened to a file in one journal entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
    Moved,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Updated => "updated",
            ChangeKind::Deleted => "deleted",
            ChangeKind::Moved => "moved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "created" => ChangeKind::Created,
            "updated" => ChangeKind::Updated,
            "deleted" => ChangeKind::Deleted,
            "moved" => ChangeKind::Moved,
            _ => return None,
        })
    }
}

/// One entry of a user's change journal. `seq` is strictly increasing per user; the journal is
/// the truth and pushes are only hints to read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ChangeEvent {
    pub seq: Seq,
    pub file_id: FileId,
    pub event: ChangeKind,
    /// Path after the change (for `deleted`, the path the file had).
    pub path: String,
    /// Path before a `moved` change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
    pub rev: Rev,
    pub size: i64,
    pub sha256: ContentHash,
    /// Device that made the change, if it said so.
    pub origin_device: Option<DeviceId>,
    pub at_ms: i64,
}

/// `GET /v1/changes?cursor=N&limit=M`: entries with `seq > cursor`, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ChangesPage {
    pub changes: Vec<ChangeEvent>,
    /// Pass this back as `cursor` to continue; equals the request's cursor when empty.
    pub cursor: Seq,
    pub has_more: bool,
}

/// `GET /v1/files`: a page of the live files, in path order, plus the journal position the
/// listing is consistent with (a rename between two pages can show a file twice or not at
/// all: replaying the journal from the first page's `cursor` settles it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct FileList {
    pub files: Vec<FileMeta>,
    pub cursor: Seq,
    /// Pass this back as `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Most files in one page of `GET /v1/files` (the default page): well within API Gateway's
/// 10 MB (0040).
pub const LIST_PAGE_MAX: i64 = 5000;

/// `POST /v1/files/{file_id}/move`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct MoveRequest {
    pub new_path: String,
    pub parent_rev: Rev,
}

/// One revision of a file, as `GET /v1/files/{file_id}/revisions` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Revision {
    pub rev: Rev,
    pub path: String,
    pub size: i64,
    /// Empty for a revision that deleted the file.
    pub sha256: ContentHash,
    pub deleted: bool,
    pub modified_ms: i64,
    pub origin_device: Option<DeviceId>,
}

/// `GET /v1/files/{file_id}/revisions`: newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RevisionList {
    pub file_id: FileId,
    pub revisions: Vec<Revision>,
}

/// `POST /v1/files/{file_id}/restore`: make revision `rev`'s content current again, as a new
/// revision on top of `parent_rev` (also undeletes a file in the trash).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RestoreRequest {
    pub rev: Rev,
    pub parent_rev: Rev,
}

/// `GET /v1/trash`: deleted files, most recently deleted first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct TrashList {
    pub files: Vec<FileMeta>,
}

/// One chunk of a chunked content, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ChunkRef {
    pub sha256: ContentHash,
    #[serde(deserialize_with = "integral::int")]
    #[cfg_attr(feature = "openapi", schemars(with = "i64"))]
    pub size: i64,
}

/// Answer to `GET /v1/files/{file_id}/chunks`: what one revision's content is made of, in file
/// order, so a device that already holds some of those chunks (in the old version of the file)
/// fetches only the others, as byte ranges of that revision's content. A content uploaded in one
/// request is one chunk (its own hash); an empty one has none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ContentChunks {
    pub rev: Rev,
    pub sha256: ContentHash,
    pub size: i64,
    pub chunks: Vec<ChunkRef>,
}

/// `POST /v1/files/contents`: several files' contents in one response (small files: one request
/// instead of one per file). At most [`CONTENTS_MAX_FILES`] entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ContentsRequest {
    pub files: Vec<ContentWanted>,
    /// Contents larger than this (and than [`CONTENTS_MAX_SIZE`]) come back as `too_large`
    /// frames: the client fetches those alone (ranges, resumption, delta).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "integral::optional"
    )]
    #[cfg_attr(feature = "openapi", schemars(with = "Option<i64>"))]
    pub max_size: Option<i64>,
}

/// One file of a [`ContentsRequest`]: its current content, or revision `rev`'s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ContentWanted {
    pub file_id: FileId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<Rev>,
}

/// Most files one [`ContentsRequest`] may name.
pub const CONTENTS_MAX_FILES: usize = 256;
/// Largest content a contents response carries: a larger one is answered with
/// [`ContentFrame::error`] `too_large` (fetch it alone, with ranges and resumption).
pub const CONTENTS_MAX_SIZE: i64 = 4 << 20;
/// Most content bytes in one contents response: a file that would pass it is answered
/// `too_large` too, so a response stays within API Gateway's 10 MB payload limit (0040).
pub const CONTENTS_MAX_TOTAL: i64 = 8 << 20;
/// Most bytes of one content a client asks for in one request (a `Range` window): a larger
/// file comes down in several, each response within API Gateway's 10 MB payload limit (0040).
pub const DOWNLOAD_WINDOW: u64 = 8 << 20;

/// The header of one file in the answer to `POST /v1/files/contents`. The body is, for each
/// requested file in request order, this header as one line of JSON (ending in `\n`), then —
/// unless `error` is set — exactly `size` bytes of content, which hash to `sha256`.
/// `error`: `not_found` (no such live file or revision), `too_large` (over the request's
/// `max_size` or [`CONTENTS_MAX_SIZE`], or past [`CONTENTS_MAX_TOTAL`] in this response).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ContentFrame {
    pub file_id: FileId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<Rev>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<ContentHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The header of one file in the body of `POST /v1/files/upload` (several small files in one
/// request): this as one line of JSON (ending in `\n`), then exactly `size` bytes of content,
/// which must hash to `sha256`; then the next file's line. Each file is committed as
/// `PUT /v1/files/content?path=&parent_rev=` would commit it. At most [`CONTENTS_MAX_FILES`]
/// files of at most [`SINGLE_REQUEST_MAX`] bytes each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct UploadFrame {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_rev: Option<Rev>,
    #[serde(deserialize_with = "integral::int")]
    #[cfg_attr(feature = "openapi", schemars(with = "i64"))]
    pub size: i64,
    pub sha256: ContentHash,
}

/// Answer to `POST /v1/files/upload`: one result per file, in request order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct UploadResults {
    pub results: Vec<UploadResult>,
}

/// One file's outcome in [`UploadResults`]: the committed metadata, or the error its own
/// upload would have been answered with (`conflict` with `current`, `invalid_path`, …).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct UploadResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::ErrorBody>,
}

/// `POST /v1/chunks/missing`: which of these chunks does the server lack (for this user)?
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct MissingChunksRequest {
    pub chunks: Vec<ContentHash>,
}

/// Answer to `POST /v1/chunks/missing`: the subset to upload, in request order, no duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct MissingChunks {
    pub missing: Vec<ContentHash>,
}

/// `POST /v1/files/commit`: create or replace the file at `path` with the content made of
/// `chunks` (all already uploaded). `size` and `sha256` describe the whole content; the server
/// checks both against the chunks before committing. `sha256` is the content's id: for a
/// content over [`crate::CHUNKED_ID_ABOVE`] bytes its chunked id
/// ([`crate::chunked_content_id`], checked from the chunk list alone), else — and for clients
/// from before chunked ids — the SHA-256 of its bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct CommitRequest {
    pub path: String,
    #[serde(default)]
    pub parent_rev: Option<Rev>,
    #[serde(deserialize_with = "integral::int")]
    #[cfg_attr(feature = "openapi", schemars(with = "i64"))]
    pub size: i64,
    pub sha256: ContentHash,
    pub chunks: Vec<ChunkRef>,
}

/// Integers of request bodies as JSON Schema (and so the OpenAPI document) means them: any
/// number without a fraction, so `1.0` is the integer 1 as much as `1` is.
pub(crate) mod integral {
    use std::fmt;

    use serde::de::{Deserializer, Error, Unexpected, Visitor};

    struct Integral;

    impl Visitor<'_> for Integral {
        type Value = i64;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer")
        }

        fn visit_i64<E: Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }

        fn visit_u64<E: Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
        }

        fn visit_f64<E: Error>(self, v: f64) -> Result<i64, E> {
            // 2^63 is exact as an f64; every integral f64 below it fits in an i64.
            const LIMIT: f64 = 9_223_372_036_854_775_808.0;
            if v.fract() == 0.0 && (-LIMIT..LIMIT).contains(&v) {
                Ok(v as i64)
            } else {
                Err(E::invalid_value(Unexpected::Float(v), &self))
            }
        }
    }

    /// `deserialize_i64`, not `_any`: JSON hands any number to the visitor (so `1.0` comes as
    /// a float), a query string its digits parsed as an integer, and a JSON string is refused.
    pub(crate) fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        d.deserialize_i64(Integral)
    }

    pub(crate) fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        #[derive(serde::Deserialize)]
        struct Int(#[serde(deserialize_with = "int")] i64);
        let value: Option<Int> = serde::Deserialize::deserialize(d)?;
        Ok(value.map(|Int(v)| v))
    }
}

/// `GET /v1/config` (public): where and how a client signs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ServerConfig {
    pub cognito: CognitoConfig,
    /// Base URLs of the State service instances to open the push WebSocket on (`…/v1/ws`);
    /// empty means this server itself. Clients spread over them and fail over between them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub push_urls: Vec<String>,
    /// Whether the server takes chunked content ids ([`crate::chunked_content_id`], decision
    /// 0051): clients name contents over [`crate::CHUNKED_ID_ABOVE`] bytes by them. A server
    /// that does not say wants every content named by its SHA-256.
    #[serde(default)]
    pub chunked_ids: bool,
}

/// The Cognito (or Cognito-compatible) user pool clients authenticate against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct CognitoConfig {
    /// Endpoint of the Cognito Identity Provider JSON API (the AWS SDK's `endpoint_url`).
    pub endpoint: String,
    pub region: String,
    pub user_pool_id: String,
    pub client_id: String,
    /// Whether sign-in binds tokens to a device (`DEVICE_KEY`), so that one device can be
    /// revoked alone. The built-in provider does; Amazon Cognito needs its device-tracking
    /// flow (ConfirmDevice) for that, which clients do not run yet.
    #[serde(default)]
    pub device_keys: bool,
    /// How clients prove the password (Cognito's `AuthFlow`); servers that do not say want
    /// `USER_PASSWORD_AUTH`.
    #[serde(default)]
    pub auth_flow: PasswordFlow,
}

/// How a client proves its password to the pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub enum PasswordFlow {
    /// `USER_SRP_AUTH`: the password never leaves the device (Cognito app clients' and
    /// Amplify's default); clients fall back to `USER_PASSWORD_AUTH` if the pool says the flow
    /// is not enabled.
    #[serde(rename = "USER_SRP_AUTH")]
    UserSrpAuth,
    /// `USER_PASSWORD_AUTH`: the password is sent (over TLS) for the pool to check.
    #[default]
    #[serde(rename = "USER_PASSWORD_AUTH")]
    UserPasswordAuth,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_kind_round_trips_through_its_wire_name() {
        for kind in [
            ChangeKind::Created,
            ChangeKind::Updated,
            ChangeKind::Deleted,
            ChangeKind::Moved,
        ] {
            assert_eq!(ChangeKind::parse(kind.as_str()), Some(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert_eq!(ChangeKind::parse("renamed"), None);
    }

    #[test]
    fn request_integers_are_numbers_without_a_fraction() {
        let check = |json: &str, expected: Option<(i64, i64)>| {
            let parsed = serde_json::from_str::<RestoreRequest>(json)
                .ok()
                .map(|r| (r.rev.get(), r.parent_rev.get()));
            assert_eq!(parsed, expected, "{json}");
        };
        check(r#"{"rev": 1, "parent_rev": 2}"#, Some((1, 2)));
        check(r#"{"rev": 1.0, "parent_rev": 2e0}"#, Some((1, 2)));
        check(r#"{"rev": -3.0, "parent_rev": 0}"#, Some((-3, 0)));
        check(r#"{"rev": 1.5, "parent_rev": 2}"#, None);
        check(r#"{"rev": 9.3e18, "parent_rev": 2}"#, None);
        check(r#"{"rev": 9223372036854775808, "parent_rev": 2}"#, None);
        check(r#"{"rev": "1", "parent_rev": 2}"#, None);
        let commit = |json: &str| serde_json::from_str::<CommitRequest>(json).ok();
        let base = r#""path": "a", "sha256": "x", "chunks": [{"sha256": "y", "size": 3.0}]"#;
        let c = commit(&format!(r#"{{{base}, "size": 3.0}}"#)).unwrap();
        assert_eq!((c.size, c.parent_rev, c.chunks[0].size), (3, None, 3));
        let c = commit(&format!(r#"{{{base}, "size": 3, "parent_rev": null}}"#)).unwrap();
        assert_eq!(c.parent_rev, None);
        let c = commit(&format!(r#"{{{base}, "size": 3, "parent_rev": 4.0}}"#)).unwrap();
        assert_eq!(c.parent_rev, Some(Rev(4)));
        assert!(commit(&format!(r#"{{{base}, "size": 3, "parent_rev": 4.5}}"#)).is_none());
    }
}

/// `GET /v1/account/usage`: bytes held by the user's live files, and the quota if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Usage {
    pub used_bytes: i64,
    pub quota_bytes: Option<i64>,
}

/// One device of the user, in `GET /v1/devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct Device {
    pub device_id: DeviceId,
    /// Human-readable name ("Anna's laptop"), as the device registered it.
    pub name: Option<String>,
    /// Operating system or client kind ("linux", "windows", "macos", "cli", …).
    pub platform: Option<String>,
    /// When the device first registered (ms since the epoch; 0 if it never registered).
    pub created_ms: i64,
    /// Last time the device was seen: registration, a journal read, or now if it is online.
    pub last_seen_ms: i64,
    /// Whether the device holds a push connection right now.
    pub online: bool,
    /// Revoked devices are listed (greyed out) until they are forgotten; they cannot connect.
    pub revoked: bool,
    /// The device the request was made from (the token's device).
    pub current: bool,
}

/// `GET /v1/devices`: online devices first, then most recently seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct DeviceList {
    pub devices: Vec<Device>,
}

/// `PUT /v1/devices/{device_id}`: a device announces (or renames) itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct RegisterDevice {
    pub name: Option<String>,
    pub platform: Option<String>,
}
