//! The window's API: the Tauri commands and the JSON they exchange. Sign-in, the folder and
//! the sync status are here; the account pages ([`account`]: devices, history, trash), the
//! conflicted copies ([`conflicts`]), the settings page ([`preferences`]) and the answers to
//! the engine's safety stops ([`safety`]: start over, held deletions) in submodules.
//!
//! **Boundary:** the only place where errors become `{ code, message }` for the window. The
//! window decides what to do by `code` and shows `message` as is, so messages are plain words.
//! DTOs are defined here, never `Serialize` on `sync-client`'s types by accident.

pub(crate) mod account;
pub(crate) mod conflicts;
pub(crate) mod launch;
pub(crate) mod preferences;
pub(crate) mod safety;

use std::fmt::Display;
use std::path::{Path, PathBuf};

use serde::Serialize;
use syncsphere_sync_client::{ServerErrorCode, SessionStorage, Status, SyncError};
use tauri::{AppHandle, State};

use crate::settings::{self, DesktopSettings};
use crate::{DesktopState, file_manager, shell, tray};

/// What the window can branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorCode {
    SignInFailed,
    SignUpFailed,
    /// The account was created and its user pool sent a confirmation code: ask for it, then
    /// `confirm_sign_up`.
    ConfirmationNeeded,
    /// The pool wants a new password before signing in (sign in again with `new_password`).
    NewPasswordRequired,
    SignOutFailed,
    NotSignedIn,
    InvalidFolder,
    SyncFailed,
    Settings,
    /// The server cannot be reached: try again when online.
    Offline,
    /// This computer was unlinked from the account: sign in again.
    DeviceRevoked,
    /// The file, revision or device is not there (any more).
    NotFound,
    /// Something changed meanwhile or the name is taken: look again and retry.
    Conflict,
    /// The server refused or failed; the message says what happened.
    Failed,
    /// There is no folder being synced yet: choose one first.
    NoFolder,
    /// Another SyncSphere client (e.g. `syncsphere sync`) already syncs with this app's
    /// configuration: stop it, then retry.
    InUse,
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

impl CommandError {
    /// A `sync-client` error in words a user understands, with what to do; `doing` names the
    /// action that failed ("Could not restore the file.").
    fn from_sync(doing: &str, err: SyncError) -> Self {
        let (code, advice) = match &err {
            SyncError::NotSignedIn | SyncError::Auth(_) => (
                ErrorCode::NotSignedIn,
                "Sign in again, then retry.".to_owned(),
            ),
            SyncError::Offline(_) => (
                ErrorCode::Offline,
                "The server cannot be reached. Check your internet connection and try again."
                    .to_owned(),
            ),
            SyncError::DeviceRevoked => (
                ErrorCode::DeviceRevoked,
                "This computer was unlinked from your account. Sign in again to use it.".to_owned(),
            ),
            SyncError::SignedOut => (
                ErrorCode::NotSignedIn,
                "Your account was signed out of all devices. Sign in again to use it.".to_owned(),
            ),
            SyncError::Conflict(_) => (
                ErrorCode::Conflict,
                "The file changed meanwhile. Look at it again, then retry.".to_owned(),
            ),
            SyncError::Server {
                code: ServerErrorCode::NotFound,
                message,
                ..
            } => (ErrorCode::NotFound, format!("{}.", capitalise(message))),
            SyncError::Server {
                code: ServerErrorCode::Conflict,
                message,
                ..
            } => (
                ErrorCode::Conflict,
                format!(
                    "{}. Move or rename what is in the way, then retry.",
                    capitalise(message)
                ),
            ),
            SyncError::Server { message, .. } => {
                (ErrorCode::Failed, format!("{}.", capitalise(message)))
            }
            SyncError::InUse(holder) => (ErrorCode::InUse, in_use(holder)),
            other => (
                ErrorCode::Failed,
                format!("{}.", capitalise(&other.to_string())),
            ),
        };
        tracing::warn!(error = %err, "{doing}");
        CommandError::new(code, format!("{doing} {advice}"))
    }
}

/// Another client holds the configuration directory; `holder` is `sync-client`'s sentence,
/// which names it and starts with its (lower-case) name.
fn in_use(holder: &str) -> String {
    format!(
        "Another SyncSphere client is using this computer's SyncSphere settings: {}.",
        holder.trim().trim_end_matches('.')
    )
}

/// Sync did not start: the directory is in use (the window can say so), or anything else.
fn start_failed(err: SyncError) -> CommandError {
    tracing::warn!(error = %err, "sync did not start");
    match err {
        SyncError::InUse(holder) => CommandError::new(ErrorCode::InUse, in_use(&holder)),
        other => CommandError::new(ErrorCode::SyncFailed, other),
    }
}

/// "no such file" → "No such file" (server and client messages start in lower case).
fn capitalise(message: &str) -> String {
    let message = message.trim().trim_end_matches('.');
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The synced folder, or an error telling the user to choose one.
fn synced_folder(state: &DesktopState) -> CommandResult<PathBuf> {
    state.folder().ok_or_else(|| {
        CommandError::new(
            ErrorCode::NoFolder,
            "Choose a folder to sync first (Settings, or sign in again).",
        )
    })
}

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
    /// Why sync is not running although a folder was chosen (e.g. another client syncs with
    /// these settings). A missing folder is not one: sync runs and its status says so.
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
    new_password: Option<String>,
) -> CommandResult<SessionDto> {
    state.sync.stop().await;
    let (dir, url, email) = (&state.config_dir, server_url.trim(), email.trim());
    let signed = match &new_password {
        None => {
            syncsphere_sync_client::sign_in(dir, url, email, &password, SessionStorage::Keychain)
                .await
        }
        Some(new) => {
            syncsphere_sync_client::sign_in_with_new_password(
                dir,
                url,
                email,
                &password,
                new,
                SessionStorage::Keychain,
            )
            .await
        }
    };
    signed.map_err(|err| match err {
        SyncError::NewPasswordRequired => CommandError::new(
            ErrorCode::NewPasswordRequired,
            "Your account needs a new password: choose one.",
        ),
        err => CommandError::new(ErrorCode::SignInFailed, err),
    })?;
    signed_in(&app, &state).await
}

/// Changes the signed-in account's password (the current one proves it).
#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn change_password(
    state: State<'_, DesktopState>,
    current: String,
    new_password: String,
) -> CommandResult<()> {
    syncsphere_sync_client::change_password(&state.config_dir, &current, &new_password)
        .await
        .map_err(|err| CommandError::from_sync("Could not change the password.", err))
}

/// Has the pool send a code to reset the password with; says where it went.
#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn forgot_password(server_url: String, email: String) -> CommandResult<String> {
    let delivery = syncsphere_sync_client::forgot_password(server_url.trim(), email.trim())
        .await
        .map_err(|err| CommandError::new(ErrorCode::SignInFailed, err))?;
    Ok(format!(
        "A code was sent {delivery}. Enter it with a new password."
    ))
}

/// Sets a new password with the reset code, then signs in.
#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn reset_password(
    app: AppHandle,
    state: State<'_, DesktopState>,
    server_url: String,
    email: String,
    code: String,
    new_password: String,
) -> CommandResult<SessionDto> {
    state.sync.stop().await;
    syncsphere_sync_client::confirm_forgot_password(
        &state.config_dir,
        server_url.trim(),
        email.trim(),
        code.trim(),
        &new_password,
        SessionStorage::Keychain,
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
    let outcome = syncsphere_sync_client::sign_up(
        &state.config_dir,
        server_url.trim(),
        email.trim(),
        &password,
        SessionStorage::Keychain,
    )
    .await
    .map_err(|err| CommandError::new(ErrorCode::SignUpFailed, err))?;
    match outcome {
        syncsphere_sync_client::SignUp::SignedIn(_) => signed_in(&app, &state).await,
        syncsphere_sync_client::SignUp::ConfirmationNeeded(delivery) => Err(CommandError::new(
            ErrorCode::ConfirmationNeeded,
            format!("Your account was created. Enter the confirmation code sent {delivery}."),
        )),
    }
}

/// Confirms a new account with the code its user pool sent, then signs in.
#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn confirm_sign_up(
    app: AppHandle,
    state: State<'_, DesktopState>,
    server_url: String,
    email: String,
    password: String,
    code: String,
) -> CommandResult<SessionDto> {
    state.sync.stop().await;
    syncsphere_sync_client::confirm_sign_up(
        &state.config_dir,
        server_url.trim(),
        email.trim(),
        code.trim(),
        &password,
        SessionStorage::Keychain,
    )
    .await
    .map_err(|err| CommandError::new(ErrorCode::ConfirmationNeeded, err))?;
    signed_in(&app, &state).await
}

/// Sends a new confirmation code; says where it went.
#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn resend_confirmation_code(
    server_url: String,
    email: String,
) -> CommandResult<String> {
    let delivery =
        syncsphere_sync_client::resend_confirmation_code(server_url.trim(), email.trim())
            .await
            .map_err(|err| CommandError::new(ErrorCode::ConfirmationNeeded, err))?;
    Ok(format!("A new code was sent {delivery}."))
}

/// After a successful sign-in or sign-up: the tray says what to do next.
async fn signed_in(app: &AppHandle, state: &DesktopState) -> CommandResult<SessionDto> {
    tray::show_idle(app, "Signed in — choose a folder to sync");
    session(state).await
}

/// Starts syncing the folder the user chose and remembers it. Also "Locate folder": a path
/// other than the remembered one is the folder moved there (its synced tree is kept) or
/// another folder (merged, nothing deleted) — `sync-client` tells them apart by the folder's
/// marker and creates a folder only when that is safe.
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
    refuse_a_file(&folder)?;
    // Keep the limits and the pause; an unreadable settings file starts over from defaults.
    let mut remembered = state.settings().unwrap_or_default();
    let status = state
        .sync
        .start(
            &app,
            &state.config_dir,
            &folder,
            remembered.sync_options(),
            remembered.paused,
        )
        .await
        .map_err(start_failed)?;
    state.set_sync_problem(None);
    file_manager::on_sync_started(&folder);
    remembered.folder = Some(folder);
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
        .await
        .map_err(|err| CommandError::new(ErrorCode::SignOutFailed, err))?;
    signed_out(&app, &state).await
}

/// Signs the account out of every device (their sessions end at once, this one's too), then
/// as [`sign_out`]. When the server cannot be told, nothing changes here: sync goes on.
#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn sign_out_everywhere(
    app: AppHandle,
    state: State<'_, DesktopState>,
) -> CommandResult<SessionDto> {
    syncsphere_sync_client::sign_out_everywhere(&state.config_dir)
        .await
        .map_err(|err| CommandError::from_sync("Could not sign out of all devices.", err))?;
    state.sync.stop().await;
    signed_out(&app, &state).await
}

/// What follows forgetting the session: the account's choices go, the tray says so.
async fn signed_out(app: &AppHandle, state: &DesktopState) -> CommandResult<SessionDto> {
    file_manager::on_sign_out();
    // Whether this computer shows notifications stays.
    let notifications_off = state.settings().is_ok_and(|s| s.notifications_off);
    DesktopSettings {
        notifications_off,
        ..DesktopSettings::default()
    }
    .save(&state.config_dir)
    .map_err(|err| CommandError::new(ErrorCode::Settings, format!("{err:#}")))?;
    state.set_sync_problem(None);
    tray::show_idle(app, "Not signed in");
    session(state).await
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
    // A keychain that cannot be read now still holds the session: signed in, and starting
    // sync reports the problem.
    let signed_in = config.is_some()
        && syncsphere_sync_client::is_signed_in(&state.config_dir)
            .await
            .unwrap_or(true);
    Ok(SessionDto {
        signed_in,
        email: config.as_ref().map(|c| c.email.clone()),
        server_url: config.map_or_else(|| settings::preset_server_url(&system), |c| c.server_url),
        server_locked: system.lock_server_url,
        folder: settings.folder.as_deref().map(display_path),
        default_folder: display_path(&default_folder),
        syncing: state.sync.is_running().await,
        sync_problem: state.sync_problem(),
    })
}

/// A file where the folder should be is refused at once. Nothing is created here: whether a
/// missing folder may be created is `sync-client`'s decision (a linked folder never is).
fn refuse_a_file(folder: &Path) -> CommandResult<()> {
    if folder.exists() && !folder.is_dir() {
        return Err(CommandError::new(
            ErrorCode::InvalidFolder,
            format!("{} is a file, not a folder.", folder.display()),
        ));
    }
    Ok(())
}

fn display_path(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(err: SyncError, code: ErrorCode, message: &str) {
        let got = CommandError::from_sync("Could not restore this version.", err);
        assert_eq!((got.code, got.message.as_str()), (code, message));
    }

    #[test]
    fn sync_errors_read_as_plain_words_with_what_to_do() {
        let server = |code, message: &str| SyncError::Server {
            status: 409,
            code,
            message: message.into(),
        };
        check(
            SyncError::Offline("cannot reach http://x: refused".into()),
            ErrorCode::Offline,
            "Could not restore this version. The server cannot be reached. Check your internet \
             connection and try again.",
        );
        check(
            server(ServerErrorCode::Conflict, "'a.txt' already exists"),
            ErrorCode::Conflict,
            "Could not restore this version. 'a.txt' already exists. Move or rename what is in \
             the way, then retry.",
        );
        check(
            server(
                ServerErrorCode::NotFound,
                "there is no file 'x' on the server",
            ),
            ErrorCode::NotFound,
            "Could not restore this version. There is no file 'x' on the server.",
        );
        check(
            SyncError::NotSignedIn,
            ErrorCode::NotSignedIn,
            "Could not restore this version. Sign in again, then retry.",
        );
        check(
            SyncError::Keychain(
                "your sign-in could not be read from the keychain: locked. Unlock the keychain, \
                 or sign in again"
                    .into(),
            ),
            ErrorCode::Failed,
            "Could not restore this version. Your sign-in could not be read from the keychain: \
             locked. Unlock the keychain, or sign in again.",
        );
        check(
            SyncError::DeviceRevoked,
            ErrorCode::DeviceRevoked,
            "Could not restore this version. This computer was unlinked from your account. \
             Sign in again to use it.",
        );
        check(
            SyncError::SignedOut,
            ErrorCode::NotSignedIn,
            "Could not restore this version. Your account was signed out of all devices. Sign \
             in again to use it.",
        );
        check(
            SyncError::InUse(IN_USE.into()),
            ErrorCode::InUse,
            "Could not restore this version. Another SyncSphere client is using this computer's \
             SyncSphere settings: syncsphere sync (process 42, syncsphere) is already syncing \
             with /home/ada/.config/syncsphere; stop it first (one client per configuration \
             directory).",
        );
    }

    const IN_USE: &str = "syncsphere sync (process 42, syncsphere) is already syncing with \
                          /home/ada/.config/syncsphere; stop it first (one client per \
                          configuration directory)";

    #[test]
    fn a_start_refused_because_another_client_syncs_has_its_own_code() {
        let err = start_failed(SyncError::InUse(IN_USE.into()));
        assert_eq!(err.code, ErrorCode::InUse);
        assert!(
            err.message.contains("syncsphere sync (process 42"),
            "{}",
            err.message
        );
        assert_eq!(
            start_failed(SyncError::NotSignedIn).code,
            ErrorCode::SyncFailed
        );
    }

    #[test]
    fn only_a_file_in_the_way_is_refused_and_nothing_is_created() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("Sync");
        refuse_a_file(&missing).unwrap();
        assert!(
            !missing.exists(),
            "the library decides whether to create it"
        );
        refuse_a_file(tmp.path()).unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(
            refuse_a_file(&file).unwrap_err().code,
            ErrorCode::InvalidFolder
        );
    }
}
