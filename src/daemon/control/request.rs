//! The request line: parsing an untrusted line into a [`Request`] and
//! emitting the line a client sends, with user text hex-encoded.

use crate::daemon::DaemonError;
use crate::proto::node::MAX_TEXT;
use crate::store::Mute;

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
    /// `share H(TARGET) H(PATH) H(CAPTION)|-`: `ok MESSAGE_ID`.
    Share {
        to: String,
        path: String,
        caption: Option<String>,
    },
    /// `fetch HEX H(DIR)`: starts fetching the file of that hash (or file
    /// message id) into directory `DIR`; `ok`.
    Fetch {
        file: String,
        to_dir: String,
    },
    /// `files H(ROOM)`: one JSON document (`{"files": [...]}`).
    Files {
        room: String,
    },
    /// `file HEX`: one JSON document (`{"files": [entry]}`).
    File {
        file: String,
    },
}

impl Request {
    /// Parses an untrusted request line (newline excluded). Never panics;
    /// the error is the sentence the client is sent.
    pub fn parse(line: &str) -> Result<Request, DaemonError> {
        let mut split = line.split(' ');
        let verb = split.next().unwrap_or_default();
        let mut words = Words { split, line };
        Ok(match verb {
            "send" => Request::Send {
                to: words.arg()?,
                text: message_arg(words.next().unwrap_or_default(), line)?,
            },
            "peers" => Request::Peers,
            "blocked" => Request::Blocked,
            "rooms" => Request::Rooms,
            "status" => Request::Status,
            "stop" => Request::Stop,
            "discovery" => Request::Discovery,
            "accept" => Request::Accept { peer: words.arg()? },
            "create" => Request::Create {
                name: words.arg()?,
                members: words.rest()?,
            },
            "invite" => Request::Invite {
                room: words.arg()?,
                peer: words.arg()?,
            },
            "remove" => Request::Remove {
                room: words.arg()?,
                peer: words.arg()?,
            },
            "join" | "decline" => Request::Answer {
                room: words.arg()?,
                accept: verb == "join",
            },
            "leave" => Request::Leave { room: words.arg()? },
            "block" | "unblock" => Request::Block {
                peer: words.arg()?,
                blocked: verb == "block",
            },
            "mute" => words.mute()?,
            "unmute" => Request::Mute {
                target: words.arg()?,
                mute: None,
            },
            "listen" => words.listen()?,
            "json" => Request::Json(words.listing()?),
            "history" => words.history()?,
            "read" => Request::Read {
                room: words.arg()?,
                up_to: words.optional_number()?,
            },
            "profile" => Request::Profile { name: words.arg()? },
            "search" => words.search()?,
            "share" => Request::Share {
                to: words.arg()?,
                path: words.arg()?,
                caption: match words.next() {
                    Some("-") => None,
                    Some(word) => Some(decode_arg(word, line)?),
                    None => return Err(words.bad()),
                },
            },
            "fetch" => Request::Fetch {
                file: words.hex_id()?,
                to_dir: words.arg()?,
            },
            "files" => Request::Files { room: words.arg()? },
            "file" => Request::File {
                file: words.hex_id()?,
            },
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
                    .map_or_else(|| "-".to_owned(), crate::daemon::search::cursor_text),
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
            Request::Share { to, path, caption } => format!(
                "share {} {} {}",
                hex(to),
                hex(path),
                caption.as_ref().map_or_else(|| "-".to_owned(), hex)
            ),
            Request::Fetch { file, to_dir } => format!("fetch {file} {}", hex(to_dir)),
            Request::Files { room } => format!("files {}", hex(room)),
            Request::File { file } => format!("file {file}"),
        }
    }
}

/// The words of a request line after its verb; the line is kept to be
/// quoted back when it is malformed.
struct Words<'a> {
    split: std::str::Split<'a, char>,
    line: &'a str,
}

impl<'a> Words<'a> {
    fn next(&mut self) -> Option<&'a str> {
        self.split.next()
    }

    /// The request is malformed: its start, quoted back.
    fn bad(&self) -> DaemonError {
        DaemonError::UnknownRequest(brief(self.line))
    }

    /// The next hex-encoded UTF-8 argument.
    fn arg(&mut self) -> Result<String, DaemonError> {
        decode_arg(self.next().unwrap_or_default(), self.line)
    }

    /// Every argument left (none is fine).
    fn rest(self) -> Result<Vec<String>, DaemonError> {
        let line = self.line;
        self.split.map(|w| decode_arg(w, line)).collect()
    }

    /// The next word as 64 hex digits (a hash or an id), lower-cased.
    fn hex_id(&mut self) -> Result<String, DaemonError> {
        let word = self.next().unwrap_or_default().to_ascii_lowercase();
        if crate::proto::ids::FileHash::from_hex(&word).is_none() {
            return Err(self.bad());
        }
        Ok(word)
    }

    /// The next word as a number.
    fn number<T: std::str::FromStr>(&mut self) -> Result<T, DaemonError> {
        let word = self.next();
        word.and_then(|w| w.parse().ok()).ok_or_else(|| self.bad())
    }

    /// A number, or `-` for none.
    fn optional_number(&mut self) -> Result<Option<u64>, DaemonError> {
        match self.next() {
            Some("-") => Ok(None),
            Some(number) => number.parse().map(Some).map_err(|_| self.bad()),
            None => Err(self.bad()),
        }
    }

    /// `mute H(TARGET) UNTIL_MS|forever`.
    fn mute(&mut self) -> Result<Request, DaemonError> {
        let target = self.arg()?;
        let mute = match self.next() {
            Some("forever") => Mute::Indefinitely,
            Some(until) => Mute::Until(until.parse().map_err(|_| self.bad())?),
            None => return Err(self.bad()),
        };
        Ok(Request::Mute {
            target,
            mute: Some(mute),
        })
    }

    /// `listen [json|text|all [since CURSOR]]`.
    fn listen(&mut self) -> Result<Request, DaemonError> {
        let format = match self.next().unwrap_or("json") {
            "json" => ListenFormat::Json,
            "text" => ListenFormat::Text,
            "all" => ListenFormat::TextWithMuted,
            _ => return Err(self.bad()),
        };
        match (self.next(), self.next()) {
            (None, _) => Ok(Request::Listen(format)),
            (Some("since"), Some(cursor)) => Ok(Request::ListenSince(
                format,
                cursor.parse().map_err(|_| self.bad())?,
            )),
            _ => Err(self.bad()),
        }
    }

    /// The `LISTING` of `json LISTING`.
    fn listing(&mut self) -> Result<Listing, DaemonError> {
        Ok(match self.next().unwrap_or_default() {
            "peers" => Listing::Peers,
            "rooms" => Listing::Rooms,
            "status" => Listing::Status,
            "discovery" => Listing::Discovery,
            "blocked" => Listing::Blocked,
            _ => return Err(self.bad()),
        })
    }

    /// `history H(ROOM) LIMIT BEFORE|- json|text`.
    fn history(&mut self) -> Result<Request, DaemonError> {
        let room = self.arg()?;
        let limit = self.number()?;
        let before = self.optional_number()?;
        let json = match self.next() {
            Some("json") => true,
            Some("text") => false,
            _ => return Err(self.bad()),
        };
        Ok(Request::History {
            room,
            before,
            limit,
            json,
        })
    }

    /// `search H(TEXT) H(ROOM)|- CURSOR|- LIMIT`.
    fn search(&mut self) -> Result<Request, DaemonError> {
        let text = self.arg()?;
        let room = match self.next() {
            Some("-") => None,
            Some(room) => Some(decode_arg(room, self.line)?),
            None => return Err(self.bad()),
        };
        let before = match self.next() {
            Some("-") => None,
            Some(cursor) => {
                Some(crate::daemon::search::parse_cursor(cursor).ok_or_else(|| self.bad())?)
            }
            None => return Err(self.bad()),
        };
        let limit = self.number()?;
        Ok(Request::Search {
            text,
            room,
            before,
            limit,
        })
    }
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
