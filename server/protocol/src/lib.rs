//! Wire types shared by the SyncSphere client and server: REST DTOs, WebSocket messages and the
//! path rules both sides enforce.
//!
//! **Boundary**: this crate is pure data — no IO, no async, no HTTP types. Anything that crosses
//! the network is defined here exactly once, so client and server cannot drift apart.

/// `impl schemars::JsonSchema` (feature `openapi`) for a type whose schema is always written
/// inline: the ids, which are plain strings and integers on the wire.
macro_rules! inline_schema {
    ($name:ty, $schema:tt) => {
        #[cfg(feature = "openapi")]
        impl schemars::JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!($schema)
            }
        }
    };
}

pub mod api;
pub mod endpoint;
pub mod error;
mod hash;
mod ids;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod path;
pub mod ws;

pub use api::*;
pub use endpoint::{
    ChangesQuery, DeleteQuery, DownloadQuery, Endpoint, ListFilesQuery, UploadQuery,
};
pub use error::{ApiError, ErrorBody, ErrorCode};
pub use hash::{CHUNKED_ID_ABOVE, CHUNKED_ID_PREFIX, ContentHash, chunked_content_id};
pub use ids::{DeviceId, FileId, Rev, Seq, UserId};
pub use path::{PathError, normalize_path, path_key};
