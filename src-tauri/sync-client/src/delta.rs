//! Delta downloads: a new revision of a large file is put together from the chunks this device
//! already holds (in the file's old version) and byte ranges of the new content for the rest.
//!
//! Deciding is pure ([`pieces`]); reading the old version is [`index_seeds`] (blocking). The
//! bytes taken from a seed are not trusted: the assembled file is checked against the content's
//! hash before anything uses it, and a mismatch (a seed written to meanwhile) falls back to a
//! whole download (`Api::download`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use syncsphere_protocol::{CHUNK_MIN_SIZE, ChunkRef};

use crate::chunker::chunk_file_with;

/// Where a chunk lies on this device: seed number and offset in it.
pub(crate) type Held = HashMap<String, (usize, u64)>;

/// One stretch of the new content, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece {
    /// `len` bytes copied from seed `seed` at `from`.
    Local { seed: usize, from: u64, len: u64 },
    /// Bytes `start..start + len` of the new content, fetched from the server.
    Remote { start: u64, len: u64 },
}

impl Piece {
    pub(crate) fn len(&self) -> u64 {
        match *self {
            Piece::Local { len, .. } | Piece::Remote { len, .. } => len,
        }
    }
}

/// The new content (`chunks`, in file order) as pieces: each chunk found in `held` is copied
/// from there, the others are fetched; neighbours of one kind are merged (adjacent ranges of
/// the content into one request, adjacent stretches of one seed into one copy).
pub(crate) fn pieces(chunks: &[ChunkRef], held: &Held) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::new();
    let mut offset = 0u64;
    for c in chunks.iter().filter(|c| c.size > 0) {
        let len = c.size as u64;
        let next = match held.get(c.sha256.to_string().as_str()) {
            Some(&(seed, from)) => Piece::Local { seed, from, len },
            None => Piece::Remote { start: offset, len },
        };
        match (out.last_mut(), next) {
            (
                Some(Piece::Remote { start, len: l }),
                Piece::Remote {
                    start: next_start, ..
                },
            ) if *start + *l == next_start => *l += len,
            (
                Some(Piece::Local {
                    seed: s,
                    from: f,
                    len: l,
                }),
                Piece::Local { seed, from, .. },
            ) if *s == seed && *f + *l == from => *l += len,
            _ => out.push(next),
        }
        offset += len;
    }
    out
}

/// Content bytes that the pieces take from this device.
pub(crate) fn local_bytes(pieces: &[Piece]) -> u64 {
    pieces
        .iter()
        .filter(|p| matches!(p, Piece::Local { .. }))
        .map(Piece::len)
        .sum()
}

/// Whether `seed` is a regular file big enough to hold a whole chunk (a smaller one is not
/// worth the request that lists the new content's chunks).
pub(crate) fn usable(seed: &Path) -> bool {
    std::fs::symlink_metadata(seed)
        .is_ok_and(|m| m.is_file() && m.len() >= u64::from(CHUNK_MIN_SIZE))
}

/// Cuts each seed that is a regular file big enough to hold a chunk (the same content-defined
/// cuts as uploads, so an unchanged stretch of an edited file gives the same chunks) and notes
/// where each of the `wanted` chunks lies (its first place). A seed that cannot be read is
/// skipped: it only means more is fetched. Blocking: run it on a blocking thread.
pub(crate) fn index_seeds(seeds: &[PathBuf], wanted: &HashSet<String>) -> Held {
    let mut held = Held::new();
    for (n, seed) in seeds.iter().enumerate() {
        if !usable(seed) {
            continue;
        }
        let indexed = chunk_file_with(seed, |chunk, _| {
            if wanted.contains(&chunk.sha256) {
                held.entry(chunk.sha256.clone())
                    .or_insert((n, chunk.offset));
            }
            true
        });
        if let Err(e) = indexed {
            tracing::debug!(seed = %seed.display(), error = %e, "not reusing a local file's chunks");
        }
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(name: &str, size: i64) -> ChunkRef {
        ChunkRef {
            sha256: name.to_owned().into(),
            size,
        }
    }

    #[test]
    fn held_chunks_are_copied_and_the_rest_fetched_in_merged_ranges() {
        let chunks = [
            chunk("new0", 10),
            chunk("a", 5),
            chunk("b", 7),
            chunk("new1", 3),
            chunk("new2", 4),
            chunk("c", 6),
            chunk("empty", 0),
            chunk("d", 2),
        ];
        let held: Held = [
            ("a".to_owned(), (0, 9)),
            ("b".to_owned(), (0, 14)),
            ("c".to_owned(), (0, 100)),
            ("d".to_owned(), (1, 0)),
        ]
        .into();
        let got = pieces(&chunks, &held);
        assert_eq!(
            got,
            vec![
                Piece::Remote { start: 0, len: 10 },
                // a and b lie next to each other in the seed: one copy.
                Piece::Local {
                    seed: 0,
                    from: 9,
                    len: 12
                },
                // new1 and new2 are neighbours in the content: one request.
                Piece::Remote { start: 22, len: 7 },
                Piece::Local {
                    seed: 0,
                    from: 100,
                    len: 6
                },
                // Another seed: not merged.
                Piece::Local {
                    seed: 1,
                    from: 0,
                    len: 2
                },
            ]
        );
        let total: u64 = got.iter().map(Piece::len).sum();
        assert_eq!(total, 37, "the pieces cover the content exactly");
        assert_eq!(local_bytes(&got), 20);
    }

    #[test]
    fn a_chunk_that_occurs_twice_is_copied_from_its_one_place_twice() {
        let chunks = [chunk("x", 4), chunk("x", 4)];
        let held: Held = [("x".to_owned(), (0, 8))].into();
        assert_eq!(
            pieces(&chunks, &held),
            vec![
                Piece::Local {
                    seed: 0,
                    from: 8,
                    len: 4
                },
                Piece::Local {
                    seed: 0,
                    from: 8,
                    len: 4
                },
            ]
        );
        assert_eq!(
            pieces(&chunks, &Held::new()),
            vec![Piece::Remote { start: 0, len: 8 }]
        );
    }

    #[test]
    fn seeds_are_indexed_with_the_upload_cuts_and_unusable_seeds_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let data = crate::chunker::noise(6 * 1024 * 1024, 7);
        let old = dir.path().join("old.bin");
        std::fs::write(&old, &data).unwrap();
        let cut = crate::chunker::chunk_file_with(&old, |_, _| true).unwrap();
        assert!(cut.chunks.len() > 2);
        // Only what is wanted is noted; missing files and folders are skipped.
        let wanted: HashSet<String> = [cut.chunks[1].sha256.clone(), "elsewhere".to_owned()].into();
        let seeds = [dir.path().join("gone"), dir.path().to_path_buf(), old];
        let held = index_seeds(&seeds, &wanted);
        assert_eq!(
            held,
            [(cut.chunks[1].sha256.clone(), (2, cut.chunks[1].offset))].into()
        );
    }
}
