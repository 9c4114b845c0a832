//! Packs the ranges and ids of one outgoing round into messages within
//! the size budget.

use super::codec::{Digest, Message, Mode, Opening, bound_len, bound_timestamp, varint_len};
use super::config::{FINGERPRINT_LEN, SALT_LEN, SHORT_ID_LEN};
use super::items::Bound;
use crate::proto::ids::MessageId;

/// Builds the messages of one outgoing round within the size budget.
pub(super) struct Builder {
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
    pub(super) open: usize,
    pub(super) ids: usize,
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
    pub(super) fn new(max_bytes: usize, opening: Option<Opening>) -> Self {
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
    pub(super) fn range(&mut self, lower: Bound, upper: Bound, mode: Mode) {
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
    pub(super) fn digest(&mut self, digest: Digest) {
        if self.current.is_none() {
            self.open();
        }
        self.asks = true;
        self.current_len += varint_len(digest.count) + FINGERPRINT_LEN;
        self.current.as_mut().expect("opened above").digest = Some(digest);
    }

    /// Messages of this round so far, counting the one being filled.
    pub(super) fn messages(&self) -> usize {
        self.done.len() + usize::from(self.current.is_some())
    }

    /// Adds a full id the peer lacks.
    pub(super) fn id(&mut self, id: MessageId) {
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
    pub(super) fn finish(mut self, always: bool) -> (Vec<Vec<u8>>, bool) {
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
