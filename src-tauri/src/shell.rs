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
    let mut child = Command::new(program)
        .arg(folder)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // Reap it so no zombie is left behind; its exit status does not matter to us.
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
