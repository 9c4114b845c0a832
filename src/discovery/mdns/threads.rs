//! The bridge threads: browsing into the node's channel, and the monitor
//! that re-announces us on address changes and renames.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use mdns_sd::{DaemonEvent, IfKind, IfPredicate, RRType, ServiceDaemon, ServiceEvent, ServiceInfo};

use super::bridge::Bridge;
use super::names::instance_of;
use super::{
    BRIDGE_POLL, Counters, MdnsConfig, MdnsFamily, SERVICE_TYPE, SHUTDOWN_WAIT, Shared, TXT_ID,
    TXT_PUBLIC_KEY, TXT_VERSION, Wake, lock,
};
use crate::discovery::{DiscoveryError, DiscoveryEvent, InterfaceSpec};
use crate::proto::ids::PeerId;
use crate::proto::wire;

/// What `mdns-sd` is told to use for one configured interface. A name
/// selects every address of the interface in `mdns-sd`, IPv6 included;
/// unless IPv6 is asked for, a predicate keeps its IPv4 addresses only.
pub(super) fn if_kinds(spec: &InterfaceSpec, family: MdnsFamily) -> Vec<IfKind> {
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

pub(super) fn service_info(
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

/// A service daemon on `config`'s port with our registration, browse
/// and monitor set up on `kinds` of interfaces; none left running on an
/// error.
pub(super) fn open_daemon(
    config: &MdnsConfig,
    instance_name: &str,
    kinds: &[IfKind],
) -> Result<
    (
        ServiceDaemon,
        ServiceInfo,
        mdns_sd::Receiver<DaemonEvent>,
        mdns_sd::Receiver<ServiceEvent>,
    ),
    DiscoveryError,
> {
    let daemon = ServiceDaemon::new_with_port(config.mdns_port)?;
    match configure(&daemon, config, instance_name, kinds) {
        Ok((info, monitor, browse)) => Ok((daemon, info, monitor, browse)),
        Err(e) => {
            let _ = daemon.shutdown();
            Err(e)
        }
    }
}

/// Tells a new `mdns-sd` daemon which interfaces to use, then registers
/// us and starts browsing: our registration, the monitor receiver and the
/// browse receiver.
fn configure(
    daemon: &ServiceDaemon,
    config: &MdnsConfig,
    instance_name: &str,
    kinds: &[IfKind],
) -> Result<
    (
        ServiceInfo,
        mdns_sd::Receiver<DaemonEvent>,
        mdns_sd::Receiver<ServiceEvent>,
    ),
    DiscoveryError,
> {
    // Commands run in order on the daemon thread: the selection is in
    // force before the first announcement or query goes out.
    daemon.disable_interface(IfKind::All)?;
    daemon.enable_interface(kinds.to_vec())?;
    let secs = u32::try_from(config.ip_check_interval.as_secs().max(1)).unwrap_or(u32::MAX);
    daemon.set_ip_check_interval(secs)?;
    let ttl = config.record_ttl.secs_for(1);
    let info = service_info(config, instance_name, kinds.to_vec(), ttl)?;
    let monitor = daemon.monitor()?;
    daemon.register(info.clone())?;
    let browse = daemon.browse(SERVICE_TYPE)?;
    Ok((info, monitor, browse))
}

/// Drains the browse receiver into the node's channel.
pub(super) fn run_browse(
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
pub(super) struct Monitor {
    pub(super) daemon: ServiceDaemon,
    /// Our registration as it stands (its name follows renames).
    pub(super) info: ServiceInfo,
    pub(super) config: MdnsConfig,
    pub(super) kinds: Vec<IfKind>,
    pub(super) counters: Arc<Counters>,
    pub(super) shared: Arc<Mutex<Shared>>,
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
pub(super) fn run_monitor(
    monitor: mdns_sd::Receiver<DaemonEvent>,
    mut state: Monitor,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let event = match monitor.recv_timeout(BRIDGE_POLL) {
            Ok(event) => event,
            Err(mdns_sd::RecvTimeoutError::Timeout) => continue,
            Err(mdns_sd::RecvTimeoutError::Disconnected) => return,
        };
        state.handle(event);
    }
}
