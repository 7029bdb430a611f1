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
#[derive(Clone)]
pub(crate) struct KnownIds {
    pub(crate) remote: Arc<RemoteTree>,
    pub(crate) synced: Arc<SyncedTree>,
}

impl KnownIds {
    /// The id the file at `path` (tree name `rel`), just read as `id`, is to be known by: `id`,
    /// or the SHA-256 id the index holds for `rel` if the file's bytes have it. Reads the file
    /// again only when `id` is chunked and the index names `rel`'s content by a SHA-256.
    pub(crate) fn name(
        &self,
        fs: &dyn LocalFs,
        path: &Path,
        rel: &str,
        id: ContentHash,
    ) -> std::io::Result<ContentHash> {
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
