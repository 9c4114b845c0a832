//! The daemon's address book: mDNS sightings, registry answers and
//! authenticated datagrams feed one book of peers; [`Presence`] turns them
//! into `PeerOnline` / `PeerOffline` and asks for keep-alives. The book
//! never touches the node: it queues [`BookAction`]s (contact, probe,
//! reachable, block, unblock) that the driver applies, and it is handed
//! the wall clock and a wake closure rather than reading or calling the
//! driver's. (mDNS itself is `crate::discovery`.)
//!
//! ```text
//!  mDNS thread ──DiscoveryEvent──▶ channel ──(wake closure)───────────┐
//!  registry datagrams ("kr") ─────────────────────────────────────────┤
//!  node datagrams ("kt") → Node::handle_datagram → Heard::Proven(peer) ┤
//!                                                                      ▼
//!            AddressBook { book, Presence, RegistryClient, MdnsDiscovery }
//!                 │ poll_action: Contact / Probe / Reachable / Block
//!                 │   → the driver → Node::add_contact, keepalive, …
//!                 └ drive: online/offline daemon events
//! ```
//!
//! Guarantees:
//! - **Online needs proof.** A sighting (mDNS or registry) only says where
//!   to probe; a peer is reported online after a datagram from it
//!   authenticated (`Ok(Some(peer))` from the node), and offline when its
//!   keep-alives go unanswered (see [`Presence`]).
//! - **Only peers we have something to do with are kept alive:** contacts
//!   and members of our rooms ([`AddressBook::set_members`]). Any other peer
//!   is only nearby: known from its announcement, never probed, shown as
//!   neither online nor offline, until one of us writes.
//! - **Addresses follow the peer.** The address we send to is the source
//!   of the peer's latest authenticated datagram; until there is one, and
//!   while the peer is offline, probes cycle through its sighted addresses.
//! - **Blocked peers do not exist here:** never shown, never probed, never
//!   looked up; their sightings and registry answers are ignored (the node
//!   drops their datagrams before any cryptography).
//! - **Bounded.** At most [`MAX_NEARBY`] peers that are not contacts are
//!   remembered (each one is also a node contact, so that it can message
//!   us); further sightings are dropped and counted.
//! - Registry datagrams are accepted only from the configured registry's
//!   address and are verified against its pinned key by the client.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use super::{DaemonError, Event};
use crate::discovery::mdns::{MdnsConfig, MdnsCounters, MdnsDiscovery, MdnsFamily, Wake};
use crate::discovery::presence::{KeepAlive, Presence, PresenceConfig, PresenceEvent};
use crate::discovery::{DiscoveryEvent, InterfaceSpec};
use crate::proto::crypto::{Identity, PublicIdentity};
use crate::proto::ids::PeerId;
use crate::registry::wire::{MAGIC as REGISTRY_MAGIC, MAX_ADDRESSES};
use crate::registry::{ClientEvent, RegistryClient, RegistryClientConfig};

/// Most peers remembered that are not contacts (sighted by mDNS).
pub const MAX_NEARBY: usize = 1024;

/// How the daemon finds peers and decides who is online.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// Announce and browse mDNS on [`DiscoveryConfig::interfaces`]. With no
    /// interfaces mDNS is off whatever this says. Default on.
    pub mdns: bool,
    /// The LAN interfaces (names or IPv4 addresses) mDNS uses; also the
    /// addresses published to the registry when the socket is bound to
    /// `0.0.0.0`. Default none.
    pub interfaces: Vec<InterfaceSpec>,
    /// The mDNS instance name; empty means `kith <short id>`.
    pub display_name: String,
    /// The registry to register with and look contacts up in.
    pub registry: Option<RegistryTarget>,
    /// Keep-alive interval and how many missed ones make a peer offline.
    pub presence: PresenceConfig,
    /// Contacts whose address is not known: found by mDNS or the registry.
    pub contacts: Vec<PublicIdentity>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            mdns: true,
            interfaces: Vec::new(),
            display_name: String::new(),
            registry: None,
            presence: PresenceConfig::default(),
            contacts: Vec::new(),
        }
    }
}

impl DiscoveryConfig {
    fn mdns_enabled(&self) -> bool {
        self.mdns && !self.interfaces.is_empty()
    }
}

/// A registry and its pinned public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryTarget {
    pub addr: SocketAddr,
    pub public_key: [u8; 32],
}

/// Where we learned a peer's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Its mDNS announcement.
    Mdns,
    /// The registry's answer to a lookup.
    Registry,
    /// Configuration (`--peer`) or a datagram that authenticated as it.
    Direct,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Mdns => "mdns",
            Source::Registry => "registry",
            Source::Direct => "direct",
        })
    }
}

/// One peer as `kith discovery` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenPeer {
    pub peer: PeerId,
    /// Its announced name (mDNS), or empty.
    pub name: String,
    /// Where datagrams to it go now.
    pub addr: Option<SocketAddr>,
    pub source: Option<Source>,
    pub online: bool,
    /// Since its last authenticated datagram.
    pub heard_ago: Option<Duration>,
    /// Since its last sighting (mDNS or registry).
    pub sighted_ago: Option<Duration>,
    /// Whether we know its public key (needed to talk to it).
    pub has_key: bool,
    /// A contact (else a peer that is only nearby).
    pub contact: bool,
    /// Kept alive (a contact or a member of one of our rooms); a peer that
    /// is not is only nearby, neither online nor offline.
    pub watched: bool,
}

impl SeenPeer {
    /// `online`, `offline`, or `nearby` for a peer that is not kept alive.
    pub fn state(&self) -> &'static str {
        presence_word(self.online, self.watched)
    }
}

/// How `kith peers` and `kith discovery` show a peer's presence: `online`
/// only for a peer proven alive by authenticated traffic, `offline` for one
/// we keep alive that stopped answering, `nearby` for one we only know
/// from its announcement (never probed).
pub fn presence_word(online: bool, watched: bool) -> &'static str {
    match (online, watched) {
        (true, _) => "online",
        (false, true) => "offline",
        (false, false) => "nearby",
    }
}

/// The registry link as `kith discovery` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryReport {
    pub addr: SocketAddr,
    /// The registry confirmed our current registration.
    pub registered: bool,
    /// The addresses we publish.
    pub published: Vec<SocketAddr>,
    /// Since we last sent a keep-alive or registration.
    pub last_sent_ago: Option<Duration>,
    /// Since the registry last answered us (registered or keep-alive ack).
    pub last_answer_ago: Option<Duration>,
    pub lookups: u64,
    pub found: u64,
    /// Datagrams from the registry (or its address) that were dropped.
    pub dropped: u64,
}

/// What `kith discovery` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryReport {
    pub interfaces: Vec<String>,
    /// `None` when mDNS is off.
    pub mdns: Option<(String, MdnsCounters)>,
    pub presence: PresenceConfig,
    pub registry: Option<RegistryReport>,
    pub peers: Vec<SeenPeer>,
    /// Sightings dropped because [`MAX_NEARBY`] peers were remembered.
    pub nearby_dropped: u64,
}

fn ago(duration: Option<Duration>) -> String {
    duration.map_or_else(|| "-".to_owned(), |d| format!("{}ms", d.as_millis()))
}

impl DiscoveryReport {
    /// The report as lines of `key value` / `key=value` words, stable for
    /// scripts (`peer` lines: id, address, source, state, then `key=value`).
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let interfaces = if self.interfaces.is_empty() {
            "none".to_owned()
        } else {
            self.interfaces.join(",")
        };
        out.push(format!("interfaces {interfaces}"));
        match &self.mdns {
            None => out.push("mdns off".to_owned()),
            Some((name, c)) => out.push(format!(
                "mdns on name={name:?} found={} lost={} rejected={} own={} address_changes={} \
                 renamed={} errors={}",
                c.found,
                c.lost,
                c.rejected,
                c.own_ignored,
                c.address_changes,
                c.renamed,
                c.daemon_errors
            )),
        }
        let longest = self
            .presence
            .max_keepalive_interval
            .max(self.presence.keepalive_interval);
        out.push(format!(
            "presence keepalive={}ms max_keepalive={}ms offline_after={}ms idle_offline_after={}ms \
             nearby_dropped={}",
            self.presence.keepalive_interval.as_millis(),
            longest.as_millis(),
            self.presence.offline_after().as_millis(),
            self.presence.offline_after_interval(longest).as_millis(),
            self.nearby_dropped
        ));
        match &self.registry {
            None => out.push("registry off".to_owned()),
            Some(r) => {
                let published: Vec<String> = r.published.iter().map(|a| a.to_string()).collect();
                out.push(format!(
                    "registry {} {} published={} last_sent={} last_answer={} lookups={} found={} dropped={}",
                    r.addr,
                    if r.registered {
                        "registered"
                    } else {
                        "unregistered"
                    },
                    if published.is_empty() {
                        "-".to_owned()
                    } else {
                        published.join(",")
                    },
                    ago(r.last_sent_ago),
                    ago(r.last_answer_ago),
                    r.lookups,
                    r.found,
                    r.dropped
                ));
            }
        }
        for p in &self.peers {
            out.push(format!(
                "peer {} {} {} {} heard={} sighted={} key={} {} name={:?}",
                p.peer.to_hex(),
                p.addr.map_or_else(|| "-".to_owned(), |a| a.to_string()),
                p.source.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                p.state(),
                ago(p.heard_ago),
                ago(p.sighted_ago),
                if p.has_key { "yes" } else { "no" },
                if p.contact { "contact" } else { "nearby" },
                p.name
            ));
        }
        out
    }
}

/// What the daemon hands the loop once the socket is bound: the port is
/// known only then, and mDNS announces it.
pub(crate) struct Attach {
    local_addr: SocketAddr,
    mdns: Option<(MdnsDiscovery, Receiver<DiscoveryEvent>)>,
}

/// Starts mDNS (if configured) for a daemon whose socket is bound at
/// `local_addr`. Every mDNS event calls `wake`, which wakes the loop.
pub(crate) fn prepare(
    config: &DiscoveryConfig,
    public: &PublicIdentity,
    local_addr: SocketAddr,
    wake: Wake,
) -> Result<Attach, DaemonError> {
    let mut mdns = None;
    if config.mdns_enabled() {
        let mut mdns_config = MdnsConfig::new(
            public.peer_id(),
            config.display_name.clone(),
            local_addr.port(),
            config.interfaces.clone(),
        );
        mdns_config.public_key = Some(public.to_bytes());
        // Announce the addresses peers can use: those of our socket's family.
        mdns_config.family = if local_addr.is_ipv6() {
            MdnsFamily::V6
        } else {
            MdnsFamily::V4
        };
        let (tx, rx) = mpsc::channel();
        let discovery = MdnsDiscovery::start(mdns_config, tx, wake)
            .map_err(|e| DaemonError::Discovery(e.to_string()))?;
        mdns = Some((discovery, rx));
    }
    Ok(Attach { local_addr, mdns })
}

/// What the address book asks of the node; the driver applies these, in
/// order, right after the call that queued them (see
/// [`AddressBook::poll_action`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BookAction {
    /// Make `public` a node contact, so that its handshakes are answered
    /// and our probes go out ([`Node::add_contact`]).
    ///
    /// [`Node::add_contact`]: crate::proto::node::Node::add_contact
    Contact(PublicIdentity),
    /// Send a keep-alive probe to `peer` ([`Node::keepalive`]).
    ///
    /// [`Node::keepalive`]: crate::proto::node::Node::keepalive
    Probe(PeerId),
    /// Tell the node whether `peer` is reachable ([`Node::set_reachable`]).
    ///
    /// [`Node::set_reachable`]: crate::proto::node::Node::set_reachable
    Reachable(PeerId, bool),
    /// Block `peer` in the node (its datagrams are dropped unread).
    Block(PeerId),
    /// Unblock `peer` in the node.
    Unblock(PeerId),
}

/// Why a registry (`kr`) datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegistryDrop {
    /// It did not come from the configured registry's address (or no
    /// registry is configured).
    NotFromRegistry,
    /// It came from the registry's address but the client refused it
    /// (malformed, wrong signature, not an answer to anything we asked).
    Rejected,
}

pub(crate) fn is_registry_datagram(bytes: &[u8]) -> bool {
    bytes.starts_with(&REGISTRY_MAGIC)
}

#[derive(Debug, Default)]
struct Seen {
    public: Option<PublicIdentity>,
    name: String,
    /// Where discovery saw it (filtered to our socket's address family).
    sighted: Vec<SocketAddr>,
    /// Where datagrams to it go.
    addr: Option<SocketAddr>,
    source: Option<Source>,
    last_heard: Option<Instant>,
    last_sighted: Option<Instant>,
    /// From mDNS (as opposed to the registry or configuration).
    announced: bool,
    /// A contact: looked up in the registry, kept when its sighting goes.
    contact: bool,
    /// Probes sent while offline; picks the next sighted address.
    probes: usize,
    /// We told the node it is unreachable; the next online redrives it.
    marked_unreachable: bool,
}

struct RegistryLink {
    client: RegistryClient,
    addr: SocketAddr,
    outbox: VecDeque<Vec<u8>>,
    published: Vec<SocketAddr>,
    last_sent: Option<Instant>,
    last_answer: Option<Instant>,
    lookups: u64,
    found: u64,
    dropped: u64,
}

/// The address book, owned by the node driver; see the module docs.
pub(crate) struct AddressBook {
    config: DiscoveryConfig,
    presence: Presence,
    mdns: Option<(MdnsDiscovery, Receiver<DiscoveryEvent>)>,
    registry: Option<RegistryLink>,
    book: HashMap<PeerId, Seen>,
    /// Contacts whose key we learned from a sighting, for the driver to
    /// make full contacts (it re-queues their outbox).
    learned: Vec<PublicIdentity>,
    local_addr: Option<SocketAddr>,
    next_lookup: Option<Instant>,
    nearby_dropped: u64,
    /// Mirrors the node's block list, so reports never show them.
    blocked: HashSet<PeerId>,
    /// Members of our group rooms (see [`AddressBook::set_members`]).
    members: HashSet<PeerId>,
    /// What the node is to do, oldest first (see [`BookAction`]).
    actions: VecDeque<BookAction>,
}

impl AddressBook {
    /// `identity` signs our registrations (a copy of the node's).
    pub(crate) fn new(config: DiscoveryConfig, identity: Identity) -> Result<Self, DaemonError> {
        let presence = Presence::new(config.presence, HashSet::new());
        let registry = match config.registry {
            None => None,
            Some(target) => {
                let mut seed = [0u8; 32];
                rand::fill(&mut seed);
                let client = RegistryClient::new(
                    identity,
                    RegistryClientConfig::new(target.public_key),
                    seed,
                )
                .map_err(|e| DaemonError::Discovery(e.to_string()))?;
                Some(RegistryLink {
                    client,
                    addr: target.addr,
                    outbox: VecDeque::new(),
                    published: Vec::new(),
                    last_sent: None,
                    last_answer: None,
                    lookups: 0,
                    found: 0,
                    dropped: 0,
                })
            }
        };
        Ok(Self {
            config,
            presence,
            mdns: None,
            registry,
            book: HashMap::new(),
            learned: Vec::new(),
            local_addr: None,
            next_lookup: None,
            nearby_dropped: 0,
            blocked: HashSet::new(),
            members: HashSet::new(),
            actions: VecDeque::new(),
        })
    }

    /// The contacts configured without an address.
    pub(crate) fn configured_contacts(&self) -> Vec<PublicIdentity> {
        self.config.contacts.clone()
    }

    /// The socket is bound: start using mDNS, register with the registry.
    /// `wall_ms` is the wall clock (ms since the Unix epoch) at `now`.
    pub(crate) fn attach(&mut self, now: Instant, wall_ms: u64, attach: Attach) {
        self.local_addr = Some(attach.local_addr);
        self.mdns = attach.mdns;
        self.next_lookup = Some(now);
        let published = published_addresses(attach.local_addr, &self.config.interfaces);
        if let Some(link) = &mut self.registry {
            if published.is_empty() {
                log::warn!(
                    "no address to publish to the registry; listen on a specific \
                     address or name an --interface"
                );
                return;
            }
            match link.client.set_addresses(published.clone()) {
                Ok(()) => {
                    link.published = published;
                    let bytes = link.client.register(now, wall_ms);
                    link.outbox.push_back(bytes);
                    link.last_sent = Some(now);
                }
                Err(error) => log::warn!("cannot register: {error}"),
            }
        }
    }

    /// A contact we want to find; `addr` is a configured address.
    pub(crate) fn want(
        &mut self,
        now: Instant,
        peer: PeerId,
        public: Option<PublicIdentity>,
        addr: Option<SocketAddr>,
    ) {
        let seen = self.book.entry(peer).or_default();
        seen.contact = true;
        if public.is_some() {
            seen.public = public;
        }
        self.presence.watch(now, peer, true);
        if let Some(addr) = addr {
            seen.addr = Some(addr);
            seen.source = Some(Source::Direct);
            seen.sighted = vec![addr];
            self.presence.found(now, peer, vec![addr]);
        }
    }

    /// The public key of a known peer, by its id or its key.
    pub(crate) fn public_of(&self, id_or_key: &PeerId) -> Option<PublicIdentity> {
        if let Some(public) = self.book.get(id_or_key).and_then(|s| s.public.clone()) {
            return Some(public);
        }
        self.book
            .values()
            .filter_map(|s| s.public.clone())
            .find(|public| public.to_bytes() == id_or_key.0)
    }

    /// Where datagrams to `peer` go.
    pub(crate) fn addr_of(&self, peer: &PeerId) -> Option<SocketAddr> {
        self.book.get(peer).and_then(|s| s.addr)
    }

    pub(crate) fn is_online(&self, peer: &PeerId) -> bool {
        self.presence.is_online(peer)
    }

    /// Whether `peer` is kept alive (a contact or a member of our rooms).
    pub(crate) fn is_watched(&self, peer: &PeerId) -> bool {
        self.presence.is_watched(peer)
    }

    /// The members of our group rooms, besides contacts the peers we keep
    /// alive. A peer no longer in any of them (and not a contact) is no
    /// longer probed.
    pub(crate) fn set_members(&mut self, now: Instant, members: HashSet<PeerId>) {
        let old = std::mem::replace(&mut self.members, members);
        let changed: Vec<PeerId> = old.symmetric_difference(&self.members).copied().collect();
        for peer in changed {
            let watched =
                self.members.contains(&peer) || self.book.get(&peer).is_some_and(|s| s.contact);
            self.presence.watch(now, peer, watched);
        }
    }

    /// A message went to or came from `peer`: keep-alives to it go at the
    /// starting interval again (see [`Presence::activity`]).
    pub(crate) fn activity(&mut self, now: Instant, peer: PeerId) {
        self.presence.activity(now, peer);
    }

    /// Peers that are not contacts but whose key we know, for `kith peers`.
    pub(crate) fn nearby(
        &self,
    ) -> impl Iterator<Item = (PeerId, PublicIdentity, Option<SocketAddr>)> + '_ {
        self.book
            .iter()
            .filter(|(id, s)| !s.contact && !self.blocked.contains(id))
            .filter_map(|(id, s)| Some((*id, s.public.clone()?, s.addr)))
    }

    /// Every peer's announced (mDNS) name, blocked peers left out: only
    /// hints, since anyone can announce any name.
    pub(crate) fn announced_names(&self) -> impl Iterator<Item = (PeerId, &str)> + '_ {
        self.book
            .iter()
            .filter(|(id, s)| !s.name.is_empty() && !self.blocked.contains(id))
            .map(|(id, s)| (*id, s.name.as_str()))
    }

    /// `peer` proved its key by opening a session with us before we saw
    /// it announced: it is nearby.
    pub(crate) fn learned_key(&mut self, peer: PeerId, public: PublicIdentity) {
        let seen = self.book.entry(peer).or_default();
        if seen.public.is_none() {
            seen.public = Some(public);
        }
    }

    /// A datagram from `from` authenticated as `peer`.
    pub(crate) fn heard(&mut self, now: Instant, peer: PeerId, from: SocketAddr) {
        let seen = self.book.entry(peer).or_default();
        seen.last_heard = Some(now);
        if seen.addr != Some(from) {
            // The peer moved (or answered on another of its addresses).
            seen.addr = Some(from);
            seen.source = Some(Source::Direct);
        }
        self.presence.heard(now, peer);
    }

    /// `peer` told us, sealed under our session with it, that it is
    /// stopping: it is offline now (see [`Presence::left`]).
    pub(crate) fn left(&mut self, peer: PeerId) {
        self.presence.left(peer);
    }

    /// The peers online now, for the goodbyes at stop.
    pub(crate) fn online_peers(&self) -> Vec<PeerId> {
        self.presence.online_peers().collect()
    }

    /// Blocks or unblocks `peer` everywhere discovery has it, and asks the
    /// node to ([`BookAction::Block`], [`BookAction::Unblock`]).
    pub(crate) fn set_blocked(&mut self, now: Instant, peer: PeerId, blocked: bool) {
        if blocked {
            self.blocked.insert(peer);
            self.actions.push_back(BookAction::Block(peer));
            self.presence.block(peer);
            if self.book.get(&peer).is_some_and(|s| !s.contact) {
                self.book.remove(&peer);
            }
        } else {
            self.blocked.remove(&peer);
            self.actions.push_back(BookAction::Unblock(peer));
            self.presence.unblock(peer);
            if let Some(seen) = self.book.get(&peer)
                && !seen.sighted.is_empty()
            {
                let sighted = seen.sighted.clone();
                self.presence.found(now, peer, sighted);
            }
        }
    }

    /// A `kr` datagram arrived from `from` at `now` (`wall_ms` on the wall
    /// clock). `Err` says why it was dropped.
    pub(crate) fn handle_registry_datagram(
        &mut self,
        now: Instant,
        wall_ms: u64,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), RegistryDrop> {
        let Some(link) = &mut self.registry else {
            return Err(RegistryDrop::NotFromRegistry);
        };
        if from != link.addr {
            link.dropped += 1;
            return Err(RegistryDrop::NotFromRegistry);
        }
        let event = match link.client.handle_datagram(now, wall_ms, bytes) {
            Ok(event) => event,
            Err(_) => {
                link.dropped += 1;
                return Err(RegistryDrop::Rejected);
            }
        };
        link.last_answer = Some(now);
        let Some(ClientEvent::Found {
            peer,
            public_key,
            addresses,
            ..
        }) = event
        else {
            // Registered, keep-alive acks, NotFound, Unavailable,
            // Forgotten (the client re-registers at its next timeout).
            return Ok(());
        };
        link.found += 1;
        if self.blocked.contains(&peer) {
            return Ok(());
        }
        // The client checked the peer's own signature and that the key
        // hashes to `peer`.
        let Ok(public) = PublicIdentity::from_bytes(&public_key) else {
            return Err(RegistryDrop::Rejected);
        };
        let addresses = self.same_family(addresses);
        self.sighted(
            now,
            peer,
            public,
            addresses,
            Source::Registry,
            String::new(),
        );
        Ok(())
    }

    /// Runs due timers: presence, registry keep-alives, lookups. `wall_ms`
    /// is the wall clock (ms since the Unix epoch) at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant, wall_ms: u64) {
        self.presence.handle_timeout(now);
        let Some(link) = &mut self.registry else {
            return;
        };
        if let Some(bytes) = link.client.handle_timeout(now, wall_ms) {
            link.outbox.push_back(bytes);
            link.last_sent = Some(now);
        }
        if self.next_lookup.is_some_and(|at| now >= at) {
            let interval = self.config.presence.offline_after();
            self.next_lookup = Some(now + interval);
            // Contacts that are offline and that mDNS has not seen lately.
            let wanted: Vec<PeerId> = self
                .book
                .iter()
                .filter(|(id, s)| {
                    let announced_lately = s.announced
                        && s.last_sighted
                            .is_some_and(|t| now.saturating_duration_since(t) < interval);
                    s.contact
                        && !announced_lately
                        && !self.blocked.contains(id)
                        && !self.presence.is_online(id)
                })
                .map(|(id, _)| *id)
                .collect();
            for peer in wanted {
                let bytes = link.client.lookup(peer);
                if bytes.is_empty() {
                    // The registry's key cannot seal a lookup.
                    continue;
                }
                link.outbox.push_back(bytes);
                link.lookups += 1;
            }
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let registry = self.registry.as_ref().and_then(|link| {
            [link.client.poll_timeout(), self.next_lookup]
                .into_iter()
                .flatten()
                .min()
        });
        [self.presence.poll_timeout(), registry]
            .into_iter()
            .flatten()
            .min()
    }

    /// We are stopping: the registry forgets us now, so contacts looking
    /// us up see us unavailable at once rather than after our keep-alives
    /// stop.
    pub(crate) fn stopping(&mut self) {
        if let Some(link) = &mut self.registry
            && let Some(bytes) = link.client.unregister()
        {
            link.outbox.push_back(bytes);
        }
    }

    /// The next registry datagram to send.
    pub(crate) fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        let link = self.registry.as_mut()?;
        link.outbox.pop_front().map(|bytes| (link.addr, bytes))
    }

    /// Keys of contacts learned since the last call.
    pub(crate) fn take_learned(&mut self) -> Vec<PublicIdentity> {
        std::mem::take(&mut self.learned)
    }

    /// What the node is to do next, oldest first. The driver drains these
    /// after every call that takes `&mut self`, before it reads the node.
    pub(crate) fn poll_action(&mut self) -> Option<BookAction> {
        self.actions.pop_front()
    }

    /// Feeds mDNS events in, queues the keep-alives presence asks for and
    /// the node's reachability, and returns the online/offline changes for
    /// the daemon's listeners.
    pub(crate) fn drive(&mut self, now: Instant) -> Vec<Event> {
        self.drain_mdns(now);
        let mut out = Vec::new();
        loop {
            while let Some(keepalive) = self.presence.poll_keepalive() {
                self.probe(keepalive);
            }
            match self.presence.poll_event() {
                None => break,
                Some(PresenceEvent::Online { peer, .. }) => {
                    if let Some(seen) = self.book.get_mut(&peer)
                        && std::mem::take(&mut seen.marked_unreachable)
                    {
                        // The probe that proved the peer already made it
                        // reachable in the node, without re-sending what
                        // waited for it; going through unreachable once
                        // makes the node redrive its queue now rather than
                        // at the next (backed-off) retransmission.
                        self.actions.push_back(BookAction::Reachable(peer, false));
                    }
                    self.actions.push_back(BookAction::Reachable(peer, true));
                    // Proven alive: mDNS need not re-query its announcement.
                    if let Some((mdns, _)) = &self.mdns {
                        mdns.set_alive(peer, true);
                    }
                    out.push(Event::PeerOnline {
                        peer,
                        peer_name: String::new(),
                    });
                }
                Some(PresenceEvent::Offline { peer }) => {
                    self.actions.push_back(BookAction::Reachable(peer, false));
                    if let Some((mdns, _)) = &self.mdns {
                        mdns.set_alive(peer, false);
                    }
                    if let Some(seen) = self.book.get_mut(&peer) {
                        seen.marked_unreachable = true;
                    }
                    out.push(Event::PeerOffline {
                        peer,
                        peer_name: String::new(),
                    });
                }
            }
        }
        out
    }

    fn drain_mdns(&mut self, now: Instant) {
        let mut events = Vec::new();
        if let Some((_, rx)) = &self.mdns {
            events.extend(rx.try_iter());
        }
        for event in events {
            match event {
                DiscoveryEvent::PeerFound {
                    peer_id,
                    public_key,
                    addresses,
                    scope_ids,
                    port,
                    display_name,
                } => {
                    if self.blocked.contains(&peer_id) {
                        continue;
                    }
                    let addresses: Vec<SocketAddr> = addresses
                        .into_iter()
                        .map(|ip| match ip {
                            // A link-local address goes out of the
                            // interface it was heard on.
                            IpAddr::V6(v6) => {
                                let scope = scope_ids
                                    .iter()
                                    .find(|(addr, _)| *addr == v6)
                                    .map_or(0, |(_, scope)| *scope);
                                SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope))
                            }
                            IpAddr::V4(_) => SocketAddr::new(ip, port),
                        })
                        .collect();
                    let addresses = self.same_family(addresses);
                    // The bridge checked that the key is valid and hashes
                    // to the id; a failure here would only skip the peer.
                    let public_key = public_key.and_then(|k| PublicIdentity::from_bytes(&k).ok());
                    match public_key {
                        Some(public) => {
                            self.sighted(
                                now,
                                peer_id,
                                public,
                                addresses,
                                Source::Mdns,
                                display_name,
                            );
                        }
                        None => {
                            // Without a key we can only probe a contact
                            // whose key we already hold.
                            let known = self.book.get(&peer_id).and_then(|s| s.public.clone());
                            if let Some(public) = known {
                                self.sighted(
                                    now,
                                    peer_id,
                                    public,
                                    addresses,
                                    Source::Mdns,
                                    display_name,
                                );
                            }
                        }
                    }
                }
                DiscoveryEvent::PeerLost { peer_id } => self.lost(now, peer_id),
            }
        }
    }

    /// Someone (mDNS or the registry) says `peer` is at `addresses`.
    fn sighted(
        &mut self,
        now: Instant,
        peer: PeerId,
        public: PublicIdentity,
        addresses: Vec<SocketAddr>,
        source: Source,
        name: String,
    ) {
        if addresses.is_empty() {
            return;
        }
        let nearby = self.book.values().filter(|s| !s.contact).count();
        if !self.book.contains_key(&peer) && nearby >= MAX_NEARBY {
            self.nearby_dropped += 1;
            return;
        }
        let seen = self.book.entry(peer).or_default();
        if seen.public.is_none() && seen.contact {
            // A contact from the store, known by id only until now.
            self.learned.push(public.clone());
        }
        seen.public = Some(public.clone());
        if !name.is_empty() {
            seen.name = name;
        }
        seen.announced = source == Source::Mdns;
        seen.last_sighted = Some(now);
        if seen.addr.is_none() || !self.presence.is_online(&peer) {
            seen.addr = addresses.first().copied();
            seen.source = Some(source);
        }
        seen.sighted = addresses.clone();
        // A node contact, so that its handshakes are answered and our
        // probes go out; it becomes one of the user's contacts only by a
        // message either way.
        self.actions.push_back(BookAction::Contact(public));
        self.presence.found(now, peer, addresses);
    }

    fn lost(&mut self, now: Instant, peer: PeerId) {
        self.presence.lost(now, peer);
        let Some(seen) = self.book.get_mut(&peer) else {
            return;
        };
        seen.announced = false;
        if seen.contact {
            // Keep probing a contact where it was last seen: a goodbye may
            // be forged, and a contact that comes back is noticed.
            if let Some(addr) = seen.addr {
                self.presence.found(now, peer, vec![addr]);
            }
        } else if !self.presence.is_online(&peer) {
            self.book.remove(&peer);
        }
    }

    fn probe(&mut self, keepalive: KeepAlive) {
        let online = self.presence.is_online(&keepalive.peer);
        let Some(seen) = self.book.get_mut(&keepalive.peer) else {
            return;
        };
        if !online && !keepalive.addresses.is_empty() {
            // Offline: try each place it was seen in turn; the one that
            // answers becomes its address (see `heard`).
            let at = seen.probes % keepalive.addresses.len();
            seen.addr = Some(keepalive.addresses[at]);
            seen.probes = seen.probes.wrapping_add(1);
        }
        if seen.addr.is_some() {
            self.actions.push_back(BookAction::Probe(keepalive.peer));
        }
    }

    fn same_family(&self, addresses: Vec<SocketAddr>) -> Vec<SocketAddr> {
        let v4 = self.local_addr.is_none_or(|a| a.is_ipv4());
        addresses
            .into_iter()
            .filter(|a| a.is_ipv4() == v4)
            .collect()
    }

    pub(crate) fn report(&self, now: Instant) -> DiscoveryReport {
        let mut peers: Vec<SeenPeer> = self
            .book
            .iter()
            .filter(|(id, _)| !self.blocked.contains(id))
            .map(|(id, s)| SeenPeer {
                peer: *id,
                name: s.name.clone(),
                addr: s.addr,
                source: s.source,
                online: self.presence.is_online(id),
                heard_ago: s.last_heard.map(|t| now.saturating_duration_since(t)),
                sighted_ago: s.last_sighted.map(|t| now.saturating_duration_since(t)),
                has_key: s.public.is_some(),
                contact: s.contact,
                watched: self.presence.is_watched(id),
            })
            .collect();
        peers.sort_by_key(|p| p.peer);
        DiscoveryReport {
            interfaces: self
                .config
                .interfaces
                .iter()
                .map(|i| i.to_string())
                .collect(),
            mdns: self
                .mdns
                .as_ref()
                .map(|(m, _)| (m.instance_name().to_owned(), m.counters())),
            presence: self.config.presence,
            registry: self.registry.as_ref().map(|link| RegistryReport {
                addr: link.addr,
                registered: link.client.is_registered(),
                published: link.published.clone(),
                last_sent_ago: link.last_sent.map(|t| now.saturating_duration_since(t)),
                last_answer_ago: link.last_answer.map(|t| now.saturating_duration_since(t)),
                lookups: link.lookups,
                found: link.found,
                dropped: link.dropped,
            }),
            peers,
            nearby_dropped: self.nearby_dropped,
        }
    }
}

/// The addresses to publish to the registry: the bound address if it is
/// specific, else the IPv4 addresses of the configured interfaces, else
/// every non-loopback IPv4 address of the host. At most
/// [`MAX_ADDRESSES`].
fn published_addresses(local: SocketAddr, interfaces: &[InterfaceSpec]) -> Vec<SocketAddr> {
    if !local.ip().is_unspecified() {
        return vec![local];
    }
    let Ok(all) = if_addrs::get_if_addrs() else {
        return Vec::new();
    };
    let mut out: Vec<SocketAddr> = all
        .iter()
        .filter(|iface| match iface.ip() {
            IpAddr::V4(ip) => {
                if interfaces.is_empty() {
                    !ip.is_loopback()
                } else {
                    interfaces.iter().any(|spec| match spec {
                        InterfaceSpec::Name(name) => *name == iface.name,
                        InterfaceSpec::Addr(addr) => *addr == ip,
                    })
                }
            }
            IpAddr::V6(_) => false,
        })
        .map(|iface| SocketAddr::new(iface.ip(), local.port()))
        .collect();
    out.sort();
    out.dedup();
    out.truncate(MAX_ADDRESSES);
    out
}

#[cfg(test)]
mod tests {
    //! The address book, presence and a node together in virtual time:
    //! what a node sends because of what it was told by mDNS.

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
                    let (_, to, from, bytes) =
                        self.in_flight.pop_front().expect("peeked just above");
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
}
