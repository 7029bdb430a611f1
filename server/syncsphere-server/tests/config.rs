//! The configuration is defined once, by clap: the README's table is checked against it, the
//! embedded defaults are its defaults, and a role's missing flags are named at start.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{CommandFactory, Parser};
use syncsphere_server::{AppConfig, Cli, Role, build};

/// The rows of README.md's "## Server configuration" table: (flag cell, env cell).
fn readme_rows() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&path).expect("reading README.md");
    let section = readme
        .split("\n## Server configuration\n")
        .nth(1)
        .expect("README.md has a \"## Server configuration\" section");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---") && !l.starts_with("| flag"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].to_owned(), cells[2].to_owned())
        })
        .collect()
}

/// The `--flags` a README cell names.
fn flags_in(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .filter(|code| code.starts_with("--"))
        .map(|code| code.split_whitespace().next().unwrap_or(code).to_owned())
        .collect()
}

/// The names a README cell quotes.
fn quoted_in(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Every visible flag of `syncsphere-server --help`: (long, env).
fn visible_flags() -> Vec<(String, Option<String>)> {
    Cli::command()
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| {
            let long = a.get_long()?;
            let env = a.get_env().map(|e| e.to_string_lossy().into_owned());
            Some((format!("--{long}"), env))
        })
        .collect()
}

#[test]
fn the_readme_table_lists_every_flag_with_its_env_var() {
    let rows = readme_rows();
    let mut problems = Vec::new();
    for (flag, env) in visible_flags() {
        let Some((_, env_cell)) = rows.iter().find(|(f, _)| flags_in(f).contains(&flag)) else {
            problems.push(format!("{flag} is not in the table"));
            continue;
        };
        if let Some(env) = env
            && !quoted_in(env_cell).contains(&env)
        {
            problems.push(format!("{flag}: its row does not name `{env}`"));
        }
    }
    let known: Vec<String> = visible_flags().into_iter().map(|(f, _)| f).collect();
    for (flag_cell, _) in &rows {
        for flag in flags_in(flag_cell) {
            if !known.contains(&flag) {
                problems.push(format!(
                    "the table names {flag}, which --help does not list"
                ));
            }
        }
    }
    for sub in Cli::command().get_subcommands() {
        let name = format!("`{}`", sub.get_name());
        if !rows.iter().any(|(f, _)| f.starts_with(&name)) {
            problems.push(format!("the subcommand {name} is not in the table"));
        }
    }
    assert!(problems.is_empty(), "README.md: {problems:#?}");
}

/// The flag-cell reader itself: what the table check relies on.
#[test]
fn readme_cells_are_read_as_written() {
    assert_eq!(
        flags_in("`--push-url` (repeatable), `--a`, `x`"),
        ["--push-url", "--a"]
    );
    assert_eq!(
        quoted_in("`SYNCSPHERE_PUSH_URLS` (comma-separated), `B`"),
        ["SYNCSPHERE_PUSH_URLS", "B"]
    );
}

/// The binary's command line with no flag and no environment.
fn binary_defaults() -> AppConfig {
    let matches = Cli::command()
        .mut_args(|a| a.env(None::<&str>))
        .try_get_matches_from(["syncsphere-server"])
        .expect("no flags parse");
    <Cli as clap::FromArgMatches>::from_arg_matches(&matches)
        .expect("no flags parse")
        .config
}

/// Tests and the simulation run on exactly the binary's defaults, which are written once.
#[test]
fn embedded_is_the_binary_with_no_flags_and_no_environment() {
    let dir = PathBuf::from("/data");
    let mut expected = binary_defaults();
    expected.server.data_dir = dir.clone();
    expected.server.public_url = Some("http://x".into());
    assert_eq!(AppConfig::embedded(dir, "http://x".into()), expected);

    // The documented defaults (README.md), pinned: scripts and deployments rely on them.
    let d = binary_defaults();
    assert_eq!(d.server.role, Role::All);
    assert_eq!(d.server.listen.to_string(), "127.0.0.1:8787");
    assert_eq!(d.server.data_dir, PathBuf::from("./syncsphere-data"));
    assert_eq!((d.server.database_url, d.server.public_url), (None, None));
    assert_eq!(d.server.redis_url, None);
    assert!(d.server.push_urls.is_empty());
    assert_eq!(d.server.max_connections_per_address, 256);
    assert_eq!(d.server.header_timeout_secs, 30);
    assert_eq!(d.idp.user_pool_id, "local_syncsphere");
    assert_eq!(d.idp.client_id, "syncsphere-desktop");
    assert_eq!(d.idp.region, "local-1");
    assert_eq!(d.idp.access_token_ttl, 3600);
    assert_eq!(d.idp.refresh_token_ttl, 30 * 24 * 3600);
    assert_eq!(
        d.idp.password_policy(),
        syncsphere_auth::idp::PasswordPolicy::default(),
        "Cognito's default password policy"
    );
    assert_eq!(d.files.quota_bytes, None);
    let policy = d.files.gc_policy();
    assert_eq!(
        (policy.retention.as_secs(), policy.grace.as_secs()),
        (30 * 24 * 3600, 24 * 3600)
    );
    assert_eq!(d.files.gc_interval_secs, 3600);
    assert_eq!(d.files.inline_max_bytes, 16384);
    assert_eq!(d.files.s3.config(), None);
    assert_eq!(d.files.s3.s3_region, "us-east-1");
    assert_eq!(d.state.max_connections_per_user, 32);
    assert_eq!((d.state.auth_issuer, d.state.jwks_url), (None, None));
}

/// The password policy is configurable as a Cognito pool's is; nonsense is refused at start.
#[test]
fn the_password_policy_takes_a_length_and_the_classes_it_requires() {
    let parse = |args: &[&str]| AppConfig::parse_without_env(args.iter().copied());
    let policy = |args: &[&str]| parse(args).unwrap().idp.password_policy();
    let p = policy(&[
        "--password-min-length",
        "12",
        "--password-require",
        "lower,digit",
    ]);
    assert_eq!(p.min_length, 12);
    assert!(p.require_lower && p.require_digit && !p.require_upper && !p.require_symbol);
    let p = policy(&["--password-require", "none"]);
    assert!(!p.require_lower && !p.require_digit && !p.require_upper && !p.require_symbol);
    for bad in [
        &["--password-min-length", "5"][..],
        &["--password-min-length", "100"],
        &["--password-require", "emoji"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?} accepted");
    }
}

/// `check` takes the same flags as serving; `--check` still works (deprecated, hidden).
#[test]
fn check_is_a_subcommand_with_the_same_flags() {
    let serve =
        Cli::try_parse_from(["syncsphere-server", "--data-dir", "/d", "--role", "files"]).unwrap();
    let check = Cli::try_parse_from([
        "syncsphere-server",
        "check",
        "--data-dir",
        "/d",
        "--role",
        "files",
    ])
    .unwrap();
    let Some(syncsphere_server::Command::Check(args)) = check.command else {
        panic!("check is not parsed as the subcommand");
    };
    assert_eq!(args.config, serve.config);
    assert!(!serve.check);
    let old = Cli::try_parse_from(["syncsphere-server", "--check", "--data-dir", "/d"]).unwrap();
    assert!(old.check && old.command.is_none());
}

/// A role's requirements are checked before anything opens, all of them in one message.
#[tokio::test]
async fn a_role_names_every_flag_it_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let check = |role: Role, redis: Option<&str>, issuer: Option<&str>| {
        let mut config = AppConfig::embedded(dir.path().join("data"), "http://x".into());
        config.server.role = role;
        config.server.redis_url = redis.map(str::to_owned);
        config.state.auth_issuer = issuer.map(str::to_owned);
        config.check_requirements().err().map(|e| e.to_string())
    };
    for (role, redis, issuer, expected) in [
        (
            Role::State,
            None,
            None,
            Some(
                "the state role needs --redis-url (REDIS_URL) and --auth-issuer \
                 (SYNCSPHERE_AUTH_ISSUER) or --cognito-user-pool-id \
                 (SYNCSPHERE_COGNITO_USER_POOL_ID)",
            ),
        ),
        (
            Role::State,
            Some("redis://r"),
            None,
            Some(
                "the state role needs --auth-issuer (SYNCSPHERE_AUTH_ISSUER) or \
                 --cognito-user-pool-id (SYNCSPHERE_COGNITO_USER_POOL_ID)",
            ),
        ),
        (
            Role::Files,
            None,
            Some("http://i"),
            Some("the files role needs --redis-url (REDIS_URL)"),
        ),
        (Role::State, Some("redis://r"), Some("http://i"), None),
        (Role::Files, Some("redis://r"), None, None),
        (Role::All, None, None, None),
    ] {
        assert_eq!(
            check(role, redis, issuer).as_deref(),
            expected,
            "{role} {redis:?} {issuer:?}"
        );
    }
    // A Cognito user pool stands in for --auth-issuer; pool settings that cannot work are
    // refused before anything opens, whatever the role.
    let mut config = AppConfig::embedded(dir.path().join("data"), "http://x".into());
    config.server.role = Role::State;
    config.server.redis_url = Some("redis://r".into());
    config.pool.cognito_user_pool_id = Some("eu-west-1_abc".into());
    config.pool.cognito_client_ids = vec!["app".into()];
    assert!(config.check_requirements().is_ok());
    config.pool.cognito_client_ids.clear();
    assert_eq!(
        config.check_requirements().unwrap_err().to_string(),
        "--cognito-user-pool-id needs at least one --cognito-client-id \
         (SYNCSPHERE_COGNITO_CLIENT_IDS)"
    );
    let mut config = AppConfig::embedded(dir.path().join("data"), "http://x".into());
    config.pool.cognito_jwks_url = Some("http://keys".into());
    assert_eq!(
        build(&config).await.err().expect("refused").to_string(),
        "--cognito-* settings given without --cognito-user-pool-id"
    );
    assert!(!dir.path().join("data").exists(), "nothing opened");

    // build() checks first: nothing is created for a refused role.
    let mut config = AppConfig::embedded(dir.path().join("data"), "http://x".into());
    config.server.role = Role::Files;
    let err = build(&config).await.err().expect("refused");
    assert_eq!(
        err.to_string(),
        "the files role needs --redis-url (REDIS_URL)"
    );
    assert!(!dir.path().join("data").exists());
}

/// AWS mode's push settings are checked with the rest: a role that serves push, an http(s)
/// endpoint, a secret long enough.
#[test]
fn gateway_settings_that_cannot_work_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let check = |role: Role, endpoint: &str, secret: Option<&str>| {
        let mut config = AppConfig::embedded(dir.path().join("data"), "http://x".into());
        config.server.role = role;
        config.server.redis_url = Some("redis://r".into());
        config.state.auth_issuer = Some("http://i".into());
        config.state.gateway.apigw_endpoint = Some(endpoint.into());
        config.state.gateway.apigw_secret = secret.map(str::to_owned);
        config.check_requirements().err().map(|e| e.to_string())
    };
    let url = "https://abc.execute-api.eu-west-1.amazonaws.com/prod";
    let good = Some("0123456789abcdef");
    assert_eq!(check(Role::State, url, good), None);
    assert_eq!(check(Role::All, url, good), None);
    assert!(
        check(Role::Files, url, good)
            .unwrap()
            .contains("for the roles that serve push")
    );
    assert!(
        check(Role::State, "wss://abc/prod", good)
            .unwrap()
            .contains("must be an http(s) URL")
    );
    for secret in [None, Some("short")] {
        assert!(
            check(Role::State, url, secret)
                .unwrap()
                .contains("--apigw-secret (SYNCSPHERE_APIGW_SECRET)"),
            "{secret:?}"
        );
    }
}

/// `healthcheck` asks the server at `SYNCSPHERE_LISTEN` (what a container's health check
/// runs): 0 while it serves, 1 with the reason when nothing answers.
#[test]
fn healthcheck_says_whether_the_server_at_the_listen_address_is_up() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_syncsphere-server"))
        .env_clear()
        .env("SYNCSPHERE_LISTEN", "127.0.0.1:0")
        .env("SYNCSPHERE_DATA_DIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("runs syncsphere-server");
    let line = BufReader::new(server.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("syncsphere-server listening on "))
        .expect("the server says where it listens");
    let addr = line
        .trim_start_matches("syncsphere-server listening on http://")
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let check = |listen: &str| {
        Command::new(env!("CARGO_BIN_EXE_syncsphere-server"))
            .env_clear()
            .env("SYNCSPHERE_LISTEN", listen)
            .arg("healthcheck")
            .output()
            .expect("runs the health check")
    };
    let up = check(&addr);
    let port = addr.rsplit(':').next().unwrap().to_owned();
    // Listening on every address: asked on loopback.
    let any = check(&format!("0.0.0.0:{port}"));
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(
        any.status.success(),
        "{}",
        String::from_utf8_lossy(&any.stderr)
    );
    let down = check(&addr);
    assert_eq!(down.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&down.stderr).contains(&format!("http://{addr}/healthz")),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
}

/// The binary refuses to start with the same message, from the environment alone.
#[test]
fn the_binary_names_what_its_role_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_syncsphere-server"))
        .env_clear()
        .env("SYNCSPHERE_ROLE", "state")
        .env("SYNCSPHERE_LISTEN", "127.0.0.1:0")
        .env("SYNCSPHERE_DATA_DIR", dir.path())
        .output()
        .expect("runs syncsphere-server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "the state role needs --redis-url (REDIS_URL) and --auth-issuer (SYNCSPHERE_AUTH_ISSUER)"
        ),
        "{stderr}"
    );
}
