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
