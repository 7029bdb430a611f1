//! File Management Service: file metadata and revisions, content blobs, and each user's change
//! journal, behind a REST API (`/v1/files…`, `/v1/changes`).
//!
//! **Invariants**
//! - A commit names the revision it started from (`parent_rev`); a mismatch is a conflict that
//!   returns the current metadata. Nothing is ever overwritten blindly.
//! - Content is durable in the blob store *before* the metadata that points at it commits, so a
//!   crash leaves at worst an unreferenced blob, never a file without its bytes; a small
//!   content kept inline is written in the very transaction of its commit ([`inline`]).
//! - Every commit appends to the user's journal in the same database transaction, with a
//!   per-user `seq` that is strictly increasing and gap-free; the journal is the truth.
//! - Committed changes are published (a [`syncsphere_events::Event::Change`] to
//!   [`FilesState::events`]) only after the transaction commits.
//!
//! **Boundary**: HTTP statuses are decided in [`http`] only; [`store`] and [`blobs`] return
//! typed errors.

pub mod blobs;
pub mod config;
pub mod content;
pub mod error;
pub mod gc;
mod group_commit;
pub mod http;
pub mod inline;
pub mod metrics;
mod rekey;
pub mod running;
pub mod s3;
mod service;
pub mod store;

use std::sync::Arc;

use axum::extract::FromRef;
use syncsphere_auth::Verifier;
use syncsphere_events::Publisher;

pub use blobs::{BlobStore, DiskBlobStore, PendingPuts, Staging};
pub use config::{FilesArgs, S3Args};
pub use error::FilesError;
pub use http::router;
pub use service::{FilesDeps, FilesService, Maintenance, OpenError};
pub use store::MetadataStore;

/// Everything the File Management Service's handlers need.
#[derive(Clone)]
pub struct FilesState {
    pub store: MetadataStore,
    pub blobs: Arc<dyn BlobStore>,
    pub staging: Arc<Staging>,
    /// Contents up to this many bytes uploaded in one request are kept in the metadata
    /// database (0: never); see [`inline`].
    pub inline_max: u64,
    /// Chunk puts acknowledged and still being made durable (see [`blobs::PendingPuts`]).
    pub pending: Arc<blobs::PendingPuts>,
    /// Whole-content hashes computed as chunks arrive (see [`running`]).
    pub running: Arc<running::RunningHashes>,
    /// Where every committed change goes, after its commit: the push hub in this process, or
    /// Redis.
    pub events: Arc<dyn Publisher>,
    pub verifier: Arc<Verifier>,
    /// Held for reading by commits from touching their chunks to the metadata commit; the
    /// garbage collector's sweep holds it for writing (see [`gc`]).
    pub gc_lock: Arc<gc::GcLock>,
    /// The collector's grace period (`--gc-grace-secs`, the same in every process of a
    /// cluster): a commit re-checks, under the collector's lock, the blobs it uses that are
    /// older than half of it — the only ones a sweep may be deleting (decision 0049).
    pub gc_grace: std::time::Duration,
    /// Where journal reads record when a device was last seen (`None`: not recorded).
    pub devices: Option<Arc<syncsphere_auth::devices::DeviceRegistry>>,
}

impl FromRef<FilesState> for Arc<Verifier> {
    fn from_ref(state: &FilesState) -> Self {
        state.verifier.clone()
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
