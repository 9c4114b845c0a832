//! Starting from the store: contacts with their keys, configured peers,
//! group rooms, invitations, chains and the outbox; and keeping rooms and
//! contacts stored as they change.

use super::*;

/// How many of the newest stored messages per peer seed the node's
/// duplicate filter at start.
pub(super) const REMEMBER_PER_PEER: usize = 4096;

/// A contact. Its address and presence live in [`AddressBook`].
pub(super) struct PeerEntry {
    pub(super) public: PublicIdentity,
}

impl DaemonCore {
    /// Rebuilds the node from the store (see [`DaemonCore::restore`]).
    /// `clock` is the time of start; `seed` seeds every random choice the
    /// core makes (the node's and the reconciler's generators), so a
    /// simulator that passes a fixed one gets a reproducible run.
    pub(crate) fn new(
        account: Account,
        mut config: NodeConfig,
        peers: &[PeerAddr],
        discovery: DiscoveryConfig,
        clock: Now,
        seed: [u8; 32],
    ) -> Result<Self, DaemonError> {
        let now = clock.mono;
        config.wall_clock_millis = clock.wall_ms;
        // The node would join whoever invites; the core knows who is a
        // contact and decides (see `accept_invites`).
        let accept_invites = std::mem::replace(&mut config.auto_accept_invites, false);
        // The registry client signs our registrations with the same identity.
        let registry_identity = Identity::from_secret_bytes(&account.identity.secret_bytes());
        let discovery = AddressBook::new(discovery, registry_identity)?;
        let mut rng = StdRng::from_seed(seed);
        let node_seed: [u8; 32] = rng.random();
        let sync_seed: [u8; 32] = rng.random();
        let files_seed: [u8; 32] = rng.random();
        let mut node = Node::new(account.identity, config, StdRng::from_seed(node_seed), now);
        let sync = Reconciliation::new(
            SyncManager::new(
                node.peer_id(),
                SyncManagerConfig::default(),
                StdRng::from_seed(sync_seed),
            ),
            now,
        );
        let profiles = ProfileBook::restore(&account.store, &mut node)?;
        let mut core = DaemonCore {
            clock,
            profiles,
            hints_at: now,
            node,
            store: account.store,
            peers: BTreeMap::new(),
            accept_invites,
            invitations_to_accept: Vec::new(),
            outbox: Outbox::default(),
            mutes: MuteTable::default(),
            unread: Unread::default(),
            unpublished: Vec::new(),
            status: Status::default(),
            discovery,
            sync,
            journal: Journal::default(),
            chains_known: Vec::new(),
            unsaved_sends: Vec::new(),
            signed_sends: Vec::new(),
            provisional: HashMap::new(),
            requests: HashSet::new(),
            strangers_met: HashMap::new(),
            members_changed: true,
            listening: false,
            outputs: VecDeque::new(),
            files: files::Files::new(files_seed),
        };
        core.restore(now, peers)?;
        Ok(core)
    }

    /// Blocks, contacts (with their keys), the configured peers'
    /// addresses, the group rooms, invitations, chains and the outbox, in
    /// that order (the outbox goes out ahead of any new key).
    fn restore(&mut self, now: Instant, peers: &[PeerAddr]) -> Result<(), DaemonError> {
        self.requests = self.store.contact_requests()?.into_iter().collect();
        self.unread = Unread::load(&self.store)?;
        for peer in self.store.blocked()? {
            self.discovery.set_blocked(now, peer, true);
            self.apply_book_actions(now);
        }
        self.mutes = MuteTable::new(self.store.mutes()?);
        for (peer, key) in self.store.contact_keys()? {
            match PublicIdentity::from_bytes(&key) {
                Ok(public) if public.peer_id() == peer => self.learn_contact(now, public)?,
                _ => log::warn!("ignoring a stored contact with a bad key"),
            }
        }
        for peer in peers {
            // A configured peer we blocked stays blocked.
            if !self.node.is_blocked(&peer.public.peer_id()) {
                self.add_peer(now, peer.clone())?;
            }
        }
        for public in self.discovery.configured_contacts() {
            self.learn_contact(now, public)?;
        }
        // Contacts stored without a key (by an older version): discovery
        // finds their keys, and then they become full contacts.
        for contact in self.store.contacts()? {
            if !self.peers.contains_key(&contact.peer) && contact.peer != self.node.peer_id() {
                self.discovery.want(now, contact.peer, None, None);
            }
        }
        self.restore_rooms(now)?;
        self.watch_members(now);
        for room in self.node.rooms() {
            self.recount_unread(room.id)?;
        }
        for (room, record) in self.store.invitations()? {
            if self.node.restore_invitation(&record).is_err() {
                log::warn!("dropping a damaged stored invitation to {room:?}");
                self.store.put_invitations(&[(room, None)])?;
            }
        }
        // Our chains come back where they were, and go out again from
        // their origins ahead of the outbox, so every stored envelope can
        // be opened by its recipient.
        self.node.restore_chains(self.store.chains()?);
        self.node.resume(now);
        self.resend_outbox(now)?;
        self.save_chains();
        Ok(())
    }

    /// Stores what is still unacknowledged in the outbox and checkpoints
    /// the store; called once the loop has stopped.
    pub(crate) fn shutdown(mut self, clock: Now) -> Result<(), DaemonError> {
        self.clock = clock;
        let now = clock.mono;
        self.commit_sends(now);
        // Whatever is still unacknowledged is in the outbox for next time;
        // it is written with the journal's last settling.
        self.enter_outbox(now, true);
        self.write_deliveries()?;
        // Keys of members learned during this run (seen nearby, or in a
        // member list) are kept for the next start.
        for room in self.node.rooms().into_iter().filter(|r| r.admin.is_some()) {
            self.persist_room(&room.id)?;
        }
        self.db()?.checkpoint()?;
        Ok(())
    }

    /// Makes `public` a contact (stored with its key) if it is not one.
    pub(super) fn learn_contact(
        &mut self,
        now: Instant,
        public: PublicIdentity,
    ) -> Result<(), DaemonError> {
        let id = public.peer_id();
        if self.peers.contains_key(&id) || id == self.node.peer_id() {
            return Ok(());
        }
        // Discovery keeps looking for it (and lists it as a contact).
        self.discovery.want(now, id, Some(public.clone()), None);
        if !self.db()?.has_contact(&id)? {
            self.db()?.upsert_contact(&Contact {
                peer: id,
                display_name: id.short(),
                verified: false,
            })?;
        }
        self.db()?.set_contact_key(&id, &public.to_bytes())?;
        self.peers.insert(
            id,
            PeerEntry {
                public: public.clone(),
            },
        );
        self.node.add_contact(now, public);
        let room = direct_room(self.node.peer_id(), id);
        let recent = self.db()?.recent_ids(&room, REMEMBER_PER_PEER)?;
        self.node.remember_stored(recent);
        Ok(())
    }

    /// Makes `peer` a contact at `addr` (or gives a contact a new address).
    pub(super) fn add_peer(&mut self, now: Instant, peer: PeerAddr) -> Result<(), DaemonError> {
        let id = peer.public.peer_id();
        if id == self.node.peer_id() {
            return Err(DaemonError::UnknownPeer("our own id".to_owned()));
        }
        if self.node.is_blocked(&id) {
            return Err(DaemonError::Blocked(id.to_hex()));
        }
        self.learn_contact(now, peer.public.clone())?;
        self.node.share_profile(now, id);
        self.discovery
            .want(now, id, Some(peer.public), Some(peer.addr));
        // A static address: send at once; presence probes it and says when
        // the peer stops answering.
        self.node.set_reachable(now, id, true);
        Ok(())
    }

    /// Sends every stored message a contact has not acknowledged again, as
    /// the very envelope stored (same id, so a recipient that had stored it
    /// does not store it twice). Only a direct message whose chain the store
    /// does not know (written before chains were kept) is sealed again
    /// under a new id.
    pub(super) fn resend_outbox(&mut self, now: Instant) -> Result<(), DaemonError> {
        let contacts: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in contacts {
            let direct = direct_room(self.node.peer_id(), peer);
            for key in self.db()?.outbox(&peer)? {
                let Some(message) = self.db()?.message(&key)? else {
                    continue;
                };
                let result = match self.node.resend_envelope(now, peer, &message.envelope) {
                    Err(NodeError::UnknownChain) if message.room == direct => {
                        let text = String::from_utf8_lossy(&message.body);
                        self.node
                            .send_direct_message(now, peer, &text)
                            .map(|sent| sent.id)
                    }
                    other => other,
                };
                match result {
                    Ok(id) => {
                        self.outbox.resent(id, key, peer);
                        self.status.messages_sent += 1;
                    }
                    Err(error) => log::warn!("cannot resend a message: {error}"),
                }
            }
        }
        Ok(())
    }

    /// Brings back every stored group room, with its members' keys (kept
    /// with the members, or else a contact's): members who are not
    /// contacts become the node's peers, not the user's contacts. A room is
    /// never dropped here: a member whose key an older version did not
    /// keep stays a member and is reached once its key is learned again
    /// (see [`Node::restore_room`]).
    pub(super) fn restore_rooms(&mut self, now: Instant) -> Result<(), DaemonError> {
        let me = self.node.peer_id();
        for room in self.db()?.rooms()? {
            let Some((admin, epoch)) = self.db()?.group(&room.id)? else {
                continue;
            };
            let stored = self.store.members(&room.id)?;
            let mut keys = Vec::with_capacity(stored.len());
            for member in stored.iter().filter(|m| m.peer != me) {
                let public = member
                    .public_key
                    .and_then(|key| PublicIdentity::from_bytes(&key).ok())
                    .filter(|public| public.peer_id() == member.peer)
                    .or_else(|| self.peers.get(&member.peer).map(|e| e.public.clone()));
                match public {
                    Some(public) => keys.push(public),
                    None => log::warn!(
                        "room {:?}: member {} cannot be reached until its key is \
                         learned again",
                        room.name,
                        member.peer.short()
                    ),
                }
            }
            let group_key = self
                .store
                .epoch_key(&room.id, u64::from(epoch))?
                .map(|key| GroupKey(*key));
            let info = RoomInfo {
                id: room.id,
                name: room.name,
                direct: None,
                admin: Some(admin),
                epoch,
                members: stored.iter().map(|m| m.peer).collect(),
                group_key,
                founding: self
                    .store
                    .room_founding(&room.id)?
                    .map(|bytes| RoomFounding::from_bytes(&bytes)),
                joined: stored
                    .iter()
                    .filter_map(|m| Some((m.peer, u32::try_from(m.joined_epoch).ok()?)))
                    .collect(),
                successor: self.store.room_successor(&room.id)?,
            };
            if let Err(error) = self.node.restore_room(now, &info, &keys) {
                // Only a room we are not a member of ends here; its rows
                // and history stay in the store.
                log::error!("cannot restore a room: {error}");
            }
        }
        Ok(())
    }

    /// Keeps the node's view of a group room in the store, with every
    /// member's public key the node knows (a key learned since the member
    /// was stored is filled in).
    pub(super) fn persist_room(&mut self, room: &RoomId) -> Result<(), DaemonError> {
        // Every membership change is stored through here.
        self.members_changed = true;
        let Some(info) = self.node.room(room) else {
            return Ok(());
        };
        let Some(admin) = info.admin else {
            return Ok(());
        };
        let created_at = self.clock.wall_ms;
        self.db()?.upsert_room(&StoredRoom {
            id: info.id,
            name: info.name.clone(),
            created_at,
        })?;
        self.db()?.set_group(room, &admin, info.epoch)?;
        self.db()?
            .set_room_successor(room, info.successor.as_ref())?;
        if let Some(founding) = &info.founding {
            self.db()?.set_room_founding(room, &founding.to_bytes())?;
        }
        if let Some(key) = &info.group_key {
            self.db()?
                .put_epoch_key(room, u64::from(info.epoch), &key.0)?;
        }
        let stored = self.store.members(room)?;
        for gone in stored.iter().filter(|m| !info.members.contains(&m.peer)) {
            self.db()?.remove_member(room, &gone.peer)?;
        }
        for peer in &info.members {
            let public_key = self.node.public_of(peer).map(|p| p.to_bytes());
            match stored.iter().find(|m| m.peer == *peer) {
                None => self.db()?.set_member(
                    room,
                    Member {
                        peer: *peer,
                        joined_epoch: u64::from(
                            info.joined
                                .iter()
                                .find(|(p, _)| p == peer)
                                .map_or(info.epoch, |(_, e)| *e),
                        ),
                        public_key,
                    },
                )?,
                Some(member) if member.public_key.is_none() => {
                    if let Some(key) = public_key {
                        self.db()?.set_member_key(room, peer, &key)?;
                    }
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Drains the node's events: commits every received message of this
    /// round in one transaction, then confirms them (which may produce more
    /// events, hence the loop).
    /// Tells discovery the members of our group rooms: with contacts, the
    /// peers it keeps alive.
    pub(super) fn watch_members(&mut self, now: Instant) {
        self.members_changed = false;
        let me = self.node.peer_id();
        let members: HashSet<PeerId> = self
            .node
            .rooms()
            .into_iter()
            .filter(|room| room.direct.is_none())
            .flat_map(|room| room.members)
            .filter(|peer| *peer != me)
            .collect();
        self.discovery.set_members(now, members);
    }
}
