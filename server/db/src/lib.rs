//! The server's metadata database: one connection pool over SQLite (embedded default) or
//! PostgreSQL (`DATABASE_URL=postgres://…`), and the schema migrations for both.
//!
//! **Invariant**: every query the services run is written once, with `$1`-style numbered
//! parameters and portable SQL (both SQLite ≥ 3.35 and PostgreSQL understand it), and runs
//! through [`sqlx::AnyPool`]. Column types are restricted to what both engines share:
//! `TEXT`, `BIGINT` (booleans as 0/1).
//!
//! **Boundary**: this crate knows nothing about users or files; the services own their tables'
//! meaning, this crate only owns how to reach them and how the schema evolves.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, ConnectOptions};

pub use sqlx;

/// How every SQLite connection is set up. WAL with a busy timeout makes the embedded database
/// safe for concurrent readers (the single pooled connection serialises writers so that
/// transactions never deadlock on upgrade); `synchronous=FULL` fsyncs the WAL at every commit,
/// so a commit is durable when it returns. Statement journals (rollback of one statement inside
/// a transaction) stay in memory instead of a temp file created and unlinked each time. The WAL
/// is checkpointed every 8,192 pages (32 MiB) instead of SQLite's 1,000: a checkpoint copies
/// every page changed since the last one into the database and fsyncs it, inside whichever
/// commit triggered it, and the hot pages (journal heads, index roots) were copied again every
/// ~150 commits under load.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL;
    PRAGMA synchronous = FULL;
    PRAGMA busy_timeout = 10000;
    PRAGMA temp_store = MEMORY;
    PRAGMA wal_autocheckpoint = 8192;
    PRAGMA foreign_keys = ON;";

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL (expected sqlite:// or postgres://): {0}")]
    UnsupportedUrl(String),
    #[error("could not connect to the metadata database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error(
        "the metadata database was migrated by a newer SyncSphere release (its migration {0} \
         is unknown to this one): run that release or a newer one — this one will not write \
         with older rules into a newer schema"
    )]
    NewerSchema(i64),
    #[error("could not migrate the metadata database: {0}")]
    Migrate(sqlx::migrate::MigrateError),
}

impl From<sqlx::migrate::MigrateError> for DbError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        match err {
            sqlx::migrate::MigrateError::VersionMissing(version) => DbError::NewerSchema(version),
            other => DbError::Migrate(other),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A migrated connection pool to the metadata database.
#[derive(Debug, Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub dialect: Dialect,
}

impl Db {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Dialect::Postgres
        } else {
            return Err(DbError::UnsupportedUrl(redact(url)));
        };
        let url = match dialect {
            Dialect::Sqlite => SqliteConnectOptions::from_str(url)
                .map_err(DbError::Connect)?
                .create_if_missing(true)
                .to_url_lossy()
                .to_string(),
            Dialect::Postgres => url.to_owned(),
        };
        let max = match dialect {
            Dialect::Sqlite => 1,
            Dialect::Postgres => 16,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // Set on every connection: going through the `Any` driver's URL, the
                        // `SqliteConnectOptions` pragmas are dropped (the database silently
                        // stayed in rollback-journal mode until 2026-12-01).
                        sqlx::Executor::execute(conn, SQLITE_PRAGMAS).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(DbError::Connect)?;
        match dialect {
            Dialect::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Dialect::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        tracing::info!(?dialect, "metadata database ready");
        Ok(Db { pool, dialect })
    }

    /// The embedded default: a SQLite file `metadata.db` inside `data_dir`.
    pub async fn open_embedded(data_dir: &Path) -> Result<Self, DbError> {
        let file = data_dir.join("metadata.db");
        Self::connect(&format!("sqlite://{}", file.display())).await
    }
}

/// Hides the password of a database URL for logs and errors (a URL without one, its password
/// from `PGPASSWORD`, is shown as it is).
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    format!("{}://{}:***@{}", &url[..scheme_end], user, &url[at + 1..])
                }
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Row;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact("sqlite:///tmp/a.db"), "sqlite:///tmp/a.db");
        let from_pgpassword = "postgres://app@db:5432/x?sslmode=verify-full&sslrootcert=/ca.pem";
        assert_eq!(redact(from_pgpassword), from_pgpassword);
    }

    #[tokio::test]
    async fn sqlite_migrates_and_binds_numbered_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_embedded(dir.path()).await.unwrap();
        assert_eq!(db.dialect, Dialect::Sqlite);
        // `$2` before `$1`: parameters must bind by number, not by order of appearance.
        let row = sqlx::query("SELECT $2 AS b, $1 AS a")
            .bind("one")
            .bind("two")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(row.get::<String, _>("a"), "one");
        assert_eq!(row.get::<String, _>("b"), "two");
        // Re-opening applies no migration twice.
        drop(db);
        Db::open_embedded(dir.path()).await.unwrap();
    }

    /// The settings the embedded database relies on are in force on its connection.
    #[tokio::test]
    async fn sqlite_runs_in_wal_mode_with_full_sync() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_embedded(dir.path()).await.unwrap();
        let mut conn = db.pool.acquire().await.unwrap();
        let mode = sqlx::query("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(mode.get::<String, _>(0), "wal");
        for (pragma, expected) in [
            ("synchronous", 2), // FULL
            ("busy_timeout", 10_000),
            ("temp_store", 2), // MEMORY
            ("wal_autocheckpoint", 8192),
            ("foreign_keys", 1),
        ] {
            let row = sqlx::query(&format!("PRAGMA {pragma}"))
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(row.get::<i64, _>(0), expected, "{pragma}");
        }
    }

    /// A release older than the schema (a rollback after a newer release migrated) refuses
    /// to start instead of writing with older rules (deploy/README.md, section 4).
    #[tokio::test]
    async fn an_older_release_refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_embedded(dir.path()).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations \
             (version, description, success, checksum, execution_time) \
             VALUES (99991231000000, 'from a newer release', 1, x'00', 0)",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        drop(db);
        let err = Db::open_embedded(dir.path()).await.unwrap_err();
        assert!(matches!(err, DbError::NewerSchema(99991231000000)), "{err}");
        assert!(
            err.to_string().contains("newer SyncSphere release"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn rejects_unknown_schemes() {
        let err = Db::connect("mysql://u:p@h/db").await.unwrap_err();
        assert!(matches!(err, DbError::UnsupportedUrl(u) if u == "mysql://u:***@h/db"));
    }
}
