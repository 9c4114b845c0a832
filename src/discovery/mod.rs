//! Finding peers: mDNS/DNS-SD on the LAN, and presence from keep-alives.
//!
//! Two parts with different natures:
//!
//! - [`mdns`] is IO: it runs `mdns-sd`'s daemon on the configured interfaces,
//!   announces this node as `_kith._udp.local.` and turns what it resolves into
//!   [`DiscoveryEvent`]s sent over a channel, waking the node's loop after each.
//! - [`presence`] is pure: a sans-IO state machine in virtual time that decides
//!   when a peer is `online` or `offline` from sightings and heard datagrams,
//!   and when to send keep-alives.
//!
//! Everything an announcement carries is untrusted: anybody on the LAN can
//! send mDNS. A sighting is a hint where to look, never proof of identity;
//! only an authenticated datagram (the node's handshake) proves a peer.

pub mod mdns;
pub mod presence;

use crate::proto::ids::PeerId;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// What discovery saw on the network. The node feeds these into
/// [`presence::Presence`] and starts handshakes towards found peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiscoveryEvent {
    /// A peer's announcement was resolved and passed validation.
    PeerFound {
        /// The peer id claimed in the TXT record (not yet proven).
        peer_id: PeerId,
        /// The public key from TXT `pk`, if announced: a valid key that
        /// hashes to `peer_id` (checked), but like the id proven only by a
        /// handshake.
        public_key: Option<[u8; 32]>,
        /// Its addresses on the configured interfaces, sorted, deduplicated.
        addresses: Vec<IpAddr>,
        /// The UDP port of its kith socket.
        port: u16,
        /// The instance name it announced (sanitised).
        display_name: String,
    },
    /// A peer withdrew its announcement (goodbye) or its records expired.
    PeerLost {
        /// The peer id of the announcement that went away.
        peer_id: PeerId,
    },
}

/// One interface discovery may use, as given in the configuration.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum InterfaceSpec {
    /// By interface name, e.g. `eth0`.
    Name(String),
    /// By one of the interface's IPv4 addresses.
    Addr(Ipv4Addr),
}

impl FromStr for InterfaceSpec {
    type Err = DiscoveryError;

    /// An IPv4 address selects by address, anything else that looks like an
    /// interface name (1 to 15 bytes, no `/` or whitespace, as Linux allows)
    /// selects by name.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(addr) = text.parse::<Ipv4Addr>() {
            return Ok(Self::Addr(addr));
        }
        let valid_name = !text.is_empty()
            && text.len() <= 15
            && !text.contains('/')
            && !text.chars().any(|c| c.is_whitespace() || c.is_control());
        if valid_name {
            Ok(Self::Name(text.to_owned()))
        } else {
            Err(DiscoveryError::BadInterface(text.to_owned()))
        }
    }
}

impl fmt::Display for InterfaceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Addr(addr) => write!(f, "{addr}"),
        }
    }
}

/// Errors of the discovery layer.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The mDNS daemon could not be started or refused a command.
    #[error("mDNS discovery failed: {0}")]
    Mdns(#[from] ::mdns_sd::Error),
    /// A configured interface is neither an IPv4 address nor an interface name.
    #[error("{0:?} is not an interface name or IPv4 address")]
    BadInterface(String),
    /// The bridge thread could not be spawned.
    #[error("could not start the discovery thread: {0}")]
    Thread(#[source] std::io::Error),
}
