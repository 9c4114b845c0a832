//! Translates `mdns-sd` service events into validated
//! [`DiscoveryEvent`]s, keeping only addresses that may be probed.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mdns_sd::{ResolvedService, ScopedIp, ServiceDaemon, ServiceEvent};

use super::names::display_name_of;
use super::{
    Counters, MAX_TRACKED, RecordTtl, Rejection, Shared, TXT_ID, TXT_PUBLIC_KEY, TXT_VERSION, lock,
    validate_public_key, validate_txt,
};
use crate::discovery::{DiscoveryEvent, InterfaceSpec, Subnet, address_allowed, interface_subnets};
use crate::proto::ids::PeerId;

/// The configured interfaces' networks, read again when an address does
/// not fit them and the copy is older than [`SUBNETS_REFRESH`], so that an
/// address just added is not refused for long and a flood of bad
/// announcements does not read them for each one.
pub(super) struct Subnets {
    interfaces: Vec<InterfaceSpec>,
    subnets: Vec<Subnet>,
    read_at: Option<std::time::Instant>,
}

/// See [`Subnets`].
const SUBNETS_REFRESH: Duration = Duration::from_millis(100);

impl Subnets {
    pub(super) fn new(interfaces: Vec<InterfaceSpec>) -> Self {
        Self {
            interfaces,
            subnets: Vec::new(),
            read_at: None,
        }
    }

    fn allowed(&mut self, ip: IpAddr) -> bool {
        if address_allowed(ip, &self.subnets) {
            return true;
        }
        let now = std::time::Instant::now();
        if self
            .read_at
            .is_some_and(|at| now.saturating_duration_since(at) < SUBNETS_REFRESH)
        {
            return false;
        }
        self.subnets = interface_subnets(&self.interfaces);
        self.read_at = Some(now);
        address_allowed(ip, &self.subnets)
    }
}

/// The browse bridge: mDNS events in, discovery events out.
pub(super) struct Bridge {
    pub(super) own: PeerId,
    pub(super) counters: Arc<Counters>,
    /// `tracked` and `alive` live here.
    pub(super) shared: Arc<Mutex<Shared>>,
    pub(super) subnets: Subnets,
    /// Told not to re-query the announcements of peers proven alive;
    /// `None` in unit tests.
    pub(super) daemon: Option<ServiceDaemon>,
    /// How our records' TTL follows the number of nodes tracked.
    pub(super) record_ttl: RecordTtl,
}

impl Bridge {
    pub(super) fn translate(&mut self, event: ServiceEvent) -> Option<DiscoveryEvent> {
        match event {
            ServiceEvent::ServiceResolved(resolved) => match self.resolved(&resolved) {
                Ok(Some(found)) => {
                    Counters::bump(&self.counters.found);
                    Some(found)
                }
                Ok(None) => {
                    Counters::bump(&self.counters.own_ignored);
                    None
                }
                Err(_) => {
                    Counters::bump(&self.counters.rejected);
                    None
                }
            },
            ServiceEvent::ServiceRemoved(_, fullname) => {
                let key = fullname.to_lowercase();
                let mut shared = lock(&self.shared);
                let peer_id = shared.tracked.remove(&key)?;
                let retuned = shared.retune_ttl(&self.record_ttl);
                let ours = shared.fullname.clone();
                drop(shared);
                if let Some(daemon) = &self.daemon {
                    // Gone: the daemon need not remember it (no-op if it
                    // was refreshed anyway).
                    let _ = daemon.set_refresh(&key, true);
                    if let Some(ttl) = retuned {
                        let _ = daemon.set_host_ttl(&ours, ttl);
                    }
                }
                Counters::bump(&self.counters.lost);
                Some(DiscoveryEvent::PeerLost { peer_id })
            }
            _ => None,
        }
    }

    /// `Ok(None)` is our own announcement.
    fn resolved(&mut self, service: &ResolvedService) -> Result<Option<DiscoveryEvent>, Rejection> {
        let peer_id = validate_txt(
            service.get_property_val(TXT_ID),
            service.get_property_val(TXT_VERSION),
        )?;
        if peer_id == self.own {
            if let Some(daemon) = &self.daemon {
                // We know we are alive: never re-query our own records.
                let _ = daemon.set_refresh(&service.fullname, false);
            }
            return Ok(None);
        }
        let public_key = validate_public_key(peer_id, service.get_property_val(TXT_PUBLIC_KEY))?
            .map(|public| public.to_bytes());
        if service.port == 0 {
            return Err(Rejection::BadPort);
        }
        let mut addresses: Vec<IpAddr> =
            service.addresses.iter().map(|ip| ip.to_ip_addr()).collect();
        if addresses.is_empty() {
            return Err(Rejection::NoAddress);
        }
        // Only addresses we may probe; an announcement left without one is
        // refused (it would make us send to whoever it names).
        addresses.retain(|ip| self.subnets.allowed(*ip));
        if addresses.is_empty() {
            return Err(Rejection::BadAddress);
        }
        addresses.sort();
        addresses.dedup();
        let scope_ids: Vec<(Ipv6Addr, u32)> = service
            .addresses
            .iter()
            .filter_map(|ip| match ip {
                ScopedIp::V6(v6) if addresses.contains(&IpAddr::V6(*v6.addr())) => {
                    is_link_local_v6(*v6.addr()).then(|| (*v6.addr(), v6.scope_id().index))
                }
                _ => None,
            })
            .collect();
        let key = service.fullname.to_lowercase();
        let mut shared = lock(&self.shared);
        if !shared.tracked.contains_key(&key) && shared.tracked.len() >= MAX_TRACKED {
            return Err(Rejection::TooMany);
        }
        // A name that now carries a different id is a different peer; the
        // old one's loss is not reported separately because the new
        // sighting says nothing about whether the old peer is still there.
        shared.tracked.insert(key.clone(), peer_id);
        let retuned = shared.retune_ttl(&self.record_ttl);
        if let Some(daemon) = &self.daemon {
            // A new announcement of a peer proven alive (a restart, a new
            // name) is not re-queried either; any other one is.
            let _ = daemon.set_refresh(&key, !shared.alive.contains(&peer_id));
            if let Some(ttl) = retuned {
                // Fails only once the daemon stopped.
                let _ = daemon.set_host_ttl(&shared.fullname, ttl);
            }
        }
        Ok(Some(DiscoveryEvent::PeerFound {
            peer_id,
            public_key,
            addresses,
            scope_ids,
            port: service.port,
            display_name: display_name_of(&service.fullname, &peer_id),
        }))
    }
}

/// fe80::/10.
fn is_link_local_v6(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}
