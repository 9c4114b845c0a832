//! Counters and buffer occupancy, for metrics and tests.

/// Counters, for metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams emitted, indexed by [`PacketKind::index`](super::PacketKind::index).
    pub sent: [u64; 4],
    /// Data packets sent again (NACK repairs, timeouts, fan-out changes).
    pub retransmits: u64,
    /// Datagrams rejected as malformed, oversized or of another version.
    pub malformed: u64,
    /// Valid packets for unknown rooms or from non-members.
    pub foreign: u64,
    /// Data packets that arrived twice.
    pub duplicate_packets: u64,
    /// Complete messages suppressed because their id was already delivered.
    pub duplicate_messages: u64,
    /// Data packets dropped because a receive window or reassembly budget was
    /// full, or because they expired incomplete.
    pub dropped_buffer: u64,
    /// RTT samples taken.
    pub rtt_samples: u64,
    /// Repairs sent once to the group because several members lost the
    /// same packet.
    pub group_repairs: u64,
    /// ACKs and NACKs that came in a group frame, dropped: such a frame
    /// does not prove which member sent it.
    pub group_feedback: u64,
    /// Packets in a group frame that named a new session for a stream we
    /// already hear, dropped: a sender's restart is believed only from a
    /// packet over the pairwise session (its next repair).
    pub group_session_switches: u64,
}

/// Current buffer occupancy, to check that nothing grows without bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufferUsage {
    /// Packets in all send queues.
    pub queued_packets: usize,
    /// Packets buffered for reassembly/reordering, all streams.
    pub reassembly_packets: usize,
    /// Bytes buffered for reassembly, all streams.
    pub reassembly_bytes: usize,
    /// Delivered messages awaiting store confirmation.
    pub unconfirmed: usize,
    /// Entries in the duplicate filter.
    pub dedup_ids: usize,
    /// Pending retransmissions plus built data datagrams.
    pub retransmit_queue: usize,
    /// Control datagrams waiting to be polled.
    pub control_queue: usize,
}
