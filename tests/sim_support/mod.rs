//! The harness of the simulated-daemon tests: N real daemon cores
//! ([`SimDaemon`]) over real stores in temp dirs, on the one simulated
//! network ([`Network`]), in virtual time, asked as a client asks them
//! ([`Request`]) and checked by what they report ([`SimEvent`]).

#![allow(dead_code)] // Each test binary uses a different subset.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kith::daemon::sim::{AddressTable, SimDaemon, SimDaemonConfig, SimEvent, sim_identity};
use kith::daemon::{
    Delivery, Event, HistoryPage, Reply, Request, RequestId, RoomSummary, Status, Target,
};
use kith::proto::ids::{MessageId, PeerId, RoomId};
use kith::proto::node::{NodeConfig, direct_room};
use kith::proto::reliable::Via;
use kith::proto::sim::{Endpoint, LinkConfig, Network};

use crate::common::TempDir;

/// The wall clock at the start of every run (any fixed date works).
pub const START_WALL_MS: u64 = 1_780_000_000_000;

/// Group messages sent: author and id, in send order.
pub type RoomSent = Vec<(usize, MessageId)>;

/// N simulated daemons (by default all contacts of each other).
pub struct Cluster {
    pub net: Network<SimDaemon>,
    pub hosts: Vec<SimDaemon>,
    pub configs: Vec<SimDaemonConfig>,
    pub table: Arc<AddressTable>,
    start: Instant,
    dirs: Vec<TempDir>,
}

/// How to build a [`Cluster`] beyond its size and links.
pub struct ClusterConfig {
    /// Every daemon's node configuration.
    pub node: NodeConfig,
    /// Whether host `i` starts with host `j` as a contact.
    pub contact: fn(usize, usize) -> bool,
}

impl Default for ClusterConfig {
    /// Everyone a contact of everyone.
    fn default() -> Self {
        ClusterConfig {
            node: NodeConfig::default(),
            contact: |_, _| true,
        }
    }
}

impl Cluster {
    pub fn new(seed: u64, n: usize, link: LinkConfig) -> Self {
        Self::with(seed, n, link, ClusterConfig::default())
    }

    /// `n` daemons with `config`.
    pub fn with(seed: u64, n: usize, link: LinkConfig, config: ClusterConfig) -> Self {
        let start = Instant::now();
        let identity_seeds: Vec<[u8; 32]> = (0..n).map(|i| seed_bytes(seed, i, 1)).collect();
        let publics: Vec<_> = identity_seeds
            .iter()
            .map(|s| sim_identity(*s).public())
            .collect();
        let ids: Vec<PeerId> = publics.iter().map(|p| p.peer_id()).collect();
        let table = Arc::new(AddressTable::new(&ids));
        let configs: Vec<SimDaemonConfig> = (0..n)
            .map(|i| SimDaemonConfig {
                identity_seed: identity_seeds[i],
                seed: seed_bytes(seed, i, 2),
                node: config.node.clone(),
                peers: publics
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i && (config.contact)(i, *j))
                    .filter_map(|(_, p)| SimDaemon::peer_addr(&table, p.clone()))
                    .collect(),
            })
            .collect();
        let dirs: Vec<TempDir> = (0..n).map(|i| TempDir::new(&format!("sim-{i}"))).collect();
        let hosts = (0..n)
            .map(|i| {
                SimDaemon::open(
                    dirs[i].path(),
                    configs[i].clone(),
                    table.clone(),
                    start,
                    START_WALL_MS,
                    start,
                )
                .expect("a simulated daemon starts")
            })
            .collect();
        let mut cluster = Cluster {
            net: Network::new(seed, link, start, ids),
            hosts,
            configs,
            table,
            start,
            dirs,
        };
        for i in 0..n {
            cluster.net.drain(&mut cluster.hosts, i);
        }
        cluster
    }

    pub fn id(&self, i: usize) -> PeerId {
        self.net.id(i)
    }

    pub fn now(&self) -> Instant {
        self.net.now()
    }

    pub fn ask(&mut self, i: usize, request: Request) -> RequestId {
        let now = self.now();
        let id = self.hosts[i].request(now, request);
        self.net.drain(&mut self.hosts, i);
        id
    }

    /// The answer to request `id` of host `i` (it is answered within the
    /// call for everything but a send, answered once stored).
    pub fn reply(&self, i: usize, id: RequestId) -> Option<&Reply> {
        // The newest: request ids start again after a restart.
        self.net.events(i).iter().rev().find_map(|e| match e {
            SimEvent::Reply(_, rid, Ok(reply)) if *rid == id => Some(reply),
            SimEvent::Reply(_, rid, Err(error)) if *rid == id => panic!("request failed: {error}"),
            _ => None,
        })
    }

    /// Asks host `i` and returns the answer if it came at once (request
    /// ids start again after a restart: only this one's answer counts).
    pub fn ask_now(&mut self, i: usize, request: Request) -> Option<Result<Reply, String>> {
        let before = self.net.events(i).len();
        let id = self.ask(i, request);
        self.net.events(i)[before..].iter().find_map(|e| match e {
            SimEvent::Reply(_, rid, result) if *rid == id => {
                Some(result.as_ref().cloned().map_err(|e| e.to_string()))
            }
            _ => None,
        })
    }

    pub fn send(&mut self, from: usize, to: usize, text: &str) -> MessageId {
        let to = Target::Peer(self.id(to));
        let rid = self.ask(
            from,
            Request::Send {
                to,
                text: text.to_owned(),
            },
        );
        match self.reply(from, rid) {
            Some(Reply::Sent(id)) => *id,
            other => panic!("no send reply: {other:?}"),
        }
    }

    /// Host `i`'s page of its chat with host `with`.
    pub fn history(&mut self, i: usize, with: usize) -> HistoryPage {
        let room = direct_room(self.id(i), self.id(with));
        let rid = self.ask(
            i,
            Request::History {
                room,
                before: None,
                limit: 100,
            },
        );
        match self.reply(i, rid) {
            Some(Reply::History(page)) => page.clone(),
            other => panic!("no history: {other:?}"),
        }
    }

    /// How host `i`'s own message `id` stands with its recipient.
    pub fn delivery(&mut self, i: usize, with: usize, id: MessageId) -> Option<Delivery> {
        let page = self.history(i, with);
        let row = page.rows.into_iter().find(|r| r.id == id)?;
        row.deliveries.first().map(|(_, d)| *d)
    }

    /// Texts host `i` was told it received, in order, with when.
    pub fn received(&self, i: usize) -> Vec<(Instant, String)> {
        self.net
            .events(i)
            .iter()
            .filter_map(|e| match e {
                SimEvent::Event(at, Event::MessageReceived { text, .. }) => {
                    Some((*at, text.clone()))
                }
                _ => None,
            })
            .collect()
    }

    pub fn delivered(&self, i: usize) -> Vec<MessageId> {
        self.net
            .events(i)
            .iter()
            .filter_map(|e| match e {
                SimEvent::Event(_, Event::Delivered { id, .. }) => Some(*id),
                _ => None,
            })
            .collect()
    }

    pub fn run_for(&mut self, duration: Duration) {
        self.net.run_for(&mut self.hosts, duration);
    }

    /// Runs until `done` or `limit` of virtual time; whether `done`.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Cluster) -> bool,
    ) -> bool {
        let until = self.now() + limit;
        while !done(self) {
            if !self.net.step(&mut self.hosts, until) {
                return done(self);
            }
        }
        true
    }

    /// Host `i` crashes (its state is dropped, its store kept) and starts
    /// again from its store.
    pub fn crash_and_restart(&mut self, i: usize) {
        self.crash(i);
        self.start_again(i);
    }

    /// Host `i` stops cleanly (as on SIGTERM: what is unacknowledged goes
    /// into the stored outbox, the store is checkpointed; its goodbyes
    /// are not sent) and starts again from its store.
    pub fn stop_and_restart(&mut self, i: usize) {
        let now = self.now();
        self.hosts
            .remove(i)
            .shutdown(now)
            .expect("a simulated daemon stops cleanly");
        self.start_again(i);
    }

    /// Host `i` crashes and starts again from `snapshot` of its store
    /// ([`Cluster::snapshot`]): what it wrote since is lost, as when a
    /// stale backup is restored or a disk loses its last writes.
    pub fn restore(&mut self, i: usize, snapshot: &StoreSnapshot) {
        self.crash(i);
        let dir = self.dirs[i].path();
        std::fs::remove_dir_all(dir).expect("the old store is removed");
        copy_dir(snapshot.0.path(), dir);
        self.start_again(i);
    }

    /// A copy of host `i`'s store as it is now on disk (its journal
    /// included), as a crash at this moment would leave it, or a thief
    /// copying the files.
    pub fn snapshot(&self, i: usize) -> StoreSnapshot {
        let copy = TempDir::new(&format!("sim-{i}-snapshot"));
        std::fs::remove_dir_all(copy.path()).expect("the copy's dir is fresh");
        copy_dir(self.dirs[i].path(), copy.path());
        StoreSnapshot(copy)
    }

    /// The disk under host `i`'s store fills up (or is freed): journal
    /// appends and settlings fail until it is freed.
    pub fn set_full_disk(&mut self, i: usize, full: bool) {
        self.hosts[i].set_full_disk(full);
    }

    /// Host `i`'s state is dropped, as a killed process's: its store keeps
    /// what was journaled or settled. Start it at once with
    /// [`Cluster::start_again`] (until then the indices are off by one).
    fn crash(&mut self, i: usize) {
        // The store is locked while the old host holds it: the old one
        // goes first, as a killed process does.
        drop(self.hosts.remove(i));
    }

    fn start_again(&mut self, i: usize) {
        let now = self.now();
        // A restarted process draws fresh randomness: with the same seed its
        // handshake would repeat the first one and be refused as a replay.
        // Derived from the old seed, so one seed still gives one run.
        let seed = &mut self.configs[i].seed;
        *seed = *blake3::hash(seed).as_bytes();
        let host = SimDaemon::open(
            self.dirs[i].path(),
            self.configs[i].clone(),
            self.table.clone(),
            self.start,
            START_WALL_MS,
            now,
        )
        .expect("a simulated daemon restarts from its store");
        self.hosts.insert(i, host);
        self.net.drain(&mut self.hosts, i);
    }
}

/// A copy of a simulated daemon's store dir ([`Cluster::snapshot`]).
pub struct StoreSnapshot(TempDir);

impl StoreSnapshot {
    /// Where the copy is (a store that opens with
    /// [`kith::daemon::sim::PASSPHRASE`]).
    pub fn path(&self) -> &std::path::Path {
        self.0.path()
    }
}

/// Copies the files of `from` (recursively) into a new dir `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("the copy's dir is created");
    for entry in std::fs::read_dir(from).expect("the store dir is readable") {
        let entry = entry.expect("a dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("a store file is copied");
        }
    }
}

/// A LAN link with `loss`, 5 % duplicated, 10 % reordered by up to 8 ms,
/// a fixed 1 ms delay and no bandwidth limit.
pub fn lan_link(loss: f64) -> kith::proto::sim::LinkConfig {
    kith::proto::sim::LinkConfig {
        loss,
        duplicate: 0.05,
        reorder: 0.1,
        reorder_delay: Duration::from_millis(8),
        delay: Duration::from_millis(1),
        jitter: Duration::ZERO,
        bandwidth: None,
    }
}

/// Every daemon sends room messages by multicast.
pub fn multicast() -> ClusterConfig {
    ClusterConfig {
        node: NodeConfig {
            group_multicast: true,
            ..NodeConfig::default()
        },
        ..ClusterConfig::default()
    }
}

pub fn seed_bytes(seed: u64, i: usize, purpose: u8) -> [u8; 32] {
    let mut bytes = [purpose; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&(i as u64).to_le_bytes());
    bytes
}

/// Rooms, history and counters, as a client reads them.
impl Cluster {
    /// Host `i` creates a group room `name` with `members`; every
    /// invitation is accepted as it arrives. The room's id.
    pub fn create_room(&mut self, i: usize, name: &str, members: &[usize]) -> RoomId {
        let room = self.create_room_unanswered(i, name, members);
        for &m in members {
            let invited = |c: &mut Cluster| c.room(m, &room).is_some_and(|r| r.invited);
            assert!(
                self.run_until(Duration::from_secs(30), invited),
                "host {m} is invited"
            );
            self.ask(m, Request::AnswerInvite { room, accept: true });
        }
        room
    }

    /// Host `i` creates a group room and invites `members`, who do not
    /// answer yet.
    pub fn create_room_unanswered(&mut self, i: usize, name: &str, members: &[usize]) -> RoomId {
        let members = members.iter().map(|m| self.id(*m)).collect();
        let rid = self.ask(
            i,
            Request::CreateRoom {
                name: name.to_owned(),
                members,
            },
        );
        match self.reply(i, rid) {
            Some(Reply::Room(room)) => *room,
            other => panic!("no room: {other:?}"),
        }
    }

    /// Host `i`'s rooms as it lists them, invitations included.
    pub fn rooms(&mut self, i: usize) -> Vec<RoomSummary> {
        match self.query(i, Request::Rooms) {
            Ok(Reply::Rooms(rooms)) => rooms,
            other => panic!("no rooms: {other:?}"),
        }
    }

    /// Host `i`'s view of `room` (`None`: not a member nor invited).
    pub fn room(&mut self, i: usize, room: &RoomId) -> Option<RoomSummary> {
        self.rooms(i).into_iter().find(|r| r.id == *room)
    }

    /// Whether every host of `hosts` is in `room` with `members` members.
    pub fn all_in(&mut self, hosts: &[usize], room: &RoomId, members: usize) -> bool {
        hosts.iter().all(|i| {
            self.room(*i, room)
                .is_some_and(|r| !r.invited && r.members.len() == members)
        })
    }

    /// Host `i`'s counters.
    pub fn status(&mut self, i: usize) -> Status {
        match self.query(i, Request::Status) {
            Ok(Reply::Status(status)) => *status,
            other => panic!("no status: {other:?}"),
        }
    }

    /// Every message of `room` host `i` holds, oldest first (page after
    /// page: the daemon answers at most `MAX_PAGE` rows at a time).
    pub fn room_history(&mut self, i: usize, room: RoomId) -> HistoryPage {
        let mut rows = Vec::new();
        let mut before = None;
        loop {
            let request = Request::History {
                room,
                before,
                limit: kith::daemon::api::MAX_PAGE,
            };
            match self.query(i, request) {
                Ok(Reply::History(page)) => {
                    rows.extend(page.rows);
                    before = page.next;
                }
                other => panic!("no history: {other:?}"),
            }
            if before.is_none() {
                break;
            }
        }
        rows.reverse();
        HistoryPage {
            room,
            rows,
            next: None,
        }
    }

    /// Host `i`'s message to `room`; the id it got.
    pub fn send_room(&mut self, i: usize, room: RoomId, text: &str) -> MessageId {
        let rid = self.ask(
            i,
            Request::Send {
                to: Target::Room(room),
                text: text.to_owned(),
            },
        );
        match self.reply(i, rid) {
            Some(Reply::Sent(id)) => *id,
            other => panic!("no send reply: {other:?}"),
        }
    }

    /// Ids of the messages host `i` holds in `room`, oldest first.
    pub fn held(&mut self, i: usize, room: RoomId) -> Vec<MessageId> {
        self.room_history(i, room)
            .rows
            .iter()
            .map(|r| r.id)
            .collect()
    }

    /// Ids of the messages host `i` holds from `from` in `room`, oldest
    /// first.
    pub fn held_from(&mut self, i: usize, room: RoomId, from: usize) -> Vec<MessageId> {
        let from = self.id(from);
        self.room_history(i, room)
            .rows
            .iter()
            .filter(|r| r.author == from)
            .map(|r| r.id)
            .collect()
    }

    /// Whether every one of `members` holds every one of `sent`.
    pub fn room_converged(&mut self, room: RoomId, members: &[usize], sent: &RoomSent) -> bool {
        let want: BTreeSet<MessageId> = sent.iter().map(|(_, id)| *id).collect();
        members.iter().all(|i| {
            let got: BTreeSet<MessageId> = self.held(*i, room).into_iter().collect();
            want.is_subset(&got)
        })
    }

    /// Each of `members` holds exactly the messages of `sent` in `room`,
    /// readable, once each, in each author's order.
    pub fn check_room(&mut self, room: RoomId, members: &[usize], sent: &RoomSent) {
        for &i in members {
            let page = self.room_history(i, room);
            let ids: Vec<MessageId> = page.rows.iter().map(|r| r.id).collect();
            let unique: BTreeSet<&MessageId> = ids.iter().collect();
            assert_eq!(unique.len(), ids.len(), "host {i}: nothing twice");
            for author in 0..self.hosts.len() {
                let got: Vec<MessageId> = page
                    .rows
                    .iter()
                    .filter(|r| r.author == self.id(author))
                    .map(|r| r.id)
                    .collect();
                let want: Vec<MessageId> = sent
                    .iter()
                    .filter(|(a, _)| *a == author)
                    .map(|(_, id)| *id)
                    .collect();
                assert_eq!(got, want, "host {i}: {author}'s messages once, in order");
            }
            assert!(
                page.rows.iter().all(|r| r.text.is_some()),
                "readable at {i}"
            );
        }
    }

    /// Events host `i` reported so far, without their time.
    pub fn events(&self, i: usize) -> impl Iterator<Item = &Event> {
        self.net.events(i).iter().filter_map(|e| match e {
            SimEvent::Event(_, event) => Some(event),
            SimEvent::Reply(..) => None,
        })
    }

    /// Bytes arriving at host `i` as if from host `from`'s address, by
    /// unicast (an attacker on the LAN can send anything from anywhere).
    pub fn inject(&mut self, i: usize, from: usize, bytes: &[u8]) {
        let (now, from) = (self.now(), self.id(from));
        self.hosts[i].handle_datagram(now, from, Via::Unicast, bytes);
        // A burst of one datagram: it ends, as in the real loop.
        self.hosts[i].end_burst(now);
        self.net.drain(&mut self.hosts, i);
    }

    /// Host `i` blocks (or unblocks) host `peer`.
    pub fn block(&mut self, i: usize, peer: usize, blocked: bool) {
        let peer = self.id(peer);
        self.ask(i, Request::Block { peer, blocked });
    }

    /// Asks host `i` something answered at once (the answer is not
    /// logged, so predicates of `run_until` can ask).
    pub fn query(
        &mut self,
        i: usize,
        request: Request,
    ) -> Result<Reply, kith::daemon::DaemonError> {
        let now = self.now();
        let reply = self.hosts[i].query(now, request);
        self.net.drain(&mut self.hosts, i);
        reply
    }
}
