//! What the views ask the state: orders, badges, names, and times and
//! labels as the window shows them.

use super::*;

impl AppState {
    /// How long until the screen changes by itself: a toast fades, a mute
    /// ends, or "last seen" moves on (at most half a minute).
    pub fn next_change(&self) -> std::time::Duration {
        let mut next: Millis = 30_000;
        if !self.toasts.is_empty() {
            next = 100;
        }
        // The open Network panel asks for a new report (see
        // `state/network.rs`).
        if self.dialog == Some(Dialog::Network) {
            next = next.min(500);
        }
        let ends = self
            .rooms
            .values()
            .filter_map(|r| r.info.muted)
            .chain(self.people.values().filter_map(|p| p.info.muted));
        for mute in ends {
            if let MuteUntil::Until(end) = mute
                && end > self.now
            {
                next = next.min(end - self.now);
            }
        }
        std::time::Duration::from_millis(next)
    }

    /// Whether the unread counts are the node's (its read markers), not
    /// counted by the window.
    pub fn unread_from_node(&self) -> bool {
        self.unread_from_node
    }

    /// Whether `peer` is blocked.
    pub fn is_blocked(&self, peer: PeerId) -> bool {
        self.people.get(&peer).is_some_and(|p| p.blocked)
    }

    /// Whether a room's mute holds now.
    pub fn room_muted(&self, room: &Room) -> bool {
        self.room_mute(room).is_some()
    }

    /// The mute that holds for a room now: its own, or for a direct chat
    /// the person's.
    pub fn room_mute(&self, room: &Room) -> Option<MuteUntil> {
        let person = room
            .info
            .direct
            .and_then(|peer| self.people.get(&peer))
            .and_then(|p| p.info.muted);
        room.info.muted.or(person).filter(|m| m.active(self.now))
    }

    /// What mute and the menus address for a room: a direct chat's person.
    pub fn room_target(&self, room: &Room) -> Target {
        match room.info.direct {
            Some(peer) => Target::Peer(peer),
            None => Target::Room(room.info.id),
        }
    }

    /// Whether a person's mute holds now.
    pub fn person_muted(&self, person: &Person) -> bool {
        person.info.muted.is_some_and(|m| m.active(self.now))
    }

    /// The badge number for a room: `None` when muted or nothing unread.
    pub fn badge(&self, room: &Room) -> Option<usize> {
        (!self.room_muted(room) && room.unread > 0).then_some(room.unread)
    }

    /// Unread messages in rooms that are not muted now.
    pub fn total_unread(&self) -> usize {
        self.rooms.values().filter_map(|r| self.badge(r)).sum()
    }

    /// The window title.
    pub fn title(&self) -> String {
        match self.total_unread() {
            0 => "kith".to_owned(),
            n => format!("kith — {n} unread"),
        }
    }

    /// Rooms and direct chats, most recently active first (invitations
    /// among them by the time they came). A direct chat with nothing in it
    /// is left out unless open: the person is under People.
    pub fn sorted_rooms(&self) -> Vec<&Room> {
        let mut rooms: Vec<&Room> = self
            .rooms
            .values()
            .filter(|r| {
                r.info.direct.is_none() || r.last_activity > 0 || self.open == Some(r.info.id)
            })
            .collect();
        rooms.sort_by(|a, b| {
            b.last_activity
                .cmp(&a.last_activity)
                .then_with(|| self.room_name(a).cmp(&self.room_name(b)))
        });
        rooms
    }

    /// People by relation: contacts, requests, nearby; each by name.
    /// Blocked people are listed only by [`AppState::blocked_people`].
    pub fn people_with(&self, relation: Relation) -> Vec<&Person> {
        let mut people: Vec<&Person> = self
            .people
            .values()
            .filter(|p| !p.blocked && p.info.relation == relation)
            .collect();
        people.sort_by(|a, b| {
            b.info.online.cmp(&a.info.online).then_with(|| {
                self.display_name(a.info.id)
                    .cmp(&self.display_name(b.info.id))
            })
        });
        people
    }

    pub fn blocked_people(&self) -> Vec<&Person> {
        self.people.values().filter(|p| p.blocked).collect()
    }

    /// A person's name as shown everywhere: the display name, with the
    /// first four hex digits of the id when someone else has the same one
    /// (`Sam·3f2a`), or the short id when they announced none.
    pub fn display_name(&self, peer: PeerId) -> String {
        if peer == self.me {
            return "You".to_owned();
        }
        let Some(person) = self.people.get(&peer) else {
            return peer.short();
        };
        let name = person.info.name.trim();
        if name.is_empty() {
            return peer.short();
        }
        let clash = name == self.my_name.trim()
            || self
                .people
                .values()
                .any(|other| other.info.id != peer && other.info.name.trim() == name);
        if clash {
            format!("{name}·{}", &peer.to_hex()[..4])
        } else {
            name.to_owned()
        }
    }

    /// A room's name: a group's own, or the person's for a direct chat.
    pub fn room_name(&self, room: &Room) -> String {
        match room.info.direct {
            Some(peer) => self.display_name(peer),
            None if room.info.name.is_empty() => format!("room {}", PeerId(room.info.id.0).short()),
            None => room.info.name.clone(),
        }
    }

    /// "until 18:30", "until Tue 9 Dec", or "muted" (until unmuted).
    pub fn mute_label(&self, mute: MuteUntil) -> String {
        match mute {
            MuteUntil::Forever => "muted".to_owned(),
            MuteUntil::Until(end) => {
                if end.saturating_sub(self.now) < 20 * 3_600_000 {
                    format!("until {}", self.clock(end))
                } else {
                    format!("until {}", self.short_date(end))
                }
            }
        }
    }

    /// "last seen 5 min ago", or `None` when online or never seen.
    pub fn last_seen_label(&self, person: &Person) -> Option<String> {
        if person.info.online {
            return None;
        }
        let seen = person.info.last_seen?;
        let ago = self.now.saturating_sub(seen) / 1000;
        Some(match ago {
            0..60 => "last seen just now".to_owned(),
            60..3600 => format!("last seen {} min ago", ago / 60),
            3600..86_400 => format!("last seen {} h ago", ago / 3600),
            _ => format!("last seen {} d ago", ago / 86_400),
        })
    }

    /// "delivered to 2 of 3", "delivered", "sent", "queued", or why not.
    pub fn delivery_label(&self, own: &Own, group: bool) -> String {
        match &own.delivery {
            Delivery::Queued => "queued".to_owned(),
            Delivery::Failed(_) => "not sent".to_owned(),
            Delivery::Sent { delivered, waiting } => {
                let mut n = own.recipients.len();
                let mut k = own
                    .recipients
                    .iter()
                    .filter(|r| delivered.contains(r))
                    .count();
                // The node's receipt counts recipients the window may not
                // know (our message from history, a room that changed).
                if let Some((stored, of)) = own.receipt
                    && of > 0
                {
                    n = of;
                    k = k.max(stored).min(n);
                }
                if group && n > 0 && k > 0 {
                    format!("delivered to {k} of {n}")
                } else if n > 0 && k == n {
                    "delivered".to_owned()
                } else if *waiting {
                    "waiting".to_owned()
                } else {
                    "sent".to_owned()
                }
            }
        }
    }

    /// HH:MM in local time.
    pub fn clock(&self, at: Millis) -> String {
        let secs = local_secs(at, self.utc_offset_secs);
        let day = secs.rem_euclid(86_400);
        format!("{:02}:{:02}", day / 3600, (day % 3600) / 60)
    }

    /// "Tue 9 Dec" in local time.
    pub fn short_date(&self, at: Millis) -> String {
        let (weekday, day, month, _) = civil(local_secs(at, self.utc_offset_secs));
        format!("{} {day} {}", &WEEKDAYS[weekday][..3], MONTHS[month])
    }

    /// "Tuesday 9 Dec 2026" in local time, for day separators.
    pub fn long_date(&self, at: Millis) -> String {
        let (weekday, day, month, year) = civil(local_secs(at, self.utc_offset_secs));
        format!("{} {day} {} {year}", WEEKDAYS[weekday], MONTHS[month])
    }

    /// The local day number of a time, to place day separators.
    pub fn local_day(&self, at: Millis) -> i64 {
        local_secs(at, self.utc_offset_secs).div_euclid(86_400)
    }
}

const WEEKDAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

pub(super) fn local_secs(at: Millis, offset: i64) -> i64 {
    i64::try_from(at / 1000).unwrap_or(i64::MAX - 86_400) + offset
}

/// (weekday index into `WEEKDAYS`, day, month index, year) of a time in
/// seconds since the epoch (Howard Hinnant's `civil_from_days`).
pub(super) fn civil(secs: i64) -> (usize, i64, usize, i64) {
    let days = secs.div_euclid(86_400);
    // The epoch was a Thursday, WEEKDAYS[0].
    let weekday = usize::try_from(days.rem_euclid(7)).unwrap_or(0);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let month = usize::try_from(month - 1).unwrap_or(0);
    (weekday, day, month, year)
}

/// The first line of a message, cut to a sidebar's width.
pub(super) fn preview(text: &str) -> String {
    preview_chars(text, 40)
}

/// The first line of a message, cut to `chars` characters.
pub fn preview_chars(text: &str, chars: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    let mut out: String = line.chars().take(chars).collect();
    if line.chars().count() > chars || text.lines().nth(1).is_some() {
        out.push('…');
    }
    out
}
