//! The metadata database over TLS, as on Amazon RDS (`rds.force_ssl`): `sslmode` and
//! `sslrootcert` in the URL, the password from `PGPASSWORD`. Against the test PostgreSQL
//! (`SYNCSPHERE_TEST_DATABASE_URL`, its CA in `SYNCSPHERE_TEST_PG_CA`; skipped without them,
//! required under `CI`), through [`Db::connect`], the server's own path (the `Any` driver).

use sqlx::Row;
use syncsphere_db::{Db, DbError};
use syncsphere_test_support::{
    fresh_postgres_database, is_child, password_database, postgres_tls, run_child, unrelated_ca,
};

/// Whether the session of one of `db`'s connections is encrypted, as the server sees it.
async fn encrypted(db: &Db) -> bool {
    let row = sqlx::query(
        "SELECT (CASE WHEN ssl THEN 1 ELSE 0 END)::BIGINT AS ssl FROM pg_stat_ssl \
         WHERE pid = pg_backend_pid()",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    row.get::<i64, _>("ssl") == 1
}

#[tokio::test]
async fn verify_full_with_the_servers_ca_connects_encrypted() {
    let Some(pg) = postgres_tls() else { return };
    let url = fresh_postgres_database(&pg.admin_url, "tls").await.unwrap();
    let url = format!("{url}?sslmode=verify-full&sslrootcert={}", pg.ca.display());
    let db = Db::connect(&url).await.unwrap();
    assert!(encrypted(&db).await, "verify-full gave a plain session");
}

#[tokio::test]
async fn require_encrypts_without_a_root_certificate() {
    let Some(pg) = postgres_tls() else { return };
    let url = fresh_postgres_database(&pg.admin_url, "tls").await.unwrap();
    let db = Db::connect(&format!("{url}?sslmode=require"))
        .await
        .unwrap();
    assert!(encrypted(&db).await, "require gave a plain session");
}

#[tokio::test]
async fn verify_full_against_another_ca_is_refused_naming_the_certificate() {
    let Some(pg) = postgres_tls() else { return };
    let url = fresh_postgres_database(&pg.admin_url, "tls").await.unwrap();
    let url = format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        unrelated_ca().display()
    );
    let err = Db::connect(&url).await.unwrap_err();
    assert!(matches!(err, DbError::Connect(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("certificate") && text.contains("UnknownIssuer"),
        "not a clear certificate error: {text}"
    );
}

/// A role that must sign in with a SCRAM password over TLS gets it from `PGPASSWORD` (RDS's
/// password from Secrets Manager, the URL without it); wrong or missing, the error says the
/// password failed and shows no password. In a child process: `PGPASSWORD` is process-wide.
#[tokio::test]
async fn the_password_comes_from_pgpassword() {
    let Some(pg) = postgres_tls() else { return };
    let role = password_database(&pg.admin_url, "pw").await.unwrap();
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        role.url,
        pg.ca.display()
    );
    // Without the password, and over a plain connection, the role is refused.
    let err = Db::connect(&url).await.unwrap_err().to_string();
    assert!(err.contains("password"), "{err}");
    let plain = format!("{}?sslmode=disable", role.url);
    let err = Db::connect(&plain).await.unwrap_err().to_string();
    assert!(
        err.contains("no encryption") || err.contains("rejects"),
        "{err}"
    );
    run_child(
        "child_connects_with_pgpassword",
        &[
            ("CHILD_DATABASE_URL", url.as_ref()),
            ("PGPASSWORD", role.password.as_ref()),
        ],
    );
    run_child(
        "child_is_refused_with_a_wrong_pgpassword",
        &[
            ("CHILD_DATABASE_URL", url.as_ref()),
            ("PGPASSWORD", "not-the-password".as_ref()),
        ],
    );
}

#[tokio::test]
async fn child_connects_with_pgpassword() {
    if !is_child("child_connects_with_pgpassword") {
        return;
    }
    let url = std::env::var("CHILD_DATABASE_URL").unwrap();
    let db = Db::connect(&url).await.unwrap();
    assert!(encrypted(&db).await);
}

#[tokio::test]
async fn child_is_refused_with_a_wrong_pgpassword() {
    if !is_child("child_is_refused_with_a_wrong_pgpassword") {
        return;
    }
    let url = std::env::var("CHILD_DATABASE_URL").unwrap();
    let err = Db::connect(&url).await.unwrap_err().to_string();
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
}
