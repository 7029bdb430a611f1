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
/// The CA that signed the test PostgreSQL server's certificate (for `127.0.0.1` and
/// `localhost`): it speaks TLS as well as plain connections.
pub const POSTGRES_CA_VAR: &str = "SYNCSPHERE_TEST_PG_CA";
/// The group role whose members the test PostgreSQL admits only over TLS with a SCRAM password
/// (`scripts/lib.sh` writes the `pg_hba.conf` rule), as Amazon RDS does with `rds.force_ssl`.
pub const PASSWORD_ROLE_GROUP: &str = "syncsphere_password_users";
/// The test Redis that speaks TLS only and wants a password (ElastiCache's shape): its
/// `rediss://` URL, password, and the CA that signed its certificate.
pub const REDIS_TLS_VARS: [&str; 3] = [
    "SYNCSPHERE_TEST_REDIS_TLS_URL",
    "SYNCSPHERE_TEST_REDIS_TLS_PASSWORD",
    "SYNCSPHERE_TEST_REDIS_TLS_CA",
];
/// Set in a child test process by [`run_child`]: the name of the test it is to run.
const CHILD_VAR: &str = "SYNCSPHERE_TEST_CHILD";
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

/// The test PostgreSQL server and the CA of its TLS certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresTls {
    pub admin_url: String,
    pub ca: std::path::PathBuf,
}

/// The test PostgreSQL server with its CA ([`DATABASE_URL_VAR`], [`POSTGRES_CA_VAR`]).
pub fn postgres_tls() -> Option<PostgresTls> {
    match (var(DATABASE_URL_VAR), var(POSTGRES_CA_VAR)) {
        (Some(admin_url), Some(ca)) => Some(PostgresTls {
            admin_url,
            ca: ca.into(),
        }),
        _ => missing(&format!("{DATABASE_URL_VAR} or {POSTGRES_CA_VAR}")),
    }
}

/// A certificate authority that signed nothing the tests reach (its key is thrown away): a
/// `sslrootcert` / `SSL_CERT_FILE` that must make verification fail.
pub fn unrelated_ca() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/unrelated-ca.pem")
}

/// A database reached as a role that must sign in with a password over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordDatabase {
    /// `postgres://{user}@{host}:{port}/{database}`: no password, no parameters.
    pub url: String,
    pub user: String,
    pub password: String,
}

/// A new login role in [`PASSWORD_ROLE_GROUP`] with a random password, and a new database it
/// owns, on the PostgreSQL server of `admin_url` (names start with `prefix`).
pub async fn password_database(
    admin_url: &str,
    prefix: &str,
) -> Result<PasswordDatabase, sqlx::Error> {
    let name = format!("{prefix}_{}", hex::encode(rand::random::<[u8; 6]>()));
    let password = hex::encode(rand::random::<[u8; 16]>());
    let base = run_as_admin(
        admin_url,
        &[
            format!("CREATE ROLE {name} LOGIN PASSWORD '{password}' IN ROLE {PASSWORD_ROLE_GROUP}"),
            format!("CREATE DATABASE {name} OWNER {name}"),
        ],
    )
    .await?;
    let (scheme, rest) = base
        .split_once("://")
        .ok_or_else(|| sqlx::Error::Configuration("the admin URL has no scheme".into()))?;
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    Ok(PasswordDatabase {
        url: format!("{scheme}://{name}@{host}/{name}"),
        user: name,
        password,
    })
}

/// The test Redis that wants TLS and a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTls {
    /// `rediss://127.0.0.1:{port}`, without the password.
    pub url: String,
    pub password: String,
    pub ca: std::path::PathBuf,
}

/// The test Redis with TLS and a password ([`REDIS_TLS_VARS`]).
pub fn redis_tls() -> Option<RedisTls> {
    let [url, password, ca] = REDIS_TLS_VARS.map(var);
    match (url, password, ca) {
        (Some(url), Some(password), Some(ca)) => Some(RedisTls {
            url,
            password,
            ca: ca.into(),
        }),
        _ => missing("SYNCSPHERE_TEST_REDIS_TLS_*"),
    }
}

/// Whether this process is the child [`run_child`] started to run the test `name`. Tests that
/// need a process-wide environment of their own (`PGPASSWORD`, `SSL_CERT_FILE`; setting
/// variables in a threaded test process is unsound) do their work only then.
pub fn is_child(name: &str) -> bool {
    let child = var(CHILD_VAR);
    if child.is_none() {
        eprintln!("{name}: run in a child process by its parent test");
    }
    child.as_deref() == Some(name)
}

/// Runs the test `name` (its full path, as `cargo test -- --exact` takes it) of this test
/// binary in a child process with `env` added, and panics with its output unless it passed.
pub fn run_child(name: &str, env: &[(&str, &std::ffi::OsStr)]) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let output = std::process::Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, name)
        .envs(env.iter().copied())
        .output()
        .expect("starting the child test process");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && text.contains("1 passed"),
        "the child test {name} failed:\n{text}"
    );
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
    let name = format!("{prefix}_{}", hex::encode(rand::random::<[u8; 6]>()));
    let base = run_as_admin(admin_url, &[format!("CREATE DATABASE {name}")]).await?;
    Ok(format!("{base}/{name}"))
}

/// Runs `statements` on the PostgreSQL server of `admin_url`, one after another, and returns
/// the admin URL without its database (`postgres://user@host:port`).
async fn run_as_admin(admin_url: &str, statements: &[String]) -> Result<String, sqlx::Error> {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    for statement in statements {
        sqlx::raw_sql(statement).execute(&mut admin).await?;
    }
    admin.close().await?;
    let (base, _) = admin_url
        .rsplit_once('/')
        .ok_or_else(|| sqlx::Error::Configuration("the admin URL names no database".into()))?;
    Ok(base.to_owned())
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
