//! Reading and writing the folder's `.syncsphereignore` (gitignore syntax) for a settings
//! screen. The running sync re-reads it when it changes; the file itself syncs, so every device
//! of the account applies the same rules (see `scan`).

use std::io::Write;
use std::path::Path;

use crate::SyncError;
use crate::scan::IGNORE_FILE;

/// The ignore rules of `folder` as text (empty when there is no ignore file).
pub fn read_ignore_rules(folder: &Path) -> Result<String, SyncError> {
    let path = folder.join(IGNORE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(SyncError::Io(format!("reading {}", path.display()), e)),
    }
}

/// Replaces the ignore rules of `folder` after checking that every line parses; a rule that
/// does not is refused with its line number, and nothing is written.
pub fn write_ignore_rules(folder: &Path, text: &str) -> Result<(), SyncError> {
    let mut builder = ignore::gitignore::GitignoreBuilder::new(folder);
    for (n, line) in text.lines().enumerate() {
        if let Err(e) = builder.add_line(None, line) {
            return Err(SyncError::Config(format!(
                "ignore rule on line {} is not understood: {e}",
                n + 1
            )));
        }
    }
    let path = folder.join(IGNORE_FILE);
    let tmp = folder.join(format!("{IGNORE_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| SyncError::Io(format!("writing {}", path.display()), e))?;
    tracing::info!(folder = %folder.display(), "ignore rules saved");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_round_trip_and_bad_rules_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_ignore_rules(dir.path()).unwrap(), "");
        write_ignore_rules(dir.path(), "*.log\nbuild/\n").unwrap();
        assert_eq!(read_ignore_rules(dir.path()).unwrap(), "*.log\nbuild/\n");
        let err = write_ignore_rules(dir.path(), "ok\n[z-a]\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert_eq!(read_ignore_rules(dir.path()).unwrap(), "*.log\nbuild/\n");
    }
}
