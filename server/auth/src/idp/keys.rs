//! The provider's RS256 signing key, persisted as PKCS#8 PEM (mode 0600) in the data directory.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::RsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use sha2::{Digest, Sha256};

pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    n: String,
    e: String,
    /// A secret only holders of the private key know (its digest), for keys of other purposes.
    secret: [u8; 32],
}

impl SigningKey {
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
        let private = match std::fs::read_to_string(path) {
            Ok(pem) => RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|e| e.to_string())?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key =
                    RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(|e| e.to_string())?;
                let pem = key
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| e.to_string())?;
                write_private(path, pem.as_bytes()).map_err(|e| e.to_string())?;
                tracing::info!(path = %path.display(), "created identity provider signing key");
                key
            }
            Err(e) => return Err(e.to_string()),
        };
        Self::from_private(&private)
    }

    fn from_private(private: &RsaPrivateKey) -> Result<Self, String> {
        let pem = private
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| e.to_string())?;
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
        let n_bytes = private.n().to_bytes_be();
        let kid = hex::encode(&Sha256::digest(&n_bytes)[..12]);
        let mut secret = Sha256::new();
        secret.update(b"syncsphere identity provider secret\0");
        secret.update(private.d().to_bytes_be());
        Ok(SigningKey {
            kid,
            encoding,
            n: URL_SAFE_NO_PAD.encode(n_bytes),
            e: URL_SAFE_NO_PAD.encode(private.e().to_bytes_be()),
            secret: secret.finalize().into(),
        })
    }

    /// A 32-byte key for `purpose`, derived from the private key: the same on every instance
    /// that holds this key file, unknown to anyone else.
    pub fn derived_key(&self, purpose: &str) -> [u8; 32] {
        let mut d = Sha256::new();
        d.update(self.secret);
        d.update(purpose.as_bytes());
        d.finalize().into()
    }

    pub fn sign(&self, claims: &serde_json::Value) -> Result<String, String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| e.to_string())
    }

    pub fn jwks(&self) -> JwkSet {
        serde_json::from_value(serde_json::json!({
            "keys": [{
                "alg": "RS256",
                "e": self.e,
                "kid": self.kid,
                "kty": "RSA",
                "n": self.n,
                "use": "sig",
            }]
        }))
        .expect("a JWKS built from a valid RSA key parses")
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
