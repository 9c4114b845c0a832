//! Counters, and why a datagram or payload was dropped.

use crate::proto::wire::WireError;

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

    pub(super) fn count(&mut self, reason: DropReason) {
        self.dropped[reason.index()] += 1;
    }
}
