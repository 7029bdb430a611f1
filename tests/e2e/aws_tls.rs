//! The real server configured as the AWS template configures its tasks (decision 0043):
//! everything from the environment, PostgreSQL as on RDS (`sslmode=verify-full` with
//! `sslrootcert`, a role that must sign in over TLS with a password, the password in
//! `PGPASSWORD`), Redis as ElastiCache with in-transit encryption and an AUTH token
//! (`REDIS_URL=rediss://…`, `REDIS_PASSWORD`, the server's certificate trusted through
//! `SSL_CERT_FILE`). A `files` and a `state` instance — the state one reads its Redis URL
//! from `REDIS_URL_FILE` — and two CLI devices that sync a file by push.
//!
//! Needs the test PostgreSQL and the TLS Redis `scripts/test.sh` starts (skipped without
//! them, required under `CI`).

use std::time::Duration;

use syncsphere_e2e::{Device, Server, free_loopback_port, same_bytes, wait_for};
use syncsphere_test_support::{password_database, postgres_tls, redis_tls};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_state_on_tls_postgres_and_tls_redis_with_separate_secrets_sync_by_push() {
    let (Some(pg), Some(redis)) = (postgres_tls(), redis_tls()) else {
        return;
    };
    let role = password_database(&pg.admin_url, "awstls").await.unwrap();
    let database_url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        role.url,
        pg.ca.display()
    );
    let ca = redis.ca.to_str().unwrap();
    let state_port = free_loopback_port();
    let state_url = format!("http://127.0.0.1:{state_port}");
    let files = Server::start_env(
        "127.0.0.1:0",
        None,
        &["--role", "files", "--push-url", &state_url],
        &[
            ("DATABASE_URL", &database_url),
            ("PGPASSWORD", &role.password),
            ("REDIS_URL", &redis.url),
            ("REDIS_PASSWORD", &redis.password),
            ("SSL_CERT_FILE", ca),
        ],
    )
    .expect("files instance");
    let dir = tempfile::tempdir().unwrap();
    let url_file = dir.path().join("redis-url");
    // As a mounted secret: with a trailing newline.
    std::fs::write(&url_file, format!("{}\n", redis.url)).unwrap();
    let issuer = format!("{}/local_syncsphere", files.url);
    let state = Server::start_env(
        &format!("127.0.0.1:{state_port}"),
        None,
        &["--role", "state", "--auth-issuer", &issuer],
        &[
            ("REDIS_URL_FILE", url_file.to_str().unwrap()),
            ("REDIS_PASSWORD", &redis.password),
            ("SSL_CERT_FILE", ca),
        ],
    )
    .expect("state instance");
    assert_eq!(state.url, state_url);
    for server in [&files, &state] {
        let log = server.log();
        assert!(
            !log.contains(&redis.password) && !log.contains(&role.password),
            "a password in the log:\n{log}"
        );
    }

    let (a, b) = (Device::new("a").unwrap(), Device::new("b").unwrap());
    a.signup(&files, "tls@example.com");
    b.login(&files, "tls@example.com");
    let _pa = a.start_sync().unwrap();
    let _pb = b.start_sync().unwrap();
    syncsphere_e2e::wait_both_up_to_date(&a, &b, Duration::from_secs(20));
    // Both hold their push channel on the state instance; B gets A's file well before its
    // 60 s fallback poll, so by push (files → Redis over TLS → state → B).
    std::fs::write(a.path("over-tls.txt"), "encrypted all the way").unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || same_bytes(
            &a,
            &b,
            "over-tls.txt"
        ))
        .is_some(),
        "B did not get the file by push\nA:\n{}\nB:\n{}\nfiles:\n{}\nstate:\n{}",
        a.log(),
        b.log(),
        files.log(),
        state.log()
    );
    for d in [&a, &b] {
        assert!(
            d.log().contains("push channel connected"),
            "{} never connected its push channel:\n{}",
            d.name,
            d.log()
        );
    }
}
