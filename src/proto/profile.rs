//! Display names: the signed profile record a peer hands its contacts and
//! room members, the rules a name must follow, and how names that collide
//! are told apart on screen.
//!
//! Guarantees:
//! - **Only its owner can name a peer.** A record is signed by the identity
//!   key it names (domain `"kith profile v1\0"`); a receiver checks it
//!   against the key it already holds for the peer, so a record signed by
//!   any other key (or naming another key) is refused.
//! - **Newest wins.** Every record carries a sequence number chosen by its
//!   owner (milliseconds since the epoch, always above the previous one); a
//!   receiver keeps the highest it saw, so an older record replayed later
//!   changes nothing.
//! - **Nothing invisible or misleading.** A name has 1 to
//!   [`MAX_NAME_CHARS`] characters after trimming and holds no control
//!   character, bidi override or isolate, zero-width or otherwise invisible
//!   character, nor the `·` that [`display_labels`] puts before an id
//!   suffix; a record with such a name is refused like a forgery.
//! - **Checked before it is read.** [`SignedProfile::verify`] checks the
//!   length first, then the version, the exact layout and the signature.
//!
//! Record, version 1 (big-endian):
//!
//! ```text
//! version (1) = 1 ‖ public key (32) ‖ seq (8) ‖ name length (2) ‖ name (UTF-8) ‖ signature (64)
//! ```
//!
//! The signature covers every byte before it.

use std::collections::HashMap;

use crate::proto::crypto::{Identity, PublicIdentity};
use crate::proto::ids::PeerId;

/// The record layout's version byte.
pub const PROFILE_VERSION: u8 = 1;

/// Most characters (Unicode scalar values) a display name may have.
pub const MAX_NAME_CHARS: usize = 64;

/// Most bytes of a name's UTF-8 (every character at most 4 bytes).
pub const MAX_NAME_BYTES: usize = 4 * MAX_NAME_CHARS;

/// Bytes of a record before the name.
const HEADER: usize = 1 + 32 + 8 + 2;

/// Bytes of a signature.
const SIGNATURE: usize = 64;

/// Smallest possible record: a one-byte name.
pub const MIN_RECORD: usize = HEADER + 1 + SIGNATURE;

/// Largest possible record.
pub const MAX_RECORD: usize = HEADER + MAX_NAME_BYTES + SIGNATURE;

/// What separates a name from the id suffix that tells two equal names
/// apart (`Sam·3f2a`); no name may hold it.
pub const SUFFIX_SEPARATOR: char = '·';

/// Why a display name is refused, as a sentence for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a display name cannot be empty")]
    Empty,
    #[error("a display name has at most {MAX_NAME_CHARS} characters ({0} given)")]
    TooLong(usize),
    #[error(
        "a display name cannot hold the character U+{:04X} (control, bidi, invisible characters and '·' are refused)",
        u32::from(*.0)
    )]
    Forbidden(char),
}

/// Whether `c` may appear in a display name. Refused: control characters
/// (C0, C1, DEL), the line and paragraph separators, bidi marks,
/// embeddings, overrides and isolates, zero-width and other invisible
/// characters (soft hyphen, joiners, word joiner, invisible operators,
/// byte-order mark, Hangul fillers, the Mongolian vowel separator,
/// combining grapheme joiner, tag characters), and [`SUFFIX_SEPARATOR`].
fn allowed(c: char) -> bool {
    if c.is_control() || c == SUFFIX_SEPARATOR {
        return false;
    }
    !matches!(
        u32::from(c),
        0x00AD              // soft hyphen
        | 0x034F            // combining grapheme joiner
        | 0x061C            // Arabic letter mark
        | 0x115F | 0x1160   // Hangul fillers
        | 0x17B4 | 0x17B5   // Khmer inherent vowels (invisible)
        | 0x180E            // Mongolian vowel separator
        | 0x200B..=0x200F   // zero-width space, (non-)joiner, LRM, RLM
        | 0x2028..=0x202E   // line/paragraph separators, embeddings, overrides
        | 0x2060..=0x2064   // word joiner, invisible operators
        | 0x2066..=0x206F   // isolates, deprecated format characters
        | 0x3164            // Hangul filler
        | 0xFE00..=0xFE0E   // variation selectors (VS16, emoji style, stays)
        | 0xFEFF            // byte-order mark / zero-width no-break space
        | 0xFFA0            // half-width Hangul filler
        | 0xFFF9..=0xFFFB   // interlinear annotation
        | 0xE0000..=0xE007F // tags
    )
}

/// Checks a display name as the user typed it; returns it trimmed.
pub fn check_name(name: &str) -> Result<String, NameError> {
    // Checked before trimming, so a trailing newline is refused rather
    // than quietly dropped.
    if let Some(bad) = name.chars().find(|c| !allowed(*c)) {
        return Err(NameError::Forbidden(bad));
    }
    let trimmed = name.trim();
    let chars = trimmed.chars().count();
    if chars == 0 {
        return Err(NameError::Empty);
    }
    if chars > MAX_NAME_CHARS {
        return Err(NameError::TooLong(chars));
    }
    Ok(trimmed.to_owned())
}

/// A peer's profile, as its record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Whose: the peer id of the signing key.
    pub peer: PeerId,
    /// Newest wins.
    pub seq: u64,
    /// The display name (checked by [`check_name`]).
    pub name: String,
}

/// Why a record is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("profile record of {0} bytes is outside the allowed sizes")]
    BadLength(usize),
    #[error("profile record version {0} is not supported")]
    UnknownVersion(u8),
    #[error("profile record layout is malformed")]
    Malformed,
    #[error("profile name refused: {0}")]
    BadName(NameError),
    /// Signed by another key than the one it must be, or not signed at all.
    #[error("profile record is not signed by its peer")]
    Forged,
}

impl ProfileError {
    /// Whether the record is well formed but not its peer's own: a forgery
    /// (or a record about someone else).
    pub fn is_forgery(&self) -> bool {
        matches!(self, ProfileError::Forged)
    }
}

/// A signed profile record and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedProfile {
    pub profile: Profile,
    /// The record as signed and sent.
    pub bytes: Vec<u8>,
}

impl SignedProfile {
    /// Signs `name` (checked first) as `identity`'s profile number `seq`.
    pub fn sign(identity: &Identity, seq: u64, name: &str) -> Result<Self, NameError> {
        let name = check_name(name)?;
        let mut bytes = Vec::with_capacity(HEADER + name.len() + SIGNATURE);
        bytes.push(PROFILE_VERSION);
        bytes.extend_from_slice(&identity.public().to_bytes());
        bytes.extend_from_slice(&seq.to_be_bytes());
        // `check_name` bounds the name to MAX_NAME_BYTES, well below u16.
        let len = u16::try_from(name.len()).expect("a checked name fits in u16");
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(name.as_bytes());
        let signature = identity.sign_profile(&bytes);
        bytes.extend_from_slice(&signature);
        Ok(SignedProfile {
            profile: Profile {
                peer: identity.peer_id(),
                seq,
                name,
            },
            bytes,
        })
    }

    /// Parses an untrusted record and checks that `signer` signed it about
    /// itself. Never panics.
    pub fn verify(bytes: &[u8], signer: &PublicIdentity) -> Result<Self, ProfileError> {
        if !(MIN_RECORD..=MAX_RECORD).contains(&bytes.len()) {
            return Err(ProfileError::BadLength(bytes.len()));
        }
        let (signed, signature) = bytes.split_at(bytes.len() - SIGNATURE);
        let (&version, rest) = signed.split_first().ok_or(ProfileError::Malformed)?;
        if version != PROFILE_VERSION {
            return Err(ProfileError::UnknownVersion(version));
        }
        let (key, rest) = rest
            .split_first_chunk::<32>()
            .ok_or(ProfileError::Malformed)?;
        let (seq, rest) = rest
            .split_first_chunk::<8>()
            .ok_or(ProfileError::Malformed)?;
        let (len, name) = rest
            .split_first_chunk::<2>()
            .ok_or(ProfileError::Malformed)?;
        if usize::from(u16::from_be_bytes(*len)) != name.len() {
            return Err(ProfileError::Malformed);
        }
        // The layout is complete: whose it is comes before what it says.
        let signature: &[u8; 64] = signature.try_into().map_err(|_| ProfileError::Malformed)?;
        if *key != signer.to_bytes() || !signer.verify_profile(signed, signature) {
            return Err(ProfileError::Forged);
        }
        let name = std::str::from_utf8(name).map_err(|_| ProfileError::Malformed)?;
        let checked = check_name(name).map_err(ProfileError::BadName)?;
        if checked != name {
            // Untrimmed: no honest signer makes one.
            return Err(ProfileError::BadName(NameError::Forbidden(' ')));
        }
        Ok(SignedProfile {
            profile: Profile {
                peer: signer.peer_id(),
                seq: u64::from_be_bytes(*seq),
                name: checked,
            },
            bytes: bytes.to_vec(),
        })
    }
}

/// A name known for a peer, for [`display_labels`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownName<'a> {
    pub peer: PeerId,
    pub name: &'a str,
    /// From its signed profile (or our own); `false` for a hint (an mDNS
    /// instance name anyone could announce).
    pub signed: bool,
}

/// Shortest hex suffix shown after a name.
const MIN_SUFFIX: usize = 4;

/// How each peer is shown, given every name known: a signed name alone
/// when no other known peer has the same name (compared case-insensitively),
/// else the name, [`SUFFIX_SEPARATOR`] and the shortest prefix of the
/// peer id's hex (4 digits or more) that no other peer of that name shares
/// (`Sam·3f2a`). A hint (unsigned) always carries its suffix and a leading
/// `~`, so it can never pass for a signed name. Pure: the same names give
/// the same labels, whatever their order.
pub fn display_labels(known: &[KnownName<'_>]) -> HashMap<PeerId, String> {
    let mut by_name: HashMap<String, Vec<&KnownName<'_>>> = HashMap::new();
    for entry in known {
        by_name
            .entry(entry.name.to_lowercase())
            .or_default()
            .push(entry);
    }
    let mut labels = HashMap::with_capacity(known.len());
    for group in by_name.values() {
        let hexes: Vec<String> = group.iter().map(|e| e.peer.to_hex()).collect();
        for (entry, hex) in group.iter().zip(&hexes) {
            let alone = group.iter().all(|other| other.peer == entry.peer);
            let label = if entry.signed && alone {
                entry.name.to_owned()
            } else {
                let mut len = MIN_SUFFIX;
                while len < hex.len()
                    && hexes
                        .iter()
                        .any(|other| other != hex && other[..len] == hex[..len])
                {
                    len += 1;
                }
                let tilde = if entry.signed { "" } else { "~" };
                format!("{tilde}{}{SUFFIX_SEPARATOR}{}", entry.name, &hex[..len])
            };
            labels.insert(entry.peer, label);
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn identity(seed: u64) -> Identity {
        Identity::generate(&mut StdRng::seed_from_u64(seed))
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(check_name("  Sam  "), Ok("Sam".to_owned()));
        assert_eq!(check_name("Zoë 🦀 李"), Ok("Zoë 🦀 李".to_owned()));
        assert_eq!(check_name("   "), Err(NameError::Empty));
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert_eq!(check_name(&"a".repeat(64)), Ok("a".repeat(64)));
        assert_eq!(check_name(&"a".repeat(65)), Err(NameError::TooLong(65)));
        // Characters, not bytes: 64 four-byte characters fit.
        assert!(check_name(&"🦀".repeat(64)).is_ok());
    }

    #[test]
    fn control_bidi_and_invisible_characters_are_refused() {
        for bad in [
            "Sam\n",
            "Sa\tm",
            "Sam\u{0}",
            "Sam\u{7f}",
            "Sam\u{85}",
            "\u{202e}maS",
            "Sam\u{2066}",
            "Sam\u{2069}",
            "Sa\u{200b}m",
            "Sa\u{200d}m",
            "Sa\u{2060}m",
            "\u{feff}Sam",
            "Sa\u{ad}m",
            "Sam\u{200f}",
            "Sam\u{061c}",
            "Sam\u{3164}",
            "Sam\u{e0041}",
            "Sam·3f2a",
            "Sam\u{2028}",
        ] {
            let refused = check_name(bad);
            assert!(
                matches!(refused, Err(NameError::Forbidden(_))),
                "{bad:?} accepted: {refused:?}"
            );
            assert!(refused.unwrap_err().to_string().contains("U+"));
        }
        // Text that only happens to sit near those ranges is fine.
        assert!(check_name("Ünïcödé ‘quoted’ – dash").is_ok());
    }

    #[test]
    fn records_round_trip_and_only_the_owner_can_sign_one() {
        let (alice, mallory) = (identity(1), identity(2));
        let record = SignedProfile::sign(&alice, 7, " Alice ").expect("a good name");
        assert_eq!(record.profile.name, "Alice");
        assert_eq!(record.profile.peer, alice.peer_id());
        let parsed = SignedProfile::verify(&record.bytes, &alice.public()).expect("authentic");
        assert_eq!(parsed, record);
        // Someone else's key: refused as a forgery, whoever it claims.
        assert_eq!(
            SignedProfile::verify(&record.bytes, &mallory.public()),
            Err(ProfileError::Forged)
        );
        let forged = SignedProfile::sign(&mallory, 8, "Alice").expect("a good name");
        assert_eq!(
            SignedProfile::verify(&forged.bytes, &alice.public()),
            Err(ProfileError::Forged)
        );
        // Alice's key in the record, Mallory's signature.
        let mut spliced = record.bytes.clone();
        let len = spliced.len();
        spliced[len - 64..].copy_from_slice(&forged.bytes[forged.bytes.len() - 64..]);
        assert_eq!(
            SignedProfile::verify(&spliced, &alice.public()),
            Err(ProfileError::Forged)
        );
        // Every bit flip is refused.
        for i in 0..record.bytes.len() {
            let mut flipped = record.bytes.clone();
            flipped[i] ^= 0x01;
            assert!(SignedProfile::verify(&flipped, &alice.public()).is_err());
        }
        // Lengths outside the bounds, wrong versions and cut records.
        assert!(matches!(
            SignedProfile::verify(&[], &alice.public()),
            Err(ProfileError::BadLength(0))
        ));
        assert!(matches!(
            SignedProfile::verify(&vec![1; MAX_RECORD + 1], &alice.public()),
            Err(ProfileError::BadLength(_))
        ));
        let mut future = record.bytes.clone();
        future[0] = 2;
        assert_eq!(
            SignedProfile::verify(&future, &alice.public()),
            Err(ProfileError::UnknownVersion(2))
        );
        let cut = &record.bytes[..record.bytes.len() - 1];
        assert!(SignedProfile::verify(cut, &alice.public()).is_err());
    }

    #[test]
    fn a_signed_record_with_a_forbidden_name_is_refused() {
        // A modified client could sign anything: the receiver checks too.
        let alice = identity(1);
        let mut bytes = vec![PROFILE_VERSION];
        bytes.extend_from_slice(&alice.public().to_bytes());
        bytes.extend_from_slice(&1u64.to_be_bytes());
        let name = "\u{202e}ecilA";
        bytes.extend_from_slice(&(name.len() as u16).to_be_bytes());
        bytes.extend_from_slice(name.as_bytes());
        let signature = alice.sign_profile(&bytes);
        bytes.extend_from_slice(&signature);
        assert!(matches!(
            SignedProfile::verify(&bytes, &alice.public()),
            Err(ProfileError::BadName(NameError::Forbidden('\u{202e}')))
        ));
    }

    fn peer(first: u8, second: u8) -> PeerId {
        let mut id = [0x11; 32];
        id[0] = first;
        id[1] = second;
        PeerId(id)
    }

    fn signed(peer: PeerId, name: &str) -> KnownName<'_> {
        KnownName {
            peer,
            name,
            signed: true,
        }
    }

    #[test]
    fn equal_names_are_told_apart_by_the_shortest_unique_suffix() {
        let (sam1, sam2, alice) = (peer(0x3f, 0x2a), peer(0x9c, 0x01), peer(0x01, 0x02));
        let labels = display_labels(&[
            signed(sam1, "Sam"),
            signed(sam2, "sam"),
            signed(alice, "Alice"),
        ]);
        assert_eq!(labels[&alice], "Alice");
        assert_eq!(labels[&sam1], "Sam·3f2a");
        assert_eq!(labels[&sam2], "sam·9c01");
        // Same first four digits: the suffix grows until it differs.
        let (a, b) = (peer(0x3f, 0x2a), {
            let mut id = [0x11; 32];
            id[0] = 0x3f;
            id[1] = 0x2a;
            id[2] = 0x99;
            PeerId(id)
        });
        let labels = display_labels(&[signed(a, "Sam"), signed(b, "Sam")]);
        assert_eq!(labels[&a], "Sam·3f2a1");
        assert_eq!(labels[&b], "Sam·3f2a9");
        // Order does not matter.
        let reversed = display_labels(&[signed(b, "Sam"), signed(a, "Sam")]);
        assert_eq!(labels, reversed);
    }

    #[test]
    fn hints_always_show_they_are_hints() {
        let (sam, hint) = (peer(0x3f, 0x2a), peer(0x9c, 0x01));
        let labels = display_labels(&[
            signed(sam, "Sam"),
            KnownName {
                peer: hint,
                name: "Sam",
                signed: false,
            },
        ]);
        assert_eq!(labels[&sam], "Sam·3f2a");
        assert_eq!(labels[&hint], "~Sam·9c01");
        let alone = display_labels(&[KnownName {
            peer: hint,
            name: "Bob",
            signed: false,
        }]);
        assert_eq!(alone[&hint], "~Bob·9c01");
    }
}
