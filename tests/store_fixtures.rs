//! Stores written by older builds keep opening. `fixtures/store_v1.db` (and
//! its `.keys`) was written by the schema-v1 build; every later schema must
//! upgrade it and still read its content. Regenerate only when adding a new
//! fixture version: `KITH_WRITE_FIXTURES=1 cargo test --test store_fixtures`.

mod common;

use std::path::{Path, PathBuf};

use common::{TempDir, message};
use kith::proto::crypto::{ChainId, SecretKey, SenderChain};
use kith::proto::ids::{MessageId, PeerId, RoomId};
use kith::store::{
    Contact, DeliveryState, FileMeta, KdfParams, Member, Mute, Room, Store, key_file_path,
};

const PASS: &str = "fixture passphrase";
const ROOM: RoomId = RoomId([0x11; 32]);
const ALICE: PeerId = PeerId([0xa1; 32]);

fn fixture(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/store_v{version}.db"))
}

fn write_v1(db: &Path) {
    let mut store = Store::create(db, PASS, KdfParams::insecure_fast_for_tests()).unwrap();
    store.set_identity(&[0x1d; 32]).unwrap();
    store
        .upsert_contact(&Contact {
            peer: ALICE,
            display_name: "Alice".into(),
            verified: true,
        })
        .unwrap();
    store
        .upsert_room(&Room {
            id: ROOM,
            name: "Fixture room".into(),
            created_at: 1_700_000_000_000,
        })
        .unwrap();
    store
        .set_member(
            &ROOM,
            Member {
                peer: ALICE,
                joined_epoch: 2,
                public_key: None,
            },
        )
        .unwrap();
    store.put_epoch_key(&ROOM, 2, &[0xe2; 32]).unwrap();
    store.put_sender_key(&ROOM, 2, &ALICE, &[0x5e; 32]).unwrap();
    let messages: Vec<_> = (0..3)
        .map(|n| message(ROOM, n, 100 + n, b"fixture body"))
        .collect();
    store.insert_messages(&messages).unwrap();
    store
        .set_delivery(&messages[0].key(), &ALICE, DeliveryState::Delivered)
        .unwrap();
    store.block(&PeerId([0xb1; 32]), 5).unwrap();
    store.set_mute(&ROOM, Mute::Until(99)).unwrap();
    store
        .put_file(&FileMeta {
            hash: [0xf1; 32],
            room: ROOM,
            message: messages[1].id,
            name: "a.txt".into(),
            size: 12,
            complete: true,
        })
        .unwrap();
    store.checkpoint().unwrap();
}

#[test]
fn v1_fixture_opens_upgrades_and_reads_everything() {
    let source = fixture(1);
    if std::env::var_os("KITH_WRITE_FIXTURES").is_some() {
        let _ = std::fs::remove_file(&source);
        let _ = std::fs::remove_file(key_file_path(&source));
        write_v1(&source);
    }
    // Work on a copy: opening switches on WAL and may checkpoint on close.
    let dir = TempDir::new("fixture-v1");
    let db = dir.db();
    std::fs::copy(&source, &db).expect("the v1 fixture is checked in");
    std::fs::copy(key_file_path(&source), key_file_path(&db)).expect("with its key file");

    // A chain written after the upgrade (schema v2 added the chains table).
    let chain = SenderChain::restore(
        ChainId {
            room: ROOM,
            epoch: 2,
            sender: PeerId([0x1d; 32]),
        },
        4,
        SecretKey::from_bytes([0xc4; 32]),
    )
    .snapshot();
    for round in 0..2 {
        // Twice: the second open must find nothing left to upgrade.
        let mut store = Store::open(&db, PASS).unwrap();
        assert!(store.schema_version().unwrap() >= 2);
        if round == 0 {
            assert_eq!(store.chains().unwrap(), vec![]);
            store.put_chains(std::slice::from_ref(&chain)).unwrap();
            // Members written before schema 7 have no key; one learned
            // later is kept.
            assert_eq!(store.members(&ROOM).unwrap()[0].public_key, None);
            assert!(store.set_member_key(&ROOM, &ALICE, &[0xa7; 32]).unwrap());
        }
        assert_eq!(
            store.members(&ROOM).unwrap()[0].public_key,
            Some([0xa7; 32])
        );
        assert_eq!(store.chains().unwrap(), vec![chain.clone()]);
        assert!(store.integrity_check().unwrap().is_empty());
        assert_eq!(store.identity().unwrap().as_deref(), Some(&[0x1d; 32]));
        assert_eq!(store.contacts().unwrap()[0].display_name, "Alice");
        assert_eq!(store.rooms().unwrap()[0].name, "Fixture room");
        assert_eq!(store.members(&ROOM).unwrap()[0].joined_epoch, 2);
        assert_eq!(
            store.epoch_key(&ROOM, 2).unwrap().as_deref(),
            Some(&[0xe2; 32])
        );
        assert_eq!(
            store.sender_key(&ROOM, 2, &ALICE).unwrap().as_deref(),
            Some(&[0x5e; 32])
        );
        let messages = store.messages_in_room(&ROOM, None, 10).unwrap();
        assert_eq!(messages.len(), 3);
        assert!(
            messages
                .iter()
                .all(|message| message.body == b"fixture body")
        );
        assert_eq!(
            store.deliveries(&message(ROOM, 0, 100, b"").key()).unwrap(),
            vec![(ALICE, DeliveryState::Delivered)]
        );
        assert!(store.is_blocked(&PeerId([0xb1; 32])).unwrap());
        assert_eq!(store.mute(&ROOM).unwrap(), Some(Mute::Until(99)));
        assert_eq!(
            store.files_in_room(&ROOM).unwrap()[0].message,
            messages[1].id
        );
        assert_ne!(messages[0].id, MessageId([0; 32]));
    }
}
