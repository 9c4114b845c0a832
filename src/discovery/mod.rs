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
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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
        /// For each IPv6 link-local address among `addresses`, the index of
        /// the interface it was heard on: such an address means nothing
        /// without it (with several IPv6 interfaces the kernel would pick
        /// one by its routes).
        scope_ids: Vec<(Ipv6Addr, u32)>,
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

/// A network of a configured interface: one of its addresses and the
/// prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    /// An address of the interface.
    pub addr: IpAddr,
    /// Its prefix length (e.g. 24 for 255.255.255.0).
    pub prefix: u8,
}

impl Subnet {
    /// Whether `ip` is on this network (same family, same network bits).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask_v4(self.prefix);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask_v6(self.prefix);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// Whether `ip` is this IPv4 network's own address or its broadcast
    /// address (for prefixes of 30 and less, where both exist).
    fn is_network_or_broadcast(&self, ip: IpAddr) -> bool {
        let IpAddr::V4(ip) = ip else {
            return false;
        };
        if self.prefix > 30 {
            return false;
        }
        let host = u32::from(ip) & !mask_v4(self.prefix);
        host == 0 || host == !mask_v4(self.prefix)
    }
}

fn mask_v4(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

/// The networks of the configured interfaces as they are now (an interface
/// named by address contributes that address's network).
pub fn interface_subnets(interfaces: &[InterfaceSpec]) -> Vec<Subnet> {
    let Ok(all) = if_addrs::get_if_addrs() else {
        return Vec::new();
    };
    all.iter()
        .filter(|iface| {
            interfaces.iter().any(|spec| match spec {
                InterfaceSpec::Name(name) => *name == iface.name,
                InterfaceSpec::Addr(addr) => iface.ip() == IpAddr::V4(*addr),
            })
        })
        .map(|iface| match &iface.addr {
            if_addrs::IfAddr::V4(v4) => Subnet {
                addr: IpAddr::V4(v4.ip),
                prefix: v4.prefixlen,
            },
            if_addrs::IfAddr::V6(v6) => Subnet {
                addr: IpAddr::V6(v6.ip),
                prefix: v6.prefixlen,
            },
        })
        .collect()
}

/// Whether an announced address may be probed: a unicast address on one
/// of `subnets` (the configured interfaces' networks), or a link-local
/// one. Unspecified, multicast and broadcast addresses (limited, or the
/// network's own), and any address elsewhere (loopback included, unless the
/// configured interface is the loopback), are refused: an announcement is
/// unauthenticated, and probing what it names would let anybody on the LAN
/// aim every node's traffic at a victim of their choice.
pub fn address_allowed(ip: IpAddr, subnets: &[Subnet]) -> bool {
    let unusable = match ip {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    };
    if unusable
        || subnets
            .iter()
            .any(|s| s.contains(ip) && s.is_network_or_broadcast(ip))
    {
        return false;
    }
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => is_unicast_link_local_v6(v6),
    };
    link_local || subnets.iter().any(|s| s.contains(ip))
}

fn is_unicast_link_local_v6(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
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
