//! Commands of the Conflicts page: the conflicted copies in the synced folder, settling one
//! (keep mine / keep theirs / keep both, in `sync-client`), opening a file and revealing it in
//! the file manager.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use syncsphere_sync_client::{ConflictedCopy, Resolution};
use tauri::State;

use super::{CommandError, CommandResult, ErrorCode, synced_folder};
use crate::{DesktopState, shell};

#[derive(Debug, Serialize)]
pub(crate) struct ConflictDto {
    /// The conflicted copy, relative to the synced folder.
    path: String,
    /// The file it conflicts with.
    original: String,
    /// The device whose version the copy holds.
    device: String,
    /// The copy holds this computer's version ("mine"); otherwise another device's.
    from_this_device: bool,
    /// When the conflict happened, as in the copy's name (`2026-11-25 103015`).
    stamp: String,
    size: u64,
    modified_ms: i64,
    original_exists: bool,
}

impl ConflictDto {
    fn new(c: ConflictedCopy, this_device: &str) -> Self {
        ConflictDto {
            from_this_device: c.device == this_device,
            path: c.path,
            original: c.original,
            device: c.device,
            stamp: c.stamp,
            size: c.size,
            modified_ms: c.modified_ms,
            original_exists: c.original_exists,
        }
    }
}

/// What the window sends: `keep_copy` (the copy's version wins), `keep_original` or
/// `keep_both` (the copy gets a plain name).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
#[expect(
    clippy::enum_variant_names,
    reason = "the window's own words: keep_copy, keep_original, keep_both"
)]
pub(crate) enum ConflictAction {
    KeepCopy,
    KeepOriginal,
    KeepBoth,
}

impl From<ConflictAction> for Resolution {
    fn from(a: ConflictAction) -> Self {
        match a {
            ConflictAction::KeepCopy => Resolution::KeepCopy,
            ConflictAction::KeepOriginal => Resolution::KeepOriginal,
            ConflictAction::KeepBoth => Resolution::KeepBoth,
        }
    }
}

#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn list_conflicts(
    state: State<'_, DesktopState>,
) -> CommandResult<Vec<ConflictDto>> {
    let folder = synced_folder(&state)?;
    let this_device = crate::sync_control::device_name();
    let found = tauri::async_runtime::spawn_blocking(move || {
        syncsphere_sync_client::conflicted_copies(&folder)
    })
    .await
    .map_err(|e| {
        CommandError::new(
            ErrorCode::Failed,
            format!("Could not look for conflicts: {e}"),
        )
    })?
    .map_err(|e| CommandError::from_sync("Could not look for conflicts.", e))?;
    Ok(found
        .into_iter()
        .map(|c| ConflictDto::new(c, &this_device))
        .collect())
}

#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn resolve_conflict(
    state: State<'_, DesktopState>,
    path: String,
    action: ConflictAction,
) -> CommandResult<()> {
    let folder = synced_folder(&state)?;
    syncsphere_sync_client::resolve_conflict(&state.config_dir, &folder, &path, action.into())
        .await
        .map_err(|e| CommandError::from_sync("Could not settle the conflict.", e))
}

/// Opens a file of the synced folder with its default application.
#[tauri::command(rename_all = "snake_case")]
pub(crate) fn open_file(state: State<'_, DesktopState>, path: String) -> CommandResult<()> {
    let file = inside(&synced_folder(&state)?, &path)?;
    shell::open_in_file_manager(&file).map_err(|e| {
        CommandError::new(
            ErrorCode::Failed,
            format!("Could not open {path}: {e}. Open it from the folder instead."),
        )
    })
}

/// Shows a file of the synced folder in the file manager.
#[tauri::command(rename_all = "snake_case")]
pub(crate) fn reveal_file(state: State<'_, DesktopState>, path: String) -> CommandResult<()> {
    let file = inside(&synced_folder(&state)?, &path)?;
    shell::reveal_in_file_manager(&file).map_err(|e| {
        CommandError::new(
            ErrorCode::Failed,
            format!("Could not show {path} in the file manager: {e}."),
        )
    })
}

/// `folder/rel`, refusing anything that would leave the folder (absolute paths, `..`).
fn inside(folder: &Path, rel: &str) -> CommandResult<PathBuf> {
    let rel_path = Path::new(rel);
    let plain = !rel.is_empty()
        && rel_path
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(CommandError::new(
            ErrorCode::NotFound,
            format!("'{rel}' is not a file in your SyncSphere folder."),
        ));
    }
    let file = folder.join(rel_path);
    if !file.exists() {
        return Err(CommandError::new(
            ErrorCode::NotFound,
            format!("{rel} is not there any more; it may have been moved or deleted."),
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_existing_files_inside_the_folder_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/a.txt"), b"x").unwrap();
        assert_eq!(
            inside(dir.path(), "d/a.txt").unwrap(),
            dir.path().join("d/a.txt")
        );
        for bad in [
            "",
            "../etc/passwd",
            "/etc/passwd",
            "d/../../x",
            "d/missing.txt",
        ] {
            let err = inside(dir.path(), bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::NotFound, "{bad}");
        }
    }
}
