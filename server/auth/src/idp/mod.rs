//! The built-in identity provider: users, passwords (argon2id), RS256 signing keys and
//! Cognito-shaped tokens, stored in the server's metadata database.
//!
//! It mirrors Amazon Cognito's shapes so the client has one sign-in path for both: a user pool id
//! and an app client id, `iss = {public URL}/{pool id}`, the JWKS at
//! `{iss}/.well-known/jwks.json`, and the Identity Provider JSON API in [`cognito_api`].

mod args;
mod codes;
pub mod cognito_api;
mod hashing;
mod keys;
mod mail;
pub mod srp;
pub mod throttle;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::jwk::JwkSet;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;
use syncsphere_db::Db;
use syncsphere_events::{Event, Publisher};

use crate::now_ms;
use crate::sign_out::{self, DbRevocations};
use crate::verify::{AuthUser, JwksSource, Verifier};
pub use args::{CharClass, IdpArgs};
pub use codes::{CodeDelivery, MAX_ATTEMPTS, RESEND_AFTER_MS};
pub use keys::SigningKey;
pub use mail::MailSettings;

/// Longest password accepted (Cognito's limit).
pub const MAX_PASSWORD_LEN: usize = 256;
/// The characters Cognito counts as symbols (a space inside a password counts too).
const SYMBOLS: &str = "^$*.[]{}()?\"!@#%&/\\,><':;|_~`=+- ";

/// What a new password must be, as a Cognito user pool's `PasswordPolicy`; the default is
/// Cognito's: at least 8 characters with an upper-case and a lower-case letter, a digit and a
/// symbol. Checked at sign-up only (a password set under an older policy still signs in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub min_length: usize,
    pub require_upper: bool,
    pub require_lower: bool,
    pub require_digit: bool,
    pub require_symbol: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            min_length: 8,
            require_upper: true,
            require_lower: true,
            require_digit: true,
            require_symbol: true,
        }
    }
}

impl PasswordPolicy {
    /// Refuses `password` with Cognito's words for the first rule it breaks.
    pub fn check(&self, password: &str) -> Result<(), IdpError> {
        let refuse = |why: &str| Err(IdpError::InvalidPassword(why.to_owned()));
        if password.chars().count() < self.min_length {
            return refuse("Password not long enough");
        }
        if password.chars().count() > MAX_PASSWORD_LEN {
            return refuse("Password too long");
        }
        if password.starts_with(char::is_whitespace) || password.ends_with(char::is_whitespace) {
            return refuse("Password must not begin or end with a space");
        }
        if self.require_lower && !password.chars().any(char::is_lowercase) {
            return refuse("Password must have lowercase characters");
        }
        if self.require_upper && !password.chars().any(char::is_uppercase) {
            return refuse("Password must have uppercase characters");
        }
        if self.require_digit && !password.chars().any(|c| c.is_ascii_digit()) {
            return refuse("Password must have numeric characters");
        }
        if self.require_symbol && !password.chars().any(|c| SYMBOLS.contains(c)) {
            return refuse("Password must have symbol characters");
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct IdpConfig {
    /// Public base URL of the server, e.g. `http://127.0.0.1:8787`; the issuer is
    /// `{public_url}/{user_pool_id}`.
    pub public_url: String,
    pub region: String,
    pub user_pool_id: String,
    pub client_id: String,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub password_policy: PasswordPolicy,
    /// Where codes are mailed from; `None`: accounts are confirmed at once and passwords cannot
    /// be reset by mail.
    pub mail: Option<MailSettings>,
    /// A header a trusted reverse proxy sets to the client's address (`X-Forwarded-For`: its
    /// last entry, the one the proxy added; `X-Real-IP`): what sign-ins are throttled by
    /// instead of the proxy's own address. `None`: the TCP peer.
    pub client_address_header: Option<String>,
}

impl IdpConfig {
    pub fn issuer(&self) -> String {
        format!(
            "{}/{}",
            self.public_url.trim_end_matches('/'),
            self.user_pool_id
        )
    }
}

/// Errors of the provider, named after the Cognito exceptions they become on the wire.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    #[error("User already exists")]
    UsernameExists,
    #[error("Password did not conform with policy: {0}")]
    InvalidPassword(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("Incorrect username or password.")]
    NotAuthorized,
    /// `NotAuthorizedException` in other words than a wrong password's.
    #[error("{0}")]
    NotAuthorizedWith(String),
    #[error("User is not confirmed.")]
    UserNotConfirmed,
    #[error("Invalid verification code provided, please try again.")]
    CodeMismatch,
    #[error("Invalid code provided, please request a code again.")]
    ExpiredCode,
    #[error("Attempt limit exceeded, please try after some time.")]
    LimitExceeded,
    /// Too many wrong passwords for this account from this address: wait ([`throttle`]).
    #[error("Password attempts exceeded")]
    PasswordAttemptsExceeded,
    /// Too many sign-ins from this address ([`throttle`]).
    #[error("Rate exceeded")]
    TooManyRequests,
    #[error("Invalid Refresh Token")]
    InvalidRefreshToken,
    #[error("Device has been revoked")]
    DeviceRevoked,
    /// Cognito's words for an access token of a signed-out session.
    #[error("Access Token has been revoked")]
    AccessTokenRevoked,
    #[error("Invalid Access Token")]
    InvalidAccessToken,
    #[error("User pool client {0} does not exist.")]
    UnknownClient(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for IdpError {
    fn from(e: sqlx::Error) -> Self {
        IdpError::Internal(e.to_string())
    }
}

/// Tokens returned by a successful authentication, as Cognito's `AuthenticationResult`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuthenticationResult {
    pub access_token: String,
    pub id_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub expires_in: u64,
    pub token_type: &'static str,
}

/// `USER_SRP_AUTH`'s answer: the `PASSWORD_VERIFIER` challenge for the user.
#[derive(Debug, Clone)]
pub struct SrpChallenge {
    pub user_id_for_srp: String,
    pub username: String,
    pub challenge: srp::Challenge,
}

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub user_id: String,
    pub username: String,
    pub email: String,
}

/// The built-in, Cognito-compatible identity provider.
pub struct IdentityProvider {
    config: IdpConfig,
    db: Db,
    key: SigningKey,
    /// Hash of a random password, verified against when the user does not exist so that timing
    /// does not tell whether an account exists.
    dummy_hash: String,
    /// Argon2 runs at most this many at once, each in working memory kept for reuse
    /// ([`hashing`]): unbounded parallel hashing would let a burst of sign-ins starve the
    /// server, and memory allocated per hash stays with the allocator.
    hashing: hashing::PasswordHashing,
    /// Where `GlobalSignOut` is announced, so the user's push connections close.
    events: Arc<dyn Publisher>,
    /// `USER_SRP_AUTH`'s sealing key and the challenges answered.
    srp: srp::SrpServer,
    /// Where codes are mailed (`--smtp-url`); `None`: sign-ups are confirmed at once.
    mailer: Option<Arc<mail::Mailer>>,
    /// Keys the stored hashes of mailed codes.
    code_key: [u8; 32],
    /// Password guessing, slowed down.
    throttle: throttle::SignInThrottle,
}

/// The built-in provider's budgets as Prometheus gauges, read at each scrape (issue 19): what
/// sign-ins make it hold, beside the fixed limits where there is one.
#[derive(Debug)]
pub struct IdpBudgets(Arc<IdentityProvider>);

impl std::fmt::Debug for IdentityProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityProvider")
            .field("user_pool_id", &self.config.user_pool_id)
            .finish_non_exhaustive()
    }
}

impl prometheus_client::collector::Collector for IdpBudgets {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let idp = &self.0;
        let (pairs, addresses) = idp.throttle.tracked();
        let hashing = idp.hashing.running();
        let gauges = [
            (
                "syncsphere_idp_srp_answers_held",
                "SRP answers remembered against replay",
                idp.srp.answers_held(),
            ),
            (
                "syncsphere_idp_throttle_pairs",
                "Account-and-address pairs with counted failures",
                pairs,
            ),
            (
                "syncsphere_idp_throttle_addresses",
                "Addresses with sign-ins counted this minute",
                addresses,
            ),
            (
                "syncsphere_idp_password_hashing",
                "Password hashes running now",
                hashing,
            ),
            (
                "syncsphere_idp_password_hashing_limit",
                "Password hashes that may run at once",
                idp.hashing.slots(),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = prometheus_client::metrics::gauge::ConstGauge::new(value as i64);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

impl IdentityProvider {
    /// The provider's budgets as gauges, for the process's `/metrics`.
    pub fn budgets(self: &Arc<Self>) -> IdpBudgets {
        IdpBudgets(self.clone())
    }

    /// Opens the provider, loading its signing key from `key_path` or creating one there;
    /// sign-outs are announced on `events`.
    pub fn open(
        config: IdpConfig,
        db: Db,
        key_path: &Path,
        events: Arc<dyn Publisher>,
    ) -> Result<Arc<Self>, IdpError> {
        let key = SigningKey::load_or_create(key_path)
            .map_err(|e| IdpError::Internal(format!("signing key {}: {e}", key_path.display())))?;
        let slots = std::thread::available_parallelism().map_or(2, |n| n.get());
        // The dummy hash works in the first slot's memory, which stays with the pool: freed,
        // its 19 MiB would raise glibc's mmap threshold to 19 MiB for the process's life, and
        // every buffer under that size (1 MiB upload pieces) would then come from the heap's
        // arenas, where churn fragments them.
        let mut memory = Vec::new();
        let dummy_hash = hashing::hash(&mut memory, &random_token())?;
        let srp = srp::SrpServer::new(key.derived_key("srp secret blocks"));
        let code_key = key.derived_key("mailed codes");
        let mailer = match &config.mail {
            Some(settings) => Some(Arc::new(mail::Mailer::new(settings)?)),
            None => None,
        };
        let idp = Arc::new(IdentityProvider {
            config,
            db,
            key,
            dummy_hash,
            hashing: hashing::PasswordHashing::new(slots).keeping(memory),
            events,
            srp,
            mailer,
            code_key,
            throttle: throttle::SignInThrottle::default(),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            idp.spawn_relay_check();
        }
        Ok(idp)
    }

    pub fn config(&self) -> &IdpConfig {
        &self.config
    }

    pub fn jwks(&self) -> JwkSet {
        self.key.jwks()
    }

    /// A verifier for this provider's tokens, holding its key set in-process, refusing tokens
    /// of revoked devices and signed-out sessions (from the provider's database).
    pub fn verifier(&self) -> Verifier {
        Verifier::new(
            self.config.issuer(),
            [self.config.client_id.clone()],
            JwksSource::Static(self.jwks()),
        )
        .with_revocations(DbRevocations::new(self.db.clone()))
    }

    fn check_client(&self, client_id: &str) -> Result<(), IdpError> {
        if client_id == self.config.client_id {
            Ok(())
        } else {
            Err(IdpError::UnknownClient(client_id.to_owned()))
        }
    }

    /// Cognito `SignUp`. Without a mail relay the user is confirmed at once; with one, the user
    /// is unconfirmed until the mailed code is entered (the delivery is returned).
    pub async fn sign_up(
        &self,
        client_id: &str,
        username: &str,
        password: &str,
        email: Option<&str>,
    ) -> Result<(UserRecord, Option<CodeDelivery>), IdpError> {
        self.check_client(client_id)?;
        let username = normalize_username(username)?;
        self.config.password_policy.check(password)?;
        let email = email.map(str::trim).unwrap_or(&username).to_owned();
        let user_id = uuid::Uuid::new_v4().to_string();
        let verifier = srp::make_verifier(self.pool_name(), &user_id, password);
        let hash = self.hash_new_password(password).await?;
        let inserted = sqlx::query(
            "INSERT INTO idp_users (user_id, username, email, password_hash, created_ms,
                                    srp_salt, srp_verifier, confirmed)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (username) DO NOTHING",
        )
        .bind(&user_id)
        .bind(&username)
        .bind(&email)
        .bind(&hash)
        .bind(now_ms())
        .bind(&verifier.salt)
        .bind(&verifier.verifier)
        .bind(i64::from(!self.confirms_by_mail()))
        .execute(&self.db.pool)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(IdpError::UsernameExists);
        }
        tracing::info!(%user_id, %username, "user signed up");
        let user = UserRecord {
            user_id,
            username,
            email,
        };
        let delivery = match self.confirms_by_mail() {
            true => Some(self.send_code(&user, codes::Purpose::ConfirmSignUp).await?),
            false => None,
        };
        Ok((user, delivery))
    }

    /// Cognito `InitiateAuth` with `USER_PASSWORD_AUTH`, from the address `from` (for the
    /// [`throttle`]).
    pub async fn password_auth(
        &self,
        client_id: &str,
        (username, password): (&str, &str),
        device_key: Option<&str>,
        from: Option<IpAddr>,
    ) -> Result<AuthenticationResult, IdpError> {
        self.check_client(client_id)?;
        if let Some(device) = device_key {
            crate::devices::check_device_id(device)
                .map_err(|e| IdpError::InvalidParameter(e.to_string()))?;
        }
        let username = normalize_username(username).map_err(|_| IdpError::NotAuthorized)?;
        self.throttle.admit(&username, from)?;
        let row = sqlx::query(
            "SELECT user_id, username, email, password_hash, srp_verifier
             FROM idp_users WHERE username = $1",
        )
        .bind(&username)
        .fetch_optional(&self.db.pool)
        .await?;
        // Unknown users and wrong passwords get the same answer (Cognito's
        // PreventUserExistenceErrors default), and the same argon2 cost.
        let (user, stored, has_verifier) = match row {
            Some(r) => (
                Some(UserRecord {
                    user_id: r.get("user_id"),
                    username: r.get("username"),
                    email: r.get("email"),
                }),
                r.get::<String, _>("password_hash"),
                r.get::<Option<String>, _>("srp_verifier").is_some(),
            ),
            None => (None, self.dummy_hash.clone(), true),
        };
        let password_for_srp = password;
        let password = password.to_owned();
        let ok = self
            .hashing
            .run(move |memory| hashing::verify(memory, &stored, password.as_bytes()))
            .await?;
        let user = match (ok, user) {
            (true, Some(user)) => user,
            _ => {
                self.throttle.failed(&username, from);
                return Err(IdpError::NotAuthorized);
            }
        };
        self.throttle.succeeded(&username, from);
        if !has_verifier {
            // An account from before USER_SRP_AUTH: its verifier, now that the password is known.
            let v = srp::make_verifier(self.pool_name(), &user.user_id, password_for_srp);
            sqlx::query(
                "UPDATE idp_users SET srp_salt = $2, srp_verifier = $3
                 WHERE user_id = $1 AND srp_verifier IS NULL",
            )
            .bind(&user.user_id)
            .bind(&v.salt)
            .bind(&v.verifier)
            .execute(&self.db.pool)
            .await?;
            tracing::info!(user_id = %user.user_id, "stored the SRP verifier of an older account");
        }
        self.complete_sign_in(user, device_key).await
    }

    /// Tokens for a user whose password was just proven (by `USER_PASSWORD_AUTH` or SRP), with
    /// a refresh token bound to `device_key` — unless that device was revoked.
    async fn complete_sign_in(
        &self,
        user: UserRecord,
        device_key: Option<&str>,
    ) -> Result<AuthenticationResult, IdpError> {
        if let Some(device) = device_key
            && self.device_revoked(&user.user_id, device).await?
        {
            return Err(IdpError::DeviceRevoked);
        }
        // Told only to whoever proved the password, as Cognito does.
        let confirmed: i64 = sqlx::query("SELECT confirmed FROM idp_users WHERE user_id = $1")
            .bind(&user.user_id)
            .fetch_one(&self.db.pool)
            .await?
            .get("confirmed");
        if confirmed == 0 {
            return Err(IdpError::UserNotConfirmed);
        }
        let refresh = random_token();
        sqlx::query(
            "INSERT INTO idp_refresh_tokens (token_hash, user_id, expires_ms, revoked, device_key)
             VALUES ($1, $2, $3, 0, $4)",
        )
        .bind(token_hash(&refresh))
        .bind(&user.user_id)
        .bind(now_ms() + (self.config.refresh_token_ttl_secs as i64) * 1000)
        .bind(device_key)
        .execute(&self.db.pool)
        .await?;
        let mut result = self.issue(&user, device_key, &session_of(&refresh)).await?;
        result.refresh_token = Some(refresh);
        Ok(result)
    }

    /// The pool name SRP hashes (the pool id after `_`).
    fn pool_name(&self) -> &str {
        srp::pool_name(&self.config.user_pool_id)
    }

    /// Cognito `InitiateAuth` with `USER_SRP_AUTH`: the `PASSWORD_VERIFIER` challenge
    /// ([`srp`]). An unknown user gets a decoy challenge that no answer passes (the same
    /// `NotAuthorizedException` as a wrong password, at the end); an account from before SRP
    /// that has not signed in since is told to use `USER_PASSWORD_AUTH` once.
    pub async fn srp_auth(
        &self,
        client_id: &str,
        username: &str,
        srp_a: &str,
        device_key: Option<&str>,
        from: Option<IpAddr>,
    ) -> Result<SrpChallenge, IdpError> {
        self.check_client(client_id)?;
        if let Some(device) = device_key {
            crate::devices::check_device_id(device)
                .map_err(|e| IdpError::InvalidParameter(e.to_string()))?;
        }
        let name = normalize_username(username).map_err(|_| IdpError::NotAuthorized)?;
        self.throttle.admit(&name, from)?;
        let row = sqlx::query(
            "SELECT user_id, srp_salt, srp_verifier FROM idp_users WHERE username = $1",
        )
        .bind(&name)
        .fetch_optional(&self.db.pool)
        .await?;
        let (user_id, salt, verifier) = match row {
            Some(r) => {
                let salt: Option<String> = r.get("srp_salt");
                let verifier = r
                    .get::<Option<String>, _>("srp_verifier")
                    .as_deref()
                    .and_then(srp::verifier_number);
                match (salt, verifier) {
                    (Some(salt), Some(v)) => (r.get::<String, _>("user_id"), salt, v),
                    _ => {
                        return Err(IdpError::InvalidParameter(
                            "USER_SRP_AUTH is not set up for this account yet: sign in once \
                             with USER_PASSWORD_AUTH"
                                .into(),
                        ));
                    }
                }
            }
            None => {
                let (salt, v) = self.srp.decoy(&name);
                (String::new(), salt, v)
            }
        };
        let challenge = self
            .srp
            .begin(&user_id, device_key, srp_a, &salt, &verifier)?;
        Ok(SrpChallenge {
            // Cognito's user id for SRP; a decoy names a made-up one.
            user_id_for_srp: if user_id.is_empty() {
                uuid::Uuid::new_v4().to_string()
            } else {
                user_id
            },
            username: name,
            challenge,
        })
    }

    /// Cognito `RespondToAuthChallenge` to `PASSWORD_VERIFIER`: tokens if the signature proves
    /// the password. `username` is the answer's `USERNAME`, counted by the [`throttle`] for a
    /// decoy challenge (the account's own name is, for a real one).
    pub async fn srp_verify(
        &self,
        client_id: &str,
        (secret_block, timestamp, signature): (&str, &str, &str),
        username: &str,
        from: Option<IpAddr>,
    ) -> Result<AuthenticationResult, IdpError> {
        self.check_client(client_id)?;
        let sealed = self.srp.open(secret_block)?;
        if sealed.opened.user_id.is_empty() {
            // An unknown account's decoy: counted as a wrong password, as a known one's is.
            if let Ok(name) = normalize_username(username) {
                self.throttle.check(&name, from)?;
                self.throttle.failed(&name, from);
            }
            return Err(IdpError::NotAuthorized);
        }
        let row = sqlx::query(
            "SELECT user_id, username, email, srp_verifier FROM idp_users WHERE user_id = $1",
        )
        .bind(&sealed.opened.user_id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or(IdpError::NotAuthorized)?;
        let v = row
            .get::<Option<String>, _>("srp_verifier")
            .as_deref()
            .and_then(srp::verifier_number)
            .ok_or(IdpError::NotAuthorized)?;
        let name: String = row.get("username");
        // Challenges fetched before a wait began are answered only once it is over.
        self.throttle.check(&name, from)?;
        if let Err(e) = self
            .srp
            .verify(self.pool_name(), &sealed, &v, timestamp, signature)
        {
            if matches!(e, IdpError::NotAuthorized) {
                self.throttle.failed(&name, from);
            }
            return Err(e);
        }
        self.throttle.succeeded(&name, from);
        let user = UserRecord {
            user_id: row.get("user_id"),
            username: row.get("username"),
            email: row.get("email"),
        };
        self.complete_sign_in(user, sealed.opened.device_key.as_deref())
            .await
    }

    /// Cognito `InitiateAuth` with `REFRESH_TOKEN_AUTH`: new access and ID tokens.
    pub async fn refresh_auth(
        &self,
        client_id: &str,
        refresh_token: &str,
    ) -> Result<AuthenticationResult, IdpError> {
        self.check_client(client_id)?;
        let row = sqlx::query(
            "SELECT u.user_id, u.username, u.email, t.device_key, t.revoked
             FROM idp_refresh_tokens t JOIN idp_users u ON u.user_id = t.user_id
             WHERE t.token_hash = $1 AND t.expires_ms > $2",
        )
        .bind(token_hash(refresh_token))
        .bind(now_ms())
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or(IdpError::InvalidRefreshToken)?;
        // The refresh token keeps its device: the new access token is bound to the same one.
        let device_key: Option<String> = row.get("device_key");
        if row.get::<i64, _>("revoked") != 0 {
            let user_id: String = row.get("user_id");
            return Err(match &device_key {
                Some(device) if self.device_revoked(&user_id, device).await? => {
                    IdpError::DeviceRevoked
                }
                _ => IdpError::InvalidRefreshToken,
            });
        }
        self.issue(
            &UserRecord {
                user_id: row.get("user_id"),
                username: row.get("username"),
                email: row.get("email"),
            },
            device_key.as_deref(),
            &session_of(refresh_token),
        )
        .await
    }

    async fn device_revoked(&self, user_id: &str, device_id: &str) -> Result<bool, IdpError> {
        let found =
            sign_out::lookup(&self.db, &user_id.into(), Some(&device_id.into()), None).await?;
        Ok(found.device_revoked)
    }

    /// Cognito `ChangePassword`: the signed-in user (by a valid access token) replaces the
    /// password, proving the current one; the new one must meet the policy. Sessions stay
    /// signed in (as with Cognito).
    pub async fn change_password(
        &self,
        access_token: &str,
        previous: &str,
        proposed: &str,
    ) -> Result<(), IdpError> {
        let user = self.user_of_access_token(access_token).await?;
        self.config.password_policy.check(proposed)?;
        let stored: String = sqlx::query("SELECT password_hash FROM idp_users WHERE user_id = $1")
            .bind(&user.user_id)
            .fetch_one(&self.db.pool)
            .await?
            .get("password_hash");
        let (previous, proposed_owned) = (previous.to_owned(), proposed.to_owned());
        let hash = self
            .hashing
            .run(move |memory| {
                if hashing::verify(memory, &stored, previous.as_bytes()) {
                    hashing::hash(memory, &proposed_owned).map(Some)
                } else {
                    Ok(None)
                }
            })
            .await??
            .ok_or(IdpError::NotAuthorized)?;
        self.store_password(&user.user_id, &hash, proposed).await?;
        tracing::info!(user_id = %user.user_id, "password changed");
        Ok(())
    }

    /// Replaces the user's password (already checked against the policy).
    async fn set_password(&self, user_id: &str, password: &str) -> Result<(), IdpError> {
        let hash = self.hash_new_password(password).await?;
        self.store_password(user_id, &hash, password).await
    }

    /// The argon2 hash of a new password, computed off the async threads within the limit of
    /// hashes at once.
    async fn hash_new_password(&self, password: &str) -> Result<String, IdpError> {
        let owned = password.to_owned();
        self.hashing
            .run(move |memory| hashing::hash(memory, &owned))
            .await?
    }

    /// Stores the argon2 `hash` of `password` and a new SRP verifier of it.
    async fn store_password(
        &self,
        user_id: &str,
        hash: &str,
        password: &str,
    ) -> Result<(), IdpError> {
        let v = srp::make_verifier(self.pool_name(), user_id, password);
        sqlx::query(
            "UPDATE idp_users SET password_hash = $2, srp_salt = $3, srp_verifier = $4
             WHERE user_id = $1",
        )
        .bind(user_id)
        .bind(hash)
        .bind(&v.salt)
        .bind(&v.verifier)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// Cognito `RevokeToken` for a refresh token of this client: it stops working (an unknown
    /// token is no error, as RFC 7009 has it). Access tokens already issued from it run out
    /// their lifetime (Cognito ends those too; "sign out everywhere" does that here).
    pub async fn revoke_refresh_token(&self, client_id: &str, token: &str) -> Result<(), IdpError> {
        self.check_client(client_id)?;
        sqlx::query("UPDATE idp_refresh_tokens SET revoked = 1 WHERE token_hash = $1")
            .bind(token_hash(token))
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    /// Cognito `GetUser`: the user behind a valid access token (not one of a revoked device or
    /// issued before the user signed out everywhere).
    pub async fn user_of_access_token(&self, access_token: &str) -> Result<UserRecord, IdpError> {
        let mut headers = axum::http::HeaderMap::new();
        let bearer = format!("Bearer {access_token}")
            .parse()
            .map_err(|_| IdpError::InvalidAccessToken)?;
        headers.insert(axum::http::header::AUTHORIZATION, bearer);
        let user = AuthUser::from_headers(&headers, &self.verifier())
            .await
            .map_err(|e| match e {
                crate::AuthError::RevocationCheck(e) => IdpError::Internal(e.to_string()),
                crate::AuthError::SignedOut | crate::AuthError::DeviceRevoked => {
                    IdpError::AccessTokenRevoked
                }
                _ => IdpError::InvalidAccessToken,
            })?;
        let row = sqlx::query("SELECT user_id, username, email FROM idp_users WHERE user_id = $1")
            .bind(user.user_id.as_str())
            .fetch_optional(&self.db.pool)
            .await?
            .ok_or(IdpError::InvalidAccessToken)?;
        Ok(UserRecord {
            user_id: row.get("user_id"),
            username: row.get("username"),
            email: row.get("email"),
        })
    }

    /// Cognito `GlobalSignOut`: revokes every refresh token of the user, and (beyond what
    /// Cognito does for resource servers) every access token issued until now, on every role;
    /// the user's push connections close.
    pub async fn global_sign_out(&self, access_token: &str) -> Result<(), IdpError> {
        let user = self.user_of_access_token(access_token).await?;
        let user_id = user.user_id.as_str().into();
        let before = sign_out::record(&self.db, &user_id).await?;
        self.events.publish(&user_id, Event::SignedOut { before });
        Ok(())
    }

    /// Access and ID tokens of one sign-in `session` (their `origin_jti`, as Cognito's).
    async fn issue(
        &self,
        user: &UserRecord,
        device_key: Option<&str>,
        session: &str,
    ) -> Result<AuthenticationResult, IdpError> {
        // Never older than a sign-out's cut-off, or a sign-in in that second would be refused.
        let now = sign_out::issue_time(&self.db, &user.user_id.as_str().into()).await?;
        let exp = now + self.config.access_token_ttl_secs;
        let iss = self.config.issuer();
        let origin_jti = session;
        let mut access = serde_json::json!({
            "sub": user.user_id,
            "iss": iss,
            "client_id": self.config.client_id,
            "origin_jti": origin_jti,
            "token_use": "access",
            "scope": "aws.cognito.signin.user.admin",
            "auth_time": now,
            "exp": exp,
            "iat": now,
            "jti": uuid::Uuid::new_v4().to_string(),
            "username": user.username,
        });
        if let Some(device) = device_key {
            access["device_key"] = device.into();
        }
        let id = serde_json::json!({
            "sub": user.user_id,
            "iss": iss,
            "aud": self.config.client_id,
            "origin_jti": origin_jti,
            "token_use": "id",
            "auth_time": now,
            "exp": exp,
            "iat": now,
            "jti": uuid::Uuid::new_v4().to_string(),
            "cognito:username": user.username,
            "email": user.email,
            "email_verified": false,
        });
        Ok(AuthenticationResult {
            access_token: self.key.sign(&access).map_err(IdpError::Internal)?,
            id_token: self.key.sign(&id).map_err(IdpError::Internal)?,
            refresh_token: None,
            expires_in: self.config.access_token_ttl_secs,
            token_type: "Bearer",
        })
    }
}

fn normalize_username(username: &str) -> Result<String, IdpError> {
    let u = username.trim().to_lowercase();
    if u.is_empty() || u.len() > 128 || u.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(IdpError::InvalidParameter(
            "Username must be 1-128 characters without spaces or control characters".into(),
        ));
    }
    Ok(u)
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The `origin_jti` of every token a refresh token's sign-in yields (Cognito keeps it across
/// refreshes, and devices bind it: 0038): derived from the refresh token, so nothing more is
/// stored, and telling nothing of it.
fn session_of(refresh_token: &str) -> String {
    let digest = Sha256::digest(format!("syncsphere origin_jti\0{refresh_token}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_is_cognitos_and_names_the_first_rule_broken() {
        let policy = PasswordPolicy::default();
        let why = |password: &str| match policy.check(password) {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        assert_eq!(why("Correct-horse-9"), "ok");
        assert_eq!(why("Ünïcode-9"), "ok", "letters beyond ASCII count");
        assert_eq!(why("Two words9"), "ok", "an inner space is a symbol");
        for (password, rule) in [
            ("Ab-1", "Password not long enough"),
            ("        ", "Password must not begin or end with a space"),
            (
                " Correct-horse-9",
                "Password must not begin or end with a space",
            ),
            ("correcthorse", "Password must have uppercase characters"),
            ("CORRECT-HORSE-9", "Password must have lowercase characters"),
            ("Correct-horse", "Password must have numeric characters"),
            ("Correcthorse9", "Password must have symbol characters"),
        ] {
            assert_eq!(
                why(password),
                format!("Password did not conform with policy: {rule}"),
                "{password:?}"
            );
        }
        assert!(policy.check(&"Aa1-".repeat(65)).is_err(), "over 256");
    }

    #[test]
    fn a_configured_policy_asks_only_for_what_it_names() {
        let lenient = PasswordPolicy {
            min_length: 12,
            require_upper: false,
            require_lower: true,
            require_digit: false,
            require_symbol: false,
        };
        assert!(lenient.check("correct horse battery").is_ok());
        assert!(lenient.check("short one").is_err());
        assert!(lenient.check("CORRECT HORSE BATTERY").is_err());
    }
}
