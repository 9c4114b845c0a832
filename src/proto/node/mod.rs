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
//! Group rooms (`rooms/`) send their reliable packets once to the LAN's
//! multicast group as group frames (`group`).
//!
//! # Layout
//!
//! This file holds the [`Node`] struct and its run-loop API; each part
//! adds its own methods to `Node`, and the state it keeps lives in structs
//! of its own:
//!
//! - the API's types: `config`, `events`, `stats` ([`DropReason`]), `error`;
//! - the transport: `peer` (a contact's sessions, handshake and timers),
//!   `handshake`, `session` (sealed frames, keep-alives), `transmit`,
//!   `contacts`, `strangers`, `openings`;
//! - what travels on it: `control` (the payloads), `inbox` (payloads
//!   received), `direct` (the room of two), `rooms/` (group rooms),
//!   `group` (multicast frames), `signing`, `chains`, `history`,
//!   `profiles`;
//! - `tests/`, one file per topic.

mod chains;
mod config;
mod contacts;
mod control;
mod direct;
mod error;
mod events;
mod group;
mod handshake;
mod history;
mod inbox;
mod openings;
mod peer;
mod profiles;
mod rooms;
mod session;
mod signing;
mod stats;
mod strangers;
#[cfg(test)]
mod tests;
mod token_bucket;
mod transmit;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use self::chains::Followed;
pub use self::config::NodeConfig;
pub use self::control::{
    CONTROL_VERSION, Control, ControlError, MAX_ROOM_MEMBERS, MAX_ROOM_NAME, MemberKey,
};
pub use self::direct::direct_room;
pub use self::error::NodeError;
pub use self::events::{Heard, NodeEvent, NodeTransmit, Receipt, SentMessage};
pub use self::group::{GROUP_TAG_PERIOD_MS, group_tag, open_group_payload, seal_group_payload};
pub use self::history::FORWARD_STEPS_PER_SECOND;
use self::inbox::HeldEnvelope;
pub use self::openings::{
    ALL_OPENINGS_BURST, ALL_OPENINGS_RATE, CONTACT_OPENING_BURST, CONTACT_OPENING_RATE,
    OPENING_GRACE,
};
use self::peer::Peer;
pub use self::peer::SILENCE_REHANDSHAKE;
use self::rooms::RoomState;
pub use self::rooms::{GroupKey, RoomFounding, RoomInfo};
pub use self::stats::{DropReason, NodeStats};
pub use self::strangers::{MAX_STRANGERS, STRANGER_BURST, STRANGER_RATE};
use self::token_bucket::TokenBucket;
use super::crypto::{
    ChainId, ChainSnapshot, ENVELOPE_OVERHEAD, Identity, PairwiseSession, SenderKeyDistribution,
    TAG_LEN, UnsignedEnvelope,
};
use super::hlc::HybridClock;
use super::ids::{MessageId, PeerId, RoomId};
use super::reliable::{self, MAX_MESSAGE, Reliable};
use super::wire::{Datagram, Frame};

/// Envelope kind byte of a plain UTF-8 text message.
pub const KIND_TEXT: u8 = 1;

/// Envelope kind byte of a file offer: the body is a
/// [`crate::proto::files::FileOffer`].
pub const KIND_FILE: u8 = 2;

/// Largest text (in bytes) one direct message may carry: the reliable
/// layer's message limit minus the envelope and control framing.
pub const MAX_TEXT: usize = MAX_MESSAGE - ENVELOPE_OVERHEAD - TAG_LEN - 64;

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
    stranger_budget: TokenBucket,
    /// Openings in any contact's name we may still answer.
    all_openings: TokenBucket,
    /// Ratchet steps each forwarding member made us spend this second.
    forward_work: BTreeMap<PeerId, (Instant, u64)>,
    /// When we last told a peer that spoke of one of our rooms that it is
    /// not in it (see [`Node::tell_not_a_member`]), bounded.
    told_not_member: BTreeMap<(RoomId, PeerId), Instant>,
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
            all_openings: TokenBucket::new(
                now,
                openings::ALL_OPENINGS_RATE,
                openings::ALL_OPENINGS_BURST,
            ),
            forwarded_origins: BTreeSet::new(),
            origin_progress: chains::OriginProgress::default(),
            forward_work: BTreeMap::new(),
            told_not_member: BTreeMap::new(),
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

    /// Re-anchors the wall clock used for message timestamps.
    pub fn set_wall_clock(&mut self, now: Instant, wall_millis: u64) {
        self.advance(now);
        self.wall_anchor = (now, wall_millis);
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
            .filter(|(_, p)| p.next_timer().is_some_and(|t| t <= now))
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
            .filter_map(Peer::next_timer)
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

    fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    fn wall_millis(&self, now: Instant) -> u64 {
        let (at, millis) = self.wall_anchor;
        let elapsed = now.saturating_duration_since(at).as_millis();
        millis.saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }
}
