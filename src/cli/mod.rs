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
mod output;
mod serve;

use std::io::Write;

use anyhow::{Context, Result};
use kith::account::{Account, default_data_dir};
use kith::daemon::control::{Client, ControlError, ListenFormat};
use kith::proto::crypto::{PublicIdentity, safety_number};
use kith::proto::ids::PeerId;
use kith::proto::profile::check_name;
use kith::store::KdfParams;

use self::account::{passphrase, print_identity, store_profile, warn_permissions};
use self::app::run_app;
pub(crate) use self::args::Cli;
use self::args::{AppArgs, Command, RoomCommand};
use self::client::{
    parse_duration, print_history, print_json, print_lines, print_rooms, print_search,
};
pub(crate) use self::output::{StdoutClosed, install_logger};
use self::serve::{run_daemon, run_registry};

pub(crate) fn run(cli: Cli) -> Result<()> {
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
