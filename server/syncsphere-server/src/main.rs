//! `syncsphere-server`: the SyncSphere services in one process.
//!
//! With no configuration it runs on embedded defaults — SQLite metadata and blobs under
//! `--data-dir`, the built-in Cognito-compatible identity provider, the in-process event bus —
//! on `127.0.0.1:8787`. `DATABASE_URL=postgres://…` moves the metadata to PostgreSQL.
//! `syncsphere-server check [flags]` verifies the file store instead of serving.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use syncsphere_server::transport;
use syncsphere_server::{AppConfig, Cli, Command, build};

/// `syncsphere-server healthcheck`: `GET url` answered `200` within 3 s, or exit 1 saying why.
async fn healthcheck(url: &str) -> anyhow::Result<()> {
    let answer = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?
        .get(url)
        .send()
        .await;
    match answer {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => {
            eprintln!("{url} answered {}", resp.status());
            std::process::exit(1)
        }
        Err(e) => {
            eprintln!("{url}: {e}");
            std::process::exit(1)
        }
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
    // rustls's process-wide provider, before any TLS (`rediss://` asks for the default): ring,
    // the one compiled in (sqlx's PostgreSQL TLS names it itself; decision 0043).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let (mut config, check_only) = match cli.command {
        Some(Command::Healthcheck(args)) => return healthcheck(&args.url()).await,
        Some(Command::Check(args)) => (args.config, true),
        None if cli.check => {
            tracing::warn!("--check is deprecated: use `syncsphere-server check [flags]`");
            (cli.config, true)
        }
        None => (cli.config, false),
    };
    config.server.read_url_files()?;
    if check_only {
        return check(config).await;
    }
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding {}", config.server.listen))?;
    let local = listener.local_addr()?;
    let public_url = config
        .server
        .public_url
        .get_or_insert_with(|| format!("http://{local}"))
        .clone();
    let app = build(&config).await?;

    // Tests and scripts read this line to learn the port.
    println!("syncsphere-server listening on http://{local} (public URL {public_url})");
    tracing::info!(%local, data_dir = %config.server.data_dir.display(), "ready");
    let hub = app.hub;
    let draining = hub.clone();
    transport::serve(
        listener,
        app.router,
        config.server.transport(),
        async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            draining.shutdown();
        },
    )
    .await;
    // WebSockets are upgraded connections the server no longer tracks: let them send their
    // "going away" close frames before the process exits.
    if !hub.drained(Duration::from_secs(5)).await {
        tracing::warn!("some push connections did not close within 5 s");
    }
    Ok(())
}

/// `check`: verifies the file store without serving (and without the background collector).
async fn check(mut config: AppConfig) -> anyhow::Result<()> {
    config.files.gc_interval_secs = 0;
    config.server.public_url = Some("http://check.invalid".into());
    let app = build(&config).await?;
    let m = app
        .maintenance
        .context("check needs the file store (role all or files)")?;
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
