//! The server's namespace rules, seen from the planner: live paths are unique case-insensitively
//! (`Report.txt` and `report.txt` cannot both live), and a name is either a file or a directory
//! (a file `d` and a file `d/e` cannot both live). A local change that breaks a rule against what
//! stays on the server would be refused on every upload; the planner moves it aside under a
//! conflicted-copy name instead, so both versions live on and the trees converge.
//!
//! Directory spelling is not a rule: `D/a` and `d/b` are two directories on case-sensitive disks
//! and the server keeps both spellings.

use std::collections::{HashMap, HashSet};

/// The key under which the server compares paths (case-folded, like its `path_key`).
pub(crate) fn key(path: &str) -> String {
    path.to_lowercase()
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
    pub(crate) fn insert(&mut self, path: &str) {
        self.0.insert(key(path));
        for a in ancestors(path) {
            self.0.insert(key(a));
        }
    }

    pub(crate) fn contains(&self, path: &str) -> bool {
        self.0.contains(&key(path))
    }
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
