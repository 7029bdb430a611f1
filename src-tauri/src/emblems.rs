//! The emblem socket: while sync runs, file-manager extensions (our Nautilus one,
//! `packaging/nautilus/syncsphere_emblems.py`) ask it which emblem a file gets.
//!
//! Where: `$XDG_RUNTIME_DIR/syncsphere/emblems.sock`, or `emblems.sock` in the config dir when
//! `XDG_RUNTIME_DIR` is unset; the directory is made mode 0700 and the socket 0600, so only
//! this user can connect.
//!
//! Protocol: lines of tab-separated fields, paths absolute and raw (bytes as the file system
//! has them; a path holding a newline cannot be asked about).
//! - request `STATE\t<path>\n` → reply `STATE\t<word>\t<path>\n`, where word is `synced`,
//!   `syncing`, `conflict`, `error`, `paused`, `ignored` or `none` (outside the synced
//!   folder, the client's `.syncsphere` folder, missing files) — see
//!   `syncsphere_sync_client::file_sync_state`;
//! - a request the server does not understand gets `ERROR\t<reason>\n` (a line longer than
//!   [`MAX_LINE`] also ends the connection); so does one it cannot answer now;
//! - pushed at any time: `CHANGED\t<path>\n`, the answer about that path may have changed —
//!   a transfer started or finished in it, it is a newly recent file, or it was answered
//!   "waiting" and the engine's state changed or it finished a pass. `CHANGED\t<folder>/\n`
//!   (trailing `/`) means everything under that folder (a client that fell behind).
//!
//! **Boundary**: answers come from `sync-client`'s `file_state` (the status stream, metadata
//! and the index read-only); this module never reads or writes a synced file.

use std::path::{Path, PathBuf};

use syncsphere_sync_client::Status;
use tokio::sync::watch;

/// Longest request line: Linux paths are at most 4096 bytes.
pub(crate) const MAX_LINE: usize = 8192;

const SOCKET_NAME: &str = "emblems.sock";

/// Where the socket lives: in `runtime_dir` (an absolute `XDG_RUNTIME_DIR`) or `config_dir`.
pub(crate) fn socket_path(runtime_dir: Option<&Path>, config_dir: &Path) -> PathBuf {
    runtime_dir
        .filter(|d| d.is_absolute())
        .map(|d| d.join("syncsphere"))
        .unwrap_or_else(|| config_dir.to_path_buf())
        .join(SOCKET_NAME)
}

/// The running socket server; [`EmblemServer::stop`] takes the socket away.
pub(crate) struct EmblemServer {
    #[cfg(unix)]
    inner: imp::Running,
}

impl EmblemServer {
    /// Serves the socket for the sync whose status is `status`, on systems with a file
    /// manager extension. Failures are logged, never fatal: sync works without emblems.
    pub(crate) async fn start(config_dir: &Path, status: watch::Receiver<Status>) -> Option<Self> {
        if !crate::file_manager::AVAILABLE {
            return None;
        }
        #[cfg(unix)]
        {
            let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
            let socket = socket_path(runtime.as_deref(), config_dir);
            match imp::Running::bind(socket.clone(), config_dir.to_path_buf(), status).await {
                Ok(inner) => {
                    tracing::info!(socket = %socket.display(), "emblem socket ready");
                    Some(EmblemServer { inner })
                }
                Err(err) => {
                    tracing::warn!(socket = %socket.display(), "no file emblems: {err:#}");
                    None
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = (config_dir, status);
            None
        }
    }

    pub(crate) async fn stop(self) {
        #[cfg(unix)]
        self.inner.stop().await;
    }
}

#[cfg(unix)]
mod imp {
    use std::collections::{BTreeSet, HashSet};
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt as _;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::sync::Mutex;

    use anyhow::Context as _;
    use syncsphere_sync_client::{FileStateReader, FileSyncState, Status, verified_since};
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
    use tokio::net::{UnixListener, UnixStream};
    use tokio::sync::{broadcast, watch};
    use tokio::task::JoinHandle;

    use super::MAX_LINE;

    /// Paths answered "waiting" that are re-announced when the engine moves on; beyond this
    /// many the whole folder is announced instead.
    const MAX_WAITING: usize = 10_000;

    /// What changed, for the clients: a path relative to the folder, or everything.
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
    pub(super) enum Changed {
        Path(String),
        All,
    }

    /// Paths whose answers may change without the path changing, and which "generation" of
    /// the engine's progress they were answered in.
    #[derive(Default)]
    struct Waiting {
        paths: HashSet<String>,
        overflowed: bool,
        generation: u64,
    }

    struct Shared {
        config_dir: PathBuf,
        status: watch::Receiver<Status>,
        /// From [`verified_since`] over the status stream.
        verified_ms: Mutex<Option<i64>>,
        waiting: Mutex<Waiting>,
        reader: tokio::sync::Mutex<Option<FileStateReader>>,
        changes: broadcast::Sender<Changed>,
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) struct Running {
        socket: PathBuf,
        stop: watch::Sender<bool>,
        tasks: [JoinHandle<()>; 2],
    }

    impl Running {
        pub(super) async fn bind(
            socket: PathBuf,
            config_dir: PathBuf,
            status: watch::Receiver<Status>,
        ) -> anyhow::Result<Self> {
            use std::os::unix::fs::PermissionsExt as _;
            let dir = socket.parent().context("the socket path has no folder")?;
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("making {} private", dir.display()))?;
            if UnixStream::connect(&socket).await.is_ok() {
                anyhow::bail!("another SyncSphere app serves {}", socket.display());
            }
            // Left behind by an app that did not stop cleanly.
            let _ = std::fs::remove_file(&socket);
            let listener = UnixListener::bind(&socket)
                .with_context(|| format!("listening on {}", socket.display()))?;
            std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("making {} private", socket.display()))?;
            let verified = verified_since(None, &status.borrow());
            let shared = Arc::new(Shared {
                config_dir,
                status: status.clone(),
                verified_ms: Mutex::new(verified),
                waiting: Mutex::default(),
                reader: tokio::sync::Mutex::new(None),
                changes: broadcast::channel(1024).0,
            });
            let (stop, stopped) = watch::channel(false);
            let tracker = tokio::spawn(track(shared.clone(), status, stopped.clone()));
            let acceptor = tokio::spawn(accept(listener, shared, stopped));
            Ok(Running {
                socket,
                stop,
                tasks: [tracker, acceptor],
            })
        }

        pub(super) async fn stop(self) {
            self.stop.send_replace(true);
            for task in self.tasks {
                let _ = task.await;
            }
            if let Err(err) = std::fs::remove_file(&self.socket)
                && err.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(socket = %self.socket.display(), "could not remove: {err}");
            }
        }
    }

    /// Turns successive statuses into `CHANGED` announcements.
    async fn track(
        shared: Arc<Shared>,
        mut status: watch::Receiver<Status>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut previous = status.borrow_and_update().clone();
        loop {
            tokio::select! {
                changed = status.changed() => if changed.is_err() { return },
                _ = stop.changed() => return,
            }
            let current = status.borrow_and_update().clone();
            let before = *lock(&shared.verified_ms);
            let after = verified_since(before, &current);
            // The new moment is in place before anyone hears about it and asks again.
            *lock(&shared.verified_ms) = after;
            let moved_on = before != after || previous.state != current.state;
            let changes = {
                let mut waiting = lock(&shared.waiting);
                changed_paths(&previous, &current, moved_on, &mut waiting)
            };
            for change in changes {
                let _ = shared.changes.send(change);
            }
            previous = current;
        }
    }

    /// What `current` may have changed since `previous`: the files whose transfers started or
    /// ended and the newly recent ones (with their folders, whose answers depend on them), and
    /// — when the engine moved on (`moved_on`) — the folder itself and every path answered
    /// "waiting" so far.
    fn changed_paths(
        previous: &Status,
        current: &Status,
        moved_on: bool,
        waiting: &mut Waiting,
    ) -> BTreeSet<Changed> {
        let mut out = BTreeSet::new();
        let mut with_folders = |path: &str| {
            let mut path = path;
            out.insert(Changed::Path(path.to_owned()));
            while let Some((parent, _)) = path.rsplit_once('/') {
                out.insert(Changed::Path(parent.to_owned()));
                path = parent;
            }
        };
        let moving = |s: &Status| -> HashSet<String> {
            s.transfers.iter().map(|t| t.path.clone()).collect()
        };
        let (before, now) = (moving(previous), moving(current));
        for path in before.symmetric_difference(&now) {
            with_folders(path);
        }
        for recent in current
            .recent
            .iter()
            .filter(|r| !previous.recent.contains(r))
        {
            with_folders(&recent.path);
        }
        if moved_on {
            out.insert(Changed::Path(String::new()));
            out.extend(waiting.paths.drain().map(Changed::Path));
            if std::mem::take(&mut waiting.overflowed) {
                out.insert(Changed::All);
            }
            waiting.generation += 1;
        }
        out
    }

    async fn accept(listener: UnixListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(err) => {
                        tracing::warn!("emblem socket: {err}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
                _ = stop.changed() => return,
            };
            let changes = shared.changes.subscribe();
            tokio::spawn(serve_client(stream, shared.clone(), changes, stop.clone()));
        }
    }

    async fn serve_client(
        stream: UnixStream,
        shared: Arc<Shared>,
        mut changes: broadcast::Receiver<Changed>,
        mut stop: watch::Receiver<bool>,
    ) {
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let mut line = Vec::new();
        loop {
            let mut limited = (&mut read).take((MAX_LINE + 1 - line.len()) as u64);
            let out = tokio::select! {
                // `read_until` keeps what it read in `line` when another branch wins.
                got = limited.read_until(b'\n', &mut line) => {
                    match got {
                        Err(_) => return,
                        Ok(_) if line.ends_with(b"\n") => {
                            line.pop();
                            let reply = answer(&shared, &line).await;
                            line.clear();
                            reply
                        }
                        Ok(_) if line.len() > MAX_LINE => {
                            let _ = write.write_all(b"ERROR\trequest line too long\n").await;
                            return;
                        }
                        // End of stream (a last line without its newline is not a request).
                        Ok(_) => return,
                    }
                }
                change = changes.recv() => {
                    let folder = PathBuf::from(&shared.status.borrow().folder);
                    match change {
                        // (`join("")` would add the trailing `/` that means "everything".)
                        Ok(Changed::Path(rel)) if rel.is_empty() => changed_line(&folder, false),
                        Ok(Changed::Path(rel)) => changed_line(&folder.join(rel), false),
                        Ok(Changed::All) | Err(broadcast::error::RecvError::Lagged(_)) => {
                            changed_line(&folder, true)
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
                _ = stop.changed() => return,
            };
            if write.write_all(&out).await.is_err() {
                return;
            }
        }
    }

    fn changed_line(path: &Path, everything_under: bool) -> Vec<u8> {
        let mut out = b"CHANGED\t".to_vec();
        out.extend_from_slice(path.as_os_str().as_bytes());
        if everything_under && !out.ends_with(b"/") {
            out.push(b'/');
        }
        out.push(b'\n');
        out
    }

    fn error_line(reason: &str) -> Vec<u8> {
        format!("ERROR\t{reason}\n").into_bytes()
    }

    /// The reply to one request line (without its newline).
    async fn answer(shared: &Shared, line: &[u8]) -> Vec<u8> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(raw) = line.strip_prefix(b"STATE\t") else {
            return error_line("unknown request; expected STATE<TAB><absolute path>");
        };
        let path = Path::new(OsStr::from_bytes(raw));
        if !path.is_absolute() {
            return error_line("the path must be absolute");
        }
        let word = match state_of(shared, path).await {
            Ok(state) => state.word(),
            Err(reason) => return error_line(&reason),
        };
        let mut out = format!("STATE\t{word}\t").into_bytes();
        out.extend_from_slice(raw);
        out.push(b'\n');
        out
    }

    async fn state_of(shared: &Shared, path: &Path) -> Result<FileSyncState, String> {
        let status = shared.status.borrow().clone();
        let folder = PathBuf::from(&status.folder);
        let Some(rel) = syncsphere_sync_client::relative_path(&folder, path) else {
            return Ok(FileSyncState::None);
        };
        let generation = lock(&shared.waiting).generation;
        let verified = *lock(&shared.verified_ms);
        let answered = {
            let mut reader = shared.reader.lock().await;
            if reader.is_none() {
                *reader = Some(
                    FileStateReader::open(&shared.config_dir, &folder)
                        .await
                        .map_err(|e| format!("the local index cannot be read: {e}"))?,
                );
            }
            let reader = reader.as_mut().expect("opened above");
            reader
                .states(&status, verified, &[path.to_path_buf()])
                .await
                .map(|states| states[0])
        };
        let waiting = match &answered {
            Ok(state) => state.is_waiting(),
            // Re-announced when the engine moves on, so the client asks again.
            Err(_) => true,
        };
        if waiting {
            let mut w = lock(&shared.waiting);
            if w.generation != generation {
                // The engine moved on while we looked: the answer may be stale already.
                let _ = shared.changes.send(Changed::Path(rel));
            } else if w.paths.len() < MAX_WAITING {
                w.paths.insert(rel);
            } else {
                w.overflowed = true;
            }
        }
        answered.map_err(|e| {
            tracing::debug!("emblem answer failed: {e}");
            format!("cannot tell now: {e}")
        })
    }

    #[cfg(test)]
    mod tests {
        use std::os::unix::fs::PermissionsExt as _;
        use std::time::Duration;

        use syncsphere_sync_client::{Direction, SyncState, TransferProgress};
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
        use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

        use super::*;

        fn transfer(path: &str) -> TransferProgress {
            TransferProgress {
                path: path.to_owned(),
                direction: Direction::Download,
                done: 0,
                total: 1,
            }
        }

        fn status(folder: &Path, state: SyncState) -> Status {
            let mut s = Status::new(folder.display().to_string(), "a@b.c".into(), "pc".into());
            s.state = state;
            s.updated_ms = 1;
            s
        }

        struct Client {
            read: BufReader<OwnedReadHalf>,
            write: OwnedWriteHalf,
        }

        impl Client {
            async fn connect(socket: &Path) -> Self {
                let (read, write) = UnixStream::connect(socket).await.unwrap().into_split();
                Client {
                    read: BufReader::new(read),
                    write,
                }
            }

            async fn send(&mut self, bytes: &[u8]) {
                self.write.write_all(bytes).await.unwrap();
            }

            async fn line(&mut self) -> String {
                let mut line = String::new();
                tokio::time::timeout(Duration::from_secs(5), self.read.read_line(&mut line))
                    .await
                    .expect("a line within 5 s")
                    .unwrap();
                line
            }

            /// The next line that is not a pushed `CHANGED`.
            async fn reply(&mut self) -> String {
                loop {
                    let line = self.line().await;
                    if !line.starts_with("CHANGED\t") {
                        return line;
                    }
                }
            }

            async fn ask(&mut self, path: &Path) -> String {
                self.send(format!("STATE\t{}\n", path.display()).as_bytes())
                    .await;
                self.reply().await
            }
        }

        struct Fixture {
            _dirs: [tempfile::TempDir; 2],
            folder: PathBuf,
            socket: PathBuf,
            status: watch::Sender<Status>,
            server: Running,
        }

        async fn fixture(state: SyncState) -> Fixture {
            let config = tempfile::tempdir().unwrap();
            let synced = tempfile::tempdir().unwrap();
            let folder = synced.path().to_path_buf();
            let socket = super::super::socket_path(Some(config.path()), config.path());
            let (status, rx) = watch::channel(status(&folder, state));
            let server = Running::bind(socket.clone(), config.path().to_path_buf(), rx)
                .await
                .unwrap();
            Fixture {
                _dirs: [config, synced],
                folder,
                socket,
                status,
                server,
            }
        }

        #[test]
        fn socket_goes_to_the_runtime_dir_else_the_config_dir() {
            let config = Path::new("/home/ada/.config/syncsphere");
            assert_eq!(
                super::super::socket_path(Some(Path::new("/run/user/1000")), config),
                PathBuf::from("/run/user/1000/syncsphere/emblems.sock")
            );
            for runtime in [None, Some(Path::new("relative"))] {
                assert_eq!(
                    super::super::socket_path(runtime, config),
                    config.join("emblems.sock")
                );
            }
        }

        #[tokio::test]
        async fn answers_states_and_refuses_bad_requests_without_dropping_the_client() {
            let f = fixture(SyncState::Syncing).await;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(f.socket.parent().unwrap()), 0o700);
            assert_eq!(mode(&f.socket), 0o600);
            std::fs::create_dir_all(f.folder.join("d")).unwrap();
            std::fs::create_dir_all(f.folder.join(".syncsphere")).unwrap();
            for name in [
                "new.txt",
                "d/moving.bin",
                "r (conflicted copy from pc 2026-11-25 103015).txt",
                "notes.txt~",
                ".syncsphere/x",
                "tab\tin name.txt",
            ] {
                std::fs::write(f.folder.join(name), name).unwrap();
            }
            f.status
                .send_modify(|s| s.transfers = vec![transfer("d/moving.bin")]);
            let mut c = Client::connect(&f.socket).await;
            let check = |got: String, word: &str, path: &Path| {
                assert_eq!(got, format!("STATE\t{word}\t{}\n", path.display()));
            };
            for (name, word) in [
                ("new.txt", "syncing"),
                ("d/moving.bin", "syncing"),
                ("d", "syncing"),
                (
                    "r (conflicted copy from pc 2026-11-25 103015).txt",
                    "conflict",
                ),
                ("notes.txt~", "ignored"),
                (".syncsphere/x", "none"),
                ("gone.txt", "none"),
                ("tab\tin name.txt", "error"),
                ("", "syncing"),
            ] {
                let path = f.folder.join(name);
                check(c.ask(&path).await, word, &path);
            }
            check(
                c.ask(Path::new("/etc/passwd")).await,
                "none",
                Path::new("/etc/passwd"),
            );
            for bad in [
                &b"HELLO\n"[..],
                b"STATE\n",
                b"STATE\trelative/path\n",
                b"STATE /no/tab\n",
                b"\n",
            ] {
                c.send(bad).await;
                let got = c.reply().await;
                assert!(got.starts_with("ERROR\t"), "{bad:?} got {got:?}");
            }
            // Not UTF-8: answered with the same bytes.
            c.send(b"STATE\t/elsewhere/\xff.txt\n").await;
            let mut raw = Vec::new();
            while raw.is_empty() || raw.starts_with(b"CHANGED\t") {
                raw.clear();
                c.read.read_until(b'\n', &mut raw).await.unwrap();
            }
            assert_eq!(raw, b"STATE\tnone\t/elsewhere/\xff.txt\n");
            // Still serving after all that; the paused engine now says so.
            f.status.send_modify(|s| {
                s.state = SyncState::Paused;
                s.transfers.clear();
            });
            let path = f.folder.join("new.txt");
            check(c.ask(&path).await, "paused", &path);

            // An overlong line is refused and ends that connection only.
            let mut long = Client::connect(&f.socket).await;
            long.send(&vec![b'x'; MAX_LINE + 10]).await;
            assert_eq!(long.line().await, "ERROR\trequest line too long\n");
            assert_eq!(long.line().await, "", "then the server hangs up");
            let mut fresh = Client::connect(&f.socket).await;
            check(fresh.ask(&path).await, "paused", &path);

            let socket = f.socket.clone();
            f.server.stop().await;
            assert!(!socket.exists(), "stop removes the socket");
        }

        #[tokio::test]
        async fn announces_transfers_recent_files_and_waiting_answers() {
            let f = fixture(SyncState::Syncing).await;
            std::fs::create_dir_all(f.folder.join("d")).unwrap();
            std::fs::write(f.folder.join("waiting.txt"), "w").unwrap();
            let mut c = Client::connect(&f.socket).await;
            let waiting = f.folder.join("waiting.txt");
            assert!(c.ask(&waiting).await.starts_with("STATE\tsyncing\t"));

            f.status
                .send_modify(|s| s.transfers = vec![transfer("d/e/big.iso")]);
            let changed = |rel: &str| format!("CHANGED\t{}\n", f.folder.join(rel).display());
            let mut got = BTreeSet::new();
            for _ in 0..3 {
                got.insert(c.line().await);
            }
            assert_eq!(
                got,
                BTreeSet::from([changed("d"), changed("d/e"), changed("d/e/big.iso")])
            );

            // Done: the transfer ends, the file is recent, the engine is up to date — the
            // answer about waiting.txt may have changed too, and so may the folder's.
            f.status.send_modify(|s| {
                s.transfers.clear();
                s.push_recent("d/e/big.iso", "downloaded", 5);
                s.state = SyncState::UpToDate;
                s.updated_ms = 5;
            });
            let mut got = BTreeSet::new();
            for _ in 0..5 {
                got.insert(c.line().await);
            }
            let root = format!("CHANGED\t{}\n", f.folder.display());
            assert_eq!(
                got,
                BTreeSet::from([
                    root,
                    changed("d"),
                    changed("d/e"),
                    changed("d/e/big.iso"),
                    changed("waiting.txt"),
                ])
            );
            // Announced once: it is no longer waiting until asked again.
            f.status.send_modify(|s| s.updated_ms = 6);
            let line = c.line().await;
            assert_eq!(line, format!("CHANGED\t{}\n", f.folder.display()));
            f.server.stop().await;
        }

        /// A session with the real server, recorded for the Nautilus extension's test
        /// (`tests/desktop/test_emblems.py` replays it), so both sides speak one protocol.
        /// `SYNCSPHERE_UPDATE_TRANSCRIPTS=1` rewrites it after a deliberate protocol change.
        const TRANSCRIPT: &str = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/packaging/nautilus/protocol-transcript.txt"
        );

        #[tokio::test]
        async fn the_recorded_transcript_is_what_the_server_says() {
            let f = fixture(SyncState::Syncing).await;
            std::fs::create_dir_all(f.folder.join("d")).unwrap();
            for name in [
                "new.txt",
                "d/moving.bin",
                "r (conflicted copy from pc 2026-11-25 103015).txt",
                "notes.txt~",
                "bad\\name.txt",
            ] {
                std::fs::write(f.folder.join(name), name).unwrap();
            }
            let mut c = Client::connect(&f.socket).await;
            f.status
                .send_modify(|s| s.transfers = vec![transfer("d/moving.bin")]);
            for _ in 0..2 {
                assert!(c.line().await.starts_with("CHANGED\t"));
            }
            let folder = f.folder.display().to_string();
            let requests = [
                "new.txt",
                "d/moving.bin",
                "d",
                "r (conflicted copy from pc 2026-11-25 103015).txt",
                "notes.txt~",
                "bad\\name.txt",
                "gone.txt",
            ]
            .map(|name| format!("STATE\t{folder}/{name}"));
            let mut transcript = String::new();
            let others = ["STATE\t/elsewhere/a.txt".to_owned(), "HELLO".to_owned()];
            for request in requests.iter().chain(&others) {
                c.send(format!("{request}\n").as_bytes()).await;
                transcript += &format!("> {request}\n< {}", c.line().await);
            }
            f.status.send_modify(|s| s.transfers.clear());
            for _ in 0..2 {
                transcript += &format!("< {}", c.line().await);
            }
            let transcript = transcript.replace(&folder, "{folder}");
            if std::env::var_os("SYNCSPHERE_UPDATE_TRANSCRIPTS").is_some() {
                std::fs::write(TRANSCRIPT, &transcript).unwrap();
            }
            let recorded = std::fs::read_to_string(TRANSCRIPT).unwrap_or_default();
            assert_eq!(
                recorded, transcript,
                "the protocol changed: check the extension, then rerun with \
                 SYNCSPHERE_UPDATE_TRANSCRIPTS=1"
            );
            f.server.stop().await;
        }

        #[test]
        fn too_many_waiting_paths_announce_the_whole_folder() {
            let folder = Path::new("/s");
            let before = status(folder, SyncState::Syncing);
            let after = status(folder, SyncState::UpToDate);
            let mut waiting = Waiting {
                overflowed: true,
                ..Waiting::default()
            };
            waiting.paths.insert("a".into());
            let got = changed_paths(&before, &after, true, &mut waiting);
            assert_eq!(
                got,
                BTreeSet::from([
                    Changed::Path(String::new()),
                    Changed::Path("a".into()),
                    Changed::All
                ])
            );
            assert!(!waiting.overflowed && waiting.paths.is_empty());
            assert_eq!(waiting.generation, 1);
            // Nothing moved: nothing to say.
            assert!(changed_paths(&after, &after, false, &mut waiting).is_empty());
        }
    }
}
