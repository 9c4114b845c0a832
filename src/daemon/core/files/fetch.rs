//! Fetching a file: one fetch per file, a window of chunks asked for,
//! a source that stalls left for the next, resumed after a restart.

use std::path::{Path, PathBuf};

use super::super::*;
use super::*;

impl DaemonCore {
    /// The offer `file` names: by hash (the oldest offer of it), else the
    /// same 32 bytes as a message id.
    pub(in crate::daemon::core) fn find_offer(
        &self,
        file: FileRef,
    ) -> Result<StoredOffer, DaemonError> {
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
    pub(in crate::daemon::core) fn fetch_file(
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
    pub(in crate::daemon::core) fn export(&mut self, stored: &StoredOffer, to_dir: &Path) {
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
    pub(in crate::daemon::core) fn exported(
        &mut self,
        stored: StoredOffer,
        result: Result<PathBuf, StoreError>,
    ) {
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

    pub(in crate::daemon::core) fn fetch_failed(&mut self, stored: &StoredOffer, reason: String) {
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

    pub(in crate::daemon::core) fn start_fetch(
        &mut self,
        now: Instant,
        stored: StoredOffer,
        to_dir: PathBuf,
    ) {
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
    pub(in crate::daemon::core) fn fetch_step(&mut self, now: Instant, id: MessageId) {
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

    pub(in crate::daemon::core) fn report_progress(
        &mut self,
        now: Instant,
        id: MessageId,
        force: bool,
    ) {
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
    pub(in crate::daemon::core) fn request_more(&mut self, now: Instant, id: MessageId) {
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
    pub(in crate::daemon::core) fn finish_fetch(&mut self, id: MessageId) {
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
    pub(in crate::daemon::core) fn fetch_finished(
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

    pub(in crate::daemon::core) fn start_waiting(&mut self) {
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

    pub(in crate::daemon::core) fn on_chunk(
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

    pub(in crate::daemon::core) fn on_unavailable(
        &mut self,
        now: Instant,
        peer: PeerId,
        offer: MessageId,
    ) {
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
    pub(in crate::daemon::core) fn next_source(&mut self, now: Instant, id: MessageId) {
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
    pub(in crate::daemon::core) fn files_timeout(&mut self, now: Instant) {
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
    pub(in crate::daemon::core) fn resume_fetches(&mut self, now: Instant) {
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
}
