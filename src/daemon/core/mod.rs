//! The daemon's decisions, sans IO: a state machine over the [`Node`] and
//! the [`Store`] that takes datagrams, timeouts, requests and sightings,
//! each with the time ([`Now`]), and yields datagrams
//! ([`DaemonCore::poll_transmit`]), its next timer
//! ([`DaemonCore::poll_timeout`]) and events and replies for subscribers
//! ([`DaemonCore::poll_output`]).
//!
//! Guarantees:
//! - It reads no clock: every input carries [`Now`], so a simulator drives
//!   it in virtual time and one seed gives one run.
//! - It touches no socket or channel: what leaves does so through `poll_*`
//!   (the store is the one thing it writes itself).
//! - Run-loop contract: after each input drain `poll_transmit`, then call
//!   [`DaemonCore::sent`], drain again, then `poll_output`; sleep until
//!   `poll_timeout`.
//!
//! Its parts, one responsibility a file: [`restore`] (start from the store,
//! contacts, rooms), [`names`] (what a person typed, contacts, blocks,
//! mutes), [`outbox`] (sends, acknowledgements, the stored outbox),
//! [`journal`] (received messages: journal, settle, report), [`sync`]
//! (when to reconcile with whom), [`history`] (rooms, pages, search,
//! replay), [`unread`] (read markers and unread counts), [`events`] (what
//! the node and the address book report), [`requests`] (answering a
//! request).

mod events;
mod files;
mod history;
mod journal;
mod names;
mod outbox;
mod requests;
mod restore;
mod sync;
mod unread;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::address_book::{
    AddressBook, Attach, BookAction, DiscoveryConfig, RegistryDrop, is_registry_datagram,
};
use super::api::{
    Delivery, HistoryPage, HistoryRow, MAX_PAGE, Reply, ReplyTo, Request, ResolveKind, Target,
};
use super::clock::Now;
use super::mutes::MuteTable;
use super::profiles::{self, ProfileBook};
use super::search::{SearchJob, SearchResult};
use super::{DaemonError, Event, PeerAddr, PeerInfo, RoomSummary, Status};
use crate::account::Account;
use crate::net::{Destination, Transmit};
use crate::proto::crypto::{ChainId, ChainRole, ChainSnapshot};
use crate::proto::crypto::{Envelope, Identity, PublicIdentity};
use crate::proto::ids::{MessageId, PeerId, RoomId};
use crate::proto::node::{
    GroupKey, Heard, Node, NodeConfig, NodeError, NodeEvent, Receipt, RoomFounding, RoomInfo,
    direct_room,
};
use crate::proto::reliable;
use crate::proto::sync::{
    Item, SortedItems, SyncAction, SyncManager, SyncManagerConfig, SyncStats,
};
use crate::store::{
    Contact, DeliveryState, Member, Message, MessageKey, Mute, Position, Room as StoredRoom, Store,
    StoreError,
};

use events::MAX_PROVISIONAL;
pub(crate) use files::{FileJob, FileJobDone};
// The simulator's tests step around these two delays.
#[cfg(any(test, feature = "sim"))]
pub(crate) use journal::SETTLE_AFTER;
use journal::{Journal, stored};
#[cfg(any(test, feature = "sim"))]
pub(crate) use outbox::OUTBOX_AFTER;
use outbox::{Outbox, SignedSend, UnsavedSend};
use restore::PeerEntry;
use sync::Reconciliation;
use unread::{RoomUnread, Unread};

/// What the core hands its shell besides datagrams.
pub(crate) enum Output {
    /// An event for every subscriber. Events come out at
    /// [`DaemonCore::sent`], after the datagrams of the same moment, so
    /// telling an application never delays an acknowledgement.
    Event(Event),
    /// The answer to a request, for whoever asked.
    Reply(ReplyTo, Result<Reply, DaemonError>),
    /// Work to run off the network thread; its result comes back through
    /// [`DaemonCore::handle_file_job_done`].
    Job(FileJob),
}

/// Everything the daemon decides, over the node and the store; driven by
/// an IO shell (the network loop's [`super::driver::NodeDriver`], or a
/// simulator) that hands it every input with the time.
pub(crate) struct DaemonCore {
    node: Node,
    store: Store,
    peers: BTreeMap<PeerId, PeerEntry>,
    /// Our messages waiting for acknowledgements, and the delivery states
    /// to write with the next settling.
    outbox: Outbox,
    /// Muted rooms and peers (by their 32-byte id).
    mutes: MuteTable,
    /// Read markers and unread counts, kept up to date so listing rooms
    /// costs no query.
    unread: Unread,
    /// Events for the subscribers, handed out at [`DaemonCore::sent`].
    unpublished: Vec<Event>,
    status: Status,
    /// Address book and presence: mDNS, registry, keep-alives.
    discovery: AddressBook,
    /// History reconciliation with members: sessions and schedule.
    sync: Reconciliation,
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
    /// Peers that opened a session with us without being contacts, until
    /// they write (then they are requests). Bounded.
    strangers_met: HashMap<PeerId, PublicIdentity>,
    /// Sends of this batch of commands, signed together by
    /// [`DaemonCore::sign_sends`].
    unsaved_sends: Vec<UnsavedSend>,
    /// Signed sends whose datagrams are queued, stored by
    /// [`DaemonCore::commit_sends`] once they are out.
    signed_sends: Vec<SignedSend>,
    /// Received messages on their way into the store, and when the
    /// journal settles.
    journal: Journal,
    /// Chains whose key arrived: what was stored unreadable of them is
    /// opened once this round's messages are stored and its datagrams out.
    chains_known: Vec<ChainId>,
    /// A group room's members may have changed: discovery is told at the
    /// next pump who to keep alive (see [`DaemonCore::watch_members`]).
    members_changed: bool,
    /// Display names: signed profiles, mDNS hints, labels.
    profiles: ProfileBook,
    /// When the mDNS names are next taken as hints.
    hints_at: Instant,
    /// Whether anyone listens: events are only made for listeners.
    listening: bool,
    /// Events and replies for the shell, oldest first.
    outputs: VecDeque<Output>,
    /// The time of the input being handled, read once by the shell.
    clock: Now,
    /// File sharing: fetches under way, chunks to serve.
    files: files::Files,
}

impl DaemonCore {
    /// A datagram from `from`. Untrusted; a drop is counted where it is
    /// decided (the node, the registry link).
    pub(crate) fn handle_datagram(&mut self, now: Now, from: SocketAddr, bytes: &[u8]) {
        self.clock = now;
        let wall_ms = now.wall_ms;
        let now = now.mono;
        // Received messages wait for the end of the burst (`end_burst`):
        // one store transaction per burst, not per datagram. Their ACKs
        // wait with them, so "delivered" still means stored. Their
        // signatures are verified together at the end of the burst too.
        self.journal.deferring = true;
        self.node.begin_burst();
        if is_registry_datagram(bytes) {
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

    /// The instant of [`DaemonCore::poll_timeout`] came (or any later one).
    pub(crate) fn handle_timeout(&mut self, now: Now) {
        self.clock = now;
        let wall_ms = now.wall_ms;
        let now = now.mono;
        if self.journal.settle_due(now) {
            // `write_deliveries` settles first.
            if let Err(error) = self.write_deliveries() {
                self.store_error("store journaled messages and deliveries", error);
            }
        }
        self.node.handle_timeout(now);
        self.discovery.handle_timeout(now, wall_ms);
        self.sync_timers(now);
        self.files_timeout(now);
        self.pump(now);
    }

    /// Something outside changed what the core should look at (mDNS
    /// queued sightings, a subscriber came): runs one pump.
    pub(crate) fn handle_wake(&mut self, now: Now) {
        self.clock = now;
        self.pump(now.mono);
    }

    /// The socket is bound: start using mDNS and the registry.
    pub(crate) fn handle_attach(&mut self, now: Now, attach: Attach) {
        self.clock = now;
        self.discovery.attach(now.mono, now.wall_ms, attach);
        self.pump(now.mono);
    }

    /// Chooses our display name (signed, stored, shared).
    pub(crate) fn handle_set_profile(&mut self, now: Now, name: &str) -> Result<(), DaemonError> {
        self.clock = now;
        let result = self.settle().map_err(DaemonError::from).and_then(|()| {
            profiles::set_own(
                now.mono,
                name,
                &mut self.node,
                &mut self.store,
                &mut self.profiles,
            )
        });
        let result = result.map(|event| {
            if let Some(event) = event {
                self.publish(event);
            }
        });
        self.pump(now.mono);
        result
    }

    /// A burst of datagrams (or a batch of requests) ended: the batch's
    /// sends are signed together, its received messages journaled
    /// together.
    pub(crate) fn end_burst(&mut self, now: Now) {
        self.clock = now;
        let now = now.mono;
        self.sign_sends(now);
        self.save_reservations(now);
        self.node.end_burst(now);
        self.journal.deferring = false;
        self.pump(now);
    }

    /// The datagrams taken so far left: our sends are journaled and
    /// answered and the events of this moment come out through
    /// [`DaemonCore::poll_output`]; none of it delays a datagram or an
    /// acknowledgement. Delivery states are written with the next
    /// settling, so neither the "delivered" a sender's application waits
    /// for nor its next send waits for a transaction.
    pub(crate) fn sent(&mut self, now: Now) {
        self.clock = now;
        let now = now.mono;
        self.commit_sends(now);
        if !self.journal.has_uncommitted() {
            // It reads the store, so it waits for the acknowledgements.
            self.reopen_unreadable();
        }
        for event in std::mem::take(&mut self.unpublished) {
            self.outputs.push_back(Output::Event(event));
        }
        if !self.outbox.deliveries.is_empty() {
            self.journal.schedule(now);
        }
    }

    /// Says goodbye: the registry forgets us, and every online peer gets
    /// a sealed "leaving" so it shows us offline at once, not after its
    /// keep-alive bound (the mDNS goodbye alone is unauthenticated, so a
    /// peer that heard from us lately rightly ignores it).
    pub(crate) fn stopping(&mut self, now: Now) {
        self.clock = now;
        self.discovery.stopping();
        self.stop_shares();
        for peer in self.discovery.online_peers() {
            self.node.leaving(now.mono, peer);
        }
    }

    /// The next datagram to send. Peers are addressed where the address
    /// book (or, for a handshake answer, the unproven source) says; one
    /// with no address is counted as unroutable.
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some((addr, bytes)) = self.discovery.poll_transmit() {
            return Some(Transmit {
                to: Destination::Addr(addr),
                bytes,
            });
        }
        if self.journal.withholds_datagrams() {
            // Sealed past a reservation not stored yet (see
            // `save_reservations`): nothing leaves until it is.
            return None;
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

    /// When [`DaemonCore::handle_timeout`] is due next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        [
            self.outbox.next_due(),
            self.journal.settle_at(),
            self.node.poll_timeout(),
            self.discovery.poll_timeout(),
            self.sync.poll_timeout(),
            self.files.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next event or reply for the shell to hand out.
    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Whether anyone listens to events (none are made otherwise).
    pub(crate) fn set_listening(&mut self, listening: bool) {
        self.listening = listening;
    }

    /// The store, for a reader on another thread (search) to open its own
    /// connection from.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The simulator's way into the store (to fill its disk).
    #[cfg(any(test, feature = "sim"))]
    pub(crate) fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// The node, read-only, for the simulator's checks of its insides
    /// (sessions, group keys, successors, chain origins).
    #[cfg(any(test, feature = "sim"))]
    pub(crate) fn node(&self) -> &Node {
        &self.node
    }

    /// Answers a request: for its caller, through [`Output::Reply`].
    fn reply(&mut self, to: ReplyTo, result: Result<Reply, DaemonError>) {
        self.outputs.push_back(Output::Reply(to, result));
    }

    /// Queues `event` for the subscribers; they get it at `sent`, after
    /// the datagrams of the same moment left (waking an application's
    /// thread first could delay an acknowledgement), and after every
    /// message received before it (reported when the journal settles).
    fn publish(&mut self, mut event: Event) {
        if !self.listening {
            return;
        }
        self.profiles.name_event(&mut event);
        // Messages received before this event are reported before it.
        if let Some(event) = self.journal.queue_behind(event) {
            self.unpublished.push(event);
        }
    }
}
