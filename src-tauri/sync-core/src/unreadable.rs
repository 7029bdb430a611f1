//! What the plan may do around paths the scan could not read (permission denied, a folder it
//! could not list, a file an interrupted pass had set aside): their local state is only
//! assumed, so they stand in the plan as last synced — never as deleted — and nothing is done
//! to them, or recorded about them, until they can be read.
//!
//! An unreadable path is a file, or a folder ending in `/`. On a case-insensitive disk (`fold`)
//! names are compared by the server's key: the plan spells folders the server's way
//! ([`crate::adopt_folder_spelling`]) while the disk, and so the list, spells them its own way.
//! Folding by the server's key may join more names than a disk does; that only holds more.

use crate::clash::key;
use crate::{LocalFile, LocalTree, Op, RemoteTree, SyncedTree, adopt_folder_spelling};

/// The paths a scan could not read this time, and how to compare names with them.
#[derive(Debug, Clone)]
pub struct Unreadable {
    /// Each path as compared (folded when `fold`), and whether it is a folder.
    paths: Vec<(String, bool)>,
    fold: bool,
}

impl Unreadable {
    /// `paths`: files, and folders ending in `/`; `fold`: the disk ignores case.
    pub fn new(paths: &[String], fold: bool) -> Self {
        let norm = |p: &str| if fold { key(p) } else { p.to_owned() };
        let paths = paths
            .iter()
            .map(|u| match u.strip_suffix('/') {
                Some(dir) => (norm(dir), true),
                None => (norm(u), false),
            })
            .collect();
        Unreadable { paths, fold }
    }

    /// Whether `path` (a file, or a folder without its `/`) is unreadable: itself, or under a
    /// folder that could not be listed.
    pub fn covers(&self, path: &str) -> bool {
        if self.paths.is_empty() {
            return false;
        }
        let path = if self.fold {
            key(path)
        } else {
            path.to_owned()
        };
        self.paths.iter().any(|(u, dir)| {
            path == *u
                || (*dir
                    && path
                        .strip_prefix(u.as_str())
                        .is_some_and(|rest| rest.starts_with('/')))
        })
    }

    /// The local tree the plan uses, from what the scan read: on a case-insensitive disk its
    /// folders spelled the server's way ([`adopt_folder_spelling`]) — and only then every
    /// synced file that could not be read held under its exact synced spelling ([`Self::hold`]).
    /// The other order would re-spell a held file's folder and plan it as a new file beside
    /// its own synced entry (decision 0023).
    pub fn local_tree(
        &self,
        scanned: &LocalTree,
        remote: &RemoteTree,
        synced: &SyncedTree,
    ) -> LocalTree {
        let local = if self.fold {
            adopt_folder_spelling(scanned, remote, synced)
        } else {
            scanned.clone()
        };
        self.hold(local, synced)
    }

    /// `local` with every synced file that could not be read standing as it was last synced,
    /// keyed exactly as the synced tree spells it, so it plans as unchanged — not as deleted
    /// (which would delete it everywhere), nor as a new file beside its own synced entry.
    /// `local` must already carry the folder spelling the plan uses.
    pub fn hold(&self, mut local: LocalTree, synced: &SyncedTree) -> LocalTree {
        for (p, s) in synced.iter().filter(|(p, _)| self.covers(p)) {
            local.entry(p.clone()).or_insert_with(|| LocalFile {
                sha256: s.sha256.clone(),
                size: 0,
            });
        }
        local
    }

    /// Whether `op` touches an unreadable path (where it starts, or where it ends).
    pub fn touches(&self, op: &Op) -> bool {
        let other = match op {
            Op::MoveLocal { to, .. } | Op::MoveRemote { to, .. } => Some(to.as_str()),
            Op::ConflictCopy { copy, .. } => Some(copy.as_str()),
            _ => None,
        };
        self.covers(op.path()) || other.is_some_and(|p| self.covers(p))
    }

    /// `op` as it may run this time, or `None` to wait until the paths it involves can be read:
    /// - recording an unreadable path as synced records an assumption: it waits;
    /// - a file the server moved away from an unreadable path comes down at its new name
    ///   instead (the unreadable one is left alone);
    /// - anything else touching an unreadable path waits.
    pub fn around(&self, op: Op, remote: &RemoteTree) -> Option<Op> {
        if !self.touches(&op) {
            return Some(op);
        }
        match op {
            Op::MoveLocal { to, .. } if !self.covers(&to) => {
                remote.get(&to).map(|file| Op::Download {
                    path: to.clone(),
                    file: file.clone(),
                    expect_local: None,
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ContentHash, RemoteFile, SyncedFile};

    fn synced(sha: &str) -> SyncedFile {
        SyncedFile {
            file_id: format!("id-{sha}").into(),
            rev: 1,
            sha256: sha.into(),
        }
    }

    fn check_covers(list: &[&str], fold: bool, path: &str, expected: bool) {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            Unreadable::new(&list, fold).covers(path),
            expected,
            "{path} in {list:?} (fold {fold})"
        );
    }

    #[test]
    fn covers_files_and_what_is_under_folders() {
        check_covers(&["locked.doc"], false, "locked.doc", true);
        check_covers(&["locked.doc"], false, "locked.docx", false);
        check_covers(&["private/"], false, "private/a", true);
        check_covers(&["private/"], false, "private/sub/b", true);
        check_covers(&["private/"], false, "private", true);
        check_covers(&["private/"], false, "privateer.txt", false);
        check_covers(&[], true, "anything", false);
        // A case-insensitive disk: the plan spells the folder the server's way.
        check_covers(&["notes/"], false, "NOTES/2026/q1.md", false);
        check_covers(&["notes/"], true, "NOTES/2026/q1.md", true);
        check_covers(&["Locked.DOC"], true, "locked.doc", true);
        // Folded as the server folds (final sigma), and NFD spellings are the same name.
        check_covers(&["ΟΔΟΣ/"], true, "οδοσ/a", true);
        check_covers(&["cafe\u{301}/"], true, "caf\u{e9}/a", true);
    }

    #[test]
    fn held_files_keep_their_synced_spelling() {
        let synced = SyncedTree::from([
            ("locked.doc".to_string(), synced("l")),
            ("private/a".to_string(), synced("a")),
            ("deleted.txt".to_string(), synced("d")),
            // Two spellings of one name in the index (one is stale): each holds as itself.
            ("notes/q1.md".to_string(), synced("old")),
            ("NOTES/Q1.MD".to_string(), synced("new")),
        ]);
        let local = LocalTree::from([(
            "new.txt".to_string(),
            LocalFile {
                sha256: "n".into(),
                size: 1,
            },
        )]);
        let list = vec!["Locked.doc".to_string(), "PRIVATE/".into(), "Notes/".into()];
        let held = Unreadable::new(&list, true).hold(local.clone(), &synced);
        let seen: Vec<(&str, &str)> = held
            .iter()
            .map(|(p, f)| {
                let ContentHash::Text(text) = &f.sha256 else {
                    panic!("test hashes are short names")
                };
                (p.as_str(), &**text)
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("NOTES/Q1.MD", "new"),
                ("locked.doc", "l"),
                ("new.txt", "n"),
                ("notes/q1.md", "old"),
                ("private/a", "a"),
            ]
        );
        let strict = Unreadable::new(&list, false).hold(local, &synced);
        assert_eq!(strict.len(), 1, "a case-sensitive disk has no such files");
    }

    #[test]
    fn folders_are_respelled_before_unreadable_files_are_held() {
        // Simulation seed 4304's shape: a case-insensitive disk whose `notes/` cannot be
        // listed, an index with a stale second spelling of one file, and the server spelling
        // the folder `NOTES`.
        let synced = SyncedTree::from([
            ("notes/2026/q1.md".to_string(), synced("old")),
            ("NOTES/2026/Q1.MD".to_string(), synced("new")),
            ("NOTES/plan.md".to_string(), synced("p")),
        ]);
        let remote = RemoteTree::from([
            (
                "NOTES/2026/Q1.MD".to_string(),
                RemoteFile {
                    file_id: "id-new".into(),
                    rev: 1,
                    sha256: "new".into(),
                },
            ),
            (
                "NOTES/plan.md".to_string(),
                RemoteFile {
                    file_id: "id-p".into(),
                    rev: 1,
                    sha256: "p".into(),
                },
            ),
        ]);
        // The scan read `notes/plan.md` (the disk's spelling) and could not list `notes/2026/`.
        let scanned = LocalTree::from([(
            "notes/plan.md".to_string(),
            LocalFile {
                sha256: "p".into(),
                size: 1,
            },
        )]);
        let u = Unreadable::new(&["notes/2026/".to_string()], true);
        let local = u.local_tree(&scanned, &remote, &synced);
        let keys: Vec<&str> = local.keys().map(String::as_str).collect();
        // Each held file exactly as the index spells it; the readable one the server's way.
        assert_eq!(
            keys,
            ["NOTES/2026/Q1.MD", "NOTES/plan.md", "notes/2026/q1.md"]
        );
        let ctx = crate::PlanContext {
            device_name: "laptop".into(),
            stamp: "2026-02-01 000000".into(),
            fold_case: true,
        };
        let ops = crate::plan(&local, &remote, &synced, &ctx);
        // Nothing plans a copy of, or an upload of, an assumed file; what touches the
        // unreadable folder waits.
        assert!(
            ops.iter()
                .all(|op| !matches!(op, Op::ConflictCopy { .. } | Op::Upload { .. })),
            "{ops:?}"
        );
        assert!(
            ops.into_iter().all(|op| u.around(op, &remote).is_none()),
            "every op here involves the unreadable folder"
        );
    }

    #[test]
    fn ops_around_unreadable_paths_wait_or_come_down_elsewhere() {
        let list = vec!["notes/".to_string()];
        let u = Unreadable::new(&list, true);
        let rf = RemoteFile {
            file_id: "f".into(),
            rev: 2,
            sha256: "s".into(),
        };
        let remote = RemoteTree::from([("elsewhere/q1.md".to_string(), rf.clone())]);
        // A conflicted copy of an assumed file, spelled the server's way: waits.
        let copy = Op::ConflictCopy {
            path: "NOTES/q1.md".into(),
            copy: "NOTES/q1 (conflicted copy).md".into(),
        };
        assert_eq!(u.around(copy, &remote), None);
        let record = Op::RecordSynced {
            path: "Notes/q1.md".into(),
            synced: None,
        };
        assert_eq!(u.around(record, &remote), None);
        // Moved away on the server: downloaded at its new name instead.
        let moved = Op::MoveLocal {
            from: "NOTES/q1.md".into(),
            to: "elsewhere/q1.md".into(),
            expect_sha256: "s".into(),
            synced: synced("s"),
        };
        assert_eq!(
            u.around(moved, &remote),
            Some(Op::Download {
                path: "elsewhere/q1.md".into(),
                file: rf,
                expect_local: None,
            })
        );
        // Elsewhere: untouched.
        let upload = Op::Upload {
            path: "a.txt".into(),
            parent_rev: None,
        };
        assert_eq!(u.around(upload.clone(), &remote), Some(upload));
    }
}
