//! The synced tree, kept as its difference from a remote tree: for a settled file the last
//! synced state *is* the server's (same id, revision and hash), so a folder at rest needs
//! almost no memory for it — at 100,000 files a tree of its own was ~23 MiB (decision 0053).
//!
//! [`SyncedTree`] reads like the map it replaces (sorted paths → entries). A holder of both
//! trees (the client's index) keeps a [`SyncedDiff`], tells it each change of the remote tree
//! before making it ([`SyncedDiff::base_changes`]), and hands out views
//! ([`SyncedDiff::view`]); a tree built on its own (tests, a filtered copy) has an empty base.

use std::cmp::Ordering;
use std::collections::{BTreeMap, btree_map};
use std::fmt;
use std::iter::Peekable;
use std::sync::Arc;

use crate::{RemoteFile, RemoteTree, SyncedFile};

/// Where a synced tree differs from a remote tree (its *base*): paths with another entry, or
/// with none; and how many entries the synced tree has.
#[derive(Debug, Clone, Default)]
pub struct SyncedDiff {
    differs: Arc<BTreeMap<String, Option<SyncedFile>>>,
    len: usize,
}

/// A synced tree: `base`'s entries, except where `diff` says otherwise.
#[derive(Clone, Default)]
pub struct SyncedTree {
    base: Arc<RemoteTree>,
    diff: SyncedDiff,
}

/// Builds a [`SyncedDiff`] from the synced entries in increasing path order (as an index
/// yields them), against `base`, in one walk: no second copy of the tree on the way.
pub struct DiffBuilder<'b> {
    base: Peekable<btree_map::Iter<'b, String, RemoteFile>>,
    differs: BTreeMap<String, Option<SyncedFile>>,
    len: usize,
    last: Option<String>,
}

/// The entries were not given in increasing path order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("synced entries out of order at {0:?}")]
pub struct OutOfOrder(pub String);

impl<'b> DiffBuilder<'b> {
    pub fn new(base: &'b RemoteTree) -> Self {
        DiffBuilder {
            base: base.iter().peekable(),
            differs: BTreeMap::new(),
            len: 0,
            last: None,
        }
    }

    /// The next synced entry; paths must increase.
    pub fn push(&mut self, path: String, file: SyncedFile) -> Result<(), OutOfOrder> {
        if self.last.as_ref().is_some_and(|last| *last >= path) {
            return Err(OutOfOrder(path));
        }
        // Base paths before this one have no synced entry.
        while let Some((p, _)) = self.base.next_if(|(p, _)| p.as_str() < path.as_str()) {
            self.differs.insert(p.clone(), None);
        }
        let same = self
            .base
            .next_if(|(p, _)| **p == path)
            .is_some_and(|(_, b)| *b == file);
        if !same {
            self.differs.insert(path.clone(), Some(file));
        }
        self.len += 1;
        self.last = Some(path);
        Ok(())
    }

    pub fn finish(mut self) -> SyncedDiff {
        for (p, _) in self.base.by_ref() {
            self.differs.insert(p.clone(), None);
        }
        SyncedDiff {
            differs: Arc::new(self.differs),
            len: self.len,
        }
    }
}

impl SyncedDiff {
    /// How many entries the synced tree has.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many paths differ from the base (what this holds in memory).
    pub fn differing(&self) -> usize {
        self.differs.len()
    }

    /// The synced entry of `path`, over `base`.
    pub fn get<'a>(&'a self, base: &'a RemoteTree, path: &str) -> Option<&'a SyncedFile> {
        match self.differs.get(path) {
            Some(entry) => entry.as_ref(),
            None => base.get(path),
        }
    }

    /// Sets `path`'s synced entry (`None`: removes it), over `base`; returns the one it had.
    pub fn set(
        &mut self,
        base: &RemoteTree,
        path: &str,
        entry: Option<&SyncedFile>,
    ) -> Option<SyncedFile> {
        let was = self.get(base, path).cloned();
        if was.as_ref() == entry {
            return was;
        }
        let differs = Arc::make_mut(&mut self.differs);
        if base.get(path) == entry {
            differs.remove(path);
        } else {
            differs.insert(path.to_owned(), entry.cloned());
        }
        match (&was, entry) {
            (None, Some(_)) => self.len += 1,
            (Some(_), None) => self.len -= 1,
            _ => {}
        }
        was
    }

    /// The base's entry at `path` goes from `old` to `new`: called *before* the base changes,
    /// so the synced entry stays what it was.
    pub fn base_changes(&mut self, path: &str, old: Option<&RemoteFile>, new: Option<&RemoteFile>) {
        if old == new {
            return;
        }
        match self.differs.get(path) {
            // It was the base's: it keeps the old one.
            None => {
                Arc::make_mut(&mut self.differs).insert(path.to_owned(), old.cloned());
            }
            // It differed, and now it is the base's.
            Some(entry) if entry.as_ref() == new => {
                Arc::make_mut(&mut self.differs).remove(path);
            }
            Some(_) => {}
        }
    }

    /// The synced tree over `base` (which must be the tree this diff follows).
    pub fn view(&self, base: Arc<RemoteTree>) -> SyncedTree {
        SyncedTree {
            base,
            diff: self.clone(),
        }
    }
}

impl SyncedTree {
    pub fn new() -> Self {
        SyncedTree::default()
    }

    pub fn len(&self) -> usize {
        self.diff.len
    }

    pub fn is_empty(&self) -> bool {
        self.diff.len == 0
    }

    pub fn get(&self, path: &str) -> Option<&SyncedFile> {
        self.diff.get(&self.base, path)
    }

    pub fn get_key_value(&self, path: &str) -> Option<(&String, &SyncedFile)> {
        match self.diff.differs.get_key_value(path) {
            Some((k, Some(v))) => Some((k, v)),
            Some((_, None)) => None,
            None => self.base.get_key_value(path),
        }
    }

    pub fn contains_key(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    /// The entries in path order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            base: self.base.iter().peekable(),
            differs: self.diff.differs.iter().peekable(),
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.iter().map(|(k, _)| k)
    }

    /// Sets `path`'s entry; returns the one it had.
    pub fn insert(&mut self, path: String, file: SyncedFile) -> Option<SyncedFile> {
        self.diff.set(&self.base, &path, Some(&file))
    }

    /// Removes `path`'s entry; returns it.
    pub fn remove(&mut self, path: &str) -> Option<SyncedFile> {
        self.diff.set(&self.base, path, None)
    }

    /// Keeps the entries `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&String, &SyncedFile) -> bool) {
        let gone: Vec<String> = self
            .iter()
            .filter(|(p, f)| !keep(p, f))
            .map(|(p, _)| p.clone())
            .collect();
        for p in gone {
            self.remove(&p);
        }
    }
}

impl std::ops::Index<&str> for SyncedTree {
    type Output = SyncedFile;

    fn index(&self, path: &str) -> &SyncedFile {
        self.get(path).expect("no synced entry at this path")
    }
}

impl PartialEq for SyncedTree {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for SyncedTree {}

impl fmt::Debug for SyncedTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl FromIterator<(String, SyncedFile)> for SyncedTree {
    fn from_iter<I: IntoIterator<Item = (String, SyncedFile)>>(entries: I) -> Self {
        let mut tree = SyncedTree::new();
        for (p, f) in entries {
            tree.insert(p, f);
        }
        tree
    }
}

impl<const N: usize> From<[(String, SyncedFile); N]> for SyncedTree {
    fn from(entries: [(String, SyncedFile); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a SyncedTree {
    type Item = (&'a String, &'a SyncedFile);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// A synced tree's entries in path order: the base's and the difference's, merged.
pub struct Iter<'a> {
    base: Peekable<btree_map::Iter<'a, String, RemoteFile>>,
    differs: Peekable<btree_map::Iter<'a, String, Option<SyncedFile>>>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a String, &'a SyncedFile);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.base.peek(), self.differs.peek()) {
                (None, None) => return None,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((b, _)), Some((d, _))) => b.cmp(d),
            };
            if order == Ordering::Less {
                return self.base.next();
            }
            if order == Ordering::Equal {
                self.base.next(); // the difference decides
            }
            if let Some((p, Some(f))) = self.differs.next() {
                return Some((p, f));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;

    fn file(id: u8, rev: i64) -> RemoteFile {
        RemoteFile {
            file_id: format!("f{id}").into(),
            rev,
            sha256: format!("h{rev}").as_str().into(),
        }
    }

    /// A synced tree following a remote tree that changes under it reads, after every step,
    /// as the plain map kept beside it; a settled path costs nothing; building the same tree
    /// from sorted entries gives the same difference.
    #[test]
    fn a_view_over_a_changing_base_reads_as_the_plain_map() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut base: RemoteTree = BTreeMap::new();
        let mut diff = SyncedDiff::default();
        let mut want: BTreeMap<String, SyncedFile> = BTreeMap::new();
        let mut differed = 0;
        for step in 0..5_000 {
            let path = format!("p{}", rng.gen_range(0..12));
            let value =
                (rng.gen_range(0..4) != 0).then(|| file(rng.gen_range(0..3), rng.gen_range(1..4)));
            if rng.gen_bool(0.5) {
                diff.base_changes(&path, base.get(&path), value.as_ref());
                match value {
                    Some(v) => base.insert(path, v),
                    None => base.remove(&path),
                };
            } else {
                let was = diff.set(&base, &path, value.as_ref());
                assert_eq!(was, want.get(&path).cloned(), "step {step}");
                match value {
                    Some(v) => want.insert(path, v),
                    None => want.remove(&path),
                };
            }
            let view = diff.view(Arc::new(base.clone()));
            let plain: SyncedTree = want.clone().into_iter().collect();
            assert_eq!(view, plain, "step {step}");
            assert_eq!(view.len(), want.len(), "step {step}");
            assert!(
                view.iter()
                    .map(|(p, f)| (p.clone(), f.clone()))
                    .eq(want.clone()),
                "step {step}"
            );
            for p in (0..12).map(|i| format!("p{i}")) {
                assert_eq!(view.get(&p), want.get(&p), "step {step} {p}");
                assert_eq!(
                    view.get_key_value(&p),
                    want.get_key_value(&p),
                    "step {step} {p}"
                );
            }
            // Only the paths where the two trees differ are held.
            let apart = (0..12)
                .map(|i| format!("p{i}"))
                .filter(|p| base.get(p) != want.get(p))
                .count();
            assert_eq!(diff.differing(), apart, "step {step}");
            differed += apart;
            let mut built = DiffBuilder::new(&base);
            for (p, f) in &want {
                built.push(p.clone(), f.clone()).unwrap();
            }
            let built = built.finish();
            assert_eq!(built.differs, diff.differs, "step {step}");
            assert_eq!(built.len, diff.len, "step {step}");
        }
        assert!(
            differed > 5_000,
            "the trees differed too rarely to test much: {differed}"
        );
    }

    #[test]
    fn entries_out_of_order_are_refused() {
        let base = RemoteTree::new();
        let mut b = DiffBuilder::new(&base);
        b.push("b".into(), file(1, 1)).unwrap();
        assert_eq!(b.push("a".into(), file(1, 1)), Err(OutOfOrder("a".into())));
        assert_eq!(b.push("b".into(), file(1, 1)), Err(OutOfOrder("b".into())));
    }

    /// The map operations of a tree without a base.
    #[test]
    fn a_tree_of_its_own_is_a_map() {
        let mut t =
            SyncedTree::from([("b".to_string(), file(1, 1)), ("a".to_string(), file(2, 1))]);
        assert_eq!(t.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(t.insert("a".into(), file(2, 2)), Some(file(2, 1)));
        assert_eq!(t["a"], file(2, 2));
        t.retain(|p, _| p != "a");
        assert_eq!(t.len(), 1);
        assert_eq!(t.remove("b"), Some(file(1, 1)));
        assert!(t.is_empty() && t.iter().next().is_none());
    }
}
