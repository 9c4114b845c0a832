//! The node's goals from issue 5, measured side by side in one run on
//! 127.0.0.1 and printed as a table:
//!
//! 1. direct-message latency between two in-process daemons (`send` → stored
//!    at the receiver → `Delivered` at the sender), next to the raw UDP
//!    ping-pong RTT between two plain sockets: goal p50 ≤ 3× raw RTT, p99 ≤
//!    5 ms. Each DM figure is compared with the raw figure measured the
//!    same way: one at a time, each after the previous one's answer, back
//!    to back and at a chat's pace (25 ms apart, so every step starts on an
//!    idle, cold core);
//! 2. 3-node room throughput (messages/s stored at every member), one
//!    sender and then all three at once, next to the single-core Ed25519
//!    verify rate: goal ≥ 60 % of it;
//! 3. resident memory of an idle `kith daemon` process holding 100k
//!    messages: goal ≤ 30 MB.
//!
//! Everything lives in temp dirs under Cargo's target tmp dir, which are
//! deleted afterwards; every wait is bounded, and the daemon process is
//! stopped even if the bench panics. A figure that cannot be measured is
//! printed with the reason.
//!
//! Run: `cargo bench --no-default-features --bench node`; name sections
//! (`latency`, `room`, `idle`) after `--` to run only those.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey, Verifier};
use kith::account::Account;
use kith::daemon::{self, DaemonConfig, DaemonError, DaemonHandle, Event, PeerAddr};
use kith::net::NetConfig;
use kith::proto::crypto::PublicIdentity;
use kith::proto::ids::{MessageId, PeerId, RoomId};
use kith::proto::node::NodeError;
use kith::store::{KdfParams, Message};

const PASS: &str = "node bench passphrase";
/// The size of every message body sent or stored.
const BODY: usize = 200;
const LATENCY_WARMUP: usize = 200;
const LATENCY_SAMPLES: usize = 2_000;
/// Samples with a pause before each, as in a chat: longer than the
/// reliable layer's `lone_gap` (20 ms), so each message asks for its ACK at
/// once. The back-to-back samples show a stream, whose ACKs are paced.
const SPACED_SAMPLES: usize = 400;
const SPACED_GAP: Duration = Duration::from_millis(25);
const RAW_WARMUP: usize = 1_000;
const RAW_SAMPLES: usize = 20_000;
const ROOM_MESSAGES: usize = 20_000;
const IDLE_MESSAGES: u64 = 100_000;
const IDLE_SETTLE: Duration = Duration::from_secs(3);
/// Bounds every wait: a loaded machine is slow, a stuck one fails the
/// figure instead of hanging the bench.
const PATIENCE: Duration = Duration::from_secs(120);

/// One line of the final table.
struct Row {
    metric: &'static str,
    value: String,
    goal: String,
    met: Option<bool>,
}

/// Whether the command line asks for `section` (no names: every section).
fn wanted(section: &str) -> bool {
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    named.is_empty() || named.iter().any(|a| a == section)
}

fn main() {
    println!("kith node bench, 127.0.0.1, {BODY}-byte messages");
    let mut rows = Vec::new();
    if wanted("latency") {
        latency_rows(&mut rows);
    }
    if wanted("room") {
        room_rows(&mut rows);
    }
    if wanted("idle") {
        idle_rows(&mut rows);
    }
    print_table(&rows);
}

/// 1. Direct-message latency beside the raw RTT.
fn latency_rows(rows: &mut Vec<Row>) {
    let raw = raw_ping_pong(RAW_WARMUP, RAW_SAMPLES, Duration::ZERO);
    let raw_spaced = raw_ping_pong(10, SPACED_SAMPLES, SPACED_GAP);
    println!(
        "raw UDP ping-pong at chat pace ({SPACED_SAMPLES}, {SPACED_GAP:?} apart): p50 {:.1} µs, p99 {:.1} µs",
        micros(percentile(&raw_spaced, 50.0)),
        micros(percentile(&raw_spaced, 99.0))
    );
    let raw_p50 = percentile(&raw, 50.0);
    println!(
        "raw UDP ping-pong ({RAW_SAMPLES} round trips): p50 {:.1} µs, p99 {:.1} µs",
        micros(raw_p50),
        micros(percentile(&raw, 99.0))
    );
    let raw_row = Row {
        metric: "raw UDP RTT p50 / p99",
        value: format!(
            "{:.0} / {:.0} µs",
            micros(raw_p50),
            micros(percentile(&raw, 99.0))
        ),
        goal: "(reference)".into(),
        met: None,
    };
    // The same ping-pong with the chat's pauses: what waking both sides
    // from idle costs, beside the chat-pace DM latency.
    let raw_spaced_p50 = percentile(&raw_spaced, 50.0);
    let raw_spaced_row = Row {
        metric: "raw RTT at chat pace",
        value: format!(
            "{:.0} / {:.0} µs",
            micros(raw_spaced_p50),
            micros(percentile(&raw_spaced, 99.0))
        ),
        goal: "(reference)".into(),
        met: None,
    };
    match direct_latency() {
        Ok((samples, spaced)) => {
            let stream_p50 = percentile(&samples, 50.0);
            let stream_p99 = percentile(&samples, 99.0);
            let p50 = percentile(&spaced, 50.0);
            let p99 = percentile(&spaced, 99.0);
            let stream_ratio = stream_p50.as_secs_f64() / raw_p50.as_secs_f64();
            let ratio = p50.as_secs_f64() / raw_p50.as_secs_f64();
            let spaced_ratio = p50.as_secs_f64() / raw_spaced_p50.as_secs_f64();
            println!(
                "direct message, back to back ({LATENCY_SAMPLES} after {LATENCY_WARMUP} warm-up, \
                 each sent after the previous one's \"delivered\"): p50 {:.1} µs, p99 {:.1} µs; \
                 p50 = {stream_ratio:.1}× raw RTT",
                micros(stream_p50),
                micros(stream_p99)
            );
            println!(
                "direct message, chat pace ({SPACED_SAMPLES}, {SPACED_GAP:?} apart): p50 {:.1} µs, \
                 p99 {:.1} µs, max {:.1} µs; p50 = {ratio:.1}× raw RTT, \
                 {spaced_ratio:.1}× raw RTT at chat pace",
                micros(p50),
                micros(p99),
                micros(percentile(&spaced, 100.0))
            );
            // The goal's comparison is like for like: one message at a
            // time, each after the previous one's "delivered", as the raw
            // ping-pong does its round trips.
            rows.push(raw_row);
            rows.extend(latency_goal_rows(
                [
                    "DM latency p50 (back to back)",
                    "DM latency p99 (back to back)",
                ],
                (stream_p50, stream_p99),
                raw_p50,
            ));
            // A chat's messages come one at a time to idle CPUs: every step
            // of the path runs cold and every hand-over wakes a core, and so
            // it is for the raw ping-pong at the same pace.
            rows.push(raw_spaced_row);
            rows.extend(latency_goal_rows(
                ["DM latency p50 (chat pace)", "DM latency p99 (chat pace)"],
                (p50, p99),
                raw_spaced_p50,
            ));
        }
        Err(why) => {
            rows.push(raw_row);
            rows.push(raw_spaced_row);
            rows.push(unmeasured("DM latency", &why, "p50 ≤ 3× raw, p99 ≤ 5 ms"));
        }
    }
}

/// The goal rows of one DM latency measurement: its p50 against `raw`
/// (the raw ping-pong's p50 measured the same way) and its p99.
fn latency_goal_rows(
    metrics: [&'static str; 2],
    (p50, p99): (Duration, Duration),
    raw: Duration,
) -> [Row; 2] {
    let ratio = p50.as_secs_f64() / raw.as_secs_f64();
    [
        Row {
            metric: metrics[0],
            value: format!("{:.0} µs ({ratio:.1}× raw)", micros(p50)),
            goal: format!("≤ 3× raw ({:.0} µs)", 3.0 * micros(raw)),
            met: Some(ratio <= 3.0),
        },
        Row {
            metric: metrics[1],
            value: format!("{:.0} µs", micros(p99)),
            goal: "≤ 5000 µs".into(),
            met: Some(p99 <= Duration::from_millis(5)),
        },
    ]
}

/// 2. Room throughput beside the Ed25519 verify rate.
fn room_rows(rows: &mut Vec<Row>) {
    let verify = verify_rate();
    println!("Ed25519 verify, one core: {verify:.0}/s");
    rows.push(Row {
        metric: "Ed25519 verify, 1 core",
        value: format!("{verify:.0}/s"),
        goal: "(reference)".into(),
        met: None,
    });
    // The reliable layer paces each node's data packets (a flood guard for
    // the LAN); without multicast a room message is one packet per other
    // member, which caps what one sender can send.
    let rate = kith::proto::node::NodeConfig::default().reliable.rate;
    println!(
        "pacing: {rate} data packets/s per node, so one sender reaches at most {} msg/s in a \
         room of 3 by unicast (twice that by multicast)",
        rate / 2
    );
    for (senders, metric) in [
        (1, "room throughput, 1 sender"),
        (3, "room throughput, 3 senders"),
    ] {
        match room_throughput(senders) {
            Ok(rate) => {
                let share = 100.0 * rate / verify;
                println!(
                    "3-node room, {senders} sender(s), {ROOM_MESSAGES} messages: {rate:.0}/s \
                     stored at every member ({share:.0} % of verify)"
                );
                rows.push(Row {
                    metric,
                    value: format!("{rate:.0}/s ({share:.0} %)"),
                    goal: "≥ 60 % of verify".into(),
                    met: Some(share >= 60.0),
                });
            }
            Err(why) => rows.push(unmeasured(metric, &why, "≥ 60 % of verify")),
        }
    }
}

/// 3. Idle RSS of a real daemon process.
fn idle_rows(rows: &mut Vec<Row>) {
    match idle_rss() {
        Ok((rss, peak)) => {
            println!(
                "idle `kith daemon` with {IDLE_MESSAGES} messages: VmRSS {:.1} MB (VmHWM {:.1} MB)",
                mb(rss),
                mb(peak)
            );
            rows.push(Row {
                metric: "idle daemon RSS, 100k msgs",
                value: format!("{:.1} MB", mb(rss)),
                goal: "≤ 30 MB".into(),
                met: Some(mb(rss) <= 30.0),
            });
        }
        Err(why) => rows.push(unmeasured("idle daemon RSS", &why, "≤ 30 MB")),
    }
}

fn print_table(rows: &[Row]) {
    println!();
    println!("{:<30} {:<26} {:<24} met?", "metric", "value", "goal");
    for row in rows {
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        println!(
            "{:<30} {:<26} {:<24} {met}",
            row.metric, row.value, row.goal
        );
    }
}

fn unmeasured(metric: &'static str, why: &str, goal: &str) -> Row {
    println!("{metric}: not measured: {why}");
    Row {
        metric,
        value: "not measured".into(),
        goal: goal.into(),
        met: None,
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Bytes (from kB in /proc) to MB (10^6 bytes).
fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let index = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[index]
}

/// A text of exactly [`BODY`] bytes that starts with `n`, so every message
/// is distinct.
fn text(n: usize) -> String {
    let mut text = format!("message {n} ");
    text.extend(std::iter::repeat_n('x', BODY - text.len()));
    text
}

/// A self-cleaning directory under Cargo's target tmp dir (a real disk,
/// like a device's data directory, rather than tmpfs).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let mut nonce = [0u8; 8];
        rand::fill(&mut nonce);
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("node-bench-{name}-{}", u64::from_le_bytes(nonce)));
        std::fs::create_dir_all(&path).expect("bench: the target tmp dir is writable");
        Self(path)
    }

    fn data(&self) -> PathBuf {
        self.0.join("data")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover temp dir is not worth a panic in drop.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Round trips between two plain blocking sockets: `samples` after
/// `warmup`, each after `gap` (zero: back to back). The two ends run on two
/// different cores when there are two, as two machines' network stacks
/// would: left to the scheduler they sometimes share one, and the round
/// trip becomes a 4 µs context switch (seen in about one run in five) that
/// no network between two devices has.
fn raw_ping_pong(warmup: usize, samples: usize, gap: Duration) -> Vec<Duration> {
    let cpus = allowed_cpus();
    let server = UdpSocket::bind("127.0.0.1:0").expect("bench: binding loopback works");
    let client = UdpSocket::bind("127.0.0.1:0").expect("bench: binding loopback works");
    for socket in [&server, &client] {
        socket
            .set_read_timeout(Some(PATIENCE))
            .expect("bench: a timeout can be set");
    }
    let server_addr = server.local_addr().expect("bench: bound");
    let (echo_cpu, ping_cpu) = match cpus.as_slice() {
        [first, second, ..] => (Some(*first), Some(*second)),
        _ => (None, None),
    };
    let echo = std::thread::spawn(move || {
        if let Some(cpu) = echo_cpu {
            pin_to(cpu);
        }
        let mut buf = [0u8; 2048];
        for _ in 0..warmup + samples {
            let (len, from) = server.recv_from(&mut buf).expect("bench: ping arrives");
            server.send_to(&buf[..len], from).expect("bench: pong sent");
        }
    });
    let ping = std::thread::spawn(move || {
        if let Some(cpu) = ping_cpu {
            pin_to(cpu);
        }
        let mut buf = [0u8; 2048];
        let ping = [7u8; BODY];
        let mut rtts = Vec::with_capacity(samples);
        for round in 0..warmup + samples {
            if !gap.is_zero() {
                std::thread::sleep(gap);
            }
            let start = Instant::now();
            client
                .send_to(&ping, server_addr)
                .expect("bench: ping sent");
            client.recv_from(&mut buf).expect("bench: pong arrives");
            if round >= warmup {
                rtts.push(start.elapsed());
            }
        }
        rtts
    });
    let rtts = ping.join().expect("bench: ping thread finished");
    echo.join().expect("bench: echo thread finished");
    rtts
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero `cpu_set_t` is a valid empty set, and the kernel
    // writes at most the size it is given.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// Pins the calling thread to `cpu`; best effort (unpinned, the figure is
/// only less steady).
fn pin_to(cpu: usize) {
    // SAFETY: as in `allowed_cpus`; `cpu` is below `CPU_SETSIZE`.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let _ = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn account(name: &str) -> Result<(TempDir, PublicIdentity), String> {
    let dir = TempDir::new(name);
    let account = Account::create(&dir.data(), PASS, KdfParams::insecure_fast_for_tests())
        .map_err(|e| format!("cannot create an account: {e}"))?;
    Ok((dir, account.identity.public()))
}

fn start(dir: &TempDir, bind: SocketAddr, peers: Vec<PeerAddr>) -> Result<DaemonHandle, String> {
    let config = DaemonConfig {
        // Unattended: the room's members join when invited.
        node: kith::proto::node::NodeConfig {
            auto_accept_invites: true,
            ..Default::default()
        },
        net: NetConfig {
            unicast_bind: bind,
            ..NetConfig::loopback()
        },
        peers,
        ..DaemonConfig::default()
    };
    daemon::start(&dir.data(), PASS, config).map_err(|e| format!("a daemon did not start: {e}"))
}

/// Waits for an event `done` accepts, dropping the others.
fn wait_for(rx: &Receiver<Event>, mut done: impl FnMut(&Event) -> bool) -> Result<(), String> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = rx
            .recv_timeout(left)
            .map_err(|e| format!("no expected event within {PATIENCE:?}: {e}"))?;
        if done(&event) {
            return Ok(());
        }
    }
}

/// Stops every daemon, reporting the first failure.
fn shutdown_all(handles: Vec<DaemonHandle>) -> Result<(), String> {
    let mut result = Ok(());
    for handle in handles {
        if let Err(e) = handle.shutdown() {
            result = result.and(Err(format!("a daemon did not stop cleanly: {e}")));
        }
    }
    result
}

/// A sends to B one message at a time; each sample runs from `send` to
/// the `Delivered` for that id on A's events.
fn direct_latency() -> Result<(Vec<Duration>, Vec<Duration>), String> {
    let (dir_a, pub_a) = account("dm-a")?;
    let (dir_b, pub_b) = account("dm-b")?;
    let loopback = NetConfig::loopback().unicast_bind;
    let a = start(&dir_a, loopback, Vec::new())?;
    let b = start(
        &dir_b,
        loopback,
        vec![PeerAddr {
            public: pub_a,
            addr: a.local_addr(),
        }],
    )?;
    a.add_peer(pub_b.clone(), b.local_addr())
        .map_err(|e| format!("B is not A's peer: {e}"))?;
    let a_events = a.events().map_err(|e| e.to_string())?;
    // B's events are drained, not left to pile up.
    let b_events = b.events().map_err(|e| e.to_string())?;
    let drain = std::thread::spawn(move || while b_events.recv().is_ok() {});

    let to = pub_b.peer_id();
    let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
    let mut spaced = Vec::with_capacity(SPACED_SAMPLES);
    let mut result = Ok(());
    for n in 0..LATENCY_WARMUP + LATENCY_SAMPLES + SPACED_SAMPLES {
        let body = text(n);
        if n >= LATENCY_WARMUP + LATENCY_SAMPLES {
            std::thread::sleep(SPACED_GAP);
        }
        let start = Instant::now();
        let sent = match a.send(to, &body) {
            Ok(id) => id,
            Err(e) => {
                result = Err(format!("send failed: {e}"));
                break;
            }
        };
        if let Err(e) = wait_for(
            &a_events,
            |e| matches!(e, Event::Delivered { id, .. } if *id == sent),
        ) {
            result = Err(format!("message {n}: {e}"));
            break;
        }
        if n >= LATENCY_WARMUP + LATENCY_SAMPLES {
            spaced.push(start.elapsed());
        } else if n >= LATENCY_WARMUP {
            samples.push(start.elapsed());
        }
    }
    let stopped = shutdown_all(vec![a, b]);
    // B's event sender is gone with B, so the drain ends.
    let _ = drain.join();
    result.and(stopped).map(|()| (samples, spaced))
}

/// How many verifications of a signed 200-byte message one core does per
/// second.
fn verify_rate() -> f64 {
    let key = SigningKey::generate(&mut rand::rng());
    let message = [0x5a; BODY];
    let signature = key.sign(&message);
    let public = key.verifying_key();
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for _ in 0..100 {
            public
                .verify(std::hint::black_box(&message), &signature)
                .expect("bench: our own signature verifies");
        }
        count += 100;
    }
    count as f64 / start.elapsed().as_secs_f64()
}

/// Three daemons that know each other's addresses: (dir, public, handle).
fn trio(name: &str) -> Result<Vec<(TempDir, PublicIdentity, DaemonHandle)>, String> {
    let accounts = (0..3)
        .map(|i| account(&format!("{name}-{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    // Reserve three addresses first, so every daemon can be told the others'.
    let mut addrs = Vec::new();
    for (dir, _) in &accounts {
        let probe = start(dir, NetConfig::loopback().unicast_bind, Vec::new())?;
        addrs.push(probe.local_addr());
        shutdown_all(vec![probe])?;
    }
    let publics: Vec<PublicIdentity> = accounts.iter().map(|a| a.1.clone()).collect();
    let mut nodes = Vec::new();
    for (i, (dir, public)) in accounts.into_iter().enumerate() {
        let peers = (0..3)
            .filter(|j| *j != i)
            .map(|j| PeerAddr {
                public: publics[j].clone(),
                addr: addrs[j],
            })
            .collect();
        let handle = start(&dir, addrs[i], peers)?;
        nodes.push((dir, public, handle));
    }
    Ok(nodes)
}

/// How many sends a blasting member keeps under way (`submit_to`), so the
/// daemon can store a burst of them in one transaction. Measured: 64 →
/// 13–15k msg/s with one sender, 256 → 15.4k, 1024 → 17.7k (bigger
/// bursts, fewer commits); 256 is what a device streaming readings would
/// plausibly keep in flight.
const SEND_WINDOW: usize = 256;

/// Sends `count` room messages as fast as the daemon takes them, waiting
/// briefly whenever it pushes back.
fn blast(handle: &DaemonHandle, room: RoomId, first: usize, count: usize) -> Result<u64, String> {
    let to = PeerId(room.0).to_hex();
    let mut retries = 0;
    let mut waiting = std::collections::VecDeque::new();
    let mut next = first;
    let deadline = Instant::now() + PATIENCE;
    while next < first + count || !waiting.is_empty() {
        while next < first + count && waiting.len() < SEND_WINDOW {
            let pending = handle
                .submit_to(&to, &text(next))
                .map_err(|e| format!("send_room failed at message {next}: {e}"))?;
            waiting.push_back((next, pending));
            next += 1;
        }
        let Some((n, pending)) = waiting.pop_front() else {
            break;
        };
        match pending.wait() {
            Ok(_) => {}
            Err(DaemonError::Node(NodeError::Backpressure)) if Instant::now() < deadline => {
                // Sent again later, with the rest of the window.
                retries += 1;
                std::thread::sleep(Duration::from_micros(200));
                let again = handle
                    .submit_to(&to, &text(n))
                    .map_err(|e| format!("send_room failed at message {n}: {e}"))?;
                waiting.push_back((n, again));
            }
            Err(e) => return Err(format!("send_room failed at message {n}: {e}")),
        }
    }
    Ok(retries)
}

/// Counts the room messages a member stores until it has `want`, and
/// returns when the last one arrived.
fn count_stored(rx: Receiver<Event>, room: RoomId, want: usize) -> Result<Instant, String> {
    let mut got = 0;
    let deadline = Instant::now() + PATIENCE;
    while got < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::MessageReceived { room: r, .. }) if r == room => got += 1,
            Ok(_) => {}
            Err(e) => return Err(format!("only {got} of {want} stored: {e}")),
        }
    }
    Ok(Instant::now())
}

/// A creates a room with B and C; then `senders` of the three members
/// (A first) send [`ROOM_MESSAGES`] between them. Messages per second from
/// the first send until every member stored every message it did not send.
fn room_throughput(senders: usize) -> Result<f64, String> {
    let nodes = trio(&format!("room{senders}"))?;
    let ids: Vec<PeerId> = nodes.iter().map(|n| n.1.peer_id()).collect();
    let (_dirs, mut handles): (Vec<TempDir>, Vec<DaemonHandle>) = nodes
        .into_iter()
        .map(|(dir, _, handle)| (dir, handle))
        .unzip();
    let result = measure_room(&mut handles, &ids, senders);
    let stopped = shutdown_all(handles);
    let rate = result?;
    stopped.map(|()| rate)
}

fn measure_room(
    handles: &mut Vec<DaemonHandle>,
    ids: &[PeerId],
    senders: usize,
) -> Result<f64, String> {
    let events = handles
        .iter()
        .map(|h| h.events().map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let room = handles[0]
        .create_room("bench", &[ids[1], ids[2]])
        .map_err(|e| format!("cannot create the room: {e}"))?;
    for rx in &events[1..] {
        wait_for(
            rx,
            |e| matches!(e, Event::RoomJoined { room: r, .. } if *r == room),
        )?;
    }
    let share = ROOM_MESSAGES / senders;
    let total = share * senders;
    // A handle is not `Sync`, so each sender thread owns its daemon's
    // handle and gives it back.
    let node_cpu_before: Vec<Option<Duration>> =
        handles.iter().map(DaemonHandle::network_cpu_time).collect();
    let sending: Vec<DaemonHandle> = handles.drain(..senders).collect();
    let cpu_before = cpu_time();
    let start = Instant::now();
    let (rate, returned) = std::thread::scope(|scope| {
        let counters: Vec<_> = events
            .into_iter()
            .enumerate()
            .map(|(i, rx)| {
                // Each member stores everything but what it sent itself.
                let want = if i < senders { total - share } else { total };
                scope.spawn(move || count_stored(rx, room, want))
            })
            .collect();
        let blasters: Vec<_> = sending
            .into_iter()
            .enumerate()
            .map(|(i, handle)| {
                scope.spawn(move || {
                    let sent = blast(&handle, room, i * share, share);
                    (handle, sent, start.elapsed())
                })
            })
            .collect();
        let mut returned = Vec::new();
        let mut result = Ok(());
        let mut retries = 0;
        let mut sending_took = Duration::ZERO;
        for blaster in blasters {
            match blaster.join() {
                Ok((handle, sent, took)) => {
                    returned.push(handle);
                    sending_took = sending_took.max(took);
                    match sent {
                        Ok(n) => retries += n,
                        Err(e) => result = result.and(Err(e)),
                    }
                }
                Err(_) => result = result.and(Err("a sender panicked".to_owned())),
            }
        }
        let mut last = start;
        for counter in counters {
            match counter.join() {
                Ok(Ok(done)) => last = last.max(done),
                Ok(Err(e)) => result = result.and(Err(e)),
                Err(_) => result = result.and(Err("a counter panicked".to_owned())),
            }
        }
        let wall = last - start;
        println!(
            "  {senders} sender(s): send_room accepted all in {sending_took:.2?} \
             ({retries} backpressure retries), all stored after {wall:.2?}, \
             this process used {:.2?} CPU meanwhile",
            cpu_time().saturating_sub(cpu_before)
        );
        let rate = result.map(|()| total as f64 / wall.as_secs_f64());
        (rate, returned)
    });
    // Back in their places, so the caller stops all three.
    for (i, handle) in returned.into_iter().enumerate() {
        handles.insert(i, handle);
    }
    // Where a slow run lost its time: datagrams that never arrived (the
    // reliable layer then waits to repair them) or that a node dropped.
    let statuses: Vec<_> = handles.iter().filter_map(|h| h.status().ok()).collect();
    let sent: u64 = statuses.iter().map(|s| s.net.sent).sum();
    let received: u64 = statuses.iter().map(|s| s.net.received).sum();
    let dropped: u64 = statuses.iter().map(|s| s.node.total_dropped()).sum();
    let forwarded: u64 = statuses.iter().map(|s| s.node.forwarded).sum();
    let syncs: u64 = statuses.iter().map(|s| s.sync.sessions_started).sum();
    let checked: u64 = statuses.iter().map(|s| s.node.signatures_checked).sum();
    let messages: u64 = statuses.iter().map(|s| s.messages_received).sum();
    println!(
        "  datagrams: {sent} sent, {received} received ({} not received, or not yet), \
         {dropped} dropped by nodes; {syncs} reconciliations, {forwarded} envelopes forwarded; \
         {checked} signature checks for {messages} messages received",
        sent.saturating_sub(received)
    );
    let total = (ROOM_MESSAGES / senders * senders) as f64;
    let per_node: Option<Vec<f64>> = handles
        .iter()
        .zip(&node_cpu_before)
        .map(|(handle, before)| {
            let used = handle.network_cpu_time()?.checked_sub((*before)?)?;
            Some(used.as_secs_f64() * 1e6 / total)
        })
        .collect();
    match per_node {
        Some(costs) => {
            let busiest = costs.iter().copied().fold(0.0, f64::max);
            println!(
                "  network-thread CPU per room message, node by node: {} µs; with a core \
                 of its own the busiest node would keep up with {:.0} msg/s",
                costs
                    .iter()
                    .map(|c| format!("{c:.1}"))
                    .collect::<Vec<_>>()
                    .join(" / "),
                1e6 / busiest
            );
        }
        None => println!("  network-thread CPU: not available on this platform"),
    }
    rate
}

/// User + system CPU time this process (all its threads) has used.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// A `kith daemon` child process, stopped with SIGTERM (then SIGKILL if it
/// lingers) however the bench ends.
struct DaemonProcess(Child);

impl DaemonProcess {
    /// SIGTERM, then up to 10 s for a clean exit.
    fn stop(&mut self) -> Result<(), String> {
        if self.0.try_wait().ok().flatten().is_some() {
            return Ok(());
        }
        let pid = libc::pid_t::try_from(self.0.id()).map_err(|e| e.to_string())?;
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().map_err(|e| e.to_string())? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("the daemon exited with {status} after SIGTERM"))
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("the daemon ignored SIGTERM for 10 s".into())
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if self.stop().is_err() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The target dir this bench was built in: the executable is
/// `TARGET/release/deps/node-HASH`.
fn target_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    exe.ancestors()
        .nth(3)
        .map(Path::to_owned)
        .ok_or_else(|| format!("cannot find the target dir above {}", exe.display()))
}

/// Builds the release `kith` binary (headless) and returns its path.
fn build_kith() -> Result<PathBuf, String> {
    let target = target_dir()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--no-default-features",
            "--bin",
            "kith",
        ])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build of the kith binary failed: {status}"));
    }
    let binary = target.join("release").join("kith");
    if binary.exists() {
        Ok(binary)
    } else {
        Err(format!("no binary at {}", binary.display()))
    }
}

/// Reads a `kB` field of `/proc/PID/status`.
fn proc_status_kib(pid: u32, field: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().strip_suffix("kB")?.trim().parse().ok())
        .ok_or_else(|| format!("no {field} in /proc/{pid}/status"))
}

/// An account with the production KDF and [`IDLE_MESSAGES`] messages in one
/// room, served by a `kith daemon` process: (VmRSS, VmHWM) in kB once it
/// has idled for [`IDLE_SETTLE`].
fn idle_rss() -> Result<(u64, u64), String> {
    let kith = build_kith()?;
    let dir = TempDir::new("idle");
    {
        let mut account = Account::create(&dir.data(), PASS, KdfParams::default())
            .map_err(|e| format!("cannot create an account: {e}"))?;
        let room = RoomId([3; 32]);
        let sender = PeerId([7; 32]);
        let started = Instant::now();
        for first in (0..IDLE_MESSAGES).step_by(1_000) {
            let batch: Vec<Message> = (first..first + 1_000)
                .map(|n| Message {
                    id: MessageId(*blake3::hash(&n.to_le_bytes()).as_bytes()),
                    room,
                    sender,
                    sender_seq: n,
                    timestamp: (1_700_000_000_000 + n) << 16,
                    body: text(n as usize).into_bytes(),
                    // About what a signed envelope adds to a 200-byte body.
                    envelope: vec![b'e'; BODY + 96],
                })
                .collect();
            account
                .store
                .insert_messages(&batch)
                .map_err(|e| format!("cannot store messages: {e}"))?;
        }
        println!(
            "stored {IDLE_MESSAGES} messages in {:.2?}",
            started.elapsed()
        );
    }
    let mut child = Command::new(&kith)
        .args(["daemon", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.data())
        .env("KITH_PASSPHRASE", PASS)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", kith.display()))?;
    let stdout = child.stdout.take();
    let mut daemon = DaemonProcess(child);
    let pid = daemon.0.id();
    // A thread reads the output so the wait for the line is bounded.
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = stdout {
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let started = Instant::now();
    loop {
        let left = PATIENCE.saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with("listening") => break,
            Ok(_) => {}
            Err(e) => return Err(format!("the daemon never said it was listening: {e}")),
        }
    }
    println!(
        "daemon pid {pid} listening {:.2?} after spawn (unlock with Argon2id included)",
        started.elapsed()
    );
    std::thread::sleep(IDLE_SETTLE);
    let rss = proc_status_kib(pid, "VmRSS")?;
    let peak = proc_status_kib(pid, "VmHWM")?;
    daemon.stop()?;
    Ok((rss, peak))
}
