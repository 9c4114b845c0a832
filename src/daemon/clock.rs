//! The one place the daemon reads the clocks. The IO shell reads both once
//! per input and hands them to the state it drives as a [`Now`]; nothing
//! that decides reads a clock itself, so a simulator can drive it in
//! virtual time.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The time of one input: the monotonic clock for timers, the wall clock
/// for what is signed or stored with a date (registry signatures, message
/// timestamps, mutes, blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// For timers and deadlines.
    pub mono: Instant,
    /// Milliseconds since the Unix epoch at `mono`.
    pub wall_ms: u64,
}

impl Now {
    /// Both clocks, now.
    pub(crate) fn read() -> Self {
        Self::at(Instant::now())
    }

    /// `mono` (read by the network loop) with the wall clock read beside it.
    pub(crate) fn at(mono: Instant) -> Self {
        Now {
            mono,
            wall_ms: wall_clock_millis(),
        }
    }
}

/// Milliseconds since the Unix epoch; 0 before it.
fn wall_clock_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
