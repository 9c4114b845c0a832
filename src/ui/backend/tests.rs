//! The fake backend answers as the node does; peers map to people.

use super::node::person_info;
use super::*;
use crate::proto::node::direct_room;
use crate::ui::state::{AppState, Intent};

fn no_wake() -> Waker {
    Arc::new(|| {})
}

#[test]
fn the_fake_answers_sends_and_pages_and_wakes_the_window() {
    let woken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = woken.clone();
    let (fake, updates) = FakeBackend::new(Arc::new(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }));
    let me = PeerId([0; 32]);
    let room = RoomId([9; 32]);
    let mut state = AppState::new(me, String::new(), "Me".into());
    state.apply(Update::Tick { now: 10_000 });
    state.apply(Update::Rooms(vec![RoomInfo {
        id: room,
        name: "kitchen".into(),
        direct: None,
        admin: Some(me),
        members: vec![me, PeerId([1; 32])],
        muted: None,
        invited: false,
    }]));
    fake.set_history(
        room,
        (0..120)
            .map(|i| MessageInfo {
                room,
                from: PeerId([1; 32]),
                id: FakeBackend::message_id(1000 + i),
                timestamp: u64::from(i),
                text: format!("m{i}"),
                cursor: None,
                hlc: 0,
                deliveries: None,
            })
            .collect(),
    );
    let drive = |state: &mut AppState, intent| {
        for request in state.handle_intent(intent) {
            fake.submit(request);
        }
        while let Ok(update) = updates.try_recv() {
            state.apply(update);
        }
    };
    drive(&mut state, Intent::OpenRoom(room));
    drive(&mut state, Intent::LoadOlder);
    drive(&mut state, Intent::LoadOlder);
    let history = &state.histories[&room];
    assert!(history.complete);
    let texts: Vec<String> = history.messages.iter().map(|m| m.text.clone()).collect();
    let expected: Vec<String> = (0..120).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, expected);
    drive(&mut state, Intent::Send("hello".into()));
    let last = state.histories[&room].messages.last().expect("sent");
    assert_eq!(last.id, Some(FakeBackend::message_id(1)));
    assert!(woken.load(std::sync::atomic::Ordering::SeqCst) >= 4);
    assert!(matches!(
        fake.take_requests().last(),
        Some(Request::SendRoom { .. })
    ));
    let _ = no_wake();
}

#[test]
fn the_fake_keeps_read_markers_like_the_node() {
    let (fake, updates) = FakeBackend::new(no_wake());
    let me = PeerId([0; 32]);
    let sam = PeerId([1; 32]);
    let room = direct_room(me, sam);
    fake.set_history(
        room,
        (0..3)
            .map(|i| MessageInfo {
                room,
                from: sam,
                id: FakeBackend::message_id(500 + i),
                timestamp: 1_000 + u64::from(i),
                text: format!("away {i}"),
                cursor: None,
                hlc: 0,
                deliveries: None,
            })
            .collect(),
    );
    fake.set_unread(room, 3);
    let drain = |state: &mut AppState| {
        while let Ok(update) = updates.try_recv() {
            state.apply(update);
        }
    };
    assert_eq!(fake.unread(room), Some(3));
    let mut state = AppState::new(me, String::new(), "Me".into());
    drain(&mut state);
    state.apply(Update::Rooms(vec![RoomInfo {
        id: room,
        name: String::new(),
        direct: Some(sam),
        admin: None,
        members: vec![me, sam],
        muted: None,
        invited: false,
    }]));
    state.apply(Update::Unread { room, unread: 3 });
    assert_eq!(state.badge(&state.rooms[&room]), Some(3));
    // Opening asks for the newest page and marks the room read; the
    // fake answers both as the node does.
    for request in state.handle_intent(Intent::OpenRoom(room)) {
        fake.submit(request);
    }
    drain(&mut state);
    assert_eq!(fake.unread(room), Some(0));
    assert_eq!(state.rooms[&room].unread, 0);
    let texts: Vec<&str> = state.histories[&room]
        .messages
        .iter()
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(texts, ["away 0", "away 1", "away 2"]);
    assert_eq!(state.histories[&room].divider, Some(0));
    // Paged by cursor, newest first.
    fake.submit(Request::LoadHistory {
        room,
        before: Some(3),
        limit: 1,
    });
    assert!(matches!(
        updates.try_recv(),
        Ok(Update::History { messages, complete: false, .. })
            if messages.len() == 1 && messages[0].text == "away 1"
    ));
}

#[test]
fn peers_map_to_people_with_relation_name_and_last_seen() {
    let public = crate::proto::crypto::Identity::generate(&mut rand::rng()).public();
    let info = PeerInfo {
        peer: public.peer_id(),
        public: public.clone(),
        addr: None,
        online: false,
        watched: true,
        outbox: 0,
        contact: true,
        request: false,
        muted: Some(Mute::Until(5)),
        display_name: String::new(),
        name: None,
        name_hint: None,
    };
    let seen = daemon::address_book::SeenPeer {
        peer: public.peer_id(),
        name: "Lee".into(),
        addr: None,
        source: None,
        online: false,
        heard_ago: Some(Duration::from_secs(60)),
        sighted_ago: None,
        has_key: true,
        contact: true,
        watched: true,
    };
    let person = person_info(&info, Some(&seen), 100_000);
    assert_eq!(person.name, "Lee");
    // A signed profile name wins over what mDNS says.
    let signed = PeerInfo {
        name: Some("Lee Chen".into()),
        ..info.clone()
    };
    assert_eq!(person_info(&signed, Some(&seen), 0).name, "Lee Chen");
    assert_eq!(person.relation, Relation::Contact);
    assert_eq!(person.last_seen, Some(40_000));
    assert_eq!(person.muted, Some(MuteUntil::Until(5)));
    let nearby = PeerInfo {
        contact: false,
        watched: false,
        addr: Some("10.0.0.2:47474".parse().expect("literal")),
        ..info
    };
    let person = person_info(&nearby, None, 0);
    assert_eq!(person.relation, Relation::Nearby);
    assert!(person.online);
}

/// The registry's key is read by the app's one key parser: a bad one is
/// refused with the same sentences as everywhere else, before any DNS.
#[test]
fn registry_keys_are_checked_before_the_address_is_resolved() {
    let error = |key: &str| {
        resolve_registry("127.0.0.1:47480", key, true).expect_err("a bad key is refused")
    };
    assert!(error("abc").contains("A registry key is 64 hexadecimal characters"));
    assert!(error(&"z".repeat(64)).contains("'z' is not one of them"));
    assert!(error(&crate::ui::settings::tests::not_a_point()).contains("not a valid public key"));
    // A bad key is refused even with an address that cannot resolve.
    assert!(
        resolve_registry("nowhere.invalid:47480", "abc", true)
            .expect_err("bad key")
            .contains("A registry key")
    );
    let key = crate::proto::ids::PeerId(
        crate::proto::crypto::Identity::generate(&mut rand::rng())
            .public()
            .to_bytes(),
    )
    .to_hex();
    let target = resolve_registry("127.0.0.1:47480", &format!(" {key} "), true).expect("valid");
    assert_eq!(crate::proto::ids::PeerId(target.public_key).to_hex(), key);
    assert_eq!(target.addr, "127.0.0.1:47480".parse().unwrap());
}
