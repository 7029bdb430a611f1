//! The State service's configuration section (flags and environment), each default written once
//! here.

use std::sync::Arc;

use syncsphere_auth::Verifier;
use syncsphere_events::Subscriber;

use crate::{DEFAULT_MAX_CONNECTIONS_PER_USER, PushHub, StateService, WsTimeouts};

/// Flags of the State service (push WebSockets).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[command(next_help_heading = "State service (push)")]
pub struct StateArgs {
    /// Simultaneous WebSocket connections allowed per user (all devices together).
    #[arg(long, env = "SYNCSPHERE_MAX_CONNECTIONS_PER_USER", default_value_t = DEFAULT_MAX_CONNECTIONS_PER_USER)]
    pub max_connections_per_user: usize,
    /// State role: issuer of the tokens to accept, e.g. `http://files:8787/local_syncsphere`.
    #[arg(long, env = "SYNCSPHERE_AUTH_ISSUER")]
    pub auth_issuer: Option<String>,
    /// State role: the issuer's JWKS URL (default `{issuer}/.well-known/jwks.json`).
    #[arg(long, env = "SYNCSPHERE_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// How long a push socket's write and close handshake may take (not a flag: tests shorten
    /// it).
    #[arg(skip)]
    pub ws_timeouts: WsTimeouts,
    #[command(flatten)]
    pub gateway: GatewayArgs,
    #[command(flatten)]
    pub cloudwatch: CloudWatchArgs,
}

/// AWS mode: the connections a task serves, published for autoscaling (decision 0044).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[command(next_help_heading = "Connections metric for CloudWatch")]
pub struct CloudWatchArgs {
    /// Publish the push connections this process serves to CloudWatch under this namespace,
    /// as metric `Connections` once per interval (credentials and region: the default AWS
    /// chain, e.g. the task role and `AWS_REGION`). Off without it.
    #[arg(long, env = "SYNCSPHERE_CLOUDWATCH_NAMESPACE")]
    pub cloudwatch_namespace: Option<String>,
    /// The metric's dimensions, `Name=Value` (repeat the flag or separate with commas); the
    /// same for every task of a service, so that `Average` is the connections per task.
    #[arg(
        long = "cloudwatch-dimension",
        env = "SYNCSPHERE_CLOUDWATCH_DIMENSIONS",
        value_delimiter = ','
    )]
    pub cloudwatch_dimensions: Vec<String>,
    /// Seconds between two data points.
    #[arg(long, env = "SYNCSPHERE_CLOUDWATCH_INTERVAL_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub cloudwatch_interval_secs: u64,
    /// CloudWatch's endpoint (default: the region's; emulators set theirs).
    #[arg(long, env = "SYNCSPHERE_CLOUDWATCH_ENDPOINT")]
    pub cloudwatch_endpoint: Option<String>,
}

impl CloudWatchArgs {
    /// The publisher of `gauge`, if a namespace is set.
    pub async fn publisher(
        &self,
        gauge: prometheus_client::metrics::gauge::Gauge,
    ) -> Result<Option<crate::cloudwatch::Publisher>, crate::cloudwatch::PublishError> {
        let Some(namespace) = &self.cloudwatch_namespace else {
            return Ok(None);
        };
        crate::cloudwatch::Publisher::new(
            namespace,
            &self.cloudwatch_dimensions,
            self.cloudwatch_endpoint.as_deref(),
            std::time::Duration::from_secs(self.cloudwatch_interval_secs),
            gauge,
        )
        .await
        .map(Some)
    }
}

/// AWS mode: push connections held by API Gateway's WebSocket API (decision 0042).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[command(next_help_heading = "State service behind API Gateway's WebSocket API")]
pub struct GatewayArgs {
    /// The WebSocket API's `@connections` endpoint, e.g.
    /// `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`: serves
    /// `POST /v1/apigw/{connect,default,disconnect}` for its integrations and pushes through
    /// it (credentials: the default AWS chain, e.g. the task role).
    #[arg(long, env = "SYNCSPHERE_APIGW_ENDPOINT")]
    pub apigw_endpoint: Option<String>,
    /// The secret API Gateway's integrations send in `x-syncsphere-gateway-secret` (at least
    /// 16 characters). Also read from the file named by `SYNCSPHERE_APIGW_SECRET_FILE`.
    #[arg(long, env = "SYNCSPHERE_APIGW_SECRET", hide_env_values = true)]
    pub apigw_secret: Option<String>,
    /// The `@connections` endpoint's region (default: the one in its host name, else the AWS
    /// default chain's).
    #[arg(long, env = "SYNCSPHERE_APIGW_REGION")]
    pub apigw_region: Option<String>,
    /// API Gateway's idle timeout, told to clients so that their heartbeats come in time.
    #[arg(
        long,
        env = "SYNCSPHERE_APIGW_IDLE_TIMEOUT_SECS",
        default_value_t = 600
    )]
    pub apigw_idle_timeout_secs: u64,
    /// API Gateway's maximum connection duration, told to clients so that they reconnect first.
    #[arg(
        long,
        env = "SYNCSPHERE_APIGW_MAX_DURATION_SECS",
        default_value_t = 7200
    )]
    pub apigw_max_duration_secs: u64,
}

impl GatewayArgs {
    /// The shared secret: the flag, else the file `SYNCSPHERE_APIGW_SECRET_FILE` names.
    pub fn secret(&self) -> Result<Option<String>, String> {
        if let Some(secret) = &self.apigw_secret {
            return Ok(Some(secret.clone()));
        }
        let Some(path) = std::env::var_os("SYNCSPHERE_APIGW_SECRET_FILE") else {
            return Ok(None);
        };
        std::fs::read_to_string(&path)
            .map(|s| Some(s.trim().to_owned()))
            .map_err(|e| {
                format!(
                    "reading SYNCSPHERE_APIGW_SECRET_FILE {}: {e}",
                    path.to_string_lossy()
                )
            })
    }

    /// The limits told to clients in `welcome`.
    pub fn limits(&self) -> syncsphere_protocol::ws::ConnectionLimits {
        syncsphere_protocol::ws::ConnectionLimits {
            idle_timeout_secs: self.apigw_idle_timeout_secs,
            max_duration_secs: self.apigw_max_duration_secs,
        }
    }
}

impl StateArgs {
    /// The hub, with this section's per-user limit.
    pub fn hub(&self) -> Arc<PushHub> {
        Arc::new(PushHub::with_limit(self.max_connections_per_user))
    }

    /// The issuer whose tokens a stand-alone State service accepts, and where its keys are;
    /// `None` without `--auth-issuer`.
    pub fn issuer_and_jwks(&self) -> Option<(String, String)> {
        let issuer = self.auth_issuer.clone()?;
        let jwks = self
            .jwks_url
            .clone()
            .unwrap_or_else(|| format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')));
        Some((issuer, jwks))
    }

    /// The service on `hub`, accepting what `verifier` accepts, fed by `subscriber`; serving
    /// API Gateway's connections too with `gateway`.
    pub fn open(
        &self,
        hub: Arc<PushHub>,
        verifier: Arc<Verifier>,
        subscriber: Arc<dyn Subscriber>,
        gateway: Option<Arc<crate::apigw::Gateway>>,
    ) -> StateService {
        StateService {
            hub,
            verifier,
            subscriber,
            timeouts: self.ws_timeouts,
            gateway,
        }
    }
}
