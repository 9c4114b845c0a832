//! The registry's sans-IO cores, driven with virtual time: registration,
//! lookup, forgery and replay refusal, expiry, restart, flooding and
//! malformed input.

use kith::proto::crypto::{Identity, seal_answer};
use kith::proto::ids::PeerId;
use kith::registry::wire::{
    Addresses, Answer, LookupRequest, Message, Registration, SignedAnswer, SignedRegistration,
};
use kith::registry::{
    ClientEvent, RateLimit, RegistryClient, RegistryClientConfig, RegistryConfig, RegistryError,
    RegistryState,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

const K: Duration = Duration::from_secs(10);
/// A fixed wall clock: the tests move `Instant`s and this together.
const UNIX_MS: u64 = 1_800_000_000_000;

fn identity(seed: u64) -> Identity {
    Identity::generate(&mut StdRng::seed_from_u64(seed))
}

fn registry(config: RegistryConfig) -> RegistryState {
    RegistryState::new(identity(1), [7; 32], config)
}

fn client(seed: u64, registry: &RegistryState) -> RegistryClient {
    let mut client = RegistryClient::new(
        identity(seed),
        RegistryClientConfig::new(registry.public_key()),
        [seed as u8; 32],
    )
    .expect("the registry key is valid");
    client
        .set_addresses(vec![addr(seed as u8, 4000 + seed as u16)])
        .expect("one address is under the cap");
    client
}

fn addr(host: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, host)), port)
}

fn unix(start: Instant, now: Instant) -> u64 {
    UNIX_MS + now.duration_since(start).as_millis() as u64
}

/// Sends `bytes` from `source` to the registry and feeds every reply to
/// `client`, returning the events.
fn exchange(
    registry: &mut RegistryState,
    client: &mut RegistryClient,
    now: Instant,
    unix_ms: u64,
    source: SocketAddr,
    bytes: &[u8],
) -> Vec<ClientEvent> {
    registry.handle_datagram(now, unix_ms, source, bytes);
    let mut events = Vec::new();
    while let Some(transmit) = registry.poll_transmit() {
        assert_eq!(
            transmit.destination, source,
            "replies go back to the sender"
        );
        if let Some(event) = client
            .handle_datagram(now, unix_ms, &transmit.payload)
            .expect("registry replies verify")
        {
            events.push(event);
        }
    }
    events
}

fn register(
    registry: &mut RegistryState,
    client: &mut RegistryClient,
    now: Instant,
    unix_ms: u64,
    source: SocketAddr,
) -> Vec<ClientEvent> {
    let bytes = client.register(now, unix_ms);
    exchange(registry, client, now, unix_ms, source, &bytes)
}

fn lookup(
    registry: &mut RegistryState,
    client: &mut RegistryClient,
    now: Instant,
    source: SocketAddr,
    peer: PeerId,
) -> ClientEvent {
    let bytes = client.lookup(peer);
    let mut events = exchange(registry, client, now, UNIX_MS, source, &bytes);
    assert_eq!(events.len(), 1, "one answer per lookup: {events:?}");
    events.remove(0)
}

/// Re-signs a registration's body with `signer` (or keeps the signature).
fn rebuild(bytes: &[u8], edit: impl FnOnce(&mut SignedRegistration)) -> Vec<u8> {
    let Message::Register(mut signed) = Message::parse(bytes).expect("a valid registration") else {
        panic!("not a registration")
    };
    edit(&mut signed);
    Message::Register(signed).emit().expect("still fits")
}

#[test]
fn valid_registration_then_lookup_finds_the_peer() {
    let start = Instant::now();
    let mut registry = registry(RegistryConfig::default());
    let (mut alice, mut bob) = (client(2, &registry), client(3, &registry));
    let events = register(&mut registry, &mut alice, start, UNIX_MS, addr(2, 1));
    assert_eq!(events, vec![ClientEvent::Registered]);
    assert!(alice.is_registered());
    assert_eq!(registry.len(), 1);

    let found = lookup(&mut registry, &mut bob, start, addr(3, 1), alice.peer_id());
    assert_eq!(
        found,
        ClientEvent::Found {
            peer: alice.peer_id(),
            public_key: identity(2).public().to_bytes(),
            addresses: vec![addr(2, 4002)],
            last_seen_age: Duration::ZERO,
        }
    );
    let bob_id = bob.peer_id();
    let missing = lookup(&mut registry, &mut bob, start, addr(3, 1), bob_id);
    assert_eq!(missing, ClientEvent::NotFound { peer: bob_id });
    assert_eq!(registry.counters().registrations, 1);
    assert_eq!(registry.counters().lookups, 2);
}

#[test]
fn bad_signature_is_rejected_without_a_reply() {
    let start = Instant::now();
    let mut registry = registry(RegistryConfig::default());
    let mut alice = client(2, &registry);
    let bytes = alice.register(start, UNIX_MS);
    let forged = rebuild(&bytes, |signed| signed.signature[10] ^= 1);
    registry.handle_datagram(start, UNIX_MS, addr(2, 1), &forged);
    assert_eq!(registry.counters().bad_signature, 1);
    assert!(registry.is_empty());
    assert!(registry.poll_transmit().is_none(), "no answer to a forgery");

    // A flipped address byte breaks the signature just the same.
    let tampered = rebuild(&bytes, |signed| {
        let last = signed.body.len() - 30;
        signed.body[last] ^= 1;
    });
    registry.handle_datagram(start, UNIX_MS, addr(2, 1), &tampered);
    assert_eq!(
        registry.counters().bad_signature + registry.counters().malformed,
        2
    );
    assert!(registry.is_empty());
}

#[test]
fn nobody_can_register_for_someone_elses_peer_id() {
    let start = Instant::now();
    let mut registry = registry(RegistryConfig::default());
    let mut alice = client(2, &registry);
    register(&mut registry, &mut alice, start, UNIX_MS, addr(2, 1));

    // Mallory claims Alice's public key with newer addresses, but can only
    // sign with her own key.
    let mallory = identity(66);
    let body = Registration {
        public_key: identity(2).public().to_bytes(),
        registry: registry.public_key(),
        addresses: Addresses::new(vec![addr(66, 6666)]).expect("under the cap"),
        timestamp_ms: UNIX_MS + 5_000,
        nonce: [0; 16],
    }
    .emit();
    let signature = mallory.sign_registry(&Registration::signed_message(&body));
    let bytes = Message::Register(SignedRegistration { body, signature })
        .emit()
        .expect("fits");
    registry.handle_datagram(start, UNIX_MS + 5_000, addr(66, 1), &bytes);
    assert_eq!(registry.counters().bad_signature, 1);

    // Alice's entry is untouched.
    let mut bob = client(3, &registry);
    let found = lookup(&mut registry, &mut bob, start, addr(3, 1), alice.peer_id());
    let ClientEvent::Found { addresses, .. } = found else {
        panic!("Alice is still found: {found:?}")
    };
    assert_eq!(addresses, vec![addr(2, 4002)]);
}

#[test]
fn registration_for_another_registry_is_rejected() {
    let start = Instant::now();
    let mut registry = registry(RegistryConfig::default());
    let other = RegistryState::new(identity(99), [1; 32], RegistryConfig::default());
    let mut alice = client(2, &other);
    let bytes = alice.register(start, UNIX_MS);
    registry.handle_datagram(start, UNIX_MS, addr(2, 1), &bytes);
    assert_eq!(registry.counters().wrong_registry, 1);
    assert!(registry.is_empty());
}

#[test]
fn replayed_or_older_registration_cannot_roll_an_entry_back() {
    let start = Instant::now();
    let mut registry = registry(RegistryConfig::default());
    let mut alice = client(2, &registry);
    let old = alice.register(start, UNIX_MS);
    exchange(&mut registry, &mut alice, start, UNIX_MS, addr(2, 1), &old);

    alice
        .set_addresses(vec![addr(2, 5000)])
        .expect("under the cap");
    let new = alice.register(start, UNIX_MS + 1_000);
    let events = exchange(
        &mut registry,
        &mut alice,
        start,
        UNIX_MS + 1_000,
        addr(2, 1),
        &new,
    );
    assert_eq!(events, vec![ClientEvent::Registered]);

    // The old registration (older) and the new one again (equal) both fail.
    registry.handle_datagram(start, UNIX_MS + 2_000, addr(9, 1), &old);
    registry.handle_datagram(start, UNIX_MS + 2_000, addr(9, 1), &new);
    assert_eq!(registry.counters().stale, 2);
    assert!(registry.poll_transmit().is_none());

    let mut bob = client(3, &registry);
    let ClientEvent::Found { addresses, .. } =
        lookup(&mut registry, &mut bob, start, addr(3, 1), alice.peer_id())
    else {
        panic!("Alice is found")
    };
    assert_eq!(addresses, vec![addr(2, 5000)], "the newer addresses stay");

    // Far outside the registry's clock: refused even for a new peer.
    let mut carol = client(4, &registry);
    let skewed = carol.register(start, UNIX_MS + 3_600_000);
    registry.handle_datagram(start, UNIX_MS, addr(4, 1), &skewed);
    assert_eq!(registry.counters().clock_skew, 1);
}

#[test]
fn three_missed_keepalives_make_a_peer_unavailable_then_forgotten() {
    let start = Instant::now();
    let config = RegistryConfig::default();
    let forget_after = config.forget_after;
    let mut registry = registry(config);
    let (mut alice, mut bob) = (client(2, &registry), client(3, &registry));
    register(&mut registry, &mut alice, start, UNIX_MS, addr(2, 1));

    // Alice keeps alive for a minute, driven by her own timer.
    let mut now = start;
    while now < start + Duration::from_secs(60) {
        now = alice
            .poll_timeout()
            .expect("a registered client has a timer");
        let bytes = alice
            .handle_timeout(now, unix(start, now))
            .expect("a keep-alive is due");
        let events = exchange(
            &mut registry,
            &mut alice,
            now,
            unix(start, now),
            addr(2, 1),
            &bytes,
        );
        assert!(events.is_empty(), "acks are silent: {events:?}");
    }
    assert_eq!(registry.counters().keepalives, 6);
    let last = now;

    // Then she goes silent. Just under 3 intervals: still available.
    let at = last + 3 * K - Duration::from_millis(1);
    assert!(matches!(
        lookup(&mut registry, &mut bob, at, addr(3, 1), alice.peer_id()),
        ClientEvent::Found { .. }
    ));
    let at = last + 3 * K + Duration::from_millis(1);
    assert_eq!(
        lookup(&mut registry, &mut bob, at, addr(3, 1), alice.peer_id()),
        ClientEvent::Unavailable {
            peer: alice.peer_id(),
            last_seen_age: 3 * K + Duration::from_millis(1)
        }
    );

    // Later the entry is forgotten by the registry's own timer.
    let mut now = at;
    while now < last + forget_after {
        now = registry
            .poll_timeout()
            .expect("entries keep the sweep running");
        registry.handle_timeout(now);
    }
    assert!(registry.is_empty());
    assert_eq!(registry.counters().forgotten, 1);
    assert_eq!(
        lookup(&mut registry, &mut bob, now, addr(3, 1), alice.peer_id()),
        ClientEvent::NotFound {
            peer: alice.peer_id()
        }
    );
}

#[test]
fn after_a_registry_restart_the_client_re_registers_within_one_keepalive() {
    let start = Instant::now();
    let mut registry = registry(RegistryConfig::default());
    let mut alice = client(2, &registry);
    register(&mut registry, &mut alice, start, UNIX_MS, addr(2, 1));

    // The registry restarts 3 s after the registration: same key, new token
    // secret, empty table.
    let restart = start + Duration::from_secs(3);
    let mut registry = RegistryState::new(identity(1), [8; 32], RegistryConfig::default());

    let mut events = Vec::new();
    while !events.contains(&ClientEvent::Registered) {
        let now = alice.poll_timeout().expect("the client always has a timer");
        assert!(
            now <= restart + K,
            "re-registration is late: {:?}",
            now - restart
        );
        let bytes = alice
            .handle_timeout(now, unix(start, now))
            .expect("something is due");
        events.extend(exchange(
            &mut registry,
            &mut alice,
            now,
            unix(start, now),
            addr(2, 1),
            &bytes,
        ));
    }
    assert_eq!(
        events,
        vec![ClientEvent::Forgotten, ClientEvent::Registered]
    );
    assert_eq!(registry.len(), 1);
    assert_eq!(registry.counters().unknown_peer, 1);
}

#[test]
fn a_client_that_hears_nothing_registers_afresh() {
    let start = Instant::now();
    let mut registry = registry(RegistryConfig::default());
    let mut alice = client(2, &registry);
    register(&mut registry, &mut alice, start, UNIX_MS, addr(2, 1));
    // Three keep-alives vanish; the fourth timeout sends a registration.
    for round in 1..=4u32 {
        let now = alice.poll_timeout().expect("registered");
        assert_eq!(now, start + K * round);
        let bytes = alice.handle_timeout(now, unix(start, now)).expect("due");
        let expect_register = round == 4;
        assert_eq!(
            matches!(Message::parse(&bytes), Ok(Message::Register(_))),
            expect_register,
            "round {round}"
        );
    }
}

#[test]
fn answers_not_signed_by_the_pinned_registry_are_refused() {
    let start = Instant::now();
    let mut honest = registry(RegistryConfig::default());
    let mut impostor = RegistryState::new(identity(99), [1; 32], RegistryConfig::default());
    let mut bob = client(3, &honest);
    let bytes = bob.lookup(identity(2).peer_id());
    impostor.handle_datagram(start, UNIX_MS, addr(3, 1), &bytes);
    // The lookup is sealed to the pinned registry: the impostor cannot
    // even read it.
    assert!(impostor.poll_transmit().is_none());
    // Sealed under the lookup's key (as the pinned registry would) but
    // signed by another key: refused.
    let Ok(Message::SealedLookup { ephemeral, sealed }) = Message::parse(&bytes) else {
        panic!("not a lookup")
    };
    let (request, key) = identity(1)
        .open_request(&ephemeral, &LookupRequest::aad(b'l'), &sealed)
        .expect("sealed to the pinned registry");
    let LookupRequest { query, peer } = LookupRequest::parse(&request).expect("a lookup");
    let body = Answer::NotFound { query, peer }.emit();
    let signature = identity(99).sign_registry(&Answer::signed_message(&body));
    let padded = SignedAnswer { body, signature }.padded().expect("fits");
    let sealed = seal_answer(&key, &LookupRequest::aad(b'a'), &padded).expect("seals");
    let forged = Message::SealedAnswer { ephemeral, sealed }
        .emit()
        .expect("fits");
    assert!(matches!(
        bob.handle_datagram(start, UNIX_MS, &forged),
        Err(RegistryError::BadSignature)
    ));

    // An unsolicited (replayed) answer is refused as well.
    let bytes = bob.lookup(identity(2).peer_id());
    honest.handle_datagram(start, UNIX_MS, addr(3, 1), &bytes);
    let reply = honest.poll_transmit().expect("answered");
    assert!(bob.handle_datagram(start, UNIX_MS, &reply.payload).is_ok());
    assert!(
        bob.handle_datagram(start, UNIX_MS, &reply.payload).is_err(),
        "replay"
    );
}

/// The registration inside a `Register` datagram.
fn signed_registration(bytes: &[u8]) -> SignedRegistration {
    let Message::Register(signed) = Message::parse(bytes).expect("a valid registration") else {
        panic!("not a registration")
    };
    signed
}

/// What a dishonest registry holding the pinned key (`identity(1)`) can
/// send: a correctly signed `Found` answer to `lookup`, carrying any
/// registration it ever saw.
fn found_answer(lookup: &[u8], registration: SignedRegistration) -> Vec<u8> {
    let Ok(Message::SealedLookup { ephemeral, sealed }) = Message::parse(lookup) else {
        panic!("not a lookup")
    };
    let (request, key) = identity(1)
        .open_request(&ephemeral, &LookupRequest::aad(b'l'), &sealed)
        .expect("sealed to the registry's key");
    let LookupRequest { query, .. } = LookupRequest::parse(&request).expect("a lookup");
    let body = Answer::Found {
        query,
        registration,
        last_seen_age_ms: 0,
    }
    .emit();
    let signature = identity(1).sign_registry(&Answer::signed_message(&body));
    let padded = SignedAnswer { body, signature }.padded().expect("fits");
    let sealed = seal_answer(&key, &LookupRequest::aad(b'a'), &padded).expect("seals");
    Message::SealedAnswer { ephemeral, sealed }
        .emit()
        .expect("fits")
}

#[test]
fn old_future_or_foreign_registrations_in_signed_answers_are_refused() {
    let start = Instant::now();
    let registry = registry(RegistryConfig::default());
    let mut bob = client(3, &registry);
    let alice_id = identity(2).peer_id();
    // Alice's genuine registrations: one from an hour ago, one for another
    // registry, one from an hour ahead (a clock that was wrong), and a
    // current one.
    let hour = 3_600_000;
    let old = signed_registration(&client(2, &registry).register(start, UNIX_MS - hour));
    let foreign_registry = RegistryState::new(identity(99), [1; 32], RegistryConfig::default());
    let foreign = signed_registration(&client(2, &foreign_registry).register(start, UNIX_MS));
    let future = signed_registration(&client(2, &registry).register(start, UNIX_MS + hour));
    let current = signed_registration(&client(2, &registry).register(start, UNIX_MS - 60_000));

    let answer = found_answer(&bob.lookup(alice_id), old);
    assert!(matches!(
        bob.handle_datagram(start, UNIX_MS, &answer),
        Err(RegistryError::StaleRegistration)
    ));
    let answer = found_answer(&bob.lookup(alice_id), foreign);
    assert!(matches!(
        bob.handle_datagram(start, UNIX_MS, &answer),
        Err(RegistryError::WrongRegistry)
    ));
    let answer = found_answer(&bob.lookup(alice_id), future);
    assert!(matches!(
        bob.handle_datagram(start, UNIX_MS, &answer),
        Err(RegistryError::StaleRegistration)
    ));
    let counters = bob.counters().clone();
    assert_eq!(
        (counters.stale, counters.wrong_registry, counters.clock_skew),
        (1, 1, 1)
    );

    // A registration a minute old is what a live peer's looks like.
    let answer = found_answer(&bob.lookup(alice_id), current);
    assert!(matches!(
        bob.handle_datagram(start, UNIX_MS, &answer),
        Ok(Some(ClientEvent::Found { peer, .. })) if peer == alice_id
    ));
}

#[test]
fn a_registered_client_renews_its_registration_so_it_never_goes_stale() {
    let start = Instant::now();
    let mut registry = registry(RegistryConfig::default());
    let (mut alice, mut bob) = (client(2, &registry), client(3, &registry));
    register(&mut registry, &mut alice, start, UNIX_MS, addr(2, 1));
    // An hour of Alice's timers, every message answered.
    let mut now = start;
    while now < start + Duration::from_secs(3_600) {
        now = alice
            .poll_timeout()
            .expect("a registered client has a timer");
        let bytes = alice
            .handle_timeout(now, unix(start, now))
            .expect("something is due");
        exchange(
            &mut registry,
            &mut alice,
            now,
            unix(start, now),
            addr(2, 1),
            &bytes,
        );
        assert!(alice.is_registered());
    }
    assert!(registry.counters().registrations >= 12);
    let bytes = bob.lookup(alice.peer_id());
    let events = exchange(
        &mut registry,
        &mut bob,
        now,
        unix(start, now),
        addr(3, 1),
        &bytes,
    );
    assert!(
        matches!(events.as_slice(), [ClientEvent::Found { .. }]),
        "{events:?}"
    );
    assert_eq!(bob.counters().stale, 0);
}

#[test]
fn a_single_source_flood_is_rate_limited_and_others_are_served() {
    let start = Instant::now();
    let mut registry = registry(RegistryConfig::default());
    let mut fake = client(50, &registry);
    let template = fake.register(start, UNIX_MS);
    for i in 0..100_000u32 {
        let bytes = rebuild(&template, |signed| {
            signed.signature[..4].copy_from_slice(&i.to_be_bytes());
        });
        registry.handle_datagram(start, UNIX_MS, addr(200, (i % 60_000) as u16), &bytes);
    }
    let counters = registry.counters().clone();
    assert_eq!(counters.rate_limited + counters.bad_signature, 100_000);
    assert!(
        counters.bad_signature <= 64,
        "only the burst reaches verification: {counters:?}"
    );
    assert!(registry.is_empty());

    let mut alice = client(2, &registry);
    let events = register(&mut registry, &mut alice, start, UNIX_MS, addr(2, 1));
    assert_eq!(events, vec![ClientEvent::Registered]);
}

#[test]
fn a_flood_of_100k_validly_signed_registrations_stays_under_the_cap() {
    const CAP: usize = 10_000;
    let start = Instant::now();
    let config = RegistryConfig {
        max_entries: CAP,
        // Every fake comes from its own address and nothing is limited, so
        // the table cap alone has to hold.
        rate_limit: RateLimit {
            burst: 1e9,
            per_second: 1e9,
        },
        max_sources: 1_000,
        ..RegistryConfig::default()
    };
    let mut registry = registry(config);
    let mut alice = client(2, &registry);
    register(&mut registry, &mut alice, start, UNIX_MS, addr(2, 1));

    let mut rng = StdRng::seed_from_u64(42);
    let t = start + Duration::from_secs(1);
    for i in 0..100_000u32 {
        let fake = Identity::generate(&mut rng);
        let body = Registration {
            public_key: fake.public().to_bytes(),
            registry: registry.public_key(),
            addresses: Addresses::new(vec![addr(1, 1); 8]).expect("at the cap"),
            timestamp_ms: UNIX_MS + 1_000,
            nonce: [0; 16],
        }
        .emit();
        let signature = fake.sign_registry(&Registration::signed_message(&body));
        let bytes = Message::Register(SignedRegistration { body, signature })
            .emit()
            .expect("fits");
        let [a, b, c, d] = i.to_be_bytes();
        let source = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a.wrapping_add(100), b, c, d)), 9);
        registry.handle_datagram(t, UNIX_MS + 1_000, source, &bytes);
        while registry.poll_transmit().is_some() {}
        assert!(registry.len() <= CAP);
    }
    let counters = registry.counters().clone();
    assert_eq!(registry.len(), CAP);
    assert_eq!(counters.registrations, CAP as u64);
    assert_eq!(counters.table_full, 100_000 - (CAP as u64 - 1));
    let memory = registry.approx_memory_bytes();
    assert!(
        memory < CAP * 1024,
        "about 1 KiB per entry at most, estimated {memory} bytes"
    );

    // Alice, registered before the flood, keeps alive and is found.
    let now = alice.poll_timeout().expect("registered");
    let bytes = alice.handle_timeout(now, unix(start, now)).expect("due");
    exchange(
        &mut registry,
        &mut alice,
        now,
        unix(start, now),
        addr(2, 1),
        &bytes,
    );
    let mut bob = client(3, &registry);
    assert!(matches!(
        lookup(&mut registry, &mut bob, now, addr(3, 1), alice.peer_id()),
        ClientEvent::Found { .. }
    ));

    // Once the fakes have missed their keep-alives, a newcomer evicts one.
    let later = t + 3 * K + Duration::from_secs(1);
    let events = register(
        &mut registry,
        &mut bob,
        later,
        unix(start, later),
        addr(3, 1),
    );
    assert_eq!(events, vec![ClientEvent::Registered]);
    assert_eq!(registry.counters().evicted, 1);
    assert_eq!(registry.len(), CAP);
}

#[test]
fn eight_ipv6_addresses_fit_and_nine_do_not() {
    let v6 = SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0xfe80, 1, 2, 3, 4, 5, 6, 7)),
        65535,
    );
    assert!(Addresses::new(vec![v6; 8]).is_ok());
    assert!(Addresses::new(vec![v6; 9]).is_err());

    let start = Instant::now();
    let mut registry = registry(RegistryConfig::default());
    let mut alice = client(2, &registry);
    alice.set_addresses(vec![v6; 8]).expect("at the cap");
    let mut bob = client(3, &registry);
    register(&mut registry, &mut alice, start, UNIX_MS, addr(2, 1));
    let ClientEvent::Found { addresses, .. } =
        lookup(&mut registry, &mut bob, start, addr(3, 1), alice.peer_id())
    else {
        panic!("found")
    };
    assert_eq!(addresses, vec![v6; 8]);
}

#[test]
fn unregister_removes_the_entry() {
    let start = Instant::now();
    let mut registry = registry(RegistryConfig::default());
    let mut alice = client(2, &registry);
    register(&mut registry, &mut alice, start, UNIX_MS, addr(2, 1));
    let bytes = alice.unregister().expect("registered");
    registry.handle_datagram(start, UNIX_MS, addr(2, 1), &bytes);
    assert!(registry.is_empty());
    assert_eq!(registry.counters().unregistrations, 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1400), prefix in any::<bool>()) {
        let start = Instant::now();
        let mut registry = registry(RegistryConfig::default());
        let mut alice = client(2, &registry);
        let bytes = if prefix { [b"kr\x01".as_slice(), &bytes].concat() } else { bytes };
        registry.handle_datagram(start, UNIX_MS, addr(9, 9), &bytes);
        let _ = alice.handle_datagram(start, UNIX_MS, &bytes);
        // Nothing random is a valid registration.
        prop_assert!(registry.is_empty());
    }

    #[test]
    fn mutated_registrations_never_panic_and_never_register(index in 0usize..400, bit in 0u8..8) {
        let start = Instant::now();
        let mut registry = registry(RegistryConfig::default());
        let mut alice = client(2, &registry);
        let mut bytes = alice.register(start, UNIX_MS);
        let index = index % bytes.len();
        bytes[index] ^= 1 << bit;
        registry.handle_datagram(start, UNIX_MS, addr(9, 9), &bytes);
        prop_assert!(registry.is_empty());
    }
}

#[test]
fn wire_checks_size_magic_version_and_trailing_bytes() {
    use kith::proto::wire::WireError;
    let message = Message::SealedLookup {
        ephemeral: [1; 32],
        sealed: vec![7; 60],
    };
    let bytes = message.emit().expect("fits");
    assert_eq!(Message::parse(&bytes), Ok(message));

    let mut version = bytes.clone();
    version[2] = 1;
    assert_eq!(Message::parse(&version), Err(WireError::UnknownVersion(1)));
    let mut magic = bytes.clone();
    magic[..2].copy_from_slice(b"kt");
    assert_eq!(Message::parse(&magic), Err(WireError::BadMagic));
    let trailing = [bytes.as_slice(), &[0]].concat();
    assert_eq!(Message::parse(&trailing), Err(WireError::TrailingBytes(1)));
    assert_eq!(Message::parse(&[0; 1201]), Err(WireError::TooLarge(1201)));

    let start = Instant::now();
    let mut registry = registry(RegistryConfig::default());
    registry.handle_datagram(start, UNIX_MS, addr(9, 9), &version);
    registry.handle_datagram(start, UNIX_MS, addr(9, 9), &magic);
    assert_eq!(registry.counters().unknown_version, 1);
    assert_eq!(registry.counters().malformed, 1);
}

/// A passive observer of lookups and their answers learns neither whom a
/// client looks for nor anything of the answer: the looked-up id and key
/// appear in no datagram, and found and not-found answers are the same
/// size. Only the registry's key opens a lookup.
#[test]
fn lookups_and_answers_are_sealed_to_the_registry() {
    let start = Instant::now();
    let mut registry = registry(RegistryConfig::default());
    let mut alice = client(2, &registry);
    let mut bob = client(3, &registry);
    let alice_id = identity(2).peer_id();
    let alice_key = identity(2).public().to_bytes();
    let bytes = alice.register(start, UNIX_MS);
    registry.handle_datagram(start, UNIX_MS, addr(2, 1), &bytes);
    let reply = registry.poll_transmit().expect("registered");
    assert!(
        alice
            .handle_datagram(start, UNIX_MS, &reply.payload)
            .is_ok()
    );

    let lookup = bob.lookup(alice_id);
    let missing = bob.lookup(identity(7).peer_id());
    for bytes in [&lookup, &missing] {
        assert!(!bytes.windows(32).any(|w| w == alice_id.0));
        assert!(!bytes.windows(32).any(|w| w == identity(7).peer_id().0));
    }
    assert_eq!(lookup.len(), missing.len(), "a lookup's size says nothing");
    // Only the registry's key opens it: another registry drops it.
    let mut other = RegistryState::new(identity(99), [1; 32], RegistryConfig::default());
    other.handle_datagram(start, UNIX_MS, addr(3, 1), &lookup);
    assert!(other.poll_transmit().is_none());
    assert_eq!(other.counters().malformed, 1);

    registry.handle_datagram(start, UNIX_MS, addr(3, 1), &lookup);
    let found = registry.poll_transmit().expect("answered").payload;
    registry.handle_datagram(start, UNIX_MS, addr(3, 1), &missing);
    let not_found = registry.poll_transmit().expect("answered").payload;
    assert_eq!(
        found.len(),
        not_found.len(),
        "found and not found look alike"
    );
    for bytes in [&found, &not_found] {
        assert!(!bytes.windows(32).any(|w| w == alice_id.0 || w == alice_key));
    }
    assert!(matches!(
        bob.handle_datagram(start, UNIX_MS, &found),
        Ok(Some(ClientEvent::Found { peer, .. })) if peer == alice_id
    ));
    assert!(matches!(
        bob.handle_datagram(start, UNIX_MS, &not_found),
        Ok(Some(ClientEvent::NotFound { .. }))
    ));
    // A replayed answer, and an answer to another client's lookup, open
    // nothing.
    assert!(bob.handle_datagram(start, UNIX_MS, &found).is_err());
    let carol_lookup = client(4, &registry).lookup(alice_id);
    registry.handle_datagram(start, UNIX_MS, addr(4, 1), &carol_lookup);
    let carols = registry.poll_transmit().expect("answered").payload;
    assert!(bob.handle_datagram(start, UNIX_MS, &carols).is_err());
}
