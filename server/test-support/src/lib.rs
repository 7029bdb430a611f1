//! Fixtures for server tests: the PostgreSQL, Redis, S3 and Cognito (moto) servers
//! `scripts/test.sh` starts,
//! read from the variables it exports, fresh databases on them, and [`on_both_stores!`] (one
//! suite on SQLite and on PostgreSQL).
//!
//! A fixture whose variable is not set prints `SKIPPED: …` and returns `None`, so a plain
//! `cargo test` runs the rest; with `CI` set it panics instead, so CI never skips silently.
//!
//! **Boundary:** knows nothing of the client nor of the services (no workspace dependency;
//! checked by `syncsphere-server/tests/dependencies.rs`).

/// Admin URL of the test PostgreSQL server (a database the tests may `CREATE DATABASE` from).
pub const DATABASE_URL_VAR: &str = "SYNCSPHERE_TEST_DATABASE_URL";
/// URL of the test Redis server.
pub const REDIS_URL_VAR: &str = "SYNCSPHERE_TEST_REDIS_URL";
/// The test S3 server: endpoint, bucket and credentials.
pub const S3_VARS: [&str; 4] = [
    "SYNCSPHERE_TEST_S3_ENDPOINT",
    "SYNCSPHERE_TEST_S3_BUCKET",
    "SYNCSPHERE_TEST_S3_ACCESS_KEY",
    "SYNCSPHERE_TEST_S3_SECRET_KEY",
];

/// The test Cognito emulator (moto): its URL and the PEM of the key it signs tokens with.
pub const MOTO_VARS: [&str; 2] = ["SYNCSPHERE_TEST_MOTO_URL", "SYNCSPHERE_TEST_MOTO_KEY"];

/// The test mail server (aiosmtpd): its SMTP URL and the Maildir it delivers into.
pub const SMTP_VARS: [&str; 2] = ["SYNCSPHERE_TEST_SMTP_URL", "SYNCSPHERE_TEST_MAILDIR"];

/// The value of `name` if set and not empty.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `None` (printed as skipped) outside CI; a panic under `CI`.
fn missing<T>(what: &str) -> Option<T> {
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but {what} is not: run the tests through scripts/test.sh");
    }
    eprintln!("SKIPPED: {what} is not set (scripts/test.sh sets it)");
    None
}

/// Admin URL of the test PostgreSQL server ([`DATABASE_URL_VAR`]).
pub fn postgres_admin_url() -> Option<String> {
    var(DATABASE_URL_VAR).or_else(|| missing(DATABASE_URL_VAR))
}

/// URL of the test Redis server ([`REDIS_URL_VAR`]).
pub fn redis_url() -> Option<String> {
    var(REDIS_URL_VAR).or_else(|| missing(REDIS_URL_VAR))
}

/// Where the test S3 server is and how to sign in to it ([`S3_VARS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

/// The test S3 server (an S3-compatible s3s-fs that checks signatures), if set.
pub fn s3_settings() -> Option<S3Settings> {
    let [endpoint, bucket, access_key, secret_key] = S3_VARS.map(var);
    match (endpoint, bucket, access_key, secret_key) {
        (Some(endpoint), Some(bucket), Some(access_key), Some(secret_key)) => Some(S3Settings {
            endpoint,
            bucket,
            access_key,
            secret_key,
        }),
        _ => missing("SYNCSPHERE_TEST_S3_*"),
    }
}

/// The Cognito user pool emulator `scripts/test.sh` starts (moto), and the private key it signs
/// every pool's tokens with (a key that ships inside moto: tests mint tokens with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moto {
    pub url: String,
    pub signing_key_pem: Vec<u8>,
}

/// The test Cognito emulator ([`MOTO_VARS`]), if set.
pub fn moto() -> Option<Moto> {
    let [url, key] = MOTO_VARS.map(var);
    match (url, key) {
        (Some(url), Some(key)) => Some(Moto {
            url,
            signing_key_pem: std::fs::read(&key)
                .unwrap_or_else(|e| panic!("reading moto's signing key {key}: {e}")),
        }),
        _ => missing("SYNCSPHERE_TEST_MOTO_*"),
    }
}

/// Creates a new, empty database on the PostgreSQL server of `admin_url` and returns its URL;
/// its name starts with `prefix` (a letter and lowercase letters, digits or `_`).
pub async fn fresh_postgres_database(admin_url: &str, prefix: &str) -> Result<String, sqlx::Error> {
    use sqlx::Connection;
    let name = format!("{prefix}_{}", hex::encode(rand::random::<[u8; 6]>()));
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let (base, _) = admin_url
        .rsplit_once('/')
        .ok_or_else(|| sqlx::Error::Configuration("the admin URL names no database".into()))?;
    Ok(format!("{base}/{name}"))
}

/// A new database on the test PostgreSQL server, or `None` (skipped) without one.
pub async fn postgres_database() -> Option<String> {
    let admin = postgres_admin_url()?;
    Some(
        fresh_postgres_database(&admin, "test")
            .await
            .expect("creating a database on the test PostgreSQL server"),
    )
}

/// Runs each suite (`async fn(Option<String>)`, the PostgreSQL URL or `None` for SQLite) as two
/// tests: `$sqlite` with `None`, and `$postgres` with a fresh database on the test PostgreSQL
/// server (skipped without one, see [`postgres_database`]). The calling crate needs `tokio`.
///
/// ```text
/// syncsphere_test_support::on_both_stores! {
///     quotas => quotas_on_sqlite, quotas_on_postgres;
/// }
/// ```
#[macro_export]
macro_rules! on_both_stores {
    ($($suite:ident => $sqlite:ident, $postgres:ident;)*) => {$(
        #[tokio::test]
        async fn $sqlite() {
            $suite(None).await;
        }

        #[tokio::test]
        async fn $postgres() {
            if let Some(url) = $crate::postgres_database().await {
                $suite(Some(url)).await;
            }
        }
    )*};
}

/// The test mail server `scripts/test.sh` starts (aiosmtpd), and where it stores what it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smtp {
    pub url: String,
    pub maildir: std::path::PathBuf,
}

/// The test mail server ([`SMTP_VARS`]), if set.
pub fn smtp() -> Option<Smtp> {
    let [url, maildir] = SMTP_VARS.map(var);
    match (url, maildir) {
        (Some(url), Some(maildir)) => Some(Smtp {
            url,
            maildir: maildir.into(),
        }),
        _ => missing("SYNCSPHERE_TEST_SMTP_*"),
    }
}

impl Smtp {
    /// The messages delivered to `to` so far, oldest first, each as its whole text.
    pub fn messages_to(&self, to: &str) -> Vec<String> {
        let mut found: Vec<(std::time::SystemTime, String)> = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(text) = std::fs::read_to_string(entry.path()) else {
                    continue;
                };
                let addressed = text.lines().take_while(|l| !l.trim().is_empty()).any(|l| {
                    l.to_ascii_lowercase().starts_with("to:")
                        && l.to_ascii_lowercase().contains(&to.to_ascii_lowercase())
                });
                if addressed {
                    let at = entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH);
                    found.push((at, text));
                }
            }
        }
        found.sort();
        found.into_iter().map(|(_, text)| text).collect()
    }

    /// Waits (up to 10 s) until `to` has received more than `seen` messages, and returns the
    /// six-digit code of the newest. (Async: the server that mails may run on this thread.)
    pub async fn wait_for_code(&self, to: &str, seen: usize) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let messages = self.messages_to(to);
            if messages.len() > seen {
                let last = messages.last().expect("a message");
                return six_digits(last)
                    .unwrap_or_else(|| panic!("no six-digit code in the message: {last}"));
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no new message to {to} within 10 s ({} before)",
                messages.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// The first run of exactly six digits in the body of `message` (after its headers).
fn six_digits(message: &str) -> Option<String> {
    let message = message.replace("\r\n", "\n");
    let body = message
        .split_once("\n\n")
        .map_or(message.as_str(), |(_, b)| b);
    body.split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 6)
        .map(str::to_owned)
}
