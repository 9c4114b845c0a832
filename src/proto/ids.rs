//! Fixed-size identifiers: peers, rooms and messages.
//!
//! All three are 32-byte blake3 outputs, so they are uniformly distributed
//! and safe to compare and order byte-wise.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(#[serde(with = "serde_bytes")] pub [u8; 32]);

        impl $name {
            /// The raw 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Lower-case hex, 64 characters.
            pub fn to_hex(&self) -> String {
                to_hex(&self.0)
            }

            /// Parses 64 hex characters; `None` for anything else.
            pub fn from_hex(text: &str) -> Option<Self> {
                from_hex32(text).map(Self)
            }

            /// The first 8 hex characters: enough to tell ids apart in logs
            /// and lists, never enough to verify anything.
            pub fn short(&self) -> String {
                to_hex(&self.0[..4])
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.short())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

id_type!(
    /// A peer: blake3 of its Ed25519 public key.
    PeerId
);
id_type!(
    /// A room (a 1:1 chat is a room of two): blake3 over its creation record.
    RoomId
);
id_type!(
    /// A message: blake3 of its signed envelope, so an id names exactly one
    /// byte string and nobody can make two different messages share an id.
    MessageId
);
id_type!(
    /// A shared file: blake3 of its plaintext content.
    FileHash
);

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    out
}

fn from_hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let high = (pair[0] as char).to_digit(16)?;
        let low = (pair[1] as char).to_digit(16)?;
        // Both digits are < 16, so the value fits a byte.
        *slot = (high * 16 + low) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = PeerId(*blake3::hash(b"x").as_bytes());
        assert_eq!(PeerId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(id.short().len(), 8);
        assert!(id.to_hex().starts_with(&id.short()));
    }

    #[test]
    fn bad_hex_is_rejected() {
        assert_eq!(PeerId::from_hex(""), None);
        assert_eq!(PeerId::from_hex(&"g".repeat(64)), None);
        assert_eq!(PeerId::from_hex(&"a".repeat(63)), None);
        assert_eq!(PeerId::from_hex(&"é".repeat(32)), None);
    }
}
