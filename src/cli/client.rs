//! Subcommands that ask a running daemon through its control socket and
//! print its answer for people (or as JSON).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kith::daemon::control::{Client, ListenFormat, Request, hex_decode, hex_encode};

use super::StdoutClosed;
use super::args::RoomCommand;

/// Sends request `verb` with `args`; prints nothing.
pub(super) fn call(data_dir: &Path, verb: &str, args: &[&str]) -> Result<()> {
    Client::connect(data_dir)?.call(verb, args)?;
    Ok(())
}

/// Sends request `verb` about `peer`; prints `{said} PEER_ID`.
pub(super) fn call_and_say(data_dir: &Path, verb: &str, peer: &str, said: &str) -> Result<()> {
    let (_, id) = Client::connect(data_dir)?.call(verb, &[peer])?;
    outln!("{said} {id}")
}

/// `kith send`: prints the message id.
pub(super) fn send(data_dir: &Path, to: &str, text: &str) -> Result<()> {
    let id = Client::connect(data_dir)?.send(to, text)?;
    outln!("{id}")
}

/// `kith read`: prints how many messages are left unread.
pub(super) fn read(data_dir: &Path, room: String, up_to: Option<u64>) -> Result<()> {
    let line = Request::Read { room, up_to }.emit();
    let (_, unread) = Client::connect(data_dir)?.request(&line)?;
    outln!("{unread} unread")
}

/// `kith room ...`: prints the new room's id after `create`.
pub(super) fn room(data_dir: &Path, command: &RoomCommand) -> Result<()> {
    let client = Client::connect(data_dir)?;
    let (_, value) = match command {
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

/// `kith mute`: for `duration` from now (see [`parse_duration`]).
pub(super) fn mute(data_dir: &Path, target: &str, duration: &str) -> Result<()> {
    let until = match parse_duration(duration)? {
        None => "forever".to_owned(),
        Some(duration) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the system clock is before 1970")?;
            (now + duration).as_millis().to_string()
        }
    };
    let line = format!("mute {} {until}", hex_encode(target.as_bytes()));
    Client::connect(data_dir)?.request(&line)?;
    Ok(())
}

/// `kith listen`: prints events until the daemon stops or stdout closes.
pub(super) fn listen(data_dir: &Path, json: bool, all: bool, since: Option<u64>) -> Result<()> {
    let format = match (json, all) {
        (true, _) => ListenFormat::Json,
        (false, true) => ListenFormat::TextWithMuted,
        (false, false) => ListenFormat::Text,
    };
    let mut stdout = std::io::stdout().lock();
    // The client reports the closure's error as its own; this tells a
    // closed stdout apart from a lost daemon.
    let mut stdout_closed = false;
    let listened = Client::connect(data_dir)?.listen_since(format, since, |line| {
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

/// `15m`, `1h`, `8h`, `1w`, any number with s/m/h/d/w, or `forever`
/// (`None`).
fn parse_duration(text: &str) -> Result<Option<Duration>> {
    let text = text.trim();
    if text == "forever" {
        return Ok(None);
    }
    let bad = || anyhow::anyhow!("{text:?} is not a duration like 15m, 1h, 8h, 1w or forever");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    let total = number
        .checked_mul(seconds)
        .filter(|t| *t > 0)
        .ok_or_else(bad)?;
    Ok(Some(Duration::from_secs(total)))
}

/// `kith rooms`: one line per room, for people.
pub(super) fn print_rooms(data_dir: &Path) -> Result<()> {
    let (lines, _) = Client::connect(data_dir)?.request("rooms")?;
    outln!("ROOM  KIND  MEMBERS  EPOCH  UNREAD  NAME")?;
    for line in lines {
        let fields: Vec<&str> = line.split(' ').collect();
        let [
            id,
            kind,
            epoch,
            members,
            mute,
            _admin,
            name,
            unread,
            unread_muted,
        ] = fields[..]
        else {
            bail!("the daemon sent a room line this kith does not understand: {line}");
        };
        let name = hex_decode(name)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let mute = match mute {
            "-" => String::new(),
            "forever" => "  (muted)".to_owned(),
            _ => "  (muted for now)".to_owned(),
        };
        let unread = match (unread, unread_muted) {
            (total, "0") => total.to_owned(),
            (total, muted) => format!("{total} ({muted} muted)"),
        };
        outln!("{id}  {kind:6}  {members} members  epoch {epoch}  {unread} unread  {name}{mute}")?;
    }
    Ok(())
}

/// `kith search`: one line per message for people, or one JSON document.
pub(super) fn print_search(
    data_dir: &Path,
    text: String,
    room: Option<String>,
    before: Option<String>,
    limit: usize,
    json: bool,
) -> Result<()> {
    use kith::daemon::json_escape;
    if !(1..=kith::store::MAX_SEARCH_LIMIT).contains(&limit) {
        bail!("--limit must be 1 to {}", kith::store::MAX_SEARCH_LIMIT);
    }
    let before = before
        .map(|cursor| {
            kith::daemon::search::parse_cursor(&cursor)
                .with_context(|| format!("{cursor:?} is not a cursor printed by kith search"))
        })
        .transpose()?;
    let line = Request::Search {
        text,
        room,
        before,
        limit,
    }
    .emit();
    let (lines, _) = Client::connect(data_dir)?.request(&line)?;
    let text_of = |hex: &str| {
        hex_decode(hex)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let mut results = Vec::with_capacity(lines.len());
    let mut next = None;
    for line in &lines {
        let fields: Vec<&str> = line.split(' ').collect();
        let [room, id, from, timestamp, cursor, ours, from_name, body] = fields[..] else {
            bail!("the daemon sent a search line this kith does not understand: {line}");
        };
        next = Some(cursor.to_owned());
        let (from_name, body) = (text_of(from_name), text_of(body));
        if json {
            results.push(format!(
                r#"{{"room":"{room}","id":"{id}","from":"{from}","from_name":"{}","timestamp":{timestamp},"time_ms":{},"cursor":"{cursor}","ours":{},"text":"{}"}}"#,
                json_escape(&from_name),
                timestamp.parse().map_or(0, kith::proto::hlc::millis),
                ours == "ours",
                json_escape(&body)
            ));
        } else {
            results.push(format!(
                "{}  {from_name}: {}",
                &room[..8.min(room.len())],
                body.replace('\n', " ⏎ ")
            ));
        }
    }
    // Only a full page may have more after it.
    let next = next.filter(|_| lines.len() == limit);
    if json {
        let next = next.map_or_else(|| "null".to_owned(), |c| format!("\"{c}\""));
        outln!(r#"{{"results":[{}],"next":{next}}}"#, results.join(","))?;
    } else {
        outln!("ROOM      FROM: TEXT (newest first)")?;
        for result in results {
            outln!("{result}")?;
        }
        if let Some(cursor) = next {
            outln!("more: kith search … --before {cursor}")?;
        }
    }
    Ok(())
}

/// Prints a listing's data lines under `header` (a row naming the columns).
pub(super) fn print_lines(data_dir: &Path, request: &str, header: Option<&str>) -> Result<()> {
    let (lines, _) = Client::connect(data_dir)?.request(request)?;
    if let Some(header) = header {
        outln!("{header}")?;
    }
    for line in lines {
        outln!("{line}")?;
    }
    Ok(())
}

/// Prints the one JSON document a `json LISTING` request answers with.
pub(super) fn print_json(data_dir: &Path, listing: &str) -> Result<()> {
    let (lines, _) = Client::connect(data_dir)?.request(&format!("json {listing}"))?;
    for line in lines {
        outln!("{line}")?;
    }
    Ok(())
}

/// `kith history`: a page of a room's messages, newest first.
pub(super) fn print_history(
    data_dir: &Path,
    room: &str,
    limit: usize,
    before: Option<u64>,
    json: bool,
) -> Result<()> {
    let line = Request::History {
        room: room.to_owned(),
        before,
        limit,
        json,
    }
    .emit();
    let (lines, next) = Client::connect(data_dir)?.request(&line)?;
    if json {
        for line in lines {
            outln!("{line}")?;
        }
        return Ok(());
    }
    let text = |word: &str| match word {
        "-" => None,
        hex => hex_decode(hex).map(|b| String::from_utf8_lossy(&b).into_owned()),
    };
    outln!("CURSOR  TIME  AUTHOR  DELIVERED  TEXT")?;
    for line in lines {
        let fields: Vec<&str> = line.split(' ').collect();
        let [cursor, _id, author, millis, ours, delivered, name, body] = fields[..] else {
            bail!("the daemon sent a history line this kith does not understand: {line}");
        };
        let who = match (ours, text(name)) {
            ("ours", _) => "you".to_owned(),
            (_, Some(name)) => name,
            (_, None) => author.chars().take(8).collect(),
        };
        let delivered = if ours == "ours" { delivered } else { "-" };
        let body = text(body).unwrap_or_else(|| "(unreadable)".to_owned());
        let time = millis
            .parse()
            .map_or_else(|_| millis.to_owned(), local_time);
        outln!("{cursor}  {time}  {who}  {delivered}  {body}")?;
    }
    if !next.is_empty() {
        outln!("(older: kith history {room} --before {next})")?;
    }
    Ok(())
}

/// `millis` since the epoch as local `YYYY-MM-DD HH:MM:SS`, for people
/// (`--json` keeps the milliseconds).
fn local_time(millis: i64) -> String {
    let secs: libc::time_t = millis.div_euclid(1000);
    // SAFETY: `tm` is a plain C struct for which all zeroes is a valid
    // value; `localtime_r` only writes into it and reads `secs`.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return millis.to_string();
        }
        tm
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        i64::from(tm.tm_year) + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}
