//! The `kith` binary: the desktop app by default, or a headless command.
//!
//! This is the only place that uses `anyhow`: library errors become one
//! readable sentence on stderr and a non-zero exit.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use kith::account::{Account, PermissionWarning, default_data_dir};
use kith::daemon::control::{Client, ControlError, ListenFormat};
use kith::daemon::{self, DaemonConfig, DiscoveryConfig, PeerAddr, RegistryTarget};
use kith::discovery::InterfaceSpec;
use kith::discovery::presence::PresenceConfig;
use kith::net::NetConfig;
use kith::proto::crypto::{PublicIdentity, safety_number};
use kith::proto::ids::PeerId;
use kith::proto::profile::{SignedProfile, check_name};
use kith::store::KdfParams;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    App(AppArgs),
    /// Create an account: an encrypted store and a new identity
    Init {
        /// Your display name, as contacts and room members see it (1-64
        /// characters; no control, bidi or invisible characters)
        #[arg(long)]
        name: Option<String>,
    },
    /// Choose your display name: signed and sent to your contacts and room
    /// members (through the running daemon, or at its next start)
    Profile {
        /// 1-64 characters; no control, bidi or invisible characters
        #[arg(long)]
        name: String,
    },
    /// Print your peer id and public key
    Id {
        /// Print one JSON document (see README, "JSON output")
        #[arg(long)]
        json: bool,
    },
    /// Print the safety number between you and a contact's public key
    Verify {
        /// The contact's public key: 64 hexadecimal characters (`kith id` on their side)
        public_key: String,
    },
    /// Run the headless node until Ctrl-C, SIGTERM or `kith stop`
    Daemon(DaemonArgs),
    /// Send a message through the running daemon
    Send {
        /// A peer (peer id, public key, a unique hex prefix of either, or a
        /// contact's name) or a group room (id, unique hex prefix, or name)
        #[arg(long)]
        to: String,
        /// The text to send
        text: String,
    },
    /// List the daemon's peers: id, public key, address, online|offline|nearby
    /// (nearby: announced, not kept alive), outbox size, muted, relation
    Peers {
        /// Print one JSON document (see README, "JSON output")
        #[arg(long)]
        json: bool,
    },
    /// List rooms: group rooms and direct chats, with unread counts
    Rooms {
        /// Print one JSON document (see README, "JSON output")
        #[arg(long)]
        json: bool,
    },
    /// Show a room's messages, newest first, a page at a time
    History {
        /// A group room or a peer (its direct chat), as for `send --to`
        room: String,
        /// Messages per page (at most 1000)
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only messages older than this cursor (the first column; the
        /// last line of a page says which cursor gives the next page)
        #[arg(long, value_name = "CURSOR")]
        before: Option<u64>,
        /// Print one JSON document (see README, "JSON output")
        #[arg(long)]
        json: bool,
    },
    /// Mark a room read (up to its newest message, or --up-to CURSOR)
    Read {
        /// A group room or a peer (its direct chat), as for `send --to`
        room: String,
        /// Read up to this message's cursor (see `kith history`)
        #[arg(long, value_name = "CURSOR")]
        up_to: Option<u64>,
    },
    /// Create a group room, invite to it, remove from it, or leave it
    #[command(subcommand)]
    Room(RoomCommand),
    /// Block a peer: it sees you as unavailable, its packets are dropped, it
    /// is never shown, probed or answered; persists
    Block {
        /// The peer, as for `send --to`
        peer: String,
    },
    /// Lift a block
    Unblock {
        /// The peer, as for `send --to`
        peer: String,
    },
    /// Mute a room or a peer: messages are still stored, but not notified
    Mute {
        /// A room or a peer, as for `send --to`
        target: String,
        /// How long: 15m, 1h, 8h, 1w (or any number with s, m, h, d, w), or forever
        #[arg(long = "for", value_name = "DURATION", default_value = "forever")]
        duration: String,
    },
    /// End a mute
    Unmute {
        /// A room or a peer, as for `send --to`
        target: String,
    },
    /// Print the daemon's counters (messages, datagrams, drops by reason)
    Status {
        /// Print one JSON document (see README, "JSON output")
        #[arg(long)]
        json: bool,
    },
    /// Print the daemon's events as they happen
    Listen {
        /// One JSON object per line, for scripts (muted messages included,
        /// flagged "muted":true)
        #[arg(long)]
        json: bool,
        /// Also print messages from muted rooms and peers
        #[arg(long)]
        all: bool,
        /// First replay every message stored after this cursor (every
        /// message event carries its cursor; 0 replays everything), then
        /// go live: nothing missed while away, nothing twice
        #[arg(long, value_name = "CURSOR")]
        since: Option<u64>,
    },
    /// Search message text (ignoring case), newest first, through the
    /// running daemon: every room, or one
    Search {
        /// The text to look for
        text: String,
        /// Only this room (or this peer's direct chat), as for `send --to`
        #[arg(long)]
        room: Option<String>,
        /// Results older than this cursor (printed after a full page)
        #[arg(long, value_name = "CURSOR")]
        before: Option<String>,
        /// At most this many results (1-1000)
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON document: {"results":[...],"next":CURSOR|null}; each result has room, id, from, from_name, timestamp (HLC), time_ms, cursor, ours, text
        #[arg(long)]
        json: bool,
    },
    /// Stop the running daemon cleanly
    Stop,
    /// Print what discovery sees: interfaces, mDNS, registry state, and
    /// every peer heard or sighted (address, source, when last heard)
    Discovery {
        /// Print one JSON document (see README, "JSON output")
        #[arg(long)]
        json: bool,
    },
    /// List the peers you blocked
    Blocked {
        /// Print one JSON document (see README, "JSON output")
        #[arg(long)]
        json: bool,
    },
    /// Accept a contact request (someone you did not know wrote to you)
    Accept {
        /// The peer, as for `send --to`
        peer: String,
    },
    /// Decline a contact request: blocks the peer
    Decline {
        /// The peer, as for `send --to`
        peer: String,
    },
    /// Run a registry: lets peers that mDNS cannot reach find each other.
    /// It stores identity → addresses only, never chat data. Its key is kept
    /// in DATA/registry.key when --data or KITH_DATA is given (or in
    /// --key-file), otherwise it is new every start. Ctrl-C/SIGTERM stop it
    /// after a last line with its counters.
    Registry(RegistryArgs),
}

#[derive(Subcommand)]
enum RoomCommand {
    /// Create a group room with you as its admin
    Create {
        /// Its name
        name: String,
        /// A member to invite, as for `send --to` (repeatable)
        #[arg(long = "member", value_name = "PEER")]
        members: Vec<String>,
    },
    /// Add a peer to a room you run
    Invite { room: String, peer: String },
    /// Remove a member from a room you run; it cannot read anything sent after
    Remove { room: String, peer: String },
    /// Leave a room
    Leave { room: String },
    /// Accept an invitation to a room (`kith rooms` lists them as invited)
    Accept { room: String },
    /// Decline an invitation to a room
    Decline { room: String },
}

/// How the desktop app's node runs. The defaults suit a laptop on a LAN:
/// the usual port, mDNS on the default route's interface.
#[derive(clap::Args, Default)]
#[cfg_attr(not(feature = "gui"), allow(dead_code))]
struct AppArgs {
    /// Address to listen on [default: 0.0.0.0:47474]
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// LAN interface (name or IPv4 address) for mDNS (repeatable); wins
    /// over the choice saved at first run or in Settings [default: that
    /// choice, else the default route's interface if it can multicast]
    #[arg(long = "interface", value_name = "IFACE")]
    interfaces: Vec<String>,
    /// A peer to talk to, as PUBLICKEYHEX@IP:PORT (repeatable), for
    /// networks where mDNS is blocked
    #[arg(long = "peer", value_name = "PUBLICKEYHEX@IP:PORT")]
    peers: Vec<String>,
    /// Do not announce or browse mDNS
    #[arg(long)]
    no_mdns: bool,
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
    /// Seconds between keep-alives to a contact or room member while
    /// messages flow; a peer is offline after 3 missed ones
    #[arg(long, default_value_t = 5)]
    keepalive_secs: u64,
    /// Longest seconds between keep-alives to an idle contact or room
    /// member (the interval doubles up to this while nothing else is
    /// exchanged); offline is noticed within this plus 2 keep-alive
    /// intervals
    #[arg(long, default_value_t = 60)]
    keepalive_max_secs: u64,
    /// IPv4 address of an interface to send and receive group-room traffic
    /// on by multicast (repeatable). Without it rooms go unicast to each
    /// member.
    #[arg(long = "multicast-interface", value_name = "IPV4")]
    multicast_interfaces: Vec<std::net::Ipv4Addr>,
    /// Join rooms as soon as someone invites you (for unattended devices)
    #[arg(long)]
    accept_invites: bool,
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
    install_logger();
    if let Err(error) = run(Cli::parse()) {
        // `kith peers | head -1`: the reader has what it wanted. Quiet and
        // successful, as a program killed by SIGPIPE looks to a shell
        // pipeline (and as ripgrep does).
        if error.chain().any(|cause| cause.is::<StdoutClosed>()) {
            std::process::exit(0);
        }
        eprintln!("kith: {error:#}");
        std::process::exit(1);
    }
}

/// Prints the library's log records on standard error, one line each, as
/// `kith daemon: …` for the daemon's records and `kith: …` for the rest.
///
/// Only kith's own records: dependencies (mdns-sd) log at length about
/// packets a user has no use for. Warnings and errors show by default;
/// `KITH_LOG` (`off`, `error`, `warn`, `info`, `debug`, `trace`) changes that.
struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

fn install_logger() {
    let level = std::env::var("KITH_LOG")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(log::LevelFilter::Info);
    // Fails only if a logger is already installed, and `main` installs one.
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

/// The prefix of a log line from `target` (a module path).
fn log_prefix(target: &str) -> &'static str {
    if target == "kith::daemon" || target.starts_with("kith::daemon::") {
        "kith daemon"
    } else {
        "kith"
    }
}

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
            && (metadata.target() == "kith" || metadata.target().starts_with("kith::"))
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            use std::io::Write as _;
            // Nowhere to report a failed write to standard error.
            let _ = writeln!(
                std::io::stderr().lock(),
                "{}: {}",
                log_prefix(record.target()),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// Standard output was closed by its reader (EPIPE).
///
/// Why not restore SIGPIPE's default action, as many CLIs do: this binary
/// is also the daemon, the registry and the desktop app, which write to
/// Unix sockets whose peers may go away (a `kith listen` that is stopped).
/// Rust ignores SIGPIPE so that such a write fails with EPIPE instead of
/// killing the process; the signal is process-wide, so it stays ignored and
/// only stdout's EPIPE is treated as "the reader is done".
#[derive(Debug)]
struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// `println!` that returns an error instead of panicking when stdout
/// cannot be written: [`StdoutClosed`] when its reader went away.
macro_rules! outln {
    ($($arg:tt)*) => {
        print_line(format_args!($($arg)*))
    };
}

fn print_line(line: std::fmt::Arguments<'_>) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").map_err(stdout_error)
}

fn stdout_error(error: std::io::Error) -> anyhow::Error {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        anyhow::Error::new(error).context("cannot write to standard output")
    }
}

fn run(cli: Cli) -> Result<()> {
    let data_dir = cli.data.clone().unwrap_or_else(default_data_dir);
    match cli.command.unwrap_or(Command::App(AppArgs::default())) {
        Command::Registry(args) => run_registry(args, cli.data),
        Command::App(args) => {
            // Given a passphrase (file or environment), the app unlocks at
            // once; otherwise it asks in its window.
            let passphrase = (cli.passphrase_file.is_some()
                || std::env::var_os("KITH_PASSPHRASE").is_some())
            .then(|| passphrase(&cli.passphrase_file))
            .transpose()?;
            run_app(data_dir, args, passphrase)
        }
        Command::Init { name } => {
            // Checked first: a refused name creates nothing.
            let name = name.map(|n| check_name(&n)).transpose()?;
            let passphrase = passphrase(&cli.passphrase_file)?;
            let mut account = Account::create(&data_dir, &passphrase, KdfParams::default())?;
            warn_permissions(account.permission_warnings());
            if let Some(name) = name {
                store_profile(&mut account, &name)?;
            }
            outln!("created a kith account in {}", data_dir.display())?;
            print_identity(&account)
        }
        Command::Profile { name } => {
            let name = check_name(&name)?;
            match Client::connect(&data_dir) {
                Ok(client) => {
                    client.call("profile", &[&name])?;
                    outln!("you are {name}")?;
                }
                Err(ControlError::NotRunning(_)) => {
                    let mut account = Account::open(&data_dir, &passphrase(&cli.passphrase_file)?)?;
                    store_profile(&mut account, &name)?;
                    outln!("you are {name} (sent to your contacts when the daemon next runs)")?;
                }
                Err(error) => return Err(error.into()),
            }
            Ok(())
        }
        Command::Id { json } => {
            let account = Account::open(&data_dir, &passphrase(&cli.passphrase_file)?)?;
            warn_permissions(account.permission_warnings());
            if json {
                let public = account.identity.public();
                outln!(
                    "{}",
                    kith::daemon::json::id(&public.peer_id(), &public.to_bytes())
                )
            } else {
                print_identity(&account)
            }
        }
        Command::Verify { public_key } => {
            let key = PeerId::from_hex(public_key.trim())
                .context("a public key is 64 hexadecimal characters")?;
            let contact =
                PublicIdentity::from_bytes(&key.0).context("that is not a valid public key")?;
            let account = Account::open(&data_dir, &passphrase(&cli.passphrase_file)?)?;
            warn_permissions(account.permission_warnings());
            outln!("contact peer id  {}", contact.peer_id())?;
            outln!(
                "safety number    {}",
                safety_number(&account.identity.public(), &contact)
            )?;
            Ok(())
        }
        Command::Daemon(args) => {
            let passphrase = passphrase(&cli.passphrase_file)?;
            run_daemon(&data_dir, &passphrase, args)
        }
        Command::Discovery { json: true } => print_json(&data_dir, "discovery"),
        Command::Discovery { json: false } => print_lines(&data_dir, "discovery", None),
        Command::Blocked { json: true } => print_json(&data_dir, "blocked"),
        Command::Blocked { json: false } => print_lines(&data_dir, "blocked", Some("PEER")),
        Command::Accept { peer } => {
            let (_, id) = Client::connect(&data_dir)?.call("accept", &[&peer])?;
            outln!("accepted {id}")?;
            Ok(())
        }
        Command::Decline { peer } => {
            let (_, id) = Client::connect(&data_dir)?.call("block", &[&peer])?;
            outln!("declined and blocked {id}")?;
            Ok(())
        }
        Command::Send { to, text } => {
            let id = Client::connect(&data_dir)?.send(&to, &text)?;
            outln!("{id}")?;
            Ok(())
        }
        Command::Peers { json: true } => print_json(&data_dir, "peers"),
        Command::Peers { json: false } => print_lines(
            &data_dir,
            "peers",
            Some("PEER PUBLIC_KEY ADDRESS STATE OUTBOX MUTED RELATION NAME"),
        ),
        Command::Rooms { json: true } => print_json(&data_dir, "rooms"),
        Command::Rooms { json: false } => print_rooms(&data_dir),
        Command::History {
            room,
            limit,
            before,
            json,
        } => print_history(&data_dir, &room, limit, before, json),
        Command::Read { room, up_to } => {
            let line = kith::daemon::control::Request::Read { room, up_to }.emit();
            let (_, unread) = Client::connect(&data_dir)?.request(&line)?;
            outln!("{unread} unread")
        }
        Command::Room(command) => {
            let client = Client::connect(&data_dir)?;
            let (_, value) = match &command {
                RoomCommand::Create { name, members } => {
                    let mut args = vec![name.as_str()];
                    args.extend(members.iter().map(String::as_str));
                    client.call("create", &args)?
                }
                RoomCommand::Invite { room, peer } => client.call("invite", &[room, peer])?,
                RoomCommand::Remove { room, peer } => client.call("remove", &[room, peer])?,
                RoomCommand::Leave { room } => client.call("leave", &[room])?,
                RoomCommand::Accept { room } => client.call("join", &[room])?,
                RoomCommand::Decline { room } => client.call("decline", &[room])?,
            };
            if !value.is_empty() {
                outln!("{value}")?;
            }
            Ok(())
        }
        Command::Block { peer } => {
            let (_, id) = Client::connect(&data_dir)?.call("block", &[&peer])?;
            outln!("blocked {id}")?;
            Ok(())
        }
        Command::Unblock { peer } => {
            let (_, id) = Client::connect(&data_dir)?.call("unblock", &[&peer])?;
            outln!("unblocked {id}")?;
            Ok(())
        }
        Command::Mute { target, duration } => {
            let until = match parse_duration(&duration)? {
                None => "forever".to_owned(),
                Some(duration) => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .context("the system clock is before 1970")?;
                    (now + duration).as_millis().to_string()
                }
            };
            let line = format!(
                "mute {} {until}",
                kith::daemon::control::hex_encode(target.as_bytes())
            );
            Client::connect(&data_dir)?.request(&line)?;
            Ok(())
        }
        Command::Unmute { target } => {
            Client::connect(&data_dir)?.call("unmute", &[&target])?;
            Ok(())
        }
        Command::Status { json: true } => print_json(&data_dir, "status"),
        Command::Status { json: false } => print_lines(&data_dir, "status", Some("COUNTER VALUE")),
        Command::Search {
            text,
            room,
            before,
            limit,
            json,
        } => print_search(&data_dir, text, room, before, limit, json),
        Command::Stop => {
            Client::connect(&data_dir)?.request("stop")?;
            Ok(())
        }
        Command::Listen { json, all, since } => {
            let format = match (json, all) {
                (true, _) => ListenFormat::Json,
                (false, true) => ListenFormat::TextWithMuted,
                (false, false) => ListenFormat::Text,
            };
            let mut stdout = std::io::stdout().lock();
            // The client reports the closure's error as its own; this tells
            // a closed stdout apart from a lost daemon.
            let mut stdout_closed = false;
            let listened = Client::connect(&data_dir)?.listen_since(format, since, |line| {
                let written = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
                stdout_closed = written
                    .as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe);
                written
            });
            if stdout_closed {
                return Err(StdoutClosed.into());
            }
            listened?;
            Ok(())
        }
    }
}

/// `15m`, `1h`, `8h`, `1w`, any number with s/m/h/d/w, or `forever`
/// (`None`).
fn parse_duration(text: &str) -> Result<Option<Duration>> {
    let text = text.trim();
    if text == "forever" {
        return Ok(None);
    }
    let bad = || anyhow::anyhow!("{text:?} is not a duration like 15m, 1h, 8h, 1w or forever");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    let total = number
        .checked_mul(seconds)
        .filter(|t| *t > 0)
        .ok_or_else(bad)?;
    Ok(Some(Duration::from_secs(total)))
}

/// `kith rooms`: one line per room, for people.
fn print_rooms(data_dir: &Path) -> Result<()> {
    let (lines, _) = Client::connect(data_dir)?.request("rooms")?;
    outln!("ROOM  KIND  MEMBERS  EPOCH  UNREAD  NAME")?;
    for line in lines {
        let fields: Vec<&str> = line.split(' ').collect();
        let [
            id,
            kind,
            epoch,
            members,
            mute,
            _admin,
            name,
            unread,
            unread_muted,
        ] = fields[..]
        else {
            bail!("the daemon sent a room line this kith does not understand: {line}");
        };
        let name = kith::daemon::control::hex_decode(name)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let mute = match mute {
            "-" => String::new(),
            "forever" => "  (muted)".to_owned(),
            _ => "  (muted for now)".to_owned(),
        };
        let unread = match (unread, unread_muted) {
            (total, "0") => total.to_owned(),
            (total, muted) => format!("{total} ({muted} muted)"),
        };
        outln!("{id}  {kind:6}  {members} members  epoch {epoch}  {unread} unread  {name}{mute}")?;
    }
    Ok(())
}

/// `kith search`: one line per message for people, or one JSON document.
fn print_search(
    data_dir: &Path,
    text: String,
    room: Option<String>,
    before: Option<String>,
    limit: usize,
    json: bool,
) -> Result<()> {
    use kith::daemon::control::{Request, hex_decode};
    use kith::daemon::json_escape;
    if !(1..=kith::store::MAX_SEARCH_LIMIT).contains(&limit) {
        bail!("--limit must be 1 to {}", kith::store::MAX_SEARCH_LIMIT);
    }
    let before = before
        .map(|cursor| {
            kith::daemon::search::parse_cursor(&cursor)
                .with_context(|| format!("{cursor:?} is not a cursor printed by kith search"))
        })
        .transpose()?;
    let line = Request::Search {
        text,
        room,
        before,
        limit,
    }
    .emit();
    let (lines, _) = Client::connect(data_dir)?.request(&line)?;
    let text_of = |hex: &str| {
        hex_decode(hex)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let mut results = Vec::with_capacity(lines.len());
    let mut next = None;
    for line in &lines {
        let fields: Vec<&str> = line.split(' ').collect();
        let [room, id, from, timestamp, cursor, ours, from_name, body] = fields[..] else {
            bail!("the daemon sent a search line this kith does not understand: {line}");
        };
        next = Some(cursor.to_owned());
        let (from_name, body) = (text_of(from_name), text_of(body));
        if json {
            results.push(format!(
                r#"{{"room":"{room}","id":"{id}","from":"{from}","from_name":"{}","timestamp":{timestamp},"time_ms":{},"cursor":"{cursor}","ours":{},"text":"{}"}}"#,
                json_escape(&from_name),
                timestamp.parse().map_or(0, kith::proto::hlc::millis),
                ours == "ours",
                json_escape(&body)
            ));
        } else {
            results.push(format!(
                "{}  {from_name}: {}",
                &room[..8.min(room.len())],
                body.replace('\n', " ⏎ ")
            ));
        }
    }
    // Only a full page may have more after it.
    let next = next.filter(|_| lines.len() == limit);
    if json {
        let next = next.map_or_else(|| "null".to_owned(), |c| format!("\"{c}\""));
        outln!(r#"{{"results":[{}],"next":{next}}}"#, results.join(","))?;
    } else {
        outln!("ROOM      FROM: TEXT (newest first)")?;
        for result in results {
            outln!("{result}")?;
        }
        if let Some(cursor) = next {
            outln!("more: kith search … --before {cursor}")?;
        }
    }
    Ok(())
}

/// Prints a listing's data lines under `header` (a row naming the columns).
fn print_lines(data_dir: &Path, request: &str, header: Option<&str>) -> Result<()> {
    let (lines, _) = Client::connect(data_dir)?.request(request)?;
    if let Some(header) = header {
        outln!("{header}")?;
    }
    for line in lines {
        outln!("{line}")?;
    }
    Ok(())
}

/// Prints the one JSON document a `json LISTING` request answers with.
fn print_json(data_dir: &Path, listing: &str) -> Result<()> {
    let (lines, _) = Client::connect(data_dir)?.request(&format!("json {listing}"))?;
    for line in lines {
        outln!("{line}")?;
    }
    Ok(())
}

/// `kith history`: a page of a room's messages, newest first.
fn print_history(
    data_dir: &Path,
    room: &str,
    limit: usize,
    before: Option<u64>,
    json: bool,
) -> Result<()> {
    let line = kith::daemon::control::Request::History {
        room: room.to_owned(),
        before,
        limit,
        json,
    }
    .emit();
    let (lines, next) = Client::connect(data_dir)?.request(&line)?;
    if json {
        for line in lines {
            outln!("{line}")?;
        }
        return Ok(());
    }
    let text = |word: &str| match word {
        "-" => None,
        hex => {
            kith::daemon::control::hex_decode(hex).map(|b| String::from_utf8_lossy(&b).into_owned())
        }
    };
    outln!("CURSOR  TIME  AUTHOR  DELIVERED  TEXT")?;
    for line in lines {
        let fields: Vec<&str> = line.split(' ').collect();
        let [cursor, _id, author, millis, ours, delivered, name, body] = fields[..] else {
            bail!("the daemon sent a history line this kith does not understand: {line}");
        };
        let who = match (ours, text(name)) {
            ("ours", _) => "you".to_owned(),
            (_, Some(name)) => name,
            (_, None) => author.chars().take(8).collect(),
        };
        let delivered = if ours == "ours" { delivered } else { "-" };
        let body = text(body).unwrap_or_else(|| "(unreadable)".to_owned());
        let time = millis
            .parse()
            .map_or_else(|_| millis.to_owned(), local_time);
        outln!("{cursor}  {time}  {who}  {delivered}  {body}")?;
    }
    if !next.is_empty() {
        outln!("(older: kith history {room} --before {next})")?;
    }
    Ok(())
}

/// `millis` since the epoch as local `YYYY-MM-DD HH:MM:SS`, for people
/// (`--json` keeps the milliseconds).
fn local_time(millis: i64) -> String {
    let secs: libc::time_t = millis.div_euclid(1000);
    // SAFETY: `tm` is a plain C struct for which all zeroes is a valid
    // value; `localtime_r` only writes into it and reads `secs`.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return millis.to_string();
        }
        tm
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        i64::from(tm.tm_year) + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
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
    };
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

/// Tells the user about account files that other users can open; kith
/// goes on, since only the user knows whether that is on purpose.
fn warn_permissions(warnings: Vec<PermissionWarning>) {
    for warning in warnings {
        eprintln!("kith: warning: {warning}");
    }
}

/// A public key given on the command line.
fn public_key(hex: &str) -> Result<PublicIdentity> {
    let key = PeerId::from_hex(hex.trim()).context("a public key is 64 hexadecimal characters")?;
    PublicIdentity::from_bytes(&key.0).context("that is not a valid public key")
}

fn print_identity(account: &Account) -> Result<()> {
    let public = account.identity.public();
    outln!("peer id     {}", public.peer_id())?;
    outln!("public key  {}", PeerId(public.to_bytes()))?;
    if let Some(profile) = account.store.profile(&public.peer_id())? {
        outln!("name        {}", profile.name)?;
    }
    Ok(())
}

/// Signs and keeps `name` as our profile in a store no daemon has open;
/// the daemon sends it at its next start. Numbered after the clock and
/// above any kept before, so it wins over every earlier one.
fn store_profile(account: &mut Account, name: &str) -> Result<()> {
    let me = account.identity.peer_id();
    let previous = account.store.profile(&me)?.map_or(0, |p| p.seq);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?;
    let seq = u64::try_from(now.as_millis())
        .unwrap_or(u64::MAX)
        .max(previous.saturating_add(1));
    let record = SignedProfile::sign(&account.identity, seq, name)?;
    account.store.put_profile(&kith::store::StoredProfile {
        peer: me,
        seq,
        name: record.profile.name,
        record: record.bytes,
    })?;
    Ok(())
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
fn run_app(data_dir: PathBuf, args: AppArgs, passphrase: Option<String>) -> Result<()> {
    let peers = args
        .peers
        .iter()
        .map(|peer| peer.parse::<PeerAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    // None given: the app uses the choice saved at first run (or in its
    // Settings), else the default route's interface.
    let interfaces = args
        .interfaces
        .iter()
        .map(|iface| iface.parse::<InterfaceSpec>())
        .collect::<Result<Vec<_>, _>>()?;
    let mut config = DaemonConfig {
        peers,
        // So that `kith send/listen/peers` work against the running app.
        control_socket: true,
        ..DaemonConfig::default()
    };
    if let Some(listen) = args.listen {
        config.net.unicast_bind = listen;
    }
    config.discovery.interfaces = interfaces;
    config.discovery.mdns = !args.no_mdns;
    let renderer = match std::env::var("KITH_RENDERER").as_deref() {
        Err(_) | Ok("" | "wgpu") => kith::ui::Renderer::Wgpu,
        Ok("glow") => kith::ui::Renderer::Glow,
        Ok(other) => bail!("KITH_RENDERER is wgpu or glow, not {other:?}"),
    };
    match kith::ui::run(data_dir, config, passphrase, renderer) {
        Ok(()) => Ok(()),
        // wgpu found no adapter (no Vulkan driver): start again with glow.
        // A new process, because a window system connection cannot be
        // opened twice in one; nothing was unlocked yet, the window never
        // showed.
        Err(error)
            if kith::ui::renderer_failed(&error) && std::env::var_os("KITH_RENDERER").is_none() =>
        {
            eprintln!("kith: wgpu could not start ({error}); trying OpenGL (KITH_RENDERER=glow)");
            let exe = std::env::current_exe().context("cannot find this program to restart it")?;
            let status = std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .env("KITH_RENDERER", "glow")
                .status()
                .context("cannot restart with the glow renderer")?;
            if status.success() {
                Ok(())
            } else {
                bail!("the desktop app failed with wgpu ({error}) and with glow ({status})")
            }
        }
        Err(error) => Err(anyhow::anyhow!("the desktop app failed: {error}")),
    }
}

#[cfg(not(feature = "gui"))]
fn run_app(_data_dir: PathBuf, _args: AppArgs, _passphrase: Option<String>) -> Result<()> {
    bail!("this kith was built without the desktop app (--no-default-features); see `kith --help`")
}
