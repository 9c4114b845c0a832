//! Range-based set reconciliation of a room's message ids.
//!
//! Two peers that each hold a set of messages find out which ids the other
//! lacks, exchanging a few fingerprints instead of whole id lists. The
//! protocol follows Meyer, "Range-Based Set Reconciliation" (arXiv
//! 2212.13567), with negentropy as a reference point; the encoding is our own.
//!
//! The pieces, one file each: `items` (the order, ranges and the local
//! [`ItemSet`]), `config` (sizes, caps, errors), `fingerprint`
//! ([`Accumulator`] and the salted keys), `codec` (the wire format,
//! [`Message`]), `builder` (packing an outgoing round into messages),
//! `reconciler` (one session's state machine, [`Reconciler`]) and
//! `manager` (the sessions of a node, one per room and peer:
//! [`SyncManager`]).
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
mod config;
mod fingerprint;
mod items;
mod manager;
mod reconciler;

pub use codec::{Digest, Message, Mode, is_opening};
pub use config::{
    FINGERPRINT_LEN, MAX_SYNC_MESSAGE, SALT_LEN, SHORT_ID_LEN, SYNC_VERSION, SyncConfig, SyncError,
};
pub use fingerprint::{Accumulator, shared_salt};
pub use items::{Bound, Item, ItemSet, Range, SortedItems};
pub use manager::{SyncAction, SyncManager, SyncManagerConfig, SyncStats};
pub use reconciler::Reconciler;
