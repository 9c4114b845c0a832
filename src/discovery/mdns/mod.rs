//! mDNS/DNS-SD announcement and browsing of `_kith._udp.local.`.
//!
//! [`MdnsDiscovery`] runs an `mdns-sd` daemon (vendored with patches, see
//! `vendor/mdns-sd/KITH-PATCHES.md`) restricted to the configured
//! interfaces. It announces this node with instance name = display name +
//! ` [<8 hex of the peer id>]` (see [`instance_name_for`]) and TXT records `id=<64 hex peer id>`, `v=<wire version>` and (when
//! configured) `pk=<64 hex public key>`, with the SRV record carrying the
//! node's UDP port; it browses for the same type and sends
//! every validated resolution as a [`DiscoveryEvent`] into a
//! `std::sync::mpsc` channel, then calls the wake callback (the node makes
//! that `mio::Waker::wake`), so the node's loop never blocks on discovery.
//!
//! # Guarantees
//!
//! - Only the configured interfaces are used: the daemon is told to disable
//!   every interface and enable only the listed ones, before anything is
//!   registered or browsed. An empty list means discovery is off and no
//!   daemon is started at all. (`mdns-sd` binds its two sockets and joins the
//!   multicast group on every interface when it starts; the selection then
//!   leaves the unlisted ones before the first packet is sent.)
//! - Announcements are untrusted input. A resolution is reported only if its
//!   TXT `id` is exactly 64 lower- or upper-case hex digits, `v` is this
//!   build's wire version, the port is non-zero and it has an address; else it
//!   is dropped and counted. A `pk` record is optional, but when present it
//!   must be exactly 64 hex digits of a valid public key whose blake3 hash
//!   is the announced `id`, or the whole announcement is dropped. Only
//!   addresses that may be probed are kept: unicast on a configured
//!   interface's network, or link-local (loopback, multicast, broadcast and
//!   foreign addresses go, see [`super::address_allowed`]); an announcement
//!   left with none is dropped. Our own announcement is ignored (and counted).
//!   At most [`MAX_TRACKED`] announcements are remembered, so a flood of fake
//!   ones cannot grow memory without bound.
//! - Address changes: `mdns-sd` polls the interface addresses every
//!   `ip_check_interval` (default 5 s). For a service registered with
//!   automatic addresses (as ours is) it adds a new address and announces on a
//!   newly usable interface by itself, and drops a vanished address from the
//!   service. It does not tell peers on the *other* interfaces that an address
//!   went away, so their caches keep the stale A record until its TTL (120 s)
//!   runs out. We add: on every `IpAdd`/`IpDel` the daemon reports, the
//!   announcement is registered again, which sends a fresh unsolicited
//!   response with the cache-flush bit on every selected interface, so peers
//!   replace the address set at once.
//! - One name at a time, and we know it. Instance names are unique by
//!   construction; if someone else announces ours anyway, `mdns-sd`'s
//!   probing moves us to `<name> (2)` on that interface, and we then
//!   register again under that name on every interface (goodbyes for the
//!   old one first). [`MdnsDiscovery::instance_name`] is the name announced
//!   now. The start-up announcement goes out twice, a second apart.
//! - Named interfaces are used in one address family
//!   ([`MdnsConfig::family`], IPv4 by default), not IPv4 and IPv6 at once.
//! - Idle traffic: peers proven alive by other means
//!   ([`MdnsDiscovery::set_alive`]) and we ourselves are not re-queried at
//!   the end of their records' TTL; other peers are, with jitter, all in
//!   one query per round, so one query and one multicast answer per peer
//!   refresh every cache on the LAN. Our SRV/A TTL grows with the nodes
//!   on the link ([`RecordTtl`]), which keeps those rounds' traffic near
//!   constant up to about 20 nodes.
//! - A peer that vanishes without a goodbye is reported lost
//!   ([`DiscoveryEvent::PeerLost`]) when its SRV record expires
//!   unanswered: within its TTL, at most [`RecordTtl::max`] of kith nodes
//!   at their defaults (peers we keep alive by other means excepted: their
//!   records run out silently).
//! - [`MdnsDiscovery::shutdown`] (also run on drop) stops and joins the
//!   bridge threads, then unregisters the name announced last, which makes
//!   `mdns-sd` send goodbye packets (TTL 0) so peers see
//!   [`DiscoveryEvent::PeerLost`] immediately, then stops the daemon.

use super::{
    DiscoveryError, DiscoveryEvent, InterfaceSpec, Subnet, address_allowed, interface_subnets,
};
use crate::proto::crypto::PublicIdentity;
use crate::proto::ids::PeerId;
use crate::proto::wire;
use mdns_sd::{
    DaemonEvent, IfKind, IfPredicate, RRType, ResolvedService, ScopedIp, ServiceDaemon,
    ServiceEvent, ServiceInfo,
};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// The DNS-SD service type kith announces and browses.
pub const SERVICE_TYPE: &str = "_kith._udp.local.";

/// An instance name is one DNS label: at most 63 bytes.
pub const MAX_INSTANCE_NAME: usize = 63;

/// The part of an instance name a display name may fill: the rest is
/// [`instance_suffix`] (` [` + 8 hex digits + `]`).
pub const MAX_NAME_IN_INSTANCE: usize = MAX_INSTANCE_NAME - 11;

/// How many announcements the bridge remembers at once (fullname → peer id,
/// needed to turn a removal into [`DiscoveryEvent::PeerLost`]).
pub const MAX_TRACKED: usize = 4096;

/// TXT key of the peer id.
pub const TXT_ID: &str = "id";
/// TXT key of the protocol version.
pub const TXT_VERSION: &str = "v";
/// TXT key of the public key (optional; peer id = blake3 of it).
pub const TXT_PUBLIC_KEY: &str = "pk";

/// How often the bridge threads look at their stop flag while idle. Only
/// bounds how long [`MdnsDiscovery::shutdown`] waits for them.
const BRIDGE_POLL: Duration = Duration::from_millis(100);

/// How long shutdown waits for the daemon to confirm the goodbye and the stop.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

/// Called after events were sent; the node makes it `mio::Waker::wake`.
pub type Wake = Box<dyn Fn() + Send>;

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

/// Why an announcement was not reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No `id` TXT record, or one without a value.
    #[error("no peer id in TXT")]
    MissingId,
    /// `id` is not exactly 64 hex digits.
    #[error("peer id in TXT is not 64 hex digits")]
    BadId,
    /// No `v` TXT record, or one without a value.
    #[error("no protocol version in TXT")]
    MissingVersion,
    /// `v` is not this build's wire version.
    #[error("unsupported protocol version in TXT")]
    BadVersion,
    /// SRV port 0.
    #[error("port 0")]
    BadPort,
    /// No address on the configured interfaces.
    #[error("no address")]
    NoAddress,
    /// [`MAX_TRACKED`] announcements are already remembered.
    #[error("too many announcements")]
    TooMany,
    /// None of its addresses may be probed (see
    /// [`super::address_allowed`]): off the configured interfaces' networks
    /// and not link-local, or loopback, multicast, broadcast, unspecified.
    #[error("no address on the configured interfaces' networks")]
    BadAddress,
    /// `pk` is not 64 hex digits of a valid public key, or its hash is not
    /// the announced `id`.
    #[error("public key in TXT does not match the peer id")]
    BadPublicKey,
}

/// Validates an optional TXT `pk` against the already validated `peer_id`:
/// absent is fine (`Ok(None)`); present, it must be 64 hex digits of a valid
/// Ed25519 public key whose blake3 hash is `peer_id`.
pub fn validate_public_key(
    peer_id: PeerId,
    public_key: Option<Option<&[u8]>>,
) -> Result<Option<PublicIdentity>, Rejection> {
    let Some(value) = public_key else {
        return Ok(None);
    };
    let key = value
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(PeerId::from_hex)
        .ok_or(Rejection::BadPublicKey)?;
    let public = PublicIdentity::from_bytes(&key.0).map_err(|_| Rejection::BadPublicKey)?;
    if public.peer_id() != peer_id {
        return Err(Rejection::BadPublicKey);
    }
    Ok(Some(public))
}

/// Validates the TXT values of an announcement: `id` must be exactly 64 hex
/// digits and `v` exactly this build's wire version in decimal. `None` is a
/// missing key, `Some(None)` a key without `=value`.
pub fn validate_txt(
    id: Option<Option<&[u8]>>,
    version: Option<Option<&[u8]>>,
) -> Result<PeerId, Rejection> {
    let id = id.flatten().ok_or(Rejection::MissingId)?;
    let version = version.flatten().ok_or(Rejection::MissingVersion)?;
    // from_hex checks the length and every digit; a non-UTF-8 value fails
    // here before it can reach it.
    let peer_id = std::str::from_utf8(id)
        .ok()
        .and_then(PeerId::from_hex)
        .ok_or(Rejection::BadId)?;
    if version != wire::VERSION.to_string().as_bytes() {
        return Err(Rejection::BadVersion);
    }
    Ok(peer_id)
}

/// Makes a display name fit to be an instance name, and an announced one fit
/// to be shown: control characters go, surrounding whitespace goes, and it is
/// cut to [`MAX_INSTANCE_NAME`] bytes on a character boundary.
pub fn sanitize_display_name(name: &str) -> String {
    let cleaned: String = name.chars().filter(|c| !c.is_control()).collect();
    let trimmed = cleaned.trim();
    let mut end = trimmed.len().min(MAX_INSTANCE_NAME);
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    trimmed[..end].trim_end().to_owned()
}

/// Diagnostics: what the bridge saw since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MdnsCounters {
    /// Resolutions reported as [`DiscoveryEvent::PeerFound`].
    pub found: u64,
    /// Removals reported as [`DiscoveryEvent::PeerLost`].
    pub lost: u64,
    /// Resolutions dropped by validation (see [`Rejection`]).
    pub rejected: u64,
    /// Resolutions of our own announcement, ignored.
    pub own_ignored: u64,
    /// Address changes the daemon reported.
    pub address_changes: u64,
    /// Times the announcement was registered again after an address change.
    pub reannounced: u64,
    /// Errors the daemon reported.
    pub daemon_errors: u64,
    /// Times a name conflict made the daemon announce us under another name.
    pub renamed: u64,
}

#[derive(Default)]
struct Counters {
    found: AtomicU64,
    lost: AtomicU64,
    rejected: AtomicU64,
    own_ignored: AtomicU64,
    address_changes: AtomicU64,
    reannounced: AtomicU64,
    daemon_errors: AtomicU64,
    renamed: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> MdnsCounters {
        MdnsCounters {
            found: self.found.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            own_ignored: self.own_ignored.load(Ordering::Relaxed),
            address_changes: self.address_changes.load(Ordering::Relaxed),
            reannounced: self.reannounced.load(Ordering::Relaxed),
            daemon_errors: self.daemon_errors.load(Ordering::Relaxed),
            renamed: self.renamed.load(Ordering::Relaxed),
        }
    }
}

/// The running daemon and its bridge threads.
struct Active {
    daemon: ServiceDaemon,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// What the handle and the bridge threads share.
#[derive(Default)]
struct Shared {
    /// The instance name we are announced under now.
    announced: String,
    /// The full name of our registration (`<announced>._kith._udp.local.`).
    fullname: String,
    /// Lower-cased fullname → the peer id it announced, for every
    /// announcement we reported (needed to turn a removal into
    /// [`DiscoveryEvent::PeerLost`], and to find a peer's names).
    tracked: HashMap<String, PeerId>,
    /// Peers proven alive by other means (see [`MdnsDiscovery::set_alive`]).
    alive: HashSet<PeerId>,
    /// The TTL (seconds) of our SRV and address records now (see
    /// [`RecordTtl`]).
    record_ttl: u32,
}

impl Shared {
    /// The TTL our records should have now: `rule` for the nodes we track
    /// and us. `Some` when it differs from the one they have (and takes
    /// it as theirs).
    fn retune_ttl(&mut self, rule: &RecordTtl) -> Option<u32> {
        let ttl = rule.secs_for(self.tracked.len() + 1);
        (ttl != self.record_ttl).then(|| {
            self.record_ttl = ttl;
            ttl
        })
    }
}

/// Locks the shared state; a bridge thread that panicked while holding it
/// left nothing half-written that matters more than going on.
fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// mDNS discovery on the configured interfaces; see the module docs.
pub struct MdnsDiscovery {
    interfaces: Vec<InterfaceSpec>,
    counters: Arc<Counters>,
    shared: Arc<Mutex<Shared>>,
    active: Option<Active>,
}

/// The suffix that makes our instance name unique: ` [` + the first 8 hex
/// digits of the peer id + `]`.
pub fn instance_suffix(peer_id: &PeerId) -> String {
    format!(" [{}]", peer_id.short())
}

/// The instance name a node announces: its display name (sanitised, cut to
/// [`MAX_NAME_IN_INSTANCE`] bytes; `kith` if empty) and [`instance_suffix`].
/// Two nodes never choose the same one, whatever names their users gave
/// them, so mDNS name conflicts (and the renaming they force) only come
/// from someone announcing a name that is not theirs.
pub fn instance_name_for(peer_id: &PeerId, display_name: &str) -> String {
    let mut name = sanitize_display_name(display_name);
    let mut end = name.len().min(MAX_NAME_IN_INSTANCE);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.truncate(end);
    let name = name.trim_end();
    let name = if name.is_empty() { "kith" } else { name };
    format!("{name}{}", instance_suffix(peer_id))
}

impl MdnsDiscovery {
    /// Starts announcing and browsing. With no interfaces configured nothing
    /// is started and no event will ever be sent.
    pub fn start(
        config: MdnsConfig,
        events: Sender<DiscoveryEvent>,
        wake: Wake,
    ) -> Result<Self, DiscoveryError> {
        let own = config.peer_id;
        let instance_name = instance_name_for(&own, &config.display_name);
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Mutex::new(Shared {
            announced: instance_name.clone(),
            record_ttl: config.record_ttl.secs_for(1),
            ..Shared::default()
        }));
        let mut this = Self {
            interfaces: config.interfaces.clone(),
            counters: counters.clone(),
            shared: shared.clone(),
            active: None,
        };
        if config.interfaces.is_empty() {
            return Ok(this);
        }

        let kinds: Vec<IfKind> = config
            .interfaces
            .iter()
            .flat_map(|spec| if_kinds(spec, config.family))
            .collect();
        let daemon = ServiceDaemon::new_with_port(config.mdns_port)?;
        let setup = || -> Result<_, DiscoveryError> {
            // Commands run in order on the daemon thread: the selection is
            // in force before the first announcement or query goes out.
            daemon.disable_interface(IfKind::All)?;
            daemon.enable_interface(kinds.clone())?;
            let secs = u32::try_from(config.ip_check_interval.as_secs().max(1)).unwrap_or(u32::MAX);
            daemon.set_ip_check_interval(secs)?;
            let ttl = config.record_ttl.secs_for(1);
            let info = service_info(&config, &instance_name, kinds.clone(), ttl)?;
            let monitor = daemon.monitor()?;
            daemon.register(info.clone())?;
            let browse = daemon.browse(SERVICE_TYPE)?;
            Ok((info, monitor, browse))
        };
        let (info, monitor, browse) = match setup() {
            Ok(parts) => parts,
            Err(e) => {
                // Do not leave the daemon thread running behind an error.
                let _ = daemon.shutdown();
                return Err(e);
            }
        };
        lock(&shared).fullname = info.get_fullname().to_owned();

        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let spawned = std::thread::Builder::new()
            .name("kith-mdns-browse".into())
            .spawn({
                let bridge = Bridge {
                    own,
                    counters: counters.clone(),
                    shared: shared.clone(),
                    subnets: Subnets::new(config.interfaces.clone()),
                    daemon: Some(daemon.clone()),
                    record_ttl: config.record_ttl,
                };
                let stop = stop.clone();
                move || run_browse(browse, bridge, events, wake, stop)
            });
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                let _ = daemon.shutdown();
                return Err(DiscoveryError::Thread(e));
            }
        }
        let spawned = std::thread::Builder::new()
            .name("kith-mdns-monitor".into())
            .spawn({
                let monitor_state = Monitor {
                    daemon: daemon.clone(),
                    info,
                    config: config.clone(),
                    kinds,
                    counters: counters.clone(),
                    shared: shared.clone(),
                };
                let stop = stop.clone();
                move || run_monitor(monitor, monitor_state, stop)
            });
        let active = Active {
            daemon,
            stop,
            threads,
        };
        match spawned {
            Ok(handle) => {
                let mut active = active;
                active.threads.push(handle);
                this.active = Some(active);
                Ok(this)
            }
            Err(e) => {
                this.active = Some(active);
                let _ = this.shutdown();
                Err(DiscoveryError::Thread(e))
            }
        }
    }

    /// Whether a daemon runs (false when no interface is configured or after
    /// shutdown).
    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// The configured interfaces, for diagnostics.
    pub fn interfaces(&self) -> &[InterfaceSpec] {
        &self.interfaces
    }

    /// The instance name we are announced under now: the display name and
    /// [`instance_suffix`] (see [`instance_name_for`]), or the name the
    /// daemon moved us to after a conflict (someone else announced ours).
    pub fn instance_name(&self) -> String {
        lock(&self.shared).announced.clone()
    }

    /// `peer` is (`true`) or is no longer (`false`) proven alive by other
    /// means (kith: authenticated keep-alives). While it is, its
    /// announcement is not re-queried when its records near the end of
    /// their TTL (RFC 6762 §5.2 refresh): that re-querying, by every node
    /// for every peer, is what made idle mDNS traffic grow with the square
    /// of the nodes. Its records then run out silently; a goodbye, or a new
    /// announcement (a restart, an address change), is still reported.
    pub fn set_alive(&self, peer: PeerId, alive: bool) {
        let Some(active) = &self.active else {
            return;
        };
        let mut shared = lock(&self.shared);
        let changed = if alive {
            shared.alive.insert(peer)
        } else {
            shared.alive.remove(&peer)
        };
        if !changed {
            return;
        }
        for (fullname, _) in shared.tracked.iter().filter(|(_, id)| **id == peer) {
            // Fails only once the daemon stopped; nothing to refresh then.
            let _ = active.daemon.set_refresh(fullname, !alive);
        }
    }

    /// What the bridge saw so far.
    pub fn counters(&self) -> MdnsCounters {
        self.counters.snapshot()
    }

    /// Sends goodbye packets, stops the daemon and joins the bridge threads.
    /// Idempotent. Errors from the daemon are returned after everything was
    /// stopped anyway.
    pub fn shutdown(&mut self) -> Result<(), DiscoveryError> {
        let Some(active) = self.active.take() else {
            return Ok(());
        };
        let mut first_error = None;
        // The monitor thread may be registering us under a new name: stop
        // the threads first (they look at the flag every BRIDGE_POLL), so
        // that the name unregistered is the last one.
        active.stop.store(true, Ordering::Relaxed);
        for thread in active.threads {
            // A bridge thread only panics on a bug; shutdown still completes.
            let _ = thread.join();
        }
        let fullname = lock(&self.shared).fullname.clone();
        // Unregister before stopping: this is what sends the goodbyes.
        match active.daemon.unregister(&fullname) {
            Ok(done) => {
                let _ = done.recv_timeout(SHUTDOWN_WAIT);
            }
            Err(e) => first_error = Some(e),
        }
        match active.daemon.shutdown() {
            Ok(done) => {
                let _ = done.recv_timeout(SHUTDOWN_WAIT);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

impl Drop for MdnsDiscovery {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// What `mdns-sd` is told to use for one configured interface. A name
/// selects every address of the interface in `mdns-sd`, IPv6 included;
/// unless IPv6 is asked for, a predicate keeps its IPv4 addresses only.
fn if_kinds(spec: &InterfaceSpec, family: MdnsFamily) -> Vec<IfKind> {
    match (spec, family) {
        (InterfaceSpec::Addr(addr), _) => vec![IfKind::Addr(IpAddr::V4(*addr))],
        (InterfaceSpec::Name(name), MdnsFamily::Both) => vec![IfKind::Name(name.clone())],
        (InterfaceSpec::Name(name), family) => {
            let name = name.clone();
            let v6 = family == MdnsFamily::V6;
            vec![IfKind::Predicate(IfPredicate::new(move |intf| {
                intf.name == name && intf.ip().is_ipv6() == v6
            }))]
        }
    }
}

fn service_info(
    config: &MdnsConfig,
    instance_name: &str,
    kinds: Vec<IfKind>,
    record_ttl: u32,
) -> Result<ServiceInfo, DiscoveryError> {
    let id = config.peer_id.to_hex();
    // One host name per peer, so two nodes on one machine (or one namespace)
    // do not fight over the same A records.
    let host_name = format!("kith-{}.local.", &id[..16]);
    let version = wire::VERSION.to_string();
    let public_key = config.public_key.map(|key| PeerId(key).to_hex());
    let mut txt = vec![(TXT_ID, id.as_str()), (TXT_VERSION, version.as_str())];
    if let Some(key) = &public_key {
        txt.push((TXT_PUBLIC_KEY, key.as_str()));
    }
    // No addresses given: with `enable_addr_auto` the daemon fills in the
    // addresses of the selected interfaces and follows their changes.
    let mut info = ServiceInfo::new(
        SERVICE_TYPE,
        instance_name,
        &host_name,
        "",
        config.port,
        &txt[..],
    )?
    .enable_addr_auto();
    info.set_interfaces(kinds);
    info.set_host_ttl(record_ttl);
    Ok(info)
}

/// Drains the browse receiver into the node's channel.
fn run_browse(
    browse: mdns_sd::Receiver<ServiceEvent>,
    mut bridge: Bridge,
    events: Sender<DiscoveryEvent>,
    wake: Wake,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let event = match browse.recv_timeout(BRIDGE_POLL) {
            Ok(event) => event,
            Err(mdns_sd::RecvTimeoutError::Timeout) => continue,
            Err(mdns_sd::RecvTimeoutError::Disconnected) => return,
        };
        let Some(out) = bridge.translate(event) else {
            continue;
        };
        if events.send(out).is_err() {
            // The node is gone; nobody to tell.
            return;
        }
        wake();
    }
}

/// The monitor thread's state: what it needs to announce us again.
struct Monitor {
    daemon: ServiceDaemon,
    /// Our registration as it stands (its name follows renames).
    info: ServiceInfo,
    config: MdnsConfig,
    kinds: Vec<IfKind>,
    counters: Arc<Counters>,
    shared: Arc<Mutex<Shared>>,
}

impl Monitor {
    /// The daemon resolved a conflict over our instance name by moving us
    /// to `new_fullname` on the interface where it happened. We adopt that
    /// name everywhere: the old registration goes (goodbyes for it) and the
    /// service is registered again under the new name, so that no two
    /// interfaces announce us under two names and `instance_name` says the
    /// name peers see.
    fn renamed(&mut self, new_fullname: &str) {
        let Some(instance) = instance_of(new_fullname) else {
            return;
        };
        let old = lock(&self.shared).fullname.clone();
        if old.eq_ignore_ascii_case(new_fullname) {
            return;
        }
        Counters::bump(&self.counters.renamed);
        let ttl = lock(&self.shared).record_ttl;
        let Ok(info) = service_info(&self.config, instance, self.kinds.clone(), ttl) else {
            Counters::bump(&self.counters.daemon_errors);
            return;
        };
        // Commands run in order on the daemon thread: the old name's
        // goodbyes go out before the new name is probed.
        if let Ok(done) = self.daemon.unregister(&old) {
            let _ = done.recv_timeout(SHUTDOWN_WAIT);
        }
        if self.daemon.register(info.clone()).is_err() {
            Counters::bump(&self.counters.daemon_errors);
        }
        let mut shared = lock(&self.shared);
        shared.fullname = info.get_fullname().to_owned();
        shared.announced = instance.to_owned();
        self.info = info;
    }

    fn handle(&mut self, event: DaemonEvent) {
        match event {
            DaemonEvent::IpAdd(_) | DaemonEvent::IpDel(_) => {
                Counters::bump(&self.counters.address_changes);
                // Registering the same service again announces the current
                // address set on every selected interface (see module docs),
                // with the record TTL in force now.
                self.info.set_host_ttl(lock(&self.shared).record_ttl);
                if self.daemon.register(self.info.clone()).is_ok() {
                    Counters::bump(&self.counters.reannounced);
                }
            }
            // A conflict over the instance name (SRV and TXT carry it); our
            // host name is ours alone (`kith-<id>.local.`) and a conflict
            // over it changes nothing peers show.
            DaemonEvent::NameChange(change)
                if matches!(change.rr_type, RRType::SRV | RRType::TXT) =>
            {
                self.renamed(&change.new_name);
            }
            DaemonEvent::Announce(fullname, _) => {
                // The name the daemon just announced us under.
                let mut shared = lock(&self.shared);
                if fullname.eq_ignore_ascii_case(&shared.fullname)
                    && let Some(instance) = instance_of(&fullname)
                {
                    shared.announced = instance.to_owned();
                }
            }
            DaemonEvent::Error(_) => Counters::bump(&self.counters.daemon_errors),
            _ => {}
        }
    }
}

/// Re-announces on address changes, follows renames and counts daemon
/// errors.
fn run_monitor(monitor: mdns_sd::Receiver<DaemonEvent>, mut state: Monitor, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let event = match monitor.recv_timeout(BRIDGE_POLL) {
            Ok(event) => event,
            Err(mdns_sd::RecvTimeoutError::Timeout) => continue,
            Err(mdns_sd::RecvTimeoutError::Disconnected) => return,
        };
        state.handle(event);
    }
}

/// The instance label of `<instance>._kith._udp.local.`, as received (see
/// [`display_name_of`]); `None` for another service type.
fn instance_of(fullname: &str) -> Option<&str> {
    let suffix = format!(".{SERVICE_TYPE}");
    let at = fullname.len().checked_sub(suffix.len())?;
    if fullname.is_char_boundary(at) && fullname[at..].eq_ignore_ascii_case(&suffix) {
        Some(&fullname[..at])
    } else {
        None
    }
}

/// The configured interfaces' networks, read again when an address does
/// not fit them and the copy is older than [`SUBNETS_REFRESH`], so that an
/// address just added is not refused for long and a flood of bad
/// announcements does not read them for each one.
struct Subnets {
    interfaces: Vec<InterfaceSpec>,
    subnets: Vec<Subnet>,
    read_at: Option<std::time::Instant>,
}

/// See [`Subnets`].
const SUBNETS_REFRESH: Duration = Duration::from_millis(100);

impl Subnets {
    fn new(interfaces: Vec<InterfaceSpec>) -> Self {
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
struct Bridge {
    own: PeerId,
    counters: Arc<Counters>,
    /// `tracked` and `alive` live here.
    shared: Arc<Mutex<Shared>>,
    subnets: Subnets,
    /// Told not to re-query the announcements of peers proven alive;
    /// `None` in unit tests.
    daemon: Option<ServiceDaemon>,
    /// How our records' TTL follows the number of nodes tracked.
    record_ttl: RecordTtl,
}

impl Bridge {
    fn translate(&mut self, event: ServiceEvent) -> Option<DiscoveryEvent> {
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

/// The instance part of `<instance>._kith._udp.local.`, sanitised for
/// display, without the [`instance_suffix`] of `peer_id` (the peer id is
/// shown beside it anyway). `mdns-sd` joins received labels with `.`
/// without escaping anything, so the instance label is everything before
/// the service type, dots and backslashes included, taken as it is.
fn display_name_of(fullname: &str, peer_id: &PeerId) -> String {
    let instance = instance_of(fullname).unwrap_or(fullname);
    let suffix = instance_suffix(peer_id);
    let split = instance.len().checked_sub(suffix.len());
    let name = match split {
        Some(at)
            if at > 0
                && instance.is_char_boundary(at)
                && instance[at..].eq_ignore_ascii_case(&suffix) =>
        {
            &instance[..at]
        }
        _ => instance,
    };
    sanitize_display_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_name_is_the_instance_label_as_received() {
        let id = PeerId([0xab; 32]);
        assert_eq!(
            display_name_of("J. Smith._kith._udp.local.", &id),
            "J. Smith"
        );
        assert_eq!(display_name_of("a\\b._KITH._udp.local.", &id), "a\\b");
        assert_eq!(display_name_of("odd", &id), "odd");
        assert_eq!(display_name_of("._kith._udp.local.", &id), "");
        // Our suffix goes, for the id it names only.
        assert_eq!(
            display_name_of("Alice [abababab]._kith._udp.local.", &id),
            "Alice"
        );
        assert_eq!(
            display_name_of("Alice [ABABABAB]._kith._udp.local.", &id),
            "Alice"
        );
        let other = PeerId([0xcd; 32]);
        assert_eq!(
            display_name_of("Alice [abababab]._kith._udp.local.", &other),
            "Alice [abababab]"
        );
        // A name that is only the suffix stays whole.
        assert_eq!(
            display_name_of(" [abababab]._kith._udp.local.", &id),
            "[abababab]"
        );
    }

    #[test]
    fn instance_names_carry_the_peer_id_and_fit_one_label() {
        let id = PeerId([0x12; 32]);
        assert_eq!(instance_name_for(&id, "Alice"), "Alice [12121212]");
        assert_eq!(instance_name_for(&id, "  "), "kith [12121212]");
        let long = "é".repeat(40);
        let name = instance_name_for(&id, &long);
        assert!(name.len() <= MAX_INSTANCE_NAME, "{}", name.len());
        assert!(name.ends_with(" [12121212]"), "{name}");
        // Same display name, different peers: different instance names.
        assert_ne!(
            instance_name_for(&id, "Alice"),
            instance_name_for(&PeerId([0x13; 32]), "Alice")
        );
    }

    #[test]
    fn record_ttl_grows_with_the_link_between_its_bounds() {
        let rule = RecordTtl::default();
        // Small links: RFC 6762's 120 s, as upstream.
        assert_eq!(rule.secs_for(1), 120);
        assert_eq!(rule.secs_for(5), 120);
        assert_eq!(rule.secs_for(13), 120);
        // Then 9 s per node, which holds a round (one query, one answer
        // per node, every 80 % of the TTL) near 8 packets a minute...
        assert_eq!(rule.secs_for(14), 126);
        assert_eq!(rule.secs_for(19), 171);
        // ... up to the bound on how long a vanished node stays nearby.
        assert_eq!(rule.secs_for(20), 180);
        assert_eq!(rule.secs_for(1000), 180);
        assert_eq!(rule.secs_for(usize::MAX), 180);
        let fixed = RecordTtl::fixed(Duration::from_secs(3));
        assert_eq!((fixed.secs_for(1), fixed.secs_for(500)), (3, 3));
        // Never 0 (a goodbye) and never below `min`, even if misconfigured.
        assert_eq!(RecordTtl::fixed(Duration::ZERO).secs_for(4), 1);
        let inverted = RecordTtl {
            min: Duration::from_secs(60),
            max: Duration::from_secs(30),
            per_host: Duration::from_secs(1),
        };
        assert_eq!(inverted.secs_for(100), 60);
    }

    #[test]
    fn record_ttl_is_retuned_as_peers_come_and_go() {
        let rule = RecordTtl::default();
        let mut shared = Shared {
            record_ttl: rule.secs_for(1),
            ..Shared::default()
        };
        let name = |i: usize| format!("p{i}._kith._udp.local.");
        // 12 peers and us: still 120 s, nothing to change.
        for i in 0..12 {
            shared.tracked.insert(name(i), PeerId([i as u8; 32]));
            assert_eq!(shared.retune_ttl(&rule), None);
        }
        shared.tracked.insert(name(12), PeerId([12; 32]));
        assert_eq!(shared.retune_ttl(&rule), Some(126));
        assert_eq!(shared.retune_ttl(&rule), None, "told once");
        shared.tracked.remove(&name(12));
        assert_eq!(shared.retune_ttl(&rule), Some(120));
    }
}
