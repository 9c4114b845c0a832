//! The items being reconciled, ranges of them, and the local set as the
//! reconciler queries it ([`ItemSet`], with [`SortedItems`] in memory).

use super::fingerprint::Accumulator;
use crate::proto::ids::MessageId;

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
    pub(super) fn less_than(&self, other: &Bound) -> bool {
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
