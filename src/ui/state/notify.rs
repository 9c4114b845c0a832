//! Which new messages raise a desktop notification (decided here, on plain
//! data, with the window's clock; `ui::notify` only delivers them).
//!
//! A message is notified when the window is not focused, it is not ours,
//! the node did not flag it muted, and neither its room (for a direct chat:
//! the person) nor its sender is muted now or blocked. One room raises at
//! most one notification per [`NOTIFY_QUIET_MILLIS`]: a burst of messages is
//! one notification, and the badge and the title count the rest.

use super::{AppState, Intent, MessageInfo, Millis, Request, preview_chars};
use crate::proto::ids::{PeerId, RoomId};
use std::collections::HashMap;

/// After a notification for a room, the next one waits this long.
pub const NOTIFY_QUIET_MILLIS: Millis = 5_000;
/// Characters of the message shown in a notification's body.
pub const NOTIFY_PREVIEW_CHARS: usize = 120;
/// Notifications waiting to be taken (a window that never takes them must
/// not grow without bound).
const MAX_PENDING: usize = 16;

/// A desktop notification to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub room: RoomId,
    pub from: PeerId,
    /// "Sam" for a direct chat, "Sam in kitchen" for a room.
    pub title: String,
    /// The first line of the message, shortened; plain text (the IO side
    /// escapes it for servers that read markup).
    pub body: String,
}

/// What the window keeps for notifications.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notifications {
    /// Whether the window has focus (then nothing is notified).
    pub focused: bool,
    pending: Vec<Notification>,
    /// When each room was last notified.
    last: HashMap<RoomId, Millis>,
}

impl AppState {
    /// Tells the state whether the window has focus (the app calls it
    /// every frame, before applying the node's updates).
    pub fn set_focused(&mut self, focused: bool) {
        self.notify.focused = focused;
    }

    /// The notifications decided since the last call, oldest first.
    pub fn poll_notifications(&mut self) -> Vec<Notification> {
        std::mem::take(&mut self.notify.pending)
    }

    /// A click on `room`'s notification: the room opens (unless it is gone
    /// since, or was never ours).
    pub fn open_from_notification(&mut self, room: RoomId) -> Vec<Request> {
        match self.rooms.get(&room) {
            Some(r) if !r.removed => self.handle_intent(Intent::OpenRoom(room)),
            _ => Vec::new(),
        }
    }

    /// Whether a message's sender is muted now.
    pub fn peer_muted(&self, peer: PeerId) -> bool {
        self.people
            .get(&peer)
            .and_then(|p| p.info.muted)
            .is_some_and(|m| m.active(self.now))
    }

    /// Called for each live message after it is shown; `muted`: the node
    /// says the room or the sender is muted.
    pub(super) fn consider_notifying(&mut self, message: &MessageInfo, muted: bool) {
        if self.notify.focused
            || muted
            || message.from == self.me
            || self.is_blocked(message.from)
            || self.peer_muted(message.from)
        {
            return;
        }
        let Some(room) = self.rooms.get(&message.room) else {
            return;
        };
        if self.room_muted(room) || room.info.invited || room.removed {
            return;
        }
        if let Some(last) = self.notify.last.get(&message.room)
            && self.now.saturating_sub(*last) < NOTIFY_QUIET_MILLIS
        {
            return;
        }
        let who = self.display_name(message.from);
        let title = match room.info.direct {
            Some(_) => who,
            None => format!("{who} in {}", self.room_name(room)),
        };
        let body = preview_chars(&message.text, NOTIFY_PREVIEW_CHARS);
        self.notify.last.insert(message.room, self.now);
        if self.notify.pending.len() >= MAX_PENDING {
            self.notify.pending.remove(0);
        }
        self.notify.pending.push(Notification {
            room: message.room,
            from: message.from,
            title,
            body,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        Intent, MuteUntil, PersonInfo, Relation, RoomInfo, Target, Update, direct_room,
    };
    use super::*;
    use crate::proto::ids::MessageId;

    const T0: Millis = 1_765_000_000_000;
    const KITCHEN: RoomId = RoomId([10; 32]);

    fn peer(n: u8) -> PeerId {
        PeerId([n; 32])
    }

    fn state() -> AppState {
        let mut state = AppState::new(peer(0), String::new(), "Robin".into());
        state.apply(Update::Tick { now: T0 });
        state.apply(Update::People(
            [(1, "Sam"), (2, "Alex")]
                .into_iter()
                .map(|(n, name)| PersonInfo {
                    id: peer(n),
                    public_key: String::new(),
                    name: name.into(),
                    relation: Relation::Contact,
                    online: true,
                    last_seen: None,
                    muted: None,
                })
                .collect(),
        ));
        state.apply(Update::Rooms(vec![RoomInfo {
            id: KITCHEN,
            name: "kitchen".into(),
            direct: None,
            admin: Some(peer(0)),
            members: vec![peer(0), peer(1), peer(2)],
            muted: None,
            invited: false,
        }]));
        state.set_focused(false);
        state
    }

    /// A message arriving now; `n` makes its id.
    fn receive(state: &mut AppState, room: RoomId, from: u8, n: u8, text: &str) {
        state.apply(Update::Received {
            message: MessageInfo {
                room,
                from: peer(from),
                id: MessageId([n; 32]),
                timestamp: state.now,
                text: text.into(),
                cursor: None,
                hlc: 0,
                deliveries: None,
            },
            muted: false,
        });
    }

    fn tick(state: &mut AppState, ms: Millis) {
        let now = state.now + ms;
        state.apply(Update::Tick { now });
    }

    #[test]
    fn a_message_while_unfocused_is_notified_with_name_room_and_preview() {
        let mut state = state();
        let long = format!("dinner at 8?\nsecond line {}", "x".repeat(300));
        receive(&mut state, KITCHEN, 1, 1, &long);
        let shown = state.poll_notifications();
        assert_eq!(
            shown,
            [Notification {
                room: KITCHEN,
                from: peer(1),
                title: "Sam in kitchen".into(),
                body: "dinner at 8?…".into(),
            }]
        );
        assert!(state.poll_notifications().is_empty());
        // A direct chat is titled with the person alone.
        tick(&mut state, 1);
        receive(&mut state, direct_room(peer(0), peer(2)), 2, 2, "hi");
        let shown = state.poll_notifications();
        assert_eq!(shown[0].title, "Alex");
        assert_eq!(shown[0].body, "hi");
    }

    #[test]
    fn nothing_while_focused_nor_for_our_own_or_flagged_muted_messages() {
        let mut state = state();
        state.set_focused(true);
        receive(&mut state, KITCHEN, 1, 1, "seen on screen");
        state.set_focused(false);
        receive(&mut state, KITCHEN, 0, 2, "from my other device");
        state.apply(Update::Received {
            message: MessageInfo {
                room: KITCHEN,
                from: peer(2),
                id: MessageId([3; 32]),
                timestamp: T0,
                text: "the node says muted".into(),
                cursor: None,
                hlc: 0,
                deliveries: None,
            },
            muted: true,
        });
        assert!(state.poll_notifications().is_empty());
        // Still shown and counted where they belong.
        assert_eq!(state.histories[&KITCHEN].messages.len(), 3);
    }

    #[test]
    fn a_short_mute_silences_the_room_until_it_ends_then_notifies_again() {
        let mut state = state();
        state.handle_intent(Intent::Mute(Target::Room(KITCHEN), Some(60_000)));
        receive(&mut state, KITCHEN, 1, 1, "during the mute");
        tick(&mut state, 30_000);
        receive(&mut state, KITCHEN, 2, 2, "still muted");
        assert!(state.poll_notifications().is_empty());
        assert_eq!(state.total_unread(), 0);
        // The mute ends a minute after it began.
        tick(&mut state, 30_000);
        receive(&mut state, KITCHEN, 1, 3, "after the mute");
        let shown = state.poll_notifications();
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].body, "after the mute");
        assert_eq!(state.total_unread(), 1);
    }

    #[test]
    fn a_muted_or_blocked_sender_is_not_notified_in_any_room() {
        let mut state = state();
        state.handle_intent(Intent::Mute(Target::Peer(peer(1)), Some(3_600_000)));
        receive(&mut state, KITCHEN, 1, 1, "Sam is muted");
        receive(&mut state, direct_room(peer(0), peer(1)), 1, 2, "here too");
        assert!(state.poll_notifications().is_empty());
        state.handle_intent(Intent::Block(peer(2)));
        receive(&mut state, KITCHEN, 2, 3, "Alex is blocked");
        assert!(state.poll_notifications().is_empty());
        // Until unmuted: then Sam notifies again.
        state.handle_intent(Intent::Unmute(Target::Peer(peer(1))));
        receive(&mut state, KITCHEN, 1, 4, "unmuted");
        assert_eq!(state.poll_notifications().len(), 1);
        // A mute "until I unmute" holds however long.
        state.handle_intent(Intent::Mute(Target::Room(KITCHEN), None));
        tick(&mut state, 365 * 24 * 3_600_000);
        receive(&mut state, KITCHEN, 1, 5, "a year later");
        assert!(state.poll_notifications().is_empty());
        assert_eq!(state.rooms[&KITCHEN].info.muted, Some(MuteUntil::Forever));
    }

    #[test]
    fn a_click_opens_the_room_unless_it_is_gone() {
        let mut state = state();
        receive(&mut state, KITCHEN, 1, 1, "dinner?");
        let shown = state.poll_notifications();
        assert_eq!(state.open, None);
        let requests = state.open_from_notification(shown[0].room);
        assert_eq!(state.open, Some(KITCHEN));
        // Its newest page is asked for (and it is marked read).
        assert!(
            requests
                .iter()
                .any(|r| matches!(r, Request::LoadHistory { room: KITCHEN, .. })),
            "{requests:?}"
        );
        // A room we never had (or a forged id) opens nothing.
        assert!(state.open_from_notification(RoomId([77; 32])).is_empty());
        assert_eq!(state.open, Some(KITCHEN));
    }

    #[test]
    fn a_burst_is_one_notification_per_room() {
        let mut state = state();
        for n in 0..200 {
            receive(&mut state, KITCHEN, 1, n, &format!("message {n}"));
        }
        let shown = state.poll_notifications();
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].body, "message 0");
        // Another room is not held back; the same room is after the pause.
        receive(&mut state, direct_room(peer(0), peer(2)), 2, 201, "hello");
        assert_eq!(state.poll_notifications().len(), 1);
        tick(&mut state, NOTIFY_QUIET_MILLIS);
        receive(&mut state, KITCHEN, 1, 202, "later");
        assert_eq!(state.poll_notifications()[0].body, "later");
    }
}
