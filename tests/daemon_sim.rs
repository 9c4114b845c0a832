//! The daemon's real core ([`kith::daemon::sim::SimDaemon`]) on the
//! simulated network, over real stores in temp dirs, in virtual time: the
//! outbox delay, journal settling, offline delivery after a partition
//! heals, a crash with messages held in the outbox, and one seed
//! reproducing a run. No sleeps: the clock only moves when the simulator
//! moves it.

mod common;
mod sim_support;

use std::time::Duration;

use kith::daemon::sim::{OUTBOX_AFTER, SETTLE_AFTER, SimEvent};
use kith::daemon::{Delivery, Event, Reply, Request, Target};
use kith::proto::ids::MessageId;
use kith::proto::node::NodeConfig;
use kith::proto::sim::LinkConfig;
use sim_support::{Cluster, ClusterConfig};

/// Lets the sessions open and sends a first message from 0 to 1, whose
/// chain's first key goes with it (its stored acknowledgement is paced).
fn warm_up(c: &mut Cluster) {
    c.run_for(Duration::from_millis(500));
    c.send(0, 1, "warm-up");
    c.run_for(Duration::from_millis(300));
    assert_eq!(c.delivered(0).len(), 1, "the warm-up message is delivered");
}

fn quiet() -> LinkConfig {
    LinkConfig::default()
}

/// A message the recipient acknowledges at once never enters the stored
/// outbox; one nobody acknowledges is "sent" for [`OUTBOX_AFTER`] and
/// "queued" (in the stored outbox) from then on, in virtual time.
#[test]
fn an_unacknowledged_message_enters_the_outbox_after_its_delay() {
    let mut c = Cluster::new(1, 2, quiet());
    warm_up(&mut c);
    let quick = c.send(0, 1, "answered at once");
    c.run_for(Duration::from_millis(10));
    assert_eq!(c.delivered(0)[1..], [quick]);
    assert_eq!(c.delivery(0, 1, quick), Some(Delivery::Stored));

    c.net.set_up(&mut c.hosts, 1, false);
    let held = c.send(0, 1, "nobody answers");
    c.run_for(OUTBOX_AFTER - Duration::from_millis(100));
    assert_eq!(c.delivery(0, 1, held), Some(Delivery::Sent));
    c.run_for(Duration::from_millis(200));
    assert_eq!(c.delivery(0, 1, held), Some(Delivery::Queued));

    c.net.set_up(&mut c.hosts, 1, true);
    assert!(
        c.run_until(Duration::from_secs(60), |c| c.delivered(0).len() == 3),
        "the held message is delivered once the peer is back"
    );
    assert_eq!(c.delivery(0, 1, held), Some(Delivery::Stored));
    let texts: Vec<String> = c.received(1).into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, vec!["warm-up", "answered at once", "nobody answers"]);
}

/// A received message is reported only once the journal settled it into
/// the database, [`SETTLE_AFTER`] after it arrived; the sender hears
/// "delivered" before that (the acknowledgement does not wait for the
/// transaction, only for the journal).
#[test]
fn a_received_message_is_reported_when_the_journal_settles() {
    let mut c = Cluster::new(2, 2, quiet());
    warm_up(&mut c);
    let sent_at = c.now();
    let id = c.send(0, 1, "hello");
    assert!(c.run_until(Duration::from_secs(5), |c| c.received(1).len() == 2));
    c.run_for(Duration::from_millis(10));
    let (reported_at, text) = c.received(1).remove(1);
    assert_eq!(text, "hello");
    let delivered_at = c
        .net
        .events(0)
        .iter()
        .find_map(|e| match e {
            SimEvent::Event(at, Event::Delivered { id: d, .. }) if *d == id => Some(*at),
            _ => None,
        })
        .expect("the sender heard delivered");
    // One link delay out (1 ms, jitter under 0.2 ms), then the journal's
    // settling delay at the receiver.
    assert!(reported_at - sent_at >= Duration::from_millis(1) + SETTLE_AFTER);
    assert!(reported_at - sent_at < Duration::from_millis(2) + SETTLE_AFTER * 2);
    // The acknowledgement left once the message was journaled, before the
    // settling: it arrives one link delay later, at about the report.
    assert!(delivered_at <= reported_at + Duration::from_millis(1));
}

/// Messages written while the link is cut reach the peer once it heals,
/// each exactly once and in order, and the sender hears each delivered.
#[test]
fn messages_written_during_a_partition_arrive_once_it_heals() {
    let mut c = Cluster::new(3, 3, LinkConfig::lossy(0.05));
    c.run_for(Duration::from_millis(500));
    c.net.partition(&[&[0], &[1, 2]]);
    let ids: Vec<MessageId> = (0..5)
        .map(|k| {
            let id = c.send(0, 1, &format!("m{k}"));
            c.run_for(Duration::from_millis(300));
            id
        })
        .collect();
    c.run_for(Duration::from_secs(20));
    assert!(c.received(1).is_empty(), "nothing crosses a partition");
    for id in &ids {
        assert_eq!(c.delivery(0, 1, *id), Some(Delivery::Queued));
    }
    c.net.heal();
    assert!(
        c.run_until(Duration::from_secs(120), |c| c.delivered(0).len() == 5),
        "every message delivered after the heal"
    );
    c.run_for(Duration::from_secs(5));
    let texts: Vec<String> = c.received(1).into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, vec!["m0", "m1", "m2", "m3", "m4"]);
    let mut delivered = c.delivered(0);
    delivered.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(delivered, expected, "each delivered exactly once");
}

/// A sender that crashes with messages in its stored outbox sends them
/// again from its store when it starts, and the peer stores each once.
#[test]
fn a_crashed_sender_delivers_its_held_messages_after_restart() {
    let mut c = Cluster::new(4, 2, quiet());
    c.run_for(Duration::from_millis(500));
    c.net.partition(&[&[0], &[1]]);
    let held: Vec<MessageId> = (0..3).map(|k| c.send(0, 1, &format!("held {k}"))).collect();
    c.run_for(OUTBOX_AFTER + Duration::from_millis(500));
    for id in &held {
        assert_eq!(c.delivery(0, 1, *id), Some(Delivery::Queued));
    }
    c.crash_and_restart(0);
    c.net.heal();
    assert!(
        c.run_until(Duration::from_secs(120), |c| c.received(1).len() >= 3),
        "the restarted sender's outbox reaches the peer"
    );
    c.run_for(Duration::from_secs(5));
    let texts: Vec<String> = c.received(1).into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, vec!["held 0", "held 1", "held 2"]);
    for id in &held {
        assert_eq!(c.delivery(0, 1, *id), Some(Delivery::Stored));
    }
}

/// One run's wire trace: four daemons over lossy links (loss,
/// duplication, reordering) chat directly and in a room of four, through
/// a partition and a crash restarted from the store.
fn traced_run(seed: u64) -> ([u8; 32], u64) {
    let mut c = Cluster::new(seed, 4, LinkConfig::lossy(0.1));
    c.run_for(Duration::from_millis(500));
    let room = c.create_room(0, "traced", &[1, 2, 3]);
    assert!(c.run_until(Duration::from_secs(30), |c| c.all_in(
        &[0, 1, 2, 3],
        &room,
        4
    )));
    let chatter = |c: &mut Cluster, rounds: usize, label: &str| {
        for round in 0..rounds {
            for from in 0..4 {
                for to in (0..4).filter(|to| *to != from) {
                    c.send(from, to, &format!("{label} {from}->{to} #{round}"));
                }
            }
            c.run_for(Duration::from_millis(20));
        }
    };
    chatter(&mut c, 3, "before");
    for i in 0..4 {
        c.send_room(i, room, &format!("hello from {i}"));
    }
    c.net.partition(&[&[0, 1, 2], &[3]]);
    chatter(&mut c, 2, "cut");
    c.send_room(3, room, "alone");
    c.run_for(Duration::from_secs(1));
    c.net.heal();
    c.crash_and_restart(2);
    c.run_for(Duration::from_secs(30));
    // A run that did what it says: everything said reached everyone.
    assert_eq!(c.received(3).len(), 5 * 3 + 3, "seed {seed}: 3 caught up");
    assert_eq!(c.held(0, room).len(), 5, "seed {seed}: the room converged");
    (c.net.trace_hash(), c.net.wire.datagrams)
}

/// Two runs of one seed put the same datagrams on the wire, in the same
/// order, through loss, a partition and a restart; another seed does not.
#[test]
fn one_seed_reproduces_a_daemon_run_exactly() {
    let mut traces = Vec::new();
    for seed in [7, 8] {
        let (trace, datagrams) = traced_run(seed);
        assert!(
            datagrams > 100,
            "seed {seed}: a busy run ({datagrams} datagrams)"
        );
        assert_eq!(
            traced_run(seed),
            (trace, datagrams),
            "seed {seed}: a second run put other datagrams on the wire"
        );
        traces.push(trace);
    }
    assert_ne!(traces[0], traces[1], "the seed matters");
}

/// A room message its author sent while one member was cut off reaches
/// that member from another member by reconciliation, once the cut heals,
/// with the author gone: the sync the core schedules when a member comes
/// online, in virtual time.
#[test]
fn a_member_cut_off_gets_the_rooms_messages_from_another_member() {
    let mut c = Cluster::new(5, 3, quiet());
    c.run_for(Duration::from_millis(500));
    let members = vec![c.id(1), c.id(2)];
    let rid = c.ask(
        0,
        Request::CreateRoom {
            name: "trio".to_owned(),
            members,
        },
    );
    c.run_for(Duration::from_millis(5));
    let room = match c.reply(0, rid) {
        Some(Reply::Room(room)) => *room,
        other => panic!("no room: {other:?}"),
    };
    for i in 1..3 {
        c.ask(i, Request::AnswerInvite { room, accept: true });
    }
    c.run_for(Duration::from_secs(2));
    c.net.partition(&[&[0, 1], &[2]]);
    let rid = c.ask(
        0,
        Request::Send {
            to: Target::Room(room),
            text: "while 2 was away".to_owned(),
        },
    );
    assert!(c.run_until(Duration::from_secs(10), |c| c.reply(0, rid).is_some()));
    assert!(c.run_until(Duration::from_secs(10), |c| !c.received(1).is_empty()));
    // The author leaves for good; the cut heals.
    c.net.set_up(&mut c.hosts, 0, false);
    c.net.heal();
    let healed = c.now();
    assert!(
        c.run_until(Duration::from_secs(180), |c| !c.received(2).is_empty()),
        "reconciliation with member 1 brings the message"
    );
    let (at, text) = c.received(2).remove(0);
    assert_eq!(text, "while 2 was away");
    // Reconciled only once the live streams had their turn: two seconds
    // after the member was seen online again (SYNC_AFTER_ONLINE).
    assert!(
        at - healed >= Duration::from_secs(2),
        "came {:?} after the heal",
        at - healed
    );
}

/// A room over multicast (one group datagram per message for the whole
/// LAN, acknowledgements over the pairwise sessions): three members on
/// lossy links each store every message once, in each author's order; a
/// member cut off meanwhile gets what it missed once the cut heals.
#[test]
fn a_multicast_room_delivers_to_every_member_through_a_partition() {
    let config = ClusterConfig {
        node: NodeConfig {
            group_multicast: true,
            ..NodeConfig::default()
        },
        ..ClusterConfig::default()
    };
    let mut c = Cluster::with(9, 3, LinkConfig::lossy(0.1), config);
    c.net.capture();
    c.run_for(Duration::from_millis(500));
    let room = c.create_room(0, "mcast", &[1, 2]);
    assert!(c.run_until(Duration::from_secs(30), |c| c.all_in(&[0, 1, 2], &room, 3)));
    let mut sent = Vec::new();
    for round in 0..3 {
        for i in 0..3 {
            sent.push((i, c.send_room(i, room, &format!("{i} says {round}"))));
        }
        c.run_for(Duration::from_millis(50));
    }
    c.net.partition(&[&[0, 1], &[2]]);
    for round in 0..3 {
        for i in 0..2 {
            sent.push((
                i,
                c.send_room(i, room, &format!("{i} while 2 is away {round}")),
            ));
        }
        c.run_for(Duration::from_millis(50));
    }
    c.run_for(Duration::from_secs(5));
    let away: Vec<MessageId> = sent[9..].iter().map(|(_, id)| *id).collect();
    assert!(
        c.held(2, room).iter().all(|id| !away.contains(id)),
        "nothing crosses the cut"
    );
    c.net.heal();
    assert!(
        c.run_until(Duration::from_secs(180), |c| c.room_converged(
            room,
            &[0, 1, 2],
            &sent
        )),
        "every member holds every message after the heal"
    );
    c.check_room(room, &[0, 1, 2], &sent);
    let group_sent: u64 = (0..3).map(|i| c.status(i).node.group_sent).sum();
    let group_received: u64 = (0..3).map(|i| c.status(i).node.group_received).sum();
    assert!(
        group_sent > 0 && group_received > 0,
        "frames went over the group ({group_sent} sent, {group_received} opened)"
    );
    assert_eq!(
        (0..3).map(|i| c.hosts[i].unroutable).sum::<u64>(),
        0,
        "every group transmit went on the wire"
    );
}
