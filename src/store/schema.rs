//! The database schema and its migrations.
//!
//! `PRAGMA user_version` holds the schema version. [`MIGRATIONS`] is an
//! ordered list; step *n* upgrades version *n − 1* to *n* and runs in its own
//! transaction together with the version bump, so a crash mid-upgrade leaves
//! the database at the previous version, never half-way. To change the
//! schema, append a step; never edit a released one (a fixture of every old
//! version is upgraded in the tests).

use rusqlite::Connection;

use super::StoreError;

/// One upgrade step: the SQL that takes the schema from `version - 1` to `version`.
pub(crate) struct Migration {
    pub(crate) version: u32,
    pub(crate) sql: &'static str,
}

/// Every upgrade step, oldest first.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: V1,
    },
    Migration {
        version: 2,
        sql: V2,
    },
    Migration {
        version: 3,
        sql: V3,
    },
    Migration {
        version: 4,
        sql: V4,
    },
    Migration {
        version: 5,
        sql: V5,
    },
    Migration {
        version: 6,
        sql: V6,
    },
    Migration {
        version: 7,
        sql: V7,
    },
    Migration {
        version: 8,
        sql: V8,
    },
    Migration {
        version: 9,
        sql: V9,
    },
    Migration {
        version: 10,
        sql: V10,
    },
    Migration {
        version: 11,
        sql: V11,
    },
    Migration {
        version: 12,
        sql: V12,
    },
    Migration {
        version: 13,
        sql: V13,
    },
];

/// The version this build writes.
pub(crate) const LATEST: u32 = 13;

/// Version 13: each room's unread messages (those after its read marker,
/// every room's when it has none), counted per sender and kept exact with
/// every insert and marker move (see `unread.rs`), so counting them at
/// start no longer reads every unread row. Counted once here from what is
/// stored.
const V13: &str = "
CREATE TABLE unread_counts (
    room_ref      INTEGER NOT NULL,
    sender        BLOB NOT NULL,
    count         INTEGER NOT NULL,
    PRIMARY KEY (room_ref, sender)
) WITHOUT ROWID;
INSERT INTO unread_counts (room_ref, sender, count)
    SELECT m.room_ref, m.sender, count(*) FROM messages m
    JOIN room_refs r ON r.ref = m.room_ref
    LEFT JOIN read_markers k ON k.room = r.room
    WHERE k.room IS NULL OR (m.ts, m.id) > (k.ts, k.id)
    GROUP BY m.room_ref, m.sender;
";

/// Version 12: files offered in rooms, one row per file message (the same
/// file may be offered twice, each offer with its own key). `fetch_to` is
/// the directory of a fetch asked for and not finished (resumed at start),
/// `exported` where the last finished fetch put the plaintext, `failed`
/// why the last fetch failed. The `files` table of version 1 keeps one row
/// per content hash: whether its bytes are all here.
const V12: &str = "
CREATE TABLE file_offers (
    message       BLOB PRIMARY KEY,
    room          BLOB NOT NULL,
    author        BLOB NOT NULL,
    ts            INTEGER NOT NULL,
    hash          BLOB NOT NULL,
    name          TEXT NOT NULL,
    size          INTEGER NOT NULL,
    key           BLOB NOT NULL,
    caption       TEXT,
    fetch_to      TEXT,
    exported      TEXT,
    failed        TEXT
) WITHOUT ROWID;
CREATE INDEX file_offers_by_room ON file_offers (room, ts);
CREATE INDEX file_offers_by_hash ON file_offers (hash);
";

/// Version 11: how far the user has read each room, as the position (in
/// the room's (timestamp, id) order) of the newest message read. Rooms with
/// history when this version arrives count as read up to their newest
/// message, so an upgrade does not make every old message unread.
const V11: &str = "
CREATE TABLE read_markers (
    room          BLOB PRIMARY KEY,
    ts            INTEGER NOT NULL,
    id            BLOB NOT NULL
) WITHOUT ROWID;
INSERT INTO read_markers (room, ts, id)
    SELECT r.room, m.ts, m.id FROM room_refs r JOIN messages m
    ON m.seq = (SELECT seq FROM messages WHERE room_ref = r.ref
                ORDER BY ts DESC, id DESC LIMIT 1);
";

/// Version 10: who takes over a group room when its admin leaves, as the
/// admin named it (a peer id); NULL where it named nobody (rooms kept
/// before, or an older admin): the lowest remaining peer id then.
const V10: &str = "
ALTER TABLE rooms ADD COLUMN successor BLOB;
";

/// Version 9: display names. Each peer's newest signed profile record (and
/// ours), with the name and number it holds, so names survive a restart
/// and an older record is never taken after one.
const V9: &str = "
CREATE TABLE profiles (
    peer          BLOB PRIMARY KEY,
    seq           INTEGER NOT NULL,
    name          TEXT NOT NULL,
    record        BLOB NOT NULL
) WITHOUT ROWID;
";

/// Version 8: what a group room's id derives from (its founder's peer id
/// and a nonce, 64 bytes), handed on with every invitation so members can
/// check the id; NULL for rooms kept before. And each message's epoch, so a
/// member is offered only the history of epochs it belongs to; NULL for
/// messages stored before (treated as epoch 0).
const V8: &str = "
ALTER TABLE rooms ADD COLUMN founding BLOB;
ALTER TABLE messages ADD COLUMN epoch INTEGER;
";

/// Version 7: each group room member's Ed25519 public key, so a room comes
/// back after a restart with members who are not contacts (met nearby, or
/// known from an invitation). NULL for rows written before this version.
const V7: &str = "
ALTER TABLE members ADD COLUMN public_key BLOB;
";

/// Version 6: which stored messages could not be read when they came (their
/// author's key had not arrived), by room and author, so they are opened
/// when the key comes. Rows stored unreadable before this version are not
/// listed (their bodies are sealed, so SQL cannot find them).
const V6: &str = "
CREATE TABLE unreadable (
    room_ref      INTEGER NOT NULL,
    sender        BLOB NOT NULL,
    message       INTEGER NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    PRIMARY KEY (room_ref, sender, message)
) WITHOUT ROWID;
CREATE INDEX unreadable_by_message ON unreadable (message);
";

/// Version 5: invitations not answered yet survive a restart. `sealed` is
/// the node's invitation record (it holds the room's group key) sealed
/// under the room's storage key, the room bound in the associated data.
const V5: &str = "
CREATE TABLE invitations (
    room          BLOB PRIMARY KEY,
    sealed        BLOB NOT NULL
) WITHOUT ROWID;
";

/// Version 4: a contact who wrote first and whom the user has not accepted
/// yet is a request.
const V4: &str = "
ALTER TABLE contacts ADD COLUMN request INTEGER NOT NULL DEFAULT 0;
";

/// Version 2: what a node needs to come back after a restart without asking
/// anyone: contacts' public keys (a peer id is only their hash) and group
/// rooms' admin and epoch. A mute's `room` may now also hold a peer id (a
/// muted member).
const V2: &str = "
ALTER TABLE contacts ADD COLUMN public_key BLOB;
-- NULL for a direct room.
ALTER TABLE rooms ADD COLUMN admin BLOB;
ALTER TABLE rooms ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
";

/// Version 1: the first schema.
///
/// Ids are 32-byte blobs. Timestamps are hybrid-logical-clock values (u64)
/// stored with the sign bit flipped so that SQLite's signed integer order
/// equals the unsigned order. Everything secret about a room (bodies,
/// envelopes, group keys) is sealed under that room's storage key.
const V1: &str = "
-- The local identity: one row, the Ed25519 secret sealed under the identity key.
CREATE TABLE identity (
    slot          INTEGER PRIMARY KEY CHECK (slot = 1),
    sealed_secret BLOB NOT NULL
);

CREATE TABLE contacts (
    peer          BLOB PRIMARY KEY,
    display_name  TEXT NOT NULL,
    verified      INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE rooms (
    room          BLOB PRIMARY KEY,
    name          TEXT NOT NULL,
    created_at    INTEGER NOT NULL
) WITHOUT ROWID;

-- Current members and the epoch in which each joined.
CREATE TABLE members (
    room          BLOB NOT NULL,
    peer          BLOB NOT NULL,
    joined_epoch  INTEGER NOT NULL,
    PRIMARY KEY (room, peer)
) WITHOUT ROWID;

-- Group key of each epoch of a room, sealed under the room key.
CREATE TABLE epochs (
    room          BLOB NOT NULL,
    epoch         INTEGER NOT NULL,
    sealed_key    BLOB NOT NULL,
    PRIMARY KEY (room, epoch)
) WITHOUT ROWID;

-- Per-sender chain keys within an epoch, sealed under the room key.
CREATE TABLE sender_keys (
    room          BLOB NOT NULL,
    epoch         INTEGER NOT NULL,
    peer          BLOB NOT NULL,
    sealed_key    BLOB NOT NULL,
    PRIMARY KEY (room, epoch, peer)
) WITHOUT ROWID;

-- Rooms as small integers, so that message rows and their index do not
-- repeat 32-byte room ids.
CREATE TABLE room_refs (
    ref           INTEGER PRIMARY KEY,
    room          BLOB NOT NULL UNIQUE
);

-- The integer rowid is the clustering key: inserts append to the table's
-- B-tree instead of landing at random positions, which a random 32-byte id
-- as primary key would cause (about 20 times slower batched inserts).
-- `sealed` holds body and signed envelope, sealed together under the room key.
CREATE TABLE messages (
    seq           INTEGER PRIMARY KEY,
    id            BLOB NOT NULL,
    room_ref      INTEGER NOT NULL,
    sender        BLOB NOT NULL,
    sender_seq    INTEGER NOT NULL,
    ts            INTEGER NOT NULL,
    sealed        BLOB NOT NULL
);
-- Serves the chat view (newest first), sync ranges by (timestamp, id) and
-- lookups, and deduplicates: the id fixes room and timestamp, so this is as
-- unique as the id. There is deliberately no index on the id alone: its
-- random inserts cost three quarters of the insert throughput.
CREATE UNIQUE INDEX messages_by_room_time ON messages (room_ref, ts, id);

-- Delivery state per recipient of our own messages. Rows in state 0
-- (pending) are the outbox.
CREATE TABLE deliveries (
    message       INTEGER NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    peer          BLOB NOT NULL,
    state         INTEGER NOT NULL,
    PRIMARY KEY (message, peer)
) WITHOUT ROWID;
CREATE INDEX outbox ON deliveries (peer, message) WHERE state = 0;

CREATE TABLE blocks (
    peer          BLOB PRIMARY KEY,
    since         INTEGER NOT NULL
) WITHOUT ROWID;

-- A NULL `until` means muted indefinitely.
CREATE TABLE mutes (
    room          BLOB PRIMARY KEY,
    until         INTEGER
) WITHOUT ROWID;

-- Metadata of files shared in a room; the bytes live outside the database.
CREATE TABLE files (
    hash          BLOB PRIMARY KEY,
    room          BLOB NOT NULL,
    message       BLOB NOT NULL,
    name          TEXT NOT NULL,
    size          INTEGER NOT NULL,
    complete      INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX files_by_room ON files (room);
";

/// Version 3: sender and receiver chain state, so a restarted node keeps
/// sending and reading on the same chains.
///
/// `sealed` is an encoded `ChainSnapshot` sealed under the room key, with
/// room, epoch, sender and role bound in the associated data so a row cannot
/// be moved. `role` is 0 for our sending chain, 1 for a chain we follow.
const V3: &str = "
CREATE TABLE chains (
    room          BLOB NOT NULL,
    epoch         INTEGER NOT NULL,
    sender        BLOB NOT NULL,
    role          INTEGER NOT NULL,
    sealed        BLOB NOT NULL,
    PRIMARY KEY (room, epoch, sender, role)
) WITHOUT ROWID;
";

/// Brings the schema up to [`LATEST`], one transaction per step.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: u32 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if current > LATEST {
        return Err(StoreError::TooNew {
            found: current,
            supported: LATEST,
        });
    }
    if current == LATEST {
        return Ok(());
    }
    // A step may read a whole table once (counting what is unread): through
    // a 1 MiB page cache, so an upgrade does not leave the process holding
    // a full cache of pages it will not read again.
    let cache: i64 = conn.query_row("PRAGMA cache_size", [], |row| row.get(0))?;
    conn.execute_batch("PRAGMA cache_size = -1024")?;
    let upgraded = run_steps(conn, current);
    conn.execute_batch(&format!("PRAGMA cache_size = {cache}"))?;
    upgraded
}

/// Runs the steps after version `current`, one transaction each.
fn run_steps(conn: &mut Connection, current: u32) -> Result<(), StoreError> {
    for step in MIGRATIONS.iter().filter(|step| step.version > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(step.sql)?;
        // user_version lives in the database header, which is journaled like
        // any page, so the bump commits or rolls back with the step.
        tx.execute_batch(&format!("PRAGMA user_version = {}", step.version))?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_contiguous_and_end_at_latest() {
        for (index, step) in MIGRATIONS.iter().enumerate() {
            assert_eq!(step.version as usize, index + 1);
        }
        assert_eq!(MIGRATIONS.last().map(|step| step.version), Some(LATEST));
    }

    #[test]
    fn migrate_from_empty_is_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let version: u32 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, LATEST);
    }

    #[test]
    fn an_upgrade_keeps_the_connections_cache_size() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA cache_size = -16384").unwrap();
        migrate(&mut conn).unwrap();
        let cache: i64 = conn
            .query_row("PRAGMA cache_size", [], |row| row.get(0))
            .unwrap();
        assert_eq!(cache, -16384);
    }

    #[test]
    fn too_new_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }
}
