//! File sharing throughput between two real daemons on 127.0.0.1 (the
//! whole path: offer, pull over the pairwise reliable stream, chunk
//! sealing, the encrypted blob store, the hash check and the export).
//!
//! Prints, beside their goals:
//! - sharing (read, hash, encrypt into the store) a 16 MiB file;
//! - fetching it from the other daemon until the verified copy is
//!   written: goal ≥ 20 MB/s on loopback.
//!
//! `cargo bench --bench files` (set `KITH_BENCH_FILE_MIB` for another size).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use kith::account::Account;
use kith::daemon::{
    self, DaemonConfig, DaemonHandle, Event, FileRef, PeerAddr, Reply, Request, SubscribeOptions,
    Target, Update,
};
use kith::net::NetConfig;
use kith::store::KdfParams;

const PASS: &str = "files bench";
const WAIT: Duration = Duration::from_secs(300);
const GOAL_MB_S: f64 = 20.0;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kith-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn start(data: &std::path::Path, bind: SocketAddr, peers: Vec<PeerAddr>) -> DaemonHandle {
    let config = DaemonConfig {
        net: NetConfig {
            unicast_bind: bind,
            ..NetConfig::loopback()
        },
        peers,
        ..DaemonConfig::default()
    };
    daemon::start(data, PASS, config).expect("the daemon starts")
}

fn wait_for<T>(rx: &Receiver<Event>, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = rx.recv_timeout(left).expect("the event within the wait");
        if let Some(found) = pick(&event) {
            return found;
        }
    }
}

fn main() {
    let mib: usize = std::env::var("KITH_BENCH_FILE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let root = temp_dir("files");
    let (a_data, b_data) = (root.join("a"), root.join("b"));
    let a_pub = Account::create(&a_data, PASS, KdfParams::insecure_fast_for_tests())
        .expect("account a")
        .identity
        .public();
    let b_pub = Account::create(&b_data, PASS, KdfParams::insecure_fast_for_tests())
        .expect("account b")
        .identity
        .public();
    // Two ports first, so each daemon is told the other's address.
    let probe_a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let probe_b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (a_addr, b_addr) = (probe_a.local_addr().unwrap(), probe_b.local_addr().unwrap());
    drop((probe_a, probe_b));
    let a = start(
        &a_data,
        a_addr,
        vec![PeerAddr {
            public: b_pub.clone(),
            addr: b_addr,
        }],
    );
    let b = start(
        &b_data,
        b_addr,
        vec![PeerAddr {
            public: a_pub.clone(),
            addr: a_addr,
        }],
    );
    let b_events = b.events().expect("events");
    a.send(b_pub.peer_id(), "warm-up").expect("warm-up");
    wait_for(&b_events, |e| {
        matches!(e, Event::MessageReceived { .. }).then_some(())
    });

    let mut content = vec![0u8; mib << 20];
    blake3::Hasher::new().finalize_xof().fill(&mut content);
    let source = root.join("payload.bin");
    std::fs::write(&source, &content).expect("payload");

    // The share is asked without waiting; a status request asked right
    // after it is answered while the file is being read (it used to wait
    // for the whole share).
    let sub = a.subscribe(SubscribeOptions::default()).expect("subscribe");
    let started = Instant::now();
    let share = sub
        .request(Request::ShareFile {
            to: Target::Peer(b_pub.peer_id()),
            path: source.clone(),
            caption: None,
        })
        .expect("share");
    let asked = Instant::now();
    a.status().expect("status during the share");
    let status_time = asked.elapsed();
    let id = loop {
        match sub.recv_timeout(WAIT).expect("the share is answered") {
            Update::Reply(got, result) if got == share => match result.expect("shared") {
                Reply::Sent(id) => break id,
                other => panic!("unexpected reply {other:?}"),
            },
            _ => {}
        }
    };
    let share_time = started.elapsed();
    wait_for(&b_events, |e| match e {
        Event::MessageReceived {
            id: got,
            file: Some(_),
            ..
        } if *got == id => Some(()),
        _ => None,
    });
    let out = root.join("downloads");
    let started = Instant::now();
    b.fetch_file(FileRef::Message(id), &out).expect("fetch");
    let path = wait_for(&b_events, |e| match e {
        Event::FileComplete { path, .. } => Some(path.clone()),
        Event::FileFailed { reason, .. } => panic!("the fetch failed: {reason}"),
        _ => None,
    });
    let fetch_time = started.elapsed();
    assert!(
        std::fs::read(&path).expect("the copy") == content,
        "the copy is intact"
    );

    let mb = content.len() as f64 / 1e6;
    let share_rate = mb / share_time.as_secs_f64();
    let fetch_rate = mb / fetch_time.as_secs_f64();
    println!("file sharing, {mib} MiB between two daemons on 127.0.0.1");
    println!(
        "  share (read, hash, encrypt into the store): {:>8.1} ms  {:>7.1} MB/s",
        share_time.as_secs_f64() * 1e3,
        share_rate
    );
    println!(
        "  a status request asked during the share:    {:>8.1} ms  goal < 100 ms (answered before the share: {})",
        status_time.as_secs_f64() * 1e3,
        if status_time < share_time {
            "yes"
        } else {
            "NO"
        }
    );
    println!(
        "  fetch to a verified copy on disk:            {:>8.1} ms  {:>7.1} MB/s  goal >= {GOAL_MB_S} MB/s  {}",
        fetch_time.as_secs_f64() * 1e3,
        fetch_rate,
        if fetch_rate >= GOAL_MB_S {
            "met"
        } else {
            "NOT MET"
        }
    );
    let _ = a.shutdown();
    let _ = b.shutdown();
    let _ = std::fs::remove_dir_all(&root);
}
