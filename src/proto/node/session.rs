//! Pairwise sessions: opening sealed frames, installing a new session, and
//! the keep-alive probes that run over it.

use std::time::Instant;

use super::handshake::RESPONDING_TIMEOUT;
use super::peer::Handshake;
use super::{DropReason, Node, NodeEvent};
use crate::proto::crypto::PairwiseSession;
use crate::proto::ids::{PeerId, RoomId};
use crate::proto::reliable::Via;
use crate::proto::wire;

/// The sealed plaintext that answers a keep-alive probe (an empty
/// plaintext). Reliable packets are never this short, so neither can be
/// mistaken for one.
pub(super) const KEEPALIVE_ANSWER: u8 = 0;

/// The sealed plaintext by which a peer that stops cleanly says so (see
/// [`Node::leaving`]). Sealed under the pairwise session like a keep-alive,
/// so only the peer itself can send it, and a replay is refused by the
/// session's replay window.
pub(super) const KEEPALIVE_LEAVING: u8 = 1;

impl Node {
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
}

impl Node {
    pub(super) fn on_sealed(
        &mut self,
        now: Instant,
        from: PeerId,
        session_id: [u8; 16],
        counter: u64,
        ciphertext: &[u8],
    ) -> Result<Option<PeerId>, DropReason> {
        let state = self.peers.get_mut(&from).ok_or(DropReason::UnknownPeer)?;
        let (padded, is_current) = state.open(from, session_id, counter, ciphertext)?;
        // Authentic, so only the peer can have padded it wrongly.
        let plaintext = wire::unpad(&padded).map_err(|e| DropReason::from(&e))?;
        self.stats.sealed_received += 1;
        state.heard(is_current);
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
    pub(super) fn reindex_sessions(&mut self, peer: PeerId) {
        self.session_index.retain(|_, owner| *owner != peer);
        if let Some(state) = self.peers.get(&peer) {
            for session in state.session.iter().chain(state.previous.iter()) {
                self.session_index.insert(session.session_id(), peer);
            }
        }
    }

    pub(super) fn install_session(&mut self, now: Instant, peer: PeerId, session: PairwiseSession) {
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
        // The lower id rekeys first; the other side only if that failed to
        // happen, so both rarely open at once.
        let rekey_after = if self.me < peer {
            self.config.rekey_after
        } else {
            self.config.rekey_after + self.config.rekey_after / 8
        };
        let grace = self.config.previous_session_grace;
        let replaced = state.install(session, now, grace, rekey_after);
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
}
