//! Receiving: data and heartbeats into a sender's stream, in-order
//! delivery of complete messages, and the stream's ACK, NACK and expiry
//! timers.

use std::time::{Duration, Instant};

use rand::RngExt;

use super::Reliable;
use super::event::Event;
use super::packet::{Packet, PacketKind};
use super::stream::{Fragment, advance_stored, paced_ack, schedule_ack, skip_to, stream_entry};
use super::transmit::{Destination, Transmit, Via};
use crate::proto::ids::{PeerId, RoomId};

impl Reliable {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_data(
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
    pub(super) fn on_heartbeat(
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
    pub(super) fn deliver(&mut self, now: Instant, room: RoomId, from: PeerId) {
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

    pub(super) fn stream_timers(&mut self, now: Instant, room: RoomId, from: PeerId) {
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
