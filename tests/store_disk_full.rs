//! A full disk under the store: errors with a sentence, never a crash, and
//! nothing acknowledged is lost.
//!
//! Each test re-executes its own binary under `unshare -m` (`unshare -rm`
//! when not root: a new user + mount namespace) and there mounts a small
//! tmpfs on a temporary directory, so the disk can be filled without
//! touching the machine's real file systems (the namespace's mounts are
//! private and vanish with the child). The child, with `KITH_MNT_NS_CHILD`
//! set, checks that it really is in another mount namespace before it
//! mounts anything. Where `unshare` or `mount` is missing or not permitted,
//! the test prints `SKIPPED disk-full test: <reason>` and passes; it never
//! skips silently. A child killed by a signal (the SIGBUS this guards
//! against) fails the test with the signal's number.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::TempDir;
use common::tmpfs::on_small_tmpfs;
use kith::account::Account;
use kith::daemon::{self, DaemonConfig, DaemonError, DaemonHandle, Event, PeerAddr};
use kith::net::NetConfig;
use kith::proto::ids::{MessageId, RoomId};
use kith::proto::node::direct_room;
use kith::store::{JOURNAL_BYTES, KdfParams, Message, Store, StoreError, journal_path};

const PASS: &str = "disk full";
/// The tmpfs's size: room for a store, its 1 MiB journal, and the journal
/// settled into the database (its pages go through the WAL first).
const TMPFS: &str = "size=8m";

#[test]
fn creating_a_store_without_room_for_its_journal_fails_with_a_sentence() {
    on_small_tmpfs(
        "creating_a_store_without_room_for_its_journal_fails_with_a_sentence",
        TMPFS,
        no_room_for_the_journal,
    );
}

#[test]
fn a_store_whose_disk_fills_keeps_every_acknowledged_message() {
    on_small_tmpfs(
        "a_store_whose_disk_fills_keeps_every_acknowledged_message",
        TMPFS,
        disk_fills_under_an_open_store,
    );
}

#[test]
fn a_daemon_whose_disk_fills_keeps_running_and_refuses_sends() {
    on_small_tmpfs(
        "a_daemon_whose_disk_fills_keeps_running_and_refuses_sends",
        TMPFS,
        daemon_on_a_full_disk,
    );
}

/// Fills the file system holding `dir` with one file until it reports "no
/// space left"; returns the file, to be removed to give the space back.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("the filler is created");
    let chunk = vec![0xa5u8; 64 * 1024];
    let mut chunk_len = chunk.len();
    loop {
        match file.write(&chunk[..chunk_len]) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
                // Then byte by byte-ish: no room for a whole chunk may still
                // leave room for a smaller one.
                if chunk_len == 1 {
                    break;
                }
                chunk_len /= 2;
            }
            Err(e) => panic!("filling the tmpfs: {e}"),
        }
    }
    file.sync_all().expect("the filler is written");
    path
}

/// Free bytes on the file system holding `dir`.
fn free_bytes(dir: &Path) -> u64 {
    let output = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .expect("df runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .and_then(|line| line.trim().parse().ok())
        .expect("df prints the free bytes")
}

fn messages(room: RoomId, from: u64, count: u64) -> Vec<Message> {
    (from..from + count)
        .map(|n| common::message(room, n, 1_000 + n, &[b'x'; 1000]))
        .collect()
}

fn assert_disk_full<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) -> String {
    match result {
        Err(error @ StoreError::DiskFull(_)) => {
            let sentence = error.to_string();
            assert!(sentence.starts_with("disk full: "), "{sentence}");
            println!("{what}: {sentence}");
            sentence
        }
        other => panic!("{what}: expected a disk-full error, got {other:?}"),
    }
}

/// Less free space than the journal needs: creating the store fails with a
/// sentence naming the journal, instead of a store that dies of SIGBUS at
/// its first large write; with the space back it is created.
fn no_room_for_the_journal(dir: &Path) {
    let db = dir.join("kith.db");
    let filler = fill(dir);
    // Leave room for the key file and the database, not for the journal.
    let keep = std::fs::metadata(&filler).expect("filler").len() - 512 * 1024;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .and_then(|f| f.set_len(keep))
        .expect("the filler shrinks");
    let free = free_bytes(dir);
    assert!(free < JOURNAL_BYTES as u64, "{free} bytes free");
    let sentence = assert_disk_full(
        Store::create(&db, PASS, KdfParams::insecure_fast_for_tests()),
        "create on a nearly full disk",
    );
    assert!(
        sentence.contains("journal") && sentence.contains(&journal_path(&db).display().to_string()),
        "{sentence}"
    );
    std::fs::remove_file(&filler).expect("the filler goes");
    // What the failed attempt left is cleared by hand; a fresh store fits.
    let fresh = dir.join("fresh.db");
    let mut store = Store::create(&fresh, PASS, KdfParams::insecure_fast_for_tests())
        .expect("with the space back a store is created");
    store
        .insert_messages(&messages(RoomId([3; 32]), 0, 10))
        .expect("and written to");
}

/// The disk fills while a store is open: journal appends never crash, the
/// first one that cannot be kept fails with a sentence, settling fails
/// while the disk is full and works once space is back, and every message
/// whose append succeeded (what a daemon acknowledges) is there after a
/// reopen.
fn disk_fills_under_an_open_store(dir: &Path) {
    let db = dir.join("kith.db");
    let room = RoomId([9; 32]);
    let mut store = Store::create(&db, PASS, KdfParams::insecure_fast_for_tests())
        .expect("a store on the empty tmpfs");
    store
        .insert_messages(&messages(room, 0, 10))
        .expect("written while there is space");
    let filler = fill(dir);
    println!("figure: {} bytes free after filling", free_bytes(dir));

    // About 40 KiB a record: the 1 MiB journal fills after ~25.
    const BATCH: u64 = 20;
    let mut acknowledged = 10;
    let mut refused = None;
    for _ in 0..200 {
        match store.journal_messages_and_chains(&messages(room, acknowledged, BATCH), vec![]) {
            Ok(()) => acknowledged += BATCH,
            Err(error) => {
                refused = Some(error);
                break;
            }
        }
    }
    let refused = refused.expect("a full journal on a full disk refuses an append");
    assert_disk_full(Err::<(), _>(refused), "append on a full disk");
    println!("figure: {acknowledged} messages acknowledged with the disk full");
    assert!(acknowledged > 10, "the journal took messages while full");
    assert_disk_full(store.settle(), "settle on a full disk");
    // Still usable for reading what is in the database.
    assert_eq!(
        store
            .messages_in_room(&room, None, 100_000)
            .expect("reads work")
            .len(),
        10
    );

    // A restart while the disk is still full fails with a sentence too, and
    // loses nothing.
    drop(store);
    if let Err(error) = Store::open(&db, PASS) {
        assert_disk_full(Err::<(), _>(error), "reopen on a full disk");
    }

    std::fs::remove_file(&filler).expect("the filler goes");
    let mut store = Store::open(&db, PASS).expect("with the space back the store opens");
    let stored = store.messages_in_room(&room, None, 100_000).expect("reads");
    assert_eq!(
        stored.len() as u64,
        acknowledged,
        "every acknowledged message"
    );
    for message in messages(room, 0, acknowledged) {
        assert!(
            store.has_message(&message.key()).expect("reads"),
            "message {} was acknowledged and is lost",
            message.sender_seq
        );
    }
    store
        .journal_messages_and_chains(&messages(room, acknowledged, BATCH), vec![])
        .expect("appends work again");
    store.settle().expect("settles again");
    assert_eq!(
        store.integrity_check().expect("checks"),
        Vec::<String>::new()
    );
}

/// Bounded waits of the daemon test: generous, the machine may be loaded.
const WAIT: Duration = Duration::from_secs(60);

fn start_daemon(data: &Path, peers: Vec<PeerAddr>) -> DaemonHandle {
    let config = DaemonConfig {
        net: NetConfig::loopback(),
        peers,
        ..DaemonConfig::default()
    };
    daemon::start(data, PASS, config).expect("the daemon starts")
}

/// Waits for `count` deliveries to `to` among `ids`; panics after [`WAIT`].
fn wait_delivered(events: &Receiver<Event>, ids: &mut HashSet<MessageId>) {
    let deadline = Instant::now() + WAIT;
    while !ids.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(Event::Delivered { id, .. }) => {
                ids.remove(&id);
            }
            Ok(_) => {}
            Err(e) => panic!("{} messages not delivered within {WAIT:?}: {e}", ids.len()),
        }
    }
}

/// B's data directory is on the tmpfs. The disk fills while B runs: B
/// keeps acknowledging A's messages into its (fully allocated) journal,
/// cannot settle them, counts the failures, refuses its own sends with a
/// sentence before they go out, and keeps answering; once space is back
/// it settles on its own and sends again, and every message it
/// acknowledged is in its store.
fn daemon_on_a_full_disk(dir: &Path) {
    let data_b = dir.join("data");
    let dir_a = TempDir::new("disk-full-a");
    let data_a = dir_a.path().join("data");
    let kdf = KdfParams::insecure_fast_for_tests;
    let pub_a = Account::create(&data_a, PASS, kdf())
        .expect("A")
        .identity
        .public();
    let pub_b = Account::create(&data_b, PASS, kdf())
        .expect("B")
        .identity
        .public();
    let a = start_daemon(&data_a, Vec::new());
    let b = start_daemon(
        &data_b,
        vec![PeerAddr {
            public: pub_a.clone(),
            addr: a.local_addr(),
        }],
    );
    a.add_peer(pub_b.clone(), b.local_addr())
        .expect("B is A's peer");
    let a_events = a.events().expect("A runs");
    let text = |n: usize| format!("{n:04} {}", "y".repeat(1000));

    let mut ids: HashSet<MessageId> = (0..5)
        .map(|n| a.send(pub_b.peer_id(), &text(n)).expect("sent"))
        .collect();
    wait_delivered(&a_events, &mut ids);

    let filler = fill(dir);
    // B acknowledges them into its journal (what "delivered" means), while
    // it cannot move them into its database.
    const SENT_FULL: usize = 40;
    let mut ids: HashSet<MessageId> = (5..5 + SENT_FULL)
        .map(|n| a.send(pub_b.peer_id(), &text(n)).expect("sent"))
        .collect();
    wait_delivered(&a_events, &mut ids);
    let deadline = Instant::now() + WAIT;
    while b.status().expect("B keeps running").store_errors == 0 {
        assert!(Instant::now() < deadline, "B never noticed the full disk");
        std::thread::sleep(Duration::from_millis(5));
    }
    match b.send(pub_a.peer_id(), "while the disk is full") {
        Err(error @ DaemonError::NotSent(_)) => {
            let sentence = error.to_string();
            assert!(
                sentence.starts_with("the message was not sent: disk full: "),
                "{sentence}"
            );
            println!("send on a full disk: {sentence}");
        }
        other => panic!("B's send on a full disk: expected NotSent, got {other:?}"),
    }
    let errors = b.status().expect("B keeps running").store_errors;
    println!("figure: {errors} store errors counted while the disk was full");

    // Space comes back: B settles on its own (retried at most about a
    // second apart) and sends again.
    std::fs::remove_file(&filler).expect("the filler goes");
    let deadline = Instant::now() + WAIT;
    let id = loop {
        match b.send(pub_a.peer_id(), "the disk has room again") {
            Ok(id) => break id,
            Err(DaemonError::NotSent(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => panic!("B's send after space came back: {other:?}"),
        }
    };
    b.shutdown().expect("B stops");
    a.shutdown().expect("A stops");

    let account = Account::open(&data_b, PASS).expect("B's store reopens");
    let room = direct_room(pub_a.peer_id(), pub_b.peer_id());
    let stored = account
        .store
        .messages_in_room(&room, None, 10_000)
        .expect("B's room reads back");
    let from_a: HashSet<String> = stored
        .iter()
        .filter(|m| m.sender == pub_a.peer_id())
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    for n in 0..5 + SENT_FULL {
        assert!(
            from_a.contains(&text(n)),
            "A's message {n} was acknowledged and is lost"
        );
    }
    assert!(
        stored.iter().any(|m| m.id == id),
        "B's own message after the disk had room"
    );
    assert_eq!(
        account.store.integrity_check().expect("checks"),
        Vec::<String>::new()
    );
}
