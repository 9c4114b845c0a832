//! What a chat client asks of the daemon, with real daemons on 127.0.0.1:
//! history pages, read markers and unread counts, room receipts, the
//! non-blocking subscription (replies, waker) and catching up from a
//! cursor. Every wait is bounded.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::time::Instant;

use common::daemons::{WAIT, account, collect_until, eventually, loopback, start, trio};
use kith::daemon::{
    self, DaemonHandle, Delivery, Event, PeerAddr, Reply, Request, SubscribeOptions, Update,
};
use kith::proto::ids::{MessageId, PeerId, RoomId};
use kith::proto::node::direct_room;
use kith::store::Mute;

/// Every message of `room` as `handle` pages back through it, 50 at a
/// time: (cursor, id, timestamp).
fn page_through(handle: &DaemonHandle, room: RoomId) -> Vec<(u64, MessageId, u64)> {
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let page = handle.history(room, before, 50).expect("a page");
        assert!(page.rows.len() <= 50);
        all.extend(page.rows.iter().map(|r| (r.cursor, r.id, r.timestamp)));
        match page.next {
            Some(next) => before = Some(next),
            None => return all,
        }
    }
}

/// Three members write 10 000 messages to a room; every member pages back
/// through all of them with no gap and no repeat, in the same (timestamp,
/// id) order; our messages end "delivered to 2 of 2"; a member that muted
/// the room sees its unread count flagged muted.
#[test]
fn three_members_page_through_ten_thousand_messages_alike() {
    let nodes = trio("history-10k");
    let ids: Vec<PeerId> = nodes.iter().map(|n| n.1.peer_id()).collect();
    let events: Vec<Receiver<Event>> = nodes
        .iter()
        .map(|n| n.2.events().expect("events"))
        .collect();
    let room = nodes[0]
        .2
        .create_room("ten thousand", &[ids[1], ids[2]])
        .expect("A creates the room");
    for i in 1..3 {
        collect_until(
            &events[i],
            |e| matches!(e, Event::RoomInvited { room: r, .. } if *r == room),
        );
        nodes[i].2.answer_invite(room, true).expect("accept");
        collect_until(
            &events[i],
            |e| matches!(e, Event::RoomJoined { room: r, .. } if *r == room),
        );
    }
    eventually("every member lists all three", || {
        nodes.iter().all(|n| {
            n.2.rooms()
                .expect("rooms")
                .iter()
                .any(|r| r.id == room && r.members.len() == 3)
        })
    });
    nodes[2]
        .2
        .mute(&PeerId(room.0).to_hex(), Some(Mute::Indefinitely))
        .expect("C mutes the room");
    let counts = [4000usize, 3000, 3000];
    let total: usize = counts.iter().sum();
    // The three write at once, each with up to 100 sends under way.
    let mut pending: Vec<std::collections::VecDeque<daemon::PendingSend>> =
        (0..3).map(|_| Default::default()).collect();
    let mut written = [0usize; 3];
    while written.iter().zip(&counts).any(|(w, c)| w < c) {
        for i in 0..3 {
            if written[i] < counts[i] {
                let send = nodes[i]
                    .2
                    .submit(daemon::Target::Room(room), &format!("{i}:{}", written[i]))
                    .expect("queued");
                pending[i].push_back(send);
                written[i] += 1;
            }
            if pending[i].len() >= 100 {
                pending[i]
                    .pop_front()
                    .expect("one under way")
                    .wait()
                    .expect("stored");
            }
        }
    }
    for queue in pending {
        for send in queue {
            send.wait().expect("stored");
        }
    }
    // Every member holds all of them (received by events, or sync).
    for (i, node) in nodes.iter().enumerate() {
        eventually(&format!("member {i} holds {total}"), || {
            let unread = node
                .2
                .rooms()
                .expect("rooms")
                .into_iter()
                .find(|r| r.id == room)
                .map_or(0, |r| r.unread);
            unread as usize == total - counts[i]
        });
    }
    let pages: Vec<Vec<(u64, MessageId, u64)>> =
        nodes.iter().map(|n| page_through(&n.2, room)).collect();
    for (i, page) in pages.iter().enumerate() {
        assert_eq!(page.len(), total, "member {i}: every message once");
        let unique: HashSet<MessageId> = page.iter().map(|(_, id, _)| *id).collect();
        assert_eq!(unique.len(), total, "member {i}: no repeat");
        for pair in page.windows(2) {
            assert!(
                (pair[0].2, pair[0].1) > (pair[1].2, pair[1].1),
                "member {i}: newest first by (timestamp, id)"
            );
        }
        let order: Vec<MessageId> = page.iter().map(|(_, id, _)| *id).collect();
        let first: Vec<MessageId> = pages[0].iter().map(|(_, id, _)| *id).collect();
        assert_eq!(order, first, "member {i} sees the order member 0 sees");
    }
    // Unread: the muted room's count is all flagged; the others' none.
    let summary = |i: usize| {
        nodes[i]
            .2
            .rooms()
            .expect("rooms")
            .into_iter()
            .find(|r| r.id == room)
            .expect("the room is listed")
    };
    let c = summary(2);
    assert_eq!((c.unread, c.unread_muted), (7000, 7000), "C muted the room");
    let b = summary(1);
    assert_eq!((b.unread, b.unread_muted), (7000, 0));
    // Our newest message on A: delivered to 2 of 2 once both stored it.
    eventually("A's newest message is delivered to 2 of 2", || {
        let page = nodes[0].2.history(room, None, 1000).expect("a page");
        let ours = page.rows.iter().find(|r| r.ours).expect("one of A's");
        ours.delivered() == (2, 2)
            && ours
                .deliveries
                .iter()
                .all(|(peer, d)| *d == Delivery::Stored && (*peer == ids[1] || *peer == ids[2]))
    });
    // A wrote its last 1000 alone (B and C stop at 3000), so the newest
    // rows may all be A's: page back to the first of B's or C's.
    let mut before = None;
    let row = loop {
        let page = nodes[0].2.history(room, before, 1000).expect("a page");
        if let Some(row) = page.rows.iter().find(|r| !r.ours) {
            break row.clone();
        }
        before = Some(page.next.expect("older pages hold B's and C's"));
    };
    assert!(row.deliveries.is_empty() && row.text.is_some());
    for node in nodes {
        node.2.shutdown().expect("stops cleanly");
    }
}

/// Receipts rise to n of n, and each step is an event.
#[test]
fn room_receipts_rise_to_n_of_n() {
    let nodes = trio("receipts");
    let ids: Vec<PeerId> = nodes.iter().map(|n| n.1.peer_id()).collect();
    let events: Vec<Receiver<Event>> = nodes
        .iter()
        .map(|n| n.2.events().expect("events"))
        .collect();
    let room = nodes[0]
        .2
        .create_room("receipts", &[ids[1], ids[2]])
        .expect("A creates the room");
    for i in 1..3 {
        collect_until(
            &events[i],
            |e| matches!(e, Event::RoomInvited { room: r, .. } if *r == room),
        );
        nodes[i].2.answer_invite(room, true).expect("accept");
        collect_until(
            &events[i],
            |e| matches!(e, Event::RoomJoined { room: r, .. } if *r == room),
        );
    }
    eventually("A sees all three members", || {
        nodes[0]
            .2
            .rooms()
            .expect("rooms")
            .iter()
            .any(|r| r.id == room && r.members.len() == 3)
    });
    let id = nodes[0].2.send_room(room, "count me").expect("sent");
    let mut steps = Vec::new();
    collect_until(&events[0], |e| {
        if let Event::Receipt {
            id: got,
            delivered,
            of,
            room: r,
        } = e
            && *got == id
        {
            assert_eq!(*r, room);
            steps.push((*delivered, *of));
        }
        steps.last() == Some(&(2, 2))
    });
    assert_eq!(steps, vec![(1, 2), (2, 2)], "k rises one by one to n");
    eventually("history says 2 of 2", || {
        let page = nodes[0].2.history(room, None, 10).expect("a page");
        page.rows
            .iter()
            .any(|r| r.id == id && r.delivered() == (2, 2))
    });
    for node in nodes {
        node.2.shutdown().expect("stops cleanly");
    }
}

/// Unread counts follow messages and the read marker, survive a restart,
/// and a muted sender's messages are counted but flagged.
#[test]
fn read_markers_and_unread_counts_survive_a_restart() {
    let (dir_a, pub_a) = account("unread-a");
    let (dir_b, pub_b) = account("unread-b");
    let a = start(&dir_a, loopback(), Vec::new());
    let b = start(
        &dir_b,
        loopback(),
        vec![PeerAddr {
            public: pub_a.clone(),
            addr: a.local_addr(),
        }],
    );
    let b_addr = b.local_addr();
    a.add_peer(pub_b.clone(), b_addr).expect("B is A's peer");
    let room = direct_room(pub_b.peer_id(), pub_a.peer_id());
    let b_events = b.events().expect("events");
    for n in 0..5 {
        a.send(pub_b.peer_id(), &format!("m{n}")).expect("sent");
    }
    collect_until(
        &b_events,
        |e| matches!(e, Event::UnreadChanged { room: r, unread: 5, unread_muted: 0 } if *r == room),
    );
    let unread = |handle: &DaemonHandle| {
        let r = handle
            .rooms()
            .expect("rooms")
            .into_iter()
            .find(|r| r.id == room)
            .expect("the direct room is listed");
        (r.unread, r.unread_muted)
    };
    assert_eq!(unread(&b), (5, 0));
    // Read up to the third message (m2): two left.
    let page = b.history(room, None, 10).expect("a page");
    assert_eq!(page.rows.len(), 5);
    assert_eq!(page.rows[2].text.as_deref(), Some("m2"));
    assert_eq!(
        page.rows[2].author_name.as_deref(),
        Some(pub_a.peer_id().short().as_str())
    );
    assert_eq!(
        b.mark_read(room, Some(page.rows[2].cursor))
            .expect("marked"),
        2
    );
    collect_until(
        &b_events,
        |e| matches!(e, Event::UnreadChanged { room: r, unread: 2, .. } if *r == room),
    );
    // A marker never moves back.
    assert_eq!(
        b.mark_read(room, Some(page.rows[4].cursor)).expect("kept"),
        2
    );
    // A cursor of nothing in this room is refused.
    assert!(b.mark_read(room, Some(u64::MAX)).is_err());
    b.shutdown().expect("B stops");
    let b = start(
        &dir_b,
        b_addr,
        vec![PeerAddr {
            public: pub_a.clone(),
            addr: a.local_addr(),
        }],
    );
    assert_eq!(unread(&b), (2, 0), "the marker and the count survive");
    // Muting the sender flags what is unread, and what comes next.
    b.mute(&pub_a.peer_id().to_hex(), Some(Mute::Indefinitely))
        .expect("mute A");
    assert_eq!(unread(&b), (2, 2));
    let b_events = b.events().expect("events");
    a.send(pub_b.peer_id(), "while muted").expect("sent");
    collect_until(
        &b_events,
        |e| matches!(e, Event::UnreadChanged { room: r, unread: 3, unread_muted: 3 } if *r == room),
    );
    assert_eq!(b.mark_read(room, None).expect("all read"), 0);
    assert_eq!(unread(&b), (0, 0));
    // Our own messages are never unread for us: A sent six, B replies.
    assert_eq!(unread(&a), (0, 0), "A's own messages");
    let a_events = a.events().expect("events");
    b.send(pub_a.peer_id(), "reply").expect("sent");
    collect_until(
        &a_events,
        |e| matches!(e, Event::UnreadChanged { room: r, unread: 1, unread_muted: 0 } if *r == room),
    );
    assert_eq!(unread(&b), (0, 0), "B's own reply");
    // All read stays so across a restart, and the next message counts.
    b.shutdown().expect("B stops");
    let b = start(
        &dir_b,
        b_addr,
        vec![PeerAddr {
            public: pub_a.clone(),
            addr: a.local_addr(),
        }],
    );
    assert_eq!(unread(&b), (0, 0), "all read, after a restart");
    let b_events = b.events().expect("events");
    a.send(pub_b.peer_id(), "after the restart").expect("sent");
    collect_until(
        &b_events,
        |e| matches!(e, Event::UnreadChanged { room: r, unread: 1, unread_muted: 1 } if *r == room),
    );
    assert_eq!(unread(&b), (1, 1));
    a.shutdown().expect("A stops");
    b.shutdown().expect("B stops");
}

/// A subscription answers requests in its stream, wakes its owner, and
/// one made with `since` replays what was stored after the cursor, then
/// goes live, with nothing missed or repeated while messages keep coming.
#[test]
fn a_subscription_replies_wakes_and_catches_up_without_gap_or_repeat() {
    let (dir_a, pub_a) = account("catchup-a");
    let (dir_b, pub_b) = account("catchup-b");
    let a = start(&dir_a, loopback(), Vec::new());
    let b = start(
        &dir_b,
        loopback(),
        vec![PeerAddr {
            public: pub_a.clone(),
            addr: a.local_addr(),
        }],
    );
    a.add_peer(pub_b.clone(), b.local_addr())
        .expect("B is A's peer");
    let room = direct_room(pub_b.peer_id(), pub_a.peer_id());
    let b_events = b.events().expect("events");
    let mut sent = Vec::new();
    for n in 0..600 {
        sent.push(
            a.submit(daemon::Target::Peer(pub_b.peer_id()), &format!("m{n}"))
                .expect("queued"),
        );
    }
    let mut sent: Vec<MessageId> = sent
        .into_iter()
        .map(|s| s.wait().expect("stored"))
        .collect();
    let mut first_cursor = None;
    let mut received = 0;
    collect_until(&b_events, |e| {
        if let Event::MessageReceived { cursor, .. } = e {
            first_cursor.get_or_insert(*cursor);
            received += 1;
        }
        received == 600
    });

    // Catch up from the start while 400 more arrive.
    let wakes = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&wakes);
    let sub = b
        .subscribe(SubscribeOptions {
            waker: Some(Box::new(move || {
                counter.fetch_add(1, Ordering::Relaxed);
            })),
            since: Some(0),
        })
        .expect("subscribed");
    let request = sub.request(Request::Rooms).expect("asked");
    // Queued now, so they arrive while the replay is under way.
    let later: Vec<daemon::PendingSend> = (600..1000)
        .map(|n| {
            a.submit(daemon::Target::Peer(pub_b.peer_id()), &format!("m{n}"))
                .expect("queued")
        })
        .collect();
    let mut cursors = Vec::new();
    let mut seen = Vec::new();
    let mut caught_up = false;
    let mut replied = false;
    let deadline = Instant::now() + WAIT;
    while seen.len() < 1000 || !caught_up || !replied {
        assert!(Instant::now() < deadline, "{} of 1000 seen", seen.len());
        match sub.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Update::Event(Event::MessageReceived {
                id,
                cursor,
                room: r,
                ..
            })) => {
                assert_eq!(r, room);
                cursors.push(cursor);
                seen.push(id);
            }
            Ok(Update::Event(_)) => {}
            Ok(Update::Reply(id, Ok(Reply::Rooms(rooms)))) => {
                assert_eq!(id, request);
                assert!(rooms.iter().any(|r| r.id == room));
                replied = true;
            }
            Ok(Update::Reply(_, other)) => panic!("unexpected reply {other:?}"),
            Ok(Update::CaughtUp { .. }) => caught_up = true,
            Err(error) => panic!("no update: {error}"),
        }
    }
    for pair in cursors.windows(2) {
        assert!(pair[0] < pair[1], "cursors rise: nothing repeated");
    }
    sent.extend(later.into_iter().map(|s| s.wait().expect("stored")));
    let seen_set: HashSet<MessageId> = seen.iter().copied().collect();
    assert_eq!(seen.len(), 1000, "no repeat");
    assert_eq!(seen_set, sent.iter().copied().collect(), "no gap");
    assert!(wakes.load(Ordering::Relaxed) > 0, "the waker was called");

    // From a cursor in the middle: exactly what came after it.
    let page = b.history(room, None, 1000).expect("a page");
    let mut by_cursor: Vec<(u64, MessageId)> = page.rows.iter().map(|r| (r.cursor, r.id)).collect();
    by_cursor.sort();
    let (middle, _) = by_cursor[499];
    let sub = b
        .subscribe(SubscribeOptions {
            waker: None,
            since: Some(middle),
        })
        .expect("subscribed");
    let mut replayed = Vec::new();
    loop {
        match sub.recv_timeout(WAIT).expect("an update") {
            Update::Event(Event::MessageReceived { id, .. }) => replayed.push(id),
            Update::CaughtUp { cursor } => {
                assert_eq!(cursor, by_cursor[999].0);
                break;
            }
            _ => {}
        }
    }
    let want: Vec<MessageId> = by_cursor[500..].iter().map(|(_, id)| *id).collect();
    assert_eq!(
        replayed, want,
        "in cursor order, from just after the cursor"
    );
    let _ = first_cursor;
    a.shutdown().expect("A stops");
    b.shutdown().expect("B stops");
}
