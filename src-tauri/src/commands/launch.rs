//! A launch that asks for a file (`--show`/`--history`, from the file managers' actions)
//! becomes an [`OpenRequest`] for the window: sent as the event [`OPEN_EVENT`] when a second
//! launch hands its arguments to the running app, and kept for `take_open_request` when it is
//! the first launch (the window is not listening yet).

use std::path::Path;

use serde::Serialize;
use tauri::{AppHandle, Emitter as _, Manager as _, State};

use crate::launch::{self, FileView, LaunchRequest};
use crate::{DesktopState, shell};

/// Event carrying an [`OpenRequest`].
pub(crate) const OPEN_EVENT: &str = "open_request";

/// A page to show, with the file to show on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct OpenRequest {
    /// `activity` (the file's sync status) or `history` (its versions).
    page: &'static str,
    /// Relative to the synced folder, `/`-separated; `None` when the file could not be taken.
    path: Option<String>,
    /// Why the file cannot be shown (outside the synced folder, no folder yet), in words.
    problem: Option<String>,
}

/// The request of this (first) launch, once: the window asks when it has started.
#[tauri::command(rename_all = "snake_case")]
pub(crate) fn take_open_request(state: State<'_, DesktopState>) -> Option<OpenRequest> {
    state.take_open_request()
}

/// Reads the command line of a launch. `None` when it only asks for the window; a broken one
/// is logged and treated like that.
pub(crate) fn open_request(
    args: impl IntoIterator<Item = String>,
    cwd: &Path,
    folder: Option<&Path>,
) -> Option<OpenRequest> {
    let (view, path) = match launch::parse(args, cwd) {
        Ok(LaunchRequest::Window) => return None,
        Ok(LaunchRequest::File { view, path }) => (view, path),
        Err(err) => {
            tracing::warn!("ignoring the launch arguments: {err}");
            return None;
        }
    };
    let page = match view {
        FileView::Show => "activity",
        FileView::History => "history",
    };
    let (path, problem) = match folder {
        None => (
            None,
            Some("Choose a folder to sync first; then its files can be shown here.".to_owned()),
        ),
        Some(folder) => match launch::synced_path(folder, &path) {
            Ok(path) => (path, None),
            Err(outside) => (None, Some(outside.to_string())),
        },
    };
    Some(OpenRequest {
        page,
        path,
        problem,
    })
}

/// A second launch (single instance): show the window, and the file it asks for.
/// `argv` includes the program name, as the OS passed it.
pub(crate) fn on_second_launch(app: &AppHandle, argv: Vec<String>, cwd: String) {
    tracing::info!(?argv, "another launch; showing the window");
    shell::show_window(app);
    let folder = app.state::<DesktopState>().folder();
    if let Some(request) =
        open_request(argv.into_iter().skip(1), Path::new(&cwd), folder.as_deref())
        && let Err(err) = app.emit(OPEN_EVENT, &request)
    {
        tracing::warn!("could not send the file request to the window: {err}");
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn request(args: &[&str], folder: Option<&str>) -> Option<OpenRequest> {
        open_request(
            args.iter().map(|a| (*a).to_owned()),
            Path::new("/home/ada"),
            folder.map(Path::new),
        )
    }

    #[test]
    fn launches_become_requests_for_the_window() {
        let folder = Some("/home/ada/SyncSphere");
        assert_eq!(request(&["--hidden"], folder), None);
        assert_eq!(request(&["--show"], folder), None);
        assert_eq!(
            request(&["--history", "SyncSphere/docs/a.txt"], folder),
            Some(OpenRequest {
                page: "history",
                path: Some("docs/a.txt".to_owned()),
                problem: None,
            })
        );
        assert_eq!(
            request(&["--show", "/etc/passwd"], folder),
            Some(OpenRequest {
                page: "activity",
                path: None,
                problem: Some(
                    "/etc/passwd is not in your SyncSphere folder (/home/ada/SyncSphere).".into()
                ),
            })
        );
        let no_folder = request(&["--show", "/home/ada/SyncSphere/a"], None);
        assert!(no_folder.is_some_and(|r| r.path.is_none() && r.problem.is_some()));
    }
}
