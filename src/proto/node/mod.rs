//! The node core: a peer that sends and receives end-to-end encrypted direct
//! messages, as a pure (sans-IO) state machine.
//!
//! It joins the three lower layers:
//!
//! ```text
//!  send_direct ─▶ Envelope (sender chain, signed) ─▶ Control::Message
//!             ─▶ Reliable (seq, ACK, retransmit) ─▶ PairwiseSession::seal
//!             ─▶ Frame::Sealed in a Datagram ─▶ poll_transmit
//! ```
//!
//! and the reverse on receive. A direct chat is a room of two whose id is
//! derived from both peer ids ([`direct_room`]), so both sides agree without
//! an exchange. Our sender chain's starting key travels ahead of our first
//! message in the same ordered reliable stream ([`Control::SenderKey`]).
//!
//! # Run-loop contract
//!
//! The IO shell feeds one input (`handle_datagram`, `handle_timeout`, or a
//! command such as `send_direct` or `confirm_stored`), then drains
//! [`Node::poll_event`] and [`Node::poll_transmit`] until both are empty,
//! then waits until [`Node::poll_timeout`] or the next input. The shell owns
//! the address book: outputs name a [`PeerId`], and the shell tells the node
//! which peers it can currently reach ([`Node::set_reachable`]).
//!
//! # Guarantees
//!
//! - **Authenticated, confidential transport.** Every reliable packet to a
//!   peer travels sealed under the pairwise session with that peer (AEAD
//!   associated data = the frame's cleartext header and the sender's id,
//!   [`wire::sealed_aad`]; the id itself does not travel, the session id
//!   names the peer); nothing reaches the reliable layer unless it opened
//!   under a session whose handshake proved that peer id.
//! - **Exactly once, in order, stored before delivered.** Per sender, direct
//!   messages surface once each as [`NodeEvent::MessageReceived`] in send
//!   order; the sender learns [`NodeEvent::Delivered`] only after the
//!   receiving shell committed the message and called
//!   [`Node::confirm_stored`].
//! - **Untrusted input never panics.** Every malformed, oversized,
//!   unknown-version, bad-magic, forged, replayed or unexpected datagram is
//!   dropped and counted in [`NodeStats`] by [`DropReason`]. A blocked
//!   peer's datagrams are dropped right after the size-checked parse, before
//!   any cryptography, and never get a handshake answer.
//! - **Bounded memory.** Packets waiting for a handshake
//!   ([`NodeConfig::max_pending`] per peer) and envelopes waiting for their
//!   sender key ([`NodeConfig::max_held`]) are capped; the reliable layer
//!   bounds the rest. Messages to an unreachable peer stay in the reliable
//!   layer's send queue and are re-driven when the peer is reachable again.
//!
//! # Handshakes
//!
//! A packet for a peer without a session starts a handshake (the initiator
//! names the peer it expects, so no one else can answer). Message 1 is
//! retransmitted with exponential backoff until message 2 arrives (except
//! for a keep-alive probe's handshake with nothing queued: it sends message
//! 1 once and gives up unanswered, since probes go to unproven addresses and
//! the shell paces them); the
//! initiator then retransmits message 3 until the first sealed frame of the
//! new session arrives, since the responder cannot open anything before it.
//! A retransmitted message 1 is answered with the same message 2. When both
//! sides open at once, the handshake of the lower peer id wins: the higher
//! side abandons its own and answers. The previous session stays usable for
//! receiving, so packets in flight across a re-handshake are not lost, for
//! [`NodeConfig::previous_session_grace`]; then its keys are dropped.
//!
//! Sessions are replaced by a fresh handshake every
//! [`NodeConfig::rekey_after`] (the lower peer id first; the other side
//! waits an eighth longer, so both rarely open at once): each session's
//! keys come from its own ephemeral X25519 exchange, so keys taken from a
//! node's memory open only the traffic of the current and previous
//! session, never what was sent before them.
//!
//! Multicast rooms (issue 7) are not handled yet: group frames are counted
//! and dropped, and the design keeps rooms separate from peers so they fit.

mod chains;
mod control;
mod group;
mod history;
mod openings;
mod profiles;
mod rooms;
mod strangers;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use self::control::{
    CONTROL_VERSION, Control, ControlError, MAX_ROOM_MEMBERS, MAX_ROOM_NAME, MemberKey,
};
pub use self::group::{GROUP_TAG_PERIOD_MS, group_tag, open_group_payload, seal_group_payload};
pub use self::history::FORWARD_STEPS_PER_SECOND;
pub use self::openings::{
    ALL_OPENINGS_BURST, ALL_OPENINGS_RATE, CONTACT_OPENING_BURST, CONTACT_OPENING_RATE,
    OPENING_GRACE,
};
pub use self::rooms::{GroupKey, RoomFounding, RoomInfo};
pub use self::strangers::{MAX_STRANGERS, STRANGER_BURST, STRANGER_RATE};
use super::crypto::{
    ChainId, ChainSnapshot, CryptoError, ENVELOPE_OVERHEAD, Envelope, HandshakeFinish,
    HandshakeInit, HandshakeResponse, Identity, Initiator, PairwiseSession, PublicIdentity,
    ReceiverChain, Responder, SecretKey, SenderChain, SenderKeyDistribution, TAG_LEN,
    UnsignedEnvelope, open_envelope, open_verified_envelope,
};
use super::hlc::HybridClock;
use super::ids::{MessageId, PeerId, RoomId};
use super::reliable::{
    self, Destination, Event, MAX_MESSAGE, Reliable, RoomConfig, SendError, Transmit, Via,
};
use super::wire::{self, Datagram, Frame, WireError};

mod signing;
#[cfg(test)]
mod tests;

/// How long we wait for message 3 of a handshake we answered before a
/// keep-alive may start a handshake of our own.
const RESPONDING_TIMEOUT: Duration = Duration::from_secs(5);

/// The sealed plaintext that answers a keep-alive probe (an empty
/// plaintext). Reliable packets are never this short, so neither can be
/// mistaken for one.
const KEEPALIVE_ANSWER: u8 = 0;

/// The sealed plaintext by which a peer that stops cleanly says so (see
/// [`Node::leaving`]). Sealed under the pairwise session like a keep-alive,
/// so only the peer itself can send it, and a replay is refused by the
/// session's replay window.
const KEEPALIVE_LEAVING: u8 = 1;

/// Envelope kind byte of a plain UTF-8 text message.
pub const KIND_TEXT: u8 = 1;

/// Largest text (in bytes) one direct message may carry: the reliable
/// layer's message limit minus the envelope and control framing.
pub const MAX_TEXT: usize = MAX_MESSAGE - ENVELOPE_OVERHEAD - TAG_LEN - 64;

/// The room of the 1:1 chat between `a` and `b`: the same on both sides, with
/// no exchange, because the ids are sorted first.
pub fn direct_room(a: PeerId, b: PeerId) -> RoomId {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    let mut hasher = blake3::Hasher::new_derive_key("kith direct room v1");
    hasher.update(&low.0);
    hasher.update(&high.0);
    RoomId(*hasher.finalize().as_bytes())
}

/// The session id a handshake started with `ephemeral` will have, mirroring
/// `PairwiseSession::session_id` (blake3 of the initiator's ephemeral key).
/// It lets a responder recognise a retransmitted message 1 and frames of a
/// session it is about to finish.
fn session_id_of(initiator_ephemeral: &[u8; 32]) -> [u8; 16] {
    let mut id = [0u8; 16];
    id.copy_from_slice(&blake3::hash(initiator_ephemeral).as_bytes()[..16]);
    id
}

// ---------------------------------------------------------------------------
// Public API types
// ---------------------------------------------------------------------------

/// Tunables. The defaults suit a LAN.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// The reliable layer's settings.
    pub reliable: reliable::Config,
    /// First handshake retransmission timeout; doubles per attempt.
    pub handshake_rto: Duration,
    /// Cap of the handshake retransmission timeout.
    pub handshake_rto_max: Duration,
    /// How often the initiator resends message 3 before it stops waiting
    /// for proof that the responder finished.
    pub finish_attempts: u32,
    /// Reliable packets buffered per peer while its handshake runs (older
    /// ones are dropped first; the reliable layer resends them anyway).
    pub max_pending: usize,
    /// Envelopes buffered, across all chains, while their sender key has
    /// not arrived.
    pub max_held: usize,
    /// Whether invitations to rooms are accepted without asking, from
    /// anyone; otherwise they wait for [`Node::accept_invite`]. The daemon
    /// keeps this off and accepts itself, only from accepted contacts (the
    /// node does not know who the user accepted).
    pub auto_accept_invites: bool,
    /// Whether group rooms send over the multicast group (with unicast
    /// repair and fall-back per member) instead of unicast to each member.
    pub group_multicast: bool,
    /// How long after an epoch change the previous epoch's multicast key
    /// still opens group frames (frames in flight, members that have not
    /// yet heard of the change). It is dropped then: a removed member holds
    /// it, and must not speak in the room for longer than this.
    pub group_key_grace: Duration,
    /// Whether peers that are not contacts may open a session with us (to
    /// send a first message: a contact request).
    pub accept_strangers: bool,
    /// How long a pairwise session is used before a fresh handshake
    /// replaces it (the peer with the lower id starts it; the other after
    /// an eighth more, should the first not), so stolen session keys open
    /// at most this long a stretch of recorded traffic.
    pub rekey_after: Duration,
    /// How long the session a handshake replaced still opens frames (those
    /// in flight across the change); its keys are dropped then.
    pub previous_session_grace: Duration,
    /// How long our sending chain of a direct room is used before a fresh
    /// one replaces it (at the next send, once the peer holds the chain
    /// and has every message of it): the new key travels under the
    /// current pairwise session, so someone who copied a chain key earlier
    /// loses the chat from then on.
    pub rotate_after: Duration,
    /// The same after this many messages on one chain.
    pub rotate_after_messages: u64,
    /// How long an epoch of a group room we run lasts once messages were
    /// sent in it: then we start the next one (same members), and every
    /// member seals with a fresh chain handed out under the current
    /// pairwise sessions.
    pub group_rotate_after: Duration,
    /// Wall-clock milliseconds since the Unix epoch at the `now` given to
    /// [`Node::new`]; message timestamps are derived from it. The shell can
    /// re-anchor it with [`Node::set_wall_clock`].
    pub wall_clock_millis: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            reliable: reliable::Config::default(),
            handshake_rto: Duration::from_millis(100),
            handshake_rto_max: Duration::from_secs(2),
            finish_attempts: 8,
            max_pending: 128,
            max_held: 256,
            accept_strangers: true,
            auto_accept_invites: false,
            group_multicast: false,
            group_key_grace: Duration::from_secs(5),
            rekey_after: Duration::from_secs(30 * 60),
            previous_session_grace: Duration::from_secs(10),
            rotate_after: Duration::from_secs(60 * 60),
            rotate_after_messages: 1_000,
            group_rotate_after: Duration::from_secs(24 * 60 * 60),
            wall_clock_millis: 0,
        }
    }
}

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

/// Why a datagram or a payload inside it was dropped. Each reason has its
/// own counter in [`NodeStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Larger than `wire::MAX_DATAGRAM`.
    TooLarge,
    /// Shorter than the preamble.
    Truncated,
    /// Does not start with the kith magic.
    BadMagic,
    /// A wire version this build does not speak.
    UnknownVersion,
    /// The body does not decode, has trailing bytes or an out-of-range field.
    Malformed,
    /// From a peer we blocked (dropped before any cryptography).
    Blocked,
    /// From a peer id that is not a contact (or is our own).
    UnknownPeer,
    /// A sealed frame for a session we do not have.
    UnknownSession,
    /// Failed authentication: a sealed frame that does not open, or a
    /// handshake message that does not verify.
    Forged,
    /// A sealed frame whose counter was already received or is too old.
    Replayed,
    /// A handshake message we were not waiting for.
    UnexpectedHandshake,
    /// Authentic, but the reliable layer rejected the packet.
    ReliableRejected,
    /// Authentic, but the control payload does not decode.
    ControlMalformed,
    /// A control message about a room the peer is not in with us.
    Foreign,
    /// An envelope that does not parse, verify, decrypt or is a replay.
    EnvelopeRejected,
    /// An envelope waiting for its sender key was pushed out of the buffer
    /// (it is handed to the shell as [`NodeEvent::Undecryptable`]).
    HeldOverflow,
    /// A multicast group frame of a room we are not in, from a non-member,
    /// or of an epoch whose key we do not hold.
    GroupUnsupported,
    /// A stranger's handshake beyond the rate we answer strangers at.
    StrangerLimit,
    /// A handshake message 1 in a contact's name while a handshake we
    /// answered for that contact is still fresh (see [`OPENING_GRACE`]).
    HandshakeBusy,
    /// A handshake message 1 in a contact's name beyond the rate we answer
    /// them at, per contact or overall.
    HandshakeLimit,
    /// A multicast group frame carrying an acknowledgement or a NACK: any
    /// member could have sealed it in another's name, so those travel
    /// only over the pairwise sessions.
    GroupFeedback,
    /// A profile record not signed by the peer that sent it (or about
    /// another peer): see `node/profiles.rs`.
    ProfileForged,
    /// A profile record older than the one kept for its peer (a replay).
    ProfileStale,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 23] = [
        Self::TooLarge,
        Self::Truncated,
        Self::BadMagic,
        Self::UnknownVersion,
        Self::Malformed,
        Self::Blocked,
        Self::UnknownPeer,
        Self::UnknownSession,
        Self::Forged,
        Self::Replayed,
        Self::UnexpectedHandshake,
        Self::ReliableRejected,
        Self::ControlMalformed,
        Self::Foreign,
        Self::EnvelopeRejected,
        Self::HeldOverflow,
        Self::GroupUnsupported,
        Self::StrangerLimit,
        Self::HandshakeBusy,
        Self::HandshakeLimit,
        Self::GroupFeedback,
        Self::ProfileForged,
        Self::ProfileStale,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

impl From<&WireError> for DropReason {
    fn from(error: &WireError) -> Self {
        match error {
            WireError::TooLarge(_) => DropReason::TooLarge,
            WireError::Truncated => DropReason::Truncated,
            WireError::BadMagic => DropReason::BadMagic,
            WireError::UnknownVersion(_) => DropReason::UnknownVersion,
            WireError::Malformed(_)
            | WireError::TrailingBytes(_)
            | WireError::FieldLength { .. }
            | WireError::BadPadding => DropReason::Malformed,
        }
    }
}

/// Counters since the node was created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStats {
    dropped: [u64; DropReason::ALL.len()],
    /// Handshakes we started (including restarts after a failure).
    pub handshakes_started: u64,
    /// Handshake messages 1 we answered afresh, from contacts or strangers:
    /// each cost an X25519 exchange and a signature. (A repeated message 1
    /// gets the same answer again, which costs neither and is not counted.)
    pub handshakes_answered: u64,
    /// Sessions established, as initiator or responder.
    pub sessions_established: u64,
    /// Handshakes we started to replace a session that was due
    /// ([`NodeConfig::rekey_after`]).
    pub rekeys_started: u64,
    /// Our sending chains replaced by fresh ones
    /// ([`NodeConfig::rotate_after`]).
    pub chains_rotated: u64,
    /// Sealed frames emitted.
    pub sealed_sent: u64,
    /// Sealed frames that opened.
    pub sealed_received: u64,
    /// Reliable packets dropped because a peer's pre-handshake buffer was
    /// full (the reliable layer resends them).
    pub pending_overflow: u64,
    /// Reliable packets not sent because the peer is unreachable or
    /// blocked (the reliable layer keeps the messages queued).
    pub deferred: u64,
    /// Handshake messages 1 ignored because our own simultaneous handshake
    /// wins (lower peer id).
    pub simultaneous_opens: u64,
    /// Handshakes that finished with a session id another peer's session
    /// already has (a replayed opening of ours); the session is refused.
    pub session_id_clashes: u64,
    /// Fresh handshakes offered because our sealed frames went unanswered
    /// for [`SILENCE_REHANDSHAKE`].
    pub silence_rehandshakes: u64,
    /// Keep-alive probes sent ([`Node::keepalive`]).
    pub keepalives_sent: u64,
    /// Keep-alive probes from peers that we answered.
    pub keepalives_answered: u64,
    /// Room control messages (keys, invites, member lists) the reliable
    /// layer refused for backpressure.
    pub control_not_queued: u64,
    /// Envelopes we forwarded to members who lacked them.
    pub forwarded: u64,
    /// Forwarded envelopes we could open from their chain's origin.
    pub forwards_opened: u64,
    /// Chains we followed that a distribution starting before our position
    /// replaced (a sender that lost its chain and started it again); an
    /// earlier key of the same chain never does.
    pub chains_restarted: u64,
    /// Forwarded envelopes left unopened because their forwarder's budget
    /// of ratchet work for the second was spent.
    pub forward_work_refused: u64,
    /// Multicast group frames sent and opened.
    pub group_sent: u64,
    pub group_received: u64,
    /// Signatures of received room messages checked in a verification
    /// batch.
    pub batch_verified: u64,
    /// Distinct signatures of received room messages checked (one per
    /// signed batch of the sender's, not one per message).
    pub signatures_checked: u64,
}

impl NodeStats {
    /// Datagrams (or payloads inside them) dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }

    /// Everything dropped, all reasons.
    pub fn total_dropped(&self) -> u64 {
        self.dropped.iter().sum()
    }

    fn count(&mut self, reason: DropReason) {
        self.dropped[reason.index()] += 1;
    }
}

/// Hands a received message back to [`Node::confirm_stored`] once the shell
/// committed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Receipt {
    room: RoomId,
    from: PeerId,
    seq: u64,
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

// ---------------------------------------------------------------------------
// Internal state
// ---------------------------------------------------------------------------

/// A datagram we may have to send again, with its backoff.
struct Retry {
    bytes: Vec<u8>,
    at: Instant,
    backoff: Duration,
    attempts: u32,
}

impl Retry {
    fn new(bytes: Vec<u8>, now: Instant, rto: Duration) -> Self {
        Retry {
            bytes,
            at: now + rto,
            backoff: rto,
            attempts: 0,
        }
    }

    /// Records one more send and backs off.
    fn fire(&mut self, now: Instant, max: Duration) -> Vec<u8> {
        self.attempts += 1;
        self.backoff = (self.backoff * 2).min(max);
        self.at = now + self.backoff;
        self.bytes.clone()
    }
}

enum Handshake {
    Idle,
    /// We sent message 1. `initiator` is `None` after a message 2 failed to
    /// verify (which consumes it); the next retry then starts afresh.
    Initiating {
        initiator: Option<Initiator>,
        retry: Retry,
        /// Started by a keep-alive probe with nothing queued: message 1
        /// goes once, and the handshake is given up after
        /// `handshake_rto_max` without an answer (presence's next probe,
        /// paced and capped, tries again). Probes are aimed at addresses
        /// from unauthenticated sightings, so each may cost one datagram,
        /// never a retransmission series. Queued packets make it a full one.
        probe: bool,
    },
    /// We answered message 1 and wait for message 3.
    Responding {
        responder: Responder,
        session_id: [u8; 16],
        response: Vec<u8>,
        /// When we answered: a message 3 that never comes must not keep
        /// the peer from ever handshaking again (see `RESPONDING_TIMEOUT`).
        since: Instant,
    },
}

/// A contact.
struct Peer {
    public: PublicIdentity,
    /// The shell can currently reach this peer (it has an address).
    reachable: bool,
    session: Option<PairwiseSession>,
    /// The session before the current one, kept for receiving only so that
    /// packets in flight across a re-handshake still open, until
    /// `previous_until`.
    previous: Option<PairwiseSession>,
    previous_until: Option<Instant>,
    /// When the current session is due to be replaced (see
    /// [`NodeConfig::rekey_after`]).
    rekey_at: Option<Instant>,
    /// Since when our sealed frames to the peer have gone unanswered (no
    /// authenticated frame from it since the first of them). Past
    /// [`SILENCE_REHANDSHAKE`] we offer a fresh handshake: sealed frames do
    /// not name their sender, so a peer that lost our session cannot tell
    /// us who it needs a new one with.
    silent_since: Option<Instant>,
    handshake: Handshake,
    /// As initiator: message 3, resent until the new session is proven.
    finish: Option<Retry>,
    /// Openings in this contact's name we may still answer (see
    /// `openings.rs`).
    openings: openings::TokenBucket,
    /// Reliable packets waiting for a session, oldest first.
    pending: VecDeque<Vec<u8>>,
}

/// Our side of a room: who is in it and our sending chain.
struct RoomState {
    kind: RoomKind,
    chain: SenderChain,
    /// Direct rooms: our chain's starting key is queued in the reliable
    /// stream. (Group rooms send their key to every member when an epoch
    /// starts.)
    key_sent: bool,
    /// The chain position the store's reservation covers: nothing at or
    /// after it was ever sealed. Sealing there first asks for a new one
    /// (see [`chains::RESERVE_AHEAD`]); 0 until the first is taken.
    reserved: u64,
    /// When our current chain key was drawn (or restored) and the position
    /// it starts at: when it is due to be rotated.
    chain_since: Instant,
    chain_start: u64,
}

enum RoomKind {
    /// The 1:1 room with a contact.
    Direct { peer: PeerId },
    /// A room of more than two.
    Group(Box<Group>),
}

/// Membership of a group room as we know it.
struct Group {
    name: String,
    /// The only member whose invites and member lists we accept.
    admin: PeerId,
    /// Bumped by the admin on every membership change; each epoch has
    /// fresh sender chains, handed only to its members.
    epoch: u32,
    /// Every member, us included.
    members: BTreeSet<PeerId>,
    /// This epoch's key for multicast frames (from the admin).
    group_key: SecretKey,
    /// The previous epoch's, for frames still in flight across a change,
    /// until its grace runs out.
    previous_key: Option<PreviousKey>,
    /// What the room's id derives from, handed on with every invitation;
    /// `None` for a room kept by an older version.
    founding: Option<rooms::RoomFounding>,
    /// The epoch from which each member is in the room as we saw it (for
    /// us: the epoch we joined in). A member may read, and is handed, only
    /// the history of epochs from then on.
    joined: BTreeMap<PeerId, u32>,
    /// Who takes over when the admin leaves, as the admin named it
    /// (`Control::RoomSuccessor`); `None` when it named nobody yet (an
    /// older admin): then the lowest remaining peer id does.
    successor: Option<PeerId>,
    /// When the current epoch began (as we saw it), and whether messages
    /// were sent in it since: an admin rotates an epoch in use after
    /// [`NodeConfig::group_rotate_after`].
    epoch_since: Instant,
    epoch_active: bool,
}

/// A group key of the epoch before the current one, kept for a grace.
struct PreviousKey {
    epoch: u32,
    key: SecretKey,
    /// From then on it opens nothing and is dropped.
    until: Instant,
}

impl Group {
    /// Moves to `epoch` with `key`, keeping the old key until `until`.
    fn advance_epoch(&mut self, epoch: u32, key: SecretKey, until: Instant) {
        let old = std::mem::replace(&mut self.group_key, key);
        self.previous_key = Some(PreviousKey {
            epoch: self.epoch,
            key: old,
            until,
        });
        self.epoch = epoch;
    }

    /// Members the list gained start at the current epoch; members it lost
    /// are forgotten (back later, they start again from then).
    fn note_joined(&mut self) {
        let epoch = self.epoch;
        self.joined.retain(|peer, _| self.members.contains(peer));
        for member in &self.members {
            self.joined.entry(*member).or_insert(epoch);
        }
    }
}

impl RoomState {
    fn direct_peer(&self) -> Option<PeerId> {
        match self.kind {
            RoomKind::Direct { peer } => Some(peer),
            RoomKind::Group(_) => None,
        }
    }

    fn group(&self) -> Option<&Group> {
        match &self.kind {
            RoomKind::Group(group) => Some(group),
            RoomKind::Direct { .. } => None,
        }
    }
}

/// Another member's chain as we follow it.
struct Followed {
    chain: ReceiverChain,
    /// Where the distribution we follow from started: an envelope below it
    /// was sealed before we had the key.
    start: u64,
    /// Digest of that distribution, so a repeat of it changes nothing.
    /// `None` for a chain restored from the store.
    origin: Option<[u8; 32]>,
}

/// A received envelope waiting for its signature check or its sender key.
struct HeldEnvelope {
    envelope: Envelope,
    bytes: Vec<u8>,
    receipt: Receipt,
    /// A message of our direct room that its author sent us over our
    /// pairwise session: only the two of us hold that session's keys, and
    /// group frames cannot carry the direct room's packets, so the session
    /// already proves who wrote it and the signature is not checked on
    /// arrival. (It stays in the envelope: the author checks it if we ever
    /// hand the message back in a sync, and nobody else ever sees it.)
    session_authenticated: bool,
}

/// The node core. See the module docs for the run-loop contract.
pub struct Node {
    identity: Identity,
    me: PeerId,
    config: NodeConfig,
    rng: StdRng,
    reliable: Reliable,
    /// Ordered, so timers fire in the same order on every run of a seed.
    peers: BTreeMap<PeerId, Peer>,
    blocked: BTreeSet<PeerId>,
    rooms: BTreeMap<RoomId, RoomState>,
    /// Group sender keys that arrived before we knew their room or epoch
    /// (another member's key can overtake the admin's invite or member
    /// list, which travel on a different stream), oldest first, bounded.
    early_keys: VecDeque<SenderKeyDistribution>,
    /// Other members' chains, with the position each distribution started
    /// at (an envelope below it was sealed before we had the key).
    receivers: BTreeMap<ChainId, Followed>,
    /// Our chains as first handed out, by chain (see `chains.rs`).
    origins: BTreeMap<ChainId, ChainSnapshot>,
    /// Origins handed to a peer in this life of the node.
    origin_sent: BTreeSet<(ChainId, PeerId)>,
    /// Rooms whose sending chain came back from the store.
    restored: BTreeSet<RoomId>,
    /// Where other members' chains started (the distribution we follow
    /// them from), to open envelopes forwarded to us later.
    follow_origins: BTreeMap<ChainId, SenderKeyDistribution>,
    /// Invitations the user has not answered.
    invitations: BTreeMap<RoomId, rooms::Invitation>,
    /// Half-open handshakes strangers started with us.
    strangers: BTreeMap<PeerId, strangers::Stranger>,
    stranger_budget: openings::TokenBucket,
    /// Openings in any contact's name we may still answer.
    all_openings: openings::TokenBucket,
    /// Ratchet steps each forwarding member made us spend this second.
    forward_work: BTreeMap<PeerId, (Instant, u64)>,
    /// Third members' origins already forwarded to a peer.
    forwarded_origins: BTreeSet<(ChainId, PeerId)>,
    /// What each member holds of our chains whose origins we keep, so
    /// they are forgotten once nobody needs them (see `chains.rs`).
    origin_progress: chains::OriginProgress,
    /// Chains that moved since the shell last took their snapshots.
    dirty_chains: BTreeSet<(ChainId, chains::Dirty)>,
    held: VecDeque<HeldEnvelope>,
    /// Invitations changed since the shell last took them.
    dirty_invitations: BTreeSet<RoomId>,
    /// Inside a burst of datagrams ([`Node::begin_burst`]).
    in_burst: bool,
    /// Envelopes of this burst whose signatures are checked together at
    /// its end, in arrival order.
    unverified: Vec<HeldEnvelope>,
    /// Batch signatures already checked.
    checked: signing::CheckedSignatures,
    /// Our messages sealed and waiting for [`Node::sign_queued`].
    queued: Vec<UnsignedEnvelope>,
    /// Ids of our control messages in flight (keys, invites, member
    /// lists): their acknowledgements are not the shell's business.
    controls: BTreeSet<MessageId>,
    /// Counts control messages sent, so that each gets its own id even
    /// when the same bytes go out twice.
    control_count: u64,
    transmits: VecDeque<NodeTransmit>,
    events: VecDeque<NodeEvent>,
    stats: NodeStats,
    clock: HybridClock,
    wall_anchor: (Instant, u64),
    /// The latest `now` of any input; outputs polled without a time use it.
    now: Instant,
    /// Our signed profile and the newest kept of each peer.
    profiles: profiles::Profiles,
    /// Group frame tags to their rooms.
    group_tags: group::GroupTags,
    /// Session ids to the peers they belong to (current and previous
    /// sessions): sealed frames carry no sender id.
    session_index: BTreeMap<[u8; 16], PeerId>,
}

impl std::fmt::Debug for Node {
    // Identity and keys stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("me", &self.me)
            .field("peers", &self.peers.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A node with long-term `identity`. `rng` is the only source of
    /// randomness (handshake ephemerals, chain keys, the reliable layer's
    /// session and jitter): seed it for reproducible runs.
    pub fn new(identity: Identity, config: NodeConfig, mut rng: StdRng, now: Instant) -> Self {
        let me = identity.peer_id();
        // A random start keeps control ids unique across restarts too.
        let control_count = rng.next_u64();
        let reliable = Reliable::new(
            me,
            config.reliable.clone(),
            StdRng::seed_from_u64(rng.next_u64()),
            now,
        );
        Node {
            identity,
            me,
            wall_anchor: (now, config.wall_clock_millis),
            config,
            rng,
            reliable,
            peers: BTreeMap::new(),
            blocked: BTreeSet::new(),
            rooms: BTreeMap::new(),
            early_keys: VecDeque::new(),
            receivers: BTreeMap::new(),
            origins: BTreeMap::new(),
            origin_sent: BTreeSet::new(),
            restored: BTreeSet::new(),
            dirty_chains: BTreeSet::new(),
            follow_origins: BTreeMap::new(),
            strangers: BTreeMap::new(),
            invitations: BTreeMap::new(),
            stranger_budget: strangers::stranger_budget(now),
            all_openings: openings::TokenBucket::new(
                now,
                openings::ALL_OPENINGS_RATE,
                openings::ALL_OPENINGS_BURST,
            ),
            forwarded_origins: BTreeSet::new(),
            origin_progress: chains::OriginProgress::default(),
            forward_work: BTreeMap::new(),
            held: VecDeque::new(),
            dirty_invitations: BTreeSet::new(),
            in_burst: false,
            unverified: Vec::new(),
            checked: signing::CheckedSignatures::default(),
            queued: Vec::new(),
            controls: BTreeSet::new(),
            control_count,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: NodeStats::default(),
            clock: HybridClock::default(),
            now,
            profiles: profiles::Profiles::default(),
            group_tags: group::GroupTags::default(),
            session_index: BTreeMap::new(),
        }
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.me
    }

    /// Counters since creation.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// The reliable layer's counters.
    pub fn reliable_stats(&self) -> &reliable::Stats {
        self.reliable.stats()
    }

    /// Whether a pairwise session with `peer` is established.
    pub fn has_session(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|p| p.session.is_some())
    }

    /// The ids of the sessions with `peer` whose keys we hold: the current
    /// one, and the one it replaced while that still opens frames.
    pub fn session_ids(&self, peer: &PeerId) -> Vec<[u8; 16]> {
        self.peers.get(peer).map_or_else(Vec::new, |p| {
            p.session
                .iter()
                .chain(p.previous.iter())
                .map(PairwiseSession::session_id)
                .collect()
        })
    }

    /// Envelopes currently waiting for their sender key.
    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    /// Makes `public` a contact: we accept its handshakes and can message
    /// it. Joins the direct room with it. Idempotent. The peer starts out
    /// unreachable until the shell says otherwise or it is heard from.
    pub fn add_contact(&mut self, now: Instant, public: PublicIdentity) {
        self.advance(now);
        let peer = public.peer_id();
        if peer == self.me || self.peers.contains_key(&peer) {
            return;
        }
        self.peers.insert(
            peer,
            Peer {
                public,
                reachable: false,
                session: None,
                previous: None,
                previous_until: None,
                rekey_at: None,
                silent_since: None,
                handshake: Handshake::Idle,
                finish: None,
                openings: openings::TokenBucket::new(
                    now,
                    openings::CONTACT_OPENING_RATE,
                    openings::CONTACT_OPENING_BURST,
                ),
                pending: VecDeque::new(),
            },
        );
        let room = direct_room(self.me, peer);
        // Direct rooms are unicast: a group of two gains nothing from
        // multicast.
        self.reliable
            .join_room(room, RoomConfig { multicast: false }, [peer]);
        let chain = SenderChain::new(
            &mut self.rng,
            ChainId {
                room,
                epoch: 0,
                sender: self.me,
            },
        );
        self.adopt_chain(&chain);
        self.rooms.insert(
            room,
            RoomState {
                kind: RoomKind::Direct { peer },
                chain,
                key_sent: false,
                reserved: 0,
                chain_since: now,
                chain_start: 0,
            },
        );
        // A member of a room restored without its key: now it can have ours.
        self.hand_room_keys(now, peer);
    }

    /// The public key of `peer` if the node knows it (a contact, a peer met
    /// nearby or a member learned from a room), for the shell to keep.
    pub fn public_of(&self, peer: &PeerId) -> Option<PublicIdentity> {
        if *peer == self.me {
            return Some(self.identity.public());
        }
        self.peers.get(peer).map(|p| p.public.clone())
    }

    /// The shell can (or can no longer) reach `peer`. Becoming reachable
    /// re-drives everything queued for it at once; while unreachable no
    /// handshake is attempted and its packets are not emitted (its messages
    /// stay queued in the reliable layer).
    pub fn set_reachable(&mut self, now: Instant, peer: PeerId, reachable: bool) {
        self.advance(now);
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        let was = state.reachable;
        state.reachable = reachable;
        if !reachable {
            // A handshake nobody can hear only wastes retransmissions; a
            // new one starts when the peer is back.
            if matches!(state.handshake, Handshake::Initiating { .. }) {
                state.handshake = Handshake::Idle;
            }
            state.pending.clear();
        } else if !was {
            self.reliable.redrive(now, peer);
        }
        self.pump_events(now);
    }

    /// Re-anchors the wall clock used for message timestamps.
    pub fn set_wall_clock(&mut self, now: Instant, wall_millis: u64) {
        self.advance(now);
        self.wall_anchor = (now, wall_millis);
    }

    /// Blocks `peer`: its datagrams are dropped before any cryptography,
    /// handshakes from it get no answer, our session with it is discarded
    /// and nothing more is sent to it or accepted from it.
    pub fn block(&mut self, peer: PeerId) {
        self.blocked.insert(peer);
        if let Some(state) = self.peers.get_mut(&peer) {
            state.session = None;
            state.previous = None;
            state.handshake = Handshake::Idle;
            state.finish = None;
            state.pending.clear();
        }
        self.reindex_sessions(peer);
    }

    /// Lifts a block. Messages queued before it resume once the peer is
    /// reachable.
    pub fn unblock(&mut self, now: Instant, peer: PeerId) {
        self.advance(now);
        if self.blocked.remove(&peer) {
            self.reliable.redrive(now, peer);
            self.pump_events(now);
        }
    }

    /// Whether `peer` is blocked.
    pub fn is_blocked(&self, peer: &PeerId) -> bool {
        self.blocked.contains(peer)
    }

    /// Sends `text` to contact `to` in our direct room. Returns the message
    /// id that a later [`NodeEvent::Delivered`] names.
    pub fn send_direct(
        &mut self,
        now: Instant,
        to: PeerId,
        text: &str,
    ) -> Result<MessageId, NodeError> {
        self.send_direct_message(now, to, text).map(|sent| sent.id)
    }

    /// Like [`Node::send_direct`], but returns everything the shell needs to
    /// keep the message in its own store (the signed envelope, its room,
    /// timestamp and chain position), since the node keeps none of it.
    pub fn send_direct_message(
        &mut self,
        now: Instant,
        to: PeerId,
        text: &str,
    ) -> Result<SentMessage, NodeError> {
        let room_id = self.prepare_direct(now, to, text)?;
        let wall = self.wall_millis(now);
        self.seal_and_send(now, room_id, wall, text)
    }

    /// Sends one of our own stored envelopes to `to` again, unchanged (same
    /// id), over the pairwise stream: how the shell's outbox goes out after
    /// a restart without sealing the text a second time. A recipient that
    /// already stored it acknowledges it without storing it twice.
    pub fn resend_envelope(
        &mut self,
        now: Instant,
        to: PeerId,
        envelope: &[u8],
    ) -> Result<MessageId, NodeError> {
        self.advance(now);
        self.check_contact(&to)?;
        let parsed = Envelope::parse(envelope).map_err(|_| NodeError::NotOurEnvelope)?;
        if parsed.header.sender != self.me {
            return Err(NodeError::NotOurEnvelope);
        }
        if parsed.header.epoch < self.shared_epoch(&parsed.header.room, &to) {
            return Err(NodeError::BeforeJoin(to));
        }
        let chain = chain_of(&parsed);
        self.origin_known(&chain)?;
        // The peer may never have got this chain's key: its origin goes
        // first, on the same stream. (Unless the origin was forgotten: then
        // every member held the chain already, see `chains.rs`.)
        self.send_origin(now, chain, to);
        let id = parsed.id();
        let direct = direct_room(self.me, to);
        let payload = Control::Message {
            envelope: envelope.to_vec(),
        }
        .encode();
        self.reliable
            .send(now, direct, id, &payload)
            .map_err(send_error)?;
        self.own_message_sent(chain, id, &[to]);
        self.pump_events(now);
        Ok(id)
    }

    /// Queues our chain's current position and key for the peer of `room`.
    fn send_key(&mut self, now: Instant, room_id: RoomId) -> Result<(), NodeError> {
        let Some((peer, key)) = self.rooms.get(&room_id).and_then(|room| {
            let key = control_from_distribution(&room.chain.distribution());
            Some((room.direct_peer()?, key))
        }) else {
            return Ok(());
        };
        // The direct room's stream is the pairwise stream with its peer.
        let id = self.queue_pairwise(now, peer, &key)?;
        self.origin_control_sent(id, &key, peer);
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.key_sent = true;
        }
        Ok(())
    }

    /// A fresh id for a control message: unique per send, and
    /// domain-separated from envelope ids.
    fn next_control_id(&mut self, encoded: &[u8]) -> MessageId {
        self.control_count = self.control_count.wrapping_add(1);
        let mut named = self.control_count.to_le_bytes().to_vec();
        named.extend_from_slice(encoded);
        Control::control_id(&named)
    }

    /// At start-up, seeds the duplicate filter with the ids of the most
    /// recent messages in the store, so that a message whose "stored" ACK
    /// was lost in a restart, and that its sender therefore resends, is not
    /// surfaced a second time.
    pub fn remember_stored(&mut self, ids: impl IntoIterator<Item = MessageId>) {
        self.reliable.remember_stored(ids);
    }

    /// The shell committed the message of `receipt` to its store; only now
    /// may its sender learn that it was delivered.
    pub fn confirm_stored(&mut self, now: Instant, receipt: Receipt) {
        self.advance(now);
        self.reliable
            .confirm_stored(now, receipt.room, receipt.from, receipt.seq);
        self.pump_events(now);
    }

    /// Handles one untrusted datagram. `Ok` says who sent it: a
    /// [`Heard::Proven`] peer (a sealed frame that opened, or a handshake
    /// message that verified), whose source address the shell may learn, or
    /// a [`Heard::Claimed`] one (accepted unauthenticated, e.g. a handshake
    /// message 1). `Err` names why it was dropped (it is already counted);
    /// the shell may log it and carry on.
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) -> Result<Heard, DropReason> {
        self.advance(now);
        let result = self.on_datagram(now, bytes);
        if let Err(reason) = result {
            self.stats.count(reason);
        }
        self.pump_events(now);
        result
    }

    /// Probes `peer` for presence: an authenticated keep-alive if a session
    /// exists (the peer answers, and the answer surfaces as
    /// `Ok(Heard::Proven(peer))` from [`Node::handle_datagram`]), otherwise a
    /// handshake, whose answer proves the peer just as well. Marks the peer
    /// reachable, since the shell only probes addresses it has.
    pub fn keepalive(&mut self, now: Instant, peer: PeerId) {
        self.advance(now);
        if self.blocked.contains(&peer) {
            return;
        }
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        state.reachable = true;
        if let Handshake::Responding { since, .. } = state.handshake
            && now.saturating_duration_since(since) >= RESPONDING_TIMEOUT
        {
            // The initiator gave up on the handshake we answered.
            state.handshake = Handshake::Idle;
        }
        if state.session.is_some() {
            self.stats.keepalives_sent += 1;
            // A probe is answered: silence from here on is news.
            state.silent_since.get_or_insert(now);
            self.seal_to(peer, &[]);
        } else if matches!(state.handshake, Handshake::Idle) {
            self.start_handshake(now, peer, true);
        }
    }

    /// We are stopping: tells `peer`, sealed under our session with it, so
    /// that it shows us offline at once rather than after its keep-alive
    /// bound. Returns whether it was sent (there is a session to seal it
    /// under; without one the peer does not consider us online anyway).
    pub fn leaving(&mut self, now: Instant, peer: PeerId) -> bool {
        self.advance(now);
        if self.blocked.contains(&peer) {
            return false;
        }
        let has_session = self
            .peers
            .get(&peer)
            .is_some_and(|state| state.session.is_some());
        if has_session {
            self.seal_to(peer, &[KEEPALIVE_LEAVING]);
        }
        has_session
    }

    /// A burst of datagrams starts: until [`Node::end_burst`], room
    /// messages wait there so their signatures are verified in one batch
    /// (about half the cost of one by one). Nothing else changes: every
    /// other input first settles what waits, so events keep their order.
    pub fn begin_burst(&mut self) {
        self.in_burst = true;
    }

    /// The burst ended: verifies the waiting messages' signatures together
    /// and surfaces them. A batch that fails is checked one by one, so one
    /// forged signature costs only its own message.
    pub fn end_burst(&mut self, now: Instant) {
        self.advance(now);
        self.in_burst = false;
        self.verify_unverified(now);
        self.pump_events(now);
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        // A shell that forgot to end its burst still gets its messages.
        self.in_burst = false;
        self.verify_unverified(now);
        self.expire_group_keys(now);
        self.rotate_group_epochs(now);
        self.reliable.handle_timeout(now);
        let due: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| peer_timer(p).is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for peer in due {
            self.peer_timers(now, peer);
        }
        self.release_profiles(now);
        self.pump_events(now);
    }

    /// The next time [`Node::handle_timeout`] must be called, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let burst = (!self.unverified.is_empty()).then_some(self.now);
        self.peers
            .values()
            .filter_map(peer_timer)
            .chain(self.reliable.poll_timeout())
            .chain(burst)
            .chain(self.profiles.poll_timeout())
            .chain(self.group_rotation_due())
            .min()
    }

    /// The next datagram to send, if any (as of the latest input's `now`).
    pub fn poll_transmit(&mut self) -> Option<NodeTransmit> {
        loop {
            if let Some(transmit) = self.transmits.pop_front() {
                return Some(transmit);
            }
            let transmit = self.reliable.poll_transmit(self.now)?;
            self.route(transmit);
        }
    }

    /// The next event for the shell, if any.
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    // --- receiving datagrams -------------------------------------------------

    fn on_datagram(&mut self, now: Instant, bytes: &[u8]) -> Result<Heard, DropReason> {
        let datagram = Datagram::parse(bytes).map_err(|e| DropReason::from(&e))?;
        let (from, frame) = match (datagram.from, datagram.frame) {
            (Some(from), frame) => (from, frame),
            (None, Frame::Group { tag, payload }) => {
                // A member sealed it; the sender it names inside is a claim.
                let sender = self.on_group_frame(now, tag, &payload)?;
                return Ok(Heard::Claimed(sender));
            }
            (
                None,
                Frame::Sealed {
                    session,
                    counter,
                    ciphertext,
                },
            ) => {
                // The session says who sent it; no id travels.
                let from = *self
                    .session_index
                    .get(&session)
                    .ok_or(DropReason::UnknownSession)?;
                if self.blocked.contains(&from) {
                    return Err(DropReason::Blocked);
                }
                let proven = self.on_sealed(now, from, session, counter, &ciphertext)?;
                return Ok(match proven {
                    Some(peer) => Heard::Proven(peer),
                    None => Heard::Claimed(from),
                });
            }
            // `parse` puts `from` on every handshake frame.
            (None, _) => return Err(DropReason::Malformed),
        };
        let proven = self.on_frame(now, from, frame)?;
        // Every handler proves `from` or nothing: a frame is never taken
        // for a peer other than the one it names.
        Ok(match proven {
            Some(peer) => Heard::Proven(peer),
            None => Heard::Claimed(from),
        })
    }

    /// A handshake frame, which names its sender.
    fn on_frame(
        &mut self,
        now: Instant,
        from: PeerId,
        frame: Frame,
    ) -> Result<Option<PeerId>, DropReason> {
        // Before anything costs work: the claim alone is enough to drop.
        if self.blocked.contains(&from) {
            return Err(DropReason::Blocked);
        }
        // A message 3 goes to the handshake we answered as a contact if there
        // is one, else to one a stranger opened before it became a contact.
        let stranger_finishing = matches!(frame, Frame::HandshakeFinish { .. })
            && self.strangers.contains_key(&from)
            && !self
                .peers
                .get(&from)
                .is_some_and(|p| matches!(p.handshake, Handshake::Responding { .. }));
        if !self.peers.contains_key(&from) || stranger_finishing {
            // (A stranger may have become a contact, e.g. by discovery,
            // while the handshake it opened was under way.)
            return self.on_stranger(now, from, frame);
        }
        match frame {
            Frame::HandshakeInit { ephemeral } => self.on_init(now, from, ephemeral).map(|()| None),
            Frame::HandshakeResponse { ephemeral, sealed } => self
                .on_response(now, from, HandshakeResponse { ephemeral, sealed })
                .map(|()| Some(from)),
            Frame::HandshakeFinish { sealed } => self
                .on_finish(now, from, HandshakeFinish { sealed })
                .map(|()| Some(from)),
            // Handled above: they do not name their sender.
            Frame::Sealed { .. } | Frame::Group { .. } => Err(DropReason::Malformed),
        }
    }

    fn on_init(
        &mut self,
        now: Instant,
        from: PeerId,
        ephemeral: [u8; 32],
    ) -> Result<(), DropReason> {
        let me = self.me;
        let state = self.peers.get_mut(&from).ok_or(DropReason::UnknownPeer)?;
        let session_id = session_id_of(&ephemeral);
        if let Handshake::Responding {
            session_id: pending,
            response,
            ..
        } = &state.handshake
            && *pending == session_id
        {
            // Our message 2 was lost: answer with the same one, since the
            // initiator can only finish against the responder it first met.
            let bytes = response.clone();
            self.emit_raw(from, bytes);
            return Ok(());
        }
        if state
            .session
            .as_ref()
            .is_some_and(|s| s.session_id() == session_id)
        {
            // A message 1 of the session we already finished: a late copy
            // or a replay. Either way there is nothing to answer.
            return Err(DropReason::UnexpectedHandshake);
        }
        if matches!(state.handshake, Handshake::Initiating { .. }) && me < from {
            // Simultaneous open and ours wins: the peer answers ours. (If
            // theirs wins we fall through, answer, and our queued packets go
            // out once their handshake finishes.)
            self.stats.simultaneous_opens += 1;
            return Ok(());
        }
        // A new opening: it costs real work and would replace the handshake
        // we are answering, and anyone can send one in a contact's name.
        self.admit_opening(now, from)?;
        self.stats.handshakes_answered += 1;
        let init = HandshakeInit { ephemeral };
        let (responder, response) = Responder::handle_init(&mut self.rng, &self.identity, &init)
            .map_err(|_| DropReason::Forged)?;
        let bytes = self.emit_frame(Frame::from(&response));
        let state = self.peers.get_mut(&from).ok_or(DropReason::UnknownPeer)?;
        state.handshake = Handshake::Responding {
            responder,
            session_id,
            response: bytes.clone(),
            since: now,
        };
        self.emit_raw(from, bytes);
        Ok(())
    }

    fn on_response(
        &mut self,
        now: Instant,
        from: PeerId,
        response: HandshakeResponse,
    ) -> Result<(), DropReason> {
        let state = self.peers.get_mut(&from).ok_or(DropReason::UnknownPeer)?;
        let Handshake::Initiating { initiator, .. } = &mut state.handshake else {
            return Err(DropReason::UnexpectedHandshake);
        };
        let Some(initiator) = initiator.take() else {
            return Err(DropReason::UnexpectedHandshake);
        };
        // A failure consumed the initiator; the retry timer (still armed)
        // starts a fresh handshake.
        let (session, finish) = initiator
            .handle_response(&self.identity, &response)
            .map_err(|_| DropReason::Forged)?;
        let bytes = self.emit_frame(Frame::from(&finish));
        let rto = self.config.handshake_rto;
        let state = self.peers.get_mut(&from).ok_or(DropReason::UnknownPeer)?;
        state.handshake = Handshake::Idle;
        state.finish = Some(Retry::new(bytes.clone(), now, rto));
        self.emit_raw(from, bytes);
        self.install_session(now, from, session);
        Ok(())
    }

    fn on_finish(
        &mut self,
        now: Instant,
        from: PeerId,
        finish: HandshakeFinish,
    ) -> Result<(), DropReason> {
        let state = self.peers.get_mut(&from).ok_or(DropReason::UnknownPeer)?;
        let responder = match std::mem::replace(&mut state.handshake, Handshake::Idle) {
            Handshake::Responding { responder, .. } => responder,
            other => {
                // Typically a retransmitted message 3 of a session we
                // already finished.
                state.handshake = other;
                return Err(DropReason::UnexpectedHandshake);
            }
        };
        let session = responder
            .handle_finish(&finish)
            .map_err(|_| DropReason::Forged)?;
        if session.peer().peer_id() != from {
            // Someone proved an identity, just not the one they claimed.
            return Err(DropReason::Forged);
        }
        self.install_session(now, from, session);
        Ok(())
    }

    fn on_sealed(
        &mut self,
        now: Instant,
        from: PeerId,
        session_id: [u8; 16],
        counter: u64,
        ciphertext: &[u8],
    ) -> Result<Option<PeerId>, DropReason> {
        let state = self.peers.get_mut(&from).ok_or(DropReason::UnknownPeer)?;
        let is_current = state
            .session
            .as_ref()
            .is_some_and(|s| s.session_id() == session_id);
        let session = if is_current {
            state.session.as_mut()
        } else {
            state
                .previous
                .as_mut()
                .filter(|s| s.session_id() == session_id)
        };
        let Some(session) = session else {
            // Indexed but no longer held (dropped since): nothing opens it.
            // A frame of a session we never had (we restarted, or a message
            // 3 was lost) does not even get here, as no id travels to tell
            // us whose it is; the peer, hearing nothing back, offers a
            // fresh handshake ([`SILENCE_REHANDSHAKE`]).
            return Err(DropReason::UnknownSession);
        };
        let aad = wire::sealed_aad(&from, &session_id, counter);
        let padded = session
            .open(counter, &aad, ciphertext)
            .map_err(|e| match e {
                CryptoError::Replay | CryptoError::TooOld => DropReason::Replayed,
                _ => DropReason::Forged,
            })?;
        // Authentic, so only the peer can have padded it wrongly.
        let plaintext = wire::unpad(&padded).map_err(|e| DropReason::from(&e))?;
        self.stats.sealed_received += 1;
        state.silent_since = None;
        if is_current {
            // The responder finished: message 3 need not be resent.
            state.finish = None;
        }
        state.reachable = true;
        match plaintext {
            [] => {
                // A keep-alive probe: answer it so the prober hears us.
                self.stats.keepalives_answered += 1;
                self.seal_to(from, &[KEEPALIVE_ANSWER]);
                return Ok(Some(from));
            }
            [KEEPALIVE_ANSWER] => return Ok(Some(from)),
            [KEEPALIVE_LEAVING] => {
                self.events.push_back(NodeEvent::PeerLeaving { peer: from });
                return Ok(Some(from));
            }
            _ => {}
        }
        self.reliable
            .handle_datagram(now, from, Via::Unicast, plaintext)
            .map(|_| Some(from))
            .map_err(|_| DropReason::ReliableRejected)
    }

    /// Points the session index at `peer`'s current and previous session
    /// only (after either changed).
    fn reindex_sessions(&mut self, peer: PeerId) {
        self.session_index.retain(|_, owner| *owner != peer);
        if let Some(state) = self.peers.get(&peer) {
            for session in state.session.iter().chain(state.previous.iter()) {
                self.session_index.insert(session.session_id(), peer);
            }
        }
    }

    fn install_session(&mut self, now: Instant, peer: PeerId, session: PairwiseSession) {
        self.stats.sessions_established += 1;
        if self
            .session_index
            .get(&session.session_id())
            .is_some_and(|owner| *owner != peer)
        {
            // Another peer's session has this id: only the initiator of
            // both (who holds the ephemeral secret) could make that
            // happen, so it is someone replaying our own handshake.
            // Keep the first; this one would take its frames.
            self.stats.session_id_clashes += 1;
            return;
        }
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        state.previous = state.session.replace(session);
        let replaced = state.previous.is_some();
        state.previous_until = replaced.then(|| now + self.config.previous_session_grace);
        // The lower id rekeys first; the other side only if that failed to
        // happen, so both rarely open at once.
        let rekey_after = if self.me < peer {
            self.config.rekey_after
        } else {
            self.config.rekey_after + self.config.rekey_after / 8
        };
        state.rekey_at = Some(now + rekey_after);
        // Whoever completed a handshake with us is reachable right now.
        state.reachable = true;
        self.reindex_sessions(peer);
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        let pending: Vec<Vec<u8>> = state.pending.drain(..).collect();
        for packet in pending {
            self.seal_to(peer, &packet);
        }
        if replaced {
            // A new session over an old one: the peer may have restarted
            // and lost our chain. Send it again at once, so whatever it
            // holds for want of a key is released (as undecryptable) rather
            // than waiting for our next message. Harmless otherwise: it
            // arrives in order, after every envelope sealed before it.
            let rooms: Vec<RoomId> = self
                .rooms
                .iter()
                .filter(|(_, r)| r.direct_peer() == Some(peer) && r.key_sent)
                .map(|(id, _)| *id)
                .collect();
            for room in rooms {
                // Backpressure only delays it: the next message sends it.
                let _ = self.send_key(now, room);
            }
            let groups: Vec<RoomId> = self
                .rooms
                .iter()
                .filter(|(_, r)| r.group().is_some_and(|g| g.members.contains(&peer)))
                .map(|(id, _)| *id)
                .collect();
            for room in groups {
                self.send_group_key(now, room, peer);
            }
        }
        // Our name, for a peer that may have restarted or never had it.
        self.send_profile(now, peer);
        // Anything the reliable layer sent into the void (no session, or
        // sealed under a session the peer lost) goes out again now rather
        // than at its next, possibly backed-off, timeout.
        self.reliable.redrive(now, peer);
    }

    // --- sending datagrams ---------------------------------------------------

    /// Takes one reliable packet to its datagram: sealed if there is a
    /// session, buffered behind a handshake if the peer is reachable,
    /// deferred (left to the reliable layer's retransmission) otherwise.
    fn route(&mut self, transmit: Transmit) {
        let peer = match transmit.destination {
            Destination::Peer(peer) => peer,
            Destination::Group(room) => {
                self.seal_group(room, &transmit.bytes);
                return;
            }
        };
        if self.blocked.contains(&peer) {
            self.stats.deferred += 1;
            return;
        }
        let Some(state) = self.peers.get_mut(&peer) else {
            self.stats.deferred += 1;
            return;
        };
        if state.session.is_some() {
            if transmit.kind == reliable::PacketKind::Data {
                // Data is acknowledged: silence from here on is news.
                state.silent_since.get_or_insert(self.now);
            }
            self.seal_to(peer, &transmit.bytes);
            return;
        }
        if !state.reachable {
            self.stats.deferred += 1;
            return;
        }
        if state.pending.len() >= self.config.max_pending {
            state.pending.pop_front();
            self.stats.pending_overflow += 1;
        }
        state.pending.push_back(transmit.bytes);
        let rto = self.config.handshake_rto;
        match &mut state.handshake {
            Handshake::Idle => self.start_handshake(self.now, peer, false),
            Handshake::Initiating { probe, retry, .. } if *probe => {
                // Something waits for this handshake now: retransmit it
                // like any other, starting from the first timeout.
                *probe = false;
                retry.backoff = rto;
                retry.at = retry.at.min(self.now + rto);
            }
            _ => {}
        }
    }

    fn seal_to(&mut self, peer: PeerId, packet: &[u8]) {
        let me = self.me;
        let Some(session) = self.peers.get_mut(&peer).and_then(|p| p.session.as_mut()) else {
            return;
        };
        let session_id = session.session_id();
        let counter = session.next_counter();
        let aad = wire::sealed_aad(&me, &session_id, counter);
        // Padded to a size bucket, so the datagram's size tells an observer
        // little about what it carries.
        let padded = wire::pad(packet, wire::SEALED_OVERHEAD);
        let Ok((sealed_counter, ciphertext)) = session.seal(&aad, &padded) else {
            // Only a 2^64-message session fails here; the reliable layer
            // resends, and a new session will be needed anyway.
            return;
        };
        debug_assert_eq!(sealed_counter, counter, "seal uses next_counter");
        let bytes = self.emit_frame(Frame::Sealed {
            session: session_id,
            counter,
            ciphertext,
        });
        if !bytes.is_empty() {
            self.stats.sealed_sent += 1;
            self.emit_raw(peer, bytes);
        }
    }

    /// Encodes one of our own frames. Our frames are within their caps by
    /// construction (a unit test checks the worst case), so a failure is a
    /// bug: it is asserted in debug builds and yields nothing in release.
    fn emit_frame(&self, frame: Frame) -> Vec<u8> {
        let datagram = Datagram {
            from: frame.names_sender().then_some(self.me),
            frame,
        };
        match datagram.emit() {
            Ok(bytes) => bytes,
            Err(error) => {
                debug_assert!(false, "own frame does not encode: {error}");
                Vec::new()
            }
        }
    }

    fn emit_raw(&mut self, to: PeerId, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.transmits.push_back(NodeTransmit {
                to: Destination::Peer(to),
                bytes,
            });
        }
    }

    /// Sends message 1 to `peer`; `probe`: see [`Handshake::Initiating`].
    fn start_handshake(&mut self, now: Instant, peer: PeerId, probe: bool) {
        let (initiator, init) = Initiator::start(&mut self.rng, Some(peer));
        let bytes = self.emit_frame(Frame::from(&init));
        let rto = if probe {
            self.config.handshake_rto_max
        } else {
            self.config.handshake_rto
        };
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        state.handshake = Handshake::Initiating {
            initiator: Some(initiator),
            retry: Retry::new(bytes.clone(), now, rto),
            probe,
        };
        self.stats.handshakes_started += 1;
        self.emit_raw(peer, bytes);
    }

    fn peer_timers(&mut self, now: Instant, peer: PeerId) {
        let max = self.config.handshake_rto_max;
        let finish_attempts = self.config.finish_attempts;
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        let mut resend = Vec::new();
        let mut restart = false;
        let mut dropped_previous = false;
        if state.previous_until.is_some_and(|until| until <= now) {
            // Its frames in flight have had their time: dropping the
            // session wipes its keys.
            state.previous = None;
            state.previous_until = None;
            dropped_previous = true;
        }
        let mut silent = false;
        if silence_due(state).is_some_and(|at| at <= now) {
            // The peer may have lost our session (it restarted, or never
            // finished the handshake); if it is there it answers this.
            state.silent_since = None;
            silent = true;
        }
        if rekey_due(state).is_some_and(|at| at <= now) {
            // A fresh handshake; the current session carries traffic until
            // it completes.
            state.rekey_at = None;
            self.stats.rekeys_started += 1;
            restart = true;
        }
        if let Handshake::Initiating {
            initiator,
            retry,
            probe,
        } = &mut state.handshake
            && retry.at <= now
        {
            if *probe {
                // Unanswered probe: give up; see `Handshake::Initiating`.
                state.handshake = Handshake::Idle;
            } else if initiator.is_some() {
                resend.push(retry.fire(now, max));
            } else {
                restart = true;
            }
        }
        if let Some(finish) = &mut state.finish
            && finish.at <= now
        {
            if finish.attempts >= finish_attempts {
                // No proof the responder finished; if it did not, its
                // answer to our sealed frames (a new handshake) recovers.
                state.finish = None;
            } else {
                resend.push(finish.fire(now, max));
            }
        }
        for bytes in resend {
            self.emit_raw(peer, bytes);
        }
        if dropped_previous {
            self.reindex_sessions(peer);
        }
        if restart {
            self.start_handshake(now, peer, false);
        } else if silent {
            self.stats.silence_rehandshakes += 1;
            self.start_handshake(now, peer, true);
        }
    }

    // --- the reliable layer's events -----------------------------------------

    fn pump_events(&mut self, now: Instant) {
        while let Some(event) = self.reliable.poll_event() {
            match event {
                Event::Received {
                    room,
                    from,
                    seq,
                    payload,
                    ..
                } => self.on_received(now, Receipt { room, from, seq }, &payload),
                Event::Delivered { room, to, id } => {
                    // One per recipient; a control message has one.
                    if self.controls.remove(&id) {
                        self.origin_control_stored(id);
                    } else {
                        self.own_message_resolved(id, to, true);
                        self.events.push_back(NodeEvent::Delivered { room, to, id });
                    }
                }
                Event::Refused { room, to, id } => {
                    if self.controls.remove(&id) {
                        self.origin_progress.control_lost(&id);
                    } else {
                        // Refused for good: nothing the origin could mend.
                        self.own_message_resolved(id, to, false);
                        self.events.push_back(NodeEvent::Refused { room, to, id });
                    }
                }
                Event::Undelivered { room, to, id } => {
                    if self.controls.remove(&id) {
                        self.origin_progress.control_lost(&id);
                    } else {
                        self.events
                            .push_back(NodeEvent::Undelivered { room, to, id });
                    }
                }
                Event::PeerUnreachable { peer } => {
                    self.events.push_back(NodeEvent::PeerUnreachable { peer });
                }
                Event::PeerReachable { peer } => {
                    self.events.push_back(NodeEvent::PeerReachable { peer });
                }
                Event::FanOutChanged { .. } => {}
            }
        }
    }

    /// A complete payload from the reliable layer, from an authenticated
    /// peer. Whatever is not handed to the shell for storing is confirmed
    /// here at once: an unconfirmed payload would stall the stream.
    fn on_received(&mut self, now: Instant, receipt: Receipt, payload: &[u8]) {
        let Ok(control) = Control::decode(payload) else {
            self.reject(now, receipt, DropReason::ControlMalformed);
            return;
        };
        let Some(room) = self.rooms.get(&receipt.room) else {
            self.reject(now, receipt, DropReason::Foreign);
            return;
        };
        let is_direct = match &room.kind {
            RoomKind::Direct { peer } => *peer == receipt.from,
            RoomKind::Group(group) => {
                // The reliable layer only accepts members' streams; a group
                // stream carries nothing but envelopes.
                if !group.members.contains(&receipt.from)
                    || !matches!(control, Control::Message { .. })
                {
                    self.reject(now, receipt, DropReason::Foreign);
                    return;
                }
                false
            }
        };
        if let Some(group) = self.group_mut(&receipt.room) {
            group.epoch_active = true;
        }
        if !is_direct && !matches!(control, Control::Message { .. }) {
            self.reject(now, receipt, DropReason::Foreign);
            return;
        }
        if !matches!(control, Control::Message { .. }) {
            // Messages that came before this control surface before it.
            self.verify_unverified(now);
        }
        match control {
            Control::SenderKey {
                room,
                epoch,
                start_seq,
                chain_key,
            } => {
                self.reliable
                    .confirm_stored(now, receipt.room, receipt.from, receipt.seq);
                let distribution = SenderKeyDistribution {
                    chain: ChainId {
                        room,
                        epoch,
                        sender: receipt.from,
                    },
                    start_seq,
                    chain_key: SecretKey::from_bytes(chain_key),
                };
                if room == receipt.room {
                    self.install_key(now, &distribution);
                } else {
                    // A group key travels on the pairwise stream.
                    self.on_group_key(now, distribution);
                }
            }
            Control::RoomInvite {
                room,
                name,
                epoch,
                admin,
                members,
                group_key,
                founder,
                nonce,
            } => {
                self.reliable
                    .confirm_stored(now, receipt.room, receipt.from, receipt.seq);
                let update = rooms::Update::new(room, epoch, members, group_key);
                let founding = rooms::RoomFounding { founder, nonce };
                if let Err(reason) =
                    self.on_invite(now, receipt.from, name, admin, update, founding)
                {
                    self.stats.count(reason);
                }
            }
            Control::RoomMembers {
                room,
                epoch,
                members,
                group_key,
            } => {
                self.reliable
                    .confirm_stored(now, receipt.room, receipt.from, receipt.seq);
                let update = rooms::Update::new(room, epoch, members, group_key);
                if let Err(reason) = self.on_members(now, receipt.from, update) {
                    self.stats.count(reason);
                }
            }
            Control::RoomSuccessor {
                room,
                epoch,
                successor,
            } => {
                self.reliable
                    .confirm_stored(now, receipt.room, receipt.from, receipt.seq);
                if let Err(reason) = self.on_successor(receipt.from, room, epoch, successor) {
                    self.stats.count(reason);
                }
            }
            Control::RoomLeave { room } => {
                self.reliable
                    .confirm_stored(now, receipt.room, receipt.from, receipt.seq);
                if let Err(reason) = self.on_leave(now, receipt.from, room) {
                    self.stats.count(reason);
                }
            }
            Control::Sync { room, payload } => self.on_sync(now, receipt, room, payload),
            Control::Profile { record } => {
                self.reliable
                    .confirm_stored(now, receipt.room, receipt.from, receipt.seq);
                self.on_profile(now, receipt, &record);
            }
            Control::Forward { envelope } => self.on_forward(now, receipt, envelope),
            Control::Origin {
                room,
                epoch,
                sender,
                start_seq,
                chain_key,
            } => {
                self.reliable
                    .confirm_stored(now, receipt.room, receipt.from, receipt.seq);
                self.on_origin(
                    receipt.from,
                    SenderKeyDistribution {
                        chain: ChainId {
                            room,
                            epoch,
                            sender,
                        },
                        start_seq,
                        chain_key: SecretKey::from_bytes(chain_key),
                    },
                );
            }
            Control::Message { envelope: bytes } => {
                let envelope = match Envelope::parse(&bytes) {
                    // Only the stream's own sender may author in it (members
                    // forwarding others' envelopes is the sync's job). On
                    // the pairwise stream that includes its group envelopes
                    // sent again after a restart ([`Node::resend_envelope`]).
                    Ok(envelope)
                        if envelope.header.sender == receipt.from
                            && (envelope.header.room == receipt.room
                                || (is_direct
                                    && self
                                        .check_shared(&envelope.header.room, &receipt.from)
                                        .is_ok())) =>
                    {
                        envelope
                    }
                    _ => {
                        self.reject(now, receipt, DropReason::EnvelopeRejected);
                        return;
                    }
                };
                let held = HeldEnvelope {
                    session_authenticated: is_direct && envelope.header.room == receipt.room,
                    envelope,
                    bytes,
                    receipt,
                };
                if self.receivers.contains_key(&chain_of(&held.envelope)) {
                    self.wait_for_check(now, held);
                } else {
                    self.hold(now, held);
                }
            }
        }
    }

    /// Counts a payload that will never reach the store and releases it in
    /// the reliable layer so later messages are not held up behind it. Its
    /// sender learns that it was refused, never that it was stored.
    fn reject(&mut self, now: Instant, receipt: Receipt, reason: DropReason) {
        self.stats.count(reason);
        self.reliable
            .refuse(now, receipt.room, receipt.from, receipt.seq);
    }

    /// Counts a copy of a message the store already holds (opened before on
    /// its chain) and acknowledges it as stored: it is.
    fn already_stored(&mut self, now: Instant, receipt: Receipt) {
        self.stats.count(DropReason::Replayed);
        self.reliable
            .confirm_stored(now, receipt.room, receipt.from, receipt.seq);
    }

    fn hold(&mut self, now: Instant, held: HeldEnvelope) {
        if self.held.len() >= self.config.max_held
            && let Some(old) = self.held.pop_front()
        {
            // It cannot wait any longer, but it is authentic: the shell
            // stores the ciphertext, which keeps `Delivered` truthful and
            // the stream moving.
            self.stats.count(DropReason::HeldOverflow);
            self.surface_undecryptable(now, old.envelope, old.bytes, old.receipt);
        }
        self.held.push_back(held);
    }

    fn release_held(&mut self, now: Instant, chain: ChainId) {
        let (ready, rest): (VecDeque<HeldEnvelope>, VecDeque<HeldEnvelope>) =
            std::mem::take(&mut self.held)
                .into_iter()
                .partition(|h| chain_of(&h.envelope) == chain);
        self.held = rest;
        for held in ready {
            self.wait_for_check(now, held);
        }
    }

    /// Opens an envelope on its chain and surfaces it; `verified`: its
    /// signature was already checked (in a batch).
    fn open_and_surface(&mut self, now: Instant, held: HeldEnvelope, verified: bool) {
        let HeldEnvelope {
            envelope,
            bytes,
            receipt,
            ..
        } = held;
        let (opened, before_start, opened_before) = match (
            self.peers.get(&envelope.header.sender),
            self.receivers.get_mut(&chain_of(&envelope)),
        ) {
            (Some(sender), Some(followed)) => (
                if verified {
                    open_verified_envelope(&envelope, &mut followed.chain)
                } else {
                    open_envelope(&envelope, &sender.public, &mut followed.chain)
                },
                envelope.header.seq < followed.start,
                followed.chain.has_opened(envelope.header.seq),
            ),
            _ => (Err(CryptoError::WrongChain), false, false),
        };
        let body = match opened {
            Ok(body) => {
                self.dirty_chains
                    .insert((chain_of(&envelope), chains::Dirty::Receiving));
                body
            }
            Err(_) if before_start => {
                // Sealed before the key we hold (we lost the older one, e.g.
                // in a restart): unreadable here, but worth storing.
                self.surface_undecryptable(now, envelope, bytes, receipt);
                return;
            }
            Err(_) if opened_before => {
                // A copy of a message this chain opened before: stored.
                self.already_stored(now, receipt);
                return;
            }
            Err(_) => {
                // Too far ahead of our position, or at a position whose key
                // we no longer hold: if its signature proves its author it
                // is stored unreadable and opened from the chain's origin
                // later (never acknowledged and lost); anything else is
                // refused, and its sender hears so.
                self.surface_undecryptable(now, envelope, bytes, receipt);
                return;
            }
        };
        self.surface(now, envelope, bytes, body, receipt);
    }

    /// Hands an opened envelope to the shell for storing.
    fn surface(
        &mut self,
        now: Instant,
        envelope: Envelope,
        bytes: Vec<u8>,
        body: Vec<u8>,
        receipt: Receipt,
    ) {
        let wall = self.wall_millis(now);
        self.clock.observe(wall, envelope.header.timestamp);
        self.events.push_back(NodeEvent::MessageReceived {
            room: envelope.header.room,
            from: envelope.header.sender,
            id: envelope.id(),
            timestamp: envelope.header.timestamp,
            kind: envelope.header.kind,
            body,
            envelope: bytes,
            receipt,
        });
    }

    /// Hands an envelope we cannot decrypt to the shell for storing, if its
    /// signature proves its author; anything else is rejected.
    fn surface_undecryptable(
        &mut self,
        now: Instant,
        envelope: Envelope,
        bytes: Vec<u8>,
        receipt: Receipt,
    ) {
        let authentic = self
            .peers
            .get(&envelope.header.sender)
            .is_some_and(|sender| envelope.verify_signature(&sender.public).is_ok());
        if !authentic {
            self.reject(now, receipt, DropReason::EnvelopeRejected);
            return;
        }
        self.events.push_back(NodeEvent::Undecryptable {
            room: envelope.header.room,
            from: envelope.header.sender,
            id: envelope.id(),
            timestamp: envelope.header.timestamp,
            envelope: bytes,
            receipt,
        });
    }

    // --- helpers -------------------------------------------------------------

    /// Whether we may send to `to` or invite it: a contact we have not
    /// blocked.
    fn check_contact(&self, to: &PeerId) -> Result<(), NodeError> {
        if self.blocked.contains(to) {
            return Err(NodeError::Blocked(*to));
        }
        if !self.peers.contains_key(to) {
            return Err(NodeError::UnknownPeer(*to));
        }
        Ok(())
    }

    fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    fn wall_millis(&self, now: Instant) -> u64 {
        let (at, millis) = self.wall_anchor;
        let elapsed = now.saturating_duration_since(at).as_millis();
        millis.saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }
}

fn chain_of(envelope: &Envelope) -> ChainId {
    ChainId {
        room: envelope.header.room,
        epoch: envelope.header.epoch,
        sender: envelope.header.sender,
    }
}

fn peer_timer(peer: &Peer) -> Option<Instant> {
    let handshake = match &peer.handshake {
        Handshake::Initiating { retry, .. } => Some(retry.at),
        _ => None,
    };
    let finish = peer.finish.as_ref().map(|f| f.at);
    handshake
        .into_iter()
        .chain(finish)
        .chain(peer.previous_until)
        .chain(rekey_due(peer))
        .chain(silence_due(peer))
        .min()
}

/// How long our sealed frames may go unanswered before we offer the peer
/// a fresh handshake (a probe: message 1 once, nothing if unanswered).
pub const SILENCE_REHANDSHAKE: Duration = Duration::from_secs(1);

/// When `peer`'s silence calls for a fresh handshake: only while we have a
/// session and no handshake runs.
fn silence_due(peer: &Peer) -> Option<Instant> {
    if peer.session.is_some() && matches!(peer.handshake, Handshake::Idle) {
        peer.silent_since.map(|since| since + SILENCE_REHANDSHAKE)
    } else {
        None
    }
}

/// When `peer`'s session is to be replaced: only while it has one, is
/// reachable and no handshake runs.
fn rekey_due(peer: &Peer) -> Option<Instant> {
    if peer.session.is_some() && peer.reachable && matches!(peer.handshake, Handshake::Idle) {
        peer.rekey_at
    } else {
        None
    }
}

fn control_from_distribution(distribution: &SenderKeyDistribution) -> Control {
    Control::SenderKey {
        room: distribution.chain.room,
        epoch: distribution.chain.epoch,
        start_seq: distribution.start_seq,
        chain_key: *distribution.chain_key.as_bytes(),
    }
}

fn send_error(error: SendError) -> NodeError {
    match error {
        SendError::TooLarge(len) => NodeError::TooLarge(len),
        // Every contact has its direct room, so `UnknownRoom` cannot happen;
        // mapping it to backpressure keeps the caller's handling simple.
        SendError::UnknownRoom | SendError::Backpressure => NodeError::Backpressure,
    }
}
