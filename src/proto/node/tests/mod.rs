//! Unit tests: two nodes wired back to back, every datagram visible, so
//! single decisions (who answers a handshake, what gets dropped and why) can
//! be asserted directly.
//!
//! One file per topic: `transport` (sealed frames, replays, forgeries,
//! padding), `handshakes` (opening, retransmitting, probing, rekeying),
//! `strangers` (peers we do not know, openings in a contact's name),
//! `hostile` (malformed commands and payloads), `bursts` (batched
//! signatures), `rooms` (group rooms, invitations, chains across restarts)
//! and `history` (forwarded envelopes). This file holds the shared wiring.

mod bursts;
mod handshakes;
mod history;
mod hostile;
mod rooms;
mod strangers;
mod transport;

use super::*;
use std::time::Duration;

use super::control::control_from_distribution;
use crate::proto::crypto::{ChainSnapshot, Envelope, Initiator, SecretKey};
use crate::proto::wire;

fn identity(seed: u64) -> Identity {
    Identity::generate(&mut StdRng::seed_from_u64(seed))
}

fn node(seed: u64, now: Instant) -> Node {
    Node::new(
        identity(seed),
        NodeConfig::default(),
        StdRng::seed_from_u64(seed + 1000),
        now,
    )
}

/// Two contacts, each reachable by the other.
fn pair(now: Instant) -> (Node, Node) {
    let mut a = node(1, now);
    let mut b = node(2, now);
    let (pa, pb) = (identity(1).public(), identity(2).public());
    let (ida, idb) = (pa.peer_id(), pb.peer_id());
    a.add_contact(now, pb);
    b.add_contact(now, pa);
    a.set_reachable(now, idb, true);
    b.set_reachable(now, ida, true);
    (a, b)
}

fn transmits(node: &mut Node) -> Vec<NodeTransmit> {
    std::iter::from_fn(|| node.poll_transmit()).collect()
}

fn events(node: &mut Node) -> Vec<NodeEvent> {
    std::iter::from_fn(|| node.poll_event()).collect()
}

/// Everything both nodes sent, in order, while running for `duration` of
/// virtual time with instant delivery. Events are collected, not confirmed.
struct Run {
    wire: Vec<(bool, Vec<u8>)>,
    a_events: Vec<NodeEvent>,
    b_events: Vec<NodeEvent>,
}

fn run(a: &mut Node, b: &mut Node, now: &mut Instant, duration: Duration) -> Run {
    let until = *now + duration;
    let mut out = Run {
        wire: Vec::new(),
        a_events: Vec::new(),
        b_events: Vec::new(),
    };
    loop {
        loop {
            let from_a = transmits(a);
            let from_b = transmits(b);
            if from_a.is_empty() && from_b.is_empty() {
                break;
            }
            for t in from_a {
                let _ = b.handle_datagram(*now, &t.bytes);
                out.wire.push((true, t.bytes));
            }
            for t in from_b {
                let _ = a.handle_datagram(*now, &t.bytes);
                out.wire.push((false, t.bytes));
            }
        }
        out.a_events.extend(events(a));
        out.b_events.extend(events(b));
        let next = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(t) if t <= until => {
                *now = (*now).max(t);
                a.handle_timeout(*now);
                b.handle_timeout(*now);
            }
            _ => {
                *now = until;
                return out;
            }
        }
    }
}

fn received(events: &[NodeEvent]) -> Vec<(Vec<u8>, Receipt)> {
    events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::MessageReceived { body, receipt, .. } => Some((body.clone(), *receipt)),
            _ => None,
        })
        .collect()
}

fn delivered(events: &[NodeEvent]) -> Vec<MessageId> {
    events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::Delivered { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

/// The session id of a sealed frame.
fn sealed_session(bytes: &[u8]) -> [u8; 16] {
    match Datagram::parse(bytes) {
        Ok(Datagram {
            frame: Frame::Sealed { session, .. },
            ..
        }) => session,
        other => panic!("not a sealed frame: {other:?}"),
    }
}

/// A sealed frame moved to another session id (what an attacker can do
/// now that no sender id travels).
fn with_session(bytes: &[u8], session: [u8; 16]) -> Vec<u8> {
    let Ok(Datagram {
        frame: Frame::Sealed {
            counter,
            ciphertext,
            ..
        },
        ..
    }) = Datagram::parse(bytes)
    else {
        panic!("not a sealed frame");
    };
    Datagram {
        from: None,
        frame: Frame::Sealed {
            session,
            counter,
            ciphertext,
        },
    }
    .emit()
    .expect("valid frame")
}

/// A's datagrams for `texts`, sent as direct messages to B (a session is
/// up), in order.
fn direct_datagrams(a: &mut Node, b: &Node, now: Instant, texts: &[&str]) -> Vec<Vec<u8>> {
    for text in texts {
        a.send_direct(now, b.peer_id(), text).expect("send");
    }
    transmits(a).into_iter().map(|t| t.bytes).collect()
}

/// A's datagrams for `texts`, sent to group room `room`, in order.
fn room_datagrams(a: &mut Node, room: RoomId, now: Instant, texts: &[&str]) -> Vec<Vec<u8>> {
    for text in texts {
        a.send_room_message(now, room, text).expect("send");
    }
    transmits(a).into_iter().map(|t| t.bytes).collect()
}

/// Stores whatever `events` hands over for storing.
fn confirm_all(node: &mut Node, now: Instant, events: &[NodeEvent]) {
    for (_, receipt) in received(events) {
        node.confirm_stored(now, receipt);
    }
}

/// B with a session to A and A's first message stored.
fn warmed_pair() -> (Node, Node, Instant) {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(now);
    a.send_direct(now, b.peer_id(), "warm-up").expect("send");
    let trace = run(&mut a, &mut b, &mut now, Duration::from_secs(1));
    confirm_all(&mut b, now, &trace.b_events);
    let _ = run(&mut a, &mut b, &mut now, Duration::from_secs(1));
    (a, b, now)
}

/// A warmed pair that also shares group room `room`, where A's first
/// message is stored.
fn warmed_room() -> (Node, Node, RoomId, Instant) {
    let (mut a, mut b, mut now) = warmed_pair();
    let room = a.create_room(now, "warm", &[b.peer_id()]).expect("room");
    let _ = run(&mut a, &mut b, &mut now, Duration::from_millis(300));
    b.accept_invite(now, room).expect("accept");
    let _ = run(&mut a, &mut b, &mut now, Duration::from_millis(300));
    a.send_room_message(now, room, "warm-up").expect("send");
    let trace = run(&mut a, &mut b, &mut now, Duration::from_secs(1));
    confirm_all(&mut b, now, &trace.b_events);
    let _ = run(&mut a, &mut b, &mut now, Duration::from_secs(1));
    (a, b, room, now)
}

/// B takes `datagrams` in one burst; returns the bodies it surfaced.
fn burst(b: &mut Node, now: Instant, datagrams: &[Vec<u8>]) -> Vec<Vec<u8>> {
    b.begin_burst();
    for bytes in datagrams {
        assert!(b.handle_datagram(now, bytes).is_ok(), "{:?}", b.stats());
    }
    b.end_burst(now);
    let got = events(b);
    confirm_all(b, now, &got);
    received(&got).into_iter().map(|(body, _)| body).collect()
}
