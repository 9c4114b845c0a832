//! The store's file blobs: encrypted at rest, complete only when checked
//! against the hash, resumable, exported whole under a name made unique.

mod common;

use common::TempDir;
use kith::proto::files::{CHUNK_SIZE, MAX_FILE_SIZE};
use kith::proto::ids::FileHash;
use kith::store::{KdfParams, Store};

fn store(dir: &TempDir) -> Store {
    Store::create(&dir.db(), "pw", KdfParams::insecure_fast_for_tests()).expect("store")
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[seed]);
    hasher.finalize_xof().fill(&mut out);
    out
}

#[test]
fn an_imported_file_is_encrypted_at_rest_and_exports_whole() {
    let dir = TempDir::new("blobs-import");
    let store = store(&dir);
    let content = bytes(3 * CHUNK_SIZE + 17, 1);
    let source = dir.path().join("source.bin");
    std::fs::write(&source, &content).unwrap();
    let (hash, size) = store.import_blob(&source).expect("import");
    assert_eq!(hash, FileHash(*blake3::hash(&content).as_bytes()));
    assert_eq!(size, content.len() as u64);
    assert!(store.blob_exists(&hash));
    // Private like the rest of the store.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&store.blob_dir()), 0o700);
        assert_eq!(mode(&store.blob_dir().join(hash.to_hex())), 0o600);
    }
    // Nothing of the plaintext is on disk in the blob store.
    let blob = std::fs::read(store.blob_dir().join(hash.to_hex())).unwrap();
    assert!(
        !blob.windows(32).any(|w| w == &content[1000..1032]),
        "plaintext found in the blob"
    );
    assert_eq!(
        store.read_blob_chunk(&hash, size, 3).unwrap(),
        content[3 * CHUNK_SIZE..]
    );
    let out = dir.path().join("out");
    let first = store.export_blob(&hash, size, &out, "report.pdf").unwrap();
    let second = store.export_blob(&hash, size, &out, "report.pdf").unwrap();
    assert_eq!(first, out.join("report.pdf"));
    assert_eq!(second, out.join("report (1).pdf"));
    assert_eq!(std::fs::read(&first).unwrap(), content);
    assert_eq!(std::fs::read(&second).unwrap(), content);
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("kith-part"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    // An empty file is a file too.
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let (hash, size) = store.import_blob(&empty).unwrap();
    assert_eq!(size, 0);
    let path = store.export_blob(&hash, 0, &out, "empty").unwrap();
    assert_eq!(std::fs::read(path).unwrap(), b"");
}

#[test]
fn received_chunks_complete_only_when_they_match_the_hash() {
    let dir = TempDir::new("blobs-receive");
    let mut store = store(&dir);
    let content = bytes(2 * CHUNK_SIZE + 5, 2);
    let hash = FileHash(*blake3::hash(&content).as_bytes());
    let size = content.len() as u64;
    let chunks: Vec<&[u8]> = content.chunks(CHUNK_SIZE).collect();
    assert_eq!(store.begin_blob(&hash, size).unwrap(), vec![false; 3]);
    store.write_blob_chunk(&hash, size, 2, chunks[2]).unwrap();
    // Resuming finds what was stored.
    assert_eq!(
        store.begin_blob(&hash, size).unwrap(),
        vec![false, false, true]
    );
    // A wrong chunk (right length) is only caught by the whole-file hash.
    let wrong = vec![0u8; CHUNK_SIZE];
    store.write_blob_chunk(&hash, size, 0, &wrong).unwrap();
    store.write_blob_chunk(&hash, size, 1, chunks[1]).unwrap();
    assert!(
        !store.finish_blob(&hash, size).unwrap(),
        "a wrong file is refused"
    );
    assert!(!store.blob_exists(&hash), "never complete");
    // Started over, with the right bytes, it completes.
    assert_eq!(store.begin_blob(&hash, size).unwrap(), vec![false; 3]);
    for (i, chunk) in chunks.iter().enumerate() {
        store
            .write_blob_chunk(&hash, size, i as u32, chunk)
            .unwrap();
    }
    assert!(store.finish_blob(&hash, size).unwrap());
    assert!(store.blob_exists(&hash));
    let out = store
        .export_blob(&hash, size, &dir.path().join("o"), "f")
        .unwrap();
    assert_eq!(std::fs::read(out).unwrap(), content);
}

#[test]
fn a_chunk_damaged_at_rest_does_not_count_as_stored() {
    let dir = TempDir::new("blobs-damage");
    let store = store(&dir);
    let content = bytes(2 * CHUNK_SIZE, 3);
    let hash = FileHash(*blake3::hash(&content).as_bytes());
    let size = content.len() as u64;
    store.begin_blob(&hash, size).unwrap();
    for (i, chunk) in content.chunks(CHUNK_SIZE).enumerate() {
        store
            .write_blob_chunk(&hash, size, i as u32, chunk)
            .unwrap();
    }
    let part = store.blob_dir().join(format!("{}.part", hash.to_hex()));
    let mut raw = std::fs::read(&part).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    std::fs::write(&part, raw).unwrap();
    assert_eq!(store.begin_blob(&hash, size).unwrap(), vec![true, false]);
}

#[test]
fn a_file_over_the_limit_is_refused_and_leaves_nothing() {
    let dir = TempDir::new("blobs-huge");
    let store = store(&dir);
    let source = dir.path().join("huge");
    // Sparse: no disk is used.
    let file = std::fs::File::create(&source).unwrap();
    file.set_len(MAX_FILE_SIZE + 1).unwrap();
    let error = store.import_blob(&source).expect_err("too large");
    assert!(error.to_string().contains("larger than"), "{error}");
    let left: Vec<_> = std::fs::read_dir(store.blob_dir()).unwrap().collect();
    assert!(left.is_empty(), "nothing is left in the blob store");
    let missing = store
        .import_blob(&dir.path().join("nope"))
        .expect_err("missing");
    assert!(missing.to_string().contains("nope"), "{missing}");
}

/// The blob worker (what the daemon runs off its network thread) stops
/// when told to: an import, a check-and-export or an export cancelled
/// leaves no blob, no temporary file and no copy; the received chunks
/// stay for the next try.
#[test]
fn cancelled_blob_work_leaves_nothing_half_done() {
    use std::sync::atomic::AtomicBool;
    let dir = TempDir::new("blobs-cancel");
    let mut store = store(&dir);
    let worker = store.blob_worker();
    let stop = AtomicBool::new(true);
    let content = bytes(2 * CHUNK_SIZE + 5, 4);
    let source = dir.path().join("source.bin");
    std::fs::write(&source, &content).unwrap();
    let error = worker.import(&source, &stop).expect_err("cancelled");
    assert!(error.to_string().contains("stopped"), "{error}");
    let left: Vec<_> = std::fs::read_dir(store.blob_dir()).unwrap().collect();
    assert!(
        left.is_empty(),
        "nothing is left in the blob store: {left:?}"
    );

    // Received chunks whose check is cancelled stay as a `.part`.
    let hash = FileHash(*blake3::hash(&content).as_bytes());
    let size = content.len() as u64;
    store.begin_blob(&hash, size).unwrap();
    for (index, chunk) in content.chunks(CHUNK_SIZE).enumerate() {
        store
            .write_blob_chunk(&hash, size, index as u32, chunk)
            .unwrap();
    }
    let out = dir.path().join("out");
    worker
        .finish_into(&hash, size, &out, "f.bin", &stop)
        .expect_err("cancelled");
    assert!(!store.blob_exists(&hash));
    assert_eq!(store.begin_blob(&hash, size).unwrap(), vec![true; 3]);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "no copy");
    // Not cancelled, it completes; a cancelled export then writes nothing.
    let go = AtomicBool::new(false);
    let path = worker
        .finish_into(&hash, size, &out, "f.bin", &go)
        .expect("checked")
        .expect("the hash matches");
    assert_eq!(std::fs::read(&path).unwrap(), content);
    assert!(store.blob_exists(&hash));
    let other = dir.path().join("other");
    worker
        .export(&hash, size, &other, "f.bin", &stop)
        .expect_err("cancelled");
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 0, "no copy");
    let _ = store.finish_blob_into(&hash, size, &out, "again.bin");
}
