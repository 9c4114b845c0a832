//! The client side, as the CLI uses it: one connection, one request.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::{ListenFormat, Request, hex_encode, socket_path};

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
