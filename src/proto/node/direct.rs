//! Direct chats: the room of two, and sending in it.

use std::time::Instant;

use super::chains::chain_of;
use super::control::control_from_distribution;
use super::error::send_error;
use super::{Control, Node, NodeError, SentMessage};
use crate::proto::crypto::Envelope;
use crate::proto::ids::{MessageId, PeerId, RoomId};

/// The room of the 1:1 chat between `a` and `b`: the same on both sides, with
/// no exchange, because the ids are sorted first.
pub fn direct_room(a: PeerId, b: PeerId) -> RoomId {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    let mut hasher = blake3::Hasher::new_derive_key("kith direct room v1");
    hasher.update(&low.0);
    hasher.update(&high.0);
    RoomId(*hasher.finalize().as_bytes())
}

impl Node {
    /// Sends `text` to contact `to` in our direct room. Returns the message
    /// id that a later [`NodeEvent::Delivered`] names.
    pub fn send_direct(
        &mut self,
        now: Instant,
        to: PeerId,
        text: &str,
    ) -> Result<MessageId, NodeError> {
        self.send_direct_message(now, to, text).map(|sent| sent.id)
    }

    /// Like [`Node::send_direct`], but returns everything the shell needs to
    /// keep the message in its own store (the signed envelope, its room,
    /// timestamp and chain position), since the node keeps none of it.
    pub fn send_direct_message(
        &mut self,
        now: Instant,
        to: PeerId,
        text: &str,
    ) -> Result<SentMessage, NodeError> {
        let room_id = self.prepare_direct(now, to, text.len())?;
        let wall = self.wall_millis(now);
        self.seal_and_send(now, room_id, wall, text)
    }

    /// Sends one of our own stored envelopes to `to` again, unchanged (same
    /// id), over the pairwise stream: how the shell's outbox goes out after
    /// a restart without sealing the text a second time. A recipient that
    /// already stored it acknowledges it without storing it twice.
    pub fn resend_envelope(
        &mut self,
        now: Instant,
        to: PeerId,
        envelope: &[u8],
    ) -> Result<MessageId, NodeError> {
        self.advance(now);
        self.check_contact(&to)?;
        let parsed = Envelope::parse(envelope).map_err(|_| NodeError::NotOurEnvelope)?;
        if parsed.header.sender != self.me {
            return Err(NodeError::NotOurEnvelope);
        }
        if parsed.header.epoch < self.shared_epoch(&parsed.header.room, &to) {
            return Err(NodeError::BeforeJoin(to));
        }
        let chain = chain_of(&parsed);
        self.origin_known(&chain)?;
        // The peer may never have got this chain's key: its origin goes
        // first, on the same stream. (Unless the origin was forgotten: then
        // every member held the chain already, see `chains.rs`.)
        self.send_origin(now, chain, to);
        let id = parsed.id();
        let direct = direct_room(self.me, to);
        let payload = Control::Message {
            envelope: envelope.to_vec(),
        }
        .encode();
        self.reliable
            .send(now, direct, id, &payload)
            .map_err(send_error)?;
        self.own_message_sent(chain, id, &[to]);
        self.pump_events(now);
        Ok(id)
    }
}

impl Node {
    /// Queues our chain's current position and key for the peer of `room`.
    pub(super) fn send_key(&mut self, now: Instant, room_id: RoomId) -> Result<(), NodeError> {
        let Some((peer, key)) = self.rooms.get(&room_id).and_then(|room| {
            let key = control_from_distribution(&room.chain.distribution());
            Some((room.direct_peer()?, key))
        }) else {
            return Ok(());
        };
        // The direct room's stream is the pairwise stream with its peer.
        let id = self.queue_pairwise(now, peer, &key)?;
        self.origin_control_sent(id, &key, peer);
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.key_sent = true;
        }
        Ok(())
    }

    /// A fresh id for a control message: unique per send, and
    /// domain-separated from envelope ids.
    pub(super) fn next_control_id(&mut self, encoded: &[u8]) -> MessageId {
        self.control_count = self.control_count.wrapping_add(1);
        let mut named = self.control_count.to_le_bytes().to_vec();
        named.extend_from_slice(encoded);
        Control::control_id(&named)
    }
}
