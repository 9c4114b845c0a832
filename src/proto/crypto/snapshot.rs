//! Chain snapshots: a sender or receiver chain captured exactly, so the
//! store can keep it and a restarted node continues on the same chains.

use zeroize::Zeroizing;

use super::aead::SecretKey;
use super::chain::{ChainId, MAX_SKIP, MessageKey, ReceiverChain, SenderChain};
use super::error::CryptoError;
use super::replay::ReplayWindow;
use crate::proto::ids::{PeerId, RoomId};

/// Whether a persisted chain is one we send on or one we follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChainRole {
    /// Our own [`SenderChain`].
    Sending,
    /// Another member's chain as we follow it ([`ReceiverChain`]).
    Receiving,
}

impl ChainRole {
    /// The stable small integer of this role, used in the snapshot encoding
    /// and as the store's `role` column.
    pub fn to_u8(self) -> u8 {
        match self {
            ChainRole::Sending => 0,
            ChainRole::Receiving => 1,
        }
    }

    /// The role of a value written by [`ChainRole::to_u8`].
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(ChainRole::Sending),
            1 => Some(ChainRole::Receiving),
            _ => None,
        }
    }
}

/// Why [`ChainSnapshot::decode`] refused its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("chain snapshot of {0} bytes is over the size limit")]
    TooLarge(usize),
    #[error("chain snapshot is truncated")]
    Truncated,
    #[error("chain snapshot has unknown version {0}")]
    UnknownVersion(u8),
    #[error("chain snapshot has unknown role {0}")]
    UnknownRole(u8),
    #[error("chain snapshot holds {0} skipped keys, over the limit")]
    TooManySkipped(usize),
    #[error("chain snapshot has {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("chain snapshot is inconsistent")]
    Inconsistent,
}

/// Version byte of the [`ChainSnapshot`] encoding: version 2 adds a flags
/// byte (and, with [`SNAPSHOT_FLAG_ORIGIN`], the followed distribution's
/// digest) after the fixed part. A snapshot with neither flag is written as
/// version 1, so every snapshot has exactly one encoding.
pub const SNAPSHOT_VERSION: u8 = 2;
/// The version-1 encoding: no flags byte.
const SNAPSHOT_VERSION_PLAIN: u8 = 1;
/// Flag: a receiving snapshot carries the digest of the distribution it
/// follows from.
const SNAPSHOT_FLAG_ORIGIN: u8 = 1;
/// Flag: a sending snapshot's position is a reservation (nothing at or
/// after it was sealed), so it restores without skipping ahead.
const SNAPSHOT_FLAG_RESERVED: u8 = 2;

/// Fixed part of every snapshot: version, role, room, epoch, sender,
/// next_seq, start_seq, chain key.
const SNAPSHOT_COMMON_LEN: usize = 1 + 1 + 32 + 4 + 32 + 8 + 8 + 32;
/// Fixed part a receiving snapshot adds: replay-window top and bits, and
/// the skipped-key count.
const SNAPSHOT_RECEIVING_LEN: usize = 8 + 16 * 8 + 2;
/// One skipped key: sequence number, message key, nonce.
const SNAPSHOT_SKIPPED_LEN: usize = 8 + 32 + 24;

/// The largest valid encoding (a receiving chain with `MAX_SKIP` skipped
/// keys): about 256 KiB. [`ChainSnapshot::decode`] refuses anything larger
/// before looking at it.
pub const MAX_SNAPSHOT_LEN: usize = SNAPSHOT_COMMON_LEN
    + 1
    + 32
    + SNAPSHOT_RECEIVING_LEN
    + MAX_SKIP as usize * SNAPSHOT_SKIPPED_LEN;

/// Everything needed to rebuild a [`SenderChain`] or [`ReceiverChain`]
/// exactly as it was: the restored chain opens the same messages, rejects
/// the same replays and holds the same skipped keys.
///
/// Secret material (chain key, skipped message keys and nonces) is wiped
/// when the snapshot is dropped, and `Debug` prints none of it. Build one
/// with [`SenderChain::snapshot`] / [`ReceiverChain::snapshot`] or
/// [`ChainSnapshot::decode`]; the public fields may be read freely.
#[derive(Clone, PartialEq, Eq)]
pub struct ChainSnapshot {
    /// The chain.
    pub chain: ChainId,
    /// Ours to send on, or someone's we follow.
    pub role: ChainRole,
    /// The next sequence number (sending) or the next not yet reached
    /// (receiving).
    pub next_seq: u64,
    /// The chain key for `next_seq`.
    pub chain_key: SecretKey,
    /// Receiving only (0 when sending): the `start_seq` of the distribution
    /// the node first got, so it can tell messages sealed before it had the
    /// key from replays.
    pub start_seq: u64,
    /// Receiving only: the digest of the distribution followed, so a repeat
    /// of it after a restart is recognised and changes nothing.
    pub origin: Option<[u8; 32]>,
    /// Sending only: `next_seq` is a reservation, ahead of every position
    /// sealed, and restores as it is (see [`SenderChain::reservation`]).
    /// `false`: the exact position of the last seal, as version 1 wrote it.
    pub reserved: bool,
    /// Receiving only: keys of skipped positions, ascending, all below
    /// `next_seq`, at most `MAX_SKIP`.
    skipped: Vec<(u64, MessageKey)>,
    /// Receiving only: which recent positions were already opened.
    window: ReplayWindow,
}

impl std::fmt::Debug for ChainSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `SecretKey`'s own `Debug` hides the chain key; skipped keys are
        // only counted.
        f.debug_struct("ChainSnapshot")
            .field("chain", &self.chain)
            .field("role", &self.role)
            .field("next_seq", &self.next_seq)
            .field("chain_key", &self.chain_key)
            .field("start_seq", &self.start_seq)
            .field("origin", &self.origin.is_some())
            .field("reserved", &self.reserved)
            .field("skipped", &self.skipped.len())
            .field("window_top", &self.window.top)
            .finish_non_exhaustive()
    }
}

impl ChainSnapshot {
    /// How many skipped message keys the snapshot holds.
    pub fn skipped_len(&self) -> usize {
        self.skipped.len()
    }

    fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.origin.is_some() {
            flags |= SNAPSHOT_FLAG_ORIGIN;
        }
        if self.reserved {
            flags |= SNAPSHOT_FLAG_RESERVED;
        }
        flags
    }

    /// Encodes the snapshot: [`SNAPSHOT_VERSION`], then fixed-width
    /// little-endian fields. The result holds secrets and is wiped on drop.
    ///
    /// A sending snapshot carries no receiving state (window, skipped keys).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let receiving = self.role == ChainRole::Receiving;
        let flags = self.flags();
        let len = SNAPSHOT_COMMON_LEN
            + if flags != 0 { 1 } else { 0 }
            + if self.origin.is_some() { 32 } else { 0 }
            + if receiving {
                SNAPSHOT_RECEIVING_LEN + self.skipped.len() * SNAPSHOT_SKIPPED_LEN
            } else {
                0
            };
        // Exact capacity: the vector never reallocates, so no unwiped copy
        // of a key is left behind in a freed buffer.
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        out.push(if flags != 0 {
            SNAPSHOT_VERSION
        } else {
            SNAPSHOT_VERSION_PLAIN
        });
        out.push(self.role.to_u8());
        out.extend_from_slice(self.chain.room.as_bytes());
        out.extend_from_slice(&self.chain.epoch.to_le_bytes());
        out.extend_from_slice(self.chain.sender.as_bytes());
        out.extend_from_slice(&self.next_seq.to_le_bytes());
        out.extend_from_slice(&self.start_seq.to_le_bytes());
        out.extend_from_slice(self.chain_key.as_bytes());
        if flags != 0 {
            out.push(flags);
        }
        if let Some(origin) = &self.origin {
            out.extend_from_slice(origin);
        }
        if receiving {
            out.extend_from_slice(&self.window.top.to_le_bytes());
            for word in self.window.bits.iter() {
                out.extend_from_slice(&word.to_le_bytes());
            }
            // At most MAX_SKIP (4096) entries: a snapshot is only built by
            // `ReceiverChain::snapshot`, whose map is bounded, or by
            // `decode`, which checks; the cast cannot truncate.
            out.extend_from_slice(&(self.skipped.len() as u16).to_le_bytes());
            for (seq, key) in &self.skipped {
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(key.key.as_bytes());
                out.extend_from_slice(&key.nonce);
            }
        }
        debug_assert_eq!(out.len(), len);
        out
    }

    /// Decodes what [`ChainSnapshot::encode`] produced. Safe on hostile
    /// input: the size is checked first, the skipped count is bounded by
    /// `MAX_SKIP`, trailing bytes and inconsistent state are refused, and
    /// nothing panics.
    pub fn decode(bytes: &[u8]) -> Result<ChainSnapshot, SnapshotError> {
        if bytes.len() > MAX_SNAPSHOT_LEN {
            return Err(SnapshotError::TooLarge(bytes.len()));
        }
        let mut reader = Reader(bytes);
        let [version] = reader.take::<1>()?;
        if version != SNAPSHOT_VERSION && version != SNAPSHOT_VERSION_PLAIN {
            return Err(SnapshotError::UnknownVersion(version));
        }
        let [role] = reader.take::<1>()?;
        let role = ChainRole::from_u8(role).ok_or(SnapshotError::UnknownRole(role))?;
        let chain = ChainId {
            room: RoomId(reader.take()?),
            epoch: u32::from_le_bytes(reader.take()?),
            sender: PeerId(reader.take()?),
        };
        let next_seq = u64::from_le_bytes(reader.take()?);
        let start_seq = u64::from_le_bytes(reader.take()?);
        let chain_key = SecretKey(reader.take()?);
        let flags = if version == SNAPSHOT_VERSION {
            reader.flags()?
        } else {
            0
        };
        let origin = if flags & SNAPSHOT_FLAG_ORIGIN != 0 {
            Some(reader.take::<32>()?)
        } else {
            None
        };
        let reserved = flags & SNAPSHOT_FLAG_RESERVED != 0;
        let (window, skipped) = if role == ChainRole::Receiving {
            (reader.window()?, reader.skipped_keys()?)
        } else {
            (ReplayWindow::default(), Vec::new())
        };
        if !reader.0.is_empty() {
            return Err(SnapshotError::TrailingBytes(reader.0.len()));
        }
        let snapshot = ChainSnapshot {
            chain,
            role,
            next_seq,
            chain_key,
            start_seq,
            origin,
            reserved,
            skipped,
            window,
        };
        if !snapshot.is_consistent() {
            return Err(SnapshotError::Inconsistent);
        }
        Ok(snapshot)
    }

    /// The invariants a live chain keeps: skipped keys ascending, below
    /// `next_seq` and at most `MAX_SKIP`; nothing marked at or beyond
    /// `next_seq`; a sending chain has no receiving state.
    fn is_consistent(&self) -> bool {
        let ascending = self.skipped.windows(2).all(|pair| pair[0].0 < pair[1].0);
        let below_next = self
            .skipped
            .last()
            .is_none_or(|(seq, _)| *seq < self.next_seq);
        let receiving_state_ok = match self.role {
            ChainRole::Receiving => !self.reserved,
            ChainRole::Sending => {
                self.skipped.is_empty()
                    && self.window == ReplayWindow::default()
                    && self.origin.is_none()
            }
        };
        ascending
            && below_next
            && self.skipped.len() as u64 <= MAX_SKIP
            && self.window.top <= self.next_seq
            && receiving_state_ok
    }
}

/// A cursor over untrusted bytes that can only fail, never panic.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(SnapshotError::Truncated)?;
        self.0 = rest;
        Ok(*head)
    }

    /// The flags byte of a version-2 snapshot. Version 2 is only written
    /// with a known flag set (see `SNAPSHOT_VERSION`): anything else has
    /// no canonical form.
    fn flags(&mut self) -> Result<u8, SnapshotError> {
        let [flags] = self.take::<1>()?;
        if flags == 0 || flags & !(SNAPSHOT_FLAG_ORIGIN | SNAPSHOT_FLAG_RESERVED) != 0 {
            return Err(SnapshotError::Inconsistent);
        }
        Ok(flags)
    }

    /// A receiving chain's replay window: its top and bits.
    fn window(&mut self) -> Result<ReplayWindow, SnapshotError> {
        let top = u64::from_le_bytes(self.take()?);
        let mut window = ReplayWindow {
            top,
            ..ReplayWindow::default()
        };
        for word in window.bits.iter_mut() {
            *word = u64::from_le_bytes(self.take()?);
        }
        Ok(window)
    }

    /// A receiving chain's skipped keys: a count (at most `MAX_SKIP`,
    /// checked against the bytes left before anything is allocated), then
    /// that many keys.
    fn skipped_keys(&mut self) -> Result<Vec<(u64, MessageKey)>, SnapshotError> {
        let count = usize::from(u16::from_le_bytes(self.take()?));
        if count as u64 > MAX_SKIP {
            return Err(SnapshotError::TooManySkipped(count));
        }
        if self.0.len() < count * SNAPSHOT_SKIPPED_LEN {
            return Err(SnapshotError::Truncated);
        }
        let mut skipped = Vec::new();
        skipped.reserve_exact(count);
        for _ in 0..count {
            let seq = u64::from_le_bytes(self.take()?);
            let key = SecretKey(self.take()?);
            let nonce = self.take()?;
            skipped.push((seq, MessageKey { key, nonce }));
        }
        Ok(skipped)
    }
}

impl SenderChain {
    /// Everything needed to continue this chain after a restart.
    pub fn snapshot(&self) -> ChainSnapshot {
        ChainSnapshot {
            chain: self.chain,
            role: ChainRole::Sending,
            next_seq: self.next_seq,
            chain_key: self.chain_key.clone(),
            start_seq: 0,
            origin: None,
            reserved: false,
            skipped: Vec::new(),
            window: ReplayWindow::default(),
        }
    }

    /// A snapshot `ahead` positions past the next one, marked reserved: the
    /// chain may seal up to that position before a newer reservation must
    /// be persisted, and a chain restored from it starts there as it is.
    /// Restarts that seal nothing then never move the chain, so they cannot
    /// add up to a gap receivers refuse to cross.
    pub fn reservation(&self, ahead: u64) -> Result<ChainSnapshot, CryptoError> {
        let mut reserved = SenderChain::restore(self.chain, self.next_seq, self.chain_key.clone());
        reserved.skip(ahead)?;
        let mut snapshot = reserved.snapshot();
        snapshot.reserved = true;
        Ok(snapshot)
    }

    /// Continues a chain from its snapshot. Fails with
    /// [`CryptoError::BadSnapshot`] unless the snapshot is of a sending chain.
    ///
    /// The caller must persist the snapshot again after every seal: reusing
    /// an old snapshot would reuse message keys.
    pub fn from_snapshot(snapshot: &ChainSnapshot) -> Result<SenderChain, CryptoError> {
        if snapshot.role != ChainRole::Sending || !snapshot.is_consistent() {
            return Err(CryptoError::BadSnapshot);
        }
        Ok(SenderChain::restore(
            snapshot.chain,
            snapshot.next_seq,
            snapshot.chain_key.clone(),
        ))
    }
}

impl ReceiverChain {
    /// Everything needed to follow this chain after a restart: position,
    /// chain key, skipped keys and replay window. `start_seq` is carried
    /// through unchanged (see [`ChainSnapshot::start_seq`]).
    pub fn snapshot(&self, start_seq: u64) -> ChainSnapshot {
        let mut skipped = Vec::with_capacity(self.skipped.len());
        skipped.extend(self.skipped.iter().map(|(seq, key)| (*seq, key.clone())));
        ChainSnapshot {
            chain: self.chain,
            role: ChainRole::Receiving,
            next_seq: self.next_seq,
            chain_key: self.chain_key.clone(),
            start_seq,
            origin: None,
            reserved: false,
            skipped,
            window: self.window.clone(),
        }
    }

    /// Follows a chain from its snapshot, exactly where it was. Fails with
    /// [`CryptoError::BadSnapshot`] unless the snapshot is of a receiving
    /// chain.
    pub fn from_snapshot(snapshot: &ChainSnapshot) -> Result<ReceiverChain, CryptoError> {
        if snapshot.role != ChainRole::Receiving || !snapshot.is_consistent() {
            return Err(CryptoError::BadSnapshot);
        }
        Ok(ReceiverChain {
            chain: snapshot.chain,
            next_seq: snapshot.next_seq,
            chain_key: snapshot.chain_key.clone(),
            skipped: snapshot
                .skipped
                .iter()
                .map(|(seq, key)| (*seq, key.clone()))
                .collect(),
            window: snapshot.window.clone(),
        })
    }
}
