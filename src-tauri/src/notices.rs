//! Desktop notifications for new conflicts and for errors, sent through
//! `tauri-plugin-notification` when the user has them on (Settings).
//!
//! [`NoticeTracker`] decides what deserves a notification, as a pure function of the status
//! stream: one per conflicted copy (while it is among the status's recent files), one per error
//! kind (`status.error_kind`, never the message's words) until sync is up to date again — so a
//! sync that keeps failing, retrying with backoff, does not notify at every retry.
//! **Boundary:** the tracker never touches Tauri; only [`send`] does.

use std::collections::{BTreeSet, HashSet};

use syncsphere_sync_client::{ErrorKind, Status, SyncState};
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

/// What an error notification is about; each notifies once until it clears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Topic {
    /// The synced folder is missing, not a folder, or lacks its marker: one topic, as a drive
    /// coming and going can switch between them and the user's answer is the same.
    Folder,
    /// The running sync reports this kind of problem (`None`: an error without a kind).
    Sync(Option<ErrorKind>),
    /// Sync could not start (e.g. another client holds the settings); clears when it starts.
    Start,
}

impl Topic {
    /// The error topic of `status`, if it is one that notifies. Being offline does not: the
    /// tray shows it, and sync catches up by itself.
    fn of(status: &Status) -> Option<Topic> {
        match (status.error_kind, status.state) {
            (Some(ErrorKind::Offline), _) => None,
            (
                Some(
                    ErrorKind::FolderMissing
                    | ErrorKind::FolderNotADirectory
                    | ErrorKind::FolderMarkerMissing,
                ),
                _,
            ) => Some(Topic::Folder),
            (Some(kind), _) => Some(Topic::Sync(Some(kind))),
            (None, SyncState::Error) => Some(Topic::Sync(None)),
            (None, _) => None,
        }
    }

    fn notice(self, status: &Status) -> Notice {
        match self {
            Topic::Folder => Notice {
                title: "SyncSphere folder missing".to_owned(),
                body: "Your SyncSphere folder is missing — open SyncSphere to locate it or start \
                       over; nothing was deleted."
                    .to_owned(),
            },
            Topic::Sync(Some(ErrorKind::MassDeletePending)) => {
                let (files, they) = match status.pending_deletes.as_ref().map(|p| p.count) {
                    Some(1) => ("1 file was".to_owned(), "it is"),
                    Some(n) => (format!("{n} files were"), "they are"),
                    None => ("Files were".to_owned(), "they are"),
                };
                Notice {
                    title: "Confirm deleted files".to_owned(),
                    body: format!(
                        "{files} deleted in your SyncSphere folder — confirm before {they} \
                         deleted everywhere."
                    ),
                }
            }
            Topic::Sync(_) | Topic::Start => Notice {
                title: "SyncSphere cannot sync".to_owned(),
                body: status.last_error.clone().unwrap_or_else(|| {
                    "Something went wrong. Open SyncSphere to see more.".to_owned()
                }),
            },
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct NoticeTracker {
    /// The conflicted copies among the recent files already notified.
    conflicts: BTreeSet<String>,
    errors: HashSet<Topic>,
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
            self.errors.remove(&Topic::Start);
        }
        // Up to date: every problem of the running sync is over. Nothing else clears one, as
        // retries pass through "syncing" and restarts through "stopped" and "starting".
        if status.state == SyncState::UpToDate {
            self.errors.clear();
        }
        if let Some(topic) = Topic::of(status)
            && self.errors.insert(topic)
        {
            notices.push(topic.notice(status));
        }
        notices
    }

    /// Sync could not start for `problem` (a sentence for the user), or started (`None`).
    pub(crate) fn on_start(&mut self, problem: Option<&str>) -> Option<Notice> {
        let Some(problem) = problem else {
            self.errors.remove(&Topic::Start);
            return None;
        };
        self.errors.insert(Topic::Start).then(|| Notice {
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
    use syncsphere_sync_client::PendingDeletes;

    const CANNOT: &str = "SyncSphere cannot sync";
    const FOLDER: &str = "SyncSphere folder missing";
    const DELETES: &str = "Confirm deleted files";

    fn status(state: SyncState, conflicts: &[&str]) -> Status {
        let mut s = Status::new("/s".into(), "a@x".into(), "laptop".into());
        s.state = state;
        s.push_recent("plain.txt", "uploaded", 1);
        for path in conflicts {
            s.push_recent(path, CONFLICT_ACTION, 2);
        }
        s
    }

    /// A status failing with `kind`, as `sync-client` reports it.
    fn failing(kind: ErrorKind, message: &str) -> Status {
        let state = if kind == ErrorKind::Offline {
            SyncState::Offline
        } else {
            SyncState::Error
        };
        let mut s = status(state, &[]);
        s.error_kind = Some(kind);
        s.last_error = Some(message.to_owned());
        s
    }

    fn pending(count: u64) -> Option<PendingDeletes> {
        Some(PendingDeletes {
            count,
            synced_files: 300,
            sample: vec!["a.txt".into()],
            fingerprint: format!("fp-{count}"),
        })
    }

    /// `count` deletions held for the user's answer.
    fn held(count: u64) -> Status {
        let mut s = failing(
            ErrorKind::MassDeletePending,
            "files are no longer in the folder",
        );
        s.pending_deletes = pending(count);
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

    /// The bodies of the notifications for `status` from a fresh tracker.
    fn bodies(status: &Status) -> Vec<String> {
        let notices = NoticeTracker::default().on_status(status);
        notices.into_iter().map(|n| n.body).collect()
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
    fn one_notification_per_error_kind_until_sync_is_up_to_date_again() {
        use ErrorKind as K;
        check(&[
            (failing(K::Server, "the server refused"), &[CANNOT]),
            // Retries with backoff pass through syncing and offline, in other words each time:
            // the kind decides, so no repeats.
            (status(SyncState::Syncing, &[]), &[]),
            (failing(K::Offline, "cannot reach the server"), &[]),
            (failing(K::Server, "the server refused again"), &[]),
            (status(SyncState::Paused, &[]), &[]),
            // Another kind in the same words is other news, once.
            (failing(K::Auth, "the server refused"), &[CANNOT]),
            (failing(K::Auth, "the server refused"), &[]),
            (status(SyncState::UpToDate, &[]), &[]),
            (failing(K::Server, "the server refused"), &[CANNOT]),
        ]);
        assert_eq!(
            bodies(&failing(K::Io, "writing a.txt: disk full")),
            ["writing a.txt: disk full"]
        );
    }

    #[test]
    fn being_offline_is_not_notified_and_an_error_without_a_kind_is() {
        let mut unknown = status(SyncState::Error, &[]);
        unknown.last_error = Some("something broke".into());
        check(&[
            (failing(ErrorKind::Offline, "cannot reach the server"), &[]),
            (failing(ErrorKind::Offline, "push channel went silent"), &[]),
            (unknown.clone(), &[CANNOT]),
            (unknown, &[]),
        ]);
    }

    #[test]
    fn a_missing_folder_notifies_once_while_sync_waits_for_it() {
        use ErrorKind as K;
        let missing = || failing(K::FolderMissing, "the synced folder /s is missing: …");
        check(&[
            (status(SyncState::Starting, &[]), &[]),
            (missing(), &[FOLDER]),
            // The engine keeps checking with backoff.
            (missing(), &[]),
            (missing(), &[]),
            // The drive's empty mount point appears, or a file is put in its place: the same
            // news for the user.
            (failing(K::FolderMarkerMissing, "no marker"), &[]),
            (failing(K::FolderNotADirectory, "a file"), &[]),
            // A restart (new limits in Settings) reports it again.
            (status(SyncState::Stopped, &[]), &[]),
            (status(SyncState::Starting, &[]), &[]),
            (missing(), &[]),
            // The folder is back and synced; gone again later is news again.
            (status(SyncState::Syncing, &[]), &[]),
            (status(SyncState::UpToDate, &[]), &[]),
            (failing(K::FolderMarkerMissing, "no marker"), &[FOLDER]),
        ]);
        let expected = "Your SyncSphere folder is missing — open SyncSphere to locate it or start \
                        over; nothing was deleted.";
        for kind in [
            K::FolderMissing,
            K::FolderNotADirectory,
            K::FolderMarkerMissing,
        ] {
            assert_eq!(bodies(&failing(kind, "words")), [expected], "{kind:?}");
        }
    }

    #[test]
    fn held_deletions_ask_for_confirmation_once_with_their_count() {
        let mut changed_meanwhile = status(SyncState::Syncing, &[]);
        changed_meanwhile.pending_deletes = pending(240);
        check(&[
            (held(240), &[DELETES]),
            // Other changes sync while the deletions wait: no repeats.
            (changed_meanwhile, &[]),
            (held(241), &[]),
            // Answered (restored or deleted everywhere): the next held set is news.
            (status(SyncState::Syncing, &[]), &[]),
            (status(SyncState::UpToDate, &[]), &[]),
            (held(12), &[DELETES]),
        ]);
        assert_eq!(
            bodies(&held(240)),
            [
                "240 files were deleted in your SyncSphere folder — confirm before they are \
              deleted everywhere."
            ]
        );
        assert_eq!(
            bodies(&held(1)),
            [
                "1 file was deleted in your SyncSphere folder — confirm before it is deleted \
              everywhere."
            ]
        );
    }

    #[test]
    fn a_start_problem_notifies_once_until_sync_runs() {
        let mut tracker = NoticeTracker::default();
        let in_use = Some("Could not start syncing /s: syncsphere sync is already syncing.");
        assert!(tracker.on_start(in_use).is_some());
        assert_eq!(tracker.on_start(in_use), None);
        assert!(
            tracker
                .on_status(&status(SyncState::Stopped, &[]))
                .is_empty()
        );
        assert_eq!(tracker.on_start(in_use), None);
        tracker.on_status(&status(SyncState::Starting, &[]));
        let again = tracker.on_start(in_use);
        assert_eq!(again.map(|n| n.body), in_use.map(str::to_owned));
        assert_eq!(tracker.on_start(None), None);
        assert!(tracker.on_start(in_use).is_some());
    }
}
