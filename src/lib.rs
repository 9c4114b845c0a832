//! kith: a LAN-first, end-to-end encrypted, serverless group messenger.
//!
//! The crate is layered so that everything which decides *what* to send is
//! pure and deterministic, and everything that touches the outside world is a
//! thin shell around it (see `ARCHITECTURE.md`):
//!
//! - [`proto`]: the sans-IO protocol core. No sockets, no clock, no OS
//!   randomness, no SQL. State machines take bytes and `Instant`s in and give
//!   datagrams, timers and events out.
//!
//! - [`registry`]: the optional rendezvous server for peers mDNS cannot
//!   reach, and its sans-IO client. It never sees chat data.
//!
//! - [`store`]: the encrypted local store (SQLCipher), owned by the IO shell.
//!
//! Later layers (network loop, discovery, UI) build on top of them.

pub mod account;
pub mod proto;
pub mod registry;
pub mod store;
#[cfg(feature = "gui")]
pub mod ui;
