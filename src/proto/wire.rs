//! Versioned datagram frames: checked parsing and emitting.
//!
//! Every datagram is `MAGIC (2) ‖ VERSION (1) ‖ kind (1) ‖ fields`, each
//! frame kind a fixed binary layout (smoltcp style) so that a datagram's
//! size is an exact function of what it carries, which padding needs:
//!
//! | kind | frame | fields |
//! | --- | --- | --- |
//! | `i` | `HandshakeInit` | from (32) ‖ ephemeral (32) |
//! | `r` | `HandshakeResponse` | from (32) ‖ ephemeral (32) ‖ sealed (112) |
//! | `f` | `HandshakeFinish` | from (32) ‖ sealed (112) |
//! | `s` | `Sealed` | session (16) ‖ counter (8, BE) ‖ ciphertext |
//! | `g` | `Group` | tag (16) ‖ payload (nonce ‖ ciphertext) |
//!
//! Only handshake frames name their sender (`from`): a sealed frame's
//! session already tells the receiver who sent it, and a group frame's
//! sender travels inside its ciphertext.
//!
//! Parsing is written for hostile input, in this order: the total size is
//! capped at [`MAX_DATAGRAM`] before anything is read, the magic and
//! version are checked, then the kind, and every field is read at its
//! fixed offset; a fixed-size frame with extra bytes and a variable field
//! outside its cap are both rejected, so every accepted datagram has
//! exactly one encoding. No input makes `parse` panic.
//!
//! The plaintext inside `Sealed` and `Group` frames is padded ([`pad`]) so
//! the datagram fills one of a few [`SIZE_BUCKETS`]: an observer learns
//! the bucket, not the message's length.

use crate::proto::crypto::{HandshakeFinish, HandshakeInit, HandshakeResponse, TAG_LEN};
use crate::proto::ids::PeerId;
use serde::Serialize;
use std::io::Cursor;

/// First two bytes of every kith datagram.
pub const MAGIC: [u8; 2] = *b"kt";
/// The wire version this build speaks. Version 2: fixed binary layouts
/// and padded sealed plaintexts.
pub const VERSION: u8 = 2;
/// Largest datagram kith sends or accepts. 1200 bytes fits any LAN MTU,
/// Wi-Fi multicast included, with room for IPv6 and UDP headers.
pub const MAX_DATAGRAM: usize = 1200;
/// Bytes before the body.
pub const PREAMBLE_LEN: usize = MAGIC.len() + 1;
/// Largest packet a sealed or group frame carries before padding (the
/// reliable layer's packets stay below it), so that padded and sealed it
/// still fits the largest bucket.
pub const MAX_FRAME_PAYLOAD: usize = MAX_DATAGRAM - 100;
/// Bytes of a [`Frame::Sealed`] datagram before its ciphertext.
pub const SEALED_HEADER_LEN: usize = PREAMBLE_LEN + 1 + 16 + 8;
/// Largest ciphertext of a [`Frame::Sealed`]: what fills a datagram.
pub const MAX_SEALED_CIPHERTEXT: usize = MAX_DATAGRAM - SEALED_HEADER_LEN;
/// Bytes of a [`Frame::Group`] datagram before its payload.
pub const GROUP_HEADER_LEN: usize = PREAMBLE_LEN + 1 + 16;
/// Shortest payload of a [`Frame::Group`]: a nonce and an AEAD tag.
pub const MIN_GROUP_PAYLOAD: usize = 24 + TAG_LEN;
/// Largest payload of a [`Frame::Group`]: what fills a datagram.
pub const MAX_GROUP_PAYLOAD: usize = MAX_DATAGRAM - GROUP_HEADER_LEN;
/// Size of the sealed identity payload in handshake messages 2 and 3:
/// public key, signature, AEAD tag.
pub const HANDSHAKE_SEALED_LEN: usize = 32 + 64 + TAG_LEN;
/// Datagram sizes that sealed and group frames are padded to. A frame
/// whose content needs more than one bucket takes the next; the last is
/// the datagram cap, which nothing exceeds.
pub const SIZE_BUCKETS: [usize; 5] = [128, 256, 512, 1024, MAX_DATAGRAM];
/// Bytes of a [`Frame::Sealed`] datagram besides its plaintext: preamble,
/// kind, session, counter and the AEAD tag.
pub const SEALED_OVERHEAD: usize = SEALED_HEADER_LEN + TAG_LEN;
/// Bytes of a [`Frame::Group`] datagram besides its plaintext (the sender
/// and the packet): preamble, kind, tag, then in the payload the nonce and
/// the AEAD tag.
pub const GROUP_OVERHEAD: usize = GROUP_HEADER_LEN + MIN_GROUP_PAYLOAD;

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
    #[error("padding of a sealed plaintext is not canonical")]
    BadPadding,
}

/// One datagram: what it carries and, for a handshake, who claims to send
/// it.
///
/// `from` is a claim, not a proof: it lets a receiver drop a blocked peer's
/// handshake before spending any work on it, and pick the handshake whose
/// keys then authenticate the sender. It is present exactly on handshake
/// frames ([`Frame::names_sender`]); sealed and group frames leave it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub from: Option<PeerId>,
    pub frame: Frame,
}

/// The frame types, each with a one-byte kind on the wire. A peer that
/// does not know a kind drops the datagram and counts it as malformed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Handshake message 1: the initiator's ephemeral X25519 key.
    HandshakeInit { ephemeral: [u8; 32] },
    /// Handshake message 2: the responder's ephemeral key and its sealed
    /// identity + signature.
    HandshakeResponse {
        ephemeral: [u8; 32],
        sealed: Vec<u8>,
    },
    /// Handshake message 3: the initiator's sealed identity + signature.
    HandshakeFinish { sealed: Vec<u8> },
    /// Pairwise traffic, sealed under the session's key for this direction.
    /// The AEAD's associated data is [`sealed_aad`] of the cleartext fields;
    /// the plaintext is [`pad`]ded.
    Sealed {
        session: [u8; 16],
        counter: u64,
        ciphertext: Vec<u8>,
    },
    /// Traffic sent once to a room's multicast group, sealed under the
    /// room's epoch key. The tag lets members find the room and epoch
    /// without naming them (`proto::node::group_tag`); the payload is a
    /// nonce and the ciphertext of a padded reliable packet.
    Group { tag: [u8; 16], payload: Vec<u8> },
}

const KIND_INIT: u8 = b'i';
const KIND_RESPONSE: u8 = b'r';
const KIND_FINISH: u8 = b'f';
const KIND_SEALED: u8 = b's';
const KIND_GROUP: u8 = b'g';

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

    /// Whether the frame names its sender in the clear: handshake frames
    /// do; a sealed frame's session and a group frame's ciphertext say it.
    pub fn names_sender(&self) -> bool {
        matches!(
            self,
            Frame::HandshakeInit { .. }
                | Frame::HandshakeResponse { .. }
                | Frame::HandshakeFinish { .. }
        )
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
            Frame::Sealed { ciphertext, .. } => check(
                "ciphertext",
                ciphertext.len(),
                TAG_LEN,
                MAX_SEALED_CIPHERTEXT,
            ),
            Frame::Group { payload, .. } => check(
                "payload",
                payload.len(),
                MIN_GROUP_PAYLOAD,
                MAX_GROUP_PAYLOAD,
            ),
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
        if self.from.is_some() != self.frame.names_sender() {
            return Err(WireError::Malformed("from on the wrong frame kind".into()));
        }
        let mut out = Vec::with_capacity(MAX_DATAGRAM);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        let kind = match &self.frame {
            Frame::HandshakeInit { .. } => KIND_INIT,
            Frame::HandshakeResponse { .. } => KIND_RESPONSE,
            Frame::HandshakeFinish { .. } => KIND_FINISH,
            Frame::Sealed { .. } => KIND_SEALED,
            Frame::Group { .. } => KIND_GROUP,
        };
        out.push(kind);
        if let Some(from) = &self.from {
            out.extend_from_slice(&from.0);
        }
        match &self.frame {
            Frame::HandshakeInit { ephemeral } => out.extend_from_slice(ephemeral),
            Frame::HandshakeResponse { ephemeral, sealed } => {
                out.extend_from_slice(ephemeral);
                out.extend_from_slice(sealed);
            }
            Frame::HandshakeFinish { sealed } => out.extend_from_slice(sealed),
            Frame::Sealed {
                session,
                counter,
                ciphertext,
            } => {
                out.extend_from_slice(session);
                out.extend_from_slice(&counter.to_be_bytes());
                out.extend_from_slice(ciphertext);
            }
            Frame::Group { tag, payload } => {
                out.extend_from_slice(tag);
                out.extend_from_slice(payload);
            }
        }
        if out.len() > MAX_DATAGRAM {
            return Err(WireError::TooLarge(out.len()));
        }
        Ok(out)
    }

    /// Parses an untrusted datagram.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let body = datagram_body(bytes, MAGIC, VERSION)?;
        let (&kind, rest) = body.split_first().ok_or(WireError::Truncated)?;
        let (from, rest) = match kind {
            KIND_INIT | KIND_RESPONSE | KIND_FINISH => {
                let (from, rest) = take::<32>(rest)?;
                (Some(PeerId(from)), rest)
            }
            _ => (None, rest),
        };
        let frame = match kind {
            KIND_INIT => {
                let (ephemeral, rest) = take::<32>(rest)?;
                no_trailing(rest)?;
                Frame::HandshakeInit { ephemeral }
            }
            KIND_RESPONSE => {
                let (ephemeral, rest) = take::<32>(rest)?;
                let (sealed, rest) = take::<HANDSHAKE_SEALED_LEN>(rest)?;
                no_trailing(rest)?;
                Frame::HandshakeResponse {
                    ephemeral,
                    sealed: sealed.to_vec(),
                }
            }
            KIND_FINISH => {
                let (sealed, rest) = take::<HANDSHAKE_SEALED_LEN>(rest)?;
                no_trailing(rest)?;
                Frame::HandshakeFinish {
                    sealed: sealed.to_vec(),
                }
            }
            KIND_SEALED => {
                let (session, rest) = take::<16>(rest)?;
                let (counter, rest) = take::<8>(rest)?;
                Frame::Sealed {
                    session,
                    counter: u64::from_be_bytes(counter),
                    ciphertext: rest.to_vec(),
                }
            }
            KIND_GROUP => {
                let (tag, rest) = take::<16>(rest)?;
                Frame::Group {
                    tag,
                    payload: rest.to_vec(),
                }
            }
            other => return Err(WireError::Malformed(format!("unknown frame kind {other}"))),
        };
        frame.validate()?;
        Ok(Datagram { from, frame })
    }
}

/// Splits a fixed-size field off the front of untrusted bytes.
fn take<const N: usize>(bytes: &[u8]) -> Result<([u8; N], &[u8]), WireError> {
    let (field, rest) = bytes.split_first_chunk::<N>().ok_or(WireError::Truncated)?;
    Ok((*field, rest))
}

fn no_trailing(rest: &[u8]) -> Result<(), WireError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(WireError::TrailingBytes(rest.len()))
    }
}

/// The bucket a datagram of `len` bytes is padded to: the smallest of
/// [`SIZE_BUCKETS`] that holds it (`len` itself past the last, which
/// emitting then refuses).
pub fn bucket(len: usize) -> usize {
    SIZE_BUCKETS
        .iter()
        .copied()
        .find(|&bucket| bucket >= len)
        .unwrap_or(len)
}

/// Pads a plaintext that will travel in a frame with `overhead` other
/// bytes ([`SEALED_OVERHEAD`], [`GROUP_OVERHEAD`]) so the datagram fills
/// its [`bucket`]: `plaintext ‖ 0x80 ‖ 0x00…` (ISO/IEC 7816-4), at least
/// one byte longer than the plaintext. [`unpad`] undoes it.
pub fn pad(plaintext: &[u8], overhead: usize) -> Vec<u8> {
    let least = plaintext.len() + 1;
    let target = bucket(overhead + least).saturating_sub(overhead).max(least);
    let mut padded = Vec::with_capacity(target);
    padded.extend_from_slice(plaintext);
    padded.push(0x80);
    padded.resize(target, 0);
    padded
}

/// Strips [`pad`]'s padding from an authenticated plaintext. Only its own
/// output is accepted: the last non-zero byte must be the `0x80` marker.
pub fn unpad(padded: &[u8]) -> Result<&[u8], WireError> {
    let marker = padded
        .iter()
        .rposition(|&byte| byte != 0)
        .ok_or(WireError::BadPadding)?;
    if padded[marker] != 0x80 {
        return Err(WireError::BadPadding);
    }
    Ok(&padded[..marker])
}

/// Encodes `value` behind a `magic ‖ version` preamble, refusing anything
/// over [`MAX_DATAGRAM`]. Used by the MessagePack datagram families (`kr`).
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
/// clear, so none of it can be changed without the AEAD noticing, and the
/// sender, which does not travel but both sides know.
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
            from: Some(peer(1)),
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
            from: Some(peer(1)),
            frame: Frame::HandshakeInit { ephemeral: [7; 32] },
        }
        .emit()
        .expect("valid frame");
        assert_eq!(Datagram::parse(&good[..2]), Err(WireError::Truncated));
        let mut bad_magic = good.clone();
        bad_magic[0] ^= 1;
        assert_eq!(Datagram::parse(&bad_magic), Err(WireError::BadMagic));
        let mut future = good.clone();
        future[2] = VERSION + 1;
        assert_eq!(
            Datagram::parse(&future),
            Err(WireError::UnknownVersion(VERSION + 1))
        );
        let mut old = good.clone();
        old[2] = 1;
        assert_eq!(Datagram::parse(&old), Err(WireError::UnknownVersion(1)));
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
            from: None,
            frame: Frame::Sealed {
                session: [0; 16],
                counter: 0,
                ciphertext: vec![0; MAX_SEALED_CIPHERTEXT + 1],
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
            from: Some(peer(1)),
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
    fn only_handshakes_name_their_sender() {
        let sealed = Frame::Sealed {
            session: [1; 16],
            counter: 9,
            ciphertext: vec![2; 40],
        };
        let named = Datagram {
            from: Some(peer(7)),
            frame: sealed.clone(),
        };
        assert!(named.emit().is_err());
        let bytes = Datagram {
            from: None,
            frame: sealed,
        }
        .emit()
        .expect("valid");
        assert!(!bytes.windows(32).any(|w| w == [7; 32]));
        let init = Datagram {
            from: None,
            frame: Frame::HandshakeInit { ephemeral: [3; 32] },
        };
        assert!(init.emit().is_err());
    }

    #[test]
    fn unknown_kinds_and_short_frames_are_rejected() {
        let mut bytes = MAGIC.to_vec();
        bytes.push(VERSION);
        bytes.push(b'z');
        bytes.extend_from_slice(&[0; 64]);
        assert!(matches!(
            Datagram::parse(&bytes),
            Err(WireError::Malformed(_))
        ));
        let good = Datagram {
            from: Some(peer(1)),
            frame: Frame::HandshakeFinish {
                sealed: vec![3; HANDSHAKE_SEALED_LEN],
            },
        }
        .emit()
        .expect("valid frame");
        for cut in PREAMBLE_LEN..good.len() {
            assert!(Datagram::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn padding_fills_a_bucket_and_round_trips() {
        for len in [0usize, 1, 40, 51, 52, 53, 180, 435, 436, 940, 1100] {
            let plaintext: Vec<u8> = (0..len).map(|i| (i % 7) as u8).collect();
            let padded = pad(&plaintext, SEALED_OVERHEAD);
            let datagram = SEALED_OVERHEAD + padded.len();
            assert!(SIZE_BUCKETS.contains(&datagram), "{len}: {datagram}");
            assert!(padded.len() > len);
            assert_eq!(unpad(&padded), Ok(plaintext.as_slice()));
        }
        // Trailing zeros of the plaintext itself survive.
        assert_eq!(unpad(&pad(&[1, 0, 0], 0)), Ok(&[1u8, 0, 0][..]));
    }

    #[test]
    fn padding_that_pad_never_makes_is_rejected() {
        assert_eq!(unpad(&[]), Err(WireError::BadPadding));
        assert_eq!(unpad(&[0, 0, 0]), Err(WireError::BadPadding));
        assert_eq!(unpad(&[1, 2, 0x7f, 0]), Err(WireError::BadPadding));
        assert_eq!(unpad(&[1, 2, 0x80, 0]), Ok(&[1u8, 2][..]));
    }
}
