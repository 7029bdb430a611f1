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
use std::path::{Path, PathBuf};

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

/// Remembers hashes by (size, mtime) so unchanged files are not read again.
#[derive(Default)]
pub(crate) struct Scanner {
    cache: HashMap<String, (Stamp, String)>,
    rules: IgnoreRules,
    /// The disk ignores case: two names in a folder that differ only in case and Unicode form
    /// (`Résumé` in NFC beside `re\u{301}sume\u{301}` in NFD, which such a disk keeps apart when
    /// it does not normalise) are one name to the plan, so they are twins here too.
    pub(crate) fold_case: bool,
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
pub(crate) struct Scan {
    pub tree: LocalTree,
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

    /// Walks `root` (blocking: call from a blocking thread).
    pub(crate) fn scan(&mut self, fs: &dyn LocalFs, root: &Path) -> std::io::Result<Scan> {
        let mut scan = Scan {
            tree: LocalTree::new(),
            skipped: Vec::new(),
            unreadable: Vec::new(),
            disk_paths: HashMap::new(),
        };
        self.load_rules(fs, root, &mut scan.skipped);
        // (folder, its NFC prefix, its prefix as the disk spells it)
        // (folder, its NFC prefix, its prefix as the disk spells it, whether another spelling
        // of it is the folder that counts: its files are only looked at, never synced)
        let mut stack: Vec<(PathBuf, String, String, bool)> =
            vec![(root.to_path_buf(), String::new(), String::new(), false)];
        // Files under a second spelling of a name: their synced files stand as they were,
        // unless the first spelling holds them.
        let mut shadowed: Vec<String> = Vec::new();
        while let Some((dir, prefix, disk_prefix, shadow)) = stack.pop() {
            let entries = match fs.read_dir(&dir) {
                Ok(e) => e,
                Err(e) if dir != root => {
                    scan.skipped
                        .push((prefix.clone(), format!("cannot read folder: {e}")));
                    scan.unreadable.push(prefix.clone());
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut entries = entries;
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
                    scan.skipped.push((
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
                    scan.skipped.push((disk_rel.clone(), message));
                }
                if twin || shadow {
                    if is_dir {
                        stack.push((full, format!("{rel}/"), format!("{disk_rel}/"), true));
                    } else {
                        shadowed.push(rel);
                    }
                    continue;
                }
                if rel != disk_rel {
                    scan.disk_paths.insert(rel.clone(), disk_rel.clone());
                }
                if is_dir {
                    stack.push((full, format!("{rel}/"), format!("{disk_rel}/"), false));
                    continue;
                }
                match normalize_path(&rel) {
                    Ok(n) if n == rel => {}
                    Ok(_) => {
                        scan.skipped
                            .push((rel, "name is not in Unicode NFC".into()));
                        continue;
                    }
                    Err(e) => {
                        scan.disk_paths.remove(&rel);
                        scan.skipped.push((disk_rel, e.to_string()));
                        continue;
                    }
                }
                match self.hash(fs, &full, &rel) {
                    Ok(file) => {
                        scan.tree.insert(rel, file);
                    }
                    // Vanished between listing and hashing: it is simply not there.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        scan.skipped
                            .push((rel.clone(), format!("cannot read: {e}")));
                        scan.unreadable.push(rel);
                    }
                }
            }
        }
        // A shadowed file the first spelling also holds is that one's; the rest stand as synced.
        // (Folded keys only when there is something to look up: this runs on every scan.)
        let folded: HashSet<String> = if self.fold_case && !shadowed.is_empty() {
            scan.tree.keys().map(|p| fold_key(p)).collect()
        } else {
            HashSet::new()
        };
        for rel in shadowed {
            let held = if self.fold_case {
                folded.contains(&fold_key(&rel))
            } else {
                scan.tree.contains_key(&rel)
            };
            if !held {
                scan.unreadable.push(rel);
            }
        }
        self.cache.retain(|p, _| scan.tree.contains_key(p));
        Ok(scan)
    }

    fn hash(&mut self, fs: &dyn LocalFs, path: &Path, rel: &str) -> std::io::Result<LocalFile> {
        let meta = fs.metadata(path)?;
        let stamp = stamp_of(&meta);
        if let Some((cached, sha)) = self.cache.get(rel)
            && *cached == stamp
        {
            return Ok(LocalFile {
                sha256: sha.clone(),
                size: stamp.size,
            });
        }
        let sha = fs.hash(path)?;
        let size = stamp.size;
        self.cache.insert(rel.to_owned(), (stamp, sha.clone()));
        Ok(LocalFile { sha256: sha, size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local_fs::RealFs;

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
}
