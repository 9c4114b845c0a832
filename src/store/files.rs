//! Metadata of files shared in rooms.

use rusqlite::params;

use super::{FileMeta, Result, Store, id32, u64_from_sql, u64_to_sql};
use crate::proto::ids::{MessageId, RoomId};

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
