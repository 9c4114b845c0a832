//! Reads the store's files as someone holding its passphrase would: every
//! page of the database and of its WAL decrypted with the SQLCipher key,
//! free pages and old WAL frames included (what SQL no longer shows).

use std::path::Path;

/// SQLCipher 4's page layout: 4096-byte pages, each ending in a 16-byte
/// IV and an HMAC, the two rounded up to the AES block (48 bytes with
/// HMAC-SHA256, 80 with SHA-512). Page 1 starts with the 16-byte salt
/// in the clear.
const PAGE: usize = 4096;
const SALT: usize = 16;
const WAL_HEADER: usize = 32;
const FRAME_HEADER: usize = 24;

/// The raw SQLCipher key of an open store.
pub fn key(store: &super::Store) -> [u8; 32] {
    let pragma = store.keys.keys.sqlcipher_key_pragma();
    let hex = pragma
        .split("x'")
        .nth(1)
        .and_then(|rest| rest.get(..64))
        .expect("the key pragma holds 64 hex digits");
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    key
}

fn aes_256_cbc_decrypt(key: &[u8; 32], iv: &[u8], data: &[u8]) -> Vec<u8> {
    use openssl_sys as ffi;
    assert_eq!(data.len() % 16, 0);
    let mut out = vec![0u8; data.len() + 16];
    let mut written = 0;
    // SAFETY: a fresh cipher context used and freed here; every buffer
    // outlives the calls, `out` has room for the input plus a block as
    // EVP_DecryptUpdate requires, and the lengths fit a c_int (pages).
    unsafe {
        let ctx = ffi::EVP_CIPHER_CTX_new();
        assert!(!ctx.is_null());
        assert_eq!(
            ffi::EVP_DecryptInit_ex(
                ctx,
                ffi::EVP_aes_256_cbc(),
                std::ptr::null_mut(),
                key.as_ptr(),
                iv.as_ptr()
            ),
            1
        );
        ffi::EVP_CIPHER_CTX_set_padding(ctx, 0);
        assert_eq!(
            ffi::EVP_DecryptUpdate(
                ctx,
                out.as_mut_ptr(),
                &mut written,
                data.as_ptr(),
                data.len() as i32
            ),
            1
        );
        ffi::EVP_CIPHER_CTX_free(ctx);
    }
    out.truncate(written as usize);
    out
}

/// One encrypted page, decrypted (page 1's salt kept in front).
fn decrypt_page(key: &[u8; 32], page: &[u8], first: bool, reserved: usize) -> Vec<u8> {
    let offset = if first { SALT } else { 0 };
    let iv = &page[PAGE - reserved..PAGE - reserved + 16];
    let mut plain = page[..offset].to_vec();
    plain.extend(aes_256_cbc_decrypt(key, iv, &page[offset..PAGE - reserved]));
    plain
}

/// Every page of the database file and every frame of its WAL,
/// decrypted. Checks that page 1 decrypts to SQLite's header fields,
/// so a wrong key or layout fails here instead of finding nothing.
pub fn pages(db: &Path, key: &[u8; 32]) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(db).unwrap();
    assert_eq!(bytes.len() % PAGE, 0);
    // The reserved size that decrypts page 1 to SQLite's header: page
    // size 4096 and the payload fractions every database has (64, 32,
    // 32), which a wrong key or layout does not give.
    let reserved = [48, 80]
        .into_iter()
        .find(|reserved| {
            let first = decrypt_page(key, &bytes[..PAGE], true, *reserved);
            first[16..18] == [0x10, 0x00] && first[21..24] == [64, 32, 32]
        })
        .expect("page 1 decrypts to SQLite's header");
    let mut pages: Vec<Vec<u8>> = bytes
        .chunks(PAGE)
        .enumerate()
        .map(|(i, page)| decrypt_page(key, page, i == 0, reserved))
        .collect();
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    if let Ok(wal) = std::fs::read(wal) {
        for frame in wal
            .get(WAL_HEADER..)
            .unwrap_or(&[])
            .chunks(FRAME_HEADER + PAGE)
        {
            if frame.len() < FRAME_HEADER + PAGE {
                break;
            }
            let pgno = u32::from_be_bytes(frame[..4].try_into().unwrap());
            pages.push(decrypt_page(
                key,
                &frame[FRAME_HEADER..],
                pgno == 1,
                reserved,
            ));
        }
    }
    pages
}

/// Every 16 bytes at any offset of any page, to look bytes up fast.
pub struct Index(std::collections::HashSet<[u8; 16]>);

impl Index {
    pub fn new(pages: &[Vec<u8>]) -> Index {
        Index(
            pages
                .iter()
                .flat_map(|page| page.windows(16))
                .map(|w| w.try_into().unwrap())
                .collect(),
        )
    }

    /// Whether some page holds the first 16 bytes of `needle`.
    pub fn found(&self, needle: &[u8]) -> bool {
        let head: [u8; 16] = needle[..16].try_into().unwrap();
        self.0.contains(&head)
    }
}
