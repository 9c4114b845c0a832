//! The pairwise handshake: SIGMA-I over X25519 ephemerals and Ed25519
//! identities, three messages, ending in a [`PairwiseSession`].

use ed25519_dalek::Signature;
use rand::CryptoRng;
use zeroize::Zeroizing;

use super::aead::{SecretKey, aead_open, aead_seal};
use super::error::CryptoError;
use super::identity::{Identity, PublicIdentity};
use super::pairwise::PairwiseSession;
use crate::proto::ids::PeerId;

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

    /// The session's directional keys for our `role`, (send, receive):
    /// bound to the DH secret and the full transcript, so to both
    /// identities.
    fn session_keys(&self, transcript: &[u8; 32], role: Role) -> (SecretKey, SecretKey) {
        let derive = |label: &str| {
            let mut hasher = blake3::Hasher::new_derive_key(label);
            hasher.update(self.dh.as_ref());
            hasher.update(transcript);
            SecretKey(*hasher.finalize().as_bytes())
        };
        let initiator_to_responder = derive("kith pairwise initiator-to-responder v1");
        let responder_to_initiator = derive("kith pairwise responder-to-initiator v1");
        match role {
            Role::Initiator => (initiator_to_responder, responder_to_initiator),
            Role::Responder => (responder_to_initiator, initiator_to_responder),
        }
    }
}

/// Which side of the handshake we are.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Initiator,
    Responder,
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

        let (send_key, receive_key) = keys.session_keys(&transcript.hash(), Role::Initiator);
        let session = PairwiseSession::new(send_key, receive_key, responder, self.ephemeral_public);
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
        let (send_key, receive_key) = self.keys.session_keys(&transcript.hash(), Role::Responder);
        Ok(PairwiseSession::new(
            send_key,
            receive_key,
            initiator,
            self.initiator_ephemeral,
        ))
    }
}
