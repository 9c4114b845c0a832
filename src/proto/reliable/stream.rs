//! A receiver's side of one sender's stream into a room: reassembly,
//! delivery order, what was stored or refused, and when to ACK or NACK.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::packet::MAX_RANGES;
use rand::RngExt;
use rand::rngs::StdRng;

use super::config::Config;
use super::packet::Packet;
use super::peer::PeerState;
use super::stats::Stats;
use crate::proto::ids::{MessageId, PeerId, RoomId};

/// A buffered incoming fragment.
#[derive(Debug)]
pub(super) struct Fragment {
    pub(super) id: MessageId,
    pub(super) frag: u16,
    pub(super) frags: u16,
    pub(super) chunk: Vec<u8>,
}

/// Receive state for one sender's stream into one room.
#[derive(Debug)]
pub(super) struct RecvStream {
    pub(super) session: u64,
    /// Sessions of earlier runs of this sender, whose stragglers are ignored.
    pub(super) retired: Vec<u64>,
    /// Next sequence number to deliver.
    pub(super) next: u64,
    pub(super) buf: BTreeMap<u64, Fragment>,
    pub(super) buffered_bytes: usize,
    /// Delivered messages (last sequence number, confirmed?) not yet
    /// covered by `stored`.
    pub(super) unconfirmed: VecDeque<(u64, bool)>,
    pub(super) stored: u64,
    /// Messages the application refused (last fragments' sequence numbers,
    /// as ranges), reported with every ACK until the sender's `low` passes
    /// them; at most `MAX_RANGES`.
    pub(super) refused: Vec<(u64, u64)>,
    pub(super) largest: Option<u64>,
    pub(super) largest_at: Option<Instant>,
    /// Highest `next` the sender announced in a heartbeat.
    pub(super) announced: u64,
    pub(super) mcast_rx: u64,
    pub(super) ack_no: u64,
    pub(super) ack_at: Option<Instant>,
    /// When the last ACK went out.
    pub(super) last_ack: Option<Instant>,
    /// Something changed since the last ACK.
    pub(super) dirty: bool,
    /// A lone packet asked for its ACK at once: ACKs are not paced until
    /// one reports everything delivered as stored.
    pub(super) urgent: bool,
    pub(super) since_ack: u32,
    pub(super) nack_at: Option<Instant>,
    pub(super) nack_tries: u32,
    /// When the buffered out-of-order packets expire.
    pub(super) expire_at: Option<Instant>,
}

impl RecvStream {
    pub(super) fn new(session: u64, low: u64) -> Self {
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
    pub(super) fn received_upto(&self) -> u64 {
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
    pub(super) fn known_end(&self) -> u64 {
        self.largest
            .map_or(0, |l| l + 1)
            .max(self.announced)
            .max(self.next)
    }

    /// Runs of arrived packets above `from`, at most [`MAX_RANGES`].
    pub(super) fn arrived_ranges(&self, from: u64) -> Vec<(u64, u64)> {
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
    pub(super) fn missing_ranges(&self, from: u64, end: u64) -> Vec<(u64, u64)> {
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

/// Finds or creates the stream of `from` in `room`, handling sender restarts.
/// `None` for stragglers of a retired session, and for a new session named
/// by a packet that is not `authenticated` as `from`'s (any member can seal
/// a group frame in `from`'s name, and a switch retires the real session).
pub(super) fn stream_entry<'a>(
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

/// What [`RecvStream::take_head`] found at the head of the stream.
pub(super) enum Head {
    /// The next message is not complete yet.
    Waiting,
    /// A head packet that can never be part of a message was dropped; the
    /// bytes it held.
    Dropped(usize),
    /// A complete message, taken out of the buffer: the sequence number of
    /// its last fragment, its id, its payload and the bytes it held.
    Complete {
        seq: u64,
        id: MessageId,
        payload: Vec<u8>,
        bytes: usize,
    },
}

impl RecvStream {
    /// Takes the message at the head of the stream out of the buffer if it
    /// is complete, or drops a head packet that can never be part of one.
    pub(super) fn take_head(&mut self) -> Head {
        let Some(head) = self.buf.get(&self.next) else {
            return Head::Waiting;
        };
        let (id, frags) = (head.id, head.frags);
        if head.frag != 0 {
            // Only a broken sender starts a stream mid-message.
            return Head::Dropped(self.drop_head());
        }
        let end = self.next + u64::from(frags);
        let complete = (self.next..end).all(|s| {
            self.buf.get(&s).is_some_and(|f| {
                f.id == id && f.frags == frags && u64::from(f.frag) == s - self.next
            })
        });
        if !complete {
            let inconsistent = (self.next..end).any(|s| {
                self.buf
                    .get(&s)
                    .is_some_and(|f| f.id != id || f.frags != frags)
            });
            if inconsistent {
                return Head::Dropped(self.drop_head());
            }
            return Head::Waiting;
        }
        let mut payload = Vec::new();
        let mut bytes = 0;
        for s in self.next..end {
            let f = self.buf.remove(&s).expect("completeness checked above");
            bytes += f.chunk.len();
            payload.extend_from_slice(&f.chunk);
        }
        self.next = end;
        Head::Complete {
            seq: end - 1,
            id,
            payload,
            bytes,
        }
    }

    /// Drops the head packet; returns the bytes it held.
    fn drop_head(&mut self) -> usize {
        let bytes = self.buf.remove(&self.next).map_or(0, |f| f.chunk.len());
        self.next += 1;
        bytes
    }

    /// After a delivery pass: acknowledges what is now stored, and re-arms
    /// the expiry timer and gap detection (a NACK after `nack_delay` plus a
    /// random share of `nack_jitter`) for what is still missing.
    pub(super) fn after_delivery(
        &mut self,
        now: Instant,
        progressed: bool,
        config: &Config,
        rng: &mut StdRng,
    ) {
        if self.advance_stored() {
            self.schedule_ack(self.paced_ack(now, config.max_ack_delay));
        }
        if progressed {
            self.nack_tries = 0;
            self.expire_at = (!self.buf.is_empty()).then_some(now + config.reassembly_timeout);
        }
        if self.buf.is_empty() {
            self.expire_at = None;
        }
        // Gap detection: anything known to exist that has not arrived.
        let gap = self.received_upto() < self.known_end();
        if !gap {
            self.nack_at = None;
            self.nack_tries = 0;
        } else if self.nack_at.is_none() && self.nack_tries <= config.max_retries {
            let jitter = config.nack_jitter.as_micros() as u64;
            let extra = if jitter > 0 {
                rng.random_range(0..jitter)
            } else {
                0
            };
            self.nack_at = Some(now + config.nack_delay + Duration::from_micros(extra));
        }
    }

    /// If the expiry timer is due, frees the incomplete data that waited
    /// too long (the sender resends it on NACK or timeout) and returns the
    /// packets and bytes dropped.
    pub(super) fn expire(&mut self, now: Instant, config: &Config) -> Option<(u64, usize)> {
        if self.expire_at.is_none_or(|t| t > now) {
            return None;
        }
        let dropped = (self.buf.len() as u64, self.buffered_bytes);
        self.buf.clear();
        self.buffered_bytes = 0;
        self.expire_at = None;
        self.dirty = true;
        self.schedule_ack(now + config.max_ack_delay);
        // Re-arm gap detection for what was just dropped.
        self.nack_at = Some(now + config.nack_delay);
        self.nack_tries = 0;
        Some(dropped)
    }

    /// If the NACK timer is due and something is missing, the NACK to send
    /// (retried with backoff, at most `max_retries` times).
    pub(super) fn nack_due(
        &mut self,
        now: Instant,
        room: RoomId,
        config: &Config,
    ) -> Option<Packet> {
        if self.nack_at.is_none_or(|t| t > now) {
            return None;
        }
        let from_seq = self.received_upto();
        let end = self.known_end().min(self.next + config.recv_window);
        let missing = self.missing_ranges(from_seq, end);
        if missing.is_empty() || self.nack_tries > config.max_retries {
            self.nack_at = None;
            return None;
        }
        let packet = Packet::Nack {
            room,
            session: self.session,
            missing,
            mcast_rx: self.mcast_rx,
        };
        self.nack_tries += 1;
        let wait = config
            .nack_retry
            .saturating_mul(1 << self.nack_tries.min(16))
            .min(config.rto_max);
        self.nack_at = Some(now + wait);
        Some(packet)
    }

    /// If the ACK timer is due and something changed since the last ACK,
    /// the ACK to send. `receiver_session` is our own session.
    pub(super) fn ack_due(
        &mut self,
        now: Instant,
        room: RoomId,
        receiver_session: u64,
    ) -> Option<Packet> {
        if self.ack_at.is_none_or(|t| t > now) {
            return None;
        }
        self.ack_at = None;
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        self.since_ack = 0;
        self.last_ack = Some(now);
        if self.stored >= self.next {
            // Everything delivered is reported stored: back to pacing.
            self.urgent = false;
        }
        self.ack_no += 1;
        let received = self.received_upto();
        let delay = self
            .largest_at
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        Some(Packet::Ack {
            room,
            session: self.session,
            receiver_session,
            ack_no: self.ack_no,
            received,
            ranges: self.arrived_ranges(received),
            stored: self.stored,
            largest: self.largest,
            delay_us: u32::try_from(delay.as_micros()).unwrap_or(u32::MAX),
            mcast_rx: self.mcast_rx,
            refused: self.refused.clone(),
        })
    }

    /// When a routine ACK is due: at once for news on a stream a lone packet
    /// marked `ack_now`, or if the stream was quiet for `max_ack_delay` (so an
    /// idle chat gets its "delivered" tick without delay), else `max_ack_delay`
    /// after the previous ACK (so a busy stream sends one ACK per interval, not
    /// one per packet).
    pub(super) fn paced_ack(&self, now: Instant, max_ack_delay: Duration) -> Instant {
        // Only for news: an ACK that would repeat the last one waits as usual
        // (so a stream whose store lags cannot keep a timer due).
        if self.urgent && self.dirty {
            return now;
        }
        self.last_ack
            .map_or(now, |last| (last + max_ack_delay).max(now))
    }

    /// Arms the ACK timer for `due`, or keeps it if it is due earlier.
    pub(super) fn schedule_ack(&mut self, due: Instant) {
        self.ack_at = Some(self.ack_at.map_or(due, |t| t.min(due)));
    }

    /// Moves `stored` over confirmed deliveries; `true` if it moved.
    pub(super) fn advance_stored(&mut self) -> bool {
        let before = self.stored;
        while let Some(&(end, true)) = self.unconfirmed.front() {
            self.stored = self.stored.max(end + 1);
            self.unconfirmed.pop_front();
        }
        if self.unconfirmed.is_empty() {
            // Skipped ranges have nothing to confirm.
            self.stored = self.stored.max(self.next);
        }
        if self.stored != before {
            self.dirty = true;
            true
        } else {
            false
        }
    }

    /// The sender no longer has anything below `low`: skip it. Returns the
    /// buffered bytes freed.
    pub(super) fn skip_to(&mut self, low: u64, authenticated: bool) -> usize {
        // The sender has settled everything below `low`: its refusals no longer
        // need reporting. Only the sender itself says so: a `low` in a group
        // frame may be another member's forgery.
        if authenticated {
            self.refused.retain(|&(_, end)| end > low);
        }
        if low <= self.next {
            return 0;
        }
        // Nothing skipped was stored here. If the sender still has any of it
        // (the `low` was forged), the next ACK must not pass for "stored".
        add_refused(&mut self.refused, self.next, low);
        let keep = self.buf.split_off(&low);
        let dropped: usize = self.buf.values().map(|f| f.chunk.len()).sum();
        self.buffered_bytes -= dropped;
        self.buf = keep;
        self.next = low;
        self.announced = self.announced.max(low);
        self.dirty = true;
        dropped
    }
}

/// Adds `start..end` to the refused ranges, merging it with its
/// neighbours; over `MAX_RANGES` the two oldest ranges merge, which may take
/// in messages that were stored (their senders then send them again, and
/// the duplicate is acknowledged as stored): a refusal is never lost.
pub(super) fn add_refused(refused: &mut Vec<(u64, u64)>, start: u64, end: u64) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_over_the_range_cap_merge_and_are_never_lost() {
        let mut refused = Vec::new();
        for seq in (0..40).step_by(2) {
            add_refused(&mut refused, seq, seq + 1);
        }
        assert_eq!(refused.len(), MAX_RANGES);
        for seq in (0..40).step_by(2) {
            assert!(
                refused.iter().any(|&(s, e)| (s..e).contains(&seq)),
                "{seq} still reported"
            );
        }
        // Contiguous refusals share a range.
        let mut contiguous = Vec::new();
        for seq in 5..9 {
            add_refused(&mut contiguous, seq, seq + 1);
        }
        assert_eq!(contiguous, vec![(5, 9)]);
        // So do overlapping ones, added in any order.
        add_refused(&mut contiguous, 12, 20);
        add_refused(&mut contiguous, 2, 6);
        add_refused(&mut contiguous, 9, 12);
        assert_eq!(contiguous, vec![(2, 20)]);
    }
}
