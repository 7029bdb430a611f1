//! The local staging area: every upload streams into a staging file first, hashed on the way
//! (not fsynced: the store makes it durable), before [`super::BlobStore::put`] takes it.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use super::IO_PIECE;
use crate::FilesError;

/// The local staging area: uploads are received and hashed here before they are put into a
/// store.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
}

/// A blob received into the staging area, hashed, not yet in the store.
#[derive(Debug)]
pub struct StagedBlob {
    pub(super) path: PathBuf,
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

    /// Streams `body` into a staging file, hashing it (durability is the store's job).
    pub async fn stage<S, E>(&self, body: S) -> Result<StagedBlob, FilesError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.stage_limited(body, u64::MAX).await
    }

    /// [`Staging::stage`], refusing (413) a body longer than `max` bytes.
    ///
    /// The body is gathered into pieces of [`IO_PIECE`] bytes, each hashed and written on a
    /// blocking thread (not a thread hop and a small write per network frame, nor SHA-256 on
    /// the async threads).
    pub async fn stage_limited<S, E>(&self, body: S, max: u64) -> Result<StagedBlob, FilesError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        Ok(self.stage_pieces(body, max, false).await?.0)
    }

    /// [`Staging::stage_limited`], also returning the bytes as written (in pieces).
    pub async fn stage_keeping<S, E>(
        &self,
        body: S,
        max: u64,
    ) -> Result<(StagedBlob, Vec<Bytes>), FilesError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.stage_pieces(body, max, true).await
    }

    async fn stage_pieces<S, E>(
        &self,
        mut body: S,
        max: u64,
        keep: bool,
    ) -> Result<(StagedBlob, Vec<Bytes>), FilesError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut kept = Vec::new();
        let path = self.dir.join(uuid::Uuid::new_v4().to_string());
        let mut staged = StagedBlob {
            path,
            sha256: String::new(),
            size: 0,
        };
        let file = tokio::fs::File::create(&staged.path)
            .await?
            .into_std()
            .await;
        let mut sink = Some((file, Sha256::new()));
        let mut piece = bytes::BytesMut::new();
        loop {
            let next = body.next().await;
            if let Some(chunk) = next.as_ref() {
                let chunk = chunk
                    .as_ref()
                    .map_err(|e| FilesError::BadRequest(format!("upload interrupted: {e}")))?;
                staged.size += chunk.len() as i64;
                if staged.size as u64 > max {
                    return Err(FilesError::TooLarge(format!(
                        "body exceeds the limit of {max} bytes"
                    )));
                }
                piece.extend_from_slice(chunk);
            }
            let last = next.is_none();
            if piece.len() >= IO_PIECE || (last && !piece.is_empty()) {
                let bytes = piece.split().freeze();
                if keep {
                    kept.push(bytes.clone());
                }
                let (mut file, mut hasher) = sink.take().expect("the sink is put back");
                sink = Some(
                    tokio::task::spawn_blocking(move || -> std::io::Result<_> {
                        use std::io::Write;
                        hasher.update(&bytes);
                        file.write_all(&bytes)?;
                        Ok((file, hasher))
                    })
                    .await
                    .map_err(|e| FilesError::Blob(std::io::Error::other(e)))??,
                );
            }
            if last {
                break;
            }
        }
        let (_, hasher) = sink.take().expect("the sink is put back");
        staged.sha256 = hex::encode(hasher.finalize());
        Ok((staged, kept))
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
