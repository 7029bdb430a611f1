//! The tray icon: its menu (status line, Open SyncSphere, Open folder, Sync now, Pause/Resume
//! syncing, Recently changed files, Quit), and an icon and tooltip that follow the sync status.
//!
//! Linux tray hosts ignore tooltips, so the status line is also the first (disabled) menu item.

use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use syncsphere_sync_client::{Status, SyncState};
use tauri::image::Image;
use tauri::menu::{Menu, MenuEvent, MenuItem, PredefinedMenuItem, Submenu};
use tauri::tray::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager as _, Wry};

use crate::shell;

const TRAY_ID: &str = "main";
const ITEM_STATUS: &str = "status";
const ITEM_OPEN_WINDOW: &str = "open_window";
const ITEM_OPEN_FOLDER: &str = "open_folder";
const ITEM_SYNC_NOW: &str = "sync_now";
const ITEM_PAUSE: &str = "pause";
const ITEM_QUIT: &str = "quit";
/// Followed by the file's index in [`RecentMenu::paths`].
const ITEM_RECENT_PREFIX: &str = "recent:";
/// How many recently changed files the tray lists.
const RECENT_IN_MENU: usize = 5;

/// Which picture the tray shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrayLook {
    /// Not signed in or not syncing: the app icon.
    Idle,
    UpToDate,
    Syncing,
    Offline,
    Error,
    Paused,
}

impl TrayLook {
    fn for_state(state: SyncState) -> Self {
        match state {
            SyncState::UpToDate => TrayLook::UpToDate,
            SyncState::Starting | SyncState::Syncing => TrayLook::Syncing,
            SyncState::Offline => TrayLook::Offline,
            SyncState::Error => TrayLook::Error,
            SyncState::Stopped => TrayLook::Idle,
            SyncState::Paused => TrayLook::Paused,
        }
    }

    fn image(self) -> Image<'static> {
        match self {
            TrayLook::Idle => tauri::include_image!("icons/128x128.png"),
            TrayLook::UpToDate => tauri::include_image!("icons/tray-up-to-date.png"),
            TrayLook::Syncing => tauri::include_image!("icons/tray-syncing.png"),
            TrayLook::Offline => tauri::include_image!("icons/tray-offline.png"),
            TrayLook::Error => tauri::include_image!("icons/tray-error.png"),
            TrayLook::Paused => tauri::include_image!("icons/tray-paused.png"),
        }
    }
}

/// The disabled first menu item that repeats the tooltip.
struct StatusLine(MenuItem<Wry>);

/// The Pause/Resume item, whose text follows the state.
struct PauseItem(MenuItem<Wry>);

/// The "Recently changed" submenu and the files it lists (rebuilt only when they change).
struct RecentMenu {
    submenu: Submenu<Wry>,
    paths: Mutex<Vec<String>>,
}

pub(crate) fn build(app: &AppHandle) -> tauri::Result<()> {
    let status_line = MenuItem::with_id(app, ITEM_STATUS, "Not syncing", false, None::<&str>)?;
    let pause = MenuItem::with_id(app, ITEM_PAUSE, "Pause syncing", true, None::<&str>)?;
    let recent = Submenu::with_items(
        app,
        "Recently changed",
        true,
        &[&MenuItem::new(app, NO_RECENT, false, None::<&str>)?],
    )?;
    let menu = Menu::with_items(
        app,
        &[
            &status_line,
            &PredefinedMenuItem::separator(app)?,
            &MenuItem::with_id(app, ITEM_OPEN_WINDOW, "Open SyncSphere", true, None::<&str>)?,
            &MenuItem::with_id(app, ITEM_OPEN_FOLDER, "Open folder", true, None::<&str>)?,
            &MenuItem::with_id(app, ITEM_SYNC_NOW, "Sync now", true, None::<&str>)?,
            &pause,
            &recent,
            &PredefinedMenuItem::separator(app)?,
            &MenuItem::with_id(app, ITEM_QUIT, "Quit", true, None::<&str>)?,
        ],
    )?;
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(TrayLook::Idle.image())
        .tooltip("SyncSphere")
        .menu(&menu)
        .show_menu_on_left_click(false)
        .on_menu_event(on_menu_event)
        .on_tray_icon_event(|tray, event| {
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                button_state: MouseButtonState::Up,
                ..
            } = event
            {
                shell::show_window(tray.app_handle());
            }
        })
        .build(app)?;
    app.manage(StatusLine(status_line));
    app.manage(PauseItem(pause));
    app.manage(RecentMenu {
        submenu: recent,
        paths: Mutex::new(Vec::new()),
    });
    Ok(())
}

const NO_RECENT: &str = "No changes yet";

fn on_menu_event(app: &AppHandle, event: MenuEvent) {
    match event.id().as_ref() {
        ITEM_OPEN_WINDOW => shell::show_window(app),
        ITEM_OPEN_FOLDER => shell::open_synced_folder(app),
        ITEM_PAUSE => {
            let app = app.clone();
            // (The sync is part of `DesktopState`; there is no separately managed SyncControl.)
            tauri::async_runtime::spawn(async move {
                let state = app.state::<crate::DesktopState>();
                let paused = !state.sync.is_paused().await;
                if let Err(err) = state.set_paused(paused).await {
                    tracing::warn!("could not remember the pause: {err:#}");
                }
            });
        }
        ITEM_SYNC_NOW => {
            let app = app.clone();
            tauri::async_runtime::spawn(async move {
                app.state::<crate::DesktopState>().sync.sync_now().await;
            });
        }
        ITEM_QUIT => shell::quit(app),
        id => {
            if let Some(index) = id
                .strip_prefix(ITEM_RECENT_PREFIX)
                .and_then(|i| i.parse::<usize>().ok())
            {
                reveal_recent(app, index);
            }
        }
    }
}

/// Shows the `index`th recently changed file in the file manager (its folder when it is gone).
fn reveal_recent(app: &AppHandle, index: usize) {
    let path = app.try_state::<RecentMenu>().and_then(|menu| {
        menu.paths
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(index)
            .cloned()
    });
    let (Some(path), Some(folder)) = (path, app.state::<crate::DesktopState>().folder()) else {
        return;
    };
    let Some(target) = reveal_target(&folder, &path) else {
        tracing::warn!(path, "not revealing a path outside the synced folder");
        return;
    };
    let revealed = if target == folder {
        shell::open_in_file_manager(&target)
    } else {
        shell::reveal_in_file_manager(&target)
    };
    if let Err(err) = revealed {
        tracing::warn!(target = %target.display(), "could not show the file: {err}");
    }
}

/// What to show for the synced file `rel`: the file, else (deleted or moved away) the nearest
/// folder above it that still exists, never anything outside `folder`.
fn reveal_target(folder: &Path, rel: &str) -> Option<PathBuf> {
    let rel = Path::new(rel);
    if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let mut target = folder.join(rel);
    while !target.exists() && target != folder {
        if !target.pop() {
            break;
        }
    }
    Some(target)
}

/// The newest distinct paths among the status's recent files, at most [`RECENT_IN_MENU`].
fn recent_paths(status: &Status) -> Vec<String> {
    let mut paths: Vec<String> = Vec::with_capacity(RECENT_IN_MENU);
    for file in &status.recent {
        if paths.len() == RECENT_IN_MENU {
            break;
        }
        if !paths.contains(&file.path) {
            paths.push(file.path.clone());
        }
    }
    paths
}

/// A menu label shows `&` as a mnemonic marker; `&&` is a literal one.
fn menu_label(path: &str) -> String {
    path.replace('&', "&&")
}

fn show_recent(app: &AppHandle, status: &Status) {
    let Some(menu) = app.try_state::<RecentMenu>() else {
        return;
    };
    let wanted = recent_paths(status);
    let mut shown = menu
        .paths
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if *shown == wanted {
        return;
    }
    let rebuilt = (|| -> tauri::Result<()> {
        while menu.submenu.remove_at(0)?.is_some() {}
        if wanted.is_empty() {
            return menu
                .submenu
                .append(&MenuItem::new(app, NO_RECENT, false, None::<&str>)?);
        }
        for (i, path) in wanted.iter().enumerate() {
            let id = format!("{ITEM_RECENT_PREFIX}{i}");
            let item = MenuItem::with_id(app, id, menu_label(path), true, None::<&str>)?;
            menu.submenu.append(&item)?;
        }
        Ok(())
    })();
    match rebuilt {
        Ok(()) => *shown = wanted,
        Err(err) => tracing::warn!("could not update the recent files menu: {err}"),
    }
}

/// Shows a sync status: icon by state, tooltip and status line = `status.summary()`, and the
/// recently changed files.
pub(crate) fn show_status(app: &AppHandle, status: &Status) {
    show(app, TrayLook::for_state(status.state), &status.summary());
    show_recent(app, status);
    let label = if status.state == SyncState::Paused {
        "Resume syncing"
    } else {
        "Pause syncing"
    };
    if let Some(item) = app.try_state::<PauseItem>()
        && let Err(err) = item.0.set_text(label)
    {
        tracing::warn!("could not update the tray menu: {err}");
    }
}

/// Shows that nothing is syncing, with the reason (e.g. "Not signed in").
pub(crate) fn show_idle(app: &AppHandle, reason: &str) {
    show(app, TrayLook::Idle, reason);
}

/// Shows a problem that stopped sync from starting.
pub(crate) fn show_error(app: &AppHandle, message: &str) {
    show(app, TrayLook::Error, &format!("Error: {message}"));
}

fn show(app: &AppHandle, look: TrayLook, text: &str) {
    if let Some(tray) = app.tray_by_id(TRAY_ID)
        && let Err(err) = tray
            .set_icon(Some(look.image()))
            .and_then(|()| tray.set_tooltip(Some(text)))
    {
        tracing::warn!("could not update the tray icon: {err}");
    }
    if let Some(line) = app.try_state::<StatusLine>()
        && let Err(err) = line.0.set_text(text)
    {
        tracing::warn!("could not update the tray menu: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_a_look() {
        let cases = [
            (SyncState::Starting, TrayLook::Syncing),
            (SyncState::UpToDate, TrayLook::UpToDate),
            (SyncState::Syncing, TrayLook::Syncing),
            (SyncState::Offline, TrayLook::Offline),
            (SyncState::Error, TrayLook::Error),
            (SyncState::Stopped, TrayLook::Idle),
            (SyncState::Paused, TrayLook::Paused),
        ];
        for (state, look) in cases {
            assert_eq!(TrayLook::for_state(state), look, "{state:?}");
            assert!(look.image().width() > 0);
        }
    }

    #[test]
    fn the_menu_lists_the_five_newest_distinct_files() {
        let mut status = Status::new("/s".into(), "a@x".into(), "pc".into());
        for (i, path) in ["a", "b", "a", "c", "d", "e", "f", "g"].iter().enumerate() {
            status.push_recent(path, "uploaded", i as i64);
        }
        // push_recent puts the newest first.
        assert_eq!(recent_paths(&status), ["g", "f", "e", "d", "c"]);
        status.recent.clear();
        assert!(recent_paths(&status).is_empty());
        assert_eq!(menu_label("Tom & Jerry.txt"), "Tom && Jerry.txt");
    }

    #[cfg(unix)]
    #[test]
    fn revealing_stays_inside_the_folder_and_falls_back_to_what_exists() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = tmp.path();
        std::fs::create_dir_all(folder.join("docs")).unwrap();
        std::fs::write(folder.join("docs/a.txt"), b"x").unwrap();
        let check = |rel: &str, expected: Option<PathBuf>| {
            assert_eq!(reveal_target(folder, rel), expected, "{rel}");
        };
        check("docs/a.txt", Some(folder.join("docs/a.txt")));
        check("docs/deleted.txt", Some(folder.join("docs")));
        check("gone/deep/x.txt", Some(folder.to_path_buf()));
        check("../outside.txt", None);
        check("/etc/passwd", None);
        check("", None);
    }
}
