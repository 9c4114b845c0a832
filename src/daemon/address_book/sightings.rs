//! Sightings from mDNS and the registry: where a peer may be, turned
//! into probes (online needs an authenticated answer; see the module docs).

use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::time::Instant;

use super::{AddressBook, BookAction, MAX_NEARBY, Source};
use crate::discovery::DiscoveryEvent;
use crate::discovery::presence::KeepAlive;
use crate::proto::crypto::PublicIdentity;
use crate::proto::ids::PeerId;

impl AddressBook {
    pub(super) fn drain_mdns(&mut self, now: Instant) {
        let mut events = Vec::new();
        if let Some((_, rx)) = &self.mdns {
            events.extend(rx.try_iter());
        }
        for event in events {
            match event {
                DiscoveryEvent::PeerFound {
                    peer_id,
                    public_key,
                    addresses,
                    scope_ids,
                    port,
                    display_name,
                } => {
                    if self.blocked.contains(&peer_id) {
                        continue;
                    }
                    let addresses: Vec<SocketAddr> = addresses
                        .into_iter()
                        .map(|ip| match ip {
                            // A link-local address goes out of the
                            // interface it was heard on.
                            IpAddr::V6(v6) => {
                                let scope = scope_ids
                                    .iter()
                                    .find(|(addr, _)| *addr == v6)
                                    .map_or(0, |(_, scope)| *scope);
                                SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope))
                            }
                            IpAddr::V4(_) => SocketAddr::new(ip, port),
                        })
                        .collect();
                    let addresses = self.same_family(addresses);
                    // The bridge checked that the key is valid and hashes
                    // to the id; a failure here would only skip the peer.
                    let public_key = public_key.and_then(|k| PublicIdentity::from_bytes(&k).ok());
                    match public_key {
                        Some(public) => {
                            self.sighted(
                                now,
                                peer_id,
                                public,
                                addresses,
                                Source::Mdns,
                                display_name,
                            );
                        }
                        None => {
                            // Without a key we can only probe a contact
                            // whose key we already hold.
                            let known = self.book.get(&peer_id).and_then(|s| s.public.clone());
                            if let Some(public) = known {
                                self.sighted(
                                    now,
                                    peer_id,
                                    public,
                                    addresses,
                                    Source::Mdns,
                                    display_name,
                                );
                            }
                        }
                    }
                }
                DiscoveryEvent::PeerLost { peer_id } => self.lost(now, peer_id),
            }
        }
    }

    /// Someone (mDNS or the registry) says `peer` is at `addresses`.
    pub(super) fn sighted(
        &mut self,
        now: Instant,
        peer: PeerId,
        public: PublicIdentity,
        addresses: Vec<SocketAddr>,
        source: Source,
        name: String,
    ) {
        if addresses.is_empty() {
            return;
        }
        let nearby = self.book.values().filter(|s| !s.contact).count();
        if !self.book.contains_key(&peer) && nearby >= MAX_NEARBY {
            self.nearby_dropped += 1;
            return;
        }
        let seen = self.book.entry(peer).or_default();
        if seen.public.is_none() && seen.contact {
            // A contact from the store, known by id only until now.
            self.learned.push(public.clone());
        }
        seen.public = Some(public.clone());
        if !name.is_empty() {
            seen.name = name;
        }
        seen.announced = source == Source::Mdns;
        seen.last_sighted = Some(now);
        if seen.addr.is_none() || !self.presence.is_online(&peer) {
            seen.addr = addresses.first().copied();
            seen.source = Some(source);
        }
        seen.sighted = addresses.clone();
        // A node contact, so that its handshakes are answered and our
        // probes go out; it becomes one of the user's contacts only by a
        // message either way.
        self.actions.push_back(BookAction::Contact(public));
        self.presence.found(now, peer, addresses);
    }

    pub(super) fn lost(&mut self, now: Instant, peer: PeerId) {
        self.presence.lost(now, peer);
        let Some(seen) = self.book.get_mut(&peer) else {
            return;
        };
        seen.announced = false;
        if seen.contact {
            // Keep probing a contact where it was last seen: a goodbye may
            // be forged, and a contact that comes back is noticed.
            if let Some(addr) = seen.addr {
                self.presence.found(now, peer, vec![addr]);
            }
        } else if !self.presence.is_online(&peer) {
            self.book.remove(&peer);
        }
    }

    pub(super) fn probe(&mut self, keepalive: KeepAlive) {
        let online = self.presence.is_online(&keepalive.peer);
        let Some(seen) = self.book.get_mut(&keepalive.peer) else {
            return;
        };
        if !online && !keepalive.addresses.is_empty() {
            // Offline: try each place it was seen in turn; the one that
            // answers becomes its address (see `heard`).
            let at = seen.probes % keepalive.addresses.len();
            seen.addr = Some(keepalive.addresses[at]);
            seen.probes = seen.probes.wrapping_add(1);
        }
        if seen.addr.is_some() {
            self.actions.push_back(BookAction::Probe(keepalive.peer));
        }
    }

    pub(super) fn same_family(&self, addresses: Vec<SocketAddr>) -> Vec<SocketAddr> {
        let v4 = self.local_addr.is_none_or(|a| a.is_ipv4());
        addresses
            .into_iter()
            .filter(|a| a.is_ipv4() == v4)
            .collect()
    }
}
