//! Reliable, ordered, exactly-once delivery of room messages over lossy
//! datagrams, for unicast peers and multicast groups alike.
//!
//! # Model
//!
//! Every message belongs to a room (a 1:1 chat is a room of two). Each sender
//! numbers the *packets* it sends into a room with its own sequence space, so
//! a message of `k` fragments takes `k` consecutive sequence numbers. All
//! reliability (ACKs, NACKs, retransmission) works per packet, which means a
//! 64 KiB message that loses one fragment only resends that fragment.
//!
//! - **Unicast**: receivers send cumulative + selective ACKs, at once for
//!   a lone packet (nothing older unacknowledged: a chat message, or a
//!   sender waiting for each "delivered") and otherwise at most one per
//!   `max_ack_delay` (or every `ack_every` packets), so a busy stream costs
//!   few ACKs and a chat gets its "delivered" tick at once. The sender keeps an RTT estimate per
//!   peer (RFC 6298 style: `RTO = srtt + 4·rttvar + max_ack_delay`, floored
//!   and capped) and retransmits with exponential backoff. A token bucket
//!   paces data packets and a send window bounds what is in flight. After
//!   `max_retries` timeouts without any ACK the peer is reported
//!   [`Event::PeerUnreachable`]; its messages stay queued, it keeps being
//!   probed at the capped RTO, and everything is re-driven at once when the
//!   peer is heard again (or [`Reliable::peer_seen`] is called).
//! - **Multicast**: a room with `multicast` enabled sends each packet once to
//!   the group. Receivers detect gaps per sender sequence and NACK by unicast
//!   after a randomised back-off (NORM, RFC 5740, style), which batches gaps
//!   into one NACK and lets reordering settle before anything is asked for.
//!   The sender holds each NACKed packet for `repair_hold`: asked for by one
//!   member it is repaired by unicast, by several (or by a second member
//!   after an earlier repair) it is repaired once to the group, and members
//!   whose back-off has not run out yet see the gap filled and never NACK.
//!   Heartbeats to the group carry the sender's highest sequence so a lost
//!   tail is noticed too.
//! - **Unicast fall-back**: every ACK and NACK reports how many packets the
//!   receiver got *via the group*. A member that keeps acknowledging packets
//!   (so it is alive) while that counter stands still over
//!   [`Config::fallback_after`] multicast packets cannot hear the group; the
//!   sender switches it to unicast fan-out ([`Event::FanOutChanged`]) and
//!   switches it back once group traffic is seen to arrive again.
//!
//! # Guarantees
//!
//! - Per sender and room, [`Event::Received`] is emitted in sequence order and
//!   at most once per message id (a bounded set of recent ids also catches a
//!   message that arrives again under a new sender session).
//! - A receiver acknowledges a message as *stored* only after the application
//!   called [`Reliable::confirm_stored`], and only then does the sender report
//!   [`Event::Delivered`]. Packets that merely arrived are acknowledged as
//!   *received*, which only stops retransmission.
//! - Nothing is dropped silently: a message leaves the send queue only when
//!   every member stored it, or, when the queue is full and only unreachable
//!   members still lack it, with an [`Event::Undelivered`] per such member
//!   (set reconciliation in the sync layer then carries it).
//! - Every buffer is bounded: send queue ([`Config::max_queued`], surfaced as
//!   [`SendError::Backpressure`]), receive window, reassembly bytes per peer,
//!   unconfirmed deliveries, the duplicate filter and the retransmit queue.
//!   Out-of-order fragments that wait longer than `reassembly_timeout` are
//!   dropped; the receiver's next ACK no longer claims them, and since the
//!   sender believes the newest ACK (not the best one) it resends them.
//! - Nothing here panics on network input; malformed packets are rejected
//!   with a [`PacketError`] and counted in [`Stats`].
//!
//! This module is sans-IO: it never reads a clock, touches a socket or the OS
//! RNG. Run-loop contract: feed one input, then drain [`Reliable::poll_event`]
//! and [`Reliable::poll_transmit`] until both are empty, then wait until
//! [`Reliable::poll_timeout`] (or the next input) and call
//! [`Reliable::handle_timeout`].

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::ops::Bound;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::ids::{MessageId, PeerId, RoomId};
use super::wire::decode_exact;

/// Version byte in front of every encoded packet.
pub const VERSION: u8 = 1;
/// Largest encoded packet. A datagram is at most 1200 bytes and the pairwise
/// encryption layer needs up to 100 bytes of its own.
pub const MAX_PACKET: usize = 1100;
/// Largest fragment payload, chosen so a worst-case `Data` packet still fits
/// [`MAX_PACKET`] (a unit test checks this).
pub const MAX_CHUNK: usize = 960;
/// Largest message payload the layer accepts.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Most fragments a message can have.
pub const MAX_FRAGS: u16 = MAX_MESSAGE.div_ceil(MAX_CHUNK) as u16;
/// Most ranges in one ACK or NACK.
pub const MAX_RANGES: usize = 16;
/// In a multicast room where every member fell back to unicast, every this
/// many packets one also goes to the group, to notice recovery.
const MULTICAST_PROBE_EVERY: u64 = 64;
/// Sequence numbers on the wire stay below this, so sums of a sequence number
/// and any window size can never overflow a `u64`.
pub const MAX_SEQ: u64 = 1 << 62;

// ---------------------------------------------------------------------------
// Wire format
// ---------------------------------------------------------------------------

/// One packet of the reliable layer. Ranges are half-open `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Packet {
    /// One fragment of a message.
    Data {
        room: RoomId,
        /// Random per sender run, so a restarted sender is not taken for a
        /// replay of its old sequence numbers.
        session: u64,
        seq: u64,
        /// Everything below `low` is no longer available from the sender;
        /// the receiver skips it (it was stored, or handed to sync).
        low: u64,
        /// Index of this fragment in its message, `< frags`.
        frag: u16,
        frags: u16,
        id: MessageId,
        #[serde(with = "serde_bytes")]
        chunk: Vec<u8>,
        /// The sender has nothing older in flight (a lone message, e.g. a
        /// chat reply): acknowledge it as soon as it is stored rather than
        /// at the paced time, so an idle conversation gets its "delivered"
        /// at once while a busy stream keeps one ACK per interval.
        ack_now: bool,
    },
    /// Receiver → sender acknowledgement for the sender's stream in a room.
    Ack {
        room: RoomId,
        /// The session of the sender stream being acknowledged.
        session: u64,
        /// The acknowledging node's own session: a restarted receiver starts
        /// its `ack_no` over, and the sender must not take that for stale.
        receiver_session: u64,
        /// Increases with every ACK of this stream, so a reordered old ACK is
        /// recognised and ignored.
        ack_no: u64,
        /// Every packet below this arrived.
        received: u64,
        /// Further packets that arrived, above `received`.
        ranges: Vec<(u64, u64)>,
        /// Every message below this was committed to the receiver's store.
        stored: u64,
        /// Largest sequence number that arrived, for RTT sampling.
        largest: Option<u64>,
        /// How long the receiver held the ACK after `largest` arrived.
        delay_us: u32,
        /// Packets of this stream that arrived via the multicast group.
        mcast_rx: u64,
        /// Messages below `stored` that the receiver did *not* store (it
        /// refused them: see [`Reliable::refuse`]), by the sequence number
        /// of their last fragment. Left out of the encoding when empty, so
        /// such an ACK reads as it always did.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        refused: Vec<(u64, u64)>,
    },
    /// Receiver → sender: these packets are missing, please resend them.
    Nack {
        room: RoomId,
        session: u64,
        missing: Vec<(u64, u64)>,
        /// As in `Ack`: evidence for the multicast fall-back.
        mcast_rx: u64,
    },
    /// Sender → group (or one member): the state of the sender's stream.
    Heartbeat {
        room: RoomId,
        session: u64,
        low: u64,
        /// The next sequence number the sender will use.
        next: u64,
    },
}

/// The kind of a packet, for counting without decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PacketKind {
    Data,
    Ack,
    Nack,
    Heartbeat,
}

impl PacketKind {
    /// All kinds, in a fixed order (for tables).
    pub const ALL: [PacketKind; 4] = [Self::Data, Self::Ack, Self::Nack, Self::Heartbeat];

    /// Position in [`PacketKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why a datagram was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PacketError {
    #[error("datagram of {0} bytes exceeds the {MAX_PACKET}-byte limit")]
    TooLarge(usize),
    #[error("empty datagram")]
    Empty,
    #[error("unknown packet version {0}")]
    Version(u8),
    #[error("malformed packet")]
    Malformed,
    #[error("packet field out of range: {0}")]
    Invalid(&'static str),
    #[error("packet for a room this node is not in")]
    UnknownRoom,
    #[error("packet from a peer that is not a member of the room")]
    NotMember,
    #[error("group frame carrying a packet of another room")]
    WrongRoom,
    #[error("group frame carrying an acknowledgement or a NACK")]
    FeedbackInGroup,
}

impl Packet {
    /// The packet's kind.
    pub fn kind(&self) -> PacketKind {
        match self {
            Packet::Data { .. } => PacketKind::Data,
            Packet::Ack { .. } => PacketKind::Ack,
            Packet::Nack { .. } => PacketKind::Nack,
            Packet::Heartbeat { .. } => PacketKind::Heartbeat,
        }
    }

    /// Encodes the packet: version byte, then MessagePack.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(VERSION);
        // Serialising into a Vec only fails for types serde cannot express
        // (maps with non-string keys and the like); `Packet` has none.
        rmp_serde::encode::write(&mut out, self).expect("Packet always serialises into a Vec");
        out
    }

    /// Decodes and validates a datagram. The size is checked before any
    /// parsing, the body must be exactly one value (no trailing bytes), and
    /// every count and sequence field is range-checked after.
    pub fn decode(bytes: &[u8]) -> Result<Packet, PacketError> {
        if bytes.len() > MAX_PACKET {
            return Err(PacketError::TooLarge(bytes.len()));
        }
        let (&version, body) = bytes.split_first().ok_or(PacketError::Empty)?;
        if version != VERSION {
            return Err(PacketError::Version(version));
        }
        // Exactly one value filling the body: trailing bytes would give one
        // packet many encodings (and carry unauthenticated data along).
        let packet: Packet = decode_exact(body).map_err(|_| PacketError::Malformed)?;
        packet.validate()?;
        Ok(packet)
    }

    fn validate(&self) -> Result<(), PacketError> {
        use PacketError::Invalid;
        match self {
            Packet::Data {
                seq,
                low,
                frag,
                frags,
                chunk,
                ..
            } => {
                if *seq >= MAX_SEQ || low > seq {
                    return Err(Invalid("seq"));
                }
                if *frags == 0 || *frags > MAX_FRAGS || frag >= frags || u64::from(*frag) > *seq {
                    return Err(Invalid("frag"));
                }
                if chunk.len() > MAX_CHUNK {
                    return Err(Invalid("chunk"));
                }
            }
            Packet::Ack {
                received,
                ranges,
                stored,
                largest,
                refused,
                ..
            } => {
                if *received > MAX_SEQ || stored > received {
                    return Err(Invalid("ack cursor"));
                }
                if largest.is_some_and(|l| l >= MAX_SEQ) {
                    return Err(Invalid("largest"));
                }
                check_ranges(ranges)?;
                check_ranges(refused)?;
            }
            Packet::Nack { missing, .. } => check_ranges(missing)?,
            Packet::Heartbeat { low, next, .. } => {
                if *next > MAX_SEQ || low > next {
                    return Err(Invalid("heartbeat"));
                }
            }
        }
        Ok(())
    }
}

fn check_ranges(ranges: &[(u64, u64)]) -> Result<(), PacketError> {
    if ranges.len() > MAX_RANGES {
        return Err(PacketError::Invalid("too many ranges"));
    }
    if ranges
        .iter()
        .any(|&(start, end)| start >= end || end > MAX_SEQ)
    {
        return Err(PacketError::Invalid("range"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Public API types
// ---------------------------------------------------------------------------

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    /// Unicast to one peer.
    Peer(PeerId),
    /// Once to the room's multicast group.
    Group(RoomId),
}

/// How a datagram arrived, as told by the IO layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    Unicast,
    Multicast,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub destination: Destination,
    pub kind: PacketKind,
    /// An encoded [`Packet`], at most [`MAX_PACKET`] bytes.
    pub bytes: Vec<u8>,
}

/// How a sender reaches one room member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FanOut {
    /// The member hears the room's multicast group.
    Multicast,
    /// The member gets its own unicast copy of every packet.
    Unicast,
}

/// Something the application must know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete message, in per-sender order, never twice. Store it, then
    /// call [`Reliable::confirm_stored`] with `seq`.
    Received {
        room: RoomId,
        from: PeerId,
        /// Handle for [`Reliable::confirm_stored`].
        seq: u64,
        id: MessageId,
        payload: Vec<u8>,
    },
    /// `to` confirmed that it committed the message to its store.
    Delivered {
        room: RoomId,
        to: PeerId,
        id: MessageId,
    },
    /// `to` received the message but did not store it (it refused it: it
    /// failed a check there). It is no longer retransmitted; the
    /// application decides whether to send it again later.
    Refused {
        room: RoomId,
        to: PeerId,
        id: MessageId,
    },
    /// The queue had to make room and `to`, unreachable, still lacked this
    /// message: it is no longer retransmitted here; sync must carry it.
    Undelivered {
        room: RoomId,
        to: PeerId,
        id: MessageId,
    },
    /// `max_retries` timeouts passed without an answer. Its messages stay
    /// queued and it keeps being probed at the capped RTO.
    PeerUnreachable { peer: PeerId },
    /// A peer reported unreachable was heard again; delivery resumes.
    PeerReachable { peer: PeerId },
    /// A member's fan-out changed (multicast fall-back or recovery).
    FanOutChanged {
        room: RoomId,
        peer: PeerId,
        fan_out: FanOut,
    },
}

/// Why [`Reliable::send`] refused a message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SendError {
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE}-byte limit")]
    TooLarge(usize),
    #[error("not a member of this room")]
    UnknownRoom,
    #[error("send queue full; retry once earlier messages are delivered")]
    Backpressure,
}

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
    /// Delivered messages awaiting [`Reliable::confirm_stored`], per stream;
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

/// Counters, for metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams emitted, indexed by [`PacketKind::index`].
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

// ---------------------------------------------------------------------------
// Internal state
// ---------------------------------------------------------------------------

/// RTT estimator per RFC 6298.
#[derive(Debug, Clone)]
struct Rtt {
    srtt: Duration,
    rttvar: Duration,
    sampled: bool,
}

impl Rtt {
    fn new(initial: Duration) -> Self {
        Rtt {
            srtt: initial,
            rttvar: initial / 2,
            sampled: false,
        }
    }

    fn sample(&mut self, rtt: Duration) {
        if self.sampled {
            let diff = self.srtt.abs_diff(rtt);
            self.rttvar = (self.rttvar * 3 + diff) / 4;
            self.srtt = (self.srtt * 7 + rtt) / 8;
        } else {
            self.srtt = rtt;
            self.rttvar = rtt / 2;
            self.sampled = true;
        }
    }

    fn rto(&self, config: &Config) -> Duration {
        let granularity = Duration::from_millis(1);
        let rto = self.srtt + (self.rttvar * 4).max(granularity) + config.max_ack_delay;
        rto.clamp(config.rto_min, config.rto_max)
    }
}

#[derive(Debug)]
struct PeerState {
    rtt: Rtt,
    unreachable: bool,
    /// Reassembly bytes buffered from this peer, across rooms.
    reassembly_bytes: usize,
}

/// A queued outgoing packet.
#[derive(Debug)]
struct OutPacket {
    id: MessageId,
    frag: u16,
    frags: u16,
    chunk: Vec<u8>,
    /// First transmission, for RTT samples.
    first_sent: Option<Instant>,
    /// When it went to the multicast group, if it did.
    group_sent: Option<Instant>,
    /// Sent more than once to someone: no RTT sample from it (Karn).
    retransmitted: bool,
    /// Last unicast transmission per member (few entries: only members in
    /// unicast mode or repaired ones).
    unicast_sent: Vec<(PeerId, Instant)>,
    /// Last repair per target (`None`: the group), so a repeated NACK does
    /// not trigger a second repair while the first is on its way.
    repaired: Vec<(Option<PeerId>, Instant)>,
}

impl OutPacket {
    fn last_sent_to(&self, peer: &PeerId, via_group: bool) -> Option<Instant> {
        let unicast = self
            .unicast_sent
            .iter()
            .find(|(p, _)| p == peer)
            .map(|&(_, at)| at);
        let group = if via_group { self.group_sent } else { None };
        unicast.max(group)
    }

    fn last_repair_to(&self, peer: &PeerId, via_group: bool) -> Option<Instant> {
        self.repaired
            .iter()
            .filter(|(target, _)| target.as_ref() == Some(peer) || (via_group && target.is_none()))
            .map(|&(_, at)| at)
            .max()
    }

    fn note_repair(&mut self, target: Option<PeerId>, now: Instant) {
        self.retransmitted = true;
        match self.repaired.iter_mut().find(|(t, _)| *t == target) {
            Some(entry) => entry.1 = now,
            None => self.repaired.push((target, now)),
        }
    }

    fn note_unicast(&mut self, peer: PeerId, now: Instant) {
        match self.unicast_sent.iter_mut().find(|(p, _)| *p == peer) {
            Some(entry) => entry.1 = now,
            None => self.unicast_sent.push((peer, now)),
        }
    }
}

/// A sender's view of one room member.
#[derive(Debug)]
struct Member {
    /// First sequence number meant for this member (it joined then).
    base: u64,
    /// All packets below this arrived.
    received: u64,
    /// Packets above `received` that arrived, from the newest ACK.
    sacked: Vec<(u64, u64)>,
    /// All messages below this were stored.
    stored: u64,
    /// The member's own session, from its ACKs.
    peer_session: Option<u64>,
    ack_no: u64,
    largest: Option<u64>,
    fan_out: FanOut,
    rto_at: Option<Instant>,
    backoff: u32,
    /// Highest `mcast_rx` reported, and the stream position when it last rose.
    mcast_rx: u64,
    mark_seq: u64,
    /// `mcast_rx` when the member was switched to unicast.
    rx_at_switch: u64,
}

impl Member {
    fn new(base: u64) -> Self {
        Member {
            base,
            received: base,
            sacked: Vec::new(),
            stored: base,
            peer_session: None,
            ack_no: 0,
            largest: None,
            fan_out: FanOut::Multicast,
            rto_at: None,
            backoff: 0,
            mcast_rx: 0,
            mark_seq: base,
            rx_at_switch: 0,
        }
    }

    /// The lowest sequence number this member can still need from us:
    /// below it, the packet was released, predates the member, or the member
    /// already stored it (a restarted member is told to skip that).
    fn low(&self, room_low: u64) -> u64 {
        room_low.max(self.base).max(self.stored)
    }

    fn has_received(&self, seq: u64) -> bool {
        seq < self.received || self.sacked.iter().any(|&(s, e)| s <= seq && seq < e)
    }
}

/// Our own stream into a room, plus the room's membership.
#[derive(Debug)]
struct Room {
    config: RoomConfig,
    members: BTreeMap<PeerId, Member>,
    /// Sequence number of `out[0]`.
    low: u64,
    out: VecDeque<OutPacket>,
    /// First packet never transmitted.
    sent_upto: u64,
    heartbeat_at: Option<Instant>,
    heartbeats: u32,
    /// When the last new data packet went out (for `ack_now`).
    last_new_data: Option<Instant>,
}

impl Room {
    fn next_seq(&self) -> u64 {
        self.low + self.out.len() as u64
    }

    fn packet(&self, seq: u64) -> Option<&OutPacket> {
        let index = usize::try_from(seq.checked_sub(self.low)?).ok()?;
        self.out.get(index)
    }

    fn packet_mut(&mut self, seq: u64) -> Option<&mut OutPacket> {
        let index = usize::try_from(seq.checked_sub(self.low)?).ok()?;
        self.out.get_mut(index)
    }

    fn uses_group(&self) -> bool {
        self.config.multicast
            && self
                .members
                .values()
                .any(|m| m.fan_out == FanOut::Multicast)
    }
}

/// A buffered incoming fragment.
#[derive(Debug)]
struct Fragment {
    id: MessageId,
    frag: u16,
    frags: u16,
    chunk: Vec<u8>,
}

/// Receive state for one sender's stream into one room.
#[derive(Debug)]
struct RecvStream {
    session: u64,
    /// Sessions of earlier runs of this sender, whose stragglers are ignored.
    retired: Vec<u64>,
    /// Next sequence number to deliver.
    next: u64,
    buf: BTreeMap<u64, Fragment>,
    buffered_bytes: usize,
    /// Delivered messages (last sequence number, confirmed?) not yet
    /// covered by `stored`.
    unconfirmed: VecDeque<(u64, bool)>,
    stored: u64,
    /// Messages the application refused (last fragments' sequence numbers,
    /// as ranges), reported with every ACK until the sender's `low` passes
    /// them; at most `MAX_RANGES`.
    refused: Vec<(u64, u64)>,
    largest: Option<u64>,
    largest_at: Option<Instant>,
    /// Highest `next` the sender announced in a heartbeat.
    announced: u64,
    mcast_rx: u64,
    ack_no: u64,
    ack_at: Option<Instant>,
    /// When the last ACK went out.
    last_ack: Option<Instant>,
    /// Something changed since the last ACK.
    dirty: bool,
    /// A lone packet asked for its ACK at once: ACKs are not paced until
    /// one reports everything delivered as stored.
    urgent: bool,
    since_ack: u32,
    nack_at: Option<Instant>,
    nack_tries: u32,
    /// When the buffered out-of-order packets expire.
    expire_at: Option<Instant>,
}

impl RecvStream {
    fn new(session: u64, low: u64) -> Self {
        RecvStream {
            session,
            retired: Vec::new(),
            next: low,
            buf: BTreeMap::new(),
            buffered_bytes: 0,
            unconfirmed: VecDeque::new(),
            stored: low,
            // What a stream starts above was not stored here: if the sender
            // still has any of it (the first `low` came in a group frame,
            // which any member can forge), it reads as refused, never as
            // delivered.
            refused: if low > 0 { vec![(0, low)] } else { Vec::new() },
            largest: None,
            largest_at: None,
            announced: low,
            mcast_rx: 0,
            ack_no: 0,
            ack_at: None,
            last_ack: None,
            dirty: false,
            urgent: false,
            since_ack: 0,
            nack_at: None,
            nack_tries: 0,
            expire_at: None,
        }
    }

    /// First sequence number at or above `next` that has not arrived.
    fn received_upto(&self) -> u64 {
        let mut cursor = self.next;
        for &seq in self.buf.range(self.next..).map(|(seq, _)| seq) {
            if seq != cursor {
                break;
            }
            cursor += 1;
        }
        cursor
    }

    /// Highest sequence number known to exist, exclusive.
    fn known_end(&self) -> u64 {
        self.largest
            .map_or(0, |l| l + 1)
            .max(self.announced)
            .max(self.next)
    }

    /// Runs of arrived packets above `from`, at most [`MAX_RANGES`].
    fn arrived_ranges(&self, from: u64) -> Vec<(u64, u64)> {
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for &seq in self.buf.range(from..).map(|(seq, _)| seq) {
            if let Some(last) = ranges.last_mut().filter(|last| last.1 == seq) {
                last.1 += 1;
            } else if ranges.len() == MAX_RANGES {
                break;
            } else {
                ranges.push((seq, seq + 1));
            }
        }
        ranges
    }

    /// Gaps in `[from, end)`, at most [`MAX_RANGES`].
    fn missing_ranges(&self, from: u64, end: u64) -> Vec<(u64, u64)> {
        let mut ranges = Vec::new();
        let mut cursor = from;
        for &seq in self.buf.range(from..end).map(|(seq, _)| seq) {
            if seq > cursor {
                ranges.push((cursor, seq));
                if ranges.len() == MAX_RANGES {
                    return ranges;
                }
            }
            cursor = seq + 1;
        }
        if cursor < end {
            ranges.push((cursor, end));
        }
        ranges
    }
}

/// The reliable delivery state machine of one node.
#[derive(Debug)]
pub struct Reliable {
    me: PeerId,
    config: Config,
    rng: StdRng,
    session: u64,
    // Every map that is walked is ordered, so a seed reproduces a
    // simulated run datagram for datagram; the two hash sets only answer
    // "seen?" and are never walked.
    peers: BTreeMap<PeerId, PeerState>,
    rooms: BTreeMap<RoomId, Room>,
    streams: BTreeMap<(RoomId, PeerId), RecvStream>,
    /// Recently delivered ids, oldest first, and the same ids as a set.
    recent: VecDeque<MessageId>,
    recent_set: HashSet<MessageId>,
    /// ACKs, NACKs and heartbeats: small, and not paced.
    control: VecDeque<Transmit>,
    /// Built data datagrams waiting for tokens.
    data: VecDeque<Transmit>,
    /// NACKed packets of multicast members, held for `repair_hold`.
    held: BTreeMap<(RoomId, u64), HeldRepair>,
    /// Unicast repairs to build: (room, member, seq).
    repairs: VecDeque<(RoomId, PeerId, u64)>,
    repair_set: HashSet<(RoomId, PeerId, u64)>,
    events: VecDeque<Event>,
    /// The room that sent the last new packet (rooms take turns).
    last_room: Option<RoomId>,
    tokens: f64,
    tokens_at: Instant,
    stats: Stats,
}

impl Reliable {
    /// A node with identity `me`. `rng` is the only source of randomness
    /// (session number and NACK jitter): seed it for reproducible runs.
    pub fn new(me: PeerId, config: Config, mut rng: StdRng, now: Instant) -> Self {
        let session = rng.next_u64();
        Reliable {
            me,
            tokens: f64::from(config.burst),
            tokens_at: now,
            config,
            rng,
            session,
            peers: BTreeMap::new(),
            rooms: BTreeMap::new(),
            streams: BTreeMap::new(),
            recent: VecDeque::new(),
            recent_set: HashSet::new(),
            control: VecDeque::new(),
            data: VecDeque::new(),
            repairs: VecDeque::new(),
            repair_set: HashSet::new(),
            held: BTreeMap::new(),
            last_room: None,
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// This node's identity.
    pub fn me(&self) -> PeerId {
        self.me
    }

    /// Counters since creation.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Current buffer occupancy.
    pub fn buffer_usage(&self) -> BufferUsage {
        BufferUsage {
            queued_packets: self.rooms.values().map(|r| r.out.len()).sum(),
            reassembly_packets: self.streams.values().map(|s| s.buf.len()).sum(),
            reassembly_bytes: self.streams.values().map(|s| s.buffered_bytes).sum(),
            unconfirmed: self.streams.values().map(|s| s.unconfirmed.len()).sum(),
            dedup_ids: self.recent.len(),
            retransmit_queue: self.repairs.len() + self.data.len() + self.held.len(),
            control_queue: self.control.len(),
        }
    }

    /// Current fan-out of `peer` in `room`, if it is a member.
    pub fn fan_out(&self, room: &RoomId, peer: &PeerId) -> Option<FanOut> {
        Some(self.rooms.get(room)?.members.get(peer)?.fan_out)
    }

    /// Whether `peer` is currently reported unreachable.
    pub fn is_unreachable(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|p| p.unreachable)
    }

    /// Joins (or reconfigures) a room with the given other members.
    pub fn join_room(
        &mut self,
        room: RoomId,
        config: RoomConfig,
        members: impl IntoIterator<Item = PeerId>,
    ) {
        let state = self.rooms.entry(room).or_insert_with(|| Room {
            config,
            members: BTreeMap::new(),
            low: 0,
            out: VecDeque::new(),
            sent_upto: 0,
            heartbeat_at: None,
            heartbeats: 0,
            last_new_data: None,
        });
        state.config = config;
        let members: Vec<PeerId> = members.into_iter().filter(|p| *p != self.me).collect();
        self.set_members(room, members);
    }

    /// Replaces a room's member list. New members start with the next
    /// message; removed members stop being waited for.
    pub fn set_members(&mut self, room: RoomId, members: impl IntoIterator<Item = PeerId>) {
        let Some(state) = self.rooms.get_mut(&room) else {
            return;
        };
        let wanted: BTreeSet<PeerId> = members.into_iter().filter(|p| *p != self.me).collect();
        state.members.retain(|peer, _| wanted.contains(peer));
        let base = state.next_seq();
        for peer in wanted {
            state
                .members
                .entry(peer)
                .or_insert_with(|| Member::new(base));
            let initial = self.config.initial_rtt;
            self.peers.entry(peer).or_insert_with(|| PeerState {
                rtt: Rtt::new(initial),
                unreachable: false,
                reassembly_bytes: 0,
            });
        }
        let peers = &mut self.peers;
        self.streams.retain(|(r, p), stream| {
            let keep = *r != room || state.members.contains_key(p);
            if !keep && let Some(peer) = peers.get_mut(p) {
                peer.reassembly_bytes = peer.reassembly_bytes.saturating_sub(stream.buffered_bytes);
            }
            keep
        });
        self.release(room);
    }

    /// Leaves a room, dropping all its state.
    pub fn leave_room(&mut self, room: RoomId) {
        self.rooms.remove(&room);
        let peers = &mut self.peers;
        self.streams.retain(|(r, p), s| {
            if *r == room
                && let Some(peer) = peers.get_mut(p)
            {
                peer.reassembly_bytes = peer.reassembly_bytes.saturating_sub(s.buffered_bytes);
            }
            *r != room
        });
    }

    /// Queues a message for every member of `room`.
    pub fn send(
        &mut self,
        _now: Instant,
        room: RoomId,
        id: MessageId,
        payload: &[u8],
    ) -> Result<(), SendError> {
        if payload.len() > MAX_MESSAGE {
            return Err(SendError::TooLarge(payload.len()));
        }
        let frags = payload.len().div_ceil(MAX_CHUNK).max(1);
        let state = self.rooms.get(&room).ok_or(SendError::UnknownRoom)?;
        if state.out.len() + frags > self.config.max_queued {
            self.release_to_sync(room, frags);
        }
        let state = self.rooms.get_mut(&room).ok_or(SendError::UnknownRoom)?;
        if state.out.len() + frags > self.config.max_queued {
            return Err(SendError::Backpressure);
        }
        // `frags` ≤ MAX_FRAGS because the payload is ≤ MAX_MESSAGE.
        let count = frags as u16;
        let mut chunks = payload.chunks(MAX_CHUNK);
        for frag in 0..count {
            state.out.push_back(OutPacket {
                id,
                frag,
                frags: count,
                chunk: chunks.next().unwrap_or_default().to_vec(),
                first_sent: None,
                group_sent: None,
                retransmitted: false,
                unicast_sent: Vec::new(),
                repaired: Vec::new(),
            });
        }
        Ok(())
    }

    /// The application committed the message `Event::Received { seq, .. }`
    /// from `from` in `room` to its store: it may now be acknowledged.
    pub fn confirm_stored(&mut self, now: Instant, room: RoomId, from: PeerId, seq: u64) {
        let config_delay = self.config.max_ack_delay;
        let Some(stream) = self.streams.get_mut(&(room, from)) else {
            return;
        };
        if let Some(entry) = stream.unconfirmed.iter_mut().find(|(end, _)| *end == seq) {
            entry.1 = true;
        }
        if advance_stored(stream) {
            schedule_ack(stream, paced_ack(stream, now, config_delay));
        }
        // Delivery may have paused on `max_unconfirmed`.
        self.deliver(now, room, from);
    }

    /// The application will not store the message `Event::Received { seq,
    /// .. }` (it failed a check): it stops holding the stream up, like a
    /// stored one, but its sender learns [`Event::Refused`] instead of
    /// [`Event::Delivered`].
    pub fn refuse(&mut self, now: Instant, room: RoomId, from: PeerId, seq: u64) {
        if let Some(stream) = self.streams.get_mut(&(room, from))
            && stream.unconfirmed.iter().any(|(end, _)| *end == seq)
        {
            add_refused(&mut stream.refused, seq, seq + 1);
        }
        self.confirm_stored(now, room, from, seq);
    }

    /// Seeds the duplicate filter with ids already in the store, so that after
    /// a restart a message whose "stored" ACK never reached its sender, and
    /// that is therefore sent again, is not surfaced a second time. Call it
    /// at start-up with the most recent ids (at most `dedup_capacity` count).
    pub fn remember_stored(&mut self, ids: impl IntoIterator<Item = MessageId>) {
        for id in ids {
            self.remember(id);
        }
    }

    /// Adds `id` to the bounded duplicate filter; `false` if it was there.
    fn remember(&mut self, id: MessageId) -> bool {
        if !self.recent_set.insert(id) {
            return false;
        }
        self.recent.push_back(id);
        if self.recent.len() > self.config.dedup_capacity
            && let Some(old) = self.recent.pop_front()
        {
            self.recent_set.remove(&old);
        }
        true
    }

    /// Discovery (or anything else) saw `peer` alive: if it was unreachable,
    /// re-drive delivery to it now.
    pub fn peer_seen(&mut self, now: Instant, peer: PeerId) {
        self.heard(now, peer);
    }

    /// The layer below can reach `peer` again (its address came back, or a
    /// new encrypted session to it was just established): resend what it
    /// lacks now instead of at the next, possibly backed-off, timeout, even
    /// if it was never reported unreachable.
    pub fn redrive(&mut self, now: Instant, peer: PeerId) {
        if self.is_unreachable(&peer) {
            self.heard(now, peer);
        } else {
            self.rearm(now, peer);
        }
    }

    /// Handles one datagram from `from` (already authenticated by the
    /// pairwise encryption layer). Errors say why it was dropped; the caller
    /// only counts them.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: PeerId,
        via: Via,
        bytes: &[u8],
    ) -> Result<(), PacketError> {
        self.handle_packet(now, from, via, None, bytes)
    }

    /// Handles one packet that came in a group frame of `room`. A frame
    /// proves only that some member of `room` sealed it, not which one
    /// (`from` is the claimed sender), so its packet must be about `room`:
    /// one naming another room (say, the direct room of the member it
    /// claims to come from) is dropped. So is an ACK or a NACK: what a
    /// member says about its own receipt goes only over the pairwise
    /// session that proves who it is (we never send one to the group), or
    /// any member could acknowledge in another's name.
    pub fn handle_group_datagram(
        &mut self,
        now: Instant,
        from: PeerId,
        room: RoomId,
        bytes: &[u8],
    ) -> Result<(), PacketError> {
        self.handle_packet(now, from, Via::Multicast, Some(room), bytes)
    }

    fn handle_packet(
        &mut self,
        now: Instant,
        from: PeerId,
        via: Via,
        bound_to: Option<RoomId>,
        bytes: &[u8],
    ) -> Result<(), PacketError> {
        let packet = match Packet::decode(bytes) {
            Ok(packet) => packet,
            Err(error) => {
                self.stats.malformed += 1;
                return Err(error);
            }
        };
        let room = match &packet {
            Packet::Data { room, .. }
            | Packet::Ack { room, .. }
            | Packet::Nack { room, .. }
            | Packet::Heartbeat { room, .. } => *room,
        };
        if bound_to.is_some_and(|bound| bound != room) {
            self.stats.foreign += 1;
            return Err(PacketError::WrongRoom);
        }
        if bound_to.is_some() && matches!(packet, Packet::Ack { .. } | Packet::Nack { .. }) {
            self.stats.group_feedback += 1;
            return Err(PacketError::FeedbackInGroup);
        }
        let Some(state) = self.rooms.get(&room) else {
            self.stats.foreign += 1;
            return Err(PacketError::UnknownRoom);
        };
        if !state.members.contains_key(&from) {
            self.stats.foreign += 1;
            return Err(PacketError::NotMember);
        }
        self.heard(now, from);
        // A packet over the pairwise session is the claimed sender's own; one
        // in a group frame may have been sealed by any member of the room.
        let authenticated = bound_to.is_none();
        match packet {
            Packet::Data {
                session,
                seq,
                low,
                frag,
                frags,
                id,
                chunk,
                ack_now,
                ..
            } => {
                self.on_data(
                    now,
                    room,
                    from,
                    (via, authenticated),
                    session,
                    low,
                    seq,
                    Fragment {
                        id,
                        frag,
                        frags,
                        chunk,
                    },
                    ack_now,
                );
            }
            Packet::Ack {
                session,
                receiver_session,
                ack_no,
                received,
                ranges,
                stored,
                largest,
                delay_us,
                mcast_rx,
                refused,
                ..
            } => {
                if session == self.session {
                    let ack = AckInfo {
                        receiver_session,
                        ack_no,
                        received,
                        ranges,
                        stored,
                        largest,
                        delay_us,
                        mcast_rx,
                        refused,
                    };
                    self.on_ack(now, room, from, ack);
                }
            }
            Packet::Nack {
                session,
                missing,
                mcast_rx,
                ..
            } => {
                if session == self.session {
                    self.on_nack(now, room, from, &missing, mcast_rx);
                }
            }
            Packet::Heartbeat {
                session, low, next, ..
            } => self.on_heartbeat(now, room, from, (via, authenticated), session, low, next),
        }
        Ok(())
    }

    /// The next time [`Reliable::handle_timeout`] must be called, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for room in self.rooms.values() {
            consider(room.heartbeat_at);
            for member in room.members.values() {
                consider(member.rto_at);
            }
        }
        for held in self.held.values() {
            consider(Some(held.until));
        }
        for stream in self.streams.values() {
            consider(stream.ack_at);
            consider(stream.nack_at);
            consider(stream.expire_at);
        }
        if self.tokens < 1.0 - TOKEN_SLACK && self.has_data_work() {
            let missing = 1.0 - self.tokens;
            // Rounded up to a whole microsecond: a wait that rounds to zero
            // would leave the bucket short by a rounding error and the
            // timer due forever.
            let wait = Duration::from_secs_f64(missing / f64::from(self.config.rate.max(1)))
                .max(Duration::from_micros(1));
            consider(Some(self.tokens_at + wait));
        }
        next
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let keys: Vec<(RoomId, PeerId)> = self
            .streams
            .iter()
            .filter(|(_, s)| {
                [s.ack_at, s.nack_at, s.expire_at]
                    .iter()
                    .any(|t| t.is_some_and(|t| t <= now))
            })
            .map(|(k, _)| *k)
            .collect();
        for (room, from) in keys {
            self.stream_timers(now, room, from);
        }
        let rooms: Vec<RoomId> = self.rooms.keys().copied().collect();
        for room in rooms {
            self.room_timers(now, room);
        }
        self.release_held(now);
    }

    /// The next datagram to send, if any. Data is paced by the token bucket;
    /// control packets are not.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if let Some(transmit) = self.control.pop_front() {
            return Some(self.count(transmit));
        }
        self.refill(now);
        if self.tokens < 1.0 - TOKEN_SLACK {
            return None;
        }
        // A step may produce nothing (a repair no longer needed, a packet
        // for members that are all unreachable): keep going until there is
        // a datagram or no work.
        while self.data.is_empty() && self.build_data(now) {}
        let transmit = self.data.pop_front()?;
        self.tokens = (self.tokens - 1.0).max(0.0);
        Some(self.count(transmit))
    }

    /// The next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // --- sending ---------------------------------------------------------

    fn count(&mut self, transmit: Transmit) -> Transmit {
        self.stats.sent[transmit.kind.index()] += 1;
        transmit
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.tokens_at).as_secs_f64();
        self.tokens =
            // A burst below one packet would never send anything.
            (self.tokens + elapsed * f64::from(self.config.rate)).min(f64::from(self.config.burst.max(1)));
        self.tokens_at = now;
    }

    fn has_data_work(&self) -> bool {
        !self.data.is_empty()
            || !self.repairs.is_empty()
            || self.rooms.values().any(|r| self.can_send_new(r))
    }

    fn window_base(&self, room: &Room) -> u64 {
        let reachable = room
            .members
            .iter()
            .filter(|(p, _)| !self.is_unreachable(p))
            .map(|(_, m)| m.received)
            .min();
        reachable
            .or_else(|| room.members.values().map(|m| m.received).min())
            .unwrap_or(room.sent_upto)
    }

    fn can_send_new(&self, room: &Room) -> bool {
        room.sent_upto < room.next_seq()
            && room.sent_upto < self.window_base(room) + self.config.send_window
    }

    /// Builds the next data datagram(s): a pending repair first, then the
    /// next new packet of the next room that has one (rooms take turns, so
    /// a big transfer in one room does not starve the others). `false` if
    /// there was nothing to do.
    fn build_data(&mut self, now: Instant) -> bool {
        while let Some(key) = self.repairs.pop_front() {
            self.repair_set.remove(&key);
            if self.build_repair(now, key) {
                return true;
            }
        }
        let after = self.last_room.map_or(Bound::Unbounded, Bound::Excluded);
        let Some(room_id) = self
            .rooms
            .range((after, Bound::Unbounded))
            .chain(self.rooms.range(..))
            .find(|(_, r)| self.can_send_new(r))
            .map(|(id, _)| *id)
        else {
            return false;
        };
        self.last_room = Some(room_id);
        let (session, config, peers) = (self.session, &self.config, &self.peers);
        let room = self
            .rooms
            .get_mut(&room_id)
            .expect("room id was just taken from the map");
        let seq = room.sent_upto;
        room.sent_upto += 1;
        let group = room.uses_group();
        // When every member fell back to unicast, a packet now and then
        // still goes to the group as well, so that members whose multicast
        // works again are noticed and switched back.
        let probe = !group
            && room.config.multicast
            && !room.members.is_empty()
            && seq.is_multiple_of(MULTICAST_PROBE_EVERY);
        let low = room.low;
        let reachable = |peer: &PeerId| !peers.get(peer).is_some_and(|p| p.unreachable);
        let unicast: Vec<(PeerId, u64)> = room
            .members
            .iter()
            .filter(|(p, m)| (!group || m.fan_out == FanOut::Unicast) && reachable(p))
            .map(|(p, m)| (*p, m.low(low)))
            .collect();
        for (peer, member) in room.members.iter_mut() {
            if member.rto_at.is_none() {
                let rto = peers
                    .get(peer)
                    .map_or(config.rto_min, |p| p.rtt.rto(config));
                member.rto_at = Some(now + rto);
            }
        }
        if group {
            room.heartbeat_at = Some(now + config.heartbeat_interval);
            room.heartbeats = 0;
        }
        // A lone packet of a conversation (nothing older held for anyone,
        // and the room was quiet for `lone_gap`) asks for its ACK at once;
        // a stream of packets keeps the paced ACKs. Without multicast,
        // nothing older held is enough: a sender that waits for each
        // "delivered" before its next send (stop-and-wait) would otherwise
        // wait up to `max_ack_delay` every time. It costs one ACK per
        // packet only for streams slower than one packet per round trip;
        // a faster stream has older packets held and keeps paced ACKs. (In
        // a multicast room every member would answer each group packet.)
        let ack_now = seq == low
            && (!room.config.multicast
                || room
                    .last_new_data
                    .is_none_or(|t| now.saturating_duration_since(t) >= config.lone_gap));
        room.last_new_data = Some(now);
        let packet = room
            .packet_mut(seq)
            .expect("sent_upto < next_seq, so the packet is queued");
        packet.first_sent = Some(now);
        if group || probe {
            packet.group_sent = Some(now);
            let bytes = data_packet(room_id, session, seq, low, packet, ack_now).encode();
            self.data.push_back(Transmit {
                destination: Destination::Group(room_id),
                kind: PacketKind::Data,
                bytes,
            });
        }
        for (peer, member_low) in unicast {
            packet.note_unicast(peer, now);
            let bytes = data_packet(room_id, session, seq, member_low, packet, ack_now).encode();
            self.data.push_back(Transmit {
                destination: Destination::Peer(peer),
                kind: PacketKind::Data,
                bytes,
            });
        }
        true
    }

    /// Builds a unicast repair if it is still needed; `false` if not.
    fn build_repair(&mut self, now: Instant, (room_id, peer, seq): (RoomId, PeerId, u64)) -> bool {
        let session = self.session;
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return false;
        };
        let low = room.low;
        let Some(member) = room.members.get(&peer) else {
            return false;
        };
        if seq < member.base || seq >= room.sent_upto || member.has_received(seq) {
            return false;
        }
        let member_low = member.low(low);
        let Some(packet) = room.packet_mut(seq) else {
            return false;
        };
        packet.note_unicast(peer, now);
        packet.note_repair(Some(peer), now);
        let bytes = data_packet(room_id, session, seq, member_low, packet, false).encode();
        self.data.push_back(Transmit {
            destination: Destination::Peer(peer),
            kind: PacketKind::Data,
            bytes,
        });
        self.stats.retransmits += 1;
        true
    }

    fn queue_repair(&mut self, room: RoomId, peer: PeerId, seq: u64) {
        // Bounded by the send queue: one entry per (member, queued packet).
        if self.repair_set.insert((room, peer, seq)) {
            self.repairs.push_back((room, peer, seq));
        }
    }

    fn room_timers(&mut self, now: Instant, room_id: RoomId) {
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        if room.heartbeat_at.is_some_and(|t| t <= now) {
            let behind = room
                .members
                .values()
                .any(|m| m.fan_out == FanOut::Multicast && m.received < room.sent_upto);
            if behind && room.uses_group() {
                let packet = Packet::Heartbeat {
                    room: room_id,
                    session: self.session,
                    low: room.low,
                    next: room.sent_upto,
                };
                self.control.push_back(Transmit {
                    destination: Destination::Group(room_id),
                    kind: PacketKind::Heartbeat,
                    bytes: packet.encode(),
                });
                room.heartbeats = room.heartbeats.saturating_add(1);
                let wait = self
                    .config
                    .heartbeat_interval
                    .saturating_mul(1 << room.heartbeats.min(8));
                room.heartbeat_at = Some(now + wait.min(self.config.rto_max));
            } else {
                room.heartbeat_at = None;
            }
        }
        let due: Vec<PeerId> = room
            .members
            .iter()
            .filter(|(_, m)| m.rto_at.is_some_and(|t| t <= now))
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            self.member_timeout(now, room_id, peer);
        }
    }

    /// The retransmission timer of one member fired.
    fn member_timeout(&mut self, now: Instant, room_id: RoomId, peer: PeerId) {
        let config = &self.config;
        let Some(peer_state) = self.peers.get_mut(&peer) else {
            return;
        };
        let rto = peer_state.rtt.rto(config);
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let group = room.uses_group();
        let (low, sent_upto) = (room.low, room.sent_upto);
        let Some(member) = room.members.get_mut(&peer) else {
            return;
        };
        if member.stored >= sent_upto {
            member.rto_at = None;
            member.backoff = 0;
            return;
        }
        let burst = if peer_state.unreachable {
            1
        } else {
            config.rto_burst
        };
        let member = room.members.get(&peer).expect("member looked up above");
        let via_group = group && member.fan_out == FanOut::Multicast;
        let mut resend = Vec::new();
        let mut seq = member.received.max(low).max(member.base);
        while seq < sent_upto && resend.len() < burst {
            if !member.has_received(seq) {
                let packet = room
                    .packet(seq)
                    .expect("low <= seq < sent_upto, so the packet is queued");
                let stale = packet
                    .last_sent_to(&peer, via_group)
                    .is_none_or(|t| t + rto <= now);
                if stale || peer_state.unreachable {
                    resend.push(seq);
                }
            }
            seq += 1;
        }
        let member = room.members.get_mut(&peer).expect("member looked up above");
        // A heartbeat asks for a fresh ACK when everything arrived but not
        // everything is stored (or the ACK saying so was lost). A member that
        // never heard the group also learns from it how far the stream goes,
        // so it NACKs the rest at once instead of a burst per timeout.
        let never_heard_group = via_group && member.mcast_rx == 0;
        let beyond_burst = resend.last().is_some_and(|&last| last + 1 < sent_upto);
        if resend.is_empty() || (never_heard_group && beyond_burst) {
            let packet = Packet::Heartbeat {
                room: room_id,
                session: self.session,
                low: member.low(low),
                next: sent_upto,
            };
            self.control.push_back(Transmit {
                destination: Destination::Peer(peer),
                kind: PacketKind::Heartbeat,
                bytes: packet.encode(),
            });
        }
        member.backoff = member.backoff.saturating_add(1);
        let wait = rto
            .saturating_mul(1 << member.backoff.min(16))
            .min(config.rto_max);
        member.rto_at = Some(now + wait);
        if member.backoff > config.max_retries && !peer_state.unreachable {
            peer_state.unreachable = true;
            self.events.push_back(Event::PeerUnreachable { peer });
        }
        for seq in resend {
            self.queue_repair(room_id, peer, seq);
        }
    }

    // --- acknowledgements ------------------------------------------------

    fn on_ack(&mut self, now: Instant, room_id: RoomId, from: PeerId, ack: AckInfo) {
        let config = &self.config;
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let sent_upto = room.sent_upto;
        let Some(member) = room.members.get_mut(&from) else {
            return;
        };
        if member.peer_session != Some(ack.receiver_session) {
            // A new run of the member (or its first ACK): its ACK numbers
            // start over, and what it had merely received is gone.
            member.peer_session = Some(ack.receiver_session);
            member.ack_no = 0;
            member.largest = None;
        }
        if ack.ack_no <= member.ack_no {
            return;
        }
        member.ack_no = ack.ack_no;
        // Never believe more than was sent.
        let received = ack.received.min(sent_upto);
        let stored = ack.stored.min(received);
        // Taken from the newest ACK, not the maximum: a receiver whose
        // incomplete fragments expired reneges, and must get them again.
        // Stored messages never go back.
        member.received = received.max(member.stored);
        let floor = member.received;
        member.sacked = ack
            .ranges
            .iter()
            .map(|&(start, end)| (start.max(floor), end.min(sent_upto)))
            .filter(|(start, end)| start < end)
            .collect();
        let old_stored = member.stored;
        member.stored = member.stored.max(stored);
        let new_stored = member.stored;
        let newest = ack
            .largest
            .filter(|l| *l < sent_upto && member.largest.is_none_or(|old| *l > old));
        if newest.is_some() {
            member.largest = newest;
        }
        // RTT sample from a newly acknowledged packet sent exactly once
        // (Karn), minus the time the receiver held the ACK back.
        let sample = newest
            .and_then(|seq| room.packet(seq))
            .filter(|p| !p.retransmitted)
            .and_then(|p| p.first_sent)
            .and_then(|t| now.checked_duration_since(t))
            .map(|rtt| {
                let delay =
                    Duration::from_micros(u64::from(ack.delay_us)).min(config.max_ack_delay);
                rtt.saturating_sub(delay).max(Duration::from_micros(50))
            });
        let peer = self
            .peers
            .get_mut(&from)
            .expect("every member has peer state (set_members)");
        if let Some(rtt) = sample {
            peer.rtt.sample(rtt);
            self.stats.rtt_samples += 1;
        }
        let rto = peer.rtt.rto(config);
        let member = room.members.get_mut(&from).expect("member looked up above");
        // Any fresh ACK proves the peer alive: restart the timer.
        member.backoff = 0;
        member.rto_at = (member.stored < sent_upto).then_some(now + rto);
        for seq in old_stored..new_stored {
            if let Some(packet) = room.packet(seq).filter(|p| p.frag + 1 == p.frags) {
                let refused = ack
                    .refused
                    .iter()
                    .any(|&(start, end)| (start..end).contains(&seq));
                self.events.push_back(if refused {
                    Event::Refused {
                        room: room_id,
                        to: from,
                        id: packet.id,
                    }
                } else {
                    Event::Delivered {
                        room: room_id,
                        to: from,
                        id: packet.id,
                    }
                });
            }
        }
        self.evidence(now, room_id, from, ack.mcast_rx);
        self.release(room_id);
    }

    fn on_nack(
        &mut self,
        now: Instant,
        room_id: RoomId,
        from: PeerId,
        missing: &[(u64, u64)],
        mcast_rx: u64,
    ) {
        self.evidence(now, room_id, from, mcast_rx);
        let rto = self
            .peers
            .get(&from)
            .map_or(self.config.rto_min, |p| p.rtt.rto(&self.config));
        let Some(room) = self.rooms.get(&room_id) else {
            return;
        };
        let Some(member) = room.members.get(&from) else {
            return;
        };
        let via_group = room.uses_group() && member.fan_out == FanOut::Multicast;
        if missing
            .iter()
            .any(|&(start, _)| start < member.low(room.low))
        {
            // The receiver asks for what it will never get from us (it
            // joined later, it was handed to sync, or it stored it before a
            // restart): tell it to skip.
            let packet = Packet::Heartbeat {
                room: room_id,
                session: self.session,
                low: member.low(room.low),
                next: room.sent_upto,
            };
            self.control.push_back(Transmit {
                destination: Destination::Peer(from),
                kind: PacketKind::Heartbeat,
                bytes: packet.encode(),
            });
        }
        // A repeated NACK must not trigger a second repair of a packet that
        // is still on its way: repair only what was not sent in the last
        // quarter RTO.
        let recent = rto / 4;
        let start_floor = member.low(room.low);
        let mut wanted = Vec::new();
        // However the ranges overlap, look at no more than a window's worth
        // of packets per NACK.
        let mut budget = self.config.send_window;
        for &(start, end) in missing {
            for seq in start.max(start_floor)..end.min(room.sent_upto) {
                if budget == 0 {
                    break;
                }
                budget -= 1;
                let packet = room
                    .packet(seq)
                    .expect("low <= seq < sent_upto, so the packet is queued");
                if packet
                    .last_repair_to(&from, via_group)
                    .is_none_or(|t| t + recent <= now)
                {
                    wanted.push(seq);
                }
            }
        }
        if via_group {
            // Hold the repair briefly: if other members lost the same packet
            // (a loss near the sender), one repair to the group serves them
            // all, and members whose NACK back-off has not yet run out see
            // the gap filled and never NACK (NORM-style suppression).
            let until = now + self.config.repair_hold;
            for seq in wanted {
                let held = self
                    .held
                    .entry((room_id, seq))
                    .or_insert_with(|| HeldRepair {
                        until,
                        peers: Vec::new(),
                    });
                if !held.peers.contains(&from) {
                    held.peers.push(from);
                }
            }
        } else {
            for seq in wanted {
                self.queue_repair(room_id, from, seq);
            }
        }
    }

    /// Sends the held repairs that are due: to the group when several
    /// members miss the packet (now, or one now and another before), else
    /// by unicast.
    fn release_held(&mut self, now: Instant) {
        let due: Vec<(RoomId, u64)> = self
            .held
            .iter()
            .filter(|(_, h)| h.until <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            let held = self
                .held
                .remove(&key)
                .expect("key taken from the map just above");
            let (room_id, seq) = key;
            let Some(room) = self.rooms.get_mut(&room_id) else {
                continue;
            };
            let needy: Vec<PeerId> = held
                .peers
                .into_iter()
                .filter(|p| room.members.get(p).is_some_and(|m| !m.has_received(seq)))
                .collect();
            // A second member asking for a packet already repaired for
            // another one means the loss was near the sender and the rest
            // probably lost it too: repair it to the group this time.
            let others_lost = room.packet(seq).is_some_and(|p| {
                p.repaired
                    .iter()
                    .any(|(target, _)| target.is_some_and(|t| !needy.contains(&t)))
            });
            let group = needy.len() >= 2 || (others_lost && !needy.is_empty());
            if group && seq >= room.low && seq < room.sent_upto {
                let low = room.low;
                let packet = room
                    .packet_mut(seq)
                    .expect("low <= seq < sent_upto, so the packet is queued");
                packet.group_sent = Some(now);
                packet.note_repair(None, now);
                let bytes = data_packet(room_id, self.session, seq, low, packet, false).encode();
                self.data.push_back(Transmit {
                    destination: Destination::Group(room_id),
                    kind: PacketKind::Data,
                    bytes,
                });
                self.stats.retransmits += 1;
                self.stats.group_repairs += 1;
            } else {
                for peer in needy {
                    self.queue_repair(room_id, peer, seq);
                }
            }
        }
    }

    /// Updates the multicast fall-back decision for `peer` from the number
    /// of group packets it reports.
    fn evidence(&mut self, now: Instant, room_id: RoomId, peer: PeerId, mcast_rx: u64) {
        let threshold = self.config.fallback_after;
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        if !room.config.multicast {
            return;
        }
        let sent_upto = room.sent_upto;
        let Some(member) = room.members.get_mut(&peer) else {
            return;
        };
        let change = if mcast_rx > member.mcast_rx {
            member.mcast_rx = mcast_rx;
            member.mark_seq = sent_upto;
            let recovered = mcast_rx.saturating_sub(member.rx_at_switch) >= threshold / 2;
            (member.fan_out == FanOut::Unicast && recovered).then_some(FanOut::Multicast)
        } else {
            // It acknowledged `threshold` packets that were all sent to the
            // group after its group counter last rose, and heard none of
            // them via the group.
            let deaf = member.received >= member.mark_seq + threshold;
            (member.fan_out == FanOut::Multicast && deaf).then_some(FanOut::Unicast)
        };
        let Some(fan_out) = change else { return };
        member.fan_out = fan_out;
        member.mark_seq = sent_upto;
        member.rx_at_switch = member.mcast_rx;
        if fan_out == FanOut::Unicast {
            // Re-drive what it still misses by unicast straight away.
            member.rto_at = Some(now);
            member.backoff = 0;
        }
        self.events.push_back(Event::FanOutChanged {
            room: room_id,
            peer,
            fan_out,
        });
    }

    /// Drops packets every member stored.
    fn release(&mut self, room_id: RoomId) {
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let floor = room
            .members
            .values()
            .map(|m| m.stored)
            .min()
            .unwrap_or(room.sent_upto);
        while room.low < floor.min(room.sent_upto) && room.out.pop_front().is_some() {
            room.low += 1;
        }
    }

    /// Makes room for `needed` packets by handing the oldest messages that
    /// only unreachable members still lack over to sync.
    fn release_to_sync(&mut self, room_id: RoomId, needed: usize) {
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let peers = &self.peers;
        let reachable_floor = room
            .members
            .iter()
            .filter(|(p, _)| !peers.get(p).is_some_and(|s| s.unreachable))
            .map(|(_, m)| m.stored)
            .min()
            .unwrap_or(room.sent_upto)
            .min(room.sent_upto);
        while room.out.len() + needed > self.config.max_queued && room.low < reachable_floor {
            let Some(packet) = room.out.front() else {
                break;
            };
            // Release whole messages only, so a receiver told to skip to
            // `low` always lands on a message boundary.
            let frags_left = u64::from(packet.frags - packet.frag);
            if room.low + frags_left > reachable_floor {
                break;
            }
            let id = packet.id;
            for _ in 0..frags_left {
                room.out.pop_front();
                room.low += 1;
            }
            for (peer, member) in room.members.iter_mut() {
                if member.stored < room.low {
                    self.events.push_back(Event::Undelivered {
                        room: room_id,
                        to: *peer,
                        id,
                    });
                    member.stored = room.low;
                    member.received = member.received.max(room.low);
                }
            }
        }
    }

    fn heard(&mut self, now: Instant, peer: PeerId) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        if !state.unreachable {
            return;
        }
        state.unreachable = false;
        self.events.push_back(Event::PeerReachable { peer });
        self.rearm(now, peer);
    }

    /// Resets `peer`'s backoff and makes everything it still lacks due now.
    fn rearm(&mut self, now: Instant, peer: PeerId) {
        for room in self.rooms.values_mut() {
            let sent_upto = room.sent_upto;
            if let Some(member) = room.members.get_mut(&peer) {
                member.backoff = 0;
                if member.stored < sent_upto {
                    member.rto_at = Some(now);
                }
            }
        }
    }

    // --- receiving -------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn on_data(
        &mut self,
        now: Instant,
        room: RoomId,
        from: PeerId,
        (via, authenticated): (Via, bool),
        session: u64,
        low: u64,
        seq: u64,
        fragment: Fragment,
        ack_now: bool,
    ) {
        let config = &self.config;
        let Some(stream) = stream_entry(
            &mut self.streams,
            &mut self.peers,
            &mut self.stats,
            (room, from),
            (session, authenticated),
            low,
        ) else {
            return;
        };
        let skipped = skip_to(stream, low, authenticated);
        let Some(peer) = self.peers.get_mut(&from) else {
            return;
        };
        peer.reassembly_bytes = peer.reassembly_bytes.saturating_sub(skipped);
        let peer_bytes = peer.reassembly_bytes;
        if via == Via::Multicast {
            // Evidence that the group reaches us, even if a unicast copy of
            // this packet was faster.
            stream.mcast_rx += 1;
        }
        let duplicate = seq < stream.next || stream.buf.contains_key(&seq);
        let size = fragment.chunk.len();
        if duplicate {
            self.stats.duplicate_packets += 1;
            // The sender resent it, so it probably missed our ACK.
            if via == Via::Unicast {
                stream.dirty = true;
                schedule_ack(stream, now);
            }
            return;
        }
        if seq >= stream.next + config.recv_window
            || peer_bytes + size > config.max_reassembly_per_peer
        {
            self.stats.dropped_buffer += 1;
            return;
        }
        stream.buf.insert(seq, fragment);
        stream.buffered_bytes += size;
        if stream.largest.is_none_or(|l| seq > l) {
            stream.largest = Some(seq);
            stream.largest_at = Some(now);
        }
        stream.dirty = true;
        stream.since_ack += 1;
        stream.urgent |= ack_now;
        // The sender is alive: NACKs that gave up may try again.
        stream.nack_tries = 0;
        let due = if stream.since_ack >= config.ack_every {
            now
        } else {
            paced_ack(stream, now, config.max_ack_delay)
        };
        schedule_ack(stream, due);
        if stream.expire_at.is_none() {
            stream.expire_at = Some(now + config.reassembly_timeout);
        }
        peer.reassembly_bytes += size;
        self.deliver(now, room, from);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_heartbeat(
        &mut self,
        now: Instant,
        room: RoomId,
        from: PeerId,
        (via, authenticated): (Via, bool),
        session: u64,
        low: u64,
        next: u64,
    ) {
        let Some(stream) = stream_entry(
            &mut self.streams,
            &mut self.peers,
            &mut self.stats,
            (room, from),
            (session, authenticated),
            low,
        ) else {
            return;
        };
        let skipped = skip_to(stream, low, authenticated);
        if let Some(peer) = self.peers.get_mut(&from) {
            peer.reassembly_bytes = peer.reassembly_bytes.saturating_sub(skipped);
        }
        let stream = self
            .streams
            .get_mut(&(room, from))
            .expect("stream created just above");
        stream.announced = stream.announced.max(next);
        stream.nack_tries = 0;
        if via == Via::Unicast {
            // A probe: the sender wants to hear from us whatever the state.
            stream.dirty = true;
            schedule_ack(stream, now);
        }
        self.deliver(now, room, from);
    }

    /// Delivers every complete message at the head of the stream, then
    /// updates the NACK and expiry timers.
    fn deliver(&mut self, now: Instant, room: RoomId, from: PeerId) {
        let config = &self.config;
        let Some(stream) = self.streams.get_mut(&(room, from)) else {
            return;
        };
        let mut freed = 0;
        let mut progressed = false;
        while stream.unconfirmed.len() < config.max_unconfirmed {
            let Some(head) = stream.buf.get(&stream.next) else {
                break;
            };
            let (id, frags) = (head.id, head.frags);
            if head.frag != 0 {
                // Only a broken sender starts a stream mid-message.
                if let Some(f) = stream.buf.remove(&stream.next) {
                    freed += f.chunk.len();
                }
                stream.next += 1;
                self.stats.dropped_buffer += 1;
                progressed = true;
                continue;
            }
            let end = stream.next + u64::from(frags);
            let complete = (stream.next..end).all(|s| {
                stream.buf.get(&s).is_some_and(|f| {
                    f.id == id && f.frags == frags && u64::from(f.frag) == s - stream.next
                })
            });
            if !complete {
                let inconsistent = (stream.next..end).any(|s| {
                    stream
                        .buf
                        .get(&s)
                        .is_some_and(|f| f.id != id || f.frags != frags)
                });
                if inconsistent {
                    if let Some(f) = stream.buf.remove(&stream.next) {
                        freed += f.chunk.len();
                    }
                    stream.next += 1;
                    self.stats.dropped_buffer += 1;
                    progressed = true;
                    continue;
                }
                break;
            }
            let mut payload = Vec::new();
            for s in stream.next..end {
                let f = stream.buf.remove(&s).expect("completeness checked above");
                freed += f.chunk.len();
                payload.extend_from_slice(&f.chunk);
            }
            let seq = end - 1;
            stream.next = end;
            progressed = true;
            if self.recent_set.contains(&id) {
                // Already delivered (e.g. under an earlier sender session):
                // it is in the store, so acknowledge it as stored.
                self.stats.duplicate_messages += 1;
                stream.unconfirmed.push_back((seq, true));
            } else {
                self.recent_set.insert(id);
                self.recent.push_back(id);
                if self.recent.len() > config.dedup_capacity
                    && let Some(old) = self.recent.pop_front()
                {
                    self.recent_set.remove(&old);
                }
                stream.unconfirmed.push_back((seq, false));
                self.events.push_back(Event::Received {
                    room,
                    from,
                    seq,
                    id,
                    payload,
                });
            }
        }
        stream.buffered_bytes -= freed;
        if let Some(peer) = self.peers.get_mut(&from) {
            peer.reassembly_bytes = peer.reassembly_bytes.saturating_sub(freed);
        }
        if advance_stored(stream) {
            schedule_ack(stream, paced_ack(stream, now, config.max_ack_delay));
        }
        if progressed {
            stream.nack_tries = 0;
            stream.expire_at = (!stream.buf.is_empty()).then_some(now + config.reassembly_timeout);
        }
        if stream.buf.is_empty() {
            stream.expire_at = None;
        }
        // Gap detection: anything known to exist that has not arrived.
        let gap = stream.received_upto() < stream.known_end();
        if !gap {
            stream.nack_at = None;
            stream.nack_tries = 0;
        } else if stream.nack_at.is_none() && stream.nack_tries <= config.max_retries {
            let jitter = config.nack_jitter.as_micros() as u64;
            let extra = if jitter > 0 {
                self.rng.random_range(0..jitter)
            } else {
                0
            };
            stream.nack_at = Some(now + config.nack_delay + Duration::from_micros(extra));
        }
    }

    fn stream_timers(&mut self, now: Instant, room: RoomId, from: PeerId) {
        let config = &self.config;
        let Some(stream) = self.streams.get_mut(&(room, from)) else {
            return;
        };
        if stream.expire_at.is_some_and(|t| t <= now) {
            // Incomplete data waited too long: free it. The sender resends
            // on NACK or timeout.
            self.stats.dropped_buffer += stream.buf.len() as u64;
            if let Some(peer) = self.peers.get_mut(&from) {
                peer.reassembly_bytes = peer.reassembly_bytes.saturating_sub(stream.buffered_bytes);
            }
            stream.buf.clear();
            stream.buffered_bytes = 0;
            stream.expire_at = None;
            stream.dirty = true;
            schedule_ack(stream, now + config.max_ack_delay);
            // Re-arm gap detection for what was just dropped.
            stream.nack_at = Some(now + config.nack_delay);
            stream.nack_tries = 0;
        }
        if stream.nack_at.is_some_and(|t| t <= now) {
            let from_seq = stream.received_upto();
            let end = stream.known_end().min(stream.next + config.recv_window);
            let missing = stream.missing_ranges(from_seq, end);
            if missing.is_empty() || stream.nack_tries > config.max_retries {
                stream.nack_at = None;
            } else {
                let packet = Packet::Nack {
                    room,
                    session: stream.session,
                    missing,
                    mcast_rx: stream.mcast_rx,
                };
                self.control.push_back(Transmit {
                    destination: Destination::Peer(from),
                    kind: PacketKind::Nack,
                    bytes: packet.encode(),
                });
                stream.nack_tries += 1;
                let wait = config
                    .nack_retry
                    .saturating_mul(1 << stream.nack_tries.min(16))
                    .min(config.rto_max);
                stream.nack_at = Some(now + wait);
            }
        }
        if stream.ack_at.is_some_and(|t| t <= now) {
            stream.ack_at = None;
            if stream.dirty {
                stream.dirty = false;
                stream.since_ack = 0;
                stream.last_ack = Some(now);
                if stream.stored >= stream.next {
                    // Everything delivered is reported stored: back to pacing.
                    stream.urgent = false;
                }
                stream.ack_no += 1;
                let received = stream.received_upto();
                let delay = stream
                    .largest_at
                    .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                let packet = Packet::Ack {
                    room,
                    session: stream.session,
                    receiver_session: self.session,
                    ack_no: stream.ack_no,
                    received,
                    ranges: stream.arrived_ranges(received),
                    stored: stream.stored,
                    largest: stream.largest,
                    delay_us: u32::try_from(delay.as_micros()).unwrap_or(u32::MAX),
                    mcast_rx: stream.mcast_rx,
                    refused: stream.refused.clone(),
                };
                self.control.push_back(Transmit {
                    destination: Destination::Peer(from),
                    kind: PacketKind::Ack,
                    bytes: packet.encode(),
                });
            }
        }
    }
}

/// A NACKed packet waiting to see whether more members lost it.
#[derive(Debug)]
struct HeldRepair {
    until: Instant,
    peers: Vec<PeerId>,
}

/// Fields of an ACK, unpacked.
struct AckInfo {
    receiver_session: u64,
    ack_no: u64,
    received: u64,
    ranges: Vec<(u64, u64)>,
    stored: u64,
    largest: Option<u64>,
    delay_us: u32,
    mcast_rx: u64,
    refused: Vec<(u64, u64)>,
}

fn data_packet(
    room: RoomId,
    session: u64,
    seq: u64,
    low: u64,
    packet: &OutPacket,
    ack_now: bool,
) -> Packet {
    Packet::Data {
        room,
        session,
        seq,
        low: low.min(seq),
        frag: packet.frag,
        frags: packet.frags,
        id: packet.id,
        chunk: packet.chunk.clone(),
        ack_now,
    }
}

/// Finds or creates the stream of `from` in `room`, handling sender restarts.
/// `None` for stragglers of a retired session, and for a new session named
/// by a packet that is not `authenticated` as `from`'s (any member can seal
/// a group frame in `from`'s name, and a switch retires the real session).
fn stream_entry<'a>(
    streams: &'a mut BTreeMap<(RoomId, PeerId), RecvStream>,
    peers: &mut BTreeMap<PeerId, PeerState>,
    stats: &mut Stats,
    (room, from): (RoomId, PeerId),
    (session, authenticated): (u64, bool),
    low: u64,
) -> Option<&'a mut RecvStream> {
    let stream = streams
        .entry((room, from))
        .or_insert_with(|| RecvStream::new(session, low));
    if stream.session != session {
        if stream.retired.contains(&session) {
            return None;
        }
        if !authenticated {
            stats.group_session_switches += 1;
            return None;
        }
        // The sender restarted: start over; the duplicate filter is global.
        let mut retired = std::mem::take(&mut stream.retired);
        retired.push(stream.session);
        if retired.len() > 4 {
            retired.remove(0);
        }
        if let Some(peer) = peers.get_mut(&from) {
            peer.reassembly_bytes = peer.reassembly_bytes.saturating_sub(stream.buffered_bytes);
        }
        *stream = RecvStream::new(session, low);
        stream.retired = retired;
    }
    Some(stream)
}

/// Tokens short of one packet that still count as one: float rounding in
/// the refill must not leave the bucket a hair below a packet forever.
const TOKEN_SLACK: f64 = 1e-6;

/// When a routine ACK is due: at once for news on a stream a lone packet
/// marked `ack_now`, or if the stream was quiet for `max_ack_delay` (so an
/// idle chat gets its "delivered" tick without delay), else `max_ack_delay`
/// after the previous ACK (so a busy stream sends one ACK per interval, not
/// one per packet).
fn paced_ack(stream: &RecvStream, now: Instant, max_ack_delay: Duration) -> Instant {
    // Only for news: an ACK that would repeat the last one waits as usual
    // (so a stream whose store lags cannot keep a timer due).
    if stream.urgent && stream.dirty {
        return now;
    }
    stream
        .last_ack
        .map_or(now, |last| (last + max_ack_delay).max(now))
}

fn schedule_ack(stream: &mut RecvStream, due: Instant) {
    stream.ack_at = Some(stream.ack_at.map_or(due, |t| t.min(due)));
}

/// Moves `stored` over confirmed deliveries; `true` if it moved.
/// Adds `start..end` to the refused ranges, merging it with its
/// neighbours; over `MAX_RANGES` the two oldest ranges merge, which may take
/// in messages that were stored (their senders then send them again, and
/// the duplicate is acknowledged as stored): a refusal is never lost.
fn add_refused(refused: &mut Vec<(u64, u64)>, start: u64, end: u64) {
    refused.push((start, end));
    refused.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(refused.len());
    for &(start, end) in refused.iter() {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    *refused = merged;
    while refused.len() > MAX_RANGES {
        let second = refused.remove(1);
        refused[0].1 = second.1;
    }
}

fn advance_stored(stream: &mut RecvStream) -> bool {
    let before = stream.stored;
    while let Some(&(end, true)) = stream.unconfirmed.front() {
        stream.stored = stream.stored.max(end + 1);
        stream.unconfirmed.pop_front();
    }
    if stream.unconfirmed.is_empty() {
        // Skipped ranges have nothing to confirm.
        stream.stored = stream.stored.max(stream.next);
    }
    if stream.stored != before {
        stream.dirty = true;
        true
    } else {
        false
    }
}

/// The sender no longer has anything below `low`: skip it. Returns the
/// buffered bytes freed.
fn skip_to(stream: &mut RecvStream, low: u64, authenticated: bool) -> usize {
    // The sender has settled everything below `low`: its refusals no longer
    // need reporting. Only the sender itself says so: a `low` in a group
    // frame may be another member's forgery.
    if authenticated {
        stream.refused.retain(|&(_, end)| end > low);
    }
    if low <= stream.next {
        return 0;
    }
    // Nothing skipped was stored here. If the sender still has any of it
    // (the `low` was forged), the next ACK must not pass for "stored".
    add_refused(&mut stream.refused, stream.next, low);
    let keep = stream.buf.split_off(&low);
    let dropped: usize = stream.buf.values().map(|f| f.chunk.len()).sum();
    stream.buffered_bytes -= dropped;
    stream.buf = keep;
    stream.next = low;
    stream.announced = stream.announced.max(low);
    stream.dirty = true;
    dropped
}

#[cfg(test)]
mod tests;
