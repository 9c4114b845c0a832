//! Multicast group frames: a group room's reliable packets sent once to
//! the LAN's multicast group instead of once per member.
//!
//! A frame is sealed under the room's epoch key, which the admin hands out
//! with every member list over the pairwise channels: `epoch (4, LE) ‖
//! nonce (24) ‖ XChaCha20-Poly1305(packet)`, with `sender ‖ room ‖ epoch` as
//! associated data. Outsiders can neither read nor inject frames; a member
//! could forge another member's reliable header for this room, but never an
//! envelope, which carries its author's signature, and never a packet of
//! another room (the reliable layer drops those). So a group frame does not
//! authenticate its claimed sender to the shell (no address is learned from
//! it). Members that miss frames are repaired by the reliable layer (NACKs,
//! unicast fall-back), and the previous epoch's key is kept for frames in
//! flight across a change, for `NodeConfig::group_key_grace` only (a removed
//! member holds it).

use std::time::Instant;

use rand::Rng;

use super::{DropReason, Frame, Node, NodeTransmit, RoomKind};
use crate::proto::crypto::{open_group_frame, seal_group_frame};
use crate::proto::ids::{PeerId, RoomId};
use crate::proto::reliable::{Destination, PacketError};
use crate::proto::wire;

/// What binds a frame to its sender, room and epoch.
fn group_aad(sender: &PeerId, room: &RoomId, epoch: u32) -> Vec<u8> {
    let mut aad = b"kith group frame v1".to_vec();
    aad.extend_from_slice(&sender.0);
    aad.extend_from_slice(&room.0);
    aad.extend_from_slice(&epoch.to_le_bytes());
    aad
}

impl Node {
    /// Seals one reliable packet for the room's multicast group.
    pub(super) fn seal_group(&mut self, room: RoomId, packet: &[u8]) {
        let Some((epoch, key)) = self.group(&room).map(|g| (g.epoch, g.group_key.clone())) else {
            self.stats.deferred += 1;
            return;
        };
        let mut nonce = [0u8; 24];
        self.rng.fill_bytes(&mut nonce);
        let padded = wire::pad(packet, wire::GROUP_OVERHEAD);
        let Ok(sealed) =
            seal_group_frame(&key, &nonce, &group_aad(&self.me, &room, epoch), &padded)
        else {
            return;
        };
        let mut payload = epoch.to_le_bytes().to_vec();
        payload.extend_from_slice(&sealed);
        let bytes = self.emit_frame(Frame::Group { room, payload });
        if !bytes.is_empty() {
            self.stats.group_sent += 1;
            self.transmits.push_back(NodeTransmit {
                to: Destination::Group(room),
                bytes,
            });
        }
    }

    /// A multicast frame: opened with the room's epoch key and handed to the
    /// reliable layer as heard over multicast.
    pub(super) fn on_group_frame(
        &mut self,
        now: Instant,
        from: PeerId,
        room: RoomId,
        payload: &[u8],
    ) -> Result<Option<PeerId>, DropReason> {
        if from == self.me {
            // Our own frame, looped back by the host.
            return Ok(None);
        }
        if let Some(group) = self.group_mut(&room)
            && group.previous_key.as_ref().is_some_and(|p| p.until <= now)
        {
            group.previous_key = None;
        }
        let group = self.group(&room).ok_or(DropReason::GroupUnsupported)?;
        if !group.members.contains(&from) {
            return Err(DropReason::GroupUnsupported);
        }
        let (epoch, sealed) = payload.split_at_checked(4).ok_or(DropReason::Malformed)?;
        let epoch = u32::from_le_bytes(epoch.try_into().map_err(|_| DropReason::Malformed)?);
        let key = if epoch == group.epoch {
            &group.group_key
        } else {
            match &group.previous_key {
                Some(previous) if previous.epoch == epoch => &previous.key,
                _ => return Err(DropReason::GroupUnsupported),
            }
        };
        let padded = open_group_frame(key, &group_aad(&from, &room, epoch), sealed)
            .map_err(|_| DropReason::Forged)?;
        let packet = wire::unpad(&padded).map_err(|_| DropReason::Malformed)?;
        self.stats.group_received += 1;
        self.reliable
            .handle_group_datagram(now, from, room, packet)
            .map_err(|error| match error {
                PacketError::FeedbackInGroup => DropReason::GroupFeedback,
                _ => DropReason::ReliableRejected,
            })?;
        // Membership, not identity: nothing the shell should learn from.
        Ok(None)
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
