//! The conflicted copies in a sync folder and the user's ways out of them: keep the copy's
//! version, keep the current file, or keep both under a plain name. The results are ordinary
//! edits of the folder, which the running sync then uploads (or deletes on the server, where
//! the discarded version stays in the history or the trash).
//!
//! **Invariant**: a version is discarded only when the server already holds exactly those
//! bytes at that path (checked against the index's remote tree right before acting), so
//! resolving a conflict can never lose a byte that exists nowhere else.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::SyncError;
use crate::index::Index;

/// What sync-core puts into the name of a conflicted copy (see `conflicted_copy_name`).
const MARKER: &str = " (conflicted copy from ";

/// One conflicted copy found in the folder. Paths are relative, `/`-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictedCopy {
    /// The copy: the version of `device` that was moved aside.
    pub path: String,
    /// The file it is a copy of (which holds the other version, if it still exists).
    pub original: String,
    /// The device whose version the copy holds.
    pub device: String,
    /// When the copy was made, as in its name (`2026-11-25 103015`).
    pub stamp: String,
    pub size: u64,
    pub modified_ms: i64,
    pub original_exists: bool,
}

/// How to settle one conflicted copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The copy's version replaces the original file; the copy goes.
    KeepCopy,
    /// The original stays; the copy is deleted.
    KeepOriginal,
    /// Both stay; the copy gets a plain name (`report (from laptop 2026-11-25 103015).txt`).
    KeepBoth,
}

/// Splits a name holding a conflict marker into (original name, device, stamp).
/// `report (conflicted copy from laptop 2026-11-25 103015 2).txt` →
/// (`report.txt`, `laptop`, `2026-11-25 103015`).
pub(crate) fn parse_copy_name(name: &str) -> Option<(String, String, String)> {
    let start = name.find(MARKER)?;
    let rest = &name[start + MARKER.len()..];
    for (close, _) in rest.match_indices(')') {
        let inner = &rest[..close];
        // Drop the uniqueness counter (" 2") if there is one.
        let inner_no_counter = match inner.rsplit_once(' ') {
            Some((head, n))
                if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && n.len() < 6 =>
            {
                head
            }
            _ => inner,
        };
        for candidate in [inner_no_counter, inner] {
            if let Some((device, stamp)) = split_stamp(candidate) {
                let original = format!("{}{}", &name[..start], &rest[close + 1..]);
                return Some((original, device.to_owned(), stamp.to_owned()));
            }
        }
    }
    None
}

/// `laptop 2026-11-25 103015` → (`laptop`, `2026-11-25 103015`).
fn split_stamp(s: &str) -> Option<(&str, &str)> {
    const STAMP_LEN: usize = "2026-11-25 103015".len();
    if s.len() < STAMP_LEN + 2 || !s.is_char_boundary(s.len() - STAMP_LEN) {
        return None;
    }
    let (head, stamp) = s.split_at(s.len() - STAMP_LEN);
    let device = head.strip_suffix(' ')?;
    let shape_ok = stamp.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        10 => b == b' ',
        _ => b.is_ascii_digit(),
    });
    (shape_ok && !device.is_empty()).then_some((device, stamp))
}

/// Every conflicted copy under `folder` (a folder moved aside counts once per file in it),
/// sorted by path. The client's state folder and symbolic links are left out.
pub fn conflicted_copies(folder: &Path) -> Result<Vec<ConflictedCopy>, SyncError> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel_dir) = stack.pop() {
        let dir = folder.join(&rel_dir);
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| SyncError::Io(format!("reading {}", dir.display()), e))?;
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if rel_dir.as_os_str().is_empty() && name == crate::scan::STATE_DIR {
                continue;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let rel = rel_dir.join(&name);
            if kind.is_dir() {
                stack.push(rel);
            } else if kind.is_file()
                && let Some(copy) = describe(folder, &rel)
            {
                found.push(copy);
            }
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// The conflicted copy `rel` is, if one of its components carries the marker.
fn describe(folder: &Path, rel: &Path) -> Option<ConflictedCopy> {
    let parts: Vec<&str> = rel
        .components()
        .filter_map(|c| c.as_os_str().to_str())
        .collect();
    let (at, (original_name, device, stamp)) = parts
        .iter()
        .enumerate()
        .find_map(|(i, part)| parse_copy_name(part).map(|parsed| (i, parsed)))?;
    let mut original_parts: Vec<&str> = parts.clone();
    original_parts[at] = &original_name;
    let original = original_parts.join("/");
    let meta = std::fs::metadata(folder.join(rel)).ok()?;
    let modified_ms = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64);
    Some(ConflictedCopy {
        path: parts.join("/"),
        original_exists: folder.join(&original).is_file(),
        original,
        device,
        stamp,
        size: meta.len(),
        modified_ms,
    })
}

/// Settles the conflicted copy at `copy` (relative to `folder`) the way the user chose. The
/// version that goes must already be on the server (see the module's invariant); otherwise
/// nothing changes and the error says to wait until sync has caught up.
pub async fn resolve_conflict(
    config_dir: &Path,
    folder: &Path,
    copy: &str,
    resolution: Resolution,
) -> Result<(), SyncError> {
    let inside = Path::new(copy)
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    let found = inside
        .then(|| describe(folder, Path::new(copy)))
        .flatten()
        .ok_or_else(|| {
            SyncError::Io(
                format!("'{copy}' is not a conflicted copy in {}", folder.display()),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })?;
    let copy_path = folder.join(&found.path);
    let original_path = folder.join(&found.original);
    match resolution {
        Resolution::KeepCopy => {
            if original_path.is_dir() {
                return Err(SyncError::Io(
                    format!(
                        "'{}' is a folder now; move the copy by hand where you want it",
                        found.original
                    ),
                    std::io::Error::other("name taken by a folder"),
                ));
            }
            if original_path.exists() {
                ensure_on_server(config_dir, folder, &found.original).await?;
            }
            if let Some(parent) = original_path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| SyncError::Io(format!("creating {}", parent.display()), e))?;
            }
            std::fs::rename(&copy_path, &original_path).map_err(|e| {
                SyncError::Io(format!("replacing {} with its copy", found.original), e)
            })?;
        }
        Resolution::KeepOriginal => {
            ensure_on_server(config_dir, folder, &found.path).await?;
            std::fs::remove_file(&copy_path)
                .map_err(|e| SyncError::Io(format!("removing {}", found.path), e))?;
        }
        Resolution::KeepBoth => {
            let plain = found.path.replace(MARKER, " (from ");
            let plain_path = folder.join(&plain);
            if plain_path.exists() {
                return Err(SyncError::Io(
                    format!("'{plain}' already exists; rename the copy by hand"),
                    std::io::Error::from(std::io::ErrorKind::AlreadyExists),
                ));
            }
            if let Some(parent) = plain_path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| SyncError::Io(format!("creating {}", parent.display()), e))?;
            }
            std::fs::rename(&copy_path, &plain_path)
                .map_err(|e| SyncError::Io(format!("renaming {}", found.path), e))?;
        }
    }
    prune_empty_parents(folder, &copy_path);
    tracing::info!(copy = %found.path, original = %found.original, ?resolution, "conflict resolved");
    Ok(())
}

/// Refuses unless the file at `rel` has exactly the content the server holds for that path.
async fn ensure_on_server(config_dir: &Path, folder: &Path, rel: &str) -> Result<(), SyncError> {
    let index = Index::open(&crate::config::index_path(config_dir)).await?;
    let remote = index.remote().await?;
    let path = folder.join(rel);
    let local = tokio::task::spawn_blocking(move || sha256_of(&path))
        .await
        .map_err(|e| SyncError::Io("hashing".into(), std::io::Error::other(e)))?
        .map_err(|e| SyncError::Io(format!("reading {rel}"), e))?;
    if remote.get(rel).is_some_and(|r| r.sha256 == local) {
        return Ok(());
    }
    Err(SyncError::Io(
        format!(
            "'{rel}' has changes that are not on the server yet; wait until SyncSphere is up \
             to date, then try again"
        ),
        std::io::Error::other("not synced yet"),
    ))
}

fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// Removes the folders a moved-aside folder leaves empty, up to (not including) `folder`.
fn prune_empty_parents(folder: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == folder || !d.starts_with(folder) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncsphere_protocol::Rev;

    fn check_parse(name: &str, expected: Option<(&str, &str, &str)>) {
        let got = parse_copy_name(name);
        let expected = expected.map(|(o, d, s)| (o.to_owned(), d.to_owned(), s.to_owned()));
        assert_eq!(got, expected, "{name:?}");
    }

    #[test]
    fn copy_names_parse_back_to_their_original() {
        let stamp = "2026-11-25 103015";
        check_parse(
            "report (conflicted copy from laptop 2026-11-25 103015).txt",
            Some(("report.txt", "laptop", stamp)),
        );
        check_parse(
            "report (conflicted copy from laptop 2026-11-25 103015 2).txt",
            Some(("report.txt", "laptop", stamp)),
        );
        check_parse(
            "Makefile (conflicted copy from my pc (work) 2026-11-25 103015)",
            Some(("Makefile", "my pc (work)", stamp)),
        );
        check_parse(
            ".bashrc (conflicted copy from pc 2026-11-25 103015)",
            Some((".bashrc", "pc", stamp)),
        );
        check_parse("report (conflicted copy from laptop).txt", None);
        check_parse("report.txt", None);
    }

    /// A folder with `files`, its index recording `on_server` as the server's content.
    async fn fixture(files: &[(&str, &str)], on_server: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let folder = root.path().join("f");
        for (rel, body) in files {
            let p = folder.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        let index = Index::open(&crate::config::index_path(root.path()))
            .await
            .unwrap();
        for (i, (rel, body)) in on_server.iter().enumerate() {
            let meta = syncsphere_protocol::FileMeta {
                file_id: format!("id{i}").into(),
                path: (*rel).into(),
                rev: Rev(1),
                size: body.len() as i64,
                sha256: hex::encode(Sha256::digest(body.as_bytes())).into(),
                deleted: false,
                modified_ms: 0,
            };
            index.record_remote(&meta).await.unwrap();
        }
        root
    }

    const COPY: &str = "d/r (conflicted copy from pc 2026-11-25 103015).txt";

    #[tokio::test]
    async fn listing_and_the_three_resolutions() {
        let files = [("d/r.txt", "theirs"), (COPY, "mine"), ("plain.txt", "x")];
        let both_on_server = [("d/r.txt", "theirs"), (COPY, "mine")];

        let root = fixture(&files, &both_on_server).await;
        let folder = root.path().join("f");
        let found = conflicted_copies(&folder).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].path.as_str(), found[0].original.as_str()),
            (COPY, "d/r.txt")
        );
        assert_eq!((found[0].device.as_str(), found[0].size), ("pc", 4));
        assert!(found[0].original_exists);
        resolve_conflict(root.path(), &folder, COPY, Resolution::KeepCopy)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(folder.join("d/r.txt")).unwrap(),
            "mine"
        );
        assert!(conflicted_copies(&folder).unwrap().is_empty());

        let root = fixture(&files, &both_on_server).await;
        let folder = root.path().join("f");
        resolve_conflict(root.path(), &folder, COPY, Resolution::KeepOriginal)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(folder.join("d/r.txt")).unwrap(),
            "theirs"
        );
        assert!(!folder.join(COPY).exists());

        let root = fixture(&files, &[]).await;
        let folder = root.path().join("f");
        resolve_conflict(root.path(), &folder, COPY, Resolution::KeepBoth)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(folder.join("d/r (from pc 2026-11-25 103015).txt")).unwrap(),
            "mine"
        );
        assert_eq!(
            std::fs::read_to_string(folder.join("d/r.txt")).unwrap(),
            "theirs"
        );
    }

    #[tokio::test]
    async fn a_version_the_server_lacks_is_never_discarded() {
        // The copy was never uploaded, the original was edited since: both are local only.
        let files = [("d/r.txt", "edited"), (COPY, "mine")];
        let root = fixture(&files, &[("d/r.txt", "theirs")]).await;
        let folder = root.path().join("f");
        for resolution in [Resolution::KeepCopy, Resolution::KeepOriginal] {
            let err = resolve_conflict(root.path(), &folder, COPY, resolution)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("not on the server yet"), "{err}");
        }
        assert_eq!(
            std::fs::read_to_string(folder.join("d/r.txt")).unwrap(),
            "edited"
        );
        assert_eq!(std::fs::read_to_string(folder.join(COPY)).unwrap(), "mine");
    }

    #[tokio::test]
    async fn a_folder_moved_aside_lists_its_files_and_empties_away() {
        let copy = "d (conflicted copy from pc 2026-11-25 103015)/e.txt";
        let root = fixture(&[(copy, "mine")], &[(copy, "mine")]).await;
        let folder = root.path().join("f");
        let found = conflicted_copies(&folder).unwrap();
        assert_eq!(found[0].original, "d/e.txt");
        assert!(!found[0].original_exists);
        resolve_conflict(root.path(), &folder, copy, Resolution::KeepCopy)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(folder.join("d/e.txt")).unwrap(),
            "mine"
        );
        assert!(
            !folder
                .join("d (conflicted copy from pc 2026-11-25 103015)")
                .exists()
        );
    }
}
