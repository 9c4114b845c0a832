//! Real `kith daemon` processes on 127.0.0.1 next to an in-process daemon:
//! kill -9 of the receiver mid-stream, the CLI over the control socket, and
//! clean stops by `kith stop` and SIGTERM. Every wait is bounded.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::{TempDir, no_spawn_under_way, spawn};
use kith::account::Account;
use kith::daemon::{self, DaemonConfig, DaemonHandle, Event};
use kith::net::NetConfig;
use kith::proto::crypto::PublicIdentity;
use kith::proto::ids::{MessageId, PeerId};
use kith::proto::node::direct_room;
use kith::store::KdfParams;

const PASS: &str = "daemon process test passphrase";
const WAIT: Duration = Duration::from_secs(60);

fn account(dir: &TempDir) -> (PathBuf, PublicIdentity) {
    let data = dir.path().join("data");
    let account = Account::create(&data, PASS, KdfParams::insecure_fast_for_tests())
        .expect("a fresh temp dir takes an account");
    (data, account.identity.public())
}

fn key_hex(public: &PublicIdentity) -> String {
    PeerId(public.to_bytes()).to_hex()
}

fn kith(data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kith"));
    command.arg("--data").arg(data).env("KITH_PASSPHRASE", PASS);
    command
}

/// A `kith daemon` child process; killed (SIGKILL) if still running when
/// dropped, so a failing test leaves nothing behind.
struct DaemonProcess {
    child: Option<Child>,
    pid: u32,
    addr: SocketAddr,
}

impl DaemonProcess {
    fn start(data: &Path, listen: SocketAddr, peers: &[String]) -> Self {
        let mut command = kith(data);
        command
            .arg("daemon")
            .arg("--listen")
            .arg(listen.to_string());
        for peer in peers {
            command.arg("--peer").arg(peer);
        }
        let mut child = spawn(
            command
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )
        .expect("the kith binary runs");
        let stdout = child.stdout.take().expect("stdout was piped");
        let lines = line_channel(stdout);
        let addr = loop {
            let line = lines
                .recv_timeout(WAIT)
                .expect("the daemon prints its address (or exits with an error on stderr)");
            if let Some(addr) = line.strip_prefix("listening") {
                break addr.trim().parse().expect("a socket address");
            }
        };
        DaemonProcess {
            pid: child.id(),
            child: Some(child),
            addr,
        }
    }

    /// Waits (bounded) for the process to exit by itself.
    fn wait_exit(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("only wait_exit takes the child");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(WAIT) {
            Ok(status) => status.expect("the child can be waited for"),
            Err(_) => {
                let _ = spawn(Command::new("kill").args(["-KILL", &self.pid.to_string()]))
                    .and_then(|mut kill| kill.wait());
                panic!("the daemon did not exit within {WAIT:?}");
            }
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL: what the kill -9 test wants, and the clean-up when a
            // test fails.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The lines of a child's output, read on a thread so waits can be bounded.
fn line_channel(output: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn start_library_daemon(data: &Path) -> DaemonHandle {
    let config = DaemonConfig {
        net: NetConfig::loopback(),
        ..DaemonConfig::default()
    };
    no_spawn_under_way();
    daemon::start(data, PASS, config).expect("the daemon starts")
}

fn collect_until(rx: &Receiver<Event>, mut done: impl FnMut(&Event) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no expected event within {WAIT:?}: {e}"));
        if done(&event) {
            return;
        }
    }
}

fn cli(data: &Path, args: &[&str]) -> (bool, String, String) {
    let output = spawn(
        kith(data)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .and_then(Child::wait_with_output)
    .expect("the kith binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn kill_9_of_the_receiver_loses_nothing_acknowledged_and_the_cli_drives_it() {
    let dir_a = TempDir::new("kill-a");
    let dir_b = TempDir::new("kill-b");
    let (data_a, pub_a) = account(&dir_a);
    let (data_b, pub_b) = account(&dir_b);
    let a = start_library_daemon(&data_a);
    let a_events = a.events().expect("A is running");
    let peer_a = format!("{}@{}", key_hex(&pub_a), a.local_addr());
    // Restarted on the same address: one no other test takes meanwhile.
    let listen: SocketAddr = common::ports::free_port();

    let b = DaemonProcess::start(&data_b, listen, std::slice::from_ref(&peer_a));
    let b_addr = b.addr;
    a.add_peer(pub_b.clone(), b_addr)
        .expect("B becomes A's peer");

    // A long first stream, and kill -9 B as soon as anything of it was
    // acknowledged, so the kill lands mid-stream.
    let mut ids: Vec<MessageId> = (0..400)
        .map(|i| {
            a.send(pub_b.peer_id(), &format!("m{i}"))
                .expect("B is a peer")
        })
        .collect();
    let mut delivered = HashSet::new();
    collect_until(&a_events, |event| {
        if let Event::Delivered { id, .. } = event {
            delivered.insert(*id);
        }
        !delivered.is_empty()
    });
    drop(b); // SIGKILL
    // Acknowledgements that raced the kill still count as acknowledged.
    while let Ok(event) = a_events.try_recv() {
        if let Event::Delivered { id, .. } = event {
            delivered.insert(id);
        }
    }
    let acknowledged_before_kill = delivered.clone();
    // More while B is dead.
    ids.extend((400..450).map(|i| a.send(pub_b.peer_id(), &format!("m{i}")).expect("queued")));

    let b = DaemonProcess::start(&data_b, b_addr, &[peer_a]);
    collect_until(&a_events, |event| {
        if let Event::Delivered { id, .. } = event {
            delivered.insert(*id);
        }
        delivered.len() == ids.len()
    });

    // The CLI, through B's control socket.
    let (ok, peers, _) = cli(&data_b, &["peers"]);
    assert!(ok && peers.contains(&pub_a.peer_id().to_hex()) && peers.contains("online"));
    let (ok, status, _) = cli(&data_b, &["status"]);
    assert!(ok && status.contains("messages_received ") && status.contains("dropped_Forged 0"));
    let mut listen = spawn(
        kith(&data_b)
            .args(["listen", "--json"])
            .stdout(Stdio::piped()),
    )
    .expect("the kith binary runs");
    let listen_lines = line_channel(listen.stdout.take().expect("stdout was piped"));
    let (ok, sent_id, stderr) = cli(
        &data_b,
        &["send", "--to", &key_hex(&pub_a), "reply \"from\" the CLI"],
    );
    assert!(ok, "kith send failed: {stderr}");
    collect_until(&a_events, |event| {
        matches!(event, Event::MessageReceived { text, id, .. }
            if text == "reply \"from\" the CLI" && id.to_hex() == sent_id.trim())
    });
    // Nothing tells us when `kith listen` has subscribed, so A sends again
    // each second until one message shows up as a JSON line.
    let deadline = Instant::now() + WAIT;
    'listening: loop {
        assert!(Instant::now() < deadline, "kith listen printed no message");
        a.send(pub_b.peer_id(), "to the listener")
            .expect("B is a peer");
        while let Ok(line) = listen_lines.recv_timeout(Duration::from_secs(1)) {
            if line.contains(r#""event":"message""#) {
                assert!(line.contains(r#""text":"to the listener""#), "{line}");
                break 'listening;
            }
        }
    }

    // SIGTERM stops B cleanly; the listener ends with it.
    let term = spawn(Command::new("kill").args(["-TERM", &b.pid.to_string()]))
        .and_then(|mut kill| kill.wait())
        .expect("kill(1) runs");
    assert!(term.success());
    assert!(b.wait_exit().success(), "B exits cleanly on SIGTERM");
    let _ = listen.kill();
    let _ = listen.wait();
    assert!(!data_b.join("kith.sock").exists(), "the socket is removed");
    let (ok, _, stderr) = cli(&data_b, &["status"]);
    assert!(!ok && stderr.contains("no kith daemon is running for"));
    a.shutdown().expect("A stops cleanly");

    // Every message A saw acknowledged is in B's store, each exactly once.
    no_spawn_under_way();
    let account = Account::open(&data_b, PASS).expect("B's store reopens");
    let messages: Vec<_> = account
        .store
        .messages_in_room(&direct_room(pub_a.peer_id(), pub_b.peer_id()), None, 10_000)
        .expect("the room reads back")
        .into_iter()
        .filter(|m| m.sender == pub_a.peer_id())
        .collect();
    let stored: Vec<MessageId> = messages.iter().map(|m| m.id).collect();
    eprintln!(
        "acknowledged before kill -9: {}; stored: {}, readable: {}",
        acknowledged_before_kill.len(),
        messages.len(),
        messages.iter().filter(|m| !m.body.is_empty()).count()
    );
    // B's chain state committed with each batch of messages, so after the
    // kill it still reads everything A sealed before and after.
    assert!(
        messages.iter().all(|m| !m.body.is_empty()),
        "every stored message is readable"
    );
    let stored_set: HashSet<MessageId> = stored.iter().copied().collect();
    assert_eq!(stored.len(), stored_set.len(), "nothing stored twice");
    assert!(!acknowledged_before_kill.is_empty());
    for id in ids.iter().chain(&acknowledged_before_kill) {
        assert!(stored_set.contains(id), "acknowledged message {id:?} lost");
    }
}

/// A message nobody acknowledges enters the stored outbox (a second after
/// it was sent), so a sender killed with -9 then sends it again when it
/// starts.
#[test]
fn an_unacknowledged_message_is_in_the_outbox_after_kill_9() {
    let dir_a = TempDir::new("outbox-a");
    let dir_b = TempDir::new("outbox-b");
    let (data_a, _pub_a) = account(&dir_a);
    let (_data_b, pub_b) = account(&dir_b);
    // An address where nobody answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .expect("a free port");
    // Restarted on the same address: one no other test takes meanwhile.
    let listen: SocketAddr = common::ports::free_port();
    let a = DaemonProcess::start(&data_a, listen, &[format!("{}@{silent}", key_hex(&pub_b))]);
    ok(&data_a, &["send", "--to", &key_hex(&pub_b), "waits"]);
    // Once the history says "queued" the message is in the stored outbox
    // (the listing settles the store first); then kill -9. The delay
    // itself is tested in virtual time (tests/daemon_sim.rs).
    until(&data_a, &["history", &key_hex(&pub_b), "--json"], |out| {
        out.contains("\"queued\"")
    });
    drop(a);
    no_spawn_under_way();
    let account = Account::open(&data_a, PASS).expect("A's store reopens after kill -9");
    assert_eq!(
        account
            .store
            .outbox(&pub_b.peer_id())
            .expect("the outbox reads")
            .len(),
        1
    );
}

#[test]
fn kith_stop_ends_the_daemon_and_clients_without_one_get_a_sentence() {
    let dir = TempDir::new("stop");
    let (data, _) = account(&dir);
    let (ok, _, stderr) = cli(&data, &["peers"]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("no kith daemon is running for {}", data.display())),
        "{stderr}"
    );
    let daemon = DaemonProcess::start(&data, "127.0.0.1:0".parse().expect("literal"), &[]);
    let socket = data.join("kith.sock");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&socket)
            .expect("the control socket exists")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "only the owner may connect");
    let (ok, _, stderr) = cli(&data, &["stop"]);
    assert!(ok, "{stderr}");
    assert!(daemon.wait_exit().success());
    assert!(!socket.exists());
}

/// Runs a CLI command that must succeed; returns its stdout.
fn ok(data: &Path, args: &[&str]) -> String {
    let (success, stdout, stderr) = cli(data, args);
    assert!(success, "kith {args:?} failed: {stderr}");
    stdout
}

/// Polls a CLI command until its output satisfies `done` (bounded).
fn until(data: &Path, args: &[&str], done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = ok(data, args);
        if done(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "kith {args:?} never showed it:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_cli_runs_rooms_invitations_mute_block_and_requests() {
    let (dir_a, dir_b) = (TempDir::new("cli-a"), TempDir::new("cli-b"));
    let (data_a, pub_a) = account(&dir_a);
    let (data_b, pub_b) = account(&dir_b);
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("literal");
    // B knows nobody: A writes first, so A is a request at B.
    let b = DaemonProcess::start(&data_b, loopback, &[]);
    let _a = DaemonProcess::start(
        &data_a,
        loopback,
        &[format!("{}@{}", key_hex(&pub_b), b.addr)],
    );
    let (b_id, a_id) = (pub_b.peer_id().to_hex(), pub_a.peer_id().to_hex());
    ok(
        &data_a,
        &["send", "--to", &b_id[..12], "hello from a stranger"],
    );
    let peers = until(&data_b, &["peers"], |out| out.contains("request"));
    assert!(
        peers
            .lines()
            .any(|l| l.starts_with(&a_id) && l.split(' ').nth(6) == Some("request")),
        "{peers}"
    );
    assert!(ok(&data_b, &["accept", &a_id[..8]]).contains(&a_id));
    until(&data_b, &["peers"], |out| {
        out.lines()
            .any(|l| l.starts_with(&a_id) && l.split(' ').nth(6) == Some("contact"))
    });

    // A room with a name that needs quoting; B is invited and accepts.
    let room_id = ok(
        &data_a,
        &["room", "create", "the garage", "--member", &b_id],
    );
    let room_id = room_id.trim().to_owned();
    assert_eq!(room_id.len(), 64, "prints the room id: {room_id}");
    let rooms = until(&data_b, &["rooms"], |out| out.contains("invited"));
    assert!(rooms.contains("the garage"), "{rooms}");
    ok(&data_b, &["room", "accept", "the garage"]);
    until(&data_b, &["rooms"], |out| {
        out.lines()
            .any(|l| l.contains("group") && l.contains("the garage"))
    });
    ok(&data_a, &["send", "--to", "the garage", "in the room"]);

    // Mute, then unmute; block shows in `blocked` and survives nothing else.
    ok(&data_b, &["mute", "the garage", "--for", "1h"]);
    let rooms = ok(&data_b, &["rooms"]);
    assert!(rooms.contains("(muted for now)"), "{rooms}");
    let (bad, _, stderr) = cli(&data_b, &["mute", "the garage", "--for", "soon"]);
    assert!(!bad && stderr.contains("not a duration"), "{stderr}");
    ok(&data_b, &["unmute", "the garage"]);
    assert!(!ok(&data_b, &["rooms"]).contains("muted"));
    ok(&data_b, &["block", &a_id]);
    assert!(ok(&data_b, &["blocked"]).contains(&a_id));
    assert!(
        !ok(&data_b, &["peers"]).contains(&a_id),
        "a blocked peer is not listed"
    );
    ok(&data_b, &["unblock", &a_id]);
    assert!(!ok(&data_b, &["blocked"]).contains(&a_id), "unblocked");
    let (unknown, _, stderr) = cli(&data_b, &["send", "--to", "nobody-here", "x"]);
    assert!(!unknown && stderr.contains("not a peer"), "{stderr}");
}

/// Issue 18, item 1 with kill -9: a sender process killed again and again,
/// right after its sends were answered (stored on its side, perhaps not yet
/// acknowledged by the recipient), and restarted; most runs send nothing.
/// Every message reaches the recipient once, readable, and none is ever
/// rejected there.
#[test]
fn a_sender_killed_again_and_again_is_still_read_and_never_rejected() {
    let dir_a = TempDir::new("kill-sender-a");
    let dir_b = TempDir::new("kill-sender-b");
    let (data_a, pub_a) = account(&dir_a);
    let (data_b, pub_b) = account(&dir_b);
    let b = start_library_daemon(&data_b);
    let b_events = b.events().expect("B is running");
    let peer_b = format!("{}@{}", key_hex(&pub_b), b.local_addr());
    // Restarted on the same address: one no other test takes meanwhile.
    let listen: SocketAddr = common::ports::free_port();
    let mut a = DaemonProcess::start(&data_a, listen, std::slice::from_ref(&peer_b));
    let a_addr = a.addr;
    b.add_peer(pub_a.clone(), a_addr)
        .expect("A becomes B's peer");
    let to = key_hex(&pub_b);
    let mut sent: Vec<(MessageId, String)> = Vec::new();
    // Seventy idle runs in a row: at 64 positions skipped per start (before
    // the fix) enough to put the sender's chain past what a receiver
    // ratchets.
    for round in 0..80 {
        let count = match round {
            0..5 => 3,
            75.. => 1,
            _ => 0,
        };
        for k in 0..count {
            let text = format!("round {round} message {k}");
            let (ok, id, stderr) = cli(&data_a, &["send", "--to", &to, &text]);
            assert!(ok, "kith send failed: {stderr}");
            let id = MessageId::from_hex(id.trim()).expect("kith send prints the id");
            sent.push((id, text));
        }
        drop(a); // SIGKILL, right behind the sends.
        a = DaemonProcess::start(&data_a, a_addr, std::slice::from_ref(&peer_b));
    }
    let mut missing: HashSet<MessageId> = sent.iter().map(|(id, _)| *id).collect();
    let mut unreadable = 0;
    collect_until(&b_events, |event| {
        match event {
            Event::MessageReceived { id, .. } => {
                missing.remove(id);
            }
            Event::Undecryptable { .. } => unreadable += 1,
            _ => {}
        }
        missing.is_empty()
    });
    // Readable on arrival, not only later: the sender's chain did not run
    // ahead of what B ratchets (it did by 64 positions per start before).
    assert_eq!(unreadable, 0, "every message readable when it came");
    let status = b.status().expect("B answers");
    let rejected = status
        .counters()
        .into_iter()
        .find(|(name, _)| name == "dropped_EnvelopeRejected")
        .map_or(0, |(_, value)| value);
    assert_eq!(rejected, 0, "B rejected none of A's messages");
    drop(a);
    b.shutdown().expect("B stops cleanly");
    no_spawn_under_way();
    let account = Account::open(&data_b, PASS).expect("B's store reopens");
    let stored: Vec<_> = account
        .store
        .messages_in_room(&direct_room(pub_a.peer_id(), pub_b.peer_id()), None, 10_000)
        .expect("the room reads back")
        .into_iter()
        .filter(|m| m.sender == pub_a.peer_id())
        .collect();
    for (id, text) in &sent {
        let copies: Vec<_> = stored.iter().filter(|m| m.id == *id).collect();
        assert_eq!(copies.len(), 1, "{text:?} stored exactly once");
        assert_eq!(String::from_utf8_lossy(&copies[0].body), *text, "readable");
    }
}

/// Parses a `--json` output: exactly one JSON document.
fn json(data: &Path, args: &[&str]) -> serde_json::Value {
    let out = ok(data, args);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("kith {args:?}: {e}\n{out}"))
}

/// `kith history` pages back through a conversation (plain and JSON),
/// `kith read` clears the unread count shown by `kith rooms`, `kith listen
/// --since` replays what was stored after a cursor, and every listing's
/// `--json` is one JSON document.
#[test]
fn the_cli_pages_history_marks_read_and_speaks_json() {
    let (dir_a, dir_b) = (TempDir::new("hist-a"), TempDir::new("hist-b"));
    let (data_a, pub_a) = account(&dir_a);
    let (data_b, pub_b) = account(&dir_b);
    let (a_id, b_id) = (pub_a.peer_id().to_hex(), pub_b.peer_id().to_hex());
    // `id` opens the account, so it runs while no daemon holds it.
    let id = json(&data_b, &["id", "--json"]);
    assert_eq!(id["peer"], b_id.as_str());
    assert_eq!(id["public_key"], key_hex(&pub_b).as_str());
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("literal");
    let b = DaemonProcess::start(&data_b, loopback, &[]);
    let _a = DaemonProcess::start(
        &data_a,
        loopback,
        &[format!("{}@{}", key_hex(&pub_b), b.addr)],
    );
    for n in 0..120 {
        ok(&data_a, &["send", "--to", &b_id, &format!("line {n}")]);
    }
    let room = PeerId(direct_room(pub_a.peer_id(), pub_b.peer_id()).0).to_hex();
    let rooms = until(&data_b, &["rooms", "--json"], |out| {
        out.contains("\"unread\":120")
    });
    let rooms: serde_json::Value = serde_json::from_str(rooms.trim()).expect("JSON");
    let listed = &rooms["rooms"][0];
    assert_eq!(listed["room"], room.as_str());
    assert_eq!(listed["kind"], "direct");
    assert_eq!(listed["unread"], 120);

    // Plain: a header row, newest first, and how to get the next page.
    let page = ok(&data_b, &["history", &a_id[..10], "--limit", "50"]);
    let lines: Vec<&str> = page.lines().collect();
    assert!(lines[0].starts_with("CURSOR"), "{page}");
    assert!(lines[1].ends_with("line 119"), "{page}");
    assert!(lines[50].ends_with("line 70"), "{page}");
    assert!(lines[51].contains("--before"), "{page}");
    // JSON pages: every message once, newest first.
    let mut texts = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let mut args = vec!["history".to_owned(), a_id.clone(), "--json".to_owned()];
        args.extend(["--limit".to_owned(), "50".to_owned()]);
        if let Some(before) = before {
            args.extend(["--before".to_owned(), before.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let page = json(&data_b, &args);
        assert_eq!(page["room"], room.as_str());
        for message in page["messages"].as_array().expect("an array") {
            assert_eq!(message["author"], a_id.as_str());
            assert_eq!(message["ours"], false);
            assert!(message["time_ms"].as_u64().expect("ms") > 1_600_000_000_000);
            texts.push(message["text"].as_str().expect("readable").to_owned());
        }
        match page["next"].as_u64() {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    let want: Vec<String> = (0..120).rev().map(|n| format!("line {n}")).collect();
    assert_eq!(texts, want);
    // A's side: its own messages, delivered to 1 of 1.
    let mine = json(&data_a, &["history", &b_id, "--json", "--limit", "1"]);
    assert_eq!(mine["messages"][0]["ours"], true);
    until(
        &data_a,
        &["history", &b_id, "--json", "--limit", "1"],
        |out| out.contains("\"delivered\":1,") && out.contains("\"state\":\"stored\""),
    );

    // Read: the count drops to zero.
    let read = ok(&data_b, &["read", &a_id[..10]]);
    assert_eq!(read.trim(), "0 unread");
    let rooms = json(&data_b, &["rooms", "--json"]);
    assert_eq!(rooms["rooms"][0]["unread"], 0);
    let plain = ok(&data_b, &["rooms"]);
    assert!(plain.starts_with("ROOM"), "{plain}");
    let (bad, _, stderr) = cli(&data_b, &["read", &a_id, "--up-to", "999999999"]);
    assert!(!bad && stderr.contains("not a message"), "{stderr}");

    // Every listing speaks JSON.
    assert!(json(&data_b, &["peers", "--json"])["peers"][0]["peer"] == a_id.as_str());
    assert!(json(&data_b, &["status", "--json"])["counters"]["messages_received"] == 120);
    assert!(json(&data_b, &["discovery", "--json"])["interfaces"].is_array());
    assert_eq!(
        json(&data_b, &["blocked", "--json"])["blocked"],
        serde_json::json!([])
    );

    // Listen from a cursor: the 20 newest replayed, in order, then live.
    let page = json(&data_b, &["history", &a_id, "--json", "--limit", "21"]);
    let since = page["messages"][20]["cursor"].as_u64().expect("a cursor");
    let mut listen = spawn(
        kith(&data_b)
            .args(["listen", "--json", "--since", &since.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    )
    .expect("kith listen runs");
    let lines = line_channel(listen.stdout.take().expect("piped"));
    let mut replayed = Vec::new();
    loop {
        let line = lines.recv_timeout(WAIT).expect("a line");
        let event: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        match event["event"].as_str() {
            Some("message") => replayed.push(event["text"].as_str().expect("text").to_owned()),
            Some("caught_up") => break,
            _ => {}
        }
    }
    let want: Vec<String> = (100..120).map(|n| format!("line {n}")).collect();
    assert_eq!(replayed, want);
    ok(&data_a, &["send", "--to", &b_id, "live again"]);
    loop {
        let line = lines.recv_timeout(WAIT).expect("a line");
        let event: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        if event["event"] == "message" {
            assert_eq!(event["text"], "live again");
            assert!(event["cursor"].as_u64().expect("a cursor") > since);
            break;
        }
    }
    let _ = listen.kill();
    let _ = listen.wait();
}

/// `kith history <public key>` of a peer who is not a contact (a stranger
/// who wrote, then declined: blocked, not listed among peers, and after a
/// restart) shows the messages exchanged; so does the direct chat's id as
/// `kith rooms` lists it; a key nobody knows is a sentence, not an empty
/// chat.
#[test]
fn history_by_public_key_of_a_peer_who_is_not_a_contact() {
    let (dir_a, dir_b) = (TempDir::new("hist-key-a"), TempDir::new("hist-key-b"));
    let (data_a, pub_a) = account(&dir_a);
    let (data_b, pub_b) = account(&dir_b);
    let (a_key, b_key) = (key_hex(&pub_a), key_hex(&pub_b));
    let (a_id, b_id) = (pub_a.peer_id().to_hex(), pub_b.peer_id().to_hex());
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("literal");
    // B knows nobody: A is a stranger to B.
    let b = DaemonProcess::start(&data_b, loopback, &[]);
    let b_addr = b.addr;
    let _a = DaemonProcess::start(&data_a, loopback, &[format!("{b_key}@{b_addr}")]);
    ok(&data_a, &["send", "--to", &b_id, "hello from a stranger"]);
    let texts = |data: &Path, who: &str| -> Vec<String> {
        json(data, &["history", who, "--json"])["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| m["text"].as_str().expect("readable").to_owned())
            .collect()
    };
    until(&data_b, &["history", &a_key], |out| {
        out.contains("hello from a stranger")
    });
    assert_eq!(texts(&data_b, &a_key), ["hello from a stranger"]);
    assert_eq!(texts(&data_b, &a_id), texts(&data_b, &a_key));
    ok(&data_b, &["send", "--to", &a_key, "who is this?"]);
    until(&data_a, &["history", &b_key], |out| {
        out.contains("who is this?")
    });
    assert_eq!(
        texts(&data_a, &b_key),
        ["who is this?", "hello from a stranger"]
    );

    // Declined: blocked and no longer listed, its chat still readable.
    ok(&data_b, &["decline", &a_id]);
    assert!(!ok(&data_b, &["peers"]).contains(&a_id));
    let both = ["who is this?", "hello from a stranger"];
    assert_eq!(texts(&data_b, &a_key), both);
    // The direct chat's id, as `kith rooms` lists it, is the same chat.
    let rooms = json(&data_b, &["rooms", "--json"]);
    let chat = rooms["rooms"][0]["room"]
        .as_str()
        .expect("a room")
        .to_owned();
    assert_eq!(rooms["rooms"][0]["kind"], "direct");
    assert_eq!(texts(&data_b, &chat), both);
    // A key nobody here knows: a sentence.
    let stranger = "5a".repeat(32);
    let (found, _, stderr) = cli(&data_b, &["history", &stranger]);
    assert!(!found && stderr.contains("not a peer"), "{stderr}");

    // After a restart, the same.
    ok(&data_b, &["stop"]);
    assert!(b.wait_exit().success());
    let _b = DaemonProcess::start(&data_b, b_addr, &[]);
    assert_eq!(texts(&data_b, &a_key), both);
    assert_eq!(texts(&data_b, &chat), both);
}
