//! Content blobs (whole small contents and chunks), addressed by SHA-256 and namespaced per user
//! (no cross-user dedup: it would let one user learn whether another holds a file).
//!
//! Uploads always stream into a local staging file first ([`Staging`]), hashed (not fsynced:
//! S3 does not need it, and the disk store fsyncs before it renames); then [`BlobStore::put`]
//! makes the blob durable in the store: the local disk ([`DiskBlobStore`], embedded default) or
//! S3 ([`crate::s3::S3BlobStore`]). A blob that exists in a store is always complete.
//!
//! Chunks are acknowledged once staged and hashed; [`PendingPuts`] makes them durable in the
//! background (so the disk writes overlap the rest of the upload instead of costing two fsyncs
//! per request) and every commit waits for its chunks' puts to settle before it checks them.

mod disk;
mod pending;
mod staging;

use std::time::SystemTime;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use syncsphere_auth::BoxFuture;

use crate::FilesError;

pub use disk::DiskBlobStore;
pub use pending::{MAX_PENDING_PUTS, PendingPuts};
pub use staging::{StagedBlob, Staging};

/// Bytes read back from a store.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// The size of the pieces blobs are written and read in on blocking threads.
pub const IO_PIECE: usize = 1024 * 1024;

/// Blobs listed per page at most.
pub const LIST_PAGE: usize = 1000;

/// A store's listing, a page at a time.
pub type BlobPages<'a> = BoxStream<'a, Result<Vec<BlobInfo>, FilesError>>;

/// One stored blob, as listed for garbage collection.
#[derive(Debug, Clone)]
pub struct BlobInfo {
    pub user_id: String,
    pub sha256: String,
    pub size: u64,
    pub modified: SystemTime,
}

/// Where blobs live. Every method is idempotent.
pub trait BlobStore: Send + Sync {
    /// Stores a staged blob under its hash for the user; durable when this returns. Storing a
    /// blob that already exists is a no-op (and restarts its grace period where supported).
    fn put<'a>(
        &'a self,
        user_id: &'a str,
        staged: &'a StagedBlob,
    ) -> BoxFuture<'a, Result<(), FilesError>>;
    /// Stores a batch of staged blobs as [`BlobStore::put`] does, each durable when this
    /// returns; one outcome per blob, in order. A store may make a whole batch durable at once
    /// (the disk store: two filesystem syncs for the batch instead of two fsyncs per blob).
    fn put_many<'a>(
        &'a self,
        batch: &'a [(String, StagedBlob)],
    ) -> BoxFuture<'a, Vec<Result<(), FilesError>>> {
        Box::pin(async move {
            // (A Vec of futures rather than a mapping closure keeps the future `Send`.)
            let puts: Vec<_> = batch
                .iter()
                .map(|(user_id, staged)| self.put(user_id, staged))
                .collect();
            futures_util::stream::iter(puts).buffered(8).collect().await
        })
    }
    /// Whether the blob exists: its size, and its modification time before the touch (how close the
    /// collector may be to deleting it); where supported the touch also restarts its
    /// garbage-collection grace period (a client is about to commit it). `None`: missing.
    fn touch<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, SystemTime)>, FilesError>>;
    /// Size and last modification of a blob, if it exists.
    fn stat<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, SystemTime)>, FilesError>>;
    /// [`BlobStore::stat`] without asking the metadata database (the inline table): what a
    /// check inside a database transaction uses, so that it never waits for a second pooled
    /// connection while holding one. Chunks and contents stored outside the database are
    /// there; one held only inline is reported missing.
    fn stat_in_store<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, SystemTime)>, FilesError>> {
        self.stat(user_id, sha256)
    }
    /// Bytes `start..start + len` of a blob.
    fn read<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
        start: u64,
        len: u64,
    ) -> BoxFuture<'a, Result<ByteStream, FilesError>>;
    /// Every blob of every user, in pages of at most [`LIST_PAGE`] (the garbage collector
    /// keeps a few bytes per blob, never the listing itself).
    fn list(&self) -> BlobPages<'_>;
    fn delete<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<(), FilesError>>;
    /// Whether [`BlobStore::touch`] restarts the grace period (S3 cannot change an object's
    /// modification time; there a resumed upload after the grace period re-sends chunks).
    fn touch_extends_grace(&self) -> bool;
}

/// Checks a blob address: a safe user id and a lowercase SHA-256.
pub(crate) fn check_address(user_id: &str, sha256: &str) -> Result<(), FilesError> {
    let safe_user = !user_id.is_empty()
        && user_id.len() <= 128
        && user_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let safe_hash = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
    if safe_user && safe_hash {
        Ok(())
    } else {
        Err(FilesError::BadRequest("invalid blob address".into()))
    }
}
