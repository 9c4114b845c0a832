//! Discovery figures: time from start to peer visible over real mDNS (inside
//! a private network namespace, like the tests), goodbye-to-lost time, and
//! the cost of the presence state machine.
//!
//! `cargo bench --no-default-features --bench discovery`. Plain `main`: the
//! mDNS part re-executes this binary under `unshare -rn` and prints what the
//! child measured; if namespaces are unavailable it says so and goes on.

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
