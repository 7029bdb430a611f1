//! Contents stored before chunked ids (decision 0051). A content over
//! [`CHUNKED_ID_ABOVE`](syncsphere_protocol::CHUNKED_ID_ABOVE) bytes is named by the fold of its chunks' hashes since then, and by the
//! SHA-256 of its bytes before — on the server, in the journal and in this device's index,
//! where those ids stay. Equal bytes must still read as the same content: a file whose chunked
//! id differs from a SHA-256 id it is compared with is read once more for its SHA-256 (only
//! then, so a folder synced since chunked ids costs nothing here).

use std::path::Path;
use std::sync::Arc;

use syncsphere_protocol::ContentHash;
use syncsphere_sync_core::{RemoteTree, SyncedTree};

use crate::local_fs::LocalFs;

/// Whether the file at `path` has the content `expected`, however that content is named. A
/// read error is the caller's (a file gone reads as `NotFound`).
pub(crate) fn has_content(
    fs: &dyn LocalFs,
    path: &Path,
    expected: &ContentHash,
) -> std::io::Result<bool> {
    let id = ContentHash::from(fs.hash(path)?);
    if id == *expected {
        return Ok(true);
    }
    Ok(may_be_named_otherwise(&id, expected) && *expected == fs.sha256(path)?)
}

/// Whether a content whose id is `id` (a chunked one, so over a MiB) may also be the one
/// `other` names: a SHA-256 (a content of any size stored before chunked ids, or one of at
/// most a MiB — then it is not, which a read tells).
fn may_be_named_otherwise(id: &ContentHash, other: &ContentHash) -> bool {
    id.is_chunked() && other.is_sha256()
}

/// The ids the index holds for each path (the server's, and the last synced), which the scan
/// names a file it reads by when its bytes have that id's SHA-256 — so that a device joining
/// with the files already there, or a file touched but unchanged, has the same content as the
/// server, not a conflict or a new revision of the same bytes.
///
/// Against a server without chunked ids (`chunked` false), every file is named by its SHA-256.
#[derive(Clone)]
pub(crate) struct KnownIds {
    pub(crate) remote: Arc<RemoteTree>,
    pub(crate) synced: Arc<SyncedTree>,
    pub(crate) chunked: bool,
}

impl KnownIds {
    /// The id the file at `path` (tree name `rel`) is to be known by, reading it: its SHA-256
    /// for a server without chunked ids (one read); else its content id, or the SHA-256 id the
    /// index holds for `rel` if the file's bytes have it — read a second time only when the id
    /// is chunked and the index names `rel`'s content by a SHA-256.
    pub(crate) fn id_of(
        &self,
        fs: &dyn LocalFs,
        path: &Path,
        rel: &str,
    ) -> std::io::Result<ContentHash> {
        if !self.chunked {
            return Ok(ContentHash::from(fs.sha256(path)?));
        }
        let id = ContentHash::from(fs.hash(path)?);
        let known = [
            self.remote.get(rel).map(|r| &r.sha256),
            self.synced.get(rel).map(|s| &s.sha256),
        ];
        let mut sha256: Option<ContentHash> = None;
        for other in known.into_iter().flatten() {
            if !may_be_named_otherwise(&id, other) {
                continue;
            }
            if sha256.is_none() {
                sha256 = Some(ContentHash::from(fs.sha256(path)?));
            }
            if sha256.as_ref() == Some(other) {
                tracing::debug!(
                    path = rel,
                    "a content stored before chunked ids: named as then"
                );
                return Ok(other.clone());
            }
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use syncsphere_sync_core::{RemoteFile, SyncedFile};

    use crate::chunker::{content_id_of_bytes, noise};
    use crate::local_fs::RealFs;

    fn sha256(data: &[u8]) -> ContentHash {
        ContentHash::Sha256(Sha256::digest(data).into())
    }

    #[test]
    fn a_large_file_has_its_content_under_either_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        let data = noise(3 * 1024 * 1024, 4);
        std::fs::write(&path, &data).unwrap();
        let fs = RealFs;
        assert!(has_content(&fs, &path, &content_id_of_bytes(&data)).unwrap());
        assert!(has_content(&fs, &path, &sha256(&data)).unwrap());
        let other = noise(3 * 1024 * 1024, 8);
        assert!(!has_content(&fs, &path, &sha256(&other)).unwrap());
        assert!(!has_content(&fs, &path, &content_id_of_bytes(&other)).unwrap());
        // A small file is named by its SHA-256 only.
        std::fs::write(&path, b"small").unwrap();
        assert!(has_content(&fs, &path, &sha256(b"small")).unwrap());
        let gone = dir.path().join("gone");
        assert_eq!(
            has_content(&fs, &gone, &sha256(b"")).unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
    }

    #[test]
    fn a_file_is_named_as_the_index_names_its_bytes_or_as_the_server_wants() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        let data = noise(2 * 1024 * 1024, 6);
        std::fs::write(&path, &data).unwrap();
        let chunked = content_id_of_bytes(&data);
        let remote = |id: ContentHash| RemoteFile {
            file_id: "f1".into(),
            rev: 1,
            sha256: id,
        };
        let synced = |id: ContentHash| SyncedFile {
            file_id: "f1".into(),
            rev: 1,
            sha256: id,
        };
        let known = |r: Option<ContentHash>, s: Option<ContentHash>, chunked: bool| KnownIds {
            remote: Arc::new(
                r.map(|r| ("big.bin".to_owned(), remote(r)))
                    .into_iter()
                    .collect(),
            ),
            synced: Arc::new(
                s.map(|s| ("big.bin".to_owned(), synced(s)))
                    .into_iter()
                    .collect(),
            ),
            chunked,
        };
        let name = |k: KnownIds| k.id_of(&RealFs, &path, "big.bin").unwrap();
        // Nothing known, or known by chunked ids: the chunked id.
        assert_eq!(name(known(None, None, true)), chunked);
        assert_eq!(name(known(Some(chunked.clone()), None, true)), chunked);
        // The server's or the synced SHA-256 of these bytes: that.
        assert_eq!(name(known(Some(sha256(&data)), None, true)), sha256(&data));
        assert_eq!(
            name(known(Some(sha256(b"other")), Some(sha256(&data)), true)),
            sha256(&data)
        );
        // A SHA-256 of other bytes: the chunked id (the file changed).
        assert_eq!(name(known(Some(sha256(b"other")), None, true)), chunked);
        // A server without chunked ids: the SHA-256, whatever the index holds.
        assert_eq!(name(known(None, None, false)), sha256(&data));
    }
}
