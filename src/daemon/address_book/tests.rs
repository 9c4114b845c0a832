//! The address book, presence and a node together in virtual time:
//! what a node sends because of what it was told by mDNS.

use std::sync::mpsc;
use std::time::Duration;

use super::*;
use crate::discovery::mdns::{MdnsConfig, MdnsDiscovery};
use crate::proto::node::{Heard, Node, NodeConfig};
use crate::proto::reliable::Destination;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn identity(seed: u64) -> Identity {
    Identity::generate(&mut StdRng::seed_from_u64(seed))
}

/// Drives the address book and applies what it asks of the node, as
/// the driver does.
fn drive(discovery: &mut AddressBook, node: &mut Node, now: Instant) -> Vec<Event> {
    let events = discovery.drive(now);
    while let Some(action) = discovery.poll_action() {
        match action {
            BookAction::Contact(public) => node.add_contact(now, public),
            BookAction::Probe(peer) => node.keepalive(now, peer),
            BookAction::Reachable(peer, reachable) => node.set_reachable(now, peer, reachable),
            BookAction::Block(peer) => node.block(peer),
            BookAction::Unblock(peer) => node.unblock(now, peer),
        }
    }
    events
}

/// One node with its discovery, fed mDNS events through the real
/// channel (an mDNS bridge with no interface starts no daemon).
struct Host {
    node: Node,
    discovery: AddressBook,
    mdns_tx: mpsc::Sender<DiscoveryEvent>,
    now: Instant,
    /// Every datagram the node sent: when, and where to.
    sent: Vec<(Instant, SocketAddr)>,
}

impl Host {
    fn new(seed: u64, start: Instant) -> Self {
        Self::at(seed, start, "10.77.0.1:7000".parse().expect("literal"))
    }

    /// A host whose socket is bound at `local_addr`.
    fn at(seed: u64, start: Instant, local_addr: SocketAddr) -> Self {
        let me = identity(seed);
        let node = Node::new(
            identity(seed),
            NodeConfig::default(),
            StdRng::seed_from_u64(seed),
            start,
        );
        let mut discovery =
            AddressBook::new(DiscoveryConfig::default(), me).expect("no registry to fail");
        let (tx, rx) = mpsc::channel();
        let config = MdnsConfig::new(node.peer_id(), "test", 7000, Vec::new());
        let mdns = MdnsDiscovery::start(config, tx.clone(), Box::new(|| {}))
            .expect("without interfaces nothing is started");
        discovery.attach(
            start,
            0,
            Attach {
                local_addr,
                mdns: Some((mdns, rx)),
            },
        );
        Self {
            node,
            discovery,
            mdns_tx: tx,
            now: start,
            sent: Vec::new(),
        }
    }

    fn announce(&mut self, public: &PublicIdentity, addr: SocketAddr) {
        self.tell_mdns(public, addr);
        self.pump();
    }

    /// Queues an mDNS sighting of `public` at `addr`, for the next drive.
    fn tell_mdns(&mut self, public: &PublicIdentity, addr: SocketAddr) {
        self.mdns_tx
            .send(DiscoveryEvent::PeerFound {
                peer_id: public.peer_id(),
                public_key: Some(public.to_bytes()),
                addresses: vec![addr.ip()],
                scope_ids: Vec::new(),
                port: addr.port(),
                display_name: String::new(),
            })
            .expect("the receiver is held by discovery");
    }

    fn pump(&mut self) {
        drive(&mut self.discovery, &mut self.node, self.now);
        while let Some(transmit) = self.node.poll_transmit() {
            if let Destination::Peer(peer) = transmit.to
                && let Some(addr) = self.discovery.addr_of(&peer)
            {
                self.sent.push((self.now, addr));
            }
        }
    }

    /// Runs every timer up to `end`; nobody answers.
    fn run_until(&mut self, end: Instant) {
        loop {
            let next = [self.node.poll_timeout(), self.discovery.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(at) if at <= end => {
                    self.now = self.now.max(at);
                    self.node.handle_timeout(self.now);
                    self.discovery.handle_timeout(self.now, 0);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = end;
    }
}

/// Most datagrams to `to` in any one-second window, and how many in all.
fn peak_and_total(sent: &[(Instant, SocketAddr)], to: SocketAddr) -> (usize, usize) {
    let times: Vec<Instant> = sent
        .iter()
        .filter(|(_, addr)| *addr == to)
        .map(|(at, _)| *at)
        .collect();
    let mut peak = 0;
    let mut first = 0;
    for (last, at) in times.iter().enumerate() {
        while *at >= times[first] + Duration::from_secs(1) {
            first += 1;
        }
        peak = peak.max(last + 1 - first);
    }
    (peak, times.len())
}

/// Drains the book's queued actions without applying them.
fn actions(book: &mut AddressBook) -> Vec<BookAction> {
    std::iter::from_fn(|| book.poll_action()).collect()
}

/// The book asks the node for what it needs and never calls it: a
/// sighting makes a node contact, only a watched contact is probed, a
/// blocked peer's sightings ask nothing.
#[test]
fn sightings_and_blocks_become_actions_for_the_node() {
    let start = Instant::now();
    let mut host = Host::new(1, start);
    let stranger = identity(2).public();
    let contact = identity(3).public();
    host.discovery
        .want(start, contact.peer_id(), Some(contact.clone()), None);
    host.tell_mdns(&stranger, "10.77.0.2:7000".parse().expect("literal"));
    host.tell_mdns(&contact, "10.77.0.3:7000".parse().expect("literal"));
    host.discovery.drive(start);
    let first = actions(&mut host.discovery);
    assert_eq!(
        first[..2],
        [
            BookAction::Contact(stranger.clone()),
            BookAction::Contact(contact.clone())
        ]
    );
    // Within a minute the contact is probed; the stranger never is.
    let mut later = first[2..].to_vec();
    let mut now = start;
    while now < start + Duration::from_secs(60) {
        now += Duration::from_millis(100);
        host.discovery.handle_timeout(now, 0);
        host.discovery.drive(now);
        later.extend(actions(&mut host.discovery));
    }
    assert!(later.contains(&BookAction::Probe(contact.peer_id())));
    assert!(
        later
            .iter()
            .all(|a| *a == BookAction::Probe(contact.peer_id())),
        "{later:?}"
    );

    host.discovery.set_blocked(now, stranger.peer_id(), true);
    assert_eq!(
        actions(&mut host.discovery),
        [BookAction::Block(stranger.peer_id())]
    );
    host.tell_mdns(&stranger, "10.77.0.2:7000".parse().expect("literal"));
    host.discovery.drive(now);
    assert!(
        actions(&mut host.discovery)
            .iter()
            .all(|a| *a == BookAction::Probe(contact.peer_id())),
        "a blocked peer's sighting asks nothing of the node"
    );
    host.discovery.set_blocked(now, stranger.peer_id(), false);
    assert_eq!(
        actions(&mut host.discovery),
        [BookAction::Unblock(stranger.peer_id())]
    );
}

/// mDNS reports a peer lost when its goodbye arrives, or when its
/// records ran out unanswered (it vanished: at most the record TTL,
/// see `RecordTtl`). A stranger then leaves the nearby list at once; a
/// contact stays in the book, kept probed where it was last seen.
#[test]
fn a_lost_stranger_leaves_nearby_and_a_lost_contact_stays() {
    let start = Instant::now();
    let mut host = Host::new(1, start);
    let stranger = identity(2).public();
    let contact = identity(3).public();
    let stranger_addr: SocketAddr = "10.77.0.2:7000".parse().expect("literal");
    let contact_addr: SocketAddr = "10.77.0.3:7000".parse().expect("literal");
    host.discovery
        .want(start, contact.peer_id(), Some(contact.clone()), None);
    host.announce(&stranger, stranger_addr);
    host.announce(&contact, contact_addr);
    let nearby =
        |host: &Host| -> Vec<PeerId> { host.discovery.nearby().map(|(id, _, _)| id).collect() };
    assert_eq!(nearby(&host), [stranger.peer_id()]);
    assert!(host.discovery.report(host.now).peers.len() == 2);

    for peer in [stranger.peer_id(), contact.peer_id()] {
        host.mdns_tx
            .send(DiscoveryEvent::PeerLost { peer_id: peer })
            .expect("the receiver is held by discovery");
    }
    host.pump();
    assert!(nearby(&host).is_empty(), "a lost stranger is not nearby");
    let peers = host.discovery.report(host.now).peers;
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0].peer, contact.peer_id());
    assert_eq!(
        host.discovery.addr_of(&contact.peer_id()),
        Some(contact_addr)
    );
    // It comes back: nearby again.
    host.announce(&stranger, stranger_addr);
    assert_eq!(nearby(&host), [stranger.peer_id()]);
}

#[test]
fn fake_announcements_at_one_victim_stay_within_the_probe_cap() {
    let start = Instant::now();
    let mut host = Host::new(1, start);
    let victim: SocketAddr = "10.77.0.99:7000".parse().expect("literal");
    // 500 announcements with valid keys of strangers, all naming the
    // victim: nearby peers are never probed, so nothing goes there.
    for n in 0..500 {
        let fake = identity(1000 + n).public();
        host.announce(&fake, victim);
    }
    host.run_until(start + Duration::from_secs(3600));
    assert_eq!(peak_and_total(&host.sent, victim), (0, 0));

    // 500 announcements of our contacts' ids (whose keys are public),
    // all naming the victim: those are probed, within the cap.
    let mut host = Host::new(1, start);
    for n in 0..500 {
        let fake = identity(1000 + n).public();
        host.discovery
            .want(start, fake.peer_id(), Some(fake.clone()), None);
        host.node.add_contact(start, fake.clone());
        host.announce(&fake, victim);
    }
    let minute = Duration::from_secs(60);
    host.run_until(start + minute);
    let (peak, first_minute) = peak_and_total(&host.sent, victim);
    host.run_until(start + 20 * minute);
    let after_twenty = host.sent.len();
    host.run_until(start + 30 * minute);
    let (peak_all, _) = peak_and_total(&host.sent, victim);
    let later = host.sent.len() - after_twenty;
    println!(
        "probe figure: 500 contacts announced at one victim: peak {peak}/s in the first minute \
         ({first_minute} datagrams), peak {peak_all}/s over 30 min, \
         {later} datagrams in minutes 20-30"
    );
    // The default cap of PresenceConfig::max_probes_per_sec.
    let cap = 20;
    assert!(peak_all <= cap, "peak {peak_all}/s over the cap {cap}/s");
    // Backed off: by then each fake gets one probe per
    // max_probe_interval (5 min): 500 × 2 in 10 minutes, not 500 × 120.
    assert!(later <= 1200, "{later} in minutes 20-30");
}

/// How long a datagram takes from one host to another.
const LATENCY: Duration = Duration::from_millis(1);

/// Hosts on one LAN in virtual time: every datagram one node sends to
/// another's address is delivered there [`LATENCY`] later. Counts every
/// kith datagram each host sends.
struct Lan {
    hosts: Vec<Host>,
    publics: Vec<PublicIdentity>,
    now: Instant,
    /// Datagrams on their way: when they arrive, to which host, from
    /// which address, in sending order.
    in_flight: VecDeque<(Instant, usize, SocketAddr, Vec<u8>)>,
    /// Datagrams sent by each host.
    sent: Vec<u64>,
    /// Datagrams received by each host.
    received: Vec<u64>,
    /// Which host is bound where.
    at: HashMap<SocketAddr, usize>,
    /// Each host's next timer, as of its last step.
    timers: Vec<Option<Instant>>,
}

impl Lan {
    /// `n` hosts that all see each other's mDNS announcements; host `i`
    /// has the hosts `contacts(i)` as its contacts (stored contacts, as
    /// the driver makes them with `learn_contact`).
    fn new(n: usize, start: Instant, contacts: impl Fn(usize) -> Vec<usize>) -> Self {
        let addr = |i: usize| -> SocketAddr {
            format!("10.77.0.{}:7000", i + 1).parse().expect("literal")
        };
        let mut hosts: Vec<Host> = (0..n)
            .map(|i| Host::at(5000 + i as u64, start, addr(i)))
            .collect();
        let publics: Vec<PublicIdentity> =
            (0..n).map(|i| identity(5000 + i as u64).public()).collect();
        for (i, host) in hosts.iter_mut().enumerate() {
            for j in contacts(i) {
                let public = publics[j].clone();
                host.discovery
                    .want(start, public.peer_id(), Some(public.clone()), None);
                host.node.add_contact(start, public);
            }
        }
        let mut lan = Lan {
            hosts,
            publics,
            now: start,
            in_flight: VecDeque::new(),
            sent: vec![0; n],
            received: vec![0; n],
            at: (0..n).map(|i| (addr(i), i)).collect(),
            timers: vec![None; n],
        };
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    let public = lan.publics[j].clone();
                    lan.hosts[i].tell_mdns(&public, addr(j));
                }
            }
            lan.route(i);
        }
        lan
    }

    /// Takes what host `i` sent onto the wire.
    fn route(&mut self, i: usize) {
        let from = self.hosts[i]
            .discovery
            .local_addr
            .expect("attached at creation");
        let host = &mut self.hosts[i];
        drive(&mut host.discovery, &mut host.node, self.now);
        while let Some(transmit) = host.node.poll_transmit() {
            self.sent[i] += 1;
            let Destination::Peer(peer) = transmit.to else {
                continue;
            };
            let to = host.discovery.addr_of(&peer).and_then(|a| self.at.get(&a));
            if let Some(&to) = to {
                self.in_flight
                    .push_back((self.now + LATENCY, to, from, transmit.bytes));
            }
        }
        self.timers[i] = [host.node.poll_timeout(), host.discovery.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
    }

    /// Runs every timer and delivers every datagram up to `end`.
    fn run_until(&mut self, end: Instant) {
        loop {
            let arrival = self.in_flight.front().map(|(at, ..)| *at);
            let timer = self.timers.iter().flatten().min().copied();
            // Arrivals first at a tie: what is heard at an instant
            // counts before the timers due then.
            let next = match (arrival, timer) {
                (Some(a), Some(t)) => a.min(t),
                (a, t) => match a.or(t) {
                    Some(at) => at,
                    None => break,
                },
            };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            if arrival.is_some_and(|a| a <= self.now) {
                let (_, to, from, bytes) = self.in_flight.pop_front().expect("peeked just above");
                self.received[to] += 1;
                let host = &mut self.hosts[to];
                host.now = self.now;
                if let Ok(Heard::Proven(peer)) = host.node.handle_datagram(self.now, &bytes) {
                    host.discovery.heard(self.now, peer, from);
                }
                self.route(to);
                continue;
            }
            for i in 0..self.hosts.len() {
                if self.timers[i].is_some_and(|at| at <= self.now) {
                    let host = &mut self.hosts[i];
                    host.now = self.now;
                    host.node.handle_timeout(self.now);
                    host.discovery.handle_timeout(self.now, 0);
                    self.route(i);
                }
            }
        }
        self.now = self.now.max(end);
    }
}

/// Today's idle keep-alive traffic on a LAN of `hosts` kith hosts: each
/// sends 12 keep-alives a minute to each other host, each answered.
fn before_per_minute(hosts: u64) -> u64 {
    24 * hosts * (hosts - 1)
}

/// Idle datagrams per minute at 24 hosts where each host has `k`
/// contacts (a `k`-regular graph): (host 0 sent, host 0 received, LAN
/// total sent), measured over minutes 5-10, after the ramp-up.
fn idle_per_minute(k: usize) -> (u64, u64, u64) {
    const N: usize = 24;
    // k = 0, 3 or N - 1: nobody, ring neighbours and the one opposite,
    // everybody.
    let contacts = move |i: usize| -> Vec<usize> {
        match k {
            0 => Vec::new(),
            3 => vec![(i + 1) % N, (i + N - 1) % N, (i + N / 2) % N],
            _ => (0..N).filter(|j| *j != i).collect(),
        }
    };
    let start = Instant::now();
    let mut lan = Lan::new(N, start, contacts);
    let minute = Duration::from_secs(60);
    lan.run_until(start + 5 * minute);
    let (sent, received) = (lan.sent.clone(), lan.received.clone());
    let total: u64 = sent.iter().sum();
    lan.run_until(start + 10 * minute);
    let total_after: u64 = lan.sent.iter().sum();
    (
        (lan.sent[0] - sent[0]) / 5,
        (lan.received[0] - received[0]) / 5,
        (total_after - total) / 5,
    )
}

#[test]
fn idle_keepalives_grow_with_contacts_not_with_hosts_on_the_lan() {
    let before = before_per_minute(24);
    let goal = before / 10;
    let mut per_node = Vec::new();
    for k in [0, 3, 23] {
        let (sent, received, total) = idle_per_minute(k);
        let at_100 = sent * 100;
        println!(
            "keep-alive figure: 24 hosts, {k} contacts each: host 0 sends {sent}/min, \
             receives {received}/min; LAN total {total}/min (before {before}/min, goal \
             <= {goal}); at 100 hosts with {k} contacts each ~{at_100}/min (before {}/min)",
            before_per_minute(100)
        );
        per_node.push((k, sent, total));
    }
    for (k, sent, total) in per_node {
        assert!(
            total <= goal,
            "{k} contacts each: {total}/min on the LAN, goal <= {goal}/min"
        );
        // Nearby strangers cost nothing: only contacts are kept alive,
        // at most one exchange (probe, answer) a minute each way.
        assert!(
            sent <= 2 * k as u64,
            "{k} contacts: host 0 sends {sent}/min"
        );
    }
}
