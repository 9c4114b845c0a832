//! The `kith` binary at its edges: a reader that closed stdout (`kith
//! discovery | head -1`) and a store file it cannot open. Every wait is
//! bounded.
#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::TempDir;
use kith::account::Account;
use kith::daemon::{self, DaemonConfig};
use kith::net::NetConfig;
use kith::store::KdfParams;

const PASS: &str = "cli edges test passphrase";
const WAIT: Duration = Duration::from_secs(60);

fn account(dir: &TempDir) -> PathBuf {
    let data = dir.path().join("data");
    drop(Account::create(&data, PASS, KdfParams::insecure_fast_for_tests()).expect("create"));
    data
}

fn kith(data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kith"));
    command
        .arg("--data")
        .arg(data)
        .env("KITH_PASSPHRASE", PASS)
        .stdin(Stdio::null());
    command
}

/// A stdout whose reader has already gone, like `| head -1` after its
/// line: every write gets EPIPE, whenever the command gets to it.
fn closed_stdout() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    Stdio::from(writer)
}

/// Runs `command` with stdout closed and stderr captured, bounded by WAIT.
fn run_with_closed_stdout(mut command: Command) -> Output {
    let child = command
        .stdout(closed_stdout())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the kith binary runs");
    wait_bounded(child)
}

fn wait_bounded(child: Child) -> Output {
    let (tx, rx) = mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(output) => output.expect("the child is waited for"),
        Err(_) => {
            // SAFETY: kill only sends a signal to our own child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            panic!("kith did not exit within {WAIT:?}");
        }
    }
}

fn assert_quiet_success(output: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.is_empty(),
        "{what}: {:?}, stderr: {stderr}",
        output.status
    );
}

#[test]
fn commands_exit_quietly_when_the_reader_closed_stdout() {
    let dir = TempDir::new("cli-epipe");
    let data = account(&dir);

    let mut id = kith(&data);
    id.arg("id");
    assert_quiet_success(&run_with_closed_stdout(id), "kith id");

    let config = DaemonConfig {
        net: NetConfig::loopback(),
        control_socket: true,
        ..DaemonConfig::default()
    };
    let daemon = daemon::start(&data, PASS, config).expect("the daemon starts");
    for request in ["discovery", "status", "peers", "rooms"] {
        let mut command = kith(&data);
        command.arg(request);
        assert_quiet_success(&run_with_closed_stdout(command), request);
    }
    daemon.shutdown().expect("clean shutdown");
}

#[test]
fn a_daemon_whose_stdout_is_closed_stops_cleanly_and_quietly() {
    let dir = TempDir::new("cli-epipe-daemon");
    let data = account(&dir);
    let mut command = kith(&data);
    command.args(["daemon", "--listen", "127.0.0.1:0"]);
    assert_quiet_success(&run_with_closed_stdout(command), "kith daemon");
    // Its store was closed: the lock is free again.
    drop(Account::open(&data, PASS).expect("the store is free after the daemon"));
}

#[test]
fn a_lock_path_that_is_a_directory_is_one_line_naming_it() {
    let dir = TempDir::new("cli-lockdir");
    let data = account(&dir);
    let lock = data.join("kith.db.lock");
    std::fs::remove_file(&lock).expect("the lock file is there after create");
    std::fs::create_dir(&lock).expect("a directory in its place");
    let output = wait_bounded(
        kith(&data)
            .arg("id")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the kith binary runs"),
    );
    assert_eq!(output.status.code(), Some(1));
    let os = std::io::Error::from_raw_os_error(libc::EISDIR);
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!("kith: cannot open the lock file {}: {os}\n", lock.display())
    );
}
