//! Content-defined chunking of local files (FastCDC 2020 with the protocol's parameters), so
//! that an edit in a large file changes only the chunks around it and only those are uploaded.

use std::io::Read;
use std::path::Path;

use fastcdc::v2020::{FastCDC, Normalization};
use sha2::{Digest, Sha256};
use syncsphere_protocol::{
    CHUNK_AVG_SIZE, CHUNK_MAX_SIZE, CHUNK_MIN_SIZE, CHUNK_NORMALIZATION_LEVEL, CHUNKED_ID_ABOVE,
    ChunkRef, ContentHash, chunked_content_id,
};

/// One chunk of a file: where it is and what it hashes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub(crate) offset: u64,
    pub(crate) size: u32,
    pub sha256: String,
}

/// A file cut into chunks. (The hash of the whole content is the scan's: the server checks
/// that the chunks add up to it, so a file that changed in between is caught there.)
#[derive(Debug, Clone)]
pub(crate) struct ChunkedFile {
    pub size: u64,
    pub chunks: Vec<Chunk>,
}

impl ChunkedFile {
    /// The content's chunked id (decision 0051): meaningful for a content over
    /// [`CHUNKED_ID_ABOVE`] bytes, whose id it is.
    pub(crate) fn chunked_id(&self) -> ContentHash {
        let hashes: Vec<[u8; 32]> = self
            .chunks
            .iter()
            .map(|c| match ContentHash::from(c.sha256.as_str()) {
                ContentHash::Sha256(raw) => raw,
                _ => unreachable!("a chunk's hash is 64 hex digits"),
            })
            .collect();
        chunked_content_id(self.size, &hashes)
    }

    pub(crate) fn refs(&self) -> Vec<ChunkRef> {
        self.chunks
            .iter()
            .map(|c| ChunkRef {
                sha256: c.sha256.clone().into(),
                size: i64::from(c.size),
            })
            .collect()
    }
}

/// Reads `path` once, cutting it into chunks and hashing each, and hands each chunk's bytes to
/// `on_chunk` as soon as it is cut (so they can be sent while the rest of the file is read);
/// `on_chunk` returning `false` stops the read (`Interrupted`). Blocking: run it on a blocking
/// thread.
pub(crate) fn chunk_file_with(
    path: &Path,
    on_chunk: impl FnMut(&Chunk, &[u8]) -> bool,
) -> std::io::Result<ChunkedFile> {
    let file = std::fs::File::open(path)?;
    chunk_reader_with(file, on_chunk)
}

/// The protocol's id of the content `reader` yields, read once (decision 0051): up to
/// [`CHUNKED_ID_ABOVE`] bytes, the SHA-256 of the bytes; over it, the fold of the chunks'
/// hashes, with the chunks (where they are and what they hash to), so that an upload need not
/// cut and hash the file again.
pub(crate) fn content_id_of(
    mut reader: impl Read,
) -> std::io::Result<(ContentHash, Option<ChunkedFile>)> {
    let mut head = Vec::new();
    (&mut reader)
        .take(CHUNKED_ID_ABOVE + 1)
        .read_to_end(&mut head)?;
    if head.len() as u64 <= CHUNKED_ID_ABOVE {
        let raw: [u8; 32] = Sha256::digest(&head).into();
        return Ok((ContentHash::Sha256(raw), None));
    }
    let chunked = chunk_reader_with(std::io::Cursor::new(head).chain(reader), |_, _| true)?;
    Ok((chunked.chunked_id(), Some(chunked)))
}

/// The chunk lists the scan computed last, so that the upload of a file just read need not cut
/// and hash it again (decision 0051: one hash per byte): a memo of [`content_id_of`] keyed by
/// the file's identity and stamp (path, device, inode, size, modification time), which must be
/// the same before and after the read and again when the upload looks. A file written in
/// between with its stamp unchanged (within the clock's step) is still safe: the server
/// checks every chunk it is sent against its hash, and the commit is of the content the scan
/// saw, which the scan's next look at the file then compares with.
pub(crate) mod recent {
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};

    use syncsphere_protocol::ContentHash;

    use super::ChunkedFile;

    /// Lists kept at most (the newest; a list is ~40 bytes per MiB of file).
    const KEPT: usize = 64;

    /// What a list is valid for: the file as `stat` saw it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) struct Stamp {
        pub(crate) dev: u64,
        pub(crate) ino: u64,
        pub(crate) len: u64,
        pub(crate) mtime_ns: i128,
    }

    type Entry = (PathBuf, Stamp, ContentHash, Arc<ChunkedFile>);

    static LISTS: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

    /// Keeps the chunk list of the content `id` of `path` as stamped.
    pub(crate) fn keep(path: &Path, stamp: Stamp, id: ContentHash, chunks: ChunkedFile) {
        let mut lists = LISTS.lock().unwrap_or_else(|e| e.into_inner());
        lists.retain(|(p, ..)| p != path);
        if lists.len() >= KEPT {
            lists.remove(0);
        }
        lists.push((path.to_owned(), stamp, id, Arc::new(chunks)));
    }

    /// The chunk list kept for `path` with the content `id`, if the file is still stamped as
    /// it was then (taken: an upload uses it once).
    pub(crate) fn take(path: &Path, stamp: Stamp, id: &ContentHash) -> Option<Arc<ChunkedFile>> {
        let mut lists = LISTS.lock().unwrap_or_else(|e| e.into_inner());
        let at = lists.iter().position(|(p, ..)| p == path)?;
        let (_, kept, kept_id, chunks) = lists.remove(at);
        (kept == stamp && kept_id == *id).then_some(chunks)
    }
}

/// Reads `path` and hands `on_chunk` its bytes cut where `listed` says (as [`chunk_file_with`]
/// does, without cutting or hashing: the chunks are `listed`'s). Fails with `UnexpectedEof` if
/// the file is shorter than the list.
pub(crate) fn read_as_listed(
    path: &Path,
    listed: &ChunkedFile,
    mut on_chunk: impl FnMut(&Chunk, &[u8]) -> bool,
) -> std::io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = Vec::with_capacity(CHUNK_MAX_SIZE as usize);
    for chunk in &listed.chunks {
        buf.resize(chunk.size as usize, 0);
        file.read_exact(&mut buf)?;
        if !on_chunk(chunk, &buf) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "reading stopped",
            ));
        }
    }
    Ok(())
}

/// [`content_id_of`] bytes in memory (a batch download's contents; the simulation's files).
pub(crate) fn content_id_of_bytes(data: &[u8]) -> ContentHash {
    content_id_of(data).expect("reading memory").0
}

#[cfg(test)]
pub(crate) fn chunk_reader(reader: impl Read) -> std::io::Result<ChunkedFile> {
    chunk_reader_with(reader, |_, _| true)
}

/// The protocol's normalisation level, as `fastcdc` names it.
fn normalization() -> Normalization {
    match CHUNK_NORMALIZATION_LEVEL {
        0 => Normalization::Level0,
        1 => Normalization::Level1,
        2 => Normalization::Level2,
        _ => Normalization::Level3,
    }
}

fn chunk_reader_with(
    mut reader: impl Read,
    mut on_chunk: impl FnMut(&Chunk, &[u8]) -> bool,
) -> std::io::Result<ChunkedFile> {
    let level = normalization();
    // The cuts are `StreamCDC`'s (same parameters, same gear; the tests compare them), found
    // over a buffer of two largest chunks that is refilled only when less than one is left;
    // `StreamCDC` moves the rest of its one-chunk buffer down and zeroes the freed end at
    // every chunk. Cutting a 256 MiB file here (page cache, release): 0.20–0.22 CPU-seconds
    // against `StreamCDC`'s 0.23–0.24, same program, alternated (decision 0051).
    let max = CHUNK_MAX_SIZE as usize;
    let mut buf = vec![0u8; 2 * max];
    let (mut start, mut end, mut eof) = (0usize, 0usize, false);
    let mut chunks = Vec::new();
    let mut size = 0u64;
    loop {
        if !eof && end - start < max {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
            while !eof && end < buf.len() {
                match reader.read(&mut buf[end..]) {
                    Ok(0) => eof = true,
                    Ok(n) => end += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if start == end {
            break;
        }
        // Unless the file ends sooner, a whole largest chunk lies ahead: the cut is where
        // `StreamCDC`, holding exactly that much, makes it.
        let window = (end - start).min(max);
        let cdc = FastCDC::with_level(
            &buf[..end],
            CHUNK_MIN_SIZE,
            CHUNK_AVG_SIZE,
            CHUNK_MAX_SIZE,
            level,
        );
        let (_, cut) = cdc.cut(start, window);
        let data = &buf[start..cut];
        let chunk = Chunk {
            offset: size,
            size: data.len() as u32,
            sha256: hex::encode(Sha256::digest(data)),
        };
        size += data.len() as u64;
        start = cut;
        if !on_chunk(&chunk, data) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "chunking stopped",
            ));
        }
        chunks.push(chunk);
    }
    Ok(ChunkedFile { size, chunks })
}

/// `len` pseudo-random bytes (xorshift from `seed`): incompressible test content that cuts
/// into chunks the same way every run.
#[cfg(test)]
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads at most `step` bytes at a time, and says `Interrupted` now and then.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
        calls: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(7) {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let n = self.step.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// The cuts are `StreamCDC`'s, the protocol's reference, whatever the length, the content
    /// (random, or all zeros: every cut at the largest size) and how the reads come.
    #[test]
    fn the_cuts_are_stream_cdcs() {
        use fastcdc::v2020::StreamCDC;
        let (min, max) = (CHUNK_MIN_SIZE as usize, CHUNK_MAX_SIZE as usize);
        let random = noise(3 * max + 4321, 17);
        let zeros = vec![0u8; 2 * max + 1];
        // Cuts anywhere, then only at the largest size: the buffer's edge falls inside a chunk.
        let mixed = [&random[..3 * max / 8], &zeros[..]].concat();
        let mut cases: Vec<&[u8]> = vec![&[], &random[..1]];
        for len in [
            min - 1,
            min,
            min + 1,
            max - 1,
            max,
            max + 1,
            2 * max,
            2 * max + 7,
        ] {
            cases.push(&random[..len]);
        }
        cases.extend([&random[..], &zeros[..], &zeros[..max], &mixed[..]]);
        for data in cases {
            let reference: Vec<(u64, usize, Vec<u8>)> = StreamCDC::with_level(
                data,
                CHUNK_MIN_SIZE,
                CHUNK_AVG_SIZE,
                CHUNK_MAX_SIZE,
                normalization(),
            )
            .map(|c| {
                let c = c.unwrap();
                (c.offset, c.length, c.data)
            })
            .collect();
            for step in [usize::MAX, 1 << 20, 65_537] {
                let mut handed = Vec::new();
                let reader = Trickle {
                    data,
                    step,
                    calls: 0,
                };
                let c = chunk_reader_with(reader, |chunk, bytes| {
                    handed.push((chunk.offset, chunk.size as usize, bytes.to_vec()));
                    true
                })
                .unwrap();
                assert_eq!(c.size, data.len() as u64);
                assert!(
                    handed == reference,
                    "{} bytes read {step} at a time: cuts {:?}, StreamCDC's {:?}",
                    data.len(),
                    handed.iter().map(|h| h.1).collect::<Vec<_>>(),
                    reference.iter().map(|r| r.1).collect::<Vec<_>>()
                );
            }
        }
    }

    #[test]
    fn a_content_id_is_the_sha256_up_to_a_mib_and_the_fold_of_its_chunks_above() {
        let data = noise(3 * 1024 * 1024 + 5, 8);
        let mib = CHUNKED_ID_ABOVE as usize;
        for len in [0, 1, 4096, mib - 1, mib] {
            let (id, chunks) = content_id_of(&data[..len]).unwrap();
            assert_eq!(
                id.to_string(),
                hex::encode(Sha256::digest(&data[..len])),
                "{len}"
            );
            assert!(chunks.is_none());
        }
        for len in [mib + 1, 2 * mib + 77, data.len()] {
            let (id, chunks) = content_id_of(&data[..len]).unwrap();
            let whole = chunk_reader(&data[..len]).unwrap();
            let hashes: Vec<[u8; 32]> = whole
                .chunks
                .iter()
                .map(|c| Sha256::digest(&data[c.offset as usize..][..c.size as usize]).into())
                .collect();
            assert_eq!(id, chunked_content_id(len as u64, &hashes), "{len}");
            assert!(id.is_chunked());
            let chunks = chunks.unwrap();
            assert_eq!((chunks.size, &chunks.chunks), (whole.size, &whole.chunks));
            // Read in small steps (the first MiB and the rest meet inside a read): the same.
            let trickled = Trickle {
                data: &data[..len],
                step: 65_537,
                calls: 0,
            };
            assert_eq!(content_id_of(trickled).unwrap().0, id);
            assert_eq!(content_id_of_bytes(&data[..len]), id);
        }
        // A byte changed anywhere is another id.
        let mut edited = data.clone();
        edited[2 * mib] ^= 1;
        assert_ne!(content_id_of_bytes(&edited), content_id_of_bytes(&data));
    }

    #[test]
    fn a_kept_list_is_read_back_as_cut_and_only_for_the_file_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        let data = noise(6 * 1024 * 1024 + 9, 12);
        std::fs::write(&path, &data).unwrap();
        let (id, listed) = content_id_of(std::fs::File::open(&path).unwrap()).unwrap();
        let listed = listed.unwrap();
        let mut cut = Vec::new();
        let again = chunk_file_with(&path, |c, b| {
            cut.push((c.clone(), b.to_vec()));
            true
        })
        .unwrap();
        assert_eq!(again.chunks, listed.chunks);
        let mut read = Vec::new();
        read_as_listed(&path, &listed, |c, b| {
            read.push((c.clone(), b.to_vec()));
            true
        })
        .unwrap();
        assert!(read == cut, "the same chunks, the same bytes");

        let stamp = crate::local_fs::stamp_now(&path).unwrap();
        recent::keep(&path, stamp, id.clone(), listed.clone());
        let other = ContentHash::from("0".repeat(64));
        assert!(
            recent::take(&path, stamp, &other).is_none(),
            "another content"
        );
        recent::keep(&path, stamp, id.clone(), listed.clone());
        let later = recent::Stamp {
            mtime_ns: stamp.mtime_ns + 1,
            ..stamp
        };
        assert!(recent::take(&path, later, &id).is_none(), "written since");
        recent::keep(&path, stamp, id.clone(), listed.clone());
        assert_eq!(
            recent::take(&path, stamp, &id).unwrap().chunks,
            listed.chunks
        );
        assert!(recent::take(&path, stamp, &id).is_none(), "used once");

        // A file shorter than its list fails to read as listed.
        std::fs::write(&path, &data[..data.len() - 1]).unwrap();
        let err = read_as_listed(&path, &listed, |_, _| true).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn chunks_cover_the_file_within_bounds_and_hash_it() {
        let data = noise(9 * 1024 * 1024 + 123, 3);
        let c = chunk_reader(&data[..]).unwrap();
        assert_eq!(c.size, data.len() as u64);
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

    /// The edit figure's bound (≤ 2 MiB re-sent after a 1-byte insert at the start) for many
    /// files: with level-1 normalisation about one file in ten broke it.
    #[test]
    fn an_insert_at_the_start_re_sends_at_most_two_mib() {
        let mut worst = 0;
        for seed in 0..24 {
            let data = noise(8 * 1024 * 1024, 11 + seed * 7919);
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
                new_bytes <= 2 * 1024 * 1024,
                "seed {seed}: {new_bytes} new bytes after a 1-byte insert"
            );
            worst = worst.max(new_bytes);
        }
        assert!(
            worst >= u64::from(CHUNK_MIN_SIZE),
            "the first chunk is re-sent"
        );
    }

    #[test]
    fn chunk_sizes_stay_near_the_average() {
        let data = noise(96 * 1024 * 1024, 42);
        let c = chunk_reader(&data[..]).unwrap();
        let (body, _last) = c.chunks.split_at(c.chunks.len() - 1);
        let over = body.iter().filter(|c| c.size > 2 * CHUNK_AVG_SIZE).count();
        assert_eq!(
            over,
            0,
            "{over} of {} chunks over twice the average",
            body.len()
        );
        let average = data.len() / c.chunks.len();
        assert!(
            (768 * 1024..1536 * 1024).contains(&average),
            "average chunk {average} bytes"
        );
    }

    #[test]
    fn empty_files_have_no_chunks_and_chunks_are_handed_over_as_cut() {
        let empty = chunk_reader(&[][..]).unwrap();
        assert_eq!(empty.size, 0);
        assert!(empty.chunks.is_empty());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data = noise(3 * 1024 * 1024, 5);
        std::fs::write(&path, &data).unwrap();
        let mut handed = Vec::new();
        let c = chunk_file_with(&path, |chunk, bytes| {
            handed.push((chunk.clone(), bytes.to_vec()));
            true
        })
        .unwrap();
        assert_eq!(
            c.chunks,
            handed.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>()
        );
        for (chunk, bytes) in &handed {
            let at = chunk.offset as usize;
            assert_eq!(bytes[..], data[at..at + chunk.size as usize]);
            assert_eq!(hex::encode(Sha256::digest(bytes)), chunk.sha256);
        }
        // A consumer that gives up stops the read.
        let mut calls = 0;
        let stopped = chunk_file_with(&path, |_, _| {
            calls += 1;
            false
        });
        assert_eq!(stopped.unwrap_err().kind(), std::io::ErrorKind::Interrupted);
        assert_eq!(calls, 1);
    }
}
