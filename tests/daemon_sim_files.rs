//! File sharing on the daemon's real core ([`kith::daemon::sim::SimDaemon`])
//! over the simulated network, real stores in temp dirs, in virtual time:
//! a file crosses a lossy link intact, an offline author's file arrives
//! once it is back, a fetch resumes after a restart from the chunks
//! stored, a chunk damaged at rest is fetched again, a member asking for
//! a file of a room it is not in gets nothing, and a blocked peer gets
//! nothing.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TempDir;
use kith::account::Account;
use kith::daemon::sim::{
    AddressTable, PASSPHRASE, SimDaemon, SimDaemonConfig, SimEvent, sim_identity,
};
use kith::daemon::{
    Event, FileEntry, FileHash, FileInfo, FileRef, FileState, Reply, Request, RequestId, Target,
};
use kith::proto::ids::{MessageId, PeerId, RoomId};
use kith::proto::node::{NodeConfig, direct_room};
use kith::proto::sim::{LinkConfig, Network};
use kith::store::StoredOffer;

const START_WALL_MS: u64 = 1_780_000_000_000;
const MIB: usize = 1024 * 1024;

struct Cluster {
    net: Network<SimDaemon>,
    hosts: Vec<SimDaemon>,
    configs: Vec<SimDaemonConfig>,
    table: Arc<AddressTable>,
    start: Instant,
    dirs: Vec<TempDir>,
    files: TempDir,
}

fn seed_bytes(seed: u64, i: usize, purpose: u8) -> [u8; 32] {
    let mut bytes = [purpose; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&(i as u64).to_le_bytes());
    bytes
}

impl Cluster {
    fn new(seed: u64, n: usize, link: LinkConfig) -> Self {
        let start = Instant::now();
        let identity_seeds: Vec<[u8; 32]> = (0..n).map(|i| seed_bytes(seed, i, 1)).collect();
        let publics: Vec<_> = identity_seeds
            .iter()
            .map(|s| sim_identity(*s).public())
            .collect();
        let ids: Vec<PeerId> = publics.iter().map(|p| p.peer_id()).collect();
        let table = Arc::new(AddressTable::new(&ids));
        let configs: Vec<SimDaemonConfig> = (0..n)
            .map(|i| SimDaemonConfig {
                identity_seed: identity_seeds[i],
                seed: seed_bytes(seed, i, 2),
                node: NodeConfig::default(),
                peers: publics
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .filter_map(|(_, p)| SimDaemon::peer_addr(&table, p.clone()))
                    .collect(),
            })
            .collect();
        let dirs: Vec<TempDir> = (0..n)
            .map(|i| TempDir::new(&format!("simfiles-{i}")))
            .collect();
        let hosts = (0..n)
            .map(|i| {
                SimDaemon::open(
                    dirs[i].path(),
                    configs[i].clone(),
                    table.clone(),
                    start,
                    START_WALL_MS,
                    start,
                )
                .expect("a simulated daemon starts")
            })
            .collect();
        let mut cluster = Cluster {
            net: Network::new(seed, link, start, ids),
            hosts,
            configs,
            table,
            start,
            dirs,
            files: TempDir::new("simfiles-data"),
        };
        for i in 0..n {
            cluster.net.drain(&mut cluster.hosts, i);
        }
        cluster.run_for(Duration::from_millis(500));
        cluster
    }

    fn id(&self, i: usize) -> PeerId {
        self.net.id(i)
    }

    fn ask(&mut self, i: usize, request: Request) -> RequestId {
        let now = self.net.now();
        let id = self.hosts[i].request(now, request);
        self.net.drain(&mut self.hosts, i);
        id
    }

    fn answer(&self, i: usize, id: RequestId) -> Option<Result<&Reply, String>> {
        self.net.events(i).iter().rev().find_map(|e| match e {
            SimEvent::Reply(_, rid, Ok(reply)) if *rid == id => Some(Ok(reply)),
            SimEvent::Reply(_, rid, Err(error)) if *rid == id => Some(Err(error.to_string())),
            _ => None,
        })
    }

    fn run_for(&mut self, duration: Duration) {
        self.net.run_for(&mut self.hosts, duration);
    }

    fn run_until(&mut self, limit: Duration, done: impl Fn(&Cluster) -> bool) -> bool {
        let until = self.net.now() + limit;
        while !done(self) {
            if !self.net.step(&mut self.hosts, until) {
                return done(self);
            }
        }
        true
    }

    fn crash_and_restart(&mut self, i: usize, between: impl FnOnce(&Path)) {
        let now = self.net.now();
        drop(self.hosts.remove(i));
        between(self.dirs[i].path());
        // A restarted process draws fresh randomness (the same seed would
        // replay its first handshake, which the peer rightly refuses).
        self.configs[i].seed[31] = self.configs[i].seed[31].wrapping_add(1);
        let host = SimDaemon::open(
            self.dirs[i].path(),
            self.configs[i].clone(),
            self.table.clone(),
            self.start,
            START_WALL_MS,
            now,
        )
        .expect("a simulated daemon restarts from its store");
        self.hosts.insert(i, host);
        self.net.drain(&mut self.hosts, i);
    }

    /// Writes `len` pseudo-random bytes to a file named `name`.
    fn make_file(&self, name: &str, len: usize, seed: u8) -> (PathBuf, Vec<u8>) {
        let mut bytes = Vec::with_capacity(len);
        let mut hasher = blake3::Hasher::new();
        hasher.update(&[seed]);
        let mut reader = hasher.finalize_xof();
        bytes.resize(len, 0);
        reader.fill(&mut bytes);
        let path = self.files.path().join(name);
        std::fs::write(&path, &bytes).expect("the test file is written");
        (path, bytes)
    }

    /// Host `from` shares `path` with `to`; the file message's id.
    fn share(&mut self, from: usize, to: Target, path: &Path) -> MessageId {
        let rid = self.ask(
            from,
            Request::ShareFile {
                to,
                path: path.to_owned(),
                caption: Some("have a look".to_owned()),
            },
        );
        self.run_for(Duration::from_millis(5));
        match self.answer(from, rid) {
            Some(Ok(Reply::Sent(id))) => *id,
            other => panic!("no share reply: {other:?}"),
        }
    }

    /// The file offers host `i` was told of.
    fn offered(&self, i: usize) -> Vec<(MessageId, FileInfo, String)> {
        self.net
            .events(i)
            .iter()
            .filter_map(|e| match e {
                SimEvent::Event(
                    _,
                    Event::MessageReceived {
                        id,
                        file: Some(file),
                        text,
                        ..
                    },
                ) => Some((*id, file.clone(), text.clone())),
                _ => None,
            })
            .collect()
    }

    fn completed(&self, i: usize) -> Vec<PathBuf> {
        self.net
            .events(i)
            .iter()
            .filter_map(|e| match e {
                SimEvent::Event(_, Event::FileComplete { path, .. }) => Some(path.clone()),
                _ => None,
            })
            .collect()
    }

    fn failed(&self, i: usize) -> Vec<String> {
        self.net
            .events(i)
            .iter()
            .filter_map(|e| match e {
                SimEvent::Event(_, Event::FileFailed { reason, .. }) => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }

    fn progress(&self, i: usize) -> Vec<(u64, u64)> {
        self.net
            .events(i)
            .iter()
            .filter_map(|e| match e {
                SimEvent::Event(_, Event::FileProgress { have, size, .. }) => Some((*have, *size)),
                _ => None,
            })
            .collect()
    }

    fn fetch(&mut self, i: usize, file: FileRef, to_dir: &Path) {
        let rid = self.ask(
            i,
            Request::FetchFile {
                file,
                to_dir: to_dir.to_owned(),
            },
        );
        match self.answer(i, rid) {
            Some(Ok(Reply::Done)) => {}
            other => panic!("the fetch did not start: {other:?}"),
        }
    }

    fn files_in(&mut self, i: usize, room: RoomId) -> Vec<FileEntry> {
        let rid = self.ask(i, Request::Files { room });
        match self.answer(i, rid) {
            Some(Ok(Reply::Files(files))) => files.clone(),
            other => panic!("no file listing: {other:?}"),
        }
    }

    fn status(&mut self, i: usize) -> kith::daemon::Status {
        let rid = self.ask(i, Request::Status);
        match self.answer(i, rid) {
            Some(Ok(Reply::Status(status))) => (**status).clone(),
            other => panic!("no status: {other:?}"),
        }
    }

    /// Shares a file of `len` bytes from 0 to 1's direct chat and waits
    /// until 1 heard of it.
    fn offer(&mut self, len: usize) -> (MessageId, FileInfo, Vec<u8>) {
        let (path, bytes) = self.make_file("report.bin", len, 7);
        let id = self.share(0, Target::Peer(self.id(1)), &path);
        assert!(
            self.run_until(Duration::from_secs(30), |c| !c.offered(1).is_empty()),
            "the offer reaches the other member"
        );
        let (offered, info, caption) = self.offered(1).remove(0);
        assert_eq!(offered, id);
        assert_eq!(caption, "have a look");
        assert_eq!(info.name, "report.bin");
        assert_eq!(info.size, len as u64);
        assert_eq!(info.hash, FileHash(*blake3::hash(&bytes).as_bytes()));
        (id, info, bytes)
    }
}

fn downloads(c: &Cluster, name: &str) -> PathBuf {
    c.files.path().join(name)
}

/// A 1 MiB file crosses a link losing 7 % of its datagrams intact; the
/// receiver hears progress, then completion with the path of its copy,
/// and both sides list the file as complete.
#[test]
fn a_file_reaches_the_other_member_under_loss() {
    let mut c = Cluster::new(11, 2, LinkConfig::lossy(0.07));
    let (id, info, bytes) = c.offer(MIB);
    let to = downloads(&c, "b");
    c.fetch(1, FileRef::Message(id), &to);
    assert!(
        c.run_until(Duration::from_secs(300), |c| !c.completed(1).is_empty()),
        "the file arrives: failed {:?}",
        c.failed(1)
    );
    let path = c.completed(1).remove(0);
    assert_eq!(path, to.join("report.bin"));
    assert_eq!(std::fs::read(&path).expect("the copy is there"), bytes);
    let progress = c.progress(1);
    assert!(!progress.is_empty(), "progress was reported");
    assert!(
        progress.windows(2).all(|w| w[0].0 <= w[1].0),
        "progress only grows"
    );
    let room = direct_room(c.id(0), c.id(1));
    for i in 0..2 {
        let files = c.files_in(i, room);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].info, info);
        assert_eq!(files[0].state, FileState::Complete, "host {i}");
    }
    assert_eq!(c.files_in(1, room)[0].path.as_deref(), Some(path.as_path()));
    let status = c.status(1);
    assert_eq!(status.files.fetches_completed, 1);
    assert_eq!(status.files.chunks_bad, 0);
    // Fetching it again copies it from the store at once.
    let again = downloads(&c, "b2");
    c.fetch(1, FileRef::Hash(info.hash), &again);
    c.run_for(Duration::from_millis(10));
    assert_eq!(c.completed(1).len(), 2);
    assert_eq!(std::fs::read(again.join("report.bin")).unwrap(), bytes);
    // The history shows a file message, not text.
    let rid = c.ask(
        1,
        Request::History {
            room,
            before: None,
            limit: 10,
        },
    );
    let Some(Ok(Reply::History(page))) = c.answer(1, rid) else {
        panic!("no history");
    };
    let row = page
        .rows
        .iter()
        .find(|r| r.id == id)
        .expect("the file message");
    assert_eq!(row.file.as_ref(), Some(&info));
    assert_eq!(row.text.as_deref(), Some("have a look"));
}

/// The author goes away before the receiver asks; nothing arrives while
/// it is away, and the whole file once it is back.
#[test]
fn an_offline_authors_file_is_fetched_after_it_comes_back() {
    let mut c = Cluster::new(12, 2, LinkConfig::lossy(0.02));
    let (id, _, bytes) = c.offer(300 * 1024);
    c.net.set_up(&mut c.hosts, 0, false);
    let to = downloads(&c, "b");
    c.fetch(1, FileRef::Message(id), &to);
    c.run_for(Duration::from_secs(30));
    assert!(
        c.completed(1).is_empty(),
        "nothing while the author is away"
    );
    c.net.set_up(&mut c.hosts, 0, true);
    assert!(
        c.run_until(Duration::from_secs(300), |c| !c.completed(1).is_empty()),
        "the file arrives once the author is back: {:?}",
        c.failed(1)
    );
    assert_eq!(std::fs::read(to.join("report.bin")).unwrap(), bytes);
}

/// The receiver crashes half-way; after the restart the fetch goes on by
/// itself from the chunks it stored (it receives fewer chunks than the
/// file has), and a chunk damaged on its disk while it was down is
/// detected and fetched again.
#[test]
fn a_fetch_resumes_after_a_restart_and_refetches_a_damaged_chunk() {
    let mut c = Cluster::new(13, 2, LinkConfig::default());
    let (id, info, bytes) = c.offer(2 * MIB);
    let chunks = (2 * MIB / kith::daemon::files::CHUNK_SIZE) as u64;
    let to = downloads(&c, "b");
    c.fetch(1, FileRef::Message(id), &to);
    // About a quarter of the file crosses the 100 Mbit/s link.
    c.run_for(Duration::from_millis(60));
    assert!(c.completed(1).is_empty(), "not all of it yet");
    let part = |dir: &Path| {
        dir.join(format!("{}.files", kith::account::DATABASE_FILE))
            .join(format!("{}.part", info.hash.to_hex()))
    };
    c.crash_and_restart(1, |dir| {
        // Flip one byte inside the first chunk's slot.
        let path = part(dir);
        let mut stored = std::fs::read(&path).expect("the partial file is kept");
        stored[100] ^= 0x55;
        std::fs::write(&path, stored).unwrap();
    });
    let done = c.run_until(Duration::from_secs(120), |c| !c.completed(1).is_empty());
    if !done {
        let s0 = c.status(0);
        let s1 = c.status(1);
        eprintln!(
            "not finished; host 0 {:?}\nhost1 {:?}\nprogress {:?}",
            s0.files,
            s1.files,
            c.progress(1)
        );
        eprintln!(
            "host 0 counters {:?}",
            s0.counters()
                .into_iter()
                .filter(|(_, v)| *v > 0)
                .collect::<Vec<_>>()
        );
        eprintln!(
            "host 1 counters {:?}",
            s1.counters()
                .into_iter()
                .filter(|(_, v)| *v > 0)
                .collect::<Vec<_>>()
        );
    }
    assert!(
        done,
        "the fetch finishes after the restart: {:?}",
        c.failed(1)
    );
    assert_eq!(std::fs::read(to.join("report.bin")).unwrap(), bytes);
    let received = c.status(1).files.chunks_received;
    assert!(received > 0, "chunks came after the restart");
    assert!(
        received < chunks,
        "resumed, not started over: {received} of {chunks} chunks after the restart"
    );
    assert!(!part(c.dirs[1].path()).exists(), "no partial file is left");
}

/// Host 2 shares a direct chat with the author but not the room the file
/// was offered in; it learns the offer (key included) by other means and
/// asks for it naming its own chat with the author. The author refuses
/// (counted) and nothing arrives.
#[test]
fn a_member_of_another_room_gets_nothing() {
    let mut c = Cluster::new(14, 3, LinkConfig::default());
    let (id, info, _) = c.offer(100 * 1024);
    // Host 2 knows host 0 (a message opens their chat).
    let rid = c.ask(
        2,
        Request::Send {
            to: Target::Peer(c.id(0)),
            text: "hi".to_owned(),
        },
    );
    c.run_for(Duration::from_secs(1));
    assert!(matches!(c.answer(2, rid), Some(Ok(Reply::Sent(_)))));
    let room_1 = direct_room(c.id(0), c.id(1));
    let stolen = c.files_in(1, room_1).remove(0);
    let to = downloads(&c, "thief");
    let author = c.id(0);
    let their_room = direct_room(c.id(0), c.id(2));
    c.crash_and_restart(2, |dir| {
        let mut account = Account::open(dir, PASSPHRASE).expect("the store opens");
        // The offer as host 1 holds it (the key does not matter: the
        // author must not answer at all), moved to host 2's chat with the
        // author, with a fetch under way.
        account
            .store
            .put_offer(&StoredOffer {
                message: id,
                room: their_room,
                author,
                timestamp: stolen.timestamp,
                offer: kith::proto::files::FileOffer {
                    name: info.name.clone(),
                    size: info.size,
                    hash: info.hash,
                    key: [0; 32],
                    caption: None,
                },
                fetch_to: Some(to.clone()),
                exported: None,
                failed: None,
            })
            .expect("the forged offer is stored");
    });
    c.run_for(Duration::from_secs(30));
    assert!(c.completed(2).is_empty(), "nothing reaches host 2");
    assert!(
        !to.join("report.bin").exists(),
        "no file is written for host 2"
    );
    let author_status = c.status(0);
    assert!(
        author_status.files.requests_refused >= 1,
        "the author refused and counted it"
    );
    assert_eq!(
        c.status(2).files.chunks_received,
        0,
        "not one chunk went to host 2"
    );
}

/// The author blocks the receiver after offering: the receiver's fetch
/// gets nothing.
#[test]
fn a_blocked_peer_gets_nothing() {
    let mut c = Cluster::new(15, 2, LinkConfig::default());
    let (id, _, _) = c.offer(100 * 1024);
    let peer = c.id(1);
    let rid = c.ask(
        0,
        Request::Block {
            peer,
            blocked: true,
        },
    );
    assert!(matches!(c.answer(0, rid), Some(Ok(Reply::Peer(_)))));
    let to = downloads(&c, "b");
    c.fetch(1, FileRef::Message(id), &to);
    c.run_for(Duration::from_secs(30));
    assert!(c.completed(1).is_empty(), "nothing reaches a blocked peer");
    assert_eq!(c.status(0).files.chunks_sent, 0);
}

/// Asking to fetch what was never offered, to share in a room we are not
/// in, or to share a file over the limit is an error with a sentence.
#[test]
fn fetching_or_sharing_what_cannot_be_says_so() {
    let mut c = Cluster::new(16, 2, LinkConfig::default());
    let to = downloads(&c, "b");
    let rid = c.ask(
        1,
        Request::FetchFile {
            file: FileRef::Hash(FileHash([9; 32])),
            to_dir: to,
        },
    );
    match c.answer(1, rid) {
        Some(Err(error)) => assert!(error.contains("no file"), "{error}"),
        other => panic!("expected an error: {other:?}"),
    }
    // Sharing in a room we are not in is refused before the file is read:
    // nothing of it is kept.
    let (path, _) = c.make_file("nowhere.bin", 1000, 5);
    let rid = c.ask(
        1,
        Request::ShareFile {
            to: Target::Room(RoomId([7; 32])),
            path,
            caption: None,
        },
    );
    c.run_for(Duration::from_millis(5));
    match c.answer(1, rid) {
        Some(Err(error)) => assert!(error.contains("not a room"), "{error}"),
        other => panic!("expected an error: {other:?}"),
    }
    let blobs = c.dirs[1]
        .path()
        .join(format!("{}.files", kith::account::DATABASE_FILE));
    let kept = std::fs::read_dir(&blobs).map_or(0, |d| d.count());
    assert_eq!(kept, 0, "nothing is kept in {}", blobs.display());
    // A file over the limit is refused with a sentence.
    let huge = c.files.path().join("huge.bin");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(kith::daemon::files::MAX_FILE_SIZE + 1)
        .unwrap();
    let rid = c.ask(
        1,
        Request::ShareFile {
            to: Target::Peer(c.id(0)),
            path: huge,
            caption: None,
        },
    );
    c.run_for(Duration::from_millis(5));
    match c.answer(1, rid) {
        Some(Err(error)) => assert!(error.contains("at most 256 MiB"), "{error}"),
        other => panic!("expected an error: {other:?}"),
    }
}

impl Cluster {
    /// A group room of every host, created by 0 and joined by the others.
    fn group(&mut self) -> RoomId {
        let members: Vec<PeerId> = (1..self.hosts.len()).map(|i| self.id(i)).collect();
        let rid = self.ask(
            0,
            Request::CreateRoom {
                name: "crew".to_owned(),
                members,
            },
        );
        self.run_for(Duration::from_millis(5));
        let room = match self.answer(0, rid) {
            Some(Ok(Reply::Room(room))) => *room,
            other => panic!("no room: {other:?}"),
        };
        for i in 1..self.hosts.len() {
            self.ask(i, Request::AnswerInvite { room, accept: true });
        }
        self.run_for(Duration::from_secs(2));
        room
    }

    /// 0 shares a file in a group room; 2 fetches it; then 0 goes away.
    fn shared_in_group_then_author_gone(&mut self) -> (RoomId, MessageId, FileInfo, Vec<u8>) {
        let room = self.group();
        let (path, bytes) = self.make_file("crew.bin", 400 * 1024, 9);
        let id = self.share(0, Target::Room(room), &path);
        assert!(
            self.run_until(Duration::from_secs(30), |c| !c.offered(1).is_empty()
                && !c.offered(2).is_empty()),
            "both members hear of the file"
        );
        let info = self.offered(1).remove(0).1;
        let to = downloads(self, "two");
        self.fetch(2, FileRef::Message(id), &to);
        assert!(
            self.run_until(Duration::from_secs(60), |c| !c.completed(2).is_empty()),
            "member 2 fetches it from the author"
        );
        self.net.set_up(&mut self.hosts, 0, false);
        (room, id, info, bytes)
    }
}

/// The author is gone: a member fetches the file from another member who
/// has it complete.
#[test]
fn any_member_that_has_the_file_serves_it() {
    let mut c = Cluster::new(17, 3, LinkConfig::lossy(0.03));
    let (_, id, _, bytes) = c.shared_in_group_then_author_gone();
    let to = downloads(&c, "one");
    c.fetch(1, FileRef::Message(id), &to);
    assert!(
        c.run_until(Duration::from_secs(120), |c| !c.completed(1).is_empty()),
        "member 1 gets it from member 2: {:?}",
        c.failed(1)
    );
    assert_eq!(std::fs::read(to.join("crew.bin")).unwrap(), bytes);
    assert!(c.status(2).files.chunks_sent > 0, "member 2 served it");
}

/// A member whose copy was altered (a hostile or broken member: its
/// chunks are sealed with the right key, their bytes are wrong) is caught
/// by the hash: the fetch fails with a sentence, nothing is exported, and
/// fetching again once the author is back gives the right file.
#[test]
fn wrong_bytes_from_a_member_are_caught_by_the_hash() {
    let mut c = Cluster::new(18, 3, LinkConfig::default());
    let (room, id, info, bytes) = c.shared_in_group_then_author_gone();
    c.crash_and_restart(2, |dir| {
        let account = Account::open(dir, PASSPHRASE).expect("the store opens");
        let store = &account.store;
        let blobs = store.blob_dir();
        std::fs::remove_file(blobs.join(info.hash.to_hex())).expect("member 2 has the file");
        // Same size, other bytes, written as a modified client would.
        store.begin_blob(&info.hash, info.size).unwrap();
        let wrong = vec![0x42u8; info.size as usize];
        for (i, chunk) in wrong.chunks(kith::daemon::files::CHUNK_SIZE).enumerate() {
            store
                .write_blob_chunk(&info.hash, info.size, i as u32, chunk)
                .unwrap();
        }
        std::fs::rename(
            blobs.join(format!("{}.part", info.hash.to_hex())),
            blobs.join(info.hash.to_hex()),
        )
        .unwrap();
    });
    let to = downloads(&c, "one");
    c.fetch(1, FileRef::Message(id), &to);
    assert!(
        c.run_until(Duration::from_secs(120), |c| !c.failed(1).is_empty()),
        "the fetch fails"
    );
    assert!(
        c.failed(1)[0].contains("did not match"),
        "{:?}",
        c.failed(1)
    );
    assert!(c.completed(1).is_empty());
    assert!(!to.join("crew.bin").exists(), "nothing is exported");
    assert_eq!(c.status(1).files.hash_mismatches, 1);
    let listed = c.files_in(1, room);
    assert!(
        matches!(&listed[0].state, FileState::Failed { reason } if reason.contains("did not match")),
        "{:?}",
        listed[0].state
    );
    // The author is back: fetching again gives the right bytes.
    c.net.set_up(&mut c.hosts, 0, true);
    c.run_for(Duration::from_secs(5));
    c.fetch(1, FileRef::Message(id), &to);
    assert!(
        c.run_until(Duration::from_secs(120), |c| !c.completed(1).is_empty()),
        "the second fetch completes: {:?}",
        c.failed(1)
    );
    assert_eq!(std::fs::read(to.join("crew.bin")).unwrap(), bytes);
}

/// Nobody online holds the file (the author is away, the other member
/// never fetched it): that member answers "unavailable" and is not asked
/// again and again; the file arrives once the author is back.
#[test]
fn a_member_without_the_file_is_not_asked_in_a_loop() {
    let mut c = Cluster::new(19, 3, LinkConfig::default());
    let room = c.group();
    let (path, bytes) = c.make_file("later.bin", 200 * 1024, 4);
    let id = c.share(0, Target::Room(room), &path);
    assert!(c.run_until(Duration::from_secs(30), |c| !c.offered(1).is_empty()));
    c.net.set_up(&mut c.hosts, 0, false);
    let to = downloads(&c, "one");
    c.fetch(1, FileRef::Message(id), &to);
    let before = c.net.wire.datagrams;
    c.run_for(Duration::from_secs(30));
    let during = c.net.wire.datagrams - before;
    assert!(
        during < 2_000,
        "{during} datagrams in 30 s while nobody can serve the file"
    );
    assert!(c.completed(1).is_empty());
    c.net.set_up(&mut c.hosts, 0, true);
    assert!(
        c.run_until(Duration::from_secs(120), |c| !c.completed(1).is_empty()),
        "the file arrives once the author is back: {:?}",
        c.failed(1)
    );
    assert_eq!(std::fs::read(to.join("later.bin")).unwrap(), bytes);
}
