//! The main window driven headless with egui_kittest over a fake backend:
//! widgets are found by their accessible labels, clicked and typed into as
//! a person would, and the result is checked on `AppState` and on the
//! requests the window sent to the node.
#![cfg(feature = "gui")]

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use kith::proto::ids::{MessageId, PeerId, RoomId};
use kith::proto::node::direct_room;
use kith::ui::KithApp;
use kith::ui::backend::{FakeBackend, FakeLauncher, Me};
use kith::ui::notify::Recorder;
use kith::ui::state::{
    MessageInfo, MuteUntil, PersonInfo, Relation, Request, RoomInfo, Target, Update,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

fn peer(n: u8) -> PeerId {
    PeerId([n; 32])
}

/// The window's clock: Tuesday 1 December 2026, 18:00 UTC.
const NOW: u64 = 1_796_148_000_000;

const KITCHEN: RoomId = RoomId([10; 32]);
const OPS: RoomId = RoomId([11; 32]);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kith-ui-app-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn person(n: u8, name: &str, relation: Relation, online: bool) -> PersonInfo {
    PersonInfo {
        id: peer(n),
        public_key: String::new(),
        name: name.to_owned(),
        relation,
        online,
        last_seen: (!online).then_some(NOW - 2 * 3_600_000),
        muted: None,
    }
}

fn group(id: RoomId, name: &str, members: &[u8]) -> RoomInfo {
    RoomInfo {
        id,
        name: name.to_owned(),
        direct: None,
        admin: Some(peer(0)),
        members: members.iter().map(|m| peer(*m)).collect(),
        muted: None,
        invited: false,
    }
}

fn received(room: RoomId, from: u8, n: u8, minutes_ago: u64, text: &str) -> Update {
    Update::Received {
        message: MessageInfo {
            room,
            from: peer(from),
            id: MessageId([n; 32]),
            timestamp: NOW - minutes_ago * 60_000,
            text: text.to_owned(),
            cursor: None,
            hlc: 0,
            deliveries: None,
        },
        muted: false,
    }
}

struct App {
    harness: Harness<'static, KithApp>,
    fake: FakeBackend,
}

impl App {
    fn state(&self) -> &kith::ui::state::AppState {
        self.harness.state().state().expect("unlocked")
    }

    fn requests(&self) -> Vec<Request> {
        self.fake.take_requests()
    }
}

/// Creates an account through the first screen, then fills the fake node
/// with people, two rooms and three messages.
fn unlocked_app(name: &str) -> App {
    unlocked_app_with(name, |app| app)
}

/// [`unlocked_app`], the app first changed by `setup` (a clock, a notifier).
fn unlocked_app_with(name: &str, setup: impl FnOnce(KithApp) -> KithApp) -> App {
    let dir = temp_dir(name);
    let launcher = FakeLauncher::new(Me {
        peer: peer(0),
        public_key: "00".repeat(32),
        name: String::new(),
    });
    let app = setup(KithApp::new(dir, launcher.clone()).with_clock(Arc::new(|| NOW), 0));
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1000.0, 660.0))
        // Scrolling animates over a few frames.
        .with_max_steps(32)
        .build_ui_state(|ui, app: &mut KithApp| app.show(ui), app);
    harness.get_by_label("Welcome to kith");
    for (label, text) in [
        ("Your name", "Robin"),
        ("Passphrase", "four random words here"),
        ("Passphrase again", "four random words here"),
    ] {
        harness.get_by_label(label).focus();
        harness.run();
        harness.get_by_label(label).type_text(text);
        harness.run();
    }
    harness.get_by_label("Strong.");
    harness.get_by_label("Create account").click();
    harness.step();
    harness.state_mut().wait_for_worker(Duration::from_secs(60));
    harness.run();
    assert_eq!(harness.state().state().expect("unlocked").my_name, "Robin");
    let fake = launcher.backend().expect("the fake was handed out");
    fake.push(Update::People(vec![
        person(1, "Sam", Relation::Contact, true),
        person(2, "Alex", Relation::Contact, false),
        person(3, "Lee", Relation::Nearby, true),
        person(4, "Pat", Relation::Request, true),
    ]));
    fake.push(Update::Rooms(vec![
        group(KITCHEN, "kitchen", &[0, 1, 2]),
        group(OPS, "ops", &[0, 1]),
    ]));
    fake.push(received(OPS, 1, 1, 30, "deploy at 6?"));
    fake.push(received(KITCHEN, 1, 2, 3, "dinner at 8?"));
    fake.push(received(KITCHEN, 2, 3, 2, "works for me"));
    harness.run();
    App { harness, fake }
}

#[test]
fn sidebar_shows_rooms_by_activity_people_nearby_and_requests() {
    let app = unlocked_app("sidebar");
    let h = &app.harness;
    h.get_by_label("# kitchen");
    h.get_by_label("# ops");
    h.get_by_label("Sam");
    h.get_by_label("last seen 2 h ago");
    h.get_by_label("Lee");
    h.get_by_label("Pat wrote to you");
    let state = app.state();
    assert_eq!(state.room_name(state.sorted_rooms()[0]), "kitchen");
    assert_eq!(state.total_unread(), 3);
    assert_eq!(state.title(), "kith — 3 unread");
    h.get_by_label("2");
    h.get_by_label("Alex: works for me");
}

#[test]
fn open_a_room_read_it_and_send_with_enter() {
    let mut app = unlocked_app("send");
    app.harness.get_by_label("# kitchen").click();
    app.harness.run();
    assert_eq!(app.state().open, Some(KITCHEN));
    assert_eq!(app.state().total_unread(), 1);
    assert!(app.requests().contains(&Request::MarkRead {
        room: KITCHEN,
        up_to: None,
    }));
    app.harness.get_by_label("new messages");
    app.harness.get_by_label("dinner at 8?");

    app.harness.get_by_label("Write a message").focus();
    app.harness.run();
    app.harness
        .get_by_label("Write a message")
        .type_text("I'll bring");
    // Shift+Enter: a new line, nothing sent.
    app.harness
        .key_press_modifiers(egui::Modifiers::SHIFT, egui::Key::Enter);
    app.harness.run();
    app.harness
        .get_by_label("Write a message")
        .type_text("bread");
    app.harness.run();
    assert!(
        !app.requests()
            .iter()
            .any(|r| matches!(r, Request::SendRoom { .. }))
    );
    app.harness.key_press(egui::Key::Enter);
    app.harness.run();
    let sent: Vec<Request> = app
        .requests()
        .into_iter()
        .filter(|r| matches!(r, Request::SendRoom { .. }))
        .collect();
    assert_eq!(
        sent,
        [Request::SendRoom {
            local: 1,
            room: KITCHEN,
            text: "I'll bring\nbread".into(),
        }]
    );
    // The fake stored it at once: "sent"; then Sam's receipt.
    app.harness.get_by_label_contains("sent");
    app.fake.push(Update::Delivered {
        to: peer(1),
        id: FakeBackend::message_id(1),
    });
    app.harness.run();
    app.harness.get_by_label_contains("delivered to 1 of 2");
    // The composer is empty again.
    assert_eq!(
        app.harness
            .get_by_label("Write a message")
            .value()
            .as_deref(),
        Some("")
    );
}

#[test]
fn mute_a_room_from_its_context_menu_then_unmute() {
    let mut app = unlocked_app("mute");
    app.harness.get_by_label("# ops").click_secondary();
    app.harness.run();
    app.harness.get_by_label("Mute").hover();
    app.harness.run();
    app.harness.get_by_label("1 hour").click();
    app.harness.run();
    let requests = app.requests();
    let Some(Request::Mute {
        target: Target::Room(room),
        until: Some(MuteUntil::Until(end)),
    }) = requests.last()
    else {
        panic!("no mute request: {requests:?}");
    };
    assert_eq!(*room, OPS);
    assert_eq!(*end, NOW + 3_600_000);
    // No badge, "until HH:MM" instead; the title counts kitchen only.
    let state = app.state();
    assert_eq!(state.badge(&state.rooms[&OPS]), None);
    assert_eq!(state.total_unread(), 2);
    app.harness.get_by_label("🔕 until 19:00");

    app.harness.get_by_label("# ops").click_secondary();
    app.harness.run();
    app.harness.get_by_label("Unmute").click();
    app.harness.run();
    assert_eq!(
        app.requests().last(),
        Some(&Request::Mute {
            target: Target::Room(OPS),
            until: None,
        })
    );
    assert_eq!(app.state().total_unread(), 3);
}

#[test]
fn message_someone_nearby_accept_a_request_and_block_from_the_menu() {
    let mut app = unlocked_app("people");
    app.harness.get_by_label("Message").click();
    app.harness.run();
    let lee = direct_room(peer(0), peer(3));
    assert_eq!(app.state().open, Some(lee));
    // In the sidebar and as the chat's heading.
    assert_eq!(app.harness.get_all_by_label("@ Lee").count(), 2);

    app.harness.get_by_label("Accept").click();
    app.harness.run();
    assert!(app.requests().contains(&Request::Accept { peer: peer(4) }));
    assert!(app.harness.query_by_label("Pat wrote to you").is_none());

    app.harness.get_by_label("Sam").click_secondary();
    app.harness.run();
    app.harness.get_by_label("Block").click();
    app.harness.run();
    assert!(app.requests().contains(&Request::Block {
        peer: peer(1),
        blocked: true,
    }));
    assert!(app.state().is_blocked(peer(1)));
    // Sam is now under the collapsed "Blocked" section, not in People.
    app.harness.get_by_label("Blocked (1)");
    // Sam's next message never appears.
    app.fake.push(received(KITCHEN, 1, 9, 0, "still here"));
    app.harness.run();
    assert!(app.harness.query_by_label("still here").is_none());
    assert_eq!(app.state().total_unread(), 3);
}

#[test]
fn a_contact_request_is_accepted_from_the_banner_in_their_chat() {
    let mut app = unlocked_app("request");
    let pat = direct_room(peer(0), peer(4));
    app.fake
        .push(received(pat, 4, 20, 1, "hi, I'm Pat from 3rd floor"));
    app.fake.push(Update::ContactRequest { peer: peer(4) });
    app.harness.run();
    app.harness.get_by_label("@ Pat").click();
    app.harness.run();
    app.harness.get_by_label("hi, I'm Pat from 3rd floor");
    app.harness.get_by_label("Accept request").click();
    app.harness.run();
    assert!(app.requests().contains(&Request::Accept { peer: peer(4) }));
    assert_eq!(
        app.state().people[&peer(4)].info.relation,
        Relation::Contact
    );
    assert!(app.harness.query_by_label("Accept request").is_none());
}

#[test]
fn new_room_dialog_creates_a_room_with_picked_members() {
    let mut app = unlocked_app("new-room");
    app.harness.get_by_label("+ Room").click();
    app.harness.run();
    app.harness.get_by_label("Room name").focus();
    app.harness.run();
    app.harness.get_by_label("Room name").type_text("trip");
    app.harness.run();
    let checkbox = egui::accesskit::Role::CheckBox;
    app.harness.get_by_role_and_label(checkbox, "Sam").click();
    app.harness.get_by_role_and_label(checkbox, "Lee").click();
    app.harness.run();
    app.harness.get_by_label("Create room").click();
    app.harness.run();
    let requests = app.requests();
    assert!(
        requests.contains(&Request::CreateRoom {
            name: "trip".into(),
            members: vec![peer(1), peer(3)],
        }),
        "{requests:?}"
    );
    // The fake created it; the window opened it.
    let room = FakeBackend::room_id("trip");
    assert_eq!(app.state().open, Some(room));
    assert!(app.state().dialog.is_none());
    assert_eq!(app.harness.get_all_by_label("# trip").count(), 2);
}

#[test]
fn errors_are_toasts_and_the_title_counts_unread() {
    let mut app = unlocked_app("toast");
    app.fake.push(Update::Error(
        "Could not leave the room: the daemon has stopped".into(),
    ));
    app.harness.run();
    app.harness
        .get_by_label("Could not leave the room: the daemon has stopped");
    assert_eq!(app.state().title(), "kith — 3 unread");
}

#[test]
fn scrolling_to_the_top_loads_every_page_in_order() {
    let mut app = unlocked_app("history");
    let history: Vec<MessageInfo> = (0..500u32)
        .map(|i| {
            let mut id = [7; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            MessageInfo {
                room: OPS,
                from: peer(1 + (i % 2) as u8),
                id: MessageId(id),
                timestamp: NOW - 3_600_000 + u64::from(i),
                text: format!("message {i}"),
                cursor: None,
                hlc: 0,
                deliveries: None,
            }
        })
        .collect();
    app.fake.set_history(OPS, history);
    app.harness.get_by_label("# ops").click();
    app.harness.run();
    // Each time the top shows, the page before is loaded.
    // Only the rows in view are laid out.
    assert!(app.harness.get_all_by_label_contains("message ").count() < 30);
    // Wheel up over the chat until the beginning.
    for _ in 0..200 {
        if app.state().histories[&OPS].complete {
            break;
        }
        // The middle of the chat area.
        app.harness
            .event(egui::Event::PointerMoved(egui::pos2(650.0, 300.0)));
        app.harness.event(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Point,
            delta: egui::vec2(0.0, 2000.0),
            phase: egui::TouchPhase::Move,
            source: egui::MouseWheelSource::Wheel,
            modifiers: egui::Modifiers::NONE,
        });
        // Wheel scrolling animates over a few dozen frames.
        app.harness.run_steps(60);
    }
    let loaded = &app.state().histories[&OPS];
    assert!(loaded.complete);
    let texts: Vec<&str> = loaded.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts.len(), 501);
    assert_eq!(texts[0], "message 0");
    assert_eq!(texts[499], "message 499");
    assert!(texts.contains(&"deploy at 6?"));
}

/// Images of the main screens, drawn by wgpu (a software renderer where
/// there is no GPU) and compared with those under `tests/snapshots`
/// (`UPDATE_SNAPSHOTS=1` writes them anew; look at them before committing).
#[test]
fn snapshot_of_the_first_screen() {
    let dir = temp_dir("snapshot-unlock");
    let launcher = FakeLauncher::new(Me {
        peer: peer(0),
        public_key: "00".repeat(32),
        name: String::new(),
    });
    let mut unlock = Harness::builder()
        .with_size(egui::vec2(1000.0, 660.0))
        .build_ui_state(
            |ui, app: &mut KithApp| app.show(ui),
            KithApp::new(dir, launcher).with_clock(Arc::new(|| NOW), 0),
        );
    unlock.run();
    unlock.snapshot("unlock");
}

#[test]
fn snapshots_of_the_main_window_and_new_room_dialog() {
    let mut app = unlocked_app("snapshot");
    app.fake.push(Update::People(vec![
        person(1, "Sam", Relation::Contact, true),
        person(5, "Sam", Relation::Contact, true),
        person(2, "Alex", Relation::Contact, false),
        person(3, "Lee", Relation::Nearby, true),
        person(4, "Pat", Relation::Request, true),
    ]));
    app.harness.run();
    app.harness.get_by_label("# kitchen").click();
    app.harness.run();
    app.harness.get_by_label("Write a message").focus();
    app.harness.run();
    app.harness
        .get_by_label("Write a message")
        .type_text("I'll bring bread");
    app.harness.key_press(egui::Key::Enter);
    app.harness.run();
    app.fake.push(Update::Delivered {
        to: peer(1),
        id: FakeBackend::message_id(1),
    });
    app.harness.get_by_label("# ops").click_secondary();
    app.harness.run();
    app.harness.get_by_label("Mute").hover();
    app.harness.run();
    app.harness.get_by_label("1 hour").click();
    app.harness.run();
    app.harness.get_by_label_contains("delivered to 1 of 2");
    // Two people named Sam are told apart by their ids.
    assert!(app.harness.get_all_by_label("Sam·0101").count() >= 2);
    app.harness.snapshot("main_window");

    app.harness.get_by_label("+ Room").click();
    app.harness.run();
    app.harness.get_by_label("Room name").focus();
    app.harness.run();
    app.harness.get_by_label("Room name").type_text("trip");
    app.harness
        .get_by_role_and_label(egui::accesskit::Role::CheckBox, "Alex")
        .click();
    app.harness.run();
    app.harness.snapshot("new_room");
}

/// Runs `steps` frames and gathers what the app asked of the platform
/// (copy, open a link) in any of them.
fn commands(harness: &mut Harness<'static, KithApp>, steps: usize) -> Vec<egui::OutputCommand> {
    let mut out = Vec::new();
    for _ in 0..steps {
        harness.step();
        out.extend(harness.output().platform_output.commands.iter().cloned());
    }
    out
}

#[test]
fn a_message_while_unfocused_raises_a_notification_unless_muted() {
    let clock = Arc::new(AtomicU64::new(NOW));
    let notes = Recorder::default();
    let (time, recorder) = (clock.clone(), notes.clone());
    let mut app = unlocked_app_with("notify", move |app| {
        app.with_clock(Arc::new(move || time.load(Ordering::SeqCst)), 0)
            .with_notifier(Arc::new(recorder))
    });
    // The window has focus while it is set up: nothing was notified.
    assert_eq!(notes.take(), []);
    app.harness.input_mut().focused = false;
    app.harness.run();
    app.fake.push(received(KITCHEN, 1, 20, 0, "are you there?"));
    app.harness.run();
    let shown = notes.take();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0].title, "Sam in kitchen");
    assert_eq!(shown[0].body, "are you there?");

    // Muted for 15 minutes from the sidebar: nothing, and no badge.
    app.harness.get_by_label("# kitchen").click_secondary();
    app.harness.run();
    app.harness.get_by_label("Mute").hover();
    app.harness.run();
    app.harness.get_by_label("15 minutes").click();
    app.harness.run();
    for (n, minutes) in [(21, 1), (22, 14)] {
        clock.store(NOW + minutes * 60_000, Ordering::SeqCst);
        app.fake.push(received(KITCHEN, 2, n, 0, "muted chatter"));
        app.harness.run();
    }
    assert_eq!(notes.take(), []);
    assert_eq!(app.state().badge(&app.state().rooms[&KITCHEN]), None);

    // The mute ends: notified again.
    clock.store(NOW + 15 * 60_000, Ordering::SeqCst);
    app.fake
        .push(received(KITCHEN, 1, 23, 0, "dinner is ready"));
    app.harness.run();
    let shown = notes.take();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0].body, "dinner is ready");

    // With the window focused, nothing.
    app.harness.input_mut().focused = true;
    clock.store(NOW + 16 * 60_000, Ordering::SeqCst);
    app.fake.push(received(OPS, 1, 24, 0, "seen on screen"));
    app.harness.run();
    assert_eq!(notes.take(), []);

    // A click on kitchen's notification opens kitchen, window in front.
    assert_ne!(app.state().open, Some(KITCHEN));
    notes.click(KITCHEN);
    app.harness.step();
    let asked: Vec<egui::ViewportCommand> = app
        .harness
        .output()
        .viewport_output
        .get(&egui::ViewportId::ROOT)
        .map(|v| v.commands.clone())
        .unwrap_or_default();
    assert!(
        asked
            .iter()
            .any(|c| matches!(c, egui::ViewportCommand::Focus)),
        "{asked:?}"
    );
    app.harness.run();
    assert_eq!(app.state().open, Some(KITCHEN));
    app.harness.get_by_label("dinner is ready");
}

#[test]
fn search_every_room_then_open_a_result_far_back_in_its_history() {
    let mut app = unlocked_app("search");
    let history: Vec<MessageInfo> = (0..600u32)
        .map(|i| {
            let mut id = [8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            MessageInfo {
                room: OPS,
                from: peer(1 + (i % 2) as u8),
                id: MessageId(id),
                timestamp: NOW - 3_600_000 + u64::from(i),
                text: if i == 30 {
                    "the wifi password is on the fridge".to_owned()
                } else {
                    format!("message {i}")
                },
                cursor: None,
                hlc: 0,
                deliveries: None,
            }
        })
        .collect();
    app.fake.set_history(OPS, history);
    // Typed in the sidebar's box, then "Messages with …".
    app.harness.get_by_label("🔍").focus();
    app.harness.run();
    app.harness.get_by_label("🔍").type_text("WIFI");
    app.harness.run();
    app.harness.get_by_label("🔍 Messages with “WIFI”").click();
    app.harness.run();
    let requests = app.requests();
    assert!(
        requests.iter().any(|r| matches!(r,
            Request::Search { text, room: None, .. } if text == "WIFI")),
        "{requests:?}"
    );
    assert_eq!(app.state().search.hits.len(), 1);
    app.harness.get_by_label("1 message");

    // A click opens ops at that message, 570 messages back.
    app.harness
        .get_by_label("the wifi password is on the fridge")
        .click();
    app.harness.run();
    let state = app.state();
    assert_eq!(state.open, Some(OPS));
    assert!(
        state.histories[&OPS]
            .messages
            .iter()
            .any(|m| m.text.starts_with("the wifi"))
    );
    // The chat shows it (only rows in view are laid out) beside the result.
    assert_eq!(
        app.harness
            .get_all_by_label("the wifi password is on the fridge")
            .count(),
        2
    );
    assert!(app.harness.query_by_label("message 599").is_none());
    app.harness.snapshot("search");

    // Only this room: a search from the header's 🔍.
    app.harness.get_by_label("In # ops").click();
    app.harness.run();
    assert!(app.requests().iter().any(|r| matches!(
        r,
        Request::Search {
            room: Some(OPS),
            ..
        }
    )));
    app.harness.get_by_label("×").click();
    app.harness.run();
    assert!(!app.state().search.open);
}

#[test]
fn more_results_fetches_the_next_page_of_a_search() {
    let mut app = unlocked_app("search_more");
    // 60 matches: the newest 50 first, then the 10 older on More.
    let history: Vec<MessageInfo> = (0..60u32)
        .map(|i| {
            let mut id = [9; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            MessageInfo {
                room: OPS,
                from: peer(1),
                id: MessageId(id),
                timestamp: NOW - 3_600_000 + u64::from(i) * 1_000,
                text: format!("deploy note {i}"),
                cursor: None,
                hlc: 0,
                deliveries: None,
            }
        })
        .collect();
    app.fake.set_history(OPS, history);
    app.harness.get_by_label("🔍").focus();
    app.harness.run();
    app.harness.get_by_label("🔍").type_text("deploy");
    app.harness.run();
    app.harness
        .get_by_label("🔍 Messages with “deploy”")
        .click();
    app.harness.run();
    assert_eq!(app.state().search.hits.len(), 50);
    app.harness.get_by_label("The newest 50 messages");
    assert!(app.harness.query_by_label("deploy note 10").is_some());
    assert!(app.harness.query_by_label("deploy note 9").is_none());

    let more = app.harness.get_by_label("More results");
    more.scroll_to_me();
    app.harness.run();
    app.harness.get_by_label("More results").click();
    app.harness.run();
    let asked = app.requests();
    assert!(
        asked.iter().any(|r| matches!(r,
            Request::Search { text, before: Some(_), .. } if text == "deploy")),
        "{asked:?}"
    );
    // The 51st: appended after the first 50, and no More after the last.
    let state = app.state();
    assert_eq!(state.search.hits.len(), 60);
    assert_eq!(state.search.hits[50].text, "deploy note 9");
    app.harness.get_by_label("60 messages");
    assert!(app.harness.query_by_label("deploy note 9").is_some());
    assert!(app.harness.query_by_label("More results").is_none());
}

#[test]
fn copy_a_message_and_open_only_web_links() {
    let mut app = unlocked_app("links");
    app.fake.push(received(
        KITCHEN,
        1,
        30,
        0,
        "recipe at https://example.org/bread. not file:///etc/passwd",
    ));
    app.harness.get_by_label("# kitchen").click();
    app.harness.run();
    // One link, the web one.
    let links: Vec<_> = app
        .harness
        .get_all_by_role(egui::accesskit::Role::Link)
        .collect();
    assert_eq!(links.len(), 1);
    app.harness
        .get_by_role_and_label(egui::accesskit::Role::Link, "https://example.org/bread")
        .click();
    let opened: Vec<String> = commands(&mut app.harness, 3)
        .into_iter()
        .filter_map(|c| match c {
            egui::OutputCommand::OpenUrl(open) => Some(open.url),
            _ => None,
        })
        .collect();
    assert_eq!(opened, ["https://example.org/bread"]);
    app.harness.run();

    // Right-click the text: Copy text puts the whole message on the clipboard.
    app.harness
        .get_by_label_contains("not file:///etc/passwd")
        .click_secondary();
    app.harness.run();
    app.harness.snapshot("message_menu");
    app.harness.get_by_label("Copy text").click();
    let copied: Vec<String> = commands(&mut app.harness, 3)
        .into_iter()
        .filter_map(|c| match c {
            egui::OutputCommand::CopyText(text) => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(
        copied,
        ["recipe at https://example.org/bread. not file:///etc/passwd"]
    );
    // A plain message has the same menu.
    app.harness.run();
    app.harness.get_by_label("dinner at 8?").click_secondary();
    app.harness.run();
    app.harness.get_by_label("Copy text").click();
    let copied: Vec<_> = commands(&mut app.harness, 3);
    assert!(copied.contains(&egui::OutputCommand::CopyText("dinner at 8?".into())));
}
