//! Per-file sync state, for the emblems a file manager draws on the files of the synced folder.
//!
//! [`file_sync_state`] is a pure function of the latest [`Status`], the moment the engine last
//! said "up to date" and a few facts about one path ([`PathFacts`]); [`FileStateReader`]
//! gathers those facts (one `stat`, one indexed lookup in the local index, opened read-only) so
//! a file manager asking about every file it shows stays cheap.
//!
//! How "synced" is decided: the index keeps no size or modification time per file (only the
//! content hash, which would cost a read of the whole file), so a file counts as synced when
//! the index holds it and it has not changed (mtime or, on Unix, ctime — which `cp -p` or
//! `touch -d` cannot set back) since the engine last finished a pass with nothing left to do.
//! Every change after that moment wakes the engine's watcher, whose pass either syncs it or
//! says "up to date" again; the caller re-asks then (see the desktop's `emblems`).
//!
//! **Boundary**: reads metadata and the index only — never a file's content, never writes.

use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use syncsphere_protocol::normalize_path;

use crate::SyncError;
use crate::conflicts::parse_copy_name;
use crate::scan::{STATE_DIR, ignored};
use crate::status::{Status, SyncState};

/// What a file manager should show on one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileSyncState {
    /// The index holds it and it has not changed since the engine last said "up to date".
    Synced,
    /// Moving now, or changed / new and waiting for the next pass.
    Syncing,
    /// A conflicted copy (or inside a folder moved aside as one): needs the user.
    Conflict,
    /// Waiting, but the engine is failing (see the status's `last_error`), or a name the
    /// server refuses, which never syncs.
    Error,
    /// Waiting while the user has paused syncing.
    Paused,
    /// Not synced by rule: the built-in ignores, `.syncsphereignore`, symbolic links and
    /// special files, empty folders.
    Ignored,
    /// No claim: outside the synced folder, the client's own `.syncsphere` folder, a path that
    /// does not exist, or sync stopped.
    None,
}

impl FileSyncState {
    /// The word the emblem socket speaks.
    pub fn word(self) -> &'static str {
        match self {
            FileSyncState::Synced => "synced",
            FileSyncState::Syncing => "syncing",
            FileSyncState::Conflict => "conflict",
            FileSyncState::Error => "error",
            FileSyncState::Paused => "paused",
            FileSyncState::Ignored => "ignored",
            FileSyncState::None => "none",
        }
    }

    /// Whether the answer can change without the path itself changing — when the engine's
    /// state changes or it finishes a pass. A caller re-asks about these then.
    pub fn is_waiting(self) -> bool {
        matches!(
            self,
            FileSyncState::Syncing | FileSyncState::Error | FileSyncState::Paused
        )
    }
}

/// What a path is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    File,
    Folder {
        empty: bool,
    },
    /// A symbolic link or a special file: never synced (see `scan`).
    Other,
    Missing,
}

/// The facts about one path that [`file_sync_state`] decides from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathFacts {
    pub kind: PathKind,
    /// A file: the index's synced tree holds it. A folder: the synced tree holds a file in it.
    pub in_index: bool,
    /// Latest of mtime and ctime, in ms since the epoch.
    pub changed_ms: i64,
    /// Excluded by `.syncsphereignore`.
    pub ignored_by_rules: bool,
}

/// `path` relative to `folder`, `/`-separated (`""` for the folder itself); `None` when it is
/// not inside. Purely lexical: the caller passes absolute paths as the file manager has them.
pub fn relative_path(folder: &Path, path: &Path) -> Option<String> {
    let rest = path.strip_prefix(folder).ok()?;
    let mut parts = Vec::new();
    for c in rest.components() {
        match c {
            Component::Normal(name) => parts.push(name.to_str()?),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

/// The moment up to which the engine has confirmed the folder: the `updated_ms` of the latest
/// "up to date" status, else what was known before.
pub fn verified_since(previous: Option<i64>, status: &Status) -> Option<i64> {
    match status.state {
        SyncState::UpToDate => Some(status.updated_ms),
        _ => previous,
    }
}

/// The state to show on `path` (absolute) in the synced `folder`. `verified_ms` comes from
/// [`verified_since`] over the status stream.
pub fn file_sync_state(
    status: &Status,
    verified_ms: Option<i64>,
    folder: &Path,
    path: &Path,
    facts: &PathFacts,
) -> FileSyncState {
    let Some(rel) = relative_path(folder, path) else {
        return FileSyncState::None;
    };
    if status.state == SyncState::Stopped || facts.kind == PathKind::Missing {
        return FileSyncState::None;
    }
    if rel.is_empty() {
        // The folder itself shows the engine's overall state.
        return match status.state {
            SyncState::UpToDate => FileSyncState::Synced,
            SyncState::Error => FileSyncState::Error,
            SyncState::Paused => FileSyncState::Paused,
            _ => FileSyncState::Syncing,
        };
    }
    let names: Vec<&str> = rel.split('/').collect();
    if names[0] == STATE_DIR {
        return FileSyncState::None;
    }
    if names.iter().any(|n| ignored(n)) || facts.ignored_by_rules {
        return FileSyncState::Ignored;
    }
    match facts.kind {
        PathKind::Other | PathKind::Folder { empty: true } if !facts.in_index => {
            return FileSyncState::Ignored;
        }
        _ => {}
    }
    // The scanner skips (and reports) names the server would refuse; they never sync.
    if normalize_path(&rel).ok().as_deref() != Some(rel.as_str()) {
        return FileSyncState::Error;
    }
    if names.iter().any(|n| parse_copy_name(n).is_some()) {
        return FileSyncState::Conflict;
    }
    let is_folder = matches!(facts.kind, PathKind::Folder { .. });
    let moving = status.transfers.iter().any(|t| {
        t.path == rel
            || (is_folder
                && t.path
                    .strip_prefix(rel.as_str())
                    .is_some_and(|rest| rest.starts_with('/')))
    });
    if moving {
        return FileSyncState::Syncing;
    }
    if facts.in_index && verified_ms.is_some_and(|v| facts.changed_ms <= v) {
        return FileSyncState::Synced;
    }
    match status.state {
        SyncState::Error => FileSyncState::Error,
        SyncState::Paused => FileSyncState::Paused,
        // Starting, syncing, up to date (the watcher's pass is on its way) and offline
        // (retrying with backoff) all end with the file synced without the user's help.
        _ => FileSyncState::Syncing,
    }
}

/// Answers [`file_sync_state`] for batches of paths, holding the local index open read-only
/// (SQLite in WAL mode: reading never blocks the engine's writes).
pub struct FileStateReader {
    index_path: PathBuf,
    /// `None` until the engine has created the index.
    pool: Option<SqlitePool>,
    folder: PathBuf,
    /// `.syncsphereignore` as last read, with the (size, mtime) it was read at.
    rules: crate::scan::IgnoreRules,
}

fn db(e: sqlx::Error) -> SyncError {
    SyncError::Index(e.to_string())
}

impl FileStateReader {
    /// Reads the index of the sync configured in `config_dir` for the synced `folder` (as the
    /// status names it). Without an index yet (sync is just starting) nothing counts as synced
    /// until the engine has written one; it is opened as soon as it exists.
    pub async fn open(config_dir: &Path, folder: &Path) -> Result<Self, SyncError> {
        let mut reader = FileStateReader {
            index_path: crate::config::index_path(config_dir),
            pool: None,
            folder: folder.to_path_buf(),
            rules: Default::default(),
        };
        reader.connect().await?;
        Ok(reader)
    }

    async fn connect(&mut self) -> Result<(), SyncError> {
        if self.pool.is_some() || !self.index_path.exists() {
            return Ok(());
        }
        let options =
            SqliteConnectOptions::from_str(&format!("sqlite://{}", self.index_path.display()))
                .map_err(db)?
                .read_only(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(db)?;
        self.pool = Some(pool);
        Ok(())
    }

    /// The state of each of `paths` (absolute), in order.
    pub async fn states(
        &mut self,
        status: &Status,
        verified_ms: Option<i64>,
        paths: &[PathBuf],
    ) -> Result<Vec<FileSyncState>, SyncError> {
        self.connect().await?;
        self.reload_rules();
        let mut out = Vec::with_capacity(paths.len());
        for path in paths {
            let facts = self.facts(path).await?;
            out.push(file_sync_state(
                status,
                verified_ms,
                &self.folder,
                path,
                &facts,
            ));
        }
        Ok(out)
    }

    async fn facts(&self, path: &Path) -> Result<PathFacts, SyncError> {
        let mut facts = PathFacts {
            kind: PathKind::Missing,
            in_index: false,
            changed_ms: 0,
            ignored_by_rules: false,
        };
        let Some(rel) = relative_path(&self.folder, path).filter(|r| !r.is_empty()) else {
            // Outside, or the folder itself: decided without facts beyond existence.
            facts.kind = PathKind::Folder { empty: false };
            return Ok(facts);
        };
        // Local metadata calls: microseconds on the local disks a synced folder lives on.
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return Ok(facts);
        };
        facts.changed_ms = changed_ms(&meta);
        facts.kind = if meta.is_file() {
            PathKind::File
        } else if meta.is_dir() {
            PathKind::Folder { empty: false }
        } else {
            PathKind::Other
        };
        facts.ignored_by_rules = self.rules.is_ignored(&rel, meta.is_dir());
        facts.in_index = self.in_index(&rel, facts.kind).await?;
        if facts.kind == (PathKind::Folder { empty: false }) && !facts.in_index {
            let empty = std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_none());
            facts.kind = PathKind::Folder { empty };
        }
        Ok(facts)
    }

    /// Whether the synced tree holds the file `rel`, or a file in the folder `rel`.
    async fn in_index(&self, rel: &str, kind: PathKind) -> Result<bool, SyncError> {
        let Some(pool) = &self.pool else {
            return Ok(false);
        };
        let found = match kind {
            PathKind::File => sqlx::query("SELECT 1 AS found FROM synced WHERE path = ?1")
                .bind(rel)
                .fetch_optional(pool)
                .await
                .map_err(db)?,
            // The files of `d/` are the keys from `d/` up to `d0` (`'0'` follows `'/'`).
            PathKind::Folder { .. } => {
                sqlx::query("SELECT 1 AS found FROM synced WHERE path >= ?1 AND path < ?2 LIMIT 1")
                    .bind(format!("{rel}/"))
                    .bind(format!("{rel}0"))
                    .fetch_optional(pool)
                    .await
                    .map_err(db)?
            }
            _ => None,
        };
        Ok(found.is_some())
    }

    /// Re-reads `.syncsphereignore` when its size or mtime changed (one `stat` a batch).
    fn reload_rules(&mut self) {
        // A rule that does not parse is the scanner's to report; the others still apply.
        let _ = self.rules.refresh(&crate::local_fs::RealFs, &self.folder);
    }
}

/// Latest of mtime and (on Unix) ctime, in ms.
fn changed_ms(meta: &std::fs::Metadata) -> i64 {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64);
    #[cfg(unix)]
    let ctime = {
        use std::os::unix::fs::MetadataExt as _;
        meta.ctime() * 1000 + meta.ctime_nsec() / 1_000_000
    };
    #[cfg(not(unix))]
    let ctime = 0;
    mtime.max(ctime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{Direction, TransferProgress};

    const FOLDER: &str = "/home/ada/Sync";

    /// Engine state, files in transfer, verified moment, path, facts → expected state.
    type Case = (
        SyncState,
        &'static [&'static str],
        Option<i64>,
        &'static str,
        PathFacts,
        FileSyncState,
    );
    const VERIFIED: i64 = 1_000;

    fn status(state: SyncState, transfers: &[&str]) -> Status {
        let mut s = Status::new(FOLDER.into(), "ada@example.com".into(), "laptop".into());
        s.state = state;
        s.transfers = transfers
            .iter()
            .map(|p| TransferProgress {
                path: (*p).to_owned(),
                direction: Direction::Upload,
                done: 0,
                total: 10,
            })
            .collect();
        s
    }

    fn file(in_index: bool, changed_ms: i64) -> PathFacts {
        PathFacts {
            kind: PathKind::File,
            in_index,
            changed_ms,
            ignored_by_rules: false,
        }
    }

    fn folder(in_index: bool, empty: bool) -> PathFacts {
        PathFacts {
            kind: PathKind::Folder { empty },
            ..file(in_index, 10)
        }
    }

    #[test]
    fn states_per_path() {
        use FileSyncState as F;
        use SyncState as S;
        let ignored_by_rules = PathFacts {
            ignored_by_rules: true,
            ..file(true, 10)
        };
        let link = PathFacts {
            kind: PathKind::Other,
            ..file(false, 10)
        };
        let missing = PathFacts {
            kind: PathKind::Missing,
            ..file(false, 0)
        };
        #[rustfmt::skip]
        let table: &[Case] = &[
            // In the index and unchanged since the last "up to date": synced, whatever the
            // engine does now.
            (S::UpToDate, &[], Some(VERIFIED), "a.txt", file(true, 10), F::Synced),
            (S::Syncing, &[], Some(VERIFIED), "a.txt", file(true, VERIFIED), F::Synced),
            (S::Paused, &[], Some(VERIFIED), "d/a.txt", file(true, 10), F::Synced),
            (S::Error, &[], Some(VERIFIED), "a.txt", file(true, 10), F::Synced),
            // Changed since, new, or never verified: waiting, in the engine's terms.
            (S::UpToDate, &[], Some(VERIFIED), "a.txt", file(true, VERIFIED + 1), F::Syncing),
            (S::Syncing, &[], Some(VERIFIED), "new.txt", file(false, 10), F::Syncing),
            (S::Starting, &[], None, "a.txt", file(true, 10), F::Syncing),
            (S::Offline, &[], Some(VERIFIED), "new.txt", file(false, 10), F::Syncing),
            (S::Paused, &[], Some(VERIFIED), "new.txt", file(false, 10), F::Paused),
            (S::Error, &[], Some(VERIFIED), "new.txt", file(false, 10), F::Error),
            // Moving now, or a folder with a file moving inside.
            (S::Syncing, &["d/a.txt"], Some(VERIFIED), "d/a.txt", file(true, 10), F::Syncing),
            (S::Syncing, &["d/e/a.txt"], Some(VERIFIED), "d", folder(true, false), F::Syncing),
            (S::Syncing, &["d/e/a.txt"], Some(VERIFIED), "d/e", folder(true, false), F::Syncing),
            (S::Syncing, &["dd/a.txt"], Some(VERIFIED), "d", folder(true, false), F::Synced),
            (S::Syncing, &["d"], Some(VERIFIED), "d/x", folder(true, false), F::Synced),
            // Folders: by the files the index holds in them; empty ones do not sync.
            (S::UpToDate, &[], Some(VERIFIED), "d", folder(false, false), F::Syncing),
            (S::UpToDate, &[], Some(VERIFIED), "d", folder(false, true), F::Ignored),
            // Conflicted copies, also inside a folder moved aside.
            (S::UpToDate, &[], Some(VERIFIED),
             "r (conflicted copy from pc 2026-11-25 103015).txt", file(true, 10), F::Conflict),
            (S::UpToDate, &[], Some(VERIFIED),
             "d (conflicted copy from pc 2026-11-25 103015)/e.txt", file(true, 10), F::Conflict),
            (S::UpToDate, &[], Some(VERIFIED), "r (conflicted copy).txt", file(true, 10), F::Synced),
            // Not synced by rule.
            (S::UpToDate, &[], Some(VERIFIED), "notes.txt~", file(false, 10), F::Ignored),
            (S::UpToDate, &[], Some(VERIFIED), "d/.DS_Store", file(false, 10), F::Ignored),
            (S::UpToDate, &[], Some(VERIFIED), "build/x.o", ignored_by_rules, F::Ignored),
            (S::UpToDate, &[], Some(VERIFIED), "link", link, F::Ignored),
            (S::UpToDate, &[], Some(VERIFIED), "bad\\name", file(false, 10), F::Error),
            (S::UpToDate, &[], Some(VERIFIED), "cafe\u{301}.txt", file(false, 10), F::Error),
            // No claim.
            (S::UpToDate, &[], Some(VERIFIED), ".syncsphere/tmp/x", file(false, 10), F::None),
            (S::UpToDate, &[], Some(VERIFIED), "gone.txt", missing, F::None),
            (S::Stopped, &[], Some(VERIFIED), "a.txt", file(true, 10), F::None),
        ];
        for (state, transfers, verified, rel, facts, want) in table {
            let path = Path::new(FOLDER).join(rel);
            let got = file_sync_state(
                &status(*state, transfers),
                *verified,
                Path::new(FOLDER),
                &path,
                facts,
            );
            assert_eq!(got, *want, "{rel} under {state:?} with {facts:?}");
        }
    }

    #[test]
    fn the_folder_itself_and_paths_outside() {
        use FileSyncState as F;
        use SyncState as S;
        let root = folder(true, false);
        for (state, want) in [
            (S::UpToDate, F::Synced),
            (S::Syncing, F::Syncing),
            (S::Starting, F::Syncing),
            (S::Offline, F::Syncing),
            (S::Paused, F::Paused),
            (S::Error, F::Error),
        ] {
            let got = file_sync_state(
                &status(state, &[]),
                None,
                Path::new(FOLDER),
                Path::new(FOLDER),
                &root,
            );
            assert_eq!(got, want, "{state:?}");
        }
        for outside in [
            "/home/ada/Syncthing/a",
            "/home/ada",
            "/home/ada/Sync/../x",
            "rel",
        ] {
            let got = file_sync_state(
                &status(S::UpToDate, &[]),
                Some(VERIFIED),
                Path::new(FOLDER),
                Path::new(outside),
                &file(true, 0),
            );
            assert_eq!(got, F::None, "{outside}");
        }
    }

    #[test]
    fn verified_moves_only_with_up_to_date() {
        let mut s = status(SyncState::Syncing, &[]);
        s.updated_ms = 5;
        assert_eq!(verified_since(None, &s), None);
        assert_eq!(verified_since(Some(3), &s), Some(3));
        s.state = SyncState::UpToDate;
        assert_eq!(verified_since(Some(3), &s), Some(5));
    }

    #[tokio::test]
    async fn reader_gathers_facts_from_the_disk_and_the_index() {
        use syncsphere_sync_core::SyncedFile;
        let config = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // Opened before the engine has made an index: nothing is synced yet.
        let mut reader = FileStateReader::open(config.path(), root).await.unwrap();
        std::fs::write(root.join("a.txt"), "a.txt").unwrap();
        let mut status = status(SyncState::UpToDate, &[]);
        status.folder = root.display().to_string();
        status.updated_ms = crate::now_ms() + 1_000;
        let verified = verified_since(None, &status);
        let early = reader
            .states(&status, verified, &[root.join("a.txt")])
            .await;
        assert_eq!(early.unwrap(), [FileSyncState::Syncing]);

        let index = crate::index::Index::open(&crate::config::index_path(config.path()))
            .await
            .unwrap();
        let entry = SyncedFile {
            file_id: "f".into(),
            rev: 1,
            sha256: "00".into(),
        };
        for p in ["a.txt", "d/b.txt", "build/x.o"] {
            index.set_synced(p, Some(&entry)).await.unwrap();
        }
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::create_dir_all(root.join("build")).unwrap();
        std::fs::create_dir_all(root.join("empty")).unwrap();
        std::fs::create_dir_all(root.join("fresh")).unwrap();
        for p in ["a.txt", "d/b.txt", "build/x.o", "new.txt", "fresh/c.txt"] {
            std::fs::write(root.join(p), p).unwrap();
        }
        std::fs::write(root.join(crate::scan::IGNORE_FILE), "build/\n").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(root.join("a.txt"), root.join("link")).unwrap();

        let names = [
            "a.txt",
            "d/b.txt",
            "d",
            "new.txt",
            "fresh",
            "empty",
            "build/x.o",
            "gone.txt",
        ];
        let paths: Vec<PathBuf> = names.iter().map(|n| root.join(n)).collect();
        let got = reader.states(&status, verified, &paths).await.unwrap();
        use FileSyncState as F;
        let want = [
            F::Synced,
            F::Synced,
            F::Synced,
            F::Syncing,
            F::Syncing,
            F::Ignored,
            F::Ignored,
            F::None,
        ];
        assert_eq!(got, want, "{names:?}");
        #[cfg(unix)]
        assert_eq!(
            reader
                .states(&status, verified, &[root.join("link")])
                .await
                .unwrap(),
            [F::Ignored]
        );

        // Written after the last "up to date": waiting again until the engine confirms it.
        status.updated_ms = crate::now_ms() - 60_000;
        let verified = verified_since(None, &status);
        let got = reader
            .states(&status, verified, &[root.join("a.txt")])
            .await
            .unwrap();
        assert_eq!(got, [F::Syncing]);
    }
}
