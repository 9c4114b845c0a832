//! The socket side: the accept loop, one thread per client, reading a
//! bounded request line and serving `listen` subscriptions.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::thread::JoinHandle;
use std::time::Instant;

use super::answer::answer;
use super::{
    ControlConfig, HANGUP_CHECK, ListenFormat, MAX_REQUEST_LINE, Request, Shared, socket_path,
};
use crate::daemon::api::Update;
use crate::daemon::driver::{Command, Sink};
use crate::daemon::{DaemonError, StopRequester};
use crate::net::{CommandSender, NetStats};
use crate::proto::ids::PeerId;
use crate::proto::node::MAX_TEXT;

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
    crate::daemon::subscribe(&shared.commands, Sink::Updates(tx), since, None)
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
            || !matches!(
                event,
                crate::daemon::Event::MessageReceived { muted: true, .. }
            )
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
