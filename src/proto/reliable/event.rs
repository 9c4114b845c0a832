//! What the state machine tells the application: events, send errors and
//! a member's fan-out.

use thiserror::Error;

use super::packet::MAX_MESSAGE;
use crate::proto::ids::{MessageId, PeerId, RoomId};

/// How a sender reaches one room member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FanOut {
    /// The member hears the room's multicast group.
    Multicast,
    /// The member gets its own unicast copy of every packet.
    Unicast,
}

/// Something the application must know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete message, in per-sender order, never twice. Store it, then
    /// call [`Reliable::confirm_stored`](super::Reliable::confirm_stored) with `seq`.
    Received {
        room: RoomId,
        from: PeerId,
        /// Handle for [`Reliable::confirm_stored`](super::Reliable::confirm_stored).
        seq: u64,
        id: MessageId,
        payload: Vec<u8>,
    },
    /// `to` confirmed that it committed the message to its store.
    Delivered {
        room: RoomId,
        to: PeerId,
        id: MessageId,
    },
    /// `to` received the message but did not store it (it refused it: it
    /// failed a check there). It is no longer retransmitted; the
    /// application decides whether to send it again later.
    Refused {
        room: RoomId,
        to: PeerId,
        id: MessageId,
    },
    /// The queue had to make room and `to`, unreachable, still lacked this
    /// message: it is no longer retransmitted here; sync must carry it.
    Undelivered {
        room: RoomId,
        to: PeerId,
        id: MessageId,
    },
    /// `max_retries` timeouts passed without an answer. Its messages stay
    /// queued and it keeps being probed at the capped RTO.
    PeerUnreachable { peer: PeerId },
    /// A peer reported unreachable was heard again; delivery resumes.
    PeerReachable { peer: PeerId },
    /// A member's fan-out changed (multicast fall-back or recovery).
    FanOutChanged {
        room: RoomId,
        peer: PeerId,
        fan_out: FanOut,
    },
}

/// Why [`Reliable::send`](super::Reliable::send) refused a message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SendError {
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE}-byte limit")]
    TooLarge(usize),
    #[error("not a member of this room")]
    UnknownRoom,
    #[error("send queue full; retry once earlier messages are delivered")]
    Backpressure,
}
