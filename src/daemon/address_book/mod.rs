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

mod config;
mod registry;
mod report;
mod sightings;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use self::registry::{RegistryLink, published_addresses};
use super::{DaemonError, Event};
use crate::discovery::DiscoveryEvent;
use crate::discovery::mdns::MdnsDiscovery;
use crate::discovery::presence::{Presence, PresenceEvent};
use crate::proto::crypto::{Identity, PublicIdentity};
use crate::proto::ids::PeerId;

pub(crate) use self::config::{Attach, prepare};
pub use self::config::{DiscoveryConfig, RegistryTarget};
pub(crate) use self::registry::{RegistryDrop, is_registry_datagram};
pub use self::report::{DiscoveryReport, RegistryReport, SeenPeer, Source, presence_word};

/// Most peers remembered that are not contacts (sighted by mDNS).
pub const MAX_NEARBY: usize = 1024;

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
        let registry = config
            .registry
            .map(|target| RegistryLink::new(target, identity))
            .transpose()?;
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
    /// Runs due timers: presence, registry keep-alives, lookups. `wall_ms`
    /// is the wall clock (ms since the Unix epoch) at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant, wall_ms: u64) {
        self.presence.handle_timeout(now);
        self.registry_timeout(now, wall_ms);
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
}
