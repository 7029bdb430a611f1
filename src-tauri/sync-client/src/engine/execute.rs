//! The executor: one planned operation against the disk and the server, re-checking its
//! expectation right before acting (see `aside` for the destructive ones).

use std::path::{Path, PathBuf};

use std::collections::BTreeSet;
use syncsphere_protocol::FileMeta;

use syncsphere_sync_core::{ContentHash, LocalFile, Op, RemoteFile, SyncedFile};

use super::aside::Aside;
use super::{Engine, io_err, synced_of};
use crate::SyncError;
use crate::api::{Sending, Wanted};
use crate::local_fs::{Kind, is_settled, settle_wait};
use crate::scan::{Placed, STATE_DIR, disk_path};
use crate::status::Direction;

impl Engine {
    /// Where `path` is on disk (its disk spelling where that is not NFC). On a case-insensitive
    /// disk a folded lookup may find another folder that differs in case *and* spelling (an
    /// NFD `Résumé` beside an NFC `RÉSUMÉ`, two names on NTFS): the path as planned wins when
    /// it is there and the respelled one is not — for the file, or else for its folder.
    pub(super) fn local(&self, path: &str) -> PathBuf {
        let mapped = self
            .folder
            .join(disk_path(&self.disk_paths, path, self.case_insensitive).as_ref());
        if self.case_insensitive && !self.disk_paths.is_empty() {
            let plain = self.folder.join(path);
            if plain != mapped {
                let (p, m) = (self.exists(&plain), self.exists(&mapped));
                if p && !m {
                    return plain;
                }
                let parent_there = |x: &Path| x.parent().is_some_and(|d| self.exists(d));
                if !p && !m && parent_there(&plain) && !parent_there(&mapped) {
                    return plain;
                }
            }
        }
        mapped
    }

    /// Whether the file at `path` (not a folder) has the content `expected` now (see
    /// [`crate::legacy::has_content`]); `false` when nothing is there.
    pub(super) async fn has_content(
        &self,
        path: &str,
        expected: &ContentHash,
    ) -> Result<bool, SyncError> {
        let full = self.local(path);
        if self
            .fs
            .symlink_metadata(&full)
            .is_ok_and(|m| m.kind == Kind::Dir)
        {
            return Ok(false);
        }
        let (fs, expected) = (self.fs.clone(), expected.clone());
        tokio::task::spawn_blocking(move || {
            match crate::legacy::has_content(fs.as_ref(), &full, &expected) {
                Ok(same) => Ok(same),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(SyncError::Io(format!("reading {}", full.display()), e)),
            }
        })
        .await
        .map_err(|e| SyncError::Io("hashing".into(), std::io::Error::other(e)))?
    }

    /// Records one of this device's commits: the file's remote row and its synced entry at the
    /// server's path (case and normalisation as committed), in one transaction.
    pub(super) async fn record(&self, meta: &FileMeta) -> Result<(), SyncError> {
        let synced = (!meta.deleted).then(|| synced_of(meta));
        self.index.record_commits(&[(meta, synced.as_ref())]).await
    }

    /// Whether a file is in the folder under exactly the name `path`, every folder on the way
    /// included, byte for byte: on a case-insensitive disk `a.txt` is not there just because
    /// `A.txt` is, nor `Docs/a.txt` because `DOCS/a.txt` is; and a name the disk spells in
    /// another Unicode form is the scanner's business (a twin it reports and holds), not this
    /// guard's. Costs one `stat` when nothing is there (the common case: the user did delete
    /// it); a listing per level otherwise.
    pub(super) fn file_named(&self, path: &str) -> bool {
        use std::io::ErrorKind::{NotADirectory, NotFound};
        match self.fs.symlink_metadata(&self.local(path)) {
            Ok(m) if m.kind == Kind::File => {}
            Ok(_) => return false,
            Err(e) if matches!(e.kind(), NotFound | NotADirectory) => return false,
            // Cannot tell: not gone as far as anyone knows.
            Err(_) => return true,
        }
        let mut dir = self.folder.clone();
        let parts: Vec<&str> = path.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let kind = if i + 1 == parts.len() {
                Kind::File
            } else {
                Kind::Dir
            };
            let Ok(entries) = self.fs.read_dir(&dir) else {
                return true;
            };
            if !entries.iter().any(|e| e.kind == kind && e.name == **part) {
                return false;
            }
            dir.push(part);
        }
        true
    }

    /// Removes now-empty parent folders of `path` (never the sync folder itself).
    pub(super) fn prune_empty_parents(&self, path: &str) {
        let mut rel = Path::new(path).parent();
        while let Some(dir) = rel.filter(|d| !d.as_os_str().is_empty()) {
            if self.fs.remove_dir(&self.folder.join(dir)).is_err() {
                break;
            }
            rel = dir.parent();
        }
    }

    /// Executes one operation, re-checking its expectations; returns the activity to show.
    pub(super) async fn execute(
        &self,
        op: Op,
    ) -> Result<Option<(String, &'static str)>, SyncError> {
        match op {
            Op::Upload { path, parent_rev } => {
                // Only content this device hashed is uploaded: a file that changed since the
                // scan (still being written) waits for the next look.
                let Some(seen) = self.last_local.get(&path) else {
                    return Ok(None);
                };
                let active = self.transfers.start(&path, Direction::Upload, seen.size);
                let meta = self
                    .remote
                    .upload(
                        &path,
                        parent_rev,
                        &self.local(&path),
                        &seen.sha256.to_string(),
                        &active.transfer,
                    )
                    .await?;
                self.record(&meta).await?;
                Ok(Some((path, "uploaded")))
            }
            Op::Download {
                path,
                file,
                expect_local,
            } => {
                let tmp = self.download_tmp(&path, &file)?;
                let active = self.transfers.start(&path, Direction::Download, 0);
                let downloaded = self
                    .remote
                    .download(
                        &file.file_id.as_text(),
                        &tmp,
                        Some(&file.sha256.to_string()),
                        // The version here now: an edit elsewhere leaves most of its chunks.
                        &[self.local(&path)],
                        &active.transfer,
                    )
                    .await;
                drop(active);
                let result = match downloaded {
                    Ok((rev, sha256)) => {
                        match self
                            .place(&path, &tmp, &sha256.as_str().into(), expect_local.as_ref())
                            .await
                        {
                            Ok(Some(dest)) => {
                                if let Some(parent) = dest.parent() {
                                    self.fs.sync_dir(parent);
                                }
                                let synced = SyncedFile {
                                    file_id: file.file_id,
                                    rev,
                                    sha256: sha256.into(),
                                };
                                self.index.set_synced(&path, Some(&synced)).await?;
                                Ok(Some((path, "downloaded")))
                            }
                            other => other.map(|_| None),
                        }
                    }
                    // Deleted since the journal said otherwise: the next pull brings the delete.
                    Err(SyncError::Server { status: 404, .. }) => Ok(None),
                    Err(e) => Err(e),
                };
                self.drop_tmp(&tmp, &result);
                result
            }
            Op::DeleteRemote { path, file_id, rev } => {
                // Absence is not deletion: a file under this very name (back again, or never
                // gone: the scan looked at an older state of the folder) keeps it on the server.
                if self.file_named(&path) {
                    return Ok(None);
                }
                let meta = self.remote.delete(&file_id.as_text(), rev).await?;
                self.index.record_remote(&meta).await?;
                self.index.set_synced(&path, None).await?;
                Ok(Some((path, "deleted_remote")))
            }
            Op::DeleteLocal {
                path,
                expect_sha256,
            } => {
                // Changed since the scan (or gone): the next round decides again.
                let Aside::Held(backup) = self.set_aside(&path, &expect_sha256).await? else {
                    return Ok(None);
                };
                self.discard_aside(&backup);
                self.prune_empty_parents(&path);
                self.index.set_synced(&path, None).await?;
                Ok(Some((path, "deleted_local")))
            }
            Op::MoveRemote {
                from,
                to,
                file_id,
                rev,
            } => {
                let meta = self.remote.move_file(&file_id.as_text(), &to, rev).await?;
                self.index.set_synced(&from, None).await?;
                self.record(&meta).await?;
                Ok(Some((to, "moved_remote")))
            }
            Op::MoveLocal {
                from,
                to,
                expect_sha256,
                synced,
            } => {
                let (src, dst) = (self.local(&from), self.local(&to));
                // A folder left empty at the new name gives way (the plan does not see empty
                // folders); one with files in it is this path's problem, reported and retried.
                self.clear_empty_folder(&to, &dst)?;
                // On a case-insensitive disk the new spelling of a case-only rename "exists":
                // it is the file itself, not one in the way.
                let occupied = self.exists(&dst) && !self.same_file(&src, &dst);
                let changed = !self.has_content(&from, &expect_sha256).await?;
                if changed || occupied {
                    tracing::debug!(from, to, occupied, changed, "not moving: re-planning");
                    return Ok(None);
                }
                if !self
                    .rename_into(&src, &dst)
                    .map_err(io_err(format!("renaming {}", src.display())))?
                {
                    tracing::debug!(from, to, "not moving: a file appeared there; re-planning");
                    return Ok(None);
                }
                self.prune_empty_parents(&from);
                self.index.set_synced(&from, None).await?;
                self.index.set_synced(&to, Some(&synced)).await?;
                Ok(Some((to, "moved_local")))
            }
            Op::ConflictCopy { path, copy } => {
                let (src, dst) = (self.local(&path), self.local(&copy));
                if self.exists(&dst) {
                    return Ok(None);
                }
                // The copy may be a file inside a folder moved aside (`d/e` → `d (…)/e`).
                if !self
                    .rename_into(&src, &dst)
                    .map_err(io_err(format!("renaming {}", src.display())))?
                {
                    return Ok(None); // the copy's name was taken meanwhile: the next round
                }
                // A folder emptied this way must not stand in the way of a file of its name.
                self.prune_empty_parents(&path);
                tracing::info!(path, copy, "kept both versions under different names");
                Ok(Some((copy, "conflict_copy")))
            }
            Op::RecordSynced { path, synced } => {
                self.index.set_synced(&path, synced.as_ref()).await?;
                Ok(None)
            }
        }
    }

    /// Removes an empty folder at `full` (the local path `path`) so a file can take its name;
    /// a folder with anything in it is an error naming the path.
    pub(super) fn clear_empty_folder(&self, path: &str, full: &Path) -> Result<(), SyncError> {
        if !self
            .fs
            .symlink_metadata(full)
            .is_ok_and(|m| m.kind == Kind::Dir)
        {
            return Ok(());
        }
        match self.fs.remove_dir(full) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(_) if self.holds_anything(full) => Err(SyncError::Io(
                format!("placing {path}"),
                std::io::Error::other(
                    "a folder of that name is here with files in it; the file comes once it \
                     is empty (move away any files in it that are not synced, such as ignored \
                     ones)",
                ),
            )),
            Err(e) => Err(SyncError::Io(
                format!("replacing the folder {}", full.display()),
                e,
            )),
        }
    }

    /// Whether anything is at `path` (an unreadable answer counts as something: never
    /// overwrite what could not be looked at).
    pub(super) fn exists(&self, path: &Path) -> bool {
        match self.fs.symlink_metadata(path) {
            Ok(_) => true,
            Err(e) => e.kind() != std::io::ErrorKind::NotFound,
        }
    }

    /// Renames `src` to `dst`, creating `dst`'s folders, never over a file: `Ok(false)` (and
    /// `src` stays) when something took `dst` since the caller looked — a user's new file is
    /// never replaced. A case-only rename on a case-insensitive disk (`dst` is `src` itself)
    /// renames in place. The rename is made durable (both folders fsynced). Another operation
    /// of the same batch may prune a folder it emptied between the two steps; then the folder
    /// is made again, once.
    pub(super) fn rename_into(&self, src: &Path, dst: &Path) -> std::io::Result<bool> {
        let mut again = true;
        loop {
            if let Some(parent) = dst.parent() {
                self.fs.create_dir_all(parent)?;
            }
            let renamed = if self.same_file(src, dst) {
                self.fs.rename(src, dst).map(|()| true)
            } else {
                self.fs.rename_no_replace(src, dst)
            };
            match renamed {
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        && std::mem::take(&mut again)
                        && self.exists(src) => {}
                Ok(true) => {
                    // Durable before anything is recorded about the new name: a power cut
                    // that undid the rename would make the new name read as deleted.
                    for dir in [dst.parent(), src.parent()].into_iter().flatten() {
                        self.fs.sync_dir(dir);
                    }
                    return Ok(true);
                }
                other => return other,
            }
        }
    }

    /// Whether `path` is a folder with anything in it.
    pub(super) fn holds_anything(&self, path: &Path) -> bool {
        self.fs.read_dir(path).is_ok_and(|e| !e.is_empty())
    }

    /// Whether two paths name the same file (one inode; where there are none: the same name
    /// folded).
    pub(super) fn same_file(&self, a: &Path, b: &Path) -> bool {
        match (self.fs.metadata(a), self.fs.metadata(b)) {
            (Ok(x), Ok(y)) if x.ino != 0 => x.dev == y.dev && x.ino == y.ino,
            (Ok(_), Ok(_)) => {
                crate::scan::fold_key(&a.to_string_lossy())
                    == crate::scan::fold_key(&b.to_string_lossy())
            }
            _ => false,
        }
    }

    /// Where a download of `file` to `path` is written first (`.syncsphere/tmp`): named after
    /// the content, so an interrupted download (even by kill -9) resumes where it stopped
    /// instead of starting over. A folder of this name that still holds files (ignored or
    /// unsupported ones, which the plan does not see) cannot give way: an error says so
    /// instead of fetching the content for nothing on every round.
    pub(super) fn download_tmp(&self, path: &str, file: &RemoteFile) -> Result<PathBuf, SyncError> {
        if self.holds_anything(&self.local(path)) {
            return Err(SyncError::Io(
                format!("downloading {path}"),
                std::io::Error::other(
                    "a folder of that name is still here with files in it; the file comes \
                     down once it is empty (move away any files in it that are not synced, \
                     such as ignored ones)",
                ),
            ));
        }
        let tmp_dir = self.folder.join(STATE_DIR).join("tmp");
        self.fs
            .create_dir_all(&tmp_dir)
            .map_err(io_err(format!("creating {}", tmp_dir.display())))?;
        Ok(tmp_dir.join(format!(
            "{}-{}.part",
            file.file_id,
            &file.sha256.to_string().chars().take(16).collect::<String>()
        )))
    }

    /// Keeps a partial download only when the network failed mid-way (it resumes).
    pub(super) fn drop_tmp<T>(&self, tmp: &Path, result: &Result<T, SyncError>) {
        if !matches!(result, Err(SyncError::Offline(_) | SyncError::Http(_))) {
            let _ = self.fs.remove_file(tmp);
        }
    }

    /// Puts a downloaded content (`tmp`, on disk for good) at `path`; the file's new place on
    /// disk, or `None` if the disk is not as planned (then nothing changes and the next round
    /// decides). A file edited since the scan is never overwritten: the old file is moved aside
    /// and checked there (see `set_aside`), and the new one only takes a free name. The caller
    /// makes the folder entry durable and records the file as synced.
    pub(super) async fn place(
        &self,
        path: &str,
        tmp: &Path,
        content: &ContentHash,
        expect_local: Option<&ContentHash>,
    ) -> Result<Option<PathBuf>, SyncError> {
        // The content as written, for the next scan to take without reading it again — when
        // its stamp is settled before the file takes its name (any write there after the
        // rename then changes the stamp; see `scan::Placed`). A large file is waited for until
        // it is (`settle_wait`), before anything is moved.
        let mut written = self.fs.metadata(tmp).ok();
        let wait = written.and_then(|m| settle_wait(self.fs.as_ref(), &m, self.fs.now_ns()));
        if let Some(wait) = wait {
            let fs = self.fs.clone();
            let _ = tokio::task::spawn_blocking(move || fs.wait_ns(wait)).await;
            written = self.fs.metadata(tmp).ok();
        }
        let backup = match expect_local {
            Some(expect) => match self.set_aside(path, expect).await? {
                Aside::Held(backup) => Some(backup),
                Aside::Gone | Aside::Changed => return Ok(None),
            },
            // Something is at the name now (not a folder): not as planned. (No need to read it:
            // whatever it is, it is not overwritten.)
            None if self
                .fs
                .symlink_metadata(&self.local(path))
                .is_ok_and(|m| m.kind != Kind::Dir) =>
            {
                return Ok(None);
            }
            None => None,
        };
        let dest = self.local(path);
        // A folder of this name left empty (its files moved or deleted) gives way to the file.
        self.clear_empty_folder(path, &dest)?;
        if let Some(parent) = dest.parent() {
            self.fs
                .create_dir_all(parent)
                .map_err(io_err(format!("creating {}", parent.display())))?;
        }
        let now = self.fs.now_ns();
        let written = written.filter(|m| is_settled(self.fs.as_ref(), m.mtime_ns, now));
        tracing::debug!(path, offered = written.is_some(), "placing a download");
        let placed = self
            .fs
            .rename_no_replace(tmp, &dest)
            .map_err(io_err(format!("replacing {}", dest.display())))?;
        if let Some(meta) = written.filter(|_| placed) {
            let file = LocalFile {
                sha256: content.clone(),
                size: meta.len,
            };
            let mut offered = self.placed.lock().unwrap_or_else(|e| e.into_inner());
            offered.push((path.to_owned(), Placed { file, meta }));
        }
        if let Some(backup) = backup {
            // The old content is the synced one, which the server keeps.
            self.discard_aside(&backup);
        }
        // Not placed: the user made a new file there meanwhile; theirs stays.
        Ok(placed.then_some(dest))
    }

    /// New files to download (nothing local to keep or build on), in one request to the server
    /// and one index transaction: the contents written and flushed, then put in place, their
    /// folders flushed, then all recorded as synced — never recorded before they are durable.
    /// Same rules per file as [`Op::Download`] alone.
    pub(super) async fn download_new(&self, ops: Vec<Op>) -> Vec<Ran> {
        let mut ran = Vec::with_capacity(ops.len());
        let mut todo = Vec::with_capacity(ops.len());
        for op in ops {
            let label = describe(&op);
            let Op::Download { path, file, .. } = op else {
                unreachable!("only downloads of new files are grouped: {op:?}");
            };
            if *self.paused.borrow() {
                ran.push((label, path, Ok(None)));
                continue;
            }
            match self.download_tmp(&path, &file) {
                Ok(tmp) => todo.push((path, file, tmp)),
                Err(e) => ran.push((label, path, Err(e))),
            }
        }
        let active: Vec<_> = todo
            .iter()
            .map(|(path, _, _)| self.transfers.start(path, Direction::Download, 0))
            .collect();
        let hashes: Vec<String> = todo.iter().map(|(_, f, _)| f.sha256.to_string()).collect();
        let ids: Vec<String> = todo.iter().map(|(_, f, _)| f.file_id.to_string()).collect();
        let wanted: Vec<_> = todo
            .iter()
            .zip(&active)
            .zip(&hashes)
            .zip(&ids)
            .map(|((((_, _, tmp), a), sha256), file_id)| Wanted {
                file_id,
                sha256,
                dest: tmp,
                progress: &a.transfer,
            })
            .collect();
        let fetched = self.remote.download_many(&wanted).await;
        drop(wanted);
        drop(active);
        let mut parents = BTreeSet::new();
        let mut placed = Vec::new();
        for ((path, file, tmp), got) in todo.into_iter().zip(fetched) {
            let result = match got {
                Ok((rev, sha256)) => {
                    match self.place(&path, &tmp, &sha256.as_str().into(), None).await {
                        Ok(Some(dest)) => {
                            parents.extend(dest.parent().map(Path::to_owned));
                            placed.push((
                                path.clone(),
                                SyncedFile {
                                    file_id: file.file_id,
                                    rev,
                                    sha256: sha256.into(),
                                },
                            ));
                            Ok(Some((path.clone(), "downloaded")))
                        }
                        other => other.map(|_| None),
                    }
                }
                Err(SyncError::Server { status: 404, .. }) => Ok(None),
                Err(e) => Err(e),
            };
            self.drop_tmp(&tmp, &result);
            if !matches!(result, Ok(Some(_))) {
                ran.push(("download", path.clone(), result));
            }
            self.dirty.mark(&path);
        }
        for parent in &parents {
            self.fs.sync_dir(parent);
        }
        let entries: Vec<_> = placed.iter().map(|(p, s)| (p.as_str(), Some(s))).collect();
        let recorded = self.index.set_synced_many(&entries).await;
        ran.extend(recorded_as(placed, &recorded, "download", "downloaded"));
        ran
    }

    /// Small files to upload, in one request to the server and one index transaction: each
    /// sent only if it still hashes to what the scan saw, committed with its own result, and
    /// the commits recorded together once the server answered. Same rules per file as
    /// [`Op::Upload`] alone.
    pub(super) async fn upload_small(&self, ops: Vec<Op>) -> Vec<Ran> {
        let mut ran = Vec::with_capacity(ops.len());
        let mut todo = Vec::with_capacity(ops.len());
        for op in ops {
            let label = describe(&op);
            let Op::Upload { path, parent_rev } = op else {
                unreachable!("only uploads are grouped: {op:?}");
            };
            // Only content this device hashed is uploaded (see `Op::Upload`).
            match self.last_local.get(&path) {
                Some(seen) if !*self.paused.borrow() => {
                    let (sha256, size) = (seen.sha256.to_string(), seen.size);
                    let file = self.local(&path);
                    todo.push((path, parent_rev, sha256, size, file));
                }
                _ => ran.push((label, path, Ok(None))),
            }
        }
        let active: Vec<_> = todo
            .iter()
            .map(|(path, _, _, size, _)| self.transfers.start(path, Direction::Upload, *size))
            .collect();
        let sending: Vec<_> = todo
            .iter()
            .zip(&active)
            .map(|((path, parent_rev, sha256, _, file), a)| Sending {
                path,
                parent_rev: *parent_rev,
                file,
                expected: sha256,
                progress: &a.transfer,
            })
            .collect();
        let sent = self.remote.upload_many(&sending).await;
        drop(sending);
        drop(active);
        let mut committed = Vec::new();
        for ((path, ..), result) in todo.into_iter().zip(sent) {
            self.dirty.mark(&path);
            match result {
                Ok(meta) => committed.push((path, meta)),
                Err(e) => ran.push(("upload", path, Err(e))),
            }
        }
        // Recorded at the server's path (case and normalisation as committed).
        let synced: Vec<_> = committed
            .iter()
            .map(|(_, meta)| (!meta.deleted).then(|| synced_of(meta)))
            .collect();
        let entries: Vec<_> = committed
            .iter()
            .zip(&synced)
            .map(|((_, meta), s)| (meta, s.as_ref()))
            .collect();
        let recorded = self.index.record_commits(&entries).await;
        ran.extend(recorded_as(committed, &recorded, "upload", "uploaded"));
        ran
    }
}

/// The outcomes of a group's files that the index was to record (`recorded`): done, as `action`,
/// or the index's error for each.
fn recorded_as<T>(
    files: Vec<(String, T)>,
    recorded: &Result<(), SyncError>,
    label: &'static str,
    action: &'static str,
) -> impl Iterator<Item = Ran> {
    let failed = recorded.as_ref().err().map(|e| match e {
        SyncError::Index(message) => message.clone(),
        e => e.to_string(),
    });
    files.into_iter().map(move |(path, _)| {
        let result = match &failed {
            None => Ok(Some((path.clone(), action))),
            Some(e) => Err(SyncError::Index(e.clone())),
        };
        (label, path, result)
    })
}

/// What one operation did: its label, its path, and its outcome.
pub(super) type Ran = (
    &'static str,
    String,
    Result<Option<(String, &'static str)>, SyncError>,
);

pub(super) fn describe(op: &Op) -> &'static str {
    match op {
        Op::Upload { .. } => "upload",
        Op::Download { .. } => "download",
        Op::DeleteRemote { .. } => "delete_remote",
        Op::DeleteLocal { .. } => "delete_local",
        Op::MoveRemote { .. } => "move_remote",
        Op::MoveLocal { .. } => "move_local",
        Op::ConflictCopy { .. } => "conflict_copy",
        Op::RecordSynced { .. } => "record_synced",
    }
}
