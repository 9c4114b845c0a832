//! Long-term identities: our signing key, a peer's public key and peer id,
//! domain-separated signatures and the safety number two people compare.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::CryptoRng;
use zeroize::Zeroizing;

use super::error::CryptoError;
use crate::proto::ids::PeerId;

/// This installation's long-term signing identity. The secret key is
/// zeroized when the value is dropped (ed25519-dalek's `zeroize` feature).
pub struct Identity {
    pub(super) signing: SigningKey,
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
    pub(super) fn sign(&self, domain: &[u8], message: &[u8]) -> Signature {
        self.signing.sign(&domain_message(domain, message))
    }
}

/// A peer's public identity: its verifying key (decompressed once) and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicIdentity {
    pub(super) key: VerifyingKey,
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
    pub(super) fn verify(&self, domain: &[u8], message: &[u8], signature: &Signature) -> bool {
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

pub(super) fn domain_message(domain: &[u8], message: &[u8]) -> Vec<u8> {
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
