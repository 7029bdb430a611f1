//! Where a device keeps its sign-in: the operating system's keychain (Secret Service on Linux,
//! Keychain on macOS, Credential Manager on Windows) or `session.json` (mode 0600) in the config
//! directory — the headless client's default and the fallback where no keychain service runs.
//! `config.json` records which of the two holds the directory's session.
//!
//! The keychain holds only the refresh token, the one long-lived secret (Windows' Credential
//! Manager takes at most 2,560 bytes, less than a whole token set); access and id tokens then
//! live in memory and are fetched anew once per start.
//!
//! **Invariants**
//! - A session is in one place: saving it in the keychain removes `session.json`.
//! - A keychain that cannot be read is an error, never a silent sign-out: the secret may
//!   still be there once the user unlocks it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::config::{ClientConfig, Session, read_json, session_path, write_json};
use crate::{SyncError, now_ms};

/// The keychain's service name for SyncSphere's items.
const SERVICE: &str = "SyncSphere";

/// Where a config directory's session is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStorage {
    /// `session.json` in the config directory, readable by the user only.
    #[default]
    File,
    /// The operating system's keychain.
    Keychain,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum KeychainError {
    #[error("no keychain service is available ({0})")]
    Unavailable(String),
    #[error("the keychain refused ({0})")]
    Refused(String),
}

/// A keychain: secrets by account name within SyncSphere's service. Blocking calls (D-Bus,
/// Security framework, Credential Manager); an unlock prompt may keep them waiting.
pub(crate) trait Keychain: Send + Sync {
    fn read(&self, account: &str) -> Result<Option<Vec<u8>>, KeychainError>;
    fn write(&self, account: &str, label: &str, secret: &[u8]) -> Result<(), KeychainError>;
    /// Deleting what is not there is not an error.
    fn delete(&self, account: &str) -> Result<(), KeychainError>;
}

/// The platform's keychain through keyring-core.
struct OsKeychain;

impl OsKeychain {
    /// The platform store, opened once per process (its D-Bus connection is reused).
    fn store() -> Result<&'static Arc<keyring_core::CredentialStore>, KeychainError> {
        static STORE: OnceLock<Result<Arc<keyring_core::CredentialStore>, String>> =
            OnceLock::new();
        STORE
            .get_or_init(|| open_platform_store().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| KeychainError::Unavailable(e.clone()))
    }

    fn entry(account: &str, label: Option<&str>) -> Result<keyring_core::Entry, KeychainError> {
        let store = Self::store()?;
        match label {
            Some(label) => keyring_core::Entry::new_in_store_with_modifiers(
                store,
                SERVICE,
                account,
                &std::collections::HashMap::from([("label", label)]),
            ),
            None => keyring_core::Entry::new_in_store(store, SERVICE, account),
        }
        .map_err(keychain_error)
    }
}

#[cfg(all(unix, not(target_os = "macos")))]
fn open_platform_store() -> keyring_core::Result<Arc<keyring_core::CredentialStore>> {
    Ok(zbus_secret_service_keyring_store::Store::new()?)
}

#[cfg(target_os = "macos")]
fn open_platform_store() -> keyring_core::Result<Arc<keyring_core::CredentialStore>> {
    Ok(apple_native_keyring_store::keychain::Store::new()?)
}

#[cfg(windows)]
fn open_platform_store() -> keyring_core::Result<Arc<keyring_core::CredentialStore>> {
    Ok(windows_native_keyring_store::Store::new()?)
}

fn keychain_error(err: keyring_core::Error) -> KeychainError {
    match err {
        keyring_core::Error::PlatformFailure(e) => KeychainError::Unavailable(e.to_string()),
        keyring_core::Error::NoDefaultStore => KeychainError::Unavailable(err.to_string()),
        other => KeychainError::Refused(other.to_string()),
    }
}

impl Keychain for OsKeychain {
    fn read(&self, account: &str) -> Result<Option<Vec<u8>>, KeychainError> {
        match Self::entry(account, None)?.get_secret() {
            Ok(secret) => Ok(Some(secret)),
            Err(keyring_core::Error::NoEntry) => Ok(None),
            Err(e) => Err(keychain_error(e)),
        }
    }

    fn write(&self, account: &str, label: &str, secret: &[u8]) -> Result<(), KeychainError> {
        Self::entry(account, Some(label))?
            .set_secret(secret)
            .map_err(keychain_error)
    }

    fn delete(&self, account: &str) -> Result<(), KeychainError> {
        match Self::entry(account, None)?.delete_credential() {
            Ok(()) | Err(keyring_core::Error::NoEntry) => Ok(()),
            Err(e) => Err(keychain_error(e)),
        }
    }
}

/// The session of one config directory, where its `config.json` says it is.
#[derive(Clone)]
pub(crate) enum SessionStore {
    File(PathBuf),
    Keychain {
        keychain: Arc<dyn Keychain>,
        /// The config directory's path: one session per directory, as with the file.
        account: String,
        label: String,
    },
}

impl SessionStore {
    pub(crate) fn of(config_dir: &Path, config: &ClientConfig) -> Self {
        Self::with_keychain(
            config_dir,
            config,
            config.session_storage,
            Arc::new(OsKeychain),
        )
    }

    fn with_keychain(
        config_dir: &Path,
        config: &ClientConfig,
        storage: SessionStorage,
        keychain: Arc<dyn Keychain>,
    ) -> Self {
        match storage {
            SessionStorage::File => SessionStore::File(session_path(config_dir)),
            SessionStorage::Keychain => SessionStore::Keychain {
                keychain,
                account: keychain_account(config_dir),
                label: format!(
                    "SyncSphere sign-in of {} at {}",
                    config.email, config.server_url
                ),
            },
        }
    }

    /// The stored session; [`SyncError::NotSignedIn`] when there is none. A session from the
    /// keychain has only its refresh token: it reads as expired, so the first use refreshes.
    pub(crate) async fn load(&self) -> Result<Session, SyncError> {
        match self {
            SessionStore::File(path) => read_json(path)?.ok_or(SyncError::NotSignedIn),
            SessionStore::Keychain {
                keychain, account, ..
            } => {
                let (keychain, account) = (keychain.clone(), account.clone());
                let secret = blocking(move || keychain.read(&account))
                    .await?
                    .map_err(|e| {
                        SyncError::Keychain(format!(
                            "your sign-in could not be read from the keychain: {e}. Unlock \
                             the keychain (or start its service), or sign in again"
                        ))
                    })?
                    .ok_or(SyncError::NotSignedIn)?;
                let refresh_token = String::from_utf8(secret).map_err(|_| {
                    SyncError::Keychain(
                        "the sign-in in the keychain is damaged; sign in again".into(),
                    )
                })?;
                Ok(Session {
                    access_token: String::new(),
                    id_token: String::new(),
                    refresh_token,
                    issued_ms: now_ms(),
                    expires_ms: 0,
                })
            }
        }
    }

    /// Keeps `session`; `previous` (what was stored before) spares the keychain a write when
    /// only the short-lived tokens changed.
    pub(crate) async fn save(
        &self,
        session: &Session,
        previous: Option<&Session>,
    ) -> Result<(), SyncError> {
        match self {
            SessionStore::File(path) => write_json(path, session, true),
            SessionStore::Keychain {
                keychain,
                account,
                label,
            } => {
                if previous.is_some_and(|p| p.refresh_token == session.refresh_token) {
                    return Ok(());
                }
                let (keychain, account, label) = (keychain.clone(), account.clone(), label.clone());
                let secret = session.refresh_token.clone().into_bytes();
                blocking(move || keychain.write(&account, &label, &secret))
                    .await?
                    .map_err(|e| {
                        SyncError::Keychain(format!(
                            "your sign-in could not be saved in the keychain: {e}"
                        ))
                    })
            }
        }
    }

    /// Removes the session from wherever it may be: the keychain (if this store uses it) and
    /// the file (always, so an old file never outlives a sign-out).
    pub(crate) async fn forget(&self, config_dir: &Path) -> Result<(), SyncError> {
        if let SessionStore::Keychain {
            keychain, account, ..
        } = self
        {
            let (keychain, account) = (keychain.clone(), account.clone());
            blocking(move || keychain.delete(&account))
                .await?
                .map_err(|e| {
                    SyncError::Keychain(format!(
                        "your sign-in could not be removed from the keychain: {e}. Unlock the \
                         keychain, then sign out again"
                    ))
                })?;
        }
        remove_session_file(config_dir)
    }
}

/// Saves a new session where `preferred` asks; when that is the keychain and it cannot take
/// the session, in the file instead (logged). Returns where it went; the caller records that
/// in `config.json`.
pub(crate) async fn save_new(
    config_dir: &Path,
    config: &ClientConfig,
    preferred: SessionStorage,
    session: &Session,
) -> Result<SessionStorage, SyncError> {
    save_new_with(config_dir, config, preferred, session, Arc::new(OsKeychain)).await
}

async fn save_new_with(
    config_dir: &Path,
    config: &ClientConfig,
    preferred: SessionStorage,
    session: &Session,
    keychain: Arc<dyn Keychain>,
) -> Result<SessionStorage, SyncError> {
    if preferred == SessionStorage::Keychain
        && save_in_keychain(config_dir, config, session, keychain).await?
    {
        return Ok(SessionStorage::Keychain);
    }
    write_json(&session_path(config_dir), session, true)?;
    Ok(SessionStorage::File)
}

/// Moves a file-kept `session` into the OS keychain (removing `session.json`); `false`, with
/// the file left as it is, when no keychain takes it.
pub(crate) async fn move_to_keychain(
    config_dir: &Path,
    config: &ClientConfig,
    session: &Session,
) -> Result<bool, SyncError> {
    save_in_keychain(config_dir, config, session, Arc::new(OsKeychain)).await
}

/// Puts `session` in `keychain` and removes `session.json`; `false` (logged) when the
/// keychain cannot take it.
async fn save_in_keychain(
    config_dir: &Path,
    config: &ClientConfig,
    session: &Session,
    keychain: Arc<dyn Keychain>,
) -> Result<bool, SyncError> {
    let store = SessionStore::with_keychain(config_dir, config, SessionStorage::Keychain, keychain);
    match store.save(session, None).await {
        Ok(()) => {
            remove_session_file(config_dir)?;
            Ok(true)
        }
        Err(e) => {
            tracing::warn!("keeping the session in session.json: {e}");
            Ok(false)
        }
    }
}

/// Whether `config_dir` holds a session, without refreshing it.
pub(crate) async fn has_session(
    config_dir: &Path,
    config: &ClientConfig,
) -> Result<bool, SyncError> {
    match SessionStore::of(config_dir, config).load().await {
        Ok(_) => Ok(true),
        Err(SyncError::NotSignedIn) => Ok(false),
        Err(e) => Err(e),
    }
}

fn remove_session_file(config_dir: &Path) -> Result<(), SyncError> {
    match std::fs::remove_file(session_path(config_dir)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SyncError::Io("removing the session".into(), e)),
    }
}

/// The keychain account of a config directory: its absolute path.
fn keychain_account(config_dir: &Path) -> String {
    std::path::absolute(config_dir)
        .unwrap_or_else(|_| config_dir.to_owned())
        .display()
        .to_string()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, SyncError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SyncError::Keychain(format!("the keychain call failed: {e}")))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    /// An in-memory keychain; `available: false` answers like a machine with no keychain
    /// service, `refuse_reads` like a locked one.
    #[derive(Default)]
    struct FakeKeychain {
        items: Mutex<HashMap<String, (String, Vec<u8>)>>,
        unavailable: bool,
        refuse_reads: bool,
        writes: Mutex<u32>,
    }

    impl Keychain for FakeKeychain {
        fn read(&self, account: &str) -> Result<Option<Vec<u8>>, KeychainError> {
            if self.unavailable {
                return Err(KeychainError::Unavailable("no service on the bus".into()));
            }
            if self.refuse_reads {
                return Err(KeychainError::Refused("locked".into()));
            }
            Ok(self
                .items
                .lock()
                .unwrap()
                .get(account)
                .map(|(_, s)| s.clone()))
        }
        fn write(&self, account: &str, label: &str, secret: &[u8]) -> Result<(), KeychainError> {
            if self.unavailable {
                return Err(KeychainError::Unavailable("no service on the bus".into()));
            }
            *self.writes.lock().unwrap() += 1;
            self.items
                .lock()
                .unwrap()
                .insert(account.into(), (label.into(), secret.to_vec()));
            Ok(())
        }
        fn delete(&self, account: &str) -> Result<(), KeychainError> {
            if self.unavailable {
                return Err(KeychainError::Unavailable("no service on the bus".into()));
            }
            self.items.lock().unwrap().remove(account);
            Ok(())
        }
    }

    fn config() -> ClientConfig {
        ClientConfig {
            server_url: "http://127.0.0.1:8787".into(),
            email: "me@example.com".into(),
            device_id: "d1".into(),
            cognito: syncsphere_protocol::CognitoConfig {
                endpoint: "http://127.0.0.1:8787/cognito".into(),
                region: "local".into(),
                user_pool_id: "pool".into(),
                client_id: "client".into(),
                auth_flow: Default::default(),
                device_keys: false,
            },
            push_urls: Vec::new(),
            session_storage: SessionStorage::File,
            chunked_ids: true,
        }
    }

    fn session(refresh: &str) -> Session {
        Session {
            access_token: "access".into(),
            id_token: "id".into(),
            refresh_token: refresh.into(),
            issued_ms: 1,
            expires_ms: 2,
        }
    }

    fn keychain_store(dir: &Path, keychain: &Arc<FakeKeychain>) -> SessionStore {
        SessionStore::with_keychain(dir, &config(), SessionStorage::Keychain, keychain.clone())
    }

    #[tokio::test]
    async fn a_keychain_session_holds_only_the_refresh_token_and_no_file() {
        let dir = tempfile::tempdir().unwrap();
        // A file from before (an older version, or a fallback) goes once the keychain has it.
        write_json(&session_path(dir.path()), &session("old"), true).unwrap();
        let keychain = Arc::new(FakeKeychain::default());
        let stored = save_new_with(
            dir.path(),
            &config(),
            SessionStorage::Keychain,
            &session("r1"),
            keychain.clone(),
        )
        .await
        .unwrap();
        assert_eq!(stored, SessionStorage::Keychain);
        assert!(!session_path(dir.path()).exists());
        let items = keychain.items.lock().unwrap().clone();
        let (label, secret) = &items[&keychain_account(dir.path())];
        assert_eq!(secret, b"r1");
        assert_eq!(
            label,
            "SyncSphere sign-in of me@example.com at http://127.0.0.1:8787"
        );

        let loaded = keychain_store(dir.path(), &keychain).load().await.unwrap();
        assert_eq!(loaded.refresh_token, "r1");
        assert!(loaded.access_token.is_empty());
        assert!(
            loaded.expires_ms <= now_ms(),
            "reads as expired, so it is refreshed first"
        );
    }

    #[tokio::test]
    async fn without_a_keychain_service_the_session_goes_to_the_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let keychain = Arc::new(FakeKeychain {
            unavailable: true,
            ..FakeKeychain::default()
        });
        let stored = save_new_with(
            dir.path(),
            &config(),
            SessionStorage::Keychain,
            &session("r1"),
            keychain,
        )
        .await
        .unwrap();
        assert_eq!(stored, SessionStorage::File);
        let loaded = SessionStore::File(session_path(dir.path()))
            .load()
            .await
            .unwrap();
        assert_eq!(
            (loaded.access_token.as_str(), loaded.refresh_token.as_str()),
            ("access", "r1")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(session_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[tokio::test]
    async fn an_unreadable_keychain_is_an_error_not_a_sign_out() {
        let dir = tempfile::tempdir().unwrap();
        let keychain = Arc::new(FakeKeychain {
            refuse_reads: true,
            ..FakeKeychain::default()
        });
        let err = keychain_store(dir.path(), &keychain)
            .load()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SyncError::Keychain(m) if m.contains("locked") && m.contains("Unlock")),
            "{err:?}"
        );
        // An empty keychain is simply "not signed in".
        let empty = Arc::new(FakeKeychain::default());
        let err = keychain_store(dir.path(), &empty).load().await.unwrap_err();
        assert!(matches!(err, SyncError::NotSignedIn), "{err:?}");
    }

    #[tokio::test]
    async fn refreshes_write_the_keychain_only_when_the_refresh_token_changes() {
        let dir = tempfile::tempdir().unwrap();
        let keychain = Arc::new(FakeKeychain::default());
        let store = keychain_store(dir.path(), &keychain);
        store.save(&session("r1"), None).await.unwrap();
        let mut refreshed = session("r1");
        refreshed.access_token = "new access".into();
        store.save(&refreshed, Some(&session("r1"))).await.unwrap();
        assert_eq!(*keychain.writes.lock().unwrap(), 1);
        store.save(&session("r2"), Some(&refreshed)).await.unwrap();
        assert_eq!(*keychain.writes.lock().unwrap(), 2);
        assert_eq!(store.load().await.unwrap().refresh_token, "r2");
    }

    #[tokio::test]
    async fn forgetting_clears_the_keychain_and_any_file() {
        let dir = tempfile::tempdir().unwrap();
        let keychain = Arc::new(FakeKeychain::default());
        let store = keychain_store(dir.path(), &keychain);
        store.save(&session("r1"), None).await.unwrap();
        write_json(&session_path(dir.path()), &session("stray"), true).unwrap();
        store.forget(dir.path()).await.unwrap();
        assert!(keychain.items.lock().unwrap().is_empty());
        assert!(!session_path(dir.path()).exists());
        assert!(matches!(store.load().await, Err(SyncError::NotSignedIn)));
        // Twice is fine.
        store.forget(dir.path()).await.unwrap();

        // A keychain that cannot be reached keeps the user from believing they signed out.
        let gone = Arc::new(FakeKeychain {
            unavailable: true,
            ..FakeKeychain::default()
        });
        let err = keychain_store(dir.path(), &gone)
            .forget(dir.path())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SyncError::Keychain(m) if m.contains("sign out again")),
            "{err:?}"
        );
    }
}
