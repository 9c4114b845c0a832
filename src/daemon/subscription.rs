//! A subscriber's end of the daemon: its stream of [`Update`]s and the way
//! to make requests answered in that stream (see [`super::api`] for the
//! guarantees).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use super::DaemonError;
use super::api::{ReplyTo, Request, RequestId, Update};
use super::command::Command;
use crate::net::CommandSender;

/// A stream of [`Update`]s and the way to make requests answered in it.
/// Dropping it ends the subscription.
pub struct Subscription {
    pub(crate) id: u64,
    pub(crate) updates: Receiver<Update>,
    pub(crate) commands: CommandSender<Command>,
    pub(crate) next_request: AtomicU64,
}

impl Subscription {
    /// Queues `request` and returns at once; its answer arrives as
    /// [`Update::Reply`] with the returned id.
    pub fn request(&self, request: Request) -> Result<RequestId, DaemonError> {
        let id = RequestId(self.next_request.fetch_add(1, Ordering::Relaxed));
        self.commands.send(Command::Request {
            request,
            reply: ReplyTo::Subscriber(self.id, id),
        })?;
        Ok(id)
    }

    /// The next update, if one is waiting. `None` also when the daemon has
    /// stopped (then [`Subscription::recv_timeout`] says so).
    pub fn try_recv(&self) -> Option<Update> {
        self.updates.try_recv().ok()
    }

    /// Waits up to `timeout` for the next update.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Update, DaemonError> {
        self.updates.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => DaemonError::NotResponding,
            RecvTimeoutError::Disconnected => DaemonError::Stopped,
        })
    }

    /// The channel itself, for `select`-style use or iteration.
    pub fn receiver(&self) -> &Receiver<Update> {
        &self.updates
    }
}
