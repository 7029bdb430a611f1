//! The delete brake: a pass that would delete more than the policy allows waits for the
//! user's decision instead.

use super::*;

impl Engine {
    /// Applies the mass-delete brake to `ops`, and the user's answer when one waits. Returns
    /// the operations to run now, or `None` when an answer changed what to plan.
    pub(super) async fn brake(
        &mut self,
        ops: Vec<Op>,
        synced_files: usize,
    ) -> Result<Option<Vec<Op>>, SyncError> {
        let (run, held) = brake_deletes(
            ops,
            synced_files,
            &self.delete_policy,
            &self.approved_deletes,
        );
        if let Some(answer) = pending_decision(&self.config_dir) {
            clear_decision(&self.config_dir);
            match &held {
                Some(h) if h.fingerprint == answer.fingerprint => {
                    match answer.decision {
                        DeleteDecision::DeleteEverywhere => {
                            tracing::info!(
                                files = h.paths.len(),
                                "deleting on the server, as confirmed"
                            );
                            self.approved_deletes.extend(h.paths.iter().cloned());
                        }
                        DeleteDecision::Restore => {
                            tracing::info!(
                                files = h.paths.len(),
                                "restoring deleted files from the server, as asked"
                            );
                            // Forgotten as synced, they read as new on the server: downloaded.
                            for path in &h.paths {
                                self.index.set_synced(path, None).await?;
                            }
                        }
                    }
                    self.held_deletes = None;
                    return Ok(None);
                }
                _ => tracing::warn!(
                    fingerprint = answer.fingerprint,
                    "an answer about deletions that are no longer held; asking again"
                ),
            }
        }
        if let Some(h) = held.as_ref().filter(|_| held != self.held_deletes) {
            tracing::warn!(
                files = h.paths.len(),
                of = h.synced_files,
                fingerprint = h.fingerprint,
                "many files were deleted in the folder; waiting for confirmation before deleting them on the server"
            );
        }
        // A confirmation lasts until its deletions are done (a pass cut short keeps it).
        self.approved_deletes.retain(|p| {
            run.iter()
                .any(|op| matches!(op, Op::DeleteRemote { path, .. } if path == p))
        });
        self.held_deletes = held;
        Ok(Some(run))
    }
}

/// Resolves once the user's answer to held deletions is there (a `stat` every
/// [`DECISION_POLL`]); never while nothing is held.
pub(super) async fn decision_arrives(config_dir: &Path, held: bool) {
    if !held {
        return std::future::pending().await;
    }
    let path = crate::deletes::decision_path(config_dir);
    loop {
        tokio::time::sleep(DECISION_POLL).await;
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return;
        }
    }
}

pub(super) fn pending_of(h: &HeldDeletes) -> PendingDeletes {
    PendingDeletes {
        count: h.paths.len() as u64,
        synced_files: h.synced_files as u64,
        sample: h.paths.iter().take(10).cloned().collect(),
        fingerprint: h.fingerprint.clone(),
    }
}
