//! Message search: the query and its results, and opening a room at a
//! result (paging its history back until the message is loaded, then
//! scrolling to it).
//!
//! The node's search runs off its network loop and may take a while on a
//! big store; each query carries a number, and answers to an older one
//! are dropped.

use super::{AppState, HISTORY_PAGE, Millis, Request};
use crate::proto::ids::{MessageId, PeerId, RoomId};
use crate::store::Position;

/// Results asked for per search.
pub const SEARCH_LIMIT: usize = 50;
/// History pages asked for while looking for a result's message before
/// giving up (with a note to scroll up).
pub const SEEK_PAGES: usize = 100;
/// Messages per page while looking for a result's message.
pub const SEEK_PAGE: usize = 200;

/// A message that matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchHit {
    pub room: RoomId,
    pub id: MessageId,
    pub from: PeerId,
    /// Wall-clock milliseconds.
    pub timestamp: Millis,
    pub text: String,
    /// Where the page after it starts (the node's `before`).
    pub cursor: Position,
}

/// The search panel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Search {
    /// The panel is shown.
    pub open: bool,
    /// Only this room (`None`: every room).
    pub room: Option<RoomId>,
    /// The text searched for last.
    pub text: String,
    /// The number of the newest query; answers to others are stale.
    pub seq: u64,
    /// A query is under way.
    pub busy: bool,
    /// Newest first.
    pub hits: Vec<SearchHit>,
    /// Why the last search failed, as a sentence.
    pub error: Option<String>,
    /// The last page was full: older matches may follow ("More results").
    pub more: bool,
    /// Where the next page starts: the last result the node gave (blocked
    /// people's included, though not shown).
    next: Option<Position>,
    /// The query under way asks for the next page (its hits are appended).
    appending: bool,
    /// A result being looked for in its room's history.
    seek: Option<Seek>,
    /// The message to scroll to and mark in the open room.
    pub target: Option<MessageId>,
    /// Requests decided while applying updates, for the app to send.
    pub(super) requests: Vec<Request>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Seek {
    room: RoomId,
    id: MessageId,
    pages_left: usize,
}

impl AppState {
    /// Shows the search panel over `room` (`None`: every room).
    pub(super) fn open_search(&mut self, room: Option<RoomId>) {
        self.search.open = true;
        if self.search.room != room {
            self.search.room = room;
            self.search.hits.clear();
            self.search.error = None;
            self.search.more = false;
        }
    }

    pub(super) fn close_search(&mut self) {
        self.search.open = false;
        self.search.busy = false;
        self.search.target = None;
        self.search.seek = None;
    }

    /// A new query: the previous one's answer will be dropped.
    pub(super) fn start_search(&mut self, text: String, room: Option<RoomId>) -> Vec<Request> {
        let text = text.trim().to_owned();
        self.search.open = true;
        self.search.room = room;
        self.search.error = None;
        self.search.seq += 1;
        self.search.more = false;
        self.search.next = None;
        self.search.appending = false;
        if text.is_empty() {
            self.search.text.clear();
            self.search.hits.clear();
            self.search.busy = false;
            return Vec::new();
        }
        self.search.text = text.clone();
        self.search.busy = true;
        vec![Request::Search {
            seq: self.search.seq,
            text,
            room,
            before: None,
            limit: SEARCH_LIMIT,
        }]
    }

    /// The page of results after those shown, appended when it comes.
    pub(super) fn more_results(&mut self) -> Vec<Request> {
        let search = &mut self.search;
        let Some(before) = search.next.filter(|_| search.more && !search.busy) else {
            return Vec::new();
        };
        if search.text.is_empty() {
            return Vec::new();
        }
        search.seq += 1;
        search.busy = true;
        search.appending = true;
        search.error = None;
        vec![Request::Search {
            seq: search.seq,
            text: search.text.clone(),
            room: search.room,
            before: Some(before),
            limit: SEARCH_LIMIT,
        }]
    }

    pub(super) fn search_answered(&mut self, seq: u64, answer: Result<Vec<SearchHit>, String>) {
        if seq != self.search.seq {
            return;
        }
        self.search.busy = false;
        let appending = std::mem::take(&mut self.search.appending);
        match answer {
            Ok(hits) => {
                self.search.more = hits.len() >= SEARCH_LIMIT;
                if let Some(last) = hits.last() {
                    self.search.next = Some(last.cursor);
                }
                if !appending {
                    self.search.hits.clear();
                }
                // A blocked person's messages are never shown; a page never
                // repeats a result already shown.
                for hit in hits {
                    if !self.is_blocked(hit.from)
                        && !self.search.hits.iter().any(|h| h.id == hit.id)
                    {
                        self.search.hits.push(hit);
                    }
                }
                self.search.error = None;
            }
            Err(error) => {
                // A failed next page keeps what is shown (More retries).
                if !appending {
                    self.search.hits.clear();
                    self.search.more = false;
                }
                self.search.error = Some(error);
            }
        }
    }

    /// Opens `room` at message `id`: at once if it is loaded, else once
    /// the pages before it are.
    pub(super) fn open_hit(&mut self, room: RoomId, id: MessageId) -> Vec<Request> {
        let mut requests = self.open_room(room);
        self.search.target = Some(id);
        self.search.seek = Some(Seek {
            room,
            id,
            pages_left: SEEK_PAGES,
        });
        requests.extend(self.continue_seek());
        requests
    }

    /// After a page came (or at once): whether the sought message is
    /// loaded, else the next page to ask for.
    pub(super) fn continue_seek(&mut self) -> Option<Request> {
        let seek = self.search.seek.clone()?;
        if self.open != Some(seek.room) {
            self.search.seek = None;
            return None;
        }
        let history = self.histories.entry(seek.room).or_default();
        if history.messages.iter().any(|m| m.id == Some(seek.id)) {
            self.search.seek = None;
            return None;
        }
        if history.loading {
            // The page under way is checked when it comes.
            return None;
        }
        if history.complete || seek.pages_left == 0 {
            self.search.seek = None;
            self.search.target = None;
            self.toast(
                "That message is not in the loaded history; scroll up to find it.".to_owned(),
                false,
            );
            return None;
        }
        history.loading = true;
        let before = if history.started {
            history.oldest_cursor()
        } else {
            None
        };
        if let Some(seek) = &mut self.search.seek {
            seek.pages_left -= 1;
        }
        Some(Request::LoadHistory {
            room: seek.room,
            before,
            limit: if before.is_some() {
                SEEK_PAGE
            } else {
                HISTORY_PAGE
            },
        })
    }

    /// Requests the state decided on by itself while applying updates
    /// (the next history page while looking for a search result) or as
    /// time passes (the open Network panel's next report).
    pub fn poll_requests(&mut self) -> Vec<Request> {
        let mut requests = std::mem::take(&mut self.search.requests);
        requests.extend(self.network_due());
        requests.append(&mut self.files.requests);
        requests
    }
}

/// A result's text as one line around the first match of `needle`
/// (ignoring case), at most `max` characters, with the match's byte range
/// in it (to highlight) when found.
pub fn snippet(text: &str, needle: &str, max: usize) -> (String, Option<std::ops::Range<usize>>) {
    let flat: Vec<char> = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let fold = |c: char| c.to_lowercase().next().unwrap_or(c);
    let wanted: Vec<char> = needle.trim().chars().map(fold).collect();
    let found = (!wanted.is_empty())
        .then(|| {
            flat.windows(wanted.len())
                .position(|w| w.iter().zip(&wanted).all(|(a, b)| fold(*a) == *b))
        })
        .flatten();
    // Some words before the match, so that it is seen in context.
    let start = match found {
        Some(at) if at > max / 3 => at - max / 3,
        _ => 0,
    };
    let end = (start + max).min(flat.len());
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    let mut range = None;
    for (i, c) in flat.iter().enumerate().take(end).skip(start) {
        if Some(i) == found {
            range = Some(out.len()..out.len());
        }
        out.push(*c);
        if let (Some(at), Some(r)) = (found, &mut range)
            && i + 1 == at + wanted.len()
        {
            r.end = out.len();
        }
    }
    if end < flat.len() {
        out.push('…');
    }
    // A match cut by the end of the snippet is highlighted as far as shown.
    if let Some(r) = &mut range
        && r.end == r.start
    {
        r.end = out.len();
    }
    (out, range)
}

#[cfg(test)]
mod tests {
    use super::super::{MessageInfo, RoomInfo, Update};
    use super::*;

    const KITCHEN: RoomId = RoomId([10; 32]);
    const OPS: RoomId = RoomId([11; 32]);

    fn peer(n: u8) -> PeerId {
        PeerId([n; 32])
    }

    fn id(n: u32) -> MessageId {
        let mut bytes = [0; 32];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        MessageId(bytes)
    }

    fn row(n: u32) -> MessageInfo {
        MessageInfo {
            room: KITCHEN,
            from: peer(1),
            id: id(n),
            timestamp: 1_000 + u64::from(n),
            text: format!("message {n}"),
            cursor: Some(u64::from(n) + 1),
            hlc: 0,
            deliveries: None,
        }
    }

    fn state() -> AppState {
        let mut state = AppState::new(peer(0), String::new(), String::new());
        state.apply(Update::Rooms(
            [(KITCHEN, "kitchen"), (OPS, "ops")]
                .into_iter()
                .map(|(id, name)| RoomInfo {
                    id,
                    name: name.into(),
                    direct: None,
                    admin: None,
                    members: vec![peer(0), peer(1)],
                    muted: None,
                    invited: false,
                })
                .collect(),
        ));
        state
    }

    fn hit(n: u32) -> SearchHit {
        SearchHit {
            room: KITCHEN,
            id: id(n),
            from: peer(1),
            timestamp: 1_000 + u64::from(n),
            text: format!("message {n}"),
            cursor: Position {
                timestamp: 1_000 + u64::from(n),
                id: id(n),
            },
        }
    }

    #[test]
    fn a_search_asks_the_node_and_stale_answers_are_dropped() {
        let mut state = state();
        let first = state.start_search("dinner".into(), None);
        assert_eq!(
            first,
            [Request::Search {
                seq: 1,
                text: "dinner".into(),
                room: None,
                before: None,
                limit: SEARCH_LIMIT,
            }]
        );
        let second = state.start_search("  bread ".into(), Some(KITCHEN));
        assert!(
            matches!(&second[..], [Request::Search { seq: 2, text, room: Some(KITCHEN), .. }] if text == "bread")
        );
        assert!(state.search.busy);
        // The answer to the first comes late: dropped.
        state.apply(Update::SearchAnswer {
            seq: 1,
            answer: Ok(vec![hit(1)]),
        });
        assert!(state.search.busy);
        assert!(state.search.hits.is_empty());
        state.apply(Update::SearchAnswer {
            seq: 2,
            answer: Ok(vec![hit(2)]),
        });
        assert!(!state.search.busy);
        assert_eq!(state.search.hits, [hit(2)]);
        // Nothing to search for: nothing asked, results cleared.
        assert!(state.start_search("   ".into(), None).is_empty());
        assert!(state.search.hits.is_empty());
        let asked = state.start_search("x".into(), None);
        assert_eq!(asked.len(), 1);
        state.apply(Update::SearchAnswer {
            seq: 4,
            answer: Err("Could not search: the node stopped".into()),
        });
        assert_eq!(
            state.search.error.as_deref(),
            Some("Could not search: the node stopped")
        );
    }

    #[test]
    fn more_results_asks_for_the_page_after_the_last_and_appends_it() {
        let mut state = state();
        state.start_search("message".into(), Some(KITCHEN));
        // Nothing more before a full page came.
        assert!(state.more_results().is_empty());
        // Newest first: 199 down to 150; the oldest one is by a blocked
        // person, not shown, yet the next page starts after it.
        state.apply(Update::Blocked(vec![peer(9)]));
        let mut page: Vec<SearchHit> = (150..200).rev().map(hit).collect();
        page[49].from = peer(9);
        state.apply(Update::SearchAnswer {
            seq: 1,
            answer: Ok(page),
        });
        assert_eq!(state.search.hits.len(), 49);
        assert!(state.search.more);
        let asked = state.more_results();
        assert_eq!(
            asked,
            [Request::Search {
                seq: 2,
                text: "message".into(),
                room: Some(KITCHEN),
                before: Some(hit(150).cursor),
                limit: SEARCH_LIMIT,
            }]
        );
        // Asked once while under way.
        assert!(state.more_results().is_empty());
        // A failed page keeps what is shown; More asks again.
        state.apply(Update::SearchAnswer {
            seq: 2,
            answer: Err("Could not search: busy".into()),
        });
        assert_eq!(state.search.hits.len(), 49);
        assert!(state.search.error.is_some());
        assert_eq!(state.more_results().len(), 1);
        // A short page: appended, and nothing more after it.
        state.apply(Update::SearchAnswer {
            seq: 3,
            answer: Ok((140..150).rev().map(hit).collect()),
        });
        assert_eq!(state.search.hits.len(), 59);
        assert_eq!(state.search.hits[49], hit(149));
        assert_eq!(state.search.hits.last(), Some(&hit(140)));
        assert!(!state.search.more);
        assert!(state.more_results().is_empty());
        // A new query starts over.
        state.start_search("other".into(), None);
        state.apply(Update::SearchAnswer {
            seq: 4,
            answer: Ok(vec![hit(1)]),
        });
        assert_eq!(state.search.hits, [hit(1)]);
    }

    #[test]
    fn opening_a_result_pages_back_until_its_message_is_loaded() {
        let mut state = state();
        // The room's newest page is asked for first.
        let requests = state.open_hit(KITCHEN, id(10));
        assert!(matches!(
            requests[0],
            Request::LoadHistory {
                room: KITCHEN,
                before: None,
                ..
            }
        ));
        assert_eq!(state.search.target, Some(id(10)));
        state.apply(Update::History {
            room: KITCHEN,
            messages: (300..350).rev().map(row).collect(),
            complete: false,
        });
        // Not there: the page before, a big one.
        let next = state.poll_requests();
        assert_eq!(
            next,
            [Request::LoadHistory {
                room: KITCHEN,
                before: Some(301),
                limit: SEEK_PAGE,
            }]
        );
        state.apply(Update::History {
            room: KITCHEN,
            messages: (100..300).rev().map(row).collect(),
            complete: false,
        });
        assert_eq!(state.poll_requests().len(), 1);
        state.apply(Update::History {
            room: KITCHEN,
            messages: (0..100).rev().map(row).collect(),
            complete: true,
        });
        // Found: nothing more asked, the view scrolls to it.
        assert!(state.poll_requests().is_empty());
        assert_eq!(state.search.target, Some(id(10)));
        assert_eq!(state.open, Some(KITCHEN));
        // Opening another room forgets the target.
        state.handle_intent(super::super::Intent::OpenRoom(OPS));
        assert_eq!(state.search.target, None);
    }

    #[test]
    fn a_loaded_result_opens_at_once_and_a_missing_one_says_so() {
        let mut state = state();
        state.open_room(KITCHEN);
        state.apply(Update::History {
            room: KITCHEN,
            messages: (0..5).map(row).collect(),
            complete: true,
        });
        assert!(state.open_hit(KITCHEN, id(3)).is_empty());
        assert_eq!(state.search.target, Some(id(3)));
        // Not in a complete history (deleted since): a note, no paging.
        assert!(state.open_hit(KITCHEN, id(99)).is_empty());
        assert_eq!(state.search.target, None);
        assert!(state.toasts.iter().any(|t| t.text.contains("scroll up")));
    }

    #[test]
    fn snippets_show_the_match_in_context() {
        let (text, range) = snippet("Dinner at 8? I'll bring bread", "BRING", 90);
        assert_eq!(&text[range.expect("found")], "bring");
        let long = format!("{} needle {}", "a".repeat(200), "b".repeat(200));
        let (text, range) = snippet(&long, "needle", 60);
        assert!(text.starts_with('…') && text.ends_with('…'), "{text}");
        assert_eq!(&text[range.expect("found")], "needle");
        assert!(text.chars().count() <= 62);
        let (text, range) = snippet("line one\nline two", "absent", 90);
        assert_eq!((text.as_str(), range), ("line one line two", None));
    }
}
