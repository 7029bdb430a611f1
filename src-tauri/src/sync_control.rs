//! Owns the one running sync (a `sync-client` [`SyncHandle`]) and forwards its status stream
//! to the window (event [`STATUS_EVENT`]) and to the tray.
//!
//! **Invariant:** at most one sync runs; starting a new one stops the old one first.

use std::path::Path;
use std::time::Duration;

use syncsphere_sync_client::{Status, SyncError, SyncHandle, SyncOptions};
use tauri::async_runtime::JoinHandle;
use tauri::{AppHandle, Emitter as _, Manager as _};
use tokio::sync::{Mutex, watch};

use crate::{DesktopState, notices, tray};

/// Event carrying a [`Status`] each time it changes.
pub(crate) const STATUS_EVENT: &str = "status";

/// How long a stopped sync's final status may take to reach the window before we give up.
const FORWARDER_GRACE: Duration = Duration::from_secs(2);

#[derive(Default)]
pub(crate) struct SyncControl {
    running: Mutex<Option<RunningSync>>,
}

struct RunningSync {
    handle: SyncHandle,
    forwarder: JoinHandle<()>,
    emblems: Option<crate::emblems::EmblemServer>,
}

impl SyncControl {
    /// Starts syncing `folder` (paused from the start when `paused`), replacing any sync already
    /// running. Must run inside the Tauri async runtime, because `start_sync` spawns tasks.
    pub(crate) async fn start(
        &self,
        app: &AppHandle,
        config_dir: &Path,
        folder: &Path,
        options: SyncOptions,
        paused: bool,
    ) -> Result<Status, SyncError> {
        let mut running = self.running.lock().await;
        if let Some(old) = running.take() {
            old.stop().await;
        }
        let handle =
            syncsphere_sync_client::start_sync_with(config_dir, folder, &device_name(), options)?;
        if paused {
            handle.set_paused(true);
        }
        let first = handle.status.borrow().clone();
        let forwarder =
            tauri::async_runtime::spawn(forward_status(app.clone(), handle.status.clone()));
        let emblems = crate::emblems::EmblemServer::start(config_dir, handle.status.clone()).await;
        *running = Some(RunningSync {
            handle,
            forwarder,
            emblems,
        });
        tracing::info!(folder = %folder.display(), "sync started");
        Ok(first)
    }

    /// Stops the running sync, if any, and waits until it has shut down.
    pub(crate) async fn stop(&self) {
        let old = self.running.lock().await.take();
        if let Some(old) = old {
            old.stop().await;
            tracing::info!("sync stopped");
        }
    }

    /// Whether a running sync is paused (`false` also when nothing runs).
    pub(crate) async fn is_paused(&self) -> bool {
        let running = self.running.lock().await;
        running.as_ref().is_some_and(|r| r.handle.is_paused())
    }

    /// Pauses or resumes a running sync; `false` when nothing runs.
    pub(crate) async fn set_paused(&self, paused: bool) -> bool {
        let running = self.running.lock().await;
        let Some(r) = running.as_ref() else {
            return false;
        };
        r.handle.set_paused(paused);
        tracing::info!(paused, "sync pause set");
        true
    }

    /// Runs a sync pass now rather than at the next push or poll: the tray's "Sync now", and
    /// after a restore or an undelete made from this device, which the server does not push
    /// back to it. A paused sync stays paused.
    pub(crate) async fn sync_now(&self) {
        let running = self.running.lock().await;
        if let Some(r) = running.as_ref() {
            r.handle.sync_now();
            tracing::info!("sync pass requested");
        }
    }

    pub(crate) async fn is_running(&self) -> bool {
        self.running.lock().await.is_some()
    }

    /// The latest status of the running sync.
    pub(crate) async fn current(&self) -> Option<Status> {
        let running = self.running.lock().await;
        running.as_ref().map(|r| r.handle.status.borrow().clone())
    }
}

impl RunningSync {
    async fn stop(self) {
        let RunningSync {
            handle,
            mut forwarder,
            emblems,
        } = self;
        if let Some(emblems) = emblems {
            emblems.stop().await;
        }
        handle.stop().await;
        // The forwarder ends once the engine drops its status sender; don't hang if it doesn't.
        if tokio::time::timeout(FORWARDER_GRACE, &mut forwarder)
            .await
            .is_err()
        {
            forwarder.abort();
        }
    }
}

async fn forward_status(app: AppHandle, mut status: watch::Receiver<Status>) {
    loop {
        let current = status.borrow_and_update().clone();
        if let Err(err) = app.emit(STATUS_EVENT, &current) {
            tracing::warn!("could not send status to the window: {err}");
        }
        tray::show_status(&app, &current);
        notices::send(&app, app.state::<DesktopState>().notices_for(&current));
        if status.changed().await.is_err() {
            break;
        }
    }
}

/// The name this computer registers under: its hostname.
pub(crate) fn device_name() -> String {
    whoami::fallible::hostname()
        .ok()
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| "SyncSphere desktop".to_owned())
}
