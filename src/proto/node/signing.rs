//! Signing our messages in batches, and checking each batch's signature
//! once on the receiving side.
//!
//! An Ed25519 signature costs the sender about 14 µs and every receiver
//! about 15 µs (in a verification batch): most of a room message's CPU.
//! Messages sent together (one batch of the shell's commands) share one
//! signature over the root of a hash tree (see
//! [`crate::proto::crypto::sign_batch`]); each envelope carries its path to
//! the root, so it still proves its author on its own when stored,
//! forwarded or synced. A receiver remembers which batch signatures it
//! checked, so the other envelopes of a batch cost it a few hashes.

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use super::chains::chain_of;
use super::error::send_error;
use super::{HeldEnvelope, KIND_TEXT, MAX_TEXT, Node, NodeError, SentMessage, chains};
use crate::proto::crypto::{
    Envelope, OutgoingMessage, PublicIdentity, UnsignedEnvelope, seal_unsigned, sign_batch,
    verify_envelopes_batch,
};
use crate::proto::ids::{PeerId, RoomId};
use crate::proto::node::{Control, direct_room};

/// Batch signatures remembered as checked. A batch's envelopes arrive
/// within milliseconds of each other, so a few hundred cover every batch
/// in flight from every member.
const MAX_CHECKED: usize = 1024;

/// Fingerprints of signatures that verified (see
/// [`Envelope::signature_fingerprint`]), oldest forgotten first.
#[derive(Default)]
pub(super) struct CheckedSignatures {
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl CheckedSignatures {
    fn contains(&self, fingerprint: &[u8; 32]) -> bool {
        self.set.contains(fingerprint)
    }

    fn insert(&mut self, fingerprint: [u8; 32]) {
        if !self.set.insert(fingerprint) {
            return;
        }
        self.order.push_back(fingerprint);
        if self.order.len() > MAX_CHECKED
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
    }
}

impl Node {
    /// Like [`Node::send_direct_message`], but the message waits for
    /// [`Node::sign_queued`], which signs everything queued at once.
    pub fn queue_direct_message(
        &mut self,
        now: Instant,
        to: PeerId,
        text: &str,
    ) -> Result<(), NodeError> {
        let room = self.prepare_direct(now, to, text.len())?;
        self.queue(now, room, KIND_TEXT, text.as_bytes())
    }

    /// Like [`Node::send_room_message`], but the message waits for
    /// [`Node::sign_queued`].
    pub fn queue_room_message(
        &mut self,
        now: Instant,
        room: RoomId,
        text: &str,
    ) -> Result<(), NodeError> {
        self.prepare_room(now, room, text.len())?;
        self.queue(now, room, KIND_TEXT, text.as_bytes())
    }

    /// Like [`Node::queue_direct_message`] for a message of another
    /// `kind` (e.g. [`super::KIND_FILE`]) whose `body` is already encoded.
    pub fn queue_direct_kind(
        &mut self,
        now: Instant,
        to: PeerId,
        kind: u8,
        body: &[u8],
    ) -> Result<(), NodeError> {
        let room = self.prepare_direct(now, to, body.len())?;
        self.queue(now, room, kind, body)
    }

    /// Like [`Node::queue_room_message`] for a message of another `kind`
    /// whose `body` is already encoded.
    pub fn queue_room_kind(
        &mut self,
        now: Instant,
        room: RoomId,
        kind: u8,
        body: &[u8],
    ) -> Result<(), NodeError> {
        self.prepare_room(now, room, body.len())?;
        self.queue(now, room, kind, body)
    }

    /// Signs the queued messages (one signature per
    /// [`crate::proto::crypto::MAX_SIGNED_BATCH`]) and sends them. One
    /// result per queued message, in queue order: a message the reliable
    /// layer refuses (backpressure) is an error, and its chain position is
    /// skipped, as with [`Node::send_room_message`].
    pub fn sign_queued(&mut self, now: Instant) -> Vec<Result<SentMessage, NodeError>> {
        self.advance(now);
        let queued = std::mem::take(&mut self.queued);
        let sent = sign_batch(&self.identity, queued)
            .into_iter()
            .map(|envelope| self.send_signed(now, envelope))
            .collect();
        self.pump_events(now);
        sent
    }

    /// Whether messages wait for [`Node::sign_queued`].
    pub fn has_queued(&self) -> bool {
        !self.queued.is_empty()
    }

    /// Seals `body` with our chain in `room_id` for the queue.
    fn queue(
        &mut self,
        now: Instant,
        room_id: RoomId,
        kind: u8,
        body: &[u8],
    ) -> Result<(), NodeError> {
        let wall = self.wall_millis(now);
        let unsigned = self.seal_unsigned(room_id, wall, kind, body)?;
        self.queued.push(unsigned);
        Ok(())
    }

    /// Seals `text` with our chain in `room_id` and sends it at once,
    /// signed on its own.
    pub(super) fn seal_and_send(
        &mut self,
        now: Instant,
        room_id: RoomId,
        wall: u64,
        text: &str,
    ) -> Result<SentMessage, NodeError> {
        let unsigned = self.seal_unsigned(room_id, wall, KIND_TEXT, text.as_bytes())?;
        let envelope = sign_batch(&self.identity, vec![unsigned])
            .pop()
            .ok_or(NodeError::Backpressure)?;
        let sent = self.send_signed(now, envelope);
        self.pump_events(now);
        sent
    }

    fn seal_unsigned(
        &mut self,
        room_id: RoomId,
        wall: u64,
        kind: u8,
        body: &[u8],
    ) -> Result<UnsignedEnvelope, NodeError> {
        let room = self
            .rooms
            .get_mut(&room_id)
            .ok_or(NodeError::UnknownRoom(room_id))?;
        if room.chain.next_seq() >= room.reserved {
            // The shell persists the new reservation before this seal's
            // datagram leaves (`take_reservations`).
            self.dirty_chains
                .insert((room.chain.chain(), chains::Dirty::Sending));
        }
        let timestamp = self.clock.tick(wall);
        Ok(seal_unsigned(
            &mut room.chain,
            OutgoingMessage {
                kind,
                timestamp,
                plaintext: body,
            },
        )?)
    }

    /// Queues a signed envelope of ours for its room's other members.
    fn send_signed(&mut self, now: Instant, envelope: Envelope) -> Result<SentMessage, NodeError> {
        let room_id = envelope.header.room;
        let sent = SentMessage {
            id: envelope.id(),
            room: room_id,
            timestamp: envelope.header.timestamp,
            seq: envelope.header.seq,
            envelope: envelope.emit(),
        };
        let payload = Control::Message {
            envelope: sent.envelope.clone(),
        }
        .encode();
        // On backpressure the chain position is simply skipped: the
        // receiver keeps a key for it that is never used.
        self.reliable
            .send(now, room_id, sent.id, &payload)
            .map_err(send_error)?;
        if let Some(group) = self.group_mut(&room_id) {
            group.epoch_active = true;
        }
        let chain = chain_of(&envelope);
        let recipients = self.origin_needed_by(&chain);
        self.own_message_sent(chain, sent.id, &recipients);
        Ok(sent)
    }

    /// Checks what a direct message to `to` needs and hands out our key
    /// first if the peer has not had it. Returns the direct room.
    pub(super) fn prepare_direct(
        &mut self,
        now: Instant,
        to: PeerId,
        len: usize,
    ) -> Result<RoomId, NodeError> {
        self.advance(now);
        self.check_contact(&to)?;
        if len > MAX_TEXT {
            return Err(NodeError::TooLarge(len));
        }
        let room_id = direct_room(self.me, to);
        self.rotate_if_due(now, room_id);
        let key_sent = self
            .rooms
            .get(&room_id)
            .ok_or(NodeError::UnknownRoom(room_id))?
            .key_sent;
        if !key_sent {
            // The reliable stream is ordered per sender and room, so the key
            // reaches the peer before any message sealed with it.
            self.send_key(now, room_id)?;
        }
        Ok(room_id)
    }

    /// Checks what a message to group room `room` needs.
    pub(super) fn prepare_room(
        &mut self,
        now: Instant,
        room: RoomId,
        len: usize,
    ) -> Result<(), NodeError> {
        self.advance(now);
        if self.group(&room).is_none() {
            return Err(NodeError::UnknownRoom(room));
        }
        if len > MAX_TEXT {
            return Err(NodeError::TooLarge(len));
        }
        Ok(())
    }

    /// Opens the waiting envelopes. Each distinct batch signature among
    /// them is checked once, all of them in one verification batch when
    /// there are several (about twice as fast per signature), and not at
    /// all if it was checked before. (Batch verification may accept a
    /// signature crafted by its own author that single verification
    /// rejects; nobody else can make one, so it never lets a message pass
    /// as someone else's.)
    pub(super) fn verify_unverified(&mut self, now: Instant) {
        let waiting = std::mem::take(&mut self.unverified);
        if waiting.is_empty() {
            return;
        }
        // `None`: the sender is unknown, and opening will reject it, or the
        // pairwise session already proved the author (no check needed).
        let fingerprints: Vec<Option<[u8; 32]>> = waiting
            .iter()
            .map(|held| {
                (!held.session_authenticated
                    && self.peers.contains_key(&held.envelope.header.sender))
                .then(|| held.envelope.signature_fingerprint())
            })
            .collect();
        // Each distinct signature not checked before, once, with its
        // sender.
        let mut seen = HashSet::new();
        let checks: Vec<([u8; 32], &Envelope, &PublicIdentity)> = waiting
            .iter()
            .zip(&fingerprints)
            .filter_map(|(held, print)| {
                let print = (*print)?;
                if self.checked.contains(&print) || !seen.insert(print) {
                    return None;
                }
                let sender = self.peers.get(&held.envelope.header.sender)?;
                Some((print, &held.envelope, &sender.public))
            })
            .collect();
        self.stats.signatures_checked += checks.len() as u64;
        let batch: Vec<(&Envelope, &PublicIdentity)> =
            checks.iter().map(|&(_, e, s)| (e, s)).collect();
        let batch_good = batch.len() > 1 && verify_envelopes_batch(&batch).is_ok();
        if batch_good {
            self.stats.batch_verified += batch.len() as u64;
        }
        let good: Vec<[u8; 32]> = checks
            .iter()
            .filter(|(_, envelope, sender)| batch_good || envelope.verify_signature(sender).is_ok())
            .map(|&(print, _, _)| print)
            .collect();
        for print in good {
            self.checked.insert(print);
        }
        for (held, print) in waiting.into_iter().zip(fingerprints) {
            let verified = held.session_authenticated
                || print.is_some_and(|print| self.checked.contains(&print));
            self.open_and_surface(now, held, verified);
        }
    }

    /// An envelope of a chain we follow waits for its signature check
    /// until the end of the burst (at once outside a burst).
    pub(super) fn wait_for_check(&mut self, now: Instant, held: HeldEnvelope) {
        self.unverified.push(held);
        if !self.in_burst {
            self.verify_unverified(now);
        }
    }
}
