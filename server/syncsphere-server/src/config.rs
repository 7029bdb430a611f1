//! The server's configuration: one section per service, each in the crate that owns it
//! ([`IdpArgs`], [`FilesArgs`], [`StateArgs`]) plus the binary's own ([`ServerArgs`]), every
//! default written once in its `#[arg]`. A role is which sections it uses; what a role needs is
//! checked before anything opens ([`AppConfig::check_requirements`]).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use syncsphere_auth::idp::IdpArgs;
use syncsphere_auth::pool::{Pool, PoolArgs};
use syncsphere_events::redis::RedisEndpoint;
use syncsphere_files::FilesArgs;
use syncsphere_state::StateArgs;

use crate::transport::{self, Transport};

/// The `syncsphere-server` command line.
#[derive(Debug, Parser)]
#[command(
    name = "syncsphere-server",
    version,
    about = "SyncSphere file sync server (all roles in one process by default)",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(flatten)]
    pub config: AppConfig,
    /// Deprecated: the `check` subcommand.
    #[arg(long, hide = true)]
    pub check: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

// Parsed once at start: the size of `Check`'s whole configuration does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check that every kept revision's content is complete and that no live file lies under
    /// another, print the result and exit (status 1 on problems). Does not serve.
    Check(CheckArgs),
    /// Ask the server listening at `--listen` whether it is up (`GET /healthz`): exit 0 if it
    /// answers `200` within 3 s, else print why and exit 1. For container health checks (the
    /// image has no curl).
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Where the server listens (an unspecified address such as 0.0.0.0 is asked on loopback).
    #[arg(long, env = "SYNCSPHERE_LISTEN", default_value = "127.0.0.1:8787")]
    pub listen: std::net::SocketAddr,
}

impl HealthcheckArgs {
    /// The `/healthz` URL of the server listening at `listen`.
    pub fn url(&self) -> String {
        let mut addr = self.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("http://{addr}/healthz")
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: AppConfig,
}

/// Settings of the server: every service's section.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct AppConfig {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub idp: IdpArgs,
    #[command(flatten)]
    pub pool: PoolArgs,
    #[command(flatten)]
    pub files: FilesArgs,
    #[command(flatten)]
    pub state: StateArgs,
}

/// Which services this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    All,
    Files,
    State,
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(Role::All),
            "files" => Ok(Role::Files),
            "state" => Ok(Role::State),
            other => Err(format!(
                "unknown role '{other}' (expected all, files or state)"
            )),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::All => "all",
            Role::Files => "files",
            Role::State => "state",
        })
    }
}

/// The binary's own flags: role, listener, storage locations, cluster.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ServerArgs {
    /// Services to run: `all` (one process), `files` (identity provider + files; needs Redis)
    /// or `state` (push WebSockets; needs Redis, and --auth-issuer or a Cognito user pool).
    #[arg(long, env = "SYNCSPHERE_ROLE", default_value = "all")]
    pub role: Role,
    /// Redis for fanning changes out across instances: `redis://host:port`, or `rediss://…` for
    /// TLS (the server's certificate checked against the system's trust store, or the file
    /// `SSL_CERT_FILE` names). Also read from the file named by `REDIS_URL_FILE`.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Redis's password (ElastiCache's AUTH token), used when `--redis-url` carries none.
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,
    /// State instances for clients' push connections, announced in `/v1/config` (repeat the
    /// flag or separate with commas); default: this server.
    #[arg(long = "push-url", env = "SYNCSPHERE_PUSH_URLS", value_delimiter = ',')]
    pub push_urls: Vec<String>,
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, env = "SYNCSPHERE_LISTEN", default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// Directory for the embedded database, blobs and the identity provider's signing key.
    #[arg(long, env = "SYNCSPHERE_DATA_DIR", default_value = "./syncsphere-data")]
    pub data_dir: PathBuf,
    /// Metadata database (`postgres://…`); default: SQLite in the data directory. TLS:
    /// `?sslmode=require` (encrypted), `?sslmode=verify-full&sslrootcert=/path/ca.pem` (and the
    /// server's certificate checked); the password from `PGPASSWORD` when the URL carries none.
    /// Also read from the file named by `DATABASE_URL_FILE`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// URL clients use to reach this server; default `http://{listen address}`.
    #[arg(long, env = "SYNCSPHERE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Open connections allowed per client address (an IPv4 address or an IPv6 /64), push
    /// WebSockets included; past it a connection is answered `429 too_many_connections`. 0 is
    /// unlimited: behind a reverse proxy every client has the proxy's address, so limit there.
    #[arg(long, env = "SYNCSPHERE_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = transport::DEFAULT_MAX_CONNECTIONS_PER_ADDRESS)]
    pub max_connections_per_address: usize,
    /// Seconds a client has to send a request's headers; an idle keep-alive connection is
    /// closed after as long.
    #[arg(long, env = "SYNCSPHERE_HEADER_TIMEOUT_SECS", default_value_t = transport::DEFAULT_HEADER_READ_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_secs: u64,
    /// Seconds a request body may stall (nothing arriving while the server waits for it)
    /// before the request is answered `408 request_timeout` and its connection closed.
    #[arg(long, env = "SYNCSPHERE_BODY_TIMEOUT_SECS", default_value_t = crate::stalled_body::DEFAULT_BODY_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_secs: u64,
}

impl ServerArgs {
    /// `--public-url` without its trailing `/`; default `http://{--listen}` (the binary sets it
    /// from the bound address first, for port 0).
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    /// Fills what the environment gives as files: without `--database-url`, the file named by
    /// `DATABASE_URL_FILE`; without `--redis-url`, the one named by `REDIS_URL_FILE` (each
    /// trimmed; a mounted secret usually ends with a newline).
    pub fn read_url_files(&mut self) -> anyhow::Result<()> {
        for (url, var) in [
            (&mut self.database_url, "DATABASE_URL_FILE"),
            (&mut self.redis_url, "REDIS_URL_FILE"),
        ] {
            if url.is_some() {
                continue;
            }
            if let Some(path) = std::env::var_os(var) {
                let path = PathBuf::from(path);
                let read = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {var} {}", path.display()))?;
                *url = Some(read.trim().to_owned());
            }
        }
        Ok(())
    }

    /// Redis, if `--redis-url` is set: its URL with `--redis-password`.
    pub fn redis(&self) -> Option<RedisEndpoint> {
        let url = self.redis_url.as_deref()?;
        Some(RedisEndpoint::new(url, self.redis_password.clone()))
    }

    /// How long a request body may stall.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_secs)
    }

    /// The listener's limits.
    pub fn transport(&self) -> Transport {
        Transport {
            header_read_timeout: Duration::from_secs(self.header_timeout_secs),
            max_connections_per_address: self.max_connections_per_address,
        }
    }
}

impl AppConfig {
    /// The documented defaults — what the binary runs with given no flag and no environment —
    /// with `data_dir` and `public_url`.
    pub fn embedded(data_dir: PathBuf, public_url: String) -> Self {
        let mut config = Self::defaults();
        config.server.data_dir = data_dir;
        config.server.public_url = Some(public_url);
        config
    }

    /// Parses `args` (flags only, no program name) from the clap definition with every
    /// environment variable ignored.
    pub fn parse_without_env<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let command = Self::augment_args(clap::Command::new("syncsphere-server"))
            .mut_args(|arg| arg.env(None::<&str>));
        let argv = std::iter::once(std::ffi::OsString::from("syncsphere-server"))
            .chain(args.into_iter().map(Into::into));
        let matches = command.try_get_matches_from(argv)?;
        Self::from_arg_matches(&matches)
    }

    /// Every default, as written once in the sections' `#[arg]`s.
    pub fn defaults() -> Self {
        Self::parse_without_env(std::iter::empty::<&str>()).expect("the defaults parse")
    }

    /// The external Cognito user pool, if one is configured (then the built-in identity
    /// provider is off); an error for pool settings that cannot work.
    pub fn pool(&self) -> anyhow::Result<Option<Pool>> {
        Ok(self.pool.pool()?)
    }

    /// AWS mode's push settings, if `--apigw-endpoint` is given: a role that serves push, an
    /// `http(s)` endpoint, a secret of 16 characters or more.
    fn check_gateway(&self) -> anyhow::Result<()> {
        let gateway = &self.state.gateway;
        let Some(endpoint) = &gateway.apigw_endpoint else {
            return Ok(());
        };
        anyhow::ensure!(
            self.server.role != Role::Files,
            "{} is for the roles that serve push (all, state), not files",
            flag_and_env("apigw_endpoint")
        );
        anyhow::ensure!(
            endpoint.starts_with("https://") || endpoint.starts_with("http://"),
            "{} must be an http(s) URL (the WebSocket API's @connections endpoint), not {endpoint}",
            flag_and_env("apigw_endpoint")
        );
        let secret = gateway.secret().map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            secret.as_deref().is_some_and(|s| s.len() >= 16),
            "{} needs {} (or SYNCSPHERE_APIGW_SECRET_FILE) of at least 16 characters: \
             API Gateway's integrations send it so that nobody else can call /v1/apigw/*",
            flag_and_env("apigw_endpoint"),
            flag_and_env("apigw_secret")
        );
        Ok(())
    }

    /// Flags the role needs and lacks, named `--flag (ENV)` (alternatives joined by "or").
    pub fn missing_requirements(&self) -> Vec<String> {
        let redis = self.server.redis_url.is_some();
        let issuer = self.state.auth_issuer.is_some() || self.pool.cognito_user_pool_id.is_some();
        let needed: &[(&[&str], bool)] = match self.server.role {
            Role::All => &[],
            Role::Files => &[(&["redis_url"], redis)],
            Role::State => &[
                (&["redis_url"], redis),
                (&["auth_issuer", "cognito_user_pool_id"], issuer),
            ],
        };
        needed
            .iter()
            .filter(|(_, present)| !present)
            .map(|(ids, _)| {
                ids.iter()
                    .map(|id| flag_and_env(id))
                    .collect::<Vec<_>>()
                    .join(" or ")
            })
            .collect()
    }

    /// One error naming every flag the role needs and lacks.
    pub fn check_requirements(&self) -> anyhow::Result<()> {
        self.pool()?;
        self.check_gateway()?;
        let missing = self.missing_requirements();
        if missing.is_empty() {
            return Ok(());
        }
        anyhow::bail!(
            "the {} role needs {}",
            self.server.role,
            missing.join(" and ")
        )
    }
}

/// `--flag (ENV)` of the argument `id`, from the clap definition.
fn flag_and_env(id: &str) -> String {
    let command = Cli::command();
    let arg = command
        .get_arguments()
        .find(|a| a.get_id() == id)
        .unwrap_or_else(|| panic!("no argument {id}"));
    let long = arg.get_long().unwrap_or(id);
    match arg.get_env() {
        Some(env) => format!("--{long} ({})", env.to_string_lossy()),
        None => format!("--{long}"),
    }
}
