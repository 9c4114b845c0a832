//! Room sender chains: the hash ratchet of one member's messages in one
//! room and epoch, as its sender writes it ([`SenderChain`]) and as the
//! other members follow it ([`ReceiverChain`]).

use rand::CryptoRng;
use std::collections::BTreeMap;
use zeroize::{Zeroize, Zeroizing};

use super::aead::SecretKey;
use super::error::CryptoError;
use super::replay::ReplayWindow;
use crate::proto::ids::{PeerId, RoomId};

/// How far ahead of the next expected sequence number a room message may be.
/// It bounds the work (and memory) a member can make us do by claiming a huge
/// sequence number: each skipped key costs two hashes and 40 bytes.
pub const MAX_SKIP: u64 = 4096;

/// Message key and nonce for one message, derived from a chain key.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct MessageKey {
    pub(super) key: SecretKey,
    pub(super) nonce: [u8; 24],
}

impl Drop for MessageKey {
    fn drop(&mut self) {
        self.nonce.zeroize();
    }
}

/// One step of the hash ratchet: (message key for this position, next chain
/// key). Distinct single-byte inputs separate the two outputs.
pub(super) fn ratchet_step(chain_key: &SecretKey) -> (MessageKey, SecretKey) {
    let mut material = Zeroizing::new([0u8; 56]);
    let mut hasher = blake3::Hasher::new_keyed(chain_key.as_bytes());
    hasher.update(&[0x01]);
    hasher.finalize_xof().fill(material.as_mut());
    let mut key = [0u8; 32];
    let mut nonce = [0u8; 24];
    key.copy_from_slice(&material[..32]);
    nonce.copy_from_slice(&material[32..]);
    let next = SecretKey(*blake3::keyed_hash(chain_key.as_bytes(), &[0x02]).as_bytes());
    (
        MessageKey {
            key: SecretKey(key),
            nonce,
        },
        next,
    )
}

/// Which chain a message belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChainId {
    pub room: RoomId,
    pub epoch: u32,
    pub sender: PeerId,
}

/// The starting point of a member's sender chain, as handed to the other
/// members over pairwise channels when an epoch begins (or when a member
/// joins mid-epoch, from the sender's current position).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderKeyDistribution {
    pub chain: ChainId,
    pub start_seq: u64,
    pub chain_key: SecretKey,
}

/// Our own sending chain in one room and epoch.
pub struct SenderChain {
    pub(super) chain: ChainId,
    pub(super) next_seq: u64,
    pub(super) chain_key: SecretKey,
}

impl SenderChain {
    /// A fresh chain with a random starting key.
    pub fn new<R: CryptoRng + ?Sized>(rng: &mut R, chain: ChainId) -> Self {
        Self {
            chain,
            next_seq: 0,
            chain_key: SecretKey::random(rng),
        }
    }

    /// Restores a chain from the store.
    pub fn restore(chain: ChainId, next_seq: u64, chain_key: SecretKey) -> Self {
        Self {
            chain,
            next_seq,
            chain_key,
        }
    }

    /// What to send the other members so they can read our messages from
    /// now on (never earlier ones: the chain only moves forward).
    pub fn distribution(&self) -> SenderKeyDistribution {
        SenderKeyDistribution {
            chain: self.chain,
            start_seq: self.next_seq,
            chain_key: self.chain_key.clone(),
        }
    }

    /// The chain this sender writes.
    pub fn chain(&self) -> ChainId {
        self.chain
    }

    /// The sequence number the next message gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The current chain key, for persisting (encrypted) in the store.
    pub fn chain_key(&self) -> &SecretKey {
        &self.chain_key
    }

    /// Moves `count` positions ahead without sealing anything: after a
    /// restore from a snapshot that may be older than the last seal (its
    /// write failed), so no message key is ever used twice. Receivers skip
    /// the gap like lost messages.
    pub fn skip(&mut self, count: u64) -> Result<(), CryptoError> {
        for _ in 0..count {
            self.advance()?;
        }
        Ok(())
    }

    pub(super) fn advance(&mut self) -> Result<(u64, MessageKey), CryptoError> {
        let seq = self.next_seq;
        self.next_seq = seq.checked_add(1).ok_or(CryptoError::ChainExhausted)?;
        let (message_key, next) = ratchet_step(&self.chain_key);
        // The old chain key is overwritten (and zeroized by drop), which is
        // what makes past message keys unrecoverable from the sender.
        self.chain_key = next;
        Ok((seq, message_key))
    }
}

/// Another member's chain as we follow it: the key for the next position
/// plus the keys of positions we skipped (messages that arrived out of
/// order), bounded by [`MAX_SKIP`].
pub struct ReceiverChain {
    pub(super) chain: ChainId,
    pub(super) next_seq: u64,
    pub(super) chain_key: SecretKey,
    pub(super) skipped: BTreeMap<u64, MessageKey>,
    pub(super) window: ReplayWindow,
}

impl ReceiverChain {
    /// Starts following a chain from a distribution message.
    pub fn from_distribution(distribution: &SenderKeyDistribution) -> Self {
        Self {
            chain: distribution.chain,
            next_seq: distribution.start_seq,
            chain_key: distribution.chain_key.clone(),
            skipped: BTreeMap::new(),
            window: ReplayWindow::default(),
        }
    }

    /// The chain followed.
    pub fn chain(&self) -> ChainId {
        self.chain
    }

    /// The next position not reached yet.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether `distribution` is this very chain at our position or later
    /// (its key is ours ratcheted forward): a repeat or a later re-send of
    /// a key we already follow, which must not replace our state, since
    /// messages between our position and its start may still be on their
    /// way (they travel on another stream than keys and can be overtaken).
    pub fn continues_to(&self, distribution: &SenderKeyDistribution) -> bool {
        if distribution.chain != self.chain || distribution.start_seq < self.next_seq {
            return false;
        }
        let steps = distribution.start_seq - self.next_seq;
        if steps > MAX_SKIP {
            return false;
        }
        let mut key = self.chain_key.clone();
        for _ in 0..steps {
            key = ratchet_step(&key).1;
        }
        // Compared in constant time: a difference must not leak where.
        key.as_bytes()
            .iter()
            .zip(distribution.chain_key.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// Whether this chain is `distribution`'s chain at its start or later
    /// (our key is its key ratcheted forward): an earlier key of the chain
    /// we follow, sent again (the sender restarted), which must never move
    /// our position back. At most `max_steps` ratchet steps are tried; past
    /// that the answer is `false`.
    pub fn descends_from(&self, distribution: &SenderKeyDistribution, max_steps: u64) -> bool {
        if distribution.chain != self.chain || distribution.start_seq > self.next_seq {
            return false;
        }
        let steps = self.next_seq - distribution.start_seq;
        if steps > max_steps {
            return false;
        }
        let mut key = distribution.chain_key.clone();
        for _ in 0..steps {
            key = ratchet_step(&key).1;
        }
        key.as_bytes()
            .iter()
            .zip(self.chain_key.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// Whether the message at `seq` was already opened on this chain (its
    /// replay window says so): a copy of it is a duplicate.
    pub fn has_opened(&self, seq: u64) -> bool {
        self.window.check(seq) == Err(CryptoError::Replay)
    }

    /// How many skipped message keys are held (bounded by `MAX_SKIP`).
    pub fn skipped_len(&self) -> usize {
        self.skipped.len()
    }

    /// Finds the message key for `seq` without changing any state, so that
    /// a message which then fails authentication leaves the chain as it was.
    pub(super) fn peek(&self, seq: u64) -> Result<KeyLookup, CryptoError> {
        match self.window.check(seq) {
            Ok(()) => {}
            // Below the window the skipped keys decide: a key still held
            // was never used (opening removes it), so this is no replay. A
            // sender that restarted often, with messages of an earlier run
            // sent again late, reaches back that far.
            Err(CryptoError::TooOld) if self.skipped.contains_key(&seq) => {}
            Err(error) => return Err(error),
        }
        if seq < self.next_seq {
            return match self.skipped.get(&seq) {
                Some(key) => Ok(KeyLookup::Skipped(MessageKey {
                    key: key.key.clone(),
                    nonce: key.nonce,
                })),
                // Either before the chain reached us or already consumed.
                None => Err(CryptoError::Replay),
            };
        }
        if seq - self.next_seq >= MAX_SKIP {
            return Err(CryptoError::TooFarAhead);
        }
        let mut chain_key = self.chain_key.clone();
        let mut passed = Vec::with_capacity((seq - self.next_seq) as usize);
        for _ in self.next_seq..seq {
            let (message_key, next) = ratchet_step(&chain_key);
            passed.push(message_key);
            chain_key = next;
        }
        let (message_key, next) = ratchet_step(&chain_key);
        Ok(KeyLookup::Ahead {
            message_key,
            passed,
            next_chain_key: next,
        })
    }

    pub(super) fn commit(&mut self, seq: u64, lookup: KeyLookup) {
        match lookup {
            KeyLookup::Skipped(_) => {
                self.skipped.remove(&seq);
            }
            KeyLookup::Ahead {
                passed,
                next_chain_key,
                ..
            } => {
                for (offset, key) in passed.into_iter().enumerate() {
                    self.skipped.insert(self.next_seq + offset as u64, key);
                }
                self.next_seq = seq + 1;
                self.chain_key = next_chain_key;
                // Bound memory: forget the oldest skipped keys. Their
                // messages can no longer be read, which is the price of a
                // bound; `MAX_SKIP` is far beyond normal reordering.
                while self.skipped.len() as u64 > MAX_SKIP {
                    self.skipped.pop_first();
                }
            }
        }
        self.window.mark(seq);
    }
}

pub(super) enum KeyLookup {
    Skipped(MessageKey),
    Ahead {
        message_key: MessageKey,
        passed: Vec<MessageKey>,
        next_chain_key: SecretKey,
    },
}

impl KeyLookup {
    pub(super) fn message_key(&self) -> &MessageKey {
        match self {
            KeyLookup::Skipped(key) => key,
            KeyLookup::Ahead { message_key, .. } => message_key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn a_later_position_of_the_same_chain_continues_it() {
        let mut rng = StdRng::seed_from_u64(7);
        let chain = ChainId {
            room: RoomId([1; 32]),
            epoch: 0,
            sender: PeerId([2; 32]),
        };
        let mut sender = SenderChain::new(&mut rng, chain);
        let receiver = ReceiverChain::from_distribution(&sender.distribution());
        assert!(receiver.continues_to(&sender.distribution()), "a repeat");
        for _ in 0..5 {
            sender.advance().expect("the chain moves");
        }
        assert!(
            receiver.continues_to(&sender.distribution()),
            "five positions on"
        );
        let other = SenderChain::new(&mut rng, chain);
        assert!(!receiver.continues_to(&other.distribution()), "another key");
        let ahead = ReceiverChain::from_distribution(&sender.distribution());
        let behind = SenderChain::restore(chain, 0, sender.distribution().chain_key);
        assert!(
            !ahead.continues_to(&behind.distribution()),
            "before our position"
        );
    }

    #[test]
    fn ratchet_keys_differ_per_step() {
        let mut rng = StdRng::seed_from_u64(1);
        let start = SecretKey::random(&mut rng);
        let (first, next) = ratchet_step(&start);
        let (second, _) = ratchet_step(&next);
        assert_ne!(first.key, second.key);
        assert_ne!(first.key.as_bytes(), next.as_bytes());
        assert_ne!(start.as_bytes(), next.as_bytes());
    }
}
