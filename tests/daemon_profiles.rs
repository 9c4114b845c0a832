//! Display names between in-process daemons on 127.0.0.1: a rename reaches
//! every room member, equal names are told apart, names survive a restart
//! and reach a member that was away, bad names are refused. Every wait is
//! bounded.

mod common;

use std::sync::mpsc::Receiver;

use common::daemons::{start, wait_for};
use common::trio::{join_room, trio};
use kith::daemon::{DaemonHandle, Event};
use kith::proto::ids::PeerId;

/// How `handle` shows `peer` in its peer list.
fn shown(handle: &DaemonHandle, peer: PeerId) -> Option<(String, Option<String>)> {
    handle
        .peers()
        .expect("peers")
        .into_iter()
        .find(|p| p.peer == peer)
        .map(|p| (p.display_name, p.name))
}

fn renamed(rx: &Receiver<Event>, who: PeerId, to: &str) -> String {
    wait_for(rx, |e| match e {
        Event::PeerRenamed {
            peer, name, label, ..
        } if *peer == who && name == to => Some(label.clone()),
        _ => None,
    })
}

#[test]
fn names_reach_members_are_told_apart_and_survive_a_restart() {
    let mut nodes = trio("profiles");
    let ids: Vec<PeerId> = nodes.iter().map(|n| n.public.peer_id()).collect();
    let events: Vec<Receiver<Event>> = nodes
        .iter()
        .map(|n| n.handle().events().expect("events"))
        .collect();
    let room = join_room(&nodes, &events);

    // Refused names change nothing and say why.
    for bad in ["", "   ", "Alice\u{202e}", "Al\u{200b}ice", "two\nlines"] {
        let error = nodes[0]
            .handle()
            .set_profile(bad)
            .expect_err("refused")
            .to_string();
        assert!(error.contains("display name"), "{bad:?}: {error}");
    }
    assert!(nodes[0].handle().set_profile(&"x".repeat(65)).is_err());

    // A names itself: both members hear it and show it.
    nodes[0].handle().set_profile("Alice").expect("a good name");
    for i in 1..3 {
        assert_eq!(renamed(&events[i], ids[0], "Alice"), "Alice");
        assert_eq!(
            shown(nodes[i].handle(), ids[0]),
            Some(("Alice".to_owned(), Some("Alice".to_owned())))
        );
        let rooms = nodes[i].handle().rooms().expect("rooms");
        let kitchen = rooms.iter().find(|r| r.id == room).expect("in the room");
        let at = kitchen
            .members
            .iter()
            .position(|p| *p == ids[0])
            .expect("A is a member");
        assert_eq!(kitchen.member_names[at], "Alice");
    }

    // C takes the same name: B tells them apart by an id suffix, in its
    // peer list and in every event.
    nodes[2].handle().set_profile("alice").expect("a good name");
    let c_label = renamed(&events[1], ids[2], "alice");
    let a_label = format!("Alice·{}", &ids[0].to_hex()[..4]);
    assert_eq!(c_label, format!("alice·{}", &ids[2].to_hex()[..4]));
    assert_eq!(shown(nodes[1].handle(), ids[0]).expect("A").0, a_label);
    nodes[0]
        .handle()
        .send_room(room, "dinner at 8")
        .expect("sent");
    let (from_name, json) = wait_for(&events[1], |e| match e {
        Event::MessageReceived {
            from, from_name, ..
        } if *from == ids[0] => Some((from_name.clone(), e.to_json())),
        _ => None,
    });
    assert_eq!(from_name, a_label);
    assert!(
        json.contains(&format!(r#""from_name":"{a_label}""#)),
        "{json}"
    );
    assert!(
        format!(
            "{}",
            Event::PeerOnline {
                peer: ids[0],
                peer_name: a_label.clone()
            }
        )
        .contains(&a_label)
    );
    // A typed name finds its peer; an ambiguous one does not.
    nodes[1]
        .handle()
        .send_to(&a_label, "by label")
        .expect("a label names one peer");
    assert!(nodes[1].handle().send_to("ALICE", "ambiguous").is_err());

    // B goes away, and C too (so what B shows of C after its restart can
    // only come from B's store); A renames meanwhile; B is told when it is
    // back.
    for gone in [1, 2] {
        let handle = nodes[gone].handle.take().expect("running");
        handle.shutdown().expect("stops cleanly");
    }
    nodes[0]
        .handle()
        .set_profile("Alice A.")
        .expect("a good name");
    let b = start(
        &nodes[1].dir,
        nodes[1].addr,
        common::mesh_peers(
            &nodes.iter().map(|n| n.public.clone()).collect::<Vec<_>>(),
            &nodes.iter().map(|n| n.addr).collect::<Vec<_>>(),
            1,
        ),
    );
    let b_events = b.events().expect("events");
    // C's name came back from the store.
    assert_eq!(
        shown(&b, ids[2]).expect("C").1,
        Some("alice".to_owned()),
        "stored names survive a restart"
    );
    assert_eq!(renamed(&b_events, ids[0], "Alice A."), "Alice A.");
    // With A renamed, C's name is unique again.
    assert_eq!(shown(&b, ids[2]).expect("C").0, "alice");
    let status = b.status().expect("status");
    assert_eq!(
        status
            .node
            .dropped(kith::proto::node::DropReason::ProfileForged),
        0
    );
    b.shutdown().expect("B stops cleanly");
    for node in nodes.iter_mut() {
        if let Some(handle) = node.handle.take() {
            handle.shutdown().expect("stops cleanly");
        }
    }
}
