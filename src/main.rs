//! The `kith` binary: the desktop app by default, or a headless command.
//!
//! The binary (this file and its `cli` module) is the only place that uses
//! `anyhow`: library errors become one readable sentence on stderr and a
//! non-zero exit.

mod cli;

use clap::Parser;

use crate::cli::{Cli, StdoutClosed};

fn main() {
    cli::install_logger();
    if let Err(error) = cli::run(Cli::parse()) {
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
