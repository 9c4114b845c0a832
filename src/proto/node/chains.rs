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

use std::time::Instant;

use super::{Followed, Node, NodeError, RoomKind, control_from_distribution};
use crate::proto::crypto::{
    ChainId, ChainRole, ChainSnapshot, ReceiverChain, SenderChain, SenderKeyDistribution,
};
use crate::proto::ids::PeerId;

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
    pub fn take_reservations(&mut self) -> Vec<ChainSnapshot> {
        let due: Vec<ChainId> = self
            .dirty_chains
            .iter()
            .filter(|(_, kind)| *kind == Dirty::Sending)
            .map(|(chain, _)| *chain)
            .collect();
        due.into_iter()
            .filter_map(|chain| {
                self.dirty_chains.remove(&(chain, Dirty::Sending));
                self.reserve(chain)
            })
            .collect()
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
        for snapshot in snapshots {
            let chain = snapshot.chain;
            match snapshot.role {
                ChainRole::Sending => {
                    let Some(room) = self.rooms.get_mut(&chain.room) else {
                        continue;
                    };
                    if room.chain.chain() != chain {
                        continue;
                    }
                    let Ok(mut restored) = SenderChain::from_snapshot(&snapshot) else {
                        continue;
                    };
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
            let restored = self.restored.remove(&room) && self.origins.contains_key(&chain);
            if restored {
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
        if self.queue_pairwise(now, peer, &control).is_err() {
            // Not sent: the next resend tries again.
            self.origin_sent.remove(&(chain, peer));
            self.stats.control_not_queued += 1;
        }
    }

    /// Records a new sending chain of ours: its origin and position are due
    /// for the store.
    pub(super) fn adopt_chain(&mut self, chain: &SenderChain) {
        let distribution = chain.distribution();
        let origin =
            ReceiverChain::from_distribution(&distribution).snapshot(distribution.start_seq);
        let id = chain.chain();
        self.origins.insert(id, origin);
        self.dirty_chains.insert((id, Dirty::Origin));
        self.dirty_chains.insert((id, Dirty::Sending));
    }

    /// Whether we know the origin of the chain `envelope` was sealed on,
    /// so [`Node::resend_envelope`] can make it readable.
    pub(super) fn origin_known(&self, chain: &ChainId) -> Result<(), NodeError> {
        if self.origins.contains_key(chain) {
            Ok(())
        } else {
            Err(NodeError::UnknownChain)
        }
    }
}
