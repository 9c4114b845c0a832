//! A full disk under the file store: sharing, receiving and exporting a
//! file fail with a sentence ("disk full"), and leave no file that could
//! pass for complete. The disk is a small tmpfs in a private mount
//! namespace (the harness of `store_disk_full.rs`); where that cannot be
//! set up the test says SKIPPED and passes.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::TempDir;
use kith::proto::files::CHUNK_SIZE;
use kith::proto::ids::FileHash;
use kith::store::{KdfParams, Store, StoreError};

const CHILD_ENV: &str = "KITH_MNT_NS_CHILD";
const DIR_ENV: &str = "KITH_MNT_NS_DIR";
const READY: &str = "KITH-MNT-READY";
const SKIP: &str = "KITH-MNT-SKIP:";
const PASSED: &str = "KITH-MNT-PASSED";
/// Room for the store and its journal, not for the files below.
const TMPFS: &str = "size=6m";

#[test]
fn a_full_disk_fails_file_writes_with_a_sentence_and_nothing_complete() {
    on_small_tmpfs(
        "a_full_disk_fails_file_writes_with_a_sentence_and_nothing_complete",
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

/// Runs `body` with a small tmpfs mounted at the directory it is given,
/// in a private mount namespace: the parent re-executes this test there
/// and checks the result.
fn on_small_tmpfs(test_name: &str, body: fn(&Path)) {
    if std::env::var_os(CHILD_ENV).is_some() {
        let dir = PathBuf::from(std::env::var_os(DIR_ENV).expect("the parent names the dir"));
        if mount_tmpfs(&dir) {
            body(&dir);
            println!("{PASSED}");
        }
    } else {
        run_child_in_mount_namespace(test_name);
    }
}

/// The mount namespace this process is in (`mnt:[inode]`).
fn mount_namespace() -> String {
    std::fs::read_link("/proc/self/ns/mnt")
        .map(|link| link.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn run_child_in_mount_namespace(test_name: &str) {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    let here = mount_namespace();
    if here.is_empty() {
        skipped("/proc/self/ns/mnt is unreadable, so a namespace cannot be checked".into());
        return;
    }
    // The parent owns the directory, so it is removed however the child ends.
    let dir = TempDir::new("disk-full");
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let output = match Command::new("unshare")
        .arg(if root { "-m" } else { "-rm" })
        // Private (unshare's default, said anyway): the tmpfs never shows
        // in the parent's namespace.
        .arg("--propagation=private")
        .arg(&exe)
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        // The child gets our namespace so it can prove it is not in it.
        .env(CHILD_ENV, &here)
        .env(DIR_ENV, dir.path())
        .output()
    {
        Ok(output) => output,
        Err(e) => {
            skipped(format!("cannot run `unshare` (util-linux): {e}"));
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stdout.contains(READY) {
        let reason = stdout
            .lines()
            .find_map(|line| line.strip_prefix(SKIP))
            .map(str::trim)
            .map(str::to_owned)
            .unwrap_or_else(|| {
                format!("`unshare -m` failed ({}): {}", output.status, stderr.trim())
            });
        skipped(reason);
        return;
    }
    assert!(
        output.status.success() && stdout.contains(PASSED),
        "the disk-full test failed inside the namespace ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for line in stdout.lines().filter(|l| l.contains("figure")) {
        report(line);
    }
    report("disk-full test ran on a tmpfs in a private mount namespace");
}

/// Prints a line even when the test harness captures output (it captures
/// the print macros, not direct writes), so a skip is never silent.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn skipped(reason: String) {
    report(&format!("SKIPPED disk-full test: {reason}"));
}

/// Mounts the small tmpfs at `dir`, after checking this is not the
/// parent's mount namespace; `false` (with a skip line) if it cannot.
fn mount_tmpfs(dir: &Path) -> bool {
    let parent = std::env::var(CHILD_ENV).unwrap_or_default();
    let here = mount_namespace();
    assert!(
        parent.starts_with("mnt:[") && here.starts_with("mnt:[") && parent != here,
        "refusing to mount: not in a private mount namespace (parent {parent:?}, here {here:?})"
    );
    let output = Command::new("mount")
        .args(["-t", "tmpfs", "-o", TMPFS, "tmpfs"])
        .arg(dir)
        .output();
    match output {
        Ok(output) if output.status.success() => {
            println!("{READY}");
            true
        }
        Ok(output) => {
            println!(
                "{SKIP} `mount -t tmpfs` failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
            false
        }
        Err(e) => {
            println!("{SKIP} cannot run `mount`: {e}");
            false
        }
    }
}
