//! The user's answer to held server-side deletions (`sync-core`'s mass-delete brake), passed to
//! the engine through `<config dir>/deletes-decision.json` so that the CLI (another process)
//! and the desktop app answer the same way. A decision names the set it answers by its
//! fingerprint: it never covers a set the user has not seen.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::SyncError;
use crate::config::{read_json, write_json};

/// What to do with held deletions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteDecision {
    /// The user deleted them on purpose: delete them on the server and every device.
    DeleteEverywhere,
    /// Bring them back into the folder from the server; nothing is deleted.
    Restore,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DecisionFile {
    pub fingerprint: String,
    pub decision: DeleteDecision,
}

pub(crate) fn decision_path(config_dir: &Path) -> PathBuf {
    config_dir.join("deletes-decision.json")
}

/// Answers the held deletions named by `fingerprint` (from the status's `pending_deletes`). A
/// running engine takes it within seconds; otherwise the next start does, if the same set is
/// still held.
pub fn decide_deletes(
    config_dir: &Path,
    fingerprint: &str,
    decision: DeleteDecision,
) -> Result<(), SyncError> {
    if fingerprint.trim().is_empty() {
        return Err(SyncError::Config(
            "no set of deletions named (the fingerprint is empty)".into(),
        ));
    }
    write_json(
        &decision_path(config_dir),
        &DecisionFile {
            fingerprint: fingerprint.trim().to_owned(),
            decision,
        },
        false,
    )
}

/// The decision waiting in `config_dir`, if any; a damaged file counts as none (and is said).
pub(crate) fn pending_decision(config_dir: &Path) -> Option<DecisionFile> {
    match read_json(&decision_path(config_dir)) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring the deletion decision");
            None
        }
    }
}

pub(crate) fn clear_decision(config_dir: &Path) {
    let _ = std::fs::remove_file(decision_path(config_dir));
}
