//! Where the CLI writes: log records on stderr, lines on stdout that end
//! quietly when the reader goes away.

use std::io::Write;

use anyhow::Result;

/// Prints the library's log records on standard error, one line each, as
/// `kith daemon: …` for the daemon's records and `kith: …` for the rest.
///
/// Only kith's own records: dependencies (mdns-sd) log at length about
/// packets a user has no use for. Warnings and errors show by default;
/// `KITH_LOG` (`off`, `error`, `warn`, `info`, `debug`, `trace`) changes that.
struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

pub(crate) fn install_logger() {
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
pub(crate) struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

pub(super) fn print_line(line: std::fmt::Arguments<'_>) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").map_err(stdout_error)
}

pub(super) fn stdout_error(error: std::io::Error) -> anyhow::Error {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        anyhow::Error::new(error).context("cannot write to standard output")
    }
}
