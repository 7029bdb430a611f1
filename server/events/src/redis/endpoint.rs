//! [`RedisEndpoint`]: the one place a Redis client is made — URL, TLS and password together.

use ::redis::aio::MultiplexedConnection;

use crate::EventsError;

/// Where Redis is: a `redis://` (plain) or `rediss://` (TLS) URL and, when the URL carries
/// none, the password to `AUTH` with. ElastiCache's AUTH token comes from Secrets Manager as a
/// value of its own, which cannot be spliced into a URL there (decision 0043). `rediss://`
/// checks the server's certificate against the system's trust store (or `SSL_CERT_FILE`).
/// Every Redis client of this crate is made here ([`RedisEndpoint::client`]).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisEndpoint {
    url: String,
    password: Option<String>,
}

impl RedisEndpoint {
    /// `url`, with `password` used only if the URL carries no password of its own.
    pub fn new(url: impl Into<String>, password: Option<String>) -> Self {
        Self {
            url: url.into(),
            password: password.filter(|p| !p.is_empty()),
        }
    }

    /// `scheme://host:port` of the URL: what errors and logs may show (never a password).
    pub fn address(&self) -> String {
        let url = self.url.as_str();
        let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
        let authority = rest.split('/').next().unwrap_or(rest);
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        format!("{scheme}://{host}")
    }

    /// A client for this endpoint; connections made with it `AUTH` with the password.
    pub fn client(&self) -> Result<::redis::Client, EventsError> {
        let connect = |source| EventsError::Connect {
            at: self.address(),
            source,
        };
        let mut info = ::redis::IntoConnectionInfo::into_connection_info(self.url.as_str())
            .map_err(connect)?;
        if let Some(password) = &self.password
            && info.redis_settings().password().is_none()
        {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        ::redis::Client::open(info).map_err(connect)
    }

    /// A connection that answered `PING`: a missing password (`NOAUTH`) fails here, at start,
    /// not at the first event.
    pub(super) async fn open(&self) -> Result<MultiplexedConnection, EventsError> {
        let connect = |source| EventsError::Connect {
            at: self.address(),
            source,
        };
        let mut conn = self
            .client()?
            .get_multiplexed_async_connection()
            .await
            .map_err(connect)?;
        let () = ::redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(connect)?;
        Ok(conn)
    }
}

impl From<&str> for RedisEndpoint {
    fn from(url: &str) -> Self {
        Self::new(url, None)
    }
}

impl std::fmt::Debug for RedisEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEndpoint")
            .field("address", &self.address())
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password_of(endpoint: &RedisEndpoint) -> Option<String> {
        let client = endpoint.client().unwrap();
        client
            .get_connection_info()
            .redis_settings()
            .password()
            .map(str::to_owned)
    }

    #[test]
    fn the_separate_password_is_used_only_when_the_url_has_none() {
        let separate = RedisEndpoint::new("rediss://cache:6379", Some("token".into()));
        assert_eq!(password_of(&separate).as_deref(), Some("token"));
        let in_url = RedisEndpoint::new("redis://:inurl@cache:6379", Some("token".into()));
        assert_eq!(password_of(&in_url).as_deref(), Some("inurl"));
        let empty = RedisEndpoint::new("redis://cache:6379", Some(String::new()));
        assert_eq!(password_of(&empty), None);
    }

    #[test]
    fn neither_address_nor_debug_shows_a_password() {
        let endpoint = RedisEndpoint::new("rediss://user:inurl@cache:6379/0", Some("token".into()));
        assert_eq!(endpoint.address(), "rediss://cache:6379");
        let debug = format!("{endpoint:?}");
        assert!(
            !debug.contains("inurl") && !debug.contains("token"),
            "{debug}"
        );
    }

    #[test]
    fn a_bad_url_names_the_address_not_the_password() {
        let err = RedisEndpoint::new("http://:secret@cache", None)
            .client()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("http://cache") && !err.contains("secret"),
            "{err}"
        );
    }
}
