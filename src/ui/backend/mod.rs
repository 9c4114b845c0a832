//! Between the window and the node: [`Request`]s go out through a
//! [`Backend`], [`Update`]s come back on a channel, and the window is woken
//! ([`Waker`], `ctx.request_repaint()`) when one arrives.
//!
//! [`DaemonBackend`] runs the node in-process ([`daemon::start`], control
//! socket included, so `kith send/listen/peers` work against a running
//! app). Its blocking calls run on a worker thread that owns the
//! [`DaemonHandle`]; another thread forwards the handle's events. Nothing
//! here ever runs in the frame callback. [`FakeBackend`] answers like a
//! node without one, for tests.

use super::settings::{self, AppSettings, NodeChoices};
use super::state::{
    FileId, FileRequest, FileUpdate, HISTORY_PAGE, MessageInfo, MuteUntil, NetworkRequest,
    NetworkUpdate, PersonInfo, Relation, Request, RoomInfo, SearchHit, SettingsRequest,
    SettingsUpdate, Target, UNREADABLE, Update,
};
use crate::account::{Account, KdfParams, Mute};
use crate::daemon::{self, DaemonConfig, DaemonHandle, Event, PeerInfo, RoomSummary};
use crate::proto::ids::{MessageId, PeerId, RoomId};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// The real node and the fake one, each in its own file.
mod fake;
pub mod files;
pub mod network;
mod node;
pub use fake::{FakeBackend, FakeLauncher};
pub use node::DaemonBackend;

/// Wakes the window (egui's `request_repaint`); called after every update.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Where requests go. `submit` never blocks.
pub trait Backend: Send {
    fn submit(&self, request: Request);
}

/// What an unlocked account hands the window.
pub struct Connection {
    pub backend: Box<dyn Backend>,
    pub updates: Receiver<Update>,
    pub me: Me,
    /// How the node runs, for the Settings dialog.
    pub node: NodeInfo,
}

/// How the node was started (shown in the Settings dialog).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// The address it listens on.
    pub listen: Option<std::net::SocketAddr>,
    /// The interfaces this run was given (mDNS uses them unless
    /// `mdns_off`).
    pub interfaces: Vec<String>,
    /// mDNS is off in this run (`--no-mdns`): no interface is used to
    /// find anyone, whatever is named.
    pub mdns_off: bool,
    /// They came from the command line (`--interface`), not the saved choice.
    pub from_command_line: bool,
    /// The choices saved in the data directory.
    pub saved: AppSettings,
    /// The registry, keep-alive and room multicast in use.
    pub choices: NodeChoices,
    /// What the user should know about how the node started (a saved
    /// registry that could not be used, ...): shown as notes.
    pub notes: Vec<String>,
}

/// Who we are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Me {
    pub peer: PeerId,
    /// The public key, hex: what others give `--peer` or paste to verify.
    pub public_key: String,
    pub name: String,
}

/// What the unlock screen collected.
#[derive(Clone, Debug)]
pub struct LaunchArgs {
    pub data_dir: PathBuf,
    pub passphrase: String,
    /// Create the account first.
    pub creating: bool,
    /// The display name chosen at creation (empty when unlocking).
    pub name: String,
    /// The LAN interfaces picked at creation (saved for later launches);
    /// `None` when unlocking.
    pub interfaces: Option<Vec<String>>,
}

/// Opens an account and starts whatever answers requests. Runs on a worker
/// thread (Argon2id takes a while); the error is a sentence for the user.
pub trait Launcher: Send + Sync {
    fn launch(&self, args: LaunchArgs, waker: Waker) -> Result<Connection, String>;
}

/// The file in the data directory holding the display name chosen at
/// creation (the name announced by mDNS; not secret).
pub const NAME_FILE: &str = "display-name";
/// Longest display name kept, in characters.
pub const MAX_NAME_CHARS: usize = 40;

/// Starts the real node in-process.
pub struct NodeLauncher {
    /// Used only when creating an account.
    pub kdf: KdfParams,
    /// Sockets, discovery and control socket; the display name is filled in.
    pub config: DaemonConfig,
    /// Where the mDNS interfaces come from.
    pub interfaces: InterfaceSource,
    /// Whether the registry, keep-alive and room multicast saved in
    /// Settings apply: `Some` with what the command line gave (which
    /// wins); `None`: the config is used as it is (tests).
    pub saved_choices: Option<Given>,
}

/// Which node choices the command line gave (`kith app --registry`,
/// `--keepalive-secs`, `--multicast-interface`): they win over Settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Given {
    pub registry: bool,
    pub keepalive: bool,
    pub room_multicast: bool,
}

/// Where the node's mDNS interfaces come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterfaceSource {
    /// Exactly those of the config (`--interface` on the command line;
    /// tests): the saved choice is not used.
    Configured,
    /// The choice saved in the data directory (picked at first run or in
    /// Settings); never chosen: the default route's interface.
    Saved,
}

impl Launcher for NodeLauncher {
    fn launch(&self, args: LaunchArgs, waker: Waker) -> Result<Connection, String> {
        if args.creating {
            // Dropped at once: `daemon::start` opens it again as its own.
            drop(
                Account::create(&args.data_dir, &args.passphrase, self.kdf)
                    .map_err(|e| e.to_string())?,
            );
            let name: String = args.name.trim().chars().take(MAX_NAME_CHARS).collect();
            if !name.is_empty() {
                std::fs::write(args.data_dir.join(NAME_FILE), &name)
                    .map_err(|e| format!("cannot save your name: {e}"))?;
            }
            if let Some(interfaces) = &args.interfaces {
                let settings = AppSettings {
                    interfaces: Some(interfaces.clone()),
                    ..AppSettings::load(&args.data_dir)
                };
                settings
                    .save(&args.data_dir)
                    .map_err(|e| format!("cannot save your choice of interfaces: {e}"))?;
            }
        }
        let name = read_name(&args.data_dir);
        let saved = AppSettings::load(&args.data_dir);
        let mut config = self.config.clone();
        if config.discovery.display_name.is_empty() {
            config.discovery.display_name = name.clone();
        }
        if self.interfaces == InterfaceSource::Saved {
            config.discovery.interfaces = saved
                .interfaces_or(settings::default_interface())
                .iter()
                .filter_map(|name| name.parse().ok())
                .collect();
        }
        let mut notes = Vec::new();
        if let Some(given) = self.saved_choices {
            apply_saved_choices(&mut config, &saved, given, &mut notes);
        }
        let given = self.saved_choices.unwrap_or(Given {
            registry: true,
            keepalive: true,
            room_multicast: true,
        });
        let choices = NodeChoices {
            registry: config.discovery.registry.map(|r| r.addr.to_string()),
            registry_given: given.registry,
            keepalive_secs: config.discovery.presence.keepalive_interval.as_secs(),
            keepalive_given: given.keepalive,
            room_multicast: config.net.multicast_interfaces.clone(),
            room_multicast_given: given.room_multicast,
        };
        // Listed with `--no-mdns` too (`mdns_off` says none is used), so
        // Settings shows the choice as it stands, not as an empty one.
        let mdns_off = !config.discovery.mdns;
        let interfaces = config
            .discovery
            .interfaces
            .iter()
            .map(ToString::to_string)
            .collect();
        let handle = daemon::start(&args.data_dir, &args.passphrase, config).map_err(|e| {
            let text = e.to_string();
            if text.contains("control socket")
                || text.contains("in use")
                || text.contains("already open")
            {
                format!(
                    "{text}. Is a kith daemon (or another kith window) already running with \
                     this data directory? Stop it (`kith stop`) and try again."
                )
            } else {
                text
            }
        })?;
        // The name chosen at creation becomes the signed profile that
        // contacts and room members receive (mDNS only hints at it).
        if args.creating
            && !name.is_empty()
            && let Err(error) = handle.set_profile(&name)
        {
            log::warn!("your name was not signed into your profile: {error}");
        }
        // An account made with `kith init --name` has no name file: its
        // signed profile names it.
        let name = if name.is_empty() {
            handle.own_name().unwrap_or_default().to_owned()
        } else {
            name
        };
        let me = Me {
            peer: handle.peer_id(),
            public_key: PeerId(handle.public().to_bytes()).to_hex(),
            name,
        };
        let node = NodeInfo {
            listen: Some(handle.local_addr()),
            interfaces,
            from_command_line: self.interfaces == InterfaceSource::Configured,
            mdns_off,
            saved,
            choices,
            notes,
        };
        let (backend, updates) = DaemonBackend::spawn(handle, waker).map_err(|e| e.to_string())?;
        Ok(Connection {
            backend: Box::new(backend),
            updates,
            me,
            node,
        })
    }
}

/// Builds the node's registry, keep-alive and room multicast from what
/// Settings saved, except those the command line gave; what cannot be
/// used goes to `notes` as a sentence.
pub fn apply_saved_choices(
    config: &mut DaemonConfig,
    saved: &AppSettings,
    given: Given,
    notes: &mut Vec<String>,
) {
    if !given.registry
        && let Some(registry) = &saved.registry
    {
        match resolve_registry(
            &registry.addr,
            &registry.key,
            config.net.unicast_bind.is_ipv4(),
        ) {
            Ok(target) => config.discovery.registry = Some(target),
            Err(error) => notes.push(format!(
                "The registry saved in Settings is not used: {error}"
            )),
        }
    }
    // Peers added by address in the Network panel (the node forgets
    // addresses when it stops); `--peer` wins for the same key.
    for peer in &saved.peers {
        if let Ok(peer) = peer.parse::<daemon::PeerAddr>()
            && !config.peers.iter().any(|p| p.public == peer.public)
        {
            config.peers.push(peer);
        }
    }
    if !given.keepalive
        && let Some(secs) = saved.keepalive_secs
    {
        let presence = &mut config.discovery.presence;
        presence.keepalive_interval = Duration::from_secs(secs);
        presence.max_keepalive_interval = presence
            .max_keepalive_interval
            .max(presence.keepalive_interval);
    }
    if !given.room_multicast && saved.room_multicast {
        let machine = settings::list_interfaces();
        let addrs: Vec<std::net::Ipv4Addr> = config
            .discovery
            .interfaces
            .iter()
            .flat_map(|spec| match spec {
                crate::discovery::InterfaceSpec::Addr(addr) => vec![*addr],
                crate::discovery::InterfaceSpec::Name(name) => machine
                    .iter()
                    .filter(|i| i.name == *name && i.multicast)
                    .flat_map(|i| i.addrs.iter())
                    .filter_map(|a| match a {
                        std::net::IpAddr::V4(v4) => Some(*v4),
                        std::net::IpAddr::V6(_) => None,
                    })
                    .take(1)
                    .collect(),
            })
            .collect();
        if addrs.is_empty() || !config.net.unicast_bind.is_ipv4() {
            notes.push(
                "Multicast for rooms is on in Settings, but no interface in use has an IPv4 \
                 address that can multicast: rooms go to each member instead."
                    .to_owned(),
            );
        } else {
            config.net.multicast_interfaces = addrs;
        }
    }
}

/// A registry's `host:port` (resolved: this may ask DNS) and public key as
/// the node takes them; `ipv4`: the family of our socket.
pub fn resolve_registry(
    addr: &str,
    key: &str,
    ipv4: bool,
) -> Result<crate::daemon::address_book::RegistryTarget, String> {
    use std::net::ToSocketAddrs;
    let key = settings::public_key_from_hex(key, "A registry key")?;
    let resolved = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr:?}: {e}"))?
        .find(|a| a.is_ipv4() == ipv4)
        .ok_or_else(|| format!("{addr:?} has no address of this node's family"))?;
    Ok(crate::daemon::address_book::RegistryTarget {
        addr: resolved,
        public_key: key.to_bytes(),
    })
}

/// The display name saved at creation, or empty.
pub fn read_name(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join(NAME_FILE))
        .map(|name| name.trim().chars().take(MAX_NAME_CHARS).collect())
        .unwrap_or_default()
}

/// The wall clock in milliseconds.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Clone)]
struct Outbox {
    tx: Sender<Update>,
    waker: Waker,
}

impl Outbox {
    fn send(&self, update: Update) {
        // The window may be gone; then nobody needs the update.
        let _ = self.tx.send(update);
        (self.waker)();
    }
}
impl<T: Launcher + ?Sized> Launcher for Arc<T> {
    fn launch(&self, args: LaunchArgs, waker: Waker) -> Result<Connection, String> {
        (**self).launch(args, waker)
    }
}

#[cfg(test)]
mod tests;
