//! Where the desktop app keeps its state: the config directory (which it shares with
//! `sync-client`, which stores the session there) and `desktop.json` with the chosen folder,
//! the bandwidth limits, whether sync is paused and whether to show notifications.
//!
//! **Boundary:** no network, no sync engine, no Tauri — plain files and paths, so it is unit-tested.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// Overrides the config directory (tests point it at a temporary directory).
pub(crate) const CONFIG_DIR_ENV: &str = "SYNCSPHERE_CONFIG_DIR";
/// Presets the server URL on the sign-in screen.
pub(crate) const SERVER_URL_ENV: &str = "SYNCSPHERE_SERVER_URL";
pub(crate) const DEFAULT_SERVER_URL: &str = "http://127.0.0.1:8787";
const SETTINGS_FILE: &str = "desktop.json";

/// `$SYNCSPHERE_CONFIG_DIR`, else the platform config dir (`$XDG_CONFIG_HOME` or
/// `~/.config` on Linux) plus `syncsphere`.
pub(crate) fn config_dir() -> anyhow::Result<PathBuf> {
    config_dir_from(std::env::var_os(CONFIG_DIR_ENV), dirs::config_dir())
}

fn config_dir_from(env: Option<OsString>, platform: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match env {
        Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir)),
        _ => platform
            .map(|dir| dir.join("syncsphere"))
            .with_context(|| format!("no config directory on this system; set {CONFIG_DIR_ENV}")),
    }
}

/// The server URL to offer on the sign-in screen: the administrator's (system config), else
/// `$SYNCSPHERE_SERVER_URL`, else the local default.
pub(crate) fn preset_server_url(system: &syncsphere_sync_client::SystemConfig) -> String {
    system
        .server_url
        .clone()
        .or_else(|| {
            std::env::var(SERVER_URL_ENV)
                .ok()
                .filter(|url| !url.trim().is_empty())
        })
        .unwrap_or_else(|| DEFAULT_SERVER_URL.to_owned())
}

/// What the desktop app remembers between runs.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DesktopSettings {
    /// The synced folder; when set and signed in, the app resumes syncing at start.
    #[serde(default)]
    pub(crate) folder: Option<PathBuf>,
    /// Upload limit in KiB/s (`None`: unlimited).
    #[serde(default)]
    pub(crate) max_upload_kib: Option<u64>,
    /// Download limit in KiB/s (`None`: unlimited).
    #[serde(default)]
    pub(crate) max_download_kib: Option<u64>,
    /// The user paused syncing; it stays paused across restarts until resumed.
    #[serde(default)]
    pub(crate) paused: bool,
    /// The user turned desktop notifications (conflicts, errors) off; they are on by default.
    #[serde(default)]
    pub(crate) notifications_off: bool,
}

impl DesktopSettings {
    /// A missing file means "nothing chosen yet"; an unreadable one is an error.
    pub(crate) fn load(config_dir: &Path) -> anyhow::Result<Self> {
        let path = config_dir.join(SETTINGS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not valid settings JSON", path.display())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Written to a temporary file and renamed, so a crash never leaves half a file.
    pub(crate) fn save(&self, config_dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(config_dir)
            .with_context(|| format!("creating {}", config_dir.display()))?;
        let path = config_dir.join(SETTINGS_FILE);
        let tmp = config_dir.join(format!("{SETTINGS_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(self).context("encoding settings")?;
        std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))
    }
}

impl DesktopSettings {
    /// The limits as `sync-client` takes them (bytes per second); 0 means unlimited.
    pub(crate) fn sync_options(&self) -> syncsphere_sync_client::SyncOptions {
        let rate = |kib: Option<u64>| kib.filter(|&k| k > 0).map(|k| k.saturating_mul(1024));
        syncsphere_sync_client::SyncOptions {
            max_upload_rate: rate(self.max_upload_kib),
            max_download_rate: rate(self.max_download_kib),
            holder: "the SyncSphere desktop app".to_owned(),
            ..Default::default()
        }
    }
}

/// `~/SyncSphere`, or a relative `SyncSphere` when the home directory is unknown.
pub(crate) fn default_folder(home: Option<&Path>) -> PathBuf {
    home.map_or_else(|| PathBuf::from("SyncSphere"), |h| h.join("SyncSphere"))
}

/// Why a folder typed by the user was refused. `Display` is the message the window shows.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FolderError {
    #[error("Choose a folder to sync.")]
    Empty,
    #[error("Use a full path, such as ~/SyncSphere or /home/you/SyncSphere.")]
    Relative,
    #[error("Your home folder is not known on this system; type a full path instead of ~.")]
    NoHome,
    #[error("Pick a dedicated folder, not your whole home folder or the top of the disk.")]
    TooBroad,
}

/// Turns what the user typed into an absolute path: `~` expands to the home directory, and
/// relative paths and over-broad folders (home itself, `/`) are refused. No file system access.
pub(crate) fn resolve_folder(input: &str, home: Option<&Path>) -> Result<PathBuf, FolderError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(FolderError::Empty);
    }
    let path = if input == "~" {
        home.ok_or(FolderError::NoHome)?.to_path_buf()
    } else if let Some(rest) = input.strip_prefix("~/") {
        home.ok_or(FolderError::NoHome)?.join(rest)
    } else {
        PathBuf::from(input)
    };
    if !path.is_absolute() {
        return Err(FolderError::Relative);
    }
    let normalised: PathBuf = path.components().collect();
    if normalised.parent().is_none() || home.is_some_and(|h| normalised == h) {
        return Err(FolderError::TooBroad);
    }
    Ok(normalised)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_resolve(input: &str, expected: Result<&str, FolderError>) {
        let home = Path::new("/home/ada");
        let got = resolve_folder(input, Some(home));
        assert_eq!(got, expected.map(PathBuf::from), "input {input:?}");
    }

    #[cfg(unix)]
    #[test]
    fn folder_resolution() {
        check_resolve("~/SyncSphere", Ok("/home/ada/SyncSphere"));
        check_resolve("  ~/Work/Shared  ", Ok("/home/ada/Work/Shared"));
        check_resolve("/srv/sync/", Ok("/srv/sync"));
        check_resolve("", Err(FolderError::Empty));
        check_resolve("   ", Err(FolderError::Empty));
        check_resolve("SyncSphere", Err(FolderError::Relative));
        check_resolve("~", Err(FolderError::TooBroad));
        check_resolve("/home/ada/", Err(FolderError::TooBroad));
        check_resolve("/", Err(FolderError::TooBroad));
        assert_eq!(resolve_folder("~/x", None), Err(FolderError::NoHome));
    }

    #[test]
    fn config_dir_prefers_the_environment() {
        let platform = Some(PathBuf::from("/cfg"));
        let from_env = config_dir_from(Some("/tmp/t".into()), platform.clone()).unwrap();
        assert_eq!(from_env, PathBuf::from("/tmp/t"));
        let empty_env = config_dir_from(Some("".into()), platform).unwrap();
        assert_eq!(empty_env, PathBuf::from("/cfg/syncsphere"));
        assert!(config_dir_from(None, None).is_err());
    }

    #[test]
    fn limits_become_bytes_per_second_and_zero_is_unlimited() {
        let settings = DesktopSettings {
            max_upload_kib: Some(100),
            max_download_kib: Some(0),
            ..DesktopSettings::default()
        };
        let options = settings.sync_options();
        assert_eq!(options.max_upload_rate, Some(102_400));
        assert_eq!(options.max_download_rate, None);
    }

    #[test]
    fn settings_round_trip_and_missing_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("not-created-yet");
        assert_eq!(
            DesktopSettings::load(&dir).unwrap(),
            DesktopSettings::default()
        );
        let settings = DesktopSettings {
            folder: Some(PathBuf::from("/home/ada/SyncSphere")),
            max_upload_kib: Some(512),
            max_download_kib: None,
            paused: true,
            notifications_off: true,
        };
        settings.save(&dir).unwrap();
        assert_eq!(DesktopSettings::load(&dir).unwrap(), settings);
        // A file from before the limits existed still loads, with none set.
        std::fs::write(dir.join(SETTINGS_FILE), br#"{"folder": "/srv/s"}"#).unwrap();
        let old = DesktopSettings::load(&dir).unwrap();
        assert_eq!(old.folder, Some(PathBuf::from("/srv/s")));
        let options = old.sync_options();
        assert_eq!(
            (options.max_upload_rate, options.max_download_rate),
            (None, None)
        );
        std::fs::write(dir.join(SETTINGS_FILE), b"{not json").unwrap();
        assert!(DesktopSettings::load(&dir).is_err());
    }
}
