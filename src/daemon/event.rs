//! What the daemon reports to its listeners ([`Event`]), with its JSON line
//! (`kith events --json`) and the sentence a person reads.

use std::fmt;

use std::path::PathBuf;

use super::files::{FileHash, FileInfo};
use crate::proto::ids::{MessageId, PeerId, RoomId};

/// What the daemon reports to its listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message from `from` in `room` was stored. `muted`: the room or
    /// the sender is muted, so it is not to be notified (it is counted
    /// unread, flagged: see [`RoomSummary::unread_muted`]).
    /// `cursor` is where it is stored (see [`SubscribeOptions::since`]).
    ///
    /// Every event that names a peer also carries how it is shown
    /// (`from_name`, `to_name`, `peer_name`): its display name, with an id
    /// suffix when another known peer has the same name (`Sam·3f2a`), an
    /// mDNS hint as `~Name·3f2a`, or its short id when no name is known.
    MessageReceived {
        room: RoomId,
        from: PeerId,
        from_name: String,
        id: MessageId,
        timestamp: u64,
        text: String,
        /// For a file message, what it offers (then `text` is its
        /// caption, "" when it has none); `None` for text.
        file: Option<FileInfo>,
        muted: bool,
        cursor: u64,
    },
    /// An authentic message we hold no key for was stored unreadable (a
    /// `MessageReceived` of it follows if its key arrives).
    Undecryptable {
        room: RoomId,
        from: PeerId,
        from_name: String,
        id: MessageId,
        timestamp: u64,
        cursor: u64,
    },
    /// `to` stored our message `id`.
    Delivered {
        to: PeerId,
        to_name: String,
        id: MessageId,
    },
    /// The node gave up retransmitting `id` to `to` for now; it stays in
    /// the outbox and is queued again at the next start.
    Undelivered {
        to: PeerId,
        to_name: String,
        id: MessageId,
    },
    /// `to` received our message `id` but refused to store it (it failed a
    /// check there: see its `kith status` drop counters). Not delivered; it
    /// stays in the outbox and is sent again at the next start.
    Refused {
        to: PeerId,
        to_name: String,
        id: MessageId,
    },
    /// `peer` answered again.
    PeerOnline { peer: PeerId, peer_name: String },
    /// No answer from `peer` for a while; messages to it stay queued.
    PeerOffline { peer: PeerId, peer_name: String },
    /// An admin invites us to a group room: `kith room accept` or
    /// `kith room decline` (or [`DaemonHandle::accept_invite`]).
    RoomInvited {
        room: RoomId,
        name: String,
        from: PeerId,
        from_name: String,
    },
    /// We joined a group room.
    RoomJoined { room: RoomId, name: String },
    /// A group room's members changed.
    RoomChanged { room: RoomId },
    /// The room's admin removed us; its history stays.
    RoomRemoved { room: RoomId },
    /// Someone we did not know wrote to us: accept (`kith accept`) or
    /// decline (`kith decline`, which blocks). Its messages follow.
    ContactRequest { peer: PeerId, peer_name: String },
    /// `peer` (or we) took a new display name, from a signed profile:
    /// `name` as chosen, `label` as it is shown from now on, `previous`
    /// the signed name it had (`None`: its first).
    PeerRenamed {
        peer: PeerId,
        name: String,
        label: String,
        previous: Option<String>,
    },
    /// A room's unread count changed (a message came, the read marker
    /// moved, a mute changed). `unread_muted` of them are in a muted room
    /// or from a muted sender: counted, not to be notified.
    UnreadChanged {
        room: RoomId,
        unread: u64,
        unread_muted: u64,
    },
    /// A fetch of file `hash` of `room` stands at `have` of `size` bytes
    /// (a few of these a second at most).
    FileProgress {
        room: RoomId,
        hash: FileHash,
        have: u64,
        size: u64,
    },
    /// File `hash` of `room` arrived whole and matched its hash; `path` is
    /// the copy the fetch asked for.
    FileComplete {
        room: RoomId,
        hash: FileHash,
        path: PathBuf,
    },
    /// A fetch of file `hash` of `room` failed: `reason` says why.
    FileFailed {
        room: RoomId,
        hash: FileHash,
        reason: String,
    },
    /// Our message `id` in `room` is now stored by `delivered` of its `of`
    /// recipients ("delivered to k of n").
    Receipt {
        room: RoomId,
        id: MessageId,
        delivered: usize,
        of: usize,
    },
}

impl Event {
    /// The store cursor of a message event (`None` for other events).
    pub fn cursor(&self) -> Option<u64> {
        match self {
            Event::MessageReceived { cursor, .. } | Event::Undecryptable { cursor, .. } => {
                Some(*cursor)
            }
            _ => None,
        }
    }

    pub(crate) fn set_cursor(&mut self, value: u64) {
        if let Event::MessageReceived { cursor, .. } | Event::Undecryptable { cursor, .. } = self {
            *cursor = value;
        }
    }
}

impl Event {
    /// One JSON object on one line, for `kith listen --json`. Ids are hex;
    /// text is escaped per RFC 8259.
    pub fn to_json(&self) -> String {
        match self {
            Event::MessageReceived {
                room,
                from,
                from_name,
                id,
                timestamp,
                text,
                file,
                muted,
                cursor,
            } => format!(
                r#"{{"event":"message","room":"{room}","from":"{from}","from_name":"{}","id":"{id}","timestamp":{timestamp},"time_ms":{},"text":"{}","file":{},"muted":{muted},"cursor":{cursor}}}"#,
                json_escape(from_name),
                crate::proto::hlc::millis(*timestamp),
                json_escape(text),
                file.as_ref().map_or_else(|| "null".to_owned(), file_json),
                room = PeerId(room.0).to_hex(),
                from = from.to_hex(),
                id = id.to_hex(),
            ),
            Event::Undecryptable {
                room,
                from,
                from_name,
                id,
                timestamp,
                cursor,
            } => format!(
                r#"{{"event":"undecryptable","room":"{}","from":"{}","from_name":"{}","id":"{}","timestamp":{timestamp},"time_ms":{},"cursor":{cursor}}}"#,
                PeerId(room.0).to_hex(),
                from.to_hex(),
                json_escape(from_name),
                id.to_hex(),
                crate::proto::hlc::millis(*timestamp),
            ),
            Event::Delivered { to, to_name, id } => format!(
                r#"{{"event":"delivered","to":"{}","to_name":"{}","id":"{}"}}"#,
                to.to_hex(),
                json_escape(to_name),
                id.to_hex()
            ),
            Event::Undelivered { to, to_name, id } => format!(
                r#"{{"event":"undelivered","to":"{}","to_name":"{}","id":"{}"}}"#,
                to.to_hex(),
                json_escape(to_name),
                id.to_hex()
            ),
            Event::Refused { to, to_name, id } => format!(
                r#"{{"event":"refused","to":"{}","to_name":"{}","id":"{}"}}"#,
                to.to_hex(),
                json_escape(to_name),
                id.to_hex()
            ),
            Event::PeerOnline { peer, peer_name } => format!(
                r#"{{"event":"peer_online","peer":"{}","peer_name":"{}"}}"#,
                peer.to_hex(),
                json_escape(peer_name)
            ),
            Event::PeerOffline { peer, peer_name } => format!(
                r#"{{"event":"peer_offline","peer":"{}","peer_name":"{}"}}"#,
                peer.to_hex(),
                json_escape(peer_name)
            ),
            Event::RoomInvited {
                room,
                name,
                from,
                from_name,
            } => format!(
                r#"{{"event":"room_invited","room":"{}","name":"{}","from":"{}","from_name":"{}"}}"#,
                PeerId(room.0).to_hex(),
                json_escape(name),
                from.to_hex(),
                json_escape(from_name)
            ),
            Event::RoomJoined { room, name } => format!(
                r#"{{"event":"room_joined","room":"{}","name":"{}"}}"#,
                PeerId(room.0).to_hex(),
                json_escape(name)
            ),
            Event::RoomChanged { room } => format!(
                r#"{{"event":"room_changed","room":"{}"}}"#,
                PeerId(room.0).to_hex()
            ),
            Event::RoomRemoved { room } => format!(
                r#"{{"event":"room_removed","room":"{}"}}"#,
                PeerId(room.0).to_hex()
            ),
            Event::ContactRequest { peer, peer_name } => format!(
                r#"{{"event":"contact_request","peer":"{}","peer_name":"{}"}}"#,
                peer.to_hex(),
                json_escape(peer_name)
            ),
            Event::PeerRenamed {
                peer,
                name,
                label,
                previous,
            } => format!(
                r#"{{"event":"peer_renamed","peer":"{}","name":"{}","label":"{}","previous":{}}}"#,
                peer.to_hex(),
                json_escape(name),
                json_escape(label),
                previous
                    .as_ref()
                    .map_or_else(|| "null".to_owned(), |p| format!("\"{}\"", json_escape(p)))
            ),
            Event::UnreadChanged {
                room,
                unread,
                unread_muted,
            } => format!(
                r#"{{"event":"unread","room":"{}","unread":{unread},"unread_muted":{unread_muted}}}"#,
                PeerId(room.0).to_hex()
            ),
            Event::Receipt {
                room,
                id,
                delivered,
                of,
            } => format!(
                r#"{{"event":"receipt","room":"{}","id":"{}","delivered":{delivered},"of":{of}}}"#,
                PeerId(room.0).to_hex(),
                id.to_hex()
            ),
            Event::FileProgress {
                room,
                hash,
                have,
                size,
            } => format!(
                r#"{{"event":"file_progress","room":"{}","hash":"{}","have":{have},"size":{size}}}"#,
                PeerId(room.0).to_hex(),
                hash.to_hex()
            ),
            Event::FileComplete { room, hash, path } => format!(
                r#"{{"event":"file_complete","room":"{}","hash":"{}","path":"{}"}}"#,
                PeerId(room.0).to_hex(),
                hash.to_hex(),
                json_escape(&path.to_string_lossy())
            ),
            Event::FileFailed { room, hash, reason } => format!(
                r#"{{"event":"file_failed","room":"{}","hash":"{}","reason":"{}"}}"#,
                PeerId(room.0).to_hex(),
                hash.to_hex(),
                json_escape(reason)
            ),
        }
    }
}

/// A file offer as a JSON object: `{"hash","name","size","caption"}`.
fn file_json(file: &FileInfo) -> String {
    format!(
        r#"{{"hash":"{}","name":"{}","size":{},"caption":{}}}"#,
        file.hash.to_hex(),
        json_escape(&file.name),
        file.size,
        file.caption
            .as_ref()
            .map_or_else(|| "null".to_owned(), |c| format!("\"{}\"", json_escape(c)))
    )
}

impl fmt::Display for Event {
    /// A short line for people (`kith listen` without `--json`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::MessageReceived {
                room,
                from_name,
                text,
                file: Some(file),
                ..
            } => write!(
                f,
                "[{}] {from_name}: file {:?} ({} bytes, kith fetch {} --to DIR){}{text}",
                PeerId(room.0).short(),
                file.name,
                file.size,
                file.hash.to_hex(),
                if text.is_empty() { "" } else { " " },
            ),
            Event::MessageReceived {
                room,
                from_name,
                text,
                ..
            } => write!(f, "[{}] {from_name}: {text}", PeerId(room.0).short()),
            Event::Undecryptable {
                room,
                from_name,
                id,
                ..
            } => write!(
                f,
                "[{}] {from_name}: (unreadable message {})",
                PeerId(room.0).short(),
                id.short()
            ),
            Event::Delivered { to_name, id, .. } => {
                write!(f, "delivered {} to {to_name}", id.short())
            }
            Event::Undelivered { to_name, id, .. } => {
                write!(f, "not yet delivered {} to {to_name}", id.short())
            }
            Event::Refused { to_name, id, .. } => write!(
                f,
                "not delivered {}: {to_name} refused to store it",
                id.short(),
            ),
            Event::PeerOnline { peer_name, .. } => write!(f, "{peer_name} is online"),
            Event::PeerOffline { peer_name, .. } => write!(f, "{peer_name} is offline"),
            Event::RoomInvited {
                room,
                name,
                from_name,
                ..
            } => write!(
                f,
                "{from_name} invites you to room {name:?}: kith room accept {}",
                PeerId(room.0).to_hex()
            ),
            Event::RoomJoined { room, name } => {
                write!(f, "joined room {name:?} ({})", PeerId(room.0).short())
            }
            Event::RoomChanged { room } => {
                write!(f, "members of room {} changed", PeerId(room.0).short())
            }
            Event::RoomRemoved { room } => {
                write!(f, "removed from room {}", PeerId(room.0).short())
            }
            Event::ContactRequest { peer, peer_name } => write!(
                f,
                "{peer_name} wants to talk: kith accept {} (or kith decline)",
                peer.to_hex()
            ),
            Event::PeerRenamed {
                peer,
                label,
                previous,
                ..
            } => match previous {
                Some(previous) => write!(f, "{previous} ({}) is now {label}", peer.short()),
                None => write!(f, "{} is {label}", peer.short()),
            },
            Event::UnreadChanged { room, unread, .. } => {
                write!(f, "room {} has {unread} unread", PeerId(room.0).short())
            }
            Event::Receipt {
                id, delivered, of, ..
            } => write!(f, "{} delivered to {delivered} of {of}", id.short()),
            Event::FileProgress {
                hash, have, size, ..
            } => write!(f, "file {}: {have} of {size} bytes", hash.short()),
            Event::FileComplete { hash, path, .. } => {
                write!(f, "file {} complete: {}", hash.short(), path.display())
            }
            Event::FileFailed { hash, reason, .. } => {
                write!(f, "file {} failed: {reason}", hash.short())
            }
        }
    }
}

/// Escapes `text` for a JSON string literal.
pub fn json_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::PeerAddr;

    #[test]
    fn json_escapes_quotes_backslashes_and_controls() {
        assert_eq!(json_escape("a\"b\\c\nd\u{1}é"), "a\\\"b\\\\c\\nd\\u0001é");
        let event = Event::Delivered {
            to: PeerId([1; 32]),
            to_name: "Sam·0101".to_owned(),
            id: MessageId([2; 32]),
        };
        assert_eq!(
            event.to_json(),
            format!(
                r#"{{"event":"delivered","to":"{}","to_name":"Sam·0101","id":"{}"}}"#,
                "01".repeat(32),
                "02".repeat(32)
            )
        );
        let renamed = Event::PeerRenamed {
            peer: PeerId([1; 32]),
            name: "Sam \"the\" man".to_owned(),
            label: "Sam".to_owned(),
            previous: None,
        };
        assert!(
            renamed
                .to_json()
                .ends_with(r#""name":"Sam \"the\" man","label":"Sam","previous":null}"#)
        );
    }

    /// Every event's JSON line is one valid JSON object naming its kind,
    /// whatever the text holds.
    #[test]
    fn every_event_is_valid_json() {
        let (room, peer, id) = (RoomId([1; 32]), PeerId([2; 32]), MessageId([3; 32]));
        let tricky = "quote \" backslash \\ newline \n nul \u{0} bidi \u{202e} é".to_owned();
        let events = [
            Event::MessageReceived {
                room,
                from: peer,
                from_name: tricky.clone(),
                id,
                timestamp: 5 << 16,
                text: tricky.clone(),
                file: None,
                muted: true,
                cursor: 9,
            },
            Event::MessageReceived {
                room,
                from: peer,
                from_name: tricky.clone(),
                id,
                timestamp: 5 << 16,
                text: tricky.clone(),
                file: Some(FileInfo {
                    hash: FileHash([4; 32]),
                    name: tricky.clone(),
                    size: 3,
                    caption: Some(tricky.clone()),
                }),
                muted: false,
                cursor: 9,
            },
            Event::Undecryptable {
                room,
                from: peer,
                from_name: "Sam·0202".to_owned(),
                id,
                timestamp: 1,
                cursor: 2,
            },
            Event::Delivered {
                to: peer,
                to_name: tricky.clone(),
                id,
            },
            Event::Undelivered {
                to: peer,
                to_name: tricky.clone(),
                id,
            },
            Event::Refused {
                to: peer,
                to_name: tricky.clone(),
                id,
            },
            Event::PeerOnline {
                peer,
                peer_name: tricky.clone(),
            },
            Event::PeerOffline {
                peer,
                peer_name: tricky.clone(),
            },
            Event::RoomInvited {
                room,
                name: tricky.clone(),
                from: peer,
                from_name: tricky.clone(),
            },
            Event::RoomJoined {
                room,
                name: tricky.clone(),
            },
            Event::RoomChanged { room },
            Event::RoomRemoved { room },
            Event::ContactRequest {
                peer,
                peer_name: tricky.clone(),
            },
            Event::PeerRenamed {
                peer,
                name: tricky.clone(),
                label: tricky.clone(),
                previous: Some(tricky.clone()),
            },
            Event::UnreadChanged {
                room,
                unread: 3,
                unread_muted: 1,
            },
            Event::Receipt {
                room,
                id,
                delivered: 1,
                of: 2,
            },
            Event::FileProgress {
                room,
                hash: FileHash([4; 32]),
                have: 10,
                size: 20,
            },
            Event::FileComplete {
                room,
                hash: FileHash([4; 32]),
                path: PathBuf::from("/tmp/\"odd\" name"),
            },
            Event::FileFailed {
                room,
                hash: FileHash([4; 32]),
                reason: "bad \u{1} hash".to_owned(),
            },
        ];
        for event in events {
            let value: serde_json::Value =
                serde_json::from_str(&event.to_json()).expect("valid JSON");
            assert!(value["event"].is_string(), "{value}");
            if let Event::MessageReceived { file, .. } = &event {
                assert_eq!(value["file"].is_null(), file.is_none());
                if file.is_some() {
                    assert_eq!(value["file"]["name"], tricky.as_str());
                    assert_eq!(value["file"]["caption"], tricky.as_str());
                }
                assert_eq!(value["text"], tricky.as_str());
                assert_eq!(value["cursor"], 9);
                assert_eq!(value["time_ms"], 5);
            }
        }
    }

    #[test]
    fn peer_addr_parses_key_at_address() {
        let public = crate::proto::crypto::Identity::generate(&mut rand::rng()).public();
        let text = format!("{}@127.0.0.1:4000", PeerId(public.to_bytes()).to_hex());
        let parsed: PeerAddr = text.parse().expect("a well-formed peer parses");
        assert_eq!(parsed.public, public);
        assert_eq!(
            parsed.addr,
            "127.0.0.1:4000".parse().expect("a literal address")
        );
        assert!("nokey@127.0.0.1:1".parse::<PeerAddr>().is_err());
        assert!(
            PeerId(public.to_bytes())
                .to_hex()
                .parse::<PeerAddr>()
                .is_err()
        );
    }
}
