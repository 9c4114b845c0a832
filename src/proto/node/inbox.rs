//! Payloads the reliable layer delivers: control messages dispatched,
//! envelopes held for their key or signature check, opened, and handed to
//! the shell for storing.

use std::collections::VecDeque;
use std::time::Instant;

use super::chains::chain_of;
use super::rooms::RoomKind;
use super::{Control, DropReason, Node, NodeEvent, Receipt, chains, rooms};
use crate::proto::crypto::{
    ChainId, CryptoError, Envelope, SecretKey, SenderKeyDistribution, open_envelope,
    open_verified_envelope,
};
use crate::proto::reliable::Event;

/// A received envelope waiting for its signature check or its sender key.
pub(super) struct HeldEnvelope {
    pub(super) envelope: Envelope,
    pub(super) bytes: Vec<u8>,
    pub(super) receipt: Receipt,
    /// A message of our direct room that its author sent us over our
    /// pairwise session: only the two of us hold that session's keys, and
    /// group frames cannot carry the direct room's packets, so the session
    /// already proves who wrote it and the signature is not checked on
    /// arrival. (It stays in the envelope: the author checks it if we ever
    /// hand the message back in a sync, and nobody else ever sees it.)
    pub(super) session_authenticated: bool,
}

impl Node {
    pub(super) fn pump_events(&mut self, now: Instant) {
        while let Some(event) = self.reliable.poll_event() {
            match event {
                Event::Received {
                    room,
                    from,
                    seq,
                    payload,
                    ..
                } => self.on_received(now, Receipt { room, from, seq }, &payload),
                Event::Delivered { room, to, id } => {
                    // One per recipient; a control message has one.
                    if self.controls.remove(&id) {
                        self.origin_control_stored(id);
                    } else {
                        self.own_message_resolved(id, to, true);
                        self.events.push_back(NodeEvent::Delivered { room, to, id });
                    }
                }
                Event::Refused { room, to, id } => {
                    if self.controls.remove(&id) {
                        self.origin_progress.control_lost(&id);
                    } else {
                        // Refused for good: nothing the origin could mend.
                        self.own_message_resolved(id, to, false);
                        self.events.push_back(NodeEvent::Refused { room, to, id });
                    }
                }
                Event::Undelivered { room, to, id } => {
                    if self.controls.remove(&id) {
                        self.origin_progress.control_lost(&id);
                    } else {
                        self.events
                            .push_back(NodeEvent::Undelivered { room, to, id });
                    }
                }
                Event::PeerUnreachable { peer } => {
                    self.events.push_back(NodeEvent::PeerUnreachable { peer });
                }
                Event::PeerReachable { peer } => {
                    self.events.push_back(NodeEvent::PeerReachable { peer });
                }
                Event::FanOutChanged { .. } => {}
            }
        }
    }

    /// A complete payload from the reliable layer, from an authenticated
    /// peer. Whatever is not handed to the shell for storing is confirmed
    /// here at once: an unconfirmed payload would stall the stream.
    fn on_received(&mut self, now: Instant, receipt: Receipt, payload: &[u8]) {
        let Some((control, is_direct)) = self.admit_control(now, receipt, payload) else {
            return;
        };
        if !matches!(control, Control::Message { .. }) {
            // Messages that came before this control surface before it.
            self.verify_unverified(now);
        }
        match control {
            Control::SenderKey {
                room,
                epoch,
                start_seq,
                chain_key,
            } => {
                self.confirm(now, receipt);
                let chain = ChainId {
                    room,
                    epoch,
                    sender: receipt.from,
                };
                self.on_sender_key(now, receipt, distribution(chain, start_seq, chain_key));
            }
            Control::RoomInvite { .. }
            | Control::RoomMembers { .. }
            | Control::RoomSuccessor { .. }
            | Control::RoomLeave { .. } => self.on_room_control(now, receipt, control),
            Control::Sync { room, payload } => self.on_sync(now, receipt, room, payload),
            Control::File { room, payload } => self.on_file(now, receipt, room, payload),
            Control::Profile { record } => {
                self.confirm(now, receipt);
                self.on_profile(now, receipt, &record);
            }
            Control::Forward { envelope } => self.on_forward(now, receipt, envelope),
            Control::Origin {
                room,
                epoch,
                sender,
                start_seq,
                chain_key,
            } => {
                self.confirm(now, receipt);
                let chain = ChainId {
                    room,
                    epoch,
                    sender,
                };
                self.on_origin(receipt.from, distribution(chain, start_seq, chain_key));
            }
            Control::Message { envelope } => self.on_envelope(now, receipt, envelope, is_direct),
        }
    }

    /// A room's admin controls (invitation, member list, successor, leave):
    /// acknowledged, then handed to the rooms; a refusal is counted.
    fn on_room_control(&mut self, now: Instant, receipt: Receipt, control: Control) {
        match control {
            Control::RoomInvite {
                room,
                name,
                epoch,
                admin,
                members,
                group_key,
                founder,
                nonce,
            } => {
                self.confirm(now, receipt);
                let update = rooms::Update::new(room, epoch, members, group_key);
                let founding = rooms::RoomFounding { founder, nonce };
                let result = self.on_invite(now, receipt.from, name, admin, update, founding);
                self.count_failure(result);
            }
            Control::RoomMembers {
                room,
                epoch,
                members,
                group_key,
            } => {
                self.confirm(now, receipt);
                let update = rooms::Update::new(room, epoch, members, group_key);
                let result = self.on_members(now, receipt.from, update);
                self.count_failure(result);
            }
            Control::RoomSuccessor {
                room,
                epoch,
                successor,
            } => {
                self.confirm(now, receipt);
                let result = self.on_successor(receipt.from, room, epoch, successor);
                self.count_failure(result);
            }
            Control::RoomLeave { room } => {
                self.confirm(now, receipt);
                let result = self.on_leave(now, receipt.from, room);
                self.count_failure(result);
            }
            // `on_received` hands only the room controls here.
            _ => {}
        }
    }

    /// Decodes a payload and checks that its stream may carry it: any
    /// control on the pairwise stream with its peer, nothing but envelopes
    /// on a group room's stream, and those only from its members. Returns
    /// the control and whether it came on the pairwise stream; anything else
    /// is rejected here.
    fn admit_control(
        &mut self,
        now: Instant,
        receipt: Receipt,
        payload: &[u8],
    ) -> Option<(Control, bool)> {
        let Ok(control) = Control::decode(payload) else {
            self.reject(now, receipt, DropReason::ControlMalformed);
            return None;
        };
        let Some(room) = self.rooms.get(&receipt.room) else {
            self.reject(now, receipt, DropReason::Foreign);
            return None;
        };
        let is_direct = match &room.kind {
            RoomKind::Direct { peer } => *peer == receipt.from,
            RoomKind::Group(group) => {
                // The reliable layer only accepts members' streams; a group
                // stream carries nothing but envelopes.
                if !group.members.contains(&receipt.from)
                    || !matches!(control, Control::Message { .. })
                {
                    self.reject(now, receipt, DropReason::Foreign);
                    return None;
                }
                false
            }
        };
        if let Some(group) = self.group_mut(&receipt.room) {
            group.epoch_active = true;
        }
        if !is_direct && !matches!(control, Control::Message { .. }) {
            self.reject(now, receipt, DropReason::Foreign);
            return None;
        }
        Some((control, is_direct))
    }

    /// A sender key on the pairwise stream: the peer's chain of our direct
    /// room, or of a group room.
    fn on_sender_key(
        &mut self,
        now: Instant,
        receipt: Receipt,
        distribution: SenderKeyDistribution,
    ) {
        if distribution.chain.room == receipt.room {
            self.install_key(now, &distribution);
        } else {
            // A group key travels on the pairwise stream.
            self.on_group_key(now, distribution);
        }
    }

    /// An envelope on its author's stream: held for its key, or queued for
    /// its signature check.
    fn on_envelope(&mut self, now: Instant, receipt: Receipt, bytes: Vec<u8>, is_direct: bool) {
        let envelope = match Envelope::parse(&bytes) {
            // Only the stream's own sender may author in it (members
            // forwarding others' envelopes is the sync's job). On
            // the pairwise stream that includes its group envelopes
            // sent again after a restart ([`Node::resend_envelope`]).
            Ok(envelope)
                if envelope.header.sender == receipt.from
                    && (envelope.header.room == receipt.room
                        || (is_direct
                            && self
                                .check_shared(&envelope.header.room, &receipt.from)
                                .is_ok())) =>
            {
                envelope
            }
            _ => {
                self.reject(now, receipt, DropReason::EnvelopeRejected);
                return;
            }
        };
        let held = HeldEnvelope {
            session_authenticated: is_direct && envelope.header.room == receipt.room,
            envelope,
            bytes,
            receipt,
        };
        if self.receivers.contains_key(&chain_of(&held.envelope)) {
            self.wait_for_check(now, held);
        } else {
            self.hold(now, held);
        }
    }

    /// Acknowledges a payload as done with: a control the node consumed
    /// itself (only envelopes wait for the shell's store).
    fn confirm(&mut self, now: Instant, receipt: Receipt) {
        self.reliable
            .confirm_stored(now, receipt.room, receipt.from, receipt.seq);
    }

    /// Counts why a control that was accepted by its stream changed nothing.
    fn count_failure(&mut self, result: Result<(), DropReason>) {
        if let Err(reason) = result {
            self.stats.count(reason);
        }
    }

    /// Counts a payload that will never reach the store and releases it in
    /// the reliable layer so later messages are not held up behind it. Its
    /// sender learns that it was refused, never that it was stored.
    pub(super) fn reject(&mut self, now: Instant, receipt: Receipt, reason: DropReason) {
        self.stats.count(reason);
        self.reliable
            .refuse(now, receipt.room, receipt.from, receipt.seq);
    }

    /// Counts a copy of a message the store already holds (opened before on
    /// its chain) and acknowledges it as stored: it is.
    pub(super) fn already_stored(&mut self, now: Instant, receipt: Receipt) {
        self.stats.count(DropReason::Replayed);
        self.reliable
            .confirm_stored(now, receipt.room, receipt.from, receipt.seq);
    }

    pub(super) fn hold(&mut self, now: Instant, held: HeldEnvelope) {
        if self.held.len() >= self.config.max_held
            && let Some(old) = self.held.pop_front()
        {
            // It cannot wait any longer, but it is authentic: the shell
            // stores the ciphertext, which keeps `Delivered` truthful and
            // the stream moving.
            self.stats.count(DropReason::HeldOverflow);
            self.surface_undecryptable(now, old.envelope, old.bytes, old.receipt);
        }
        self.held.push_back(held);
    }

    pub(super) fn release_held(&mut self, now: Instant, chain: ChainId) {
        let (ready, rest): (VecDeque<HeldEnvelope>, VecDeque<HeldEnvelope>) =
            std::mem::take(&mut self.held)
                .into_iter()
                .partition(|h| chain_of(&h.envelope) == chain);
        self.held = rest;
        for held in ready {
            self.wait_for_check(now, held);
        }
    }

    /// Opens an envelope on its chain and surfaces it; `verified`: its
    /// signature was already checked (in a batch).
    pub(super) fn open_and_surface(&mut self, now: Instant, held: HeldEnvelope, verified: bool) {
        let HeldEnvelope {
            envelope,
            bytes,
            receipt,
            ..
        } = held;
        let (opened, before_start, opened_before) = match (
            self.peers.get(&envelope.header.sender),
            self.receivers.get_mut(&chain_of(&envelope)),
        ) {
            (Some(sender), Some(followed)) => (
                if verified {
                    open_verified_envelope(&envelope, &mut followed.chain)
                } else {
                    open_envelope(&envelope, &sender.public, &mut followed.chain)
                },
                envelope.header.seq < followed.start,
                followed.chain.has_opened(envelope.header.seq),
            ),
            _ => (Err(CryptoError::WrongChain), false, false),
        };
        let body = match opened {
            Ok(body) => {
                self.dirty_chains
                    .insert((chain_of(&envelope), chains::Dirty::Receiving));
                body
            }
            Err(_) if before_start => {
                // Sealed before the key we hold (we lost the older one, e.g.
                // in a restart): unreadable here, but worth storing.
                self.surface_undecryptable(now, envelope, bytes, receipt);
                return;
            }
            Err(_) if opened_before => {
                // A copy of a message this chain opened before: stored.
                self.already_stored(now, receipt);
                return;
            }
            Err(_) => {
                // Too far ahead of our position, or at a position whose key
                // we no longer hold: if its signature proves its author it
                // is stored unreadable and opened from the chain's origin
                // later (never acknowledged and lost); anything else is
                // refused, and its sender hears so.
                self.surface_undecryptable(now, envelope, bytes, receipt);
                return;
            }
        };
        self.surface(now, envelope, bytes, body, receipt);
    }

    /// Hands an opened envelope to the shell for storing.
    pub(super) fn surface(
        &mut self,
        now: Instant,
        envelope: Envelope,
        bytes: Vec<u8>,
        body: Vec<u8>,
        receipt: Receipt,
    ) {
        let wall = self.wall_millis(now);
        self.clock.observe(wall, envelope.header.timestamp);
        self.events.push_back(NodeEvent::MessageReceived {
            room: envelope.header.room,
            from: envelope.header.sender,
            id: envelope.id(),
            timestamp: envelope.header.timestamp,
            kind: envelope.header.kind,
            body,
            envelope: bytes,
            receipt,
        });
    }

    /// Hands an envelope we cannot decrypt to the shell for storing, if its
    /// signature proves its author; anything else is rejected.
    pub(super) fn surface_undecryptable(
        &mut self,
        now: Instant,
        envelope: Envelope,
        bytes: Vec<u8>,
        receipt: Receipt,
    ) {
        // Our own message comes back when our store lost it (a disk that
        // lost its last writes): kept unreadable in our history rather
        // than refused at every reconciliation, forever.
        let author = envelope.header.sender;
        let authentic = if author == self.me {
            envelope.verify_signature(&self.identity.public()).is_ok()
        } else {
            self.peers
                .get(&author)
                .is_some_and(|sender| envelope.verify_signature(&sender.public).is_ok())
        };
        if !authentic {
            self.reject(now, receipt, DropReason::EnvelopeRejected);
            return;
        }
        self.events.push_back(NodeEvent::Undecryptable {
            room: envelope.header.room,
            from: envelope.header.sender,
            id: envelope.id(),
            timestamp: envelope.header.timestamp,
            envelope: bytes,
            receipt,
        });
    }
}

/// The distribution a key control carries.
fn distribution(chain: ChainId, start_seq: u64, chain_key: [u8; 32]) -> SenderKeyDistribution {
    SenderKeyDistribution {
        chain,
        start_seq,
        chain_key: SecretKey::from_bytes(chain_key),
    }
}
