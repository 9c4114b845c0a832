//! Display names in the daemon: the names we know (signed profiles, ours
//! included, and mDNS hints), how each peer is shown
//! ([`crate::proto::profile::display_labels`]), and the glue between the
//! node's profile records and the store.
//!
//! - A signed name comes only from a record the node checked
//!   (`NodeEvent::ProfileReceived`); it is stored before it is shown, and
//!   comes back at start with the number that keeps older records out.
//! - An mDNS name is a hint: shown `~Name·3f2a` (always with its id
//!   suffix) until a signed profile arrives, and never used to resolve
//!   what a user typed.
//! - Labels are recomputed only when a name changes, so naming the peer of
//!   every event costs a map lookup.

use std::collections::HashMap;
use std::time::Instant;

use super::{DaemonError, Event};
use crate::proto::ids::PeerId;
use crate::proto::node::Node;
use crate::proto::profile::{KnownName, check_name, display_labels};
use crate::store::{Store, StoreError, StoredProfile};

/// Every name the daemon knows, and the labels made of them.
#[derive(Debug)]
pub(crate) struct ProfileBook {
    /// Us: shown like anyone, never what a typed name means.
    me: PeerId,
    /// Signed names (ours included).
    names: HashMap<PeerId, String>,
    /// mDNS names of peers (checked like names; defaults left out).
    hints: HashMap<PeerId, String>,
    /// How each named peer is shown; rebuilt when `dirty`.
    labels: HashMap<PeerId, String>,
    dirty: bool,
}

impl ProfileBook {
    /// The names kept in `store`, handed to the node too: our own record
    /// (sent from now on) and every peer's newest number.
    pub(crate) fn restore(store: &Store, node: &mut Node) -> Result<Self, StoreError> {
        let me = node.peer_id();
        let mut book = ProfileBook {
            me,
            names: HashMap::new(),
            hints: HashMap::new(),
            labels: HashMap::new(),
            dirty: true,
        };
        for stored in store.profiles()? {
            if stored.peer == me {
                if node.restore_profile(&stored.record).is_err() {
                    log::warn!("ignoring a damaged stored profile of ours");
                    continue;
                }
            } else {
                node.remember_profile(stored.peer, stored.seq);
            }
            book.names.insert(stored.peer, stored.name);
        }
        Ok(book)
    }

    /// `peer`'s signed name, if one arrived.
    pub(crate) fn name(&self, peer: &PeerId) -> Option<&str> {
        self.names.get(peer).map(String::as_str)
    }

    /// `peer`'s mDNS name, if it announced one.
    pub(crate) fn hint(&self, peer: &PeerId) -> Option<&str> {
        self.hints.get(peer).map(String::as_str)
    }

    /// Records `peer`'s new signed name; the name it had, if it changed.
    fn set(&mut self, peer: PeerId, name: String) -> Option<Option<String>> {
        let previous = self.names.insert(peer, name.clone());
        if previous.as_ref() == Some(&name) {
            return None;
        }
        self.dirty = true;
        Some(previous)
    }

    /// Takes the names discovery heard announced. A name that is only a
    /// default (`kith`, or `kith <short id>` from older versions) or would
    /// not pass as a display name is no hint.
    pub(crate) fn set_hints<'a>(&mut self, announced: impl Iterator<Item = (PeerId, &'a str)>) {
        let hints: HashMap<PeerId, String> = announced
            .filter(|(peer, name)| *name != "kith" && *name != format!("kith {}", peer.short()))
            .filter_map(|(peer, name)| Some((peer, check_name(name).ok()?)))
            .collect();
        if hints != self.hints {
            self.hints = hints;
            self.dirty = true;
        }
    }

    /// How `peer` is shown: its label, or its short id if no name is known.
    pub(crate) fn label(&mut self, peer: &PeerId) -> String {
        if self.dirty {
            self.rebuild();
        }
        self.labels
            .get(peer)
            .cloned()
            .unwrap_or_else(|| peer.short())
    }

    fn rebuild(&mut self) {
        self.labels = self.fresh_labels();
        self.dirty = false;
    }

    fn fresh_labels(&self) -> HashMap<PeerId, String> {
        let mut known: Vec<KnownName<'_>> = self
            .names
            .iter()
            .map(|(peer, name)| KnownName {
                peer: *peer,
                name,
                signed: true,
            })
            .collect();
        known.extend(
            self.hints
                .iter()
                .filter(|(peer, _)| !self.names.contains_key(peer))
                .map(|(peer, name)| KnownName {
                    peer: *peer,
                    name,
                    signed: false,
                }),
        );
        display_labels(&known)
    }

    /// Peers a user may mean by `text`: those shown as exactly `text`, or
    /// else those whose signed name is `text` (ignoring case). Hints name
    /// nobody: anyone can announce any name.
    pub(crate) fn resolve(&self, text: &str) -> Vec<PeerId> {
        let fresh;
        let labels = if self.dirty {
            fresh = self.fresh_labels();
            &fresh
        } else {
            &self.labels
        };
        let exact: Vec<PeerId> = labels
            .iter()
            .filter(|(peer, label)| {
                *label == text && self.names.contains_key(peer) && **peer != self.me
            })
            .map(|(peer, _)| *peer)
            .collect();
        if !exact.is_empty() {
            return exact;
        }
        let lower = text.to_lowercase();
        self.names
            .iter()
            .filter(|(peer, name)| **peer != self.me && name.to_lowercase() == lower)
            .map(|(peer, _)| *peer)
            .collect()
    }

    /// How every named peer is shown now (others show as their short id).
    pub(crate) fn labels(&mut self) -> HashMap<PeerId, String> {
        if self.dirty {
            self.rebuild();
        }
        self.labels.clone()
    }

    /// Fills in the display name of the peer an event names.
    pub(crate) fn name_event(&mut self, event: &mut Event) {
        if let Some((peer, slot)) = event.peer_name_slot() {
            *slot = self.label(&peer);
        }
    }
}

/// Signs `name` as our new profile, sends it to every peer with a session
/// (the node does), stores it, and tells the subscribers (the event is
/// returned for the driver to publish).
pub(crate) fn set_own(
    now: Instant,
    name: &str,
    node: &mut Node,
    store: &mut Store,
    book: &mut ProfileBook,
) -> Result<Option<Event>, DaemonError> {
    let name = check_name(name).map_err(crate::proto::node::NodeError::from)?;
    let record = node.set_profile(now, &name)?;
    store.put_profile(&StoredProfile {
        peer: record.profile.peer,
        seq: record.profile.seq,
        name: record.profile.name.clone(),
        record: record.bytes,
    })?;
    Ok(renamed(book, record.profile.peer, record.profile.name))
}

/// A peer's newer signed profile from the node: stored, then shown.
pub(crate) fn received(
    store: &mut Store,
    book: &mut ProfileBook,
    peer: PeerId,
    seq: u64,
    name: String,
    record: Vec<u8>,
) -> Result<Option<Event>, StoreError> {
    store.put_profile(&StoredProfile {
        peer,
        seq,
        name: name.clone(),
        record,
    })?;
    Ok(renamed(book, peer, name))
}

/// The event of `peer` taking `name`, if that changes its name.
fn renamed(book: &mut ProfileBook, peer: PeerId, name: String) -> Option<Event> {
    let previous = book.set(peer, name.clone())?;
    Some(Event::PeerRenamed {
        peer,
        label: book.label(&peer),
        name,
        previous,
    })
}

impl Event {
    /// The peer this event is about (author, recipient, or the peer
    /// itself) and the field that shows its name.
    fn peer_name_slot(&mut self) -> Option<(PeerId, &mut String)> {
        match self {
            Event::MessageReceived {
                from, from_name, ..
            }
            | Event::Undecryptable {
                from, from_name, ..
            }
            | Event::RoomInvited {
                from, from_name, ..
            } => Some((*from, from_name)),
            Event::Delivered { to, to_name, .. }
            | Event::Undelivered { to, to_name, .. }
            | Event::Refused { to, to_name, .. } => Some((*to, to_name)),
            Event::PeerOnline { peer, peer_name }
            | Event::PeerOffline { peer, peer_name }
            | Event::ContactRequest { peer, peer_name } => Some((*peer, peer_name)),
            Event::PeerRenamed { .. }
            | Event::RoomJoined { .. }
            | Event::RoomChanged { .. }
            | Event::RoomRemoved { .. }
            | Event::UnreadChanged { .. }
            | Event::Receipt { .. }
            | Event::FileProgress { .. }
            | Event::FileComplete { .. }
            | Event::FileFailed { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> ProfileBook {
        ProfileBook {
            me: PeerId([0x01; 32]),
            names: HashMap::new(),
            hints: HashMap::new(),
            labels: HashMap::new(),
            dirty: true,
        }
    }

    #[test]
    fn hints_show_until_a_signed_name_arrives_and_never_resolve() {
        let (sam, other) = (PeerId([0x3f; 32]), PeerId([0x9c; 32]));
        let mut book = book();
        assert_eq!(book.label(&sam), sam.short());
        book.set_hints([(sam, "Sam"), (other, "kith 9c9c9c9c")].into_iter());
        assert_eq!(book.label(&other), other.short());
        book.set_hints([(sam, "Sam"), (other, "kith")].into_iter());
        assert_eq!(book.label(&sam), "~Sam·3f3f");
        // The default instance name is no hint.
        assert_eq!(book.label(&other), other.short());
        assert!(book.resolve("Sam").is_empty());
        assert!(book.resolve("~Sam·3f3f").is_empty());
        assert_eq!(book.set(sam, "Samuel".to_owned()), Some(None));
        assert_eq!(book.label(&sam), "Samuel");
        assert_eq!(book.resolve("samuel"), vec![sam]);
        // The same name again changes nothing.
        assert_eq!(book.set(sam, "Samuel".to_owned()), None);
        // Another peer signs the same name: both get suffixes.
        assert_eq!(
            book.set(other, "Samuel".to_owned()),
            Some(None),
            "a new name"
        );
        assert_eq!(book.label(&sam), "Samuel·3f3f");
        assert_eq!(book.label(&other), "Samuel·9c9c");
        assert_eq!(book.resolve("Samuel·9c9c"), vec![other]);
        assert_eq!(book.resolve("Samuel").len(), 2);
        // Our own name is shown, never what a typed name means.
        book.set(PeerId([0x01; 32]), "Samuel".to_owned());
        assert_eq!(book.label(&other), "Samuel·9c9c");
        assert_eq!(book.resolve("Samuel").len(), 2);
        assert!(
            book.resolve(&format!("Samuel·{}", &PeerId([0x01; 32]).to_hex()[..4]))
                .is_empty()
        );
    }

    #[test]
    fn events_get_the_name_of_the_peer_they_name() {
        let sam = PeerId([0x3f; 32]);
        let mut book = book();
        book.set(sam, "Sam".to_owned());
        let mut event = Event::PeerOnline {
            peer: sam,
            peer_name: String::new(),
        };
        book.name_event(&mut event);
        assert_eq!(
            event,
            Event::PeerOnline {
                peer: sam,
                peer_name: "Sam".to_owned()
            }
        );
    }
}
