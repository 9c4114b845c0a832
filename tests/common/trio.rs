//! Three in-process daemons on 127.0.0.1 that know each other's
//! addresses, and bounded waits for their events: shared by the daemon
//! tests that need a room of three.

use std::net::SocketAddr;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use kith::account::Account;
use kith::daemon::{self, DaemonConfig, DaemonHandle, Event, PeerAddr};
use kith::net::NetConfig;
use kith::proto::crypto::PublicIdentity;
use kith::proto::ids::{PeerId, RoomId};
use kith::store::KdfParams;

use super::TempDir;

pub const PASS: &str = "trio test passphrase";
/// Generous: the machine running the tests may be heavily loaded.
pub const WAIT: Duration = Duration::from_secs(60);

pub struct Member {
    pub dir: TempDir,
    pub public: PublicIdentity,
    pub addr: SocketAddr,
    pub handle: Option<DaemonHandle>,
}

impl Member {
    pub fn handle(&self) -> &DaemonHandle {
        self.handle.as_ref().expect("running")
    }
}

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

/// Three daemons that know each other's addresses.
pub fn trio(name: &str) -> Vec<Member> {
    let accounts: Vec<(TempDir, PublicIdentity)> = (0..3)
        .map(|i| {
            let dir = TempDir::new(&format!("{name}-{i}"));
            let account = Account::create(
                &dir.path().join("data"),
                PASS,
                KdfParams::insecure_fast_for_tests(),
            )
            .expect("a fresh temp dir takes an account");
            let public = account.identity.public();
            (dir, public)
        })
        .collect();
    // Reserve three addresses first, so every daemon can be told the others'.
    let probes: Vec<DaemonHandle> = accounts
        .iter()
        .map(|(dir, _)| start(dir, NetConfig::loopback().unicast_bind, Vec::new()))
        .collect();
    let addrs: Vec<SocketAddr> = probes.iter().map(DaemonHandle::local_addr).collect();
    for probe in probes {
        probe.shutdown().expect("stops cleanly");
    }
    let publics: Vec<PublicIdentity> = accounts.iter().map(|a| a.1.clone()).collect();
    accounts
        .into_iter()
        .enumerate()
        .map(|(i, (dir, public))| {
            let handle = start(&dir, addrs[i], super::mesh_peers(&publics, &addrs, i));
            Member {
                dir,
                public,
                addr: addrs[i],
                handle: Some(handle),
            }
        })
        .collect()
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

/// A creates "kitchen" with B and C; both accept.
pub fn join_room(nodes: &[Member], events: &[Receiver<Event>]) -> RoomId {
    let ids: Vec<PeerId> = nodes.iter().map(|n| n.public.peer_id()).collect();
    let room = nodes[0]
        .handle()
        .create_room("kitchen", &[ids[1], ids[2]])
        .expect("A creates the room");
    for (node, rx) in nodes[1..].iter().zip(&events[1..]) {
        wait_for(rx, |e| {
            matches!(e, Event::RoomInvited { room: r, .. } if *r == room).then_some(())
        });
        node.handle().answer_invite(room, true).expect("accept");
        wait_for(rx, |e| {
            matches!(e, Event::RoomJoined { room: r, .. } if *r == room).then_some(())
        });
    }
    room
}
