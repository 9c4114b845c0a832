//! Contacts: the peers whose handshakes we accept and whom we can write
//! to, whether the shell can reach them, and blocking.

use std::time::Instant;

use super::openings::{CONTACT_OPENING_BURST, CONTACT_OPENING_RATE};
use super::peer::Handshake;
use super::rooms::RoomKind;
use super::token_bucket::TokenBucket;
use super::{Node, NodeError, Peer, RoomState, direct_room};
use crate::proto::crypto::{ChainId, PublicIdentity, SenderChain};
use crate::proto::ids::PeerId;
use crate::proto::reliable::RoomConfig;

impl Node {
    /// Makes `public` a contact: we accept its handshakes and can message
    /// it. Joins the direct room with it. Idempotent. The peer starts out
    /// unreachable until the shell says otherwise or it is heard from.
    pub fn add_contact(&mut self, now: Instant, public: PublicIdentity) {
        self.advance(now);
        let peer = public.peer_id();
        if peer == self.me || self.peers.contains_key(&peer) {
            return;
        }
        let openings = TokenBucket::new(now, CONTACT_OPENING_RATE, CONTACT_OPENING_BURST);
        self.peers.insert(peer, Peer::new(public, openings));
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

    /// Blocks `peer`: its datagrams are dropped before any cryptography,
    /// handshakes from it get no answer, our session with it is discarded
    /// and nothing more is sent to it or accepted from it.
    pub fn block(&mut self, peer: PeerId) {
        self.blocked.insert(peer);
        if let Some(state) = self.peers.get_mut(&peer) {
            state.forget_sessions();
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
}

impl Node {
    /// Whether we may send to `to` or invite it: a contact we have not
    /// blocked.
    pub(super) fn check_contact(&self, to: &PeerId) -> Result<(), NodeError> {
        if self.blocked.contains(to) {
            return Err(NodeError::Blocked(*to));
        }
        if !self.peers.contains_key(to) {
            return Err(NodeError::UnknownPeer(*to));
        }
        Ok(())
    }
}
