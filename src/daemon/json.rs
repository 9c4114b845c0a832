//! The JSON documents `kith … --json` prints: the integration surface for
//! devices and scripts (README "JSON output" shows each shape).
//!
//! Conventions: objects with named fields; ids and keys as 64 lowercase hex
//! digits; times as milliseconds since the Unix epoch (`*_ms`); durations as
//! milliseconds (`*_ago_ms`); absent values as `null`. A listing is an
//! object with one array field (`{"peers": [...]}`), so fields can be added
//! beside it later without breaking readers.

use serde_json::{Value, json};

use super::address_book::{DiscoveryReport, presence_word};
use super::api::{HistoryPage, HistoryRow};
use super::files::{FileEntry, FileInfo, FileState};
use super::{PeerInfo, RoomSummary, Status};
use crate::proto::ids::{PeerId, RoomId};
use crate::store::Mute;

fn room_hex(room: &RoomId) -> String {
    PeerId(room.0).to_hex()
}

/// A mute as JSON: `null`, `"forever"`, or the end in ms since the epoch.
fn mute(mute: Option<Mute>) -> Value {
    match mute {
        None => Value::Null,
        Some(Mute::Indefinitely) => json!("forever"),
        Some(Mute::Until(until)) => json!(until),
    }
}

/// `{"peers": [{"peer", "public_key", "addr", "state", "outbox", "muted",
/// "relation"}]}`.
pub fn peers(peers: &[PeerInfo]) -> Value {
    let list: Vec<Value> = peers
        .iter()
        .map(|p| {
            json!({
                "peer": p.peer.to_hex(),
                "public_key": PeerId(p.public.to_bytes()).to_hex(),
                "addr": p.addr.map(|a| a.to_string()),
                "state": presence_word(p.online, p.watched),
                "outbox": p.outbox,
                "muted": mute(p.muted),
                "relation": match (p.contact, p.request) {
                    (true, true) => "request",
                    (true, false) => "contact",
                    (false, _) => "nearby",
                },
            })
        })
        .collect();
    json!({ "peers": list })
}

/// `{"rooms": [{"room", "name", "kind", "direct_peer", "admin", "epoch",
/// "members", "muted", "unread", "unread_muted"}]}`.
pub fn rooms(rooms: &[RoomSummary]) -> Value {
    let list: Vec<Value> = rooms
        .iter()
        .map(|r| {
            json!({
                "room": room_hex(&r.id),
                "name": r.name,
                "kind": room_kind(r),
                "direct_peer": r.direct.map(|p| p.to_hex()),
                "admin": r.admin.map(|p| p.to_hex()),
                "epoch": r.epoch,
                "members": r.members.iter().map(PeerId::to_hex).collect::<Vec<_>>(),
                "muted": mute(r.muted),
                "unread": r.unread,
                "unread_muted": r.unread_muted,
            })
        })
        .collect();
    json!({ "rooms": list })
}

/// `direct`, `invited` or `group`.
pub fn room_kind(room: &RoomSummary) -> &'static str {
    match (room.direct.is_some(), room.invited) {
        (true, _) => "direct",
        (false, true) => "invited",
        (false, false) => "group",
    }
}

/// `{"counters": {"NAME": VALUE, ...}}`.
pub fn status(status: &Status) -> Value {
    let counters: serde_json::Map<String, Value> = status
        .counters()
        .into_iter()
        .map(|(name, value)| (name, json!(value)))
        .collect();
    json!({ "counters": counters })
}

/// `{"blocked": ["PEER", ...]}`.
pub fn blocked(peers: &[PeerId]) -> Value {
    json!({ "blocked": peers.iter().map(PeerId::to_hex).collect::<Vec<_>>() })
}

/// `{"peer": ID, "public_key": KEY}`.
pub fn id(peer: &PeerId, public_key: &[u8; 32]) -> Value {
    json!({ "peer": peer.to_hex(), "public_key": PeerId(*public_key).to_hex() })
}

/// `{"interfaces", "mdns", "presence", "registry", "nearby_dropped", "peers"}`.
pub fn discovery(report: &DiscoveryReport) -> Value {
    let ms = |d: Option<std::time::Duration>| d.map(|d| d.as_millis() as u64);
    let presence = &report.presence;
    let longest = presence
        .max_keepalive_interval
        .max(presence.keepalive_interval);
    json!({
        "interfaces": report.interfaces,
        "mdns": report.mdns.as_ref().map(|(name, c)| json!({
            "name": name,
            "found": c.found,
            "lost": c.lost,
            "rejected": c.rejected,
            "own_ignored": c.own_ignored,
            "address_changes": c.address_changes,
            "errors": c.daemon_errors,
        })),
        "presence": {
            "keepalive_ms": presence.keepalive_interval.as_millis() as u64,
            "max_keepalive_ms": longest.as_millis() as u64,
            "offline_after_ms": presence.offline_after().as_millis() as u64,
            "idle_offline_after_ms": presence.offline_after_interval(longest).as_millis() as u64,
        },
        "registry": report.registry.as_ref().map(|r| json!({
            "addr": r.addr.to_string(),
            "registered": r.registered,
            "published": r.published.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "last_sent_ago_ms": ms(r.last_sent_ago),
            "last_answer_ago_ms": ms(r.last_answer_ago),
            "lookups": r.lookups,
            "found": r.found,
            "dropped": r.dropped,
        })),
        "nearby_dropped": report.nearby_dropped,
        "peers": report.peers.iter().map(|p| json!({
            "peer": p.peer.to_hex(),
            "name": p.name,
            "addr": p.addr.map(|a| a.to_string()),
            "source": p.source.map(|s| s.to_string()),
            "state": p.state(),
            "heard_ago_ms": ms(p.heard_ago),
            "sighted_ago_ms": ms(p.sighted_ago),
            "has_key": p.has_key,
            "contact": p.contact,
        })).collect::<Vec<_>>(),
    })
}

/// One history row: `{"cursor", "id", "author", "author_name",
/// "timestamp", "time_ms", "text", "readable", "ours", "delivered", "of",
/// "deliveries": [{"peer", "state"}]}`; `text` is `null` for an unreadable
/// message; `delivered`/`of` ("delivered to k of n") and `deliveries` only
/// mean something for our own messages.
pub fn history_row(row: &HistoryRow) -> Value {
    let (delivered, of) = row.delivered();
    json!({
        "cursor": row.cursor,
        "id": row.id.to_hex(),
        "author": row.author.to_hex(),
        "author_name": row.author_name,
        "timestamp": row.timestamp,
        "time_ms": row.millis(),
        "text": row.text,
        "file": row.file.as_ref().map(file_info),
        "readable": row.text.is_some(),
        "ours": row.ours,
        "delivered": delivered,
        "of": of,
        "deliveries": row.deliveries.iter().map(|(peer, state)| json!({
            "peer": peer.to_hex(),
            "state": state.word(),
        })).collect::<Vec<_>>(),
    })
}

/// A file offer: `{"hash", "name", "size", "caption"}`.
pub fn file_info(file: &FileInfo) -> Value {
    json!({
        "hash": file.hash.to_hex(),
        "name": file.name,
        "size": file.size,
        "caption": file.caption,
    })
}

/// One shared file: `{"message", "room", "author", "time_ms", "hash",
/// "name", "size", "caption", "state", "have", "reason", "path"}`.
pub fn file_entry(entry: &FileEntry) -> Value {
    let have = match &entry.state {
        FileState::Complete => entry.info.size,
        FileState::Fetching { have } => *have,
        FileState::Offered | FileState::Failed { .. } => 0,
    };
    json!({
        "message": entry.message.to_hex(),
        "room": room_hex(&entry.room),
        "author": entry.author.to_hex(),
        "time_ms": crate::proto::hlc::millis(entry.timestamp),
        "hash": entry.info.hash.to_hex(),
        "name": entry.info.name,
        "size": entry.info.size,
        "caption": entry.info.caption,
        "state": entry.state.word(),
        "have": have,
        "reason": match &entry.state {
            FileState::Failed { reason } => Some(reason.clone()),
            _ => None,
        },
        "path": entry.path.as_ref().map(|p| p.to_string_lossy().into_owned()),
    })
}

/// `{"files": [entry...]}`, oldest first.
pub fn files(entries: &[FileEntry]) -> Value {
    json!({ "files": entries.iter().map(file_entry).collect::<Vec<_>>() })
}

/// `{"room", "messages": [row...], "next": CURSOR|null}`, newest first.
pub fn history(page: &HistoryPage) -> Value {
    json!({
        "room": room_hex(&page.room),
        "messages": page.rows.iter().map(history_row).collect::<Vec<_>>(),
        "next": page.next,
    })
}
