//! What the daemon's handles (the library handle, subscriptions, the
//! control socket) send to the network thread. It sits between the API
//! types ([`super::api`]) and the driver that answers it, so neither
//! imports the other's internals.

use std::sync::mpsc::Sender;

use super::DaemonError;
use super::Event;
use super::address_book::Attach;
use super::api::{ReplyTo, Request, Update};
use super::search::SearchResult;

/// What the daemon handle and the control socket ask of the network thread.
/// Requests are typed: text a person typed is turned into ids by
/// [`Request::Resolve`] at the edge (see [`super::driver`]).
pub(crate) enum Command {
    /// A request, answered through `reply`.
    Request { request: Request, reply: ReplyTo },
    /// Adds a subscriber; `reply` answers with its id once it is in place,
    /// so an event of anything the caller does afterwards reaches it.
    Subscribe {
        sink: Sink,
        /// Replay what was stored after this cursor first.
        since: Option<u64>,
        waker: Option<Box<dyn Fn() + Send>>,
        reply: Sender<u64>,
    },
    /// mDNS queued events for the loop (sent by its bridge thread).
    DiscoveryWake,
    /// The socket is bound: start mDNS and the registry.
    AttachDiscovery(Box<Attach>),
    /// Where the file thread hands its results back (the loop itself).
    AttachFileJobs(crate::net::CommandSender<Command>),
    /// A file job ran (sent by the file thread).
    FileJobDone(super::core::FileJobDone),
    /// Chooses our display name.
    SetProfile {
        name: String,
        reply: Sender<Result<(), DaemonError>>,
    },
    /// Searches message text (on the search thread, which replies).
    Search {
        text: String,
        /// A room (or peer, for its direct chat) as the user typed it.
        room: Option<String>,
        before: Option<crate::store::Position>,
        limit: usize,
        reply: Sender<Result<Vec<SearchResult>, DaemonError>>,
    },
}

/// Where a subscriber's events go.
pub(crate) enum Sink {
    /// Events only ([`super::DaemonHandle::events`]).
    Events(Sender<Event>),
    /// Events, replies and the end of a replay ([`super::Subscription`]).
    Updates(Sender<Update>),
}
