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

use crate::proto::ids::{MessageId, PeerId, RoomId};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::CryptoRng;
use std::collections::BTreeMap;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of an AEAD tag in bytes.
pub const TAG_LEN: usize = 16;

/// How far ahead of the next expected sequence number a room message may be.
/// It bounds the work (and memory) a member can make us do by claiming a huge
/// sequence number: each skipped key costs two hashes and 40 bytes.
pub const MAX_SKIP: u64 = 4096;

/// Why a cryptographic operation failed. Deliberately coarse: an attacker
/// learns nothing from which check failed, and callers only need to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("signature does not verify")]
    BadSignature,
    #[error("message failed authentication")]
    Unauthentic,
    #[error("message was already received (replay)")]
    Replay,
    #[error("message is too old for the replay window")]
    TooOld,
    #[error("message sequence number is too far ahead")]
    TooFarAhead,
    #[error("message is for a different room, epoch or sender")]
    WrongChain,
    #[error("handshake message was not expected in this state")]
    UnexpectedHandshake,
    #[error("peer is not who we expected")]
    WrongPeer,
    #[error("public key is invalid")]
    BadPublicKey,
    #[error("key exchange produced a non-contributory secret")]
    WeakKey,
    #[error("message is too large to seal")]
    TooLarge,
    #[error("sender chain is exhausted; start a new epoch")]
    ChainExhausted,
    #[error("chain snapshot has the other role or is inconsistent")]
    BadSnapshot,
}

// ---------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------

/// This installation's long-term signing identity. The secret key is
/// zeroized when the value is dropped (ed25519-dalek's `zeroize` feature).
pub struct Identity {
    signing: SigningKey,
}

impl Identity {
    /// A fresh identity from a cryptographically secure RNG.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self {
            signing: SigningKey::generate(rng),
        }
    }

    /// Restores an identity from its 32 secret bytes (as kept in the store).
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(secret),
        }
    }

    /// The 32 secret bytes, for the encrypted store only.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The public half, as other peers see it.
    pub fn public(&self) -> PublicIdentity {
        PublicIdentity::from_verifying_key(self.signing.verifying_key())
    }

    /// This identity's peer id.
    pub fn peer_id(&self) -> PeerId {
        peer_id_of(self.signing.verifying_key().as_bytes())
    }

    /// Signs a registry message (a client's registration, or the registry's
    /// own answer) under the registry domain, so such a signature can never
    /// pass as a handshake or envelope signature, nor the other way round.
    /// Callers put their own kind label first inside `message`.
    pub fn sign_registry(&self, message: &[u8]) -> [u8; 64] {
        self.sign(REGISTRY_SIG_DOMAIN, message).to_bytes()
    }

    /// Signs a profile record (`proto::profile`) under its own domain, so
    /// it can never pass as any other signature, nor the other way round.
    pub fn sign_profile(&self, record: &[u8]) -> [u8; 64] {
        self.sign(PROFILE_SIG_DOMAIN, record).to_bytes()
    }

    /// Signs `message` after a domain-separation prefix, so a signature made
    /// for one purpose can never be replayed as another.
    fn sign(&self, domain: &[u8], message: &[u8]) -> Signature {
        self.signing.sign(&domain_message(domain, message))
    }
}

// ---------------------------------------------------------------------------
// Requests sealed to an identity (registry lookups)
// ---------------------------------------------------------------------------

/// The key of one sealed request and its answer: `derive_key(context, dh ‖
/// ephemeral ‖ recipient)`, where the recipient's X25519 key is its
/// Ed25519 key taken to Montgomery form (as libsodium converts keys), so a
/// registry announces nothing beyond the signing key clients already hold.
fn sealed_request_key(dh: &[u8; 32], ephemeral: &[u8; 32], recipient: &[u8; 32]) -> [u8; 32] {
    let mut input = [0u8; 96];
    input[..32].copy_from_slice(dh);
    input[32..64].copy_from_slice(ephemeral);
    input[64..].copy_from_slice(recipient);
    blake3::derive_key("kith sealed request v1", &input)
}

/// Nonces: each key seals one request and one answer.
const REQUEST_NONCE: [u8; 24] = [0; 24];
const ANSWER_NONCE: [u8; 24] = [1; 24];

/// Seals `plaintext` to `recipient` from a fresh ephemeral X25519 secret
/// (`ephemeral_secret`, never reused). Returns the ephemeral public key to
/// send beside the ciphertext, the ciphertext, and the key its answer will
/// be sealed under ([`open_sealed_answer`]).
pub fn seal_request(
    recipient: &PublicIdentity,
    ephemeral_secret: [u8; 32],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<([u8; 32], Vec<u8>, SecretKey), CryptoError> {
    let secret = x25519_dalek::StaticSecret::from(ephemeral_secret);
    let ephemeral = x25519_dalek::PublicKey::from(&secret).to_bytes();
    let theirs = recipient.key.to_montgomery().to_bytes();
    let dh = secret.diffie_hellman(&x25519_dalek::PublicKey::from(theirs));
    if !dh.was_contributory() {
        return Err(CryptoError::BadPublicKey);
    }
    let key = sealed_request_key(dh.as_bytes(), &ephemeral, &theirs);
    let sealed = aead_seal(&key, &REQUEST_NONCE, aad, plaintext)?;
    Ok((ephemeral, sealed, SecretKey::from_bytes(key)))
}

/// Opens what a client's [`seal_answer`]-paired request carried.
pub fn open_sealed_answer(
    key: &SecretKey,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    aead_open(key.as_bytes(), &ANSWER_NONCE, aad, sealed)
}

/// Seals the answer to a request opened with [`Identity::open_request`].
pub fn seal_answer(key: &SecretKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    aead_seal(key.as_bytes(), &ANSWER_NONCE, aad, plaintext)
}

impl Identity {
    /// Opens a request sealed to us ([`seal_request`]); returns it and the
    /// key to seal the answer under.
    pub fn open_request(
        &self,
        ephemeral: &[u8; 32],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<(Vec<u8>, SecretKey), CryptoError> {
        let secret = x25519_dalek::StaticSecret::from(self.signing.to_scalar_bytes());
        let dh = secret.diffie_hellman(&x25519_dalek::PublicKey::from(*ephemeral));
        if !dh.was_contributory() {
            return Err(CryptoError::BadPublicKey);
        }
        let ours = self.signing.verifying_key().to_montgomery().to_bytes();
        let key = sealed_request_key(dh.as_bytes(), ephemeral, &ours);
        let plaintext = aead_open(&key, &REQUEST_NONCE, aad, sealed)?;
        Ok((plaintext, SecretKey::from_bytes(key)))
    }
}

/// A peer's public identity: its verifying key (decompressed once) and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicIdentity {
    key: VerifyingKey,
    id: PeerId,
}

impl PublicIdentity {
    fn from_verifying_key(key: VerifyingKey) -> Self {
        let id = peer_id_of(key.as_bytes());
        Self { key, id }
    }

    /// Parses a 32-byte Ed25519 public key received from the network.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, CryptoError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| CryptoError::BadPublicKey)?;
        // A weak (small-order) key would let signatures verify for many
        // messages; no honest peer has one.
        if key.is_weak() {
            return Err(CryptoError::BadPublicKey);
        }
        Ok(Self::from_verifying_key(key))
    }

    /// The 32-byte public key.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The peer id: blake3 of the public key.
    pub fn peer_id(&self) -> PeerId {
        self.id
    }

    /// The decompressed verifying key, for batch verification.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Checks a signature made with [`Identity::sign_registry`].
    pub fn verify_registry(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        self.verify(
            REGISTRY_SIG_DOMAIN,
            message,
            &Signature::from_bytes(signature),
        )
    }

    /// Checks a signature made with [`Identity::sign_profile`].
    pub fn verify_profile(&self, record: &[u8], signature: &[u8; 64]) -> bool {
        self.verify(
            PROFILE_SIG_DOMAIN,
            record,
            &Signature::from_bytes(signature),
        )
    }

    /// Checks a signature made with [`Identity::sign`] under `domain`.
    ///
    /// Uses RFC 8032 cofactorless verification with a canonical `S` (which
    /// ed25519-dalek always enforces): that combination is strongly
    /// unforgeable (SUF-CMA, Brendel et al. 2020), so nobody but the signer
    /// can make a second valid signature for a message, and envelope ids
    /// cannot be changed by re-signing. `verify_strict`'s extra small-order
    /// checks on the key are done once, in [`PublicIdentity::from_bytes`];
    /// per message they would cost 14 % of the verify rate for nothing.
    fn verify(&self, domain: &[u8], message: &[u8], signature: &Signature) -> bool {
        use ed25519_dalek::Verifier;
        self.key
            .verify(&domain_message(domain, message), signature)
            .is_ok()
    }
}

/// Domain of registry signatures (see [`Identity::sign_registry`]).
const REGISTRY_SIG_DOMAIN: &[u8] = b"kith registry v1\0";

/// Domain of profile signatures (see [`Identity::sign_profile`]).
const PROFILE_SIG_DOMAIN: &[u8] = b"kith profile v1\0";

/// The peer id of an Ed25519 public key.
pub fn peer_id_of(public_key: &[u8; 32]) -> PeerId {
    PeerId(*blake3::hash(public_key).as_bytes())
}

fn domain_message(domain: &[u8], message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(domain.len() + message.len());
    out.extend_from_slice(domain);
    out.extend_from_slice(message);
    out
}

/// The safety number of a pair of identities: 60 digits in 12 groups of 5,
/// identical on both sides because the two keys are sorted first. Two people
/// who read the same number off their screens know that no one sits between
/// them.
pub fn safety_number(a: &PublicIdentity, b: &PublicIdentity) -> String {
    let (mut first, mut second) = (a.to_bytes(), b.to_bytes());
    if first > second {
        std::mem::swap(&mut first, &mut second);
    }
    let mut hasher = blake3::Hasher::new_derive_key("kith safety number v1");
    hasher.update(&first);
    hasher.update(&second);
    let mut digest = [0u8; 60];
    hasher.finalize_xof().fill(&mut digest);
    let groups: Vec<String> = digest
        .chunks_exact(5)
        .map(|chunk| {
            let value = chunk
                .iter()
                .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
            // 2^40 is ~1.1e12, so the bias of `% 100_000` is below 1e-7.
            format!("{:05}", value % 100_000)
        })
        .collect();
    groups.join(" ")
}

// ---------------------------------------------------------------------------
// Symmetric primitives
// ---------------------------------------------------------------------------

/// A 32-byte symmetric key that is wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
#[repr(transparent)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// Wraps raw key bytes (from the RNG or the encrypted store).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh random key.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The raw bytes, for storage and distribution over a sealed channel.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

fn aead_seal(
    key: &[u8; 32],
    nonce: &[u8; 24],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .encrypt(
            &XNonce::from(*nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CryptoError::TooLarge)
}

fn aead_open(
    key: &[u8; 32],
    nonce: &[u8; 24],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(
            &XNonce::from(*nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Unauthentic)
}

/// Seals a multicast group frame's packet under a room's group key:
/// returns `nonce ‖ ciphertext` (a random nonce; the key lives for one
/// epoch, far below XChaCha20's random-nonce bound).
pub fn seal_group_frame(
    key: &SecretKey,
    nonce: &[u8; 24],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut out = nonce.to_vec();
    out.extend_from_slice(&aead_seal(key.as_bytes(), nonce, aad, plaintext)?);
    Ok(out)
}

/// Opens what [`seal_group_frame`] made.
pub fn open_group_frame(
    key: &SecretKey,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < 24 + TAG_LEN {
        return Err(CryptoError::Unauthentic);
    }
    let (nonce, ciphertext) = sealed.split_at(24);
    let nonce: [u8; 24] = nonce.try_into().map_err(|_| CryptoError::Unauthentic)?;
    aead_open(key.as_bytes(), &nonce, aad, ciphertext)
}

// ---------------------------------------------------------------------------
// Replay window
// ---------------------------------------------------------------------------

/// A sliding window over sequence numbers: accepts each number at most once,
/// in any order, as long as it is no more than [`ReplayWindow::SIZE`] - 1
/// behind the highest number seen.
///
/// Checking and marking are separate so that a packet which fails
/// authentication after the check never moves the window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// One past the highest sequence number marked; 0 when none was.
    top: u64,
    /// A ring of `SIZE` bits indexed by `seq % SIZE`: set when that number,
    /// which lies in `top - SIZE .. top`, was seen. Marking is O(1).
    bits: Box<[u64; 16]>,
}

impl ReplayWindow {
    /// How many sequence numbers the window spans.
    pub const SIZE: u64 = 1024;

    /// Would `seq` be accepted?
    pub fn check(&self, seq: u64) -> Result<(), CryptoError> {
        if seq >= self.top {
            return Ok(());
        }
        if self.top - seq > Self::SIZE {
            return Err(CryptoError::TooOld);
        }
        if self.bit(seq) {
            Err(CryptoError::Replay)
        } else {
            Ok(())
        }
    }

    /// Records `seq` as received. Call only after the packet authenticated.
    pub fn mark(&mut self, seq: u64) {
        if seq >= self.top {
            // Clear the slots that the window slides over: they held numbers
            // that now fall out of it.
            let advance = seq + 1 - self.top;
            if advance >= Self::SIZE {
                self.bits.fill(0);
            } else {
                for stale in self.top..=seq {
                    self.set_bit(stale, false);
                }
            }
            self.top = seq + 1;
        }
        if self.top - seq <= Self::SIZE {
            self.set_bit(seq, true);
        }
    }

    /// The highest sequence number marked so far, if any.
    pub fn highest(&self) -> Option<u64> {
        self.top.checked_sub(1)
    }

    fn bit(&self, seq: u64) -> bool {
        let slot = seq % Self::SIZE;
        self.bits[(slot / 64) as usize] & (1 << (slot % 64)) != 0
    }

    fn set_bit(&mut self, seq: u64, value: bool) {
        let slot = seq % Self::SIZE;
        let word = &mut self.bits[(slot / 64) as usize];
        if value {
            *word |= 1 << (slot % 64);
        } else {
            *word &= !(1 << (slot % 64));
        }
    }
}

// ---------------------------------------------------------------------------
// Pairwise handshake (SIGMA-I over X25519 + Ed25519)
// ---------------------------------------------------------------------------

const HS_PROTOCOL: &[u8] = b"kith pairwise handshake v1";
const HS_SIG_RESPONDER: &[u8] = b"kith hs responder sig v1\0";
const HS_SIG_INITIATOR: &[u8] = b"kith hs initiator sig v1\0";

/// First handshake message, initiator → responder, in the clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeInit {
    pub ephemeral: [u8; 32],
}

/// Second handshake message, responder → initiator. `sealed` holds the
/// responder's identity key and signature, encrypted under the handshake key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeResponse {
    pub ephemeral: [u8; 32],
    pub sealed: Vec<u8>,
}

/// Third handshake message, initiator → responder: the initiator's identity
/// and signature, encrypted under the handshake key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeFinish {
    pub sealed: Vec<u8>,
}

/// Running transcript hash: every handshake byte goes in, in order.
#[derive(Clone)]
struct Transcript(blake3::Hasher);

impl Transcript {
    fn new() -> Self {
        Self(blake3::Hasher::new_derive_key(
            "kith pairwise handshake transcript v1",
        ))
    }

    fn absorb(&mut self, bytes: &[u8]) {
        // Length-prefix each part so that concatenations cannot collide.
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    fn hash(&self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

/// Key material shared after the ephemeral DH, before identities are known.
struct HandshakeKeys {
    dh: Zeroizing<[u8; 32]>,
}

impl HandshakeKeys {
    /// The key that encrypts an identity payload. Bound to the transcript so
    /// far, so that each direction gets its own key.
    fn payload_key(&self, transcript: &[u8; 32], label: &str) -> SecretKey {
        let mut hasher = blake3::Hasher::new_derive_key(label);
        hasher.update(self.dh.as_ref());
        hasher.update(transcript);
        SecretKey(*hasher.finalize().as_bytes())
    }
}

fn diffie_hellman(
    secret: x25519_dalek::EphemeralSecret,
    their_public: &[u8; 32],
) -> Result<HandshakeKeys, CryptoError> {
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(*their_public));
    // A low-order public key gives an all-zero secret that an attacker knows.
    if !shared.was_contributory() {
        return Err(CryptoError::WeakKey);
    }
    Ok(HandshakeKeys {
        dh: Zeroizing::new(shared.to_bytes()),
    })
}

/// Identity payload inside handshake messages 2 and 3: public key (32) and
/// signature (64).
fn identity_payload(identity: &Identity, signature: &Signature) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(identity.public().key.as_bytes());
    out.extend_from_slice(&signature.to_bytes());
    out
}

fn parse_identity_payload(bytes: &[u8]) -> Result<(PublicIdentity, Signature), CryptoError> {
    if bytes.len() != 96 {
        return Err(CryptoError::Unauthentic);
    }
    let (key, signature) = bytes.split_at(32);
    // Lengths were checked just above: 32 and 64 bytes.
    let key: [u8; 32] = key.try_into().map_err(|_| CryptoError::Unauthentic)?;
    let signature: [u8; 64] = signature.try_into().map_err(|_| CryptoError::Unauthentic)?;
    Ok((
        PublicIdentity::from_bytes(&key)?,
        Signature::from_bytes(&signature),
    ))
}

/// The initiator's side of a handshake, between sending message 1 and
/// receiving message 2.
pub struct Initiator {
    ephemeral_secret: x25519_dalek::EphemeralSecret,
    ephemeral_public: [u8; 32],
    expected_peer: Option<PeerId>,
    transcript: Transcript,
}

impl Initiator {
    /// Starts a handshake. With `expected_peer` set, a responder with any
    /// other identity is refused.
    pub fn start<R: CryptoRng + ?Sized>(
        rng: &mut R,
        expected_peer: Option<PeerId>,
    ) -> (Self, HandshakeInit) {
        let ephemeral_secret = x25519_dalek::EphemeralSecret::random_from_rng(rng);
        let ephemeral_public = x25519_dalek::PublicKey::from(&ephemeral_secret).to_bytes();
        let mut transcript = Transcript::new();
        transcript.absorb(HS_PROTOCOL);
        transcript.absorb(&ephemeral_public);
        (
            Self {
                ephemeral_secret,
                ephemeral_public,
                expected_peer,
                transcript,
            },
            HandshakeInit {
                ephemeral: ephemeral_public,
            },
        )
    }

    /// Handles message 2 and produces message 3 plus the finished session.
    pub fn handle_response(
        self,
        identity: &Identity,
        response: &HandshakeResponse,
    ) -> Result<(PairwiseSession, HandshakeFinish), CryptoError> {
        let mut transcript = self.transcript;
        transcript.absorb(&response.ephemeral);
        let keys = diffie_hellman(self.ephemeral_secret, &response.ephemeral)?;
        let after_ephemerals = transcript.hash();

        let responder_key = keys.payload_key(&after_ephemerals, "kith hs responder payload v1");
        let payload = aead_open(&responder_key.0, &[0u8; 24], &[], &response.sealed)?;
        let (responder, responder_sig) = parse_identity_payload(&payload)?;
        if let Some(expected) = self.expected_peer
            && expected != responder.peer_id()
        {
            return Err(CryptoError::WrongPeer);
        }
        let mut signed = transcript.clone();
        signed.absorb(&responder.to_bytes());
        if !responder.verify(HS_SIG_RESPONDER, &signed.hash(), &responder_sig) {
            return Err(CryptoError::BadSignature);
        }
        transcript.absorb(&payload);

        // Our own proof: sign the transcript including the responder's
        // identity and signature, then our identity.
        let mut to_sign = transcript.clone();
        to_sign.absorb(identity.public().key.as_bytes());
        let signature = identity.sign(HS_SIG_INITIATOR, &to_sign.hash());
        let our_payload = identity_payload(identity, &signature);
        let initiator_key = keys.payload_key(&transcript.hash(), "kith hs initiator payload v1");
        let sealed = aead_seal(&initiator_key.0, &[0u8; 24], &[], &our_payload)?;
        transcript.absorb(&our_payload);

        let session = PairwiseSession::derive(
            &keys,
            &transcript.hash(),
            Role::Initiator,
            responder,
            self.ephemeral_public,
        );
        Ok((session, HandshakeFinish { sealed }))
    }
}

/// The responder's side of a handshake, between sending message 2 and
/// receiving message 3.
pub struct Responder {
    keys: HandshakeKeys,
    transcript: Transcript,
    initiator_ephemeral: [u8; 32],
}

impl Responder {
    /// Handles message 1 and produces message 2.
    pub fn handle_init<R: CryptoRng + ?Sized>(
        rng: &mut R,
        identity: &Identity,
        init: &HandshakeInit,
    ) -> Result<(Self, HandshakeResponse), CryptoError> {
        let ephemeral_secret = x25519_dalek::EphemeralSecret::random_from_rng(rng);
        let ephemeral_public = x25519_dalek::PublicKey::from(&ephemeral_secret).to_bytes();
        let mut transcript = Transcript::new();
        transcript.absorb(HS_PROTOCOL);
        transcript.absorb(&init.ephemeral);
        transcript.absorb(&ephemeral_public);
        let keys = diffie_hellman(ephemeral_secret, &init.ephemeral)?;
        let after_ephemerals = transcript.hash();

        let mut to_sign = transcript.clone();
        to_sign.absorb(identity.public().key.as_bytes());
        let signature = identity.sign(HS_SIG_RESPONDER, &to_sign.hash());
        let payload = identity_payload(identity, &signature);
        let responder_key = keys.payload_key(&after_ephemerals, "kith hs responder payload v1");
        let sealed = aead_seal(&responder_key.0, &[0u8; 24], &[], &payload)?;
        transcript.absorb(&payload);
        Ok((
            Self {
                keys,
                transcript,
                initiator_ephemeral: init.ephemeral,
            },
            HandshakeResponse {
                ephemeral: ephemeral_public,
                sealed,
            },
        ))
    }

    /// Handles message 3: authenticates the initiator and finishes.
    pub fn handle_finish(self, finish: &HandshakeFinish) -> Result<PairwiseSession, CryptoError> {
        let mut transcript = self.transcript;
        let initiator_key = self
            .keys
            .payload_key(&transcript.hash(), "kith hs initiator payload v1");
        let payload = aead_open(&initiator_key.0, &[0u8; 24], &[], &finish.sealed)?;
        let (initiator, initiator_sig) = parse_identity_payload(&payload)?;
        let mut signed = transcript.clone();
        signed.absorb(&initiator.to_bytes());
        if !initiator.verify(HS_SIG_INITIATOR, &signed.hash(), &initiator_sig) {
            return Err(CryptoError::BadSignature);
        }
        transcript.absorb(&payload);
        Ok(PairwiseSession::derive(
            &self.keys,
            &transcript.hash(),
            Role::Responder,
            initiator,
            self.initiator_ephemeral,
        ))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Initiator,
    Responder,
}

/// An established pairwise channel: one key per direction, a counter nonce
/// for sending and a replay window for receiving.
pub struct PairwiseSession {
    send_key: SecretKey,
    receive_key: SecretKey,
    next_send: u64,
    received: ReplayWindow,
    peer: PublicIdentity,
    session_id: [u8; 16],
}

impl PairwiseSession {
    /// A secret both ends of the session derive alike (the same on either
    /// side, unlike the directional keys), for `label`: e.g. the salt of a
    /// history reconciliation, so it need not travel.
    pub fn exporter(&self, label: &str) -> [u8; 32] {
        let (a, b) = (self.send_key.as_bytes(), self.receive_key.as_bytes());
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        let mut material = low.to_vec();
        material.extend_from_slice(high);
        blake3::derive_key(label, &material)
    }

    fn derive(
        keys: &HandshakeKeys,
        transcript: &[u8; 32],
        role: Role,
        peer: PublicIdentity,
        initiator_ephemeral: [u8; 32],
    ) -> Self {
        let derive = |label: &str| {
            let mut hasher = blake3::Hasher::new_derive_key(label);
            hasher.update(keys.dh.as_ref());
            hasher.update(transcript);
            SecretKey(*hasher.finalize().as_bytes())
        };
        let initiator_to_responder = derive("kith pairwise initiator-to-responder v1");
        let responder_to_initiator = derive("kith pairwise responder-to-initiator v1");
        let (send_key, receive_key) = match role {
            Role::Initiator => (initiator_to_responder, responder_to_initiator),
            Role::Responder => (responder_to_initiator, initiator_to_responder),
        };
        // The session id names the handshake (via the initiator's ephemeral
        // key) so both sides can tell a new session from an old one.
        let mut session_id = [0u8; 16];
        session_id.copy_from_slice(&blake3::hash(&initiator_ephemeral).as_bytes()[..16]);
        Self {
            send_key,
            receive_key,
            next_send: 0,
            received: ReplayWindow::default(),
            peer,
            session_id,
        }
    }

    /// Who is on the other end, authenticated by the handshake.
    pub fn peer(&self) -> &PublicIdentity {
        &self.peer
    }

    /// Identifies this session (the same value on both sides).
    pub fn session_id(&self) -> [u8; 16] {
        self.session_id
    }

    /// The counter the next [`PairwiseSession::seal`] will use, so a caller
    /// can bind it into the associated data (as `wire::sealed_aad` does).
    pub fn next_counter(&self) -> u64 {
        self.next_send
    }

    /// Seals `plaintext`; returns the counter to send beside the ciphertext.
    /// `aad` binds whatever cleartext header travels with it.
    pub fn seal(&mut self, aad: &[u8], plaintext: &[u8]) -> Result<(u64, Vec<u8>), CryptoError> {
        let counter = self.next_send;
        // 2^64 messages never happen; refusing is still better than reusing
        // a nonce.
        self.next_send = counter.checked_add(1).ok_or(CryptoError::ChainExhausted)?;
        let ciphertext = aead_seal(
            self.send_key.as_bytes(),
            &counter_nonce(counter),
            aad,
            plaintext,
        )?;
        Ok((counter, ciphertext))
    }

    /// Opens a sealed message; rejects replays and forgeries without moving
    /// the replay window.
    pub fn open(
        &mut self,
        counter: u64,
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        self.received.check(counter)?;
        let plaintext = aead_open(
            self.receive_key.as_bytes(),
            &counter_nonce(counter),
            aad,
            ciphertext,
        )?;
        self.received.mark(counter);
        Ok(plaintext)
    }
}

fn counter_nonce(counter: u64) -> [u8; 24] {
    let mut nonce = [0u8; 24];
    nonce[..8].copy_from_slice(&counter.to_le_bytes());
    nonce
}

// ---------------------------------------------------------------------------
// Room sender chains
// ---------------------------------------------------------------------------

/// Message key and nonce for one message, derived from a chain key.
#[derive(Clone, PartialEq, Eq)]
struct MessageKey {
    key: SecretKey,
    nonce: [u8; 24],
}

impl Drop for MessageKey {
    fn drop(&mut self) {
        self.nonce.zeroize();
    }
}

/// One step of the hash ratchet: (message key for this position, next chain
/// key). Distinct single-byte inputs separate the two outputs.
fn ratchet_step(chain_key: &SecretKey) -> (MessageKey, SecretKey) {
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
    chain: ChainId,
    next_seq: u64,
    chain_key: SecretKey,
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

    fn advance(&mut self) -> Result<(u64, MessageKey), CryptoError> {
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
    chain: ChainId,
    next_seq: u64,
    chain_key: SecretKey,
    skipped: BTreeMap<u64, MessageKey>,
    window: ReplayWindow,
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
    fn peek(&self, seq: u64) -> Result<KeyLookup, CryptoError> {
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

    fn commit(&mut self, seq: u64, lookup: KeyLookup) {
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

// ---------------------------------------------------------------------------
// Chain snapshots (persisting chains across restarts)
// ---------------------------------------------------------------------------

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
            let [flags] = reader.take::<1>()?;
            // Version 2 is only written with a known flag set (see
            // `SNAPSHOT_VERSION`): anything else has no canonical form.
            if flags == 0 || flags & !(SNAPSHOT_FLAG_ORIGIN | SNAPSHOT_FLAG_RESERVED) != 0 {
                return Err(SnapshotError::Inconsistent);
            }
            flags
        } else {
            0
        };
        let origin = if flags & SNAPSHOT_FLAG_ORIGIN != 0 {
            Some(reader.take::<32>()?)
        } else {
            None
        };
        let reserved = flags & SNAPSHOT_FLAG_RESERVED != 0;
        let mut skipped = Vec::new();
        let mut window = ReplayWindow::default();
        if role == ChainRole::Receiving {
            window.top = u64::from_le_bytes(reader.take()?);
            for word in window.bits.iter_mut() {
                *word = u64::from_le_bytes(reader.take()?);
            }
            let count = usize::from(u16::from_le_bytes(reader.take()?));
            if count as u64 > MAX_SKIP {
                return Err(SnapshotError::TooManySkipped(count));
            }
            // Check the length before allocating for `count` entries.
            if reader.0.len() < count * SNAPSHOT_SKIPPED_LEN {
                return Err(SnapshotError::Truncated);
            }
            skipped.reserve_exact(count);
            for _ in 0..count {
                let seq = u64::from_le_bytes(reader.take()?);
                let key = SecretKey(reader.take()?);
                let nonce = reader.take()?;
                skipped.push((seq, MessageKey { key, nonce }));
            }
        }
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

enum KeyLookup {
    Skipped(MessageKey),
    Ahead {
        message_key: MessageKey,
        passed: Vec<MessageKey>,
        next_chain_key: SecretKey,
    },
}

impl KeyLookup {
    fn message_key(&self) -> &MessageKey {
        match self {
            KeyLookup::Skipped(key) => key,
            KeyLookup::Ahead { message_key, .. } => message_key,
        }
    }
}

// ---------------------------------------------------------------------------
// Envelopes
// ---------------------------------------------------------------------------

/// Signature domain of version-1 envelopes (each signed on its own).
const ENVELOPE_SIG_DOMAIN: &[u8] = b"kith room envelope v1\0";
/// Signature domain of version-2 envelopes: the signature covers the root
/// of a hash tree over a batch of envelopes.
const ENVELOPE_BATCH_SIG_DOMAIN: &[u8] = b"kith envelope batch v2\0";
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
    fn emit(&self, version: u8) -> [u8; ENVELOPE_HEADER_LEN] {
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

    fn chain(&self) -> ChainId {
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
fn leaf_hash(header: &[u8; ENVELOPE_HEADER_LEN], ciphertext: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(LEAF_PREFIX);
    hasher.update(header);
    hasher.update(ciphertext);
    *hasher.finalize().as_bytes()
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
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

fn envelope_aad(header: &[u8; ENVELOPE_HEADER_LEN]) -> Vec<u8> {
    domain_message(ENVELOPE_AAD_DOMAIN, header)
}

/// What the sender fills in; the chain supplies room, epoch and seq.
#[derive(Clone, Copy, Debug)]
pub struct OutgoingMessage<'a> {
    pub kind: u8,
    pub timestamp: u64,
    pub plaintext: &'a [u8],
}

/// A message sealed on its chain, waiting for the signature of its batch
/// ([`sign_batch`]).
#[derive(Clone, Debug)]
pub struct UnsignedEnvelope {
    header: EnvelopeHeader,
    ciphertext: Vec<u8>,
}

impl UnsignedEnvelope {
    /// Its cleartext header (room, chain position, timestamp).
    pub fn header(&self) -> &EnvelopeHeader {
        &self.header
    }
}

/// Seals the next message on `chain`; [`sign_batch`] signs it, alone or
/// with others.
pub fn seal_unsigned(
    chain: &mut SenderChain,
    message: OutgoingMessage<'_>,
) -> Result<UnsignedEnvelope, CryptoError> {
    if message.plaintext.len() > MAX_ENVELOPE_PLAINTEXT {
        return Err(CryptoError::TooLarge);
    }
    let (seq, message_key) = chain.advance()?;
    let header = EnvelopeHeader {
        room: chain.chain.room,
        epoch: chain.chain.epoch,
        sender: chain.chain.sender,
        seq,
        kind: message.kind,
        timestamp: message.timestamp,
    };
    let ciphertext = aead_seal(
        message_key.key.as_bytes(),
        &message_key.nonce,
        &envelope_aad(&header.emit(ENVELOPE_VERSION)),
        message.plaintext,
    )?;
    Ok(UnsignedEnvelope { header, ciphertext })
}

/// Signs sealed messages with one signature per [`MAX_SIGNED_BATCH`]: the
/// signature covers the root of a hash tree over them, and each envelope
/// carries the sibling hashes from its leaf to that root. Returns the
/// envelopes in the order given.
pub fn sign_batch(identity: &Identity, batch: Vec<UnsignedEnvelope>) -> Vec<Envelope> {
    let mut out = Vec::with_capacity(batch.len());
    let mut batch = batch.into_iter().peekable();
    while batch.peek().is_some() {
        let chunk: Vec<UnsignedEnvelope> = batch.by_ref().take(MAX_SIGNED_BATCH).collect();
        debug_assert!(chunk.iter().all(|u| u.header.sender == identity.peer_id()));
        // levels[0] holds the leaves; a node without a sibling moves up
        // unchanged, so no level is deeper than log2 of the chunk.
        let mut levels: Vec<Vec<[u8; 32]>> = vec![
            chunk
                .iter()
                .map(|u| leaf_hash(&u.header.emit(ENVELOPE_VERSION), &u.ciphertext))
                .collect(),
        ];
        while let Some(level) = levels.last().filter(|level| level.len() > 1) {
            let up = level
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => node_hash(left, right),
                    // The odd one out.
                    [alone, ..] => *alone,
                    [] => [0; 32],
                })
                .collect();
            levels.push(up);
        }
        let root = levels.last().and_then(|top| top.first()).copied();
        let Some(root) = root else { continue };
        let signature = identity.sign(ENVELOPE_BATCH_SIG_DOMAIN, &root).to_bytes();
        for (index, unsigned) in chunk.into_iter().enumerate() {
            let mut proof = BatchProof::default();
            let mut position = index;
            for level in &levels[..levels.len() - 1] {
                let sibling = position ^ 1;
                if let Some(hash) = level.get(sibling) {
                    if sibling < position {
                        proof.left |= 1 << proof.siblings.len();
                    }
                    proof.siblings.push(*hash);
                }
                position /= 2;
            }
            out.push(Envelope {
                header: unsigned.header,
                signature,
                proof: Some(proof),
                ciphertext: unsigned.ciphertext,
            });
        }
    }
    out
}

/// Seals and signs the next message on `chain` (a batch of one).
pub fn seal_envelope(
    identity: &Identity,
    chain: &mut SenderChain,
    message: OutgoingMessage<'_>,
) -> Result<Envelope, CryptoError> {
    debug_assert_eq!(chain.chain.sender, identity.peer_id());
    let unsigned = seal_unsigned(chain, message)?;
    sign_batch(identity, vec![unsigned])
        .pop()
        .ok_or(CryptoError::Unauthentic)
}

/// Verifies, decrypts and replay-checks a room message from `sender`,
/// advancing `chain` only if every check passed.
pub fn open_envelope(
    envelope: &Envelope,
    sender: &PublicIdentity,
    chain: &mut ReceiverChain,
) -> Result<Vec<u8>, CryptoError> {
    envelope.verify_signature(sender)?;
    open_verified_envelope(envelope, chain)
}

/// Decrypts and replay-checks an envelope whose signature the caller already
/// verified (for example in a batch with [`verify_envelopes_batch`]).
pub fn open_verified_envelope(
    envelope: &Envelope,
    chain: &mut ReceiverChain,
) -> Result<Vec<u8>, CryptoError> {
    if envelope.header.chain() != chain.chain {
        return Err(CryptoError::WrongChain);
    }
    let lookup = chain.peek(envelope.header.seq)?;
    let message_key = lookup.message_key();
    let plaintext = aead_open(
        message_key.key.as_bytes(),
        &message_key.nonce,
        &envelope_aad(&envelope.header.emit(envelope.version())),
        &envelope.ciphertext,
    )?;
    chain.commit(envelope.header.seq, lookup);
    Ok(plaintext)
}

/// Most ratchet steps [`open_envelope_from_origin`] takes from a chain's
/// origin to a message (about 20 ms of blake3 at the limit).
pub const MAX_ORIGIN_STEPS: u64 = 1 << 18;

/// Opens an envelope of any position of a chain from the chain's origin
/// (its first distribution), without a [`ReceiverChain`]'s state: how a
/// member opens an old envelope another member forwarded after it missed it.
/// No replay check: the caller deduplicates by envelope id.
pub fn open_envelope_from_origin(
    envelope: &Envelope,
    sender: &PublicIdentity,
    origin: &SenderKeyDistribution,
) -> Result<Vec<u8>, CryptoError> {
    if envelope.header.chain() != origin.chain {
        return Err(CryptoError::WrongChain);
    }
    let steps = envelope
        .header
        .seq
        .checked_sub(origin.start_seq)
        .ok_or(CryptoError::TooOld)?;
    if steps >= MAX_ORIGIN_STEPS {
        return Err(CryptoError::TooFarAhead);
    }
    envelope.verify_signature(sender)?;
    let mut chain_key = origin.chain_key.clone();
    for _ in 0..steps {
        chain_key = ratchet_step(&chain_key).1;
    }
    let (message_key, _) = ratchet_step(&chain_key);
    aead_open(
        message_key.key.as_bytes(),
        &message_key.nonce,
        &envelope_aad(&envelope.header.emit(envelope.version())),
        &envelope.ciphertext,
    )
}

/// Verifies many envelope signatures at once (about twice as fast per
/// signature as one by one). Envelopes of one signed batch share their
/// signature: pass one of them (see [`Envelope::signature_fingerprint`]). On failure, fall back to checking each one to
/// find the bad envelope(s).
pub fn verify_envelopes_batch(
    envelopes: &[(&Envelope, &PublicIdentity)],
) -> Result<(), CryptoError> {
    if envelopes
        .iter()
        .any(|(envelope, sender)| envelope.header.sender != sender.peer_id())
    {
        return Err(CryptoError::WrongPeer);
    }
    let messages: Vec<Vec<u8>> = envelopes
        .iter()
        .map(|(envelope, _)| envelope.signed_message())
        .collect();
    let message_refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let signatures: Vec<Signature> = envelopes
        .iter()
        .map(|(envelope, _)| Signature::from_bytes(&envelope.signature))
        .collect();
    let keys: Vec<VerifyingKey> = envelopes.iter().map(|(_, sender)| sender.key).collect();
    ed25519_dalek::verify_batch(&message_refs, &signatures, &keys)
        .map_err(|_| CryptoError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn replay_window_accepts_each_once_in_any_order() {
        let mut window = ReplayWindow::default();
        for seq in [5u64, 3, 9, 4, 0, 1000, 1001, 999] {
            assert_eq!(window.check(seq), Ok(()), "first {seq}");
            window.mark(seq);
            assert_eq!(window.check(seq), Err(CryptoError::Replay), "again {seq}");
        }
        // 1001 is the top; 1001 - 1023 = -22, so 0 is still inside but marked.
        assert_eq!(window.check(0), Err(CryptoError::Replay));
        window.mark(5000);
        assert_eq!(window.check(3000), Err(CryptoError::TooOld));
        assert_eq!(window.check(5000 - 1023), Ok(()));
        assert_eq!(window.check(5000 - 1024), Err(CryptoError::TooOld));
        assert_eq!(window.highest(), Some(5000));
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
