//! Symmetric primitives: the wiped 32-byte key, XChaCha20-Poly1305 sealing
//! and opening, and multicast group frames sealed under a room's group key.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::error::CryptoError;

/// Length of an AEAD tag in bytes.
pub const TAG_LEN: usize = 16;

/// A 32-byte symmetric key that is wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
#[repr(transparent)]
pub struct SecretKey(pub(super) [u8; 32]);

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

pub(super) fn aead_seal(
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

pub(super) fn aead_open(
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
