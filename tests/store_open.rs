//! Opening, unlocking and refusing: wrong passphrases, foreign and missing
//! files, and the production key-derivation parameters.

mod common;

use common::{TempDir, file_hash, message};
use kith::proto::ids::RoomId;
use kith::store::{KdfParams, Store, StoreError, key_file_path};

const PASS: &str = "correct horse battery staple";
const WRONG: &str = "not the passphrase";

fn fast() -> KdfParams {
    KdfParams::insecure_fast_for_tests()
}

#[test]
fn wrong_passphrase_is_a_clear_error_and_changes_nothing() {
    let dir = TempDir::new("wrongpass");
    let db = dir.db();
    let mut store = Store::create(&db, PASS, fast()).unwrap();
    store
        .insert_messages(&[message(RoomId([1; 32]), 1, 5, b"hi")])
        .unwrap();
    drop(store);

    let before = (file_hash(&db), file_hash(&key_file_path(&db)));
    let err = Store::open(&db, "Correct horse battery staple").unwrap_err();
    assert!(matches!(err, StoreError::WrongPassphrase), "{err:?}");
    assert_eq!(err.to_string(), "wrong passphrase");
    let after = (file_hash(&db), file_hash(&key_file_path(&db)));
    assert_eq!(before, after);

    // And the right passphrase still works afterwards.
    let store = Store::open(&db, PASS).unwrap();
    assert_eq!(
        store
            .messages_in_room(&RoomId([1; 32]), None, 10)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn foreign_database_file_is_refused_and_left_untouched() {
    let dir = TempDir::new("foreign");
    let db = dir.db();
    drop(Store::create(&db, PASS, fast()).unwrap());

    // Replace the database by garbage, then by a plain unencrypted SQLite file.
    let garbage: Vec<u8> = (0..8192u32).map(|n| (n * 31 % 251) as u8).collect();
    std::fs::write(&db, &garbage).unwrap();
    let before = file_hash(&db);
    let err = Store::open(&db, PASS).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt), "{err:?}");
    assert!(err.to_string().contains("corrupt"), "{err}");
    assert_eq!(file_hash(&db), before);

    std::fs::remove_file(&db).unwrap();
    {
        let plain = rusqlite::Connection::open(&db).unwrap();
        plain
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let before = file_hash(&db);
    let err = Store::open(&db, PASS).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt), "{err:?}");
    assert_eq!(file_hash(&db), before);
}

#[test]
fn damaged_key_file_is_refused_without_panicking() {
    let dir = TempDir::new("badkeys");
    let db = dir.db();
    drop(Store::create(&db, PASS, fast()).unwrap());
    let keys = key_file_path(&db);
    let original = std::fs::read(&keys).unwrap();

    // A flipped bit in the sealed keyring fails authentication.
    let mut flipped = original.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    std::fs::write(&keys, &flipped).unwrap();
    let err = Store::open(&db, PASS).unwrap_err();
    assert!(matches!(err, StoreError::DamagedKeyFile { .. }), "{err:?}");

    // Every truncation is an error, never a panic.
    for len in 0..original.len() {
        std::fs::write(&keys, &original[..len]).unwrap();
        assert!(Store::open(&db, PASS).is_err(), "truncated to {len}");
    }

    // Absurd cost parameters are refused before any allocation.
    let mut absurd = original.clone();
    absurd[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&keys, &absurd).unwrap();
    assert!(matches!(
        Store::open(&db, PASS),
        Err(StoreError::DamagedKeyFile { .. })
    ));

    std::fs::write(&keys, &original).unwrap();
    assert!(Store::open(&db, PASS).is_ok());
}

/// The error for a damaged key file names it and says it is damaged; it is
/// never "wrong passphrase" nor "not a kith store".
fn assert_damaged(db: &std::path::Path, what: &str, passphrases: &[&str]) {
    let keys = key_file_path(db);
    for &passphrase in passphrases {
        let err = Store::open(db, passphrase).unwrap_err();
        match &err {
            StoreError::DamagedKeyFile { path, .. } => assert_eq!(path, &keys, "{what}"),
            other => panic!("{what}: expected DamagedKeyFile, got {other:?}: {other}"),
        }
        let sentence = err.to_string();
        assert!(
            sentence.starts_with(&format!("the key file {} is damaged: ", keys.display())),
            "{what}: {sentence}"
        );
    }
}

#[test]
fn a_cut_short_or_garbage_key_file_is_called_damaged_not_a_wrong_passphrase() {
    let dir = TempDir::new("damagedkeys");
    let db = dir.db();
    let mut store = Store::create(&db, PASS, fast()).unwrap();
    store
        .insert_messages(&[message(RoomId([1; 32]), 1, 5, b"hi")])
        .unwrap();
    drop(store);
    let keys = key_file_path(&db);
    let original = std::fs::read(&keys).unwrap();

    // Cut short anywhere, it is damaged for the right passphrase. A file
    // cut by exactly one keyring record has a possible length, and there a
    // wrong passphrase can only be reported as such.
    let record = 64;
    for len in 0..original.len() {
        std::fs::write(&keys, &original[..len]).unwrap();
        let what = format!("cut to {len} bytes");
        if len == original.len() - record {
            assert_damaged(&db, &what, &[PASS]);
        } else {
            assert_damaged(&db, &what, &[PASS, WRONG]);
        }
    }
    let garbage: Vec<u8> = (0..original.len() as u32)
        .map(|n| (n * 31 % 251) as u8)
        .collect();
    std::fs::write(&keys, &garbage).unwrap();
    assert_damaged(&db, "garbage", &[PASS, WRONG]);
    std::fs::write(&keys, vec![0u8; original.len()]).unwrap();
    assert_damaged(&db, "zeroes", &[PASS, WRONG]);
    let mut after_header = original.clone();
    after_header[9..].copy_from_slice(&garbage[9..]);
    std::fs::write(&keys, &after_header).unwrap();
    assert_damaged(&db, "garbage after the magic and version", &[PASS, WRONG]);
    let mut version_zero = original.clone();
    version_zero[8] = 0;
    std::fs::write(&keys, &version_zero).unwrap();
    assert_damaged(&db, "version 0", &[PASS, WRONG]);

    // An intact file with the wrong passphrase is still just that.
    std::fs::write(&keys, &original).unwrap();
    let err = Store::open(&db, WRONG).unwrap_err();
    assert!(matches!(err, StoreError::WrongPassphrase), "{err:?}");
    assert_eq!(err.to_string(), "wrong passphrase");
    assert!(Store::open(&db, PASS).is_ok());
}

#[test]
fn missing_files_and_existing_paths_are_clear_errors() {
    let dir = TempDir::new("missing");
    let db = dir.db();
    let err = Store::open(&db, PASS).unwrap_err();
    assert!(matches!(err, StoreError::NotAKithStore(_)), "{err:?}");
    assert!(err.to_string().contains("is not a kith store"), "{err}");
    assert!(!db.exists(), "open must not create a database");

    drop(Store::create(&db, PASS, fast()).unwrap());
    let err = Store::create(&db, PASS, fast()).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");

    // Key file present but database gone.
    std::fs::remove_file(&db).unwrap();
    let err = Store::open(&db, PASS).unwrap_err();
    assert!(matches!(err, StoreError::NotAKithStore(_)), "{err:?}");
    assert!(!db.exists());
}

#[test]
fn production_parameters_create_and_open() {
    let dir = TempDir::new("production");
    let db = dir.db();
    let mut store = Store::create(&db, PASS, KdfParams::default()).unwrap();
    store.set_identity(&[42; 32]).unwrap();
    drop(store);
    let store = Store::open(&db, PASS).unwrap();
    assert_eq!(store.identity().unwrap().as_deref(), Some(&[42; 32]));
    drop(store);
    assert!(matches!(
        Store::open(&db, "nope"),
        Err(StoreError::WrongPassphrase)
    ));
}

#[test]
fn damaged_pages_are_reported_as_corrupt_never_a_panic() {
    let dir = TempDir::new("pages");
    let db = dir.db();
    let room = RoomId([1; 32]);
    let mut store = Store::create(&db, PASS, fast()).unwrap();
    let batch: Vec<_> = (0..300)
        .map(|n| message(room, n, n, &[b'x'; 200]))
        .collect();
    store.insert_messages(&batch).unwrap();
    drop(store);
    let original = std::fs::read(&db).unwrap();
    let pages = original.len() / 4096;
    assert!(pages > 5);

    let mut corrupt_seen = 0;
    for page in 0..pages {
        let mut damaged = original.clone();
        damaged[page * 4096 + 1000] ^= 0x40;
        std::fs::write(&db, &damaged).unwrap();
        // integrity_check reads every page, so every damaged page is met.
        let outcome = Store::open(&db, PASS).and_then(|store| {
            store.messages_in_room(&room, None, 1000)?;
            store.integrity_check()
        });
        match outcome {
            Err(StoreError::Corrupt) => corrupt_seen += 1,
            Ok(problems) if !problems.is_empty() => corrupt_seen += 1,
            other => panic!("page {page}: expected Corrupt, got {other:?}"),
        }
    }
    assert_eq!(corrupt_seen, pages);
}

#[test]
fn a_store_opens_only_once_at_a_time() {
    let dir = TempDir::new("lock");
    let db = dir.db();
    let store = Store::create(&db, PASS, fast()).unwrap();
    let err = Store::open(&db, PASS).unwrap_err();
    assert!(matches!(err, StoreError::InUse(_)), "{err:?}");
    assert!(err.to_string().contains("already open"), "{err}");
    drop(store);
    let _reopened = Store::open(&db, PASS).unwrap();
}

#[test]
fn a_lock_path_that_is_a_directory_is_one_sentence_naming_it() {
    let dir = TempDir::new("lockdir");
    let db = dir.db();
    let lock = dir.path().join("kith.db.lock");
    std::fs::create_dir(&lock).unwrap();
    assert_lock_error(&Store::create(&db, PASS, fast()).unwrap_err(), &lock);
    std::fs::remove_dir(&lock).unwrap();
    drop(Store::create(&db, PASS, fast()).unwrap());
    std::fs::remove_file(&lock).unwrap();
    std::fs::create_dir(&lock).unwrap();
    assert_lock_error(&Store::open(&db, PASS).unwrap_err(), &lock);
}

fn assert_lock_error(err: &StoreError, lock: &std::path::Path) {
    let os = std::io::Error::from_raw_os_error(libc::EISDIR).to_string();
    assert_eq!(
        err.to_string(),
        format!("cannot open the lock file {}: {os}", lock.display())
    );
    // Nothing below it for an error chain to print a second time.
    assert!(std::error::Error::source(err).is_none(), "{err:?}");
}
