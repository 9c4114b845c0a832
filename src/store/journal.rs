//! The journal in front of the database: messages (with the chain states
//! that sealed or opened them) are durable once one sealed record holding
//! them is copied into `<db>.journal`, a file mapped into memory. So a
//! receiver acknowledges a message, and a sender answers its caller, after
//! a copy into the page cache instead of a SQLite transaction; the store
//! moves the records into the database a little later, many at once
//! ([`super::Store::settle`]), then empties the journal. A store that was
//! not closed cleanly moves what is left at the next open.
//!
//! Why: a lone message's SQLCipher transaction (encrypting and writing 3–4
//! pages to the WAL) costs 60 µs warm and 100–200 µs on a CPU that idled,
//! on both sides of every direct message: most of a message's latency on a
//! LAN (node bench). A write into a mapped page costs no system call.
//!
//! Durability is the database's: like WAL with `synchronous = NORMAL`, a
//! record survives the process being killed at any point (the page cache
//! holds it), not a power loss (nothing is flushed to the disk).
//!
//! On disk, a fixed-size file: `MAGIC (16) ‖ generation (8, LE)`, then
//! records one after another, each `length (4, LE) ‖ nonce (24) ‖
//! XChaCha20-Poly1305(record)` under a key derived from the store's master
//! key, with the generation and the record's offset as associated data.
//! Emptying the journal overwrites the settled records with zeros and bumps
//! the generation; reading stops at the first record that does not open:
//! the end, a record torn by a crash while it was copied (it was never
//! reported durable), or an older generation's.
//!
//! Settled records are wiped, not only made unreadable by the generation:
//! the journal's key never changes, so anyone holding the store's
//! passphrase could open an old generation's records (messages deleted
//! since, and the chain keys that sealed or opened them) with the old
//! generation in the associated data. Opening the journal wipes whatever
//! lies after the records it found (leftovers of older versions, torn
//! records). The file's blocks are overwritten in place (allocated once,
//! never moved); a copy-on-write file system or an SSD's remapping may
//! still keep the old blocks, which no file-level wipe can reach.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

use super::keys::SecretKey;
use super::messages::SealedRow;
use super::{Result, StoreError};
use crate::proto::crypto::ChainSnapshot;
use crate::proto::ids::{MessageId, PeerId, RoomId};

/// The journal's size. A record that does not fit next to the others waits
/// until they are moved into the database; one larger than the whole
/// journal (a burst of long messages) goes to the database directly.
pub const JOURNAL_BYTES: usize = 1 << 20;

const MAGIC: &[u8; 16] = b"kith journal v1\0";
pub(super) const HEADER: usize = MAGIC.len() + 8;
/// Length prefix, nonce and tag around a record's plaintext.
const FRAMING: usize = 4 + 24 + 16;
/// Version byte inside every record (3: each row's epoch; 2: rows sealed
/// under their rooms' keys, still read).
const RECORD_VERSION: u8 = 3;
/// Records of version 2, written before rows kept their epoch.
const RECORD_VERSION_NO_EPOCH: u8 = 2;

/// Where the journal of the database at `db` lives: `<db>.journal`.
pub fn journal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// What one append holds, written to the database together as
/// [`super::Store::insert_messages_and_chains`] would: the messages as
/// their rows hold them (already sealed under their rooms' keys, so
/// settling does not seal them again) and the chain states.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalRecord {
    pub(crate) rows: Vec<SealedRow>,
    pub chains: Vec<ChainSnapshot>,
}

impl JournalRecord {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = vec![RECORD_VERSION];
        put_len(&mut out, self.rows.len());
        for row in &self.rows {
            out.extend_from_slice(row.id.as_bytes());
            out.extend_from_slice(row.room.as_bytes());
            out.extend_from_slice(&row.sender.0);
            out.extend_from_slice(&row.sender_seq.to_le_bytes());
            out.extend_from_slice(&row.timestamp.to_le_bytes());
            out.push(u8::from(row.unreadable));
            match row.epoch {
                Some(epoch) => {
                    out.push(1);
                    out.extend_from_slice(&epoch.to_le_bytes());
                }
                None => out.push(0),
            }
            put_bytes(&mut out, &row.sealed);
        }
        put_len(&mut out, self.chains.len());
        for chain in &self.chains {
            put_bytes(&mut out, &chain.encode());
        }
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<JournalRecord> {
        let mut r = Reader(bytes);
        let version = r.byte()?;
        if version != RECORD_VERSION && version != RECORD_VERSION_NO_EPOCH {
            return None;
        }
        let mut record = JournalRecord::default();
        for _ in 0..r.len()? {
            record.rows.push(SealedRow {
                id: MessageId(r.array()?),
                room: RoomId(r.array()?),
                sender: PeerId(r.array()?),
                sender_seq: u64::from_le_bytes(r.array()?),
                timestamp: u64::from_le_bytes(r.array()?),
                unreadable: match r.byte()? {
                    0 => false,
                    1 => true,
                    _ => return None,
                },
                epoch: if version == RECORD_VERSION_NO_EPOCH {
                    None
                } else {
                    match r.byte()? {
                        0 => None,
                        1 => Some(u32::from_le_bytes(r.array()?)),
                        _ => return None,
                    }
                },
                sealed: r.bytes()?.to_vec(),
            });
        }
        for _ in 0..r.len()? {
            record.chains.push(ChainSnapshot::decode(r.bytes()?).ok()?);
        }
        r.0.is_empty().then_some(record)
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Lengths are of in-memory batches and messages, far below 4 GiB.
    out.extend_from_slice(&(len as u32).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Reads a record's plaintext; `None` at the first inconsistency.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    fn len(&mut self) -> Option<usize> {
        usize::try_from(u32::from_le_bytes(self.array()?)).ok()
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.len()?;
        self.take(len)
    }
}

fn record_aad(generation: u64, offset: usize) -> Vec<u8> {
    let mut aad = b"kith journal record v1".to_vec();
    aad.extend_from_slice(&generation.to_le_bytes());
    aad.extend_from_slice(&(offset as u64).to_le_bytes());
    aad
}

/// Allocates disk blocks for the first [`JOURNAL_BYTES`] of `file` (growing
/// it if shorter), keeping its content: afterwards no write through the
/// mapping needs space from the file system. [`StoreError::DiskFull`] if
/// the disk cannot hold it.
fn reserve(file: &File, path: &Path) -> Result<()> {
    let full = || {
        StoreError::DiskFull(format!(
            "cannot reserve {JOURNAL_BYTES} bytes for the journal at {}; free some space on that disk",
            path.display()
        ))
    };
    match allocate(file) {
        Ok(()) => Ok(()),
        Err(err) if super::is_disk_full(&err) => Err(full()),
        Err(err) if err.raw_os_error() == Some(libc::EOPNOTSUPP) => {
            // A file system without fallocate (glibc emulates it, musl
            // does not): writing every byte back allocates its blocks.
            let mut bytes = vec![0u8; JOURNAL_BYTES];
            let len = usize::try_from(file.metadata()?.len())
                .unwrap_or(JOURNAL_BYTES)
                .min(JOURNAL_BYTES);
            file.read_exact_at(&mut bytes[..len], 0)?;
            file.write_all_at(&bytes, 0).map_err(|err| {
                if super::is_disk_full(&err) {
                    full()
                } else {
                    StoreError::Io(err)
                }
            })
        }
        Err(err) => Err(StoreError::Io(err)),
    }
}

/// `posix_fallocate` over the journal's bytes.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn allocate(file: &File) -> std::io::Result<()> {
    let len = libc::off_t::try_from(JOURNAL_BYTES).expect("invariant: 1 MiB fits any off_t");
    loop {
        // SAFETY: a plain system call on a descriptor that `file` keeps
        // open for its duration; it touches no memory of ours.
        let code = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        match code {
            0 => return Ok(()),
            libc::EINTR => continue,
            code => return Err(std::io::Error::from_raw_os_error(code)),
        }
    }
}

/// Where there is no `posix_fallocate`, [`reserve`] writes the bytes back.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn allocate(_file: &File) -> std::io::Result<()> {
    Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP))
}

/// The open journal of a store.
pub struct Journal {
    map: MmapMut,
    key: SecretKey,
    generation: u64,
    /// Where the next record goes.
    end: usize,
    records: usize,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("generation", &self.generation)
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens (or creates) the journal at `path` and reads the records left
    /// in it, which the caller must move into the database and then
    /// [`Journal::clear`]. The caller holds the store's lock, so no other
    /// process maps or truncates the file.
    pub(super) fn open(path: &Path, key: SecretKey) -> Result<(Journal, Vec<JournalRecord>)> {
        let file = super::owner_only()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|error| super::file_error("journal", path.to_owned(), error))?;
        // New, cut short by something else, or left sparse by an older
        // kith: every byte gets its disk blocks now. Writing through the
        // mapping into a page that has none needs a block from the file
        // system, and on a full disk the kernel answers that with SIGBUS,
        // which kills the process; here it is an error instead. Growing
        // keeps what the file holds; it is never shrunk, so no record is
        // ever cut off here.
        reserve(&file, path)?;
        // SAFETY: the mapping is only unsound if the file changes size or
        // content behind our back; the store's lock file keeps every other
        // kith process away, and we never shrink the file while mapped.
        let map = unsafe { MmapMut::map_mut(&file)? };
        let mut journal = Journal {
            map,
            key,
            generation: 0,
            end: HEADER,
            records: 0,
        };
        if journal.map[..MAGIC.len()] != *MAGIC {
            journal.map[MAGIC.len()..HEADER].fill(0);
            journal.map[..MAGIC.len()].copy_from_slice(MAGIC);
            return Ok((journal, Vec::new()));
        }
        let mut generation = [0u8; 8];
        generation.copy_from_slice(&journal.map[MAGIC.len()..HEADER]);
        journal.generation = u64::from_le_bytes(generation);
        let mut found = Vec::new();
        while let Some((record, next)) = journal.read_at(journal.end) {
            found.push(record);
            journal.end = next;
        }
        journal.records = found.len();
        // Nothing after the current records is readable any more, but an
        // older generation's records (written before settled records were
        // wiped, or torn) would open under their old generation.
        let end = journal.end;
        journal.map[end..].fill(0);
        Ok((journal, found))
    }

    /// The record at `offset` of the current generation and where the next
    /// one starts, if it opens.
    fn read_at(&self, offset: usize) -> Option<(JournalRecord, usize)> {
        let len_bytes: [u8; 4] = self.map.get(offset..offset + 4)?.try_into().ok()?;
        let len = u32::from_le_bytes(len_bytes) as usize;
        let sealed = self.map.get(offset + 4..(offset + 4).checked_add(len)?)?;
        let plain = self
            .key
            .open(&record_aad(self.generation, offset), sealed)?;
        Some((JournalRecord::decode(&plain)?, offset + 4 + len))
    }

    /// Appends `record`, durable against a crash of the process once this
    /// returns `Ok(true)`. `Ok(false)`: it does not fit next to the records
    /// already there (nothing was written).
    pub fn append(&mut self, record: &JournalRecord) -> Result<bool> {
        let plain = zeroize::Zeroizing::new(record.encode());
        if self.end + plain.len() + FRAMING > JOURNAL_BYTES {
            return Ok(false);
        }
        let sealed = self
            .key
            .seal(&record_aad(self.generation, self.end), &plain);
        let len = u32::try_from(sealed.len())
            .map_err(|_| StoreError::TooLarge("journal record over 4 GiB"))?;
        let start = self.end;
        self.map[start + 4..start + 4 + sealed.len()].copy_from_slice(&sealed);
        self.map[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.end = start + 4 + sealed.len();
        self.records += 1;
        Ok(true)
    }

    /// Forgets every record (they are in the database now): they are
    /// overwritten with zeros, and the next generation starts empty.
    pub fn clear(&mut self) {
        if self.records == 0 && self.end == HEADER {
            return;
        }
        // A crash in the middle leaves the records cut short, which is
        // harmless: they are in the database already, and reading stops at
        // the first one that does not open.
        let end = self.end;
        self.map[HEADER..end].fill(0);
        self.generation += 1;
        self.map[MAGIC.len()..HEADER].copy_from_slice(&self.generation.to_le_bytes());
        self.end = HEADER;
        self.records = 0;
    }
}
