//! The subset of the Amazon Cognito Identity Provider JSON API that SyncSphere clients use:
//! `SignUp` (with `ConfirmSignUp`, `ResendConfirmationCode`, `ForgotPassword` and
//! `ConfirmForgotPassword` once a mail relay is set: [`super::codes`]), `InitiateAuth` (`USER_SRP_AUTH` with `RespondToAuthChallenge` to its
//! `PASSWORD_VERIFIER` — [`super::srp`] —, `USER_PASSWORD_AUTH`, `REFRESH_TOKEN_AUTH`), `GetUser` and
//! `ChangePassword`, `RevokeToken` (a refresh token), `GlobalSignOut` (which, beyond Cognito, also voids the user's access tokens on every role:
//! [`crate::sign_out`]), plus the pool's JWKS.
//!
//! Wire format (what the AWS SDK sends): `POST {endpoint}/` with
//! `Content-Type: application/x-amz-json-1.1` and
//! `X-Amz-Target: AWSCognitoIdentityProviderService.<Operation>`; errors are HTTP 400 with
//! `{"__type": "<Exception>", "message": …}`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use syncsphere_protocol::endpoint::{self, Endpoint};

use super::{IdentityProvider, IdpError};
use crate::ClientAddress;
use crate::routes::{Mount, RouterExt};

/// Path of the JSON API; clients use `{server}{COGNITO_API_PATH}` as the SDK's endpoint URL.
pub const COGNITO_API_PATH: &str = endpoint::CognitoApi::PATH;
const TARGET_PREFIX: &str = "AWSCognitoIdentityProviderService.";

/// Routes: the Cognito JSON API and `/{pool id}/.well-known/jwks.json`.
pub fn router(idp: Arc<IdentityProvider>) -> Router {
    // This pool's keys only: another pool id is no route.
    let jwks_path = endpoint::GetJwks::path(&[idp.config().user_pool_id.as_str()]);
    Router::new()
        .endpoint(endpoint::CognitoApi, dispatch)
        .endpoint(endpoint::CognitoApiSlash, dispatch)
        .route(&jwks_path, endpoint::GetJwks::on(jwks))
        .with_state(idp)
}

async fn jwks(State(idp): State<Arc<IdentityProvider>>) -> Response {
    axum::Json(idp.jwks()).into_response()
}

/// A Cognito-style error: `__type` names the exception.
#[derive(Debug)]
struct CognitoError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl CognitoError {
    fn new(kind: &'static str, message: impl Into<String>) -> Self {
        CognitoError {
            status: StatusCode::BAD_REQUEST,
            kind,
            message: message.into(),
        }
    }
}

impl From<IdpError> for CognitoError {
    fn from(e: IdpError) -> Self {
        let kind = match &e {
            IdpError::UsernameExists => "UsernameExistsException",
            IdpError::InvalidPassword(_) => "InvalidPasswordException",
            IdpError::InvalidParameter(_) => "InvalidParameterException",
            IdpError::NotAuthorized
            | IdpError::NotAuthorizedWith(_)
            | IdpError::PasswordAttemptsExceeded
            | IdpError::InvalidRefreshToken
            | IdpError::DeviceRevoked
            | IdpError::AccessTokenRevoked
            | IdpError::InvalidAccessToken => "NotAuthorizedException",
            IdpError::UnknownClient(_) => "ResourceNotFoundException",
            IdpError::UserNotConfirmed => "UserNotConfirmedException",
            IdpError::CodeMismatch => "CodeMismatchException",
            IdpError::ExpiredCode => "ExpiredCodeException",
            IdpError::LimitExceeded => "LimitExceededException",
            IdpError::TooManyRequests => "TooManyRequestsException",
            IdpError::Internal(_) => {
                tracing::error!(error = %e, "identity provider failure");
                return CognitoError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    kind: "InternalErrorException",
                    message: "internal error".into(),
                };
            }
        };
        CognitoError::new(kind, e.to_string())
    }
}

impl IntoResponse for CognitoError {
    fn into_response(self) -> Response {
        amz_json(
            self.status,
            json!({ "__type": self.kind, "message": self.message }),
        )
    }
}

fn amz_json(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
        body.to_string(),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SignUpRequest {
    client_id: String,
    username: String,
    password: String,
    #[serde(default)]
    user_attributes: Vec<AttributeType>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConfirmSignUpRequest {
    client_id: String,
    username: String,
    confirmation_code: String,
}

/// `ResendConfirmationCode` and `ForgotPassword`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendCodeRequest {
    client_id: String,
    username: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConfirmForgotPasswordRequest {
    client_id: String,
    username: String,
    confirmation_code: String,
    password: String,
}

/// Cognito's `CodeDeliveryDetails`.
fn delivery(d: &super::CodeDelivery) -> Value {
    json!({ "Destination": d.destination, "DeliveryMedium": "EMAIL", "AttributeName": "email" })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AttributeType {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InitiateAuthRequest {
    auth_flow: String,
    client_id: String,
    #[serde(default)]
    auth_parameters: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RespondToAuthChallengeRequest {
    client_id: String,
    challenge_name: String,
    #[serde(default)]
    challenge_responses: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ChangePasswordRequest {
    access_token: String,
    previous_password: String,
    proposed_password: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RevokeTokenRequest {
    client_id: String,
    token: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AccessTokenRequest {
    access_token: String,
}

async fn dispatch(
    State(idp): State<Arc<IdentityProvider>>,
    peer: Option<Extension<ClientAddress>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let from = client_address(
        idp.config().client_address_header.as_deref(),
        &headers,
        peer.map(|Extension(ClientAddress(ip))| ip),
    );
    match handle(&idp, &headers, &body, from).await {
        Ok(value) => amz_json(StatusCode::OK, value),
        Err(e) => e.into_response(),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, CognitoError> {
    serde_json::from_slice(body)
        .map_err(|e| CognitoError::new("SerializationException", format!("invalid request: {e}")))
}

/// Who is signing in, for the throttle: the trusted proxy's header when configured and
/// readable (`X-Forwarded-For`: its last entry), else the TCP peer.
fn client_address(
    trusted_header: Option<&str>,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Option<IpAddr> {
    let forwarded = trusted_header
        .and_then(|name| headers.get_all(name).iter().next_back())
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse().ok());
    forwarded.or(peer)
}

async fn handle(
    idp: &IdentityProvider,
    headers: &HeaderMap,
    body: &[u8],
    from: Option<IpAddr>,
) -> Result<Value, CognitoError> {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .ok_or_else(|| CognitoError::new("UnknownOperationException", "missing X-Amz-Target"))?;
    match target {
        "SignUp" => {
            let req: SignUpRequest = parse(body)?;
            let email = req
                .user_attributes
                .iter()
                .find(|a| a.name == "email")
                .map(|a| a.value.as_str());
            let (user, sent) = idp
                .sign_up(&req.client_id, &req.username, &req.password, email)
                .await?;
            Ok(match sent {
                None => json!({ "UserConfirmed": true, "UserSub": user.user_id }),
                Some(d) => json!({
                    "UserConfirmed": false,
                    "UserSub": user.user_id,
                    "CodeDeliveryDetails": delivery(&d),
                }),
            })
        }
        "ConfirmSignUp" => {
            let req: ConfirmSignUpRequest = parse(body)?;
            idp.confirm_sign_up(&req.client_id, &req.username, &req.confirmation_code)
                .await?;
            Ok(json!({}))
        }
        "ResendConfirmationCode" => {
            let req: SendCodeRequest = parse(body)?;
            let d = idp
                .resend_confirmation_code(&req.client_id, &req.username)
                .await?;
            Ok(json!({ "CodeDeliveryDetails": delivery(&d) }))
        }
        "ForgotPassword" => {
            let req: SendCodeRequest = parse(body)?;
            let d = idp.forgot_password(&req.client_id, &req.username).await?;
            Ok(json!({ "CodeDeliveryDetails": delivery(&d) }))
        }
        "ConfirmForgotPassword" => {
            let req: ConfirmForgotPasswordRequest = parse(body)?;
            idp.confirm_forgot_password(
                &req.client_id,
                &req.username,
                &req.confirmation_code,
                &req.password,
            )
            .await?;
            Ok(json!({}))
        }
        "InitiateAuth" => {
            let req: InitiateAuthRequest = parse(body)?;
            let param = |name: &str| {
                req.auth_parameters.get(name).ok_or_else(|| {
                    CognitoError::new(
                        "InvalidParameterException",
                        format!("Missing required parameter {name}"),
                    )
                })
            };
            // Cognito's DEVICE_KEY: binds the tokens to one device so it can be revoked alone.
            let device_key = req.auth_parameters.get("DEVICE_KEY").map(String::as_str);
            if req.auth_flow == "USER_SRP_AUTH" {
                let c = idp
                    .srp_auth(
                        &req.client_id,
                        param("USERNAME")?,
                        param("SRP_A")?,
                        device_key,
                        from,
                    )
                    .await?;
                return Ok(json!({
                    "ChallengeName": "PASSWORD_VERIFIER",
                    "ChallengeParameters": {
                        "SALT": c.challenge.salt,
                        "SECRET_BLOCK": c.challenge.secret_block,
                        "SRP_B": c.challenge.srp_b,
                        "USERNAME": c.username,
                        "USER_ID_FOR_SRP": c.user_id_for_srp,
                    },
                }));
            }
            let result = match req.auth_flow.as_str() {
                "USER_PASSWORD_AUTH" => {
                    idp.password_auth(
                        &req.client_id,
                        (param("USERNAME")?, param("PASSWORD")?),
                        device_key,
                        from,
                    )
                    .await?
                }
                "REFRESH_TOKEN_AUTH" | "REFRESH_TOKEN" => {
                    idp.refresh_auth(&req.client_id, param("REFRESH_TOKEN")?)
                        .await?
                }
                other => {
                    return Err(CognitoError::new(
                        "InvalidParameterException",
                        format!("Unsupported AuthFlow {other}"),
                    ));
                }
            };
            Ok(json!({ "AuthenticationResult": result, "ChallengeParameters": {} }))
        }
        "RespondToAuthChallenge" => {
            let req: RespondToAuthChallengeRequest = parse(body)?;
            if req.challenge_name != "PASSWORD_VERIFIER" {
                return Err(CognitoError::new(
                    "InvalidParameterException",
                    format!("Unsupported ChallengeName {}", req.challenge_name),
                ));
            }
            let response = |name: &str| {
                req.challenge_responses
                    .get(name)
                    .map(String::as_str)
                    .ok_or_else(|| {
                        CognitoError::new(
                            "InvalidParameterException",
                            format!("Missing required parameter {name}"),
                        )
                    })
            };
            let result = idp
                .srp_verify(
                    &req.client_id,
                    (
                        response("PASSWORD_CLAIM_SECRET_BLOCK")?,
                        response("TIMESTAMP")?,
                        response("PASSWORD_CLAIM_SIGNATURE")?,
                    ),
                    response("USERNAME").unwrap_or_default(),
                    from,
                )
                .await?;
            Ok(json!({ "AuthenticationResult": result, "ChallengeParameters": {} }))
        }
        "GetUser" => {
            let req: AccessTokenRequest = parse(body)?;
            let user = idp.user_of_access_token(&req.access_token).await?;
            Ok(json!({
                "Username": user.username,
                "UserAttributes": [
                    { "Name": "sub", "Value": user.user_id },
                    { "Name": "email", "Value": user.email },
                ],
            }))
        }
        "GlobalSignOut" => {
            let req: AccessTokenRequest = parse(body)?;
            idp.global_sign_out(&req.access_token).await?;
            Ok(json!({}))
        }
        "ChangePassword" => {
            let req: ChangePasswordRequest = parse(body)?;
            idp.change_password(
                &req.access_token,
                &req.previous_password,
                &req.proposed_password,
            )
            .await?;
            Ok(json!({}))
        }
        "RevokeToken" => {
            let req: RevokeTokenRequest = parse(body)?;
            idp.revoke_refresh_token(&req.client_id, &req.token).await?;
            Ok(json!({}))
        }
        other => Err(CognitoError::new(
            "UnknownOperationException",
            format!("operation {other} is not supported by the built-in identity provider"),
        )),
    }
}
