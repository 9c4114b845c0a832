//! Errors of the node's commands.

use super::{MAX_ROOM_MEMBERS, MAX_ROOM_NAME, MAX_TEXT};
use crate::proto::crypto::CryptoError;
use crate::proto::ids::{PeerId, RoomId};
use crate::proto::reliable::SendError;

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    #[error("{0:?} is not a contact")]
    UnknownPeer(PeerId),
    #[error("{0:?} is blocked")]
    Blocked(PeerId),
    #[error("message of {0} bytes exceeds the {MAX_TEXT}-byte limit")]
    TooLarge(usize),
    #[error("too many messages are waiting; retry once earlier ones are delivered")]
    Backpressure,
    #[error("cannot seal the message: {0}")]
    Crypto(#[from] CryptoError),
    #[error("no room {0:?}")]
    UnknownRoom(RoomId),
    #[error("not an envelope of ours")]
    NotOurEnvelope,
    #[error("the chain the envelope was sealed on is not known")]
    UnknownChain,
    #[error("only the room's admin can change its members")]
    NotAdmin,
    #[error(
        "this room was kept by an older version of kith and cannot take new members; create a new room"
    )]
    NoFounding,
    #[error("the message is from before {0:?} was in the room")]
    BeforeJoin(PeerId),
    #[error("{0:?} is not a member of the room")]
    NotMember(PeerId),
    #[error("{0:?} is already a member of the room")]
    AlreadyMember(PeerId),
    #[error("a room has at most {MAX_ROOM_MEMBERS} members")]
    TooManyMembers,
    #[error("a room name has at most {MAX_ROOM_NAME} bytes")]
    NameTooLong,
    /// A member of a restored room whose key is not known yet: the admin
    /// cannot hand out a member list until it is learned again.
    #[error("the key of member {0:?} is not known yet; try again once it is back online")]
    MemberKeyUnknown(PeerId),
    /// A record the shell kept (e.g. an invitation) does not decode or
    /// does not check out.
    #[error("a stored record is damaged")]
    BadRecord,
    /// A display name that is refused (see `proto::profile::check_name`).
    #[error(transparent)]
    Name(#[from] crate::proto::profile::NameError),
}

pub(super) fn send_error(error: SendError) -> NodeError {
    match error {
        SendError::TooLarge(len) => NodeError::TooLarge(len),
        // Every contact has its direct room, so `UnknownRoom` cannot happen;
        // mapping it to backpressure keeps the caller's handling simple.
        SendError::UnknownRoom | SendError::Backpressure => NodeError::Backpressure,
    }
}
