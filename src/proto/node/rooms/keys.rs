//! Sender keys in group rooms: ours handed to every member, theirs
//! installed (or held while they come early), and what waited for them
//! opened.

use std::time::Instant;

use crate::proto::crypto::SenderKeyDistribution;
use crate::proto::crypto::{ChainId, ReceiverChain};
use crate::proto::ids::{PeerId, RoomId};
use crate::proto::node::chains::{Dirty, origin_digest};
use crate::proto::node::control::control_from_distribution;
use crate::proto::node::{Control, DropReason, Followed, Node, NodeEvent};

/// Group keys held at most while their room or epoch is not known yet.
pub(super) const MAX_EARLY_KEYS: usize = 256;

impl Node {
    /// A group sender key from `distribution.chain.sender`'s pairwise
    /// stream.
    pub(in crate::proto::node) fn on_group_key(
        &mut self,
        now: Instant,
        distribution: SenderKeyDistribution,
    ) {
        let chain = distribution.chain;
        match self.group(&chain.room) {
            Some(group) if chain.epoch < group.joined.get(&self.me).copied().unwrap_or(0) => {
                // A key of an epoch before we were in the room: what was
                // said then is not ours to read.
                self.stats.count(DropReason::Foreign);
            }
            Some(group) if chain.epoch <= group.epoch => {
                if group.members.contains(&chain.sender) {
                    self.install_key(now, &distribution);
                } else {
                    self.stats.count(DropReason::Foreign);
                }
            }
            _ => {
                // Ahead of the invite or member list that explains it.
                if self.invitations.contains_key(&chain.room) {
                    // Kept with the invitation, across restarts.
                    self.dirty_invitations.insert(chain.room);
                }
                if self.hold_early_key(distribution) {
                    self.stats.count(DropReason::HeldOverflow);
                }
            }
        }
    }

    /// Keeps a key that came before the member list explaining it (the
    /// newest for its chain), within [`MAX_EARLY_KEYS`]; `true` when the
    /// oldest held key had to go.
    pub(super) fn hold_early_key(&mut self, distribution: SenderKeyDistribution) -> bool {
        self.early_keys.retain(|d| d.chain != distribution.chain);
        let evicted = self.early_keys.len() >= MAX_EARLY_KEYS;
        if evicted {
            self.early_keys.pop_front();
        }
        self.early_keys.push_back(distribution);
        evicted
    }

    /// Starts following a chain and opens what waited for it.
    pub(in crate::proto::node) fn install_key(
        &mut self,
        now: Instant,
        distribution: &SenderKeyDistribution,
    ) {
        let digest = origin_digest(distribution);
        // A repeat of the distribution we follow, or a later position of
        // the same chain (the sender re-sent its key, and the key overtook
        // messages sealed before it on their own stream): our state stays,
        // so those messages still open. Nor does an earlier key of the
        // chain we follow (the sender restarted and handed out its origin
        // again) ever move us back: messages past it would then be too far
        // ahead to open. That one is recognised by ratcheting it forward to
        // our position once; its digest is kept then (and stored), so its
        // next repeats cost nothing.
        let (repeat, ancestor) = match self.receivers.get(&distribution.chain) {
            Some(f) if f.origin == Some(digest) || f.chain.continues_to(distribution) => {
                (true, false)
            }
            Some(f) => {
                let ancestor = f
                    .chain
                    .descends_from(distribution, crate::proto::node::chains::MAX_ANCESTRY_STEPS);
                if !ancestor && distribution.start_seq < f.chain.next_seq() {
                    self.stats.chains_restarted += 1;
                }
                (ancestor, ancestor)
            }
            None => (false, false),
        };
        if ancestor
            && let Some(followed) = self.receivers.get_mut(&distribution.chain)
            && (followed.origin.is_none() || distribution.start_seq <= followed.start)
        {
            followed.origin = Some(digest);
            self.dirty_chains
                .insert((distribution.chain, Dirty::Receiving));
        }
        if !repeat {
            // The newest distribution wins: it came in order on the sender's
            // authenticated stream, so everything sealed after it uses
            // positions at or after `start_seq`. (A repeat of the one we
            // follow, sent again after the sender restarted, changes
            // nothing: our position and replay window stay.)
            self.receivers.insert(
                distribution.chain,
                Followed {
                    chain: ReceiverChain::from_distribution(distribution),
                    start: distribution.start_seq,
                    origin: Some(digest),
                },
            );
            self.dirty_chains
                .insert((distribution.chain, Dirty::Receiving));
            self.follow_origins
                .insert(distribution.chain, distribution.clone());
        }
        let from_start = self
            .receivers
            .get(&distribution.chain)
            .is_some_and(|f| distribution.start_seq <= f.start);
        if repeat && from_start && !self.follow_origins.contains_key(&distribution.chain) {
            // After our restart the origins of others' chains are gone;
            // the repeat brings it back, for forwarded envelopes.
            self.follow_origins
                .insert(distribution.chain, distribution.clone());
        }
        self.release_held(now, distribution.chain);
        // Also on a repeat: what was stored unreadable of this chain (too
        // far ahead when it came) may open now.
        self.events.push_back(NodeEvent::ChainKnown {
            chain: distribution.chain,
        });
    }

    /// Installs the early keys `room`'s current epoch explains.
    pub(super) fn apply_early_keys(&mut self, now: Instant, room: RoomId) {
        let Some(group) = self.group(&room) else {
            return;
        };
        let (epoch, members) = (group.epoch, group.members.clone());
        let mut ready = Vec::new();
        let mut foreign = 0;
        self.early_keys.retain(|d| {
            if d.chain.room != room || d.chain.epoch > epoch {
                return true;
            }
            if members.contains(&d.chain.sender) {
                ready.push(d.clone());
            } else {
                foreign += 1;
            }
            false
        });
        for _ in 0..foreign {
            self.stats.count(DropReason::Foreign);
        }
        for distribution in ready {
            self.install_key(now, &distribution);
        }
    }

    /// `peer` just became known to the node: if it is a member of a room
    /// restored without its key, it gets our chain of that room from its
    /// origin (so it can open everything we sealed on it). In every other
    /// case a new member is not in any of our rooms yet, and this does
    /// nothing.
    pub(in crate::proto::node) fn hand_room_keys(&mut self, now: Instant, peer: PeerId) {
        let shared: Vec<(RoomId, ChainId)> = self
            .rooms
            .iter()
            .filter(|(_, state)| state.group().is_some_and(|g| g.members.contains(&peer)))
            .map(|(room, state)| (*room, state.chain.chain()))
            .collect();
        for (room, chain) in shared {
            if self.origins.contains_key(&chain) {
                self.send_origin(now, chain, peer);
            } else {
                self.send_group_key(now, room, peer);
            }
        }
    }

    /// Our current chain in `room`, to `peer` over the pairwise stream.
    pub(in crate::proto::node) fn send_group_key(
        &mut self,
        now: Instant,
        room: RoomId,
        peer: PeerId,
    ) {
        let Some(state) = self.rooms.get(&room) else {
            return;
        };
        let key = control_from_distribution(&state.chain.distribution());
        if let Some(id) = self.send_pairwise(now, peer, &key) {
            self.origin_control_sent(id, &key, peer);
        }
    }

    /// Queues a control message on the direct-room stream with `peer`.
    /// Like `queue_pairwise`, for controls whose loss is only counted.
    pub(in crate::proto::node) fn send_pairwise(
        &mut self,
        now: Instant,
        peer: PeerId,
        control: &Control,
    ) -> Option<crate::proto::ids::MessageId> {
        let queued = self.queue_pairwise(now, peer, control);
        if queued.is_err() {
            self.stats.control_not_queued += 1;
        }
        queued.ok()
    }
}
