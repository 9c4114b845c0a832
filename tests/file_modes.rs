//! Who may read an account's files: a new data directory is private (0700),
//! every file the store creates in it, and those SQLite creates for it, is
//! owner-only (0600), before and after a daemon ran; a directory or file
//! that others can open is reported, not silently changed.
#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::TempDir;
use kith::account::{Account, DATABASE_FILE, permission_warnings};
use kith::daemon::{self, DaemonConfig};
use kith::net::NetConfig;
use kith::store::{KdfParams, store_files};

const PASS: &str = "file modes test passphrase";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{} exists: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The usual umask, whatever the test runner was started with, so that a
/// file created without an explicit mode comes out 0644 as for most users.
fn usual_umask() {
    // SAFETY: `umask` only sets the process's file creation mask.
    unsafe {
        libc::umask(0o022);
    }
}

/// Every store file that exists is 0600; returns how many existed.
fn assert_store_files_private(data: &Path) -> usize {
    let mut seen = 0;
    for path in store_files(&data.join(DATABASE_FILE)) {
        if path.exists() {
            assert_eq!(format!("{:o}", mode(&path)), "600", "{}", path.display());
            seen += 1;
        }
    }
    seen
}

#[test]
fn a_new_account_is_private_to_its_owner() {
    usual_umask();
    let dir = TempDir::new("modes-create");
    let data = dir.path().join("data");
    let account = Account::create(&data, PASS, KdfParams::insecure_fast_for_tests())
        .expect("a fresh temp dir takes an account");
    assert_eq!(mode(&data), 0o700);
    // Open: database, key file, journal, lock, and SQLite's WAL and
    // shared-memory files, which copy the database file's mode.
    assert_eq!(assert_store_files_private(&data), 6);
    assert_eq!(account.permission_warnings(), vec![]);
    drop(account);
    assert!(assert_store_files_private(&data) >= 4);
}

#[test]
fn files_stay_private_while_and_after_a_daemon_runs() {
    usual_umask();
    let dir = TempDir::new("modes-daemon");
    let data = dir.path().join("data");
    drop(Account::create(&data, PASS, KdfParams::insecure_fast_for_tests()).expect("create"));
    let config = DaemonConfig {
        net: NetConfig::loopback(),
        control_socket: true,
        ..DaemonConfig::default()
    };
    let daemon = daemon::start(&data, PASS, config).expect("the daemon starts");
    // A new room's key rewrites the key file (through a temporary file).
    daemon.create_room("modes", &[]).expect("a room");
    assert_eq!(assert_store_files_private(&data), 6);
    assert_eq!(permission_warnings(&data), vec![]);
    daemon.shutdown().expect("clean shutdown");
    assert!(assert_store_files_private(&data) >= 4);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(permission_warnings(&data), vec![]);
}

#[test]
fn an_open_directory_or_file_is_reported_and_left_alone() {
    usual_umask();
    let dir = TempDir::new("modes-open");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("a directory");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let account = Account::create(&data, PASS, KdfParams::insecure_fast_for_tests())
        .expect("an empty directory takes an account");
    // The user's directory keeps its mode, but the user hears about it.
    assert_eq!(mode(&data), 0o755);
    let warnings = account.permission_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].is_dir);
    assert_eq!(
        warnings[0].to_string(),
        format!(
            "{} is open to other users (mode 755); `chmod 700 {}` makes it private",
            data.display(),
            data.display()
        )
    );

    let keys = kith::store::key_file_path(&data.join(DATABASE_FILE));
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let warnings = permission_warnings(&data);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(
        (warnings[1].path.as_path(), warnings[1].mode),
        (keys.as_path(), 0o644)
    );
    assert!(warnings[1].to_string().contains("chmod 600"));
}
