//! A room's loaded history: messages in order, our own messages' delivery,
//! pages merged as they come.

use super::{MessageInfo, Millis, RowDelivery, UNREADABLE};
use crate::proto::ids::{MessageId, PeerId};
use std::collections::{BTreeSet, HashSet};

/// How far one of our messages got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Not yet stored by our node.
    Queued,
    /// Stored and handed to the network; `delivered` holds who stored it.
    Sent {
        delivered: BTreeSet<PeerId>,
        /// Some recipient is unreachable for now; it stays queued.
        waiting: bool,
    },
    Failed(String),
}

/// Our own message's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Own {
    pub local: u64,
    pub delivery: Delivery,
    /// Who it was sent to (everyone else in the room when written).
    pub recipients: Vec<PeerId>,
    /// The node's latest "delivered to k of n" (from a receipt); counts
    /// over `delivered` when known.
    pub receipt: Option<(usize, usize)>,
}

/// A message in a room's loaded history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `None` while our own message is queued.
    pub id: Option<MessageId>,
    pub from: PeerId,
    pub timestamp: Millis,
    pub text: String,
    pub own: Option<Own>,
    /// Where the node stored it, when known.
    pub cursor: Option<u64>,
    /// Its hybrid-logical-clock timestamp (0: not known).
    pub hlc: u64,
}

impl Message {
    /// Whether it is shown above `other` (or at the same place): by time,
    /// then hybrid clock, then id; a message without id (ours, queued) by
    /// time alone.
    fn not_after(&self, other: &Message) -> bool {
        match (self.id, other.id) {
            (Some(a), Some(b)) => (self.timestamp, self.hlc, a) <= (other.timestamp, other.hlc, b),
            _ => self.timestamp <= other.timestamp,
        }
    }
}

/// The loaded part of a room's history, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    pub messages: Vec<Message>,
    /// Nothing older exists.
    pub complete: bool,
    /// A page request is under way.
    pub loading: bool,
    /// Index of the first message that was unread when the room was opened.
    pub divider: Option<usize>,
    /// The newest page was asked for (live messages alone do not make a
    /// loaded history).
    pub started: bool,
    /// Unread when the room was opened before its first page came (to
    /// place the divider then).
    pub(super) unread_at_open: usize,
    pub(super) ids: HashSet<MessageId>,
}

impl History {
    pub(super) fn push(&mut self, message: Message) -> bool {
        if let Some(id) = message.id
            && !self.ids.insert(id)
        {
            // Its key came: the unreadable message gets its text.
            if let Some(shown) = self
                .messages
                .iter_mut()
                .find(|m| m.id == Some(id) && m.text == UNREADABLE)
            {
                shown.text = message.text;
                shown.cursor = shown.cursor.or(message.cursor);
            }
            return false;
        }
        // Live messages arrive in order; one with an older timestamp (a
        // forwarded one) is placed by time.
        let at = self.place(&message);
        self.insert_at(at, message);
        true
    }

    /// Where `message` goes: after every message not after it.
    pub(super) fn place(&self, message: &Message) -> usize {
        self.messages
            .iter()
            .rposition(|m| m.not_after(message))
            .map_or(0, |i| i + 1)
    }

    pub(super) fn insert_at(&mut self, at: usize, message: Message) {
        if let Some(divider) = &mut self.divider
            && at < *divider
        {
            *divider += 1;
        }
        self.messages.insert(at, message);
    }

    /// Merges a page from the node: each message not shown yet goes to
    /// its place in (timestamp, id) order; one already shown (live, or our
    /// own once sent) only gains its cursor. Returns how many were added.
    pub(super) fn merge(&mut self, page: Vec<MessageInfo>, me: PeerId) -> usize {
        let mut page = page;
        page.sort_by_key(|m| (m.timestamp, m.hlc, m.id));
        let mut added = 0;
        for info in page {
            if !self.ids.insert(info.id) {
                if let Some(shown) = self.messages.iter_mut().find(|m| m.id == Some(info.id)) {
                    shown.cursor = shown.cursor.or(info.cursor);
                }
                continue;
            }
            let own = info.deliveries.map(|deliveries| {
                let recipients: Vec<PeerId> = deliveries.iter().map(|(p, _)| *p).collect();
                let delivered: BTreeSet<PeerId> = deliveries
                    .iter()
                    .filter(|(_, d)| *d == RowDelivery::Stored)
                    .map(|(p, _)| *p)
                    .collect();
                let waiting = deliveries.iter().any(|(_, d)| *d == RowDelivery::Queued);
                Own {
                    local: 0,
                    delivery: Delivery::Sent { delivered, waiting },
                    recipients,
                    receipt: None,
                }
            });
            let own = own.or_else(|| {
                // Ours, written from another device or before the list of
                // recipients was kept.
                (info.from == me).then(|| Own {
                    local: 0,
                    delivery: Delivery::Sent {
                        delivered: BTreeSet::new(),
                        waiting: false,
                    },
                    recipients: Vec::new(),
                    receipt: None,
                })
            });
            let message = Message {
                id: Some(info.id),
                from: info.from,
                timestamp: info.timestamp,
                text: info.text,
                own,
                cursor: info.cursor,
                hlc: info.hlc,
            };
            let at = self.place(&message);
            self.insert_at(at, message);
            added += 1;
        }
        added
    }

    /// The oldest loaded message's cursor (where the next page ends).
    pub fn oldest_cursor(&self) -> Option<u64> {
        self.messages.iter().filter_map(|m| m.cursor).min()
    }

    /// The newest loaded message's cursor (how far it has been read).
    pub fn newest_cursor(&self) -> Option<u64> {
        self.messages.iter().filter_map(|m| m.cursor).max()
    }

    /// The oldest loaded message's id (where the next page ends).
    pub fn oldest_id(&self) -> Option<MessageId> {
        self.messages.iter().find_map(|m| m.id)
    }
}
