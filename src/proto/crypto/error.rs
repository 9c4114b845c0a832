//! The one error of the crypto layer, coarse on purpose.

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
