//! Meeting someone: a peer we do not know may open a handshake with us.
//!
//! SIGMA-I lets the responder run a handshake without knowing who is
//! calling: the initiator proves its identity in message 3. A stranger that
//! finishes becomes a contact and the shell hears
//! [`NodeEvent::StrangerMet`]; its messages then arrive like anyone's,
//! and the shell shows them as a request the user accepts or declines
//! (declining is blocking, after which the stranger sees us unavailable).
//!
//! Answering costs an X25519 and a signature, so it is bounded: at most
//! [`MAX_STRANGERS`] half-open handshakes (the oldest is dropped), and at
//! most [`STRANGER_BURST`] answers at once, refilled at [`STRANGER_RATE`]
//! per second. A blocked peer is dropped before any of this.

use std::time::{Duration, Instant};

use super::handshake::session_id_of;
use super::token_bucket::TokenBucket;
use super::{DropReason, Frame, Node, NodeEvent};
use crate::proto::crypto::{HandshakeFinish, HandshakeInit, Responder};
use crate::proto::ids::PeerId;

/// Half-open handshakes with strangers held at once.
pub const MAX_STRANGERS: usize = 64;
/// Stranger handshakes answered per second, sustained.
pub const STRANGER_RATE: f64 = 20.0;
/// Stranger handshakes answered in a burst.
pub const STRANGER_BURST: f64 = 40.0;
/// A half-open stranger handshake is forgotten after this long.
const STRANGER_TIMEOUT: Duration = Duration::from_secs(10);

/// Our half of a handshake a stranger opened.
pub(super) struct Stranger {
    responder: Responder,
    session_id: [u8; 16],
    response: Vec<u8>,
    since: Instant,
}

/// The token bucket for answering strangers.
pub(super) fn stranger_budget(now: Instant) -> TokenBucket {
    TokenBucket::new(now, STRANGER_RATE, STRANGER_BURST)
}

impl Node {
    /// A datagram from a peer id that is not a contact.
    pub(super) fn on_stranger(
        &mut self,
        now: Instant,
        from: PeerId,
        frame: Frame,
    ) -> Result<Option<PeerId>, DropReason> {
        if !self.config.accept_strangers || from == self.me {
            return Err(DropReason::UnknownPeer);
        }
        match frame {
            Frame::HandshakeInit { ephemeral } => {
                let session_id = session_id_of(&ephemeral);
                if let Some(known) = self.strangers.get(&from)
                    && known.session_id == session_id
                {
                    // Our message 2 was lost: the same answer again.
                    let bytes = known.response.clone();
                    self.emit_raw(from, bytes);
                    return Ok(None);
                }
                self.strangers
                    .retain(|_, s| now.saturating_duration_since(s.since) < STRANGER_TIMEOUT);
                if !self.stranger_budget.take(now) {
                    return Err(DropReason::StrangerLimit);
                }
                if self.strangers.len() >= MAX_STRANGERS
                    && let Some(oldest) = self
                        .strangers
                        .iter()
                        .min_by_key(|(_, s)| s.since)
                        .map(|(peer, _)| *peer)
                {
                    self.strangers.remove(&oldest);
                }
                let init = HandshakeInit { ephemeral };
                self.stats.handshakes_answered += 1;
                let (responder, response) =
                    Responder::handle_init(&mut self.rng, &self.identity, &init)
                        .map_err(|_| DropReason::Forged)?;
                let bytes = self.emit_frame(Frame::from(&response));
                self.strangers.insert(
                    from,
                    Stranger {
                        responder,
                        session_id,
                        response: bytes.clone(),
                        since: now,
                    },
                );
                self.emit_raw(from, bytes);
                Ok(None)
            }
            Frame::HandshakeFinish { sealed } => {
                let stranger = self
                    .strangers
                    .remove(&from)
                    .ok_or(DropReason::UnknownPeer)?;
                let session = stranger
                    .responder
                    .handle_finish(&HandshakeFinish { sealed })
                    .map_err(|_| DropReason::Forged)?;
                let public = session.peer().clone();
                if public.peer_id() != from {
                    // It proved an identity, just not the one it claimed.
                    return Err(DropReason::Forged);
                }
                self.add_contact(now, public.clone());
                self.events.push_back(NodeEvent::StrangerMet { public });
                // Not told our name by opening a handshake.
                self.withhold_profile(from);
                self.install_session(now, from, session);
                Ok(Some(from))
            }
            _ => Err(DropReason::UnknownPeer),
        }
    }
}
