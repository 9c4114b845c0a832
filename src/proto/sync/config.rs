//! Sizes of the wire format, the session's tunables and caps
//! ([`SyncConfig`]), and why a message or session fails ([`SyncError`]).

/// The sync message format version this build speaks.
pub const SYNC_VERSION: u8 = 2;
/// Bytes of a range fingerprint on the wire.
pub const FINGERPRINT_LEN: usize = 6;
/// Bytes of a salted short id in a list.
pub const SHORT_ID_LEN: usize = 6;
/// Bytes of the per-session salt.
pub const SALT_LEN: usize = 16;
/// Largest sync message accepted: one datagram.
pub const MAX_SYNC_MESSAGE: usize = crate::proto::wire::MAX_DATAGRAM;

/// Tunables and caps for one session. Both sides may use different values.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// Largest message this side emits (one datagram payload).
    pub max_message_bytes: usize,
    /// Most ranges in the responder's opening split when the digests
    /// differ (fewer for small sets: about `list_threshold` items each).
    pub initial_buckets: usize,
    /// Sub-ranges a differing range splits into.
    pub branching: usize,
    /// A differing range with at most this many local items is listed.
    pub list_threshold: usize,
    /// Most local items listed in answer to one peer list; a larger local
    /// range is split instead.
    pub max_reply_items: usize,
    /// Most rounds (messages batches received) per session.
    pub max_rounds: u32,
    /// Most messages in one incoming round.
    pub max_messages_per_round: u32,
    /// Most ranges needing an answer (fingerprints, lists, needs) in one
    /// incoming round.
    pub max_open_ranges: usize,
    /// Most ids in `have` plus `need` for the whole session.
    pub max_differences: usize,
}

impl SyncConfig {
    /// The smallest message budget accepted: room for a header, a few
    /// ranges and two full ids.
    pub const MIN_MESSAGE_BYTES: usize = 160;

    /// Clamps values that would make no sense (or no progress): budgets
    /// between [`Self::MIN_MESSAGE_BYTES`] and [`MAX_SYNC_MESSAGE`], at
    /// least two-way splits, and a list threshold that is at least one item
    /// and whose list fits one message.
    pub(super) fn normalized(mut self) -> Self {
        self.max_message_bytes = self
            .max_message_bytes
            .clamp(Self::MIN_MESSAGE_BYTES, MAX_SYNC_MESSAGE);
        self.initial_buckets = self.initial_buckets.max(2);
        self.branching = self.branching.max(2);
        let list_room = (self.max_message_bytes - 64) / SHORT_ID_LEN;
        self.list_threshold = self.list_threshold.clamp(1, list_room);
        self.max_reply_items = self.max_reply_items.max(self.list_threshold);
        self
    }
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            max_message_bytes: 1000,
            // Two fingerprint levels (the responder's opening split, then
            // the initiator's) take 1e5 items down to lists of about a
            // dozen, so scattered differences settle in three round trips.
            initial_buckets: 1024,
            branching: 8,
            list_threshold: 32,
            max_reply_items: 1024,
            max_rounds: 64,
            max_messages_per_round: 4096,
            max_open_ranges: 262_144,
            max_differences: 1_000_000,
        }
    }
}

/// Why a sync message or session was rejected. The session is over after
/// any error; the caller drops it and counts the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("sync message is {0} bytes, more than the limit")]
    TooLarge(usize),
    #[error("sync message ends early")]
    Truncated,
    #[error("sync message version {0} is not supported (this build speaks {SYNC_VERSION})")]
    UnknownVersion(u8),
    #[error("sync message is malformed: {0}")]
    Malformed(&'static str),
    #[error("sync message has {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("peer exceeded the cap on {0}")]
    CapExceeded(&'static str),
    #[error("sync message arrived out of turn: {0}")]
    OutOfTurn(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degenerate_configs_are_clamped() {
        let config = SyncConfig {
            max_message_bytes: 10,
            initial_buckets: 0,
            branching: 1,
            list_threshold: 10_000,
            max_reply_items: 0,
            ..SyncConfig::default()
        }
        .normalized();
        assert_eq!(config.max_message_bytes, SyncConfig::MIN_MESSAGE_BYTES);
        assert_eq!((config.initial_buckets, config.branching), (2, 2));
        assert!(64 + config.list_threshold * SHORT_ID_LEN <= config.max_message_bytes);
        assert!(config.max_reply_items >= config.list_threshold);
    }
}
