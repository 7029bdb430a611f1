//! Content blobs (whole small contents and chunks), addressed by SHA-256 and namespaced per user
//! (no cross-user dedup: it would let one user learn whether another holds a file).
//!
//! Uploads always stream into a local staging file first ([`Staging`]), hashed (not fsynced:
//! S3 does not need it, and the disk store fsyncs before it renames); then [`BlobStore::put`]
//! makes the blob durable in the store: the local disk ([`DiskBlobStore`], embedded default) or
//! S3 ([`crate::s3::S3BlobStore`]). A blob that exists in a store is always complete.
//!
//! Chunks are acknowledged once staged and hashed; [`PendingPuts`] makes them durable in the
//! background (so the disk writes overlap the rest of the upload instead of costing two fsyncs
//! per request) and every commit waits for its chunks' puts to settle before it checks them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use syncsphere_auth::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::FilesError;

/// Bytes read back from a store.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// The size of the pieces blobs are written and read in on blocking threads.
pub const IO_PIECE: usize = 1024 * 1024;

/// One stored blob, as listed for garbage collection.
#[derive(Debug, Clone)]
pub struct BlobInfo {
    pub user_id: String,
    pub sha256: String,
    pub size: u64,
    pub modified: SystemTime,
}

/// Where blobs live. Every method is idempotent.
pub trait BlobStore: Send + Sync {
    /// Stores a staged blob under its hash for the user; durable when this returns. Storing a
    /// blob that already exists is a no-op (and restarts its grace period where supported).
    fn put<'a>(
        &'a self,
        user_id: &'a str,
        staged: &'a StagedBlob,
    ) -> BoxFuture<'a, Result<(), FilesError>>;
    /// Stores a batch of staged blobs as [`BlobStore::put`] does, each durable when this
    /// returns; one outcome per blob, in order. A store may make a whole batch durable at once
    /// (the disk store: two filesystem syncs for the batch instead of two fsyncs per blob).
    fn put_many<'a>(
        &'a self,
        batch: &'a [(String, StagedBlob)],
    ) -> BoxFuture<'a, Vec<Result<(), FilesError>>> {
        Box::pin(async move {
            // (A Vec of futures rather than a mapping closure keeps the future `Send`.)
            let puts: Vec<_> = batch
                .iter()
                .map(|(user_id, staged)| self.put(user_id, staged))
                .collect();
            futures_util::stream::iter(puts).buffered(8).collect().await
        })
    }
    /// Whether the blob exists; where supported, also restarts its garbage-collection grace
    /// period (a client is about to commit it).
    fn touch<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<bool, FilesError>>;
    /// Size and last modification of a blob, if it exists.
    fn stat<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, SystemTime)>, FilesError>>;
    /// Bytes `start..start + len` of a blob.
    fn read<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
        start: u64,
        len: u64,
    ) -> BoxFuture<'a, Result<ByteStream, FilesError>>;
    /// Every blob of every user.
    fn list(&self) -> BoxFuture<'_, Result<Vec<BlobInfo>, FilesError>>;
    fn delete<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<(), FilesError>>;
    /// Whether [`BlobStore::touch`] restarts the grace period (S3 cannot change an object's
    /// modification time; there a resumed upload after the grace period re-sends chunks).
    fn touch_extends_grace(&self) -> bool;
}

/// Checks a blob address: a safe user id and a lowercase SHA-256.
pub(crate) fn check_address(user_id: &str, sha256: &str) -> Result<(), FilesError> {
    let safe_user = !user_id.is_empty()
        && user_id.len() <= 128
        && user_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let safe_hash = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
    if safe_user && safe_hash {
        Ok(())
    } else {
        Err(FilesError::BadRequest("invalid blob address".into()))
    }
}

/// The local staging area: uploads are received and hashed here before they are put into a
/// store.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
}

/// A blob received into the staging area, hashed, not yet in the store.
#[derive(Debug)]
pub struct StagedBlob {
    path: PathBuf,
    pub sha256: String,
    pub size: i64,
}

impl StagedBlob {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StagedBlob {
    fn drop(&mut self) {
        // Already moved into the store, or abandoned: either way the staging name must go.
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Staging {
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Staging { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Streams `body` into a staging file, hashing it (durability is the store's job).
    pub async fn stage<S, E>(&self, body: S) -> Result<StagedBlob, FilesError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.stage_limited(body, u64::MAX).await
    }

    /// [`Staging::stage`], refusing (413) a body longer than `max` bytes.
    ///
    /// The body is gathered into pieces of [`IO_PIECE`] bytes, each hashed and written on a
    /// blocking thread (not a thread hop and a small write per network frame, nor SHA-256 on
    /// the async threads).
    pub async fn stage_limited<S, E>(&self, body: S, max: u64) -> Result<StagedBlob, FilesError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        Ok(self.stage_pieces(body, max, false).await?.0)
    }

    /// [`Staging::stage_limited`], also returning the bytes as written (in pieces).
    pub async fn stage_keeping<S, E>(
        &self,
        body: S,
        max: u64,
    ) -> Result<(StagedBlob, Vec<Bytes>), FilesError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.stage_pieces(body, max, true).await
    }

    async fn stage_pieces<S, E>(
        &self,
        mut body: S,
        max: u64,
        keep: bool,
    ) -> Result<(StagedBlob, Vec<Bytes>), FilesError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut kept = Vec::new();
        let path = self.dir.join(uuid::Uuid::new_v4().to_string());
        let mut staged = StagedBlob {
            path,
            sha256: String::new(),
            size: 0,
        };
        let file = tokio::fs::File::create(&staged.path)
            .await?
            .into_std()
            .await;
        let mut sink = Some((file, Sha256::new()));
        let mut piece = bytes::BytesMut::new();
        loop {
            let next = body.next().await;
            if let Some(chunk) = next.as_ref() {
                let chunk = chunk
                    .as_ref()
                    .map_err(|e| FilesError::BadRequest(format!("upload interrupted: {e}")))?;
                staged.size += chunk.len() as i64;
                if staged.size as u64 > max {
                    return Err(FilesError::TooLarge(format!(
                        "body exceeds the limit of {max} bytes"
                    )));
                }
                piece.extend_from_slice(chunk);
            }
            let last = next.is_none();
            if piece.len() >= IO_PIECE || (last && !piece.is_empty()) {
                let bytes = piece.split().freeze();
                if keep {
                    kept.push(bytes.clone());
                }
                let (mut file, mut hasher) = sink.take().expect("the sink is put back");
                sink = Some(
                    tokio::task::spawn_blocking(move || -> std::io::Result<_> {
                        use std::io::Write;
                        hasher.update(&bytes);
                        file.write_all(&bytes)?;
                        Ok((file, hasher))
                    })
                    .await
                    .map_err(|e| FilesError::Blob(std::io::Error::other(e)))??,
                );
            }
            if last {
                break;
            }
        }
        let (_, hasher) = sink.take().expect("the sink is put back");
        staged.sha256 = hex::encode(hasher.finalize());
        Ok((staged, kept))
    }

    /// Deletes staging files (uploads abandoned by a crash) older than `horizon`.
    pub async fn clean(&self, horizon: SystemTime) -> Result<u64, FilesError> {
        let dir = self.dir.clone();
        let deleted = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            let mut n = 0;
            for entry in std::fs::read_dir(&dir)?.flatten() {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| m < horizon);
                if old && std::fs::remove_file(entry.path()).is_ok() {
                    n += 1;
                }
            }
            Ok(n)
        })
        .await
        .map_err(|e| FilesError::Blob(std::io::Error::other(e)))??;
        Ok(deleted)
    }
}

/// Blobs on local disk: `{root}/{user}/{sha[0..2]}/{sha}`, moved in from a staging directory on
/// the same filesystem (`{root}/.tmp`) by rename after the staged file is fsynced, then the
/// directory is fsynced.
#[derive(Debug)]
pub struct DiskBlobStore {
    root: PathBuf,
}

impl DiskBlobStore {
    /// Opens the store and its staging area (`{root}/.tmp`, on the same filesystem).
    pub fn open(root: impl Into<PathBuf>) -> std::io::Result<(Self, Staging)> {
        let root = root.into();
        let staging = Staging::open(root.join(".tmp"))?;
        Ok((DiskBlobStore { root }, staging))
    }

    fn blob_path(&self, user_id: &str, sha256: &str) -> Result<PathBuf, FilesError> {
        check_address(user_id, sha256)?;
        Ok(self.root.join(user_id).join(&sha256[..2]).join(sha256))
    }

    async fn touch_path(path: PathBuf) -> Result<bool, FilesError> {
        let touched = tokio::task::spawn_blocking(move || {
            match std::fs::File::options().write(true).open(&path) {
                Ok(f) => f.set_modified(SystemTime::now()).map(|()| true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(|e| FilesError::Blob(std::io::Error::other(e)))??;
        Ok(touched)
    }
}

impl BlobStore for DiskBlobStore {
    fn put<'a>(
        &'a self,
        user_id: &'a str,
        staged: &'a StagedBlob,
    ) -> BoxFuture<'a, Result<(), FilesError>> {
        Box::pin(async move {
            let dest = self.blob_path(user_id, &staged.sha256)?;
            if Self::touch_path(dest.clone()).await? {
                return Ok(()); // same content already stored for this user (now fresh again)
            }
            let dir = dest.parent().expect("blob path has a parent");
            // The bytes reach the disk before the name does: a blob that exists is complete.
            tokio::fs::File::open(&staged.path)
                .await?
                .sync_all()
                .await?;
            tokio::fs::create_dir_all(dir).await?;
            tokio::fs::rename(&staged.path, &dest).await?;
            let dir = dir.to_path_buf();
            tokio::task::spawn_blocking(move || sync_directory(&dir))
                .await
                .map_err(|e| FilesError::Blob(std::io::Error::other(e)))??;
            Ok(())
        })
    }

    fn put_many<'a>(
        &'a self,
        batch: &'a [(String, StagedBlob)],
    ) -> BoxFuture<'a, Vec<Result<(), FilesError>>> {
        Box::pin(async move {
            let mut outcomes: Vec<Result<(), FilesError>> = Vec::with_capacity(batch.len());
            let mut moves = Vec::new();
            for (i, (user_id, staged)) in batch.iter().enumerate() {
                let dest = match self.blob_path(user_id, &staged.sha256) {
                    Ok(dest) => dest,
                    Err(e) => {
                        outcomes.push(Err(e));
                        continue;
                    }
                };
                match Self::touch_path(dest.clone()).await {
                    Ok(true) => outcomes.push(Ok(())), // already stored (now fresh again)
                    Ok(false) => {
                        outcomes.push(Ok(()));
                        moves.push((i, staged.path.clone(), dest));
                    }
                    Err(e) => outcomes.push(Err(e)),
                }
            }
            if moves.is_empty() {
                return outcomes;
            }
            let staging = self.root.join(".tmp");
            let moved = tokio::task::spawn_blocking(move || move_durably(&staging, moves))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            match moved {
                Ok(failed) => {
                    for (i, e) in failed {
                        outcomes[i] = Err(e.into());
                    }
                }
                Err(e) => {
                    // Nothing of the batch is known to be durable: report every blob that had
                    // to be moved (the commit finds them missing; clients send them again).
                    let message = e.to_string();
                    for outcome in outcomes.iter_mut().filter(|o| o.is_ok()) {
                        *outcome = Err(FilesError::Blob(std::io::Error::other(message.clone())));
                    }
                }
            }
            outcomes
        })
    }

    fn touch<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<bool, FilesError>> {
        Box::pin(async move { Self::touch_path(self.blob_path(user_id, sha256)?).await })
    }

    fn stat<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, SystemTime)>, FilesError>> {
        Box::pin(async move {
            match tokio::fs::metadata(self.blob_path(user_id, sha256)?).await {
                Ok(m) => Ok(Some((m.len(), m.modified()?))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn read<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
        start: u64,
        len: u64,
    ) -> BoxFuture<'a, Result<ByteStream, FilesError>> {
        Box::pin(async move {
            let path = self.blob_path(user_id, sha256)?;
            let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
                use std::io::Seek;
                let mut file = std::fs::File::open(path)?;
                file.seek(std::io::SeekFrom::Start(start))?;
                Ok(file)
            })
            .await
            .map_err(|e| FilesError::Blob(std::io::Error::other(e)))??;
            // Pieces of up to IO_PIECE bytes, each read by one blocking call.
            let stream = futures_util::stream::try_unfold((file, len), |(file, left)| async move {
                if left == 0 {
                    return Ok(None);
                }
                let want = left.min(IO_PIECE as u64) as usize;
                let (file, piece) = tokio::task::spawn_blocking(move || {
                    use std::io::Read;
                    let mut piece = vec![0; want];
                    let mut file = file;
                    let mut got = 0;
                    while got < want {
                        match file.read(&mut piece[got..])? {
                            0 => break,
                            n => got += n,
                        }
                    }
                    piece.truncate(got);
                    Ok::<_, std::io::Error>((file, piece))
                })
                .await
                .map_err(std::io::Error::other)??;
                // A blob shorter than asked for ends the stream early, as `take` would: the
                // caller's size or hash check reports it.
                if piece.is_empty() {
                    return Ok(None);
                }
                let left = left - piece.len() as u64;
                Ok(Some((Bytes::from(piece), (file, left))))
            });
            let stream: ByteStream = Box::pin(stream);
            Ok(stream)
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<BlobInfo>, FilesError>> {
        let root = self.root.clone();
        Box::pin(async move {
            let found = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<BlobInfo>> {
                let mut out = Vec::new();
                for user in std::fs::read_dir(&root)?.flatten() {
                    let user_id = user.file_name().to_string_lossy().into_owned();
                    if user_id == ".tmp" || !user.path().is_dir() {
                        continue;
                    }
                    for prefix in std::fs::read_dir(user.path())?.flatten() {
                        if !prefix.path().is_dir() {
                            continue;
                        }
                        for blob in std::fs::read_dir(prefix.path())?.flatten() {
                            let Ok(meta) = blob.metadata() else { continue };
                            out.push(BlobInfo {
                                user_id: user_id.clone(),
                                sha256: blob.file_name().to_string_lossy().into_owned(),
                                size: meta.len(),
                                modified: meta.modified()?,
                            });
                        }
                    }
                }
                Ok(out)
            })
            .await
            .map_err(|e| FilesError::Blob(std::io::Error::other(e)))??;
            Ok(found)
        })
    }

    fn delete<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<(), FilesError>> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.blob_path(user_id, sha256)?).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn touch_extends_grace(&self) -> bool {
        true
    }
}

/// Batches of up to this many blobs are fsynced file by file and directory by directory; larger
/// ones with a whole-filesystem sync (Linux), which would also flush unrelated dirty data.
const FSYNC_EACH_MAX: usize = 4;

/// Moves staged files to their blob paths so that each blob that exists afterwards is complete
/// and every move is durable: the data reaches the disk before the names do, and the names
/// before this returns. A large batch costs two `syncfs` (before and after the renames) in all,
/// a small one an fsync per file and per directory. Returns the moves that failed (by index);
/// an `Err` means the batch as a whole could not be made durable.
fn move_durably(
    staging: &Path,
    moves: Vec<(usize, PathBuf, PathBuf)>,
) -> std::io::Result<Vec<(usize, std::io::Error)>> {
    let whole_fs = cfg!(target_os = "linux") && moves.len() > FSYNC_EACH_MAX;
    if whole_fs {
        sync_filesystem(staging)?;
    } else {
        for (_, from, _) in &moves {
            std::fs::File::open(from)?.sync_all()?;
        }
    }
    let mut failed = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    for (i, from, to) in moves {
        let dir = to.parent().expect("blob path has a parent").to_path_buf();
        match std::fs::create_dir_all(&dir).and_then(|()| std::fs::rename(&from, &to)) {
            Ok(()) => {
                dirs.insert(dir);
            }
            Err(e) => failed.push((i, e)),
        }
    }
    if whole_fs {
        sync_filesystem(staging)?;
    } else {
        for dir in dirs {
            sync_directory(&dir)?;
        }
    }
    Ok(failed)
}

/// Flushes everything written to the filesystem holding `path` (`syncfs`).
#[cfg(target_os = "linux")]
fn sync_filesystem(path: &Path) -> std::io::Result<()> {
    Ok(rustix::fs::syncfs(std::fs::File::open(path)?)?)
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystem(_: &Path) -> std::io::Result<()> {
    Err(std::io::Error::other("syncfs is Linux-only"))
}

/// Makes a directory's entries durable (nothing to do where directories cannot be fsynced).
fn sync_directory(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// How many chunk puts may wait or run in the background; past it, uploads wait (backpressure).
pub const MAX_PENDING_PUTS: usize = 256;

struct Queued {
    user_id: String,
    staged: StagedBlob,
    done: watch::Sender<bool>,
    _slot: OwnedSemaphorePermit,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Queued>,
    inflight: HashMap<(String, String), watch::Receiver<bool>>,
    worker: bool,
}

/// Puts of staged blobs, made durable in batches ("group commit") by one background worker:
/// while the store makes one batch durable, the next gathers. Chunks are acknowledged to the
/// client once queued here; a commit calls [`PendingPuts::settled`] for each of its chunks
/// before checking that the store holds it, so a put that failed (or a server that crashed
/// meanwhile) leaves the chunk missing, which the commit reports, and the client sends it
/// again. (Whole-content uploads put their blob themselves: small files, whose fsyncs the
/// filesystem's journal already merges across concurrent requests.)
pub struct PendingPuts {
    blobs: Arc<dyn BlobStore>,
    queue: Mutex<Queue>,
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for PendingPuts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingPuts")
            .field("pending", &self.len())
            .finish()
    }
}

impl PendingPuts {
    pub fn new(blobs: Arc<dyn BlobStore>) -> Self {
        PendingPuts {
            blobs,
            queue: Mutex::default(),
            slots: Arc::new(Semaphore::new(MAX_PENDING_PUTS)),
        }
    }

    /// Waits for a free slot (at most [`MAX_PENDING_PUTS`] puts wait or run at once).
    pub async fn slot(&self) -> OwnedSemaphorePermit {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // The queue holds no invariant a panicking holder could break half-way.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `staged` to be put into the store for the user, holding `slot` until done, and
    /// returns at once. A put of the same blob already pending makes this one a no-op.
    pub fn spawn(
        self: &Arc<Self>,
        user_id: String,
        staged: StagedBlob,
        slot: OwnedSemaphorePermit,
    ) {
        self.enqueue(user_id, staged, slot);
    }

    fn enqueue(self: &Arc<Self>, user_id: String, staged: StagedBlob, slot: OwnedSemaphorePermit) {
        let key = (user_id, staged.sha256.clone());
        let mut queue = self.lock();
        if queue.inflight.contains_key(&key) {
            return; // dropping `staged` deletes the duplicate staging file
        }
        let (done, settled) = watch::channel(false);
        queue.inflight.insert(key.clone(), settled);
        queue.waiting.push(Queued {
            user_id: key.0,
            staged,
            done,
            _slot: slot,
        });
        if !queue.worker {
            queue.worker = true;
            let this = self.clone();
            tokio::spawn(async move { this.work().await });
        }
    }

    async fn work(self: Arc<Self>) {
        loop {
            let batch = {
                let mut queue = self.lock();
                if queue.waiting.is_empty() {
                    queue.worker = false;
                    return;
                }
                std::mem::take(&mut queue.waiting)
            };
            let (items, dones): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .map(|q| ((q.user_id, q.staged), (q.done, q._slot)))
                .unzip();
            let outcomes = self.blobs.put_many(&items).await;
            tracing::debug!(blobs = items.len(), "batch of blobs durable");
            let mut queue = self.lock();
            for (((user_id, staged), (done, _slot)), outcome) in
                items.into_iter().zip(dones).zip(outcomes)
            {
                if let Err(e) = &outcome {
                    // The commit finds the blob missing and the client sends it again.
                    tracing::warn!(user = %user_id, blob = %staged.sha256, error = %e, "storing a blob failed");
                }
                queue.inflight.remove(&(user_id, staged.sha256.clone()));
                let _ = done.send(true);
            }
        }
    }

    /// Waits until no put of this blob is pending.
    pub async fn settled(&self, user_id: &str, sha256: &str) {
        let pending = self
            .lock()
            .inflight
            .get(&(user_id.to_owned(), sha256.to_owned()))
            .cloned();
        if let Some(mut settled) = pending {
            // An error means the worker is gone (runtime shutting down): settled either way.
            let _ = settled.wait_for(|done| *done).await;
        }
    }

    /// How many puts are pending.
    pub fn len(&self) -> usize {
        self.lock().inflight.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    async fn stage(staging: &Staging, bytes: Vec<u8>) -> StagedBlob {
        let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(bytes))]);
        staging.stage(body).await.unwrap()
    }

    fn staged_files(staging: &Staging) -> usize {
        std::fs::read_dir(staging.dir()).unwrap().count()
    }

    #[tokio::test]
    async fn background_puts_are_durable_once_settled_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let (disk, staging) = DiskBlobStore::open(dir.path()).unwrap();
        let blobs: Arc<dyn BlobStore> = Arc::new(disk);
        let pending = Arc::new(PendingPuts::new(blobs.clone()));
        let contents: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 3000 + usize::from(i)]).collect();
        for bytes in &contents {
            let staged = stage(&staging, bytes.clone()).await;
            assert_eq!(staged.sha256, sha(bytes));
            pending.spawn("u1".into(), staged, pending.slot().await);
        }
        // The same blob again while the first is pending: no second put, no staging leftover.
        let again = stage(&staging, contents[0].clone()).await;
        pending.spawn("u1".into(), again, pending.slot().await);
        for bytes in &contents {
            pending.settled("u1", &sha(bytes)).await;
            let (size, _) = blobs.stat("u1", &sha(bytes)).await.unwrap().unwrap();
            assert_eq!(size, bytes.len() as u64);
            let mut read = blobs.read("u1", &sha(bytes), 0, size).await.unwrap();
            let mut got = Vec::new();
            while let Some(piece) = read.next().await {
                got.extend_from_slice(&piece.unwrap());
            }
            assert_eq!(&got, bytes);
        }
        assert!(pending.is_empty());
        assert_eq!(
            staged_files(&staging),
            0,
            "every staging file moved or removed"
        );
        // A batch of one takes the fsync-per-file way.
        let one = stage(&staging, b"alone".to_vec()).await;
        pending.spawn("u2".into(), one, pending.slot().await);
        pending.settled("u2", &sha(b"alone")).await;
        assert!(blobs.touch("u2", &sha(b"alone")).await.unwrap());
    }

    /// A store whose every put fails (a full disk, an unreachable bucket).
    struct Failing;

    impl BlobStore for Failing {
        fn put<'a>(
            &'a self,
            _: &'a str,
            _: &'a StagedBlob,
        ) -> BoxFuture<'a, Result<(), FilesError>> {
            Box::pin(async { Err(FilesError::Blob(std::io::Error::other("disk full"))) })
        }
        fn touch<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<bool, FilesError>> {
            Box::pin(async { Ok(false) })
        }
        fn stat<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Option<(u64, SystemTime)>, FilesError>> {
            Box::pin(async { Ok(None) })
        }
        fn read<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: u64,
            _: u64,
        ) -> BoxFuture<'a, Result<ByteStream, FilesError>> {
            Box::pin(async { Err(FilesError::NotFound) })
        }
        fn list(&self) -> BoxFuture<'_, Result<Vec<BlobInfo>, FilesError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn delete<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<(), FilesError>> {
            Box::pin(async { Ok(()) })
        }
        fn touch_extends_grace(&self) -> bool {
            false
        }
    }

    #[tokio::test]
    async fn a_failed_background_put_settles_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        let staging = Staging::open(dir.path()).unwrap();
        let pending = Arc::new(PendingPuts::new(Arc::new(Failing)));
        let staged = stage(&staging, b"chunk".to_vec()).await;
        pending.spawn("u1".into(), staged, pending.slot().await);
        pending.settled("u1", &sha(b"chunk")).await;
        assert!(pending.is_empty());
        assert_eq!(staged_files(&staging), 0);
    }
}
