//! An installation's account: its data directory, its encrypted store and
//! the identity kept in it.
//!
//! The identity is created once, with the store, and never leaves the store
//! unencrypted. Opening needs the passphrase; a wrong one is reported as
//! such and changes nothing on disk.
//!
//! A new data directory is private to the user (mode 0700) and every file
//! the store creates in it is too (0600). A directory or file that other
//! users can open is never changed behind the user's back: it is reported
//! by [`permission_warnings`] for the caller to show.

use crate::proto::crypto::Identity;
/// What the desktop app needs of the store's types, so that it imports
/// nothing from the store itself.
pub use crate::store::{KdfParams, Mute};
use crate::store::{Store, StoreError};
use std::path::{Path, PathBuf};

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "kith.db";

/// Why an account could not be opened or created.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("no kith account in {0}; create one first (`kith init`)")]
    NotFound(PathBuf),
    #[error("a kith account already exists in {0}")]
    AlreadyExists(PathBuf),
    #[error("the passphrase is empty; choose one to protect your messages")]
    EmptyPassphrase,
    #[error("the store holds no identity; it was not created by kith")]
    MissingIdentity,
    #[error("cannot create the data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An open account.
pub struct Account {
    pub store: Store,
    pub identity: Identity,
    data_dir: PathBuf,
}

impl Account {
    /// Path of the database inside `data_dir`.
    pub fn database_path(data_dir: &Path) -> PathBuf {
        data_dir.join(DATABASE_FILE)
    }

    /// Is there an account in `data_dir`?
    pub fn exists(data_dir: &Path) -> bool {
        crate::store::key_file_path(&Self::database_path(data_dir)).exists()
    }

    /// Creates the data directory (private to the user), the store and a
    /// fresh identity.
    pub fn create(data_dir: &Path, passphrase: &str, kdf: KdfParams) -> Result<Self, AccountError> {
        if passphrase.is_empty() {
            return Err(AccountError::EmptyPassphrase);
        }
        if Self::exists(data_dir) {
            return Err(AccountError::AlreadyExists(data_dir.to_owned()));
        }
        create_private_dir(data_dir)
            .map_err(|error| AccountError::DataDir(data_dir.to_owned(), error))?;
        let mut store = Store::create(&Self::database_path(data_dir), passphrase, kdf)?;
        let identity = Identity::generate(&mut rand::rng());
        store.set_identity(&identity.secret_bytes())?;
        Ok(Self {
            store,
            identity,
            data_dir: data_dir.to_owned(),
        })
    }

    /// Opens and unlocks the account in `data_dir`.
    pub fn open(data_dir: &Path, passphrase: &str) -> Result<Self, AccountError> {
        if !Self::exists(data_dir) {
            return Err(AccountError::NotFound(data_dir.to_owned()));
        }
        let store = Store::open(&Self::database_path(data_dir), passphrase)?;
        let secret = store.identity()?.ok_or(AccountError::MissingIdentity)?;
        Ok(Self {
            identity: Identity::from_secret_bytes(&secret),
            store,
            data_dir: data_dir.to_owned(),
        })
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The data directory and store files that other users can open; see
    /// [`permission_warnings`].
    pub fn permission_warnings(&self) -> Vec<PermissionWarning> {
        permission_warnings(&self.data_dir)
    }
}

/// A data directory or store file that users other than its owner may
/// read, write or enter (any group or other permission bit set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PermissionWarning {
    /// The directory or file.
    pub path: PathBuf,
    /// Its permission bits (`0o755`, ...).
    pub mode: u32,
    /// Whether it is the data directory (as opposed to a file in it).
    pub is_dir: bool,
}

impl std::fmt::Display for PermissionWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let private = if self.is_dir { "700" } else { "600" };
        write!(
            f,
            "{} is open to other users (mode {:03o}); `chmod {private} {}` makes it private",
            self.path.display(),
            self.mode,
            self.path.display()
        )
    }
}

/// The data directory and the store files in it (those that exist now)
/// that other users may open. Empty where Unix modes do not exist.
///
/// The library only reports them: the CLI prints each as a warning. It
/// changes nothing, since the directory may be one the user chose to share.
pub fn permission_warnings(data_dir: &Path) -> Vec<PermissionWarning> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let database = Account::database_path(data_dir);
        std::iter::once(data_dir.to_owned())
            .chain(crate::store::store_files(&database))
            .filter_map(|path| {
                // A file that does not exist (WAL of a closed store) or
                // cannot be read exposes nothing to report.
                let metadata = std::fs::metadata(&path).ok()?;
                let mode = metadata.permissions().mode() & 0o777;
                (mode & 0o077 != 0).then(|| PermissionWarning {
                    is_dir: metadata.is_dir(),
                    path,
                    mode,
                })
            })
            .collect()
    }
    #[cfg(not(unix))]
    {
        let _ = data_dir;
        Vec::new()
    }
}

/// The default data directory: `$XDG_DATA_HOME/kith`, else
/// `~/.local/share/kith`, else `./kith-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("kith");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home).join(".local/share/kith");
    }
    PathBuf::from("kith-data")
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        // Only the owner may list or enter the directory.
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kith-account-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn identity_survives_reopen_and_needs_the_passphrase() {
        let dir = temp_dir("reopen");
        let created = Account::create(&dir, "correct horse", KdfParams::insecure_fast_for_tests())
            .expect("create");
        let id = created.identity.peer_id();
        drop(created);
        assert!(matches!(
            Account::open(&dir, "wrong"),
            Err(AccountError::Store(StoreError::WrongPassphrase))
        ));
        let reopened = Account::open(&dir, "correct horse").expect("open");
        assert_eq!(reopened.identity.peer_id(), id);
        assert!(matches!(
            Account::create(&dir, "x", KdfParams::insecure_fast_for_tests()),
            Err(AccountError::AlreadyExists(_))
        ));
        drop(reopened);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn missing_account_and_empty_passphrase_are_clear_errors() {
        let dir = temp_dir("missing");
        assert!(matches!(
            Account::open(&dir, "x"),
            Err(AccountError::NotFound(_))
        ));
        assert!(matches!(
            Account::create(&dir, "", KdfParams::insecure_fast_for_tests()),
            Err(AccountError::EmptyPassphrase)
        ));
        assert!(!dir.exists(), "a failed create leaves nothing behind");
    }

    #[cfg(unix)]
    #[test]
    fn data_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("private");
        let account =
            Account::create(&dir, "pass", KdfParams::insecure_fast_for_tests()).expect("create");
        let mode = std::fs::metadata(account.data_dir())
            .expect("dir exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        drop(account);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
