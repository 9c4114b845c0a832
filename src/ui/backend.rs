//! Between the window and the node: [`Request`]s go out through a
//! [`Backend`], [`Update`]s come back on a channel, and the window is woken
//! ([`Waker`], `ctx.request_repaint()`) when one arrives.
//!
//! [`DaemonBackend`] runs the node in-process ([`daemon::start`], control
//! socket included, so `kith send/listen/peers` work against a running
//! app). Its blocking calls run on a worker thread that owns the
//! [`DaemonHandle`]; another thread forwards the handle's events. Nothing
//! here ever runs in the frame callback. [`FakeBackend`] answers like a
//! node without one, for tests.

use super::settings::{self, AppSettings};
use super::state::{
    HISTORY_PAGE, MessageInfo, MuteUntil, PersonInfo, Relation, Request, RoomInfo, SearchHit,
    SettingsRequest, SettingsUpdate, Target, UNREADABLE, Update,
};
use crate::account::{Account, KdfParams, Mute};
use crate::daemon::{self, DaemonConfig, DaemonHandle, Event, PeerInfo, RoomSummary};
use crate::proto::ids::{MessageId, PeerId, RoomId};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wakes the window (egui's `request_repaint`); called after every update.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Where requests go. `submit` never blocks.
pub trait Backend: Send {
    fn submit(&self, request: Request);
}

/// What an unlocked account hands the window.
pub struct Connection {
    pub backend: Box<dyn Backend>,
    pub updates: Receiver<Update>,
    pub me: Me,
    /// How the node runs, for the Settings dialog.
    pub node: NodeInfo,
}

/// How the node was started (shown in the Settings dialog).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// The address it listens on.
    pub listen: Option<std::net::SocketAddr>,
    /// The interfaces mDNS uses now.
    pub interfaces: Vec<String>,
    /// They came from the command line (`--interface`), not the saved choice.
    pub from_command_line: bool,
    /// The choices saved in the data directory.
    pub saved: AppSettings,
}

/// Who we are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Me {
    pub peer: PeerId,
    /// The public key, hex: what others give `--peer` or paste to verify.
    pub public_key: String,
    pub name: String,
}

/// What the unlock screen collected.
#[derive(Clone, Debug)]
pub struct LaunchArgs {
    pub data_dir: PathBuf,
    pub passphrase: String,
    /// Create the account first.
    pub creating: bool,
    /// The display name chosen at creation (empty when unlocking).
    pub name: String,
    /// The LAN interfaces picked at creation (saved for later launches);
    /// `None` when unlocking.
    pub interfaces: Option<Vec<String>>,
}

/// Opens an account and starts whatever answers requests. Runs on a worker
/// thread (Argon2id takes a while); the error is a sentence for the user.
pub trait Launcher: Send + Sync {
    fn launch(&self, args: LaunchArgs, waker: Waker) -> Result<Connection, String>;
}

/// The file in the data directory holding the display name chosen at
/// creation (the name announced by mDNS; not secret).
pub const NAME_FILE: &str = "display-name";
/// Longest display name kept, in characters.
pub const MAX_NAME_CHARS: usize = 40;

/// Starts the real node in-process.
pub struct NodeLauncher {
    /// Used only when creating an account.
    pub kdf: KdfParams,
    /// Sockets, discovery and control socket; the display name is filled in.
    pub config: DaemonConfig,
    /// Where the mDNS interfaces come from.
    pub interfaces: InterfaceSource,
}

/// Where the node's mDNS interfaces come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterfaceSource {
    /// Exactly those of the config (`--interface` on the command line;
    /// tests): the saved choice is not used.
    Configured,
    /// The choice saved in the data directory (picked at first run or in
    /// Settings); never chosen: the default route's interface.
    Saved,
}

impl Launcher for NodeLauncher {
    fn launch(&self, args: LaunchArgs, waker: Waker) -> Result<Connection, String> {
        if args.creating {
            // Dropped at once: `daemon::start` opens it again as its own.
            drop(
                Account::create(&args.data_dir, &args.passphrase, self.kdf)
                    .map_err(|e| e.to_string())?,
            );
            let name: String = args.name.trim().chars().take(MAX_NAME_CHARS).collect();
            if !name.is_empty() {
                std::fs::write(args.data_dir.join(NAME_FILE), &name)
                    .map_err(|e| format!("cannot save your name: {e}"))?;
            }
            if let Some(interfaces) = &args.interfaces {
                let settings = AppSettings {
                    interfaces: Some(interfaces.clone()),
                    ..AppSettings::load(&args.data_dir)
                };
                settings
                    .save(&args.data_dir)
                    .map_err(|e| format!("cannot save your choice of interfaces: {e}"))?;
            }
        }
        let name = read_name(&args.data_dir);
        let saved = AppSettings::load(&args.data_dir);
        let mut config = self.config.clone();
        if config.discovery.display_name.is_empty() {
            config.discovery.display_name = name.clone();
        }
        if self.interfaces == InterfaceSource::Saved {
            config.discovery.interfaces = saved
                .interfaces_or(settings::default_interface())
                .iter()
                .filter_map(|name| name.parse().ok())
                .collect();
        }
        // With `--no-mdns`, none is in use whatever is named.
        let interfaces = if config.discovery.mdns {
            config
                .discovery
                .interfaces
                .iter()
                .map(ToString::to_string)
                .collect()
        } else {
            Vec::new()
        };
        let handle = daemon::start(&args.data_dir, &args.passphrase, config).map_err(|e| {
            let text = e.to_string();
            if text.contains("control socket")
                || text.contains("in use")
                || text.contains("already open")
            {
                format!(
                    "{text}. Is a kith daemon (or another kith window) already running with \
                     this data directory? Stop it (`kith stop`) and try again."
                )
            } else {
                text
            }
        })?;
        // The name chosen at creation becomes the signed profile that
        // contacts and room members receive (mDNS only hints at it).
        if args.creating
            && !name.is_empty()
            && let Err(error) = handle.set_profile(&name)
        {
            log::warn!("your name was not signed into your profile: {error}");
        }
        // An account made with `kith init --name` has no name file: its
        // signed profile names it.
        let name = if name.is_empty() {
            handle.own_name().unwrap_or_default().to_owned()
        } else {
            name
        };
        let me = Me {
            peer: handle.peer_id(),
            public_key: PeerId(handle.public().to_bytes()).to_hex(),
            name,
        };
        let node = NodeInfo {
            listen: Some(handle.local_addr()),
            interfaces,
            from_command_line: self.interfaces == InterfaceSource::Configured,
            saved,
        };
        let (backend, updates) = DaemonBackend::spawn(handle, waker).map_err(|e| e.to_string())?;
        Ok(Connection {
            backend: Box::new(backend),
            updates,
            me,
            node,
        })
    }
}

/// The display name saved at creation, or empty.
pub fn read_name(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join(NAME_FILE))
        .map(|name| name.trim().chars().take(MAX_NAME_CHARS).collect())
        .unwrap_or_default()
}

/// The wall clock in milliseconds.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How often rooms and people are read again when nothing happens, for
/// nearby peers (mDNS sightings raise no event) and "last seen".
const REFRESH_EVERY: Duration = Duration::from_secs(3);

enum Job {
    Request(Request),
    Stop,
}

/// The node, run in-process.
pub struct DaemonBackend {
    jobs: Sender<Job>,
    worker: Option<JoinHandle<()>>,
}

impl DaemonBackend {
    /// Takes over `handle`: a worker thread answers requests with it and a
    /// second one forwards its events. Updates arrive on the receiver.
    pub fn spawn(
        handle: DaemonHandle,
        waker: Waker,
    ) -> Result<(Self, Receiver<Update>), daemon::DaemonError> {
        let events = handle.events()?;
        let (updates_tx, updates) = channel();
        let (jobs, jobs_rx) = channel();
        let out = Outbox {
            tx: updates_tx,
            waker,
        };
        let forward_out = out.clone();
        let forward_jobs = jobs.clone();
        std::thread::Builder::new()
            .name("kith-ui-events".into())
            .spawn(move || forward_events(&events, &forward_out, &forward_jobs))
            .map_err(|e| daemon::DaemonError::Discovery(format!("cannot start a thread: {e}")))?;
        let worker = std::thread::Builder::new()
            .name("kith-ui-worker".into())
            .spawn(move || {
                let mut worker = Worker {
                    handle,
                    out,
                    primed: HashSet::new(),
                    searches: None,
                };
                worker.refresh();
                loop {
                    match jobs_rx.recv_timeout(REFRESH_EVERY) {
                        Ok(Job::Request(request)) => worker.handle_request(request),
                        Err(RecvTimeoutError::Timeout) => worker.refresh(),
                        Ok(Job::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                // Flushes the outbox and the journal.
                if let Err(error) = worker.handle.shutdown() {
                    log::error!("the node did not stop cleanly: {error}");
                }
            })
            .map_err(|e| daemon::DaemonError::Discovery(format!("cannot start a thread: {e}")))?;
        Ok((
            DaemonBackend {
                jobs,
                worker: Some(worker),
            },
            updates,
        ))
    }
}

impl Backend for DaemonBackend {
    fn submit(&self, request: Request) {
        // Fails only once the worker has stopped, when nothing can be done.
        let _ = self.jobs.send(Job::Request(request));
    }
}

impl Drop for DaemonBackend {
    /// Stops the node cleanly (store flushed) before the app exits.
    fn drop(&mut self) {
        let _ = self.jobs.send(Job::Stop);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

#[derive(Clone)]
struct Outbox {
    tx: Sender<Update>,
    waker: Waker,
}

impl Outbox {
    fn send(&self, update: Update) {
        // The window may be gone; then nobody needs the update.
        let _ = self.tx.send(update);
        (self.waker)();
    }
}

fn forward_events(events: &Receiver<Event>, out: &Outbox, jobs: &Sender<Job>) {
    let refresh = || {
        let _ = jobs.send(Job::Request(Request::Refresh));
    };
    // Ends when the node stops (every sender of events is gone).
    while let Ok(event) = events.recv() {
        match event {
            Event::MessageReceived {
                room,
                from,
                id,
                timestamp,
                text,
                muted,
                cursor,
                ..
            } => out.send(Update::Received {
                message: MessageInfo {
                    room,
                    from,
                    id,
                    // A hybrid-logical-clock timestamp: milliseconds above
                    // a counter.
                    timestamp: crate::proto::hlc::millis(timestamp),
                    text,
                    cursor: Some(cursor),
                    hlc: timestamp,
                    deliveries: None,
                },
                muted,
            }),
            // Shown as such; its text replaces it if the key comes.
            Event::Undecryptable {
                room,
                from,
                id,
                timestamp,
                cursor,
                ..
            } => out.send(Update::Received {
                message: MessageInfo {
                    room,
                    from,
                    id,
                    timestamp: crate::proto::hlc::millis(timestamp),
                    text: UNREADABLE.to_owned(),
                    cursor: Some(cursor),
                    hlc: timestamp,
                    deliveries: None,
                },
                // Nothing to read: not worth a notification.
                muted: true,
            }),
            Event::Delivered { to, id, .. } => out.send(Update::Delivered { to, id }),
            Event::Undelivered { to, id, .. } | Event::Refused { to, id, .. } => {
                out.send(Update::Undelivered { to, id });
            }
            Event::PeerOnline { peer, .. } => {
                out.send(Update::PeerOnline { peer });
                refresh();
            }
            Event::PeerOffline { peer, .. } => out.send(Update::PeerOffline { peer }),
            Event::RoomInvited {
                room, name, from, ..
            } => {
                out.send(Update::Invited { room, name, from });
                refresh();
            }
            Event::RoomJoined { .. } | Event::RoomChanged { .. } | Event::PeerRenamed { .. } => {
                refresh();
            }
            // The node keeps the read markers: its counts are the badges.
            Event::UnreadChanged {
                room,
                unread,
                unread_muted,
            } => out.send(Update::Unread {
                room,
                unread: badge_count(unread, unread_muted),
            }),
            Event::Receipt {
                id, delivered, of, ..
            } => out.send(Update::Receipt { id, delivered, of }),
            Event::RoomRemoved { room, .. } => {
                out.send(Update::Removed { room });
                refresh();
            }
            Event::ContactRequest { peer, .. } => {
                out.send(Update::ContactRequest { peer });
                refresh();
            }
        }
    }
}

/// Owns the handle; runs every blocking call.
struct Worker {
    handle: DaemonHandle,
    out: Outbox,
    /// Rooms whose newest page was sent unasked (for the sidebar's order
    /// and previews, and what came while the app was closed).
    primed: HashSet<RoomId>,
    /// The search thread's queue, once a search was asked for.
    searches: Option<Sender<SearchJob>>,
}

impl Worker {
    fn handle_request(&mut self, request: Request) {
        let handle = &self.handle;
        let result = match request {
            Request::SendDirect { local, peer, text } => {
                self.sent(local, handle.send(peer, &text));
                return;
            }
            Request::SendRoom { local, room, text } => {
                self.sent(local, handle.send_room(room, &text));
                return;
            }
            Request::CreateRoom { name, members } => match handle.create_room(&name, &members) {
                Ok(room) => {
                    self.out.send(Update::RoomCreated { room, name });
                    Ok(())
                }
                Err(e) => Err(format!("Could not create the room: {e}")),
            },
            Request::Invite { room, peer } => handle
                .invite(room, peer)
                .map_err(|e| format!("Could not add to the room: {e}")),
            Request::Remove { room, peer } => handle
                .remove_member(room, peer)
                .map_err(|e| format!("Could not remove from the room: {e}")),
            Request::Leave { room } => handle
                .leave(room)
                .map_err(|e| format!("Could not leave the room: {e}")),
            Request::AnswerInvite { room, accept } => handle
                .answer_invite(room, accept)
                .map_err(|e| format!("Could not answer the invitation: {e}")),
            Request::Mute { target, until } => {
                let target = match target {
                    Target::Room(room) => PeerId(room.0).to_hex(),
                    Target::Peer(peer) => peer.to_hex(),
                };
                let mute = until.map(|until| match until {
                    MuteUntil::Until(end) => Mute::Until(end),
                    MuteUntil::Forever => Mute::Indefinitely,
                });
                handle
                    .mute(&target, mute)
                    .map_err(|e| format!("Could not change the mute: {e}"))
            }
            Request::Block { peer, blocked } => handle.block(peer, blocked).map_err(|e| {
                let verb = if blocked { "block" } else { "unblock" };
                format!("Could not {verb}: {e}")
            }),
            Request::Accept { peer } => handle
                .accept(peer)
                .map_err(|e| format!("Could not accept: {e}")),
            // Persisted; the new count comes back as `UnreadChanged`.
            Request::MarkRead { room, up_to } => {
                if let Err(error) = handle.mark_read(room, up_to) {
                    self.out
                        .send(Update::Error(format!("Could not mark as read: {error}")));
                }
                return;
            }
            Request::LoadHistory {
                room,
                before,
                limit,
            } => {
                match handle.history(room, before, limit) {
                    Ok(page) => self.out.send(Update::History {
                        room,
                        complete: page.next.is_none(),
                        messages: page.rows.into_iter().map(|r| row_info(room, r)).collect(),
                    }),
                    Err(error) => {
                        // Not asked again by itself: the next scroll to the
                        // top retries.
                        self.out.send(Update::History {
                            room,
                            messages: Vec::new(),
                            complete: false,
                        });
                        self.out.send(Update::Error(format!(
                            "Could not read the history: {error}"
                        )));
                    }
                }
                return;
            }
            Request::Refresh => {
                self.refresh();
                return;
            }
            Request::Settings(request) => {
                self.handle_settings(request);
                return;
            }
            Request::Search {
                seq,
                text,
                room,
                before,
                limit,
            } => {
                self.search(SearchJob {
                    seq,
                    text,
                    room,
                    before,
                    limit,
                });
                return;
            }
        };
        if let Err(error) = result {
            self.out.send(Update::Error(error));
        }
        self.refresh();
    }

    fn sent(&self, local: u64, result: Result<MessageId, daemon::DaemonError>) {
        self.out.send(match result {
            Ok(id) => Update::Sent { local, id },
            Err(error) => Update::SendFailed {
                local,
                error: error.to_string(),
            },
        });
    }

    /// Reads rooms, people and blocked peers; a failure is one toast.
    fn refresh(&mut self) {
        let now = now_millis();
        let handle = &self.handle;
        let result = (|| {
            let rooms = handle.rooms()?;
            let peers = handle.peers()?;
            let seen = handle.discovery()?.peers;
            let blocked = handle.blocked()?;
            Ok::<_, daemon::DaemonError>((rooms, peers, seen, blocked))
        })();
        match result {
            Ok((rooms, peers, seen, blocked)) => {
                let seen: HashMap<PeerId, _> = seen.into_iter().map(|s| (s.peer, s)).collect();
                let people = peers
                    .into_iter()
                    .map(|peer| {
                        let sighting = seen.get(&peer.peer);
                        person_info(&peer, sighting, now)
                    })
                    .collect();
                self.out.send(Update::Blocked(blocked));
                self.out.send(Update::People(people));
                let room_ids: Vec<RoomId> =
                    rooms.iter().filter(|r| !r.invited).map(|r| r.id).collect();
                let unread: Vec<Update> = rooms
                    .iter()
                    .map(|r| Update::Unread {
                        room: r.id,
                        unread: badge_count(r.unread, r.unread_muted),
                    })
                    .collect();
                self.out
                    .send(Update::Rooms(rooms.into_iter().map(room_info).collect()));
                for update in unread {
                    self.out.send(update);
                }
                self.prime(&room_ids);
            }
            Err(error) => self
                .out
                .send(Update::Error(format!("Could not read the node: {error}"))),
        }
    }
}

/// A search for the search thread.
struct SearchJob {
    seq: u64,
    text: String,
    room: Option<RoomId>,
    before: Option<crate::store::Position>,
    limit: usize,
}

impl Worker {
    /// Hands a search to the search thread (started on first use): a
    /// search opens every message it looks at and may take a while, and
    /// sends, pages and refreshes must not wait for it.
    fn search(&mut self, job: SearchJob) {
        let job = match &self.searches {
            None => job,
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                // The thread is gone: start another.
                Err(std::sync::mpsc::SendError(job)) => job,
            },
        };
        let (tx, rx) = channel::<SearchJob>();
        let client = self.handle.search_client();
        let out = self.out.clone();
        let started = std::thread::Builder::new()
            .name("kith-ui-search".into())
            .spawn(move || run_searches(&rx, &client, &out));
        match started {
            Ok(_) => {
                // The receiver is alive: the thread just started.
                let _ = tx.send(job);
                self.searches = Some(tx);
            }
            Err(error) => self.out.send(Update::SearchAnswer {
                seq: job.seq,
                answer: Err(format!("Could not search: {error}")),
            }),
        }
    }
}

/// The search thread: answers the newest query waiting (older ones are
/// stale: the window drops their answers anyway). Ends when the worker
/// drops its queue.
fn run_searches(jobs: &Receiver<SearchJob>, client: &daemon::SearchClient, out: &Outbox) {
    while let Ok(mut job) = jobs.recv() {
        while let Ok(newer) = jobs.try_recv() {
            job = newer;
        }
        let answer = client
            .search_page(&job.text, job.room, job.before, job.limit)
            .map(|results| {
                results
                    .into_iter()
                    .map(|r| SearchHit {
                        cursor: r.cursor(),
                        room: r.room,
                        id: r.id,
                        from: r.from,
                        timestamp: crate::proto::hlc::millis(r.timestamp),
                        text: r.text,
                    })
                    .collect()
            })
            .map_err(|e| format!("Could not search: {e}"));
        out.send(Update::SearchAnswer {
            seq: job.seq,
            answer,
        });
    }
}

/// The badge's number: unread messages that were not muted when they came
/// (a muted room shows none at all: see `AppState::badge`).
fn badge_count(unread: u64, unread_muted: u64) -> usize {
    usize::try_from(unread.saturating_sub(unread_muted)).unwrap_or(usize::MAX)
}

/// A history row as the window shows it: an unreadable one says so, ours
/// carries how far it got with each recipient.
fn row_info(room: RoomId, row: daemon::HistoryRow) -> MessageInfo {
    let timestamp = row.millis();
    MessageInfo {
        room,
        from: row.author,
        id: row.id,
        timestamp,
        text: row.text.unwrap_or_else(|| UNREADABLE.to_owned()),
        cursor: Some(row.cursor),
        hlc: row.timestamp,
        deliveries: row.ours.then_some(row.deliveries),
    }
}

impl Worker {
    fn handle_settings(&self, request: SettingsRequest) {
        match request {
            SettingsRequest::Rename(name) => match self.handle.set_profile(&name) {
                Ok(()) => {
                    // What mDNS announces from the next start.
                    let short: String = name.chars().take(MAX_NAME_CHARS).collect();
                    if let Err(error) =
                        std::fs::write(self.handle.data_dir().join(NAME_FILE), short)
                    {
                        self.out.send(Update::Error(format!(
                            "Your new name is sent, but not saved for mDNS: {error}"
                        )));
                    }
                    self.out
                        .send(Update::Settings(SettingsUpdate::Renamed(name)));
                }
                Err(error) => self.out.send(Update::Error(format!(
                    "Could not change your name: {error}"
                ))),
            },
            SettingsRequest::Save(settings) => {
                if let Err(error) = settings.save(self.handle.data_dir()) {
                    self.out.send(Update::Error(format!(
                        "Could not save the settings: {error}"
                    )));
                }
            }
        }
    }

    /// Sends the newest page of each room not seen yet: what was written
    /// while the app was closed shows in the sidebar (by last activity,
    /// with its preview) before the room is opened.
    fn prime(&mut self, rooms: &[RoomId]) {
        for &room in rooms {
            if self.primed.contains(&room) {
                continue;
            }
            // On failure, tried again at the next refresh (opening the
            // room asks too).
            if let Ok(page) = self.handle.history(room, None, HISTORY_PAGE) {
                self.primed.insert(room);
                self.out.send(Update::History {
                    room,
                    complete: page.next.is_none(),
                    messages: page.rows.into_iter().map(|r| row_info(room, r)).collect(),
                });
            }
        }
    }
}

fn mute_until(mute: Option<Mute>) -> Option<MuteUntil> {
    mute.map(|mute| match mute {
        Mute::Until(end) => MuteUntil::Until(end),
        Mute::Indefinitely => MuteUntil::Forever,
    })
}

fn room_info(room: RoomSummary) -> RoomInfo {
    RoomInfo {
        id: room.id,
        name: room.name,
        direct: room.direct,
        admin: room.admin,
        members: room.members,
        muted: mute_until(room.muted),
        invited: room.invited,
    }
}

fn person_info(
    peer: &PeerInfo,
    sighting: Option<&daemon::address_book::SeenPeer>,
    now: u64,
) -> PersonInfo {
    let relation = if peer.request {
        Relation::Request
    } else if peer.contact {
        Relation::Contact
    } else {
        Relation::Nearby
    };
    let last_seen = sighting
        .and_then(|s| s.heard_ago)
        .map(|ago| now.saturating_sub(u64::try_from(ago.as_millis()).unwrap_or(u64::MAX)));
    PersonInfo {
        id: peer.peer,
        public_key: PeerId(peer.public.to_bytes()).to_hex(),
        // The signed profile name first; else what it announced by mDNS.
        name: peer
            .name
            .clone()
            .or_else(|| peer.name_hint.clone())
            .or_else(|| sighting.map(|s| s.name.clone()))
            .unwrap_or_default(),
        relation,
        // A nearby peer is not probed, so never "online"; being announced
        // is its presence.
        online: peer.online || (relation == Relation::Nearby && peer.addr.is_some()),
        last_seen,
        muted: mute_until(peer.muted),
    }
}

/// A backend without a node, for tests: it records every request and
/// answers like a node would (sends are stored at once, rooms are created,
/// history is served from pages given to it, newest first by cursor; with
/// [`FakeBackend::set_unread`] it keeps read markers as the node does).
#[derive(Clone)]
pub struct FakeBackend {
    inner: Arc<Mutex<FakeInner>>,
    out: Outbox,
}

struct FakeInner {
    requests: Vec<Request>,
    next_id: u32,
    history: HashMap<RoomId, Vec<MessageInfo>>,
    /// Unread counts, once the test gave one: then `MarkRead` zeroes them.
    unread: Option<HashMap<RoomId, usize>>,
}

impl FakeBackend {
    /// A fake and the channel its updates come on.
    pub fn new(waker: Waker) -> (Self, Receiver<Update>) {
        let (tx, rx) = channel();
        (
            FakeBackend {
                inner: Arc::new(Mutex::new(FakeInner {
                    requests: Vec::new(),
                    next_id: 1,
                    history: HashMap::new(),
                    unread: None,
                })),
                out: Outbox { tx, waker },
            },
            rx,
        )
    }

    /// Sends an update as if the node had.
    pub fn push(&self, update: Update) {
        self.out.send(update);
    }

    /// Every request so far, and forgets them.
    pub fn take_requests(&self) -> Vec<Request> {
        std::mem::take(&mut self.lock().requests)
    }

    /// Stored history of `room`, oldest first, served in pages. Messages
    /// without a cursor get their place (1, 2, …) as one.
    pub fn set_history(&self, room: RoomId, messages: Vec<MessageInfo>) {
        let messages = messages
            .into_iter()
            .zip(1..)
            .map(|(mut m, n)| {
                m.cursor = m.cursor.or(Some(n));
                m
            })
            .collect();
        self.lock().history.insert(room, messages);
    }

    /// Keeps read markers from now on, as the node does: `room` has
    /// `unread` messages (sent as [`Update::Unread`]) until marked read.
    pub fn set_unread(&self, room: RoomId, unread: usize) {
        self.lock()
            .unread
            .get_or_insert_with(HashMap::new)
            .insert(room, unread);
        self.out.send(Update::Unread { room, unread });
    }

    /// The unread count kept for `room` (`None`: no markers kept).
    pub fn unread(&self, room: RoomId) -> Option<usize> {
        self.lock().unread.as_ref()?.get(&room).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeInner> {
        // A test that panicked while holding it has failed already.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The id the fake gives its `n`th sent message.
    pub fn message_id(n: u32) -> MessageId {
        let mut bytes = [0xee; 32];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        MessageId(bytes)
    }

    /// The id the fake gives a room named `name`.
    pub fn room_id(name: &str) -> RoomId {
        RoomId(*blake3::hash(name.as_bytes()).as_bytes())
    }
}

impl Backend for FakeBackend {
    fn submit(&self, request: Request) {
        let answer = {
            let mut inner = self.lock();
            inner.requests.push(request.clone());
            match request {
                Request::SendDirect { local, .. } | Request::SendRoom { local, .. } => {
                    let n = inner.next_id;
                    inner.next_id += 1;
                    Some(Update::Sent {
                        local,
                        id: Self::message_id(n),
                    })
                }
                Request::CreateRoom { name, .. } => Some(Update::RoomCreated {
                    room: Self::room_id(&name),
                    name,
                }),
                Request::LoadHistory {
                    room,
                    before,
                    limit,
                } => {
                    let all = inner.history.get(&room).cloned().unwrap_or_default();
                    let end = before.map_or(all.len(), |b| {
                        all.iter()
                            .position(|m| m.cursor.is_some_and(|c| c >= b))
                            .unwrap_or(all.len())
                    });
                    let start = end.saturating_sub(limit);
                    // Newest first, as the node pages.
                    let mut messages = all[start..end].to_vec();
                    messages.reverse();
                    Some(Update::History {
                        room,
                        messages,
                        complete: start == 0,
                    })
                }
                Request::MarkRead { room, .. } => inner.unread.as_mut().map(|unread| {
                    unread.insert(room, 0);
                    Update::Unread { room, unread: 0 }
                }),
                Request::Settings(SettingsRequest::Rename(name)) => {
                    Some(Update::Settings(SettingsUpdate::Renamed(name)))
                }
                // Over the history given to it, newest first, as the node.
                Request::Search {
                    seq,
                    text,
                    room,
                    before,
                    limit,
                } => {
                    let needle = text.to_lowercase();
                    let mut hits: Vec<SearchHit> = inner
                        .history
                        .values()
                        .flatten()
                        .filter(|m| room.is_none_or(|r| m.room == r))
                        .filter(|m| m.text.to_lowercase().contains(&needle))
                        .map(|m| SearchHit {
                            room: m.room,
                            id: m.id,
                            from: m.from,
                            timestamp: m.timestamp,
                            text: m.text.clone(),
                            cursor: crate::store::Position {
                                timestamp: m.timestamp,
                                id: m.id,
                            },
                        })
                        .filter(|h| before.is_none_or(|b| h.cursor < b))
                        .collect();
                    hits.sort_by_key(|h| std::cmp::Reverse(h.cursor));
                    hits.truncate(limit);
                    Some(Update::SearchAnswer {
                        seq,
                        answer: Ok(hits),
                    })
                }
                _ => None,
            }
        };
        if let Some(update) = answer {
            self.out.send(update);
        }
    }
}

/// A [`Launcher`] that hands out a [`FakeBackend`] (after checking nothing:
/// any passphrase unlocks), for tests of the window.
pub struct FakeLauncher {
    pub me: Me,
    /// The fake handed out, for the test to drive.
    pub fake: Mutex<Option<FakeBackend>>,
}

impl FakeLauncher {
    pub fn new(me: Me) -> Arc<Self> {
        Arc::new(FakeLauncher {
            me,
            fake: Mutex::new(None),
        })
    }

    /// The fake backend, once the window unlocked.
    pub fn backend(&self) -> Option<FakeBackend> {
        self.fake
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Launcher for FakeLauncher {
    fn launch(&self, args: LaunchArgs, waker: Waker) -> Result<Connection, String> {
        if args.passphrase == "wrong" {
            return Err("wrong passphrase".into());
        }
        let (fake, updates) = FakeBackend::new(waker);
        *self
            .fake
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fake.clone());
        let mut me = self.me.clone();
        if args.creating {
            me.name = args.name;
        }
        let node = NodeInfo {
            listen: None,
            interfaces: args.interfaces.clone().unwrap_or_default(),
            from_command_line: false,
            saved: AppSettings {
                interfaces: args.interfaces,
                ..AppSettings::default()
            },
        };
        Ok(Connection {
            backend: Box::new(fake),
            updates,
            me,
            node,
        })
    }
}

impl<T: Launcher + ?Sized> Launcher for Arc<T> {
    fn launch(&self, args: LaunchArgs, waker: Waker) -> Result<Connection, String> {
        (**self).launch(args, waker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::node::direct_room;
    use crate::ui::state::{AppState, Intent};

    fn no_wake() -> Waker {
        Arc::new(|| {})
    }

    #[test]
    fn the_fake_answers_sends_and_pages_and_wakes_the_window() {
        let woken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = woken.clone();
        let (fake, updates) = FakeBackend::new(Arc::new(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
        let me = PeerId([0; 32]);
        let room = RoomId([9; 32]);
        let mut state = AppState::new(me, String::new(), "Me".into());
        state.apply(Update::Tick { now: 10_000 });
        state.apply(Update::Rooms(vec![RoomInfo {
            id: room,
            name: "kitchen".into(),
            direct: None,
            admin: Some(me),
            members: vec![me, PeerId([1; 32])],
            muted: None,
            invited: false,
        }]));
        fake.set_history(
            room,
            (0..120)
                .map(|i| MessageInfo {
                    room,
                    from: PeerId([1; 32]),
                    id: FakeBackend::message_id(1000 + i),
                    timestamp: u64::from(i),
                    text: format!("m{i}"),
                    cursor: None,
                    hlc: 0,
                    deliveries: None,
                })
                .collect(),
        );
        let drive = |state: &mut AppState, intent| {
            for request in state.handle_intent(intent) {
                fake.submit(request);
            }
            while let Ok(update) = updates.try_recv() {
                state.apply(update);
            }
        };
        drive(&mut state, Intent::OpenRoom(room));
        drive(&mut state, Intent::LoadOlder);
        drive(&mut state, Intent::LoadOlder);
        let history = &state.histories[&room];
        assert!(history.complete);
        let texts: Vec<String> = history.messages.iter().map(|m| m.text.clone()).collect();
        let expected: Vec<String> = (0..120).map(|i| format!("m{i}")).collect();
        assert_eq!(texts, expected);
        drive(&mut state, Intent::Send("hello".into()));
        let last = state.histories[&room].messages.last().expect("sent");
        assert_eq!(last.id, Some(FakeBackend::message_id(1)));
        assert!(woken.load(std::sync::atomic::Ordering::SeqCst) >= 4);
        assert!(matches!(
            fake.take_requests().last(),
            Some(Request::SendRoom { .. })
        ));
        let _ = no_wake();
    }

    #[test]
    fn the_fake_keeps_read_markers_like_the_node() {
        let (fake, updates) = FakeBackend::new(no_wake());
        let me = PeerId([0; 32]);
        let sam = PeerId([1; 32]);
        let room = direct_room(me, sam);
        fake.set_history(
            room,
            (0..3)
                .map(|i| MessageInfo {
                    room,
                    from: sam,
                    id: FakeBackend::message_id(500 + i),
                    timestamp: 1_000 + u64::from(i),
                    text: format!("away {i}"),
                    cursor: None,
                    hlc: 0,
                    deliveries: None,
                })
                .collect(),
        );
        fake.set_unread(room, 3);
        let drain = |state: &mut AppState| {
            while let Ok(update) = updates.try_recv() {
                state.apply(update);
            }
        };
        assert_eq!(fake.unread(room), Some(3));
        let mut state = AppState::new(me, String::new(), "Me".into());
        drain(&mut state);
        state.apply(Update::Rooms(vec![RoomInfo {
            id: room,
            name: String::new(),
            direct: Some(sam),
            admin: None,
            members: vec![me, sam],
            muted: None,
            invited: false,
        }]));
        state.apply(Update::Unread { room, unread: 3 });
        assert_eq!(state.badge(&state.rooms[&room]), Some(3));
        // Opening asks for the newest page and marks the room read; the
        // fake answers both as the node does.
        for request in state.handle_intent(Intent::OpenRoom(room)) {
            fake.submit(request);
        }
        drain(&mut state);
        assert_eq!(fake.unread(room), Some(0));
        assert_eq!(state.rooms[&room].unread, 0);
        let texts: Vec<&str> = state.histories[&room]
            .messages
            .iter()
            .map(|m| m.text.as_str())
            .collect();
        assert_eq!(texts, ["away 0", "away 1", "away 2"]);
        assert_eq!(state.histories[&room].divider, Some(0));
        // Paged by cursor, newest first.
        fake.submit(Request::LoadHistory {
            room,
            before: Some(3),
            limit: 1,
        });
        assert!(matches!(
            updates.try_recv(),
            Ok(Update::History { messages, complete: false, .. })
                if messages.len() == 1 && messages[0].text == "away 1"
        ));
    }

    #[test]
    fn peers_map_to_people_with_relation_name_and_last_seen() {
        let public = crate::proto::crypto::Identity::generate(&mut rand::rng()).public();
        let info = PeerInfo {
            peer: public.peer_id(),
            public: public.clone(),
            addr: None,
            online: false,
            watched: true,
            outbox: 0,
            contact: true,
            request: false,
            muted: Some(Mute::Until(5)),
            display_name: String::new(),
            name: None,
            name_hint: None,
        };
        let seen = daemon::address_book::SeenPeer {
            peer: public.peer_id(),
            name: "Lee".into(),
            addr: None,
            source: None,
            online: false,
            heard_ago: Some(Duration::from_secs(60)),
            sighted_ago: None,
            has_key: true,
            contact: true,
            watched: true,
        };
        let person = person_info(&info, Some(&seen), 100_000);
        assert_eq!(person.name, "Lee");
        // A signed profile name wins over what mDNS says.
        let signed = PeerInfo {
            name: Some("Lee Chen".into()),
            ..info.clone()
        };
        assert_eq!(person_info(&signed, Some(&seen), 0).name, "Lee Chen");
        assert_eq!(person.relation, Relation::Contact);
        assert_eq!(person.last_seen, Some(40_000));
        assert_eq!(person.muted, Some(MuteUntil::Until(5)));
        let nearby = PeerInfo {
            contact: false,
            watched: false,
            addr: Some("10.0.0.2:47474".parse().expect("literal")),
            ..info
        };
        let person = person_info(&nearby, None, 0);
        assert_eq!(person.relation, Relation::Nearby);
        assert!(person.online);
    }
}
