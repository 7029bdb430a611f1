//! The simulation's server: the File Management Service's rules in memory (the same checks as
//! `syncsphere-files`' `MetadataStore`: `parent_rev`, one live file per case-folded name, a name
//! is a file or a folder, every commit a journal entry), and each device's [`Remote`] onto it —
//! or onto the real server through the real [`Api`] ([`Backend::Real`]) — over a network that
//! loses requests and responses and (fake server only) delivers a request late: the device timed
//! out and went on, and the request reaches the server after later ones, its own and others'.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use syncsphere_protocol::{Rev, Seq};

use futures_util::future::BoxFuture;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use syncsphere_protocol::{
    ChangeEvent, ChangeKind, ChangesPage, ErrorCode, FileMeta, normalize_path,
};

use super::fs::{FakeFs, Gate};
use crate::SyncError;
use crate::api::Api;
use crate::remote::Remote;
use crate::transfer::Transfer;

/// Journal entries per page (small, so paging is exercised).
const PAGE: usize = 7;

#[derive(Default)]
struct State {
    files: BTreeMap<String, FileMeta>,
    journal: Vec<ChangeEvent>,
    /// Every content ever committed, by hash: the server's revision history and trash.
    blobs: HashMap<String, Vec<u8>>,
    next_id: u64,
}

#[derive(Default)]
pub(crate) struct FakeServer {
    state: Mutex<State>,
    /// Names every content by its SHA-256, as servers did before chunked ids (decision 0051),
    /// and says so to the devices.
    pub(crate) legacy_ids: std::sync::atomic::AtomicBool,
    /// Requests still on their way: each reaches the server once that many later requests
    /// have.
    late: Mutex<Vec<(u32, Late)>>,
    /// Files a late request deleted, and whether a late request is being applied.
    late_deletes: Mutex<BTreeSet<String>>,
    applying_late: std::sync::atomic::AtomicBool,
    /// Requests that arrived late, so far.
    pub(crate) arrived_late: AtomicU64,
}

/// A request on its way to the server.
type Late = Box<dyn FnOnce(&FakeServer) + Send>;

/// The server's key for a path.
fn key(path: &str) -> String {
    syncsphere_protocol::path_key(path)
}

fn conflict(message: String, current: Option<FileMeta>) -> SyncError {
    tracing::debug!(message, "fake server: conflict");
    SyncError::Conflict(current.map(Box::new))
}

fn not_found() -> SyncError {
    SyncError::Server {
        status: 404,
        code: ErrorCode::NotFound,
        message: "no such file".into(),
    }
}

impl State {
    fn live_at(&self, path: &str) -> Option<&FileMeta> {
        let k = key(path);
        self.files
            .values()
            .find(|f| !f.deleted && key(&f.path) == k)
    }

    /// A live file (other than `except`) at an ancestor of `path`, or below it.
    fn clash(&self, path: &str, except: Option<&str>) -> Option<FileMeta> {
        let k = key(path);
        self.files
            .values()
            .filter(|f| !f.deleted && Some(f.file_id.as_str()) != except)
            .find(|f| {
                let fk = key(&f.path);
                k.starts_with(&format!("{fk}/")) || fk.starts_with(&format!("{k}/"))
            })
            .cloned()
    }

    fn record(
        &mut self,
        meta: &FileMeta,
        event: ChangeKind,
        old_path: Option<String>,
        device: &str,
    ) {
        let seq = self.journal.len() as i64 + 1;
        self.journal.push(ChangeEvent {
            seq: Seq(seq),
            file_id: meta.file_id.clone(),
            event,
            path: meta.path.clone(),
            old_path,
            rev: meta.rev,
            size: meta.size,
            sha256: meta.sha256.clone(),
            origin_device: Some(device.to_owned().into()),
            at_ms: seq,
        });
        self.files.insert(meta.file_id.to_string(), meta.clone());
    }
}

impl FakeServer {
    /// A request reaches the server: first the late ones whose time has come.
    fn arrive(&self) {
        let due: Vec<Late> = {
            let mut late = self.late.lock().unwrap();
            let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut *late)
                .into_iter()
                .map(|(n, act)| (n.saturating_sub(1), act))
                .partition(|(n, _)| *n == 0);
            *late = waiting;
            due.into_iter().map(|(_, act)| act).collect()
        };
        for act in due {
            self.apply_late(act);
        }
    }

    fn apply_late(&self, act: Late) {
        tracing::debug!("a late request reaches the server");
        self.arrived_late.fetch_add(1, Ordering::Relaxed);
        self.applying_late.store(true, Ordering::Relaxed);
        act(self);
        self.applying_late.store(false, Ordering::Relaxed);
    }

    /// Every request still on its way arrives (the network has calmed down).
    pub(crate) fn flush_late(&self) {
        let all = std::mem::take(&mut *self.late.lock().unwrap());
        for (_, act) in all {
            self.apply_late(act);
        }
    }

    /// Whether a late request deleted the file `file_id`.
    pub(crate) fn deleted_late(&self, file_id: &str) -> bool {
        self.late_deletes.lock().unwrap().contains(file_id)
    }

    fn commit(
        &self,
        device: &str,
        path: &str,
        parent_rev: Option<i64>,
        data: Vec<u8>,
    ) -> Result<FileMeta, SyncError> {
        let path = normalize_path(path).map_err(|e| SyncError::Server {
            status: 400,
            code: ErrorCode::InvalidPath,
            message: e.to_string(),
        })?;
        let mut st = self.state.lock().unwrap();
        let sha = if self.legacy_ids.load(Ordering::Relaxed) {
            hex::encode(Sha256::digest(&data))
        } else {
            crate::chunker::content_id_of_bytes(&data).to_string()
        };
        let current = st.live_at(&path).cloned();
        let (meta, event) = match (current, parent_rev) {
            (None, None) => {
                if let Some(other) = st.clash(&path, None) {
                    return Err(conflict(
                        format!("'{path}' clashes with {}", other.path),
                        Some(other),
                    ));
                }
                st.next_id += 1;
                (
                    FileMeta {
                        file_id: format!("f{}", st.next_id).into(),
                        path: path.clone(),
                        rev: Rev(1),
                        size: data.len() as i64,
                        sha256: sha.clone().into(),
                        deleted: false,
                        modified_ms: 0,
                    },
                    ChangeKind::Created,
                )
            }
            (Some(cur), Some(parent)) if cur.rev == parent => (
                FileMeta {
                    path: path.clone(),
                    rev: cur.rev + 1,
                    size: data.len() as i64,
                    sha256: sha.clone().into(),
                    ..cur
                },
                ChangeKind::Updated,
            ),
            (Some(cur), _) => {
                return Err(conflict(format!("'{}' is elsewhere", cur.path), Some(cur)));
            }
            (None, Some(_)) => return Err(conflict(format!("'{path}' no longer exists"), None)),
        };
        st.blobs.insert(sha, data);
        st.record(&meta, event, None, device);
        Ok(meta)
    }

    fn live_at_rev(st: &State, file_id: &str, rev: i64) -> Result<FileMeta, SyncError> {
        let cur = st
            .files
            .get(file_id)
            .filter(|f| !f.deleted)
            .cloned()
            .ok_or_else(not_found)?;
        if cur.rev != rev {
            return Err(conflict(format!("at {} not {rev}", cur.rev), Some(cur)));
        }
        Ok(cur)
    }

    fn delete(&self, device: &str, file_id: &str, rev: i64) -> Result<FileMeta, SyncError> {
        let mut st = self.state.lock().unwrap();
        let cur = Self::live_at_rev(&st, file_id, rev)?;
        let meta = FileMeta {
            rev: cur.rev + 1,
            size: 0,
            sha256: String::new().into(),
            deleted: true,
            ..cur
        };
        st.record(&meta, ChangeKind::Deleted, None, device);
        if self.applying_late.load(Ordering::Relaxed) {
            self.late_deletes
                .lock()
                .unwrap()
                .insert(meta.file_id.to_string());
        }
        Ok(meta)
    }

    fn move_file(
        &self,
        device: &str,
        file_id: &str,
        new_path: &str,
        rev: i64,
    ) -> Result<FileMeta, SyncError> {
        let new_path = normalize_path(new_path).map_err(|e| SyncError::Server {
            status: 400,
            code: ErrorCode::InvalidPath,
            message: e.to_string(),
        })?;
        let mut st = self.state.lock().unwrap();
        let cur = Self::live_at_rev(&st, file_id, rev)?;
        if let Some(other) = st
            .live_at(&new_path)
            .filter(|o| o.file_id != file_id)
            .cloned()
        {
            return Err(conflict(
                format!("'{}' already exists", other.path),
                Some(other),
            ));
        }
        if let Some(other) = st.clash(&new_path, Some(file_id)) {
            return Err(conflict(
                format!("clashes with '{}'", other.path),
                Some(other),
            ));
        }
        let old = cur.path.clone();
        let meta = FileMeta {
            path: new_path,
            rev: cur.rev + 1,
            ..cur
        };
        st.record(&meta, ChangeKind::Moved, Some(old), device);
        Ok(meta)
    }

    pub(crate) fn changes(&self, cursor: i64) -> ChangesPage {
        let st = self.state.lock().unwrap();
        let from = usize::try_from(cursor.max(0))
            .unwrap_or(0)
            .min(st.journal.len());
        let changes: Vec<ChangeEvent> = st.journal[from..].iter().take(PAGE).cloned().collect();
        let next = from + changes.len();
        ChangesPage {
            cursor: Seq(next as i64),
            has_more: next < st.journal.len(),
            changes,
        }
    }

    fn content(&self, file_id: &str) -> Result<(i64, String, Vec<u8>), SyncError> {
        let st = self.state.lock().unwrap();
        let f = st
            .files
            .get(file_id)
            .filter(|f| !f.deleted)
            .ok_or_else(not_found)?;
        let data = st
            .blobs
            .get(f.sha256.to_string().as_str())
            .cloned()
            .expect("committed content is kept");
        Ok((f.rev.into(), f.sha256.to_string(), data))
    }

    /// The live tree: path → content.
    pub(crate) fn live_tree(&self) -> BTreeMap<String, Vec<u8>> {
        let st = self.state.lock().unwrap();
        st.files
            .values()
            .filter(|f| !f.deleted)
            .map(|f| {
                (
                    f.path.clone(),
                    st.blobs[f.sha256.to_string().as_str()].clone(),
                )
            })
            .collect()
    }

    /// Every content ever committed.
    pub(crate) fn history(&self) -> Vec<Vec<u8>> {
        self.state.lock().unwrap().blobs.values().cloned().collect()
    }

    pub(crate) fn journal_len(&self) -> usize {
        self.state.lock().unwrap().journal.len()
    }
}

/// How the network between a device and the server misbehaves.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Network {
    /// Chance a request is lost before the server sees it.
    pub lose_request: f64,
    /// Chance the response is lost after the server acted on it.
    pub lose_response: f64,
    /// Chance a change (commit, delete, move) arrives late: the device times out, and the
    /// request reaches the fake server after up to three later requests.
    pub delay_request: f64,
}

/// Where a device's requests go: the fake server, or the real one through the client's real
/// [`Api`] (see [`super::real`]).
pub(crate) enum Backend {
    Fake(Arc<FakeServer>),
    Real {
        api: Box<Api>,
        /// Real files the transfers go through (the fake disk is not the OS's).
        scratch: tempfile::TempDir,
    },
}

/// One device's connection to the server, moving bytes to and from its fake disk, over a
/// network that loses requests and responses and a process that may die at any request.
pub(crate) struct SimRemote {
    backend: Backend,
    pub fs: Arc<FakeFs>,
    pub device: String,
    net: Mutex<(StdRng, Network)>,
    up: AtomicU64,
    down: AtomicU64,
    transfers: AtomicU64,
    /// Scripted: the next delete reaches the server and its answer is lost.
    lose_delete_answer: std::sync::atomic::AtomicBool,
}

impl SimRemote {
    pub(crate) fn new(backend: Backend, fs: Arc<FakeFs>, device: &str, seed: u64) -> Self {
        SimRemote {
            backend,
            fs,
            device: device.to_owned(),
            net: Mutex::new((StdRng::seed_from_u64(seed), Network::default())),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            transfers: AtomicU64::new(0),
            lose_delete_answer: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Scripted: the next delete is carried out by the server and its answer lost.
    pub(crate) fn lose_next_delete_answer(&self) {
        self.lose_delete_answer.store(true, Ordering::Relaxed);
    }

    pub(crate) fn set_network(&self, network: Network) {
        self.net.lock().unwrap().1 = network;
    }

    /// Sends one request: lost on the way (`act` never runs), or answered, or acted on and its
    /// answer lost.
    async fn call<T>(
        &self,
        act: impl Future<Output = Result<T, SyncError>>,
    ) -> Result<T, SyncError> {
        let gate = self.fs.gate();
        if gate == Gate::Dead {
            return Err(SyncError::Offline("the process is dead".into()));
        }
        let (lose_request, lose_response) = {
            let mut net = self.net.lock().unwrap();
            let n = net.1;
            (
                n.lose_request > 0.0 && net.0.gen_bool(n.lose_request),
                n.lose_response > 0.0 && net.0.gen_bool(n.lose_response),
            )
        };
        if lose_request {
            return Err(SyncError::Offline("request lost".into()));
        }
        let answer = act.await;
        if gate == Gate::ProceedThenDie {
            return Err(SyncError::Offline("the process died after sending".into()));
        }
        if lose_response {
            return Err(SyncError::Offline("response lost".into()));
        }
        answer
    }

    /// A change sent to the fake server: as [`Self::call`], or late — the device gives up
    /// waiting (offline) while the request is still on its way, and it reaches the server only
    /// after later requests.
    async fn change<T: Send + 'static>(
        &self,
        server: &Arc<FakeServer>,
        act: impl FnOnce(&FakeServer) -> Result<T, SyncError> + Send + 'static,
    ) -> Result<T, SyncError> {
        let late = {
            let mut net = self.net.lock().unwrap();
            let n = net.1;
            (n.delay_request > 0.0 && net.0.gen_bool(n.delay_request))
                .then(|| net.0.gen_range(1..=3))
        };
        match late {
            Some(after) => {
                self.call(async {
                    server.arrive();
                    tracing::debug!(device = self.device, after, "a request is delayed");
                    server.late.lock().unwrap().push((
                        after,
                        Box::new(move |s: &FakeServer| {
                            let _ = act(s);
                        }),
                    ));
                    Err(SyncError::Offline("timed out".into()))
                })
                .await
            }
            None => {
                self.call(async {
                    server.arrive();
                    act(server)
                })
                .await
            }
        }
    }

    /// A fresh real file for a transfer of the real backend.
    fn scratch_file(&self, scratch: &tempfile::TempDir) -> std::path::PathBuf {
        let n = self.transfers.fetch_add(1, Ordering::Relaxed);
        scratch.path().join(format!("transfer-{n}"))
    }
}

fn io(what: &Path) -> impl FnOnce(std::io::Error) -> SyncError + '_ {
    move |e| SyncError::Io(format!("reading {}", what.display()), e)
}

impl Remote for SimRemote {
    fn changes(&self, cursor: i64) -> BoxFuture<'_, Result<ChangesPage, SyncError>> {
        Box::pin(async move {
            match &self.backend {
                Backend::Fake(server) => {
                    self.call(async {
                        server.arrive();
                        Ok(server.changes(cursor))
                    })
                    .await
                }
                Backend::Real { api, .. } => self.call(api.changes(cursor)).await,
            }
        })
    }

    fn upload<'a>(
        &'a self,
        path: &'a str,
        parent_rev: Option<i64>,
        file: &'a Path,
        expected: &'a str,
        progress: &'a Transfer,
    ) -> BoxFuture<'a, Result<FileMeta, SyncError>> {
        Box::pin(async move {
            let data = self.fs.read_file(file).map_err(io(file))?;
            // Exactly the bytes that were checked go up (as `Api::upload`), however named.
            let named = crate::chunker::content_id_of_bytes(&data) == expected
                || hex::encode(Sha256::digest(&data)) == expected;
            if !named {
                return Err(SyncError::Busy(path.to_owned()));
            }
            self.up.fetch_add(data.len() as u64, Ordering::Relaxed);
            match &self.backend {
                Backend::Fake(server) => {
                    let (device, path) = (self.device.clone(), path.to_owned());
                    self.change(server, move |s| s.commit(&device, &path, parent_rev, data))
                        .await
                }
                Backend::Real { api, scratch } => {
                    let real = self.scratch_file(scratch);
                    std::fs::write(&real, &data).map_err(io(&real))?;
                    let result = self
                        .call(api.upload(path, parent_rev, &real, expected, progress))
                        .await;
                    let _ = std::fs::remove_file(&real);
                    result
                }
            }
        })
    }

    fn download<'a>(
        &'a self,
        file_id: &'a str,
        dest: &'a Path,
        _resume_sha: Option<&'a str>,
        _seeds: &'a [PathBuf],
        progress: &'a Transfer,
    ) -> BoxFuture<'a, Result<(i64, String), SyncError>> {
        Box::pin(async move {
            let (rev, sha, data) = match &self.backend {
                Backend::Fake(server) => {
                    self.call(async {
                        server.arrive();
                        server.content(file_id)
                    })
                    .await?
                }
                Backend::Real { api, scratch } => {
                    let real = self.scratch_file(scratch);
                    let got = self
                        .call(api.download(file_id, &real, None, &[], progress))
                        .await
                        .and_then(|(rev, sha)| {
                            let data = std::fs::read(&real).map_err(io(&real))?;
                            Ok((rev, sha, data))
                        });
                    let _ = std::fs::remove_file(&real);
                    got?
                }
            };
            self.fs
                .write_file(dest, &data)
                .and_then(|()| self.fs.fsync_file(dest)) // as `Api::download` does
                .map_err(|e| SyncError::Io(format!("writing {}", dest.display()), e))?;
            self.down.fetch_add(data.len() as u64, Ordering::Relaxed);
            Ok((rev, sha))
        })
    }

    fn delete<'a>(
        &'a self,
        file_id: &'a str,
        rev: i64,
    ) -> BoxFuture<'a, Result<FileMeta, SyncError>> {
        Box::pin(async move {
            let answer = match &self.backend {
                Backend::Fake(server) => {
                    let (device, file_id) = (self.device.clone(), file_id.to_owned());
                    self.change(server, move |s| s.delete(&device, &file_id, rev))
                        .await
                }
                Backend::Real { api, .. } => self.call(api.delete(file_id, rev)).await,
            };
            if answer.is_ok() && self.lose_delete_answer.swap(false, Ordering::Relaxed) {
                tracing::debug!(device = self.device, "the delete's answer is lost");
                return Err(SyncError::Offline("response lost".into()));
            }
            answer
        })
    }

    fn move_file<'a>(
        &'a self,
        file_id: &'a str,
        new_path: &'a str,
        rev: i64,
    ) -> BoxFuture<'a, Result<FileMeta, SyncError>> {
        Box::pin(async move {
            match &self.backend {
                Backend::Fake(server) => {
                    let (device, file_id, to) =
                        (self.device.clone(), file_id.to_owned(), new_path.to_owned());
                    self.change(server, move |s| s.move_file(&device, &file_id, &to, rev))
                        .await
                }
                Backend::Real { api, .. } => self.call(api.move_file(file_id, new_path, rev)).await,
            }
        })
    }

    fn transferred(&self) -> (u64, u64) {
        (
            self.up.load(Ordering::Relaxed),
            self.down.load(Ordering::Relaxed),
        )
    }

    fn device_id(&self) -> &str {
        match &self.backend {
            Backend::Fake(_) => &self.device,
            Backend::Real { api, .. } => Remote::device_id(&**api),
        }
    }

    fn chunked_ids(&self) -> bool {
        match &self.backend {
            Backend::Fake(server) => !server.legacy_ids.load(Ordering::Relaxed),
            Backend::Real { api, .. } => api.chunked_ids(),
        }
    }
}
