//! A small tmpfs in a private mount namespace, for the disk-full tests:
//! the test re-executes itself under `unshare` and mounts it there, so a
//! full disk is real and no other file system is touched. Where that
//! cannot be set up the test says SKIPPED and passes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::TempDir;

const CHILD_ENV: &str = "KITH_MNT_NS_CHILD";
const DIR_ENV: &str = "KITH_MNT_NS_DIR";
/// Printed by the child once its tmpfs is mounted, so the parent can tell
/// "could not set up" from "set up, then failed".
const READY: &str = "KITH-MNT-READY";
const SKIP: &str = "KITH-MNT-SKIP:";
const PASSED: &str = "KITH-MNT-PASSED";

/// Runs `body` with a tmpfs of `size` (mount option, `size=6m`) mounted at the directory it is given,
/// in a private mount namespace: the parent re-executes this test there
/// and checks the result.
pub fn on_small_tmpfs(test_name: &str, size: &str, body: fn(&Path)) {
    if std::env::var_os(CHILD_ENV).is_some() {
        let dir = PathBuf::from(std::env::var_os(DIR_ENV).expect("the parent names the dir"));
        if mount_tmpfs(&dir, size) {
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
fn mount_tmpfs(dir: &Path, size: &str) -> bool {
    let parent = std::env::var(CHILD_ENV).unwrap_or_default();
    let here = mount_namespace();
    assert!(
        parent.starts_with("mnt:[") && here.starts_with("mnt:[") && parent != here,
        "refusing to mount: not in a private mount namespace (parent {parent:?}, here {here:?})"
    );
    let output = Command::new("mount")
        .args(["-t", "tmpfs", "-o", size, "tmpfs"])
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
