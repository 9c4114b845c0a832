//! What the node hands the shell: events, datagrams to send, and who a
//! datagram came from.

use crate::proto::crypto::{ChainId, PublicIdentity};
use crate::proto::ids::{MessageId, PeerId, RoomId};
use crate::proto::reliable::Destination;

/// Who sent a datagram that [`Node::handle_datagram`] accepted, and whether
/// that is proven, so the shell never parses an untrusted datagram a second
/// time to learn it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Heard {
    /// The datagram proved it came from this peer: a sealed frame that
    /// opened under its session, or a handshake message that verified. The
    /// shell may learn the datagram's source address for the peer.
    Proven(PeerId),
    /// The datagram only names this peer as its sender (a handshake message
    /// 1, a group frame): the shell may answer to its source address, and
    /// must not learn that address for the peer.
    Claimed(PeerId),
}

impl Heard {
    /// The peer the datagram came from, proven or claimed.
    pub fn peer(self) -> PeerId {
        match self {
            Heard::Proven(peer) | Heard::Claimed(peer) => peer,
        }
    }

    /// The peer, if the datagram proved it.
    pub fn proven(self) -> Option<PeerId> {
        match self {
            Heard::Proven(peer) => Some(peer),
            Heard::Claimed(_) => None,
        }
    }
}

/// Hands a received message back to [`Node::confirm_stored`] once the shell
/// committed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Receipt {
    pub(super) room: RoomId,
    pub(super) from: PeerId,
    pub(super) seq: u64,
}

/// Something the shell must know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A message for the store. Commit it (the envelope is what sync will
    /// forward later), then call [`Node::confirm_stored`] with `receipt`.
    MessageReceived {
        room: RoomId,
        from: PeerId,
        id: MessageId,
        /// Hybrid-logical-clock timestamp the sender put in the envelope.
        timestamp: u64,
        /// Envelope kind, e.g. [`KIND_TEXT`].
        kind: u8,
        /// Decrypted content (UTF-8 text for [`KIND_TEXT`]).
        body: Vec<u8>,
        /// The signed envelope as received.
        envelope: Vec<u8>,
        receipt: Receipt,
    },
    /// An authentic message (the reliable stream of its sender delivered it)
    /// whose key we do not hold, e.g. because this node lost its receiver
    /// chains in a restart. Its signature verified. Store the envelope as
    /// not yet readable (sync or a key re-share can open it later; the id
    /// may already be in the store, so insert idempotently), then call
    /// [`Node::confirm_stored`].
    Undecryptable {
        room: RoomId,
        from: PeerId,
        id: MessageId,
        timestamp: u64,
        envelope: Vec<u8>,
        receipt: Receipt,
    },
    /// We hold the key of `chain` now (its author's key arrived): messages
    /// of it the shell stored unreadable (see
    /// [`NodeEvent::Undecryptable`]) may open ([`Node::open_stored`]).
    ChainKnown { chain: ChainId },
    /// `to` committed our message `id` to its store.
    Delivered {
        room: RoomId,
        to: PeerId,
        id: MessageId,
    },
    /// `to` received our message `id` but refused to store it (it failed a
    /// check there, counted in its drop counters). Not delivered: the
    /// shell keeps it and may send it again.
    Refused {
        room: RoomId,
        to: PeerId,
        id: MessageId,
    },
    /// The reliable layer had to give up on retransmitting `id` to the
    /// unreachable `to` (set reconciliation must carry it later).
    Undelivered {
        room: RoomId,
        to: PeerId,
        id: MessageId,
    },
    /// No answer from `peer` for a while; its messages stay queued.
    PeerUnreachable { peer: PeerId },
    /// `peer` answered again; queued messages are going out.
    PeerReachable { peer: PeerId },
    /// `peer` said, over our authenticated session, that it is stopping
    /// ([`Node::leaving`]): it is gone now, not after the keep-alive bound.
    /// Its next authenticated datagram proves it back.
    PeerLeaving { peer: PeerId },
    /// An admin invites us to a group room: [`Node::accept_invite`] or
    /// [`Node::decline_invite`] (with `auto_accept_invites` we join at once
    /// and get [`NodeEvent::RoomJoined`] instead).
    RoomInvited {
        room: RoomId,
        name: String,
        from: PeerId,
    },
    /// We joined a group room ([`Node::room`] describes it).
    RoomJoined { room: RoomId },
    /// A group room's members, admin or epoch changed.
    RoomChanged { room: RoomId },
    /// The admin removed us from a group room; we no longer hold its keys
    /// and get nothing sent in it from now on.
    RoomRemoved { room: RoomId },
    /// A reconciliation message of `room` from `peer`, for the shell's
    /// [`crate::proto::sync::SyncManager`].
    SyncReceived {
        room: RoomId,
        peer: PeerId,
        payload: Vec<u8>,
    },
    /// A file-protocol message (`proto::files::FileMessage`, not parsed
    /// yet: untrusted) about a file of `room` from `peer`, a member of it.
    FileReceived {
        room: RoomId,
        peer: PeerId,
        payload: Vec<u8>,
    },
    /// A peer we did not know opened a session with us and proved who it
    /// is; the node takes it as a contact now. If a message of it follows,
    /// the shell shows it as a request to accept or decline (block).
    StrangerMet { public: PublicIdentity },
    /// A room brought us a member who was not a contact; it is one now.
    /// The shell should keep its key and look for its address.
    ContactLearned { public: PublicIdentity },
    /// `peer`'s signed profile, newer than any kept: store `record` (and
    /// give `seq` back with [`Node::remember_profile`] at start).
    ProfileReceived {
        peer: PeerId,
        seq: u64,
        name: String,
        record: Vec<u8>,
    },
}

/// A message we sent, as the shell stores it (see
/// [`Node::send_direct_message`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// blake3 of `envelope`; what [`NodeEvent::Delivered`] names.
    pub id: MessageId,
    /// The direct room it went to.
    pub room: RoomId,
    /// Hybrid-logical-clock timestamp in the envelope.
    pub timestamp: u64,
    /// Our sender chain's position for it.
    pub seq: u64,
    /// The signed, sealed envelope.
    pub envelope: Vec<u8>,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTransmit {
    /// A peer (the shell looks up its address) or a room's multicast group.
    pub to: Destination,
    /// An encoded [`Datagram`], at most `wire::MAX_DATAGRAM` bytes.
    pub bytes: Vec<u8>,
}
