//! The registry server: a blocking UDP loop around [`RegistryState`].

use super::{RegistryConfig, RegistryCounters, RegistryError, RegistryState};
use crate::proto::crypto::Identity;
use crate::proto::wire::MAX_DATAGRAM;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The registry's default UDP port (`kith registry` listens on
/// `0.0.0.0:7734` unless told otherwise).
pub const DEFAULT_PORT: u16 = 7734;

/// The longest the loop blocks before it looks at the shutdown flag.
const SHUTDOWN_POLL: Duration = Duration::from_millis(100);

/// How to run a registry.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// File holding the registry's 32-byte secret key, created (mode 0600)
    /// on first start. `None`: a fresh key every start, which makes every
    /// client's pinned key stale after a restart.
    pub key_file: Option<PathBuf>,
    /// Registry tunables.
    pub registry: RegistryConfig,
}

/// A bound registry, ready to [`run`](Server::run).
pub struct Server {
    socket: UdpSocket,
    state: RegistryState,
}

impl Server {
    /// Loads or creates the key and binds the socket.
    pub fn bind(config: ServeConfig) -> Result<Self, RegistryError> {
        let identity = match &config.key_file {
            Some(path) => load_or_create_key(path)?,
            None => Identity::generate(&mut rand::rng()),
        };
        let mut token_key = [0u8; 32];
        rand::fill(&mut token_key);
        let socket = UdpSocket::bind(config.listen).map_err(RegistryError::io(format!(
            "cannot listen on {}",
            config.listen
        )))?;
        Ok(Self {
            socket,
            state: RegistryState::new(identity, token_key, config.registry),
        })
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, RegistryError> {
        self.socket
            .local_addr()
            .map_err(RegistryError::io("cannot read the bound address"))
    }

    /// The registry's public key, which clients pin.
    pub fn public_key(&self) -> [u8; 32] {
        self.state.public_key()
    }

    /// Serves until `shutdown` is set (checked at least every 100 ms).
    /// Returns the final counters.
    pub fn run(mut self, shutdown: &AtomicBool) -> Result<RegistryCounters, RegistryError> {
        let mut buffer = [0u8; MAX_DATAGRAM + 1];
        while !shutdown.load(Ordering::Relaxed) {
            let now = Instant::now();
            let wait = self
                .state
                .poll_timeout()
                .map_or(SHUTDOWN_POLL, |at| at.saturating_duration_since(now))
                .clamp(Duration::from_millis(1), SHUTDOWN_POLL);
            self.socket
                .set_read_timeout(Some(wait))
                .map_err(RegistryError::io("cannot set the socket timeout"))?;
            match self.socket.recv_from(&mut buffer) {
                // One byte more than the limit is read, so an oversized
                // datagram is seen as such rather than silently truncated.
                Ok((len, source)) => {
                    self.state
                        .handle_datagram(Instant::now(), unix_ms(), source, &buffer[..len]);
                }
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                // ICMP errors from earlier sends surface here on some
                // systems; they concern one client, not the registry.
                Err(error) if error.kind() == ErrorKind::ConnectionRefused => {}
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(RegistryError::io("cannot receive")(error)),
            }
            while let Some(transmit) = self.state.poll_transmit() {
                // A failed send concerns one client; the loop goes on.
                let _ = self.socket.send_to(&transmit.payload, transmit.destination);
            }
            let now = Instant::now();
            if self.state.poll_timeout().is_some_and(|at| at <= now) {
                self.state.handle_timeout(now);
            }
        }
        Ok(self.state.counters().clone())
    }
}

/// Binds and serves until `shutdown` is set.
pub fn serve(
    config: ServeConfig,
    shutdown: &AtomicBool,
) -> Result<RegistryCounters, RegistryError> {
    Server::bind(config)?.run(shutdown)
}

/// Reads the registry key from `path`, or creates it there (mode 0600, never
/// overwriting an existing file).
pub fn load_or_create_key(path: &Path) -> Result<Identity, RegistryError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let secret: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| RegistryError::BadKeyFile(path.to_owned()))?;
            Ok(Identity::from_secret_bytes(&secret))
        }
        Err(error) if error.kind() == ErrorKind::NotFound => {
            use std::io::Write;
            let identity = Identity::generate(&mut rand::rng());
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(RegistryError::io(format!(
                    "cannot create {}",
                    parent.display()
                )))?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let context = format!("cannot write the registry key {}", path.display());
            let mut file = options
                .open(path)
                .map_err(RegistryError::io(context.clone()))?;
            file.write_all(identity.secret_bytes().as_slice())
                .and_then(|()| file.sync_all())
                .map_err(RegistryError::io(context))?;
            Ok(identity)
        }
        Err(error) => Err(RegistryError::io(format!(
            "cannot read the registry key {}",
            path.display()
        ))(error)),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}
