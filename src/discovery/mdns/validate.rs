//! Checks of announcements, which are untrusted input: TXT records and
//! public keys.

use crate::proto::crypto::PublicIdentity;
use crate::proto::ids::PeerId;
use crate::proto::wire;

/// Why an announcement was not reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No `id` TXT record, or one without a value.
    #[error("no peer id in TXT")]
    MissingId,
    /// `id` is not exactly 64 hex digits.
    #[error("peer id in TXT is not 64 hex digits")]
    BadId,
    /// No `v` TXT record, or one without a value.
    #[error("no protocol version in TXT")]
    MissingVersion,
    /// `v` is not this build's wire version.
    #[error("unsupported protocol version in TXT")]
    BadVersion,
    /// SRV port 0.
    #[error("port 0")]
    BadPort,
    /// No address on the configured interfaces.
    #[error("no address")]
    NoAddress,
    /// [`MAX_TRACKED`] announcements are already remembered.
    #[error("too many announcements")]
    TooMany,
    /// None of its addresses may be probed (see
    /// [`super::address_allowed`]): off the configured interfaces' networks
    /// and not link-local, or loopback, multicast, broadcast, unspecified.
    #[error("no address on the configured interfaces' networks")]
    BadAddress,
    /// `pk` is not 64 hex digits of a valid public key, or its hash is not
    /// the announced `id`.
    #[error("public key in TXT does not match the peer id")]
    BadPublicKey,
}

/// Validates an optional TXT `pk` against the already validated `peer_id`:
/// absent is fine (`Ok(None)`); present, it must be 64 hex digits of a valid
/// Ed25519 public key whose blake3 hash is `peer_id`.
pub fn validate_public_key(
    peer_id: PeerId,
    public_key: Option<Option<&[u8]>>,
) -> Result<Option<PublicIdentity>, Rejection> {
    let Some(value) = public_key else {
        return Ok(None);
    };
    let key = value
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(PeerId::from_hex)
        .ok_or(Rejection::BadPublicKey)?;
    let public = PublicIdentity::from_bytes(&key.0).map_err(|_| Rejection::BadPublicKey)?;
    if public.peer_id() != peer_id {
        return Err(Rejection::BadPublicKey);
    }
    Ok(Some(public))
}

/// Validates the TXT values of an announcement: `id` must be exactly 64 hex
/// digits and `v` exactly this build's wire version in decimal. `None` is a
/// missing key, `Some(None)` a key without `=value`.
pub fn validate_txt(
    id: Option<Option<&[u8]>>,
    version: Option<Option<&[u8]>>,
) -> Result<PeerId, Rejection> {
    let id = id.flatten().ok_or(Rejection::MissingId)?;
    let version = version.flatten().ok_or(Rejection::MissingVersion)?;
    // from_hex checks the length and every digit; a non-UTF-8 value fails
    // here before it can reach it.
    let peer_id = std::str::from_utf8(id)
        .ok()
        .and_then(PeerId::from_hex)
        .ok_or(Rejection::BadId)?;
    if version != wire::VERSION.to_string().as_bytes() {
        return Err(Rejection::BadVersion);
    }
    Ok(peer_id)
}
