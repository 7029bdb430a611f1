//! The server's namespace rules, seen from the planner: live paths are unique case-insensitively
//! (`Report.txt` and `report.txt` cannot both live), and a name is either a file or a directory
//! (a file `d` and a file `d/e` cannot both live). A local change that breaks a rule against what
//! stays on the server would be refused on every upload; the planner moves it aside under a
//! conflicted-copy name instead, so both versions live on and the trees converge.
//!
//! Directory spelling is not a rule: `D/a` and `d/b` are two directories on case-sensitive disks
//! and the server keeps both spellings. A case-insensitive disk holds them as one folder, so its
//! device plans with [`adopt_folder_spelling`].

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::{LocalTree, PlanContext, RemoteTree, SyncedTree, conflicted_copy_name};

/// The key under which the server compares paths: its own `path_key` (Unicode case folding).
pub(crate) fn key(path: &str) -> String {
    syncsphere_protocol::path_key(path)
}

/// The proper ancestors of `path`, shortest first: `a/b/c` → `a`, `a/b`.
pub(crate) fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// The remote tree's paths, indexed the way the server checks new names: by their case-folded
/// key, sorted, so the files under a folder are one range. A caller that plans again and
/// again keeps one up to date with [`RemoteNames::update`] (the planner builds one only when
/// it is not given one, and only when a plan needs it).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RemoteNames {
    /// Case-folded path → the paths so spelled (one, but for trees the server would not hold:
    /// live paths are unique case-insensitively).
    files: BTreeMap<Box<str>, Spellings>,
}

/// The paths that fold to one key, sorted; empty when the one path is the key itself (a name
/// already in lower case and NFC: nothing stored beside the key — at 100,000 files this index
/// was ~19 MiB, a path kept twice per file; decision 0032).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Spellings(Box<[Box<str>]>);

impl Spellings {
    /// The paths of `key`'s entry.
    #[allow(clippy::borrowed_box)] // the map's own key, lent as the one path it spells
    fn of<'a>(&'a self, key: &'a Box<str>) -> &'a [Box<str>] {
        if self.0.is_empty() {
            std::slice::from_ref(key)
        } else {
            &self.0
        }
    }

    /// The entry for `paths` (sorted, not empty) under `key`.
    fn from(key: &str, paths: Vec<Box<str>>) -> Self {
        if matches!(paths.as_slice(), [one] if **one == *key) {
            Spellings::default()
        } else {
            Spellings(paths.into_boxed_slice())
        }
    }
}

impl RemoteNames {
    pub fn of(remote: &RemoteTree) -> Self {
        let mut names = RemoteNames::default();
        for p in remote.keys() {
            names.set(p, true);
        }
        names
    }

    /// Brings the index up to date with `remote` for `paths` (every path of the tree that may
    /// have come or gone since; any others are left as they were).
    pub fn update<'p>(&mut self, remote: &RemoteTree, paths: impl IntoIterator<Item = &'p str>) {
        for p in paths {
            self.set(p, remote.contains_key(p));
        }
    }

    /// Adds `path` (`live`) or takes it out.
    fn set(&mut self, path: &str, live: bool) {
        let k = key(path);
        let mut spelled: Vec<Box<str>> = match self.files.get_key_value(k.as_str()) {
            Some((key, s)) => s.of(key).to_vec(),
            None => Vec::new(),
        };
        match (spelled.binary_search_by(|s| (**s).cmp(path)), live) {
            (Err(i), true) => spelled.insert(i, path.into()),
            (Ok(i), false) => {
                spelled.remove(i);
            }
            _ => return,
        }
        if spelled.is_empty() {
            self.files.remove(k.as_str());
        } else {
            let entry = Spellings::from(&k, spelled);
            self.files.insert(k.into_boxed_str(), entry);
        }
    }

    /// The path spelled `k` when folded that counts (the last in order that `skip` keeps).
    fn spelled<'s>(&'s self, k: &str, skip: &impl Fn(&str) -> bool) -> Option<&'s str> {
        let (key, s) = self.files.get_key_value(k)?;
        s.of(key).iter().rev().map(|s| &**s).find(|s| !skip(s))
    }

    /// How the server spells the live file whose name is `path`'s case-insensitively.
    pub(crate) fn spelling_of(&self, path: &str) -> Option<&str> {
        self.spelled(&key(path), &|_| false)
    }

    /// The part of `path` (itself or one of its ancestors) that the server would refuse
    /// because of a remote file `skip` does not set aside (files this plan deletes or moves
    /// away): a file at an ancestor, a directory where `path` would be a file, or a
    /// differently spelled file of the same name.
    pub(crate) fn clash_at<'p>(
        &self,
        path: &'p str,
        skip: impl Fn(&str) -> bool,
    ) -> Option<&'p str> {
        if let Some(a) = ancestors(path).find(|a| self.spelled(&key(a), &skip).is_some()) {
            return Some(a);
        }
        let k = key(path);
        let below = format!("{k}/");
        let mut under = self
            .files
            .range::<str, _>((
                std::ops::Bound::Included(below.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(f, _)| f.starts_with(&below));
        if under.any(|(key, spelled)| spelled.of(key).iter().any(|s| !skip(s))) {
            return Some(path);
        }
        match self.spelled(&k, &skip) {
            Some(spelled) if spelled != path => Some(path),
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

    fn remote(paths: &[&str]) -> RemoteTree {
        paths
            .iter()
            .map(|p| {
                let f = crate::RemoteFile {
                    file_id: format!("id-{p}").into(),
                    rev: 1,
                    sha256: "x".into(),
                };
                (p.to_string(), f)
            })
            .collect()
    }

    #[test]
    fn finds_each_kind_of_clash() {
        let ns = RemoteNames::of(&remote(&["Report.txt", "d", "photos/2024/a.jpg"]));
        let none = |_: &str| false;
        let but = |except: &'static str| move |p: &str| p == except;
        // The same name in another case.
        assert_eq!(ns.clash_at("report.txt", none), Some("report.txt"));
        assert_eq!(ns.clash_at("Report.txt", none), None, "the file itself");
        // A file where the server has a directory, and files under a server file.
        assert_eq!(ns.clash_at("photos", none), Some("photos"));
        assert_eq!(ns.clash_at("PHOTOS/2024", none), Some("PHOTOS/2024"));
        assert_eq!(ns.clash_at("d/e", none), Some("d"));
        assert_eq!(ns.clash_at("D/e/f", none), Some("D"));
        // Directories may be spelled differently; new names are fine.
        assert_eq!(ns.clash_at("Photos/2024/b.jpg", none), None);
        assert_eq!(ns.clash_at("e", none), None);
        assert_eq!(
            ns.clash_at("photo", none),
            None,
            "a prefix of a name is no folder"
        );
        // The file being moved (or deleted) does not stand in its own way.
        assert_eq!(ns.clash_at("d/e", but("d")), None);
        assert_eq!(ns.clash_at("photos", but("photos/2024/a.jpg")), None);
        assert_eq!(ns.clash_at("report.TXT", but("Report.txt")), None);
        assert_eq!(ns.clash_at("d/e", but("Report.txt")), Some("d"));
    }

    #[test]
    fn names_kept_up_to_date_are_the_names_of_the_tree() {
        // Paths that fold alike, nest, and come and go in every order.
        let pool = [
            "a", "A", "a/b", "A/b", "a/B", "b.txt", "B.TXT", "ä/x", "Ä/x", "d/e/f", "D/E/F", "d/e",
        ];
        let mut x = 11u64;
        let mut tree = RemoteTree::new();
        let mut names = RemoteNames::of(&tree);
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut changed = Vec::new();
            for _ in 0..(x % 3 + 1) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let p = pool[(x % pool.len() as u64) as usize];
                if tree.remove(p).is_none() {
                    tree.extend(remote(&[p]));
                }
                changed.push(p);
            }
            // Reported more than once and in any order, or with paths that did not change.
            changed.push(pool[(x % 5) as usize]);
            changed.reverse();
            names.update(&tree, changed.iter().copied());
            assert_eq!(names, RemoteNames::of(&tree), "{tree:?}");
            // And its answers are the tree's, worked out the plain way.
            for p in pool {
                let same = |a: &str| tree.keys().rfind(|q| key(q) == key(a));
                let plain = ancestors(p)
                    .find(|a| same(a).is_some())
                    .or_else(|| {
                        let below = format!("{}/", key(p));
                        tree.keys().any(|q| key(q).starts_with(&below)).then_some(p)
                    })
                    .or_else(|| same(p).filter(|q| *q != p).map(|_| p));
                assert_eq!(names.clash_at(p, |_| false), plain, "{p} in {tree:?}");
            }
        }
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
