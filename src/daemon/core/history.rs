//! Rooms as a listing shows them, unread counts and read markers as the
//! user moves them, history pages, the replay a catching-up subscriber
//! reads, and search jobs.

use super::*;

/// One chunk of what was stored after a cursor, for a subscriber catching
/// up (see [`DaemonCore::replay_after`]).
pub(crate) struct ReplayChunk {
    /// Messages of others, as events with their cursors, oldest first.
    pub(crate) events: Vec<Event>,
    /// The cursor the next chunk starts after.
    pub(crate) last: u64,
    /// Whether this was the last chunk.
    pub(crate) finished: bool,
}

/// Messages replayed per loop turn to a subscriber catching up, so a long
/// replay never holds the network loop for long.
pub(super) const REPLAY_CHUNK: usize = 256;

impl DaemonCore {
    pub(super) fn rooms(&mut self) -> Vec<RoomSummary> {
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

    pub(super) fn joined_rooms(&mut self) -> Vec<RoomSummary> {
        self.node
            .rooms()
            .into_iter()
            .map(|info| {
                let name = match info.direct {
                    Some(peer) => self.profiles.label(&peer),
                    None => info.name.clone(),
                };
                let unread = self.unread.get(&info.id);
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

    pub(super) fn create_room(
        &mut self,
        now: Instant,
        name: &str,
        members: &[PeerId],
    ) -> Result<RoomId, DaemonError> {
        let room = self.node.create_room(now, name, members)?;
        self.persist_room(&room)?;
        Ok(room)
    }

    /// Takes `room`'s unread count again from the store (at start, when
    /// the marker moved, when a mute changed) and reports a change.
    pub(super) fn recount_unread(&mut self, room: RoomId) -> Result<RoomUnread, DaemonError> {
        let me = self.node.peer_id();
        let now = self.clock.wall_ms;
        let room_muted = self.mutes.get(&room.0, now).is_some();
        let mutes = &self.mutes;
        let (unread, changed) = self.unread.recount(&self.store, room, &me, |sender| {
            room_muted || mutes.get(&sender.0, now).is_some()
        })?;
        if changed {
            self.publish(Event::UnreadChanged {
                room,
                unread: unread.count,
                unread_muted: unread.muted,
            });
        }
        Ok(unread)
    }

    /// Moves `room`'s read marker forward to the message at `up_to` (its
    /// newest message with `None`); returns what is still unread.
    pub(super) fn mark_read(
        &mut self,
        room: RoomId,
        up_to: Option<u64>,
    ) -> Result<u64, DaemonError> {
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
        if !self.unread.move_marker(&mut self.store, room, position)? {
            return Ok(self.unread.get(&room).count);
        }
        Ok(self.recount_unread(room)?.count)
    }

    /// A page of `room`'s history: the store's page, with names and, for
    /// our messages, each recipient's delivery (see [`Delivery`]).
    pub(super) fn history(
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
                    for peer in self.outbox.waiting_for(&entry.message.id) {
                        if !deliveries.iter().any(|(p, _)| p == peer) {
                            deliveries.push((*peer, Delivery::Sent));
                        }
                    }
                    deliveries.sort_by_key(|(peer, _)| *peer);
                }
                let readable = entry.readable();
                let message = entry.message;
                let file = readable
                    .then(|| crate::daemon::files::file_of(&message.envelope, &message.body))
                    .flatten();
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
                    text: readable.then(|| {
                        crate::daemon::files::message_text(
                            &message.envelope,
                            &message.body,
                            file.as_ref(),
                        )
                    }),
                    file: file.as_ref().map(crate::daemon::files::FileInfo::from),
                    ours,
                    deliveries,
                }
            })
            .collect();
        Ok(HistoryPage { room, rows, next })
    }

    /// A search job for the search thread, with the keys of the rooms it
    /// may open (after settling, so it sees every stored message).
    pub(crate) fn search_job(
        &mut self,
        room: Option<&str>,
        query: crate::store::SearchQuery,
        reply: Sender<Result<Vec<SearchResult>, DaemonError>>,
    ) -> Result<SearchJob, DaemonError> {
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
        Ok(SearchJob {
            scope: self.store.search_scope(room.as_ref()),
            query,
            labels: self.profiles.labels(),
            me: self.node.peer_id(),
            reply,
        })
    }

    /// The next chunk of what was stored after cursor `after`: every
    /// message stored before it was read is in a chunk, every one stored
    /// after reaches a subscriber live, so a replay has no gap and no
    /// repeat.
    pub(crate) fn replay_after(&mut self, after: u64) -> ReplayChunk {
        let me = self.node.peer_id();
        let chunk = match self.store.stored_after(after, REPLAY_CHUNK) {
            Ok(chunk) => chunk,
            Err(error) => {
                self.store_error("replay stored messages", error);
                Vec::new()
            }
        };
        let finished = chunk.len() < REPLAY_CHUNK;
        let mut last = after;
        let mut events = Vec::with_capacity(chunk.len());
        for (cursor, message) in chunk {
            last = cursor;
            // Live events report messages of others; so does the replay.
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
            events.push(event);
        }
        ReplayChunk {
            events,
            last,
            finished,
        }
    }
}
