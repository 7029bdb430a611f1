//! What a launch of the app asks for, read from its command line: nothing in particular (show
//! the window), or a file to show — `--show <path>` (its sync status) or `--history <path>`
//! (its versions). The file managers' actions ([`crate::file_manager`]) launch the app that
//! way; a launch while the app runs hands its arguments to the running app (single instance).
//!
//! **Boundary:** pure — no Tauri, no file access besides resolving a path's symlinks to find
//! it inside the synced folder; unit-tested.

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

/// Shows a file's sync status (Activity page).
pub(crate) const SHOW_ARG: &str = "--show";
/// Shows a file's version history (History page).
pub(crate) const HISTORY_ARG: &str = "--history";

/// Which page a file was asked for on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileView {
    Show,
    History,
}

/// What one launch asks the app to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LaunchRequest {
    /// Show the window (or, with `--hidden` at login, nothing).
    Window,
    /// Show this file (absolute) on the page of `view`.
    File { view: FileView, path: PathBuf },
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LaunchArgError {
    #[error("{0} needs the path of a file after it")]
    MissingPath(&'static str),
}

/// Reads `args` (without the program name). Relative paths are taken relative to `cwd`, the
/// launching process's directory. Unknown arguments are ignored (toolkits add their own);
/// the first file request wins, as file managers may pass several selected files.
pub(crate) fn parse<I, S>(args: I, cwd: &Path) -> Result<LaunchRequest, LaunchArgError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg.as_ref();
        let (flag, view) = if arg == SHOW_ARG {
            (SHOW_ARG, FileView::Show)
        } else if arg == HISTORY_ARG {
            (HISTORY_ARG, FileView::History)
        } else {
            continue;
        };
        let path = args
            .next()
            .filter(|p| !p.as_ref().is_empty())
            .ok_or(LaunchArgError::MissingPath(flag))?;
        return Ok(LaunchRequest::File {
            view,
            path: absolute(Path::new(path.as_ref()), cwd),
        });
    }
    Ok(LaunchRequest::Window)
}

/// `path` made absolute against `cwd`, with `.` and `..` resolved by name.
fn absolute(path: &Path, cwd: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    let mut out = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OutsideFolder {
    #[error("{} is not in your SyncSphere folder ({}).", .path.display(), .folder.display())]
    Outside { path: PathBuf, folder: PathBuf },
    #[error("{} is not a name SyncSphere can sync.", .0.display())]
    NotUnicode(PathBuf),
}

/// `path` as the synced folder names it (`/`-separated, relative), `None` for the folder
/// itself. Matches by name first, then with symlinks resolved on both sides (the app may
/// have been given `~/Sync` while the folder is remembered through a link, or the reverse).
pub(crate) fn synced_path(folder: &Path, path: &Path) -> Result<Option<String>, OutsideFolder> {
    let relative = path
        .strip_prefix(folder)
        .map(Path::to_path_buf)
        .or_else(|_| {
            let real_folder = std::fs::canonicalize(folder).ok();
            let real_path = std::fs::canonicalize(path).ok();
            match (real_folder, real_path) {
                (Some(f), Some(p)) => p.strip_prefix(&f).map(Path::to_path_buf).ok(),
                _ => None,
            }
            .ok_or_else(|| OutsideFolder::Outside {
                path: path.to_path_buf(),
                folder: folder.to_path_buf(),
            })
        })?;
    let mut parts = Vec::new();
    for component in relative.components() {
        let name = component
            .as_os_str()
            .to_str()
            .ok_or_else(|| OutsideFolder::NotUnicode(path.to_path_buf()))?;
        parts.push(name);
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn check(args: &[&str], expected: Result<LaunchRequest, LaunchArgError>) {
        assert_eq!(parse(args, Path::new("/home/ada")), expected, "{args:?}");
    }

    fn file(view: FileView, path: &str) -> Result<LaunchRequest, LaunchArgError> {
        Ok(LaunchRequest::File {
            view,
            path: PathBuf::from(path),
        })
    }

    #[test]
    fn launch_arguments() {
        check(&[], Ok(LaunchRequest::Window));
        check(&["--hidden"], Ok(LaunchRequest::Window));
        check(
            &["--show", "/home/ada/SyncSphere/a b.txt"],
            file(FileView::Show, "/home/ada/SyncSphere/a b.txt"),
        );
        check(
            &["--hidden", "--history", "SyncSphere/./x/../report.txt"],
            file(FileView::History, "/home/ada/SyncSphere/report.txt"),
        );
        // The first request wins; unknown arguments are skipped.
        check(
            &["--gtk-debug", "--history", "/s/a", "--show", "/s/b"],
            file(FileView::History, "/s/a"),
        );
        check(&["--show"], Err(LaunchArgError::MissingPath("--show")));
        check(
            &["--history", ""],
            Err(LaunchArgError::MissingPath("--history")),
        );
    }

    #[test]
    fn paths_inside_the_synced_folder() {
        let folder = Path::new("/home/ada/SyncSphere");
        let inside = |p: &str| synced_path(folder, Path::new(p));
        assert_eq!(
            inside("/home/ada/SyncSphere/docs/a.txt"),
            Ok(Some("docs/a.txt".to_owned()))
        );
        assert_eq!(inside("/home/ada/SyncSphere"), Ok(None));
        assert!(matches!(
            inside("/home/ada/SyncSphereX/a.txt"),
            Err(OutsideFolder::Outside { .. })
        ));
        assert!(matches!(
            inside("/home/ada/notes.txt"),
            Err(OutsideFolder::Outside { .. })
        ));
    }

    #[test]
    fn a_folder_reached_through_a_symlink_still_matches() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir_all(real.join("d")).unwrap();
        std::fs::write(real.join("d/f.txt"), b"x").unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(
            synced_path(&real, &link.join("d/f.txt")),
            Ok(Some("d/f.txt".to_owned()))
        );
        assert_eq!(
            synced_path(&link, &real.join("d/f.txt")),
            Ok(Some("d/f.txt".to_owned()))
        );
    }
}
