//! Payloads of the reliable stream between two peers.
//!
//! Everything the node sends through [`crate::proto::reliable`] is a
//! [`Control`]: a version byte, then MessagePack. Variants carry short fixed
//! tags so renaming code never changes the format. Decoding is written for
//! hostile input (the peer is authenticated but may still be buggy or
//! malicious): the size is capped first, the body is decoded from a bounded
//! reader, trailing bytes are rejected.

use serde::{Deserialize, Serialize};

use crate::proto::crypto::SenderKeyDistribution;
use crate::proto::ids::{MessageId, PeerId, RoomId};
use crate::proto::reliable::MAX_MESSAGE;
use crate::proto::wire::decode_exact;

/// Version byte in front of every encoded [`Control`].
pub const CONTROL_VERSION: u8 = 1;

/// One message of the pairwise reliable stream.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// The sender's chain for `room` and `epoch`, starting at `start_seq`.
    /// The sender is the authenticated peer on the other end of the pairwise
    /// session, so it is not repeated here (and cannot be claimed falsely).
    #[serde(rename = "k")]
    SenderKey {
        room: RoomId,
        epoch: u32,
        start_seq: u64,
        #[serde(with = "serde_bytes")]
        chain_key: [u8; 32],
    },
    /// A signed, sealed room envelope (`Envelope::emit`).
    #[serde(rename = "m")]
    Message {
        #[serde(with = "serde_bytes")]
        envelope: Vec<u8>,
    },
    /// The room's admin adds the receiver to a group room: its name, the
    /// epoch the receiver joins in, and every member's public key (the
    /// receiver included), so members who are not yet contacts can be
    /// reached. Only accepted from the admin it names.
    #[serde(rename = "i")]
    RoomInvite {
        room: RoomId,
        name: String,
        epoch: u32,
        #[serde(with = "serde_bytes")]
        admin: [u8; 32],
        members: Vec<MemberKey>,
        /// The epoch's key for multicast frames of the room.
        #[serde(with = "serde_bytes")]
        group_key: [u8; 32],
        /// Who created the room and the nonce it drew: the room id is
        /// derived from them (`RoomFounding::room_id`), which every
        /// receiver checks, so no inviter can choose a room id (say, that
        /// of a direct chat between two others).
        founder: PeerId,
        #[serde(with = "serde_bytes")]
        nonce: [u8; 32],
    },
    /// The admin's new member list for a new epoch (after an invite, a
    /// removal or a leave). A receiver missing from it was removed.
    #[serde(rename = "u")]
    RoomMembers {
        room: RoomId,
        epoch: u32,
        members: Vec<MemberKey>,
        /// The new epoch's key for multicast frames of the room.
        #[serde(with = "serde_bytes")]
        group_key: [u8; 32],
    },
    /// The sender leaves the room.
    #[serde(rename = "l")]
    RoomLeave { room: RoomId },
    /// The admin names who takes over when it leaves: sent after every
    /// invite and member list, for that epoch. (A peer of an older version
    /// does not decode it and drops it, as any unknown control.)
    #[serde(rename = "n")]
    RoomSuccessor {
        room: RoomId,
        epoch: u32,
        successor: PeerId,
    },
    /// One message of a history reconciliation of `room` (`proto::sync`).
    #[serde(rename = "s")]
    Sync {
        room: RoomId,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// One message of the file pull protocol about a file offered in
    /// `room` (`proto::files::FileMessage`, versioned in its first byte).
    #[serde(rename = "x")]
    File {
        room: RoomId,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// A signed envelope of a room we share, by any member: history the
    /// receiver lacked. Its author's signature is what counts.
    #[serde(rename = "f")]
    Forward {
        #[serde(with = "serde_bytes")]
        envelope: Vec<u8>,
    },
    /// Where another member's chain started, so forwarded envelopes of it
    /// can be opened. A member who forwards it could read the chain anyway.
    #[serde(rename = "o")]
    Origin {
        room: RoomId,
        epoch: u32,
        sender: PeerId,
        start_seq: u64,
        #[serde(with = "serde_bytes")]
        chain_key: [u8; 32],
    },
    /// The sender's signed profile record (`proto::profile`, versioned in
    /// its first byte): its display name. At most
    /// [`crate::proto::profile::MAX_RECORD`] bytes.
    #[serde(rename = "p")]
    Profile {
        #[serde(with = "serde_bytes")]
        record: Vec<u8>,
    },
}

/// A member's Ed25519 public key as carried in room control messages.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberKey(#[serde(with = "serde_bytes")] pub [u8; 32]);

impl std::fmt::Debug for MemberKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemberKey({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

/// Most members a group room may have; bounds every member list a peer can
/// make us process.
pub const MAX_ROOM_MEMBERS: usize = 256;

/// Longest room name, in bytes.
pub const MAX_ROOM_NAME: usize = 128;

impl std::fmt::Debug for Control {
    // A derived `Debug` would print the chain key into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Control::SenderKey {
                room,
                epoch,
                start_seq,
                ..
            } => f
                .debug_struct("SenderKey")
                .field("room", room)
                .field("epoch", epoch)
                .field("start_seq", start_seq)
                .finish_non_exhaustive(),
            Control::Message { envelope } => f
                .debug_struct("Message")
                .field("len", &envelope.len())
                .finish(),
            Control::RoomInvite {
                room,
                epoch,
                members,
                ..
            } => f
                .debug_struct("RoomInvite")
                .field("room", room)
                .field("epoch", epoch)
                .field("members", &members.len())
                .finish_non_exhaustive(),
            Control::RoomMembers {
                room,
                epoch,
                members,
                ..
            } => f
                .debug_struct("RoomMembers")
                .field("room", room)
                .field("epoch", epoch)
                .field("members", &members.len())
                .finish_non_exhaustive(),
            Control::RoomLeave { room } => f.debug_struct("RoomLeave").field("room", room).finish(),
            Control::RoomSuccessor {
                room,
                epoch,
                successor,
            } => f
                .debug_struct("RoomSuccessor")
                .field("room", room)
                .field("epoch", epoch)
                .field("successor", successor)
                .finish(),
            Control::Sync { room, payload } => f
                .debug_struct("Sync")
                .field("room", room)
                .field("len", &payload.len())
                .finish(),
            Control::File { room, payload } => f
                .debug_struct("File")
                .field("room", room)
                .field("len", &payload.len())
                .finish(),
            Control::Forward { envelope } => f
                .debug_struct("Forward")
                .field("len", &envelope.len())
                .finish(),
            Control::Origin {
                room,
                epoch,
                sender,
                start_seq,
                ..
            } => f
                .debug_struct("Origin")
                .field("room", room)
                .field("epoch", epoch)
                .field("sender", sender)
                .field("start_seq", start_seq)
                .finish_non_exhaustive(),
            Control::Profile { record } => f
                .debug_struct("Profile")
                .field("len", &record.len())
                .finish(),
        }
    }
}

/// Why bytes are not a [`Control`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("control payload of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("empty control payload")]
    Empty,
    #[error("control version {0} is not supported")]
    UnknownVersion(u8),
    #[error("control payload does not decode")]
    Malformed,
}

impl Control {
    /// Encodes: version byte, then MessagePack.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![CONTROL_VERSION];
        // Serialising into a Vec only fails for types serde cannot express
        // (maps with non-string keys and the like); `Control` has none.
        rmp_serde::encode::write(&mut out, self).expect("Control always serialises into a Vec");
        out
    }

    /// Decodes an untrusted payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, ControlError> {
        if bytes.len() > MAX_MESSAGE {
            return Err(ControlError::TooLarge(bytes.len()));
        }
        let (&version, body) = bytes.split_first().ok_or(ControlError::Empty)?;
        if version != CONTROL_VERSION {
            return Err(ControlError::UnknownVersion(version));
        }
        let control: Control = decode_exact(body).map_err(|_| ControlError::Malformed)?;
        match &control {
            Control::RoomInvite { name, members, .. }
                if name.len() > MAX_ROOM_NAME || members.len() > MAX_ROOM_MEMBERS =>
            {
                Err(ControlError::Malformed)
            }
            Control::RoomMembers { members, .. } if members.len() > MAX_ROOM_MEMBERS => {
                Err(ControlError::Malformed)
            }
            Control::Profile { record } if record.len() > crate::proto::profile::MAX_RECORD => {
                Err(ControlError::Malformed)
            }
            _ => Ok(control),
        }
    }

    /// The id the reliable layer uses for a control message that is not an
    /// envelope (an envelope's id is `Envelope::id`). Domain-separated so it
    /// can never collide with an envelope id.
    pub fn control_id(encoded: &[u8]) -> MessageId {
        MessageId(blake3::derive_key("kith control message id v1", encoded))
    }
}

/// The key control that hands out `distribution`.
pub(super) fn control_from_distribution(distribution: &SenderKeyDistribution) -> Control {
    Control::SenderKey {
        room: distribution.chain.room,
        epoch: distribution.chain.epoch,
        start_seq: distribution.start_seq,
        chain_key: *distribution.chain_key.as_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let key = Control::SenderKey {
            room: RoomId([3; 32]),
            epoch: 0,
            start_seq: 7,
            chain_key: [9; 32],
        };
        let bytes = key.encode();
        assert_eq!(Control::decode(&bytes), Ok(key.clone()));
        assert!(
            !format!("{key:?}").contains("9, 9"),
            "key must not be logged"
        );
        let message = Control::Message {
            envelope: vec![1, 2, 3],
        };
        assert_eq!(Control::decode(&message.encode()), Ok(message));
        let invite = Control::RoomInvite {
            room: RoomId([4; 32]),
            name: "kitchen".to_owned(),
            epoch: 3,
            admin: [5; 32],
            members: vec![MemberKey([5; 32]), MemberKey([6; 32])],
            group_key: [7; 32],
            founder: PeerId([5; 32]),
            nonce: [8; 32],
        };
        assert_eq!(Control::decode(&invite.encode()), Ok(invite));
        let update = Control::RoomMembers {
            room: RoomId([4; 32]),
            epoch: 4,
            members: vec![MemberKey([5; 32])],
            group_key: [7; 32],
        };
        assert_eq!(Control::decode(&update.encode()), Ok(update));
        let successor = Control::RoomSuccessor {
            room: RoomId([4; 32]),
            epoch: 4,
            successor: PeerId([6; 32]),
        };
        assert_eq!(Control::decode(&successor.encode()), Ok(successor));
        let leave = Control::RoomLeave {
            room: RoomId([4; 32]),
        };
        assert_eq!(Control::decode(&leave.encode()), Ok(leave));
        for control in [
            Control::Sync {
                room: RoomId([4; 32]),
                payload: vec![1, 2, 3],
            },
            Control::Forward {
                envelope: vec![4, 5],
            },
            Control::File {
                room: RoomId([4; 32]),
                payload: vec![1; 40_000],
            },
            Control::Profile {
                record: vec![1; 100],
            },
            Control::Origin {
                room: RoomId([4; 32]),
                epoch: 2,
                sender: PeerId([6; 32]),
                start_seq: 9,
                chain_key: [8; 32],
            },
        ] {
            assert_eq!(Control::decode(&control.encode()), Ok(control.clone()));
            assert!(!format!("{control:?}").contains("8, 8"), "no key in logs");
        }
        let crowded = Control::RoomMembers {
            room: RoomId([4; 32]),
            epoch: 4,
            members: vec![MemberKey([5; 32]); MAX_ROOM_MEMBERS + 1],
            group_key: [7; 32],
        };
        assert_eq!(
            Control::decode(&crowded.encode()),
            Err(ControlError::Malformed)
        );
        let long_name = Control::RoomInvite {
            room: RoomId([4; 32]),
            name: "x".repeat(MAX_ROOM_NAME + 1),
            epoch: 0,
            admin: [5; 32],
            members: vec![],
            group_key: [7; 32],
            founder: PeerId([5; 32]),
            nonce: [8; 32],
        };
        assert_eq!(
            Control::decode(&long_name.encode()),
            Err(ControlError::Malformed)
        );
        assert_eq!(Control::decode(&[]), Err(ControlError::Empty));
        let mut future = bytes.clone();
        future[0] = 2;
        assert_eq!(
            Control::decode(&future),
            Err(ControlError::UnknownVersion(2))
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(Control::decode(&trailing), Err(ControlError::Malformed));
        assert_eq!(
            Control::decode(&vec![CONTROL_VERSION; MAX_MESSAGE + 1]),
            Err(ControlError::TooLarge(MAX_MESSAGE + 1))
        );
    }
}
