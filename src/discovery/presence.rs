//! Presence: which peers are online, decided in virtual time.
//!
//! A sans-IO state machine (no sockets, no clock): every input carries
//! `now`, timers come out of [`Presence::poll_timeout`], results out of
//! [`Presence::poll_event`] and [`Presence::poll_keepalive`]. The node feeds
//! one input, drains both queues, then sleeps until the next timeout.
//!
//! # Rules
//!
//! - **Only watched peers are kept alive.** The node says which peers it
//!   has something to do with ([`Presence::watch`]: contacts, members of
//!   its rooms); only those are probed, kept alive and reported online or
//!   offline. Any other peer is only *nearby*: where discovery saw it is
//!   recorded, nothing is sent to it, so idle traffic grows with a node's
//!   contacts, not with the hosts on the LAN. A peer that stops being
//!   watched while online is reported offline once.
//! - **Online** needs evidence of reachability: [`Presence::heard`], which
//!   the node calls for every *authenticated* datagram from the peer
//!   (keep-alives included). A discovery sighting ([`Presence::found`]) is
//!   not enough on its own: mDNS is unauthenticated, so anybody on the LAN
//!   could announce any peer id. A sighting records where to reach the peer
//!   and starts keep-alive probes towards a watched one at once, so a real
//!   peer turns online one round trip later.
//! - **Adaptive keep-alives.** The interval starts at
//!   [`PresenceConfig::keepalive_interval`] and doubles with every
//!   keep-alive answered while nothing else is exchanged, up to
//!   [`PresenceConfig::max_keepalive_interval`]; traffic
//!   ([`Presence::activity`]) brings it back to the start. Any evidence
//!   postpones our next keep-alive by the interval, so of two peers keeping
//!   each other alive only one probes per interval.
//! - **Offline** after the interval in force plus `missed_keepalives - 1`
//!   starting intervals without evidence; an unanswered keep-alive is
//!   repeated at the starting interval. While busy that is 3 × 5 s = 15 s
//!   by default; an idle peer is noticed gone within 60 s + 10 s.
//! - A goodbye ([`Presence::lost`]) makes an online peer offline at once
//!   only if nothing was heard from it for one keep-alive interval; a forged
//!   goodbye cannot hide a peer that is still talking to us, and a real one
//!   leaves within the normal bound anyway.
//! - A peer that stops cleanly says so over its authenticated session
//!   ([`Presence::left`]): it is offline at once, and online again at its
//!   next authenticated datagram.
//! - Keep-alives go to each watched peer that is online. A watched peer
//!   that is not online but has discovery addresses is *probed* (so a peer whose
//!   link came back is noticed): `missed_keepalives` probes at the interval,
//!   then the wait doubles per unanswered probe up to
//!   [`PresenceConfig::max_probe_interval`], and all probes together stay
//!   within [`PresenceConfig::max_probes_per_sec`] in any second. Sightings
//!   are unauthenticated, so without these bounds fake announcements could
//!   aim our traffic anywhere. Evidence or new addresses reset the wait.
//!   Peers that are offline and no longer announced are forgotten.
//! - **Blocked** peers are never reported: their inputs are ignored. Blocking
//!   a peer that was reported online reports it offline once, so whoever
//!   mirrors the online set stays consistent, and then never again.

use crate::proto::ids::PeerId;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Timing of keep-alives and offline detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PresenceConfig {
    /// How often a keep-alive goes to each watched peer while traffic is
    /// exchanged with it (the starting interval).
    pub keepalive_interval: Duration,
    /// Longest interval between keep-alives to a watched peer that is idle:
    /// the interval doubles per answered keep-alive up to this.
    pub max_keepalive_interval: Duration,
    /// How many intervals without evidence make a peer offline (at least 1).
    pub missed_keepalives: u32,
    /// Longest wait between probes of a peer that is not online: after
    /// `missed_keepalives` unanswered probes at the keep-alive interval, the
    /// wait doubles per unanswered probe up to this.
    pub max_probe_interval: Duration,
    /// Most probes (keep-alives to peers that are not online) per second,
    /// all peers together; further ones wait their turn.
    pub max_probes_per_sec: u32,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            keepalive_interval: Duration::from_secs(5),
            max_keepalive_interval: Duration::from_secs(60),
            missed_keepalives: 3,
            max_probe_interval: Duration::from_secs(300),
            max_probes_per_sec: 20,
        }
    }
}

impl PresenceConfig {
    /// Silence after which an online peer that exchanges traffic with us is
    /// reported offline.
    pub fn offline_after(&self) -> Duration {
        self.offline_after_interval(self.keepalive_interval)
    }

    /// Silence after which an online peer is reported offline while
    /// keep-alives go to it every `interval`: the interval, then
    /// `missed_keepalives - 1` more at the starting interval.
    pub fn offline_after_interval(&self, interval: Duration) -> Duration {
        interval + self.keepalive_interval * (self.missed_keepalives.max(1) - 1)
    }

    /// The longest keep-alive interval (never below the starting one).
    fn longest_interval(&self) -> Duration {
        self.max_keepalive_interval.max(self.keepalive_interval)
    }

    /// The wait after the `unanswered`-th unanswered probe of a peer that
    /// is not online.
    pub fn probe_delay(&self, unanswered: u32) -> Duration {
        let doublings = unanswered.saturating_sub(self.missed_keepalives.max(1));
        let factor = 1u32.checked_shl(doublings.min(20)).unwrap_or(u32::MAX);
        self.keepalive_interval
            .saturating_mul(factor)
            .min(self.max_probe_interval.max(self.keepalive_interval))
    }
}

/// A change the node shows to the user and acts on (an online peer gets its
/// queued messages and a history sync).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PresenceEvent {
    /// The peer proved reachable.
    Online {
        /// The peer.
        peer: PeerId,
        /// Where discovery last saw it (empty if only heard).
        addresses: Vec<SocketAddr>,
    },
    /// Nothing was heard from the peer for the configured bound, or it said
    /// goodbye and had been silent, or it was blocked.
    Offline {
        /// The peer.
        peer: PeerId,
    },
}

/// A keep-alive the node should send now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepAlive {
    /// To whom.
    pub peer: PeerId,
    /// Where discovery saw it; empty means "its last known session address",
    /// which only the node knows.
    pub addresses: Vec<SocketAddr>,
}

#[derive(Debug)]
struct PeerState {
    online: bool,
    last_heard: Option<Instant>,
    /// When an online peer is reported offline if nothing is heard.
    offline_at: Option<Instant>,
    /// From discovery; empty when not (or no longer) announced.
    addresses: Vec<SocketAddr>,
    next_keepalive: Instant,
    /// Probes sent since the last evidence; paces the next one.
    unanswered: u32,
    /// The keep-alive interval in force while online (adaptive).
    interval: Duration,
    /// A keep-alive went and nothing was heard since.
    awaiting: bool,
    /// Traffic other than keep-alives since our last keep-alive.
    active: bool,
}

impl PeerState {
    fn new(next_keepalive: Instant, interval: Duration) -> Self {
        Self {
            online: false,
            last_heard: None,
            offline_at: None,
            addresses: Vec::new(),
            next_keepalive,
            unanswered: 0,
            interval,
            awaiting: false,
            active: false,
        }
    }
}

/// The presence state machine; see the module docs.
#[derive(Debug)]
pub struct Presence {
    config: PresenceConfig,
    blocked: HashSet<PeerId>,
    /// The peers we keep alive (see [`Presence::watch`]).
    watched: HashSet<PeerId>,
    // Ordered so that events and keep-alives come out in the same order on
    // every run: tests and simulations stay deterministic.
    peers: BTreeMap<PeerId, PeerState>,
    events: VecDeque<PresenceEvent>,
    keepalives: VecDeque<KeepAlive>,
    /// When the probes of the last second went (at most
    /// `max_probes_per_sec` entries).
    probes_sent: VecDeque<Instant>,
}

impl Presence {
    /// Starts with no peer known; `blocked` peers are never reported.
    pub fn new(config: PresenceConfig, blocked: HashSet<PeerId>) -> Self {
        Self {
            config,
            blocked,
            watched: HashSet::new(),
            peers: BTreeMap::new(),
            events: VecDeque::new(),
            keepalives: VecDeque::new(),
            probes_sent: VecDeque::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &PresenceConfig {
        &self.config
    }

    /// Keeps `peer` alive (`true`: a contact, a member of one of our rooms)
    /// or stops (`false`: it is only nearby). A newly watched peer that was
    /// sighted is probed at once; one that is no longer watched is no
    /// longer probed, and reported offline once if it was online.
    pub fn watch(&mut self, now: Instant, peer: PeerId, watched: bool) {
        if watched {
            if !self.watched.insert(peer) {
                return;
            }
            if let Some(state) = self.peers.get_mut(&peer)
                && !state.online
            {
                state.unanswered = 0;
                state.next_keepalive = now;
            }
            return;
        }
        if !self.watched.remove(&peer) {
            return;
        }
        self.keepalives.retain(|k| k.peer != peer);
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        if state.online {
            state.online = false;
            self.events.push_back(PresenceEvent::Offline { peer });
        }
        if state.addresses.is_empty() {
            self.peers.remove(&peer);
        }
    }

    /// Whether `peer` is kept alive (see [`Presence::watch`]).
    pub fn is_watched(&self, peer: &PeerId) -> bool {
        self.watched.contains(peer) && !self.blocked.contains(peer)
    }

    /// An authenticated datagram (any, keep-alives included) arrived from
    /// `peer`. Only a watched peer becomes online; for any other it
    /// changes nothing.
    pub fn heard(&mut self, now: Instant, peer: PeerId) {
        if !self.is_watched(&peer) {
            return;
        }
        let config = self.config;
        let state = self
            .peers
            .entry(peer)
            .or_insert_with(|| PeerState::new(now, config.keepalive_interval));
        if !state.online {
            // Keep-alives at the starting interval, whatever the probe
            // back-off had reached.
            state.interval = config.keepalive_interval;
        } else if state.awaiting && !state.active {
            // A keep-alive answered with nothing else exchanged: idle, so
            // the next one can wait longer.
            state.interval = (state.interval * 2).min(config.longest_interval());
        }
        state.awaiting = false;
        state.last_heard = Some(now);
        state.unanswered = 0;
        // Evidence is as good as an answer: our next keep-alive waits a
        // whole interval from here (so of two peers that keep each other
        // alive, only one probes per interval).
        state.next_keepalive = now + state.interval;
        let offline_at = now + config.offline_after_interval(state.interval);
        state.offline_at = Some(offline_at);
        if !state.online {
            state.online = true;
            self.events.push_back(PresenceEvent::Online {
                peer,
                addresses: state.addresses.clone(),
            });
        }
    }

    /// Traffic other than keep-alives (a message either way) with `peer`:
    /// keep-alives go at the starting interval again, so that a peer that
    /// vanishes mid-conversation is noticed within
    /// [`PresenceConfig::offline_after`].
    pub fn activity(&mut self, now: Instant, peer: PeerId) {
        if !self.is_watched(&peer) {
            return;
        }
        let config = self.config;
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        state.active = true;
        state.interval = config.keepalive_interval;
        if state.online {
            state.next_keepalive = state.next_keepalive.min(now + config.keepalive_interval);
            let bound = now + config.offline_after();
            state.offline_at = Some(state.offline_at.map_or(bound, |at| at.min(bound)));
        }
    }

    /// Discovery sighted `peer` at `addresses`. Starts probing it with
    /// keep-alives at once if it is watched and was not tracked.
    pub fn found(&mut self, now: Instant, peer: PeerId, addresses: Vec<SocketAddr>) {
        if self.blocked.contains(&peer) {
            return;
        }
        let interval = self.config.keepalive_interval;
        let state = self
            .peers
            .entry(peer)
            .or_insert_with(|| PeerState::new(now, interval));
        if state.addresses != addresses && !state.online {
            // Somewhere new to look: probe there soon (still within the
            // per-second cap, so re-announcing cannot speed up a flood).
            state.unanswered = 0;
            state.next_keepalive = state.next_keepalive.min(now);
        }
        state.addresses = addresses;
    }

    /// Discovery says `peer` left (goodbye or expiry).
    pub fn lost(&mut self, now: Instant, peer: PeerId) {
        let interval = self.config.keepalive_interval;
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        state.addresses.clear();
        let heard_recently = state
            .last_heard
            .is_some_and(|heard| now.saturating_duration_since(heard) < interval);
        if state.online && !heard_recently {
            state.online = false;
            self.events.push_back(PresenceEvent::Offline { peer });
        }
        if !state.online {
            self.peers.remove(&peer);
        }
    }

    /// `peer` said over an authenticated channel that it is stopping: it is
    /// offline at once, whatever was heard from it before. The caller
    /// vouches for the authentication (only the peer itself can have sent
    /// it); an unauthenticated goodbye is [`Presence::lost`]. Where it was
    /// seen is kept, so it is still probed and its next authenticated
    /// datagram ([`Presence::heard`]) makes it online again.
    pub fn left(&mut self, peer: PeerId) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        state.last_heard = None;
        state.offline_at = None;
        if state.online {
            state.online = false;
            self.events.push_back(PresenceEvent::Offline { peer });
        }
        if state.addresses.is_empty() {
            self.peers.remove(&peer);
        }
    }

    /// Blocks `peer`: from now on it is never reported. If it was online it
    /// is reported offline once.
    pub fn block(&mut self, peer: PeerId) {
        self.blocked.insert(peer);
        self.keepalives.retain(|k| k.peer != peer);
        let was_online = self.peers.remove(&peer).is_some_and(|state| state.online);
        if was_online {
            self.events.push_back(PresenceEvent::Offline { peer });
        }
    }

    /// Unblocks `peer`; it is tracked again from its next sighting or datagram.
    pub fn unblock(&mut self, peer: PeerId) {
        self.blocked.remove(&peer);
    }

    /// Whether `peer` is currently online.
    pub fn is_online(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|state| state.online)
    }

    /// The online peers, in id order.
    pub fn online_peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.peers
            .iter()
            .filter(|(_, state)| state.online)
            .map(|(peer, _)| *peer)
    }

    /// Runs every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let interval = self.config.keepalive_interval;
        let max_probes = self.config.max_probes_per_sec.max(1) as usize;
        while self
            .probes_sent
            .front()
            .is_some_and(|at| now >= *at + Duration::from_secs(1))
        {
            self.probes_sent.pop_front();
        }
        let mut forget = Vec::new();
        for (peer, state) in &mut self.peers {
            if state.online && state.offline_at.is_none_or(|at| now >= at) {
                state.online = false;
                self.events
                    .push_back(PresenceEvent::Offline { peer: *peer });
            }
            if !state.online && state.addresses.is_empty() {
                // Neither reachable nor announced: nothing left to probe.
                forget.push(*peer);
                continue;
            }
            if !self.watched.contains(peer) || now < state.next_keepalive {
                // Only nearby: known from discovery, never probed.
                continue;
            }
            if state.online {
                self.keepalives.push_back(KeepAlive {
                    peer: *peer,
                    addresses: state.addresses.clone(),
                });
                // From now, not from the missed deadline: after a long stall
                // (a suspended laptop) one keep-alive goes, not a burst.
                // Unanswered, it is repeated at the starting interval (an
                // answer postpones the next by the whole interval, see
                // `heard`), so an idle peer that vanished is not waited for
                // a long interval per missed keep-alive.
                state.next_keepalive = now + interval;
                state.awaiting = true;
                state.active = false;
                continue;
            }
            // A probe towards where the peer was seen, which nothing proves
            // is the peer's: capped per second for all peers together, and
            // backed off per peer while unanswered, so announcements cannot
            // make us a traffic source.
            if self.probes_sent.len() >= max_probes {
                let free_at = self
                    .probes_sent
                    .front()
                    .map(|at| *at + Duration::from_secs(1));
                state.next_keepalive = free_at.unwrap_or(now).max(now);
                continue;
            }
            self.probes_sent.push_back(now);
            self.keepalives.push_back(KeepAlive {
                peer: *peer,
                addresses: state.addresses.clone(),
            });
            state.unanswered = state.unanswered.saturating_add(1);
            state.next_keepalive = now + self.config.probe_delay(state.unanswered);
        }
        for peer in forget {
            self.peers.remove(&peer);
        }
    }

    /// The next instant [`Presence::handle_timeout`] has work, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers
            .iter()
            .flat_map(|(peer, state)| {
                let offline = state.online.then_some(state.offline_at).flatten();
                let probe = (self.watched.contains(peer)
                    && (state.online || !state.addresses.is_empty()))
                .then_some(state.next_keepalive);
                [offline, probe]
            })
            .flatten()
            .min()
    }

    /// The next presence change, oldest first.
    pub fn poll_event(&mut self) -> Option<PresenceEvent> {
        self.events.pop_front()
    }

    /// The next keep-alive to send, oldest first.
    pub fn poll_keepalive(&mut self) -> Option<KeepAlive> {
        self.keepalives.pop_front()
    }
}
