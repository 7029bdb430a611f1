//! Content blobs (whole small contents and chunks), addressed by SHA-256 and namespaced per user
//! (no cross-user dedup: it would let one user learn whether another holds a file).
//!
//! Uploads always stream into a local staging file first ([`Staging`]), hashed and fsynced;
//! then [`BlobStore::put`] makes the blob durable in the store: the local disk
//! ([`DiskBlobStore`], embedded default) or S3 ([`crate::s3::S3BlobStore`]). A blob that exists
//! in a store is always complete.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use syncsphere_auth::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use crate::FilesError;

/// Bytes read back from a store.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// One stored blob, as listed for garbage collection.
#[derive(Debug, Clone)]
pub struct BlobInfo {
    pub user_id: String,
    pub sha256: String,
    pub size: u64,
    pub modified: SystemTime,
}

/// Where blobs live. Every method is idempotent.
pub trait BlobStore: Send + Sync {
    /// Stores a staged blob under its hash for the user; durable when this returns. Storing a
    /// blob that already exists is a no-op (and restarts its grace period where supported).
    fn put<'a>(
        &'a self,
        user_id: &'a str,
        staged: &'a StagedBlob,
    ) -> BoxFuture<'a, Result<(), FilesError>>;
    /// Whether the blob exists; where supported, also restarts its garbage-collection grace
    /// period (a client is about to commit it).
    fn touch<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<bool, FilesError>>;
    /// Size and last modification of a blob, if it exists.
    fn stat<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, SystemTime)>, FilesError>>;
    /// Bytes `start..start + len` of a blob.
    fn read<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
        start: u64,
        len: u64,
    ) -> BoxFuture<'a, Result<ByteStream, FilesError>>;
    /// Every blob of every user.
    fn list(&self) -> BoxFuture<'_, Result<Vec<BlobInfo>, FilesError>>;
    fn delete<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<(), FilesError>>;
    /// Whether [`BlobStore::touch`] restarts the grace period (S3 cannot change an object's
    /// modification time; there a resumed upload after the grace period re-sends chunks).
    fn touch_extends_grace(&self) -> bool;
}

/// Checks a blob address: a safe user id and a lowercase SHA-256.
pub(crate) fn check_address(user_id: &str, sha256: &str) -> Result<(), FilesError> {
    let safe_user = !user_id.is_empty()
        && user_id.len() <= 128
        && user_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let safe_hash = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
    if safe_user && safe_hash {
        Ok(())
    } else {
        Err(FilesError::BadRequest("invalid blob address".into()))
    }
}

/// The local staging area: uploads are received, hashed and fsynced here before they are put
/// into a store.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
}

/// A blob received into the staging area, hashed, not yet in the store.
#[derive(Debug)]
pub struct StagedBlob {
    path: PathBuf,
    pub sha256: String,
    pub size: i64,
}

impl StagedBlob {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StagedBlob {
    fn drop(&mut self) {
        // Already moved into the store, or abandoned: either way the staging name must go.
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Staging {
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Staging { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Streams `body` into a staging file, hashing it, and fsyncs it.
    pub async fn stage<S, E>(&self, body: S) -> Result<StagedBlob, FilesError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.stage_limited(body, u64::MAX).await
    }

    /// [`Staging::stage`], refusing (413) a body longer than `max` bytes.
    pub async fn stage_limited<S, E>(&self, mut body: S, max: u64) -> Result<StagedBlob, FilesError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let path = self.dir.join(uuid::Uuid::new_v4().to_string());
        let mut staged = StagedBlob {
            path,
            sha256: String::new(),
            size: 0,
        };
        let mut file = tokio::fs::File::create(&staged.path).await?;
        let mut hasher = Sha256::new();
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| FilesError::BadRequest(format!("upload interrupted: {e}")))?;
            hasher.update(&chunk);
            staged.size += chunk.len() as i64;
            if staged.size as u64 > max {
                return Err(FilesError::TooLarge(format!(
                    "body exceeds the limit of {max} bytes"
                )));
            }
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
        staged.sha256 = hex::encode(hasher.finalize());
        Ok(staged)
    }

    /// Deletes staging files (uploads abandoned by a crash) older than `horizon`.
    pub async fn clean(&self, horizon: SystemTime) -> Result<u64, FilesError> {
        let dir = self.dir.clone();
        let deleted = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            let mut n = 0;
            for entry in std::fs::read_dir(&dir)?.flatten() {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| m < horizon);
                if old && std::fs::remove_file(entry.path()).is_ok() {
                    n += 1;
                }
            }
            Ok(n)
        })
        .await
        .map_err(|e| FilesError::Blob(std::io::Error::other(e)))??;
        Ok(deleted)
    }
}

/// Blobs on local disk: `{root}/{user}/{sha[0..2]}/{sha}`, moved in from a staging directory on
/// the same filesystem (`{root}/.tmp`) by rename after fsync, then the directory is fsynced.
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

    async fn touch_path(path: PathBuf) -> Result<bool, FilesError> {
        let touched = tokio::task::spawn_blocking(move || {
            match std::fs::File::options().write(true).open(&path) {
                Ok(f) => f.set_modified(SystemTime::now()).map(|()| true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
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
            if Self::touch_path(dest.clone()).await? {
                return Ok(()); // same content already stored for this user (now fresh again)
            }
            let dir = dest.parent().expect("blob path has a parent");
            tokio::fs::create_dir_all(dir).await?;
            tokio::fs::rename(&staged.path, &dest).await?;
            sync_dir(dir).await?;
            Ok(())
        })
    }

    fn touch<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<bool, FilesError>> {
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
            let mut file = tokio::fs::File::open(self.blob_path(user_id, sha256)?).await?;
            file.seek(std::io::SeekFrom::Start(start)).await?;
            let stream: ByteStream =
                Box::pin(ReaderStream::with_capacity(file.take(len), 256 * 1024));
            Ok(stream)
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<BlobInfo>, FilesError>> {
        let root = self.root.clone();
        Box::pin(async move {
            let found = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<BlobInfo>> {
                let mut out = Vec::new();
                for user in std::fs::read_dir(&root)?.flatten() {
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
                            out.push(BlobInfo {
                                user_id: user_id.clone(),
                                sha256: blob.file_name().to_string_lossy().into_owned(),
                                size: meta.len(),
                                modified: meta.modified()?,
                            });
                        }
                    }
                }
                Ok(out)
            })
            .await
            .map_err(|e| FilesError::Blob(std::io::Error::other(e)))??;
            Ok(found)
        })
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

async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    tokio::fs::File::open(dir).await?.sync_all().await?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
