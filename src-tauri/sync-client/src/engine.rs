//! The sync loop: pull the journal, scan the folder, plan with `sync-core`, execute, repeat —
//! whenever the watcher, a push, a reconnect or the fallback timer says something may have
//! changed.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use syncsphere_protocol::FileMeta;
use syncsphere_sync_core::{
    DeletePolicy, HeldDeletes, Op, PlanContext, RemoteNames, SyncedFile, Unreadable, brake_deletes,
    is_settled, plan, plan_paths, unsettled_paths,
};
use tokio::sync::{mpsc, watch};

use crate::deletes::{DeleteDecision, clear_decision, pending_decision};
use crate::folder::LinkedFolder;
use crate::index::Index;
use crate::legacy::KnownIds;
use crate::local_fs::LocalFs;
use crate::remote::Remote;
use crate::scan::Scanner;
use crate::status::{ErrorKind, PROBLEM_LIMIT, PathProblem, PendingDeletes, Status, SyncState};
use crate::transfer::Transfers;
use crate::watcher::{DirtyPaths, FolderWatch};
use crate::{SyncError, now_ms};

pub(crate) mod aside;
mod batch;
mod brake;
mod execute;
mod failures;

use brake::{decision_arrives, pending_of};

use self::execute::describe;

/// Fallback poll of the journal when no push arrives; pushes make sync immediate. A poll that
/// finds nothing new, with nothing marked on disk, costs one request and nothing else.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(60);
/// The safety net under the watcher: how often the whole folder is scanned anyway (the
/// watcher misses what happens while no one watches — e.g. on a network share's other end).
pub(crate) const FULL_RESCAN_INTERVAL: Duration = Duration::from_secs(3600);
/// Quiet time after the last local file event before scanning, so a burst of writes (an
/// editor's save: temporary file, write, rename — a few milliseconds) is one round. Short,
/// because it is most of the save-to-other-device latency; a file still being written when the
/// round starts is not uploaded torn anyway (it is retried, see `SyncError::Busy`).
const LOCAL_QUIET: Duration = Duration::from_millis(20);
/// How long the journal may take to answer, with local changes waiting, before the status says
/// "Syncing" ([`Engine::pull_with_changes_waiting`]).
const SLOW_PULL: Duration = Duration::from_secs(1);
/// The longest a round waits for quiet: a folder written to without pause (a copy, a log) is
/// still looked at this often.
const LOCAL_QUIET_MAX: Duration = Duration::from_millis(250);
/// How long a round whose plan deletes on the server waits, when nothing was marked since its
/// scan began, for the watcher's word on a rename before it deletes (decision 0055).
const MOVE_WINDOW: Duration = Duration::from_millis(50);
/// Planning rounds per sync pass before giving the loop back (a safety net, not a normal path).
const MAX_ROUNDS: usize = 16;

/// The wall clock, as the engine reads it (the simulation's jumps).
pub(crate) trait Clock: Send + Sync + 'static {
    /// Local time formatted `YYYY-MM-DD HHMMSS`, for conflicted-copy names.
    fn stamp(&self) -> String;
    /// Monotonic time since some fixed moment, for retry waits.
    fn now(&self) -> Duration;
}

/// The system's local time.
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn stamp(&self) -> String {
        chrono::Local::now().format("%Y-%m-%d %H%M%S").to_string()
    }

    fn now(&self) -> Duration {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        START.get_or_init(Instant::now).elapsed()
    }
}

/// Why the loop should run a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    Local,
    Remote,
}

pub(crate) struct Engine {
    pub folder: PathBuf,
    /// The folder's identity, checked before and after every scan.
    pub linked: LinkedFolder,
    /// Where the user's answer to held deletions arrives (`deletes`).
    pub config_dir: PathBuf,
    pub delete_policy: DeletePolicy,
    /// Server-side deletions the user confirmed.
    pub approved_deletes: BTreeSet<String>,
    /// Server-side deletions waiting for the user.
    pub held_deletes: Option<HeldDeletes>,
    /// Paths whose operation failed, waiting before the next try.
    pub failing: HashMap<String, PathFailure>,
    /// NFC path → disk spelling, from the last scan (see `scan::disk_path`).
    pub disk_paths: HashMap<String, String>,
    /// The server (the real one: `Api`).
    pub remote: Arc<dyn Remote>,
    /// The local disk (the real one: `RealFs`).
    pub fs: Arc<dyn LocalFs>,
    /// Wall-clock time, as it shows in conflicted-copy names.
    pub clock: Arc<dyn Clock>,
    /// Operations of one batch in flight at once ([`PARALLEL_OPS`]; 1 replays exactly).
    pub parallel_ops: usize,
    /// Names files moved aside uniquely within this run.
    pub aside_counter: std::sync::atomic::AtomicU64,
    pub index: Index,
    pub device_name: String,
    pub scanner: Scanner,
    /// Downloads put in place since the last scan, for it ([`Scanner::offer_placed`]).
    pub placed: std::sync::Mutex<Vec<(String, crate::scan::Placed)>>,
    pub status: watch::Sender<Status>,
    pub cursor: watch::Sender<i64>,
    /// The local tree of the last scan: what an upload must still find on disk. (Shared with
    /// the scanner's tree; let go before the next scan, which would otherwise copy it.)
    pub last_local: Arc<syncsphere_sync_core::LocalTree>,
    /// Set when a file was still being written: look again shortly instead of at the poll.
    pub retry_soon: bool,
    /// The user's pause switch.
    pub paused: watch::Receiver<bool>,
    /// Uploads and downloads in flight, for per-file progress.
    pub transfers: Transfers,
    /// The folder's filesystem ignores case: plan with the server's folder spellings.
    pub case_insensitive: bool,
    /// What the watcher (and the engine itself) marked as possibly changed on disk.
    pub dirty: Arc<DirtyPaths>,
    /// The folder watch, re-armed when the folder comes back.
    pub watch: Arc<dyn FolderWatch>,
    /// The last pass ended with nothing to do: until something changes (a mark, a journal
    /// entry, a retry falling due, the full-rescan interval), another pass would find the same.
    pub settled: bool,
    /// The linked folder was missing at the last check: when it is back, it is watched anew
    /// and scanned whole.
    pub folder_lost: bool,
    /// When the folder was last scanned whole, on the engine's clock.
    pub last_full_scan: Option<Duration>,
    /// The last scan could not read some files or folders: how many scans in a row, and when
    /// to look again (a growing wait, as for a failing operation). A read that failed once (a
    /// file locked for a moment) is not left until the next change or the hourly rescan.
    pub unreadable_retry: Option<(u32, Duration)>,
    /// The paths where a side differs from the synced tree, as of the last plan (kept up to
    /// date from the paths the scanner and the index say changed): what the next plan walks.
    /// `None` when unknown (the next plan walks every path).
    pub unsettled: Option<BTreeSet<String>>,
    /// The index's remote tree's names as the server compares them, kept up to date from the
    /// paths the index says changed (`None` when unknown or the tree was filtered).
    pub remote_names: Option<RemoteNames>,
    /// Whether the index's trees hold paths the ignore rules cover, as of the last round: kept
    /// from the paths the index says changed while the rules stay; `None` when unknown.
    pub ignored_in_index: Option<bool>,
}

/// Operations of one batch in flight at once: transfers overlap their network round trips and
/// fsyncs (an initial sync of many small files is bound by those, not by bandwidth).
pub(crate) const PARALLEL_OPS: usize = 8;
/// What a batch runs as one of its parallel operations.
enum Unit {
    /// New files downloaded by one request (see `Engine::download_new`).
    NewFiles(Vec<Op>),
    /// Small files uploaded by one request (see `Engine::upload_small`).
    SmallFiles(Vec<Op>),
    One(Op),
}

/// New files downloaded by one request (see `Engine::download_new`).
const DOWNLOAD_GROUP: usize = 64;
/// Small files uploaded by one request (see `Engine::upload_small`), and how small.
const UPLOAD_GROUP: usize = 64;
const UPLOAD_GROUP_FILE_MAX: u64 = 64 * 1024;
/// How often the status stream shows transfer progress while a batch runs.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// How often a pass waiting for the user's answer to held deletions looks for it.
const DECISION_POLL: Duration = Duration::from_secs(2);
/// Longest wait before an operation that keeps failing on one path is tried again.
pub(crate) const MAX_PATH_BACKOFF: Duration = Duration::from_secs(600);

/// The wait before the `attempts`-th try again of something that failed on a path: 2 s,
/// doubling, at most [`MAX_PATH_BACKOFF`].
fn path_backoff(attempts: u32) -> Duration {
    Duration::from_secs(2)
        .saturating_mul(1 << attempts.saturating_sub(1).min(10))
        .min(MAX_PATH_BACKOFF)
}

/// An operation that failed on one path: tried again after a growing wait, reported meanwhile
/// (never a retry loop: one warning per new message).
#[derive(Debug, Clone)]
pub(crate) struct PathFailure {
    attempts: u32,
    /// When to try again, on the engine's [`Clock::now`].
    retry_at: Duration,
    message: String,
}

/// What one batch did.
#[derive(Default)]
struct BatchOutcome {
    /// A file was still being written.
    busy: bool,
    /// Paths whose operation succeeded.
    done: Vec<String>,
    /// Paths whose operation failed on their own (the others went on).
    failed: Vec<(String, String)>,
    /// Paths whose operation found the disk other than planned and did nothing (re-planned).
    skipped: Vec<String>,
}

/// A path whose operation is skipped this many rounds of one pass in a row is reported and
/// waits like a failure: re-planning the same step forever is a retry loop by another name.
const SKIPS_BEFORE_BACKOFF: u32 = 3;

/// How soon to look again at a file that was still being written.
const BUSY_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> SyncError {
    move |e| SyncError::Io(what, e)
}

fn synced_of(meta: &FileMeta) -> SyncedFile {
    SyncedFile {
        file_id: (&meta.file_id).into(),
        rev: meta.rev.into(),
        sha256: meta.sha256.clone(),
    }
}

impl Engine {
    pub(crate) async fn run(
        mut self,
        mut triggers: mpsc::Receiver<Trigger>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), SyncError> {
        let mut failures: u32 = 0;
        loop {
            if *self.paused.borrow() {
                self.status.send_modify(|s| {
                    s.state = SyncState::Paused;
                    s.updated_ms = now_ms();
                });
                tokio::select! {
                    resumed = self.paused.wait_for(|p| !p) => {
                        if resumed.is_err() {
                            break; // the handle is gone
                        }
                    }
                    _ = stop.changed() => break,
                }
                // Resumed: drop the nudges that piled up and look at everything now.
                while triggers.try_recv().is_ok() {}
                self.dirty.mark_everything();
                continue;
            }
            let result = self.pass().await;
            let retry = match result {
                Ok(()) => {
                    failures = 0;
                    None
                }
                Err(SyncError::DeviceRevoked) => {
                    tracing::warn!("this device was revoked; stopping");
                    return Err(SyncError::DeviceRevoked);
                }
                Err(SyncError::SignedOut) => {
                    tracing::warn!("the account signed out everywhere; stopping");
                    return Err(SyncError::SignedOut);
                }
                Err(e) => {
                    failures += 1;
                    self.report_failure(&e);
                    Some(crate::push::backoff(failures))
                }
            };
            let busy = std::mem::take(&mut self.retry_soon).then_some(BUSY_RETRY);
            let now = self.clock.now();
            let path_retry = self
                .failing
                .values()
                .map(|f| f.retry_at)
                .chain(self.unreadable_retry.map(|(_, at)| at))
                .map(|at| at.saturating_sub(now))
                .min();
            let wait = [retry.or(busy), path_retry]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(POLL_INTERVAL)
                .min(POLL_INTERVAL);
            tokio::select! {
                t = triggers.recv() => {
                    match t {
                        None => break,
                        Some(Trigger::Local) => {
                            let latest = tokio::time::Instant::now() + LOCAL_QUIET_MAX;
                            let mut quiet = tokio::time::Instant::now() + LOCAL_QUIET;
                            loop {
                                let next = tokio::time::timeout_at(quiet.min(latest), triggers.recv());
                                match next.await {
                                    Ok(Some(Trigger::Local)) => {
                                        quiet = tokio::time::Instant::now() + LOCAL_QUIET;
                                    }
                                    Ok(Some(Trigger::Remote)) => {}
                                    Ok(None) | Err(_) => break,
                                }
                            }
                        }
                        Some(Trigger::Remote) => {}
                    }
                    while triggers.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep(wait) => {}
                _ = decision_arrives(&self.config_dir, self.held_deletes.is_some()) => {}
                switched = self.paused.changed() => {
                    if switched.is_err() {
                        break; // the handle is gone
                    }
                    // "Sync now" (or pause/resume): the user asks for a real look.
                    self.dirty.mark_everything();
                }
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
        }
        self.status.send_modify(|s| {
            s.state = SyncState::Stopped;
            s.connected = false;
            s.updated_ms = now_ms();
        });
        Ok(())
    }

    /// Puts a failed pass in the status (and the log, once per distinct message).
    pub(crate) fn report_failure(&self, e: &SyncError) {
        let message = e.to_string();
        let repeated = self.status.borrow().last_error.as_deref() == Some(&message);
        if repeated {
            tracing::debug!(error = %e, "sync pass failed again");
        } else {
            tracing::warn!(error = %e, kind = ?e.kind(), "sync pass failed");
        }
        self.status
            .send_modify(|s| s.fail(e.kind(), message, now_ms()));
    }

    /// Reads the journal from the cursor to its end; returns how many entries were new.
    async fn pull(&mut self) -> Result<usize, SyncError> {
        let mut cursor = self.index.cursor().await?;
        let mut fresh = 0;
        loop {
            let page = self.remote.changes(cursor).await?;
            if page.changes.is_empty() {
                break;
            }
            fresh += page.changes.len();
            self.index
                .apply_changes(&page.changes, page.cursor.into(), self.remote.device_id())
                .await?;
            cursor = page.cursor.into();
            if !page.has_more {
                break;
            }
        }
        self.cursor.send_replace(cursor);
        self.status.send_if_modified(|s| {
            let changed = s.cursor != cursor;
            s.cursor = cursor;
            changed
        });
        Ok(fresh)
    }

    /// Checks that the linked folder is still there; when it comes back after it was not, it
    /// is watched anew (the kernel dropped the old watches) and scanned whole.
    fn check_folder(&mut self) -> Result<(), SyncError> {
        if let Err(e) = self.linked.check(self.fs.as_ref()) {
            self.folder_lost = true;
            self.settled = false;
            return Err(e.into());
        }
        if std::mem::take(&mut self.folder_lost) {
            let _ = self.watch.rearm(); // a failure leaves the marks degraded: full scans
            self.dirty.mark_everything();
        }
        Ok(())
    }

    /// Whether a pass now would find what the last one found: nothing changed on disk or on
    /// the server since it ended with nothing to do, no retry is due, no full scan is due.
    fn nothing_to_do(&self, fresh: usize) -> bool {
        let now = self.clock.now();
        self.settled
            && fresh == 0
            && self.dirty.is_clean()
            && self
                .last_full_scan
                .is_some_and(|t| now.saturating_sub(t) < FULL_RESCAN_INTERVAL)
            && self.failing.values().all(|f| f.retry_at > now)
            && self.unreadable_retry.is_none_or(|(_, at)| at > now)
    }

    /// [`Engine::pull`] while the watcher has marked local changes: if the server takes longer
    /// than [`SLOW_PULL`] to answer, the status says "Syncing" until the pass ends — those
    /// changes are not up to date. (A frozen server left "Up to date" on screen while edits
    /// waited: BENCHMARKS, "A user's hour, by hand".)
    async fn pull_with_changes_waiting(&mut self) -> Result<usize, SyncError> {
        let status = self.status.clone();
        let pull = self.pull();
        tokio::pin!(pull);
        tokio::select! {
            pulled = &mut pull => return pulled,
            _ = tokio::time::sleep(SLOW_PULL) => {}
        }
        status.send_if_modified(|s| {
            let waiting = s.state == SyncState::UpToDate;
            if waiting {
                s.state = SyncState::Syncing;
                s.updated_ms = now_ms();
            }
            waiting
        });
        pull.await
    }

    /// One sync pass: rounds of pull → scan → plan → execute until the plan is empty.
    pub(crate) async fn pass(&mut self) -> Result<(), SyncError> {
        self.status.send_modify(|s| s.work.passes += 1);
        self.check_folder()?;
        self.recover_aside().await?;
        let mut skips: HashMap<String, u32> = HashMap::new();
        let mut looked_again = false;
        for round in 0..MAX_ROUNDS {
            self.check_folder()?;
            let fresh = if round == 0 && !self.dirty.is_clean() {
                self.pull_with_changes_waiting().await?
            } else {
                self.pull().await?
            };
            if round == 0 && self.nothing_to_do(fresh) {
                return Ok(());
            }
            self.settled = false;
            // Taken before the scan: what changes during it is marked again, for the next.
            let mut dirty = self.dirty.take();
            let now = self.clock.now();
            let full = dirty.everything
                || self
                    .last_full_scan
                    .is_none_or(|t| now.saturating_sub(t) >= FULL_RESCAN_INTERVAL);
            if full {
                self.last_full_scan = Some(now);
                self.status.send_modify(|s| s.work.full_scans += 1);
            } else {
                self.status.send_modify(|s| s.work.partial_scans += 1);
                // A path whose retry is due is read again (it may have been unreadable).
                dirty.paths.extend(
                    self.failing
                        .iter()
                        .filter(|(_, f)| f.retry_at <= now)
                        .map(|(p, _)| p.clone()),
                );
            }
            let folder = self.folder.clone();
            self.last_local = Arc::default();
            let mut scanner = std::mem::take(&mut self.scanner);
            scanner.fold_case = self.case_insensitive;
            scanner.offer_placed(std::mem::take(
                &mut *self.placed.lock().unwrap_or_else(|e| e.into_inner()),
            ));
            scanner.known = Some(KnownIds {
                remote: self.index.remote().await?,
                synced: self.index.synced().await?,
                chunked: self.remote.chunked_ids(),
            });
            let fs = self.fs.clone();
            let (scanner, scan) = tokio::task::spawn_blocking(move || {
                let scan = if full {
                    scanner.scan(fs.as_ref(), &folder)
                } else {
                    scanner.rescan(fs.as_ref(), &folder, &dirty.paths)
                };
                (scanner, scan)
            })
            .await
            .map_err(|e| SyncError::Io("scanning".into(), std::io::Error::other(e)))?;
            self.scanner = scanner;
            self.scanner.known = None; // the index's trees, not held past the scan
            // A folder unmounted or moved away during the scan reads as empty: only a scan of
            // the linked folder, still there afterwards, is planned with.
            self.check_folder()?;
            let mut scan = scan.map_err(io_err(format!("scanning {}", self.folder.display())))?;
            // (A rescan lists again every folder with something unreadable in it.)
            self.unreadable_retry = (!scan.unreadable.is_empty()).then(|| {
                let attempts = self.unreadable_retry.map_or(1, |(n, _)| n + 1);
                (attempts, now + path_backoff(attempts))
            });
            scan.unreadable.extend(self.aside_origins()?);
            for (path, reason) in &scan.skipped {
                tracing::debug!(path, reason, "not synced");
            }
            // Snapshots of the index's trees in memory (dropped before the batch runs, so its
            // writes do not copy them).
            let mut remote = self.index.remote().await?;
            let mut synced = self.index.synced().await?;
            // What may have changed since the last plan (taken every round, used when the
            // trees below are the scan's and the index's own).
            let scanned = self.scanner.take_touched();
            let indexed = self.index.take_touched().await;
            // Ignored paths are invisible here in both directions: never downloaded, and never
            // deleted anywhere because they became ignored. Whether the trees hold any is
            // looked for in every path only when the rules (a whole scan) or the trees (a
            // rebuilt index) may have changed wholesale, or while they do hold some.
            let ignored = |path: &String| self.scanner.is_ignored(path, false);
            let walk = || remote.keys().any(ignored) || synced.keys().any(ignored);
            let has_ignored = match (self.ignored_in_index, &scanned, &indexed) {
                (Some(false), Some(_), Some(changed)) => changed
                    .iter()
                    .any(|p| (remote.contains_key(p) || synced.contains_key(p)) && ignored(p)),
                _ => walk(),
            };
            #[cfg(test)]
            assert_eq!(has_ignored, walk(), "ignored paths kept track of");
            self.ignored_in_index = Some(has_ignored);
            let mut own_trees = !has_ignored;
            if has_ignored {
                Arc::make_mut(&mut remote).retain(|path, _| !ignored(path));
                Arc::make_mut(&mut synced).retain(|path, _| !ignored(path));
            }
            // The server's names, for checks of new names by lookup (the remote tree as the
            // index holds it, unfiltered).
            match (own_trees, self.remote_names.as_mut(), &indexed) {
                (false, ..) => self.remote_names = None,
                (true, Some(names), Some(changed)) => {
                    names.update(&remote, changed.iter().map(String::as_str));
                }
                (true, ..) => self.remote_names = Some(RemoteNames::of(&remote)),
            }
            #[cfg(test)]
            if own_trees {
                assert_eq!(
                    self.remote_names.as_ref(),
                    Some(&RemoteNames::of(&remote)),
                    "the remote names kept up to date are the tree's"
                );
            }
            let touched = match (scanned, indexed) {
                (Some(mut a), Some(b)) => {
                    a.extend(b);
                    Some(a)
                }
                _ => None,
            };
            let ctx = PlanContext {
                device_name: self.device_name.clone(),
                stamp: self.clock.stamp(),
                fold_case: self.case_insensitive,
            };
            let unreadable = Unreadable::new(&scan.unreadable, self.case_insensitive);
            let local = if scan.unreadable.is_empty() && !self.case_insensitive {
                scan.tree.clone() // the tree as scanned: nothing to hold, no spelling to adopt
            } else {
                own_trees = false;
                Arc::new(unreadable.local_tree(&scan.tree, &remote, &synced))
            };
            // A file that could not be read stands in the plan as it was last synced: an
            // assumption, so every op involving it — recording it as synced included — waits
            // (`Unreadable::around`, below, after the brake has counted deletions).
            let ops = self.plan_round(&local, &remote, &synced, &ctx, own_trees, touched);
            tracing::debug!(?ops, local = local.len(), remote = remote.len(), "planned");
            // A name gone from a listing may have been renamed while the folder was read (a
            // listing a rename overtakes can show neither name): before deleting on the
            // server, the names marked since the scan began are looked at — once a pass, so
            // that a folder written to without pause cannot hold a deletion back (0055).
            if !looked_again && ops.iter().any(|op| matches!(op, Op::DeleteRemote { .. })) {
                looked_again = true;
                if self.dirty.is_clean() {
                    let fs = self.fs.clone();
                    let wait = MOVE_WINDOW.as_nanos() as i128;
                    let _ = tokio::task::spawn_blocking(move || fs.wait_ns(wait)).await;
                }
                if !self.dirty.is_clean() {
                    tracing::debug!("names marked since the scan: looking again before deleting");
                    continue;
                }
            }
            self.last_local = local;
            self.disk_paths = std::mem::take(&mut scan.disk_paths);
            if self.case_insensitive {
                self.disk_paths = std::mem::take(&mut self.disk_paths)
                    .into_iter()
                    .map(|(k, v)| (crate::scan::fold_key(&k), v))
                    .collect();
            }
            let Some(ops) = self.brake(ops, synced.len()).await? else {
                continue; // the user answered held deletions: plan again with the answer
            };
            let ops = self.hold_failing(ops, &remote);
            let mut waiting: Vec<PathProblem> = Vec::new();
            let ops: Vec<Op> = ops
                .into_iter()
                .filter_map(|op| {
                    let path = op.path().to_owned();
                    let kept = unreadable.around(op, &remote);
                    if kept.is_none() {
                        waiting.push(PathProblem {
                            path,
                            message: "waits until a name it involves can be read (see the other \
                                      problems)"
                                .to_owned(),
                        });
                    }
                    kept
                })
                .collect();
            let problems: Vec<PathProblem> = scan
                .skipped
                .iter()
                .map(|(path, message)| PathProblem {
                    path: path.clone(),
                    message: message.clone(),
                })
                .chain(self.failing.iter().map(|(path, f)| PathProblem {
                    path: path.clone(),
                    message: f.message.clone(),
                }))
                .chain(waiting)
                // Not a path's problem: the whole folder is watched by full scans only.
                .chain(self.dirty.degraded().map(|message| PathProblem {
                    path: String::new(),
                    message,
                }))
                .take(PROBLEM_LIMIT)
                .collect();
            let pending_deletes = self.held_deletes.as_ref().map(pending_of);
            if ops.is_empty() {
                // Held deletions wait for an answer the next pass must read.
                self.settled = self.held_deletes.is_none();
                let files = synced.len() as u64;
                self.status.send_modify(|s| {
                    s.pending = 0;
                    s.synced_files = files;
                    s.updated_ms = now_ms();
                    match &pending_deletes {
                        Some(p) => {
                            s.state = SyncState::Error;
                            s.error_kind = Some(ErrorKind::MassDeletePending);
                            s.last_error = Some(format!(
                                "{} of {} synced files are no longer in the folder; they are \
                                 deleted on the server and your other devices only once you \
                                 confirm (or restore them)",
                                p.count, p.synced_files
                            ));
                        }
                        None => {
                            s.state = SyncState::UpToDate;
                            s.error_kind = None;
                            s.last_error = problems.first().map(|p| {
                                if p.path.is_empty() {
                                    p.message.clone()
                                } else {
                                    format!("'{}' is not synced: {}", p.path, p.message)
                                }
                            });
                        }
                    }
                    s.pending_deletes = pending_deletes;
                    s.problems = problems;
                });
                return Ok(());
            }
            let total = ops.len() as u64;
            self.status.send_modify(|s| {
                s.state = SyncState::Syncing;
                s.error_kind = None;
                s.pending = total;
                s.pending_deletes = pending_deletes;
                s.problems = problems;
                s.updated_ms = now_ms();
            });
            drop((remote, synced));
            let mut outcome = self.execute_batch(ops).await?;
            self.retry_soon |= outcome.busy;
            for path in std::mem::take(&mut outcome.skipped) {
                let n = skips.entry(path.clone()).or_insert(0);
                *n += 1;
                if *n >= SKIPS_BEFORE_BACKOFF {
                    outcome.failed.push((
                        path,
                        "could not be applied: the file changed again, or something is in its \
                         way"
                        .to_owned(),
                    ));
                }
            }
            self.note_failures(outcome);
            // A pause takes effect after the operations in progress.
            if *self.paused.borrow() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Plans a round: with only the unsettled paths walked when the trees are the scanner's
    /// and the index's own and both said what changed since the last plan; else every path
    /// (and the unsettled set is found anew). Tests check both ways agree on every round.
    fn plan_round(
        &mut self,
        local: &syncsphere_sync_core::LocalTree,
        remote: &syncsphere_sync_core::RemoteTree,
        synced: &syncsphere_sync_core::SyncedTree,
        ctx: &PlanContext,
        own_trees: bool,
        touched: Option<Vec<String>>,
    ) -> Vec<Op> {
        let known = self.unsettled.take().filter(|_| own_trees);
        if let (Some(mut unsettled), Some(touched), Some(names)) =
            (known, touched, self.remote_names.as_ref())
        {
            for p in touched {
                if is_settled(&p, local, remote, synced) {
                    unsettled.remove(&p);
                } else {
                    unsettled.insert(p);
                }
            }
            let ops = plan_paths(
                local,
                remote,
                synced,
                ctx,
                unsettled.iter().map(String::as_str),
                names,
            );
            #[cfg(test)]
            {
                assert_eq!(
                    unsettled,
                    unsettled_paths(local, remote, synced),
                    "the unsettled paths kept up to date are the ones a walk finds"
                );
                assert_eq!(
                    ops,
                    plan(local, remote, synced, ctx),
                    "focused plan = full plan"
                );
            }
            self.unsettled = Some(unsettled);
            self.status.send_modify(|s| s.work.focused_plans += 1);
            return ops;
        }
        self.status.send_modify(|s| s.work.full_plans += 1);
        if own_trees {
            self.unsettled = Some(unsettled_paths(local, remote, synced));
        }
        plan(local, remote, synced, ctx)
    }
}
