//! A backend and a launcher without a node, for tests of the window.

use super::*;

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
    /// What the Network panel is answered.
    network: crate::ui::state::NetworkReport,
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
                    network: Default::default(),
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

    /// Answers the Network panel with `report` from now on (a peer added
    /// is listed in it too).
    pub fn set_network_report(&self, report: crate::ui::state::NetworkReport) {
        self.lock().network = report;
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
                Request::Network(NetworkRequest::Report) => Some(Update::Network(
                    NetworkUpdate::Report(Ok(Box::new(inner.network.clone()))),
                )),
                Request::Network(NetworkRequest::AddPeer { key, addr }) => {
                    let peer = key.peer_id();
                    inner.network.peers.push(crate::ui::state::HeardPeer {
                        peer,
                        name: String::new(),
                        addr: Some(addr.to_string()),
                        source: Some("direct".to_owned()),
                        presence: "offline".to_owned(),
                        heard_ago: None,
                        sighted_ago: None,
                        contact: true,
                    });
                    Some(Update::Network(NetworkUpdate::Added {
                        peer,
                        result: Ok(()),
                    }))
                }
                Request::File(request) => fake_file_answer(request),
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

/// How the fake answers about files: a share is offered at once (its id
/// the hash of its path, its size read from the disk), directories are
/// listed for real, a download is only recorded (the test sends its
/// progress), opening is recorded.
fn fake_file_answer(request: FileRequest) -> Option<Update> {
    use crate::ui::state::{FileId, FileMeta};
    let update = match request {
        FileRequest::Share { local, path, .. } => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let result = std::fs::metadata(&path)
                .map(|meta| {
                    let hash = blake3::hash(path.as_os_str().as_encoded_bytes());
                    let mut id = *hash.as_bytes();
                    id[0] = 0xf1;
                    (
                        MessageId(id),
                        FileMeta {
                            id: FileId(*hash.as_bytes()),
                            name,
                            size: meta.len(),
                        },
                    )
                })
                .map_err(|e| format!("cannot read {}: {e}", path.display()));
            FileUpdate::Shared { local, result }
        }
        FileRequest::List { dir } => {
            let dir = dir
                .or_else(files::home_dir)
                .unwrap_or_else(|| PathBuf::from("/"));
            FileUpdate::Listing {
                entries: files::list_dir(&dir),
                dir,
            }
        }
        FileRequest::SetSaveTo { dir } => FileUpdate::SaveTo {
            chosen: dir.is_some(),
            dir: dir.unwrap_or_else(|| PathBuf::from("/tmp/kith-downloads")),
        },
        // Never there: the window's own picker is tested.
        FileRequest::PickNative { .. } => FileUpdate::NativePicked {
            path: None,
            missing: true,
        },
        FileRequest::Download { .. } | FileRequest::Open { .. } => return None,
    };
    Some(Update::File(update))
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
            mdns_off: false,
            saved: AppSettings {
                interfaces: args.interfaces,
                ..AppSettings::default()
            },
            choices: NodeChoices {
                keepalive_secs: crate::ui::settings::DEFAULT_KEEPALIVE_SECS,
                ..NodeChoices::default()
            },
            notes: Vec::new(),
        };
        Ok(Connection {
            backend: Box::new(fake),
            updates,
            me,
            node,
        })
    }
}
