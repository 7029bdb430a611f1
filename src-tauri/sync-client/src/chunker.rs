//! Content-defined chunking of local files (FastCDC 2020 with the protocol's parameters), so
//! that an edit in a large file changes only the chunks around it and only those are uploaded.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use fastcdc::v2020::StreamCDC;
use sha2::{Digest, Sha256};
use syncsphere_protocol::{CHUNK_AVG_SIZE, CHUNK_MAX_SIZE, CHUNK_MIN_SIZE, ChunkRef};

/// One chunk of a file: where it is and what it hashes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub(crate) offset: u64,
    pub(crate) size: u32,
    pub sha256: String,
}

/// A file cut into chunks, with the hash of the whole content.
#[derive(Debug, Clone)]
pub(crate) struct ChunkedFile {
    pub size: u64,
    pub sha256: String,
    pub chunks: Vec<Chunk>,
}

impl ChunkedFile {
    pub(crate) fn refs(&self) -> Vec<ChunkRef> {
        self.chunks
            .iter()
            .map(|c| ChunkRef {
                sha256: c.sha256.clone(),
                size: i64::from(c.size),
            })
            .collect()
    }
}

/// Reads `path` once, cutting it into chunks and hashing each chunk and the whole file.
/// Blocking: run it on a blocking thread.
pub(crate) fn chunk_file(path: &Path) -> std::io::Result<ChunkedFile> {
    let file = std::fs::File::open(path)?;
    chunk_reader(file)
}

pub(crate) fn chunk_reader(reader: impl Read) -> std::io::Result<ChunkedFile> {
    let mut whole = Sha256::new();
    let mut chunks = Vec::new();
    let mut size = 0u64;
    for piece in StreamCDC::new(reader, CHUNK_MIN_SIZE, CHUNK_AVG_SIZE, CHUNK_MAX_SIZE) {
        let piece = piece.map_err(|e| match e {
            fastcdc::v2020::Error::IoError(io) => io,
            other => std::io::Error::other(other.to_string()),
        })?;
        whole.update(&piece.data);
        chunks.push(Chunk {
            offset: piece.offset,
            size: piece.length as u32,
            sha256: hex::encode(Sha256::digest(&piece.data)),
        });
        size += piece.length as u64;
    }
    Ok(ChunkedFile {
        size,
        sha256: hex::encode(whole.finalize()),
        chunks,
    })
}

/// The bytes of `chunk` as the file holds them now, or `None` if they no longer hash to the
/// chunk's id (the file changed since it was chunked). Blocking.
pub(crate) fn read_chunk(path: &Path, chunk: &Chunk) -> std::io::Result<Option<Vec<u8>>> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(chunk.offset))?;
    let mut buf = vec![0; chunk.size as usize];
    match file.read_exact(&mut buf) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    Ok((hex::encode(Sha256::digest(&buf)) == chunk.sha256).then_some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn chunks_cover_the_file_within_bounds_and_hash_it() {
        let data = noise(9 * 1024 * 1024 + 123, 3);
        let c = chunk_reader(&data[..]).unwrap();
        assert_eq!(c.size, data.len() as u64);
        assert_eq!(c.sha256, hex::encode(Sha256::digest(&data)));
        let mut offset = 0;
        for (i, chunk) in c.chunks.iter().enumerate() {
            assert_eq!(chunk.offset, offset);
            assert!(chunk.size <= CHUNK_MAX_SIZE);
            if i + 1 < c.chunks.len() {
                assert!(
                    chunk.size >= CHUNK_MIN_SIZE,
                    "only the last chunk may be short"
                );
            }
            let bytes = &data[offset as usize..offset as usize + chunk.size as usize];
            assert_eq!(chunk.sha256, hex::encode(Sha256::digest(bytes)));
            offset += u64::from(chunk.size);
        }
        assert_eq!(offset, data.len() as u64);
        assert!(
            c.chunks.len() >= 4,
            "about 1 MiB on average: {}",
            c.chunks.len()
        );
    }

    #[test]
    fn an_insert_at_the_start_changes_only_the_first_chunks() {
        let data = noise(32 * 1024 * 1024, 11);
        let before = chunk_reader(&data[..]).unwrap();
        let mut edited = vec![b'!'];
        edited.extend_from_slice(&data);
        let after = chunk_reader(&edited[..]).unwrap();
        let known: std::collections::HashSet<&str> =
            before.chunks.iter().map(|c| c.sha256.as_str()).collect();
        let new_bytes: u64 = after
            .chunks
            .iter()
            .filter(|c| !known.contains(c.sha256.as_str()))
            .map(|c| u64::from(c.size))
            .sum();
        assert!(
            new_bytes <= u64::from(CHUNK_MAX_SIZE),
            "{new_bytes} new bytes after a 1-byte insert"
        );
    }

    #[test]
    fn empty_files_have_no_chunks_and_changed_files_are_detected() {
        let empty = chunk_reader(&[][..]).unwrap();
        assert_eq!(empty.size, 0);
        assert!(empty.chunks.is_empty());
        assert_eq!(empty.sha256, hex::encode(Sha256::digest(b"")));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, noise(3 * 1024 * 1024, 5)).unwrap();
        let c = chunk_file(&path).unwrap();
        assert!(read_chunk(&path, &c.chunks[1]).unwrap().is_some());
        let mut changed = std::fs::read(&path).unwrap();
        changed[c.chunks[1].offset as usize] ^= 0xff;
        std::fs::write(&path, &changed).unwrap();
        assert!(read_chunk(&path, &c.chunks[1]).unwrap().is_none());
        std::fs::write(&path, b"short").unwrap();
        assert!(read_chunk(&path, &c.chunks[1]).unwrap().is_none());
    }
}
