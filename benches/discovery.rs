//! Discovery figures: time from start to peer visible over real mDNS (inside
//! a private network namespace, like the tests), goodbye-to-lost time, and
//! the cost of the presence state machine.
//!
//! `cargo bench --no-default-features --bench discovery`. Plain `main`: the
//! mDNS part re-executes this binary under `unshare -rn` and prints what the
//! child measured; if namespaces are unavailable it says so and goes on.
//!
//! Then idle traffic (issue 18 items 4 and 9): 5 and 20 real `kith daemon`s
//! in network namespaces on a bridge each (strangers to each other, and
//! everybody everybody's contact), left to settle for
//! `KITH_BENCH_MDNS_SETTLE_SECS` (120), then the mDNS frames and the kith
//! datagrams entering each bridge are counted for
//! `KITH_BENCH_MDNS_WINDOW_SECS` (576: a whole number of mDNS refresh
//! rounds on both sizes of link, 6 × 96 s and 4 × 144 s, since a round's
//! packets go out together) with nftables counters and printed per minute
//! beside the goal (mDNS: 20 hosts ≤ 3× 5 hosts). Last, one daemon of each
//! stranger LAN is killed (SIGKILL: no goodbye) and the time until it left
//! another's `kith peers` is printed beside its bound (the longest mDNS
//! record TTL, 180 s). Needs root and `nft`; says SKIPPED otherwise.
//! `KITH_BENCH_MDNS_IDLE_ONLY=1` runs only this part,
//! `KITH_BENCH_MDNS_LANS=2,4` only some of the LANs,
//! `KITH_BENCH_MDNS_DAEMON_ARGS` adds daemon arguments. About 15 minutes.

use kith::discovery::mdns::{MdnsConfig, MdnsDiscovery};
use kith::discovery::presence::{Presence, PresenceConfig};
use kith::discovery::{DiscoveryEvent, InterfaceSpec};
use kith::proto::ids::PeerId;
use std::collections::HashSet;
use std::process::Command;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "KITH_BENCH_IN_PRIVATE_NETNS";
const ROUNDS: usize = 5;

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        mdns_child();
        return;
    }
    presence_figures();
    if std::env::var_os("KITH_BENCH_MDNS_IDLE_ONLY").is_some() {
        idle_traffic_figures();
        return;
    }
    match Command::new("unshare")
        .arg("-rn")
        .arg(std::env::current_exe().expect("a running program knows its executable"))
        .env(CHILD_ENV, "1")
        .status()
    {
        Ok(status) if status.success() => {}
        Ok(status) => println!("mdns: SKIPPED (namespace child exited with {status})"),
        Err(e) => println!("mdns: SKIPPED (cannot run unshare: {e})"),
    }
    idle_traffic_figures();
}

fn presence_figures() {
    let config = PresenceConfig::default();
    println!(
        "presence: offline detected {:?} after the last datagram (keep-alive {:?} x {})",
        config.offline_after(),
        config.keepalive_interval,
        config.missed_keepalives
    );
    let peers: Vec<PeerId> = (0..10_000u32)
        .map(|i| PeerId(*blake3::hash(&i.to_le_bytes()).as_bytes()))
        .collect();
    let mut presence = Presence::new(config, HashSet::new());
    let t0 = Instant::now();
    for peer in &peers {
        presence.watch(t0, *peer, true);
    }
    let started = Instant::now();
    let mut inputs = 0u64;
    for round in 0..20u32 {
        let now = t0 + Duration::from_secs(u64::from(round));
        for peer in &peers {
            presence.heard(now, *peer);
            inputs += 1;
        }
        presence.handle_timeout(now);
        while presence.poll_event().is_some() {}
        while presence.poll_keepalive().is_some() {}
    }
    let elapsed = started.elapsed();
    println!(
        "presence: {} peers, {:.1} M heard()/s including timers",
        peers.len(),
        inputs as f64 / elapsed.as_secs_f64() / 1e6
    );
}

fn mdns_child() {
    let setup = [
        vec!["link", "set", "lo", "up", "multicast", "on"],
        vec!["route", "add", "224.0.0.0/4", "dev", "lo"],
    ];
    for args in setup {
        match Command::new("ip").args(&args).status() {
            Ok(status) if status.success() => {}
            other => {
                println!("mdns: SKIPPED (ip {}: {other:?})", args.join(" "));
                return;
            }
        }
    }
    let mut visible = Vec::new();
    let mut goodbye = Vec::new();
    for round in 0..ROUNDS {
        let (a, b) = (PeerId([1; 32]), PeerId([2; 32]));
        let (tx_a, rx_a) = mpsc::channel();
        let (tx_b, rx_b) = mpsc::channel();
        let start = Instant::now();
        let mut alice = MdnsDiscovery::start(config(a, "Alice"), tx_a, Box::new(|| {}))
            .expect("mdns-sd starts in the namespace");
        let mut bob = MdnsDiscovery::start(config(b, "Bob"), tx_b, Box::new(|| {}))
            .expect("mdns-sd starts in the namespace");
        wait(
            &rx_a,
            |e| matches!(e, DiscoveryEvent::PeerFound { peer_id, .. } if *peer_id == b),
        );
        wait(
            &rx_b,
            |e| matches!(e, DiscoveryEvent::PeerFound { peer_id, .. } if *peer_id == a),
        );
        visible.push(start.elapsed());
        let leave = Instant::now();
        bob.shutdown().expect("clean shutdown");
        wait(&rx_a, |e| *e == DiscoveryEvent::PeerLost { peer_id: b });
        goodbye.push(leave.elapsed());
        alice.shutdown().expect("clean shutdown");
        eprintln!("round {round} done");
    }
    visible.sort();
    goodbye.sort();
    println!(
        "mdns: start to both peers visible over {ROUNDS} rounds: min {} ms, median {} ms, max {} ms",
        visible[0].as_millis(),
        visible[ROUNDS / 2].as_millis(),
        visible[ROUNDS - 1].as_millis()
    );
    println!(
        "mdns: shutdown (goodbye) to PeerLost: min {} ms, median {} ms, max {} ms",
        goodbye[0].as_millis(),
        goodbye[ROUNDS / 2].as_millis(),
        goodbye[ROUNDS - 1].as_millis()
    );
}

fn config(id: PeerId, name: &str) -> MdnsConfig {
    MdnsConfig::new(id, name, 7000, vec![InterfaceSpec::Name("lo".into())])
}

fn wait(rx: &Receiver<DiscoveryEvent>, pred: impl Fn(&DiscoveryEvent) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(event) if pred(&event) => return,
            Ok(_) => {}
            Err(e) => panic!("mdns event did not come within 15 s: {e}"),
        }
    }
}

// ------------------------------------------------- idle mDNS traffic (N hosts)

/// Goal (issue 18 item 9): idle mDNS packets/min at 20 hosts ≤ this many
/// times those at 5 hosts.
const IDLE_GOAL_RATIO: f64 = 3.0;
/// Bound on how long a stranger that vanished without a goodbye stays in
/// `kith peers`: the longest TTL of its mDNS records (`RecordTtl::max`).
const VANISH_BOUND: Duration = Duration::from_secs(180);
/// The daemons' UDP port.
const KITH_PORT: u16 = 47474;
const IDLE_PASS: &str = "discovery bench passphrase";

/// Runs `ip` with `args`; `Err` carries its complaint.
fn ip(args: &[&str]) -> Result<String, String> {
    run_tool("ip", args)
}

fn run_tool(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// One LAN: namespaces `kbm<pid>-<lan>-<i>` with a veth `eth0`
/// (10.78.`lan`.i/24) whose other end `kv<pid><lan>x<i>` sits in the bridge
/// `kbm<pid>x<lan>` of the root namespace (which has no address on it, so
/// nothing leaves the machine). Dropping it kills the daemons and removes
/// everything.
struct IdleLan {
    bridge: String,
    /// Every port of this LAN's bridge is named this plus a host number.
    port_prefix: String,
    ports: Vec<String>,
    netns: Vec<String>,
    daemons: Vec<std::process::Child>,
    dirs: Vec<std::path::PathBuf>,
    /// Each host's public key (hex), as `kith peers` shows it.
    keys: Vec<String>,
}

impl IdleLan {
    fn new(lan: u8, n: u8) -> Result<Self, String> {
        let pid = std::process::id() % 100_000;
        let mut this = IdleLan {
            bridge: format!("kbm{pid}x{lan}"),
            port_prefix: format!("kv{pid}{lan}x"),
            ports: Vec::new(),
            netns: Vec::new(),
            daemons: Vec::new(),
            dirs: Vec::new(),
            keys: Vec::new(),
        };
        ip(&["link", "add", &this.bridge, "type", "bridge"])?;
        ip(&["link", "set", &this.bridge, "up"])?;
        for i in 1..=n {
            let ns = format!("kbm{pid}-{lan}-{i}");
            let port = format!("{}{i}", this.port_prefix);
            ip(&["netns", "add", &ns])?;
            this.netns.push(ns.clone());
            ip(&[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            this.ports.push(port.clone());
            ip(&["link", "set", &port, "master", &this.bridge])?;
            ip(&["link", "set", &port, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            let addr = format!("10.78.{lan}.{i}/24");
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up", "multicast", "on"])?;
            ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
        }
        Ok(this)
    }

    /// Starts one daemon per host; with `contacts` each has every other
    /// host as a contact (so each keeps every other alive by keep-alives),
    /// otherwise they are strangers to each other.
    fn start(&mut self, lan: u8, contacts: bool, extra: &[&str]) -> Result<(), String> {
        use kith::account::Account;
        use kith::store::KdfParams;
        let mut keys = Vec::new();
        for i in 0..self.netns.len() {
            let dir = std::env::temp_dir()
                .join(format!("kith-bench-mdns-{}-{lan}-{i}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let account = Account::create(&dir, IDLE_PASS, KdfParams::insecure_fast_for_tests())
                .map_err(|e| format!("account: {e}"))?;
            keys.push(PeerId(account.identity.public().to_bytes()).to_hex());
            self.dirs.push(dir);
        }
        for i in 0..self.netns.len() {
            let mut command = Command::new("ip");
            command
                .args(["netns", "exec", &self.netns[i], env!("CARGO_BIN_EXE_kith")])
                .arg("--data")
                .arg(&self.dirs[i])
                .env("KITH_PASSPHRASE", IDLE_PASS)
                .args([
                    "daemon",
                    "--listen",
                    &format!("10.78.{lan}.{}:{KITH_PORT}", i + 1),
                ])
                .args(["--interface", "eth0", "--name", "bench"])
                .args(extra)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            if contacts {
                for (j, key) in keys.iter().enumerate() {
                    if j != i {
                        command.args(["--contact", key]);
                    }
                }
            }
            let child = command.spawn().map_err(|e| format!("kith daemon: {e}"))?;
            self.daemons.push(child);
        }
        self.keys = keys;
        Ok(())
    }

    /// Kills the last host's daemon (SIGKILL: no goodbye) and returns its key.
    fn kill_last(&mut self) -> Option<String> {
        let child = self.daemons.last_mut()?;
        child.kill().ok()?;
        let _ = child.wait();
        self.keys.last().cloned()
    }

    /// Whether host 1's `kith peers` lists `key` (`None`: cannot tell).
    fn first_lists(&self, key: &str) -> Option<bool> {
        let out = Command::new(env!("CARGO_BIN_EXE_kith"))
            .arg("--data")
            .arg(self.dirs.first()?)
            .arg("peers")
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).contains(key))
    }
}

impl Drop for IdleLan {
    fn drop(&mut self) {
        for child in &mut self.daemons {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.netns {
            let _ = ip(&["netns", "del", ns]);
        }
        for port in &self.ports {
            let _ = ip(&["link", "del", port]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// An nftables table counting, per LAN, the mDNS frames (UDP port 5353)
/// entering its bridge from any host, IPv4 and IPv6 apart. Each frame is
/// counted once, where it enters the bridge, however many hosts it reaches.
struct Counters {
    table: String,
}

impl Counters {
    fn new(lans: &[(u8, &IdleLan)]) -> Result<Self, String> {
        let table = format!("kithbench{}", std::process::id());
        run_tool("nft", &["add", "table", "bridge", &table])?;
        let this = Counters { table };
        run_tool(
            "nft",
            &[
                "add",
                "chain",
                "bridge",
                &this.table,
                "pre",
                "{ type filter hook prerouting priority 0; }",
            ],
        )?;
        for (_, lan) in lans {
            // Every frame enters the bridge through a host's port.
            for (family, port) in [("ip", 5353), ("ip6", 5353), ("ip", KITH_PORT)] {
                let rule = format!(
                    "iifname \"{}*\" ether type {family} udp dport {port} counter",
                    lan.port_prefix
                );
                run_tool("nft", &["add", "rule", "bridge", &this.table, "pre", &rule])?;
            }
        }
        Ok(this)
    }

    /// (mDNS over IPv4, mDNS over IPv6, kith datagrams) counted so far on
    /// the LAN whose ports start with `prefix`.
    fn read(&self, prefix: &str) -> (u64, u64, u64) {
        let listing =
            run_tool("nft", &["list", "table", "bridge", &self.table]).unwrap_or_default();
        let mut v4 = 0;
        let mut v6 = 0;
        let mut kith = 0;
        for line in listing.lines() {
            if !line.contains(&format!("\"{prefix}*\"")) {
                continue;
            }
            let packets = line
                .split_whitespace()
                .skip_while(|w| *w != "packets")
                .nth(1)
                .and_then(|w| w.parse::<u64>().ok())
                .unwrap_or(0);
            if line.contains(&format!("dport {KITH_PORT}")) {
                kith += packets;
            } else if line.contains("ether type ip6") {
                v6 += packets;
            } else {
                v4 += packets;
            }
        }
        (v4, v6, kith)
    }
}

impl Drop for Counters {
    fn drop(&mut self) {
        let _ = run_tool("nft", &["delete", "table", "bridge", &self.table]);
    }
}

/// Idle mDNS packets/min on LANs of 5 and 20 daemons (strangers to each
/// other, and everybody everybody's contact), measured after they settled.
/// Needs root (it creates namespaces and a bridge) and `nft`.
fn idle_traffic_figures() {
    let env_secs = |name: &str, default: u64| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let settle = Duration::from_secs(env_secs("KITH_BENCH_MDNS_SETTLE_SECS", 120));
    let window = Duration::from_secs(env_secs("KITH_BENCH_MDNS_WINDOW_SECS", 576));
    let extra: Vec<String> = std::env::var("KITH_BENCH_MDNS_DAEMON_ARGS")
        .map(|v| v.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    // (lan number, hosts, everybody a contact)
    let plan: [(u8, u8, bool); 4] = [(1, 5, false), (2, 20, false), (3, 5, true), (4, 20, true)];
    // KITH_BENCH_MDNS_LANS=2,4 runs only those LANs of the plan.
    let only: Option<Vec<u8>> = std::env::var("KITH_BENCH_MDNS_LANS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect());
    let mut lans = Vec::new();
    for (lan, n, contacts) in plan {
        if only.as_ref().is_some_and(|only| !only.contains(&lan)) {
            continue;
        }
        match IdleLan::new(lan, n) {
            Ok(built) => lans.push((lan, n, contacts, built)),
            Err(reason) => {
                println!("mdns idle traffic: SKIPPED (cannot build namespaces: {reason})");
                return;
            }
        }
    }
    let counters = {
        let refs: Vec<(u8, &IdleLan)> = lans.iter().map(|(lan, _, _, l)| (*lan, l)).collect();
        match Counters::new(&refs) {
            Ok(c) => c,
            Err(reason) => {
                println!("mdns idle traffic: SKIPPED (nft: {reason})");
                return;
            }
        }
    };
    for (lan, _, contacts, built) in &mut lans {
        if let Err(reason) = built.start(*lan, *contacts, &extra) {
            println!("mdns idle traffic: SKIPPED ({reason})");
            return;
        }
    }
    eprintln!(
        "mdns idle traffic: {} daemons started; settling {} s, then counting {} s",
        lans.iter().map(|(_, n, _, _)| u64::from(*n)).sum::<u64>(),
        settle.as_secs(),
        window.as_secs()
    );
    std::thread::sleep(settle);
    let before: Vec<(u64, u64, u64)> = lans
        .iter()
        .map(|(_, _, _, l)| counters.read(&l.port_prefix))
        .collect();
    std::thread::sleep(window);
    let minutes = window.as_secs_f64() / 60.0;
    let mut per_min = Vec::new();
    for ((_, n, contacts, built), (v4_0, v6_0, kith_0)) in lans.iter().zip(before) {
        let (v4, v6, kith) = counters.read(&built.port_prefix);
        let (v4, v6) = ((v4 - v4_0) as f64 / minutes, (v6 - v6_0) as f64 / minutes);
        let kith = (kith - kith_0) as f64 / minutes;
        let who = if *contacts {
            "all contacts"
        } else {
            "strangers"
        };
        println!(
            "mdns idle traffic: {n:>2} hosts, {who:<12}: {:>7.1} mDNS packets/min \
             (IPv4 {v4:.1}, IPv6 {v6:.1}); {kith:.1} kith datagrams/min ({:.2} per host)",
            v4 + v6,
            kith / f64::from(*n)
        );
        per_min.push((*n, *contacts, v4 + v6));
    }
    for contacts in [false, true] {
        let at = |n: u8| {
            per_min
                .iter()
                .find(|(m, c, _)| *m == n && *c == contacts)
                .map(|(_, _, v)| *v)
        };
        // Both sizes were measured (`KITH_BENCH_MDNS_LANS` may leave some out).
        let (Some(five), Some(twenty)) = (at(5), at(20)) else {
            continue;
        };
        let ratio = if five > 0.0 {
            twenty / five
        } else {
            f64::INFINITY
        };
        let who = if contacts {
            "all contacts"
        } else {
            "strangers"
        };
        println!(
            "mdns idle traffic: {who}: 20 hosts / 5 hosts = {ratio:.1}x (goal <= {IDLE_GOAL_RATIO}x){}",
            if twenty <= IDLE_GOAL_RATIO * five {
                ""
            } else {
                "  GOAL MISSED"
            }
        );
    }
    vanished_stranger_figures(&mut lans);
}

/// Kills one daemon on each LAN of strangers, without a goodbye, and
/// prints how long it stays in host 1's `kith peers`.
fn vanished_stranger_figures(lans: &mut [(u8, u8, bool, IdleLan)]) {
    let killed_at = Instant::now();
    let mut waiting: Vec<(u8, &IdleLan, String)> = Vec::new();
    for (_, n, contacts, built) in lans.iter_mut() {
        if *contacts {
            continue;
        }
        match built.kill_last() {
            Some(key) => waiting.push((*n, &*built, key)),
            None => println!("mdns vanished stranger: {n:>2} hosts: SKIPPED (cannot kill)"),
        }
    }
    let deadline = killed_at + VANISH_BOUND + Duration::from_secs(60);
    while !waiting.is_empty() && Instant::now() < deadline {
        waiting.retain(|(n, lan, key)| match lan.first_lists(key) {
            Some(true) => true,
            Some(false) => {
                let after = killed_at.elapsed();
                println!(
                    "mdns vanished stranger: {n:>2} hosts: left kith peers after {} s \
                     (goal <= {} s){}",
                    after.as_secs(),
                    VANISH_BOUND.as_secs(),
                    if after <= VANISH_BOUND + Duration::from_secs(2) {
                        ""
                    } else {
                        "  GOAL MISSED"
                    }
                );
                false
            }
            None => {
                println!("mdns vanished stranger: {n:>2} hosts: SKIPPED (kith peers failed)");
                false
            }
        });
        std::thread::sleep(Duration::from_secs(1));
    }
    for (n, _, _) in waiting {
        println!(
            "mdns vanished stranger: {n:>2} hosts: still listed after {} s  GOAL MISSED",
            killed_at.elapsed().as_secs()
        );
    }
}
