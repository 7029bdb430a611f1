//! The status stream the sync engine publishes for the GUI and the CLI.

use serde::{Deserialize, Serialize};

/// Overall state, as the tray icon and the window show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    /// Signed in, starting the first reconciliation.
    Starting,
    /// Local folder and server agree.
    UpToDate,
    /// Transfers or decisions are in progress.
    Syncing,
    /// The server cannot be reached; retrying with backoff.
    Offline,
    /// Something needs the user's attention (see `last_error`).
    Error,
    /// The user paused syncing: nothing is transferred until resumed.
    Paused,
    /// Sync was stopped.
    Stopped,
}

/// What kind of problem `last_error` describes: the app and the CLI decide on this, never by
/// reading the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The synced folder is not there (moved, renamed, deleted, or on a drive not mounted).
    FolderMissing,
    /// Something other than a folder is where the synced folder was.
    FolderNotADirectory,
    /// The folder is there but lacks its marker: most likely an empty mount point of a drive
    /// that is not mounted, or a folder replaced by another one.
    FolderMarkerMissing,
    /// A pass would delete many files on the server; it waits for the user ([`PendingDeletes`]).
    MassDeletePending,
    NotSignedIn,
    /// This device was unlinked from the account.
    DeviceRevoked,
    /// The account signed out of all devices: sign in again.
    SignedOut,
    /// Another SyncSphere client already syncs with this configuration directory.
    ConfigDirInUse,
    /// The server cannot be reached.
    Offline,
    /// The server refused the sign-in or the session.
    Auth,
    /// The server answered with an error.
    Server,
    /// Reading or writing local files failed.
    Io,
    /// The configuration or the local index is damaged or unusable.
    Config,
    /// The OS keychain could not be used.
    Keychain,
}

/// Server-side deletions held back until the user decides (see `sync-core`'s brake).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDeletes {
    /// How many files would be deleted on the server (and so on every other device).
    pub count: u64,
    /// How many files the folder had in sync.
    pub synced_files: u64,
    /// The first few of them, sorted.
    pub sample: Vec<String>,
    /// Names exactly this set: a confirmation says which set it confirms.
    pub fingerprint: String,
}

/// A path that does not sync, and why: a name the server refuses, a file that cannot be read,
/// an operation that failed and waits before the next try.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathProblem {
    pub path: String,
    pub message: String,
}

/// What happened to a file recently, for the activity list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentFile {
    pub path: String,
    /// `uploaded`, `downloaded`, `deleted_local`, `deleted_remote`, `moved_local`,
    /// `moved_remote` or `conflict_copy`.
    pub action: String,
    pub at_ms: i64,
}

/// Which way a file's bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Upload,
    Download,
}

/// A file being uploaded or downloaded right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferProgress {
    pub path: String,
    pub direction: Direction,
    /// Bytes of this file sent or received so far (a resumed download starts above zero).
    pub done: u64,
    /// The file's size (0 until a download's response says it).
    pub total: u64,
}

/// One snapshot of the status stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub state: SyncState,
    /// Whether the push WebSocket is connected.
    pub connected: bool,
    pub folder: String,
    pub email: String,
    pub device_name: String,
    /// Journal position this device has applied.
    pub cursor: i64,
    /// Files this device has in sync with the server.
    pub synced_files: u64,
    /// Operations planned but not done yet in the current round.
    pub pending: u64,
    /// Newest first, at most [`RECENT_LIMIT`].
    pub recent: Vec<RecentFile>,
    pub last_error: Option<String>,
    /// What kind of problem `last_error` is (`None` with no error, or a one-file problem).
    #[serde(default)]
    pub error_kind: Option<ErrorKind>,
    /// Server-side deletions waiting for the user's confirmation.
    #[serde(default)]
    pub pending_deletes: Option<PendingDeletes>,
    /// Paths that do not sync now, with the reason (at most [`PROBLEM_LIMIT`]).
    #[serde(default)]
    pub problems: Vec<PathProblem>,
    pub updated_ms: i64,
    /// File content bytes sent to / received from the server since sync started.
    #[serde(default)]
    pub bytes_uploaded: u64,
    #[serde(default)]
    pub bytes_downloaded: u64,
    /// Files being transferred right now, with their progress.
    #[serde(default)]
    pub transfers: Vec<TransferProgress>,
    /// The account's devices online right now (ids, sorted), from the push channel's presence
    /// messages; empty while disconnected. The window's device list refreshes when it changes.
    #[serde(default)]
    pub online_devices: Vec<String>,
    /// Counters of the engine's work since it started.
    #[serde(default)]
    pub work: EngineWork,
}

/// What the engine did since it started: how a user (or a test) sees that an idle client
/// does nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineWork {
    /// Sync passes started (by a watcher mark, a push, the poll, a retry).
    pub passes: u64,
    /// Passes that found something to look at and scanned the whole folder.
    pub full_scans: u64,
    /// Passes that scanned only the paths marked as changed.
    pub partial_scans: u64,
    /// Planning rounds that walked every path of the trees.
    #[serde(default)]
    pub full_plans: u64,
    /// Planning rounds that walked only the paths that differ from the synced tree.
    #[serde(default)]
    pub focused_plans: u64,
}

/// How many path problems the status lists.
pub const PROBLEM_LIMIT: usize = 50;

/// How many recent files the status keeps.
pub const RECENT_LIMIT: usize = 20;

impl Status {
    pub fn new(folder: String, email: String, device_name: String) -> Self {
        Status {
            state: SyncState::Starting,
            connected: false,
            folder,
            email,
            device_name,
            cursor: 0,
            synced_files: 0,
            pending: 0,
            recent: Vec::new(),
            last_error: None,
            error_kind: None,
            pending_deletes: None,
            problems: Vec::new(),
            updated_ms: 0,
            bytes_uploaded: 0,
            bytes_downloaded: 0,
            transfers: Vec::new(),
            online_devices: Vec::new(),
            work: EngineWork::default(),
        }
    }

    /// Enters the error state with `kind` and its message.
    pub(crate) fn fail(&mut self, kind: ErrorKind, message: String, now_ms: i64) {
        self.state = if kind == ErrorKind::Offline {
            SyncState::Offline
        } else {
            SyncState::Error
        };
        self.error_kind = Some(kind);
        self.last_error = Some(message);
        self.updated_ms = now_ms;
    }

    pub fn push_recent(&mut self, path: &str, action: &str, at_ms: i64) {
        self.recent.insert(
            0,
            RecentFile {
                path: path.to_owned(),
                action: action.to_owned(),
                at_ms,
            },
        );
        self.recent.truncate(RECENT_LIMIT);
    }

    /// One line for a tray tooltip or a terminal.
    pub fn summary(&self) -> String {
        match self.state {
            SyncState::Starting => "Starting…".to_owned(),
            SyncState::UpToDate => format!("Up to date ({} files)", self.synced_files),
            SyncState::Syncing => format!("Syncing {} change(s)…", self.pending.max(1)),
            SyncState::Offline => "Offline — retrying".to_owned(),
            SyncState::Error => format!(
                "Error: {}",
                self.last_error.as_deref().unwrap_or("unknown error")
            ),
            SyncState::Stopped => "Stopped".to_owned(),
            SyncState::Paused => "Paused".to_owned(),
        }
    }
}
