//! Everything the main window shows, as plain data.
//!
//! [`AppState`] is changed only by [`AppState::apply`] (an [`Update`] from
//! the node) and [`AppState::handle_intent`] (an [`Intent`] from the
//! user, which returns the [`Request`]s to send to the node). No egui
//! types, no IO, no clock reads: the time comes in as [`Update::Tick`], so
//! every rule here (badges, mute expiry, name suffixes, receipts) is
//! unit-tested without a window.

use crate::proto::ids::{MessageId, PeerId, RoomId};
use crate::proto::node::direct_room;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

// Desktop notifications and message search: their own files, so that the
// rules stay apart from the rest of the window's.
pub mod links;
mod notify;
mod search;
pub use notify::{NOTIFY_QUIET_MILLIS, Notification, Notifications};
pub use search::{SEARCH_LIMIT, Search, SearchHit, snippet};

/// Milliseconds since the Unix epoch (wall clock).
pub type Millis = u64;

/// How long a toast stays.
pub const TOAST_MILLIS: Millis = 6_000;
/// Messages asked for per history page.
pub const HISTORY_PAGE: usize = 50;

/// Until when something is muted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MuteUntil {
    /// Until this wall-clock time.
    Until(Millis),
    /// Until unmuted.
    Forever,
}

impl MuteUntil {
    /// Whether the mute still holds at `now`.
    pub fn active(&self, now: Millis) -> bool {
        match self {
            MuteUntil::Until(end) => now < *end,
            MuteUntil::Forever => true,
        }
    }
}

/// The durations the Mute ▸ menu offers; `None` is "until I unmute".
pub const MUTE_CHOICES: [(&str, Option<Millis>); 5] = [
    ("15 minutes", Some(15 * 60_000)),
    ("1 hour", Some(3_600_000)),
    ("8 hours", Some(8 * 3_600_000)),
    ("1 week", Some(7 * 24 * 3_600_000)),
    ("Until I unmute", None),
];

/// A room or a person, as mute and the context menu address them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    Room(RoomId),
    Peer(PeerId),
}

/// What we know of a room (a group or a direct chat).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomInfo {
    pub id: RoomId,
    /// A group's name (a direct chat is named after the person).
    pub name: String,
    /// For a direct chat, the other person.
    pub direct: Option<PeerId>,
    pub admin: Option<PeerId>,
    /// Every member, us included.
    pub members: Vec<PeerId>,
    pub muted: Option<MuteUntil>,
    /// An invitation not answered yet.
    pub invited: bool,
}

/// A person as the node reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonInfo {
    pub id: PeerId,
    /// The public key, hex (for Verify).
    pub public_key: String,
    /// The announced display name, or empty.
    pub name: String,
    pub relation: Relation,
    pub online: bool,
    /// When we last heard from them (wall clock), if ever.
    pub last_seen: Option<Millis>,
    pub muted: Option<MuteUntil>,
}

/// How a person relates to us.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Relation {
    Contact,
    /// Wrote to us first; not accepted yet.
    Request,
    /// Found on the network; nothing exchanged yet.
    Nearby,
}

/// A message that came from the node (live or from history).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageInfo {
    pub room: RoomId,
    pub from: PeerId,
    pub id: MessageId,
    pub timestamp: Millis,
    /// The hybrid-logical-clock timestamp it was written with (0: not
    /// known): orders messages written within the same millisecond.
    pub hlc: u64,
    pub text: String,
    /// Where the node stored it (pages and read markers go by it); `None`
    /// when not known.
    pub cursor: Option<u64>,
    /// For our own message from history: each recipient and how far it
    /// got. `None` for others' messages.
    pub deliveries: Option<Vec<(PeerId, RowDelivery)>>,
}

pub use crate::daemon::api::Delivery as RowDelivery;

/// Shown for a message stored unreadable (its key never arrived).
pub const UNREADABLE: &str = "(unreadable message)";

/// Everything the node tells the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// The wall clock moved on (mute expiry, toast fading).
    Tick {
        now: Millis,
    },
    /// Every room, replacing the list (activity and unread counts kept).
    Rooms(Vec<RoomInfo>),
    /// Every person known, replacing the list.
    People(Vec<PersonInfo>),
    /// The peers we blocked.
    Blocked(Vec<PeerId>),
    /// A message arrived. `muted`: the room or sender is muted, so it is
    /// neither counted nor notified.
    Received {
        message: MessageInfo,
        muted: bool,
    },
    /// A page of older messages of `room` (any order: they are merged by
    /// time and id, repeats dropped); `complete`: there is nothing older.
    History {
        room: RoomId,
        messages: Vec<MessageInfo>,
        complete: bool,
    },
    /// Our message `local` was stored and handed to the network as `id`.
    Sent {
        local: u64,
        id: MessageId,
    },
    /// Our message `local` could not be sent.
    SendFailed {
        local: u64,
        error: String,
    },
    /// `to` stored our message `id`.
    Delivered {
        to: PeerId,
        id: MessageId,
    },
    /// Our message `id` is stored by `delivered` of its `of` recipients.
    Receipt {
        id: MessageId,
        delivered: usize,
        of: usize,
    },
    /// The node's unread count of `room` (read markers it keeps): from
    /// then on the node's counts replace the window's own.
    Unread {
        room: RoomId,
        unread: usize,
    },
    /// The node gave up on delivering `id` to `to` for now; it stays queued.
    Undelivered {
        to: PeerId,
        id: MessageId,
    },
    PeerOnline {
        peer: PeerId,
    },
    PeerOffline {
        peer: PeerId,
    },
    /// An admin invites us to a room.
    Invited {
        room: RoomId,
        name: String,
        from: PeerId,
    },
    /// A room we created (open it).
    RoomCreated {
        room: RoomId,
        name: String,
    },
    /// The room's admin removed us.
    Removed {
        room: RoomId,
    },
    /// Someone new wrote to us.
    ContactRequest {
        peer: PeerId,
    },
    /// Something failed: a sentence for the user.
    Error(String),
    /// Something worth a short note (not an error).
    Info(String),
    /// Settings (see the settings block below).
    Settings(SettingsUpdate),
    /// The answer to search number `seq`: the hits, newest first, or why
    /// it failed.
    SearchAnswer {
        seq: u64,
        answer: Result<Vec<SearchHit>, String>,
    },
}

/// What the user asked for, as the views report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intent {
    OpenRoom(RoomId),
    /// Open (or start) the direct chat with a person.
    Message(PeerId),
    /// Send the composer's text to the open room.
    Send(String),
    /// Mute for this long (`None`: until unmuted).
    Mute(Target, Option<Millis>),
    Unmute(Target),
    Block(PeerId),
    Unblock(PeerId),
    AcceptRequest(PeerId),
    /// Decline a contact request (which blocks, as `kith decline` does).
    DeclineRequest(PeerId),
    AnswerInvite {
        room: RoomId,
        accept: bool,
    },
    Leave(RoomId),
    Remove {
        room: RoomId,
        peer: PeerId,
    },
    OpenDialog(Dialog),
    CloseDialog,
    CreateRoom {
        name: String,
        members: Vec<PeerId>,
    },
    AddToRoom {
        room: RoomId,
        peers: Vec<PeerId>,
    },
    /// The top of the open room's history is visible: load the page before.
    LoadOlder,
    DismissToast(u64),
    /// Settings (see the settings block below).
    Settings(SettingsIntent),
    /// Show the search panel over a room (`None`: every room).
    OpenSearch(Option<RoomId>),
    CloseSearch,
    /// Search message text in a room (`None`: every room).
    Search {
        text: String,
        room: Option<RoomId>,
    },
    /// The next page of the search's results.
    MoreResults,
    /// Open a search result's room at its message.
    OpenHit {
        room: RoomId,
        id: MessageId,
    },
}

/// What the app asks the node for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Send to a person (direct chat); answered by `Sent` or `SendFailed`.
    SendDirect {
        local: u64,
        peer: PeerId,
        text: String,
    },
    /// Send to a group room; answered by `Sent` or `SendFailed`.
    SendRoom {
        local: u64,
        room: RoomId,
        text: String,
    },
    CreateRoom {
        name: String,
        members: Vec<PeerId>,
    },
    Invite {
        room: RoomId,
        peer: PeerId,
    },
    Remove {
        room: RoomId,
        peer: PeerId,
    },
    Leave {
        room: RoomId,
    },
    AnswerInvite {
        room: RoomId,
        accept: bool,
    },
    Mute {
        target: Target,
        until: Option<MuteUntil>,
    },
    Block {
        peer: PeerId,
        blocked: bool,
    },
    Accept {
        peer: PeerId,
    },
    /// Everything in `room` up to the message at cursor `up_to` (all of
    /// it when `None`) has been seen.
    MarkRead {
        room: RoomId,
        up_to: Option<u64>,
    },
    /// A page of at most `limit` messages older than the one at cursor
    /// `before` (the newest page when `None`).
    LoadHistory {
        room: RoomId,
        before: Option<u64>,
        limit: usize,
    },
    /// Rooms, people and blocked peers again.
    Refresh,
    /// Settings (see the settings block below).
    Settings(SettingsRequest),
    /// Messages whose text holds `text` (in `room`, or every room), newest
    /// first; answered by `SearchAnswer` with the same `seq`.
    Search {
        seq: u64,
        text: String,
        room: Option<RoomId>,
        /// Only results older than this (the last one shown): the next page.
        before: Option<crate::store::Position>,
        limit: usize,
    },
}

/// The one dialog that may be open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dialog {
    NewRoom,
    AddToRoom(RoomId),
    /// Safety number with a person.
    Verify(PeerId),
    /// Who we are, and the safety number with a pasted key.
    Me,
    /// A room's members and settings.
    Details(RoomId),
    /// The app's settings: name, interfaces, theme.
    Settings,
}

/// A room as the sidebar shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Room {
    pub info: RoomInfo,
    /// When the last message was written (0: none seen).
    pub last_activity: Millis,
    /// Who wrote the last message, and its first line.
    pub preview: Option<(PeerId, String)>,
    /// Unread messages not muted when they arrived.
    pub unread: usize,
    /// We were removed: the history stays, sending is impossible.
    pub removed: bool,
    /// Who invited us (for an invitation).
    pub invited_by: Option<PeerId>,
}

/// A person as the sidebar shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    pub info: PersonInfo,
    pub blocked: bool,
}

/// How far one of our messages got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Not yet stored by our node.
    Queued,
    /// Stored and handed to the network; `delivered` holds who stored it.
    Sent {
        delivered: BTreeSet<PeerId>,
        /// Some recipient is unreachable for now; it stays queued.
        waiting: bool,
    },
    Failed(String),
}

/// Our own message's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Own {
    pub local: u64,
    pub delivery: Delivery,
    /// Who it was sent to (everyone else in the room when written).
    pub recipients: Vec<PeerId>,
    /// The node's latest "delivered to k of n" (from a receipt); counts
    /// over `delivered` when known.
    pub receipt: Option<(usize, usize)>,
}

/// A message in a room's loaded history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `None` while our own message is queued.
    pub id: Option<MessageId>,
    pub from: PeerId,
    pub timestamp: Millis,
    pub text: String,
    pub own: Option<Own>,
    /// Where the node stored it, when known.
    pub cursor: Option<u64>,
    /// Its hybrid-logical-clock timestamp (0: not known).
    pub hlc: u64,
}

impl Message {
    /// Whether it is shown above `other` (or at the same place): by time,
    /// then hybrid clock, then id; a message without id (ours, queued) by
    /// time alone.
    fn not_after(&self, other: &Message) -> bool {
        match (self.id, other.id) {
            (Some(a), Some(b)) => (self.timestamp, self.hlc, a) <= (other.timestamp, other.hlc, b),
            _ => self.timestamp <= other.timestamp,
        }
    }
}

/// The loaded part of a room's history, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    pub messages: Vec<Message>,
    /// Nothing older exists.
    pub complete: bool,
    /// A page request is under way.
    pub loading: bool,
    /// Index of the first message that was unread when the room was opened.
    pub divider: Option<usize>,
    /// The newest page was asked for (live messages alone do not make a
    /// loaded history).
    pub started: bool,
    /// Unread when the room was opened before its first page came (to
    /// place the divider then).
    unread_at_open: usize,
    ids: HashSet<MessageId>,
}

impl History {
    fn push(&mut self, message: Message) -> bool {
        if let Some(id) = message.id
            && !self.ids.insert(id)
        {
            // Its key came: the unreadable message gets its text.
            if let Some(shown) = self
                .messages
                .iter_mut()
                .find(|m| m.id == Some(id) && m.text == UNREADABLE)
            {
                shown.text = message.text;
                shown.cursor = shown.cursor.or(message.cursor);
            }
            return false;
        }
        // Live messages arrive in order; one with an older timestamp (a
        // forwarded one) is placed by time.
        let at = self.place(&message);
        self.insert_at(at, message);
        true
    }

    /// Where `message` goes: after every message not after it.
    fn place(&self, message: &Message) -> usize {
        self.messages
            .iter()
            .rposition(|m| m.not_after(message))
            .map_or(0, |i| i + 1)
    }

    fn insert_at(&mut self, at: usize, message: Message) {
        if let Some(divider) = &mut self.divider
            && at < *divider
        {
            *divider += 1;
        }
        self.messages.insert(at, message);
    }

    /// Merges a page from the node: each message not shown yet goes to
    /// its place in (timestamp, id) order; one already shown (live, or our
    /// own once sent) only gains its cursor. Returns how many were added.
    fn merge(&mut self, page: Vec<MessageInfo>, me: PeerId) -> usize {
        let mut page = page;
        page.sort_by_key(|m| (m.timestamp, m.hlc, m.id));
        let mut added = 0;
        for info in page {
            if !self.ids.insert(info.id) {
                if let Some(shown) = self.messages.iter_mut().find(|m| m.id == Some(info.id)) {
                    shown.cursor = shown.cursor.or(info.cursor);
                }
                continue;
            }
            let own = info.deliveries.map(|deliveries| {
                let recipients: Vec<PeerId> = deliveries.iter().map(|(p, _)| *p).collect();
                let delivered: BTreeSet<PeerId> = deliveries
                    .iter()
                    .filter(|(_, d)| *d == RowDelivery::Stored)
                    .map(|(p, _)| *p)
                    .collect();
                let waiting = deliveries.iter().any(|(_, d)| *d == RowDelivery::Queued);
                Own {
                    local: 0,
                    delivery: Delivery::Sent { delivered, waiting },
                    recipients,
                    receipt: None,
                }
            });
            let own = own.or_else(|| {
                // Ours, written from another device or before the list of
                // recipients was kept.
                (info.from == me).then(|| Own {
                    local: 0,
                    delivery: Delivery::Sent {
                        delivered: BTreeSet::new(),
                        waiting: false,
                    },
                    recipients: Vec::new(),
                    receipt: None,
                })
            });
            let message = Message {
                id: Some(info.id),
                from: info.from,
                timestamp: info.timestamp,
                text: info.text,
                own,
                cursor: info.cursor,
                hlc: info.hlc,
            };
            let at = self.place(&message);
            self.insert_at(at, message);
            added += 1;
        }
        added
    }

    /// The oldest loaded message's cursor (where the next page ends).
    pub fn oldest_cursor(&self) -> Option<u64> {
        self.messages.iter().filter_map(|m| m.cursor).min()
    }

    /// The newest loaded message's cursor (how far it has been read).
    pub fn newest_cursor(&self) -> Option<u64> {
        self.messages.iter().filter_map(|m| m.cursor).max()
    }

    /// The oldest loaded message's id (where the next page ends).
    pub fn oldest_id(&self) -> Option<MessageId> {
        self.messages.iter().find_map(|m| m.id)
    }
}

/// A note in the corner that fades.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toast {
    pub id: u64,
    pub text: String,
    pub error: bool,
    pub born: Millis,
}

/// Everything the main window shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppState {
    pub me: PeerId,
    /// Our public key, hex.
    pub my_key: String,
    /// Our display name (may be empty).
    pub my_name: String,
    pub now: Millis,
    /// Local time zone offset, for clock times.
    pub utc_offset_secs: i64,
    /// In no particular order; [`AppState::sorted_rooms`] orders them.
    pub rooms: BTreeMap<RoomId, Room>,
    pub people: BTreeMap<PeerId, Person>,
    pub open: Option<RoomId>,
    pub histories: HashMap<RoomId, History>,
    pub dialog: Option<Dialog>,
    pub toasts: Vec<Toast>,
    /// Desktop notifications (see `state/notify.rs`).
    pub notify: Notifications,
    /// The search panel (see `state/search.rs`).
    pub search: Search,
    next_local: u64,
    next_toast: u64,
    /// Receipts that arrived before our node's answer to the send.
    early_receipts: HashMap<MessageId, BTreeSet<PeerId>>,
    /// "Delivered to k of n" that arrived before our node's answer.
    early_counts: HashMap<MessageId, (usize, usize)>,
    /// The node keeps read markers and sends its unread counts
    /// ([`Update::Unread`]): the window stops counting by itself.
    unread_from_node: bool,
    /// What the Settings dialog shows.
    pub settings: SettingsState,
}

impl AppState {
    /// The state of a freshly unlocked account.
    pub fn new(me: PeerId, my_key: String, my_name: String) -> Self {
        AppState {
            me,
            my_key,
            my_name,
            now: 0,
            utc_offset_secs: 0,
            rooms: BTreeMap::new(),
            people: BTreeMap::new(),
            open: None,
            histories: HashMap::new(),
            dialog: None,
            toasts: Vec::new(),
            notify: Notifications::default(),
            search: Search::default(),
            next_local: 1,
            next_toast: 1,
            early_receipts: HashMap::new(),
            early_counts: HashMap::new(),
            unread_from_node: false,
            settings: SettingsState::default(),
        }
    }

    /// Folds one update from the node into the state.
    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Tick { now } => {
                self.now = self.now.max(now);
                let now = self.now;
                self.toasts
                    .retain(|t| now.saturating_sub(t.born) < TOAST_MILLIS);
            }
            Update::Rooms(list) => {
                let known: HashSet<RoomId> = list.iter().map(|r| r.id).collect();
                // A direct chat opened locally but not yet written in is
                // not in the node's list; keep it, and keep rooms we were
                // removed from (their history stays).
                self.rooms.retain(|id, room| {
                    known.contains(id)
                        || room.removed
                        || (room.info.direct.is_some() && room.last_activity == 0)
                });
                for info in list {
                    match self.rooms.get_mut(&info.id) {
                        Some(room) => {
                            room.info = info;
                        }
                        None => {
                            let id = info.id;
                            self.rooms.insert(id, Room::new(info));
                        }
                    }
                }
            }
            Update::People(list) => {
                let blocked: HashSet<PeerId> = self
                    .people
                    .values()
                    .filter(|p| p.blocked)
                    .map(|p| p.info.id)
                    .collect();
                let mut people = BTreeMap::new();
                for info in list {
                    if info.id == self.me {
                        continue;
                    }
                    let mut info = info;
                    // Keep the last-seen time we noted when they went away.
                    if info.last_seen.is_none()
                        && let Some(old) = self.people.get(&info.id)
                    {
                        info.last_seen = old.info.last_seen;
                    }
                    people.insert(
                        info.id,
                        Person {
                            blocked: blocked.contains(&info.id),
                            info,
                        },
                    );
                }
                // Blocked peers are not in the node's list; keep them.
                for (id, person) in std::mem::take(&mut self.people) {
                    if person.blocked && !people.contains_key(&id) {
                        people.insert(id, person);
                    }
                }
                self.people = people;
            }
            Update::Blocked(list) => {
                let list: HashSet<PeerId> = list.into_iter().collect();
                for person in self.people.values_mut() {
                    person.blocked = list.contains(&person.info.id);
                }
                for peer in list {
                    self.people.entry(peer).or_insert_with(|| Person {
                        info: PersonInfo {
                            id: peer,
                            public_key: String::new(),
                            name: String::new(),
                            relation: Relation::Contact,
                            online: false,
                            last_seen: None,
                            muted: None,
                        },
                        blocked: true,
                    });
                }
            }
            Update::Received { message, muted } => self.received(message, muted),
            Update::History {
                room,
                messages,
                complete,
            } => {
                let me = self.me;
                let history = self.histories.entry(room).or_default();
                history.loading = false;
                history.started = true;
                history.complete = complete;
                history.merge(messages, me);
                let unread = std::mem::take(&mut history.unread_at_open);
                if unread > 0 && history.divider.is_none() && self.open == Some(room) {
                    history.divider = Some(history.messages.len().saturating_sub(unread));
                }
                if let Some(last) = history.messages.last()
                    && let Some(room) = self.rooms.get_mut(&room)
                    && room.last_activity < last.timestamp
                {
                    room.last_activity = last.timestamp;
                    room.preview = Some((last.from, preview(&last.text)));
                }
                if let Some(request) = self.continue_seek() {
                    self.search.requests.push(request);
                }
            }
            Update::Sent { local, id } => {
                let early = self.early_receipts.remove(&id).unwrap_or_default();
                if let Some(message) = self.own_message_mut(|own| own.local == local) {
                    message.id = Some(id);
                    if let Some(own) = &mut message.own {
                        own.delivery = Delivery::Sent {
                            delivered: early,
                            waiting: false,
                        };
                    }
                }
                if let Some((delivered, of)) = self.early_counts.remove(&id)
                    && let Some(own) = self.own_message_mut_by_id(id)
                {
                    own.receipt = Some((delivered, of));
                }
                for history in self.histories.values_mut() {
                    if history.messages.iter().any(|m| m.id == Some(id)) {
                        history.ids.insert(id);
                    }
                }
            }
            Update::SendFailed { local, error } => {
                if let Some(message) = self.own_message_mut(|own| own.local == local)
                    && let Some(own) = &mut message.own
                {
                    own.delivery = Delivery::Failed(error.clone());
                }
                self.toast(format!("Not sent: {error}"), true);
            }
            Update::Delivered { to, id } => match self.own_message_mut_by_id(id) {
                Some(Own {
                    delivery: Delivery::Sent { delivered, waiting },
                    recipients,
                    ..
                }) => {
                    delivered.insert(to);
                    *waiting = recipients.iter().any(|r| !delivered.contains(r)) && *waiting;
                }
                Some(_) => {}
                None => {
                    self.early_receipts.entry(id).or_default().insert(to);
                }
            },
            Update::Receipt { id, delivered, of } => match self.own_message_mut_by_id(id) {
                Some(own) => own.receipt = Some((delivered, of)),
                None => {
                    self.early_counts.insert(id, (delivered, of));
                }
            },
            Update::Unread { room, unread } => {
                self.unread_from_node = true;
                if let Some(room) = self.rooms.get_mut(&room) {
                    room.unread = unread;
                }
            }
            Update::Undelivered { id, .. } => {
                if let Some(Own {
                    delivery: Delivery::Sent { waiting, .. },
                    ..
                }) = self.own_message_mut_by_id(id)
                {
                    *waiting = true;
                }
            }
            Update::PeerOnline { peer } => {
                if let Some(person) = self.people.get_mut(&peer) {
                    person.info.online = true;
                    person.info.last_seen = Some(self.now);
                }
            }
            Update::PeerOffline { peer } => {
                if let Some(person) = self.people.get_mut(&peer) {
                    if person.info.online {
                        person.info.last_seen = Some(self.now);
                    }
                    person.info.online = false;
                }
            }
            Update::Invited { room, name, from } => {
                let entry = self.rooms.entry(room).or_insert_with(|| {
                    Room::new(RoomInfo {
                        id: room,
                        name: name.clone(),
                        direct: None,
                        admin: Some(from),
                        members: Vec::new(),
                        muted: None,
                        invited: true,
                    })
                });
                entry.info.invited = true;
                entry.invited_by = Some(from);
                entry.last_activity = entry.last_activity.max(self.now);
                let who = self.display_name(from);
                self.toast(format!("{who} invites you to {name}"), false);
            }
            Update::RoomCreated { room, name } => {
                let me = self.me;
                let entry = self.rooms.entry(room).or_insert_with(|| {
                    Room::new(RoomInfo {
                        id: room,
                        name,
                        direct: None,
                        admin: Some(me),
                        members: vec![me],
                        muted: None,
                        invited: false,
                    })
                });
                entry.last_activity = entry.last_activity.max(self.now);
                // A room just made has no history to load.
                self.histories.entry(room).or_default().complete = true;
                self.open = Some(room);
            }
            Update::Removed { room } => {
                if let Some(room) = self.rooms.get_mut(&room) {
                    room.removed = true;
                }
            }
            Update::ContactRequest { peer } => {
                let person = self.people.entry(peer).or_insert_with(|| Person {
                    info: PersonInfo {
                        id: peer,
                        public_key: String::new(),
                        name: String::new(),
                        relation: Relation::Request,
                        online: true,
                        last_seen: None,
                        muted: None,
                    },
                    blocked: false,
                });
                person.info.relation = Relation::Request;
            }
            Update::Error(text) => self.toast(text, true),
            Update::Info(text) => self.toast(text, false),
            Update::Settings(update) => self.apply_settings(update),
            Update::SearchAnswer { seq, answer } => self.search_answered(seq, answer),
        }
    }

    /// Turns what the user did into state changes and node requests.
    pub fn handle_intent(&mut self, intent: Intent) -> Vec<Request> {
        match intent {
            Intent::OpenRoom(room) => {
                self.search.target = None;
                self.open_room(room)
            }
            Intent::Message(peer) => {
                let room = direct_room(self.me, peer);
                let me = self.me;
                self.rooms.entry(room).or_insert_with(|| {
                    Room::new(RoomInfo {
                        id: room,
                        name: String::new(),
                        direct: Some(peer),
                        admin: None,
                        members: vec![me, peer],
                        muted: None,
                        invited: false,
                    })
                });
                self.open_room(room)
            }
            Intent::Send(text) => self.send(text),
            Intent::Mute(target, duration) => {
                let until = match duration {
                    Some(d) => MuteUntil::Until(self.now + d),
                    None => MuteUntil::Forever,
                };
                self.set_mute(target, Some(until));
                vec![Request::Mute {
                    target,
                    until: Some(until),
                }]
            }
            Intent::Unmute(target) => {
                self.set_mute(target, None);
                vec![Request::Mute {
                    target,
                    until: None,
                }]
            }
            Intent::Block(peer) => {
                if let Some(person) = self.people.get_mut(&peer) {
                    person.blocked = true;
                    person.info.online = false;
                }
                vec![Request::Block {
                    peer,
                    blocked: true,
                }]
            }
            Intent::Unblock(peer) => {
                if let Some(person) = self.people.get_mut(&peer) {
                    person.blocked = false;
                }
                vec![Request::Block {
                    peer,
                    blocked: false,
                }]
            }
            Intent::AcceptRequest(peer) => {
                if let Some(person) = self.people.get_mut(&peer) {
                    person.info.relation = Relation::Contact;
                }
                vec![Request::Accept { peer }]
            }
            Intent::DeclineRequest(peer) => self.handle_intent(Intent::Block(peer)),
            Intent::AnswerInvite { room, accept } => {
                if let Some(entry) = self.rooms.get_mut(&room) {
                    entry.info.invited = false;
                }
                if !accept {
                    self.rooms.remove(&room);
                    if self.open == Some(room) {
                        self.open = None;
                    }
                }
                vec![Request::AnswerInvite { room, accept }]
            }
            Intent::Leave(room) => {
                self.rooms.remove(&room);
                self.histories.remove(&room);
                if self.open == Some(room) {
                    self.open = None;
                }
                vec![Request::Leave { room }]
            }
            Intent::Remove { room, peer } => vec![Request::Remove { room, peer }],
            Intent::OpenDialog(dialog) => {
                self.dialog = Some(dialog);
                Vec::new()
            }
            Intent::CloseDialog => {
                self.dialog = None;
                Vec::new()
            }
            Intent::CreateRoom { name, members } => {
                self.dialog = None;
                vec![Request::CreateRoom { name, members }]
            }
            Intent::AddToRoom { room, peers } => {
                self.dialog = None;
                peers
                    .into_iter()
                    .map(|peer| Request::Invite { room, peer })
                    .collect()
            }
            Intent::LoadOlder => {
                let Some(room) = self.open else {
                    return Vec::new();
                };
                if self.rooms.get(&room).is_some_and(|r| r.info.invited) {
                    return Vec::new();
                }
                let history = self.histories.entry(room).or_default();
                if history.loading || history.complete {
                    return Vec::new();
                }
                history.loading = true;
                // Before anything was asked, the newest page (live messages
                // alone say nothing of what is older).
                let before = if history.started {
                    history.oldest_cursor()
                } else {
                    None
                };
                vec![Request::LoadHistory {
                    room,
                    before,
                    limit: HISTORY_PAGE,
                }]
            }
            Intent::DismissToast(id) => {
                self.toasts.retain(|t| t.id != id);
                Vec::new()
            }
            Intent::Settings(intent) => self.handle_settings(intent),
            Intent::OpenSearch(room) => {
                self.open_search(room);
                Vec::new()
            }
            Intent::CloseSearch => {
                self.close_search();
                Vec::new()
            }
            Intent::Search { text, room } => self.start_search(text, room),
            Intent::MoreResults => self.more_results(),
            Intent::OpenHit { room, id } => self.open_hit(room, id),
        }
    }

    fn open_room(&mut self, room: RoomId) -> Vec<Request> {
        self.open = Some(room);
        let unread = self.rooms.get(&room).map_or(0, |r| r.unread);
        // An invitation has no history to read yet (its newest page comes
        // once we are in).
        let invited = self.rooms.get(&room).is_some_and(|r| r.info.invited);
        let history = self.histories.entry(room).or_default();
        history.divider = None;
        history.unread_at_open = 0;
        if history.started || history.complete {
            history.divider = (unread > 0).then(|| history.messages.len().saturating_sub(unread));
        }
        let mut requests = Vec::new();
        if !history.started && !history.complete && !history.loading && !invited {
            // The divider is placed once the page is in.
            history.unread_at_open = unread;
            history.loading = true;
            requests.push(Request::LoadHistory {
                room,
                before: None,
                limit: HISTORY_PAGE,
            });
        }
        requests.extend(self.mark_read(room));
        requests
    }

    fn mark_read(&mut self, room: RoomId) -> Option<Request> {
        let entry = self.rooms.get_mut(&room)?;
        if entry.unread == 0 {
            return None;
        }
        entry.unread = 0;
        // Up to the newest message shown; everything when none is known
        // yet (the first page is on its way: it holds the newest).
        let up_to = self
            .histories
            .get(&room)
            .filter(|h| h.started)
            .and_then(History::newest_cursor);
        Some(Request::MarkRead { room, up_to })
    }

    /// Marks the open room read if something arrived in it since; for the
    /// app to call while the window has focus.
    pub fn mark_open_read(&mut self) -> Option<Request> {
        let room = self.open?;
        self.mark_read(room)
    }

    fn send(&mut self, text: String) -> Vec<Request> {
        let text = text.trim_end().to_owned();
        let Some(room_id) = self.open else {
            return Vec::new();
        };
        if text.trim().is_empty() {
            return Vec::new();
        }
        if let Some(reason) = self.cannot_send(room_id) {
            self.toast(reason.to_owned(), true);
            return Vec::new();
        }
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return Vec::new();
        };
        let local = self.next_local;
        self.next_local += 1;
        let me = self.me;
        let recipients: Vec<PeerId> = match room.info.direct {
            Some(peer) => vec![peer],
            None => room
                .info
                .members
                .iter()
                .copied()
                .filter(|m| *m != me)
                .collect(),
        };
        room.last_activity = room.last_activity.max(self.now);
        room.preview = Some((me, preview(&text)));
        let request = match room.info.direct {
            Some(peer) => Request::SendDirect {
                local,
                peer,
                text: text.clone(),
            },
            None => Request::SendRoom {
                local,
                room: room_id,
                text: text.clone(),
            },
        };
        self.histories.entry(room_id).or_default().push(Message {
            id: None,
            from: me,
            timestamp: self.now,
            text,
            own: Some(Own {
                local,
                delivery: Delivery::Queued,
                recipients,
                receipt: None,
            }),
            cursor: None,
            hlc: 0,
        });
        vec![request]
    }

    /// Why nothing can be sent to `room` now, if so.
    pub fn cannot_send(&self, room: RoomId) -> Option<&'static str> {
        let room = self.rooms.get(&room)?;
        if room.removed {
            Some("You were removed from this room.")
        } else if room.info.invited {
            Some("Accept the invitation to write here.")
        } else if room.info.direct.is_some_and(|p| self.is_blocked(p)) {
            Some("You blocked this person.")
        } else {
            None
        }
    }

    fn received(&mut self, message: MessageInfo, muted: bool) {
        let room_id = message.room;
        let from_blocked = self.is_blocked(message.from);
        if from_blocked {
            return;
        }
        // Muted at the window's clock as well: what comes during a mute is
        // not counted after it ends either (as the node counts).
        let muted = muted
            || self.peer_muted(message.from)
            || self.rooms.get(&room_id).is_some_and(|r| self.room_muted(r));
        let me = self.me;
        let room = self.rooms.entry(room_id).or_insert_with(|| {
            // A first direct message creates the chat; a group message for
            // a room not listed yet shows up until the next refresh names it.
            let direct = Some(message.from);
            Room::new(RoomInfo {
                id: room_id,
                name: String::new(),
                direct,
                admin: None,
                members: vec![me, message.from],
                muted: None,
                invited: false,
            })
        });
        room.last_activity = room.last_activity.max(message.timestamp);
        room.preview = Some((message.from, preview(&message.text)));
        if !muted && self.open != Some(room_id) && !self.unread_from_node {
            room.unread += 1;
        }
        self.consider_notifying(&message, muted);
        self.histories.entry(room_id).or_default().push(Message {
            id: Some(message.id),
            from: message.from,
            timestamp: message.timestamp,
            text: message.text,
            own: None,
            cursor: message.cursor,
            hlc: message.hlc,
        });
    }

    fn own_message_mut(&mut self, matches: impl Fn(&Own) -> bool) -> Option<&mut Message> {
        self.histories
            .values_mut()
            .flat_map(|h| h.messages.iter_mut().rev())
            .find(|m| m.own.as_ref().is_some_and(&matches))
    }

    fn own_message_mut_by_id(&mut self, id: MessageId) -> Option<&mut Own> {
        self.histories
            .values_mut()
            .flat_map(|h| h.messages.iter_mut().rev())
            .find(|m| m.id == Some(id))
            .and_then(|m| m.own.as_mut())
    }

    fn set_mute(&mut self, target: Target, until: Option<MuteUntil>) {
        match target {
            Target::Room(room) => {
                if let Some(room) = self.rooms.get_mut(&room) {
                    room.info.muted = until;
                }
            }
            Target::Peer(peer) => {
                if let Some(person) = self.people.get_mut(&peer) {
                    person.info.muted = until;
                }
            }
        }
    }

    fn toast(&mut self, text: String, error: bool) {
        let id = self.next_toast;
        self.next_toast += 1;
        self.toasts.push(Toast {
            id,
            text,
            error,
            born: self.now,
        });
        // A storm of errors must not fill the screen.
        if self.toasts.len() > 5 {
            self.toasts.remove(0);
        }
    }

    /// How long until the screen changes by itself: a toast fades, a mute
    /// ends, or "last seen" moves on (at most half a minute).
    pub fn next_change(&self) -> std::time::Duration {
        let mut next: Millis = 30_000;
        if !self.toasts.is_empty() {
            next = 100;
        }
        let ends = self
            .rooms
            .values()
            .filter_map(|r| r.info.muted)
            .chain(self.people.values().filter_map(|p| p.info.muted));
        for mute in ends {
            if let MuteUntil::Until(end) = mute
                && end > self.now
            {
                next = next.min(end - self.now);
            }
        }
        std::time::Duration::from_millis(next)
    }

    /// Whether the unread counts are the node's (its read markers), not
    /// counted by the window.
    pub fn unread_from_node(&self) -> bool {
        self.unread_from_node
    }

    /// Whether `peer` is blocked.
    pub fn is_blocked(&self, peer: PeerId) -> bool {
        self.people.get(&peer).is_some_and(|p| p.blocked)
    }

    /// Whether a room's mute holds now.
    pub fn room_muted(&self, room: &Room) -> bool {
        self.room_mute(room).is_some()
    }

    /// The mute that holds for a room now: its own, or for a direct chat
    /// the person's.
    pub fn room_mute(&self, room: &Room) -> Option<MuteUntil> {
        let person = room
            .info
            .direct
            .and_then(|peer| self.people.get(&peer))
            .and_then(|p| p.info.muted);
        room.info.muted.or(person).filter(|m| m.active(self.now))
    }

    /// What mute and the menus address for a room: a direct chat's person.
    pub fn room_target(&self, room: &Room) -> Target {
        match room.info.direct {
            Some(peer) => Target::Peer(peer),
            None => Target::Room(room.info.id),
        }
    }

    /// Whether a person's mute holds now.
    pub fn person_muted(&self, person: &Person) -> bool {
        person.info.muted.is_some_and(|m| m.active(self.now))
    }

    /// The badge number for a room: `None` when muted or nothing unread.
    pub fn badge(&self, room: &Room) -> Option<usize> {
        (!self.room_muted(room) && room.unread > 0).then_some(room.unread)
    }

    /// Unread messages in rooms that are not muted now.
    pub fn total_unread(&self) -> usize {
        self.rooms.values().filter_map(|r| self.badge(r)).sum()
    }

    /// The window title.
    pub fn title(&self) -> String {
        match self.total_unread() {
            0 => "kith".to_owned(),
            n => format!("kith — {n} unread"),
        }
    }

    /// Rooms and direct chats, most recently active first (invitations
    /// among them by the time they came). A direct chat with nothing in it
    /// is left out unless open: the person is under People.
    pub fn sorted_rooms(&self) -> Vec<&Room> {
        let mut rooms: Vec<&Room> = self
            .rooms
            .values()
            .filter(|r| {
                r.info.direct.is_none() || r.last_activity > 0 || self.open == Some(r.info.id)
            })
            .collect();
        rooms.sort_by(|a, b| {
            b.last_activity
                .cmp(&a.last_activity)
                .then_with(|| self.room_name(a).cmp(&self.room_name(b)))
        });
        rooms
    }

    /// People by relation: contacts, requests, nearby; each by name.
    /// Blocked people are listed only by [`AppState::blocked_people`].
    pub fn people_with(&self, relation: Relation) -> Vec<&Person> {
        let mut people: Vec<&Person> = self
            .people
            .values()
            .filter(|p| !p.blocked && p.info.relation == relation)
            .collect();
        people.sort_by(|a, b| {
            b.info.online.cmp(&a.info.online).then_with(|| {
                self.display_name(a.info.id)
                    .cmp(&self.display_name(b.info.id))
            })
        });
        people
    }

    pub fn blocked_people(&self) -> Vec<&Person> {
        self.people.values().filter(|p| p.blocked).collect()
    }

    /// A person's name as shown everywhere: the display name, with the
    /// first four hex digits of the id when someone else has the same one
    /// (`Sam·3f2a`), or the short id when they announced none.
    pub fn display_name(&self, peer: PeerId) -> String {
        if peer == self.me {
            return "You".to_owned();
        }
        let Some(person) = self.people.get(&peer) else {
            return peer.short();
        };
        let name = person.info.name.trim();
        if name.is_empty() {
            return peer.short();
        }
        let clash = name == self.my_name.trim()
            || self
                .people
                .values()
                .any(|other| other.info.id != peer && other.info.name.trim() == name);
        if clash {
            format!("{name}·{}", &peer.to_hex()[..4])
        } else {
            name.to_owned()
        }
    }

    /// A room's name: a group's own, or the person's for a direct chat.
    pub fn room_name(&self, room: &Room) -> String {
        match room.info.direct {
            Some(peer) => self.display_name(peer),
            None if room.info.name.is_empty() => format!("room {}", PeerId(room.info.id.0).short()),
            None => room.info.name.clone(),
        }
    }

    /// "until 18:30", "until Tue 9 Dec", or "muted" (until unmuted).
    pub fn mute_label(&self, mute: MuteUntil) -> String {
        match mute {
            MuteUntil::Forever => "muted".to_owned(),
            MuteUntil::Until(end) => {
                if end.saturating_sub(self.now) < 20 * 3_600_000 {
                    format!("until {}", self.clock(end))
                } else {
                    format!("until {}", self.short_date(end))
                }
            }
        }
    }

    /// "last seen 5 min ago", or `None` when online or never seen.
    pub fn last_seen_label(&self, person: &Person) -> Option<String> {
        if person.info.online {
            return None;
        }
        let seen = person.info.last_seen?;
        let ago = self.now.saturating_sub(seen) / 1000;
        Some(match ago {
            0..60 => "last seen just now".to_owned(),
            60..3600 => format!("last seen {} min ago", ago / 60),
            3600..86_400 => format!("last seen {} h ago", ago / 3600),
            _ => format!("last seen {} d ago", ago / 86_400),
        })
    }

    /// "delivered to 2 of 3", "delivered", "sent", "queued", or why not.
    pub fn delivery_label(&self, own: &Own, group: bool) -> String {
        match &own.delivery {
            Delivery::Queued => "queued".to_owned(),
            Delivery::Failed(_) => "not sent".to_owned(),
            Delivery::Sent { delivered, waiting } => {
                let mut n = own.recipients.len();
                let mut k = own
                    .recipients
                    .iter()
                    .filter(|r| delivered.contains(r))
                    .count();
                // The node's receipt counts recipients the window may not
                // know (our message from history, a room that changed).
                if let Some((stored, of)) = own.receipt
                    && of > 0
                {
                    n = of;
                    k = k.max(stored).min(n);
                }
                if group && n > 0 && k > 0 {
                    format!("delivered to {k} of {n}")
                } else if n > 0 && k == n {
                    "delivered".to_owned()
                } else if *waiting {
                    "waiting".to_owned()
                } else {
                    "sent".to_owned()
                }
            }
        }
    }

    /// HH:MM in local time.
    pub fn clock(&self, at: Millis) -> String {
        let secs = local_secs(at, self.utc_offset_secs);
        let day = secs.rem_euclid(86_400);
        format!("{:02}:{:02}", day / 3600, (day % 3600) / 60)
    }

    /// "Tue 9 Dec" in local time.
    pub fn short_date(&self, at: Millis) -> String {
        let (weekday, day, month, _) = civil(local_secs(at, self.utc_offset_secs));
        format!("{} {day} {}", &WEEKDAYS[weekday][..3], MONTHS[month])
    }

    /// "Tuesday 9 Dec 2026" in local time, for day separators.
    pub fn long_date(&self, at: Millis) -> String {
        let (weekday, day, month, year) = civil(local_secs(at, self.utc_offset_secs));
        format!("{} {day} {} {year}", WEEKDAYS[weekday], MONTHS[month])
    }

    /// The local day number of a time, to place day separators.
    pub fn local_day(&self, at: Millis) -> i64 {
        local_secs(at, self.utc_offset_secs).div_euclid(86_400)
    }
}

impl Room {
    fn new(info: RoomInfo) -> Self {
        Room {
            info,
            last_activity: 0,
            preview: None,
            unread: 0,
            removed: false,
            invited_by: None,
        }
    }
}

const WEEKDAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn local_secs(at: Millis, offset: i64) -> i64 {
    i64::try_from(at / 1000).unwrap_or(i64::MAX - 86_400) + offset
}

/// (weekday index into `WEEKDAYS`, day, month index, year) of a time in
/// seconds since the epoch (Howard Hinnant's `civil_from_days`).
fn civil(secs: i64) -> (usize, i64, usize, i64) {
    let days = secs.div_euclid(86_400);
    // The epoch was a Thursday, WEEKDAYS[0].
    let weekday = usize::try_from(days.rem_euclid(7)).unwrap_or(0);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let month = usize::try_from(month - 1).unwrap_or(0);
    (weekday, day, month, year)
}

/// The first line of a message, cut to a sidebar's width.
fn preview(text: &str) -> String {
    preview_chars(text, 40)
}

/// The first line of a message, cut to `chars` characters.
fn preview_chars(text: &str, chars: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    let mut out: String = line.chars().take(chars).collect();
    if line.chars().count() > chars || text.lines().nth(1).is_some() {
        out.push('…');
    }
    out
}

// ─── Settings: name, interfaces, theme (issue 15, first run and settings) ───

pub use super::settings::{AppSettings, LanInterface, Theme};

/// What the Settings dialog shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettingsState {
    /// Where the account lives.
    pub data_dir: String,
    /// The address this node listens on, once known.
    pub listen: Option<String>,
    /// The interfaces mDNS uses in this run.
    pub interfaces_in_use: Vec<String>,
    /// This run's interfaces came from `--interface` on the command line
    /// (the saved choice is used when it names none).
    pub from_command_line: bool,
    /// What is saved in the data directory (interfaces and theme).
    pub saved: AppSettings,
    /// The machine's interfaces, for picking.
    pub available: Vec<LanInterface>,
}

/// What the user changes in the Settings dialog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettingsIntent {
    /// Our display name (the signed profile contacts receive).
    Rename(String),
    /// The interfaces to use from the next start.
    SetInterfaces(Vec<String>),
    SetTheme(Theme),
}

/// What the node (or its worker) does for the Settings dialog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettingsRequest {
    /// Sign and send our new profile name; answered by
    /// [`SettingsUpdate::Renamed`] or an error.
    Rename(String),
    /// Write the settings file of the data directory.
    Save(AppSettings),
}

/// Answers for the Settings dialog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettingsUpdate {
    /// Our name is now this.
    Renamed(String),
}

/// Longest display name, in characters (as the node's profiles allow).
pub const MAX_PROFILE_NAME: usize = 64;

impl AppState {
    fn handle_settings(&mut self, intent: SettingsIntent) -> Vec<Request> {
        match intent {
            SettingsIntent::Rename(name) => {
                let name = name.trim().to_owned();
                if name.is_empty() || name.chars().count() > MAX_PROFILE_NAME {
                    self.toast(
                        format!("A name has 1 to {MAX_PROFILE_NAME} characters."),
                        true,
                    );
                    return Vec::new();
                }
                if name == self.my_name {
                    return Vec::new();
                }
                vec![Request::Settings(SettingsRequest::Rename(name))]
            }
            SettingsIntent::SetInterfaces(mut names) => {
                names.sort();
                names.dedup();
                if self.settings.saved.interfaces.as_ref() == Some(&names) {
                    return Vec::new();
                }
                self.settings.saved.interfaces = Some(names);
                self.toast(
                    "Saved. kith uses these interfaces from its next start.".to_owned(),
                    false,
                );
                vec![Request::Settings(SettingsRequest::Save(
                    self.settings.saved.clone(),
                ))]
            }
            SettingsIntent::SetTheme(theme) => {
                if self.settings.saved.theme == theme {
                    return Vec::new();
                }
                self.settings.saved.theme = theme;
                vec![Request::Settings(SettingsRequest::Save(
                    self.settings.saved.clone(),
                ))]
            }
        }
    }

    fn apply_settings(&mut self, update: SettingsUpdate) {
        match update {
            SettingsUpdate::Renamed(name) => {
                self.toast(format!("You are now {name}."), false);
                self.my_name = name;
            }
        }
    }

    /// Whether the interfaces saved differ from those in use (a restart
    /// would change them; not when the command line chose).
    pub fn interfaces_need_restart(&self) -> bool {
        !self.settings.from_command_line
            && self
                .settings
                .saved
                .interfaces
                .as_ref()
                .is_some_and(|saved| {
                    let mut in_use = self.settings.interfaces_in_use.clone();
                    in_use.sort();
                    *saved != in_use
                })
    }
}

#[cfg(test)]
mod settings_tests;
#[cfg(test)]
mod tests;
