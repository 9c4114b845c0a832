//! What `kith discovery` and `kith peers` show of the address book.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::AddressBook;
use crate::discovery::mdns::MdnsCounters;
use crate::discovery::presence::PresenceConfig;
use crate::proto::ids::PeerId;

/// Where we learned a peer's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Its mDNS announcement.
    Mdns,
    /// The registry's answer to a lookup.
    Registry,
    /// Configuration (`--peer`) or a datagram that authenticated as it.
    Direct,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Mdns => "mdns",
            Source::Registry => "registry",
            Source::Direct => "direct",
        })
    }
}

/// One peer as `kith discovery` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenPeer {
    pub peer: PeerId,
    /// Its announced name (mDNS), or empty.
    pub name: String,
    /// Where datagrams to it go now.
    pub addr: Option<SocketAddr>,
    pub source: Option<Source>,
    pub online: bool,
    /// Since its last authenticated datagram.
    pub heard_ago: Option<Duration>,
    /// Since its last sighting (mDNS or registry).
    pub sighted_ago: Option<Duration>,
    /// Whether we know its public key (needed to talk to it).
    pub has_key: bool,
    /// A contact (else a peer that is only nearby).
    pub contact: bool,
    /// Kept alive (a contact or a member of one of our rooms); a peer that
    /// is not is only nearby, neither online nor offline.
    pub watched: bool,
}

impl SeenPeer {
    /// `online`, `offline`, or `nearby` for a peer that is not kept alive.
    pub fn state(&self) -> &'static str {
        presence_word(self.online, self.watched)
    }
}

/// How `kith peers` and `kith discovery` show a peer's presence: `online`
/// only for a peer proven alive by authenticated traffic, `offline` for one
/// we keep alive that stopped answering, `nearby` for one we only know
/// from its announcement (never probed).
pub fn presence_word(online: bool, watched: bool) -> &'static str {
    match (online, watched) {
        (true, _) => "online",
        (false, true) => "offline",
        (false, false) => "nearby",
    }
}

/// The registry link as `kith discovery` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryReport {
    pub addr: SocketAddr,
    /// The registry confirmed our current registration.
    pub registered: bool,
    /// The addresses we publish.
    pub published: Vec<SocketAddr>,
    /// Since we last sent a keep-alive or registration.
    pub last_sent_ago: Option<Duration>,
    /// Since the registry last answered us (registered or keep-alive ack).
    pub last_answer_ago: Option<Duration>,
    pub lookups: u64,
    pub found: u64,
    /// Datagrams from the registry (or its address) that were dropped.
    pub dropped: u64,
}

/// What `kith discovery` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryReport {
    pub interfaces: Vec<String>,
    /// `None` when mDNS is off.
    pub mdns: Option<(String, MdnsCounters)>,
    pub presence: PresenceConfig,
    pub registry: Option<RegistryReport>,
    pub peers: Vec<SeenPeer>,
    /// Sightings dropped because [`MAX_NEARBY`](super::MAX_NEARBY) peers were remembered.
    pub nearby_dropped: u64,
}

fn ago(duration: Option<Duration>) -> String {
    duration.map_or_else(|| "-".to_owned(), |d| format!("{}ms", d.as_millis()))
}

impl DiscoveryReport {
    /// The report as lines of `key value` / `key=value` words, stable for
    /// scripts (`peer` lines: id, address, source, state, then `key=value`).
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let interfaces = if self.interfaces.is_empty() {
            "none".to_owned()
        } else {
            self.interfaces.join(",")
        };
        out.push(format!("interfaces {interfaces}"));
        match &self.mdns {
            None => out.push("mdns off".to_owned()),
            Some((name, c)) => out.push(format!(
                "mdns on name={name:?} found={} lost={} rejected={} own={} address_changes={} \
                 renamed={} errors={}",
                c.found,
                c.lost,
                c.rejected,
                c.own_ignored,
                c.address_changes,
                c.renamed,
                c.daemon_errors
            )),
        }
        let longest = self
            .presence
            .max_keepalive_interval
            .max(self.presence.keepalive_interval);
        out.push(format!(
            "presence keepalive={}ms max_keepalive={}ms offline_after={}ms idle_offline_after={}ms \
             nearby_dropped={}",
            self.presence.keepalive_interval.as_millis(),
            longest.as_millis(),
            self.presence.offline_after().as_millis(),
            self.presence.offline_after_interval(longest).as_millis(),
            self.nearby_dropped
        ));
        match &self.registry {
            None => out.push("registry off".to_owned()),
            Some(r) => {
                let published: Vec<String> = r.published.iter().map(|a| a.to_string()).collect();
                out.push(format!(
                    "registry {} {} published={} last_sent={} last_answer={} lookups={} found={} dropped={}",
                    r.addr,
                    if r.registered {
                        "registered"
                    } else {
                        "unregistered"
                    },
                    if published.is_empty() {
                        "-".to_owned()
                    } else {
                        published.join(",")
                    },
                    ago(r.last_sent_ago),
                    ago(r.last_answer_ago),
                    r.lookups,
                    r.found,
                    r.dropped
                ));
            }
        }
        for p in &self.peers {
            out.push(format!(
                "peer {} {} {} {} heard={} sighted={} key={} {} name={:?}",
                p.peer.to_hex(),
                p.addr.map_or_else(|| "-".to_owned(), |a| a.to_string()),
                p.source.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                p.state(),
                ago(p.heard_ago),
                ago(p.sighted_ago),
                if p.has_key { "yes" } else { "no" },
                if p.contact { "contact" } else { "nearby" },
                p.name
            ));
        }
        out
    }
}

impl AddressBook {
    pub(crate) fn report(&self, now: Instant) -> DiscoveryReport {
        let mut peers: Vec<SeenPeer> = self
            .book
            .iter()
            .filter(|(id, _)| !self.blocked.contains(id))
            .map(|(id, s)| SeenPeer {
                peer: *id,
                name: s.name.clone(),
                addr: s.addr,
                source: s.source,
                online: self.presence.is_online(id),
                heard_ago: s.last_heard.map(|t| now.saturating_duration_since(t)),
                sighted_ago: s.last_sighted.map(|t| now.saturating_duration_since(t)),
                has_key: s.public.is_some(),
                contact: s.contact,
                watched: self.presence.is_watched(id),
            })
            .collect();
        peers.sort_by_key(|p| p.peer);
        DiscoveryReport {
            interfaces: self
                .config
                .interfaces
                .iter()
                .map(|i| i.to_string())
                .collect(),
            mdns: self
                .mdns
                .as_ref()
                .map(|(m, _)| (m.instance_name().to_owned(), m.counters())),
            presence: self.config.presence,
            registry: self.registry.as_ref().map(|link| RegistryReport {
                addr: link.addr,
                registered: link.client.is_registered(),
                published: link.published.clone(),
                last_sent_ago: link.last_sent.map(|t| now.saturating_duration_since(t)),
                last_answer_ago: link.last_answer.map(|t| now.saturating_duration_since(t)),
                lookups: link.lookups,
                found: link.found,
                dropped: link.dropped,
            }),
            peers,
            nearby_dropped: self.nearby_dropped,
        }
    }
}
