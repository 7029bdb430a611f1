//! Cognito JWT verification and the axum extractor that applies it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use syncsphere_events::{EventsError, Revocations};
use syncsphere_protocol::{ApiError, DeviceId, ErrorCode, UserId};
use tokio::sync::RwLock;

/// Seconds of clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;
/// Most tokens remembered as verified (a client sends the same access token with every request
/// for up to an hour; each entry is the token's SHA-256 and its claims, ~0.7 KB: 28 MB at
/// most). More than the devices a server keeps connected: the soak's 10,000 devices and a few
/// attackers held 10,006 live tokens, and the old limit of 10,000 emptied the whole cache every
/// time, each request then paying for a signature check again.
const VERIFIED_TOKENS: usize = 40_000;
/// Minimum time between two JWKS fetches triggered by an unknown `kid` (a forged `kid` must not
/// turn every request into a fetch).
const REFETCH_PENALTY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    MissingToken,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token signed with an unknown key")]
    UnknownKey,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token was issued for another client")]
    WrongClient,
    #[error("token_use '{0}' where an access token is required")]
    WrongTokenUse(String),
    #[error("could not fetch the JWKS: {0}")]
    Jwks(String),
    #[error("this device was unlinked from the account; sign in again")]
    DeviceRevoked,
    #[error("signed out of all devices; sign in again")]
    SignedOut,
    #[error("could not check whether the device is revoked: {0}")]
    RevocationCheck(#[source] EventsError),
}

/// A future returned by object-safe traits (the blob stores' too).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The claims SyncSphere reads from a Cognito access or ID token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub token_use: String,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub aud: Option<String>,
    pub exp: u64,
    #[serde(default)]
    pub iat: Option<u64>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(rename = "cognito:username", default)]
    pub cognito_username: Option<String>,
    /// Cognito's device key: the device this token was issued to (device-bound sign-in).
    #[serde(default)]
    pub device_key: Option<String>,
    /// Cognito's id of the sign-in this token comes from, kept by refreshed tokens: the session
    /// a device binds when it registers (0038).
    #[serde(default)]
    pub origin_jti: Option<String>,
}

/// Where the verifier gets the pool's public keys.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// A key set known in-process (the built-in identity provider in the same binary).
    Static(JwkSet),
    /// `{iss}/.well-known/jwks.json` of a Cognito pool (or an emulator), fetched over HTTP,
    /// cached by `kid` and refetched on an unknown `kid` at most every [`REFETCH_PENALTY`].
    Remote(String),
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    last_fetch: Option<Instant>,
}

/// Verifies bearer access tokens of one user pool and its allowed app clients.
pub struct Verifier {
    issuer: String,
    client_ids: Vec<String>,
    source: JwksSource,
    http: reqwest::Client,
    cache: RwLock<KeyCache>,
    /// Tokens that passed [`Verifier::verify`], by their whole text, with their claims: a
    /// repeat skips the RS256 signature check (the largest CPU cost of a small upload), never
    /// the expiry check. Device revocation is checked per request outside of this.
    verified: std::sync::Mutex<HashMap<[u8; 32], Claims>>,
    revocations: Option<Arc<dyn Revocations>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("client_ids", &self.client_ids)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Accepts access tokens of `issuer` issued to one of `client_ids`.
    pub fn new(
        issuer: impl Into<String>,
        client_ids: impl IntoIterator<Item = impl Into<String>>,
        source: JwksSource,
    ) -> Self {
        let mut cache = KeyCache::default();
        if let JwksSource::Static(set) = &source {
            cache.keys = decoding_keys(set);
        }
        Verifier {
            issuer: issuer.into(),
            client_ids: client_ids.into_iter().map(Into::into).collect(),
            source,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            cache: RwLock::new(cache),
            verified: std::sync::Mutex::default(),
            revocations: None,
        }
    }

    /// Also rejects tokens bound to a revoked device, and tokens issued before the user signed
    /// out everywhere (checked on every request).
    pub fn with_revocations(mut self, revocations: Arc<dyn Revocations>) -> Self {
        self.revocations = Some(revocations);
        self
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Refuses `user`'s token if its device (its own, else the one its session is bound to)
    /// was revoked or it was issued before the user signed out everywhere (never without a
    /// revocation source). Returns the device the token's session is bound to, if it is.
    pub async fn check_revocations(&self, user: &AuthUser) -> Result<Option<DeviceId>, AuthError> {
        let Some(revocations) = &self.revocations else {
            return Ok(None);
        };
        let found = revocations
            .lookup(
                &user.user_id,
                user.device_key.as_ref(),
                user.session.as_deref(),
            )
            .await
            .map_err(AuthError::RevocationCheck)?;
        if found.device_revoked {
            return Err(AuthError::DeviceRevoked);
        }
        // A token without `iat` cannot show it is newer than the cut-off.
        if let Some(before) = found.signed_out_before
            && user.issued_at.is_none_or(|iat| iat < before)
        {
            return Err(AuthError::SignedOut);
        }
        Ok(found.session_device)
    }

    /// Verifies `token` and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let now = now_secs();
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.verified_lock().get(&key)
            && claims.exp + LEEWAY_SECS > now
        {
            return Ok(claims.clone());
        }
        let claims = self.verify_signed(token).await?;
        let mut verified = self.verified_lock();
        if verified.len() >= VERIFIED_TOKENS {
            make_room(&mut verified, VERIFIED_TOKENS, now);
        }
        verified.insert(key, claims.clone());
        Ok(claims)
    }

    fn verified_lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Claims>> {
        // The map holds only verified tokens: one left by a panicking thread is still sound.
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The full check: signature, issuer, expiry, not-before, token use and client. Only access
    /// tokens act on the API (as a Cognito resource server expects): an ID token says who
    /// someone is to the app that signed them in, not what a bearer may do.
    async fn verify_signed(&self, token: &str) -> Result<Claims, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} is not RS256",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Malformed("no kid".into()))?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.issuer]);
        validation.validate_aud = false; // checked below, depending on token_use
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?
            .claims;
        if claims.token_use != "access" {
            return Err(AuthError::WrongTokenUse(claims.token_use));
        }
        let client = claims.client_id.as_deref().unwrap_or_default();
        if !self.client_ids.iter().any(|c| c == client) {
            return Err(AuthError::WrongClient);
        }
        Ok(claims)
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        if let Some(key) = self.cache.read().await.keys.get(kid) {
            return Ok(key.clone());
        }
        let JwksSource::Remote(url) = &self.source else {
            return Err(AuthError::UnknownKey);
        };
        let mut cache = self.cache.write().await;
        if let Some(key) = cache.keys.get(kid) {
            return Ok(key.clone());
        }
        if cache
            .last_fetch
            .is_some_and(|t| t.elapsed() < REFETCH_PENALTY)
        {
            return Err(AuthError::UnknownKey);
        }
        cache.last_fetch = Some(Instant::now());
        let set: JwkSet = self
            .http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| AuthError::Jwks(e.to_string()))?
            .json()
            .await
            .map_err(|e| AuthError::Jwks(e.to_string()))?;
        cache.keys = decoding_keys(&set);
        tracing::info!(url, keys = cache.keys.len(), "fetched JWKS");
        cache.keys.get(kid).cloned().ok_or(AuthError::UnknownKey)
    }
}

fn decoding_keys(set: &JwkSet) -> HashMap<String, DecodingKey> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            DecodingKey::from_jwk(jwk).ok().map(|k| (kid, k))
        })
        .collect()
}

/// Makes room in a full cache of verified tokens (`limit` entries): drops the expired ones and,
/// if that leaves it over three quarters full, the half that expires first — mostly tokens a
/// refresh replaced, valid but no longer sent. Never the whole cache at once.
fn make_room(verified: &mut HashMap<[u8; 32], Claims>, limit: usize, now: u64) {
    verified.retain(|_, c| c.exp + LEEWAY_SECS > now);
    if verified.len() < limit * 3 / 4 {
        return;
    }
    let mut expiries: Vec<u64> = verified.values().map(|c| c.exp).collect();
    let half = expiries.len() / 2;
    let median = *expiries.select_nth_unstable(half).1;
    verified.retain(|_, c| c.exp > median);
}

/// The signed-in user of a request, from a verified `Authorization: Bearer` token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    /// Cognito `sub`: the stable user id that owns files and devices.
    pub user_id: UserId,
    pub username: String,
    /// When the token expires (`exp`, seconds since the epoch): long-lived connections must
    /// present a fresh token before then.
    pub expires_at: u64,
    /// When the token was issued (`iat`), if it says.
    pub issued_at: Option<u64>,
    /// The device the token is bound to — its `device_key`, else the device its sign-in
    /// session was bound to when that device registered (0038) — if any. Such a token only
    /// works for that device id, and stops working when the device is revoked.
    pub device_key: Option<DeviceId>,
    /// The token's sign-in session (`origin_jti`), if it names one.
    pub session: Option<String>,
}

impl AuthUser {
    /// Verifies the `Authorization` header of a request.
    pub async fn from_headers(
        headers: &axum::http::HeaderMap,
        verifier: &Verifier,
    ) -> Result<Self, AuthError> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or(AuthError::MissingToken)?;
        let claims = verifier.verify(token.trim()).await?;
        let username = claims
            .username
            .or(claims.cognito_username)
            .unwrap_or_else(|| claims.sub.clone());
        let mut user = AuthUser {
            user_id: UserId::from(claims.sub),
            username,
            expires_at: claims.exp,
            issued_at: claims.iat,
            device_key: claims.device_key.map(DeviceId::from),
            session: claims.origin_jti,
        };
        let session_device = verifier.check_revocations(&user).await?;
        if user.device_key.is_none() {
            user.device_key = session_device;
        }
        Ok(user)
    }
}

impl<S> FromRequestParts<S> for AuthUser
where
    Arc<Verifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let verifier = Arc::<Verifier>::from_ref(state);
        AuthUser::from_headers(&parts.headers, &verifier)
            .await
            .map_err(AuthRejection)
    }
}

/// `401` (`unauthorized`, `device_revoked` or `signed_out`, with a `WWW-Authenticate` challenge), or `503
/// unavailable` when revocations cannot be checked.
#[derive(Debug)]
pub struct AuthRejection(pub AuthError);

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let code = match e {
            AuthError::DeviceRevoked => ErrorCode::DeviceRevoked,
            AuthError::SignedOut => ErrorCode::SignedOut,
            AuthError::RevocationCheck(_) => {
                tracing::error!(error = %e, "revocation check failed");
                ErrorCode::Unavailable
            }
            _ => ErrorCode::Unauthorized,
        };
        ApiError::new(code, e.to_string())
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        tracing::debug!(error = %self.0, "rejected request");
        crate::api_error::respond(self.0.into())
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "u".into(),
            iss: "i".into(),
            token_use: "access".into(),
            client_id: None,
            aud: None,
            exp,
            iat: None,
            username: None,
            cognito_username: None,
            device_key: None,
            origin_jti: None,
        }
    }

    fn key(n: u64) -> [u8; 32] {
        Sha256::digest(n.to_be_bytes()).into()
    }

    /// A full cache of live tokens loses the half that expires first, not everything; expired
    /// tokens go first, and when they make enough room nothing live is dropped.
    #[test]
    fn a_full_cache_drops_the_tokens_that_expire_first() {
        let now = 1_000_000;
        let mut cache: HashMap<[u8; 32], Claims> =
            (0..100).map(|n| (key(n), claims(now + 60 + n))).collect();
        make_room(&mut cache, 100, now);
        assert_eq!(
            cache.len(),
            49,
            "the 51 earliest expiries (up to the median) go"
        );
        assert!((51..100).all(|n| cache.contains_key(&key(n))));

        // 40 expired and 60 live: dropping the expired ones is room enough.
        let mut cache: HashMap<[u8; 32], Claims> = (0..100)
            .map(|n| {
                (
                    key(n),
                    claims(if n < 40 {
                        now - LEEWAY_SECS - 1
                    } else {
                        now + n
                    }),
                )
            })
            .collect();
        make_room(&mut cache, 100, now);
        assert_eq!(cache.len(), 60);
        assert!((40..100).all(|n| cache.contains_key(&key(n))));
    }
}
