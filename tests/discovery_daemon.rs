//! Real `kith daemon` processes on hosts made of network namespaces joined
//! by a bridge (created here, removed by Drop guards even when a test
//! fails): discovery by mDNS (strangers nearby, never probed), presence of
//! contacts (offline when a link goes down, online again and queued
//! messages delivered when it comes back), and peers that find each other
//! only through the registry.
//!
//! Each host is a namespace `kith-<pid>-<tag><n>` with a veth `eth0`
//! (10.77.x.n/24) whose other end sits in a bridge `kb<pid><tag>` in the
//! root namespace; the root namespace has no address on it, so nothing
//! reaches or leaves the machine's real network. mDNS is restricted to
//! `eth0` inside each namespace. Without root (or without `ip`) the tests
//! print `SKIPPED ...` with the reason. Figures are printed as
//! `discovery figure: ...` lines (see `--nocapture`).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::TempDir;
use kith::account::Account;
use kith::proto::crypto::PublicIdentity;
use kith::proto::ids::PeerId;
use kith::store::KdfParams;

const PASS: &str = "discovery daemon test passphrase";
/// Bound on every wait for discovery (mDNS probing alone takes ~1 s; the
/// machine running the tests may be heavily loaded).
const WAIT: Duration = Duration::from_secs(60);
/// The daemons' keep-alive interval, the longest one (idle), and the offline
/// bound of an idle peer (the longest interval and 2 more at the shortest).
const KEEPALIVE_SECS: u64 = 1;
const KEEPALIVE_MAX_SECS: u64 = 2;
const OFFLINE_AFTER: Duration = Duration::from_secs(KEEPALIVE_MAX_SECS + 2 * KEEPALIVE_SECS);

// ------------------------------------------------------------ network

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Hosts on one bridge. Dropping it deletes the namespaces (and with them
/// their veth ends) and the bridge.
struct Lan {
    bridge: String,
    hosts: Vec<Host>,
}

struct Host {
    netns: String,
    /// The veth end in the bridge (root namespace): down = link down.
    port: String,
    addr: String,
}

impl Lan {
    /// `n` hosts at 10.77.`subnet`.1..=n, or `Err(reason)` to skip.
    fn new(tag: char, subnet: u8, n: u8) -> Result<Self, String> {
        let pid = std::process::id();
        let mut lan = Lan {
            bridge: format!("kb{pid}{tag}"),
            hosts: Vec::new(),
        };
        ip(&["link", "add", &lan.bridge, "type", "bridge"])?;
        ip(&["link", "set", &lan.bridge, "up"])?;
        for i in 1..=n {
            let host = Host {
                netns: format!("kith-{pid}-{tag}{i}"),
                port: format!("kv{pid}{tag}{i}"),
                addr: format!("10.77.{subnet}.{i}"),
            };
            ip(&["netns", "add", &host.netns])?;
            lan.hosts.push(host);
            let host = lan.hosts.last().expect("pushed just above");
            let ns = host.netns.as_str();
            ip(&[
                "link", "add", &host.port, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ])?;
            ip(&["link", "set", &host.port, "master", &lan.bridge])?;
            ip(&["link", "set", &host.port, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", host.addr),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", ns, "link", "set", "eth0", "up", "multicast", "on"])?;
            ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
        }
        Ok(lan)
    }

    fn link(&self, host: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["link", "set", &self.hosts[host].port, state]).expect("the bridge port exists");
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for host in &self.hosts {
            let _ = ip(&["netns", "del", &host.netns]);
            let _ = ip(&["link", "del", &host.port]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// Creates the LAN or says why the test is skipped.
fn lan_or_skip(test: &str, tag: char, subnet: u8, n: u8) -> Option<Lan> {
    match Lan::new(tag, subnet, n) {
        Ok(lan) => Some(lan),
        Err(reason) => {
            println!("SKIPPED {test}: cannot build network namespaces here: {reason}");
            None
        }
    }
}

// ------------------------------------------------------------ processes

/// A child process killed (SIGKILL) and reaped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn line_channel(output: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn kith(data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kith"));
    command.arg("--data").arg(data).env("KITH_PASSPHRASE", PASS);
    command
}

/// Spawns `command` with stdout piped and waits (bounded) for a line
/// starting with `prefix`; returns the process, the rest of that line and
/// the remaining lines.
fn spawn_until(mut command: Command, prefix: &str) -> (Proc, String, Receiver<String>) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the program runs");
    let lines = line_channel(child.stdout.take().expect("stdout was piped"));
    let child = Proc(child);
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no line {prefix:?} within {WAIT:?}: {e}"));
        if let Some(rest) = line.strip_prefix(prefix) {
            return (child, rest.trim().to_owned(), lines);
        }
    }
}

/// One host's daemon, with `kith listen --json` attached.
struct Node {
    // Field order is drop order: the listener ends with the daemon.
    _daemon: Proc,
    _listener: Proc,
    events: Receiver<String>,
    /// Keeps the daemon's stdout drained and open.
    _stdout: Receiver<String>,
    data: PathBuf,
    id: PeerId,
    _dir: TempDir,
}

struct Identity {
    dir: TempDir,
    data: PathBuf,
    public: PublicIdentity,
}

fn identity(name: &str) -> Identity {
    let dir = TempDir::new(name);
    let data = dir.path().join("data");
    let account = Account::create(&data, PASS, KdfParams::insecure_fast_for_tests())
        .expect("a fresh temp dir takes an account");
    let public = account.identity.public();
    Identity { dir, data, public }
}

fn key_hex(public: &PublicIdentity) -> String {
    PeerId(public.to_bytes()).to_hex()
}

fn start_node(host: &Host, who: Identity, extra: &[String]) -> Node {
    start_node_at(host, &format!("{}:47474", host.addr), who, extra)
}

/// [`start_node`] with the daemon's socket bound at `listen`.
fn start_node_at(host: &Host, listen: &str, who: Identity, extra: &[String]) -> Node {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", &host.netns, env!("CARGO_BIN_EXE_kith")])
        .arg("--data")
        .arg(&who.data)
        .env("KITH_PASSPHRASE", PASS)
        .args(["daemon", "--listen", listen])
        .args(["--keepalive-secs", &KEEPALIVE_SECS.to_string()])
        .args(["--keepalive-max-secs", &KEEPALIVE_MAX_SECS.to_string()])
        .args(extra);
    let (daemon, _, stdout) = spawn_until(command, "listening");
    let mut listen = kith(&who.data);
    listen.args(["listen", "--json"]);
    let mut child = listen
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("kith listen runs");
    let events = line_channel(child.stdout.take().expect("stdout was piped"));
    Node {
        _daemon: daemon,
        _listener: Proc(child),
        events,
        _stdout: stdout,
        data: who.data,
        id: who.public.peer_id(),
        _dir: who.dir,
    }
}

fn cli(data: &Path, args: &[&str]) -> String {
    let out = kith(data)
        .args(args)
        .output()
        .expect("the kith binary runs");
    assert!(
        out.status.success(),
        "kith {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `kith peers` lists `peer` in `state` (online, offline, nearby).
fn listed(node: &Node, peer: &PeerId, state: &str) -> bool {
    cli(&node.data, &["peers"]).lines().any(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        words.first() == Some(&peer.to_hex().as_str()) && words.get(3) == Some(&state)
    })
}

/// Whether `kith peers` lists `peer` as online.
fn listed_online(node: &Node, peer: &PeerId) -> bool {
    listed(node, peer, "online")
}

/// Polls `kith peers` (bounded) until it lists `peer` in `state`.
fn wait_listed(node: &Node, peer: &PeerId, state: &str, deadline: Instant) {
    while !listed(node, peer, state) {
        assert!(
            Instant::now() < deadline,
            "{} never listed {} {state}:\n{}",
            node.id.short(),
            peer.short(),
            cli(&node.data, &["peers"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A counter from `kith status`.
fn counter(node: &Node, name: &str) -> u64 {
    let status = cli(&node.data, &["status"]);
    status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in kith status:\n{status}"))
}

/// Waits (bounded) for an event line of `node` containing every needle.
fn wait_event(node: &Node, needles: &[&str], deadline: Instant) -> Result<String, String> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match node.events.recv_timeout(left) {
            Ok(line) if needles.iter().all(|n| line.contains(n)) => return Ok(line),
            Ok(_) => {}
            Err(e) => return Err(format!("no event with {needles:?}: {e}")),
        }
    }
}

/// Waits until `node` reports `peer` online: from its events, or (if it
/// came online before `kith listen` subscribed) from `kith peers`.
fn wait_online(node: &Node, peer: &PeerId, deadline: Instant) {
    if listed_online(node, peer) {
        return;
    }
    let hex = peer.to_hex();
    if let Err(e) = wait_event(node, &["peer_online", &hex], deadline) {
        // What it knew instead: found by mDNS or not, at which address.
        panic!(
            "{} never saw {} online: {e}\npeers:\n{}\ndiscovery:\n{}",
            node.id.short(),
            peer.short(),
            cli(&node.data, &["peers"]),
            cli(&node.data, &["discovery"]),
        );
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

// ------------------------------------------------------------ tests

#[test]
fn three_hosts_discover_each_other_by_mdns_and_follow_a_link_down_and_up() {
    let test = "mdns daemon test";
    let Some(lan) = lan_or_skip(test, 'm', 0, 3) else {
        return;
    };
    let names = ["alice", "bob", "carol"];
    let start = Instant::now();
    let nodes: Vec<Node> = lan
        .hosts
        .iter()
        .zip(names)
        .map(|(host, name)| {
            let args = ["--interface", "eth0", "--name", name].map(String::from);
            start_node(host, identity(name), &args)
        })
        .collect();

    // Everyone sees everyone nearby (no contacts given): known from mDNS
    // alone, never probed, so neither online nor offline.
    let deadline = Instant::now() + WAIT;
    for (i, node) in nodes.iter().enumerate() {
        for (j, other) in nodes.iter().enumerate() {
            if i != j {
                wait_listed(node, &other.id, "nearby", deadline);
            }
        }
    }
    let all_visible = start.elapsed();
    println!(
        "discovery figure: mdns, 3 daemons started → all 6 pairs nearby in {} ms",
        ms(all_visible)
    );
    let peers = cli(&nodes[0].data, &["peers"]);
    for other in &nodes[1..] {
        let line = peers
            .lines()
            .find(|l| l.starts_with(&other.id.to_hex()))
            .unwrap_or_else(|| panic!("alice lists {}:\n{peers}", other.id.short()));
        assert!(
            line.contains(" nearby ") && line.split(' ').nth(6) == Some("nearby"),
            "{line}"
        );
    }
    // Strangers cost nothing: not one kith datagram went out.
    for node in &nodes {
        assert_eq!(counter(node, "net_sent"), 0, "{} sent", node.id.short());
    }

    // Alice and bob write to carol, bob to alice: contacts now, kept alive
    // both ways (a contact request is a contact too), so online.
    let (alice, bob, carol) = (&nodes[0], &nodes[1], &nodes[2]);
    let deadline = Instant::now() + WAIT;
    for (from, to) in [(alice, carol), (bob, carol), (bob, alice)] {
        let id = cli(&from.data, &["send", "--to", &to.id.to_hex(), "hello"])
            .trim()
            .to_owned();
        wait_event(from, &["delivered", &id], deadline)
            .unwrap_or_else(|e| panic!("{} → {}: {e}", from.id.short(), to.id.short()));
    }
    for (node, peer) in [(alice, carol), (bob, carol), (carol, alice), (carol, bob)] {
        wait_online(node, &peer.id, deadline);
    }
    wait_online(bob, &alice.id, deadline);
    wait_online(alice, &bob.id, deadline);

    // Carol's link goes down: alice and bob report her offline. How soon
    // (the keep-alive bound) is printed, not asserted: the presence timers
    // are tested in virtual time (tests/discovery_presence.rs), and a
    // loaded machine may delay these daemons by seconds.
    lan.link(2, false);
    let down = Instant::now();
    let carol_hex = carol.id.to_hex();
    for node in [alice, bob] {
        wait_event(node, &["peer_offline", &carol_hex], down + WAIT).unwrap_or_else(|e| {
            panic!(
                "{} did not report carol offline within {WAIT:?}: {e}",
                node.id.short()
            )
        });
    }
    let offline_detect = down.elapsed();
    println!(
        "discovery figure: link down → offline reported by both in {} ms (keep-alive {} s, \
         idle {} s, bound {} ms)",
        ms(offline_detect),
        KEEPALIVE_SECS,
        KEEPALIVE_MAX_SECS,
        ms(OFFLINE_AFTER + Duration::from_secs(KEEPALIVE_SECS))
    );

    // Alice writes to carol while she is away: queued.
    let sent = cli(
        &alice.data,
        &["send", "--to", &carol_hex, "while you were away"],
    );
    let message_id = sent.trim().to_owned();
    assert_eq!(message_id.len(), 64, "send prints the message id: {sent}");
    let peers = cli(&alice.data, &["peers"]);
    let line = peers
        .lines()
        .find(|l| l.starts_with(&carol_hex))
        .expect("carol stays listed");
    assert!(
        line.contains(" offline ") && line.split(' ').nth(6) == Some("contact"),
        "{line}"
    );

    // Link up: online again, and the queued message is delivered.
    lan.link(2, true);
    let up = Instant::now();
    let deadline = up + WAIT;
    wait_event(alice, &["peer_online", &carol_hex], deadline)
        .unwrap_or_else(|e| panic!("alice never saw carol again: {e}"));
    let back_online = up.elapsed();
    wait_event(alice, &["delivered", &carol_hex, &message_id], deadline)
        .unwrap_or_else(|e| panic!("the queued message was not delivered: {e}"));
    let delivered = up.elapsed();
    wait_event(carol, &["message", "while you were away"], deadline)
        .unwrap_or_else(|e| panic!("carol did not get the message: {e}"));
    println!(
        "discovery figure: link up → carol online in {} ms, queued message delivered in {} ms",
        ms(back_online),
        ms(delivered)
    );

    let report = cli(&alice.data, &["discovery"]);
    assert!(report.contains("interfaces eth0"), "{report}");
    assert!(report.contains("mdns on"), "{report}");
    let carol_line = report
        .lines()
        .find(|l| l.starts_with(&format!("peer {carol_hex}")))
        .unwrap_or_else(|| panic!("carol in the discovery report:\n{report}"));
    assert!(
        carol_line.contains(" online ") && carol_line.contains("contact"),
        "{carol_line}"
    );
    let bob_line = report
        .lines()
        .find(|l| l.starts_with(&format!("peer {}", bob.id.to_hex())))
        .unwrap_or_else(|| panic!("bob in the discovery report:\n{report}"));
    assert!(bob_line.contains("name=\"bob\""), "{bob_line}");
    println!("alice's kith discovery:\n{report}");

    // Alice blocks bob: he disappears from her lists, and since she no
    // longer answers him, bob (who keeps her alive: he wrote to her) sees
    // her go offline (within the keep-alive bound on a quiet machine).
    let bob_hex = bob.id.to_hex();
    cli(&alice.data, &["block", &bob_hex]);
    let blocked = Instant::now();
    assert!(!cli(&alice.data, &["peers"]).contains(&bob_hex));
    assert!(!cli(&alice.data, &["discovery"]).contains(&bob_hex));
    wait_event(bob, &["peer_offline", &alice.id.to_hex()], blocked + WAIT)
        .unwrap_or_else(|e| panic!("bob still hears alice after she blocked him: {e}"));
    assert!(!cli(&alice.data, &["peers"]).contains(&bob_hex));
}

#[test]
fn two_hosts_without_mdns_find_each_other_through_the_registry() {
    let test = "registry daemon test";
    let Some(lan) = lan_or_skip(test, 'r', 1, 3) else {
        return;
    };
    let registry_host = &lan.hosts[2];
    let mut command = Command::new("ip");
    command
        .args([
            "netns",
            "exec",
            &registry_host.netns,
            env!("CARGO_BIN_EXE_kith"),
        ])
        .args(["registry", "--keepalive-secs", "1", "--listen"])
        .arg(format!("{}:7734", registry_host.addr));
    // `lines` stays alive: its reader keeps the registry's stdout open.
    let (_registry, _, lines) = spawn_until(command, "kith registry listening");
    let key = loop {
        let line = lines
            .recv_timeout(WAIT)
            .expect("the registry prints its key");
        if let Some(key) = line.strip_prefix("public key") {
            break key.trim().to_owned();
        }
    };

    let (a, b) = (identity("reg-a"), identity("reg-b"));
    let common = |other: &PublicIdentity| {
        vec![
            "--no-mdns".to_owned(),
            "--registry".to_owned(),
            format!("{}:7734", registry_host.addr),
            "--registry-key".to_owned(),
            key.clone(),
            "--contact".to_owned(),
            key_hex(other),
        ]
    };
    let (a_args, b_args) = (common(&b.public), common(&a.public));
    let start = Instant::now();
    let a = start_node(&lan.hosts[0], a, &a_args);
    let b = start_node(&lan.hosts[1], b, &b_args);
    let deadline = Instant::now() + WAIT;
    wait_online(&a, &b.id, deadline);
    wait_online(&b, &a.id, deadline);
    println!(
        "discovery figure: registry, 2 daemons started → both online in {} ms",
        ms(start.elapsed())
    );

    // Delivery has a wait of its own: finding each other may have used
    // most of the first one.
    let deadline = Instant::now() + WAIT;
    let message_id = cli(
        &a.data,
        &["send", "--to", &b.id.to_hex(), "via the registry"],
    )
    .trim()
    .to_owned();
    wait_event(&a, &["delivered", &message_id], deadline)
        .unwrap_or_else(|e| panic!("not delivered: {e}"));
    wait_event(&b, &["message", "via the registry"], deadline).unwrap_or_else(|e| {
        // What B holds and counted, for a failure that cannot be rerun.
        panic!(
            "b did not get it: {e}\nb's status:\n{}",
            cli(&b.data, &["status"])
        )
    });

    let report = cli(&a.data, &["discovery"]);
    assert!(report.contains("mdns off"), "{report}");
    let registry_line = report
        .lines()
        .find(|l| l.starts_with("registry "))
        .expect("a registry line");
    assert!(
        registry_line.contains(" registered ")
            && registry_line.contains(&format!("published={}:47474", lan.hosts[0].addr)),
        "{registry_line}"
    );
    let b_line = report
        .lines()
        .find(|l| l.starts_with(&format!("peer {}", b.id.to_hex())))
        .unwrap_or_else(|| panic!("b in the report:\n{report}"));
    assert!(
        b_line.contains(" online ") && b_line.contains("contact"),
        "{b_line}"
    );
    // The address came from the registry (or from b's own authenticated
    // datagrams at that same address); mDNS never ran.
    assert!(
        b_line.contains(&format!("{}:47474", lan.hosts[1].addr)),
        "{b_line}"
    );
    println!("a's kith discovery:\n{report}");
}

/// The `mdns on name="..."` of `kith discovery`: the name we are announced
/// under now.
fn announced_name(node: &Node) -> String {
    let report = cli(&node.data, &["discovery"]);
    let line = report
        .lines()
        .find(|l| l.starts_with("mdns on name=\""))
        .unwrap_or_else(|| panic!("no mdns line in kith discovery:\n{report}"));
    let rest = &line["mdns on name=\"".len()..];
    rest[..rest.find('"').expect("the name is quoted")].to_owned()
}

#[test]
fn two_daemons_given_one_name_are_announced_apart_and_show_it() {
    let test = "mdns name test";
    let Some(lan) = lan_or_skip(test, 'n', 5, 2) else {
        return;
    };
    let args = ["--interface", "eth0", "--name", "twin"].map(String::from);
    let nodes: Vec<Node> = lan
        .hosts
        .iter()
        .zip(["twin-a", "twin-b"])
        .map(|(host, dir)| start_node(host, identity(dir), &args))
        .collect();
    let deadline = Instant::now() + WAIT;
    wait_listed(&nodes[0], &nodes[1].id, "nearby", deadline);
    wait_listed(&nodes[1], &nodes[0].id, "nearby", deadline);
    // Past the second announcement and any renaming: until both names are
    // the expected ones (or the bound, then the assertion below says what).
    let expected: Vec<String> = nodes
        .iter()
        .map(|node| format!("twin [{}]", node.id.short()))
        .collect();
    let deadline = Instant::now() + WAIT;
    let names = loop {
        let names: Vec<String> = nodes.iter().map(announced_name).collect();
        if names == expected || Instant::now() >= deadline {
            break names;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("discovery figure: two daemons named twin announce {names:?}");
    for (node, name) in nodes.iter().zip(&names) {
        assert_eq!(*name, format!("twin [{}]", node.id.short()));
    }
    // Each shows the other by the name its user gave.
    for (node, other) in [(&nodes[0], &nodes[1]), (&nodes[1], &nodes[0])] {
        let report = cli(&node.data, &["discovery"]);
        let line = report
            .lines()
            .find(|l| l.starts_with(&format!("peer {}", other.id.to_hex())))
            .unwrap_or_else(|| panic!("the other twin in kith discovery:\n{report}"));
        assert!(line.contains("name=\"twin\""), "{line}");
        assert!(report.contains(" renamed=0 "), "{report}");
    }
}

/// Flushes the IPv4 addresses of `host`'s `dev` and waits (bounded) until
/// it has a usable (not tentative) IPv6 link-local address.
fn link_local_only(host: &Host, dev: &str) {
    ip(&[
        "-n",
        &host.netns,
        "addr",
        "flush",
        "dev",
        dev,
        "scope",
        "global",
    ])
    .expect("flush the global addresses");
    let deadline = Instant::now() + WAIT;
    loop {
        let addrs = ip(&["-n", &host.netns, "-6", "addr", "show", "dev", dev]).expect("ip addr");
        if addrs.contains("fe80::") && !addrs.contains("tentative") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no usable link-local address:\n{addrs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A daemon on two IPv6 links (link-local only) keeps alive a contact on
/// the second: the contact's announced fe80:: address must be used on the
/// interface it was heard on (its scope id), not wherever the kernel's
/// first fe80::/64 route points (the first link). The contact has no
/// contacts itself, so it never writes first: only our probes can bring
/// it online.
#[test]
fn a_contact_on_the_second_of_two_ipv6_links_is_reached_on_that_link() {
    let test = "mdns ipv6 scope daemon test";
    let Some(first) = lan_or_skip(test, 'f', 4, 1) else {
        return;
    };
    let Some(second) = lan_or_skip(test, 'g', 5, 1) else {
        return;
    };
    let (alice_host, bob_host) = (&first.hosts[0], &second.hosts[0]);
    // Alice's second link: a veth into the second LAN's bridge (it goes
    // with her namespace).
    let port = format!("kv{}h", std::process::id());
    let ns = alice_host.netns.as_str();
    ip(&[
        "link", "add", &port, "type", "veth", "peer", "name", "eth1", "netns", ns,
    ])
    .expect("a second veth");
    ip(&["link", "set", &port, "master", &second.bridge]).expect("into the bridge");
    ip(&["link", "set", &port, "up"]).expect("up");
    ip(&["-n", ns, "link", "set", "eth1", "up", "multicast", "on"]).expect("eth1 up");
    link_local_only(alice_host, "eth0");
    link_local_only(alice_host, "eth1");
    link_local_only(bob_host, "eth0");

    let (alice, bob) = (identity("alice-scope"), identity("bob-scope"));
    let bob_key = key_hex(&bob.public);
    let alice_args = [
        "--interface",
        "eth0",
        "--interface",
        "eth1",
        "--name",
        "alice",
        "--contact",
        &bob_key,
    ]
    .map(String::from);
    let bob_args = ["--interface", "eth0", "--name", "bob"].map(String::from);
    let alice = start_node_at(alice_host, "[::]:47474", alice, &alice_args);
    let bob = start_node_at(bob_host, "[::]:47474", bob, &bob_args);
    let start = Instant::now();
    wait_online(&alice, &bob.id, start + WAIT);
    println!(
        "discovery figure: ipv6 link-local on the second of two links, contact online {} ms \
         after start",
        ms(start.elapsed())
    );
}

/// IPv6 on a link with nothing but link-local addresses (fe80::/64, no
/// router, the IPv4 addresses removed): a daemon listening on `[::]`
/// announces and browses mDNS over IPv6 only (ff02::fb), finds the other
/// by it (no registry, no `--peer`), and the contacts come online.
#[test]
fn two_contacts_on_ipv6_link_local_only_find_each_other_and_come_online() {
    let test = "mdns ipv6 daemon test";
    let Some(lan) = lan_or_skip(test, 's', 3, 2) else {
        return;
    };
    // The IPv4 addresses go, so that only IPv6 can carry anything.
    for host in &lan.hosts {
        link_local_only(host, "eth0");
    }
    let (alice, bob) = (identity("alice6"), identity("bob6"));
    let keys = [key_hex(&alice.public), key_hex(&bob.public)];
    let nodes: Vec<Node> = lan
        .hosts
        .iter()
        .zip([alice, bob])
        .enumerate()
        .map(|(i, (host, who))| {
            let args = [
                "--interface",
                "eth0",
                "--name",
                if i == 0 { "alice" } else { "bob" },
                "--contact",
                &keys[1 - i],
            ]
            .map(String::from);
            start_node_at(host, "[::]:47474", who, &args)
        })
        .collect();
    let start = Instant::now();
    let deadline = start + WAIT;
    wait_online(&nodes[0], &nodes[1].id, deadline);
    wait_online(&nodes[1], &nodes[0].id, deadline);
    let discovery = cli(&nodes[0].data, &["discovery"]);
    assert!(discovery.contains("fe80::"), "{discovery}");
    println!(
        "discovery figure: ipv6 link-local, both contacts online {} ms after start",
        ms(start.elapsed())
    );
}
