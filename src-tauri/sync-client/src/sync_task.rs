//! A running sync: [`start_sync`] takes the engine lock, links the folder (waiting while it
//! is missing), starts the watcher and the push connection around one [`Engine`] and mirrors
//! its status into `status.json`; [`SyncHandle`] pauses, nudges and stops it. Sign-in and the
//! account live in the crate root and [`crate::account`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::api::{self, Api};
use crate::auth::TokenSource;
use crate::engine::{self, Engine, Trigger};
use crate::index::Index;
use crate::push::{self, Push};
use crate::watcher::{DirtyPaths, OsWatch};
use crate::{
    ClientConfig, DeletePolicy, LinkMode, Status, SyncError, config, folder, forget_ended_session,
    forget_revoked_device, load_config, load_system_config, local_fs, lock, now_ms, scan,
};

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
    let api = Arc::new(
        Api::new(&config.server_url, tokens.clone(), config.device_id.clone())
            .with_limits(options.max_upload_rate, options.max_download_rate),
    );
    // Announce the device (name, platform) for the user's device list; offline is fine.
    match api.register_device(&device_name).await {
        Ok(()) => {}
        Err(e) if access_ended(&e) => return Err(forget_access(&config_dir, e).await?),
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

    // The watcher marks what changed and nudges the loop; it lives as long as the engine.
    let dirty = Arc::new(DirtyPaths::default());
    let watch_tx = trigger_tx.clone();
    let (watch, _) = OsWatch::start(&folder, dirty.clone(), move || {
        let _ = watch_tx.try_send(Trigger::Local);
    })
    .map_err(|e| {
        SyncError::Io(
            "starting the folder watcher".into(),
            std::io::Error::other(e),
        )
    })?;
    let watch = Arc::new(watch);

    // The server may have announced other push instances, or chunked ids, since sign-in;
    // fall back to what was stored when it cannot be asked.
    let mut config = config;
    match api::fetch_server_config(&config.server_url).await {
        Ok(server)
            if (&server.push_urls, server.chunked_ids)
                != (&config.push_urls, config.chunked_ids) =>
        {
            config.push_urls = server.push_urls;
            config.chunked_ids = server.chunked_ids;
            config::write_json(&config::config_path(&config_dir), &config, false)?;
        }
        Ok(_) => {}
        Err(e) => tracing::info!(error = %e, "using the stored server settings"),
    }
    api.set_chunked_ids(config.chunked_ids);
    let bases = if config.push_urls.is_empty() {
        vec![config.server_url.clone()]
    } else {
        config.push_urls.clone()
    };
    let ws_urls: Vec<String> = bases
        .iter()
        .map(|base| crate::push::push_socket_url(base))
        .collect();
    let push = Push {
        ws_urls,
        tokens: tokens.clone(),
        api: api.clone(),
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
        remote: api,
        fs,
        clock: Arc::new(engine::SystemClock),
        parallel_ops: engine::PARALLEL_OPS,
        aside_counter: Default::default(),
        placed: Default::default(),
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
        dirty,
        watch: watch.clone(),
        settled: false,
        folder_lost: false,
        last_full_scan: None,
        unreadable_retry: None,
        unsettled: None,
        remote_names: None,
        ignored_in_index: None,
    };
    tracing::info!(folder = %engine.folder.display(), server = %server_url, device = %config.device_id, "sync started");
    let outcome = engine.run(trigger_rx, stop).await;
    push_task.abort();
    let _ = push_task.await;
    drop(watch);
    match outcome {
        Err(e) if access_ended(&e) => Err(forget_access(&config_dir, e).await?),
        _ => Ok(()),
    }
}

/// The server ended this device's access: the device was revoked, or the account signed out
/// everywhere.
fn access_ended(e: &SyncError) -> bool {
    matches!(e, SyncError::DeviceRevoked | SyncError::SignedOut)
}

/// Forgets what an ended access leaves (a revoked device its session and id, a signed-out one
/// its session); returns the error to stop with.
async fn forget_access(config_dir: &Path, e: SyncError) -> Result<SyncError, SyncError> {
    match e {
        SyncError::DeviceRevoked => forget_revoked_device(config_dir).await?,
        _ => forget_ended_session(config_dir).await,
    }
    Ok(e)
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
