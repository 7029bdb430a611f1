//! One engine per config directory: an exclusive OS lock on `<config dir>/engine.lock`
//! (`flock` on Unix, `LockFileEx` on Windows), held for as long as a sync runs. Two engines on
//! one index would each plan against the synced tree the other wrote and delete from the server
//! what one folder lacks. The OS drops the lock when the process dies, so a crash never leaves
//! a stale one; the file's text only names the holder for the error message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::SyncError;

/// Held while the engine runs; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct EngineLock {
    file: File,
}

pub(crate) fn lock_path(config_dir: &Path) -> PathBuf {
    config_dir.join("engine.lock")
}

impl EngineLock {
    /// Takes the lock of `config_dir` for `holder` (e.g. "syncsphere sync"), or says who has it.
    pub(crate) fn acquire(config_dir: &Path, holder: &str) -> Result<Self, SyncError> {
        std::fs::create_dir_all(config_dir)
            .map_err(|e| SyncError::Io(format!("creating {}", config_dir.display()), e))?;
        let path = lock_path(config_dir);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| SyncError::Io(format!("opening {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let text = text.trim();
                let who = if text.is_empty() {
                    "another SyncSphere client".to_owned()
                } else {
                    text.to_owned()
                };
                return Err(SyncError::InUse(format!(
                    "{who} is already syncing with {}; stop it first (one client per \
                     configuration directory)",
                    config_dir.display()
                )));
            }
            Err(TryLockError::Error(e)) => {
                return Err(SyncError::Io(format!("locking {}", path.display()), e));
            }
        }
        let who = format!(
            "{holder} (process {}, {})",
            std::process::id(),
            std::env::current_exe()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "unknown program".into())
        );
        // Only the name of the holder; the lock itself is the OS's.
        let named = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(who.as_bytes()));
        if let Err(e) = named {
            tracing::debug!(error = %e, "could not name the lock's holder");
        }
        Ok(EngineLock { file })
    }
}

impl Drop for EngineLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_engine_is_refused_with_the_holders_name() {
        let dir = tempfile::tempdir().unwrap();
        let first = EngineLock::acquire(dir.path(), "syncsphere sync").unwrap();
        let err = EngineLock::acquire(dir.path(), "the desktop app").unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, SyncError::InUse(_)), "{err:?}");
        assert!(message.contains("syncsphere sync (process "), "{message}");
        assert!(
            message.contains(&std::process::id().to_string()),
            "{message}"
        );
        drop(first);
        let again = EngineLock::acquire(dir.path(), "the desktop app");
        assert!(again.is_ok(), "released on drop");
    }
}
