//! File contents as byte ranges over blobs: a content is either one blob (uploaded in a single
//! request) or the ordered chunks of its manifest (uploaded in chunks). Downloads, `Range`
//! requests and commit-time verification all read contents through [`Content`].

use std::sync::Arc;
use syncsphere_protocol::UserId;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use syncsphere_protocol::ChunkRef;

use crate::FilesError;
use crate::blobs::{BlobStore, check_address};
use crate::store::MetadataStore;

/// The blobs that make up one content, in order.
#[derive(Clone)]
pub struct Content {
    blobs: Arc<dyn BlobStore>,
    user_id: String,
    parts: Vec<(String, u64)>,
    pub size: u64,
}

impl Content {
    /// Locates content `sha256` (of `size` bytes) of the user.
    pub async fn locate(
        store: &MetadataStore,
        blobs: &Arc<dyn BlobStore>,
        user_id: &UserId,
        sha256: &str,
        size: i64,
    ) -> Result<Self, FilesError> {
        let chunks = match store.manifest(user_id, sha256).await? {
            Some(chunks) => chunks,
            None => vec![ChunkRef {
                sha256: sha256.to_owned().into(),
                size,
            }],
        };
        Self::of_chunks(blobs, user_id, &chunks)
    }

    pub fn of_chunks(
        blobs: &Arc<dyn BlobStore>,
        user_id: &UserId,
        chunks: &[ChunkRef],
    ) -> Result<Self, FilesError> {
        let mut parts = Vec::with_capacity(chunks.len());
        let mut size = 0u64;
        for c in chunks.iter().filter(|c| c.size > 0) {
            check_address(user_id, &c.sha256.to_string())?;
            parts.push((c.sha256.to_string(), c.size as u64));
            size += c.size as u64;
        }
        Ok(Content {
            blobs: blobs.clone(),
            user_id: user_id.to_string(),
            parts,
            size,
        })
    }

    /// Streams bytes `start..start + len` of the content.
    pub fn stream(
        &self,
        start: u64,
        len: u64,
    ) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let mut pieces = Vec::new();
        let (mut offset, end) = (0u64, start + len);
        for (sha, size) in &self.parts {
            let (from, to) = (offset.max(start), (offset + size).min(end));
            if from < to {
                pieces.push((sha.clone(), from - offset, to - from));
            }
            offset += size;
        }
        let (blobs, user) = (self.blobs.clone(), self.user_id.clone());
        futures_util::stream::iter(pieces)
            .then(move |(sha, skip, take)| {
                let (blobs, user) = (blobs.clone(), user.clone());
                async move {
                    blobs
                        .read(&user, &sha, skip, take)
                        .await
                        .map_err(|e| std::io::Error::other(e.to_string()))
                }
            })
            .try_flatten()
    }

    /// SHA-256 of the whole content, read back from the blobs (hashed on a blocking thread,
    /// while the next piece is read).
    pub async fn sha256(&self) -> Result<String, FilesError> {
        let mut hasher = Sha256::new();
        let mut stream = std::pin::pin!(self.stream(0, self.size));
        let mut next = stream.next().await;
        while let Some(bytes) = next {
            let bytes = bytes?;
            let hashing = tokio::task::spawn_blocking(move || {
                hasher.update(&bytes);
                hasher
            });
            next = stream.next().await;
            hasher = hashing
                .await
                .map_err(|e| FilesError::Blob(std::io::Error::other(e)))?;
        }
        Ok(hex::encode(hasher.finalize()))
    }
}

/// A parsed `Range: bytes=…` header: the single range to serve, or `None` to serve everything
/// (no header, several ranges, or a unit other than bytes — all allowed by RFC 9110).
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, FilesError> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let bad = || FilesError::RangeNotSatisfiable { size: size as i64 };
    let (first, last) = spec.split_once('-').ok_or_else(bad)?;
    let (first, last) = (first.trim(), last.trim());
    let (start, end) = if first.is_empty() {
        // Suffix range: the last N bytes.
        let n: u64 = last.parse().map_err(|_| bad())?;
        if n == 0 || size == 0 {
            return Err(bad());
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let start: u64 = first.parse().map_err(|_| bad())?;
        let end = if last.is_empty() {
            size.saturating_sub(1)
        } else {
            last.parse::<u64>()
                .map_err(|_| bad())?
                .min(size.saturating_sub(1))
        };
        (start, end)
    };
    if start >= size || end < start {
        return Err(bad());
    }
    Ok(Some((start, end - start + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        let r = |h: &str| parse_range(Some(h), 100).map_err(|_| ());
        assert_eq!(r("bytes=0-9"), Ok(Some((0, 10))));
        assert_eq!(r("bytes=90-"), Ok(Some((90, 10))));
        assert_eq!(r("bytes=-5"), Ok(Some((95, 5))));
        assert_eq!(r("bytes=-500"), Ok(Some((0, 100))));
        assert_eq!(
            r("bytes=50-1000"),
            Ok(Some((50, 50))),
            "end clamps to the size"
        );
        assert_eq!(r("bytes=0-0"), Ok(Some((0, 1))));
        assert_eq!(r("bytes=0-1,5-6"), Ok(None), "several ranges: serve all");
        assert_eq!(r("items=0-1"), Ok(None), "other units are ignored");
        assert_eq!(parse_range(None, 100).ok(), Some(None));
        for bad in [
            "bytes=100-",
            "bytes=5-4",
            "bytes=-0",
            "bytes=x-1",
            "bytes=1-y",
            "bytes=7",
        ] {
            assert!(r(bad).is_err(), "{bad} accepted");
        }
        assert!(
            parse_range(Some("bytes=0-"), 0).is_err(),
            "nothing to serve in an empty file"
        );
    }

    #[tokio::test]
    async fn streams_any_range_across_chunk_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let (disk, staging) = crate::blobs::DiskBlobStore::open(dir.path()).unwrap();
        let blobs: Arc<dyn BlobStore> = Arc::new(disk);
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let mut chunks = Vec::new();
        for piece in [
            &data[..3000],
            &data[3000..3001],
            &data[3001..7000],
            &data[7000..],
        ] {
            let body = futures_util::stream::iter([Ok::<_, std::io::Error>(
                Bytes::copy_from_slice(piece),
            )]);
            let staged = staging.stage(body).await.unwrap();
            blobs.put("u1", &staged).await.unwrap();
            chunks.push(ChunkRef {
                sha256: staged.sha256.clone().into(),
                size: staged.size,
            });
        }
        let content = Content::of_chunks(&blobs, &"u1".into(), &chunks).unwrap();
        assert_eq!(content.size, 10_000);
        assert_eq!(
            content.sha256().await.unwrap(),
            hex::encode(Sha256::digest(&data))
        );
        for (start, len) in [
            (0, 10_000),
            (0, 1),
            (2999, 3),
            (3000, 1),
            (2500, 5000),
            (9999, 1),
        ] {
            let got: Vec<u8> = content
                .stream(start, len)
                .try_fold(Vec::new(), |mut acc, b| async move {
                    acc.extend_from_slice(&b);
                    Ok(acc)
                })
                .await
                .unwrap();
            assert_eq!(
                got,
                &data[start as usize..(start + len) as usize],
                "{start}+{len}"
            );
        }
    }
}
