//! The control socket at its limits (connection cap, idle timeout, line
//! length, bad encodings) and the counters `kith status` shows through
//! it. Real daemons on loopback; every wait is bounded.
#![cfg(unix)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::UdpSocket;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::TempDir;
use kith::account::Account;
use kith::daemon::control::{Client, ControlConfig, ControlError, MAX_REQUEST_LINE, hex_encode};
use kith::daemon::{self, DaemonConfig, DaemonHandle, DiscoveryConfig, PeerAddr, RegistryTarget};
use kith::net::{MAX_DATAGRAM, NetConfig};
use kith::proto::crypto::Identity;
use kith::proto::ids::PeerId;
use kith::store::KdfParams;

const PASS: &str = "control socket test passphrase";
/// Upper bound on any wait; the daemon answers in milliseconds, but the
/// machine running the tests may be heavily loaded.
const WAIT: Duration = Duration::from_secs(60);

struct Daemon {
    handle: Option<DaemonHandle>,
    data: PathBuf,
    /// A peer the daemon knows, so `send` has a target that resolves.
    peer: PeerId,
    _dir: TempDir,
}

impl Daemon {
    fn start(name: &str, control: ControlConfig) -> Self {
        Self::start_with(name, control, DiscoveryConfig::default())
    }

    fn start_with(name: &str, control: ControlConfig, discovery: DiscoveryConfig) -> Self {
        let dir = TempDir::new(name);
        let data = dir.path().join("data");
        drop(Account::create(&data, PASS, KdfParams::insecure_fast_for_tests()).expect("create"));
        let peer = Identity::generate(&mut rand::rng()).public();
        let config = DaemonConfig {
            net: NetConfig::loopback(),
            control_socket: true,
            control,
            // The peer's address is never answered: nothing here needs it.
            peers: vec![PeerAddr {
                public: peer.clone(),
                addr: "127.0.0.1:9".parse().expect("a literal address"),
            }],
            discovery: DiscoveryConfig {
                mdns: false,
                ..discovery
            },
            ..DaemonConfig::default()
        };
        let handle = daemon::start(&data, PASS, config).expect("the daemon starts");
        Daemon {
            handle: Some(handle),
            data,
            peer: peer.peer_id(),
            _dir: dir,
        }
    }

    fn handle(&self) -> &DaemonHandle {
        self.handle.as_ref().expect("present until drop")
    }

    fn raw(&self) -> UnixStream {
        let stream = UnixStream::connect(self.data.join("kith.sock")).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        stream.set_write_timeout(Some(WAIT)).expect("timeout");
        stream
    }

    fn status(&self) -> HashMap<String, u64> {
        status(&self.data)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().expect("clean shutdown");
        }
    }
}

fn status(data: &Path) -> HashMap<String, u64> {
    let (lines, _) = Client::connect(data)
        .expect("connect")
        .request("status")
        .expect("status answers");
    lines
        .iter()
        .map(|line| {
            let (name, value) = line.split_once(' ').expect("NAME VALUE");
            (name.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// Everything the daemon writes until it closes (bounded by `WAIT`).
fn read_all(mut stream: &UnixStream) -> String {
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("the daemon closes");
    text
}

fn read_one_line(stream: &UnixStream) -> String {
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .expect("a line in time");
    line
}

/// Polls `done` until it holds; panics after `WAIT`.
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn refused(result: Result<(Vec<String>, String), ControlError>) -> String {
    match result {
        Err(ControlError::Refused(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_connection_over_the_cap_is_told_and_closed_and_the_others_still_work() {
    let daemon = Daemon::start(
        "ctl-cap",
        ControlConfig {
            max_connections: 3,
            ..ControlConfig::default()
        },
    );
    let open: Vec<UnixStream> = (0..3).map(|_| daemon.raw()).collect();
    // The accept thread takes connections in order, so these three hold
    // every place before the next one arrives.
    let extra = daemon.raw();
    assert_eq!(
        read_all(&extra),
        "err too many control connections (at most 3); try again when one has closed\n"
    );
    let reason = refused(
        Client::connect(&daemon.data)
            .expect("connect")
            .request("status"),
    );
    assert!(
        reason.starts_with("too many control connections"),
        "{reason}"
    );

    let mut first = &open[0];
    first.write_all(b"status\n").expect("write");
    let answer = read_all(first);
    assert!(answer.contains("net_received "), "{answer}");
    assert!(answer.ends_with("ok \n"), "{answer}");
    // Its place is free again once its thread is done.
    until("a free place", || {
        Client::connect(&daemon.data)
            .expect("connect")
            .request("status")
            .is_ok()
    });
}

#[test]
fn an_idle_connection_is_told_and_closed_after_the_timeout() {
    let daemon = Daemon::start(
        "ctl-idle",
        ControlConfig {
            idle_timeout: Duration::from_millis(200),
            ..ControlConfig::default()
        },
    );
    let silent = daemon.raw();
    let started = Instant::now();
    assert_eq!(
        read_all(&silent),
        "err no complete request within 200 ms; closing\n"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    // A line that is begun but never finished is idle too.
    let mut partial = daemon.raw();
    partial.write_all(b"sta").expect("write");
    assert!(read_all(&partial).starts_with("err no complete request"));
}

#[test]
fn a_quiet_listen_stays_open_and_ends_when_its_client_goes() {
    let daemon = Daemon::start(
        "ctl-listen",
        ControlConfig {
            max_connections: 1,
            idle_timeout: Duration::from_millis(100),
        },
    );
    let mut listener = daemon.raw();
    listener.write_all(b"listen json\n").expect("write");
    assert_eq!(read_one_line(&listener), "ok\n");
    // Several idle timeouts later the subscription still holds the only
    // place (the refusal proves it) and is still open.
    std::thread::sleep(Duration::from_millis(400));
    assert!(read_all(&daemon.raw()).starts_with("err too many control connections"));
    listener.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0u8; 1];
    match listener.read(&mut byte) {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the subscription ended: {other:?}"),
    }
    // Gone without a word: the daemon notices and frees the place.
    drop(listener);
    until("the subscription to end", || {
        Client::connect(&daemon.data)
            .expect("connect")
            .request("status")
            .is_ok()
    });
}

#[test]
fn an_over_long_line_is_refused_before_it_is_all_read() {
    let daemon = Daemon::start("ctl-long", ControlConfig::default());
    // One byte over the limit and no newline: the daemon must not wait
    // for (and buffer) the rest.
    let mut stream = daemon.raw();
    stream
        .write_all(&vec![b'x'; MAX_REQUEST_LINE + 1])
        .expect("write");
    assert_eq!(
        read_one_line(&stream),
        format!("err line too long: at most {MAX_REQUEST_LINE} bytes\n")
    );
    // A whole line far over the limit, through the client: a sentence, not
    // a reset connection.
    let line = format!("status {}", "x".repeat(300 * 1024));
    let reason = refused(
        Client::connect(&daemon.data)
            .expect("connect")
            .request(&line),
    );
    assert_eq!(
        reason,
        format!("line too long: at most {MAX_REQUEST_LINE} bytes")
    );
    // The daemon still serves.
    assert!(daemon.status().contains_key("net_received"));
}

#[test]
fn a_request_that_is_not_utf8_gets_an_answer() {
    let daemon = Daemon::start("ctl-utf8", ControlConfig::default());
    let mut stream = daemon.raw();
    stream.write_all(b"st\xffatus\n").expect("write");
    assert_eq!(read_all(&stream), "err the request is not valid UTF-8\n");
}

#[test]
fn a_send_too_long_is_called_too_long() {
    let daemon = Daemon::start("ctl-send-long", ControlConfig::default());
    let to = daemon.peer.to_hex();
    // 255 KiB of ASCII through the client (hex-encoded: over the line limit).
    let reason = match Client::connect(&daemon.data)
        .expect("connect")
        .send(&to, &"a".repeat(255 * 1024))
    {
        Err(ControlError::Refused(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(reason.starts_with("message too long"), "{reason}");
    // 255 KiB of ASCII as the raw argument: it happens to be hex, decodes
    // to bytes that are not UTF-8, and is too long before anything else.
    let mut stream = daemon.raw();
    let line = format!(
        "send {} {}\n",
        hex_encode(to.as_bytes()),
        "a".repeat(255 * 1024)
    );
    stream.write_all(line.as_bytes()).expect("write");
    assert!(
        read_one_line(&stream).starts_with("err message too long"),
        "a long raw send is too long, not badly encoded"
    );
    // Just over the limit, and the line itself fits: too long as well.
    let text = "a".repeat(kith::proto::node::MAX_TEXT + 1);
    let reason = match Client::connect(&daemon.data)
        .expect("connect")
        .send(&to, &text)
    {
        Err(ControlError::Refused(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(reason.starts_with("message too long"), "{reason}");
}

#[test]
fn status_through_the_socket_counts_datagrams_and_drops_by_reason() {
    let daemon = Daemon::start("ctl-counters", ControlConfig::default());
    let to = daemon.handle().local_addr();
    let stranger = UdpSocket::bind("127.0.0.1:0").expect("bind");
    stranger.send_to(b"not a kith datagram", to).expect("send");
    until("net_received", || daemon.status()["net_received"] >= 1);

    stranger
        .send_to(&vec![0u8; MAX_DATAGRAM + 1], to)
        .expect("send");
    until("net_oversize_dropped", || {
        daemon.status()["net_oversize_dropped"] >= 1
    });

    // Registry magic, no registry configured.
    stranger.send_to(b"kr\x01hello", to).expect("send");
    until("registry_foreign_dropped", || {
        daemon.status().get("registry_foreign_dropped") == Some(&1)
    });
    // The handle and the socket tell the same.
    let status = daemon.handle().status().expect("status");
    assert!(status.net.received >= 1 && status.net.oversize_dropped >= 1);
    assert_eq!(status.registry_foreign_dropped, 1);
}

#[test]
fn registry_magic_from_anyone_but_the_registry_is_counted_apart() {
    let registry = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let discovery = DiscoveryConfig {
        registry: Some(RegistryTarget {
            addr: registry.local_addr().expect("address"),
            public_key: Identity::generate(&mut rand::rng()).public().to_bytes(),
        }),
        ..DiscoveryConfig::default()
    };
    let daemon = Daemon::start_with("ctl-registry", ControlConfig::default(), discovery);
    let to = daemon.handle().local_addr();
    let stranger = UdpSocket::bind("127.0.0.1:0").expect("bind");
    stranger.send_to(b"kr\x01forged", to).expect("send");
    stranger.send_to(b"kr\x01forged", to).expect("send");
    registry.send_to(b"kr\x01garbage", to).expect("send");
    until("both registry counters", || {
        let status = daemon.status();
        status.get("registry_foreign_dropped") == Some(&2)
            && status.get("registry_rejected_dropped") == Some(&1)
    });
}
