//! When to reconcile room histories with whom: a while after a member
//! comes online and every [`SYNC_INTERVAL`]; the item sets a
//! reconciliation runs over. [`Reconciliation`] holds that state and
//! decides; the core carries out what the reconciler asks (it owns the
//! node and the store).

use super::*;

/// How long after a peer comes online its shared rooms are reconciled:
/// first the live streams (and our outbox) catch up, so the reconciliation
/// finds what is really missing instead of forwarding thousands of messages
/// that are still on their way (a member coming online in a busy room, the
/// first time two members talk while a room is busy).
pub(super) const SYNC_AFTER_ONLINE: Duration = Duration::from_secs(2);

/// How often shared rooms are reconciled with every online member, on top
/// of a reconciliation whenever a member comes online.
pub(super) const SYNC_INTERVAL: Duration = Duration::from_secs(60);

/// History reconciliation with members: the sessions, the item sets they
/// run over, and when to reconcile with whom next.
pub(super) struct Reconciliation {
    /// The reconciliation sessions.
    manager: SyncManager,
    /// Item sets of rooms with a reconciliation under way, by the first
    /// epoch they hold.
    sets: HashMap<(RoomId, u32), SortedItems>,
    /// Peers that came online, with when their shared rooms are reconciled
    /// (see [`SYNC_AFTER_ONLINE`]), oldest first.
    due: VecDeque<(Instant, PeerId)>,
    /// When every online member is reconciled with again.
    next_round: Instant,
    /// The secret of our pairwise session with each peer that our
    /// reconciliation sessions with it run under (see
    /// [`Reconciliation::under_secret`]).
    secrets: HashMap<PeerId, Option<[u8; 32]>>,
}

impl Reconciliation {
    pub(super) fn new(manager: SyncManager, now: Instant) -> Self {
        Reconciliation {
            manager,
            sets: HashMap::new(),
            due: VecDeque::new(),
            next_round: now + SYNC_INTERVAL,
            secrets: HashMap::new(),
        }
    }

    /// Our reconciliations with `peer` go on under `secret`, the secret of
    /// our pairwise session with it now: if that session was replaced (the
    /// peer restarted, a new handshake) since they started, they end first.
    /// A session started under the old secret salts its fingerprints
    /// differently from the peer's: kept (the lower id keeps its own when
    /// both open at once), it finds every message missing on both sides
    /// and forwards the whole room both ways. Whether any ended.
    fn under_secret(&mut self, peer: PeerId, secret: Option<[u8; 32]>) -> bool {
        let replaced = self
            .secrets
            .insert(peer, secret)
            .is_some_and(|old| old != secret);
        if replaced {
            self.manager.forget_peer(&peer);
        }
        replaced
    }

    /// `peer` answered again: whatever it missed while away, and what we
    /// missed, once the live streams had their turn.
    pub(super) fn came_online(&mut self, now: Instant, peer: PeerId) {
        self.due.push_back((now + SYNC_AFTER_ONLINE, peer));
    }

    /// `peer` went away: its sessions end.
    pub(super) fn went_offline(&mut self, peer: &PeerId) {
        self.manager.forget_peer(peer);
        self.secrets.remove(peer);
    }

    /// Messages of `rooms` were stored: their item sets changed, so a
    /// reconciliation must not go on from a set read before (it would find
    /// nothing to send).
    pub(super) fn rooms_changed(&mut self, rooms: &HashSet<RoomId>) {
        self.sets.retain(|(room, _), _| !rooms.contains(room));
    }

    /// When [`Reconciliation::take_due`] or the sessions' timers are due.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        [
            self.due.front().map(|(due, _)| *due),
            self.manager.poll_timeout(),
            Some(self.next_round),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs the sessions' timers; then the peers to reconcile with now:
    /// those that came online [`SYNC_AFTER_ONLINE`] ago and are still
    /// online, and every [`SYNC_INTERVAL`] every one of `known` online.
    pub(super) fn take_due(
        &mut self,
        now: Instant,
        known: impl Iterator<Item = PeerId>,
        is_online: impl Fn(&PeerId) -> bool,
    ) -> Vec<PeerId> {
        self.manager.handle_timeout(now);
        let mut peers = Vec::new();
        while let Some(&(due, peer)) = self.due.front() {
            if due > now {
                break;
            }
            self.due.pop_front();
            if is_online(&peer) {
                peers.push(peer);
            }
        }
        if now >= self.next_round {
            self.next_round = now + SYNC_INTERVAL;
            peers.extend(known.filter(|p| is_online(p)));
        }
        peers
    }

    /// The item set kept for `room` from `min_epoch`, if one is.
    fn take_set(&mut self, room: &RoomId, min_epoch: u32) -> Option<SortedItems> {
        self.sets.remove(&(*room, min_epoch))
    }

    /// Keeps `set` while a session about `room` may use it.
    fn keep_set(&mut self, room: RoomId, min_epoch: u32, set: SortedItems) {
        self.sets.insert((room, min_epoch), set);
    }

    /// The reconciler's counters.
    pub(super) fn stats(&self) -> &SyncStats {
        self.manager.stats()
    }
}

impl DaemonCore {
    /// The room's messages of epochs from `min_epoch` on, in sync order,
    /// from the store's index.
    pub(super) fn room_items(&mut self, room: &RoomId, min_epoch: u32) -> SortedItems {
        let items = self
            .db()
            .and_then(|db| db.sync_items(room, min_epoch))
            .unwrap_or_default()
            .into_iter()
            .map(|p| Item {
                timestamp: p.timestamp,
                id: p.id,
            })
            .collect();
        SortedItems::new(items)
    }

    /// The room's items for reconciliation with `peer`: only epochs both
    /// of us are in (`Node::shared_epoch`), so a member who joined later is
    /// neither offered nor asked for what was said before. Read from the
    /// store once and kept while a session about the room runs and no
    /// message of the room is stored (then it is read again: a set that
    /// misses new messages would make a member who was away miss them too).
    pub(super) fn take_sync_set(&mut self, room: &RoomId, peer: &PeerId) -> (u32, SortedItems) {
        let min_epoch = self.node.shared_epoch(room, peer);
        let set = match self.sync.take_set(room, min_epoch) {
            Some(set) => set,
            None => self.room_items(room, min_epoch),
        };
        (min_epoch, set)
    }

    /// Starts reconciling every room shared with `peer`.
    pub(super) fn sync_with(&mut self, now: Instant, peer: PeerId) {
        let secret = self.node.sync_secret(&peer);
        self.sync.under_secret(peer, secret);
        for room in self.node.shared_rooms(&peer) {
            let (min_epoch, set) = self.take_sync_set(&room, &peer);
            self.sync.manager.start(now, room, peer, &set, secret);
            self.sync.keep_set(room, min_epoch, set);
        }
        self.run_sync(now);
    }

    /// Carries out the reconciler's actions.
    pub(super) fn run_sync(&mut self, now: Instant) {
        while let Some(action) = self.sync.manager.poll_action() {
            match action {
                SyncAction::Send {
                    peer,
                    room,
                    payload,
                } => {
                    if let Err(error) = self.node.send_sync(now, peer, room, payload) {
                        log::warn!("cannot send a sync message: {error}");
                    }
                }
                SyncAction::Forward { peer, room, ids } => {
                    let wanted: HashSet<MessageId> = ids.into_iter().collect();
                    let (min_epoch, set) = self.take_sync_set(&room, &peer);
                    for item in set.as_slice() {
                        if !wanted.contains(&item.id) {
                            continue;
                        }
                        let key = MessageKey {
                            room,
                            timestamp: item.timestamp,
                            id: item.id,
                        };
                        if let Ok(Some(envelope)) = self.db().and_then(|db| db.envelope(&key))
                            && let Err(error) = self.node.forward(now, peer, &envelope)
                        {
                            log::warn!("cannot forward a message: {error}");
                        }
                    }
                    self.sync.keep_set(room, min_epoch, set);
                }
            }
        }
        let Reconciliation { manager, sets, .. } = &mut self.sync;
        sets.retain(|(room, _), _| manager.is_syncing(room));
    }

    /// A reconciliation message from `peer` about `room`.
    pub(super) fn on_sync_received(
        &mut self,
        now: Instant,
        room: RoomId,
        peer: PeerId,
        payload: &[u8],
    ) {
        let (min_epoch, set) = self.take_sync_set(&room, &peer);
        let secret = self.node.sync_secret(&peer);
        let ended = self.sync.under_secret(peer, secret);
        self.sync
            .manager
            .handle_message(now, room, peer, payload, &set, secret);
        self.sync.keep_set(room, min_epoch, set);
        self.run_sync(now);
        if ended {
            // What the ended sessions were for, under the new secret (a
            // room the peer just opened anew is not opened twice).
            self.sync_with(now, peer);
        }
    }

    /// Reconciliations that are due: the reconciler's own timers, members
    /// that came online [`SYNC_AFTER_ONLINE`] ago, and every online
    /// contact each [`SYNC_INTERVAL`].
    pub(super) fn sync_timers(&mut self, now: Instant) {
        let discovery = &self.discovery;
        let due = self
            .sync
            .take_due(now, self.peers.keys().copied(), |p| discovery.is_online(p));
        for peer in due {
            self.sync_with(now, peer);
        }
    }
}
