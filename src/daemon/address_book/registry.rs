//! The registry link: `kr` datagrams in and out, lookups of contacts, and
//! the addresses we publish.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::{AddressBook, RegistryTarget, Source};
use crate::daemon::DaemonError;
use crate::discovery::InterfaceSpec;
use crate::proto::crypto::{Identity, PublicIdentity};
use crate::proto::ids::PeerId;
use crate::registry::wire::{MAGIC as REGISTRY_MAGIC, MAX_ADDRESSES};
use crate::registry::{ClientEvent, RegistryClient, RegistryClientConfig};

/// Why a registry (`kr`) datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegistryDrop {
    /// It did not come from the configured registry's address (or no
    /// registry is configured).
    NotFromRegistry,
    /// It came from the registry's address but the client refused it
    /// (malformed, wrong signature, not an answer to anything we asked).
    Rejected,
}

pub(crate) fn is_registry_datagram(bytes: &[u8]) -> bool {
    bytes.starts_with(&REGISTRY_MAGIC)
}

/// The registry we register with, and what we told and heard of it.
pub(super) struct RegistryLink {
    pub(super) client: RegistryClient,
    pub(super) addr: SocketAddr,
    pub(super) outbox: VecDeque<Vec<u8>>,
    pub(super) published: Vec<SocketAddr>,
    pub(super) last_sent: Option<Instant>,
    pub(super) last_answer: Option<Instant>,
    pub(super) lookups: u64,
    pub(super) found: u64,
    pub(super) dropped: u64,
}

impl RegistryLink {
    /// A client of `target`, signing with `identity`, nothing sent yet.
    pub(super) fn new(target: RegistryTarget, identity: Identity) -> Result<Self, DaemonError> {
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        let client =
            RegistryClient::new(identity, RegistryClientConfig::new(target.public_key), seed)
                .map_err(|e| DaemonError::Discovery(e.to_string()))?;
        Ok(RegistryLink {
            client,
            addr: target.addr,
            outbox: VecDeque::new(),
            published: Vec::new(),
            last_sent: None,
            last_answer: None,
            lookups: 0,
            found: 0,
            dropped: 0,
        })
    }
}

impl AddressBook {
    /// The registry's timers: keep-alives and registration, and lookups of
    /// contacts that are offline and that mDNS has not seen lately.
    pub(super) fn registry_timeout(&mut self, now: Instant, wall_ms: u64) {
        let Some(link) = &mut self.registry else {
            return;
        };
        if let Some(bytes) = link.client.handle_timeout(now, wall_ms) {
            link.outbox.push_back(bytes);
            link.last_sent = Some(now);
        }
        if self.next_lookup.is_some_and(|at| now >= at) {
            let interval = self.config.presence.offline_after();
            self.next_lookup = Some(now + interval);
            // Contacts that are offline and that mDNS has not seen lately.
            let wanted: Vec<PeerId> = self
                .book
                .iter()
                .filter(|(id, s)| {
                    let announced_lately = s.announced
                        && s.last_sighted
                            .is_some_and(|t| now.saturating_duration_since(t) < interval);
                    s.contact
                        && !announced_lately
                        && !self.blocked.contains(id)
                        && !self.presence.is_online(id)
                })
                .map(|(id, _)| *id)
                .collect();
            for peer in wanted {
                let bytes = link.client.lookup(peer);
                if bytes.is_empty() {
                    // The registry's key cannot seal a lookup.
                    continue;
                }
                link.outbox.push_back(bytes);
                link.lookups += 1;
            }
        }
    }

    /// A `kr` datagram arrived from `from` at `now` (`wall_ms` on the wall
    /// clock). `Err` says why it was dropped.
    pub(crate) fn handle_registry_datagram(
        &mut self,
        now: Instant,
        wall_ms: u64,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), RegistryDrop> {
        let Some(link) = &mut self.registry else {
            return Err(RegistryDrop::NotFromRegistry);
        };
        if from != link.addr {
            link.dropped += 1;
            return Err(RegistryDrop::NotFromRegistry);
        }
        let event = match link.client.handle_datagram(now, wall_ms, bytes) {
            Ok(event) => event,
            Err(_) => {
                link.dropped += 1;
                return Err(RegistryDrop::Rejected);
            }
        };
        link.last_answer = Some(now);
        let Some(ClientEvent::Found {
            peer,
            public_key,
            addresses,
            ..
        }) = event
        else {
            // Registered, keep-alive acks, NotFound, Unavailable,
            // Forgotten (the client re-registers at its next timeout).
            return Ok(());
        };
        link.found += 1;
        if self.blocked.contains(&peer) {
            return Ok(());
        }
        // The client checked the peer's own signature and that the key
        // hashes to `peer`.
        let Ok(public) = PublicIdentity::from_bytes(&public_key) else {
            return Err(RegistryDrop::Rejected);
        };
        let addresses = self.same_family(addresses);
        self.sighted(
            now,
            peer,
            public,
            addresses,
            Source::Registry,
            String::new(),
        );
        Ok(())
    }
}

/// The addresses to publish to the registry: the bound address if it is
/// specific, else the IPv4 addresses of the configured interfaces, else
/// every non-loopback IPv4 address of the host. At most
/// [`MAX_ADDRESSES`].
pub(super) fn published_addresses(
    local: SocketAddr,
    interfaces: &[InterfaceSpec],
) -> Vec<SocketAddr> {
    if !local.ip().is_unspecified() {
        return vec![local];
    }
    let Ok(all) = if_addrs::get_if_addrs() else {
        return Vec::new();
    };
    let mut out: Vec<SocketAddr> = all
        .iter()
        .filter(|iface| match iface.ip() {
            IpAddr::V4(ip) => {
                if interfaces.is_empty() {
                    !ip.is_loopback()
                } else {
                    interfaces.iter().any(|spec| match spec {
                        InterfaceSpec::Name(name) => *name == iface.name,
                        InterfaceSpec::Addr(addr) => *addr == ip,
                    })
                }
            }
            IpAddr::V6(_) => false,
        })
        .map(|iface| SocketAddr::new(iface.ip(), local.port()))
        .collect();
    out.sort();
    out.dedup();
    out.truncate(MAX_ADDRESSES);
    out
}
