//! Multicast through the loop, inside a private network namespace.
//!
//! Loopback in the root namespace has no MULTICAST flag, and a test must
//! never send on the machine's real interfaces. So the test re-executes its
//! own binary under `unshare -rn` (a new user + network namespace: no root
//! needed where unprivileged user namespaces are allowed). The child, with
//! `KITH_NET_NS_CHILD` set, turns on multicast on its private loopback,
//! routes 224.0.0.0/4 there, and runs the real test. Where `unshare` or `ip`
//! is missing or not permitted, the test prints
//! `SKIPPED multicast test: <reason>` and passes; it never skips silently.

mod common;
mod net_support;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::Command;

use kith::net::{self, Destination, NetConfig, Via};
use net_support::{Cmd, Event, TestDriver, next, next_datagram, payload};

const CHILD_ENV: &str = "KITH_NET_NS_CHILD";
/// Printed by the child once the namespace is ready, so the parent can tell
/// "could not set up" from "set up, then failed".
const READY: &str = "KITH-NS-READY";
const SKIP: &str = "KITH-NS-SKIP:";
const PASSED: &str = "KITH-NS-PASSED";

#[test]
fn group_datagrams_reach_every_member_in_a_namespace() {
    in_private_namespace(
        "group_datagrams_reach_every_member_in_a_namespace",
        loops_exchange_group_datagrams,
    );
}

#[test]
fn a_group_room_runs_over_multicast_between_daemons_in_a_namespace() {
    in_private_namespace(
        "a_group_room_runs_over_multicast_between_daemons_in_a_namespace",
        daemons_chat_in_a_multicast_room,
    );
}

/// Runs `body` in a fresh network namespace with multicast on its
/// loopback: the parent re-executes this test there and checks the result.
fn in_private_namespace(test_name: &str, body: fn()) {
    if std::env::var_os(CHILD_ENV).is_some() {
        if enter_namespace() {
            body();
            println!("{PASSED}");
        }
    } else {
        run_child_in_namespace(test_name);
    }
}

/// The network namespace this process is in (`net:[inode]`).
fn network_namespace() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .map(|link| link.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Names of the interfaces in this process's network namespace.
fn interface_names() -> Vec<String> {
    std::fs::read_to_string("/proc/self/net/dev")
        .unwrap_or_default()
        .lines()
        .skip(2) // two header lines
        .filter_map(|line| line.split(':').next())
        .map(|name| name.trim().to_owned())
        .collect()
}

fn run_child_in_namespace(test_name: &str) {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    let here = network_namespace();
    if here.is_empty() {
        skipped("/proc/self/ns/net is unreadable, so a namespace cannot be checked".into());
        return;
    }
    let output = match Command::new("unshare")
        .arg("-rn")
        .arg(&exe)
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        // The child gets our namespace so it can prove it is not in it.
        .env(CHILD_ENV, &here)
        .output()
    {
        Ok(output) => output,
        Err(e) => {
            skipped(format!("cannot run `unshare` (util-linux): {e}"));
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stdout.contains(READY) {
        let reason = stdout
            .lines()
            .find_map(|line| line.strip_prefix(SKIP))
            .map(str::trim)
            .map(str::to_owned)
            .unwrap_or_else(|| {
                format!(
                    "`unshare -rn` failed ({}): {}",
                    output.status,
                    stderr.trim()
                )
            });
        skipped(reason);
        return;
    }
    assert!(
        output.status.success() && stdout.contains(PASSED),
        "the multicast test failed inside the namespace ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for line in stdout.lines().filter(|l| l.contains("figure")) {
        report(line);
    }
    report("multicast test ran in a private network namespace");
}

/// Prints a line even when the test harness captures output (it captures
/// the print macros, not direct writes), so a skip is never silent.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn skipped(reason: String) {
    report(&format!("SKIPPED multicast test: {reason}"));
}

/// Runs `ip ARGS`, or returns why it could not.
fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Checks that this is a fresh private namespace and turns multicast on
/// its loopback; `false` (with a skip line) if that cannot be done.
fn enter_namespace() -> bool {
    // Never reconfigure the host's loopback: run only in a namespace other
    // than the parent's (e.g. not when someone sets the variable by hand).
    // Two independent checks: the parent's namespace id differs from ours,
    // and ours is fresh (its only interface is `lo`, as `unshare -n` makes
    // it; a host always has more).
    let parent = std::env::var(CHILD_ENV).unwrap_or_default();
    let here = network_namespace();
    let interfaces = interface_names();
    assert!(
        parent.starts_with("net:[")
            && here.starts_with("net:[")
            && parent != here
            && interfaces == ["lo"],
        "refusing to change network settings: not in a fresh private network namespace \
         (parent {parent:?}, here {here:?}, interfaces {interfaces:?})"
    );
    let setup = ip(&["link", "set", "lo", "up", "multicast", "on"])
        .and_then(|()| ip(&["route", "add", "224.0.0.0/4", "dev", "lo"]));
    if let Err(reason) = setup {
        println!("{SKIP} {reason}");
        return false;
    }
    println!("{READY}");
    true
}

fn loops_exchange_group_datagrams() {
    let group = SocketAddrV4::new(net::DEFAULT_MULTICAST_GROUP, net::DEFAULT_MULTICAST_PORT);
    let config = || NetConfig {
        multicast_group: group,
        multicast_interfaces: vec![Ipv4Addr::LOCALHOST],
        ..NetConfig::loopback()
    };
    let (driver_a, events_a) = TestDriver::new(false);
    let (driver_b, events_b) = TestDriver::new(true);
    let (driver_c, events_c) = TestDriver::new(false);
    let a = net::spawn(config(), driver_a).expect("loop A starts with multicast");
    let b = net::spawn(config(), driver_b).expect("loop B starts with multicast");
    // C has multicast disabled (no interfaces listed): its group sends must
    // not go out, and it has no group socket to hear anything on.
    let c = net::spawn(NetConfig::loopback(), driver_c).expect("loop C starts");
    assert!(a.stats().multicast_enabled && b.stats().multicast_enabled);
    assert_eq!(a.multicast_group(), Some(SocketAddr::V4(group)));

    // A sends to the group; B hears it through the multicast socket, with
    // A's unicast address as the source, and answers A directly.
    const N: u32 = 200;
    let mut answered = BTreeSet::new();
    for i in 0..N {
        let bytes = payload(i, 100);
        a.send(Cmd::Send(Destination::Group, bytes.clone()))
            .expect("loop A is running");
        let (from, via, got) = next_datagram(&events_b, "B to hear the group datagram");
        assert_eq!((from, via, &got), (a.local_addr(), Via::Multicast, &bytes));
        let (from, via, echo) = next_datagram(&events_a, "B's unicast answer at A");
        assert_eq!((from, via), (b.local_addr(), Via::Unicast));
        assert!(answered.insert(echo));
    }
    c.send(Cmd::Send(Destination::Group, vec![9]))
        .expect("loop C is running");
    // A ping after the group send proves C handled it; then nothing may
    // have reached A or B from C.
    c.send(Cmd::Ping).expect("loop C is running");
    assert_eq!(next(&events_c, "C's pong"), Event::Pong);

    let (sa, sb, sc) = (a.shared_stats(), b.shared_stats(), c.shared_stats());
    a.shutdown().expect("loop A stops");
    b.shutdown().expect("loop B stops");
    c.shutdown().expect("loop C stops");
    let (sa, sb, sc) = (sa.snapshot(), sb.snapshot(), sc.snapshot());
    assert!(events_a.try_recv().is_err() && events_b.try_recv().is_err());
    // A heard its own N group datagrams back (loopback on) and dropped them.
    assert_eq!(
        (sa.sent, sa.own_echo_dropped, sa.received),
        (u64::from(N), u64::from(N), u64::from(N)),
        "{sa:?}"
    );
    assert_eq!(sb.received_multicast, u64::from(N), "{sb:?}");
    assert_eq!(sb.sent, u64::from(N), "{sb:?}");
    assert_eq!(
        (sc.multicast_disabled_drops, sc.sent, sc.received),
        (1, 0, 0),
        "{sc:?}"
    );
    for s in [sa, sb] {
        assert_eq!(
            s.send_errors + s.queue_drops + s.oversize_dropped,
            0,
            "{s:?}"
        );
    }
}

/// Three daemons on the namespace's loopback with multicast: a group room's
/// messages go once to the group and reach every member, stored.
fn daemons_chat_in_a_multicast_room() {
    use kith::account::Account;
    use kith::daemon::{self, DaemonConfig, DaemonHandle, Event};
    use kith::store::KdfParams;
    use std::time::{Duration, Instant};

    const PASS: &str = "multicast room passphrase";
    let dirs: Vec<common::TempDir> = (0..3)
        .map(|i| common::TempDir::new(&format!("mcast-room-{i}")))
        .collect();
    let publics: Vec<_> = dirs
        .iter()
        .map(|dir| {
            Account::create(
                &dir.path().join("data"),
                PASS,
                KdfParams::insecure_fast_for_tests(),
            )
            .expect("account")
            .identity
            .public()
        })
        .collect();
    let group = SocketAddrV4::new(net::DEFAULT_MULTICAST_GROUP, net::DEFAULT_MULTICAST_PORT);
    // Fixed ports, so every daemon can be told the others' addresses.
    let addrs: Vec<SocketAddr> = (0..3)
        .map(|i| SocketAddr::from((Ipv4Addr::LOCALHOST, 47_600 + i as u16)))
        .collect();
    let daemons: Vec<DaemonHandle> = (0..3)
        .map(|i| {
            let peers = common::mesh_peers(&publics, &addrs, i);
            let config = DaemonConfig {
                // Unattended devices: invitations are accepted at once.
                node: kith::proto::node::NodeConfig {
                    auto_accept_invites: true,
                    ..Default::default()
                },
                net: NetConfig {
                    unicast_bind: addrs[i],
                    multicast_group: group,
                    multicast_interfaces: vec![Ipv4Addr::LOCALHOST],
                    ..NetConfig::loopback()
                },
                peers,
                ..DaemonConfig::default()
            };
            daemon::start(&dirs[i].path().join("data"), PASS, config).expect("daemon starts")
        })
        .collect();
    let events: Vec<_> = daemons
        .iter()
        .map(|d| d.events().expect("events"))
        .collect();
    let ids: Vec<_> = publics.iter().map(|p| p.peer_id()).collect();
    let room = daemons[0]
        .create_room("over the group", &[ids[1], ids[2]])
        .expect("room");
    let deadline = Instant::now() + Duration::from_secs(60);
    let wait = |rx: &std::sync::mpsc::Receiver<Event>, mut done: Box<dyn FnMut(&Event) -> bool>| loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = rx.recv_timeout(left).expect("the expected event in time");
        if done(&event) {
            return;
        }
    };
    for rx in &events[1..] {
        wait(
            rx,
            Box::new(move |e| matches!(e, Event::RoomJoined { room: r, .. } if *r == room)),
        );
    }
    const N: usize = 50;
    for i in 0..N {
        daemons[i % 3]
            .send_room(room, &format!("message {i}"))
            .expect("sent");
    }
    for (d, rx) in events.iter().enumerate() {
        let mut want: BTreeSet<String> = (0..N)
            .filter(|i| i % 3 != d)
            .map(|i| format!("message {i}"))
            .collect();
        wait(
            rx,
            Box::new(move |e| {
                if let Event::MessageReceived { text, .. } = e {
                    want.remove(text);
                }
                want.is_empty()
            }),
        );
    }
    let statuses: Vec<_> = daemons
        .iter()
        .map(|d| d.status().expect("status"))
        .collect();
    let sent: u64 = statuses.iter().map(|s| s.node.group_sent).sum();
    let received: u64 = statuses.iter().map(|s| s.node.group_received).sum();
    assert!(
        sent > 0 && received > 0,
        "the room went over the group: {sent} sent, {received} opened"
    );
    println!("multicast room figure: {N} messages, {sent} group frames sent, {received} opened");
    for d in daemons {
        d.shutdown().expect("stops");
    }
}
