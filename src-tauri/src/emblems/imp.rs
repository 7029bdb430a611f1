//! The socket on Unix: the listener, the clients' requests and the pushed `CHANGED` lines.

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
    let moving =
        |s: &Status| -> HashSet<String> { s.transfers.iter().map(|t| t.path.clone()).collect() };
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
mod tests;
