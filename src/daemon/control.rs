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
//! | `peers` | `PEER_ID PUBLIC_KEY ADDR\|- online\|offline OUTBOX MUTE contact\|request\|nearby` (blocked peers are not listed) | `ok` |
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

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use super::driver::Command;
use super::{DaemonError, StopRequester, request};
use crate::net::CommandSender;
use crate::proto::ids::PeerId;
use crate::store::Mute;

/// File name of the control socket inside the data directory.
pub const SOCKET_FILE: &str = "kith.sock";

/// Longest request line accepted; a send of the largest message, hex-encoded,
/// fits with room to spare.
const MAX_REQUEST: u64 = 256 * 1024;

/// Path of the control socket of the daemon serving `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE)
}

/// The accept loop on thread `kith-control`.
pub(crate) struct ControlServer {
    path: PathBuf,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    pub(crate) fn start(
        data_dir: &Path,
        commands: CommandSender<Command>,
        stop: StopRequester,
    ) -> Result<Self, DaemonError> {
        let path = socket_path(data_dir);
        let error = |e| DaemonError::ControlSocket(path.clone(), e);
        // We hold the store's lock, so no other daemon serves this
        // directory: a socket file left here is from one that was killed.
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(error(e)),
            _ => {}
        }
        let listener = UnixListener::bind(&path).map_err(error)?;
        // The data directory is already private (0700), so the moment
        // between bind and chmod exposes nothing.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(error)?;
        let stopping = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stopping);
        let thread = std::thread::Builder::new()
            .name("kith-control".into())
            .spawn(move || accept_loop(listener, flag, commands, stop))
            .map_err(error)?;
        Ok(ControlServer {
            path,
            stopping,
            thread: Some(thread),
        })
    }

    /// Stops accepting, waits for the accept thread and removes the socket
    /// file. Connections already open end when the daemon's channels close.
    pub(crate) fn stop(self) {
        drop(self);
    }
}

impl Drop for ControlServer {
    /// Also runs when a `DaemonHandle` is dropped without `shutdown`, so no
    /// accept thread or socket file outlives the daemon.
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // `accept` blocks; a connection of our own wakes it to see the flag.
        let _ = UnixStream::connect(&self.path);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(
    listener: UnixListener,
    stopping: Arc<AtomicBool>,
    commands: CommandSender<Command>,
    stop: StopRequester,
) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let commands = commands.clone();
        let stop = stop.clone();
        // One thread per client: `listen` holds its connection open.
        let spawned = std::thread::Builder::new()
            .name("kith-control-client".into())
            .spawn(move || {
                // A client that hangs up mid-answer is its own problem.
                let _ = serve(stream, &commands, &stop);
            });
        if let Err(error) = spawned {
            eprintln!("kith daemon: cannot serve a control client: {error}");
        }
    }
}

fn serve(
    stream: UnixStream,
    commands: &CommandSender<Command>,
    stop: &StopRequester,
) -> io::Result<()> {
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_REQUEST)).read_line(&mut line)?;
    let mut out = io::BufWriter::new(&stream);
    match answer(line.trim_end(), commands, stop, &mut out) {
        Ok(Some(value)) => writeln!(out, "ok {value}")?,
        Ok(None) => {}
        Err(error) => writeln!(out, "err {error}")?,
    }
    out.flush()
}

/// Handles one request; `Ok(None)` means the answer was written already.
fn answer(
    line: &str,
    commands: &CommandSender<Command>,
    stop: &StopRequester,
    out: &mut impl Write,
) -> Result<Option<String>, DaemonError> {
    let mut words = line.split(' ');
    let io = |e: io::Error| DaemonError::ControlSocket(PathBuf::from(SOCKET_FILE), e);
    match words.next().unwrap_or_default() {
        "send" => {
            let (to, text) = (arg(&mut words, line)?, arg(&mut words, line)?);
            let id = request(commands, |reply| Command::Send { to, text, reply })??;
            Ok(Some(id.to_hex()))
        }
        "peers" => {
            for peer in request(commands, |reply| Command::Peers { reply })? {
                writeln!(
                    out,
                    "{} {} {} {} {} {} {}",
                    peer.peer.to_hex(),
                    PeerId(peer.public.to_bytes()).to_hex(),
                    peer.addr.map_or_else(|| "-".to_owned(), |a| a.to_string()),
                    if peer.online { "online" } else { "offline" },
                    peer.outbox,
                    mute_word(peer.muted),
                    match (peer.contact, peer.request) {
                        (true, true) => "request",
                        (true, false) => "contact",
                        (false, _) => "nearby",
                    }
                )
                .map_err(io)?;
            }
            Ok(Some(String::new()))
        }
        "rooms" => {
            for room in request(commands, |reply| Command::Rooms { reply })? {
                writeln!(
                    out,
                    "{} {} {} {} {} {} {}",
                    PeerId(room.id.0).to_hex(),
                    match (room.direct.is_some(), room.invited) {
                        (true, _) => "direct",
                        (false, true) => "invited",
                        (false, false) => "group",
                    },
                    room.epoch,
                    room.members.len(),
                    mute_word(room.muted),
                    room.admin.map_or("-".to_owned(), |a| a.to_hex()),
                    hex_encode(room.name.as_bytes()),
                )
                .map_err(io)?;
            }
            Ok(Some(String::new()))
        }
        "create" => {
            let name = arg(&mut words, line)?;
            let members = words
                .map(|w| decode_arg(w, line))
                .collect::<Result<Vec<_>, _>>()?;
            let room = request(commands, |reply| Command::CreateRoom {
                name,
                members,
                reply,
            })??;
            Ok(Some(PeerId(room.0).to_hex()))
        }
        "invite" | "remove" => {
            let (room, peer) = (arg(&mut words, line)?, arg(&mut words, line)?);
            if line.starts_with("invite") {
                request(commands, |reply| Command::Invite { room, peer, reply })??;
            } else {
                request(commands, |reply| Command::RemoveMember {
                    room,
                    peer,
                    reply,
                })??;
            }
            Ok(Some(String::new()))
        }
        "join" | "decline" => {
            let room = arg(&mut words, line)?;
            let accept = line.starts_with("join");
            request(commands, |reply| Command::AnswerInvite {
                room,
                accept,
                reply,
            })??;
            Ok(Some(String::new()))
        }
        "leave" => {
            let room = arg(&mut words, line)?;
            request(commands, |reply| Command::Leave { room, reply })??;
            Ok(Some(String::new()))
        }
        "block" | "unblock" => {
            let peer = arg(&mut words, line)?;
            let blocked = line.starts_with("block");
            let peer = request(commands, |reply| Command::Block {
                peer,
                blocked,
                reply,
            })??;
            Ok(Some(peer.to_hex()))
        }
        "mute" | "unmute" => {
            let target = arg(&mut words, line)?;
            let mute = if line.starts_with("unmute") {
                None
            } else {
                match words.next() {
                    Some("forever") => Some(Mute::Indefinitely),
                    Some(until) => Some(Mute::Until(
                        until
                            .parse()
                            .map_err(|_| DaemonError::UnknownRequest(line.to_owned()))?,
                    )),
                    None => return Err(DaemonError::UnknownRequest(line.to_owned())),
                }
            };
            request(commands, |reply| Command::Mute {
                target,
                mute,
                reply,
            })??;
            Ok(Some(String::new()))
        }
        "status" => {
            let status = request(commands, |reply| Command::Status { reply })?;
            for (name, value) in status.counters() {
                writeln!(out, "{name} {value}").map_err(io)?;
            }
            Ok(Some(String::new()))
        }
        "listen" => {
            let format = words.next().unwrap_or("json");
            let json = format == "json";
            let (tx, rx) = std::sync::mpsc::channel();
            commands.send(Command::Subscribe(tx))?;
            writeln!(out, "ok").map_err(io)?;
            out.flush().map_err(io)?;
            // Ends when the client hangs up (write fails) or the daemon
            // stops (the channel closes).
            for event in rx {
                if json {
                    writeln!(out, "{}", event.to_json()).map_err(io)?;
                } else if format == "all"
                    || !matches!(event, super::Event::MessageReceived { muted: true, .. })
                {
                    writeln!(out, "{event}").map_err(io)?;
                }
                out.flush().map_err(io)?;
            }
            Ok(None)
        }
        "stop" => {
            // Answer first: the process may exit as soon as the stop is
            // requested, and the client must not see a cut-off answer.
            writeln!(out, "ok").map_err(io)?;
            out.flush().map_err(io)?;
            stop.request_stop();
            Ok(None)
        }
        "discovery" => {
            let report = request(commands, |reply| Command::Discovery { reply })?;
            for line in report.lines() {
                writeln!(out, "{line}").map_err(io)?;
            }
            Ok(Some(String::new()))
        }
        "accept" => {
            let peer = arg(&mut words, line)?;
            let peer = request(commands, |reply| Command::Accept { peer, reply })??;
            Ok(Some(peer.to_hex()))
        }
        "blocked" => {
            for peer in request(commands, |reply| Command::Blocked { reply })? {
                writeln!(out, "{}", peer.to_hex()).map_err(io)?;
            }
            Ok(Some(String::new()))
        }
        other => Err(DaemonError::UnknownRequest(other.to_owned())),
    }
}

/// The next hex-encoded UTF-8 argument of a request.
fn arg<'a>(words: &mut impl Iterator<Item = &'a str>, line: &str) -> Result<String, DaemonError> {
    decode_arg(words.next().unwrap_or_default(), line)
}

fn decode_arg(word: &str, line: &str) -> Result<String, DaemonError> {
    let bytes = hex_decode(word)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| DaemonError::UnknownRequest(line.to_owned()))?;
    String::from_utf8(bytes).map_err(|_| DaemonError::NotText)
}

fn mute_word(mute: Option<Mute>) -> String {
    match mute {
        None => "-".to_owned(),
        Some(Mute::Indefinitely) => "forever".to_owned(),
        Some(Mute::Until(until)) => until.to_string(),
    }
}

/// Why a CLI command could not talk to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no kith daemon is running for {}", .0.display())]
    NotRunning(PathBuf),
    #[error("the daemon refused: {0}")]
    Refused(String),
    #[error("the daemon's answer was cut off")]
    Truncated,
    #[error("cannot talk to the daemon: {0}")]
    Io(#[from] io::Error),
}

/// A client connection to the daemon serving a data directory.
pub struct Client {
    reader: BufReader<UnixStream>,
}

impl Client {
    /// Connects, or says that no daemon runs for `data_dir`.
    pub fn connect(data_dir: &Path) -> Result<Self, ControlError> {
        let stream = UnixStream::connect(socket_path(data_dir)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                ControlError::NotRunning(data_dir.to_owned())
            }
            _ => ControlError::Io(e),
        })?;
        Ok(Client {
            reader: BufReader::new(stream),
        })
    }

    /// Sends one request line; returns the data lines and the final value.
    pub fn request(mut self, line: &str) -> Result<(Vec<String>, String), ControlError> {
        writeln!(self.reader.get_mut(), "{line}")?;
        let mut data = Vec::new();
        loop {
            let mut answer = String::new();
            if self.reader.read_line(&mut answer)? == 0 {
                return Err(ControlError::Truncated);
            }
            let answer = answer.trim_end();
            if answer == "ok" || answer.starts_with("ok ") {
                return Ok((data, answer[2..].trim().to_owned()));
            }
            if let Some(error) = answer.strip_prefix("err ") {
                return Err(ControlError::Refused(error.to_owned()));
            }
            data.push(answer.to_owned());
        }
    }

    /// Sends `text` to `to` (a peer or room as the user typed it);
    /// returns the message id (hex).
    pub fn send(self, to: &str, text: &str) -> Result<String, ControlError> {
        let line = format!(
            "send {} {}",
            hex_encode(to.as_bytes()),
            hex_encode(text.as_bytes())
        );
        self.request(&line).map(|(_, id)| id)
    }

    /// Sends request `verb` with `args` hex-encoded, as the protocol wants.
    pub fn call(self, verb: &str, args: &[&str]) -> Result<(Vec<String>, String), ControlError> {
        let mut line = verb.to_owned();
        for arg in args {
            line.push(' ');
            line.push_str(&hex_encode(arg.as_bytes()));
        }
        self.request(&line)
    }

    /// Subscribes to events and calls `each` with every line (a JSON
    /// object, or a short sentence when `json` is false) until the daemon
    /// stops or `each` returns an error.
    pub fn listen(
        self,
        format: ListenFormat,
        mut each: impl FnMut(&str) -> io::Result<()>,
    ) -> Result<(), ControlError> {
        let mut reader = self.reader;
        let format = match format {
            ListenFormat::Json => "json",
            ListenFormat::Text => "text",
            ListenFormat::TextWithMuted => "all",
        };
        writeln!(reader.get_mut(), "listen {format}")?;
        let mut first = String::new();
        reader.read_line(&mut first)?;
        if first.trim_end() != "ok" {
            return Err(ControlError::Refused(first.trim_end().to_owned()));
        }
        for line in reader.lines() {
            each(&line?)?;
        }
        Ok(())
    }
}

/// How `kith listen` prints events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenFormat {
    /// One JSON object per line, muted messages included (flagged).
    Json,
    /// Sentences; muted messages left out.
    Text,
    /// Sentences, muted messages included.
    TextWithMuted,
}

/// Hex of `bytes`, as the protocol carries user text.
pub fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of protocol hex; `None` if it is not hex.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let text = "héllo\nworld";
        assert_eq!(
            hex_decode(&hex_encode(text.as_bytes())).as_deref(),
            Some(text.as_bytes())
        );
        assert_eq!(hex_decode(""), Some(Vec::new()));
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
        assert_eq!(hex_decode("é1"), None);
    }
}
