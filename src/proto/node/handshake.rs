//! Handshake frames: answering message 1, finishing on message 2 or 3, and
//! starting our own.

use std::time::{Duration, Instant};

use super::peer::{Handshake, Retry};
use super::{DropReason, Node};
use crate::proto::crypto::{
    HandshakeFinish, HandshakeInit, HandshakeResponse, Initiator, Responder,
};
use crate::proto::ids::PeerId;
use crate::proto::wire::Frame;

/// How long we wait for message 3 of a handshake we answered before a
/// keep-alive may start a handshake of our own.
pub(super) const RESPONDING_TIMEOUT: Duration = Duration::from_secs(5);

/// The session id a handshake started with `ephemeral` will have, mirroring
/// `PairwiseSession::session_id` (blake3 of the initiator's ephemeral key).
/// It lets a responder recognise a retransmitted message 1 and frames of a
/// session it is about to finish.
pub(super) fn session_id_of(initiator_ephemeral: &[u8; 32]) -> [u8; 16] {
    let mut id = [0u8; 16];
    id.copy_from_slice(&blake3::hash(initiator_ephemeral).as_bytes()[..16]);
    id
}

impl Node {
    /// A handshake frame, which names its sender.
    pub(super) fn on_frame(
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

    pub(super) fn on_init(
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

    pub(super) fn on_response(
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

    pub(super) fn on_finish(
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

    /// Sends message 1 to `peer`; `probe`: see [`Handshake::Initiating`].
    pub(super) fn start_handshake(&mut self, now: Instant, peer: PeerId, probe: bool) {
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
}
