//! Network loop figures on loopback, printed side by side with raw sockets:
//!
//! 1. ping-pong RTT between two plain blocking UDP sockets (the floor);
//! 2. the same through two `net` loops: a pinger driver and an echo driver,
//!    measured by the pinger's `now` (loop to loop);
//! 3. the application's path: command in through the channel + waker, the
//!    echo's arrival out through the driver's channel (thread to thread);
//! 4. one-way datagrams per second through the loop (one loop blasts, the
//!    other counts what it receives).
//!
//! Run: `cargo bench --no-default-features --bench net`.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kith::net::{self, Destination, Driver, NetConfig, Transmit, Via};

const ROUNDS: usize = 20_000;
const WARMUP: usize = 1_000;
const PING_BYTES: usize = 64;
const BLAST: u64 = 300_000;
const BLAST_BYTES: usize = 200;
const PATIENCE: Duration = Duration::from_secs(30);

fn main() {
    println!(
        "kith net bench, loopback, {ROUNDS} round trips of {PING_BYTES} B after {WARMUP} warm-up"
    );
    let raw = raw_ping_pong();
    let looped = loop_ping_pong();
    let app = app_ping_pong();
    println!(
        "{:<44} {:>9} {:>9} {:>9}",
        "RTT", "p50 µs", "p99 µs", "max µs"
    );
    for (name, rtts) in [
        ("raw sockets (blocking send/recv)", &raw),
        ("two mio loops (driver to driver)", &looped),
        ("two mio loops (command in, event out)", &app),
    ] {
        println!(
            "{name:<44} {:>9.1} {:>9.1} {:>9.1}",
            micros(percentile(rtts, 50.0)),
            micros(percentile(rtts, 99.0)),
            micros(percentile(rtts, 100.0)),
        );
    }
    println!(
        "loop/raw p50 ratio: {:.2} (driver to driver), {:.2} (command in, event out)",
        percentile(&looped, 50.0).as_secs_f64() / percentile(&raw, 50.0).as_secs_f64(),
        percentile(&app, 50.0).as_secs_f64() / percentile(&raw, 50.0).as_secs_f64(),
    );
    raw_one_way_throughput();
    one_way_throughput();
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let index = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[index]
}

fn raw_ping_pong() -> Vec<Duration> {
    let server = UdpSocket::bind("127.0.0.1:0").expect("bench: binding loopback works");
    let client = UdpSocket::bind("127.0.0.1:0").expect("bench: binding loopback works");
    server
        .set_read_timeout(Some(PATIENCE))
        .expect("bench: timeout");
    client
        .set_read_timeout(Some(PATIENCE))
        .expect("bench: timeout");
    let server_addr = server.local_addr().expect("bench: bound");
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        for _ in 0..WARMUP + ROUNDS {
            let (len, from) = server.recv_from(&mut buf).expect("bench: ping arrives");
            server.send_to(&buf[..len], from).expect("bench: pong sent");
        }
    });
    let mut buf = [0u8; 2048];
    let ping = [7u8; PING_BYTES];
    let mut rtts = Vec::with_capacity(ROUNDS);
    for round in 0..WARMUP + ROUNDS {
        let start = Instant::now();
        client
            .send_to(&ping, server_addr)
            .expect("bench: ping sent");
        client.recv_from(&mut buf).expect("bench: pong arrives");
        if round >= WARMUP {
            rtts.push(start.elapsed());
        }
    }
    echo.join().expect("bench: echo thread finished");
    rtts
}

/// Echoes every datagram to its sender.
#[derive(Default)]
struct Echo {
    outbox: VecDeque<Transmit>,
}

impl Driver for Echo {
    type Command = ();
    fn handle_datagram(&mut self, _: Instant, from: SocketAddr, _: Via, bytes: &[u8]) {
        self.outbox.push_back(Transmit {
            to: Destination::Addr(from),
            bytes: bytes.to_vec(),
        });
    }
    fn handle_timeout(&mut self, _: Instant) {}
    fn handle_command(&mut self, _: Instant, (): ()) {}
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        None
    }
}

/// Pings a peer, times each answer with the loop's `now`, and pings again
/// at once, until it has enough samples.
struct Pinger {
    peer: SocketAddr,
    sent_at: Option<Instant>,
    rounds: usize,
    rtts: Vec<Duration>,
    outbox: Option<Transmit>,
    done: mpsc::Sender<Vec<Duration>>,
}

impl Pinger {
    fn ping(&mut self, now: Instant) {
        self.sent_at = Some(now);
        self.outbox = Some(Transmit {
            to: Destination::Addr(self.peer),
            bytes: vec![7; PING_BYTES],
        });
    }
}

impl Driver for Pinger {
    type Command = ();
    fn handle_datagram(&mut self, now: Instant, _: SocketAddr, _: Via, _: &[u8]) {
        let Some(sent_at) = self.sent_at.take() else {
            return;
        };
        self.rounds += 1;
        if self.rounds > WARMUP {
            self.rtts.push(now - sent_at);
        }
        if self.rounds < WARMUP + ROUNDS {
            self.ping(Instant::now());
        } else {
            let _ = self.done.send(std::mem::take(&mut self.rtts));
        }
    }
    fn handle_timeout(&mut self, _: Instant) {}
    fn handle_command(&mut self, now: Instant, (): ()) {
        self.ping(now);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.take()
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        None
    }
}

fn loop_ping_pong() -> Vec<Duration> {
    let echo = net::spawn(NetConfig::loopback(), Echo::default()).expect("bench: echo loop");
    let (done, rtts) = mpsc::channel();
    let pinger = Pinger {
        peer: echo.local_addr(),
        sent_at: None,
        rounds: 0,
        rtts: Vec::with_capacity(ROUNDS),
        outbox: None,
        done,
    };
    let pinger = net::spawn(NetConfig::loopback(), pinger).expect("bench: pinger loop");
    pinger.send(()).expect("bench: pinger running");
    let rtts = rtts.recv_timeout(PATIENCE).expect("bench: pings finish");
    pinger.shutdown().expect("bench: pinger stops");
    echo.shutdown().expect("bench: echo stops");
    rtts
}

/// Sends on command and reports every arrival on a channel, like a node
/// that gets a `send` from the UI and reports an event back.
struct Relay {
    outbox: Option<Transmit>,
    arrivals: mpsc::Sender<()>,
}

impl Driver for Relay {
    type Command = SocketAddr;
    fn handle_datagram(&mut self, _: Instant, _: SocketAddr, _: Via, _: &[u8]) {
        let _ = self.arrivals.send(());
    }
    fn handle_timeout(&mut self, _: Instant) {}
    fn handle_command(&mut self, _: Instant, to: SocketAddr) {
        self.outbox = Some(Transmit {
            to: Destination::Addr(to),
            bytes: vec![7; PING_BYTES],
        });
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.take()
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        None
    }
}

fn app_ping_pong() -> Vec<Duration> {
    let echo = net::spawn(NetConfig::loopback(), Echo::default()).expect("bench: echo loop");
    let (arrivals, arrived) = mpsc::channel();
    let relay = Relay {
        outbox: None,
        arrivals,
    };
    let relay = net::spawn(NetConfig::loopback(), relay).expect("bench: relay loop");
    let mut rtts = Vec::with_capacity(ROUNDS);
    for round in 0..WARMUP + ROUNDS {
        let start = Instant::now();
        relay.send(echo.local_addr()).expect("bench: relay running");
        arrived.recv_timeout(PATIENCE).expect("bench: echo arrives");
        if round >= WARMUP {
            rtts.push(start.elapsed());
        }
    }
    relay.shutdown().expect("bench: relay stops");
    echo.shutdown().expect("bench: echo stops");
    rtts
}

/// Sends `BLAST` datagrams as fast as the loop takes them.
struct Blaster {
    peer: SocketAddr,
    left: u64,
}

impl Driver for Blaster {
    type Command = u64;
    fn handle_datagram(&mut self, _: Instant, _: SocketAddr, _: Via, _: &[u8]) {}
    fn handle_timeout(&mut self, _: Instant) {}
    fn handle_command(&mut self, _: Instant, count: u64) {
        self.left = count;
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.left = self.left.checked_sub(1)?;
        Some(Transmit {
            to: Destination::Addr(self.peer),
            bytes: vec![7; BLAST_BYTES],
        })
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        None
    }
}

/// Counts arrivals; reports (count, first, last) once nothing has arrived
/// for a while.
struct Counter {
    count: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    report: mpsc::Sender<(u64, Duration)>,
}

const QUIET: Duration = Duration::from_millis(300);

impl Driver for Counter {
    type Command = ();
    fn handle_datagram(&mut self, now: Instant, _: SocketAddr, _: Via, _: &[u8]) {
        self.count += 1;
        self.first.get_or_insert(now);
        self.last = Some(now);
    }
    fn handle_timeout(&mut self, _: Instant) {
        if let (Some(first), Some(last)) = (self.first.take(), self.last.take()) {
            let _ = self.report.send((self.count, last - first));
        }
    }
    fn handle_command(&mut self, _: Instant, (): ()) {}
    fn poll_transmit(&mut self) -> Option<Transmit> {
        None
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        self.last.map(|last| last + QUIET)
    }
}

/// The floor for one-way throughput: a plain socket blasting at a plain
/// socket read by another thread (both with the loop's 4 MiB buffers).
fn raw_one_way_throughput() {
    let buffered = || {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
            .expect("bench: a UDP socket");
        let _ = socket.set_recv_buffer_size(net::DEFAULT_SOCKET_BUFFER_BYTES);
        let _ = socket.set_send_buffer_size(net::DEFAULT_SOCKET_BUFFER_BYTES);
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("bench: valid address");
        socket
            .bind(&addr.into())
            .expect("bench: binding loopback works");
        UdpSocket::from(socket)
    };
    let receiver = buffered();
    let sender = buffered();
    receiver
        .set_read_timeout(Some(QUIET))
        .expect("bench: timeout");
    let to = receiver.local_addr().expect("bench: bound");
    let counting = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let (mut count, mut first, mut last) = (0u64, None, None);
        while receiver.recv_from(&mut buf).is_ok() {
            let now = Instant::now();
            count += 1;
            first.get_or_insert(now);
            last = Some(now);
        }
        let span = match (first, last) {
            (Some(first), Some(last)) => last - first,
            _ => Duration::ZERO,
        };
        (count, span)
    });
    let payload = [7u8; BLAST_BYTES];
    let start = Instant::now();
    let mut sent = 0u64;
    for _ in 0..BLAST {
        if sender.send_to(&payload, to).is_ok() {
            sent += 1;
        }
    }
    let wall = start.elapsed();
    let (received, span) = counting.join().expect("bench: counting thread finished");
    println!(
        "one-way raw sockets, {BLAST_BYTES} B:         sent {sent} in ≈{:.2} s ({:.0}/s), received {received} ({:.0}/s over the receiver's span, {:.1} % lost in the kernel)",
        wall.as_secs_f64(),
        sent as f64 / wall.as_secs_f64(),
        received as f64 / span.as_secs_f64().max(f64::EPSILON),
        100.0 * sent.saturating_sub(received) as f64 / sent.max(1) as f64,
    );
}

fn one_way_throughput() {
    let (report, reported) = mpsc::channel();
    let counter = Counter {
        count: 0,
        first: None,
        last: None,
        report,
    };
    let counter = net::spawn(NetConfig::loopback(), counter).expect("bench: counter loop");
    let blaster = Blaster {
        peer: counter.local_addr(),
        left: 0,
    };
    let blaster = net::spawn(NetConfig::loopback(), blaster).expect("bench: blaster loop");
    let start = Instant::now();
    blaster.send(BLAST).expect("bench: blaster running");
    let (received, span) = reported
        .recv_timeout(PATIENCE)
        .expect("bench: the counter reports");
    let wall = start.elapsed().saturating_sub(QUIET);
    let stats = blaster.shared_stats();
    blaster.shutdown().expect("bench: blaster stops");
    let sent = stats.snapshot();
    let counted = counter.stats();
    counter.shutdown().expect("bench: counter stops");
    println!(
        "one-way through two loops, {BLAST_BYTES} B:   sent {} in ≈{:.2} s ({:.0}/s), received {} ({:.0}/s over the receiver's span, {:.1} % lost in the kernel), would-block {}, queue drops {}, send errors {}",
        sent.sent,
        wall.as_secs_f64(),
        sent.sent as f64 / wall.as_secs_f64(),
        received,
        received as f64 / span.as_secs_f64(),
        100.0 * (sent.sent.saturating_sub(counted.received)) as f64 / sent.sent.max(1) as f64,
        sent.send_would_block,
        sent.queue_drops,
        sent.send_errors,
    );
}
