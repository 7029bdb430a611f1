//! The emblem socket: while sync runs, file-manager extensions (our Nautilus one,
//! `packaging/nautilus/syncsphere_emblems.py`) ask it which emblem a file gets.
//!
//! Where: `$XDG_RUNTIME_DIR/syncsphere/emblems.sock`, or `emblems.sock` in the config dir when
//! `XDG_RUNTIME_DIR` is unset; the directory is made mode 0700 and the socket 0600, so only
//! this user can connect.
//!
//! Protocol: lines of tab-separated fields, paths absolute and raw (bytes as the file system
//! has them; a path holding a newline cannot be asked about).
//! - request `STATE\t<path>\n` → reply `STATE\t<word>\t<path>\n`, where word is `synced`,
//!   `syncing`, `conflict`, `error`, `paused`, `ignored` or `none` (outside the synced
//!   folder, the client's `.syncsphere` folder, missing files) — see
//!   `syncsphere_sync_client::file_sync_state`;
//! - a request the server does not understand gets `ERROR\t<reason>\n` (a line longer than
//!   [`MAX_LINE`] also ends the connection); so does one it cannot answer now;
//! - pushed at any time: `CHANGED\t<path>\n`, the answer about that path may have changed —
//!   a transfer started or finished in it, it is a newly recent file, or it was answered
//!   "waiting" and the engine's state changed or it finished a pass. `CHANGED\t<folder>/\n`
//!   (trailing `/`) means everything under that folder (a client that fell behind).
//!
//! **Boundary**: answers come from `sync-client`'s `file_state` (the status stream, metadata
//! and the index read-only); this module never reads or writes a synced file.

use std::path::{Path, PathBuf};

use syncsphere_sync_client::Status;
use tokio::sync::watch;

/// Longest request line: Linux paths are at most 4096 bytes.
pub(crate) const MAX_LINE: usize = 8192;

const SOCKET_NAME: &str = "emblems.sock";

/// Where the socket lives: in `runtime_dir` (an absolute `XDG_RUNTIME_DIR`) or `config_dir`.
pub(crate) fn socket_path(runtime_dir: Option<&Path>, config_dir: &Path) -> PathBuf {
    runtime_dir
        .filter(|d| d.is_absolute())
        .map(|d| d.join("syncsphere"))
        .unwrap_or_else(|| config_dir.to_path_buf())
        .join(SOCKET_NAME)
}

/// The running socket server; [`EmblemServer::stop`] takes the socket away.
pub(crate) struct EmblemServer {
    #[cfg(unix)]
    inner: imp::Running,
}

impl EmblemServer {
    /// Serves the socket for the sync whose status is `status`, on systems with a file
    /// manager extension. Failures are logged, never fatal: sync works without emblems.
    pub(crate) async fn start(config_dir: &Path, status: watch::Receiver<Status>) -> Option<Self> {
        if !crate::file_manager::AVAILABLE {
            return None;
        }
        #[cfg(unix)]
        {
            let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
            let socket = socket_path(runtime.as_deref(), config_dir);
            match imp::Running::bind(socket.clone(), config_dir.to_path_buf(), status).await {
                Ok(inner) => {
                    tracing::info!(socket = %socket.display(), "emblem socket ready");
                    Some(EmblemServer { inner })
                }
                Err(err) => {
                    tracing::warn!(socket = %socket.display(), "no file emblems: {err:#}");
                    None
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = (config_dir, status);
            None
        }
    }

    pub(crate) async fn stop(self) {
        #[cfg(unix)]
        self.inner.stop().await;
    }
}

#[cfg(unix)]
mod imp;
