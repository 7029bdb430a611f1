//! The built-in identity provider's configuration section (flags and environment), each default
//! written once here.

use super::IdpConfig;

/// Flags of the built-in identity provider.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[command(next_help_heading = "Identity provider")]
pub struct IdpArgs {
    /// User pool id of the built-in identity provider (the issuer is `{public URL}/{pool id}`).
    #[arg(
        long,
        env = "SYNCSPHERE_USER_POOL_ID",
        default_value = "local_syncsphere"
    )]
    pub user_pool_id: String,
    /// App client id that tokens are issued for.
    #[arg(
        long,
        env = "SYNCSPHERE_CLIENT_ID",
        default_value = "syncsphere-desktop"
    )]
    pub client_id: String,
    /// Region reported to clients for the Cognito API.
    #[arg(long, env = "SYNCSPHERE_REGION", default_value = "local-1")]
    pub region: String,
    /// Lifetime of access and ID tokens, in seconds.
    #[arg(long, env = "SYNCSPHERE_ACCESS_TOKEN_TTL", default_value_t = 3600)]
    pub access_token_ttl: u64,
    /// Lifetime of refresh tokens, in seconds.
    #[arg(long, env = "SYNCSPHERE_REFRESH_TOKEN_TTL", default_value_t = 30 * 24 * 3600)]
    pub refresh_token_ttl: u64,
}

impl IdpArgs {
    /// The provider's configuration when clients reach it at `public_url`.
    pub fn config(&self, public_url: &str) -> IdpConfig {
        IdpConfig {
            public_url: public_url.trim_end_matches('/').to_owned(),
            region: self.region.clone(),
            user_pool_id: self.user_pool_id.clone(),
            client_id: self.client_id.clone(),
            access_token_ttl_secs: self.access_token_ttl,
            refresh_token_ttl_secs: self.refresh_token_ttl,
        }
    }
}
