//! End to end: what the desktop app's account pages rely on, against the real server with two
//! real `syncsphere` clients syncing — version history, restore, trash and undelete through
//! `sync-client`'s account API (acting with the laptop's own config directory, as the app does
//! beside its running sync), and the devices online in the status stream (the Devices page
//! refreshes when they change).

use std::time::Duration;

use syncsphere_e2e::{Device, Process, Server, signed_in_pair, wait_for};
use syncsphere_sync_client as client;

const SETTLE: Duration = Duration::from_secs(15);

fn has_bytes(device: &Device, rel: &str, bytes: &[u8]) -> bool {
    std::fs::read(device.path(rel)).is_ok_and(|b| b == bytes)
}

/// The server never pushes a change to the device that made it, so the laptop's own sync
/// learns of its restore on its next pass: SIGUSR2 ("resume") wakes it at once, as the app's
/// "sync now" does.
fn nudge(sync: &Process) {
    let ok = std::process::Command::new("kill")
        .args(["-USR2", &sync.pid().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -USR2");
}

#[test]
fn restore_and_undelete_bring_the_bytes_back_on_disk() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = Server::start(None).expect("server starts");
    let (laptop, desktop) = signed_in_pair(&server, "history@example.com");
    let pa = laptop.start_sync().unwrap();
    let _pb = desktop.start_sync().unwrap();
    assert!(
        wait_for(SETTLE, || laptop.is_up_to_date() && desktop.is_up_to_date()).is_some(),
        "clients did not come online\n{}\n{}",
        laptop.log(),
        desktop.log()
    );
    let config = laptop.config_dir.clone();

    // Two versions of a file, each synced to the desktop.
    std::fs::create_dir_all(laptop.path("docs")).unwrap();
    std::fs::write(laptop.path("docs/notes.txt"), b"first draft").unwrap();
    assert!(
        wait_for(SETTLE, || has_bytes(
            &desktop,
            "docs/notes.txt",
            b"first draft"
        ))
        .is_some()
    );
    std::fs::write(laptop.path("docs/notes.txt"), b"second draft, worse").unwrap();
    assert!(
        wait_for(SETTLE, || has_bytes(
            &desktop,
            "docs/notes.txt",
            b"second draft, worse"
        ))
        .is_some()
    );

    // History by path (the case the user types need not match), newest first.
    let history = rt
        .block_on(client::file_history(&config, "Docs/Notes.TXT"))
        .expect("history");
    assert_eq!(history.file.path, "docs/notes.txt");
    let revs: Vec<(i64, i64)> = history
        .revisions
        .iter()
        .map(|r| (r.rev.get(), r.size))
        .collect();
    assert_eq!(revs, [(2, 19), (1, 11)]);

    // Restore the first version: a new revision 3, on both disks.
    let first = history.revisions.last().unwrap();
    let restored = rt
        .block_on(client::restore_revision(
            &config,
            &history.file.file_id,
            first.rev.into(),
        ))
        .expect("restore");
    assert_eq!((restored.rev.get(), restored.size), (3, 11));
    assert!(
        wait_for(SETTLE, || has_bytes(
            &desktop,
            "docs/notes.txt",
            b"first draft"
        ))
        .is_some(),
        "restore did not reach the desktop\n{}",
        desktop.log()
    );
    nudge(&pa);
    assert!(
        wait_for(SETTLE, || has_bytes(
            &laptop,
            "docs/notes.txt",
            b"first draft"
        ))
        .is_some(),
        "restore did not reach the laptop's own disk\n{}",
        laptop.log()
    );
    let after = rt
        .block_on(client::revisions(&config, &history.file.file_id))
        .unwrap();
    assert_eq!(
        after.len(),
        3,
        "the versions in between stay in the history"
    );

    // Delete a file: it shows in the trash, and undelete brings its bytes back everywhere.
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(laptop.path("keep me.bin"), &body).unwrap();
    assert!(wait_for(SETTLE, || has_bytes(&desktop, "keep me.bin", &body)).is_some());
    std::fs::remove_file(laptop.path("keep me.bin")).unwrap();
    assert!(wait_for(SETTLE, || !desktop.path("keep me.bin").exists()).is_some());
    let trash = rt.block_on(client::trash(&config)).expect("trash");
    let gone = trash
        .iter()
        .find(|f| f.path == "keep me.bin")
        .unwrap_or_else(|| panic!("not in the trash: {trash:?}"));
    assert!(gone.deleted);
    // A deleted file's history is still found by its path.
    let deleted_history = rt
        .block_on(client::file_history(&config, "keep me.bin"))
        .unwrap();
    assert_eq!(deleted_history.file.file_id, gone.file_id);
    assert!(deleted_history.revisions[0].deleted);

    let back = rt
        .block_on(client::undelete(&config, &gone.file_id))
        .expect("undelete");
    assert!(!back.deleted);
    assert_eq!(back.size, body.len() as i64);
    assert!(
        wait_for(SETTLE, || has_bytes(&desktop, "keep me.bin", &body)).is_some(),
        "undelete did not reach the desktop\n{}",
        desktop.log()
    );
    nudge(&pa);
    assert!(
        wait_for(SETTLE, || has_bytes(&laptop, "keep me.bin", &body)).is_some(),
        "undelete did not reach the laptop\n{}",
        laptop.log()
    );
    let trash = rt.block_on(client::trash(&config)).unwrap();
    assert!(trash.iter().all(|f| f.path != "keep me.bin"), "{trash:?}");

    // Mistakes get a clear answer and change nothing.
    let live = rt
        .block_on(client::undelete(&config, &gone.file_id))
        .unwrap_err();
    assert!(live.to_string().contains("is not in the trash"), "{live}");
    let missing = rt
        .block_on(client::file_history(&config, "no/such.txt"))
        .unwrap_err();
    assert!(
        missing.to_string().contains("no file 'no/such.txt'"),
        "{missing}"
    );
    let bad = rt
        .block_on(client::file_history(&config, "../escape"))
        .unwrap_err();
    assert!(bad.to_string().contains("not a valid file name"), "{bad}");
    assert!(has_bytes(&laptop, "docs/notes.txt", b"first draft"));
}

#[test]
fn the_status_lists_the_devices_online() {
    let server = Server::start(None).expect("server starts");
    let (laptop, desktop) = signed_in_pair(&server, "presence@example.com");
    let id = |d: &Device| d.config()["device_id"].as_str().unwrap().to_owned();
    let (laptop_id, desktop_id) = (id(&laptop), id(&desktop));
    let online = |d: &Device| -> Vec<String> {
        d.status()
            .and_then(|s| serde_json::from_value(s["online_devices"].clone()).ok())
            .unwrap_or_default()
    };
    let _pa = laptop.start_sync().unwrap();
    let mut pb = desktop.start_sync().unwrap();
    let mut both = vec![laptop_id.clone(), desktop_id];
    both.sort();
    assert!(
        wait_for(SETTLE, || online(&laptop) == both).is_some(),
        "laptop sees {:?}, expected {both:?}\n{}",
        online(&laptop),
        laptop.log()
    );
    pb.stop();
    assert!(
        wait_for(SETTLE, || online(&laptop) == [laptop_id.clone()]).is_some(),
        "after the desktop stopped, the laptop sees {:?}",
        online(&laptop)
    );
}
