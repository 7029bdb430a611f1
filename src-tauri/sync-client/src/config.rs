//! What a device keeps in its config directory: `config.json` (server, account, device id),
//! `session.json` (tokens, mode 0600, unless they are in the keychain: [`crate::session`]),
//! `index.db` (local index) and `status.json` (last status).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use syncsphere_protocol::CognitoConfig;

use crate::SyncError;

/// The account and server a config directory is signed in to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientConfig {
    pub server_url: String,
    pub email: String,
    /// Stable id of this device, sent as `origin_device` with every change.
    pub device_id: String,
    pub cognito: CognitoConfig,
    /// State instances to push-connect to; empty means `server_url`.
    #[serde(default)]
    pub push_urls: Vec<String>,
    /// Where the session is kept (directories signed in before the keychain: the file).
    #[serde(default)]
    pub session_storage: crate::SessionStorage,
    /// The server takes chunked content ids (its `/v1/config` says so; refreshed at every
    /// start, kept for starts without the server).
    #[serde(default)]
    pub chunked_ids: bool,
}

/// Tokens of the signed-in user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Session {
    pub access_token: String,
    pub id_token: String,
    pub refresh_token: String,
    pub issued_ms: i64,
    pub expires_ms: i64,
}

pub(crate) fn config_path(dir: &Path) -> PathBuf {
    dir.join("config.json")
}
pub(crate) fn session_path(dir: &Path) -> PathBuf {
    dir.join("session.json")
}
pub(crate) fn status_path(dir: &Path) -> PathBuf {
    dir.join("status.json")
}
pub(crate) fn index_path(dir: &Path) -> PathBuf {
    dir.join("index.db")
}

/// Reads `config.json`; `None` when this directory was never signed in.
pub fn load_config(dir: &Path) -> Result<Option<ClientConfig>, SyncError> {
    read_json(&config_path(dir))
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<Option<T>, SyncError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| SyncError::Config(format!("{} is damaged: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SyncError::Io(format!("reading {}", path.display()), e)),
    }
}

/// Writes JSON atomically (temp file, fsync, rename); `private` files get mode 0600.
pub(crate) fn write_json<T: Serialize>(
    path: &Path,
    value: &T,
    private: bool,
) -> Result<(), SyncError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| SyncError::Io(format!("creating {}", dir.display()), e))?;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(value).expect("config types serialise"))?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    let _ = private;
    write().map_err(|e| SyncError::Io(format!("writing {}", path.display()), e))
}
