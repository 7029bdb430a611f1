//! The window's API: the Tauri commands and the JSON they exchange.
//!
//! **Boundary:** the only place where errors become `{ code, message }` for the window. The
//! window decides what to do by `code` and shows `message` as is, so messages are plain words.

use std::fmt::Display;
use std::path::Path;

use serde::Serialize;
use syncsphere_sync_client::Status;
use tauri::{AppHandle, State};

use crate::settings::{self, DesktopSettings};
use crate::{DesktopState, shell, tray};

/// What the window can branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorCode {
    SignInFailed,
    SignUpFailed,
    SignOutFailed,
    NotSignedIn,
    InvalidFolder,
    SyncFailed,
    Settings,
}

#[derive(Debug, Serialize)]
pub(crate) struct CommandError {
    code: ErrorCode,
    message: String,
}

impl CommandError {
    fn new(code: ErrorCode, message: impl Display) -> Self {
        CommandError {
            code,
            message: message.to_string(),
        }
    }
}

type CommandResult<T> = Result<T, CommandError>;

/// Everything the window needs to pick a screen.
#[derive(Debug, Serialize)]
pub(crate) struct SessionDto {
    signed_in: bool,
    email: Option<String>,
    /// The signed-in server, or the one to preset on the sign-in screen.
    server_url: String,
    /// The administrator locked the server (`/etc/syncsphere/config.toml`): the sign-in screen
    /// shows it read-only.
    server_locked: bool,
    /// The remembered folder, if one was chosen.
    folder: Option<String>,
    /// What the folder screen suggests: `~/SyncSphere`, resolved.
    default_folder: String,
    syncing: bool,
    /// Why sync is not running although a folder was chosen (e.g. it went missing).
    sync_problem: Option<String>,
}

#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn get_session(state: State<'_, DesktopState>) -> CommandResult<SessionDto> {
    session(&state).await
}

#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn sign_in(
    app: AppHandle,
    state: State<'_, DesktopState>,
    server_url: String,
    email: String,
    password: String,
) -> CommandResult<SessionDto> {
    state.sync.stop().await;
    syncsphere_sync_client::sign_in(
        &state.config_dir,
        server_url.trim(),
        email.trim(),
        &password,
    )
    .await
    .map_err(|err| CommandError::new(ErrorCode::SignInFailed, err))?;
    signed_in(&app, &state).await
}

#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn sign_up(
    app: AppHandle,
    state: State<'_, DesktopState>,
    server_url: String,
    email: String,
    password: String,
) -> CommandResult<SessionDto> {
    state.sync.stop().await;
    syncsphere_sync_client::sign_up(
        &state.config_dir,
        server_url.trim(),
        email.trim(),
        &password,
    )
    .await
    .map_err(|err| CommandError::new(ErrorCode::SignUpFailed, err))?;
    signed_in(&app, &state).await
}

/// After a successful sign-in or sign-up: the tray says what to do next.
async fn signed_in(app: &AppHandle, state: &DesktopState) -> CommandResult<SessionDto> {
    tray::show_idle(app, "Signed in — choose a folder to sync");
    session(state).await
}

/// Starts syncing the folder the user chose (created if missing) and remembers it.
#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn start_sync(
    app: AppHandle,
    state: State<'_, DesktopState>,
    folder: String,
) -> CommandResult<Status> {
    let signed_in = syncsphere_sync_client::load_config(&state.config_dir)
        .map_err(|err| CommandError::new(ErrorCode::NotSignedIn, err))?
        .is_some();
    if !signed_in {
        return Err(CommandError::new(
            ErrorCode::NotSignedIn,
            "Sign in before choosing a folder.",
        ));
    }
    let folder = settings::resolve_folder(&folder, state.home.as_deref())
        .map_err(|err| CommandError::new(ErrorCode::InvalidFolder, err))?;
    create_folder(&folder)?;
    let status = state
        .sync
        .start(&app, &state.config_dir, &folder)
        .await
        .map_err(|err| CommandError::new(ErrorCode::SyncFailed, err))?;
    state.set_sync_problem(None);
    let remembered = DesktopSettings {
        folder: Some(folder),
    };
    if let Err(err) = remembered.save(&state.config_dir) {
        // Sync runs; only resuming at the next start is lost, so don't fail the command.
        tracing::warn!("could not remember the folder: {err:#}");
    }
    Ok(status)
}

#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn get_status(state: State<'_, DesktopState>) -> CommandResult<Option<Status>> {
    Ok(state.sync.current().await)
}

/// Stops sync, forgets the session and the folder choice.
#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn sign_out(
    app: AppHandle,
    state: State<'_, DesktopState>,
) -> CommandResult<SessionDto> {
    state.sync.stop().await;
    syncsphere_sync_client::sign_out(&state.config_dir)
        .map_err(|err| CommandError::new(ErrorCode::SignOutFailed, err))?;
    DesktopSettings::default()
        .save(&state.config_dir)
        .map_err(|err| CommandError::new(ErrorCode::Settings, format!("{err:#}")))?;
    state.set_sync_problem(None);
    tray::show_idle(&app, "Not signed in");
    session(&state).await
}

#[tauri::command(rename_all = "snake_case")]
pub(crate) fn open_folder(app: AppHandle) {
    shell::open_synced_folder(&app);
}

async fn session(state: &DesktopState) -> CommandResult<SessionDto> {
    let config = syncsphere_sync_client::load_config(&state.config_dir).map_err(|err| {
        CommandError::new(
            ErrorCode::NotSignedIn,
            format!("Your saved sign-in could not be read, please sign in again. ({err})"),
        )
    })?;
    let settings = state
        .settings()
        .map_err(|err| CommandError::new(ErrorCode::Settings, format!("{err:#}")))?;
    let default_folder = settings::default_folder(state.home.as_deref());
    let system = syncsphere_sync_client::load_system_config()
        .map_err(|err| CommandError::new(ErrorCode::Settings, err))?;
    Ok(SessionDto {
        signed_in: config.is_some(),
        email: config.as_ref().map(|c| c.email.clone()),
        server_url: config.map_or_else(|| settings::preset_server_url(&system), |c| c.server_url),
        server_locked: system.lock_server_url,
        folder: settings.folder.as_deref().map(display_path),
        default_folder: display_path(&default_folder),
        syncing: state.sync.is_running().await,
        sync_problem: state.sync_problem(),
    })
}

fn create_folder(folder: &Path) -> CommandResult<()> {
    if folder.exists() && !folder.is_dir() {
        return Err(CommandError::new(
            ErrorCode::InvalidFolder,
            format!("{} is a file, not a folder.", folder.display()),
        ));
    }
    std::fs::create_dir_all(folder).map_err(|err| {
        CommandError::new(
            ErrorCode::InvalidFolder,
            format!("Could not create the folder {}: {err}.", folder.display()),
        )
    })
}

fn display_path(path: &Path) -> String {
    path.display().to_string()
}
