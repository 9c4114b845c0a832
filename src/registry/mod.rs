//! The registry: an optional rendezvous server for peers that mDNS cannot
//! reach, and the sans-IO client that talks to it.
//!
//! A client registers *identity → current addresses*; others look it up by
//! peer id. The registry stores and relays **no chat data**: it holds, per
//! peer, one signed registration (public key, up to eight socket addresses,
//! a timestamp and a nonce), a keep-alive token and the time it last heard
//! from the peer. Nothing else passes through it.
//!
//! # Guarantees
//! - **No hijacking.** A registration is signed by the registering identity
//!   (Ed25519, registry signature domain, label `register`), names the
//!   registry it is meant for, and its public key hashes to the peer id it
//!   is filed under. Without the secret key nobody can create or change
//!   another peer's entry. Lookups return the peer's own signed
//!   registration, so a client checks the peer's signature itself: even a
//!   dishonest registry can withhold an entry but cannot invent addresses
//!   for someone. Nor can it serve an old one: the client refuses a
//!   registration that names another registry or whose timestamp is older
//!   than the registry's `forget_after` plus twice its clock skew, or
//!   further ahead than that skew; registered clients renew every 5
//!   minutes to stay inside that window.
//! - **No rollback.** The registry keeps the highest timestamp per peer and
//!   refuses registrations that are not newer. A registration further than
//!   `max_clock_skew` from the registry's clock is refused too, and an entry
//!   is forgotten only after `forget_after` (longer than the skew), so a
//!   replayed old registration cannot bring a forgotten entry back either.
//!   (An entry evicted under memory pressure loses this protection until
//!   its registrations age past the skew window.)
//! - **Keep-alives** carry a 16-byte token the registry issued in its signed
//!   `Registered` answer (a keyed blake3 of peer id and timestamp under a
//!   per-start secret): one hash instead of a signature per keep-alive. A
//!   token only refreshes liveness; it cannot change addresses. After a
//!   registry restart every token is unknown, the registry answers
//!   `UnknownPeer`, and the client registers again at once, so it is back
//!   within one keep-alive interval.
//! - **Presence.** An entry is reported `Unavailable` once
//!   `missed_keepalives` (3) keep-alive intervals (10 s) pass without a word
//!   from the peer, and forgotten after `forget_after`.
//! - **Bounded memory.** At most `max_entries` entries: when full, an expired
//!   entry is evicted (oldest first); if none is expired the newcomer is
//!   refused, because a flood of fresh keys must never push out users who are
//!   alive. Every source IP (IPv6 by /64) has a token bucket checked before
//!   any parsing or signature work; the bucket table is capped as well, and
//!   sources beyond the cap share one overflow bucket. Every dropped datagram
//!   is counted by reason ([`RegistryCounters`]).
//! - **Signed answers.** The registry signs `Registered`, `Found`,
//!   `Unavailable` and `NotFound` with its own Ed25519 key. Clients pin that
//!   key: the config value is the registry's public key as 64 hex characters,
//!   printed by `kith registry` at start. Answers carry the client's query
//!   number (or registration timestamp), so an old answer cannot be replayed
//!   as a new one. `KeepAliveAck` and `UnknownPeer` are not signed: they echo
//!   the client's token, which an off-path attacker does not know, and the
//!   worst a forged one can do is make a client register again.
//!
//! # Layout
//! - [`wire`]: the `kr` datagrams, size-checked parse / emit.
//! - [`RegistryState`]: the server core, pure (time comes in as arguments).
//! - [`RegistryClient`]: the client core, pure.
//! - [`serve`] / [`Server`]: the blocking UDP loop around `RegistryState`.

mod client;
mod server;
mod state;
pub mod wire;

pub use client::{ClientCounters, ClientEvent, RegistryClient, RegistryClientConfig};
pub use server::{DEFAULT_PORT, ServeConfig, Server, load_or_create_key, serve};
pub use state::{RateLimit, RegistryConfig, RegistryCounters, RegistryState, Transmit};

use crate::proto::wire::WireError;

/// Why a registry datagram was refused or the server failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("signature does not verify")]
    BadSignature,
    #[error("public key is invalid")]
    BadPublicKey,
    #[error("registration is meant for a different registry")]
    WrongRegistry,
    #[error("registration is too old or too far in the future")]
    StaleRegistration,
    #[error("answer does not match any request")]
    Unexpected,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the registry key file {0} is not 32 bytes")]
    BadKeyFile(std::path::PathBuf),
}

impl RegistryError {
    fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| RegistryError::Io { context, source }
    }
}
