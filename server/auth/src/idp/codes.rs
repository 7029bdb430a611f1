//! E-mailed codes, once the provider has a mail relay ([`super::mail`]): an account signed up
//! then stays unconfirmed until its code is entered (`ConfirmSignUp`, `ResendConfirmationCode`),
//! and a forgotten password is reset with one (`ForgotPassword`, `ConfirmForgotPassword`) — the
//! calls and exceptions of Amazon Cognito, so clients have one code path for both.
//!
//! A code is six digits, valid 24 hours (sign-up) or one hour (reset), at most
//! [`MAX_ATTEMPTS`] wrong guesses, then void; a new one replaces it, at most one message per
//! [`RESEND_AFTER_MS`] per user and purpose. Only a keyed hash is stored. As a pool that
//! prevents user-existence errors, an unknown user gets the same answer as a known one (a masked
//! destination, no message), and a wrong code for an unknown user the same exception as a wrong
//! code.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use sqlx::Row;

use super::{IdentityProvider, IdpError, UserRecord, normalize_username};
use crate::now_ms;

/// Wrong codes accepted before a code is void.
pub const MAX_ATTEMPTS: i64 = 5;
/// Least time between two messages of one purpose to one user.
pub const RESEND_AFTER_MS: i64 = 60_000;

/// What a code is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    ConfirmSignUp,
    ResetPassword,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::ConfirmSignUp => "confirm",
            Purpose::ResetPassword => "reset",
        }
    }

    fn lifetime_ms(self) -> i64 {
        match self {
            Purpose::ConfirmSignUp => 24 * 3600 * 1000,
            Purpose::ResetPassword => 3600 * 1000,
        }
    }

    fn message(self, code: &str) -> (&'static str, String) {
        // Lines under 76 characters: the message stays 7-bit text, readable as it is.
        match self {
            Purpose::ConfirmSignUp => (
                "Your SyncSphere confirmation code",
                format!(
                    "Welcome to SyncSphere.\n\n\
                     Your confirmation code is {code}\n\n\
                     Enter it where you signed up: the app's code field, or\n\
                     syncsphere confirm-signup --code {code}\n\
                     It is valid for 24 hours.\n\n\
                     If you did not sign up, ignore this message: without the code\n\
                     the account cannot be used.\n"
                ),
            ),
            Purpose::ResetPassword => (
                "Your SyncSphere password reset code",
                format!(
                    "Someone asked to reset the password of your SyncSphere account.\n\n\
                     Your reset code is {code}\n\n\
                     Enter it with your new password: the app's \"Forgot password?\",\n\
                     or syncsphere reset-password --code {code}\n\
                     It is valid for one hour.\n\n\
                     If it was not you, ignore this message: your password stays as it is.\n"
                ),
            ),
        }
    }
}

/// Where a code was sent, as Cognito's `CodeDeliveryDetails` (`DeliveryMedium` `EMAIL`,
/// `AttributeName` `email`): the address masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeDelivery {
    pub destination: String,
}

/// The answer for an unknown account: a delivery like a real one's, and no message.
fn nobody(username: &str) -> CodeDelivery {
    CodeDelivery {
        destination: mask(username.trim()),
    }
}

/// `dana@example.com` → `d***@e***`, as Cognito masks it.
pub(super) fn mask(email: &str) -> String {
    let first = |s: &str| s.chars().next().map(String::from).unwrap_or_default();
    match email.split_once('@') {
        Some((local, domain)) => format!("{}***@{}***", first(local), first(domain)),
        None => format!("{}***", first(email)),
    }
}

impl IdentityProvider {
    /// Whether accounts are confirmed by e-mail (a mail relay is set).
    pub fn confirms_by_mail(&self) -> bool {
        self.mailer.is_some()
    }

    fn code_hash(&self, user_id: &str, purpose: Purpose, code: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.code_key).expect("any key length");
        mac.update(format!("{user_id}\0{}\0{code}", purpose.as_str()).as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Makes a new code for `user` and mails it (in the background); refused while the last
    /// message of this purpose is less than [`RESEND_AFTER_MS`] old.
    pub(super) async fn send_code(
        &self,
        user: &UserRecord,
        purpose: Purpose,
    ) -> Result<CodeDelivery, IdpError> {
        let Some(mailer) = self.mailer.clone() else {
            return Err(IdpError::InvalidParameter(
                "This server does not send e-mail: ask its administrator".into(),
            ));
        };
        let now = now_ms();
        let code = format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32));
        // One statement: a second request racing this one either sees the new row or loses.
        let written = sqlx::query(
            "INSERT INTO idp_codes (user_id, purpose, code_hash, expires_ms, sent_ms, attempts)
             VALUES ($1, $2, $3, $4, $5, 0)
             ON CONFLICT (user_id, purpose) DO UPDATE
             SET code_hash = excluded.code_hash, expires_ms = excluded.expires_ms,
                 sent_ms = excluded.sent_ms, attempts = 0
             WHERE idp_codes.sent_ms <= $6",
        )
        .bind(&user.user_id)
        .bind(purpose.as_str())
        .bind(self.code_hash(&user.user_id, purpose, &code))
        .bind(now + purpose.lifetime_ms())
        .bind(now)
        .bind(now - RESEND_AFTER_MS)
        .execute(&self.db.pool)
        .await?;
        if written.rows_affected() == 0 {
            return Err(IdpError::LimitExceeded);
        }
        let (subject, body) = purpose.message(&code);
        let (to, user_id) = (user.email.clone(), user.user_id.clone());
        tokio::spawn(async move {
            match mailer.send(&to, subject, body).await {
                Ok(()) => tracing::info!(%user_id, purpose = purpose.as_str(), "code mailed"),
                Err(e) => tracing::error!(
                    %user_id,
                    purpose = purpose.as_str(),
                    error = %e,
                    "could not mail a code; the user can ask for a new one"
                ),
            }
        });
        Ok(CodeDelivery {
            destination: mask(&user.email),
        })
    }

    /// Checks `code` against the user's current one of `purpose` and uses it up.
    async fn check_code(
        &self,
        user_id: &str,
        purpose: Purpose,
        code: &str,
    ) -> Result<(), IdpError> {
        let row = sqlx::query(
            "SELECT code_hash, expires_ms, attempts FROM idp_codes
             WHERE user_id = $1 AND purpose = $2",
        )
        .bind(user_id)
        .bind(purpose.as_str())
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or(IdpError::CodeMismatch)?;
        if row.get::<i64, _>("attempts") >= MAX_ATTEMPTS {
            return Err(IdpError::LimitExceeded);
        }
        if row.get::<i64, _>("expires_ms") < now_ms() {
            return Err(IdpError::ExpiredCode);
        }
        let expected: String = row.get("code_hash");
        let given = self.code_hash(user_id, purpose, code.trim());
        if !constant_time_eq(expected.as_bytes(), given.as_bytes()) {
            sqlx::query(
                "UPDATE idp_codes SET attempts = attempts + 1 WHERE user_id = $1 AND purpose = $2",
            )
            .bind(user_id)
            .bind(purpose.as_str())
            .execute(&self.db.pool)
            .await?;
            return Err(IdpError::CodeMismatch);
        }
        sqlx::query("DELETE FROM idp_codes WHERE user_id = $1 AND purpose = $2")
            .bind(user_id)
            .bind(purpose.as_str())
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    /// The user and whether it is confirmed, by user name.
    async fn user_by_name(&self, username: &str) -> Result<Option<(UserRecord, bool)>, IdpError> {
        let Ok(name) = normalize_username(username) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT user_id, username, email, confirmed FROM idp_users WHERE username = $1",
        )
        .bind(&name)
        .fetch_optional(&self.db.pool)
        .await?;
        Ok(row.map(|r| {
            (
                UserRecord {
                    user_id: r.get("user_id"),
                    username: r.get("username"),
                    email: r.get("email"),
                },
                r.get::<i64, _>("confirmed") != 0,
            )
        }))
    }

    /// Cognito `ConfirmSignUp`.
    pub async fn confirm_sign_up(
        &self,
        client_id: &str,
        username: &str,
        code: &str,
    ) -> Result<(), IdpError> {
        self.check_client(client_id)?;
        let (user, confirmed) = self
            .user_by_name(username)
            .await?
            .ok_or(IdpError::CodeMismatch)?;
        if confirmed {
            return Err(IdpError::NotAuthorizedWith(
                "User cannot be confirmed. Current status is CONFIRMED".into(),
            ));
        }
        self.check_code(&user.user_id, Purpose::ConfirmSignUp, code)
            .await?;
        sqlx::query("UPDATE idp_users SET confirmed = 1 WHERE user_id = $1")
            .bind(&user.user_id)
            .execute(&self.db.pool)
            .await?;
        tracing::info!(user_id = %user.user_id, "sign-up confirmed");
        Ok(())
    }

    /// Cognito `ResendConfirmationCode`.
    pub async fn resend_confirmation_code(
        &self,
        client_id: &str,
        username: &str,
    ) -> Result<CodeDelivery, IdpError> {
        self.check_client(client_id)?;
        if !self.confirms_by_mail() {
            return Err(IdpError::InvalidParameter(
                "This server confirms accounts at once: there is no code to send".into(),
            ));
        }
        match self.user_by_name(username).await? {
            Some((_, true)) => Err(IdpError::InvalidParameter(
                "User is already confirmed.".into(),
            )),
            Some((user, false)) => self.send_code(&user, Purpose::ConfirmSignUp).await,
            None => Ok(nobody(username)),
        }
    }

    /// Cognito `ForgotPassword`: a reset code to the account's address. An unconfirmed account
    /// gets one too: using it proves the address, which confirms the account.
    pub async fn forgot_password(
        &self,
        client_id: &str,
        username: &str,
    ) -> Result<CodeDelivery, IdpError> {
        self.check_client(client_id)?;
        if !self.confirms_by_mail() {
            return Err(IdpError::InvalidParameter(
                "This server does not send e-mail, so it cannot reset passwords by itself: ask \
                 its administrator"
                    .into(),
            ));
        }
        match self.user_by_name(username).await? {
            Some((user, _)) => self.send_code(&user, Purpose::ResetPassword).await,
            None => Ok(nobody(username)),
        }
    }

    /// Cognito `ConfirmForgotPassword`: the code and a new password that meets the policy. The
    /// account's sessions stay signed in, as with Cognito ("sign out of all devices" ends them).
    pub async fn confirm_forgot_password(
        &self,
        client_id: &str,
        username: &str,
        code: &str,
        password: &str,
    ) -> Result<(), IdpError> {
        self.check_client(client_id)?;
        self.config.password_policy.check(password)?;
        let (user, _) = self
            .user_by_name(username)
            .await?
            .ok_or(IdpError::CodeMismatch)?;
        self.check_code(&user.user_id, Purpose::ResetPassword, code)
            .await?;
        self.set_password(&user.user_id, password).await?;
        sqlx::query("UPDATE idp_users SET confirmed = 1 WHERE user_id = $1")
            .bind(&user.user_id)
            .execute(&self.db.pool)
            .await?;
        tracing::info!(user_id = %user.user_id, "password reset with a mailed code");
        Ok(())
    }

    /// The mailer, checked once at start (in the background).
    pub(super) fn spawn_relay_check(self: &Arc<Self>) {
        if let Some(mailer) = self.mailer.clone() {
            tokio::spawn(async move { mailer.check_relay().await });
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked_as_cognito_masks_them() {
        assert_eq!(mask("dana@example.com"), "d***@e***");
        assert_eq!(mask("x"), "x***");
        assert_eq!(mask(""), "***");
    }

    #[test]
    fn equal_means_equal() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
