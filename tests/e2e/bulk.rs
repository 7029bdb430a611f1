//! Bulk runs with real server and client processes: ten thousand small files, and one 1 GiB
//! file, from one device to a new device with an empty folder — every byte checked on disk.

use std::time::{Duration, Instant};

use syncsphere_e2e::{
    Device, Server, file_sha256, signed_in_pair, wait_for, walk, write_noise_file,
};

/// Waits until `d` is up to date with `files` files in sync; panics with its log otherwise.
fn until_synced(d: &Device, files: u64, timeout: Duration, what: &str) -> Duration {
    wait_for(timeout, || {
        d.is_up_to_date() && d.status().is_some_and(|s| s["synced_files"] == files)
    })
    .unwrap_or_else(|| panic!("{what}: {:?}\n{}", d.status(), d.log()))
}

#[test]
fn ten_thousand_small_files_reach_a_new_device() {
    const FILES: usize = 10_000;
    let server = Server::start(None).expect("server starts");
    let (a, b) = signed_in_pair(&server, "many@example.com");
    for i in 0..FILES {
        let dir = a.path(&format!("project-{:02}", i % 100));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("note-{i}.txt")),
            format!("small file {i}\n").repeat(1 + i % 40),
        )
        .unwrap();
    }

    let _pa = a.start_sync().unwrap();
    let up = until_synced(
        &a,
        FILES as u64,
        Duration::from_secs(900),
        "A never uploaded them all",
    );
    let _pb = b.start_sync().unwrap();
    let down = until_synced(
        &b,
        FILES as u64,
        Duration::from_secs(900),
        "B never got them all",
    );
    eprintln!(
        "{FILES} small files: uploaded in {up:?} ({:.0}/s), initial sync of a new device {down:?} ({:.0}/s)",
        FILES as f64 / up.as_secs_f64(),
        FILES as f64 / down.as_secs_f64()
    );

    let (mut ta, mut tb) = (walk(&a.folder), walk(&b.folder));
    ta.sort();
    tb.sort();
    assert_eq!(ta.len(), FILES);
    assert_eq!(ta, tb, "the same files on both devices");
    for p in &ta {
        assert_eq!(
            std::fs::read(a.path(p)).unwrap(),
            std::fs::read(b.path(p)).unwrap(),
            "{p} differs"
        );
    }
}

#[test]
fn a_one_gib_file_reaches_a_new_device_byte_identical() {
    const GIB: usize = 1 << 30;
    let server = Server::start(None).expect("server starts");
    let (a, b) = signed_in_pair(&server, "huge@example.com");
    std::fs::create_dir_all(&a.folder).unwrap();
    write_noise_file(&a.path("disk.img"), GIB, 11).unwrap();
    let expected = file_sha256(&a.path("disk.img")).unwrap();

    let started = Instant::now();
    let _pa = a.start_sync().unwrap();
    until_synced(&a, 1, Duration::from_secs(600), "A never uploaded the file");
    let up = started.elapsed();
    let started = Instant::now();
    let _pb = b.start_sync().unwrap();
    until_synced(&b, 1, Duration::from_secs(600), "B never got the file");
    let down = started.elapsed();
    eprintln!("1 GiB: uploaded in {up:?}, downloaded to a new device in {down:?}");

    assert_eq!(file_sha256(&b.path("disk.img")).unwrap(), expected);
    let status = b.status().unwrap();
    assert_eq!(
        status["bytes_downloaded"], GIB as u64,
        "fetched once: {status}"
    );
    assert_eq!(
        walk(&b.folder),
        ["disk.img"],
        "no temporary or partial file is left in the folder"
    );
    let tmp = b.folder.join(".syncsphere/tmp");
    let leftovers = std::fs::read_dir(&tmp).map_or(0, |d| d.count());
    assert_eq!(
        leftovers,
        0,
        "no partial download is left in {}",
        tmp.display()
    );
}
