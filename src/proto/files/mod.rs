//! File sharing on the wire, sans IO: the offer a file message carries,
//! the pull protocol members speak over their pairwise streams, and the
//! sealing of each chunk.
//!
//! - **Offer** ([`FileOffer`]): the body of a room message of kind
//!   [`crate::proto::node::KIND_FILE`]. It travels through the room's chain
//!   like text, so delivery, receipts, the outbox, sync and offline members
//!   work unchanged. It names the file (a sanitised name), its size, the
//!   blake3 hash of its plaintext, a random per-file key, and an optional
//!   caption.
//! - **Pull** ([`FileMessage`]): a receiver asks a member that holds the
//!   file for a range of chunks ([`FileMessage::Get`]), naming the offer
//!   message; the answer is one [`FileMessage::Chunk`] per chunk, each
//!   sealed with the offer's key, the chunk index, the hash and the size
//!   bound in nonce and associated data, so a chunk cannot be moved to
//!   another place or file. It rides inside `Control::File` on the
//!   reliable pairwise stream, which handles loss and order.
//! - Every decoder is written for hostile input: the length is checked
//!   before anything is read, versions are checked, trailing bytes are
//!   refused, and nothing panics.
//!
//! A chunk authenticates as sent by someone who holds the offer's key (any
//! member of the room); the whole file is checked against the hash before
//! it counts as complete, so a member who serves wrong bytes is caught.

#[cfg(test)]
mod tests;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};

use crate::proto::ids::{FileHash, MessageId};

/// Version byte in front of an encoded [`FileOffer`].
pub const OFFER_VERSION: u8 = 1;
/// Version byte in front of an encoded [`FileMessage`].
pub const FILE_WIRE_VERSION: u8 = 1;
/// Bytes of plaintext per chunk (the last one may be shorter). 32 KiB plus
/// framing stays well inside the reliable layer's 64 KiB message limit.
pub const CHUNK_SIZE: usize = 32 * 1024;
/// Largest file that may be shared or fetched.
pub const MAX_FILE_SIZE: u64 = 256 * 1024 * 1024;
/// Longest file name, in bytes (UTF-8).
pub const MAX_NAME: usize = 255;
/// Longest caption, in bytes (UTF-8).
pub const MAX_CAPTION: usize = 1024;
/// Most chunks one [`FileMessage::Get`] may ask for.
pub const MAX_GET_CHUNKS: u32 = 64;
/// AEAD tag bytes on each sealed chunk.
pub const CHUNK_TAG: usize = 16;
/// Largest encoded offer.
pub const MAX_OFFER_LEN: usize = 1 + 8 + 32 + 32 + 1 + MAX_NAME + 2 + MAX_CAPTION;
/// Largest encoded [`FileMessage`].
pub const MAX_FILE_MESSAGE: usize = 2 + 32 + 4 + 4 + CHUNK_SIZE + CHUNK_TAG;

const CHUNK_AAD_DOMAIN: &[u8] = b"kith file chunk v1\0";

/// Why a file offer, message or chunk was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("file data too short")]
    Truncated,
    #[error("file data too long")]
    TooLong,
    #[error("unknown file format version {0}")]
    Version(u8),
    #[error("unknown file message tag {0}")]
    Tag(u8),
    #[error("file is {0} bytes; at most {MAX_FILE_SIZE} may be shared")]
    TooLarge(u64),
    #[error("bad file name")]
    BadName,
    #[error("caption is not valid UTF-8 or too long")]
    BadCaption,
    #[error("trailing bytes after file data")]
    Trailing,
    #[error("chunk {0} is outside the file")]
    BadIndex(u32),
    #[error("chunk did not authenticate")]
    Unauthentic,
}

/// What a file message offers. The key is secret: `Debug` leaves it out.
#[derive(Clone, PartialEq, Eq)]
pub struct FileOffer {
    /// Sanitised name ([`sanitize_name`]).
    pub name: String,
    pub size: u64,
    /// blake3 of the plaintext.
    pub hash: FileHash,
    /// Seals the chunks in transit (random per offer).
    pub key: [u8; 32],
    pub caption: Option<String>,
}

impl std::fmt::Debug for FileOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileOffer")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl FileOffer {
    /// `version ‖ size u64 ‖ hash 32 ‖ key 32 ‖ name_len u8 ‖ name ‖
    /// caption_len u16 ‖ caption` (little-endian; no caption = length 0).
    pub fn emit(&self) -> Result<Vec<u8>, FileError> {
        if self.size > MAX_FILE_SIZE {
            return Err(FileError::TooLarge(self.size));
        }
        if sanitize_name(&self.name) != self.name {
            return Err(FileError::BadName);
        }
        let caption = self.caption.as_deref().unwrap_or("");
        if caption.len() > MAX_CAPTION {
            return Err(FileError::BadCaption);
        }
        let mut out = Vec::with_capacity(76 + self.name.len() + caption.len());
        out.push(OFFER_VERSION);
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.hash.0);
        out.extend_from_slice(&self.key);
        // Both lengths are bounded above (≤ 255, ≤ 1024).
        out.push(self.name.len() as u8);
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&(caption.len() as u16).to_le_bytes());
        out.extend_from_slice(caption.as_bytes());
        Ok(out)
    }

    /// Parses an untrusted offer; the name must already be sanitised (a
    /// sender that put a path in it is refused, not corrected).
    pub fn parse(bytes: &[u8]) -> Result<Self, FileError> {
        if bytes.len() > MAX_OFFER_LEN {
            return Err(FileError::TooLong);
        }
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != OFFER_VERSION {
            return Err(FileError::Version(version));
        }
        let size = r.u64()?;
        if size > MAX_FILE_SIZE {
            return Err(FileError::TooLarge(size));
        }
        let hash = FileHash(r.array()?);
        let key = r.array()?;
        let name_len = usize::from(r.u8()?);
        let name = std::str::from_utf8(r.take(name_len)?).map_err(|_| FileError::BadName)?;
        if name.is_empty() || sanitize_name(name) != name {
            return Err(FileError::BadName);
        }
        let caption_len = usize::from(r.u16()?);
        if caption_len > MAX_CAPTION {
            return Err(FileError::BadCaption);
        }
        let caption =
            std::str::from_utf8(r.take(caption_len)?).map_err(|_| FileError::BadCaption)?;
        r.end()?;
        Ok(FileOffer {
            name: name.to_owned(),
            size,
            hash,
            key,
            caption: (!caption.is_empty()).then(|| caption.to_owned()),
        })
    }

    /// How many chunks the file has (an empty file has none).
    pub fn chunks(&self) -> u32 {
        chunk_count(self.size)
    }
}

/// How many chunks a file of `size` bytes has. `size` ≤ [`MAX_FILE_SIZE`]
/// keeps this far below `u32::MAX`.
pub fn chunk_count(size: u64) -> u32 {
    u32::try_from(size.div_ceil(CHUNK_SIZE as u64)).unwrap_or(u32::MAX)
}

/// Bytes of plaintext in chunk `index` of a file of `size` bytes (0 for an
/// index past the end).
pub fn chunk_len(size: u64, index: u32) -> usize {
    let start = u64::from(index) * CHUNK_SIZE as u64;
    // At most CHUNK_SIZE, so it fits.
    size.saturating_sub(start).min(CHUNK_SIZE as u64) as usize
}

/// A file name safe to create in any directory: the last path component
/// only, with separators, NUL and control characters replaced by `_`,
/// no leading dots (never `.`, `..` or a hidden file), at most
/// [`MAX_NAME`] bytes (cut at a character boundary); `file` if nothing is
/// left.
pub fn sanitize_name(name: &str) -> String {
    let last = name
        .rsplit(['/', '\\'])
        .find(|part| !part.trim().is_empty())
        .unwrap_or("");
    let mut out: String = last
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | ':' | '\0') {
                '_'
            } else {
                c
            }
        })
        .collect();
    out = out
        .trim_start_matches(|c: char| c == '.' || c.is_whitespace())
        .to_owned();
    while out.len() > MAX_NAME {
        out.pop();
    }
    out.truncate(out.trim_end().len());
    if out.is_empty() {
        out.push_str("file");
    }
    out
}

/// One message of the pull protocol, inside `Control::File`.
#[derive(Clone, PartialEq, Eq)]
pub enum FileMessage {
    /// Asks for chunks `first .. first + count` of the file offered by
    /// message `offer`.
    Get {
        offer: MessageId,
        first: u32,
        count: u32,
    },
    /// Chunk `index` of the file of `offer`, sealed ([`seal_chunk`]).
    Chunk {
        offer: MessageId,
        index: u32,
        sealed: Vec<u8>,
    },
    /// The sender does not hold the file (yet): ask someone else.
    Unavailable { offer: MessageId },
}

impl std::fmt::Debug for FileMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileMessage::Get {
                offer,
                first,
                count,
            } => write!(f, "Get({offer:?}, {first}+{count})"),
            FileMessage::Chunk {
                offer,
                index,
                sealed,
            } => {
                write!(f, "Chunk({offer:?}, {index}, {} bytes)", sealed.len())
            }
            FileMessage::Unavailable { offer } => write!(f, "Unavailable({offer:?})"),
        }
    }
}

const TAG_GET: u8 = 1;
const TAG_CHUNK: u8 = 2;
const TAG_UNAVAILABLE: u8 = 3;

impl FileMessage {
    /// `version ‖ tag ‖ offer 32 ‖ fields` (little-endian).
    pub fn emit(&self) -> Vec<u8> {
        let mut out = vec![FILE_WIRE_VERSION];
        match self {
            FileMessage::Get {
                offer,
                first,
                count,
            } => {
                out.push(TAG_GET);
                out.extend_from_slice(&offer.0);
                out.extend_from_slice(&first.to_le_bytes());
                out.extend_from_slice(&count.to_le_bytes());
            }
            FileMessage::Chunk {
                offer,
                index,
                sealed,
            } => {
                out.push(TAG_CHUNK);
                out.extend_from_slice(&offer.0);
                out.extend_from_slice(&index.to_le_bytes());
                out.extend_from_slice(sealed);
            }
            FileMessage::Unavailable { offer } => {
                out.push(TAG_UNAVAILABLE);
                out.extend_from_slice(&offer.0);
            }
        }
        out
    }

    /// Parses an untrusted message.
    pub fn parse(bytes: &[u8]) -> Result<Self, FileError> {
        if bytes.len() > MAX_FILE_MESSAGE {
            return Err(FileError::TooLong);
        }
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != FILE_WIRE_VERSION {
            return Err(FileError::Version(version));
        }
        let tag = r.u8()?;
        let offer = MessageId(r.array()?);
        let message = match tag {
            TAG_GET => {
                let first = r.u32()?;
                let count = r.u32()?;
                FileMessage::Get {
                    offer,
                    first,
                    count,
                }
            }
            TAG_CHUNK => {
                let index = r.u32()?;
                let sealed = r.0.to_vec();
                r.0 = &[];
                if sealed.len() < CHUNK_TAG {
                    return Err(FileError::Truncated);
                }
                FileMessage::Chunk {
                    offer,
                    index,
                    sealed,
                }
            }
            TAG_UNAVAILABLE => FileMessage::Unavailable { offer },
            other => return Err(FileError::Tag(other)),
        };
        r.end()?;
        Ok(message)
    }
}

fn chunk_nonce_aad(hash: &FileHash, size: u64, index: u32) -> (Nonce, Vec<u8>) {
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&index.to_le_bytes());
    let mut aad = CHUNK_AAD_DOMAIN.to_vec();
    aad.extend_from_slice(&hash.0);
    aad.extend_from_slice(&size.to_le_bytes());
    aad.extend_from_slice(&index.to_le_bytes());
    (Nonce::from(nonce), aad)
}

/// Seals chunk `index` of the file `offer` describes. The key is the
/// offer's own, so a chunk index is sealed under it with one nonce; the
/// same index always carries the same bytes of an honest file.
pub fn seal_chunk(offer: &FileOffer, index: u32, plaintext: &[u8]) -> Result<Vec<u8>, FileError> {
    if index >= offer.chunks() {
        return Err(FileError::BadIndex(index));
    }
    if plaintext.len() != chunk_len(offer.size, index) {
        return Err(FileError::TooLong);
    }
    let (nonce, aad) = chunk_nonce_aad(&offer.hash, offer.size, index);
    ChaCha20Poly1305::new(&offer.key.into())
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| FileError::TooLong)
}

/// Opens chunk `index` of the file `offer` describes: it must authenticate
/// under the offer's key for this index, hash and size, and have the
/// chunk's exact length.
pub fn open_chunk(offer: &FileOffer, index: u32, sealed: &[u8]) -> Result<Vec<u8>, FileError> {
    if index >= offer.chunks() {
        return Err(FileError::BadIndex(index));
    }
    let want = chunk_len(offer.size, index) + CHUNK_TAG;
    if sealed.len() < want {
        return Err(FileError::Truncated);
    }
    if sealed.len() > want {
        return Err(FileError::TooLong);
    }
    let (nonce, aad) = chunk_nonce_aad(&offer.hash, offer.size, index);
    ChaCha20Poly1305::new(&offer.key.into())
        .decrypt(
            &nonce,
            Payload {
                msg: sealed,
                aad: &aad,
            },
        )
        .map_err(|_| FileError::Unauthentic)
}

/// A bounded reader over untrusted bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FileError> {
        if self.0.len() < n {
            return Err(FileError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FileError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, FileError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, FileError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, FileError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, FileError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn end(&self) -> Result<(), FileError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(FileError::Trailing)
        }
    }
}
