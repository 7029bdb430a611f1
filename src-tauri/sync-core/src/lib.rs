//! The sync engine's decisions, sans-IO: given the three trees — **remote** (what the server's
//! journal says), **local** (what the scanner saw on disk) and **synced** (the last state both
//! sides agreed on, the merge base) — [`plan`] derives the operations that bring them together.
//!
//! **Invariants** (see `../shared/SYNC-INVARIANTS.md`)
//! - No IO, no clock, no randomness: the same trees give the same plan. Time enters only as the
//!   pre-formatted stamp in [`PlanContext`].
//! - A change made on one side only is carried to the other side, never reverted.
//! - Nothing a user wrote is dropped: concurrent edits keep both versions (a conflicted copy),
//!   an edit beats a concurrent delete on either side.
//! - Every destructive local operation carries the content hash it expects to find, so the IO
//!   shell can refuse it when the file changed after the scan.
//! - Server-side deletions of an unusual share of the synced tree wait for the user
//!   ([`brake_deletes`]): absence is not deletion until someone says so.

mod brake;
mod clash;
mod conflict;
mod file_key;
mod planner;
mod synced;
mod unreadable;

pub use brake::{DeletePolicy, HeldDeletes, brake_deletes};
pub use clash::{RemoteNames, adopt_folder_spelling};
pub use conflict::conflicted_copy_name;
pub use file_key::FileKey;
pub use planner::{is_settled, plan, plan_paths, unsettled_paths};
pub use synced::{DiffBuilder, OutOfOrder, SyncedDiff, SyncedTree};
pub use syncsphere_protocol::ContentHash;
pub use unreadable::Unreadable;

use std::collections::BTreeMap;

/// A file as seen on local disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    pub sha256: ContentHash,
    pub size: u64,
}

/// A file as the server has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub file_id: FileKey,
    pub rev: i64,
    pub sha256: ContentHash,
}

/// The last state of a path that the device and the server agreed on: a server's revision,
/// so the same type (a settled path's entry *is* the remote tree's: [`SyncedTree`] keeps only
/// where they differ).
pub type SyncedFile = RemoteFile;

pub type LocalTree = BTreeMap<String, LocalFile>;
pub type RemoteTree = BTreeMap<String, RemoteFile>;

/// Inputs to planning that are not trees.
#[derive(Debug, Clone)]
pub struct PlanContext {
    /// Name of this device, used in conflicted-copy names.
    pub device_name: String,
    /// Local time formatted `YYYY-MM-DD HHMMSS`, used in conflicted-copy names.
    pub stamp: String,
    /// The device's disk folds case (macOS, Windows): two spellings of one name are one file.
    pub fold_case: bool,
}

/// One step of a plan. Operations in one plan touch disjoint paths, so their order does not
/// matter; each one re-checks its expectation at execution time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Send the local file to the server: create it (`parent_rev` = `None`) or replace revision
    /// `parent_rev`.
    Upload {
        path: String,
        parent_rev: Option<i64>,
    },
    /// Fetch the server's revision into `path`, if the local file still has `expect_local`
    /// (`None`: the path must not exist locally).
    Download {
        path: String,
        file: RemoteFile,
        expect_local: Option<ContentHash>,
    },
    /// Delete the file on the server (deleted locally, unchanged remotely).
    DeleteRemote {
        path: String,
        file_id: FileKey,
        rev: i64,
    },
    /// Delete the local file (deleted remotely) if it still has content `expect_sha256`.
    DeleteLocal {
        path: String,
        expect_sha256: ContentHash,
    },
    /// Rename on the server (renamed locally, unchanged remotely).
    MoveRemote {
        from: String,
        to: String,
        file_id: FileKey,
        rev: i64,
    },
    /// Rename the local file (renamed remotely) if it still has content `expect_sha256`;
    /// afterwards the synced tree holds `synced` at `to`.
    MoveLocal {
        from: String,
        to: String,
        expect_sha256: ContentHash,
        synced: SyncedFile,
    },
    /// Move the local version aside to `copy` (creating its directories), which then syncs as
    /// a new file, so the server's version can come down without losing either: both sides
    /// changed `path` differently, or the server would refuse `path` because of a file it keeps
    /// (the same name in another case, or a file where `path` has a directory or the reverse).
    ConflictCopy { path: String, copy: String },
    /// Both sides already agree; only the synced tree changes.
    RecordSynced {
        path: String,
        synced: Option<SyncedFile>,
    },
}

impl Op {
    /// The path the operation acts on (a move: where it starts), the one its failures are
    /// reported under.
    pub fn path(&self) -> &str {
        match self {
            Op::Upload { path, .. }
            | Op::Download { path, .. }
            | Op::DeleteRemote { path, .. }
            | Op::DeleteLocal { path, .. }
            | Op::ConflictCopy { path, .. }
            | Op::RecordSynced { path, .. } => path,
            Op::MoveRemote { from, .. } | Op::MoveLocal { from, .. } => from,
        }
    }
}
