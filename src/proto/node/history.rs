//! History between members: the transport for set reconciliation
//! ([`crate::proto::sync`], driven by [`crate::proto::sync::SyncManager`]) and the
//! forwarding of envelopes a member missed.
//!
//! - Reconciliation messages ([`Control::Sync`]) travel on the pairwise
//!   stream and surface as [`NodeEvent::SyncReceived`]; the node only checks
//!   that the room is shared with the peer.
//! - Any member may forward an envelope of a room it shares with the
//!   receiver ([`Node::forward`]). The receiver accepts it only if its
//!   author is a member (or us), checks the author's signature, and opens it
//!   statelessly from the author's chain origin, so a message reaches a
//!   member who was away even when its author is away now.
//! - The origin of a third member's chain goes ahead of the first envelope
//!   forwarded from it ([`Control::Origin`]); a member could read that chain
//!   anyway, and a wrong origin only makes the envelope unreadable.

use std::time::{Duration, Instant};

/// Ratchet steps per forwarding member and second spent opening forwarded
/// envelopes (about 80 ms of blake3): ample for catching up, and a bound on
/// what a hostile member can make us compute. An envelope over budget is
/// stored unreadable, not lost.
pub const FORWARD_STEPS_PER_SECOND: u64 = 1 << 20;

/// Chain origins of other members held per room: one per member and epoch
/// we are in, for a few epochs at most (older ones are of no use once
/// their history is caught up).
/// (chain, peer) pairs remembered as handed an origin already.
const MAX_FORWARDED_ORIGINS: usize = 1 << 16;

const MAX_ORIGINS_PER_ROOM: usize = 4 * super::control::MAX_ROOM_MEMBERS;

use super::chains::chain_of;
use super::rooms::RoomKind;
use super::{Control, DropReason, Node, NodeError, NodeEvent, Receipt, direct_room};
use crate::proto::crypto::{
    ChainId, Envelope, SenderKeyDistribution, open_envelope, open_envelope_from_origin,
};
use crate::proto::ids::{MessageId, PeerId, RoomId};

impl Node {
    /// Rooms we share with `peer`: our direct room and every group room it
    /// is a member of.
    pub fn shared_rooms(&self, peer: &PeerId) -> Vec<RoomId> {
        let mut rooms: Vec<RoomId> = self
            .rooms
            .iter()
            .filter(|(_, r)| self.shares(r, peer))
            .map(|(id, _)| *id)
            .collect();
        rooms.sort();
        rooms
    }

    /// The secret our current session with `peer` shares with it, for
    /// opening reconciliations without sending a salt.
    pub fn sync_secret(&self, peer: &PeerId) -> Option<[u8; 32]> {
        self.peers
            .get(peer)?
            .session
            .as_ref()
            .map(|s| s.exporter("kith sync secret v1"))
    }

    /// Sends one reconciliation message for `room` to `peer`.
    pub fn send_sync(
        &mut self,
        now: Instant,
        peer: PeerId,
        room: RoomId,
        payload: Vec<u8>,
    ) -> Result<(), NodeError> {
        self.advance(now);
        self.check_shared(&room, &peer)?;
        self.queue_pairwise(now, peer, &Control::Sync { room, payload })?;
        self.pump_events(now);
        Ok(())
    }

    /// Sends one file-protocol message (`proto::files::FileMessage`) about
    /// a file of `room` to `peer`, a member of it, on our pairwise stream.
    /// `Err(NodeError::Backpressure)` when the stream is full: try later.
    pub fn send_file(
        &mut self,
        now: Instant,
        peer: PeerId,
        room: RoomId,
        payload: Vec<u8>,
    ) -> Result<(), NodeError> {
        self.advance(now);
        self.check_shared(&room, &peer)?;
        self.queue_pairwise(now, peer, &Control::File { room, payload })?;
        self.pump_events(now);
        Ok(())
    }

    /// A file-protocol message from `receipt.from` about a file of `room`:
    /// confirmed at once (nothing of it is stored as a message), handed to
    /// the shell only if `room` is shared with the sender.
    pub(super) fn on_file(
        &mut self,
        now: Instant,
        receipt: Receipt,
        room: RoomId,
        payload: Vec<u8>,
    ) {
        let event = NodeEvent::FileReceived {
            room,
            peer: receipt.from,
            payload,
        };
        self.hand_up_if_shared(now, receipt, room, event);
    }

    /// Forwards a stored envelope (ours or another member's) of a room we
    /// share with `peer`.
    pub fn forward(
        &mut self,
        now: Instant,
        peer: PeerId,
        envelope: &[u8],
    ) -> Result<(), NodeError> {
        self.advance(now);
        let parsed = Envelope::parse(envelope).map_err(|_| NodeError::NotOurEnvelope)?;
        let room = parsed.header.room;
        self.check_shared(&room, &peer)?;
        if parsed.header.epoch < self.shared_epoch(&room, &peer) {
            // Said before `peer` was in the room: not for it to read, so
            // neither the envelope nor its chain's origin goes out.
            return Err(NodeError::BeforeJoin(peer));
        }
        let chain = chain_of(&parsed);
        let author = parsed.header.sender;
        if author == self.me {
            self.send_origin(now, chain, peer);
        } else if author != peer
            && let Some(origin) = self.follow_origins.get(&chain)
            && self.forwarded_origins.insert((chain, peer))
        {
            if self.forwarded_origins.len() > MAX_FORWARDED_ORIGINS {
                // Only spares sending an origin twice: start over.
                self.forwarded_origins.clear();
                self.forwarded_origins.insert((chain, peer));
            }
            let control = Control::Origin {
                room: chain.room,
                epoch: chain.epoch,
                sender: chain.sender,
                start_seq: origin.start_seq,
                chain_key: *origin.chain_key.as_bytes(),
            };
            self.queue_pairwise(now, peer, &control)?;
        }
        self.queue_pairwise(
            now,
            peer,
            &Control::Forward {
                envelope: envelope.to_vec(),
            },
        )?;
        self.stats.forwarded += 1;
        self.pump_events(now);
        Ok(())
    }

    // --- receiving --------------------------------------------------------

    pub(super) fn on_sync(
        &mut self,
        now: Instant,
        receipt: Receipt,
        room: RoomId,
        payload: Vec<u8>,
    ) {
        let event = NodeEvent::SyncReceived {
            room,
            peer: receipt.from,
            payload,
        };
        self.hand_up_if_shared(now, receipt, room, event);
    }

    /// Confirms a payload that is not stored as a message at once, and
    /// hands `event` to the shell only if `room` is shared with the
    /// sender; otherwise it is dropped and counted.
    fn hand_up_if_shared(
        &mut self,
        now: Instant,
        receipt: Receipt,
        room: RoomId,
        event: NodeEvent,
    ) {
        self.reliable
            .confirm_stored(now, receipt.room, receipt.from, receipt.seq);
        let shared = self.check_shared(&room, &receipt.from);
        if shared.is_ok() {
            self.events.push_back(event);
        } else {
            if let Err(NodeError::NotMember(peer)) = shared {
                self.tell_not_a_member(now, room, peer);
            }
            self.stats.count(DropReason::Foreign);
        }
    }

    pub(super) fn on_origin(&mut self, from: PeerId, distribution: SenderKeyDistribution) {
        let chain = distribution.chain;
        let joined = self.joined_epoch(&chain.room);
        // Only epochs we are in: from the one we joined in to the current
        // one (an origin of an earlier epoch would open history from
        // before we joined; a later or absurd one is a malicious member's
        // way to grow our memory).
        let is_member = self.rooms.get(&chain.room).is_some_and(|r| match &r.kind {
            RoomKind::Group(group) => {
                group.members.contains(&from)
                    && group.members.contains(&chain.sender)
                    && (joined..=group.epoch).contains(&chain.epoch)
            }
            RoomKind::Direct { .. } => false,
        });
        if !is_member || chain.sender == self.me {
            self.stats.count(DropReason::Foreign);
            return;
        }
        if !self.follow_origins.contains_key(&chain)
            && self
                .follow_origins
                .keys()
                .filter(|c| c.room == chain.room)
                .count()
                >= MAX_ORIGINS_PER_ROOM
        {
            self.stats.count(DropReason::HeldOverflow);
            return;
        }
        // What the author told us itself is never replaced by hearsay.
        self.follow_origins.entry(chain).or_insert(distribution);
    }

    pub(super) fn on_forward(&mut self, now: Instant, receipt: Receipt, bytes: Vec<u8>) {
        let Ok(envelope) = Envelope::parse(&bytes) else {
            self.reject(now, receipt, DropReason::EnvelopeRejected);
            return;
        };
        let room = envelope.header.room;
        let author = envelope.header.sender;
        let author_ok = author == self.me
            || self.rooms.get(&room).is_some_and(|r| match &r.kind {
                RoomKind::Direct { peer } => *peer == author,
                RoomKind::Group(group) => group.members.contains(&author),
            });
        if self.blocked.contains(&author) {
            // A blocked peer's words are not stored, whoever carries them.
            self.reject(now, receipt, DropReason::Blocked);
            return;
        }
        if self.check_shared(&room, &receipt.from).is_err() || !author_ok {
            self.reject(now, receipt, DropReason::Foreign);
            return;
        }
        if envelope.header.epoch < self.joined_epoch(&room) {
            // From before we were in the room: not ours to read or keep.
            self.reject(now, receipt, DropReason::Foreign);
            return;
        }
        let chain = chain_of(&envelope);
        // A reconciliation can race the author's own stream and forward a
        // message still on its way to us: the chain we follow opens it in
        // one step, and a copy of one it already opened is a duplicate, not
        // work (opening from the origin costs a step per position).
        if let (Some(sender), Some(followed)) =
            (self.peers.get(&author), self.receivers.get_mut(&chain))
            && envelope.header.seq >= followed.start
        {
            if followed.chain.has_opened(envelope.header.seq) {
                self.already_stored(now, receipt);
                return;
            }
            if let Ok(body) = open_envelope(&envelope, &sender.public, &mut followed.chain) {
                self.dirty_chains
                    .insert((chain, super::chains::Dirty::Receiving));
                self.stats.forwards_opened += 1;
                self.surface(now, envelope, bytes, body, receipt);
                return;
            }
        }
        let public = if author == self.me {
            Some(self.identity.public())
        } else {
            self.peers.get(&author).map(|p| p.public.clone())
        };
        let origin = self.origin_of(&chain);
        let opened = match (public, origin) {
            (Some(public), Some(origin)) => {
                // Opening costs one ratchet step per position past the
                // origin: bounded per forwarder and second, so a member
                // cannot make us spin by forwarding far-away positions.
                let steps = envelope.header.seq.saturating_sub(origin.start_seq);
                if self.spend_forward_work(now, receipt.from, steps) {
                    open_envelope_from_origin(&envelope, &public, &origin).ok()
                } else {
                    self.stats.forward_work_refused += 1;
                    None
                }
            }
            _ => None,
        };
        match opened {
            Some(body) => {
                self.stats.forwards_opened += 1;
                self.surface(now, envelope, bytes, body, receipt);
            }
            // Authentic but not readable here (yet): stored as such.
            None => self.surface_undecryptable(now, envelope, bytes, receipt),
        }
    }

    /// Opens an envelope the shell stored unreadable (its chain's key had
    /// not arrived, see [`NodeEvent::Undecryptable`]) now that the key is
    /// here ([`NodeEvent::ChainKnown`]), checking its author's signature.
    /// `None` if it still cannot be read. A position of a chain we follow
    /// counts as opened from now on, so the shell stores the readable copy
    /// with the chain state ([`Node::take_chain_updates`]).
    pub fn open_stored(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let envelope = Envelope::parse(bytes).ok()?;
        let author = envelope.header.sender;
        let public = if author == self.me {
            self.identity.public()
        } else {
            self.peers.get(&author)?.public.clone()
        };
        let chain = chain_of(&envelope);
        if let Some(followed) = self.receivers.get_mut(&chain)
            && envelope.header.seq >= followed.start
            && !followed.chain.has_opened(envelope.header.seq)
            && let Ok(body) = open_envelope(&envelope, &public, &mut followed.chain)
        {
            self.dirty_chains
                .insert((chain, super::chains::Dirty::Receiving));
            return Some(body);
        }
        let origin = self.origin_of(&chain)?;
        open_envelope_from_origin(&envelope, &public, &origin).ok()
    }

    // --- helpers ----------------------------------------------------------

    /// Takes `steps` from `peer`'s budget of ratchet steps for opening
    /// forwarded envelopes ([`FORWARD_STEPS_PER_SECOND`], refilled each
    /// second); `false` if it would overdraw it.
    fn spend_forward_work(&mut self, now: Instant, peer: PeerId, steps: u64) -> bool {
        let budget = self.forward_work.entry(peer).or_insert((now, 0));
        if now.saturating_duration_since(budget.0) >= Duration::from_secs(1) {
            *budget = (now, 0);
        }
        if budget.1.saturating_add(steps) > FORWARD_STEPS_PER_SECOND {
            return false;
        }
        budget.1 += steps;
        true
    }

    /// The distribution a chain started from, ours or another member's.
    pub(super) fn origin_of(&self, chain: &ChainId) -> Option<SenderKeyDistribution> {
        if chain.sender == self.me {
            return self.origins.get(chain).map(|o| SenderKeyDistribution {
                chain: *chain,
                start_seq: o.next_seq,
                chain_key: o.chain_key.clone(),
            });
        }
        self.follow_origins.get(chain).cloned()
    }

    fn shares(&self, room: &super::RoomState, peer: &PeerId) -> bool {
        match &room.kind {
            RoomKind::Direct { peer: other } => other == peer,
            RoomKind::Group(group) => group.members.contains(peer),
        }
    }

    pub(super) fn check_shared(&self, room: &RoomId, peer: &PeerId) -> Result<(), NodeError> {
        match self.rooms.get(room) {
            Some(state) if self.shares(state, peer) => Ok(()),
            Some(_) => Err(NodeError::NotMember(*peer)),
            None => Err(NodeError::UnknownRoom(*room)),
        }
    }

    /// Queues a control message on the direct stream with `peer` (unique
    /// id per send, acknowledgement kept from the shell).
    pub(super) fn queue_pairwise(
        &mut self,
        now: Instant,
        peer: PeerId,
        control: &Control,
    ) -> Result<MessageId, NodeError> {
        if !self.peers.contains_key(&peer) {
            return Err(NodeError::UnknownPeer(peer));
        }
        let direct = direct_room(self.me, peer);
        let bytes = control.encode();
        let id: MessageId = self.next_control_id(&bytes);
        self.reliable
            .send(now, direct, id, &bytes)
            .map_err(super::error::send_error)?;
        self.controls.insert(id);
        Ok(id)
    }
}
