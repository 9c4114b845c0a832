//! Node-level properties that need the node's insides, on the one
//! simulator ([`kith::proto::sim::Network`]): what the daemon keeps in its
//! store is modelled here ([`SimPeer`]: a store that commits every received
//! message after a delay and then confirms it, that can be paused, chain
//! snapshots as the daemon keeps them, a sync manager), so the scenarios
//! can pause a store, restore a node from a stale or stolen snapshot, and
//! read sessions, group keys, successors and chain origins. Over many
//! seeds:
//!
//! - every direct message is stored exactly once, in send order, per sender;
//! - `Delivered` comes exactly once per message, and only after the
//!   receiver's store confirmed it (checked after every step);
//! - messages to a peer that was offline go out once it is back;
//! - restarts (from the store, from a stale snapshot, a hundred times)
//!   lose nothing and never reuse a message key;
//! - forged group frames, and acknowledgements in another member's name,
//!   are dropped and counted; the previous epoch's key stops opening;
//! - chains rotate, their origins are forgotten, a stolen state stops
//!   opening the chat; admins name successors who take over;
//! - one seed reproduces a run exactly.
//!
//! What a daemon shows (events, history, counters, the wire) is checked on
//! its real core in `tests/node_sim.rs` and `tests/daemon_sim.rs`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use kith::proto::crypto::{ChainId, ChainRole, ChainSnapshot, Envelope, Identity};
use kith::proto::ids::{MessageId, PeerId, RoomId};
use kith::proto::node::{DropReason, Node, NodeConfig, NodeEvent, Receipt, direct_room};
use kith::proto::reliable::Via;
use kith::proto::sim::{self, Endpoint, LinkConfig, Network};
use kith::proto::sync::{Item, SortedItems, SyncAction, SyncManager, SyncManagerConfig};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// A LAN link with `loss`, some duplication and reordering, a fixed 1 ms
/// delay and no bandwidth limit.
fn lossy(loss: f64) -> LinkConfig {
    LinkConfig {
        loss,
        duplicate: 0.05,
        reorder: 0.1,
        reorder_delay: Duration::from_millis(8),
        delay: Duration::from_millis(1),
        jitter: Duration::ZERO,
        bandwidth: None,
    }
}

const STORE_DELAY: Duration = Duration::from_millis(2);

struct Stored {
    room: RoomId,
    from: PeerId,
    id: MessageId,
    /// `None` for an envelope stored as not yet readable.
    body: Option<Vec<u8>>,
}

/// One node in a model of the daemon's shell.
struct SimPeer {
    node: Node,
    store_paused: bool,
    stored: Vec<Stored>,
    confirmed_at: HashMap<MessageId, Instant>,
    pending_store: VecDeque<(Instant, Receipt, MessageId)>,
    delivered: HashMap<(PeerId, MessageId), u32>,
    /// Every `Delivered` as it came: (when, to whom, which message), for
    /// the check that the receiver had stored it by then.
    delivered_log: Vec<(Instant, PeerId, MessageId)>,
    /// Events for the test, waiting for `poll_event`.
    others: VecDeque<NodeEvent>,
    /// The chain snapshots the node handed out, as a store keeps them.
    chains: BTreeMap<(ChainId, u8), ChainSnapshot>,
    /// Snapshots waiting for the commit of the messages of their round
    /// (they commit together, as the daemon does).
    pending_chains: VecDeque<(Instant, Vec<ChainSnapshot>)>,
    /// Every envelope held (received or sent), by room: what sync sees.
    history: BTreeMap<RoomId, BTreeMap<MessageId, (u64, Vec<u8>)>>,
    sync: SyncManager,
}

impl SimPeer {
    /// The room's items in sync order, as a store would list them.
    fn items(&self, room: &RoomId) -> SortedItems {
        let items = self
            .history
            .get(room)
            .map(|h| {
                h.iter()
                    .map(|(id, (timestamp, _))| Item {
                        timestamp: *timestamp,
                        id: *id,
                    })
                    .collect()
            })
            .unwrap_or_default();
        SortedItems::new(items)
    }

    fn remember(&mut self, room: RoomId, id: MessageId, envelope: &[u8]) {
        let timestamp = Envelope::parse(envelope).map_or(0, |e| e.header.timestamp);
        self.history
            .entry(room)
            .or_default()
            .insert(id, (timestamp, envelope.to_vec()));
    }

    /// What the shell does after every input: events into the model
    /// store, due store commits into confirmations, sync actions into the
    /// node, chain snapshots into the store. Transmits stay in the node
    /// for `poll_transmit`.
    fn pump(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(event) = self.node.poll_event() {
                progressed = true;
                self.on_event(now, event);
            }
            while !self.store_paused && self.pending_store.front().is_some_and(|s| s.0 <= now) {
                let Some((_, receipt, id)) = self.pending_store.pop_front() else {
                    break;
                };
                // The first commit counts: a later copy must not move it.
                self.confirmed_at.entry(id).or_insert(now);
                self.node.confirm_stored(now, receipt);
                progressed = true;
            }
            while let Some(action) = self.sync.poll_action() {
                progressed = true;
                match action {
                    SyncAction::Send {
                        peer: to,
                        room,
                        payload,
                    } => {
                        let _ = self.node.send_sync(now, to, room, payload);
                    }
                    SyncAction::Forward {
                        peer: to,
                        room,
                        ids,
                    } => {
                        for id in ids {
                            let envelope = self
                                .history
                                .get(&room)
                                .and_then(|h| h.get(&id))
                                .map(|(_, e)| e.clone());
                            if let Some(envelope) = envelope {
                                let _ = self.node.forward(now, to, &envelope);
                            }
                        }
                    }
                }
            }
            // As the daemon does: a sending chain's new reservation is
            // stored before the datagrams of the seals that asked for it
            // leave (a crash must not let the chain start behind them).
            for snapshot in self.node.take_reservations() {
                let role = snapshot.role.to_u8();
                self.chains.insert((snapshot.chain, role), snapshot);
            }
            let updates = self.node.take_chain_updates();
            if !updates.is_empty() {
                // Committed with the last message of this round, if any.
                let at = self.pending_store.back().map_or(now, |s| s.0);
                self.pending_chains.push_back((at, updates));
            }
            // As the daemon does: a forgotten origin is deleted after
            // everything stored before it, so no older copy comes back.
            for chain in self.node.take_forgotten_origins() {
                let key = (chain, ChainRole::Receiving.to_u8());
                self.chains.remove(&key);
                for (_, snapshots) in self.pending_chains.iter_mut() {
                    snapshots.retain(|s| (s.chain, s.role.to_u8()) != key);
                }
            }
            while !self.store_paused && self.pending_chains.front().is_some_and(|c| c.0 <= now) {
                let Some((_, snapshots)) = self.pending_chains.pop_front() else {
                    break;
                };
                for snapshot in snapshots {
                    let role = snapshot.role.to_u8();
                    self.chains.insert((snapshot.chain, role), snapshot);
                }
            }
            if !progressed {
                break;
            }
        }
    }

    fn on_event(&mut self, now: Instant, event: NodeEvent) {
        match event {
            NodeEvent::MessageReceived {
                room,
                from,
                id,
                body,
                receipt,
                envelope,
                ..
            } => {
                if self.stored.iter().any(|s| s.id == id) {
                    // Already stored (it came twice: sync and the reliable
                    // stream): acknowledged, not kept twice.
                    self.node.confirm_stored(now, receipt);
                    return;
                }
                self.remember(room, id, &envelope);
                self.stored.push(Stored {
                    room,
                    from,
                    id,
                    body: Some(body),
                });
                self.pending_store
                    .push_back((now + STORE_DELAY, receipt, id));
            }
            NodeEvent::Undecryptable {
                room,
                from,
                id,
                receipt,
                ..
            } => {
                self.stored.push(Stored {
                    room,
                    from,
                    id,
                    body: None,
                });
                self.pending_store
                    .push_back((now + STORE_DELAY, receipt, id));
            }
            NodeEvent::Delivered { to, id, .. } => {
                self.delivered_log.push((now, to, id));
                *self.delivered.entry((to, id)).or_default() += 1;
            }
            NodeEvent::SyncReceived {
                room,
                peer,
                payload,
            } => {
                let set = self.items(&room);
                let secret = self.node.sync_secret(&peer);
                self.sync
                    .handle_message(now, room, peer, &payload, &set, secret);
            }
            NodeEvent::RoomInvited { room, .. } => {
                // The user says yes (to every invitation).
                let _ = self.node.accept_invite(now, room);
            }
            NodeEvent::ContactLearned { public } => {
                // The shell finds an address for a member it just met;
                // here every node is reachable.
                let peer = public.peer_id();
                self.node.set_reachable(now, peer, true);
                self.others.push_back(NodeEvent::ContactLearned { public });
            }
            other => self.others.push_back(other),
        }
    }
}

impl Endpoint for SimPeer {
    type Event = NodeEvent;

    fn handle_datagram(&mut self, now: Instant, _from: PeerId, _via: Via, bytes: &[u8]) {
        // Drops are counted inside the node; the network only carries.
        let _ = self.node.handle_datagram(now, bytes);
        self.pump(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.node.poll_timeout().is_some_and(|t| t <= now) {
            self.node.handle_timeout(now);
        }
        self.pump(now);
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<sim::Outgoing> {
        self.pump(now);
        let transmit = self.node.poll_transmit()?;
        assert!(transmit.bytes.len() <= kith::proto::wire::MAX_DATAGRAM);
        Some(sim::Outgoing {
            destination: transmit.to,
            kind: None,
            bytes: transmit.bytes,
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let (store, chains) = if self.store_paused {
            (None, None)
        } else {
            (
                self.pending_store.front().map(|s| s.0),
                self.pending_chains.front().map(|c| c.0),
            )
        };
        [self.node.poll_timeout(), store, chains]
            .into_iter()
            .flatten()
            .min()
    }

    fn poll_event(&mut self) -> Option<NodeEvent> {
        self.others.pop_front()
    }

    /// The LAN's multicast group: every member the sender knows hears it
    /// (each over its own lossy link).
    fn group_members(&self, room: &RoomId) -> Vec<PeerId> {
        self.node.room(room).map(|r| r.members).unwrap_or_default()
    }

    fn begin_burst(&mut self) {
        self.node.begin_burst();
    }

    /// Room messages of a burst wait for its end and are verified
    /// together, as in the daemon.
    fn end_burst(&mut self, now: Instant) {
        self.node.end_burst(now);
        self.pump(now);
    }
}

struct Net {
    sim: Network<SimPeer>,
    peers: Vec<SimPeer>,
    ids: Vec<PeerId>,
    index: HashMap<PeerId, usize>,
    /// Messages sent: (from, to, id, body), in send order.
    sent: Vec<(usize, usize, MessageId, Vec<u8>)>,
    /// Group messages sent, in send order.
    room_sent: Vec<RoomSent>,
    /// How much of each peer's `delivered_log` was checked.
    checked: Vec<usize>,
    /// Restarts so far: each run of a node gets its own randomness (its
    /// reliable session ids), as a real restart does.
    restarts: u64,
    /// Every node's configuration, again after a restart.
    config: NodeConfig,
}

/// A group message and who was a member (besides its author) when it was
/// sent.
struct RoomSent {
    from: usize,
    room: RoomId,
    id: MessageId,
    body: Vec<u8>,
    envelope: Vec<u8>,
    recipients: Vec<usize>,
}

fn identity(seed: u64, i: usize) -> Identity {
    Identity::generate(&mut StdRng::seed_from_u64(seed * 1000 + i as u64))
}

impl Net {
    /// `n` nodes, every one a reachable contact of every other.
    fn new(seed: u64, n: usize, link: LinkConfig) -> Self {
        Self::with_contacts(seed, n, link, |_, _| true)
    }

    fn with_contacts(
        seed: u64,
        n: usize,
        link: LinkConfig,
        contact: impl Fn(usize, usize) -> bool,
    ) -> Self {
        Self::build(seed, n, link, contact, NodeConfig::default())
    }

    fn build(
        seed: u64,
        n: usize,
        link: LinkConfig,
        contact: impl Fn(usize, usize) -> bool,
        config: NodeConfig,
    ) -> Self {
        let now = Instant::now();
        let identities: Vec<Identity> = (0..n).map(|i| identity(seed, i)).collect();
        let ids: Vec<PeerId> = identities.iter().map(Identity::peer_id).collect();
        let publics: Vec<_> = identities.iter().map(Identity::public).collect();
        let mut peers = Vec::new();
        for (i, id) in identities.into_iter().enumerate() {
            let mut node = Node::new(
                id,
                config.clone(),
                StdRng::seed_from_u64(seed * 7919 + i as u64),
                now,
            );
            for (j, public) in publics.iter().enumerate() {
                if i != j && contact(i, j) {
                    node.add_contact(now, public.clone());
                    node.set_reachable(now, ids[j], true);
                }
            }
            peers.push(SimPeer {
                node,
                store_paused: false,
                stored: Vec::new(),
                confirmed_at: HashMap::new(),
                pending_store: VecDeque::new(),
                delivered: HashMap::new(),
                delivered_log: Vec::new(),
                others: VecDeque::new(),
                chains: BTreeMap::new(),
                pending_chains: VecDeque::new(),
                history: BTreeMap::new(),
                sync: SyncManager::new(
                    ids[i],
                    SyncManagerConfig::default(),
                    StdRng::seed_from_u64(seed * 13 + i as u64),
                ),
            });
        }
        let mut sim = Network::new(seed, link, now, ids.clone());
        sim.capture();
        Net {
            sim,
            peers,
            index: ids.iter().enumerate().map(|(i, id)| (*id, i)).collect(),
            ids,
            sent: Vec::new(),
            room_sent: Vec::new(),

            checked: vec![0; n],
            restarts: 0,
            config,
        }
    }

    /// The current virtual time.
    fn now(&self) -> Instant {
        self.sim.now()
    }

    /// Takes node `i` down (it neither receives nor runs timers) or brings
    /// it back up.
    fn set_up(&mut self, i: usize, up: bool) {
        self.sim.set_up(&mut self.peers, i, up);
        self.check_delivered();
    }

    /// Node `i` restarts: same identity and store, but all protocol state
    /// (sessions, chains, reliable streams) is lost, and so are store
    /// commits that had not happened yet.
    fn restart(&mut self, seed: u64, i: usize) {
        let now = self.now();
        self.restarts += 1;
        let mut node = Node::new(
            identity(seed, i),
            self.config.clone(),
            StdRng::seed_from_u64(seed * 31 + 77 + (self.restarts - 1) * 1_000_003),
            now,
        );
        let publics: Vec<_> = (0..self.peers.len())
            .map(|j| identity(seed, j).public())
            .collect();
        for (j, public) in publics.into_iter().enumerate() {
            if j != i {
                node.add_contact(now, public);
                node.set_reachable(now, self.ids[j], true);
            }
        }
        let peer = &mut self.peers[i];
        node.remember_stored(peer.stored.iter().map(|s| s.id));
        peer.node = node;
        peer.pending_store.clear();
        peer.pending_chains.clear();
    }

    fn send(&mut self, from: usize, to: usize, text: &str) -> MessageId {
        let now = self.now();
        let id = self.peers[from]
            .node
            .send_direct(now, self.ids[to], text)
            .expect("direct message is accepted");
        self.sent.push((from, to, id, text.as_bytes().to_vec()));
        self.drain(from);
        id
    }

    /// Node `from` sends `text` in group `room`; its current members other
    /// than `from` must all store it.
    fn send_room(&mut self, from: usize, room: RoomId, text: &str) -> MessageId {
        let now = self.now();
        let sent = self.peers[from]
            .node
            .send_room_message(now, room, text)
            .expect("room message is accepted");
        self.peers[from].remember(room, sent.id, &sent.envelope);
        let members = self.peers[from].node.room(&room).expect("member").members;
        let recipients = members
            .iter()
            .map(|p| self.index[p])
            .filter(|i| *i != from)
            .collect();
        self.room_sent.push(RoomSent {
            from,
            room,
            id: sent.id,
            body: text.as_bytes().to_vec(),
            envelope: sent.envelope,
            recipients,
        });
        self.drain(from);
        sent.id
    }

    /// Every group message was stored by each recipient and reported
    /// delivered to its author.
    fn all_room_delivered(&self) -> bool {
        self.room_sent.iter().all(|m| {
            m.recipients.iter().all(|to| {
                self.peers[*to].confirmed_at.contains_key(&m.id)
                    && self.peers[m.from]
                        .delivered
                        .contains_key(&(self.ids[*to], m.id))
            })
        })
    }

    /// Group messages: stored once by every recipient, readable, in each
    /// author's order; delivered once per recipient; never stored by anyone
    /// who was not a recipient.
    fn check_room_messages(&self) {
        for (to, peer) in self.peers.iter().enumerate() {
            for from in 0..self.peers.len() {
                let want: Vec<MessageId> = self
                    .room_sent
                    .iter()
                    .filter(|m| m.from == from && m.recipients.contains(&to))
                    .map(|m| m.id)
                    .collect();
                let got: Vec<MessageId> = peer
                    .stored
                    .iter()
                    .filter(|s| {
                        s.from == self.ids[from] && self.room_sent.iter().any(|m| m.id == s.id)
                    })
                    .map(|s| s.id)
                    .collect();
                assert_eq!(got, want, "group messages {from} -> {to}");
            }
        }
        for m in &self.room_sent {
            for to in &m.recipients {
                let stored = self.peers[*to]
                    .stored
                    .iter()
                    .find(|s| s.id == m.id)
                    .expect("stored");
                assert_eq!(stored.body.as_deref(), Some(m.body.as_slice()));
                assert_eq!(stored.room, m.room);
                assert_eq!(
                    self.peers[m.from].delivered.get(&(self.ids[*to], m.id)),
                    Some(&1),
                    "Delivered exactly once"
                );
            }
        }
    }

    fn run_for(&mut self, duration: Duration) {
        let until = self.now() + duration;
        while self.step(until) {}
    }

    fn run_until(&mut self, limit: Duration, done: impl Fn(&Net) -> bool) -> bool {
        let until = self.now() + limit;
        loop {
            if done(self) {
                return true;
            }
            if !self.step(until) {
                return done(self);
            }
        }
    }

    fn step(&mut self, until: Instant) -> bool {
        let stepped = self.sim.step(&mut self.peers, until);
        self.check_delivered();
        stepped
    }

    /// Drains node `i` after a command given to it directly.
    fn drain(&mut self, i: usize) {
        self.sim.drain(&mut self.peers, i);
        self.check_delivered();
    }

    /// Every `Delivered` reported since the last check came after the
    /// receiver's store confirmed the message.
    fn check_delivered(&mut self) {
        for i in 0..self.peers.len() {
            for &(at, to, id) in &self.peers[i].delivered_log[self.checked[i]..] {
                let j = self.index[&to];
                let confirmed = self.peers[j].confirmed_at.get(&id);
                assert!(
                    confirmed.is_some_and(|t| *t <= at),
                    "Delivered before the receiver's store confirmed: {i} -> {j} {:?} sent {:?} room {:?}",
                    self.peers[j].node.stats(),
                    self.sent.iter().position(|s| s.2 == id),
                    self.room_sent.iter().position(|s| s.id == id)
                );
            }
            self.checked[i] = self.peers[i].delivered_log.len();
        }
    }

    /// Every message sent so far was stored and reported delivered.
    fn all_delivered(&self) -> bool {
        self.sent.iter().all(|(from, to, id, _)| {
            self.peers[*to].confirmed_at.contains_key(id)
                && self.peers[*from]
                    .delivered
                    .contains_key(&(self.ids[*to], *id))
        })
    }

    /// The invariants every scenario ends with.
    fn check_exactly_once_in_order(&self) {
        for (to, peer) in self.peers.iter().enumerate() {
            for (from, _) in self.peers.iter().enumerate() {
                let want: Vec<&[u8]> = self
                    .sent
                    .iter()
                    .filter(|s| s.0 == from && s.1 == to)
                    .map(|s| s.3.as_slice())
                    .collect();
                let direct = direct_room(self.ids[from], self.ids[to]);
                let got: Vec<&[u8]> = peer
                    .stored
                    .iter()
                    .filter(|s| s.from == self.ids[from] && s.room == direct)
                    .map(|s| s.body.as_deref().expect("readable"))
                    .collect();
                assert_eq!(got, want, "messages {from} -> {to}");
            }
        }
        for (from, to, id, _) in &self.sent {
            assert_eq!(
                self.peers[*from].delivered.get(&(self.ids[*to], *id)),
                Some(&1),
                "Delivered exactly once"
            );
            assert!(self.peers[*to].stored.iter().any(|s| s.id == *id));
        }
        for peer in &self.peers {
            let stats = peer.node.stats();
            assert_eq!(stats.dropped(DropReason::Forged), 0, "{stats:?}");
            assert_eq!(stats.dropped(DropReason::EnvelopeRejected), 0, "{stats:?}");
            assert_eq!(stats.dropped(DropReason::ControlMalformed), 0, "{stats:?}");
        }
    }
}

/// Every peer sends `count` messages to every other, in bursts, with time
/// passing in between.
fn chatter(net: &mut Net, count: usize) {
    let n = net.peers.len();
    for round in 0..count {
        for from in 0..n {
            for to in 0..n {
                if from != to {
                    net.send(from, to, &format!("{from}->{to} #{round}"));
                }
            }
        }
        if round % 4 == 3 {
            net.run_for(Duration::from_millis(20));
        }
    }
}

/// Node 0 creates a group room with `members`.
fn create_room(net: &mut Net, members: &[usize]) -> RoomId {
    let now = net.now();
    let ids: Vec<PeerId> = members.iter().map(|i| net.ids[*i]).collect();
    let room = net.peers[0]
        .node
        .create_room(now, "kitchen", &ids)
        .expect("room is created");
    net.drain(0);
    room
}

fn in_room(net: &Net, i: usize, room: &RoomId) -> Option<Vec<usize>> {
    net.peers[i]
        .node
        .room(room)
        .map(|r| r.members.iter().map(|p| net.index[p]).collect())
}

#[test]
fn sender_restart_resends_its_outbox_unchanged_and_nothing_is_stored_twice() {
    for seed in 0..4 {
        let seed = 900 + seed;
        let mut net = Net::new(seed, 3, lossy(0.1));
        let room = create_room(&mut net, &[1, 2]);
        assert!(net.run_until(Duration::from_secs(30), |n| {
            (0..3).all(|i| in_room(n, i, &room).is_some())
        }));
        // A's messages towards B, as its store would keep them.
        let mut outbox: Vec<(MessageId, Vec<u8>)> = Vec::new();
        let mut send_both = |net: &mut Net, text: &str| {
            let now = net.now();
            let direct = net.peers[0]
                .node
                .send_direct_message(now, net.ids[1], text)
                .expect("direct");
            net.sent.push((0, 1, direct.id, text.as_bytes().to_vec()));
            outbox.push((direct.id, direct.envelope));
            let id = net.send_room(0, room, text);
            let envelope = net.room_sent.last().expect("just sent").envelope.clone();
            outbox.push((id, envelope));
        };
        for i in 0..3 {
            send_both(&mut net, &format!("acknowledged {i}"));
        }
        assert!(net.run_until(Duration::from_secs(60), |n| {
            n.all_delivered() && n.all_room_delivered()
        }));
        // B goes away; A sends more, then restarts before B is back.
        net.set_up(1, false);
        for i in 0..3 {
            send_both(&mut net, &format!("while B was away {i}"));
        }
        net.run_for(Duration::from_millis(300));
        let info = net.peers[0].node.room(&room).expect("member");
        net.restart(seed, 0);
        net.set_up(1, true);
        let now = net.now();
        // What a shell does at start-up: rooms, then chains, then resume,
        // then the outbox.
        net.peers[0]
            .node
            .restore_room(now, &info, &[])
            .expect("restore");
        let saved: Vec<ChainSnapshot> = net.peers[0].chains.values().cloned().collect();
        net.peers[0].node.restore_chains(saved);
        net.peers[0].node.resume(now);
        // The outbox is what B did not acknowledge, plus the first two
        // messages as if their acknowledgements had been lost in the crash.
        let b = net.ids[1];
        for (id, _) in &outbox[..2] {
            net.peers[0].delivered.remove(&(b, *id));
        }
        let pending: Vec<Vec<u8>> = outbox
            .iter()
            .filter(|(id, _)| !net.peers[0].delivered.contains_key(&(b, *id)))
            .map(|(_, envelope)| envelope.clone())
            .collect();
        assert_eq!(pending.len(), 2 + 6, "seed {seed}: B missed the last six");
        for envelope in &pending {
            net.peers[0]
                .node
                .resend_envelope(now, net.ids[1], envelope)
                .expect("resend");
        }
        // C's outbox too: room messages whose acknowledgement from C had not
        // come back before the restart.
        let c = net.ids[2];
        let for_c: Vec<Vec<u8>> = net
            .room_sent
            .iter()
            .filter(|m| !net.peers[0].delivered.contains_key(&(c, m.id)))
            .map(|m| m.envelope.clone())
            .collect();
        for envelope in &for_c {
            net.peers[0]
                .node
                .resend_envelope(now, c, envelope)
                .expect("resend");
        }
        net.drain(0);
        assert!(
            net.run_until(Duration::from_secs(60), |n| {
                n.sent
                    .iter()
                    .all(|(_, to, id, _)| n.peers[*to].stored.iter().any(|s| s.id == *id))
                    && n.all_room_delivered()
            }),
            "seed {seed}: B got everything ({} of {} direct stored, room delivered: {})",
            net.sent
                .iter()
                .filter(|(_, to, id, _)| net.peers[*to].stored.iter().any(|s| s.id == *id))
                .count(),
            net.sent.len(),
            net.room_sent
                .iter()
                .map(|m| m
                    .recipients
                    .iter()
                    .filter(|to| net.peers[0].delivered.contains_key(&(net.ids[**to], m.id)))
                    .count())
                .sum::<usize>()
        );
        for (_, _, id, body) in &net.sent {
            let copies: Vec<&Stored> = net.peers[1].stored.iter().filter(|s| s.id == *id).collect();
            assert_eq!(copies.len(), 1, "seed {seed}: stored exactly once");
            assert_eq!(copies[0].body.as_deref(), Some(body.as_slice()));
        }
        net.check_room_messages();
        // Room life goes on after the restart, on the restored chain.
        net.send_room(0, room, "after the restart");
        net.send_room(1, room, "welcome back");
        assert!(net.run_until(Duration::from_secs(60), Net::all_room_delivered));
        net.check_room_messages();
    }
}

#[test]
fn receiver_restart_with_its_chains_reads_everything_sent_meanwhile() {
    for seed in 0..4 {
        let seed = 1100 + seed;
        let mut net = Net::new(seed, 2, lossy(0.1));
        chatter(&mut net, 5);
        assert!(net.run_until(Duration::from_secs(60), Net::all_delivered));
        // B crashes; A writes on while it is away.
        net.set_up(1, false);
        for i in 0..5 {
            net.send(0, 1, &format!("while B was down {i}"));
        }
        net.run_for(Duration::from_millis(300));
        net.restart(seed, 1);
        let now = net.now();
        let saved: Vec<ChainSnapshot> = net.peers[1].chains.values().cloned().collect();
        net.peers[1].node.restore_chains(saved);
        net.peers[1].node.resume(now);
        net.set_up(1, true);
        net.drain(1);
        for i in 0..5 {
            net.send(0, 1, &format!("after {i}"));
            net.send(1, 0, &format!("reply {i}"));
        }
        assert!(
            net.run_until(Duration::from_secs(60), Net::all_delivered),
            "seed {seed}: everything delivered"
        );
        // Every message readable, once: nothing went the unreadable path.
        net.check_exactly_once_in_order();
        assert!(net.peers[1].stored.iter().all(|s| s.body.is_some()));
    }
}

#[test]
fn a_sender_restored_from_a_stale_snapshot_never_reuses_a_message_key() {
    let mut net = Net::new(1800, 2, lossy(0.0));
    let (a, b) = (0, 1);
    let mut positions = std::collections::HashSet::new();
    let mut send = |net: &mut Net, text: &str| {
        let now = net.now();
        let sent = net.peers[a]
            .node
            .send_direct_message(now, net.ids[b], text)
            .expect("send");
        net.sent.push((a, b, sent.id, text.as_bytes().to_vec()));
        assert!(
            positions.insert(sent.seq),
            "chain position {} used twice",
            sent.seq
        );
        net.drain(a);
    };
    for i in 0..3 {
        send(&mut net, &format!("before {i}"));
    }
    assert!(net.run_until(Duration::from_secs(10), Net::all_delivered));
    // The store's copy falls behind: the next seals' snapshots are "lost".
    let stale: Vec<ChainSnapshot> = net.peers[a].chains.values().cloned().collect();
    for i in 0..3 {
        send(&mut net, &format!("unsaved {i}"));
    }
    assert!(net.run_until(Duration::from_secs(10), Net::all_delivered));
    net.restart(1800, a);
    let now = net.now();
    net.peers[a].node.restore_chains(stale);
    net.peers[a].node.resume(now);
    net.drain(a);
    for i in 0..3 {
        send(&mut net, &format!("after the restart {i}"));
    }
    assert!(net.run_until(Duration::from_secs(30), Net::all_delivered));
    net.check_exactly_once_in_order();
    assert!(net.peers[b].stored.iter().all(|s| s.body.is_some()));
}

/// What a shell does at start-up for node `i`, after [`Net::restart`]:
/// rooms, then chains (as its store holds them), then resume, then the
/// outbox: every message of `i`'s that a recipient has not stored yet goes
/// out again as the very envelope.
fn restart_from_store(net: &mut Net, seed: u64, i: usize, rooms: &[RoomId], outbox: &[Outgoing]) {
    let infos: Vec<_> = rooms
        .iter()
        .filter_map(|room| net.peers[i].node.room(room))
        .collect();
    net.restart(seed, i);
    let now = net.now();
    for info in &infos {
        net.peers[i]
            .node
            .restore_room(now, info, &[])
            .expect("restore");
    }
    let saved: Vec<ChainSnapshot> = net.peers[i].chains.values().cloned().collect();
    net.peers[i].node.restore_chains(saved);
    net.peers[i].node.resume(now);
    for message in outbox.iter().filter(|m| m.from == i) {
        for to in &message.to {
            if !net.peers[*to].stored.iter().any(|s| s.id == message.id) {
                net.peers[i]
                    .node
                    .resend_envelope(now, net.ids[*to], &message.envelope)
                    .expect("resend");
            }
        }
    }
    net.drain(i);
}

/// A message as its author's store keeps it, for resending.
struct Outgoing {
    from: usize,
    to: Vec<usize>,
    id: MessageId,
    body: Vec<u8>,
    envelope: Vec<u8>,
}

/// Node `from` sends `count` direct messages to `to` and `count` room
/// messages, keeping them as its outbox would.
fn send_both(
    net: &mut Net,
    outbox: &mut Vec<Outgoing>,
    from: usize,
    to: usize,
    room: RoomId,
    count: usize,
    label: &str,
) {
    for k in 0..count {
        let now = net.now();
        let text = format!("{label} direct {k}");
        let sent = net.peers[from]
            .node
            .send_direct_message(now, net.ids[to], &text)
            .expect("direct");
        outbox.push(Outgoing {
            from,
            to: vec![to],
            id: sent.id,
            body: text.into_bytes(),
            envelope: sent.envelope,
        });
        let text = format!("{label} room {k}");
        let id = net.send_room(from, room, &text);
        let sent = net.room_sent.last().expect("just sent");
        outbox.push(Outgoing {
            from,
            to: sent.recipients.clone(),
            id,
            body: text.into_bytes(),
            envelope: sent.envelope.clone(),
        });
        if k % 64 == 63 {
            net.run_for(Duration::from_millis(20));
        }
    }
    net.drain(from);
}

fn all_stored(net: &Net, outbox: &[Outgoing]) -> bool {
    outbox.iter().all(|m| {
        m.to.iter()
            .all(|to| net.peers[*to].confirmed_at.contains_key(&m.id))
    })
}

/// Issue 18, item 1: a sender restarted again and again (cleanly, and
/// killed with sends whose store writes were lost) is still read by every
/// member, in a room of three and in a direct chat, also by members that
/// restarted in between; no genuine message is ever rejected.
#[test]
fn a_sender_restarted_a_hundred_times_is_read_by_everyone_exactly_once() {
    let seed = 2100;
    let mut net = Net::new(seed, 3, lossy(0.02));
    let room = create_room(&mut net, &[1, 2]);
    assert!(net.run_until(Duration::from_secs(30), |n| {
        (0..3).all(|i| in_room(n, i, &room).is_some_and(|m| m.len() == 3))
    }));
    let rooms = [room];
    let mut outbox = Vec::new();
    // More than MAX_SKIP messages before the first restart.
    send_both(&mut net, &mut outbox, 0, 1, room, 4200, "before");
    assert!(
        net.run_until(Duration::from_secs(600), |n| all_stored(n, &outbox)),
        "the first messages arrive"
    );
    let mut rejected = 0;
    for round in 0..100 {
        let killed = round % 2 == 1;
        if !killed {
            assert!(
                net.run_until(Duration::from_secs(60), |n| all_stored(n, &outbox)),
                "round {round}: stored before a clean stop"
            );
        }
        rejected += net.peers[0]
            .node
            .stats()
            .dropped(DropReason::EnvelopeRejected);
        restart_from_store(&mut net, seed, 0, &rooms, &outbox);
        if round % 10 == 9 {
            // The receivers restart too: they follow A's chain from the
            // store, without the distribution A hands out again.
            for i in [1, 2] {
                rejected += net.peers[i]
                    .node
                    .stats()
                    .dropped(DropReason::EnvelopeRejected);
                restart_from_store(&mut net, seed, i, &rooms, &outbox);
            }
        }
        // Most restarts send nothing (an idle device rebooted); some send a
        // few, some many.
        let count = match round % 4 {
            0 => 30,
            1 => 2,
            _ => 0,
        };
        send_both(
            &mut net,
            &mut outbox,
            0,
            1,
            room,
            count,
            &format!("round {round}"),
        );
        if killed {
            // Killed before anything else: the store's last commits and
            // every reliable state are lost.
            net.run_for(Duration::from_micros(500));
        } else {
            net.run_for(Duration::from_millis(50));
        }
    }
    send_both(&mut net, &mut outbox, 0, 1, room, 5, "after");
    send_both(&mut net, &mut outbox, 1, 0, room, 5, "reply");
    assert!(
        net.run_until(Duration::from_secs(300), |n| all_stored(n, &outbox)),
        "everything stored: {} of {}",
        outbox
            .iter()
            .filter(|m| m
                .to
                .iter()
                .all(|to| net.peers[*to].confirmed_at.contains_key(&m.id)))
            .count(),
        outbox.len()
    );
    for message in &outbox {
        for to in &message.to {
            let copies: Vec<&Stored> = net.peers[*to]
                .stored
                .iter()
                .filter(|s| s.id == message.id)
                .collect();
            assert_eq!(copies.len(), 1, "stored exactly once at {to}");
            assert_eq!(
                copies[0].body.as_deref(),
                Some(message.body.as_slice()),
                "readable at {to}"
            );
        }
    }
    for peer in &net.peers {
        rejected += peer.node.stats().dropped(DropReason::EnvelopeRejected);
    }
    assert_eq!(rejected, 0, "no genuine message rejected");
}
