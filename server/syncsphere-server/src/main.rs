//! `syncsphere-server`: the SyncSphere services in one process.
//!
//! With no configuration it runs on embedded defaults — SQLite metadata and blobs under
//! `--data-dir`, the built-in Cognito-compatible identity provider, the in-process event bus —
//! on `127.0.0.1:8787`. `DATABASE_URL=postgres://…` moves the metadata to PostgreSQL.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use std::time::Duration;

use syncsphere_files::gc::GcPolicy;
use syncsphere_server::transport::{self, Transport};
use syncsphere_server::{AppConfig, Role, S3Config, build};

#[derive(Debug, Parser)]
#[command(
    name = "syncsphere-server",
    version,
    about = "SyncSphere file sync server (all roles in one process by default)"
)]
struct Args {
    /// Services to run: `all` (one process), `files` (identity provider + files; needs Redis)
    /// or `state` (push WebSockets; needs Redis and --auth-issuer).
    #[arg(long, env = "SYNCSPHERE_ROLE", default_value = "all")]
    role: Role,
    /// Redis for fanning changes out across instances (`redis://host:port`).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// State role: issuer of the tokens to accept, e.g. `http://files:8787/local_syncsphere`.
    #[arg(long, env = "SYNCSPHERE_AUTH_ISSUER")]
    auth_issuer: Option<String>,
    /// State instances for clients' push connections, announced in `/v1/config` (repeat the
    /// flag or separate with commas); default: this server.
    #[arg(long = "push-url", env = "SYNCSPHERE_PUSH_URLS", value_delimiter = ',')]
    push_urls: Vec<String>,
    /// State role: the issuer's JWKS URL (default `{issuer}/.well-known/jwks.json`).
    #[arg(long, env = "SYNCSPHERE_JWKS_URL")]
    jwks_url: Option<String>,
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, env = "SYNCSPHERE_LISTEN", default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// Directory for the embedded database, blobs and the identity provider's signing key.
    #[arg(long, env = "SYNCSPHERE_DATA_DIR", default_value = "./syncsphere-data")]
    data_dir: PathBuf,
    /// Metadata database (`postgres://…`); default: SQLite in the data directory.
    /// Also read from the file named by `DATABASE_URL_FILE`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// URL clients use to reach this server; default `http://{listen address}`.
    #[arg(long, env = "SYNCSPHERE_PUBLIC_URL")]
    public_url: Option<String>,
    /// User pool id of the built-in identity provider (the issuer is `{public URL}/{pool id}`).
    #[arg(
        long,
        env = "SYNCSPHERE_USER_POOL_ID",
        default_value = "local_syncsphere"
    )]
    user_pool_id: String,
    /// App client id that tokens are issued for.
    #[arg(
        long,
        env = "SYNCSPHERE_CLIENT_ID",
        default_value = "syncsphere-desktop"
    )]
    client_id: String,
    /// Region reported to clients for the Cognito API.
    #[arg(long, env = "SYNCSPHERE_REGION", default_value = "local-1")]
    region: String,
    /// Lifetime of access and ID tokens, in seconds.
    #[arg(long, env = "SYNCSPHERE_ACCESS_TOKEN_TTL", default_value_t = 3600)]
    access_token_ttl: u64,
    /// Simultaneous WebSocket connections allowed per user (all devices together).
    #[arg(long, env = "SYNCSPHERE_MAX_CONNECTIONS_PER_USER", default_value_t = syncsphere_state::DEFAULT_MAX_CONNECTIONS_PER_USER)]
    max_connections_per_user: usize,
    /// Open connections allowed per client address (an IPv4 address or an IPv6 /64), push
    /// WebSockets included; past it a connection is answered `429 too_many_connections`. 0 is
    /// unlimited: behind a reverse proxy every client has the proxy's address, so limit there.
    #[arg(long, env = "SYNCSPHERE_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = transport::DEFAULT_MAX_CONNECTIONS_PER_ADDRESS)]
    max_connections_per_address: usize,
    /// Seconds a client has to send a request's headers; an idle keep-alive connection is
    /// closed after as long.
    #[arg(long, env = "SYNCSPHERE_HEADER_TIMEOUT_SECS", default_value_t = transport::DEFAULT_HEADER_READ_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_secs: u64,
    /// Lifetime of refresh tokens, in seconds.
    #[arg(long, env = "SYNCSPHERE_REFRESH_TOKEN_TTL", default_value_t = 30 * 24 * 3600)]
    refresh_token_ttl: u64,
    /// Storage quota per user in bytes (live files; history and trash are not counted).
    /// Unlimited when unset.
    #[arg(long, env = "SYNCSPHERE_QUOTA_BYTES", value_parser = clap::value_parser!(i64).range(0..))]
    quota_bytes: Option<i64>,
    /// Days old revisions and trashed files are kept.
    #[arg(long, env = "SYNCSPHERE_RETENTION_DAYS", default_value_t = 30)]
    retention_days: u64,
    /// Seconds an unreferenced chunk (an interrupted upload) is kept for resuming.
    #[arg(long, env = "SYNCSPHERE_GC_GRACE_SECS", default_value_t = 24 * 3600)]
    gc_grace_secs: u64,
    /// Seconds between garbage-collection passes (0 disables them). Run the collector in one
    /// files instance of a cluster only.
    #[arg(long, env = "SYNCSPHERE_GC_INTERVAL_SECS", default_value_t = 3600)]
    gc_interval_secs: u64,
    /// Contents up to this many bytes uploaded in one request are kept in the metadata
    /// database, committed in the same transaction as their revision, instead of the blob
    /// store (0 turns it off; at most 64 KiB: this is for small files, and they are read into
    /// memory).
    #[arg(long, env = "SYNCSPHERE_INLINE_MAX_BYTES", default_value_t = syncsphere_files::inline::DEFAULT_INLINE_MAX_BYTES, value_parser = clap::value_parser!(u64).range(0..=syncsphere_files::inline::MAX_INLINE_BYTES))]
    inline_max_bytes: u64,
    /// Keep blobs in this S3 bucket instead of the data directory. Credentials come from the
    /// standard AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profile, ECS task role…).
    #[arg(long, env = "SYNCSPHERE_S3_BUCKET")]
    s3_bucket: Option<String>,
    /// Region of the bucket.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    s3_region: String,
    /// Endpoint of an S3-compatible server (default: Amazon S3).
    #[arg(long, env = "SYNCSPHERE_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// Path-style requests (`{endpoint}/{bucket}/{key}`), needed by most S3-compatible servers.
    #[arg(long, env = "SYNCSPHERE_S3_PATH_STYLE")]
    s3_path_style: bool,
    /// Prefix of every key in the bucket.
    #[arg(long, env = "SYNCSPHERE_S3_PREFIX", default_value = "")]
    s3_prefix: String,
    /// Check that every kept revision's content is complete, print the result and exit
    /// (status 1 if anything is missing). Does not serve.
    #[arg(long)]
    check: bool,
}

fn database_url(args: &Args) -> anyhow::Result<Option<String>> {
    if let Some(url) = &args.database_url {
        return Ok(Some(url.clone()));
    }
    match std::env::var_os("DATABASE_URL_FILE") {
        Some(path) => {
            let url = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "reading DATABASE_URL_FILE {}",
                    PathBuf::from(&path).display()
                )
            })?;
            Ok(Some(url.trim().to_owned()))
        }
        None => Ok(None),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,tower_http=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let database_url = database_url(&args)?;
    if args.check {
        return check(&args, database_url).await;
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let local = listener.local_addr()?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{local}"));
    let app = build(&config(&args, database_url, public_url.clone())).await?;

    // Tests and scripts read this line to learn the port.
    println!("syncsphere-server listening on http://{local} (public URL {public_url})");
    tracing::info!(%local, data_dir = %args.data_dir.display(), "ready");
    let hub = app.hub;
    let draining = hub.clone();
    let limits = Transport {
        header_read_timeout: Duration::from_secs(args.header_timeout_secs),
        max_connections_per_address: args.max_connections_per_address,
    };
    transport::serve(listener, app.router, limits, async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        draining.shutdown();
    })
    .await;
    // WebSockets are upgraded connections the server no longer tracks: let them send their
    // "going away" close frames before the process exits.
    if !hub.drained(std::time::Duration::from_secs(5)).await {
        tracing::warn!("some push connections did not close within 5 s");
    }
    Ok(())
}

fn config(args: &Args, database_url: Option<String>, public_url: String) -> AppConfig {
    AppConfig {
        role: args.role,
        redis_url: args.redis_url.clone(),
        auth_issuer: args.auth_issuer.clone(),
        jwks_url: args.jwks_url.clone(),
        push_urls: args.push_urls.clone(),
        data_dir: args.data_dir.clone(),
        database_url,
        public_url,
        user_pool_id: args.user_pool_id.clone(),
        client_id: args.client_id.clone(),
        region: args.region.clone(),
        access_token_ttl: args.access_token_ttl,
        refresh_token_ttl: args.refresh_token_ttl,
        max_connections_per_user: args.max_connections_per_user,
        ws_timeouts: Default::default(),
        quota_bytes: args.quota_bytes,
        gc_policy: GcPolicy {
            retention: Duration::from_secs(args.retention_days * 24 * 3600),
            grace: Duration::from_secs(args.gc_grace_secs),
        },
        gc_interval_secs: if args.check { 0 } else { args.gc_interval_secs },
        inline_max_bytes: args.inline_max_bytes,
        s3: args.s3_bucket.as_ref().map(|bucket| S3Config {
            bucket: bucket.clone(),
            region: args.s3_region.clone(),
            endpoint: args.s3_endpoint.clone(),
            path_style: args.s3_path_style,
            prefix: args.s3_prefix.clone(),
            access_key: None,
            secret_key: None,
        }),
    }
}

/// `--check`: verifies the file store without serving.
async fn check(args: &Args, database_url: Option<String>) -> anyhow::Result<()> {
    let app = build(&config(args, database_url, "http://check.invalid".into())).await?;
    let m = app
        .maintenance
        .context("--check needs the file store (role all or files)")?;
    let report = syncsphere_files::gc::check(&m.store, &m.blobs)
        .await
        .context("checking the file store")?;
    println!(
        "checked {} revisions: {} problem(s)",
        report.revisions_checked,
        report.problems.len()
    );
    for (user, file, rev, what) in &report.problems {
        println!("  user {user} file {file} rev {rev}: {what}");
    }
    if !report.problems.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
