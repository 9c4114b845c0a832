//! Openings in a contact's name: handshake messages 1 that claim to come
//! from a contact.
//!
//! Message 1 is unauthenticated (SIGMA-I proves the initiator in message 3)
//! and contact ids are visible on every datagram, so anyone on the LAN can
//! open handshakes in a contact's name. Each answer costs an X25519 exchange
//! and a signature, and an answer replaces the handshake we were answering.
//! So, after the cheap rules (a repeated message 1 gets the same message 2;
//! the lower peer id wins a simultaneous open):
//!
//! - a handshake we answered less than [`OPENING_GRACE`] ago is never
//!   replaced: the real peer finishes it within a round trip or two, and a
//!   peer that restarted meanwhile retries its message 1 with backoff and
//!   gets through once the grace has passed;
//! - at most [`CONTACT_OPENING_BURST`] openings per claimed contact are
//!   answered at once, refilled at [`CONTACT_OPENING_RATE`] per second, and
//!   at most [`ALL_OPENINGS_BURST`] across all contacts, refilled at
//!   [`ALL_OPENINGS_RATE`] per second.
//!
//! Sessions already established are untouched by any of this.

use std::time::{Duration, Instant};

use super::peer::Handshake;
use super::{DropReason, Node};
use crate::proto::ids::PeerId;

/// A handshake we answered is not replaced by another opening in the same
/// contact's name for this long.
pub const OPENING_GRACE: Duration = Duration::from_secs(2);
/// Openings answered per claimed contact per second, sustained.
pub const CONTACT_OPENING_RATE: f64 = 0.5;
/// Openings answered per claimed contact in a burst.
pub const CONTACT_OPENING_BURST: f64 = 3.0;
/// Openings answered per second across all contacts, sustained.
pub const ALL_OPENINGS_RATE: f64 = 20.0;
/// Openings answered across all contacts in a burst.
pub const ALL_OPENINGS_BURST: f64 = 40.0;

impl Node {
    /// Whether a new opening in contact `from`'s name may be answered now
    /// (the cheap rules have already passed it); takes the tokens if so.
    pub(super) fn admit_opening(&mut self, now: Instant, from: PeerId) -> Result<(), DropReason> {
        let state = self.peers.get_mut(&from).ok_or(DropReason::UnknownPeer)?;
        if let Handshake::Responding { since, .. } = state.handshake
            && now.saturating_duration_since(since) < OPENING_GRACE
        {
            return Err(DropReason::HandshakeBusy);
        }
        // Both buckets must have a token before either is taken, so that a
        // flood in one contact's name does not drain the shared budget.
        if !state.openings.ready(now) {
            return Err(DropReason::HandshakeLimit);
        }
        if !self.all_openings.take(now) {
            return Err(DropReason::HandshakeLimit);
        }
        state.openings.take(now);
        Ok(())
    }
}
