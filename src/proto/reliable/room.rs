//! A sender's side of one room: its queued packets, the members it waits
//! for and what it knows of each.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::config::RoomConfig;
use super::event::FanOut;
use crate::proto::ids::{MessageId, PeerId};

/// A queued outgoing packet.
#[derive(Debug)]
pub(super) struct OutPacket {
    pub(super) id: MessageId,
    pub(super) frag: u16,
    pub(super) frags: u16,
    pub(super) chunk: Vec<u8>,
    /// First transmission, for RTT samples.
    pub(super) first_sent: Option<Instant>,
    /// When it went to the multicast group, if it did.
    pub(super) group_sent: Option<Instant>,
    /// Sent more than once to someone: no RTT sample from it (Karn).
    pub(super) retransmitted: bool,
    /// Last unicast transmission per member (few entries: only members in
    /// unicast mode or repaired ones).
    pub(super) unicast_sent: Vec<(PeerId, Instant)>,
    /// Last repair per target (`None`: the group), so a repeated NACK does
    /// not trigger a second repair while the first is on its way.
    pub(super) repaired: Vec<(Option<PeerId>, Instant)>,
}

impl OutPacket {
    pub(super) fn last_sent_to(&self, peer: &PeerId, via_group: bool) -> Option<Instant> {
        let unicast = self
            .unicast_sent
            .iter()
            .find(|(p, _)| p == peer)
            .map(|&(_, at)| at);
        let group = if via_group { self.group_sent } else { None };
        unicast.max(group)
    }

    pub(super) fn last_repair_to(&self, peer: &PeerId, via_group: bool) -> Option<Instant> {
        self.repaired
            .iter()
            .filter(|(target, _)| target.as_ref() == Some(peer) || (via_group && target.is_none()))
            .map(|&(_, at)| at)
            .max()
    }

    pub(super) fn note_repair(&mut self, target: Option<PeerId>, now: Instant) {
        self.retransmitted = true;
        match self.repaired.iter_mut().find(|(t, _)| *t == target) {
            Some(entry) => entry.1 = now,
            None => self.repaired.push((target, now)),
        }
    }

    pub(super) fn note_unicast(&mut self, peer: PeerId, now: Instant) {
        match self.unicast_sent.iter_mut().find(|(p, _)| *p == peer) {
            Some(entry) => entry.1 = now,
            None => self.unicast_sent.push((peer, now)),
        }
    }
}

/// A sender's view of one room member.
#[derive(Debug)]
pub(super) struct Member {
    /// First sequence number meant for this member (it joined then).
    pub(super) base: u64,
    /// All packets below this arrived.
    pub(super) received: u64,
    /// Packets above `received` that arrived, from the newest ACK.
    pub(super) sacked: Vec<(u64, u64)>,
    /// All messages below this were stored.
    pub(super) stored: u64,
    /// The member's own session, from its ACKs.
    pub(super) peer_session: Option<u64>,
    pub(super) ack_no: u64,
    pub(super) largest: Option<u64>,
    pub(super) fan_out: FanOut,
    pub(super) rto_at: Option<Instant>,
    pub(super) backoff: u32,
    /// Highest `mcast_rx` reported, and the stream position when it last rose.
    pub(super) mcast_rx: u64,
    pub(super) mark_seq: u64,
    /// `mcast_rx` when the member was switched to unicast.
    pub(super) rx_at_switch: u64,
}

impl Member {
    pub(super) fn new(base: u64) -> Self {
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
    pub(super) fn low(&self, room_low: u64) -> u64 {
        room_low.max(self.base).max(self.stored)
    }

    pub(super) fn has_received(&self, seq: u64) -> bool {
        seq < self.received || self.sacked.iter().any(|&(s, e)| s <= seq && seq < e)
    }

    /// Takes in a fresh ACK from this member (one that is not older than
    /// the last, by its `ack_no`, within the member's session): what it
    /// received, stored and holds. Returns `stored` before it and the
    /// newly acknowledged largest sequence number, for an RTT sample;
    /// `None` for a stale ACK.
    pub(super) fn take_ack(&mut self, ack: &AckInfo, sent_upto: u64) -> Option<(u64, Option<u64>)> {
        if self.peer_session != Some(ack.receiver_session) {
            // A new run of the member (or its first ACK): its ACK numbers
            // start over, and what it had merely received is gone.
            self.peer_session = Some(ack.receiver_session);
            self.ack_no = 0;
            self.largest = None;
        }
        if ack.ack_no <= self.ack_no {
            return None;
        }
        self.ack_no = ack.ack_no;
        // Never believe more than was sent.
        let received = ack.received.min(sent_upto);
        let stored = ack.stored.min(received);
        // Taken from the newest ACK, not the maximum: a receiver whose
        // incomplete fragments expired reneges, and must get them again.
        // Stored messages never go back.
        self.received = received.max(self.stored);
        let floor = self.received;
        self.sacked = ack
            .ranges
            .iter()
            .map(|&(start, end)| (start.max(floor), end.min(sent_upto)))
            .filter(|(start, end)| start < end)
            .collect();
        let old_stored = self.stored;
        self.stored = self.stored.max(stored);
        let newest = ack
            .largest
            .filter(|l| *l < sent_upto && self.largest.is_none_or(|old| *l > old));
        if newest.is_some() {
            self.largest = newest;
        }
        Some((old_stored, newest))
    }
}

/// Our own stream into a room, plus the room's membership.
#[derive(Debug)]
pub(super) struct Room {
    pub(super) config: RoomConfig,
    pub(super) members: BTreeMap<PeerId, Member>,
    /// Sequence number of `out[0]`.
    pub(super) low: u64,
    pub(super) out: VecDeque<OutPacket>,
    /// First packet never transmitted.
    pub(super) sent_upto: u64,
    pub(super) heartbeat_at: Option<Instant>,
    pub(super) heartbeats: u32,
    /// When the last new data packet went out (for `ack_now`).
    pub(super) last_new_data: Option<Instant>,
}

impl Room {
    pub(super) fn next_seq(&self) -> u64 {
        self.low + self.out.len() as u64
    }

    pub(super) fn packet(&self, seq: u64) -> Option<&OutPacket> {
        let index = usize::try_from(seq.checked_sub(self.low)?).ok()?;
        self.out.get(index)
    }

    pub(super) fn packet_mut(&mut self, seq: u64) -> Option<&mut OutPacket> {
        let index = usize::try_from(seq.checked_sub(self.low)?).ok()?;
        self.out.get_mut(index)
    }

    pub(super) fn uses_group(&self) -> bool {
        self.config.multicast
            && self
                .members
                .values()
                .any(|m| m.fan_out == FanOut::Multicast)
    }

    /// Whether the packet `seq`, sent now, should ask for its ACK at once.
    /// A lone packet of a conversation (nothing older held for anyone,
    /// and the room was quiet for `lone_gap`) asks for its ACK at once;
    /// a stream of packets keeps the paced ACKs. Without multicast,
    /// nothing older held is enough: a sender that waits for each
    /// "delivered" before its next send (stop-and-wait) would otherwise
    /// wait up to `max_ack_delay` every time. It costs one ACK per
    /// packet only for streams slower than one packet per round trip;
    /// a faster stream has older packets held and keeps paced ACKs. (In
    /// a multicast room every member would answer each group packet.)
    pub(super) fn lone_packet(&self, seq: u64, now: Instant, lone_gap: Duration) -> bool {
        seq == self.low
            && (!self.config.multicast
                || self
                    .last_new_data
                    .is_none_or(|t| now.saturating_duration_since(t) >= lone_gap))
    }
}

/// A NACKed packet waiting to see whether more members lost it.
#[derive(Debug)]
pub(super) struct HeldRepair {
    pub(super) until: Instant,
    pub(super) peers: Vec<PeerId>,
}

/// Fields of an ACK, unpacked.
pub(super) struct AckInfo {
    pub(super) receiver_session: u64,
    pub(super) ack_no: u64,
    pub(super) received: u64,
    pub(super) ranges: Vec<(u64, u64)>,
    pub(super) stored: u64,
    pub(super) largest: Option<u64>,
    pub(super) delay_us: u32,
    pub(super) mcast_rx: u64,
    pub(super) refused: Vec<(u64, u64)>,
}
