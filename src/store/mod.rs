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
mod chains;
mod history;
mod invitations;
mod journal;
mod keys;
mod messages;
mod profiles;
mod schema;
mod search;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use zeroize::Zeroizing;

use crate::proto::ids::{MessageId, PeerId, RoomId};
pub use batch::{BatchConfig, CommitBatcher};
pub use history::HistoryEntry;
pub use journal::{JOURNAL_BYTES, journal_path};
use journal::{Journal, JournalRecord};
pub use keys::{KdfParams, key_file_path};
use keys::{KeyFile, SecretKey};
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

/// Every file the store at `db` creates or that SQLite creates for it: the
/// database, its key file, journal and lock file, and SQLite's WAL and
/// shared-memory files (which exist only while the store is open). Each is
/// created readable and writable by its owner only (mode 0600 on Unix).
pub fn store_files(db: &Path) -> Vec<PathBuf> {
    let with = |suffix: &str| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    vec![
        db.to_owned(),
        key_file_path(db),
        journal_path(db),
        with(".lock"),
        with("-wal"),
        with("-shm"),
    ]
}

/// Options that create a file readable and writable by its owner only.
///
/// The data directory is private too, but a directory kept from elsewhere
/// (or loosened later) must not expose the keys or the database.
fn owner_only() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

fn file_error(what: &'static str, path: PathBuf, error: std::io::Error) -> StoreError {
    StoreError::File { what, path, error }
}

/// Takes the store's exclusive lock (`<db>.lock`, an advisory `flock`).
///
/// Two processes with the same store open would each rewrite the key file
/// from their own copy of the keyring and lose the other's new room keys,
/// leaving messages nobody can decrypt; the lock makes the second one fail.
fn lock_store(db: &Path) -> Result<std::fs::File> {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let file = owner_only()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path);
    let file = match file {
        Ok(file) => file,
        Err(error) => return Err(file_error("lock file", path, error)),
    };
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse(db.to_owned())),
        Err(std::fs::TryLockError::Error(error)) => Err(file_error("lock file", path, error)),
    }
}

/// Finishes SQLite's and SQLCipher's process-wide initialization on one
/// thread before any store is opened.
///
/// SQLite marks itself initialized *before* it runs SQLCipher's extra
/// initialization, so a second thread opening its first connection at the
/// same moment can key a database while SQLCipher is not ready yet; `PRAGMA
/// key` then fails ("An error occurred with PRAGMA key or rekey", seen about
/// once in ten process starts with six threads). Opening a throw-away
/// connection under a `Once` makes every other thread wait until both
/// initializations are complete.
fn initialize_sqlcipher_once() {
    static READY: std::sync::Once = std::sync::Once::new();
    READY.call_once(|| {
        // An in-memory open cannot fail for lack of a file; if it fails at
        // all, the real open right after reports the error.
        let _ = Connection::open_in_memory();
    });
}

/// How database pages are authenticated. SQLCipher cannot tell from the
/// file, so [`Store::open`] tries the current format first and falls back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PageFormat {
    /// SQLCipher 4 defaults (HMAC-SHA512 per page): stores written by
    /// earlier builds (up to schema version 4). Opened as they are, never
    /// rewritten.
    Sha512,
    /// SQLCipher 4 with HMAC-SHA256 per page: the page MAC was the largest
    /// single cost of a batched insert (SHA-512 17 % of its CPU), and
    /// SHA-256 runs on the SHA extensions most x86 and ARM CPUs have.
    Sha256,
}

/// Opens the SQLCipher connection, proves the key works, and sets the
/// connection up. Nothing is written before the proof read succeeded.
fn connect(
    path: &Path,
    keys: &KeyFile,
    flags: OpenFlags,
    format: PageFormat,
) -> Result<Connection> {
    initialize_sqlcipher_once();
    let conn =
        Connection::open_with_flags(path, flags).map_err(|err| match err.sqlite_error_code() {
            Some(rusqlite::ErrorCode::CannotOpen) => StoreError::NotAKithStore(path.to_owned()),
            _ => StoreError::Sqlite(err),
        })?;
    // SQLCipher logs decryption failures to stderr by default; errors reach
    // the caller as values instead.
    conn.execute_batch("PRAGMA cipher_log_level = NONE;")?;
    conn.execute_batch(&keys.keys.sqlcipher_key_pragma())?;
    // Pin the format so a future SQLCipher with other defaults still opens it.
    conn.execute_batch("PRAGMA cipher_compatibility = 4;")?;
    if format == PageFormat::Sha256 {
        conn.execute_batch("PRAGMA cipher_hmac_algorithm = HMAC_SHA256;")?;
    }
    // SQLCipher only notices a wrong key when it first decrypts a page.
    // The key file's verifier already accepted the passphrase, so a failure
    // here means the file itself is foreign or damaged: `Corrupt` (see the
    // `From<rusqlite::Error>` impl).
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |row| {
        row.get::<_, i64>(0)
    })?;
    // A 64 MiB page cache keeps the hot index pages decrypted. Checkpointing
    // every 10 000 pages (about 40 MB of WAL) instead of 1 000 means ten
    // times fewer fsyncs of the database file under sustained load; together
    // about +30 % batched insert throughput, measured.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA secure_delete = ON;
         PRAGMA cache_size = -65536;
         PRAGMA wal_autocheckpoint = 10000;",
    )?;
    Ok(conn)
}

impl Store {
    /// Creates a new store at `path` (plus its key file `<path>.keys`),
    /// deriving the master key from `passphrase` with `kdf`. Use
    /// [`KdfParams::default()`] outside tests.
    pub fn create(path: &Path, passphrase: &str, kdf: KdfParams) -> Result<Store> {
        if path.exists() {
            return Err(StoreError::AlreadyExists(path.to_owned()));
        }
        let lock = lock_store(path)?;
        let keys = KeyFile::create(path, passphrase, kdf)?;
        // SQLite would create the database with mode 0644 (less the umask);
        // an empty file is a new database to it, and its WAL and
        // shared-memory files copy the database file's mode.
        owner_only()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|error| file_error("database", path.to_owned(), error))?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = connect(path, &keys, flags, PageFormat::Sha256)?;
        schema::migrate(&mut conn)?;
        Store::assemble(path, lock, conn, keys)
    }

    /// Opens and unlocks the store at `path`, upgrading its schema if it is
    /// older than this build.
    pub fn open(path: &Path, passphrase: &str) -> Result<Store> {
        // Check for a store before creating its lock file, so that opening
        // a wrong path leaves nothing behind.
        if !key_file_path(path).exists() {
            return Err(StoreError::NotAKithStore(path.to_owned()));
        }
        let lock = lock_store(path)?;
        let keys = KeyFile::open(path, passphrase)?;
        // Without SQLITE_OPEN_CREATE a missing database is an error instead
        // of a silently created empty one.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        // The key file already proved the passphrase, so pages that do not
        // authenticate under the current format are either an older
        // store's or damaged; the older format's proof read tells which.
        let mut conn = match connect(path, &keys, flags, PageFormat::Sha256) {
            Err(StoreError::Corrupt) => connect(path, &keys, flags, PageFormat::Sha512)?,
            other => other?,
        };
        schema::migrate(&mut conn)?;
        Store::assemble(path, lock, conn, keys)
    }

    /// The store around an open, migrated database: its room cache and its
    /// journal, with what a previous run journaled and could not settle
    /// moved into the database.
    fn assemble(
        path: &Path,
        lock: std::fs::File,
        conn: Connection,
        keys: KeyFile,
    ) -> Result<Store> {
        let room_refs = messages::load_room_refs(&conn)?;
        let (journal, left) = Journal::open(
            &journal_path(path),
            keys.keys.master.derive("kith store journal v1"),
        )?;
        let mut store = Store {
            _lock: lock,
            conn,
            keys,
            room_refs,
            journal,
            unsettled: left,
            settled_fresh: Vec::new(),
        };
        store.settle()?;
        Ok(store)
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u32> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))?)
    }

    /// Runs SQLite's `PRAGMA integrity_check`; `Ok(vec![])` means healthy,
    /// otherwise the problems it found.
    pub fn integrity_check(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let lines = stmt
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(lines.into_iter().filter(|line| line != "ok").collect())
    }

    /// Moves the WAL's content into the database and truncates the WAL.
    pub fn checkpoint(&self) -> Result<()> {
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }

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

    // ----- room keys -----

    /// Makes sure every room in `rooms` has a storage key, writing the key
    /// file once if any were missing. Must run before anything is sealed
    /// under those keys, so a committed row never lacks its key.
    fn ensure_room_keys(&mut self, rooms: impl IntoIterator<Item = RoomId>) -> Result<()> {
        let mut added = Vec::new();
        for room in rooms {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.keys.rooms.entry(room) {
                slot.insert(SecretKey::random());
                added.push(room);
            }
        }
        if added.is_empty() {
            return Ok(());
        }
        if let Err(err) = self.keys.save() {
            // A key that is not on disk must not seal anything that will be
            // committed, or those rows would be unreadable after a restart.
            for room in &added {
                self.keys.rooms.remove(room);
            }
            return Err(err);
        }
        Ok(())
    }

    fn room_key(&self, room: &RoomId) -> Result<&SecretKey> {
        self.keys
            .rooms
            .get(room)
            .ok_or(StoreError::RoomKeyMissing(*room))
    }

    // ----- contacts -----

    /// Adds or updates a contact.
    pub fn upsert_contact(&mut self, contact: &Contact) -> Result<()> {
        self.conn.execute(
            "INSERT INTO contacts (peer, display_name, verified) VALUES (?1, ?2, ?3)
             ON CONFLICT (peer) DO UPDATE SET display_name = excluded.display_name, verified = excluded.verified",
            params![contact.peer.as_bytes(), contact.display_name, contact.verified],
        )?;
        Ok(())
    }

    /// Records a contact's Ed25519 public key (the contact row must exist).
    pub fn set_contact_key(&mut self, peer: &PeerId, public_key: &[u8; 32]) -> Result<()> {
        self.conn.execute(
            "UPDATE contacts SET public_key = ?2 WHERE peer = ?1",
            params![peer.as_bytes(), public_key.as_slice()],
        )?;
        Ok(())
    }

    /// Marks a contact as a request (it wrote first, not accepted yet) or
    /// accepts it.
    pub fn set_contact_request(&mut self, peer: &PeerId, request: bool) -> Result<()> {
        self.conn.execute(
            "UPDATE contacts SET request = ?2 WHERE peer = ?1",
            params![peer.as_bytes(), request],
        )?;
        Ok(())
    }

    /// Contacts that are requests.
    pub fn contact_requests(&self) -> Result<Vec<PeerId>> {
        self.peer_ids("SELECT peer FROM contacts WHERE request = 1 ORDER BY peer")
    }

    /// The peer ids a one-column query returns.
    fn peer_ids(&self, sql: &str) -> Result<Vec<PeerId>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt
            .query_map([], |row| row.get::<_, Vec<u8>>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|peer| Ok(PeerId(id32(peer)?)))
            .collect()
    }

    /// Every contact whose public key is known, as (peer, key).
    pub fn contact_keys(&self) -> Result<Vec<(PeerId, [u8; 32])>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT peer, public_key FROM contacts WHERE public_key IS NOT NULL ORDER BY peer",
        )?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(peer, key)| Ok((PeerId(id32(peer)?), id32(key)?)))
            .collect()
    }

    /// Whether `peer` is a contact.
    pub fn has_contact(&self, peer: &PeerId) -> Result<bool> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM contacts WHERE peer = ?1")?;
        Ok(stmt.exists(params![peer.as_bytes()])?)
    }

    /// Removes a contact; `false` if there was none.
    pub fn remove_contact(&mut self, peer: &PeerId) -> Result<bool> {
        Ok(self.conn.execute(
            "DELETE FROM contacts WHERE peer = ?1",
            params![peer.as_bytes()],
        )? > 0)
    }

    /// All contacts, by display name.
    pub fn contacts(&self) -> Result<Vec<Contact>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT peer, display_name, verified FROM contacts ORDER BY display_name, peer",
        )?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, bool>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(peer, display_name, verified)| {
                Ok(Contact {
                    peer: PeerId(id32(peer)?),
                    display_name,
                    verified,
                })
            })
            .collect()
    }

    // ----- rooms, members, group keys -----

    /// Adds or renames a room and gives it a storage key if it has none.
    pub fn upsert_room(&mut self, room: &Room) -> Result<()> {
        self.ensure_room_keys([room.id])?;
        self.conn.execute(
            "INSERT INTO rooms (room, name, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (room) DO UPDATE SET name = excluded.name",
            params![room.id.as_bytes(), room.name, u64_to_sql(room.created_at)],
        )?;
        Ok(())
    }

    /// Records who runs a group room and its current epoch (the room row
    /// must exist; direct rooms keep `admin` NULL).
    pub fn set_group(&mut self, room: &RoomId, admin: &PeerId, epoch: u32) -> Result<()> {
        self.conn.execute(
            "UPDATE rooms SET admin = ?2, epoch = ?3 WHERE room = ?1",
            params![room.as_bytes(), admin.as_bytes(), epoch],
        )?;
        Ok(())
    }

    /// Keeps who takes over a group room when its admin leaves (`None`:
    /// nobody named).
    pub fn set_room_successor(&mut self, room: &RoomId, successor: Option<&PeerId>) -> Result<()> {
        self.conn.execute(
            "UPDATE rooms SET successor = ?2 WHERE room = ?1",
            params![room.as_bytes(), successor.map(|p| p.as_bytes().as_slice())],
        )?;
        Ok(())
    }

    /// Who takes over a group room when its admin leaves, if the admin
    /// named someone (rooms kept before schema 10 have none).
    pub fn room_successor(&self, room: &RoomId) -> Result<Option<PeerId>> {
        let bytes: Option<Option<Vec<u8>>> = self
            .conn
            .query_row(
                "SELECT successor FROM rooms WHERE room = ?1",
                params![room.as_bytes()],
                |row| row.get(0),
            )
            .optional()?;
        Ok(bytes
            .flatten()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(PeerId))
    }

    /// Keeps what a group room's id derives from (founder and nonce).
    pub fn set_room_founding(&mut self, room: &RoomId, founding: &[u8; 64]) -> Result<()> {
        self.conn.execute(
            "UPDATE rooms SET founding = ?2 WHERE room = ?1",
            params![room.as_bytes(), &founding[..]],
        )?;
        Ok(())
    }

    /// What a group room's id derives from, if it was kept (rooms kept by
    /// a version before schema 8 have none).
    pub fn room_founding(&self, room: &RoomId) -> Result<Option<[u8; 64]>> {
        let bytes: Option<Option<Vec<u8>>> = self
            .conn
            .query_row(
                "SELECT founding FROM rooms WHERE room = ?1",
                params![room.as_bytes()],
                |row| row.get(0),
            )
            .optional()?;
        Ok(bytes.flatten().and_then(|b| <[u8; 64]>::try_from(b).ok()))
    }

    /// A group room's admin and epoch; `None` for a direct or unknown room.
    pub fn group(&self, room: &RoomId) -> Result<Option<(PeerId, u32)>> {
        let row: Option<(Option<Vec<u8>>, u32)> = self
            .conn
            .query_row(
                "SELECT admin, epoch FROM rooms WHERE room = ?1",
                params![room.as_bytes()],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        match row {
            Some((Some(admin), epoch)) => Ok(Some((PeerId(id32(admin)?), epoch))),
            _ => Ok(None),
        }
    }

    /// All rooms, by name.
    pub fn rooms(&self) -> Result<Vec<Room>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT room, name, created_at FROM rooms ORDER BY name, room")?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(id, name, created_at)| {
                Ok(Room {
                    id: RoomId(id32(id)?),
                    name,
                    created_at: u64_from_sql(created_at),
                })
            })
            .collect()
    }

    /// Deletes a chat: its messages, deliveries, members, group keys, chain
    /// state, invitation, mute, file metadata and room row in one transaction, then destroys its
    /// storage key. Idempotent, so a crash between the two steps is repaired
    /// by calling it again.
    pub fn delete_room(&mut self, room: &RoomId) -> Result<()> {
        // `unchecked_transaction` only because `delete_messages_in` borrows
        // `self` too; `&mut self` already rules out a nested transaction.
        let tx = self.conn.unchecked_transaction()?;
        self.delete_messages_in(&tx, room)?;
        for table in [
            "epochs",
            "sender_keys",
            "chains",
            "invitations",
            "mutes",
            "files",
            "rooms",
        ] {
            // Deliveries go with their messages (ON DELETE CASCADE).
            tx.execute(
                &format!("DELETE FROM {table} WHERE room = ?1"),
                params![room.as_bytes()],
            )?;
        }
        tx.commit()?;
        self.room_refs.remove(room);
        // The rows are gone before the key is, so no committed row can
        // outlive its key. Removing the key is what makes the bodies
        // unreadable in old copies of the database and in freed pages.
        if self.keys.rooms.remove(room).is_some() {
            self.keys.save()?;
        }
        // Move the deletion out of the WAL (secure_delete zeroes freed pages).
        self.checkpoint()
    }

    /// Adds a member or updates the epoch they joined in (and their key,
    /// if given: a known key is never replaced by `None`).
    pub fn set_member(&mut self, room: &RoomId, member: Member) -> Result<()> {
        self.conn.execute(
            "INSERT INTO members (room, peer, joined_epoch, public_key) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (room, peer) DO UPDATE SET joined_epoch = excluded.joined_epoch,
                 public_key = coalesce(excluded.public_key, members.public_key)",
            params![
                room.as_bytes(),
                member.peer.as_bytes(),
                u64_to_sql(member.joined_epoch),
                member.public_key.as_ref().map(<[u8; 32]>::as_slice),
            ],
        )?;
        Ok(())
    }

    /// Records a member's public key, learned after the row was written;
    /// `false` if they are not a member.
    pub fn set_member_key(
        &mut self,
        room: &RoomId,
        peer: &PeerId,
        public_key: &[u8; 32],
    ) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE members SET public_key = ?3 WHERE room = ?1 AND peer = ?2",
            params![room.as_bytes(), peer.as_bytes(), public_key.as_slice()],
        )? > 0)
    }

    /// Removes a member; `false` if they were not one.
    pub fn remove_member(&mut self, room: &RoomId, peer: &PeerId) -> Result<bool> {
        Ok(self.conn.execute(
            "DELETE FROM members WHERE room = ?1 AND peer = ?2",
            params![room.as_bytes(), peer.as_bytes()],
        )? > 0)
    }

    /// Current members of a room.
    pub fn members(&self, room: &RoomId) -> Result<Vec<Member>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT peer, joined_epoch, public_key FROM members WHERE room = ?1 ORDER BY peer",
        )?;
        let rows = stmt
            .query_map(params![room.as_bytes()], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Option<Vec<u8>>>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(peer, epoch, key)| {
                Ok(Member {
                    peer: PeerId(id32(peer)?),
                    joined_epoch: u64_from_sql(epoch),
                    public_key: key.map(id32).transpose()?,
                })
            })
            .collect()
    }

    /// Stores the group key of `epoch` in `room`, sealed under the room key.
    pub fn put_epoch_key(&mut self, room: &RoomId, epoch: u64, key: &[u8; 32]) -> Result<()> {
        self.ensure_room_keys([*room])?;
        let sealed = self
            .room_key(room)?
            .seal(&group_key_aad(room, epoch, None), key);
        self.conn.execute(
            "INSERT INTO epochs (room, epoch, sealed_key) VALUES (?1, ?2, ?3)
             ON CONFLICT (room, epoch) DO UPDATE SET sealed_key = excluded.sealed_key",
            params![room.as_bytes(), u64_to_sql(epoch), sealed],
        )?;
        Ok(())
    }

    /// The group key of `epoch` in `room`.
    pub fn epoch_key(&self, room: &RoomId, epoch: u64) -> Result<Option<Zeroizing<[u8; 32]>>> {
        let sealed: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT sealed_key FROM epochs WHERE room = ?1 AND epoch = ?2",
                params![room.as_bytes(), u64_to_sql(epoch)],
                |row| row.get(0),
            )
            .optional()?;
        sealed
            .map(|sealed| self.open_group_key(room, &group_key_aad(room, epoch, None), &sealed))
            .transpose()
    }

    /// Stores `peer`'s sender key for `epoch` in `room`, sealed under the room key.
    pub fn put_sender_key(
        &mut self,
        room: &RoomId,
        epoch: u64,
        peer: &PeerId,
        key: &[u8; 32],
    ) -> Result<()> {
        self.ensure_room_keys([*room])?;
        let sealed = self
            .room_key(room)?
            .seal(&group_key_aad(room, epoch, Some(peer)), key);
        self.conn.execute(
            "INSERT INTO sender_keys (room, epoch, peer, sealed_key) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (room, epoch, peer) DO UPDATE SET sealed_key = excluded.sealed_key",
            params![room.as_bytes(), u64_to_sql(epoch), peer.as_bytes(), sealed],
        )?;
        Ok(())
    }

    /// `peer`'s sender key for `epoch` in `room`.
    pub fn sender_key(
        &self,
        room: &RoomId,
        epoch: u64,
        peer: &PeerId,
    ) -> Result<Option<Zeroizing<[u8; 32]>>> {
        let sealed: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT sealed_key FROM sender_keys WHERE room = ?1 AND epoch = ?2 AND peer = ?3",
                params![room.as_bytes(), u64_to_sql(epoch), peer.as_bytes()],
                |row| row.get(0),
            )
            .optional()?;
        sealed
            .map(|sealed| {
                self.open_group_key(room, &group_key_aad(room, epoch, Some(peer)), &sealed)
            })
            .transpose()
    }

    fn open_group_key(
        &self,
        room: &RoomId,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>> {
        let plain = self
            .room_key(room)?
            .open(aad, sealed)
            .ok_or(StoreError::Undecryptable("group key"))?;
        if plain.len() != 32 {
            return Err(StoreError::Undecryptable("group key (wrong length)"));
        }
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&plain);
        Ok(key)
    }

    // ----- blocks and mutes -----

    /// Blocks a peer from `since` (milliseconds since the Unix epoch).
    pub fn block(&mut self, peer: &PeerId, since: u64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO blocks (peer, since) VALUES (?1, ?2) ON CONFLICT (peer) DO NOTHING",
            params![peer.as_bytes(), u64_to_sql(since)],
        )?;
        Ok(())
    }

    /// Unblocks a peer; `false` if they were not blocked.
    pub fn unblock(&mut self, peer: &PeerId) -> Result<bool> {
        Ok(self.conn.execute(
            "DELETE FROM blocks WHERE peer = ?1",
            params![peer.as_bytes()],
        )? > 0)
    }

    /// Whether a peer is blocked.
    pub fn is_blocked(&self, peer: &PeerId) -> Result<bool> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM blocks WHERE peer = ?1")?;
        Ok(stmt.exists(params![peer.as_bytes()])?)
    }

    /// All blocked peers.
    pub fn blocked(&self) -> Result<Vec<PeerId>> {
        self.peer_ids("SELECT peer FROM blocks ORDER BY peer")
    }

    /// Mutes a room.
    pub fn set_mute(&mut self, room: &RoomId, mute: Mute) -> Result<()> {
        let until = match mute {
            Mute::Until(until) => Some(u64_to_sql(until)),
            Mute::Indefinitely => None,
        };
        self.conn.execute(
            "INSERT INTO mutes (room, until) VALUES (?1, ?2)
             ON CONFLICT (room) DO UPDATE SET until = excluded.until",
            params![room.as_bytes(), until],
        )?;
        Ok(())
    }

    /// Unmutes a room.
    pub fn clear_mute(&mut self, room: &RoomId) -> Result<()> {
        self.conn.execute(
            "DELETE FROM mutes WHERE room = ?1",
            params![room.as_bytes()],
        )?;
        Ok(())
    }

    /// Every mute, as (room or peer id, mute).
    pub fn mutes(&self) -> Result<Vec<([u8; 32], Mute)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT room, until FROM mutes ORDER BY room")?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Option<i64>>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(target, until)| {
                let mute = match until {
                    Some(until) => Mute::Until(u64_from_sql(until)),
                    None => Mute::Indefinitely,
                };
                Ok((id32(target)?, mute))
            })
            .collect()
    }

    /// Marks a group room as left (we left or were removed): its history
    /// stays, but it is no longer a group we are in.
    pub fn leave_group(&mut self, room: &RoomId) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE rooms SET admin = NULL WHERE room = ?1",
            params![room.as_bytes()],
        )?;
        tx.execute(
            "DELETE FROM members WHERE room = ?1",
            params![room.as_bytes()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// How a room is muted, if at all. An expired `Until` is still returned;
    /// the caller compares it with its clock.
    pub fn mute(&self, room: &RoomId) -> Result<Option<Mute>> {
        let row: Option<Option<i64>> = self
            .conn
            .query_row(
                "SELECT until FROM mutes WHERE room = ?1",
                params![room.as_bytes()],
                |row| row.get(0),
            )
            .optional()?;
        Ok(row.map(|until| match until {
            Some(until) => Mute::Until(u64_from_sql(until)),
            None => Mute::Indefinitely,
        }))
    }

    // ----- files -----

    /// Adds or updates file metadata.
    pub fn put_file(&mut self, file: &FileMeta) -> Result<()> {
        self.conn.execute(
            "INSERT INTO files (hash, room, message, name, size, complete) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (hash) DO UPDATE SET complete = excluded.complete",
            params![
                file.hash,
                file.room.as_bytes(),
                file.message.as_bytes(),
                file.name,
                u64_to_sql(file.size),
                file.complete
            ],
        )?;
        Ok(())
    }

    /// Files shared in a room.
    pub fn files_in_room(&self, room: &RoomId) -> Result<Vec<FileMeta>> {
        self.query_files(
            "SELECT hash, room, message, name, size, complete FROM files
             WHERE room = ?1 ORDER BY name, hash",
            room.as_bytes(),
        )
    }

    /// Metadata of the file with this content hash.
    pub fn file(&self, hash: &[u8; 32]) -> Result<Option<FileMeta>> {
        let mut files = self.query_files(
            "SELECT hash, room, message, name, size, complete FROM files WHERE hash = ?1",
            hash,
        )?;
        Ok(files.pop())
    }

    fn query_files(&self, sql: &str, key: &[u8; 32]) -> Result<Vec<FileMeta>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt
            .query_map(params![key], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, bool>(5)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(hash, room, message, name, size, complete)| {
                Ok(FileMeta {
                    hash: id32(hash)?,
                    room: RoomId(id32(room)?),
                    message: MessageId(id32(message)?),
                    name,
                    size: u64_from_sql(size),
                    complete,
                })
            })
            .collect()
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
