//! The IO shell around the node: a [`Driver`] for the network loop that owns
//! the [`Node`] and the [`Store`], maps peer ids to socket addresses, commits
//! received messages before acknowledging them and keeps the outbox.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::address_book::{
    AddressBook, Attach, BookAction, DiscoveryConfig, RegistryDrop, is_registry_datagram,
};
use super::api::{
    Delivery, HistoryPage, HistoryRow, MAX_PAGE, Reply, ReplyTo, Request, ResolveKind, Target,
    Update,
};
use super::clock::wall_clock_millis;
use super::mutes::MuteTable;
use super::profiles::{self, ProfileBook};
use super::search::{SearchJob, SearchResult, Searcher};
use super::{DaemonError, Event, PeerAddr, PeerInfo, RoomSummary, Status};
use crate::account::Account;
use crate::net::{Destination, Driver, Transmit, Via};
use crate::proto::crypto::{ChainId, ChainRole, ChainSnapshot};
use crate::proto::crypto::{Envelope, Identity, PublicIdentity};
use crate::proto::ids::{MessageId, PeerId, RoomId};
use crate::proto::node::{
    GroupKey, Heard, Node, NodeConfig, NodeError, NodeEvent, Receipt, RoomFounding, RoomInfo,
    direct_room,
};
use crate::proto::reliable;
use crate::proto::sync::{Item, SortedItems, SyncAction, SyncManager, SyncManagerConfig};
use crate::store::{
    Contact, DeliveryState, Member, Message, MessageKey, Mute, Position, Room as StoredRoom, Store,
    StoreError,
};

/// A sent message enters the stored outbox (its `Pending` deliveries) only
/// if it is still unacknowledged this long after it was stored: on a LAN
/// almost every message is acknowledged within a millisecond, and its
/// delivery then costs one write instead of three. A crash inside this
/// window leaves such a message stored but out of the outbox; the next
/// reconciliation with its recipient hands it over all the same.
const OUTBOX_AFTER: Duration = Duration::from_secs(1);

/// One of our messages that not every recipient acknowledged yet.
struct Inflight {
    /// Its stored copy.
    key: MessageKey,
    /// Recipients that have not acknowledged it.
    waiting: Vec<PeerId>,
    /// Whether its `Pending` deliveries are in the store (the outbox).
    in_outbox: bool,
    /// How many recipients it had when sent (0: not known, a message
    /// from the stored outbox).
    recipients: usize,
}

/// How many of the newest stored messages per peer seed the node's
/// duplicate filter at start.
const REMEMBER_PER_PEER: usize = 4096;

/// What the daemon handle and the control socket ask of the network thread.
/// Requests are typed: text a person typed is turned into ids by
/// [`Request::Resolve`] at the edge (see [`NodeDriver::resolve`]).
pub(crate) enum Command {
    /// A request, answered through `reply`.
    Request { request: Request, reply: ReplyTo },
    /// Adds a subscriber; `reply` answers with its id once it is in place,
    /// so an event of anything the caller does afterwards reaches it.
    Subscribe {
        sink: Sink,
        /// Replay what was stored after this cursor first.
        since: Option<u64>,
        waker: Option<Box<dyn Fn() + Send>>,
        reply: Sender<u64>,
    },
    /// mDNS queued events for the loop (sent by its bridge thread).
    DiscoveryWake,
    /// The socket is bound: start mDNS and the registry.
    AttachDiscovery(Box<Attach>),
    /// Chooses our display name.
    SetProfile {
        name: String,
        reply: Sender<Result<(), DaemonError>>,
    },
    /// Searches message text (on the search thread, which replies).
    Search {
        text: String,
        /// A room (or peer, for its direct chat) as the user typed it.
        room: Option<String>,
        before: Option<crate::store::Position>,
        limit: usize,
        reply: Sender<Result<Vec<SearchResult>, DaemonError>>,
    },
}

/// Where a subscriber's events go.
pub(crate) enum Sink {
    /// Events only ([`super::DaemonHandle::events`]).
    Events(Sender<Event>),
    /// Events, replies and the end of a replay ([`super::Subscription`]).
    Updates(Sender<Update>),
}

/// A listener.
struct Subscriber {
    id: u64,
    sink: Sink,
    waker: Option<Box<dyn Fn() + Send>>,
    /// Replaying what was stored after a cursor: `(since, replayed up to)`.
    /// Message events stored after `since` are left out meanwhile: the
    /// replay reads them from the store.
    replay: Option<(u64, u64)>,
}

impl Subscriber {
    /// Queues `update`; `false` once the subscriber is gone.
    fn send(&self, update: Update) -> bool {
        match (&self.sink, update) {
            (Sink::Events(tx), Update::Event(event)) => tx.send(event).is_ok(),
            // A plain event channel gets no replies or replay ends.
            (Sink::Events(_), _) => true,
            (Sink::Updates(tx), update) => tx.send(update).is_ok(),
        }
    }

    fn wake(&self) {
        if let Some(waker) = &self.waker {
            waker();
        }
    }
}

/// A room's unread messages (see [`NodeDriver::unread`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Unread {
    count: u64,
    /// Of `count`, those in a muted room or from a muted sender.
    muted: u64,
}

/// Messages replayed per loop turn to a subscriber catching up, so a long
/// replay never holds the network loop for long.
const REPLAY_CHUNK: usize = 256;

/// A message the node sealed and queued: at the end of the current batch
/// of commands it is signed with the batch's other messages, sent, and its
/// stored copy committed with theirs (group commit), with the caller
/// waiting for its id.
struct UnsavedSend {
    /// The text, as stored.
    body: Vec<u8>,
    recipients: Vec<PeerId>,
    reply: ReplyTo,
}

/// A signed send whose datagrams are queued; stored once they are out.
struct SignedSend {
    message: Message,
    recipients: Vec<PeerId>,
    reply: ReplyTo,
}

/// A contact. Its address and presence live in [`AddressBook`].
struct PeerEntry {
    public: PublicIdentity,
}

/// Owns the node and the store; lives on the `kith-net` thread.
pub(crate) struct NodeDriver {
    node: Node,
    store: Store,
    peers: HashMap<PeerId, PeerEntry>,
    /// Our messages not yet acknowledged by everyone, by id.
    inflight: HashMap<MessageId, Inflight>,
    /// Sent messages not in the stored outbox yet, oldest first, with when
    /// they go into it (see [`OUTBOX_AFTER`]).
    outbox_due: VecDeque<(Instant, MessageId)>,
    /// Delivery states to record, in one transaction per round.
    delivery_updates: Vec<(MessageKey, PeerId, DeliveryState)>,
    /// Muted rooms and peers (by their 32-byte id).
    mutes: MuteTable,
    subscribers: Vec<Subscriber>,
    /// The id the next subscriber gets.
    next_subscriber: u64,
    /// How far the user read each room (persisted).
    read_markers: HashMap<RoomId, Position>,
    /// Each room's unread messages and how many of them are muted (the
    /// room, or their sender, was muted when they came), kept up to date
    /// so listing rooms costs no query.
    unread: HashMap<RoomId, Unread>,
    /// Events for the subscribers, sent at `Driver::sent`.
    unpublished: Vec<Event>,
    status: Status,
    /// Address book and presence: mDNS, registry, keep-alives.
    discovery: AddressBook,
    /// History reconciliation sessions with members.
    sync: SyncManager,
    /// Where peers that are not authenticated yet wrote from: only for
    /// answering a stranger's handshake. Bounded.
    provisional: HashMap<PeerId, SocketAddr>,
    /// Invitations to accept without asking (`--accept-invites`), but only
    /// from accepted contacts: an invitation from anyone else waits for
    /// the user, as a contact request does.
    accept_invites: bool,
    /// Invitations from accepted contacts to accept at the next pump.
    invitations_to_accept: Vec<RoomId>,
    /// Contacts that wrote first and are not accepted yet.
    requests: HashSet<PeerId>,
    /// Received messages not journaled yet (only while `deferring`).
    uncommitted: Vec<(Message, Receipt)>,
    /// Inside a burst of datagrams: commits wait for `flush`.
    deferring: bool,
    /// Peers that opened a session with us without being contacts, until
    /// they write (then they are requests). Bounded.
    strangers_met: HashMap<PeerId, PublicIdentity>,
    /// When every online member is reconciled with again.
    next_sync: Instant,
    /// Item sets of rooms with a reconciliation under way.
    sync_sets: HashMap<(RoomId, u32), SortedItems>,
    /// Sends of this batch of commands, signed together by
    /// [`NodeDriver::sign_sends`].
    unsaved_sends: Vec<UnsavedSend>,
    /// Signed sends whose datagrams are queued, stored by
    /// [`NodeDriver::commit_sends`] once they are out.
    signed_sends: Vec<SignedSend>,
    /// Received messages durable in the store's journal (and acknowledged)
    /// whose reports wait for [`NodeDriver::settle`], and the events
    /// published after them, in order.
    waiting: Vec<Waiting>,
    /// When journaled messages (received or sent) move into the database.
    settle_at: Option<Instant>,
    /// Settlings that failed in a row: the next try waits longer (see
    /// [`settle_retry_delay`]), so a full disk is not retried, and logged,
    /// every 2 ms.
    settle_failures: u32,
    /// Why the store cannot grow (a full disk), until a settling succeeds:
    /// sends are refused before they go out meanwhile.
    disk_full: Option<String>,
    /// Chains whose key arrived: what was stored unreadable of them is
    /// opened once this round's messages are stored and its datagrams out.
    chains_known: Vec<ChainId>,
    /// Peers that came online, with when their shared rooms are reconciled
    /// (see [`SYNC_AFTER_ONLINE`]), oldest first.
    syncs_due: VecDeque<(Instant, PeerId)>,
    /// A group room's members may have changed: discovery is told at the
    /// next pump who to keep alive (see [`NodeDriver::watch_members`]).
    members_changed: bool,
    /// Display names: signed profiles, mDNS hints, labels.
    profiles: ProfileBook,
    /// When the mDNS names are next taken as hints.
    hints_at: Instant,
    /// The search thread, started at the first search.
    searcher: Option<Searcher>,
}

/// How often the names discovery heard announced are taken as hints.
const HINTS_EVERY: Duration = Duration::from_secs(1);

/// How long after a peer comes online its shared rooms are reconciled:
/// first the live streams (and our outbox) catch up, so the reconciliation
/// finds what is really missing instead of forwarding thousands of messages
/// that are still on their way (a member coming online in a busy room, the
/// first time two members talk while a room is busy).
const SYNC_AFTER_ONLINE: Duration = Duration::from_secs(2);

/// What waits for the journal to settle, in the order it happened.
enum Waiting {
    /// A received message: reported once it is in the database, if it
    /// turned out new or replaced an unreadable copy. Until it is
    /// `journaled` it cannot be there, and it and what follows it wait.
    Message {
        message: Message,
        event: Event,
        journaled: bool,
    },
    /// Any other event published after such a message: it stays behind it.
    Other(Event),
}

impl Waiting {
    /// A message that is not in the journal yet (so not in the database).
    fn unjournaled(&self) -> bool {
        matches!(
            self,
            Waiting::Message {
                journaled: false,
                ..
            }
        )
    }
}

/// How long journaled messages wait before they move into the database:
/// long enough that a message's acknowledgement, and the sender's
/// "delivered", never wait behind a transaction, short enough that a burst
/// still makes one transaction of a few milliseconds' messages.
const SETTLE_AFTER: Duration = Duration::from_millis(2);

/// How long after `failures` failed settlings in a row the next one is
/// tried: doubling from [`SETTLE_AFTER`] up to about a second (a disk that
/// filled up is retried that often until space is freed).
fn settle_retry_delay(failures: u32) -> Duration {
    SETTLE_AFTER * 2u32.pow(failures.min(9))
}

/// How often shared rooms are reconciled with every online member, on top
/// of a reconciliation whenever a member comes online.
const SYNC_INTERVAL: Duration = Duration::from_secs(60);

/// Unproven source addresses kept for answering strangers' handshakes.
const MAX_PROVISIONAL: usize = 256;

impl NodeDriver {
    /// Rebuilds the node from the store: blocks, contacts (with their
    /// keys), the configured peers' addresses, the outbox and the group
    /// rooms, in that order (the outbox goes out ahead of any new key).
    pub(crate) fn new(
        account: Account,
        mut config: NodeConfig,
        peers: &[PeerAddr],
        discovery: DiscoveryConfig,
    ) -> Result<Self, DaemonError> {
        let now = Instant::now();
        config.wall_clock_millis = wall_clock_millis();
        // The node would join whoever invites; the driver knows who is a
        // contact and decides (see `accept_invites`).
        let accept_invites = std::mem::replace(&mut config.auto_accept_invites, false);
        // The registry client signs our registrations with the same identity.
        let registry_identity = Identity::from_secret_bytes(&account.identity.secret_bytes());
        let discovery = AddressBook::new(discovery, registry_identity)?;
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        let node = Node::new(account.identity, config, StdRng::from_seed(seed), now);
        let mut sync_seed = [0u8; 32];
        rand::fill(&mut sync_seed);
        let sync = SyncManager::new(
            node.peer_id(),
            SyncManagerConfig::default(),
            StdRng::from_seed(sync_seed),
        );
        let mut node = node;
        let profiles = ProfileBook::restore(&account.store, &mut node)?;
        let mut driver = NodeDriver {
            profiles,
            hints_at: now,
            searcher: None,
            node,
            store: account.store,
            peers: HashMap::new(),
            accept_invites,
            invitations_to_accept: Vec::new(),
            inflight: HashMap::new(),
            outbox_due: VecDeque::new(),
            delivery_updates: Vec::new(),
            mutes: MuteTable::default(),
            subscribers: Vec::new(),
            next_subscriber: 0,
            read_markers: HashMap::new(),
            unread: HashMap::new(),
            unpublished: Vec::new(),
            status: Status::default(),
            discovery,
            sync,
            next_sync: now + SYNC_INTERVAL,
            sync_sets: HashMap::new(),
            waiting: Vec::new(),
            settle_at: None,
            settle_failures: 0,
            disk_full: None,
            chains_known: Vec::new(),
            syncs_due: VecDeque::new(),
            unsaved_sends: Vec::new(),
            signed_sends: Vec::new(),
            provisional: HashMap::new(),
            requests: HashSet::new(),
            strangers_met: HashMap::new(),
            uncommitted: Vec::new(),
            deferring: false,
            members_changed: true,
        };
        driver.requests = driver.store.contact_requests()?.into_iter().collect();
        driver.read_markers = driver.store.read_markers()?;
        for peer in driver.store.blocked()? {
            driver.discovery.set_blocked(now, peer, true);
            driver.apply_book_actions(now);
        }
        driver.mutes = MuteTable::new(driver.store.mutes()?);
        for (peer, key) in driver.store.contact_keys()? {
            match PublicIdentity::from_bytes(&key) {
                Ok(public) if public.peer_id() == peer => driver.learn_contact(now, public)?,
                _ => log::warn!("ignoring a stored contact with a bad key"),
            }
        }
        for peer in peers {
            // A configured peer we blocked stays blocked.
            if !driver.node.is_blocked(&peer.public.peer_id()) {
                driver.add_peer(now, peer.clone())?;
            }
        }
        for public in driver.discovery.configured_contacts() {
            driver.learn_contact(now, public)?;
        }
        // Contacts stored without a key (by an older version): discovery
        // finds their keys, and then they become full contacts.
        for contact in driver.store.contacts()? {
            if !driver.peers.contains_key(&contact.peer) && contact.peer != driver.node.peer_id() {
                driver.discovery.want(now, contact.peer, None, None);
            }
        }
        driver.restore_rooms(now)?;
        driver.watch_members(now);
        for room in driver.node.rooms() {
            driver.recount_unread(room.id)?;
        }
        for (room, record) in driver.store.invitations()? {
            if driver.node.restore_invitation(&record).is_err() {
                log::warn!("dropping a damaged stored invitation to {room:?}");
                driver.store.put_invitations(&[(room, None)])?;
            }
        }
        // Our chains come back where they were, and go out again from
        // their origins ahead of the outbox, so every stored envelope can
        // be opened by its recipient.
        driver.node.restore_chains(driver.store.chains()?);
        driver.node.resume(now);
        driver.resend_outbox(now)?;
        driver.save_chains();
        Ok(driver)
    }

    /// Checkpoints the store; called once the loop has stopped.
    pub(crate) fn flush(mut self) -> Result<(), DaemonError> {
        let now = Instant::now();
        self.commit_sends(now);
        // Whatever is still unacknowledged is in the outbox for next time;
        // it is written with the journal's last settling.
        self.enter_outbox(now, true);
        self.write_deliveries()?;
        // Keys of members learned during this run (seen nearby, or in a
        // member list) are kept for the next start.
        for room in self.node.rooms().into_iter().filter(|r| r.admin.is_some()) {
            self.persist_room(&room.id)?;
        }
        self.db()?.checkpoint()?;
        Ok(())
    }

    /// Makes `public` a contact (stored with its key) if it is not one.
    fn learn_contact(&mut self, now: Instant, public: PublicIdentity) -> Result<(), DaemonError> {
        let id = public.peer_id();
        if self.peers.contains_key(&id) || id == self.node.peer_id() {
            return Ok(());
        }
        // Discovery keeps looking for it (and lists it as a contact).
        self.discovery.want(now, id, Some(public.clone()), None);
        if !self.db()?.has_contact(&id)? {
            self.db()?.upsert_contact(&Contact {
                peer: id,
                display_name: id.short(),
                verified: false,
            })?;
        }
        self.db()?.set_contact_key(&id, &public.to_bytes())?;
        self.peers.insert(
            id,
            PeerEntry {
                public: public.clone(),
            },
        );
        self.node.add_contact(now, public);
        let room = direct_room(self.node.peer_id(), id);
        let recent = self.db()?.recent_ids(&room, REMEMBER_PER_PEER)?;
        self.node.remember_stored(recent);
        Ok(())
    }

    /// Makes `peer` a contact at `addr` (or gives a contact a new address).
    fn add_peer(&mut self, now: Instant, peer: PeerAddr) -> Result<(), DaemonError> {
        let id = peer.public.peer_id();
        if id == self.node.peer_id() {
            return Err(DaemonError::UnknownPeer("our own id".to_owned()));
        }
        if self.node.is_blocked(&id) {
            return Err(DaemonError::Blocked(id.to_hex()));
        }
        self.learn_contact(now, peer.public.clone())?;
        self.node.share_profile(now, id);
        self.discovery
            .want(now, id, Some(peer.public), Some(peer.addr));
        // A static address: send at once; presence probes it and says when
        // the peer stops answering.
        self.node.set_reachable(now, id, true);
        Ok(())
    }

    /// Sends every stored message a contact has not acknowledged again, as
    /// the very envelope stored (same id, so a recipient that had stored it
    /// does not store it twice). Only a direct message whose chain the store
    /// does not know (written before chains were kept) is sealed again
    /// under a new id.
    fn resend_outbox(&mut self, now: Instant) -> Result<(), DaemonError> {
        let contacts: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in contacts {
            let direct = direct_room(self.node.peer_id(), peer);
            for key in self.db()?.outbox(&peer)? {
                let Some(message) = self.db()?.message(&key)? else {
                    continue;
                };
                let result = match self.node.resend_envelope(now, peer, &message.envelope) {
                    Err(NodeError::UnknownChain) if message.room == direct => {
                        let text = String::from_utf8_lossy(&message.body);
                        self.node
                            .send_direct_message(now, peer, &text)
                            .map(|sent| sent.id)
                    }
                    other => other,
                };
                match result {
                    Ok(id) => {
                        self.inflight
                            .entry(id)
                            .or_insert(Inflight {
                                key,
                                waiting: Vec::new(),
                                in_outbox: true,
                                recipients: 0,
                            })
                            .waiting
                            .push(peer);
                        self.status.messages_sent += 1;
                    }
                    Err(error) => log::warn!("cannot resend a message: {error}"),
                }
            }
        }
        Ok(())
    }

    /// Brings back every stored group room, with its members' keys (kept
    /// with the members, or else a contact's): members who are not
    /// contacts become the node's peers, not the user's contacts. A room is
    /// never dropped here: a member whose key an older version did not
    /// keep stays a member and is reached once its key is learned again
    /// (see [`Node::restore_room`]).
    fn restore_rooms(&mut self, now: Instant) -> Result<(), DaemonError> {
        let me = self.node.peer_id();
        for room in self.db()?.rooms()? {
            let Some((admin, epoch)) = self.db()?.group(&room.id)? else {
                continue;
            };
            let stored = self.store.members(&room.id)?;
            let mut keys = Vec::with_capacity(stored.len());
            for member in stored.iter().filter(|m| m.peer != me) {
                let public = member
                    .public_key
                    .and_then(|key| PublicIdentity::from_bytes(&key).ok())
                    .filter(|public| public.peer_id() == member.peer)
                    .or_else(|| self.peers.get(&member.peer).map(|e| e.public.clone()));
                match public {
                    Some(public) => keys.push(public),
                    None => log::warn!(
                        "room {:?}: member {} cannot be reached until its key is \
                         learned again",
                        room.name,
                        member.peer.short()
                    ),
                }
            }
            let group_key = self
                .store
                .epoch_key(&room.id, u64::from(epoch))?
                .map(|key| GroupKey(*key));
            let info = RoomInfo {
                id: room.id,
                name: room.name,
                direct: None,
                admin: Some(admin),
                epoch,
                members: stored.iter().map(|m| m.peer).collect(),
                group_key,
                founding: self
                    .store
                    .room_founding(&room.id)?
                    .map(|bytes| RoomFounding::from_bytes(&bytes)),
                joined: stored
                    .iter()
                    .filter_map(|m| Some((m.peer, u32::try_from(m.joined_epoch).ok()?)))
                    .collect(),
                successor: self.store.room_successor(&room.id)?,
            };
            if let Err(error) = self.node.restore_room(now, &info, &keys) {
                // Only a room we are not a member of ends here; its rows
                // and history stay in the store.
                log::error!("cannot restore a room: {error}");
            }
        }
        Ok(())
    }

    /// Keeps the node's view of a group room in the store, with every
    /// member's public key the node knows (a key learned since the member
    /// was stored is filled in).
    fn persist_room(&mut self, room: &RoomId) -> Result<(), DaemonError> {
        // Every membership change is stored through here.
        self.members_changed = true;
        let Some(info) = self.node.room(room) else {
            return Ok(());
        };
        let Some(admin) = info.admin else {
            return Ok(());
        };
        self.db()?.upsert_room(&StoredRoom {
            id: info.id,
            name: info.name.clone(),
            created_at: wall_clock_millis(),
        })?;
        self.db()?.set_group(room, &admin, info.epoch)?;
        self.db()?
            .set_room_successor(room, info.successor.as_ref())?;
        if let Some(founding) = &info.founding {
            self.db()?.set_room_founding(room, &founding.to_bytes())?;
        }
        if let Some(key) = &info.group_key {
            self.db()?
                .put_epoch_key(room, u64::from(info.epoch), &key.0)?;
        }
        let stored = self.store.members(room)?;
        for gone in stored.iter().filter(|m| !info.members.contains(&m.peer)) {
            self.db()?.remove_member(room, &gone.peer)?;
        }
        for peer in &info.members {
            let public_key = self.node.public_of(peer).map(|p| p.to_bytes());
            match stored.iter().find(|m| m.peer == *peer) {
                None => self.db()?.set_member(
                    room,
                    Member {
                        peer: *peer,
                        joined_epoch: u64::from(
                            info.joined
                                .iter()
                                .find(|(p, _)| p == peer)
                                .map_or(info.epoch, |(_, e)| *e),
                        ),
                        public_key,
                    },
                )?,
                Some(member) if member.public_key.is_none() => {
                    if let Some(key) = public_key {
                        self.db()?.set_member_key(room, peer, &key)?;
                    }
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Resolves a peer as the user typed it: its id or public key in hex,
    /// an unambiguous hex prefix of either (at least 4 characters), or a
    /// contact's display name.
    pub(crate) fn resolve_peer(&self, text: &str) -> Result<PeerId, DaemonError> {
        let unknown = || DaemonError::UnknownPeer(text.to_owned());
        let text = text.trim();
        if let Some(id) = PeerId::from_hex(text) {
            if self.peers.contains_key(&id) {
                return Ok(id);
            }
            // A public key is 32 bytes too.
            return self
                .peers
                .iter()
                .find(|(_, entry)| entry.public.to_bytes() == id.0)
                .map(|(peer, _)| *peer)
                .or_else(|| self.discovery.public_of(&id).map(|p| p.peer_id()))
                // A room member who is not a contact (the node knows it).
                .or_else(|| {
                    (id != self.node.peer_id() && self.node.public_of(&id).is_some()).then_some(id)
                })
                .ok_or_else(unknown);
        }
        if let Some(prefix) = hex_prefix(text) {
            let matches: Vec<PeerId> = self
                .peers
                .iter()
                .filter(|(peer, entry)| {
                    peer.to_hex().starts_with(&prefix)
                        || PeerId(entry.public.to_bytes())
                            .to_hex()
                            .starts_with(&prefix)
                })
                .map(|(peer, _)| *peer)
                .collect();
            if !matches.is_empty() {
                return only_one(&matches, text, unknown);
            }
        }
        let named = self.profiles.resolve(text);
        if !named.is_empty() {
            return only_one(&named, text, unknown);
        }
        let named: Vec<PeerId> = self
            .store
            .contacts()?
            .into_iter()
            .filter(|c| c.display_name == text && self.peers.contains_key(&c.peer))
            .map(|c| c.peer)
            .collect();
        only_one(&named, text, unknown)
    }

    /// Resolves a group room: its id in hex, an unambiguous hex prefix (at
    /// least 4 characters), or its exact name.
    pub(crate) fn resolve_room(&self, text: &str) -> Result<RoomId, DaemonError> {
        let text = text.trim();
        let groups: Vec<RoomInfo> = self
            .node
            .rooms()
            .into_iter()
            .filter(|r| r.admin.is_some())
            .collect();
        let prefix = hex_prefix(text);
        let by_id: Vec<RoomId> = groups
            .iter()
            .filter(|r| names_room(prefix.as_deref(), &r.id))
            .map(|r| r.id)
            .collect();
        let by_name: Vec<RoomId> = groups
            .iter()
            .filter(|r| r.name == text)
            .map(|r| r.id)
            .collect();
        let found = if by_id.is_empty() { by_name } else { by_id };
        only_one(&found, text, || DaemonError::UnknownRoom(text.to_owned()))
    }

    /// A pending invitation by room id, hex prefix or name.
    fn resolve_invitation(&self, text: &str) -> Result<RoomId, DaemonError> {
        let text = text.trim();
        let prefix = hex_prefix(text);
        let found: Vec<RoomId> = self
            .node
            .invitations()
            .into_iter()
            .filter(|(room, name, _)| name == text || names_room(prefix.as_deref(), room))
            .map(|(room, _, _)| room)
            .collect();
        only_one(&found, text, || DaemonError::UnknownRoom(text.to_owned()))
    }

    /// A message's destination: a group room, or else a peer. A full id
    /// (what an application passes with every send) is looked up at once;
    /// anything else is matched against every room's and peer's names and
    /// id prefixes.
    fn resolve_target(&self, text: &str) -> Result<Target, DaemonError> {
        if let Some(id) = PeerId::from_hex(text.trim()) {
            let room = RoomId(id.0);
            if self.node.room(&room).is_some_and(|r| r.admin.is_some()) {
                return Ok(Target::Room(room));
            }
            if self.peers.contains_key(&id) {
                return Ok(Target::Peer(id));
            }
        }
        match self.resolve_room(text) {
            Ok(room) => Ok(Target::Room(room)),
            Err(DaemonError::Ambiguous(text)) => Err(DaemonError::Ambiguous(text)),
            Err(_) => self.resolve_peer(text).map(Target::Peer),
        }
    }

    /// Text a person typed, as an id of `kind`.
    fn resolve(&self, text: &str, kind: ResolveKind) -> Result<Target, DaemonError> {
        match kind {
            ResolveKind::Peer => self.resolve_peer(text).map(Target::Peer),
            ResolveKind::Room => self.resolve_room(text).map(Target::Room),
            ResolveKind::Target => self.resolve_target(text),
            ResolveKind::Invitation => self.resolve_invitation(text).map(Target::Room),
        }
    }

    /// Seals `text` for `to` and queues it; the stored copy is committed by
    /// [`NodeDriver::commit_sends`] with the rest of the batch. Returns its
    /// recipients.
    fn prepare_send(
        &mut self,
        now: Instant,
        to: Target,
        text: &str,
    ) -> Result<Vec<PeerId>, DaemonError> {
        match to {
            Target::Peer(peer) => {
                if !self.peers.contains_key(&peer)
                    && let Some(public) = self.discovery.public_of(&peer)
                {
                    // A peer discovery found nearby: messaging it is how we
                    // meet it.
                    self.learn_contact(now, public)?;
                }
                self.node.queue_direct_message(now, peer, text)?;
                // Writing to a stranger tells it who we are.
                self.node.share_profile(now, peer);
                Ok(vec![peer])
            }
            Target::Room(room) => {
                if self.node.room(&room).is_none_or(|r| r.admin.is_none()) {
                    return Err(DaemonError::UnknownRoom(PeerId(room.0).to_hex()));
                }
                self.node.queue_room_message(now, room, text)?;
                let me = self.node.peer_id();
                Ok(self
                    .node
                    .room(&room)
                    .map(|r| r.members.into_iter().filter(|p| *p != me).collect())
                    .unwrap_or_default())
            }
        }
    }

    /// Signs the batch's sends together (one signature for up to 32) and
    /// queues their datagrams; [`NodeDriver::commit_sends`] stores them
    /// once the datagrams are out (at `Driver::sent`).
    fn sign_sends(&mut self, now: Instant) {
        if self.unsaved_sends.is_empty() {
            return;
        }
        let sends = std::mem::take(&mut self.unsaved_sends);
        // One result per queued message, in order: the driver queues one
        // per `UnsavedSend` and signs them all here.
        let mut signed = self.node.sign_queued(now).into_iter();
        for send in sends {
            match signed.next() {
                Some(Ok(sent)) => {
                    self.status.messages_sent += 1;
                    let message = Message {
                        id: sent.id,
                        room: sent.room,
                        sender: self.node.peer_id(),
                        sender_seq: sent.seq,
                        timestamp: sent.timestamp,
                        body: send.body,
                        envelope: sent.envelope,
                    };
                    self.signed_sends.push(SignedSend {
                        message,
                        recipients: send.recipients,
                        reply: send.reply,
                    });
                }
                Some(Err(error)) => self.reply(send.reply, Err(error.into())),
                None => self.reply(
                    send.reply,
                    Err(DaemonError::NotStored(
                        "the message was not signed".to_owned(),
                    )),
                ),
            }
        }
    }

    /// Stores the signed sends (messages and the chain positions that
    /// sealed them; their outbox entries come later, see `OUTBOX_AFTER`)
    /// with one journal append, then answers their callers. Their datagrams
    /// are out before this: like a store failure, a crash in between loses
    /// only our own copy (the recipients have it, and sync brings it back),
    /// and a restored sending chain skips ahead, so no message key is used
    /// twice.
    fn commit_sends(&mut self, now: Instant) {
        self.sign_sends(now);
        if self.signed_sends.is_empty() {
            return;
        }
        let mut messages = Vec::with_capacity(self.signed_sends.len());
        let mut waiting = Vec::with_capacity(self.signed_sends.len());
        for send in std::mem::take(&mut self.signed_sends) {
            messages.push(send.message);
            waiting.push((send.recipients, send.reply));
        }
        let chains = self.node.take_chain_updates();
        let keys: Vec<MessageKey> = messages.iter().map(Message::key).collect();
        // Their `Pending` deliveries wait (see `OUTBOX_AFTER`).
        match self.journal(now, messages, chains) {
            Ok(()) => {
                for (key, (recipients, reply)) in keys.into_iter().zip(waiting) {
                    let id = key.id;
                    self.inflight.insert(
                        id,
                        Inflight {
                            key,
                            recipients: recipients.len(),
                            waiting: recipients,
                            in_outbox: false,
                        },
                    );
                    self.outbox_due.push_back((now + OUTBOX_AFTER, id));
                    self.reply(reply, Ok(Reply::Sent(id)));
                }
            }
            Err(error) => {
                let why = error.to_string();
                self.store_error("store sent messages", error);
                for (_, reply) in waiting {
                    self.reply(reply, Err(DaemonError::NotStored(why.clone())));
                }
            }
        }
    }

    fn create_room(
        &mut self,
        now: Instant,
        name: &str,
        members: &[PeerId],
    ) -> Result<RoomId, DaemonError> {
        let room = self.node.create_room(now, name, members)?;
        self.persist_room(&room)?;
        Ok(room)
    }

    fn block(&mut self, now: Instant, peer: PeerId, blocked: bool) -> Result<PeerId, DaemonError> {
        if peer == self.node.peer_id() {
            return Err(DaemonError::UnknownPeer("our own id".to_owned()));
        }
        self.discovery.set_blocked(now, peer, blocked);
        self.apply_book_actions(now);
        if blocked {
            self.db()?.block(&peer, wall_clock_millis())?;
            // Declining a request is blocking.
            self.requests.remove(&peer);
            self.db()?.set_contact_request(&peer, false)?;
        } else {
            self.db()?.unblock(&peer)?;
        }
        Ok(peer)
    }

    fn mute(&mut self, target: Target, mute: Option<Mute>) -> Result<(), DaemonError> {
        let key = match target {
            Target::Room(room) => room.0,
            Target::Peer(peer) => peer.0,
        };
        match mute {
            Some(mute) => {
                self.db()?.set_mute(&RoomId(key), mute)?;
                self.mutes.set(key, mute);
            }
            None => {
                self.db()?.clear_mute(&RoomId(key))?;
                self.mutes.clear(&key);
            }
        }
        Ok(())
    }

    /// Whether a message in `room` from `from` is muted now. Mutes that
    /// ended are forgotten on the way.
    fn is_muted(&mut self, room: &RoomId, from: &PeerId) -> bool {
        let now = wall_clock_millis();
        for ended in self.mutes.expire(now) {
            if let Err(error) = self.db().and_then(|db| db.clear_mute(&RoomId(ended))) {
                self.store_error("clear an ended mute", error);
            }
        }
        self.mutes.is_muted(&room.0, &from.0, now)
    }

    fn mute_of(&self, key: &[u8; 32]) -> Option<Mute> {
        self.mutes.get(key, wall_clock_millis())
    }

    fn rooms(&mut self) -> Vec<RoomSummary> {
        let invited = self
            .node
            .invitations()
            .into_iter()
            .map(|(id, name, from)| RoomSummary {
                id,
                name,
                direct: None,
                admin: Some(from),
                epoch: 0,
                members: Vec::new(),
                member_names: Vec::new(),
                muted: None,
                invited: true,
                unread: 0,
                unread_muted: 0,
            })
            .collect::<Vec<_>>();
        let mut rooms = self.joined_rooms();
        rooms.extend(invited);
        rooms
    }

    fn joined_rooms(&mut self) -> Vec<RoomSummary> {
        self.node
            .rooms()
            .into_iter()
            .map(|info| {
                let name = match info.direct {
                    Some(peer) => self.profiles.label(&peer),
                    None => info.name.clone(),
                };
                let unread = self.unread.get(&info.id).copied().unwrap_or_default();
                RoomSummary {
                    id: info.id,
                    name,
                    direct: info.direct,
                    admin: info.admin,
                    epoch: info.epoch,
                    member_names: info
                        .members
                        .iter()
                        .map(|p| self.profiles.label(p))
                        .collect(),
                    members: info.members,
                    muted: self.mute_of(&info.id.0),
                    invited: false,
                    unread: unread.count,
                    unread_muted: unread.muted,
                }
            })
            .collect()
    }

    /// Hands a search to the search thread (started at the first one),
    /// with the keys of the rooms it may open; the thread replies.
    fn search(
        &mut self,
        room: Option<&str>,
        query: crate::store::SearchQuery,
        reply: Sender<Result<Vec<SearchResult>, DaemonError>>,
    ) -> Result<(), DaemonError> {
        if query.text.trim().is_empty() {
            return Err(DaemonError::Search("nothing to search for".into()));
        }
        let room = match room {
            None => None,
            // A full id names any room we hold messages of, one we left too.
            Some(text) => Some(match PeerId::from_hex(text.trim()) {
                Some(id) => RoomId(id.0),
                None => match self.resolve_target(text)? {
                    Target::Room(room) => room,
                    Target::Peer(peer) => direct_room(self.node.peer_id(), peer),
                },
            }),
        };
        self.settle()?;
        if self.searcher.is_none() {
            self.searcher = Some(Searcher::start(&self.store)?);
        }
        let job = SearchJob {
            scope: self.store.search_scope(room.as_ref()),
            query,
            labels: self.profiles.labels(),
            me: self.node.peer_id(),
            reply,
        };
        if let Some(searcher) = &self.searcher {
            searcher.submit(job);
        }
        Ok(())
    }

    /// Counts `room`'s unread messages again from its read marker (at
    /// start, when the marker moved, when a mute changed) and reports a
    /// change.
    fn recount_unread(&mut self, room: RoomId) -> Result<Unread, DaemonError> {
        let me = self.node.peer_id();
        let by_sender = self
            .store
            .unread_by_sender(&room, self.read_markers.get(&room), &me)?;
        let now = wall_clock_millis();
        let room_muted = self.mutes.get(&room.0, now).is_some();
        let mut unread = Unread::default();
        for (sender, count) in by_sender {
            unread.count += count;
            if room_muted || self.mutes.get(&sender.0, now).is_some() {
                unread.muted += count;
            }
        }
        self.set_unread(room, unread);
        Ok(unread)
    }

    /// Records `room`'s unread count, with an event when it changed.
    fn set_unread(&mut self, room: RoomId, unread: Unread) {
        let old = self.unread.insert(room, unread).unwrap_or_default();
        if old != unread {
            self.publish(Event::UnreadChanged {
                room,
                unread: unread.count,
                unread_muted: unread.muted,
            });
        }
    }

    /// Moves `room`'s read marker forward to the message at `up_to` (its
    /// newest message with `None`); returns what is still unread.
    fn mark_read(&mut self, room: RoomId, up_to: Option<u64>) -> Result<u64, DaemonError> {
        if self.node.room(&room).is_none() {
            return Err(DaemonError::UnknownRoom(PeerId(room.0).to_hex()));
        }
        let position = match up_to {
            Some(cursor) => self
                .store
                .position_of(&room, cursor)?
                .ok_or(DaemonError::NotInRoom(cursor))?,
            None => match self.store.newest_in_room(&room)? {
                Some((_, position)) => position,
                None => return Ok(0),
            },
        };
        if self
            .read_markers
            .get(&room)
            .is_some_and(|marker| *marker >= position)
        {
            return Ok(self.unread.get(&room).map_or(0, |u| u.count));
        }
        self.store.set_read_marker(&room, &position)?;
        self.read_markers.insert(room, position);
        Ok(self.recount_unread(room)?.count)
    }

    /// A page of `room`'s history: the store's page, with names and, for
    /// our messages, each recipient's delivery (see [`Delivery`]).
    fn history(
        &mut self,
        room: RoomId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<HistoryPage, DaemonError> {
        if self.node.room(&room).is_none() && self.store.newest_in_room(&room)?.is_none() {
            return Err(DaemonError::UnknownRoom(PeerId(room.0).to_hex()));
        }
        let limit = limit.clamp(1, MAX_PAGE);
        let me = self.node.peer_id();
        let labels = self.profiles.labels();
        let entries = self.store.history(&room, before, limit)?;
        let next = (entries.len() == limit)
            .then(|| entries.last().map(|e| e.cursor))
            .flatten();
        let rows = entries
            .into_iter()
            .map(|entry| {
                let ours = entry.message.sender == me;
                let mut deliveries: Vec<(PeerId, Delivery)> = Vec::new();
                if ours {
                    for (peer, state) in &entry.deliveries {
                        let delivery = match state {
                            DeliveryState::Pending => Delivery::Queued,
                            DeliveryState::Delivered | DeliveryState::Read => Delivery::Stored,
                        };
                        deliveries.push((*peer, delivery));
                    }
                    // Recipients without a row yet: sent within the last
                    // second and not acknowledged (see `OUTBOX_AFTER`).
                    if let Some(inflight) = self.inflight.get(&entry.message.id) {
                        for peer in &inflight.waiting {
                            if !deliveries.iter().any(|(p, _)| p == peer) {
                                deliveries.push((*peer, Delivery::Sent));
                            }
                        }
                    }
                    deliveries.sort_by_key(|(peer, _)| *peer);
                }
                let readable = entry.readable();
                let message = entry.message;
                HistoryRow {
                    cursor: entry.cursor,
                    id: message.id,
                    author: message.sender,
                    author_name: if ours {
                        None
                    } else {
                        Some(
                            labels
                                .get(&message.sender)
                                .cloned()
                                .unwrap_or_else(|| message.sender.short()),
                        )
                    },
                    timestamp: message.timestamp,
                    text: readable.then(|| String::from_utf8_lossy(&message.body).into_owned()),
                    ours,
                    deliveries,
                }
            })
            .collect();
        Ok(HistoryPage { room, rows, next })
    }

    /// Adds a listener for every event from now on (after replaying what
    /// was stored after `since`, if given); returns its id.
    pub(crate) fn subscribe(
        &mut self,
        sink: Sink,
        since: Option<u64>,
        waker: Option<Box<dyn Fn() + Send>>,
    ) -> u64 {
        let id = self.next_subscriber;
        self.next_subscriber += 1;
        self.subscribers.push(Subscriber {
            id,
            sink,
            waker,
            replay: since.map(|since| (since, since)),
        });
        id
    }

    /// Answers a request: on its caller's channel, or in its subscriber's
    /// stream of updates.
    fn reply(&mut self, to: ReplyTo, result: Result<Reply, DaemonError>) {
        match to {
            ReplyTo::Channel(tx) => {
                // A caller that stopped waiting is not an error here.
                let _ = tx.send(result);
            }
            ReplyTo::Subscriber(id, request) => {
                if let Some(index) = self.subscribers.iter().position(|s| s.id == id) {
                    if self.subscribers[index].send(Update::Reply(request, result)) {
                        self.subscribers[index].wake();
                    } else {
                        self.subscribers.remove(index);
                    }
                }
            }
        }
    }

    /// Queues `event` for the subscribers; they get it at `Driver::sent`,
    /// after the datagrams of the same moment left (waking an
    /// application's thread first could delay an acknowledgement), and
    /// after every message received before it (reported when the journal
    /// settles).
    fn publish(&mut self, mut event: Event) {
        if self.subscribers.is_empty() {
            return;
        }
        self.profiles.name_event(&mut event);
        if self.waiting.is_empty() {
            self.unpublished.push(event);
        } else {
            // Messages received before this event are reported before it.
            self.waiting.push(Waiting::Other(event));
        }
    }

    fn deliver_events(&mut self) {
        let events = std::mem::take(&mut self.unpublished);
        if !events.is_empty() {
            self.subscribers.retain(|subscriber| {
                let mut sent = false;
                for event in &events {
                    // A subscriber catching up reads stored messages
                    // from the store, in order; their live events would
                    // repeat them or come ahead of older ones.
                    if let (Some((since, _)), Some(cursor)) = (subscriber.replay, event.cursor())
                        && cursor > since
                    {
                        continue;
                    }
                    if !subscriber.send(Update::Event(event.clone())) {
                        return false;
                    }
                    sent = true;
                }
                if sent {
                    subscriber.wake();
                }
                true
            });
        }
        self.replay_step();
    }

    /// Hands each subscriber that is catching up the next chunk of what
    /// was stored after its cursor; one that reaches the end is told
    /// ([`Update::CaughtUp`]) and from then on gets live events. Every
    /// message stored before the last chunk was read is in a chunk, every
    /// one stored after reaches it live: no gap and no repeat.
    fn replay_step(&mut self) {
        let me = self.node.peer_id();
        for index in 0..self.subscribers.len() {
            let Some((since, done_up_to)) = self.subscribers[index].replay else {
                continue;
            };
            let chunk = match self.store.stored_after(done_up_to, REPLAY_CHUNK) {
                Ok(chunk) => chunk,
                Err(error) => {
                    self.store_error("replay stored messages", error);
                    Vec::new()
                }
            };
            let finished = chunk.len() < REPLAY_CHUNK;
            let mut last = done_up_to;
            let mut updates = Vec::with_capacity(chunk.len() + 1);
            for (cursor, message) in chunk {
                last = cursor;
                // Live events report messages of others; so does the
                // replay.
                if message.sender == me {
                    continue;
                }
                let mut event = if message.body.is_empty() {
                    Event::Undecryptable {
                        room: message.room,
                        from: message.sender,
                        from_name: self.profiles.label(&message.sender),
                        id: message.id,
                        timestamp: message.timestamp,
                        cursor: 0,
                    }
                } else {
                    self.received_event(&message)
                };
                event.set_cursor(cursor);
                updates.push(Update::Event(event));
            }
            let subscriber = &mut self.subscribers[index];
            if finished {
                subscriber.replay = None;
                updates.push(Update::CaughtUp { cursor: last });
            } else {
                subscriber.replay = Some((since, last));
            }
            let mut alive = true;
            for update in updates {
                if !subscriber.send(update) {
                    alive = false;
                    break;
                }
            }
            subscriber.wake();
            if !alive {
                // Dropped at the next delivery.
                subscriber.replay = None;
            }
        }
    }

    fn store_error(&mut self, what: &str, error: impl std::fmt::Display) {
        self.status.store_errors += 1;
        log::error!("could not {what}: {error}");
    }

    /// Applies what the address book asked of the node, in order.
    fn apply_book_actions(&mut self, now: Instant) {
        while let Some(action) = self.discovery.poll_action() {
            match action {
                BookAction::Contact(public) => self.node.add_contact(now, public),
                BookAction::Probe(peer) => self.node.keepalive(now, peer),
                BookAction::Reachable(peer, reachable) => {
                    self.node.set_reachable(now, peer, reachable)
                }
                BookAction::Block(peer) => self.node.block(peer),
                BookAction::Unblock(peer) => self.node.unblock(now, peer),
            }
        }
    }

    /// Runs discovery's output: keep-alives into the node, online/offline
    /// to listeners, learned keys of stored contacts into full contacts.
    fn run_discovery(&mut self, now: Instant) {
        let events = self.discovery.drive(now);
        self.apply_book_actions(now);
        for event in events {
            match &event {
                // Whatever it missed while away, and what we missed.
                Event::PeerOnline { peer, .. } => {
                    self.syncs_due.push_back((now + SYNC_AFTER_ONLINE, *peer));
                }
                Event::PeerOffline { peer, .. } => self.sync.forget_peer(peer),
                _ => {}
            }
            self.publish(event);
        }
        for public in self.discovery.take_learned() {
            if let Err(error) = self.learn_contact(now, public) {
                self.store_error("restore a contact", error);
            }
        }
    }

    /// The room's messages of epochs from `min_epoch` on, in sync order,
    /// from the store's index.
    fn room_items(&mut self, room: &RoomId, min_epoch: u32) -> SortedItems {
        let items = self
            .db()
            .and_then(|db| db.sync_items(room, min_epoch))
            .unwrap_or_default()
            .into_iter()
            .map(|p| Item {
                timestamp: p.timestamp,
                id: p.id,
            })
            .collect();
        SortedItems::new(items)
    }

    /// The room's items for reconciliation with `peer`: only epochs both
    /// of us are in (`Node::shared_epoch`), so a member who joined later is
    /// neither offered nor asked for what was said before. Read from the
    /// store once and kept while a session about the room runs and no
    /// message of the room is stored (then it is read again: a set that
    /// misses new messages would make a member who was away miss them too).
    fn take_sync_set(&mut self, room: &RoomId, peer: &PeerId) -> (u32, SortedItems) {
        let min_epoch = self.node.shared_epoch(room, peer);
        let set = match self.sync_sets.remove(&(*room, min_epoch)) {
            Some(set) => set,
            None => self.room_items(room, min_epoch),
        };
        (min_epoch, set)
    }

    /// Starts reconciling every room shared with `peer`.
    fn sync_with(&mut self, now: Instant, peer: PeerId) {
        for room in self.node.shared_rooms(&peer) {
            let (min_epoch, set) = self.take_sync_set(&room, &peer);
            let secret = self.node.sync_secret(&peer);
            self.sync.start(now, room, peer, &set, secret);
            self.sync_sets.insert((room, min_epoch), set);
        }
        self.run_sync(now);
    }

    /// Carries out the reconciler's actions.
    fn run_sync(&mut self, now: Instant) {
        while let Some(action) = self.sync.poll_action() {
            match action {
                SyncAction::Send {
                    peer,
                    room,
                    payload,
                } => {
                    if let Err(error) = self.node.send_sync(now, peer, room, payload) {
                        log::warn!("cannot send a sync message: {error}");
                    }
                }
                SyncAction::Forward { peer, room, ids } => {
                    let wanted: HashSet<MessageId> = ids.into_iter().collect();
                    let (min_epoch, set) = self.take_sync_set(&room, &peer);
                    for item in set.as_slice() {
                        if !wanted.contains(&item.id) {
                            continue;
                        }
                        let key = MessageKey {
                            room,
                            timestamp: item.timestamp,
                            id: item.id,
                        };
                        if let Ok(Some(envelope)) = self.db().and_then(|db| db.envelope(&key))
                            && let Err(error) = self.node.forward(now, peer, &envelope)
                        {
                            log::warn!("cannot forward a message: {error}");
                        }
                    }
                    self.sync_sets.insert((room, min_epoch), set);
                }
            }
        }
        let sync = &self.sync;
        self.sync_sets.retain(|(room, _), _| sync.is_syncing(room));
    }

    /// Someone who is not a contact wrote to us: a contact request.
    fn promote(&mut self, now: Instant, peer: PeerId) {
        if self.peers.contains_key(&peer) {
            return;
        }
        let Some(public) = self
            .strangers_met
            .remove(&peer)
            .or_else(|| self.discovery.public_of(&peer))
        else {
            return;
        };
        let result = self
            .learn_contact(now, public)
            .and_then(|()| Ok(self.db()?.set_contact_request(&peer, true)?));
        if let Err(error) = result {
            self.store_error("store a contact request", error);
        }
        self.requests.insert(peer);
        self.publish(Event::ContactRequest {
            peer,
            peer_name: String::new(),
        });
    }

    fn on_room_event(&mut self, event: NodeEvent) {
        match event {
            NodeEvent::RoomInvited { room, name, from } => {
                if self.accept_invites
                    && self.peers.contains_key(&from)
                    && !self.requests.contains(&from)
                {
                    self.invitations_to_accept.push(room);
                }
                self.publish(Event::RoomInvited {
                    room,
                    name,
                    from,
                    from_name: String::new(),
                });
            }
            NodeEvent::RoomJoined { room } => {
                if let Err(error) = self.persist_room(&room) {
                    self.store_error("store a room", error);
                }
                let name = self.node.room(&room).map(|r| r.name).unwrap_or_default();
                self.publish(Event::RoomJoined { room, name });
            }
            NodeEvent::RoomChanged { room } => {
                if let Err(error) = self.persist_room(&room) {
                    self.store_error("store a room", error);
                }
                self.publish(Event::RoomChanged { room });
            }
            NodeEvent::RoomRemoved { room } => {
                self.members_changed = true;
                if let Err(error) = self.db().and_then(|db| db.leave_group(&room)) {
                    self.store_error("leave a room", error);
                }
                self.publish(Event::RoomRemoved { room });
            }
            NodeEvent::SyncReceived {
                room,
                peer,
                payload,
            } => {
                let now = Instant::now();
                let (min_epoch, set) = self.take_sync_set(&room, &peer);
                let secret = self.node.sync_secret(&peer);
                self.sync
                    .handle_message(now, room, peer, &payload, &set, secret);
                self.sync_sets.insert((room, min_epoch), set);
                self.run_sync(now);
            }
            NodeEvent::StrangerMet { public } => {
                // A request only once it writes (a presence probe is not).
                if self.strangers_met.len() >= MAX_PROVISIONAL {
                    self.strangers_met.clear();
                }
                self.discovery.learned_key(public.peer_id(), public.clone());
                self.strangers_met.insert(public.peer_id(), public);
            }
            NodeEvent::ContactLearned { public } => {
                let now = Instant::now();
                if let Err(error) = self.learn_contact(now, public) {
                    self.store_error("store a contact", error);
                }
            }
            NodeEvent::ProfileReceived {
                peer,
                seq,
                name,
                record,
            } => {
                let stored = self.settle().and_then(|()| {
                    profiles::received(&mut self.store, &mut self.profiles, peer, seq, name, record)
                });
                match stored {
                    Ok(Some(event)) => self.publish(event),
                    Ok(None) => {}
                    Err(error) => self.store_error("store a profile", error),
                }
            }
            _ => {}
        }
    }

    /// Sent messages still unacknowledged [`OUTBOX_AFTER`] after they were
    /// stored (all of them with `all`) get their `Pending` deliveries,
    /// written with this round's delivery states.
    fn enter_outbox(&mut self, now: Instant, all: bool) {
        while let Some(&(due, id)) = self.outbox_due.front() {
            if !all && due > now {
                break;
            }
            self.outbox_due.pop_front();
            if let Some(inflight) = self.inflight.get_mut(&id)
                && !inflight.in_outbox
            {
                inflight.in_outbox = true;
                for peer in &inflight.waiting {
                    self.delivery_updates
                        .push((inflight.key, *peer, DeliveryState::Pending));
                }
            }
        }
    }

    /// How many recipients a message in `room` has: its other members.
    fn recipients_of(&self, room: &RoomId) -> usize {
        let me = self.node.peer_id();
        self.node
            .room(room)
            .map_or(1, |r| r.members.iter().filter(|p| **p != me).count().max(1))
    }

    /// Messages for `peer` that wait for its acknowledgement: the stored
    /// outbox and those too recent to be in it.
    fn outbox_len(&self, peer: &PeerId) -> usize {
        // Read without settling (a listing must not cost a transaction):
        // delivery states gathered since the last settling are applied
        // here on top of the stored outbox.
        let mut outbox: HashSet<MessageId> = self
            .store
            .outbox(peer)
            .map(|keys| keys.into_iter().map(|k| k.id).collect())
            .unwrap_or_default();
        for (key, to, state) in &self.delivery_updates {
            if to != peer {
                continue;
            }
            match state {
                DeliveryState::Pending => {
                    outbox.insert(key.id);
                }
                DeliveryState::Delivered | DeliveryState::Read => {
                    outbox.remove(&key.id);
                }
            }
        }
        let recent = self
            .inflight
            .values()
            .filter(|i| !i.in_outbox && i.waiting.contains(peer))
            .count();
        outbox.len() + recent
    }

    /// Keeps unanswered invitations in the store as they come and go.
    fn save_invitations(&mut self) {
        let updates = self.node.take_invitation_updates();
        if !updates.is_empty()
            && let Err(error) = self.db().and_then(|db| db.put_invitations(&updates))
        {
            self.store_error("store invitations", error);
        }
    }

    /// Journals the sending chains' new reservations before the datagrams
    /// of the seals that asked for them leave (see
    /// `proto::node::chains::RESERVE_AHEAD`): after a crash a chain goes on
    /// from the last reservation, never from a position already handed out.
    fn save_reservations(&mut self, now: Instant) {
        let reservations = self.node.take_reservations();
        if !reservations.is_empty()
            && let Err(error) = self.journal(now, Vec::new(), reservations)
        {
            self.store_error("store chain reservations", error);
        }
    }

    /// Stores chain positions that moved outside a message round (keys
    /// received, rooms created or rekeyed).
    fn save_chains(&mut self) {
        if !self.unsaved_sends.is_empty() || !self.signed_sends.is_empty() {
            // They commit the chains with them, in one transaction.
            return;
        }
        let chains = self.node.take_chain_updates();
        if !chains.is_empty()
            && let Err(error) = self.db().and_then(|db| db.put_chains(&chains))
        {
            self.store_error("store chain state", error);
        }
        // Origins every member holds the chain of: deleted (after the
        // journal settled, so no older copy of them comes back).
        let forgotten: Vec<(ChainId, ChainRole)> = self
            .node
            .take_forgotten_origins()
            .into_iter()
            .map(|chain| (chain, ChainRole::Receiving))
            .collect();
        if !forgotten.is_empty()
            && let Err(error) = self.db().and_then(|db| db.forget_chains(&forgotten))
        {
            self.store_error("forget chain origins", error);
        }
    }

    /// Drains the node's events: commits every received message of this
    /// round in one transaction, then confirms them (which may produce more
    /// events, hence the loop).
    /// Tells discovery the members of our group rooms: with contacts, the
    /// peers it keeps alive.
    fn watch_members(&mut self, now: Instant) {
        self.members_changed = false;
        let me = self.node.peer_id();
        let members: HashSet<PeerId> = self
            .node
            .rooms()
            .into_iter()
            .filter(|room| room.direct.is_none())
            .flat_map(|room| room.members)
            .filter(|peer| *peer != me)
            .collect();
        self.discovery.set_members(now, members);
    }

    fn pump(&mut self, now: Instant) {
        if self.members_changed {
            self.watch_members(now);
        }
        if now >= self.hints_at {
            self.hints_at = now + HINTS_EVERY;
            self.profiles.set_hints(self.discovery.announced_names());
        }
        self.pump_events(now);
        for room in std::mem::take(&mut self.invitations_to_accept) {
            if let Err(error) = self.node.accept_invite(now, room) {
                log::warn!("cannot accept an invitation: {error}");
            }
            self.pump_events(now);
        }
        self.save_invitations();
        self.enter_outbox(now, false);
    }

    /// Opens what was stored unreadable of the chains whose key arrived
    /// (their author's messages overtook the key, more than the node holds
    /// back), stores the readable copies in its place and reports them.
    fn reopen_unreadable(&mut self) {
        for chain in std::mem::take(&mut self.chains_known) {
            let stored = match self
                .db()
                .and_then(|db| db.unreadable_messages(&chain.room, &chain.sender))
            {
                Ok(stored) => stored,
                Err(error) => {
                    self.store_error("read unreadable messages", error);
                    continue;
                }
            };
            let opened: Vec<Message> = stored
                .into_iter()
                .filter_map(|mut message| {
                    message.body = self.node.open_stored(&message.envelope)?;
                    Some(message)
                })
                .collect();
            if opened.is_empty() {
                continue;
            }
            // The chain positions they used are stored with the next round.
            let upgraded: HashSet<MessageId> =
                match self.db().and_then(|db| db.upgrade_unreadable(&opened)) {
                    Ok(ids) => ids.into_iter().collect(),
                    Err(error) => {
                        self.store_error("replace unreadable messages", error);
                        continue;
                    }
                };
            for message in opened.iter().filter(|m| upgraded.contains(&m.id)) {
                self.status.messages_received += 1;
                let mut event = self.received_event(message);
                if let Ok(Some(cursor)) = self
                    .store
                    .cursor_of(&message.room, &message.key().position())
                {
                    event.set_cursor(cursor);
                }
                self.publish(event);
            }
        }
    }

    /// Settles the journal and records the delivery states gathered since
    /// the last call, in one transaction.
    fn write_deliveries(&mut self) -> Result<(), StoreError> {
        let updates = std::mem::take(&mut self.delivery_updates);
        if let Err(error) = self.settle_with(&updates) {
            // Kept for the next try, ahead of those gathered since.
            let later = std::mem::replace(&mut self.delivery_updates, updates);
            self.delivery_updates.extend(later);
            return Err(error);
        }
        Ok(())
    }

    fn pump_events(&mut self, now: Instant) {
        self.run_discovery(now);
        loop {
            while let Some(event) = self.node.poll_event() {
                match event {
                    NodeEvent::MessageReceived {
                        room,
                        from,
                        id,
                        timestamp,
                        body,
                        envelope,
                        receipt,
                        ..
                    } => {
                        self.discovery.activity(now, from);
                        let message = stored(room, from, id, timestamp, body, envelope);
                        let event = self.received_event(&message);
                        self.receive(now, message, receipt, event);
                    }
                    NodeEvent::Undecryptable {
                        room,
                        from,
                        id,
                        timestamp,
                        envelope,
                        receipt,
                    } => {
                        // Stored with an empty body: the envelope is kept, so
                        // a later key can still open it.
                        let message = stored(room, from, id, timestamp, Vec::new(), envelope);
                        let event = Event::Undecryptable {
                            room,
                            from,
                            from_name: String::new(),
                            id,
                            timestamp,
                            cursor: 0,
                        };
                        self.receive(now, message, receipt, event);
                    }
                    NodeEvent::Delivered { to, id, .. } => {
                        self.discovery.activity(now, to);
                        let mut receipt = None;
                        if let Some(inflight) = self.inflight.get_mut(&id) {
                            self.delivery_updates.push((
                                inflight.key,
                                to,
                                DeliveryState::Delivered,
                            ));
                            let before = inflight.waiting.len();
                            inflight.waiting.retain(|peer| *peer != to);
                            if inflight.waiting.len() < before {
                                receipt = Some((
                                    inflight.key.room,
                                    inflight.recipients,
                                    inflight.waiting.len(),
                                ));
                            }
                            if inflight.waiting.is_empty() {
                                self.inflight.remove(&id);
                            }
                        }
                        self.status.delivered += 1;
                        self.publish(Event::Delivered {
                            to,
                            to_name: String::new(),
                            id,
                        });
                        if let Some((room, recipients, waiting)) = receipt {
                            let of = if recipients > 0 {
                                recipients
                            } else {
                                self.recipients_of(&room)
                            }
                            .max(waiting + 1);
                            self.publish(Event::Receipt {
                                room,
                                id,
                                delivered: of - waiting,
                                of,
                            });
                        }
                    }
                    NodeEvent::Undelivered { to, id, .. } => {
                        self.publish(Event::Undelivered {
                            to,
                            to_name: String::new(),
                            id,
                        });
                    }
                    NodeEvent::Refused { to, id, .. } => {
                        // Not delivered: it stays waiting for `to` (and so
                        // goes into the outbox, sent again at the next
                        // start).
                        self.status.refused += 1;
                        self.publish(Event::Refused {
                            to,
                            to_name: String::new(),
                            id,
                        });
                    }
                    NodeEvent::ChainKnown { chain } => self.chains_known.push(chain),
                    // Presence (keep-alives) decides online and offline; the
                    // reliable layer's view only paces its retransmissions.
                    NodeEvent::PeerReachable { .. } | NodeEvent::PeerUnreachable { .. } => {}
                    NodeEvent::PeerLeaving { peer } => {
                        // Authenticated by the node (sealed under the
                        // session with `peer`): show it offline now.
                        self.discovery.left(peer);
                        self.run_discovery(now);
                    }
                    other => self.on_room_event(other),
                }
            }
            if self.uncommitted.is_empty() {
                self.save_chains();
                return;
            }
            if self.deferring {
                // A burst of datagrams is under way: one transaction for
                // all of it, at `flush`.
                return;
            }
            let (messages, receipts): (Vec<Message>, Vec<Receipt>) =
                std::mem::take(&mut self.uncommitted).into_iter().unzip();
            // The chains that opened them are stored with them, so after a
            // crash neither is ahead of the other.
            let chains = self.node.take_chain_updates();
            if let Err(error) = self.journal(now, messages, chains) {
                // Not confirmed, so not acknowledged: the sender keeps the
                // messages and they are not lost. Not stored, so never
                // reported (they are reported when they come again).
                self.waiting.retain(|entry| !entry.unjournaled());
                // Events behind them go out with the next settling.
                self.settle_at.get_or_insert(now + SETTLE_AFTER);
                self.store_error("store received messages", error);
                return;
            }
            for entry in self.waiting.iter_mut().rev() {
                match entry {
                    Waiting::Message {
                        journaled: true, ..
                    } => break,
                    Waiting::Message { journaled, .. } => *journaled = true,
                    Waiting::Other(_) => {}
                }
            }
            for receipt in receipts {
                self.node.confirm_stored(now, receipt);
            }
        }
    }

    /// What subscribers hear of a readable received message.
    fn received_event(&mut self, message: &Message) -> Event {
        Event::MessageReceived {
            room: message.room,
            from: message.sender,
            from_name: self.profiles.label(&message.sender),
            id: message.id,
            timestamp: message.timestamp,
            text: String::from_utf8_lossy(&message.body).into_owned(),
            muted: self.is_muted(&message.room, &message.sender),
            // Known once it is in the database (see `settle_with`).
            cursor: 0,
        }
    }

    /// A received message for the store: journaled with the rest of its
    /// round, reported (in order with every other event) once it is in the
    /// database.
    fn receive(&mut self, now: Instant, message: Message, receipt: Receipt, mut event: Event) {
        self.profiles.name_event(&mut event);
        // Someone who is not a contact wrote: a contact request, reported
        // before the message.
        self.promote(now, message.sender);
        self.uncommitted.push((message.clone(), receipt));
        self.waiting.push(Waiting::Message {
            message,
            event,
            journaled: false,
        });
    }

    /// Makes messages (ours or received) and the chain states that sealed
    /// or opened them durable in the store's journal: no transaction before
    /// an acknowledgement or a sender's answer. They move into the database
    /// at `settle_at`, or before anything else uses the store (`db`).
    fn journal(
        &mut self,
        now: Instant,
        messages: Vec<Message>,
        chains: Vec<ChainSnapshot>,
    ) -> Result<(), StoreError> {
        // Their rooms' item sets change: a reconciliation must not go on
        // from a set read before (it would find nothing to send).
        let rooms: HashSet<RoomId> = messages.iter().map(|m| m.room).collect();
        self.sync_sets.retain(|(room, _), _| !rooms.contains(room));
        if let Err(error) = self.store.journal_messages_and_chains(messages, chains) {
            self.note_disk_full(&error);
            return Err(error);
        }
        self.settle_at.get_or_insert(now + SETTLE_AFTER);
        Ok(())
    }

    /// Remembers that the store cannot grow, if that is what `error` says.
    fn note_disk_full(&mut self, error: &StoreError) {
        if matches!(error, StoreError::DiskFull(_)) {
            self.disk_full = Some(error.to_string());
        }
    }

    /// The store, with every journaled message moved into the database
    /// first, so nothing read or written through it misses them or gets
    /// ahead of them (a chain state written after a journaled one).
    fn db(&mut self) -> Result<&mut Store, StoreError> {
        self.settle()?;
        Ok(&mut self.store)
    }

    /// Moves the journaled messages into the database in one transaction,
    /// then reports the received ones that were new (a message sent again
    /// because its acknowledgement was lost is acknowledged again but
    /// reported once).
    fn settle(&mut self) -> Result<(), StoreError> {
        self.settle_with(&[])
    }

    /// [`NodeDriver::settle`], writing `deliveries` in the same transaction.
    fn settle_with(
        &mut self,
        deliveries: &[(MessageKey, PeerId, DeliveryState)],
    ) -> Result<(), StoreError> {
        let mut fresh: HashMap<MessageId, u64> = if self.store.is_settled() && deliveries.is_empty()
        {
            HashMap::new()
        } else {
            match self.store.settle_with_cursors(deliveries) {
                Ok(ids) => ids.into_iter().collect(),
                Err(error) => {
                    // Still journaled, so still durable: try again later,
                    // later still if it keeps failing.
                    self.settle_failures = self.settle_failures.saturating_add(1);
                    self.settle_at =
                        Some(Instant::now() + settle_retry_delay(self.settle_failures));
                    self.note_disk_full(&error);
                    return Err(error);
                }
            }
        };
        self.settle_failures = 0;
        self.disk_full = None;
        // Delivery states gathered meanwhile (when this settling was not
        // theirs) keep their turn.
        self.settle_at = (!self.delivery_updates.is_empty()).then(|| Instant::now() + SETTLE_AFTER);
        if self.waiting.is_empty() {
            return Ok(());
        }
        // Messages not journaled yet (this round's) and what follows them
        // wait for the next settling.
        let ready = self
            .waiting
            .iter()
            .position(Waiting::unjournaled)
            .unwrap_or(self.waiting.len());
        let later = self.waiting.split_off(ready);
        let waiting = std::mem::replace(&mut self.waiting, later);
        let mut report = vec![false; waiting.len()];
        // A readable copy of a message we hold unreadable (forwarded to us
        // before its author's key arrived) takes its place, and is reported
        // then.
        let mut readable_again = Vec::new();
        let mut cursors = vec![0u64; waiting.len()];
        let me = self.node.peer_id();
        let mut unread_changed: Vec<RoomId> = Vec::new();
        for (index, entry) in waiting.iter().enumerate() {
            match entry {
                Waiting::Message { message, event, .. } if fresh.contains_key(&message.id) => {
                    report[index] = true;
                    cursors[index] = fresh.remove(&message.id).unwrap_or_default();
                    // A new message of someone else after the marker is
                    // unread.
                    let after_marker = self
                        .read_markers
                        .get(&message.room)
                        .is_none_or(|marker| message.key().position() > *marker);
                    if message.sender != me && after_marker {
                        let unread = self.unread.entry(message.room).or_default();
                        unread.count += 1;
                        let muted = match event {
                            Event::MessageReceived { muted, .. } => *muted,
                            _ => self.mutes.is_muted(
                                &message.room.0,
                                &message.sender.0,
                                wall_clock_millis(),
                            ),
                        };
                        if muted {
                            unread.muted += 1;
                        }
                        if !unread_changed.contains(&message.room) {
                            unread_changed.push(message.room);
                        }
                    }
                }
                Waiting::Message { message, .. } if !message.body.is_empty() => {
                    readable_again.push((index, message.clone()));
                }
                Waiting::Message { .. } => {}
                Waiting::Other(_) => report[index] = true,
            }
        }
        if !readable_again.is_empty() {
            let messages: Vec<Message> = readable_again.iter().map(|(_, m)| m.clone()).collect();
            match self.store.upgrade_unreadable(&messages) {
                Ok(ids) => {
                    let mut upgraded: HashSet<MessageId> = ids.into_iter().collect();
                    for (index, message) in readable_again {
                        report[index] = upgraded.remove(&message.id);
                        if report[index] {
                            cursors[index] = self
                                .store
                                .cursor_of(&message.room, &message.key().position())
                                .ok()
                                .flatten()
                                .unwrap_or_default();
                        }
                    }
                }
                Err(error) => self.store_error("replace unreadable messages", error),
            }
        }
        for ((entry, report), cursor) in waiting.into_iter().zip(report).zip(cursors) {
            match entry {
                Waiting::Message { mut event, .. } if report => {
                    self.status.messages_received += 1;
                    if !self.subscribers.is_empty() {
                        event.set_cursor(cursor);
                        self.unpublished.push(event);
                    }
                }
                Waiting::Other(event) => self.unpublished.push(event),
                Waiting::Message { .. } => {}
            }
        }
        if !self.subscribers.is_empty() {
            for room in unread_changed {
                let unread = self.unread.get(&room).copied().unwrap_or_default();
                self.unpublished.push(Event::UnreadChanged {
                    room,
                    unread: unread.count,
                    unread_muted: unread.muted,
                });
            }
        }
        Ok(())
    }

    /// Carries out one request and answers it (a send is answered once it
    /// is stored, at the end of its batch).
    fn handle_request(&mut self, now: Instant, request: Request, reply: ReplyTo) {
        // Reads of what lives in memory need no store; everything else
        // sees the sends before it, and every message and delivery state,
        // in the database (no transaction when nothing waits).
        let in_memory = matches!(
            request,
            Request::Send { .. }
                | Request::Peers
                | Request::Rooms
                | Request::Status
                | Request::Blocked
                | Request::Discovery
                | Request::Resolve { .. }
        );
        if !in_memory {
            self.commit_sends(now);
            if let Err(error) = self.write_deliveries() {
                self.store_error("store journaled messages and deliveries", error);
            }
        }
        if let Request::Send { to, text } = request {
            if let Some(why) = self.disk_full.clone() {
                // Refused before it goes out: a message sent and not stored
                // would be missing from our history and never sent again.
                self.reply(reply, Err(DaemonError::NotSent(why)));
                return;
            }
            match self.prepare_send(now, to, &text) {
                Ok(recipients) => {
                    for peer in &recipients {
                        self.discovery.activity(now, *peer);
                    }
                    self.unsaved_sends.push(UnsavedSend {
                        body: text.into_bytes(),
                        recipients,
                        reply,
                    });
                }
                Err(error) => self.reply(reply, Err(error)),
            }
            return;
        }
        let result = self.answer(now, request);
        self.reply(reply, result);
    }

    /// The answer to any request but a send.
    fn answer(&mut self, now: Instant, request: Request) -> Result<Reply, DaemonError> {
        Ok(match request {
            Request::Send { .. } => return Err(DaemonError::BadReply),
            Request::AddPeer(peer) => {
                self.add_peer(now, *peer)?;
                Reply::Done
            }
            Request::Peers => Reply::Peers(self.peers()),
            Request::Status => {
                let mut status = self.status.clone();
                status.node = self.node.stats().clone();
                status.sync = self.sync.stats().clone();
                Reply::Status(Box::new(status))
            }
            Request::Rooms => Reply::Rooms(self.rooms()),
            Request::CreateRoom { name, members } => {
                Reply::Room(self.create_room(now, &name, &members)?)
            }
            Request::Invite { room, peer } => {
                self.node.invite(now, room, peer)?;
                self.persist_room(&room)?;
                Reply::Done
            }
            Request::RemoveMember { room, peer } => {
                self.node.remove_member(now, room, peer)?;
                self.persist_room(&room)?;
                Reply::Done
            }
            Request::Leave { room } => {
                self.node.leave_room(now, room)?;
                self.members_changed = true;
                self.db()?.leave_group(&room)?;
                Reply::Done
            }
            Request::Block { peer, blocked } => Reply::Peer(self.block(now, peer, blocked)?),
            Request::Mute { target, mute } => {
                self.mute(target, mute)?;
                // The muted share of unread counts follows the mute.
                let rooms: Vec<RoomId> = match target {
                    Target::Room(room) => vec![room],
                    Target::Peer(_) => self
                        .unread
                        .iter()
                        .filter(|(_, u)| u.count > 0)
                        .map(|(room, _)| *room)
                        .collect(),
                };
                for room in rooms {
                    self.recount_unread(room)?;
                }
                Reply::Done
            }
            Request::Blocked => Reply::Blocked(self.store.blocked()?),
            Request::AnswerInvite { room, accept } => {
                if accept {
                    self.node.accept_invite(now, room)?;
                } else {
                    self.node.decline_invite(now, room)?;
                }
                Reply::Done
            }
            Request::Accept { peer } => {
                if !self.peers.contains_key(&peer) {
                    return Err(DaemonError::UnknownPeer(peer.to_hex()));
                }
                self.db()?.set_contact_request(&peer, false)?;
                self.requests.remove(&peer);
                self.node.share_profile(now, peer);
                Reply::Peer(peer)
            }
            Request::Discovery => Reply::Discovery(Box::new(self.discovery.report(now))),
            Request::History {
                room,
                before,
                limit,
            } => Reply::History(self.history(room, before, limit)?),
            Request::MarkRead { room, up_to } => Reply::Unread(self.mark_read(room, up_to)?),
            Request::Resolve { text, kind } => Reply::Target(self.resolve(&text, kind)?),
        })
    }

    /// The peer table: contacts, then peers found nearby; blocked ones
    /// left out.
    fn peers(&mut self) -> Vec<PeerInfo> {
        let mut peers: Vec<PeerInfo> = self
            .peers
            .iter()
            .filter(|(id, _)| !self.node.is_blocked(id))
            .map(|(id, entry)| PeerInfo {
                peer: *id,
                public: entry.public.clone(),
                addr: self.discovery.addr_of(id),
                online: self.discovery.is_online(id),
                watched: self.discovery.is_watched(id),
                outbox: self.outbox_len(id),
                contact: true,
                request: self.requests.contains(id),
                muted: self.mute_of(&id.0),
                display_name: String::new(),
                name: None,
                name_hint: None,
            })
            .collect();
        let nearby: Vec<PeerInfo> = self
            .discovery
            .nearby()
            .filter(|(id, _, _)| !self.peers.contains_key(id))
            .map(|(id, public, addr)| PeerInfo {
                peer: id,
                public,
                addr,
                online: self.discovery.is_online(&id),
                watched: self.discovery.is_watched(&id),
                outbox: 0,
                contact: false,
                request: false,
                muted: None,
                display_name: String::new(),
                name: None,
                name_hint: None,
            })
            .collect();
        peers.extend(nearby);
        self.profiles.set_hints(self.discovery.announced_names());
        for peer in &mut peers {
            peer.display_name = self.profiles.label(&peer.peer);
            peer.name = self.profiles.name(&peer.peer).map(str::to_owned);
            peer.name_hint = self.profiles.hint(&peer.peer).map(str::to_owned);
        }
        peers.sort_by_key(|p| p.peer);
        peers
    }
}

/// `text` as a lower-case hex prefix long enough (4+ characters) to name
/// an id, if it is one.
fn hex_prefix(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    (lower.len() >= 4 && lower.chars().all(|c| c.is_ascii_hexdigit())).then_some(lower)
}

fn names_room(prefix: Option<&str>, room: &RoomId) -> bool {
    prefix.is_some_and(|p| PeerId(room.0).to_hex().starts_with(p))
}

/// The single match of what the user typed, or why there is not one.
fn only_one<T: Copy>(
    found: &[T],
    text: &str,
    none: impl FnOnce() -> DaemonError,
) -> Result<T, DaemonError> {
    match found {
        [one] => Ok(*one),
        [] => Err(none()),
        _ => Err(DaemonError::Ambiguous(text.to_owned())),
    }
}

/// A received message as the store keeps it.
fn stored(
    room: crate::proto::ids::RoomId,
    from: PeerId,
    id: MessageId,
    timestamp: u64,
    body: Vec<u8>,
    envelope: Vec<u8>,
) -> Message {
    // The node surfaced this envelope after parsing and verifying it, so
    // it parses; 0 would only lose the chain position, not the message.
    let sender_seq = Envelope::parse(&envelope).map_or(0, |e| e.header.seq);
    Message {
        id,
        room,
        sender: from,
        sender_seq,
        timestamp,
        body,
        envelope,
    }
}

impl Driver for NodeDriver {
    type Command = Command;

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, _via: Via, bytes: &[u8]) {
        // Received messages wait for the end of the burst (`flush`): one
        // store transaction per burst, not per datagram. Their ACKs wait
        // with them, so "delivered" still means stored. Their signatures
        // are verified together at the end of the burst too.
        self.deferring = true;
        self.node.begin_burst();
        if is_registry_datagram(bytes) {
            let wall_ms = wall_clock_millis();
            match self
                .discovery
                .handle_registry_datagram(now, wall_ms, from, bytes)
            {
                Ok(()) => {}
                Err(RegistryDrop::NotFromRegistry) => self.status.registry_foreign_dropped += 1,
                Err(RegistryDrop::Rejected) => self.status.registry_rejected_dropped += 1,
            }
            self.apply_book_actions(now);
        } else {
            match self.node.handle_datagram(now, bytes) {
                Ok(Heard::Proven(peer)) => {
                    // Authenticated: the peer is there, at this address.
                    self.provisional.remove(&peer);
                    self.discovery.heard(now, peer, from);
                }
                Ok(Heard::Claimed(peer)) => {
                    // A handshake opening, not proven yet: its answer may
                    // go back where it came from, nothing else.
                    if self.provisional.len() >= MAX_PROVISIONAL {
                        self.provisional.clear();
                    }
                    self.provisional.insert(peer, from);
                }
                Err(_) => {}
            }
        }
        // A dropped datagram is already counted by reason in the node.
        self.pump(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.settle_at.is_some_and(|at| at <= now) {
            // `write_deliveries` settles first.
            if let Err(error) = self.write_deliveries() {
                self.store_error("store journaled messages and deliveries", error);
            }
        }
        self.node.handle_timeout(now);
        self.discovery.handle_timeout(now, wall_clock_millis());
        self.sync.handle_timeout(now);
        while let Some(&(due, peer)) = self.syncs_due.front() {
            if due > now {
                break;
            }
            self.syncs_due.pop_front();
            if self.discovery.is_online(&peer) {
                self.sync_with(now, peer);
            }
        }
        if now >= self.next_sync {
            self.next_sync = now + SYNC_INTERVAL;
            let online: Vec<PeerId> = self
                .peers
                .keys()
                .copied()
                .filter(|p| self.discovery.is_online(p))
                .collect();
            for peer in online {
                self.sync_with(now, peer);
            }
        }
        self.pump(now);
    }

    fn handle_command(&mut self, now: Instant, command: Command) {
        match command {
            Command::Request { request, reply } => self.handle_request(now, request, reply),
            Command::Subscribe {
                sink,
                since,
                waker,
                reply,
            } => {
                let id = self.subscribe(sink, since, waker);
                let _ = reply.send(id);
            }
            // The events are drained by `pump` below.
            Command::DiscoveryWake => {}
            Command::AttachDiscovery(attach) => {
                self.discovery.attach(now, wall_clock_millis(), *attach)
            }
            Command::Search {
                text,
                room,
                before,
                limit,
                reply,
            } => {
                let query = crate::store::SearchQuery {
                    text,
                    before,
                    limit,
                };
                if let Err(error) = self.search(room.as_deref(), query, reply.clone()) {
                    let _ = reply.send(Err(error));
                }
            }
            Command::SetProfile { name, reply } => {
                let result = self.settle().map_err(DaemonError::from).and_then(|()| {
                    profiles::set_own(
                        now,
                        &name,
                        &mut self.node,
                        &mut self.store,
                        &mut self.profiles,
                    )
                });
                let _ = reply.send(result.map(|event| {
                    if let Some(event) = event {
                        self.publish(event);
                    }
                }));
            }
        }
        self.pump(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some((addr, bytes)) = self.discovery.poll_transmit() {
            return Some(Transmit {
                to: Destination::Addr(addr),
                bytes,
            });
        }
        loop {
            let transmit = self.node.poll_transmit()?;
            let addr = match transmit.to {
                reliable::Destination::Peer(peer) => self
                    .discovery
                    .addr_of(&peer)
                    .or_else(|| self.provisional.get(&peer).copied()),
                reliable::Destination::Group(_) => {
                    // One multicast group for every room: members of other
                    // rooms drop the frame at the first check.
                    return Some(Transmit {
                        to: Destination::Group,
                        bytes: transmit.bytes,
                    });
                }
            };
            match addr {
                Some(addr) => {
                    return Some(Transmit {
                        to: Destination::Addr(addr),
                        bytes: transmit.bytes,
                    });
                }
                None => self.status.unroutable += 1,
            }
        }
    }

    fn flush(&mut self, now: Instant) {
        self.sign_sends(now);
        self.save_reservations(now);
        self.node.end_burst(now);
        self.deferring = false;
        self.pump(now);
    }

    /// Our sends are journaled and answered and the application hears
    /// what happened: none of it delays a datagram or an acknowledgement.
    /// Delivery states are written with the next settling, so neither the
    /// "delivered" a sender's application waits for nor its next send
    /// waits for a transaction.
    fn sent(&mut self, now: Instant) {
        self.commit_sends(now);
        if self.uncommitted.is_empty() {
            // It reads the store, so it waits for the acknowledgements.
            self.reopen_unreadable();
        }
        self.deliver_events();
        if !self.delivery_updates.is_empty() {
            self.settle_at.get_or_insert(now + SETTLE_AFTER);
        }
    }

    /// Says goodbye: the registry forgets us, and every online peer gets
    /// a sealed "leaving" so it shows us offline at once, not after its
    /// keep-alive bound (the mDNS goodbye alone is unauthenticated, so a
    /// peer that heard from us lately rightly ignores it).
    fn stopping(&mut self, now: Instant) {
        self.discovery.stopping();
        for peer in self.discovery.online_peers() {
            self.node.leaving(now, peer);
        }
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        [
            self.outbox_due.front().map(|(due, _)| *due),
            self.syncs_due.front().map(|(due, _)| *due),
            self.settle_at,
            self.node.poll_timeout(),
            self.discovery.poll_timeout(),
            self.sync.poll_timeout(),
            Some(self.next_sync),
            // A subscriber catching up gets its next chunk at the next turn.
            self.subscribers
                .iter()
                .any(|s| s.replay.is_some())
                .then(Instant::now),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}
