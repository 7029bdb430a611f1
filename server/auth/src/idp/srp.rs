//! The server side of Amazon Cognito's `USER_SRP_AUTH` (SRP-6a as Cognito and its SDKs —
//! Amplify, the AWS Java sample's `AuthenticationHelper` — compute it), so that one client code
//! path signs in against a real pool and against the built-in provider without sending the
//! password.
//!
//! Group: the 3072-bit MODP prime of RFC 3526 with g = 2; SHA-256 throughout; a value is
//! "padded" when it is given a leading zero byte if its first byte has the high bit set (the
//! SDKs' `padHex`). With `pool` the part of the pool id after `_` and `user` the
//! `USER_ID_FOR_SRP` (here the user's id):
//! - `k = H(pad(N) | pad(g))`, `x = H(pad(salt) | H(pool | user | ":" | password))`,
//!   verifier `v = g^x mod N` (stored at sign-up, with a random 16-byte salt);
//! - server: random `b`, `B = (k·v + g^b) mod N`; client: `A = g^a mod N`;
//! - `u = H(pad(A) | pad(B))`, `S = (A · v^u)^b mod N` (= `(B - k·g^x)^(a + u·x)` client side);
//! - key `K = HMAC(HMAC(pad(u), pad(S)), "Caldera Derived Key" | 0x01)[..16]` (HKDF);
//! - the client proves it with `HMAC(K, pool | user | SECRET_BLOCK | TIMESTAMP)`.
//!
//! `SECRET_BLOCK` is this server's state between the two calls, sealed with a key derived from
//! the signing key (so any instance holding the key file can finish what another began): a
//! nonce from which `b` is derived, the expiry, the user, the device key and `A`. A block is
//! good for [`CHALLENGE_TTL_SECS`] and once.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use num_bigint::BigUint;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::IdpError;
use crate::now_ms;

type HmacSha256 = Hmac<Sha256>;

/// How long a challenge can be answered (Cognito's sessions last 3 minutes).
pub const CHALLENGE_TTL_SECS: u64 = 180;
const BLOCK_VERSION: u8 = 1;
const MAC_LEN: usize = 32;

static N: LazyLock<BigUint> = LazyLock::new(|| {
    BigUint::parse_bytes(
        concat!(
            "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD1",
            "29024E088A67CC74020BBEA63B139B22514A08798E3404DD",
            "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245",
            "E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
            "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3D",
            "C2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F",
            "83655D23DCA3AD961C62F356208552BB9ED529077096966D",
            "670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
            "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9",
            "DE2BCBF6955817183995497CEA956AE515D2261898FA0510",
            "15728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64",
            "ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
            "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6B",
            "F12FFA06D98A0864D87602733EC86A64521F2B18177B200C",
            "BBE117577A615D6C770988C0BAD946E208E24FA074E5AB31",
            "43DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF"
        )
        .as_bytes(),
        16,
    )
    .expect("the RFC 3526 prime")
});
static G: LazyLock<BigUint> = LazyLock::new(|| BigUint::from(2u8));
static K: LazyLock<BigUint> = LazyLock::new(|| {
    let mut d = Sha256::new();
    d.update(pad(&N.to_bytes_be()));
    d.update(pad(&G.to_bytes_be()));
    BigUint::from_bytes_be(&d.finalize())
});

/// The SDKs' `padHex` on bytes: a leading zero byte when the high bit is set.
fn pad(bytes: &[u8]) -> Vec<u8> {
    match bytes.first() {
        Some(b) if *b >= 0x80 => [&[0u8][..], bytes].concat(),
        _ => bytes.to_vec(),
    }
}

/// The part of a pool id after `_` (`us-east-1_AbC` → `AbC`), as Cognito hashes it.
pub fn pool_name(pool_id: &str) -> &str {
    pool_id.split_once('_').map_or(pool_id, |(_, name)| name)
}

fn x_of(pool: &str, user: &str, password: &str, salt: &[u8]) -> BigUint {
    let identity = Sha256::new()
        .chain_update(pool.as_bytes())
        .chain_update(user.as_bytes())
        .chain_update(b":")
        .chain_update(password.as_bytes())
        .finalize();
    let x = Sha256::new()
        .chain_update(pad(salt))
        .chain_update(identity)
        .finalize();
    BigUint::from_bytes_be(&x)
}

/// A user's salt and verifier, as stored (hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVerifier {
    pub salt: String,
    pub verifier: String,
}

/// A new random salt and the verifier of `password` for `user` in `pool`.
pub fn make_verifier(pool: &str, user: &str, password: &str) -> StoredVerifier {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let v = G.modpow(&x_of(pool, user, password, &salt), &N);
    StoredVerifier {
        salt: hex::encode(salt),
        verifier: v.to_str_radix(16),
    }
}

/// What `InitiateAuth` answers with (`PASSWORD_VERIFIER`'s challenge parameters).
#[derive(Debug, Clone)]
pub struct Challenge {
    pub salt: String,
    pub srp_b: String,
    pub secret_block: String,
}

/// What a valid `SECRET_BLOCK` carries back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Empty for a user that does not exist (the challenge was a decoy).
    pub user_id: String,
    pub device_key: Option<String>,
}

/// An opened `SECRET_BLOCK`.
pub struct Sealed {
    raw: Vec<u8>,
    nonce: [u8; 16],
    pub opened: Opened,
    a: BigUint,
}

/// The server's SRP state: the key that seals secret blocks (and derives `b`), and the blocks
/// answered already (each is good once).
pub struct SrpServer {
    key: [u8; 32],
    used: Mutex<HashMap<[u8; 16], u64>>,
}

impl SrpServer {
    pub fn new(key: [u8; 32]) -> Self {
        SrpServer {
            key,
            used: Mutex::default(),
        }
    }

    /// Answered challenges remembered now (each until it could no longer be replayed).
    pub fn answers_held(&self) -> usize {
        self.used.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn mac(&self, label: &[u8], data: &[u8]) -> [u8; 32] {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("any key length");
        m.update(label);
        m.update(data);
        m.finalize().into_bytes().into()
    }

    fn b_of(&self, nonce: &[u8]) -> BigUint {
        // 512 bits of secret exponent, derived so any instance can recompute it.
        let hi = self.mac(b"srp b 1", nonce);
        let lo = self.mac(b"srp b 2", nonce);
        BigUint::from_bytes_be(&[hi, lo].concat())
    }

    fn big_b(&self, v: &BigUint, nonce: &[u8]) -> BigUint {
        (&*K * v + G.modpow(&self.b_of(nonce), &N)) % &*N
    }

    /// A decoy salt and verifier for a user that does not exist (or has no verifier), stable
    /// per username, so the challenge looks like a real one (Cognito's
    /// `PreventUserExistenceErrors`).
    pub fn decoy(&self, username: &str) -> (String, BigUint) {
        let salt = &self.mac(b"srp decoy salt", username.as_bytes())[..16];
        let v = G.modpow(
            &BigUint::from_bytes_be(&self.mac(b"srp decoy x", username.as_bytes())),
            &N,
        );
        (hex::encode(salt), v)
    }

    /// Starts the exchange for `user_id` (empty: a decoy) with the client's `SRP_A` (hex).
    pub fn begin(
        &self,
        user_id: &str,
        device_key: Option<&str>,
        srp_a: &str,
        salt: &str,
        verifier: &BigUint,
    ) -> Result<Challenge, IdpError> {
        let a = parse_hex(srp_a, "SRP_A")?;
        if (&a % &*N) == BigUint::ZERO {
            return Err(IdpError::InvalidParameter("SRP_A is invalid".into()));
        }
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let expiry = (now_ms() / 1000) as u64 + CHALLENGE_TTL_SECS;
        let mut block = vec![BLOCK_VERSION];
        block.extend_from_slice(&nonce);
        block.extend_from_slice(&expiry.to_be_bytes());
        for field in [
            user_id.as_bytes(),
            device_key.unwrap_or_default().as_bytes(),
            &a.to_bytes_be(),
        ] {
            block.extend_from_slice(&(field.len() as u16).to_be_bytes());
            block.extend_from_slice(field);
        }
        let mac = self.mac(b"srp block", &block);
        block.extend_from_slice(&mac);
        Ok(Challenge {
            salt: salt.to_owned(),
            srp_b: self.big_b(verifier, &nonce).to_str_radix(16),
            secret_block: BASE64.encode(block),
        })
    }

    /// Opens a `SECRET_BLOCK` this server sealed and that has not expired.
    pub fn open(&self, secret_block: &str) -> Result<Sealed, IdpError> {
        let raw = BASE64
            .decode(secret_block)
            .map_err(|_| IdpError::NotAuthorized)?;
        let (nonce, opened, a) = self.open_raw(&raw)?;
        Ok(Sealed {
            raw,
            nonce,
            opened,
            a,
        })
    }

    /// Checks `PASSWORD_CLAIM_SIGNATURE` for an opened block against the verifier `v` of its
    /// user (the one it was issued with), in `pool`; each block passes once.
    pub fn verify(
        &self,
        pool: &str,
        sealed: &Sealed,
        v: &BigUint,
        timestamp: &str,
        signature: &str,
    ) -> Result<(), IdpError> {
        let Sealed {
            raw,
            nonce,
            opened,
            a,
        } = sealed;
        let b_pub = self.big_b(v, nonce);
        let u = BigUint::from_bytes_be(
            &Sha256::new()
                .chain_update(pad(&a.to_bytes_be()))
                .chain_update(pad(&b_pub.to_bytes_be()))
                .finalize(),
        );
        if u == BigUint::ZERO {
            return Err(IdpError::NotAuthorized);
        }
        let s = (a * v.modpow(&u, &N)).modpow(&self.b_of(nonce), &N);
        let mut prk = HmacSha256::new_from_slice(&pad(&u.to_bytes_be())).expect("any key");
        prk.update(&pad(&s.to_bytes_be()));
        let prk = prk.finalize().into_bytes();
        let mut okm = HmacSha256::new_from_slice(&prk).expect("any key");
        okm.update(b"Caldera Derived Key\x01");
        let key = &okm.finalize().into_bytes()[..16];
        let mut claim = HmacSha256::new_from_slice(key).expect("any key");
        claim.update(pool.as_bytes());
        claim.update(opened.user_id.as_bytes());
        claim.update(raw);
        claim.update(timestamp.as_bytes());
        let signature = BASE64
            .decode(signature)
            .map_err(|_| IdpError::NotAuthorized)?;
        claim
            .verify_slice(&signature)
            .map_err(|_| IdpError::NotAuthorized)?;
        // Good once: a replayed answer is refused.
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let now = (now_ms() / 1000) as u64;
        used.retain(|_, expiry| *expiry >= now);
        if used.insert(*nonce, now + CHALLENGE_TTL_SECS).is_some() {
            return Err(IdpError::NotAuthorized);
        }
        Ok(())
    }

    /// The block's nonce, user and device, and `A`, if this server sealed it and it has not
    /// expired.
    fn open_raw(&self, raw: &[u8]) -> Result<([u8; 16], Opened, BigUint), IdpError> {
        let expired = || IdpError::NotAuthorized;
        if raw.len() < 1 + 16 + 8 + MAC_LEN || raw[0] != BLOCK_VERSION {
            return Err(expired());
        }
        let (body, mac) = raw.split_at(raw.len() - MAC_LEN);
        let mut m = HmacSha256::new_from_slice(&self.key).expect("any key length");
        m.update(b"srp block");
        m.update(body);
        m.verify_slice(mac).map_err(|_| expired())?;
        let nonce: [u8; 16] = body[1..17].try_into().expect("16 bytes");
        let expiry = u64::from_be_bytes(body[17..25].try_into().expect("8 bytes"));
        if expiry < (now_ms() / 1000) as u64 {
            return Err(expired());
        }
        let mut rest = &body[25..];
        let mut fields = Vec::with_capacity(3);
        for _ in 0..3 {
            let len = usize::from(u16::from_be_bytes(
                rest.get(..2).ok_or_else(expired)?.try_into().expect("2"),
            ));
            let field = rest.get(2..2 + len).ok_or_else(expired)?;
            fields.push(field.to_vec());
            rest = &rest[2 + len..];
        }
        let text = |f: &[u8]| String::from_utf8(f.to_vec()).map_err(|_| expired());
        let device_key = text(&fields[1])?;
        Ok((
            nonce,
            Opened {
                user_id: text(&fields[0])?,
                device_key: (!device_key.is_empty()).then_some(device_key),
            },
            BigUint::from_bytes_be(&fields[2]),
        ))
    }
}

/// A stored verifier (hex) as a number.
pub fn verifier_number(hex_text: &str) -> Option<BigUint> {
    BigUint::parse_bytes(hex_text.as_bytes(), 16)
}

fn parse_hex(text: &str, what: &str) -> Result<BigUint, IdpError> {
    if text.is_empty() || text.len() > 2048 {
        return Err(IdpError::InvalidParameter(format!("{what} is invalid")));
    }
    BigUint::parse_bytes(text.as_bytes(), 16)
        .ok_or_else(|| IdpError::InvalidParameter(format!("{what} is not hexadecimal")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's side, written from the SDKs' formula `S = (B - k·g^x)^(a + u·x)`, to check
    /// the server's algebra in-process (the real client, the `aws-cognito-srp` crate, is
    /// checked against this server in the sync client's tests).
    fn client_signature(
        pool: &str,
        user: &str,
        password: &str,
        a_secret: &BigUint,
        c: &Challenge,
        timestamp: &str,
    ) -> String {
        let a_pub = G.modpow(a_secret, &N);
        let b_pub = BigUint::parse_bytes(c.srp_b.as_bytes(), 16).unwrap();
        let salt = hex::decode(&c.salt).unwrap();
        let u = BigUint::from_bytes_be(
            &Sha256::new()
                .chain_update(pad(&a_pub.to_bytes_be()))
                .chain_update(pad(&b_pub.to_bytes_be()))
                .finalize(),
        );
        let x = x_of(pool, user, password, &salt);
        let kgx = (&*K * G.modpow(&x, &N)) % &*N;
        let base = ((&b_pub + &*N) - kgx) % &*N;
        let s = base.modpow(&(a_secret + &u * &x), &N);
        let mut prk = HmacSha256::new_from_slice(&pad(&u.to_bytes_be())).unwrap();
        prk.update(&pad(&s.to_bytes_be()));
        let prk = prk.finalize().into_bytes();
        let mut okm = HmacSha256::new_from_slice(&prk).unwrap();
        okm.update(b"Caldera Derived Key\x01");
        let key = okm.finalize().into_bytes();
        let mut claim = HmacSha256::new_from_slice(&key[..16]).unwrap();
        claim.update(pool.as_bytes());
        claim.update(user.as_bytes());
        claim.update(&BASE64.decode(&c.secret_block).unwrap());
        claim.update(timestamp.as_bytes());
        BASE64.encode(claim.finalize().into_bytes())
    }

    #[test]
    fn the_right_password_proves_itself_once_and_a_wrong_one_never() {
        let server = SrpServer::new([7; 32]);
        let stored = make_verifier("syncsphere", "user-1", "Correct-horse-9");
        let v = verifier_number(&stored.verifier).unwrap();
        let a_secret = BigUint::from_bytes_be(&[0x5a; 64]);
        let a_pub = G.modpow(&a_secret, &N).to_str_radix(16);
        let ts = "Thu Dec 4 18:30:12 UTC 2026";
        let finish = |block: &str, ts: &str, sig: &str, pool: &str| {
            let sealed = server.open(block)?;
            server.verify(pool, &sealed, &v, ts, sig)?;
            Ok::<_, IdpError>(sealed.opened)
        };

        let c = server
            .begin("user-1", Some("dev-1"), &a_pub, &stored.salt, &v)
            .unwrap();
        let sig = client_signature("syncsphere", "user-1", "Correct-horse-9", &a_secret, &c, ts);
        let opened = finish(&c.secret_block, ts, &sig, "syncsphere").unwrap();
        assert_eq!(
            opened,
            Opened {
                user_id: "user-1".into(),
                device_key: Some("dev-1".into())
            }
        );
        assert!(
            finish(&c.secret_block, ts, &sig, "syncsphere").is_err(),
            "a replay is refused"
        );

        let c = server
            .begin("user-1", None, &a_pub, &stored.salt, &v)
            .unwrap();
        let wrong = client_signature("syncsphere", "user-1", "Wrong-horse-9", &a_secret, &c, ts);
        assert!(matches!(
            finish(&c.secret_block, ts, &wrong, "syncsphere"),
            Err(IdpError::NotAuthorized)
        ));
        // Another timestamp than the one signed, another pool: refused.
        let c = server
            .begin("user-1", None, &a_pub, &stored.salt, &v)
            .unwrap();
        let sig = client_signature("syncsphere", "user-1", "Correct-horse-9", &a_secret, &c, ts);
        assert!(
            finish(
                &c.secret_block,
                "Fri Dec 5 00:00:00 UTC 2026",
                &sig,
                "syncsphere"
            )
            .is_err()
        );
        assert!(finish(&c.secret_block, ts, &sig, "other").is_err());
        // The right answer still passes after those refusals.
        assert!(finish(&c.secret_block, ts, &sig, "syncsphere").is_ok());
    }

    #[test]
    fn blocks_are_sealed_and_decoys_never_pass() {
        let server = SrpServer::new([7; 32]);
        let other = SrpServer::new([8; 32]);
        let stored = make_verifier("syncsphere", "user-1", "Correct-horse-9");
        let v = verifier_number(&stored.verifier).unwrap();
        let a_pub = G.modpow(&BigUint::from(12345u32), &N).to_str_radix(16);
        let c = server
            .begin("user-1", None, &a_pub, &stored.salt, &v)
            .unwrap();
        // Another key's block, a flipped bit: not opened.
        assert!(other.open(&c.secret_block).is_err());
        let mut raw = BASE64.decode(&c.secret_block).unwrap();
        raw[20] ^= 1;
        assert!(server.open(&BASE64.encode(raw)).is_err());
        // A decoy has a stable salt per name and no user behind it.
        let (salt, decoy_v) = server.decoy("nobody@example.com");
        assert_eq!(salt, server.decoy("nobody@example.com").0);
        assert_ne!(salt, server.decoy("somebody@example.com").0);
        let c = server.begin("", None, &a_pub, &salt, &decoy_v).unwrap();
        let sealed = server.open(&c.secret_block).unwrap();
        assert_eq!(
            sealed.opened.user_id, "",
            "the caller refuses a decoy before verifying"
        );
        // A = 0 (mod N) would make the key predictable.
        assert!(server.begin("user-1", None, "0", &stored.salt, &v).is_err());
        let n_hex = N.to_str_radix(16);
        assert!(
            server
                .begin("user-1", None, &n_hex, &stored.salt, &v)
                .is_err()
        );
        assert_eq!(pool_name("us-east-1_AbC"), "AbC");
    }
}
