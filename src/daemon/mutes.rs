//! Mutes: rooms and peers whose messages are stored but not notified or
//! counted unread until the mute ends. Pure: every question carries the
//! time, so expiry is tested on a virtual clock.

use std::collections::HashMap;

use crate::store::Mute;

/// The usual mute periods, in milliseconds: 15 minutes, 1 hour, 8 hours,
/// 1 week (and `Mute::Indefinitely` for "until unmuted").
pub const MUTE_PERIODS_MS: [u64; 4] = [
    15 * 60_000,
    60 * 60_000,
    8 * 60 * 60_000,
    7 * 24 * 60 * 60_000,
];

/// Mutes by the 32-byte id of a room or a peer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MuteTable {
    mutes: HashMap<[u8; 32], Mute>,
}

impl MuteTable {
    /// The table as the store keeps it.
    pub fn new(mutes: impl IntoIterator<Item = ([u8; 32], Mute)>) -> Self {
        MuteTable {
            mutes: mutes.into_iter().collect(),
        }
    }

    pub fn set(&mut self, target: [u8; 32], mute: Mute) {
        self.mutes.insert(target, mute);
    }

    pub fn clear(&mut self, target: &[u8; 32]) {
        self.mutes.remove(target);
    }

    /// How `target` is muted at `now_ms` (milliseconds since the Unix
    /// epoch), if it is.
    pub fn get(&self, target: &[u8; 32], now_ms: u64) -> Option<Mute> {
        self.mutes.get(target).copied().filter(|m| match m {
            Mute::Until(until) => *until > now_ms,
            Mute::Indefinitely => true,
        })
    }

    /// Whether a message in `room` from `sender` is muted at `now_ms`:
    /// either the room or the sender is.
    pub fn is_muted(&self, room: &[u8; 32], sender: &[u8; 32], now_ms: u64) -> bool {
        self.get(room, now_ms).is_some() || self.get(sender, now_ms).is_some()
    }

    /// Removes mutes that ended by `now_ms` and returns their targets (for
    /// the store to forget too).
    pub fn expire(&mut self, now_ms: u64) -> Vec<[u8; 32]> {
        let ended: Vec<[u8; 32]> = self
            .mutes
            .iter()
            .filter(|(_, m)| matches!(m, Mute::Until(until) if *until <= now_ms))
            .map(|(target, _)| *target)
            .collect();
        for target in &ended {
            self.mutes.remove(target);
        }
        ended
    }

    /// When the next timed mute ends, if any.
    pub fn next_end(&self) -> Option<u64> {
        self.mutes
            .values()
            .filter_map(|m| match m {
                Mute::Until(until) => Some(*until),
                Mute::Indefinitely => None,
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_period_ends_on_time_and_until_unmuted_does_not() {
        let start = 1_700_000_000_000;
        let room = [1; 32];
        let peer = [2; 32];
        let other = [3; 32];
        for period in MUTE_PERIODS_MS {
            let mut table = MuteTable::default();
            table.set(room, Mute::Until(start + period));
            assert!(table.is_muted(&room, &other, start));
            assert!(table.is_muted(&room, &other, start + period - 1));
            assert!(
                !table.is_muted(&room, &other, start + period),
                "ends on time"
            );
            assert!(table.expire(start + period - 1).is_empty());
            assert_eq!(table.expire(start + period), vec![room]);
            assert_eq!(table.next_end(), None);
        }
        let mut table = MuteTable::default();
        table.set(peer, Mute::Indefinitely);
        let a_year = 365 * 24 * 60 * 60_000;
        assert!(
            table.is_muted(&room, &peer, start + a_year),
            "a muted member mutes its messages anywhere"
        );
        assert!(table.expire(start + a_year).is_empty());
        table.clear(&peer);
        assert!(!table.is_muted(&room, &peer, start));
    }

    #[test]
    fn next_end_is_the_soonest_timed_mute() {
        let mut table = MuteTable::new([([1; 32], Mute::Until(50)), ([2; 32], Mute::Indefinitely)]);
        table.set([3; 32], Mute::Until(20));
        assert_eq!(table.next_end(), Some(20));
        assert_eq!(table.get(&[3; 32], 19), Some(Mute::Until(20)));
        assert_eq!(table.get(&[3; 32], 20), None);
    }
}
