//! Group commit for the embedded SQLite metadata database. SQLite has one writer (the pool's
//! one connection) and, with `synchronous=FULL`, one WAL fsync per transaction, so commits
//! queued behind each other each paid for their own fsync while holding the connection. Here
//! the metadata operations queued meanwhile run in one transaction and share one `COMMIT`
//! (one fsync).
//!
//! **Invariants**
//! - An operation's result is handed out only after the batch's `COMMIT` succeeded: nothing
//!   is acknowledged (or pushed to other devices) before it is durable, and readers see a
//!   batch only once it is committed, as before.
//! - An operation makes all of its checks before its first write (the store's operations are
//!   written that way: the journal `seq` is taken last on SQLite), so an operation refused by
//!   a check (conflict, not found, quota…) has written nothing and the batch goes on without
//!   it — no savepoint needed, which saves two statements per operation. Every build verifies
//!   it, at no cost on the common path: SQLite counts the rows a connection changed
//!   (`total_changes()`); the batch reads it when it starts, the store's write step reads it
//!   in its last statement ([`OpTx::wrote`]), and a refusal reads it once more. A refused
//!   operation under which the count moved had written: it fails its whole batch, like a
//!   database failure.
//! - An operation that fails in the database (an I/O error, a broken statement), a failed
//!   `COMMIT`, or an operation that panics fails every operation in the batch (rolled back
//!   whole, nothing was delivered yet), and the writer goes on with the next one.
//!
//! PostgreSQL does not go through here: it has concurrent writers and merges concurrent WAL
//! flushes itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use sqlx::{Any, AnyConnection, AnyPool, Row as _, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::FilesError;
use crate::store::MetadataStore;

/// Most operations in one transaction (bounds how long one batch holds the connection).
const MAX_BATCH: usize = 64;
/// Operations waiting for the writer; more wait in `submit` (backpressure).
const QUEUE: usize = 1024;

/// A metadata operation run inside a transaction it must not commit.
pub(crate) type Op<T> = Box<
    dyn for<'t, 'c> FnOnce(
            &'t MetadataStore,
            &'t mut OpTx<'c>,
        ) -> BoxFuture<'t, Result<T, FilesError>>
        + Send,
>;

/// The transaction an operation runs in. Its checks read through it (it derefs to the
/// connection); its write step says through [`OpTx::wrote`] how many rows the connection had
/// changed once it was done, which is what lets the group commit check for free that an
/// operation refused after it wrote nothing.
pub(crate) struct OpTx<'c> {
    conn: &'c mut AnyConnection,
    /// SQLite's `total_changes()` as read by the operation's last write, if it wrote.
    changes_after_writes: Option<i64>,
}

impl<'c> OpTx<'c> {
    pub(crate) fn new(conn: &'c mut AnyConnection) -> Self {
        OpTx {
            conn,
            changes_after_writes: None,
        }
    }

    /// Records the connection's `total_changes()`, read by the operation's last write.
    pub(crate) fn wrote(&mut self, total_changes: i64) {
        self.changes_after_writes = Some(total_changes);
    }
}

impl std::ops::Deref for OpTx<'_> {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        self.conn
    }
}

impl std::ops::DerefMut for OpTx<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.conn
    }
}

/// The batch's transaction, and the connection's `total_changes()` once the operations run so
/// far were done.
struct Batch {
    tx: Transaction<'static, Any>,
    changes: i64,
}

/// Hands an operation its outcome once the batch's fate is known (`Some` = the batch failed).
type Deliver = Box<dyn FnOnce(Option<&str>) + Send>;
/// A queued operation run in the batch's transaction: its delivery, and whether it dooms the
/// batch (it failed in the database, or was refused after it wrote: either way it may have
/// written part of its changes).
type Job = Box<dyn for<'b> FnOnce(&'b mut Batch) -> BoxFuture<'b, (Deliver, bool)> + Send>;

/// The single writer's queue, started on first use (inside the runtime).
#[derive(Default)]
pub(crate) struct GroupCommit {
    jobs: OnceLock<mpsc::Sender<Job>>,
    /// Transactions committed, for tests and logs.
    batches: Arc<AtomicU64>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("batches", &self.batches.load(Ordering::Relaxed))
            .finish()
    }
}

impl GroupCommit {
    /// Runs `op` in the next batch and returns its result once the batch is committed.
    pub(crate) async fn submit<T: Send + 'static>(
        &self,
        store: MetadataStore,
        op: Op<T>,
    ) -> Result<T, FilesError> {
        let jobs = self.jobs.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(run(store.db().pool.clone(), rx, self.batches.clone()));
            tx
        });
        let (done, outcome) = oneshot::channel();
        let job: Job = Box::new(move |batch| {
            Box::pin(async move {
                let result = run_op(batch, &store, op).await;
                let dooms = matches!(result, Err(FilesError::Store(_) | FilesError::Blob(_)));
                let deliver = Box::new(move |batch_failed: Option<&str>| {
                    let _ = done.send(match (result, batch_failed) {
                        (Ok(value), None) => Ok(value),
                        (Ok(_), Some(why)) => Err(batch_error(why)),
                        (Err(err), _) => Err(err),
                    });
                }) as Deliver;
                (deliver, dooms)
            })
        });
        jobs.send(job)
            .await
            .map_err(|_| batch_error("the metadata writer has stopped"))?;
        outcome
            .await
            .map_err(|_| batch_error("the metadata writer dropped the operation"))?
    }

    #[cfg(test)]
    pub(crate) fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
}

/// Runs one operation in the batch's transaction, and checks that one refused by a check wrote
/// nothing (see the module's invariants): if it did, it fails as a database error, which dooms
/// the batch.
async fn run_op<T>(batch: &mut Batch, store: &MetadataStore, op: Op<T>) -> Result<T, FilesError> {
    let mut op_tx = OpTx::new(&mut batch.tx);
    let result = op(store, &mut op_tx).await;
    let reported = op_tx.changes_after_writes;
    match &result {
        Ok(_) => {
            batch.changes = match reported {
                Some(n) => n,
                // Only operations that bypass the store's write step get here (tests).
                None => total_changes(&mut batch.tx).await?,
            }
        }
        Err(FilesError::Store(_) | FilesError::Blob(_)) => {}
        Err(refusal) => {
            let now = total_changes(&mut batch.tx).await?;
            if now != batch.changes {
                tracing::error!(
                    rows = now - batch.changes,
                    "a metadata operation refused with '{refusal}' had already written rows"
                );
                return Err(batch_error(&format!(
                    "an operation refused with '{refusal}' had already written rows"
                )));
            }
        }
    }
    result
}

/// Rows inserted, updated or deleted through the connection since it was opened.
async fn total_changes(conn: &mut AnyConnection) -> Result<i64, FilesError> {
    let row = sqlx::query("SELECT total_changes() AS n")
        .fetch_one(conn)
        .await?;
    Ok(row.try_get("n")?)
}

fn batch_error(why: &str) -> FilesError {
    FilesError::Store(sqlx::Error::Protocol(format!(
        "the metadata commit failed: {why}"
    )))
}

/// The writer: takes whatever is queued (up to [`MAX_BATCH`]), runs it in one transaction,
/// commits, then delivers. Operations queued while a batch runs form the next one.
async fn run(pool: AnyPool, mut jobs: mpsc::Receiver<Job>, batches: Arc<AtomicU64>) {
    while let Some(first) = jobs.recv().await {
        let mut queued = vec![first];
        while queued.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => queued.push(job),
                Err(_) => break,
            }
        }
        let size = queued.len();
        // Jobs that cannot run are dropped: their callers get an error.
        let mut batch = match start(&pool).await {
            Ok(batch) => batch,
            Err(err) => {
                tracing::warn!(size, "metadata batch not started: {err}");
                continue;
            }
        };
        let mut deliveries = Vec::with_capacity(size);
        let mut doomed = None;
        let mut jobs_left = queued.into_iter();
        for job in jobs_left.by_ref() {
            // A panicking operation must not take the writer (and every later commit) with
            // it: the batch is rolled back and its callers get an error, as a request's panic
            // would have failed only that request before.
            match std::panic::AssertUnwindSafe(job(&mut batch))
                .catch_unwind()
                .await
            {
                Ok((deliver, dooms)) => {
                    deliveries.push(deliver);
                    if dooms {
                        doomed = Some("an operation in the same batch failed in the database");
                        break;
                    }
                }
                Err(_) => {
                    doomed = Some("an operation in the same batch failed");
                    break;
                }
            }
        }
        // Operations after a doomed one are not run: dropping them fails their callers.
        drop(jobs_left);
        let failed = if let Some(why) = doomed {
            tracing::error!(size, "{why}; batch rolled back");
            drop(batch);
            Some(why.to_owned())
        } else {
            batch.tx.commit().await.err().map(|err| err.to_string())
        };
        match &failed {
            None => {
                batches.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(size, "metadata batch committed");
            }
            Some(err) => tracing::warn!(size, "metadata batch failed to commit: {err}"),
        }
        for deliver in deliveries {
            deliver(failed.as_deref());
        }
    }
}

/// Begins a batch's transaction and reads the connection's change count it starts from.
async fn start(pool: &AnyPool) -> Result<Batch, FilesError> {
    let mut tx = pool.begin().await?;
    let changes = total_changes(&mut tx).await?;
    Ok(Batch { tx, changes })
}
