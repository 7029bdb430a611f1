//! Password guessing, slowed down as Amazon Cognito slows it — without handing anyone a way to
//! lock someone else out, and without telling whether an account exists.
//!
//! - **Per account and address**: after [`FREE_FAILURES`] wrong passwords in a row for one
//!   account from one address, that address waits before its next try for that account: 1 s,
//!   then twice as long after each further failure, at most [`MAX_LOCK`]. Tries while waiting
//!   are refused unchecked with Cognito's words (`NotAuthorizedException`, "Password attempts
//!   exceeded"). The right password resets the count. Other addresses are not affected: a
//!   stranger guessing from elsewhere cannot lock the owner out (Cognito locks the account for
//!   everyone; here only the guesser's address is).
//! - **Per address**: at most [`ADDRESS_ATTEMPTS_PER_MINUTE`] password sign-ins a minute from one
//!   address, whatever the account (spraying one password over many accounts), refused with
//!   `TooManyRequestsException`.
//! - Counted by the name asked for, existing or not: an unknown account is throttled exactly
//!   like a known one.
//!
//! The counts are this process's (each instance of a cluster keeps its own), bounded in memory
//! ([`MAX_ENTRIES`]; the oldest-expiring go first).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::IdpError;

/// Wrong passwords in a row (one account, one address) before the first wait.
pub const FREE_FAILURES: u32 = 5;
/// The first wait; each further failure doubles it.
pub const FIRST_LOCK: Duration = Duration::from_secs(1);
/// The longest wait (Cognito's is about 15 minutes too).
pub const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// Password sign-ins one address may try in a minute, over all accounts.
pub const ADDRESS_ATTEMPTS_PER_MINUTE: u32 = 60;
/// Most entries of each table kept.
pub const MAX_ENTRIES: usize = 100_000;
/// A failure count is forgotten after this long without a failure.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    attempts: u32,
}

#[derive(Default)]
struct Tables {
    pairs: HashMap<(String, Option<IpAddr>), Failures>,
    addresses: HashMap<IpAddr, Window>,
}

/// The sign-in counts of one provider.
#[derive(Default)]
pub struct SignInThrottle {
    tables: Mutex<Tables>,
}

impl SignInThrottle {
    /// Account-and-address pairs and addresses counted now.
    pub fn tracked(&self) -> (usize, usize) {
        let t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        (t.pairs.len(), t.addresses.len())
    }

    /// Before a password (or SRP proof) of `account` from `from` is checked: refused while that
    /// pair waits, or when the address tried too often this minute. Counts the attempt.
    pub fn admit(&self, account: &str, from: Option<IpAddr>) -> Result<(), IdpError> {
        self.admit_at(account, from, Instant::now())
    }

    fn admit_at(&self, account: &str, from: Option<IpAddr>, now: Instant) -> Result<(), IdpError> {
        let mut t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(address) = from {
            prune(&mut t.addresses, |w| {
                now.duration_since(w.started) > Duration::from_secs(60)
            });
            let w = t.addresses.entry(address).or_insert(Window {
                started: now,
                attempts: 0,
            });
            if now.duration_since(w.started) >= Duration::from_secs(60) {
                *w = Window {
                    started: now,
                    attempts: 0,
                };
            }
            if w.attempts >= ADDRESS_ATTEMPTS_PER_MINUTE {
                return Err(IdpError::TooManyRequests);
            }
            w.attempts += 1;
        }
        if let Some(f) = t.pairs.get(&(account.to_owned(), from))
            && f.locked_until.is_some_and(|until| now < until)
        {
            return Err(IdpError::PasswordAttemptsExceeded);
        }
        Ok(())
    }

    /// Whether the pair waits, without counting an attempt (the second step of an SRP sign-in,
    /// whose first step was admitted).
    pub fn check(&self, account: &str, from: Option<IpAddr>) -> Result<(), IdpError> {
        let t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        match t.pairs.get(&(account.to_owned(), from)) {
            Some(f) if f.locked_until.is_some_and(|until| Instant::now() < until) => {
                Err(IdpError::PasswordAttemptsExceeded)
            }
            _ => Ok(()),
        }
    }

    /// After a wrong password: counts it, and past [`FREE_FAILURES`] makes the pair wait.
    pub fn failed(&self, account: &str, from: Option<IpAddr>) {
        self.failed_at(account, from, Instant::now());
    }

    fn failed_at(&self, account: &str, from: Option<IpAddr>, now: Instant) {
        let mut t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        prune(&mut t.pairs, |f| now.duration_since(f.last) > FORGET_AFTER);
        let f = t
            .pairs
            .entry((account.to_owned(), from))
            .or_insert(Failures {
                count: 0,
                last: now,
                locked_until: None,
            });
        if now.duration_since(f.last) > FORGET_AFTER {
            f.count = 0;
        }
        f.count += 1;
        f.last = now;
        if f.count >= FREE_FAILURES {
            let doublings = (f.count - FREE_FAILURES).min(20);
            let wait = FIRST_LOCK.saturating_mul(1 << doublings).min(MAX_LOCK);
            f.locked_until = Some(now + wait);
        }
    }

    /// After the right password: the pair starts over.
    pub fn succeeded(&self, account: &str, from: Option<IpAddr>) {
        let mut t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        t.pairs.remove(&(account.to_owned(), from));
    }
}

/// Keeps `map` under [`MAX_ENTRIES`]: drops what `stale` says is stale, and if that is not
/// enough, half of what is left (an attacker filling the table only forgets its own counts
/// sooner).
fn prune<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>, stale: impl Fn(&V) -> bool) {
    if map.len() < MAX_ENTRIES {
        return;
    }
    map.retain(|_, v| !stale(v));
    if map.len() >= MAX_ENTRIES {
        let mut keep = false;
        map.retain(|_, _| {
            keep = !keep;
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn five_wrong_passwords_then_waits_that_double_for_that_address_only() {
        let t = SignInThrottle::default();
        let start = Instant::now();
        for i in 0..FREE_FAILURES {
            let at = start + Duration::from_millis(u64::from(i));
            t.admit_at("dana", ip(1), at).unwrap();
            t.failed_at("dana", ip(1), at);
        }
        let at = start + Duration::from_millis(10);
        assert!(matches!(
            t.admit_at("dana", ip(1), at),
            Err(IdpError::PasswordAttemptsExceeded)
        ));
        // The owner, elsewhere, is not locked out; nor is another account from the guesser.
        t.admit_at("dana", ip(2), at).unwrap();
        t.admit_at("eve", ip(1), at).unwrap();
        // After the wait, one more try; it fails: twice the wait.
        let later = start + Duration::from_millis(1100);
        t.admit_at("dana", ip(1), later).unwrap();
        t.failed_at("dana", ip(1), later);
        assert!(
            t.admit_at("dana", ip(1), later + Duration::from_millis(1900))
                .is_err()
        );
        assert!(
            t.admit_at("dana", ip(1), later + Duration::from_millis(2100))
                .is_ok()
        );
        // The waits stop growing at the maximum.
        for _ in 0..30 {
            t.failed_at("dana", ip(1), later);
        }
        assert!(
            t.admit_at("dana", ip(1), later + MAX_LOCK - Duration::from_secs(1))
                .is_err()
        );
        assert!(
            t.admit_at("dana", ip(1), later + MAX_LOCK + Duration::from_secs(1))
                .is_ok()
        );
        // The right password starts over.
        t.succeeded("dana", ip(1));
        t.failed_at("dana", ip(1), later);
        assert!(t.admit_at("dana", ip(1), later).is_ok());
    }

    #[test]
    fn one_address_may_try_so_many_sign_ins_a_minute_over_all_accounts() {
        let t = SignInThrottle::default();
        let start = Instant::now();
        for i in 0..ADDRESS_ATTEMPTS_PER_MINUTE {
            t.admit_at(&format!("user{i}"), ip(3), start).unwrap();
        }
        assert!(matches!(
            t.admit_at("another", ip(3), start),
            Err(IdpError::TooManyRequests)
        ));
        t.admit_at("another", ip(4), start).unwrap();
        let next_minute = start + Duration::from_secs(61);
        t.admit_at("another", ip(3), next_minute).unwrap();
    }

    #[test]
    fn the_tables_stay_bounded() {
        let t = SignInThrottle::default();
        let now = Instant::now();
        for i in 0..(MAX_ENTRIES + 10) {
            t.failed_at(&format!("u{i}"), ip(5), now);
        }
        let len = t.tables.lock().unwrap().pairs.len();
        assert!(len <= MAX_ENTRIES, "{len}");
    }
}
