//! The encrypted local store: everything a device keeps about its chats.
//!
//! Guarantees:
//! - **Encrypted at rest.** The database is a SQLCipher file keyed with a
//!   master key derived from the passphrase by Argon2id (see `keys.rs`); its
//!   pages, WAL and shared-memory file never hold plaintext. A wrong
//!   passphrase gives [`StoreError::WrongPassphrase`] and touches nothing.
//! - **A key per chat.** Message bodies, signed envelopes, group keys and
//!   chain state are additionally sealed (XChaCha20-Poly1305) under a random
//!   storage key of their room. [`Store::delete_room`] destroys that key, so
//!   the room's history stays unreadable even from an old copy of the
//!   database file.
//! - **Durable when it says so.** Every write method returns after its
//!   transaction committed. WAL with `synchronous = NORMAL`: a committed
//!   transaction survives the process being killed at any point; after a
//!   power loss or kernel crash the last few transactions may be rolled back
//!   (never torn). `FULL` would fsync every commit: about 20 times slower
//!   per commit (measured on this machine's disk with plain SQLite).
//!   The reliable layer acknowledges a message only after the batch that
//!   holds it committed (see [`CommitBatcher`]), or was appended to the
//!   store's journal ([`Store::journal_messages_and_chains`], same
//!   durability, no transaction; `journal.rs`).
//! - **Typed.** No SQL leaves this module; a corrupt or foreign file gives a
//!   [`StoreError`] sentence and is left untouched.
//!
//! The store belongs to the node's IO shell; the UI never calls it.

mod batch;
mod blobs;
mod chains;
mod contacts;
mod files;
mod history;
mod invitations;
mod journal;
mod keys;
mod messages;
mod mutes;
mod open;
mod profiles;
mod rooms;
mod schema;
mod search;
mod unread;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use rusqlite::{Connection, OptionalExtension, params};
use zeroize::Zeroizing;

use crate::proto::ids::{MessageId, PeerId, RoomId};
pub use batch::{BatchConfig, CommitBatcher};
pub use blobs::BlobWorker;
pub use files::StoredOffer;
pub use history::HistoryEntry;
pub use journal::{JOURNAL_BYTES, journal_path};
use journal::{Journal, JournalRecord};
use keys::KeyFile;
#[cfg(test)]
use keys::SecretKey;
pub use keys::{KdfParams, key_file_path};
pub(crate) use open::PageFormat;
pub use open::store_files;
use open::{connect, file_error, owner_only};
pub use profiles::StoredProfile;
pub use search::{MAX_SEARCH_LIMIT, SearchHit, SearchQuery, SearchScope, StoreReader};

/// Everything that can go wrong in the store, each with a sentence a user can read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The passphrase does not unlock this store.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// No kith store at this path (no key file, or no database).
    #[error("{} is not a kith store (its database or key file is missing)", .0.display())]
    NotAKithStore(PathBuf),
    /// The passphrase is right but the database file is not a kith
    /// database, or a page of it no longer authenticates. At open this is
    /// detected before anything is written.
    #[error("the database file is corrupt or is not a kith database")]
    Corrupt,
    /// The key file next to the database is damaged: cut short, not a key
    /// file, or its content does not parse or authenticate.
    #[error("the key file {} is damaged: {reason}", path.display())]
    DamagedKeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Key derivation parameters given to [`Store::create`] that Argon2 or
    /// kith refuses.
    #[error("unusable key derivation parameters: {0}")]
    BadKdfParams(&'static str),
    /// The key file was written by a newer kith.
    #[error("the store's key file has version {0}, which this version of kith cannot read")]
    UnsupportedKeyFileVersion(u8),
    /// The database was written by a newer kith.
    #[error(
        "the database has schema version {found}, newer than this version of kith understands ({supported})"
    )]
    TooNew {
        /// Version in the file.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
    },
    /// Another process (or another `Store` in this one) has the store open.
    #[error("{} is already open in another kith process", .0.display())]
    InUse(PathBuf),
    /// `create` found something already there.
    #[error("{} already exists; refusing to overwrite it", .0.display())]
    AlreadyExists(PathBuf),
    /// The room has no storage key: it was deleted or never written to.
    #[error("room {0:?} has no storage key (the chat was deleted)")]
    RoomKeyMissing(RoomId),
    /// A value is too large to store.
    #[error("cannot store a {0}")]
    TooLarge(&'static str),
    /// A sealed value failed to authenticate.
    #[error("stored {0} does not decrypt; the database is damaged")]
    Undecryptable(&'static str),
    /// SQLite reported an error.
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    /// The disk holding the store is full (or the user's quota is used
    /// up): nothing of this write was kept, everything written before is.
    /// It works again once space is freed.
    #[error("disk full: {0}")]
    DiskFull(String),
    /// One of the store's files cannot be opened or created.
    #[error("cannot open the {what} {}: {error}", path.display())]
    File {
        /// Which file: "lock file", "key file", ...
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What the system said. Part of the sentence, not a separate
        /// `source`, so that it is not printed twice.
        error: std::io::Error,
    },
    /// The file system reported an error.
    #[error("file error: {0}")]
    Io(std::io::Error),
}

/// Not `#[from]`: that would also make the error the `source`, and error
/// chains (`anyhow`'s `{:#}`) would print it twice.
impl From<std::io::Error> for StoreError {
    /// "No space left" (or over quota) is [`StoreError::DiskFull`], so the
    /// user reads what to do instead of an errno.
    fn from(err: std::io::Error) -> Self {
        if is_disk_full(&err) {
            StoreError::DiskFull(format!("{err}; free some space on that disk"))
        } else {
            StoreError::Io(err)
        }
    }
}

/// Whether a file system error means "no space left" (or over quota).
fn is_disk_full(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

impl From<rusqlite::Error> for StoreError {
    /// A page that fails SQLCipher's authentication, or a malformed B-tree,
    /// is reported as [`StoreError::Corrupt`] wherever it is met, not only
    /// at open.
    fn from(err: rusqlite::Error) -> Self {
        match err.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
                StoreError::Corrupt
            }
            // SQLITE_FULL: the database (or its WAL) could not grow. The
            // transaction was rolled back; the journal keeps what it holds.
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::DiskFull(
                "the database cannot grow; free some space on its disk".to_owned(),
            ),
            _ => StoreError::Sqlite(err),
        }
    }
}

/// Short for `Result<T, StoreError>`.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A chat message as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// blake3 of the signed envelope.
    pub id: MessageId,
    /// The room it belongs to.
    pub room: RoomId,
    /// Its author.
    pub sender: PeerId,
    /// The author's per-room sequence number.
    pub sender_seq: u64,
    /// Hybrid-logical-clock timestamp.
    pub timestamp: u64,
    /// The decrypted content.
    pub body: Vec<u8>,
    /// The original signed envelope, forwarded verbatim during sync.
    pub envelope: Vec<u8>,
}

/// A message's place in its room's total order: by timestamp, then id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Hybrid-logical-clock timestamp.
    pub timestamp: u64,
    /// Message id; breaks ties between equal timestamps.
    pub id: MessageId,
}

/// What addresses a stored message: its room and its position there.
///
/// The id alone would do, but an index on the random 32-byte id makes every
/// insert land on a random index page; measured here that cuts batched
/// inserts from ~115k/s to ~30k/s. The id fixes the signed envelope and the
/// envelope fixes room and timestamp, so `(room, timestamp, id)` is exactly as
/// unique as the id, and every caller that has an id parsed its envelope and
/// knows the other two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageKey {
    /// The room.
    pub room: RoomId,
    /// Hybrid-logical-clock timestamp.
    pub timestamp: u64,
    /// The id.
    pub id: MessageId,
}

impl MessageKey {
    /// The position within the room.
    pub fn position(&self) -> Position {
        Position {
            timestamp: self.timestamp,
            id: self.id,
        }
    }
}

impl Message {
    /// The key that addresses this message in the store.
    pub fn key(&self) -> MessageKey {
        MessageKey {
            room: self.room,
            timestamp: self.timestamp,
            id: self.id,
        }
    }
}

/// How far a recipient got with one of our messages. Only moves forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeliveryState {
    /// Not yet acknowledged: in the outbox.
    Pending = 0,
    /// The recipient's device stored it.
    Delivered = 1,
    /// The recipient saw it.
    Read = 2,
}

/// Someone we know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// Their peer id.
    pub peer: PeerId,
    /// What we call them.
    pub display_name: String,
    /// Whether we compared safety numbers out of band.
    pub verified: bool,
}

/// A chat (a 1:1 chat is a room of two).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Room {
    /// Its id.
    pub id: RoomId,
    /// Display name.
    pub name: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at: u64,
}

/// A member of a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// The member.
    pub peer: PeerId,
    /// The epoch in which they joined.
    pub joined_epoch: u64,
    /// Their Ed25519 public key; `None` when it was not known when the
    /// row was written (and in rows written before schema 7).
    pub public_key: Option<[u8; 32]>,
}

/// How long a room is muted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mute {
    /// Until this time, milliseconds since the Unix epoch.
    Until(u64),
    /// Until unmuted.
    Indefinitely,
}

/// Metadata of a file shared in a room. The bytes live outside the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMeta {
    /// blake3 of the content.
    pub hash: [u8; 32],
    /// Where it was shared.
    pub room: RoomId,
    /// The message that shared it.
    pub message: MessageId,
    /// File name as sent.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Whether all bytes arrived and were checked against `hash`.
    pub complete: bool,
}

/// An open, unlocked store.
pub struct Store {
    /// Held for the store's lifetime: one writer of the key file at a time.
    /// The OS releases it when the process dies, even by SIGKILL.
    _lock: std::fs::File,
    conn: Connection,
    keys: KeyFile,
    /// Cache of the `room_refs` table: rooms are stored as small integers
    /// in the messages table and its index.
    room_refs: HashMap<RoomId, i64>,
    /// Messages durable in the journal but not in the database yet.
    journal: Journal,
    /// What the journal holds, in order (so settling need not read it).
    unsettled: Vec<JournalRecord>,
    /// Ids of journaled messages that turned out new when they reached the
    /// database, with their row numbers (cursors), for the next
    /// [`Store::settle`] to report.
    settled_fresh: Vec<(MessageId, u64)>,
    /// A disk with no space left, as the simulator makes one: journal
    /// appends and settlings fail with [`StoreError::DiskFull`].
    #[cfg(any(test, feature = "sim"))]
    simulated_full_disk: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print keys.
        f.debug_struct("Store")
            .field("path", &self.conn.path())
            .finish_non_exhaustive()
    }
}

// SQLite stores signed 64-bit integers. Flipping the sign bit maps u64 order
// onto i64 order, so timestamps sort and range-compare correctly in SQL.
fn ts_to_sql(timestamp: u64) -> i64 {
    (timestamp ^ (1 << 63)) as i64
}

fn ts_from_sql(value: i64) -> u64 {
    (value as u64) ^ (1 << 63)
}

// Other u64 values are never compared in SQL; a bit cast is lossless.
fn u64_to_sql(value: u64) -> i64 {
    value as i64
}

fn u64_from_sql(value: i64) -> u64 {
    value as u64
}

fn id32(bytes: Vec<u8>) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Undecryptable("id (wrong length)"))
}

fn group_key_aad(room: &RoomId, epoch: u64, peer: Option<&PeerId>) -> Vec<u8> {
    let mut aad = b"kith group key v1 ".to_vec();
    aad.extend_from_slice(room.as_bytes());
    aad.extend_from_slice(&epoch.to_le_bytes());
    if let Some(peer) = peer {
        aad.extend_from_slice(peer.as_bytes());
    }
    aad
}

const IDENTITY_AAD: &[u8] = b"kith identity v1";

impl Store {
    // ----- identity -----

    /// Stores the local Ed25519 secret key (sealed), replacing any previous one.
    pub fn set_identity(&mut self, secret: &[u8; 32]) -> Result<()> {
        let sealed = self.keys.keys.identity.seal(IDENTITY_AAD, secret);
        self.conn.execute(
            "INSERT INTO identity (slot, sealed_secret) VALUES (1, ?1)
             ON CONFLICT (slot) DO UPDATE SET sealed_secret = excluded.sealed_secret",
            params![sealed],
        )?;
        Ok(())
    }

    /// The local Ed25519 secret key, if one was stored.
    pub fn identity(&self) -> Result<Option<Zeroizing<[u8; 32]>>> {
        let sealed: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT sealed_secret FROM identity WHERE slot = 1",
                [],
                |row| row.get(0),
            )
            .optional()?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let plain = self
            .keys
            .keys
            .identity
            .open(IDENTITY_AAD, &sealed)
            .ok_or(StoreError::Undecryptable("identity"))?;
        let mut secret = Zeroizing::new([0u8; 32]);
        if plain.len() != 32 {
            return Err(StoreError::Undecryptable("identity (wrong length)"));
        }
        secret.copy_from_slice(&plain);
        Ok(Some(secret))
    }
}

/// Room ids that have a storage key; for tests and diagnostics.
impl Store {
    /// Rooms whose storage key this store holds.
    pub fn rooms_with_keys(&self) -> HashSet<RoomId> {
        self.keys.rooms.keys().copied().collect()
    }
}

/// Reaches crate-private decoders from `fuzz/` and the corpus replay test;
/// not part of the API.
#[doc(hidden)]
pub mod fuzz {
    /// Decodes a journal record's plaintext (what a record holds once it
    /// opened) and encodes it again; `None` if it does not decode.
    pub fn journal_record_reencode(bytes: &[u8]) -> Option<Vec<u8>> {
        super::journal::JournalRecord::decode(bytes).map(|record| record.encode())
    }
}

#[cfg(test)]
mod tests;
