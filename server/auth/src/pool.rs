//! An external Amazon Cognito user pool (AWS mode): its configuration section, and the verifier
//! and client settings it implies. With a pool configured, the built-in identity provider is off
//! and every role accepts the pool's access tokens only.

use syncsphere_protocol::{CognitoConfig, PasswordFlow};

use crate::{JwksSource, Verifier};

/// Flags of an external Cognito user pool.
#[derive(Debug, Clone, PartialEq, Eq, Default, clap::Args)]
#[command(next_help_heading = "Amazon Cognito user pool (AWS mode)")]
pub struct PoolArgs {
    /// User pool id, e.g. `eu-west-1_AbCdEf123`. Setting it turns the built-in identity
    /// provider off: clients sign in with the pool, and every role accepts its tokens.
    #[arg(long, env = "SYNCSPHERE_COGNITO_USER_POOL_ID")]
    pub cognito_user_pool_id: Option<String>,
    /// App client ids whose access tokens are accepted (repeat the flag or separate with
    /// commas); the first is the one announced to clients. Required with a pool.
    #[arg(
        long = "cognito-client-id",
        env = "SYNCSPHERE_COGNITO_CLIENT_IDS",
        value_delimiter = ','
    )]
    pub cognito_client_ids: Vec<String>,
    /// The pool's region; default: the part of the pool id before `_`.
    #[arg(long, env = "SYNCSPHERE_COGNITO_REGION")]
    pub cognito_region: Option<String>,
    /// Expected `iss` of the pool's tokens; default
    /// `https://cognito-idp.{region}.amazonaws.com/{pool id}`.
    #[arg(long, env = "SYNCSPHERE_COGNITO_ISSUER")]
    pub cognito_issuer: Option<String>,
    /// Where the pool's signing keys are; default `{issuer}/.well-known/jwks.json` (an
    /// emulator serves them elsewhere than its `iss`).
    #[arg(long, env = "SYNCSPHERE_COGNITO_JWKS_URL")]
    pub cognito_jwks_url: Option<String>,
    /// The Cognito API endpoint announced to clients; default
    /// `https://cognito-idp.{region}.amazonaws.com`.
    #[arg(long, env = "SYNCSPHERE_COGNITO_ENDPOINT")]
    pub cognito_endpoint: Option<String>,
    /// How clients prove the password to the pool: `user-srp-auth` (the default, what a new
    /// app client allows) or `user-password-auth` (the app client must allow it).
    #[arg(long, env = "SYNCSPHERE_COGNITO_AUTH_FLOW", value_enum)]
    pub cognito_auth_flow: Option<AuthFlowArg>,
}

/// `--cognito-auth-flow`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthFlowArg {
    UserSrpAuth,
    UserPasswordAuth,
}

/// A configured pool, its defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub user_pool_id: String,
    pub client_ids: Vec<String>,
    pub region: String,
    pub issuer: String,
    pub jwks_url: String,
    pub endpoint: String,
    pub auth_flow: PasswordFlow,
}

/// Why a pool's settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error(
        "--cognito-user-pool-id needs at least one --cognito-client-id (SYNCSPHERE_COGNITO_CLIENT_IDS)"
    )]
    NoClient,
    #[error(
        "cannot tell the region of user pool '{0}' (ids look like `eu-west-1_AbCdEf123`): set --cognito-region"
    )]
    NoRegion(String),
    #[error("--cognito-* settings given without --cognito-user-pool-id")]
    NoPool,
}

impl PoolArgs {
    /// Whether any pool setting is present (so a pool is meant).
    fn any(&self) -> bool {
        self.cognito_user_pool_id.is_some()
            || !self.cognito_client_ids.is_empty()
            || self.cognito_region.is_some()
            || self.cognito_issuer.is_some()
            || self.cognito_jwks_url.is_some()
            || self.cognito_endpoint.is_some()
            || self.cognito_auth_flow.is_some()
    }

    /// The pool, `None` when none is configured; an error for settings that cannot work.
    pub fn pool(&self) -> Result<Option<Pool>, PoolError> {
        let Some(pool_id) = self.cognito_user_pool_id.clone() else {
            return if self.any() {
                Err(PoolError::NoPool)
            } else {
                Ok(None)
            };
        };
        let client_ids: Vec<String> = self
            .cognito_client_ids
            .iter()
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect();
        if client_ids.is_empty() {
            return Err(PoolError::NoClient);
        }
        let region = match &self.cognito_region {
            Some(r) => r.clone(),
            None => match pool_id.split_once('_') {
                Some((region, _)) if !region.is_empty() => region.to_owned(),
                _ => return Err(PoolError::NoRegion(pool_id)),
            },
        };
        let issuer = self
            .cognito_issuer
            .clone()
            .unwrap_or_else(|| format!("https://cognito-idp.{region}.amazonaws.com/{pool_id}"));
        let issuer = issuer.trim_end_matches('/').to_owned();
        let jwks_url = self
            .cognito_jwks_url
            .clone()
            .unwrap_or_else(|| format!("{issuer}/.well-known/jwks.json"));
        let endpoint = self
            .cognito_endpoint
            .clone()
            .unwrap_or_else(|| format!("https://cognito-idp.{region}.amazonaws.com"));
        Ok(Some(Pool {
            user_pool_id: pool_id,
            client_ids,
            region,
            issuer,
            jwks_url,
            endpoint,
            auth_flow: match self.cognito_auth_flow {
                Some(AuthFlowArg::UserPasswordAuth) => PasswordFlow::UserPasswordAuth,
                Some(AuthFlowArg::UserSrpAuth) | None => PasswordFlow::UserSrpAuth,
            },
        }))
    }
}

impl Pool {
    /// A verifier of the pool's access tokens (keys fetched from the JWKS URL, cached by `kid`).
    pub fn verifier(&self) -> Verifier {
        Verifier::new(
            self.issuer.clone(),
            self.client_ids.clone(),
            JwksSource::Remote(self.jwks_url.clone()),
        )
    }

    /// What clients are told in `/v1/config`: sign in with the pool through the first client.
    /// Its tokens are not bound to a device (`device_keys: false`): only the built-in provider
    /// honours `DEVICE_KEY`.
    pub fn client_config(&self) -> CognitoConfig {
        CognitoConfig {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            user_pool_id: self.user_pool_id.clone(),
            client_id: self.client_ids[0].clone(),
            device_keys: false,
            auth_flow: self.auth_flow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pool: Option<&str>, clients: &[&str]) -> PoolArgs {
        PoolArgs {
            cognito_user_pool_id: pool.map(str::to_owned),
            cognito_client_ids: clients.iter().map(|c| (*c).to_owned()).collect(),
            ..PoolArgs::default()
        }
    }

    #[test]
    fn no_settings_no_pool() {
        assert_eq!(PoolArgs::default().pool(), Ok(None));
    }

    #[test]
    fn defaults_follow_the_pool_id_as_aws_names_them() {
        let pool = args(Some("eu-west-1_AbC123"), &["c1", " c2 "])
            .pool()
            .unwrap()
            .unwrap();
        assert_eq!(pool.region, "eu-west-1");
        assert_eq!(
            pool.issuer,
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
        );
        assert_eq!(
            pool.jwks_url,
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123/.well-known/jwks.json"
        );
        assert_eq!(pool.endpoint, "https://cognito-idp.eu-west-1.amazonaws.com");
        assert_eq!(pool.client_ids, ["c1", "c2"]);
        let announced = pool.client_config();
        assert_eq!(announced.client_id, "c1");
        assert!(!announced.device_keys);
    }

    #[test]
    fn an_emulator_serves_keys_apart_from_its_issuer() {
        let mut a = args(Some("us-east-1_x"), &["c"]);
        a.cognito_jwks_url = Some("http://127.0.0.1:5000/us-east-1_x/.well-known/jwks.json".into());
        a.cognito_endpoint = Some("http://127.0.0.1:5000".into());
        let pool = a.pool().unwrap().unwrap();
        assert_eq!(
            pool.issuer,
            "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_x"
        );
        assert_eq!(
            pool.jwks_url,
            "http://127.0.0.1:5000/us-east-1_x/.well-known/jwks.json"
        );
        assert_eq!(pool.client_config().endpoint, "http://127.0.0.1:5000");
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        assert_eq!(
            args(Some("us-east-1_x"), &[]).pool(),
            Err(PoolError::NoClient)
        );
        assert_eq!(
            args(Some("us-east-1_x"), &[" "]).pool(),
            Err(PoolError::NoClient)
        );
        assert_eq!(
            args(Some("nounderscore"), &["c"]).pool(),
            Err(PoolError::NoRegion("nounderscore".into()))
        );
        assert_eq!(args(None, &["c"]).pool(), Err(PoolError::NoPool));
        let mut explicit = args(Some("nounderscore"), &["c"]);
        explicit.cognito_region = Some("eu-north-1".into());
        assert_eq!(explicit.pool().unwrap().unwrap().region, "eu-north-1");
    }
}
