//! Identity, pairwise channels, per-room sender keys and sealed envelopes.
//!
//! Everything here is a pure function of its inputs: randomness comes from a
//! caller-supplied `CryptoRng`, and nothing reads a clock or does IO.
//!
//! # What protects what
//! - **Identity**: one Ed25519 key pair per installation. The peer id is
//!   `blake3(public key)`. Two people compare a [`safety_number`] in person.
//! - **Pairwise channel**: a SIGMA-I style handshake ([`Initiator`],
//!   [`Responder`]) with fresh X25519 ephemeral keys on both sides. Each
//!   side signs the transcript (both ephemerals and its own identity) and
//!   sends its identity and signature *encrypted* under the ephemeral-DH key,
//!   so a man in the middle can neither read nor substitute an identity.
//!   The session keys come from the DH secret and the full transcript, so
//!   they are bound to both identities; they are forward secret because the
//!   ephemeral secrets are consumed by the handshake.
//! - **Room keys**: each member of each room has, per epoch, a sender chain
//!   ([`SenderChain`]): a hash ratchet where message key and next chain key
//!   are keyed blake3 hashes of the current chain key. The chain's starting
//!   key travels to the other members over pairwise channels
//!   ([`SenderKeyDistribution`]). A new epoch starts with fresh chains.
//! - **Envelopes**: each room message is sealed with XChaCha20-Poly1305
//!   under its message key, with associated data binding room, epoch,
//!   sender, sequence number, kind and timestamp, and then signed with the
//!   sender's Ed25519 key, because every member knows every sender chain and
//!   could otherwise forge messages as another member. Messages sent
//!   together share one signature over the root of a hash tree of them
//!   ([`sign_batch`]); each envelope carries its path to the root.
//! - **Replay**: a sliding [`ReplayWindow`] per (room, epoch, sender) and per
//!   pairwise direction; a message key is used at most once.
//! - **Restarts**: a [`ChainSnapshot`] captures a sender or receiver chain
//!   exactly (position, chain key, skipped keys, replay window) so the store
//!   can keep it, sealed under the room's storage key, and a restarted node
//!   keeps sending and reading on the same chains.
//!
//! The pieces, one file each: `identity` (keys, peer ids, signatures, the
//! safety number), `aead` (symmetric keys and sealing, group frames),
//! `sealed_request` (registry lookups sealed to an identity), `replay`
//! ([`ReplayWindow`]), `handshake` and `pairwise` (the SIGMA-I handshake
//! and the [`PairwiseSession`] it ends in), `chain` (room sender chains),
//! `snapshot` ([`ChainSnapshot`]), `envelope` (the signed envelope and its
//! encoding) and `seal` (sealing, batch signing and opening envelopes).

mod aead;
mod chain;
mod envelope;
mod error;
mod handshake;
mod identity;
mod pairwise;
mod replay;
mod seal;
mod sealed_request;
mod snapshot;

pub use aead::{SecretKey, TAG_LEN, open_group_frame, seal_group_frame};
pub use chain::{ChainId, MAX_SKIP, ReceiverChain, SenderChain, SenderKeyDistribution};
pub use envelope::{
    BatchProof, ENVELOPE_HEADER_LEN, ENVELOPE_OVERHEAD, ENVELOPE_VERSION, ENVELOPE_VERSION_SINGLE,
    Envelope, EnvelopeHeader, EnvelopeParseError, MAX_BATCH_DEPTH, MAX_ENVELOPE_LEN,
    MAX_ENVELOPE_PLAINTEXT, MAX_SIGNED_BATCH,
};
pub use error::CryptoError;
pub use handshake::{HandshakeFinish, HandshakeInit, HandshakeResponse, Initiator, Responder};
pub use identity::{Identity, PublicIdentity, peer_id_of, safety_number};
pub use pairwise::PairwiseSession;
pub use replay::ReplayWindow;
pub use seal::{
    MAX_ORIGIN_STEPS, OutgoingMessage, UnsignedEnvelope, open_envelope, open_envelope_from_origin,
    open_verified_envelope, seal_envelope, seal_unsigned, sign_batch, verify_envelopes_batch,
};
pub use sealed_request::{open_sealed_answer, seal_answer, seal_request};
pub use snapshot::{ChainRole, ChainSnapshot, MAX_SNAPSHOT_LEN, SNAPSHOT_VERSION, SnapshotError};
