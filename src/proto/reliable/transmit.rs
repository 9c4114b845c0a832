//! Datagrams in and out: where one goes, how one came.

use super::packet::PacketKind;
use crate::proto::ids::{PeerId, RoomId};

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    /// Unicast to one peer.
    Peer(PeerId),
    /// Once to the room's multicast group.
    Group(RoomId),
}

/// How a datagram arrived, as told by the IO layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    Unicast,
    Multicast,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub destination: Destination,
    pub kind: PacketKind,
    /// An encoded [`Packet`](super::Packet), at most [`MAX_PACKET`](super::MAX_PACKET) bytes.
    pub bytes: Vec<u8>,
}
