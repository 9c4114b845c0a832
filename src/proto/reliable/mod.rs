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
//!
//! The pieces: `packet` (the wire format), `config`, `event`, `transmit`
//! and `stats` (the types of the public API), `peer` and `rtt` (what we
//! know of a peer, its RTT estimate), `room` (a sender's side of a room)
//! and `stream` (a receiver's side of one sender's stream). [`Reliable`] itself lives
//! here with its public API; its inner workings are split by role:
//! `send` (pacing, data and repairs, timers), `feedback` (ACKs and NACKs
//! as the sender handles them) and `receive` (data, delivery, ACKs and
//! NACKs as the receiver sends them).

mod config;
mod event;
mod feedback;
mod packet;
mod peer;
mod receive;
mod room;
mod rtt;
mod send;
mod stats;
mod stream;
mod transmit;

pub use config::{Config, RoomConfig};
pub use event::{Event, FanOut, SendError};
pub use packet::{
    MAX_CHUNK, MAX_FRAGS, MAX_MESSAGE, MAX_PACKET, MAX_RANGES, MAX_SEQ, Packet, PacketError,
    PacketKind, VERSION,
};
pub use stats::{BufferUsage, Stats};
pub use transmit::{Destination, Transmit, Via};

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;

use super::ids::{MessageId, PeerId, RoomId};
use peer::PeerState;
use room::{AckInfo, HeldRepair, Member, OutPacket, Room};
use rtt::Rtt;
use stream::{Fragment, RecvStream, add_refused};

/// Tokens short of one packet that still count as one: float rounding in
/// the refill must not leave the bucket a hair below a packet forever.
const TOKEN_SLACK: f64 = 1e-6;

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
        if stream.advance_stored() {
            stream.schedule_ack(stream.paced_ack(now, config_delay));
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
        let room = self.admit(&packet, from, bound_to)?;
        self.heard(now, from);
        // A packet over the pairwise session is the claimed sender's own; one
        // in a group frame may have been sealed by any member of the room.
        let authenticated = bound_to.is_none();
        self.dispatch(now, room, from, (via, authenticated), packet);
        Ok(())
    }

    /// Checks that `packet` may be handled at all: about a room we are in,
    /// from one of its members, and, when it came in a group frame
    /// (`bound_to`), about that frame's room and no ACK or NACK. Counts and
    /// refuses the rest; returns the packet's room.
    fn admit(
        &mut self,
        packet: &Packet,
        from: PeerId,
        bound_to: Option<RoomId>,
    ) -> Result<RoomId, PacketError> {
        let room = match packet {
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
        Ok(room)
    }

    /// Hands an admitted packet to the handler of its kind. `origin` says
    /// how it came and whether it is the claimed sender's own.
    fn dispatch(
        &mut self,
        now: Instant,
        room: RoomId,
        from: PeerId,
        (via, authenticated): (Via, bool),
        packet: Packet,
    ) {
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
}

#[cfg(test)]
mod tests;
