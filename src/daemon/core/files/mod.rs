//! File sharing's decisions: offering a file, serving chunks to members
//! who ask, fetching a file chunk by chunk, and when to give up on a
//! source. The bytes go through the store's blob operations
//! (`store::blobs`), as every other store write of the core does.
//!
//! Guarantees:
//! - A chunk goes only to a peer whose request names a file message of a
//!   room it shares with us (the node checks the room is shared, the core
//!   that the offer belongs to that room); anything else is dropped and
//!   counted. A blocked peer's datagrams never get this far.
//! - A fetch keeps at most [`WINDOW`] chunks asked for and not arrived; at
//!   most [`MAX_FETCHES`] fetches run at once (the rest wait their turn);
//!   at most [`MAX_SERVE_QUEUE`] chunks wait to be sent to one peer.
//! - A file counts as complete only when all its bytes matched its hash
//!   (`Store::finish_blob`); a fetch resumes after a restart from the
//!   chunks already stored.
//! - A source that says it lacks the file, or stays silent for [`STALL`],
//!   is left for the next online member (the author first).

mod fetch;
mod serve;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use super::*;
use crate::daemon::files::{FileEntry, FileInfo, FileRef, FileState, file_of};
use crate::proto::files::{
    FileMessage, FileOffer, MAX_FILE_SIZE, MAX_GET_CHUNKS, chunk_len, open_chunk, sanitize_name,
    seal_chunk,
};
use crate::proto::ids::FileHash;
use crate::proto::node::KIND_FILE;
use crate::store::{BlobWorker, FileMeta, StoredOffer};

/// Chunks a fetch keeps asked for and not arrived (16 × 32 KiB = 512 KiB,
/// inside the reliable layer's send window and reassembly bound).
pub(super) const WINDOW: usize = 16;
/// Fetches under way at once; more wait in line.
pub(super) const MAX_FETCHES: usize = 4;
/// Chunks waiting to be sent to one peer; a request beyond it is cut.
pub(super) const MAX_SERVE_QUEUE: usize = 4 * MAX_GET_CHUNKS as usize;
/// Silence from a source after which a fetch asks someone else.
pub(super) const STALL: Duration = Duration::from_secs(5);
/// Least time between two progress events of one fetch.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// Wait before chunks the reliable layer refused (a full stream) are
/// offered to it again.
const SERVE_RETRY: Duration = Duration::from_millis(5);

/// File sharing's state in the core.
pub(super) struct Files {
    /// Draws each offer's key (seeded by the core's seed, like the rest).
    rng: StdRng,
    /// Fetches under way, by offer message.
    fetches: BTreeMap<MessageId, Fetch>,
    /// Fetches waiting for a free place, oldest first.
    waiting: VecDeque<(MessageId, PathBuf)>,
    /// Chunks to send, per peer: (room, offer, index).
    serving: BTreeMap<PeerId, VecDeque<(RoomId, MessageId, u32)>>,
    /// When chunks refused by a full stream are tried again.
    serve_at: Option<Instant>,
    /// The paths of our shares, until their offers are recorded.
    shared: HashMap<FileHash, PathBuf>,
    /// Whether unfinished fetches were taken up after the start.
    resumed: bool,
    /// Shares whose file the shell is reading, by job id.
    pending: BTreeMap<u64, PendingShare>,
    /// The id of the next job handed to the shell.
    next_job: u64,
    /// Fetches whose chunks are all here, being checked by the shell, by
    /// job id.
    finishing: BTreeMap<u64, StoredOffer>,
    /// Complete files being exported by the shell, by job id.
    exporting: BTreeMap<u64, StoredOffer>,
}

/// A share waiting for its file to be stored.
struct PendingShare {
    to: Target,
    path: PathBuf,
    caption: Option<String>,
    reply: ReplyTo,
}

/// Work the core hands its shell ([`Output::Job`]) to run off the network
/// thread: reading a file can take seconds, and meanwhile datagrams,
/// acknowledgements and other requests must be answered. The shell runs
/// it ([`FileJob::run`]) and hands the result back with the time
/// ([`DaemonCore::handle_file_job_done`]); a simulator does so inline.
#[derive(Debug)]
pub(crate) enum FileJob {
    /// Read, hash and encrypt the file at `path` into the blob store.
    Import { id: u64, path: PathBuf },
    /// Write the plaintext of complete blob `hash` to `to_dir` as `name`.
    Export {
        id: u64,
        hash: FileHash,
        size: u64,
        to_dir: PathBuf,
        name: String,
    },
    /// Check the received chunks of `hash` against it; if they match, make
    /// them the complete blob and export the file to `to_dir` as `name`.
    Finish {
        id: u64,
        hash: FileHash,
        size: u64,
        to_dir: PathBuf,
        name: String,
    },
}

/// What a [`FileJob`] gave.
#[derive(Debug)]
pub(crate) enum FileJobDone {
    Imported {
        id: u64,
        result: Result<(FileHash, u64), StoreError>,
    },
    /// Where the copy was written.
    Exported {
        id: u64,
        result: Result<PathBuf, StoreError>,
    },
    /// The exported path; `None` if the bytes did not match the hash.
    Finished {
        id: u64,
        result: Result<Option<PathBuf>, StoreError>,
    },
}

impl FileJob {
    /// Does the work (on any thread); stops early once `cancel` is set.
    pub(crate) fn run(self, worker: &BlobWorker, cancel: &AtomicBool) -> FileJobDone {
        match self {
            FileJob::Import { id, path } => FileJobDone::Imported {
                id,
                result: worker.import(&path, cancel),
            },
            FileJob::Export {
                id,
                hash,
                size,
                to_dir,
                name,
            } => FileJobDone::Exported {
                id,
                result: worker.export(&hash, size, &to_dir, &name, cancel),
            },
            FileJob::Finish {
                id,
                hash,
                size,
                to_dir,
                name,
            } => FileJobDone::Finished {
                id,
                result: worker.finish_into(&hash, size, &to_dir, &name, cancel),
            },
        }
    }
}

impl Files {
    pub(super) fn new(seed: [u8; 32]) -> Self {
        Files {
            rng: StdRng::from_seed(seed),
            fetches: BTreeMap::new(),
            waiting: VecDeque::new(),
            serving: BTreeMap::new(),
            serve_at: None,
            shared: HashMap::new(),
            resumed: false,
            pending: BTreeMap::new(),
            next_job: 0,
            finishing: BTreeMap::new(),
            exporting: BTreeMap::new(),
        }
    }

    /// When [`DaemonCore::files_timeout`] is due.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.fetches
            .values()
            .map(|f| f.last_activity + STALL)
            .chain(self.serve_at)
            .min()
    }
}

/// One fetch under way.
struct Fetch {
    stored: StoredOffer,
    to_dir: PathBuf,
    /// Which chunks are stored.
    have: Vec<bool>,
    /// No chunk below this one is missing and unasked (where the next
    /// request starts looking).
    low: usize,
    have_count: u32,
    /// Chunks asked for and not arrived, with when.
    requested: BTreeMap<u32, Instant>,
    /// Who may hold the file: the author, then the other members.
    sources: Vec<PeerId>,
    /// Index into `sources` of the one asked now.
    source: usize,
    /// When a chunk last arrived (or the fetch started or moved on).
    last_activity: Instant,
    /// When progress was last reported.
    reported: Option<Instant>,
}

impl Fetch {
    fn have_bytes(&self) -> u64 {
        let size = self.stored.offer.size;
        self.have
            .iter()
            .enumerate()
            .filter(|(_, have)| **have)
            .map(|(i, _)| chunk_len(size, i as u32) as u64)
            .sum()
    }

    fn source(&self) -> Option<PeerId> {
        self.sources.get(self.source).copied()
    }
}

fn file_error(error: impl std::fmt::Display) -> DaemonError {
    DaemonError::File(error.to_string())
}

impl DaemonCore {
    /// Checks a share of the file at `path` and hands the reading,
    /// hashing and storing of its bytes to the shell ([`FileJob::Import`]);
    /// its file message for `to` is queued when that is done
    /// ([`DaemonCore::handle_file_job_done`]).
    pub(super) fn share_file(
        &mut self,
        to: Target,
        path: &Path,
        caption: Option<String>,
        reply: ReplyTo,
    ) {
        match self.check_share(to, path, caption) {
            Ok(caption) => {
                let id = self.files.next_job;
                self.files.next_job += 1;
                self.files.pending.insert(
                    id,
                    PendingShare {
                        to,
                        path: path.to_owned(),
                        caption,
                        reply,
                    },
                );
                self.outputs.push_back(Output::Job(FileJob::Import {
                    id,
                    path: path.to_owned(),
                }));
            }
            Err(error) => self.reply(reply, Err(error)),
        }
    }

    /// What can be refused before the file is read; the caption to use.
    fn check_share(
        &self,
        to: Target,
        path: &Path,
        caption: Option<String>,
    ) -> Result<Option<String>, DaemonError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| file_error(format!("cannot read {}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(file_error(format!("{} is not a file", path.display())));
        }
        if meta.len() > MAX_FILE_SIZE {
            return Err(file_error(format!(
                "{} is {} bytes; at most {} MiB can be shared",
                path.display(),
                meta.len(),
                MAX_FILE_SIZE >> 20
            )));
        }
        let caption = caption.filter(|c| !c.is_empty());
        if caption
            .as_ref()
            .is_some_and(|c| c.len() > crate::proto::files::MAX_CAPTION)
        {
            return Err(file_error(format!(
                "the caption is longer than {} bytes",
                crate::proto::files::MAX_CAPTION
            )));
        }
        // A room we cannot send in is refused before the file is read (the
        // send would refuse it after, leaving the bytes in the store).
        if let Target::Room(room) = to
            && self.node.room(&room).is_none_or(|r| r.admin.is_none())
        {
            return Err(DaemonError::UnknownRoom(PeerId(room.0).to_hex()));
        }
        Ok(caption)
    }

    /// A job the shell ran for us is done.
    pub(crate) fn handle_file_job_done(&mut self, now: Now, done: FileJobDone) {
        self.clock = now;
        let now = now.mono;
        match done {
            FileJobDone::Imported { id, result } => {
                // A share answered already (the daemon stopping) is over.
                let Some(share) = self.files.pending.remove(&id) else {
                    return;
                };
                match self.finish_share(now, &share, result) {
                    Ok((body, recipients)) => {
                        for peer in &recipients {
                            self.discovery.activity(now, *peer);
                        }
                        self.unsaved_sends.push(UnsavedSend {
                            body,
                            recipients,
                            reply: share.reply,
                        });
                    }
                    Err(error) => self.reply(share.reply, Err(error)),
                }
            }
            FileJobDone::Exported { id, result } => {
                if let Some(stored) = self.files.exporting.remove(&id) {
                    self.exported(stored, result);
                }
            }
            FileJobDone::Finished { id, result } => {
                if let Some(stored) = self.files.finishing.remove(&id) {
                    self.fetch_finished(stored, result);
                }
            }
        }
        self.pump(now);
    }

    /// The file of `share` is in the store (or not): its file message.
    fn finish_share(
        &mut self,
        now: Instant,
        share: &PendingShare,
        imported: Result<(FileHash, u64), StoreError>,
    ) -> Result<(Vec<u8>, Vec<PeerId>), DaemonError> {
        let (hash, size) = imported.map_err(|error| {
            self.journal.note_failure(&error);
            DaemonError::from(error)
        })?;
        if let Some(why) = self.journal.disk_full() {
            return Err(DaemonError::NotSent(why.to_owned()));
        }
        let path = &share.path;
        let name = sanitize_name(
            &path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        let offer = FileOffer {
            name,
            size,
            hash,
            // A fresh key per offer: it seals the chunks in transit.
            key: self.files.rng.random(),
            caption: share.caption.clone(),
        };
        let body = offer.emit().map_err(file_error)?;
        let recipients = self.prepare_send_kind(now, share.to, KIND_FILE, &body)?;
        let shown = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        self.files.shared.insert(hash, shown);
        Ok((body, recipients))
    }

    /// The daemon stops: shares whose bytes are still being read are
    /// answered (the shell cancels their jobs).
    pub(super) fn stop_shares(&mut self) {
        for (_, share) in std::mem::take(&mut self.files.pending) {
            self.reply(
                share.reply,
                Err(file_error(format!(
                    "the daemon stopped before {} was stored; share it again",
                    share.path.display()
                ))),
            );
        }
    }

    /// Records the offer of a file message (ours or received) once it is
    /// journaled; a file message that does not decode is counted.
    pub(super) fn note_file_message(&mut self, message: &Message) {
        let Some(offer) = file_of(&message.envelope, &message.body) else {
            if !message.body.is_empty()
                && crate::daemon::files::envelope_kind(&message.envelope) == Some(KIND_FILE)
            {
                self.status.files.malformed += 1;
            }
            return;
        };
        let ours = message.sender == self.node.peer_id();
        let exported = if ours {
            self.files.shared.remove(&offer.hash)
        } else {
            None
        };
        let hash = offer.hash;
        let stored = StoredOffer {
            message: message.id,
            room: message.room,
            author: message.sender,
            timestamp: message.timestamp,
            offer,
            fetch_to: None,
            exported,
            failed: None,
        };
        if let Err(error) = self.store.put_offer(&stored) {
            self.store_error("store a file offer", error);
            return;
        }
        if ours && self.store.blob_exists(&hash) {
            self.mark_complete(&stored);
        }
    }

    fn mark_complete(&mut self, stored: &StoredOffer) {
        let meta = FileMeta {
            hash: stored.offer.hash.0,
            room: stored.room,
            message: stored.message,
            name: stored.offer.name.clone(),
            size: stored.offer.size,
            complete: true,
        };
        if let Err(error) = self.store.put_file(&meta) {
            self.store_error("store a file's state", error);
        }
    }

    /// How the file `file` names stands here.
    pub(super) fn file_entry(&self, file: FileRef) -> Result<FileEntry, DaemonError> {
        let stored = self.find_offer(file)?;
        Ok(self.entry(stored))
    }

    /// The files offered in `room`, with how each stands here.
    pub(super) fn files_in(&self, room: RoomId) -> Result<Vec<FileEntry>, DaemonError> {
        let offers = self.store.offers_in_room(&room)?;
        Ok(offers
            .into_iter()
            .map(|stored| self.entry(stored))
            .collect())
    }

    fn entry(&self, stored: StoredOffer) -> FileEntry {
        {
            {
                let state = if self.store.blob_exists(&stored.offer.hash) {
                    FileState::Complete
                } else if self
                    .files
                    .finishing
                    .values()
                    .any(|f| f.message == stored.message)
                {
                    // All here, being checked.
                    FileState::Fetching {
                        have: stored.offer.size,
                    }
                } else if let Some(fetch) = self.files.fetches.get(&stored.message) {
                    FileState::Fetching {
                        have: fetch.have_bytes(),
                    }
                } else if stored.fetch_to.is_some() {
                    FileState::Fetching { have: 0 }
                } else if let Some(reason) = stored.failed.clone() {
                    FileState::Failed { reason }
                } else {
                    FileState::Offered
                };
                FileEntry {
                    room: stored.room,
                    message: stored.message,
                    author: stored.author,
                    timestamp: stored.timestamp,
                    info: FileInfo::from(&stored.offer),
                    state,
                    path: stored.exported,
                }
            }
        }
    }
}
