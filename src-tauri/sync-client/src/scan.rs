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

use syncsphere_protocol::{ContentHash, normalize_path};
use syncsphere_sync_core::{LocalFile, LocalTree};
use unicode_normalization::UnicodeNormalization;

use crate::legacy::KnownIds;
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
    /// The index's ids, set by the engine for a scan: a file read again is named as the index
    /// names its content if it was stored before chunked ids ([`KnownIds::id_of`]).
    pub(crate) known: Option<KnownIds>,
    /// Files the engine itself just put in place, by tree name ([`Scanner::offer_placed`]):
    /// for the next scan only.
    placed: HashMap<String, Placed>,
}

/// A file the engine put in place (a download renamed into the folder): what it holds and the
/// stamp it had then, taken when that stamp was already settled (a write after it would
/// change it). A look at the path that finds exactly this file (same device, inode, size and
/// modification time) takes its content from here instead of reading it again: each byte a
/// download brings is hashed once on this side (decision 0054).
#[derive(Debug, Clone)]
pub(crate) struct Placed {
    pub(crate) file: LocalFile,
    pub(crate) meta: Meta,
}

impl Placed {
    /// Whether `meta` is the file as placed. (A stamp with no inode or no time proves nothing.)
    fn is(&self, meta: &Meta) -> bool {
        let was = &self.meta;
        was.ino != 0
            && was.mtime_ns != 0
            && (was.dev, was.ino, was.len, was.mtime_ns)
                == (meta.dev, meta.ino, meta.len, meta.mtime_ns)
    }
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
    /// Path, what was seen, and the file it was hashed as.
    files: Vec<(String, LocalFile, HashedAt)>,
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
        self.placed.clear();
        self.forget_on_error(scan)
    }

    /// Files the engine just put in place, for the next scan (which looks at their paths: the
    /// engine marks them) to take as they are if it finds them unchanged ([`Placed`]).
    pub(crate) fn offer_placed(&mut self, placed: impl IntoIterator<Item = (String, Placed)>) {
        self.placed.extend(placed);
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
        self.placed.clear();
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
    /// folder now or was one, was listed and is gone (a rename's other half may be in the
    /// folder), the disk ignores case, or the file cannot be read.
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
        let now: Option<(LocalFile, HashedAt)> = if ignored(name) {
            None
        } else {
            match fs.symlink_metadata(&full) {
                // A file the listing had is gone: its folder is listed again instead. A rename
                // within the folder then shows its new name in the same pass as the vanished
                // one, whichever order (and however far apart) the watcher reports the two
                // names in, so the pair becomes a move on the server rather than a delete and
                // an upload. (A name never listed — an editor's temporary file — is just gone.)
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if l.files.iter().any(|(p, _, _)| *p == rel) {
                        return false;
                    }
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
                    let seen = seen.map(|(_, f, t)| (f, *t));
                    let (known, placed) = (self.known.as_ref(), self.placed.get(&rel));
                    match hash(fs, &full, &rel, seen, placed, known) {
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
        let before: HashMap<&str, (&LocalFile, HashedAt)> = self
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
            let (known, placed) = (self.known.as_ref(), self.placed.get(&rel));
            match hash(fs, &full, &rel, seen, placed, known) {
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

/// A listed file's stamp when its hash cannot be kept: no real modification time equals it, so
/// the next listing reads the file again.
const UNSETTLED: i64 = i64::MIN;

/// The file a cached hash is of: its modification time ([`UNSETTLED`] when too recent to be
/// trusted) and inode. The inode tells apart another file renamed over the name with the same
/// size and stamp (written in the same clock step: a coarse clock, or a save as a temporary
/// file renamed into place) — the rename changes nothing else a `stat` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HashedAt {
    mtime_ns: i64,
    ino: u64,
}

/// The file at `path` and the file it was hashed as: what the last listing `seen` when its
/// size, modification time and inode are unchanged, or what the engine `placed` there when
/// it is still that very file, else read and hashed. A file stamped
/// too recently for its stamp to be trusted (a write within the file system's clock step
/// leaves it unchanged: [`LocalFs::stamp_step_ns`]), or with no stamp, is kept as
/// [`UNSETTLED`] and read again by the next listing — as Git treats "racily clean" entries.
fn hash(
    fs: &dyn LocalFs,
    path: &Path,
    rel: &str,
    seen: Option<(&LocalFile, HashedAt)>,
    placed: Option<&Placed>,
    known: Option<&KnownIds>,
) -> std::io::Result<(LocalFile, HashedAt)> {
    let mut seen_at = fs.now_ns();
    let mut meta = fs.metadata(path)?;
    let mut stamp = stamp_of(&meta);
    if let Some((file, at)) = seen
        && file.size == stamp.size
        && i128::from(at.mtime_ns) == stamp.mtime_ns
        && at.ino == meta.ino
    {
        return Ok((file.clone(), at));
    }
    let hashed_at = |mtime_ns: i128, meta: &Meta| HashedAt {
        mtime_ns: i64::try_from(mtime_ns).unwrap_or(UNSETTLED),
        ino: meta.ino,
    };
    if let Some(placed) = placed.filter(|p| p.is(&meta)) {
        // Settled when placed: kept as a hash is.
        return Ok((placed.file.clone(), hashed_at(stamp.mtime_ns, &meta)));
    }
    if let Some(wait) = crate::local_fs::settle_wait(fs, &meta, seen_at) {
        fs.wait_ns(wait);
        seen_at = fs.now_ns();
        meta = fs.metadata(path)?;
        stamp = stamp_of(&meta);
    }
    let sha256 = match known {
        Some(known) => known.id_of(fs, path, rel)?,
        None => ContentHash::from(fs.hash(path)?),
    };
    let kept = if crate::local_fs::is_settled(fs, stamp.mtime_ns, seen_at) {
        hashed_at(stamp.mtime_ns, &meta)
    } else {
        HashedAt {
            mtime_ns: UNSETTLED,
            ino: meta.ino,
        }
    };
    Ok((
        LocalFile {
            sha256,
            size: stamp.size,
        },
        kept,
    ))
}

#[cfg(test)]
mod tests;
