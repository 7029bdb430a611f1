//! A real Secret Service for keychain tests: a private D-Bus session bus and GNOME Keyring's
//! daemon on it (Debian's `gnome-keyring`, started unlocked with a throwaway login keyring in
//! a temporary data directory), both ended by PID on drop.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::{Process, wait_for};

pub struct SecretService {
    /// `DBUS_SESSION_BUS_ADDRESS` of the private bus.
    pub bus_address: String,
    bus_pid: u32,
    _daemon: Process,
    root: tempfile::TempDir,
}

impl SecretService {
    pub fn start() -> anyhow::Result<Self> {
        for tool in [
            "dbus-daemon",
            "dbus-send",
            "gnome-keyring-daemon",
            "secret-tool",
        ] {
            if which(tool).is_none() {
                bail!("{tool} is missing: install dbus, gnome-keyring and libsecret-tools");
            }
        }
        let root = tempfile::tempdir()?;
        let runtime = root.path().join("run");
        std::fs::create_dir_all(&runtime)?;
        std::fs::set_permissions(
            &runtime,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
        let out = Command::new("dbus-daemon")
            .args(["--session", "--fork", "--print-address=1", "--print-pid=1"])
            .output()
            .context("starting dbus-daemon")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let (Some(bus_address), Some(pid)) = (lines.next(), lines.next()) else {
            bail!("dbus-daemon printed no address: {text}");
        };
        let bus_pid: u32 = pid.trim().parse().context("dbus-daemon's pid")?;
        let bus_address = bus_address.trim().to_owned();
        let mut daemon = Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env("DBUS_SESSION_BUS_ADDRESS", &bus_address)
            .env("HOME", root.path())
            .env("XDG_DATA_HOME", root.path().join("data"))
            .env("XDG_RUNTIME_DIR", &runtime)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting gnome-keyring-daemon")?;
        // The login keyring's password, read once from stdin (then closed).
        daemon
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(b"a throwaway keyring password")?;
        let service = SecretService {
            bus_address,
            bus_pid,
            _daemon: Process {
                child: daemon,
                name: "gnome-keyring-daemon".into(),
            },
            root,
        };
        let owned = wait_for(Duration::from_secs(10), || service.name_owned());
        if owned.is_none() {
            bail!("gnome-keyring-daemon did not take org.freedesktop.secrets on the bus");
        }
        Ok(service)
    }

    fn name_owned(&self) -> bool {
        Command::new("dbus-send")
            .args([
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                "string:org.freedesktop.secrets",
            ])
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus_address)
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("boolean true"))
    }

    /// The environment a client needs to use this keychain.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("DBUS_SESSION_BUS_ADDRESS".into(), self.bus_address.clone()),
            (
                "XDG_RUNTIME_DIR".into(),
                self.root.path().join("run").display().to_string(),
            ),
        ]
    }

    /// The secret stored under SyncSphere's service for `account`, read with libsecret's
    /// `secret-tool` (another client than the one under test).
    pub fn lookup(&self, account: &str) -> Option<String> {
        let out = Command::new("secret-tool")
            .args(["lookup", "service", "SyncSphere", "username", account])
            .envs(self.env())
            .output()
            .ok()?;
        (out.status.success() && !out.stdout.is_empty())
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.bus_pid.to_string()).status();
    }
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| std::path::Path::new(dir).join(tool))
        .find(|p| p.is_file())
}
