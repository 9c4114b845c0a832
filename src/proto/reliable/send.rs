//! Sending: pacing, building data packets and repairs, and the
//! retransmission timers of rooms and members.

use std::ops::Bound;
use std::time::Instant;

use super::Reliable;
use super::event::{Event, FanOut};
use super::packet::{Packet, PacketKind};
use super::room::{OutPacket, Room};
use super::transmit::{Destination, Transmit};
use crate::proto::ids::{PeerId, RoomId};

/// In a multicast room where every member fell back to unicast, every this
/// many packets one also goes to the group, to notice recovery.
const MULTICAST_PROBE_EVERY: u64 = 64;

impl Reliable {
    pub(super) fn count(&mut self, transmit: Transmit) -> Transmit {
        self.stats.sent[transmit.kind.index()] += 1;
        transmit
    }

    pub(super) fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.tokens_at).as_secs_f64();
        self.tokens =
            // A burst below one packet would never send anything.
            (self.tokens + elapsed * f64::from(self.config.rate)).min(f64::from(self.config.burst.max(1)));
        self.tokens_at = now;
    }

    pub(super) fn has_data_work(&self) -> bool {
        !self.data.is_empty()
            || !self.repairs.is_empty()
            || self.rooms.values().any(|r| self.can_send_new(r))
    }

    pub(super) fn window_base(&self, room: &Room) -> u64 {
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

    pub(super) fn can_send_new(&self, room: &Room) -> bool {
        room.sent_upto < room.next_seq()
            && room.sent_upto < self.window_base(room) + self.config.send_window
    }

    /// Builds the next data datagram(s): a pending repair first, then the
    /// next new packet of the next room that has one (rooms take turns, so
    /// a big transfer in one room does not starve the others). `false` if
    /// there was nothing to do.
    pub(super) fn build_data(&mut self, now: Instant) -> bool {
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
        self.build_new(now, room_id);
        true
    }

    /// Builds the datagrams of `room_id`'s next new packet: once to the
    /// group (when members hear it, or as an occasional probe) and a
    /// unicast copy for each reachable member served by unicast; arms the
    /// members' retransmission timers and the room's heartbeat.
    fn build_new(&mut self, now: Instant, room_id: RoomId) {
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
        let ack_now = room.lone_packet(seq, now, config.lone_gap);
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
    }

    /// Builds a unicast repair if it is still needed; `false` if not.
    pub(super) fn build_repair(
        &mut self,
        now: Instant,
        (room_id, peer, seq): (RoomId, PeerId, u64),
    ) -> bool {
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

    pub(super) fn queue_repair(&mut self, room: RoomId, peer: PeerId, seq: u64) {
        // Bounded by the send queue: one entry per (member, queued packet).
        if self.repair_set.insert((room, peer, seq)) {
            self.repairs.push_back((room, peer, seq));
        }
    }

    pub(super) fn room_timers(&mut self, now: Instant, room_id: RoomId) {
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
    pub(super) fn member_timeout(&mut self, now: Instant, room_id: RoomId, peer: PeerId) {
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
}

pub(super) fn data_packet(
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
