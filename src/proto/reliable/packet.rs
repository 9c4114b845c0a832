//! The wire format: [`Packet`] and its checked decoding, with the limits
//! every field is held to.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::proto::ids::{MessageId, RoomId};
use crate::proto::wire::decode_exact;

/// Version byte in front of every encoded packet.
pub const VERSION: u8 = 1;
/// Largest encoded packet. A datagram is at most 1200 bytes and the pairwise
/// encryption layer needs up to 100 bytes of its own.
pub const MAX_PACKET: usize = 1100;
/// Largest fragment payload, chosen so a worst-case `Data` packet still fits
/// [`MAX_PACKET`] (a unit test checks this).
pub const MAX_CHUNK: usize = 960;
/// Largest message payload the layer accepts.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Most fragments a message can have.
pub const MAX_FRAGS: u16 = MAX_MESSAGE.div_ceil(MAX_CHUNK) as u16;
/// Most ranges in one ACK or NACK.
pub const MAX_RANGES: usize = 16;
/// Sequence numbers on the wire stay below this, so sums of a sequence number
/// and any window size can never overflow a `u64`.
pub const MAX_SEQ: u64 = 1 << 62;

/// One packet of the reliable layer. Ranges are half-open `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Packet {
    /// One fragment of a message.
    Data {
        room: RoomId,
        /// Random per sender run, so a restarted sender is not taken for a
        /// replay of its old sequence numbers.
        session: u64,
        seq: u64,
        /// Everything below `low` is no longer available from the sender;
        /// the receiver skips it (it was stored, or handed to sync).
        low: u64,
        /// Index of this fragment in its message, `< frags`.
        frag: u16,
        frags: u16,
        id: MessageId,
        #[serde(with = "serde_bytes")]
        chunk: Vec<u8>,
        /// The sender has nothing older in flight (a lone message, e.g. a
        /// chat reply): acknowledge it as soon as it is stored rather than
        /// at the paced time, so an idle conversation gets its "delivered"
        /// at once while a busy stream keeps one ACK per interval.
        ack_now: bool,
    },
    /// Receiver → sender acknowledgement for the sender's stream in a room.
    Ack {
        room: RoomId,
        /// The session of the sender stream being acknowledged.
        session: u64,
        /// The acknowledging node's own session: a restarted receiver starts
        /// its `ack_no` over, and the sender must not take that for stale.
        receiver_session: u64,
        /// Increases with every ACK of this stream, so a reordered old ACK is
        /// recognised and ignored.
        ack_no: u64,
        /// Every packet below this arrived.
        received: u64,
        /// Further packets that arrived, above `received`.
        ranges: Vec<(u64, u64)>,
        /// Every message below this was committed to the receiver's store.
        stored: u64,
        /// Largest sequence number that arrived, for RTT sampling.
        largest: Option<u64>,
        /// How long the receiver held the ACK after `largest` arrived.
        delay_us: u32,
        /// Packets of this stream that arrived via the multicast group.
        mcast_rx: u64,
        /// Messages below `stored` that the receiver did *not* store (it
        /// refused them: see [`Reliable::refuse`](super::Reliable::refuse)), by the sequence number
        /// of their last fragment. Left out of the encoding when empty, so
        /// such an ACK reads as it always did.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        refused: Vec<(u64, u64)>,
    },
    /// Receiver → sender: these packets are missing, please resend them.
    Nack {
        room: RoomId,
        session: u64,
        missing: Vec<(u64, u64)>,
        /// As in `Ack`: evidence for the multicast fall-back.
        mcast_rx: u64,
    },
    /// Sender → group (or one member): the state of the sender's stream.
    Heartbeat {
        room: RoomId,
        session: u64,
        low: u64,
        /// The next sequence number the sender will use.
        next: u64,
    },
}

/// The kind of a packet, for counting without decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PacketKind {
    Data,
    Ack,
    Nack,
    Heartbeat,
}

impl PacketKind {
    /// All kinds, in a fixed order (for tables).
    pub const ALL: [PacketKind; 4] = [Self::Data, Self::Ack, Self::Nack, Self::Heartbeat];

    /// Position in [`PacketKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why a datagram was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PacketError {
    #[error("datagram of {0} bytes exceeds the {MAX_PACKET}-byte limit")]
    TooLarge(usize),
    #[error("empty datagram")]
    Empty,
    #[error("unknown packet version {0}")]
    Version(u8),
    #[error("malformed packet")]
    Malformed,
    #[error("packet field out of range: {0}")]
    Invalid(&'static str),
    #[error("packet for a room this node is not in")]
    UnknownRoom,
    #[error("packet from a peer that is not a member of the room")]
    NotMember,
    #[error("group frame carrying a packet of another room")]
    WrongRoom,
    #[error("group frame carrying an acknowledgement or a NACK")]
    FeedbackInGroup,
}

impl Packet {
    /// The packet's kind.
    pub fn kind(&self) -> PacketKind {
        match self {
            Packet::Data { .. } => PacketKind::Data,
            Packet::Ack { .. } => PacketKind::Ack,
            Packet::Nack { .. } => PacketKind::Nack,
            Packet::Heartbeat { .. } => PacketKind::Heartbeat,
        }
    }

    /// Encodes the packet: version byte, then MessagePack.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(VERSION);
        // Serialising into a Vec only fails for types serde cannot express
        // (maps with non-string keys and the like); `Packet` has none.
        rmp_serde::encode::write(&mut out, self).expect("Packet always serialises into a Vec");
        out
    }

    /// Decodes and validates a datagram. The size is checked before any
    /// parsing, the body must be exactly one value (no trailing bytes), and
    /// every count and sequence field is range-checked after.
    pub fn decode(bytes: &[u8]) -> Result<Packet, PacketError> {
        if bytes.len() > MAX_PACKET {
            return Err(PacketError::TooLarge(bytes.len()));
        }
        let (&version, body) = bytes.split_first().ok_or(PacketError::Empty)?;
        if version != VERSION {
            return Err(PacketError::Version(version));
        }
        // Exactly one value filling the body: trailing bytes would give one
        // packet many encodings (and carry unauthenticated data along).
        let packet: Packet = decode_exact(body).map_err(|_| PacketError::Malformed)?;
        packet.validate()?;
        Ok(packet)
    }

    pub(super) fn validate(&self) -> Result<(), PacketError> {
        use PacketError::Invalid;
        match self {
            Packet::Data {
                seq,
                low,
                frag,
                frags,
                chunk,
                ..
            } => {
                if *seq >= MAX_SEQ || low > seq {
                    return Err(Invalid("seq"));
                }
                if *frags == 0 || *frags > MAX_FRAGS || frag >= frags || u64::from(*frag) > *seq {
                    return Err(Invalid("frag"));
                }
                if chunk.len() > MAX_CHUNK {
                    return Err(Invalid("chunk"));
                }
            }
            Packet::Ack {
                received,
                ranges,
                stored,
                largest,
                refused,
                ..
            } => {
                if *received > MAX_SEQ || stored > received {
                    return Err(Invalid("ack cursor"));
                }
                if largest.is_some_and(|l| l >= MAX_SEQ) {
                    return Err(Invalid("largest"));
                }
                check_ranges(ranges)?;
                check_ranges(refused)?;
            }
            Packet::Nack { missing, .. } => check_ranges(missing)?,
            Packet::Heartbeat { low, next, .. } => {
                if *next > MAX_SEQ || low > next {
                    return Err(Invalid("heartbeat"));
                }
            }
        }
        Ok(())
    }
}

fn check_ranges(ranges: &[(u64, u64)]) -> Result<(), PacketError> {
    if ranges.len() > MAX_RANGES {
        return Err(PacketError::Invalid("too many ranges"));
    }
    if ranges
        .iter()
        .any(|&(start, end)| start >= end || end > MAX_SEQ)
    {
        return Err(PacketError::Invalid("range"));
    }
    Ok(())
}
