//! When to reconcile room histories with whom: a while after a member
//! comes online and every [`SYNC_INTERVAL`]; the item sets a
//! reconciliation runs over.

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
        let set = match self.sync_sets.remove(&(*room, min_epoch)) {
            Some(set) => set,
            None => self.room_items(room, min_epoch),
        };
        (min_epoch, set)
    }

    /// Starts reconciling every room shared with `peer`.
    pub(super) fn sync_with(&mut self, now: Instant, peer: PeerId) {
        for room in self.node.shared_rooms(&peer) {
            let (min_epoch, set) = self.take_sync_set(&room, &peer);
            let secret = self.node.sync_secret(&peer);
            self.sync.start(now, room, peer, &set, secret);
            self.sync_sets.insert((room, min_epoch), set);
        }
        self.run_sync(now);
    }

    /// Carries out the reconciler's actions.
    pub(super) fn run_sync(&mut self, now: Instant) {
        while let Some(action) = self.sync.poll_action() {
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
                    self.sync_sets.insert((room, min_epoch), set);
                }
            }
        }
        let sync = &self.sync;
        self.sync_sets.retain(|(room, _), _| sync.is_syncing(room));
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
        self.sync
            .handle_message(now, room, peer, payload, &set, secret);
        self.sync_sets.insert((room, min_epoch), set);
        self.run_sync(now);
    }

    /// Reconciliations that are due: the reconciler's own timers, members
    /// that came online [`SYNC_AFTER_ONLINE`] ago, and every online
    /// contact each [`SYNC_INTERVAL`].
    pub(super) fn sync_timers(&mut self, now: Instant) {
        self.sync.handle_timeout(now);
        while let Some(&(due, peer)) = self.syncs_due.front() {
            if due > now {
                break;
            }
            self.syncs_due.pop_front();
            if self.discovery.is_online(&peer) {
                self.sync_with(now, peer);
            }
        }
        if now >= self.next_sync {
            self.next_sync = now + SYNC_INTERVAL;
            let online: Vec<PeerId> = self
                .peers
                .keys()
                .copied()
                .filter(|p| self.discovery.is_online(p))
                .collect();
            for peer in online {
                self.sync_with(now, peer);
            }
        }
    }
}
