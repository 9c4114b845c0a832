//! History pages, cursors, read markers and unread counts in the store.

mod common;

use std::collections::HashSet;

use common::{TempDir, message};
use kith::proto::ids::{PeerId, RoomId};
use kith::store::{DeliveryState, KdfParams, Message, Position, Store};

fn create(dir: &TempDir) -> Store {
    Store::create(&dir.db(), "pass", KdfParams::insecure_fast_for_tests()).unwrap()
}

fn position(message: &Message) -> Position {
    Position {
        timestamp: message.timestamp,
        id: message.id,
    }
}

/// Pages walk back through every message once, newest first in (timestamp,
/// id) order, whatever order they were stored in; unreadable rows are
/// there, flagged; each row's cursor names it for the next page.
#[test]
fn pages_cover_a_room_once_in_timestamp_order() {
    let dir = TempDir::new("history-pages");
    let mut store = create(&dir);
    let room = RoomId([1; 32]);
    let other = RoomId([2; 32]);
    // Stored out of timestamp order, with ties on the timestamp.
    let mut batch: Vec<Message> = (0..237u64)
        .map(|n| message(room, n, 1_000 + (n * 7919) % 101, b"text"))
        .collect();
    batch[5].body.clear();
    store.insert_messages(&batch).unwrap();
    store
        .insert_messages(&[message(other, 1, 1_050, b"elsewhere")])
        .unwrap();
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store.history(&room, before, 50).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 50);
        before = Some(page.last().unwrap().cursor);
        seen.extend(page);
    }
    assert_eq!(seen.len(), batch.len(), "no gap, no repeat");
    let mut expected: Vec<&Message> = batch.iter().collect();
    expected.sort_by_key(|m| std::cmp::Reverse((m.timestamp, m.id)));
    for (entry, want) in seen.iter().zip(&expected) {
        assert_eq!(&entry.message, *want);
        assert_eq!(entry.readable(), !want.body.is_empty());
        assert_eq!(
            store.position_of(&room, entry.cursor).unwrap(),
            Some(position(want))
        );
    }
    let cursors: HashSet<u64> = seen.iter().map(|e| e.cursor).collect();
    assert_eq!(cursors.len(), seen.len(), "cursors are unique");
    // A cursor of another room names nothing here.
    let foreign = store.history(&other, None, 1).unwrap()[0].cursor;
    assert!(store.history(&room, Some(foreign), 10).unwrap().is_empty());
    assert_eq!(store.position_of(&room, foreign).unwrap(), None);
}

/// The page query walks the room's (room, timestamp, id) index: no scan,
/// no temporary sort.
#[test]
fn the_page_query_uses_the_room_index() {
    let dir = TempDir::new("history-plan");
    let store = create(&dir);
    let plan = store.explain_history().unwrap().join("\n");
    assert!(plan.contains("messages_by_room_time"), "{plan}");
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    assert!(!plan.starts_with("SCAN"), "{plan}");
}

/// Our messages carry their recorded delivery states.
#[test]
fn pages_carry_delivery_states() {
    let dir = TempDir::new("history-deliveries");
    let mut store = create(&dir);
    let room = RoomId([1; 32]);
    let ours = message(room, 1, 10, b"ours");
    store.insert_messages(std::slice::from_ref(&ours)).unwrap();
    let (a, b) = (PeerId([1; 32]), PeerId([2; 32]));
    store
        .set_delivery(&ours.key(), &a, DeliveryState::Pending)
        .unwrap();
    store
        .set_delivery(&ours.key(), &b, DeliveryState::Delivered)
        .unwrap();
    let page = store.history(&room, None, 10).unwrap();
    assert_eq!(
        page[0].deliveries,
        vec![(a, DeliveryState::Pending), (b, DeliveryState::Delivered)]
    );
}

/// Everything stored after a cursor, in the order it was stored, across
/// rooms; resuming from the last cursor seen repeats nothing.
#[test]
fn stored_after_a_cursor_resumes_without_gap_or_repeat() {
    let dir = TempDir::new("history-after");
    let mut store = create(&dir);
    assert_eq!(store.latest_cursor().unwrap(), 0);
    let (a, b) = (RoomId([1; 32]), RoomId([2; 32]));
    let batch: Vec<Message> = (0..30u64)
        .map(|n| message(if n % 3 == 0 { a } else { b }, n, 100 - n, b"x"))
        .collect();
    store.insert_messages(&batch).unwrap();
    let mut cursor = 0;
    let mut got = Vec::new();
    loop {
        let chunk = store.stored_after(cursor, 7).unwrap();
        if chunk.is_empty() {
            break;
        }
        for (c, message) in chunk {
            assert!(c > cursor);
            cursor = c;
            got.push(message);
        }
    }
    assert_eq!(got, batch, "in the order stored");
    assert_eq!(store.latest_cursor().unwrap(), cursor);
}

/// Unread counts what others wrote after the marker; markers persist.
#[test]
fn unread_counts_others_after_the_marker_and_markers_persist() {
    let dir = TempDir::new("history-unread");
    let room = RoomId([1; 32]);
    let me = PeerId([9; 32]);
    {
        let mut store = create(&dir);
        let mut batch: Vec<Message> = (0..10u64)
            .map(|n| message(room, n, 100 + n, b"x"))
            .collect();
        // Two of them are ours.
        batch[8].sender = me;
        batch[9].sender = me;
        store.insert_messages(&batch).unwrap();
        assert_eq!(store.count_unread(&room, &me).unwrap(), 8);
        let marker = position(&batch[3]);
        store.set_read_marker(&room, &marker).unwrap();
        assert_eq!(store.count_unread(&room, &me).unwrap(), 4);
        let (newest_cursor, newest) = store.newest_in_room(&room).unwrap().unwrap();
        assert_eq!(newest, position(&batch[9]));
        assert_eq!(
            store.cursor_of(&room, &newest).unwrap(),
            Some(newest_cursor)
        );
        store.set_read_marker(&room, &newest).unwrap();
        assert_eq!(store.count_unread(&room, &me).unwrap(), 0);
        // Back to the fourth: what was read after it is unread again.
        store.set_read_marker(&room, &marker).unwrap();
    }
    let store = Store::open(&dir.db(), "pass").unwrap();
    let markers = store.read_markers().unwrap();
    assert_eq!(markers.len(), 1);
    assert_eq!(markers[&room], position(&message(room, 3, 103, b"x")));
    assert_eq!(store.count_unread(&room, &me).unwrap(), 4);
}

/// Unread messages by sender, sorted.
type BySender = Vec<(PeerId, u64)>;

/// The stored counts per sender, sorted, beside the same counted by
/// reading every row after the marker: they must always agree.
fn counts(store: &Store, room: &RoomId) -> (BySender, BySender) {
    let mut stored = store.unread_by_sender(room).unwrap();
    let mut scanned = store.unread_by_sender_scanned(room).unwrap();
    stored.sort();
    scanned.sort();
    (stored, scanned)
}

/// The stored unread counts stay exact through everything that changes
/// them: live messages, old history arriving by sync (before the marker:
/// never unread), duplicates, messages stored unreadable and opened later,
/// the marker moving forward part of the way, to the newest, and back,
/// a restart, and deleting the room.
#[test]
fn stored_unread_counts_stay_exact() {
    let dir = TempDir::new("history-unread-exact");
    let room = RoomId([1; 32]);
    let other_room = RoomId([2; 32]);
    let (me, ann, bob) = (PeerId([9; 32]), PeerId([0xa; 32]), PeerId([0xb; 32]));
    let from = |sender: PeerId, n: u64, ts: u64| Message {
        sender,
        ..message(room, n, ts, b"text")
    };
    let check = |store: &Store, ann_count: u64, bob_count: u64| {
        let (stored, scanned) = counts(store, &room);
        assert_eq!(stored, scanned, "stored counts equal a scan");
        let of = |peer| {
            stored
                .iter()
                .find(|(p, _)| *p == peer)
                .map_or(0, |(_, n)| *n)
        };
        assert_eq!((of(ann), of(bob)), (ann_count, bob_count));
        assert_eq!(
            store.count_unread(&room, &me).unwrap(),
            ann_count + bob_count
        );
    };
    let mut store = create(&dir);
    // Live messages: Ann 3, Bob 2, ours 2 (counted under us, left out by
    // count_unread).
    let live = vec![
        from(ann, 0, 1_000),
        from(bob, 1, 1_001),
        from(me, 2, 1_002),
        from(ann, 3, 1_003),
        from(bob, 4, 1_004),
        from(me, 5, 1_005),
        from(ann, 6, 1_006),
    ];
    store.insert_messages(&live).unwrap();
    store
        .insert_messages(&[message(other_room, 0, 1_000, b"elsewhere")])
        .unwrap();
    check(&store, 3, 2);
    // Sent again: counted once.
    store.insert_messages(&live[..3]).unwrap();
    check(&store, 3, 2);
    // Read up to Ann's second message (part of the way).
    store.set_read_marker(&room, &position(&live[3])).unwrap();
    check(&store, 1, 1);
    // Old history by sync, before the marker: not unread. A message after
    // it in the same batch is.
    store
        .insert_messages(&[
            from(bob, 10, 500),
            from(ann, 11, 1_002),
            from(bob, 12, 2_000),
        ])
        .unwrap();
    check(&store, 1, 2);
    // Stored unreadable (no key yet), then opened: counted once.
    let mut sealed = from(ann, 13, 2_001);
    sealed.body.clear();
    store.insert_messages(&[sealed.clone()]).unwrap();
    check(&store, 2, 2);
    let opened = from(ann, 13, 2_001);
    assert_eq!(store.upgrade_unreadable(&[opened]).unwrap().len(), 1);
    check(&store, 2, 2);
    // Back before everything: all unread again.
    store
        .set_read_marker(
            &room,
            &Position {
                timestamp: 0,
                id: live[0].id,
            },
        )
        .unwrap();
    check(&store, 5, 4);
    // Forward to Bob's newest, which is not the newest message.
    store
        .set_read_marker(&room, &position(&from(bob, 12, 2_000)))
        .unwrap();
    check(&store, 1, 0);
    drop(store);
    // A restart keeps them.
    let mut store = Store::open(&dir.db(), "pass").unwrap();
    check(&store, 1, 0);
    assert_eq!(store.count_unread(&other_room, &me).unwrap(), 1);
    // To the newest: nothing unread.
    let (_, newest) = store.newest_in_room(&room).unwrap().unwrap();
    store.set_read_marker(&room, &newest).unwrap();
    check(&store, 0, 0);
    store.insert_messages(&[from(bob, 20, 3_000)]).unwrap();
    check(&store, 0, 1);
    // Deleting the room takes its counts; its history coming back counts
    // from the marker (kept) again.
    store.delete_room(&room).unwrap();
    assert!(store.unread_by_sender(&room).unwrap().is_empty());
    store
        .insert_messages(&[from(bob, 20, 3_000), from(ann, 21, 100)])
        .unwrap();
    check(&store, 0, 1);
    assert_eq!(store.count_unread(&other_room, &me).unwrap(), 1);
}
