//! Paths that keep failing: held out of later rounds with a growing back-off, and reported.

use super::*;

impl Engine {
    /// Leaves out operations on paths that failed recently until their wait is over; forgets
    /// failures of paths no longer planned. A local rename whose source keeps failing brings
    /// the file down at its new name instead (the server's side is not held up by this
    /// device), which waits on its own failures in turn.
    pub(super) fn hold_failing(
        &mut self,
        ops: Vec<Op>,
        remote: &syncsphere_sync_core::RemoteTree,
    ) -> Vec<Op> {
        if self.failing.is_empty() {
            return ops;
        }
        {
            let planned: std::collections::HashSet<&str> = ops
                .iter()
                .flat_map(|op| {
                    let to = match op {
                        Op::MoveLocal { to, .. } | Op::MoveRemote { to, .. } => Some(to.as_str()),
                        _ => None,
                    };
                    std::iter::once(op.path()).chain(to)
                })
                .collect();
            self.failing.retain(|p, _| planned.contains(p.as_str()));
        }
        let now = self.clock.now();
        ops.into_iter()
            .map(|op| match op {
                Op::MoveLocal { from, to, .. }
                    if self.failing.contains_key(&from) && remote.contains_key(&to) =>
                {
                    Op::Download {
                        file: remote[&to].clone(),
                        path: to,
                        expect_local: None,
                    }
                }
                op => op,
            })
            .filter(|op| {
                self.failing
                    .get(op.path())
                    .is_none_or(|f| f.retry_at <= now)
            })
            .collect()
    }

    pub(super) fn note_failures(&mut self, outcome: BatchOutcome) {
        for path in outcome.done {
            self.failing.remove(&path);
        }
        let now = self.clock.now();
        for (path, message) in outcome.failed {
            let f = self.failing.entry(path.clone()).or_insert(PathFailure {
                attempts: 0,
                retry_at: now,
                message: String::new(),
            });
            f.attempts += 1;
            let wait = path_backoff(f.attempts);
            if f.message != message {
                tracing::warn!(path, error = message, retry_in = ?wait, "operation failed");
            } else {
                tracing::debug!(path, error = message, retry_in = ?wait, "operation failed again");
            }
            f.message = message;
            f.retry_at = now + wait;
        }
    }
}
