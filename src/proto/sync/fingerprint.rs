//! Range fingerprints: the [`Accumulator`] of a range's ids, and the
//! per-session keys that salt its fingerprint and the short ids of lists.

use super::config::{FINGERPRINT_LEN, SALT_LEN, SHORT_ID_LEN};
use crate::proto::ids::MessageId;

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

    pub(super) fn fingerprint(&self, keys: &Keys) -> [u8; FINGERPRINT_LEN] {
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

pub(super) type ShortId = [u8; SHORT_ID_LEN];

/// Per-session keys derived from the salt.
#[derive(Clone)]
pub(super) struct Keys {
    fingerprint: [u8; 32],
    short: [u8; 32],
}

impl Keys {
    pub(super) fn new(salt: &[u8; SALT_LEN]) -> Self {
        Keys {
            fingerprint: blake3::derive_key("kith sync v1 fingerprint", salt),
            short: blake3::derive_key("kith sync v1 short id", salt),
        }
    }

    pub(super) fn short(&self, id: &MessageId) -> ShortId {
        let hash = blake3::keyed_hash(&self.short, &id.0);
        let mut out = [0u8; SHORT_ID_LEN];
        out.copy_from_slice(&hash.as_bytes()[..SHORT_ID_LEN]);
        out
    }
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
}
