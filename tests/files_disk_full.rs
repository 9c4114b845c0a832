//! A full disk under the file store: sharing, receiving and exporting a
//! file fail with a sentence ("disk full"), and leave no file that could
//! pass for complete. The disk is a small tmpfs in a private mount
//! namespace (`tests/common/tmpfs.rs`); where that cannot be
//! set up the test says SKIPPED and passes.

mod common;

use std::path::Path;

use common::tmpfs::on_small_tmpfs;
use kith::proto::files::CHUNK_SIZE;
use kith::proto::ids::FileHash;
use kith::store::{KdfParams, Store, StoreError};

/// Room for the store and its journal, not for the files below.
const TMPFS: &str = "size=6m";

#[test]
fn a_full_disk_fails_file_writes_with_a_sentence_and_nothing_complete() {
    on_small_tmpfs(
        "a_full_disk_fails_file_writes_with_a_sentence_and_nothing_complete",
        TMPFS,
        full_disk,
    );
}

fn is_disk_full(error: &StoreError) -> bool {
    matches!(error, StoreError::DiskFull(_)) && error.to_string().contains("space")
}

fn full_disk(dir: &Path) {
    let mut store = Store::create(
        &dir.join("kith.db"),
        "pw",
        KdfParams::insecure_fast_for_tests(),
    )
    .expect("the store fits");
    // The source lives off the tmpfs; 8 MiB cannot fit on it.
    let outside = std::env::temp_dir().join(format!("kith-fdf-{}", std::process::id()));
    let mut content = vec![0u8; 8 * 1024 * 1024];
    blake3::Hasher::new().finalize_xof().fill(&mut content);
    std::fs::write(&outside, &content).expect("the source is written");
    let error = store
        .import_blob(&outside)
        .expect_err("no room to share it");
    let _ = std::fs::remove_file(&outside);
    assert!(is_disk_full(&error), "sharing: {error}");
    let left: Vec<_> = std::fs::read_dir(store.blob_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "nothing of the share is left: {left:?}");

    // Receiving: chunks fail once the disk is full; the file never counts
    // as complete.
    let hash = FileHash(*blake3::hash(&content).as_bytes());
    let size = content.len() as u64;
    store.begin_blob(&hash, size).expect("a sparse part fits");
    let mut failed = None;
    for (i, chunk) in content.chunks(CHUNK_SIZE).enumerate() {
        if let Err(error) = store.write_blob_chunk(&hash, size, i as u32, chunk) {
            failed = Some(error);
            break;
        }
    }
    let error = failed.expect("the disk fills before the file is in");
    assert!(is_disk_full(&error), "receiving: {error}");
    assert!(!store.blob_exists(&hash));
    let exported = store.finish_blob_into(&hash, size, &dir.join("out"), "f.bin");
    assert!(
        matches!(exported, Ok(None) | Err(_)),
        "an incomplete file is never finished"
    );
    assert!(!store.blob_exists(&hash));
    assert!(!dir.join("out").join("f.bin").exists(), "no export of it");
    println!("disk full reported: {error}");
}
