//! The bytes of shared files, outside the database: one file per content
//! hash under `<db>.files/`, encrypted at rest.
//!
//! Guarantees:
//! - **Encrypted.** A blob is a row of fixed-size slots, one per chunk
//!   (`proto::files::CHUNK_SIZE` bytes of plaintext): each slot is the
//!   chunk sealed with XChaCha20-Poly1305 under a key derived from the
//!   store's master key, a random nonce, and the hash and chunk index as
//!   associated data (a slot cannot be moved to another place or file).
//! - **Complete means checked.** A file being fetched lives in
//!   `<hex>.part`; only when the blake3 of all its chunks equals the hash is
//!   it synced and renamed to `<hex>`. A crash or a full disk leaves at most
//!   a `.part`, never a wrong complete blob.
//! - **Resumable.** A `.part` is sparse: a slot never written does not
//!   open, so the chunks already stored are found again after a restart.
//! - **Private.** The directory is 0700 and every blob 0600, as the rest of
//!   the store.
//! - **Exports are whole.** A copy for the user is written to a hidden
//!   temporary name in the target directory and renamed when complete.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::keys::SecretKey;
use super::open::owner_only;
use super::{Result, Store, StoreError};
use crate::proto::files::{CHUNK_SIZE, MAX_FILE_SIZE, chunk_count, chunk_len};
use crate::proto::ids::FileHash;

/// Bytes of a slot's nonce and tag around its chunk.
const SLOT_OVERHEAD: usize = 24 + 16;
/// Bytes from one slot's start to the next.
const SLOT: u64 = (CHUNK_SIZE + SLOT_OVERHEAD) as u64;

fn slot_aad(hash: &FileHash, index: u32) -> Vec<u8> {
    let mut aad = b"kith file blob v1 ".to_vec();
    aad.extend_from_slice(hash.as_bytes());
    aad.extend_from_slice(&index.to_le_bytes());
    aad
}

fn io_at<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |error| {
        let disk_full = matches!(
            error.kind(),
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded
        );
        if disk_full {
            StoreError::from(error)
        } else {
            StoreError::File {
                what,
                path: path.to_owned(),
                error,
            }
        }
    }
}

impl Store {
    /// Where blobs live: `<db>.files/`.
    pub fn blob_dir(&self) -> PathBuf {
        let db = self.conn.path().unwrap_or("kith.db");
        let mut name = std::ffi::OsString::from(db);
        name.push(".files");
        PathBuf::from(name)
    }

    fn blob_key(&self) -> SecretKey {
        self.keys.keys.master.derive("kith store file blobs v1")
    }

    fn blob_path(&self, hash: &FileHash, part: bool) -> PathBuf {
        let mut name = hash.to_hex();
        if part {
            name.push_str(".part");
        }
        self.blob_dir().join(name)
    }

    /// The blob directory, created owner-only (0700) if missing.
    fn ensure_blob_dir(&self) -> Result<PathBuf> {
        ensure_dir(&self.blob_dir())
    }

    /// Whether the checked, complete bytes of `hash` are here.
    pub fn blob_exists(&self, hash: &FileHash) -> bool {
        self.blob_path(hash, false).is_file()
    }

    /// Reads the file at `source`, encrypts it into the blob store and
    /// returns its hash and size (see [`BlobWorker::import`]).
    pub fn import_blob(&self, source: &Path) -> Result<(FileHash, u64)> {
        self.blob_worker().import(source, &AtomicBool::new(false))
    }

    /// What runs the long blob operations on another thread than the one
    /// holding the store (they need no connection).
    pub fn blob_worker(&self) -> BlobWorker {
        BlobWorker {
            dir: self.blob_dir(),
            key: self.blob_key(),
        }
    }

    /// Starts (or resumes) receiving `hash` of `size` bytes: creates its
    /// `.part` if missing and says which chunks it already holds.
    pub fn begin_blob(&self, hash: &FileHash, size: u64) -> Result<Vec<bool>> {
        self.ensure_blob_dir()?;
        let path = self.blob_path(hash, true);
        let mut file = owner_only()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_at("file store", &path))?;
        let key = self.blob_key();
        let len = file.metadata().map_err(io_at("file store", &path))?.len();
        let mut have = Vec::with_capacity(chunk_count(size) as usize);
        for index in 0..chunk_count(size) {
            let present = u64::from(index) * SLOT < len
                && read_slot(&key, &mut file, &path, hash, size, index)?.is_some();
            have.push(present);
        }
        Ok(have)
    }

    /// Stores chunk `index` of `hash` (being received) in its `.part`.
    pub fn write_blob_chunk(
        &self,
        hash: &FileHash,
        size: u64,
        index: u32,
        plain: &[u8],
    ) -> Result<()> {
        debug_assert_eq!(plain.len(), chunk_len(size, index));
        let path = self.blob_path(hash, true);
        let mut file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io_at("file store", &path))?;
        let slot = self.blob_key().seal(&slot_aad(hash, index), plain);
        file.seek(SeekFrom::Start(u64::from(index) * SLOT))
            .map_err(io_at("file store", &path))?;
        file.write_all(&slot).map_err(io_at("file store", &path))?;
        Ok(())
    }

    /// Chunk `index` of the complete blob `hash` of `size` bytes.
    pub fn read_blob_chunk(&self, hash: &FileHash, size: u64, index: u32) -> Result<Vec<u8>> {
        let path = self.blob_path(hash, false);
        let mut file = File::open(&path).map_err(io_at("file store", &path))?;
        read_slot(&self.blob_key(), &mut file, &path, hash, size, index)?
            .ok_or(StoreError::Undecryptable("file chunk"))
    }

    /// Every chunk of `hash` arrived: checks the whole `.part` against the
    /// hash; if it matches, syncs it and renames it to the complete blob
    /// (`Ok(true)`); if not, deletes it (`Ok(false)`: fetch it again).
    pub fn finish_blob(&mut self, hash: &FileHash, size: u64) -> Result<bool> {
        let path = self.blob_path(hash, true);
        let key = self.blob_key();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_at("file store", &path))?;
        let mut hasher = blake3::Hasher::new();
        for index in 0..chunk_count(size) {
            match read_slot(&key, &mut file, &path, hash, size, index)? {
                Some(plain) => {
                    hasher.update(&plain);
                }
                None => return Ok(false),
            }
        }
        if hasher.finalize().as_bytes() != hash.as_bytes() {
            drop(file);
            let _ = fs::remove_file(&path);
            return Ok(false);
        }
        file.sync_all().map_err(io_at("file store", &path))?;
        drop(file);
        let target = self.blob_path(hash, false);
        fs::rename(&path, &target).map_err(io_at("file store", &target))?;
        Ok(true)
    }

    /// [`Store::finish_blob`] and [`Store::export_blob`] in one pass (see
    /// [`BlobWorker::finish_into`]).
    pub fn finish_blob_into(
        &mut self,
        hash: &FileHash,
        size: u64,
        dir: &Path,
        name: &str,
    ) -> Result<Option<PathBuf>> {
        self.blob_worker()
            .finish_into(hash, size, dir, name, &AtomicBool::new(false))
    }

    /// Forgets what was received of `hash` (a fetch that failed its check).
    pub fn discard_blob_part(&self, hash: &FileHash) {
        let _ = fs::remove_file(self.blob_path(hash, true));
    }

    /// Writes the plaintext of complete blob `hash` into directory `dir`
    /// (see [`BlobWorker::export`]).
    pub fn export_blob(
        &self,
        hash: &FileHash,
        size: u64,
        dir: &Path,
        name: &str,
    ) -> Result<PathBuf> {
        self.blob_worker()
            .export(hash, size, dir, name, &AtomicBool::new(false))
    }
}

/// Reads slot `index` and opens it; `None` if it was never written (or
/// does not open: then it is fetched again).
fn read_slot(
    key: &SecretKey,
    file: &mut File,
    path: &Path,
    hash: &FileHash,
    size: u64,
    index: u32,
) -> Result<Option<Vec<u8>>> {
    let len = chunk_len(size, index) + SLOT_OVERHEAD;
    let mut buf = vec![0u8; len];
    file.seek(SeekFrom::Start(u64::from(index) * SLOT))
        .map_err(io_at("file store", path))?;
    let n = read_full(file, &mut buf).map_err(io_at("file store", path))?;
    if n < len {
        return Ok(None);
    }
    Ok(key
        .open(&slot_aad(hash, index), &buf)
        .map(|plain| plain.to_vec()))
}

/// The blake3 hash and size of what `input` holds, refusing more than
/// [`MAX_FILE_SIZE`] bytes.
/// The long blob operations (importing a shared file, checking and
/// exporting a fetched one), runnable on any thread: they need the blob
/// directory and key, not the database ([`Store::blob_worker`]).
pub struct BlobWorker {
    dir: PathBuf,
    key: SecretKey,
}

impl BlobWorker {
    /// Writes the plaintext of complete blob `hash` into directory `dir`
    /// as `name` (made unique there: `name (1).ext`), through a hidden
    /// temporary file renamed when whole. Returns the path.
    /// Stops (with an error, nothing written) soon after `cancel` is set.
    pub fn export(
        &self,
        hash: &FileHash,
        size: u64,
        dir: &Path,
        name: &str,
        cancel: &AtomicBool,
    ) -> Result<PathBuf> {
        fs::create_dir_all(dir).map_err(io_at("download directory", dir))?;
        let source = self.dir.join(hash.to_hex());
        let mut file = File::open(&source).map_err(io_at("file store", &source))?;
        let key = &self.key;
        let mut nonce = [0u8; 8];
        rand::fill(&mut nonce);
        let temp = dir.join(format!(".{}.{}.kith-part", name, hex8(&nonce)));
        let result = (|| -> Result<()> {
            let mut out = File::create(&temp).map_err(io_at("download", &temp))?;
            let mut hasher = blake3::Hasher::new();
            for index in 0..chunk_count(size) {
                if cancel.load(Ordering::Relaxed) {
                    return Err(StoreError::File {
                        what: "download",
                        path: temp.clone(),
                        error: std::io::Error::other("the daemon stopped before it was written"),
                    });
                }
                let plain = read_slot(key, &mut file, &source, hash, size, index)?
                    .ok_or(StoreError::Undecryptable("file chunk"))?;
                hasher.update(&plain);
                out.write_all(&plain).map_err(io_at("download", &temp))?;
            }
            if hasher.finalize().as_bytes() != hash.as_bytes() {
                return Err(StoreError::Undecryptable("stored file (hash mismatch)"));
            }
            out.sync_all().map_err(io_at("download", &temp))?;
            Ok(())
        })();
        if let Err(error) = result {
            let _ = fs::remove_file(&temp);
            return Err(error);
        }
        let target = place_without_replacing(&temp, dir, name);
        let _ = fs::remove_file(&temp);
        let target = target?;
        Ok(target)
    }
    /// [`Store::finish_blob`] and [`Store::export_blob`] in one pass over
    /// the chunks: each is decrypted once, hashed and written to the
    /// export's temporary file. Only if the hash matches does the `.part`
    /// become the complete blob and the export appear under its name
    /// (`Ok(Some(path))`); otherwise both are deleted (`Ok(None)`).
    /// Stops (with an error, the `.part` kept for a later try) soon after
    /// `cancel` is set.
    pub fn finish_into(
        &self,
        hash: &FileHash,
        size: u64,
        dir: &Path,
        name: &str,
        cancel: &AtomicBool,
    ) -> Result<Option<PathBuf>> {
        fs::create_dir_all(dir).map_err(io_at("download directory", dir))?;
        let part = self.dir.join(format!("{}.part", hash.to_hex()));
        let key = &self.key;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&part)
            .map_err(io_at("file store", &part))?;
        let mut nonce = [0u8; 8];
        rand::fill(&mut nonce);
        let temp = dir.join(format!(".{}.{}.kith-part", name, hex8(&nonce)));
        let written = (|| -> Result<bool> {
            let mut out = File::create(&temp).map_err(io_at("download", &temp))?;
            let mut hasher = blake3::Hasher::new();
            for index in 0..chunk_count(size) {
                if cancel.load(Ordering::Relaxed) {
                    return Err(StoreError::File {
                        what: "download",
                        path: temp.clone(),
                        error: std::io::Error::other(
                            "the daemon stopped; it is checked again at the next start",
                        ),
                    });
                }
                let Some(plain) = read_slot(key, &mut file, &part, hash, size, index)? else {
                    return Ok(false);
                };
                hasher.update(&plain);
                out.write_all(&plain).map_err(io_at("download", &temp))?;
            }
            if hasher.finalize().as_bytes() != hash.as_bytes() {
                return Ok(false);
            }
            out.sync_all().map_err(io_at("download", &temp))?;
            file.sync_all().map_err(io_at("file store", &part))?;
            Ok(true)
        })();
        match written {
            Ok(true) => {}
            Ok(false) => {
                let _ = fs::remove_file(&temp);
                drop(file);
                let _ = fs::remove_file(&part);
                return Ok(None);
            }
            Err(error) => {
                let _ = fs::remove_file(&temp);
                return Err(error);
            }
        }
        drop(file);
        let blob = self.dir.join(hash.to_hex());
        fs::rename(&part, &blob).map_err(io_at("file store", &blob))?;
        let target = place_without_replacing(&temp, dir, name);
        let _ = fs::remove_file(&temp);
        let target = target?;
        Ok(Some(target))
    }

    /// Reads the file at `source`, encrypts it into the blob store and
    /// returns its hash and size. Refuses a file over [`MAX_FILE_SIZE`],
    /// one that changes while it is read, and stops (with an error) soon
    /// after `cancel` is set. Nothing of it stays if it fails: the blob
    /// appears, complete and checked, with one rename.
    pub fn import(&self, source: &Path, cancel: &AtomicBool) -> Result<(FileHash, u64)> {
        let dir = ensure_dir(&self.dir)?;
        // First pass: the hash, which every slot binds.
        let mut input = File::open(source).map_err(io_at("shared file", source))?;
        let (hash, size) = hash_file(&mut input, source, cancel)?;
        if self.dir.join(hash.to_hex()).is_file() {
            return Ok((hash, size));
        }
        let mut nonce = [0u8; 8];
        rand::fill(&mut nonce);
        let temp = dir.join(format!("{}.import", hex8(&nonce)));
        input
            .seek(SeekFrom::Start(0))
            .map_err(io_at("shared file", source))?;
        let result = self.import_into(&mut input, source, &temp, &hash, size, cancel);
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result?;
        let target = self.dir.join(hash.to_hex());
        fs::rename(&temp, &target).map_err(io_at("file store", &target))?;
        Ok((hash, size))
    }

    /// Second pass of [`BlobWorker::import`]: seals each chunk into
    /// `temp`, checking the content still hashes to `hash`.
    fn import_into(
        &self,
        input: &mut File,
        source: &Path,
        temp: &Path,
        hash: &FileHash,
        size: u64,
        cancel: &AtomicBool,
    ) -> Result<()> {
        let key = &self.key;
        let mut out = owner_only()
            .write(true)
            .create(true)
            .truncate(true)
            .open(temp)
            .map_err(io_at("file store", temp))?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut read = 0u64;
        for index in 0..chunk_count(size) {
            if cancel.load(Ordering::Relaxed) {
                return Err(cancelled(source));
            }
            let want = chunk_len(size, index);
            let n = read_full(input, &mut buf[..want]).map_err(io_at("shared file", source))?;
            read += n as u64;
            if n < want {
                break;
            }
            hasher.update(&buf[..n]);
            let slot = key.seal(&slot_aad(hash, index), &buf[..n]);
            out.write_all(&slot).map_err(io_at("file store", temp))?;
        }
        if read != size || hasher.finalize().as_bytes() != hash.as_bytes() {
            return Err(StoreError::File {
                what: "shared file",
                path: source.to_owned(),
                error: std::io::Error::other("it changed while it was read; try again"),
            });
        }
        out.sync_all().map_err(io_at("file store", temp))?;
        Ok(())
    }
}

/// `dir`, created owner-only (0700) if missing.
fn ensure_dir(dir: &Path) -> Result<PathBuf> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(io_at("file store directory", dir))?;
    Ok(dir.to_owned())
}

fn cancelled(source: &Path) -> StoreError {
    StoreError::File {
        what: "shared file",
        path: source.to_owned(),
        error: std::io::Error::other("the daemon stopped before it was stored; share it again"),
    }
}

fn hash_file(input: &mut File, source: &Path, cancel: &AtomicBool) -> Result<(FileHash, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(cancelled(source));
        }
        let n = read_full(input, &mut buf).map_err(io_at("shared file", source))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        if size > MAX_FILE_SIZE {
            return Err(StoreError::File {
                what: "shared file",
                path: source.to_owned(),
                error: std::io::Error::new(
                    ErrorKind::InvalidInput,
                    format!("it is larger than {} MiB", MAX_FILE_SIZE >> 20),
                ),
            });
        }
        hasher.update(&buf[..n]);
    }
    Ok((FileHash(*hasher.finalize().as_bytes()), size))
}

/// Reads until `buf` is full or the end; returns the bytes read.
fn read_full(input: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match input.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

fn hex8(bytes: &[u8; 8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Gives the finished file `temp` its name in `dir`: `name`, or
/// `stem (k).ext` for the first k free, never replacing a file that is
/// there, even one that appears meanwhile (a hard link fails on an
/// existing name where a rename would replace it). The caller removes
/// `temp`.
fn place_without_replacing(temp: &Path, dir: &Path, name: &str) -> Result<PathBuf> {
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (name, String::new()),
    };
    let candidates = std::iter::once(dir.join(name))
        .chain((1..10_000).map(|k| dir.join(format!("{stem} ({k}){ext}"))));
    for target in candidates {
        match fs::hard_link(temp, &target) {
            Ok(()) => return Ok(target),
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
            // A file system without hard links: a rename to a name seen
            // free (only a file appearing in between could be replaced).
            Err(_) if !target.exists() => {
                return fs::rename(temp, &target)
                    .map(|()| target.clone())
                    .map_err(io_at("download", &target));
            }
            Err(_) => {}
        }
    }
    Err(io_at("download", &dir.join(name))(std::io::Error::new(
        ErrorKind::AlreadyExists,
        "every name for this file is taken in the download folder",
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_file_never_replaces_one_already_there() {
        let dir = tempfile_dir("place");
        fs::write(dir.join("notes.txt"), b"mine").unwrap();
        fs::write(dir.join("notes (1).txt"), b"mine too").unwrap();
        let temp = dir.join(".notes.txt.kith-part");
        fs::write(&temp, b"downloaded").unwrap();

        let placed = place_without_replacing(&temp, &dir, "notes.txt").unwrap();
        fs::remove_file(&temp).unwrap();

        assert_eq!(placed, dir.join("notes (2).txt"));
        assert_eq!(fs::read(&placed).unwrap(), b"downloaded");
        assert_eq!(fs::read(dir.join("notes.txt")).unwrap(), b"mine");
        assert_eq!(fs::read(dir.join("notes (1).txt")).unwrap(), b"mine too");
        // A name without an extension gets its number at the end.
        fs::write(&temp, b"again").unwrap();
        fs::write(dir.join("README"), b"mine").unwrap();
        let placed = place_without_replacing(&temp, &dir, "README").unwrap();
        assert_eq!(placed, dir.join("README (1)"));
        let _ = fs::remove_dir_all(&dir);
    }

    fn tempfile_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "kith-blobs-{name}-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
