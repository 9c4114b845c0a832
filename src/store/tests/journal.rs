//! The journal: records written ahead of the database, settled, torn or
//! foreign files.

use super::*;

#[test]
fn journaled_messages_reach_the_database_at_settle_each_reported_new_once() {
    let (_dir, path) = temp_db("journal-settle");
    let room = RoomId([1; 32]);
    let mut store = Store::create(&path, PASS, KdfParams::insecure_fast_for_tests()).unwrap();
    let old = message(room, 1, b"already stored");
    store
        .insert_messages_and_chains(std::slice::from_ref(&old), &[])
        .unwrap();
    assert!(store.is_settled());
    let new = message(room, 2, b"new");
    let chains = chain_snapshots(room, 7);
    store
        .journal_messages_and_chains(&[old.clone(), new.clone()], chains.to_vec())
        .unwrap();
    // The same message again in a later record (a resend) is one message.
    store
        .journal_messages_and_chains(std::slice::from_ref(&new), vec![])
        .unwrap();
    assert!(!store.is_settled());
    assert!(!store.has_message(&new.key()).unwrap(), "not before settle");
    assert_eq!(store.settle().unwrap(), vec![new.id]);
    assert!(store.is_settled());
    assert_eq!(store.message(&new.key()).unwrap(), Some(new));
    assert_eq!(store.chains().unwrap(), chains.to_vec());
    assert_eq!(store.settle().unwrap(), vec![], "reported once");
}

/// A store dropped without settling is a process that died: what it had
/// journaled is in the database when the store is next opened.
#[test]
fn journaled_messages_survive_a_store_that_never_settled() {
    let (_dir, path) = temp_db("journal-crash");
    let room = RoomId([1; 32]);
    let mut store = Store::create(&path, PASS, KdfParams::insecure_fast_for_tests()).unwrap();
    let mut batch: Vec<Message> = (0..3).map(|n| message(room, n, b"kept")).collect();
    // One stored unreadable: still listed as such after the replay.
    batch[1].body.clear();
    let [sending, receiving] = chain_snapshots(room, 7);
    let mut later = sending.clone();
    later.next_seq += 5;
    store
        .journal_messages_and_chains(&batch[..2], vec![sending, receiving.clone()])
        .unwrap();
    store
        .journal_messages_and_chains(&batch[2..], vec![later.clone()])
        .unwrap();
    drop(store);
    assert!(
        std::fs::metadata(journal_path(&path)).unwrap().len() == JOURNAL_BYTES as u64,
        "the journal is a fixed-size file"
    );
    let store = Store::open(&path, PASS).unwrap();
    assert!(store.is_settled(), "moved into the database at open");
    for m in &batch {
        assert_eq!(store.message(&m.key()).unwrap().as_ref(), Some(m));
    }
    // In journal order: the later state of a chain wins.
    assert_eq!(store.chains().unwrap(), vec![later, receiving]);
    assert_eq!(
        store.unreadable_messages(&room, &batch[1].sender).unwrap(),
        vec![batch[1].clone()]
    );
}

/// Settled records are not replayed: a room deleted after its messages
/// were settled stays empty across a reopen.
#[test]
fn settled_records_are_not_replayed_after_the_journal_was_emptied() {
    let (_dir, path) = temp_db("journal-generation");
    let room = RoomId([1; 32]);
    let mut store = Store::create(&path, PASS, KdfParams::insecure_fast_for_tests()).unwrap();
    let m = message(room, 1, b"deleted later");
    store
        .journal_messages_and_chains(std::slice::from_ref(&m), vec![])
        .unwrap();
    store.settle().unwrap();
    store.delete_room(&room).unwrap();
    drop(store);
    let store = Store::open(&path, PASS).unwrap();
    assert!(!store.has_message(&m.key()).unwrap());
}

/// A record torn by a crash while it was copied (never reported durable)
/// is cut off; the records before it are kept.
#[test]
fn a_torn_journal_record_is_dropped_and_the_ones_before_it_kept() {
    let (_dir, path) = temp_db("journal-torn");
    let room = RoomId([1; 32]);
    let mut store = Store::create(&path, PASS, KdfParams::insecure_fast_for_tests()).unwrap();
    let first = message(room, 1, b"whole");
    let second = message(room, 2, b"torn");
    store
        .journal_messages_and_chains(std::slice::from_ref(&first), vec![])
        .unwrap();
    store
        .journal_messages_and_chains(std::slice::from_ref(&second), vec![])
        .unwrap();
    drop(store);
    // Damage the second record's last bytes.
    let mut bytes = std::fs::read(journal_path(&path)).unwrap();
    let end = bytes.iter().rposition(|b| *b != 0).unwrap();
    bytes[end] ^= 0xff;
    std::fs::write(journal_path(&path), &bytes).unwrap();
    let store = Store::open(&path, PASS).unwrap();
    assert!(store.has_message(&first.key()).unwrap());
    assert!(!store.has_message(&second.key()).unwrap());
}

#[test]
fn a_foreign_or_damaged_journal_file_holds_nothing_and_is_reused() {
    let (_dir, path) = temp_db("journal-foreign");
    let room = RoomId([1; 32]);
    drop(Store::create(&path, PASS, KdfParams::insecure_fast_for_tests()).unwrap());
    for garbage in [vec![0x5a; 100], vec![0xff; JOURNAL_BYTES]] {
        std::fs::write(journal_path(&path), &garbage).unwrap();
        let mut store = Store::open(&path, PASS).unwrap();
        assert!(store.is_settled());
        let m = message(room, garbage.len() as u64, b"after");
        store
            .journal_messages_and_chains(std::slice::from_ref(&m), vec![])
            .unwrap();
        drop(store);
        let store = Store::open(&path, PASS).unwrap();
        assert!(store.has_message(&m.key()).unwrap());
    }
}

/// More than the journal holds: each record that does not fit moves the
/// others into the database first, one larger than the whole journal goes
/// there directly; every message is durable and reported new once.
#[test]
fn a_full_journal_moves_into_the_database_and_keeps_going() {
    let (_dir, path) = temp_db("journal-full");
    let room = RoomId([1; 32]);
    let mut store = Store::create(&path, PASS, KdfParams::insecure_fast_for_tests()).unwrap();
    let body = vec![b'x'; 60_000];
    let mut all = Vec::new();
    for n in 0..40 {
        let m = message(room, n, &body);
        all.push(m.id);
        store.journal_messages_and_chains(&[m], vec![]).unwrap();
    }
    let huge: Vec<Message> = (100..120).map(|n| message(room, n, &body)).collect();
    all.extend(huge.iter().map(|m| m.id));
    store.journal_messages_and_chains(&huge, vec![]).unwrap();
    let mut fresh = store.settle().unwrap();
    fresh.sort();
    all.sort();
    assert_eq!(fresh, all);
    assert_eq!(store.messages_in_room(&room, None, 100).unwrap().len(), 60);
}

/// `holds_message` sees a message from the moment it is journaled (before
/// any settling, which it does not cause) and after it settled; not one
/// of another room, nor one never written.
#[test]
fn holds_message_sees_journaled_and_settled_messages_without_settling() {
    let (_dir, path) = temp_db("journal-holds");
    let (room, other) = (RoomId([1; 32]), RoomId([2; 32]));
    let mut store = Store::create(&path, PASS, KdfParams::insecure_fast_for_tests()).unwrap();
    let settled = message(room, 1, b"settled");
    store
        .insert_messages_and_chains(std::slice::from_ref(&settled), &[])
        .unwrap();
    let journaled = message(room, 2, b"journaled");
    store
        .journal_messages_and_chains(std::slice::from_ref(&journaled), vec![])
        .unwrap();
    assert!(store.holds_message(&room, &settled.id).unwrap());
    assert!(store.holds_message(&room, &journaled.id).unwrap());
    assert!(!store.is_settled(), "asking did not settle");
    assert!(!store.holds_message(&other, &journaled.id).unwrap());
    assert!(
        !store
            .holds_message(&room, &message(room, 3, b"never").id)
            .unwrap()
    );
    store.settle().unwrap();
    assert!(store.holds_message(&room, &journaled.id).unwrap());
}
