//! Recomputes `files.path_key` when the key function changes: keys were `to_lowercase()` until
//! 2026-12-02 and are [`syncsphere_protocol::path_key`] (Unicode case folding) since. SQL
//! cannot fold, so the files service does it once per database, the first time a store needs
//! the keys, and records it in `upgrades`.
//!
//! **Invariants**
//! - Nothing is deleted or renamed: only `path_key` and `key_twin` change.
//! - Live files whose names only the new key equates (`οδος.txt` and `οδοσ.txt`) all stay. The
//!   unique index is on `(user_id, path_key, key_twin)`: such a file gets `key_twin` 1, 2…,
//!   every name written since gets 0, so the index still refuses every new clash, and the
//!   store's checks refuse new names at a key any live file holds. `check` reports the twins.
//! - Page by page (by `file_id`), one transaction per page; a user's rows are re-keyed under
//!   the lock of the user's journal head, which a commit on PostgreSQL takes first, so two
//!   servers re-keying at once, or a server committing meanwhile, cannot race. A row is
//!   re-keyed only if its key is still the stale one, so running again changes nothing.
//!
//! Servers of an older version (which write lowercased keys) must not run against the database
//! once one of this version has re-keyed it.

use sqlx::Row;
use syncsphere_db::Db;
use syncsphere_protocol::path_key;

use crate::{FilesError, now_ms};

/// This re-keying's name in `upgrades`.
const FOLDED_KEYS: &str = "path_key_case_folding";
/// Rows read per transaction.
const PAGE: i64 = 1000;

/// What a re-keying changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RekeyReport {
    /// Rows whose key was recomputed.
    pub(crate) rekeyed: u64,
    /// Live files that now share a key with another live file (kept, with `key_twin` > 0).
    pub(crate) twins: u64,
}

/// Re-keys the database unless that was done already.
pub(crate) async fn rekey(db: &Db) -> Result<RekeyReport, FilesError> {
    rekey_in_pages(db, PAGE).await
}

async fn rekey_in_pages(db: &Db, page: i64) -> Result<RekeyReport, FilesError> {
    let done = sqlx::query("SELECT done_ms FROM upgrades WHERE name = $1")
        .bind(FOLDED_KEYS)
        .fetch_optional(&db.pool)
        .await?;
    let mut report = RekeyReport::default();
    if done.is_some() {
        return Ok(report);
    }
    let mut after = String::new();
    loop {
        let rows = sqlx::query(
            "SELECT file_id, user_id, path, path_key, deleted FROM files
             WHERE file_id > $1 ORDER BY file_id LIMIT $2",
        )
        .bind(&after)
        .bind(page)
        .fetch_all(&db.pool)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.try_get("file_id")?;
        let mut stale = Vec::new();
        for row in &rows {
            let path: String = row.try_get("path")?;
            let old: String = row.try_get("path_key")?;
            let new = path_key(&path);
            if new != old {
                stale.push(Stale {
                    user_id: row.try_get("user_id")?,
                    file_id: row.try_get("file_id")?,
                    path,
                    old,
                    new,
                    live: row.try_get::<i64, _>("deleted")? == 0,
                });
            }
        }
        if !stale.is_empty() {
            rekey_page(db, &mut stale, &mut report).await?;
        }
    }
    sqlx::query(
        "INSERT INTO upgrades (name, done_ms) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(FOLDED_KEYS)
    .bind(now_ms())
    .execute(&db.pool)
    .await?;
    Ok(report)
}

/// A row whose stored key is not its path's key.
struct Stale {
    user_id: String,
    file_id: String,
    path: String,
    old: String,
    new: String,
    live: bool,
}

async fn rekey_page(
    db: &Db,
    stale: &mut [Stale],
    report: &mut RekeyReport,
) -> Result<(), FilesError> {
    // Users in one order, so that two servers re-keying at once take their locks alike.
    stale.sort_by(|a, b| (&a.user_id, &a.file_id).cmp(&(&b.user_id, &b.file_id)));
    let mut tx = db.pool.begin().await?;
    let mut locked: Option<&str> = None;
    for row in stale.iter() {
        if locked != Some(row.user_id.as_str()) {
            sqlx::query("UPDATE journal_heads SET last_seq = last_seq WHERE user_id = $1")
                .bind(&row.user_id)
                .execute(&mut *tx)
                .await?;
            locked = Some(&row.user_id);
        }
        // A live file goes after the live files already at its new key, if any.
        let twin: i64 = if row.live {
            sqlx::query(
                "SELECT CAST(COALESCE(MAX(key_twin) + 1, 0) AS BIGINT) AS twin FROM files
                 WHERE user_id = $1 AND path_key = $2 AND deleted = 0",
            )
            .bind(&row.user_id)
            .bind(&row.new)
            .fetch_one(&mut *tx)
            .await?
            .try_get("twin")?
        } else {
            0
        };
        let changed = sqlx::query(
            "UPDATE files SET path_key = $1, key_twin = $2 WHERE file_id = $3 AND path_key = $4",
        )
        .bind(&row.new)
        .bind(twin)
        .bind(&row.file_id)
        .bind(&row.old)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            continue;
        }
        report.rekeyed += 1;
        if twin > 0 {
            report.twins += 1;
            tracing::warn!(
                user = %row.user_id,
                file_id = %row.file_id,
                path = %row.path,
                "a live file now shares its name with another one on case-insensitive disks; both are kept"
            );
        }
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewContent;
    use crate::{FilesError, MetadataStore};
    use syncsphere_protocol::Rev;

    /// The migrations before keys were case-folded.
    const BEFORE: &str = "20261202000006";

    /// A database at the schema before case-folded keys, holding what that server wrote:
    /// keys lowercased, and so pairs that are one name now. (`to_lowercase` turns Σ into ς
    /// at the end of a word only: `ΟΔΟΣ.txt` → `οδοσ.txt` but `ΟΔΟΣ/a` → `οδος/a`.)
    async fn old_database(url: &str, migrations: &str) {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../db/migrations")
            .join(migrations);
        for entry in std::fs::read_dir(source).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            if name.as_str() < BEFORE {
                std::fs::copy(entry.path(), dir.path().join(&name)).unwrap();
            }
        }
        let old = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        old.run(&pool).await.unwrap();
        for (user, id, path, deleted) in [
            ("u1", "f1", "οδος.txt", 0),
            ("u1", "f2", "οδοσ.txt", 0),
            ("u1", "f3", "Straße.txt", 0),
            ("u1", "f4", "STRASSE.txt", 0),
            ("u1", "f5", "ΟΔΟΣ/a.txt", 0),
            ("u1", "f6", "docs/readme.md", 0),
            ("u1", "f7", "τελος.txt", 1),
            ("u1", "f8", "ΤΕΛΟΣ.txt", 0),
            ("u2", "f9", "οδος.txt", 0),
        ] {
            sqlx::query(
                "INSERT INTO files (file_id, user_id, path, path_key, rev, size, sha256, deleted, modified_ms)
                 VALUES ($1, $2, $3, $4, 1, 1, '00', $5, 0)",
            )
            .bind(id)
            .bind(user)
            .bind(path)
            .bind(path.to_lowercase())
            .bind(deleted)
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO revisions (file_id, rev, path, size, sha256, deleted, modified_ms)
                 VALUES ($1, 1, $2, 1, '00', 0, 0)",
            )
            .bind(id)
            .bind(path)
            .execute(&pool)
            .await
            .unwrap();
        }
        for (user, seq) in [("u1", 9), ("u2", 1)] {
            sqlx::query("INSERT INTO journal_heads (user_id, last_seq) VALUES ($1, $2)")
                .bind(user)
                .bind(seq)
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
    }

    fn content(path: &str, parent_rev: Option<i64>) -> NewContent<'_> {
        NewContent {
            path,
            parent_rev: parent_rev.map(Rev),
            size: 1,
            sha256: "00",
            device: None,
            inline: None,
            manifest: None,
        }
    }

    /// An old database is re-keyed once, page by page: every key is its path's key, the pairs
    /// that now share a key both survive (the second as a twin), the store refuses new names at
    /// their key, updates each by its exact name, and `check` reports them.
    async fn rekeys_an_old_database(url: &str, migrations: &str) {
        old_database(url, migrations).await;
        let db = Db::connect(url).await.unwrap();
        let report = rekey_in_pages(&db, 2).await.unwrap();
        assert_eq!(
            report,
            RekeyReport {
                rekeyed: 5,
                twins: 2
            }
        );
        let store = MetadataStore::new(db.clone());
        let rows =
            sqlx::query("SELECT file_id, path, path_key, key_twin FROM files ORDER BY file_id")
                .fetch_all(&db.pool)
                .await
                .unwrap();
        let mut twins = Vec::new();
        for row in &rows {
            let (id, path, key): (String, String, String) =
                (row.get("file_id"), row.get("path"), row.get("path_key"));
            assert_eq!(key, path_key(&path), "{id}");
            if row.get::<i64, _>("key_twin") > 0 {
                twins.push(id);
            }
        }
        assert_eq!(rows.len(), 9, "nothing deleted");
        // Of each pair, the one whose key changed is the twin.
        assert_eq!(twins, ["f1", "f3"]);
        let done = sqlx::query("SELECT name FROM upgrades")
            .fetch_all(&db.pool)
            .await
            .unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(
            rekey(&db).await.unwrap(),
            RekeyReport::default(),
            "done once"
        );

        // Both of a pair are listed and updated by their exact names.
        let listed: Vec<String> = store
            .list(&"u1".into(), None, 5000)
            .await
            .unwrap()
            .files
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(listed.len(), 7, "{listed:?}");
        for (path, id) in [
            ("οδοσ.txt", "f2"),
            ("οδος.txt", "f1"),
            ("STRASSE.txt", "f4"),
        ] {
            let (meta, _) = store
                .commit_content(&"u1".into(), content(path, Some(1)))
                .await
                .unwrap();
            assert_eq!((meta.file_id.as_str(), meta.rev), (id, Rev(2)), "{path}");
        }
        // New names at their key, a third spelling, a move there, or a file where the re-keyed
        // folder is: refused.
        for (path, parent) in [
            ("ΟΔΟΣ.txt", None),
            ("ΟΔΟΣ.txt", Some(2)),
            ("strasse.txt", None),
            ("οδοσ", None),
            ("τελος.txt", None),
        ] {
            let r = store
                .commit_content(&"u1".into(), content(path, parent))
                .await;
            assert!(
                matches!(r, Err(FilesError::Conflict { .. })),
                "{path}: {r:?}"
            );
        }
        let r = store
            .move_file(&"u1".into(), &"f6".into(), "ΟΔΟΣ.TXT", Rev(1), None)
            .await;
        assert!(matches!(r, Err(FilesError::Conflict { .. })), "{r:?}");
        // The deleted file's name is taken by a live one: no undelete.
        let r = store
            .restore(&"u1".into(), &"f7".into(), Rev(1), Rev(1), None)
            .await;
        assert!(matches!(r, Err(FilesError::Conflict { .. })), "{r:?}");
        // A twin that moves away takes an ordinary place; the name it left is still taken.
        let (moved, _) = store
            .move_file(&"u1".into(), &"f2".into(), "elsewhere.txt", Rev(2), None)
            .await
            .unwrap();
        assert_eq!(moved.path, "elsewhere.txt");
        let r = store
            .commit_content(&"u1".into(), content("οδοσ.txt", None))
            .await;
        assert!(matches!(r, Err(FilesError::Conflict { .. })), "{r:?}");

        let clashes = store.name_clashes().await.unwrap();
        assert_eq!(clashes.len(), 1, "{clashes:?}");
        assert_eq!(clashes[0].1, "f3");
        assert!(clashes[0].3.contains("one name"), "{}", clashes[0].3);
    }

    /// The store re-keys before its first write: `ΟΔΟΣ.txt` is taken by `οδος.txt`, whose
    /// stored key was `οδος.txt`.
    #[tokio::test]
    async fn the_store_rekeys_before_its_first_write() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("metadata.db").display()
        );
        old_database(&url, "sqlite").await;
        let store = MetadataStore::new(Db::connect(&url).await.unwrap());
        let r = store
            .commit_content(&"u2".into(), content("ΟΔΟΣ.txt", None))
            .await;
        match r {
            Err(FilesError::Conflict { current, .. }) => {
                assert_eq!(current.unwrap().file_id, "f9")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn rekeys_an_old_database_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("metadata.db").display()
        );
        rekeys_an_old_database(&url, "sqlite").await;
    }

    #[tokio::test]
    async fn rekeys_an_old_database_on_postgres() {
        let Some(url) = syncsphere_test_support::postgres_database().await else {
            return;
        };
        rekeys_an_old_database(&url, "postgres").await;
    }
}
