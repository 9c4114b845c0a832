//! The rules of the main window, checked on plain data.

use super::*;

const T0: Millis = 1_765_000_000_000; // 2025-12-06 05:46:40 UTC, a Saturday

fn peer(n: u8) -> PeerId {
    PeerId([n; 32])
}

fn room_id(n: u8) -> RoomId {
    RoomId([n; 32])
}

fn msg_id(n: u32) -> MessageId {
    let mut bytes = [0; 32];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    MessageId(bytes)
}

fn person(n: u8, name: &str, relation: Relation, online: bool) -> PersonInfo {
    PersonInfo {
        id: peer(n),
        public_key: String::new(),
        name: name.to_owned(),
        relation,
        online,
        last_seen: None,
        muted: None,
    }
}

fn group(n: u8, name: &str, members: &[u8]) -> RoomInfo {
    RoomInfo {
        id: room_id(n),
        name: name.to_owned(),
        direct: None,
        admin: Some(peer(0)),
        members: members.iter().map(|m| peer(*m)).collect(),
        muted: None,
        invited: false,
    }
}

fn message(room: u8, from: u8, id: u32, at: Millis, text: &str) -> Update {
    Update::Received {
        message: MessageInfo {
            room: room_id(room),
            from: peer(from),
            id: msg_id(id),
            timestamp: at,
            text: text.to_owned(),
            cursor: None,
            hlc: 0,
            deliveries: None,
        },
        muted: false,
    }
}

/// Me (peer 0) with Sam (1), Alex (2) and a room "kitchen" (10) of all three.
fn state() -> AppState {
    let mut state = AppState::new(peer(0), "00".repeat(32), "Me".into());
    state.apply(Update::Tick { now: T0 });
    state.apply(Update::People(vec![
        person(1, "Sam", Relation::Contact, true),
        person(2, "Alex", Relation::Contact, false),
    ]));
    state.apply(Update::Rooms(vec![group(10, "kitchen", &[0, 1, 2])]));
    state
}

#[test]
fn rooms_are_ordered_by_last_activity() {
    let mut state = state();
    state.apply(Update::Rooms(vec![
        group(10, "kitchen", &[0, 1, 2]),
        group(11, "ops", &[0, 1]),
    ]));
    state.apply(message(11, 1, 1, T0 + 1000, "deploy?"));
    state.apply(message(10, 2, 2, T0 + 2000, "dinner at 8?"));
    let names: Vec<String> = state
        .sorted_rooms()
        .iter()
        .map(|r| state.room_name(r))
        .collect();
    assert_eq!(names, ["kitchen", "ops"]);
    state.apply(message(11, 1, 3, T0 + 3000, "done"));
    assert_eq!(state.room_name(state.sorted_rooms()[0]), "ops");
    let ops = &state.rooms[&room_id(11)];
    assert_eq!(ops.preview, Some((peer(1), "done".to_owned())));
    // A refresh of the room list keeps activity and unread counts.
    state.apply(Update::Rooms(vec![
        group(10, "kitchen", &[0, 1, 2]),
        group(11, "ops", &[0, 1]),
    ]));
    assert_eq!(state.room_name(state.sorted_rooms()[0]), "ops");
    assert_eq!(state.rooms[&room_id(11)].unread, 2);
}

#[test]
fn unread_badges_title_and_opening_marks_read() {
    let mut state = state();
    assert_eq!(state.title(), "kith");
    state.apply(message(10, 1, 1, T0, "one"));
    state.apply(message(10, 2, 2, T0 + 1, "two"));
    let kitchen = &state.rooms[&room_id(10)];
    assert_eq!(state.badge(kitchen), Some(2));
    assert_eq!(state.title(), "kith — 2 unread");

    let requests = state.handle_intent(Intent::OpenRoom(room_id(10)));
    assert!(requests.contains(&Request::MarkRead {
        room: room_id(10),
        up_to: None,
    }));
    assert_eq!(state.title(), "kith");
    // The newest page comes (holding nothing more here); the divider sits
    // before the first of the two that were unread.
    state.apply(Update::History {
        room: room_id(10),
        messages: Vec::new(),
        complete: true,
    });
    assert_eq!(state.histories[&room_id(10)].divider, Some(0));
    // While the room is open, new messages are not counted.
    state.apply(message(10, 1, 3, T0 + 2, "three"));
    assert_eq!(state.rooms[&room_id(10)].unread, 0);
    // A message muted at arrival (room or sender muted) is never counted.
    state.handle_intent(Intent::Message(peer(1)));
    state.apply(Update::Received {
        message: MessageInfo {
            room: room_id(10),
            from: peer(1),
            id: msg_id(4),
            timestamp: T0 + 3,
            text: "quiet".into(),
            cursor: None,
            hlc: 0,
            deliveries: None,
        },
        muted: true,
    });
    assert_eq!(state.total_unread(), 0);
}

#[test]
fn muted_rooms_show_until_instead_of_a_number_and_expire() {
    let mut state = state();
    state.apply(message(10, 1, 1, T0, "one"));
    let requests = state.handle_intent(Intent::Mute(Target::Room(room_id(10)), Some(3_600_000)));
    assert_eq!(
        requests,
        [Request::Mute {
            target: Target::Room(room_id(10)),
            until: Some(MuteUntil::Until(T0 + 3_600_000)),
        }]
    );
    let kitchen = &state.rooms[&room_id(10)];
    assert!(state.room_muted(kitchen));
    assert_eq!(state.badge(kitchen), None);
    assert_eq!(state.title(), "kith");
    // T0 is 05:46:40 UTC; in UTC+1 the mute ends at 07:46.
    state.utc_offset_secs = 3600;
    assert_eq!(
        state.mute_label(MuteUntil::Until(T0 + 3_600_000)),
        "until 07:46"
    );
    assert_eq!(
        state.mute_label(MuteUntil::Until(T0 + 7 * 86_400_000)),
        "until Sat 13 Dec"
    );
    assert_eq!(state.mute_label(MuteUntil::Forever), "muted");
    // When the hour has passed the mute no longer holds: the badge is back.
    state.apply(Update::Tick {
        now: T0 + 3_600_000,
    });
    let kitchen = &state.rooms[&room_id(10)];
    assert!(!state.room_muted(kitchen));
    assert_eq!(state.badge(kitchen), Some(1));
    // Unmute clears it at once.
    state.handle_intent(Intent::Mute(Target::Room(room_id(10)), None));
    assert!(state.room_muted(&state.rooms[&room_id(10)]));
    let requests = state.handle_intent(Intent::Unmute(Target::Room(room_id(10))));
    assert_eq!(
        requests,
        [Request::Mute {
            target: Target::Room(room_id(10)),
            until: None,
        }]
    );
    assert!(!state.room_muted(&state.rooms[&room_id(10)]));
}

#[test]
fn people_presence_last_seen_nearby_requests_and_blocked() {
    let mut state = state();
    state.apply(Update::People(vec![
        person(1, "Sam", Relation::Contact, true),
        person(2, "Alex", Relation::Contact, false),
        person(3, "Lee", Relation::Nearby, false),
        person(4, "Pat", Relation::Request, true),
    ]));
    let contacts: Vec<String> = state
        .people_with(Relation::Contact)
        .iter()
        .map(|p| state.display_name(p.info.id))
        .collect();
    // Online first.
    assert_eq!(contacts, ["Sam", "Alex"]);
    assert_eq!(state.people_with(Relation::Nearby).len(), 1);
    assert_eq!(state.people_with(Relation::Request).len(), 1);

    // Sam goes away: "last seen" counts from then.
    state.apply(Update::PeerOffline { peer: peer(1) });
    state.apply(Update::Tick {
        now: T0 + 2 * 3_600_000,
    });
    let sam = &state.people[&peer(1)];
    assert!(!sam.info.online);
    assert_eq!(
        state.last_seen_label(sam).as_deref(),
        Some("last seen 2 h ago")
    );
    // A refresh without a last-seen time keeps ours.
    state.apply(Update::People(vec![person(
        1,
        "Sam",
        Relation::Contact,
        false,
    )]));
    assert_eq!(state.people[&peer(1)].info.last_seen, Some(T0));
    state.apply(Update::PeerOnline { peer: peer(1) });
    assert_eq!(state.last_seen_label(&state.people[&peer(1)]), None);

    // Accepting a request makes a contact; declining blocks.
    state.apply(Update::ContactRequest { peer: peer(4) });
    assert_eq!(
        state.handle_intent(Intent::AcceptRequest(peer(4))),
        [Request::Accept { peer: peer(4) }]
    );
    assert_eq!(state.people[&peer(4)].info.relation, Relation::Contact);
    state.apply(Update::ContactRequest { peer: peer(5) });
    assert_eq!(
        state.handle_intent(Intent::DeclineRequest(peer(5))),
        [Request::Block {
            peer: peer(5),
            blocked: true,
        }]
    );
    assert!(state.is_blocked(peer(5)));
    assert!(state.people_with(Relation::Request).is_empty());
    assert_eq!(state.blocked_people().len(), 1);
    // Blocked stays blocked across a refresh that no longer lists it.
    state.apply(Update::People(vec![person(
        1,
        "Sam",
        Relation::Contact,
        true,
    )]));
    assert!(state.is_blocked(peer(5)));
    state.apply(Update::Blocked(vec![]));
    assert!(!state.is_blocked(peer(5)));
}

#[test]
fn a_blocked_persons_messages_never_appear() {
    let mut state = state();
    state.handle_intent(Intent::Block(peer(1)));
    state.apply(message(10, 1, 1, T0, "spam"));
    assert_eq!(state.total_unread(), 0);
    assert!(
        state
            .histories
            .get(&room_id(10))
            .is_none_or(|h| h.messages.is_empty())
    );
    // And a direct chat with them cannot be written in.
    state.handle_intent(Intent::Message(peer(1)));
    assert_eq!(
        state.cannot_send(direct_room(peer(0), peer(1))),
        Some("You blocked this person.")
    );
    assert!(state.handle_intent(Intent::Send("hi".into())).is_empty());
    assert_eq!(state.toasts.len(), 1);
}

#[test]
fn duplicate_names_get_an_id_suffix() {
    let mut state = state();
    state.apply(Update::People(vec![
        person(0x3f, "Sam", Relation::Contact, true),
        person(0x4a, "Sam", Relation::Contact, true),
        person(2, "Alex", Relation::Contact, true),
        person(5, "", Relation::Nearby, true),
        person(6, "Me", Relation::Nearby, true),
    ]));
    assert_eq!(state.display_name(peer(0x3f)), "Sam·3f3f");
    assert_eq!(state.display_name(peer(0x4a)), "Sam·4a4a");
    assert_eq!(state.display_name(peer(2)), "Alex");
    assert_eq!(state.display_name(peer(5)), peer(5).short());
    // Someone with our own name is told apart from us too.
    assert_eq!(state.display_name(peer(6)), "Me·0606");
    assert_eq!(state.display_name(peer(0)), "You");
}

#[test]
fn own_messages_go_queued_sent_delivered_k_of_n() {
    let mut state = state();
    state.handle_intent(Intent::OpenRoom(room_id(10)));
    let requests = state.handle_intent(Intent::Send("I'll bring bread\n".into()));
    assert_eq!(
        requests,
        [Request::SendRoom {
            local: 1,
            room: room_id(10),
            text: "I'll bring bread".into(),
        }]
    );
    let own = |state: &AppState| {
        state.histories[&room_id(10)]
            .messages
            .last()
            .and_then(|m| m.own.clone())
            .expect("our message")
    };
    assert_eq!(state.delivery_label(&own(&state), true), "queued");
    // A receipt can overtake our node's answer to the send.
    state.apply(Update::Delivered {
        to: peer(1),
        id: msg_id(7),
    });
    state.apply(Update::Sent {
        local: 1,
        id: msg_id(7),
    });
    assert_eq!(
        state.delivery_label(&own(&state), true),
        "delivered to 1 of 2"
    );
    state.apply(Update::Delivered {
        to: peer(2),
        id: msg_id(7),
    });
    assert_eq!(
        state.delivery_label(&own(&state), true),
        "delivered to 2 of 2"
    );
    assert_eq!(state.delivery_label(&own(&state), false), "delivered");

    // A direct message: "sent", then "delivered".
    state.handle_intent(Intent::Message(peer(2)));
    let requests = state.handle_intent(Intent::Send("hi".into()));
    assert_eq!(
        requests,
        [Request::SendDirect {
            local: 2,
            peer: peer(2),
            text: "hi".into(),
        }]
    );
    let direct = direct_room(peer(0), peer(2));
    let own = |state: &AppState| {
        state.histories[&direct]
            .messages
            .last()
            .and_then(|m| m.own.clone())
            .expect("our message")
    };
    state.apply(Update::Sent {
        local: 2,
        id: msg_id(8),
    });
    assert_eq!(state.delivery_label(&own(&state), false), "sent");
    state.apply(Update::Undelivered {
        to: peer(2),
        id: msg_id(8),
    });
    assert_eq!(state.delivery_label(&own(&state), false), "waiting");
    state.apply(Update::Delivered {
        to: peer(2),
        id: msg_id(8),
    });
    assert_eq!(state.delivery_label(&own(&state), false), "delivered");

    // A failed send says so, in the message and in a toast.
    state.handle_intent(Intent::Send("again".into()));
    state.apply(Update::SendFailed {
        local: 3,
        error: "the daemon has stopped".into(),
    });
    assert_eq!(state.delivery_label(&own(&state), false), "not sent");
    assert!(state.toasts.iter().any(|t| t.error));
    // Blank text sends nothing.
    assert!(state.handle_intent(Intent::Send("  \n ".into())).is_empty());
}

fn row(i: u32, from: u8, text: &str) -> MessageInfo {
    MessageInfo {
        room: room_id(10),
        from: peer(from),
        id: msg_id(i),
        timestamp: T0 + u64::from(i),
        text: text.to_owned(),
        cursor: Some(u64::from(i) + 1000),
        hlc: 0,
        deliveries: None,
    }
}

/// A page as the node sends it: newest first.
fn page(ids: std::ops::Range<u32>) -> Vec<MessageInfo> {
    ids.rev().map(|i| row(i, 2, &format!("m{i}"))).collect()
}

#[test]
fn history_pages_load_once_in_order_without_duplicates() {
    let mut state = state();
    // A live message came before the room was ever opened: it says nothing
    // of what is older, so opening still asks for the newest page.
    state.apply(Update::Received {
        message: row(100, 1, "live"),
        muted: false,
    });
    let requests = state.handle_intent(Intent::OpenRoom(room_id(10)));
    assert!(requests.contains(&Request::LoadHistory {
        room: room_id(10),
        before: None,
        limit: HISTORY_PAGE,
    }));
    // While it is under way, no second request.
    assert!(state.handle_intent(Intent::LoadOlder).is_empty());
    // The page overlaps the live message: it is kept once.
    let mut first = page(51..100);
    first.insert(0, row(100, 1, "live"));
    state.apply(Update::History {
        room: room_id(10),
        messages: first,
        complete: false,
    });
    assert_eq!(
        state.handle_intent(Intent::LoadOlder),
        [Request::LoadHistory {
            room: room_id(10),
            before: Some(1051),
            limit: HISTORY_PAGE,
        }]
    );
    state.apply(Update::History {
        room: room_id(10),
        messages: page(0..51),
        complete: true,
    });
    let history = &state.histories[&room_id(10)];
    let texts: Vec<&str> = history.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts.len(), 101);
    assert_eq!(texts[0], "m0");
    assert_eq!(texts[99], "m99");
    assert_eq!(texts[100], "live");
    assert!(state.handle_intent(Intent::LoadOlder).is_empty());
}

#[test]
fn pages_merge_with_live_and_own_messages_by_time_then_id() {
    let mut state = state();
    state.apply(Update::Tick { now: T0 + 50 });
    state.handle_intent(Intent::OpenRoom(room_id(10)));
    // Ours, not yet stored: it stays where it was written.
    state.handle_intent(Intent::Send("mine".into()));
    // A live message, then a page holding it again, an older one with the
    // same time (ordered by id) and one in between.
    state.apply(Update::Received {
        message: row(60, 1, "live"),
        muted: false,
    });
    let mut same_time = row(7, 2, "same time, lower id");
    same_time.timestamp = T0 + 60;
    state.apply(Update::History {
        room: room_id(10),
        messages: vec![
            row(60, 1, "live"),
            same_time,
            row(40, 2, "before mine"),
            row(55, 2, "after mine"),
        ],
        complete: true,
    });
    let history = &state.histories[&room_id(10)];
    let texts: Vec<&str> = history.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "before mine",
            "mine",
            "after mine",
            "same time, lower id",
            "live"
        ]
    );
    // The live message gained nothing twice and kept its cursor.
    assert_eq!(
        history
            .messages
            .iter()
            .filter(|m| m.id == Some(msg_id(60)))
            .count(),
        1
    );
}

#[test]
fn history_rows_show_unreadable_messages_and_our_delivery_state() {
    let mut state = state();
    state.handle_intent(Intent::OpenRoom(room_id(10)));
    let mut unreadable = row(1, 2, UNREADABLE);
    unreadable.text = UNREADABLE.to_owned();
    let mut ours = row(2, 0, "ours");
    ours.deliveries = Some(vec![
        (peer(1), RowDelivery::Stored),
        (peer(2), RowDelivery::Queued),
    ]);
    let mut queued = row(3, 0, "queued");
    queued.deliveries = Some(vec![
        (peer(1), RowDelivery::Queued),
        (peer(2), RowDelivery::Queued),
    ]);
    state.apply(Update::History {
        room: room_id(10),
        messages: vec![queued, ours, unreadable],
        complete: true,
    });
    let messages = &state.histories[&room_id(10)].messages;
    assert_eq!(messages[0].text, "(unreadable message)");
    let own = |i: usize| messages[i].own.clone().expect("ours");
    assert_eq!(state.delivery_label(&own(1), true), "delivered to 1 of 2");
    assert_eq!(state.delivery_label(&own(2), true), "waiting");
    // The key came: the same message, now readable, replaces its text.
    state.apply(Update::Received {
        message: row(1, 2, "now readable"),
        muted: false,
    });
    let messages = &state.histories[&room_id(10)].messages;
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[0].text, "now readable");
    // A receipt from the node: delivered to both.
    state.apply(Update::Receipt {
        id: msg_id(3),
        delivered: 2,
        of: 2,
    });
    let own = state.histories[&room_id(10)].messages[2]
        .own
        .clone()
        .expect("ours");
    assert_eq!(state.delivery_label(&own, true), "delivered to 2 of 2");
}

#[test]
fn receipts_for_a_message_not_yet_acknowledged_are_kept() {
    let mut state = state();
    state.handle_intent(Intent::OpenRoom(room_id(10)));
    state.handle_intent(Intent::Send("hello".into()));
    state.apply(Update::Receipt {
        id: msg_id(9),
        delivered: 1,
        of: 2,
    });
    state.apply(Update::Sent {
        local: 1,
        id: msg_id(9),
    });
    let own = state.histories[&room_id(10)]
        .messages
        .last()
        .and_then(|m| m.own.clone())
        .expect("ours");
    assert_eq!(state.delivery_label(&own, true), "delivered to 1 of 2");
}

#[test]
fn the_nodes_unread_counts_replace_the_windows_own() {
    let mut state = state();
    state.apply(Update::Unread {
        room: room_id(10),
        unread: 3,
    });
    assert_eq!(state.badge(&state.rooms[&room_id(10)]), Some(3));
    // A message after that is counted by the node, not twice here.
    state.apply(Update::Received {
        message: row(5, 1, "new"),
        muted: false,
    });
    assert_eq!(state.rooms[&room_id(10)].unread, 3);
    state.apply(Update::Unread {
        room: room_id(10),
        unread: 4,
    });
    assert_eq!(state.title(), "kith — 4 unread");
    // Opening asks for the newest page and marks everything read (the
    // page is not in yet); the divider goes above the 4 unread once it is.
    let requests = state.handle_intent(Intent::OpenRoom(room_id(10)));
    assert!(requests.contains(&Request::MarkRead {
        room: room_id(10),
        up_to: None,
    }));
    assert_eq!(state.rooms[&room_id(10)].unread, 0);
    state.apply(Update::History {
        room: room_id(10),
        messages: page(0..6),
        complete: true,
    });
    let history = &state.histories[&room_id(10)];
    assert_eq!(history.divider, Some(2));
    // Once loaded, marking read goes up to the newest cursor shown.
    state.handle_intent(Intent::OpenRoom(room_id(11)));
    state.apply(Update::Unread {
        room: room_id(10),
        unread: 1,
    });
    assert_eq!(
        state.handle_intent(Intent::OpenRoom(room_id(10))),
        [Request::MarkRead {
            room: room_id(10),
            up_to: Some(1005),
        }]
    );
    // A muted room shows no number, whatever the node counts.
    state.apply(Update::Unread {
        room: room_id(10),
        unread: 2,
    });
    state.handle_intent(Intent::Mute(Target::Room(room_id(10)), Some(3_600_000)));
    assert_eq!(state.badge(&state.rooms[&room_id(10)]), None);
}

#[test]
fn opening_an_empty_room_asks_for_the_newest_page() {
    let mut state = state();
    assert_eq!(
        state.handle_intent(Intent::OpenRoom(room_id(10))),
        [Request::LoadHistory {
            room: room_id(10),
            before: None,
            limit: HISTORY_PAGE,
        }]
    );
    assert!(
        state
            .handle_intent(Intent::OpenRoom(room_id(10)))
            .is_empty()
    );
}

#[test]
fn dialogs_new_room_invitations_and_leaving() {
    let mut state = state();
    state.handle_intent(Intent::OpenDialog(Dialog::NewRoom));
    assert_eq!(state.dialog, Some(Dialog::NewRoom));
    let requests = state.handle_intent(Intent::CreateRoom {
        name: "trip".into(),
        members: vec![peer(1), peer(2)],
    });
    assert_eq!(
        requests,
        [Request::CreateRoom {
            name: "trip".into(),
            members: vec![peer(1), peer(2)],
        }]
    );
    assert_eq!(state.dialog, None);
    state.apply(Update::RoomCreated {
        room: room_id(12),
        name: "trip".into(),
    });
    assert_eq!(state.open, Some(room_id(12)));
    assert_eq!(state.room_name(state.sorted_rooms()[0]), "trip");

    // An invitation shows up as a room that cannot be written in yet.
    state.apply(Update::Invited {
        room: room_id(13),
        name: "book club".into(),
        from: peer(1),
    });
    assert!(
        state
            .toasts
            .iter()
            .any(|t| t.text == "Sam invites you to book club")
    );
    assert_eq!(
        state.cannot_send(room_id(13)),
        Some("Accept the invitation to write here.")
    );
    assert_eq!(
        state.handle_intent(Intent::AnswerInvite {
            room: room_id(13),
            accept: true,
        }),
        [Request::AnswerInvite {
            room: room_id(13),
            accept: true,
        }]
    );
    assert_eq!(state.cannot_send(room_id(13)), None);

    // Removed: the history stays, sending is refused with a reason.
    state.apply(Update::Removed { room: room_id(10) });
    state.apply(Update::Rooms(vec![]));
    assert_eq!(
        state.cannot_send(room_id(10)),
        Some("You were removed from this room.")
    );
    assert_eq!(
        state.handle_intent(Intent::Leave(room_id(12))),
        [Request::Leave { room: room_id(12) }]
    );
    assert!(!state.rooms.contains_key(&room_id(12)));
    assert_eq!(state.open, None);
}

#[test]
fn toasts_fade_and_are_bounded() {
    let mut state = state();
    state.apply(Update::Error("the daemon did not answer in time".into()));
    assert_eq!(state.toasts.len(), 1);
    state.apply(Update::Tick {
        now: T0 + TOAST_MILLIS - 1,
    });
    assert_eq!(state.toasts.len(), 1);
    state.apply(Update::Tick {
        now: T0 + TOAST_MILLIS,
    });
    assert!(state.toasts.is_empty());
    for i in 0..20 {
        state.apply(Update::Error(format!("e{i}")));
    }
    assert_eq!(state.toasts.len(), 5);
    assert_eq!(state.toasts[4].text, "e19");
    let id = state.toasts[0].id;
    state.handle_intent(Intent::DismissToast(id));
    assert_eq!(state.toasts.len(), 4);
}

#[test]
fn dates_and_clock_times() {
    let mut state = state();
    assert_eq!(state.clock(T0), "05:46");
    assert_eq!(state.long_date(T0), "Saturday 6 Dec 2025");
    state.utc_offset_secs = -6 * 3600;
    assert_eq!(state.clock(T0), "23:46");
    assert_eq!(state.long_date(T0), "Friday 5 Dec 2025");
    assert_eq!(state.short_date(0), "Wed 31 Dec");
    assert_eq!(state.local_day(T0) + 1, state.local_day(T0 + 6 * 3_600_000));
}

#[test]
fn empty_direct_chats_are_listed_only_while_open() {
    let mut state = state();
    let alex = direct_room(peer(0), peer(2));
    state.apply(Update::Rooms(vec![
        group(10, "kitchen", &[0, 1, 2]),
        RoomInfo {
            id: alex,
            name: "Alex".into(),
            direct: Some(peer(2)),
            admin: None,
            members: vec![peer(0), peer(2)],
            muted: None,
            invited: false,
        },
    ]));
    let listed = |state: &AppState| -> Vec<String> {
        state
            .sorted_rooms()
            .iter()
            .map(|r| state.room_name(r))
            .collect()
    };
    assert_eq!(listed(&state), ["kitchen"]);
    state.handle_intent(Intent::Message(peer(2)));
    assert_eq!(listed(&state), ["Alex", "kitchen"]);
    state.handle_intent(Intent::OpenRoom(room_id(10)));
    assert_eq!(listed(&state), ["kitchen"]);
    state.apply(Update::Received {
        message: MessageInfo {
            room: alex,
            from: peer(2),
            id: msg_id(1),
            timestamp: T0,
            text: "hi".into(),
            cursor: None,
            hlc: 0,
            deliveries: None,
        },
        muted: false,
    });
    assert_eq!(listed(&state), ["Alex", "kitchen"]);
}

#[test]
fn a_first_direct_message_creates_the_chat_named_after_the_sender() {
    let mut state = state();
    let room = direct_room(peer(0), peer(2));
    state.apply(Update::Received {
        message: MessageInfo {
            room,
            from: peer(2),
            id: msg_id(1),
            timestamp: T0,
            text: "hello\nsecond line".into(),
            cursor: None,
            hlc: 0,
            deliveries: None,
        },
        muted: false,
    });
    let chat = &state.rooms[&room];
    assert_eq!(state.room_name(chat), "Alex");
    assert_eq!(chat.preview, Some((peer(2), "hello…".to_owned())));
    assert_eq!(state.badge(chat), Some(1));
}

#[test]
fn messages_of_the_same_millisecond_keep_their_hybrid_clock_order() {
    let mut state = state();
    state.handle_intent(Intent::OpenRoom(room_id(10)));
    // Written in this order within one millisecond; the ids sort the
    // other way.
    let written = |id: u32, counter: u64, text: &str| {
        let mut m = row(id, 1, text);
        m.timestamp = T0;
        m.hlc = (T0 << 16) | counter;
        m
    };
    state.apply(Update::History {
        room: room_id(10),
        messages: vec![written(1, 2, "third"), written(3, 0, "first")],
        complete: true,
    });
    state.apply(Update::Received {
        message: written(2, 1, "second"),
        muted: false,
    });
    let texts: Vec<&str> = state.histories[&room_id(10)]
        .messages
        .iter()
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(texts, ["first", "second", "third"]);
}

#[test]
fn an_invitation_asks_for_no_history() {
    let mut state = state();
    state.apply(Update::Invited {
        room: room_id(20),
        name: "trip".into(),
        from: peer(1),
    });
    let requests = state.handle_intent(Intent::OpenRoom(room_id(20)));
    assert!(
        !requests
            .iter()
            .any(|r| matches!(r, Request::LoadHistory { .. }))
    );
    assert!(state.handle_intent(Intent::LoadOlder).is_empty());
}
