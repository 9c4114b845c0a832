//! The local control socket: how `kith send`, `kith peers`, `kith status`,
//! `kith listen` and `kith stop` talk to a running daemon.
//!
//! A Unix stream socket, [`SOCKET_FILE`] in the data directory, mode 0600
//! (and the data directory itself is 0700), so only the owning user can
//! connect; no passphrase is needed by the client.
//!
//! Protocol, UTF-8 lines: the client sends one request line, the daemon
//! answers with zero or more data lines and then `ok [VALUE]` or
//! `err SENTENCE`. Everything the user typed (names, targets, text) travels
//! hex-encoded UTF-8 (`H(...)` below), so it may hold spaces and newlines.
//! Client and daemon are the same binary, so the protocol has no version.
//!
//! | request | data lines | final |
//! | --- | --- | --- |
//! | `send H(TO) H(TEXT)` | — | `ok MESSAGE_ID` |
//! | `peers` | `PEER_ID PUBLIC_KEY ADDR\|- online\|offline\|nearby OUTBOX MUTE contact\|request\|nearby DISPLAY_NAME` (blocked peers are not listed; `nearby` state: announced, not kept alive; the display name is the rest of the line: it may hold spaces, never a control character) | `ok` |
//! | `profile H(NAME)` (our display name) | — | `ok` |
//! | `search H(TEXT) H(ROOM)\|- CURSOR\|- LIMIT` | `ROOM_ID MESSAGE_ID FROM_ID TIMESTAMP CURSOR ours\|theirs H(FROM_NAME) H(TEXT)`, newest first; a file message (found by its file's name or caption) reads as in `history`, `[file NAME (SIZE bytes) HASH] CAPTION` (`CURSOR` is `TIMESTAMP.MESSAGE_ID`, for the next page) | `ok` |
//! | `blocked` | `PEER_ID` | `ok` |
//! | `accept H(PEER)` | — | `ok PEER_ID` |
//! | `rooms` | `ROOM_ID group\|direct\|invited EPOCH MEMBERS MUTE ADMIN\|- H(NAME)` | `ok` |
//! | `create H(NAME) H(MEMBER)...` | — | `ok ROOM_ID` |
//! | `invite H(ROOM) H(PEER)`, `remove H(ROOM) H(PEER)`, `leave H(ROOM)` | — | `ok` |
//! | `join H(ROOM)`, `decline H(ROOM)` (answer an invitation) | — | `ok` |
//! | `block H(PEER)`, `unblock H(PEER)` | — | `ok PEER_ID` |
//! | `mute H(TARGET) UNTIL_MS\|forever`, `unmute H(TARGET)` | — | `ok` |
//! | `status` | `NAME VALUE` | `ok` |
//! | `listen json\|text\|all` | after `ok`: one event per line (JSON object, or a sentence; `text` leaves out muted messages), until disconnect | — |
//! | `stop` | — | `ok` |
//! | `discovery` | see [`DiscoveryReport::lines`](super::DiscoveryReport::lines) | `ok` |
//!
//! `MUTE` is `-`, `forever`, or the end of the mute in milliseconds since
//! the Unix epoch.
//!
//! Limits (each refusal is one `err` line, then the daemon closes):
//! - at most [`ControlConfig::max_connections`] connections are served at
//!   once; one more is told so and closed at once;
//! - a request line must be complete within [`ControlConfig::idle_timeout`],
//!   and an answer or event left unread that long closes the connection; a
//!   `listen` subscription may stay quiet as long as it likes, and ends
//!   when its client hangs up (noticed within a second);
//! - a request line holds at most [`MAX_REQUEST_LINE`] bytes, checked while
//!   reading, so a longer one is refused without being buffered;
//! - a request line must be UTF-8.

mod answer;
mod client;
mod request;
mod server;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::daemon::StopRequester;
use crate::daemon::driver::Command;
use crate::net::{CommandSender, NetStats};
use crate::proto::ids::PeerId;
use crate::proto::node::MAX_TEXT;

pub use self::client::{Client, ControlError};
pub use self::request::{ListenFormat, Listing, Request, hex_decode, hex_encode};
pub(crate) use self::server::ControlServer;

/// File name of the control socket inside the data directory.
pub const SOCKET_FILE: &str = "kith.sock";

/// Longest target (`send --to`: an id, a key, a prefix or a name) the
/// request-line limit makes room for; room names are shorter.
const MAX_TARGET: usize = 1024;

/// Longest request line accepted, newline excluded: `send`, the target and
/// the largest message (hex doubles both), with room to spare. A longer
/// line is refused while it is read, so no more than this is ever buffered.
pub const MAX_REQUEST_LINE: usize = 2 * (MAX_TEXT + MAX_TARGET) + 64;

/// How often a quiet `listen` subscription checks whether its client hung
/// up (at most; a shorter [`ControlConfig::idle_timeout`] wins).
const HANGUP_CHECK: Duration = Duration::from_secs(1);

/// Limits of the control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// Connections served at once (each has a thread); one more gets
    /// `err too many control connections` and is closed. Default 64.
    pub max_connections: usize,
    /// How long a client may take to send a complete request line, and how
    /// long an answer or event may stay unread, before the connection is
    /// closed. A `listen` subscription waiting for events is not idle.
    /// Default 30 s.
    pub idle_timeout: Duration,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            max_connections: 64,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// What every connection thread needs.
struct Shared {
    commands: CommandSender<Command>,
    stop: StopRequester,
    net: Arc<NetStats>,
    config: ControlConfig,
    /// Our peer id (a peer's direct room is named after both ids).
    me: PeerId,
}

/// Path of the control socket of the daemon serving `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE)
}
