//! The tray icon: its menu (status line, Open SyncSphere, Open folder, Pause/Resume syncing,
//! Quit), and an icon and tooltip that follow the sync status.
//!
//! Linux tray hosts ignore tooltips, so the status line is also the first (disabled) menu item.

use syncsphere_sync_client::{Status, SyncState};
use tauri::image::Image;
use tauri::menu::{Menu, MenuEvent, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager as _, Wry};

use crate::shell;

const TRAY_ID: &str = "main";
const ITEM_STATUS: &str = "status";
const ITEM_OPEN_WINDOW: &str = "open_window";
const ITEM_OPEN_FOLDER: &str = "open_folder";
const ITEM_PAUSE: &str = "pause";
const ITEM_QUIT: &str = "quit";

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

pub(crate) fn build(app: &AppHandle) -> tauri::Result<()> {
    let status_line = MenuItem::with_id(app, ITEM_STATUS, "Not syncing", false, None::<&str>)?;
    let pause = MenuItem::with_id(app, ITEM_PAUSE, "Pause syncing", true, None::<&str>)?;
    let menu = Menu::with_items(
        app,
        &[
            &status_line,
            &PredefinedMenuItem::separator(app)?,
            &MenuItem::with_id(app, ITEM_OPEN_WINDOW, "Open SyncSphere", true, None::<&str>)?,
            &MenuItem::with_id(app, ITEM_OPEN_FOLDER, "Open folder", true, None::<&str>)?,
            &pause,
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
    Ok(())
}

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
        ITEM_QUIT => shell::quit(app),
        _ => {}
    }
}

/// Shows a sync status: icon by state, tooltip and status line = `status.summary()`.
pub(crate) fn show_status(app: &AppHandle, status: &Status) {
    show(app, TrayLook::for_state(status.state), &status.summary());
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
}
