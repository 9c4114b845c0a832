//! Search through in-process daemons on 127.0.0.1: one message found in a
//! room of 100 000, pages with no gap or repeat, and nothing of a room we
//! were removed from after we were (only what we could read). Every wait
//! is bounded.

mod common;

use std::sync::mpsc::Receiver;
use std::time::Instant;

use common::TempDir;
use common::daemons::{PASS, start, wait_for};
use common::trio::{join_room, trio};
use kith::account::Account;
use kith::daemon::Event;
use kith::net::NetConfig;
use kith::proto::ids::MessageId;
use kith::proto::ids::{PeerId, RoomId};
use kith::store::KdfParams;

#[test]
fn search_finds_one_message_among_100_000_and_pages_without_gaps() {
    const N: u64 = 100_000;
    let dir = TempDir::new("search-100k");
    let data = dir.path().join("data");
    let room = RoomId([0x5a; 32]);
    {
        let mut account = Account::create(&data, PASS, KdfParams::insecure_fast_for_tests())
            .expect("a fresh temp dir takes an account");
        let messages: Vec<_> = (0..N)
            .map(|n| {
                let text = if n == 31_337 {
                    "the Needle in the haystack".to_owned()
                } else {
                    format!("row {n}")
                };
                common::message(room, n, 1_000_000 + n, text.as_bytes())
            })
            .collect();
        for chunk in messages.chunks(10_000) {
            account.store.insert_messages(chunk).expect("stored");
        }
    }
    let handle = start(&dir, NetConfig::loopback().unicast_bind, Vec::new());
    let started = Instant::now();
    let found = handle.search("NEEDLE", None).expect("searched");
    eprintln!(
        "search of {N} messages (debug build): {:?}",
        started.elapsed()
    );
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].text, "the Needle in the haystack");
    assert_eq!(found[0].room, room);
    assert_eq!(found[0].timestamp, 1_000_000 + 31_337);
    assert!(!found[0].ours);
    assert_eq!(
        handle.search("needle", Some(room)).expect("searched").len(),
        1
    );
    assert!(
        handle
            .search("needle", Some(RoomId([1; 32])))
            .expect("searched")
            .is_empty()
    );
    assert!(handle.search("  ", None).is_err(), "nothing to search for");
    // "row 9999" and "row 99990" to "row 99999": 11, in pages of 4.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = handle
            .search_page("ROW 9999", None, before, 4)
            .expect("searched");
        if page.is_empty() {
            break;
        }
        before = page.last().map(|r| r.cursor());
        pages.push(page);
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 3]);
    let texts: Vec<String> = pages.concat().into_iter().map(|r| r.text).collect();
    let mut want: Vec<String> = (99_990..100_000)
        .rev()
        .map(|n| format!("row {n}"))
        .collect();
    want.push("row 9999".to_owned());
    assert_eq!(texts, want);
    handle.shutdown().expect("stops cleanly");
}

#[test]
fn nothing_of_a_room_is_found_from_after_we_were_removed() {
    let mut nodes = trio("search-removed");
    let ids: Vec<PeerId> = nodes.iter().map(|n| n.public.peer_id()).collect();
    let events: Vec<Receiver<Event>> = nodes
        .iter()
        .map(|n| n.handle().events().expect("events"))
        .collect();
    let room = join_room(&nodes, &events);
    let got = |rx: &Receiver<Event>, want: &str| {
        wait_for(rx, |e| {
            matches!(e, Event::MessageReceived { text, .. } if text == want).then_some(())
        })
    };
    nodes[0]
        .handle()
        .send_room(room, "Apple pie before")
        .expect("sent");
    got(&events[1], "Apple pie before");
    got(&events[2], "Apple pie before");
    nodes[0]
        .handle()
        .remove_member(room, ids[2])
        .expect("A removes C");
    wait_for(&events[2], |e| {
        matches!(e, Event::RoomRemoved { room: r } if *r == room).then_some(())
    });
    wait_for(&events[1], |e| {
        matches!(e, Event::RoomChanged { room: r } if *r == room).then_some(())
    });
    nodes[0]
        .handle()
        .send_room(room, "apple pie after")
        .expect("sent");
    nodes[1]
        .handle()
        .send_room(room, "APPLE crumble after")
        .expect("sent");
    got(&events[1], "apple pie after");
    got(&events[0], "APPLE crumble after");
    // B reads everything, newest first, its own message flagged.
    let b: Vec<(String, bool)> = nodes[1]
        .handle()
        .search("apple", None)
        .expect("searched")
        .into_iter()
        .map(|r| (r.text, r.ours))
        .collect();
    assert_eq!(b.len(), 3);
    assert!(b.contains(&("APPLE crumble after".to_owned(), true)));
    assert_eq!(b.last(), Some(&("Apple pie before".to_owned(), false)));
    // C keeps what it could read, and nothing from after.
    let c = nodes[2].handle().search("apple", None).expect("searched");
    assert_eq!(
        c.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
        ["Apple pie before"]
    );
    assert_eq!(c[0].from, ids[0]);
    assert!(
        nodes[2]
            .handle()
            .search("after", Some(room))
            .expect("searched")
            .is_empty()
    );
    let none: Vec<MessageId> = nodes[2]
        .handle()
        .search("crumble", None)
        .expect("searched")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert!(none.is_empty());
    for node in nodes.iter_mut() {
        if let Some(handle) = node.handle.take() {
            handle.shutdown().expect("stops cleanly");
        }
    }
}

/// A file message is found by its file's name and by its caption (not by
/// the bytes of its offer's hash or key), on both sides, and its result
/// says what it offers: the app's search box and `kith search` read this.
#[test]
fn a_shared_file_is_found_by_its_name_and_caption() {
    use common::daemons::{collect_until, connected_pair};
    use kith::daemon::Target;
    let ((dir_a, pub_a, a), (_dir_b, pub_b, b)) = connected_pair("search-files");
    let (a_events, b_events) = (
        a.events().expect("A is running"),
        b.events().expect("B is running"),
    );
    let path = dir_a.path().join("Invoice-2026.pdf");
    std::fs::write(&path, b"%PDF-1.7 not really").expect("write");
    let id = a
        .share_file(Target::Peer(pub_b.peer_id()), &path, Some("for December"))
        .expect("shared");
    collect_until(
        &b_events,
        |e| matches!(e, Event::MessageReceived { id: got, .. } if *got == id),
    );
    let text = b
        .send(pub_a.peer_id(), "the invoice, again?")
        .expect("sent");
    collect_until(
        &a_events,
        |e| matches!(e, Event::MessageReceived { id: got, .. } if *got == text),
    );
    for (side, handle) in [("A", &a), ("B", &b)] {
        // By name: the file message (and the text that says it too).
        let found = handle.search("INVOICE", None).expect("searched");
        let ids: Vec<MessageId> = found.iter().map(|r| r.id).collect();
        assert_eq!(ids, [text, id], "{side}: {found:?}");
        let file = found[1].file.as_ref().expect("a file result");
        assert_eq!(
            (file.name.as_str(), file.size, found[1].text.as_str()),
            ("Invoice-2026.pdf", 19, "for December"),
            "{side}"
        );
        assert!(found[0].file.is_none());
        // By caption, and by the name's extension.
        let ids = |q: &str| -> Vec<MessageId> {
            handle
                .search(q, None)
                .expect("searched")
                .iter()
                .map(|r| r.id)
                .collect()
        };
        assert_eq!(ids("december"), [id], "{side}");
        assert_eq!(ids(".pdf"), [id], "{side}");
        // Nothing else of the offer is text to match: the size's bytes
        // (19 = 0x13, then zeros) are not found.
        assert!(ids("\u{13}").is_empty(), "{side}");
    }
    a.shutdown().expect("A stops cleanly");
    b.shutdown().expect("B stops cleanly");
}
