//! Sending datagrams: a reliable packet sealed under its peer's session,
//! buffered behind a handshake, or left to the reliable layer.

use super::peer::Handshake;
use super::{Node, NodeTransmit};
use crate::proto::ids::PeerId;
use crate::proto::reliable::{self, Destination, Transmit};
use crate::proto::wire::{self, Datagram, Frame};

impl Node {
    /// Takes one reliable packet to its datagram: sealed if there is a
    /// session, buffered behind a handshake if the peer is reachable,
    /// deferred (left to the reliable layer's retransmission) otherwise.
    pub(super) fn route(&mut self, transmit: Transmit) {
        let peer = match transmit.destination {
            Destination::Peer(peer) => peer,
            Destination::Group(room) => {
                self.seal_group(room, &transmit.bytes);
                return;
            }
        };
        if self.blocked.contains(&peer) {
            self.stats.deferred += 1;
            return;
        }
        let Some(state) = self.peers.get_mut(&peer) else {
            self.stats.deferred += 1;
            return;
        };
        if state.session.is_some() {
            if transmit.kind == reliable::PacketKind::Data {
                // Data is acknowledged: silence from here on is news.
                state.silent_since.get_or_insert(self.now);
            }
            self.seal_to(peer, &transmit.bytes);
            return;
        }
        if !state.reachable {
            self.stats.deferred += 1;
            return;
        }
        if state.pending.len() >= self.config.max_pending {
            state.pending.pop_front();
            self.stats.pending_overflow += 1;
        }
        state.pending.push_back(transmit.bytes);
        let rto = self.config.handshake_rto;
        match &mut state.handshake {
            Handshake::Idle => self.start_handshake(self.now, peer, false),
            Handshake::Initiating { probe, retry, .. } if *probe => {
                // Something waits for this handshake now: retransmit it
                // like any other, starting from the first timeout.
                *probe = false;
                retry.backoff = rto;
                retry.at = retry.at.min(self.now + rto);
            }
            _ => {}
        }
    }

    pub(super) fn seal_to(&mut self, peer: PeerId, packet: &[u8]) {
        let me = self.me;
        let Some(session) = self.peers.get_mut(&peer).and_then(|p| p.session.as_mut()) else {
            return;
        };
        let session_id = session.session_id();
        let counter = session.next_counter();
        let aad = wire::sealed_aad(&me, &session_id, counter);
        // Padded to a size bucket, so the datagram's size tells an observer
        // little about what it carries.
        let padded = wire::pad(packet, wire::SEALED_OVERHEAD);
        let Ok((sealed_counter, ciphertext)) = session.seal(&aad, &padded) else {
            // Only a 2^64-message session fails here; the reliable layer
            // resends, and a new session will be needed anyway.
            return;
        };
        debug_assert_eq!(sealed_counter, counter, "seal uses next_counter");
        let bytes = self.emit_frame(Frame::Sealed {
            session: session_id,
            counter,
            ciphertext,
        });
        if !bytes.is_empty() {
            self.stats.sealed_sent += 1;
            self.emit_raw(peer, bytes);
        }
    }

    /// Encodes one of our own frames. Our frames are within their caps by
    /// construction (a unit test checks the worst case), so a failure is a
    /// bug: it is asserted in debug builds and yields nothing in release.
    pub(super) fn emit_frame(&self, frame: Frame) -> Vec<u8> {
        let datagram = Datagram {
            from: frame.names_sender().then_some(self.me),
            frame,
        };
        match datagram.emit() {
            Ok(bytes) => bytes,
            Err(error) => {
                debug_assert!(false, "own frame does not encode: {error}");
                Vec::new()
            }
        }
    }

    pub(super) fn emit_raw(&mut self, to: PeerId, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.transmits.push_back(NodeTransmit {
                to: Destination::Peer(to),
                bytes,
            });
        }
    }
}
