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

    /// The offer `file` names: by hash (the oldest offer of it), else the
    /// same 32 bytes as a message id.
    fn find_offer(&self, file: FileRef) -> Result<StoredOffer, DaemonError> {
        let found = match file {
            FileRef::Message(id) => self.store.offer(&id)?,
            FileRef::Hash(hash) => match self.store.offers_of(&hash)?.into_iter().next() {
                Some(offer) => Some(offer),
                None => self.store.offer(&MessageId(hash.0))?,
            },
        };
        found.ok_or_else(|| file_error("no file with that hash or message id was shared with us"))
    }

    /// Starts fetching `file` into `to_dir` (or exports it at once when
    /// its bytes are here).
    pub(super) fn fetch_file(
        &mut self,
        now: Instant,
        file: FileRef,
        to_dir: PathBuf,
    ) -> Result<(), DaemonError> {
        let stored = self.find_offer(file)?;
        let hash = stored.offer.hash;
        if self.store.blob_exists(&hash) {
            self.export(&stored, &to_dir);
            return Ok(());
        }
        if self
            .files
            .fetches
            .values()
            .any(|f| f.stored.offer.hash == hash)
            || self.files.waiting.iter().any(|(m, _)| *m == stored.message)
            || self.files.finishing.values().any(|f| f.offer.hash == hash)
        {
            return Ok(());
        }
        self.store
            .set_offer_state(&stored.message, Some(&to_dir), None, None)?;
        self.start_fetch(now, stored, to_dir);
        Ok(())
    }

    /// Has the shell write the plaintext of a complete file to `to_dir`
    /// ([`FileJob::Export`]); it is reported when written.
    fn export(&mut self, stored: &StoredOffer, to_dir: &Path) {
        let job = self.files.next_job;
        self.files.next_job += 1;
        self.outputs.push_back(Output::Job(FileJob::Export {
            id: job,
            hash: stored.offer.hash,
            size: stored.offer.size,
            to_dir: to_dir.to_owned(),
            name: stored.offer.name.clone(),
        }));
        self.files.exporting.insert(job, stored.clone());
    }

    /// The export of a complete file ended.
    fn exported(&mut self, stored: StoredOffer, result: Result<PathBuf, StoreError>) {
        match result {
            Ok(path) => {
                if let Err(error) =
                    self.store
                        .set_offer_state(&stored.message, None, Some(&path), None)
                {
                    self.store_error("store a file's state", error);
                }
                self.publish(Event::FileComplete {
                    room: stored.room,
                    hash: stored.offer.hash,
                    path,
                });
            }
            Err(error) => {
                self.journal.note_failure(&error);
                self.fetch_failed(&stored, error.to_string());
            }
        }
    }

    fn fetch_failed(&mut self, stored: &StoredOffer, reason: String) {
        log::warn!("file {}: {reason}", stored.offer.hash.short());
        if let Err(error) = self
            .store
            .set_offer_state(&stored.message, None, None, Some(&reason))
        {
            self.store_error("store a file's state", error);
        }
        self.publish(Event::FileFailed {
            room: stored.room,
            hash: stored.offer.hash,
            reason,
        });
    }

    fn start_fetch(&mut self, now: Instant, stored: StoredOffer, to_dir: PathBuf) {
        if self.files.fetches.len() >= MAX_FETCHES {
            self.files.waiting.push_back((stored.message, to_dir));
            return;
        }
        let hash = stored.offer.hash;
        let have = match self.store.begin_blob(&hash, stored.offer.size) {
            Ok(have) => have,
            Err(error) => {
                self.journal.note_failure(&error);
                self.fetch_failed(&stored, error.to_string());
                return;
            }
        };
        let me = self.node.peer_id();
        let mut sources = vec![stored.author];
        if let Some(room) = self.node.room(&stored.room) {
            sources.extend(room.members);
        }
        sources.retain(|p| *p != me);
        let mut seen = HashSet::new();
        sources.retain(|p| seen.insert(*p));
        let have_count = have.iter().filter(|h| **h).count() as u32;
        let id = stored.message;
        self.files.fetches.insert(
            id,
            Fetch {
                stored,
                to_dir,
                have,
                low: 0,
                have_count,
                requested: BTreeMap::new(),
                sources,
                source: 0,
                last_activity: now,
                reported: None,
            },
        );
        self.fetch_step(now, id);
    }

    /// Finishes a fetch whose chunks are all here, or asks for more.
    fn fetch_step(&mut self, now: Instant, id: MessageId) {
        let Some(fetch) = self.files.fetches.get(&id) else {
            return;
        };
        if fetch.have_count as usize == fetch.have.len() {
            self.finish_fetch(id);
            return;
        }
        self.report_progress(now, id, false);
        self.request_more(now, id);
    }

    fn report_progress(&mut self, now: Instant, id: MessageId, force: bool) {
        let Some(fetch) = self.files.fetches.get_mut(&id) else {
            return;
        };
        if !force && fetch.reported.is_some_and(|at| now < at + PROGRESS_EVERY) {
            return;
        }
        fetch.reported = Some(now);
        let event = Event::FileProgress {
            room: fetch.stored.room,
            hash: fetch.stored.offer.hash,
            have: fetch.have_bytes(),
            size: fetch.stored.offer.size,
        };
        self.publish(event);
    }

    /// Asks the current source for missing chunks, up to [`WINDOW`] in
    /// flight, in ranges of consecutive chunks.
    fn request_more(&mut self, now: Instant, id: MessageId) {
        let Some(fetch) = self.files.fetches.get_mut(&id) else {
            return;
        };
        let Some(source) = fetch.source() else {
            return;
        };
        let room = fetch.stored.room;
        let room_free = WINDOW.saturating_sub(fetch.requested.len());
        let mut wanted: Vec<u32> = Vec::new();
        let mut low = None;
        for (index, have) in fetch.have.iter().enumerate().skip(fetch.low) {
            if wanted.len() >= room_free {
                break;
            }
            let index = index as u32;
            if !*have && !fetch.requested.contains_key(&index) {
                low.get_or_insert(index as usize);
                wanted.push(index);
            } else if !*have {
                low.get_or_insert(index as usize);
            }
        }
        fetch.low = low.unwrap_or(fetch.have.len());
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for index in wanted {
            match ranges.last_mut() {
                Some((first, count)) if *first + *count == index && *count < MAX_GET_CHUNKS => {
                    *count += 1
                }
                _ => ranges.push((index, 1)),
            }
        }
        for (first, count) in ranges {
            let get = FileMessage::Get {
                offer: id,
                first,
                count,
            };
            if self.node.send_file(now, source, room, get.emit()).is_err() {
                // A full stream or a member gone: the stall timer retries.
                break;
            }
            if let Some(fetch) = self.files.fetches.get_mut(&id) {
                for index in first..first + count {
                    fetch.requested.insert(index, now);
                }
            }
        }
    }

    /// All chunks of a fetch are here: the shell checks them against the
    /// hash and exports the file ([`FileJob::Finish`]); meanwhile the
    /// fetch's place goes to the next one waiting.
    fn finish_fetch(&mut self, id: MessageId) {
        let Some(fetch) = self.files.fetches.remove(&id) else {
            return;
        };
        let stored = fetch.stored;
        let job = self.files.next_job;
        self.files.next_job += 1;
        self.outputs.push_back(Output::Job(FileJob::Finish {
            id: job,
            hash: stored.offer.hash,
            size: stored.offer.size,
            to_dir: fetch.to_dir,
            name: stored.offer.name.clone(),
        }));
        self.files.finishing.insert(job, stored);
        self.start_waiting();
    }

    /// The check and export of a fetched file ended.
    fn fetch_finished(
        &mut self,
        stored: StoredOffer,
        finished: Result<Option<PathBuf>, StoreError>,
    ) {
        let hash = stored.offer.hash;
        match finished {
            Ok(Some(path)) => {
                self.status.files.fetches_completed += 1;
                self.mark_complete(&stored);
                if let Err(error) =
                    self.store
                        .set_offer_state(&stored.message, None, Some(&path), None)
                {
                    self.store_error("store a file's state", error);
                }
                self.publish(Event::FileComplete {
                    room: stored.room,
                    hash,
                    path,
                });
            }
            Ok(None) => {
                self.status.files.hash_mismatches += 1;
                self.store.discard_blob_part(&hash);
                self.fetch_failed(
                    &stored,
                    "the bytes received did not match the file's hash (a member sent wrong data); fetch it again".to_owned(),
                );
            }
            Err(error) => {
                self.journal.note_failure(&error);
                self.fetch_failed(&stored, error.to_string());
            }
        }
    }

    fn start_waiting(&mut self) {
        let now = self.clock.mono;
        while self.files.fetches.len() < MAX_FETCHES {
            let Some((message, to_dir)) = self.files.waiting.pop_front() else {
                return;
            };
            match self.store.offer(&message) {
                Ok(Some(stored)) => self.start_fetch(now, stored, to_dir),
                Ok(None) => {}
                Err(error) => self.store_error("read a file offer", error),
            }
        }
    }

    /// A file-protocol message from `peer`, a member of `room`.
    pub(super) fn on_file_message(
        &mut self,
        now: Instant,
        room: RoomId,
        peer: PeerId,
        payload: &[u8],
    ) {
        if self.node.is_blocked(&peer) {
            self.status.files.requests_refused += 1;
            return;
        }
        let Ok(message) = FileMessage::parse(payload) else {
            self.status.files.malformed += 1;
            return;
        };
        match message {
            FileMessage::Get {
                offer,
                first,
                count,
            } => self.on_get(now, room, peer, offer, first, count),
            FileMessage::Chunk {
                offer,
                index,
                sealed,
            } => self.on_chunk(now, room, peer, offer, index, &sealed),
            FileMessage::Unavailable { offer } => self.on_unavailable(now, peer, offer),
        }
    }

    fn on_get(
        &mut self,
        now: Instant,
        room: RoomId,
        peer: PeerId,
        offer: MessageId,
        first: u32,
        count: u32,
    ) {
        let stored = match self.store.offer(&offer) {
            Ok(Some(stored)) if stored.room == room => stored,
            Ok(_) => {
                // Not a file offered in a room this peer shares with us.
                self.status.files.requests_refused += 1;
                return;
            }
            Err(error) => {
                self.store_error("read a file offer", error);
                return;
            }
        };
        let chunks = stored.offer.chunks();
        if count == 0 || count > MAX_GET_CHUNKS || first >= chunks {
            self.status.files.requests_refused += 1;
            return;
        }
        if !self.store.blob_exists(&stored.offer.hash) {
            let answer = FileMessage::Unavailable { offer }.emit();
            let _ = self.node.send_file(now, peer, room, answer);
            return;
        }
        let last = first.saturating_add(count).min(chunks);
        let queue = self.files.serving.entry(peer).or_default();
        for index in first..last {
            if queue.len() >= MAX_SERVE_QUEUE {
                self.status.files.requests_over_limit += 1;
                continue;
            }
            queue.push_back((room, offer, index));
        }
        self.serve(now);
    }

    /// Sends queued chunks until each peer's stream is full.
    fn serve(&mut self, now: Instant) {
        self.files.serve_at = None;
        let peers: Vec<PeerId> = self.files.serving.keys().copied().collect();
        for peer in peers {
            while let Some(&(room, offer, index)) =
                self.files.serving.get(&peer).and_then(|q| q.front())
            {
                let chunk = match self.sealed_chunk(&offer, index) {
                    Ok(chunk) => chunk,
                    Err(error) => {
                        log::warn!("cannot serve chunk {index} of {}: {error}", offer.short());
                        if let Some(queue) = self.files.serving.get_mut(&peer) {
                            queue.pop_front();
                        }
                        continue;
                    }
                };
                let message = FileMessage::Chunk {
                    offer,
                    index,
                    sealed: chunk,
                };
                match self.node.send_file(now, peer, room, message.emit()) {
                    Ok(()) => {
                        self.status.files.chunks_sent += 1;
                        if let Some(queue) = self.files.serving.get_mut(&peer) {
                            queue.pop_front();
                        }
                    }
                    Err(NodeError::Backpressure) => {
                        self.files.serve_at = Some(now + SERVE_RETRY);
                        break;
                    }
                    Err(_) => {
                        // No longer a member, or not a contact: drop it all.
                        self.files.serving.remove(&peer);
                        break;
                    }
                }
            }
        }
        self.files.serving.retain(|_, q| !q.is_empty());
    }

    fn sealed_chunk(&self, offer: &MessageId, index: u32) -> Result<Vec<u8>, DaemonError> {
        let stored = self
            .store
            .offer(offer)?
            .ok_or_else(|| file_error("offer gone"))?;
        let plain = self
            .store
            .read_blob_chunk(&stored.offer.hash, stored.offer.size, index)?;
        seal_chunk(&stored.offer, index, &plain).map_err(file_error)
    }

    fn on_chunk(
        &mut self,
        now: Instant,
        room: RoomId,
        peer: PeerId,
        offer: MessageId,
        index: u32,
        sealed: &[u8],
    ) {
        let Some(fetch) = self.files.fetches.get_mut(&offer) else {
            self.status.files.chunks_unasked += 1;
            return;
        };
        if fetch.stored.room != room {
            self.status.files.chunks_unasked += 1;
            return;
        }
        let plain = match open_chunk(&fetch.stored.offer, index, sealed) {
            Ok(plain) => plain,
            Err(_) => {
                self.status.files.chunks_bad += 1;
                return;
            }
        };
        if fetch.have[index as usize] {
            return;
        }
        let hash = fetch.stored.offer.hash;
        let size = fetch.stored.offer.size;
        if let Err(error) = self.store.write_blob_chunk(&hash, size, index, &plain) {
            self.journal.note_failure(&error);
            if let Some(fetch) = self.files.fetches.remove(&offer) {
                self.fetch_failed(&fetch.stored, error.to_string());
            }
            self.start_waiting();
            return;
        }
        self.status.files.chunks_received += 1;
        if let Some(fetch) = self.files.fetches.get_mut(&offer) {
            fetch.have[index as usize] = true;
            fetch.have_count += 1;
            fetch.requested.remove(&index);
            fetch.last_activity = now;
            // A chunk from another member than the one asked is welcome.
            let _ = peer;
        }
        self.fetch_step(now, offer);
    }

    fn on_unavailable(&mut self, now: Instant, peer: PeerId, offer: MessageId) {
        let Some(fetch) = self.files.fetches.get_mut(&offer) else {
            return;
        };
        if fetch.source() != Some(peer) {
            return;
        }
        // Someone else online who may hold it; if nobody, the stall timer
        // asks again in a while (never at once: that would ping-pong).
        fetch.requested.clear();
        fetch.low = 0;
        fetch.last_activity = now;
        let n = fetch.sources.len();
        let next = (1..n)
            .map(|k| (fetch.source + k) % n)
            .find(|&i| self.discovery.is_online(&fetch.sources[i]));
        if let Some(i) = next {
            fetch.source = i;
            self.request_more(now, offer);
        }
    }

    /// Moves a fetch on to the next online member that may hold the file
    /// and asks it again for what is missing.
    fn next_source(&mut self, now: Instant, id: MessageId) {
        let Some(fetch) = self.files.fetches.get_mut(&id) else {
            return;
        };
        fetch.last_activity = now;
        let n = fetch.sources.len();
        let next = (1..=n)
            .map(|k| (fetch.source + k) % n.max(1))
            .find(|&i| self.discovery.is_online(&fetch.sources[i]));
        // Nobody online: the requests wait in the reliable layer for the
        // source to come back. Otherwise another member, or (the only one
        // online) the same again: what it has not sent is asked for anew.
        if let Some(i) = next {
            fetch.source = i;
            fetch.requested.clear();
            fetch.low = 0;
            self.request_more(now, id);
        }
    }

    /// Timers: sources silent too long, chunks waiting for a full stream,
    /// fetches to take up after the start.
    pub(super) fn files_timeout(&mut self, now: Instant) {
        if self.files.serve_at.is_some_and(|at| at <= now) {
            self.serve(now);
        }
        let stalled: Vec<MessageId> = self
            .files
            .fetches
            .iter()
            .filter(|(_, f)| f.last_activity + STALL <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in stalled {
            self.next_source(now, id);
        }
    }

    /// Takes up the fetches a previous run left unfinished (once, at the
    /// first pump), from the chunks already stored.
    pub(super) fn resume_fetches(&mut self, now: Instant) {
        if self.files.resumed {
            return;
        }
        self.files.resumed = true;
        match self.store.unfinished_fetches() {
            Ok(unfinished) => {
                for stored in unfinished {
                    let to_dir = stored.fetch_to.clone().unwrap_or_default();
                    if self.store.blob_exists(&stored.offer.hash) {
                        // Checked on the file thread before a stop came
                        // ahead of its result: only the export is left.
                        self.mark_complete(&stored);
                        self.export(&stored, &to_dir);
                        continue;
                    }
                    self.start_fetch(now, stored, to_dir);
                }
            }
            Err(error) => self.store_error("read unfinished fetches", error),
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
