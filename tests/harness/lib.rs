//! Harness for SyncSphere's end-to-end tests: starts the real `syncsphere-server` and real
//! `syncsphere` client processes on loopback, each in its own temporary directory, and stops
//! exactly the processes it started.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use syncsphere_protocol::endpoint::Endpoint as _;

pub mod cognito;
pub mod gateway;
pub mod keychain;
pub mod push;
pub mod ws_gateway;

pub const PASSWORD: &str = "Correct-horse-battery-9";

/// Directory holding the workspace's binaries (`target/debug`), or `SYNCSPHERE_BIN_DIR`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SYNCSPHERE_BIN_DIR") {
        return dir.into();
    }
    // Test executables live in target/<profile>/deps.
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo build --bins`)",
        path.display()
    );
    path
}

/// A child process that is terminated (SIGTERM, then SIGKILL) when dropped.
pub struct Process {
    child: Child,
    pub name: String,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash or power loss would end it: no cleanup runs.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().ok().flatten() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL.
    pub fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running `syncsphere-server` with its own data directory.
pub struct Server {
    pub url: String,
    pub process: Process,
    data: tempfile::TempDir,
    database_url: Option<String>,
    extra_args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl Server {
    /// Starts the server on a free loopback port: embedded SQLite when `database_url` is `None`.
    pub fn start(database_url: Option<&str>) -> anyhow::Result<Self> {
        Self::start_with(database_url, &[])
    }

    /// Like [`Server::start`], with extra command-line flags.
    pub fn start_with(database_url: Option<&str>, extra_args: &[&str]) -> anyhow::Result<Self> {
        Self::start_at("127.0.0.1:0", database_url, extra_args)
    }

    /// Like [`Server::start_with`], listening on `listen` (e.g. a port chosen beforehand with
    /// [`free_loopback_port`], so the flags can name the server's own URL).
    pub fn start_at(
        listen: &str,
        database_url: Option<&str>,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_env(listen, database_url, extra_args, &[])
    }

    /// Like [`Server::start_at`], with extra environment variables (e.g. AWS credentials).
    pub fn start_env(
        listen: &str,
        database_url: Option<&str>,
        extra_args: &[&str],
        envs: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let database_url = database_url.map(str::to_owned);
        let extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let envs: Vec<(String, String)> = envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (process, url) = spawn_server(
            data.path(),
            listen,
            database_url.as_deref(),
            &extra_args,
            &envs,
        )?;
        Ok(Server {
            url,
            process,
            data,
            database_url,
            extra_args,
            envs,
        })
    }

    /// The server's data directory (metadata database, blobs).
    pub fn data_dir(&self) -> &std::path::Path {
        self.data.path()
    }

    /// Number of blobs (whole contents and chunks) the server stores, over all users.
    pub fn blob_count(&self) -> usize {
        fn walk(dir: &std::path::Path) -> usize {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| {
                    let path = e.path();
                    if path.file_name().is_some_and(|n| n == ".tmp") {
                        0
                    } else if path.is_dir() {
                        walk(&path)
                    } else {
                        1
                    }
                })
                .sum()
        }
        walk(&self.data.path().join("blobs"))
    }

    /// Stops the server (SIGTERM) and keeps its data for [`Server::restart`].
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Starts the server again on the same address and data, with other flags.
    pub fn restart_with(&mut self, extra_args: &[&str]) -> anyhow::Result<()> {
        self.extra_args = extra_args.iter().map(|s| s.to_string()).collect();
        self.restart()
    }

    /// Starts the server again on the same address with the same data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.process.stop();
        let addr = self.url.trim_start_matches("http://").to_owned();
        let (process, url) = spawn_server(
            self.data.path(),
            &addr,
            self.database_url.as_deref(),
            &self.extra_args,
            &self.envs,
        )?;
        assert_eq!(url, self.url, "restarted on another address");
        self.process = process;
        Ok(())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("server.log")).unwrap_or_default()
    }
}

fn spawn_server(
    data: &Path,
    listen: &str,
    database_url: Option<&str>,
    extra_args: &[String],
    envs: &[(String, String)],
) -> anyhow::Result<(Process, String)> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.join("server.log"))?;
    let mut cmd = Command::new(bin("syncsphere-server"));
    cmd.arg("--listen")
        .arg(listen)
        .arg("--data-dir")
        .arg(data)
        .args(extra_args)
        .env_remove("DATABASE_URL")
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(log);
    if let Some(url) = database_url {
        cmd.env("DATABASE_URL", url);
    }
    let mut child = cmd.spawn().context("starting syncsphere-server")?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("syncsphere-server listening on ") {
                let url = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = tx.send(url);
            }
        }
    });
    let process = Process {
        child,
        name: "server".into(),
    };
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(url) => Ok((process, url)),
        Err(_) => {
            let log = std::fs::read_to_string(data.join("server.log")).unwrap_or_default();
            bail!("server did not start; its log:\n{log}");
        }
    }
}

/// A command's output and errors, as one text (for assertions and their messages).
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Two devices of one account: `laptop` signs up, `desktop` signs in.
pub fn signed_in_pair(server: &Server, email: &str) -> (Device, Device) {
    let (a, b) = (
        Device::new("laptop").expect("laptop device"),
        Device::new("desktop").expect("desktop device"),
    );
    a.signup(server, email);
    b.login(server, email);
    (a, b)
}

/// One device: a config directory and a sync folder.
pub struct Device {
    pub name: String,
    pub config_dir: PathBuf,
    pub folder: PathBuf,
    /// Environment every `syncsphere` command of this device gets (e.g. a session bus).
    pub env: Vec<(String, String)>,
    _root: tempfile::TempDir,
}

impl Device {
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let root = tempfile::tempdir()?;
        Ok(Device {
            name: name.into(),
            config_dir: root.path().join("config"),
            folder: root.path().join("SyncSphere"),
            env: Vec::new(),
            _root: root,
        })
    }

    fn cli(&self) -> Command {
        let mut cmd = Command::new(bin("syncsphere"));
        cmd.arg("--config-dir")
            .arg(&self.config_dir)
            .env("SYNCSPHERE_PASSWORD", PASSWORD)
            // This device's own administrator config (none until `set_system_config`), never
            // the machine's /etc/syncsphere.
            .env("SYNCSPHERE_SYSTEM_CONFIG", self.system_config_path())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn system_config_path(&self) -> PathBuf {
        self._root.path().join("system-config.toml")
    }

    /// A device whose commands use `password` (e.g. one a Cognito pool's policy accepts).
    pub fn with_password(name: &str, password: &str) -> anyhow::Result<Self> {
        let mut device = Self::new(name)?;
        device
            .env
            .push(("SYNCSPHERE_PASSWORD".into(), password.to_owned()));
        Ok(device)
    }

    /// Writes the administrator's system config this device's commands read.
    pub fn set_system_config(&self, toml: &str) {
        std::fs::write(self.system_config_path(), toml).expect("writes the system config");
    }

    /// Runs `signup` or `login` (with extra flags); returns the process output.
    pub fn account(
        &self,
        verb: &str,
        server: &Server,
        email: &str,
    ) -> anyhow::Result<std::process::Output> {
        self.account_with(verb, server, email, &[])
    }

    pub fn account_with(
        &self,
        verb: &str,
        server: &Server,
        email: &str,
        extra: &[&str],
    ) -> anyhow::Result<std::process::Output> {
        Ok(self
            .cli()
            .args([verb, "--server", &server.url, "--email", email])
            .args(extra)
            .output()?)
    }

    /// Runs any `syncsphere` subcommand with this device's config directory.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.cli().args(args).output().expect("runs syncsphere")
    }

    /// `syncsphere devices --json`, asserting that it succeeds.
    pub fn devices(&self) -> serde_json::Value {
        let out = self.run(&["devices", "--json"]);
        assert!(
            out.status.success(),
            "devices: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("devices --json prints JSON")
    }

    /// `signup`, asserting that it succeeds.
    pub fn signup(&self, server: &Server, email: &str) {
        let out = self
            .account("signup", server, email)
            .expect("runs syncsphere");
        assert!(
            out.status.success(),
            "signup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `login`, asserting that it succeeds.
    pub fn login(&self, server: &Server, email: &str) {
        let out = self
            .account("login", server, email)
            .expect("runs syncsphere");
        assert!(
            out.status.success(),
            "login: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Whether the running sync says it is connected and up to date.
    pub fn is_up_to_date(&self) -> bool {
        self.status()
            .is_some_and(|s| s["connected"] == true && s["state"] == "up_to_date")
    }

    pub fn start_sync(&self) -> anyhow::Result<Process> {
        self.start_sync_with(&[])
    }

    /// `syncsphere sync` with extra flags (e.g. bandwidth limits).
    pub fn start_sync_with(&self, extra: &[&str]) -> anyhow::Result<Process> {
        let log = std::fs::File::create(self._root.path().join("sync.log"))?;
        let child = self
            .cli()
            .args(["sync", "--folder"])
            .arg(&self.folder)
            .args(["--device-name", &self.name])
            .args(extra)
            .env("RUST_LOG", "info,syncsphere_sync_client=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(Process {
            child,
            name: self.name.clone(),
        })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._root.path().join("sync.log")).unwrap_or_default()
    }

    /// The session tokens the client stored.
    pub fn session(&self) -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(self.config_dir.join("session.json")).expect("session.json"),
        )
        .expect("valid session.json")
    }

    /// The `status.json` the running sync writes.
    pub fn status(&self) -> Option<serde_json::Value> {
        let bytes = std::fs::read(self.config_dir.join("status.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn config(&self) -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(self.config_dir.join("config.json")).expect("config.json"),
        )
        .expect("valid config.json")
    }

    pub fn access_token(&self) -> String {
        self.session()["access_token"]
            .as_str()
            .expect("access token")
            .to_owned()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.folder.join(rel)
    }
}

/// Whether `rel` exists on both devices with the same bytes.
pub fn same_bytes(a: &Device, b: &Device, rel: &str) -> bool {
    match (std::fs::read(a.path(rel)), std::fs::read(b.path(rel))) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Polls `cond` every 5 ms until it holds or `timeout` passes; returns the time it took.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One call of the server's Cognito API (the built-in provider), answered with its JSON body
/// whatever the status (errors carry `__type`).
pub async fn cognito_api(server_url: &str, op: &str, body: serde_json::Value) -> serde_json::Value {
    let url = format!(
        "{server_url}{}",
        syncsphere_protocol::endpoint::CognitoApiSlash::PATH
    );
    cognito::amz_json(&url, op, body).await.1
}

/// Signs in through the server's Cognito API like a tool or a web page would, returning an
/// access token that is bound to `device_key` when one is given and to no device otherwise.
pub async fn cognito_token(server_url: &str, email: &str, device_key: Option<&str>) -> String {
    let mut params = serde_json::json!({"USERNAME": email, "PASSWORD": PASSWORD});
    if let Some(key) = device_key {
        params["DEVICE_KEY"] = key.into();
    }
    let body = serde_json::json!({
        "AuthFlow": "USER_PASSWORD_AUTH",
        "ClientId": "syncsphere-desktop",
        "AuthParameters": params,
    });
    let reply = cognito_api(server_url, "InitiateAuth", body).await;
    reply["AuthenticationResult"]["AccessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("sign-in failed: {reply}"))
        .to_owned()
}

/// Every file under `root` (relative paths, `/`-separated), leaving out the client's state
/// folder `.syncsphere`.
pub fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if e.file_name() == ".syncsphere" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// Writes `len` bytes of noise to `path` without holding them in memory: 4 MiB of [`noise`],
/// each copy XORed with its own index, so no two chunks of the file repeat.
pub fn write_noise_file(path: &Path, len: usize, seed: u64) -> std::io::Result<()> {
    use std::io::Write;
    const SEGMENT: usize = 4 << 20;
    let base = noise(SEGMENT, seed);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut segment = vec![0u8; SEGMENT];
    let mut left = len;
    for i in 0u64.. {
        if left == 0 {
            break;
        }
        let salt = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for (out, b) in segment.chunks_exact_mut(8).zip(base.chunks_exact(8)) {
            let word = u64::from_le_bytes(b.try_into().unwrap()) ^ salt;
            out.copy_from_slice(&word.to_le_bytes());
        }
        let n = left.min(SEGMENT);
        out.write_all(&segment[..n])?;
        left -= n;
    }
    out.flush()
}

/// SHA-256 of a file, hex (for comparing files too large to hold twice).
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Deterministic pseudo-random bytes (xorshift64): incompressible test data whose chunks do
/// not repeat. Seeds differing only in the lowest bit give the same bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `GET url` with a bearer token, parsed as JSON (panics on transport or parse errors).
pub async fn get_json(url: &str, token: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("GET request")
        .json()
        .await
        .expect("JSON body")
}

/// `PUT /v1/devices/{device}` with `token` (a device's registration, which binds the token's
/// sign-in session to it); the response's status.
pub async fn register_device(server_url: &str, token: &str, device: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .put(format!("{server_url}/v1/devices/{device}"))
        .bearer_auth(token)
        .json(&serde_json::json!({"name": device}))
        .send()
        .await
        .expect("PUT /v1/devices/{id}")
        .status()
}

/// A process's resident memory in bytes (`VmRSS`).
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// The server's `/metrics`, as name → value of each unlabelled sample.
pub async fn metrics(server_url: &str) -> std::collections::HashMap<String, f64> {
    let text = reqwest::get(format!("{server_url}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((name.to_owned(), value.split(' ').next()?.parse().ok()?))
        })
        .collect()
}

/// Waits until both devices say they are up to date (panics with both logs after `timeout`).
pub fn wait_both_up_to_date(a: &Device, b: &Device, timeout: Duration) {
    assert!(
        wait_for(timeout, || a.is_up_to_date() && b.is_up_to_date()).is_some(),
        "A:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
}

/// A loopback port free right now (bound and released: another process could take it, which
/// on a test machine does not happen in the instant before it is used).
pub fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
