//! A deterministic simulated network for the sans-IO core, generic over the
//! state machine it runs.
//!
//! A [`Network`] carries real datagram bytes between [`Endpoint`]s (hosts)
//! over simulated links on a virtual clock. Everything random (loss,
//! duplication, reordering, jitter) is drawn from one generator seeded at
//! construction, and the hosts' own randomness is seeded by their builders,
//! so a run is reproducible from its seed: [`Network::trace_hash`] is the
//! same for two runs of one seed (every map the core iterates is ordered).
//!
//! Links model loss, duplication, reordering (an extra random delay for some
//! datagrams), base delay + jitter and per-sender bandwidth (serialisation
//! on the sender's uplink). Partitions cut links both ways until healed; a
//! host can go down (it neither runs timers nor receives; datagrams to it
//! are lost) and come back up with its state intact, like a laptop lid; a
//! restart is its builder replacing the host's state. A host can be deaf to
//! multicast, like a member behind an access point that filters it.
//!
//! The hosts live beside the network, not in it (`step(&mut hosts, …)`),
//! so a test's harness can keep them in its own struct and reach them and
//! its own bookkeeping at once. [`reliable`] is the harness of the reliable
//! layer, and [`crate::daemon::sim`] makes the daemon's real core (node,
//! store and all) a host: every node property is tested there.
//!
//! Run-loop contract, as for the real shells: every input is followed by a
//! drain of [`Endpoint::poll_transmit`] and [`Endpoint::poll_event`] until
//! both are empty; then the clock moves to the earliest of every host's
//! [`Endpoint::poll_timeout`] and the next datagram's arrival.
//!
//! Only built for tests and with the `sim` feature: it is no part of the
//! daemon.

pub mod reliable;

pub use reliable::{Sim, SimConfig, SimNode, Stored};

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::ids::{PeerId, RoomId};
use super::reliable::{Destination, PacketKind, Via};

/// A sans-IO state machine the network can run: the inputs and outputs
/// every protocol layer in `proto` has, under one name.
pub trait Endpoint {
    /// What the host reports to the test (kept in order by the network).
    type Event;

    /// One datagram from `from` (the sender's id stands in for its
    /// address), which arrived by unicast or through a multicast group.
    fn handle_datagram(&mut self, now: Instant, from: PeerId, via: Via, bytes: &[u8]);

    /// The time of [`Endpoint::poll_timeout`] came.
    fn handle_timeout(&mut self, now: Instant);

    /// The next datagram to put on the wire.
    fn poll_transmit(&mut self, now: Instant) -> Option<Outgoing>;

    /// When [`Endpoint::handle_timeout`] wants to run next.
    fn poll_timeout(&self) -> Option<Instant>;

    /// The next event for the test.
    fn poll_event(&mut self) -> Option<Self::Event>;

    /// Who besides this host hears what it sends to `room`'s multicast
    /// group (the members as it knows them).
    fn group_members(&self, room: &RoomId) -> Vec<PeerId>;

    /// Datagrams that arrive at one instant form a burst, as a real
    /// shell's receive batch does: this comes before the first of them.
    fn begin_burst(&mut self) {}

    /// After the last datagram of a burst.
    fn end_burst(&mut self, _now: Instant) {}
}

/// A datagram a host puts on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub destination: Destination,
    /// The reliable packet's kind when the host knows it, for
    /// [`WireStats`].
    pub kind: Option<PacketKind>,
    pub bytes: Vec<u8>,
}

/// Behaviour of one direction of a link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Probability a datagram is delivered twice.
    pub duplicate: f64,
    /// Probability a datagram gets an extra delay in `[0, reorder_delay)`,
    /// so later datagrams overtake it.
    pub reorder: f64,
    pub reorder_delay: Duration,
    /// Base one-way delay.
    pub delay: Duration,
    /// Extra uniform delay in `[0, jitter)`.
    pub jitter: Duration,
    /// Sender uplink in bytes per second; `None` for unlimited. Datagrams
    /// queue behind each other on the sender's uplink (without limit).
    pub bandwidth: Option<u64>,
}

impl Default for LinkConfig {
    /// A quiet LAN: 1 ms delay, 0.2 ms jitter, no loss, 100 Mbit/s.
    fn default() -> Self {
        LinkConfig {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(5),
            delay: Duration::from_millis(1),
            jitter: Duration::from_micros(200),
            bandwidth: Some(12_500_000),
        }
    }
}

impl LinkConfig {
    /// A lossy link with duplication and reordering, for stress tests.
    pub fn lossy(loss: f64) -> Self {
        LinkConfig {
            loss,
            duplicate: 0.02,
            reorder: 0.1,
            ..LinkConfig::default()
        }
    }
}

/// Datagrams put on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireStats {
    /// Reliable packets by kind, indexed by [`PacketKind::index`].
    pub packets: [u64; 4],
    /// Every datagram (a multicast one counts once, as on a shared LAN
    /// segment), whatever its kind.
    pub datagrams: u64,
    pub bytes: u64,
    /// Datagrams (per receiver) lost to loss, partitions or down hosts.
    pub dropped: u64,
}

impl WireStats {
    /// All datagrams.
    pub fn total(&self) -> u64 {
        self.datagrams
    }

    /// Reliable packets of one kind.
    pub fn of(&self, kind: PacketKind) -> u64 {
        self.packets[kind.index()]
    }
}

/// A datagram in flight.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Flight {
    at: Instant,
    /// Tie-breaker, keeps ordering deterministic.
    number: u64,
    to: usize,
    from: usize,
    multicast: bool,
    bytes: Vec<u8>,
}

/// One datagram as it was put on the wire towards one receiver (before
/// loss or partitions), kept when capturing: `(from, to, bytes)`.
pub type Captured = (usize, usize, Vec<u8>);

/// The simulated network: clock, links, datagrams in flight, and the log
/// of every host's events. Hosts are indexed `0..n` in the order of the
/// ids given to [`Network::new`].
pub struct Network<E: Endpoint> {
    start: Instant,
    now: Instant,
    rng: StdRng,
    ids: Vec<PeerId>,
    index: BTreeMap<PeerId, usize>,
    default_link: LinkConfig,
    links: BTreeMap<(usize, usize), LinkConfig>,
    /// Cut directed links.
    cut: BTreeSet<(usize, usize)>,
    up: Vec<bool>,
    deaf_to_multicast: Vec<bool>,
    flights: BinaryHeap<Reverse<Flight>>,
    flight_number: u64,
    uplink_free: Vec<Instant>,
    events: Vec<Vec<E::Event>>,
    /// Datagrams put on the wire.
    pub wire: WireStats,
    trace: blake3::Hasher,
    capture: Option<Vec<Captured>>,
    /// Steps in a row that did not advance the clock.
    stalled_steps: u32,
}

impl<E: Endpoint> Network<E> {
    /// A network of hosts with `ids`, all up, every link `link`. The
    /// virtual clock starts at `start` and then only moves by simulated
    /// time; `seed` seeds the links' randomness.
    pub fn new(seed: u64, link: LinkConfig, start: Instant, ids: Vec<PeerId>) -> Self {
        let n = ids.len();
        Network {
            start,
            now: start,
            rng: StdRng::seed_from_u64(seed),
            index: ids.iter().enumerate().map(|(i, id)| (*id, i)).collect(),
            ids,
            default_link: link,
            links: BTreeMap::new(),
            cut: BTreeSet::new(),
            up: vec![true; n],
            deaf_to_multicast: vec![false; n],
            flights: BinaryHeap::new(),
            flight_number: 0,
            uplink_free: vec![start; n],
            events: (0..n).map(|_| Vec::new()).collect(),
            wire: WireStats::default(),
            trace: blake3::Hasher::new(),
            capture: None,
            stalled_steps: 0,
        }
    }

    /// Keeps a copy of every datagram put on the wire, per receiver
    /// ([`Network::captured`]).
    pub fn capture(&mut self) {
        self.capture.get_or_insert_with(Vec::new);
    }

    /// Every datagram put on the wire since [`Network::capture`].
    pub fn captured(&self) -> &[Captured] {
        self.capture.as_deref().unwrap_or_default()
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Host `i`'s peer id.
    pub fn id(&self, i: usize) -> PeerId {
        self.ids[i]
    }

    /// The index of the host with `id`.
    pub fn index_of(&self, id: &PeerId) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// Host `i`'s events so far, in order.
    pub fn events(&self, i: usize) -> &[E::Event] {
        &self.events[i]
    }

    /// A hash of every datagram put on the wire so far, in order, with its
    /// sender and destination: two runs of one seed give the same one.
    pub fn trace_hash(&self) -> [u8; 32] {
        *self.trace.finalize().as_bytes()
    }

    /// Sets both directions of the link between `a` and `b`.
    pub fn set_link(&mut self, a: usize, b: usize, link: LinkConfig) {
        self.links.insert((a, b), link.clone());
        self.links.insert((b, a), link);
    }

    /// Sets the default for every link without its own setting.
    pub fn set_default_link(&mut self, link: LinkConfig) {
        self.default_link = link;
    }

    /// Cuts every link between different groups.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        for (g, group) in groups.iter().enumerate() {
            for other in groups.iter().skip(g + 1) {
                for &a in group.iter() {
                    for &b in other.iter() {
                        self.cut.insert((a, b));
                        self.cut.insert((b, a));
                    }
                }
            }
        }
    }

    /// Restores every cut link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Takes host `i` down or brings it back up (state intact). Bringing it
    /// up drains what it queued meanwhile.
    pub fn set_up(&mut self, hosts: &mut [E], i: usize, up: bool) {
        self.up[i] = up;
        if up {
            self.drain(hosts, i);
        }
    }

    /// Whether host `i` is up.
    pub fn is_up(&self, i: usize) -> bool {
        self.up[i]
    }

    /// Makes host `i` deaf (or not) to multicast.
    pub fn set_deaf_to_multicast(&mut self, i: usize, deaf: bool) {
        self.deaf_to_multicast[i] = deaf;
    }

    /// Draws from the network's generator (for a harness's restarts, so
    /// they too follow the seed).
    pub fn random_u64(&mut self) -> u64 {
        self.rng.random()
    }

    /// Next moment something happens.
    fn next_time(&self, hosts: &[E]) -> Option<Instant> {
        let flights = self.flights.peek().map(|Reverse(f)| f.at);
        let timers = hosts
            .iter()
            .enumerate()
            .filter(|(i, _)| self.up[*i])
            .filter_map(|(_, host)| host.poll_timeout());
        flights.into_iter().chain(timers).min()
    }

    /// Advances to the next event if it is no later than `until` and
    /// processes everything due then. `false` (clock set to `until`) if
    /// nothing is due by `until`.
    pub fn step(&mut self, hosts: &mut [E], until: Instant) -> bool {
        let Some(at) = self.next_time(hosts).filter(|t| *t <= until) else {
            self.now = self.now.max(until);
            return false;
        };
        // A timer that stays due after it fired would spin here forever: a
        // bug in the state machine, reported as such.
        if at <= self.now {
            self.stalled_steps += 1;
            assert!(
                self.stalled_steps < 100_000,
                "livelock: a timer stays due at {:?}",
                self.elapsed()
            );
        } else {
            self.stalled_steps = 0;
        }
        self.now = self.now.max(at);
        let now = self.now;
        // Datagrams arriving at one instant are one burst for their
        // receiver.
        let mut bursts = BTreeSet::new();
        while self.flights.peek().is_some_and(|Reverse(f)| f.at <= now) {
            let Some(Reverse(flight)) = self.flights.pop() else {
                break;
            };
            if !self.up[flight.to] {
                self.wire.dropped += 1;
                continue;
            }
            if bursts.insert(flight.to) {
                hosts[flight.to].begin_burst();
            }
            let via = if flight.multicast {
                Via::Multicast
            } else {
                Via::Unicast
            };
            let from = self.ids[flight.from];
            hosts[flight.to].handle_datagram(now, from, via, &flight.bytes);
            self.drain(hosts, flight.to);
        }
        for i in bursts {
            if self.up[i] {
                hosts[i].end_burst(now);
                self.drain(hosts, i);
            }
        }
        // Hosts with nothing due are left alone: a harness that gives a
        // host a command drains it itself (`drain`).
        for i in 0..hosts.len() {
            if !self.up[i] {
                continue;
            }
            if hosts[i].poll_timeout().is_some_and(|t| t <= now) {
                hosts[i].handle_timeout(now);
                self.drain(hosts, i);
            }
        }
        true
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, hosts: &mut [E], duration: Duration) {
        let until = self.now + duration;
        while self.step(hosts, until) {}
    }

    /// Drains host `i`'s transmits onto the links and its events into the
    /// log, until both are empty. Call it after giving a host a command.
    pub fn drain(&mut self, hosts: &mut [E], i: usize) {
        if !self.up[i] {
            return;
        }
        let now = self.now;
        loop {
            let mut progressed = false;
            while let Some(outgoing) = hosts[i].poll_transmit(now) {
                progressed = true;
                self.transmit(&hosts[i], i, outgoing);
            }
            while let Some(event) = hosts[i].poll_event() {
                progressed = true;
                self.events[i].push(event);
            }
            if !progressed {
                break;
            }
        }
    }

    fn link(&self, from: usize, to: usize) -> &LinkConfig {
        self.links.get(&(from, to)).unwrap_or(&self.default_link)
    }

    fn transmit(&mut self, host: &E, from: usize, outgoing: Outgoing) {
        if let Some(kind) = outgoing.kind {
            self.wire.packets[kind.index()] += 1;
        }
        self.wire.datagrams += 1;
        self.wire.bytes += outgoing.bytes.len() as u64;
        self.trace.update(&(from as u64).to_le_bytes());
        match outgoing.destination {
            Destination::Peer(peer) => self.trace.update(&[0]).update(&peer.0),
            Destination::Group(room) => self.trace.update(&[1]).update(&room.0),
        };
        self.trace
            .update(&(outgoing.bytes.len() as u64).to_le_bytes())
            .update(&outgoing.bytes);
        let (targets, multicast): (Vec<usize>, bool) = match outgoing.destination {
            Destination::Peer(peer) => {
                (self.index.get(&peer).copied().into_iter().collect(), false)
            }
            Destination::Group(room) => {
                let targets = host
                    .group_members(&room)
                    .iter()
                    .filter_map(|peer| self.index.get(peer).copied())
                    .filter(|&m| m != from && !self.deaf_to_multicast[m])
                    .collect();
                (targets, true)
            }
        };
        // One serialisation on the sender's uplink, even for multicast (at
        // the default link's rate; unicast at that link's rate).
        let bandwidth = match (multicast, targets.first()) {
            (false, Some(&to)) => self.link(from, to).bandwidth,
            _ => self.default_link.bandwidth,
        };
        let mut depart = self.now.max(self.uplink_free[from]);
        if let Some(bytes_per_second) = bandwidth.filter(|b| *b > 0) {
            let micros = outgoing.bytes.len() as u64 * 1_000_000 / bytes_per_second;
            depart += Duration::from_micros(micros);
            self.uplink_free[from] = depart;
        }
        for to in targets {
            if let Some(capture) = &mut self.capture {
                capture.push((from, to, outgoing.bytes.clone()));
            }
            let link = self.link(from, to).clone();
            if self.cut.contains(&(from, to)) || self.rng.random_bool(link.loss.clamp(0.0, 1.0)) {
                self.wire.dropped += 1;
                continue;
            }
            let copies = if self.rng.random_bool(link.duplicate.clamp(0.0, 1.0)) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let mut at = depart + link.delay + random_below(&mut self.rng, link.jitter);
                if self.rng.random_bool(link.reorder.clamp(0.0, 1.0)) {
                    at += random_below(&mut self.rng, link.reorder_delay);
                }
                self.flight_number += 1;
                self.flights.push(Reverse(Flight {
                    at,
                    number: self.flight_number,
                    to,
                    from,
                    multicast,
                    bytes: outgoing.bytes.clone(),
                }));
            }
        }
    }
}

fn random_below(rng: &mut StdRng, limit: Duration) -> Duration {
    let micros = limit.as_micros() as u64;
    if micros == 0 {
        Duration::ZERO
    } else {
        Duration::from_micros(rng.random_range(0..micros))
    }
}
