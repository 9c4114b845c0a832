//! Crash safety: a child process inserts messages and reports each id on
//! stdout after its batch committed; the test kills it with SIGKILL at random
//! points, again and again, and checks that every reported id survived and
//! the database is intact.
//!
//! The test binary is its own child: with `KITH_STORE_CRASH_CHILD` set,
//! `main` runs the writer instead of the test. `harness = false` in
//! `Cargo.toml` gives it that `main`.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::TempDir;
use kith::proto::ids::{MessageId, PeerId, RoomId};
use kith::store::{KdfParams, Message, MessageKey, Store};
use rand::RngExt;

const CHILD_ENV: &str = "KITH_STORE_CRASH_CHILD";
const PASS: &str = "crash";
const KILLS: usize = 24;

fn main() {
    if let Some(db) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&db));
        return;
    }
    // Answer test runners that list tests first (e.g. `--list`) without running.
    if std::env::args().any(|arg| arg == "--list") {
        println!("crash_recovery_keeps_every_reported_commit: test");
        return;
    }
    crash_recovery_keeps_every_reported_commit();
    println!("test crash_recovery_keeps_every_reported_commit ... ok");
}

/// Writes forever: random batches into a few rooms (plus one new room per
/// run, so key-file rewrites are killed too), printing ids after commit.
fn child(db: &Path) {
    let mut store = Store::open(db, PASS).expect("child: the parent created the store");
    let mut rng = rand::rng();
    let fresh_room = RoomId(rng.random());
    let stdout = std::io::stdout();
    loop {
        let size = rng.random_range(1..=20);
        let batch: Vec<Message> = (0..size)
            .map(|_| {
                let room = if rng.random_bool(0.1) {
                    fresh_room
                } else {
                    RoomId([rng.random_range(0..4u8); 32])
                };
                Message {
                    id: MessageId(rng.random()),
                    room,
                    sender: PeerId([1; 32]),
                    sender_seq: rng.random(),
                    timestamp: rng.random_range(0..1 << 50),
                    body: vec![b'x'; 200],
                    envelope: vec![b'e'; 64],
                }
            })
            .collect();
        store.insert_messages(&batch).expect("child: insert");
        // Only now is the batch committed, so only now may it be reported.
        let mut out = stdout.lock();
        for message in &batch {
            let key = message.key();
            writeln!(out, "committed {} {} {}", key.room, key.timestamp, key.id)
                .expect("child: stdout");
        }
        out.flush().expect("child: stdout");
    }
}

fn crash_recovery_keeps_every_reported_commit() {
    let dir = TempDir::new("crash");
    let db: PathBuf = dir.db();
    drop(Store::create(&db, PASS, KdfParams::insecure_fast_for_tests()).unwrap());
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let mut rng = rand::rng();
    let mut reported: HashSet<MessageKey> = HashSet::new();

    for run in 0..KILLS {
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, &db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the child writer");
        let stdout = child.stdout.take().expect("stdout was piped");
        let mut reader = BufReader::new(stdout);
        // Kill after a random number of reported commits; 0 kills during startup.
        let kill_after = if run % 6 == 0 {
            0
        } else {
            rng.random_range(1..600)
        };
        let mut seen = 0usize;
        let mut killed = false;
        let mut line = String::new();
        loop {
            if seen >= kill_after && !killed {
                // On Unix this is SIGKILL: no destructors, no flushing.
                child.kill().expect("kill the child");
                killed = true;
            }
            line.clear();
            let read = reader
                .read_line(&mut line)
                .expect("read the child's stdout");
            if read == 0 {
                break;
            }
            // A line cut short by the kill is ignored; its batch still counts
            // only through the lines that were printed whole.
            if let Some(fields) = line
                .strip_prefix("committed ")
                .and_then(|rest| rest.strip_suffix('\n'))
            {
                reported.insert(parse_key(fields));
                seen += 1;
            }
        }
        let status = child.wait().expect("reap the child");
        assert!(killed, "run {run}: the child exited on its own: {status}");

        let store = Store::open(&db, PASS).expect("reopen after the kill");
        assert_eq!(
            store.integrity_check().unwrap(),
            Vec::<String>::new(),
            "run {run}"
        );
        for key in &reported {
            assert!(
                store.has_message(key).unwrap(),
                "run {run}: lost committed {key:?}"
            );
        }
        // Bodies still decrypt: room keys survived kills during key-file writes.
        let sample = reported.iter().take(50);
        for key in sample {
            assert!(store.message(key).unwrap().is_some(), "run {run}: {key:?}");
        }
    }
    assert!(
        reported.len() > 1000,
        "only {} commits reported",
        reported.len()
    );
}

/// Parses `<room hex> <timestamp> <id hex>` as printed by the child.
fn parse_key(text: &str) -> MessageKey {
    let mut parts = text.split(' ');
    let mut next = || parts.next().expect("the child prints three fields");
    MessageKey {
        room: RoomId::from_hex(next()).expect("room hex"),
        timestamp: next().parse().expect("decimal timestamp"),
        id: MessageId::from_hex(next()).expect("id hex"),
    }
}
