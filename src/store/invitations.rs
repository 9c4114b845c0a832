//! Room invitations the user has not answered yet, so they survive a
//! restart. Each row is the node's record of the invitation (which holds
//! the room's group key) sealed under the room's storage key, with the room
//! bound in the associated data so a row cannot be moved to another room.

use rusqlite::params;

use super::{Result, Store, StoreError, id32};
use crate::proto::ids::RoomId;

fn invitation_aad(room: &RoomId) -> [u8; 51] {
    const DOMAIN: &[u8; 19] = b"kith invitation v1 ";
    let mut aad = [0u8; 51];
    aad[..19].copy_from_slice(DOMAIN);
    aad[19..].copy_from_slice(room.as_bytes());
    aad
}

impl Store {
    /// Applies invitation changes in one transaction: `Some(record)`
    /// stores (or replaces) the room's invitation, `None` forgets it.
    pub fn put_invitations(&mut self, updates: &[(RoomId, Option<Vec<u8>>)]) -> Result<()> {
        self.ensure_room_keys(
            updates
                .iter()
                .filter(|(_, record)| record.is_some())
                .map(|(room, _)| *room),
        )?;
        let tx = self.conn.transaction()?;
        for (room, record) in updates {
            match record {
                Some(record) => {
                    let key = self
                        .keys
                        .rooms
                        .get(room)
                        .ok_or(StoreError::RoomKeyMissing(*room))?;
                    tx.execute(
                        "INSERT INTO invitations (room, sealed) VALUES (?1, ?2)
                         ON CONFLICT (room) DO UPDATE SET sealed = excluded.sealed",
                        params![room.as_bytes(), key.seal(&invitation_aad(room), record)],
                    )?;
                }
                None => {
                    tx.execute(
                        "DELETE FROM invitations WHERE room = ?1",
                        params![room.as_bytes()],
                    )?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every stored invitation record, by room.
    pub fn invitations(&self) -> Result<Vec<(RoomId, Vec<u8>)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT room, sealed FROM invitations ORDER BY room")?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(room, sealed)| {
                let room = RoomId(id32(room)?);
                let key = self
                    .keys
                    .rooms
                    .get(&room)
                    .ok_or(StoreError::Undecryptable("invitation (room key missing)"))?;
                let record = key
                    .open(&invitation_aad(&room), &sealed)
                    .ok_or(StoreError::Undecryptable("invitation"))?;
                Ok((room, record.to_vec()))
            })
            .collect()
    }
}
