//! The administrators' system-wide settings: which server (and, where the server should not
//! decide it, which Cognito user pool) clients sign in to, optionally locked so users cannot
//! point the client elsewhere. Read by the CLI and the desktop app alike.
//!
//! Where: `$SYNCSPHERE_SYSTEM_CONFIG`, else `/etc/syncsphere/config.toml` (Linux),
//! `%ProgramData%\SyncSphere\config.toml` (Windows),
//! `/Library/Application Support/SyncSphere/config.toml` (macOS). A missing file means no
//! presets; a file that cannot be read or parsed is an error, never ignored (an administrator's
//! lock must not silently disappear because of a typo — unknown keys are errors too).

use std::path::PathBuf;

use serde::Deserialize;
use syncsphere_protocol::CognitoConfig;

use crate::SyncError;

/// Overrides where the system config is read from — in debug builds only (tests): in a
/// release build any user could point it at an empty file and lift the administrator's lock.
pub const SYSTEM_CONFIG_ENV: &str = "SYNCSPHERE_SYSTEM_CONFIG";

/// `/etc/syncsphere/config.toml` and its equivalents.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemConfig {
    /// The server clients sign in to unless the user picks another.
    pub server_url: Option<String>,
    /// Users may not pick another server: sign-in refuses, the app shows the field read-only.
    #[serde(default)]
    pub lock_server_url: bool,
    /// The user pool to sign in to instead of the one the server's `/v1/config` announces.
    pub cognito: Option<CognitoPreset>,
}

/// Cognito settings an administrator fixes; each one set replaces the server's.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CognitoPreset {
    pub region: Option<String>,
    pub user_pool_id: Option<String>,
    pub client_id: Option<String>,
    /// The Cognito Identity Provider endpoint; for another pool than the server's it defaults
    /// to Amazon Cognito's, `https://cognito-idp.{region}.amazonaws.com`.
    pub endpoint: Option<String>,
}

impl CognitoPreset {
    pub(crate) fn apply(&self, c: &mut CognitoConfig) {
        let other_pool = self
            .user_pool_id
            .as_ref()
            .is_some_and(|p| *p != c.user_pool_id);
        if let Some(region) = &self.region {
            c.region.clone_from(region);
        }
        if let Some(pool) = &self.user_pool_id {
            c.user_pool_id.clone_from(pool);
        }
        if let Some(client) = &self.client_id {
            c.client_id.clone_from(client);
        }
        match &self.endpoint {
            Some(endpoint) => c.endpoint.clone_from(endpoint),
            None if other_pool => {
                c.endpoint = format!("https://cognito-idp.{}.amazonaws.com", c.region);
            }
            None => {}
        }
        if other_pool {
            // Device-bound tokens are the built-in provider's (see `CognitoConfig::device_keys`).
            c.device_keys = false;
        }
    }
}

/// Where the system config lives on this platform (or where `$SYNCSPHERE_SYSTEM_CONFIG` says).
pub fn system_config_path() -> PathBuf {
    if cfg!(debug_assertions)
        && let Some(path) = std::env::var_os(SYSTEM_CONFIG_ENV).filter(|p| !p.is_empty())
    {
        return path.into();
    }
    if cfg!(windows) {
        let base = std::env::var_os("ProgramData").unwrap_or_else(|| r"C:\ProgramData".into());
        PathBuf::from(base).join("SyncSphere").join("config.toml")
    } else if cfg!(target_os = "macos") {
        PathBuf::from("/Library/Application Support/SyncSphere/config.toml")
    } else {
        PathBuf::from("/etc/syncsphere/config.toml")
    }
}

/// Reads the system config (defaults when there is none).
pub fn load_system_config() -> Result<SystemConfig, SyncError> {
    let path = system_config_path();
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text)
            .map_err(|e| SyncError::Config(format!("{} is not valid: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SystemConfig::default()),
        Err(e) => Err(SyncError::Io(format!("reading {}", path.display()), e)),
    }
}

fn parse(text: &str) -> Result<SystemConfig, String> {
    let config: SystemConfig = toml::from_str(text).map_err(|e| e.to_string())?;
    if let Some(url) = &config.server_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(format!(
            "server_url '{url}' must start with http:// or https://"
        ));
    }
    if config.lock_server_url && config.server_url.is_none() {
        return Err("lock_server_url needs a server_url to lock to".into());
    }
    Ok(config)
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim().trim_end_matches('/') == b.trim().trim_end_matches('/')
}

impl SystemConfig {
    /// The server to use when the user asked for `asked` (`None`: the preset): a locked
    /// server refuses any other.
    /// Whether a session with `server_url` may sync: not when the administrator locked another
    /// server (sessions from before the lock, or a hand-edited config, included).
    pub fn check_server(&self, server_url: &str) -> Result<(), SyncError> {
        match &self.server_url {
            Some(preset) if self.lock_server_url && !same_url(server_url, preset) => {
                Err(SyncError::Config(format!(
                    "your administrator set this computer to use {preset}; sign in there \
                     ({server_url} cannot be used)"
                )))
            }
            _ => Ok(()),
        }
    }

    pub fn resolve_server_url(&self, asked: Option<&str>) -> Result<String, SyncError> {
        match (asked.filter(|a| !a.trim().is_empty()), &self.server_url) {
            (Some(asked), Some(preset)) if self.lock_server_url && !same_url(asked, preset) => {
                Err(SyncError::Config(format!(
                    "your administrator set this computer to use {preset}; {asked} cannot be used"
                )))
            }
            (Some(asked), _) => Ok(asked.trim().trim_end_matches('/').to_owned()),
            (None, Some(preset)) => Ok(preset.trim().trim_end_matches('/').to_owned()),
            (None, None) => Err(SyncError::Config(
                "no server given (and no server_url in the system config)".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cognito() -> CognitoConfig {
        CognitoConfig {
            endpoint: "http://127.0.0.1:8787/auth/cognito".into(),
            region: "local-1".into(),
            user_pool_id: "local_syncsphere".into(),
            client_id: "syncsphere-desktop".into(),
            auth_flow: Default::default(),
            device_keys: true,
        }
    }

    #[test]
    fn presets_and_locks_the_server() {
        let config =
            parse("server_url = \"https://sync.example.com/\"\nlock_server_url = true\n").unwrap();
        assert_eq!(
            config.resolve_server_url(None).unwrap(),
            "https://sync.example.com"
        );
        assert_eq!(
            config
                .resolve_server_url(Some("https://sync.example.com"))
                .unwrap(),
            "https://sync.example.com"
        );
        let refused = config
            .resolve_server_url(Some("https://elsewhere.example"))
            .unwrap_err()
            .to_string();
        assert!(refused.contains("administrator"), "{refused}");
        assert!(config.check_server("https://sync.example.com/").is_ok());
        assert!(
            config.check_server("https://elsewhere.example").is_err(),
            "a session from before the lock does not sync"
        );

        let unlocked = parse("server_url = \"https://sync.example.com\"\n").unwrap();
        assert_eq!(
            unlocked
                .resolve_server_url(Some("http://127.0.0.1:9/"))
                .unwrap(),
            "http://127.0.0.1:9"
        );
        assert!(
            SystemConfig::default().resolve_server_url(None).is_err(),
            "no server at all"
        );
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        for bad in [
            "server_url = \"sync.example.com\"",
            "lock_server_url = true",
            "server = \"https://typo.example\"",
            "[cognito]\npool = \"x\"",
            "server_url = ",
        ] {
            assert!(parse(bad).is_err(), "accepted: {bad}");
        }
        assert_eq!(parse("").unwrap(), SystemConfig::default());
    }

    #[test]
    fn a_cognito_preset_replaces_the_servers_pool() {
        let config = parse(
            "[cognito]\nregion = \"eu-west-1\"\nuser_pool_id = \"eu-west-1_AbC\"\nclient_id = \"abc123\"\n",
        )
        .unwrap();
        let mut c = cognito();
        config.cognito.unwrap().apply(&mut c);
        assert_eq!(c.user_pool_id, "eu-west-1_AbC");
        assert_eq!(c.client_id, "abc123");
        assert_eq!(c.endpoint, "https://cognito-idp.eu-west-1.amazonaws.com");
        assert!(
            !c.device_keys,
            "Amazon Cognito pools do not bind tokens to devices here"
        );

        // Only a client id: same pool, same endpoint, device keys kept.
        let mut c = cognito();
        CognitoPreset {
            client_id: Some("other-client".into()),
            ..Default::default()
        }
        .apply(&mut c);
        assert_eq!(c.endpoint, cognito().endpoint);
        assert!(c.device_keys);
    }

    /// The AWS stack's `SystemConfig` output (deploy/syncsphere.yaml), with the values
    /// CloudFormation substitutes, is a file this parser takes: what deploy/README.md tells
    /// administrators to ship with the installers.
    #[test]
    fn the_aws_stacks_system_config_output_is_a_valid_file() {
        let template = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/syncsphere.yaml"),
        )
        .unwrap();
        let mut lines = template.lines().skip_while(|l| *l != "  SystemConfig:");
        assert!(lines.next().is_some(), "no SystemConfig output");
        let mut lines = lines.skip_while(|l| l.trim() != "Value: !Sub |");
        assert!(
            lines.next().is_some(),
            "SystemConfig is not a `!Sub |` block"
        );
        let mut text = String::new();
        for line in lines.take_while(|l| l.starts_with("      ")) {
            text.push_str(&line[6..]);
            text.push('\n');
        }
        for (name, value) in [
            ("${RestApi}", "a1b2c3d4e5"),
            ("${AWS::Region}", "eu-west-1"),
            ("${AWS::URLSuffix}", "amazonaws.com"),
            ("${UserPool}", "eu-west-1_AbCdEfGhI"),
            ("${UserPoolClient}", "1h2j3k4l5m6n7o8p9q0r"),
        ] {
            text = text.replace(name, value);
        }
        assert!(
            !text.contains("${"),
            "a substitution this test does not know: {text}"
        );
        let config = parse(&text).unwrap();
        assert_eq!(
            config.resolve_server_url(None).unwrap(),
            "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/prod"
        );
        assert!(config.lock_server_url);
        let mut c = cognito();
        config.cognito.unwrap().apply(&mut c);
        assert_eq!(c.user_pool_id, "eu-west-1_AbCdEfGhI");
        assert_eq!(c.client_id, "1h2j3k4l5m6n7o8p9q0r");
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(c.endpoint, "https://cognito-idp.eu-west-1.amazonaws.com");
    }
}
