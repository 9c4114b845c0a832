//! Runs history reconciliation between members (sans-IO).
//!
//! One [`Reconciler`] session per (room, peer). The shell starts sessions
//! when a peer comes online, periodically, and after a partition heals
//! ([`SyncManager::start`]). Either side may start (a member that
//! restarted sees the other come online, but not always the reverse); when
//! both open at once, the session of the lower peer id goes on and the other
//! side answers it, as with crossing handshakes. Messages travel as
//! [`crate::proto::node::Control::Sync`] on the pairwise stream (reliable
//! and ordered, as the reconciler requires). When a session ends, each side
//! pushes what the other lacks ([`SyncAction::Forward`]); nobody asks, so a
//! finished session costs one more one-way trip of envelopes.
//!
//! Work stays bounded: the reconciler caps rounds, ranges and differences
//! per session (a failing session is dropped and counted), idle sessions
//! expire, and at most [`SyncManagerConfig::max_sessions`] run at once.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;

use super::codec::is_opening;
use super::config::{SALT_LEN, SyncConfig};
use super::items::ItemSet;
use super::reconciler::Reconciler;
use crate::proto::ids::{MessageId, PeerId, RoomId};

/// Tunables.
#[derive(Debug, Clone)]
pub struct SyncManagerConfig {
    /// The reconciler's caps.
    pub sync: SyncConfig,
    /// A session with no message for this long is dropped.
    pub session_timeout: Duration,
    /// Sessions running at once, over all rooms and peers.
    pub max_sessions: usize,
}

impl Default for SyncManagerConfig {
    fn default() -> Self {
        SyncManagerConfig {
            sync: SyncConfig::default(),
            session_timeout: Duration::from_secs(30),
            max_sessions: 256,
        }
    }
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncAction {
    /// Send `payload` to `peer` as a sync message of `room`.
    Send {
        peer: PeerId,
        room: RoomId,
        payload: Vec<u8>,
    },
    /// `peer` lacks these messages of `room`: forward their envelopes.
    Forward {
        peer: PeerId,
        room: RoomId,
        ids: Vec<MessageId>,
    },
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub sessions_started: u64,
    pub sessions_completed: u64,
    /// Sessions that hit a cap, got a malformed message, or timed out.
    pub sessions_failed: u64,
    /// Sessions refused because `max_sessions` were running.
    pub sessions_refused: u64,
    /// Bytes of sync messages sent.
    pub bytes_sent: u64,
    /// Ids the peers lacked, pushed to them.
    pub ids_pushed: u64,
    /// Round trips of the sessions completed, summed.
    pub rounds: u64,
}

struct Session {
    reconciler: Reconciler,
    /// We opened it.
    initiator: bool,
    last_activity: Instant,
}

/// The sessions of one node.
pub struct SyncManager {
    me: PeerId,
    config: SyncManagerConfig,
    rng: StdRng,
    sessions: BTreeMap<(RoomId, PeerId), Session>,
    actions: VecDeque<SyncAction>,
    stats: SyncStats,
    /// Opens sessions with a shared secret: fresh per session, and small
    /// (one varint byte for the first 128).
    next_nonce: u64,
}

impl SyncManager {
    pub fn new(me: PeerId, config: SyncManagerConfig, rng: StdRng) -> Self {
        SyncManager {
            me,
            config,
            rng,
            sessions: BTreeMap::new(),
            actions: VecDeque::new(),
            stats: SyncStats::default(),
            next_nonce: 0,
        }
    }

    pub fn stats(&self) -> &SyncStats {
        &self.stats
    }

    /// Whether a session with `peer` about `room` is running.
    pub fn is_running(&self, room: &RoomId, peer: &PeerId) -> bool {
        self.sessions.contains_key(&(*room, *peer))
    }

    /// Whether any session about `room` runs.
    pub fn is_syncing(&self, room: &RoomId) -> bool {
        self.sessions.keys().any(|(r, _)| r == room)
    }

    /// Starts reconciling `room` with `peer` from our side, unless a
    /// session runs. With the
    /// secret of our pairwise session with `peer` (`Node::sync_secret`) the
    /// opening carries a nonce instead of a 16-byte salt. Returns whether
    /// one started.
    pub fn start(
        &mut self,
        now: Instant,
        room: RoomId,
        peer: PeerId,
        set: &impl ItemSet,
        secret: Option<[u8; 32]>,
    ) -> bool {
        if self.is_running(&room, &peer) {
            return false;
        }
        if self.sessions.len() >= self.config.max_sessions {
            self.stats.sessions_refused += 1;
            return false;
        }
        let mut reconciler = match secret {
            Some(secret) => {
                self.next_nonce = self.next_nonce.wrapping_add(1);
                Reconciler::initiator_shared(self.config.sync.clone(), &secret, self.next_nonce)
            }
            None => {
                let mut salt = [0u8; SALT_LEN];
                self.rng.fill_bytes(&mut salt);
                Reconciler::initiator(self.config.sync.clone(), salt)
            }
        };
        reconciler.initiate(set);
        self.stats.sessions_started += 1;
        self.sessions.insert(
            (room, peer),
            Session {
                reconciler,
                initiator: true,
                last_activity: now,
            },
        );
        self.drain(room, peer);
        true
    }

    /// A sync message from `peer` about `room` (already authenticated and
    /// checked to be a room we share).
    pub fn handle_message(
        &mut self,
        now: Instant,
        room: RoomId,
        peer: PeerId,
        payload: &[u8],
        set: &impl ItemSet,
        secret: Option<[u8; 32]>,
    ) {
        let key = (room, peer);
        let opening = is_opening(payload);
        match self.sessions.get(&key) {
            // Both opened at once: the lower id's session goes on.
            Some(session) if opening && session.initiator && self.me < peer => return,
            // The peer opened anew: it is what we answer from now on.
            Some(_) if opening => {
                self.sessions.remove(&key);
            }
            Some(_) => {}
            // A late message of a session that ended or failed.
            None if !opening => return,
            None => {}
        }
        if !self.sessions.contains_key(&key) {
            if self.sessions.len() >= self.config.max_sessions {
                self.stats.sessions_refused += 1;
                return;
            }
            self.stats.sessions_started += 1;
            self.sessions.insert(
                key,
                Session {
                    reconciler: match secret {
                        Some(secret) => {
                            Reconciler::responder_shared(self.config.sync.clone(), secret)
                        }
                        None => Reconciler::responder(self.config.sync.clone()),
                    },
                    initiator: false,
                    last_activity: now,
                },
            );
        }
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        session.last_activity = now;
        if session.reconciler.handle_message(set, payload).is_err() {
            self.sessions.remove(&key);
            self.stats.sessions_failed += 1;
            return;
        }
        self.drain(room, peer);
    }

    /// Drops sessions idle for longer than the timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        let timeout = self.config.session_timeout;
        let before = self.sessions.len();
        self.sessions
            .retain(|_, s| now.saturating_duration_since(s.last_activity) < timeout);
        self.stats.sessions_failed += (before - self.sessions.len()) as u64;
    }

    /// When [`SyncManager::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sessions
            .values()
            .map(|s| s.last_activity + self.config.session_timeout)
            .min()
    }

    pub fn poll_action(&mut self) -> Option<SyncAction> {
        self.actions.pop_front()
    }

    /// Ends every session with `peer` (it went away; a new one starts when
    /// it is back).
    pub fn forget_peer(&mut self, peer: &PeerId) {
        self.sessions.retain(|(_, p), _| p != peer);
    }

    /// Moves a session's outgoing messages to the actions, and finishes it
    /// when it is done.
    fn drain(&mut self, room: RoomId, peer: PeerId) {
        let key = (room, peer);
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        while let Some(payload) = session.reconciler.poll_message() {
            self.stats.bytes_sent += payload.len() as u64;
            self.actions.push_back(SyncAction::Send {
                peer,
                room,
                payload,
            });
        }
        if session.reconciler.is_done() {
            let ids: Vec<MessageId> = session.reconciler.have_ids().copied().collect();
            self.stats.rounds += u64::from(session.reconciler.rounds());
            self.sessions.remove(&key);
            self.stats.sessions_completed += 1;
            if !ids.is_empty() {
                self.stats.ids_pushed += ids.len() as u64;
                self.actions
                    .push_back(SyncAction::Forward { peer, room, ids });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::sync::items::{Item, SortedItems};
    use rand::SeedableRng;

    fn set(range: std::ops::Range<u8>) -> SortedItems {
        SortedItems::new(
            range
                .map(|n| Item {
                    timestamp: u64::from(n),
                    id: MessageId([n; 32]),
                })
                .collect(),
        )
    }

    #[test]
    fn crossing_openings_settle_on_the_lower_ids_session() {
        let now = Instant::now();
        let (low, high) = (PeerId([1; 32]), PeerId([2; 32]));
        let room = RoomId([9; 32]);
        let manager = |me, seed| {
            SyncManager::new(
                me,
                SyncManagerConfig::default(),
                StdRng::seed_from_u64(seed),
            )
        };
        let (mut a, mut b) = (manager(low, 1), manager(high, 2));
        let (set_a, set_b) = (set(0..10), set(5..20));
        let secret = Some([7; 32]);
        // Both see each other come online and open at once.
        assert!(a.start(now, room, high, &set_a, secret));
        assert!(b.start(now, room, low, &set_b, secret));
        let mut pushed: Vec<(PeerId, Vec<MessageId>)> = Vec::new();
        for _ in 0..20 {
            let mut moved = false;
            while let Some(action) = a.poll_action() {
                moved = true;
                match action {
                    SyncAction::Send { payload, .. } => {
                        b.handle_message(now, room, low, &payload, &set_b, secret)
                    }
                    SyncAction::Forward { peer, ids, .. } => pushed.push((peer, ids)),
                }
            }
            while let Some(action) = b.poll_action() {
                moved = true;
                match action {
                    SyncAction::Send { payload, .. } => {
                        a.handle_message(now, room, high, &payload, &set_a, secret)
                    }
                    SyncAction::Forward { peer, ids, .. } => pushed.push((peer, ids)),
                }
            }
            if !moved {
                break;
            }
        }
        assert!(
            !a.is_syncing(&room) && !b.is_syncing(&room),
            "both finished"
        );
        assert_eq!(a.stats().sessions_failed + b.stats().sessions_failed, 0);
        let to_high: Vec<MessageId> = (0..5).map(|n| MessageId([n; 32])).collect();
        let to_low: Vec<MessageId> = (10..20).map(|n| MessageId([n; 32])).collect();
        pushed.sort();
        assert_eq!(pushed, vec![(low, to_low), (high, to_high)]);
    }
}
