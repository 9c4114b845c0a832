//! Unit tests that need the store's internals: schema fixtures and the keys
//! a store holds.

use std::path::Path;

use rusqlite::OpenFlags;

use super::*;
use crate::proto::crypto::{
    ChainId, ChainRole, ChainSnapshot, Identity, OutgoingMessage, ReceiverChain,
    SecretKey as ChainKey, SenderChain, open_envelope, seal_envelope,
};

mod journal;
mod thief;

fn temp_db(name: &str) -> (tempdir::TempDir, PathBuf) {
    let dir = tempdir::TempDir::new(name);
    let path = dir.path().join("kith.db");
    (dir, path)
}

/// A tiny self-cleaning temporary directory, to avoid a dependency.
mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(name: &str) -> Self {
            let mut nonce = [0u8; 8];
            rand::fill(&mut nonce);
            let path = std::env::temp_dir()
                .join(format!("kith-unit-{name}-{}", u64::from_le_bytes(nonce)));
            std::fs::create_dir_all(&path).expect("invariant: the temp dir is writable");
            Self(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            // Best effort: a leftover temp dir is not worth a panic in drop.
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn message(room: RoomId, n: u64, body: &[u8]) -> Message {
    Message {
        id: MessageId(
            *blake3::hash(&[room.as_bytes().as_slice(), &n.to_le_bytes()].concat()).as_bytes(),
        ),
        room,
        sender: PeerId([1; 32]),
        sender_seq: n,
        timestamp: 1_000 + n,
        body: body.to_vec(),
        envelope: [b"envelope ".as_slice(), body].concat(),
    }
}

const PASS: &str = "correct horse";

/// A version-0 database: keyed and in WAL mode but without any schema, the
/// state a crash in the middle of `Store::create` leaves behind.
fn write_v0_fixture(path: &Path, format: PageFormat) {
    let keys = KeyFile::create(path, PASS, KdfParams::insecure_fast_for_tests()).unwrap();
    let conn = connect(
        path,
        &keys,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        format,
    )
    .unwrap();
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 0);
}

#[test]
fn v0_fixture_upgrades_to_latest_and_reopen_is_idempotent() {
    let (_dir, path) = temp_db("v0");
    write_v0_fixture(&path, PageFormat::Sha256);

    let mut store = Store::open(&path, PASS).unwrap();
    assert_eq!(store.schema_version().unwrap(), schema::LATEST);
    let room = RoomId([9; 32]);
    store
        .insert_messages(&[message(room, 1, b"after upgrade")])
        .unwrap();
    drop(store);

    let store = Store::open(&path, PASS).unwrap();
    assert_eq!(store.schema_version().unwrap(), schema::LATEST);
    let got = store.messages_in_room(&room, None, 10).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, b"after upgrade");
    assert!(store.integrity_check().unwrap().is_empty());
}

#[test]
fn deleted_room_bodies_open_with_no_key_the_store_holds() {
    let (_dir, path) = temp_db("delete");
    let kept = RoomId([1; 32]);
    let doomed = RoomId([2; 32]);
    let mut store = Store::create(&path, PASS, KdfParams::insecure_fast_for_tests()).unwrap();
    store
        .insert_messages(&[message(kept, 1, b"kept"), message(doomed, 2, b"doomed")])
        .unwrap();
    store.put_epoch_key(&doomed, 0, &[5; 32]).unwrap();
    store.set_identity(&[6; 32]).unwrap();

    // What an attacker with an old copy of the database file would see.
    let doomed_message = message(doomed, 2, b"doomed");
    let sealed: Vec<u8> = store
        .conn
        .query_row(
            "SELECT sealed FROM messages WHERE id = ?1",
            params![doomed_message.id.as_bytes()],
            |row| row.get(0),
        )
        .unwrap();
    let aad = [b"kith message v1 ".as_slice(), doomed_message.id.as_bytes()].concat();
    // The old key opens it, which shows the check below is meaningful.
    assert!(store.keys.rooms[&doomed].open(&aad, &sealed).is_some());

    store.delete_room(&doomed).unwrap();
    assert!(!store.has_message(&doomed_message.key()).unwrap());
    drop(store);

    // Reopen from disk so only persisted keys count.
    let store = Store::open(&path, PASS).unwrap();
    let held: Vec<&SecretKey> = store
        .keys
        .rooms
        .values()
        .chain([
            &store.keys.keys.master,
            &store.keys.keys.wrap,
            &store.keys.keys.identity,
        ])
        .collect();
    assert_eq!(
        held.len(),
        4,
        "one room key plus the three master-derived keys"
    );
    for key in held {
        assert!(key.open(&aad, &sealed).is_none());
        assert!(key.open(&[], &sealed).is_none());
    }
    assert!(matches!(
        store.messages_in_room(&doomed, None, 10),
        Ok(list) if list.is_empty()
    ));
    assert_eq!(
        store.messages_in_room(&kept, None, 10).unwrap()[0].body,
        b"kept"
    );
    assert_eq!(store.epoch_key(&doomed, 0).unwrap(), None);
}

#[test]
fn timestamps_keep_unsigned_order_in_sql() {
    let values = [0, 1, 1 << 62, (1 << 63) - 1, 1 << 63, u64::MAX];
    for pair in values.windows(2) {
        assert!(ts_to_sql(pair[0]) < ts_to_sql(pair[1]));
    }
    for value in values {
        assert_eq!(ts_from_sql(ts_to_sql(value)), value);
        assert_eq!(u64_from_sql(u64_to_sql(value)), value);
    }
}

#[test]
fn chat_view_query_uses_the_room_time_index() {
    let (_dir, path) = temp_db("plan");
    let store = Store::create(&path, PASS, KdfParams::insecure_fast_for_tests()).unwrap();
    for sql in [
        "SELECT * FROM messages WHERE room_ref = ?1 ORDER BY ts DESC, id DESC LIMIT ?2",
        "SELECT * FROM messages WHERE room_ref = ?1 AND (ts, id) < (?2, ?3)
         ORDER BY ts DESC, id DESC LIMIT ?4",
        "SELECT ts, id FROM messages WHERE room_ref = ?1 AND (ts, id) >= (?2, ?3)
         AND (ts, id) < (?4, ?5) ORDER BY ts, id",
    ] {
        let plan: Vec<String> = store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(
                &params![1, 0, [0u8; 32], 100, [0u8; 32]][..distinct_params(sql)],
                |row| row.get::<_, String>(3),
            )
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("; ");
        assert!(plan.contains("messages_by_room_time"), "{plan}");
        // Every bound must be part of the index search, not a filter.
        let bounds = sql.matches("(ts, id) <").count() + sql.matches("(ts, id) >").count();
        assert_eq!(plan.matches("(ts,id)").count(), bounds, "{plan}");
        assert!(
            !plan.contains("TEMP B-TREE"),
            "no sort step expected: {plan}"
        );
    }
}

/// Number of distinct `?N` parameters in `sql`.
fn distinct_params(sql: &str) -> usize {
    (1..=9).filter(|n| sql.contains(&format!("?{n}"))).count()
}

#[test]
fn contact_keys_and_group_state_survive_a_reopen() {
    let (_dir, path) = temp_db("groups");
    let peer = PeerId([7; 32]);
    let room = RoomId([8; 32]);
    let mut store = Store::create(&path, PASS, KdfParams::insecure_fast_for_tests()).unwrap();
    store
        .upsert_contact(&Contact {
            peer,
            display_name: "seven".into(),
            verified: false,
        })
        .unwrap();
    assert!(store.contact_keys().unwrap().is_empty(), "no key yet");
    store.set_contact_key(&peer, &[3; 32]).unwrap();
    store
        .upsert_room(&Room {
            id: room,
            name: "kitchen".into(),
            created_at: 1,
        })
        .unwrap();
    assert_eq!(store.group(&room).unwrap(), None, "direct until told");
    store.set_group(&room, &peer, 4).unwrap();
    assert_eq!(store.room_successor(&room).unwrap(), None, "nobody named");
    store
        .set_room_successor(&room, Some(&PeerId([6; 32])))
        .unwrap();
    drop(store);
    let store = Store::open(&path, PASS).unwrap();
    assert_eq!(store.contact_keys().unwrap(), vec![(peer, [3; 32])]);
    assert_eq!(store.group(&room).unwrap(), Some((peer, 4)));
    assert_eq!(store.room_successor(&room).unwrap(), Some(PeerId([6; 32])));
    assert_eq!(store.group(&RoomId([9; 32])).unwrap(), None);
    drop(store);
    let mut store = Store::open(&path, PASS).unwrap();
    assert!(store.contact_requests().unwrap().is_empty());
    store.set_contact_request(&peer, true).unwrap();
    assert_eq!(store.contact_requests().unwrap(), vec![peer]);
    store.set_contact_request(&peer, false).unwrap();
    assert!(store.contact_requests().unwrap().is_empty());
}

/// Snapshots of a chain as its sender keeps it and as a member follows it
/// (with one skipped key), in `room`, epoch 3.
fn chain_snapshots(room: RoomId, seed: u8) -> [ChainSnapshot; 2] {
    let identity = Identity::from_secret_bytes(&[seed; 32]);
    let chain = ChainId {
        room,
        epoch: 3,
        sender: identity.peer_id(),
    };
    let mut sending = SenderChain::restore(chain, 0, ChainKey::from_bytes([seed; 32]));
    let mut receiving = ReceiverChain::from_distribution(&sending.distribution());
    let message = OutgoingMessage {
        kind: 1,
        timestamp: 5,
        plaintext: b"x",
    };
    let _skipped = seal_envelope(&identity, &mut sending, message).unwrap();
    let second = seal_envelope(&identity, &mut sending, message).unwrap();
    open_envelope(&second, &identity.public(), &mut receiving).unwrap();
    [sending.snapshot(), receiving.snapshot(0)]
}

#[test]
fn chains_round_trip_upsert_reopen_and_delete() {
    let (_dir, path) = temp_db("chains");
    let mut store = Store::create(&path, PASS, KdfParams::insecure_fast_for_tests()).unwrap();
    assert_eq!(store.chains().unwrap(), vec![]);
    let [sending, receiving] = chain_snapshots(RoomId([1; 32]), 7);
    let [_, other_room] = chain_snapshots(RoomId([2; 32]), 8);
    store
        .put_chains(&[other_room.clone(), receiving.clone(), sending.clone()])
        .unwrap();
    let expected = vec![sending.clone(), receiving.clone(), other_room.clone()];
    assert_eq!(store.chains().unwrap(), expected);
    assert_eq!(receiving.skipped_len(), 1);

    // Upsert: the row is replaced, not added.
    let mut advanced = sending.clone();
    advanced.next_seq += 1;
    store.put_chains(&[advanced.clone()]).unwrap();
    drop(store);
    let mut store = Store::open(&path, PASS).unwrap();
    let expected = vec![advanced, receiving.clone(), other_room];
    assert_eq!(store.chains().unwrap(), expected);

    assert!(
        store
            .delete_chain(&receiving.chain, ChainRole::Receiving)
            .unwrap()
    );
    assert!(
        !store
            .delete_chain(&receiving.chain, ChainRole::Receiving)
            .unwrap()
    );
    assert_eq!(store.chains().unwrap().len(), 2);
}

#[test]
fn moved_chain_rows_do_not_open() {
    let (_dir, path) = temp_db("chains-moved");
    let mut store = Store::create(&path, PASS, KdfParams::insecure_fast_for_tests()).unwrap();
    let [sending, _] = chain_snapshots(RoomId([1; 32]), 7);
    store.put_chains(&[sending]).unwrap();
    // Relabel our sending chain as one we follow, then as another epoch.
    for change in ["role = 1", "role = 0, epoch = 4"] {
        store
            .conn
            .execute_batch(&format!("UPDATE chains SET {change}"))
            .unwrap();
        assert!(matches!(store.chains(), Err(StoreError::Undecryptable(_))));
    }
}

#[test]
fn deleted_room_takes_its_chains_and_they_stay_unreadable() {
    let (_dir, path) = temp_db("chains-delete");
    let doomed = RoomId([2; 32]);
    let mut store = Store::create(&path, PASS, KdfParams::insecure_fast_for_tests()).unwrap();
    let [sending, receiving] = chain_snapshots(doomed, 7);
    let [_, kept] = chain_snapshots(RoomId([1; 32]), 8);
    store
        .put_chains(&[sending, receiving.clone(), kept.clone()])
        .unwrap();
    // What an attacker with an old copy of the database file would see.
    let sealed: Vec<u8> = store
        .conn
        .query_row(
            "SELECT sealed FROM chains WHERE room = ?1 AND role = 1",
            params![doomed.as_bytes()],
            |row| row.get(0),
        )
        .unwrap();
    let aad = chains::chain_aad(&receiving.chain, ChainRole::Receiving);
    assert!(store.keys.rooms[&doomed].open(&aad, &sealed).is_some());

    store.delete_room(&doomed).unwrap();
    assert_eq!(store.chains().unwrap(), vec![kept.clone()]);
    drop(store);

    let store = Store::open(&path, PASS).unwrap();
    assert_eq!(store.chains().unwrap(), vec![kept]);
    let rows: i64 = store
        .conn
        .query_row(
            "SELECT count(*) FROM chains WHERE room = ?1",
            params![doomed.as_bytes()],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(rows, 0);
    for key in store.keys.rooms.values().chain([
        &store.keys.keys.master,
        &store.keys.keys.wrap,
        &store.keys.keys.identity,
    ]) {
        assert!(key.open(&aad, &sealed).is_none());
    }
}

#[test]
fn messages_and_chains_commit_together_or_not_at_all() {
    let (_dir, path) = temp_db("chains-atomic");
    let room = RoomId([1; 32]);
    let mut store = Store::create(&path, PASS, KdfParams::insecure_fast_for_tests()).unwrap();
    let batch = [message(room, 1, b"one"), message(room, 2, b"two")];
    let chains = chain_snapshots(room, 7);
    // Make the chain write fail after the messages were inserted.
    store
        .conn
        .execute_batch(
            "CREATE TEMP TRIGGER fail_chains BEFORE INSERT ON chains
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    assert!(store.insert_messages_and_chains(&batch, &chains).is_err());
    assert!(!store.has_message(&batch[0].key()).unwrap());
    assert_eq!(store.messages_in_room(&room, None, 10).unwrap(), vec![]);
    assert_eq!(store.chains().unwrap(), vec![]);

    store
        .conn
        .execute_batch("DROP TRIGGER fail_chains")
        .unwrap();
    let fresh = store.insert_messages_and_chains(&batch, &chains).unwrap();
    assert_eq!(fresh, vec![batch[0].id, batch[1].id]);
    assert_eq!(store.chains().unwrap(), chains.to_vec());
    // A duplicate batch is ignored while the chains are still upserted.
    let mut later = chains[0].clone();
    later.next_seq = 9;
    assert_eq!(
        store
            .insert_messages_and_chains(&batch, std::slice::from_ref(&later))
            .unwrap(),
        vec![]
    );
    assert_eq!(store.chains().unwrap()[0].next_seq, 9);
}

#[test]
fn new_stores_use_sha256_pages_and_older_sha512_stores_still_open() {
    let (_dir, path) = temp_db("sha256");
    let mut store = Store::create(&path, PASS, KdfParams::insecure_fast_for_tests()).unwrap();
    store
        .insert_messages(&[message(RoomId([1; 32]), 1, b"new")])
        .unwrap();
    drop(store);
    let keys = KeyFile::open(&path, PASS).unwrap();
    let as_old = connect(
        &path,
        &keys,
        OpenFlags::SQLITE_OPEN_READ_WRITE,
        PageFormat::Sha512,
    );
    assert!(
        matches!(as_old, Err(StoreError::Corrupt)),
        "written as SHA-256 pages"
    );
    drop(keys);
    assert_eq!(
        Store::open(&path, PASS)
            .unwrap()
            .messages_in_room(&RoomId([1; 32]), None, 10)
            .unwrap()
            .len(),
        1
    );

    // A store as kith before 0.3 wrote it: SHA-512 pages.
    let (_old_dir, old_path) = temp_db("sha512");
    write_v0_fixture(&old_path, PageFormat::Sha512);
    let mut old = Store::open(&old_path, PASS).expect("an older store opens");
    old.insert_messages(&[message(RoomId([2; 32]), 1, b"old")])
        .unwrap();
    drop(old);
    let reopened = Store::open(&old_path, PASS).expect("and opens again");
    assert_eq!(
        reopened
            .messages_in_room(&RoomId([2; 32]), None, 10)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn messages_stored_unreadable_are_listed_by_author_until_a_readable_copy_replaces_them() {
    let (_dir, path) = temp_db("unreadable");
    let room = RoomId([1; 32]);
    let mut store = Store::create(&path, PASS, KdfParams::insecure_fast_for_tests()).unwrap();
    let readable = message(room, 1, b"readable");
    let mut unreadable = message(room, 2, b"");
    unreadable.body.clear();
    let mut other_author = message(room, 3, b"");
    other_author.sender = PeerId([2; 32]);
    store
        .insert_messages(&[readable, unreadable.clone(), other_author.clone()])
        .unwrap();
    // Through the journal too.
    let mut journaled = message(room, 4, b"");
    journaled.body.clear();
    store
        .journal_messages_and_chains(std::slice::from_ref(&journaled), vec![])
        .unwrap();
    store.settle().unwrap();
    assert_eq!(
        store.unreadable_messages(&room, &PeerId([1; 32])).unwrap(),
        vec![unreadable.clone(), journaled.clone()]
    );
    assert_eq!(
        store.unreadable_messages(&room, &PeerId([2; 32])).unwrap(),
        vec![other_author]
    );
    let mut opened = unreadable.clone();
    opened.body = b"now readable".to_vec();
    assert_eq!(
        store.upgrade_unreadable(&[opened]).unwrap(),
        vec![unreadable.id]
    );
    assert_eq!(
        store.unreadable_messages(&room, &PeerId([1; 32])).unwrap(),
        vec![journaled]
    );
    store.delete_room(&room).unwrap();
    assert_eq!(
        store.unreadable_messages(&room, &PeerId([2; 32])).unwrap(),
        vec![]
    );
    let left: i64 = store
        .conn
        .query_row("SELECT count(*) FROM unreadable", [], |row| row.get(0))
        .unwrap();
    assert_eq!(left, 0, "a deleted room's rows go with it");
}

#[test]
fn profiles_keep_the_newest_record_across_a_reopen() {
    let (_dir, path) = temp_db("profiles");
    let peer = PeerId([9; 32]);
    let profile = |seq: u64, name: &str| StoredProfile {
        peer,
        seq,
        name: name.to_owned(),
        record: name.as_bytes().to_vec(),
    };
    {
        let mut store = Store::create(&path, PASS, KdfParams::insecure_fast_for_tests()).unwrap();
        assert!(store.put_profile(&profile(5, "Sam")).unwrap());
        // Older and equal numbers never replace what is kept.
        assert!(!store.put_profile(&profile(4, "Old Sam")).unwrap());
        assert!(!store.put_profile(&profile(5, "Other Sam")).unwrap());
        // Numbers above 2^63 still order as unsigned.
        assert!(store.put_profile(&profile(u64::MAX - 1, "Newest")).unwrap());
        assert!(!store.put_profile(&profile(6, "Too late")).unwrap());
    }
    let store = Store::open(&path, PASS).unwrap();
    assert_eq!(
        store.profiles().unwrap(),
        vec![profile(u64::MAX - 1, "Newest")]
    );
    assert_eq!(
        store.profile(&peer).unwrap(),
        Some(profile(u64::MAX - 1, "Newest"))
    );
    assert_eq!(store.profile(&PeerId([1; 32])).unwrap(), None);
}

#[test]
fn search_finds_readable_text_newest_first_in_pages_on_a_reader() {
    let (_dir, path) = temp_db("search");
    let mut store = Store::create(&path, PASS, KdfParams::insecure_fast_for_tests()).unwrap();
    let (kitchen, garden) = (RoomId([1; 32]), RoomId([2; 32]));
    let mut batch: Vec<Message> = (0..300)
        .map(|n| {
            let text = if n % 10 == 0 {
                format!("Dinner {n}")
            } else {
                format!("chat {n}")
            };
            message(kitchen, n, text.as_bytes())
        })
        .collect();
    batch.push(message(garden, 1000, b"dinner in the garden"));
    // Stored unreadable (no key when it came): never a hit.
    batch.push(message(garden, 1001, b""));
    store.insert_messages(&batch).unwrap();
    let query = |before, limit| SearchQuery {
        text: "DINNER".to_owned(),
        before,
        limit,
    };
    // On another thread, through a read-only connection.
    let reader = store.reader().unwrap();
    let scope = store.search_scope(None);
    let first = std::thread::spawn(move || reader.search(&scope, &query(None, 5)).unwrap())
        .join()
        .unwrap();
    let texts: Vec<&str> = first.iter().map(|h| h.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "dinner in the garden",
            "Dinner 290",
            "Dinner 280",
            "Dinner 270",
            "Dinner 260"
        ]
    );
    // Page after page, no gap, no repeat, until nothing is left.
    let mut seen = first.clone();
    loop {
        let before = seen.last().map(SearchHit::position);
        let page = store.search(None, &query(before, 7)).unwrap();
        if page.is_empty() {
            break;
        }
        seen.extend(page);
    }
    assert_eq!(seen.len(), 31);
    assert!(seen.windows(2).all(|w| w[0].position() > w[1].position()));
    // One room only; a word that is nowhere; an empty query.
    let garden_only = store.search(Some(&garden), &query(None, 50)).unwrap();
    assert_eq!(garden_only.len(), 1);
    assert_eq!(garden_only[0].room, garden);
    let nothing = SearchQuery {
        text: "breakfast".to_owned(),
        before: None,
        limit: 50,
    };
    assert!(store.search(None, &nothing).unwrap().is_empty());
    assert!(store.search(None, &query(None, 0)).unwrap().is_empty());
    // The reader is read-only.
    let reader = store.reader().unwrap();
    assert!(reader.conn.execute_batch("DELETE FROM messages").is_err());
    assert_eq!(store.search(None, &query(None, 100)).unwrap().len(), 31);
}

// --- what a thief of the store and passphrase finds ------------------------

/// The sealed rows of `room` as the database holds them.
fn sealed_rows(store: &Store, room: &RoomId) -> Vec<Vec<u8>> {
    let room_ref = store.room_refs[room];
    let mut stmt = store
        .conn
        .prepare("SELECT sealed FROM messages WHERE room_ref = ?1")
        .unwrap();
    stmt.query_map([room_ref], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// `secure_delete` zeroes what a delete frees and the delete's checkpoint
/// empties the WAL: someone with the store and its passphrase finds none
/// of a deleted chat's rows in any page, free pages and WAL included,
/// while the rows of a chat still there are found (the check sees
/// through the encryption).
#[test]
fn a_deleted_rooms_rows_are_in_no_page_of_the_database_or_its_wal() {
    let (_dir, path) = temp_db("thief-deleted-room");
    let mut store = Store::create(&path, PASS, KdfParams::insecure_fast_for_tests()).unwrap();
    let (deleted, kept) = (RoomId([1; 32]), RoomId([2; 32]));
    let deleted_messages: Vec<Message> = (0..200)
        .map(|n| message(deleted, n, format!("secret {n} ").repeat(30).as_bytes()))
        .collect();
    let kept_messages: Vec<Message> = (0..20)
        .map(|n| message(kept, 1_000 + n, format!("kept {n} ").repeat(30).as_bytes()))
        .collect();
    store.insert_messages(&deleted_messages).unwrap();
    store.insert_messages(&kept_messages).unwrap();
    // Moved into the database file first, so the rows are in its pages
    // and not only in the WAL.
    store.checkpoint().unwrap();
    let deleted_rows = sealed_rows(&store, &deleted);
    let kept_rows = sealed_rows(&store, &kept);
    assert_eq!(deleted_rows.len(), 200);
    let key = thief::key(&store);
    let before = thief::Index::new(&thief::pages(&path, &key));
    assert!(
        deleted_rows.iter().all(|row| before.found(row)),
        "the thief's view finds rows while they are there"
    );

    store.delete_room(&deleted).unwrap();
    let after = thief::Index::new(&thief::pages(&path, &key));
    for row in &deleted_rows {
        for window in row.chunks_exact(16) {
            assert!(!after.found(window), "a deleted row's bytes remain");
        }
    }
    assert!(kept_rows.iter().all(|row| after.found(row)));
}

/// Settled journal records are overwritten, not only left behind an older
/// generation (whose records anyone with the passphrase could still open):
/// after settling, the journal file holds nothing past its header; and what
/// an older version left there is wiped at the next open.
#[test]
fn settled_journal_records_are_wiped_from_the_file() {
    let (_dir, path) = temp_db("journal-wiped");
    let room = RoomId([1; 32]);
    let mut store = Store::create(&path, PASS, KdfParams::insecure_fast_for_tests()).unwrap();
    let after_header =
        |path: &Path| std::fs::read(journal_path(path)).unwrap()[super::journal::HEADER..].to_vec();
    for n in 0..3 {
        store
            .journal_messages_and_chains(
                &[message(room, n, b"journaled, then settled")],
                chain_snapshots(room, 7).to_vec(),
            )
            .unwrap();
    }
    assert!(
        after_header(&path).iter().any(|b| *b != 0),
        "the records are in the file before settling"
    );
    store.settle().unwrap();
    assert!(after_header(&path).iter().all(|b| *b == 0));

    // Leftovers of an older generation (as an older version left them):
    // wiped when the store opens.
    store
        .journal_messages_and_chains(&[message(room, 10, b"left over")], vec![])
        .unwrap();
    let leftover = std::fs::read(journal_path(&path)).unwrap();
    store.settle().unwrap();
    drop(store);
    let mut bytes = std::fs::read(journal_path(&path)).unwrap();
    bytes[super::journal::HEADER..].copy_from_slice(&leftover[super::journal::HEADER..]);
    std::fs::write(journal_path(&path), &bytes).unwrap();
    let store = Store::open(&path, PASS).unwrap();
    assert!(
        store.is_settled(),
        "an older generation's record does not open"
    );
    assert!(after_header(&path).iter().all(|b| *b == 0));
}

/// A store written before the unread counts were stored (version 11 or
/// 12, with read markers and messages) gets them counted by the upgrade: after the
/// marker where there is one, every message where there is none, each
/// sender apart (ours included; callers leave themselves out).
#[test]
fn version_11_store_gets_exact_unread_counts() {
    let (_dir, path) = temp_db("unread-v11");
    let (marked, unmarked) = (RoomId([1; 32]), RoomId([2; 32]));
    let (me, ann) = (PeerId([9; 32]), PeerId([0xa; 32]));
    {
        let mut store = Store::create(&path, PASS, KdfParams::insecure_fast_for_tests()).unwrap();
        let mut batch: Vec<Message> = (0..20u64)
            .map(|n| Message {
                sender: [me, ann, PeerId([1; 32])][(n % 3) as usize],
                ..message(marked, n, b"text")
            })
            .collect();
        batch.extend((0..5u64).map(|n| message(unmarked, n, b"text")));
        store.insert_messages(&batch).unwrap();
        store
            .set_read_marker(&marked, &batch[11].key().position())
            .unwrap();
        // Back to the version before the counts (the last step, whatever
        // its number): no counts table.
        store
            .conn
            .execute_batch(&format!(
                "DROP TABLE unread_counts; PRAGMA user_version = {};",
                schema::LATEST - 1
            ))
            .unwrap();
    }
    let store = Store::open(&path, PASS).unwrap();
    assert_eq!(store.schema_version().unwrap(), schema::LATEST);
    // Messages 12..20 of the marked room: n % 3 == 0 is ours (12, 15, 18),
    // 1 is Ann's (13, 16, 19), 2 the third sender's (14, 17).
    let mut counts = store.unread_by_sender(&marked).unwrap();
    counts.sort();
    assert_eq!(counts, vec![(PeerId([1; 32]), 2), (me, 3), (ann, 3)]);
    assert_eq!(store.count_unread(&marked, &me).unwrap(), 5);
    let mut scanned = store.unread_by_sender_scanned(&marked).unwrap();
    scanned.sort();
    assert_eq!(counts, scanned);
    assert_eq!(store.count_unread(&unmarked, &me).unwrap(), 5);
}
