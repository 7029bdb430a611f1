//! Destructive steps move the file aside first and check it there (`docs/decisions/0004`):
//! a save made between the engine's check and its action is never lost.

use std::path::{Path, PathBuf};

use syncsphere_sync_core::ContentHash;

use super::{Engine, io_err};
use crate::SyncError;
use crate::local_fs::Kind;
use crate::scan::STATE_DIR;

/// Where files wait while the engine checks them before deleting or replacing them.
pub(crate) const ASIDE_DIR: &str = "aside";

/// What [`Engine::set_aside`] found.
pub(super) enum Aside {
    /// Nothing (or no file) is at the path.
    Gone,
    /// The file changed since the scan; it is back in place (or kept as a conflicted copy).
    Changed,
    /// The file, unchanged, now at this path in the state folder.
    Held(PathBuf),
}

impl Engine {
    /// Moves the file at `path` aside into the state folder, atomically, and checks it there:
    /// held if it still has the content `expect` the plan was made with. A write that came
    /// after the scan is thereby never lost: before the move it is in the moved file, which
    /// goes back (or, if the user made a new file at `path` meanwhile, next to it as a
    /// conflicted copy); after the move it makes a new file at `path`, which the caller's
    /// [`LocalFs::rename_no_replace`] leaves alone. (A program writing through a handle it
    /// opened before the move, after the check, still writes into the moved file: the one
    /// window left.)
    pub(super) async fn set_aside(
        &self,
        path: &str,
        expect: &ContentHash,
    ) -> Result<Aside, SyncError> {
        let full = self.local(path);
        if self
            .fs
            .symlink_metadata(&full)
            .map_or(true, |m| m.kind != Kind::File)
        {
            return Ok(Aside::Gone);
        }
        let aside = match self.move_aside(path, &full)? {
            Some(aside) => aside,
            None => return Ok(Aside::Gone),
        };
        let fs = self.fs.clone();
        let held = aside.clone();
        let expected = expect.clone();
        let same = tokio::task::spawn_blocking(move || {
            crate::legacy::has_content(fs.as_ref(), &held, &expected)
        })
        .await
        .map_err(|e| SyncError::Io("hashing".into(), std::io::Error::other(e)))?;
        if same.is_ok_and(|same| same) {
            return Ok(Aside::Held(aside));
        }
        // Changed since the scan (or unreadable now): put it back where the user expects it.
        self.put_back(path, &aside, None)?;
        Ok(Aside::Changed)
    }

    /// Moves the file `full` (at `path`) into `.syncsphere/aside/N`, with `N.path` naming where
    /// it came from (written first, so a crash never leaves a moved file nobody can place).
    /// `None` when the file is gone.
    pub(super) fn move_aside(&self, path: &str, full: &Path) -> Result<Option<PathBuf>, SyncError> {
        let dir = self.folder.join(STATE_DIR).join(ASIDE_DIR);
        self.fs
            .create_dir_all(&dir)
            .map_err(io_err(format!("creating {}", dir.display())))?;
        loop {
            let n = self
                .aside_counter
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (aside, origin) = (dir.join(n.to_string()), dir.join(format!("{n}.path")));
            if self.exists(&origin) || self.exists(&aside) {
                continue; // left by an earlier run
            }
            self.fs
                .write_durably(&origin, path.as_bytes())
                .map_err(io_err(format!("writing {}", origin.display())))?;
            match self.fs.rename_no_replace(full, &aside) {
                Ok(true) => return Ok(Some(aside)),
                Ok(false) => {
                    let _ = self.fs.remove_file(&origin);
                }
                Err(e) => {
                    let _ = self.fs.remove_file(&origin);
                    if e.kind() == std::io::ErrorKind::NotFound {
                        return Ok(None);
                    }
                    return Err(SyncError::Io(format!("moving aside {}", full.display()), e));
                }
            }
        }
    }

    /// Puts a moved-aside file back at `path`; if a file is there now, removes ours when it has
    /// the same content (`same` hash known), else keeps ours next to it as a conflicted copy.
    /// Where a file now stands in place of one of the path's folders (another device replaced
    /// the folder by a file), ours goes into a conflicted copy of that folder instead: never
    /// left hidden in the state folder for want of its place.
    pub(super) fn put_back(
        &self,
        path: &str,
        aside: &Path,
        same: Option<bool>,
    ) -> Result<(), SyncError> {
        let mut path = path.to_owned();
        let mut full = self.local(&path);
        if let Some(parent) = full.parent()
            && let Err(e) = self.fs.create_dir_all(parent)
        {
            let Some(file) = self.file_in_the_way(&path) else {
                return Err(SyncError::Io(format!("creating {}", parent.display()), e));
            };
            let folder = syncsphere_sync_core::conflicted_copy_name(
                &file,
                &self.device_name,
                &self.clock.stamp(),
                |c| self.exists(&self.local(c)),
            );
            let moved = format!("{folder}{}", &path[file.len()..]);
            tracing::info!(
                path,
                moved,
                "a file stands where the folder was: putting the file back in a copy of the folder"
            );
            path = moved;
            full = self.local(&path);
            if let Some(parent) = full.parent() {
                self.fs
                    .create_dir_all(parent)
                    .map_err(io_err(format!("creating {}", parent.display())))?;
            }
        }
        let path = path.as_str();
        let back = self
            .fs
            .rename_no_replace(aside, &full)
            .map_err(io_err(format!("putting back {}", full.display())))?;
        if !back {
            if same == Some(true) {
                let _ = self.fs.remove_file(aside);
            } else {
                let copy = syncsphere_sync_core::conflicted_copy_name(
                    path,
                    &self.device_name,
                    &self.clock.stamp(),
                    |c| self.exists(&self.local(c)),
                );
                let kept = self
                    .rename_into(aside, &self.local(&copy))
                    .map_err(io_err(format!("keeping {copy}")))?;
                if !kept {
                    // The name was taken meanwhile: the file stays aside with its origin, and
                    // the next pass puts it back (see `recover_aside`).
                    return Err(SyncError::Io(
                        format!("keeping {copy}"),
                        std::io::Error::new(
                            std::io::ErrorKind::AlreadyExists,
                            "a file appeared under that name meanwhile",
                        ),
                    ));
                }
                tracing::info!(
                    path,
                    copy,
                    "kept a version written meanwhile as a conflicted copy"
                );
            }
        }
        let _ = self.fs.remove_file(&aside.with_extension("path"));
        Ok(())
    }

    /// The nearest folder of `path` that is not a folder on disk now (a file, or anything else),
    /// if any.
    fn file_in_the_way(&self, path: &str) -> Option<String> {
        path.match_indices('/')
            .map(|(i, _)| &path[..i])
            .find(|folder| {
                self.fs
                    .symlink_metadata(&self.local(folder))
                    .is_ok_and(|m| m.kind != Kind::Dir)
            })
            .map(str::to_owned)
    }

    /// Finishes with a moved-aside file whose content the server keeps.
    pub(super) fn discard_aside(&self, aside: &Path) {
        let _ = self.fs.remove_file(aside);
        let _ = self.fs.remove_file(&aside.with_extension("path"));
    }

    /// Where the files now moved aside came from: they are on this disk, only not at their
    /// place, so a scan must hold them as it holds an unreadable file — never read them as
    /// deleted (a put-back that failed leaves one there until the next pass). Each is the
    /// path [`Engine::recover_aside`] will put it back at (`recovered N` for one whose record
    /// a crash lost). An error when the state folder cannot be read now: a pass that cannot
    /// tell what is held must not plan deletions.
    pub(super) fn aside_origins(&self) -> Result<Vec<String>, SyncError> {
        let dir = self.folder.join(STATE_DIR).join(ASIDE_DIR);
        let entries = match self.fs.read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(SyncError::Io(format!("listing {}", dir.display()), e)),
        };
        entries
            .iter()
            .filter_map(|e| e.name.to_str())
            .filter(|n| !n.ends_with(".path"))
            .map(|n| {
                self.origin_of(&dir, n)
                    .map_err(io_err(format!("reading {}", dir.join(n).display())))
            })
            .collect()
    }

    /// Where the file moved aside as `name` in `dir` goes back to: the path its `name.path`
    /// names, or where a crash left no record (or an empty one), `recovered name` at the
    /// folder's top, where the user sees it.
    fn origin_of(&self, dir: &Path, name: &str) -> std::io::Result<String> {
        match self.fs.read_to_string(&dir.join(format!("{name}.path"))) {
            Ok(p) if !p.is_empty() => Ok(p),
            Ok(_) => Ok(format!("recovered {name}")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(format!("recovered {name}")),
            Err(e) => Err(e),
        }
    }

    /// Files a crashed run left moved aside go back where they came from (or, where the user
    /// has put another file since, next to it as conflicted copies): nothing stays hidden in
    /// the state folder.
    pub(super) async fn recover_aside(&self) -> Result<(), SyncError> {
        let dir = self.folder.join(STATE_DIR).join(ASIDE_DIR);
        let Ok(entries) = self.fs.read_dir(&dir) else {
            return Ok(());
        };
        let mut names: Vec<String> = entries
            .iter()
            .filter_map(|e| e.name.to_str().map(str::to_owned))
            .collect();
        names.sort();
        for name in names {
            let aside = dir.join(&name);
            if let Some(n) = name.strip_suffix(".path") {
                if !self.exists(&dir.join(n)) {
                    let _ = self.fs.remove_file(&aside); // the move never happened
                }
                continue;
            }
            let path = match self.origin_of(&dir, &name) {
                Ok(path) => path,
                Err(e) => {
                    // Its record is there but unreadable now: it stays, safe, for the next pass
                    // (and the scan holds nothing as deleted meanwhile: `aside_origins`).
                    tracing::warn!(name, error = %e, "could not read where a moved-aside file came from");
                    continue;
                }
            };
            let fs = self.fs.clone();
            let (a, b) = (aside.clone(), self.local(&path));
            let same = tokio::task::spawn_blocking(move || match (fs.hash(&a), fs.hash(&b)) {
                (Ok(x), Ok(y)) => x == y,
                _ => false,
            })
            .await
            .unwrap_or(false);
            tracing::info!(
                path,
                "putting back a file an interrupted run had moved aside"
            );
            if let Err(e) = self.put_back(&path, &aside, Some(same)) {
                // It stays where it is, safe, for the next pass to try again.
                tracing::warn!(path, error = %e, "could not put back a moved-aside file yet");
            }
        }
        Ok(())
    }
}
