//! What a chat client reads: a room's history a page at a time and
//! everything stored after a cursor (read markers and unread counts are in
//! `unread.rs`).
//!
//! A message's **cursor** is its row number (`messages.seq`): assigned when
//! the message reaches the database, increasing in the order messages were
//! stored, never reused while the row exists. History pages go by the
//! room's (timestamp, id) order through the `messages_by_room_time` index,
//! and decrypt only the rows of the page; "stored after a cursor" goes by
//! the row number (the table's own B-tree).

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::messages::RawMessage;
use super::{
    DeliveryState, Message, Position, Result, Store, StoreError, id32, ts_from_sql, ts_to_sql,
    u64_from_sql, u64_to_sql,
};
use crate::proto::ids::{MessageId, PeerId, RoomId};

/// One stored message as a history page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Where it is in the store (see the module docs): pass it as `before`
    /// for the next page, to `mark_read`, or to catch up from.
    pub cursor: u64,
    /// The message; `body` is empty when it is stored unreadable (its
    /// author's key has not arrived).
    pub message: Message,
    /// Delivery state per recipient, as recorded for our own messages
    /// (`Pending`: in the outbox; `Delivered`: the recipient stored it).
    /// Empty for messages of others.
    pub deliveries: Vec<(PeerId, DeliveryState)>,
}

impl HistoryEntry {
    /// Whether the text could be read (an unreadable message is stored
    /// with an empty body).
    pub fn readable(&self) -> bool {
        !self.message.body.is_empty()
    }
}

fn delivery_state(value: i64) -> Result<DeliveryState> {
    Ok(match value {
        0 => DeliveryState::Pending,
        1 => DeliveryState::Delivered,
        2 => DeliveryState::Read,
        _ => return Err(StoreError::Undecryptable("delivery state")),
    })
}

/// A `messages` row with its row number, before decryption.
fn raw_with_seq(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, RawMessage)> {
    Ok((
        row.get(0)?,
        RawMessage {
            id: row.get(1)?,
            sender: row.get(2)?,
            sender_seq: row.get(3)?,
            ts: row.get(4)?,
            sealed: row.get(5)?,
        },
    ))
}

impl Store {
    /// Up to `limit` messages of `room`, newest first in (timestamp, id)
    /// order, strictly older than the message at cursor `before` (the
    /// newest ones with `None`). A `before` that is not a message of
    /// `room` gives an empty page. Reads the room's index and decrypts
    /// only the page.
    pub fn history(
        &self,
        room: &RoomId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>> {
        let Some(&room_ref) = self.room_refs.get(room) else {
            return Ok(Vec::new());
        };
        let before = match before {
            None => None,
            Some(cursor) => match self.position_of(room, cursor)? {
                Some(position) => Some(position),
                None => return Ok(Vec::new()),
            },
        };
        let raws = self.page(room_ref, before, limit)?;
        let mut deliveries = self.conn.prepare_cached(
            "SELECT peer, state FROM deliveries WHERE message = ?1 ORDER BY peer",
        )?;
        raws.into_iter()
            .map(|(seq, raw)| {
                let rows = deliveries
                    .query_map(params![seq], |row| {
                        Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                let deliveries = rows
                    .into_iter()
                    .map(|(peer, state)| Ok((PeerId(id32(peer)?), delivery_state(state)?)))
                    .collect::<Result<Vec<_>>>()?;
                Ok(HistoryEntry {
                    cursor: u64_from_sql(seq),
                    message: self.decrypt(room, raw)?,
                    deliveries,
                })
            })
            .collect()
    }

    /// The one paging query of a room's messages: up to `limit` rows of
    /// room `room_ref`, newest first in (timestamp, id) order, strictly
    /// older than `before` (the newest with `None`), with their row
    /// numbers, still sealed. Walks the `messages_by_room_time` index.
    pub(super) fn page(
        &self,
        room_ref: i64,
        before: Option<Position>,
        limit: usize,
    ) -> Result<Vec<(i64, RawMessage)>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let raws = match before {
            None => {
                let mut stmt = self.conn.prepare_cached(
                    "SELECT seq, id, sender, sender_seq, ts, sealed FROM messages
                     WHERE room_ref = ?1 ORDER BY ts DESC, id DESC LIMIT ?2",
                )?;
                stmt.query_map(params![room_ref, limit], raw_with_seq)?
                    .collect::<Result<Vec<_>, _>>()?
            }
            Some(before) => {
                let mut stmt = self.conn.prepare_cached(
                    "SELECT seq, id, sender, sender_seq, ts, sealed FROM messages
                     WHERE room_ref = ?1 AND (ts, id) < (?2, ?3)
                     ORDER BY ts DESC, id DESC LIMIT ?4",
                )?;
                stmt.query_map(
                    params![
                        room_ref,
                        ts_to_sql(before.timestamp),
                        before.id.as_bytes(),
                        limit
                    ],
                    raw_with_seq,
                )?
                .collect::<Result<Vec<_>, _>>()?
            }
        };
        Ok(raws)
    }

    /// The position in `room` of the message at `cursor`, if that is a
    /// message of `room`.
    pub fn position_of(&self, room: &RoomId, cursor: u64) -> Result<Option<Position>> {
        let Some(&room_ref) = self.room_refs.get(room) else {
            return Ok(None);
        };
        let row = self
            .conn
            .prepare_cached("SELECT ts, id FROM messages WHERE seq = ?1 AND room_ref = ?2")?
            .query_row(params![u64_to_sql(cursor), room_ref], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
            })
            .optional()?;
        row.map(|(ts, id)| {
            Ok(Position {
                timestamp: ts_from_sql(ts),
                id: MessageId(id32(id)?),
            })
        })
        .transpose()
    }

    /// The cursor and position of the newest message of `room` in
    /// (timestamp, id) order.
    pub fn newest_in_room(&self, room: &RoomId) -> Result<Option<(u64, Position)>> {
        let Some(&room_ref) = self.room_refs.get(room) else {
            return Ok(None);
        };
        let row = self
            .conn
            .prepare_cached(
                "SELECT seq, ts, id FROM messages WHERE room_ref = ?1
                 ORDER BY ts DESC, id DESC LIMIT 1",
            )?
            .query_row(params![room_ref], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                ))
            })
            .optional()?;
        row.map(|(seq, ts, id)| {
            Ok((
                u64_from_sql(seq),
                Position {
                    timestamp: ts_from_sql(ts),
                    id: MessageId(id32(id)?),
                },
            ))
        })
        .transpose()
    }

    /// The cursor of a stored message (`None`: not stored).
    pub fn cursor_of(&self, room: &RoomId, position: &Position) -> Result<Option<u64>> {
        let Some(&room_ref) = self.room_refs.get(room) else {
            return Ok(None);
        };
        Ok(self
            .conn
            .prepare_cached("SELECT seq FROM messages WHERE room_ref = ?1 AND ts = ?2 AND id = ?3")?
            .query_row(
                params![
                    room_ref,
                    ts_to_sql(position.timestamp),
                    position.id.as_bytes()
                ],
                |row| row.get::<_, i64>(0),
            )
            .optional()?
            .map(u64_from_sql))
    }

    /// The highest cursor in the database (0 when it holds no message).
    pub fn latest_cursor(&self) -> Result<u64> {
        let max: Option<i64> = self
            .conn
            .query_row("SELECT max(seq) FROM messages", [], |row| row.get(0))?;
        Ok(max.map_or(0, u64_from_sql))
    }

    /// Up to `limit` messages of every room stored after cursor `after`,
    /// in cursor order (the order they reached the database), each with its
    /// cursor: what a client that was away catches up on.
    pub fn stored_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Message)>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rooms: HashMap<i64, RoomId> = self.room_refs.iter().map(|(r, i)| (*i, *r)).collect();
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, id, sender, sender_seq, ts, sealed, room_ref FROM messages
             WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let raws = stmt
            .query_map(params![u64_to_sql(after), limit], |row| {
                Ok((raw_with_seq(row)?, row.get::<_, i64>(6)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        raws.into_iter()
            .filter_map(|((seq, raw), room_ref)| {
                // A row of a room deleted meanwhile has no key any more.
                let room = rooms.get(&room_ref)?;
                Some(
                    self.decrypt(room, raw)
                        .map(|message| (u64_from_sql(seq), message)),
                )
            })
            .collect()
    }

    /// SQLite's plan for the history page query (for the tests that check
    /// it walks the index).
    #[doc(hidden)]
    pub fn explain_history(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare(
            "EXPLAIN QUERY PLAN SELECT seq, id, sender, sender_seq, ts, sealed FROM messages
             WHERE room_ref = ?1 AND (ts, id) < (?2, ?3) ORDER BY ts DESC, id DESC LIMIT ?4",
        )?;
        let rows = stmt
            .query_map(params![1, 0, vec![0u8; 32], 50], |row| {
                row.get::<_, String>(3)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}
