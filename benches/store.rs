//! Store throughput and latency, printed as plain figures.
//!
//! - inserts/s of 200-byte messages, batched (goal ≥ 100k/s) and one per
//!   transaction;
//! - open + unlock of a database with 1M messages, Argon2id with the
//!   production parameters included (goal ≤ 1 s);
//! - the newest 100 messages of a room in that database (goal ≤ 5 ms);
//! - searching the text of a room of 100 000 messages for a word only one
//!   holds, which opens every one of them (goal ≤ 300 ms).
//!
//! - a history page of 50 (`Store::history`, what `kith history` and the
//!   app's chat view read) in a room of 1k / 100k / 1M messages, p50 and
//!   p99 (goal ≤ 5 ms);
//! - unread counts of 1000 rooms counted from their read markers (what a
//!   daemon does once at start; afterwards it keeps them in memory, so
//!   listing rooms costs no query);
//! - `DaemonHandle::rooms()` of a daemon with 1000 rooms (what a UI asks
//!   every second);
//! - the unread count of one room of 100 000 unread messages right after
//!   opening the store (what a daemon, and the app, does at start), and
//!   how much the process grew doing it (SQLite's page cache).
//!
//! `cargo bench --bench store -- search` runs only the search figures,
//! `-- history` only the history, unread and rooms figures, `-- unread`
//! only the unread figures.
//!
//! The databases live under Cargo's target tmp dir (a real disk, not tmpfs)
//! and are deleted afterwards. Page cache is warm for the open figures.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kith::proto::ids::{MessageId, PeerId, RoomId};
use kith::store::{KdfParams, Message, Position, SearchQuery, Store};

const PASS: &str = "bench passphrase";
/// Body and signed envelope sizes. A signed envelope carries the encrypted
/// body plus about 96 bytes of header, nonce, tag and signature, and the
/// store keeps both. The first shape is a 200-byte body; the second a
/// 200-byte message on the wire.
const SHAPES: [(usize, usize); 2] = [(200, 296), (104, 200)];
const BODY: usize = SHAPES[0].0;
const ENVELOPE: usize = SHAPES[0].1;
const ROOMS: u64 = 20;

fn message(n: u64) -> Message {
    shaped_message(n, SHAPES[0])
}

fn shaped_message(n: u64, (body, envelope): (usize, usize)) -> Message {
    Message {
        id: MessageId(*blake3::hash(&n.to_le_bytes()).as_bytes()),
        room: RoomId([(n % ROOMS) as u8; 32]),
        sender: PeerId([(n % 7) as u8; 32]),
        sender_seq: n,
        timestamp: (1_700_000_000_000 + n) << 16,
        body: vec![b'b'; body],
        envelope: vec![b'e'; envelope],
    }
}

fn fresh_db(dir: &Path, name: &str) -> PathBuf {
    let db = dir.join(name);
    for suffix in ["", "-wal", "-shm", ".keys"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(path));
    }
    db
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// CPU time the calling thread has used: what a search costs, whatever
/// else the machine runs meanwhile.
fn thread_cpu() -> Duration {
    let mut spec = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `spec` is a valid timespec for the call to fill.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut spec) } == 0;
    assert!(ok, "CLOCK_THREAD_CPUTIME_ID is available on Linux");
    Duration::new(spec.tv_sec as u64, spec.tv_nsec as u32)
}

/// Search over a room of 100 000 messages of 200 bytes of text, on a
/// reader connection on another thread (as the daemon runs it).
fn search_bench(dir: &Path) {
    const N: u64 = 100_000;
    const GOAL: Duration = Duration::from_millis(300);
    let db = fresh_db(dir, "search.db");
    let mut store = Store::create(&db, PASS, KdfParams::default()).expect("create");
    let room = RoomId([0x5e; 32]);
    for first in (0..N).step_by(5_000) {
        let messages: Vec<_> = (first..first + 5_000)
            .map(|n| {
                let word = if n == N / 3 { "pineapple" } else { "apple" };
                let mut text = format!("message {n}: shall we talk about the {word} pie, ");
                while text.len() < BODY {
                    text.push_str("and the weather, ");
                }
                text.truncate(BODY);
                let mut message = shaped_message(n, SHAPES[0]);
                message.room = room;
                message.body = text.into_bytes();
                message
            })
            .collect();
        store.insert_messages(&messages).expect("insert");
    }
    let reader = store.reader().expect("a reader");
    let scope = store.search_scope(None);
    let worker = std::thread::spawn(move || {
        let mut figures = Vec::new();
        for (what, text, limit) in [
            ("a word one message holds (opens all)", "PINEAPPLE", 50),
            (
                "a word every message holds, first page of 50",
                "Apple Pie",
                50,
            ),
        ] {
            let query = SearchQuery {
                text: text.to_owned(),
                before: None,
                limit,
            };
            let (mut walls, mut cpus) = (Vec::new(), Vec::new());
            for _ in 0..7 {
                let (start, cpu) = (Instant::now(), thread_cpu());
                let hits = reader.search(&scope, &query).expect("search");
                cpus.push(thread_cpu() - cpu);
                walls.push(start.elapsed());
                assert!(!hits.is_empty());
            }
            figures.push((what, median(cpus), median(walls)));
        }
        figures
    });
    for (what, cpu, wall) in worker.join().expect("the search thread") {
        println!(
            "search {N} messages for {what}: median CPU {cpu:.1?} (goal ≤ {GOAL:?}){}, wall {wall:.1?}",
            if cpu <= GOAL { "" } else { "  MISSED" }
        );
    }
    drop(store);
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

/// History pages of 50 in one room of `size` messages: newest first, then
/// pages before random cursors (what scrolling back reads).
fn history_pages(dir: &Path, size: u64) {
    let db = fresh_db(dir, "history.db");
    let mut store = Store::create(&db, PASS, KdfParams::default()).expect("create");
    let room = RoomId([7; 32]);
    let start = Instant::now();
    let batch = 10_000u64.min(size);
    for first in (0..size).step_by(batch as usize) {
        let messages: Vec<_> = (first..first + batch)
            .map(|n| Message { room, ..message(n) })
            .collect();
        store.insert_messages(&messages).expect("insert");
    }
    let filled = start.elapsed();
    drop(store);
    // A fresh open: the page cache holds what the fill left, as it would
    // for a daemon that has been running.
    let store = Store::open(&db, PASS).expect("open");
    let newest = store.history(&room, None, 50).expect("page");
    assert_eq!(newest.len(), 50);
    // Cursors of a fresh database are 1..=size.
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut samples = Vec::new();
    let mut cpu = Vec::new();
    for i in 0..1000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let before = (i > 0).then(|| 51 + rng % (size - 50));
        let (start, start_cpu) = (Instant::now(), thread_cpu());
        let page = store.history(&room, before, 50).expect("page");
        samples.push(start.elapsed());
        cpu.push(thread_cpu().saturating_sub(start_cpu));
        assert!(!page.is_empty());
    }
    let p50 = percentile(&mut samples, 0.5);
    let p99 = percentile(&mut samples, 0.99);
    let cpu50 = percentile(&mut cpu, 0.5);
    let cpu99 = percentile(&mut cpu, 0.99);
    println!(
        "history page of 50, room of {size} messages: wall p50 {p50:.2?} p99 {p99:.2?}; \
         CPU p50 {cpu50:.2?} p99 {cpu99:.2?} (goal ≤ 5 ms) [filled in {filled:.1?}]"
    );
}

/// Unread counts of 1000 rooms of 200 messages, 10 unread in each.
fn unread_counts(dir: &Path) {
    let db = fresh_db(dir, "unread.db");
    let mut store = Store::create(&db, PASS, KdfParams::default()).expect("create");
    let rooms: Vec<RoomId> = (0..1000u32)
        .map(|r| {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&r.to_le_bytes());
            RoomId(id)
        })
        .collect();
    let me = PeerId([0xee; 32]);
    for (r, room) in rooms.iter().enumerate() {
        let messages: Vec<_> = (0..200u64)
            .map(|n| Message {
                room: *room,
                sender: if n % 5 == 0 { me } else { PeerId([1; 32]) },
                ..message(r as u64 * 1_000 + n)
            })
            .collect();
        store.insert_messages(&messages).expect("insert");
        let marker = &messages[189];
        store
            .set_read_marker(
                room,
                &Position {
                    timestamp: marker.timestamp,
                    id: marker.id,
                },
            )
            .expect("marker");
    }
    let mut samples = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        let mut total = 0;
        for room in &rooms {
            total += store.count_unread(room, &me).expect("count");
        }
        samples.push(start.elapsed());
        assert_eq!(total, 1000 * 8);
    }
    let p50 = percentile(&mut samples, 0.5);
    println!(
        "unread counts of 1000 rooms from their markers (daemon start; then kept in memory): {p50:.2?} (goal: cheap enough every second, ≤ 100 ms)"
    );
}

/// This process's resident memory, in kB (0 where /proc is missing).
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The unread count of one room of 100 000 messages, none read, counted
/// once right after the store is opened (as a daemon starts), and the
/// resident memory that count added.
fn unread_big_room(dir: &Path) {
    let db = fresh_db(dir, "unread-big.db");
    let room = RoomId([7; 32]);
    let me = PeerId([0xee; 32]);
    let total = 100_000u64;
    {
        let mut store =
            Store::create(&db, PASS, KdfParams::insecure_fast_for_tests()).expect("create");
        for first in (0..total).step_by(1_000) {
            let messages: Vec<_> = (first..first + 1_000)
                .map(|n| Message {
                    room,
                    sender: if n % 5 == 0 { me } else { PeerId([1; 32]) },
                    ..message(n)
                })
                .collect();
            store.insert_messages(&messages).expect("insert");
        }
    }
    let mut times = Vec::new();
    let mut grown = Vec::new();
    for _ in 0..5 {
        let store = Store::open(&db, PASS).expect("open");
        let before = rss_kb();
        let start = Instant::now();
        let unread: u64 = store
            .unread_by_sender(&room)
            .expect("count")
            .iter()
            .filter(|(sender, _)| *sender != me)
            .map(|(_, n)| n)
            .sum();
        times.push(start.elapsed());
        grown.push(rss_kb().saturating_sub(before));
        assert_eq!(unread, total / 5 * 4);
    }
    let time = median(times);
    grown.sort_unstable();
    let grown = grown[grown.len() / 2];
    println!(
        "unread count of a room of {total} unread at start: {time:.2?}, resident memory +{:.1} MB (goal: no scan of the unread rows, ≤ 1 ms and ≤ 1 MB)",
        grown as f64 / 1000.0
    );
}

/// `DaemonHandle::rooms()` of a daemon with 1000 direct chats, 10 unread
/// in each: what a UI asks every second.
fn daemon_rooms(dir: &Path) {
    use kith::account::Account;
    use kith::daemon::{self, DaemonConfig};
    use kith::net::NetConfig;
    use kith::proto::crypto::Identity;
    use kith::proto::node::direct_room;
    use kith::store::Contact;

    let data = dir.join("rooms-daemon");
    let _ = std::fs::remove_dir_all(&data);
    let account = Account::create(&data, PASS, KdfParams::default()).expect("account");
    let me = account.identity.public().peer_id();
    let mut store = account.store;
    let mut rng = rand::rng();
    for n in 0..1000u64 {
        let public = Identity::generate(&mut rng).public();
        let peer = public.peer_id();
        store
            .upsert_contact(&Contact {
                peer,
                display_name: format!("peer {n}"),
                verified: false,
            })
            .expect("contact");
        store
            .set_contact_key(&peer, &public.to_bytes())
            .expect("key");
        let room = direct_room(me, peer);
        let messages: Vec<_> = (0..10u64)
            .map(|i| Message {
                room,
                sender: peer,
                ..message(n * 100 + i)
            })
            .collect();
        store.insert_messages(&messages).expect("insert");
    }
    drop(store);
    let start = Instant::now();
    let config = DaemonConfig {
        net: NetConfig::loopback(),
        ..DaemonConfig::default()
    };
    let handle = daemon::start(&data, PASS, config).expect("the daemon starts");
    let started = start.elapsed();
    let mut samples = Vec::new();
    for _ in 0..200 {
        let start = Instant::now();
        let rooms = handle.rooms().expect("rooms");
        samples.push(start.elapsed());
        assert_eq!(rooms.iter().map(|r| r.unread).sum::<u64>(), 10_000);
    }
    let p50 = percentile(&mut samples, 0.5);
    let p99 = percentile(&mut samples, 0.99);
    println!(
        "DaemonHandle::rooms() with 1000 rooms and their unread counts: p50 {p50:.2?} p99 {p99:.2?} (goal: cheap every second, ≤ 10 ms) [daemon start {started:.2?}]"
    );
    handle.shutdown().expect("stops");
    let _ = std::fs::remove_dir_all(&data);
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("store-bench");
    std::fs::create_dir_all(&dir).expect("target tmp dir is writable");
    if std::env::args().any(|arg| arg == "search") {
        search_bench(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    if std::env::args().any(|arg| arg == "unread") {
        unread_counts(&dir);
        unread_big_room(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let only_history = std::env::args().skip(1).any(|a| a == "history");
    for size in [1_000, 100_000, 1_000_000] {
        history_pages(&dir, size);
    }
    unread_counts(&dir);
    unread_big_room(&dir);
    daemon_rooms(&dir);
    if only_history {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }

    // Batched inserts.
    for shape in SHAPES {
        let db = fresh_db(&dir, "batched.db");
        let mut store = Store::create(&db, PASS, KdfParams::default()).expect("create");
        let total = 200_000u64;
        let batch = 1_000u64;
        let start = Instant::now();
        for first in (0..total).step_by(batch as usize) {
            let messages: Vec<_> = (first..first + batch)
                .map(|n| shaped_message(n, shape))
                .collect();
            store.insert_messages(&messages).expect("insert");
        }
        let elapsed = start.elapsed();
        println!(
            "batched inserts ({batch}/txn, {} B body + {} B envelope): {:.0}/s ({total} in {elapsed:.2?})",
            shape.0,
            shape.1,
            total as f64 / elapsed.as_secs_f64()
        );
    }

    // One message per transaction.
    {
        let db = fresh_db(&dir, "single.db");
        let mut store = Store::create(&db, PASS, KdfParams::default()).expect("create");
        let total = 20_000u64;
        let start = Instant::now();
        for n in 0..total {
            store.insert_messages(&[message(n)]).expect("insert");
        }
        let elapsed = start.elapsed();
        println!(
            "one-per-transaction inserts ({BODY} B body + {ENVELOPE} B envelope): {:.0}/s ({total} in {elapsed:.2?})",
            total as f64 / elapsed.as_secs_f64()
        );
    }

    // What a lone message costs before it may be acknowledged: one
    // transaction, against one journal append (settled in batches later).
    // Each sample is timed alone, as a message of a chat arrives alone.
    {
        let db = fresh_db(&dir, "lone.db");
        let mut store = Store::create(&db, PASS, KdfParams::default()).expect("create");
        let samples = 2_000u64;
        let mut committed = Vec::new();
        let mut journaled = Vec::new();
        for n in 0..samples {
            let start = Instant::now();
            store
                .insert_messages_and_chains(&[message(n)], &[])
                .expect("insert");
            committed.push(start.elapsed());
            let start = Instant::now();
            store
                .journal_messages_and_chains(&[message(samples + n)], Vec::new())
                .expect("journal");
            journaled.push(start.elapsed());
            // Settled every 10 messages, as a busy chat would every 2 ms.
            if n % 10 == 9 {
                store.settle().expect("settle");
            }
        }
        println!(
            "a lone message made durable ({BODY} B body + {ENVELOPE} B envelope): transaction median {:.1?}, journal append median {:.1?}",
            median(committed),
            median(journaled)
        );
    }

    // A 1M-message database: open + unlock, newest 100, a sync range.
    let db = fresh_db(&dir, "million.db");
    {
        let mut store = Store::create(&db, PASS, KdfParams::default()).expect("create");
        let start = Instant::now();
        let total = 1_000_000u64;
        for first in (0..total).step_by(5_000) {
            let messages: Vec<_> = (first..first + 5_000).map(message).collect();
            store.insert_messages(&messages).expect("insert");
        }
        println!(
            "built 1M-message database ({ROOMS} rooms) in {:.2?}",
            start.elapsed()
        );
    }
    let size = std::fs::metadata(&db).map(|meta| meta.len()).unwrap_or(0);
    println!(
        "  database file: {:.1} MiB",
        size as f64 / (1024.0 * 1024.0)
    );

    let mut opens = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let store = Store::open(&db, PASS).expect("open");
        opens.push(start.elapsed());
        drop(store);
    }
    println!(
        "open + unlock 1M DB (Argon2id m=64 MiB t=3 p=1 included): median {:.1?}, max {:.1?}",
        median(opens.clone()),
        opens.iter().max().expect("five samples")
    );

    let store = Store::open(&db, PASS).expect("open");
    let room = RoomId([0; 32]);
    let start = Instant::now();
    let newest = store.messages_in_room(&room, None, 100).expect("query");
    let first_query = start.elapsed();
    assert_eq!(newest.len(), 100);
    let mut queries = Vec::new();
    for _ in 0..200 {
        let start = Instant::now();
        let page = store.messages_in_room(&room, None, 100).expect("query");
        queries.push(start.elapsed());
        assert_eq!(page.len(), 100);
    }
    println!(
        "newest 100 of a room ({} messages in it), decrypted: first {:.2?}, median {:.2?}",
        1_000_000 / ROOMS,
        first_query,
        median(queries)
    );

    let mut scrolls = Vec::new();
    let mut before = newest.last().map(|message| Position {
        timestamp: message.timestamp,
        id: message.id,
    });
    for _ in 0..100 {
        let start = Instant::now();
        let page = store.messages_in_room(&room, before, 100).expect("query");
        scrolls.push(start.elapsed());
        before = page.last().map(|message| Position {
            timestamp: message.timestamp,
            id: message.id,
        });
    }
    println!("scroll back 100 more: median {:.2?}", median(scrolls));

    let lower = Position {
        timestamp: message(400_000).timestamp,
        id: MessageId([0; 32]),
    };
    let upper = Position {
        timestamp: message(420_000).timestamp,
        id: MessageId([0; 32]),
    };
    let start = Instant::now();
    let range = store
        .messages_in_range(&room, lower, Some(upper))
        .expect("range");
    println!(
        "sync range of {} positions: {:.2?}",
        range.len(),
        start.elapsed()
    );
    drop(store);
    search_bench(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}
