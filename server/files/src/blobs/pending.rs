//! Chunk puts acknowledged once staged and made durable in the background, in batches; a
//! commit waits for its chunks' puts to settle before it checks them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::{BlobStore, StagedBlob};

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
    use std::time::SystemTime;

    use bytes::Bytes;
    use futures_util::StreamExt;
    use sha2::{Digest, Sha256};
    use syncsphere_auth::BoxFuture;

    use super::*;
    use crate::FilesError;
    use crate::blobs::{BlobPages, ByteStream, DiskBlobStore, Staging};

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
        assert!(blobs.touch("u2", &sha(b"alone")).await.unwrap().is_some());
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
        fn touch<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Option<(u64, SystemTime)>, FilesError>> {
            Box::pin(async { Ok(None) })
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
        fn list(&self) -> BlobPages<'_> {
            futures_util::stream::empty().boxed()
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
