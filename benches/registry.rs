//! Registry throughput and memory, on the sans-IO core (no sockets, so the
//! figures are the registry's own cost, not the kernel's).
//!
//! `cargo bench --no-default-features --bench registry`
//!
//! Memory per entry is *measured*: a counting global allocator records the
//! live heap bytes before and after registering N peers. The calculated
//! estimate the registry itself reports (`approx_memory_bytes`) is printed
//! beside it.

use kith::proto::crypto::Identity;
use kith::registry::wire::{Addresses, Message, Registration, SignedRegistration};
use kith::registry::{
    RateLimit, RegistryClient, RegistryClientConfig, RegistryConfig, RegistryState,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const N: usize = 50_000;
const UNIX_MS: u64 = 1_800_000_000_000;

fn source(i: usize) -> SocketAddr {
    let [a, b, c, d] = (i as u32).to_be_bytes();
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a.wrapping_add(10), b, c, d)), 7000)
}

fn main() {
    let mut rng = StdRng::seed_from_u64(1);
    let registry_identity = Identity::generate(&mut rng);
    let config = RegistryConfig {
        max_entries: N,
        rate_limit: RateLimit {
            burst: 1e12,
            per_second: 1e12,
        },
        max_sources: 2 * N,
        ..RegistryConfig::default()
    };
    let mut registry = RegistryState::new(registry_identity, [3; 32], config);
    let registry_key = registry.public_key();

    // Two addresses each: a LAN IPv4 and a global IPv6, a typical client.
    let addresses = Addresses::new(vec![
        "192.168.1.20:7733".parse().expect("literal"),
        "[2001:db8::20]:7733".parse().expect("literal"),
    ])
    .expect("under the cap");
    let mut peers = Vec::with_capacity(N);
    let datagrams: Vec<Vec<u8>> = (0..N)
        .map(|_| {
            let identity = Identity::generate(&mut rng);
            peers.push(identity.peer_id());
            let body = Registration {
                public_key: identity.public().to_bytes(),
                registry: registry_key,
                addresses: addresses.clone(),
                timestamp_ms: UNIX_MS,
                nonce: [5; 16],
            }
            .emit();
            let signature = identity.sign_registry(&Registration::signed_message(&body));
            Message::Register(SignedRegistration { body, signature })
                .emit()
                .expect("fits")
        })
        .collect();

    let now = Instant::now();
    let before = LIVE.load(Ordering::Relaxed);
    let started = Instant::now();
    for (i, bytes) in datagrams.iter().enumerate() {
        registry.handle_datagram(now, UNIX_MS, source(i), bytes);
        while registry.poll_transmit().is_some() {}
    }
    let elapsed = started.elapsed();
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(registry.len(), N, "every registration is accepted");
    println!(
        "registrations: {N} in {:.2?} = {:.0}/s (verify + sign the answer, one core)",
        elapsed,
        N as f64 / elapsed.as_secs_f64()
    );
    println!(
        "memory per entry: measured {:.0} B (live heap growth incl. rate-limit buckets, {} entries, 2 addresses); \
calculated estimate {:.0} B",
        (after - before) as f64 / N as f64,
        N,
        registry.approx_memory_bytes() as f64 / N as f64
    );

    // Lookups are sealed to the registry's key: made by a client ahead of
    // the clock, so only the registry's side (X25519, open, answer signed
    // and sealed) is timed.
    let lookups = 20_000;
    let mut asker = RegistryClient::new(
        Identity::generate(&mut rng),
        RegistryClientConfig::new(registry.public_key()),
        [5; 32],
    )
    .expect("a valid registry key");
    let sealed: Vec<Vec<u8>> = (0..lookups).map(|i| asker.lookup(peers[i % N])).collect();
    let started = Instant::now();
    for (i, bytes) in sealed.iter().enumerate() {
        registry.handle_datagram(now, UNIX_MS, source(i % N), bytes);
        while registry.poll_transmit().is_some() {}
    }
    let elapsed = started.elapsed();
    println!(
        "sealed lookups: {lookups} in {:.2?} = {:.0}/s (opened, answer signed and sealed, one core)",
        elapsed,
        lookups as f64 / elapsed.as_secs_f64()
    );

    let missing = 200_000;
    let started = Instant::now();
    for i in 0..missing {
        let bytes = Message::KeepAlive {
            peer: peers[i % N],
            token: [0; 16],
        }
        .emit()
        .expect("fits");
        registry.handle_datagram(
            now + Duration::from_millis(1),
            UNIX_MS,
            source(i % N),
            &bytes,
        );
        while registry.poll_transmit().is_some() {}
    }
    let elapsed = started.elapsed();
    println!(
        "keep-alives with a wrong token: {missing} in {:.2?} = {:.0}/s (hash + answer, no signature)",
        elapsed,
        missing as f64 / elapsed.as_secs_f64()
    );
}
