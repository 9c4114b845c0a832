//! The real node, run in-process: a worker thread owns the
//! [`DaemonHandle`] and answers requests; another forwards its events.

use super::*;

/// How often rooms and people are read again when nothing happens, for
/// nearby peers (mDNS sightings raise no event) and "last seen".
const REFRESH_EVERY: Duration = Duration::from_secs(3);

enum Job {
    /// Boxed: a request may be large, the queue holds many.
    Request(Box<Request>),
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
                files::announce_save_to(&worker.handle, &worker.out);
                loop {
                    match jobs_rx.recv_timeout(REFRESH_EVERY) {
                        Ok(Job::Request(request)) => worker.handle_request(*request),
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
        let _ = self.jobs.send(Job::Request(Box::new(request)));
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

fn forward_events(events: &Receiver<Event>, out: &Outbox, jobs: &Sender<Job>) {
    let refresh = || {
        let _ = jobs.send(Job::Request(Box::new(Request::Refresh)));
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
                file,
                muted,
                cursor,
                ..
            } => out.send(files::received(
                received_info(room, from, id, timestamp, text, cursor),
                file,
                muted,
            )),
            Event::FileProgress { hash, have, .. } => {
                out.send(Update::File(FileUpdate::Progress {
                    file: FileId(hash.0),
                    received: have,
                }));
            }
            Event::FileComplete { hash, path, .. } => {
                out.send(Update::File(FileUpdate::Downloaded {
                    file: FileId(hash.0),
                    path,
                }));
            }
            Event::FileFailed { hash, reason, .. } => {
                out.send(Update::File(FileUpdate::DownloadFailed {
                    file: FileId(hash.0),
                    error: reason,
                }));
            }
            // Shown as such; its text replaces it if the key comes.
            Event::Undecryptable {
                room,
                from,
                id,
                timestamp,
                cursor,
                ..
            } => out.send(Update::Received {
                message: received_info(room, from, id, timestamp, UNREADABLE.to_owned(), cursor),
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
                    Ok(page) => self.send_page(room, page),
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
            Request::File(request) => {
                files::answer(&self.handle, &self.out, request);
                return;
            }
            Request::Network(request) => {
                let added = matches!(request, NetworkRequest::AddPeer { .. });
                self.out
                    .send(Update::Network(network::answer(&self.handle, request)));
                // A peer added is listed under People at once.
                if added {
                    self.refresh();
                }
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
                        // A file message as the chat shows it: "📎 name",
                        // then its caption.
                        text: match &r.file {
                            Some(file) => files::message_text(file, &r.text),
                            None => r.text,
                        },
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

/// A message just received as the window shows it (`timestamp` is the
/// hybrid-logical-clock one: milliseconds above a counter).
fn received_info(
    room: RoomId,
    from: PeerId,
    id: MessageId,
    timestamp: u64,
    text: String,
    cursor: u64,
) -> MessageInfo {
    MessageInfo {
        room,
        from,
        id,
        timestamp: crate::proto::hlc::millis(timestamp),
        text,
        cursor: Some(cursor),
        hlc: timestamp,
        deliveries: None,
    }
}

impl Worker {
    /// A history page: first how its files stand here (if it has any),
    /// then its rows.
    fn send_page(&self, room: RoomId, page: daemon::HistoryPage) {
        let with_files: Vec<MessageId> = page
            .rows
            .iter()
            .filter(|r| r.file.is_some())
            .map(|r| r.id)
            .collect();
        if let Some(update) = files::known(&self.handle, room, &with_files) {
            self.out.send(update);
        }
        self.out.send(Update::History {
            room,
            complete: page.next.is_none(),
            messages: page.rows.into_iter().map(|r| row_info(room, r)).collect(),
        });
    }
}

/// A history row as the window shows it: an unreadable one says so, ours
/// carries how far it got with each recipient, a file message reads
/// "📎 name".
fn row_info(room: RoomId, row: daemon::HistoryRow) -> MessageInfo {
    let timestamp = row.millis();
    let text = match (&row.file, row.text) {
        (Some(file), caption) => files::message_text(file, caption.as_deref().unwrap_or("")),
        (None, text) => text.unwrap_or_else(|| UNREADABLE.to_owned()),
    };
    MessageInfo {
        room,
        from: row.author,
        id: row.id,
        timestamp,
        text,
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
                self.send_page(room, page);
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

pub(super) fn person_info(
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
