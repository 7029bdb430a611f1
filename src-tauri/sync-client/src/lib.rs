//! `sync-client`: the IO shell around `sync-core` — sign-in, the local index, the folder
//! watcher and scanner, REST transfers and the push WebSocket. The CLI and the desktop app both
//! drive sync through this crate's small public API; neither has sync logic of its own.
//!
//! **Invariants**
//! - Decisions come from `syncsphere_sync_core::plan` only; this crate executes them and
//!   re-checks each operation's expectation against the disk right before acting.
//! - Downloads land in `<folder>/.syncsphere/tmp`, are fsynced and hash-checked, then renamed
//!   over the target: a partial download never replaces a file.
//! - Passwords are never stored; tokens live in the OS keychain or `session.json` (mode 0600),
//!   wherever `config.json` says ([`session`]).

mod account;
mod api;
mod auth;
mod chunker;
mod config;
mod conflicts;
mod deletes;
mod delta;
mod engine;
mod file_state;
mod folder;
mod ignore_file;
mod index;
mod legacy;
mod local_fs;
mod lock;
mod push;
mod remote;
mod scan;
mod session;
#[cfg(test)]
mod sim;
pub mod status;
mod sync_task;
mod system;
mod throttle;
mod transfer;
mod watcher;

use std::path::Path;
use std::sync::Arc;

use syncsphere_protocol::ErrorCode;

/// The log filter of the CLI and the desktop app when `RUST_LOG` is not set: this crate's
/// `info`; the libraries' noise left out (the SRP crate logs each sign-in with the user name
/// at `info`; the AWS SDK warns at every start about its HTTP client; sqlx logs slow queries).
pub const DEFAULT_LOG_FILTER: &str =
    "info,sqlx=warn,aws_smithy_runtime=error,aws_config=warn,aws_cognito_srp=warn";

pub use account::{FileHistory, file_history, files, restore_revision, revisions, trash, undelete};
pub use auth::CodeDelivery;
pub use config::{ClientConfig, load_config};
pub use conflicts::{ConflictedCopy, Resolution, conflicted_copies, resolve_conflict};
pub use deletes::{DeleteDecision, decide_deletes};
pub use file_state::{
    FileStateReader, FileSyncState, PathFacts, PathKind, file_sync_state, relative_path,
    verified_since,
};
pub use folder::{FolderProblem, LinkMode};
pub use ignore_file::{read_ignore_rules, write_ignore_rules};
pub use session::SessionStorage;
pub use status::{
    Direction, ErrorKind, PathProblem, PendingDeletes, RecentFile, Status, SyncState,
    TransferProgress,
};
pub use sync_task::{SyncHandle, SyncOptions, last_status, start_sync, start_sync_with};
pub use syncsphere_protocol::{
    ContentHash, Device, DeviceId, DeviceList, ErrorCode as ServerErrorCode, FileId, FileMeta, Rev,
    Revision, Seq,
};
pub use syncsphere_sync_core::DeletePolicy;
pub use system::{
    CognitoPreset, SYSTEM_CONFIG_ENV, SystemConfig, load_system_config, system_config_path,
};

use crate::api::Api;
use crate::auth::{Cognito, TokenSource};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("offline: {0}")]
    Offline(String),
    #[error("{0}")]
    Auth(String),
    #[error("not signed in; run `syncsphere login` (or sign in from the app) first")]
    NotSignedIn,
    #[error("configuration problem: {0}")]
    Config(String),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("local index problem: {0}")]
    Index(String),
    #[error("server error {status} ({code:?}): {message}")]
    Server {
        status: u16,
        code: ErrorCode,
        message: String,
    },
    #[error("the file changed on the server meanwhile")]
    Conflict(Option<Box<syncsphere_protocol::FileMeta>>),
    #[error("network error: {0}")]
    Http(String),
    #[error("this device was unlinked from your account; sign in again to keep syncing")]
    DeviceRevoked,
    /// The pool wants a new password before it signs this account in (an administrator
    /// created or reset it with a temporary one): sign in again with a new password.
    #[error(
        "this account needs a new password: sign in with the temporary password and choose a new one"
    )]
    NewPasswordRequired,
    /// The account was signed out of all devices (from this one or another).
    #[error("your account was signed out of all devices; sign in again to keep syncing")]
    SignedOut,
    /// The file changed since it was hashed (it is still being written); retried shortly.
    #[error("'{0}' is still being written")]
    Busy(String),
    /// The OS keychain holding the session could not be used; the message says what to do.
    #[error("{0}")]
    Keychain(String),
    /// The synced folder is not the linked one right now; nothing is synced until it is back.
    #[error(transparent)]
    Folder(#[from] FolderProblem),
    /// Another client holds this configuration directory (the message names it).
    #[error("{0}")]
    InUse(String),
}

impl SyncError {
    /// The kind the status stream reports for this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SyncError::Offline(_) => ErrorKind::Offline,
            SyncError::Http(_) => ErrorKind::Server,
            SyncError::Auth(_) | SyncError::NewPasswordRequired => ErrorKind::Auth,
            SyncError::NotSignedIn => ErrorKind::NotSignedIn,
            SyncError::Config(_) | SyncError::Index(_) => ErrorKind::Config,
            SyncError::Io(..) | SyncError::Busy(_) => ErrorKind::Io,
            SyncError::Server { .. } | SyncError::Conflict(_) => ErrorKind::Server,
            SyncError::DeviceRevoked => ErrorKind::DeviceRevoked,
            SyncError::SignedOut => ErrorKind::SignedOut,
            SyncError::Keychain(_) => ErrorKind::Keychain,
            SyncError::Folder(p) => p.kind(),
            SyncError::InUse(_) => ErrorKind::ConfigDirInUse,
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What a sign-up came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignUp {
    /// The account is confirmed and this directory is signed in; the session went here.
    SignedIn(SessionStorage),
    /// The user pool sent a confirmation code (Amazon Cognito's default): [`confirm_sign_up`]
    /// with it confirms the account and signs in.
    ConfirmationNeeded(CodeDelivery),
}

/// Creates an account on the server's user pool, then signs in (see [`sign_in`]) — unless the
/// pool wants the account confirmed first.
pub async fn sign_up(
    config_dir: &Path,
    server_url: &str,
    email: &str,
    password: &str,
    storage: SessionStorage,
) -> Result<SignUp, SyncError> {
    let (server_url, pool) = user_pool(server_url).await?;
    let pending = pool.sign_up(email, password).await?;
    tracing::info!(email, confirmed = pending.is_none(), "account created");
    match pending {
        None => Ok(SignUp::SignedIn(
            sign_in(config_dir, &server_url, email, password, storage).await?,
        )),
        Some(delivery) => Ok(SignUp::ConfirmationNeeded(delivery)),
    }
}

/// Confirms a new account with the code its pool sent, then signs in (see [`sign_in`]).
pub async fn confirm_sign_up(
    config_dir: &Path,
    server_url: &str,
    email: &str,
    code: &str,
    password: &str,
    storage: SessionStorage,
) -> Result<SessionStorage, SyncError> {
    let (server_url, pool) = user_pool(server_url).await?;
    pool.confirm_sign_up(email, code.trim()).await?;
    tracing::info!(email, "account confirmed");
    sign_in(config_dir, &server_url, email, password, storage).await
}

/// Asks the server's user pool to send a code to reset the account's password with
/// (`ForgotPassword`); where it went.
pub async fn forgot_password(server_url: &str, email: &str) -> Result<CodeDelivery, SyncError> {
    user_pool(server_url).await?.1.forgot_password(email).await
}

/// Sets a new password with the code the pool sent (`ConfirmForgotPassword`), then signs in
/// with it (see [`sign_in`]).
pub async fn confirm_forgot_password(
    config_dir: &Path,
    server_url: &str,
    email: &str,
    code: &str,
    new_password: &str,
    storage: SessionStorage,
) -> Result<SessionStorage, SyncError> {
    let (server_url, pool) = user_pool(server_url).await?;
    pool.confirm_forgot_password(email, code.trim(), new_password)
        .await?;
    tracing::info!(email, "password reset");
    sign_in(config_dir, &server_url, email, new_password, storage).await
}

/// Asks the server's user pool to send an account's confirmation code again; where it went.
pub async fn resend_confirmation_code(
    server_url: &str,
    email: &str,
) -> Result<CodeDelivery, SyncError> {
    user_pool(server_url)
        .await?
        .1
        .resend_confirmation_code(email)
        .await
}

/// The server URL as the administrator's preset resolves it, and a client of the user pool its
/// `/v1/config` (with the preset applied) names.
async fn user_pool(server_url: &str) -> Result<(String, Cognito), SyncError> {
    let system = load_system_config()?;
    let server_url = system.resolve_server_url(Some(server_url))?;
    let server = server_config(&server_url, &system).await?;
    Ok((server_url, Cognito::new(&server.cognito).await))
}

/// The server's `/v1/config`, with the administrator's Cognito preset applied.
async fn server_config(
    server_url: &str,
    system: &SystemConfig,
) -> Result<syncsphere_protocol::ServerConfig, SyncError> {
    let mut server = api::fetch_server_config(server_url).await?;
    if let Some(preset) = &system.cognito {
        preset.apply(&mut server.cognito);
    }
    Ok(server)
}

/// Signs in and stores the session and the server settings in `config_dir`. Signing in to a
/// different account or server than before forgets the old sync state of this directory.
/// The session goes where `storage` asks; when that is the keychain and no keychain service
/// takes it, into `session.json`. Returns where it went.
pub async fn sign_in(
    config_dir: &Path,
    server_url: &str,
    email: &str,
    password: &str,
    storage: SessionStorage,
) -> Result<SessionStorage, SyncError> {
    sign_in_as(config_dir, server_url, email, password, None, storage).await
}

/// [`sign_in`] for an account whose pool asks for a new password
/// ([`SyncError::NewPasswordRequired`]): signs in with the temporary `password` and sets
/// `new_password` (the pool's password policy applies).
pub async fn sign_in_with_new_password(
    config_dir: &Path,
    server_url: &str,
    email: &str,
    password: &str,
    new_password: &str,
    storage: SessionStorage,
) -> Result<SessionStorage, SyncError> {
    sign_in_as(
        config_dir,
        server_url,
        email,
        password,
        Some(new_password),
        storage,
    )
    .await
}

async fn sign_in_as(
    config_dir: &Path,
    server_url: &str,
    email: &str,
    password: &str,
    new_password: Option<&str>,
    storage: SessionStorage,
) -> Result<SessionStorage, SyncError> {
    let system = load_system_config()?;
    let server_url = system.resolve_server_url(Some(server_url))?;
    let server_url = server_url.as_str();
    let server = server_config(server_url, &system).await?;
    let previous = load_config(config_dir)?;
    let same_account = previous
        .as_ref()
        .is_some_and(|p| p.server_url == server_url && p.email == email);
    let mut device_id = previous
        .as_ref()
        .filter(|_| same_account)
        .map(|p| p.device_id.clone())
        .unwrap_or_else(new_device_id);
    let cognito = Cognito::new(&server.cognito).await;
    let device_keys = server.cognito.device_keys;
    let session = match cognito
        .sign_in(
            email,
            password,
            device_keys.then_some(device_id.as_str()),
            new_password,
        )
        .await
    {
        // This device id was unlinked: sign in as a new device (the index stays valid).
        Err(SyncError::DeviceRevoked) => {
            device_id = new_device_id();
            cognito
                .sign_in(
                    email,
                    password,
                    device_keys.then_some(device_id.as_str()),
                    new_password,
                )
                .await?
        }
        other => other?,
    };
    // Another account's index must go, never while an engine runs on it (held until the new
    // config is written, so no engine starts in between).
    let _lock = if previous.is_some() && !same_account {
        let lock = lock::EngineLock::acquire(config_dir, "signing in")?;
        index::remove_index(&config::index_path(config_dir))?;
        Some(lock)
    } else {
        None
    };
    let mut config = ClientConfig {
        server_url: server_url.to_owned(),
        email: email.to_owned(),
        device_id,
        cognito: server.cognito,
        push_urls: server.push_urls,
        session_storage: storage,
        chunked_ids: server.chunked_ids,
    };
    // A session kept elsewhere before (the keychain, signing in now without it) goes first.
    if let Some(previous) = &previous
        && previous.session_storage != storage
    {
        session::SessionStore::of(config_dir, previous)
            .forget(config_dir)
            .await
            .unwrap_or_else(|e| tracing::warn!("the previous session stays behind: {e}"));
    }
    config.session_storage = session::save_new(config_dir, &config, storage, &session).await?;
    config::write_json(&config::config_path(config_dir), &config, false)?;
    Ok(config.session_storage)
}

/// Whether `config_dir` is signed in: it has a config and a session (in the file or the
/// keychain). A keychain that cannot be read is an error, not "signed out".
pub async fn is_signed_in(config_dir: &Path) -> Result<bool, SyncError> {
    match load_config(config_dir)? {
        Some(config) => session::has_session(config_dir, &config).await,
        None => Ok(false),
    }
}

/// Moves a file-kept session into the keychain (the desktop app does this at start, for
/// directories signed in before it used the keychain or while no keychain service ran).
/// Returns where the session is now; without a keychain it stays in the file.
pub async fn move_session_to_keychain(config_dir: &Path) -> Result<SessionStorage, SyncError> {
    let Some(mut config) = load_config(config_dir)? else {
        return Err(SyncError::NotSignedIn);
    };
    if config.session_storage == SessionStorage::Keychain {
        return Ok(SessionStorage::Keychain);
    }
    let session = session::SessionStore::of(config_dir, &config)
        .load()
        .await?;
    if !session::move_to_keychain(config_dir, &config, &session).await? {
        return Ok(SessionStorage::File);
    }
    config.session_storage = SessionStorage::Keychain;
    if let Err(e) = config::write_json(&config::config_path(config_dir), &config, false) {
        // The file is gone already: put it back so the config and the session agree.
        config::write_json(&config::session_path(config_dir), &session, true)?;
        return Err(e);
    }
    tracing::info!("moved the session into the keychain");
    Ok(SessionStorage::Keychain)
}

fn new_device_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Forgets a session the server ended (signed out everywhere): the device stays linked, so
/// signing in again keeps its id.
async fn forget_ended_session(config_dir: &Path) {
    // The tokens are dead anyway; a keychain that cannot be reached now keeps a dead one.
    if let Err(e) = forget_session(config_dir).await {
        tracing::warn!("could not forget the ended session: {e}");
    }
}

/// After the server said this device was revoked: forget the session and the device id, so
/// the next sign-in registers a new device. The index stays (nothing is re-transferred).
async fn forget_revoked_device(config_dir: &Path) -> Result<(), SyncError> {
    // The tokens are dead anyway; a keychain that cannot be reached now keeps a dead one.
    if let Err(e) = forget_session(config_dir).await {
        tracing::warn!("could not forget the revoked session: {e}");
    }
    if let Some(mut config) = load_config(config_dir)? {
        config.device_id = new_device_id();
        config::write_json(&config::config_path(config_dir), &config, false)?;
    }
    Ok(())
}

/// The account's devices (`GET /v1/devices`), as the signed-in device sees them.
pub async fn devices(config_dir: &Path) -> Result<syncsphere_protocol::DeviceList, SyncError> {
    signed_in_api(config_dir).await?.devices().await
}

/// Revokes ("unlinks") one of the account's devices.
pub async fn revoke_device(config_dir: &Path, device_id: &str) -> Result<(), SyncError> {
    signed_in_api(config_dir)
        .await?
        .revoke_device(device_id)
        .await
}

async fn signed_in_api(config_dir: &Path) -> Result<Api, SyncError> {
    let config = load_config(config_dir)?.ok_or(SyncError::NotSignedIn)?;
    let tokens = Arc::new(TokenSource::load(config_dir, &config).await?);
    let api = Api::new(&config.server_url, tokens, config.device_id);
    api.set_chunked_ids(config.chunked_ids);
    Ok(api)
}

/// Signs the account out on every device: the server refuses every access token issued until
/// now (REST and push; open push connections close), the pool revokes the refresh tokens
/// (`GlobalSignOut`), and this device forgets its session. Other devices stop syncing with
/// [`SyncError::SignedOut`] at their next request; nothing of theirs is lost.
pub async fn sign_out_everywhere(config_dir: &Path) -> Result<(), SyncError> {
    let config = load_config(config_dir)?.ok_or(SyncError::NotSignedIn)?;
    let tokens = Arc::new(TokenSource::load(config_dir, &config).await?);
    let token = tokens.access_token().await?;
    Api::new(&config.server_url, tokens, config.device_id.clone())
        .sign_out_everywhere()
        .await?;
    auth::Cognito::new(&config.cognito)
        .await
        .global_sign_out(&token)
        .await?;
    forget_session(config_dir).await
}

/// Changes the signed-in account's password (`ChangePassword`: the current one proves it, the
/// new one must meet the pool's policy). Every device stays signed in.
pub async fn change_password(
    config_dir: &Path,
    current: &str,
    new_password: &str,
) -> Result<(), SyncError> {
    let config = load_config(config_dir)?.ok_or(SyncError::NotSignedIn)?;
    let tokens = TokenSource::load(config_dir, &config).await?;
    let token = tokens.access_token().await?;
    auth::Cognito::new(&config.cognito)
        .await
        .change_password(&token, current, new_password)
        .await
}

/// Signs this device out: the pool revokes its refresh token (`RevokeToken`, as Amplify's
/// sign-out does; best effort — offline, or a pool that does not offer it, still signs out
/// here), then the session is forgotten, in the keychain and the file (the index stays, so
/// signing in again resumes without re-transfers).
pub async fn sign_out(config_dir: &Path) -> Result<(), SyncError> {
    if let Some(config) = load_config(config_dir)?
        && let Ok(session) = session::SessionStore::of(config_dir, &config).load().await
    {
        let revoke = async {
            auth::Cognito::new(&config.cognito)
                .await
                .revoke_token(&session.refresh_token)
                .await
        };
        match tokio::time::timeout(std::time::Duration::from_secs(5), revoke).await {
            Ok(Ok(())) => tracing::info!("refresh token revoked"),
            Ok(Err(e)) => tracing::warn!("the refresh token could not be revoked: {e}"),
            Err(_) => tracing::warn!("the sign-in service did not answer; signing out here only"),
        }
    }
    forget_session(config_dir).await
}

/// Forgets the session, in the keychain and the file, without telling the pool (it already
/// ended: revoked device, signed out everywhere).
pub(crate) async fn forget_session(config_dir: &Path) -> Result<(), SyncError> {
    match load_config(config_dir)? {
        Some(config) => {
            session::SessionStore::of(config_dir, &config)
                .forget(config_dir)
                .await
        }
        None => {
            session::SessionStore::File(config::session_path(config_dir))
                .forget(config_dir)
                .await
        }
    }
}
