//! The reliable layer on the simulated network: each host is a
//! [`Reliable`] endpoint with a model store.
//!
//! Every [`Event::Received`] is appended to the host's log and confirmed
//! with [`Reliable::confirm_stored`] after [`SimConfig::store_delay`] (or
//! never, while the store is paused). [`Sim`] adds rooms, messages and
//! restarts on top of the generic [`Network`].

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::{Endpoint, LinkConfig, Network, Outgoing};
use crate::proto::ids::{MessageId, PeerId, RoomId};
use crate::proto::reliable::{BufferUsage, Config, Event, Reliable, RoomConfig, SendError, Via};

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

/// One message a node's store committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub room: RoomId,
    pub from: PeerId,
    pub id: MessageId,
    pub len: usize,
}

/// A simulated node: the endpoint and its model store.
#[derive(Debug)]
pub struct SimNode {
    pub endpoint: Reliable,
    /// Messages received, in order of arrival at the application.
    pub received: Vec<Stored>,
    /// `(room, member, id)` → how often the sender saw `Delivered`.
    pub delivered: BTreeMap<(RoomId, PeerId, MessageId), u32>,
    /// Largest buffer occupancy seen, field by field.
    pub peak: BufferUsage,
    /// The rooms this node is in, as it joined them (for a restart).
    rooms: BTreeMap<RoomId, (RoomConfig, Vec<PeerId>)>,
    store_delay: Duration,
    store_paused: bool,
    pending_store: VecDeque<(Instant, RoomId, PeerId, u64)>,
    /// Every other event, waiting for [`Endpoint::poll_event`].
    others: VecDeque<Event>,
    /// Something happened since `peak` was last brought up to date.
    dirty: bool,
}

impl SimNode {
    fn new(endpoint: Reliable, store_delay: Duration) -> Self {
        SimNode {
            endpoint,
            received: Vec::new(),
            delivered: BTreeMap::new(),
            peak: BufferUsage::default(),
            rooms: BTreeMap::new(),
            store_delay,
            store_paused: false,
            pending_store: VecDeque::new(),
            others: VecDeque::new(),
            dirty: false,
        }
    }

    fn join(&mut self, room: RoomId, config: RoomConfig, members: Vec<PeerId>) {
        self.endpoint
            .join_room(room, config, members.iter().copied());
        self.rooms.insert(room, (config, members));
    }

    fn leave(&mut self, room: RoomId) {
        self.endpoint.leave_room(room);
        self.rooms.remove(&room);
    }

    /// Moves the endpoint's events into the model store and commits what
    /// is due, until nothing changes.
    fn pump(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(event) = self.endpoint.poll_event() {
                progressed = true;
                match event {
                    Event::Received {
                        room,
                        from,
                        seq,
                        id,
                        payload,
                    } => {
                        self.received.push(Stored {
                            room,
                            from,
                            id,
                            len: payload.len(),
                        });
                        self.pending_store
                            .push_back((now + self.store_delay, room, from, seq));
                    }
                    Event::Delivered { room, to, id } => {
                        *self.delivered.entry((room, to, id)).or_default() += 1
                    }
                    other => self.others.push_back(other),
                }
            }
            while !self.store_paused && self.pending_store.front().is_some_and(|p| p.0 <= now) {
                let Some((_, room, from, seq)) = self.pending_store.pop_front() else {
                    break;
                };
                self.endpoint.confirm_stored(now, room, from, seq);
                progressed = true;
            }
            if !progressed {
                break;
            }
            self.dirty = true;
        }
    }

    /// Brings `peak` up to date, once per drain that did something (the
    /// sums cost a walk over every stream).
    fn note_peak(&mut self) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        let usage = self.endpoint.buffer_usage();
        let peak = &mut self.peak;
        peak.queued_packets = peak.queued_packets.max(usage.queued_packets);
        peak.reassembly_packets = peak.reassembly_packets.max(usage.reassembly_packets);
        peak.reassembly_bytes = peak.reassembly_bytes.max(usage.reassembly_bytes);
        peak.unconfirmed = peak.unconfirmed.max(usage.unconfirmed);
        peak.dedup_ids = peak.dedup_ids.max(usage.dedup_ids);
        peak.retransmit_queue = peak.retransmit_queue.max(usage.retransmit_queue);
        peak.control_queue = peak.control_queue.max(usage.control_queue);
    }
}

impl Endpoint for SimNode {
    type Event = Event;

    fn handle_datagram(&mut self, now: Instant, from: PeerId, via: Via, bytes: &[u8]) {
        // Errors are counted in the endpoint's stats; the network just
        // carries bytes.
        let _ = self.endpoint.handle_datagram(now, from, via, bytes);
        self.dirty = true;
        self.pump(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            self.endpoint.handle_timeout(now);
            self.dirty = true;
        }
        self.pump(now);
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Outgoing> {
        self.pump(now);
        let Some(transmit) = self.endpoint.poll_transmit(now) else {
            self.note_peak();
            return None;
        };
        self.dirty = true;
        Some(Outgoing {
            destination: transmit.destination,
            kind: Some(transmit.kind),
            bytes: transmit.bytes,
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let store = if self.store_paused {
            None
        } else {
            self.pending_store.front().map(|p| p.0)
        };
        [self.endpoint.poll_timeout(), store]
            .into_iter()
            .flatten()
            .min()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.others.pop_front()
    }

    fn group_members(&self, room: &RoomId) -> Vec<PeerId> {
        self.rooms
            .get(room)
            .map(|(_, members)| members.clone())
            .unwrap_or_default()
    }
}

/// N reliable endpoints on a simulated network.
pub struct Sim {
    config: SimConfig,
    net: Network<SimNode>,
    nodes: Vec<SimNode>,
    room_count: u64,
    message_counter: u64,
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
        let hosts = ids
            .iter()
            .map(|id| {
                let endpoint = Reliable::new(
                    *id,
                    config.endpoint.clone(),
                    StdRng::seed_from_u64(rng.random()),
                    start,
                );
                SimNode::new(endpoint, config.store_delay)
            })
            .collect();
        Sim {
            net: Network::new(rng.random(), config.link.clone(), start, ids),
            nodes: hosts,
            config,
            room_count: 0,
            message_counter: 0,
            sent: Vec::new(),
        }
    }

    /// The network (clock, links, wire statistics, trace).
    pub fn net(&self) -> &Network<SimNode> {
        &self.net
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.net.now()
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.net.elapsed()
    }

    /// Datagrams put on the wire.
    pub fn wire(&self) -> super::WireStats {
        self.net.wire
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &SimNode {
        &self.nodes[i]
    }

    /// All nodes.
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// Node `i`'s events other than `Received` and `Delivered`, in order.
    pub fn events(&self, i: usize) -> &[Event] {
        self.net.events(i)
    }

    /// Node `i`'s peer id.
    pub fn id(&self, i: usize) -> PeerId {
        self.net.id(i)
    }

    /// Creates a room of the given nodes and makes every member join it.
    pub fn create_room(&mut self, members: &[usize], config: RoomConfig) -> RoomId {
        let room = RoomId(
            *blake3::hash(format!("sim-room-{}-{members:?}", self.room_count).as_bytes())
                .as_bytes(),
        );
        self.room_count += 1;
        let ids: Vec<PeerId> = members.iter().map(|&i| self.id(i)).collect();
        for &i in members {
            self.nodes[i].join(room, config, ids.clone());
        }
        room
    }

    /// Changes a room's members: every node in `members` (re)joins with the
    /// new list; nodes dropped from it leave.
    pub fn set_room_members(&mut self, room: RoomId, members: &[usize], config: RoomConfig) {
        let ids: Vec<PeerId> = members.iter().map(|&i| self.id(i)).collect();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if members.contains(&i) {
                node.join(room, config, ids.clone());
            } else if node.rooms.contains_key(&room) {
                node.leave(room);
            }
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
        let now = self.now();
        self.nodes[from].endpoint.send(now, room, id, &payload)?;
        self.nodes[from].dirty = true;
        self.sent.push((from, room, id));
        self.net.drain(&mut self.nodes, from);
        Ok(id)
    }

    /// Sets both directions of the link between `a` and `b`.
    pub fn set_link(&mut self, a: usize, b: usize, link: LinkConfig) {
        self.net.set_link(a, b, link);
    }

    /// Sets the default for every link without its own setting.
    pub fn set_default_link(&mut self, link: LinkConfig) {
        self.net.set_default_link(link);
    }

    /// Cuts every link between different groups.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        self.net.partition(groups);
    }

    /// Restores every cut link.
    pub fn heal(&mut self) {
        self.net.heal();
    }

    /// Takes node `i` down or brings it back up (state intact).
    pub fn set_up(&mut self, i: usize, up: bool) {
        self.net.set_up(&mut self.nodes, i, up);
    }

    /// Makes node `i` deaf (or not) to multicast.
    pub fn set_deaf_to_multicast(&mut self, i: usize, deaf: bool) {
        self.net.set_deaf_to_multicast(i, deaf);
    }

    /// Restarts node `i`: its reliable-layer state is lost (a new session,
    /// empty queues), its store survives. Like the real node, it rejoins its
    /// rooms and seeds the duplicate filter from the store. Messages it had
    /// queued but not yet delivered are left to sync, as in real life.
    pub fn restart(&mut self, i: usize) {
        let seed = self.net.random_u64();
        let now = self.now();
        let mut endpoint = Reliable::new(
            self.id(i),
            self.config.endpoint.clone(),
            StdRng::seed_from_u64(seed),
            now,
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
        let rooms = std::mem::take(&mut node.rooms);
        for (room, (config, members)) in rooms {
            node.join(room, config, members);
        }
        self.net.drain(&mut self.nodes, i);
    }

    /// Pauses or resumes node `i`'s store commits.
    pub fn set_store_paused(&mut self, i: usize, paused: bool) {
        self.nodes[i].store_paused = paused;
        if !paused {
            self.net.drain(&mut self.nodes, i);
        }
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        self.net.run_for(&mut self.nodes, duration);
    }

    /// Runs until `done` holds (checked after every step) or `limit` of
    /// virtual time passed. Returns whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let until = self.now() + limit;
        loop {
            if done(self) {
                return true;
            }
            if !self.net.step(&mut self.nodes, until) {
                return done(self);
            }
        }
    }

    /// Advances to the next event no later than `until` (see
    /// [`Network::step`]).
    pub fn step(&mut self, until: Instant) -> bool {
        self.net.step(&mut self.nodes, until)
    }
}
