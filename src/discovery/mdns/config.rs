//! What to announce and where: [`MdnsConfig`] and the record TTL rule.

use std::time::Duration;

use crate::discovery::InterfaceSpec;
use crate::proto::ids::PeerId;

/// What to announce and where.
#[derive(Clone, Debug)]
pub struct MdnsConfig {
    /// Our peer id, announced in TXT `id`; announcements carrying it are ours.
    pub peer_id: PeerId,
    /// Announced as the instance name (sanitised, at most 63 bytes).
    pub display_name: String,
    /// The node's UDP port, announced in the SRV record.
    pub port: u16,
    /// Interfaces to announce and browse on; empty = discovery off.
    pub interfaces: Vec<InterfaceSpec>,
    /// The mDNS port: 5353 everywhere except in isolated experiments.
    pub mdns_port: u16,
    /// How often `mdns-sd` polls interface addresses (whole seconds, at least 1).
    pub ip_check_interval: Duration,
    /// Our public key, announced in TXT `pk` so that peers who do not know
    /// us yet can talk to us (its blake3 hash must be `peer_id`). `None`:
    /// not announced.
    pub public_key: Option<[u8; 32]>,
    /// Which addresses of an interface given by name are announced and
    /// browsed on. Default IPv4 only.
    pub family: MdnsFamily,
    /// The TTL of our SRV and address records, by the number of kith
    /// nodes on the link: how long a node that vanished without a goodbye
    /// stays nearby for those who do not keep it alive.
    pub record_ttl: RecordTtl,
}

/// The TTL of our SRV and address records: [`RecordTtl::per_host`] times
/// the kith nodes seen on the link (us included), within
/// [`RecordTtl::min`]..=[`RecordTtl::max`].
///
/// Every node that does not keep us alive otherwise (a stranger) asks for
/// those records again at 80 % of their TTL, and all nodes' questions
/// for all instances go out together (one query and one answer per node
/// per round, see `vendor/mdns-sd/KITH-PATCHES.md`): a round costs about
/// N + 2 packets on a link of N nodes. Lengthening the TTL with N keeps a
/// link's idle mDNS traffic near `60 / (0.8 × per_host)` packets per
/// minute (about 8 at the defaults) until the TTL reaches `max`; from
/// there it grows with N, each node costing the least a bounded
/// detection allows (one answer per round). The price: a node that
/// vanished without a goodbye leaves the others' nearby lists after at
/// most the TTL, 2 minutes on a small link and 3 on a large one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordTtl {
    /// The TTL on a link of a few nodes (RFC 6762 §10 recommends 120 s).
    pub min: Duration,
    /// The longest TTL: the bound on how long a vanished node stays
    /// nearby.
    pub max: Duration,
    /// TTL per node on the link, between `min` and `max`.
    pub per_host: Duration,
}

impl Default for RecordTtl {
    fn default() -> Self {
        Self {
            min: Duration::from_secs(120),
            max: Duration::from_secs(180),
            per_host: Duration::from_secs(9),
        }
    }
}

impl RecordTtl {
    /// The same TTL whatever the link's size.
    pub fn fixed(ttl: Duration) -> Self {
        Self {
            min: ttl,
            max: ttl,
            per_host: ttl,
        }
    }

    /// The TTL in whole seconds (at least 1) for a link of `hosts` kith
    /// nodes, us included.
    pub fn secs_for(&self, hosts: usize) -> u32 {
        let hosts = u32::try_from(hosts).unwrap_or(u32::MAX);
        let scaled = self.per_host.saturating_mul(hosts);
        let ttl = scaled.clamp(self.min, self.max.max(self.min));
        u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX).max(1)
    }
}

/// The address family mDNS uses on interfaces given by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MdnsFamily {
    /// IPv4 only (224.0.0.251): the default, as kith's socket is IPv4 by
    /// default and IPv6 addresses would be of no use to peers.
    #[default]
    V4,
    /// IPv6 only (ff02::fb), for a node whose socket is IPv6.
    V6,
    /// Both: every packet goes out twice.
    Both,
}

impl MdnsConfig {
    /// Standard mDNS port and `mdns-sd`'s default 5 s address polling.
    pub fn new(
        peer_id: PeerId,
        display_name: impl Into<String>,
        port: u16,
        interfaces: Vec<InterfaceSpec>,
    ) -> Self {
        Self {
            peer_id,
            display_name: display_name.into(),
            port,
            interfaces,
            mdns_port: mdns_sd::MDNS_PORT,
            ip_check_interval: Duration::from_secs(u64::from(
                mdns_sd::IP_CHECK_INTERVAL_IN_SECS_DEFAULT,
            )),
            public_key: None,
            family: MdnsFamily::default(),
            record_ttl: RecordTtl::default(),
        }
    }
}
