//! End to end: the session in the OS keychain. A real Secret Service (GNOME Keyring on a
//! private session bus), the real server and real `syncsphere` clients: `--keychain` keeps the
//! refresh token there and no `session.json`; sync starts from it (refreshing the access
//! token); `logout` removes it; without a keychain service the session falls back to the
//! private file; a keychain that cannot be reached later is reported, not taken as signed out.

use std::time::Duration;

use syncsphere_e2e::keychain::SecretService;
use syncsphere_e2e::{Device, Server, same_bytes, wait_for};

const SETTLE: Duration = Duration::from_secs(20);

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `signup --keychain`, asserting that it succeeds; returns what it printed.
fn keychain_signup(device: &Device, server: &Server, email: &str) -> String {
    let out = device
        .account_with("signup", server, email, &["--keychain"])
        .unwrap();
    assert!(
        out.status.success(),
        "signup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

fn account(device: &Device) -> String {
    device.config_dir.display().to_string()
}

#[test]
fn a_session_in_the_keychain_syncs_and_signing_out_removes_it() {
    let keychain = SecretService::start().expect("a Secret Service starts");
    let server = Server::start(None).expect("server starts");
    let mut laptop = Device::new("laptop").unwrap();
    laptop.env = keychain.env();
    let desktop = Device::new("desktop").unwrap();

    let printed = keychain_signup(&laptop, &server, "keys@example.com");
    assert!(printed.contains("kept in the keychain"), "{printed}");
    assert!(!laptop.config_dir.join("session.json").exists());
    assert_eq!(laptop.config()["session_storage"], "keychain");
    let secret = keychain
        .lookup(&account(&laptop))
        .expect("the keychain holds the session");
    assert!(secret.len() > 20, "a refresh token, not {secret:?}");
    assert!(
        !secret.contains("access_token"),
        "only the refresh token is stored"
    );

    // Sync runs from the keychain's refresh token: a file goes from the laptop to the desktop.
    desktop.login(&server, "keys@example.com");
    let _a = laptop.start_sync().unwrap();
    let _b = desktop.start_sync().unwrap();
    assert!(
        wait_for(SETTLE, || laptop.is_up_to_date() && desktop.is_up_to_date()).is_some(),
        "clients did not come online\n{}",
        laptop.log()
    );
    std::fs::write(
        laptop.path("from-keychain.txt"),
        b"signed in through the keychain",
    )
    .unwrap();
    assert!(
        wait_for(SETTLE, || same_bytes(
            &laptop,
            &desktop,
            "from-keychain.txt"
        ))
        .is_some(),
        "the file did not arrive\n{}",
        laptop.log()
    );
    drop(_a);

    let out = laptop.run(&["logout"]);
    assert!(
        out.status.success(),
        "logout: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        keychain.lookup(&account(&laptop)),
        None,
        "logout removes the secret"
    );
    let out = laptop.run(&["devices"]);
    assert!(!out.status.success(), "signed out, so no devices");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not signed in"));

    // Signing in again without --keychain puts the session in the file (and not the keychain).
    let out = laptop
        .account_with("login", &server, "keys@example.com", &[])
        .unwrap();
    assert!(out.status.success());
    assert!(laptop.config_dir.join("session.json").exists());
    assert_eq!(laptop.config()["session_storage"], "file");
    assert_eq!(keychain.lookup(&account(&laptop)), None);
}

#[test]
fn without_a_keychain_service_the_session_falls_back_to_the_private_file() {
    let server = Server::start(None).expect("server starts");
    let mut device = Device::new("laptop").unwrap();
    let no_bus = tempfile::tempdir().unwrap();
    let bus = format!("unix:path={}", no_bus.path().join("no-bus").display());
    device.env = vec![
        ("DBUS_SESSION_BUS_ADDRESS".into(), bus),
        (
            "XDG_RUNTIME_DIR".into(),
            no_bus.path().display().to_string(),
        ),
    ];
    let printed = keychain_signup(&device, &server, "nokeys@example.com");
    assert!(printed.contains("No keychain service"), "{printed}");
    assert_eq!(device.config()["session_storage"], "file");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(device.config_dir.join("session.json"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        device.run(&["devices"]).status.success(),
        "the file session works"
    );
}

#[test]
fn a_keychain_that_cannot_be_reached_is_reported_not_a_sign_out() {
    let keychain = SecretService::start().expect("a Secret Service starts");
    let server = Server::start(None).expect("server starts");
    let mut device = Device::new("laptop").unwrap();
    device.env = keychain.env();
    let printed = keychain_signup(&device, &server, "gone@example.com");
    assert!(printed.contains("kept in the keychain"), "{printed}");
    let kept = keychain.lookup(&account(&device)).expect("in the keychain");
    drop(keychain);

    // The keychain service is gone (say, the desktop session ended): commands say so.
    let no_bus = tempfile::tempdir().unwrap();
    device.env = vec![(
        "DBUS_SESSION_BUS_ADDRESS".into(),
        format!("unix:path={}", no_bus.path().join("no-bus").display()),
    )];
    let out = device.run(&["devices"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("keychain") && !err.contains("not signed in"),
        "{err}"
    );
    assert!(!device.config_dir.join("session.json").exists());
    assert_eq!(device.config()["session_storage"], "keychain");
    assert!(!kept.is_empty());
}
