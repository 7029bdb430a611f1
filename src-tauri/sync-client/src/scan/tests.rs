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

/// Marks of the given paths, as the watcher leaves them.
fn marks(paths: &[&str]) -> std::collections::BTreeSet<String> {
    paths.iter().map(|p| p.to_string()).collect()
}

/// The real disk, counting the folders listed (and, second, the files read to hash them); its
/// clock can be set (third).
#[derive(Default)]
struct Counting(
    std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicUsize,
    std::sync::Mutex<Option<i128>>,
);

impl Counting {
    /// Files read to hash them so far.
    fn reads(&self) -> usize {
        self.1.load(std::sync::atomic::Ordering::Relaxed)
    }
}

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
    fn now_ns(&self) -> i128 {
        self.2.lock().unwrap().unwrap_or_else(|| RealFs.now_ns())
    }
    fn stamp_step_ns(&self, mtime_ns: i128) -> i128 {
        RealFs.stamp_step_ns(mtime_ns)
    }
    fn wait_ns(&self, ns: i128) {
        match &mut *self.2.lock().unwrap() {
            Some(now) => *now += ns,
            None => RealFs.wait_ns(ns),
        }
    }
    fn hash(&self, path: &Path) -> std::io::Result<String> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        RealFs.hash(path)
    }
    fn sha256(&self, path: &Path) -> std::io::Result<String> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        RealFs.sha256(path)
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
        write_settled(&root.join(format!("a/f{i}")), format!("{i}").as_bytes());
        write_settled(&root.join(format!("a/b/g{i}")), format!("{i}").as_bytes());
    }
    let fs = Counting::default();
    let reads = || fs.reads();
    let mut scanner = Scanner::default();
    scanner.scan(&fs, root).unwrap();
    assert_eq!(reads(), 10);
    scanner.scan(&fs, root).unwrap();
    assert_eq!(
        reads(),
        10,
        "a whole scan of an unchanged folder reads nothing"
    );
    write_settled(&root.join("a/f0"), b"changed size");
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

/// A file renamed over a listed one with the same size and modification time (written in
/// the same clock step; saved as a temporary file and renamed into place) is read, not taken
/// from the hash cache: the cache holds the inode it hashed too. Fails if the inode is not
/// compared.
#[test]
fn a_file_renamed_over_one_of_the_same_size_and_stamp_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_settled(&root.join("report.txt"), b"version 1");
    let stamp = std::fs::metadata(root.join("report.txt"))
        .unwrap()
        .modified()
        .unwrap();
    let fs = Counting::default();
    let mut scanner = Scanner::default();
    let got = scanner.scan(&fs, root).unwrap();
    assert_eq!(got.tree["report.txt"].sha256, sha256_hex(b"version 1"));
    write_stamped(&root.join(".report.txt.tmp"), b"version 2", stamp);
    std::fs::rename(root.join(".report.txt.tmp"), root.join("report.txt")).unwrap();
    let got = scanner
        .rescan(&fs, root, &marks(&[".report.txt.tmp", "report.txt"]))
        .unwrap();
    assert_eq!(got.tree["report.txt"].sha256, sha256_hex(b"version 2"));
    // The whole scan's listing too.
    let got = scanner.scan(&fs, root).unwrap();
    assert_eq!(got.tree["report.txt"].sha256, sha256_hex(b"version 2"));
}

/// A file the engine put in place is taken as it said, not read — by the one scan after, and
/// only while the disk holds that very file: once the same name is another file (a new
/// inode), or the file's size or stamp moved, it is read.
#[test]
fn a_placed_file_is_taken_as_placed_by_the_next_scan_only() {
    use super::Placed;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("in")).unwrap();
    write_settled(&root.join("in/old.txt"), b"old");
    let fs = Counting::default();
    let reads = || fs.reads();
    let mut scanner = Scanner::default();
    scanner.scan(&fs, root).unwrap();
    assert_eq!(reads(), 1);
    // "Downloaded": the content id the engine checked (here one the bytes do not have, so a
    // read would show).
    let said = |meta: Meta| Placed {
        file: LocalFile {
            sha256: ContentHash::from(sha256_hex(b"as downloaded")),
            size: meta.len,
        },
        meta,
    };
    let placed = |name: &str, data: &[u8]| {
        let path = root.join(name);
        write_settled(&path, data);
        said(RealFs.metadata(&path).unwrap())
    };
    scanner.offer_placed([("in/new.txt".to_owned(), placed("in/new.txt", b"new"))]);
    let got = scanner.rescan(&fs, root, &marks(&["in/new.txt"])).unwrap();
    assert_eq!(reads(), 1, "looked at alone, not read");
    assert_eq!(got.tree["in/new.txt"].sha256, sha256_hex(b"as downloaded"));
    // Offered for one scan only (a file not looked at is not kept for).
    assert!(scanner.placed.is_empty());
    write_settled(&root.join("in/new.txt"), b"NEW");
    let got = scanner.rescan(&fs, root, &marks(&["in/new.txt"])).unwrap();
    assert_eq!(reads(), 2);
    assert_eq!(got.tree["in/new.txt"].sha256, sha256_hex(b"NEW"));
    // Another file under the name since (same size and stamp, another inode): read.
    let offer = placed("in/other.txt", b"one");
    let stamp = std::fs::metadata(root.join("in/other.txt"))
        .unwrap()
        .modified()
        .unwrap();
    std::fs::remove_file(root.join("in/other.txt")).unwrap();
    write_settled(&root.join("in/keep"), b"x"); // the inode is not reused at once
    write_stamped(&root.join("in/other.txt"), b"two", stamp);
    let now = RealFs.metadata(&root.join("in/other.txt")).unwrap();
    assert_ne!(now.ino, offer.meta.ino);
    scanner.offer_placed([("in/other.txt".to_owned(), offer)]);
    // (A listing of the folder this time: the whole scan takes placed files too.)
    let got = scanner.scan(&fs, root).unwrap();
    assert_eq!(got.tree["in/other.txt"].sha256, sha256_hex(b"two"));
    // The same file with its size changed: read.
    let offer = placed("in/grown.txt", b"12");
    write_settled(&root.join("in/grown.txt"), b"123");
    scanner.offer_placed([("in/grown.txt".to_owned(), offer)]);
    let got = scanner
        .rescan(&fs, root, &marks(&["in/grown.txt"]))
        .unwrap();
    assert_eq!(got.tree["in/grown.txt"].sha256, sha256_hex(b"123"));
    // Its stamp changed, size kept: read.
    let offer = placed("in/touched.txt", b"ab");
    write_settled(&root.join("in/touched.txt"), b"cd");
    scanner.offer_placed([("in/touched.txt".to_owned(), offer)]);
    let before = reads();
    let got = scanner.scan(&fs, root).unwrap();
    assert_eq!(got.tree["in/touched.txt"].sha256, sha256_hex(b"cd"));
    assert_eq!(reads(), before + 1, "only the touched file is read");
}

/// Writes `data` at `path`, stamped an hour ago: long enough for any file-system clock.
fn write_settled(path: &Path, data: &[u8]) {
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    write_stamped(path, data, hour_ago);
}

/// Writes `data` at `path` with the modification time `stamp`.
fn write_stamped(path: &Path, data: &[u8], stamp: std::time::SystemTime) {
    std::fs::write(path, data).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(stamp)
        .unwrap();
}

/// A coarse file-system clock (a jiffy on Linux before 6.13, two seconds on FAT) stamps a
/// second write within its step with the first one's time: a file stamped that recently is
/// read again by the next listing, whatever its stamp says, until its stamp is old enough
/// to trust. (The second write is played here by restoring the first one's stamp; the scans
/// happen, by the disk's clock, 50 ms after it.)
#[test]
fn a_file_stamped_within_the_clocks_step_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let path = root.join("doc.txt");
    std::fs::write(&path, b"first").unwrap();
    let stamp = std::fs::metadata(&path).unwrap().modified().unwrap();
    let stamp_ns = stamp
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    let fs = Counting::default();
    *fs.2.lock().unwrap() = Some(stamp_ns + 50_000_000);
    let reads = || fs.reads();
    let mut scanner = Scanner::default();
    let first = scanner.scan(&fs, root).unwrap();
    assert_eq!(first.tree["doc.txt"].sha256, sha256_hex(b"first"));
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    std::io::Write::write_all(&mut &file, b"again").unwrap();
    file.set_modified(stamp).unwrap();
    drop(file);
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), stamp);
    let second = scanner.scan(&fs, root).unwrap();
    assert_eq!(
        second.tree["doc.txt"].sha256,
        sha256_hex(b"again"),
        "the same size and stamp, other bytes: the listing must read the file"
    );
    assert_eq!(reads(), 2);
    // Past the step, the stamp is trusted again: read once more to settle it, then kept.
    *fs.2.lock().unwrap() = Some(stamp_ns + 150_000_000);
    scanner.scan(&fs, root).unwrap();
    scanner.scan(&fs, root).unwrap();
    assert_eq!(reads(), 3, "a settled stamp is trusted");
}

/// A large file written a moment ago is waited for until its stamp settles, then read once
/// and kept (read once more later would cost more than the wait); a small one is read at once
/// and again by the next listing; a whole-second stamp (a 2 s step) is not waited for.
#[test]
fn a_large_file_just_written_is_waited_for_and_read_once() {
    use crate::local_fs::SETTLE_WAIT_MIN;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let stamp_of = |name: &str| {
        std::fs::metadata(root.join(name))
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i128
    };
    std::fs::write(root.join("big.bin"), vec![7u8; SETTLE_WAIT_MIN as usize]).unwrap();
    let big = stamp_of("big.bin");
    let fs = Counting::default();
    // 30 ms after the large file's last write, by the disk's clock.
    *fs.2.lock().unwrap() = Some(big + 30_000_000);
    let reads = || fs.reads();
    let mut scanner = Scanner::default();
    scanner.scan(&fs, root).unwrap();
    assert_eq!(reads(), 1);
    let now = fs.2.lock().unwrap().unwrap();
    assert!(now > big + 100_000_000, "waited until the stamp settled");
    assert!(now <= big + 100_000_001, "and no longer");
    scanner.scan(&fs, root).unwrap();
    assert_eq!(reads(), 1, "settled: kept");
    // A small one: read at once (no wait), and again by the next listing.
    std::fs::write(root.join("small.txt"), b"small").unwrap();
    let before = stamp_of("small.txt") + 30_000_000;
    *fs.2.lock().unwrap() = Some(before);
    scanner.scan(&fs, root).unwrap();
    assert_eq!(fs.2.lock().unwrap().unwrap(), before, "no wait");
    scanner.scan(&fs, root).unwrap();
    assert_eq!(reads(), 3, "a small file is read twice");
    // A whole-second stamp: its step is 2 s, too long to wait for.
    std::fs::remove_file(root.join("small.txt")).unwrap();
    let second = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_764_000_000);
    std::fs::File::options()
        .write(true)
        .open(root.join("big.bin"))
        .unwrap()
        .set_modified(second)
        .unwrap();
    *fs.2.lock().unwrap() = Some(1_764_000_000_500_000_000);
    scanner.scan(&fs, root).unwrap();
    assert_eq!(
        fs.2.lock().unwrap().unwrap(),
        1_764_000_000_500_000_000,
        "no wait"
    );
    assert_eq!(reads(), 4);
}

/// A whole-second stamp says a disk that keeps seconds (FAT keeps two): trusted only after
/// two; a finer one after 100 ms.
#[test]
fn the_step_a_stamp_may_hide_follows_its_precision() {
    use crate::local_fs::stamp_step_ns;
    assert_eq!(stamp_step_ns(1_764_000_000_000_000_000), 2_000_000_000);
    assert_eq!(stamp_step_ns(1_764_000_002_000_000_000), 2_000_000_000);
    assert_eq!(stamp_step_ns(1_764_000_000_010_000_000), 100_000_000);
    assert_eq!(stamp_step_ns(1_764_000_000_123_456_789), 100_000_000);
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
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
    // An edit, a new file, an editor's save (temporary name, then rename): one `stat` each,
    // no listing.
    std::fs::write(root.join("big/f1.txt"), b"edited").unwrap();
    check(&mut scanner, &["big/f1.txt"], 0);
    std::fs::write(root.join("big/new.txt"), b"new").unwrap();
    check(&mut scanner, &["big/new.txt"], 0);
    std::fs::write(root.join("big/.f3.txt.swp"), b"saved").unwrap();
    std::fs::rename(root.join("big/.f3.txt.swp"), root.join("big/f3.txt")).unwrap();
    check(&mut scanner, &["big/.f3.txt.swp", "big/f3.txt"], 0);
    // A listed file gone (deleted, or renamed): its folder is listed again, so a rename's new
    // name is found even when only the old one was marked (the watcher's second event late).
    std::fs::remove_file(root.join("big/f2.txt")).unwrap();
    check(&mut scanner, &["big/f2.txt"], 1);
    scanner.take_touched();
    std::fs::rename(root.join("big/f5.txt"), root.join("big/renamed.txt")).unwrap();
    let got = scanner.rescan(&fs, root, &marks(&["big/f5.txt"])).unwrap();
    assert!(!got.tree.contains_key("big/f5.txt"));
    assert_eq!(got.tree["big/renamed.txt"].size, 1, "{got:?}");
    assert!(
        scanner
            .take_touched()
            .is_some_and(|t| t.iter().any(|p| p == "big/renamed.txt")),
        "the new name is planned in the same pass"
    );
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
