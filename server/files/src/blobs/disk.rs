//! The blob store on local disk (the embedded default): a blob is fsynced before its name
//! appears, and its directory after, so a blob that exists is complete and durable.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use syncsphere_auth::BoxFuture;

use futures_util::StreamExt;

use super::{
    BlobInfo, BlobPages, BlobStore, ByteStream, IO_PIECE, LIST_PAGE, StagedBlob, Staging,
    check_address,
};
use crate::FilesError;

/// Blobs on local disk: `{root}/{user}/{sha[0..2]}/{sha}`, moved in from a staging directory on
/// the same filesystem (`{root}/.tmp`) by rename after the staged file is fsynced, then the
/// directory is fsynced.
#[derive(Debug)]
pub struct DiskBlobStore {
    root: PathBuf,
}

impl DiskBlobStore {
    /// Opens the store and its staging area (`{root}/.tmp`, on the same filesystem).
    pub fn open(root: impl Into<PathBuf>) -> std::io::Result<(Self, Staging)> {
        let root = root.into();
        let staging = Staging::open(root.join(".tmp"))?;
        Ok((DiskBlobStore { root }, staging))
    }

    fn blob_path(&self, user_id: &str, sha256: &str) -> Result<PathBuf, FilesError> {
        check_address(user_id, sha256)?;
        Ok(self.root.join(user_id).join(&sha256[..2]).join(sha256))
    }

    async fn touch_path(path: PathBuf) -> Result<Option<(u64, SystemTime)>, FilesError> {
        let touched = tokio::task::spawn_blocking(move || {
            match std::fs::File::options().write(true).open(&path) {
                // The time it had: a touch must not hide from a commit that the collector may
                // be about to delete the blob (decision 0049).
                Ok(f) => {
                    let meta = f.metadata()?;
                    let before = meta.modified()?;
                    f.set_modified(SystemTime::now())
                        .map(|()| Some((meta.len(), before)))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(|e| FilesError::Blob(std::io::Error::other(e)))??;
        Ok(touched)
    }
}

impl BlobStore for DiskBlobStore {
    fn put<'a>(
        &'a self,
        user_id: &'a str,
        staged: &'a StagedBlob,
    ) -> BoxFuture<'a, Result<(), FilesError>> {
        Box::pin(async move {
            let dest = self.blob_path(user_id, &staged.sha256)?;
            if Self::touch_path(dest.clone()).await?.is_some() {
                return Ok(()); // same content already stored for this user (now fresh again)
            }
            let dir = dest.parent().expect("blob path has a parent");
            // The bytes reach the disk before the name does: a blob that exists is complete.
            tokio::fs::File::open(&staged.path)
                .await?
                .sync_all()
                .await?;
            tokio::fs::create_dir_all(dir).await?;
            tokio::fs::rename(&staged.path, &dest).await?;
            let dir = dir.to_path_buf();
            tokio::task::spawn_blocking(move || sync_directory(&dir))
                .await
                .map_err(|e| FilesError::Blob(std::io::Error::other(e)))??;
            Ok(())
        })
    }

    fn put_many<'a>(
        &'a self,
        batch: &'a [(String, StagedBlob)],
    ) -> BoxFuture<'a, Vec<Result<(), FilesError>>> {
        Box::pin(async move {
            let mut outcomes: Vec<Result<(), FilesError>> = Vec::with_capacity(batch.len());
            let mut moves = Vec::new();
            for (i, (user_id, staged)) in batch.iter().enumerate() {
                let dest = match self.blob_path(user_id, &staged.sha256) {
                    Ok(dest) => dest,
                    Err(e) => {
                        outcomes.push(Err(e));
                        continue;
                    }
                };
                match Self::touch_path(dest.clone()).await {
                    Ok(Some(_)) => outcomes.push(Ok(())), // already stored (now fresh again)
                    Ok(None) => {
                        outcomes.push(Ok(()));
                        moves.push((i, staged.path.clone(), dest));
                    }
                    Err(e) => outcomes.push(Err(e)),
                }
            }
            if moves.is_empty() {
                return outcomes;
            }
            let staging = self.root.join(".tmp");
            let moved = tokio::task::spawn_blocking(move || move_durably(&staging, moves))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            match moved {
                Ok(failed) => {
                    for (i, e) in failed {
                        outcomes[i] = Err(e.into());
                    }
                }
                Err(e) => {
                    // Nothing of the batch is known to be durable: report every blob that had
                    // to be moved (the commit finds them missing; clients send them again).
                    let message = e.to_string();
                    for outcome in outcomes.iter_mut().filter(|o| o.is_ok()) {
                        *outcome = Err(FilesError::Blob(std::io::Error::other(message.clone())));
                    }
                }
            }
            outcomes
        })
    }

    fn touch<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, SystemTime)>, FilesError>> {
        Box::pin(async move { Self::touch_path(self.blob_path(user_id, sha256)?).await })
    }

    fn stat<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, SystemTime)>, FilesError>> {
        Box::pin(async move {
            match tokio::fs::metadata(self.blob_path(user_id, sha256)?).await {
                Ok(m) => Ok(Some((m.len(), m.modified()?))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn read<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
        start: u64,
        len: u64,
    ) -> BoxFuture<'a, Result<ByteStream, FilesError>> {
        Box::pin(async move {
            let path = self.blob_path(user_id, sha256)?;
            let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
                use std::io::Seek;
                let mut file = std::fs::File::open(path)?;
                file.seek(std::io::SeekFrom::Start(start))?;
                Ok(file)
            })
            .await
            .map_err(|e| FilesError::Blob(std::io::Error::other(e)))??;
            // Pieces of up to IO_PIECE bytes, each read by one blocking call.
            let stream = futures_util::stream::try_unfold((file, len), |(file, left)| async move {
                if left == 0 {
                    return Ok(None);
                }
                let want = left.min(IO_PIECE as u64) as usize;
                let (file, piece) = tokio::task::spawn_blocking(move || {
                    use std::io::Read;
                    // Read into memory not zeroed first (`read_to_end` reads into the spare
                    // capacity), up to `want` bytes or the end of the blob.
                    let mut piece = Vec::with_capacity(want);
                    let mut file = file;
                    (&mut file).take(want as u64).read_to_end(&mut piece)?;
                    Ok::<_, std::io::Error>((file, piece))
                })
                .await
                .map_err(std::io::Error::other)??;
                // A blob shorter than asked for ends the stream early, as `take` would: the
                // caller's size or hash check reports it.
                if piece.is_empty() {
                    return Ok(None);
                }
                let left = left - piece.len() as u64;
                Ok(Some((Bytes::from(piece), (file, left))))
            });
            let stream: ByteStream = Box::pin(stream);
            Ok(stream)
        })
    }

    fn list(&self) -> BlobPages<'_> {
        // The walk runs on a blocking thread and hands over a page at a time; it stops when
        // the listing is dropped.
        let root = self.root.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<BlobInfo>, FilesError>>(2);
        tokio::task::spawn_blocking(move || {
            let mut page = Vec::with_capacity(LIST_PAGE);
            if let Err(e) = walk(&root, &mut page, &tx) {
                let _ = tx.blocking_send(Err(FilesError::Blob(e)));
            } else if !page.is_empty() {
                let _ = tx.blocking_send(Ok(page));
            }
        });
        futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|page| (page, rx))
        })
        .boxed()
    }

    fn delete<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<(), FilesError>> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.blob_path(user_id, sha256)?).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn touch_extends_grace(&self) -> bool {
        true
    }
}

/// Batches of up to this many blobs are fsynced file by file and directory by directory; larger
/// ones with a whole-filesystem sync (Linux), which would also flush unrelated dirty data.
const FSYNC_EACH_MAX: usize = 4;

/// Moves staged files to their blob paths so that each blob that exists afterwards is complete
/// and every move is durable: the data reaches the disk before the names do, and the names
/// before this returns. A large batch costs two `syncfs` (before and after the renames) in all,
/// a small one an fsync per file and per directory. Returns the moves that failed (by index);
/// an `Err` means the batch as a whole could not be made durable.
fn move_durably(
    staging: &Path,
    moves: Vec<(usize, PathBuf, PathBuf)>,
) -> std::io::Result<Vec<(usize, std::io::Error)>> {
    let whole_fs = cfg!(target_os = "linux") && moves.len() > FSYNC_EACH_MAX;
    if whole_fs {
        sync_filesystem(staging)?;
    } else {
        for (_, from, _) in &moves {
            std::fs::File::open(from)?.sync_all()?;
        }
    }
    let mut failed = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    for (i, from, to) in moves {
        let dir = to.parent().expect("blob path has a parent").to_path_buf();
        match std::fs::create_dir_all(&dir).and_then(|()| std::fs::rename(&from, &to)) {
            Ok(()) => {
                dirs.insert(dir);
            }
            Err(e) => failed.push((i, e)),
        }
    }
    if whole_fs {
        sync_filesystem(staging)?;
    } else {
        for dir in dirs {
            sync_directory(&dir)?;
        }
    }
    Ok(failed)
}

/// Flushes everything written to the filesystem holding `path` (`syncfs`).
#[cfg(target_os = "linux")]
fn sync_filesystem(path: &Path) -> std::io::Result<()> {
    Ok(rustix::fs::syncfs(std::fs::File::open(path)?)?)
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystem(_: &Path) -> std::io::Result<()> {
    Err(std::io::Error::other("syncfs is Linux-only"))
}

/// Makes a directory's entries durable (nothing to do where directories cannot be fsynced).
fn sync_directory(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Walks `{root}/{user}/{prefix}/{sha}`, sending full pages; `Ok` with the last partial page
/// left in `page`. A closed channel (the listing was dropped) ends the walk early.
fn walk(
    root: &Path,
    page: &mut Vec<BlobInfo>,
    tx: &tokio::sync::mpsc::Sender<Result<Vec<BlobInfo>, FilesError>>,
) -> std::io::Result<()> {
    for user in std::fs::read_dir(root)?.flatten() {
        let user_id = user.file_name().to_string_lossy().into_owned();
        if user_id == ".tmp" || !user.path().is_dir() {
            continue;
        }
        for prefix in std::fs::read_dir(user.path())?.flatten() {
            if !prefix.path().is_dir() {
                continue;
            }
            for blob in std::fs::read_dir(prefix.path())?.flatten() {
                let Ok(meta) = blob.metadata() else { continue };
                page.push(BlobInfo {
                    user_id: user_id.clone(),
                    sha256: blob.file_name().to_string_lossy().into_owned(),
                    size: meta.len(),
                    modified: meta.modified()?,
                });
                if page.len() == LIST_PAGE {
                    let full = std::mem::replace(page, Vec::with_capacity(LIST_PAGE));
                    if tx.blocking_send(Ok(full)).is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
    Ok(())
}
