//! The Network panel's requests, answered from the node: its `Discovery`
//! and `Status` answers made into the panel's plain report, and adding a
//! peer by address and key.

use crate::daemon::address_book::{DiscoveryReport, Source};
use crate::daemon::{DaemonHandle, Status};
use crate::ui::state::{
    HeardPeer, MdnsInfo, NetworkReport, NetworkRequest, NetworkUpdate, RegistryInfo,
};
use std::time::Duration;

/// Answers one Network panel request (blocking: the worker thread runs it).
pub(super) fn answer(handle: &DaemonHandle, request: NetworkRequest) -> NetworkUpdate {
    match request {
        NetworkRequest::Report => NetworkUpdate::Report(
            handle
                .discovery()
                .and_then(|discovery| Ok(Box::new(report(&discovery, &handle.status()?))))
                .map_err(|e| format!("Could not read the network state: {e}")),
        ),
        NetworkRequest::AddPeer { key, addr } => NetworkUpdate::Added {
            peer: key.peer_id(),
            result: handle
                .add_peer(*key, addr)
                .map_err(|e| format!("Could not add the peer: {e}")),
        },
    }
}

fn millis(ago: Option<Duration>) -> Option<u64> {
    ago.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The panel's report from the node's two answers.
pub fn report(discovery: &DiscoveryReport, status: &Status) -> NetworkReport {
    let presence = &discovery.presence;
    let counters = status.counters();
    let counter = |name: &str| {
        counters
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    };
    let drops = counters
        .iter()
        .filter(|(name, value)| {
            *value > 0
                && name != "dropped_total"
                && (name.contains("drop") || name.ends_with("_errors"))
        })
        .cloned()
        .collect();
    NetworkReport {
        interfaces: discovery.interfaces.clone(),
        mdns: discovery.mdns.as_ref().map(|(name, c)| MdnsInfo {
            name: name.clone(),
            found: c.found,
            lost: c.lost,
            rejected: c.rejected,
            errors: c.daemon_errors,
        }),
        registry: discovery.registry.as_ref().map(|r| RegistryInfo {
            addr: r.addr.to_string(),
            registered: r.registered,
            published: r.published.iter().map(ToString::to_string).collect(),
            last_answer_ago: millis(r.last_answer_ago),
            lookups: r.lookups,
            found: r.found,
            dropped: r.dropped,
        }),
        keepalive_secs: (
            presence.keepalive_interval.as_secs(),
            presence
                .max_keepalive_interval
                .max(presence.keepalive_interval)
                .as_secs(),
        ),
        peers: discovery
            .peers
            .iter()
            .map(|p| HeardPeer {
                peer: p.peer,
                name: p.name.clone(),
                addr: p.addr.map(|a| a.to_string()),
                source: p.source.map(|s| {
                    match s {
                        Source::Mdns => "mDNS",
                        Source::Registry => "registry",
                        Source::Direct => "direct",
                    }
                    .to_owned()
                }),
                presence: p.state().to_owned(),
                heard_ago: millis(p.heard_ago),
                sighted_ago: millis(p.sighted_ago),
                contact: p.contact,
            })
            .collect(),
        received: counter("net_received"),
        sent: counter("net_sent"),
        drops,
        dropped_total: counter("dropped_total")
            + counter("net_oversize_dropped")
            + counter("net_own_echo_dropped")
            + counter("net_queue_drops")
            + counter("net_oversize_transmit_dropped")
            + counter("net_multicast_disabled_drops")
            + counter("registry_foreign_dropped")
            + counter("registry_rejected_dropped"),
    }
}
