//! Creating, opening and unlocking a store: its files, the lock that keeps
//! one process at a time, the SQLCipher connection and its page format.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::KdfParams;
use super::journal::Journal;
use super::keys::KeyFile;
use super::{Result, Store, StoreError, journal_path, key_file_path, messages, schema};

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
pub(super) fn owner_only() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

pub(super) fn file_error(what: &'static str, path: PathBuf, error: std::io::Error) -> StoreError {
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
pub(super) fn connect(
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
    // A 16 MiB page cache keeps the hot index pages decrypted. It was 64 MiB,
    // but whatever reads a whole room fills it (counting unread messages at
    // start did, before the counts were stored: 60 MB more for a room of
    // 100 000 unread); 16 MiB kept the store bench's figures within noise.
    // Checkpointing every 10 000 pages (about 40 MB of WAL) instead of 1 000
    // means ten times fewer fsyncs of the database file under sustained load.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA secure_delete = ON;
         PRAGMA cache_size = -16384;
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
            #[cfg(any(test, feature = "sim"))]
            simulated_full_disk: false,
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
}
