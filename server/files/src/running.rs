//! Whole-content hashes computed while a content's chunks arrive, so that a commit need not read
//! the content back to check its SHA-256.
//!
//! A client sending a chunk may say which content it belongs to and where
//! (`x-syncsphere-content`, `x-syncsphere-offset`). Chunks are hashed into that content's
//! running hash in offset order; a chunk that arrives early waits in memory (within a budget).
//! At commit, a run that covered exactly the committed chunk list, in order and gap-free, gives
//! the content's hash; anything else — a chunk the server already held and so was not sent, a
//! chunk that occurs twice, a run past its memory budget (its own, its user's
//! [`USER_PARKED_MAX`] or the server's [`SERVER_PARKED_MAX`]) or evicted, a restart — falls back
//! to reading the content back ([`crate::content::Content::sha256`]): a budget spent costs a
//! read at commit, never a refusal. The bytes hashed are the ones
//! that were checked against their chunk id, so both ways verify the same thing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use syncsphere_protocol::ChunkRef;

/// Bytes of early chunks one run may hold while it waits for the chunk before them.
pub const RUN_PARKED_MAX: u64 = 32 * 1024 * 1024;
/// Bytes of early chunks one user's runs may hold together (issue 19: sixteen contents sent
/// back to front pinned half a gigabyte).
pub const USER_PARKED_MAX: u64 = 64 * 1024 * 1024;
/// Bytes of early chunks the whole server may hold.
pub const SERVER_PARKED_MAX: u64 = 512 * 1024 * 1024;
/// Runs kept at once; past it the least recently fed goes (its commit reads back instead).
pub const RUNS_MAX: usize = 256;
/// A run not fed for this long is dropped.
pub const RUN_IDLE: Duration = Duration::from_secs(600);

/// The parked bytes of every user, and of the server: what early chunks hold in memory.
#[derive(Debug, Default)]
struct Parked {
    per_user: HashMap<String, u64>,
    total: u64,
}

/// The shared account of parked bytes, and whose run this is.
#[derive(Clone)]
struct Budget {
    parked: Arc<Mutex<Parked>>,
    user: String,
}

impl Budget {
    /// Takes `size` more bytes for the user, if both the user's and the server's budget allow.
    fn reserve(&self, size: u64) -> bool {
        let mut p = lock(&self.parked);
        let user = p.per_user.get(&self.user).copied().unwrap_or(0);
        if user + size > USER_PARKED_MAX || p.total + size > SERVER_PARKED_MAX {
            return false;
        }
        p.per_user.insert(self.user.clone(), user + size);
        p.total += size;
        true
    }

    fn release(&self, size: u64) {
        if size == 0 {
            return;
        }
        let mut p = lock(&self.parked);
        p.total = p.total.saturating_sub(size);
        if let Some(user) = p.per_user.get_mut(&self.user) {
            *user = user.saturating_sub(size);
            if *user == 0 {
                p.per_user.remove(&self.user);
            }
        }
    }
}

/// One content being hashed as its chunks arrive.
#[derive(Default)]
struct Run {
    /// Where its parked bytes are counted (none in unit tests of a lone run).
    budget: Option<Budget>,
    hasher: Sha256,
    /// Offset of the next byte to hash.
    next: u64,
    /// The chunks hashed so far, in order.
    chunks: Vec<ChunkRef>,
    /// Chunks that arrived before `next` reached them, by offset.
    parked: BTreeMap<u64, (ChunkRef, Vec<Bytes>)>,
    parked_bytes: u64,
    /// Gave up (over budget): only a commit's fallback can verify this content.
    broken: bool,
}

impl Run {
    fn hash(&mut self, chunk: ChunkRef, pieces: &[Bytes]) {
        for piece in pieces {
            self.hasher.update(piece);
        }
        self.next += chunk.size as u64;
        self.chunks.push(chunk);
    }

    /// Takes in the chunk at `offset`; returns the bytes parked now.
    fn feed(&mut self, offset: u64, chunk: ChunkRef, pieces: Vec<Bytes>) {
        if self.broken || offset < self.next || self.parked.contains_key(&offset) {
            return; // hashed already (a re-send), or its place is taken
        }
        if offset > self.next {
            let size = chunk.size as u64;
            let allowed = self.parked_bytes + size <= RUN_PARKED_MAX
                && self.budget.as_ref().is_none_or(|b| b.reserve(size));
            if !allowed {
                self.broken = true;
                self.parked.clear();
                self.unpark(self.parked_bytes);
                return;
            }
            self.parked_bytes += size;
            self.parked.insert(offset, (chunk, pieces));
            return;
        }
        self.hash(chunk, &pieces);
        while let Some(entry) = self.parked.first_entry() {
            if *entry.key() != self.next {
                break;
            }
            let (chunk, pieces) = entry.remove();
            self.unpark(chunk.size as u64);
            self.hash(chunk, &pieces);
        }
    }

    /// `size` parked bytes are no longer held.
    fn unpark(&mut self, size: u64) {
        self.parked_bytes -= size;
        if let Some(budget) = &self.budget {
            budget.release(size);
        }
    }
}

impl Drop for Run {
    /// A run ended (finished, evicted, idle): what it still held is free again.
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.release(self.parked_bytes);
        }
    }
}

struct Slot {
    run: Arc<Mutex<Run>>,
    fed: Instant,
}

/// The running hashes of the contents being uploaded, per user.
#[derive(Default)]
pub struct RunningHashes {
    runs: Mutex<HashMap<(String, String), Slot>>,
    parked: Arc<Mutex<Parked>>,
}

impl std::fmt::Debug for RunningHashes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningHashes")
            .field("runs", &self.map().len())
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is complete before the guard drops; a panic cannot leave half a change.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RunningHashes {
    fn map(&self) -> MutexGuard<'_, HashMap<(String, String), Slot>> {
        lock(&self.runs)
    }

    /// Hashes `pieces` (chunk `chunk`, already checked against its id) into the running hash of
    /// the user's content `content` at `offset`. Blocking (SHA-256): call it on a blocking
    /// thread.
    pub fn feed(
        &self,
        user_id: &str,
        content: &str,
        offset: u64,
        chunk: ChunkRef,
        pieces: Vec<Bytes>,
    ) {
        let run = {
            let mut runs = self.map();
            let now = Instant::now();
            let key = (user_id.to_owned(), content.to_owned());
            if !runs.contains_key(&key) {
                Self::retain_fed(&mut runs, now);
                if runs.len() >= RUNS_MAX
                    && let Some(oldest) = runs
                        .iter()
                        .min_by_key(|(_, slot)| slot.fed)
                        .map(|(key, _)| key.clone())
                {
                    runs.remove(&oldest);
                }
            }
            let slot = runs.entry(key).or_insert_with(|| Slot {
                run: Arc::new(Mutex::new({
                    let mut run = Run::default();
                    run.budget = Some(Budget {
                        parked: self.parked.clone(),
                        user: user_id.to_owned(),
                    });
                    run
                })),
                fed: now,
            });
            slot.fed = now;
            slot.run.clone()
        };
        lock(&run).feed(offset, chunk, pieces);
    }

    /// Drops the runs not fed for [`RUN_IDLE`] at `now`, and what they parked; returns how many
    /// went. Runs by the files service every minute: a run otherwise ends only at its commit or
    /// when another content's first chunk makes room — and an account that parks early chunks
    /// up to its budget and stops (or is refused everything else) would hold them for the
    /// process's life.
    pub fn drop_idle(&self, now: Instant) -> usize {
        let mut runs = self.map();
        let before = runs.len();
        Self::retain_fed(&mut runs, now);
        before - runs.len()
    }

    fn retain_fed(runs: &mut HashMap<(String, String), Slot>, now: Instant) {
        runs.retain(|_, slot| now.saturating_duration_since(slot.fed) < RUN_IDLE);
    }

    /// Ends the user's run for `content` and returns its hash if it covered exactly `chunks`,
    /// in order; `None` means the content must be read back to be verified.
    pub fn finish(&self, user_id: &str, content: &str, chunks: &[ChunkRef]) -> Option<String> {
        let slot = self
            .map()
            .remove(&(user_id.to_owned(), content.to_owned()))?;
        let mut run = lock(&slot.run);
        if run.broken || !run.parked.is_empty() || run.chunks != chunks {
            return None;
        }
        Some(hex::encode(std::mem::take(&mut run.hasher).finalize()))
    }

    /// Running hashes held now.
    pub fn runs(&self) -> usize {
        self.map().len()
    }

    /// Bytes of early chunks held in memory now: the user's (if given) or the server's.
    pub fn parked_bytes(&self, user_id: Option<&str>) -> u64 {
        let p = lock(&self.parked);
        match user_id {
            Some(user) => p.per_user.get(user).copied().unwrap_or(0),
            None => p.total,
        }
    }

    /// How many runs are kept.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks_of(data: &[u8], sizes: &[usize]) -> Vec<(u64, ChunkRef, Vec<Bytes>)> {
        let mut at = 0;
        sizes
            .iter()
            .map(|&size| {
                let bytes = &data[at..at + size];
                let chunk = ChunkRef {
                    sha256: hex::encode(Sha256::digest(bytes)).into(),
                    size: size as i64,
                };
                // Two pieces, as staging hands them over.
                let pieces = vec![
                    Bytes::copy_from_slice(&bytes[..size / 2]),
                    Bytes::copy_from_slice(&bytes[size / 2..]),
                ];
                let out = (at as u64, chunk, pieces);
                at += size;
                out
            })
            .collect()
    }

    fn data() -> Vec<u8> {
        (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn chunks_in_any_order_give_the_whole_contents_hash() {
        let data = data();
        let whole = hex::encode(Sha256::digest(&data));
        let parts = chunks_of(&data, &[1000, 3000, 2500, 3500]);
        let refs: Vec<ChunkRef> = parts.iter().map(|(_, c, _)| c.clone()).collect();
        let running = RunningHashes::default();
        for i in [2, 0, 3, 1, 1, 0] {
            let (offset, chunk, pieces) = parts[i].clone();
            running.feed("u", &whole, offset, chunk, pieces);
        }
        assert_eq!(running.finish("u", &whole, &refs).as_deref(), Some(&*whole));
        assert!(running.is_empty(), "a finished run is gone");
        // Another user's run, or a second finish, knows nothing.
        assert_eq!(running.finish("u", &whole, &refs), None);
    }

    #[test]
    fn a_gap_another_chunk_list_or_another_content_fall_back() {
        let data = data();
        let whole = hex::encode(Sha256::digest(&data));
        let parts = chunks_of(&data, &[1000, 3000, 2500, 3500]);
        let refs: Vec<ChunkRef> = parts.iter().map(|(_, c, _)| c.clone()).collect();
        let running = RunningHashes::default();
        // The second chunk was already on the server, so it never comes.
        for i in [0, 2, 3] {
            let (offset, chunk, pieces) = parts[i].clone();
            running.feed("u", &whole, offset, chunk, pieces);
        }
        assert_eq!(running.finish("u", &whole, &refs), None);
        // All chunks came, but the commit names a different list.
        for (offset, chunk, pieces) in parts.clone() {
            running.feed("u", &whole, offset, chunk, pieces);
        }
        assert_eq!(running.finish("u", &whole, &refs[..3]), None);
        // Chunks fed for one user do not verify another user's commit.
        for (offset, chunk, pieces) in parts {
            running.feed("u", &whole, offset, chunk, pieces);
        }
        assert_eq!(running.finish("v", &whole, &refs), None);
        assert!(running.finish("u", &whole, &refs).is_some());
    }

    #[test]
    fn a_run_over_its_memory_budget_gives_up() {
        let running = RunningHashes::default();
        let big = (RUN_PARKED_MAX / 2 + 1) as usize;
        let chunk = |n: u8| ChunkRef {
            sha256: format!("{n:064x}").into(),
            size: big as i64,
        };
        // Two early chunks past the budget (the one at offset 0 never comes first).
        running.feed(
            "u",
            "c",
            big as u64,
            chunk(1),
            vec![Bytes::from(vec![1; big])],
        );
        running.feed(
            "u",
            "c",
            2 * big as u64,
            chunk(2),
            vec![Bytes::from(vec![2; big])],
        );
        running.feed("u", "c", 0, chunk(0), vec![Bytes::from(vec![0; big])]);
        assert_eq!(
            running.finish("u", "c", &[chunk(0), chunk(1), chunk(2)]),
            None
        );
    }
    #[test]
    fn a_users_runs_and_the_server_share_a_budget_that_frees_when_runs_end() {
        let running = RunningHashes::default();
        // Declared sizes count (the pieces stand in for the bytes).
        let early = |n: u8, size: u64| {
            let chunk = ChunkRef {
                sha256: format!("{n:064x}").into(),
                size: size as i64,
            };
            (chunk, vec![Bytes::from_static(b"x")])
        };
        let mib = 1024 * 1024;
        for (i, content) in ["c1", "c2"].into_iter().enumerate() {
            let (chunk, pieces) = early(i as u8, 30 * mib);
            running.feed("u", content, 1, chunk, pieces);
        }
        assert_eq!(running.parked_bytes(Some("u")), 60 * mib);
        // A third would pass the user's 64 MiB: that run gives up (read back at commit).
        let (chunk, pieces) = early(3, 30 * mib);
        running.feed("u", "c3", 1, chunk, pieces);
        assert_eq!(running.parked_bytes(Some("u")), 60 * mib);
        assert_eq!(running.finish("u", "c3", &[]), None);
        // Another user has a budget of their own; the server counts both.
        let (chunk, pieces) = early(4, 30 * mib);
        running.feed("v", "c1", 1, chunk, pieces);
        assert_eq!(running.parked_bytes(Some("v")), 30 * mib);
        assert_eq!(running.parked_bytes(None), 90 * mib);
        // Ended runs give their bytes back.
        running.finish("u", "c1", &[]);
        running.finish("u", "c2", &[]);
        assert_eq!(running.parked_bytes(Some("u")), 0);
        assert_eq!(running.parked_bytes(None), 30 * mib);
        running.finish("v", "c1", &[]);
        assert_eq!(running.parked_bytes(None), 0);
    }

    #[test]
    fn idle_runs_and_what_they_parked_are_dropped_without_another_upload() {
        let hashes = RunningHashes::default();
        let data = data();
        let parts = chunks_of(&data, &[1000, 1000, 1000]);
        // Only the later chunks of each content: both wait for their first, parked.
        for content in ["c1", "c2"] {
            for (offset, chunk, pieces) in parts.iter().skip(1).cloned() {
                hashes.feed("u1", content, offset, chunk, pieces);
            }
        }
        assert_eq!(hashes.parked_bytes(Some("u1")), 4000);
        assert_eq!(hashes.drop_idle(Instant::now()), 0, "fed just now");
        assert_eq!(hashes.parked_bytes(None), 4000);
        let later = Instant::now() + RUN_IDLE + Duration::from_secs(1);
        assert_eq!(hashes.drop_idle(later), 2);
        assert_eq!(hashes.parked_bytes(Some("u1")), 0);
        assert_eq!(hashes.parked_bytes(None), 0);
        assert!(hashes.is_empty());
    }

    #[test]
    fn the_server_budget_holds_over_many_users() {
        let running = RunningHashes::default();
        let size = 30 * 1024 * 1024u64;
        for user in 0..20 {
            let chunk = ChunkRef {
                sha256: format!("{user:064x}").into(),
                size: size as i64,
            };
            running.feed(
                &format!("u{user}"),
                "c",
                1,
                chunk,
                vec![Bytes::from_static(b"x")],
            );
        }
        assert!(running.parked_bytes(None) <= SERVER_PARKED_MAX);
        assert_eq!(running.parked_bytes(None), 17 * size, "as many as fit");
    }
}
