//! The headless daemon: the library handle a device integrates, and the IO
//! shell that joins the sans-IO [`Node`](crate::proto::node::Node) to the
//! network loop and the encrypted store.
//!
//! ```text
//!  DaemonHandle ──Command──▶ kith-net thread: NodeDriver { Node, Store }
//!       ▲                         │ datagrams ▲ timers
//!       └──── Event channel ◀─────┘           │
//!  kith-control thread (Unix socket, 0600) ───┘ commands from `kith send` & co.
//! ```
//!
//! Guarantees:
//! - **Stored before acknowledged.** A received message is committed to the
//!   store before the node is told to acknowledge it, so a sender's
//!   "delivered" always means the message survives a crash of the receiver.
//!   All messages surfaced by one network input are committed in one
//!   transaction.
//! - **Sent messages survive a restart.** Every message we send is stored
//!   with a `Pending` delivery per recipient, set to `Delivered` when the
//!   recipient acknowledges it. At start the outbox goes out again as the
//!   very envelopes stored, after the chains they were sealed on were
//!   restored and handed out again (see `ARCHITECTURE.md`).
//! - **Chains commit with messages.** The node's chain positions are stored
//!   in the same transaction as the messages that moved them, so a restart
//!   neither reuses a message key nor loses one it needs.
//! - **One owner.** Only the `kith-net` thread touches the node and the
//!   store; callers talk to it through commands with bounded waits.
//! - **Found, then proven.** Peers come from the static table
//!   ([`DaemonConfig::peers`], [`DaemonHandle::add_peer`]), from mDNS and
//!   from the registry ([`DiscoveryConfig`]); only contacts and members of
//!   our rooms are kept alive (others are only nearby); such a peer is
//!   online only after a datagram from it authenticated, offline after the
//!   configured number of missed keep-alives (see [`discovery`]).
//! - **Histories converge.** Shared rooms are reconciled with a member when
//!   it comes online and every minute; what one side lacks is forwarded.
//!
//! Limits: see the daemon section of `ARCHITECTURE.md`.

pub mod address_book;
pub mod api;
mod calls;
mod clock;
mod command;
pub mod control;
mod core;
mod driver;
mod event;
mod file_jobs;
pub mod files;
pub mod json;
pub mod mutes;
mod profiles;
pub mod search;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
mod status;
mod subscription;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, Sender};

use std::time::Duration;

use crate::account::{Account, AccountError};
use crate::net::{self, NetConfig, NetError, NetHandle};
use crate::proto::crypto::PublicIdentity;
use crate::proto::ids::{MessageId, PeerId, RoomId};
use crate::proto::node::{NodeConfig, NodeError};
use crate::store::{Mute, StoreError};

pub use address_book::{DiscoveryConfig, DiscoveryReport, RegistryTarget};
use api::ReplyTo;
pub use api::{
    Delivery, HistoryPage, HistoryRow, Reply, Request, RequestId, ResolveKind, SubscribeOptions,
    Target, Update,
};
use command::{Command, Sink};
use driver::NodeDriver;
pub use event::{Event, json_escape};
pub use files::{FileEntry, FileHash, FileInfo, FileRef, FileState};
pub use search::SearchResult;
pub use status::{FileStats, Status};
pub use subscription::Subscription;

pub(crate) use calls::{SHARE_TIMEOUT, ask_within};
use calls::{ask, request, search_request, subscribe, wait_for};
pub(crate) use status::status;

/// How long a caller waits for the network thread to answer a command. The
/// thread answers within one loop turn; this only guards against a stalled
/// or dead loop.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a caller waits for a search: it opens every message it looks
/// at, on its own thread (a search that is slow is not a stalled loop).
const SEARCH_TIMEOUT: Duration = Duration::from_secs(120);

/// How the daemon runs.
#[derive(Debug, Clone, Default)]
pub struct DaemonConfig {
    /// Sockets: default `0.0.0.0:47474`, multicast off.
    pub net: NetConfig,
    /// The node's tunables. `wall_clock_millis` is set from the system
    /// clock at start.
    pub node: NodeConfig,
    /// Peers known at start, with the address to reach each one.
    pub peers: Vec<PeerAddr>,
    /// Whether to serve the local control socket ([`control::SOCKET_FILE`]
    /// in the data directory) for the `kith` CLI. Off by default for
    /// library use; `kith daemon` turns it on.
    pub control_socket: bool,
    /// Limits of the control socket: connections, idle time.
    pub control: control::ControlConfig,
    /// mDNS, the registry and presence timings.
    pub discovery: DiscoveryConfig,
}

/// A peer's public key and where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    pub public: PublicIdentity,
    pub addr: SocketAddr,
}

impl FromStr for PeerAddr {
    type Err = DaemonError;

    /// Parses `PUBKEYHEX@IP:PORT`, the form `kith daemon --peer` takes.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || DaemonError::BadPeer(text.to_owned());
        let (key, addr) = text.split_once('@').ok_or_else(bad)?;
        let key = PeerId::from_hex(key.trim()).ok_or_else(bad)?;
        let public = PublicIdentity::from_bytes(&key.0).map_err(|_| bad())?;
        let addr = addr.trim().parse().map_err(|_| bad())?;
        Ok(PeerAddr { public, addr })
    }
}

/// Why the daemon could not do something, as a sentence for the user.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("network: {0}")]
    Net(#[from] NetError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("{0} is not a peer of this daemon")]
    UnknownPeer(String),
    #[error("{0} is not a room of this daemon")]
    UnknownRoom(String),
    #[error("{0:?} matches more than one peer or room; give more of the id")]
    Ambiguous(String),
    #[error("{0:?} is not PUBLICKEYHEX@IP:PORT")]
    BadPeer(String),
    #[error("the message is not valid UTF-8 text")]
    NotText,
    #[error("message too long: at most {0} bytes of text")]
    MessageTooLong(usize),
    #[error("the request is not valid UTF-8")]
    RequestNotText,
    #[error("line too long: at most {0} bytes")]
    LineTooLong(usize),
    #[error("too many control connections (at most {0}); try again when one has closed")]
    TooManyConnections(usize),
    #[error("no complete request within {} ms; closing", .0.as_millis())]
    Idle(Duration),
    #[error("unknown control request {0:?}")]
    UnknownRequest(String),
    #[error("the daemon did not answer in time")]
    NotResponding,
    #[error("the daemon has stopped")]
    Stopped,
    #[error("cannot open the control socket {0}: {1}")]
    ControlSocket(PathBuf, std::io::Error),
    #[error("{0} is blocked")]
    Blocked(String),
    #[error("discovery: {0}")]
    Discovery(String),
    /// The message went out but storing it failed: it is not in the
    /// history yet. The daemon keeps it and stores it once the store
    /// takes it again (space freed); if it stops first, it is lost to our
    /// history and not sent again (the recipients may have it).
    #[error("the message was sent but could not be stored: {0}")]
    NotStored(String),
    /// The message was refused before it went out, because the store
    /// cannot take it (a full disk); nothing of it was sent or stored.
    #[error("the message was not sent: {0}")]
    NotSent(String),
    /// A search that cannot run (empty text, or the search thread is gone).
    #[error("search: {0}")]
    Search(String),
    /// A file could not be shared or fetched (why, as a sentence).
    #[error("file: {0}")]
    File(String),
    /// A cursor that names no message of the room asked about.
    #[error("cursor {0} is not a message of that room")]
    NotInRoom(u64),
    /// The daemon answered with something else than was asked (a bug).
    #[error("the daemon gave an unexpected answer")]
    BadReply,
}

/// A peer as the daemon sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub peer: PeerId,
    pub public: PublicIdentity,
    /// Where datagrams to it go (`None`: not found yet).
    pub addr: Option<SocketAddr>,
    /// Whether it has answered us and not been reported unreachable since.
    pub online: bool,
    /// Whether presence keeps it alive (a contact or a member of one of our
    /// rooms). A peer that is not is only *nearby*: known from discovery,
    /// never probed, neither online nor offline.
    pub watched: bool,
    /// Our messages it has not acknowledged yet.
    pub outbox: usize,
    /// A contact; `false` for a peer discovery found nearby that we have
    /// not exchanged a message with (sending to it makes it a contact).
    pub contact: bool,
    /// A contact that wrote first and is not accepted yet.
    pub request: bool,
    /// Muted, and until when.
    pub muted: Option<Mute>,
    /// How it is shown: its signed name (with an id suffix when another
    /// known peer has the same one), else `~` and its mDNS name with the
    /// suffix, else its short id.
    pub display_name: String,
    /// The name from its signed profile, if one arrived.
    pub name: Option<String>,
    /// The name it announced by mDNS: only a hint, anyone can announce any.
    pub name_hint: Option<String>,
}

/// A room as `kith rooms` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSummary {
    pub id: RoomId,
    /// A group's name, or the contact's name for a direct room.
    pub name: String,
    /// For a direct room, the other peer.
    pub direct: Option<PeerId>,
    /// For a group, who runs it.
    pub admin: Option<PeerId>,
    pub epoch: u32,
    /// Every member, us included (empty for an invitation).
    pub members: Vec<PeerId>,
    /// How each of `members` is shown (see [`PeerInfo::display_name`]).
    pub member_names: Vec<String>,
    /// Muted, and until when.
    pub muted: Option<Mute>,
    /// An invitation not answered yet (`admin` is who invited us).
    pub invited: bool,
    /// Messages from others after our read marker.
    pub unread: u64,
    /// Of `unread`, those in a muted room or from a muted sender (counted
    /// but flagged: not to be notified).
    pub unread_muted: u64,
}

/// A running daemon. Dropping it stops the network loop and the control
/// socket without waiting or checkpointing; call [`DaemonHandle::shutdown`]
/// for a clean stop.
pub struct DaemonHandle {
    net: NetHandle<NodeDriver>,
    control: Option<control::ControlServer>,
    stop_tx: Sender<()>,
    stop_rx: Receiver<()>,
    /// Subscribed before the loop started, so the first [`DaemonHandle::events`]
    /// misses nothing.
    first_events: Mutex<Option<Receiver<Event>>>,
    public: PublicIdentity,
    data_dir: PathBuf,
    /// Full 64-hex targets already resolved (an id keeps its meaning), so
    /// a device sending many messages to one id pays for the lookup once.
    resolved: Mutex<HashMap<String, Target>>,
    /// Our signed profile's name when the daemon started (the desktop app
    /// shows it for accounts made with `kith init --name`).
    own_name: Option<String>,
}

/// Asks a daemon to stop from another thread (a signal watcher, the control
/// socket's `stop`); [`DaemonHandle::wait_for_stop`] returns.
#[derive(Clone)]
pub struct StopRequester(Sender<()>);

impl StopRequester {
    /// Requests the stop; does nothing if the daemon is already gone.
    pub fn request_stop(&self) {
        // Fails only if the handle is gone, and then there is nothing to stop.
        let _ = self.0.send(());
    }
}

/// Opens the account in `data_dir`, starts the network loop and (if
/// configured) the control socket.
pub fn start(
    data_dir: &Path,
    passphrase: &str,
    config: DaemonConfig,
) -> Result<DaemonHandle, DaemonError> {
    let account = Account::open(data_dir, passphrase)?;
    let public = account.identity.public();
    let mut config = config;
    let own_name = account
        .store
        .profile(&public.peer_id())?
        .map(|own| own.name);
    // mDNS announces our display name unless told another.
    if config.discovery.display_name.is_empty()
        && let Some(own) = &own_name
    {
        config.discovery.display_name = own.clone();
    }
    // Group rooms use the multicast group when there is one.
    config.node.group_multicast |= config.net.multicast_enabled();
    let discovery = config.discovery.clone();
    let mut driver = NodeDriver::new(
        account,
        config.node,
        &config.peers,
        config.discovery,
        clock::Now::read(),
    )?;
    let (events_tx, events_rx) = mpsc::channel();
    driver.subscribe(Sink::Events(events_tx), None, None);
    let net = net::spawn(config.net, driver)?;
    // mDNS announces our port, known only now that the socket is bound.
    let commands = net.sender();
    let wake = Box::new(move || {
        // Fails only once the loop has stopped; nobody to wake then.
        let _ = commands.send(Command::DiscoveryWake);
    });
    let attach = address_book::prepare(&discovery, &public, net.local_addr(), wake)?;
    net.send(Command::AttachDiscovery(Box::new(attach)))?;
    // Shared files are read on a worker that hands its results back here.
    net.send(Command::AttachFileJobs(net.sender()))?;
    let (stop_tx, stop_rx) = mpsc::channel();
    let mut handle = DaemonHandle {
        net,
        control: None,
        stop_tx,
        stop_rx,
        first_events: Mutex::new(Some(events_rx)),
        public,
        data_dir: data_dir.to_owned(),
        resolved: Mutex::new(HashMap::new()),
        own_name,
    };
    if config.control_socket {
        let server = control::ControlServer::start(
            data_dir,
            config.control,
            handle.net.sender(),
            handle.stop_requester(),
            handle.net.shared_stats(),
            handle.public.peer_id(),
        )?;
        handle.control = Some(server);
    }
    Ok(handle)
}

impl DaemonHandle {
    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.public.peer_id()
    }

    /// Our public key (what peers pass to `--peer`).
    pub fn public(&self) -> &PublicIdentity {
        &self.public
    }

    /// The unicast address peers send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.net.local_addr()
    }

    /// CPU time the daemon's network thread (node, store, sockets) has
    /// used so far, if the platform can tell.
    pub fn network_cpu_time(&self) -> Option<std::time::Duration> {
        self.net.thread_cpu_time()
    }

    /// Our signed profile's name when the daemon started, if we chose one.
    pub fn own_name(&self) -> Option<&str> {
        self.own_name.as_deref()
    }

    /// The data directory this daemon serves.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Sends `text` to `to` (a peer id, or a peer's public key read as an
    /// id). Returns once the message is queued and stored.
    pub fn send(&self, to: PeerId, text: &str) -> Result<MessageId, DaemonError> {
        // An id, or a public key read as one.
        let to = self.resolve_cached(&to.to_hex(), ResolveKind::Peer)?;
        self.submit(to, text)?.wait()
    }

    /// Sends `text` to every member of group `room`.
    pub fn send_room(&self, room: RoomId, text: &str) -> Result<MessageId, DaemonError> {
        self.submit(Target::Room(room), text)?.wait()
    }

    /// Sends `text` to a peer or group room named as a user would: an id,
    /// a public key, an unambiguous hex prefix, or a name.
    pub fn send_to(&self, to: &str, text: &str) -> Result<MessageId, DaemonError> {
        self.submit_to(to, text)?.wait()
    }

    /// Like [`DaemonHandle::send_to`] without waiting: the answer comes
    /// through the returned [`PendingSend`]. A device that sends many
    /// messages keeps several under way; the daemon seals and sends each at
    /// once and stores a burst of them in one transaction.
    pub fn submit_to(&self, to: &str, text: &str) -> Result<PendingSend, DaemonError> {
        let target = self.resolve_cached(to, ResolveKind::Target)?;
        self.submit(target, text)
    }

    /// [`DaemonHandle::resolve`], remembering full 64-hex ids.
    fn resolve_cached(&self, text: &str, kind: ResolveKind) -> Result<Target, DaemonError> {
        let full = PeerId::from_hex(text.trim()).is_some();
        let key = format!("{kind:?} {}", text.trim().to_ascii_lowercase());
        // A poisoned lock only means a panic elsewhere; the map is valid.
        let cache = || {
            self.resolved
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if full && let Some(target) = cache().get(&key) {
            return Ok(*target);
        }
        let target = self.resolve(text, kind)?;
        if full {
            cache().insert(key, target);
        }
        Ok(target)
    }

    /// Queues `text` for `to` without waiting; see [`DaemonHandle::submit_to`].
    pub fn submit(&self, to: Target, text: &str) -> Result<PendingSend, DaemonError> {
        let (reply, rx) = mpsc::channel();
        self.net.sender().send(Command::Request {
            request: Request::Send {
                to,
                text: text.to_owned(),
            },
            reply: ReplyTo::Channel(reply),
        })?;
        Ok(PendingSend(rx))
    }

    /// Turns text a person typed (an id, a public key, a hex prefix, a
    /// name) into an id of `kind`.
    pub fn resolve(&self, text: &str, kind: ResolveKind) -> Result<Target, DaemonError> {
        match self.ask(Request::Resolve {
            text: text.to_owned(),
            kind,
        })? {
            Reply::Target(target) => Ok(target),
            _ => Err(DaemonError::BadReply),
        }
    }

    /// Creates a group room with us as admin and invites `members`.
    pub fn create_room(&self, name: &str, members: &[PeerId]) -> Result<RoomId, DaemonError> {
        match self.ask(Request::CreateRoom {
            name: name.to_owned(),
            members: members.to_vec(),
        })? {
            Reply::Room(room) => Ok(room),
            _ => Err(DaemonError::BadReply),
        }
    }

    /// Adds `peer` to group `room` (we must be its admin).
    pub fn invite(&self, room: RoomId, peer: PeerId) -> Result<(), DaemonError> {
        self.ask(Request::Invite { room, peer }).map(drop)
    }

    /// Removes `peer` from group `room` (we must be its admin).
    pub fn remove_member(&self, room: RoomId, peer: PeerId) -> Result<(), DaemonError> {
        self.ask(Request::RemoveMember { room, peer }).map(drop)
    }

    /// Accepts (`true`) or declines an invitation to `room`.
    pub fn answer_invite(&self, room: RoomId, accept: bool) -> Result<(), DaemonError> {
        self.ask(Request::AnswerInvite { room, accept }).map(drop)
    }

    /// Leaves group `room`.
    pub fn leave(&self, room: RoomId) -> Result<(), DaemonError> {
        self.ask(Request::Leave { room }).map(drop)
    }

    /// Every room: group rooms and direct chats, with unread counts.
    /// Answered from memory: cheap to ask every second.
    pub fn rooms(&self) -> Result<Vec<RoomSummary>, DaemonError> {
        match self.ask(Request::Rooms)? {
            Reply::Rooms(rooms) => Ok(rooms),
            _ => Err(DaemonError::BadReply),
        }
    }

    /// A page of `room`'s history, newest first in (timestamp, id) order:
    /// up to `limit` messages older than the one at cursor `before` (the
    /// newest with `None`). Pass the page's `next` as `before` for the
    /// page after.
    pub fn history(
        &self,
        room: RoomId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<HistoryPage, DaemonError> {
        match self.ask(Request::History {
            room,
            before,
            limit,
        })? {
            Reply::History(page) => Ok(page),
            _ => Err(DaemonError::BadReply),
        }
    }

    /// Marks `room` read up to the message at cursor `up_to` (its newest
    /// message with `None`); persists. Returns what is still unread.
    pub fn mark_read(&self, room: RoomId, up_to: Option<u64>) -> Result<u64, DaemonError> {
        match self.ask(Request::MarkRead { room, up_to })? {
            Reply::Unread(unread) => Ok(unread),
            _ => Err(DaemonError::BadReply),
        }
    }

    /// Blocks (or with `false` unblocks) `peer`: it is never shown, probed
    /// or answered, and its datagrams are dropped before any cryptography.
    /// Persists.
    pub fn block(&self, peer: PeerId, blocked: bool) -> Result<(), DaemonError> {
        self.ask(Request::Block { peer, blocked }).map(drop)
    }

    /// Mutes a room or a peer (`target` as for [`DaemonHandle::send_to`])
    /// until `mute` ends, or unmutes it with `None`. Persists.
    pub fn mute(&self, target: &str, mute: Option<Mute>) -> Result<(), DaemonError> {
        let target = self.resolve(target, ResolveKind::Target)?;
        self.ask(Request::Mute { target, mute }).map(drop)
    }

    /// Adds (or re-addresses) a peer and queues its outbox.
    pub fn add_peer(&self, public: PublicIdentity, addr: SocketAddr) -> Result<(), DaemonError> {
        self.ask(Request::AddPeer(Box::new(PeerAddr { public, addr })))
            .map(drop)
    }

    /// The peer table.
    pub fn peers(&self) -> Result<Vec<PeerInfo>, DaemonError> {
        match self.ask(Request::Peers)? {
            Reply::Peers(peers) => Ok(peers),
            _ => Err(DaemonError::BadReply),
        }
    }

    /// What discovery sees: interfaces, peers, registry state.
    pub fn discovery(&self) -> Result<DiscoveryReport, DaemonError> {
        match self.ask(Request::Discovery)? {
            Reply::Discovery(report) => Ok(*report),
            _ => Err(DaemonError::BadReply),
        }
    }

    /// Accepts a contact request.
    pub fn accept(&self, peer: PeerId) -> Result<(), DaemonError> {
        self.ask(Request::Accept { peer }).map(drop)
    }

    /// The peers we blocked.
    pub fn blocked(&self) -> Result<Vec<PeerId>, DaemonError> {
        match self.ask(Request::Blocked)? {
            Reply::Blocked(peers) => Ok(peers),
            _ => Err(DaemonError::BadReply),
        }
    }

    /// Chooses our display name (1 to 64 characters after trimming; no
    /// control, bidi or invisible characters): signed, stored, and sent to
    /// every contact and room member (to those away when they are back).
    pub fn set_profile(&self, name: &str) -> Result<(), DaemonError> {
        request(&self.net.sender(), |reply| Command::SetProfile {
            name: name.to_owned(),
            reply,
        })?
    }

    /// The newest 50 messages (in every room, or only `room`) whose text
    /// holds `text`, ignoring case; newest first. See
    /// [`DaemonHandle::search_page`] for the next pages.
    pub fn search(
        &self,
        text: &str,
        room: Option<RoomId>,
    ) -> Result<Vec<SearchResult>, DaemonError> {
        self.search_page(text, room, None, 50)
    }

    /// Up to `limit` (at most [`crate::store::MAX_SEARCH_LIMIT`]) messages
    /// whose text holds `text`, strictly older than `before` (the last
    /// result's [`SearchResult::cursor`]). Texts are sealed per room, so a
    /// search opens every message it looks at; it runs on its own thread,
    /// never on the network loop. Messages stored unreadable are never
    /// found, nor anything of a room sent after we left it (we never got
    /// it), while what we could read there is.
    pub fn search_page(
        &self,
        text: &str,
        room: Option<RoomId>,
        before: Option<crate::store::Position>,
        limit: usize,
    ) -> Result<Vec<SearchResult>, DaemonError> {
        self.search_client().search_page(text, room, before, limit)
    }

    /// A handle for searching from another thread: a window runs its
    /// searches (which may take a while) beside its other requests.
    pub fn search_client(&self) -> SearchClient {
        SearchClient(self.net.sender())
    }

    /// Counters.
    pub fn status(&self) -> Result<Status, DaemonError> {
        status(&self.net.sender(), &self.net.shared_stats())
    }

    /// Shares the file at `path` with `to` (a room, or a peer's direct
    /// chat), with an optional caption. Returns the file message's id once
    /// the file is in the store and the message is queued.
    pub fn share_file(
        &self,
        to: Target,
        path: &Path,
        caption: Option<&str>,
    ) -> Result<MessageId, DaemonError> {
        let request = Request::ShareFile {
            to,
            path: path.to_owned(),
            caption: caption.map(str::to_owned),
        };
        // Reading and encrypting a large file takes a while (about a
        // second for the largest): waited for longer than `ask` waits.
        match ask_within(&self.net.sender(), request, SHARE_TIMEOUT)? {
            Reply::Sent(id) => Ok(id),
            _ => Err(DaemonError::BadReply),
        }
    }

    /// Starts fetching a shared file into directory `to_dir`;
    /// [`Event::FileComplete`] or [`Event::FileFailed`] tells how it ended.
    pub fn fetch_file(&self, file: FileRef, to_dir: &Path) -> Result<(), DaemonError> {
        match self.ask(Request::FetchFile {
            file,
            to_dir: to_dir.to_owned(),
        })? {
            Reply::Done => Ok(()),
            _ => Err(DaemonError::BadReply),
        }
    }

    /// The files offered in `room`, oldest first, with how each stands.
    pub fn files(&self, room: RoomId) -> Result<Vec<FileEntry>, DaemonError> {
        match self.ask(Request::Files { room })? {
            Reply::Files(files) => Ok(files),
            _ => Err(DaemonError::BadReply),
        }
    }

    /// Asks `request` and waits (bounded) for its answer: the blocking
    /// form of [`Subscription::request`].
    pub fn ask(&self, request: Request) -> Result<Reply, DaemonError> {
        ask(&self.net.sender(), request)
    }

    /// A stream of events: the first call gets every event since start,
    /// later calls every event from then on. Any number may be open.
    pub fn events(&self) -> Result<Receiver<Event>, DaemonError> {
        // A poisoned lock only means another caller panicked while taking
        // the receiver; the Option inside is still valid.
        let first = self
            .first_events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(rx) = first {
            return Ok(rx);
        }
        let (tx, rx) = mpsc::channel();
        // Waits until the subscription is in place: the network thread may
        // take datagrams before commands, and an event of something the
        // caller does next must not be published before it is.
        subscribe(&self.net.sender(), Sink::Events(tx), None, None)?;
        Ok(rx)
    }

    /// Subscribes to [`Update`]s: events, the replies to requests made
    /// with [`Subscription::request`], and (with
    /// [`SubscribeOptions::since`]) a replay of what was stored after a
    /// cursor first. Returns once the subscription is in place, so the
    /// events of anything done afterwards reach it. The waker, if any, is
    /// called on the network thread after each batch of updates.
    pub fn subscribe(&self, options: SubscribeOptions) -> Result<Subscription, DaemonError> {
        let (tx, rx) = mpsc::channel();
        let sender = self.net.sender();
        let id = subscribe(&sender, Sink::Updates(tx), options.since, options.waker)?;
        Ok(Subscription {
            id,
            updates: rx,
            commands: sender,
            next_request: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// [`DaemonHandle::subscribe`] with a waker and no replay: what a UI
    /// wants (`waker` is typically `move || ctx.request_repaint()`).
    pub fn subscribe_with_waker(
        &self,
        waker: Box<dyn Fn() + Send>,
    ) -> Result<Subscription, DaemonError> {
        self.subscribe(SubscribeOptions {
            waker: Some(waker),
            since: None,
        })
    }

    /// A handle other threads can use to ask for a stop.
    pub fn stop_requester(&self) -> StopRequester {
        StopRequester(self.stop_tx.clone())
    }

    /// Blocks until a stop is requested (control socket `stop`, or a
    /// [`StopRequester`]).
    pub fn wait_for_stop(&self) {
        // `self` holds a sender, so this returns only on a request.
        let _ = self.stop_rx.recv();
    }

    /// Stops the control socket and the loop (handling every command sent
    /// before), then checkpoints the store.
    pub fn shutdown(mut self) -> Result<(), DaemonError> {
        if let Some(control) = self.control.take() {
            control.stop();
        }
        let shutdown = self.net.shutdown()?;
        shutdown.driver.flush(clock::Now::read())?;
        match shutdown.error {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }
}

/// Searches from any thread (see [`DaemonHandle::search_client`]); a
/// search fails with an error once the daemon has stopped.
#[derive(Clone)]
pub struct SearchClient(net::CommandSender<Command>);

impl SearchClient {
    /// [`DaemonHandle::search_page`], from this thread.
    pub fn search_page(
        &self,
        text: &str,
        room: Option<RoomId>,
        before: Option<crate::store::Position>,
        limit: usize,
    ) -> Result<Vec<SearchResult>, DaemonError> {
        search_request(
            &self.0,
            text.to_owned(),
            room.map(|r| PeerId(r.0).to_hex()),
            before,
            limit,
        )
    }
}

/// A message handed to the daemon by [`DaemonHandle::submit_to`].
pub struct PendingSend(Receiver<Result<Reply, DaemonError>>);

impl PendingSend {
    /// Waits (bounded) until the message is queued and stored; its id.
    pub fn wait(self) -> Result<MessageId, DaemonError> {
        match wait_for(&self.0, REPLY_TIMEOUT)?? {
            Reply::Sent(id) => Ok(id),
            _ => Err(DaemonError::BadReply),
        }
    }
}
