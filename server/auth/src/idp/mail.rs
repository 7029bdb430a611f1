//! The built-in provider's outgoing mail: one SMTP relay (`--smtp-url`), one sender
//! (`--mail-from`), plain-text messages. Sent in the background, so that an answer never waits
//! for (or tells, by its timing, whether there was) a message; a failure is logged.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::IdpError;

/// How long one delivery to the relay may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the provider's mail goes out.
#[derive(Clone, PartialEq, Eq)]
pub struct MailSettings {
    /// `smtp://[user:password@]host[:port][?tls=required]` (STARTTLS) or `smtps://…` (TLS from
    /// the start), as lettre reads it.
    pub smtp_url: String,
    /// The sender, e.g. `SyncSphere <no-reply@example.com>`.
    pub from: String,
}

impl std::fmt::Debug for MailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold the relay's password.
        f.debug_struct("MailSettings")
            .field("smtp_url", &redact(&self.smtp_url))
            .field("from", &self.from)
            .finish()
    }
}

/// `scheme://host…` without the user and password of the URL.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://…@{host}"),
        _ => url.to_owned(),
    }
}

/// An SMTP relay and the sender address.
pub(super) struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    relay: String,
}

impl Mailer {
    /// Checks the settings (not the relay: [`Mailer::check_relay`] does, without holding up a
    /// start).
    pub(super) fn new(settings: &MailSettings) -> Result<Self, IdpError> {
        let relay = redact(&settings.smtp_url);
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&settings.smtp_url)
            .map_err(|e| IdpError::Internal(format!("--smtp-url {relay}: {e}")))?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        let from = settings
            .from
            .parse::<Mailbox>()
            .map_err(|e| IdpError::Internal(format!("--mail-from {:?}: {e}", settings.from)))?;
        Ok(Mailer {
            transport,
            from,
            relay,
        })
    }

    /// Connects to the relay once and logs whether it answers.
    pub(super) async fn check_relay(&self) {
        match self.transport.test_connection().await {
            Ok(true) => tracing::info!(relay = %self.relay, "mail relay answers"),
            Ok(false) | Err(_) => tracing::warn!(
                relay = %self.relay,
                "the mail relay does not answer: confirmation and password-reset codes cannot \
                 be sent until it does"
            ),
        }
    }

    /// Sends a plain-text message to `to`.
    pub(super) async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|e| format!("address {to:?}: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(None)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| e.to_string())?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_password_never_shows() {
        let settings = MailSettings {
            smtp_url: "smtps://mailer:s3cret@mail.example.com:465".into(),
            from: "SyncSphere <no-reply@example.com>".into(),
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("mail.example.com:465"), "{shown}");
        assert_eq!(redact("smtp://host:25"), "smtp://host:25");
    }

    #[tokio::test]
    async fn bad_settings_are_refused_at_start() {
        let bad_url = MailSettings {
            smtp_url: "ftp://host".into(),
            from: "a@example.com".into(),
        };
        let e = Mailer::new(&bad_url).err().expect("refused");
        assert!(e.to_string().contains("--smtp-url"), "{e}");
        let bad_from = MailSettings {
            smtp_url: "smtp://127.0.0.1:25".into(),
            from: "not an address".into(),
        };
        let e = Mailer::new(&bad_from).err().expect("refused");
        assert!(e.to_string().contains("--mail-from"), "{e}");
    }
}
