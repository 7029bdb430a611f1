//! Desktop notifications for new conflicts and for errors, sent through
//! `tauri-plugin-notification` when the user has them on (Settings).
//!
//! [`NoticeTracker`] decides what deserves a notification, as a pure function of the status
//! stream: one per conflicted copy (while it is among the status's recent files), one per error
//! kind until that kind clears — so a sync that keeps failing, retrying with backoff, does not
//! notify at every retry.
//! **Boundary:** the tracker never touches Tauri; only [`send`] does.

use std::collections::BTreeSet;

use syncsphere_sync_client::{Status, SyncState};
use tauri::AppHandle;
use tauri_plugin_notification::NotificationExt as _;

/// The `recent` action of a conflicted copy (`sync-client`'s status).
const CONFLICT_ACTION: &str = "conflict_copy";
/// More new conflicts than this at once become one notification.
const CONFLICTS_ONE_BY_ONE: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notice {
    pub(crate) title: String,
    pub(crate) body: String,
}

/// What an error notification is about; each kind notifies once until it clears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ErrorKind {
    /// The running sync is in the error state; clears at the next "up to date".
    Sync,
    /// Sync could not start (e.g. the folder is missing); clears when it starts.
    Start,
}

#[derive(Debug, Default)]
pub(crate) struct NoticeTracker {
    /// The conflicted copies among the recent files already notified.
    conflicts: BTreeSet<String>,
    errors: BTreeSet<ErrorKind>,
}

impl NoticeTracker {
    /// The notifications a new status calls for.
    pub(crate) fn on_status(&mut self, status: &Status) -> Vec<Notice> {
        let mut notices = Vec::new();
        let current: BTreeSet<String> = status
            .recent
            .iter()
            .filter(|f| f.action == CONFLICT_ACTION)
            .map(|f| f.path.clone())
            .collect();
        let new: Vec<&String> = current.difference(&self.conflicts).collect();
        if new.len() > CONFLICTS_ONE_BY_ONE {
            notices.push(Notice {
                title: format!("{} files were changed in two places", new.len()),
                body: "SyncSphere kept every version. Open Conflicts in SyncSphere to choose."
                    .to_owned(),
            });
        } else {
            notices.extend(new.into_iter().map(|copy| Notice {
                title: format!("Conflict: {}", file_name(copy)),
                body: format!(
                    "This file was changed in two places. Both versions are kept; the other one \
                     is saved as {copy}. Open Conflicts in SyncSphere to choose."
                ),
            }));
        }
        // Copies that left the recent list are forgotten; the list is bounded, so is the set.
        self.conflicts = current;

        if status.state != SyncState::Stopped {
            self.errors.remove(&ErrorKind::Start);
        }
        match status.state {
            SyncState::Error if self.errors.insert(ErrorKind::Sync) => {
                notices.push(Notice {
                    title: "SyncSphere cannot sync".to_owned(),
                    body: status.last_error.clone().unwrap_or_else(|| {
                        "Something went wrong. Open SyncSphere to see more.".to_owned()
                    }),
                });
            }
            SyncState::UpToDate => {
                self.errors.remove(&ErrorKind::Sync);
            }
            _ => {}
        }
        notices
    }

    /// Sync could not start for `problem` (a sentence for the user), or started (`None`).
    pub(crate) fn on_start(&mut self, problem: Option<&str>) -> Option<Notice> {
        let Some(problem) = problem else {
            self.errors.remove(&ErrorKind::Start);
            return None;
        };
        self.errors.insert(ErrorKind::Start).then(|| Notice {
            title: "SyncSphere is not syncing".to_owned(),
            body: problem.to_owned(),
        })
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Shows `notices` (logged when the desktop has no notification service).
pub(crate) fn send(app: &AppHandle, notices: Vec<Notice>) {
    for notice in notices {
        tracing::info!(title = %notice.title, "notification");
        let shown = app
            .notification()
            .builder()
            .title(&notice.title)
            .body(&notice.body)
            .show();
        if let Err(err) = shown {
            tracing::warn!("could not show a notification: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: SyncState, conflicts: &[&str]) -> Status {
        let mut s = Status::new("/s".into(), "a@x".into(), "laptop".into());
        s.state = state;
        s.last_error = (state == SyncState::Error).then(|| "the server refused".to_owned());
        s.push_recent("plain.txt", "uploaded", 1);
        for path in conflicts {
            s.push_recent(path, CONFLICT_ACTION, 2);
        }
        s
    }

    fn titles(notices: Vec<Notice>) -> Vec<String> {
        notices.into_iter().map(|n| n.title).collect()
    }

    /// Feeds `steps` in order and checks the notification titles each one produced.
    fn check(steps: &[(Status, &[&str])]) {
        let mut tracker = NoticeTracker::default();
        for (i, (status, expected)) in steps.iter().enumerate() {
            assert_eq!(titles(tracker.on_status(status)), *expected, "step {i}");
        }
    }

    #[test]
    fn one_notification_per_conflicted_copy() {
        let a = "d/a (conflicted copy from pc 2026-11-25 103015).txt";
        let b = "b (conflicted copy from pc 2026-11-25 103016).txt";
        check(&[
            (status(SyncState::Syncing, &[]), &[]),
            (
                status(SyncState::Syncing, &[a]),
                &["Conflict: a (conflicted copy from pc 2026-11-25 103015).txt"],
            ),
            (status(SyncState::UpToDate, &[a]), &[]),
            (
                status(SyncState::UpToDate, &[a, b]),
                &["Conflict: b (conflicted copy from pc 2026-11-25 103016).txt"],
            ),
            // Gone from the recent list (a restarted sync), then back: it is news again.
            (status(SyncState::UpToDate, &[]), &[]),
            (
                status(SyncState::UpToDate, &[b]),
                &["Conflict: b (conflicted copy from pc 2026-11-25 103016).txt"],
            ),
            (
                status(SyncState::UpToDate, &[b, "1", "2", "3", "4"]),
                &["4 files were changed in two places"],
            ),
        ]);
    }

    #[test]
    fn one_error_notification_until_sync_is_up_to_date_again() {
        check(&[
            (status(SyncState::Error, &[]), &["SyncSphere cannot sync"]),
            // Retries with backoff pass through syncing and offline: no repeats.
            (status(SyncState::Syncing, &[]), &[]),
            (status(SyncState::Offline, &[]), &[]),
            (status(SyncState::Error, &[]), &[]),
            (status(SyncState::UpToDate, &[]), &[]),
            (status(SyncState::Error, &[]), &["SyncSphere cannot sync"]),
        ]);
    }

    #[test]
    fn a_start_problem_notifies_once_until_sync_runs() {
        let mut tracker = NoticeTracker::default();
        let missing = Some("The folder /s is missing.");
        assert!(tracker.on_start(missing).is_some());
        assert_eq!(tracker.on_start(missing), None);
        assert!(
            tracker
                .on_status(&status(SyncState::Stopped, &[]))
                .is_empty()
        );
        assert_eq!(tracker.on_start(missing), None);
        tracker.on_status(&status(SyncState::Starting, &[]));
        let again = tracker.on_start(missing);
        assert_eq!(
            again.map(|n| n.body),
            Some("The folder /s is missing.".to_owned())
        );
        assert_eq!(tracker.on_start(None), None);
        assert!(tracker.on_start(missing).is_some());
    }
}
