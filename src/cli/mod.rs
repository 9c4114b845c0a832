//! The command line: what each `kith` subcommand does. Library errors
//! become `anyhow` errors here, each one readable sentence for the user.

/// `println!` that returns an error instead of panicking when stdout
/// cannot be written: [`StdoutClosed`] when its reader went away.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::output::print_line(format_args!($($arg)*))
    };
}

mod account;
mod app;
mod args;
mod client;
mod files;
mod output;
mod serve;

use std::path::PathBuf;

use anyhow::Result;
use kith::account::{Account, default_data_dir};

use self::app::run_app;
pub(crate) use self::args::Cli;
use self::args::{AppArgs, Command};
use self::client::{
    call, call_and_say, listen, mute, print_history, print_json, print_lines, print_rooms,
    print_search, read, room, send,
};
pub(crate) use self::output::{StdoutClosed, install_logger};
use self::serve::{run_daemon, run_registry};

/// Where the account is and how to unlock it: the global options.
pub(super) struct AccountDir {
    data: PathBuf,
    passphrase_file: Option<PathBuf>,
}

impl AccountDir {
    /// The passphrase from `--passphrase-file` or `KITH_PASSPHRASE`.
    fn passphrase(&self) -> Result<String> {
        account::passphrase(&self.passphrase_file)
    }

    /// The passphrase if one was given at all (the app asks otherwise).
    fn given_passphrase(&self) -> Result<Option<String>> {
        (self.passphrase_file.is_some() || std::env::var_os("KITH_PASSPHRASE").is_some())
            .then(|| self.passphrase())
            .transpose()
    }

    /// Opens and unlocks the account (no daemon may have it open).
    fn open(&self) -> Result<Account> {
        Ok(Account::open(&self.data, &self.passphrase()?)?)
    }
}

/// Runs one subcommand: each is a function of its own.
pub(crate) fn run(cli: Cli) -> Result<()> {
    let dir = AccountDir {
        data: cli.data.clone().unwrap_or_else(default_data_dir),
        passphrase_file: cli.passphrase_file,
    };
    let data = dir.data.as_path();
    match cli.command.unwrap_or(Command::App(AppArgs::default())) {
        Command::Registry(args) => run_registry(args, cli.data),
        Command::App(args) => run_app(dir.data.clone(), args, dir.given_passphrase()?),
        Command::Init { name } => account::init(&dir, name),
        Command::Profile { name } => account::profile(&dir, &name),
        Command::Id { json } => account::id(&dir, json),
        Command::Verify { public_key } => account::verify(&dir, &public_key),
        Command::Daemon(args) => run_daemon(data, &dir.passphrase()?, args),
        Command::Discovery { json: true } => print_json(data, "discovery"),
        Command::Discovery { json: false } => print_lines(data, "discovery", None),
        Command::Blocked { json: true } => print_json(data, "blocked"),
        Command::Blocked { json: false } => print_lines(data, "blocked", Some("PEER")),
        Command::Accept { peer } => call_and_say(data, "accept", &peer, "accepted"),
        Command::Decline { peer } => call_and_say(data, "block", &peer, "declined and blocked"),
        Command::Send { to, text } => send(data, &to, &text),
        Command::Share { to, path, caption } => files::share(data, &to, &path, caption),
        Command::Files { room } => files::list(data, &room),
        Command::Fetch { file, to, no_wait } => files::fetch(data, &file, &to, !no_wait),
        Command::Peers { json: true } => print_json(data, "peers"),
        Command::Peers { json: false } => print_lines(
            data,
            "peers",
            Some("PEER PUBLIC_KEY ADDRESS STATE OUTBOX MUTED RELATION NAME"),
        ),
        Command::Rooms { json: true } => print_json(data, "rooms"),
        Command::Rooms { json: false } => print_rooms(data),
        Command::History {
            room,
            limit,
            before,
            json,
        } => print_history(data, &room, limit, before, json),
        Command::Read { room, up_to } => read(data, room, up_to),
        Command::Room(command) => room(data, &command),
        Command::Block { peer } => call_and_say(data, "block", &peer, "blocked"),
        Command::Unblock { peer } => call_and_say(data, "unblock", &peer, "unblocked"),
        Command::Mute { target, duration } => mute(data, &target, &duration),
        Command::Unmute { target } => call(data, "unmute", &[&target]),
        Command::Status { json: true } => print_json(data, "status"),
        Command::Status { json: false } => print_lines(data, "status", Some("COUNTER VALUE")),
        Command::Search {
            text,
            room,
            before,
            limit,
            json,
        } => print_search(data, text, room, before, limit, json),
        Command::Stop => call(data, "stop", &[]),
        Command::Listen { json, all, since } => listen(data, json, all, since),
    }
}
