//! Receiving: data and heartbeats into a sender's stream, in-order
//! delivery of complete messages, and the stream's ACK, NACK and expiry
//! timers.

use std::time::Instant;

use super::Reliable;
use super::event::Event;
use super::stream::{Fragment, Head, stream_entry};
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
        let skipped = stream.skip_to(low, authenticated);
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
                stream.schedule_ack(now);
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
            stream.paced_ack(now, config.max_ack_delay)
        };
        stream.schedule_ack(due);
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
        let skipped = stream.skip_to(low, authenticated);
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
            stream.schedule_ack(now);
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
            let (seq, id, payload) = match stream.take_head() {
                Head::Waiting => break,
                Head::Dropped(bytes) => {
                    freed += bytes;
                    self.stats.dropped_buffer += 1;
                    progressed = true;
                    continue;
                }
                Head::Complete {
                    seq,
                    id,
                    payload,
                    bytes,
                } => {
                    freed += bytes;
                    progressed = true;
                    (seq, id, payload)
                }
            };
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
        stream.after_delivery(now, progressed, config, &mut self.rng);
    }

    /// Fires the stream's due timers: expiry of incomplete data, then its
    /// NACK, then its ACK.
    pub(super) fn stream_timers(&mut self, now: Instant, room: RoomId, from: PeerId) {
        let config = &self.config;
        let Some(stream) = self.streams.get_mut(&(room, from)) else {
            return;
        };
        if let Some((packets, bytes)) = stream.expire(now, config) {
            self.stats.dropped_buffer += packets;
            if let Some(peer) = self.peers.get_mut(&from) {
                peer.reassembly_bytes = peer.reassembly_bytes.saturating_sub(bytes);
            }
        }
        let nack = stream.nack_due(now, room, config);
        let ack = stream.ack_due(now, room, self.session);
        for packet in [nack, ack].into_iter().flatten() {
            self.control.push_back(Transmit {
                destination: Destination::Peer(from),
                kind: packet.kind(),
                bytes: packet.encode(),
            });
        }
    }
}
