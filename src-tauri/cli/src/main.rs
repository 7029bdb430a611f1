//! `syncsphere`: the headless SyncSphere client.
//!
//! ```text
//! syncsphere --config-dir DIR signup [--server URL] --email EMAIL [--keychain]
//! syncsphere --config-dir DIR confirm-signup [--server URL] --email EMAIL (--code CODE | --resend)
//! syncsphere --config-dir DIR login  [--server URL] --email EMAIL [--keychain]
//! syncsphere --config-dir DIR sync --folder PATH [--device-name NAME] [--start-over]
//! syncsphere --config-dir DIR status [--json]
//! syncsphere --config-dir DIR confirm-deletes | restore-deletes [--fingerprint SET]
//! syncsphere --config-dir DIR devices [--json]
//! syncsphere --config-dir DIR revoke-device DEVICE_ID
//! ```
//! `--server` defaults to the administrator's preset (`/etc/syncsphere/config.toml`), which may
//! also lock it.
//! The password comes from `SYNCSPHERE_PASSWORD` or an interactive prompt, never from an argument
//! (arguments are visible to every user of the machine in `ps`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use syncsphere_sync_client::{self as client, DeletePolicy, ErrorKind, SyncState};

#[derive(Debug, Parser)]
#[command(
    name = "syncsphere",
    version,
    about = "SyncSphere headless sync client"
)]
struct Cli {
    /// Where this device keeps its settings, session and index (one directory per device).
    #[arg(long, env = "SYNCSPHERE_CONFIG_DIR", global = true)]
    config_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create an account on a server and sign in.
    Signup {
        /// The server (default: `server_url` of the system config, /etc/syncsphere/config.toml).
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        email: String,
        /// Keep the session in the OS keychain (Secret Service, Keychain, Credential Manager)
        /// instead of `session.json`; without a keychain service it goes to the file anyway.
        #[arg(long)]
        keychain: bool,
    },
    /// Confirm a new account with the code its user pool sent (after `signup`), then sign in;
    /// `--resend` asks for a new code instead.
    ConfirmSignup {
        /// The server (default: `server_url` of the system config, /etc/syncsphere/config.toml).
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        email: String,
        /// The code from the e-mail (or text message).
        #[arg(long, required_unless_present = "resend", conflicts_with = "resend")]
        code: Option<String>,
        /// Send a new code instead of confirming.
        #[arg(long)]
        resend: bool,
        /// Keep the session in the OS keychain (see `signup`).
        #[arg(long)]
        keychain: bool,
    },
    /// Reset a forgotten password: the user pool sends a code (to the account's e-mail), and
    /// `--code` with a new password (`SYNCSPHERE_NEW_PASSWORD` or a prompt) sets it and signs in.
    ResetPassword {
        /// The server (default: `server_url` of the system config, /etc/syncsphere/config.toml).
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        email: String,
        /// The code from the e-mail; without it, a code is sent.
        #[arg(long)]
        code: Option<String>,
        /// Keep the session in the OS keychain (see `signup`).
        #[arg(long)]
        keychain: bool,
    },
    /// Change the signed-in account's password: the current one from `SYNCSPHERE_PASSWORD` (or
    /// a prompt), the new one from `SYNCSPHERE_NEW_PASSWORD` (or a prompt).
    ChangePassword,
    /// Sign in to an existing account. An account created or reset by an administrator with a
    /// temporary password asks for a new one (`SYNCSPHERE_NEW_PASSWORD` or a prompt).
    Login {
        /// The server (default: `server_url` of the system config, /etc/syncsphere/config.toml).
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        email: String,
        /// Keep the session in the OS keychain (Secret Service, Keychain, Credential Manager)
        /// instead of `session.json`; without a keychain service it goes to the file anyway.
        #[arg(long)]
        keychain: bool,
    },
    /// Forget the session of this device.
    Logout {
        /// Sign the account out of every device: every session's tokens stop working at once
        /// (REST and push), and the other devices stop syncing until signed in again.
        #[arg(long)]
        everywhere: bool,
    },
    /// Sync a folder until interrupted (SIGINT/SIGTERM). SIGUSR1 pauses syncing (after the
    /// operation in progress), SIGUSR2 resumes it.
    Sync {
        #[arg(long)]
        folder: PathBuf,
        /// Name of this device in conflicted copies (default: the host name).
        #[arg(long)]
        device_name: Option<String>,
        /// Upload limit in KiB/s (default: unlimited).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max_upload_kib: Option<u64>,
        /// Download limit in KiB/s (default: unlimited).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max_download_kib: Option<u64>,
        /// Start over with an empty folder: forget what was synced, create the folder if it is
        /// missing, and download everything (nothing is deleted anywhere). For a synced folder
        /// that is gone for good.
        #[arg(long)]
        start_over: bool,
        /// Deleting at least this many files on the server waits for `confirm-deletes` …
        #[arg(long, default_value_t = DeletePolicy::default().min_files)]
        delete_brake_files: usize,
        /// … when they are more than this percentage of the synced files. (Deleting every
        /// synced file waits from 10 files on.)
        #[arg(long, default_value_t = DeletePolicy::default().max_share_pct,
              value_parser = clap::value_parser!(u8).range(0..=100))]
        delete_brake_percent: u8,
    },
    /// Delete everywhere the files a running (or the next) sync holds back because many were
    /// deleted at once (see `status`).
    ConfirmDeletes {
        /// The set to confirm, as `status` shows it (default: the one pending now).
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// Bring back from the server the files a sync holds back because many were deleted at
    /// once; nothing is deleted.
    RestoreDeletes {
        /// The set to restore, as `status` shows it (default: the one pending now).
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// Show the status of this device's sync.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// List the account's devices (online, last seen, revoked).
    Devices {
        #[arg(long)]
        json: bool,
    },
    /// Unlink a device: its sessions end, its push connections close, and it must sign in
    /// again as a new device. Its files stay in the account.
    RevokeDevice { device_id: String },
}

fn default_config_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(dir).join("syncsphere"));
    }
    let home = std::env::var_os("HOME")
        .context("neither --config-dir, XDG_CONFIG_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".config").join("syncsphere"))
}

fn password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("SYNCSPHERE_PASSWORD") {
        return Ok(p);
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("no password: set SYNCSPHERE_PASSWORD or run in a terminal to be prompted");
    }
    eprint!("Password: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let p = line.trim_end_matches(['\r', '\n']).to_owned();
    if p.is_empty() {
        bail!("empty password");
    }
    Ok(p)
}

/// The new password a reset or a temporary password asks for: `SYNCSPHERE_NEW_PASSWORD`, or
/// typed at the terminal; `None` when neither is at hand.
fn new_password() -> anyhow::Result<Option<String>> {
    if let Ok(p) = std::env::var("SYNCSPHERE_NEW_PASSWORD") {
        return Ok(Some(p));
    }
    prompt("New password: ")
}

/// Confirms a new account with `code` and signs this device in.
async fn confirm(
    dir: &Path,
    server: &str,
    email: &str,
    code: &str,
    password: &str,
    keychain: bool,
) -> anyhow::Result<()> {
    let stored = client::confirm_sign_up(dir, server, email, code, password, storage(keychain))
        .await
        .context("confirmation failed")?;
    println!("Account {email} confirmed and signed in on {server}.");
    report_storage(keychain, stored);
    Ok(())
}

/// A line typed at the terminal after `question`; `None` when stdin is not a terminal (or
/// the line is empty).
fn prompt(question: &str) -> anyhow::Result<Option<String>> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Ok(None);
    }
    eprint!("{question}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let line = line.trim();
    Ok((!line.is_empty()).then(|| line.to_owned()))
}

fn storage(keychain: bool) -> client::SessionStorage {
    if keychain {
        client::SessionStorage::Keychain
    } else {
        client::SessionStorage::File
    }
}

fn report_storage(keychain: bool, stored: client::SessionStorage) {
    match stored {
        client::SessionStorage::Keychain => println!("The session is kept in the keychain."),
        client::SessionStorage::File if keychain => println!(
            "No keychain service could take the session; it is kept in session.json \
             (readable by you only) instead."
        ),
        client::SessionStorage::File => {}
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "this device".to_owned())
}

/// jemalloc, which gives freed pages back to the system from a background thread: glibc's
/// malloc kept a first sync's transient peak resident for the process's life (decision 0053).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| syncsphere_sync_client::DEFAULT_LOG_FILTER.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let dir = match cli.config_dir {
        Some(d) => d,
        None => default_config_dir()?,
    };
    match cli.command {
        Command::Signup {
            server,
            email,
            keychain,
        } => {
            let server = client::load_system_config()?.resolve_server_url(server.as_deref())?;
            let pw = password()?;
            match client::sign_up(&dir, &server, &email, &pw, storage(keychain))
                .await
                .context("sign-up failed")?
            {
                client::SignUp::SignedIn(stored) => {
                    println!("Account {email} created and signed in on {server}.");
                    report_storage(keychain, stored);
                }
                client::SignUp::ConfirmationNeeded(delivery) => {
                    println!("Account {email} created. A confirmation code was sent {delivery}.");
                    match prompt("Confirmation code: ")? {
                        Some(code) => confirm(&dir, &server, &email, &code, &pw, keychain).await?,
                        None => println!(
                            "To finish: syncsphere confirm-signup --email {email} --code CODE"
                        ),
                    }
                }
            }
        }
        Command::ConfirmSignup {
            server,
            email,
            code,
            resend,
            keychain,
        } => {
            let server = client::load_system_config()?.resolve_server_url(server.as_deref())?;
            match code {
                Some(code) if !resend => {
                    confirm(&dir, &server, &email, &code, &password()?, keychain).await?
                }
                _ => {
                    let delivery = client::resend_confirmation_code(&server, &email)
                        .await
                        .context("could not send a new code")?;
                    println!("A new confirmation code was sent {delivery}.");
                }
            }
        }
        Command::Login {
            server,
            email,
            keychain,
        } => {
            let server = client::load_system_config()?.resolve_server_url(server.as_deref())?;
            let pw = password()?;
            let stored = match client::sign_in(&dir, &server, &email, &pw, storage(keychain)).await
            {
                Err(client::SyncError::NewPasswordRequired) => {
                    let Some(new) = new_password()? else {
                        bail!(
                            "this account needs a new password: set SYNCSPHERE_NEW_PASSWORD (or \
                             run in a terminal) and sign in again with the temporary password"
                        );
                    };
                    let stored = client::sign_in_with_new_password(
                        &dir,
                        &server,
                        &email,
                        &pw,
                        &new,
                        storage(keychain),
                    )
                    .await
                    .context("setting the new password failed")?;
                    println!("New password set.");
                    stored
                }
                other => other.context("sign-in failed")?,
            };
            println!("Signed in to {server} as {email}.");
            report_storage(keychain, stored);
        }
        Command::ChangePassword => {
            let current = password()?;
            let Some(new) = new_password()? else {
                bail!("no new password: set SYNCSPHERE_NEW_PASSWORD or run in a terminal");
            };
            client::change_password(&dir, &current, &new)
                .await
                .context("changing the password failed")?;
            println!("Password changed.");
        }
        Command::ResetPassword {
            server,
            email,
            code,
            keychain,
        } => {
            let server = client::load_system_config()?.resolve_server_url(server.as_deref())?;
            let code = match code {
                Some(code) => code,
                None => {
                    let delivery = client::forgot_password(&server, &email)
                        .await
                        .context("could not start the password reset")?;
                    println!("A code to reset the password was sent {delivery}.");
                    match prompt("Code: ")? {
                        Some(code) => code,
                        None => {
                            println!(
                                "To finish: SYNCSPHERE_NEW_PASSWORD=… syncsphere reset-password \
                                 --email {email} --code CODE"
                            );
                            return Ok(());
                        }
                    }
                }
            };
            let Some(new) = new_password()? else {
                bail!("no new password: set SYNCSPHERE_NEW_PASSWORD or run in a terminal");
            };
            let stored = client::confirm_forgot_password(
                &dir,
                &server,
                &email,
                &code,
                &new,
                storage(keychain),
            )
            .await
            .context("the password reset failed")?;
            println!("Password reset; signed in to {server} as {email}.");
            report_storage(keychain, stored);
        }
        Command::Logout { everywhere: false } => {
            client::sign_out(&dir).await?;
            println!("Signed out.");
        }
        Command::Logout { everywhere: true } => {
            client::sign_out_everywhere(&dir).await?;
            println!("Signed out of all devices.");
        }
        Command::Sync {
            folder,
            device_name,
            max_upload_kib,
            max_download_kib,
            start_over,
            delete_brake_files,
            delete_brake_percent,
        } => {
            let options = client::SyncOptions {
                max_upload_rate: max_upload_kib.map(|k| k * 1024),
                max_download_rate: max_download_kib.map(|k| k * 1024),
                link: if start_over {
                    client::LinkMode::StartOver
                } else {
                    client::LinkMode::Normal
                },
                delete_policy: DeletePolicy {
                    min_files: delete_brake_files,
                    max_share_pct: delete_brake_percent,
                    ..DeletePolicy::default()
                },
                holder: "syncsphere sync".to_owned(),
            };
            sync(&dir, &folder, device_name, options).await?
        }
        Command::ConfirmDeletes { fingerprint } => {
            decide(&dir, fingerprint, client::DeleteDecision::DeleteEverywhere)?
        }
        Command::RestoreDeletes { fingerprint } => {
            decide(&dir, fingerprint, client::DeleteDecision::Restore)?
        }
        Command::Status { json } => status(&dir, json)?,
        Command::Devices { json } => devices(&dir, json).await?,
        Command::RevokeDevice { device_id } => {
            client::revoke_device(&dir, &device_id)
                .await
                .context("revoking the device failed")?;
            println!("Device {device_id} revoked.");
        }
    }
    Ok(())
}

async fn sync(
    dir: &Path,
    folder: &Path,
    device_name: Option<String>,
    options: client::SyncOptions,
) -> anyhow::Result<()> {
    let device_name = device_name.unwrap_or_else(host_name);
    let mut handle = client::start_sync_with(dir, folder, &device_name, options)
        .context("cannot start syncing")?;
    let mut status = handle.status.clone();
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut pause = signal(SignalKind::user_defined1())?;
    let mut resume = signal(SignalKind::user_defined2())?;
    let mut last_summary = String::new();
    let mut last_kind = None;
    let mut failure = None;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = pause.recv() => {
                tracing::info!(target: "syncsphere", "pausing (SIGUSR1)");
                handle.set_paused(true);
            }
            _ = resume.recv() => {
                tracing::info!(target: "syncsphere", "resuming (SIGUSR2)");
                handle.set_paused(false);
            }
            changed = status.changed() => {
                if changed.is_err() {
                    // Sync ended by itself: say why when it was an error (e.g. device revoked).
                    let s = status.borrow().clone();
                    if s.state == SyncState::Error {
                        failure = s.last_error;
                    }
                    break;
                }
                let s = status.borrow_and_update().clone();
                let summary = format!("{} [{}]", s.summary(), if s.connected { "online" } else { "offline" });
                if summary != last_summary {
                    tracing::info!(target: "syncsphere", "{summary}");
                    last_summary = summary;
                }
                if s.state == SyncState::Error && s.error_kind == Some(ErrorKind::NotSignedIn) {
                    bail!("{}", s.last_error.unwrap_or_default());
                }
                if s.error_kind != last_kind {
                    if let Some(hint) = s.error_kind.and_then(|k| hint(k, folder)) {
                        tracing::warn!(target: "syncsphere", "{hint}");
                    }
                    last_kind = s.error_kind;
                }
            }
        }
    }
    handle.status.mark_unchanged();
    // Waits for the final status to be written, also when sync ended by itself.
    handle.stop().await;
    match failure {
        Some(reason) => bail!("{reason}"),
        None => Ok(()),
    }
}

/// What the user can do about an error of kind `kind`, in this program's terms.
fn hint(kind: ErrorKind, folder: &Path) -> Option<String> {
    let folder = folder.display();
    match kind {
        ErrorKind::FolderMissing
        | ErrorKind::FolderNotADirectory
        | ErrorKind::FolderMarkerMissing => Some(format!(
            "Waiting for the folder. If you moved it, run `syncsphere sync --folder NEW_PATH`; \
                 to start over with an empty folder (everything is downloaded again, nothing is \
                 deleted), run `syncsphere sync --folder {folder} --start-over`."
        )),
        ErrorKind::MassDeletePending => Some(
            "Nothing is deleted on the server until you decide: `syncsphere confirm-deletes` \
             deletes them everywhere, `syncsphere restore-deletes` brings them back (see \
             `syncsphere status`)."
                .to_owned(),
        ),
        _ => None,
    }
}

/// Answers the held deletions: the set named by `fingerprint`, or the one pending now.
fn decide(
    dir: &Path,
    fingerprint: Option<String>,
    decision: client::DeleteDecision,
) -> anyhow::Result<()> {
    let pending = client::last_status(dir)?.and_then(|s| s.pending_deletes);
    let fingerprint = match (fingerprint, &pending) {
        (Some(f), _) => f,
        (None, Some(p)) => p.fingerprint.clone(),
        (None, None) => {
            bail!("no deletions are waiting for confirmation (see `syncsphere status`)")
        }
    };
    client::decide_deletes(dir, &fingerprint, decision)?;
    let what = match &pending {
        Some(p) if p.fingerprint == fingerprint => format!("{} files", p.count),
        _ => format!("the set {fingerprint}"),
    };
    match decision {
        client::DeleteDecision::DeleteEverywhere => println!(
            "Confirmed: {what} will be deleted on the server and your other devices (they stay \
             in the server's trash for the retention period)."
        ),
        client::DeleteDecision::Restore => {
            println!("{what} will be downloaded back into the folder; nothing is deleted.")
        }
    }
    Ok(())
}

async fn devices(dir: &Path, json: bool) -> anyhow::Result<()> {
    let list = client::devices(dir)
        .await
        .context("listing devices failed")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    for d in &list.devices {
        let state = if d.revoked {
            "revoked".to_owned()
        } else if d.online {
            "online".to_owned()
        } else {
            format!("seen {} ago", human_age(now - d.last_seen_ms))
        };
        println!(
            "{}{:<36}  {:<24}  {:<8}  {}",
            if d.current { "* " } else { "  " },
            d.device_id,
            d.name.as_deref().unwrap_or("(unnamed)"),
            d.platform.as_deref().unwrap_or("-"),
            state
        );
    }
    Ok(())
}

fn human_age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

fn status(dir: &Path, json: bool) -> anyhow::Result<()> {
    let config = client::load_config(dir)?;
    let status = client::last_status(dir)?;
    if json {
        let value = serde_json::json!({
            "signed_in": config.is_some(),
            "server": config.as_ref().map(|c| &c.server_url),
            "email": config.as_ref().map(|c| &c.email),
            "device_id": config.as_ref().map(|c| &c.device_id),
            "status": status,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let Some(config) = config else {
        println!("Not signed in. Run `syncsphere signup` or `syncsphere login`.");
        return Ok(());
    };
    println!("Account: {} on {}", config.email, config.server_url);
    match status {
        None => println!("Sync has not run yet. Start it with `syncsphere sync --folder PATH`."),
        Some(s) => {
            println!("Folder:  {}", s.folder);
            println!(
                "State:   {} ({})",
                s.summary(),
                if s.connected { "online" } else { "offline" }
            );
            for t in &s.transfers {
                let arrow = match t.direction {
                    client::Direction::Upload => "uploading",
                    client::Direction::Download => "downloading",
                };
                let percent = (t.total > 0).then(|| t.done.saturating_mul(100) / t.total);
                match percent {
                    Some(p) => println!("  {arrow:<15} {} ({p}% of {} bytes)", t.path, t.total),
                    None => println!("  {arrow:<15} {} ({} bytes so far)", t.path, t.done),
                }
            }
            if let Some(p) = &s.pending_deletes {
                println!(
                    "Held:    {} of {} synced files were deleted here; confirm with \
                     `syncsphere confirm-deletes` or bring them back with `syncsphere \
                     restore-deletes` (set {})",
                    p.count, p.synced_files, p.fingerprint
                );
                for path in &p.sample {
                    println!("  deleted here    {path}");
                }
                if p.count as usize > p.sample.len() {
                    println!("  … and {} more", p.count as usize - p.sample.len());
                }
            } else if let Some(hint) = s.error_kind.and_then(|k| hint(k, Path::new(&s.folder))) {
                println!("         {hint}");
            }
            for problem in &s.problems {
                println!("  not synced      {}: {}", problem.path, problem.message);
            }
            for r in s.recent.iter().take(10) {
                println!("  {:<15} {}", r.action, r.path);
            }
        }
    }
    Ok(())
}
