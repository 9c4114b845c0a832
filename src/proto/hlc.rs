//! Hybrid logical clock: message timestamps that order causally even when
//! device clocks disagree.
//!
//! A timestamp is a `u64`: the upper 48 bits are milliseconds since the Unix
//! epoch, the lower 16 bits a counter for events within the same
//! millisecond. Sending takes `max(wall clock, last timestamp) + tick`;
//! receiving folds the remote timestamp in, so a reply always sorts after
//! what it answers. A remote clock far in the future is not trusted: its
//! timestamp is still stored, but it is not allowed to drag our clock
//! forward by more than [`MAX_FORWARD_DRIFT_MS`].
//!
//! The wall clock is an input (milliseconds), not read here, to keep the
//! protocol core deterministic.

/// How far a peer's clock may pull ours forward (one minute).
pub const MAX_FORWARD_DRIFT_MS: u64 = 60_000;

const COUNTER_BITS: u32 = 16;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;

/// Milliseconds part of a timestamp.
pub fn millis(timestamp: u64) -> u64 {
    timestamp >> COUNTER_BITS
}

/// Builds a timestamp from milliseconds and a counter.
pub fn timestamp(millis: u64, counter: u16) -> u64 {
    (millis << COUNTER_BITS) | u64::from(counter)
}

/// The clock of one device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HybridClock {
    last: u64,
}

impl HybridClock {
    /// Resumes from the newest timestamp in the store, so timestamps keep
    /// increasing across restarts even if the wall clock went back.
    pub fn resume(last: u64) -> Self {
        Self { last }
    }

    /// The last timestamp issued or observed.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// A timestamp for a new local event, strictly greater than every one
    /// before it.
    pub fn tick(&mut self, wall_millis: u64) -> u64 {
        let wall = timestamp(wall_millis, 0);
        self.last = if wall > self.last {
            wall
        } else {
            self.bump(self.last)
        };
        self.last
    }

    /// Folds in a timestamp received from a peer.
    pub fn observe(&mut self, wall_millis: u64, remote: u64) {
        let ceiling = timestamp(wall_millis.saturating_add(MAX_FORWARD_DRIFT_MS), 0);
        let remote = remote.min(ceiling);
        if remote > self.last {
            self.last = remote;
        }
    }

    fn bump(&self, value: u64) -> u64 {
        if value & COUNTER_MASK == COUNTER_MASK {
            // Counter full: borrow the next millisecond.
            timestamp(millis(value) + 1, 0)
        } else {
            value + 1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_strictly_increase_even_when_the_wall_clock_stalls_or_goes_back() {
        let mut clock = HybridClock::default();
        let mut previous = 0;
        for wall in [1000, 1000, 1000, 999, 500, 1001, 1001] {
            let now = clock.tick(wall);
            assert!(now > previous, "{now} after {previous}");
            previous = now;
        }
        assert_eq!(millis(previous), 1001);
    }

    #[test]
    fn a_reply_sorts_after_what_it_answers() {
        let mut fast = HybridClock::default();
        let mut slow = HybridClock::default();
        let question = fast.tick(10_000);
        slow.observe(5_000, question);
        let answer = slow.tick(5_000);
        assert!(answer > question);
    }

    #[test]
    fn a_clock_far_in_the_future_cannot_drag_ours_along() {
        let mut clock = HybridClock::default();
        clock.observe(1_000, timestamp(10_000_000, 0));
        assert_eq!(millis(clock.tick(1_000)), 1_000 + MAX_FORWARD_DRIFT_MS);
    }

    #[test]
    fn full_counter_borrows_the_next_millisecond() {
        let mut clock = HybridClock::resume(timestamp(7, u16::MAX));
        assert_eq!(clock.tick(0), timestamp(8, 0));
    }
}
