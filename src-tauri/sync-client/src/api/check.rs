//! What a download checks its bytes against: the SHA-256 of the whole content, or — for a
//! content with a chunked id (decision 0051) — each chunk's SHA-256 at the places the content's
//! chunk list gives, folded. Either way every byte is hashed once, as it is written.

use sha2::{Digest, Sha256};
use syncsphere_protocol::{ContentChunks, ContentHash, chunked_content_id};

/// A running check of a content's bytes.
pub(crate) enum ContentCheck {
    /// The SHA-256 of all the bytes.
    Whole(Sha256),
    /// Each chunk's SHA-256, at the chunk list's sizes.
    Chunks(ChunkHashes),
}

pub(crate) struct ChunkHashes {
    /// The chunk list's sizes, in order.
    sizes: Vec<u64>,
    /// The chunk being hashed (`sizes.len()` once past the last).
    at: usize,
    /// Bytes of it still to come.
    left: u64,
    hasher: Sha256,
    /// The hashes of the chunks done.
    hashes: Vec<[u8; 32]>,
    /// Bytes fed in all.
    fed: u64,
    /// Bytes came past the list's end.
    past_the_end: bool,
}

impl ContentCheck {
    /// A check of the bytes of the content `id`; `listed` is its chunk list, needed (and only
    /// used) when `id` is chunked.
    pub(crate) fn new(id: &ContentHash, listed: Option<&ContentChunks>) -> Self {
        match (id.is_chunked(), listed) {
            (true, Some(listed)) => {
                let sizes: Vec<u64> = listed.chunks.iter().map(|c| c.size.max(0) as u64).collect();
                ContentCheck::Chunks(ChunkHashes {
                    left: sizes.first().copied().unwrap_or(0),
                    sizes,
                    at: 0,
                    hasher: Sha256::new(),
                    hashes: Vec::new(),
                    fed: 0,
                    past_the_end: false,
                })
            }
            // Without its list a chunked content cannot be checked: it fails the comparison.
            _ => ContentCheck::Whole(Sha256::new()),
        }
    }

    pub(crate) fn update(&mut self, mut bytes: &[u8]) {
        let c = match self {
            ContentCheck::Whole(h) => return h.update(bytes),
            ContentCheck::Chunks(c) => c,
        };
        c.fed += bytes.len() as u64;
        while !bytes.is_empty() {
            if c.at >= c.sizes.len() {
                // More bytes than the list holds: hashed as one more chunk.
                c.hasher.update(bytes);
                c.past_the_end = true;
                return;
            }
            let take = (c.left.min(bytes.len() as u64)) as usize;
            c.hasher.update(&bytes[..take]);
            bytes = &bytes[take..];
            c.left -= take as u64;
            if c.left == 0 {
                c.hashes
                    .push(std::mem::take(&mut c.hasher).finalize().into());
                c.at += 1;
                c.left = c.sizes.get(c.at).copied().unwrap_or(0);
            }
        }
    }

    /// The id of the bytes fed, named as the content's id is: equal to it exactly when the
    /// bytes are the content's.
    pub(crate) fn finish(self) -> ContentHash {
        match self {
            ContentCheck::Whole(h) => ContentHash::Sha256(h.finalize().into()),
            ContentCheck::Chunks(mut c) => {
                // Fewer bytes than the list holds, or more: what came counts as one more chunk
                // (the fold then differs from the content's, as its size already does).
                if c.at < c.sizes.len() || c.past_the_end {
                    c.hashes.push(c.hasher.finalize().into());
                }
                chunked_content_id(c.fed, &c.hashes)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncsphere_protocol::Rev;

    use crate::chunker::{chunk_reader, content_id_of_bytes, noise};

    fn listed(data: &[u8]) -> ContentChunks {
        let cut = chunk_reader(data).unwrap();
        ContentChunks {
            rev: Rev(1),
            sha256: cut.chunked_id(),
            size: data.len() as i64,
            chunks: cut.refs(),
        }
    }

    fn check(id: &ContentHash, list: &ContentChunks, data: &[u8], step: usize) -> ContentHash {
        let mut c = ContentCheck::new(id, Some(list));
        for piece in data.chunks(step.max(1)) {
            c.update(piece);
        }
        if data.is_empty() {
            c.update(&[]);
        }
        c.finish()
    }

    #[test]
    fn a_chunked_content_checks_as_its_chunks_arrive_in_any_pieces() {
        let data = noise(5 * 1024 * 1024 + 3, 21);
        let id = content_id_of_bytes(&data);
        let list = listed(&data);
        assert!(id.is_chunked() && list.chunks.len() > 2);
        for step in [1 << 20, 65_536, 1_000_003, data.len()] {
            assert_eq!(check(&id, &list, &data, step), id, "{step}");
        }
        // One byte changed, one missing, one more: not the content.
        let mut flipped = data.clone();
        flipped[3 * 1024 * 1024] ^= 0x40;
        assert_ne!(check(&id, &list, &flipped, 65_536), id);
        assert_ne!(check(&id, &list, &data[..data.len() - 1], 65_536), id);
        let mut longer = data.clone();
        longer.push(0);
        assert_ne!(check(&id, &list, &longer, 65_536), id);
        // A list whose places are wrong (the total right) does not vouch for the bytes.
        let mut shifted = list.clone();
        shifted.chunks[0].size += 1;
        shifted.chunks[1].size -= 1;
        assert_ne!(check(&id, &shifted, &data, 65_536), id);
        // The list only says where to cut: with its last chunk left out, the bytes past its
        // end are hashed as one more chunk, so the right bytes still check and others do not.
        let mut short = list.clone();
        short.chunks.pop();
        assert_eq!(check(&id, &short, &data, 65_536), id);
        let mut last_changed = data.clone();
        *last_changed.last_mut().unwrap() ^= 1;
        assert_ne!(check(&id, &short, &last_changed, 65_536), id);
    }

    #[test]
    fn a_sha256_named_content_checks_as_its_sha256() {
        let data = noise(3 * 1024 * 1024, 5);
        let id = ContentHash::Sha256(Sha256::digest(&data).into());
        let mut c = ContentCheck::new(&id, None);
        for piece in data.chunks(70_000) {
            c.update(piece);
        }
        assert_eq!(c.finish(), id);
        // Without its list, a chunked id is never matched.
        let chunked = content_id_of_bytes(&data);
        let mut c = ContentCheck::new(&chunked, None);
        c.update(&data);
        assert_ne!(c.finish(), chunked);
    }
}
