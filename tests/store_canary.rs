//! Nothing written to the store appears in plaintext on disk.

mod common;

use common::{TempDir, db_files, message};
use kith::proto::ids::RoomId;
use kith::store::{KdfParams, Store, key_file_path};

const CANARY: &[u8] = b"CANARY-7f3a9c2e-never-on-disk";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn assert_no_plaintext(db: &std::path::Path) {
    let mut checked = 0;
    for path in db_files(db).iter().chain([&key_file_path(db)]) {
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        checked += 1;
        assert!(
            !contains(&bytes, CANARY),
            "canary found in {}",
            path.display()
        );
        assert!(
            !contains(&bytes, b"SQLite format 3"),
            "plain SQLite header in {}",
            path.display()
        );
    }
    assert!(
        checked >= 2,
        "expected at least the database and its key file"
    );
}

#[test]
fn canary_never_reaches_the_disk_in_plaintext() {
    let dir = TempDir::new("canary");
    let db = dir.db();
    let room = RoomId([3; 32]);
    let mut store = Store::create(&db, "pass", KdfParams::insecure_fast_for_tests()).unwrap();
    let batch: Vec<_> = (0..200)
        .map(|n| {
            let body = [
                b"message ".as_slice(),
                &n.to_string().into_bytes(),
                b" ",
                CANARY,
            ]
            .concat();
            message(room, n, n, &body)
        })
        .collect();
    store.insert_messages(&batch).unwrap();

    // While open: the content is in the WAL and the shared-memory file.
    let [_, wal, _] = db_files(&db);
    assert!(
        std::fs::metadata(&wal).unwrap().len() > 0,
        "the WAL should hold the batch"
    );
    assert_no_plaintext(&db);

    // After a checkpoint and after closing: the content is in the main file.
    store.checkpoint().unwrap();
    assert_no_plaintext(&db);
    drop(store);
    assert_no_plaintext(&db);

    let store = Store::open(&db, "pass").unwrap();
    let newest = store.messages_in_room(&room, None, 1).unwrap();
    assert!(
        contains(&newest[0].body, CANARY),
        "the store itself reads it back"
    );
}
