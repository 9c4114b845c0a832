//! Messages, their delivery state and the outbox.
//!
//! Rows are kept small because the write-ahead log, not the CPU, limits
//! insert throughput on a real disk: a room is stored as a small integer
//! (`room_refs`), and body and envelope are sealed together in one AEAD
//! operation (one nonce and one tag per message instead of two).

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction, params};
use zeroize::Zeroizing;

use super::chains::put_chains_in;
use super::keys::SecretKey;
use super::unread::NewUnread;
use super::{
    DeliveryState, JournalRecord, Message, MessageKey, Position, Result, Store, StoreError, id32,
    ts_from_sql, ts_to_sql, u64_from_sql, u64_to_sql,
};
use crate::proto::crypto::ChainSnapshot;
use crate::proto::ids::{MessageId, PeerId, RoomId};

pub(super) const MESSAGE_COLUMNS: &str = "SELECT id, sender, sender_seq, ts, sealed FROM messages";

/// Associated data of a sealed message: binds the ciphertext to its id, so
/// rows cannot be swapped.
fn message_aad(id: &MessageId) -> Vec<u8> {
    [b"kith message v1 ".as_slice(), id.as_bytes()].concat()
}

/// Seals `body_len u32 LE | body | envelope` under the room key.
fn seal_message(key: &SecretKey, message: &Message) -> Result<Vec<u8>> {
    let body_len = u32::try_from(message.body.len())
        .map_err(|_| StoreError::TooLarge("message body over 4 GiB"))?;
    let mut plain = Zeroizing::new(Vec::with_capacity(
        4 + message.body.len() + message.envelope.len(),
    ));
    plain.extend_from_slice(&body_len.to_le_bytes());
    plain.extend_from_slice(&message.body);
    plain.extend_from_slice(&message.envelope);
    Ok(key.seal(&message_aad(&message.id), &plain))
}

/// Opens what [`seal_message`] sealed: `(body, envelope)`.
pub(super) fn open_message(
    key: &SecretKey,
    id: &MessageId,
    sealed: &[u8],
) -> Result<(Vec<u8>, Vec<u8>)> {
    let undecryptable = StoreError::Undecryptable("message");
    let plain = key.open(&message_aad(id), sealed).ok_or(undecryptable)?;
    let (len, rest) = plain
        .split_first_chunk::<4>()
        .ok_or(StoreError::Undecryptable("message (too short)"))?;
    let len = u32::from_le_bytes(*len) as usize;
    if len > rest.len() {
        return Err(StoreError::Undecryptable("message (bad body length)"));
    }
    let (body, envelope) = rest.split_at(len);
    Ok((body.to_vec(), envelope.to_vec()))
}

/// Opens only the body of what [`seal_message`] sealed, as text; `None`
/// for a message stored unreadable (empty body). Search reads many rows and
/// keeps few, so the envelope is not copied.
pub(super) fn open_body(key: &SecretKey, id: &MessageId, sealed: &[u8]) -> Result<Option<String>> {
    let plain = key
        .open(&message_aad(id), sealed)
        .ok_or(StoreError::Undecryptable("message"))?;
    let (len, rest) = plain
        .split_first_chunk::<4>()
        .ok_or(StoreError::Undecryptable("message (too short)"))?;
    let len = u32::from_le_bytes(*len) as usize;
    let body = rest
        .get(..len)
        .ok_or(StoreError::Undecryptable("message (bad body length)"))?;
    if body.is_empty() {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(body).into_owned()))
}

/// A messages row before decryption.
pub(super) struct RawMessage {
    pub(super) id: Vec<u8>,
    pub(super) sender: Vec<u8>,
    pub(super) sender_seq: i64,
    pub(super) ts: i64,
    pub(super) sealed: Vec<u8>,
}

impl RawMessage {
    pub(super) fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            sender: row.get(1)?,
            sender_seq: row.get(2)?,
            ts: row.get(3)?,
            sealed: row.get(4)?,
        })
    }
}

/// Loads the whole room id ↔ integer mapping; there are few rooms.
pub(super) fn load_room_refs(conn: &rusqlite::Connection) -> Result<HashMap<RoomId, i64>> {
    let mut stmt = conn.prepare("SELECT ref, room FROM room_refs")?;
    let rows = stmt
        .query_map([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(reference, room)| Ok((RoomId(id32(room)?), reference)))
        .collect()
}

/// The integer for `room`, adding it inside `tx` if it is new. New refs go
/// to `added` and join the cache only after the commit.
fn room_ref_in(
    tx: &Transaction<'_>,
    cache: &HashMap<RoomId, i64>,
    added: &mut HashMap<RoomId, i64>,
    room: &RoomId,
) -> Result<i64> {
    if let Some(reference) = cache.get(room).or_else(|| added.get(room)) {
        return Ok(*reference);
    }
    tx.execute(
        "INSERT INTO room_refs (room) VALUES (?1)",
        params![room.as_bytes()],
    )?;
    let reference = tx.last_insert_rowid();
    added.insert(*room, reference);
    Ok(reference)
}

/// Inserts `batch` inside `tx`, skipping duplicates, and returns the ids
/// that were new. Rooms new to `room_refs` go to `added`. Every room must
/// already have its storage key (see `Store::ensure_room_keys`).
fn set_delivery_in(
    tx: &Transaction<'_>,
    room_ref: i64,
    key: &MessageKey,
    peer: &PeerId,
    state: DeliveryState,
) -> Result<bool> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO deliveries (message, peer, state)
         SELECT seq, ?4, ?5 FROM messages WHERE room_ref = ?1 AND ts = ?2 AND id = ?3
         ON CONFLICT (message, peer) DO UPDATE SET state = max(state, excluded.state)",
    )?;
    let changed = stmt.execute(params![
        room_ref,
        ts_to_sql(key.timestamp),
        key.id.as_bytes(),
        peer.as_bytes(),
        state as i64
    ])?;
    Ok(changed > 0)
}

/// Like [`set_delivery_in`] for a message whose row number is known (it
/// was inserted in the same transaction): no index lookup.
fn set_delivery_of_row(
    tx: &Transaction<'_>,
    seq: i64,
    peer: &PeerId,
    state: DeliveryState,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO deliveries (message, peer, state) VALUES (?1, ?2, ?3)
         ON CONFLICT (message, peer) DO UPDATE SET state = max(state, excluded.state)",
    )?
    .execute(params![seq, peer.as_bytes(), state as i64])?;
    Ok(())
}

/// A message as its database row holds it: body and envelope already
/// sealed under the room's storage key. Journaled messages are sealed once,
/// when they are journaled, not again when they settle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SealedRow {
    pub(crate) id: MessageId,
    pub(crate) room: RoomId,
    pub(crate) sender: PeerId,
    pub(crate) sender_seq: u64,
    pub(crate) timestamp: u64,
    /// Stored with an empty body (listed in `unreadable`).
    pub(crate) unreadable: bool,
    /// The room epoch of its envelope (`None`: no envelope to read it
    /// from, or a row journaled by an older version).
    pub(crate) epoch: Option<u32>,
    pub(crate) sealed: Vec<u8>,
}

/// Seals `messages` for their rows; every room needs its storage key.
fn rows_of(room_keys: &HashMap<RoomId, SecretKey>, messages: &[Message]) -> Result<Vec<SealedRow>> {
    messages
        .iter()
        .map(|message| {
            let key = room_keys
                .get(&message.room)
                .ok_or(StoreError::RoomKeyMissing(message.room))?;
            Ok(SealedRow {
                id: message.id,
                room: message.room,
                sender: message.sender,
                sender_seq: message.sender_seq,
                timestamp: message.timestamp,
                unreadable: message.body.is_empty(),
                epoch: crate::proto::crypto::Envelope::parse(&message.envelope)
                    .ok()
                    .map(|envelope| envelope.header.epoch),
                sealed: seal_message(key, message)?,
            })
        })
        .collect()
}

/// Inserts `rows` (duplicates ignored); returns the new ones' ids with
/// their row numbers.
fn insert_rows_in(
    tx: &Transaction<'_>,
    room_refs: &HashMap<RoomId, i64>,
    added: &mut HashMap<RoomId, i64>,
    rows: &[SealedRow],
) -> Result<Vec<(MessageId, i64)>> {
    let mut fresh = Vec::new();
    let mut unread = NewUnread::default();
    let mut stmt = tx.prepare_cached(
        "INSERT INTO messages (id, room_ref, sender, sender_seq, ts, sealed, epoch)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
    )?;
    for row in rows {
        let room_ref = room_ref_in(tx, room_refs, added, &row.room)?;
        let inserted = stmt.execute(params![
            row.id.as_bytes(),
            room_ref,
            row.sender.as_bytes(),
            u64_to_sql(row.sender_seq),
            ts_to_sql(row.timestamp),
            row.sealed,
            row.epoch,
        ])?;
        if inserted == 1 {
            let seq = tx.last_insert_rowid();
            fresh.push((row.id, seq));
            if row.unreadable {
                tx.prepare_cached(
                    "INSERT INTO unreadable (room_ref, sender, message) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![room_ref, row.sender.as_bytes(), seq])?;
            }
            let position = Position {
                timestamp: row.timestamp,
                id: row.id,
            };
            unread.inserted(tx, &row.room, room_ref, &row.sender, position)?;
        }
    }
    // The unread counts change with the rows, in the same transaction.
    unread.write(tx)?;
    Ok(fresh)
}

impl Store {
    /// Stores a batch of messages in one transaction and returns the ids
    /// that were new (duplicates are ignored). When this returns `Ok`, every
    /// message of the batch is committed and may be acknowledged.
    ///
    /// Invariant the caller upholds: `room` and `timestamp` are the ones the
    /// signed envelope hashed into `id` states (see [`MessageKey`]).
    pub fn insert_messages(&mut self, batch: &[Message]) -> Result<Vec<MessageId>> {
        self.insert_messages_and_chains(batch, &[])
    }

    /// Like [`Store::insert_messages`], and stores (or replaces) the state
    /// of `chains` in the same transaction: either both are committed or
    /// neither is. Persisting the chains that opened (or sealed) a batch
    /// together with it means a restart never finds a message without the
    /// chain position after it, or a chain that moved past a message that
    /// was never stored.
    ///
    /// When `chains` names the same chain and role twice, the later one wins.
    pub fn insert_messages_and_chains(
        &mut self,
        messages: &[Message],
        chains: &[ChainSnapshot],
    ) -> Result<Vec<MessageId>> {
        let rows = self.seal_rows(messages, chains)?;
        Ok(self
            .write_rows_chains_deliveries(&rows, chains, &[])?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// Seals `messages` for their rows, first making sure every room of
    /// them and of `chains` has a storage key.
    fn seal_rows(
        &mut self,
        messages: &[Message],
        chains: &[ChainSnapshot],
    ) -> Result<Vec<SealedRow>> {
        self.ensure_room_keys(
            messages
                .iter()
                .map(|message| message.room)
                .chain(chains.iter().map(|snapshot| snapshot.chain.room)),
        )?;
        rows_of(&self.keys.rooms, messages)
    }

    /// One transaction: `rows` (duplicates ignored), `chains`, then
    /// `deliveries`. Returns the ids of the new messages.
    fn write_rows_chains_deliveries(
        &mut self,
        rows: &[SealedRow],
        chains: &[ChainSnapshot],
        deliveries: &[(MessageKey, PeerId, DeliveryState)],
    ) -> Result<Vec<(MessageId, u64)>> {
        // Journaled chain states of a room deleted since have no key any more.
        self.ensure_room_keys(chains.iter().map(|snapshot| snapshot.chain.room))?;
        let mut added = HashMap::new();
        let tx = self.conn.transaction()?;
        let fresh = insert_rows_in(&tx, &self.room_refs, &mut added, rows)?;
        put_chains_in(&tx, &self.keys.rooms, chains)?;
        if !deliveries.is_empty() {
            let rows: HashMap<MessageId, i64> = fresh.iter().copied().collect();
            for (key, peer, state) in deliveries {
                if let Some(&seq) = rows.get(&key.id) {
                    set_delivery_of_row(&tx, seq, peer, *state)?;
                } else if let Some(&room_ref) = self
                    .room_refs
                    .get(&key.room)
                    .or_else(|| added.get(&key.room))
                {
                    set_delivery_in(&tx, room_ref, key, peer, *state)?;
                }
            }
        }
        tx.commit()?;
        self.room_refs.extend(added);
        Ok(fresh
            .into_iter()
            .map(|(id, seq)| (id, u64_from_sql(seq)))
            .collect())
    }

    /// Makes `messages`, and the chain states that sealed or opened them,
    /// durable with one journal append (see `journal.rs`): a copy into a
    /// mapped file instead of a transaction. They reach the database at the
    /// next [`Store::settle`] (or when the journal is full), together with
    /// the others journaled since; until then no other method sees them, so
    /// the caller settles before anything else it does with the store.
    /// Dropping the store before that leaves them in the journal for the
    /// next open.
    pub fn journal_messages_and_chains(
        &mut self,
        messages: &[Message],
        chains: Vec<ChainSnapshot>,
    ) -> Result<()> {
        self.check_simulated_disk()?;
        let rows = self.seal_rows(messages, &chains)?;
        let record = JournalRecord { rows, chains };
        if !self.journal.append(&record)? {
            // Full: what is there moves into the database first.
            self.commit_unsettled(&[])?;
            if !self.journal.append(&record)? {
                // Larger than the whole journal: straight to the database.
                let fresh = self.write_rows_chains_deliveries(&record.rows, &record.chains, &[])?;
                self.settled_fresh.extend(fresh);
                return Ok(());
            }
        }
        self.unsettled.push(record);
        Ok(())
    }

    /// Makes the disk under the store full (or frees it) for the
    /// simulator: journal appends and settlings fail until it is freed.
    #[cfg(any(test, feature = "sim"))]
    pub fn simulate_full_disk(&mut self, full: bool) {
        self.simulated_full_disk = full;
    }

    /// Whether message `id` of `room` is durable here: in the database or
    /// journaled and not settled yet (readable or not). For the simulator's
    /// checks that "delivered" comes only after the receiver holds a
    /// message; reads only, so asking does not settle the journal (which
    /// would change the run it checks).
    #[cfg(any(test, feature = "sim"))]
    pub fn holds_message(&self, room: &RoomId, id: &MessageId) -> Result<bool> {
        let journaled = self
            .unsettled
            .iter()
            .flat_map(|record| &record.rows)
            .any(|row| row.room == *room && row.id == *id);
        if journaled {
            return Ok(true);
        }
        let Some(&room_ref) = self.room_refs.get(room) else {
            return Ok(false);
        };
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM messages WHERE room_ref = ?1 AND id = ?2")?;
        Ok(stmt.exists(params![room_ref, id.as_bytes()])?)
    }

    #[cfg(any(test, feature = "sim"))]
    fn check_simulated_disk(&self) -> Result<()> {
        if self.simulated_full_disk {
            return Err(StoreError::DiskFull(
                "simulated: no space left on device".to_owned(),
            ));
        }
        Ok(())
    }

    #[cfg(not(any(test, feature = "sim")))]
    fn check_simulated_disk(&self) -> Result<()> {
        Ok(())
    }

    /// Whether journaled messages wait for [`Store::settle`].
    pub fn is_settled(&self) -> bool {
        self.unsettled.is_empty() && self.settled_fresh.is_empty()
    }

    /// Moves the journaled messages into the database in one transaction
    /// (as [`Store::insert_messages_and_chains`]) and empties the journal.
    /// Returns the ids of those journaled since the last call that were
    /// new, each once. On an error they stay journaled for the next try.
    pub fn settle(&mut self) -> Result<Vec<MessageId>> {
        self.settle_and_set_deliveries(&[])
    }

    /// [`Store::settle`] and [`Store::set_deliveries`] in one transaction:
    /// a sender's messages and their "delivered" usually settle together,
    /// and then no delivery needs an index lookup.
    pub fn settle_and_set_deliveries(
        &mut self,
        deliveries: &[(MessageKey, PeerId, DeliveryState)],
    ) -> Result<Vec<MessageId>> {
        Ok(self
            .settle_with_cursors(deliveries)?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// [`Store::settle_and_set_deliveries`], returning each new message's
    /// cursor (its row number, see [`Store::history`]) with its id.
    pub fn settle_with_cursors(
        &mut self,
        deliveries: &[(MessageKey, PeerId, DeliveryState)],
    ) -> Result<Vec<(MessageId, u64)>> {
        self.commit_unsettled(deliveries)?;
        Ok(std::mem::take(&mut self.settled_fresh))
    }

    fn commit_unsettled(
        &mut self,
        deliveries: &[(MessageKey, PeerId, DeliveryState)],
    ) -> Result<()> {
        if self.unsettled.is_empty() {
            self.journal.clear();
            if !deliveries.is_empty() {
                self.set_deliveries(deliveries)?;
            }
            return Ok(());
        }
        self.check_simulated_disk()?;
        let mut all = JournalRecord::default();
        for record in std::mem::take(&mut self.unsettled) {
            all.rows.extend(record.rows);
            all.chains.extend(record.chains);
        }
        match self.write_rows_chains_deliveries(&all.rows, &all.chains, deliveries) {
            Ok(fresh) => {
                // Only now: a crash before this replays records that are
                // already in, which changes nothing (duplicates are
                // ignored, and no chain state was written after them).
                self.journal.clear();
                self.settled_fresh.extend(fresh);
                Ok(())
            }
            Err(error) => {
                self.unsettled.push(all);
                Err(error)
            }
        }
    }

    /// Records many delivery states in one transaction (states only move
    /// forward, as with [`Store::set_delivery`]).
    pub fn set_deliveries(
        &mut self,
        updates: &[(MessageKey, PeerId, DeliveryState)],
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        for (key, peer, state) in updates {
            if let Some(&room_ref) = self.room_refs.get(&key.room) {
                set_delivery_in(&tx, room_ref, key, peer, *state)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Whether this message is stored.
    pub fn has_message(&self, key: &MessageKey) -> Result<bool> {
        let Some(&room_ref) = self.room_refs.get(&key.room) else {
            return Ok(false);
        };
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM messages WHERE room_ref = ?1 AND ts = ?2 AND id = ?3")?;
        Ok(stmt.exists(params![
            room_ref,
            ts_to_sql(key.timestamp),
            key.id.as_bytes()
        ])?)
    }

    /// One message, decrypted.
    pub fn message(&self, key: &MessageKey) -> Result<Option<Message>> {
        let Some(&room_ref) = self.room_refs.get(&key.room) else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare_cached(&format!(
            "{MESSAGE_COLUMNS} WHERE room_ref = ?1 AND ts = ?2 AND id = ?3"
        ))?;
        let row = stmt
            .query_row(
                params![room_ref, ts_to_sql(key.timestamp), key.id.as_bytes()],
                RawMessage::from_row,
            )
            .optional()?;
        row.map(|raw| self.decrypt(&key.room, raw)).transpose()
    }

    /// The original signed envelope of a message, for forwarding during sync.
    pub fn envelope(&self, key: &MessageKey) -> Result<Option<Vec<u8>>> {
        Ok(self.message(key)?.map(|message| message.envelope))
    }

    /// Up to `limit` messages of `room` strictly before `before` (or the
    /// newest ones when `None`), newest first: [`Store::history`] by
    /// position, without cursors or delivery states (the same query).
    pub fn messages_in_room(
        &self,
        room: &RoomId,
        before: Option<Position>,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let Some(&room_ref) = self.room_refs.get(room) else {
            return Ok(Vec::new());
        };
        self.page(room_ref, before, limit)?
            .into_iter()
            .map(|(_, raw)| self.decrypt(room, raw))
            .collect()
    }

    /// Replaces stored copies that could not be read (stored with an empty
    /// body) by readable copies of the same messages from `messages`, in
    /// one transaction; returns the ids replaced. A member may forward a
    /// message before we hold its author's key, so it is stored unreadable;
    /// the author's own copy, arriving once the key did, is readable.
    pub fn upgrade_unreadable(&mut self, messages: &[Message]) -> Result<Vec<MessageId>> {
        let mut upgraded = Vec::new();
        if messages.iter().all(|m| m.body.is_empty()) {
            return Ok(upgraded);
        }
        let tx = self.conn.transaction()?;
        for message in messages.iter().filter(|m| !m.body.is_empty()) {
            let (Some(&room_ref), Some(key)) = (
                self.room_refs.get(&message.room),
                self.keys.rooms.get(&message.room),
            ) else {
                continue;
            };
            let stored: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT sealed FROM messages WHERE room_ref = ?1 AND ts = ?2 AND id = ?3",
                    params![
                        room_ref,
                        ts_to_sql(message.timestamp),
                        message.id.as_bytes()
                    ],
                    |row| row.get(0),
                )
                .optional()?;
            let Some(stored) = stored else {
                continue;
            };
            if !open_message(key, &message.id, &stored)?.0.is_empty() {
                continue;
            }
            tx.execute(
                "UPDATE messages SET sealed = ?4 WHERE room_ref = ?1 AND ts = ?2 AND id = ?3",
                params![
                    room_ref,
                    ts_to_sql(message.timestamp),
                    message.id.as_bytes(),
                    seal_message(key, message)?
                ],
            )?;
            tx.execute(
                "DELETE FROM unreadable WHERE message IN
                 (SELECT seq FROM messages WHERE room_ref = ?1 AND ts = ?2 AND id = ?3)",
                params![
                    room_ref,
                    ts_to_sql(message.timestamp),
                    message.id.as_bytes()
                ],
            )?;
            upgraded.push(message.id);
        }
        tx.commit()?;
        Ok(upgraded)
    }

    /// The messages of `room` by `sender` stored unreadable (with an empty
    /// body) because `sender`'s key had not arrived, oldest first: what to
    /// open once it has. (Those stored by a version before schema 6 are not
    /// listed.)
    pub fn unreadable_messages(&self, room: &RoomId, sender: &PeerId) -> Result<Vec<Message>> {
        let Some(&room_ref) = self.room_refs.get(room) else {
            return Ok(Vec::new());
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT m.id, m.sender, m.sender_seq, m.ts, m.sealed
             FROM unreadable u JOIN messages m ON m.seq = u.message
             WHERE u.room_ref = ?1 AND u.sender = ?2 ORDER BY m.sender_seq",
        )?;
        let raws = stmt
            .query_map(params![room_ref, sender.as_bytes()], RawMessage::from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        raws.into_iter()
            .map(|raw| self.decrypt(room, raw))
            .collect()
    }

    /// The ids of the newest `limit` messages of `room`, newest first.
    /// Reads only the index and decrypts nothing (for the duplicate filter
    /// a node is seeded with at start).
    pub fn recent_ids(&self, room: &RoomId, limit: usize) -> Result<Vec<MessageId>> {
        let Some(&room_ref) = self.room_refs.get(room) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM messages WHERE room_ref = ?1 ORDER BY ts DESC, id DESC LIMIT ?2",
        )?;
        let ids = stmt
            .query_map(params![room_ref, limit], |row| row.get::<_, Vec<u8>>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        ids.into_iter().map(|id| Ok(MessageId(id32(id)?))).collect()
    }

    /// Positions of the messages of `room` in `[lower, upper)`, ascending;
    /// `upper = None` means no upper bound. For set reconciliation during
    /// sync; decrypts nothing and reads only the index.
    /// A room's messages for reconciling it with a member who may have
    /// the history from `min_epoch` on, in (timestamp, id) order: those of
    /// epochs before are left out (a message stored by a version that did
    /// not keep its epoch counts as epoch 0). With `min_epoch` 0 that is
    /// every message, as [`Store::messages_in_range`] from the start.
    pub fn sync_items(&self, room: &RoomId, min_epoch: u32) -> Result<Vec<Position>> {
        let Some(&room_ref) = self.room_refs.get(room) else {
            return Ok(Vec::new());
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT ts, id FROM messages
             WHERE room_ref = ?1 AND COALESCE(epoch, 0) >= ?2
             ORDER BY ts, id",
        )?;
        let rows = stmt
            .query_map(params![room_ref, min_epoch], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(ts, id)| {
                Ok(Position {
                    timestamp: ts_from_sql(ts),
                    id: MessageId(id32(id)?),
                })
            })
            .collect()
    }

    pub fn messages_in_range(
        &self,
        room: &RoomId,
        lower: Position,
        upper: Option<Position>,
    ) -> Result<Vec<Position>> {
        let Some(&room_ref) = self.room_refs.get(room) else {
            return Ok(Vec::new());
        };
        let row = |row: &rusqlite::Row<'_>| Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?));
        // Two statements rather than one with `?4 IS NULL OR ...`: SQLite
        // only turns a bound into an index range when it is unconditional.
        let rows = match upper {
            Some(upper) => {
                let mut stmt = self.conn.prepare_cached(
                    "SELECT ts, id FROM messages
                     WHERE room_ref = ?1 AND (ts, id) >= (?2, ?3) AND (ts, id) < (?4, ?5)
                     ORDER BY ts, id",
                )?;
                stmt.query_map(
                    params![
                        room_ref,
                        ts_to_sql(lower.timestamp),
                        lower.id.as_bytes(),
                        ts_to_sql(upper.timestamp),
                        upper.id.as_bytes()
                    ],
                    row,
                )?
                .collect::<Result<Vec<_>, _>>()?
            }
            None => {
                let mut stmt = self.conn.prepare_cached(
                    "SELECT ts, id FROM messages
                     WHERE room_ref = ?1 AND (ts, id) >= (?2, ?3)
                     ORDER BY ts, id",
                )?;
                stmt.query_map(
                    params![room_ref, ts_to_sql(lower.timestamp), lower.id.as_bytes()],
                    row,
                )?
                .collect::<Result<Vec<_>, _>>()?
            }
        };
        rows.into_iter()
            .map(|(ts, id)| {
                Ok(Position {
                    timestamp: ts_from_sql(ts),
                    id: MessageId(id32(id)?),
                })
            })
            .collect()
    }

    pub(super) fn decrypt(&self, room: &RoomId, raw: RawMessage) -> Result<Message> {
        let id = MessageId(id32(raw.id)?);
        let (body, envelope) = open_message(self.room_key(room)?, &id, &raw.sealed)?;
        Ok(Message {
            id,
            room: *room,
            sender: PeerId(id32(raw.sender)?),
            sender_seq: u64_from_sql(raw.sender_seq),
            timestamp: ts_from_sql(raw.ts),
            body,
            envelope,
        })
    }

    /// Deletes the messages of `room` (and, by cascade, their deliveries)
    /// inside `tx`. Part of [`Store::delete_room`].
    pub(super) fn delete_messages_in(&self, tx: &Transaction<'_>, room: &RoomId) -> Result<()> {
        if let Some(room_ref) = self.room_refs.get(room) {
            tx.execute(
                "DELETE FROM messages WHERE room_ref = ?1",
                params![room_ref],
            )?;
            tx.execute(
                "DELETE FROM unread_counts WHERE room_ref = ?1",
                params![room_ref],
            )?;
            tx.execute("DELETE FROM room_refs WHERE ref = ?1", params![room_ref])?;
        }
        Ok(())
    }

    // ----- deliveries and outbox -----

    /// Records how far `peer` got with our message. States only move
    /// forward; returns `false` if the message is unknown.
    pub fn set_delivery(
        &mut self,
        key: &MessageKey,
        peer: &PeerId,
        state: DeliveryState,
    ) -> Result<bool> {
        let Some(&room_ref) = self.room_refs.get(&key.room) else {
            return Ok(false);
        };
        let tx = self.conn.transaction()?;
        let changed = set_delivery_in(&tx, room_ref, key, peer, state)?;
        tx.commit()?;
        Ok(changed)
    }

    /// Delivery state of our message per recipient.
    pub fn deliveries(&self, key: &MessageKey) -> Result<Vec<(PeerId, DeliveryState)>> {
        let Some(&room_ref) = self.room_refs.get(&key.room) else {
            return Ok(Vec::new());
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.peer, d.state FROM messages m JOIN deliveries d ON d.message = m.seq
             WHERE m.room_ref = ?1 AND m.ts = ?2 AND m.id = ?3 ORDER BY d.peer",
        )?;
        let rows = stmt
            .query_map(
                params![room_ref, ts_to_sql(key.timestamp), key.id.as_bytes()],
                |row| Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?)),
            )?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(peer, state)| {
                let state = match state {
                    0 => DeliveryState::Pending,
                    1 => DeliveryState::Delivered,
                    2 => DeliveryState::Read,
                    _ => return Err(StoreError::Undecryptable("delivery state")),
                };
                Ok((PeerId(id32(peer)?), state))
            })
            .collect()
    }

    /// The outbox for `peer`: our messages it has not acknowledged yet, in
    /// the order they were stored.
    pub fn outbox(&self, peer: &PeerId) -> Result<Vec<MessageKey>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT r.room, m.ts, m.id FROM deliveries d
             JOIN messages m ON m.seq = d.message
             JOIN room_refs r ON r.ref = m.room_ref
             WHERE d.peer = ?1 AND d.state = 0 ORDER BY d.message",
        )?;
        let rows = stmt
            .query_map(params![peer.as_bytes()], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(room, ts, id)| {
                Ok(MessageKey {
                    room: RoomId(id32(room)?),
                    timestamp: ts_from_sql(ts),
                    id: MessageId(id32(id)?),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_message_round_trips_and_rejects_tampering() {
        let key = SecretKey::random();
        let message = Message {
            id: MessageId([1; 32]),
            room: RoomId([2; 32]),
            sender: PeerId([3; 32]),
            sender_seq: 4,
            timestamp: 5,
            body: b"body".to_vec(),
            envelope: b"envelope".to_vec(),
        };
        let sealed = seal_message(&key, &message).unwrap();
        let (body, envelope) = open_message(&key, &message.id, &sealed).unwrap();
        assert_eq!(
            (body, envelope),
            (message.body.clone(), message.envelope.clone())
        );
        assert!(open_message(&key, &MessageId([9; 32]), &sealed).is_err());
        assert!(open_message(&SecretKey::random(), &message.id, &sealed).is_err());
        // A well-authenticated plaintext with a lying length is refused too.
        let lying = key.seal(&message_aad(&message.id), &[200, 0, 0, 0, 1]);
        assert!(open_message(&key, &message.id, &lying).is_err());
        let short = key.seal(&message_aad(&message.id), &[1, 0]);
        assert!(open_message(&key, &message.id, &short).is_err());
    }
}
