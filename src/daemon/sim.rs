//! The daemon's core as a host of the simulated network
//! ([`crate::proto::sim`]): the real decisions (outbox, journal settling,
//! sync scheduling, contacts, history) over a real store in the test's own
//! temp dir, in virtual time, with every random choice seeded.
//!
//! A [`SimDaemon`] stands where the network loop's driver stands: it
//! feeds the core one input at a time with the time ([`Now`], the wall
//! clock derived from the virtual one), takes its datagrams, calls
//! [`DaemonCore::sent`] once they are taken, and collects events and
//! replies as [`SimEvent`]s. Hosts are addressed by an [`AddressTable`]
//! that gives each peer id a made-up socket address.
//!
//! Multicast: the daemon has one group for every room (members of other
//! rooms drop a frame at its first check), so a group transmit goes to
//! every host of the table, each over its own simulated link (loss,
//! partitions, hosts down or deaf to multicast), as on one LAN segment.
//!
//! Only built for tests and with the `sim` feature.

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::address_book::DiscoveryConfig;
use super::api::{Reply, ReplyTo, Request, RequestId};
use super::clock::Now;
use super::core::{DaemonCore, Output};
use super::{DaemonError, Event, PeerAddr};
use crate::account::Account;
use crate::net::Destination;
use crate::proto::crypto::{Identity, PublicIdentity};
use crate::proto::ids::{PeerId, RoomId};
use crate::proto::node::{Node, NodeConfig};
use crate::proto::reliable::{self, Via};
use crate::proto::sim::{Endpoint, Outgoing};
use crate::store::{KdfParams, Store};

/// The passphrase of every simulated daemon's store.
pub const PASSPHRASE: &str = "simulated daemon";

/// What a simulated daemon's group transmits are addressed to: the one
/// multicast group of the LAN, whatever the room (the core's transmit does
/// not say which room a group frame is of, and the wire must not either).
const LAN_GROUP: RoomId = RoomId([0; 32]);

/// Which made-up socket address each simulated host has.
#[derive(Debug, Default, Clone)]
pub struct AddressTable {
    by_peer: BTreeMap<PeerId, SocketAddr>,
    by_addr: BTreeMap<SocketAddr, PeerId>,
}

impl AddressTable {
    /// `10.x.y.z:47474` for the `i`-th of `peers`.
    pub fn new(peers: &[PeerId]) -> Self {
        let mut table = AddressTable::default();
        for (i, peer) in peers.iter().enumerate() {
            let [_, a, b, c] = u32::try_from(i + 1).unwrap_or(u32::MAX).to_be_bytes();
            let addr = SocketAddr::from((Ipv4Addr::new(10, a, b, c), 47474));
            table.by_peer.insert(*peer, addr);
            table.by_addr.insert(addr, *peer);
        }
        table
    }

    /// The address of `peer`.
    pub fn addr_of(&self, peer: &PeerId) -> Option<SocketAddr> {
        self.by_peer.get(peer).copied()
    }

    fn peer_at(&self, addr: &SocketAddr) -> Option<PeerId> {
        self.by_addr.get(addr).copied()
    }
}

/// What a simulated daemon reports, with the virtual time it happened.
#[derive(Debug)]
pub enum SimEvent {
    /// An event, as a subscriber gets it.
    Event(Instant, Event),
    /// The answer to [`SimDaemon::request`].
    Reply(Instant, RequestId, Result<Reply, DaemonError>),
}

/// How to build one simulated daemon.
#[derive(Clone)]
pub struct SimDaemonConfig {
    /// Seeds the identity (so the peer id is known before the host is).
    pub identity_seed: [u8; 32],
    /// Seeds the core's randomness (node, reconciler).
    pub seed: [u8; 32],
    pub node: NodeConfig,
    /// Contacts at start, with their (table) addresses.
    pub peers: Vec<PeerAddr>,
}

/// The identity a [`SimDaemonConfig::identity_seed`] gives.
pub fn sim_identity(identity_seed: [u8; 32]) -> Identity {
    Identity::from_secret_bytes(&identity_seed)
}

/// One daemon core on the simulated network.
pub struct SimDaemon {
    core: DaemonCore,
    table: Arc<AddressTable>,
    start: Instant,
    start_wall_ms: u64,
    /// The time of the last input.
    last: Instant,
    /// Datagrams were produced since the last [`DaemonCore::sent`].
    unsent: bool,
    events: VecDeque<SimEvent>,
    next_request: u64,
    /// Transmits to an address no simulated host has, never put on the
    /// wire.
    pub unroutable: u64,
}

impl SimDaemon {
    /// Opens (creating it the first time) the store in `dir` and starts a
    /// core on it at virtual time `now`; the wall clock reads
    /// `start_wall_ms` at `start`.
    pub fn open(
        dir: &Path,
        config: SimDaemonConfig,
        table: Arc<AddressTable>,
        start: Instant,
        start_wall_ms: u64,
        now: Instant,
    ) -> Result<Self, DaemonError> {
        if !Account::exists(dir) {
            let mut account =
                Account::create(dir, PASSPHRASE, KdfParams::insecure_fast_for_tests())?;
            let identity = sim_identity(config.identity_seed);
            account.store.set_identity(&identity.secret_bytes())?;
        }
        let account = Account::open(dir, PASSPHRASE)?;
        let clock = wall(start, start_wall_ms, now);
        let mut core = DaemonCore::new(
            account,
            config.node,
            &config.peers,
            DiscoveryConfig::default(),
            clock,
            config.seed,
        )?;
        core.set_listening(true);
        Ok(SimDaemon {
            core,
            table,
            start,
            start_wall_ms,
            last: now,
            unsent: true,
            events: VecDeque::new(),
            next_request: 0,
            unroutable: 0,
        })
    }

    /// A contact for another simulated host.
    pub fn peer_addr(table: &AddressTable, public: PublicIdentity) -> Option<PeerAddr> {
        let addr = table.addr_of(&public.peer_id())?;
        Some(PeerAddr { public, addr })
    }

    /// Asks `request` at `now`, as one command batch of the real loop
    /// (the batch ends at once); the answer comes as [`SimEvent::Reply`].
    /// Drain the host afterwards ([`crate::proto::sim::Network::drain`]).
    pub fn request(&mut self, now: Instant, request: Request) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        let now = self.input(now);
        self.core
            .handle_request(now, request, ReplyTo::Subscriber(0, id));
        self.core.end_burst(now);
        self.take_outputs();
        id
    }

    /// Asks `request` at `now` and returns its answer, as a blocking
    /// client does (nothing is logged): for reads, answered at once.
    /// Drain the host afterwards, as after [`SimDaemon::request`].
    pub fn query(&mut self, now: Instant, request: Request) -> Result<Reply, DaemonError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let now = self.input(now);
        self.core.handle_request(now, request, ReplyTo::Channel(tx));
        self.take_outputs();
        rx.try_recv().unwrap_or(Err(DaemonError::Stopped))
    }

    /// Says goodbye and checkpoints the store (a clean stop); drop the
    /// host instead for a crash.
    pub fn shutdown(mut self, now: Instant) -> Result<(), DaemonError> {
        let now = self.input(now);
        self.core.stopping(now);
        self.core.shutdown(now)
    }

    /// The node inside the core, read-only: for checks of what no client
    /// sees (sessions, group keys, named successors, chain origins).
    pub fn node(&self) -> &Node {
        self.core.node()
    }

    /// The store under the core, read-only (chain snapshots as a thief
    /// holding the store and its passphrase would read them). Its journal
    /// may hold messages not settled into the database yet.
    pub fn store(&self) -> &Store {
        self.core.store()
    }

    /// Fills the disk under the store (or frees it): journal
    /// appends and settlings fail, so nothing received is acknowledged
    /// and nothing sent goes out, until it is freed.
    pub fn set_full_disk(&mut self, full: bool) {
        self.core.store_mut().simulate_full_disk(full);
    }

    fn input(&mut self, now: Instant) -> Now {
        self.last = now;
        self.unsent = true;
        wall(self.start, self.start_wall_ms, now)
    }

    fn take_outputs(&mut self) {
        while let Some(output) = self.core.poll_output() {
            self.events.push_back(match output {
                // File work runs inline, at the same virtual moment, and
                // its result comes back as the driver's does (a command
                // batch of its own).
                Output::Job(job) => {
                    let done = job.run(&self.core.store().blob_worker(), &AtomicBool::new(false));
                    let now = wall(self.start, self.start_wall_ms, self.last);
                    self.core.handle_file_job_done(now, done);
                    self.core.end_burst(now);
                    continue;
                }
                Output::Event(event) => SimEvent::Event(self.last, event),
                Output::Reply(ReplyTo::Subscriber(_, id), result) => {
                    SimEvent::Reply(self.last, id, result)
                }
                Output::Reply(ReplyTo::Channel(tx), result) => {
                    let _ = tx.send(result);
                    continue;
                }
            });
        }
    }
}

/// The time of `now` on both clocks.
fn wall(start: Instant, start_wall_ms: u64, now: Instant) -> Now {
    let elapsed = now.saturating_duration_since(start);
    Now {
        mono: now,
        wall_ms: start_wall_ms + u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
    }
}

impl Endpoint for SimDaemon {
    type Event = SimEvent;

    fn handle_datagram(&mut self, now: Instant, from: PeerId, _via: Via, bytes: &[u8]) {
        let Some(addr) = self.table.addr_of(&from) else {
            return;
        };
        let now = self.input(now);
        self.core.handle_datagram(now, addr, bytes);
        self.take_outputs();
    }

    fn handle_timeout(&mut self, now: Instant) {
        let now = self.input(now);
        self.core.handle_timeout(now);
        self.take_outputs();
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Outgoing> {
        loop {
            match self.core.poll_transmit() {
                Some(transmit) => {
                    let destination = match transmit.to {
                        Destination::Addr(addr) => {
                            self.table.peer_at(&addr).map(reliable::Destination::Peer)
                        }
                        Destination::Group => Some(reliable::Destination::Group(LAN_GROUP)),
                    };
                    match destination {
                        Some(destination) => {
                            return Some(Outgoing {
                                destination,
                                kind: None,
                                bytes: transmit.bytes,
                            });
                        }
                        None => self.unroutable += 1,
                    }
                }
                // Every datagram of this moment is out: as the real loop
                // does, tell the core, and send what that produced.
                None if self.unsent => {
                    self.unsent = false;
                    let now = wall(self.start, self.start_wall_ms, now.max(self.last));
                    self.core.sent(now);
                    self.take_outputs();
                }
                None => return None,
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    fn poll_event(&mut self) -> Option<SimEvent> {
        self.events.pop_front()
    }

    /// Every host of the table listens to the one group (the network
    /// leaves out the sender and hosts deaf to multicast).
    fn group_members(&self, _room: &RoomId) -> Vec<PeerId> {
        self.table.by_peer.keys().copied().collect()
    }

    fn end_burst(&mut self, now: Instant) {
        let now = self.input(now);
        self.core.end_burst(now);
        self.take_outputs();
    }
}

/// How long the core waits before a sent message enters the stored outbox
/// (for tests that step around it).
pub const OUTBOX_AFTER: Duration = super::core::OUTBOX_AFTER;
/// How long received messages wait in the journal before they settle.
pub const SETTLE_AFTER: Duration = super::core::SETTLE_AFTER;
