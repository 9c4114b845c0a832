//! File sharing as the daemon's users see it: what a file message offers,
//! how a shared file stands here, and what names one (see
//! [`super::api::Request::ShareFile`], [`super::api::Request::FetchFile`],
//! [`super::api::Request::Files`]).

use std::path::PathBuf;

use crate::proto::crypto::{ENVELOPE_HEADER_LEN, ENVELOPE_VERSION, ENVELOPE_VERSION_SINGLE};
use crate::proto::files::FileOffer;
pub use crate::proto::files::{CHUNK_SIZE, MAX_CAPTION, MAX_FILE_SIZE, MAX_NAME};
pub use crate::proto::ids::FileHash;
use crate::proto::ids::{MessageId, PeerId, RoomId};
use crate::proto::node::KIND_FILE;

/// What a file message offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// blake3 of the content: what [`FileRef::Hash`] names.
    pub hash: FileHash,
    /// Sanitised: no path separators, no leading dot, at most
    /// [`MAX_NAME`] bytes.
    pub name: String,
    /// Bytes, at most [`MAX_FILE_SIZE`].
    pub size: u64,
    /// At most [`MAX_CAPTION`] bytes.
    pub caption: Option<String>,
}

impl From<&FileOffer> for FileInfo {
    fn from(offer: &FileOffer) -> Self {
        FileInfo {
            hash: offer.hash,
            name: offer.name.clone(),
            size: offer.size,
            caption: offer.caption.clone(),
        }
    }
}

/// How a shared file stands on this device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    /// Offered; nothing fetched yet.
    Offered,
    /// Being fetched: `have` bytes of it are stored.
    Fetching { have: u64 },
    /// Every byte is here and matched the hash.
    Complete,
    /// The last fetch failed (why, as a sentence); fetching again retries.
    Failed { reason: String },
}

impl FileState {
    /// `offered`, `fetching`, `complete` or `failed` (the JSON word).
    pub fn word(&self) -> &'static str {
        match self {
            FileState::Offered => "offered",
            FileState::Fetching { .. } => "fetching",
            FileState::Complete => "complete",
            FileState::Failed { .. } => "failed",
        }
    }
}

/// One file shared in a room ([`super::api::Reply::Files`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub room: RoomId,
    /// The file message that offered it.
    pub message: MessageId,
    pub author: PeerId,
    /// The message's hybrid-logical-clock timestamp.
    pub timestamp: u64,
    pub info: FileInfo,
    pub state: FileState,
    /// Where the last finished fetch put a copy the user can open (for our
    /// own files: the file we shared), if any.
    pub path: Option<PathBuf>,
}

/// What names a file to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRef {
    /// Any offer of this content we hold.
    Hash(FileHash),
    /// The file message.
    Message(MessageId),
}

impl FileRef {
    /// Parses 64 hex digits as a hash first, else as a message id (both are
    /// 32 bytes: the daemon tries the other when one names nothing).
    pub fn from_hex(text: &str) -> Option<Self> {
        FileHash::from_hex(text.trim()).map(FileRef::Hash)
    }
}

/// The file a stored message offers: `None` for text (and for a file
/// message whose body does not decode, which is counted where it arrives).
pub(crate) fn file_of(envelope: &[u8], body: &[u8]) -> Option<FileOffer> {
    if body.is_empty() || envelope_kind(envelope) != Some(KIND_FILE) {
        return None;
    }
    FileOffer::parse(body).ok()
}

/// What a readable stored message shows as text: a file message its
/// caption ("" without one, a sentence for an offer this version cannot
/// read), anything else its body as UTF-8.
pub(crate) fn message_text(envelope: &[u8], body: &[u8], file: Option<&FileOffer>) -> String {
    match file {
        Some(offer) => offer.caption.clone().unwrap_or_default(),
        None if envelope_kind(envelope) == Some(KIND_FILE) => {
            "(a file offer this version of kith cannot read)".to_owned()
        }
        None => String::from_utf8_lossy(body).into_owned(),
    }
}

/// The kind byte of a stored envelope, read from its header without
/// parsing the rest (every sent and listed message asks), `None` for
/// something too short or of an unknown version. The envelope was checked
/// when it was stored.
pub(crate) fn envelope_kind(envelope: &[u8]) -> Option<u8> {
    // Header: version 1, room 32, epoch 4, sender 32, seq 8, kind 1, ...
    const KIND_AT: usize = 1 + 32 + 4 + 32 + 8;
    if envelope.len() < ENVELOPE_HEADER_LEN
        || !matches!(envelope[0], ENVELOPE_VERSION | ENVELOPE_VERSION_SINGLE)
    {
        return None;
    }
    Some(envelope[KIND_AT])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    use crate::proto::crypto::{
        Envelope, Identity, OutgoingMessage, SenderChain, seal_unsigned, sign_batch,
    };

    #[test]
    fn the_kind_is_read_from_the_header() {
        let identity = Identity::from_secret_bytes(&[1; 32]);
        let chain = crate::proto::crypto::ChainId {
            room: RoomId([2; 32]),
            epoch: 0,
            sender: identity.peer_id(),
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut sender = SenderChain::new(&mut rng, chain);
        for kind in [KIND_FILE, crate::proto::node::KIND_TEXT, 77] {
            let unsigned = seal_unsigned(
                &mut sender,
                OutgoingMessage {
                    kind,
                    timestamp: 5,
                    plaintext: b"x",
                },
            )
            .unwrap();
            let envelope = sign_batch(&identity, vec![unsigned]).pop().unwrap();
            let bytes = envelope.emit();
            assert_eq!(envelope_kind(&bytes), Some(kind));
            assert_eq!(Envelope::parse(&bytes).unwrap().header.kind, kind);
            // "x" is no offer: a file message with it reads as a sentence,
            // never as its raw bytes; any other kind as its text.
            assert_eq!(file_of(&bytes, b"x"), None);
            let text = message_text(&bytes, b"x", None);
            if kind == KIND_FILE {
                assert!(text.contains("cannot read"), "{text}");
            } else {
                assert_eq!(text, "x");
            }
        }
        assert_eq!(envelope_kind(&[2; 10]), None);
        assert_eq!(envelope_kind(&[9; 200]), None);
    }
}
