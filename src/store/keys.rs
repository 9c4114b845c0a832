//! The store's key schedule and its key file.
//!
//! ```text
//! passphrase ──Argon2id(salt, KdfParams)──▶ master key (32 B)
//!   master ──▶ SQLCipher raw key        (whole-file encryption: pages, WAL)
//!   master ──blake3 derive_key──▶ verifier      (tells "wrong passphrase" apart from "corrupt file")
//!   master ──blake3 derive_key──▶ wrap key      (seals the room keyring in the key file)
//!   master ──blake3 derive_key──▶ identity key  (seals the Ed25519 secret inside the database)
//! room key (32 random bytes per room) seals message bodies, envelopes and group keys of that room
//! ```
//!
//! Room keys are random, not derived: a key derived from the master key and
//! the room id could be derived again after "delete chat", which would make
//! deletion meaningless. They live in the *key file* next to the database
//! (`<db>.keys`), sealed under the wrap key, and not in the database itself:
//! an old copy of the database file (a backup, or a freed page that was not
//! overwritten yet) must not contain anything that unlocks a deleted chat.
//! Deleting a chat rewrites the key file without that room's key.
//!
//! Key file layout (version 1), all integers little-endian:
//!
//! ```text
//! magic "KITHKEYS" | version u8 = 1 | m_cost u32 | t_cost u32 | p_cost u32
//! | salt [16] | verifier [32] | nonce [24] | sealed keyring (rest of file)
//! ```
//!
//! The sealed keyring authenticates everything before it as associated data,
//! so a tampered header fails to open. Its plaintext is `count u32` followed by
//! `count` records of `room id [32] | room key [32]`.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::StoreError;
use crate::proto::ids::RoomId;

const MAGIC: &[u8; 8] = b"KITHKEYS";
const VERSION: u8 = 1;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes before the sealed keyring: magic, version, three params, salt, verifier.
const HEADER_LEN: usize = 8 + 1 + 12 + SALT_LEN + 32;
const RECORD_LEN: usize = 64;

/// Argon2id cost parameters used to turn the passphrase into the master key.
///
/// The parameters a store was created with are recorded in its key file, so
/// opening always uses the same ones; changing the default later does not
/// lock anybody out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Passes over the memory.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// Production parameters: 64 MiB, 3 passes, 1 lane (RFC 9106's second
    /// recommended option). About 0.1 s on the reference machine.
    fn default() -> Self {
        Self {
            m_cost: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

impl KdfParams {
    /// The cheapest parameters Argon2 accepts. Only for tests that open a
    /// store many times; they give no protection against guessing.
    pub fn insecure_fast_for_tests() -> Self {
        Self {
            m_cost: 8,
            t_cost: 1,
            p_cost: 1,
        }
    }

    /// Rejects parameters read from a damaged or hostile key file before they
    /// can make us allocate gigabytes or spin for minutes; the error says why.
    fn check_sane(self) -> Result<Self, &'static str> {
        let sane = (8..=4 * 1024 * 1024).contains(&self.m_cost)
            && (1..=64).contains(&self.t_cost)
            && (1..=16).contains(&self.p_cost)
            && self.m_cost >= 8 * self.p_cost;
        if sane {
            Ok(self)
        } else {
            Err("its key derivation parameters are implausible")
        }
    }
}

/// A 32-byte secret that is wiped from memory when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct SecretKey(pub(crate) [u8; 32]);

impl SecretKey {
    pub(crate) fn random() -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        Self(key)
    }

    pub(crate) fn derive(&self, context: &str) -> SecretKey {
        SecretKey(blake3::derive_key(context, &self.0))
    }

    /// Seals `plaintext` with a fresh random nonce; output is `nonce | ciphertext | tag`.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let cipher = XChaCha20Poly1305::new(&self.0.into());
        let sealed = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // XChaCha20-Poly1305 only fails for plaintexts beyond 256 GiB.
            .expect("invariant: plaintext is far below the AEAD size limit");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Reads the plaintext of what [`SecretKey::seal`] produced from its
    /// start *without checking its tag*: only for deciding which sealed
    /// values are worth opening (search), never for anything shown or
    /// kept; [`SecretKey::open`] checks what is kept. (The rows it reads
    /// come through SQLCipher, whose pages are authenticated.) `None` if
    /// `sealed` is too short to be sealed at all.
    pub(crate) fn unverified_reader<'a>(&self, sealed: &'a [u8]) -> Option<UnverifiedReader<'a>> {
        use chacha20::cipher::{KeyIvInit, StreamCipherSeek};
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let nonce = chacha20::XNonce::try_from(nonce).ok()?;
        let mut cipher = chacha20::XChaCha20::new(&self.0.into(), &nonce);
        // XChaCha20-Poly1305 takes block 0 for the Poly1305 key and
        // encrypts from block 1 on.
        cipher.seek(64u64);
        Some(UnverifiedReader {
            cipher,
            rest: &rest[..rest.len() - TAG_LEN],
        })
    }

    /// Opens what [`SecretKey::seal`] produced; `None` if the key, the
    /// associated data or any byte is wrong.
    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).ok()?;
        let cipher = XChaCha20Poly1305::new(&self.0.into());
        cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .ok()
            .map(Zeroizing::new)
    }
}

/// See [`SecretKey::unverified_reader`].
pub(crate) struct UnverifiedReader<'a> {
    cipher: chacha20::XChaCha20,
    /// Ciphertext not read yet (the tag left off).
    rest: &'a [u8],
}

impl UnverifiedReader<'_> {
    /// Replaces `out` with the next `len` bytes of plaintext; `false` (and
    /// `out` empty) if fewer are left.
    pub(crate) fn read(&mut self, len: usize, out: &mut Vec<u8>) -> bool {
        use chacha20::cipher::StreamCipher;
        out.clear();
        let Some((now, later)) = self.rest.split_at_checked(len) else {
            return false;
        };
        out.extend_from_slice(now);
        self.cipher.apply_keystream(out);
        self.rest = later;
        true
    }
}

/// Everything derived from the passphrase.
pub(crate) struct MasterKeys {
    pub(super) master: SecretKey,
    pub(super) wrap: SecretKey,
    pub(crate) identity: SecretKey,
}

impl MasterKeys {
    fn derive(
        passphrase: &str,
        salt: &[u8; SALT_LEN],
        params: KdfParams,
    ) -> Result<Self, &'static str> {
        let argon_params =
            argon2::Params::new(params.m_cost, params.t_cost, params.p_cost, Some(32))
                .map_err(|_| "its key derivation parameters are invalid")?;
        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon_params,
        );
        let mut master = SecretKey([0u8; 32]);
        argon
            .hash_password_into(passphrase.as_bytes(), salt, &mut master.0)
            .map_err(|_| "key derivation failed with its parameters")?;
        Ok(Self {
            wrap: master.derive("kith store keyring wrap v1"),
            identity: master.derive("kith store identity seal v1"),
            master,
        })
    }

    fn verifier(&self) -> [u8; 32] {
        blake3::derive_key("kith store passphrase verifier v1", &self.master.0)
    }

    /// The SQL statement that hands the master key to SQLCipher as a raw key
    /// (SQLCipher then skips its own PBKDF2, Argon2id already did that job).
    pub(crate) fn sqlcipher_key_pragma(&self) -> Zeroizing<String> {
        let mut hex = Zeroizing::new(String::with_capacity(64));
        for byte in self.master.0 {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            hex.push(DIGITS[usize::from(byte >> 4)] as char);
            hex.push(DIGITS[usize::from(byte & 0x0f)] as char);
        }
        Zeroizing::new(format!("PRAGMA key = \"x'{}'\";", hex.as_str()))
    }
}

/// The key file's unsealed content, held by an open store.
pub(crate) struct KeyFile {
    path: PathBuf,
    params: KdfParams,
    salt: [u8; SALT_LEN],
    pub(crate) keys: MasterKeys,
    /// Storage key of every room that has one.
    pub(crate) rooms: HashMap<RoomId, SecretKey>,
}

/// Where the key file of the database at `db` lives: `<db>.keys`.
pub fn key_file_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".keys");
    PathBuf::from(name)
}

impl KeyFile {
    /// Makes a new key file for a new store. Fails if one exists already.
    pub(crate) fn create(
        db: &Path,
        passphrase: &str,
        params: KdfParams,
    ) -> Result<Self, StoreError> {
        let params = params.check_sane().map_err(StoreError::BadKdfParams)?;
        let path = key_file_path(db);
        if path.exists() {
            return Err(StoreError::AlreadyExists(path));
        }
        let mut salt = [0u8; SALT_LEN];
        rand::fill(&mut salt);
        let keys =
            MasterKeys::derive(passphrase, &salt, params).map_err(StoreError::BadKdfParams)?;
        let file = Self {
            path,
            params,
            salt,
            keys,
            rooms: HashMap::new(),
        };
        file.save()?;
        Ok(file)
    }

    /// Reads the key file of the store at `db` and unlocks it with `passphrase`.
    ///
    /// A file that cannot be parsed (cut short, not starting with the
    /// magic, an impossible version or parameters, a keyring that does not
    /// authenticate under the right passphrase) is
    /// [`StoreError::DamagedKeyFile`]; only a passphrase that does not
    /// match the verifier is [`StoreError::WrongPassphrase`]. (Damage to the
    /// salt or the verifier looks exactly like a wrong passphrase: the
    /// format has no checksum of its own to tell them apart.)
    pub(crate) fn open(db: &Path, passphrase: &str) -> Result<Self, StoreError> {
        let path = key_file_path(db);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotAKithStore(db.to_owned()));
            }
            Err(error) => return Err(super::file_error("key file", path, error)),
        };
        let damaged = |reason: &'static str| StoreError::DamagedKeyFile {
            path: path.clone(),
            reason,
        };
        if bytes.get(..MAGIC.len()) != Some(MAGIC.as_slice()) {
            return Err(damaged("it does not start with a kith key file header"));
        }
        match bytes.get(MAGIC.len()) {
            None => return Err(damaged("it is cut short")),
            Some(&VERSION) => {}
            // No key file ever had version 0.
            Some(0) => return Err(damaged("its version byte is 0")),
            Some(&newer) => return Err(StoreError::UnsupportedKeyFileVersion(newer)),
        }
        // The sealed keyring is `count` and whole records, so the length
        // alone tells most damage apart from a wrong passphrase.
        let empty = HEADER_LEN + NONCE_LEN + 4 + TAG_LEN;
        if bytes.len() < empty {
            return Err(damaged("it is cut short"));
        }
        if !(bytes.len() - empty).is_multiple_of(RECORD_LEN) {
            return Err(damaged("its length does not fit its format"));
        }
        // The length check above covers every fixed offset below.
        let u32_at = |at: usize| {
            let mut word = [0u8; 4];
            word.copy_from_slice(&bytes[at..at + 4]);
            u32::from_le_bytes(word)
        };
        let params = KdfParams {
            m_cost: u32_at(9),
            t_cost: u32_at(13),
            p_cost: u32_at(17),
        }
        .check_sane()
        .map_err(damaged)?;
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&bytes[21..21 + SALT_LEN]);
        let stored_verifier = &bytes[21 + SALT_LEN..HEADER_LEN];

        let keys = MasterKeys::derive(passphrase, &salt, params).map_err(damaged)?;
        // A mismatch means the passphrase is wrong (or, far less likely, the
        // salt or verifier bytes were damaged, which looks the same). We stop
        // before touching the database either way.
        if !constant_time_eq(&keys.verifier(), stored_verifier) {
            return Err(StoreError::WrongPassphrase);
        }
        let keyring = keys
            .wrap
            .open(&bytes[..HEADER_LEN], &bytes[HEADER_LEN..])
            .ok_or_else(|| damaged("its room keyring does not authenticate"))?;
        let rooms = parse_keyring(&keyring).map_err(damaged)?;
        Ok(Self {
            path,
            params,
            salt,
            keys,
            rooms,
        })
    }

    /// Writes the key file atomically: a temporary file is synced, renamed
    /// over the old one, and the directory is synced, so a crash leaves
    /// either the old or the new keyring, never a torn one.
    pub(crate) fn save(&self) -> Result<(), StoreError> {
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.push(VERSION);
        header.extend_from_slice(&self.params.m_cost.to_le_bytes());
        header.extend_from_slice(&self.params.t_cost.to_le_bytes());
        header.extend_from_slice(&self.params.p_cost.to_le_bytes());
        header.extend_from_slice(&self.salt);
        header.extend_from_slice(&self.keys.verifier());
        debug_assert_eq!(header.len(), HEADER_LEN);

        let mut keyring = Zeroizing::new(Vec::with_capacity(4 + self.rooms.len() * RECORD_LEN));
        let count = u32::try_from(self.rooms.len())
            .map_err(|_| StoreError::TooLarge("keyring of more than 4 billion rooms"))?;
        keyring.extend_from_slice(&count.to_le_bytes());
        for (room, key) in &self.rooms {
            keyring.extend_from_slice(room.as_bytes());
            keyring.extend_from_slice(&key.0);
        }
        let sealed = self.keys.wrap.seal(&header, &keyring);

        let mut tmp_name = self.path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        {
            // A temporary file left by a crash may have another mode; a new
            // one is created owner-only, and the rename keeps that mode.
            match fs::remove_file(&tmp) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err.into()),
                _ => {}
            }
            let mut file = super::owner_only()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            file.write_all(&header)?;
            file.write_all(&sealed)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            // Syncing the directory makes the rename itself durable.
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

fn parse_keyring(plain: &[u8]) -> Result<HashMap<RoomId, SecretKey>, &'static str> {
    let bad = "its room keyring is malformed";
    let Some((count, records)) = plain.split_first_chunk::<4>() else {
        return Err(bad);
    };
    let count = u32::from_le_bytes(*count) as usize;
    if records.len()
        != count
            .checked_mul(RECORD_LEN)
            .ok_or("its room keyring count overflows")?
    {
        return Err(bad);
    }
    let mut rooms = HashMap::with_capacity(count);
    for record in records.chunks_exact(RECORD_LEN) {
        let (room, key) = record.split_at(32);
        let mut room_id = [0u8; 32];
        room_id.copy_from_slice(room);
        let mut secret = SecretKey([0u8; 32]);
        secret.0.copy_from_slice(key);
        rooms.insert(RoomId(room_id), secret);
    }
    Ok(rooms)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unverified_reads_give_the_sealed_plaintext() {
        let key = SecretKey::random();
        let plain: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        let sealed = key.seal(b"aad", &plain);
        let mut reader = key.unverified_reader(&sealed).expect("long enough");
        let mut out = Vec::new();
        assert!(reader.read(4, &mut out));
        assert_eq!(out, plain[..4]);
        assert!(reader.read(200, &mut out));
        assert_eq!(out, plain[4..204]);
        assert!(reader.read(96, &mut out));
        assert_eq!(out, plain[204..]);
        assert!(!reader.read(1, &mut out), "the tag is not plaintext");
        assert!(
            key.unverified_reader(&sealed[..NONCE_LEN + TAG_LEN - 1])
                .is_none()
        );
    }

    #[test]
    fn seal_open_round_trip_and_negative_cases() {
        let key = SecretKey::random();
        let sealed = key.seal(b"aad", b"hello");
        assert_eq!(
            key.open(b"aad", &sealed).as_deref().map(Vec::as_slice),
            Some(&b"hello"[..])
        );
        assert!(key.open(b"other", &sealed).is_none());
        assert!(SecretKey::random().open(b"aad", &sealed).is_none());
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        assert!(key.open(b"aad", &flipped).is_none());
        assert!(key.open(b"aad", &sealed[..10]).is_none());
    }

    #[test]
    fn default_params_are_production_strength() {
        let params = KdfParams::default();
        assert_eq!((params.m_cost, params.t_cost, params.p_cost), (65536, 3, 1));
        assert!(params.check_sane().is_ok());
        assert!(KdfParams::insecure_fast_for_tests().check_sane().is_ok());
        let absurd = KdfParams {
            m_cost: u32::MAX,
            ..params
        };
        assert!(absurd.check_sane().is_err());
    }

    #[test]
    fn keyring_parse_rejects_bad_lengths() {
        assert!(parse_keyring(&[]).is_err());
        assert!(parse_keyring(&[1, 0, 0, 0]).is_err());
        assert!(parse_keyring(&[0, 0, 0, 0]).unwrap().is_empty());
        let mut one = vec![1, 0, 0, 0];
        one.extend_from_slice(&[7u8; 64]);
        assert_eq!(parse_keyring(&one).unwrap().len(), 1);
    }
}
