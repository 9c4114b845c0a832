//! The network loop on real sockets, unicast on 127.0.0.1 only (root
//! namespace loopback has no multicast; see `net_multicast.rs`).

mod net_support;

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use kith::net::{self, Destination, MAX_DATAGRAM, NetConfig, NetError, Via};
use net_support::{Cmd, Event, PATIENCE, TestDriver, next, next_datagram, payload};

/// A plain blocking socket on loopback that gives up after `PATIENCE`.
fn plain_socket() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("binding a loopback port works");
    socket
        .set_read_timeout(Some(PATIENCE))
        .expect("setting a read timeout works");
    socket
}

#[test]
fn datagrams_round_trip_between_two_loops() {
    const N: u32 = 2000;
    // The kernel drops datagrams when a receive buffer overflows; sending
    // in windows and waiting for the echoes keeps the test exact.
    const WINDOW: u32 = 50;
    let (driver_a, events_a) = TestDriver::new(false);
    let (driver_b, events_b) = TestDriver::new(true);
    let a = net::spawn(NetConfig::loopback(), driver_a).expect("loop A starts");
    let b = net::spawn(NetConfig::loopback(), driver_b).expect("loop B starts");
    let (addr_a, addr_b) = (a.local_addr(), b.local_addr());
    assert!(addr_a.ip().is_loopback() && addr_a.port() != 0);
    let stats_a = a.shared_stats();
    let stats_b = b.shared_stats();

    let mut echoed = BTreeSet::new();
    for start in (0..N).step_by(WINDOW as usize) {
        let window: Vec<Vec<u8>> = (start..start + WINDOW)
            .map(|i| payload(i, 10 + (i as usize % 1000)))
            .collect();
        a.send(Cmd::Burst(Destination::Addr(addr_b), window.clone()))
            .expect("loop A is running");
        for expected in &window {
            let (from, via, bytes) = next_datagram(&events_b, "B to receive");
            assert_eq!((from, via), (addr_a, Via::Unicast));
            assert_eq!(&bytes, expected, "loopback keeps order");
        }
        for _ in 0..WINDOW {
            let (from, via, bytes) = next_datagram(&events_a, "the echo at A");
            assert_eq!((from, via), (addr_b, Via::Unicast));
            assert!(echoed.insert(bytes), "no echo arrives twice");
        }
    }
    assert_eq!(echoed.len(), N as usize);

    let driver_a = a.shutdown().expect("loop A stops").driver;
    let driver_b = b.shutdown().expect("loop B stops").driver;
    assert_eq!(driver_a.datagrams_handled, N as usize);
    assert_eq!(driver_b.datagrams_handled, N as usize);
    let (sa, sb) = (stats_a.snapshot(), stats_b.snapshot());
    for s in [sa, sb] {
        assert_eq!((s.sent, s.received), (u64::from(N), u64::from(N)), "{s:?}");
        assert_eq!(s.received_multicast, 0);
        assert_eq!(
            s.oversize_dropped + s.send_errors + s.queue_drops,
            0,
            "{s:?}"
        );
        assert!(!s.multicast_enabled);
    }
}

#[test]
fn oversize_datagrams_are_dropped_and_counted() {
    let (driver, events) = TestDriver::new(false);
    let node = net::spawn(NetConfig::loopback(), driver).expect("the loop starts");
    let peer = plain_socket();

    // Too big by one byte, then the largest allowed size. Loopback keeps
    // order, so when the second one arrives the first was seen.
    peer.send_to(&[1u8; MAX_DATAGRAM + 1], node.local_addr())
        .expect("loopback send works");
    peer.send_to(&[2u8; 60_000], node.local_addr())
        .expect("loopback send works");
    peer.send_to(&[3u8; MAX_DATAGRAM], node.local_addr())
        .expect("loopback send works");
    let (from, via, bytes) = next_datagram(&events, "the largest allowed datagram");
    assert_eq!(
        (from, via),
        (peer.local_addr().expect("bound"), Via::Unicast)
    );
    assert_eq!(bytes, vec![3u8; MAX_DATAGRAM]);
    let stats = node.stats();
    assert_eq!(
        (stats.oversize_dropped, stats.received),
        (2, 1),
        "{stats:?}"
    );

    // The driver's own oversize transmit is not sent either; the one after
    // it is.
    let to = Destination::Addr(peer.local_addr().expect("bound"));
    node.send(Cmd::Send(to, vec![4u8; MAX_DATAGRAM + 1]))
        .expect("the loop is running");
    node.send(Cmd::Send(to, vec![5u8; 8]))
        .expect("the loop is running");
    let mut buf = [0u8; 70_000];
    let (len, from) = peer
        .recv_from(&mut buf)
        .expect("the valid datagram arrives");
    assert_eq!((&buf[..len], from), (&[5u8; 8][..], node.local_addr()));
    // The loop counts a send after the kernel accepted it, which may be
    // after the peer has it: read the final counts once the loop stopped.
    let stats = node.shared_stats();
    node.shutdown().expect("the loop stops");
    let stats = stats.snapshot();
    assert_eq!(
        (stats.oversize_transmit_dropped, stats.sent),
        (1, 1),
        "{stats:?}"
    );
    assert!(
        events.try_recv().is_err(),
        "nothing else reached the driver"
    );
}

#[test]
fn commands_wake_an_idle_loop_and_timers_fire() {
    let (driver, events) = TestDriver::new(false);
    let node = net::spawn(NetConfig::loopback(), driver).expect("the loop starts");
    // The loop has no timer and no traffic, so it sleeps in poll with no
    // timeout until woken: each command must get through on the waker
    // alone, and a lost wake-up would leave the loop asleep for good (so
    // `next` fails; how fast a wake-up is belongs to the benches).
    for round in 0..20 {
        node.send(Cmd::Ping).expect("the loop is running");
        assert_eq!(next(&events, "the pong"), Event::Pong, "round {round}");
    }
    // From another thread, through a cloned sender.
    let sender = node.sender();
    std::thread::spawn(move || sender.send(Cmd::Ping))
        .join()
        .expect("the sending thread does not panic")
        .expect("the loop is running");
    assert_eq!(next(&events, "the pong from a cloned sender"), Event::Pong);

    let deadline = Instant::now() + Duration::from_millis(30);
    node.send(Cmd::SetTimer(deadline))
        .expect("the loop is running");
    match next(&events, "the timer") {
        Event::Timeout { at } => assert!(at >= deadline, "the timer fired early"),
        other => panic!("expected the timeout, got {other:?}"),
    }
    node.shutdown().expect("the loop stops");
}

#[test]
fn shutdown_handles_pending_commands_and_returns_the_driver() {
    let (driver, _events) = TestDriver::new(false);
    let node = net::spawn(NetConfig::loopback(), driver).expect("the loop starts");
    let sender = node.sender();
    for _ in 0..100 {
        sender.send(Cmd::Ping).expect("the loop is running");
    }
    let stopped = node.shutdown().expect("the loop stops");
    assert!(stopped.error.is_none(), "{:?}", stopped.error);
    assert_eq!(
        stopped.driver.commands_handled, 100,
        "every command before the stop"
    );
    assert!(
        matches!(sender.send(Cmd::Ping), Err(NetError::Stopped)),
        "a stopped loop refuses commands"
    );
}

#[test]
fn send_failures_and_group_sends_without_multicast_are_counted() {
    let (driver, events) = TestDriver::new(false);
    let node = net::spawn(NetConfig::loopback(), driver).expect("the loop starts");
    let peer = plain_socket();
    // Port 0 is not a valid destination, and an IPv4 socket cannot reach an
    // IPv6 address: both fail in the kernel, neither may stop the loop.
    let bad_port: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
    let bad_family: SocketAddr = "[::1]:9".parse().expect("valid address");
    node.send(Cmd::Send(Destination::Addr(bad_port), vec![1]))
        .expect("the loop is running");
    node.send(Cmd::Send(Destination::Addr(bad_family), vec![1]))
        .expect("the loop is running");
    node.send(Cmd::Send(Destination::Group, vec![2]))
        .expect("the loop is running");
    node.send(Cmd::Send(
        Destination::Addr(peer.local_addr().expect("bound")),
        vec![3],
    ))
    .expect("the loop is running");
    let mut buf = [0u8; 16];
    let (len, _) = peer.recv_from(&mut buf).expect("the good datagram arrives");
    assert_eq!(&buf[..len], &[3]);
    assert_eq!(node.multicast_group(), None);
    // Counts are final once the loop stopped (a send is counted after the
    // kernel accepted it, which may be after the peer has it).
    let stats = node.shared_stats();
    node.shutdown().expect("the loop stops");
    let stats = stats.snapshot();
    assert_eq!(stats.send_errors, 2, "{stats:?}");
    assert_eq!(stats.multicast_disabled_drops, 1, "{stats:?}");
    assert_eq!(stats.sent, 1, "{stats:?}");
    assert!(!stats.multicast_enabled);
    assert!(events.try_recv().is_err());
}

#[test]
fn a_port_in_use_is_an_error_at_spawn() {
    let taken = plain_socket();
    let config = NetConfig {
        unicast_bind: taken.local_addr().expect("bound"),
        ..NetConfig::loopback()
    };
    let (driver, _events) = TestDriver::new(false);
    match net::spawn(config, driver) {
        Err(NetError::Io { action, .. }) => assert!(action.contains("bind"), "{action}"),
        Err(other) => panic!("expected a bind error, got {other}"),
        Ok(_) => panic!("binding a taken port succeeded"),
    }
}

#[test]
fn multicast_with_an_ipv6_bind_address_is_a_config_error() {
    let config = NetConfig {
        unicast_bind: "[::1]:0".parse().expect("valid address"),
        multicast_interfaces: vec![std::net::Ipv4Addr::LOCALHOST],
        ..NetConfig::default()
    };
    let (driver, _events) = TestDriver::new(false);
    assert!(matches!(
        net::spawn(config, driver),
        Err(NetError::Config(_))
    ));
}
