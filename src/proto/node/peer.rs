//! A contact's transport state: its sessions, the handshake under way, the
//! packets waiting for it, and the timers they run.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Node;
use super::token_bucket::TokenBucket;
use crate::proto::crypto::{Initiator, PairwiseSession, PublicIdentity, Responder};
use crate::proto::ids::PeerId;

/// A datagram we may have to send again, with its backoff.
pub(super) struct Retry {
    pub(super) bytes: Vec<u8>,
    pub(super) at: Instant,
    pub(super) backoff: Duration,
    pub(super) attempts: u32,
}

impl Retry {
    pub(super) fn new(bytes: Vec<u8>, now: Instant, rto: Duration) -> Self {
        Retry {
            bytes,
            at: now + rto,
            backoff: rto,
            attempts: 0,
        }
    }

    /// Records one more send and backs off.
    pub(super) fn fire(&mut self, now: Instant, max: Duration) -> Vec<u8> {
        self.attempts += 1;
        self.backoff = (self.backoff * 2).min(max);
        self.at = now + self.backoff;
        self.bytes.clone()
    }
}

pub(super) enum Handshake {
    Idle,
    /// We sent message 1. `initiator` is `None` after a message 2 failed to
    /// verify (which consumes it); the next retry then starts afresh.
    Initiating {
        initiator: Option<Initiator>,
        retry: Retry,
        /// Started by a keep-alive probe with nothing queued: message 1
        /// goes once, and the handshake is given up after
        /// `handshake_rto_max` without an answer (presence's next probe,
        /// paced and capped, tries again). Probes are aimed at addresses
        /// from unauthenticated sightings, so each may cost one datagram,
        /// never a retransmission series. Queued packets make it a full one.
        probe: bool,
    },
    /// We answered message 1 and wait for message 3.
    Responding {
        responder: Responder,
        session_id: [u8; 16],
        response: Vec<u8>,
        /// When we answered: a message 3 that never comes must not keep
        /// the peer from ever handshaking again (see `RESPONDING_TIMEOUT`).
        since: Instant,
    },
}

/// A contact.
pub(super) struct Peer {
    pub(super) public: PublicIdentity,
    /// The shell can currently reach this peer (it has an address).
    pub(super) reachable: bool,
    pub(super) session: Option<PairwiseSession>,
    /// The session before the current one, kept for receiving only so that
    /// packets in flight across a re-handshake still open, until
    /// `previous_until`.
    pub(super) previous: Option<PairwiseSession>,
    pub(super) previous_until: Option<Instant>,
    /// When the current session is due to be replaced (see
    /// [`NodeConfig::rekey_after`]).
    pub(super) rekey_at: Option<Instant>,
    /// Since when our sealed frames to the peer have gone unanswered (no
    /// authenticated frame from it since the first of them). Past
    /// [`SILENCE_REHANDSHAKE`] we offer a fresh handshake: sealed frames do
    /// not name their sender, so a peer that lost our session cannot tell
    /// us who it needs a new one with.
    pub(super) silent_since: Option<Instant>,
    pub(super) handshake: Handshake,
    /// As initiator: message 3, resent until the new session is proven.
    pub(super) finish: Option<Retry>,
    /// Openings in this contact's name we may still answer (see
    /// `openings.rs`).
    pub(super) openings: TokenBucket,
    /// Reliable packets waiting for a session, oldest first.
    pub(super) pending: VecDeque<Vec<u8>>,
}

impl Node {
    pub(super) fn peer_timers(&mut self, now: Instant, peer: PeerId) {
        let max = self.config.handshake_rto_max;
        let finish_attempts = self.config.finish_attempts;
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        let mut resend = Vec::new();
        let mut restart = false;
        let mut dropped_previous = false;
        if state.previous_until.is_some_and(|until| until <= now) {
            // Its frames in flight have had their time: dropping the
            // session wipes its keys.
            state.previous = None;
            state.previous_until = None;
            dropped_previous = true;
        }
        let mut silent = false;
        if silence_due(state).is_some_and(|at| at <= now) {
            // The peer may have lost our session (it restarted, or never
            // finished the handshake); if it is there it answers this.
            state.silent_since = None;
            silent = true;
        }
        if rekey_due(state).is_some_and(|at| at <= now) {
            // A fresh handshake; the current session carries traffic until
            // it completes.
            state.rekey_at = None;
            self.stats.rekeys_started += 1;
            restart = true;
        }
        if let Handshake::Initiating {
            initiator,
            retry,
            probe,
        } = &mut state.handshake
            && retry.at <= now
        {
            if *probe {
                // Unanswered probe: give up; see `Handshake::Initiating`.
                state.handshake = Handshake::Idle;
            } else if initiator.is_some() {
                resend.push(retry.fire(now, max));
            } else {
                restart = true;
            }
        }
        if let Some(finish) = &mut state.finish
            && finish.at <= now
        {
            if finish.attempts >= finish_attempts {
                // No proof the responder finished; if it did not, its
                // answer to our sealed frames (a new handshake) recovers.
                state.finish = None;
            } else {
                resend.push(finish.fire(now, max));
            }
        }
        for bytes in resend {
            self.emit_raw(peer, bytes);
        }
        if dropped_previous {
            self.reindex_sessions(peer);
        }
        if restart {
            self.start_handshake(now, peer, false);
        } else if silent {
            self.stats.silence_rehandshakes += 1;
            self.start_handshake(now, peer, true);
        }
    }
}

pub(super) fn peer_timer(peer: &Peer) -> Option<Instant> {
    let handshake = match &peer.handshake {
        Handshake::Initiating { retry, .. } => Some(retry.at),
        _ => None,
    };
    let finish = peer.finish.as_ref().map(|f| f.at);
    handshake
        .into_iter()
        .chain(finish)
        .chain(peer.previous_until)
        .chain(rekey_due(peer))
        .chain(silence_due(peer))
        .min()
}

/// How long our sealed frames may go unanswered before we offer the peer
/// a fresh handshake (a probe: message 1 once, nothing if unanswered).
pub const SILENCE_REHANDSHAKE: Duration = Duration::from_secs(1);

/// When `peer`'s silence calls for a fresh handshake: only while we have a
/// session and no handshake runs.
pub(super) fn silence_due(peer: &Peer) -> Option<Instant> {
    if peer.session.is_some() && matches!(peer.handshake, Handshake::Idle) {
        peer.silent_since.map(|since| since + SILENCE_REHANDSHAKE)
    } else {
        None
    }
}

/// When `peer`'s session is to be replaced: only while it has one, is
/// reachable and no handshake runs.
pub(super) fn rekey_due(peer: &Peer) -> Option<Instant> {
    if peer.session.is_some() && peer.reachable && matches!(peer.handshake, Handshake::Idle) {
        peer.rekey_at
    } else {
        None
    }
}
