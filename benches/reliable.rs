//! Reliable-layer figures: packets on the wire per delivered message in a
//! simulated 5-node room, and core CPU time per message.
//!
//! Run with `cargo bench --bench reliable`. Prints a table; no harness.

use std::time::{Duration, Instant};

use kith::proto::ids::{MessageId, PeerId, RoomId};
use kith::proto::reliable::{Config, Event, PacketKind, Reliable, RoomConfig, Via};
use kith::proto::sim::{LinkConfig, Sim, SimConfig};
use kith::proto::wire;
use rand::SeedableRng;
use rand::rngs::StdRng;

const MESSAGES: usize = 10_000;
const NODES: usize = 5;
const PAYLOAD: usize = 200;

struct Outcome {
    wire: kith::proto::sim::WireStats,
    virtual_time: Duration,
    wall: Duration,
}

/// 10k messages, senders in turn, `rate` messages per second in total.
fn room_run(link: LinkConfig, rate: u64, seed: u64) -> Outcome {
    let mut sim = Sim::new(
        SimConfig {
            seed,
            link,
            ..SimConfig::default()
        },
        NODES,
    );
    let members: Vec<usize> = (0..NODES).collect();
    let room = sim.create_room(&members, RoomConfig::default());
    let gap = Duration::from_nanos(1_000_000_000 / rate);
    let started = Instant::now();
    for k in 0..MESSAGES {
        sim.send(k % NODES, room, PAYLOAD)
            .expect("the queue keeps up at this rate");
        sim.run_for(gap);
    }
    let want = MESSAGES * (NODES - 1);
    let done = sim.run_until(Duration::from_secs(600), |s| {
        s.nodes().iter().map(|n| n.received.len()).sum::<usize>() >= want
            && s.nodes().iter().map(|n| n.delivered.len()).sum::<usize>() >= want
    });
    assert!(done, "the run did not complete");
    // Let the last ACKs settle so they are counted.
    sim.run_for(Duration::from_secs(5));
    let wall = started.elapsed();
    Outcome {
        wire: sim.wire(),
        virtual_time: sim.elapsed(),
        wall,
    }
}

/// Core CPU per message without the simulator: one sender, one receiver,
/// lossless, hand-pumped, both directions' work included.
fn core_cpu_per_message() -> Duration {
    let start = Instant::now();
    let (p1, p2, room) = (PeerId([1; 32]), PeerId([2; 32]), RoomId([3; 32]));
    let mut a = Reliable::new(p1, Config::default(), StdRng::seed_from_u64(1), start);
    let mut b = Reliable::new(p2, Config::default(), StdRng::seed_from_u64(2), start);
    a.join_room(room, RoomConfig { multicast: false }, [p2]);
    b.join_room(room, RoomConfig { multicast: false }, [p1]);
    let payload = vec![7u8; PAYLOAD];
    let ids: Vec<MessageId> = (0..MESSAGES as u64)
        .map(|n| MessageId(*blake3::hash(&n.to_le_bytes()).as_bytes()))
        .collect();
    let timer = Instant::now();
    let mut now = start;
    let mut delivered = 0;
    for id in &ids {
        now += Duration::from_micros(200);
        a.send(now, room, *id, &payload).expect("queue keeps up");
        while let Some(t) = a.poll_transmit(now) {
            let _ = b.handle_datagram(now, p1, Via::Unicast, &t.bytes);
        }
        while let Some(event) = b.poll_event() {
            if let Event::Received { from, seq, .. } = event {
                b.confirm_stored(now, room, from, seq);
            }
        }
        if b.poll_timeout().is_some_and(|t| t <= now) {
            b.handle_timeout(now);
        }
        while let Some(t) = b.poll_transmit(now) {
            let _ = a.handle_datagram(now, p2, Via::Unicast, &t.bytes);
        }
        while let Some(event) = a.poll_event() {
            delivered += usize::from(matches!(event, Event::Delivered { .. }));
        }
        if a.poll_timeout().is_some_and(|t| t <= now) {
            a.handle_timeout(now);
        }
    }
    let elapsed = timer.elapsed();
    assert!(delivered > MESSAGES * 9 / 10, "only {delivered} delivered");
    elapsed / MESSAGES as u32
}

/// What padding sealed datagrams to size buckets costs: 1:1, lossless,
/// `count` messages of `payload` bytes each way through the reliable layer,
/// every packet (data and ACKs) counted as the sealed datagram it becomes,
/// once at its exact size and once padded to its bucket.
fn padding_bytes(payload: usize, count: u64) -> (u64, u64) {
    let start = Instant::now();
    let (p1, p2, room) = (PeerId([1; 32]), PeerId([2; 32]), RoomId([3; 32]));
    let mut a = Reliable::new(p1, Config::default(), StdRng::seed_from_u64(1), start);
    let mut b = Reliable::new(p2, Config::default(), StdRng::seed_from_u64(2), start);
    a.join_room(room, RoomConfig { multicast: false }, [p2]);
    b.join_room(room, RoomConfig { multicast: false }, [p1]);
    let (mut exact, mut padded) = (0u64, 0u64);
    let mut count_packet = |len: usize| {
        exact += (wire::SEALED_OVERHEAD + len) as u64;
        padded +=
            (wire::SEALED_OVERHEAD + wire::pad(&vec![0; len], wire::SEALED_OVERHEAD).len()) as u64;
    };
    let mut now = start;
    for n in 0..count {
        now += Duration::from_millis(50);
        let id = MessageId(*blake3::hash(&n.to_le_bytes()).as_bytes());
        a.send(now, room, id, &vec![7u8; payload])
            .expect("queue keeps up");
        for _ in 0..4 {
            while let Some(t) = a.poll_transmit(now) {
                count_packet(t.bytes.len());
                let _ = b.handle_datagram(now, p1, Via::Unicast, &t.bytes);
            }
            while let Some(event) = b.poll_event() {
                if let Event::Received { from, seq, .. } = event {
                    b.confirm_stored(now, room, from, seq);
                }
            }
            now += Duration::from_millis(5);
            b.handle_timeout(now);
            a.handle_timeout(now);
            while let Some(t) = b.poll_transmit(now) {
                count_packet(t.bytes.len());
                let _ = a.handle_datagram(now, p2, Via::Unicast, &t.bytes);
            }
            while a.poll_event().is_some() {}
        }
    }
    (exact, padded)
}

fn main() {
    padding_rows();
    println!("reliable: {MESSAGES} messages of {PAYLOAD} B in a {NODES}-node multicast room");
    println!(
        "{:<26} {:>7} {:>7} {:>6} {:>6} {:>6} {:>9} {:>11} {:>10}",
        "scenario", "data", "ack", "nack", "hb", "total", "pkt/msg", "pkt/receipt", "wall µs/msg"
    );
    let loss = |loss| LinkConfig {
        loss,
        ..LinkConfig::default()
    };
    let scenarios = [
        ("0% loss, 100 msg/s", loss(0.0), 100),
        ("0% loss, 1000 msg/s", loss(0.0), 1000),
        ("0% loss, 5000 msg/s", loss(0.0), 5000),
        ("10% loss, 100 msg/s", loss(0.1), 100),
        ("10% loss, 1000 msg/s", loss(0.1), 1000),
        ("10% loss+dup+reorder", LinkConfig::lossy(0.1), 1000),
        ("30% loss+dup+reorder", LinkConfig::lossy(0.3), 1000),
    ];
    for (name, link, rate) in scenarios {
        let outcome = room_run(link, rate, 42);
        let wire = outcome.wire;
        let total = wire.total() as f64;
        println!(
            "{:<26} {:>7} {:>7} {:>6} {:>6} {:>6} {:>9.3} {:>11.3} {:>10.1}",
            name,
            wire.of(PacketKind::Data),
            wire.of(PacketKind::Ack),
            wire.of(PacketKind::Nack),
            wire.of(PacketKind::Heartbeat),
            wire.total(),
            total / MESSAGES as f64,
            total / (MESSAGES * (NODES - 1)) as f64,
            outcome.wall.as_secs_f64() * 1e6 / MESSAGES as f64,
        );
        let _ = outcome.virtual_time;
    }
    println!("pkt/msg: datagrams on the wire (multicast counts once) per message sent to the room");
    println!("pkt/receipt: the same per (message, receiving member) delivery");
    println!("wall µs/msg: whole simulation (5 state machines + simulator), per message");
    println!(
        "core CPU per message, 1:1 lossless, sender + receiver: {:?}",
        core_cpu_per_message()
    );
}

/// What padding to size buckets costs in bytes (printed first: it is a
/// count, not a timing).
fn padding_rows() {
    println!(
        "padding to {:?}-byte buckets, 1:1 lossless, data + ACK datagrams:",
        wire::SIZE_BUCKETS
    );
    // 300 B is about a short chat message's envelope (86 B header, 66 B
    // signature and proof, the text and its tag); 64 KiB is the largest.
    for payload in [50usize, 300, 1_000, 4_000, 64 * 1024] {
        let count = if payload > 10_000 { 20 } else { 500 };
        let (exact, padded) = padding_bytes(payload, count);
        println!(
            "  {payload:>6} B messages: {exact:>9} B exact, {padded:>9} B padded, +{:.1} %  (goal: under +40 % for chat-sized messages)",
            (padded as f64 / exact as f64 - 1.0) * 100.0
        );
    }
}
