//! Argon2id password hashing with bounded, reused working memory.
//!
//! Each Argon2id hash with the default parameters works in 19 MiB. Allocated per hash (as
//! `argon2`'s `PasswordHasher`/`PasswordVerifier` do), glibc's allocator keeps those blocks
//! after they are freed: measured on the real binary (`tests/e2e/abuse.rs`), 70 failed
//! sign-ins took a server from 32 to 150–190 MiB resident, whatever `MALLOC_ARENA_MAX` said —
//! a stranger's password guessing, throttled or not, grew the server's memory. Here at most
//! `slots` hashes run at once (on blocking threads), and each works in one of at most `slots`
//! buffers kept for the process's life: password hashing holds `slots × 19 MiB`, allocated
//! once.

use std::sync::Mutex;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;

use super::IdpError;

/// Working memory of one hash.
type Memory = Vec<Block>;

/// The hashing slots and their working memory.
pub(super) struct PasswordHashing {
    slots: Semaphore,
    slot_count: usize,
    memory: Mutex<Vec<Memory>>,
}

impl PasswordHashing {
    pub(super) fn new(slots: usize) -> Self {
        PasswordHashing {
            slots: Semaphore::new(slots),
            slot_count: slots,
            memory: Mutex::new(Vec::new()),
        }
    }

    /// With `memory` (used once already) kept for the first slot that needs it.
    pub(super) fn keeping(self, memory: Memory) -> Self {
        self.memory.lock().expect("hash memory lock").push(memory);
        self
    }

    /// Hashes at most at once.
    pub(super) fn slots(&self) -> usize {
        self.slot_count
    }

    /// Hashes running or waiting for their thread now.
    pub(super) fn running(&self) -> usize {
        self.slot_count - self.slots.available_permits()
    }

    /// Runs `work` on a blocking thread within a slot, with that slot's working memory.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Result<T, IdpError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|e| IdpError::Internal(e.to_string()))?;
        let mut memory = self
            .memory
            .lock()
            .expect("hash memory lock")
            .pop()
            .unwrap_or_default();
        let (value, memory) = tokio::task::spawn_blocking(move || {
            let value = work(&mut memory);
            (value, memory)
        })
        .await
        .map_err(|e| IdpError::Internal(e.to_string()))?;
        // One buffer per slot at most: a slot returns the buffer it took.
        self.memory.lock().expect("hash memory lock").push(memory);
        Ok(value)
    }
}

/// The PHC string of a new Argon2id hash (default parameters, random salt) of `password`.
pub(super) fn hash(memory: &mut Memory, password: &str) -> Result<String, IdpError> {
    let internal = |e: argon2::password_hash::Error| IdpError::Internal(e.to_string());
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let argon = Argon2::default();
    let params = argon.params().clone();
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut salt_bytes)
        .map_err(internal)?;
    memory.resize(params.block_count(), Block::default());
    let output = Output::init_with(
        params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN),
        |out| {
            argon
                .hash_password_into_with_memory(
                    password.as_bytes(),
                    salt_bytes,
                    out,
                    &mut memory[..],
                )
                .map_err(Into::into)
        },
    )
    .map_err(internal)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(internal)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `stored` (any Argon2 variant and parameters; an
/// unreadable one matches nothing). The comparison is constant-time.
pub(super) fn verify(memory: &mut Memory, stored: &str, password: &[u8]) -> bool {
    let Ok(phc) = PasswordHash::new(stored) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(phc.algorithm) else {
        return false;
    };
    let version = match phc.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    memory.resize(params.block_count(), Block::default());
    let argon = Argon2::new(algorithm, version, params);
    Output::init_with(expected.len(), |out| {
        argon
            .hash_password_into_with_memory(password, salt_bytes, out, &mut memory[..])
            .map_err(Into::into)
    })
    // `Output`'s equality is constant-time.
    .is_ok_and(|actual| actual == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    #[test]
    fn hashes_are_standard_argon2id_and_verify_both_ways() {
        let mut memory = Memory::new();
        let ours = hash(&mut memory, "Correct-horse-1").unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        // The stock verifier accepts ours…
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"Correct-horse-1", &parsed)
                .is_ok()
        );
        // …and ours accepts the stock hasher's (what older releases stored), reusing memory.
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let stock = Argon2::default()
            .hash_password(b"Older-pass-2", &salt)
            .unwrap()
            .to_string();
        assert!(verify(&mut memory, &stock, b"Older-pass-2"));
        assert!(verify(&mut memory, &ours, b"Correct-horse-1"));
        assert!(!verify(&mut memory, &ours, b"Correct-horse-2"));
        assert!(!verify(&mut memory, &stock, b""));
        assert!(!verify(&mut memory, "not a hash", b"Correct-horse-1"));
        assert_eq!(memory.len(), Params::DEFAULT_M_COST as usize);
    }

    #[tokio::test]
    async fn at_most_the_slots_buffers_are_kept() {
        let hashing = std::sync::Arc::new(PasswordHashing::new(2));
        let runs: Vec<_> = (0..6)
            .map(|i| {
                let hashing = hashing.clone();
                tokio::spawn(async move {
                    hashing
                        .run(move |m| hash(m, &format!("Password-{i}")))
                        .await
                })
            })
            .collect();
        for run in runs {
            run.await.unwrap().unwrap().unwrap();
        }
        assert_eq!(hashing.running(), 0);
        assert!(hashing.memory.lock().unwrap().len() <= 2);
    }
}
