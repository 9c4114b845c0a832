//! What the user does: [`AppState::handle_intent`] changes the state and
//! returns the requests for the node.

use super::*;

impl AppState {
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
            Intent::Draft { room, text } => {
                if text.is_empty() {
                    self.drafts.remove(&room);
                } else {
                    self.drafts.insert(room, text);
                }
                Vec::new()
            }
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
                if dialog == Dialog::Network {
                    // A fresh form; the report is asked for at once.
                    self.network.add_error = None;
                    self.network.added = None;
                    self.network.report = None;
                    self.network.asked = None;
                }
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
            Intent::Network(intent) => self.handle_network(intent),
            Intent::File(intent) => self.handle_file(intent),
        }
    }

    pub(super) fn open_room(&mut self, room: RoomId) -> Vec<Request> {
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

    pub(super) fn mark_read(&mut self, room: RoomId) -> Option<Request> {
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

    pub(super) fn send(&mut self, text: String) -> Vec<Request> {
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
        let Some((local, direct)) = self.post_own(room_id, text.clone()) else {
            return Vec::new();
        };
        let request = match direct {
            Some(peer) => Request::SendDirect { local, peer, text },
            None => Request::SendRoom {
                local,
                room: room_id,
                text,
            },
        };
        vec![request]
    }

    /// Puts our message `text` in `room_id`'s history as queued, with
    /// every other member as a recipient; the room moves up and its
    /// preview is ours. Returns the message's local number and the
    /// room's peer if it is a direct chat; `None` if the room is unknown.
    pub(super) fn post_own(
        &mut self,
        room_id: RoomId,
        text: String,
    ) -> Option<(u64, Option<PeerId>)> {
        let room = self.rooms.get_mut(&room_id)?;
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
        let direct = room.info.direct;
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
        Some((local, direct))
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

    pub(super) fn received(&mut self, message: MessageInfo, muted: bool) {
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

    pub(super) fn own_message_mut(
        &mut self,
        matches: impl Fn(&Own) -> bool,
    ) -> Option<&mut Message> {
        self.histories
            .values_mut()
            .flat_map(|h| h.messages.iter_mut().rev())
            .find(|m| m.own.as_ref().is_some_and(&matches))
    }

    pub(super) fn own_message_mut_by_id(&mut self, id: MessageId) -> Option<&mut Own> {
        self.histories
            .values_mut()
            .flat_map(|h| h.messages.iter_mut().rev())
            .find(|m| m.id == Some(id))
            .and_then(|m| m.own.as_mut())
    }

    pub(super) fn set_mute(&mut self, target: Target, until: Option<MuteUntil>) {
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

    pub(super) fn toast(&mut self, text: String, error: bool) {
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
}
