//! Commands of the Settings page: bandwidth limits, the folder's ignore rules, pause, start
//! at login and notifications; where the sign-in is kept.
//! Limits live in `desktop.json` and take effect by restarting the sync with the new
//! `SyncOptions`; ignore rules are the folder's `.syncsphereignore` (through `sync-client`).

use serde::Serialize;
use syncsphere_sync_client::SessionStorage;
use tauri::{AppHandle, State};

use super::{CommandError, CommandResult, ErrorCode};
use crate::{DesktopState, autostart};

#[derive(Debug, Serialize)]
pub(crate) struct SettingsDto {
    folder: Option<String>,
    /// KiB/s; `None` is unlimited.
    max_upload_kib: Option<u64>,
    max_download_kib: Option<u64>,
    paused: bool,
    /// The folder's `.syncsphereignore` (gitignore syntax); empty when there is none.
    ignore_rules: String,
    start_at_login: bool,
    /// Whether this system has start at login (Linux; not yet macOS/Windows).
    start_at_login_available: bool,
    /// Desktop notifications for new conflicts and for errors.
    notifications: bool,
    /// Where the sign-in is kept: `"keychain"`, or `"file"` when no keychain service took it;
    /// `None` when signed out.
    session_storage: Option<&'static str>,
}

#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn get_settings(state: State<'_, DesktopState>) -> CommandResult<SettingsDto> {
    settings_dto(&state).await
}

async fn settings_dto(state: &DesktopState) -> CommandResult<SettingsDto> {
    let settings = state
        .settings()
        .map_err(|e| CommandError::new(ErrorCode::Settings, format!("{e:#}")))?;
    let ignore_rules = match &settings.folder {
        Some(folder) => syncsphere_sync_client::read_ignore_rules(folder)
            .map_err(|e| CommandError::from_sync("Could not read the ignore rules.", e))?,
        None => String::new(),
    };
    Ok(SettingsDto {
        folder: settings.folder.as_deref().map(super::display_path),
        max_upload_kib: settings.max_upload_kib,
        max_download_kib: settings.max_download_kib,
        paused: state.sync.is_paused().await || settings.paused,
        ignore_rules,
        start_at_login: dirs::config_dir().is_some_and(|home| autostart::is_enabled(&home)),
        start_at_login_available: autostart::AVAILABLE,
        notifications: !settings.notifications_off,
        session_storage: session_storage(&state.config_dir),
    })
}

fn session_storage(config_dir: &std::path::Path) -> Option<&'static str> {
    let config = syncsphere_sync_client::load_config(config_dir).ok()??;
    Some(match config.session_storage {
        SessionStorage::Keychain => "keychain",
        SessionStorage::File => "file",
    })
}

/// Saves the limits (0 or none: unlimited) and the ignore rules. Changed limits restart the
/// running sync (after the operation in progress) so they apply at once.
#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn save_settings(
    app: AppHandle,
    state: State<'_, DesktopState>,
    max_upload_kib: Option<u64>,
    max_download_kib: Option<u64>,
    ignore_rules: String,
) -> CommandResult<SettingsDto> {
    let mut settings = state
        .settings()
        .map_err(|e| CommandError::new(ErrorCode::Settings, format!("{e:#}")))?;
    let unlimited_if_zero = |v: Option<u64>| v.filter(|&k| k > 0);
    let (up, down) = (
        unlimited_if_zero(max_upload_kib),
        unlimited_if_zero(max_download_kib),
    );
    if let Some(folder) = &settings.folder {
        let current = syncsphere_sync_client::read_ignore_rules(folder)
            .map_err(|e| CommandError::from_sync("Could not read the ignore rules.", e))?;
        if current != ignore_rules {
            syncsphere_sync_client::write_ignore_rules(folder, &ignore_rules).map_err(|e| {
                CommandError::new(
                    ErrorCode::Settings,
                    format!("The ignore rules were not saved: {e}. Fix that line and save again."),
                )
            })?;
        }
    }
    let limits_changed = (settings.max_upload_kib, settings.max_download_kib) != (up, down);
    settings.max_upload_kib = up;
    settings.max_download_kib = down;
    settings
        .save(&state.config_dir)
        .map_err(|e| CommandError::new(ErrorCode::Settings, format!("{e:#}")))?;
    if limits_changed
        && state.sync.is_running().await
        && let Some(folder) = settings.folder.clone()
    {
        tracing::info!(?up, ?down, "bandwidth limits changed; restarting sync");
        let paused = state.sync.is_paused().await || settings.paused;
        state
            .sync
            .start(
                &app,
                &state.config_dir,
                &folder,
                settings.sync_options(),
                paused,
            )
            .await
            .map_err(|e| {
                CommandError::from_sync("The limits are saved but sync did not restart.", e)
            })?;
    }
    settings_dto(&state).await
}

/// Pauses or resumes syncing (remembered across restarts).
#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn set_paused(
    state: State<'_, DesktopState>,
    paused: bool,
) -> CommandResult<SettingsDto> {
    state
        .set_paused(paused)
        .await
        .map_err(|e| CommandError::new(ErrorCode::Settings, format!("{e:#}")))?;
    settings_dto(&state).await
}

/// Switches the desktop notifications for conflicts and errors on or off (remembered).
#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn set_notifications(
    state: State<'_, DesktopState>,
    enabled: bool,
) -> CommandResult<SettingsDto> {
    let mut settings = state
        .settings()
        .map_err(|e| CommandError::new(ErrorCode::Settings, format!("{e:#}")))?;
    settings.notifications_off = !enabled;
    settings
        .save(&state.config_dir)
        .map_err(|e| CommandError::new(ErrorCode::Settings, format!("{e:#}")))?;
    state.set_notifications_on(enabled);
    tracing::info!(enabled, "notifications switched");
    settings_dto(&state).await
}

/// Starts the app (to the tray) when the user logs in, or stops doing so.
#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn set_start_at_login(
    state: State<'_, DesktopState>,
    enabled: bool,
) -> CommandResult<SettingsDto> {
    let unavailable = || {
        CommandError::new(
            ErrorCode::Settings,
            "Start at login is not available on this system yet. Add SyncSphere to your login \
             items by hand.",
        )
    };
    if !autostart::AVAILABLE {
        return Err(unavailable());
    }
    let home = dirs::config_dir().ok_or_else(unavailable)?;
    let exe = std::env::current_exe().map_err(|e| {
        CommandError::new(
            ErrorCode::Settings,
            format!("Could not find the app's own program file: {e}."),
        )
    })?;
    autostart::set_enabled(&home, &exe, enabled).map_err(|e| {
        CommandError::new(
            ErrorCode::Settings,
            format!(
                "Could not change start at login: {e:#}. Check that your config folder is writable."
            ),
        )
    })?;
    tracing::info!(enabled, "start at login switched");
    settings_dto(&state).await
}
