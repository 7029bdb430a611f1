//! Commands of the account pages: devices (list, unlink), a file's version history and
//! restore, the trash and undelete. All of it is `sync-client`'s account API; this module only
//! shapes the JSON and the errors.

use serde::Serialize;
use syncsphere_sync_client::{Device, FileMeta, Revision};
use tauri::State;

use super::{CommandError, CommandResult};
use crate::DesktopState;

/// How many matches a file search returns at most (the user narrows the query otherwise).
const SEARCH_LIMIT: usize = 50;

#[derive(Debug, Serialize)]
pub(crate) struct DeviceDto {
    device_id: String,
    name: String,
    platform: Option<String>,
    last_seen_ms: i64,
    online: bool,
    revoked: bool,
    /// This computer.
    this_device: bool,
}

impl From<Device> for DeviceDto {
    fn from(d: Device) -> Self {
        DeviceDto {
            name: d.name.unwrap_or_else(|| "Unnamed device".to_owned()),
            device_id: d.device_id.into_string(),
            platform: d.platform,
            last_seen_ms: d.last_seen_ms,
            online: d.online,
            revoked: d.revoked,
            this_device: d.current,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct FileDto {
    file_id: String,
    path: String,
    rev: i64,
    size: i64,
    deleted: bool,
    modified_ms: i64,
}

impl From<FileMeta> for FileDto {
    fn from(f: FileMeta) -> Self {
        FileDto {
            file_id: f.file_id.into_string(),
            path: f.path,
            rev: f.rev.into(),
            size: f.size,
            deleted: f.deleted,
            modified_ms: f.modified_ms,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct RevisionDto {
    rev: i64,
    path: String,
    size: i64,
    /// This revision deleted the file (it cannot be restored; an earlier one can).
    deleted: bool,
    modified_ms: i64,
    /// The device that made it, by id (the Devices page has the names).
    origin_device: Option<String>,
}

impl From<Revision> for RevisionDto {
    fn from(r: Revision) -> Self {
        RevisionDto {
            rev: r.rev.into(),
            path: r.path,
            size: r.size,
            deleted: r.deleted,
            modified_ms: r.modified_ms,
            origin_device: r.origin_device.map(String::from),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct HistoryDto {
    file: FileDto,
    /// Newest first; the first one is the current version.
    revisions: Vec<RevisionDto>,
}

#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn list_devices(state: State<'_, DesktopState>) -> CommandResult<Vec<DeviceDto>> {
    let list = syncsphere_sync_client::devices(&state.config_dir)
        .await
        .map_err(|e| CommandError::from_sync("Could not load your devices.", e))?;
    Ok(list.devices.into_iter().map(DeviceDto::from).collect())
}

#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn revoke_device(
    state: State<'_, DesktopState>,
    device_id: String,
) -> CommandResult<()> {
    syncsphere_sync_client::revoke_device(&state.config_dir, &device_id)
        .await
        .map_err(|e| CommandError::from_sync("Could not unlink the device.", e))
}

/// Live files whose path contains `query` (ignoring case), at most [`SEARCH_LIMIT`].
#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn search_files(
    state: State<'_, DesktopState>,
    query: String,
) -> CommandResult<Vec<FileDto>> {
    let files = syncsphere_sync_client::files(&state.config_dir)
        .await
        .map_err(|e| CommandError::from_sync("Could not search your files.", e))?;
    Ok(matching(files, &query)
        .into_iter()
        .map(FileDto::from)
        .collect())
}

fn matching(files: Vec<FileMeta>, query: &str) -> Vec<FileMeta> {
    let needle = query.trim().to_lowercase();
    files
        .into_iter()
        .filter(|f| f.path.to_lowercase().contains(&needle))
        .take(SEARCH_LIMIT)
        .collect()
}

/// The versions of the file at `path` (relative to the synced folder).
#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn file_history(
    state: State<'_, DesktopState>,
    path: String,
) -> CommandResult<HistoryDto> {
    let history = syncsphere_sync_client::file_history(&state.config_dir, &path)
        .await
        .map_err(|e| CommandError::from_sync("Could not load the file's versions.", e))?;
    Ok(HistoryDto {
        file: history.file.into(),
        revisions: history.revisions.into_iter().map(Into::into).collect(),
    })
}

/// Makes revision `rev` current again, then syncs at once so it lands on this disk.
#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn restore_revision(
    state: State<'_, DesktopState>,
    file_id: String,
    rev: i64,
) -> CommandResult<FileDto> {
    let meta = syncsphere_sync_client::restore_revision(&state.config_dir, &file_id, rev)
        .await
        .map_err(|e| CommandError::from_sync("Could not restore this version.", e))?;
    state.sync.sync_now().await;
    Ok(meta.into())
}

#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn list_trash(state: State<'_, DesktopState>) -> CommandResult<Vec<FileDto>> {
    let files = syncsphere_sync_client::trash(&state.config_dir)
        .await
        .map_err(|e| CommandError::from_sync("Could not load the trash.", e))?;
    Ok(files.into_iter().map(FileDto::from).collect())
}

/// Brings a file back from the trash, then syncs at once so it lands on this disk.
#[tauri::command(rename_all = "snake_case")]
pub(crate) async fn undelete(
    state: State<'_, DesktopState>,
    file_id: String,
) -> CommandResult<FileDto> {
    let meta = syncsphere_sync_client::undelete(&state.config_dir, &file_id)
        .await
        .map_err(|e| CommandError::from_sync("Could not bring the file back.", e))?;
    state.sync.sync_now().await;
    Ok(meta.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncsphere_sync_client::Rev;

    fn file(path: &str) -> FileMeta {
        FileMeta {
            file_id: path.into(),
            path: path.into(),
            rev: Rev(1),
            size: 0,
            sha256: String::new().into(),
            deleted: false,
            modified_ms: 0,
        }
    }

    #[test]
    fn search_ignores_case_and_is_capped() {
        let files = vec![
            file("Docs/Report.pdf"),
            file("notes.txt"),
            file("docs/old report.txt"),
        ];
        let found: Vec<String> = matching(files, " REPORT ")
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(found, ["Docs/Report.pdf", "docs/old report.txt"]);
        let many = (0..200).map(|i| file(&format!("f{i}"))).collect();
        assert_eq!(matching(many, "f").len(), SEARCH_LIMIT);
    }
}
