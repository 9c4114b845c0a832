//! The registry server on real loopback sockets: two clients register and
//! find each other; the key file is created private and reused.

use kith::proto::crypto::Identity;
use kith::proto::ids::PeerId;
use kith::registry::{
    ClientEvent, RegistryClient, RegistryClientConfig, RegistryConfig, RegistryCounters,
    RegistryError, ServeConfig, Server, load_or_create_key,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bound on every wait for the registry: it answers in milliseconds, but
/// the machine running the tests may be heavily loaded.
const PATIENCE: Duration = Duration::from_secs(60);

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as u64
}

struct Peer {
    socket: UdpSocket,
    client: RegistryClient,
}

impl Peer {
    fn new(seed: u64, registry_key: [u8; 32]) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a loopback socket");
        // The test fails rather than hangs if the registry never answers.
        socket
            .set_read_timeout(Some(PATIENCE))
            .expect("set a timeout");
        let identity = Identity::generate(&mut StdRng::seed_from_u64(seed));
        let mut client = RegistryClient::new(
            identity,
            RegistryClientConfig::new(registry_key),
            [seed as u8; 32],
        )
        .expect("valid registry key");
        let local = socket.local_addr().expect("bound");
        client.set_addresses(vec![local]).expect("one address");
        Self { socket, client }
    }

    /// Sends `bytes` to the registry and returns the first event its
    /// answers produce.
    fn ask(&mut self, registry: SocketAddr, bytes: &[u8]) -> ClientEvent {
        self.socket.send_to(bytes, registry).expect("send");
        let mut buffer = [0u8; 1500];
        loop {
            let (len, from) = self
                .socket
                .recv_from(&mut buffer)
                .expect("the registry answers within the timeout");
            assert_eq!(from, registry);
            if let Some(event) = self
                .client
                .handle_datagram(Instant::now(), unix_ms(), &buffer[..len])
                .expect("answers verify against the pinned key")
            {
                return event;
            }
        }
    }

    /// Looks `peer` up until the answer satisfies `done` (then `true`) or
    /// `patience` runs out (`false`).
    fn ask_until(
        &mut self,
        registry: SocketAddr,
        peer: PeerId,
        patience: Duration,
        done: impl Fn(&ClientEvent) -> bool,
    ) -> bool {
        let deadline = Instant::now() + patience;
        loop {
            let bytes = self.client.lookup(peer);
            if done(&self.ask(registry, &bytes)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn address(&self) -> SocketAddr {
        self.socket.local_addr().expect("bound")
    }
}

/// A registry server on loopback, on its own thread until `shutdown`.
struct Running {
    addr: SocketAddr,
    key: [u8; 32],
    shutdown: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<RegistryCounters, RegistryError>>,
}

impl Running {
    fn start() -> Self {
        let server = Server::bind(ServeConfig {
            listen: "127.0.0.1:0".parse().expect("literal address"),
            key_file: None,
            registry: RegistryConfig::default(),
        })
        .expect("bind the registry");
        let addr = server.local_addr().expect("bound");
        let key = server.public_key();
        let shutdown = Arc::new(AtomicBool::new(false));
        let thread = {
            let shutdown = Arc::clone(&shutdown);
            std::thread::spawn(move || server.run(&shutdown))
        };
        Running {
            addr,
            key,
            shutdown,
            thread,
        }
    }
}

#[test]
fn two_clients_register_and_find_each_other_over_udp() {
    let Running {
        addr: registry,
        key,
        shutdown,
        thread,
    } = Running::start();

    let (mut alice, mut bob) = (Peer::new(2, key), Peer::new(3, key));
    for peer in [&mut alice, &mut bob] {
        let bytes = peer.client.register(Instant::now(), unix_ms());
        assert_eq!(peer.ask(registry, &bytes), ClientEvent::Registered);
    }
    let alice_id = alice.client.peer_id();
    let bob_id = bob.client.peer_id();

    let bytes = alice.client.lookup(bob_id);
    let ClientEvent::Found {
        peer, addresses, ..
    } = alice.ask(registry, &bytes)
    else {
        panic!("Bob is found")
    };
    assert_eq!((peer, addresses), (bob_id, vec![bob.address()]));

    let bytes = bob.client.lookup(alice_id);
    let ClientEvent::Found {
        peer, addresses, ..
    } = bob.ask(registry, &bytes)
    else {
        panic!("Alice is found")
    };
    assert_eq!((peer, addresses), (alice_id, vec![alice.address()]));

    let stranger = PeerId([9; 32]);
    let bytes = bob.client.lookup(stranger);
    assert_eq!(
        bob.ask(registry, &bytes),
        ClientEvent::NotFound { peer: stranger }
    );

    shutdown.store(true, Ordering::Relaxed);
    let counters = thread
        .join()
        .expect("the server thread does not panic")
        .expect("the server stops cleanly");
    assert_eq!(counters.registrations, 2);
    assert_eq!(counters.lookups, 3);
}

#[test]
fn the_registry_key_file_is_private_and_reused() {
    let dir = std::env::temp_dir().join(format!("kith-registry-key-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("registry.key");
    let first = load_or_create_key(&path).expect("created");
    let second = load_or_create_key(&path).expect("reloaded");
    assert_eq!(first.public(), second.public());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::write(&path, b"short").expect("overwrite");
    assert!(
        load_or_create_key(&path).is_err(),
        "a damaged key is an error"
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// A daemon registered with the registry unregisters when it stops cleanly:
/// a contact looking it up is told at once, not after its keep-alives lapse.
#[test]
fn a_daemon_that_stops_is_forgotten_by_the_registry_at_once() {
    use kith::account::Account;
    use kith::daemon::{self, DaemonConfig, DiscoveryConfig, RegistryTarget};
    use kith::net::NetConfig;
    use kith::store::KdfParams;

    let Running {
        addr: registry,
        key,
        shutdown,
        thread,
    } = Running::start();

    let dir = std::env::temp_dir().join(format!("kith-test-unregister-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let account = Account::create(&dir, "pass", KdfParams::insecure_fast_for_tests())
        .expect("an account in a fresh dir");
    let id = account.identity.peer_id();
    drop(account);
    let daemon = daemon::start(
        &dir,
        "pass",
        DaemonConfig {
            net: NetConfig::loopback(),
            control_socket: false,
            discovery: DiscoveryConfig {
                mdns: false,
                registry: Some(RegistryTarget {
                    addr: registry,
                    public_key: key,
                }),
                ..DiscoveryConfig::default()
            },
            ..DaemonConfig::default()
        },
    )
    .expect("the daemon starts");

    let mut asker = Peer::new(5, key);
    let found = |event: &ClientEvent| matches!(event, ClientEvent::Found { .. });
    assert!(
        asker.ask_until(registry, id, PATIENCE, found),
        "the daemon registers"
    );
    // The registry has it; the daemon knows once it read the registry's
    // answer (only then can it unregister). On a loaded machine that
    // answer may still wait in its socket when the registry already
    // answers lookups.
    let deadline = Instant::now() + PATIENCE;
    while !daemon
        .discovery()
        .expect("the daemon answers")
        .registry
        .is_some_and(|r| r.registered)
    {
        assert!(
            Instant::now() < deadline,
            "the daemon never saw its registration"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon.shutdown().expect("stops cleanly");
    // The unregister is one datagram sent as the loop stops; a moment for
    // the registry to read it.
    let gone = |event: &ClientEvent| matches!(event, ClientEvent::NotFound { .. });
    assert!(
        asker.ask_until(registry, id, PATIENCE, gone),
        "forgotten after a clean stop"
    );

    shutdown.store(true, Ordering::Relaxed);
    let counters = thread
        .join()
        .expect("the server thread does not panic")
        .expect("the server stops cleanly");
    assert_eq!(counters.unregistrations, 1);
    let _ = std::fs::remove_dir_all(&dir);
}
