//! A full disk, on the real core: what a receiver cannot store it does
//! not acknowledge, and it stores it once space is freed, in a room too,
//! and across a crash; a sender whose disk is full is told so.

use std::time::Duration;

use kith::daemon::sim::SimEvent;
use kith::daemon::{Delivery, Event, Request, Target};
use kith::proto::node::NodeConfig;
use kith::proto::sim::LinkConfig;

use crate::sim_support::{Cluster, ClusterConfig, RoomSent};

/// A member of a multicast room of three whose disk fills up stores
/// nothing meanwhile and acknowledges nothing (the others never report
/// the messages delivered to it); once freed it holds everything, once,
/// in each author's order.
#[test]
fn a_room_member_with_a_full_disk_catches_up_once_it_is_freed() {
    for seed in 0..3 {
        let config = ClusterConfig {
            node: NodeConfig {
                group_multicast: true,
                ..NodeConfig::default()
            },
            ..ClusterConfig::default()
        };
        let mut c = Cluster::with(40 + seed, 3, LinkConfig::lossy(0.05), config);
        let room = c.create_room(0, "kitchen", &[1, 2]);
        assert!(c.run_until(Duration::from_secs(30), |c| c.all_in(&[0, 1, 2], &room, 3)));
        let mut sent = RoomSent::new();
        sent.push((0, c.send_room(0, room, "before")));
        assert!(c.run_until(Duration::from_secs(30), |c| c.room_converged(
            room,
            &[0, 1, 2],
            &sent
        )));
        c.set_full_disk(2, true);
        let before = c.received(2).len();
        for k in 0..8 {
            sent.push((k % 2, c.send_room(k % 2, room, &format!("while full {k}"))));
            c.run_for(Duration::from_millis(50));
        }
        c.run_for(Duration::from_secs(20));
        assert!(
            c.status(2).store_errors > 0,
            "seed {seed}: the failures are counted"
        );
        assert_eq!(
            c.received(2).len(),
            before,
            "seed {seed}: nothing stored while full"
        );
        let full_member = c.id(2);
        for author in [0, 1] {
            let told = c.events(author).any(|e| {
                matches!(e, Event::Delivered { to, id, .. }
                    if *to == full_member && sent[1..].iter().any(|(_, s)| s == id))
            });
            assert!(
                !told,
                "seed {seed}: nothing reported delivered to a full disk"
            );
        }
        c.set_full_disk(2, false);
        assert!(
            c.run_until(Duration::from_secs(120), |c| c.room_converged(
                room,
                &[0, 1, 2],
                &sent
            )),
            "seed {seed}: the member catches up once freed"
        );
        c.check_room(room, &[0, 1, 2], &sent);
    }
}

/// A receiver killed while it holds messages it could not store (its
/// disk full) and started again once space is freed stores every one of
/// them, once, and its sender reports each delivered once.
#[test]
fn a_receiver_killed_with_a_full_disk_loses_nothing() {
    let mut c = Cluster::new(50, 2, LinkConfig::lossy(0.1));
    c.run_for(Duration::from_millis(500));
    c.send(0, 1, "hello");
    assert!(c.run_until(Duration::from_secs(30), |c| c.received(1).len() == 1));
    c.set_full_disk(1, true);
    let sent: Vec<_> = (0..6).map(|k| c.send(0, 1, &format!("held {k}"))).collect();
    c.run_for(Duration::from_secs(10));
    assert!(sent.iter().all(|id| !c.delivered(0).contains(id)));
    c.crash_and_restart(1);
    let all = |c: &mut Cluster| sent.iter().all(|id| c.delivered(0).contains(id));
    assert!(
        c.run_until(Duration::from_secs(300), all),
        "delivered after the restart"
    );
    let room = kith::proto::node::direct_room(c.id(0), c.id(1));
    let texts: Vec<Option<String>> = c
        .room_history(1, room)
        .rows
        .iter()
        .map(|r| r.text.clone())
        .collect();
    let mut want = vec![Some("hello".to_owned())];
    want.extend((0..6).map(|k| Some(format!("held {k}"))));
    assert_eq!(texts, want, "each once, in order, readable");
    for id in &sent {
        assert_eq!(c.delivered(0).iter().filter(|d| *d == id).count(), 1);
    }
}

/// The first send after a sender's disk fills goes out before its write
/// fails (a datagram never waits for the disk): it is reported sent, the
/// peer stores it, and it enters the sender's own history, delivered, once
/// space is freed. Sends after that are refused before they go out, with
/// a clear "disk full". (Before, the first one was answered "not stored"
/// though the peer had it, and it never entered the sender's history.)
#[test]
fn a_sender_whose_disk_fills_keeps_what_it_sent_and_refuses_the_rest() {
    for seed in 0..3 {
        let mut c = Cluster::new(60 + seed, 2, LinkConfig::lossy(0.05));
        c.run_for(Duration::from_millis(500));
        c.send(0, 1, "first");
        assert!(c.run_until(Duration::from_secs(30), |c| c.received(1).len() == 1));
        c.set_full_disk(0, true);
        let sent = c.send(0, 1, "as the disk fills");
        assert!(
            c.run_until(Duration::from_secs(30), |c| c.received(1).len() == 2),
            "seed {seed}: it went out"
        );
        let to = Target::Peer(c.id(1));
        let rid = c.ask(
            0,
            Request::Send {
                to,
                text: "refused".to_owned(),
            },
        );
        let refusal = c.net.events(0).iter().rev().find_map(|e| match e {
            SimEvent::Reply(_, id, Err(error)) if *id == rid => Some(error.to_string()),
            _ => None,
        });
        assert!(
            refusal.as_deref().is_some_and(|e| e.contains("disk full")),
            "seed {seed}: refused with a reason, got {refusal:?}"
        );
        c.run_for(Duration::from_secs(10));
        c.set_full_disk(0, false);
        let room = kith::proto::node::direct_room(c.id(0), c.id(1));
        let stored = |c: &mut Cluster| c.delivery(0, 1, sent) == Some(Delivery::Stored);
        assert!(
            c.run_until(Duration::from_secs(60), stored),
            "seed {seed}: in the sender's history, delivered"
        );
        let texts: Vec<Option<String>> = c
            .room_history(0, room)
            .rows
            .iter()
            .map(|r| r.text.clone())
            .collect();
        assert_eq!(
            texts,
            vec![
                Some("first".to_owned()),
                Some("as the disk fills".to_owned())
            ],
            "seed {seed}"
        );
        let texts: Vec<String> = c.received(1).into_iter().map(|(_, t)| t).collect();
        assert_eq!(
            texts,
            vec!["first", "as the disk fills"],
            "seed {seed}: the refused one never went out"
        );
        let after = c.send(0, 1, "after");
        assert!(c.run_until(Duration::from_secs(30), |c| c.delivered(0).contains(&after)));
    }
}
