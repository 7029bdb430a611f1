//! The local tree: a walk of the sync folder with a (size, mtime)-keyed hash cache.
//!
//! Policy: regular files only. Symbolic links are not followed and not synced (following them
//! could leave the folder or loop); special files are skipped. Names the server would reject,
//! or that are not in Unicode NFC, are reported and skipped, never renamed behind the user's back.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};
use syncsphere_protocol::normalize_path;
use syncsphere_sync_core::{LocalFile, LocalTree};

/// Name of the client's own directory inside the sync folder (temporary downloads).
pub(crate) const STATE_DIR: &str = ".syncsphere";

/// Built-in ignores: editor swap/backup files, OS litter and partial downloads of browsers.
pub(crate) fn ignored(name: &str) -> bool {
    name == STATE_DIR
        || name == ".DS_Store"
        || name == "Thumbs.db"
        || name == "desktop.ini"
        || name.starts_with(".~lock.")
        || name.starts_with(".goutputstream-")
        || name.ends_with('~')
        || [".swp", ".swx", ".tmp", ".part", ".crdownload"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
}

/// Remembers hashes by (size, mtime) so unchanged files are not read again.
#[derive(Default)]
pub(crate) struct Scanner {
    cache: HashMap<String, (Stamp, String)>,
}

/// What a scan found.
pub(crate) struct Scan {
    pub tree: LocalTree,
    /// Paths that cannot be synced, with the reason.
    pub skipped: Vec<(String, String)>,
}

pub(crate) fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

impl Scanner {
    /// Walks `root` (blocking: call from a blocking thread).
    pub(crate) fn scan(&mut self, root: &Path) -> std::io::Result<Scan> {
        let mut scan = Scan {
            tree: LocalTree::new(),
            skipped: Vec::new(),
        };
        let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
        while let Some((dir, prefix)) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if dir != root => {
                    scan.skipped
                        .push((prefix.clone(), format!("cannot read folder: {e}")));
                    continue;
                }
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    scan.skipped.push((
                        format!("{prefix}{}", entry.file_name().to_string_lossy()),
                        "name is not valid UTF-8".into(),
                    ));
                    continue;
                };
                if ignored(&name) {
                    continue;
                }
                let rel = format!("{prefix}{name}");
                let file_type = entry.file_type()?;
                if file_type.is_dir() {
                    stack.push((entry.path(), format!("{rel}/")));
                    continue;
                }
                if !file_type.is_file() {
                    continue; // symlinks and special files: see the module policy
                }
                match normalize_path(&rel) {
                    Ok(n) if n == rel => {}
                    Ok(_) => {
                        scan.skipped
                            .push((rel, "name is not in Unicode NFC".into()));
                        continue;
                    }
                    Err(e) => {
                        scan.skipped.push((rel, e.to_string()));
                        continue;
                    }
                }
                match self.hash(&entry.path(), &rel) {
                    Ok(file) => {
                        scan.tree.insert(rel, file);
                    }
                    // Vanished between listing and hashing: it is simply not there.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => scan.skipped.push((rel, format!("cannot read: {e}"))),
                }
            }
        }
        self.cache.retain(|p, _| scan.tree.contains_key(p));
        Ok(scan)
    }

    fn hash(&mut self, path: &Path, rel: &str) -> std::io::Result<LocalFile> {
        let meta = std::fs::metadata(path)?;
        let mtime_ns = meta
            .modified()?
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        let stamp = Stamp {
            size: meta.len(),
            mtime_ns,
        };
        if let Some((cached, sha)) = self.cache.get(rel)
            && *cached == stamp
        {
            return Ok(LocalFile {
                sha256: sha.clone(),
                size: stamp.size,
            });
        }
        let sha = hash_file(path)?;
        let size = stamp.size;
        self.cache.insert(rel.to_owned(), (stamp, sha.clone()));
        Ok(LocalFile { sha256: sha, size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_files_recursively_and_skips_ignored_and_invalid_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::create_dir_all(root.join(STATE_DIR)).unwrap();
        std::fs::write(root.join("a.txt"), b"hello").unwrap();
        std::fs::write(root.join("sub/deeper/b.bin"), b"").unwrap();
        std::fs::write(root.join("sub/.a.txt.swp"), b"x").unwrap();
        std::fs::write(root.join(STATE_DIR).join("tmp"), b"x").unwrap();
        std::fs::write(root.join("bad\\name"), b"x").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/hostname", root.join("link")).unwrap();

        let scan = Scanner::default().scan(root).unwrap();
        let paths: Vec<&str> = scan.tree.keys().map(String::as_str).collect();
        assert_eq!(paths, ["a.txt", "sub/deeper/b.bin"]);
        assert_eq!(
            scan.tree["a.txt"].sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(scan.skipped.len(), 1);
        assert_eq!(scan.skipped[0].0, "bad\\name");
    }

    #[test]
    fn rehashes_a_file_whose_size_or_mtime_changed() {
        let dir = tempfile::tempdir().unwrap();
        let mut scanner = Scanner::default();
        std::fs::write(dir.path().join("f"), b"one").unwrap();
        let first = scanner.scan(dir.path()).unwrap().tree["f"].sha256.clone();
        std::fs::write(dir.path().join("f"), b"three").unwrap();
        let second = scanner.scan(dir.path()).unwrap().tree["f"].sha256.clone();
        assert_ne!(first, second);
    }
}
