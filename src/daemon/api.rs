//! The non-blocking interface a UI (or any event loop) uses: typed
//! [`Request`]s in, [`Update`]s out on one channel.
//!
//! ```text
//!  let sub = handle.subscribe(SubscribeOptions { waker: Some(Box::new(move || ctx.request_repaint())), since: None })?;
//!  let id = sub.request(Request::Rooms)?;            // returns at once
//!  ... later, on the UI thread (after the waker fired):
//!  while let Some(update) = sub.try_recv() {
//!      match update {
//!          Update::Event(event) => state.apply(event),
//!          Update::Reply(rid, Ok(Reply::Rooms(rooms))) if rid == id => state.rooms = rooms,
//!          Update::Reply(rid, Err(error)) => state.error(rid, error),
//!          Update::CaughtUp { cursor } => state.live_from(cursor),
//!          _ => {}
//!      }
//!  }
//! ```
//!
//! Guarantees:
//! - **Never blocks.** [`Subscription::request`](super::Subscription::request) only queues the request
//!   and wakes the network thread; the answer comes back as
//!   [`Update::Reply`] with the [`RequestId`] it returned, in the same
//!   channel as the events, so one `try_recv` loop sees both in order.
//! - **Woken, not polled.** The waker given at subscribe time is called
//!   (on the network thread: keep it short, e.g. `request_repaint`) after
//!   each batch of updates was queued.
//! - **Typed.** Requests carry ids ([`RoomId`], [`PeerId`]); text typed by
//!   a person (names, hex prefixes) is turned into ids by
//!   [`Request::Resolve`] at the edge (the CLI, the control socket).
//! - **Cheap reads.** `Rooms`, `Peers`, `Status`, `Blocked`, `Discovery`
//!   never settle the store's journal (no transaction); `Rooms` (with its
//!   unread counts, kept up to date in memory) and `Status` touch no SQL at
//!   all, so asking every second costs next to nothing.
//! - **Catching up.** With [`SubscribeOptions::since`], every message
//!   stored after that cursor is replayed first (as `MessageReceived` /
//!   `Undecryptable` events, each with its cursor), then
//!   [`Update::CaughtUp`], then live events: no gap and no repeat.

use std::path::PathBuf;

use super::files::{FileEntry, FileInfo, FileRef};
use super::{DaemonError, DiscoveryReport, Event, PeerAddr, PeerInfo, RoomSummary, Status};
use crate::proto::ids::{MessageId, PeerId, RoomId};
use crate::store::Mute;

/// Where a message goes, or what a mute applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Peer(PeerId),
    Room(RoomId),
}

/// What text typed by a person should name (see [`Request::Resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveKind {
    /// A peer: id or public key in hex, an unambiguous hex prefix (4+
    /// characters) of either, or a contact's name.
    Peer,
    /// A group room we are in: id, unambiguous hex prefix, or exact name.
    Room,
    /// A room, or else a peer (what `kith send --to` takes).
    Target,
    /// A pending invitation: room id, prefix or name.
    Invitation,
}

/// The id of one request, unique within its [`Subscription`](super::Subscription).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// What can be asked of the daemon. Each is answered by one
/// [`Reply`] (or an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Sends `text`; answered with [`Reply::Sent`] once it is queued and
    /// stored.
    Send { to: Target, text: String },
    /// Creates a group room with us as admin; [`Reply::Room`].
    CreateRoom { name: String, members: Vec<PeerId> },
    /// Adds `peer` to `room` (we must be its admin); [`Reply::Done`].
    Invite { room: RoomId, peer: PeerId },
    /// Removes `peer` from `room` (we must be its admin); [`Reply::Done`].
    RemoveMember { room: RoomId, peer: PeerId },
    /// Leaves `room`; [`Reply::Done`].
    Leave { room: RoomId },
    /// Accepts or declines an invitation; [`Reply::Done`].
    AnswerInvite { room: RoomId, accept: bool },
    /// Blocks or unblocks `peer` (persists); [`Reply::Peer`].
    Block { peer: PeerId, blocked: bool },
    /// Mutes until `mute` ends, or unmutes with `None`; [`Reply::Done`].
    Mute { target: Target, mute: Option<Mute> },
    /// Accepts a contact request; [`Reply::Peer`].
    Accept { peer: PeerId },
    /// Adds (or re-addresses) a peer; [`Reply::Done`].
    AddPeer(Box<PeerAddr>),
    /// [`Reply::Peers`].
    Peers,
    /// [`Reply::Rooms`], with unread counts.
    Rooms,
    /// [`Reply::Blocked`].
    Blocked,
    /// [`Reply::Status`] (the socket loop's counters are filled in only by
    /// [`super::DaemonHandle::status`]).
    Status,
    /// [`Reply::Discovery`].
    Discovery,
    /// A page of `room`'s history, newest first, older than the message at
    /// cursor `before` (the newest page with `None`); at most `limit` rows
    /// (capped at [`MAX_PAGE`]). [`Reply::History`].
    History {
        room: RoomId,
        before: Option<u64>,
        limit: usize,
    },
    /// Marks `room` read up to the message at cursor `up_to` (its newest
    /// message with `None`). Markers only move forward. [`Reply::Unread`]
    /// with what is still unread.
    MarkRead { room: RoomId, up_to: Option<u64> },
    /// Turns text typed by a person into an id; [`Reply::Target`].
    Resolve { text: String, kind: ResolveKind },
    /// Shares the file at `path` with `to`: it is read, hashed and
    /// encrypted into the store on the daemon's file thread (other
    /// requests and traffic are served meanwhile), then offered in a file
    /// message; [`Reply::Sent`] with the message's id once that is done
    /// (about a second per 350 MB in release). A file that changes while
    /// it is read, a full disk or a daemon stopping meanwhile give
    /// [`DaemonError::File`]/[`DaemonError::Store`] and post nothing.
    ShareFile {
        to: Target,
        path: PathBuf,
        caption: Option<String>,
    },
    /// Fetches a shared file into directory `to_dir`; [`Reply::Done`] once
    /// it started. [`Event::FileProgress`], then [`Event::FileComplete`]
    /// (with the path of the copy) or [`Event::FileFailed`] follow.
    FetchFile { file: FileRef, to_dir: PathBuf },
    /// The files offered in `room`, oldest first; [`Reply::Files`].
    Files { room: RoomId },
    /// How one file stands; [`Reply::Files`] with its one entry.
    File { file: FileRef },
}

/// Most rows one history page holds.
pub const MAX_PAGE: usize = 1000;

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Done,
    Sent(MessageId),
    Room(RoomId),
    Peer(PeerId),
    Target(Target),
    Peers(Vec<PeerInfo>),
    Rooms(Vec<RoomSummary>),
    Blocked(Vec<PeerId>),
    Status(Box<Status>),
    Discovery(Box<DiscoveryReport>),
    History(HistoryPage),
    /// Unread messages left in the room after a [`Request::MarkRead`].
    Unread(u64),
    /// The files of a room ([`Request::Files`]).
    Files(Vec<FileEntry>),
}

/// What a [`Subscription`](super::Subscription) receives.
#[derive(Debug)]
pub enum Update {
    /// Something happened.
    Event(Event),
    /// The answer to a request made with [`Subscription::request`](super::Subscription::request).
    Reply(RequestId, Result<Reply, DaemonError>),
    /// The replay asked for with [`SubscribeOptions::since`] is complete:
    /// `cursor` is the last one replayed (or the `since` given, when
    /// nothing was stored after it); live events follow.
    CaughtUp { cursor: u64 },
}

/// How the delivery of one of our messages to one recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Handed to the network, not acknowledged yet (within its first
    /// second; then it is `Queued` until acknowledged).
    Sent,
    /// In the stored outbox: sent again until the recipient acknowledges
    /// it, also after a restart.
    Queued,
    /// The recipient stored it.
    Stored,
}

impl Delivery {
    /// `sent`, `queued` or `stored` (the JSON and CLI word).
    pub fn word(self) -> &'static str {
        match self {
            Delivery::Sent => "sent",
            Delivery::Queued => "queued",
            Delivery::Stored => "stored",
        }
    }
}

/// One message of a history page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// Its place in the store: `before` for the next page, `up_to` for
    /// [`Request::MarkRead`], `since` for catching up.
    pub cursor: u64,
    pub id: MessageId,
    pub author: PeerId,
    /// The author's display name as known today (`None`: not known, or us).
    pub author_name: Option<String>,
    /// Hybrid-logical-clock timestamp (see [`crate::proto::hlc`]); the
    /// milliseconds since the Unix epoch are `timestamp >> 16`
    /// ([`HistoryRow::millis`]).
    pub timestamp: u64,
    /// The text; `None` when the message is stored unreadable (its
    /// author's key has not arrived, or never will).
    pub text: Option<String>,
    /// For a file message, what it offers (then `text` is its caption, ""
    /// when it has none); `None` for text.
    pub file: Option<FileInfo>,
    /// Whether we wrote it.
    pub ours: bool,
    /// For our messages: each recipient and how far it got, by peer id.
    pub deliveries: Vec<(PeerId, Delivery)>,
}

impl HistoryRow {
    /// When it was written, in milliseconds since the Unix epoch.
    pub fn millis(&self) -> u64 {
        crate::proto::hlc::millis(self.timestamp)
    }

    /// "Delivered to k of n": how many recipients stored our message.
    pub fn delivered(&self) -> (usize, usize) {
        let stored = self
            .deliveries
            .iter()
            .filter(|(_, d)| *d == Delivery::Stored)
            .count();
        (stored, self.deliveries.len())
    }
}

/// A page of a room's history, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    pub room: RoomId,
    pub rows: Vec<HistoryRow>,
    /// The `before` cursor for the next (older) page; `None` at the start
    /// of the room.
    pub next: Option<u64>,
}

/// How to subscribe (see [`super::DaemonHandle::subscribe`]).
#[derive(Default)]
pub struct SubscribeOptions {
    /// Called on the network thread after updates were queued; keep it
    /// short and non-blocking (e.g. `egui::Context::request_repaint`).
    pub waker: Option<Box<dyn Fn() + Send>>,
    /// Replay every message stored after this cursor before going live
    /// (0: everything stored).
    pub since: Option<u64>,
}

/// Where the driver sends a reply.
pub(crate) enum ReplyTo {
    /// A caller waiting on a channel (the blocking helpers).
    Channel(std::sync::mpsc::Sender<Result<Reply, DaemonError>>),
    /// A subscription: as [`Update::Reply`].
    Subscriber(u64, RequestId),
}
