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

    /// The service on `hub`, accepting what `verifier` accepts, fed by `subscriber`.
    pub fn open(
        &self,
        hub: Arc<PushHub>,
        verifier: Arc<Verifier>,
        subscriber: Arc<dyn Subscriber>,
    ) -> StateService {
        StateService {
            hub,
            verifier,
            subscriber,
            timeouts: self.ws_timeouts,
        }
    }
}
