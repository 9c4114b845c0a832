//! The registry's sans-IO core: datagrams and time in, datagrams out.

use super::wire::{
    Answer, LookupRequest, MAX_SIGNED_BODY, Message, Registration, SignedAnswer,
    SignedRegistration, Token,
};
use crate::proto::crypto::{Identity, PublicIdentity, seal_answer};
use crate::proto::ids::PeerId;
use crate::proto::wire::WireError;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// A per-source token bucket: `burst` datagrams at once, then `per_second`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub burst: f64,
    pub per_second: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        // Generous for a NAT with a few dozen kith users behind it (each
        // sends one keep-alive per interval and a few lookups), tight
        // enough that one source cannot make us verify many signatures.
        Self {
            burst: 64.0,
            per_second: 32.0,
        }
    }
}

/// Tunables of the registry. `Default` gives the documented values.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// How often clients send keep-alives (announced in `Registered`).
    pub keepalive_interval: Duration,
    /// After this many intervals without a word, a peer is `Unavailable`.
    pub missed_keepalives: u32,
    /// After this long without a word, an entry is forgotten. Must exceed
    /// `max_clock_skew`, so a forgotten entry cannot be replayed back.
    pub forget_after: Duration,
    /// Registrations further than this from the registry's clock are refused.
    pub max_clock_skew: Duration,
    /// Most entries held at once.
    pub max_entries: usize,
    /// Per-source rate limit, checked before any parsing.
    pub rate_limit: RateLimit,
    /// Most source buckets kept; later sources share one overflow bucket.
    pub max_sources: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            keepalive_interval: Duration::from_secs(10),
            missed_keepalives: 3,
            forget_after: Duration::from_secs(600),
            max_clock_skew: Duration::from_secs(120),
            max_entries: 100_000,
            rate_limit: RateLimit::default(),
            max_sources: 65_536,
        }
    }
}

impl RegistryConfig {
    /// How long a peer may be silent and still be reported available.
    pub fn expiry(&self) -> Duration {
        self.keepalive_interval * self.missed_keepalives
    }
}

/// What happened to datagrams, by outcome. Every drop has its own counter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryCounters {
    pub registrations: u64,
    pub keepalives: u64,
    pub lookups: u64,
    pub unregistrations: u64,
    /// Dropped: the source exceeded its token bucket.
    pub rate_limited: u64,
    /// Dropped: not a registry datagram, or it does not decode.
    pub malformed: u64,
    /// Dropped: a registry datagram of another wire version.
    pub unknown_version: u64,
    /// Dropped: a registration with an invalid or weak public key.
    pub bad_public_key: u64,
    /// Dropped: a registration whose signature does not verify.
    pub bad_signature: u64,
    /// Dropped: a registration meant for another registry.
    pub wrong_registry: u64,
    /// Dropped: a registration not newer than the one held (a replay).
    pub stale: u64,
    /// Dropped: a registration timestamp too far from our clock.
    pub clock_skew: u64,
    /// Dropped: a new peer while the table is full of live entries.
    pub table_full: u64,
    /// Answered `UnknownPeer`: keep-alive for a peer we do not hold.
    pub unknown_peer: u64,
    /// Answered `UnknownPeer`: keep-alive with a token that does not match.
    pub bad_token: u64,
    /// Dropped: a registry-to-client message sent to the registry.
    pub unexpected: u64,
    /// Entries removed because they expired and space was needed.
    pub evicted: u64,
    /// Entries forgotten after `forget_after` of silence.
    pub forgotten: u64,
}

impl std::fmt::Display for RegistryCounters {
    /// One line, every counter as `name value`, comma-separated, in the
    /// order of the fields (the outcomes first, then the drops).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Taken apart field by field, so a new counter cannot be left out.
        let Self {
            registrations,
            keepalives,
            lookups,
            unregistrations,
            rate_limited,
            malformed,
            unknown_version,
            bad_public_key,
            bad_signature,
            wrong_registry,
            stale,
            clock_skew,
            table_full,
            unknown_peer,
            bad_token,
            unexpected,
            evicted,
            forgotten,
        } = self;
        let counters = [
            ("registrations", registrations),
            ("keepalives", keepalives),
            ("lookups", lookups),
            ("unregistrations", unregistrations),
            ("rate_limited", rate_limited),
            ("malformed", malformed),
            ("unknown_version", unknown_version),
            ("bad_public_key", bad_public_key),
            ("bad_signature", bad_signature),
            ("wrong_registry", wrong_registry),
            ("stale", stale),
            ("clock_skew", clock_skew),
            ("table_full", table_full),
            ("unknown_peer", unknown_peer),
            ("bad_token", bad_token),
            ("unexpected", unexpected),
            ("evicted", evicted),
            ("forgotten", forgotten),
        ];
        for (i, (name, value)) in counters.into_iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            write!(f, "{separator}{name} {value}")?;
        }
        Ok(())
    }
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub payload: Vec<u8>,
}

struct Entry {
    /// The peer's signed registration, verbatim: lookups hand it out so
    /// clients verify the peer's own signature.
    registration: SignedRegistration,
    timestamp_ms: u64,
    token: Token,
    last_seen: Instant,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(limit: &RateLimit, now: Instant) -> Self {
        Self {
            tokens: limit.burst,
            updated: now,
        }
    }

    fn refill(&mut self, limit: &RateLimit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.per_second).min(limit.burst);
        self.updated = now;
    }

    fn take(&mut self, limit: &RateLimit, now: Instant) -> bool {
        self.refill(limit, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The registry core. Feed it datagrams with [`handle_datagram`], drain
/// [`poll_transmit`], and call [`handle_timeout`] at [`poll_timeout`].
///
/// [`handle_datagram`]: RegistryState::handle_datagram
/// [`poll_transmit`]: RegistryState::poll_transmit
/// [`handle_timeout`]: RegistryState::handle_timeout
/// [`poll_timeout`]: RegistryState::poll_timeout
pub struct RegistryState {
    identity: Identity,
    public_key: [u8; 32],
    token_key: [u8; 32],
    config: RegistryConfig,
    entries: HashMap<PeerId, Entry>,
    /// Entries ordered by last contact, oldest first: eviction and
    /// forgetting take from the front without scanning.
    by_age: BTreeSet<(Instant, PeerId)>,
    /// Heap bytes held by registration bodies, for the memory estimate.
    body_bytes: usize,
    buckets: HashMap<IpAddr, Bucket>,
    overflow: Option<Bucket>,
    last_prune: Option<Instant>,
    transmits: VecDeque<Transmit>,
    counters: RegistryCounters,
    next_sweep: Option<Instant>,
}

impl RegistryState {
    /// A registry signing with `identity`. `token_key` must be secret and
    /// should be fresh per start (the server draws it from the OS RNG).
    pub fn new(identity: Identity, token_key: [u8; 32], config: RegistryConfig) -> Self {
        let public_key = identity.public().to_bytes();
        Self {
            identity,
            public_key,
            token_key,
            config,
            entries: HashMap::new(),
            by_age: BTreeSet::new(),
            body_bytes: 0,
            buckets: HashMap::new(),
            overflow: None,
            last_prune: None,
            transmits: VecDeque::new(),
            counters: RegistryCounters::default(),
            next_sweep: None,
        }
    }

    /// The registry's public key: what clients pin.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The configuration in force.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Counters by outcome.
    pub fn counters(&self) -> &RegistryCounters {
        &self.counters
    }

    /// Entries held (available or not).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A calculated (not measured) upper estimate of the heap bytes the
    /// registry holds: table slots by capacity, registration bodies, the age
    /// index and the rate-limit buckets.
    pub fn approx_memory_bytes(&self) -> usize {
        use std::mem::size_of;
        // hashbrown: one control byte per slot plus the (key, value) pair.
        let entry_slot = size_of::<PeerId>() + size_of::<Entry>() + 1;
        // BTreeSet leaves hold up to 11 keys; count nodes as half full.
        let age_item = 2 * size_of::<(Instant, PeerId)>();
        let bucket_slot = size_of::<IpAddr>() + size_of::<Bucket>() + 1;
        self.entries.capacity() * entry_slot
            + self.body_bytes
            + self.by_age.len() * age_item
            + self.buckets.capacity() * bucket_slot
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// When [`RegistryState::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_sweep
    }

    /// Forgets entries silent for `forget_after` and prunes idle buckets.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(last_seen, peer)) = self.by_age.first() {
            if now.saturating_duration_since(last_seen) < self.config.forget_after {
                break;
            }
            self.remove(&peer);
            self.counters.forgotten += 1;
        }
        self.prune_buckets(now);
        self.next_sweep = (!self.entries.is_empty() || !self.buckets.is_empty())
            .then(|| now + self.config.keepalive_interval);
    }

    /// Handles one datagram from `source`. `unix_ms` is the registry's wall
    /// clock, used only to bound registration timestamps.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        unix_ms: u64,
        source: SocketAddr,
        bytes: &[u8],
    ) {
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + self.config.keepalive_interval);
        }
        // The rate limit comes first, so a flood costs us a hash-map lookup
        // per datagram and never a signature verification.
        if !self.allow(now, source.ip()) {
            self.counters.rate_limited += 1;
            return;
        }
        let message = match Message::parse(bytes) {
            Ok(message) => message,
            Err(WireError::UnknownVersion(_)) => {
                self.counters.unknown_version += 1;
                return;
            }
            Err(_) => {
                self.counters.malformed += 1;
                return;
            }
        };
        match message {
            Message::Register(signed) => self.handle_register(now, unix_ms, source, signed),
            Message::KeepAlive { peer, token } => self.handle_keepalive(now, source, peer, token),
            Message::Unregister { peer, token } => {
                if self.token_matches(&peer, &token) {
                    self.remove(&peer);
                    self.counters.unregistrations += 1;
                } else {
                    self.counters.bad_token += 1;
                }
            }
            Message::SealedLookup { ephemeral, sealed } => {
                self.handle_sealed_lookup(now, source, ephemeral, &sealed);
            }
            Message::Answer(_)
            | Message::SealedAnswer { .. }
            | Message::KeepAliveAck { .. }
            | Message::UnknownPeer { .. } => {
                self.counters.unexpected += 1;
            }
        }
    }

    fn handle_register(
        &mut self,
        now: Instant,
        unix_ms: u64,
        source: SocketAddr,
        signed: SignedRegistration,
    ) {
        let Ok(registration) = Registration::parse(&signed.body) else {
            self.counters.malformed += 1;
            return;
        };
        if registration.registry != self.public_key {
            self.counters.wrong_registry += 1;
            return;
        }
        let skew = registration.timestamp_ms.abs_diff(unix_ms);
        if u128::from(skew) > self.config.max_clock_skew.as_millis() {
            self.counters.clock_skew += 1;
            return;
        }
        let Ok(identity) = PublicIdentity::from_bytes(&registration.public_key) else {
            self.counters.bad_public_key += 1;
            return;
        };
        let peer = identity.peer_id();
        // Cheap checks before the signature: a replay is refused without
        // spending a verification on it.
        if let Some(entry) = self.entries.get(&peer)
            && registration.timestamp_ms <= entry.timestamp_ms
        {
            self.counters.stale += 1;
            return;
        }
        if !identity.verify_registry(
            &Registration::signed_message(&signed.body),
            &signed.signature,
        ) {
            self.counters.bad_signature += 1;
            return;
        }
        if !self.entries.contains_key(&peer) && !self.make_room(now) {
            self.counters.table_full += 1;
            return;
        }
        let token = self.token(&peer, registration.timestamp_ms);
        self.remove(&peer);
        self.body_bytes += signed.body.capacity();
        self.entries.insert(
            peer,
            Entry {
                registration: signed,
                timestamp_ms: registration.timestamp_ms,
                token,
                last_seen: now,
            },
        );
        self.by_age.insert((now, peer));
        self.counters.registrations += 1;
        let keepalive_ms =
            u64::try_from(self.config.keepalive_interval.as_millis()).unwrap_or(u64::MAX);
        self.answer(
            source,
            &Answer::Registered {
                peer,
                timestamp_ms: registration.timestamp_ms,
                token,
                keepalive_ms,
            },
        );
    }

    fn handle_keepalive(&mut self, now: Instant, source: SocketAddr, peer: PeerId, token: Token) {
        let reply = match self.entries.get_mut(&peer) {
            None => {
                self.counters.unknown_peer += 1;
                Message::UnknownPeer { peer, token }
            }
            Some(entry) if !tokens_equal(&entry.token, &token) => {
                self.counters.bad_token += 1;
                Message::UnknownPeer { peer, token }
            }
            Some(entry) => {
                self.by_age.remove(&(entry.last_seen, peer));
                entry.last_seen = now;
                self.by_age.insert((now, peer));
                self.counters.keepalives += 1;
                Message::KeepAliveAck { peer, token }
            }
        };
        self.send(source, &reply);
    }

    /// A lookup sealed to our key: opened (one X25519 and an AEAD, bounded
    /// by the per-source rate limit like everything else), answered sealed
    /// under the same exchange. One that does not open is malformed.
    fn handle_sealed_lookup(
        &mut self,
        now: Instant,
        source: SocketAddr,
        ephemeral: [u8; 32],
        sealed: &[u8],
    ) {
        let Ok((plaintext, key)) =
            self.identity
                .open_request(&ephemeral, &LookupRequest::aad(b'l'), sealed)
        else {
            self.counters.malformed += 1;
            return;
        };
        let Ok(LookupRequest { peer, query }) = LookupRequest::parse(&plaintext) else {
            self.counters.malformed += 1;
            return;
        };
        let answer = self.lookup_answer(now, peer, query);
        let Some(padded) = self.sign(&answer).padded() else {
            return;
        };
        let Ok(sealed) = seal_answer(&key, &LookupRequest::aad(b'a'), &padded) else {
            return;
        };
        self.send(source, &Message::SealedAnswer { ephemeral, sealed });
    }

    fn lookup_answer(&mut self, now: Instant, peer: PeerId, query: u64) -> Answer {
        self.counters.lookups += 1;
        match self.entries.get(&peer) {
            None => Answer::NotFound { query, peer },
            Some(entry) => {
                let age = now.saturating_duration_since(entry.last_seen);
                let last_seen_age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
                if age > self.config.expiry() {
                    Answer::Unavailable {
                        query,
                        peer,
                        last_seen_age_ms,
                    }
                } else {
                    Answer::Found {
                        query,
                        registration: entry.registration.clone(),
                        last_seen_age_ms,
                    }
                }
            }
        }
    }

    /// Makes space for one new entry: evicts the oldest entry if it has
    /// expired. Live entries are never evicted (see the module docs).
    fn make_room(&mut self, now: Instant) -> bool {
        if self.entries.len() < self.config.max_entries {
            return true;
        }
        let Some(&(last_seen, peer)) = self.by_age.first() else {
            return false;
        };
        if now.saturating_duration_since(last_seen) <= self.config.expiry() {
            return false;
        }
        self.remove(&peer);
        self.counters.evicted += 1;
        true
    }

    fn remove(&mut self, peer: &PeerId) {
        if let Some(entry) = self.entries.remove(peer) {
            self.by_age.remove(&(entry.last_seen, *peer));
            self.body_bytes -= entry.registration.body.capacity();
        }
    }

    fn token_matches(&self, peer: &PeerId, token: &Token) -> bool {
        self.entries
            .get(peer)
            .is_some_and(|entry| tokens_equal(&entry.token, token))
    }

    fn token(&self, peer: &PeerId, timestamp_ms: u64) -> Token {
        let mut hasher = blake3::Hasher::new_keyed(&self.token_key);
        hasher.update(peer.as_bytes());
        hasher.update(&timestamp_ms.to_be_bytes());
        let mut token = [0u8; 16];
        token.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
        token
    }

    fn answer(&mut self, destination: SocketAddr, answer: &Answer) {
        let signed = self.sign(answer);
        self.send(destination, &Message::Answer(signed));
    }

    fn sign(&self, answer: &Answer) -> SignedAnswer {
        let body = answer.emit();
        debug_assert!(
            body.len() <= MAX_SIGNED_BODY,
            "answers embed at most one capped registration"
        );
        let signature = self.identity.sign_registry(&Answer::signed_message(&body));
        SignedAnswer { body, signature }
    }

    fn send(&mut self, destination: SocketAddr, message: &Message) {
        // Every reply is built from capped parts, so emitting cannot fail;
        // if it ever did, dropping the reply is the safe outcome.
        if let Ok(payload) = message.emit() {
            self.transmits.push_back(Transmit {
                destination,
                payload,
            });
        }
    }

    fn allow(&mut self, now: Instant, ip: IpAddr) -> bool {
        let key = source_key(ip);
        let limit = self.config.rate_limit;
        if let Some(bucket) = self.buckets.get_mut(&key) {
            return bucket.take(&limit, now);
        }
        // Pruning scans every bucket, so under a many-source flood it runs at
        // most once per second rather than once per datagram.
        let prune_due = self
            .last_prune
            .is_none_or(|last| now.saturating_duration_since(last) >= Duration::from_secs(1));
        if self.buckets.len() >= self.config.max_sources && prune_due {
            self.prune_buckets(now);
        }
        if self.buckets.len() >= self.config.max_sources {
            // Too many sources to track one by one: the rest share a bucket,
            // so a spread-out flood is still limited as a whole.
            return self
                .overflow
                .get_or_insert_with(|| Bucket::full(&limit, now))
                .take(&limit, now);
        }
        let mut bucket = Bucket::full(&limit, now);
        let allowed = bucket.take(&limit, now);
        self.buckets.insert(key, bucket);
        allowed
    }

    /// Drops buckets that have refilled: they hold no information.
    fn prune_buckets(&mut self, now: Instant) {
        self.last_prune = Some(now);
        let limit = self.config.rate_limit;
        self.buckets.retain(|_, bucket| {
            bucket.refill(&limit, now);
            bucket.tokens < limit.burst
        });
    }
}

/// One rate-limit key per IPv4 address, per IPv6 /64 (a single host
/// usually owns a whole /64), IPv4-mapped IPv6 folded into IPv4.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let segments = v6.segments();
                IpAddr::V6(Ipv6Addr::new(
                    segments[0],
                    segments[1],
                    segments[2],
                    segments[3],
                    0,
                    0,
                    0,
                    0,
                ))
            }
        },
    }
}

/// Compares tokens without an early exit, so timing does not reveal how
/// many leading bytes of a guess were right.
fn tokens_equal(a: &Token, b: &Token) -> bool {
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}
