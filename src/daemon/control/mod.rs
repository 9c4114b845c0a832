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
//! | `search H(TEXT) H(ROOM)\|- CURSOR\|- LIMIT` | `ROOM_ID MESSAGE_ID FROM_ID TIMESTAMP CURSOR ours\|theirs H(FROM_NAME) H(TEXT)`, newest first (`CURSOR` is `TIMESTAMP.MESSAGE_ID`, for the next page) | `ok` |
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

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::address_book::presence_word;
use super::api::{Reply, Request as Ask, ResolveKind, Target, Update};
use super::driver::{Command, Sink};
use super::{DaemonError, StopRequester, ask, json, request};
use crate::net::{CommandSender, NetStats};
use crate::proto::ids::{PeerId, RoomId};
use crate::proto::node::MAX_TEXT;
use crate::store::Mute;

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

/// The accept loop on thread `kith-control`.
pub(crate) struct ControlServer {
    path: PathBuf,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    pub(crate) fn start(
        data_dir: &Path,
        config: ControlConfig,
        commands: CommandSender<Command>,
        stop: StopRequester,
        net: Arc<NetStats>,
        me: PeerId,
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
        let shared = Arc::new(Shared {
            commands,
            stop,
            net,
            config,
            me,
        });
        let thread = std::thread::Builder::new()
            .name("kith-control".into())
            .spawn(move || accept_loop(listener, flag, shared))
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

fn accept_loop(listener: UnixListener, stopping: Arc<AtomicBool>, shared: Arc<Shared>) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        // Only this thread adds, so a slot seen free here stays free.
        let max = shared.config.max_connections;
        if active.load(Ordering::SeqCst) >= max {
            refuse(&stream, &DaemonError::TooManyConnections(max));
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let slot = Slot(Arc::clone(&active));
        let shared = Arc::clone(&shared);
        // One thread per client (`listen` holds its connection open), at
        // most `max_connections` of them.
        let spawned = std::thread::Builder::new()
            .name("kith-control-client".into())
            .spawn(move || {
                let _slot = slot;
                // A client that hangs up mid-answer is its own problem.
                let _ = serve(&stream, &shared);
            });
        if let Err(error) = spawned {
            log::error!("cannot serve a control client: {error}");
        }
    }
}

/// A connection being served; frees its place when the thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Tells a client it is not served, without waiting for it.
fn refuse(stream: &UnixStream, error: &DaemonError) {
    // A fresh connection's send buffer is empty, so the line fits; if it
    // does not, the client is gone or misbehaving and learns by the close.
    let _ = stream.set_nonblocking(true);
    let _ = writeln!(&*stream, "err {error}");
}

/// Why no request line came.
enum LineError {
    /// Longer than [`MAX_REQUEST_LINE`]; holds what was read of it.
    TooLong(Vec<u8>),
    /// Not complete within the idle timeout.
    Idle,
    Io(io::Error),
}

/// Reads one request line (newline excluded; `None` at a clean hang-up)
/// of at most `max` bytes before `deadline`, refusing a longer line as
/// soon as it passes `max` rather than after buffering it.
fn read_request(
    reader: &mut BufReader<&UnixStream>,
    max: usize,
    deadline: Instant,
) -> Result<Option<Vec<u8>>, LineError> {
    let mut line = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(LineError::Idle);
        }
        reader
            .get_ref()
            .set_read_timeout(Some(left))
            .map_err(LineError::Io)?;
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A read timeout shows as `WouldBlock` (or `TimedOut`).
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(LineError::Idle);
            }
            Err(e) => return Err(LineError::Io(e)),
        };
        if buf.is_empty() {
            // A last line without a newline still counts, as with `read_line`.
            return Ok((!line.is_empty()).then_some(line));
        }
        let (take, complete) = match buf.iter().position(|&b| b == b'\n') {
            Some(end) => (end, true),
            None => (buf.len(), false),
        };
        if line.len() + take > max {
            // Enough of the start for the caller to tell what was asked.
            line.extend_from_slice(&buf[..take.min(64)]);
            return Err(LineError::TooLong(line));
        }
        line.extend_from_slice(&buf[..take]);
        reader.consume(take + usize::from(complete));
        if complete {
            return Ok(Some(line));
        }
    }
}

/// Reads and drops the rest of a refused line (until its newline, a
/// hang-up, an error or `deadline`), so that closing the connection does
/// not cut the client off before it has read our answer.
fn discard_line(reader: &mut BufReader<&UnixStream>, deadline: Instant) {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || reader.get_ref().set_read_timeout(Some(left)).is_err() {
            return;
        }
        let (used, done) = match reader.fill_buf() {
            Ok([]) => return,
            Ok(buf) => match buf.iter().position(|&b| b == b'\n') {
                Some(end) => (end + 1, true),
                None => (buf.len(), false),
            },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        reader.consume(used);
        if done {
            return;
        }
    }
}

fn serve(stream: &UnixStream, shared: &Shared) -> io::Result<()> {
    let idle = shared.config.idle_timeout;
    let deadline = Instant::now() + idle;
    // An answer the client leaves unread this long is abandoned.
    stream.set_write_timeout(Some(idle))?;
    let mut reader = BufReader::new(stream);
    let line = match read_request(&mut reader, MAX_REQUEST_LINE, deadline) {
        Ok(Some(line)) => line,
        Ok(None) => return Ok(()),
        Err(LineError::TooLong(start)) => {
            let error = if start.starts_with(b"send ") {
                DaemonError::MessageTooLong(MAX_TEXT)
            } else {
                DaemonError::LineTooLong(MAX_REQUEST_LINE)
            };
            writeln!(&*stream, "err {error}")?;
            discard_line(&mut reader, deadline);
            return Ok(());
        }
        Err(LineError::Idle) => {
            return writeln!(&*stream, "err {}", DaemonError::Idle(idle));
        }
        Err(LineError::Io(error)) => return Err(error),
    };
    let Ok(line) = String::from_utf8(line) else {
        return writeln!(&*stream, "err {}", DaemonError::RequestNotText);
    };
    let mut out = io::BufWriter::new(stream);
    let request = match Request::parse(line.trim_end()) {
        Ok(request) => request,
        Err(error) => return writeln!(out, "err {error}").and(out.flush()),
    };
    // `listen` keeps the connection: it is served here, not by `answer`.
    let listening = match request {
        Request::Listen(format) => Some((format, None)),
        Request::ListenSince(format, since) => Some((format, Some(since))),
        _ => None,
    };
    if let Some((format, since)) = listening {
        return match listen(stream, format, since, shared, &mut out) {
            Ok(()) => Ok(()),
            Err(ListenEnd::Refused(error)) => writeln!(out, "err {error}").and(out.flush()),
            Err(ListenEnd::Io(error)) => Err(error),
        };
    }
    match answer(request, shared, &mut out) {
        Ok(Some(value)) => writeln!(out, "ok {value}")?,
        Ok(None) => {}
        Err(error) => writeln!(out, "err {error}")?,
    }
    out.flush()
}

/// How a `listen` subscription ended early.
enum ListenEnd {
    /// The daemon could not subscribe (it is stopping).
    Refused(DaemonError),
    /// The client hung up or stopped reading.
    Io(io::Error),
}

/// Streams events until the client hangs up (a write fails, or a quiet
/// check finds the connection closed) or the daemon stops.
fn listen(
    stream: &UnixStream,
    format: ListenFormat,
    since: Option<u64>,
    shared: &Shared,
    out: &mut impl Write,
) -> Result<(), ListenEnd> {
    let (tx, rx) = std::sync::mpsc::channel();
    // "ok" only once the subscription is in place, so a client that acts
    // after reading it sees the events of what it does.
    super::subscribe(&shared.commands, Sink::Updates(tx), since, None)
        .map_err(ListenEnd::Refused)?;
    writeln!(out, "ok").map_err(ListenEnd::Io)?;
    out.flush().map_err(ListenEnd::Io)?;
    let check = shared.config.idle_timeout.min(HANGUP_CHECK);
    loop {
        let event = match rx.recv_timeout(check) {
            Ok(Update::Event(event)) => event,
            Ok(Update::CaughtUp { cursor }) => {
                // The replay is over; live events follow.
                if format == ListenFormat::Json {
                    writeln!(out, r#"{{"event":"caught_up","cursor":{cursor}}}"#)
                } else {
                    writeln!(out, "(caught up at cursor {cursor}; live from here)")
                }
                .and_then(|()| out.flush())
                .map_err(ListenEnd::Io)?;
                continue;
            }
            Ok(Update::Reply(..)) => continue,
            Err(RecvTimeoutError::Timeout) => {
                if hung_up(stream) {
                    return Ok(());
                }
                continue;
            }
            // The daemon stopped.
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        if format == ListenFormat::Json {
            writeln!(out, "{}", event.to_json()).map_err(ListenEnd::Io)?;
        } else if format == ListenFormat::TextWithMuted
            || !matches!(event, super::Event::MessageReceived { muted: true, .. })
        {
            writeln!(out, "{event}").map_err(ListenEnd::Io)?;
        }
        out.flush().map_err(ListenEnd::Io)?;
    }
}

/// Whether a `listen` client has closed its end. It sends nothing after
/// its request, so a read that finds end-of-file (or an error) means it is
/// gone; anything it does send is dropped.
fn hung_up(stream: &UnixStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut scratch = [0u8; 256];
    let gone = match (&*stream).read(&mut scratch) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        ),
    };
    // Event writes block again (bounded by the write timeout).
    gone || stream.set_nonblocking(false).is_err()
}

/// Turns what the user typed into an id of `kind`: names and prefixes are
/// matched here, at the edge; the daemon's requests carry ids.
fn resolve(
    commands: &CommandSender<Command>,
    text: &str,
    kind: ResolveKind,
) -> Result<Target, DaemonError> {
    match ask(
        commands,
        Ask::Resolve {
            text: text.to_owned(),
            kind,
        },
    )? {
        Reply::Target(target) => Ok(target),
        _ => Err(DaemonError::BadReply),
    }
}

fn resolve_peer(commands: &CommandSender<Command>, text: &str) -> Result<PeerId, DaemonError> {
    match resolve(commands, text, ResolveKind::Peer)? {
        Target::Peer(peer) => Ok(peer),
        Target::Room(_) => Err(DaemonError::UnknownPeer(text.to_owned())),
    }
}

fn resolve_room(
    commands: &CommandSender<Command>,
    text: &str,
    kind: ResolveKind,
) -> Result<RoomId, DaemonError> {
    match resolve(commands, text, kind)? {
        Target::Room(room) => Ok(room),
        Target::Peer(_) => Err(DaemonError::UnknownRoom(text.to_owned())),
    }
}

/// One JSON document on one data line.
fn json_line(out: &mut impl Write, value: &serde_json::Value) -> Result<(), DaemonError> {
    writeln!(out, "{value}").map_err(|e| DaemonError::ControlSocket(PathBuf::from(SOCKET_FILE), e))
}

/// Handles one request (any but `listen`); `Ok(None)` means the answer
/// was written already.
fn answer(
    parsed: Request,
    shared: &Shared,
    out: &mut impl Write,
) -> Result<Option<String>, DaemonError> {
    let (commands, stop) = (&shared.commands, &shared.stop);
    let io = |e: io::Error| DaemonError::ControlSocket(PathBuf::from(SOCKET_FILE), e);
    let done = |reply: Reply| match reply {
        Reply::Done => Ok(Some(String::new())),
        Reply::Peer(peer) => Ok(Some(peer.to_hex())),
        Reply::Room(room) => Ok(Some(PeerId(room.0).to_hex())),
        Reply::Sent(id) => Ok(Some(id.to_hex())),
        Reply::Unread(unread) => Ok(Some(unread.to_string())),
        _ => Err(DaemonError::BadReply),
    };
    let peers = || match ask(commands, Ask::Peers)? {
        Reply::Peers(peers) => Ok(peers),
        _ => Err(DaemonError::BadReply),
    };
    let rooms = || match ask(commands, Ask::Rooms)? {
        Reply::Rooms(rooms) => Ok(rooms),
        _ => Err(DaemonError::BadReply),
    };
    let blocked = || match ask(commands, Ask::Blocked)? {
        Reply::Blocked(blocked) => Ok(blocked),
        _ => Err(DaemonError::BadReply),
    };
    let discovery = || match ask(commands, Ask::Discovery)? {
        Reply::Discovery(report) => Ok(report),
        _ => Err(DaemonError::BadReply),
    };
    match parsed {
        Request::Send { to, text } => {
            let to = resolve(commands, &to, ResolveKind::Target)?;
            done(ask(commands, Ask::Send { to, text })?)
        }
        Request::Peers => {
            for peer in peers()? {
                writeln!(
                    out,
                    "{} {} {} {} {} {} {} {}",
                    peer.peer.to_hex(),
                    PeerId(peer.public.to_bytes()).to_hex(),
                    peer.addr.map_or_else(|| "-".to_owned(), |a| a.to_string()),
                    presence_word(peer.online, peer.watched),
                    peer.outbox,
                    mute_word(peer.muted),
                    match (peer.contact, peer.request) {
                        (true, true) => "request",
                        (true, false) => "contact",
                        (false, _) => "nearby",
                    },
                    peer.display_name,
                )
                .map_err(io)?;
            }
            Ok(Some(String::new()))
        }
        Request::Rooms => {
            for room in rooms()? {
                writeln!(
                    out,
                    "{} {} {} {} {} {} {} {} {}",
                    PeerId(room.id.0).to_hex(),
                    json::room_kind(&room),
                    room.epoch,
                    room.members.len(),
                    mute_word(room.muted),
                    room.admin.map_or("-".to_owned(), |a| a.to_hex()),
                    hex_encode(room.name.as_bytes()),
                    room.unread,
                    room.unread_muted,
                )
                .map_err(io)?;
            }
            Ok(Some(String::new()))
        }
        Request::Json(listing) => {
            let value = match listing {
                Listing::Peers => json::peers(&peers()?),
                Listing::Rooms => json::rooms(&rooms()?),
                Listing::Blocked => json::blocked(&blocked()?),
                Listing::Discovery => json::discovery(&*discovery()?),
                Listing::Status => json::status(&super::status(commands, &shared.net)?),
            };
            json_line(out, &value)?;
            Ok(Some(String::new()))
        }
        Request::History {
            room,
            before,
            limit,
            json: as_json,
        } => {
            let room = resolve(commands, &room, ResolveKind::Target)?;
            let room = match room {
                Target::Room(room) => room,
                // A peer's direct chat.
                Target::Peer(peer) => crate::proto::node::direct_room(shared.me, peer),
            };
            let Reply::History(page) = ask(
                commands,
                Ask::History {
                    room,
                    before,
                    limit,
                },
            )?
            else {
                return Err(DaemonError::BadReply);
            };
            if as_json {
                json_line(out, &json::history(&page))?;
            } else {
                for row in &page.rows {
                    writeln!(out, "{}", history_line(row)).map_err(io)?;
                }
            }
            Ok(Some(page.next.map_or_else(String::new, |n| n.to_string())))
        }
        Request::Read { room, up_to } => {
            let room = match resolve(commands, &room, ResolveKind::Target)? {
                Target::Room(room) => room,
                Target::Peer(peer) => crate::proto::node::direct_room(shared.me, peer),
            };
            done(ask(commands, Ask::MarkRead { room, up_to })?)
        }
        Request::Create { name, members } => {
            let members = members
                .iter()
                .map(|m| resolve_peer(commands, m))
                .collect::<Result<Vec<_>, _>>()?;
            done(ask(commands, Ask::CreateRoom { name, members })?)
        }
        Request::Invite { room, peer } => {
            let room = resolve_room(commands, &room, ResolveKind::Room)?;
            let peer = resolve_peer(commands, &peer)?;
            done(ask(commands, Ask::Invite { room, peer })?)
        }
        Request::Remove { room, peer } => {
            let room = resolve_room(commands, &room, ResolveKind::Room)?;
            let peer = resolve_peer(commands, &peer)?;
            done(ask(commands, Ask::RemoveMember { room, peer })?)
        }
        Request::Answer { room, accept } => {
            let room = resolve_room(commands, &room, ResolveKind::Invitation)?;
            done(ask(commands, Ask::AnswerInvite { room, accept })?)
        }
        Request::Leave { room } => {
            let room = resolve_room(commands, &room, ResolveKind::Room)?;
            done(ask(commands, Ask::Leave { room })?)
        }
        Request::Block { peer, blocked } => {
            let peer = resolve_peer(commands, &peer)?;
            done(ask(commands, Ask::Block { peer, blocked })?)
        }
        Request::Mute { target, mute } => {
            let target = resolve(commands, &target, ResolveKind::Target)?;
            done(ask(commands, Ask::Mute { target, mute })?)
        }
        Request::Status => {
            let status = super::status(commands, &shared.net)?;
            for (name, value) in status.counters() {
                writeln!(out, "{name} {value}").map_err(io)?;
            }
            Ok(Some(String::new()))
        }
        Request::Stop => {
            // Answer first: the process may exit as soon as the stop is
            // requested, and the client must not see a cut-off answer.
            writeln!(out, "ok").map_err(io)?;
            out.flush().map_err(io)?;
            stop.request_stop();
            Ok(None)
        }
        Request::Discovery => {
            for line in discovery()?.lines() {
                writeln!(out, "{line}").map_err(io)?;
            }
            Ok(Some(String::new()))
        }
        Request::Profile { name } => {
            request(commands, |reply| Command::SetProfile { name, reply })??;
            Ok(Some(String::new()))
        }
        Request::Search {
            text,
            room,
            before,
            limit,
        } => {
            let results = super::search_request(commands, text, room, before, limit)?;
            for found in results {
                writeln!(
                    out,
                    "{} {} {} {} {} {} {} {}",
                    PeerId(found.room.0).to_hex(),
                    found.id.to_hex(),
                    found.from.to_hex(),
                    found.timestamp,
                    super::search::cursor_text(&found.cursor()),
                    if found.ours { "ours" } else { "theirs" },
                    hex_encode(found.from_name.as_bytes()),
                    hex_encode(found.text.as_bytes()),
                )
                .map_err(io)?;
            }
            Ok(Some(String::new()))
        }
        Request::Accept { peer } => {
            let peer = resolve_peer(commands, &peer)?;
            done(ask(commands, Ask::Accept { peer })?)
        }
        Request::Blocked => {
            for peer in blocked()? {
                writeln!(out, "{}", peer.to_hex()).map_err(io)?;
            }
            Ok(Some(String::new()))
        }
        // `serve` handles a subscription itself; nothing reaches here.
        Request::Listen(_) | Request::ListenSince(..) => {
            Err(DaemonError::UnknownRequest("listen".to_owned()))
        }
    }
}

/// A history row as a `history` data line: `CURSOR MESSAGE_ID AUTHOR
/// TIME_MS ours|theirs DELIVERED/OF H(AUTHOR_NAME)|- H(TEXT)|-` (text `-`:
/// unreadable).
fn history_line(row: &super::HistoryRow) -> String {
    let (delivered, of) = row.delivered();
    format!(
        "{} {} {} {} {} {delivered}/{of} {} {}",
        row.cursor,
        row.id.to_hex(),
        row.author.to_hex(),
        row.millis(),
        if row.ours { "ours" } else { "theirs" },
        row.author_name
            .as_ref()
            .map_or_else(|| "-".to_owned(), |n| hex_encode(n.as_bytes())),
        row.text
            .as_ref()
            .map_or_else(|| "-".to_owned(), |t| hex_encode(t.as_bytes())),
    )
}

/// A listing `--json` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listing {
    Peers,
    Rooms,
    Status,
    Discovery,
    Blocked,
}

impl Listing {
    fn word(self) -> &'static str {
        match self {
            Listing::Peers => "peers",
            Listing::Rooms => "rooms",
            Listing::Status => "status",
            Listing::Discovery => "discovery",
            Listing::Blocked => "blocked",
        }
    }
}

/// One request line, parsed. Targets, names and text are the user's words
/// as typed (names are resolved by the daemon), already hex-decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Send {
        to: String,
        text: String,
    },
    Peers,
    Blocked,
    Accept {
        peer: String,
    },
    Rooms,
    Create {
        name: String,
        members: Vec<String>,
    },
    Invite {
        room: String,
        peer: String,
    },
    Remove {
        room: String,
        peer: String,
    },
    /// `join` (accept) or `decline` an invitation.
    Answer {
        room: String,
        accept: bool,
    },
    Leave {
        room: String,
    },
    /// `block` (blocked) or `unblock`.
    Block {
        peer: String,
        blocked: bool,
    },
    /// `mute` (`Some`) or `unmute` (`None`).
    Mute {
        target: String,
        mute: Option<Mute>,
    },
    Status,
    Listen(ListenFormat),
    /// `listen FORMAT since CURSOR`: replay what was stored after `CURSOR`,
    /// then go live.
    ListenSince(ListenFormat, u64),
    Stop,
    Discovery,
    /// Sets our display name.
    Profile {
        name: String,
    },
    /// Searches message text.
    Search {
        text: String,
        room: Option<String>,
        before: Option<crate::store::Position>,
        limit: usize,
    },
    /// `json LISTING`: one JSON document as the only data line.
    Json(Listing),
    /// `history H(ROOM) LIMIT BEFORE|- json|text`: data lines (see
    /// `history_line`) or one JSON document; `ok NEXT` (the `before` of
    /// the next page, empty at the start of the room).
    History {
        room: String,
        before: Option<u64>,
        limit: usize,
        json: bool,
    },
    /// `read H(ROOM) UP_TO|-`: `ok UNREAD`.
    Read {
        room: String,
        up_to: Option<u64>,
    },
}

impl Request {
    /// Parses an untrusted request line (newline excluded). Never panics;
    /// the error is the sentence the client is sent.
    pub fn parse(line: &str) -> Result<Request, DaemonError> {
        let mut words = line.split(' ');
        let verb = words.next().unwrap_or_default();
        Ok(match verb {
            "send" => {
                let to = arg(&mut words, line)?;
                let text = message_arg(words.next().unwrap_or_default(), line)?;
                Request::Send { to, text }
            }
            "peers" => Request::Peers,
            "blocked" => Request::Blocked,
            "accept" => Request::Accept {
                peer: arg(&mut words, line)?,
            },
            "rooms" => Request::Rooms,
            "create" => Request::Create {
                name: arg(&mut words, line)?,
                members: words
                    .map(|w| decode_arg(w, line))
                    .collect::<Result<Vec<_>, _>>()?,
            },
            "invite" => Request::Invite {
                room: arg(&mut words, line)?,
                peer: arg(&mut words, line)?,
            },
            "remove" => Request::Remove {
                room: arg(&mut words, line)?,
                peer: arg(&mut words, line)?,
            },
            "join" | "decline" => Request::Answer {
                room: arg(&mut words, line)?,
                accept: verb == "join",
            },
            "leave" => Request::Leave {
                room: arg(&mut words, line)?,
            },
            "block" | "unblock" => Request::Block {
                peer: arg(&mut words, line)?,
                blocked: verb == "block",
            },
            "mute" => {
                let target = arg(&mut words, line)?;
                let mute = match words.next() {
                    Some("forever") => Mute::Indefinitely,
                    Some(until) => Mute::Until(
                        until
                            .parse()
                            .map_err(|_| DaemonError::UnknownRequest(brief(line)))?,
                    ),
                    None => return Err(DaemonError::UnknownRequest(brief(line))),
                };
                Request::Mute {
                    target,
                    mute: Some(mute),
                }
            }
            "unmute" => Request::Mute {
                target: arg(&mut words, line)?,
                mute: None,
            },
            "status" => Request::Status,
            "listen" => {
                let format = match words.next().unwrap_or("json") {
                    "json" => ListenFormat::Json,
                    "text" => ListenFormat::Text,
                    "all" => ListenFormat::TextWithMuted,
                    _ => return Err(DaemonError::UnknownRequest(brief(line))),
                };
                match (words.next(), words.next()) {
                    (None, _) => Request::Listen(format),
                    (Some("since"), Some(cursor)) => Request::ListenSince(
                        format,
                        cursor
                            .parse()
                            .map_err(|_| DaemonError::UnknownRequest(brief(line)))?,
                    ),
                    _ => return Err(DaemonError::UnknownRequest(brief(line))),
                }
            }
            "json" => Request::Json(match words.next().unwrap_or_default() {
                "peers" => Listing::Peers,
                "rooms" => Listing::Rooms,
                "status" => Listing::Status,
                "discovery" => Listing::Discovery,
                "blocked" => Listing::Blocked,
                _ => return Err(DaemonError::UnknownRequest(brief(line))),
            }),
            "history" => {
                let bad = || DaemonError::UnknownRequest(brief(line));
                let room = arg(&mut words, line)?;
                let limit = words.next().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
                let before = optional_number(words.next(), line)?;
                let json = match words.next() {
                    Some("json") => true,
                    Some("text") => false,
                    _ => return Err(bad()),
                };
                Request::History {
                    room,
                    before,
                    limit,
                    json,
                }
            }
            "read" => Request::Read {
                room: arg(&mut words, line)?,
                up_to: optional_number(words.next(), line)?,
            },
            "stop" => Request::Stop,
            "discovery" => Request::Discovery,
            "profile" => Request::Profile {
                name: arg(&mut words, line)?,
            },
            "search" => {
                let bad = || DaemonError::UnknownRequest(brief(line));
                let text = arg(&mut words, line)?;
                let room = match words.next() {
                    Some("-") => None,
                    Some(room) => Some(decode_arg(room, line)?),
                    None => return Err(bad()),
                };
                let before = match words.next() {
                    Some("-") => None,
                    Some(cursor) => Some(super::search::parse_cursor(cursor).ok_or_else(bad)?),
                    None => return Err(bad()),
                };
                let limit = words.next().and_then(|l| l.parse().ok()).ok_or_else(bad)?;
                Request::Search {
                    text,
                    room,
                    before,
                    limit,
                }
            }
            other => return Err(DaemonError::UnknownRequest(brief(other))),
        })
    }

    /// The request line (newline excluded), as a client sends it.
    pub fn emit(&self) -> String {
        let hex = |text: &String| hex_encode(text.as_bytes());
        match self {
            Request::Send { to, text } => format!("send {} {}", hex(to), hex(text)),
            Request::Peers => "peers".to_owned(),
            Request::Blocked => "blocked".to_owned(),
            Request::Accept { peer } => format!("accept {}", hex(peer)),
            Request::Rooms => "rooms".to_owned(),
            Request::Create { name, members } => {
                let mut line = format!("create {}", hex(name));
                for member in members {
                    line.push(' ');
                    line.push_str(&hex(member));
                }
                line
            }
            Request::Invite { room, peer } => format!("invite {} {}", hex(room), hex(peer)),
            Request::Remove { room, peer } => format!("remove {} {}", hex(room), hex(peer)),
            Request::Answer { room, accept } => {
                let verb = if *accept { "join" } else { "decline" };
                format!("{verb} {}", hex(room))
            }
            Request::Leave { room } => format!("leave {}", hex(room)),
            Request::Block { peer, blocked } => {
                let verb = if *blocked { "block" } else { "unblock" };
                format!("{verb} {}", hex(peer))
            }
            Request::Mute { target, mute } => match mute {
                None => format!("unmute {}", hex(target)),
                Some(Mute::Indefinitely) => format!("mute {} forever", hex(target)),
                Some(Mute::Until(until)) => format!("mute {} {until}", hex(target)),
            },
            Request::Status => "status".to_owned(),
            Request::Listen(format) => format!(
                "listen {}",
                match format {
                    ListenFormat::Json => "json",
                    ListenFormat::Text => "text",
                    ListenFormat::TextWithMuted => "all",
                }
            ),
            Request::ListenSince(format, since) => {
                format!("{} since {since}", Request::Listen(*format).emit())
            }
            Request::Stop => "stop".to_owned(),
            Request::Discovery => "discovery".to_owned(),
            Request::Profile { name } => format!("profile {}", hex(name)),
            Request::Search {
                text,
                room,
                before,
                limit,
            } => format!(
                "search {} {} {} {limit}",
                hex(text),
                room.as_ref().map_or_else(|| "-".to_owned(), hex),
                before
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), super::search::cursor_text),
            ),
            Request::Json(listing) => format!("json {}", listing.word()),
            Request::History {
                room,
                before,
                limit,
                json,
            } => format!(
                "history {} {limit} {} {}",
                hex(room),
                before.map_or_else(|| "-".to_owned(), |b| b.to_string()),
                if *json { "json" } else { "text" }
            ),
            Request::Read { room, up_to } => format!(
                "read {} {}",
                hex(room),
                up_to.map_or_else(|| "-".to_owned(), |b| b.to_string())
            ),
        }
    }
}

/// A number, or `-` for none.
fn optional_number(word: Option<&str>, line: &str) -> Result<Option<u64>, DaemonError> {
    match word {
        Some("-") => Ok(None),
        Some(number) => number
            .parse()
            .map(Some)
            .map_err(|_| DaemonError::UnknownRequest(brief(line))),
        None => Err(DaemonError::UnknownRequest(brief(line))),
    }
}

/// The next hex-encoded UTF-8 argument of a request.
fn arg<'a>(words: &mut impl Iterator<Item = &'a str>, line: &str) -> Result<String, DaemonError> {
    decode_arg(words.next().unwrap_or_default(), line)
}

/// The text of a `send`: its length is checked before its encoding, so
/// a message too long is called that whatever it holds.
fn message_arg(word: &str, line: &str) -> Result<String, DaemonError> {
    if word.len() / 2 > MAX_TEXT {
        return Err(DaemonError::MessageTooLong(MAX_TEXT));
    }
    decode_arg(word, line)
}

fn decode_arg(word: &str, line: &str) -> Result<String, DaemonError> {
    let bytes = hex_decode(word)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| DaemonError::UnknownRequest(brief(line)))?;
    String::from_utf8(bytes).map_err(|_| DaemonError::NotText)
}

/// The start of a request, short enough to quote back in an error.
fn brief(line: &str) -> String {
    const MAX: usize = 80;
    match line.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line.to_owned(),
    }
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
        if let Err(error) = writeln!(self.reader.get_mut(), "{line}") {
            // The daemon may have refused before reading it all (too many
            // connections, a line too long) and closed: its reason is
            // worth more than the broken pipe.
            let mut answer = String::new();
            if self.reader.read_line(&mut answer).is_ok()
                && let Some(reason) = answer.trim_end().strip_prefix("err ")
            {
                return Err(ControlError::Refused(reason.to_owned()));
            }
            return Err(error.into());
        }
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
        let line = Request::Send {
            to: to.to_owned(),
            text: text.to_owned(),
        }
        .emit();
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
        each: impl FnMut(&str) -> io::Result<()>,
    ) -> Result<(), ControlError> {
        self.listen_since(format, None, each)
    }

    /// [`Client::listen`], first replaying every message stored after
    /// cursor `since` (then a `caught_up` line), with no gap or repeat.
    pub fn listen_since(
        self,
        format: ListenFormat,
        since: Option<u64>,
        mut each: impl FnMut(&str) -> io::Result<()>,
    ) -> Result<(), ControlError> {
        let mut reader = self.reader;
        let request = match since {
            Some(since) => Request::ListenSince(format, since),
            None => Request::Listen(format),
        };
        // A daemon that refused at once (too many connections) may have
        // closed before the request is written: read its reason anyway.
        let written = writeln!(reader.get_mut(), "{}", request.emit());
        let mut first = String::new();
        reader.read_line(&mut first)?;
        written?;
        let first = first.trim_end();
        if first != "ok" {
            let reason = first.strip_prefix("err ").unwrap_or(first);
            return Err(ControlError::Refused(reason.to_owned()));
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

    #[test]
    fn requests_round_trip_and_bad_lines_are_refused() {
        let word = |w: &str| w.to_owned();
        for request in [
            Request::Send {
                to: word("bob"),
                text: word("hi there\nsecond line"),
            },
            Request::Peers,
            Request::Blocked,
            Request::Accept { peer: word("ab12") },
            Request::Rooms,
            Request::Create {
                name: word("kitchen"),
                members: vec![word("bob"), word("carol")],
            },
            Request::Create {
                name: word("alone"),
                members: vec![],
            },
            Request::Invite {
                room: word("kitchen"),
                peer: word("dave"),
            },
            Request::Remove {
                room: word("kitchen"),
                peer: word("dave"),
            },
            Request::Answer {
                room: word("kitchen"),
                accept: true,
            },
            Request::Answer {
                room: word("kitchen"),
                accept: false,
            },
            Request::Leave {
                room: word("kitchen"),
            },
            Request::Block {
                peer: word("eve"),
                blocked: true,
            },
            Request::Block {
                peer: word("eve"),
                blocked: false,
            },
            Request::Mute {
                target: word("kitchen"),
                mute: Some(Mute::Until(1_700_000_000_000)),
            },
            Request::Mute {
                target: word("kitchen"),
                mute: Some(Mute::Indefinitely),
            },
            Request::Mute {
                target: word("kitchen"),
                mute: None,
            },
            Request::Status,
            Request::Listen(ListenFormat::Json),
            Request::Listen(ListenFormat::Text),
            Request::Listen(ListenFormat::TextWithMuted),
            Request::Stop,
            Request::Discovery,
            Request::Profile {
                name: word("Sam the man"),
            },
            Request::Search {
                text: word("dinner at"),
                room: None,
                before: None,
                limit: 50,
            },
            Request::Search {
                text: word("dinner"),
                room: Some(word("kitchen")),
                before: Some(crate::store::Position {
                    timestamp: 17,
                    id: crate::proto::ids::MessageId([3; 32]),
                }),
                limit: 1,
            },
            Request::ListenSince(ListenFormat::Json, 42),
            Request::Json(Listing::Peers),
            Request::Json(Listing::Rooms),
            Request::Json(Listing::Status),
            Request::Json(Listing::Discovery),
            Request::Json(Listing::Blocked),
            Request::History {
                room: word("kitchen"),
                before: None,
                limit: 50,
                json: true,
            },
            Request::History {
                room: word("kitchen"),
                before: Some(7),
                limit: 1,
                json: false,
            },
            Request::Read {
                room: word("kitchen"),
                up_to: None,
            },
            Request::Read {
                room: word("kitchen"),
                up_to: Some(9),
            },
        ] {
            assert_eq!(Request::parse(&request.emit()).ok(), Some(request));
        }
        assert_eq!(
            Request::parse("listen").ok(),
            Some(Request::Listen(ListenFormat::Json))
        );
        for bad in [
            "",
            "frobnicate",
            "send",
            "send 626f62",
            "send zz 6869",
            "send 626f62 ff",
            "listen xml",
            "mute 6b",
            "mute 6b soon",
            "create 6b  6c",
            "search 6b",
            "search 6b - - many",
            "search 6b - 12.zz 5",
            "é",
            "listen json since",
            "listen json since x",
            "listen json until 3",
            "json frobs",
            "history 6b",
            "history 6b 50 - xml",
            "history 6b x - json",
            "read 6b",
            "read 6b -3",
        ] {
            assert!(Request::parse(bad).is_err(), "{bad:?} parsed");
        }
        let long = format!("send 626f62 {}", "61".repeat(MAX_TEXT + 1));
        assert!(matches!(
            Request::parse(&long),
            Err(DaemonError::MessageTooLong(_))
        ));
    }
}
