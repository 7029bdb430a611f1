//! Content blobs on local disk, addressed by SHA-256 and namespaced per user (no cross-user
//! dedup: it would let one user learn whether another holds a file).
//!
//! Layout: `{root}/{user}/{sha[0..2]}/{sha}`; uploads stream into `{root}/.tmp/` first and are
//! renamed into place after `fsync`, so a blob that exists is always complete.

use std::path::{Path, PathBuf};

use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::FilesError;

#[derive(Debug)]
pub struct DiskBlobStore {
    root: PathBuf,
}

/// A blob received into the temporary area, hashed, not yet in the store.
#[derive(Debug)]
pub struct StagedBlob {
    path: PathBuf,
    pub sha256: String,
    pub size: i64,
}

impl Drop for StagedBlob {
    fn drop(&mut self) {
        // Already renamed into the store, or abandoned: either way the temp name must go.
        let _ = std::fs::remove_file(&self.path);
    }
}

impl DiskBlobStore {
    pub fn open(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(root.join(".tmp"))?;
        Ok(DiskBlobStore { root })
    }

    fn blob_path(&self, user_id: &str, sha256: &str) -> Result<PathBuf, FilesError> {
        let safe_user = !user_id.is_empty()
            && user_id.len() <= 128
            && user_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let safe_hash = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
        if !safe_user || !safe_hash {
            return Err(FilesError::BadRequest("invalid blob address".into()));
        }
        Ok(self.root.join(user_id).join(&sha256[..2]).join(sha256))
    }

    /// Path of a blob (or chunk: chunks are blobs) of the user.
    pub(crate) fn path_of(&self, user_id: &str, sha256: &str) -> Result<PathBuf, FilesError> {
        self.blob_path(user_id, sha256)
    }

    /// Marks the blob as just used (its modification time becomes now), so the garbage
    /// collector's grace period starts again. Returns whether the blob exists.
    pub async fn touch(&self, user_id: &str, sha256: &str) -> Result<bool, FilesError> {
        let path = self.blob_path(user_id, sha256)?;
        let touched = tokio::task::spawn_blocking(move || {
            match std::fs::File::options().write(true).open(&path) {
                Ok(f) => f.set_modified(std::time::SystemTime::now()).map(|()| true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(|e| FilesError::Blob(std::io::Error::other(e)))??;
        Ok(touched)
    }

    /// Every stored blob last modified before `horizon`: `(user, sha256, path)`.
    pub async fn older_than(
        &self,
        horizon: std::time::SystemTime,
    ) -> Result<Vec<(String, String, PathBuf)>, FilesError> {
        let root = self.root.clone();
        let found = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<_>> {
            let mut out = Vec::new();
            for user in std::fs::read_dir(&root)?.flatten() {
                let user_name = user.file_name().to_string_lossy().into_owned();
                if user_name == ".tmp" || !user.path().is_dir() {
                    continue;
                }
                for prefix in std::fs::read_dir(user.path())?.flatten() {
                    if !prefix.path().is_dir() {
                        continue;
                    }
                    for blob in std::fs::read_dir(prefix.path())?.flatten() {
                        let old = blob
                            .metadata()
                            .and_then(|m| m.modified())
                            .is_ok_and(|m| m < horizon);
                        if old {
                            out.push((
                                user_name.clone(),
                                blob.file_name().to_string_lossy().into_owned(),
                                blob.path(),
                            ));
                        }
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| FilesError::Blob(std::io::Error::other(e)))??;
        Ok(found)
    }

    /// Deletes staging files (uploads abandoned by a crash) older than `horizon`.
    pub async fn clean_staging(&self, horizon: std::time::SystemTime) -> Result<u64, FilesError> {
        let tmp = self.root.join(".tmp");
        let deleted = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            let mut n = 0;
            for entry in std::fs::read_dir(&tmp)?.flatten() {
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

    /// Whether the user's store holds the blob.
    pub async fn has(&self, user_id: &str, sha256: &str) -> Result<bool, FilesError> {
        Ok(tokio::fs::try_exists(self.blob_path(user_id, sha256)?).await?)
    }

    /// Streams `body` into a temporary file, hashing it, and fsyncs it.
    pub async fn stage<S, E>(&self, body: S) -> Result<StagedBlob, FilesError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.stage_limited(body, u64::MAX).await
    }

    /// [`DiskBlobStore::stage`], refusing (413) a body longer than `max` bytes.
    pub async fn stage_limited<S, E>(&self, mut body: S, max: u64) -> Result<StagedBlob, FilesError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let path = self
            .root
            .join(".tmp")
            .join(uuid::Uuid::new_v4().to_string());
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

    /// Moves a staged blob into the store under its hash; durable when this returns.
    pub async fn commit(&self, user_id: &str, staged: &StagedBlob) -> Result<(), FilesError> {
        if self.touch(user_id, &staged.sha256).await? {
            return Ok(()); // same content already stored for this user (now fresh again)
        }
        let dest = self.blob_path(user_id, &staged.sha256)?;
        let dir = dest.parent().expect("blob path has a parent");
        tokio::fs::create_dir_all(dir).await?;
        tokio::fs::rename(&staged.path, &dest).await?;
        sync_dir(dir).await?;
        Ok(())
    }

    /// Opens a stored blob for reading.
    pub async fn open_blob(
        &self,
        user_id: &str,
        sha256: &str,
    ) -> Result<tokio::fs::File, FilesError> {
        let path = self.blob_path(user_id, sha256)?;
        Ok(tokio::fs::File::open(path).await?)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    tokio::fs::File::open(dir).await?.sync_all().await?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
