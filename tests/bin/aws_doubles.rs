//! The API Gateway doubles of `harness/` as one process, for scripts that run the AWS shape by
//! hand or in a benchmark (`scripts/bench-push-gateway.sh`, `scripts/aws-topology.sh`): the
//! REST API double in front of a files service and the WebSocket API double in front of one or
//! more state services. Prints one JSON line with the URLs and the `@connections` credentials
//! (`{"rest_url", "ws_url", "management_url", "access_key", "secret_key", "region"}`), then
//! serves until killed. What the doubles model and what not: their module docs.

use std::time::Duration;

use clap::Parser;
use syncsphere_e2e::gateway::RestGateway;
use syncsphere_e2e::ws_gateway::{WsGateway, WsGatewayConfig};

#[derive(Parser)]
#[command(
    name = "syncsphere-aws-doubles",
    about = "API Gateway's REST and WebSocket API doubles"
)]
struct Args {
    /// The files service the REST API double proxies to (none: no REST double).
    #[arg(long)]
    rest_upstream: Option<String>,
    /// A state service the WebSocket API's integrations go to (repeat to spread them).
    #[arg(long = "ws-service")]
    ws_services: Vec<String>,
    /// The shared secret the WebSocket API's integrations send.
    #[arg(long, env = "SYNCSPHERE_APIGW_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Idle timeout of a WebSocket connection, seconds.
    #[arg(long, default_value_t = 600)]
    idle_timeout_secs: u64,
    /// Maximum duration of a WebSocket connection, seconds.
    #[arg(long, default_value_t = 7200)]
    max_duration_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rest = match &args.rest_upstream {
        Some(upstream) => Some(RestGateway::start(upstream).await?),
        None => None,
    };
    let ws = if args.ws_services.is_empty() {
        None
    } else {
        let mut config = WsGatewayConfig::for_services(&args.ws_services);
        config.idle_timeout = Duration::from_secs(args.idle_timeout_secs);
        config.max_duration = Duration::from_secs(args.max_duration_secs);
        if let Some(secret) = &args.secret {
            config.static_headers = vec![("x-syncsphere-gateway-secret".into(), secret.clone())];
        }
        Some(WsGateway::start(config).await?)
    };
    let (access_key, secret_key, region) = ws.as_ref().map_or(("", "", ""), |w| w.credentials());
    println!(
        "{}",
        serde_json::json!({
            "rest_url": rest.as_ref().map(|r| r.url.clone()),
            "ws_url": ws.as_ref().map(|w| w.ws_url.clone()),
            "management_url": ws.as_ref().map(|w| w.management_url.clone()),
            "access_key": access_key,
            "secret_key": secret_key,
            "region": region,
        })
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
