//! The built-in identity provider's configuration section (flags and environment), each default
//! written once here.

use super::{IdpConfig, MailSettings, PasswordPolicy};

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
    /// Shortest password accepted at sign-up (6-99, as Cognito allows).
    #[arg(
        long,
        env = "SYNCSPHERE_PASSWORD_MIN_LENGTH",
        default_value_t = 8,
        value_parser = clap::value_parser!(u8).range(6..=99)
    )]
    pub password_min_length: u8,
    /// Character classes a new password must contain: any of `upper`, `lower`, `digit`,
    /// `symbol`, comma-separated, or `none` (Cognito's default policy asks for all four).
    #[arg(
        long,
        env = "SYNCSPHERE_PASSWORD_REQUIRE",
        value_delimiter = ',',
        default_value = "upper,lower,digit,symbol"
    )]
    pub password_require: Vec<CharClass>,
    /// Mail relay for confirmation and password-reset codes:
    /// `smtp://[user:password@]host[:port][?tls=required]` (STARTTLS) or `smtps://…`. Set, new
    /// accounts are confirmed by a mailed code and forgotten passwords can be reset; unset,
    /// accounts are confirmed at once.
    #[arg(long, env = "SYNCSPHERE_SMTP_URL", requires = "mail_from")]
    pub smtp_url: Option<String>,
    /// Sender of those messages, e.g. `SyncSphere <no-reply@example.com>` (an address the relay
    /// may send as).
    #[arg(long, env = "SYNCSPHERE_MAIL_FROM")]
    pub mail_from: Option<String>,
    /// Behind a reverse proxy: the header it sets to the client's address (e.g.
    /// `X-Forwarded-For`, whose last entry is read, or `X-Real-IP`), so that password guessing
    /// is throttled per client and not per proxy. Only set it when every request comes through
    /// that proxy (a client could write the header itself otherwise).
    #[arg(long, env = "SYNCSPHERE_CLIENT_ADDRESS_HEADER")]
    pub client_address_header: Option<String>,
}

/// A character class a password policy can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CharClass {
    Upper,
    Lower,
    Digit,
    Symbol,
    /// Requires nothing (alone).
    None,
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
            password_policy: self.password_policy(),
            mail: self.smtp_url.as_ref().map(|url| MailSettings {
                smtp_url: url.clone(),
                from: self.mail_from.clone().unwrap_or_default(),
            }),
            client_address_header: self.client_address_header.clone(),
        }
    }

    pub fn password_policy(&self) -> PasswordPolicy {
        let has = |class| self.password_require.contains(&class);
        PasswordPolicy {
            min_length: usize::from(self.password_min_length),
            require_upper: has(CharClass::Upper),
            require_lower: has(CharClass::Lower),
            require_digit: has(CharClass::Digit),
            require_symbol: has(CharClass::Symbol),
        }
    }
}
