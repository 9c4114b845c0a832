//! The `kith` binary: the desktop app by default, or a headless command.
//!
//! This is the only place that uses `anyhow`: library errors become one
//! readable sentence on stderr and a non-zero exit.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use kith::account::{Account, default_data_dir};
use kith::daemon::control::Client;
use kith::daemon::{self, DaemonConfig, DiscoveryConfig, PeerAddr, RegistryTarget};
use kith::discovery::InterfaceSpec;
use kith::discovery::presence::PresenceConfig;
use kith::net::NetConfig;
use kith::proto::crypto::{PublicIdentity, safety_number};
use kith::proto::ids::PeerId;
use kith::store::KdfParams;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "kith",
    version,
    about = "LAN-first, end-to-end encrypted, serverless group messenger"
)]
struct Cli {
    /// Data directory [default: $XDG_DATA_HOME/kith or ~/.local/share/kith]
    #[arg(long, global = true, env = "KITH_DATA")]
    data: Option<PathBuf>,

    /// Read the passphrase from the first line of this file. Otherwise it
    /// comes from the KITH_PASSPHRASE environment variable; it is never a
    /// command-line argument, where other users could see it.
    #[arg(long, global = true)]
    passphrase_file: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Open the desktop app (what `kith` alone does)
    App,
    /// Create an account: an encrypted store and a new identity
    Init,
    /// Print your peer id and public key
    Id,
    /// Print the safety number between you and a contact's public key
    Verify {
        /// The contact's public key: 64 hexadecimal characters (`kith id` on their side)
        public_key: String,
    },
    /// Run the headless node until Ctrl-C, SIGTERM or `kith stop`
    Daemon(DaemonArgs),
    /// Send a direct message through the running daemon
    Send {
        /// The peer: its peer id or its public key (64 hexadecimal characters)
        #[arg(long)]
        to: String,
        /// The text to send
        text: String,
    },
    /// List the daemon's peers: id, public key, address, online, outbox size
    Peers,
    /// Print the daemon's counters (messages, datagrams, drops by reason)
    Status,
    /// Print the daemon's events as they happen
    Listen {
        /// One JSON object per line, for scripts
        #[arg(long)]
        json: bool,
    },
    /// Stop the running daemon cleanly
    Stop,
    /// Print what discovery sees: interfaces, mDNS, registry state, and
    /// every peer heard or sighted (address, source, when last heard)
    Discovery,
    /// Block a peer: never shown, probed or answered (until the daemon stops)
    Block {
        /// The peer id
        peer: String,
    },
    /// Lift a block
    Unblock {
        /// The peer id
        peer: String,
    },
    /// Run a registry: lets peers that mDNS cannot reach find each other.
    /// It stores identity → addresses only, never chat data. Its key is kept
    /// in DATA/registry.key when --data or KITH_DATA is given (or in
    /// --key-file), otherwise it is new every start. Stops on Ctrl-C/SIGTERM.
    Registry(RegistryArgs),
}

#[derive(clap::Args)]
struct DaemonArgs {
    /// UDP address to listen on
    #[arg(long, default_value = "0.0.0.0:47474")]
    listen: SocketAddr,
    /// A peer to talk to, as PUBLICKEYHEX@IP:PORT (repeatable)
    #[arg(long = "peer", value_name = "PUBLICKEYHEX@IP:PORT")]
    peers: Vec<String>,
    /// A contact whose address discovery finds (mDNS or the registry), by
    /// public key (repeatable)
    #[arg(long = "contact", value_name = "PUBLICKEYHEX")]
    contacts: Vec<String>,
    /// A LAN interface (name or IPv4 address) to announce and browse mDNS
    /// on (repeatable). mDNS is on when at least one is given: kith never
    /// uses an interface you did not name.
    #[arg(long = "interface", value_name = "IFACE")]
    interfaces: Vec<String>,
    /// Do not use mDNS even with --interface (registry and --peer only)
    #[arg(long)]
    no_mdns: bool,
    /// The name others see in mDNS [default: kith <short peer id>]
    #[arg(long, default_value = "")]
    name: String,
    /// A registry to register with and look contacts up in, HOST:PORT
    #[arg(long, requires = "registry_key")]
    registry: Option<String>,
    /// The registry's public key (64 hexadecimal characters, printed by
    /// `kith registry`), pinned: answers signed by any other key are dropped
    #[arg(long, requires = "registry")]
    registry_key: Option<String>,
    /// Seconds between keep-alives to each peer; a peer is offline after 3
    /// missed ones
    #[arg(long, default_value_t = 5)]
    keepalive_secs: u64,
}

#[derive(clap::Args)]
struct RegistryArgs {
    /// UDP address to listen on
    #[arg(long, default_value_t = SocketAddr::from(([0, 0, 0, 0], kith::registry::DEFAULT_PORT)))]
    listen: SocketAddr,
    /// File holding the registry's secret key (created with mode 0600)
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Seconds between client keep-alives; a client is unavailable after 3 missed
    #[arg(long, default_value_t = 10)]
    keepalive_secs: u64,
    /// Most registrations held at once
    #[arg(long, default_value_t = 100_000)]
    max_entries: usize,
}

fn main() {
    if let Err(error) = run(Cli::parse()) {
        eprintln!("kith: {error:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let data_dir = cli.data.clone().unwrap_or_else(default_data_dir);
    match cli.command.unwrap_or(Command::App) {
        Command::Registry(args) => run_registry(args, cli.data),
        Command::App => run_app(data_dir),
        Command::Init => {
            let passphrase = passphrase(&cli.passphrase_file)?;
            let account = Account::create(&data_dir, &passphrase, KdfParams::default())?;
            println!("created a kith account in {}", data_dir.display());
            print_identity(&account);
            Ok(())
        }
        Command::Id => {
            let account = Account::open(&data_dir, &passphrase(&cli.passphrase_file)?)?;
            print_identity(&account);
            Ok(())
        }
        Command::Verify { public_key } => {
            let key = PeerId::from_hex(public_key.trim())
                .context("a public key is 64 hexadecimal characters")?;
            let contact =
                PublicIdentity::from_bytes(&key.0).context("that is not a valid public key")?;
            let account = Account::open(&data_dir, &passphrase(&cli.passphrase_file)?)?;
            println!("contact peer id  {}", contact.peer_id());
            println!(
                "safety number    {}",
                safety_number(&account.identity.public(), &contact)
            );
            Ok(())
        }
        Command::Daemon(args) => {
            let passphrase = passphrase(&cli.passphrase_file)?;
            run_daemon(&data_dir, &passphrase, args)
        }
        Command::Discovery => print_lines(&data_dir, "discovery"),
        Command::Block { peer } => block(&data_dir, &peer, "block"),
        Command::Unblock { peer } => block(&data_dir, &peer, "unblock"),
        Command::Send { to, text } => {
            let to = PeerId::from_hex(to.trim())
                .context("--to takes a peer id or public key: 64 hexadecimal characters")?;
            let id = Client::connect(&data_dir)?.send(&to, &text)?;
            println!("{id}");
            Ok(())
        }
        Command::Peers => print_lines(&data_dir, "peers"),
        Command::Status => print_lines(&data_dir, "status"),
        Command::Stop => {
            Client::connect(&data_dir)?.request("stop")?;
            Ok(())
        }
        Command::Listen { json } => {
            let mut stdout = std::io::stdout().lock();
            Client::connect(&data_dir)?.listen(json, |line| {
                writeln!(stdout, "{line}")?;
                stdout.flush()
            })?;
            Ok(())
        }
    }
}

fn block(data_dir: &Path, peer: &str, request: &str) -> Result<()> {
    let peer = PeerId::from_hex(peer.trim()).context("a peer id is 64 hexadecimal characters")?;
    Client::connect(data_dir)?.request(&format!("{request} {}", peer.to_hex()))?;
    Ok(())
}

fn print_lines(data_dir: &Path, request: &str) -> Result<()> {
    let (lines, _) = Client::connect(data_dir)?.request(request)?;
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

/// Runs the daemon in the foreground. SIGINT and SIGTERM are caught with a
/// self-pipe so that shutdown (which checkpoints the store) runs on this
/// thread, not in a signal handler.
fn run_daemon(data_dir: &Path, passphrase: &str, args: DaemonArgs) -> Result<()> {
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
    let config = DaemonConfig {
        net: NetConfig {
            unicast_bind: args.listen,
            ..NetConfig::default()
        },
        peers,
        control_socket: true,
        discovery: DiscoveryConfig {
            mdns: !args.no_mdns,
            interfaces,
            display_name: args.name,
            registry,
            presence: PresenceConfig {
                keepalive_interval: Duration::from_secs(args.keepalive_secs),
                ..PresenceConfig::default()
            },
            contacts,
        },
        ..DaemonConfig::default()
    };
    let daemon = daemon::start(data_dir, passphrase, config)?;
    signals::forward_to(daemon.stop_requester()).context("cannot install signal handlers")?;
    // Scripts and tests read these lines to learn the address and identity.
    println!("peer id     {}", daemon.peer_id());
    println!("public key  {}", PeerId(daemon.public().to_bytes()));
    println!("listening   {}", daemon.local_addr());
    std::io::stdout().flush()?;
    daemon.wait_for_stop();
    daemon.shutdown()?;
    Ok(())
}

/// SIGINT/SIGTERM → a stop request, through a self-pipe: the handler only
/// writes one byte (async-signal-safe); a thread reads it and asks the
/// daemon to stop.
mod signals {
    use kith::daemon::StopRequester;
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

    pub fn forward_to(stop: StopRequester) -> std::io::Result<()> {
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
                    stop.request_stop();
                }
            })?;
        Ok(())
    }
}

fn run_registry(args: RegistryArgs, data: Option<PathBuf>) -> Result<()> {
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
    println!("kith registry listening on {}", server.local_addr()?);
    println!("public key  {}", PeerId(server.public_key()));
    match key_file {
        Some(path) => println!("key file    {}", path.display()),
        None => println!(
            "key file    none: a new key every start (pass --key-file or --data to keep it)"
        ),
    }
    // Ctrl-C and SIGTERM end the process with their default action: the
    // registry holds nothing that needs flushing.
    let never = AtomicBool::new(false);
    server.run(&never)?;
    Ok(())
}

/// A public key given on the command line.
fn public_key(hex: &str) -> Result<PublicIdentity> {
    let key = PeerId::from_hex(hex.trim()).context("a public key is 64 hexadecimal characters")?;
    PublicIdentity::from_bytes(&key.0).context("that is not a valid public key")
}

fn print_identity(account: &Account) {
    let public = account.identity.public();
    println!("peer id     {}", public.peer_id());
    println!("public key  {}", PeerId(public.to_bytes()));
}

fn passphrase(file: &Option<PathBuf>) -> Result<String> {
    let passphrase = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the passphrase file {}", path.display()))?;
            text.lines().next().unwrap_or_default().to_owned()
        }
        None => std::env::var("KITH_PASSPHRASE").unwrap_or_default(),
    };
    if passphrase.is_empty() {
        bail!("no passphrase: set KITH_PASSPHRASE or pass --passphrase-file FILE");
    }
    Ok(passphrase)
}

#[cfg(feature = "gui")]
fn run_app(data_dir: PathBuf) -> Result<()> {
    kith::ui::run(data_dir).map_err(|error| anyhow::anyhow!("the desktop app failed: {error}"))
}

#[cfg(not(feature = "gui"))]
fn run_app(_data_dir: PathBuf) -> Result<()> {
    bail!("this kith was built without the desktop app (--no-default-features); see `kith --help`")
}
