use super::*;
use crate::chunker::noise;
use crate::sim::real::RealServer;
use crate::status::Direction;
use crate::transfer::Transfers;

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Uploads `data` as `path` (through a file in `dir`), on top of `parent`.
async fn put(api: &Api, dir: &Path, path: &str, parent: Option<i64>, data: &[u8]) -> FileMeta {
    let file = dir.join("upload");
    std::fs::write(&file, data).unwrap();
    let t = Transfers::default();
    let active = t.start(path, Direction::Upload, 0);
    api.upload(path, parent, &file, &sha(data), &active.transfer)
        .await
        .expect("the upload")
}

/// Downloads `file_id` into `dest` with `seeds`: the content's revision and hash, and the
/// bytes that came over the network for it.
async fn get(api: &Api, file_id: &str, dest: &Path, seeds: &[PathBuf]) -> ((i64, String), u64) {
    let before = api.downloaded.load(Ordering::Relaxed);
    let t = Transfers::default();
    let active = t.start("x", Direction::Download, 0);
    let got = api
        .download(file_id, dest, None, seeds, &active.transfer)
        .await
        .expect("the download");
    (got, api.downloaded.load(Ordering::Relaxed) - before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_file_comes_down_as_its_changed_chunks_and_a_lying_seed_costs_only_time() {
    let server = RealServer::start().await;
    let api = server.api();
    let dir = tempfile::tempdir().unwrap();
    let old = noise(6 * 1024 * 1024 + 99, 5);
    let first = put(api, dir.path(), "big.bin", None, &old).await;
    let mut new = vec![b'#'];
    new.extend_from_slice(&old);
    // Also changed in the middle: two stretches to fetch, the rest copied.
    new[3 * 1024 * 1024] ^= 0xff;
    let second = put(api, dir.path(), "big.bin", Some(first.rev.into()), &new).await;

    let seed = dir.path().join("old version");
    std::fs::write(&seed, &old).unwrap();
    let dest = dir.path().join("dest");
    let ((rev, got_sha), fetched) =
        get(api, &second.file_id, &dest, std::slice::from_ref(&seed)).await;
    assert_eq!(
        (rev, got_sha.as_str()),
        (second.rev.get(), second.sha256.to_string().as_str())
    );
    assert!(
        std::fs::read(&dest).unwrap() == new,
        "the assembled file is the new content"
    );
    assert!(fetched > 0);
    assert!(
        fetched <= 2 * u64::from(syncsphere_protocol::CHUNK_MAX_SIZE) + 2,
        "fetched {fetched} of {} bytes",
        new.len()
    );
    assert_eq!(std::fs::read(&seed).unwrap(), old, "the seed is only read");

    // Without a seed, or with one that shares nothing: the whole content.
    for seeds in [vec![], vec![dir.path().join("missing")]] {
        std::fs::remove_file(&dest).unwrap();
        let (_, fetched) = get(api, &second.file_id, &dest, &seeds).await;
        assert_eq!(fetched, new.len() as u64, "{seeds:?}");
        assert!(std::fs::read(&dest).unwrap() == new);
    }

    // A seed whose bytes are not what its chunks were (written to after it was read):
    // the result does not hash to the content, nothing of it is kept, and the download
    // falls back to the whole content.
    let listed: ContentChunks = api
        .fetch_with::<endpoint::GetFileChunks>(&[&second.file_id], &DownloadQuery::default())
        .await
        .unwrap();
    let held: delta::Held = listed
        .chunks
        .iter()
        .map(|c| (c.sha256.to_string(), (0, 0)))
        .collect();
    let lying = delta::pieces(&listed.chunks, &held);
    let t = Transfers::default();
    let active = t.start("x", Direction::Download, 0);
    std::fs::remove_file(&dest).unwrap();
    let shrunk = dir.path().join("shrunk");
    std::fs::write(&shrunk, &old[..1000]).unwrap();
    for seed in [seed.clone(), shrunk] {
        let assembled = api
            .assemble(
                &second.file_id,
                &dest,
                &listed,
                &lying,
                std::slice::from_ref(&seed),
                &active.transfer,
            )
            .await
            .unwrap();
        assert_eq!(assembled, None, "{}", seed.display());
        assert!(!dest.exists(), "a failed assembly leaves nothing behind");
    }

    // A content of one chunk is fetched whole, in one request.
    let small = put(api, dir.path(), "small.bin", None, b"tiny").await;
    let (_, fetched) = get(api, &small.file_id, &dest, &[seed]).await;
    assert_eq!(fetched, 4);
    assert_eq!(std::fs::read(&dest).unwrap(), b"tiny");
}

/// Many small files come down in one request, each verified and written; a file too large
/// for the batch comes alone, a deleted one is "not found", and a partial file left from
/// an earlier download is replaced, not appended to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_come_down_together_and_the_rest_alone() {
    let server = RealServer::start().await;
    let api = server.api();
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for i in 0..40 {
        let data = format!("small file number {i}").repeat(i + 1).into_bytes();
        files.push((
            put(api, dir.path(), &format!("s/{i}.txt"), None, &data).await,
            data,
        ));
    }
    let large = noise(BATCH_CONTENT_MAX as usize + 1, 9);
    files.push((put(api, dir.path(), "large.bin", None, &large).await, large));
    let empty = put(api, dir.path(), "empty", None, b"").await;
    files.push((empty, Vec::new()));
    let gone = put(api, dir.path(), "gone.txt", None, b"soon deleted").await;
    api.delete(&gone.file_id, gone.rev.into()).await.unwrap();

    let dests: Vec<PathBuf> = (0..=files.len())
        .map(|i| dir.path().join(format!("d{i}")))
        .collect();
    // Rubbish where the first file goes: written over.
    std::fs::write(&dests[0], b"left over from before, longer than the file").unwrap();
    let t = Transfers::default();
    let active: Vec<_> = dests
        .iter()
        .map(|_| t.start("x", Direction::Download, 0))
        .collect();
    let hashes: Vec<String> = files.iter().map(|(m, _)| m.sha256.to_string()).collect();
    let gone_sha = gone.sha256.to_string();
    let mut wanted: Vec<Wanted> = files
        .iter()
        .zip(&hashes)
        .zip(&dests)
        .zip(&active)
        .map(|((((meta, _), sha), dest), a)| Wanted {
            file_id: &meta.file_id,
            sha256: sha,
            dest,
            progress: &a.transfer,
        })
        .collect();
    wanted.push(Wanted {
        file_id: &gone.file_id,
        sha256: &gone_sha,
        dest: dests.last().unwrap(),
        progress: &active.last().unwrap().transfer,
    });
    let before = api.downloaded.load(Ordering::Relaxed);
    let got = api.download_many(&wanted).await;
    assert_eq!(got.len(), wanted.len());
    for (((meta, data), dest), result) in files.iter().zip(&dests).zip(&got) {
        let (rev, sha) = result.as_ref().expect("downloaded");
        assert_eq!(
            (*rev, sha),
            (meta.rev.get(), &meta.sha256.to_string()),
            "{}",
            meta.path
        );
        assert!(
            std::fs::read(dest).unwrap() == *data,
            "{} written",
            meta.path
        );
    }
    assert!(
        matches!(got.last(), Some(Err(SyncError::Server { status: 404, .. }))),
        "{:?}",
        got.last()
    );
    assert!(!dests.last().unwrap().exists());
    let total: usize = files.iter().map(|(_, d)| d.len()).sum();
    let fetched = (api.downloaded.load(Ordering::Relaxed) - before) as usize;
    // Every content once, plus the header lines.
    assert!(
        fetched >= total && fetched < total + 200 * files.len(),
        "{fetched} for {total}"
    );
    assert_eq!(api.download_many(&[]).await.len(), 0);
}

/// Small files go up in one request, each with its own result: a file changed since its
/// hash was taken is busy (and not sent), a stale parent a conflict, a large file goes
/// alone; what committed reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_go_up_together_each_with_its_own_result() {
    let server = RealServer::start().await;
    let api = server.api();
    let dir = tempfile::tempdir().unwrap();
    let old = put(api, dir.path(), "old.txt", None, b"old content").await;
    let large = noise(SINGLE_REQUEST_MAX as usize + 10, 3);
    let contents: Vec<(&str, Option<i64>, Vec<u8>)> = vec![
        ("one.txt", None, b"first".to_vec()),
        ("two.txt", None, b"second".to_vec()),
        (
            "old.txt",
            Some(old.rev.into()),
            b"old content, edited".to_vec(),
        ),
        ("stale.txt", None, b"x".to_vec()),
        ("busy.txt", None, b"as hashed".to_vec()),
        ("large.bin", None, large.clone()),
    ];
    let files: Vec<PathBuf> = contents
        .iter()
        .enumerate()
        .map(|(i, (_, _, data))| {
            let f = dir.path().join(format!("f{i}"));
            std::fs::write(&f, data).unwrap();
            f
        })
        .collect();
    let hashes: Vec<String> = contents.iter().map(|(_, _, d)| sha(d)).collect();
    // Written to after it was hashed.
    std::fs::write(&files[4], b"changed since").unwrap();
    // Its parent is a revision the server does not have.
    let stale_parent = Some(99);
    let t = Transfers::default();
    let active: Vec<_> = files
        .iter()
        .map(|_| t.start("x", Direction::Upload, 0))
        .collect();
    let sending: Vec<Sending> = contents
        .iter()
        .enumerate()
        .map(|(i, (path, parent, _))| Sending {
            path,
            parent_rev: if i == 3 { stale_parent } else { *parent },
            file: &files[i],
            expected: &hashes[i],
            progress: &active[i].transfer,
        })
        .collect();
    let got = api.upload_many(&sending).await;
    assert_eq!(got.len(), sending.len());
    for (i, (path, _, data)) in contents.iter().enumerate() {
        match (i, &got[i]) {
            (3, Err(SyncError::Server { status: 404, .. } | SyncError::Conflict(_))) => {}
            (4, Err(SyncError::Busy(p))) => assert_eq!(p, path),
            (3 | 4, other) => panic!("{path}: {other:?}"),
            (_, Ok(meta)) => {
                assert_eq!(
                    (meta.path.as_str(), meta.sha256.to_string()),
                    (*path, sha(data))
                );
                let dest = dir.path().join(format!("back{i}"));
                get(api, &meta.file_id, &dest, &[]).await;
                assert!(std::fs::read(&dest).unwrap() == *data, "{path} reads back");
            }
            (_, Err(e)) => panic!("{path}: {e}"),
        }
    }
    assert_eq!(api.upload_many(&[]).await.len(), 0);
}

/// A content larger than a window comes down in several (each response within API Gateway's
/// 10 MB, 0040); a download cut earlier goes on from where it stopped when the file still has
/// that content, and starts over when it does not; an empty content comes down too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_files_come_down_in_windows_and_resume_only_the_same_content() {
    let server = RealServer::start().await;
    let api = server.api();
    let dir = tempfile::tempdir().unwrap();
    let size = 2 * DOWNLOAD_WINDOW as usize + 12_345;
    let old = noise(size, 11);
    let first = put(api, dir.path(), "big.bin", None, &old).await;
    let dest = dir.path().join("dest");
    let ((rev, got), fetched) = get(api, &first.file_id, &dest, &[]).await;
    assert_eq!((rev, got.as_str()), (first.rev.get(), sha(&old).as_str()));
    assert!(std::fs::read(&dest).unwrap() == old);
    assert_eq!(fetched, size as u64);

    // Cut after 9 MiB: only the rest comes.
    let cut = 9 << 20;
    std::fs::write(&dest, &old[..cut]).unwrap();
    let file_id = first.file_id.to_string();
    let file_id = file_id.as_str();
    let resume = |dest: PathBuf, resume_sha: String| async move {
        let before = api.downloaded.load(Ordering::Relaxed);
        let t = Transfers::default();
        let active = t.start("x", Direction::Download, 0);
        let got = api
            .download(file_id, &dest, Some(&resume_sha), &[], &active.transfer)
            .await
            .expect("the resumed download");
        (got, api.downloaded.load(Ordering::Relaxed) - before)
    };
    let ((_, got), fetched) = resume(dest.clone(), sha(&old)).await;
    assert_eq!(got, sha(&old));
    assert!(std::fs::read(&dest).unwrap() == old);
    assert_eq!(fetched, (size - cut) as u64, "only the rest");

    // Cut when it was already whole (before the rename): nothing comes, the bytes are checked.
    std::fs::write(&dest, &old).unwrap();
    let ((_, got), fetched) = resume(dest.clone(), sha(&old)).await;
    assert_eq!((got, fetched), (sha(&old), 0));
    assert!(std::fs::read(&dest).unwrap() == old);

    // The file changed since the cut: the new content, whole.
    let mut new = old.clone();
    new[100] ^= 1;
    let second = put(api, dir.path(), "big.bin", Some(first.rev.into()), &new).await;
    std::fs::write(&dest, &old[..cut]).unwrap();
    let ((rev, got), fetched) = resume(dest.clone(), sha(&old)).await;
    assert_eq!((rev, got.as_str()), (second.rev.get(), sha(&new).as_str()));
    assert!(std::fs::read(&dest).unwrap() == new);
    assert_eq!(fetched, size as u64, "started over");

    // An empty content (no range to ask for).
    let empty = put(api, dir.path(), "empty.txt", None, b"").await;
    let ((_, got), fetched) = get(api, &empty.file_id, &dest, &[]).await;
    assert_eq!((got, fetched), (sha(b""), 0));
    assert!(std::fs::read(&dest).unwrap().is_empty());
}
