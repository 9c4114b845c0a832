//! A test driver for the network loop: it records what it sees on a channel,
//! sends what it is told to, optionally echoes every datagram back to its
//! sender, and sets timers on command.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kith::net::{Destination, Driver, Transmit, Via};

/// Generous: only a broken loop takes this long.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// What the test tells the driver.
#[derive(Debug)]
pub enum Cmd {
    Send(Destination, Vec<u8>),
    /// Send one datagram per payload, all in one input.
    Burst(Destination, Vec<Vec<u8>>),
    SetTimer(Instant),
    Ping,
}

/// What the driver reports back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Datagram {
        from: SocketAddr,
        via: Via,
        bytes: Vec<u8>,
    },
    Timeout {
        at: Instant,
    },
    Pong,
}

pub struct TestDriver {
    events: mpsc::Sender<Event>,
    outbox: VecDeque<Transmit>,
    echo: bool,
    timer: Option<Instant>,
    pub commands_handled: usize,
    pub datagrams_handled: usize,
}

impl TestDriver {
    /// A driver and the receiving end of its events.
    pub fn new(echo: bool) -> (Self, mpsc::Receiver<Event>) {
        let (events, rx) = mpsc::channel();
        let driver = Self {
            events,
            outbox: VecDeque::new(),
            echo,
            timer: None,
            commands_handled: 0,
            datagrams_handled: 0,
        };
        (driver, rx)
    }

    fn emit(&self, event: Event) {
        // The test may have stopped listening; that is not the driver's
        // problem.
        let _ = self.events.send(event);
    }
}

impl Driver for TestDriver {
    type Command = Cmd;

    fn handle_datagram(&mut self, _now: Instant, from: SocketAddr, via: Via, bytes: &[u8]) {
        self.datagrams_handled += 1;
        if self.echo {
            self.outbox.push_back(Transmit {
                to: Destination::Addr(from),
                bytes: bytes.to_vec(),
            });
        }
        self.emit(Event::Datagram {
            from,
            via,
            bytes: bytes.to_vec(),
        });
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.timer.is_some_and(|t| t <= now) {
            self.timer = None;
            self.emit(Event::Timeout { at: now });
        }
    }

    fn handle_command(&mut self, _now: Instant, command: Cmd) {
        self.commands_handled += 1;
        match command {
            Cmd::Send(to, bytes) => self.outbox.push_back(Transmit { to, bytes }),
            Cmd::Burst(to, payloads) => self
                .outbox
                .extend(payloads.into_iter().map(|bytes| Transmit { to, bytes })),
            Cmd::SetTimer(at) => self.timer = Some(at),
            Cmd::Ping => self.emit(Event::Pong),
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.timer
    }
}

/// The next event, or a panic naming what was awaited.
pub fn next(rx: &mpsc::Receiver<Event>, what: &str) -> Event {
    rx.recv_timeout(PATIENCE)
        .unwrap_or_else(|e| panic!("no event within {PATIENCE:?} while waiting for {what}: {e}"))
}

/// The next datagram event, skipping nothing: anything else is a failure.
pub fn next_datagram(rx: &mpsc::Receiver<Event>, what: &str) -> (SocketAddr, Via, Vec<u8>) {
    match next(rx, what) {
        Event::Datagram { from, via, bytes } => (from, via, bytes),
        other => panic!("expected a datagram ({what}), got {other:?}"),
    }
}

/// A payload that names its index.
pub fn payload(i: u32, len: usize) -> Vec<u8> {
    let mut bytes = vec![0xA5; len.max(4)];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    bytes
}
