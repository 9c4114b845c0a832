//! Loopback UDP ports for nodes that must be told each other's address
//! before they start, or that stop and start again on the same address.
//!
//! A port picked with `bind(0)` and then released is free for any socket
//! that binds port 0 meanwhile, and the tests run in parallel: a node
//! that binds it later (or again after a restart) may find it taken. The
//! kernel hands out port 0 only from its ephemeral range, so a port just
//! below that range is taken by nobody but [`free_port`], which never
//! gives the same one twice in a process.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Mutex;

/// Ports already handed out by this process.
static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// 127.0.0.1 on a UDP port that is free now and that no `bind(0)` will
/// take: below the kernel's ephemeral range, never given twice.
pub fn free_port() -> SocketAddr {
    let (first, end) = reserved_range();
    let span = u32::from(end - first);
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let given = given.get_or_insert_with(HashSet::new);
    let mut start = [0u8; 4];
    rand::fill(&mut start);
    let start = u32::from_le_bytes(start) % span;
    for offset in 0..span {
        let port = first + u16::try_from((start + offset) % span).expect("below the span");
        if given.contains(&port) {
            continue;
        }
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        // Free now: nothing else on the machine holds it.
        if UdpSocket::bind(addr).is_ok() {
            given.insert(port);
            return addr;
        }
    }
    panic!("no free loopback port in {first}..{end}");
}

/// The ports just below the kernel's ephemeral range (read from
/// /proc; Linux's default range if that cannot be read).
fn reserved_range() -> (u16, u16) {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let end = low.max(2_048);
    (end.saturating_sub(10_000).max(1_024), end)
}
