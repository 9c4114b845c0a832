//! The sans-IO protocol core.
//!
//! Nothing in this module touches the outside world: inputs carry `now:
//! Instant` where time matters, randomness comes from an injected RNG, and
//! outputs are values the caller turns into IO. That keeps every protocol
//! decision testable deterministically.

pub mod crypto;
pub mod files;
pub mod hlc;
pub mod ids;
pub mod node;
pub mod profile;
pub mod reliable;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod sync;
pub mod wire;
