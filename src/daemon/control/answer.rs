//! Answers one parsed request (any but `listen`): resolves what the user
//! typed into ids, asks the daemon, and writes the data lines. [`answer`]
//! is one `match` that hands each request to a method of [`Answerer`].

use std::io::{self, Write};
use std::path::PathBuf;

use super::{Listing, Request, SOCKET_FILE, Shared, hex_encode};
use crate::daemon::address_book::presence_word;
use crate::daemon::api::{Reply, Request as Ask, ResolveKind, Target};
use crate::daemon::driver::Command;
use crate::daemon::{
    DaemonError, DiscoveryReport, FileRef, HistoryRow, PeerInfo, RoomSummary, ask, json, request,
};
use crate::proto::ids::{PeerId, RoomId};
use crate::store::{Mute, Position};

/// How a request ends: `Some(VALUE)` for a final `ok VALUE` (empty for a
/// bare `ok`), `None` when the final line was written already.
type Outcome = Result<Option<String>, DaemonError>;

/// A final `ok` with no value, after the data lines.
fn ok() -> Outcome {
    Ok(Some(String::new()))
}

/// Handles one request (any but `listen`); `Ok(None)` means the answer
/// was written already.
pub(super) fn answer(parsed: Request, shared: &Shared, out: &mut impl Write) -> Outcome {
    let mut answerer = Answerer { shared, out };
    match parsed {
        Request::Send { to, text } => answerer.send(&to, text),
        Request::Share { to, path, caption } => answerer.share(&to, path, caption),
        Request::Fetch { file, to_dir } => answerer.fetch(&file, to_dir),
        Request::Files { room } => answerer.files(&room),
        Request::File { file } => answerer.file(&file),
        Request::Peers => answerer.peers(),
        Request::Rooms => answerer.rooms(),
        Request::Blocked => answerer.blocked(),
        Request::Json(listing) => answerer.json(listing),
        Request::History {
            room,
            before,
            limit,
            json,
        } => answerer.history(&room, before, limit, json),
        Request::Read { room, up_to } => answerer.read(&room, up_to),
        Request::Create { name, members } => answerer.create(name, &members),
        Request::Invite { room, peer } => {
            let (room, peer) = answerer.room_and_peer(&room, &peer)?;
            answerer.done(Ask::Invite { room, peer })
        }
        Request::Remove { room, peer } => {
            let (room, peer) = answerer.room_and_peer(&room, &peer)?;
            answerer.done(Ask::RemoveMember { room, peer })
        }
        Request::Answer { room, accept } => {
            let room = answerer.room(&room, ResolveKind::Invitation)?;
            answerer.done(Ask::AnswerInvite { room, accept })
        }
        Request::Leave { room } => {
            let room = answerer.room(&room, ResolveKind::Room)?;
            answerer.done(Ask::Leave { room })
        }
        Request::Block { peer, blocked } => {
            let peer = answerer.peer(&peer)?;
            answerer.done(Ask::Block { peer, blocked })
        }
        Request::Accept { peer } => {
            let peer = answerer.peer(&peer)?;
            answerer.done(Ask::Accept { peer })
        }
        Request::Mute { target, mute } => {
            let target = answerer.resolve(&target, ResolveKind::Target)?;
            answerer.done(Ask::Mute { target, mute })
        }
        Request::Status => answerer.status(),
        Request::Stop => answerer.stop(),
        Request::Discovery => answerer.discovery(),
        Request::Profile { name } => answerer.profile(name),
        Request::Search {
            text,
            room,
            before,
            limit,
        } => answerer.search(text, room, before, limit),
        // `serve` handles a subscription itself; nothing reaches here.
        Request::Listen(_) | Request::ListenSince(..) => {
            Err(DaemonError::UnknownRequest("listen".to_owned()))
        }
    }
}

/// One request being answered: the daemon to ask and where the data lines
/// go.
struct Answerer<'a, W> {
    shared: &'a Shared,
    out: &'a mut W,
}

impl<W: Write> Answerer<'_, W> {
    fn ask(&self, request: Ask) -> Result<Reply, DaemonError> {
        ask(&self.shared.commands, request)
    }

    /// Asks for something whose reply is an id, a count or nothing, and
    /// makes that the final `ok` value.
    fn done(&self, request: Ask) -> Outcome {
        match self.ask(request)? {
            Reply::Done => ok(),
            Reply::Peer(peer) => Ok(Some(peer.to_hex())),
            Reply::Room(room) => Ok(Some(PeerId(room.0).to_hex())),
            Reply::Sent(id) => Ok(Some(id.to_hex())),
            Reply::Unread(unread) => Ok(Some(unread.to_string())),
            _ => Err(DaemonError::BadReply),
        }
    }

    /// Writes one data line.
    fn line(&mut self, line: impl std::fmt::Display) -> Result<(), DaemonError> {
        writeln!(self.out, "{line}").map_err(socket_error)
    }

    /// Turns what the user typed into an id of `kind`: names and prefixes
    /// are matched here, at the edge; the daemon's requests carry ids.
    fn resolve(&self, text: &str, kind: ResolveKind) -> Result<Target, DaemonError> {
        let text = text.to_owned();
        match self.ask(Ask::Resolve { text, kind })? {
            Reply::Target(target) => Ok(target),
            _ => Err(DaemonError::BadReply),
        }
    }

    fn peer(&self, text: &str) -> Result<PeerId, DaemonError> {
        match self.resolve(text, ResolveKind::Peer)? {
            Target::Peer(peer) => Ok(peer),
            Target::Room(_) => Err(DaemonError::UnknownPeer(text.to_owned())),
        }
    }

    fn room(&self, text: &str, kind: ResolveKind) -> Result<RoomId, DaemonError> {
        match self.resolve(text, kind)? {
            Target::Room(room) => Ok(room),
            Target::Peer(_) => Err(DaemonError::UnknownRoom(text.to_owned())),
        }
    }

    /// A room or a peer, as a room: a peer names our direct chat with it;
    /// so does the direct chat's own id (what `rooms` lists).
    fn chat(&self, text: &str) -> Result<RoomId, DaemonError> {
        match self.resolve(text, ResolveKind::Target) {
            Ok(Target::Room(room)) => Ok(room),
            Ok(Target::Peer(peer)) => Ok(crate::proto::node::direct_room(self.shared.me, peer)),
            Err(DaemonError::UnknownPeer(why)) => {
                let listed = PeerId::from_hex(text.trim())
                    .map(|id| RoomId(id.0))
                    .filter(|room| {
                        self.room_list()
                            .is_ok_and(|rooms| rooms.iter().any(|r| r.id == *room))
                    });
                listed.ok_or(DaemonError::UnknownPeer(why))
            }
            Err(error) => Err(error),
        }
    }

    fn room_and_peer(&self, room: &str, peer: &str) -> Result<(RoomId, PeerId), DaemonError> {
        Ok((self.room(room, ResolveKind::Room)?, self.peer(peer)?))
    }

    fn peer_list(&self) -> Result<Vec<PeerInfo>, DaemonError> {
        match self.ask(Ask::Peers)? {
            Reply::Peers(peers) => Ok(peers),
            _ => Err(DaemonError::BadReply),
        }
    }

    fn room_list(&self) -> Result<Vec<RoomSummary>, DaemonError> {
        match self.ask(Ask::Rooms)? {
            Reply::Rooms(rooms) => Ok(rooms),
            _ => Err(DaemonError::BadReply),
        }
    }

    fn blocked_list(&self) -> Result<Vec<PeerId>, DaemonError> {
        match self.ask(Ask::Blocked)? {
            Reply::Blocked(blocked) => Ok(blocked),
            _ => Err(DaemonError::BadReply),
        }
    }

    fn discovery_report(&self) -> Result<Box<DiscoveryReport>, DaemonError> {
        match self.ask(Ask::Discovery)? {
            Reply::Discovery(report) => Ok(report),
            _ => Err(DaemonError::BadReply),
        }
    }

    fn send(&self, to: &str, text: String) -> Outcome {
        let to = self.resolve(to, ResolveKind::Target)?;
        self.done(Ask::Send { to, text })
    }

    fn share(&self, to: &str, path: String, caption: Option<String>) -> Outcome {
        let to = self.resolve(to, ResolveKind::Target)?;
        // Relative to where the client runs is meaningless here: the CLI
        // sends an absolute path.
        let request = Ask::ShareFile {
            to,
            path: PathBuf::from(path),
            caption,
        };
        match crate::daemon::ask_within(
            &self.shared.commands,
            request,
            crate::daemon::SHARE_TIMEOUT,
        )? {
            Reply::Sent(id) => Ok(Some(id.to_hex())),
            _ => Err(DaemonError::BadReply),
        }
    }

    fn fetch(&self, file: &str, to_dir: String) -> Outcome {
        let file = FileRef::from_hex(file).ok_or(DaemonError::BadReply)?;
        self.done(Ask::FetchFile {
            file,
            to_dir: PathBuf::from(to_dir),
        })
    }

    fn files(&mut self, room: &str) -> Outcome {
        let room = self.chat(room)?;
        let Reply::Files(files) = self.ask(Ask::Files { room })? else {
            return Err(DaemonError::BadReply);
        };
        self.line(json::files(&files))?;
        ok()
    }

    fn file(&mut self, file: &str) -> Outcome {
        let file = FileRef::from_hex(file).ok_or(DaemonError::BadReply)?;
        let Reply::Files(files) = self.ask(Ask::File { file })? else {
            return Err(DaemonError::BadReply);
        };
        self.line(json::files(&files))?;
        ok()
    }

    fn peers(&mut self) -> Outcome {
        for peer in self.peer_list()? {
            self.line(peer_line(&peer))?;
        }
        ok()
    }

    fn rooms(&mut self) -> Outcome {
        for room in self.room_list()? {
            self.line(room_line(&room))?;
        }
        ok()
    }

    fn blocked(&mut self) -> Outcome {
        for peer in self.blocked_list()? {
            self.line(peer.to_hex())?;
        }
        ok()
    }

    /// `json LISTING`: one JSON document on one data line.
    fn json(&mut self, listing: Listing) -> Outcome {
        let value = match listing {
            Listing::Peers => json::peers(&self.peer_list()?),
            Listing::Rooms => json::rooms(&self.room_list()?),
            Listing::Blocked => json::blocked(&self.blocked_list()?),
            Listing::Discovery => json::discovery(&*self.discovery_report()?),
            Listing::Status => json::status(&crate::daemon::status(
                &self.shared.commands,
                &self.shared.net,
            )?),
        };
        self.line(value)?;
        ok()
    }

    fn history(&mut self, room: &str, before: Option<u64>, limit: usize, as_json: bool) -> Outcome {
        let room = self.chat(room)?;
        let Reply::History(page) = self.ask(Ask::History {
            room,
            before,
            limit,
        })?
        else {
            return Err(DaemonError::BadReply);
        };
        if as_json {
            self.line(json::history(&page))?;
        } else {
            for row in &page.rows {
                self.line(history_line(row))?;
            }
        }
        Ok(Some(page.next.map_or_else(String::new, |n| n.to_string())))
    }

    fn read(&self, room: &str, up_to: Option<u64>) -> Outcome {
        let room = self.chat(room)?;
        self.done(Ask::MarkRead { room, up_to })
    }

    fn create(&self, name: String, members: &[String]) -> Outcome {
        let members = members
            .iter()
            .map(|m| self.peer(m))
            .collect::<Result<Vec<_>, _>>()?;
        self.done(Ask::CreateRoom { name, members })
    }

    fn status(&mut self) -> Outcome {
        let status = crate::daemon::status(&self.shared.commands, &self.shared.net)?;
        for (name, value) in status.counters() {
            self.line(format_args!("{name} {value}"))?;
        }
        ok()
    }

    fn stop(&mut self) -> Outcome {
        // Answer first: the process may exit as soon as the stop is
        // requested, and the client must not see a cut-off answer.
        writeln!(self.out, "ok").map_err(socket_error)?;
        self.out.flush().map_err(socket_error)?;
        self.shared.stop.request_stop();
        Ok(None)
    }

    fn discovery(&mut self) -> Outcome {
        for line in self.discovery_report()?.lines() {
            self.line(line)?;
        }
        ok()
    }

    fn profile(&self, name: String) -> Outcome {
        request(&self.shared.commands, |reply| Command::SetProfile {
            name,
            reply,
        })??;
        ok()
    }

    fn search(
        &mut self,
        text: String,
        room: Option<String>,
        before: Option<Position>,
        limit: usize,
    ) -> Outcome {
        let results =
            crate::daemon::search_request(&self.shared.commands, text, room, before, limit)?;
        for found in results {
            self.line(format_args!(
                "{} {} {} {} {} {} {} {}",
                PeerId(found.room.0).to_hex(),
                found.id.to_hex(),
                found.from.to_hex(),
                found.timestamp,
                crate::daemon::search::cursor_text(&found.cursor()),
                if found.ours { "ours" } else { "theirs" },
                hex_encode(found.from_name.as_bytes()),
                hex_encode(file_text(found.file.as_ref(), &found.text).as_bytes()),
            ))?;
        }
        ok()
    }
}

/// A write to the client failed.
fn socket_error(error: io::Error) -> DaemonError {
    DaemonError::ControlSocket(PathBuf::from(SOCKET_FILE), error)
}

/// A `peers` data line (see the module docs of `control`).
fn peer_line(peer: &PeerInfo) -> String {
    format!(
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
}

/// A `rooms` data line (see the module docs of `control`).
fn room_line(room: &RoomSummary) -> String {
    format!(
        "{} {} {} {} {} {} {} {} {}",
        PeerId(room.id.0).to_hex(),
        json::room_kind(room),
        room.epoch,
        room.members.len(),
        mute_word(room.muted),
        room.admin.map_or("-".to_owned(), |a| a.to_hex()),
        hex_encode(room.name.as_bytes()),
        room.unread,
        room.unread_muted,
    )
}

/// A history row as a `history` data line: `CURSOR MESSAGE_ID AUTHOR
/// TIME_MS ours|theirs DELIVERED/OF H(AUTHOR_NAME)|- H(TEXT)|-` (text `-`:
/// unreadable).
fn history_line(row: &HistoryRow) -> String {
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
            .map(|text| file_text(row.file.as_ref(), text))
            .map_or_else(|| "-".to_owned(), |t| hex_encode(t.as_bytes())),
    )
}

/// A message's text as a `history` or `search` line carries it: a file
/// message reads as what it offers, then its caption.
fn file_text(file: Option<&crate::daemon::FileInfo>, text: &str) -> String {
    match file {
        Some(file) => format!(
            "[file {} ({} bytes) {}]{}{text}",
            file.name,
            file.size,
            file.hash.to_hex(),
            if text.is_empty() { "" } else { " " }
        ),
        None => text.to_owned(),
    }
}

/// `MUTE` of a listing: `-`, `forever`, or the end in Unix milliseconds.
fn mute_word(mute: Option<Mute>) -> String {
    match mute {
        None => "-".to_owned(),
        Some(Mute::Indefinitely) => "forever".to_owned(),
        Some(Mute::Until(until)) => until.to_string(),
    }
}
