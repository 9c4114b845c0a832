//! Message search off the network loop. The loop settles the journal,
//! takes the rooms' storage keys ([`Store::search_scope`]) and a snapshot
//! of the display names, and hands the job to the `kith-search` thread,
//! which opens every row on its own read-only connection
//! ([`Store::reader`]) and answers the caller directly. A search never
//! delays a datagram, an acknowledgement or another command; searches run
//! one at a time, in the order asked.

use std::collections::HashMap;
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;

use super::DaemonError;
use crate::proto::ids::{MessageId, PeerId, RoomId};
use crate::store::{Position, SearchQuery, SearchScope, Store, StoreReader};

/// A message whose text (a file message: its file's name or caption)
/// matched a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchResult {
    pub room: RoomId,
    pub id: MessageId,
    /// Its author.
    pub from: PeerId,
    /// How its author is shown (see [`super::PeerInfo::display_name`]).
    pub from_name: String,
    /// Its hybrid-logical-clock timestamp (`proto::hlc::millis` gives
    /// milliseconds since the epoch).
    pub timestamp: u64,
    /// Its text; a file message's caption ("" without one).
    pub text: String,
    /// For a file message (found by its file's name or caption), what it
    /// offers; `None` for text.
    pub file: Option<super::FileInfo>,
    /// Whether we wrote it.
    pub ours: bool,
}

impl SearchResult {
    /// Where the next page starts: pass it as `before`.
    pub fn cursor(&self) -> Position {
        Position {
            timestamp: self.timestamp,
            id: self.id,
        }
    }
}

/// `TIMESTAMP.ID_HEX`: a position as the CLI and the control socket carry it.
pub fn cursor_text(position: &Position) -> String {
    format!("{}.{}", position.timestamp, position.id.to_hex())
}

/// Parses [`cursor_text`]; `None` if it is not one.
pub fn parse_cursor(text: &str) -> Option<Position> {
    let (timestamp, id) = text.trim().split_once('.')?;
    Some(Position {
        timestamp: timestamp.parse().ok()?,
        id: MessageId(PeerId::from_hex(id)?.0),
    })
}

/// One search for the worker.
pub(crate) struct SearchJob {
    pub(crate) scope: SearchScope,
    pub(crate) query: SearchQuery,
    /// How peers are shown, at the time of asking.
    pub(crate) labels: HashMap<PeerId, String>,
    pub(crate) me: PeerId,
    pub(crate) reply: Sender<Result<Vec<SearchResult>, DaemonError>>,
}

/// The `kith-search` thread and its queue. Dropping it lets the thread
/// finish the job at hand and end.
pub(crate) struct Searcher {
    jobs: Option<Sender<SearchJob>>,
    thread: Option<JoinHandle<()>>,
}

impl Searcher {
    /// Starts the thread with its own read-only connection to `store`.
    pub(crate) fn start(store: &Store) -> Result<Self, DaemonError> {
        let reader = store.reader()?;
        let (jobs, rx) = mpsc::channel::<SearchJob>();
        let thread = std::thread::Builder::new()
            .name("kith-search".into())
            .spawn(move || {
                for job in rx {
                    let _ = job.reply.send(run(&reader, &job));
                }
            })
            .map_err(|e| DaemonError::Search(format!("cannot start the search thread: {e}")))?;
        Ok(Searcher {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Queues `job`; its caller hears from the thread.
    pub(crate) fn submit(&self, job: SearchJob) {
        if let Some(jobs) = &self.jobs
            && let Err(mpsc::SendError(job)) = jobs.send(job)
        {
            let _ = job
                .reply
                .send(Err(DaemonError::Search("the search thread stopped".into())));
        }
    }
}

impl Drop for Searcher {
    fn drop(&mut self) {
        // Closing the queue ends the thread after its current job.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(reader: &StoreReader, job: &SearchJob) -> Result<Vec<SearchResult>, DaemonError> {
    let hits = reader.search(&job.scope, &job.query)?;
    Ok(hits
        .into_iter()
        .map(|hit| SearchResult {
            room: hit.room,
            id: hit.id,
            from_name: job
                .labels
                .get(&hit.sender)
                .cloned()
                .unwrap_or_else(|| hit.sender.short()),
            from: hit.sender,
            timestamp: hit.timestamp,
            ours: hit.sender == job.me,
            file: hit.file.as_ref().map(super::FileInfo::from),
            text: hit.text,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let position = Position {
            timestamp: 1_700_000_000_123,
            id: MessageId([0xab; 32]),
        };
        assert_eq!(parse_cursor(&cursor_text(&position)), Some(position));
        for bad in [
            "",
            "12",
            "x.ab",
            "12.zz",
            &format!("12.{}", "ab".repeat(31)),
        ] {
            assert_eq!(parse_cursor(bad), None, "{bad:?}");
        }
    }
}
