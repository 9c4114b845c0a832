//! What the node and the address book report, turned into store writes,
//! events and further work; the pump that runs after every input.

use super::*;

/// How often the names discovery heard announced are taken as hints.
pub(super) const HINTS_EVERY: Duration = Duration::from_secs(1);

/// Unproven source addresses kept for answering strangers' handshakes.
pub(super) const MAX_PROVISIONAL: usize = 256;

impl DaemonCore {
    /// Applies what the address book asked of the node, in order.
    pub(super) fn apply_book_actions(&mut self, now: Instant) {
        while let Some(action) = self.discovery.poll_action() {
            match action {
                BookAction::Contact(public) => self.node.add_contact(now, public),
                BookAction::Probe(peer) => self.node.keepalive(now, peer),
                BookAction::Reachable(peer, reachable) => {
                    self.node.set_reachable(now, peer, reachable)
                }
                BookAction::Block(peer) => self.node.block(peer),
                BookAction::Unblock(peer) => self.node.unblock(now, peer),
            }
        }
    }

    /// Runs discovery's output: keep-alives into the node, online/offline
    /// to listeners, learned keys of stored contacts into full contacts.
    pub(super) fn run_discovery(&mut self, now: Instant) {
        let events = self.discovery.drive(now);
        self.apply_book_actions(now);
        for event in events {
            match &event {
                // Whatever it missed while away, and what we missed.
                Event::PeerOnline { peer, .. } => self.sync.came_online(now, *peer),
                Event::PeerOffline { peer, .. } => self.sync.went_offline(peer),
                _ => {}
            }
            self.publish(event);
        }
        for public in self.discovery.take_learned() {
            if let Err(error) = self.learn_contact(now, public) {
                self.store_error("restore a contact", error);
            }
        }
    }

    pub(super) fn on_room_event(&mut self, now: Instant, event: NodeEvent) {
        match event {
            NodeEvent::RoomInvited { room, name, from } => {
                if self.accept_invites
                    && self.peers.contains_key(&from)
                    && !self.requests.contains(&from)
                {
                    self.invitations_to_accept.push(room);
                }
                self.publish(Event::RoomInvited {
                    room,
                    name,
                    from,
                    from_name: String::new(),
                });
            }
            NodeEvent::RoomJoined { room } => {
                self.persist_or_hold_room(now, room);
                let name = self.node.room(&room).map(|r| r.name).unwrap_or_default();
                self.publish(Event::RoomJoined { room, name });
            }
            NodeEvent::RoomChanged { room } => {
                self.persist_or_hold_room(now, room);
                self.publish(Event::RoomChanged { room });
            }
            NodeEvent::RoomRemoved { room } => {
                self.members_changed = true;
                if let Err(error) = self.db().and_then(|db| db.leave_group(&room)) {
                    self.store_error("leave a room", error);
                }
                self.publish(Event::RoomRemoved { room });
            }
            NodeEvent::SyncReceived {
                room,
                peer,
                payload,
            } => self.on_sync_received(now, room, peer, &payload),
            NodeEvent::StrangerMet { public } => {
                // A request only once it writes (a presence probe is not).
                if self.strangers_met.len() >= MAX_PROVISIONAL {
                    self.strangers_met.clear();
                }
                self.discovery.learned_key(public.peer_id(), public.clone());
                self.strangers_met.insert(public.peer_id(), public);
            }
            NodeEvent::ContactLearned { public } => {
                if let Err(error) = self.learn_contact(now, public) {
                    self.store_error("store a contact", error);
                }
            }
            NodeEvent::ProfileReceived {
                peer,
                seq,
                name,
                record,
            } => {
                let stored = self.settle().and_then(|()| {
                    profiles::received(&mut self.store, &mut self.profiles, peer, seq, name, record)
                });
                match stored {
                    Ok(Some(event)) => self.publish(event),
                    Ok(None) => {}
                    Err(error) => self.store_error("store a profile", error),
                }
            }
            _ => {}
        }
    }

    pub(super) fn pump(&mut self, now: Instant) {
        self.resume_fetches(now);
        if self.members_changed {
            self.watch_members(now);
        }
        if now >= self.hints_at {
            self.hints_at = now + HINTS_EVERY;
            self.profiles.set_hints(self.discovery.announced_names());
        }
        self.pump_events(now);
        for room in std::mem::take(&mut self.invitations_to_accept) {
            if let Err(error) = self.node.accept_invite(now, room) {
                log::warn!("cannot accept an invitation: {error}");
            }
            self.pump_events(now);
        }
        self.save_invitations();
        self.enter_outbox(now, false);
    }

    /// Drains the node's events: every received message of this round is
    /// journaled in one append, then confirmed (which may produce more
    /// events, hence the loop).
    pub(super) fn pump_events(&mut self, now: Instant) {
        self.run_discovery(now);
        loop {
            while let Some(event) = self.node.poll_event() {
                self.on_node_event(now, event);
            }
            if !self.journal.has_uncommitted() {
                self.save_chains();
                return;
            }
            if self.journal.deferring || self.journal.holds_failed_append() {
                // A burst of datagrams is under way: one transaction for
                // all of it, at `end_burst`. Or the last append failed
                // (a full disk): the settling's retry tries it again.
                return;
            }
            if !self.journal_received(now) {
                return;
            }
        }
    }

    /// One event of the node.
    fn on_node_event(&mut self, now: Instant, event: NodeEvent) {
        match event {
            NodeEvent::MessageReceived {
                room,
                from,
                id,
                timestamp,
                body,
                envelope,
                receipt,
                ..
            } => {
                self.discovery.activity(now, from);
                let message = stored(room, from, id, timestamp, body, envelope);
                self.note_file_message(&message);
                let event = self.received_event(&message);
                self.receive(now, message, receipt, event);
            }
            NodeEvent::Undecryptable {
                room,
                from,
                id,
                timestamp,
                envelope,
                receipt,
            } => {
                // Stored with an empty body: the envelope is kept, so a
                // later key can still open it.
                let message = stored(room, from, id, timestamp, Vec::new(), envelope);
                let event = Event::Undecryptable {
                    room,
                    from,
                    from_name: String::new(),
                    id,
                    timestamp,
                    cursor: 0,
                };
                self.receive(now, message, receipt, event);
            }
            NodeEvent::Delivered { to, id, .. } => self.on_delivered(now, to, id),
            NodeEvent::Undelivered { to, id, .. } => {
                self.publish(Event::Undelivered {
                    to,
                    to_name: String::new(),
                    id,
                });
            }
            NodeEvent::Refused { to, id, .. } => {
                // Not delivered: it stays waiting for `to` (and so goes
                // into the outbox, sent again at the next start).
                self.status.refused += 1;
                self.publish(Event::Refused {
                    to,
                    to_name: String::new(),
                    id,
                });
            }
            NodeEvent::ChainKnown { chain } => self.chains_known.push(chain),
            // Presence (keep-alives) decides online and offline; the
            // reliable layer's view only paces its retransmissions.
            NodeEvent::PeerReachable { .. } | NodeEvent::PeerUnreachable { .. } => {}
            NodeEvent::PeerLeaving { peer } => {
                // Authenticated by the node (sealed under the session with
                // `peer`): show it offline now.
                self.discovery.left(peer);
                self.run_discovery(now);
            }
            NodeEvent::FileReceived {
                room,
                peer,
                payload,
            } => self.on_file_message(now, room, peer, &payload),
            other => self.on_room_event(now, other),
        }
    }

    /// Stores `room`'s state; if the store fails, it is kept for the next
    /// append and the node's datagrams wait (`Journal::withholds_datagrams`).
    fn persist_or_hold_room(&mut self, now: Instant, room: RoomId) {
        if let Err(error) = self.persist_room(&room) {
            self.journal.hold_room(now, room);
            self.store_error("store a room", error);
        }
    }

    pub(super) fn store_error(&mut self, what: &str, error: impl std::fmt::Display) {
        self.status.store_errors += 1;
        log::error!("could not {what}: {error}");
    }
}
