//! Versioned datagram frames: checked parsing and emitting.
//!
//! Every datagram is `MAGIC (2) ‖ VERSION (1) ‖ body`, where the body is a
//! MessagePack (rmp-serde) encoding of `(from, Frame)`. Parsing is written
//! for hostile input, in this order: the total size is capped at
//! [`MAX_DATAGRAM`] before anything is decoded, the magic and version are
//! checked, the body is decoded from a bounded reader (a length field can
//! never make us allocate more than the datagram holds), trailing bytes are
//! rejected, and every variable-length field is checked against its own cap.
//! No input makes `parse` panic.

use crate::proto::crypto::{HandshakeFinish, HandshakeInit, HandshakeResponse, TAG_LEN};
use crate::proto::ids::{PeerId, RoomId};
use serde::{Deserialize, Serialize};
use std::io::Cursor;

/// First two bytes of every kith datagram.
pub const MAGIC: [u8; 2] = *b"kt";
/// The wire version this build speaks.
pub const VERSION: u8 = 1;
/// Largest datagram kith sends or accepts. 1200 bytes fits any LAN MTU,
/// Wi-Fi multicast included, with room for IPv6 and UDP headers.
pub const MAX_DATAGRAM: usize = 1200;
/// Bytes before the body.
pub const PREAMBLE_LEN: usize = MAGIC.len() + 1;
/// Largest ciphertext a sealed or group frame may carry. Leaves room for the
/// preamble and the MessagePack framing of the other fields.
pub const MAX_FRAME_PAYLOAD: usize = MAX_DATAGRAM - 100;
/// Size of the sealed identity payload in handshake messages 2 and 3:
/// public key, signature, AEAD tag.
pub const HANDSHAKE_SEALED_LEN: usize = 32 + 64 + TAG_LEN;

/// Why bytes are not a valid datagram. Callers drop the datagram and count
/// the reason; the variant names the counter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("datagram is {0} bytes, more than the {MAX_DATAGRAM}-byte limit")]
    TooLarge(usize),
    #[error("datagram is too short to hold a header")]
    Truncated,
    #[error("datagram does not start with the kith magic")]
    BadMagic,
    #[error("wire version {0} is not supported (this build speaks {VERSION})")]
    UnknownVersion(u8),
    #[error("datagram body does not decode: {0}")]
    Malformed(String),
    #[error("datagram has {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("field {field} is {len} bytes, outside its limit")]
    FieldLength { field: &'static str, len: usize },
}

/// One datagram: who claims to send it and what it carries.
///
/// `from` is a claim, not a proof: it lets a receiver drop a blocked peer's
/// traffic before spending any work on it, and pick the session whose keys
/// then authenticate the frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Datagram {
    pub from: PeerId,
    pub frame: Frame,
}

/// The frame types. Each variant has a short, fixed tag on the wire (rmp-serde
/// names enum variants by string), so renaming a variant in code never
/// changes the format. New tags may be added; a peer that does not know a
/// tag drops the datagram and counts it as malformed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// Handshake message 1: the initiator's ephemeral X25519 key.
    #[serde(rename = "hi")]
    HandshakeInit {
        #[serde(with = "serde_bytes")]
        ephemeral: [u8; 32],
    },
    /// Handshake message 2: the responder's ephemeral key and its sealed
    /// identity + signature.
    #[serde(rename = "hr")]
    HandshakeResponse {
        #[serde(with = "serde_bytes")]
        ephemeral: [u8; 32],
        #[serde(with = "serde_bytes")]
        sealed: Vec<u8>,
    },
    /// Handshake message 3: the initiator's sealed identity + signature.
    #[serde(rename = "hf")]
    HandshakeFinish {
        #[serde(with = "serde_bytes")]
        sealed: Vec<u8>,
    },
    /// Pairwise traffic, sealed under the session's key for this direction.
    /// The AEAD's associated data is [`sealed_aad`] of the cleartext fields.
    #[serde(rename = "s")]
    Sealed {
        #[serde(with = "serde_bytes")]
        session: [u8; 16],
        counter: u64,
        #[serde(with = "serde_bytes")]
        ciphertext: Vec<u8>,
    },
    /// Traffic sent once to a room's multicast group. The payload carries
    /// signed envelopes (or pieces of them), which authenticate themselves.
    #[serde(rename = "g")]
    Group {
        room: RoomId,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
}

impl Frame {
    /// The frame's kind as a small number, for counters and logs.
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::HandshakeInit { .. } => FrameKind::HandshakeInit,
            Frame::HandshakeResponse { .. } => FrameKind::HandshakeResponse,
            Frame::HandshakeFinish { .. } => FrameKind::HandshakeFinish,
            Frame::Sealed { .. } => FrameKind::Sealed,
            Frame::Group { .. } => FrameKind::Group,
        }
    }

    /// Checks every variable-length field against its cap.
    fn validate(&self) -> Result<(), WireError> {
        let check = |field: &'static str, len: usize, min: usize, max: usize| {
            if (min..=max).contains(&len) {
                Ok(())
            } else {
                Err(WireError::FieldLength { field, len })
            }
        };
        match self {
            Frame::HandshakeInit { .. } => Ok(()),
            Frame::HandshakeResponse { sealed, .. } | Frame::HandshakeFinish { sealed } => check(
                "sealed",
                sealed.len(),
                HANDSHAKE_SEALED_LEN,
                HANDSHAKE_SEALED_LEN,
            ),
            Frame::Sealed { ciphertext, .. } => {
                check("ciphertext", ciphertext.len(), TAG_LEN, MAX_FRAME_PAYLOAD)
            }
            Frame::Group { payload, .. } => check("payload", payload.len(), 1, MAX_FRAME_PAYLOAD),
        }
    }
}

/// Frame kinds, for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    HandshakeInit,
    HandshakeResponse,
    HandshakeFinish,
    Sealed,
    Group,
}

impl Datagram {
    /// Encodes the datagram. Fails only if a field exceeds its cap, which
    /// means a bug in the caller (it built an oversized frame).
    pub fn emit(&self) -> Result<Vec<u8>, WireError> {
        self.frame.validate()?;
        emit_datagram(MAGIC, VERSION, self)
    }

    /// Parses an untrusted datagram.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let datagram: Datagram = decode_exact(datagram_body(bytes, MAGIC, VERSION)?)?;
        datagram.frame.validate()?;
        Ok(datagram)
    }
}

/// Encodes `value` behind a `magic ‖ version` preamble, refusing anything
/// over [`MAX_DATAGRAM`]. Shared by every datagram family (`kt`, `kr`).
pub fn emit_datagram<T: Serialize>(
    magic: [u8; 2],
    version: u8,
    value: &T,
) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(MAX_DATAGRAM);
    out.extend_from_slice(&magic);
    out.push(version);
    rmp_serde::encode::write(&mut out, value)
        .map_err(|error| WireError::Malformed(error.to_string()))?;
    if out.len() > MAX_DATAGRAM {
        return Err(WireError::TooLarge(out.len()));
    }
    Ok(out)
}

/// Checks an untrusted datagram's size, magic and version, in that order,
/// and returns the body behind the preamble.
pub fn datagram_body(bytes: &[u8], magic: [u8; 2], version: u8) -> Result<&[u8], WireError> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(WireError::TooLarge(bytes.len()));
    }
    if bytes.len() < PREAMBLE_LEN {
        return Err(WireError::Truncated);
    }
    if bytes[..2] != magic {
        return Err(WireError::BadMagic);
    }
    if bytes[2] != version {
        return Err(WireError::UnknownVersion(bytes[2]));
    }
    Ok(&bytes[PREAMBLE_LEN..])
}

/// Deepest nesting of MessagePack arrays and maps [`decode_exact`] follows.
/// No kith message nests deeper than about five levels; the decoder
/// recurses once per level (rmp-serde allows 1024 by default), so an
/// unknown field holding arrays nested hundreds deep could overflow a
/// thread's stack.
pub const MAX_NESTING: usize = 16;

/// Decodes exactly one MessagePack value that fills `body`.
///
/// The `Cursor` reader copies at most the bytes that are really there, so a
/// forged length field cannot trigger a large allocation (unlike decoders
/// that reserve the claimed length up front), and nesting deeper than
/// [`MAX_NESTING`] is an error, so the recursion is bounded too.
pub fn decode_exact<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    let mut decoder = rmp_serde::Deserializer::new(Cursor::new(body));
    decoder.set_max_depth(MAX_NESTING);
    let value =
        T::deserialize(&mut decoder).map_err(|error| WireError::Malformed(error.to_string()))?;
    let used = decoder.position() as usize;
    if used != body.len() {
        return Err(WireError::TrailingBytes(body.len().saturating_sub(used)));
    }
    Ok(value)
}

/// Associated data for a [`Frame::Sealed`]: everything that travels in the
/// clear, so none of it can be changed without the AEAD noticing.
pub fn sealed_aad(from: &PeerId, session: &[u8; 16], counter: u64) -> [u8; 59] {
    let mut aad = [0u8; 59];
    aad[..2].copy_from_slice(&MAGIC);
    aad[2] = VERSION;
    aad[3..35].copy_from_slice(&from.0);
    aad[35..51].copy_from_slice(session);
    aad[51..59].copy_from_slice(&counter.to_be_bytes());
    aad
}

impl From<&HandshakeInit> for Frame {
    fn from(init: &HandshakeInit) -> Self {
        Frame::HandshakeInit {
            ephemeral: init.ephemeral,
        }
    }
}

impl From<&HandshakeResponse> for Frame {
    fn from(response: &HandshakeResponse) -> Self {
        Frame::HandshakeResponse {
            ephemeral: response.ephemeral,
            sealed: response.sealed.clone(),
        }
    }
}

impl From<&HandshakeFinish> for Frame {
    fn from(finish: &HandshakeFinish) -> Self {
        Frame::HandshakeFinish {
            sealed: finish.sealed.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(byte: u8) -> PeerId {
        PeerId([byte; 32])
    }

    #[test]
    fn handshake_init_is_small() {
        let datagram = Datagram {
            from: peer(1),
            frame: Frame::HandshakeInit { ephemeral: [7; 32] },
        };
        let bytes = datagram.emit().expect("valid frame");
        // Ids and keys are encoded as binary, not as arrays of integers.
        assert!(bytes.len() < 80, "{} bytes", bytes.len());
        assert_eq!(Datagram::parse(&bytes), Ok(datagram));
    }

    #[test]
    fn rejects_preamble_errors() {
        let good = Datagram {
            from: peer(1),
            frame: Frame::HandshakeInit { ephemeral: [7; 32] },
        }
        .emit()
        .expect("valid frame");
        assert_eq!(Datagram::parse(&good[..2]), Err(WireError::Truncated));
        let mut bad_magic = good.clone();
        bad_magic[0] ^= 1;
        assert_eq!(Datagram::parse(&bad_magic), Err(WireError::BadMagic));
        let mut future = good.clone();
        future[2] = 2;
        assert_eq!(Datagram::parse(&future), Err(WireError::UnknownVersion(2)));
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(Datagram::parse(&trailing), Err(WireError::TrailingBytes(1)));
        let huge = vec![0u8; MAX_DATAGRAM + 1];
        assert_eq!(
            Datagram::parse(&huge),
            Err(WireError::TooLarge(MAX_DATAGRAM + 1))
        );
    }

    #[test]
    fn oversized_fields_are_rejected_both_ways() {
        let datagram = Datagram {
            from: peer(1),
            frame: Frame::Sealed {
                session: [0; 16],
                counter: 0,
                ciphertext: vec![0; MAX_FRAME_PAYLOAD + 1],
            },
        };
        assert!(matches!(
            datagram.emit(),
            Err(WireError::FieldLength {
                field: "ciphertext",
                ..
            })
        ));
        let short = Datagram {
            from: peer(1),
            frame: Frame::HandshakeFinish { sealed: vec![1; 5] },
        };
        assert!(matches!(
            short.emit(),
            Err(WireError::FieldLength {
                field: "sealed",
                ..
            })
        ));
    }

    #[test]
    fn forged_length_does_not_allocate_or_panic() {
        // A bin32 header claiming 4 GiB of bytes, followed by nothing.
        let mut bytes = MAGIC.to_vec();
        bytes.push(VERSION);
        bytes.extend_from_slice(&[0x92, 0xc6, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            Datagram::parse(&bytes),
            Err(WireError::Malformed(_))
        ));
    }
}
