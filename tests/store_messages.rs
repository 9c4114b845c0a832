//! The typed API: messages, ordering, ranges, deliveries and the other tables,
//! and deleting a chat as seen from an old copy of the database.

mod common;

use common::{TempDir, db_files, message};
use kith::proto::ids::{MessageId, PeerId, RoomId};
use kith::store::{
    Contact, DeliveryState, FileMeta, KdfParams, Member, Message, MessageKey, Mute, Position, Room,
    Store, StoreError,
};

fn create(dir: &TempDir) -> Store {
    Store::create(&dir.db(), "pass", KdfParams::insecure_fast_for_tests()).unwrap()
}

fn position(message: &Message) -> Position {
    Position {
        timestamp: message.timestamp,
        id: message.id,
    }
}

#[test]
fn insert_is_idempotent_and_reports_only_new_ids() {
    let dir = TempDir::new("dedup");
    let mut store = create(&dir);
    let room = RoomId([1; 32]);
    let first = message(room, 1, 10, b"one");
    let second = message(room, 2, 20, b"two");
    assert_eq!(
        store.insert_messages(std::slice::from_ref(&first)).unwrap(),
        vec![first.id]
    );
    assert_eq!(
        store
            .insert_messages(&[first.clone(), second.clone()])
            .unwrap(),
        vec![second.id]
    );
    assert!(store.has_message(&first.key()).unwrap());
    let unknown = MessageKey {
        id: MessageId([0; 32]),
        ..first.key()
    };
    assert!(!store.has_message(&unknown).unwrap());
    assert_eq!(store.message(&second.key()).unwrap(), Some(second.clone()));
    assert_eq!(
        store.envelope(&second.key()).unwrap(),
        Some(second.envelope)
    );
    assert_eq!(store.message(&unknown).unwrap(), None);
    assert_eq!(store.envelope(&unknown).unwrap(), None);
}

#[test]
fn chat_view_pages_newest_first_by_timestamp_then_id() {
    let dir = TempDir::new("pages");
    let mut store = create(&dir);
    let room = RoomId([1; 32]);
    let other = RoomId([2; 32]);
    // Timestamps repeat so the id tie-break matters; insert out of order.
    let mut all: Vec<_> = (0..50)
        .map(|n| message(room, n, 1000 + n / 3, b"x"))
        .collect();
    all.reverse();
    store.insert_messages(&all).unwrap();
    store
        .insert_messages(&[message(other, 99, 5000, b"elsewhere")])
        .unwrap();

    let mut expected: Vec<Position> = all.iter().map(position).collect();
    expected.sort();
    expected.reverse();

    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = store.messages_in_room(&room, before, 7).unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(position);
        paged.extend(page.iter().map(position));
    }
    assert_eq!(paged, expected);
    // The index-only id list gives the same newest-first order.
    let ids: Vec<MessageId> = expected.iter().take(20).map(|p| p.id).collect();
    assert_eq!(store.recent_ids(&room, 20).unwrap(), ids);
    assert!(store.recent_ids(&RoomId([9; 32]), 20).unwrap().is_empty());
}

#[test]
fn range_queries_are_half_open_and_ordered() {
    let dir = TempDir::new("ranges");
    let mut store = create(&dir);
    let room = RoomId([4; 32]);
    let batch: Vec<_> = (0..30).map(|n| message(room, n, 100 + n, b"r")).collect();
    store.insert_messages(&batch).unwrap();
    // Timestamps near the top of u64 sort after small ones.
    let late = message(room, 1000, u64::MAX - 1, b"late");
    store.insert_messages(std::slice::from_ref(&late)).unwrap();

    let lower = position(&batch[5]);
    let upper = position(&batch[12]);
    let got = store.messages_in_range(&room, lower, Some(upper)).unwrap();
    let want: Vec<Position> = batch[5..12].iter().map(position).collect();
    assert_eq!(got, want);

    let everything = store
        .messages_in_range(
            &room,
            Position {
                timestamp: 0,
                id: MessageId([0; 32]),
            },
            None,
        )
        .unwrap();
    assert_eq!(everything.len(), 31);
    assert_eq!(everything.last(), Some(&position(&late)));
    assert!(everything.windows(2).all(|pair| pair[0] < pair[1]));
}

#[test]
fn deliveries_move_forward_and_pending_ones_form_the_outbox() {
    let dir = TempDir::new("outbox");
    let mut store = create(&dir);
    let room = RoomId([5; 32]);
    let (alice, bob) = (PeerId([0xa; 32]), PeerId([0xb; 32]));
    let first = message(room, 1, 1, b"1");
    let second = message(room, 2, 2, b"2");
    store
        .insert_messages(&[first.clone(), second.clone()])
        .unwrap();
    for message in [&first, &second] {
        for peer in [&alice, &bob] {
            assert!(
                store
                    .set_delivery(&message.key(), peer, DeliveryState::Pending)
                    .unwrap()
            );
        }
    }
    assert_eq!(
        store.outbox(&alice).unwrap(),
        vec![first.key(), second.key()]
    );

    store
        .set_delivery(&first.key(), &alice, DeliveryState::Read)
        .unwrap();
    // A late "delivered" does not move the state back.
    store
        .set_delivery(&first.key(), &alice, DeliveryState::Delivered)
        .unwrap();
    assert_eq!(
        store.deliveries(&first.key()).unwrap(),
        vec![(alice, DeliveryState::Read), (bob, DeliveryState::Pending)]
    );
    assert_eq!(store.outbox(&alice).unwrap(), vec![second.key()]);
    assert_eq!(store.outbox(&bob).unwrap(), vec![first.key(), second.key()]);
    assert!(
        !store
            .set_delivery(
                &MessageKey {
                    id: MessageId([0; 32]),
                    ..first.key()
                },
                &bob,
                DeliveryState::Read
            )
            .unwrap()
    );
}

#[test]
fn identity_contacts_rooms_members_keys_blocks_mutes_files_round_trip() {
    let dir = TempDir::new("tables");
    let mut store = create(&dir);
    let room = RoomId([6; 32]);
    let alice = PeerId([0xa; 32]);

    assert_eq!(store.identity().unwrap(), None);
    store.set_identity(&[1; 32]).unwrap();
    store.set_identity(&[2; 32]).unwrap();
    assert_eq!(store.identity().unwrap().as_deref(), Some(&[2; 32]));

    let mut contact = Contact {
        peer: alice,
        display_name: "Alice".into(),
        verified: false,
    };
    store.upsert_contact(&contact).unwrap();
    contact.verified = true;
    store.upsert_contact(&contact).unwrap();
    assert_eq!(store.contacts().unwrap(), vec![contact]);
    assert!(store.remove_contact(&alice).unwrap());
    assert!(store.contacts().unwrap().is_empty());

    let info = Room {
        id: room,
        name: "Garden".into(),
        created_at: 77,
    };
    store.upsert_room(&info).unwrap();
    assert_eq!(store.rooms().unwrap(), vec![info]);

    store
        .set_member(
            &room,
            Member {
                peer: alice,
                joined_epoch: 3,
                public_key: Some([4; 32]),
            },
        )
        .unwrap();
    // A later write without the key (a new epoch) keeps it.
    store
        .set_member(
            &room,
            Member {
                peer: alice,
                joined_epoch: 4,
                public_key: None,
            },
        )
        .unwrap();
    assert_eq!(
        store.members(&room).unwrap(),
        vec![Member {
            peer: alice,
            joined_epoch: 4,
            public_key: Some([4; 32]),
        }]
    );
    assert!(store.remove_member(&room, &alice).unwrap());
    assert!(!store.remove_member(&room, &alice).unwrap());

    store.put_epoch_key(&room, 3, &[9; 32]).unwrap();
    store.put_sender_key(&room, 3, &alice, &[8; 32]).unwrap();
    assert_eq!(
        store.epoch_key(&room, 3).unwrap().as_deref(),
        Some(&[9; 32])
    );
    assert_eq!(store.epoch_key(&room, 4).unwrap(), None);
    assert_eq!(
        store.sender_key(&room, 3, &alice).unwrap().as_deref(),
        Some(&[8; 32])
    );

    store.block(&alice, 5).unwrap();
    assert!(store.is_blocked(&alice).unwrap());
    assert_eq!(store.blocked().unwrap(), vec![alice]);
    assert!(store.unblock(&alice).unwrap());
    assert!(!store.is_blocked(&alice).unwrap());

    assert_eq!(store.mute(&room).unwrap(), None);
    store.set_mute(&room, Mute::Until(1234)).unwrap();
    assert_eq!(store.mute(&room).unwrap(), Some(Mute::Until(1234)));
    store.set_mute(&room, Mute::Indefinitely).unwrap();
    assert_eq!(store.mute(&room).unwrap(), Some(Mute::Indefinitely));
    store.clear_mute(&room).unwrap();
    assert_eq!(store.mute(&room).unwrap(), None);

    let mut file = FileMeta {
        hash: [3; 32],
        room,
        message: MessageId([4; 32]),
        name: "photo.jpg".into(),
        size: 123_456,
        complete: false,
    };
    store.put_file(&file).unwrap();
    file.complete = true;
    store.put_file(&file).unwrap();
    assert_eq!(store.files_in_room(&room).unwrap(), vec![file.clone()]);
    assert_eq!(store.file(&[3; 32]).unwrap(), Some(file));
    assert_eq!(store.file(&[0; 32]).unwrap(), None);

    // Everything survives a reopen.
    drop(store);
    let store = Store::open(&dir.db(), "pass").unwrap();
    assert_eq!(store.identity().unwrap().as_deref(), Some(&[2; 32]));
    assert_eq!(
        store.sender_key(&room, 3, &alice).unwrap().as_deref(),
        Some(&[8; 32])
    );
    assert_eq!(store.files_in_room(&room).unwrap().len(), 1);
}

#[test]
fn deleted_chat_stays_unreadable_in_an_old_copy_of_the_database() {
    let dir = TempDir::new("oldcopy");
    let db = dir.db();
    let kept = RoomId([1; 32]);
    let doomed = RoomId([2; 32]);
    let mut store = create(&dir);
    for room in [kept, doomed] {
        store
            .upsert_room(&Room {
                id: room,
                name: "r".into(),
                created_at: 0,
            })
            .unwrap();
        store
            .insert_messages(&[message(room, 1, 1, b"secret")])
            .unwrap();
    }
    store.put_epoch_key(&doomed, 1, &[7; 32]).unwrap();
    drop(store);

    // An attacker (or a backup) keeps a copy of the database files.
    let backup = dir.path().join("backup");
    std::fs::create_dir_all(&backup).unwrap();
    for path in db_files(&db) {
        if path.exists() {
            std::fs::copy(&path, backup.join(path.file_name().unwrap())).unwrap();
        }
    }

    let mut store = Store::open(&db, "pass").unwrap();
    store.delete_room(&doomed).unwrap();
    store.delete_room(&doomed).unwrap(); // Idempotent.
    assert!(
        store
            .messages_in_room(&doomed, None, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.rooms().unwrap().len(), 1);
    assert!(!store.rooms_with_keys().contains(&doomed));
    drop(store);

    // Put the old database back under the current key file: the passphrase
    // still opens it, the kept room reads, the deleted one does not.
    for path in db_files(&db) {
        let _ = std::fs::remove_file(&path);
        let old = backup.join(path.file_name().unwrap());
        if old.exists() {
            std::fs::copy(&old, &path).unwrap();
        }
    }
    let store = Store::open(&db, "pass").unwrap();
    assert_eq!(
        store.rooms().unwrap().len(),
        2,
        "the old copy still lists the room"
    );
    assert_eq!(
        store.messages_in_room(&kept, None, 10).unwrap()[0].body,
        b"secret"
    );
    assert!(matches!(
        store.messages_in_room(&doomed, None, 10),
        Err(StoreError::RoomKeyMissing(room)) if room == doomed
    ));
    assert!(matches!(
        store.epoch_key(&doomed, 1),
        Err(StoreError::RoomKeyMissing(_))
    ));
}

#[test]
fn group_commit_acknowledges_only_what_committed() {
    use kith::store::{BatchConfig, CommitBatcher};
    use std::time::{Duration, Instant};

    let dir = TempDir::new("groupcommit");
    let mut store = create(&dir);
    let room = RoomId([8; 32]);
    let mut batcher = CommitBatcher::new(BatchConfig {
        max_batch: 10,
        max_delay: Duration::from_millis(2),
    });
    let mut acked: Vec<MessageKey> = Vec::new();
    let mut commits = 0;
    let start = Instant::now();
    // 100 messages arriving 50 µs apart (20k/s): under load after the first.
    for n in 0..100u64 {
        let now = start + Duration::from_micros(50 * n);
        batcher.push(message(room, n, n, b"m"), now);
        if let Some(batch) = batcher.poll_flush(now) {
            store.insert_messages(&batch).unwrap();
            commits += 1;
            // The ack hook: only after insert_messages returned Ok.
            acked.extend(batch.iter().map(Message::key));
        }
        for id in &acked {
            assert!(store.has_message(id).unwrap());
        }
    }
    let deadline = batcher
        .poll_timeout()
        .expect("some writes are still pending");
    let batch = batcher.poll_flush(deadline).expect("due at its deadline");
    store.insert_messages(&batch).unwrap();
    commits += 1;
    acked.extend(batch.iter().map(Message::key));

    assert_eq!(acked.len(), 100);
    assert!(commits <= 12, "batched under load: {commits} commits");
    assert!(commits > 1);
}

#[test]
fn a_readable_copy_replaces_one_stored_unreadable() {
    let dir = TempDir::new("upgrade");
    let mut store = create(&dir);
    let room = RoomId([6; 32]);
    let readable = message(room, 1, 10, b"now readable");
    let unreadable = Message {
        body: Vec::new(),
        ..readable.clone()
    };
    let other = message(room, 2, 20, b"already fine");
    store
        .insert_messages(&[unreadable.clone(), other.clone()])
        .unwrap();
    assert_eq!(
        store
            .upgrade_unreadable(&[readable.clone(), other.clone(), unreadable.clone()])
            .unwrap(),
        vec![readable.id],
        "only the unreadable copy is replaced, and not by another unreadable one"
    );
    assert_eq!(
        store.message(&readable.key()).unwrap(),
        Some(readable.clone())
    );
    assert!(
        store.upgrade_unreadable(&[readable]).unwrap().is_empty(),
        "once"
    );
}

/// Reconciliation with a member who joined in a later epoch offers only the
/// messages of epochs from then on (issue 17, high 2), whether they were
/// committed at once or went through the journal.
#[test]
fn sync_items_leave_out_epochs_before_a_members_join() {
    use kith::proto::crypto::{ChainId, Identity, OutgoingMessage, SenderChain, seal_envelope};
    use rand::SeedableRng;
    let dir = TempDir::new("sync-epochs");
    let mut store = create(&dir);
    let room = RoomId([5; 32]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let author = Identity::generate(&mut rng);
    let sealed = |rng: &mut rand::rngs::StdRng, epoch: u32, n: u64| -> Message {
        let mut chain = SenderChain::new(
            rng,
            ChainId {
                room,
                epoch,
                sender: author.peer_id(),
            },
        );
        let text = format!("epoch {epoch} message {n}");
        let envelope = seal_envelope(
            &author,
            &mut chain,
            OutgoingMessage {
                kind: 1,
                timestamp: 1_000 + n,
                plaintext: text.as_bytes(),
            },
        )
        .expect("seal");
        Message {
            id: envelope.id(),
            room,
            sender: author.peer_id(),
            sender_seq: envelope.header.seq,
            timestamp: envelope.header.timestamp,
            body: text.into_bytes(),
            envelope: envelope.emit(),
        }
    };
    let old: Vec<Message> = (0..3).map(|n| sealed(&mut rng, 0, n)).collect();
    let new: Vec<Message> = (3..5).map(|n| sealed(&mut rng, 1, n)).collect();
    store.insert_messages(&old).unwrap();
    // Through the journal, then settled.
    store.journal_messages_and_chains(&new, Vec::new()).unwrap();
    store.settle().unwrap();
    let ids = |min_epoch| -> Vec<MessageId> {
        store
            .sync_items(&room, min_epoch)
            .unwrap()
            .into_iter()
            .map(|p| p.id)
            .collect()
    };
    assert_eq!(ids(0).len(), 5, "everything for a member from the start");
    let mut want: Vec<MessageId> = new.iter().map(|m| m.id).collect();
    want.sort_by_key(|id| new.iter().find(|m| m.id == *id).map(|m| m.timestamp));
    assert_eq!(ids(1), want, "only epoch 1 for a member who joined then");
    assert!(ids(2).is_empty());
}
