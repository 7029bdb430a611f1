//! Whole-content hashes computed while a content's chunks arrive, so that a commit need not read
//! the content back to check its SHA-256.
//!
//! A client sending a chunk may say which content it belongs to and where
//! (`x-syncsphere-content`, `x-syncsphere-offset`). Chunks are hashed into that content's
//! running hash in offset order; a chunk that arrives early waits in memory (within a budget).
//! At commit, a run that covered exactly the committed chunk list, in order and gap-free, gives
//! the content's hash; anything else — a chunk the server already held and so was not sent, a
//! chunk that occurs twice, a run past its memory budget or evicted, a restart — falls back to
//! reading the content back ([`crate::content::Content::sha256`]). The bytes hashed are the ones
//! that were checked against their chunk id, so both ways verify the same thing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use syncsphere_protocol::ChunkRef;

/// Bytes of early chunks one run may hold while it waits for the chunk before them.
pub const RUN_PARKED_MAX: u64 = 32 * 1024 * 1024;
/// Runs kept at once; past it the least recently fed goes (its commit reads back instead).
pub const RUNS_MAX: usize = 256;
/// A run not fed for this long is dropped.
pub const RUN_IDLE: Duration = Duration::from_secs(600);

/// One content being hashed as its chunks arrive.
#[derive(Default)]
struct Run {
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
            if self.parked_bytes + size > RUN_PARKED_MAX {
                self.broken = true;
                self.parked.clear();
                self.parked_bytes = 0;
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
            self.parked_bytes -= chunk.size as u64;
            self.hash(chunk, &pieces);
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
                runs.retain(|_, slot| now.duration_since(slot.fed) < RUN_IDLE);
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
                run: Arc::default(),
                fed: now,
            });
            slot.fed = now;
            slot.run.clone()
        };
        lock(&run).feed(offset, chunk, pieces);
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
}
