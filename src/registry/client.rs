//! The registry client core: sans-IO, like the rest of the protocol.

use super::RegistryError;
use super::wire::{
    Addresses, Answer, LookupRequest, Message, Registration, SignedAnswer, SignedRegistration,
    Token,
};
use crate::proto::crypto::{Identity, PublicIdentity, SecretKey, open_sealed_answer, seal_request};
use crate::proto::ids::PeerId;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Client settings.
#[derive(Clone, Debug)]
pub struct RegistryClientConfig {
    /// The registry's pinned public key (config: 64 hex characters).
    pub registry_key: [u8; 32],
    /// Keep-alive interval until the registry announces its own.
    pub keepalive_interval: Duration,
    /// How long to wait for `Registered` before registering again.
    pub register_retry: Duration,
    /// After this many unanswered keep-alives, register afresh instead.
    pub missed_keepalives: u32,
    /// Most lookups awaiting an answer; the oldest is given up first.
    pub max_pending_lookups: usize,
    /// How often a registered client registers afresh, so that the
    /// registration the registry hands out is never older than this (plus
    /// retries) and others can refuse stale ones.
    pub refresh_interval: Duration,
    /// Oldest registration a lookup accepts: the registry's `forget_after`
    /// (10 minutes), twice our `refresh_interval`.
    pub max_registration_age: Duration,
    /// How far another peer's clock may be from ours: the registry admits
    /// registrations within 2 minutes of its clock, so two honest clocks
    /// can be twice that apart. Added to `max_registration_age`, and the
    /// most a registration may lie in our future.
    pub max_clock_skew: Duration,
}

impl RegistryClientConfig {
    /// Defaults for a registry with the given pinned key.
    pub fn new(registry_key: [u8; 32]) -> Self {
        Self {
            registry_key,
            keepalive_interval: Duration::from_secs(10),
            register_retry: Duration::from_secs(2),
            missed_keepalives: 3,
            max_pending_lookups: 64,
            refresh_interval: Duration::from_secs(300),
            max_registration_age: Duration::from_secs(600),
            max_clock_skew: Duration::from_secs(240),
        }
    }
}

/// What an answer from the registry means to the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The registry holds our current registration.
    Registered,
    /// The peer's own signed registration (already verified).
    Found {
        peer: PeerId,
        public_key: [u8; 32],
        addresses: Vec<SocketAddr>,
        last_seen_age: Duration,
    },
    /// The peer registered but missed its keep-alives.
    Unavailable {
        peer: PeerId,
        last_seen_age: Duration,
    },
    /// The registry knows nothing of the peer.
    NotFound { peer: PeerId },
    /// The registry no longer holds our registration (it restarted or
    /// forgot us); a new registration is due now (see `poll_timeout`).
    Forgotten,
}

/// Answers the client refused although the registry signed them, by
/// reason (since the client was created).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientCounters {
    /// `Found` answers whose registration names another registry.
    pub wrong_registry: u64,
    /// `Found` answers whose registration is older than
    /// `max_registration_age` plus `max_clock_skew`.
    pub stale: u64,
    /// `Found` answers whose registration lies more than `max_clock_skew`
    /// in our future.
    pub clock_skew: u64,
}

enum Phase {
    Idle,
    Registering {
        timestamp_ms: u64,
        retry_at: Instant,
    },
    Registered {
        token: Token,
        keepalive_at: Instant,
        last_ack: Instant,
        /// When to register afresh (see `refresh_interval`).
        refresh_at: Instant,
    },
}

/// The client side: builds registrations, keep-alives and lookups, and
/// verifies every answer against the pinned registry key. A peer's
/// registration is accepted only if it names this registry and its
/// timestamp is recent (see [`RegistryClientConfig::max_registration_age`]),
/// so a registry cannot serve one that is old or was meant for another.
///
/// Run loop: call [`register`](Self::register) once; feed every datagram
/// from the registry to [`handle_datagram`](Self::handle_datagram) with the
/// wall clock; at
/// [`poll_timeout`](Self::poll_timeout) call
/// [`handle_timeout`](Self::handle_timeout) and send what it returns.
pub struct RegistryClient {
    identity: Identity,
    peer: PeerId,
    registry: PublicIdentity,
    config: RegistryClientConfig,
    keepalive_interval: Duration,
    addresses: Addresses,
    phase: Phase,
    last_timestamp_ms: u64,
    /// Nonces and query numbers are keyed hashes of a counter: unique and
    /// unpredictable without an RNG inside the core.
    nonce_key: [u8; 32],
    counter: u64,
    /// Lookups under way: query number, peer, the ephemeral key that
    /// names the sealed lookup, and the key its answer is sealed under.
    pending: VecDeque<(u64, PeerId, [u8; 32], SecretKey)>,
    counters: ClientCounters,
}

impl RegistryClient {
    /// A client for `identity`. `seed` must be secret and random (the node
    /// draws it from the OS RNG; tests pass a fixed one).
    pub fn new(
        identity: Identity,
        config: RegistryClientConfig,
        seed: [u8; 32],
    ) -> Result<Self, RegistryError> {
        let registry = PublicIdentity::from_bytes(&config.registry_key)
            .map_err(|_| RegistryError::BadPublicKey)?;
        Ok(Self {
            peer: identity.peer_id(),
            identity,
            registry,
            keepalive_interval: config.keepalive_interval,
            config,
            addresses: Addresses::default(),
            phase: Phase::Idle,
            last_timestamp_ms: 0,
            nonce_key: seed,
            counter: 0,
            pending: VecDeque::new(),
            counters: ClientCounters::default(),
        })
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer
    }

    /// Signed answers refused for what they carry.
    pub fn counters(&self) -> &ClientCounters {
        &self.counters
    }

    /// Whether the registry confirmed our current registration.
    pub fn is_registered(&self) -> bool {
        matches!(self.phase, Phase::Registered { .. })
    }

    /// Sets the addresses to register (at most eight; call
    /// [`register`](Self::register) afterwards to publish them).
    pub fn set_addresses(&mut self, addresses: Vec<SocketAddr>) -> Result<(), RegistryError> {
        self.addresses = Addresses::new(addresses)?;
        Ok(())
    }

    /// A fresh signed registration. `unix_ms` is our wall clock; the
    /// timestamp is forced to increase even if the clock steps back.
    pub fn register(&mut self, now: Instant, unix_ms: u64) -> Vec<u8> {
        let timestamp_ms = unix_ms.max(self.last_timestamp_ms + 1);
        self.last_timestamp_ms = timestamp_ms;
        let mut nonce = [0u8; 16];
        nonce.copy_from_slice(&self.next_secret()[..16]);
        let body = Registration {
            public_key: self.identity.public().to_bytes(),
            registry: self.config.registry_key,
            addresses: self.addresses.clone(),
            timestamp_ms,
            nonce,
        }
        .emit();
        let signature = self
            .identity
            .sign_registry(&Registration::signed_message(&body));
        self.phase = Phase::Registering {
            timestamp_ms,
            retry_at: now + self.config.register_retry,
        };
        emit(&Message::Register(SignedRegistration { body, signature }))
    }

    /// A lookup for `peer`, sealed to the registry's key (only the
    /// registry learns whom we look for); the answer arrives as a
    /// [`ClientEvent`]. Empty only if the registry's key is unusable for
    /// key agreement (a low-order point), which nothing is sent to.
    pub fn lookup(&mut self, peer: PeerId) -> Vec<u8> {
        let query = u64::from_le_bytes(
            self.next_secret()[..8]
                .try_into()
                .expect("invariant: a blake3 output has at least 8 bytes"),
        );
        let ephemeral_secret = self.next_secret();
        let request = LookupRequest { peer, query }.emit();
        let Ok((ephemeral, sealed, key)) = seal_request(
            &self.registry,
            ephemeral_secret,
            &LookupRequest::aad(b'l'),
            &request,
        ) else {
            return Vec::new();
        };
        if self.pending.len() >= self.config.max_pending_lookups {
            self.pending.pop_front();
        }
        self.pending.push_back((query, peer, ephemeral, key));
        emit(&Message::SealedLookup { ephemeral, sealed })
    }

    /// Asks the registry to forget us now, if we are registered.
    pub fn unregister(&mut self) -> Option<Vec<u8>> {
        let Phase::Registered { token, .. } = self.phase else {
            return None;
        };
        self.phase = Phase::Idle;
        Some(emit(&Message::Unregister {
            peer: self.peer,
            token,
        }))
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Idle => None,
            Phase::Registering { retry_at, .. } => Some(retry_at),
            Phase::Registered {
                keepalive_at,
                refresh_at,
                ..
            } => Some(keepalive_at.min(refresh_at)),
        }
    }

    /// The keep-alive or registration that is due at `now`, if any.
    pub fn handle_timeout(&mut self, now: Instant, unix_ms: u64) -> Option<Vec<u8>> {
        match self.phase {
            Phase::Idle => None,
            Phase::Registering { retry_at, .. } => {
                (now >= retry_at).then(|| self.register(now, unix_ms))
            }
            Phase::Registered {
                token,
                keepalive_at,
                last_ack,
                refresh_at,
            } => {
                if now >= refresh_at {
                    // Our registration's timestamp ages while keep-alives
                    // hold it; others refuse old ones, so renew it.
                    return Some(self.register(now, unix_ms));
                }
                if now < keepalive_at {
                    return None;
                }
                // Keep-alives that go unanswered mean the registry or the
                // path is gone; once it is back, only a full registration
                // brings us back (it will not know our token).
                let silent_for = now.saturating_duration_since(last_ack);
                if silent_for > self.keepalive_interval * self.config.missed_keepalives {
                    return Some(self.register(now, unix_ms));
                }
                self.phase = Phase::Registered {
                    token,
                    keepalive_at: now + self.keepalive_interval,
                    last_ack,
                    refresh_at,
                };
                Some(emit(&Message::KeepAlive {
                    peer: self.peer,
                    token,
                }))
            }
        }
    }

    /// Handles a datagram from the registry; `unix_ms` is our wall clock,
    /// against which a found registration's timestamp is checked. Errors
    /// mean "drop it": a bad signature, a malformed datagram, an answer to
    /// nothing we asked, or a registration that is stale or names another
    /// registry.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        unix_ms: u64,
        bytes: &[u8],
    ) -> Result<Option<ClientEvent>, RegistryError> {
        match Message::parse(bytes)? {
            Message::Answer(signed) => {
                let answer = self.verify(&signed)?;
                if !matches!(answer, Answer::Registered { .. }) {
                    // Lookups are answered sealed only.
                    return Err(RegistryError::Unexpected);
                }
                self.handle_answer(now, unix_ms, answer)
            }
            Message::SealedAnswer { ephemeral, sealed } => {
                let (_, _, _, key) = self
                    .pending
                    .iter()
                    .find(|(_, _, e, _)| *e == ephemeral)
                    .ok_or(RegistryError::Unexpected)?;
                let padded = open_sealed_answer(key, &LookupRequest::aad(b'a'), &sealed)
                    .map_err(|_| RegistryError::BadSignature)?;
                let signed = SignedAnswer::parse_padded(&padded)?;
                let answer = self.verify(&signed)?;
                if matches!(answer, Answer::Registered { .. }) {
                    return Err(RegistryError::Unexpected);
                }
                self.handle_answer(now, unix_ms, answer)
            }
            Message::KeepAliveAck { peer, token } => match &mut self.phase {
                Phase::Registered {
                    token: ours,
                    last_ack,
                    ..
                } if peer == self.peer && *ours == token => {
                    *last_ack = now;
                    Ok(None)
                }
                _ => Err(RegistryError::Unexpected),
            },
            Message::UnknownPeer { peer, token } => match self.phase {
                Phase::Registered { token: ours, .. } if peer == self.peer && ours == token => {
                    // Register at once rather than at the next keep-alive:
                    // the registry restarted and knows nobody.
                    self.phase = Phase::Registering {
                        timestamp_ms: self.last_timestamp_ms,
                        retry_at: now,
                    };
                    Ok(Some(ClientEvent::Forgotten))
                }
                _ => Err(RegistryError::Unexpected),
            },
            Message::Register(_)
            | Message::KeepAlive { .. }
            | Message::Unregister { .. }
            | Message::SealedLookup { .. } => Err(RegistryError::Unexpected),
        }
    }

    /// The registry's signature over an answer, then the answer.
    fn verify(&self, signed: &SignedAnswer) -> Result<Answer, RegistryError> {
        if !self
            .registry
            .verify_registry(&Answer::signed_message(&signed.body), &signed.signature)
        {
            return Err(RegistryError::BadSignature);
        }
        Ok(Answer::parse(&signed.body)?)
    }

    fn handle_answer(
        &mut self,
        now: Instant,
        unix_ms: u64,
        answer: Answer,
    ) -> Result<Option<ClientEvent>, RegistryError> {
        match answer {
            Answer::Registered {
                peer,
                timestamp_ms,
                token,
                keepalive_ms,
            } => self.registered(now, peer, timestamp_ms, token, keepalive_ms),
            Answer::Found {
                query,
                registration,
                last_seen_age_ms,
            } => self.found(unix_ms, query, &registration, last_seen_age_ms),
            Answer::Unavailable {
                query,
                peer,
                last_seen_age_ms,
            } => {
                self.take_pending(query, peer)?;
                Ok(Some(ClientEvent::Unavailable {
                    peer,
                    last_seen_age: Duration::from_millis(last_seen_age_ms),
                }))
            }
            Answer::NotFound { query, peer } => {
                self.take_pending(query, peer)?;
                Ok(Some(ClientEvent::NotFound { peer }))
            }
        }
    }

    /// The registry confirmed the registration we are waiting for.
    fn registered(
        &mut self,
        now: Instant,
        peer: PeerId,
        timestamp_ms: u64,
        token: Token,
        keepalive_ms: u64,
    ) -> Result<Option<ClientEvent>, RegistryError> {
        let Phase::Registering {
            timestamp_ms: ours, ..
        } = self.phase
        else {
            return Err(RegistryError::Unexpected);
        };
        if peer != self.peer || timestamp_ms != ours {
            return Err(RegistryError::Unexpected);
        }
        // Follow the registry's interval, within sane bounds, so the
        // operator can tune it without reconfiguring every client.
        self.keepalive_interval = Duration::from_millis(keepalive_ms.clamp(1_000, 3_600_000));
        self.phase = Phase::Registered {
            token,
            keepalive_at: now + self.keepalive_interval,
            last_ack: now,
            refresh_at: now + self.config.refresh_interval,
        };
        Ok(Some(ClientEvent::Registered))
    }

    /// A lookup's answer: the peer's own registration, checked against
    /// what we asked, its age and the peer's signature.
    fn found(
        &mut self,
        unix_ms: u64,
        query: u64,
        registration: &SignedRegistration,
        last_seen_age_ms: u64,
    ) -> Result<Option<ClientEvent>, RegistryError> {
        let body = Registration::parse(&registration.body)?;
        let identity = PublicIdentity::from_bytes(&body.public_key)
            .map_err(|_| RegistryError::BadPublicKey)?;
        let peer = identity.peer_id();
        self.take_pending(query, peer)?;
        // The registry signed the answer, but the registration is
        // the peer's: a registry (or whoever holds its key) could
        // serve one the peer made long ago, or for another
        // registry, pointing at addresses it no longer holds.
        self.check_registration(&body, unix_ms)?;
        // The peer's own signature: the registry cannot invent
        // addresses for someone else.
        if !identity.verify_registry(
            &Registration::signed_message(&registration.body),
            &registration.signature,
        ) {
            return Err(RegistryError::BadSignature);
        }
        Ok(Some(ClientEvent::Found {
            peer,
            public_key: body.public_key,
            addresses: body.addresses.as_slice().to_vec(),
            last_seen_age: Duration::from_millis(last_seen_age_ms),
        }))
    }

    /// Refuses (and counts) a registration for another registry, or whose
    /// timestamp is outside our window.
    fn check_registration(
        &mut self,
        body: &Registration,
        unix_ms: u64,
    ) -> Result<(), RegistryError> {
        if body.registry != self.config.registry_key {
            self.counters.wrong_registry += 1;
            return Err(RegistryError::WrongRegistry);
        }
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let skew = millis(self.config.max_clock_skew);
        let oldest =
            unix_ms.saturating_sub(millis(self.config.max_registration_age).saturating_add(skew));
        if body.timestamp_ms < oldest {
            self.counters.stale += 1;
            return Err(RegistryError::StaleRegistration);
        }
        if body.timestamp_ms > unix_ms.saturating_add(skew) {
            self.counters.clock_skew += 1;
            return Err(RegistryError::StaleRegistration);
        }
        Ok(())
    }

    fn take_pending(&mut self, query: u64, peer: PeerId) -> Result<(), RegistryError> {
        let index = self
            .pending
            .iter()
            .position(|(q, p, _, _)| *q == query && *p == peer)
            .ok_or(RegistryError::Unexpected)?;
        self.pending.remove(index);
        Ok(())
    }

    fn next_secret(&mut self) -> [u8; 32] {
        self.counter += 1;
        *blake3::keyed_hash(&self.nonce_key, &self.counter.to_le_bytes()).as_bytes()
    }
}

fn emit(message: &Message) -> Vec<u8> {
    message
        .emit()
        .expect("invariant: client messages are built from capped parts and fit a datagram")
}
