//! Unread counts: how far the user read each room (its read marker) and
//! how many messages of others came after it, with how many of those are
//! muted, kept in memory so listing rooms costs no query.
//!
//! The store keeps per-sender counts exact with every insert and marker
//! move (see `store/unread.rs`); this takes them at start and whenever
//! the marker or a mute changes, and counts each new message as it is
//! reported, so the two agree without reading any message row.

use super::*;

/// A room's unread messages.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct RoomUnread {
    pub(super) count: u64,
    /// Of `count`, those in a muted room or from a muted sender.
    pub(super) muted: u64,
}

/// Every room's read marker and unread count.
#[derive(Default)]
pub(super) struct Unread {
    /// How far the user read each room (persisted).
    markers: HashMap<RoomId, Position>,
    /// Each room's unread messages and how many of them are muted (the
    /// room, or their sender, was muted when they came or when the room
    /// was last counted).
    rooms: BTreeMap<RoomId, RoomUnread>,
}

impl Unread {
    /// The stored read markers; counts come with [`Unread::recount`].
    pub(super) fn load(store: &Store) -> Result<Unread, StoreError> {
        Ok(Unread {
            markers: store.read_markers()?,
            rooms: BTreeMap::new(),
        })
    }

    /// `room`'s unread messages (none if never counted).
    pub(super) fn get(&self, room: &RoomId) -> RoomUnread {
        self.rooms.get(room).copied().unwrap_or_default()
    }

    /// Rooms with something unread.
    pub(super) fn rooms_with_unread(&self) -> Vec<RoomId> {
        self.rooms
            .iter()
            .filter(|(_, unread)| unread.count > 0)
            .map(|(room, _)| *room)
            .collect()
    }

    /// Takes `room`'s count from the store's per-sender counts, leaving
    /// out `me`; `muted` says whether a sender's messages count as muted
    /// there. Returns the count and whether it changed.
    pub(super) fn recount(
        &mut self,
        store: &Store,
        room: RoomId,
        me: &PeerId,
        muted: impl Fn(&PeerId) -> bool,
    ) -> Result<(RoomUnread, bool), StoreError> {
        let mut unread = RoomUnread::default();
        for (sender, count) in store.unread_by_sender(&room)? {
            if sender == *me {
                continue;
            }
            unread.count += count;
            if muted(&sender) {
                unread.muted += count;
            }
        }
        let old = self.rooms.insert(room, unread).unwrap_or_default();
        Ok((unread, old != unread))
    }

    /// A message of someone else just reached the database: counted if it
    /// comes after its room's read marker (as the store counted it);
    /// whether it was.
    pub(super) fn count_new(&mut self, message: &Message, muted: bool) -> bool {
        let after_marker = self
            .markers
            .get(&message.room)
            .is_none_or(|marker| message.key().position() > *marker);
        if !after_marker {
            return false;
        }
        let unread = self.rooms.entry(message.room).or_default();
        unread.count += 1;
        if muted {
            unread.muted += 1;
        }
        true
    }

    /// Moves `room`'s read marker forward to `position`, in the store
    /// first (its counts follow in the same transaction); `false` if the
    /// marker already is there or further.
    pub(super) fn move_marker(
        &mut self,
        store: &mut Store,
        room: RoomId,
        position: Position,
    ) -> Result<bool, StoreError> {
        if self
            .markers
            .get(&room)
            .is_some_and(|marker| *marker >= position)
        {
            return Ok(false);
        }
        store.set_read_marker(&room, &position)?;
        self.markers.insert(room, position);
        Ok(true)
    }
}
