//! The handle's calls into the network thread: a command with a reply
//! channel, and a bounded wait for the answer.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use super::api::ReplyTo;
use super::command::{Command, Sink};
use super::search::SearchResult;
use super::{DaemonError, REPLY_TIMEOUT, Reply, Request, SEARCH_TIMEOUT};
use crate::net;

/// A search, for the handle and the control socket alike: it may take
/// longer than other commands (see [`SEARCH_TIMEOUT`]).
pub(super) fn search_request(
    sender: &net::CommandSender<Command>,
    text: String,
    room: Option<String>,
    before: Option<crate::store::Position>,
    limit: usize,
) -> Result<Vec<SearchResult>, DaemonError> {
    let (reply, rx) = mpsc::channel();
    sender.send(Command::Search {
        text,
        room,
        before,
        limit,
        reply,
    })?;
    wait_for(&rx, SEARCH_TIMEOUT)?
}

/// Sends a command with a reply channel and waits (bounded) for the answer.
pub(super) fn request<T>(
    sender: &net::CommandSender<Command>,
    command: impl FnOnce(Sender<T>) -> Command,
) -> Result<T, DaemonError> {
    let (tx, rx) = mpsc::channel();
    sender.send(command(tx))?;
    wait_for(&rx, REPLY_TIMEOUT)
}

/// The answer on `rx`, or why none came within `timeout`.
pub(super) fn wait_for<T>(rx: &Receiver<T>, timeout: Duration) -> Result<T, DaemonError> {
    rx.recv_timeout(timeout).map_err(|error| match error {
        RecvTimeoutError::Timeout => DaemonError::NotResponding,
        RecvTimeoutError::Disconnected => DaemonError::Stopped,
    })
}

/// How long [`super::DaemonHandle::share_file`] waits for the file to be
/// stored.
pub(crate) const SHARE_TIMEOUT: Duration = Duration::from_secs(300);

/// [`ask`] with a bound of its own (a share reads a whole file first).
pub(crate) fn ask_within(
    sender: &net::CommandSender<Command>,
    request: Request,
    timeout: Duration,
) -> Result<Reply, DaemonError> {
    let (tx, rx) = mpsc::channel();
    sender.send(Command::Request {
        request,
        reply: ReplyTo::Channel(tx),
    })?;
    wait_for(&rx, timeout)?
}

/// Sends a request and waits (bounded) for the answer.
pub(super) fn ask(
    sender: &net::CommandSender<Command>,
    request: Request,
) -> Result<Reply, DaemonError> {
    ask_within(sender, request, REPLY_TIMEOUT)
}

/// Adds a subscriber and waits (bounded) until it is in place; its id.
pub(super) fn subscribe(
    sender: &net::CommandSender<Command>,
    sink: Sink,
    since: Option<u64>,
    waker: Option<Box<dyn Fn() + Send>>,
) -> Result<u64, DaemonError> {
    request(sender, |reply| Command::Subscribe {
        sink,
        since,
        waker,
        reply,
    })
}
