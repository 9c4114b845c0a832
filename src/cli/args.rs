//! The command line's words: subcommands and their options (clap).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kith",
    version,
    about = "LAN-first, end-to-end encrypted, serverless group messenger"
)]
pub(crate) struct Cli {
    /// Data directory [default: $XDG_DATA_HOME/kith or ~/.local/share/kith]
    #[arg(long, global = true, env = "KITH_DATA")]
    pub(crate) data: Option<PathBuf>,

    /// Read the passphrase from the first line of this file. Otherwise it
    /// comes from the KITH_PASSPHRASE environment variable; it is never a
    /// command-line argument, where other users could see it.
    #[arg(long, global = true)]
    pub(crate) passphrase_file: Option<PathBuf>,

    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
    /// Share a file with a room or a peer: it is offered in a file message,
    /// and members fetch it from you (prints the message id)
    Share {
        /// A group room or a peer (its direct chat), as for `send --to`
        to: String,
        /// The file to share (at most 256 MiB)
        path: PathBuf,
        /// A short text shown with the file
        #[arg(long)]
        caption: Option<String>,
    },
    /// List the files shared in a room or direct chat (one JSON document)
    Files {
        /// A group room or a peer (its direct chat), as for `send --to`
        room: String,
    },
    /// Fetch a shared file into a directory and wait until it is there
    Fetch {
        /// The file's hash or its file message's id (see `kith files`)
        file: String,
        /// Where to put the file (created if missing)
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// Start the fetch and return at once
        #[arg(long)]
        no_wait: bool,
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
pub(crate) enum RoomCommand {
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
pub(crate) struct AppArgs {
    /// Address to listen on [default: 0.0.0.0:47474]
    #[arg(long)]
    pub(crate) listen: Option<SocketAddr>,
    /// LAN interface (name or IPv4 address) for mDNS (repeatable); wins
    /// over the choice saved at first run or in Settings [default: that
    /// choice, else the default route's interface if it can multicast]
    #[arg(long = "interface", value_name = "IFACE")]
    pub(crate) interfaces: Vec<String>,
    /// A peer to talk to, as PUBLICKEYHEX@IP:PORT (repeatable), for
    /// networks where mDNS is blocked
    #[arg(long = "peer", value_name = "PUBLICKEYHEX@IP:PORT")]
    pub(crate) peers: Vec<String>,
    /// Do not announce or browse mDNS
    #[arg(long)]
    pub(crate) no_mdns: bool,
    /// A registry to register with and look contacts up in, HOST:PORT;
    /// wins over the one saved in Settings
    #[arg(long, requires = "registry_key")]
    pub(crate) registry: Option<String>,
    /// The registry's public key (64 hexadecimal characters), pinned
    #[arg(long, requires = "registry")]
    pub(crate) registry_key: Option<String>,
    /// Seconds between keep-alives while messages flow; wins over Settings
    /// [default: as saved in Settings, else 5]
    #[arg(long)]
    pub(crate) keepalive_secs: Option<u64>,
    /// IPv4 address of an interface for group rooms by multicast
    /// (repeatable); wins over Settings' "multicast for rooms"
    #[arg(long = "multicast-interface", value_name = "IPV4")]
    pub(crate) multicast_interfaces: Vec<std::net::Ipv4Addr>,
}

#[derive(clap::Args)]
pub(crate) struct DaemonArgs {
    /// UDP address to listen on
    #[arg(long, default_value = "0.0.0.0:47474")]
    pub(crate) listen: SocketAddr,
    /// A peer to talk to, as PUBLICKEYHEX@IP:PORT (repeatable)
    #[arg(long = "peer", value_name = "PUBLICKEYHEX@IP:PORT")]
    pub(crate) peers: Vec<String>,
    /// A contact whose address discovery finds (mDNS or the registry), by
    /// public key (repeatable)
    #[arg(long = "contact", value_name = "PUBLICKEYHEX")]
    pub(crate) contacts: Vec<String>,
    /// A LAN interface (name or IPv4 address) to announce and browse mDNS
    /// on (repeatable). mDNS is on when at least one is given: kith never
    /// uses an interface you did not name.
    #[arg(long = "interface", value_name = "IFACE")]
    pub(crate) interfaces: Vec<String>,
    /// Do not use mDNS even with --interface (registry and --peer only)
    #[arg(long)]
    pub(crate) no_mdns: bool,
    /// The name others see in mDNS [default: kith <short peer id>]
    #[arg(long, default_value = "")]
    pub(crate) name: String,
    /// A registry to register with and look contacts up in, HOST:PORT
    #[arg(long, requires = "registry_key")]
    pub(crate) registry: Option<String>,
    /// The registry's public key (64 hexadecimal characters, printed by
    /// `kith registry`), pinned: answers signed by any other key are dropped
    #[arg(long, requires = "registry")]
    pub(crate) registry_key: Option<String>,
    /// Seconds between keep-alives to a contact or room member while
    /// messages flow; a peer is offline after 3 missed ones
    #[arg(long, default_value_t = 5)]
    pub(crate) keepalive_secs: u64,
    /// Longest seconds between keep-alives to an idle contact or room
    /// member (the interval doubles up to this while nothing else is
    /// exchanged); offline is noticed within this plus 2 keep-alive
    /// intervals
    #[arg(long, default_value_t = 60)]
    pub(crate) keepalive_max_secs: u64,
    /// IPv4 address of an interface to send and receive group-room traffic
    /// on by multicast (repeatable). Without it rooms go unicast to each
    /// member.
    #[arg(long = "multicast-interface", value_name = "IPV4")]
    pub(crate) multicast_interfaces: Vec<std::net::Ipv4Addr>,
    /// Join rooms as soon as someone invites you (for unattended devices)
    #[arg(long)]
    pub(crate) accept_invites: bool,
}

#[derive(clap::Args)]
pub(crate) struct RegistryArgs {
    /// UDP address to listen on
    #[arg(long, default_value_t = SocketAddr::from(([0, 0, 0, 0], kith::registry::DEFAULT_PORT)))]
    pub(crate) listen: SocketAddr,
    /// File holding the registry's secret key (created with mode 0600)
    #[arg(long)]
    pub(crate) key_file: Option<PathBuf>,
    /// Seconds between client keep-alives; a client is unavailable after 3 missed
    #[arg(long, default_value_t = 10)]
    pub(crate) keepalive_secs: u64,
    /// Most registrations held at once
    #[arg(long, default_value_t = 100_000)]
    pub(crate) max_entries: usize,
}
