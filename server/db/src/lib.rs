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
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{AnyPool, ConnectOptions};

pub use sqlx;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL (expected sqlite:// or postgres://): {0}")]
    UnsupportedUrl(String),
    #[error("could not connect to the metadata database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("could not migrate the metadata database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
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
            // WAL + a busy timeout make the embedded database safe for concurrent readers; the
            // single connection serialises writers so transactions never deadlock on upgrade.
            Dialect::Sqlite => SqliteConnectOptions::from_str(url)
                .map_err(DbError::Connect)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
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

/// Hides the password of a database URL for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &url[..scheme_end], user, &url[at + 1..])
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

    #[tokio::test]
    async fn rejects_unknown_schemes() {
        let err = Db::connect("mysql://u:p@h/db").await.unwrap_err();
        assert!(matches!(err, DbError::UnsupportedUrl(u) if u == "mysql://u:***@h/db"));
    }
}
