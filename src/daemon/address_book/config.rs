//! What the address book is configured with, and starting mDNS once the
//! socket is bound.

use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver};

use crate::daemon::DaemonError;
use crate::discovery::mdns::{MdnsConfig, MdnsDiscovery, MdnsFamily, Wake};
use crate::discovery::presence::PresenceConfig;
use crate::discovery::{DiscoveryEvent, InterfaceSpec};
use crate::proto::crypto::PublicIdentity;

/// How the daemon finds peers and decides who is online.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// Announce and browse mDNS on [`DiscoveryConfig::interfaces`]. With no
    /// interfaces mDNS is off whatever this says. Default on.
    pub mdns: bool,
    /// The LAN interfaces (names or IPv4 addresses) mDNS uses; also the
    /// addresses published to the registry when the socket is bound to
    /// `0.0.0.0`. Default none.
    pub interfaces: Vec<InterfaceSpec>,
    /// The mDNS instance name; empty means `kith <short id>`.
    pub display_name: String,
    /// The registry to register with and look contacts up in.
    pub registry: Option<RegistryTarget>,
    /// Keep-alive interval and how many missed ones make a peer offline.
    pub presence: PresenceConfig,
    /// Contacts whose address is not known: found by mDNS or the registry.
    pub contacts: Vec<PublicIdentity>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            mdns: true,
            interfaces: Vec::new(),
            display_name: String::new(),
            registry: None,
            presence: PresenceConfig::default(),
            contacts: Vec::new(),
        }
    }
}

impl DiscoveryConfig {
    fn mdns_enabled(&self) -> bool {
        self.mdns && !self.interfaces.is_empty()
    }
}

/// A registry and its pinned public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryTarget {
    pub addr: SocketAddr,
    pub public_key: [u8; 32],
}

/// What the daemon hands the loop once the socket is bound: the port is
/// known only then, and mDNS announces it.
pub(crate) struct Attach {
    pub(super) local_addr: SocketAddr,
    pub(super) mdns: Option<(MdnsDiscovery, Receiver<DiscoveryEvent>)>,
}

/// Starts mDNS (if configured) for a daemon whose socket is bound at
/// `local_addr`. Every mDNS event calls `wake`, which wakes the loop.
pub(crate) fn prepare(
    config: &DiscoveryConfig,
    public: &PublicIdentity,
    local_addr: SocketAddr,
    wake: Wake,
) -> Result<Attach, DaemonError> {
    let mut mdns = None;
    if config.mdns_enabled() {
        let mut mdns_config = MdnsConfig::new(
            public.peer_id(),
            config.display_name.clone(),
            local_addr.port(),
            config.interfaces.clone(),
        );
        mdns_config.public_key = Some(public.to_bytes());
        // Announce the addresses peers can use: those of our socket's family.
        mdns_config.family = if local_addr.is_ipv6() {
            MdnsFamily::V6
        } else {
            MdnsFamily::V4
        };
        let (tx, rx) = mpsc::channel();
        let discovery = MdnsDiscovery::start(mdns_config, tx, wake)
            .map_err(|e| DaemonError::Discovery(e.to_string()))?;
        mdns = Some((discovery, rx));
    }
    Ok(Attach { local_addr, mdns })
}
