//! The synced folder's identity: a marker inside it (`.syncsphere/folder-id`, like Syncthing's
//! `.stfolder`), written when the folder is first linked, and the checks that keep a folder
//! that is gone from being read as "the user deleted everything".
//!
//! **Invariants**
//! - Only a first link (or the user's explicit "start over") creates the folder; a linked folder
//!   that is missing, not a folder, or lacks its marker stops sync with a [`FolderProblem`]
//!   until it is back — it is never re-created or emptied.
//! - Relinking a folder that does not carry this link's marker forgets the synced tree, so the
//!   first pass merges (downloads, uploads, conflicted copies) and never deletes.
//!
//! The device number (`st_dev`) only explains a missing marker ("a drive that is not mounted");
//! a folder that carries its marker is accepted on another device number, because removable
//! drives get a new one when plugged into another port (see `docs/decisions/`).

use std::path::{Path, PathBuf};

use crate::SyncError;
use crate::index::Index;
use crate::local_fs::{Kind, LocalFs};
use crate::scan::STATE_DIR;

/// The marker's name inside [`STATE_DIR`].
pub(crate) const MARKER: &str = "folder-id";

/// Index settings that remember the link.
const FOLDER_KEY: &str = "folder";
const ID_KEY: &str = "folder_id";
const DEV_KEY: &str = "folder_dev";

/// Why a linked folder cannot be synced now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FolderProblem {
    #[error(
        "the synced folder {0} is missing: it may have been moved, renamed or deleted, or be on a \
         drive that is not mounted. Nothing was deleted; sync resumes when it is back"
    )]
    Missing(PathBuf),
    #[error("{0} is no longer a folder. Nothing was deleted; sync resumes when the folder is back")]
    NotADirectory(PathBuf),
    #[error(
        "the synced folder {path} is there but its SyncSphere marker ({STATE_DIR}/{MARKER}) is \
         not{unmounted}. Nothing was deleted; sync resumes when the real folder is back",
        unmounted = if *.other_device {
            ": it is on another drive than before, most likely the empty mount point of a drive \
             that is not mounted"
        } else {
            ": it may have been replaced by another folder"
        }
    )]
    MarkerMissing { path: PathBuf, other_device: bool },
}

impl FolderProblem {
    pub(crate) fn kind(&self) -> crate::status::ErrorKind {
        use crate::status::ErrorKind;
        match self {
            FolderProblem::Missing(_) => ErrorKind::FolderMissing,
            FolderProblem::NotADirectory(_) => ErrorKind::FolderNotADirectory,
            FolderProblem::MarkerMissing { .. } => ErrorKind::FolderMarkerMissing,
        }
    }
}

/// How to link the folder at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkMode {
    /// Sync the folder linked before, or link a new one (created if missing).
    #[default]
    Normal,
    /// "Start over with an empty folder": forget the synced tree, create the folder if it is
    /// missing and mark it as this link's folder. Nothing is deleted anywhere: files on the
    /// server come down, files in the folder go up, differences become conflicted copies.
    StartOver,
}

/// A folder that passed its checks: what every pass checks again.
#[derive(Debug, Clone)]
pub(crate) struct LinkedFolder {
    pub path: PathBuf,
    id: String,
    /// The device number when linked, to explain a missing marker.
    dev: Option<u64>,
}

impl LinkedFolder {
    /// Checks the folder is still the linked one (two `stat`s and one small read). The engine
    /// calls it before and after every scan.
    pub(crate) fn check(&self, fs: &dyn LocalFs) -> Result<(), FolderProblem> {
        let meta = match fs.metadata(&self.path) {
            Ok(m) => m,
            Err(_) => return Err(FolderProblem::Missing(self.path.clone())),
        };
        if meta.kind != Kind::Dir {
            return Err(FolderProblem::NotADirectory(self.path.clone()));
        }
        match read_marker(fs, &self.path) {
            Some(id) if id == self.id => Ok(()),
            _ => Err(FolderProblem::MarkerMissing {
                path: self.path.clone(),
                other_device: self.dev.is_some() && device_of(fs, &self.path) != self.dev,
            }),
        }
    }
}

/// `folder` made absolute without touching the disk (it may be missing).
pub(crate) fn absolute(folder: &Path) -> Result<PathBuf, SyncError> {
    let abs = std::path::absolute(folder)
        .map_err(|e| SyncError::Io(format!("resolving {}", folder.display()), e))?;
    // The canonical spelling when the folder exists, so the same folder is one link.
    Ok(std::fs::canonicalize(&abs).unwrap_or(abs))
}

fn read_marker(fs: &dyn LocalFs, folder: &Path) -> Option<String> {
    let text = fs
        .read_to_string(&folder.join(STATE_DIR).join(MARKER))
        .ok()?;
    let id = text.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

/// Writes the marker durably (temp file, fsync, rename, folder fsync).
fn write_marker(fs: &dyn LocalFs, folder: &Path, id: &str) -> std::io::Result<()> {
    let dir = folder.join(STATE_DIR);
    fs.create_dir_all(&dir)?;
    fs.write_durably(&dir.join(MARKER), format!("{id}\n").as_bytes())
}

/// The device number of `path` (`None` where the platform has none).
fn device_of(fs: &dyn LocalFs, path: &Path) -> Option<u64> {
    fs.metadata(path).ok().map(|m| m.dev).filter(|&d| d != 0)
}

/// Whether `folder` holds anything besides the client's own state folder.
fn holds_user_files(fs: &dyn LocalFs, folder: &Path) -> bool {
    fs.read_dir(folder).is_ok_and(|entries| {
        entries
            .iter()
            .any(|e| e.name != std::ffi::OsStr::new(STATE_DIR))
    })
}

/// Decides at start whether `folder` (absolute) may be synced, linking it when it is new.
pub(crate) async fn link(
    fs: &dyn LocalFs,
    index: &Index,
    folder: &Path,
    mode: LinkMode,
) -> Result<LinkedFolder, SyncError> {
    let key = folder.display().to_string();
    let linked_path = index.setting(FOLDER_KEY).await?;
    let linked_id = index.setting(ID_KEY).await?;
    let linked_dev: Option<u64> = index.setting(DEV_KEY).await?.and_then(|d| d.parse().ok());
    let same_path = linked_path.as_deref() == Some(key.as_str());
    let io = |what: &str| {
        let what = format!("{what} {}", folder.display());
        move |e| SyncError::Io(what, e)
    };

    if mode == LinkMode::StartOver {
        index.reset_synced().await?;
        fs.create_dir_all(folder).map_err(io("creating"))?;
        let id = read_marker(fs, folder).unwrap_or_else(new_id);
        write_marker(fs, folder, &id).map_err(io("marking"))?;
        tracing::info!(folder = %folder.display(), "starting over: the synced tree is forgotten, nothing is deleted");
        return remember(fs, index, folder, &key, id).await;
    }

    let marker = read_marker(fs, folder);
    let exists = fs.metadata(folder).map(|m| m.kind == Kind::Dir);
    match (same_path, linked_id) {
        // The folder linked before: it must still be the same folder.
        (true, Some(id)) => {
            let folder_problem = match exists {
                Err(_) => Some(FolderProblem::Missing(folder.to_path_buf())),
                Ok(false) => Some(FolderProblem::NotADirectory(folder.to_path_buf())),
                Ok(true) if marker.as_deref() != Some(id.as_str()) => {
                    Some(FolderProblem::MarkerMissing {
                        path: folder.to_path_buf(),
                        other_device: linked_dev.is_some_and(|d| device_of(fs, folder) != Some(d)),
                    })
                }
                Ok(true) => None,
            };
            if let Some(p) = folder_problem {
                return Err(SyncError::Folder(p));
            }
            remember(fs, index, folder, &key, id).await
        }
        // Linked by a version without markers: adopt the folder if it plainly is the synced one
        // (it exists and holds files, or nothing was synced yet); an empty folder where files
        // were synced is the empty mount point this check exists for.
        (true, None) => {
            let synced_any = !index.synced().await?.is_empty();
            match exists {
                Err(_) => Err(SyncError::Folder(FolderProblem::Missing(folder.into()))),
                Ok(false) => Err(SyncError::Folder(FolderProblem::NotADirectory(
                    folder.into(),
                ))),
                Ok(true) if synced_any && !holds_user_files(fs, folder) => {
                    Err(SyncError::Folder(FolderProblem::MarkerMissing {
                        path: folder.into(),
                        other_device: false,
                    }))
                }
                Ok(true) => {
                    let id = marker.unwrap_or_else(new_id);
                    write_marker(fs, folder, &id).map_err(io("marking"))?;
                    remember(fs, index, folder, &key, id).await
                }
            }
        }
        // Another folder than before (or the first): the same folder moved here keeps its
        // synced tree; any other folder starts from an empty one (merging, never deleting).
        (false, linked_id) => {
            if exists.is_ok_and(|dir| !dir) {
                return Err(SyncError::Folder(FolderProblem::NotADirectory(
                    folder.into(),
                )));
            }
            let moved_here = marker.is_some() && marker == linked_id;
            if moved_here {
                tracing::info!(from = ?linked_path, to = %folder.display(), "the synced folder was moved; following it");
            } else {
                index.reset_synced().await?;
                fs.create_dir_all(folder).map_err(io("creating"))?;
            }
            let id = marker.unwrap_or_else(new_id);
            write_marker(fs, folder, &id).map_err(io("marking"))?;
            remember(fs, index, folder, &key, id).await
        }
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn remember(
    fs: &dyn LocalFs,
    index: &Index,
    folder: &Path,
    key: &str,
    id: String,
) -> Result<LinkedFolder, SyncError> {
    index.set_setting(FOLDER_KEY, key).await?;
    index.set_setting(ID_KEY, &id).await?;
    let dev = device_of(fs, folder);
    if let Some(dev) = dev {
        index.set_setting(DEV_KEY, &dev.to_string()).await?;
    }
    Ok(LinkedFolder {
        path: folder.to_path_buf(),
        id,
        dev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local_fs::RealFs;
    use syncsphere_sync_core::SyncedFile;

    async fn index(dir: &Path) -> Index {
        Index::open(&dir.join("index.db")).await.unwrap()
    }

    async fn synced_count(index: &Index) -> usize {
        index.synced().await.unwrap().len()
    }

    async fn add_synced(index: &Index, path: &str) {
        let entry = SyncedFile {
            file_id: format!("id-{path}").into(),
            rev: 1,
            sha256: "00".into(),
        };
        index.set_synced(path, Some(&entry)).await.unwrap();
    }

    fn kind(r: Result<LinkedFolder, SyncError>) -> crate::status::ErrorKind {
        match r {
            Err(SyncError::Folder(p)) => p.kind(),
            other => panic!("expected a folder problem, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_linked_folder_that_is_gone_is_never_recreated() {
        use crate::status::ErrorKind as K;
        let config = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let folder = home.path().join("Sync");
        let index = index(config.path()).await;

        // First link: the folder is created and marked.
        let linked = link(&RealFs, &index, &folder, LinkMode::Normal)
            .await
            .unwrap();
        assert!(folder.join(STATE_DIR).join(MARKER).is_file());
        linked.check(&RealFs).unwrap();
        add_synced(&index, "a.txt").await;

        // Moved away: an error, and no folder appears.
        let moved = home.path().join("Moved");
        std::fs::rename(&folder, &moved).unwrap();
        assert_eq!(
            kind(link(&RealFs, &index, &folder, LinkMode::Normal).await),
            K::FolderMissing
        );
        assert!(!folder.exists(), "never re-created");
        assert_eq!(linked.check(&RealFs).unwrap_err().kind(), K::FolderMissing);

        // An empty folder in its place (an empty mount point): no marker.
        std::fs::create_dir(&folder).unwrap();
        assert_eq!(
            kind(link(&RealFs, &index, &folder, LinkMode::Normal).await),
            K::FolderMarkerMissing
        );
        assert_eq!(
            linked.check(&RealFs).unwrap_err().kind(),
            K::FolderMarkerMissing
        );
        std::fs::remove_dir(&folder).unwrap();

        // A file in its place.
        std::fs::write(&folder, b"x").unwrap();
        assert_eq!(
            kind(link(&RealFs, &index, &folder, LinkMode::Normal).await),
            K::FolderNotADirectory
        );
        std::fs::remove_file(&folder).unwrap();
        assert_eq!(
            synced_count(&index).await,
            1,
            "the synced tree is kept meanwhile"
        );

        // Put back: syncs again with its synced tree.
        std::fs::rename(&moved, &folder).unwrap();
        link(&RealFs, &index, &folder, LinkMode::Normal)
            .await
            .unwrap()
            .check(&RealFs)
            .unwrap();
        assert_eq!(synced_count(&index).await, 1);
    }

    #[tokio::test]
    async fn a_moved_folder_is_followed_and_a_foreign_one_merges() {
        let config = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let folder = home.path().join("Sync");
        let index = index(config.path()).await;
        link(&RealFs, &index, &folder, LinkMode::Normal)
            .await
            .unwrap();
        add_synced(&index, "a.txt").await;

        // "Locate folder": the same folder under a new name keeps its synced tree.
        let moved = home.path().join("Elsewhere");
        std::fs::rename(&folder, &moved).unwrap();
        let linked = link(&RealFs, &index, &moved, LinkMode::Normal)
            .await
            .unwrap();
        linked.check(&RealFs).unwrap();
        assert_eq!(synced_count(&index).await, 1);

        // Another folder without the marker: linked afresh, nothing can read as deleted.
        let other = home.path().join("Other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("b.txt"), b"b").unwrap();
        link(&RealFs, &index, &other, LinkMode::Normal)
            .await
            .unwrap();
        assert_eq!(synced_count(&index).await, 0);
        assert!(other.join("b.txt").is_file(), "its files stay");
    }

    #[tokio::test]
    async fn starting_over_forgets_the_synced_tree_and_creates_the_folder() {
        let config = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let folder = home.path().join("Sync");
        let index = index(config.path()).await;
        link(&RealFs, &index, &folder, LinkMode::Normal)
            .await
            .unwrap();
        add_synced(&index, "a.txt").await;
        std::fs::remove_dir_all(&folder).unwrap();
        assert!(
            link(&RealFs, &index, &folder, LinkMode::Normal)
                .await
                .is_err()
        );
        let linked = link(&RealFs, &index, &folder, LinkMode::StartOver)
            .await
            .unwrap();
        linked.check(&RealFs).unwrap();
        assert_eq!(synced_count(&index).await, 0);
    }

    #[tokio::test]
    async fn a_folder_linked_before_markers_is_adopted_unless_it_is_empty() {
        let config = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let folder = home.path().join("Sync");
        std::fs::create_dir(&folder).unwrap();
        let index = index(config.path()).await;
        // What an older client left: the folder's path and a synced tree, no marker.
        index
            .set_setting(FOLDER_KEY, &folder.display().to_string())
            .await
            .unwrap();
        add_synced(&index, "a.txt").await;
        std::fs::create_dir(folder.join(STATE_DIR)).unwrap();
        assert_eq!(
            kind(link(&RealFs, &index, &folder, LinkMode::Normal).await),
            crate::status::ErrorKind::FolderMarkerMissing,
            "empty where files were synced"
        );
        std::fs::write(folder.join("a.txt"), b"a").unwrap();
        link(&RealFs, &index, &folder, LinkMode::Normal)
            .await
            .unwrap()
            .check(&RealFs)
            .unwrap();
        assert_eq!(synced_count(&index).await, 1);
    }
}
