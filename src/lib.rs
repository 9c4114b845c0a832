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
//! - [`net`]: the network IO shell: a `mio` event loop on its own thread that
//!   moves UDP datagrams (unicast and multicast) between sockets and a
//!   sans-IO driver.
//!
//! - [`daemon`]: the headless daemon joining the node core, the store and
//!   the network loop, with its library handle and local control socket.
//!
//! - [`discovery`]: finding peers on the LAN (mDNS/DNS-SD) and the pure
//!   presence state machine (online/offline from keep-alives).
//!
//! - [`account`] ties a data directory, its store and the identity together;
//!   `ui` is the desktop app (feature `gui`).

pub mod account;
pub mod daemon;
pub mod discovery;
pub mod net;
pub mod proto;
pub mod registry;
pub mod store;
#[cfg(feature = "gui")]
pub mod ui;
