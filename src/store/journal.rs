//! The write-ahead journal in front of the database: a message is durable
//! once one sealed record holding it is appended to `<db>.journal`, so a
//! receiver acknowledges it (and a sender answers its caller) after one
//! small file write instead of a SQLite transaction. The shell moves the
//! journal's records into the database a few milliseconds later, many at
//! once ([`Store::apply_journal`]), and then clears the journal; a store
//! that was not cleanly closed replays what is left at the next open.
//!
//! Measured on a 2-core machine: a lone message's SQLite transaction
//! (SQLCipher pages, WAL) costs 100–300 µs on a CPU that idled for a few
//! milliseconds; the journal append costs one AEAD seal and one `write`.
//! Durability is the database's: like WAL with `synchronous = NORMAL`, a
//! record survives the process being killed at any point, not a power
//! loss (no fsync).
//!
//! On disk: records one after another, each `length (u32 LE) ‖ nonce (24)
//! ‖ XChaCha20-Poly1305(record)` under a key derived from the store's
//! master key, with the record's index in the file as associated data (so
//! records cannot be reordered or repeated). A torn last record (a crash
//! during the write, before anything was acknowledged) is dropped at
//! replay.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::keys::SecretKey;
use super::{DeliveryState, Message, MessageKey, Result, StoreError};
use crate::proto::crypto::ChainSnapshot;
use crate::proto::ids::{MessageId, PeerId, RoomId};

/// Version byte inside every record.
const RECORD_VERSION: u8 = 1;

/// Largest sealed record accepted at replay: far above any burst (256
/// datagrams of at most 1200 bytes, or 256 sends of at most 64 KiB).
const MAX_RECORD: usize = 64 << 20;

/// Where the journal of the database at `db` lives: `<db>.journal`.
pub fn journal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// What one append holds: written to the database together, as
/// [`super::Store::insert_messages_and_chains`] and
/// [`super::Store::set_deliveries`] would.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalRecord {
    pub messages: Vec<Message>,
    pub chains: Vec<ChainSnapshot>,
    pub deliveries: Vec<(MessageKey, PeerId, DeliveryState)>,
}

impl JournalRecord {
    /// Whether the record holds nothing.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.chains.is_empty() && self.deliveries.is_empty()
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = vec![RECORD_VERSION];
        put_len(&mut out, self.messages.len());
        for m in &self.messages {
            out.extend_from_slice(m.id.as_bytes());
            out.extend_from_slice(m.room.as_bytes());
            out.extend_from_slice(&m.sender.0);
            out.extend_from_slice(&m.sender_seq.to_le_bytes());
            out.extend_from_slice(&m.timestamp.to_le_bytes());
            put_bytes(&mut out, &m.body);
            put_bytes(&mut out, &m.envelope);
        }
        put_len(&mut out, self.chains.len());
        for chain in &self.chains {
            put_bytes(&mut out, &chain.encode());
        }
        put_len(&mut out, self.deliveries.len());
        for (key, peer, state) in &self.deliveries {
            out.extend_from_slice(key.room.as_bytes());
            out.extend_from_slice(&key.timestamp.to_le_bytes());
            out.extend_from_slice(key.id.as_bytes());
            out.extend_from_slice(&peer.0);
            out.push(*state as u8);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<JournalRecord> {
        let mut r = Reader(bytes);
        if r.byte()? != RECORD_VERSION {
            return None;
        }
        let mut record = JournalRecord::default();
        for _ in 0..r.len()? {
            record.messages.push(Message {
                id: MessageId(r.array()?),
                room: RoomId(r.array()?),
                sender: PeerId(r.array()?),
                sender_seq: u64::from_le_bytes(r.array()?),
                timestamp: u64::from_le_bytes(r.array()?),
                body: r.bytes()?.to_vec(),
                envelope: r.bytes()?.to_vec(),
            });
        }
        for _ in 0..r.len()? {
            record.chains.push(ChainSnapshot::decode(r.bytes()?).ok()?);
        }
        for _ in 0..r.len()? {
            let key = MessageKey {
                room: RoomId(r.array()?),
                timestamp: u64::from_le_bytes(r.array()?),
                id: MessageId(r.array()?),
            };
            let peer = PeerId(r.array()?);
            let state = match r.byte()? {
                0 => DeliveryState::Pending,
                1 => DeliveryState::Delivered,
                2 => DeliveryState::Read,
                _ => return None,
            };
            record.deliveries.push((key, peer, state));
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

fn record_aad(index: u64) -> Vec<u8> {
    let mut aad = b"kith journal record v1".to_vec();
    aad.extend_from_slice(&index.to_le_bytes());
    aad
}

/// The open journal of a store. Appends are durable against a crash of the
/// process when they return.
pub struct Journal {
    file: File,
    key: SecretKey,
    /// Records in the file.
    records: u64,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens (or creates) the journal at `path` and reads the records left
    /// in it. A torn or damaged tail is cut off: nothing after it was ever
    /// reported durable.
    pub(super) fn open(path: &Path, key: SecretKey) -> Result<(Journal, Vec<JournalRecord>)> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut records = Vec::new();
        let mut good_len = 0;
        let mut rest = bytes.as_slice();
        while let Some((len, tail)) = rest.split_first_chunk::<4>() {
            let len = u32::from_le_bytes(*len) as usize;
            if len > MAX_RECORD || len > tail.len() {
                break;
            }
            let (sealed, tail) = tail.split_at(len);
            let Some(record) = key
                .open(&record_aad(records.len() as u64), sealed)
                .and_then(|plain| JournalRecord::decode(&plain))
            else {
                break;
            };
            records.push(record);
            good_len += 4 + len;
            rest = tail;
        }
        if good_len < bytes.len() {
            file.set_len(good_len as u64)?;
        }
        let journal = Journal {
            file,
            key,
            records: records.len() as u64,
        };
        Ok((journal, records))
    }

    /// Appends `record`; durable (against a crash of the process) when this
    /// returns `Ok`.
    pub fn append(&mut self, record: &JournalRecord) -> Result<()> {
        let sealed = self.key.seal(&record_aad(self.records), &record.encode());
        let len = u32::try_from(sealed.len())
            .ok()
            .filter(|len| *len as usize <= MAX_RECORD)
            .ok_or(StoreError::TooLarge("journal record over 64 MiB"))?;
        let mut frame = Vec::with_capacity(4 + sealed.len());
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&sealed);
        // One write of the whole frame: a crash leaves it whole or torn,
        // and a torn tail is cut off at replay.
        self.file.write_all(&frame)?;
        self.records += 1;
        Ok(())
    }

    /// Empties the journal once its records are in the database.
    pub fn clear(&mut self) -> Result<()> {
        if self.records > 0 {
            self.file.set_len(0)?;
            self.records = 0;
        }
        Ok(())
    }

    /// Records appended since the last `clear`.
    pub fn len(&self) -> u64 {
        self.records
    }

    /// Whether nothing waits in the journal.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }
}
