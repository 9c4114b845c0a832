//! Rooms, their storage keys, members and group keys.

use rusqlite::{OptionalExtension, params};
use zeroize::Zeroizing;

use super::keys::SecretKey;
use super::{
    Member, Result, Room, Store, StoreError, group_key_aad, id32, u64_from_sql, u64_to_sql,
};
use crate::proto::ids::{PeerId, RoomId};

impl Store {
    /// Makes sure every room in `rooms` has a storage key, writing the key
    /// file once if any were missing. Must run before anything is sealed
    /// under those keys, so a committed row never lacks its key.
    pub(super) fn ensure_room_keys(
        &mut self,
        rooms: impl IntoIterator<Item = RoomId>,
    ) -> Result<()> {
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

    pub(super) fn room_key(&self, room: &RoomId) -> Result<&SecretKey> {
        self.keys
            .rooms
            .get(room)
            .ok_or(StoreError::RoomKeyMissing(*room))
    }

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
}
