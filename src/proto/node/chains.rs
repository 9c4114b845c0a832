//! Chain state that outlives a restart.
//!
//! The shell persists what [`Node::take_chain_updates`] returns in the same
//! store transaction as the messages that moved the chains, and at start-up
//! hands it back through [`Node::restore_chains`] before [`Node::resume`].
//! Three kinds of snapshot exist per chain:
//!
//! - **Sending**: our chain's current position. Restoring it means we never
//!   seal two messages with one message key, and that envelopes sealed
//!   before the restart stay readable by members who hold the chain.
//! - **Origin**: our chain as we first handed it out (a receiving snapshot
//!   with us as sender). Members may never have received that key before we
//!   stopped, so [`Node::resume`] hands it out again, ahead of the outbox,
//!   and every stored envelope of the chain can be opened by its recipient.
//!   A member that already follows the chain from that very origin ignores
//!   the repeat.
//! - **Receiving**: another member's chain as we follow it (position,
//!   skipped keys, replay window).
//!
//! # Forgetting origins
//!
//! An origin opens every message of its chain, past and future, so it is
//! kept only while a member may still need it: it is forgotten (dropped
//! from memory, and [`Node::take_forgotten_origins`] tells the shell to
//! delete it from the store) once every member the chain is for has
//! confirmed storing a key control that carried the origin itself, and
//! then a message of the chain (the receiver commits the chain state that
//! opened a message with it, so its copy of the chain is durable, from the
//! origin on).
//!
//! From then on each member opens whatever we send on the chain from its
//! own state (positions ahead of it, or kept as skipped keys, up to
//! `MAX_SKIP`), so after a restart the outbox goes out without the origin,
//! and so do resends of the chain's envelopes ([`Node::resend_envelope`]
//! accepts a chain whose sending state we held). A member that loses its
//! own store can no longer read what it had not stored of that chain; that
//! is the price of not keeping a key that opens everything.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::control::control_from_distribution;
use super::rooms::RoomKind;
use super::{Control, Node, NodeError};
use crate::proto::crypto::{
    ChainId, ChainRole, ChainSnapshot, Envelope, ReceiverChain, SecretKey, SenderChain,
    SenderKeyDistribution,
};
use crate::proto::ids::{MessageId, PeerId, RoomId};

/// Positions a chain restored from a version-1 snapshot (the exact
/// position of its last seal, as older versions wrote it) moves ahead, in
/// case the writes of its last seals failed before a crash.
pub const RESTORE_MARGIN: u64 = 64;

/// How far ahead of our sending chain the store's reservation lies. The
/// shell persists a reservation before the datagram of any seal at or past
/// the previous one leaves ([`Node::take_reservations`]), so a chain
/// restored from it never reuses a message key, and a restart that seals
/// nothing does not move the chain at all: other members never see a gap
/// larger than this from one of our messages to the next, however often we
/// restart (they skip at most `MAX_SKIP`).
pub const RESERVE_AHEAD: u64 = 64;

/// Largest number of ratchet steps spent to recognise an earlier key of a
/// chain we follow ([`ReceiverChain::descends_from`]), as far as a
/// forwarded envelope may be opened from its origin. Spent once per such
/// key: its digest is kept afterwards.
pub(super) const MAX_ANCESTRY_STEPS: u64 = crate::proto::crypto::MAX_ORIGIN_STEPS;

/// Which snapshot of a chain is due for the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Dirty {
    Sending,
    Origin,
    Receiving,
}

/// What the members hold of our chains whose origins we still keep.
#[derive(Default)]
pub(super) struct OriginProgress {
    /// Per chain and member.
    members: BTreeMap<(ChainId, PeerId), MemberProgress>,
    /// Key controls in flight that carry an origin, and to whom.
    controls: BTreeMap<MessageId, (ChainId, PeerId)>,
    /// Our messages in flight, with their chain and how many recipients
    /// have yet to confirm or refuse them.
    messages: BTreeMap<MessageId, (ChainId, usize)>,
    /// Origins forgotten since the shell last took them.
    forgotten: Vec<ChainId>,
    /// Our chains whose sending state we held in this life or restored:
    /// their envelopes may go out again without an origin.
    known: BTreeSet<ChainId>,
}

/// One member's progress with one of our chains.
#[derive(Default)]
struct MemberProgress {
    /// It confirmed storing a key control that carried the origin.
    origin_stored: bool,
    /// And afterwards a message of the chain.
    message_after: bool,
    /// Our messages of the chain it has not confirmed or refused yet.
    outstanding: BTreeSet<MessageId>,
}

impl MemberProgress {
    fn holds_chain(&self) -> bool {
        self.origin_stored && self.message_after
    }
}

impl OriginProgress {
    /// A key control was not stored (refused, or given up on).
    pub(super) fn control_lost(&mut self, id: &MessageId) {
        self.controls.remove(id);
    }

    fn forget(&mut self, chain: &ChainId) {
        // The messages in flight stay tracked (see `Node::rotate_if_due`).
        self.controls.retain(|_, (c, _)| c != chain);
        self.forgotten.push(*chain);
    }
}

/// The chain an envelope was sealed on.
pub(super) fn chain_of(envelope: &Envelope) -> ChainId {
    ChainId {
        room: envelope.header.room,
        epoch: envelope.header.epoch,
        sender: envelope.header.sender,
    }
}

/// Another member's chain as we follow it.
pub(super) struct Followed {
    pub(super) chain: ReceiverChain,
    /// Where the distribution we follow from started: an envelope below it
    /// was sealed before we had the key.
    pub(super) start: u64,
    /// Digest of that distribution, so a repeat of it changes nothing.
    /// `None` for a chain restored from the store.
    pub(super) origin: Option<[u8; 32]>,
}

/// Identifies a distribution: the same start and key give the same digest.
pub(super) fn origin_digest(distribution: &SenderKeyDistribution) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("kith chain origin v1");
    hasher.update(&distribution.start_seq.to_le_bytes());
    hasher.update(distribution.chain_key.as_bytes());
    *hasher.finalize().as_bytes()
}

impl Node {
    /// Snapshots of every chain that moved since the last call: commit them
    /// with the messages of the same round (see the module docs).
    pub fn take_chain_updates(&mut self) -> Vec<ChainSnapshot> {
        let dirty = std::mem::take(&mut self.dirty_chains);
        dirty
            .into_iter()
            .filter_map(|(chain, kind)| match kind {
                Dirty::Sending => self.reserve(chain),
                Dirty::Origin => self.origins.get(&chain).cloned(),
                Dirty::Receiving => self.receivers.get(&chain).map(|f| {
                    let mut snapshot = f.chain.snapshot(f.start);
                    snapshot.origin = f.origin;
                    snapshot
                }),
            })
            .collect()
    }

    /// Only the sending reservations due (see [`RESERVE_AHEAD`]): the shell
    /// persists these before the datagrams of the round leave, so no
    /// message key sealed in it can be handed out again after a crash.
    /// Empty on all but about one round in `RESERVE_AHEAD` seals.
    ///
    /// A new chain's origin comes with its first reservation: after a
    /// crash the origin is handed out again, so a member that never got
    /// the new key (it was in flight) can still read what was sealed.
    pub fn take_reservations(&mut self) -> Vec<ChainSnapshot> {
        let due: Vec<(ChainId, Dirty)> = self
            .dirty_chains
            .iter()
            .filter(|(_, kind)| *kind != Dirty::Receiving)
            .copied()
            .collect();
        due.into_iter()
            .filter_map(|(chain, kind)| {
                self.dirty_chains.remove(&(chain, kind));
                match kind {
                    Dirty::Sending => self.reserve(chain),
                    _ => self.origins.get(&chain).cloned(),
                }
            })
            .collect()
    }

    /// Replaces our sending chain of direct room `room` by a fresh one if
    /// it is due ([`NodeConfig::rotate_after`], or
    /// `rotate_after_messages`) and may go: its origin is forgotten (the
    /// peer holds the chain) and none of our messages of it are
    /// unconfirmed, so nothing sealed on it will ever need its keys
    /// again. The fresh key goes ahead of the next message on the same
    /// ordered stream, under the current pairwise session; the peer then
    /// follows the new chain (a newer distribution replaces the one it
    /// follows) and forgets the old one.
    pub(super) fn rotate_if_due(&mut self, now: Instant, room: RoomId) {
        let Some(state) = self.rooms.get(&room) else {
            return;
        };
        let Some(peer) = state.direct_peer() else {
            return;
        };
        let chain = state.chain.chain();
        let next = state.chain.next_seq();
        let due = now >= state.chain_since + self.config.rotate_after
            || next.saturating_sub(state.chain_start) >= self.config.rotate_after_messages;
        // (Not while the shell has yet to delete the forgotten origin: it
        // would delete the new one, stored under the same chain.)
        let settled = !self.origins.contains_key(&chain)
            && !self.origin_progress.forgotten.contains(&chain)
            && self
                .origin_progress
                .members
                .get(&(chain, peer))
                .is_none_or(|m| m.outstanding.is_empty());
        if !due || !settled {
            return;
        }
        let fresh = SenderChain::restore(chain, next, SecretKey::random(&mut self.rng));
        // What the peer held of the old key says nothing of the new one.
        self.origin_progress.members.retain(|(c, _), _| *c != chain);
        self.origin_progress
            .controls
            .retain(|_, (c, _)| *c != chain);
        self.origin_sent.retain(|(c, _)| *c != chain);
        self.adopt_chain(&fresh);
        if let Some(state) = self.rooms.get_mut(&room) {
            // Dropping the old chain wipes its key.
            state.chain = fresh;
            state.key_sent = false;
            // The next seal reserves on the new chain first.
            state.reserved = 0;
            state.chain_since = now;
            state.chain_start = next;
        }
        self.stats.chains_rotated += 1;
    }

    /// A new reservation for our chain `chain`, `RESERVE_AHEAD` past where
    /// it is now.
    fn reserve(&mut self, chain: ChainId) -> Option<ChainSnapshot> {
        let room = self
            .rooms
            .get_mut(&chain.room)
            .filter(|r| r.chain.chain() == chain)?;
        let snapshot = room.chain.reservation(RESERVE_AHEAD).ok()?;
        room.reserved = snapshot.next_seq;
        Some(snapshot)
    }

    /// Takes back chains from the store at start-up, after the contacts and
    /// rooms are back and before [`Node::resume`]. Snapshots of chains that
    /// are no longer current (an older epoch) still restore origins and
    /// followed chains, so old envelopes stay readable.
    pub fn restore_chains(&mut self, snapshots: Vec<ChainSnapshot>) {
        // The origin of the fresh chain a room was made with is not that
        // of the chain restored in its place: the stored origin (if it was
        // not forgotten) takes its place, whatever order they come in.
        for snapshot in &snapshots {
            let chain = snapshot.chain;
            let replaced = snapshot.role == ChainRole::Sending
                && SenderChain::from_snapshot(snapshot).is_ok()
                && self
                    .rooms
                    .get(&chain.room)
                    .is_some_and(|room| room.chain.chain() == chain);
            if replaced {
                self.origins.remove(&chain);
                self.dirty_chains.remove(&(chain, Dirty::Origin));
            }
        }
        for snapshot in snapshots {
            let chain = snapshot.chain;
            match snapshot.role {
                ChainRole::Sending => {
                    let Some(room) = self.rooms.get_mut(&chain.room) else {
                        continue;
                    };
                    if room.chain.chain() != chain {
                        // An older epoch's: we sealed on it, and its
                        // envelopes may go out again.
                        self.origin_progress.known.insert(chain);
                        continue;
                    }
                    let Ok(mut restored) = SenderChain::from_snapshot(&snapshot) else {
                        continue;
                    };
                    self.origin_progress.known.insert(chain);
                    if snapshot.reserved {
                        // Nothing at or after it was sealed: go on from
                        // there, and reserve again only when sealing. (The
                        // fresh chain the room was made with asked for a
                        // reservation of its own: it is gone, and so is
                        // that request, or every start would move the
                        // chain ahead again.)
                        room.reserved = restored.next_seq();
                        self.dirty_chains.remove(&(chain, Dirty::Sending));
                    } else if restored.skip(RESTORE_MARGIN).is_ok() {
                        room.reserved = 0;
                        self.dirty_chains.insert((chain, Dirty::Sending));
                    } else {
                        continue;
                    }
                    room.chain_start = restored.next_seq();
                    room.chain_since = self.now;
                    room.chain = restored;
                    self.restored.insert(chain.room);
                }
                ChainRole::Receiving if chain.sender == self.me => {
                    self.origins.insert(chain, snapshot);
                }
                ChainRole::Receiving => {
                    if let Ok(followed) = ReceiverChain::from_snapshot(&snapshot) {
                        self.receivers.insert(
                            chain,
                            Followed {
                                chain: followed,
                                start: snapshot.start_seq,
                                origin: snapshot.origin,
                            },
                        );
                    }
                }
            }
        }
    }

    /// After a start-up: hands our chains to the members of every room
    /// again. A restored chain goes out from its origin (so everything
    /// sealed on it before the restart can be opened); a new one from its
    /// start. Direct rooms with a new chain send it with the next message.
    pub fn resume(&mut self, now: Instant) {
        self.advance(now);
        let rooms: Vec<_> = self.rooms.keys().copied().collect();
        for room in rooms {
            let Some(state) = self.rooms.get(&room) else {
                continue;
            };
            let chain = state.chain.chain();
            let members: Vec<PeerId> = match &state.kind {
                RoomKind::Direct { peer } => vec![*peer],
                RoomKind::Group(group) => group
                    .members
                    .iter()
                    .copied()
                    .filter(|p| *p != self.me)
                    .collect(),
            };
            let restored = self.restored.remove(&room);
            if restored && !self.origins.contains_key(&chain) {
                // Its origin was forgotten: every member held the chain
                // then, and follows it from its own store.
                if let Some(state) = self.rooms.get_mut(&room) {
                    state.key_sent = true;
                }
            } else if restored {
                if let Some(state) = self.rooms.get_mut(&room) {
                    state.key_sent = true;
                }
                for peer in members {
                    self.send_origin(now, chain, peer);
                }
            } else if state.group().is_some() {
                for peer in members {
                    self.send_group_key(now, room, peer);
                }
            }
        }
        // Rooms we run that were kept before admins named successors:
        // name one now, so a leave of ours no longer falls back on the
        // lowest peer id.
        let me = self.me;
        let unnamed: Vec<RoomId> = self
            .rooms
            .iter()
            .filter(|(_, state)| {
                state
                    .group()
                    .is_some_and(|g| g.admin == me && g.successor.is_none())
            })
            .map(|(id, _)| *id)
            .collect();
        for room in unnamed {
            self.name_successor(&room);
            if self.group(&room).is_some_and(|g| g.successor.is_some()) {
                for peer in self.others(&room) {
                    self.send_successor(now, room, peer);
                }
                // For the shell to keep.
                self.events
                    .push_back(super::NodeEvent::RoomChanged { room });
            }
        }
        self.pump_events(now);
    }

    /// Hands `peer` the origin of our chain `chain` over the pairwise
    /// stream, once per peer and chain in this node's life.
    pub(super) fn send_origin(&mut self, now: Instant, chain: ChainId, peer: PeerId) {
        if chain.epoch < self.shared_epoch(&chain.room, &peer) {
            // A chain of an epoch before `peer` was in the room.
            return;
        }
        if !self.origin_sent.insert((chain, peer)) {
            return;
        }
        let Some(origin) = self.origins.get(&chain) else {
            return;
        };
        let distribution = SenderKeyDistribution {
            chain,
            start_seq: origin.next_seq,
            chain_key: origin.chain_key.clone(),
        };
        let control = control_from_distribution(&distribution);
        match self.queue_pairwise(now, peer, &control) {
            Ok(id) => self.origin_control_sent(id, &control, peer),
            Err(_) => {
                // Not sent: the next resend tries again.
                self.origin_sent.remove(&(chain, peer));
                self.stats.control_not_queued += 1;
            }
        }
    }

    /// Notes a key control of ours queued to `peer`: if it carries the
    /// origin of our chain, its "stored" counts towards forgetting it.
    pub(super) fn origin_control_sent(&mut self, id: MessageId, control: &Control, peer: PeerId) {
        let Control::SenderKey {
            room,
            epoch,
            start_seq,
            ..
        } = control
        else {
            return;
        };
        let chain = ChainId {
            room: *room,
            epoch: *epoch,
            sender: self.me,
        };
        if self
            .origins
            .get(&chain)
            .is_some_and(|origin| origin.next_seq == *start_seq)
        {
            self.origin_progress.controls.insert(id, (chain, peer));
        }
    }

    /// A control of ours was stored by its recipient.
    pub(super) fn origin_control_stored(&mut self, id: MessageId) {
        if let Some((chain, peer)) = self.origin_progress.controls.remove(&id) {
            self.origin_progress
                .members
                .entry((chain, peer))
                .or_default()
                .origin_stored = true;
        }
    }

    /// Our message `id` of `chain` went to `recipients`.
    pub(super) fn own_message_sent(
        &mut self,
        chain: ChainId,
        id: MessageId,
        recipients: &[PeerId],
    ) {
        // Tracked after the origin is forgotten too: a chain is rotated
        // only when none of its messages is unconfirmed.
        let mut added = 0;
        for peer in recipients {
            if self
                .origin_progress
                .members
                .entry((chain, *peer))
                .or_default()
                .outstanding
                .insert(id)
            {
                added += 1;
            }
        }
        if added > 0 {
            self.origin_progress
                .messages
                .entry(id)
                .or_insert((chain, 0))
                .1 += added;
        }
    }

    /// `to` stored our message `id` (or refused it for good).
    pub(super) fn own_message_resolved(&mut self, id: MessageId, to: PeerId, stored: bool) {
        let Some((chain, _)) = self.origin_progress.messages.get(&id).copied() else {
            return;
        };
        let mut resolved = false;
        if let Some(member) = self.origin_progress.members.get_mut(&(chain, to)) {
            resolved = member.outstanding.remove(&id);
            if stored && member.origin_stored {
                member.message_after = true;
            }
        }
        if resolved && let Some((_, count)) = self.origin_progress.messages.get_mut(&id) {
            *count -= 1;
            if *count == 0 {
                self.origin_progress.messages.remove(&id);
            }
        }
        self.forget_origin_if_held(chain);
    }

    /// The members our chain `chain` is for: those of its room who were
    /// in it by its epoch (see [`Node::shared_epoch`]).
    pub(super) fn origin_needed_by(&self, chain: &ChainId) -> Vec<PeerId> {
        let Some(state) = self.rooms.get(&chain.room) else {
            return Vec::new();
        };
        match &state.kind {
            RoomKind::Direct { peer } => vec![*peer],
            RoomKind::Group(group) => group
                .members
                .iter()
                .copied()
                .filter(|p| *p != self.me && self.shared_epoch(&chain.room, p) <= chain.epoch)
                .collect(),
        }
    }

    /// Forgets the origin of our chain `chain` once every member it is for
    /// holds the chain (see the module docs).
    fn forget_origin_if_held(&mut self, chain: ChainId) {
        if !self.origins.contains_key(&chain) {
            return;
        }
        let needed_by = self.origin_needed_by(&chain);
        if needed_by.is_empty() {
            return;
        }
        let held = needed_by.iter().all(|peer| {
            self.origin_progress
                .members
                .get(&(chain, *peer))
                .is_some_and(MemberProgress::holds_chain)
        });
        if held {
            // Dropping the snapshot wipes its key.
            self.origins.remove(&chain);
            self.dirty_chains.remove(&(chain, Dirty::Origin));
            self.origin_sent.retain(|(c, _)| *c != chain);
            self.origin_progress.known.insert(chain);
            self.origin_progress.forget(&chain);
        }
    }

    /// Origins of our chains forgotten since the last call: the shell
    /// deletes them from its store (after anything journaled before is
    /// settled, so no older copy comes back).
    pub fn take_forgotten_origins(&mut self) -> Vec<ChainId> {
        std::mem::take(&mut self.origin_progress.forgotten)
    }

    /// Whether we still keep the origin of our chain `chain`.
    pub fn holds_origin(&self, chain: &ChainId) -> bool {
        self.origins.contains_key(chain)
    }

    /// Records a new sending chain of ours: its origin and position are due
    /// for the store.
    pub(super) fn adopt_chain(&mut self, chain: &SenderChain) {
        let distribution = chain.distribution();
        let origin =
            ReceiverChain::from_distribution(&distribution).snapshot(distribution.start_seq);
        let id = chain.chain();
        self.origin_progress.known.insert(id);
        self.origins.insert(id, origin);
        self.dirty_chains.insert((id, Dirty::Origin));
        self.dirty_chains.insert((id, Dirty::Sending));
    }

    /// Whether we know the origin of the chain `envelope` was sealed on,
    /// so [`Node::resend_envelope`] can make it readable, or forgot it
    /// because every member holds the chain.
    pub(super) fn origin_known(&self, chain: &ChainId) -> Result<(), NodeError> {
        if self.origins.contains_key(chain) || self.origin_progress.known.contains(chain) {
            Ok(())
        } else {
            Err(NodeError::UnknownChain)
        }
    }
}
