//! Contacts (peers we talk to, their keys, requests) and blocked peers.

use rusqlite::params;

use super::{Contact, Result, Store, id32, u64_to_sql};
use crate::proto::ids::PeerId;

impl Store {
    /// Adds or updates a contact.
    pub fn upsert_contact(&mut self, contact: &Contact) -> Result<()> {
        self.conn.execute(
            "INSERT INTO contacts (peer, display_name, verified) VALUES (?1, ?2, ?3)
             ON CONFLICT (peer) DO UPDATE SET display_name = excluded.display_name, verified = excluded.verified",
            params![contact.peer.as_bytes(), contact.display_name, contact.verified],
        )?;
        Ok(())
    }

    /// Records a contact's Ed25519 public key (the contact row must exist).
    pub fn set_contact_key(&mut self, peer: &PeerId, public_key: &[u8; 32]) -> Result<()> {
        self.conn.execute(
            "UPDATE contacts SET public_key = ?2 WHERE peer = ?1",
            params![peer.as_bytes(), public_key.as_slice()],
        )?;
        Ok(())
    }

    /// Marks a contact as a request (it wrote first, not accepted yet) or
    /// accepts it.
    pub fn set_contact_request(&mut self, peer: &PeerId, request: bool) -> Result<()> {
        self.conn.execute(
            "UPDATE contacts SET request = ?2 WHERE peer = ?1",
            params![peer.as_bytes(), request],
        )?;
        Ok(())
    }

    /// Contacts that are requests.
    pub fn contact_requests(&self) -> Result<Vec<PeerId>> {
        self.peer_ids("SELECT peer FROM contacts WHERE request = 1 ORDER BY peer")
    }

    /// The peer ids a one-column query returns.
    fn peer_ids(&self, sql: &str) -> Result<Vec<PeerId>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt
            .query_map([], |row| row.get::<_, Vec<u8>>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|peer| Ok(PeerId(id32(peer)?)))
            .collect()
    }

    /// Every contact whose public key is known, as (peer, key).
    pub fn contact_keys(&self) -> Result<Vec<(PeerId, [u8; 32])>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT peer, public_key FROM contacts WHERE public_key IS NOT NULL ORDER BY peer",
        )?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(peer, key)| Ok((PeerId(id32(peer)?), id32(key)?)))
            .collect()
    }

    /// Whether `peer` is a contact.
    pub fn has_contact(&self, peer: &PeerId) -> Result<bool> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM contacts WHERE peer = ?1")?;
        Ok(stmt.exists(params![peer.as_bytes()])?)
    }

    /// Removes a contact; `false` if there was none.
    pub fn remove_contact(&mut self, peer: &PeerId) -> Result<bool> {
        Ok(self.conn.execute(
            "DELETE FROM contacts WHERE peer = ?1",
            params![peer.as_bytes()],
        )? > 0)
    }

    /// All contacts, by display name.
    pub fn contacts(&self) -> Result<Vec<Contact>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT peer, display_name, verified FROM contacts ORDER BY display_name, peer",
        )?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, bool>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(peer, display_name, verified)| {
                Ok(Contact {
                    peer: PeerId(id32(peer)?),
                    display_name,
                    verified,
                })
            })
            .collect()
    }

    /// Blocks a peer from `since` (milliseconds since the Unix epoch).
    pub fn block(&mut self, peer: &PeerId, since: u64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO blocks (peer, since) VALUES (?1, ?2) ON CONFLICT (peer) DO NOTHING",
            params![peer.as_bytes(), u64_to_sql(since)],
        )?;
        Ok(())
    }

    /// Unblocks a peer; `false` if they were not blocked.
    pub fn unblock(&mut self, peer: &PeerId) -> Result<bool> {
        Ok(self.conn.execute(
            "DELETE FROM blocks WHERE peer = ?1",
            params![peer.as_bytes()],
        )? > 0)
    }

    /// Whether a peer is blocked.
    pub fn is_blocked(&self, peer: &PeerId) -> Result<bool> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM blocks WHERE peer = ?1")?;
        Ok(stmt.exists(params![peer.as_bytes()])?)
    }

    /// All blocked peers.
    pub fn blocked(&self) -> Result<Vec<PeerId>> {
        self.peer_ids("SELECT peer FROM blocks ORDER BY peer")
    }
}
