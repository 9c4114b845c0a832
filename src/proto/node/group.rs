//! Multicast group frames: a group room's reliable packets sent once to
//! the LAN's multicast group instead of once per member.
//!
//! A frame is `tag (16) ‖ nonce (24) ‖ XChaCha20-Poly1305(padded (sender
//! ‖ packet))` under the room's epoch key, which the admin hands out with
//! every member list over the pairwise channels, with `room ‖ epoch ‖ tag`
//! as associated data. Neither the room, the epoch nor the sender travels
//! in the clear (the sender only inside the ciphertext): the tag
//! ([`group_tag`]) derives from the epoch's key and the wall-clock period
//! ([`GROUP_TAG_PERIOD_MS`]), so an observer cannot tell which room a frame
//! belongs to, nor link a room's frames across epochs or periods, while a
//! member finds the room and key by one map lookup ([`GroupTags`]).
//! Outsiders can neither read nor inject frames; a member could forge
//! another member's reliable header for this room, but never an envelope,
//! which carries its author's signature, and never a packet of another
//! room (the reliable layer drops those). So a group frame does not
//! authenticate its claimed sender to the shell (no address is learned
//! from it). Members that miss frames are repaired by the reliable layer
//! (NACKs, unicast fall-back), and the previous epoch's key is kept for
//! frames in flight across a change, for `NodeConfig::group_key_grace`
//! only (a removed member holds it).

use std::collections::BTreeMap;
use std::time::Instant;

use rand::Rng;

use super::rooms::RoomKind;
use super::{DropReason, Frame, Node, NodeTransmit};
use crate::proto::crypto::{CryptoError, SecretKey, open_group_frame, seal_group_frame};
use crate::proto::ids::{PeerId, RoomId};
use crate::proto::reliable::{Destination, PacketError};
use crate::proto::wire;

/// How long a room's frame tag stays the same (wall clock). Receivers take
/// the tags of the period before and after theirs too, so members' clocks
/// may differ by up to one period.
pub const GROUP_TAG_PERIOD_MS: u64 = 10 * 60 * 1000;

/// A group frame's tag: the room's epoch key and the period, hashed, so
/// only members can compute it and it changes with either.
pub fn group_tag(key: &SecretKey, period: u64) -> [u8; 16] {
    let mut input = [0u8; 40];
    input[..32].copy_from_slice(key.as_bytes());
    input[32..].copy_from_slice(&period.to_le_bytes());
    let hash = blake3::derive_key("kith group frame tag v1", &input);
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&hash[..16]);
    tag
}

/// What binds a frame to its room, epoch and tag (the sender is inside).
fn group_aad(room: &RoomId, epoch: u32, tag: &[u8; 16]) -> Vec<u8> {
    let mut aad = b"kith group frame v3".to_vec();
    aad.extend_from_slice(&room.0);
    aad.extend_from_slice(&epoch.to_le_bytes());
    aad.extend_from_slice(tag);
    aad
}

/// Seals `sender ‖ packet` (padded) as a group frame's payload: what a
/// member does, public so tests mount attacks with the real format.
pub fn seal_group_payload(
    key: &SecretKey,
    nonce: &[u8; 24],
    sender: &PeerId,
    room: &RoomId,
    epoch: u32,
    tag: &[u8; 16],
    packet: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut plaintext = Vec::with_capacity(32 + packet.len());
    plaintext.extend_from_slice(&sender.0);
    plaintext.extend_from_slice(packet);
    let padded = wire::pad(&plaintext, wire::GROUP_OVERHEAD);
    seal_group_frame(key, nonce, &group_aad(room, epoch, tag), &padded)
}

/// Opens what [`seal_group_payload`] made: the claimed sender (a member
/// of the room sealed it, not necessarily that one) and the packet.
pub fn open_group_payload(
    key: &SecretKey,
    room: &RoomId,
    epoch: u32,
    tag: &[u8; 16],
    payload: &[u8],
) -> Result<(PeerId, Vec<u8>), CryptoError> {
    let padded = open_group_frame(key, &group_aad(room, epoch, tag), payload)?;
    let plaintext = wire::unpad(&padded).map_err(|_| CryptoError::Unauthentic)?;
    let (sender, packet) = plaintext
        .split_first_chunk::<32>()
        .ok_or(CryptoError::Unauthentic)?;
    Ok((PeerId(*sender), packet.to_vec()))
}

/// Which room and epoch each tag a member accepts now belongs to: the
/// current and previous epoch's key of every group room, each for the
/// periods before, at and after ours. Rebuilt when the period turns or,
/// on a miss, after a room's keys changed; a hit is checked against the
/// room's keys, so a stale entry opens nothing.
#[derive(Default)]
pub(super) struct GroupTags {
    period: Option<u64>,
    dirty: bool,
    index: BTreeMap<[u8; 16], (RoomId, u32)>,
}

impl GroupTags {
    /// A group room's keys changed: a tag we miss may be new.
    pub(super) fn touch(&mut self) {
        self.dirty = true;
    }
}

impl Node {
    fn tag_period(&self, now: Instant) -> u64 {
        self.wall_millis(now) / GROUP_TAG_PERIOD_MS
    }

    /// The room and epoch of `tag`, if it is one a member accepts now.
    fn room_of_tag(&mut self, now: Instant, tag: &[u8; 16]) -> Option<(RoomId, u32)> {
        let period = self.tag_period(now);
        let stale = self.group_tags.period != Some(period)
            || (self.group_tags.dirty && !self.group_tags.index.contains_key(tag));
        if stale {
            let mut index = BTreeMap::new();
            for (room, state) in &self.rooms {
                let RoomKind::Group(group) = &state.kind else {
                    continue;
                };
                let keys = std::iter::once((group.epoch, &group.group_key))
                    .chain(group.previous_key.iter().map(|p| (p.epoch, &p.key)));
                for (epoch, key) in keys {
                    for p in period.saturating_sub(1)..=period.saturating_add(1) {
                        index.insert(group_tag(key, p), (*room, epoch));
                    }
                }
            }
            self.group_tags = GroupTags {
                period: Some(period),
                dirty: false,
                index,
            };
        }
        self.group_tags.index.get(tag).copied()
    }

    /// Seals one reliable packet for the room's multicast group.
    pub(super) fn seal_group(&mut self, room: RoomId, packet: &[u8]) {
        let Some((epoch, key)) = self.group(&room).map(|g| (g.epoch, g.group_key.clone())) else {
            self.stats.deferred += 1;
            return;
        };
        let tag = group_tag(&key, self.tag_period(self.now));
        let mut nonce = [0u8; 24];
        self.rng.fill_bytes(&mut nonce);
        let Ok(payload) = seal_group_payload(&key, &nonce, &self.me, &room, epoch, &tag, packet)
        else {
            return;
        };
        let bytes = self.emit_frame(Frame::Group { tag, payload });
        if !bytes.is_empty() {
            self.stats.group_sent += 1;
            self.transmits.push_back(NodeTransmit {
                to: Destination::Group(room),
                bytes,
            });
        }
    }

    /// A multicast frame: its tag names the room and epoch, it is opened
    /// with that epoch's key and handed to the reliable layer as heard over
    /// multicast.
    pub(super) fn on_group_frame(
        &mut self,
        now: Instant,
        tag: [u8; 16],
        payload: &[u8],
    ) -> Result<PeerId, DropReason> {
        let (room, epoch) = self
            .room_of_tag(now, &tag)
            .ok_or(DropReason::GroupUnsupported)?;
        if let Some(group) = self.group_mut(&room)
            && group.previous_key.as_ref().is_some_and(|p| p.until <= now)
        {
            group.previous_key = None;
        }
        let group = self.group(&room).ok_or(DropReason::GroupUnsupported)?;
        let key = if epoch == group.epoch {
            &group.group_key
        } else {
            match &group.previous_key {
                Some(previous) if previous.epoch == epoch => &previous.key,
                _ => return Err(DropReason::GroupUnsupported),
            }
        };
        let (from, packet) =
            open_group_payload(key, &room, epoch, &tag, payload).map_err(|_| DropReason::Forged)?;
        if from == self.me {
            // Our own frame, looped back by the host.
            return Ok(from);
        }
        // The sender is known only now: a blocked one costs a group
        // frame's AEAD, nothing more.
        if self.blocked.contains(&from) {
            return Err(DropReason::Blocked);
        }
        if !group.members.contains(&from) {
            return Err(DropReason::GroupUnsupported);
        }
        self.stats.group_received += 1;
        self.reliable
            .handle_group_datagram(now, from, room, &packet)
            .map_err(|error| match error {
                PacketError::FeedbackInGroup => DropReason::GroupFeedback,
                _ => DropReason::ReliableRejected,
            })?;
        // Membership, not identity: a claim the shell must not learn an
        // address from.
        Ok(from)
    }

    /// Drops every previous epoch's group key whose grace ran out (a frame
    /// of the room drops it on arrival too): a removed member holds it.
    pub(super) fn expire_group_keys(&mut self, now: Instant) {
        for state in self.rooms.values_mut() {
            if let RoomKind::Group(group) = &mut state.kind
                && group.previous_key.as_ref().is_some_and(|p| p.until <= now)
            {
                group.previous_key = None;
            }
        }
    }
}
