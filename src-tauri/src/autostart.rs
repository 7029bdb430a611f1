//! Start at login. On Linux (and other freedesktop systems) it is an autostart entry,
//! `$XDG_CONFIG_HOME/autostart/syncsphere-desktop.desktop`, that starts the app with
//! [`HIDDEN_ARG`] so only the tray icon appears. macOS (a login item) and Windows (the `Run`
//! registry key) are not done yet: there the setting says it is unavailable.
//!
//! **Boundary:** plain files, no Tauri — unit-tested against a temporary directory.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The app was started at login: keep the window hidden, show only the tray icon.
pub(crate) const HIDDEN_ARG: &str = "--hidden";

const ENTRY_NAME: &str = "syncsphere-desktop.desktop";

/// Whether this system has start at login here.
pub(crate) const AVAILABLE: bool = cfg!(all(unix, not(target_os = "macos")));

fn entry_path(config_home: &Path) -> PathBuf {
    config_home.join("autostart").join(ENTRY_NAME)
}

pub(crate) fn is_enabled(config_home: &Path) -> bool {
    entry_path(config_home).is_file()
}

/// Writes or removes the autostart entry that starts `exe` at login.
pub(crate) fn set_enabled(config_home: &Path, exe: &Path, enabled: bool) -> anyhow::Result<()> {
    let path = entry_path(config_home);
    if !enabled {
        return match std::fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(err).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        };
    }
    let dir = config_home.join("autostart");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!("{ENTRY_NAME}.tmp"));
    std::fs::write(&tmp, entry(exe)).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

/// A program path as a desktop entry's `Exec` takes it, quoted as the Desktop Entry
/// Specification asks.
pub(crate) fn exec_quoted(exe: &Path) -> String {
    let mut quoted = String::from("\"");
    for c in exe.to_string_lossy().chars() {
        if matches!(c, '"' | '`' | '$' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// The desktop entry.
fn entry(exe: &Path) -> String {
    let quoted = exec_quoted(exe);
    format!(
        "[Desktop Entry]\nType=Application\nName=SyncSphere\n\
         Comment=Keeps a folder in sync with your SyncSphere account\n\
         Exec={quoted} {HIDDEN_ARG}\nIcon=syncsphere-desktop\nTerminal=false\n\
         X-GNOME-Autostart-enabled=true\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabling_writes_an_entry_that_starts_hidden_and_disabling_removes_it() {
        let home = tempfile::tempdir().unwrap();
        assert!(!is_enabled(home.path()));
        set_enabled(home.path(), Path::new("/usr/bin/syncsphere-desktop"), true).unwrap();
        assert!(is_enabled(home.path()));
        let text = std::fs::read_to_string(entry_path(home.path())).unwrap();
        assert!(
            text.contains("\nExec=\"/usr/bin/syncsphere-desktop\" --hidden\n"),
            "{text}"
        );
        set_enabled(home.path(), Path::new("/x"), false).unwrap();
        assert!(!is_enabled(home.path()));
        // Disabling twice is fine.
        set_enabled(home.path(), Path::new("/x"), false).unwrap();
    }

    #[test]
    fn exec_paths_are_quoted() {
        let text = entry(Path::new("/opt/My \"Apps\"/$sync"));
        assert!(
            text.contains("Exec=\"/opt/My \\\"Apps\\\"/\\$sync\" --hidden"),
            "{text}"
        );
    }
}
