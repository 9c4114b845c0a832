//! Answers one parsed request (any but `listen`): resolves what the user
//! typed into ids, asks the daemon, and writes the data lines.

use std::io::{self, Write};
use std::path::PathBuf;

use super::{Listing, Request, SOCKET_FILE, Shared, hex_encode};
use crate::daemon::address_book::presence_word;
use crate::daemon::api::{Reply, Request as Ask, ResolveKind, Target};
use crate::daemon::driver::Command;
use crate::daemon::{DaemonError, ask, json, request};
use crate::net::CommandSender;
use crate::proto::ids::{PeerId, RoomId};
use crate::store::Mute;

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
pub(super) fn answer(
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
                Listing::Status => json::status(&crate::daemon::status(commands, &shared.net)?),
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
            let status = crate::daemon::status(commands, &shared.net)?;
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
            let results = crate::daemon::search_request(commands, text, room, before, limit)?;
            for found in results {
                writeln!(
                    out,
                    "{} {} {} {} {} {} {} {}",
                    PeerId(found.room.0).to_hex(),
                    found.id.to_hex(),
                    found.from.to_hex(),
                    found.timestamp,
                    crate::daemon::search::cursor_text(&found.cursor()),
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
fn history_line(row: &crate::daemon::HistoryRow) -> String {
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

fn mute_word(mute: Option<Mute>) -> String {
    match mute {
        None => "-".to_owned(),
        Some(Mute::Indefinitely) => "forever".to_owned(),
        Some(Mute::Until(until)) => until.to_string(),
    }
}
