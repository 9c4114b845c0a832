//! Searching message text. Bodies are sealed per room, so a search opens
//! every row it looks at: there is no plaintext index, in the database or
//! anywhere else, and nothing a search reads outlives it.
//!
//! A file message is found by its file's name as well as its caption (its
//! body is the file offer, not text: matched as text it would match bytes
//! of the hash and key, and read as garbage). Its hit carries the offer;
//! its text is the caption, as in a history row.
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
use crate::proto::crypto::{ENVELOPE_HEADER_LEN, ENVELOPE_VERSION, ENVELOPE_VERSION_SINGLE};
use crate::proto::files::FileOffer;
use crate::proto::ids::{MessageId, PeerId, RoomId};
use crate::proto::node::KIND_FILE;

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

/// A message whose text (or, for a file message, its file's name or
/// caption) matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchHit {
    pub room: RoomId,
    pub id: MessageId,
    pub sender: PeerId,
    pub timestamp: u64,
    /// The message's text; a file message's caption ("" without one).
    pub text: String,
    /// For a file message, what it offers.
    pub file: Option<FileOffer>,
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

/// What a row's body is, as far as a search needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peeked {
    Text,
    /// A file message's offer (its envelope says so).
    File,
}

/// Reads a sealed message's body into `body` without checking the seal,
/// to decide whether the row is worth opening (see
/// [`SecretKey::unverified_reader`]), and, only when the body starts
/// with a byte no text starts with (a file offer's version byte is 1), the
/// envelope's header into `header` to read its kind. `None` for a row
/// with no readable body.
fn peek(
    key: &SecretKey,
    sealed: &[u8],
    body: &mut Vec<u8>,
    header: &mut Vec<u8>,
) -> Option<Peeked> {
    let mut reader = key.unverified_reader(sealed)?;
    if !reader.read(4, body) {
        return None;
    }
    let len = u32::from_le_bytes([body[0], body[1], body[2], body[3]]) as usize;
    if !reader.read(len, body) || body.is_empty() {
        return None;
    }
    // Text never starts below TAB; anything else costs nothing more.
    if body[0] >= b'\t' {
        return Some(Peeked::Text);
    }
    if reader.read(ENVELOPE_HEADER_LEN, header) && is_file_header(header) {
        Some(Peeked::File)
    } else {
        Some(Peeked::Text)
    }
}

/// Whether an envelope (or its header) is a file message's: a version
/// this store keeps, and the file kind.
fn is_file_header(envelope: &[u8]) -> bool {
    // Header: version 1, room 32, epoch 4, sender 32, seq 8, kind 1, ...
    const KIND_AT: usize = 1 + 32 + 4 + 32 + 8;
    envelope.len() >= ENVELOPE_HEADER_LEN
        && matches!(envelope[0], ENVELOPE_VERSION | ENVELOPE_VERSION_SINGLE)
        && envelope[KIND_AT] == KIND_FILE
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

    /// Whether a file offer's name or caption holds the needle.
    fn found_in_offer(&self, offer: &FileOffer) -> bool {
        self.found_in(&offer.name) || offer.caption.as_deref().is_some_and(|c| self.found_in(c))
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
    // search, and the envelope sealed with the body need not be read
    // (but for its kind, when the body may be a file offer).
    let mut body = zeroize::Zeroizing::new(Vec::new());
    let mut header = Vec::new();
    while let Some(row) = rows.next()? {
        let sealed = row
            .get_ref(3)?
            .as_blob()
            .map_err(|_| StoreError::Undecryptable("message (not a blob)"))?;
        let Some(kind) = peek(key, sealed, &mut body, &mut header) else {
            // Stored unreadable (or not a sealed message): nothing to match.
            continue;
        };
        let matched = match kind {
            Peeked::Text => needle.found_in(&String::from_utf8_lossy(&body)),
            // An offer this version cannot read has nothing to match.
            Peeked::File => {
                FileOffer::parse(&body).is_ok_and(|offer| needle.found_in_offer(&offer))
            }
        };
        if !matched {
            continue;
        }
        let id = MessageId(id32(row.get::<_, Vec<u8>>(0)?)?);
        let (text, file) = match kind {
            Peeked::Text => match super::messages::open_body(key, &id, sealed)? {
                Some(text) => (text, None),
                None => continue,
            },
            Peeked::File => {
                // What was peeked, checked now; the hit shows what the
                // seal vouches for.
                let (body, envelope) = super::messages::open_message(key, &id, sealed)?;
                match FileOffer::parse(&body) {
                    Ok(offer) if is_file_header(&envelope) => {
                        (offer.caption.clone().unwrap_or_default(), Some(offer))
                    }
                    _ => continue,
                }
            }
        };
        hits.push(SearchHit {
            room,
            id,
            sender: PeerId(id32(row.get::<_, Vec<u8>>(1)?)?),
            timestamp: ts_from_sql(row.get(2)?),
            text,
            file,
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
    use crate::proto::crypto::{
        ChainId, Identity, OutgoingMessage, SecretKey as ChainKey, SenderChain, seal_envelope,
    };
    use crate::proto::ids::FileHash;
    use crate::proto::node::KIND_TEXT;
    use crate::store::{KdfParams, Message};

    const ROOM: RoomId = RoomId([3; 32]);

    /// Message `n` of kind `kind` with `body`, in a real signed envelope
    /// (what the store reads the kind from).
    fn message(n: u8, kind: u8, body: Vec<u8>) -> Message {
        let identity = Identity::from_secret_bytes(&[9; 32]);
        let chain = ChainId {
            room: ROOM,
            epoch: 0,
            sender: identity.peer_id(),
        };
        let mut sending = SenderChain::restore(chain, 0, ChainKey::from_bytes([n; 32]));
        let envelope = seal_envelope(
            &identity,
            &mut sending,
            OutgoingMessage {
                kind,
                timestamp: u64::from(n),
                plaintext: &body,
            },
        )
        .expect("sealed")
        .emit();
        Message {
            id: MessageId([n; 32]),
            room: ROOM,
            sender: identity.peer_id(),
            sender_seq: u64::from(n),
            timestamp: 1_000 + u64::from(n),
            body,
            envelope,
        }
    }

    fn offer(name: &str, caption: Option<&str>) -> FileOffer {
        FileOffer {
            name: name.to_owned(),
            size: 48_213,
            hash: FileHash([0x61; 32]),
            // Bytes that read as text ("zzzz…"): never matched.
            key: [b'z'; 32],
            caption: caption.map(str::to_owned),
        }
    }

    #[test]
    fn file_messages_are_found_by_name_and_caption_only() {
        let dir = std::env::temp_dir().join(format!(
            "kith-search-files-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut store = Store::create(
            &dir.join("kith.db"),
            "pw",
            KdfParams::insecure_fast_for_tests(),
        )
        .expect("store");
        let invoice = offer("Invoice-2026.pdf", Some("for December"));
        let photo = offer("photo.jpg", None);
        let emit = |o: &FileOffer| o.emit().expect("a valid offer");
        // A newer offer version: nothing of it can be read, nothing matched.
        let mut future = emit(&offer("future-invoice.txt", None));
        future[0] = 2;
        // Text that starts like an offer but is text (its envelope says so).
        let odd_text = [&[1u8][..], b"invoice? plain text"].concat();
        store
            .insert_messages(&[
                message(1, KIND_FILE, emit(&invoice)),
                message(2, KIND_TEXT, b"is the invoice paid?".to_vec()),
                message(3, KIND_FILE, emit(&photo)),
                message(4, KIND_FILE, future),
                message(5, KIND_TEXT, odd_text.clone()),
            ])
            .expect("stored");
        let search = |text: &str| {
            store
                .search(
                    None,
                    &SearchQuery {
                        text: text.to_owned(),
                        before: None,
                        limit: 50,
                    },
                )
                .expect("searched")
        };
        let ids = |text: &str| -> Vec<u8> { search(text).iter().map(|h| h.id.0[0]).collect() };

        // By name (any case), newest first, with what it offers; its text
        // is its caption.
        let hits = search("INVOICE");
        assert_eq!(
            hits.iter().map(|h| h.id.0[0]).collect::<Vec<_>>(),
            [5, 2, 1]
        );
        assert_eq!(hits[2].file.as_ref(), Some(&invoice));
        assert_eq!(hits[2].text, "for December");
        assert_eq!(hits[1].file, None);
        assert_eq!(hits[0].text, String::from_utf8_lossy(&odd_text));
        assert_eq!(ids("december"), [1]);
        assert_eq!(ids("photo.JPG"), [3]);
        assert_eq!(search("photo")[0].text, "");
        // The offer's other bytes are not text: the key ("zzzz"), the
        // hash ("aaaa"), the size.
        assert!(ids("zzzz").is_empty());
        assert!(ids("aaaa").is_empty());
        assert!(ids("future").is_empty());
        // A needle across name and caption is not in either.
        assert!(ids("pdf for").is_empty());
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

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
