//! The synced folder in the user's file manager (Linux and other freedesktop systems), written
//! when sync starts and removed on sign-out:
//! - a GTK sidebar bookmark (`$XDG_CONFIG_HOME/gtk-3.0/bookmarks`, read by Nautilus, Nemo,
//!   Caja, Thunar and the GTK file chooser), labelled [`BOOKMARK_LABEL`];
//! - Dolphin actions (`$XDG_DATA_HOME/kio/servicemenus/syncsphere.desktop`) and Nautilus
//!   scripts (`$XDG_DATA_HOME/nautilus/scripts/`): "Version history" and "Show in SyncSphere"
//!   launch the app with `--history`/`--show` and the file, which the running app then shows
//!   ([`crate::launch`]);
//! - the Nautilus emblem extension (`$XDG_DATA_HOME/nautilus-python/extensions/`, the packaged
//!   `packaging/nautilus/syncsphere_emblems.py`), which asks [`crate::emblems`] for each
//!   file's sync state (nautilus-python loads it when Nautilus next starts).
//!
//! Writing is idempotent (a file already as wanted is left alone) and atomic (temporary file,
//! then rename). **Invariant:** the user's other bookmark lines are kept byte for byte; only
//! lines labelled [`BOOKMARK_LABEL`] are ours.
//! **Boundary:** plain files, no Tauri — unit-tested against temporary directories.
//! Not done: emblems in Dolphin (a C++ `KOverlayIconPlugin`) and on Windows/macOS (signed
//! shell extensions); see README.

use std::ffi::OsString;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::autostart::exec_quoted;
use crate::launch::{HISTORY_ARG, SHOW_ARG};
use crate::shell::file_uri;

/// Whether this system gets the integration (freedesktop file managers).
pub(crate) const AVAILABLE: bool = cfg!(all(unix, not(target_os = "macos")));

/// The label of our bookmark line; lines with another label are the user's.
const BOOKMARK_LABEL: &str = "SyncSphere";
const SERVICE_MENU: &str = "syncsphere.desktop";
/// Nautilus lists scripts by file name, under Scripts.
const SCRIPT_HISTORY: &str = "SyncSphere - Version history";
const SCRIPT_SHOW: &str = "SyncSphere - Show in SyncSphere";
const NAUTILUS_EXTENSION: &str = "syncsphere_emblems.py";
/// The extension as packaged; written as is, so the app and the extension always match.
const NAUTILUS_EXTENSION_SOURCE: &str =
    include_str!("../../packaging/nautilus/syncsphere_emblems.py");

/// Where the files go: `$XDG_CONFIG_HOME` and `$XDG_DATA_HOME` (or their defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Places {
    config_home: PathBuf,
    data_home: PathBuf,
}

impl Places {
    /// From this process's environment; `None` without a home directory.
    pub(crate) fn from_env() -> Option<Self> {
        Self::from_vars(
            dirs::home_dir().as_deref(),
            std::env::var_os("XDG_CONFIG_HOME"),
            std::env::var_os("XDG_DATA_HOME"),
        )
    }

    /// The XDG Base Directory rules: a variable counts only when set to an absolute path.
    fn from_vars(
        home: Option<&Path>,
        config_home: Option<OsString>,
        data_home: Option<OsString>,
    ) -> Option<Self> {
        let pick = |var: Option<OsString>, default: &[&str]| {
            var.map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .or_else(|| home.map(|h| default.iter().fold(h.to_path_buf(), |p, s| p.join(s))))
        };
        Some(Places {
            config_home: pick(config_home, &[".config"])?,
            data_home: pick(data_home, &[".local", "share"])?,
        })
    }

    fn bookmarks(&self) -> PathBuf {
        self.config_home.join("gtk-3.0").join("bookmarks")
    }

    fn service_menu(&self) -> PathBuf {
        self.data_home
            .join("kio")
            .join("servicemenus")
            .join(SERVICE_MENU)
    }

    fn nautilus_extension(&self) -> PathBuf {
        self.data_home
            .join("nautilus-python")
            .join("extensions")
            .join(NAUTILUS_EXTENSION)
    }

    fn scripts(&self) -> [PathBuf; 2] {
        let dir = self.data_home.join("nautilus").join("scripts");
        [dir.join(SCRIPT_HISTORY), dir.join(SCRIPT_SHOW)]
    }
}

/// Puts `folder` in the sidebar and the actions (launching `exe`) in the file managers.
pub(crate) fn install(places: &Places, folder: &Path, exe: &Path) -> anyhow::Result<()> {
    let bookmarks = places.bookmarks();
    let current = read_or_empty(&bookmarks)?;
    let line = format!("{} {BOOKMARK_LABEL}", file_uri(folder));
    let wanted = with_bookmark(&current, Some(line.as_bytes()));
    write_if_changed(&bookmarks, &wanted, false)?;
    write_if_changed(&places.service_menu(), service_menu(exe).as_bytes(), true)?;
    let [history, show] = places.scripts();
    write_if_changed(&history, nautilus_script(exe, HISTORY_ARG).as_bytes(), true)?;
    write_if_changed(&show, nautilus_script(exe, SHOW_ARG).as_bytes(), true)?;
    write_if_changed(
        &places.nautilus_extension(),
        NAUTILUS_EXTENSION_SOURCE.as_bytes(),
        false,
    )?;
    Ok(())
}

/// Takes out everything [`install`] put in; what is already gone is fine.
pub(crate) fn remove(places: &Places) -> anyhow::Result<()> {
    let bookmarks = places.bookmarks();
    let current = read_or_empty(&bookmarks)?;
    let wanted = with_bookmark(&current, None);
    if wanted != current {
        write_if_changed(&bookmarks, &wanted, false)?;
    }
    let [history, show] = places.scripts();
    for path in [
        places.service_menu(),
        history,
        show,
        places.nautilus_extension(),
    ] {
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() != ErrorKind::NotFound => {
                return Err(err).with_context(|| format!("removing {}", path.display()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Sync of `folder` started: make sure the file managers know it. Failures are logged, never
/// fatal — sync works without the sidebar entry.
pub(crate) fn on_sync_started(folder: &Path) {
    if !AVAILABLE {
        return;
    }
    let Some(places) = Places::from_env() else {
        tracing::warn!("no home folder: not adding the folder to the file manager");
        return;
    };
    let installed = std::env::current_exe()
        .context("finding the app's own program file")
        .and_then(|exe| install(&places, folder, &exe));
    match installed {
        Ok(()) => tracing::debug!(folder = %folder.display(), "file manager integration in place"),
        Err(err) => tracing::warn!("could not add the folder to the file manager: {err:#}"),
    }
}

/// Signed out: take the bookmark and the actions away again (logged, never fatal).
pub(crate) fn on_sign_out() {
    if !AVAILABLE {
        return;
    }
    if let Some(places) = Places::from_env()
        && let Err(err) = remove(&places)
    {
        tracing::warn!("could not remove the file manager integration: {err:#}");
    }
}

/// `bookmarks` with our line (labelled [`BOOKMARK_LABEL`]) replaced by `ours`, or dropped when
/// `None`. Our line keeps its place; a new one goes last. Every other byte is kept.
fn with_bookmark(bookmarks: &[u8], ours: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(bookmarks.len() + 64);
    let mut placed = false;
    for line in bookmarks.split_inclusive(|&b| b == b'\n') {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        if !is_ours(text) {
            out.extend_from_slice(line);
            continue;
        }
        if let Some(ours) = ours.filter(|_| !placed) {
            out.extend_from_slice(ours);
            out.push(b'\n');
            placed = true;
        }
    }
    if let Some(ours) = ours.filter(|_| !placed) {
        if !out.is_empty() && !out.ends_with(b"\n") {
            out.push(b'\n');
        }
        out.extend_from_slice(ours);
        out.push(b'\n');
    }
    out
}

/// A bookmark line is `URI[ LABEL]`; ours carries our label.
fn is_ours(line: &[u8]) -> bool {
    line.iter()
        .position(|&b| b == b' ')
        .is_some_and(|space| &line[space + 1..] == BOOKMARK_LABEL.as_bytes())
}

fn service_menu(exe: &Path) -> String {
    let exe = exec_quoted(exe);
    format!(
        "[Desktop Entry]\n\
         # Written by the SyncSphere app; removed when you sign out of it.\n\
         Type=Service\n\
         X-KDE-ServiceTypes=KonqPopupMenu/Plugin\n\
         MimeType=all/allfiles;\n\
         X-KDE-Protocols=file\n\
         X-KDE-Submenu=SyncSphere\n\
         Actions=history;show;\n\
         \n\
         [Desktop Action history]\n\
         Name=Version history\n\
         Icon=syncsphere-desktop\n\
         Exec={exe} {HISTORY_ARG} %f\n\
         \n\
         [Desktop Action show]\n\
         Name=Show in SyncSphere\n\
         Icon=syncsphere-desktop\n\
         Exec={exe} {SHOW_ARG} %f\n"
    )
}

/// A Nautilus script: Nautilus passes the selection in `NAUTILUS_SCRIPT_SELECTED_FILE_PATHS`
/// (one absolute path a line, local files only) and as arguments relative to the folder shown.
fn nautilus_script(exe: &Path, arg: &str) -> String {
    format!(
        "#!/bin/sh\n\
         # Written by the SyncSphere app; removed when you sign out of it.\n\
         file=$(printf '%s\\n' \"$NAUTILUS_SCRIPT_SELECTED_FILE_PATHS\" | head -n 1)\n\
         [ -n \"$file\" ] || file=$1\n\
         [ -n \"$file\" ] || exit 0\n\
         exec {} {arg} \"$file\"\n",
        sh_quoted(exe)
    )
}

/// `path` in single quotes for `sh`.
fn sh_quoted(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}

fn read_or_empty(path: &Path) -> anyhow::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes `contents` unless the file already holds exactly that (and, when `executable`, has
/// the executable bit: Dolphin runs local service menus and Nautilus scripts only then).
fn write_if_changed(path: &Path, contents: &[u8], executable: bool) -> anyhow::Result<()> {
    let same = std::fs::read(path).is_ok_and(|current| current == contents);
    if same && (!executable || is_executable(path)) {
        return Ok(());
    }
    let dir = path
        .parent()
        .with_context(|| format!("{} has no folder", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".syncsphere-tmp");
    let tmp = dir.join(tmp_name);
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    if executable {
        set_executable(&tmp).with_context(|| format!("making {} executable", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

#[cfg(unix)]
fn set_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn is_executable(_: &Path) -> bool {
    true
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn places(home: &Path) -> Places {
        Places::from_vars(Some(home), None, None).unwrap()
    }

    #[test]
    fn xdg_variables_count_only_when_absolute() {
        let home = Path::new("/home/ada");
        let got = Places::from_vars(Some(home), Some("/cfg".into()), Some("rel".into())).unwrap();
        assert_eq!(got.bookmarks(), PathBuf::from("/cfg/gtk-3.0/bookmarks"));
        assert_eq!(
            got.service_menu(),
            PathBuf::from("/home/ada/.local/share/kio/servicemenus/syncsphere.desktop")
        );
        assert_eq!(Places::from_vars(None, None, Some("/d".into())), None);
        let data = Places::from_vars(Some(home), None, Some("/data".into())).unwrap();
        assert_eq!(
            data.nautilus_extension(),
            PathBuf::from("/data/nautilus-python/extensions/syncsphere_emblems.py")
        );
    }

    fn check_bookmarks(before: &str, ours: Option<&str>, after: &str) {
        let got = with_bookmark(before.as_bytes(), ours.map(str::as_bytes));
        assert_eq!(
            String::from_utf8(got).unwrap(),
            after,
            "{before:?} with {ours:?}"
        );
    }

    #[test]
    fn bookmark_lines() {
        let ours = Some("file:///s/Sync SyncSphere");
        check_bookmarks("", ours, "file:///s/Sync SyncSphere\n");
        // No trailing newline in the user's file: theirs is kept, ours goes on its own line.
        check_bookmarks(
            "file:///home/ada/Music",
            ours,
            "file:///home/ada/Music\nfile:///s/Sync SyncSphere\n",
        );
        // A moved folder replaces our line in place; a user line for the same folder stays.
        check_bookmarks(
            "file:///a A\nfile:///old SyncSphere\nfile:///s/Sync\n",
            ours,
            "file:///a A\nfile:///s/Sync SyncSphere\nfile:///s/Sync\n",
        );
        check_bookmarks(
            "file:///a A\nfile:///s/Sync SyncSphere\nsftp://h/x  odd  spacing \n",
            None,
            "file:///a A\nsftp://h/x  odd  spacing \n",
        );
        check_bookmarks(
            "file:///x SyncSphere\r\nfile:///y SyncSphere\n",
            None,
            "file:///x SyncSphere\r\n",
        );
    }

    #[test]
    fn install_is_idempotent_keeps_other_bookmarks_and_remove_undoes_it() {
        let home = tempfile::tempdir().unwrap();
        let places = places(home.path());
        let gtk = home.path().join(".config/gtk-3.0");
        std::fs::create_dir_all(&gtk).unwrap();
        let theirs = "file:///home/ada/Documents Documents\n\nfile:///home/ada/M%C3%BCsik\n";
        std::fs::write(gtk.join("bookmarks"), theirs).unwrap();
        let folder = Path::new("/home/ada/Sync Sphere");
        let exe = Path::new("/usr/bin/syncsphere-desktop");

        install(&places, folder, exe).unwrap();
        install(&places, folder, exe).unwrap();
        let bookmarks = std::fs::read_to_string(gtk.join("bookmarks")).unwrap();
        assert_eq!(
            bookmarks,
            format!("{theirs}file:///home/ada/Sync%20Sphere SyncSphere\n")
        );
        let menu = std::fs::read_to_string(places.service_menu()).unwrap();
        assert!(menu.contains("X-KDE-ServiceTypes=KonqPopupMenu/Plugin\n"));
        assert!(menu.contains("\nExec=\"/usr/bin/syncsphere-desktop\" --history %f\n"));
        assert!(menu.contains("\nExec=\"/usr/bin/syncsphere-desktop\" --show %f\n"));
        assert!(is_executable(&places.service_menu()));
        let [history, show] = places.scripts();
        let script = std::fs::read_to_string(&history).unwrap();
        assert!(script.contains("exec '/usr/bin/syncsphere-desktop' --history \"$file\"\n"));
        assert!(is_executable(&history) && is_executable(&show));
        let extension = home
            .path()
            .join(".local/share/nautilus-python/extensions/syncsphere_emblems.py");
        assert_eq!(
            std::fs::read_to_string(&extension).unwrap(),
            std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/packaging/nautilus/syncsphere_emblems.py"
            ))
            .unwrap()
        );

        remove(&places).unwrap();
        assert_eq!(
            std::fs::read_to_string(gtk.join("bookmarks")).unwrap(),
            theirs
        );
        assert!(!places.service_menu().exists() && !history.exists() && !show.exists());
        assert!(!extension.exists());
        remove(&places).unwrap();
    }

    #[test]
    fn nautilus_script_opens_the_first_selected_file() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script");
        let fake_app = dir.path().join("it's app");
        let out = dir.path().join("args");
        std::fs::write(
            &fake_app,
            format!("#!/bin/sh\nprintf '%s|' \"$@\" > '{}'\n", out.display()),
        )
        .unwrap();
        set_executable(&fake_app).unwrap();
        std::fs::write(&script, nautilus_script(&fake_app, HISTORY_ARG)).unwrap();
        let run = |selected: &str, args: &[&str]| {
            let _ = std::fs::remove_file(&out);
            let status = std::process::Command::new("sh")
                .arg(&script)
                .args(args)
                .env("NAUTILUS_SCRIPT_SELECTED_FILE_PATHS", selected)
                .status()
                .unwrap();
            assert!(status.success());
            std::fs::read_to_string(&out).unwrap_or_default()
        };
        assert_eq!(
            run("/s/a b.txt\n/s/c.txt\n", &["a b.txt", "c.txt"]),
            "--history|/s/a b.txt|"
        );
        assert_eq!(run("", &["rel.txt"]), "--history|rel.txt|");
        assert_eq!(run("", &[]), "");
    }
}
