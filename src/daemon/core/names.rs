//! What a person typed, as ids; the peer table; contact requests, blocks
//! and mutes.

use super::*;

/// `text` as a lower-case hex prefix long enough (4+ characters) to name
/// an id, if it is one.
pub(super) fn hex_prefix(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    (lower.len() >= 4 && lower.chars().all(|c| c.is_ascii_hexdigit())).then_some(lower)
}

pub(super) fn names_room(prefix: Option<&str>, room: &RoomId) -> bool {
    prefix.is_some_and(|p| PeerId(room.0).to_hex().starts_with(p))
}

/// The single match of what the user typed, or why there is not one.
pub(super) fn only_one<T: Copy>(
    found: &[T],
    text: &str,
    none: impl FnOnce() -> DaemonError,
) -> Result<T, DaemonError> {
    match found {
        [one] => Ok(*one),
        [] => Err(none()),
        _ => Err(DaemonError::Ambiguous(text.to_owned())),
    }
}

impl DaemonCore {
    /// Resolves a peer as the user typed it: its id or public key in hex,
    /// an unambiguous hex prefix of either (at least 4 characters), or a
    /// contact's display name.
    pub(crate) fn resolve_peer(&self, text: &str) -> Result<PeerId, DaemonError> {
        let unknown = || DaemonError::UnknownPeer(text.to_owned());
        let text = text.trim();
        if let Some(id) = PeerId::from_hex(text) {
            if self.peers.contains_key(&id) {
                return Ok(id);
            }
            // A public key is 32 bytes too.
            return self
                .peers
                .iter()
                .find(|(_, entry)| entry.public.to_bytes() == id.0)
                .map(|(peer, _)| *peer)
                .or_else(|| self.discovery.public_of(&id).map(|p| p.peer_id()))
                // A room member who is not a contact (the node knows it).
                .or_else(|| {
                    (id != self.node.peer_id() && self.node.public_of(&id).is_some()).then_some(id)
                })
                .ok_or_else(unknown);
        }
        if let Some(prefix) = hex_prefix(text) {
            let matches: Vec<PeerId> = self
                .peers
                .iter()
                .filter(|(peer, entry)| {
                    peer.to_hex().starts_with(&prefix)
                        || PeerId(entry.public.to_bytes())
                            .to_hex()
                            .starts_with(&prefix)
                })
                .map(|(peer, _)| *peer)
                .collect();
            if !matches.is_empty() {
                return only_one(&matches, text, unknown);
            }
        }
        let named = self.profiles.resolve(text);
        if !named.is_empty() {
            return only_one(&named, text, unknown);
        }
        let named: Vec<PeerId> = self
            .store
            .contacts()?
            .into_iter()
            .filter(|c| c.display_name == text && self.peers.contains_key(&c.peer))
            .map(|c| c.peer)
            .collect();
        only_one(&named, text, unknown)
    }

    /// Resolves a group room: its id in hex, an unambiguous hex prefix (at
    /// least 4 characters), or its exact name.
    pub(crate) fn resolve_room(&self, text: &str) -> Result<RoomId, DaemonError> {
        let text = text.trim();
        let groups: Vec<RoomInfo> = self
            .node
            .rooms()
            .into_iter()
            .filter(|r| r.admin.is_some())
            .collect();
        let prefix = hex_prefix(text);
        let by_id: Vec<RoomId> = groups
            .iter()
            .filter(|r| names_room(prefix.as_deref(), &r.id))
            .map(|r| r.id)
            .collect();
        let by_name: Vec<RoomId> = groups
            .iter()
            .filter(|r| r.name == text)
            .map(|r| r.id)
            .collect();
        let found = if by_id.is_empty() { by_name } else { by_id };
        only_one(&found, text, || DaemonError::UnknownRoom(text.to_owned()))
    }

    /// A pending invitation by room id, hex prefix or name.
    pub(super) fn resolve_invitation(&self, text: &str) -> Result<RoomId, DaemonError> {
        let text = text.trim();
        let prefix = hex_prefix(text);
        let found: Vec<RoomId> = self
            .node
            .invitations()
            .into_iter()
            .filter(|(room, name, _)| name == text || names_room(prefix.as_deref(), room))
            .map(|(room, _, _)| room)
            .collect();
        only_one(&found, text, || DaemonError::UnknownRoom(text.to_owned()))
    }

    /// A message's destination: a group room, or else a peer. A full id
    /// (what an application passes with every send) is looked up at once;
    /// anything else is matched against every room's and peer's names and
    /// id prefixes.
    pub(super) fn resolve_target(&self, text: &str) -> Result<Target, DaemonError> {
        if let Some(id) = PeerId::from_hex(text.trim()) {
            let room = RoomId(id.0);
            if self.node.room(&room).is_some_and(|r| r.admin.is_some()) {
                return Ok(Target::Room(room));
            }
            if self.peers.contains_key(&id) {
                return Ok(Target::Peer(id));
            }
        }
        match self.resolve_room(text) {
            Ok(room) => Ok(Target::Room(room)),
            Err(DaemonError::Ambiguous(text)) => Err(DaemonError::Ambiguous(text)),
            Err(_) => self.resolve_peer(text).map(Target::Peer),
        }
    }

    /// Text a person typed, as an id of `kind`.
    pub(super) fn resolve(&self, text: &str, kind: ResolveKind) -> Result<Target, DaemonError> {
        match kind {
            ResolveKind::Peer => self.resolve_peer(text).map(Target::Peer),
            ResolveKind::Room => self.resolve_room(text).map(Target::Room),
            ResolveKind::Target => self.resolve_target(text),
            ResolveKind::Invitation => self.resolve_invitation(text).map(Target::Room),
        }
    }

    /// The peer table: contacts, then peers found nearby; blocked ones
    /// left out.
    pub(super) fn peers(&mut self) -> Vec<PeerInfo> {
        let mut peers: Vec<PeerInfo> = self
            .peers
            .iter()
            .filter(|(id, _)| !self.node.is_blocked(id))
            .map(|(id, entry)| PeerInfo {
                peer: *id,
                public: entry.public.clone(),
                addr: self.discovery.addr_of(id),
                online: self.discovery.is_online(id),
                watched: self.discovery.is_watched(id),
                outbox: self.outbox_len(id),
                contact: true,
                request: self.requests.contains(id),
                muted: self.mute_of(&id.0),
                display_name: String::new(),
                name: None,
                name_hint: None,
            })
            .collect();
        let nearby: Vec<PeerInfo> = self
            .discovery
            .nearby()
            .filter(|(id, _, _)| !self.peers.contains_key(id))
            .map(|(id, public, addr)| PeerInfo {
                peer: id,
                public,
                addr,
                online: self.discovery.is_online(&id),
                watched: self.discovery.is_watched(&id),
                outbox: 0,
                contact: false,
                request: false,
                muted: None,
                display_name: String::new(),
                name: None,
                name_hint: None,
            })
            .collect();
        peers.extend(nearby);
        self.profiles.set_hints(self.discovery.announced_names());
        for peer in &mut peers {
            peer.display_name = self.profiles.label(&peer.peer);
            peer.name = self.profiles.name(&peer.peer).map(str::to_owned);
            peer.name_hint = self.profiles.hint(&peer.peer).map(str::to_owned);
        }
        peers.sort_by_key(|p| p.peer);
        peers
    }

    /// Someone who is not a contact wrote to us: a contact request.
    pub(super) fn promote(&mut self, now: Instant, peer: PeerId) {
        if self.peers.contains_key(&peer) {
            return;
        }
        let Some(public) = self
            .strangers_met
            .remove(&peer)
            .or_else(|| self.discovery.public_of(&peer))
        else {
            return;
        };
        let result = self
            .learn_contact(now, public)
            .and_then(|()| Ok(self.db()?.set_contact_request(&peer, true)?));
        if let Err(error) = result {
            self.store_error("store a contact request", error);
        }
        self.requests.insert(peer);
        self.publish(Event::ContactRequest {
            peer,
            peer_name: String::new(),
        });
    }

    pub(super) fn block(
        &mut self,
        now: Instant,
        peer: PeerId,
        blocked: bool,
    ) -> Result<PeerId, DaemonError> {
        if peer == self.node.peer_id() {
            return Err(DaemonError::UnknownPeer("our own id".to_owned()));
        }
        self.discovery.set_blocked(now, peer, blocked);
        self.apply_book_actions(now);
        if blocked {
            let wall_ms = self.clock.wall_ms;
            self.db()?.block(&peer, wall_ms)?;
            // Declining a request is blocking.
            self.requests.remove(&peer);
            self.db()?.set_contact_request(&peer, false)?;
        } else {
            self.db()?.unblock(&peer)?;
        }
        Ok(peer)
    }

    pub(super) fn mute(&mut self, target: Target, mute: Option<Mute>) -> Result<(), DaemonError> {
        let key = match target {
            Target::Room(room) => room.0,
            Target::Peer(peer) => peer.0,
        };
        match mute {
            Some(mute) => {
                self.db()?.set_mute(&RoomId(key), mute)?;
                self.mutes.set(key, mute);
            }
            None => {
                self.db()?.clear_mute(&RoomId(key))?;
                self.mutes.clear(&key);
            }
        }
        Ok(())
    }

    /// Whether a message in `room` from `from` is muted now. Mutes that
    /// ended are forgotten on the way.
    pub(super) fn is_muted(&mut self, room: &RoomId, from: &PeerId) -> bool {
        let now = self.clock.wall_ms;
        for ended in self.mutes.expire(now) {
            if let Err(error) = self.db().and_then(|db| db.clear_mute(&RoomId(ended))) {
                self.store_error("clear an ended mute", error);
            }
        }
        self.mutes.is_muted(&room.0, &from.0, now)
    }

    pub(super) fn mute_of(&self, key: &[u8; 32]) -> Option<Mute> {
        self.mutes.get(key, self.clock.wall_ms)
    }

    /// Mutes or unmutes `target`; the muted share of unread counts
    /// follows.
    pub(super) fn mute_and_recount(
        &mut self,
        target: Target,
        mute: Option<Mute>,
    ) -> Result<(), DaemonError> {
        self.mute(target, mute)?;
        let rooms: Vec<RoomId> = match target {
            Target::Room(room) => vec![room],
            Target::Peer(_) => self.unread.rooms_with_unread(),
        };
        for room in rooms {
            self.recount_unread(room)?;
        }
        Ok(())
    }

    /// Accepts `peer`'s contact request.
    pub(super) fn accept(&mut self, now: Instant, peer: PeerId) -> Result<PeerId, DaemonError> {
        if !self.peers.contains_key(&peer) {
            return Err(DaemonError::UnknownPeer(peer.to_hex()));
        }
        self.db()?.set_contact_request(&peer, false)?;
        self.requests.remove(&peer);
        self.node.share_profile(now, peer);
        Ok(peer)
    }
}
