//! How a node is configured.

use std::time::Duration;

use crate::proto::reliable;

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
