//! The sync message wire format (version 2): [`Message::emit`] and the
//! bounded, untrusted [`Message::parse`].

use super::config::{
    FINGERPRINT_LEN, MAX_SYNC_MESSAGE, SALT_LEN, SHORT_ID_LEN, SYNC_VERSION, SyncError,
};
use super::fingerprint::ShortId;
use super::items::Bound;
use crate::proto::ids::MessageId;

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
/// [`super::Reconciler::initiator_shared`]).
const FLAG_NONCE: u8 = 32;
const KNOWN_FLAGS: u8 = FLAG_INIT | FLAG_LAST | FLAG_RANGES | FLAG_IDS | FLAG_DIGEST | FLAG_NONCE;

/// How a session opens: the salt itself, or a nonce from which both sides
/// derive the salt with a secret they share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Opening {
    Salt([u8; SALT_LEN]),
    Nonce(u64),
}

/// Whether `bytes` open a session (carry a salt or a nonce), judged from
/// the header alone; what else they hold is checked when they are handled.
pub fn is_opening(bytes: &[u8]) -> bool {
    matches!(bytes, [SYNC_VERSION, flags, ..] if flags & (FLAG_INIT | FLAG_NONCE) != 0)
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
    /// sides derive from a shared secret ([`super::shared_salt`]).
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

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub(super) fn varint_len(value: u64) -> usize {
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

pub(super) fn bound_len(prev_timestamp: u64, bound: &Bound) -> usize {
    let mut scratch = Vec::with_capacity(48);
    put_bound(&mut scratch, prev_timestamp, bound, 0);
    scratch.len()
}

pub(super) fn bound_timestamp(bound: &Bound, fallback: u64) -> u64 {
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
        let (start, ranges) = if flags & FLAG_RANGES != 0 {
            reader.ranges()?
        } else {
            (Bound::MIN, Vec::new())
        };
        let ids = if flags & FLAG_IDS != 0 {
            reader.ids()?
        } else {
            Vec::new()
        };
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

    /// The start bound and the ranges after it, each bound above the
    /// previous one.
    fn ranges(&mut self) -> Result<(Bound, Vec<(Bound, Mode)>), SyncError> {
        let (start, mode) = self.bound(0)?;
        if mode != 0 {
            return Err(SyncError::Malformed("start bound carries a mode"));
        }
        if start == Bound::Infinity {
            return Err(SyncError::Malformed("start bound is infinity"));
        }
        // Each range takes at least two bytes.
        let count = self.count(2)?;
        if count == 0 {
            return Err(SyncError::Malformed("empty range list"));
        }
        let mut ranges = Vec::with_capacity(count);
        let mut prev = start;
        for _ in 0..count {
            let (upper, mode) = self.bound(bound_timestamp(&prev, 0))?;
            if !prev.less_than(&upper) {
                return Err(SyncError::Malformed("bounds do not increase"));
            }
            ranges.push((upper, self.mode(mode)?));
            prev = upper;
        }
        Ok((start, ranges))
    }

    /// The payload of a range with mode `code`.
    fn mode(&mut self, code: u8) -> Result<Mode, SyncError> {
        match code {
            MODE_SKIP => Ok(Mode::Skip),
            MODE_FINGERPRINT => {
                let mut fp = [0u8; FINGERPRINT_LEN];
                fp.copy_from_slice(self.take(FINGERPRINT_LEN)?);
                Ok(Mode::Fingerprint(fp))
            }
            MODE_LIST => Ok(Mode::List(self.shorts()?)),
            MODE_NEED => Ok(Mode::Need(self.shorts()?)),
            _ => Err(SyncError::Malformed("unknown range mode")),
        }
    }

    /// A non-empty list of full ids.
    fn ids(&mut self) -> Result<Vec<MessageId>, SyncError> {
        let count = self.count(32)?;
        if count == 0 {
            return Err(SyncError::Malformed("empty id list"));
        }
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            let mut id = [0u8; 32];
            id.copy_from_slice(self.take(32)?);
            ids.push(MessageId(id));
        }
        Ok(ids)
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

#[cfg(test)]
mod tests {
    use super::*;

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
