//! The network IO shell: one `mio` event loop on a dedicated thread that
//! joins a sans-IO [`Driver`] (the protocol core) to real UDP sockets.
//!
//! What the loop owns:
//! - a unicast UDP socket (non-blocking, enlarged kernel buffers), which also
//!   *sends* every group datagram, so that a group datagram's source address
//!   is the sender's unicast address and receivers can answer it directly;
//! - a multicast UDP socket bound to the group port (`SO_REUSEADDR` +
//!   `SO_REUSEPORT`, so several nodes on one host can all listen), joined to
//!   the group on every configured interface;
//! - a [`mio::Waker`] through which [`CommandSender::send`] wakes an idle loop.
//!
//! Run-loop contract (STYLE.md invariant 1): feed the driver one input
//! (datagram, command or expired timer), drain [`Driver::poll_transmit`]
//! until it yields `None`, and when nothing is left to do, sleep until the
//! earliest of the driver's [`Driver::poll_timeout`], socket readiness and
//! the waker.
//!
//! Guarantees:
//! - No datagram larger than [`MAX_DATAGRAM`] reaches the driver: it is
//!   received into a buffer one byte larger, detected, dropped and counted.
//! - No network input or send failure panics or stops the loop: send errors
//!   are counted, a send that would block stays queued (bounded; the oldest
//!   entries are kept and new ones are dropped and counted when it is full)
//!   until the socket is writable again.
//! - Group datagrams go out only on the interfaces listed in
//!   [`NetConfig::multicast_interfaces`] (via `IP_MULTICAST_IF`, TTL 1). With
//!   an empty list multicast is disabled: no multicast socket is opened, and
//!   group transmits are dropped and counted in
//!   [`NetStatsSnapshot::multicast_disabled_drops`]. Unicast datagrams follow
//!   the routing table from the configured bind address.
//! - A socket that keeps delivering is drained in bounded batches, so a
//!   flood on one socket cannot starve timers, commands or the other socket;
//!   the loop comes back to it without sleeping until it reports `WouldBlock`.
//! - With multicast loopback on (needed for several nodes on one host) a
//!   node hears its own group datagrams; the loop drops those echoes (source
//!   port equal to our unicast port and source address one of ours) before
//!   they reach the driver, and counts them.
//!
//! What the loop does not do: parse, authenticate or decrypt anything. That
//! is the driver's job; the loop only moves bytes and counts what it drops.

mod event_loop;
mod socket;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

pub use crate::proto::wire::MAX_DATAGRAM;
pub use event_loop::{CommandSender, NetHandle, Shutdown, spawn};

/// Default unicast port. Unassigned by IANA; chosen for "kith" (47474).
pub const DEFAULT_UNICAST_PORT: u16 = 47474;
/// Default multicast group: in the IPv4 organisation-local scope
/// (239.255.0.0/16, RFC 2365), so routers at a site boundary never forward
/// it, and away from the well-known SSDP (239.255.255.250) address.
pub const DEFAULT_MULTICAST_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 74, 75);
/// Default multicast port: next to the unicast port, but separate so that
/// the unicast socket needs no port sharing.
pub const DEFAULT_MULTICAST_PORT: u16 = 47475;
/// Default kernel buffer size requested for each socket (4 MiB). The kernel
/// may grant less (`net.core.rmem_max` / `wmem_max`); that is not an error.
pub const DEFAULT_SOCKET_BUFFER_BYTES: usize = 4 << 20;
/// Default number of datagrams held while the send buffer is full.
pub const DEFAULT_SEND_QUEUE_CAPACITY: usize = 4096;

/// How the loop binds its sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// Address of the unicast socket. Default `0.0.0.0:47474`; tests use
    /// `127.0.0.1:0` (any free port). Must be IPv4 when multicast is enabled.
    pub unicast_bind: SocketAddr,
    /// Multicast group and port. Default `239.255.74.75:47475`.
    pub multicast_group: SocketAddrV4,
    /// IPv4 addresses of the interfaces to join the group on and send group
    /// datagrams from. Default empty: multicast disabled, so nothing is ever
    /// sent on an interface the user has not chosen.
    pub multicast_interfaces: Vec<Ipv4Addr>,
    /// Whether our own group datagrams are looped back to local listeners
    /// (`IP_MULTICAST_LOOP`). Default on, so several nodes on one host (tests,
    /// a desktop and a daemon) hear each other.
    pub multicast_loop: bool,
    /// Requested `SO_RCVBUF` and `SO_SNDBUF` (best effort). Default 4 MiB.
    pub socket_buffer_bytes: usize,
    /// Datagrams held while the send buffer is full before new ones are
    /// dropped and counted. Default 4096.
    pub send_queue_capacity: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            unicast_bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_UNICAST_PORT)),
            multicast_group: SocketAddrV4::new(DEFAULT_MULTICAST_GROUP, DEFAULT_MULTICAST_PORT),
            multicast_interfaces: Vec::new(),
            multicast_loop: true,
            socket_buffer_bytes: DEFAULT_SOCKET_BUFFER_BYTES,
            send_queue_capacity: DEFAULT_SEND_QUEUE_CAPACITY,
        }
    }
}

impl NetConfig {
    /// A unicast-only config on `127.0.0.1` with a free port, for tests and
    /// benches on one host.
    pub fn loopback() -> Self {
        Self {
            unicast_bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            ..Self::default()
        }
    }

    /// Whether group datagrams are sent and received at all.
    pub fn multicast_enabled(&self) -> bool {
        !self.multicast_interfaces.is_empty()
    }
}

/// Which socket a datagram arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// Addressed to this node's unicast socket.
    Unicast,
    /// Addressed to the multicast group.
    Multicast,
}

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    /// One peer's unicast address.
    Addr(SocketAddr),
    /// The configured multicast group, once per configured interface.
    Group,
}

/// A datagram the driver wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: Destination,
    /// At most [`MAX_DATAGRAM`] bytes; larger ones are dropped and counted.
    pub bytes: Vec<u8>,
}

/// What the loop drives: the sans-IO protocol core.
///
/// The loop calls exactly one `handle_*` per input, then drains
/// [`poll_transmit`](Driver::poll_transmit) until it returns `None`, and
/// asks [`poll_timeout`](Driver::poll_timeout) before it sleeps. `now` is
/// read from the clock just before each call. Events for the application
/// leave through whatever the driver owns (typically a channel sender); the
/// loop knows nothing about them.
pub trait Driver: Send + 'static {
    /// What the application sends in through [`CommandSender::send`].
    type Command: Send + 'static;

    /// A datagram of at most [`MAX_DATAGRAM`] bytes arrived. It is untrusted.
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, via: Via, bytes: &[u8]);
    /// The instant last returned by `poll_timeout` has passed.
    fn handle_timeout(&mut self, now: Instant);
    /// The application sent a command.
    fn handle_command(&mut self, now: Instant, command: Self::Command);
    /// The next datagram to send, if any.
    fn poll_transmit(&mut self) -> Option<Transmit>;
    /// When the loop must call `handle_timeout` next (`None`: no timer).
    fn poll_timeout(&mut self) -> Option<Instant>;
    /// A burst of datagrams was handed over (the socket had no more, or a
    /// batch ended), or a batch of commands was: the moment to commit work
    /// that is cheaper done once per burst, such as a store transaction.
    /// Datagrams the burst produced have been taken already. Default:
    /// nothing.
    fn flush(&mut self, _now: Instant) {}
    /// The datagrams the driver produced so far have been handed to the
    /// socket: the moment for work that should not delay them, such as
    /// telling the application what happened (a receiver's
    /// acknowledgement leaves before the application hears of the
    /// message). Default: nothing.
    fn sent(&mut self, _now: Instant) {}
    /// The loop was asked to stop: the moment for goodbyes (datagrams
    /// queued now are still sent). Default: nothing.
    fn stopping(&mut self, _now: Instant) {}
}

/// Why the network shell could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A socket or poll operation failed; `action` says which one.
    #[error("could not {action}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },
    /// The configuration cannot work, e.g. multicast with an IPv6 bind address.
    #[error("invalid network configuration: {0}")]
    Config(String),
    /// The loop is no longer running, so the command was not delivered.
    #[error("the network loop has stopped")]
    Stopped,
    /// The loop thread panicked (a bug); the driver is lost.
    #[error("the network loop thread panicked")]
    Panicked,
}

impl NetError {
    pub(crate) fn io(action: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            action: action.into(),
            source,
        }
    }
}

/// Live counters, shared between the loop thread (writer) and any number of
/// readers. Counts only go up; read a consistent-enough copy with
/// [`NetStats::snapshot`].
#[derive(Debug, Default)]
pub struct NetStats {
    received: AtomicU64,
    received_multicast: AtomicU64,
    oversize_dropped: AtomicU64,
    own_echo_dropped: AtomicU64,
    recv_errors: AtomicU64,
    sent: AtomicU64,
    send_errors: AtomicU64,
    send_would_block: AtomicU64,
    queue_drops: AtomicU64,
    oversize_transmit_dropped: AtomicU64,
    multicast_disabled_drops: AtomicU64,
    multicast_enabled: AtomicBool,
}

/// A copy of [`NetStats`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetStatsSnapshot {
    /// Datagrams handed to the driver (unicast and multicast).
    pub received: u64,
    /// Of `received`, those that arrived through the multicast group.
    pub received_multicast: u64,
    /// Datagrams larger than [`MAX_DATAGRAM`], dropped before the driver.
    pub oversize_dropped: u64,
    /// Our own group datagrams looped back to us, dropped before the driver.
    pub own_echo_dropped: u64,
    /// Receive calls that failed with something other than `WouldBlock`.
    pub recv_errors: u64,
    /// Datagrams the kernel accepted (a group datagram counts once per
    /// interface).
    pub sent: u64,
    /// Sends that failed for good (e.g. `ENETUNREACH`); the datagram is gone.
    pub send_errors: u64,
    /// Sends that hit a full send buffer; the datagram was queued.
    pub send_would_block: u64,
    /// Datagrams dropped because the send queue was full.
    pub queue_drops: u64,
    /// Transmits from the driver larger than [`MAX_DATAGRAM`], never sent.
    pub oversize_transmit_dropped: u64,
    /// Group transmits dropped because multicast is disabled.
    pub multicast_disabled_drops: u64,
    /// Whether the multicast socket is open (at least one interface listed).
    pub multicast_enabled: bool,
}

impl NetStats {
    /// Reads every counter. Each one is exact; they are not read atomically
    /// together.
    pub fn snapshot(&self) -> NetStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NetStatsSnapshot {
            received: get(&self.received),
            received_multicast: get(&self.received_multicast),
            oversize_dropped: get(&self.oversize_dropped),
            own_echo_dropped: get(&self.own_echo_dropped),
            recv_errors: get(&self.recv_errors),
            sent: get(&self.sent),
            send_errors: get(&self.send_errors),
            send_would_block: get(&self.send_would_block),
            queue_drops: get(&self.queue_drops),
            oversize_transmit_dropped: get(&self.oversize_transmit_dropped),
            multicast_disabled_drops: get(&self.multicast_disabled_drops),
            multicast_enabled: self.multicast_enabled.load(Ordering::Relaxed),
        }
    }
}

/// Increments a counter. Relaxed: counters order nothing else.
fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Shared between the loop and its handles.
pub(crate) type SharedStats = Arc<NetStats>;
