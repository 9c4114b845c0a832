//! Display names: each peer's newest signed profile record, and ours.
//!
//! The record is kept as received (its signature checked by the node), so
//! it can be checked again or handed on; `seq` only ever grows per peer.

use rusqlite::{OptionalExtension, params};

use super::{Result, Store, id32, ts_from_sql, ts_to_sql};
use crate::proto::ids::PeerId;

/// A peer's profile as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredProfile {
    pub peer: PeerId,
    /// The record's sequence number (newest wins).
    pub seq: u64,
    /// The display name it holds.
    pub name: String,
    /// The signed record.
    pub record: Vec<u8>,
}

impl Store {
    /// Keeps `profile` unless a record at least as new is kept for its
    /// peer; returns whether it was kept.
    pub fn put_profile(&mut self, profile: &StoredProfile) -> Result<bool> {
        // Stored with the sign bit flipped, so SQL compares it as unsigned.
        let changed = self.conn.execute(
            "INSERT INTO profiles (peer, seq, name, record) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (peer) DO UPDATE SET seq = excluded.seq, name = excluded.name,
                 record = excluded.record
             WHERE excluded.seq > profiles.seq",
            params![
                profile.peer.as_bytes(),
                ts_to_sql(profile.seq),
                profile.name,
                profile.record
            ],
        )?;
        Ok(changed > 0)
    }

    /// Every stored profile.
    pub fn profiles(&self) -> Result<Vec<StoredProfile>> {
        let mut stmt = self
            .conn
            .prepare("SELECT peer, seq, name, record FROM profiles")?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Vec<u8>>(3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(peer, seq, name, record)| {
                Ok(StoredProfile {
                    peer: PeerId(id32(peer)?),
                    seq: ts_from_sql(seq),
                    name,
                    record,
                })
            })
            .collect()
    }

    /// The stored profile of `peer`.
    pub fn profile(&self, peer: &PeerId) -> Result<Option<StoredProfile>> {
        let row = self
            .conn
            .query_row(
                "SELECT seq, name, record FROM profiles WHERE peer = ?1",
                params![peer.as_bytes()],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, Vec<u8>>(2)?,
                    ))
                },
            )
            .optional()?;
        Ok(row.map(|(seq, name, record)| StoredProfile {
            peer: *peer,
            seq: ts_from_sql(seq),
            name,
            record,
        }))
    }
}
