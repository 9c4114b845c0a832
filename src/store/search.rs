//! Searching message text. Bodies are sealed per room, so a search opens
//! every row it looks at: there is no plaintext index, in the database or
//! anywhere else, and nothing a search reads outlives it.
//!
//! A search runs on its own read-only connection ([`Store::reader`]) so
//! that the thread owning the store (the daemon's network loop) only hands
//! it the rooms' storage keys ([`Store::search_scope`]) and goes on: WAL
//! lets the reader see every committed row while the writer writes.
//!
//! Order and paging: newest first in each room's (timestamp, id) order,
//! rooms merged by the same order; `before` continues a page after its last
//! hit. Each room is scanned backwards from `before` through its index
//! until `limit` hits are found in it, so a common word costs a few rows
//! and a rare one a scan of what is left.

use std::path::PathBuf;

use rusqlite::{Connection, OpenFlags, params};

use super::keys::SecretKey;
use super::{
    PageFormat, Position, Result, Store, StoreError, connect, id32, ts_from_sql, ts_to_sql,
};
use crate::proto::ids::{MessageId, PeerId, RoomId};

/// Most hits one search returns.
pub const MAX_SEARCH_LIMIT: usize = 1000;

/// What to look for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchQuery {
    /// Matched case-insensitively anywhere in a message's text.
    pub text: String,
    /// Only hits strictly older than this (the last hit of the previous
    /// page).
    pub before: Option<Position>,
    /// At most this many hits (capped at [`MAX_SEARCH_LIMIT`]).
    pub limit: usize,
}

/// A message whose text matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchHit {
    pub room: RoomId,
    pub id: MessageId,
    pub sender: PeerId,
    pub timestamp: u64,
    pub text: String,
}

impl SearchHit {
    /// Where the next page starts.
    pub fn position(&self) -> Position {
        Position {
            timestamp: self.timestamp,
            id: self.id,
        }
    }
}

/// The rooms a search may open, with their storage keys: taken from the
/// store by its owner, handed to the thread that searches.
pub struct SearchScope {
    rooms: Vec<(RoomId, i64, SecretKey)>,
}

impl std::fmt::Debug for SearchScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print keys.
        f.debug_struct("SearchScope")
            .field("rooms", &self.rooms.len())
            .finish_non_exhaustive()
    }
}

/// A read-only connection to a store, for searching on another thread.
pub struct StoreReader {
    pub(super) conn: Connection,
}

impl std::fmt::Debug for StoreReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreReader").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens a second, read-only connection to this store's database (no
    /// key derivation: the master key is at hand). It may move to another
    /// thread; it sees what this store committed.
    pub fn reader(&self) -> Result<StoreReader> {
        let path = PathBuf::from(self.conn.path().unwrap_or_default());
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = match connect(&path, &self.keys, flags, PageFormat::Sha256) {
            Err(StoreError::Corrupt) => connect(&path, &self.keys, flags, PageFormat::Sha512)?,
            other => other?,
        };
        conn.execute_batch("PRAGMA query_only = ON;")?;
        Ok(StoreReader { conn })
    }

    /// The rooms a search may open: `room`, or every room with messages
    /// and a storage key (rooms we left or were removed from included:
    /// what we could read stays ours). Only messages already in the
    /// database are found, so settle the journal first.
    pub fn search_scope(&self, room: Option<&RoomId>) -> SearchScope {
        let rooms = self
            .room_refs
            .iter()
            .filter(|(id, _)| room.is_none_or(|r| r == *id))
            .filter_map(|(id, reference)| Some((*id, *reference, self.keys.rooms.get(id)?.clone())))
            .collect();
        SearchScope { rooms }
    }

    /// Searches on this store's own connection (a reader on another thread
    /// is what the daemon uses; see [`Store::reader`]).
    pub fn search(&self, room: Option<&RoomId>, query: &SearchQuery) -> Result<Vec<SearchHit>> {
        search_in(&self.conn, &self.search_scope(room), query)
    }
}

impl StoreReader {
    /// The newest messages of `scope` whose text holds `query.text`.
    pub fn search(&self, scope: &SearchScope, query: &SearchQuery) -> Result<Vec<SearchHit>> {
        search_in(&self.conn, scope, query)
    }
}

/// Case-insensitive substring test, without allocating for ASCII text.
struct Needle {
    lower: String,
    ascii: bool,
}

impl Needle {
    fn new(text: &str) -> Self {
        Needle {
            lower: text.to_lowercase(),
            ascii: text.is_ascii(),
        }
    }

    fn found_in(&self, text: &str) -> bool {
        if self.ascii && text.is_ascii() {
            let needle = self.lower.as_bytes();
            return text
                .as_bytes()
                .windows(needle.len())
                .any(|window| window.eq_ignore_ascii_case(needle));
        }
        text.to_lowercase().contains(&self.lower)
    }
}

fn search_in(
    conn: &Connection,
    scope: &SearchScope,
    query: &SearchQuery,
) -> Result<Vec<SearchHit>> {
    let limit = query.limit.min(MAX_SEARCH_LIMIT);
    if limit == 0 || query.text.is_empty() {
        return Ok(Vec::new());
    }
    let needle = Needle::new(&query.text);
    // The newest `limit` hits overall are among each room's newest `limit`.
    let mut hits = Vec::new();
    for (room, room_ref, key) in &scope.rooms {
        search_room(
            conn,
            *room,
            *room_ref,
            key,
            &needle,
            query.before,
            limit,
            &mut hits,
        )?;
    }
    hits.sort_by_key(|hit| std::cmp::Reverse(hit.position()));
    hits.truncate(limit);
    Ok(hits)
}

#[allow(clippy::too_many_arguments)]
fn search_room(
    conn: &Connection,
    room: RoomId,
    room_ref: i64,
    key: &SecretKey,
    needle: &Needle,
    before: Option<Position>,
    limit: usize,
    hits: &mut Vec<SearchHit>,
) -> Result<()> {
    // Without a cursor, the newest possible position bounds nothing.
    let before = before.unwrap_or(Position {
        timestamp: u64::MAX,
        id: MessageId([0xff; 32]),
    });
    let mut stmt = conn.prepare_cached(
        "SELECT id, sender, ts, sealed FROM messages
         WHERE room_ref = ?1 AND (ts, id) < (?2, ?3)
         ORDER BY ts DESC, id DESC",
    )?;
    let mut rows = stmt.query(params![
        room_ref,
        ts_to_sql(before.timestamp),
        before.id.as_bytes()
    ])?;
    let mut found = 0;
    // Rows are read through unchecked first and only the matches opened
    // (checked): the tag check has a fixed cost per row that dominated a
    // search, and the envelope sealed with the body need not be read.
    let mut body = zeroize::Zeroizing::new(Vec::new());
    while let Some(row) = rows.next()? {
        let sealed = row
            .get_ref(3)?
            .as_blob()
            .map_err(|_| StoreError::Undecryptable("message (not a blob)"))?;
        if !super::messages::peek_body(key, sealed, &mut body) || body.is_empty() {
            // Stored unreadable (or not a sealed message): nothing to match.
            continue;
        }
        if !needle.found_in(&String::from_utf8_lossy(&body)) {
            continue;
        }
        let id = MessageId(id32(row.get::<_, Vec<u8>>(0)?)?);
        let Some(text) = super::messages::open_body(key, &id, sealed)? else {
            continue;
        };
        hits.push(SearchHit {
            room,
            id,
            sender: PeerId(id32(row.get::<_, Vec<u8>>(1)?)?),
            timestamp: ts_from_sql(row.get(2)?),
            text,
        });
        found += 1;
        if found == limit {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needles_match_case_insensitively_in_any_script() {
        let needle = Needle::new("DiNNer");
        assert!(needle.found_in("dinner at 8"));
        assert!(needle.found_in("Is DINNER ready?"));
        assert!(!needle.found_in("din ner"));
        assert!(!needle.found_in("dinne"));
        let needle = Needle::new("ÜBER");
        assert!(needle.found_in("alles über alles"));
        let needle = Needle::new("über");
        assert!(needle.found_in("ÜBERALL"));
        // An ASCII needle in non-ASCII text.
        assert!(Needle::new("cafe").found_in("CAFE ☕"));
        assert!(!Needle::new("café").found_in("cafe"));
    }
}
