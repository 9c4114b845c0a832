//! Envelopes: the signed, sealed form of a room message, its versioned
//! encoding, and the batch tree that lets one signature cover many.

use ed25519_dalek::Signature;

use super::aead::TAG_LEN;
use super::chain::ChainId;
use super::error::CryptoError;
use super::identity::{PublicIdentity, domain_message};
use crate::proto::ids::{MessageId, PeerId, RoomId};

/// Signature domain of version-1 envelopes (each signed on its own).
const ENVELOPE_SIG_DOMAIN: &[u8] = b"kith room envelope v1\0";
/// Signature domain of version-2 envelopes: the signature covers the root
/// of a hash tree over a batch of envelopes.
pub(super) const ENVELOPE_BATCH_SIG_DOMAIN: &[u8] = b"kith envelope batch v2\0";
const ENVELOPE_AAD_DOMAIN: &[u8] = b"kith room aad v1\0";
/// First byte hashed into a leaf of a batch tree, so a leaf can never pass
/// as an inner node (or the other way round).
const LEAF_PREFIX: &[u8] = b"\x00kith envelope leaf v2";
/// First byte hashed into an inner node of a batch tree.
const NODE_PREFIX: &[u8] = &[1];

/// Version byte of the envelope encoding. Envelopes are stored and forwarded
/// during sync long after they were made, so they carry their own version.
/// Version 2 is signed in batches; version 1 (each signed on its own) is
/// still read, since stores and peers keep them.
pub const ENVELOPE_VERSION: u8 = 2;
/// The version of envelopes signed one by one.
pub const ENVELOPE_VERSION_SINGLE: u8 = 1;

/// Most levels of a batch tree, so at most 2^5 = 32 envelopes share one
/// signature. Each level costs 32 bytes in every envelope of the batch;
/// beyond 32 the signature saved per envelope is worth less than the bytes
/// every member stores.
pub const MAX_BATCH_DEPTH: usize = 5;
/// Most envelopes signed with one signature.
pub const MAX_SIGNED_BATCH: usize = 1 << MAX_BATCH_DEPTH;

/// Bytes of an encoded envelope header.
pub const ENVELOPE_HEADER_LEN: usize = 1 + 32 + 4 + 32 + 8 + 1 + 8;
/// Bytes of a version-1 envelope besides the ciphertext.
const ENVELOPE_V1_OVERHEAD: usize = ENVELOPE_HEADER_LEN + 64;
/// Bytes of a version-2 envelope besides the ciphertext and its proof's
/// sibling hashes (depth and side bits).
const ENVELOPE_V2_FIXED: usize = ENVELOPE_HEADER_LEN + 64 + 2;
/// Most bytes an envelope has besides the ciphertext (a full-depth proof).
pub const ENVELOPE_OVERHEAD: usize = ENVELOPE_V2_FIXED + 32 * MAX_BATCH_DEPTH;
/// Largest plaintext an envelope may carry (64 KiB of text plus framing).
pub const MAX_ENVELOPE_PLAINTEXT: usize = 65_536 + 1024;
/// Largest encoded envelope accepted from anyone.
pub const MAX_ENVELOPE_LEN: usize = ENVELOPE_OVERHEAD + MAX_ENVELOPE_PLAINTEXT + TAG_LEN;

/// The cleartext header of a room message. All of it is authenticated:
/// it is the AEAD's associated data and it is covered by the signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvelopeHeader {
    pub room: RoomId,
    pub epoch: u32,
    pub sender: PeerId,
    pub seq: u64,
    /// What the plaintext is (text, file chunk, membership change, ...).
    pub kind: u8,
    /// The sender's hybrid logical clock at sending, for ordering.
    pub timestamp: u64,
}

impl EnvelopeHeader {
    /// The header as it is encoded (and authenticated) in an envelope of
    /// `version`.
    pub(super) fn emit(&self, version: u8) -> [u8; ENVELOPE_HEADER_LEN] {
        let mut out = [0u8; ENVELOPE_HEADER_LEN];
        out[0] = version;
        out[1..33].copy_from_slice(&self.room.0);
        out[33..37].copy_from_slice(&self.epoch.to_be_bytes());
        out[37..69].copy_from_slice(&self.sender.0);
        out[69..77].copy_from_slice(&self.seq.to_be_bytes());
        out[77] = self.kind;
        out[78..86].copy_from_slice(&self.timestamp.to_be_bytes());
        out
    }

    pub(super) fn chain(&self) -> ChainId {
        ChainId {
            room: self.room,
            epoch: self.epoch,
            sender: self.sender,
        }
    }
}

/// Why bytes are not an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeParseError {
    #[error("envelope is truncated")]
    Truncated,
    #[error("envelope is larger than allowed")]
    TooLarge,
    #[error("envelope version {0} is not supported")]
    UnknownVersion(u8),
    #[error("envelope's batch proof is malformed")]
    BadProof,
}

/// Where an envelope sits in the batch its sender signed at once: the
/// sibling hashes from its leaf up to the signed root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchProof {
    /// Bottom up; at most [`MAX_BATCH_DEPTH`].
    pub siblings: Vec<[u8; 32]>,
    /// Bit `i` set: `siblings[i]` is the left child at that level.
    pub left: u8,
}

/// A signed, sealed room message: header, signature, ciphertext.
///
/// Encoding, version 2: header (86 bytes, first byte 2) ‖ Ed25519 signature
/// (64) ‖ proof depth (1) ‖ proof side bits (1) ‖ depth × 32-byte sibling
/// hashes ‖ ciphertext. The sender signs the root of a hash tree whose
/// leaves are its batch's envelopes (header and ciphertext), so one
/// signature serves up to [`MAX_SIGNED_BATCH`] envelopes, and each envelope
/// still proves its author on its own (when stored, forwarded, synced).
///
/// Version 1: header (first byte 1) ‖ signature ‖ ciphertext, the signature
/// covering the header and ciphertext directly; `proof` is `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub header: EnvelopeHeader,
    pub signature: [u8; 64],
    /// `None` for a version-1 envelope.
    pub proof: Option<BatchProof>,
    pub ciphertext: Vec<u8>,
}

/// A leaf of a batch tree: an envelope's header (as encoded) and ciphertext.
pub(super) fn leaf_hash(header: &[u8; ENVELOPE_HEADER_LEN], ciphertext: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(LEAF_PREFIX);
    hasher.update(header);
    hasher.update(ciphertext);
    *hasher.finalize().as_bytes()
}

pub(super) fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(NODE_PREFIX);
    hasher.update(left);
    hasher.update(right);
    *hasher.finalize().as_bytes()
}

impl Envelope {
    /// The encoding version of this envelope.
    pub fn version(&self) -> u8 {
        match self.proof {
            Some(_) => ENVELOPE_VERSION,
            None => ENVELOPE_VERSION_SINGLE,
        }
    }

    /// The canonical byte encoding; the message id is its blake3 hash.
    pub fn emit(&self) -> Vec<u8> {
        let proof_len = self.proof.as_ref().map_or(0, |p| 2 + 32 * p.siblings.len());
        let mut out = Vec::with_capacity(ENVELOPE_V1_OVERHEAD + proof_len + self.ciphertext.len());
        out.extend_from_slice(&self.header.emit(self.version()));
        out.extend_from_slice(&self.signature);
        if let Some(proof) = &self.proof {
            // At most MAX_BATCH_DEPTH siblings (parse and `sign_batch`
            // guarantee it), so the depth fits a byte.
            out.push(proof.siblings.len() as u8);
            out.push(proof.left);
            for sibling in &proof.siblings {
                out.extend_from_slice(sibling);
            }
        }
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parses untrusted bytes. Checks length and version before anything
    /// else; never panics. Only canonical encodings parse (unused side bits
    /// are zero), so an envelope has exactly one id.
    pub fn parse(bytes: &[u8]) -> Result<Self, EnvelopeParseError> {
        if bytes.len() > MAX_ENVELOPE_LEN {
            return Err(EnvelopeParseError::TooLarge);
        }
        let Some(&version) = bytes.first() else {
            return Err(EnvelopeParseError::Truncated);
        };
        if version != ENVELOPE_VERSION && version != ENVELOPE_VERSION_SINGLE {
            return Err(EnvelopeParseError::UnknownVersion(version));
        }
        if bytes.len() < ENVELOPE_V1_OVERHEAD + TAG_LEN {
            return Err(EnvelopeParseError::Truncated);
        }
        let field = |range: std::ops::Range<usize>| -> [u8; 32] {
            let mut out = [0u8; 32];
            out.copy_from_slice(&bytes[range]);
            out
        };
        let be_u64 = |start: usize| {
            let mut out = [0u8; 8];
            out.copy_from_slice(&bytes[start..start + 8]);
            u64::from_be_bytes(out)
        };
        let mut epoch = [0u8; 4];
        epoch.copy_from_slice(&bytes[33..37]);
        let header = EnvelopeHeader {
            room: RoomId(field(1..33)),
            epoch: u32::from_be_bytes(epoch),
            sender: PeerId(field(37..69)),
            seq: be_u64(69),
            kind: bytes[77],
            timestamp: be_u64(78),
        };
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&bytes[ENVELOPE_HEADER_LEN..ENVELOPE_V1_OVERHEAD]);
        let (proof, body_start) = if version == ENVELOPE_VERSION_SINGLE {
            (None, ENVELOPE_V1_OVERHEAD)
        } else {
            let depth = usize::from(bytes[ENVELOPE_V1_OVERHEAD]);
            let left = bytes[ENVELOPE_V1_OVERHEAD + 1];
            if depth > MAX_BATCH_DEPTH || u16::from(left) >> depth != 0 {
                return Err(EnvelopeParseError::BadProof);
            }
            let body_start = ENVELOPE_V2_FIXED + 32 * depth;
            if bytes.len() < body_start + TAG_LEN {
                return Err(EnvelopeParseError::Truncated);
            }
            let siblings = (0..depth)
                .map(|i| field(ENVELOPE_V2_FIXED + 32 * i..ENVELOPE_V2_FIXED + 32 * (i + 1)))
                .collect();
            (Some(BatchProof { siblings, left }), body_start)
        };
        Ok(Self {
            header,
            signature,
            proof,
            ciphertext: bytes[body_start..].to_vec(),
        })
    }

    /// The message id: blake3 of the encoded envelope.
    pub fn id(&self) -> MessageId {
        MessageId(*blake3::hash(&self.emit()).as_bytes())
    }

    fn signed_bytes(header: &[u8; ENVELOPE_HEADER_LEN], ciphertext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENVELOPE_HEADER_LEN + ciphertext.len());
        out.extend_from_slice(header);
        out.extend_from_slice(ciphertext);
        out
    }

    /// The root of the batch tree this envelope's proof leads to.
    fn batch_root(&self, proof: &BatchProof) -> [u8; 32] {
        let mut node = leaf_hash(&self.header.emit(ENVELOPE_VERSION), &self.ciphertext);
        for (level, sibling) in proof.siblings.iter().enumerate() {
            node = if proof.left >> level & 1 == 1 {
                node_hash(sibling, &node)
            } else {
                node_hash(&node, sibling)
            };
        }
        node
    }

    /// The exact message the sender signed (domain prefix included): for
    /// version 2 the root of its batch tree, for version 1 the envelope.
    pub fn signed_message(&self) -> Vec<u8> {
        match &self.proof {
            Some(proof) => domain_message(ENVELOPE_BATCH_SIG_DOMAIN, &self.batch_root(proof)),
            None => domain_message(
                ENVELOPE_SIG_DOMAIN,
                &Self::signed_bytes(&self.header.emit(ENVELOPE_VERSION_SINGLE), &self.ciphertext),
            ),
        }
    }

    /// Names the signature check this envelope needs: the same for every
    /// envelope of one signed batch, so a receiver that already checked the
    /// batch's signature can skip it (a different leaf leads to the same
    /// root only through a blake3 collision).
    pub fn signature_fingerprint(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"kith signature check v1");
        hasher.update(&self.header.sender.0);
        hasher.update(&self.signature);
        hasher.update(&self.signed_message());
        *hasher.finalize().as_bytes()
    }

    /// Checks the signature only (cheap rejection of outsiders, and the
    /// part a forwarding member checks before relaying during sync).
    pub fn verify_signature(&self, sender: &PublicIdentity) -> Result<(), CryptoError> {
        if sender.peer_id() != self.header.sender {
            return Err(CryptoError::WrongPeer);
        }
        use ed25519_dalek::Verifier;
        sender
            .key
            .verify(
                &self.signed_message(),
                &Signature::from_bytes(&self.signature),
            )
            .map_err(|_| CryptoError::BadSignature)
    }
}

pub(super) fn envelope_aad(header: &[u8; ENVELOPE_HEADER_LEN]) -> Vec<u8> {
    domain_message(ENVELOPE_AAD_DOMAIN, header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::crypto::aead::aead_seal;
    use crate::proto::crypto::chain::{ChainId, ReceiverChain, SenderChain};
    use crate::proto::crypto::identity::Identity;
    use crate::proto::crypto::seal::{
        OutgoingMessage, open_envelope, seal_envelope, verify_envelopes_batch,
    };
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn version_1_envelopes_still_verify_and_open() {
        let mut rng = StdRng::seed_from_u64(9);
        let alice = Identity::generate(&mut rng);
        let chain = ChainId {
            room: RoomId([4; 32]),
            epoch: 0,
            sender: alice.peer_id(),
        };
        let mut sender = SenderChain::new(&mut rng, chain);
        let mut receiver = ReceiverChain::from_distribution(&sender.distribution());
        // Sealed and signed the way version 1 did, one by one.
        let (seq, key) = sender.advance().expect("the chain moves");
        let header = EnvelopeHeader {
            room: chain.room,
            epoch: 0,
            sender: alice.peer_id(),
            seq,
            kind: 1,
            timestamp: 5,
        };
        let header_bytes = header.emit(ENVELOPE_VERSION_SINGLE);
        let ciphertext = aead_seal(
            key.key.as_bytes(),
            &key.nonce,
            &envelope_aad(&header_bytes),
            b"old",
        )
        .expect("seal");
        let signature = alice
            .sign(
                ENVELOPE_SIG_DOMAIN,
                &Envelope::signed_bytes(&header_bytes, &ciphertext),
            )
            .to_bytes();
        let bytes = [&header_bytes[..], &signature, &ciphertext].concat();
        let old = Envelope::parse(&bytes).expect("parses");
        assert_eq!(old.version(), ENVELOPE_VERSION_SINGLE);
        assert_eq!(old.emit(), bytes);
        // Verified in a batch next to a version-2 envelope, then opened.
        let new = seal_envelope(
            &alice,
            &mut sender,
            OutgoingMessage {
                kind: 1,
                timestamp: 6,
                plaintext: b"new",
            },
        )
        .expect("seal");
        let public = alice.public();
        assert_eq!(
            verify_envelopes_batch(&[(&old, &public), (&new, &public)]),
            Ok(())
        );
        assert_eq!(
            open_envelope(&old, &public, &mut receiver).as_deref(),
            Ok(&b"old"[..])
        );
        assert_eq!(
            open_envelope(&new, &public, &mut receiver).as_deref(),
            Ok(&b"new"[..])
        );
        // Its signature does not pass for a version-2 envelope of the same
        // content.
        let relabelled = Envelope {
            proof: Some(BatchProof::default()),
            ..old
        };
        assert_eq!(
            relabelled.verify_signature(&public),
            Err(CryptoError::BadSignature)
        );
    }
}
