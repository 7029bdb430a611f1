//! Large files travel in content-defined chunks: an upload killed with SIGKILL resumes from the
//! chunks already on the server, a one-byte insert re-sends only the chunks around it, and a
//! copy of a known file sends nothing — all with real server and client processes.

use std::time::Duration;

use syncsphere_e2e::{Device, Server, noise, same_bytes, signed_in_pair, wait_for};

const MIB: usize = 1024 * 1024;
/// The smallest chunk a client cuts (except a file's last one).
const CHUNK_MIN: usize = 256 * 1024;
/// The largest chunk a client cuts.
const CHUNK_MAX: usize = 4 * MIB;

fn uploaded(d: &Device) -> u64 {
    d.status()
        .and_then(|s| s["bytes_uploaded"].as_u64())
        .unwrap_or(0)
}

fn downloaded(d: &Device) -> u64 {
    d.status()
        .and_then(|s| s["bytes_downloaded"].as_u64())
        .unwrap_or(0)
}

#[test]
fn large_files_resume_after_sigkill_and_edits_send_only_changed_chunks() {
    let server = Server::start(None).expect("server starts");
    let (a, b) = signed_in_pair(&server, "big@example.com");
    let data = noise(48 * MIB, 1);
    std::fs::create_dir_all(&a.folder).unwrap();
    std::fs::write(a.path("video.bin"), &data).unwrap();

    // A starts uploading; it is killed as soon as a few chunks have landed.
    let mut pa = a.start_sync().unwrap();
    wait_for(Duration::from_secs(60), || server.blob_count() >= 4)
        .unwrap_or_else(|| panic!("no chunks arrived\n{}", a.log()));
    pa.kill9();
    let stored = server.blob_count();
    let committed = a.log().contains("uploaded") || server.log().contains("committed chunks");
    eprintln!(
        "killed A with {stored} chunks on the server (committed before the kill: {committed})"
    );

    // After the restart only the missing chunks go up; B gets the file byte-identical.
    let _pa = a.start_sync().unwrap();
    let _pb = b.start_sync().unwrap();
    let took = wait_for(Duration::from_secs(120), || same_bytes(&a, &b, "video.bin"))
        .unwrap_or_else(|| {
            panic!(
                "video.bin never reached B\nA:\n{}\nB:\n{}",
                a.log(),
                b.log()
            )
        });
    assert!(wait_for(Duration::from_secs(30), || a.is_up_to_date()).is_some());
    let resumed = uploaded(&a);
    eprintln!("48 MiB file reached B {took:?} after the restart; A re-sent {resumed} bytes");
    assert!(
        resumed as usize <= data.len() - stored * CHUNK_MIN,
        "the resumed upload re-sent chunks the server had: {resumed} bytes with {stored} chunks stored"
    );

    // Insert one byte at the start: only the first chunk(s) change, and only they travel, both
    // ways (B puts the new version together from the chunks of its old one).
    assert!(wait_for(Duration::from_secs(30), || b.is_up_to_date()).is_some());
    let before = uploaded(&a);
    let before_b = downloaded(&b);
    let mut edited = vec![b'#'];
    edited.extend_from_slice(&data);
    std::fs::write(a.path("video.bin"), &edited).unwrap();
    wait_for(Duration::from_secs(60), || {
        std::fs::read(b.path("video.bin")).is_ok_and(|got| got == edited)
    })
    .unwrap_or_else(|| panic!("the edit never reached B\nA:\n{}", a.log()));
    assert!(wait_for(Duration::from_secs(30), || a.is_up_to_date()).is_some());
    let edit_cost = uploaded(&a) - before;
    assert!(wait_for(Duration::from_secs(30), || b.is_up_to_date()).is_some());
    let edit_down = downloaded(&b) - before_b;
    eprintln!(
        "1-byte insert at the start of 48 MiB: {edit_cost} bytes uploaded, {edit_down} downloaded"
    );
    assert!(
        edit_cost as usize <= CHUNK_MAX + 1,
        "a 1-byte insert uploaded {edit_cost} bytes"
    );
    assert!(edit_cost > 0);
    assert!(
        edit_down as usize <= CHUNK_MAX + 1,
        "a 1-byte insert downloaded {edit_down} bytes\nB:\n{}",
        b.log()
    );
    assert!(edit_down > 0);

    // A copy of a known file sends no content at all.
    let before = uploaded(&a);
    std::fs::copy(a.path("video.bin"), a.path("copy.bin")).unwrap();
    wait_for(Duration::from_secs(60), || same_bytes(&a, &b, "copy.bin"))
        .unwrap_or_else(|| panic!("copy.bin never reached B\nA:\n{}", a.log()));
    assert!(wait_for(Duration::from_secs(30), || a.is_up_to_date()).is_some());
    assert_eq!(uploaded(&a), before, "the copy's chunks were all known");
}

/// `syncsphere-server check` on a data directory: (success, output).
fn check_store(server: &Server) -> (bool, String) {
    let out = std::process::Command::new(syncsphere_e2e::bin("syncsphere-server"))
        .arg("check")
        .arg("--data-dir")
        .arg(server.data_dir())
        .output()
        .expect("runs syncsphere-server check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The server is killed (SIGKILL) while chunks are arriving: what it committed is complete
/// (only orphan chunks may be left), and after a restart the client finishes the upload.
#[test]
fn a_server_killed_mid_upload_loses_nothing_and_the_upload_completes() {
    let mut server = Server::start(None).expect("server starts");
    let (a, b) = signed_in_pair(&server, "crash@example.com");
    std::fs::create_dir_all(&a.folder).unwrap();
    std::fs::write(a.path("small.txt"), b"committed before the crash").unwrap();
    let _pa = a.start_sync().unwrap();
    assert!(wait_for(Duration::from_secs(30), || a.is_up_to_date()).is_some());
    let data = noise(48 * MIB, 2);
    std::fs::write(a.path("dataset.bin"), &data).unwrap();
    let before = server.blob_count();
    wait_for(Duration::from_secs(60), || {
        server.blob_count() >= before + 4
    })
    .unwrap_or_else(|| panic!("no chunks arrived\n{}", a.log()));
    server.process.kill9();
    let (ok, report) = check_store(&server);
    assert!(ok, "store inconsistent after SIGKILL:\n{report}");
    eprintln!("after SIGKILL: {}", report.trim());

    server.restart().expect("server restarts on the same data");
    let _pb = b.start_sync().unwrap();
    wait_for(Duration::from_secs(120), || {
        same_bytes(&a, &b, "dataset.bin")
    })
    .unwrap_or_else(|| {
        panic!(
            "dataset.bin never reached B\nA:\n{}\nB:\n{}",
            a.log(),
            b.log()
        )
    });
    assert!(same_bytes(&a, &b, "small.txt"));
    let (ok, report) = check_store(&server);
    assert!(ok, "{report}");
}

/// Bytes of partial downloads in the device's temp area.
fn partial_bytes(d: &Device) -> u64 {
    std::fs::read_dir(d.folder.join(".syncsphere").join("tmp"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "part"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// A download killed with SIGKILL resumes from the bytes already on disk (a `Range` request),
/// and the download limit holds the transfer to its rate.
#[test]
fn downloads_resume_after_sigkill_and_keep_to_the_bandwidth_limit() {
    let server = Server::start(None).expect("server starts");
    let (a, b) = signed_in_pair(&server, "slow@example.com");
    let data = noise(24 * MIB, 3);
    std::fs::create_dir_all(&a.folder).unwrap();
    std::fs::write(a.path("movie.bin"), &data).unwrap();
    let _pa = a.start_sync().unwrap();
    assert!(
        wait_for(Duration::from_secs(60), || a.is_up_to_date()
            && a.status().is_some_and(|s| s["synced_files"] == 1))
        .is_some()
    );

    // 4 MiB/s: the 24 MiB download takes ~5 s; kill B once a third of it is on disk.
    let limit = ["--max-download-kib", "4096"];
    let mut pb = b.start_sync_with(&limit).unwrap();
    wait_for(Duration::from_secs(30), || {
        partial_bytes(&b) >= 8 * MIB as u64
    })
    .unwrap_or_else(|| panic!("the download did not start\n{}", b.log()));
    pb.kill9();
    let kept = partial_bytes(&b);
    assert!(kept < data.len() as u64, "killed too late: {kept} bytes");

    let started = std::time::Instant::now();
    let _pb = b.start_sync_with(&limit).unwrap();
    // The status stream shows the file's progress, counting the bytes kept from before.
    let total = data.len() as u64;
    wait_for(Duration::from_secs(30), || {
        b.status().is_some_and(|s| {
            s["transfers"].as_array().is_some_and(|ts| {
                ts.iter().any(|t| {
                    let done = t["done"].as_u64().unwrap_or(0);
                    t["path"] == "movie.bin"
                        && t["direction"] == "download"
                        && t["total"] == total
                        && done >= kept
                        && done < total
                })
            })
        })
    })
    .unwrap_or_else(|| panic!("no progress for movie.bin in {:?}", b.status()));
    wait_for(Duration::from_secs(60), || same_bytes(&a, &b, "movie.bin"))
        .unwrap_or_else(|| panic!("movie.bin never completed on B\n{}", b.log()));
    let took = started.elapsed();
    assert!(wait_for(Duration::from_secs(30), || b.is_up_to_date()).is_some());
    let fetched = b.status().unwrap()["bytes_downloaded"].as_u64().unwrap();
    eprintln!("resumed with {kept} bytes on disk: fetched {fetched} more bytes in {took:?}");
    assert_eq!(
        fetched,
        data.len() as u64 - kept,
        "only the missing part is fetched again"
    );
    assert!(b.log().contains("resuming a download"), "{}", b.log());
    // The rest (≥ 16 MiB) at 4 MiB/s after a 4 MiB burst takes at least 3 s.
    let floor = (fetched as f64 - 4.0 * MIB as f64) / (4.0 * MIB as f64);
    assert!(
        took.as_secs_f64() >= floor * 0.9,
        "{fetched} bytes in {took:?} exceeds 4 MiB/s"
    );
    assert_eq!(partial_bytes(&b), 0, "no partial file is left behind");
}
