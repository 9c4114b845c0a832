//! A full disk under a real `kith daemon` process, end to end on
//! 127.0.0.1: the disk is a small tmpfs in a private mount namespace
//! (`tests/common/tmpfs.rs`), filled with a file and freed by deleting it,
//! nothing restarted in between. Where the namespace cannot be set up the
//! test says SKIPPED and passes.
//!
//! What a full disk does to a receiver: its journal is allocated once, so
//! it keeps taking (and acknowledging: they are durable there) messages
//! until the journal is full, though none can move into the database. Then
//! an append fails: the messages it held stay in the daemon's memory,
//! unacknowledged, and the sender keeps them queued. Once space is back
//! every one of them arrives, once, in order, and is reported delivered
//! once (before 0a881aa they were dropped and every retransmission refused
//! as a replay, so they stayed queued until the receiver restarted).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemons::{PASS, account, loopback, start};
use common::tmpfs::on_small_tmpfs;
use common::{TempDir, spawn};
use kith::account::Account;
use kith::daemon::{DaemonHandle, Delivery, Event};
use kith::proto::crypto::PublicIdentity;
use kith::proto::ids::{MessageId, PeerId, RoomId};
use kith::proto::node::direct_room;
use kith::store::KdfParams;

/// Room for a store, its 1 MiB journal and everything the tests send,
/// once the filler is gone.
const TMPFS: &str = "size=24m";
/// Every wait is bounded by this, and returns as soon as its condition
/// holds.
const WAIT: Duration = Duration::from_secs(60);
/// What a receiver logs when an append of received messages fails.
const APPEND_FAILED: &str = "could not store messages: disk full";
/// Large messages fill the receiver's 1 MiB journal in a few dozen (each
/// is in it twice: sealed for the store and as the envelope).
const BIG: usize = 30_000;
/// More than enough of them to fill the journal (45 × 60 KB > 2 MiB).
const MAX_PREFILL: usize = 45;
/// Small messages sent once the journal is full.
const HELD: usize = 20;

#[test]
fn a_receiver_on_a_full_disk_holds_messages_until_space_is_freed() {
    on_small_tmpfs(
        "a_receiver_on_a_full_disk_holds_messages_until_space_is_freed",
        TMPFS,
        receiver_disk_full,
    );
}

#[test]
fn a_receiver_given_space_back_bit_by_bit_delivers_everything_once() {
    on_small_tmpfs(
        "a_receiver_given_space_back_bit_by_bit_delivers_everything_once",
        TMPFS,
        receiver_disk_freed_gradually,
    );
}

#[test]
fn a_receiver_killed_while_holding_messages_on_a_full_disk_loses_none() {
    on_small_tmpfs(
        "a_receiver_killed_while_holding_messages_on_a_full_disk_loses_none",
        TMPFS,
        receiver_killed_while_full,
    );
}

#[test]
fn a_sender_on_a_full_disk_refuses_sends_with_a_sentence() {
    on_small_tmpfs(
        "a_sender_on_a_full_disk_refuses_sends_with_a_sentence",
        TMPFS,
        sender_disk_full,
    );
}

// ---------------------------------------------------------------------
// Processes, the CLI and the disk.

fn key_hex(public: &PublicIdentity) -> String {
    PeerId(public.to_bytes()).to_hex()
}

fn kith(data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kith"));
    command.arg("--data").arg(data).env("KITH_PASSPHRASE", PASS);
    command
}

/// Runs `kith ARGS`: (success, stdout, stderr).
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

/// Runs a `kith ... --json` command that must succeed; its document.
fn json(data: &Path, args: &[&str]) -> serde_json::Value {
    let (ok, out, err) = cli(data, args);
    assert!(ok, "kith {args:?} failed: {err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("kith {args:?}: {e}\n{out}"))
}

/// A counter of `kith status --json`.
fn counter(data: &Path, name: &str) -> u64 {
    json(data, &["status", "--json"])["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("kith status has no counter {name}"))
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

/// A `kith daemon` child process; its stderr is kept to be searched.
/// Killed (SIGKILL) if still running when dropped, so a failing test
/// leaves nothing behind.
struct DaemonProcess {
    child: Option<Child>,
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl DaemonProcess {
    /// Starts it and waits for its address; `Err(stderr)` if it exits
    /// first.
    fn try_start(data: &Path, listen: SocketAddr, peers: &[String]) -> Result<Self, String> {
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
                .stderr(Stdio::piped()),
        )
        .expect("the kith binary runs");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let errors = line_channel(child.stderr.take().expect("stderr was piped"));
        let kept = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in errors {
                kept.lock().expect("not poisoned").push(line);
            }
        });
        let lines = line_channel(child.stdout.take().expect("stdout was piped"));
        let deadline = Instant::now() + WAIT;
        loop {
            match lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("listening") {
                        let addr = addr.trim().parse().expect("a socket address");
                        return Ok(DaemonProcess {
                            child: Some(child),
                            addr,
                            stderr,
                        });
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().expect("the child can be waited for");
                    // The stderr thread ends with the process.
                    std::thread::sleep(Duration::from_millis(100));
                    let text = stderr.lock().expect("not poisoned").join("\n");
                    return Err(format!("{status}: {text}"));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    assert!(Instant::now() < deadline, "the daemon never said listening");
                }
            }
        }
    }

    fn start(data: &Path, listen: SocketAddr, peers: &[String]) -> Self {
        Self::try_start(data, listen, peers)
            .unwrap_or_else(|error| panic!("the daemon did not start: {error}"))
    }

    /// Whether it logged a line containing `text`.
    fn logged(&self, text: &str) -> bool {
        self.stderr
            .lock()
            .expect("not poisoned")
            .iter()
            .any(|line| line.contains(text))
    }

    fn log(&self) -> String {
        self.stderr.lock().expect("not poisoned").join("\n")
    }

    /// Still running (it did not exit, or panic, on its own).
    fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("running");
        assert!(
            child.try_wait().expect("the child can be polled").is_none(),
            "the daemon exited:\n{}",
            self.log()
        );
    }

    /// Stops it with `kith stop`; its exit status.
    fn stop(mut self, data: &Path) -> ExitStatus {
        let (ok, _, err) = cli(data, &["stop"]);
        assert!(ok, "kith stop: {err}");
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = child.try_wait().expect("the child can be polled") {
                return status;
            }
            assert!(Instant::now() < deadline, "the daemon did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("the daemon can be killed");
            let _ = child.wait();
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `kith listen --json --since 0` on a daemon: everything it stored, then
/// every message as it is reported, in order.
struct Listener {
    child: Child,
    lines: Receiver<String>,
    /// (id, text) of every message event so far, in order.
    messages: Vec<(String, String)>,
}

impl Listener {
    fn start(data: &Path) -> Self {
        let mut child = spawn(
            kith(data)
                .args(["listen", "--json", "--since", "0"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        )
        .expect("kith listen runs");
        let lines = line_channel(child.stdout.take().expect("stdout was piped"));
        Listener {
            child,
            lines,
            messages: Vec::new(),
        }
    }

    /// Reads what it printed until now.
    fn pump(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            let event: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if event["event"] == "message" {
                self.messages.push((
                    event["id"].as_str().expect("an id").to_owned(),
                    event["text"].as_str().expect("a text").to_owned(),
                ));
            }
        }
    }

    /// Waits until `done` holds for the messages printed so far.
    #[track_caller]
    fn wait(&mut self, what: &str, done: impl Fn(&[(String, String)]) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            self.pump();
            if done(&self.messages) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never: {what}; listened: {:?}",
                self.texts()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn texts(&self) -> Vec<String> {
        self.messages.iter().map(|(_, text)| short(text)).collect()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A message's text as the assertions print it (the large ones are long).
fn short(text: &str) -> String {
    text.chars().take(12).collect()
}

/// Fills the file system holding `dir` with one file until it reports "no
/// space left"; returns the file, to be removed to give the space back.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("the filler is created");
    let chunk = vec![0xa5u8; 64 * 1024];
    let mut len = chunk.len();
    loop {
        match file.write(&chunk[..len]) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
                if len == 1 {
                    break;
                }
                len /= 2;
            }
            Err(e) => panic!("filling the tmpfs: {e}"),
        }
    }
    file.sync_all().expect("the filler is written");
    path
}

/// Polls `check` until it holds; panics after [`WAIT`].
#[track_caller]
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "never within {WAIT:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------
// The sender: an in-process daemon whose events are counted.

/// An in-process sender and how often each of its messages was reported
/// delivered.
struct Sender {
    handle: DaemonHandle,
    events: Receiver<Event>,
    delivered: HashMap<MessageId, usize>,
    to: PeerId,
    room: RoomId,
}

impl Sender {
    fn new(handle: DaemonHandle, to: PeerId) -> Self {
        let events = handle.events().expect("the sender runs");
        let room = direct_room(handle.peer_id(), to);
        Sender {
            handle,
            events,
            delivered: HashMap::new(),
            to,
            room,
        }
    }

    fn send(&self, text: &str) -> MessageId {
        self.handle
            .send(self.to, text)
            .expect("the sender's disk is fine")
    }

    fn pump(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            if let Event::Delivered { id, .. } = event {
                *self.delivered.entry(id).or_default() += 1;
            }
        }
    }

    /// How often `id` was reported delivered so far.
    fn delivered(&mut self, id: &MessageId) -> usize {
        self.pump();
        self.delivered.get(id).copied().unwrap_or(0)
    }

    /// Waits until every one of `ids` was reported delivered.
    #[track_caller]
    fn wait_delivered(&mut self, what: &str, ids: &[MessageId]) {
        eventually(what, || ids.iter().all(|id| self.delivered(id) > 0));
    }

    /// How far each of `ids` got, as the sender's history says.
    fn states(&self, ids: &[MessageId]) -> Vec<Option<Delivery>> {
        let page = self
            .handle
            .history(self.room, None, 10_000)
            .expect("the sender's history reads");
        ids.iter()
            .map(|id| {
                page.rows
                    .iter()
                    .find(|row| row.id == *id)
                    .and_then(|row| row.deliveries.first().map(|(_, d)| *d))
            })
            .collect()
    }
}

/// A large message, numbered.
fn big(n: usize) -> String {
    format!("big {n:02} {}", "z".repeat(BIG))
}

fn held(n: usize) -> String {
    format!("held {n:02}")
}

/// Sends large messages to the receiver (on its full disk) one at a time,
/// each until it is delivered, until the receiver logs that an append of
/// received messages failed: its journal is full. Returns them all (the
/// last ones not delivered: held by the receiver).
fn fill_the_journal(a: &mut Sender, b: &DaemonProcess) -> Vec<(MessageId, String)> {
    let mut sent = Vec::new();
    for n in 0..MAX_PREFILL {
        let text = big(n);
        let id = a.send(&text);
        sent.push((id, text));
        eventually(
            "a large message delivered, or refused by a full journal",
            || a.delivered(&id) > 0 || b.logged(APPEND_FAILED),
        );
        if b.logged(APPEND_FAILED) {
            println!(
                "figure: journal full after {} large messages ({} delivered)",
                sent.len(),
                sent.iter().filter(|(id, _)| a.delivered(id) > 0).count()
            );
            return sent;
        }
    }
    panic!(
        "{MAX_PREFILL} large messages and the receiver never failed an append:\n{}",
        b.log()
    );
}

/// Accounts and daemons: A (the sender, in this process, off the tmpfs)
/// and B (a `kith daemon` process whose data is in `dir`, on the tmpfs).
struct Pair {
    _dir_a: TempDir,
    a: Sender,
    b: DaemonProcess,
    data_b: PathBuf,
    peer_a: String,
    pub_a: PublicIdentity,
}

fn pair(dir: &Path, name: &str) -> Pair {
    let (dir_a, pub_a) = account(name);
    let data_b = dir.join("data");
    let pub_b = Account::create(&data_b, PASS, KdfParams::insecure_fast_for_tests())
        .expect("B's account fits on the tmpfs")
        .identity
        .public();
    let a = start(&dir_a, loopback(), Vec::new());
    let peer_a = format!("{}@{}", key_hex(&pub_a), a.local_addr());
    let b = DaemonProcess::start(&data_b, loopback(), std::slice::from_ref(&peer_a));
    a.add_peer(pub_b.clone(), b.addr).expect("B is A's peer");
    Pair {
        _dir_a: dir_a,
        a: Sender::new(a, pub_b.peer_id()),
        b,
        data_b,
        peer_a,
        pub_a,
    }
}

/// The messages from `from` in B's history, oldest first: (id, text).
fn stored_from(data: &Path, from: &PublicIdentity) -> Vec<(String, String)> {
    let from = from.peer_id().to_hex();
    let page = json(data, &["history", &from, "--json", "--limit", "10000"]);
    let mut rows: Vec<(String, String)> = page["messages"]
        .as_array()
        .expect("an array")
        .iter()
        .filter(|m| m["author"] == from.as_str())
        .map(|m| {
            (
                m["id"].as_str().expect("an id").to_owned(),
                m["text"].as_str().expect("readable").to_owned(),
            )
        })
        .collect();
    rows.reverse();
    rows
}

/// Asserts `got` is exactly `want`, in order (each once).
#[track_caller]
fn assert_same(what: &str, got: &[(String, String)], want: &[(MessageId, String)]) {
    let got_ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    let want_ids: Vec<String> = want.iter().map(|(id, _)| id.to_hex()).collect();
    assert_eq!(
        got_ids,
        want_ids,
        "{what}: got {:?}, want {:?}",
        got.iter().map(|(_, t)| short(t)).collect::<Vec<_>>(),
        want.iter().map(|(_, t)| short(t)).collect::<Vec<_>>()
    );
    for ((_, got), (_, want)) in got.iter().zip(want) {
        assert_eq!(got, want, "{what}: a text changed");
    }
}

/// The receiver's side while its disk is full and it holds messages: A
/// sends `HELD` small messages after the large ones filled B's journal;
/// none is delivered, all stay queued at A, B reports none, counts store
/// errors, refuses its own sends with a sentence and keeps running.
/// Returns every message A sent since the warm-up, in order.
fn hold_messages(p: &mut Pair, listener: Option<&mut Listener>) -> Vec<(MessageId, String)> {
    let mut all = fill_the_journal(&mut p.a, &p.b);
    let held: Vec<(MessageId, String)> = (0..HELD).map(|n| (p.a.send(&held(n)), held(n))).collect();
    all.extend(held.iter().cloned());
    let waiting: Vec<MessageId> = all
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| p.a.delivered(id) == 0)
        .collect();
    assert!(
        waiting.len() > HELD,
        "the large message that failed waits too"
    );
    // Unacknowledged for a second or more: they went into A's outbox.
    eventually("A shows the held messages queued", || {
        p.a.states(&waiting)
            .iter()
            .all(|state| *state == Some(Delivery::Queued))
    });
    for id in &waiting {
        assert_eq!(p.a.delivered(id), 0, "reported delivered while B held it");
    }
    let errors = counter(&p.data_b, "store_errors");
    assert!(errors > 0, "B's status shows no store error");
    println!(
        "figure: {} messages held by B, {errors} store errors in its status",
        waiting.len()
    );
    // What a user of B sees meanwhile: the history comes from the
    // database, which cannot take what the journal holds.
    let (read, out, err) = cli(
        &p.data_b,
        &[
            "history",
            &p.pub_a.peer_id().to_hex(),
            "--json",
            "--limit",
            "1000",
        ],
    );
    let shown = serde_json::from_str::<serde_json::Value>(out.trim())
        .ok()
        .and_then(|page| page["messages"].as_array().map(Vec::len));
    println!(
        "figure: kith history on B while full: {}",
        if read {
            format!("answered, {shown:?} messages of {} sent", all.len() + 1)
        } else {
            err.trim().to_owned()
        }
    );
    let (sent, _, why) = cli(&p.data_b, &["send", "--to", &key_hex(&p.pub_a), "no"]);
    assert!(!sent && why.contains("disk full"), "B's send: {why}");
    if let Some(listener) = listener {
        listener.pump();
        let reported: Vec<&str> = listener
            .messages
            .iter()
            .map(|(id, _)| id.as_str())
            .collect();
        for id in &waiting {
            assert!(
                !reported.contains(&id.to_hex().as_str()),
                "B reported a message it could not store"
            );
        }
    }
    p.b.assert_running();
    all
}

// ---------------------------------------------------------------------
// The tests.

/// B's disk is full; A sends until B's journal is full, then more: none of
/// those is delivered. The filler goes, nothing restarts: every message
/// arrives once, in order, and is reported delivered once.
fn receiver_disk_full(dir: &Path) {
    receiver_freed(dir, "ddf-recv", |filler| {
        std::fs::remove_file(filler).expect("the filler goes");
    });
}

/// As [`receiver_disk_full`], the space given back 128 KiB at a time, so
/// settling and appending fail for a while after freeing started, and
/// the first that succeed do so on a nearly full disk.
fn receiver_disk_freed_gradually(dir: &Path) {
    receiver_freed(dir, "ddf-grad", |filler| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(filler)
            .expect("the filler opens");
        let mut len = file.metadata().expect("the filler is there").len();
        while len > 0 {
            len = len.saturating_sub(128 * 1024);
            file.set_len(len).expect("the filler shrinks");
            std::thread::sleep(Duration::from_millis(100));
        }
        std::fs::remove_file(filler).expect("the filler goes");
    });
}

fn receiver_freed(dir: &Path, name: &str, free: fn(&Path)) {
    let mut p = pair(dir, name);
    let warm = p.a.send("warm-up");
    p.a.wait_delivered("the warm-up delivered", &[warm]);
    let mut listener = Listener::start(&p.data_b);
    listener.wait("the warm-up replayed", |m| m.len() == 1);

    let filler = fill(dir);
    let sent = hold_messages(&mut p, Some(&mut listener));

    free(&filler);
    let ids: Vec<MessageId> = sent.iter().map(|(id, _)| *id).collect();
    let deadline = Instant::now() + WAIT;
    while !ids.iter().all(|id| p.a.delivered(id) > 0) {
        if Instant::now() > deadline {
            listener.pump();
            panic!(
                "not every message delivered {WAIT:?} after space came back; A: {:?}\nB reported: {:?}\nB's log:\n{}",
                p.a.states(&ids),
                listener.texts(),
                p.b.log()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    listener.wait("B reports every message", |m| m.len() > sent.len());
    let mut want = vec![(warm, "warm-up".to_owned())];
    want.extend(sent.iter().cloned());
    // A second's grace for anything reported twice.
    std::thread::sleep(Duration::from_secs(1));
    listener.pump();
    assert_same("B's reports", &listener.messages, &want);
    assert_same("B's history", &stored_from(&p.data_b, &p.pub_a), &want);
    for (id, text) in &sent {
        assert_eq!(
            p.a.delivered(id),
            1,
            "{} reported delivered once",
            short(text)
        );
    }
    assert!(
        p.a.states(&ids)
            .iter()
            .all(|s| *s == Some(Delivery::Stored)),
        "A shows every message stored"
    );
    let log = p.b.log();
    let status = p.b.stop(&p.data_b);
    assert!(status.success(), "B stops cleanly: {status}\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    p.a.handle.shutdown().expect("A stops");
}

/// B's disk is full and B holds messages in memory; B is killed (SIGKILL).
/// Started again while the disk is still full it refuses with a sentence;
/// started after the filler went it gets every message, once, in order.
fn receiver_killed_while_full(dir: &Path) {
    let mut p = pair(dir, "ddf-kill");
    let warm = p.a.send("warm-up");
    p.a.wait_delivered("the warm-up delivered", &[warm]);
    let filler = fill(dir);
    let sent = hold_messages(&mut p, None);
    let delivered_before: Vec<MessageId> = sent
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| p.a.delivered(id) > 0)
        .collect();
    let addr = p.b.addr;
    p.b.kill();

    // Still full: the store cannot settle what its journal holds.
    match DaemonProcess::try_start(&p.data_b, addr, std::slice::from_ref(&p.peer_a)) {
        Err(error) => {
            assert!(error.contains("disk full"), "{error}");
            assert!(!error.contains("panicked"), "{error}");
            println!("figure: restart on a full disk: {error}");
        }
        Ok(mut b) => {
            // Started anyway (its journal did not need the database): it
            // holds or takes what comes, as before.
            b.kill();
            println!("figure: restart on a full disk: the daemon started");
        }
    }

    std::fs::remove_file(&filler).expect("the filler goes");
    p.b = DaemonProcess::start(&p.data_b, addr, std::slice::from_ref(&p.peer_a));
    let ids: Vec<MessageId> = sent.iter().map(|(id, _)| *id).collect();
    p.a.wait_delivered("every message delivered after the restart", &ids);
    let mut listener = Listener::start(&p.data_b);
    let mut want = vec![(warm, "warm-up".to_owned())];
    want.extend(sent.iter().cloned());
    listener.wait("B reports every message", |m| m.len() >= want.len());
    std::thread::sleep(Duration::from_secs(1));
    listener.pump();
    assert_same("B's reports after the restart", &listener.messages, &want);
    assert_same("B's history", &stored_from(&p.data_b, &p.pub_a), &want);
    for (id, text) in &sent {
        assert_eq!(
            p.a.delivered(id),
            1,
            "{} reported delivered once",
            short(text)
        );
    }
    println!(
        "figure: {} delivered before the kill, {} after",
        delivered_before.len(),
        sent.len() - delivered_before.len()
    );
    let log = p.b.log();
    let status = p.b.stop(&p.data_b);
    assert!(status.success(), "B stops cleanly: {status}\n{log}");
    p.a.handle.shutdown().expect("A stops");
}

/// A's (the sender's) disk is full: its sends are refused with a sentence
/// once it knows, and nothing it refused is ever sent or stored; what it
/// accepted reaches B once; after the filler went it sends again.
fn sender_disk_full(dir: &Path) {
    let data_a = dir.join("data");
    let pub_a = Account::create(&data_a, PASS, KdfParams::insecure_fast_for_tests())
        .expect("A's account fits on the tmpfs")
        .identity
        .public();
    let (dir_b, pub_b) = account("ddf-sender-b");
    let b = start(&dir_b, loopback(), Vec::new());
    let b_events = b.events().expect("B runs");
    let mut a = DaemonProcess::start(
        &data_a,
        loopback(),
        &[format!("{}@{}", key_hex(&pub_b), b.local_addr())],
    );
    b.add_peer(pub_a.clone(), a.addr).expect("A is B's peer");
    let to = pub_b.peer_id().to_hex();
    let mut received: Vec<(MessageId, String)> = Vec::new();
    let pump = |received: &mut Vec<(MessageId, String)>| {
        while let Ok(event) = b_events.try_recv() {
            if let Event::MessageReceived { id, text, .. } = event {
                received.push((id, text));
            }
        }
    };
    let (ok, _, err) = cli(&data_a, &["send", "--to", &to, "warm-up"]);
    assert!(ok, "{err}");
    eventually("the warm-up arrives", || {
        pump(&mut received);
        !received.is_empty()
    });

    let filler = fill(dir);
    let mut accepted: Vec<(MessageId, String)> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let mut why = String::new();
    for n in 0..50 {
        let text = format!("while full {n:02}");
        let (ok, out, err) = cli(&data_a, &["send", "--to", &to, &text]);
        if ok {
            let id = MessageId::from_hex(out.trim()).expect("kith send prints the id");
            accepted.push((id, text));
        } else {
            why = err;
            refused.push(text);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!refused.is_empty(), "50 sends on a full disk, none refused");
    assert!(why.contains("disk full"), "the refusal says why: {why}");
    println!(
        "figure: {} sends accepted on the full disk before the first refusal: {}",
        accepted.len(),
        why.trim()
    );
    // Refused again while it is full.
    for n in 0..3 {
        let text = format!("refused {n}");
        let (ok, _, err) = cli(&data_a, &["send", "--to", &to, &text]);
        assert!(!ok && err.contains("disk full"), "{err}");
        refused.push(text);
    }
    assert!(
        counter(&data_a, "store_errors") > 0,
        "A's status shows store errors"
    );
    a.assert_running();

    std::fs::remove_file(&filler).expect("the filler goes");
    let deadline = Instant::now() + WAIT;
    let after = loop {
        let (ok, out, err) = cli(&data_a, &["send", "--to", &to, "after"]);
        if ok {
            break MessageId::from_hex(out.trim()).expect("kith send prints the id");
        }
        assert!(err.contains("disk full"), "{err}");
        assert!(Instant::now() < deadline, "A never sends again: {err}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut want = vec![];
    want.extend(accepted.iter().cloned());
    want.push((after, "after".to_owned()));
    eventually("B gets what A accepted", || {
        pump(&mut received);
        received.iter().any(|(id, _)| *id == after)
    });
    std::thread::sleep(Duration::from_secs(1));
    pump(&mut received);
    let got: Vec<(String, String)> = received[1..]
        .iter()
        .map(|(id, text)| (id.to_hex(), text.clone()))
        .collect();
    assert_same("B's messages from A", &got, &want);
    for text in &refused {
        assert!(
            !received.iter().any(|(_, t)| t == text),
            "a refused send arrived: {text}"
        );
    }
    // A's history: every accepted message once, stored at B; no refused one.
    let page = json(&data_a, &["history", &to, "--json", "--limit", "1000"]);
    let rows = page["messages"].as_array().expect("an array");
    for (id, text) in &want {
        let copies: Vec<_> = rows
            .iter()
            .filter(|m| m["id"] == id.to_hex().as_str())
            .collect();
        assert_eq!(copies.len(), 1, "{text} once in A's history");
    }
    for text in &refused {
        assert!(
            !rows.iter().any(|m| m["text"] == text.as_str()),
            "a refused send is in A's history: {text}"
        );
    }
    eventually("A shows what it sent stored at B", || {
        let page = json(&data_a, &["history", &to, "--json", "--limit", "1000"]);
        page["messages"]
            .as_array()
            .expect("an array")
            .iter()
            .filter(|m| m["ours"] == true)
            .all(|m| m["delivered"] == 1)
    });
    let log = a.log();
    let status = a.stop(&data_a);
    assert!(status.success(), "A stops cleanly: {status}\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    b.shutdown().expect("B stops");
}
