//! An established pairwise channel: directional keys derived from the
//! handshake, a counter nonce for sending and a replay window for receiving.

use super::aead::{SecretKey, aead_open, aead_seal};
use super::error::CryptoError;
use super::identity::PublicIdentity;
use super::replay::ReplayWindow;

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

    /// The session a handshake ended in: its directional keys (derived by
    /// the handshake from the DH secret and the full transcript), the
    /// authenticated `peer`, and the initiator's ephemeral key to name it by.
    pub(super) fn new(
        send_key: SecretKey,
        receive_key: SecretKey,
        peer: PublicIdentity,
        initiator_ephemeral: [u8; 32],
    ) -> Self {
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
