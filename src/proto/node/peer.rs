//! A contact's transport state: its sessions, the handshake under way, the
//! packets waiting for it, and the timers they run.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::DropReason;
use super::Node;
use super::token_bucket::TokenBucket;
use crate::proto::crypto::CryptoError;
use crate::proto::crypto::{Initiator, PairwiseSession, PublicIdentity, Responder};
use crate::proto::ids::PeerId;
use crate::proto::wire;

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

/// How long our sealed frames may go unanswered before we offer the peer
/// a fresh handshake (a probe: message 1 once, nothing if unanswered).
pub const SILENCE_REHANDSHAKE: Duration = Duration::from_secs(1);

/// What a peer's timers call for at one instant (see [`Peer::fire_timers`]).
#[derive(Default)]
pub(super) struct DueTimers {
    /// Handshake messages to send again.
    pub(super) resend: Vec<Vec<u8>>,
    /// A fresh handshake: the session is due to be replaced, or a retry
    /// found its initiator consumed.
    pub(super) restart: bool,
    /// The session was due to be replaced (counted as a rekey).
    pub(super) rekey: bool,
    /// Our frames went unanswered too long: a probe handshake is due.
    pub(super) silent: bool,
    /// The previous session's grace ran out and its keys are gone.
    pub(super) dropped_previous: bool,
}

impl Peer {
    /// A contact just added: unreachable, no session, nothing queued;
    /// `openings` limits the handshakes answered in its name.
    pub(super) fn new(public: PublicIdentity, openings: TokenBucket) -> Self {
        Peer {
            public,
            reachable: false,
            session: None,
            previous: None,
            previous_until: None,
            rekey_at: None,
            silent_since: None,
            handshake: Handshake::Idle,
            finish: None,
            openings,
            pending: VecDeque::new(),
        }
    }

    /// Forgets every session and handshake with the peer, and what waited
    /// for them (blocking it).
    pub(super) fn forget_sessions(&mut self) {
        self.session = None;
        self.previous = None;
        self.handshake = Handshake::Idle;
        self.finish = None;
        self.pending.clear();
    }

    /// Makes `session` the current one; the one it replaces stays for
    /// receiving until `grace` has passed, and the new one is due to be
    /// replaced after `rekey_after`. Returns whether a session was replaced.
    pub(super) fn install(
        &mut self,
        session: PairwiseSession,
        now: Instant,
        grace: Duration,
        rekey_after: Duration,
    ) -> bool {
        self.previous = self.session.replace(session);
        let replaced = self.previous.is_some();
        self.previous_until = replaced.then(|| now + grace);
        self.rekey_at = Some(now + rekey_after);
        // Whoever completed a handshake with us is reachable right now.
        self.reachable = true;
        replaced
    }

    /// Opens a sealed frame from the peer (`from`) under the current or the
    /// previous session, whichever `session_id` names. Returns the padded
    /// plaintext and whether it came under the current session.
    pub(super) fn open(
        &mut self,
        from: PeerId,
        session_id: [u8; 16],
        counter: u64,
        ciphertext: &[u8],
    ) -> Result<(Vec<u8>, bool), DropReason> {
        let is_current = self
            .session
            .as_ref()
            .is_some_and(|s| s.session_id() == session_id);
        let session = if is_current {
            self.session.as_mut()
        } else {
            self.previous
                .as_mut()
                .filter(|s| s.session_id() == session_id)
        };
        let Some(session) = session else {
            // Indexed but no longer held (dropped since): nothing opens it.
            // A frame of a session we never had (we restarted, or a message
            // 3 was lost) does not even get here, as no id travels to tell
            // us whose it is; the peer, hearing nothing back, offers a
            // fresh handshake ([`SILENCE_REHANDSHAKE`]).
            return Err(DropReason::UnknownSession);
        };
        let aad = wire::sealed_aad(&from, &session_id, counter);
        let padded = session
            .open(counter, &aad, ciphertext)
            .map_err(|e| match e {
                CryptoError::Replay | CryptoError::TooOld => DropReason::Replayed,
                _ => DropReason::Forged,
            })?;
        Ok((padded, is_current))
    }

    /// An authentic frame came from the peer (under the current session if
    /// `current`): it is there, and it holds our session.
    pub(super) fn heard(&mut self, current: bool) {
        self.silent_since = None;
        if current {
            // The responder finished: message 3 need not be resent.
            self.finish = None;
        }
        self.reachable = true;
    }

    /// The earliest of this peer's timers, if any runs.
    pub(super) fn next_timer(&self) -> Option<Instant> {
        let handshake = match &self.handshake {
            Handshake::Initiating { retry, .. } => Some(retry.at),
            _ => None,
        };
        let finish = self.finish.as_ref().map(|f| f.at);
        handshake
            .into_iter()
            .chain(finish)
            .chain(self.previous_until)
            .chain(self.rekey_due())
            .chain(self.silence_due())
            .min()
    }

    /// When the peer's silence calls for a fresh handshake: only while we
    /// have a session and no handshake runs.
    pub(super) fn silence_due(&self) -> Option<Instant> {
        if self.session.is_some() && matches!(self.handshake, Handshake::Idle) {
            self.silent_since.map(|since| since + SILENCE_REHANDSHAKE)
        } else {
            None
        }
    }

    /// When the peer's session is to be replaced: only while it has one, is
    /// reachable and no handshake runs.
    pub(super) fn rekey_due(&self) -> Option<Instant> {
        if self.session.is_some() && self.reachable && matches!(self.handshake, Handshake::Idle) {
            self.rekey_at
        } else {
            None
        }
    }

    /// Fires every timer due at `now`, changing what is the peer's own to
    /// change, and says what the node has to do: handshake messages are
    /// resent with backoff up to `max`, message 3 at most `finish_attempts`
    /// times.
    pub(super) fn fire_timers(
        &mut self,
        now: Instant,
        max: Duration,
        finish_attempts: u32,
    ) -> DueTimers {
        let mut due = DueTimers::default();
        if self.previous_until.is_some_and(|until| until <= now) {
            // Its frames in flight have had their time: dropping the
            // session wipes its keys.
            self.previous = None;
            self.previous_until = None;
            due.dropped_previous = true;
        }
        if self.silence_due().is_some_and(|at| at <= now) {
            // The peer may have lost our session (it restarted, or never
            // finished the handshake); if it is there it answers this.
            self.silent_since = None;
            due.silent = true;
        }
        if self.rekey_due().is_some_and(|at| at <= now) {
            // A fresh handshake; the current session carries traffic until
            // it completes.
            self.rekey_at = None;
            due.rekey = true;
            due.restart = true;
        }
        if let Handshake::Initiating {
            initiator,
            retry,
            probe,
        } = &mut self.handshake
            && retry.at <= now
        {
            if *probe {
                // Unanswered probe: give up; see `Handshake::Initiating`.
                self.handshake = Handshake::Idle;
            } else if initiator.is_some() {
                due.resend.push(retry.fire(now, max));
            } else {
                due.restart = true;
            }
        }
        if let Some(finish) = &mut self.finish
            && finish.at <= now
        {
            if finish.attempts >= finish_attempts {
                // No proof the responder finished; if it did not, its
                // answer to our sealed frames (a new handshake) recovers.
                self.finish = None;
            } else {
                due.resend.push(finish.fire(now, max));
            }
        }
        due
    }
}

impl Node {
    /// Fires `peer`'s due timers and acts on what they call for.
    pub(super) fn peer_timers(&mut self, now: Instant, peer: PeerId) {
        let max = self.config.handshake_rto_max;
        let finish_attempts = self.config.finish_attempts;
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        let due = state.fire_timers(now, max, finish_attempts);
        if due.rekey {
            self.stats.rekeys_started += 1;
        }
        for bytes in due.resend {
            self.emit_raw(peer, bytes);
        }
        if due.dropped_previous {
            self.reindex_sessions(peer);
        }
        if due.restart {
            self.start_handshake(now, peer, false);
        } else if due.silent {
            self.stats.silence_rehandshakes += 1;
            self.start_handshake(now, peer, true);
        }
    }
}
