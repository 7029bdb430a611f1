//! "Absence is not deletion", with a real server and real `syncsphere` processes: a synced
//! folder moved away, an empty mount point in its place, starting over, a mass delete waiting
//! for confirmation, names in NFD, and a second client on one configuration directory.

use std::time::Duration;

use syncsphere_e2e::{Device, Server, signed_in_pair, wait_for, walk};

const WAIT: Duration = Duration::from_secs(90);

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Writes `n` files (some in a folder) into `d`'s folder; returns their paths, sorted.
fn write_files(d: &Device, n: usize, tag: &str) -> Vec<String> {
    std::fs::create_dir_all(d.path("docs")).unwrap();
    let paths: Vec<String> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                format!("docs/{tag}-{i:02}.txt")
            } else {
                format!("{tag}-{i:02}.txt")
            }
        })
        .collect();
    for p in &paths {
        std::fs::write(d.path(p), format!("{p} from {}\n", d.name)).unwrap();
    }
    sorted(paths)
}

fn until_up_to_date(d: &Device, files: u64, what: &str) {
    wait_for(WAIT, || {
        d.is_up_to_date() && d.status().is_some_and(|s| s["synced_files"] == files)
    })
    .unwrap_or_else(|| panic!("{what}: {:?}\n{}", d.status(), d.log()));
}

fn until_kind(d: &Device, kind: &str) {
    wait_for(WAIT, || d.status().is_some_and(|s| s["error_kind"] == kind)).unwrap_or_else(|| {
        panic!(
            "{} never reported {kind}: {:?}\n{}",
            d.name,
            d.status(),
            d.log()
        )
    });
}

/// Gives a device time for several passes, then checks it still holds `want`.
fn still_holds(d: &Device, want: &[String], what: &str) {
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sorted(walk(&d.folder)), want, "{what}\n{}", d.log());
}

#[test]
fn a_folder_moved_away_or_left_empty_deletes_nothing_anywhere() {
    let server = Server::start(None).expect("server starts");
    let (a, b) = signed_in_pair(&server, "absent@example.com");
    let files = write_files(&a, 20, "note");
    let mut pa = a.start_sync().unwrap();
    let _pb = b.start_sync().unwrap();
    until_up_to_date(&a, 20, "A uploads");
    until_up_to_date(&b, 20, "B downloads");
    assert_eq!(sorted(walk(&b.folder)), files);

    // Moved away while the client was stopped.
    pa.stop();
    let moved = a.folder.with_file_name("Moved");
    std::fs::rename(&a.folder, &moved).unwrap();
    let mut pa = a.start_sync().unwrap();
    until_kind(&a, "folder_missing");
    assert!(!a.folder.exists(), "a missing folder is never re-created");
    still_holds(&b, &files, "B keeps every file while A's folder is missing");

    // An empty folder in its place: the empty mount point of a drive that is not mounted.
    std::fs::create_dir(&a.folder).unwrap();
    until_kind(&a, "folder_marker_missing");
    still_holds(&b, &files, "B keeps every file while A's folder is empty");
    assert_eq!(
        walk(&a.folder),
        Vec::<String>::new(),
        "nothing is written into it"
    );
    let status = a.run(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("--start-over"),
        "status says what to do: {text}"
    );

    // Put back: sync resumes by itself, both ways.
    std::fs::remove_dir(&a.folder).unwrap();
    std::fs::rename(&moved, &a.folder).unwrap();
    until_up_to_date(&a, 20, "A resumes once its folder is back");
    std::fs::write(b.path("after.txt"), b"written on B").unwrap();
    wait_for(WAIT, || a.path("after.txt").is_file())
        .unwrap_or_else(|| panic!("A syncs again\n{}", a.log()));

    // Gone for good: starting over downloads everything and deletes nothing.
    pa.stop();
    std::fs::remove_dir_all(&a.folder).unwrap();
    let _pa = a.start_sync_with(&["--start-over"]).unwrap();
    until_up_to_date(&a, 21, "A downloads everything into a new folder");
    let mut all = files.clone();
    all.push("after.txt".into());
    let all = sorted(all);
    assert_eq!(sorted(walk(&a.folder)), all);
    still_holds(&b, &all, "B loses nothing when A starts over");
}

#[test]
fn a_mass_delete_waits_until_confirmed_or_restored() {
    let server = Server::start(None).expect("server starts");
    let (a, b) = signed_in_pair(&server, "brake@example.com");
    let files = write_files(&a, 30, "file");
    let _pa = a
        .start_sync_with(&["--delete-brake-files", "10", "--delete-brake-percent", "25"])
        .unwrap();
    let _pb = b.start_sync().unwrap();
    until_up_to_date(&a, 30, "A uploads");
    until_up_to_date(&b, 30, "B downloads");

    // 12 of 30 deleted at once (40 %): held; a new file still goes up meanwhile.
    let doomed: Vec<&String> = files
        .iter()
        .filter(|p| p.starts_with("docs/"))
        .take(12)
        .collect();
    for p in &doomed {
        std::fs::remove_file(a.path(p)).unwrap();
    }
    std::fs::write(a.path("meanwhile.txt"), b"still syncing").unwrap();
    // (The first pass may see the deletions before the new file: wait for both.)
    wait_for(WAIT, || {
        a.status().is_some_and(|s| {
            s["error_kind"] == "mass_delete_pending"
                && s["pending_deletes"]["count"] == 12
                && s["pending_deletes"]["synced_files"] == 31
        }) && b.path("meanwhile.txt").is_file()
    })
    .unwrap_or_else(|| {
        panic!(
            "held, and other changes go on: {:?}\n{}",
            a.status(),
            a.log()
        )
    });
    let mut with_new = files.clone();
    with_new.push("meanwhile.txt".into());
    let with_new = sorted(with_new);
    still_holds(&b, &with_new, "nothing is deleted before the user decides");
    let text = String::from_utf8_lossy(&a.run(&["status"]).stdout).into_owned();
    assert!(text.contains("12 of 31 synced files"), "{text}");

    // Restore: they come back from the server.
    let out = a.run(&["restore-deletes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(WAIT, || doomed.iter().all(|p| a.path(p).is_file()))
        .unwrap_or_else(|| panic!("restored on A\n{}", a.log()));
    until_up_to_date(&a, 31, "A is up to date after restoring");

    // Deleted again, and this time confirmed: deleted everywhere.
    for p in &doomed {
        std::fs::remove_file(a.path(p)).unwrap();
    }
    until_kind(&a, "mass_delete_pending");
    let out = a.run(&["confirm-deletes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    until_up_to_date(&a, 19, "A deletes them on the server once confirmed");
    wait_for(WAIT, || doomed.iter().all(|p| !b.path(p).exists()))
        .unwrap_or_else(|| panic!("deleted on B\n{}", b.log()));
    assert!(a.status().unwrap()["pending_deletes"].is_null());

    // Nothing to confirm now: a clear error.
    let out = a.run(&["confirm-deletes"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no deletions are waiting"));
}

#[test]
fn names_in_nfd_are_the_same_file_and_new_ones_sync_under_nfc() {
    let server = Server::start(None).expect("server starts");
    let (a, b) = signed_in_pair(&server, "unicode@example.com");
    let (cafe_nfc, cafe_nfd) = ("caf\u{e9}.txt", "cafe\u{301}.txt");
    std::fs::create_dir_all(&a.folder).unwrap();
    std::fs::write(a.path(cafe_nfc), b"first").unwrap();
    let _pa = a.start_sync().unwrap();
    let _pb = b.start_sync().unwrap();
    until_up_to_date(&b, 1, "B gets the file");

    // The disk now spells it in NFD (what a copy from a Mac does): the same file.
    std::fs::rename(a.path(cafe_nfc), a.path(cafe_nfd)).unwrap();
    // New names in NFD: a file, and a folder with a file.
    let (naive_nfc, naive_nfd) = ("na\u{ef}ve.txt", "nai\u{308}ve.txt");
    let (cv_nfc, cv_nfd) = ("R\u{e9}sum\u{e9}/cv.txt", "Re\u{301}sume\u{301}/cv.txt");
    std::fs::write(a.path(naive_nfd), b"naive").unwrap();
    std::fs::create_dir(a.path(cv_nfd.split('/').next().unwrap())).unwrap();
    std::fs::write(a.path(cv_nfd), b"cv").unwrap();
    wait_for(WAIT, || {
        b.path(naive_nfc).is_file() && b.path(cv_nfc).is_file()
    })
    .unwrap_or_else(|| panic!("new NFD names reach B under NFC\n{}", a.log()));
    until_up_to_date(&a, 3, "A has three files in sync");
    assert_eq!(
        std::fs::read(b.path(cafe_nfc)).unwrap(),
        b"first",
        "never deleted"
    );
    let problems = a.status().unwrap()["problems"].clone();
    assert_eq!(problems, serde_json::json!([]), "no problems on A");

    // An edit from B lands in A's NFD file, and a new file from B in A's NFD folder.
    std::fs::write(b.path(cafe_nfc), b"edited on B").unwrap();
    std::fs::write(b.path("R\u{e9}sum\u{e9}/letter.txt"), b"letter").unwrap();
    wait_for(WAIT, || {
        std::fs::read(a.path(cafe_nfd)).is_ok_and(|c| c == b"edited on B")
            && a.path("Re\u{301}sume\u{301}/letter.txt").is_file()
    })
    .unwrap_or_else(|| panic!("B's changes land at A's disk spellings\n{}", a.log()));
    until_up_to_date(&a, 4, "A is up to date");
    let on_a = sorted(walk(&a.folder));
    let want = sorted(vec![
        cafe_nfd.to_owned(),
        naive_nfd.to_owned(),
        cv_nfd.to_owned(),
        "Re\u{301}sume\u{301}/letter.txt".to_owned(),
    ]);
    assert_eq!(on_a, want, "no second spelling appears on A");
}

#[test]
fn a_second_client_on_one_config_directory_is_refused() {
    let server = Server::start(None).expect("server starts");
    let a = Device::new("laptop").unwrap();
    a.signup(&server, "one@example.com");
    std::fs::create_dir_all(&a.folder).unwrap();
    std::fs::write(a.path("x.txt"), b"x").unwrap();
    let pa = a.start_sync().unwrap();
    until_up_to_date(&a, 1, "A syncs");

    let other = a.folder.with_file_name("Other");
    let out = a.run(&["sync", "--folder", other.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second sync must not run");
    assert!(
        err.contains(&format!("syncsphere sync (process {}", pa.pid()))
            && err.contains("already syncing"),
        "names the holder: {err}"
    );
    assert!(!other.exists(), "the refused client touched nothing");

    // Signing in as another user would replace the index under the running engine: refused.
    let b = Device::new("desktop").unwrap();
    b.signup(&server, "two@example.com");
    let out = a.account("login", &server, "two@example.com").unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already syncing"));
    assert_eq!(a.config()["email"], "one@example.com");
    std::fs::write(a.path("y.txt"), b"y").unwrap();
    until_up_to_date(&a, 2, "the running client goes on");
}
