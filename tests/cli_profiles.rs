//! Display names through the CLI, against real `kith daemon` processes on
//! 127.0.0.1: `kith init --name`, `kith profile --name` (running daemon or
//! not), and `kith peers` / `kith listen --json` on the other side. Every
//! wait is bounded.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::TempDir;
use kith::account::Account;
use kith::proto::crypto::PublicIdentity;
use kith::proto::ids::PeerId;
use kith::store::KdfParams;

const PASS: &str = "cli profile test passphrase";
const WAIT: Duration = Duration::from_secs(60);

fn kith(data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kith"));
    command.arg("--data").arg(data).env("KITH_PASSPHRASE", PASS);
    command
}

fn cli(data: &Path, args: &[&str]) -> (bool, String, String) {
    let output = kith(data)
        .args(args)
        .output()
        .expect("the kith binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A child process killed if still running when dropped, so a failing test
/// leaves nothing behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines of a child's output, read on a thread so waits can be bounded.
fn lines_of(child: &mut Child) -> Receiver<String> {
    let stdout = child.stdout.take().expect("stdout was piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[track_caller]
fn wait_line(lines: &Receiver<String>, what: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no expected line within {WAIT:?}: {e}"));
        if what(&line) {
            return line;
        }
    }
}

fn daemon(data: &Path, listen: SocketAddr, peer: &PublicIdentity, at: SocketAddr) -> Running {
    let mut child = kith(data)
        .args(["daemon", "--listen", &listen.to_string(), "--peer"])
        .arg(format!("{}@{at}", PeerId(peer.to_bytes()).to_hex()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the kith binary runs");
    let lines = lines_of(&mut child);
    wait_line(&lines, |l| l.starts_with("listening"));
    Running(child)
}

/// A free loopback port that no other test takes before the daemon binds
/// it next.
fn free_addr() -> SocketAddr {
    common::ports::free_port()
}

/// The display name `kith peers` shows for `peer` (the rest of its line).
fn shown_name(data: &Path, peer: PeerId) -> Option<String> {
    let (ok, peers, error) = cli(data, &["peers"]);
    assert!(ok, "kith peers: {error}");
    peers
        .lines()
        .find(|line| line.starts_with(&peer.to_hex()))
        .map(|line| line.splitn(8, ' ').nth(7).unwrap_or_default().to_owned())
}

#[test]
fn a_name_chosen_by_cli_shows_in_the_other_daemons_peers() {
    let (dir_a, dir_b) = (TempDir::new("cli-name-a"), TempDir::new("cli-name-b"));
    let (data_a, data_b) = (dir_a.path().join("data"), dir_b.path().join("data"));

    // A refused name creates no account.
    let (ok, _, error) = cli(&data_a, &["init", "--name", "Al\u{202e}ice"]);
    assert!(!ok);
    assert!(error.contains("U+202E"), "{error}");
    assert!(!cli(&data_a, &["id"]).0, "no account was created");
    let (ok, out, error) = cli(&data_a, &["init", "--name", "  Alice  "]);
    assert!(ok, "{error}");
    assert!(out.contains("name        Alice\n"), "{out}");
    let pub_a = Account::open(&data_a, PASS)
        .expect("A's account")
        .identity
        .public();
    let pub_b = Account::create(&data_b, PASS, KdfParams::insecure_fast_for_tests())
        .expect("B's account")
        .identity
        .public();

    let (addr_a, addr_b) = (free_addr(), free_addr());
    let _b = daemon(&data_b, addr_b, &pub_a, addr_a);
    let mut listen = kith(&data_b)
        .args(["listen", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("kith listen runs");
    let events = lines_of(&mut listen);
    let _listen = Running(listen);
    let _a = daemon(&data_a, addr_a, &pub_b, addr_b);

    // The name from `init` arrives as soon as the two have a session.
    let a_hex = pub_a.peer_id().to_hex();
    wait_line(&events, |l| {
        l.contains(r#""event":"peer_renamed""#)
            && l.contains(&a_hex)
            && l.contains(r#""name":"Alice""#)
    });
    assert_eq!(
        shown_name(&data_b, pub_a.peer_id()).as_deref(),
        Some("Alice")
    );

    // A renames through its running daemon.
    let (ok, out, error) = cli(&data_a, &["profile", "--name", "Alice Smith"]);
    assert!(ok, "{error}");
    assert_eq!(out.trim(), "you are Alice Smith");
    let line = wait_line(&events, |l| l.contains(r#""name":"Alice Smith""#));
    assert!(line.contains(r#""previous":"Alice""#), "{line}");
    assert_eq!(
        shown_name(&data_b, pub_a.peer_id()).as_deref(),
        Some("Alice Smith")
    );
    // B's messages from A carry the name too.
    let (ok, _, error) = cli(&data_a, &["send", "--to", &pub_b.peer_id().to_hex(), "hi"]);
    assert!(ok, "{error}");
    let line = wait_line(&events, |l| l.contains(r#""event":"message""#));
    assert!(line.contains(r#""from_name":"Alice Smith""#), "{line}");

    // B finds it by searching, named, in JSON and for people.
    let (ok, out, error) = cli(&data_b, &["search", "HI", "--json"]);
    assert!(ok, "{error}");
    assert!(out.starts_with(r#"{"results":[{"room":""#), "{out}");
    assert!(out.contains(r#""from_name":"Alice Smith""#), "{out}");
    assert!(
        out.contains(r#""text":"hi""#) && out.contains(r#""ours":false"#),
        "{out}"
    );
    assert!(out.trim_end().ends_with(r#""next":null}"#), "{out}");
    let (ok, out, error) = cli(&data_b, &["search", "hi", "--limit", "1"]);
    assert!(ok, "{error}");
    assert!(out.contains("Alice Smith: hi\n"), "{out}");
    assert!(
        out.contains("more: kith search … --before "),
        "a full page: {out}"
    );
    let cursor = out
        .lines()
        .last()
        .and_then(|l| l.split(' ').next_back())
        .expect("a cursor");
    let (ok, out, error) = cli(&data_b, &["search", "hi", "--before", cursor, "--json"]);
    assert!(ok, "{error}");
    assert_eq!(out.trim(), r#"{"results":[],"next":null}"#);
    let (ok, _, error) = cli(&data_b, &["search", "hi", "--before", "yesterday"]);
    assert!(!ok && error.contains("not a cursor"), "{error}");

    // Refused names say why and change nothing.
    let (ok, _, error) = cli(&data_a, &["profile", "--name", "Ali\u{200b}ce"]);
    assert!(!ok);
    assert!(error.contains("U+200B"), "{error}");
    let (ok, _, error) = cli(&data_a, &["profile", "--name", &"a".repeat(65)]);
    assert!(!ok && error.contains("at most 64"), "{error}");

    // With A's daemon stopped, the name is kept for its next start.
    assert!(cli(&data_a, &["stop"]).0);
    let deadline = Instant::now() + WAIT;
    let out = loop {
        let (ok, out, _) = cli(&data_a, &["profile", "--name", "Offline Alice"]);
        if ok {
            break out;
        }
        // The stopping daemon still holds the store for a moment.
        assert!(Instant::now() < deadline, "the store never freed up");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(out.contains("next runs"), "{out}");
    let (ok, out, _) = cli(&data_a, &["id"]);
    assert!(ok && out.contains("name        Offline Alice"), "{out}");
    assert!(cli(&data_b, &["stop"]).0);
}
