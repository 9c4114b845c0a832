//! A deterministic simulated network for the sans-IO core.
//!
//! N nodes, each a [`Reliable`] state machine, exchange datagrams over
//! simulated links on a virtual clock. Everything random (loss, duplication,
//! reordering, jitter, and each node's own RNG) is drawn from generators
//! seeded by [`SimConfig::seed`], so a run is reproducible from its seed.
//!
//! Links model loss, duplication, reordering (an extra random delay for some
//! packets), base delay + jitter and per-sender bandwidth (serialisation on
//! the sender's uplink). Partitions cut links both ways until healed; a node
//! can go down (it neither runs timers nor receives; packets to it are lost)
//! and come back up with its state intact, like a laptop lid. A node can be
//! deaf to multicast, like a member behind an access point that filters it.
//!
//! Each node has a model store: every [`Event::Received`] is appended to the
//! node's log and confirmed with [`Reliable::confirm_stored`] after
//! [`SimConfig::store_delay`] (or never, while the store is paused).
//!
//! The simulator counts every datagram put on the wire by [`PacketKind`]; a
//! multicast datagram counts once, as on a shared LAN segment.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::ids::{MessageId, PeerId, RoomId};
use super::reliable::{
    BufferUsage, Config, Destination, Event, PacketKind, Reliable, RoomConfig, SendError, Transmit,
    Via,
};

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

/// Simulation settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seeds the network and every node's RNG.
    pub seed: u64,
    /// Default for every link.
    pub link: LinkConfig,
    /// Every node's reliable-layer configuration.
    pub endpoint: Config,
    /// Time between a message's arrival and its store commit.
    pub store_delay: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            link: LinkConfig::default(),
            endpoint: Config::default(),
            store_delay: Duration::ZERO,
        }
    }
}

/// Datagrams put on the wire, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireStats {
    /// Indexed by [`PacketKind::index`].
    pub packets: [u64; 4],
    pub bytes: u64,
    /// Datagrams (per receiver) lost to loss, partitions or down nodes.
    pub dropped: u64,
}

impl WireStats {
    /// All datagrams of every kind.
    pub fn total(&self) -> u64 {
        self.packets.iter().sum()
    }

    /// Datagrams of one kind.
    pub fn of(&self, kind: PacketKind) -> u64 {
        self.packets[kind.index()]
    }
}

/// One message a node's store committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub room: RoomId,
    pub from: PeerId,
    pub id: MessageId,
    pub len: usize,
}

/// A simulated node.
#[derive(Debug)]
pub struct SimNode {
    pub endpoint: Reliable,
    up: bool,
    /// Does not hear multicast (sends it fine).
    pub deaf_to_multicast: bool,
    /// Messages received, in order of arrival at the application.
    pub received: Vec<Stored>,
    /// `(room, member, id)` → how often the sender saw `Delivered`.
    pub delivered: HashMap<(RoomId, PeerId, MessageId), u32>,
    /// Every other event, in order.
    pub events: Vec<Event>,
    store_paused: bool,
    pending_store: VecDeque<(Instant, RoomId, PeerId, u64)>,
    /// Largest buffer occupancy seen, field by field.
    pub peak: BufferUsage,
}

/// A datagram in flight.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Flight {
    at: Instant,
    /// Tie-breaker, keeps ordering deterministic.
    number: u64,
    to: usize,
    from: usize,
    via: ViaKey,
    bytes: Vec<u8>,
}

/// `Via`, orderable for the heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ViaKey {
    Unicast,
    Multicast,
}

/// The simulated network.
#[derive(Debug)]
pub struct Sim {
    config: SimConfig,
    start: Instant,
    now: Instant,
    rng: StdRng,
    nodes: Vec<SimNode>,
    ids: Vec<PeerId>,
    index: HashMap<PeerId, usize>,
    links: HashMap<(usize, usize), LinkConfig>,
    /// Cut directed links.
    cut: BTreeSet<(usize, usize)>,
    rooms: BTreeMap<RoomId, Vec<usize>>,
    room_configs: HashMap<RoomId, RoomConfig>,
    flights: BinaryHeap<Reverse<Flight>>,
    flight_number: u64,
    uplink_free: Vec<Instant>,
    /// Datagrams put on the wire.
    pub wire: WireStats,
    message_counter: u64,
    /// Steps in a row that did not advance the clock.
    stalled_steps: u32,
    /// Every message sent, in order: (sender, room, id).
    pub sent: Vec<(usize, RoomId, MessageId)>,
}

impl Sim {
    /// `nodes` nodes, all up, no rooms. The virtual clock starts at a real
    /// `Instant` read once here and then only moves by simulated time.
    pub fn new(config: SimConfig, nodes: usize) -> Self {
        let start = Instant::now();
        let mut rng = StdRng::seed_from_u64(config.seed);
        let ids: Vec<PeerId> = (0..nodes)
            .map(|i| PeerId(*blake3::hash(format!("sim-peer-{i}").as_bytes()).as_bytes()))
            .collect();
        let nodes: Vec<SimNode> = ids
            .iter()
            .map(|id| SimNode {
                endpoint: Reliable::new(
                    *id,
                    config.endpoint.clone(),
                    StdRng::seed_from_u64(rng.random()),
                    start,
                ),
                up: true,
                deaf_to_multicast: false,
                received: Vec::new(),
                delivered: HashMap::new(),
                events: Vec::new(),
                store_paused: false,
                pending_store: VecDeque::new(),
                peak: BufferUsage::default(),
            })
            .collect();
        Sim {
            index: ids.iter().enumerate().map(|(i, id)| (*id, i)).collect(),
            uplink_free: vec![start; nodes.len()],
            ids,
            nodes,
            config,
            start,
            now: start,
            rng,
            links: HashMap::new(),
            cut: BTreeSet::new(),
            rooms: BTreeMap::new(),
            room_configs: HashMap::new(),
            flights: BinaryHeap::new(),
            flight_number: 0,
            wire: WireStats::default(),
            message_counter: 0,
            stalled_steps: 0,
            sent: Vec::new(),
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &SimNode {
        &self.nodes[i]
    }

    /// All nodes.
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// Node `i`'s peer id.
    pub fn id(&self, i: usize) -> PeerId {
        self.ids[i]
    }

    /// Creates a room of the given nodes and makes every member join it.
    pub fn create_room(&mut self, members: &[usize], config: RoomConfig) -> RoomId {
        let room = RoomId(
            *blake3::hash(format!("sim-room-{}-{members:?}", self.rooms.len()).as_bytes())
                .as_bytes(),
        );
        let ids: Vec<PeerId> = members.iter().map(|&i| self.ids[i]).collect();
        for &i in members {
            self.nodes[i]
                .endpoint
                .join_room(room, config, ids.iter().copied());
        }
        self.rooms.insert(room, members.to_vec());
        self.room_configs.insert(room, config);
        room
    }

    /// Changes a room's members: every node in `members` (re)joins with the
    /// new list; nodes dropped from it leave.
    pub fn set_room_members(&mut self, room: RoomId, members: &[usize], config: RoomConfig) {
        let ids: Vec<PeerId> = members.iter().map(|&i| self.ids[i]).collect();
        let old = self
            .rooms
            .insert(room, members.to_vec())
            .unwrap_or_default();
        self.room_configs.insert(room, config);
        for i in old.into_iter().filter(|i| !members.contains(i)) {
            self.nodes[i].endpoint.leave_room(room);
        }
        for &i in members {
            self.nodes[i]
                .endpoint
                .join_room(room, config, ids.iter().copied());
        }
    }

    /// Node `from` sends a message of `len` bytes into `room`.
    pub fn send(&mut self, from: usize, room: RoomId, len: usize) -> Result<MessageId, SendError> {
        self.message_counter += 1;
        let id = MessageId(
            *blake3::hash(format!("msg-{from}-{}", self.message_counter).as_bytes()).as_bytes(),
        );
        // Payloads differ per message so reassembly mix-ups would show.
        let payload: Vec<u8> = (0..len)
            .map(|i| (i as u64 ^ self.message_counter) as u8)
            .collect();
        let now = self.now;
        self.nodes[from].endpoint.send(now, room, id, &payload)?;
        self.sent.push((from, room, id));
        self.drain(from);
        Ok(id)
    }

    /// Sets both directions of the link between `a` and `b`.
    pub fn set_link(&mut self, a: usize, b: usize, link: LinkConfig) {
        self.links.insert((a, b), link.clone());
        self.links.insert((b, a), link);
    }

    /// Sets the default for every link without its own setting.
    pub fn set_default_link(&mut self, link: LinkConfig) {
        self.config.link = link;
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

    /// Takes node `i` down or brings it back up (state intact).
    pub fn set_up(&mut self, i: usize, up: bool) {
        self.nodes[i].up = up;
        if up {
            self.drain(i);
        }
    }

    /// Restarts node `i`: its reliable-layer state is lost (a new session,
    /// empty queues), its store survives. Like the real node, it rejoins its
    /// rooms and seeds the duplicate filter from the store. Messages it had
    /// queued but not yet delivered are left to sync, as in real life.
    pub fn restart(&mut self, i: usize) {
        let seed = self.rng.random();
        let mut endpoint = Reliable::new(
            self.ids[i],
            self.config.endpoint.clone(),
            StdRng::seed_from_u64(seed),
            self.now,
        );
        let capacity = self.config.endpoint.dedup_capacity;
        let node = &mut self.nodes[i];
        let stored = node.received.len() - node.pending_store.len();
        let skip = stored.saturating_sub(capacity);
        endpoint.remember_stored(node.received[skip..stored].iter().map(|m| m.id));
        // Uncommitted messages die with the process.
        let lost = node.pending_store.len();
        node.received.truncate(node.received.len() - lost);
        node.pending_store.clear();
        node.endpoint = endpoint;
        for (room, members) in &self.rooms {
            if members.contains(&i) {
                let ids = members.iter().map(|&m| self.ids[m]);
                let config = self.room_configs.get(room).copied().unwrap_or_default();
                self.nodes[i].endpoint.join_room(*room, config, ids);
            }
        }
        self.drain(i);
    }

    /// Pauses or resumes node `i`'s store commits.
    pub fn set_store_paused(&mut self, i: usize, paused: bool) {
        self.nodes[i].store_paused = paused;
        if !paused {
            self.drain(i);
        }
    }

    /// Makes node `i` deaf (or not) to multicast.
    pub fn set_deaf_to_multicast(&mut self, i: usize, deaf: bool) {
        self.nodes[i].deaf_to_multicast = deaf;
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        while self.step(until) {}
    }

    /// Runs until `done` holds (checked after every step) or `limit` of
    /// virtual time passed. Returns whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let until = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if !self.step(until) {
                return done(self);
            }
        }
    }

    /// Next moment something happens.
    fn next_time(&self) -> Option<Instant> {
        let flights = self.flights.peek().map(|Reverse(f)| f.at);
        let nodes = self.nodes.iter().filter(|n| n.up).flat_map(|n| {
            let store = if n.store_paused {
                None
            } else {
                n.pending_store.front().map(|p| p.0)
            };
            [n.endpoint.poll_timeout(), store]
        });
        flights.into_iter().chain(nodes.flatten()).min()
    }

    /// Advances to the next event if it is no later than `until` and
    /// processes everything due then. `false` (clock set to `until`) if
    /// nothing is due by `until`.
    pub fn step(&mut self, until: Instant) -> bool {
        let Some(at) = self.next_time().filter(|t| *t <= until) else {
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
        while self.flights.peek().is_some_and(|Reverse(f)| f.at <= now) {
            let Some(Reverse(flight)) = self.flights.pop() else {
                break;
            };
            let node = &mut self.nodes[flight.to];
            if !node.up {
                self.wire.dropped += 1;
                continue;
            }
            let via = match flight.via {
                ViaKey::Unicast => Via::Unicast,
                ViaKey::Multicast => Via::Multicast,
            };
            let from = self.ids[flight.from];
            // Errors are counted in the endpoint's stats; the network just
            // carries bytes.
            let _ = node.endpoint.handle_datagram(now, from, via, &flight.bytes);
            self.drain(flight.to);
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].up
                && self.nodes[i]
                    .endpoint
                    .poll_timeout()
                    .is_some_and(|t| t <= now)
            {
                self.nodes[i].endpoint.handle_timeout(now);
                self.drain(i);
            } else if self.nodes[i].up
                && !self.nodes[i].store_paused
                && self.nodes[i]
                    .pending_store
                    .front()
                    .is_some_and(|p| p.0 <= now)
            {
                self.drain(i);
            }
        }
        true
    }

    /// Drains node `i`'s events and transmits, committing due store writes,
    /// until nothing is left.
    fn drain(&mut self, i: usize) {
        if !self.nodes[i].up {
            return;
        }
        let now = self.now;
        let store_delay = self.config.store_delay;
        loop {
            let mut progressed = false;
            let node = &mut self.nodes[i];
            while let Some(event) = node.endpoint.poll_event() {
                progressed = true;
                match event {
                    Event::Received {
                        room,
                        from,
                        seq,
                        id,
                        payload,
                    } => {
                        node.received.push(Stored {
                            room,
                            from,
                            id,
                            len: payload.len(),
                        });
                        node.pending_store
                            .push_back((now + store_delay, room, from, seq));
                    }
                    Event::Delivered { room, to, id } => {
                        *node.delivered.entry((room, to, id)).or_default() += 1
                    }
                    other => node.events.push(other),
                }
            }
            while !node.store_paused && node.pending_store.front().is_some_and(|p| p.0 <= now) {
                let Some((_, room, from, seq)) = node.pending_store.pop_front() else {
                    break;
                };
                node.endpoint.confirm_stored(now, room, from, seq);
                progressed = true;
            }
            let usage = node.endpoint.buffer_usage();
            let peak = &mut node.peak;
            peak.queued_packets = peak.queued_packets.max(usage.queued_packets);
            peak.reassembly_packets = peak.reassembly_packets.max(usage.reassembly_packets);
            peak.reassembly_bytes = peak.reassembly_bytes.max(usage.reassembly_bytes);
            peak.unconfirmed = peak.unconfirmed.max(usage.unconfirmed);
            peak.dedup_ids = peak.dedup_ids.max(usage.dedup_ids);
            peak.retransmit_queue = peak.retransmit_queue.max(usage.retransmit_queue);
            peak.control_queue = peak.control_queue.max(usage.control_queue);
            while let Some(transmit) = self.nodes[i].endpoint.poll_transmit(now) {
                progressed = true;
                self.transmit(i, transmit);
            }
            if !progressed {
                break;
            }
        }
    }

    fn link(&self, from: usize, to: usize) -> &LinkConfig {
        self.links.get(&(from, to)).unwrap_or(&self.config.link)
    }

    fn transmit(&mut self, from: usize, transmit: Transmit) {
        self.wire.packets[transmit.kind.index()] += 1;
        self.wire.bytes += transmit.bytes.len() as u64;
        let (targets, via): (Vec<usize>, ViaKey) = match transmit.destination {
            Destination::Peer(peer) => (
                self.index.get(&peer).copied().into_iter().collect(),
                ViaKey::Unicast,
            ),
            Destination::Group(room) => {
                let members = self.rooms.get(&room).cloned().unwrap_or_default();
                let targets = members
                    .into_iter()
                    .filter(|&m| m != from && !self.nodes[m].deaf_to_multicast)
                    .collect();
                (targets, ViaKey::Multicast)
            }
        };
        // One serialisation on the sender's uplink, even for multicast (at
        // the default link's rate; unicast at that link's rate).
        let bandwidth = match (transmit.destination, targets.first()) {
            (Destination::Peer(_), Some(&to)) => self.link(from, to).bandwidth,
            _ => self.config.link.bandwidth,
        };
        let mut depart = self.now.max(self.uplink_free[from]);
        if let Some(bytes_per_second) = bandwidth.filter(|b| *b > 0) {
            let micros = transmit.bytes.len() as u64 * 1_000_000 / bytes_per_second;
            depart += Duration::from_micros(micros);
            self.uplink_free[from] = depart;
        }
        for to in targets {
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
                    via,
                    bytes: transmit.bytes.clone(),
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
