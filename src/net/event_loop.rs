//! The loop thread and the handles that talk to it.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::SockRef;

use super::socket::{self, is_own_echo};
use super::{
    Destination, Driver, MAX_DATAGRAM, NetConfig, NetError, NetStats, NetStatsSnapshot,
    SharedStats, Transmit, Via, bump,
};

const UNICAST: Token = Token(0);
const MULTICAST: Token = Token(1);
const WAKER: Token = Token(2);

/// Datagrams read from one socket, or commands taken from the channel, in
/// one turn of the loop. Bounded so that a flood on one input cannot starve
/// the others or the timers; whatever is left is picked up next turn
/// without sleeping.
const BATCH: usize = 256;

/// What the handles send to the loop. One channel for commands and the stop
/// request keeps them in order: every command sent before `shutdown` is
/// handled before the loop stops.
enum Input<C> {
    Command(C),
    Stop,
}

/// Sends commands to the loop and wakes it. Cheap to clone; any thread may
/// hold one (the UI, a CLI server, a timer thread).
pub struct CommandSender<C> {
    tx: mpsc::Sender<Input<C>>,
    waker: Arc<Waker>,
}

impl<C> Clone for CommandSender<C> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            waker: Arc::clone(&self.waker),
        }
    }
}

impl<C> CommandSender<C> {
    /// Queues `command` for the driver and wakes the loop. Fails only when
    /// the loop has stopped.
    pub fn send(&self, command: C) -> Result<(), NetError> {
        self.tx
            .send(Input::Command(command))
            .map_err(|_| NetError::Stopped)?;
        self.waker
            .wake()
            .map_err(|e| NetError::io("wake the network loop", e))
    }

    fn stop(&self) {
        // Both fail only if the loop is already gone, which is what we want.
        let _ = self.tx.send(Input::Stop);
        let _ = self.waker.wake();
    }
}

/// How the loop ended: the driver comes back either way, so its owner can
/// flush it (e.g. commit pending state to the store).
pub struct Shutdown<D> {
    pub driver: D,
    /// Why the loop stopped on its own, if it did (a failed `poll`); `None`
    /// after a requested shutdown.
    pub error: Option<NetError>,
}

/// The application's side of a running loop. Dropping it stops the loop
/// (without waiting); call [`NetHandle::shutdown`] to wait and get the
/// driver back.
pub struct NetHandle<D: Driver> {
    sender: CommandSender<D::Command>,
    stats: SharedStats,
    local_addr: SocketAddr,
    multicast_group: Option<SocketAddr>,
    thread: Option<JoinHandle<Shutdown<D>>>,
}

impl<D: Driver> NetHandle<D> {
    /// Sends a command to the driver and wakes the loop.
    pub fn send(&self, command: D::Command) -> Result<(), NetError> {
        self.sender.send(command)
    }

    /// CPU time the loop thread has used so far (`None` once it ended or
    /// where the platform cannot tell): what one node costs, apart from
    /// whatever else runs in the process.
    pub fn thread_cpu_time(&self) -> Option<Duration> {
        use std::os::unix::thread::JoinHandleExt;
        let thread = self.thread.as_ref()?;
        if thread.is_finished() {
            return None;
        }
        let mut clock: libc::clockid_t = 0;
        let mut time = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: the thread has not been joined (we hold its handle), so
        // its pthread_t is valid; both calls only write the out-parameters.
        let ok = unsafe {
            libc::pthread_getcpuclockid(thread.as_pthread_t(), &mut clock) == 0
                && libc::clock_gettime(clock, &mut time) == 0
        };
        ok.then(|| Duration::new(time.tv_sec as u64, time.tv_nsec as u32))
    }

    /// A sender other threads can keep.
    pub fn sender(&self) -> CommandSender<D::Command> {
        self.sender.clone()
    }

    /// Current counters.
    pub fn stats(&self) -> NetStatsSnapshot {
        self.stats.snapshot()
    }

    /// The live counters, to read without the handle.
    pub fn shared_stats(&self) -> Arc<NetStats> {
        Arc::clone(&self.stats)
    }

    /// The unicast socket's address (with the port the kernel chose for
    /// port 0): what peers send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The group address, or `None` when multicast is disabled.
    pub fn multicast_group(&self) -> Option<SocketAddr> {
        self.multicast_group
    }

    /// Whether the loop thread has ended (after a shutdown or a fatal error).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Handles every command sent so far, stops the loop, waits for the
    /// thread and returns the driver.
    pub fn shutdown(mut self) -> Result<Shutdown<D>, NetError> {
        self.sender.stop();
        let thread = self
            .thread
            .take()
            .expect("the thread is taken only here, and shutdown consumes the handle");
        thread.join().map_err(|_| NetError::Panicked)
    }
}

impl<D: Driver> Drop for NetHandle<D> {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.sender.stop();
        }
    }
}

/// Opens the sockets, then starts the loop on a thread named `kith-net`.
///
/// Socket errors (a port in use, a bad interface) are returned here, before
/// any thread starts.
pub fn spawn<D: Driver>(config: NetConfig, driver: D) -> Result<NetHandle<D>, NetError> {
    let unicast = socket::unicast(&config)?;
    let multicast = socket::multicast(&config)?;
    let local_addr = unicast
        .local_addr()
        .map_err(|e| NetError::io("read the unicast socket's address", e))?;
    let poll = Poll::new().map_err(|e| NetError::io("create the event poller", e))?;
    let waker = Arc::new(
        Waker::new(poll.registry(), WAKER).map_err(|e| NetError::io("create the waker", e))?,
    );
    let mut unicast = unicast;
    poll.registry()
        .register(&mut unicast, UNICAST, Interest::READABLE)
        .map_err(|e| NetError::io("register the unicast socket", e))?;
    let mut multicast = multicast;
    if let Some(socket) = multicast.as_mut() {
        poll.registry()
            .register(socket, MULTICAST, Interest::READABLE)
            .map_err(|e| NetError::io("register the multicast socket", e))?;
    }

    let stats = SharedStats::default();
    stats
        .multicast_enabled
        .store(multicast.is_some(), std::sync::atomic::Ordering::Relaxed);
    let (tx, rx) = mpsc::channel();
    let multicast_group = multicast
        .is_some()
        .then_some(SocketAddr::V4(config.multicast_group));

    let event_loop = EventLoop {
        driver,
        poll,
        multicast,
        commands: rx,
        local_addr,
        recv_buf: vec![0; MAX_DATAGRAM + 1].into_boxed_slice(),
        unicast_pending: false,
        multicast_pending: false,
        commands_pending: false,
        out: Outbox {
            unicast,
            group: SocketAddr::V4(config.multicast_group),
            interfaces: config.multicast_interfaces.clone(),
            current_interface: config.multicast_interfaces.first().copied(),
            queue: VecDeque::new(),
            queue_capacity: config.send_queue_capacity,
            wants_writable: false,
            fatal: None,
            stats: Arc::clone(&stats),
        },
        _waker: Arc::clone(&waker),
    };
    let thread = thread::Builder::new()
        .name("kith-net".into())
        .spawn(move || event_loop.run())
        .map_err(|e| NetError::io("start the network thread", e))?;

    Ok(NetHandle {
        sender: CommandSender { tx, waker },
        stats,
        local_addr,
        multicast_group,
        thread: Some(thread),
    })
}

/// A datagram waiting for room in the send buffer.
struct Queued {
    to: SocketAddr,
    /// For group datagrams, the interface to send on.
    interface: Option<Ipv4Addr>,
    bytes: Vec<u8>,
}

/// The sending half: the unicast socket (which sends group datagrams too)
/// and the queue for sends that would block.
struct Outbox {
    unicast: UdpSocket,
    group: SocketAddr,
    interfaces: Vec<Ipv4Addr>,
    /// What `IP_MULTICAST_IF` is set to, so it is changed only when needed.
    current_interface: Option<Ipv4Addr>,
    queue: VecDeque<Queued>,
    queue_capacity: usize,
    /// Whether the unicast socket is registered for writability (only while
    /// the queue is non-empty, so an idle socket causes no wake-ups).
    wants_writable: bool,
    /// A registry failure that leaves the loop unable to work.
    fatal: Option<NetError>,
    stats: SharedStats,
}

impl Outbox {
    fn transmit(&mut self, registry: &mio::Registry, transmit: Transmit) {
        if transmit.bytes.len() > MAX_DATAGRAM {
            bump(&self.stats.oversize_transmit_dropped);
            return;
        }
        match transmit.to {
            Destination::Addr(to) => self.send_or_queue(
                registry,
                Queued {
                    to,
                    interface: None,
                    bytes: transmit.bytes,
                },
            ),
            Destination::Group => {
                let count = self.interfaces.len();
                if count == 0 {
                    bump(&self.stats.multicast_disabled_drops);
                    return;
                }
                // Once per interface; the last one takes the buffer itself.
                let mut bytes = Some(transmit.bytes);
                for index in 0..count {
                    let interface = self.interfaces[index];
                    let bytes = if index + 1 == count {
                        bytes
                            .take()
                            .expect("the buffer is taken only on the last pass")
                    } else {
                        bytes
                            .clone()
                            .expect("the buffer is taken only on the last pass")
                    };
                    let to = self.group;
                    self.send_or_queue(
                        registry,
                        Queued {
                            to,
                            interface: Some(interface),
                            bytes,
                        },
                    );
                }
            }
        }
    }

    fn send_or_queue(&mut self, registry: &mio::Registry, datagram: Queued) {
        // Behind a non-empty queue, a new datagram waits its turn so that
        // datagrams to one peer leave in the order the driver produced them.
        if !self.queue.is_empty() {
            self.enqueue(datagram);
            return;
        }
        match self.try_send(&datagram) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                bump(&self.stats.send_would_block);
                self.enqueue(datagram);
                self.set_writable_interest(registry, true);
            }
            Err(_) => bump(&self.stats.send_errors),
        }
    }

    fn enqueue(&mut self, datagram: Queued) {
        if self.queue.len() >= self.queue_capacity {
            bump(&self.stats.queue_drops);
        } else {
            self.queue.push_back(datagram);
        }
    }

    fn try_send(&mut self, datagram: &Queued) -> io::Result<()> {
        if let Some(interface) = datagram.interface
            && self.current_interface != Some(interface)
        {
            SockRef::from(&self.unicast).set_multicast_if_v4(&interface)?;
            self.current_interface = Some(interface);
        }
        loop {
            match self.unicast.send_to(&datagram.bytes, datagram.to) {
                Ok(_) => {
                    bump(&self.stats.sent);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends queued datagrams until the queue is empty or the socket is
    /// full again.
    fn flush(&mut self, registry: &mio::Registry) {
        while let Some(datagram) = self.queue.pop_front() {
            match self.try_send(&datagram) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.queue.push_front(datagram);
                    return;
                }
                Err(_) => bump(&self.stats.send_errors),
            }
        }
        self.set_writable_interest(registry, false);
    }

    fn set_writable_interest(&mut self, registry: &mio::Registry, on: bool) {
        if self.wants_writable == on {
            return;
        }
        let interest = if on {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        // Re-registering re-checks readiness, so a socket that became
        // writable in between still produces an event.
        match registry.reregister(&mut self.unicast, UNICAST, interest) {
            Ok(()) => self.wants_writable = on,
            Err(e) => {
                self.fatal = Some(NetError::io("watch the unicast socket for room to send", e));
            }
        }
    }
}

struct EventLoop<D: Driver> {
    driver: D,
    poll: Poll,
    multicast: Option<UdpSocket>,
    commands: mpsc::Receiver<Input<D::Command>>,
    local_addr: SocketAddr,
    recv_buf: Box<[u8]>,
    /// Inputs that may still hold data: they were not drained to
    /// `WouldBlock` (or `Empty`) last turn, and edge-triggered readiness
    /// will not report them again.
    unicast_pending: bool,
    multicast_pending: bool,
    commands_pending: bool,
    out: Outbox,
    /// The loop's own reference to the waker: a handle dropped right after
    /// waking the loop (`Drop for NetHandle`) must not close the eventfd,
    /// since closing it takes the pending wake-up out of epoll and the loop
    /// would sleep on, never seeing the stop.
    _waker: Arc<Waker>,
}

enum Flow {
    Continue,
    Stop,
}

impl<D: Driver> EventLoop<D> {
    fn run(mut self) -> Shutdown<D> {
        let error = self.run_until_stopped().err();
        // Last chance for datagrams the driver produced just before the stop.
        self.drain_and_settle();
        self.out.flush(self.poll.registry());
        for _ in self.out.queue.drain(..) {
            bump(&self.out.stats.queue_drops);
        }
        Shutdown {
            driver: self.driver,
            error,
        }
    }

    fn run_until_stopped(&mut self) -> Result<(), NetError> {
        let mut events = Events::with_capacity(64);
        // The driver may have datagrams ready before any input (an
        // announcement at start-up).
        self.drain_transmits();
        loop {
            if let Some(error) = self.out.fatal.take() {
                return Err(error);
            }
            let timeout = if self.unicast_pending || self.multicast_pending || self.commands_pending
            {
                Some(Duration::ZERO)
            } else {
                self.driver
                    .poll_timeout()
                    .map(|deadline| deadline.saturating_duration_since(Instant::now()))
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(NetError::io("wait for network events", e)),
            }
            for event in events.iter() {
                match event.token() {
                    UNICAST => {
                        if event.is_writable() {
                            self.out.flush(self.poll.registry());
                        }
                        // Errors and hang-ups are read out by recv_from.
                        if event.is_readable() || event.is_error() {
                            self.unicast_pending = true;
                        }
                    }
                    MULTICAST => self.multicast_pending = true,
                    WAKER => self.commands_pending = true,
                    _ => {}
                }
            }
            if self.commands_pending
                && let Flow::Stop = self.handle_commands()
            {
                return Ok(());
            }
            if self.unicast_pending {
                self.unicast_pending = self.receive(Via::Unicast);
            }
            if self.multicast_pending {
                self.multicast_pending = self.receive(Via::Multicast);
            }
            if let Some(deadline) = self.driver.poll_timeout() {
                let now = Instant::now();
                if deadline <= now {
                    self.driver.handle_timeout(now);
                    self.drain_and_settle();
                }
            }
        }
    }

    /// Takes up to [`BATCH`] commands; `commands_pending` stays set if more
    /// may be waiting. The batch ends with a `flush`, so the driver can
    /// commit what the commands did once (their datagrams are already out).
    fn handle_commands(&mut self) -> Flow {
        let flow = self.handle_command_batch();
        self.driver.flush(Instant::now());
        self.drain_and_settle();
        flow
    }

    fn handle_command_batch(&mut self) -> Flow {
        for _ in 0..BATCH {
            match self.commands.try_recv() {
                Ok(Input::Command(command)) => {
                    self.driver.handle_command(Instant::now(), command);
                    self.drain_transmits();
                }
                Ok(Input::Stop) => {
                    self.driver.stopping(Instant::now());
                    return Flow::Stop;
                }
                Err(mpsc::TryRecvError::Empty) => {
                    self.commands_pending = false;
                    return Flow::Continue;
                }
                // Every handle is gone (a handle's drop sends `Stop` first,
                // so this is only a safety net).
                Err(mpsc::TryRecvError::Disconnected) => return Flow::Stop,
            }
        }
        Flow::Continue
    }

    /// Reads up to [`BATCH`] datagrams from one socket. Returns whether it
    /// may still hold more (it did not report `WouldBlock`).
    fn receive(&mut self, via: Via) -> bool {
        let more = self.receive_batch(via);
        self.driver.flush(Instant::now());
        self.drain_and_settle();
        more
    }

    fn receive_batch(&mut self, via: Via) -> bool {
        for _ in 0..BATCH {
            let socket = match via {
                Via::Unicast => &self.out.unicast,
                Via::Multicast => match self.multicast.as_ref() {
                    Some(socket) => socket,
                    None => return false,
                },
            };
            let (len, from) = match socket.recv_from(&mut self.recv_buf) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    bump(&self.out.stats.recv_errors);
                    continue;
                }
            };
            // The buffer is one byte larger than any valid datagram, so a
            // full buffer means the datagram was larger (and truncated).
            if len > MAX_DATAGRAM {
                bump(&self.out.stats.oversize_dropped);
                continue;
            }
            if via == Via::Multicast && is_own_echo(from, self.local_addr, &self.out.interfaces) {
                bump(&self.out.stats.own_echo_dropped);
                continue;
            }
            bump(&self.out.stats.received);
            if via == Via::Multicast {
                bump(&self.out.stats.received_multicast);
            }
            self.driver
                .handle_datagram(Instant::now(), from, via, &self.recv_buf[..len]);
            self.drain_transmits();
        }
        true
    }

    /// Sends what the driver has, tells it so (`Driver::sent`), and sends
    /// whatever that produced.
    fn drain_and_settle(&mut self) {
        self.drain_transmits();
        self.driver.sent(Instant::now());
        self.drain_transmits();
    }

    fn drain_transmits(&mut self) {
        while let Some(transmit) = self.driver.poll_transmit() {
            self.out.transmit(self.poll.registry(), transmit);
        }
    }
}
