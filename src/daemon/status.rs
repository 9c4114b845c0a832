//! `kith status`: every counter the daemon keeps, gathered from the
//! network thread and the socket loop.

use super::command::Command;
use super::{DaemonError, Reply, Request, ask};
use crate::net::{self, NetStats, NetStatsSnapshot};
use crate::proto::node::{DropReason, NodeStats};
use crate::proto::sync::SyncStats;

/// Counters for `kith status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// The socket loop's counters.
    pub net: NetStatsSnapshot,
    /// The node's counters, including drops by reason.
    pub node: NodeStats,
    /// Messages we sent (including re-queued ones).
    pub messages_sent: u64,
    /// Messages received and stored.
    pub messages_received: u64,
    /// Acknowledgements of our messages.
    pub delivered: u64,
    /// Our messages a recipient received but refused to store.
    pub refused: u64,
    /// Transmits for a peer without an address, or for a group.
    pub unroutable: u64,
    /// Store writes that failed (each also printed to stderr).
    pub store_errors: u64,
    /// Registry (`kr`) datagrams from a source that is not the configured
    /// registry (or with none configured), dropped.
    pub registry_foreign_dropped: u64,
    /// Registry datagrams from the registry's address that its client
    /// refused (malformed, badly signed, unasked), dropped.
    pub registry_rejected_dropped: u64,
    /// History reconciliation counters.
    pub sync: SyncStats,
    /// File transfer counters.
    pub files: FileStats,
}

/// File transfer counters (see [`Status::files`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileStats {
    /// Chunks sent to members fetching our files.
    pub chunks_sent: u64,
    /// Chunks received, opened and stored.
    pub chunks_received: u64,
    /// Chunks that did not open (forged, truncated, wrong place), dropped.
    pub chunks_bad: u64,
    /// Chunks nobody asked for (no fetch of theirs under way), dropped.
    pub chunks_unasked: u64,
    /// Requests for a file not offered in a room shared with the asker,
    /// or for chunks outside the file, dropped.
    pub requests_refused: u64,
    /// Chunks asked for beyond the per-peer limit, dropped.
    pub requests_over_limit: u64,
    /// File protocol messages that did not decode, dropped.
    pub malformed: u64,
    /// Fetches whose bytes did not match the file's hash.
    pub hash_mismatches: u64,
    /// Fetches finished.
    pub fetches_completed: u64,
}

impl Status {
    /// Every counter as `(name, value)`, in a stable order.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let net = &self.net;
        let node = &self.node;
        let mut out: Vec<(String, u64)> = [
            ("messages_sent", self.messages_sent),
            ("messages_received", self.messages_received),
            ("delivered", self.delivered),
            ("refused", self.refused),
            ("unroutable", self.unroutable),
            ("store_errors", self.store_errors),
            ("sync_sessions_started", self.sync.sessions_started),
            ("sync_sessions_completed", self.sync.sessions_completed),
            ("sync_sessions_failed", self.sync.sessions_failed),
            ("sync_bytes_sent", self.sync.bytes_sent),
            ("sync_ids_pushed", self.sync.ids_pushed),
            ("file_chunks_sent", self.files.chunks_sent),
            ("file_chunks_received", self.files.chunks_received),
            ("file_chunks_bad", self.files.chunks_bad),
            ("file_chunks_unasked", self.files.chunks_unasked),
            ("file_requests_refused", self.files.requests_refused),
            ("file_requests_over_limit", self.files.requests_over_limit),
            ("file_malformed", self.files.malformed),
            ("file_hash_mismatches", self.files.hash_mismatches),
            ("file_fetches_completed", self.files.fetches_completed),
            ("forwarded", node.forwarded),
            ("forwards_opened", node.forwards_opened),
            ("chains_restarted", node.chains_restarted),
            ("net_received", net.received),
            ("net_sent", net.sent),
            ("net_received_multicast", net.received_multicast),
            ("net_oversize_dropped", net.oversize_dropped),
            ("net_own_echo_dropped", net.own_echo_dropped),
            ("net_recv_errors", net.recv_errors),
            ("net_send_errors", net.send_errors),
            ("net_send_would_block", net.send_would_block),
            ("net_queue_drops", net.queue_drops),
            (
                "net_oversize_transmit_dropped",
                net.oversize_transmit_dropped,
            ),
            ("net_multicast_disabled_drops", net.multicast_disabled_drops),
            ("registry_foreign_dropped", self.registry_foreign_dropped),
            ("registry_rejected_dropped", self.registry_rejected_dropped),
            ("handshakes_started", node.handshakes_started),
            ("handshakes_answered", node.handshakes_answered),
            ("sessions_established", node.sessions_established),
            ("rekeys_started", node.rekeys_started),
            ("chains_rotated", node.chains_rotated),
            ("sealed_sent", node.sealed_sent),
            ("sealed_received", node.sealed_received),
            ("batch_verified", node.batch_verified),
            ("signatures_checked", node.signatures_checked),
            ("dropped_total", node.total_dropped()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
        for reason in DropReason::ALL {
            out.push((format!("dropped_{reason:?}"), node.dropped(reason)));
        }
        out
    }
}

/// Every counter: the node's from the network thread, the socket loop's
/// read directly. The one way to build a [`Status`], for the handle and
/// the control socket alike.
pub(crate) fn status(
    sender: &net::CommandSender<Command>,
    net: &NetStats,
) -> Result<Status, DaemonError> {
    let Reply::Status(mut status) = ask(sender, Request::Status)? else {
        return Err(DaemonError::BadReply);
    };
    status.net = net.snapshot();
    Ok(*status)
}
