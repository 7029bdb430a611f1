//! The server's namespace rules, seen from the planner: live paths are unique case-insensitively
//! (`Report.txt` and `report.txt` cannot both live), and a name is either a file or a directory
//! (a file `d` and a file `d/e` cannot both live). A local change that breaks a rule against what
//! stays on the server would be refused on every upload; the planner moves it aside under a
//! conflicted-copy name instead, so both versions live on and the trees converge.
//!
//! Directory spelling is not a rule: `D/a` and `d/b` are two directories on case-sensitive disks
//! and the server keeps both spellings. A case-insensitive disk holds them as one folder, so its
//! device plans with [`adopt_folder_spelling`].

use std::collections::{HashMap, HashSet};

use crate::{LocalTree, PlanContext, RemoteTree, SyncedTree, conflicted_copy_name};

/// The key under which the server compares paths: its own `path_key` (Unicode case folding).
pub(crate) fn key(path: &str) -> String {
    syncsphere_protocol::path_key(path)
}

/// The proper ancestors of `path`, shortest first: `a/b/c` → `a`, `a/b`.
pub(crate) fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// A set of live file paths, indexed the way the server checks new names.
#[derive(Debug, Default)]
pub(crate) struct Namespace<'a> {
    /// Case-folded path → the path as spelled.
    files: HashMap<String, &'a str>,
    /// Case-folded directories → how many of the files they hold.
    dirs: HashMap<String, usize>,
}

impl<'a> Namespace<'a> {
    pub(crate) fn of(paths: impl IntoIterator<Item = &'a str>) -> Self {
        let mut ns = Namespace::default();
        for p in paths {
            ns.files.insert(key(p), p);
            for a in ancestors(p) {
                *ns.dirs.entry(key(a)).or_default() += 1;
            }
        }
        ns
    }

    /// The part of `path` (itself or one of its ancestors) that the server would refuse because
    /// of a file in this namespace: a file at an ancestor, a directory where `path` would be a
    /// file, or a differently spelled file of the same name.
    pub(crate) fn clash_at<'p>(&self, path: &'p str) -> Option<&'p str> {
        self.clash_at_except(path, None)
    }

    /// Like [`Self::clash_at`], as if the file `except` (the one being moved) were not there.
    pub(crate) fn clash_at_except<'p>(
        &self,
        path: &'p str,
        except: Option<&str>,
    ) -> Option<&'p str> {
        let other = |k: &str| self.files.get(k).is_some_and(|&p| Some(p) != except);
        if let Some(a) = ancestors(path).find(|a| other(&key(a))) {
            return Some(a);
        }
        let k = key(path);
        let below = format!("{k}/");
        let own = usize::from(except.is_some_and(|e| key(e).starts_with(&below)));
        if self.dirs.get(&k).is_some_and(|&n| n > own) {
            return Some(path);
        }
        match self.files.get(&k) {
            Some(&spelled) if spelled != path && Some(spelled) != except => Some(path),
            _ => None,
        }
    }
}

/// Case-folded names (files and their directories) that a new name must avoid.
#[derive(Debug, Default)]
pub(crate) struct TakenNames(HashSet<String>);

impl TakenNames {
    /// Every name of the three trees, files and folders.
    pub(crate) fn of(local: &LocalTree, remote: &RemoteTree, synced: &SyncedTree) -> Self {
        let mut taken = TakenNames::default();
        for p in local.keys().chain(remote.keys()).chain(synced.keys()) {
            taken.insert(p);
        }
        taken
    }

    fn insert(&mut self, path: &str) {
        self.0.insert(key(path));
        for a in ancestors(path) {
            self.0.insert(key(a));
        }
    }

    /// A conflicted-copy name for `path` that is free, and from now on taken.
    pub(crate) fn pick_copy_name(&mut self, path: &str, ctx: &PlanContext) -> String {
        let copy = conflicted_copy_name(path, &ctx.device_name, &ctx.stamp, |c| {
            self.0.contains(&key(c))
        });
        self.insert(&copy);
        copy
    }
}

/// For a device whose disk ignores case: the local tree with every folder spelled the way the
/// server spells it (the smallest spelling where the server has several), else the way the
/// synced tree does. On such a disk `photos/a` and `Photos/b` are one folder whatever the
/// names say, so comparing spellings would make the device rename folders back and forth with
/// every other device; adopting one spelling everywhere makes all of them agree. (A folder
/// renamed only in case on such a disk is therefore not carried to the server; file names
/// keep their own case, so a file's case-only rename is.) A file the server (or the synced
/// tree) already holds under its own folder spelling keeps that one: where the server spells
/// one folder several ways, the smallest spelling would make the file a new one beside itself,
/// an upload the server refuses (the name is taken) for ever.
pub fn adopt_folder_spelling(
    local: &LocalTree,
    remote: &RemoteTree,
    synced: &SyncedTree,
) -> LocalTree {
    let mut spelling: HashMap<String, &str> = HashMap::new();
    let mut own: HashMap<String, &str> = HashMap::new();
    // Trees iterate in order, so the first spelling seen is the smallest.
    for p in remote.keys().chain(synced.keys()) {
        own.entry(key(p)).or_insert(p);
        for a in ancestors(p) {
            spelling.entry(key(a)).or_insert(a);
        }
    }
    local
        .iter()
        .map(|(p, f)| {
            if let Some(q) = own.get(&key(p))
                && let (Some(dir), Some(slash)) = (q.rfind('/'), p.rfind('/'))
            {
                return (format!("{}{}", &q[..dir], &p[slash..]), f.clone());
            }
            let respelled = ancestors(p)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .find_map(|a| {
                    spelling
                        .get(&key(a))
                        .map(|s| format!("{s}{}", &p[a.len()..]))
                });
            (respelled.unwrap_or_else(|| p.clone()), f.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_kind_of_clash() {
        let ns = Namespace::of(["Report.txt", "d", "photos/2024/a.jpg"]);
        // The same name in another case.
        assert_eq!(ns.clash_at("report.txt"), Some("report.txt"));
        assert_eq!(ns.clash_at("Report.txt"), None, "the file itself");
        // A file where the server has a directory, and files under a server file.
        assert_eq!(ns.clash_at("photos"), Some("photos"));
        assert_eq!(ns.clash_at("PHOTOS/2024"), Some("PHOTOS/2024"));
        assert_eq!(ns.clash_at("d/e"), Some("d"));
        assert_eq!(ns.clash_at("D/e/f"), Some("D"));
        // Directories may be spelled differently; new names are fine.
        assert_eq!(ns.clash_at("Photos/2024/b.jpg"), None);
        assert_eq!(ns.clash_at("e"), None);
        // The file being moved does not stand in its own way.
        assert_eq!(ns.clash_at_except("d/e", Some("d")), None);
        assert_eq!(
            ns.clash_at_except("photos", Some("photos/2024/a.jpg")),
            None
        );
        assert_eq!(ns.clash_at_except("report.TXT", Some("Report.txt")), None);
        assert_eq!(ns.clash_at_except("d/e", Some("Report.txt")), Some("d"));
    }
}

#[cfg(test)]
mod spelling_tests {
    use super::*;
    use crate::{LocalFile, RemoteFile, SyncedFile};

    #[test]
    fn folders_take_the_servers_spelling_and_names_keep_theirs() {
        let lf = || LocalFile {
            sha256: "x".into(),
            size: 1,
        };
        let rf = || RemoteFile {
            file_id: "f".into(),
            rev: 1,
            sha256: "x".into(),
        };
        let local = LocalTree::from([
            ("photos/2024/a.jpg".to_string(), lf()),
            ("Docs/Notes.TXT".to_string(), lf()),
            ("new/x".to_string(), lf()),
            ("top.txt".to_string(), lf()),
            ("PHOTOS/2024/Own.JPG".to_string(), lf()),
        ]);
        let remote = RemoteTree::from([
            ("Photos/2024/b.jpg".to_string(), rf()),
            ("photos/other.jpg".to_string(), rf()),
            ("photos/2024/own.jpg".to_string(), rf()),
        ]);
        let synced = SyncedTree::from([(
            "docs/notes.txt".to_string(),
            SyncedFile {
                file_id: "g".into(),
                rev: 1,
                sha256: "x".into(),
            },
        )]);
        let got: Vec<String> = adopt_folder_spelling(&local, &remote, &synced)
            .into_keys()
            .collect();
        assert_eq!(
            got,
            [
                "Photos/2024/a.jpg", // "Photos" sorts before "photos": every device picks it
                "docs/Notes.TXT",    // the synced spelling where the server has none
                "new/x",
                // A file the server holds keeps its own folders (not "Photos"), and the disk's
                // case of its name (a case-only rename is carried).
                "photos/2024/Own.JPG",
                "top.txt",
            ]
        );
    }
}
