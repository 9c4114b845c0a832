//! In-process daemons on 127.0.0.1 for the integration tests: accounts,
//! starting, three that know each other, and bounded waits for events.

use std::net::SocketAddr;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use kith::account::Account;
use kith::daemon::{self, DaemonConfig, DaemonHandle, Event, PeerAddr};
use kith::net::NetConfig;
use kith::proto::crypto::PublicIdentity;
use kith::store::KdfParams;

use super::TempDir;

pub const PASS: &str = "daemon test passphrase";
/// Generous: the machine running the tests may be heavily loaded, and a
/// handshake to a peer that was down backs off to 2 s between attempts.
pub const WAIT: Duration = Duration::from_secs(120);

/// A new account in `DIR/data`; its public identity.
pub fn account(name: &str) -> (TempDir, PublicIdentity) {
    let dir = TempDir::new(name);
    let data = dir.path().join("data");
    let account = Account::create(&data, PASS, KdfParams::insecure_fast_for_tests())
        .expect("a fresh temp dir takes an account");
    (dir, account.identity.public())
}

/// Starts the daemon of the account in `dir`, bound to `bind`, with
/// `peers` configured.
pub fn start(dir: &TempDir, bind: SocketAddr, peers: Vec<PeerAddr>) -> DaemonHandle {
    let config = DaemonConfig {
        net: NetConfig {
            unicast_bind: bind,
            ..NetConfig::loopback()
        },
        peers,
        ..DaemonConfig::default()
    };
    daemon::start(&dir.path().join("data"), PASS, config).expect("the daemon starts")
}

/// 127.0.0.1 on a port free now that no other test takes meanwhile, so
/// a daemon can stop and start again on its address (see
/// [`super::ports`]).
pub fn loopback() -> SocketAddr {
    super::ports::free_port()
}

/// Three daemons that know each other's addresses: (dir, public, handle).
pub fn trio(name: &str) -> Vec<(TempDir, PublicIdentity, DaemonHandle)> {
    let accounts: Vec<(TempDir, PublicIdentity)> =
        (0..3).map(|i| account(&format!("{name}-{i}"))).collect();
    // Three addresses first, so every daemon can be told the others'.
    let addrs: Vec<SocketAddr> = (0..3).map(|_| loopback()).collect();
    let publics: Vec<PublicIdentity> = accounts.iter().map(|a| a.1.clone()).collect();
    accounts
        .into_iter()
        .enumerate()
        .map(|(i, (dir, public))| {
            let handle = start(&dir, addrs[i], super::mesh_peers(&publics, &addrs, i));
            (dir, public, handle)
        })
        .collect()
}

/// Two running daemons, A and B, each the other's peer.
pub fn connected_pair(
    name: &str,
) -> (
    (TempDir, PublicIdentity, DaemonHandle),
    (TempDir, PublicIdentity, DaemonHandle),
) {
    let (dir_a, pub_a) = account(&format!("{name}-a"));
    let (dir_b, pub_b) = account(&format!("{name}-b"));
    let a = start(&dir_a, loopback(), Vec::new());
    let b = start(
        &dir_b,
        loopback(),
        vec![PeerAddr {
            public: pub_a.clone(),
            addr: a.local_addr(),
        }],
    );
    a.add_peer(pub_b.clone(), b.local_addr())
        .expect("B becomes A's peer");
    ((dir_a, pub_a, a), (dir_b, pub_b, b))
}

/// Waits for an event `pick` accepts; panics after [`WAIT`].
#[track_caller]
pub fn wait_for<T>(rx: &Receiver<Event>, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no expected event within {WAIT:?}: {e}"));
        if let Some(found) = pick(&event) {
            return found;
        }
    }
}

/// Collects events until `done` says so; panics after [`WAIT`].
#[track_caller]
pub fn collect_until(rx: &Receiver<Event>, mut done: impl FnMut(&Event) -> bool) {
    wait_for(rx, |event| done(event).then_some(()))
}

/// Polls `check` until it holds; panics after [`WAIT`].
#[track_caller]
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
