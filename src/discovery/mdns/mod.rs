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

mod bridge;
mod config;
mod names;
#[cfg(test)]
mod tests;
mod threads;
mod validate;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon};

use self::bridge::{Bridge, Subnets};
pub use self::config::{MdnsConfig, MdnsFamily, RecordTtl};
pub use self::names::{instance_name_for, instance_suffix, sanitize_display_name};
use self::threads::{Monitor, if_kinds, open_daemon, run_browse, run_monitor};
pub use self::validate::{Rejection, validate_public_key, validate_txt};
use super::{DiscoveryError, DiscoveryEvent, InterfaceSpec};
use crate::proto::ids::PeerId;

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

impl Active {
    /// Runs `work` on a thread called `name`, with the stop flag; joined
    /// at shutdown.
    fn spawn(
        &mut self,
        name: &str,
        work: impl FnOnce(Arc<AtomicBool>) + Send + 'static,
    ) -> Result<(), DiscoveryError> {
        let stop = self.stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || work(stop))
            .map_err(DiscoveryError::Thread)?;
        self.threads.push(thread);
        Ok(())
    }
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

impl MdnsDiscovery {
    /// Starts announcing and browsing. With no interfaces configured nothing
    /// is started and no event will ever be sent.
    pub fn start(
        config: MdnsConfig,
        events: Sender<DiscoveryEvent>,
        wake: Wake,
    ) -> Result<Self, DiscoveryError> {
        let instance_name = instance_name_for(&config.peer_id, &config.display_name);
        let mut this = Self::idle(&config, &instance_name);
        if config.interfaces.is_empty() {
            return Ok(this);
        }
        let kinds: Vec<IfKind> = config
            .interfaces
            .iter()
            .flat_map(|spec| if_kinds(spec, config.family))
            .collect();
        let (daemon, info, monitor, browse) = open_daemon(&config, &instance_name, &kinds)?;
        lock(&this.shared).fullname = info.get_fullname().to_owned();
        let bridge = Bridge {
            own: config.peer_id,
            counters: this.counters.clone(),
            shared: this.shared.clone(),
            subnets: Subnets::new(config.interfaces.clone()),
            daemon: Some(daemon.clone()),
            record_ttl: config.record_ttl,
        };
        let registration = Monitor {
            daemon: daemon.clone(),
            info,
            config,
            kinds,
            counters: this.counters.clone(),
            shared: this.shared.clone(),
        };
        let active = this.active.insert(Active {
            daemon,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        });
        let started = active
            .spawn("kith-mdns-browse", move |stop| {
                run_browse(browse, bridge, events, wake, stop)
            })
            .and_then(|()| {
                active.spawn("kith-mdns-monitor", move |stop| {
                    run_monitor(monitor, registration, stop)
                })
            });
        if let Err(e) = started {
            // Do not leave the daemon or a started thread behind an error.
            let _ = this.shutdown();
            return Err(e);
        }
        Ok(this)
    }

    /// The handle before (or without) a running daemon.
    fn idle(config: &MdnsConfig, instance_name: &str) -> Self {
        Self {
            interfaces: config.interfaces.clone(),
            counters: Arc::new(Counters::default()),
            shared: Arc::new(Mutex::new(Shared {
                announced: instance_name.to_owned(),
                record_ttl: config.record_ttl.secs_for(1),
                ..Shared::default()
            })),
            active: None,
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
