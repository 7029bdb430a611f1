//! Account operations outside the sync loop: a file's version history and restoring a
//! revision, the trash and undeleting. They act on the server with the signed-in device's
//! session (the same config directory a running sync uses); what they change comes back to
//! every device as an ordinary journal entry — by push to the other devices, and on this
//! device on its next sync pass (the server never pushes a change to the device that made it).
//!
//! **Boundary**: never touches the sync folder or the local index. The server's history is the
//! truth, so a restore or an undelete is a new revision there and the sync engine applies it
//! like any edit (hash-checked download, never a byte lost locally).

use std::path::Path;
use syncsphere_protocol::Rev;

use syncsphere_protocol::endpoint::{GetFile, ListRevisions, ListTrash, RestoreRevision};
use syncsphere_protocol::{ErrorCode, FileMeta, RestoreRequest, Revision, normalize_path};

use crate::SyncError;
use crate::api::Api;

/// A file (live or in the trash) and its revisions, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHistory {
    pub file: FileMeta,
    pub revisions: Vec<Revision>,
}

/// The account's live files (for searching a file whose history to show), by path.
pub async fn files(config_dir: &Path) -> Result<Vec<FileMeta>, SyncError> {
    Session::open(config_dir).await?.api.list_files().await
}

/// The history of the file at `path` (relative to the sync folder, `/`-separated). A live file
/// at that path wins; otherwise the file most recently deleted from there (its history ends with
/// the deletion). Names match like the server compares them: exactly, else ignoring case.
pub async fn file_history(config_dir: &Path, path: &str) -> Result<FileHistory, SyncError> {
    let wanted = normalize_path(path).map_err(|e| SyncError::Server {
        status: 400,
        code: ErrorCode::InvalidPath,
        message: format!("'{path}' is not a valid file name: {e}"),
    })?;
    let session = Session::open(config_dir).await?;
    let live = session.api.list_files().await?;
    let file = match pick_by_path(live, &wanted) {
        Some(file) => file,
        None => {
            let trash = session.api.fetch::<ListTrash>(&[]).await?;
            pick_by_path(trash.files, &wanted).ok_or_else(|| SyncError::Server {
                status: 404,
                code: ErrorCode::NotFound,
                message: format!("there is no file '{wanted}' on the server, nor in its trash"),
            })?
        }
    };
    let revisions = session.revisions(&file.file_id).await?;
    Ok(FileHistory { file, revisions })
}

/// Picks the file at `wanted`: the exact spelling first, else the first one that differs only
/// in case (files come newest first from the trash, so that is the latest deletion).
fn pick_by_path(files: Vec<FileMeta>, wanted: &str) -> Option<FileMeta> {
    let folded = wanted.to_lowercase();
    let mut by_case = None;
    for file in files {
        if file.path == wanted {
            return Some(file);
        }
        if by_case.is_none() && file.path.to_lowercase() == folded {
            by_case = Some(file);
        }
    }
    by_case
}

/// The revisions of one file, newest first.
pub async fn revisions(config_dir: &Path, file_id: &str) -> Result<Vec<Revision>, SyncError> {
    Session::open(config_dir).await?.revisions(file_id).await
}

/// Makes revision `rev` of the file current again, as a new revision (the versions in between
/// stay in the history). A file in the trash comes back with that content.
pub async fn restore_revision(
    config_dir: &Path,
    file_id: &str,
    rev: i64,
) -> Result<FileMeta, SyncError> {
    let session = Session::open(config_dir).await?;
    let current = session.api.fetch::<GetFile>(&[file_id]).await?;
    let meta = session.restore(&current, rev).await?;
    tracing::info!(file_id, path = %meta.path, from_rev = rev, rev = meta.rev.get(), "restored a revision");
    Ok(meta)
}

/// Deleted files, most recently deleted first.
pub async fn trash(config_dir: &Path) -> Result<Vec<FileMeta>, SyncError> {
    let list = Session::open(config_dir)
        .await?
        .api
        .fetch::<ListTrash>(&[])
        .await?;
    Ok(list.files)
}

/// Brings a file back from the trash with the content it had when it was deleted (its newest
/// revision that is not the deletion), at the path it was deleted from.
pub async fn undelete(config_dir: &Path, file_id: &str) -> Result<FileMeta, SyncError> {
    let session = Session::open(config_dir).await?;
    let current = session.api.fetch::<GetFile>(&[file_id]).await?;
    if !current.deleted {
        return Err(SyncError::Server {
            status: 409,
            code: ErrorCode::Conflict,
            message: format!("'{}' is not in the trash", current.path),
        });
    }
    let revisions = session.revisions(file_id).await?;
    let last_content = revisions
        .iter()
        .find(|r| !r.deleted)
        .ok_or_else(|| SyncError::Server {
            status: 404,
            code: ErrorCode::NotFound,
            message: format!("'{}' has no content left to bring back", current.path),
        })?;
    let meta = session.restore(&current, last_content.rev.into()).await?;
    tracing::info!(file_id, path = %meta.path, rev = meta.rev.get(), "undeleted");
    Ok(meta)
}

/// The signed-in device's view of the server for these few requests (the sync engine's own
/// [`Api`]: same auth, device header and error mapping).
struct Session {
    api: Api,
}

impl Session {
    async fn open(config_dir: &Path) -> Result<Self, SyncError> {
        Ok(Session {
            api: crate::signed_in_api(config_dir).await?,
        })
    }

    async fn revisions(&self, file_id: &str) -> Result<Vec<Revision>, SyncError> {
        let list = self.api.fetch::<ListRevisions>(&[file_id]).await?;
        Ok(list.revisions)
    }

    /// `POST /v1/files/{id}/restore` on top of `current`. A conflict keeps the server's words
    /// (another file took the name, or the file changed meanwhile): the user decides again.
    async fn restore(&self, current: &FileMeta, rev: i64) -> Result<FileMeta, SyncError> {
        let body = RestoreRequest {
            rev: Rev(rev),
            parent_rev: current.rev,
        };
        self.api
            .submit::<RestoreRevision>(&[current.file_id.as_str()], &body)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(file_id: &str, path: &str) -> FileMeta {
        FileMeta {
            file_id: file_id.into(),
            path: path.into(),
            rev: Rev(1),
            size: 0,
            sha256: String::new().into(),
            deleted: false,
            modified_ms: 0,
        }
    }

    fn check_pick(files: &[(&str, &str)], wanted: &str, expected: Option<&str>) {
        let files = files.iter().map(|(id, p)| meta(id, p)).collect();
        let got = pick_by_path(files, wanted).map(|f| f.file_id);
        assert_eq!(got.as_deref(), expected, "wanted {wanted:?}");
    }

    #[test]
    fn paths_match_exactly_then_ignoring_case() {
        let files = [
            ("1", "Docs/Report.txt"),
            ("2", "docs/report.txt"),
            ("3", "a.txt"),
        ];
        check_pick(&files, "docs/report.txt", Some("2"));
        check_pick(&files, "DOCS/REPORT.TXT", Some("1"));
        check_pick(&files, "a.txt", Some("3"));
        check_pick(&files, "b.txt", None);
        check_pick(&files, "docs", None);
    }

    #[test]
    fn file_ids_are_one_path_segment() {
        use syncsphere_protocol::endpoint::Endpoint;
        assert_eq!(RestoreRevision::path(&["ab-12"]), "/v1/files/ab-12/restore");
        assert_eq!(GetFile::path(&["a/b?c"]), "/v1/files/a%2Fb%3Fc");
    }
}
