//! Requests sealed to an identity (registry lookups): a client seals a
//! request to a registry's signing key from a fresh ephemeral key, and the
//! registry seals its answer under the key the request derived.

use super::aead::{SecretKey, aead_open, aead_seal};
use super::error::CryptoError;
use super::identity::{Identity, PublicIdentity};

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
