//! The simulation's disk: an in-memory [`LocalFs`] that can ignore case (like macOS and
//! Windows), store and return names in NFD while finding them in any form (like HFS+), fail
//! any operation on demand (EIO, EACCES, ENOSPC), and let its "user" edit a file right after
//! the engine hashed it — between the engine's check and its action.
//!
//! **Power cuts**: the disk also keeps what would survive one, as a journaling file system in
//! its default mode does (ext4 `data=ordered`, NTFS, APFS): names change in order and become
//! durable together at the next fsync of anything (the journal commits); a file's content is
//! durable once that file was fsynced. [`FakeFs::power_cut`] rebuilds the disk from that alone:
//! every rename, creation and removal since the last commit is undone, and a file whose
//! content was never fsynced is empty (ext4's classic zero-length file). The user's own saves
//! are fsynced (as editors do); the engine's index lives on another disk (a synced folder on
//! an external drive), so its commits make nothing in the folder durable. Unplugging a drive
//! is a power cut for that drive.
//!
//! **Locked folders**: a folder can be closed to the engine's process while the user still
//! works in it (macOS's privacy protection of Desktop/Documents, another account's folder, an
//! ACL): listing it, and touching anything below it, fails with `PermissionDenied`; the
//! folder itself can still be looked at in its parent. (A real `chmod 000` also lets a
//! folder be renamed within its parent; here it cannot be moved at all.)

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::{Error, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

use crate::local_fs::{Entry, Kind, LocalFs, Meta};

/// How the fake disk treats names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Naming {
    /// Names that differ only in case are one name (the first spelling is kept).
    pub case_insensitive: bool,
    /// Names are stored and listed in NFD; a name in any normalisation form finds them (HFS+).
    /// Otherwise every spelling is its own name (ext4, NTFS).
    pub nfd: bool,
}

#[derive(Debug, Clone)]
enum Node {
    Dir,
    File { data: Vec<u8>, mtime_ns: i128 },
}

#[derive(Debug, Clone)]
struct Stored {
    /// The path as spelled on this disk (relative to the root).
    spelled: String,
    node: Node,
    ino: u64,
}

/// `a`, `a/b`, `a/b/c` for `a/b/c`.
fn prefixes(rel: &str) -> Vec<String> {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    (1..=parts.len()).map(|i| parts[..i].join("/")).collect()
}

/// The disk's whole state.
#[derive(Debug, Clone, Default)]
struct Disk {
    /// Lookup key (case-folded and/or normalised per [`Naming`]) → entry.
    nodes: BTreeMap<String, Stored>,
    next_ino: u64,
    clock_ns: i128,
    /// The step of the disk's modification times (0: every write its own stamp; else the
    /// clock, which advances 1 µs a write, rounded down to it: a coarse file-system clock,
    /// many writes one stamp).
    mtime_tick_ns: i128,
    /// The names as of the last journal commit (key → spelling, inode, is a folder): what a
    /// power cut leaves.
    durable_names: BTreeMap<String, (String, u64, bool)>,
    /// File inode → its content (and modification time) as last fsynced.
    durable_data: BTreeMap<u64, (Vec<u8>, i128)>,
    /// Names (as spelled) created, written, renamed or removed since the watcher last
    /// delivered: the events in the kernel's queue.
    touched: Vec<String>,
}

impl Disk {
    /// The stamp a write made now gets.
    fn stamp(&self) -> i128 {
        if self.mtime_tick_ns > 0 {
            self.clock_ns - self.clock_ns.rem_euclid(self.mtime_tick_ns)
        } else {
            self.clock_ns
        }
    }

    /// Any fsync commits the journal: every name as it is now becomes durable.
    fn commit_names(&mut self) {
        self.durable_names = self
            .nodes
            .iter()
            .map(|(k, s)| {
                (
                    k.clone(),
                    (s.spelled.clone(), s.ino, matches!(s.node, Node::Dir)),
                )
            })
            .collect();
    }

    /// fsync of a file: its content, and the journal.
    fn fsync_file(&mut self, key: &str) {
        if let Some(Stored {
            node: Node::File { data, mtime_ns },
            ino,
            ..
        }) = self.nodes.get(key)
        {
            self.durable_data.insert(*ino, (data.clone(), *mtime_ns));
        }
        self.commit_names();
    }

    /// fsync of a folder: the journal.
    fn fsync_dir(&mut self) {
        self.commit_names();
    }

    /// The power goes: the disk is what its durable state says, nothing more.
    fn power_cut(&mut self) {
        self.clock_ns += 1_000;
        let zero = self.clock_ns;
        self.nodes = self
            .durable_names
            .iter()
            .map(|(k, (spelled, ino, dir))| {
                let node = if *dir {
                    Node::Dir
                } else {
                    let (data, mtime_ns) = self
                        .durable_data
                        .get(ino)
                        .cloned()
                        .unwrap_or((Vec::new(), zero));
                    Node::File { data, mtime_ns }
                };
                (
                    k.clone(),
                    Stored {
                        spelled: spelled.clone(),
                        node,
                        ino: *ino,
                    },
                )
            })
            .collect();
    }
}

/// Faults and interference, drawn from the disk's own seeded generator.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Chaos {
    /// Chance that an operation fails with EIO, EACCES or ENOSPC.
    pub fail: f64,
    /// Chance that right after the engine hashed a file, the user writes it again.
    pub user_races_hash: f64,
    /// Chance that right before the engine renames a file to a free name, the user saves a
    /// new file under that name.
    pub user_races_rename: f64,
    /// Chance that right after the engine puts a download in place, the user saves that file
    /// again (with the same size on a coarse clock: a change only a read can tell).
    pub user_races_placed: f64,
    /// Chance that the watcher never reports a change (a network share's other end, a
    /// watch added too late).
    pub miss_event: f64,
    /// Chance that the kernel's event queue overflows at a change (everything is marked).
    pub overflow: f64,
    /// Chance that the watcher's events are still queued at an operation of the engine (they
    /// arrive later: after the scan that should have seen them started).
    pub late_events: f64,
}

/// From what size the simulation's disk counts a file as worth waiting for
/// ([`crate::local_fs::settle_wait`]).
pub(crate) const SIM_SETTLE_WAIT_MIN: u64 = 8;

pub(crate) struct FakeFs {
    root: PathBuf,
    naming: Naming,
    state: Mutex<State>,
}

struct State {
    disk: Disk,
    rng: StdRng,
    chaos: Chaos,
    /// What the racing "user" wrote: the content it replaced and the new one (which must
    /// never be lost).
    raced_writes: Vec<(Option<Vec<u8>>, Vec<u8>)>,
    racing_counter: u64,
    /// Files read to hash them (by key), for scripted checks of what is read again.
    hashed: Vec<String>,
    tag: String,
    /// Operations through the gate so far, and the one at which the process "dies".
    ops: u64,
    crash_at: Option<u64>,
    /// The operation at which the user presses "pause", and the engine's pause switch.
    pause_at: Option<u64>,
    pause: Option<tokio::sync::watch::Sender<bool>>,
    /// The folder's real contents while its drive is not mounted (the mount point is empty).
    unmounted: Option<Disk>,
    /// A second drive mounted on a folder inside the synced folder, while it is unplugged.
    sub_drive: Option<SubDrive>,
    /// What was written into that folder while the drive was away (hidden under the drive
    /// once it is back, still on the disk).
    under_mount: Vec<Vec<u8>>,
    /// Folders (by key) the engine's process may not enter: denied to it, not to the user (a
    /// folder macOS's privacy protection or another account's permissions keep from the app
    /// while the user works in it with the file manager).
    locked: BTreeSet<String>,
    /// The user is acting (through the same calls as the engine): locks do not apply.
    as_user: bool,
    /// Where the folder watcher's marks go (the running engine's).
    watcher: Option<std::sync::Arc<crate::watcher::DirtyPaths>>,
    /// Changes the watcher lost (only the periodic full rescan finds them).
    missed: u64,
    /// Names (by key) nothing may be renamed onto (an antivirus or a Windows file-system
    /// filter holding the name).
    refused: BTreeSet<String>,
    /// Files (by key) whose content cannot be read for now, with no event a watcher would
    /// see (another program holding the file locked for a moment).
    held: BTreeSet<String>,
    /// Scripted: the queued watcher events wait (and for what).
    events_held: Option<Held>,
    /// Scripted: the next listing of this folder (by key) races a rename by the user in it.
    torn_listing: Option<(String, String, String)>,
}

/// What scripted watcher events wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Held {
    /// The engine looking at this name (by key).
    UntilLookAt(String),
    /// Time passing on the disk's clock (a watcher thread slower than the engine).
    UntilTimePasses,
}

/// A drive mounted on a folder inside the synced folder, unplugged: its files as they survived
/// being pulled out (names by key, and their durable entries).
struct SubDrive {
    top: String,
    nodes: Vec<(String, Stored)>,
    durable: Vec<(String, (String, u64, bool))>,
}

/// What the gate lets an operation do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    Proceed,
    /// The process dies right after this operation took effect: it reports an error.
    ProceedThenDie,
    /// The process is dead: nothing takes effect.
    Dead,
}

/// Puts `key` in `set` (`false`: takes it out).
fn set_member(set: &mut BTreeSet<String>, key: String, member: bool) {
    if member {
        set.insert(key);
    } else {
        set.remove(&key);
    }
}

pub(crate) fn died() -> Error {
    Error::other("the process died here (simulated crash)")
}

fn not_found(p: &str) -> Error {
    Error::new(ErrorKind::NotFound, format!("no such file or folder: {p}"))
}

impl FakeFs {
    pub(crate) fn new(root: &Path, naming: Naming, seed: u64, tag: &str) -> Self {
        FakeFs {
            root: root.to_path_buf(),
            naming,
            state: Mutex::new(State {
                disk: Disk {
                    next_ino: 1,
                    ..Disk::default()
                },
                rng: StdRng::seed_from_u64(seed),
                chaos: Chaos::default(),
                raced_writes: Vec::new(),
                racing_counter: 0,
                hashed: Vec::new(),
                tag: tag.to_owned(),
                ops: 0,
                crash_at: None,
                pause_at: None,
                pause: None,
                unmounted: None,
                sub_drive: None,
                under_mount: Vec::new(),
                locked: BTreeSet::new(),
                as_user: false,
                watcher: None,
                missed: 0,
                refused: BTreeSet::new(),
                held: BTreeSet::new(),
                events_held: None,
                torn_listing: None,
            }),
        }
    }

    /// The engine's process loses access to the folder `rel` and all below it.
    pub(crate) fn lock(&self, rel: &str) {
        let key = self.key(rel);
        let mut st = self.state.lock().unwrap();
        Self::touch_key(&mut st, &key);
        st.locked.insert(key);
    }

    /// Access to a locked folder (by key) is given back (a permission change: the watcher
    /// reports it).
    pub(crate) fn unlock(&self, key: &str) {
        let mut st = self.state.lock().unwrap();
        Self::touch_key(&mut st, key);
        st.locked.remove(key);
    }

    fn touch_key(st: &mut State, key: &str) {
        if let Some(s) = st.disk.nodes.get(key) {
            let spelled = s.spelled.clone();
            st.disk.touched.push(spelled);
        }
    }

    /// The running engine's watcher marks: every change from now on is delivered there
    /// (unless the weather loses or delays it).
    pub(crate) fn set_watcher(&self, dirty: std::sync::Arc<crate::watcher::DirtyPaths>) {
        let mut st = self.state.lock().unwrap();
        st.disk.touched.clear();
        st.watcher = Some(dirty);
    }

    /// The watcher delivers what is queued (each change perhaps lost, or overflowing).
    pub(crate) fn deliver_events(&self) {
        Self::deliver(&mut self.state.lock().unwrap());
    }

    /// Scripted: the watcher delivers the first `n` queued events now; the rest reach it only
    /// when the engine looks at `rel` — a rename's second event arriving after the engine took
    /// the marks of the first.
    pub(crate) fn deliver_events_split(&self, n: usize, rel: &str) {
        let mut st = self.state.lock().unwrap();
        Self::deliver_first(&mut st, n);
        st.events_held = Some(Held::UntilLookAt(self.key(rel)));
    }

    /// Scripted: while the engine next lists the folder `dir`, the user renames `from` to `to`
    /// in it, and the listing shows neither name — what POSIX allows a `readdir` that a rename
    /// overtakes (on ext4, names come in hash order: the old name is removed ahead of the
    /// listing's position, the new one lands behind it). The rename's events are queued as
    /// usual.
    pub(crate) fn tear_next_listing(&self, dir: &str, from: &str, to: &str) {
        self.state.lock().unwrap().torn_listing =
            Some((self.key(dir), from.to_owned(), to.to_owned()));
    }

    /// Scripted: the watcher's events from now on reach the engine only once time passes on
    /// the disk's clock (the engine waits), not at its operations.
    pub(crate) fn hold_events_until_time_passes(&self) {
        self.state.lock().unwrap().events_held = Some(Held::UntilTimePasses);
    }

    /// How many changes the watcher lost so far.
    pub(crate) fn missed_events(&self) -> u64 {
        self.state.lock().unwrap().missed
    }

    /// The watcher delivers the first `n` queued events; the rest stay queued.
    fn deliver_first(st: &mut State, n: usize) {
        let n = n.min(st.disk.touched.len());
        let rest = st.disk.touched.split_off(n);
        Self::deliver(st);
        st.disk.touched = rest;
    }

    fn deliver(st: &mut State) {
        let touched = std::mem::take(&mut st.disk.touched);
        let Some(watcher) = st.watcher.clone() else {
            return;
        };
        for path in touched {
            if path.split('/').next() == Some(crate::scan::STATE_DIR) {
                continue;
            }
            if st.chaos.miss_event > 0.0 && st.rng.gen_bool(st.chaos.miss_event) {
                tracing::debug!(path, "WATCHER misses a change");
                st.missed += 1;
                continue;
            }
            if st.chaos.overflow > 0.0 && st.rng.gen_bool(st.chaos.overflow) {
                tracing::debug!(path, "WATCHER queue overflows");
                watcher.mark_everything();
                continue;
            }
            watcher.mark(&path);
        }
    }

    /// Renames onto `rel` fail with `PermissionDenied` (`false`: until allowed again).
    pub(crate) fn refuse_renames_onto(&self, rel: &str, refuse: bool) {
        let key = self.key(rel);
        set_member(&mut self.state.lock().unwrap().refused, key, refuse);
    }

    /// Reading the file `rel` fails with `PermissionDenied` (`false`: until allowed again),
    /// and neither change is an event the watcher reports.
    pub(crate) fn hold_reads_of(&self, rel: &str, hold: bool) {
        let key = self.key(rel);
        set_member(&mut self.state.lock().unwrap().held, key, hold);
    }

    /// The folders (by key) the engine's process may not enter now.
    pub(crate) fn locked(&self) -> Vec<String> {
        self.state.lock().unwrap().locked.iter().cloned().collect()
    }

    /// `PermissionDenied` when the engine may not touch `rel`: it is below a locked folder, or
    /// (`itself`) is one.
    fn locked_out(&self, st: &State, rel: &str, itself: bool) -> std::io::Result<()> {
        if st.locked.is_empty() || st.as_user {
            return Ok(());
        }
        let k = self.key(rel);
        if st.locked.iter().any(|l| {
            (itself && k == *l)
                || k.strip_prefix(l.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        }) {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!("permission denied: {rel}"),
            ));
        }
        Ok(())
    }

    fn refused(&self, st: &State, rel: &str) -> std::io::Result<()> {
        if st.refused.contains(&self.key(rel)) {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!("renaming onto {rel} is refused"),
            ));
        }
        Ok(())
    }

    /// How many times the engine read `rel` to hash it.
    pub(crate) fn hashes_of(&self, rel: &str) -> usize {
        let key = self.key(rel);
        let st = self.state.lock().unwrap();
        st.hashed.iter().filter(|k| **k == key).count()
    }

    /// Moves the disk's clock on by `ns` (no write happens meanwhile).
    pub(crate) fn let_time_pass(&self, ns: i128) {
        self.state.lock().unwrap().disk.clock_ns += ns;
    }

    /// Gives the disk a coarse clock: a thousand writes share one modification time (as
    /// ext4's jiffy before Linux 6.13, or FAT's two seconds), and the user's racing saves keep
    /// the file's size — a change only a read can tell.
    pub(crate) fn coarse_clock(&self) {
        self.state.lock().unwrap().disk.mtime_tick_ns = 1_000_000;
    }

    pub(crate) fn set_chaos(&self, chaos: Chaos) {
        self.state.lock().unwrap().chaos = chaos;
    }

    /// The drive goes away (pulled out: what was not durable on it is lost); the folder is an
    /// empty mount point until [`Self::mount`].
    pub(crate) fn unmount(&self) {
        let mut st = self.state.lock().unwrap();
        if st.unmounted.is_none() {
            let empty = Disk {
                next_ino: st.disk.next_ino + 1_000_000,
                clock_ns: st.disk.clock_ns,
                ..Disk::default()
            };
            let mut drive = std::mem::replace(&mut st.disk, empty);
            drive.power_cut();
            st.unmounted = Some(drive);
            // The kernel tells the watcher its watches are gone (IN_UNMOUNT, IN_IGNORED on the
            // folder itself): everything is marked.
            if let Some(w) = &st.watcher {
                w.mark_everything();
            }
        }
    }

    /// The machine loses power: every disk keeps only what was durable (see the module doc).
    pub(crate) fn power_cut(&self) {
        let mut st = self.state.lock().unwrap();
        st.disk.power_cut();
        if let Some(drive) = st.unmounted.as_mut() {
            drive.power_cut();
        }
    }

    /// fsync of a file the fake server's side of a transfer wrote (as `Api::download` does).
    pub(crate) fn fsync_file(&self, path: &Path) -> std::io::Result<()> {
        let rel = self.rel(path)?;
        let key = self.key(&rel);
        self.state.lock().unwrap().disk.fsync_file(&key);
        Ok(())
    }

    /// The drive is back (whatever was written into the empty mount point is hidden again).
    pub(crate) fn mount(&self) {
        let mut st = self.state.lock().unwrap();
        if let Some(disk) = st.unmounted.take() {
            st.disk = disk;
        }
    }

    /// The drive mounted on the folder `top` (inside the synced folder) is pulled out: `top`
    /// is an empty mount point until [`Self::plug_sub_drive`]. `false` when there is no such
    /// folder or a drive is already out.
    pub(crate) fn unplug_sub_drive(&self, top: &str) -> bool {
        let mut st = self.state.lock().unwrap();
        let key = self.key(top);
        if st.unmounted.is_some()
            || st.sub_drive.is_some()
            || !matches!(st.disk.nodes.get(&key).map(|s| &s.node), Some(Node::Dir))
        {
            return false;
        }
        let below = format!("{key}/");
        // The drive is chosen only now, among folders the two drives shared a journal for until
        // now: a rename into or out of it (impossible across real drives: EXDEV) would leave
        // the file on neither. So the pull comes just after a journal commit (ext4 commits
        // every 5 s): every name is durable, and what was never fsynced is still lost.
        st.disk.commit_names();
        // The watches on the drive's folders end (IN_UNMOUNT): the folder is reported.
        Self::touch_key(&mut st, &key);
        let mut drive = st.disk.clone();
        drive.power_cut();
        let nodes = drive
            .nodes
            .into_iter()
            .filter(|(k, _)| k.starts_with(&below))
            .collect();
        let durable = drive
            .durable_names
            .into_iter()
            .filter(|(k, _)| k.starts_with(&below))
            .collect();
        st.disk.nodes.retain(|k, _| !k.starts_with(&below));
        st.disk.durable_names.retain(|k, _| !k.starts_with(&below));
        st.sub_drive = Some(SubDrive {
            top: key,
            nodes,
            durable,
        });
        true
    }

    /// The drive is plugged back in (if its mount point folder is still there): what was
    /// written into the mount point meanwhile is hidden under it (returned).
    pub(crate) fn plug_sub_drive(&self) -> Vec<Vec<u8>> {
        let mut st = self.state.lock().unwrap();
        let Some(top) = st.sub_drive.as_ref().map(|d| d.top.clone()) else {
            return Vec::new();
        };
        if st.unmounted.is_some()
            || !matches!(st.disk.nodes.get(&top).map(|s| &s.node), Some(Node::Dir))
        {
            return Vec::new();
        }
        let drive = st.sub_drive.take().expect("checked");
        // A mount is not a change any watcher reports: only a full rescan sees the drive's
        // files again (and what it hides).
        st.missed += 1;
        let below = format!("{top}/");
        let hidden: Vec<Vec<u8>> = st
            .disk
            .nodes
            .iter()
            .filter(|(k, _)| k.starts_with(&below))
            .filter_map(|(_, s)| match &s.node {
                Node::File { data, .. } => Some(data.clone()),
                Node::Dir => None,
            })
            .collect();
        st.under_mount.extend(hidden.iter().cloned());
        st.disk.nodes.retain(|k, _| !k.starts_with(&below));
        st.disk.durable_names.retain(|k, _| !k.starts_with(&below));
        st.disk.nodes.extend(drive.nodes);
        st.disk.durable_names.extend(drive.durable);
        hidden
    }

    /// The content the drive that is out holds at `rel` (what a new file there replaces, as
    /// far as sync can tell: the name was synced with it).
    pub(crate) fn on_drive_out(&self, rel: &str) -> Option<Vec<u8>> {
        let st = self.state.lock().unwrap();
        let key = self.key(rel);
        st.sub_drive
            .as_ref()?
            .nodes
            .iter()
            .find_map(|(k, s)| match &s.node {
                Node::File { data, .. } if *k == key => Some(data.clone()),
                _ => None,
            })
    }

    pub(crate) fn sub_drive_out(&self) -> bool {
        self.state.lock().unwrap().sub_drive.is_some()
    }

    /// Contents that are on this machine but not in the folder as it looks now: on a drive
    /// that is out, or hidden under a drive's mount point.
    pub(crate) fn out_of_sight(&self) -> Vec<Vec<u8>> {
        let st = self.state.lock().unwrap();
        let mut all = st.under_mount.clone();
        if let Some(d) = &st.sub_drive {
            all.extend(d.nodes.iter().filter_map(|(_, s)| match &s.node {
                Node::File { data, .. } => Some(data.clone()),
                Node::Dir => None,
            }));
        }
        if let Some(disk) = &st.unmounted {
            all.extend(disk.nodes.values().filter_map(|s| match &s.node {
                Node::File { data, .. } => Some(data.clone()),
                Node::Dir => None,
            }));
        }
        all
    }

    pub(crate) fn is_mounted(&self) -> bool {
        self.state.lock().unwrap().unmounted.is_none()
    }

    pub(crate) fn naming(&self) -> Naming {
        self.naming
    }

    /// The process dies at the `at`-th operation from now (`None`: it lives).
    pub(crate) fn die_after(&self, at: Option<u64>) {
        let mut st = self.state.lock().unwrap();
        st.ops = 0;
        st.crash_at = at;
    }

    /// The engine's pause switch, which the user presses through [`Self::pause_after`].
    pub(crate) fn set_pause_switch(&self, pause: tokio::sync::watch::Sender<bool>) {
        self.state.lock().unwrap().pause = Some(pause);
    }

    /// The user pauses syncing just before the `at`-th operation from now.
    pub(crate) fn pause_after(&self, at: u64) {
        let mut st = self.state.lock().unwrap();
        st.pause_at = Some(st.ops + at);
    }

    /// The user resumes syncing (and no pause is pending).
    pub(crate) fn resume(&self) {
        let mut st = self.state.lock().unwrap();
        st.pause_at = None;
        if let Some(p) = &st.pause {
            p.send_replace(false);
        }
    }

    pub(crate) fn is_dead(&self) -> bool {
        let st = self.state.lock().unwrap();
        st.crash_at.is_some_and(|at| st.ops >= at)
    }

    /// Counts an operation of the engine (on this disk or the network) against the crash point.
    pub(crate) fn gate(&self) -> Gate {
        Self::gate_in(&mut self.state.lock().unwrap())
    }

    fn gate_in(st: &mut State) -> Gate {
        st.ops += 1;
        let late =
            |st: &mut State| st.chaos.late_events > 0.0 && st.rng.gen_bool(st.chaos.late_events);
        if !st.disk.touched.is_empty() && st.events_held.is_none() && !late(st) {
            if late(st) {
                // Only the first of them by now: events reach the watcher one by one (a
                // rename's old name, then its new one).
                let n = st.rng.gen_range(1..=st.disk.touched.len());
                Self::deliver_first(st, n);
            } else {
                Self::deliver(st);
            }
        }
        if st.pause_at.is_some_and(|at| st.ops >= at) {
            st.pause_at = None;
            if let Some(p) = &st.pause {
                p.send_replace(true);
            }
        }
        let Some(at) = st.crash_at else {
            return Gate::Proceed;
        };
        match st.ops.cmp(&at) {
            std::cmp::Ordering::Less => Gate::Proceed,
            std::cmp::Ordering::Equal => Gate::ProceedThenDie,
            std::cmp::Ordering::Greater => Gate::Dead,
        }
    }

    pub(crate) fn take_raced_writes(&self) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
        std::mem::take(&mut self.state.lock().unwrap().raced_writes)
    }

    /// The lookup key of a relative path: the name itself (ext4, NTFS keep every spelling
    /// apart), normalised where the disk ignores normalisation (HFS+), folded where it ignores
    /// case.
    pub(crate) fn key(&self, rel: &str) -> String {
        let mut k: String = if self.naming.nfd {
            rel.nfc().collect()
        } else {
            rel.to_owned()
        };
        if self.naming.case_insensitive {
            k = k.to_lowercase();
        }
        k
    }

    fn spell(&self, rel: &str) -> String {
        if self.naming.nfd {
            rel.nfd().collect()
        } else {
            rel.to_owned()
        }
    }

    fn rel(&self, path: &Path) -> std::io::Result<String> {
        let rest = path
            .strip_prefix(&self.root)
            .map_err(|_| Error::new(ErrorKind::PermissionDenied, "outside the fake disk"))?;
        let parts: Vec<&str> = rest
            .components()
            .map(|c| {
                c.as_os_str()
                    .to_str()
                    .expect("UTF-8 paths in the simulation")
            })
            .collect();
        Ok(parts.join("/"))
    }

    /// Passes an operation through the crash gate, then rolls the dice for a fault. `Ok(true)`:
    /// act, then report the crash.
    fn fault(st: &mut State, op: &str, rel: &str) -> std::io::Result<bool> {
        match Self::gate_in(st) {
            Gate::Dead => return Err(died()),
            Gate::ProceedThenDie => return Ok(true),
            Gate::Proceed => {}
        }
        if st.chaos.fail > 0.0 && st.rng.gen_bool(st.chaos.fail) {
            let kind = match st.rng.gen_range(0..3) {
                0 => ErrorKind::PermissionDenied,
                1 => ErrorKind::StorageFull,
                _ => ErrorKind::Other,
            };
            return Err(Error::new(kind, format!("injected fault: {op} {rel}")));
        }
        Ok(false)
    }

    /// `result`, or the crash when the process died right after acting.
    fn then<T>(die: bool, result: std::io::Result<T>) -> std::io::Result<T> {
        match result {
            Ok(_) if die => Err(died()),
            other => other,
        }
    }

    fn parent_is_dir(&self, disk: &Disk, rel: &str) -> std::io::Result<()> {
        match rel.rfind('/') {
            None => Ok(()),
            Some(i) => match disk.nodes.get(&self.key(&rel[..i])) {
                Some(Stored {
                    node: Node::Dir, ..
                }) => Ok(()),
                Some(_) => Err(Error::new(ErrorKind::NotADirectory, "parent is a file")),
                None => Err(not_found(&rel[..i])),
            },
        }
    }

    // --- the user's side: what the simulation does to the disk directly ---

    /// Writes a file as the user would (creating its folders).
    pub(crate) fn user_write(&self, rel: &str, data: &[u8]) -> std::io::Result<()> {
        let mut st = self.state.lock().unwrap();
        if let Some(i) = rel.rfind('/') {
            self.mkdirs(&mut st.disk, &rel[..i])?;
        }
        self.put_file(&mut st.disk, rel, data.to_vec())?;
        st.disk.fsync_file(&self.key(rel));
        Ok(())
    }

    pub(crate) fn user_remove(&self, rel: &str) -> std::io::Result<()> {
        self.state.lock().unwrap().as_user = true;
        let removed = self.remove_file(&self.root.join(rel));
        self.state.lock().unwrap().as_user = false;
        removed?;
        self.state.lock().unwrap().disk.fsync_dir();
        Ok(())
    }

    pub(crate) fn user_rename(&self, from: &str, to: &str) -> std::io::Result<()> {
        if let Some(i) = to.rfind('/') {
            let mut st = self.state.lock().unwrap();
            self.mkdirs(&mut st.disk, &to[..i])?;
        }
        {
            let mut st = self.state.lock().unwrap();
            let die = Self::fault(&mut st, "rename", from)?;
            drop(st);
            Self::then(die, self.rename_now(from, to))?;
        }
        let mut st = self.state.lock().unwrap();
        st.disk.fsync_dir();
        // A folder closed to the app stays closed under its new name.
        let (kf, kt) = (self.key(from), self.key(to));
        st.locked = std::mem::take(&mut st.locked)
            .into_iter()
            .map(|l| match l.strip_prefix(kf.as_str()) {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("{kt}{rest}"),
                _ => l,
            })
            .collect();
        Ok(())
    }

    /// The user saves a new file at `to` just before the engine renames something there.
    fn race_rename(&self, st: &mut State, from: &str, to: &str) {
        let race = st.chaos.user_races_rename;
        if race == 0.0
            || to.split('/').any(|n| n == crate::scan::STATE_DIR)
            || self.key(from) == self.key(to)
            || st.disk.nodes.contains_key(&self.key(to))
            || !st.rng.gen_bool(race)
        {
            return;
        }
        st.racing_counter += 1;
        let content = format!("{} raced {}", st.tag, st.racing_counter).into_bytes();
        let made = match to.rfind('/') {
            Some(i) => self.mkdirs(&mut st.disk, &to[..i]),
            None => Ok(()),
        };
        if made
            .and_then(|()| self.put_file(&mut st.disk, to, content.clone()))
            .is_ok()
        {
            st.disk.fsync_file(&self.key(to));
            tracing::debug!(path = to, content = %String::from_utf8_lossy(&content), "USER races the engine's rename");
            st.raced_writes.push((None, content));
        }
    }

    /// What the racing user saves over `replaced`: new bytes, of the same size on a coarse
    /// clock (a change only a read can tell).
    fn racing_content(st: &mut State, replaced: &[u8]) -> Vec<u8> {
        st.racing_counter += 1;
        let mut content = format!("{} raced {}", st.tag, st.racing_counter).into_bytes();
        if st.disk.mtime_tick_ns > 0 && !replaced.is_empty() {
            content.resize(replaced.len(), b'.');
            if content == replaced {
                content[0] ^= 1;
            }
        }
        content
    }

    /// The user writes a file the engine just moved from its state folder into place.
    fn race_placed(&self, from: &str, to: &str) {
        let mut st = self.state.lock().unwrap();
        let in_state = |p: &str| p.split('/').any(|n| n == crate::scan::STATE_DIR);
        let race = st.chaos.user_races_placed;
        if race == 0.0 || !in_state(from) || in_state(to) || !st.rng.gen_bool(race) {
            return;
        }
        let Some(Stored {
            node: Node::File { data, .. },
            ..
        }) = st.disk.nodes.get(&self.key(to))
        else {
            return;
        };
        let data = data.clone();
        let content = Self::racing_content(&mut st, &data);
        if self.put_file(&mut st.disk, to, content.clone()).is_ok() {
            st.disk.fsync_file(&self.key(to));
            tracing::debug!(path = to, content = %String::from_utf8_lossy(&content), "USER races the engine's placing");
            st.raced_writes.push((Some(data), content));
        }
    }

    /// Every file (its spelling on disk → content), leaving out the client's state folder.
    pub(crate) fn files(&self) -> BTreeMap<String, Vec<u8>> {
        let st = self.state.lock().unwrap();
        st.disk
            .nodes
            .values()
            .filter(|s| !s.spelled.split('/').any(|n| n == crate::scan::STATE_DIR))
            .filter_map(|s| match &s.node {
                Node::File { data, .. } => Some((s.spelled.clone(), data.clone())),
                Node::Dir => None,
            })
            .collect()
    }

    fn mkdirs(&self, disk: &mut Disk, rel: &str) -> std::io::Result<()> {
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        for i in 0..parts.len() {
            let prefix = parts[..=i].join("/");
            match disk.nodes.get(&self.key(&prefix)) {
                Some(Stored {
                    node: Node::Dir, ..
                }) => {}
                Some(_) => {
                    return Err(Error::new(ErrorKind::NotADirectory, "a file is in the way"));
                }
                None => {
                    let ino = disk.next_ino;
                    disk.next_ino += 1;
                    let spelled = self.spell(&prefix);
                    // Keep the parent's spelling (a case-insensitive disk keeps the first one).
                    let spelled = match prefix.rfind('/') {
                        Some(j) => format!(
                            "{}{}",
                            disk.nodes[&self.key(&prefix[..j])].spelled,
                            &spelled[spelled.rfind('/').map_or(0, |k| k)..]
                        ),
                        None => spelled,
                    };
                    disk.touched.push(spelled.clone());
                    disk.nodes.insert(
                        self.key(&prefix),
                        Stored {
                            spelled,
                            node: Node::Dir,
                            ino,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    fn put_file(&self, disk: &mut Disk, rel: &str, data: Vec<u8>) -> std::io::Result<()> {
        self.parent_is_dir(disk, rel)?;
        disk.clock_ns += 1_000;
        let mtime_ns = disk.stamp();
        let key = self.key(rel);
        match disk.nodes.get_mut(&key) {
            Some(Stored {
                node: Node::Dir, ..
            }) => Err(Error::new(
                ErrorKind::IsADirectory,
                "a folder is in the way",
            )),
            Some(s) => {
                s.node = Node::File { data, mtime_ns };
                let spelled = s.spelled.clone();
                disk.touched.push(spelled);
                Ok(())
            }
            None => {
                let ino = disk.next_ino;
                disk.next_ino += 1;
                let spelled = match rel.rfind('/') {
                    Some(j) => format!(
                        "{}/{}",
                        disk.nodes[&self.key(&rel[..j])].spelled,
                        self.spell(&rel[j + 1..])
                    ),
                    None => self.spell(rel),
                };
                disk.touched.push(spelled.clone());
                disk.nodes.insert(
                    key,
                    Stored {
                        spelled,
                        node: Node::File { data, mtime_ns },
                        ino,
                    },
                );
                Ok(())
            }
        }
    }

    fn rename_now(&self, from: &str, to: &str) -> std::io::Result<()> {
        let mut st = self.state.lock().unwrap();
        let (from, to) = (from.to_owned(), to.to_owned());
        let (kf, kt) = (self.key(&from), self.key(&to));
        let src = st
            .disk
            .nodes
            .get(&kf)
            .cloned()
            .ok_or_else(|| not_found(&from))?;
        self.parent_is_dir(&st.disk, &to)?;
        if kf != kt {
            match (&src.node, st.disk.nodes.get(&kt).map(|s| &s.node)) {
                (_, None) => {}
                (Node::File { .. }, Some(Node::File { .. })) => {}
                (Node::Dir, Some(Node::Dir)) => {
                    let below = format!("{kt}/");
                    if st.disk.nodes.keys().any(|k| k.starts_with(&below)) {
                        return Err(Error::new(ErrorKind::DirectoryNotEmpty, "not empty"));
                    }
                }
                (Node::File { .. }, Some(Node::Dir)) => {
                    return Err(Error::new(ErrorKind::IsADirectory, "a folder is there"));
                }
                (Node::Dir, Some(Node::File { .. })) => {
                    return Err(Error::new(ErrorKind::NotADirectory, "a file is there"));
                }
            }
            if kt.starts_with(&format!("{kf}/")) {
                return Err(Error::new(ErrorKind::InvalidInput, "into itself"));
            }
        }
        // Move the entry and everything below it.
        let below = format!("{kf}/");
        let moving: Vec<String> = std::iter::once(kf.clone())
            .chain(
                st.disk
                    .nodes
                    .keys()
                    .filter(|k| k.starts_with(&below))
                    .cloned(),
            )
            .collect();
        let new_spelled = match to.rfind('/') {
            Some(j) => format!(
                "{}/{}",
                st.disk.nodes[&self.key(&to[..j])].spelled,
                self.spell(&to[j + 1..])
            ),
            None => self.spell(&to),
        };
        let old_spelled_len = src.spelled.len();
        st.disk.touched.push(src.spelled.clone());
        st.disk.touched.push(new_spelled.clone());
        let mut moved = Vec::new();
        for k in moving {
            let mut s = st.disk.nodes.remove(&k).expect("listed");
            s.spelled = format!("{new_spelled}{}", &s.spelled[old_spelled_len..]);
            moved.push((format!("{kt}{}", &k[kf.len()..]), s));
        }
        for (k, s) in moved {
            st.disk.nodes.insert(k, s);
        }
        Ok(())
    }

    fn meta(&self, rel: &str) -> std::io::Result<Meta> {
        let mut st = self.state.lock().unwrap();
        if st.events_held == Some(Held::UntilLookAt(self.key(rel))) {
            st.events_held = None;
            Self::deliver(&mut st);
        }
        self.locked_out(&st, rel, false)?;
        if rel.is_empty() {
            return Ok(Meta {
                kind: Kind::Dir,
                len: 0,
                mtime_ns: 0,
                dev: 1,
                ino: 0,
            });
        }
        let s = st
            .disk
            .nodes
            .get(&self.key(rel))
            .ok_or_else(|| not_found(rel))?;
        Ok(match &s.node {
            Node::Dir => Meta {
                kind: Kind::Dir,
                len: 0,
                mtime_ns: 0,
                dev: 1,
                ino: s.ino,
            },
            Node::File { data, mtime_ns } => Meta {
                kind: Kind::File,
                len: data.len() as u64,
                mtime_ns: *mtime_ns,
                dev: 1,
                ino: s.ino,
            },
        })
    }

    fn read(&self, rel: &str) -> std::io::Result<Vec<u8>> {
        let st = self.state.lock().unwrap();
        match st.disk.nodes.get(&self.key(rel)) {
            Some(Stored {
                node: Node::File { data, .. },
                ..
            }) => Ok(data.clone()),
            Some(_) => Err(Error::new(ErrorKind::IsADirectory, "a folder")),
            None => Err(not_found(rel)),
        }
    }

    /// Reads a file for an upload (the fake server's side of a transfer).
    pub(crate) fn read_file(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        let rel = self.rel(path)?;
        let die = {
            let mut st = self.state.lock().unwrap();
            self.locked_out(&st, &rel, false)?;
            Self::fault(&mut st, "read", &rel)?
        };
        Self::then(die, self.read(&rel))
    }

    /// Writes a file for a download (the fake server's side of a transfer).
    pub(crate) fn write_file(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        let rel = self.rel(path)?;
        let mut st = self.state.lock().unwrap();
        self.locked_out(&st, &rel, false)?;
        let die = Self::fault(&mut st, "write", &rel)?;
        Self::then(die, self.put_file(&mut st.disk, &rel, data.to_vec()))
    }
}

impl LocalFs for FakeFs {
    fn read_dir(&self, dir: &Path) -> std::io::Result<Vec<Entry>> {
        let rel = self.rel(dir)?;
        let dir_key = self.key(&rel);
        let torn = (self.state.lock().unwrap().torn_listing).take_if(|(d, _, _)| *d == dir_key);
        let mut hidden: Vec<String> = Vec::new();
        if let Some((_, from, to)) = torn {
            tracing::debug!(from, to, "USER renames while the engine lists the folder");
            self.user_rename(&from, &to)?;
            hidden = vec![self.key(&from), self.key(&to)];
        }
        let mut st = self.state.lock().unwrap();
        if Self::fault(&mut st, "read_dir", &rel)? {
            return Err(died());
        }
        self.locked_out(&st, &rel, true)?;
        let prefix = if rel.is_empty() {
            String::new()
        } else {
            match st.disk.nodes.get(&self.key(&rel)) {
                Some(Stored {
                    node: Node::Dir, ..
                }) => {}
                Some(_) => return Err(Error::new(ErrorKind::NotADirectory, "a file")),
                None => return Err(not_found(&rel)),
            }
            format!("{}/", self.key(&rel))
        };
        Ok(st
            .disk
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k[prefix.len()..].contains('/') && !hidden.contains(k))
            .map(|(_, s)| Entry {
                name: OsString::from(s.spelled.rsplit('/').next().unwrap_or("")),
                kind: match s.node {
                    Node::Dir => Kind::Dir,
                    Node::File { .. } => Kind::File,
                },
            })
            .collect())
    }

    fn metadata(&self, path: &Path) -> std::io::Result<Meta> {
        self.meta(&self.rel(path)?)
    }

    fn symlink_metadata(&self, path: &Path) -> std::io::Result<Meta> {
        self.meta(&self.rel(path)?)
    }

    fn now_ns(&self) -> i128 {
        self.state.lock().unwrap().disk.clock_ns
    }

    fn stamp_step_ns(&self, _mtime_ns: i128) -> i128 {
        // Fine: a stamp is settled once anything else was written after it.
        self.state.lock().unwrap().disk.mtime_tick_ns
    }

    fn wait_ns(&self, ns: i128) {
        self.let_time_pass(ns.max(0));
        // Scripted: events held for a slow watcher arrive now.
        let st = &mut *self.state.lock().unwrap();
        if st.events_held == Some(Held::UntilTimePasses) {
            st.events_held = None;
            Self::deliver(st);
        } else {
            // Meanwhile the watcher's queue drains (unless the weather holds its events back):
            // events arrive while the engine waits for a file to settle, in the middle of a
            // scan (decision 0055).
            let late = st.chaos.late_events > 0.0 && st.rng.gen_bool(st.chaos.late_events);
            if !st.disk.touched.is_empty() && st.events_held.is_none() && !late {
                Self::deliver(st);
            }
        }
    }

    fn settle_wait_min(&self) -> u64 {
        // The simulation's files are a few bytes ("dev0 v12"): most are "large" here, so
        // the waits are played; the first nine writes of a device are not.
        SIM_SETTLE_WAIT_MIN
    }

    fn hash(&self, path: &Path) -> std::io::Result<String> {
        let rel = self.rel(path)?;
        let data = {
            let mut st = self.state.lock().unwrap();
            if Self::fault(&mut st, "hash", &rel)? {
                return Err(died());
            }
            self.locked_out(&st, &rel, false)?;
            if st.held.contains(&self.key(&rel)) {
                return Err(Error::new(
                    ErrorKind::PermissionDenied,
                    format!("{rel} is held by another program"),
                ));
            }
            let key = self.key(&rel);
            st.hashed.push(key);
            drop(st);
            self.read(&rel)?
        };
        let sha = crate::chunker::content_id_of_bytes(&data).to_string();
        // The user saves the file again just after the engine looked at it.
        let mut st = self.state.lock().unwrap();
        let race = st.chaos.user_races_hash;
        if race > 0.0
            && !rel.split('/').any(|n| n == crate::scan::STATE_DIR)
            && st.rng.gen_bool(race)
        {
            let content = Self::racing_content(&mut st, &data);
            if self.put_file(&mut st.disk, &rel, content.clone()).is_ok() {
                let key = self.key(&rel);
                st.disk.fsync_file(&key);
                tracing::debug!(path = rel, content = %String::from_utf8_lossy(&content), "USER races the engine's hash");
                st.raced_writes.push((Some(data), content));
            }
        }
        Ok(sha)
    }

    fn sha256(&self, path: &Path) -> std::io::Result<String> {
        let rel = self.rel(path)?;
        self.locked_out(&self.state.lock().unwrap(), &rel, false)?;
        Ok(hex::encode(Sha256::digest(self.read(&rel)?)))
    }

    fn read_to_string(&self, path: &Path) -> std::io::Result<String> {
        let rel = self.rel(path)?;
        self.locked_out(&self.state.lock().unwrap(), &rel, false)?;
        String::from_utf8(self.read(&rel)?).map_err(|e| Error::new(ErrorKind::InvalidData, e))
    }

    fn write_durably(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        self.write_file(path, data)?;
        let key = self.key(&self.rel(path)?);
        let mut st = self.state.lock().unwrap();
        st.disk.fsync_file(&key);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        let (from, to) = (self.rel(from)?, self.rel(to)?);
        let mut st = self.state.lock().unwrap();
        let die = Self::fault(&mut st, "rename", &from)?;
        self.locked_out(&st, &from, true)?;
        self.locked_out(&st, &to, false)?;
        self.refused(&st, &to)?;
        self.race_rename(&mut st, &from, &to);
        drop(st);
        Self::then(die, self.rename_now(&from, &to))
    }

    fn rename_no_replace(&self, from: &Path, to: &Path) -> std::io::Result<bool> {
        let (from, to) = (self.rel(from)?, self.rel(to)?);
        let mut st = self.state.lock().unwrap();
        let die = Self::fault(&mut st, "rename_no_replace", &from)?;
        self.locked_out(&st, &from, true)?;
        self.locked_out(&st, &to, false)?;
        self.refused(&st, &to)?;
        self.race_rename(&mut st, &from, &to);
        if st.disk.nodes.contains_key(&self.key(&to)) {
            return Self::then(die, Ok(false));
        }
        drop(st);
        let renamed = self.rename_now(&from, &to);
        if renamed.is_ok() {
            self.race_placed(&from, &to);
        }
        Self::then(die, renamed.map(|()| true))
    }

    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        let rel = self.rel(path)?;
        let mut st = self.state.lock().unwrap();
        let die = Self::fault(&mut st, "remove_file", &rel)?;
        self.locked_out(&st, &rel, false)?;
        let k = self.key(&rel);
        match st.disk.nodes.get(&k) {
            Some(Stored {
                node: Node::File { .. },
                ..
            }) => {
                let gone = st.disk.nodes.remove(&k).expect("matched");
                st.disk.touched.push(gone.spelled);
                Self::then(die, Ok(()))
            }
            Some(_) => Err(Error::new(ErrorKind::IsADirectory, "a folder")),
            None => Err(not_found(&rel)),
        }
    }

    fn remove_dir(&self, path: &Path) -> std::io::Result<()> {
        let rel = self.rel(path)?;
        let mut st = self.state.lock().unwrap();
        let die = Self::fault(&mut st, "remove_dir", &rel)?;
        self.locked_out(&st, &rel, false)?;
        let k = self.key(&rel);
        match st.disk.nodes.get(&k) {
            Some(Stored {
                node: Node::Dir, ..
            }) => {
                let below = format!("{k}/");
                if st.disk.nodes.keys().any(|x| x.starts_with(&below)) {
                    return Err(Error::new(ErrorKind::DirectoryNotEmpty, "not empty"));
                }
                let gone = st.disk.nodes.remove(&k).expect("matched");
                st.disk.touched.push(gone.spelled);
                Self::then(die, Ok(()))
            }
            Some(_) => Err(Error::new(ErrorKind::NotADirectory, "a file")),
            None => Err(not_found(&rel)),
        }
    }

    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        let rel = self.rel(path)?;
        let mut st = self.state.lock().unwrap();
        let die = Self::fault(&mut st, "create_dir_all", &rel)?;
        self.locked_out(&st, &rel, false)?;
        let before: Vec<bool> = prefixes(&rel)
            .iter()
            .map(|p| st.disk.nodes.contains_key(&self.key(p)))
            .collect();
        let made = self.mkdirs(&mut st.disk, &rel);
        // Durable, as `RealFs` makes it: each new folder's parent is fsynced.
        if prefixes(&rel)
            .iter()
            .zip(before)
            .any(|(p, existed)| !existed && st.disk.nodes.contains_key(&self.key(p)))
        {
            st.disk.fsync_dir();
        }
        Self::then(die, made)
    }

    fn sync_dir(&self, _dir: &Path) {
        self.state.lock().unwrap().disk.fsync_dir();
    }
}
