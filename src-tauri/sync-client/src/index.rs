//! The device's local index in SQLite: the synced tree, the remote tree replayed from the
//! journal, the journal cursor, and settings. It is what lets a restarted client resume.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};
use syncsphere_protocol::{ChangeEvent, ChangeKind, FileMeta};
use syncsphere_sync_core::{RemoteFile, RemoteTree, SyncedFile, SyncedTree};

use crate::SyncError;

/// Records a file's remote state unless a newer revision is already known (replays are no-ops).
const UPSERT_REMOTE: &str =
    "INSERT INTO remote (file_id, path, rev, sha256, deleted) VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (file_id) DO UPDATE SET path = ?2, rev = ?3, sha256 = ?4, deleted = ?5
     WHERE remote.rev < ?3";

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Removes the index at `path` with its `-wal` and `-shm` files (no connection may be open:
/// callers hold the engine lock). The WAL goes first: a WAL left beside a new, empty database of
/// the same name would be replayed into it; a database left without its WAL is an older, still
/// consistent state of the same account, and the removal is repeated at the next sign-in.
pub(crate) fn remove_index(path: &Path) -> Result<(), SyncError> {
    let os = path.as_os_str().to_owned();
    let with = |suffix: &str| {
        let mut p = os.clone();
        p.push(suffix);
        std::path::PathBuf::from(p)
    };
    for file in [with("-wal"), with("-shm"), path.to_path_buf()] {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SyncError::Io(format!("removing {}", file.display()), e)),
        }
    }
    Ok(())
}

#[derive(Clone)]
pub(crate) struct Index {
    pool: SqlitePool,
}

fn db(e: sqlx::Error) -> SyncError {
    SyncError::Index(e.to_string())
}

impl Index {
    pub(crate) async fn open(path: &Path) -> Result<Self, SyncError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(db)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(db)?;
        MIGRATIONS
            .run(&pool)
            .await
            .map_err(|e| SyncError::Index(e.to_string()))?;
        Ok(Index { pool })
    }

    pub(crate) async fn setting(&self, key: &str) -> Result<Option<String>, SyncError> {
        sqlx::query("SELECT value FROM settings WHERE key = ?1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)
            .map(|r| r.map(|r| r.get("value")))
    }

    pub(crate) async fn set_setting(&self, key: &str, value: &str) -> Result<(), SyncError> {
        sqlx::query("INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    pub(crate) async fn cursor(&self) -> Result<i64, SyncError> {
        Ok(self
            .setting("cursor")
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Forgets the synced tree (a different folder, or a different account): every path is
    /// then compared afresh, and differences become conflicted copies, never losses.
    pub(crate) async fn reset_synced(&self) -> Result<(), SyncError> {
        sqlx::query("DELETE FROM synced")
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    pub(crate) async fn synced(&self) -> Result<SyncedTree, SyncError> {
        let rows = sqlx::query("SELECT path, file_id, rev, sha256 FROM synced")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get("path"),
                    SyncedFile {
                        file_id: r.get("file_id"),
                        rev: r.get("rev"),
                        sha256: r.get("sha256"),
                    },
                )
            })
            .collect())
    }

    pub(crate) async fn set_synced(
        &self,
        path: &str,
        entry: Option<&SyncedFile>,
    ) -> Result<(), SyncError> {
        match entry {
            Some(s) => sqlx::query(
                "INSERT INTO synced (path, file_id, rev, sha256) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (path) DO UPDATE SET file_id = ?2, rev = ?3, sha256 = ?4",
            )
            .bind(path)
            .bind(&s.file_id)
            .bind(s.rev)
            .bind(&s.sha256),
            None => sqlx::query("DELETE FROM synced WHERE path = ?1").bind(path),
        }
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    pub(crate) async fn remote(&self) -> Result<RemoteTree, SyncError> {
        let rows = sqlx::query("SELECT path, file_id, rev, sha256 FROM remote WHERE deleted = 0")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get("path"),
                    RemoteFile {
                        file_id: r.get("file_id"),
                        rev: r.get("rev"),
                        sha256: r.get("sha256"),
                    },
                )
            })
            .collect())
    }

    /// Records what the server said a file is now (after one of this device's own commits or a
    /// journal entry). Older revisions than the one known are ignored, so replays are harmless.
    pub(crate) async fn record_remote(&self, meta: &FileMeta) -> Result<(), SyncError> {
        sqlx::query(UPSERT_REMOTE)
            .bind(&meta.file_id)
            .bind(&meta.path)
            .bind(meta.rev)
            .bind(&meta.sha256)
            .bind(i64::from(meta.deleted))
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Applies a page of journal entries and advances the cursor, atomically.
    pub(crate) async fn apply_changes(
        &self,
        changes: &[ChangeEvent],
        cursor: i64,
    ) -> Result<(), SyncError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        for c in changes {
            sqlx::query(UPSERT_REMOTE)
                .bind(&c.file_id)
                .bind(&c.path)
                .bind(c.rev)
                .bind(&c.sha256)
                .bind(i64::from(c.event == ChangeKind::Deleted))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        sqlx::query("INSERT INTO settings (key, value) VALUES ('cursor', ?1) ON CONFLICT (key) DO UPDATE SET value = ?1")
            .bind(cursor.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }
}
