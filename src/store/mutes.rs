//! Muted rooms and peers.

use rusqlite::{OptionalExtension, params};

use super::{Mute, Result, Store, id32, u64_from_sql, u64_to_sql};
use crate::proto::ids::RoomId;

impl Store {
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
}
