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
// Files shared in rooms: the picker, file rows, downloads.
mod files;
// The rest by what it is about: a room's loaded history, what the user
// does, what the views ask, the Settings dialog.
mod history;
mod intents;
mod labels;
mod network;
mod settings;
pub use files::{
    DirEntry, FileId, FileIntent, FileMeta, FileRequest, FileRow, FileStatus, FileUpdate, Files,
    MAX_CAPTION, Pending, Picker, Transfer, captioned_text, draft_caption, file_text, plain_name,
    size_label,
};
pub use history::{Delivery, History, Message, Own};
use labels::preview;
pub use labels::preview_chars;
pub use network::{
    HeardPeer, MdnsInfo, NETWORK_REFRESH_MILLIS, NetworkIntent, NetworkReport, NetworkRequest,
    NetworkState, NetworkUpdate, RegistryInfo, ago_label, drop_label, parse_peer_address,
    parse_public_key,
};
pub use notify::{NOTIFY_QUIET_MILLIS, Notification, Notifications};
pub use search::{SEARCH_LIMIT, Search, SearchHit, snippet};
pub use settings::{
    AppSettings, LanInterface, MAX_PROFILE_NAME, NodeChoices, RegistrySetting, SettingsIntent,
    SettingsRequest, SettingsState, SettingsUpdate, Theme,
};

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
    /// The Network panel (see `state/network.rs`).
    Network(NetworkUpdate),
    /// Files shared in rooms (see `state/files.rs`).
    File(FileUpdate),
}

/// What the user asked for, as the views report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intent {
    OpenRoom(RoomId),
    /// Open (or start) the direct chat with a person.
    Message(PeerId),
    /// Send the composer's text to the open room.
    Send(String),
    /// The composer's text in `room` is now `text` (typed, or emptied
    /// when sent). A file shared in the room takes it as its caption.
    Draft {
        room: RoomId,
        text: String,
    },
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
    /// The Network panel (see `state/network.rs`).
    Network(NetworkIntent),
    /// Files shared in rooms (see `state/files.rs`).
    File(FileIntent),
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
    /// The Network panel (see `state/network.rs`).
    Network(NetworkRequest),
    /// Files shared in rooms (see `state/files.rs`).
    File(FileRequest),
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
    /// What the network looks like: interfaces, mDNS, registry, peers
    /// heard, drops; and adding a peer by address.
    Network,
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
    /// The Network panel (see `state/network.rs`).
    pub network: NetworkState,
    /// Files shared in rooms (see `state/files.rs`).
    pub files: Files,
    /// The composer's text, per room (not yet sent). A file shared in the
    /// room takes it as its caption (see `state/files.rs`).
    pub drafts: HashMap<RoomId, String>,
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
            network: NetworkState::default(),
            files: Files::default(),
            drafts: HashMap::new(),
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
            Update::Network(update) => self.apply_network(update),
            Update::File(update) => self.apply_file(update),
        }
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

#[cfg(test)]
mod files_tests;
#[cfg(test)]
mod settings_tests;
#[cfg(test)]
mod tests;
