//! Files: reading a user's file rows, and the name rules a change is checked against — live
//! paths unique by key, a name is a file or a folder (0018), and the clashes only data from
//! before those rules can hold.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row};
use syncsphere_protocol::Seq;
use syncsphere_protocol::{FileId, Rev, UserId};
use syncsphere_protocol::{FileList, FileMeta};

use super::{MetadataStore, path_key};
use crate::FilesError;

pub(super) const FILE_COLUMNS: &str = "file_id, path, rev, size, sha256, deleted, modified_ms";

/// A text column as one of the protocol's id types.
pub(super) fn text<T: From<String>>(row: &AnyRow, column: &str) -> Result<T, sqlx::Error> {
    row.try_get::<String, _>(column).map(T::from)
}

/// A nullable text column as one of the protocol's id types.
pub(super) fn optional_text<T: From<String>>(
    row: &AnyRow,
    column: &str,
) -> Result<Option<T>, sqlx::Error> {
    Ok(row.try_get::<Option<String>, _>(column)?.map(T::from))
}

/// An integer column as a `Rev` or `Seq`.
pub(super) fn number<T: From<i64>>(row: &AnyRow, column: &str) -> Result<T, sqlx::Error> {
    row.try_get::<i64, _>(column).map(T::from)
}

pub(super) fn file_from_row(row: &AnyRow) -> Result<FileMeta, sqlx::Error> {
    Ok(FileMeta {
        file_id: text(row, "file_id")?,
        path: row.try_get("path")?,
        rev: number(row, "rev")?,
        size: row.try_get("size")?,
        sha256: text(row, "sha256")?,
        deleted: row.try_get::<i64, _>("deleted")? != 0,
        modified_ms: row.try_get("modified_ms")?,
    })
}

pub(super) fn stale(cur: FileMeta, parent_rev: Rev) -> FilesError {
    FilesError::conflict(
        format!(
            "'{}' is at revision {}, not {parent_rev}",
            cur.path, cur.rev
        ),
        Some(cur),
    )
}

/// What a path names among a user's live files (see [`MetadataStore::path_state`]).
pub(super) struct PathState {
    /// The live files at the path's key: one, or none — several only where names that one key
    /// now equates were both live before keys were case-folded (see [`crate::rekey`]).
    pub(super) at: Vec<FileMeta>,
    /// A live file that clashes with a file at the path by the file-or-directory rule.
    pub(super) clash: Option<FileMeta>,
}

impl PathState {
    /// The live file a commit to `path` replaces: the one at its key or, among files that
    /// share the key, the one spelled exactly `path` (a conflict if none is).
    pub(super) fn take_current(&mut self, path: &str) -> Result<Option<FileMeta>, FilesError> {
        if self.at.len() < 2 {
            return Ok(self.at.pop());
        }
        match self.at.iter().position(|f| f.path == path) {
            Some(i) => Ok(Some(self.at.swap_remove(i))),
            None => {
                let names: Vec<&str> = self.at.iter().map(|f| f.path.as_str()).collect();
                Err(FilesError::conflict(
                    format!(
                        "'{path}' names {} files that case-insensitive disks cannot tell apart ({}); use one exact name",
                        names.len(),
                        names.join(", ")
                    ),
                    self.at.first().cloned(),
                ))
            }
        }
    }
}

impl MetadataStore {
    /// A live file other than `file_id` whose name is `path` (by key).
    pub(super) async fn other_live_at(
        tx: &mut AnyConnection,
        user_id: &UserId,
        path: &str,
        file_id: &FileId,
    ) -> Result<Option<FileMeta>, FilesError> {
        let row = sqlx::query(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE user_id = $1 AND path_key = $2 AND deleted = 0
             AND file_id <> $3 LIMIT 1"
        ))
        .bind(user_id.as_str())
        .bind(path_key(path))
        .bind(file_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        Ok(row.as_ref().map(file_from_row).transpose()?)
    }

    pub(super) async fn by_id(
        executor: impl sqlx::Executor<'_, Database = Any>,
        user_id: &UserId,
        file_id: &FileId,
    ) -> Result<Option<FileMeta>, FilesError> {
        let row = sqlx::query(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE user_id = $1 AND file_id = $2"
        ))
        .bind(user_id.as_str())
        .bind(file_id.as_str())
        .fetch_optional(executor)
        .await?;
        Ok(row.as_ref().map(file_from_row).transpose()?)
    }

    /// The rule beside case-insensitive uniqueness: a name is a file or a directory, never both.
    /// `path` may not have a live file at an ancestor (`d` when creating `d/e`) nor live files
    /// below it (`d/e` when creating `d`); `moving` is the file taking the name, which does not
    /// stand in its own way. A clash is a conflict carrying the file in the way.
    pub(super) async fn ensure_file_or_directory(
        tx: &mut AnyConnection,
        user_id: &UserId,
        path: &str,
        moving: Option<&str>,
    ) -> Result<(), FilesError> {
        match Self::path_state(tx, user_id, path, moving, false)
            .await?
            .clash
        {
            Some(other) => Err(Self::clash(path, other)),
            None => Ok(()),
        }
    }

    /// In one query: the live files at `path`'s key (when `with_self`), and a live file that
    /// clashes with a file at `path` by the file-or-directory rule (see
    /// [`Self::ensure_file_or_directory`]).
    pub(super) async fn path_state(
        tx: &mut AnyConnection,
        user_id: &UserId,
        path: &str,
        moving: Option<&str>,
        with_self: bool,
    ) -> Result<PathState, FilesError> {
        let key = path_key(path);
        let ancestors: Vec<&str> = key.match_indices('/').map(|(i, _)| &key[..i]).collect();
        let sql = path_state_sql(with_self, ancestors.len());
        let mut query = sqlx::query(&sql)
            .bind(user_id.as_str())
            .bind(moving.unwrap_or(""))
            .bind(format!("{key}/"))
            .bind(format!("{key}0"));
        if with_self {
            query = query.bind(key.clone());
        }
        for a in &ancestors {
            query = query.bind(*a);
        }
        let mut state = PathState {
            at: Vec::new(),
            clash: None,
        };
        for row in query.fetch_all(&mut *tx).await? {
            let file = file_from_row(&row)?;
            if path_key(&file.path) == key {
                state.at.push(file);
            } else {
                state.clash.get_or_insert(file);
            }
        }
        Ok(state)
    }

    pub(super) fn clash(path: &str, other: FileMeta) -> FilesError {
        let key = path_key(path);
        let message = if path_key(&other.path).len() < key.len() {
            format!("'{}' is a file, so it cannot hold '{path}'", other.path)
        } else {
            format!(
                "'{path}' is a folder (it holds '{}'), so it cannot be a file",
                other.path
            )
        };
        FilesError::conflict(message, Some(other))
    }

    /// The live file `file_id`, which must be at `parent_rev` (else a conflict with its metadata).
    pub(super) async fn live_at_rev(
        tx: &mut AnyConnection,
        user_id: &UserId,
        file_id: &FileId,
        parent_rev: Rev,
    ) -> Result<FileMeta, FilesError> {
        let cur = Self::by_id(&mut *tx, user_id, file_id)
            .await?
            .filter(|m| !m.deleted)
            .ok_or(FilesError::NotFound)?;
        if cur.rev != parent_rev {
            return Err(stale(cur, parent_rev));
        }
        Ok(cur)
    }

    pub async fn get(
        &self,
        user_id: &UserId,
        file_id: &FileId,
    ) -> Result<Option<FileMeta>, FilesError> {
        Self::by_id(&self.db.pool, user_id, file_id).await
    }

    /// Live files that break a name rule, which only data written before the rule can hold:
    /// a live file under another one (before the file-or-folder rule), and live files whose
    /// names one key equates (before keys were case-folded, see [`crate::rekey`]):
    /// (user, file id, revision, what is wrong).
    pub async fn name_clashes(&self) -> Result<Vec<(String, String, i64, String)>, FilesError> {
        self.upgrade_path_keys().await?;
        let rows = sqlx::query(
            "SELECT user_id, file_id, rev, path, path_key FROM files WHERE deleted = 0
             ORDER BY user_id, path_key, key_twin",
        )
        .fetch_all(&self.db.pool)
        .await?;
        let mut live = Vec::with_capacity(rows.len());
        for row in &rows {
            live.push((
                row.try_get::<String, _>("user_id")?,
                row.try_get::<String, _>("file_id")?,
                row.try_get::<i64, _>("rev")?,
                row.try_get::<String, _>("path")?,
                row.try_get::<String, _>("path_key")?,
            ));
        }
        let mut keys: std::collections::HashSet<(&str, &str)> = Default::default();
        for (user, _, _, _, key) in &live {
            keys.insert((user, key));
        }
        let mut clashes = Vec::new();
        // Sorted by user and key: files that share a key are neighbours.
        for pair in live.windows(2) {
            let ((user, _, _, first, key), (u, file_id, rev, path, k)) = (&pair[0], &pair[1]);
            if (user, key) == (u, k) {
                clashes.push((
                    user.clone(),
                    file_id.clone(),
                    *rev,
                    format!(
                        "'{path}' and '{first}' are one name on case-insensitive disks (rename one of them)"
                    ),
                ));
            }
        }
        for (user, file_id, rev, path, key) in &live {
            let above = key
                .match_indices('/')
                .map(|(i, _)| &key[..i])
                .find(|a| keys.contains(&(user.as_str(), *a)));
            if let Some(above) = above {
                clashes.push((
                    user.clone(),
                    file_id.clone(),
                    *rev,
                    format!(
                        "'{path}' is under '{above}', which is a file too (rename one of them)"
                    ),
                ));
            }
        }
        Ok(clashes)
    }

    /// Every live file, with the journal position the listing includes at least.
    /// Up to `limit` live files after the path `after`, in path order; `next` is set when more
    /// follow.
    pub async fn list(
        &self,
        user_id: &UserId,
        after: Option<&str>,
        limit: i64,
    ) -> Result<FileList, FilesError> {
        // Read the cursor first: the listing that follows may include later commits, which a
        // client replaying the journal from this cursor recognises by their revision.
        let cursor = self.head(user_id).await?;
        let rows = sqlx::query(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE user_id = $1 AND deleted = 0 AND path > $2
             ORDER BY path LIMIT $3"
        ))
        .bind(user_id.as_str())
        .bind(after.unwrap_or(""))
        .bind(limit + 1)
        .fetch_all(&self.db.pool)
        .await?;
        let mut files: Vec<FileMeta> = rows.iter().map(file_from_row).collect::<Result<_, _>>()?;
        let next = if files.len() as i64 > limit {
            files.truncate(limit as usize);
            files.last().map(|f| f.path.clone())
        } else {
            None
        };
        Ok(FileList {
            files,
            cursor: Seq(cursor),
            next,
        })
    }
}

/// The query of [`MetadataStore::path_state`]: `$1` user, `$2` a file id to leave out, `$3`/`$4`
/// the range of keys below the path, then (`with_self`) `$5` the path's key, then the
/// `ancestors` keys.
pub(super) fn path_state_sql(with_self: bool, ancestors: usize) -> String {
    let mut sql = String::new();
    if with_self {
        sql.push_str(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE user_id = $1 AND deleted = 0
             AND path_key = $5 UNION ALL "
        ));
    }
    // Keys below `key` are those in [`key/`, `key0`): '0' follows '/' bytewise, and keys
    // compare bytewise (SQLite's BINARY; PostgreSQL's column is COLLATE "C").
    // One indexed lookup per part, not one `OR` of them: SQLite then walked every live file of
    // the user for each commit (a first upload of 100,000 files slowed to a crawl).
    let live = format!(
        "SELECT {FILE_COLUMNS} FROM files WHERE user_id = $1 AND deleted = 0 \
         AND file_id <> $2 AND "
    );
    sql.push_str(&format!(
        "SELECT {FILE_COLUMNS} FROM (SELECT {FILE_COLUMNS} FROM \
         ({live}path_key >= $3 AND path_key < $4"
    ));
    let first_ancestor = if with_self { 6 } else { 5 };
    for i in 0..ancestors {
        sql.push_str(&format!(
            " UNION ALL {live}path_key = ${}",
            i + first_ancestor
        ));
    }
    sql.push_str(") AS parts LIMIT 1) AS clash");
    sql
}

#[cfg(test)]
mod tests {
    use syncsphere_db::Db;

    use super::*;

    /// Data written before the file-or-folder rule (inserted directly here, since the store
    /// refuses it now) is reported by `name_clashes`, per user.
    #[tokio::test]
    async fn reports_files_under_files_from_before_the_rule() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_embedded(dir.path()).await.unwrap();
        for (user, id, path, deleted) in [
            ("u1", "f1", "d", 0),
            ("u1", "f2", "D/e", 0),
            ("u1", "f3", "d.txt", 0),
            ("u1", "f4", "x", 1),
            ("u1", "f5", "x/y", 0),
            ("u2", "f6", "d/e", 0),
        ] {
            sqlx::query(
                "INSERT INTO files (file_id, user_id, path, path_key, rev, size, sha256, deleted, modified_ms)
                 VALUES ($1, $2, $3, $4, 1, 0, '', $5, 0)",
            )
            .bind(id)
            .bind(user)
            .bind(path)
            .bind(path_key(path))
            .bind(deleted)
            .execute(&db.pool)
            .await
            .unwrap();
        }
        let clashes = MetadataStore::new(db).name_clashes().await.unwrap();
        assert_eq!(clashes.len(), 1, "{clashes:?}");
        assert_eq!((clashes[0].0.as_str(), clashes[0].1.as_str()), ("u1", "f2"));
        assert!(
            clashes[0].3.contains("'D/e' is under 'd'"),
            "{}",
            clashes[0].3
        );
    }
}
