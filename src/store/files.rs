//! Metadata of files shared in rooms: one `files` row per content hash
//! (whether its bytes are all here), one `file_offers` row per file message.

use std::path::{Path, PathBuf};

use rusqlite::params;

use super::{FileMeta, Result, Store, id32, ts_from_sql, ts_to_sql, u64_from_sql, u64_to_sql};
use crate::proto::files::FileOffer;
use crate::proto::ids::{FileHash, MessageId, PeerId, RoomId};

impl Store {
    /// Adds or updates file metadata.
    pub fn put_file(&mut self, file: &FileMeta) -> Result<()> {
        self.conn.execute(
            "INSERT INTO files (hash, room, message, name, size, complete) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (hash) DO UPDATE SET complete = excluded.complete",
            params![
                file.hash,
                file.room.as_bytes(),
                file.message.as_bytes(),
                file.name,
                u64_to_sql(file.size),
                file.complete
            ],
        )?;
        Ok(())
    }

    /// Files shared in a room.
    pub fn files_in_room(&self, room: &RoomId) -> Result<Vec<FileMeta>> {
        self.query_files(
            "SELECT hash, room, message, name, size, complete FROM files
             WHERE room = ?1 ORDER BY name, hash",
            room.as_bytes(),
        )
    }

    /// Metadata of the file with this content hash.
    pub fn file(&self, hash: &[u8; 32]) -> Result<Option<FileMeta>> {
        let mut files = self.query_files(
            "SELECT hash, room, message, name, size, complete FROM files WHERE hash = ?1",
            hash,
        )?;
        Ok(files.pop())
    }

    fn query_files(&self, sql: &str, key: &[u8; 32]) -> Result<Vec<FileMeta>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt
            .query_map(params![key], |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, bool>(5)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(hash, room, message, name, size, complete)| {
                Ok(FileMeta {
                    hash: id32(hash)?,
                    room: RoomId(id32(room)?),
                    message: MessageId(id32(message)?),
                    name,
                    size: u64_from_sql(size),
                    complete,
                })
            })
            .collect()
    }
}

/// A file offered in a room: one row per file message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredOffer {
    /// The file message.
    pub message: MessageId,
    pub room: RoomId,
    pub author: PeerId,
    /// The message's hybrid-logical-clock timestamp.
    pub timestamp: u64,
    pub offer: FileOffer,
    /// A fetch asked for into this directory and not finished.
    pub fetch_to: Option<PathBuf>,
    /// Where the last finished fetch (or our own share) put the plaintext.
    pub exported: Option<PathBuf>,
    /// Why the last fetch failed.
    pub failed: Option<String>,
}

const OFFER_COLUMNS: &str =
    "message, room, author, ts, hash, name, size, key, caption, fetch_to, exported, failed";

fn path_text(path: &Option<PathBuf>) -> Option<String> {
    path.as_ref().map(|p| p.to_string_lossy().into_owned())
}

impl Store {
    /// Records an offer (once per message: a second call changes nothing).
    pub fn put_offer(&mut self, offer: &StoredOffer) -> Result<()> {
        self.conn.execute(
            &format!(
                "INSERT INTO file_offers ({OFFER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (message) DO NOTHING"
            ),
            params![
                offer.message.as_bytes(),
                offer.room.as_bytes(),
                offer.author.as_bytes(),
                ts_to_sql(offer.timestamp),
                offer.offer.hash.as_bytes(),
                offer.offer.name,
                u64_to_sql(offer.offer.size),
                offer.offer.key,
                offer.offer.caption,
                path_text(&offer.fetch_to),
                path_text(&offer.exported),
                offer.failed,
            ],
        )?;
        Ok(())
    }

    /// Sets what a fetch of the file of `message` stands at: the directory
    /// of a fetch under way, where it put the file, why it failed.
    pub fn set_offer_state(
        &mut self,
        message: &MessageId,
        fetch_to: Option<&Path>,
        exported: Option<&Path>,
        failed: Option<&str>,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE file_offers SET fetch_to = ?2, exported = COALESCE(?3, exported), failed = ?4
             WHERE message = ?1",
            params![
                message.as_bytes(),
                fetch_to.map(|p| p.to_string_lossy().into_owned()),
                exported.map(|p| p.to_string_lossy().into_owned()),
                failed
            ],
        )?;
        Ok(())
    }

    /// The offer of file message `message`.
    pub fn offer(&self, message: &MessageId) -> Result<Option<StoredOffer>> {
        Ok(self
            .query_offers("WHERE message = ?1", message.as_bytes())?
            .pop())
    }

    /// Offers of the file with content hash `hash`, oldest first.
    pub fn offers_of(&self, hash: &FileHash) -> Result<Vec<StoredOffer>> {
        self.query_offers("WHERE hash = ?1 ORDER BY ts", hash.as_bytes())
    }

    /// Files offered in `room`, oldest first.
    pub fn offers_in_room(&self, room: &RoomId) -> Result<Vec<StoredOffer>> {
        self.query_offers("WHERE room = ?1 ORDER BY ts", room.as_bytes())
    }

    /// Offers with a fetch under way (to resume at start).
    pub fn unfinished_fetches(&self) -> Result<Vec<StoredOffer>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {OFFER_COLUMNS} FROM file_offers WHERE fetch_to IS NOT NULL ORDER BY ts"
        ))?;
        let rows = stmt
            .query_map([], offer_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(offer_from_row).collect()
    }

    /// Whether all bytes of `hash` are here and were checked.
    pub fn file_complete(&self, hash: &FileHash) -> Result<bool> {
        Ok(self.file(&hash.0)?.is_some_and(|f| f.complete) && self.blob_exists(hash))
    }

    fn query_offers(&self, filter: &str, key: &[u8; 32]) -> Result<Vec<StoredOffer>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {OFFER_COLUMNS} FROM file_offers {filter}"))?;
        let rows = stmt
            .query_map(params![key], offer_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(offer_from_row).collect()
    }
}

type OfferRow = (
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    i64,
    Vec<u8>,
    String,
    i64,
    Vec<u8>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn offer_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<OfferRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
        row.get(9)?,
        row.get(10)?,
        row.get(11)?,
    ))
}

fn offer_from_row(row: OfferRow) -> Result<StoredOffer> {
    let (message, room, author, ts, hash, name, size, key, caption, fetch_to, exported, failed) =
        row;
    Ok(StoredOffer {
        message: MessageId(id32(message)?),
        room: RoomId(id32(room)?),
        author: PeerId(id32(author)?),
        timestamp: ts_from_sql(ts),
        offer: FileOffer {
            name,
            size: u64_from_sql(size),
            hash: FileHash(id32(hash)?),
            key: id32(key)?,
            caption,
        },
        fetch_to: fetch_to.map(PathBuf::from),
        exported: exported.map(PathBuf::from),
        failed,
    })
}
