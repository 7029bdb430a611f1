//! Desktop-shell actions shared by the tray menu and the window's commands: showing the
//! window, opening the synced folder in the file manager, quitting.

use std::path::Path;
use std::process::{Command, Stdio};

use tauri::{AppHandle, Manager as _};

use crate::DesktopState;

pub(crate) const MAIN_WINDOW: &str = "main";

pub(crate) fn show_window(app: &AppHandle) {
    if let Some(window) = app.get_webview_window(MAIN_WINDOW) {
        let shown = window
            .show()
            .and_then(|()| window.unminimize())
            .and_then(|()| window.set_focus());
        if let Err(err) = shown {
            tracing::warn!("could not show the window: {err}");
        }
    }
}

/// Opens the chosen folder in the platform's file manager; does nothing before one is chosen.
pub(crate) fn open_synced_folder(app: &AppHandle) {
    let state = app.state::<DesktopState>();
    match state.settings() {
        Ok(settings) => match settings.folder {
            Some(folder) => {
                if let Err(err) = open_in_file_manager(&folder) {
                    tracing::warn!(folder = %folder.display(), "could not open the folder: {err}");
                }
            }
            None => show_window(app),
        },
        Err(err) => tracing::warn!("{err:#}"),
    }
}

pub(crate) fn open_in_file_manager(folder: &Path) -> std::io::Result<()> {
    let program = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    spawn_detached(Command::new(program).arg(folder))
}

/// Shows `file` selected in the file manager: `open -R` on macOS, `explorer /select,` on
/// Windows; on Linux the freedesktop `FileManager1.ShowItems` D-Bus call (Nautilus, Dolphin,
/// Nemo, Caja), else the file's folder through `xdg-open`.
pub(crate) fn reveal_in_file_manager(file: &Path) -> std::io::Result<()> {
    if cfg!(target_os = "macos") {
        return spawn_detached(Command::new("open").arg("-R").arg(file));
    }
    if cfg!(windows) {
        let mut select = std::ffi::OsString::from("/select,");
        select.push(file);
        return spawn_detached(Command::new("explorer").arg(select));
    }
    let shown = Command::new("dbus-send")
        .args([
            "--session",
            "--print-reply",
            "--reply-timeout=2000",
            "--dest=org.freedesktop.FileManager1",
            "/org/freedesktop/FileManager1",
            "org.freedesktop.FileManager1.ShowItems",
        ])
        .arg(format!("array:string:{}", file_uri(file)))
        .arg("string:")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if shown {
        return Ok(());
    }
    tracing::debug!("no FileManager1 service; opening the file's folder instead");
    open_in_file_manager(file.parent().unwrap_or(file))
}

/// `file:///…` with every byte outside the unreserved set and `/` percent-encoded.
pub(crate) fn file_uri(path: &Path) -> String {
    let mut uri = String::from("file://");
    for b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                uri.push(char::from(*b))
            }
            _ => uri.push_str(&format!("%{b:02X}")),
        }
    }
    uri
}

/// Starts `cmd` and reaps it in the background, so no zombie is left behind; its exit status
/// does not matter to us.
fn spawn_detached(cmd: &mut Command) -> std::io::Result<()> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// Stops sync cleanly, then exits.
pub(crate) fn quit(app: &AppHandle) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        app.state::<DesktopState>().sync.stop().await;
        app.exit(0);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn file_uris_escape_what_a_uri_cannot_hold() {
        assert_eq!(
            file_uri(Path::new("/home/ada/Sync Sphere/naïve #1.txt")),
            "file:///home/ada/Sync%20Sphere/na%C3%AFve%20%231.txt"
        );
    }
}
