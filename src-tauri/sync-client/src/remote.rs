//! The engine's view of the server: the journal, and transfers between the device's disk and the
//! server. The real one is [`Api`] (REST over HTTP); the simulation's (`sim::server`) keeps the
//! server's rules in memory over the fake disk.
//!
//! **Boundary**: one call per server operation; errors are [`SyncError`]s as `Api` maps them
//! (`Conflict` for a stale `parent_rev` or a refused name, `Server { status: 404 }` for a file
//! that is gone, `Offline` when the server cannot be reached).

use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;
use syncsphere_protocol::{ChangesPage, FileMeta};

use crate::SyncError;
use crate::api::{Api, Fetched, Sending, Wanted};
use crate::transfer::Transfer;

pub(crate) trait Remote: Send + Sync + 'static {
    /// The journal from `cursor` on (one page).
    fn changes(&self, cursor: i64) -> BoxFuture<'_, Result<ChangesPage, SyncError>>;
    /// Sends the file at `file` (on the device's disk) as the new content of `path`, if it
    /// still hashes to `expected` (else [`SyncError::Busy`]).
    fn upload<'a>(
        &'a self,
        path: &'a str,
        parent_rev: Option<i64>,
        file: &'a Path,
        expected: &'a str,
        progress: &'a Transfer,
    ) -> BoxFuture<'a, Result<FileMeta, SyncError>>;
    /// Several files' uploads, each as [`Remote::upload`] does one: one result per file, in
    /// order. One request where the server can.
    fn upload_many<'a>(
        &'a self,
        files: &'a [Sending<'a>],
    ) -> BoxFuture<'a, Vec<Result<FileMeta, SyncError>>> {
        Box::pin(async move {
            let mut results = Vec::with_capacity(files.len());
            for f in files {
                results.push(
                    self.upload(f.path, f.parent_rev, f.file, f.expected, f.progress)
                        .await,
                );
            }
            results
        })
    }
    /// Writes the file's current content into `dest` (on the device's disk), verified; returns
    /// its revision and hash. `resume_sha`: `dest` may hold the start of that content.
    /// `seeds`: files on the device that may hold parts of it (the old version), read only.
    fn download<'a>(
        &'a self,
        file_id: &'a str,
        dest: &'a Path,
        resume_sha: Option<&'a str>,
        seeds: &'a [PathBuf],
        progress: &'a Transfer,
    ) -> BoxFuture<'a, Result<(i64, String), SyncError>>;
    /// Several files' current contents, each as [`Remote::download`] gives one (no seeds):
    /// one result per wanted file, in order. One request where the server can.
    fn download_many<'a>(&'a self, wanted: &'a [Wanted<'a>]) -> BoxFuture<'a, Vec<Fetched>> {
        Box::pin(async move {
            let mut results = Vec::with_capacity(wanted.len());
            for w in wanted {
                results.push(
                    self.download(w.file_id, w.dest, Some(w.sha256), &[], w.progress)
                        .await,
                );
            }
            results
        })
    }
    fn delete<'a>(
        &'a self,
        file_id: &'a str,
        rev: i64,
    ) -> BoxFuture<'a, Result<FileMeta, SyncError>>;
    fn move_file<'a>(
        &'a self,
        file_id: &'a str,
        new_path: &'a str,
        rev: i64,
    ) -> BoxFuture<'a, Result<FileMeta, SyncError>>;
    /// Content bytes sent and received so far, for the status stream.
    fn transferred(&self) -> (u64, u64);
    /// This device's id as the server records it (a journal entry's `origin_device`).
    fn device_id(&self) -> &str;
    /// Whether the server takes chunked content ids: files over a MiB are named by them, else
    /// by their SHA-256 (decision 0051).
    fn chunked_ids(&self) -> bool;
}

impl Remote for Api {
    fn changes(&self, cursor: i64) -> BoxFuture<'_, Result<ChangesPage, SyncError>> {
        Box::pin(Api::changes(self, cursor))
    }

    fn upload<'a>(
        &'a self,
        path: &'a str,
        parent_rev: Option<i64>,
        file: &'a Path,
        expected: &'a str,
        progress: &'a Transfer,
    ) -> BoxFuture<'a, Result<FileMeta, SyncError>> {
        Box::pin(Api::upload(
            self, path, parent_rev, file, expected, progress,
        ))
    }

    fn download<'a>(
        &'a self,
        file_id: &'a str,
        dest: &'a Path,
        resume_sha: Option<&'a str>,
        seeds: &'a [PathBuf],
        progress: &'a Transfer,
    ) -> BoxFuture<'a, Result<(i64, String), SyncError>> {
        Box::pin(Api::download(
            self, file_id, dest, resume_sha, seeds, progress,
        ))
    }

    fn upload_many<'a>(
        &'a self,
        files: &'a [Sending<'a>],
    ) -> BoxFuture<'a, Vec<Result<FileMeta, SyncError>>> {
        Box::pin(Api::upload_many(self, files))
    }

    fn download_many<'a>(&'a self, wanted: &'a [Wanted<'a>]) -> BoxFuture<'a, Vec<Fetched>> {
        Box::pin(Api::download_many(self, wanted))
    }

    fn delete<'a>(
        &'a self,
        file_id: &'a str,
        rev: i64,
    ) -> BoxFuture<'a, Result<FileMeta, SyncError>> {
        Box::pin(Api::delete(self, file_id, rev))
    }

    fn move_file<'a>(
        &'a self,
        file_id: &'a str,
        new_path: &'a str,
        rev: i64,
    ) -> BoxFuture<'a, Result<FileMeta, SyncError>> {
        Box::pin(Api::move_file(self, file_id, new_path, rev))
    }

    fn transferred(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.uploaded.load(Relaxed), self.downloaded.load(Relaxed))
    }

    fn device_id(&self) -> &str {
        self.device()
    }

    fn chunked_ids(&self) -> bool {
        Api::chunked_ids(self)
    }
}
