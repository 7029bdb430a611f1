//! Sign-in through the AWS SDK's Cognito Identity Provider client, pointed at the server's
//! Cognito endpoint: the same code signs in against Amazon Cognito and the built-in provider.

use std::path::Path;

use aws_sdk_cognitoidentityprovider as cognito;
use cognito::error::{ProvideErrorMetadata, SdkError};
use cognito::types::{AttributeType, AuthFlowType, ChallengeNameType};
use syncsphere_protocol::{CognitoConfig, PasswordFlow};
use tokio::sync::Mutex;

use crate::config::{ClientConfig, Session};
use crate::session::SessionStore;
use crate::{SyncError, now_ms};

/// How much later than the token the server holds ours must expire (by our estimate) to be
/// sent as is in answer to `reauth`; closer than that, a fresh one is fetched.
const REAUTH_SLACK_SECS: i64 = 5;

/// A Cognito Identity Provider client for one user pool app client.
pub(crate) struct Cognito {
    client: cognito::Client,
    client_id: String,
    user_pool_id: String,
    auth_flow: PasswordFlow,
}

impl Cognito {
    pub(crate) async fn new(config: &CognitoConfig) -> Self {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()))
            .no_credentials()
            .endpoint_url(&config.endpoint)
            .load()
            .await;
        Cognito {
            client: cognito::Client::new(&sdk),
            client_id: config.client_id.clone(),
            user_pool_id: config.user_pool_id.clone(),
            auth_flow: config.auth_flow,
        }
    }

    /// Creates the account. `Ok(None)`: it is confirmed and can sign in now (the built-in
    /// provider, or a pool that confirms by itself); `Ok(Some(delivery))`: the pool sent a
    /// confirmation code (to the masked address in `delivery`, when it says).
    pub(crate) async fn sign_up(
        &self,
        email: &str,
        password: &str,
    ) -> Result<Option<CodeDelivery>, SyncError> {
        let email_attr = AttributeType::builder()
            .name("email")
            .value(email)
            .build()
            .map_err(|e| SyncError::Auth(e.to_string()))?;
        let out = self
            .client
            .sign_up()
            .client_id(&self.client_id)
            .username(email)
            .password(password)
            .user_attributes(email_attr)
            .send()
            .await
            .map_err(auth_error)?;
        Ok((!out.user_confirmed()).then(|| CodeDelivery::from(out.code_delivery_details())))
    }

    /// Confirms a new account with the code the pool sent (`ConfirmSignUp`).
    pub(crate) async fn confirm_sign_up(&self, email: &str, code: &str) -> Result<(), SyncError> {
        self.client
            .confirm_sign_up()
            .client_id(&self.client_id)
            .username(email)
            .confirmation_code(code)
            .send()
            .await
            .map_err(auth_error)?;
        Ok(())
    }

    /// Asks the pool to send the confirmation code again (`ResendConfirmationCode`).
    pub(crate) async fn resend_confirmation_code(
        &self,
        email: &str,
    ) -> Result<CodeDelivery, SyncError> {
        let out = self
            .client
            .resend_confirmation_code()
            .client_id(&self.client_id)
            .username(email)
            .send()
            .await
            .map_err(auth_error)?;
        Ok(CodeDelivery::from(out.code_delivery_details()))
    }

    /// Cognito's `GlobalSignOut`: the pool revokes the user's refresh tokens. A token the pool
    /// already refuses as revoked (the built-in provider after `POST /v1/account/sign-out`)
    /// means the same is done.
    pub(crate) async fn global_sign_out(&self, access_token: &str) -> Result<(), SyncError> {
        match self
            .client
            .global_sign_out()
            .access_token(access_token)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(se))
                if se.err().code() == Some("NotAuthorizedException")
                    && se.err().message().is_some_and(|m| m.contains("revoked")) =>
            {
                Ok(())
            }
            Err(e) => Err(auth_error(e)),
        }
    }

    /// Signs in the way the pool wants (`USER_SRP_AUTH` unless it says otherwise, falling back
    /// to `USER_PASSWORD_AUTH` when it answers that SRP is not enabled); `device_key` binds the
    /// tokens to this device (when the server supports it).
    /// When the pool asks for a new password (`NEW_PASSWORD_REQUIRED`: an account an
    /// administrator created or reset with a temporary password), `new_password` answers it;
    /// without one the sign-in stops with [`SyncError::NewPasswordRequired`].
    pub(crate) async fn sign_in(
        &self,
        email: &str,
        password: &str,
        device_key: Option<&str>,
        new_password: Option<&str>,
    ) -> Result<Session, SyncError> {
        let step = if self.auth_flow == PasswordFlow::UserSrpAuth {
            match self.srp_sign_in(email, password, device_key).await {
                Err(SyncError::Auth(m)) if m.contains(SRP_NOT_ENABLED) => {
                    tracing::info!("the pool does not take USER_SRP_AUTH: {m}");
                    self.password_sign_in(email, password, device_key).await?
                }
                other => other?,
            }
        } else {
            self.password_sign_in(email, password, device_key).await?
        };
        match step {
            Step::Done(session) => Ok(session),
            Step::NewPassword { session, username } => {
                let new_password = new_password.ok_or(SyncError::NewPasswordRequired)?;
                let mut answer = self
                    .client
                    .respond_to_auth_challenge()
                    .client_id(&self.client_id)
                    .challenge_name(ChallengeNameType::NewPasswordRequired)
                    .challenge_responses("USERNAME", username)
                    .challenge_responses("NEW_PASSWORD", new_password)
                    .set_session(session);
                if let Some(device) = device_key {
                    answer = answer.challenge_responses("DEVICE_KEY", device);
                }
                let out = answer.send().await.map_err(auth_error)?;
                match out.authentication_result() {
                    Some(_) => session_from(out.authentication_result(), None),
                    None => Err(unsupported_challenge(out.challenge_name())),
                }
            }
        }
    }

    /// Cognito's `ChangePassword` for the user `access_token` belongs to.
    pub(crate) async fn change_password(
        &self,
        access_token: &str,
        previous: &str,
        proposed: &str,
    ) -> Result<(), SyncError> {
        self.client
            .change_password()
            .access_token(access_token)
            .previous_password(previous)
            .proposed_password(proposed)
            .send()
            .await
            .map_err(|e| match auth_error(e) {
                SyncError::Auth(m) if m == "Incorrect email or password" => {
                    SyncError::Auth("The current password is not right".into())
                }
                other => other,
            })?;
        Ok(())
    }

    /// Cognito's `RevokeToken`: the refresh token stops working.
    pub(crate) async fn revoke_token(&self, refresh_token: &str) -> Result<(), SyncError> {
        self.client
            .revoke_token()
            .client_id(&self.client_id)
            .token(refresh_token)
            .send()
            .await
            .map_err(auth_error)?;
        Ok(())
    }

    /// Cognito's `ForgotPassword`: the pool sends a code to reset the password with; where.
    pub(crate) async fn forgot_password(&self, email: &str) -> Result<CodeDelivery, SyncError> {
        let out = self
            .client
            .forgot_password()
            .client_id(&self.client_id)
            .username(email)
            .send()
            .await
            .map_err(auth_error)?;
        Ok(CodeDelivery::from(out.code_delivery_details()))
    }

    /// Cognito's `ConfirmForgotPassword`: sets `new_password` with the code the pool sent.
    pub(crate) async fn confirm_forgot_password(
        &self,
        email: &str,
        code: &str,
        new_password: &str,
    ) -> Result<(), SyncError> {
        self.client
            .confirm_forgot_password()
            .client_id(&self.client_id)
            .username(email)
            .confirmation_code(code)
            .password(new_password)
            .send()
            .await
            .map_err(auth_error)?;
        Ok(())
    }

    /// `USER_SRP_AUTH`: the password never leaves the device; the pool's `PASSWORD_VERIFIER`
    /// challenge is answered with a proof (the `aws-cognito-srp` crate's maths).
    async fn srp_sign_in(
        &self,
        email: &str,
        password: &str,
        device_key: Option<&str>,
    ) -> Result<Step, SyncError> {
        use aws_cognito_srp::{SrpClient, User, UserAuthenticationParameters};
        let srp = SrpClient::new(
            User::new(&self.user_pool_id, email, password),
            &self.client_id,
            None,
        );
        let UserAuthenticationParameters { a, username } = srp.get_auth_parameters();
        let out = self
            .initiate(
                AuthFlowType::UserSrpAuth,
                [("USERNAME", &username), ("SRP_A", &a)],
                device_key,
            )
            .await?;
        if out.challenge_name() != Some(&ChallengeNameType::PasswordVerifier) {
            return Err(unsupported_challenge(out.challenge_name()));
        }
        let params = out.challenge_parameters().cloned().unwrap_or_default();
        let param = |name: &str| {
            params.get(name).cloned().ok_or_else(|| {
                SyncError::Auth(format!("the sign-in service's challenge lacks {name}"))
            })
        };
        let proof = srp
            .verify(
                &param("SECRET_BLOCK")?,
                &param("USER_ID_FOR_SRP")?,
                &param("SALT")?,
                &param("SRP_B")?,
            )
            .map_err(|e| SyncError::Auth(format!("the sign-in service's challenge: {e}")))?;
        let mut answer = self
            .client
            .respond_to_auth_challenge()
            .client_id(&self.client_id)
            .challenge_name(ChallengeNameType::PasswordVerifier)
            .challenge_responses("USERNAME", param("USERNAME")?)
            .challenge_responses(
                "PASSWORD_CLAIM_SECRET_BLOCK",
                proof.password_claim_secret_block,
            )
            .challenge_responses("PASSWORD_CLAIM_SIGNATURE", proof.password_claim_signature)
            .challenge_responses("TIMESTAMP", proof.timestamp)
            .set_session(out.session().map(str::to_owned));
        if let Some(device) = device_key {
            answer = answer.challenge_responses("DEVICE_KEY", device);
        }
        let out = answer.send().await.map_err(auth_error)?;
        step_of!(out, email)
    }

    /// `USER_PASSWORD_AUTH`: the password goes to the pool (over TLS).
    async fn password_sign_in(
        &self,
        email: &str,
        password: &str,
        device_key: Option<&str>,
    ) -> Result<Step, SyncError> {
        let out = self
            .initiate(
                AuthFlowType::UserPasswordAuth,
                [("USERNAME", email), ("PASSWORD", password)],
                device_key,
            )
            .await?;
        step_of!(out, email)
    }

    /// `InitiateAuth` with `flow` and its parameters, and `DEVICE_KEY` when the tokens are to
    /// be bound to this device.
    async fn initiate(
        &self,
        flow: AuthFlowType,
        params: [(&str, &str); 2],
        device_key: Option<&str>,
    ) -> Result<cognito::operation::initiate_auth::InitiateAuthOutput, SyncError> {
        let mut req = self
            .client
            .initiate_auth()
            .client_id(&self.client_id)
            .auth_flow(flow);
        for (name, value) in params
            .into_iter()
            .chain(device_key.map(|d| ("DEVICE_KEY", d)))
        {
            req = req.auth_parameters(name, value);
        }
        req.send().await.map_err(auth_error)
    }

    async fn refresh(&self, refresh_token: &str) -> Result<Session, SyncError> {
        let out = self
            .client
            .initiate_auth()
            .client_id(&self.client_id)
            .auth_flow(AuthFlowType::RefreshTokenAuth)
            .auth_parameters("REFRESH_TOKEN", refresh_token)
            .send()
            .await
            .map_err(|e| match auth_error(e) {
                SyncError::Auth(_) => {
                    SyncError::Auth("your session has ended; sign in again".into())
                }
                other => other,
            })?;
        session_from(out.authentication_result(), Some(refresh_token))
    }
}

/// Where a confirmation code went, as the pool says (`CodeDeliveryDetails`): a masked address
/// such as `a***@e***`, and the medium (`EMAIL`, `SMS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodeDelivery {
    pub destination: Option<String>,
    pub medium: Option<String>,
}

impl From<Option<&cognito::types::CodeDeliveryDetailsType>> for CodeDelivery {
    fn from(d: Option<&cognito::types::CodeDeliveryDetailsType>) -> Self {
        CodeDelivery {
            destination: d.and_then(|d| d.destination()).map(str::to_owned),
            medium: d
                .and_then(|d| d.delivery_medium())
                .map(|m| m.as_str().to_owned()),
        }
    }
}

impl std::fmt::Display for CodeDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.medium, &self.destination) {
            (Some(m), Some(d)) if m == "SMS" => write!(f, "by text message to {d}"),
            (_, Some(d)) => write!(f, "to {d}"),
            _ => f.write_str("to the account's e-mail address"),
        }
    }
}

fn session_from(
    result: Option<&cognito::types::AuthenticationResultType>,
    old_refresh: Option<&str>,
) -> Result<Session, SyncError> {
    let r = result.ok_or_else(|| {
        SyncError::Auth(
            "the server asked for a sign-in challenge this client does not support".into(),
        )
    })?;
    let missing = || SyncError::Auth("the server returned an incomplete token set".into());
    let issued_ms = now_ms();
    Ok(Session {
        access_token: r.access_token().ok_or_else(missing)?.to_owned(),
        id_token: r.id_token().unwrap_or_default().to_owned(),
        refresh_token: r
            .refresh_token()
            .or(old_refresh)
            .ok_or_else(missing)?
            .to_owned(),
        issued_ms,
        expires_ms: issued_ms + i64::from(r.expires_in()) * 1000,
    })
}

/// Where an `InitiateAuth` or `RespondToAuthChallenge` answer leaves the sign-in (the two
/// answers are different types with the same accessors).
macro_rules! step_of {
    ($out:expr, $email:expr) => {
        step(
            $out.authentication_result(),
            $out.challenge_name(),
            $out.session(),
            $out.challenge_parameters(),
            $email,
        )
    };
}
use step_of;

/// Where a sign-in stands after the password was proven.
pub(crate) enum Step {
    Done(Session),
    /// `NEW_PASSWORD_REQUIRED`, to answer with this session.
    NewPassword {
        session: Option<String>,
        username: String,
    },
}

fn step(
    result: Option<&cognito::types::AuthenticationResultType>,
    challenge: Option<&ChallengeNameType>,
    session: Option<&str>,
    params: Option<&std::collections::HashMap<String, String>>,
    email: &str,
) -> Result<Step, SyncError> {
    match (result, challenge) {
        (Some(_), _) => Ok(Step::Done(session_from(result, None)?)),
        (None, Some(ChallengeNameType::NewPasswordRequired)) => Ok(Step::NewPassword {
            session: session.map(str::to_owned),
            username: params
                .and_then(|p| p.get("USER_ID_FOR_SRP").or_else(|| p.get("USERNAME")))
                .cloned()
                .unwrap_or_else(|| email.to_owned()),
        }),
        (None, other) => Err(unsupported_challenge(other)),
    }
}

/// What a pool says when the app client does not allow `USER_SRP_AUTH` (Cognito: "USER_SRP_AUTH
/// is not enabled for the client."; the built-in provider, for an account from before SRP).
const SRP_NOT_ENABLED: &str = "USER_SRP_AUTH is not";

fn unsupported_challenge(challenge: Option<&ChallengeNameType>) -> SyncError {
    SyncError::Auth(format!(
        "the sign-in service asks for {}, which this app does not support yet",
        challenge.map_or("an unknown challenge", |c| c.as_str())
    ))
}

/// Turns an SDK error into words a user understands.
fn auth_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    e: SdkError<E, R>,
) -> SyncError {
    match &e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => SyncError::Offline(format!(
            "cannot reach the sign-in service: {}",
            cognito::error::DisplayErrorContext(&e)
        )),
        SdkError::ServiceError(se) => {
            let err = se.err();
            let message = err.message().unwrap_or("no details").to_owned();
            match err.code() {
                Some("NotAuthorizedException") if message.contains("Device has been revoked") => {
                    SyncError::DeviceRevoked
                }
                Some("NotAuthorizedException")
                    if message.contains("Password attempts exceeded") =>
                {
                    SyncError::Auth(
                        "Too many wrong passwords: wait a few minutes, then try again".into(),
                    )
                }
                Some("NotAuthorizedException") => {
                    SyncError::Auth("Incorrect email or password".into())
                }
                Some("UsernameExistsException") => {
                    SyncError::Auth("An account with this email already exists".into())
                }
                Some("InvalidPasswordException") => {
                    SyncError::Auth(format!("The password is not accepted: {message}"))
                }
                Some("UserNotConfirmedException") => SyncError::Auth(
                    "This account is not confirmed yet: enter the code that was sent to its \
                     e-mail address (`syncsphere confirm-signup`; `--resend` sends a new one)"
                        .into(),
                ),
                Some("CodeMismatchException") => {
                    SyncError::Auth("That confirmation code is not the one that was sent".into())
                }
                Some("ExpiredCodeException") => {
                    SyncError::Auth("That confirmation code has expired: ask for a new one".into())
                }
                Some("LimitExceededException" | "TooManyRequestsException") => {
                    SyncError::Auth("Too many attempts: wait a while, then try again".into())
                }
                // The pool's own words (a policy, a missing setting) read well as they are.
                Some("InvalidParameterException") => SyncError::Auth(message),
                Some(code) => SyncError::Auth(format!("{code}: {message}")),
                None => SyncError::Auth(message),
            }
        }
        _ => SyncError::Auth(cognito::error::DisplayErrorContext(&e).to_string()),
    }
}

/// Hands out a valid access token, refreshing it (and persisting the session) before it expires.
pub(crate) struct TokenSource {
    cognito: Cognito,
    session: Mutex<Session>,
    store: SessionStore,
}

impl TokenSource {
    /// The session `config` says `config_dir` keeps (in the file or the keychain).
    pub(crate) async fn load(config_dir: &Path, config: &ClientConfig) -> Result<Self, SyncError> {
        let store = SessionStore::of(config_dir, config);
        let session = store.load().await?;
        Ok(TokenSource {
            cognito: Cognito::new(&config.cognito).await,
            session: Mutex::new(session),
            store,
        })
    }

    pub(crate) async fn access_token(&self) -> Result<String, SyncError> {
        let mut session = self.session.lock().await;
        // Refresh when a quarter of the lifetime (at most five minutes) is left.
        let margin = ((session.expires_ms - session.issued_ms) / 4).min(300_000);
        if now_ms() + margin >= session.expires_ms {
            self.refresh(&mut session).await?;
        }
        Ok(session.access_token.clone())
    }

    /// A token that expires later than `expires_at` (seconds since the epoch), refreshing if
    /// the current one may not — the answer to the push channel's `reauth`. Our expiry is an
    /// estimate (when the response arrived + its lifetime), later than the token's own by the
    /// response time: a token within [`REAUTH_SLACK_SECS`] of `expires_at` may be the very one
    /// the server asks about, and answering with it would leave the socket to expire.
    pub(crate) async fn token_expiring_after(&self, expires_at: u64) -> Result<String, SyncError> {
        let mut session = self.session.lock().await;
        if session.expires_ms / 1000 <= expires_at as i64 + REAUTH_SLACK_SECS {
            self.refresh(&mut session).await?;
        }
        Ok(session.access_token.clone())
    }

    async fn refresh(&self, session: &mut Session) -> Result<(), SyncError> {
        let fresh = self.cognito.refresh(&session.refresh_token).await?;
        self.store.save(&fresh, Some(session)).await?;
        tracing::info!("refreshed access token");
        *session = fresh;
        Ok(())
    }
}
