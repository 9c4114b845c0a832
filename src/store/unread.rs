//! Read markers and unread counts.
//!
//! A room's **read marker** is the position (in the room's (timestamp, id)
//! order) of the newest message the user read. The `unread_counts` table
//! holds, per room and sender, how many stored messages come after it.
//!
//! Guarantees:
//! - The counts are exact: they change in the same transaction as what
//!   changes them (a message inserted after the marker, the marker moved,
//!   the room deleted), so a crash or restart never finds them off, and a
//!   message inserted before the marker (sync bringing old history) is
//!   never counted.
//! - Reading a room's count costs one row per sender, whatever the room
//!   holds: counting by scanning the unread rows (their sender is not in
//!   the index, so every row was read) filled SQLite's page cache at start
//!   for a room of 100 000 unread.
//! - Our own messages are counted too (the store does not know who "we"
//!   are); callers leave the sender they are out.
//! - A marker moving forward to the room's newest message costs nothing
//!   more than writing it; moving it anywhere else reads the rows it passes
//!   (what the user just read), never the rest.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::{Position, Result, Store, id32, ts_from_sql, ts_to_sql};
use crate::proto::ids::{MessageId, PeerId, RoomId};

/// `room`'s read marker, inside `tx`.
pub(super) fn read_marker_in(tx: &Connection, room: &RoomId) -> Result<Option<Position>> {
    let row = tx
        .prepare_cached("SELECT ts, id FROM read_markers WHERE room = ?1")?
        .query_row(params![room.as_bytes()], |row| {
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

/// Messages counted as unread by a batch of inserts, by room and sender.
#[derive(Default)]
pub(super) struct NewUnread {
    /// Each room's read marker, read once per batch.
    markers: HashMap<RoomId, Option<Position>>,
    counts: HashMap<(i64, PeerId), i64>,
}

impl NewUnread {
    /// A message new to the database: unread if it comes after its room's
    /// read marker (or the room has none).
    pub(super) fn inserted(
        &mut self,
        tx: &Connection,
        room: &RoomId,
        room_ref: i64,
        sender: &PeerId,
        position: Position,
    ) -> Result<()> {
        let marker = match self.markers.get(room) {
            Some(marker) => *marker,
            None => {
                let marker = read_marker_in(tx, room)?;
                self.markers.insert(*room, marker);
                marker
            }
        };
        if marker.is_none_or(|marker| position > marker) {
            *self.counts.entry((room_ref, *sender)).or_default() += 1;
        }
        Ok(())
    }

    /// Adds what was counted to the stored counts, inside the inserts'
    /// transaction.
    pub(super) fn write(self, tx: &Connection) -> Result<()> {
        add_counts_in(tx, self.counts.into_iter().map(|((r, s), n)| (r, s, n)))
    }
}

/// Adds `delta` to the count of each (room, sender); counts that reach
/// zero are deleted.
fn add_counts_in(
    tx: &Connection,
    deltas: impl IntoIterator<Item = (i64, PeerId, i64)>,
) -> Result<()> {
    let mut add = tx.prepare_cached(
        "INSERT INTO unread_counts (room_ref, sender, count) VALUES (?1, ?2, ?3)
         ON CONFLICT (room_ref, sender) DO UPDATE SET count = count + excluded.count",
    )?;
    let mut rooms = Vec::new();
    for (room_ref, sender, delta) in deltas {
        if delta == 0 {
            continue;
        }
        add.execute(params![room_ref, sender.as_bytes(), delta])?;
        if delta < 0 && !rooms.contains(&room_ref) {
            rooms.push(room_ref);
        }
    }
    let mut prune =
        tx.prepare_cached("DELETE FROM unread_counts WHERE room_ref = ?1 AND count <= 0")?;
    for room_ref in rooms {
        prune.execute(params![room_ref])?;
    }
    Ok(())
}

/// How many messages of the room `room_ref` each sender has in the range
/// (`after`, `up_to`] of the room's order (from the start with `None`).
fn range_by_sender(
    tx: &Connection,
    room_ref: i64,
    after: Option<&Position>,
    up_to: &Position,
) -> Result<Vec<(PeerId, i64)>> {
    let row = |row: &rusqlite::Row<'_>| Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?));
    let rows = match after {
        Some(after) => tx
            .prepare_cached(
                "SELECT sender, count(*) FROM messages
                 WHERE room_ref = ?1 AND (ts, id) > (?2, ?3) AND (ts, id) <= (?4, ?5)
                 GROUP BY sender",
            )?
            .query_map(
                params![
                    room_ref,
                    ts_to_sql(after.timestamp),
                    after.id.as_bytes(),
                    ts_to_sql(up_to.timestamp),
                    up_to.id.as_bytes()
                ],
                row,
            )?
            .collect::<Result<Vec<_>, _>>()?,
        None => tx
            .prepare_cached(
                "SELECT sender, count(*) FROM messages
                 WHERE room_ref = ?1 AND (ts, id) <= (?2, ?3) GROUP BY sender",
            )?
            .query_map(
                params![room_ref, ts_to_sql(up_to.timestamp), up_to.id.as_bytes()],
                row,
            )?
            .collect::<Result<Vec<_>, _>>()?,
    };
    rows.into_iter()
        .map(|(sender, count)| Ok((PeerId(id32(sender)?), count)))
        .collect()
}

/// Whether the room `room_ref` holds a message after `position`.
fn any_after(tx: &Connection, room_ref: i64, position: &Position) -> Result<bool> {
    Ok(tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM messages
             WHERE room_ref = ?1 AND (ts, id) > (?2, ?3))",
        )?
        .query_row(
            params![
                room_ref,
                ts_to_sql(position.timestamp),
                position.id.as_bytes()
            ],
            |row| row.get(0),
        )?)
}

impl Store {
    /// Every room's read marker: the position of the newest message read.
    pub fn read_markers(&self) -> Result<HashMap<RoomId, Position>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT room, ts, id FROM read_markers")?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(room, ts, id)| {
                Ok((
                    RoomId(id32(room)?),
                    Position {
                        timestamp: ts_from_sql(ts),
                        id: MessageId(id32(id)?),
                    },
                ))
            })
            .collect()
    }

    /// Sets `room`'s read marker to `position` (whatever it was; back is
    /// allowed too) and its unread counts with it, in one transaction.
    pub fn set_read_marker(&mut self, room: &RoomId, position: &Position) -> Result<()> {
        let tx = self.conn.transaction()?;
        let old = read_marker_in(&tx, room)?;
        if let Some(&room_ref) = self.room_refs.get(room) {
            match old {
                Some(old) if old == *position => {}
                // Back: what lies between becomes unread again.
                Some(old) if old > *position => {
                    let counts = range_by_sender(&tx, room_ref, Some(position), &old)?;
                    add_counts_in(&tx, counts.into_iter().map(|(s, n)| (room_ref, s, n)))?;
                }
                // Forward to the newest message (what showing a room
                // does): nothing is unread, whatever was.
                _ if !any_after(&tx, room_ref, position)? => {
                    tx.prepare_cached("DELETE FROM unread_counts WHERE room_ref = ?1")?
                        .execute(params![room_ref])?;
                }
                // Forward: what it passed is read now.
                _ => {
                    let counts = range_by_sender(&tx, room_ref, old.as_ref(), position)?;
                    add_counts_in(&tx, counts.into_iter().map(|(s, n)| (room_ref, s, -n)))?;
                }
            }
        }
        tx.prepare_cached(
            "INSERT INTO read_markers (room, ts, id) VALUES (?1, ?2, ?3)
             ON CONFLICT (room) DO UPDATE SET ts = excluded.ts, id = excluded.id",
        )?
        .execute(params![
            room.as_bytes(),
            ts_to_sql(position.timestamp),
            position.id.as_bytes()
        ])?;
        tx.commit()?;
        Ok(())
    }

    /// How many messages of `room` come after its read marker (all of them
    /// without one), by sender, ours included, in no particular order.
    /// Reads one stored count per sender (see the module docs).
    pub fn unread_by_sender(&self, room: &RoomId) -> Result<Vec<(PeerId, u64)>> {
        let Some(&room_ref) = self.room_refs.get(room) else {
            return Ok(Vec::new());
        };
        let rows = self
            .conn
            .prepare_cached("SELECT sender, count FROM unread_counts WHERE room_ref = ?1")?
            .query_map(params![room_ref], |row| {
                Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(sender, count)| Ok((PeerId(id32(sender)?), u64::try_from(count).unwrap_or(0))))
            .collect()
    }

    /// How many messages of `room` not written by `me` come after its read
    /// marker.
    pub fn count_unread(&self, room: &RoomId, me: &PeerId) -> Result<u64> {
        Ok(self
            .unread_by_sender(room)?
            .into_iter()
            .filter(|(sender, _)| sender != me)
            .map(|(_, count)| count)
            .sum())
    }

    /// [`Store::unread_by_sender`] counted the slow way, by reading every
    /// message after the marker: what the tests hold the stored counts to.
    #[doc(hidden)]
    pub fn unread_by_sender_scanned(&self, room: &RoomId) -> Result<Vec<(PeerId, u64)>> {
        let Some(&room_ref) = self.room_refs.get(room) else {
            return Ok(Vec::new());
        };
        let marker = read_marker_in(&self.conn, room)?;
        let all = range_by_sender(
            &self.conn,
            room_ref,
            marker.as_ref(),
            &Position {
                timestamp: u64::MAX,
                id: MessageId([0xff; 32]),
            },
        )?;
        Ok(all
            .into_iter()
            .map(|(sender, count)| (sender, u64::try_from(count).unwrap_or(0)))
            .collect())
    }
}
