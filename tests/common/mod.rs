//! Helpers shared by the integration tests.

#![allow(dead_code)] // Each test binary uses a different subset.

pub mod daemons;
pub mod ports;
pub mod tmpfs;
pub mod trio;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, PoisonError};

use kith::daemon::PeerAddr;
use kith::proto::crypto::PublicIdentity;
use kith::proto::ids::{MessageId, PeerId, RoomId};
use kith::store::Message;

/// Node `i`'s peers in a mesh where node `j` is `publics[j]` at `addrs[j]`:
/// everybody but itself.
pub fn mesh_peers(publics: &[PublicIdentity], addrs: &[SocketAddr], i: usize) -> Vec<PeerAddr> {
    publics
        .iter()
        .zip(addrs)
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, (public, addr))| PeerAddr {
            public: public.clone(),
            addr: *addr,
        })
        .collect()
}

/// A self-cleaning temporary directory (no extra dependency).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let mut nonce = [0u8; 8];
        rand::fill(&mut nonce);
        let path =
            std::env::temp_dir().join(format!("kith-test-{name}-{}", u64::from_le_bytes(nonce)));
        std::fs::create_dir_all(&path).expect("invariant: the temp dir is writable");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn db(&self) -> PathBuf {
        self.0.join("kith.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover temp dir is not worth a panic in drop.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A deterministic message number `n` in `room` with the given body.
pub fn message(room: RoomId, n: u64, timestamp: u64, body: &[u8]) -> Message {
    let id = blake3::hash(&[room.as_bytes().as_slice(), &n.to_le_bytes()].concat());
    Message {
        id: MessageId(*id.as_bytes()),
        room,
        sender: PeerId([7; 32]),
        sender_seq: n,
        timestamp,
        body: body.to_vec(),
        envelope: [b"signed envelope: ".as_slice(), body].concat(),
    }
}

/// blake3 of a file's bytes, or of nothing if it does not exist.
pub fn file_hash(path: &Path) -> blake3::Hash {
    blake3::hash(&std::fs::read(path).unwrap_or_default())
}

/// The database file and its WAL and shared-memory companions.
pub fn db_files(db: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [db.to_owned(), with("-wal"), with("-shm")]
}

/// Held while a child process is spawned, until it has exec'd. A child
/// between fork and exec holds copies of this process's descriptors,
/// among them the lock of a store just closed here (a `flock` goes with
/// the open file, and the copy keeps it): reopened right then, the store
/// is "in use" (seen under load in tests/daemon_process.rs: the tests of
/// a binary run in parallel, and several spawn `kith` all the time). So
/// every spawn holds this, and a store is reopened in the test process,
/// or by a child it starts, only when no spawn is under way.
static SPAWNING: Mutex<()> = Mutex::new(());

/// Spawns `command` once no other spawn of this process is under way.
pub fn spawn(command: &mut Command) -> std::io::Result<Child> {
    let _spawning = SPAWNING.lock().unwrap_or_else(PoisonError::into_inner);
    command.spawn()
}

/// Returns once no child of this process is between fork and exec: none
/// holds a copy of a store lock closed before.
pub fn no_spawn_under_way() {
    drop(SPAWNING.lock().unwrap_or_else(PoisonError::into_inner));
}
