//! Registry datagrams: checked parsing and emitting.
//!
//! Every registry datagram is `MAGIC "kr" (2) ‖ VERSION (1) ‖ body`, where
//! the body is a MessagePack (rmp-serde) encoding of a [`Message`]. The magic
//! differs from the peer-to-peer `"kt"`, so neither side can mistake the
//! other's traffic for its own. Parsing follows `proto::wire`: the size is
//! capped at [`MAX_DATAGRAM`](crate::proto::wire::MAX_DATAGRAM) before anything is decoded, magic and version
//! are checked, the body is decoded from a bounded reader with trailing bytes
//! rejected, and every variable-length field has a cap (at most
//! [`MAX_ADDRESSES`] addresses, signed bodies at most [`MAX_SIGNED_BODY`]
//! bytes). No input makes [`Message::parse`] panic.
//!
//! Signed parts travel as `(body bytes, signature)` rather than being
//! re-encoded for verification: the signature covers exactly the bytes that
//! arrived, so no two encoders ever have to agree on a canonical form, and the
//! registry can hand a peer's registration to others verbatim, where they
//! check the peer's own signature.

use crate::proto::ids::PeerId;
use crate::proto::wire::{WireError, datagram_body, decode_exact, emit_datagram};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// First two bytes of every registry datagram.
pub const MAGIC: [u8; 2] = *b"kr";
/// The registry wire version this build speaks. Version 2: lookups and
/// their answers sealed to the registry's key.
pub const VERSION: u8 = 2;
/// Bytes before the body.
pub const PREAMBLE_LEN: usize = MAGIC.len() + 1;
/// Most addresses one registration may carry.
pub const MAX_ADDRESSES: usize = 8;
/// Largest signed body (a registration or an answer). A registration with
/// eight IPv6 addresses is about 300 bytes; a `Found` answer embeds one
/// registration plus its signature.
pub const MAX_SIGNED_BODY: usize = 700;
/// Largest registration body. Eight IPv6 addresses make about 300 bytes;
/// the cap keeps a `Found` answer, which embeds a registration, well inside
/// [`MAX_SIGNED_BODY`].
pub const MAX_REGISTRATION_BODY: usize = 400;
/// Signature label of a client's registration (inside the registry domain).
pub const REGISTRATION_LABEL: &[u8] = b"register\0";
/// Signature label of a registry answer (inside the registry domain).
pub const ANSWER_LABEL: &[u8] = b"answer\0";
/// Largest sealed lookup: a [`LookupRequest`] (about 50 bytes) and its tag.
pub const MAX_SEALED_LOOKUP: usize = 96;
/// Size of every sealed answer's plaintext: a [`SignedAnswer`] padded
/// (`0x80`, then zeros) to this, so found and not-found look alike.
pub const SEALED_ANSWER_PLAINTEXT: usize = 800;
/// Size of every sealed answer: its plaintext and the AEAD tag.
pub const SEALED_ANSWER_LEN: usize = SEALED_ANSWER_PLAINTEXT + crate::proto::crypto::TAG_LEN;

/// A keep-alive token: proves a keep-alive belongs to the registration the
/// registry answered, without a signature per keep-alive.
pub type Token = [u8; 16];

/// One registry datagram, in either direction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Client → registry: "this identity is at these addresses".
    #[serde(rename = "r")]
    Register(SignedRegistration),
    /// Client → registry: "still here", bound to the registration by its token.
    #[serde(rename = "k")]
    KeepAlive {
        peer: PeerId,
        #[serde(with = "serde_bytes")]
        token: Token,
    },
    /// Client → registry: "forget me now" (token-bound like a keep-alive).
    #[serde(rename = "u")]
    Unregister {
        peer: PeerId,
        #[serde(with = "serde_bytes")]
        token: Token,
    },
    /// Client → registry: "where is this peer?", a [`LookupRequest`]
    /// sealed to the registry's key from a fresh ephemeral X25519 key
    /// (`proto::crypto::seal_request`), so only the registry learns whom.
    #[serde(rename = "sl")]
    SealedLookup {
        #[serde(with = "serde_bytes")]
        ephemeral: [u8; 32],
        #[serde(with = "serde_bytes")]
        sealed: Vec<u8>,
    },
    /// Registry → client: the [`SignedAnswer`] to a sealed lookup, padded
    /// to [`SEALED_ANSWER_PLAINTEXT`] and sealed under that lookup's key;
    /// `ephemeral` names the lookup.
    #[serde(rename = "sa")]
    SealedAnswer {
        #[serde(with = "serde_bytes")]
        ephemeral: [u8; 32],
        #[serde(with = "serde_bytes")]
        sealed: Vec<u8>,
    },
    /// Registry → client: a signed [`Answer`].
    #[serde(rename = "a")]
    Answer(SignedAnswer),
    /// Registry → client: the keep-alive was accepted.
    #[serde(rename = "ka")]
    KeepAliveAck {
        peer: PeerId,
        #[serde(with = "serde_bytes")]
        token: Token,
    },
    /// Registry → client: the registry holds no registration with this token
    /// (it restarted, forgot or evicted the entry): register again.
    #[serde(rename = "uk")]
    UnknownPeer {
        peer: PeerId,
        #[serde(with = "serde_bytes")]
        token: Token,
    },
}

/// A [`Registration`]'s encoded bytes and the registering identity's
/// signature over `REGISTRATION_LABEL ‖ body`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRegistration {
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

/// What a client signs when it registers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The identity's Ed25519 public key; the peer id is its blake3 hash.
    #[serde(with = "serde_bytes")]
    pub public_key: [u8; 32],
    /// The registry this registration is meant for, so it cannot be replayed
    /// to another registry.
    #[serde(with = "serde_bytes")]
    pub registry: [u8; 32],
    /// Where the peer can be reached.
    pub addresses: Addresses,
    /// The client's wall clock (Unix milliseconds), strictly increasing per
    /// identity: the registry refuses anything not newer than what it holds.
    pub timestamp_ms: u64,
    /// Random bytes, so two registrations never sign the same message.
    #[serde(with = "serde_bytes")]
    pub nonce: [u8; 16],
}

/// An [`Answer`]'s encoded bytes and the registry's signature over
/// `ANSWER_LABEL ‖ body`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAnswer {
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

/// What a sealed lookup carries: the peer asked for, and a secret query
/// number that pairs the answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupRequest {
    pub peer: PeerId,
    pub query: u64,
}

impl LookupRequest {
    /// The MessagePack encoding that is sealed.
    pub fn emit(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).expect("invariant: a lookup always encodes to MessagePack")
    }

    /// Decodes an opened (so authentic, but still outside) request.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() > MAX_SEALED_LOOKUP {
            return Err(WireError::TooLarge(bytes.len()));
        }
        decode_exact(bytes)
    }

    /// Associated data of a sealed lookup (`b'l'`) or answer (`b'a'`):
    /// the format and the direction. (The ephemeral key beside it is bound
    /// by the key, which derives from it.)
    pub fn aad(direction: u8) -> [u8; 4] {
        [MAGIC[0], MAGIC[1], VERSION, direction]
    }
}

impl SignedAnswer {
    /// The padded plaintext of a sealed answer; `None` if it does not fit
    /// (it always does: answers embed at most one capped registration).
    pub fn padded(&self) -> Option<Vec<u8>> {
        let mut out = rmp_serde::to_vec(self).ok()?;
        if out.len() >= SEALED_ANSWER_PLAINTEXT {
            return None;
        }
        out.push(0x80);
        out.resize(SEALED_ANSWER_PLAINTEXT, 0);
        Some(out)
    }

    /// Decodes an opened sealed answer's plaintext, padding checked.
    pub fn parse_padded(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() != SEALED_ANSWER_PLAINTEXT {
            return Err(WireError::FieldLength {
                field: "answer",
                len: bytes.len(),
            });
        }
        let signed: Self = decode_exact(crate::proto::wire::unpad(bytes)?)?;
        if signed.body.len() > MAX_SIGNED_BODY {
            return Err(WireError::FieldLength {
                field: "body",
                len: signed.body.len(),
            });
        }
        Ok(signed)
    }
}

/// What the registry signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// The registration with this timestamp is held; keep it alive with
    /// `token` every `keepalive_ms`.
    #[serde(rename = "r")]
    Registered {
        peer: PeerId,
        timestamp_ms: u64,
        #[serde(with = "serde_bytes")]
        token: Token,
        keepalive_ms: u64,
    },
    /// The peer's own signed registration, last heard from that long ago.
    #[serde(rename = "f")]
    Found {
        query: u64,
        registration: SignedRegistration,
        last_seen_age_ms: u64,
    },
    /// The peer registered but missed its keep-alives.
    #[serde(rename = "v")]
    Unavailable {
        query: u64,
        peer: PeerId,
        last_seen_age_ms: u64,
    },
    /// The registry holds nothing for this peer.
    #[serde(rename = "n")]
    NotFound { query: u64, peer: PeerId },
}

/// Up to [`MAX_ADDRESSES`] socket addresses, encoded compactly as one byte
/// string: per address a family byte (4 or 6), the IP, the port (big
/// endian) and, for IPv6, the scope id (link-local addresses need it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Addresses(Vec<SocketAddr>);

impl Addresses {
    /// Fails if there are more than [`MAX_ADDRESSES`].
    pub fn new(addresses: Vec<SocketAddr>) -> Result<Self, WireError> {
        if addresses.len() > MAX_ADDRESSES {
            return Err(WireError::FieldLength {
                field: "addresses",
                len: addresses.len(),
            });
        }
        Ok(Self(addresses))
    }

    /// The addresses.
    pub fn as_slice(&self) -> &[SocketAddr] {
        &self.0
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.len() * 23);
        for address in &self.0 {
            match address {
                SocketAddr::V4(v4) => {
                    out.push(4);
                    out.extend_from_slice(&v4.ip().octets());
                    out.extend_from_slice(&v4.port().to_be_bytes());
                }
                SocketAddr::V6(v6) => {
                    out.push(6);
                    out.extend_from_slice(&v6.ip().octets());
                    out.extend_from_slice(&v6.port().to_be_bytes());
                    out.extend_from_slice(&v6.scope_id().to_be_bytes());
                }
            }
        }
        out
    }

    fn decode(mut bytes: &[u8]) -> Result<Self, WireError> {
        let malformed = || WireError::Malformed("bad address list".into());
        let mut out = Vec::new();
        while let Some((&family, rest)) = bytes.split_first() {
            if out.len() == MAX_ADDRESSES {
                return Err(WireError::FieldLength {
                    field: "addresses",
                    len: out.len() + 1,
                });
            }
            let (address, rest) = match family {
                4 if rest.len() >= 6 => {
                    let ip: [u8; 4] = rest[..4].try_into().map_err(|_| malformed())?;
                    let port = u16::from_be_bytes([rest[4], rest[5]]);
                    (
                        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port),
                        &rest[6..],
                    )
                }
                6 if rest.len() >= 22 => {
                    let ip: [u8; 16] = rest[..16].try_into().map_err(|_| malformed())?;
                    let port = u16::from_be_bytes([rest[16], rest[17]]);
                    let scope = u32::from_be_bytes([rest[18], rest[19], rest[20], rest[21]]);
                    let v6 = SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, scope);
                    (SocketAddr::V6(v6), &rest[22..])
                }
                _ => return Err(malformed()),
            };
            out.push(address);
            bytes = rest;
        }
        Ok(Self(out))
    }
}

impl Serialize for Addresses {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.encode())
    }
}

impl<'de> Deserialize<'de> for Addresses {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = serde_bytes::ByteBuf::deserialize(deserializer)?;
        Self::decode(&raw).map_err(serde::de::Error::custom)
    }
}

impl Message {
    /// Encodes the message. Fails only if a field exceeds its cap, which
    /// means a bug in the caller.
    pub fn emit(&self) -> Result<Vec<u8>, WireError> {
        self.validate()?;
        emit_datagram(MAGIC, VERSION, self)
    }

    /// Parses an untrusted datagram. Signed bodies are only size-checked
    /// here; they are decoded after their signature verifies.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let message: Message = decode_exact(datagram_body(bytes, MAGIC, VERSION)?)?;
        message.validate()?;
        Ok(message)
    }

    fn validate(&self) -> Result<(), WireError> {
        let body = match self {
            Message::Register(signed) => &signed.body,
            Message::Answer(signed) => &signed.body,
            Message::SealedLookup { sealed, .. } if sealed.len() > MAX_SEALED_LOOKUP => {
                return Err(WireError::FieldLength {
                    field: "sealed",
                    len: sealed.len(),
                });
            }
            Message::SealedAnswer { sealed, .. } if sealed.len() != SEALED_ANSWER_LEN => {
                return Err(WireError::FieldLength {
                    field: "sealed",
                    len: sealed.len(),
                });
            }
            _ => return Ok(()),
        };
        if body.len() > MAX_SIGNED_BODY {
            return Err(WireError::FieldLength {
                field: "body",
                len: body.len(),
            });
        }
        Ok(())
    }
}

impl Registration {
    /// Encodes the registration for signing.
    pub fn emit(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).expect("invariant: a registration always encodes to MessagePack")
    }

    /// Decodes a registration body (bounded, no trailing bytes).
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        if body.len() > MAX_REGISTRATION_BODY {
            return Err(WireError::TooLarge(body.len()));
        }
        decode_exact(body)
    }

    /// The bytes the registering identity signs.
    pub fn signed_message(body: &[u8]) -> Vec<u8> {
        [REGISTRATION_LABEL, body].concat()
    }
}

impl Answer {
    /// Encodes the answer for signing.
    pub fn emit(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).expect("invariant: an answer always encodes to MessagePack")
    }

    /// Decodes an answer body (bounded, no trailing bytes).
    pub fn parse(body: &[u8]) -> Result<Self, WireError> {
        if body.len() > MAX_SIGNED_BODY {
            return Err(WireError::TooLarge(body.len()));
        }
        decode_exact(body)
    }

    /// The bytes the registry signs.
    pub fn signed_message(body: &[u8]) -> Vec<u8> {
        [ANSWER_LABEL, body].concat()
    }
}
