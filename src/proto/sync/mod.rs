//! Range-based set reconciliation of a room's message ids.
//!
//! Two peers that each hold a set of messages find out which ids the other
//! lacks, exchanging a few fingerprints instead of whole id lists. The
//! protocol follows Meyer, "Range-Based Set Reconciliation" (arXiv
//! 2212.13567), with negentropy as a reference point; the encoding is our own.
//!
//! The pieces, one file each: `items` (the order, ranges and the
//! local [`ItemSet`]), `fingerprint` ([`Accumulator`] and the salted
//! keys), `codec` (the wire format, [`Message`]), `builder` (packing an
//! outgoing round into messages), `reconciler` (one session's state
//! machine, [`Reconciler`]) and `manager` (the sessions of a node, one
//! per room and peer: [`SyncManager`]).
//!
//! # Order, ranges and bounds
//! Items are ordered by `(timestamp, id)`, exactly as the store's
//! `Position` (see `Store::messages_in_range`). A range is `[lower, upper)`
//! between two [`Bound`]s. A bound is a timestamp plus the shortest id prefix
//! that separates two neighbours (padded with zeros when compared), or
//! infinity; between two items with different timestamps the bound carries
//! no id at all and its timestamp is the one in the gap with the most
//! trailing zero bits, so it encodes in a byte or two.
//!
//! # Rounds
//! The initiator opens with a [`Digest`]: its item count `c` and the
//! fingerprint of its whole set. The responder compares it with the
//! fingerprint of its own first `c` items (found by position,
//! [`ItemSet::pair_at`]). If they match, the initiator holds a prefix of
//! the responder's set (the "I was offline" case, or nothing to do) and the
//! responder simply sends the ids after the prefix: one round trip, a few
//! bytes beyond the ids. Otherwise the responder opens the range exchange
//! with fingerprints of up to [`SyncConfig::initial_buckets`] ranges (about
//! `list_threshold` items each, for small sets) and, when it holds fewer
//! items, its own digest, so that a responder holding a prefix of the
//! initiator's set is settled the same way half a round trip later.
//!
//! From then on, for each range the receiver compares its own
//! fingerprint: equal ranges are skipped; a differing range is either split
//! into [`SyncConfig::branching`] sub-ranges with fingerprints, or, when it
//! holds at most [`SyncConfig::list_threshold`] local items, answered with
//! the list of its (short) ids. The receiver of a list answers with the full
//! ids the lister lacks and the short ids it needs; the lister answers those
//! with full ids. Every message stands alone (it carries its own start
//! bound), so when one reply does not fit [`SyncConfig::max_message_bytes`]
//! it continues in the next message of the same round; the last message of
//! a round carries a flag. Messages must be delivered reliably and in order,
//! as the pairwise channel does. With no differences the exchange ends after
//! one round trip.
//!
//! # Fingerprints and why a member cannot (cheaply) fool them
//! A range's [`Accumulator`] is the sum modulo 2^256 of its ids (read as
//! little-endian integers) plus the count. It is incremental and
//! order-independent, so a set answers range queries from prefix sums in
//! O(log n) ([`SortedItems`]). The fingerprint sent is the first
//! [`FINGERPRINT_LEN`] bytes of blake3, keyed with a fresh per-session salt
//! chosen by the initiator, over the sum and the count.
//!
//! - Ids are blake3 outputs of signed envelopes, so nobody can choose an id;
//!   they can only grind by signing many envelopes.
//! - The salt makes the truncated fingerprint unpredictable before the
//!   session: a birthday search over 48-bit fingerprints (2^24 work) does not
//!   help, because the salt is not known when messages are created. The same
//!   holds for the [`SHORT_ID_LEN`]-byte short ids used in lists.
//! - The limit, stated plainly: a modular sum is not collision-resistant
//!   against someone who chooses many elements. With Wagner's generalised
//!   birthday algorithm a member able to create and distribute tens of
//!   thousands of messages can build two different message sets with equal
//!   sums and counts, so that peers holding one or the other see equal
//!   fingerprints for a range and do not exchange those messages. That
//!   delays convergence of the attacker's (and anything compensated into
//!   the same ranges') messages; it cannot forge, alter or inject anything,
//!   because every envelope is verified on its own, and the work caps below
//!   still hold. A multiplicative or elliptic-curve set hash would close this
//!   at a large CPU cost.
//! - An accidental collision (probability about 2^-48 per compared range
//!   or digest, and per pair of listed ids) hides a difference for one
//!   session only; the next session uses a new salt. Six bytes keep a
//!   session of thousands of ranges far from that, and cost a quarter less
//!   than eight on the wire.
//!
//! # Wire format (version 2)
//! `version ‖ flags ‖ [salt: 16] ‖ [digest: count varint ‖ fingerprint: 6]
//! ‖ [start bound ‖ n ‖ n × (bound ‖ payload)] ‖ [m ‖ m × id: 32]`. Flags
//! say which parts are present and whether the message is the last of its
//! round. Version 1 (no digest, 8-byte fingerprints) is refused. A bound is one byte (mode in the low 3
//! bits, id prefix length in the high 5) plus a LEB128 varint of the
//! timestamp delta to the previous bound, packed as `(delta >> z) << 6 | z`
//! (plus one; zero means infinity) so round timestamps stay short, plus the
//! prefix bytes. Payloads: skip (none), fingerprint (6 bytes), list or need
//! (varint count, 6-byte short ids). The trailing ids are full ids the
//! receiver lacks. Typical sizes: 21 bytes for the opening message, 9 per
//! fingerprint range, 6 per listed id, 32 per missing id.
//!
//! # Bounded work
//! Every incoming message is size-checked before decoding, every count is
//! checked against the bytes that remain before anything is allocated, and
//! a session enforces [`SyncConfig`] caps on rounds, messages per round,
//! open ranges per round and total differences, returning a typed
//! [`SyncError`] instead of doing unbounded work. Answering a list costs at
//! most [`SyncConfig::max_reply_items`] local items; a larger local range is
//! split instead.
//!
//! An honest sender stays well inside the same caps: once a round it is
//! building asks about half of [`SyncConfig::max_open_ranges`] ranges, or
//! carries half the ids that [`SyncConfig::max_messages_per_round`] allows,
//! it hands the rest of the round back as a single fingerprint range, which
//! the peer splits again in the next round. A large backlog therefore takes
//! more rounds instead of failing (see the bench for the costs).
//!
//! Sans-IO: no sockets, no clock, no SQL. The caller supplies the local set
//! through [`ItemSet`] and the salt from its RNG.

mod builder;
mod codec;
mod fingerprint;
mod items;
mod manager;
mod reconciler;

pub use codec::{Digest, Message, Mode, is_opening};
pub use fingerprint::{Accumulator, shared_salt};
pub use items::{Bound, Item, ItemSet, Range, SortedItems};
pub use manager::{SyncAction, SyncManager, SyncManagerConfig, SyncStats};
pub use reconciler::Reconciler;

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
    fn normalized(mut self) -> Self {
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
