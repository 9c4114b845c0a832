//! A receiver's side of one sender's stream into a room: reassembly,
//! delivery order, what was stored or refused, and when to ACK or NACK.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::packet::MAX_RANGES;
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

/// When a routine ACK is due: at once for news on a stream a lone packet
/// marked `ack_now`, or if the stream was quiet for `max_ack_delay` (so an
/// idle chat gets its "delivered" tick without delay), else `max_ack_delay`
/// after the previous ACK (so a busy stream sends one ACK per interval, not
/// one per packet).
pub(super) fn paced_ack(stream: &RecvStream, now: Instant, max_ack_delay: Duration) -> Instant {
    // Only for news: an ACK that would repeat the last one waits as usual
    // (so a stream whose store lags cannot keep a timer due).
    if stream.urgent && stream.dirty {
        return now;
    }
    stream
        .last_ack
        .map_or(now, |last| (last + max_ack_delay).max(now))
}

pub(super) fn schedule_ack(stream: &mut RecvStream, due: Instant) {
    stream.ack_at = Some(stream.ack_at.map_or(due, |t| t.min(due)));
}

/// Moves `stored` over confirmed deliveries; `true` if it moved.
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

pub(super) fn advance_stored(stream: &mut RecvStream) -> bool {
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
pub(super) fn skip_to(stream: &mut RecvStream, low: u64, authenticated: bool) -> usize {
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
