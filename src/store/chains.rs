//! Sender and receiver chain state, so a restarted node keeps sending and
//! reading on the same chains.
//!
//! Each row holds one encoded [`ChainSnapshot`] sealed under its room's
//! storage key. The associated data binds room, epoch, sender and role, so a
//! row moved to another key (or a sending chain relabelled as receiving)
//! fails to open. Rows go with their room in [`Store::delete_room`].

use std::collections::HashMap;

use rusqlite::{Transaction, params};

use super::keys::SecretKey;
use super::{Result, Store, StoreError, id32};
use crate::proto::crypto::{ChainId, ChainRole, ChainSnapshot};
use crate::proto::ids::{PeerId, RoomId};

/// Associated data of a sealed chain: the row's whole primary key.
pub(super) fn chain_aad(chain: &ChainId, role: ChainRole) -> [u8; 83] {
    const DOMAIN: &[u8; 14] = b"kith chain v1 ";
    let mut aad = [0u8; 83];
    aad[..14].copy_from_slice(DOMAIN);
    aad[14..46].copy_from_slice(chain.room.as_bytes());
    aad[46..50].copy_from_slice(&chain.epoch.to_le_bytes());
    aad[50..82].copy_from_slice(chain.sender.as_bytes());
    aad[82] = role.to_u8();
    aad
}

/// Upserts `chains` inside `tx`. Every room must already have its storage
/// key (see `Store::ensure_room_keys`).
pub(super) fn put_chains_in(
    tx: &Transaction<'_>,
    room_keys: &HashMap<RoomId, SecretKey>,
    chains: &[ChainSnapshot],
) -> Result<()> {
    if chains.is_empty() {
        return Ok(());
    }
    let mut stmt = tx.prepare_cached(
        "INSERT INTO chains (room, epoch, sender, role, sealed) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (room, epoch, sender, role) DO UPDATE SET sealed = excluded.sealed",
    )?;
    for snapshot in chains {
        let room = &snapshot.chain.room;
        let key = room_keys
            .get(room)
            .ok_or(StoreError::RoomKeyMissing(*room))?;
        let sealed = key.seal(
            &chain_aad(&snapshot.chain, snapshot.role),
            &snapshot.encode(),
        );
        stmt.execute(params![
            room.as_bytes(),
            snapshot.chain.epoch,
            snapshot.chain.sender.as_bytes(),
            snapshot.role.to_u8(),
            sealed,
        ])?;
    }
    Ok(())
}

impl Store {
    /// Stores (or replaces) the state of these chains in one transaction;
    /// of two entries for the same chain and role, the later one wins.
    pub fn put_chains(&mut self, chains: &[ChainSnapshot]) -> Result<()> {
        self.ensure_room_keys(chains.iter().map(|snapshot| snapshot.chain.room))?;
        let tx = self.conn.transaction()?;
        put_chains_in(&tx, &self.keys.rooms, chains)?;
        tx.commit()?;
        Ok(())
    }

    /// Every stored chain, ordered by room, epoch, sender and role.
    ///
    /// A row that does not open, decode or match its key is an error
    /// ([`StoreError::Undecryptable`]): dropping it silently would make the
    /// node resend on a used chain position or lose messages. A deleted
    /// room has no rows, since [`Store::delete_room`] removes them.
    pub fn chains(&self) -> Result<Vec<ChainSnapshot>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT room, epoch, sender, role, sealed FROM chains
             ORDER BY room, epoch, sender, role",
        )?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, u32>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                    row.get::<_, u8>(3)?,
                    row.get::<_, Vec<u8>>(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(room, epoch, sender, role, sealed)| {
                let chain = ChainId {
                    room: RoomId(id32(room)?),
                    epoch,
                    sender: PeerId(id32(sender)?),
                };
                let role =
                    ChainRole::from_u8(role).ok_or(StoreError::Undecryptable("chain (role)"))?;
                self.open_chain(&chain, role, &sealed)
            })
            .collect()
    }

    /// Forgets one chain; `false` if it was not stored.
    pub fn delete_chain(&mut self, chain: &ChainId, role: ChainRole) -> Result<bool> {
        Ok(self.conn.execute(
            "DELETE FROM chains WHERE room = ?1 AND epoch = ?2 AND sender = ?3 AND role = ?4",
            params![
                chain.room.as_bytes(),
                chain.epoch,
                chain.sender.as_bytes(),
                role.to_u8()
            ],
        )? > 0)
    }

    /// Deletes these chains' snapshots for good, in one transaction, then
    /// checkpoints: `secure_delete` zeroes their rows in the database
    /// pages, and the emptied WAL keeps no older copy of them. (Chains whose
    /// keys must not outlive their use: a thief of the store and
    /// passphrase finds nothing of them.)
    pub fn forget_chains(&mut self, chains: &[(ChainId, ChainRole)]) -> Result<()> {
        let tx = self.conn.transaction()?;
        for (chain, role) in chains {
            tx.execute(
                "DELETE FROM chains WHERE room = ?1 AND epoch = ?2 AND sender = ?3 AND role = ?4",
                params![
                    chain.room.as_bytes(),
                    chain.epoch,
                    chain.sender.as_bytes(),
                    role.to_u8()
                ],
            )?;
        }
        tx.commit()?;
        self.checkpoint()
    }

    fn open_chain(&self, chain: &ChainId, role: ChainRole, sealed: &[u8]) -> Result<ChainSnapshot> {
        let key = self
            .keys
            .rooms
            .get(&chain.room)
            .ok_or(StoreError::Undecryptable("chain (room key missing)"))?;
        let plain = key
            .open(&chain_aad(chain, role), sealed)
            .ok_or(StoreError::Undecryptable("chain"))?;
        let snapshot = ChainSnapshot::decode(&plain)
            .map_err(|_| StoreError::Undecryptable("chain (malformed)"))?;
        // The AEAD already binds the row's key; this only guards against a
        // snapshot that was sealed under the wrong labels by a bug.
        if snapshot.chain != *chain || snapshot.role != role {
            return Err(StoreError::Undecryptable("chain (mislabelled)"));
        }
        Ok(snapshot)
    }
}
