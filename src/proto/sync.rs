//! Range-based set reconciliation of a room's message ids.
//!
//! Two peers that each hold a set of messages find out which ids the other
//! lacks, exchanging a few fingerprints instead of whole id lists. The
//! protocol follows Meyer, "Range-Based Set Reconciliation" (arXiv
//! 2212.13567), with negentropy as a reference point; the encoding is our own.
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

use crate::proto::ids::MessageId;
use std::collections::{BTreeSet, HashSet, VecDeque};

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

/// A message's place in its room's order: by timestamp, then id. Orders
/// exactly like the store's `Position`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Item {
    /// Hybrid-logical-clock timestamp.
    pub timestamp: u64,
    /// Message id; breaks ties between equal timestamps.
    pub id: MessageId,
}

/// One end of a range: a position (timestamp, zero-padded id prefix) or
/// infinity. Items below the position are in ranges ending here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    At {
        timestamp: u64,
        /// The id prefix, zero-padded to 32 bytes.
        id: [u8; 32],
        /// How many bytes of `id` are significant (0..=32); the rest are 0.
        prefix_len: u8,
    },
    Infinity,
}

impl Bound {
    /// The lowest bound: below every item.
    pub const MIN: Bound = Bound::At {
        timestamp: 0,
        id: [0; 32],
        prefix_len: 0,
    };

    /// The shortest bound `b` with `a < b <= next`. `a` must sort before `next`.
    pub fn between(a: &Item, next: &Item) -> Bound {
        debug_assert!(a < next, "bounds are taken between sorted neighbours");
        if a.timestamp < next.timestamp {
            // Any timestamp in (a, next] separates them; take the one with
            // the most trailing zeros, which delta-encodes shortest.
            let mut timestamp = next.timestamp;
            for zeros in (1..64).rev() {
                let candidate = (next.timestamp >> zeros) << zeros;
                if candidate > a.timestamp {
                    timestamp = candidate;
                    break;
                }
            }
            return Bound::At {
                timestamp,
                id: [0; 32],
                prefix_len: 0,
            };
        }
        let common =
            a.id.0
                .iter()
                .zip(next.id.0.iter())
                .take_while(|(x, y)| x == y)
                .count();
        let len = (common + 1).min(32);
        let mut id = [0u8; 32];
        id[..len].copy_from_slice(&next.id.0[..len]);
        Bound::At {
            timestamp: next.timestamp,
            id,
            prefix_len: len as u8,
        }
    }

    /// Whether `item` sorts below this bound.
    pub fn is_above(&self, item: &Item) -> bool {
        match self {
            Bound::Infinity => true,
            Bound::At { timestamp, id, .. } => (item.timestamp, &item.id.0) < (*timestamp, id),
        }
    }

    fn key(&self) -> Option<(u64, &[u8; 32])> {
        match self {
            Bound::Infinity => None,
            Bound::At { timestamp, id, .. } => Some((*timestamp, id)),
        }
    }

    /// Strict order of bounds (infinity is greatest).
    fn less_than(&self, other: &Bound) -> bool {
        match (self.key(), other.key()) {
            (_, None) => self.key().is_some(),
            (None, Some(_)) => false,
            (Some(a), Some(b)) => a < b,
        }
    }
}

/// A half-open range `[lower, upper)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub lower: Bound,
    pub upper: Bound,
}

impl Range {
    /// Everything.
    pub const ALL: Range = Range {
        lower: Bound::MIN,
        upper: Bound::Infinity,
    };
}

/// Count and sum modulo 2^256 of ids: what a range fingerprint is built
/// from. Adding and subtracting are exact, so prefix sums give any range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accumulator {
    /// Little-endian 64-bit limbs.
    sum: [u64; 4],
    count: u64,
}

impl Accumulator {
    /// Adds one id.
    pub fn add(&mut self, id: &MessageId) {
        let mut carry = false;
        for (limb, chunk) in self.sum.iter_mut().zip(id.0.chunks_exact(8)) {
            // chunks_exact(8) yields 8-byte slices.
            let value = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
            let (s1, c1) = limb.overflowing_add(value);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            *limb = s2;
            carry = c1 || c2;
        }
        self.count += 1;
    }

    /// `self + other`.
    pub fn plus(&self, other: &Accumulator) -> Accumulator {
        let mut out = *self;
        let mut carry = false;
        for (limb, value) in out.sum.iter_mut().zip(other.sum) {
            let (s1, c1) = limb.overflowing_add(value);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            *limb = s2;
            carry = c1 || c2;
        }
        out.count = self.count.wrapping_add(other.count);
        out
    }

    /// `self - other`; exact when `other` is a subset's accumulator.
    pub fn minus(&self, other: &Accumulator) -> Accumulator {
        let mut out = *self;
        let mut borrow = false;
        for (limb, value) in out.sum.iter_mut().zip(other.sum) {
            let (s1, b1) = limb.overflowing_sub(value);
            let (s2, b2) = s1.overflowing_sub(u64::from(borrow));
            *limb = s2;
            borrow = b1 || b2;
        }
        out.count = self.count.wrapping_sub(other.count);
        out
    }

    /// Number of items.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn fingerprint(&self, keys: &Keys) -> [u8; FINGERPRINT_LEN] {
        let mut input = [0u8; 40];
        for (slot, limb) in input.chunks_exact_mut(8).zip(self.sum) {
            slot.copy_from_slice(&limb.to_le_bytes());
        }
        input[32..].copy_from_slice(&self.count.to_le_bytes());
        let hash = blake3::keyed_hash(&keys.fingerprint, &input);
        let mut out = [0u8; FINGERPRINT_LEN];
        out.copy_from_slice(&hash.as_bytes()[..FINGERPRINT_LEN]);
        out
    }
}

type ShortId = [u8; SHORT_ID_LEN];

/// Per-session keys derived from the salt.
#[derive(Clone)]
struct Keys {
    fingerprint: [u8; 32],
    short: [u8; 32],
}

impl Keys {
    fn new(salt: &[u8; SALT_LEN]) -> Self {
        Keys {
            fingerprint: blake3::derive_key("kith sync v1 fingerprint", salt),
            short: blake3::derive_key("kith sync v1 short id", salt),
        }
    }

    fn short(&self, id: &MessageId) -> ShortId {
        let hash = blake3::keyed_hash(&self.short, &id.0);
        let mut out = [0u8; SHORT_ID_LEN];
        out.copy_from_slice(&hash.as_bytes()[..SHORT_ID_LEN]);
        out
    }
}

/// The local side's set, as the reconciler sees it. The node implements it
/// over the store; [`SortedItems`] is the in-memory implementation.
pub trait ItemSet {
    /// Count and id sum of the items in `range`.
    fn summary(&self, range: &Range) -> Accumulator;
    /// Up to `limit` items of `range`, ascending.
    fn items(&self, range: &Range, limit: usize) -> Vec<Item>;
    /// Splits the items of `range` into `parts` consecutive groups of nearly
    /// equal size and returns, for each of the `parts - 1` cuts, the last
    /// item before it and the first item after it. Returns fewer pairs when
    /// the range holds fewer than `parts` items.
    fn split_pairs(&self, range: &Range, parts: usize) -> Vec<(Item, Item)>;

    /// The items at positions `index - 1` and `index` of the whole set in
    /// ascending order, for `0 < index < len`; `None` otherwise. The
    /// default bisects with [`Self::split_pairs`] and [`Self::summary`]
    /// (O(log n) queries); implementations with positional access may do
    /// better.
    fn pair_at(&self, index: u64) -> Option<(Item, Item)> {
        let mut range = Range::ALL;
        // Items of the whole set below `range`.
        let mut offset = 0u64;
        loop {
            let count = self.summary(&range).count();
            let want = index.checked_sub(offset)?;
            if want == 0 || want >= count {
                return None;
            }
            if count <= 64 {
                let items = self.items(&range, count as usize);
                let want = want as usize;
                return Some((*items.get(want - 1)?, *items.get(want)?));
            }
            let (below, above) = *self.split_pairs(&range, 2).first()?;
            let middle = count / 2;
            if want == middle {
                return Some((below, above));
            }
            let cut = Bound::between(&below, &above);
            if want < middle {
                range.upper = cut;
            } else {
                offset += middle;
                range.lower = cut;
            }
        }
    }
}

/// A sorted, deduplicated in-memory set with prefix sums: every
/// [`ItemSet`] query is O(log n) plus the size of its answer.
#[derive(Clone, Debug)]
pub struct SortedItems {
    items: Vec<Item>,
    /// `prefix[i]` accumulates `items[..i]`.
    prefix: Vec<Accumulator>,
}

impl Default for SortedItems {
    fn default() -> Self {
        SortedItems::new(Vec::new())
    }
}

impl SortedItems {
    /// Builds the set from items in any order; duplicates collapse.
    pub fn new(mut items: Vec<Item>) -> Self {
        items.sort_unstable();
        items.dedup();
        let mut prefix = Vec::with_capacity(items.len() + 1);
        let mut acc = Accumulator::default();
        prefix.push(acc);
        for item in &items {
            acc.add(&item.id);
            prefix.push(acc);
        }
        SortedItems { items, prefix }
    }

    /// The items, ascending.
    pub fn as_slice(&self) -> &[Item] {
        &self.items
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn index(&self, bound: &Bound) -> usize {
        self.items.partition_point(|item| bound.is_above(item))
    }

    fn indices(&self, range: &Range) -> (usize, usize) {
        let lower = self.index(&range.lower);
        let upper = self.index(&range.upper).max(lower);
        (lower, upper)
    }
}

impl ItemSet for SortedItems {
    fn summary(&self, range: &Range) -> Accumulator {
        let (lower, upper) = self.indices(range);
        self.prefix[upper].minus(&self.prefix[lower])
    }

    fn items(&self, range: &Range, limit: usize) -> Vec<Item> {
        let (lower, upper) = self.indices(range);
        self.items[lower..upper]
            .iter()
            .take(limit)
            .copied()
            .collect()
    }

    fn split_pairs(&self, range: &Range, parts: usize) -> Vec<(Item, Item)> {
        let (lower, upper) = self.indices(range);
        let count = upper - lower;
        let parts = parts.min(count);
        (1..parts)
            .map(|k| {
                let cut = lower + k * count / parts;
                (self.items[cut - 1], self.items[cut])
            })
            .collect()
    }

    fn pair_at(&self, index: u64) -> Option<(Item, Item)> {
        let index = usize::try_from(index).ok()?;
        if index == 0 || index >= self.items.len() {
            return None;
        }
        Some((self.items[index - 1], self.items[index]))
    }
}

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

/// How one range of a message is to be handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nothing to do.
    Skip,
    /// Compare with the receiver's fingerprint of the range.
    Fingerprint([u8; FINGERPRINT_LEN]),
    /// The sender's complete set in the range, as short ids.
    List(Vec<ShortId>),
    /// Short ids from the receiver's earlier list that the sender lacks.
    Need(Vec<ShortId>),
}

const MODE_SKIP: u8 = 0;
const MODE_FINGERPRINT: u8 = 1;
const MODE_LIST: u8 = 2;
const MODE_NEED: u8 = 3;

const FLAG_INIT: u8 = 1;
const FLAG_LAST: u8 = 2;
const FLAG_RANGES: u8 = 4;
const FLAG_IDS: u8 = 8;
const FLAG_DIGEST: u8 = 16;
/// The first message, opened with a nonce instead of a salt (see
/// [`Reconciler::initiator_shared`]).
const FLAG_NONCE: u8 = 32;
const KNOWN_FLAGS: u8 = FLAG_INIT | FLAG_LAST | FLAG_RANGES | FLAG_IDS | FLAG_DIGEST | FLAG_NONCE;

/// How a session opens: the salt itself, or a nonce from which both sides
/// derive the salt with a secret they share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opening {
    Salt([u8; SALT_LEN]),
    Nonce(u64),
}

/// Whether `bytes` open a session (carry a salt or a nonce), judged from
/// the header alone; what else they hold is checked when they are handled.
pub fn is_opening(bytes: &[u8]) -> bool {
    matches!(bytes, [SYNC_VERSION, flags, ..] if flags & (FLAG_INIT | FLAG_NONCE) != 0)
}

/// The salt of a session opened with `nonce` between two peers sharing
/// `secret` (their pairwise session's exporter): as unpredictable to anyone
/// else as a random one, and it need not travel.
pub fn shared_salt(secret: &[u8; 32], nonce: u64) -> [u8; SALT_LEN] {
    let mut hasher = blake3::Hasher::new_keyed(secret);
    hasher.update(b"kith sync salt v1");
    hasher.update(&nonce.to_le_bytes());
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&hasher.finalize().as_bytes()[..SALT_LEN]);
    salt
}

/// A whole-set summary: the sender's item count and the fingerprint of
/// all its items. The receiver compares it with the fingerprint of its own
/// first `count` items, so "one side holds a prefix of the other" (the
/// offline case) is found in one message of a few bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest {
    /// Items in the sender's set.
    pub count: u64,
    /// Fingerprint of the sender's whole set.
    pub fingerprint: [u8; FINGERPRINT_LEN],
}

/// One decoded sync message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Present on the first message of a session opened with a salt.
    pub salt: Option<[u8; SALT_LEN]>,
    /// Present instead on the first message of a session whose salt both
    /// sides derive from a shared secret ([`shared_salt`]).
    pub nonce: Option<u64>,
    /// The sender's whole-set digest: on the initiator's first message, and
    /// on the responder's first when it holds fewer items.
    pub digest: Option<Digest>,
    /// Whether this is the last message of its round.
    pub last: bool,
    /// Lower bound of the first range.
    pub start: Bound,
    /// Contiguous ranges from `start`: each upper bound with its mode.
    pub ranges: Vec<(Bound, Mode)>,
    /// Full ids the receiver lacks.
    pub ids: Vec<MessageId>,
}

// ---- encoding ----

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint_len(value: u64) -> usize {
    (64 - value.leading_zeros() as usize).max(1).div_ceil(7)
}

fn prefix_code(prefix_len: u8) -> u8 {
    // 31 stands for a full 32-byte id; a 31-byte prefix is sent as 32.
    if prefix_len >= 31 { 31 } else { prefix_len }
}

fn code_len(code: u8) -> usize {
    if code == 31 { 32 } else { usize::from(code) }
}

/// Encodes `bound` relative to the previous bound's timestamp. The mode is
/// packed into the low 3 bits of the first byte with the prefix code.
fn put_bound(out: &mut Vec<u8>, prev_timestamp: u64, bound: &Bound, mode: u8) {
    match bound {
        Bound::Infinity => {
            out.push(mode);
            put_varint(out, 0);
        }
        Bound::At {
            timestamp,
            id,
            prefix_len,
        } => {
            let code = prefix_code(*prefix_len);
            out.push(mode | (code << 3));
            // Bounds increase within a message, so this does not wrap; if a
            // caller breaks that, the wrapped delta makes `parse` reject the
            // message instead of this panicking.
            let delta = timestamp.wrapping_sub(prev_timestamp);
            let zeros = if delta == 0 {
                0
            } else {
                delta.trailing_zeros()
            };
            // (delta >> zeros) < 2^(64 - zeros), so shifting by 6 can overflow
            // only when zeros < 6; u128 keeps it exact.
            let packed = ((u128::from(delta >> zeros) << 6) | u128::from(zeros)) + 1;
            put_varint128(out, packed);
            out.extend_from_slice(&id[..code_len(code)]);
        }
    }
}

fn put_varint128(out: &mut Vec<u8>, mut value: u128) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn bound_len(prev_timestamp: u64, bound: &Bound) -> usize {
    let mut scratch = Vec::with_capacity(48);
    put_bound(&mut scratch, prev_timestamp, bound, 0);
    scratch.len()
}

fn bound_timestamp(bound: &Bound, fallback: u64) -> u64 {
    match bound {
        Bound::At { timestamp, .. } => *timestamp,
        Bound::Infinity => fallback,
    }
}

impl Message {
    /// Encodes the message.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.push(SYNC_VERSION);
        let mut flags = 0;
        if self.salt.is_some() {
            flags |= FLAG_INIT;
        }
        if self.nonce.is_some() {
            flags |= FLAG_NONCE;
        }
        if self.last {
            flags |= FLAG_LAST;
        }
        if !self.ranges.is_empty() {
            flags |= FLAG_RANGES;
        }
        if !self.ids.is_empty() {
            flags |= FLAG_IDS;
        }
        if self.digest.is_some() {
            flags |= FLAG_DIGEST;
        }
        out.push(flags);
        if let Some(salt) = &self.salt {
            out.extend_from_slice(salt);
        }
        if let Some(nonce) = self.nonce {
            put_varint(&mut out, nonce);
        }
        if let Some(digest) = &self.digest {
            put_varint(&mut out, digest.count);
            out.extend_from_slice(&digest.fingerprint);
        }
        if !self.ranges.is_empty() {
            put_bound(&mut out, 0, &self.start, 0);
            put_varint(&mut out, self.ranges.len() as u64);
            let mut prev = bound_timestamp(&self.start, 0);
            for (upper, mode) in &self.ranges {
                let code = match mode {
                    Mode::Skip => MODE_SKIP,
                    Mode::Fingerprint(_) => MODE_FINGERPRINT,
                    Mode::List(_) => MODE_LIST,
                    Mode::Need(_) => MODE_NEED,
                };
                put_bound(&mut out, prev, upper, code);
                prev = bound_timestamp(upper, prev);
                match mode {
                    Mode::Skip => {}
                    Mode::Fingerprint(fp) => out.extend_from_slice(fp),
                    Mode::List(shorts) | Mode::Need(shorts) => {
                        put_varint(&mut out, shorts.len() as u64);
                        for short in shorts {
                            out.extend_from_slice(short);
                        }
                    }
                }
            }
        }
        if !self.ids.is_empty() {
            put_varint(&mut out, self.ids.len() as u64);
            for id in &self.ids {
                out.extend_from_slice(&id.0);
            }
        }
        out
    }

    /// Parses an untrusted message. Never panics; never allocates more than
    /// the input's size justifies.
    pub fn parse(bytes: &[u8]) -> Result<Message, SyncError> {
        if bytes.len() > MAX_SYNC_MESSAGE {
            return Err(SyncError::TooLarge(bytes.len()));
        }
        let mut reader = Reader { bytes, pos: 0 };
        let version = reader.byte()?;
        if version != SYNC_VERSION {
            return Err(SyncError::UnknownVersion(version));
        }
        let flags = reader.byte()?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(SyncError::Malformed("unknown flags"));
        }
        if flags & FLAG_INIT != 0 && flags & FLAG_NONCE != 0 {
            return Err(SyncError::Malformed("both a salt and a nonce"));
        }
        let salt = if flags & FLAG_INIT != 0 {
            let mut salt = [0u8; SALT_LEN];
            salt.copy_from_slice(reader.take(SALT_LEN)?);
            Some(salt)
        } else {
            None
        };
        let nonce = if flags & FLAG_NONCE != 0 {
            Some(
                u64::try_from(reader.varint()?)
                    .map_err(|_| SyncError::Malformed("nonce overflows"))?,
            )
        } else {
            None
        };
        let digest = if flags & FLAG_DIGEST != 0 {
            let count = u64::try_from(reader.varint()?)
                .map_err(|_| SyncError::Malformed("digest count overflows"))?;
            let mut fingerprint = [0u8; FINGERPRINT_LEN];
            fingerprint.copy_from_slice(reader.take(FINGERPRINT_LEN)?);
            Some(Digest { count, fingerprint })
        } else {
            None
        };
        let mut start = Bound::MIN;
        let mut ranges = Vec::new();
        if flags & FLAG_RANGES != 0 {
            let (first, mode) = reader.bound(0)?;
            if mode != 0 {
                return Err(SyncError::Malformed("start bound carries a mode"));
            }
            if first == Bound::Infinity {
                return Err(SyncError::Malformed("start bound is infinity"));
            }
            start = first;
            // Each range takes at least two bytes.
            let count = reader.count(2)?;
            if count == 0 {
                return Err(SyncError::Malformed("empty range list"));
            }
            ranges.reserve(count);
            let mut prev = start;
            for _ in 0..count {
                let (upper, mode) = reader.bound(bound_timestamp(&prev, 0))?;
                if !prev.less_than(&upper) {
                    return Err(SyncError::Malformed("bounds do not increase"));
                }
                let mode = match mode {
                    MODE_SKIP => Mode::Skip,
                    MODE_FINGERPRINT => {
                        let mut fp = [0u8; FINGERPRINT_LEN];
                        fp.copy_from_slice(reader.take(FINGERPRINT_LEN)?);
                        Mode::Fingerprint(fp)
                    }
                    MODE_LIST => Mode::List(reader.shorts()?),
                    MODE_NEED => Mode::Need(reader.shorts()?),
                    _ => return Err(SyncError::Malformed("unknown range mode")),
                };
                ranges.push((upper, mode));
                prev = upper;
            }
        }
        let mut ids = Vec::new();
        if flags & FLAG_IDS != 0 {
            let count = reader.count(32)?;
            if count == 0 {
                return Err(SyncError::Malformed("empty id list"));
            }
            ids.reserve(count);
            for _ in 0..count {
                let mut id = [0u8; 32];
                id.copy_from_slice(reader.take(32)?);
                ids.push(MessageId(id));
            }
        }
        let rest = bytes.len() - reader.pos;
        if rest != 0 {
            return Err(SyncError::TrailingBytes(rest));
        }
        Ok(Message {
            salt,
            nonce,
            digest,
            last: flags & FLAG_LAST != 0,
            start,
            ranges,
            ids,
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], SyncError> {
        let end = self.pos.checked_add(len).ok_or(SyncError::Truncated)?;
        let slice = self.bytes.get(self.pos..end).ok_or(SyncError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, SyncError> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u128, SyncError> {
        let mut value: u128 = 0;
        for shift in (0..).step_by(7).take(11) {
            let byte = self.byte()?;
            value |= u128::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(SyncError::Malformed("varint too long"))
    }

    /// A count of elements of at least `min_size` bytes each, checked
    /// against the bytes left before anything is allocated.
    fn count(&mut self, min_size: usize) -> Result<usize, SyncError> {
        let count = self.varint()?;
        let left = self.bytes.len() - self.pos;
        if count > (left / min_size) as u128 {
            return Err(SyncError::Malformed("count exceeds the message"));
        }
        Ok(count as usize)
    }

    fn shorts(&mut self) -> Result<Vec<ShortId>, SyncError> {
        let count = self.count(SHORT_ID_LEN)?;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let mut short = [0u8; SHORT_ID_LEN];
            short.copy_from_slice(self.take(SHORT_ID_LEN)?);
            out.push(short);
        }
        Ok(out)
    }

    fn bound(&mut self, prev_timestamp: u64) -> Result<(Bound, u8), SyncError> {
        let head = self.byte()?;
        let mode = head & 0x07;
        let code = head >> 3;
        let packed = self.varint()?;
        if packed == 0 {
            if code != 0 {
                return Err(SyncError::Malformed("infinity with an id prefix"));
            }
            return Ok((Bound::Infinity, mode));
        }
        let packed = packed - 1;
        let zeros = (packed & 0x3f) as u32;
        let significant = packed >> 6;
        if significant >= (1u128 << (64 - zeros)) {
            return Err(SyncError::Malformed("timestamp delta overflows"));
        }
        let delta = (significant as u64) << zeros;
        let timestamp = prev_timestamp
            .checked_add(delta)
            .ok_or(SyncError::Malformed("timestamp overflows"))?;
        let len = code_len(code);
        let mut id = [0u8; 32];
        id[..len].copy_from_slice(self.take(len)?);
        Ok((
            Bound::At {
                timestamp,
                id,
                prefix_len: len as u8,
            },
            mode,
        ))
    }
}

// ---- the session ----

/// Builds the messages of one outgoing round within the size budget.
struct Builder {
    max_bytes: usize,
    done: Vec<Message>,
    current: Option<Message>,
    /// Encoded size of `current` so far, with slack for the count varints.
    current_len: usize,
    /// Timestamp of the last bound in `current`, for delta encoding.
    prev_timestamp: u64,
    opening: Option<Opening>,
    /// Whether any range in this round asks the peer for an answer.
    asks: bool,
    /// Ranges asking for an answer, and full ids, emitted this round.
    open: usize,
    ids: usize,
}

fn split_opening(opening: Option<Opening>) -> (Option<[u8; SALT_LEN]>, Option<u64>) {
    match opening {
        Some(Opening::Salt(salt)) => (Some(salt), None),
        Some(Opening::Nonce(nonce)) => (None, Some(nonce)),
        None => (None, None),
    }
}

/// Version and flags.
const HEADER_LEN: usize = 2;
/// Room kept for the range count varint and the id count varint.
const COUNT_SLACK: usize = 6;

impl Builder {
    fn new(max_bytes: usize, opening: Option<Opening>) -> Self {
        Builder {
            max_bytes,
            done: Vec::new(),
            current: None,
            current_len: 0,
            prev_timestamp: 0,
            opening,
            asks: false,
            open: 0,
            ids: 0,
        }
    }

    fn open(&mut self) {
        if let Some(message) = self.current.take() {
            self.done.push(message);
        }
        // Only the very first message of a session carries the opening.
        let opening = if self.done.is_empty() {
            self.opening
        } else {
            None
        };
        let (salt, nonce) = split_opening(opening);
        self.current_len =
            HEADER_LEN + COUNT_SLACK + salt.map_or(0, |_| SALT_LEN) + nonce.map_or(0, varint_len);
        self.prev_timestamp = 0;
        self.current = Some(Message {
            salt,
            nonce,
            digest: None,
            last: false,
            start: Bound::MIN,
            ranges: Vec::new(),
            ids: Vec::new(),
        });
    }

    /// What appending `[lower, upper)` with a payload of `payload` bytes
    /// costs, or `None` when it cannot follow the current message's ranges
    /// (it starts below their end).
    fn cost(&self, lower: &Bound, upper: &Bound, payload: usize) -> Option<usize> {
        let message = self.current.as_ref()?;
        let Some((last_upper, _)) = message.ranges.last() else {
            return Some(
                bound_len(0, lower) + bound_len(bound_timestamp(lower, 0), upper) + payload,
            );
        };
        if last_upper == lower {
            Some(bound_len(self.prev_timestamp, upper) + payload)
        } else if last_upper.less_than(lower) {
            // A skip range fills the gap.
            let gap = bound_len(self.prev_timestamp, lower);
            Some(gap + bound_len(bound_timestamp(lower, self.prev_timestamp), upper) + payload)
        } else {
            None
        }
    }

    /// Adds a range `[lower, upper)` with `mode`, starting a new message
    /// when the budget would be exceeded or the order requires it. Ranges
    /// the peer needs nothing for are simply left out: gaps become skips.
    fn range(&mut self, lower: Bound, upper: Bound, mode: Mode) {
        debug_assert!(lower.less_than(&upper), "ranges are non-empty");
        if !matches!(mode, Mode::Skip) {
            self.asks = true;
            self.open += 1;
        }
        let payload = match &mode {
            Mode::Skip => 0,
            Mode::Fingerprint(_) => FINGERPRINT_LEN,
            Mode::List(shorts) | Mode::Need(shorts) => {
                varint_len(shorts.len() as u64) + shorts.len() * SHORT_ID_LEN
            }
        };
        let cost = match self.cost(&lower, &upper, payload) {
            Some(cost) if self.current_len + cost <= self.max_bytes => cost,
            _ => {
                self.open();
                self.cost(&lower, &upper, payload)
                    .expect("a fresh message accepts any range")
            }
        };
        self.current_len += cost;
        let message = self.current.as_mut().expect("opened above");
        match message.ranges.last() {
            None => {
                message.start = lower;
                self.prev_timestamp = bound_timestamp(&lower, 0);
            }
            Some((last_upper, _)) if *last_upper != lower => {
                message.ranges.push((lower, Mode::Skip));
                self.prev_timestamp = bound_timestamp(&lower, self.prev_timestamp);
            }
            Some(_) => {}
        }
        self.prev_timestamp = bound_timestamp(&upper, self.prev_timestamp);
        message.ranges.push((upper, mode));
    }

    /// Puts this side's whole-set digest in the current message; call
    /// before adding anything else to the round. A digest asks for an
    /// answer.
    fn digest(&mut self, digest: Digest) {
        if self.current.is_none() {
            self.open();
        }
        self.asks = true;
        self.current_len += varint_len(digest.count) + FINGERPRINT_LEN;
        self.current.as_mut().expect("opened above").digest = Some(digest);
    }

    /// Messages of this round so far, counting the one being filled.
    fn messages(&self) -> usize {
        self.done.len() + usize::from(self.current.is_some())
    }

    /// Adds a full id the peer lacks.
    fn id(&mut self, id: MessageId) {
        if self.current.is_none() || self.current_len + 32 > self.max_bytes {
            self.open();
        }
        self.current_len += 32;
        self.ids += 1;
        self.current.as_mut().expect("opened above").ids.push(id);
    }

    /// Finishes the round: the encoded messages, the last one flagged, and
    /// whether the round asks the peer for an answer. With `always`, an
    /// empty round is still one (empty) message.
    fn finish(mut self, always: bool) -> (Vec<Vec<u8>>, bool) {
        if let Some(message) = self.current.take() {
            self.done.push(message);
        }
        if self.done.is_empty() && always {
            let (salt, nonce) = split_opening(self.opening);
            self.done.push(Message {
                salt,
                nonce,
                digest: None,
                last: false,
                start: Bound::MIN,
                ranges: Vec::new(),
                ids: Vec::new(),
            });
        }
        if let Some(last) = self.done.last_mut() {
            last.last = true;
        }
        (self.done.iter().map(Message::emit).collect(), self.asks)
    }
}

/// Whose turn it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Responder before the first message.
    AwaitingInit,
    /// Receiving a round from the peer.
    Receiving,
    /// Finished: nothing more will be sent or accepted.
    Done,
}

/// One side of one reconciliation session with one peer.
///
/// Drive it: the initiator calls [`Reconciler::initiate`]; both sides feed
/// every message from the peer to [`Reconciler::handle_message`] and send
/// what [`Reconciler::poll_message`] yields, until
/// [`Reconciler::is_done`]. Then [`Reconciler::have_ids`] are the ids to
/// send (the peer lacks them) and [`Reconciler::need_ids`] the ids to fetch.
pub struct Reconciler {
    config: SyncConfig,
    keys: Option<Keys>,
    /// The initiator's opening; `None` on a responder.
    opening: Option<Opening>,
    /// A responder's secret shared with the peer, for nonce openings.
    shared: Option<[u8; 32]>,
    state: State,
    outgoing: VecDeque<Vec<u8>>,
    builder: Option<Builder>,
    /// Whether the round being received asks for an answer.
    round_asks: bool,
    round_messages: u32,
    round_open: usize,
    /// Once this round's budget is spent: the span whose remaining work is
    /// handed back to the peer as one fingerprint at the end of the round.
    deferred: Option<(Bound, Bound)>,
    /// Whether the peer's digest showed it holds a prefix of our set: we
    /// sent the rest, and the ranges of this round need no answer.
    round_settled: bool,
    /// Whether a digest arrived already (one per session and side).
    digest_seen: bool,
    rounds: u32,
    have: BTreeSet<MessageId>,
    need: BTreeSet<MessageId>,
}

impl Reconciler {
    /// The side that starts, with a fresh random salt from the caller's RNG.
    pub fn initiator(config: SyncConfig, salt: [u8; SALT_LEN]) -> Self {
        let mut reconciler = Reconciler::responder(config);
        reconciler.keys = Some(Keys::new(&salt));
        reconciler.opening = Some(Opening::Salt(salt));
        reconciler.state = State::Receiving;
        reconciler
    }

    /// The side that starts, between peers that share `secret` (their
    /// pairwise session's exporter): the first message carries `nonce` (a
    /// byte or a few) instead of the 16-byte salt, which both derive
    /// ([`shared_salt`]). Use a fresh nonce per session with the peer.
    pub fn initiator_shared(config: SyncConfig, secret: &[u8; 32], nonce: u64) -> Self {
        let mut reconciler = Reconciler::responder(config);
        reconciler.keys = Some(Keys::new(&shared_salt(secret, nonce)));
        reconciler.opening = Some(Opening::Nonce(nonce));
        reconciler.state = State::Receiving;
        reconciler
    }

    /// The side that answers, sharing `secret` with the initiator: it
    /// accepts a nonce opening as well as a salt.
    pub fn responder_shared(config: SyncConfig, secret: [u8; 32]) -> Self {
        let mut reconciler = Reconciler::responder(config);
        reconciler.shared = Some(secret);
        reconciler
    }

    /// The side that answers.
    pub fn responder(config: SyncConfig) -> Self {
        Reconciler {
            config: config.normalized(),
            keys: None,
            opening: None,
            shared: None,
            state: State::AwaitingInit,
            outgoing: Default::default(),
            builder: None,
            round_asks: false,
            round_messages: 0,
            round_open: 0,
            deferred: None,
            round_settled: false,
            digest_seen: false,
            rounds: 0,
            have: BTreeSet::new(),
            need: BTreeSet::new(),
        }
    }

    /// Queues the first round: the digest of the local set (its count and
    /// whole-set fingerprint). Call once, on an initiator.
    ///
    /// # Panics
    /// On a responder, which has no salt to start with (a caller bug).
    pub fn initiate(&mut self, set: &impl ItemSet) {
        let keys = self
            .keys
            .clone()
            .expect("only initiators start, and they are built with a salt");
        let mut builder = Builder::new(self.config.max_message_bytes, self.opening);
        builder.digest(Self::digest_of(set, &keys));
        let (messages, _) = builder.finish(true);
        self.outgoing.extend(messages);
    }

    fn digest_of(set: &impl ItemSet, keys: &Keys) -> Digest {
        let summary = set.summary(&Range::ALL);
        Digest {
            count: summary.count(),
            fingerprint: summary.fingerprint(keys),
        }
    }

    /// Answers the peer's digest. When the peer's set equals our first
    /// `count` items, it lacks exactly the rest: send those and settle the
    /// round. Otherwise a responder opens the range exchange (with its own
    /// digest when it holds fewer items, so the peer can do the same
    /// check), and an initiator answers the ranges that came with it.
    fn handle_digest(
        &mut self,
        set: &impl ItemSet,
        keys: &Keys,
        theirs: &Digest,
        builder: &mut Builder,
    ) -> Result<(), SyncError> {
        if self.digest_seen {
            return Err(SyncError::OutOfTurn("second digest"));
        }
        self.digest_seen = true;
        self.round_asks = true;
        let mine = set.summary(&Range::ALL);
        if mine.count() >= theirs.count {
            let cut = if theirs.count == 0 {
                Bound::MIN
            } else if theirs.count == mine.count() {
                Bound::Infinity
            } else {
                // 0 < theirs.count < mine.count(), so the pair exists.
                let (below, above) = set.pair_at(theirs.count).expect("index is inside the set");
                Bound::between(&below, &above)
            };
            let prefix = Range {
                lower: Bound::MIN,
                upper: cut,
            };
            if set.summary(&prefix).fingerprint(keys) == theirs.fingerprint {
                self.round_settled = true;
                if cut != Bound::Infinity {
                    self.send_from(set, keys, cut, builder)?;
                }
                return Ok(());
            }
        }
        if self.state == State::Receiving && self.rounds == 1 && self.opening.is_none() {
            // The responder's first answer: open the range exchange.
            if mine.count() < theirs.count {
                builder.digest(Self::digest_of(set, keys));
            }
            if mine.count() <= self.config.list_threshold as u64 {
                let shorts = set
                    .items(&Range::ALL, self.config.list_threshold)
                    .iter()
                    .map(|item| keys.short(&item.id))
                    .collect();
                builder.range(Bound::MIN, Bound::Infinity, Mode::List(shorts));
            } else {
                // Stay well inside the peer's caps on open ranges and on
                // messages per round (a range costs about 9 bytes).
                let by_messages = self.config.max_messages_per_round as usize / 2
                    * (self.config.max_message_bytes / 12);
                let most = self
                    .config
                    .initial_buckets
                    .min(self.config.max_open_ranges / 2)
                    .min(by_messages)
                    .max(2);
                let parts = (mine.count() / self.config.list_threshold as u64).clamp(2, most as u64)
                    as usize;
                self.split(set, keys, &Range::ALL, parts, builder);
            }
        }
        Ok(())
    }

    /// Sends every local item from `lower` up as a full id, within this
    /// round's id budget; what does not fit goes back as one fingerprint.
    fn send_from(
        &mut self,
        set: &impl ItemSet,
        keys: &Keys,
        lower: Bound,
        builder: &mut Builder,
    ) -> Result<(), SyncError> {
        let budget = self.id_budget();
        let range = Range {
            lower,
            upper: Bound::Infinity,
        };
        let items = set.items(&range, budget + 1);
        for item in items.iter().take(budget) {
            self.add_have(item.id)?;
            builder.id(item.id);
        }
        if items.len() > budget {
            let rest = Range {
                lower: Bound::between(&items[budget - 1], &items[budget]),
                upper: Bound::Infinity,
            };
            let fp = set.summary(&rest).fingerprint(keys);
            builder.range(rest.lower, rest.upper, Mode::Fingerprint(fp));
        }
        Ok(())
    }

    /// Handles one message from the peer.
    pub fn handle_message(&mut self, set: &impl ItemSet, bytes: &[u8]) -> Result<(), SyncError> {
        let result = self.handle_inner(set, bytes);
        if result.is_err() {
            self.state = State::Done;
            self.outgoing.clear();
        }
        result
    }

    fn handle_inner(&mut self, set: &impl ItemSet, bytes: &[u8]) -> Result<(), SyncError> {
        if self.state == State::Done {
            return Err(SyncError::OutOfTurn("session is finished"));
        }
        let message = Message::parse(bytes)?;
        match (self.state, message.salt, message.nonce) {
            (State::AwaitingInit, Some(salt), None) => {
                self.keys = Some(Keys::new(&salt));
                self.state = State::Receiving;
            }
            (State::AwaitingInit, None, Some(nonce)) => {
                let secret = self.shared.ok_or(SyncError::OutOfTurn(
                    "a nonce opening without a shared secret",
                ))?;
                self.keys = Some(Keys::new(&shared_salt(&secret, nonce)));
                self.state = State::Receiving;
            }
            (State::AwaitingInit, _, _) => {
                return Err(SyncError::OutOfTurn("first message carries no salt"));
            }
            (_, Some(_), _) | (_, _, Some(_)) => {
                return Err(SyncError::OutOfTurn("salt after the start"));
            }
            (_, None, None) => {}
        }
        // Initiators are built with keys; responders get them from the
        // first message, checked just above.
        let keys = self.keys.clone().expect("keys are set once receiving");
        if self.builder.is_none() {
            self.rounds += 1;
            if self.rounds > self.config.max_rounds {
                return Err(SyncError::CapExceeded("rounds"));
            }
            self.builder = Some(Builder::new(self.config.max_message_bytes, None));
            self.round_asks = false;
            self.round_messages = 0;
            self.round_open = 0;
            self.deferred = None;
            self.round_settled = false;
        }
        self.round_messages += 1;
        if self.round_messages > self.config.max_messages_per_round {
            return Err(SyncError::CapExceeded("messages per round"));
        }
        let mut builder = self.builder.take().expect("created above");
        if let Some(digest) = &message.digest {
            self.handle_digest(set, &keys, digest, &mut builder)?;
        }
        let ranges: &[(Bound, Mode)] = if self.round_settled {
            // The peer holds a prefix of our set and got the rest: nothing
            // it asks in this round needs an answer.
            &[]
        } else {
            &message.ranges
        };
        let mut lower = message.start;
        for (upper, mode) in ranges {
            let range = Range {
                lower,
                upper: *upper,
            };
            lower = *upper;
            if !matches!(mode, Mode::Skip) {
                self.round_asks = true;
                self.round_open += 1;
                if self.round_open > self.config.max_open_ranges {
                    return Err(SyncError::CapExceeded("open ranges"));
                }
            }
            if let Some((from, to)) = &mut self.deferred
                && !matches!(mode, Mode::Need(_))
            {
                // Everything after the budget ran out is answered as one
                // range; a Need costs only ids, so it is still served.
                if range.lower.less_than(from) {
                    *from = range.lower;
                }
                if to.less_than(&range.upper) {
                    *to = range.upper;
                }
                continue;
            }
            if matches!(mode, Mode::Fingerprint(_) | Mode::List(_))
                && builder.messages() > 0
                && builder.messages() * 4 + 4 > self.config.max_messages_per_round as usize
            {
                // Ranges of this round fill a quarter of the messages the
                // peer accepts (ids may fill half): the rest goes back as
                // one range, as with open ranges.
                self.deferred = Some((range.lower, range.upper));
                continue;
            }
            match mode {
                Mode::Skip => {}
                Mode::Fingerprint(theirs) => {
                    let summary = set.summary(&range);
                    if summary.fingerprint(&keys) == *theirs {
                        {}
                    } else if summary.count() <= self.config.list_threshold as u64 {
                        let shorts = set
                            .items(&range, self.config.list_threshold)
                            .iter()
                            .map(|item| keys.short(&item.id))
                            .collect();
                        builder.range(range.lower, range.upper, Mode::List(shorts));
                    } else {
                        self.split_or_defer(set, &keys, &range, &mut builder);
                    }
                }
                Mode::List(theirs) => {
                    let summary = set.summary(&range);
                    let count = summary.count();
                    if count > self.config.max_reply_items as u64 {
                        self.split_or_defer(set, &keys, &range, &mut builder);
                        continue;
                    }
                    if builder.ids > 0 && builder.ids + count as usize > self.id_budget() {
                        // This round carries enough ids; the peer lists
                        // again after comparing our fingerprint.
                        self.deferred = Some((range.lower, range.upper));
                        continue;
                    }
                    let theirs: HashSet<ShortId> = theirs.iter().copied().collect();
                    let mine = set.items(&range, self.config.max_reply_items);
                    let mut mine_short = HashSet::with_capacity(mine.len());
                    for item in &mine {
                        let short = keys.short(&item.id);
                        mine_short.insert(short);
                        if !theirs.contains(&short) {
                            self.add_have(item.id)?;
                            builder.id(item.id);
                        }
                    }
                    let mut wanted: Vec<ShortId> = theirs
                        .iter()
                        .filter(|short| !mine_short.contains(*short))
                        .copied()
                        .collect();
                    if wanted.is_empty() {
                        {}
                    } else {
                        wanted.sort_unstable();
                        self.emit_need(&range, wanted, &mut builder);
                    }
                }
                Mode::Need(wanted) => {
                    let wanted: HashSet<ShortId> = wanted.iter().copied().collect();
                    // We listed at most `list_threshold` items for this range;
                    // the cap keeps a forged range from costing more.
                    let limit = self.config.list_threshold.max(self.config.max_reply_items);
                    for item in set.items(&range, limit) {
                        if wanted.contains(&keys.short(&item.id)) {
                            self.add_have(item.id)?;
                            builder.id(item.id);
                        }
                    }
                    {}
                }
            }
        }
        for id in &message.ids {
            if self.need.insert(*id)
                && self.have.len() + self.need.len() > self.config.max_differences
            {
                return Err(SyncError::CapExceeded("differences"));
            }
        }
        if !message.last {
            self.builder = Some(builder);
            return Ok(());
        }
        if let Some((lower, upper)) = self.deferred.take() {
            let range = Range { lower, upper };
            let fp = set.summary(&range).fingerprint(&keys);
            builder.range(lower, upper, Mode::Fingerprint(fp));
        }
        // The round is complete: answer it. An empty answer is still sent
        // when the peer asked something, so it knows everything matched.
        let (messages, asks) = builder.finish(self.round_asks);
        self.outgoing.extend(messages);
        if !asks {
            self.state = State::Done;
        }
        Ok(())
    }

    /// Sends `wanted` short ids for `range`, in several ranges of the same
    /// extent (each in its own message) when they do not fit one message;
    /// the peer answers each, and repeated answers deduplicate.
    fn emit_need(&self, range: &Range, wanted: Vec<ShortId>, builder: &mut Builder) {
        let per_message = (self.config.max_message_bytes.saturating_sub(120) / SHORT_ID_LEN).max(1);
        for chunk in wanted.chunks(per_message) {
            builder.range(range.lower, range.upper, Mode::Need(chunk.to_vec()));
        }
    }

    fn add_have(&mut self, id: MessageId) -> Result<(), SyncError> {
        if self.have.insert(id) && self.have.len() + self.need.len() > self.config.max_differences {
            return Err(SyncError::CapExceeded("differences"));
        }
        Ok(())
    }

    /// Splits a differing range, or, when this round already asks the peer
    /// about half as many ranges as its cap allows, defers it: everything
    /// from here to the end of the round goes back as one fingerprint, which
    /// the peer splits next round. Either way
    /// the exchange progresses, and an honest sender never makes the peer
    /// trip [`SyncConfig::max_open_ranges`].
    fn split_or_defer(
        &mut self,
        set: &impl ItemSet,
        keys: &Keys,
        range: &Range,
        builder: &mut Builder,
    ) {
        // The first split of a round always happens, so rounds progress.
        if builder.open > 0
            && builder.open + self.config.branching > self.config.max_open_ranges / 2
        {
            self.deferred = Some((range.lower, range.upper));
        } else {
            self.split(set, keys, range, self.config.branching, builder);
        }
    }

    /// Most full ids one outgoing round carries: half of what fits the
    /// peer's message cap, so an honest sender never trips it.
    fn id_budget(&self) -> usize {
        let per_message = (self.config.max_message_bytes - 16) / 32;
        (self.config.max_messages_per_round as usize / 2 * per_message).max(1)
    }

    /// Emits fingerprints of `parts` sub-ranges of `range` split at local
    /// items.
    fn split(
        &self,
        set: &impl ItemSet,
        keys: &Keys,
        range: &Range,
        parts: usize,
        builder: &mut Builder,
    ) {
        let mut lower = range.lower;
        let pairs = set.split_pairs(range, parts.max(2));
        let bounds = pairs
            .iter()
            .map(|(a, b)| Bound::between(a, b))
            .chain(std::iter::once(range.upper));
        for upper in bounds {
            let sub = Range { lower, upper };
            let fp = set.summary(&sub).fingerprint(keys);
            builder.range(lower, upper, Mode::Fingerprint(fp));
            lower = upper;
        }
    }

    /// The next message to send to the peer, if any.
    pub fn poll_message(&mut self) -> Option<Vec<u8>> {
        self.outgoing.pop_front()
    }

    /// Whether the session is over (after draining [`Self::poll_message`]).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Ids the peer lacks: send their envelopes.
    pub fn have_ids(&self) -> impl Iterator<Item = &MessageId> {
        self.have.iter()
    }

    /// Ids we lack: fetch their envelopes.
    pub fn need_ids(&self) -> impl Iterator<Item = &MessageId> {
        self.need.iter()
    }

    /// Rounds received so far.
    pub fn rounds(&self) -> u32 {
        self.rounds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(byte: u8) -> MessageId {
        MessageId(*blake3::hash(&[byte]).as_bytes())
    }

    #[test]
    fn accumulators_add_and_subtract_exactly() {
        let mut all = Accumulator::default();
        let mut front = Accumulator::default();
        for byte in 0..50 {
            all.add(&id(byte));
            if byte < 20 {
                front.add(&id(byte));
            }
        }
        let mut back = Accumulator::default();
        for byte in 20..50 {
            back.add(&id(byte));
        }
        assert_eq!(all.minus(&front), back);
        assert_eq!(front.plus(&back), all);
        assert_eq!(back.count(), 30);
        // Order does not matter; the salt does.
        let keys = Keys::new(&[1; SALT_LEN]);
        let other = Keys::new(&[2; SALT_LEN]);
        assert_eq!(back.plus(&front).fingerprint(&keys), all.fingerprint(&keys));
        assert_ne!(all.fingerprint(&keys), all.fingerprint(&other));
    }

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

    #[test]
    fn decreasing_bounds_encode_without_panicking_and_are_rejected() {
        let at = |timestamp| Bound::At {
            timestamp,
            id: [0; 32],
            prefix_len: 0,
        };
        let message = Message {
            salt: None,
            nonce: None,
            digest: None,
            last: true,
            start: at(100),
            ranges: vec![(at(50), Mode::Skip)],
            ids: Vec::new(),
        };
        assert!(Message::parse(&message.emit()).is_err());
    }
}
