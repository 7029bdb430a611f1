//! Commands that answer the sync engine's safety stops, each a few lines over `sync-client`:
//! - the synced folder is gone: "start over with an empty folder" ([`start_over`]); "locate
//!   folder" is [`super::start_sync`] with the folder's new path;
//! - many deletions are held until the user confirms: [`decide_deletes`].
//!
//! **Boundary:** what is safe (which folder may be created, which deletions a fingerprint
//! covers) is decided in `sync-client`; these commands only pass the user's choice on.

use serde::Deserialize;
use syncsphere_sync_client::{DeleteDecision, LinkMode, Status, SyncOptions};
use tauri::{AppHandle, State};

use super::{CommandError, CommandResult, refuse_a_file, start_failed, synced_folder};
use crate::settings::DesktopSettings;
use crate::{DesktopState, file_manager};

/// "Start over with an empty folder": restarts sync on the remembered folder, forgetting what
/// was synced. The folder is created if missing, everything on the server comes down, what is
/// in the folder goes up, and nothing is deleted anywhere.
#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn start_over(
    app: AppHandle,
    state: State<'_, DesktopState>,
) -> CommandResult<Status> {
    let folder = synced_folder(&state)?;
    refuse_a_file(&folder)?;
    let settings = state.settings().unwrap_or_default();
    tracing::info!(folder = %folder.display(), "starting over with an empty folder");
    let status = state
        .sync
        .start(
            &app,
            &state.config_dir,
            &folder,
            start_over_options(&settings),
            settings.paused,
        )
        .await
        .map_err(start_failed)?;
    state.set_sync_problem(None);
    file_manager::on_sync_started(&folder);
    Ok(status)
}

/// The options of this one start; a later restart (new limits, next launch) links normally.
fn start_over_options(settings: &DesktopSettings) -> SyncOptions {
    SyncOptions {
        link: LinkMode::StartOver,
        ..settings.sync_options()
    }
}

/// What the window sends for held deletions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DeleteAnswer {
    /// The user deleted the files on purpose: delete them on the server and every device.
    DeleteEverywhere,
    /// Bring them back into the folder; nothing is deleted.
    Restore,
}

impl From<DeleteAnswer> for DeleteDecision {
    fn from(a: DeleteAnswer) -> Self {
        match a {
            DeleteAnswer::DeleteEverywhere => DeleteDecision::DeleteEverywhere,
            DeleteAnswer::Restore => DeleteDecision::Restore,
        }
    }
}

/// Answers the held deletions named by `fingerprint` (the status's `pending_deletes`), then
/// wakes the engine so the answer is acted on at once.
#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn decide_deletes(
    state: State<'_, DesktopState>,
    fingerprint: String,
    decision: DeleteAnswer,
) -> CommandResult<()> {
    tracing::info!(?decision, "answering held deletions");
    syncsphere_sync_client::decide_deletes(&state.config_dir, &fingerprint, decision.into())
        .map_err(|e| CommandError::from_sync("Your answer was not passed on.", e))?;
    state.sync.sync_now().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_over_is_for_one_start_and_keeps_the_limits() {
        let settings = DesktopSettings {
            max_upload_kib: Some(100),
            ..DesktopSettings::default()
        };
        let options = start_over_options(&settings);
        assert_eq!(options.link, LinkMode::StartOver);
        assert_eq!(
            options,
            SyncOptions {
                link: LinkMode::StartOver,
                ..settings.sync_options()
            }
        );
        assert_eq!(options.max_upload_rate, Some(102_400));
        // What every other start uses, the restart after new limits included.
        assert_eq!(settings.sync_options().link, LinkMode::Normal);
    }

    #[test]
    fn the_window_answers_in_its_own_words() {
        let answer =
            |json: &str| serde_json::from_str::<DeleteAnswer>(json).map(DeleteDecision::from);
        assert_eq!(
            answer(r#""delete_everywhere""#).unwrap(),
            DeleteDecision::DeleteEverywhere
        );
        assert_eq!(answer(r#""restore""#).unwrap(), DeleteDecision::Restore);
        for refused in [r#""delete""#, r#""Restore""#, r#""""#] {
            assert!(answer(refused).is_err(), "{refused}");
        }
    }
}
