//! The engine's view of the local disk: every read and write of the synced folder goes through
//! [`LocalFs`], so the same engine runs over the real disk ([`RealFs`]) and over the
//! simulation's fake one (`sim::fs`: case-insensitive, NFD-returning, failing on demand).
//!
//! **Boundary**: plain, blocking file operations with `std::io` errors; no sync decisions. Callers
//! on async paths keep these calls short (metadata, renames) or run them on blocking threads
//! (hashing, scanning).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

/// What a directory entry or a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    /// A symbolic link (never followed by the scanner) or a special file.
    Other,
}

/// One entry of [`LocalFs::read_dir`].
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub name: OsString,
    pub kind: Kind,
}

/// What the engine needs to know of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub kind: Kind,
    pub len: u64,
    /// Modification time, in nanoseconds since the epoch (0 when unknown).
    pub mtime_ns: i128,
    /// Device and inode number: the same pair is the same file (0 where unknown).
    pub dev: u64,
    pub ino: u64,
}

pub(crate) trait LocalFs: Send + Sync + 'static {
    /// The entries of `dir`, in no particular order.
    fn read_dir(&self, dir: &Path) -> std::io::Result<Vec<Entry>>;
    /// Follows symbolic links.
    fn metadata(&self, path: &Path) -> std::io::Result<Meta>;
    /// Does not follow a symbolic link at `path`.
    fn symlink_metadata(&self, path: &Path) -> std::io::Result<Meta>;
    /// The time now, in nanoseconds since the epoch, on the clock file modification times are
    /// stamped from.
    fn now_ns(&self) -> i128;
    /// How coarse a modification time may be, judged from the stamp itself: a later write
    /// within that step after `mtime_ns` may get the same stamp (file-system clocks step: a
    /// jiffy on Linux before 6.13, ~16 ms on Windows, two seconds on FAT).
    fn stamp_step_ns(&self, mtime_ns: i128) -> i128;
    /// Lets `ns` nanoseconds pass on the disk's clock (blocking).
    fn wait_ns(&self, ns: i128) {
        if ns > 0 {
            std::thread::sleep(std::time::Duration::from_nanos(ns as u64));
        }
    }
    /// From what size a file just written is worth waiting for rather than read twice
    /// ([`settle_wait`]).
    fn settle_wait_min(&self) -> u64 {
        SETTLE_WAIT_MIN
    }
    /// The id of the file's content, as the protocol names contents (read once:
    /// [`crate::chunker::content_id_of`]): the SHA-256 (lower-case hex) up to
    /// [`syncsphere_protocol::CHUNKED_ID_ABOVE`] bytes, the chunked id over it.
    fn hash(&self, path: &Path) -> std::io::Result<String>;
    /// The SHA-256 (lower-case hex) of the file's content, whatever its size: what a content
    /// over [`syncsphere_protocol::CHUNKED_ID_ABOVE`] bytes was named by before chunked ids, and
    /// still is where it was stored then (see [`crate::legacy`]).
    fn sha256(&self, path: &Path) -> std::io::Result<String>;
    fn read_to_string(&self, path: &Path) -> std::io::Result<String>;
    /// Replaces `path` with `data` durably (temporary file, fsync, rename, folder fsync).
    fn write_durably(&self, path: &Path, data: &[u8]) -> std::io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()>;
    /// Moves `from` to `to` only if nothing is at `to`: `Ok(false)` (and `from` stays) when
    /// something is. Never replaces what a user may have just created.
    fn rename_no_replace(&self, from: &Path, to: &Path) -> std::io::Result<bool>;
    fn remove_file(&self, path: &Path) -> std::io::Result<()>;
    /// Removes an empty folder (an error if it holds anything).
    fn remove_dir(&self, path: &Path) -> std::io::Result<()>;
    /// Creates `path` and its missing parents durably: each new folder's parent is fsynced,
    /// so a power cut never takes a folder away from what was written into it.
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()>;
    /// Makes renames in `dir` durable (best effort).
    fn sync_dir(&self, dir: &Path);
}

/// How coarse a real disk's stamp may be: a whole second says a file system that keeps
/// seconds (FAT keeps two, HFS+ and ext3 one; or a tool that set it so), two seconds then;
/// anything finer, 100 ms (ext4 and Btrfs step a jiffy — at most 10 ms — before Linux 6.13,
/// Windows' file times ~16 ms, exFAT 10 ms).
pub(crate) fn stamp_step_ns(mtime_ns: i128) -> i128 {
    if mtime_ns % 1_000_000_000 == 0 {
        2_000_000_000
    } else {
        100_000_000
    }
}

/// From what size a file is worth waiting for before it is read ([`settle_wait`]): reading
/// 8 MiB again costs ~10 ms of CPU, the wait at most [`SETTLE_WAIT_MAX_NS`] of latency on a
/// transfer that takes longer than that anyway.
pub(crate) const SETTLE_WAIT_MIN: u64 = 8 * 1024 * 1024;
/// The longest wait for a stamp to settle: a fine stamp's step (100 ms). A coarse stamp (2 s)
/// is not waited for.
pub(crate) const SETTLE_WAIT_MAX_NS: i128 = 100_000_000;

/// Whether a file stamped `mtime_ns` and looked at `at` (the disk's clock, taken before the
/// look) is settled (0050): a write after the look gets another stamp. No stamp never is.
pub(crate) fn is_settled(fs: &dyn LocalFs, mtime_ns: i128, at: i128) -> bool {
    mtime_ns != 0 && at - mtime_ns > fs.stamp_step_ns(mtime_ns)
}

/// How long to wait for a large file stamped `meta` a moment ago (seen at `seen_at` on the
/// disk's clock) until its stamp is settled (0050), so that one read of it is enough: a read
/// of a file whose stamp is not settled yet is done again by the next look, and for a large
/// file that second read costs more than the wait (at most [`SETTLE_WAIT_MAX_NS`]). `None`:
/// no wait. After one, the caller takes the time and the stamp again.
pub(crate) fn settle_wait(fs: &dyn LocalFs, meta: &Meta, seen_at: i128) -> Option<i128> {
    if meta.len < fs.settle_wait_min() || meta.mtime_ns == 0 {
        return None;
    }
    let wait = meta.mtime_ns + fs.stamp_step_ns(meta.mtime_ns) + 1 - seen_at;
    (wait > 0 && wait <= SETTLE_WAIT_MAX_NS + 1).then_some(wait)
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RealFs;

fn kind_of(ft: std::fs::FileType) -> Kind {
    if ft.is_file() {
        Kind::File
    } else if ft.is_dir() {
        Kind::Dir
    } else {
        Kind::Other
    }
}

/// What a kept chunk list is valid for ([`crate::chunker::recent`]).
pub(crate) fn stamp_of_meta(m: &Meta) -> crate::chunker::recent::Stamp {
    crate::chunker::recent::Stamp {
        dev: m.dev,
        ino: m.ino,
        len: m.len,
        mtime_ns: m.mtime_ns,
    }
}

/// The stamp of the file at `path` now.
pub(crate) fn stamp_now(path: &Path) -> std::io::Result<crate::chunker::recent::Stamp> {
    std::fs::metadata(path).map(|m| stamp_of_meta(&meta_of(&m)))
}

fn meta_of(m: &std::fs::Metadata) -> Meta {
    let mtime_ns = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128);
    #[cfg(unix)]
    let (dev, ino) = {
        use std::os::unix::fs::MetadataExt;
        (m.dev(), m.ino())
    };
    #[cfg(not(unix))]
    let (dev, ino) = (0, 0);
    Meta {
        kind: kind_of(m.file_type()),
        len: m.len(),
        mtime_ns,
        dev,
        ino,
    }
}

impl LocalFs for RealFs {
    fn read_dir(&self, dir: &Path) -> std::io::Result<Vec<Entry>> {
        std::fs::read_dir(dir)?
            .map(|e| {
                let e = e?;
                Ok(Entry {
                    name: e.file_name(),
                    kind: kind_of(e.file_type()?),
                })
            })
            .collect()
    }

    fn metadata(&self, path: &Path) -> std::io::Result<Meta> {
        std::fs::metadata(path).map(|m| meta_of(&m))
    }

    fn symlink_metadata(&self, path: &Path) -> std::io::Result<Meta> {
        std::fs::symlink_metadata(path).map(|m| meta_of(&m))
    }

    fn now_ns(&self) -> i128 {
        std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128)
    }

    fn stamp_step_ns(&self, mtime_ns: i128) -> i128 {
        stamp_step_ns(mtime_ns)
    }

    fn hash(&self, path: &Path) -> std::io::Result<String> {
        use crate::chunker::recent;
        let file = std::fs::File::open(path)?;
        let before = file.metadata()?;
        let (id, chunks) = crate::chunker::content_id_of(&file)?;
        // Kept for the upload only if nothing wrote to the file while it was read.
        let stamp = stamp_of_meta(&meta_of(&before));
        if let Some(chunks) = chunks
            && stamp_now(path).is_ok_and(|after| after == stamp)
        {
            recent::keep(path, stamp, id.clone(), chunks);
        }
        Ok(id.to_string())
    }

    fn sha256(&self, path: &Path) -> std::io::Result<String> {
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

    fn read_to_string(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write_durably(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = dir.join(tmp_name);
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::rename(from, to)
    }

    fn rename_no_replace(&self, from: &Path, to: &Path) -> std::io::Result<bool> {
        // A hard link is created only where no name is: atomic, and portable to every file
        // system with links (ext4, APFS, NTFS). Without them (FAT drives), a check just before
        // the rename leaves a window of a few microseconds.
        match std::fs::hard_link(from, to) {
            Ok(()) => {
                std::fs::remove_file(from)?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) if std::fs::symlink_metadata(from).is_err() => Err(e),
            Err(_) => {
                if std::fs::symlink_metadata(to).is_ok() {
                    return Ok(false);
                }
                std::fs::rename(from, to)?;
                Ok(true)
            }
        }
    }

    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        let mut missing = Vec::new();
        let mut at = path;
        while std::fs::symlink_metadata(at).is_err() {
            missing.push(at);
            match at.parent() {
                Some(p) if !p.as_os_str().is_empty() => at = p,
                _ => break,
            }
        }
        if missing.is_empty() {
            return std::fs::create_dir_all(path); // reports what is in the way
        }
        for dir in missing.into_iter().rev() {
            match std::fs::create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
                Err(e) => return Err(e),
            }
            if let Some(parent) = dir.parent() {
                self.sync_dir(parent);
            }
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_dir_all_makes_every_missing_level_and_reports_what_is_in_the_way() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        RealFs.create_dir_all(&deep).unwrap();
        assert!(deep.is_dir());
        RealFs.create_dir_all(&deep).unwrap(); // already there: fine
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let err = RealFs
            .create_dir_all(&dir.path().join("file/sub"))
            .unwrap_err();
        assert_ne!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
        assert_eq!(std::fs::read(dir.path().join("file")).unwrap(), b"x");
    }
}
