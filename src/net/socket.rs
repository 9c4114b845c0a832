//! Socket construction with `socket2`: every option is set before `bind`,
//! which is the only point where `SO_REUSEADDR`/`SO_REUSEPORT` take effect.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use mio::net::UdpSocket;
use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use super::{NetConfig, NetError};

/// Opens the non-blocking unicast socket. When multicast is enabled it is
/// also the sending socket for group datagrams: TTL 1 keeps them on the
/// link, and `IP_MULTICAST_IF` points at the first configured interface (the
/// loop switches it per interface when there are several).
pub(crate) fn unicast(config: &NetConfig) -> Result<UdpSocket, NetError> {
    let bind = config.unicast_bind;
    // Group datagrams leave through this socket, so it must speak IPv4.
    if config.multicast_enabled() && !bind.is_ipv4() {
        return Err(NetError::Config(format!(
            "multicast is IPv4 only, but the unicast bind address {bind} is IPv6"
        )));
    }
    let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| NetError::io("create the unicast socket", e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| NetError::io("make the unicast socket non-blocking", e))?;
    // Bigger buffers absorb bursts (a sync round, a busy room) instead of
    // dropping them. Best effort: the kernel caps them at rmem_max/wmem_max,
    // and a smaller buffer only costs throughput, never correctness.
    let _ = socket.set_recv_buffer_size(config.socket_buffer_bytes);
    let _ = socket.set_send_buffer_size(config.socket_buffer_bytes);
    socket
        .bind(&SockAddr::from(bind))
        .map_err(|e| NetError::io(format!("bind the unicast socket to {bind}"), e))?;

    if let Some(first) = config.multicast_interfaces.first() {
        socket
            .set_multicast_ttl_v4(1)
            .map_err(|e| NetError::io("set the multicast TTL to 1", e))?;
        socket
            .set_multicast_loop_v4(config.multicast_loop)
            .map_err(|e| NetError::io("set multicast loopback", e))?;
        set_multicast_if(SockRef::from(&socket), *first)?;
    }
    Ok(UdpSocket::from_std(socket.into()))
}

/// Opens the multicast socket and joins the group on every configured
/// interface, or returns `None` when no interface is configured.
pub(crate) fn multicast(config: &NetConfig) -> Result<Option<UdpSocket>, NetError> {
    if config.multicast_interfaces.is_empty() {
        return Ok(None);
    }
    let group = *config.multicast_group.ip();
    if !group.is_multicast() {
        return Err(NetError::Config(format!(
            "{group} is not an IPv4 multicast address"
        )));
    }
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| NetError::io("create the multicast socket", e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| NetError::io("make the multicast socket non-blocking", e))?;
    // Several nodes on one host (a desktop app next to a daemon, tests) all
    // bind the group port; both options are needed for that on Linux and BSD.
    socket
        .set_reuse_address(true)
        .map_err(|e| NetError::io("set SO_REUSEADDR on the multicast socket", e))?;
    socket
        .set_reuse_port(true)
        .map_err(|e| NetError::io("set SO_REUSEPORT on the multicast socket", e))?;
    let _ = socket.set_recv_buffer_size(config.socket_buffer_bytes);
    // This socket never sends, but set the same limits in case a future
    // caller does: a kith group datagram must never leave the link.
    socket
        .set_multicast_ttl_v4(1)
        .map_err(|e| NetError::io("set the multicast TTL to 1", e))?;
    socket
        .set_multicast_loop_v4(config.multicast_loop)
        .map_err(|e| NetError::io("set multicast loopback", e))?;

    // Binding to the group address (Linux) rather than 0.0.0.0 means the
    // socket receives only this group's datagrams, not unicast to the port
    // or other groups joined by other sockets on the host. Other systems
    // reject that bind, so they bind the wildcard address.
    let bind_ip = if cfg!(target_os = "linux") {
        group
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    let bind = SocketAddrV4::new(bind_ip, config.multicast_group.port());
    #[cfg(target_os = "linux")]
    {
        // Linux by default delivers to a wildcard-bound socket every group
        // any socket on the host joined (IP_MULTICAST_ALL). Turn it off so
        // the socket hears only the memberships it made itself.
        let _ = socket.set_multicast_all_v4(false);
    }
    socket
        .bind(&SockAddr::from(bind))
        .map_err(|e| NetError::io(format!("bind the multicast socket to {bind}"), e))?;
    for interface in &config.multicast_interfaces {
        socket
            .join_multicast_v4(&group, interface)
            .map_err(|e| NetError::io(format!("join {group} on interface {interface}"), e))?;
    }
    Ok(Some(UdpSocket::from_std(socket.into())))
}

/// Points group sends of `socket` at `interface`.
pub(crate) fn set_multicast_if(socket: SockRef<'_>, interface: Ipv4Addr) -> Result<(), NetError> {
    socket
        .set_multicast_if_v4(&interface)
        .map_err(|e| NetError::io(format!("send multicast on interface {interface}"), e))
}

/// Whether `from` is one of our own group datagrams looped back to us: it
/// carries our unicast port and one of our addresses. No other socket on
/// the host can hold that port on that address, since the unicast socket
/// is bound without port sharing.
pub(crate) fn is_own_echo(from: SocketAddr, local: SocketAddr, interfaces: &[Ipv4Addr]) -> bool {
    if from.port() != local.port() {
        return false;
    }
    match from {
        SocketAddr::V4(from) => {
            let ip = *from.ip();
            ip == local.ip() || interfaces.contains(&ip)
        }
        SocketAddr::V6(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_own_echo;
    use std::net::{Ipv4Addr, SocketAddr};

    #[test]
    fn own_echo_needs_our_port_and_one_of_our_addresses() {
        let wildcard: SocketAddr = "0.0.0.0:47474".parse().expect("valid address");
        let bound: SocketAddr = "127.0.0.1:5000".parse().expect("valid address");
        let lan = [Ipv4Addr::new(192, 168, 1, 5)];
        let from = |s: &str| s.parse::<SocketAddr>().expect("valid address");
        assert!(is_own_echo(from("192.168.1.5:47474"), wildcard, &lan));
        assert!(is_own_echo(from("127.0.0.1:5000"), bound, &[]));
        // Another node on the same host or LAN: a different port or address.
        assert!(!is_own_echo(from("192.168.1.5:47475"), wildcard, &lan));
        assert!(!is_own_echo(from("192.168.1.6:47474"), wildcard, &lan));
        assert!(!is_own_echo(from("127.0.0.1:5001"), bound, &[]));
        assert!(!is_own_echo(from("[::1]:5000"), bound, &[]));
    }
}
