//! Seeded simulated-network scenarios for the node's properties, on the
//! daemon's real core and store ([`kith::daemon::sim::SimDaemon`], the
//! harness in `tests/sim_support/`) over the one simulator
//! ([`kith::proto::sim::Network`]), in virtual time.
//!
//! Every property here is stated through what a daemon shows: its events,
//! its history, its status drop counters, and what the wire carries.
//! Replayed, bit-flipped and relabelled datagrams are dropped and counted
//! and never reach the store; a blocked peer never reaches the store and
//! gets no answer; rooms keep exactly-once per member, members who were
//! strangers meet through the room, a member who joins later holds only
//! what was said since, a removed member reads nothing sent afterwards
//! (even with every group frame in its hands), a declined
//! invitation takes the decliner out; a partition heals by the
//! reconciliations the daemons schedule, even with the authors away, and
//! a blocked member's words are not stored even when forwarded.
//!
//! The modules go further, still on the real core: `delivery` (exactly
//! once, in order, "delivered" only once the receiver's store holds it,
//! checked after every step; offline peers; receiver restarts), `restarts`
//! (outbox resent unchanged, stale snapshots, a hundred restarts),
//! `chains` (origins forgotten, rotation, a stolen store opening nothing
//! later), `rooms` (successors, forged group frames, acknowledgements in
//! another's name), `disk` (a full disk, and chaos: full disks, kills and
//! partitions at random), `membership` (a room never split by removals,
//! invitations, kills and partitions). Node insides are read through
//! `SimDaemon::node` and stores through snapshots, as a thief would.

mod common;
mod sim_support;

#[path = "node_sim/chains.rs"]
mod chains;
#[path = "node_sim/delivery.rs"]
mod delivery;
#[path = "node_sim/disk.rs"]
mod disk;
#[path = "node_sim/membership.rs"]
mod membership;
#[path = "node_sim/restarts.rs"]
mod restarts;
#[path = "node_sim/rooms.rs"]
mod rooms;

use std::collections::BTreeSet;
use std::time::Duration;

use kith::daemon::sim::SimEvent;
use kith::daemon::{DaemonError, Event, Reply, Request, Target};
use kith::proto::ids::{MessageId, PeerId, RoomId};
use kith::proto::node::{DropReason, direct_room};
use kith::proto::reliable::Destination;
use kith::proto::sim::{Endpoint, LinkConfig};
use kith::proto::wire::{Datagram, Frame};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sim_support::{Cluster, ClusterConfig, RoomSent, multicast};

fn quiet() -> LinkConfig {
    LinkConfig::default()
}

fn is_sealed(bytes: &[u8]) -> bool {
    matches!(
        Datagram::parse(bytes),
        Ok(Datagram {
            frame: Frame::Sealed { .. },
            ..
        })
    )
}

fn direct(c: &Cluster, a: usize, b: usize) -> RoomId {
    direct_room(c.id(a), c.id(b))
}

/// Everyone sends `count` direct messages to everyone, with time passing.
fn chatter(c: &mut Cluster, count: usize) -> Vec<(usize, usize, MessageId)> {
    let n = c.hosts.len();
    let mut sent = Vec::new();
    for round in 0..count {
        for from in 0..n {
            for to in (0..n).filter(|to| *to != from) {
                sent.push((
                    from,
                    to,
                    c.send(from, to, &format!("{from}->{to} #{round}")),
                ));
            }
        }
        c.run_for(Duration::from_millis(20));
    }
    sent
}

/// Whether every one of `sent` was reported delivered to its sender.
fn all_delivered(c: &Cluster, sent: &[(usize, usize, MessageId)]) -> bool {
    sent.iter()
        .all(|(from, _, id)| c.delivered(*from).contains(id))
}

/// Each of `sent` is held exactly once by its recipient, readable, in
/// send order per sender; each was reported delivered exactly once.
fn check_exactly_once_in_order(c: &mut Cluster, sent: &[(usize, usize, MessageId)]) {
    let n = c.hosts.len();
    for to in 0..n {
        for from in (0..n).filter(|from| *from != to) {
            let want: Vec<MessageId> = sent
                .iter()
                .filter(|(f, t, _)| (*f, *t) == (from, to))
                .map(|(_, _, id)| *id)
                .collect();
            let room = direct(c, from, to);
            assert_eq!(c.held_from(to, room, from), want, "messages {from} -> {to}");
            let page = c.room_history(to, room);
            assert!(page.rows.iter().all(|r| r.text.is_some()), "readable");
        }
    }
    for (from, _, id) in sent {
        let times = c.delivered(*from).iter().filter(|d| *d == id).count();
        assert_eq!(times, 1, "Delivered exactly once");
    }
}

/// No loss: every sealed frame from 0 to 1 on the wire reached 1, so each
/// one injected again is a replay: dropped, counted, never stored; the
/// handshakes replayed start nothing; the chat goes on.
#[test]
fn replayed_traffic_is_dropped_and_counted() {
    let mut c = Cluster::new(400, 2, quiet());
    c.net.capture();
    c.run_for(Duration::from_millis(500));
    let mut sent = chatter(&mut c, 10);
    assert!(c.run_until(Duration::from_secs(120), |c| all_delivered(c, &sent)));
    c.run_for(Duration::from_secs(1));
    let room = direct(&c, 0, 1);
    let held_before = c.held(1, room);
    let replayed_before = c.status(1).node.dropped(DropReason::Replayed);
    let from_0 = |sealed: bool| -> Vec<Vec<u8>> {
        c.net
            .captured()
            .iter()
            .filter(|(from, to, bytes)| *from == 0 && *to == 1 && is_sealed(bytes) == sealed)
            .map(|(_, _, bytes)| bytes.clone())
            .collect()
    };
    let (captured, handshakes) = (from_0(true), from_0(false));
    assert!(!captured.is_empty());
    for bytes in &captured {
        c.inject(1, 0, bytes);
    }
    let replayed = c.status(1).node.dropped(DropReason::Replayed) - replayed_before;
    assert_eq!(replayed, captured.len() as u64, "every replay counted");
    for bytes in &handshakes {
        c.inject(1, 0, bytes);
    }
    c.run_for(Duration::from_secs(10));
    assert_eq!(c.held(1, room), held_before, "nothing new stored");
    sent.push((0, 1, c.send(0, 1, "still here")));
    sent.push((1, 0, c.send(1, 0, "me too")));
    assert!(c.run_until(Duration::from_secs(30), |c| all_delivered(c, &sent)));
    c.run_for(Duration::from_secs(1));
    check_exactly_once_in_order(&mut c, &sent);
}

/// A's fresh frames, taken before B sees them: with one bit flipped, or
/// moved by another contact of B (C) onto C's own session with B (the
/// session ids C's frames carry on the wire), none is accepted, the
/// flipped ones in the ciphertext count as forged, and the genuine frame
/// still opens afterwards (failed checks moved nothing).
#[test]
fn forged_and_relabelled_traffic_is_dropped_and_counted() {
    let mut c = Cluster::new(500, 3, quiet());
    c.net.capture();
    c.run_for(Duration::from_millis(500));
    let mut sent = chatter(&mut c, 2);
    assert!(c.run_until(Duration::from_secs(60), |c| all_delivered(c, &sent)));
    // C's sessions with B, as its sealed frames show them.
    let sessions_of_c: BTreeSet<[u8; 16]> = c
        .net
        .captured()
        .iter()
        .filter(|(from, to, _)| (*from, *to) == (2, 1))
        .filter_map(|(_, _, bytes)| match Datagram::parse(bytes) {
            Ok(Datagram {
                frame: Frame::Sealed { session, .. },
                ..
            }) => Some(session),
            _ => None,
        })
        .collect();
    assert!(!sessions_of_c.is_empty());
    let mut rng = StdRng::seed_from_u64(5);
    let (mut flips, mut relabels) = (0, 0);
    let before = c.status(1).node;
    for i in 0..30 {
        let now = c.now();
        let request = Request::Send {
            to: Target::Peer(c.id(1)),
            text: format!("intercepted {i}"),
        };
        let rid = c.hosts[0].request(now, request);
        // Taken off A's uplink before the network carries them.
        let to_b = Destination::Peer(c.id(1));
        let fresh: Vec<Vec<u8>> = std::iter::from_fn(|| c.hosts[0].poll_transmit(now))
            .filter(|t| t.destination == to_b)
            .map(|t| t.bytes)
            .collect();
        c.net.drain(&mut c.hosts, 0);
        let id = match c.net.events(0).iter().rev().find_map(|e| match e {
            SimEvent::Reply(_, r, Ok(Reply::Sent(id))) if *r == rid => Some(*id),
            _ => None,
        }) {
            Some(id) => id,
            None => panic!("no send reply"),
        };
        sent.push((0, 1, id));
        for bytes in fresh.into_iter().filter(|b| is_sealed(b)) {
            let mut flipped = bytes.clone();
            let at = rng.random_range(3..flipped.len());
            flipped[at] ^= 1 << rng.random_range(0..8u32);
            c.inject(1, 0, &flipped);
            flips += 1;
            let mut relabelled = Datagram::parse(&bytes).expect("own frames are valid");
            assert_eq!(relabelled.from, None, "sealed frames name no sender");
            for session in &sessions_of_c {
                if let Frame::Sealed { session: s, .. } = &mut relabelled.frame {
                    *s = *session;
                }
                c.inject(1, 2, &relabelled.emit().expect("valid frame"));
                relabels += 1;
            }
            // The genuine frame still opens.
            c.inject(1, 0, &bytes);
        }
        c.run_for(Duration::from_millis(50));
    }
    assert!(c.run_until(Duration::from_secs(30), |c| all_delivered(c, &sent)));
    c.run_for(Duration::from_secs(1));
    let status = c.status(1).node;
    let forged = status.dropped(DropReason::Forged) - before.dropped(DropReason::Forged);
    assert!(
        forged > 0,
        "bit flips in the ciphertext are counted as forged"
    );
    let refused = status.total_dropped() - before.total_dropped();
    assert!(
        refused >= flips + relabels,
        "every tampered frame dropped and counted ({refused} of {})",
        flips + relabels
    );
    // Everything genuine arrived exactly once, nothing else at all.
    check_exactly_once_in_order(&mut c, &sent);
}

/// B blocks C: nothing of C's reaches B's store, B never sends C a single
/// datagram, C hears nothing delivered; A's messages arrive as before.
#[test]
fn blocked_peer_never_reaches_the_store_and_gets_no_answer() {
    let mut c = Cluster::new(600, 3, LinkConfig::lossy(0.1));
    c.run_for(Duration::from_millis(500));
    c.block(1, 2, true);
    c.run_for(Duration::from_millis(10));
    c.net.capture();
    let mut from_a = Vec::new();
    for i in 0..10 {
        c.send(2, 1, &format!("spam {i}"));
        from_a.push((0, 1, c.send(0, 1, &format!("friend {i}"))));
    }
    c.run_for(Duration::from_secs(30));
    let room = direct(&c, 1, 2);
    assert!(c.held(1, room).is_empty(), "nothing from C is stored");
    assert!(
        c.received(1)
            .iter()
            .all(|(_, text)| !text.starts_with("spam"))
    );
    assert!(all_delivered(&c, &from_a));
    let room = direct(&c, 0, 1);
    assert_eq!(c.held_from(1, room, 0).len(), 10);
    assert!(c.status(1).node.dropped(DropReason::Blocked) > 0);
    assert!(
        !c.net
            .captured()
            .iter()
            .any(|(from, to, _)| (*from, *to) == (1, 2)),
        "B never sent a single datagram to the blocked peer"
    );
    assert!(c.delivered(2).is_empty());
}

/// Direct chat among three daemons under loss, exactly once and in order,
/// with nothing counted as forged or rejected on an honest network.
#[test]
fn an_honest_network_counts_no_forgery() {
    let mut c = Cluster::new(100, 3, LinkConfig::lossy(0.2));
    c.run_for(Duration::from_millis(500));
    let sent = chatter(&mut c, 6);
    assert!(c.run_until(Duration::from_secs(300), |c| all_delivered(c, &sent)));
    c.run_for(Duration::from_secs(1));
    check_exactly_once_in_order(&mut c, &sent);
    for i in 0..3 {
        let status = c.status(i).node;
        assert_eq!(status.dropped(DropReason::Forged), 0, "{status:?}");
        assert_eq!(
            status.dropped(DropReason::EnvelopeRejected),
            0,
            "{status:?}"
        );
        assert_eq!(
            status.dropped(DropReason::ControlMalformed),
            0,
            "{status:?}"
        );
    }
}

/// A room of five, over unicast and over multicast, under loss: every
/// member holds every message once, in each author's order, and hears
/// each author's messages delivered; each joined member lists the room's
/// name and admin.
#[test]
fn room_of_five_every_member_stores_every_message_once() {
    for (seed, loss, config) in [
        (1, 0.0, ClusterConfig::default()),
        (2, 0.1, ClusterConfig::default()),
        (3, 0.2, multicast()),
    ] {
        let mut c = Cluster::with(seed, 5, LinkConfig::lossy(loss), config);
        c.run_for(Duration::from_millis(500));
        let room = c.create_room(0, "kitchen", &[1, 2, 3, 4]);
        let all = [0, 1, 2, 3, 4];
        assert!(c.run_until(Duration::from_secs(30), |c| c.all_in(&all, &room, 5)));
        let mut sent = Vec::new();
        for round in 0..3 {
            for i in 0..5 {
                sent.push((i, c.send_room(i, room, &format!("{i} says {round}"))));
            }
            c.run_for(Duration::from_millis(20));
        }
        assert!(
            c.run_until(Duration::from_secs(120), |c| c
                .room_converged(room, &all, &sent)),
            "seed {seed}: not everything arrived"
        );
        c.run_for(Duration::from_secs(2));
        c.check_room(room, &all, &sent);
        for (author, id) in &sent {
            let times = c.delivered(*author).iter().filter(|d| *d == id).count();
            assert_eq!(times, 4, "seed {seed}: delivered once per member");
        }
        for i in 1..5 {
            assert!(
                c.events(i)
                    .any(|e| matches!(e, Event::RoomJoined { room: r, .. } if *r == room)),
                "member {i} was told it joined"
            );
            let info = c.room(i, &room).expect("member");
            assert_eq!(info.name, "kitchen");
            assert_eq!(info.admin, Some(c.id(0)));
            let status = c.status(i).node;
            assert_eq!(status.dropped(DropReason::Forged), 0, "{status:?}");
            assert_eq!(
                status.dropped(DropReason::EnvelopeRejected),
                0,
                "{status:?}"
            );
        }
        if c.configs[0].node.group_multicast {
            let opened: u64 = (0..5).map(|i| c.status(i).node.group_received).sum();
            let sent: u64 = (0..5).map(|i| c.status(i).node.group_sent).sum();
            assert!(
                sent > 0 && opened > 0,
                "seed {seed}: frames went over the group"
            );
        }
    }
}

/// Only host 0 knows the others: the members learn each other from the
/// invitation, list each other as peers, and read each other.
#[test]
fn members_who_were_strangers_meet_through_the_room() {
    let config = ClusterConfig {
        contact: |i, j| i == 0 || j == 0,
        ..ClusterConfig::default()
    };
    let mut c = Cluster::with(4, 4, LinkConfig::lossy(0.1), config);
    c.run_for(Duration::from_millis(500));
    let room = c.create_room(0, "kitchen", &[1, 2, 3]);
    let all = [0, 1, 2, 3];
    assert!(c.run_until(Duration::from_secs(30), |c| c.all_in(&all, &room, 4)));
    let mut sent = Vec::new();
    for i in 0..4 {
        sent.push((i, c.send_room(i, room, &format!("hello from {i}"))));
    }
    assert!(c.run_until(Duration::from_secs(60), |c| {
        c.room_converged(room, &all, &sent)
    }));
    c.check_room(room, &all, &sent);
    let peers: Vec<PeerId> = match c.query(1, Request::Peers) {
        Ok(Reply::Peers(peers)) => peers.into_iter().map(|p| p.peer).collect(),
        other => panic!("no peers: {other:?}"),
    };
    for other in [2, 3] {
        assert!(peers.contains(&c.id(other)), "member 1 met member {other}");
    }
}

/// A removed member reads nothing sent after its removal, though over
/// multicast every group frame of the new epoch reaches it; it can no
/// longer send into the room; the others read each other on.
#[test]
fn removed_member_cannot_read_anything_sent_after_removal() {
    let mut c = Cluster::with(5, 4, LinkConfig::lossy(0.1), multicast());
    c.run_for(Duration::from_millis(500));
    let room = c.create_room(0, "kitchen", &[1, 2, 3]);
    let all = [0, 1, 2, 3];
    assert!(c.run_until(Duration::from_secs(30), |c| c.all_in(&all, &room, 4)));
    let mut before = Vec::new();
    for i in 0..4 {
        before.push((i, c.send_room(i, room, &format!("before {i}"))));
    }
    assert!(c.run_until(Duration::from_secs(60), |c| {
        c.room_converged(room, &all, &before)
    }));
    let removed = c.id(3);
    c.ask(
        0,
        Request::RemoveMember {
            room,
            peer: removed,
        },
    );
    assert!(c.run_until(Duration::from_secs(30), |c| {
        (0..3).all(|i| {
            c.room(i, &room)
                .is_some_and(|r| r.epoch == 1 && r.members.len() == 3)
        })
    }));
    assert!(c.run_until(Duration::from_secs(30), |c| {
        c.events(3)
            .any(|e| matches!(e, Event::RoomRemoved { room: r } if *r == room))
    }));
    let unsupported_before = c.status(3).node.dropped(DropReason::GroupUnsupported);
    let mut after = Vec::new();
    for i in 0..3 {
        after.push((i, c.send_room(i, room, &format!("after {i}"))));
    }
    let rest = [0, 1, 2];
    let everything: RoomSent = before.iter().chain(&after).copied().collect();
    assert!(c.run_until(Duration::from_secs(60), |c| {
        c.room_converged(room, &rest, &everything)
    }));
    c.run_for(Duration::from_secs(2));
    c.check_room(room, &rest, &everything);
    let at_3: BTreeSet<MessageId> = c.held(3, room).into_iter().collect();
    assert!(
        after.iter().all(|(_, id)| !at_3.contains(id)),
        "nothing of the new epoch at the removed member"
    );
    assert!(
        c.status(3).node.dropped(DropReason::GroupUnsupported) > unsupported_before,
        "the new epoch's group frames reached it, and it could not open them"
    );
    let rid = c.ask(
        3,
        Request::Send {
            to: Target::Room(room),
            text: "still here?".to_owned(),
        },
    );
    assert!(
        c.net
            .events(3)
            .iter()
            .any(|e| matches!(e, SimEvent::Reply(_, r, Err(_)) if *r == rid)),
        "the removed member cannot send into the room"
    );
}

/// Invitations wait for an answer; one declined takes the decliner out:
/// the others move to a new epoch of three and the decliner keeps neither
/// the room nor the invitation nor any of its messages.
#[test]
fn an_invitation_waits_for_an_answer_and_a_declined_one_removes_us() {
    let mut c = Cluster::new(1700, 4, LinkConfig::lossy(0.1));
    c.run_for(Duration::from_millis(500));
    let room = c.create_room_unanswered(0, "kitchen", &[1, 2, 3]);
    assert!(c.run_until(Duration::from_secs(10), |c| {
        (1..4).all(|i| c.room(i, &room).is_some_and(|r| r.invited))
    }));
    for i in 1..4 {
        let invitation = c.room(i, &room).expect("invited");
        assert_eq!(invitation.name, "kitchen");
        assert_eq!(invitation.admin, Some(c.id(0)));
        assert!(invitation.members.is_empty(), "not in before answering");
        assert!(
            c.events(i)
                .any(|e| matches!(e, Event::RoomInvited { room: r, .. } if *r == room))
        );
    }
    c.ask(1, Request::AnswerInvite { room, accept: true });
    c.ask(2, Request::AnswerInvite { room, accept: true });
    c.ask(
        3,
        Request::AnswerInvite {
            room,
            accept: false,
        },
    );
    let three = [0, 1, 2];
    assert!(c.run_until(Duration::from_secs(30), |c| {
        c.all_in(&three, &room, 3) && (0..3).all(|i| c.room(i, &room).is_some_and(|r| r.epoch == 1))
    }));
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push((i, c.send_room(i, room, &format!("without 3, from {i}"))));
    }
    assert!(c.run_until(Duration::from_secs(60), |c| {
        c.room_converged(room, &three, &sent)
    }));
    c.check_room(room, &three, &sent);
    assert!(c.room(3, &room).is_none(), "neither room nor invitation");
    let history = Request::History {
        room,
        before: None,
        limit: 100,
    };
    assert!(
        matches!(c.query(3, history), Err(DaemonError::UnknownRoom(_))),
        "no message of the room either"
    );
}

/// A partition of a room of five into two sides that both chat; one
/// author of each side leaves before it heals. The three left converge
/// on every message by the reconciliations the daemons schedule
/// themselves (a while after a member is back, then every minute): the
/// absent authors' words are forwarded by those who hold them.
#[test]
fn partition_heals_by_reconciliation_even_with_the_authors_away() {
    for seed in 1300..1302 {
        let mut c = Cluster::new(seed, 5, LinkConfig::lossy(0.05));
        c.run_for(Duration::from_millis(500));
        let room = c.create_room(0, "kitchen", &[1, 2, 3, 4]);
        let all = [0, 1, 2, 3, 4];
        assert!(c.run_until(Duration::from_secs(30), |c| c.all_in(&all, &room, 5)));
        let mut sent = Vec::new();
        for i in 0..5 {
            sent.push((i, c.send_room(i, room, &format!("hello from {i}"))));
        }
        assert!(c.run_until(Duration::from_secs(60), |c| {
            c.room_converged(room, &all, &sent)
        }));
        c.net.partition(&[&[0, 1], &[2, 3, 4]]);
        for round in 0..3 {
            for i in 0..5 {
                sent.push((
                    i,
                    c.send_room(i, room, &format!("{i} in the partition, {round}")),
                ));
            }
            c.run_for(Duration::from_millis(50));
        }
        c.run_for(Duration::from_secs(2));
        c.net.set_up(&mut c.hosts, 1, false);
        c.net.set_up(&mut c.hosts, 4, false);
        c.net.heal();
        let present = [0, 2, 3];
        assert!(
            c.run_until(Duration::from_secs(180), |c| c
                .room_converged(room, &present, &sent)),
            "seed {seed}: the present members converge"
        );
        c.run_for(Duration::from_secs(2));
        c.check_room(room, &present, &sent);
        let mut forwarded = 0;
        for i in present {
            let status = c.status(i);
            assert!(
                status.sync.sessions_completed > 0,
                "seed {seed}: {i} reconciled"
            );
            forwarded += status.node.forwarded;
        }
        assert!(
            forwarded > 0,
            "seed {seed}: the absent authors' words were forwarded"
        );
    }
}

/// Member 1 blocks member 3: 3's room messages never reach 1's store,
/// neither from 3 nor forwarded by the others in reconciliation, while
/// the others' words still arrive and member 2 holds 3's.
#[test]
fn a_blocked_members_words_are_never_stored_even_when_forwarded() {
    let mut c = Cluster::new(1400, 4, LinkConfig::lossy(0.05));
    c.run_for(Duration::from_millis(500));
    let room = c.create_room(0, "kitchen", &[1, 2, 3]);
    let all = [0, 1, 2, 3];
    assert!(c.run_until(Duration::from_secs(30), |c| c.all_in(&all, &room, 4)));
    c.block(1, 3, true);
    let mut from_3 = Vec::new();
    let mut from_0 = Vec::new();
    for i in 0..5 {
        from_3.push((
            3,
            c.send_room(3, room, &format!("from the blocked one {i}")),
        ));
        from_0.push((0, c.send_room(0, room, &format!("from the admin {i}"))));
    }
    c.run_for(Duration::from_secs(5));
    let synced_before = c.status(1).sync.sessions_completed;
    // Past the next round of reconciliation, where the members who hold
    // 3's words offer them to 1.
    c.run_for(Duration::from_secs(70));
    assert!(
        c.status(1).sync.sessions_completed > synced_before,
        "1 reconciled"
    );
    assert!(c.held_from(1, room, 3).is_empty(), "nothing of 3 at 1");
    let want: Vec<MessageId> = from_0.iter().map(|(_, id)| *id).collect();
    assert_eq!(c.held_from(1, room, 0), want, "the others' words arrive");
    assert!(c.status(1).node.dropped(DropReason::Blocked) > 0);
    let want: Vec<MessageId> = from_3.iter().map(|(_, id)| *id).collect();
    assert_eq!(c.held_from(2, room, 3), want, "only 1 blocked 3");
}

/// A member invited later holds only what was said after it joined, even
/// after rounds of reconciliation with every member (issue 17, high 2:
/// one round used to hand the newcomer the whole history and its chains'
/// origins).
#[test]
fn new_member_reads_only_what_is_sent_after_joining() {
    let mut c = Cluster::new(6, 4, quiet());
    c.run_for(Duration::from_millis(500));
    let room = c.create_room(0, "kitchen", &[1, 2]);
    assert!(c.run_until(Duration::from_secs(10), |c| c.all_in(&[0, 1, 2], &room, 3)));
    let mut history = Vec::new();
    for i in 0..3 {
        history.push((i, c.send_room(i, room, &format!("history {i}"))));
    }
    assert!(c.run_until(Duration::from_secs(30), |c| {
        c.room_converged(room, &[0, 1, 2], &history)
    }));
    let newcomer = c.id(3);
    c.ask(
        0,
        Request::Invite {
            room,
            peer: newcomer,
        },
    );
    assert!(c.run_until(Duration::from_secs(30), |c| {
        c.room(3, &room).is_some_and(|r| r.invited)
    }));
    c.ask(3, Request::AnswerInvite { room, accept: true });
    let all = [0, 1, 2, 3];
    assert!(c.run_until(Duration::from_secs(30), |c| c.all_in(&all, &room, 4)));
    let mut welcome = Vec::new();
    for i in 0..4 {
        welcome.push((i, c.send_room(i, room, &format!("welcome {i}"))));
    }
    assert!(c.run_until(Duration::from_secs(60), |c| {
        c.room_converged(room, &all, &welcome)
    }));
    // Rounds of reconciliation: after joining, then every minute.
    let synced_before = c.status(3).sync.sessions_completed;
    c.run_for(Duration::from_secs(130));
    assert!(
        c.status(3).sync.sessions_completed > synced_before,
        "the newcomer reconciled"
    );
    c.check_room(room, &all[3..], &welcome);
    let everything: RoomSent = history.iter().chain(&welcome).copied().collect();
    c.check_room(room, &all[..3], &everything);
}
