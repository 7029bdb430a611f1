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
        // The body's frames as they came (no copy into a buffer of our own), gathered until
        // they make a piece.
        let mut piece: Vec<Bytes> = Vec::new();
        let mut piece_len = 0;
        loop {
            let next = body.next().await;
            let last = next.is_none();
            if let Some(chunk) = next {
                let chunk = chunk
                    .map_err(|e| FilesError::BadRequest(format!("upload interrupted: {e}")))?;
                staged.size += chunk.len() as i64;
                if staged.size as u64 > max {
                    return Err(FilesError::TooLarge(format!(
                        "body exceeds the limit of {max} bytes"
                    )));
                }
                piece_len += chunk.len();
                if !chunk.is_empty() {
                    piece.push(chunk);
                }
                if piece_len < IO_PIECE {
                    continue;
                }
            }
            if !piece.is_empty() {
                let frames = std::mem::take(&mut piece);
                piece_len = 0;
                if keep {
                    kept.extend(frames.iter().cloned());
                }
                let (mut file, mut hasher) = sink.take().expect("the sink is put back");
                sink = Some(
                    tokio::task::spawn_blocking(move || -> std::io::Result<_> {
                        for frame in &frames {
                            hasher.update(frame);
                        }
                        write_all_vectored(&mut file, &frames)?;
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

/// Writes all of `frames` to `file`, as few system calls as the kernel takes (vectored).
fn write_all_vectored(file: &mut std::fs::File, frames: &[Bytes]) -> std::io::Result<()> {
    use std::io::{IoSlice, Write};
    let mut slices: Vec<IoSlice<'_>> = frames.iter().map(|f| IoSlice::new(f)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        let n = file.write_vectored(slices)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body in frames of every size (empty ones, ones over a piece, ones that end a piece
    /// mid-frame) is staged as the bytes it carries: the file, its hash and size, and the
    /// pieces kept are exactly the body's.
    #[tokio::test]
    async fn a_body_in_frames_of_any_size_is_staged_as_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let staging = Staging::open(dir.path()).unwrap();
        // A deterministic mix of frame sizes, 0 to 1.5 pieces.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut data = Vec::new();
        let mut frames = Vec::new();
        while data.len() < 5 * IO_PIECE + 123 {
            let len = match next() % 4 {
                0 => 0,
                1 => (next() % 100) as usize,
                2 => (next() % (IO_PIECE as u64 / 3)) as usize,
                _ => (next() % (IO_PIECE as u64 * 3 / 2)) as usize,
            };
            let frame: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            data.extend_from_slice(&frame);
            frames.push(Bytes::from(frame));
        }
        let body =
            futures_util::stream::iter(frames.clone().into_iter().map(Ok::<_, std::io::Error>));
        let (staged, kept) = staging.stage_keeping(body, u64::MAX).await.unwrap();
        assert_eq!(staged.size as usize, data.len());
        assert_eq!(staged.sha256, hex::encode(Sha256::digest(&data)));
        assert_eq!(std::fs::read(staged.path()).unwrap(), data);
        assert_eq!(kept.concat(), data);
        // One byte over the limit is refused, and nothing stays in the staging area.
        let body = futures_util::stream::iter(frames.into_iter().map(Ok::<_, std::io::Error>));
        let refused = staging.stage_limited(body, data.len() as u64 - 1).await;
        assert!(
            matches!(refused, Err(FilesError::TooLarge(_))),
            "{refused:?}"
        );
        drop(staged);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
