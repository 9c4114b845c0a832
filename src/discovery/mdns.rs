//! mDNS/DNS-SD announcement and browsing of `_kith._udp.local.`.
//!
//! [`MdnsDiscovery`] runs an `mdns-sd` daemon restricted to the configured
//! interfaces. It announces this node with instance name = display name and
//! TXT records `id=<64 hex peer id>`, `v=<wire version>` and (when
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
//! - [`MdnsDiscovery::shutdown`] (also run on drop) unregisters first, which
//!   makes `mdns-sd` send goodbye packets (TTL 0) so peers see
//!   [`DiscoveryEvent::PeerLost`] immediately, then stops the daemon and joins
//!   the bridge threads.

use super::{
    DiscoveryError, DiscoveryEvent, InterfaceSpec, Subnet, address_allowed, interface_subnets,
};
use crate::proto::crypto::PublicIdentity;
use crate::proto::ids::PeerId;
use crate::proto::wire;
use mdns_sd::{DaemonEvent, IfKind, ResolvedService, ServiceDaemon, ServiceEvent, ServiceInfo};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::Duration;

/// The DNS-SD service type kith announces and browses.
pub const SERVICE_TYPE: &str = "_kith._udp.local.";

/// An instance name is one DNS label: at most 63 bytes.
pub const MAX_INSTANCE_NAME: usize = 63;

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
        }
    }
}

/// The running daemon and its bridge threads.
struct Active {
    daemon: ServiceDaemon,
    fullname: String,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// mDNS discovery on the configured interfaces; see the module docs.
pub struct MdnsDiscovery {
    interfaces: Vec<InterfaceSpec>,
    instance_name: String,
    counters: Arc<Counters>,
    active: Option<Active>,
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
        let mut instance_name = sanitize_display_name(&config.display_name);
        if instance_name.is_empty() {
            // An instance name cannot be empty; fall back to something that
            // still tells peers apart.
            instance_name = format!("kith {}", own.short());
        }
        let counters = Arc::new(Counters::default());
        let mut this = Self {
            interfaces: config.interfaces.clone(),
            instance_name,
            counters: counters.clone(),
            active: None,
        };
        if config.interfaces.is_empty() {
            return Ok(this);
        }

        let kinds: Vec<IfKind> = config.interfaces.iter().map(if_kind).collect();
        let daemon = ServiceDaemon::new_with_port(config.mdns_port)?;
        let setup = || -> Result<_, DiscoveryError> {
            // Commands run in order on the daemon thread: the selection is
            // in force before the first announcement or query goes out.
            daemon.disable_interface(IfKind::All)?;
            daemon.enable_interface(kinds.clone())?;
            let secs = u32::try_from(config.ip_check_interval.as_secs().max(1)).unwrap_or(u32::MAX);
            daemon.set_ip_check_interval(secs)?;
            let info = service_info(&config, &this.instance_name, kinds.clone())?;
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
        let fullname = info.get_fullname().to_owned();

        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let spawned = std::thread::Builder::new()
            .name("kith-mdns-browse".into())
            .spawn({
                let (stop, counters) = (stop.clone(), counters.clone());
                let interfaces = config.interfaces.clone();
                move || run_browse(browse, own, interfaces, events, wake, counters, stop)
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
                let (stop, counters, daemon) = (stop.clone(), counters.clone(), daemon.clone());
                move || run_monitor(monitor, daemon, info, counters, stop)
            });
        let active = Active {
            daemon,
            fullname,
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

    /// The instance name we announce (the sanitised display name).
    pub fn instance_name(&self) -> &str {
        &self.instance_name
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
        // Unregister before stopping: this is what sends the goodbyes.
        match active.daemon.unregister(&active.fullname) {
            Ok(done) => {
                let _ = done.recv_timeout(SHUTDOWN_WAIT);
            }
            Err(e) => first_error = Some(e),
        }
        active.stop.store(true, Ordering::Relaxed);
        match active.daemon.shutdown() {
            Ok(done) => {
                let _ = done.recv_timeout(SHUTDOWN_WAIT);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
        for thread in active.threads {
            // A bridge thread only panics on a bug; shutdown still completes.
            let _ = thread.join();
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

fn if_kind(spec: &InterfaceSpec) -> IfKind {
    match spec {
        InterfaceSpec::Name(name) => IfKind::Name(name.clone()),
        InterfaceSpec::Addr(addr) => IfKind::Addr(IpAddr::V4(*addr)),
    }
}

fn service_info(
    config: &MdnsConfig,
    instance_name: &str,
    kinds: Vec<IfKind>,
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
    Ok(info)
}

/// Drains the browse receiver into the node's channel.
fn run_browse(
    browse: mdns_sd::Receiver<ServiceEvent>,
    own: PeerId,
    interfaces: Vec<InterfaceSpec>,
    events: Sender<DiscoveryEvent>,
    wake: Wake,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    let mut bridge = Bridge {
        own,
        tracked: HashMap::new(),
        counters,
        subnets: Subnets::new(interfaces),
    };
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

/// Re-announces on address changes and counts daemon errors.
fn run_monitor(
    monitor: mdns_sd::Receiver<DaemonEvent>,
    daemon: ServiceDaemon,
    info: ServiceInfo,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let event = match monitor.recv_timeout(BRIDGE_POLL) {
            Ok(event) => event,
            Err(mdns_sd::RecvTimeoutError::Timeout) => continue,
            Err(mdns_sd::RecvTimeoutError::Disconnected) => return,
        };
        match event {
            DaemonEvent::IpAdd(_) | DaemonEvent::IpDel(_) => {
                Counters::bump(&counters.address_changes);
                // Registering the same service again announces the current
                // address set on every selected interface (see module docs).
                if daemon.register(info.clone()).is_ok() {
                    Counters::bump(&counters.reannounced);
                }
            }
            DaemonEvent::Error(_) => Counters::bump(&counters.daemon_errors),
            _ => {}
        }
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

/// The pure part of the browse bridge: mDNS events in, discovery events out.
struct Bridge {
    own: PeerId,
    /// Lower-cased fullname → the peer id it announced.
    tracked: HashMap<String, PeerId>,
    counters: Arc<Counters>,
    subnets: Subnets,
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
                let peer_id = self.tracked.remove(&fullname.to_lowercase())?;
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
        let key = service.fullname.to_lowercase();
        if !self.tracked.contains_key(&key) && self.tracked.len() >= MAX_TRACKED {
            return Err(Rejection::TooMany);
        }
        // A name that now carries a different id is a different peer; the
        // old one's loss is not reported separately because the new
        // sighting says nothing about whether the old peer is still there.
        self.tracked.insert(key, peer_id);
        Ok(Some(DiscoveryEvent::PeerFound {
            peer_id,
            public_key,
            addresses,
            port: service.port,
            display_name: display_name_of(&service.fullname),
        }))
    }
}

/// The instance part of `<instance>._kith._udp.local.`, sanitised for
/// display. `mdns-sd` joins received labels with `.` without escaping
/// anything, so the instance label is everything before the service type,
/// dots and backslashes included, taken as it is.
fn display_name_of(fullname: &str) -> String {
    let suffix = format!(".{SERVICE_TYPE}");
    let split = fullname.len().checked_sub(suffix.len());
    let instance = match split {
        Some(at)
            if fullname.is_char_boundary(at) && fullname[at..].eq_ignore_ascii_case(&suffix) =>
        {
            &fullname[..at]
        }
        _ => fullname,
    };
    sanitize_display_name(instance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_name_is_the_instance_label_as_received() {
        assert_eq!(display_name_of("J. Smith._kith._udp.local."), "J. Smith");
        assert_eq!(display_name_of("a\\b._KITH._udp.local."), "a\\b");
        assert_eq!(display_name_of("odd"), "odd");
        assert_eq!(display_name_of("._kith._udp.local."), "");
    }
}
