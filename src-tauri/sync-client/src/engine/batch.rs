//! Running a round's operations: units in parallel (single operations, download and upload
//! groups), pauses, and progress.

use super::*;

impl Engine {
    /// One unit of a batch as a future (boxed: the three kinds differ).
    pub(super) fn run_unit(
        &self,
        unit: Unit,
    ) -> futures_util::future::BoxFuture<'_, Vec<execute::Ran>> {
        match unit {
            Unit::NewFiles(ops) => Box::pin(self.download_new(ops)),
            Unit::SmallFiles(ops) => Box::pin(self.upload_small(ops)),
            Unit::One(op) => Box::pin(async move { vec![self.execute_unless_paused(op).await] }),
        }
    }

    /// Runs one planned batch, up to [`PARALLEL_OPS`] operations at a time (they touch disjoint
    /// paths, so their order does not matter), publishing counts and per-file progress. Errors
    /// of one path are collected; an error that must end the pass is returned.
    pub(super) async fn execute_batch(&self, ops: Vec<Op>) -> Result<BatchOutcome, SyncError> {
        let total = ops.len() as u64;
        // New files come down in groups (one request, one index transaction each).
        let (new, other): (Vec<Op>, Vec<Op>) = ops.into_iter().partition(|op| {
            matches!(
                op,
                Op::Download {
                    expect_local: None,
                    ..
                }
            )
        });
        let (new, other) = if new.len() < 2 {
            (Vec::new(), [new, other].concat())
        } else {
            (new, other)
        };
        // So do small files going up (one request, one index transaction).
        let (small, other): (Vec<Op>, Vec<Op>) = other.into_iter().partition(|op| {
            matches!(op, Op::Upload { path, .. }
                if self.last_local.get(path).is_some_and(|s| s.size <= UPLOAD_GROUP_FILE_MAX))
        });
        let (small, other) = if small.len() < 2 {
            (Vec::new(), [small, other].concat())
        } else {
            (small, other)
        };
        // The units of work, each made a future only when its turn comes: a batch of tens of
        // thousands of operations must not allocate all their futures at once (their memory
        // stays with the process after the batch).
        let mut units: Vec<Unit> = Vec::new();
        let mut new = new.into_iter().peekable();
        while new.peek().is_some() {
            units.push(Unit::NewFiles(new.by_ref().take(DOWNLOAD_GROUP).collect()));
        }
        let mut small = small.into_iter().peekable();
        while small.peek().is_some() {
            units.push(Unit::SmallFiles(
                small.by_ref().take(UPLOAD_GROUP).collect(),
            ));
        }
        units.extend(other.into_iter().map(Unit::One));
        let runs = futures_util::stream::iter(units).map(|unit| self.run_unit(unit));
        let mut results = runs
            .buffer_unordered(self.parallel_ops)
            .flat_map(futures_util::stream::iter);
        let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
        let mut done = 0;
        let mut outcome = BatchOutcome::default();
        loop {
            let next = tokio::select! {
                next = results.next() => next,
                _ = tick.tick() => {
                    self.publish_progress(total - done);
                    continue;
                }
            };
            let Some((label, op_path, result)) = next else {
                break;
            };
            done += 1;
            match result {
                // Found the disk other than planned: nothing done (a paused batch is not that).
                Ok(None) if label != "record_synced" && !*self.paused.borrow() => {
                    outcome.skipped.push(op_path)
                }
                Ok(activity) => {
                    outcome.done.push(op_path);
                    if let Some((path, action)) = activity {
                        self.status
                            .send_modify(|s| s.push_recent(&path, action, now_ms()));
                    }
                }
                // A stale plan: the next round re-plans from fresh state.
                Err(SyncError::Conflict(_)) => {
                    tracing::info!(op = label, "server state moved on; re-planning")
                }
                // Still being written: upload it once it holds still.
                Err(SyncError::Busy(path)) => {
                    tracing::debug!(path, "file is still changing; will look again");
                    outcome.busy = true;
                }
                Err(
                    e @ (SyncError::Offline(_)
                    | SyncError::Auth(_)
                    | SyncError::Index(_)
                    | SyncError::DeviceRevoked
                    | SyncError::SignedOut
                    | SyncError::Folder(_)),
                ) => {
                    return Err(e);
                }
                // One file's trouble must not stop the others.
                Err(e) => outcome.failed.push((op_path, format!("{label}: {e}"))),
            }
            self.publish_progress(total - done);
        }
        Ok(outcome)
    }

    /// Executes `op` unless the user paused before it started (then it is left for later).
    pub(super) async fn execute_unless_paused(
        &self,
        op: Op,
    ) -> (
        &'static str,
        String,
        Result<Option<(String, &'static str)>, SyncError>,
    ) {
        let label = describe(&op);
        let path = op.path().to_owned();
        if *self.paused.borrow() {
            return (label, path, Ok(None));
        }
        // Whatever the operation did (or found other than planned), the next round looks at
        // its names again: the watcher's word on them may come later than that round.
        let touched: Vec<String> = match &op {
            Op::MoveLocal { from, to, .. } | Op::MoveRemote { from, to, .. } => {
                vec![from.clone(), to.clone()]
            }
            Op::ConflictCopy { path, copy } => vec![path.clone(), copy.clone()],
            Op::RecordSynced { .. } => Vec::new(),
            op => vec![op.path().to_owned()],
        };
        let result = self.execute(op).await;
        for p in &touched {
            self.dirty.mark(p);
        }
        (label, path, result)
    }

    pub(super) fn publish_progress(&self, pending: u64) {
        let (up, down) = self.remote.transferred();
        let transfers = self.transfers.snapshot();
        self.status.send_if_modified(|s| {
            let changed = s.pending != pending
                || s.bytes_uploaded != up
                || s.bytes_downloaded != down
                || s.transfers != transfers;
            s.pending = pending;
            s.bytes_uploaded = up;
            s.bytes_downloaded = down;
            s.transfers = transfers;
            changed
        });
    }
}
