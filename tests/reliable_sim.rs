//! Seeded simulator scenarios for the reliable delivery core.
//!
//! Every scenario runs over many seeds and asserts the same invariants:
//! every message reaches every live member exactly once and in per-sender
//! order, the sender hears `Delivered` exactly once per member (and only
//! after the store committed), no buffer grows past its bound, and once
//! everything is acknowledged the network falls silent and no timer is left.

use std::time::Duration;

use kith::proto::reliable::{Config, Event, FanOut, MAX_MESSAGE, PacketKind, RoomConfig};
use kith::proto::sim::{LinkConfig, Sim, SimConfig};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use kith::proto::ids::RoomId;

/// Expected (receipts, deliveries) once everything arrived: every message
/// reaches `members - 1` others.
fn expected(sim: &Sim, room: RoomId, members: &[usize]) -> usize {
    sim.sent.iter().filter(|(_, r, _)| *r == room).count() * (members.len() - 1)
}

/// Whether every receipt and every delivery report happened.
fn complete(sim: &Sim, room: RoomId, members: &[usize]) -> bool {
    let want = expected(sim, room, members);
    let received: usize = members.iter().map(|&m| sim.node(m).received.len()).sum();
    let delivered: usize = members.iter().map(|&m| sim.node(m).delivered.len()).sum();
    received >= want && delivered >= want
}

/// Exactly once, in per-sender order, and delivery reported once per member.
fn assert_exactly_once(sim: &Sim, room: RoomId, members: &[usize], label: &str) {
    for &receiver in members {
        for &sender in members.iter().filter(|&&s| s != receiver) {
            let sent: Vec<_> = sim
                .sent
                .iter()
                .filter(|(s, r, _)| *s == sender && *r == room)
                .map(|(_, _, id)| *id)
                .collect();
            let got: Vec<_> = sim
                .node(receiver)
                .received
                .iter()
                .filter(|m| m.from == sim.id(sender) && m.room == room)
                .map(|m| m.id)
                .collect();
            assert_eq!(
                got, sent,
                "{label}: node {receiver} from {sender}: order or exactly-once broken"
            );
            for id in &sent {
                let reports = sim
                    .node(sender)
                    .delivered
                    .get(&(room, sim.id(receiver), *id));
                assert_eq!(
                    reports,
                    Some(&1),
                    "{label}: delivery of {id:?} to {receiver} reported {reports:?}"
                );
            }
        }
    }
}

/// After completion: the wire falls silent, no timer is armed, every queue
/// is empty, and no buffer ever exceeded its configured bound.
fn assert_quiet_and_bounded(sim: &mut Sim, label: &str) {
    sim.run_for(Duration::from_secs(2));
    let before = sim.wire;
    sim.run_for(Duration::from_secs(60));
    assert_eq!(
        sim.wire.total(),
        before.total(),
        "{label}: packets still sent after everything was acknowledged"
    );
    let config = Config::default();
    for (i, node) in sim.nodes().iter().enumerate() {
        assert_eq!(
            node.endpoint.poll_timeout(),
            None,
            "{label}: node {i} still has a timer"
        );
        let usage = node.endpoint.buffer_usage();
        assert_eq!(usage.queued_packets, 0, "{label}: node {i} send queue");
        assert_eq!(usage.reassembly_packets, 0, "{label}: node {i} reassembly");
        assert_eq!(
            usage.reassembly_bytes, 0,
            "{label}: node {i} reassembly bytes"
        );
        assert_eq!(usage.unconfirmed, 0, "{label}: node {i} unconfirmed");
        assert_eq!(
            usage.retransmit_queue, 0,
            "{label}: node {i} retransmit queue"
        );
        let peak = node.peak;
        assert!(
            peak.queued_packets <= config.max_queued,
            "{label}: node {i} peak queue {}",
            peak.queued_packets
        );
        assert!(peak.reassembly_bytes <= config.max_reassembly_per_peer * (sim.nodes().len() - 1));
        assert!(
            peak.reassembly_packets as u64 <= config.recv_window * (sim.nodes().len() as u64 - 1)
        );
        assert!(peak.unconfirmed <= config.max_unconfirmed * (sim.nodes().len() - 1));
        assert!(peak.dedup_ids <= config.dedup_capacity);
        assert!(peak.retransmit_queue <= config.max_queued * (sim.nodes().len() - 1) + 64);
    }
}

/// Sends `messages` messages from random members at random short intervals;
/// every seventh is large (fragmented, up to 64 KiB).
fn send_traffic(sim: &mut Sim, room: RoomId, members: &[usize], messages: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    for k in 0..messages {
        let from = members[rng.random_range(0..members.len())];
        let len = if k % 7 == 3 {
            rng.random_range(1000..=MAX_MESSAGE)
        } else {
            rng.random_range(0..300)
        };
        sim.send(from, room, len)
            .expect("queue has room for the test traffic");
        sim.run_for(Duration::from_micros(rng.random_range(0..4000)));
    }
}

fn scenario(seed: u64, nodes: usize, link: LinkConfig, messages: usize) -> Sim {
    let mut sim = Sim::new(
        SimConfig {
            seed,
            link,
            ..SimConfig::default()
        },
        nodes,
    );
    let members: Vec<usize> = (0..nodes).collect();
    let room = sim.create_room(
        &members,
        RoomConfig {
            multicast: nodes > 2,
        },
    );
    send_traffic(&mut sim, room, &members, messages, seed);
    let label = format!("seed {seed}, {nodes} nodes");
    assert!(
        sim.run_until(Duration::from_secs(300), |s| complete(s, room, &members)),
        "{label}: did not complete"
    );
    assert_exactly_once(&sim, room, &members, &label);
    assert_quiet_and_bounded(&mut sim, &label);
    sim
}

#[test]
fn two_nodes_lossless() {
    for seed in 0..10 {
        let sim = scenario(seed, 2, LinkConfig::default(), 60);
        // Without loss nothing is ever resent.
        let retransmits: u64 = sim
            .nodes()
            .iter()
            .map(|n| n.endpoint.stats().retransmits)
            .sum();
        assert_eq!(retransmits, 0, "seed {seed}");
    }
}

#[test]
fn two_nodes_lossy_with_duplication_and_reordering() {
    for loss in [0.1, 0.3] {
        for seed in 0..10 {
            scenario(seed, 2, LinkConfig::lossy(loss), 60);
        }
    }
}

#[test]
fn five_node_room_lossless() {
    for seed in 0..6 {
        let sim = scenario(seed, 5, LinkConfig::default(), 60);
        let retransmits: u64 = sim
            .nodes()
            .iter()
            .map(|n| n.endpoint.stats().retransmits)
            .sum();
        assert_eq!(retransmits, 0, "seed {seed}");
        assert_eq!(sim.wire.of(PacketKind::Nack), 0, "seed {seed}");
    }
}

#[test]
fn five_node_room_lossy_with_duplication_and_reordering() {
    for loss in [0.1, 0.3] {
        for seed in 0..6 {
            scenario(seed, 5, LinkConfig::lossy(loss), 60);
        }
    }
}
