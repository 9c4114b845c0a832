//! Long-running subcommands: the headless daemon and the registry server,
//! stopped by SIGINT or SIGTERM.

use std::io::Write;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kith::daemon::{self, DaemonConfig, DiscoveryConfig, PeerAddr, RegistryTarget};
use kith::discovery::InterfaceSpec;
use kith::discovery::presence::PresenceConfig;
use kith::net::NetConfig;
use kith::proto::ids::PeerId;

use super::account::{public_key, warn_permissions};
use super::args::{DaemonArgs, RegistryArgs};
use super::output::stdout_error;

/// Runs the daemon in the foreground. SIGINT and SIGTERM are caught with a
/// self-pipe so that shutdown (which checkpoints the store) runs on this
/// thread, not in a signal handler.
pub(super) fn run_daemon(data_dir: &Path, passphrase: &str, args: DaemonArgs) -> Result<()> {
    let config = daemon_config(args)?;
    let daemon = daemon::start(data_dir, passphrase, config)?;
    // After the start, so that SQLite's WAL files exist and are checked too.
    warn_permissions(kith::account::permission_warnings(data_dir));
    let stop = daemon.stop_requester();
    signals::on_stop(move || stop.request_stop()).context("cannot install signal handlers")?;
    // Scripts and tests read these lines to learn the address and identity.
    // If nobody reads them (stdout closed), the daemon stops cleanly.
    let printed = outln!("peer id     {}", daemon.peer_id())
        .and_then(|()| outln!("public key  {}", PeerId(daemon.public().to_bytes())))
        .and_then(|()| outln!("listening   {}", daemon.local_addr()))
        .and_then(|()| std::io::stdout().flush().map_err(stdout_error));
    if printed.is_ok() {
        daemon.wait_for_stop();
    }
    daemon.shutdown()?;
    printed
}

/// The daemon's configuration from its command-line options.
fn daemon_config(args: DaemonArgs) -> Result<DaemonConfig> {
    let peers = args
        .peers
        .iter()
        .map(|peer| peer.parse::<PeerAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    let contacts = args
        .contacts
        .iter()
        .map(|key| public_key(key))
        .collect::<Result<Vec<_>>>()?;
    let interfaces = args
        .interfaces
        .iter()
        .map(|iface| iface.parse::<InterfaceSpec>())
        .collect::<Result<Vec<_>, _>>()?;
    let registry = match (&args.registry, &args.registry_key) {
        (Some(addr), Some(key)) => {
            let addr = addr
                .to_socket_addrs()
                .with_context(|| format!("cannot resolve the registry address {addr:?}"))?
                .find(|a| a.is_ipv4() == args.listen.is_ipv4())
                .with_context(|| {
                    format!("{addr:?} has no address of the listen address's family")
                })?;
            Some(RegistryTarget {
                addr,
                public_key: public_key(key)?.to_bytes(),
            })
        }
        _ => None,
    };
    if args.keepalive_secs == 0 {
        bail!("--keepalive-secs must be at least 1");
    }
    Ok(DaemonConfig {
        net: NetConfig {
            unicast_bind: args.listen,
            multicast_interfaces: args.multicast_interfaces.clone(),
            ..NetConfig::default()
        },
        peers,
        control_socket: true,
        control: kith::daemon::control::ControlConfig::default(),
        node: kith::proto::node::NodeConfig {
            auto_accept_invites: args.accept_invites,
            ..Default::default()
        },
        discovery: DiscoveryConfig {
            mdns: !args.no_mdns,
            interfaces,
            display_name: args.name,
            registry,
            presence: PresenceConfig {
                keepalive_interval: Duration::from_secs(args.keepalive_secs),
                max_keepalive_interval: Duration::from_secs(args.keepalive_max_secs),
                ..PresenceConfig::default()
            },
            contacts,
        },
    })
}

/// SIGINT/SIGTERM → a stop request, through a self-pipe: the handler only
/// writes one byte (async-signal-safe); a thread reads it and runs the
/// stop action (the daemon's or the registry's).
mod signals {
    use std::io::Read;
    use std::os::fd::IntoRawFd;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicI32, Ordering};

    static PIPE: AtomicI32 = AtomicI32::new(-1);

    extern "C" fn on_signal(_signal: libc::c_int) {
        let fd = PIPE.load(Ordering::Relaxed);
        if fd >= 0 {
            let byte = 1u8;
            // SAFETY: `write` is async-signal-safe; `fd` is the write end,
            // kept open for the process's life, and `byte` outlives the call.
            unsafe {
                libc::write(fd, (&raw const byte).cast(), 1);
            }
        }
    }

    /// Runs `stop` (once, on its own thread) at the first SIGINT or SIGTERM.
    pub fn on_stop(stop: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        let (mut reader, writer) = UnixStream::pair()?;
        // Leaked on purpose: the handler may run until the process exits.
        PIPE.store(writer.into_raw_fd(), Ordering::Relaxed);
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: `on_signal` only loads an atomic and calls `write`,
            // both async-signal-safe.
            let previous =
                unsafe { libc::signal(signal, on_signal as *const () as libc::sighandler_t) };
            if previous == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
        }
        std::thread::Builder::new()
            .name("kith-signals".into())
            .spawn(move || {
                let mut byte = [0u8; 1];
                if reader.read(&mut byte).is_ok_and(|n| n == 1) {
                    stop();
                }
            })?;
        Ok(())
    }
}

pub(super) fn run_registry(args: RegistryArgs, data: Option<PathBuf>) -> Result<()> {
    use kith::registry::{RegistryConfig, ServeConfig, Server};
    if args.keepalive_secs == 0 || args.max_entries == 0 {
        bail!("--keepalive-secs and --max-entries must be at least 1");
    }
    // Only an explicit data directory holds the key: the default one is the
    // user's account, and a registry is usually not run by a chat user.
    let key_file = args
        .key_file
        .or_else(|| data.map(|dir| dir.join("registry.key")));
    let server = Server::bind(ServeConfig {
        listen: args.listen,
        key_file: key_file.clone(),
        registry: RegistryConfig {
            keepalive_interval: Duration::from_secs(args.keepalive_secs),
            max_entries: args.max_entries,
            ..RegistryConfig::default()
        },
    })?;
    outln!("kith registry listening on {}", server.local_addr()?)?;
    outln!("public key  {}", PeerId(server.public_key()))?;
    match key_file {
        Some(path) => outln!("key file    {}", path.display())?,
        None => outln!(
            "key file    none: a new key every start (pass --key-file or --data to keep it)"
        )?,
    }
    // Ctrl-C and SIGTERM stop the loop (within 100 ms) so that it can say
    // what it did; the registry holds nothing else that needs flushing.
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = Arc::clone(&stop);
    signals::on_stop(move || stopper.store(true, Ordering::Relaxed))
        .context("cannot install signal handlers")?;
    std::io::stdout().flush().map_err(stdout_error)?;
    let counters = server.run(&stop)?;
    outln!("kith registry stopped: {counters}")?;
    Ok(())
}
