//! The local tree: a walk of the sync folder with a (size, mtime)-keyed hash cache.
//!
//! Policy: regular files only. Symbolic links are not followed and not synced (following them
//! could leave the folder or loop); special files are skipped. Names the server would reject
//! are reported and skipped, never renamed behind the user's back.
//!
//! Unicode: the tree names every file by its NFC spelling, whatever spelling the disk returns
//! (macOS's HFS+ returns NFD; files copied from a Mac keep it). A name whose disk spelling
//! differs is the same file, not a delete plus a create; [`Scan::disk_paths`] maps it back to
//! the disk so the engine acts on the real file. Two names on one disk that are one name in NFC
//! are reported, and the second one's synced file is held as it was (never read as deleted).
//!
//! Ignore rules: the built-in list ([`ignored`]) plus `.syncsphereignore` at the top of the
//! folder, in gitignore syntax (`*.log`, `build/`, `!keep.log`, `/only-at-top`). The ignore file
//! itself is synced, so every device of the account applies the same rules. An ignored path is
//! invisible to this device's sync in both directions: not uploaded, not downloaded, and never
//! deleted on either side because it became ignored.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use syncsphere_protocol::normalize_path;
use syncsphere_sync_core::{LocalFile, LocalTree};
use unicode_normalization::UnicodeNormalization;

use crate::local_fs::{Kind, LocalFs, Meta};

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

/// Name of the ignore file at the top of the sync folder.
pub(crate) const IGNORE_FILE: &str = ".syncsphereignore";

/// Whether the filesystem holding `folder` ignores case in names (macOS and Windows by
/// default): a probe file in the client's state folder is looked up under another spelling.
pub(crate) fn folder_ignores_case(fs: &dyn LocalFs, folder: &Path) -> std::io::Result<bool> {
    let dir = folder.join(STATE_DIR);
    fs.create_dir_all(&dir)?;
    let probe = dir.join("case-probe");
    fs.write_durably(&probe, b"")?;
    let folded = fs.symlink_metadata(&dir.join("CASE-PROBE")).is_ok();
    fs.remove_file(&probe)?;
    Ok(folded)
}

/// Keeps every folder's listing; a file whose size and mtime are what its folder's last listing
/// saw is not read again (the listings are the hash cache: no second copy of every path and hash).
#[derive(Default)]
pub(crate) struct Scanner {
    rules: IgnoreRules,
    /// The disk ignores case: two names in a folder that differ only in case and Unicode form
    /// (`Résumé` in NFC beside `re\u{301}sume\u{301}` in NFD, which such a disk keeps apart when
    /// it does not normalise) are one name to the plan, so they are twins here too.
    pub(crate) fold_case: bool,
    /// Every folder's listing from the last scan, by its prefix as the disk spells it
    /// (`""` for the root, else ending in `/`): what [`Scanner::rescan`] keeps.
    listed: std::collections::BTreeMap<String, Listed>,
    /// Match key ([`Scanner::match_key`]) of a folder's prefix → its disk prefixes.
    by_key: HashMap<String, Vec<String>>,
    /// Listings replaced or dropped since the last assembly (a whole scan: all of them), by
    /// disk prefix: what a listing of the same folder in this scan takes unchanged files'
    /// hashes from. Emptied at assembly, so a file gone from its folder is forgotten.
    previous: std::collections::BTreeMap<String, Listed>,
    /// Every listing's files, kept up to date as listings come and go: the tree a scan
    /// returns, shared with it (a listing changed while the engine still holds a scan's tree
    /// copies it first).
    tree: Arc<LocalTree>,
    /// A name was in two listings at once (never seen; the assembly then rebuilds the tree
    /// from the listings in order, as before it was kept).
    tree_stale: bool,
    /// Names whose entry in the tree may have changed since [`Scanner::take_touched`] was last
    /// called; `None`: any may have (a whole scan, a rebuilt tree).
    touched: Option<Vec<String>>,
}

/// One folder as the last scan listed it.
#[derive(Debug, Default)]
struct Listed {
    /// Its path as the tree names it (NFC), `""` or ending in `/`.
    prefix: String,
    /// Its path as the disk spells it.
    disk_prefix: String,
    /// Another spelling of it is the folder that counts: its files are only looked at.
    shadow: bool,
    /// Path, what was seen, and the modification time it was hashed at.
    files: Vec<(String, LocalFile, i128)>,
    skipped: Vec<(String, String)>,
    unreadable: Vec<String>,
    disk_paths: Vec<(String, String)>,
    shadowed: Vec<String>,
    /// The folders in it: (prefix, disk prefix, shadow).
    subdirs: Vec<(String, String, bool)>,
    /// Two of its names are one name to this disk.
    doubled: bool,
}

impl Listed {
    /// A folder that exists but could not be listed: its content is unknown, not gone.
    fn unreadable(prefix: String, disk_prefix: String, shadow: bool, e: &std::io::Error) -> Self {
        Listed {
            skipped: vec![(prefix.clone(), format!("cannot read folder: {e}"))],
            unreadable: vec![prefix.clone()],
            prefix,
            disk_prefix,
            shadow,
            ..Listed::default()
        }
    }
}

/// The prefix of the folder holding `path` (no trailing `/`): `a/b/c` → `a/b/`, `c` → `""`.
fn parent_prefix(path: &str) -> String {
    path.rfind('/')
        .map_or_else(String::new, |i| path[..=i].to_owned())
}

/// `.syncsphereignore` at the top of a folder as last read; re-read only when its size or
/// mtime changed. Shared by the scanner and the file manager's emblems (`file_state`).
#[derive(Default)]
pub(crate) struct IgnoreRules {
    loaded: Option<(Stamp, ignore::gitignore::Gitignore)>,
}

impl IgnoreRules {
    /// (Re)reads the rules of `root` when the file changed; returns what did not parse (the
    /// rules that did still apply).
    pub(crate) fn refresh(&mut self, fs: &dyn LocalFs, root: &Path) -> Vec<String> {
        let path = root.join(IGNORE_FILE);
        let Ok(meta) = fs.metadata(&path) else {
            self.loaded = None;
            return Vec::new();
        };
        let stamp = stamp_of(&meta);
        if self.loaded.as_ref().is_some_and(|(s, _)| *s == stamp) {
            return Vec::new();
        }
        let mut problems = Vec::new();
        let mut builder = ignore::gitignore::GitignoreBuilder::new(root);
        match fs.read_to_string(&path) {
            Ok(text) => {
                for line in text.lines() {
                    if let Err(e) = builder.add_line(Some(path.clone()), line) {
                        problems.push(format!("ignore rule not understood: {e}"));
                    }
                }
            }
            Err(e) => problems.push(format!("ignore rules not readable: {e}")),
        }
        match builder.build() {
            Ok(rules) => self.loaded = Some((stamp, rules)),
            Err(e) => {
                problems.push(format!("ignore rules not understood: {e}"));
                self.loaded = None;
            }
        }
        problems
    }

    /// Size and mtime of the rules as last read (`None`: no rules).
    fn stamp(&self) -> Option<Stamp> {
        self.loaded.as_ref().map(|(s, _)| s.clone())
    }

    /// Whether the rules exclude `rel` (a file, or a folder when `is_dir`).
    pub(crate) fn is_ignored(&self, rel: &str, is_dir: bool) -> bool {
        self.loaded.as_ref().is_some_and(|(_, rules)| {
            rules
                .matched_path_or_any_parents(Path::new(rel), is_dir)
                .is_ignore()
        })
    }
}

/// What a scan found.
#[derive(Debug)]
pub(crate) struct Scan {
    pub tree: Arc<LocalTree>,
    /// Paths that cannot be synced, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Files (and folders, ending in `/`) that exist but could not be read this time
    /// (permission denied, locked): their content is unknown, not gone.
    pub unreadable: Vec<String>,
    /// Files and folders whose disk spelling differs from their NFC name: NFC path → the path
    /// as the disk spells it. Usually empty.
    pub disk_paths: HashMap<String, String>,
}

/// Where `path` (NFC, as planned) is on disk: itself, or respelled where it or a folder above
/// it has another spelling on disk (a new file in a folder the disk spells in NFD goes into
/// that folder, not into a second folder that looks the same). On a case-insensitive disk
/// (`fold`: `disk_paths` keyed by [`fold_key`]) the planned path may differ in case from the
/// scanned one (the server's spelling), and is looked up folded.
pub(crate) fn disk_path<'a>(
    disk_paths: &HashMap<String, String>,
    path: &'a str,
    fold: bool,
) -> std::borrow::Cow<'a, str> {
    if disk_paths.is_empty() {
        return path.into();
    }
    let ends = std::iter::once(path.len()).chain(path.rmatch_indices('/').map(|(i, _)| i));
    for end in ends {
        let (head, rest) = path.split_at(end);
        if fold {
            if let Some(d) = disk_paths.get(&fold_key(head)) {
                return format!("{}{rest}", respell(d, head)).into();
            }
        } else if let Some(d) = disk_paths.get(head) {
            return format!("{d}{rest}").into();
        }
    }
    path.into()
}

/// `planned` (NFC) in the normalisation form `disk` (the same name, up to case) has on disk,
/// component by component, in `planned`'s case: what a case-only rename must name, and what
/// finds the file on a disk that folds case but keeps NFC and NFD apart (NTFS).
fn respell(disk: &str, planned: &str) -> String {
    if disk.split('/').count() != planned.split('/').count() {
        return planned.to_owned();
    }
    disk.split('/')
        .zip(planned.split('/'))
        .map(|(d, p)| {
            if d.nfc().eq(p.chars()) {
                d.to_owned()
            } else if unicode_normalization::is_nfc(d) {
                p.to_owned()
            } else {
                p.nfd().collect()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The key of [`Scan::disk_paths`] on a case-insensitive disk.
pub(crate) fn fold_key(path: &str) -> String {
    path.to_lowercase()
}

fn stamp_of(meta: &Meta) -> Stamp {
    Stamp {
        size: meta.len,
        mtime_ns: meta.mtime_ns,
    }
}

impl Scanner {
    /// (Re)reads `.syncsphereignore` when it changed. A rule that does not parse is reported
    /// and the others still apply.
    fn load_rules(&mut self, fs: &dyn LocalFs, root: &Path, skipped: &mut Vec<(String, String)>) {
        for problem in self.rules.refresh(fs, root) {
            skipped.push((IGNORE_FILE.into(), problem));
        }
    }

    /// Whether `.syncsphereignore` excludes `rel` (a file, or a folder when `is_dir`).
    pub(crate) fn is_ignored(&self, rel: &str, is_dir: bool) -> bool {
        self.rules.is_ignored(rel, is_dir)
    }

    /// Walks `root` whole (blocking: call from a blocking thread), and remembers every folder's
    /// listing for [`Scanner::rescan`].
    pub(crate) fn scan(&mut self, fs: &dyn LocalFs, root: &Path) -> std::io::Result<Scan> {
        let scan = self.scan_whole(fs, root);
        self.forget_on_error(scan)
    }

    /// After an error the listings are half old, half new: the next scan is a full one.
    fn forget_on_error(&mut self, scan: std::io::Result<Scan>) -> std::io::Result<Scan> {
        if scan.is_err() {
            self.forget_listings();
        }
        scan
    }

    fn forget_listings(&mut self) {
        for (dp, l) in std::mem::take(&mut self.listed) {
            self.previous.insert(dp, l);
        }
        self.by_key.clear();
        self.tree = Arc::default();
        self.tree_stale = false;
        self.touched = None;
    }

    /// The names whose entry in the tree may have changed since the last call (a superset),
    /// or `None` when any may have.
    pub(crate) fn take_touched(&mut self) -> Option<Vec<String>> {
        self.touched.replace(Vec::new())
    }

    fn touch<'a>(&mut self, names: impl Iterator<Item = &'a String>) {
        if let Some(t) = &mut self.touched {
            t.extend(names.cloned());
        }
    }

    fn scan_whole(&mut self, fs: &dyn LocalFs, root: &Path) -> std::io::Result<Scan> {
        let mut rule_problems = Vec::new();
        self.load_rules(fs, root, &mut rule_problems);
        self.forget_listings();
        self.scan_subtree(fs, root, String::new(), String::new(), false)?;
        Ok(self.assemble(rule_problems))
    }

    /// Looks again at only what `dirty` names (paths relative to `root`, in any spelling):
    /// each name's folder is listed again (a folder that is new or changed is walked whole;
    /// the unchanged folders below keep their last listing), and the tree is assembled from
    /// every folder's listing. A full [`Scanner::scan`] when there is no earlier one, or when
    /// the ignore rules changed. Blocking, like `scan`.
    pub(crate) fn rescan(
        &mut self,
        fs: &dyn LocalFs,
        root: &Path,
        dirty: &std::collections::BTreeSet<String>,
    ) -> std::io::Result<Scan> {
        let scan = self.rescan_marked(fs, root, dirty);
        self.forget_on_error(scan)
    }

    fn rescan_marked(
        &mut self,
        fs: &dyn LocalFs,
        root: &Path,
        dirty: &std::collections::BTreeSet<String>,
    ) -> std::io::Result<Scan> {
        let before = self.rules.stamp();
        let mut rule_problems = Vec::new();
        self.load_rules(fs, root, &mut rule_problems);
        if self.listed.is_empty() || self.rules.stamp() != before {
            self.forget_listings();
            self.scan_subtree(fs, root, String::new(), String::new(), false)?;
            return Ok(self.assemble(rule_problems));
        }
        // Folders to list again, by disk prefix, and folders to walk whole.
        let mut relist: Vec<String> = Vec::new();
        let mut fresh: HashSet<String> = HashSet::new();
        for path in dirty {
            let path = path.trim_end_matches('/');
            if path.is_empty() {
                continue;
            }
            let known_dirs = self.known(&format!("{path}/"));
            // A file in a folder already listed: looked at alone (a save into a folder of
            // thousands of files costs one `stat`, not a listing), where nothing about the
            // folder's other names can change with it.
            if known_dirs.is_empty() && self.look_at_file(fs, root, path) {
                continue;
            }
            for dp in known_dirs {
                fresh.insert(dp);
            }
            // The nearest folder above that the last scan listed (the root always is).
            let mut parent = parent_prefix(path);
            loop {
                let known = self.known(&parent);
                if !known.is_empty() {
                    relist.extend(known);
                    break;
                }
                if parent.is_empty() {
                    relist.push(String::new());
                    break;
                }
                parent = parent_prefix(parent.trim_end_matches('/'));
            }
        }
        // What could not be read last time is tried again (usually nothing; permissions may
        // change without an event a watcher sees).
        relist.extend(
            self.listed
                .values()
                .filter(|l| !l.unreadable.is_empty())
                .map(|l| l.disk_prefix.clone()),
        );
        // A folder with a twin in its parent (two names the disk holds as one): which of
        // them counts depends on both, so the parent is listed again too.
        let twins: Vec<String> = relist
            .iter()
            .chain(fresh.iter())
            .filter(|dp| !dp.is_empty())
            .map(|dp| parent_prefix(dp.trim_end_matches('/')))
            .filter(|pp| self.listed.get(pp).is_some_and(|l| l.doubled))
            .collect();
        relist.extend(twins);
        // Shallow first: a folder walked whole as part of its parent is not listed twice.
        relist.sort_by_key(|dp| (dp.matches('/').count(), dp.clone()));
        relist.dedup();
        let mut done: HashSet<String> = HashSet::new();
        let mut queue: std::collections::VecDeque<String> = relist.into();
        while let Some(dp) = queue.pop_front() {
            if done.contains(&dp) {
                continue;
            }
            let Some(old) = self.listed.get(&dp) else {
                continue; // dropped with a vanished folder above it
            };
            let (prefix, shadow) = (old.prefix.clone(), old.shadow);
            let listed = match self.list_dir(fs, root, &prefix, &dp, shadow) {
                Ok(l) => l,
                Err(e) if dp.is_empty() => return Err(e),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) =>
                {
                    // Gone (or a file now): its parent's listing drops it.
                    queue.push_back(parent_prefix(dp.trim_end_matches('/')));
                    continue;
                }
                Err(e) => Listed::unreadable(prefix, dp.clone(), shadow, &e),
            };
            let old = self.remove_listing(&dp).expect("listed above");
            let now: HashSet<&str> = listed.subdirs.iter().map(|s| s.1.as_str()).collect();
            for gone in old.subdirs.iter().filter(|s| !now.contains(s.1.as_str())) {
                self.drop_subtree(&gone.1);
            }
            let subdirs = listed.subdirs.clone();
            self.insert_listing(listed);
            done.insert(dp);
            for (cp, cdp, cshadow) in subdirs {
                let same = self
                    .listed
                    .get(&cdp)
                    .is_some_and(|l| l.prefix == cp && l.shadow == cshadow);
                if same && !fresh.contains(&cdp) {
                    continue; // unchanged below, as far as anyone said
                }
                self.drop_subtree(&cdp);
                self.scan_subtree(fs, root, cp, cdp.clone(), cshadow)?;
                done.extend(self.subtree(&cdp));
            }
        }
        Ok(self.assemble(rule_problems))
    }

    /// Brings the listing of the folder holding `path` up to date for that one name, as
    /// listing the folder again would: `false` (nothing changed) when only a listing can tell —
    /// the folder is not listed (or under several spellings), has twins, a twin itself, a
    /// shadowed or unreadable name, the name is not in NFC or has another spelling here, is a
    /// folder now or was one, the disk ignores case, or the file cannot be read.
    fn look_at_file(&mut self, fs: &dyn LocalFs, root: &Path, path: &str) -> bool {
        let (parent, name) = match path.rfind('/') {
            Some(i) => (&path[..=i], &path[i + 1..]),
            None => ("", path),
        };
        if self.fold_case || name.is_empty() || !unicode_normalization::is_nfc(name) {
            return false;
        }
        let dp = match self.known(parent).as_slice() {
            [dp] => dp.clone(),
            _ => return false,
        };
        let Some(l) = self.listed.get(&dp) else {
            return false;
        };
        let grandparent = parent_prefix(dp.trim_end_matches('/'));
        let rel = format!("{}{name}", l.prefix);
        let dir_prefix = format!("{rel}/");
        if l.doubled
            || l.shadow
            || !l.unreadable.is_empty()
            || !l.shadowed.is_empty()
            || l.disk_paths.iter().any(|(r, _)| *r == rel)
            || l.subdirs.iter().any(|(p, _, _)| *p == dir_prefix)
            || (!dp.is_empty() && self.listed.get(&grandparent).is_some_and(|g| g.doubled))
        {
            return false;
        }
        let full = root.join(&dp).join(name);
        let now: Option<(LocalFile, i128)> = if ignored(name) {
            None
        } else {
            match fs.symlink_metadata(&full) {
                // Gone, in a folder still there (else the folder's listing goes, by a relist).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    match fs.symlink_metadata(&root.join(&dp)) {
                        Ok(m) if m.kind == Kind::Dir => None,
                        _ => return false,
                    }
                }
                Err(_) => return false,
                Ok(m) if m.kind == Kind::Dir => return false,
                Ok(m) if m.kind == Kind::Other => None,
                Ok(_) if self.is_ignored(&rel, false) => None,
                Ok(_) => {
                    if normalize_path(&rel).ok().as_deref() != Some(rel.as_str()) {
                        return false; // a name the server refuses: the listing says why
                    }
                    let seen = l.files.iter().find(|(p, _, _)| *p == rel);
                    match hash(fs, &full, seen.map(|(_, f, t)| (f, *t))) {
                        Ok(file) => Some(file),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                        Err(_) => return false,
                    }
                }
            }
        };
        let l = self.listed.get_mut(&dp).expect("looked up above");
        let was = l.files.iter().position(|(p, _, _)| *p == rel);
        l.skipped.retain(|(p, _)| *p != rel);
        let now = now.map(|(file, mtime)| {
            match was {
                Some(i) => l.files[i] = (rel.clone(), file.clone(), mtime),
                None => l.files.push((rel.clone(), file.clone(), mtime)),
            }
            file
        });
        if let (Some(i), None) = (was, &now) {
            l.files.remove(i);
        }
        if !self.tree_stale {
            let tree = Arc::make_mut(&mut self.tree);
            match now {
                Some(file) => {
                    // Already in the tree from another listing: rebuilt at assembly.
                    let elsewhere = tree.insert(rel.clone(), file).is_some() && was.is_none();
                    self.tree_stale |= elsewhere;
                }
                None if was.is_some() => {
                    tree.remove(&rel);
                }
                None => {}
            }
        }
        self.touch(std::iter::once(&rel));
        true
    }

    /// The disk prefixes of the folders last listed under `prefix`'s match key (several when
    /// twins share it).
    fn known(&self, prefix: &str) -> Vec<String> {
        self.by_key
            .get(&self.match_key(prefix))
            .cloned()
            .unwrap_or_default()
    }

    /// How names are compared with the watcher's and the engine's marks: NFC, and folded where
    /// the disk ignores case (the engine names paths as planned, the watcher as on disk).
    fn match_key(&self, path: &str) -> String {
        let nfc: String = path.nfc().collect();
        if self.fold_case { fold_key(&nfc) } else { nfc }
    }

    fn insert_listing(&mut self, listed: Listed) {
        let key = self.match_key(&listed.disk_prefix);
        let dps = self.by_key.entry(key).or_default();
        if !dps.contains(&listed.disk_prefix) {
            dps.push(listed.disk_prefix.clone());
        }
        if let Some(old) = self.listed.remove(&listed.disk_prefix) {
            self.untrack(&old);
        }
        if !self.tree_stale {
            let tree = Arc::make_mut(&mut self.tree);
            for (p, f, _) in &listed.files {
                if tree.insert(p.clone(), f.clone()).is_some() {
                    self.tree_stale = true;
                }
            }
        }
        self.touch(listed.files.iter().map(|(p, _, _)| p));
        self.listed.insert(listed.disk_prefix.clone(), listed);
    }

    /// Takes a listing's files out of the tree.
    fn untrack(&mut self, old: &Listed) {
        self.touch(old.files.iter().map(|(p, _, _)| p));
        if !self.tree_stale && !old.files.is_empty() {
            let tree = Arc::make_mut(&mut self.tree);
            for (p, _, _) in &old.files {
                tree.remove(p);
            }
        }
    }

    fn remove_listing(&mut self, dp: &str) -> Option<Listed> {
        let listed = self.listed.remove(dp)?;
        self.untrack(&listed);
        let key = self.match_key(dp);
        if let Some(dps) = self.by_key.get_mut(&key) {
            dps.retain(|d| d != dp);
            if dps.is_empty() {
                self.by_key.remove(&key);
            }
        }
        Some(listed)
    }

    /// `dp` and every folder listed below it.
    fn subtree(&self, dp: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dp.to_owned()];
        while let Some(d) = stack.pop() {
            if let Some(l) = self.listed.get(&d) {
                stack.extend(l.subdirs.iter().map(|s| s.1.clone()));
                out.push(d);
            }
        }
        out
    }

    fn drop_subtree(&mut self, dp: &str) {
        for d in self.subtree(dp) {
            if let Some(l) = self.remove_listing(&d) {
                self.previous.insert(d, l); // its files' hashes, should it be listed again
            }
        }
    }

    /// Lists the folder at `disk_prefix` and every folder below it.
    fn scan_subtree(
        &mut self,
        fs: &dyn LocalFs,
        root: &Path,
        prefix: String,
        disk_prefix: String,
        shadow: bool,
    ) -> std::io::Result<()> {
        let mut stack = vec![(prefix, disk_prefix, shadow)];
        while let Some((prefix, dp, shadow)) = stack.pop() {
            let listed = match self.list_dir(fs, root, &prefix, &dp, shadow) {
                Ok(l) => l,
                Err(e) if dp.is_empty() => return Err(e),
                Err(e) => Listed::unreadable(prefix, dp, shadow, &e),
            };
            stack.extend(listed.subdirs.iter().cloned());
            self.insert_listing(listed);
        }
        Ok(())
    }

    /// The tree (and what could not be synced) from every folder's listing. The listings
    /// replaced in this scan are let go: a file gone from its folder is read again should it
    /// come back with the same size and modification time.
    fn assemble(&mut self, rule_problems: Vec<(String, String)>) -> Scan {
        if std::mem::take(&mut self.tree_stale) {
            self.touched = None;
            let mut tree = LocalTree::new();
            for l in self.listed.values() {
                tree.extend(l.files.iter().map(|(p, f, _)| (p.clone(), f.clone())));
            }
            self.tree = Arc::new(tree);
        }
        let mut scan = Scan {
            tree: self.tree.clone(),
            skipped: rule_problems,
            unreadable: Vec::new(),
            disk_paths: HashMap::new(),
        };
        let mut shadowed: Vec<&str> = Vec::new();
        for l in self.listed.values() {
            scan.skipped.extend(l.skipped.iter().cloned());
            scan.unreadable.extend(l.unreadable.iter().cloned());
            scan.disk_paths.extend(l.disk_paths.iter().cloned());
            shadowed.extend(l.shadowed.iter().map(String::as_str));
        }
        // A shadowed file the first spelling also holds is that one's; the rest stand as synced.
        // (Folded keys only when there is something to look up.)
        let folded: HashSet<String> = if self.fold_case && !shadowed.is_empty() {
            scan.tree.keys().map(|p| fold_key(p)).collect()
        } else {
            HashSet::new()
        };
        for rel in shadowed {
            let held = if self.fold_case {
                folded.contains(&fold_key(rel))
            } else {
                scan.tree.contains_key(rel)
            };
            if !held {
                scan.unreadable.push(rel.to_owned());
            }
        }
        self.previous.clear();
        scan
    }

    /// Lists one folder: its files (hashed, through the cache), what cannot be synced, and
    /// the folders below it. An error only when the folder itself cannot be read.
    fn list_dir(
        &self,
        fs: &dyn LocalFs,
        root: &Path,
        prefix: &str,
        disk_prefix: &str,
        shadow: bool,
    ) -> std::io::Result<Listed> {
        let dir = root.join(disk_prefix.trim_end_matches('/'));
        let mut entries = fs.read_dir(&dir)?;
        let mut out = Listed {
            prefix: prefix.to_owned(),
            disk_prefix: disk_prefix.to_owned(),
            shadow,
            ..Listed::default()
        };
        // What the last listing of this folder saw (this scan's hash cache).
        let before: HashMap<&str, (&LocalFile, i128)> = self
            .listed
            .get(disk_prefix)
            .or_else(|| self.previous.get(disk_prefix))
            .map(|l| {
                l.files
                    .iter()
                    .map(|(p, f, t)| (p.as_str(), (f, *t)))
                    .collect()
            })
            .unwrap_or_default();
        // Names already in NFC first: of two spellings of one name, that one is the file.
        // (Then by name, so every file system's listing order gives the same scan.)
        entries.sort_by_cached_key(|e| {
            (
                e.name
                    .to_str()
                    .is_none_or(|n| !unicode_normalization::is_nfc(n)),
                e.name.clone(),
            )
        });
        // Two spellings of one folder name where one is empty: the empty one is not a rival
        // (an emptied folder left behind must not hide the other one's files).
        let fold_case = self.fold_case;
        let twin_key = |name: &str| -> String {
            let nfc: String = name.nfc().collect();
            if fold_case { fold_key(&nfc) } else { nfc }
        };
        let mut seen: HashMap<String, usize> = HashMap::new();
        for e in &entries {
            if let Some(n) = e.name.to_str() {
                *seen.entry(twin_key(n)).or_default() += 1;
            }
        }
        if seen.values().any(|&n| n > 1) {
            out.doubled = true;
            entries.retain(|e| {
                let doubled = e.name.to_str().is_some_and(|n| seen[&twin_key(n)] > 1);
                !(doubled
                    && e.kind == Kind::Dir
                    && fs.read_dir(&dir.join(&e.name)).is_ok_and(|l| l.is_empty()))
            });
        }
        // Each name here as the disk compares it → the first entry's (NFC) name.
        let mut names_here: HashMap<String, String> = HashMap::new();
        for entry in entries {
            let Some(disk_name) = entry.name.to_str().map(str::to_owned) else {
                out.skipped.push((
                    format!("{prefix}{}", entry.name.to_string_lossy()),
                    "name is not valid UTF-8".into(),
                ));
                continue;
            };
            if ignored(&disk_name) {
                continue;
            }
            let name: String = disk_name.nfc().collect();
            let rel = format!("{prefix}{name}");
            let disk_rel = format!("{disk_prefix}{disk_name}");
            let is_dir = entry.kind == Kind::Dir;
            if self.is_ignored(&rel, is_dir) {
                continue;
            }
            if entry.kind == Kind::Other {
                continue; // symlinks and special files: see the module policy
            }
            let full = dir.join(&entry.name);
            let key = if fold_case {
                fold_key(&name)
            } else {
                name.clone()
            };
            let first = match names_here.entry(key) {
                std::collections::hash_map::Entry::Occupied(e) => Some(e.get().clone()),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(name.clone());
                    None
                }
            };
            let twin = first.is_some();
            if twin && !shadow {
                let message = if first.as_deref() == Some(name.as_str()) {
                    format!(
                        "another name in this folder is the same in Unicode NFC ('{rel}'); \
                         rename one of them"
                    )
                } else {
                    format!(
                        "another name in this folder differs from it only in case and \
                         Unicode form, which this disk ignores ('{rel}'); rename one of them"
                    )
                };
                out.skipped.push((disk_rel.clone(), message));
            }
            if twin || shadow {
                if is_dir {
                    out.subdirs
                        .push((format!("{rel}/"), format!("{disk_rel}/"), true));
                } else {
                    out.shadowed.push(rel);
                }
                continue;
            }
            if rel != disk_rel {
                out.disk_paths.push((rel.clone(), disk_rel.clone()));
            }
            if is_dir {
                out.subdirs
                    .push((format!("{rel}/"), format!("{disk_rel}/"), false));
                continue;
            }
            match normalize_path(&rel) {
                Ok(n) if n == rel => {}
                Ok(_) => {
                    out.skipped.push((rel, "name is not in Unicode NFC".into()));
                    continue;
                }
                Err(e) => {
                    out.disk_paths.retain(|(r, _)| *r != rel);
                    out.skipped.push((disk_rel, e.to_string()));
                    continue;
                }
            }
            let seen = before.get(rel.as_str()).copied();
            match hash(fs, &full, seen) {
                Ok((file, mtime)) => out.files.push((rel, file, mtime)),
                // Vanished between listing and hashing: it is simply not there.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    out.skipped.push((rel.clone(), format!("cannot read: {e}")));
                    out.unreadable.push(rel);
                }
            }
        }
        Ok(out)
    }
}

/// The file at `path` and the modification time it was seen at: what the last listing `seen`
/// when its size and modification time are unchanged, else read and hashed.
fn hash(
    fs: &dyn LocalFs,
    path: &Path,
    seen: Option<(&LocalFile, i128)>,
) -> std::io::Result<(LocalFile, i128)> {
    let meta = fs.metadata(path)?;
    let stamp = stamp_of(&meta);
    if let Some((file, mtime)) = seen
        && file.size == stamp.size
        && mtime == stamp.mtime_ns
    {
        return Ok((file.clone(), mtime));
    }
    let sha256 = fs.hash(path)?;
    Ok((
        LocalFile {
            sha256: sha256.into(),
            size: stamp.size,
        },
        stamp.mtime_ns,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local_fs::RealFs;

    /// A file gone in a rescan leaves the hash cache too: a new file at its name with the same
    /// size and modification time (a restore tool, a copy keeping times) is read, not taken
    /// for the old content.
    #[test]
    fn a_file_gone_in_a_rescan_is_forgotten_by_the_hash_cache() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("docs")).unwrap();
        let path = root.join("docs/a.txt");
        std::fs::write(&path, b"first").unwrap();
        let when = std::fs::metadata(&path).unwrap().modified().unwrap();
        let mut scanner = Scanner::default();
        let first = scanner.scan(&RealFs, root).unwrap().tree["docs/a.txt"].clone();
        let marks: std::collections::BTreeSet<String> = ["docs/a.txt".to_owned()].into();
        std::fs::remove_file(&path).unwrap();
        let scan = scanner.rescan(&RealFs, root, &marks).unwrap();
        assert!(!scan.tree.contains_key("docs/a.txt"));
        std::fs::write(&path, b"other").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(when)
            .unwrap();
        let again = scanner.rescan(&RealFs, root, &marks).unwrap().tree["docs/a.txt"].clone();
        assert_eq!(again.size, first.size);
        assert_ne!(again.sha256, first.sha256, "the new content was read");
    }

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

        let scan = Scanner::default().scan(&RealFs, root).unwrap();
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
    fn syncsphereignore_excludes_files_and_folders_in_gitignore_syntax() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("build/deep")).unwrap();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("build/deep/out.o"), b"x").unwrap();
        std::fs::write(root.join("src/main.rs"), b"x").unwrap();
        std::fs::write(root.join("src/debug.log"), b"x").unwrap();
        std::fs::write(root.join("keep.log"), b"x").unwrap();
        std::fs::write(root.join("top-only.txt"), b"x").unwrap();
        std::fs::write(root.join("src/top-only.txt"), b"x").unwrap();
        std::fs::write(
            root.join(IGNORE_FILE),
            "# comments and blank lines are fine\n\nbuild/\n*.log\n!keep.log\n/top-only.txt\n",
        )
        .unwrap();
        let mut scanner = Scanner::default();
        let scan = scanner.scan(&RealFs, root).unwrap();
        let paths: Vec<&str> = scan.tree.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [IGNORE_FILE, "keep.log", "src/main.rs", "src/top-only.txt"],
            "the ignore file itself is synced"
        );
        assert!(scan.skipped.is_empty(), "{:?}", scan.skipped);
        assert!(
            scanner.is_ignored("build/deep/out.o", false),
            "folder rules cover contents"
        );
        assert!(scanner.is_ignored("any/where/x.log", false));
        assert!(!scanner.is_ignored("keep.log", false));
        // Editing the rules takes effect at the next scan.
        std::fs::write(root.join(IGNORE_FILE), "src/\n").unwrap();
        let scan = scanner.scan(&RealFs, root).unwrap();
        let paths: Vec<&str> = scan.tree.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [IGNORE_FILE, "build/deep/out.o", "keep.log", "top-only.txt"]
        );
        // Without the file nothing is ignored.
        std::fs::remove_file(root.join(IGNORE_FILE)).unwrap();
        let scan = scanner.scan(&RealFs, root).unwrap();
        assert_eq!(scan.tree.len(), 6);
    }

    #[test]
    fn a_case_sensitive_folder_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        // The test machines' filesystems (ext4, tmpfs) are case-sensitive.
        assert!(!folder_ignores_case(&RealFs, dir.path()).unwrap());
        assert!(
            dir.path().join(STATE_DIR).is_dir(),
            "the probe leaves only the state folder"
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join(STATE_DIR))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn on_a_disk_that_ignores_case_names_differing_in_case_and_form_are_twins() {
        // An NTFS-like disk keeps `Résumé` (NFC) and `re\u{301}sume\u{301}` (NFD) apart, yet the
        // plan folds both to one name: the first is the folder, the other is reported and its
        // files the first lacks stand as last synced (simulation seed 5854: the second folder's
        // file replaced the first one's in the plan, and a save never went up).
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (nfc, nfd) = ("R\u{e9}sum\u{e9}", "re\u{301}sume\u{301}");
        std::fs::create_dir(root.join(nfc)).unwrap();
        std::fs::create_dir(root.join(nfd)).unwrap();
        std::fs::write(root.join(nfc).join("cv.txt"), b"newest").unwrap();
        std::fs::write(root.join(nfd).join("cv.txt"), b"old").unwrap();
        std::fs::write(root.join(nfd).join("letter.txt"), b"l").unwrap();
        let mut scanner = Scanner {
            fold_case: true,
            ..Scanner::default()
        };
        let scan = scanner.scan(&RealFs, root).unwrap();
        let paths: Vec<&str> = scan.tree.keys().map(String::as_str).collect();
        assert_eq!(paths, [format!("{nfc}/cv.txt")]);
        assert_eq!(
            scan.tree[&format!("{nfc}/cv.txt")].size,
            6,
            "the first one's file"
        );
        assert_eq!(scan.skipped.len(), 1, "{:?}", scan.skipped);
        assert_eq!(scan.skipped[0].0, nfd);
        assert!(
            scan.skipped[0].1.contains("only in case"),
            "{:?}",
            scan.skipped
        );
        // Its `cv.txt` is the first one's; its `letter.txt` stands as last synced.
        assert_eq!(scan.unreadable, ["r\u{e9}sum\u{e9}/letter.txt"]);
        // A case-sensitive disk has two folders.
        let scan = Scanner::default().scan(&RealFs, root).unwrap();
        assert_eq!(scan.tree.len(), 3, "{:?}", scan.tree.keys());
    }

    #[test]
    fn names_in_another_unicode_form_are_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (nfc, nfd) = ("caf\u{e9}", "cafe\u{301}");
        // A file and a folder the disk spells in NFD (as HFS+ returns them).
        std::fs::write(root.join(format!("{nfd}.txt")), b"x").unwrap();
        std::fs::create_dir(root.join(nfd)).unwrap();
        std::fs::write(root.join(nfd).join("menu.txt"), b"y").unwrap();
        // Two spellings of one name side by side (possible on ext4): the NFC one is the file.
        std::fs::create_dir(root.join("both")).unwrap();
        std::fs::write(root.join("both").join(format!("{nfc}.md")), b"nfc").unwrap();
        std::fs::write(root.join("both").join(format!("{nfd}.md")), b"nfd").unwrap();

        let scan = Scanner::default().scan(&RealFs, root).unwrap();
        let paths: Vec<&str> = scan.tree.keys().map(String::as_str).collect();
        let want = [
            format!("both/{nfc}.md"),
            format!("{nfc}.txt"),
            format!("{nfc}/menu.txt"),
        ];
        assert_eq!(paths, want);
        assert_eq!(scan.disk_paths[&format!("{nfc}.txt")], format!("{nfd}.txt"));
        assert_eq!(scan.disk_paths[nfc], nfd);
        assert_eq!(
            scan.disk_paths[&format!("{nfc}/menu.txt")],
            format!("{nfd}/menu.txt")
        );
        assert_eq!(
            scan.tree[&format!("both/{nfc}.md")].size,
            3,
            "the NFC spelling is the file"
        );
        assert_eq!(scan.skipped.len(), 1, "{:?}", scan.skipped);
        assert_eq!(scan.skipped[0].0, format!("both/{nfd}.md"));
        assert!(scan.unreadable.is_empty(), "the NFC spelling holds it");

        // Two spellings of one folder: the second one's files are not synced, and those the
        // first one lacks stand as last synced (never read as deleted).
        std::fs::create_dir(root.join(format!("{nfc}-dir"))).unwrap();
        std::fs::create_dir(root.join(format!("{nfd}-dir"))).unwrap();
        std::fs::write(root.join(format!("{nfc}-dir/x")), b"x").unwrap();
        std::fs::write(root.join(format!("{nfd}-dir/x")), b"x2").unwrap();
        std::fs::write(root.join(format!("{nfd}-dir/y")), b"y").unwrap();
        let scan = Scanner::default().scan(&RealFs, root).unwrap();
        assert!(scan.tree.contains_key(&format!("{nfc}-dir/x")));
        assert!(!scan.tree.contains_key(&format!("{nfc}-dir/y")));
        assert_eq!(scan.unreadable, [format!("{nfc}-dir/y")]);
        assert!(
            scan.skipped.iter().any(|(p, _)| p == &format!("{nfd}-dir")),
            "{:?}",
            scan.skipped
        );

        // The engine's way back to the disk, for known names and new ones.
        let on_disk = |p: &str| disk_path(&scan.disk_paths, p, false).into_owned();
        assert_eq!(on_disk(&format!("{nfc}.txt")), format!("{nfd}.txt"));
        assert_eq!(on_disk(&format!("{nfc}/new.txt")), format!("{nfd}/new.txt"));
        assert_eq!(on_disk("other/x"), "other/x");
    }

    #[test]
    fn rehashes_a_file_whose_size_or_mtime_changed() {
        let dir = tempfile::tempdir().unwrap();
        let mut scanner = Scanner::default();
        std::fs::write(dir.path().join("f"), b"one").unwrap();
        let first = scanner.scan(&RealFs, dir.path()).unwrap().tree["f"]
            .sha256
            .clone();
        std::fs::write(dir.path().join("f"), b"three").unwrap();
        let second = scanner.scan(&RealFs, dir.path()).unwrap().tree["f"]
            .sha256
            .clone();
        assert_ne!(first, second);
    }

    #[test]
    fn disk_paths_fold_case_and_keep_the_disks_normalisation() {
        let (nfc, nfd) = ("R\u{e9}sum\u{e9}", "Re\u{301}sume\u{301}");
        let scanned: HashMap<String, String> = [
            (nfc.to_owned(), nfd.to_owned()),
            (format!("{nfc}/CV.TXT"), format!("{nfd}/CV.TXT")),
        ]
        .into_iter()
        .collect();
        // Exact spellings (a case-sensitive disk).
        assert_eq!(
            disk_path(&scanned, &format!("{nfc}/CV.TXT"), false),
            format!("{nfd}/CV.TXT")
        );
        assert_eq!(
            disk_path(&scanned, &format!("{nfc}/new.txt"), false),
            format!("{nfd}/new.txt")
        );
        assert_eq!(disk_path(&scanned, "other.txt", false), "other.txt");
        // A case-insensitive disk: keys folded; the planned case wins, the disk's form stays.
        let folded: HashMap<String, String> = scanned
            .iter()
            .map(|(k, v)| (fold_key(k), v.clone()))
            .collect();
        let upper_nfd: String = "R\u{c9}SUM\u{c9}".nfd().collect();
        assert_eq!(
            disk_path(&folded, "R\u{c9}SUM\u{c9}/CV.TXT", true),
            format!("{upper_nfd}/CV.TXT"),
            "the server's case finds the folder the disk spells in NFD"
        );
        assert_eq!(
            disk_path(&folded, &format!("{nfc}/cv.txt"), true),
            format!("{nfd}/cv.txt"),
            "a case-only rename names the new case, not the old file"
        );
        assert_eq!(
            disk_path(&folded, &format!("{nfc}/CV.TXT"), true),
            format!("{nfd}/CV.TXT")
        );
    }

    /// Pairs of names: (path, hash) of the tree, (path, reason) of what was skipped.
    type Pairs = Vec<(String, String)>;

    /// What a scan found, comparable: the tree, what was skipped and what was unreadable.
    fn summary(scan: &Scan) -> (Pairs, Pairs, Vec<String>) {
        let mut skipped = scan.skipped.clone();
        skipped.sort();
        let mut unreadable = scan.unreadable.clone();
        unreadable.sort();
        let tree = scan
            .tree
            .iter()
            .map(|(p, f)| (p.clone(), f.sha256.to_string()))
            .collect();
        (tree, skipped, unreadable)
    }

    #[test]
    fn a_rescan_of_the_marked_paths_finds_what_a_full_scan_finds() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("docs/deep")).unwrap();
        std::fs::create_dir_all(root.join("photos")).unwrap();
        std::fs::write(root.join("docs/a.txt"), b"a").unwrap();
        std::fs::write(root.join("docs/deep/b.txt"), b"b").unwrap();
        std::fs::write(root.join("photos/c.jpg"), b"c").unwrap();
        std::fs::write(root.join("top.txt"), b"t").unwrap();
        let mut scanner = Scanner::default();
        scanner.scan(&RealFs, root).unwrap();
        let marks = |paths: &[&str]| -> std::collections::BTreeSet<String> {
            paths.iter().map(|p| (*p).to_owned()).collect()
        };

        // An edit, a new file, a deletion: only their folders are listed again.
        std::fs::write(root.join("docs/a.txt"), b"a, edited").unwrap();
        std::fs::write(root.join("photos/d.jpg"), b"d").unwrap();
        std::fs::remove_file(root.join("top.txt")).unwrap();
        let got = scanner
            .rescan(
                &RealFs,
                root,
                &marks(&["docs/a.txt", "photos/d.jpg", "top.txt"]),
            )
            .unwrap();
        assert_eq!(
            summary(&got),
            summary(&Scanner::default().scan(&RealFs, root).unwrap())
        );
        assert_eq!(got.tree["docs/a.txt"].size, 9);

        // A folder moved in from outside is reported by its name only: walked whole.
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(outside.path().join("new/inner")).unwrap();
        std::fs::write(outside.path().join("new/inner/e.txt"), b"e").unwrap();
        std::fs::rename(outside.path().join("new"), root.join("docs/new")).unwrap();
        // A folder renamed: both names; a folder removed: its name.
        std::fs::rename(root.join("photos"), root.join("pictures")).unwrap();
        std::fs::remove_dir_all(root.join("docs/deep")).unwrap();
        let got = scanner
            .rescan(
                &RealFs,
                root,
                &marks(&["docs/new", "photos", "pictures", "docs/deep"]),
            )
            .unwrap();
        assert_eq!(
            summary(&got),
            summary(&Scanner::default().scan(&RealFs, root).unwrap())
        );
        assert!(got.tree.contains_key("docs/new/inner/e.txt"));
        assert!(got.tree.contains_key("pictures/d.jpg"));
        assert!(!got.tree.keys().any(|p| p.starts_with("photos/")));

        // A mark under a folder that is gone with its parent: the nearest folder still there.
        std::fs::remove_dir_all(root.join("docs")).unwrap();
        let got = scanner
            .rescan(&RealFs, root, &marks(&["docs/new/inner/e.txt"]))
            .unwrap();
        assert!(!got.tree.keys().any(|p| p.starts_with("docs/")), "{got:?}");

        // Nothing marked: nothing read, the same tree.
        let again = scanner
            .rescan(&RealFs, root, &std::collections::BTreeSet::new())
            .unwrap();
        assert_eq!(summary(&again), summary(&got));
    }

    /// The real disk, counting the folders listed (and, second, the files read to hash them).
    #[derive(Default)]
    struct Counting(
        std::sync::atomic::AtomicUsize,
        std::sync::atomic::AtomicUsize,
    );

    impl LocalFs for Counting {
        fn read_dir(&self, dir: &Path) -> std::io::Result<Vec<crate::local_fs::Entry>> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            RealFs.read_dir(dir)
        }
        fn metadata(&self, path: &Path) -> std::io::Result<Meta> {
            RealFs.metadata(path)
        }
        fn symlink_metadata(&self, path: &Path) -> std::io::Result<Meta> {
            RealFs.symlink_metadata(path)
        }
        fn hash(&self, path: &Path) -> std::io::Result<String> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            RealFs.hash(path)
        }
        fn read_to_string(&self, path: &Path) -> std::io::Result<String> {
            RealFs.read_to_string(path)
        }
        fn write_durably(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
            RealFs.write_durably(path, data)
        }
        fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
            RealFs.rename(from, to)
        }
        fn rename_no_replace(&self, from: &Path, to: &Path) -> std::io::Result<bool> {
            RealFs.rename_no_replace(from, to)
        }
        fn remove_file(&self, path: &Path) -> std::io::Result<()> {
            RealFs.remove_file(path)
        }
        fn remove_dir(&self, path: &Path) -> std::io::Result<()> {
            RealFs.remove_dir(path)
        }
        fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
            RealFs.create_dir_all(path)
        }
        fn sync_dir(&self, dir: &Path) {
            RealFs.sync_dir(dir)
        }
    }

    /// The listings are the hash cache: a file whose size and modification time did not change
    /// is not read again — not by a whole scan (hourly, after an overflow), not when its folder
    /// is listed again or walked whole again, and not when it is looked at alone.
    #[test]
    fn unchanged_files_are_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        for i in 0..5 {
            std::fs::write(root.join(format!("a/f{i}")), format!("{i}")).unwrap();
            std::fs::write(root.join(format!("a/b/g{i}")), format!("{i}")).unwrap();
        }
        let fs = Counting::default();
        let reads = || fs.1.load(std::sync::atomic::Ordering::Relaxed);
        let marks = |paths: &[&str]| -> std::collections::BTreeSet<String> {
            paths.iter().map(|p| p.to_string()).collect()
        };
        let mut scanner = Scanner::default();
        scanner.scan(&fs, root).unwrap();
        assert_eq!(reads(), 10);
        scanner.scan(&fs, root).unwrap();
        assert_eq!(
            reads(),
            10,
            "a whole scan of an unchanged folder reads nothing"
        );
        std::fs::write(root.join("a/f0"), b"changed size").unwrap();
        std::fs::create_dir(root.join("a/new")).unwrap();
        let got = scanner
            .rescan(&fs, root, &marks(&["a/f0", "a/new", "a/b"]))
            .unwrap();
        assert_eq!(reads(), 11, "the changed file alone is read: {got:?}");
        assert_eq!(got.tree["a/f0"].size, 12);
        // A failed scan keeps what it saw: the next whole scan still reads nothing unchanged.
        scanner.forget_listings();
        let got = scanner.scan(&fs, root).unwrap();
        assert_eq!(reads(), 11);
        assert_eq!(got.tree.len(), 10);
    }

    #[test]
    fn a_marked_file_is_looked_at_alone_and_anything_else_lists_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("big/sub")).unwrap();
        for i in 0..50 {
            std::fs::write(root.join(format!("big/f{i}.txt")), format!("{i}")).unwrap();
        }
        let fs = Counting::default();
        let mut scanner = Scanner::default();
        scanner.scan(&fs, root).unwrap();
        let listings = || fs.0.load(std::sync::atomic::Ordering::Relaxed);
        let marks = |paths: &[&str]| -> std::collections::BTreeSet<String> {
            paths.iter().map(|p| p.to_string()).collect()
        };
        let check = |scanner: &mut Scanner, paths: &[&str], lists: usize| {
            let before = listings();
            let got = scanner.rescan(&fs, root, &marks(paths)).unwrap();
            assert_eq!(listings() - before, lists, "folders listed for {paths:?}");
            assert_eq!(
                summary(&got),
                summary(&Scanner::default().scan(&RealFs, root).unwrap()),
                "{paths:?}"
            );
        };
        // An edit, a new file, a deletion, an editor's save (temporary name, then rename), a
        // name the server refuses being renamed away: one `stat` each, no listing.
        std::fs::write(root.join("big/f1.txt"), b"edited").unwrap();
        check(&mut scanner, &["big/f1.txt"], 0);
        std::fs::write(root.join("big/new.txt"), b"new").unwrap();
        check(&mut scanner, &["big/new.txt"], 0);
        std::fs::remove_file(root.join("big/f2.txt")).unwrap();
        check(&mut scanner, &["big/f2.txt"], 0);
        std::fs::write(root.join("big/.f3.txt.swp"), b"saved").unwrap();
        std::fs::rename(root.join("big/.f3.txt.swp"), root.join("big/f3.txt")).unwrap();
        check(&mut scanner, &["big/.f3.txt.swp", "big/f3.txt"], 0);
        // A name the server refuses goes to the listing (which reports why), and so does a
        // new folder (walked whole) and a file that became a folder.
        std::fs::write(root.join("big/bad:name.txt"), b"x").unwrap();
        check(&mut scanner, &["big/bad:name.txt"], 1);
        std::fs::create_dir(root.join("big/newdir")).unwrap();
        std::fs::write(root.join("big/newdir/in.txt"), b"in").unwrap();
        check(&mut scanner, &["big/newdir"], 2);
        std::fs::remove_file(root.join("big/f4.txt")).unwrap();
        std::fs::create_dir(root.join("big/f4.txt")).unwrap();
        check(&mut scanner, &["big/f4.txt"], 2);
        // A file whose folder went away: the folder's parent is listed.
        std::fs::remove_dir_all(root.join("big/sub")).unwrap();
        check(&mut scanner, &["big/sub/gone.txt"], 2);
    }

    #[test]
    fn an_unmarked_change_waits_for_the_full_scan_and_marks_in_nfc_find_an_nfd_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let nfc = "R\u{e9}sum\u{e9}";
        let nfd: String = nfc.nfd().collect();
        std::fs::create_dir_all(root.join(&nfd)).unwrap();
        std::fs::write(root.join(&nfd).join("cv.txt"), b"v1").unwrap();
        std::fs::write(root.join("other.txt"), b"o").unwrap();
        let mut scanner = Scanner::default();
        scanner.scan(&RealFs, root).unwrap();
        // A change no one marked is not seen by a rescan (the hourly full scan's job)...
        std::fs::write(root.join("other.txt"), b"changed").unwrap();
        let got = scanner
            .rescan(&RealFs, root, &std::collections::BTreeSet::new())
            .unwrap();
        assert_eq!(got.tree["other.txt"].size, 1);
        assert_eq!(
            scanner.scan(&RealFs, root).unwrap().tree["other.txt"].size,
            7
        );
        // ...and the engine's marks name paths in NFC, the disk's spelling may be NFD.
        std::fs::write(root.join(&nfd).join("new.txt"), b"n").unwrap();
        let got = scanner
            .rescan(&RealFs, root, &[format!("{nfc}/new.txt")].into())
            .unwrap();
        assert!(got.tree.contains_key(&format!("{nfc}/new.txt")), "{got:?}");
    }

    #[test]
    fn a_changed_ignore_file_makes_the_rescan_a_full_scan() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("logs")).unwrap();
        std::fs::write(root.join("logs/a.log"), b"x").unwrap();
        std::fs::write(root.join(IGNORE_FILE), "*.log\n").unwrap();
        let mut scanner = Scanner::default();
        assert!(
            !scanner
                .scan(&RealFs, root)
                .unwrap()
                .tree
                .contains_key("logs/a.log")
        );
        std::fs::write(root.join(IGNORE_FILE), "# nothing ignored any more\n").unwrap();
        let got = scanner
            .rescan(&RealFs, root, &[IGNORE_FILE.to_owned()].into())
            .unwrap();
        assert!(got.tree.contains_key("logs/a.log"), "{got:?}");
    }

    /// Random changes to a real folder, each marked as inotify would mark it (the names
    /// created, written, removed, both names of a rename): after every batch a rescan of the
    /// marks finds exactly what a full scan finds.
    #[test]
    fn rescans_of_random_changes_match_full_scans() {
        use rand::{Rng, SeedableRng, seq::SliceRandom};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut rng = rand::rngs::StdRng::seed_from_u64(16);
        let mut scanner = Scanner::default();
        scanner.scan(&RealFs, root).unwrap();
        let names = ["a", "b", "c.txt", "d.txt", "e"];
        for batch in 0..400 {
            let mut marks = std::collections::BTreeSet::new();
            for _ in 0..rng.gen_range(1..6) {
                let all = walk_all(root);
                let depth = rng.gen_range(1..4);
                let path: Vec<&str> = (0..depth)
                    .map(|_| *names.choose(&mut rng).unwrap())
                    .collect();
                let path = path.join("/");
                match rng.gen_range(0..5) {
                    0 | 1 => {
                        // Write a file (its folders made as needed, each marked).
                        let full = root.join(&path);
                        let mut made = String::new();
                        let mut ok = true;
                        for part in path.split('/').take(depth - 1) {
                            made = if made.is_empty() {
                                part.to_owned()
                            } else {
                                format!("{made}/{part}")
                            };
                            let d = root.join(&made);
                            if d.is_file() {
                                ok = false;
                                break;
                            }
                            if !d.exists() {
                                std::fs::create_dir(&d).unwrap();
                                marks.insert(made.clone());
                            }
                        }
                        if ok && !full.is_dir() {
                            std::fs::write(&full, format!("{batch} {path}")).unwrap();
                            marks.insert(path);
                        }
                    }
                    2 => {
                        if let Some(p) = all.choose(&mut rng) {
                            let full = root.join(p);
                            if full.is_dir() {
                                std::fs::remove_dir_all(&full).unwrap();
                            } else {
                                std::fs::remove_file(&full).unwrap();
                            }
                            marks.insert(p.clone());
                        }
                    }
                    _ => {
                        // Rename something to a free name at the top or in another folder.
                        if let Some(p) = all.choose(&mut rng) {
                            let to = names.choose(&mut rng).unwrap().to_string();
                            let parent = all
                                .iter()
                                .filter(|d| root.join(d).is_dir() && !d.starts_with(p.as_str()))
                                .collect::<Vec<_>>()
                                .choose(&mut rng)
                                .map(|d| format!("{d}/{to}"))
                                .unwrap_or(to);
                            if !root.join(&parent).exists() {
                                std::fs::rename(root.join(p), root.join(&parent)).unwrap();
                                marks.insert(p.clone());
                                marks.insert(parent);
                            }
                        }
                    }
                }
            }
            let got = scanner.rescan(&RealFs, root, &marks).unwrap();
            let want = Scanner::default().scan(&RealFs, root).unwrap();
            assert_eq!(
                summary(&got),
                summary(&want),
                "batch {batch}, marks {marks:?}"
            );
        }
    }

    /// Every file and folder under `root`, relative.
    fn walk_all(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
                if p.is_dir() {
                    stack.push(p);
                }
            }
        }
        out.sort();
        out
    }
}
