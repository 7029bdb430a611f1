//! What may have changed in the folder since the engine last looked: the folder watcher (and
//! the engine, for what it did itself) marks paths dirty; a pass takes the marks before it
//! scans, and scans only those paths — or everything, when the marks cannot be trusted (the
//! kernel's queue overflowed, a watch could not be added, the folder came back from a drive
//! that was unplugged). A missed mark costs latency until the next full rescan, never data:
//! every destructive step still checks the disk it acts on (0028).

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use crate::scan::STATE_DIR;

/// More marks than this before a pass takes them: a full scan is cheaper than a long list
/// (and the list's memory stays bounded through any burst).
pub(crate) const MAX_DIRTY_PATHS: usize = 8192;

/// The marks a pass took: paths relative to the folder, as the disk spells them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Dirty {
    /// Look at everything.
    pub everything: bool,
    pub paths: BTreeSet<String>,
}

impl Dirty {
    pub(crate) fn is_clean(&self) -> bool {
        !self.everything && self.paths.is_empty()
    }
}

/// The shared marks, filled by the watcher's thread and taken by the engine.
#[derive(Debug, Default)]
pub(crate) struct DirtyPaths {
    marks: Mutex<Dirty>,
    /// Why the watcher cannot be relied on (a watch could not be added): every pass scans
    /// everything until the folder is watched again.
    degraded: Mutex<Option<String>>,
}

impl DirtyPaths {
    pub(crate) fn mark(&self, rel: &str) {
        let mut d = self.marks.lock().expect("dirty marks");
        if d.everything {
            return;
        }
        if d.paths.len() >= MAX_DIRTY_PATHS {
            d.everything = true;
            d.paths.clear();
            return;
        }
        d.paths.insert(rel.to_owned());
    }

    pub(crate) fn mark_everything(&self) {
        let mut d = self.marks.lock().expect("dirty marks");
        d.everything = true;
        d.paths.clear();
    }

    /// Takes the marks (before scanning: a mark made during the scan stays for the next one).
    pub(crate) fn take(&self) -> Dirty {
        let mut d = std::mem::take(&mut *self.marks.lock().expect("dirty marks"));
        if self.degraded().is_some() {
            d.everything = true;
            d.paths.clear();
        }
        d
    }

    pub(crate) fn is_clean(&self) -> bool {
        self.degraded().is_none() && self.marks.lock().expect("dirty marks").is_clean()
    }

    pub(crate) fn set_degraded(&self, why: Option<String>) {
        *self.degraded.lock().expect("degraded") = why;
    }

    /// Why changes are found by full scans only, if they are.
    pub(crate) fn degraded(&self) -> Option<String> {
        self.degraded.lock().expect("degraded").clone()
    }
}

/// What a watcher event means for the engine.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Noted {
    /// Nothing that could change what a scan finds (a file or folder opened or read, or
    /// something in the engine's own `.syncsphere` folder).
    Nothing,
    /// Paths were marked: run a pass.
    Marked,
    /// The watcher lost track (queue overflow, an error): everything was marked.
    Everything,
}

/// Marks what `event` says may have changed under `folder`. Opening or reading a file or
/// folder changes nothing — and every scan opens every folder it lists: counting those
/// would make an idle client scan forever.
pub(crate) fn note_event(
    dirty: &DirtyPaths,
    folder: &Path,
    event: &notify::Result<notify::Event>,
) -> Noted {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode};
    let event = match event {
        Ok(e) => e,
        Err(e) => {
            if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
                dirty.set_degraded(Some(watch_limit_message()));
            }
            tracing::warn!(error = %e, "the folder watcher reported an error; looking at everything");
            dirty.mark_everything();
            return Noted::Everything;
        }
    };
    if event.need_rescan() {
        dirty.mark_everything();
        return Noted::Everything;
    }
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
        EventKind::Access(_) => return Noted::Nothing,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => {}
        EventKind::Any | EventKind::Other => {
            dirty.mark_everything();
            return Noted::Everything;
        }
    }
    let mut marked = Noted::Nothing;
    for path in &event.paths {
        match relative(folder, path) {
            Some(Rel::Inside(rel)) => {
                dirty.mark(&rel);
                marked = Noted::Marked;
            }
            Some(Rel::StateDir) => {}
            // The folder itself (moved, deleted, its attributes), or a name that is not
            // UTF-8 (its folder is re-listed with everything else).
            None => {
                dirty.mark_everything();
                return Noted::Everything;
            }
        }
    }
    marked
}

enum Rel {
    Inside(String),
    StateDir,
}

fn relative(folder: &Path, path: &Path) -> Option<Rel> {
    let rel = path.strip_prefix(folder).ok()?;
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(name) => parts.push(name.to_str()?),
            _ => return None,
        }
    }
    if parts.is_empty() {
        return None;
    }
    if parts[0] == STATE_DIR {
        return Some(Rel::StateDir);
    }
    Some(Rel::Inside(parts.join("/")))
}

fn watch_limit_message() -> String {
    let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    format!(
        "the folder has more subfolders than the system lets one user watch \
         (fs.inotify.max_user_watches = {limit}): changes are found by a full scan every \
         minute instead of at once; raise the limit (e.g. `sudo sysctl \
         fs.inotify.max_user_watches=524288`) and restart sync"
    )
}

/// The folder watch, re-armed when the folder comes back (a drive unplugged and plugged back
/// in: the kernel dropped the old watches with the old mount).
pub(crate) trait FolderWatch: Send + Sync {
    fn rearm(&self) -> Result<(), String>;
}

/// No watcher: every pass scans everything (the simulation marks its own paths).
#[cfg(test)]
pub(crate) struct NoWatch;

#[cfg(test)]
impl FolderWatch for NoWatch {
    fn rearm(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The OS's watcher (inotify on Linux) over the folder, recursively.
pub(crate) struct OsWatch {
    watcher: Mutex<notify::RecommendedWatcher>,
    folder: PathBuf,
    dirty: std::sync::Arc<DirtyPaths>,
}

impl OsWatch {
    /// Watches `folder`; every relevant event marks `dirty` and calls `nudge`. A folder too
    /// large for the watch limit is still synced, by full scans, and says so in the log and
    /// the returned warning.
    pub(crate) fn start(
        folder: &Path,
        dirty: std::sync::Arc<DirtyPaths>,
        nudge: impl Fn() + Send + 'static,
    ) -> Result<(Self, Option<String>), notify::Error> {
        let root = folder.to_path_buf();
        let marks = dirty.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if note_event(&marks, &root, &event) != Noted::Nothing {
                nudge();
            }
        })?;
        let watch = OsWatch {
            watcher: Mutex::new(watcher),
            folder: folder.to_path_buf(),
            dirty,
        };
        let warning = watch.rearm().err();
        Ok((watch, warning))
    }
}

impl FolderWatch for OsWatch {
    fn rearm(&self) -> Result<(), String> {
        use notify::Watcher;
        let mut w = self.watcher.lock().expect("watcher");
        let _ = w.unwatch(&self.folder);
        match w.watch(&self.folder, notify::RecursiveMode::Recursive) {
            Ok(()) => {
                self.dirty.set_degraded(None);
                Ok(())
            }
            Err(e) => {
                let message = if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
                    watch_limit_message()
                } else {
                    format!(
                        "cannot watch {} for changes ({e}): changes are found by a full scan \
                         every minute instead of at once",
                        self.folder.display()
                    )
                };
                tracing::warn!("{message}");
                self.dirty.set_degraded(Some(message.clone()));
                Err(message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, CreateKind, Flag, ModifyKind, RenameMode};

    fn event(kind: EventKind, paths: &[&str]) -> notify::Result<notify::Event> {
        let mut e = notify::Event::new(kind);
        for p in paths {
            e = e.add_path(PathBuf::from(p));
        }
        Ok(e)
    }

    #[test]
    fn opening_and_reading_change_nothing_and_writes_mark_their_paths() {
        let dirty = DirtyPaths::default();
        let root = Path::new("/f");
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
        ] {
            assert_eq!(
                note_event(&dirty, root, &event(kind, &["/f/a"])),
                Noted::Nothing
            );
        }
        assert!(dirty.is_clean());
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert_eq!(
            note_event(&dirty, root, &event(closed, &["/f/a"])),
            Noted::Marked
        );
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert_eq!(
            note_event(&dirty, root, &event(renamed, &["/f/d/x", "/f/e/y"])),
            Noted::Marked
        );
        // The engine's own state folder is not the user's.
        let created = EventKind::Create(CreateKind::File);
        assert_eq!(
            note_event(&dirty, root, &event(created, &["/f/.syncsphere/tmp/1"])),
            Noted::Nothing
        );
        let d = dirty.take();
        assert!(!d.everything);
        assert_eq!(d.paths.into_iter().collect::<Vec<_>>(), ["a", "d/x", "e/y"]);
        assert!(dirty.is_clean(), "taken");
    }

    #[test]
    fn an_overflow_an_error_or_the_folder_itself_mean_everything() {
        let root = Path::new("/f");
        let dirty = DirtyPaths::default();
        let overflow = notify::Event::new(EventKind::Other).set_flag(Flag::Rescan);
        assert_eq!(note_event(&dirty, root, &Ok(overflow)), Noted::Everything);
        assert!(dirty.take().everything);
        let err = Err(notify::Error::generic("gone"));
        assert_eq!(note_event(&dirty, root, &err), Noted::Everything);
        assert!(dirty.take().everything);
        let moved = EventKind::Modify(ModifyKind::Name(RenameMode::From));
        assert_eq!(
            note_event(&dirty, root, &event(moved, &["/f"])),
            Noted::Everything
        );
        assert!(dirty.take().everything);
        // The watch limit: every pass scans everything until the watch is re-armed.
        let limit = Err(notify::Error::new(notify::ErrorKind::MaxFilesWatch));
        note_event(&dirty, root, &limit);
        assert!(dirty.take().everything);
        assert!(dirty.take().everything, "still degraded");
        assert!(dirty.degraded().unwrap().contains("max_user_watches"));
        dirty.set_degraded(None);
        assert!(dirty.take().is_clean());
    }

    #[test]
    fn a_burst_of_marks_becomes_one_full_scan() {
        let dirty = DirtyPaths::default();
        for i in 0..=MAX_DIRTY_PATHS {
            dirty.mark(&format!("f{i}"));
        }
        let d = dirty.take();
        assert!(d.everything);
        assert!(d.paths.is_empty(), "bounded");
    }
}
