//! What a sender and receiver know of one peer across rooms.

use super::rtt::Rtt;

/// What we know of one peer across rooms.
#[derive(Debug)]
pub(super) struct PeerState {
    pub(super) rtt: Rtt,
    pub(super) unreachable: bool,
    /// Reassembly bytes buffered from this peer, across rooms.
    pub(super) reassembly_bytes: usize,
}
