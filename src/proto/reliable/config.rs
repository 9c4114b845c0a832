//! Tunables of the layer and of one room.

use std::time::Duration;

/// Per-room settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomConfig {
    /// Send to the room's multicast group (members that cannot hear it are
    /// detected and served by unicast). Off: unicast fan-out only.
    pub multicast: bool,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig { multicast: true }
    }
}

/// Tunables. The defaults suit a LAN.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// RTT assumed before the first sample.
    pub initial_rtt: Duration,
    /// Floor of the retransmission timeout.
    pub rto_min: Duration,
    /// Cap of the (backed-off) retransmission timeout; also the probe
    /// interval for unreachable peers.
    pub rto_max: Duration,
    /// Timeouts without an ACK before a peer is reported unreachable.
    pub max_retries: u32,
    /// Longest a receiver holds an ACK back to batch it with others.
    pub max_ack_delay: Duration,
    /// A multicast room quiet for this long makes its next lone packet
    /// (nothing older unacknowledged) ask for an immediate ACK (`ack_now`):
    /// a chat's "delivered" comes at once, a stream's ACKs stay paced. In a
    /// unicast room every lone packet asks for one.
    pub lone_gap: Duration,
    /// A receiver ACKs at once after this many unacknowledged packets.
    pub ack_every: u32,
    /// Minimum wait before a receiver NACKs a gap.
    pub nack_delay: Duration,
    /// Random extra wait added to `nack_delay` (uniform in `[0, jitter)`).
    pub nack_jitter: Duration,
    /// Wait before a NACK is repeated (doubles each time, capped by `rto_max`).
    pub nack_retry: Duration,
    /// How long a NACKed multicast packet is held before its repair, so
    /// NACKs from several members for it are answered by one group repair.
    pub repair_hold: Duration,
    /// Idle time after multicast data before a heartbeat goes to the group.
    pub heartbeat_interval: Duration,
    /// Packets in flight per room beyond the slowest reachable member.
    pub send_window: u64,
    /// Packets a room's send queue may hold.
    pub max_queued: usize,
    /// Data packets per second the token bucket allows (across all rooms):
    /// a flood guard, not congestion control. The default, 50 000 (about
    /// 30 MB/s of chat-sized packets, 60 MB/s of full ones), lets one
    /// sender reach 25 000 messages/s in a 3-member room sent by unicast
    /// (a packet per other member).
    pub rate: u32,
    /// Token bucket depth: the largest burst.
    pub burst: u32,
    /// Packets a receiver buffers ahead of its delivery cursor, per stream.
    pub recv_window: u64,
    /// Reassembly bytes buffered per sending peer, across rooms.
    pub max_reassembly_per_peer: usize,
    /// Out-of-order packets waiting longer than this are dropped (they are
    /// retransmitted on request).
    pub reassembly_timeout: Duration,
    /// Delivered messages awaiting [`Reliable::confirm_stored`](super::Reliable::confirm_stored), per stream;
    /// delivery pauses beyond it.
    pub max_unconfirmed: usize,
    /// Recently delivered message ids remembered for duplicate suppression.
    pub dedup_capacity: usize,
    /// Multicast packets a live member may miss in a row before it is served
    /// by unicast.
    pub fallback_after: u64,
    /// Packets retransmitted per timeout per member.
    pub rto_burst: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            initial_rtt: Duration::from_millis(20),
            rto_min: Duration::from_millis(50),
            rto_max: Duration::from_secs(5),
            max_retries: 8,
            max_ack_delay: Duration::from_millis(100),
            lone_gap: Duration::from_millis(20),
            ack_every: 32,
            nack_delay: Duration::from_millis(5),
            nack_jitter: Duration::from_millis(40),
            nack_retry: Duration::from_millis(100),
            repair_hold: Duration::from_millis(4),
            heartbeat_interval: Duration::from_millis(100),
            send_window: 512,
            max_queued: 8192,
            rate: 50_000,
            burst: 128,
            recv_window: 1024,
            max_reassembly_per_peer: 1 << 20,
            reassembly_timeout: Duration::from_secs(30),
            max_unconfirmed: 1024,
            dedup_capacity: 8192,
            fallback_after: 16,
            rto_burst: 8,
        }
    }
}
