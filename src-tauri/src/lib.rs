//! SyncSphere desktop app: a window and a tray icon around `syncsphere-sync-client`.
//!
//! **Boundary:** this crate is a thin shell. It never syncs, talks to the server or touches
//! synced files itself — all of that is `sync-client`. It owns only the window's commands
//! ([`commands`]), the tray ([`tray`]), the one running sync ([`sync_control`]), the
//! desktop settings file ([`settings`]), what a launch asks for ([`launch`]: one instance
//! runs; a second launch hands `--show`/`--history <file>` to it and exits) and the synced
//! folder's place in the file managers ([`file_manager`]).

mod autostart;
mod commands;
mod emblems;
mod file_manager;
mod launch;
mod notices;
mod settings;
mod shell;
mod sync_control;
mod tray;

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tauri::{AppHandle, Manager as _, RunEvent, WindowEvent};

use crate::settings::DesktopSettings;
use crate::sync_control::SyncControl;

/// How long quitting waits for sync to shut down when the app is closed by other means than
/// the tray's Quit (which waits as long as it takes).
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// State shared by the commands, the tray and the status forwarder.
pub(crate) struct DesktopState {
    /// Holds the session (written by `sync-client`) and `desktop.json`.
    config_dir: PathBuf,
    home: Option<PathBuf>,
    sync: SyncControl,
    sync_problem: Mutex<Option<String>>,
    /// What this launch's command line asked to show, until the window takes it.
    open_request: Mutex<Option<commands::launch::OpenRequest>>,
    notices: Mutex<notices::NoticeTracker>,
    /// Desktop notifications are on (Settings); kept here, as the status changes several times
    /// a second while files move.
    notifications_on: AtomicBool,
}

impl DesktopState {
    fn settings(&self) -> anyhow::Result<DesktopSettings> {
        DesktopSettings::load(&self.config_dir)
    }

    fn sync_problem(&self) -> Option<String> {
        self.sync_problem
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The folder being synced (or chosen to be), for commands that work inside it.
    fn folder(&self) -> Option<PathBuf> {
        self.settings().ok().and_then(|s| s.folder)
    }

    /// Pauses or resumes syncing and remembers the choice across restarts.
    async fn set_paused(&self, paused: bool) -> anyhow::Result<()> {
        self.sync.set_paused(paused).await;
        let mut settings = self.settings()?;
        if settings.paused != paused {
            settings.paused = paused;
            settings.save(&self.config_dir)?;
        }
        Ok(())
    }

    /// The notifications `status` calls for; none while they are switched off (the tracker
    /// still follows, so switching them on does not replay old news).
    fn notices_for(&self, status: &syncsphere_sync_client::Status) -> Vec<notices::Notice> {
        let notices = self
            .notices
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .on_status(status);
        if self.notifications_on.load(Ordering::Relaxed) {
            notices
        } else {
            Vec::new()
        }
    }

    /// Like [`Self::notices_for`], for sync failing to start (`Some(problem)`) or starting.
    fn start_notice(&self, problem: Option<&str>) -> Vec<notices::Notice> {
        let notice = self
            .notices
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .on_start(problem);
        notice
            .filter(|_| self.notifications_on.load(Ordering::Relaxed))
            .into_iter()
            .collect()
    }

    fn set_notifications_on(&self, on: bool) {
        self.notifications_on.store(on, Ordering::Relaxed);
    }

    fn take_open_request(&self) -> Option<commands::launch::OpenRequest> {
        self.open_request
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    fn set_sync_problem(&self, problem: Option<String>) {
        *self
            .sync_problem
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = problem;
    }
}

/// Runs the app until the user quits.
pub fn run() -> anyhow::Result<()> {
    let config_dir = settings::config_dir()?;
    let cwd = std::env::current_dir().unwrap_or_default();
    let remembered = DesktopSettings::load(&config_dir).unwrap_or_default();
    let folder = remembered.folder.clone();
    let open_request =
        commands::launch::open_request(std::env::args().skip(1), &cwd, folder.as_deref());
    let state = DesktopState {
        config_dir,
        home: dirs::home_dir(),
        sync: SyncControl::default(),
        sync_problem: Mutex::new(None),
        open_request: Mutex::new(open_request),
        notices: Mutex::new(notices::NoticeTracker::default()),
        notifications_on: AtomicBool::new(!remembered.notifications_off),
    };
    tracing::info!(config_dir = %state.config_dir.display(), "starting");
    let app = tauri::Builder::default()
        // First, so a second launch hands over its arguments and exits before anything starts.
        .plugin(tauri_plugin_single_instance::init(|app, argv, cwd| {
            commands::launch::on_second_launch(app, argv, cwd);
        }))
        .plugin(tauri_plugin_notification::init())
        .manage(state)
        .invoke_handler(tauri::generate_handler![
            commands::get_session,
            commands::sign_in,
            commands::sign_up,
            commands::confirm_sign_up,
            commands::resend_confirmation_code,
            commands::start_sync,
            commands::get_status,
            commands::sign_out,
            commands::sign_out_everywhere,
            commands::forgot_password,
            commands::change_password,
            commands::reset_password,
            commands::open_folder,
            commands::launch::take_open_request,
            commands::account::list_devices,
            commands::account::revoke_device,
            commands::account::search_files,
            commands::account::file_history,
            commands::account::restore_revision,
            commands::account::list_trash,
            commands::account::undelete,
            commands::conflicts::list_conflicts,
            commands::conflicts::resolve_conflict,
            commands::conflicts::open_file,
            commands::conflicts::reveal_file,
            commands::preferences::get_settings,
            commands::preferences::save_settings,
            commands::preferences::set_paused,
            commands::preferences::set_start_at_login,
            commands::preferences::set_notifications,
            commands::safety::start_over,
            commands::safety::decide_deletes,
        ])
        .on_window_event(|window, event| {
            // Closing the window only hides it: sync goes on in the tray until Quit.
            if let WindowEvent::CloseRequested { api, .. } = event {
                api.prevent_close();
                if let Err(err) = window.hide() {
                    tracing::warn!("could not hide the window: {err}");
                }
            }
        })
        .setup(|app| {
            tray::build(app.handle())?;
            // Started at login: only the tray icon, until the user opens the window.
            if std::env::args().any(|arg| arg == autostart::HIDDEN_ARG)
                && let Some(window) = app.get_webview_window(shell::MAIN_WINDOW)
                && let Err(err) = window.hide()
            {
                tracing::warn!("could not hide the window: {err}");
            }
            // Resume before the window asks for the session, so it sees a settled state.
            tauri::async_runtime::block_on(resume_sync(app.handle()));
            Ok(())
        })
        .build(tauri::generate_context!())
        .context("could not start the desktop app")?;
    app.run(|app, event| match event {
        // Only programmatic exits (Quit) end the app; closed windows leave it in the tray.
        RunEvent::ExitRequested {
            code: None, api, ..
        } => api.prevent_exit(),
        RunEvent::Exit => {
            let state = app.state::<DesktopState>();
            // The timer must be created inside the runtime, hence the async block.
            let stopped = tauri::async_runtime::block_on(async {
                tokio::time::timeout(EXIT_GRACE, state.sync.stop()).await
            });
            if stopped.is_err() {
                tracing::warn!("sync did not stop within {EXIT_GRACE:?}; exiting anyway");
            }
        }
        _ => {}
    });
    Ok(())
}

/// Starts syncing the remembered folder when signed in. A folder that has gone missing (an
/// unplugged drive, say) is not this function's business: `sync-client` never re-creates it,
/// reports it in the status stream (the window offers to locate it or start over) and resumes
/// by itself when it is back.
async fn resume_sync(app: &AppHandle) {
    let state = app.state::<DesktopState>();
    let problem = match try_resume(app, &state).await {
        Ok(()) => None,
        Err(problem) => {
            tracing::warn!("not resuming sync: {problem}");
            tray::show_error(app, &problem);
            Some(problem)
        }
    };
    notices::send(app, state.start_notice(problem.as_deref()));
    state.set_sync_problem(problem);
}

async fn try_resume(app: &AppHandle, state: &DesktopState) -> Result<(), String> {
    let signed_in = syncsphere_sync_client::is_signed_in(&state.config_dir)
        .await
        .map_err(|err| format!("Your saved sign-in could not be read: {err}."))?;
    if !signed_in {
        tray::show_idle(app, "Not signed in");
        return Ok(());
    }
    // Sessions saved before the app used the keychain (or while no keychain service ran)
    // move into it now; without one they stay in the private file.
    match syncsphere_sync_client::move_session_to_keychain(&state.config_dir).await {
        Ok(storage) => tracing::info!(?storage, "session storage"),
        Err(err) => tracing::warn!("the session stays where it is: {err}"),
    }
    let settings = state.settings().map_err(|err| format!("{err:#}"))?;
    let Some(folder) = settings.folder.clone() else {
        tray::show_idle(app, "Choose a folder to start syncing");
        return Ok(());
    };
    let options = settings.sync_options();
    state
        .sync
        .start(app, &state.config_dir, &folder, options, settings.paused)
        .await
        .map_err(|err| format!("Could not start syncing {}: {err}", folder.display()))?;
    file_manager::on_sync_started(&folder);
    Ok(())
}
