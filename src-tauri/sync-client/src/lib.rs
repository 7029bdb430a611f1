//! `sync-client`: the IO shell around `sync-core` — sign-in, the local index, the folder
//! watcher and scanner, REST transfers and the push WebSocket. The CLI and the desktop app both
//! drive sync through this crate's small public API; neither has sync logic of its own.
//!
//! **Invariants**
//! - Decisions come from `syncsphere_sync_core::plan` only; this crate executes them and
//!   re-checks each operation's expectation against the disk right before acting.
//! - Downloads land in `<folder>/.syncsphere/tmp`, are fsynced and hash-checked, then renamed
//!   over the target: a partial download never replaces a file.
//! - Passwords are never stored; tokens live in the OS keychain or `session.json` (mode 0600),
//!   wherever `config.json` says ([`session`]).

mod account;
mod api;
mod auth;
mod chunker;
mod config;
mod conflicts;
mod deletes;
mod engine;
mod file_state;
mod folder;
mod ignore_file;
mod index;
mod local_fs;
mod lock;
mod push;
mod remote;
mod scan;
mod session;
#[cfg(test)]
mod sim;
pub mod status;
mod system;
mod throttle;
mod transfer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::Watcher;
use syncsphere_protocol::ErrorCode;
use tokio::sync::{mpsc, watch};

pub use account::{FileHistory, file_history, files, restore_revision, revisions, trash, undelete};
pub use config::{ClientConfig, load_config};
pub use conflicts::{ConflictedCopy, Resolution, conflicted_copies, resolve_conflict};
pub use deletes::{DeleteDecision, decide_deletes};
pub use file_state::{
    FileStateReader, FileSyncState, PathFacts, PathKind, file_sync_state, relative_path,
    verified_since,
};
pub use folder::{FolderProblem, LinkMode};
pub use ignore_file::{read_ignore_rules, write_ignore_rules};
pub use session::SessionStorage;
pub use status::{
    Direction, ErrorKind, PathProblem, PendingDeletes, RecentFile, Status, SyncState,
    TransferProgress,
};
pub use syncsphere_protocol::{
    Device, DeviceList, ErrorCode as ServerErrorCode, FileMeta, Revision,
};
pub use syncsphere_sync_core::DeletePolicy;
pub use system::{
    CognitoPreset, SYSTEM_CONFIG_ENV, SystemConfig, load_system_config, system_config_path,
};

use crate::api::Api;
use crate::auth::{Cognito, TokenSource};
use crate::engine::{Engine, Trigger};
use crate::index::Index;
use crate::push::Push;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("offline: {0}")]
    Offline(String),
    #[error("{0}")]
    Auth(String),
    #[error("not signed in; run `syncsphere login` (or sign in from the app) first")]
    NotSignedIn,
    #[error("configuration problem: {0}")]
    Config(String),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("local index problem: {0}")]
    Index(String),
    #[error("server error {status} ({code:?}): {message}")]
    Server {
        status: u16,
        code: ErrorCode,
        message: String,
    },
    #[error("the file changed on the server meanwhile")]
    Conflict(Option<Box<syncsphere_protocol::FileMeta>>),
    #[error("network error: {0}")]
    Http(String),
    #[error("this device was unlinked from your account; sign in again to keep syncing")]
    DeviceRevoked,
    /// The file changed since it was hashed (it is still being written); retried shortly.
    #[error("'{0}' is still being written")]
    Busy(String),
    /// The OS keychain holding the session could not be used; the message says what to do.
    #[error("{0}")]
    Keychain(String),
    /// The synced folder is not the linked one right now; nothing is synced until it is back.
    #[error(transparent)]
    Folder(#[from] FolderProblem),
    /// Another client holds this configuration directory (the message names it).
    #[error("{0}")]
    InUse(String),
}

impl SyncError {
    /// The kind the status stream reports for this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SyncError::Offline(_) => ErrorKind::Offline,
            SyncError::Http(_) => ErrorKind::Server,
            SyncError::Auth(_) => ErrorKind::Auth,
            SyncError::NotSignedIn => ErrorKind::NotSignedIn,
            SyncError::Config(_) | SyncError::Index(_) => ErrorKind::Config,
            SyncError::Io(..) | SyncError::Busy(_) => ErrorKind::Io,
            SyncError::Server { .. } | SyncError::Conflict(_) => ErrorKind::Server,
            SyncError::DeviceRevoked => ErrorKind::DeviceRevoked,
            SyncError::Keychain(_) => ErrorKind::Keychain,
            SyncError::Folder(p) => p.kind(),
            SyncError::InUse(_) => ErrorKind::ConfigDirInUse,
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Creates an account on the server, then signs in (see [`sign_in`]).
pub async fn sign_up(
    config_dir: &Path,
    server_url: &str,
    email: &str,
    password: &str,
    storage: SessionStorage,
) -> Result<SessionStorage, SyncError> {
    let system = load_system_config()?;
    let server_url = system.resolve_server_url(Some(server_url))?;
    let server = server_config(&server_url, &system).await?;
    Cognito::new(&server.cognito)
        .await
        .sign_up(email, password)
        .await?;
    tracing::info!(email, "account created");
    sign_in(config_dir, &server_url, email, password, storage).await
}

/// The server's `/v1/config`, with the administrator's Cognito preset applied.
async fn server_config(
    server_url: &str,
    system: &SystemConfig,
) -> Result<syncsphere_protocol::ServerConfig, SyncError> {
    let mut server = api::fetch_server_config(server_url).await?;
    if let Some(preset) = &system.cognito {
        preset.apply(&mut server.cognito);
    }
    Ok(server)
}

/// Signs in and stores the session and the server settings in `config_dir`. Signing in to a
/// different account or server than before forgets the old sync state of this directory.
/// The session goes where `storage` asks; when that is the keychain and no keychain service
/// takes it, into `session.json`. Returns where it went.
pub async fn sign_in(
    config_dir: &Path,
    server_url: &str,
    email: &str,
    password: &str,
    storage: SessionStorage,
) -> Result<SessionStorage, SyncError> {
    let system = load_system_config()?;
    let server_url = system.resolve_server_url(Some(server_url))?;
    let server_url = server_url.as_str();
    let server = server_config(server_url, &system).await?;
    let previous = load_config(config_dir)?;
    let same_account = previous
        .as_ref()
        .is_some_and(|p| p.server_url == server_url && p.email == email);
    let mut device_id = previous
        .as_ref()
        .filter(|_| same_account)
        .map(|p| p.device_id.clone())
        .unwrap_or_else(new_device_id);
    let cognito = Cognito::new(&server.cognito).await;
    let device_keys = server.cognito.device_keys;
    let session = match cognito
        .sign_in(email, password, device_keys.then_some(device_id.as_str()))
        .await
    {
        // This device id was unlinked: sign in as a new device (the index stays valid).
        Err(SyncError::DeviceRevoked) => {
            device_id = new_device_id();
            cognito
                .sign_in(email, password, device_keys.then_some(device_id.as_str()))
                .await?
        }
        other => other?,
    };
    // Another account's index must go, never while an engine runs on it (held until the new
    // config is written, so no engine starts in between).
    let _lock = if previous.is_some() && !same_account {
        let lock = lock::EngineLock::acquire(config_dir, "signing in")?;
        index::remove_index(&config::index_path(config_dir))?;
        Some(lock)
    } else {
        None
    };
    let mut config = ClientConfig {
        server_url: server_url.to_owned(),
        email: email.to_owned(),
        device_id,
        cognito: server.cognito,
        push_urls: server.push_urls,
        session_storage: storage,
    };
    // A session kept elsewhere before (the keychain, signing in now without it) goes first.
    if let Some(previous) = &previous
        && previous.session_storage != storage
    {
        session::SessionStore::of(config_dir, previous)
            .forget(config_dir)
            .await
            .unwrap_or_else(|e| tracing::warn!("the previous session stays behind: {e}"));
    }
    config.session_storage = session::save_new(config_dir, &config, storage, &session).await?;
    config::write_json(&config::config_path(config_dir), &config, false)?;
    Ok(config.session_storage)
}

/// Whether `config_dir` is signed in: it has a config and a session (in the file or the
/// keychain). A keychain that cannot be read is an error, not "signed out".
pub async fn is_signed_in(config_dir: &Path) -> Result<bool, SyncError> {
    match load_config(config_dir)? {
        Some(config) => session::has_session(config_dir, &config).await,
        None => Ok(false),
    }
}

/// Moves a file-kept session into the keychain (the desktop app does this at start, for
/// directories signed in before it used the keychain or while no keychain service ran).
/// Returns where the session is now; without a keychain it stays in the file.
pub async fn move_session_to_keychain(config_dir: &Path) -> Result<SessionStorage, SyncError> {
    let Some(mut config) = load_config(config_dir)? else {
        return Err(SyncError::NotSignedIn);
    };
    if config.session_storage == SessionStorage::Keychain {
        return Ok(SessionStorage::Keychain);
    }
    let session = session::SessionStore::of(config_dir, &config)
        .load()
        .await?;
    if !session::move_to_keychain(config_dir, &config, &session).await? {
        return Ok(SessionStorage::File);
    }
    config.session_storage = SessionStorage::Keychain;
    if let Err(e) = config::write_json(&config::config_path(config_dir), &config, false) {
        // The file is gone already: put it back so the config and the session agree.
        config::write_json(&config::session_path(config_dir), &session, true)?;
        return Err(e);
    }
    tracing::info!("moved the session into the keychain");
    Ok(SessionStorage::Keychain)
}

fn new_device_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// After the server said this device was revoked: forget the session and the device id, so
/// the next sign-in registers a new device. The index stays (nothing is re-transferred).
async fn forget_revoked_device(config_dir: &Path) -> Result<(), SyncError> {
    // The tokens are dead anyway; a keychain that cannot be reached now keeps a dead one.
    if let Err(e) = sign_out(config_dir).await {
        tracing::warn!("could not forget the revoked session: {e}");
    }
    if let Some(mut config) = load_config(config_dir)? {
        config.device_id = new_device_id();
        config::write_json(&config::config_path(config_dir), &config, false)?;
    }
    Ok(())
}

/// The account's devices (`GET /v1/devices`), as the signed-in device sees them.
pub async fn devices(config_dir: &Path) -> Result<syncsphere_protocol::DeviceList, SyncError> {
    signed_in_api(config_dir).await?.devices().await
}

/// Revokes ("unlinks") one of the account's devices.
pub async fn revoke_device(config_dir: &Path, device_id: &str) -> Result<(), SyncError> {
    signed_in_api(config_dir)
        .await?
        .revoke_device(device_id)
        .await
}

async fn signed_in_api(config_dir: &Path) -> Result<Api, SyncError> {
    let config = load_config(config_dir)?.ok_or(SyncError::NotSignedIn)?;
    let tokens = Arc::new(TokenSource::load(config_dir, &config).await?);
    Ok(Api::new(&config.server_url, tokens, config.device_id))
}

/// Forgets the session, in the keychain and the file (the index stays, so signing in again
/// resumes without re-transfers).
pub async fn sign_out(config_dir: &Path) -> Result<(), SyncError> {
    match load_config(config_dir)? {
        Some(config) => {
            session::SessionStore::of(config_dir, &config)
                .forget(config_dir)
                .await
        }
        None => {
            session::SessionStore::File(config::session_path(config_dir))
                .forget(config_dir)
                .await
        }
    }
}

/// The last status a running sync wrote into `config_dir` (for `syncsphere status`).
pub fn last_status(config_dir: &Path) -> Result<Option<Status>, SyncError> {
    config::read_json(&config::status_path(config_dir))
}

/// A running sync. Dropping it without [`SyncHandle::stop`] leaves the tasks running until the
/// runtime ends.
pub struct SyncHandle {
    pub status: watch::Receiver<Status>,
    stop: watch::Sender<bool>,
    pause: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl SyncHandle {
    /// Pauses (after the operation in progress) or resumes syncing. While paused nothing is
    /// transferred; the push connection stays up, and resuming catches up at once.
    pub fn set_paused(&self, paused: bool) {
        self.pause.send_replace(paused);
    }

    pub fn is_paused(&self) -> bool {
        *self.pause.borrow()
    }

    /// Runs a sync pass now (after the one in progress) instead of at the next push or poll.
    /// A paused sync stays paused. A `watch` send wakes the engine's wait even when the value
    /// does not change; a paused engine re-checks the value and goes on waiting.
    pub fn sync_now(&self) {
        self.pause.send_modify(|_| {});
    }

    /// Stops syncing and waits until the current operation has finished.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

/// Tunables of a running sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOptions {
    /// Upload limit in bytes per second (`None`: unlimited).
    pub max_upload_rate: Option<u64>,
    /// Download limit in bytes per second (`None`: unlimited).
    pub max_download_rate: Option<u64>,
    /// How the folder is linked at start ("start over with an empty folder").
    pub link: LinkMode,
    /// When server-side deletions wait for the user's confirmation.
    pub delete_policy: DeletePolicy,
    /// Who runs the engine, named to a second client that finds the directory in use.
    pub holder: String,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            max_upload_rate: None,
            max_download_rate: None,
            link: LinkMode::Normal,
            delete_policy: DeletePolicy::default(),
            holder: "a SyncSphere client".to_owned(),
        }
    }
}

/// Starts syncing `folder` with the account signed in to in `config_dir`. Must be called within
/// a tokio runtime. Problems (not signed in, server down) show in the status stream.
pub fn start_sync(
    config_dir: &Path,
    folder: &Path,
    device_name: &str,
) -> Result<SyncHandle, SyncError> {
    start_sync_with(config_dir, folder, device_name, SyncOptions::default())
}

/// [`start_sync`] with options.
pub fn start_sync_with(
    config_dir: &Path,
    folder: &Path,
    device_name: &str,
    options: SyncOptions,
) -> Result<SyncHandle, SyncError> {
    let config = load_config(config_dir)?.ok_or(SyncError::NotSignedIn)?;
    // One engine per directory, refused at once (not in the status stream) so a second
    // `syncsphere sync` or app says so and exits.
    let lock = lock::EngineLock::acquire(config_dir, &options.holder)?;
    // Never created here: whether a missing folder may be created is the link's decision.
    let folder = folder::absolute(folder)?;
    let initial = Status::new(
        folder.display().to_string(),
        config.email.clone(),
        device_name.to_owned(),
    );
    let (status_tx, status_rx) = watch::channel(initial);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (pause_tx, pause_rx) = watch::channel(false);
    let config_dir = config_dir.to_path_buf();
    let device_name = device_name.to_owned();
    let task = tokio::spawn(async move {
        let _lock = lock;
        let status = status_tx.clone();
        let writer = tokio::spawn(write_status(config_dir.clone(), status_tx.subscribe()));
        if let Err(e) = run(
            config,
            config_dir,
            folder,
            device_name,
            options,
            status_tx,
            (stop_rx, pause_rx),
        )
        .await
        {
            tracing::error!(error = %e, "sync could not start");
            status.send_modify(|s| s.fail(e.kind(), e.to_string(), now_ms()));
        }
        drop(status);
        let _ = writer.await;
    });
    Ok(SyncHandle {
        status: status_rx,
        stop: stop_tx,
        pause: pause_tx,
        task,
    })
}

async fn run(
    config: ClientConfig,
    config_dir: PathBuf,
    folder: PathBuf,
    device_name: String,
    options: SyncOptions,
    status: watch::Sender<Status>,
    (stop, paused): (watch::Receiver<bool>, watch::Receiver<bool>),
) -> Result<(), SyncError> {
    load_system_config()?.check_server(&config.server_url)?;
    let tokens = Arc::new(TokenSource::load(&config_dir, &config).await?);
    let api = Api::new(&config.server_url, tokens.clone(), config.device_id.clone())
        .with_limits(options.max_upload_rate, options.max_download_rate);
    // Announce the device (name, platform) for the user's device list; offline is fine.
    match api.register_device(&device_name).await {
        Ok(()) => {}
        Err(SyncError::DeviceRevoked) => {
            forget_revoked_device(&config_dir).await?;
            return Err(SyncError::DeviceRevoked);
        }
        Err(e) => {
            tracing::info!(error = %e, "could not register the device (will retry next start)")
        }
    }
    let index = Index::open(&config::index_path(&config_dir)).await?;
    let fs: Arc<dyn local_fs::LocalFs> = Arc::new(local_fs::RealFs);
    let Some(linked) = link_folder(
        fs.as_ref(),
        &index,
        &folder,
        options.link,
        &status,
        stop.clone(),
    )
    .await?
    else {
        return Ok(()); // stopped while waiting for the folder
    };
    remove_stale_partials(&folder);
    let case_insensitive = scan::folder_ignores_case(fs.as_ref(), &folder)
        .map_err(|e| SyncError::Io(format!("probing {}", folder.display()), e))?;
    if case_insensitive {
        tracing::info!("the folder's filesystem ignores case; folders take the server's spelling");
    }
    let cursor = index.cursor().await?;
    let (cursor_tx, cursor_rx) = watch::channel(cursor);
    let (trigger_tx, trigger_rx) = mpsc::channel(16);

    // Keep the watcher alive for the whole run; its callback only nudges the loop.
    let watch_tx = trigger_tx.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(ev) => ev
                .paths
                .iter()
                .any(|p| !p.components().any(|c| c.as_os_str() == scan::STATE_DIR)),
            Err(_) => true,
        };
        if relevant {
            let _ = watch_tx.try_send(Trigger::Local);
        }
    })
    .map_err(|e| {
        SyncError::Io(
            "starting the folder watcher".into(),
            std::io::Error::other(e),
        )
    })?;
    watcher
        .watch(&folder, notify::RecursiveMode::Recursive)
        .map_err(|e| {
            SyncError::Io(
                format!("watching {}", folder.display()),
                std::io::Error::other(e),
            )
        })?;

    // The server may have announced other push instances since sign-in; fall back to what
    // was stored when it cannot be asked.
    let mut config = config;
    match api::fetch_server_config(&config.server_url).await {
        Ok(server) if server.push_urls != config.push_urls => {
            config.push_urls = server.push_urls;
            config::write_json(&config::config_path(&config_dir), &config, false)?;
        }
        Ok(_) => {}
        Err(e) => tracing::info!(error = %e, "using the stored push URLs"),
    }
    let bases = if config.push_urls.is_empty() {
        vec![config.server_url.clone()]
    } else {
        config.push_urls.clone()
    };
    let ws_urls: Vec<String> = bases
        .iter()
        .map(|base| {
            format!(
                "{}/v1/ws",
                base.trim_end_matches('/')
                    .replacen("https://", "wss://", 1)
                    .replacen("http://", "ws://", 1)
            )
        })
        .collect();
    let push = Push {
        ws_urls,
        tokens: tokens.clone(),
        device_id: config.device_id.clone(),
        device_name: device_name.clone(),
        cursor: cursor_rx,
        triggers: trigger_tx.clone(),
        status: status.clone(),
    };
    let push_task = tokio::spawn(push.run(stop.clone()));
    let server_url = api.base().to_owned();
    let engine = Engine {
        folder,
        linked,
        config_dir: config_dir.clone(),
        delete_policy: options.delete_policy,
        approved_deletes: Default::default(),
        held_deletes: None,
        failing: Default::default(),
        disk_paths: Default::default(),
        remote: Arc::new(api),
        fs,
        clock: Arc::new(engine::SystemClock),
        parallel_ops: engine::PARALLEL_OPS,
        aside_counter: Default::default(),
        index,
        device_name,
        scanner: scan::Scanner::default(),
        status,
        cursor: cursor_tx,
        last_local: Default::default(),
        retry_soon: false,
        paused,
        transfers: Default::default(),
        case_insensitive,
    };
    tracing::info!(folder = %engine.folder.display(), server = %server_url, device = %config.device_id, "sync started");
    let outcome = engine.run(trigger_rx, stop).await;
    push_task.abort();
    let _ = push_task.await;
    drop(watcher);
    if let Err(SyncError::DeviceRevoked) = outcome {
        forget_revoked_device(&config_dir).await?;
        return Err(SyncError::DeviceRevoked);
    }
    Ok(())
}

/// Links the folder, waiting (with backoff, the problem in the status) while the linked folder
/// is missing, not a folder, or unmarked: a drive mounted later resumes sync by itself.
/// `None` when stopped meanwhile.
async fn link_folder(
    fs: &dyn local_fs::LocalFs,
    index: &Index,
    folder: &Path,
    mode: LinkMode,
    status: &watch::Sender<Status>,
    mut stop: watch::Receiver<bool>,
) -> Result<Option<folder::LinkedFolder>, SyncError> {
    let mut failures = 0;
    loop {
        match folder::link(fs, index, folder, mode).await {
            Ok(linked) => return Ok(Some(linked)),
            Err(SyncError::Folder(problem)) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(kind = ?problem.kind(), "{problem}");
                }
                status.send_modify(|s| s.fail(problem.kind(), problem.to_string(), now_ms()));
            }
            Err(e) => return Err(e),
        }
        tokio::select! {
            _ = tokio::time::sleep(push::backoff(failures)) => {}
            _ = stop.changed() => return Ok(None),
        }
    }
}

/// Partial downloads are kept for resuming; ones untouched for a week will never resume.
fn remove_stale_partials(folder: &Path) {
    let tmp = folder.join(scan::STATE_DIR).join("tmp");
    let Ok(entries) = std::fs::read_dir(&tmp) else {
        return;
    };
    let week = std::time::Duration::from_secs(7 * 24 * 3600);
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|m| m.elapsed().is_ok_and(|age| age > week));
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Mirrors the status stream into `status.json` for `syncsphere status`.
async fn write_status(config_dir: PathBuf, mut rx: watch::Receiver<Status>) {
    let path = config::status_path(&config_dir);
    loop {
        let snapshot = rx.borrow_and_update().clone();
        if let Err(e) = config::write_json(&path, &snapshot, false) {
            tracing::warn!(error = %e, "could not write status");
        }
        if rx.changed().await.is_err() {
            let last = rx.borrow().clone();
            let _ = config::write_json(&path, &last, false);
            return;
        }
        // Coalesce bursts of updates.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
