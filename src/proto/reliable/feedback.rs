//! What a sender does with its receivers' feedback: ACKs (delivery,
//! RTT, releasing the queue), NACKs (repairs, held for the group),
//! multicast fall-back, and peers heard again.

use std::time::{Duration, Instant};

use super::Reliable;
use super::event::{Event, FanOut};
use super::packet::{Packet, PacketKind};
use super::room::{AckInfo, HeldRepair};
use super::send::data_packet;
use super::transmit::{Destination, Transmit};
use crate::proto::ids::{PeerId, RoomId};

impl Reliable {
    pub(super) fn on_ack(&mut self, now: Instant, room_id: RoomId, from: PeerId, ack: AckInfo) {
        let config = &self.config;
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let sent_upto = room.sent_upto;
        let Some(member) = room.members.get_mut(&from) else {
            return;
        };
        let Some((old_stored, newest)) = member.take_ack(&ack, sent_upto) else {
            return;
        };
        let new_stored = member.stored;
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

    pub(super) fn on_nack(
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
            self.hold_repairs(now, room_id, from, wanted);
        } else {
            for seq in wanted {
                self.queue_repair(room_id, from, seq);
            }
        }
    }

    /// Holds the repairs of multicast packets `from` asked for briefly: if
    /// other members lost the same packet (a loss near the sender), one
    /// repair to the group serves them all, and members whose NACK
    /// back-off has not yet run out see the gap filled and never NACK
    /// (NORM-style suppression).
    fn hold_repairs(&mut self, now: Instant, room_id: RoomId, from: PeerId, wanted: Vec<u64>) {
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
    }

    /// Sends the held repairs that are due: to the group when several
    /// members miss the packet (now, or one now and another before), else
    /// by unicast.
    pub(super) fn release_held(&mut self, now: Instant) {
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
    pub(super) fn evidence(&mut self, now: Instant, room_id: RoomId, peer: PeerId, mcast_rx: u64) {
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
    pub(super) fn release(&mut self, room_id: RoomId) {
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
    pub(super) fn release_to_sync(&mut self, room_id: RoomId, needed: usize) {
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

    pub(super) fn heard(&mut self, now: Instant, peer: PeerId) {
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
    pub(super) fn rearm(&mut self, now: Instant, peer: PeerId) {
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
}
