//! Two desktop apps, each with its own data directory and its own node on
//! loopback, driven headless with egui_kittest: Alice messages Bob from
//! the People list and Bob's window shows it; Alice makes a room with Bob
//! from the New room dialog, Bob accepts the invitation in his window,
//! Alice writes and sees "delivered to 1 of 1"; Bob mutes the room from
//! the sidebar and Alice's next message raises no badge.
#![cfg(feature = "gui")]

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use kith::account::{Account, KdfParams};
use kith::daemon::{DaemonConfig, PeerAddr};
use kith::proto::crypto::PublicIdentity;
use kith::proto::node::direct_room;
use kith::ui::KithApp;
use kith::ui::state::{AppState, Delivery, Relation};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kith-ui-two-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A loopback port free now (the node binds it a moment later).
fn free_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free loopback port")
}

fn account(dir: &Path, name: &str) -> PublicIdentity {
    let account = Account::create(dir, "pass phrase", KdfParams::insecure_fast_for_tests())
        .expect("create the account");
    std::fs::write(dir.join(kith::ui::backend::NAME_FILE), name).expect("name file");
    account.identity.public()
}

fn app(dir: &Path, listen: SocketAddr, other: PeerAddr) -> Harness<'static, KithApp> {
    let mut config = DaemonConfig::default();
    config.net.unicast_bind = listen;
    config.peers = vec![other];
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1000.0, 660.0))
        .with_max_steps(32)
        .build_ui_state(
            |ui, app: &mut KithApp| app.show(ui),
            KithApp::with_node(dir.to_owned(), KdfParams::insecure_fast_for_tests(), config),
        );
    harness.get_by_label("Passphrase").focus();
    harness.run();
    harness.get_by_label("Passphrase").type_text("pass phrase");
    harness.run();
    harness.get_by_label("Unlock").click();
    harness.step();
    harness.state_mut().wait_for_worker(WAIT);
    harness.run();
    assert!(harness.state().state().is_some(), "unlocked");
    harness
}

/// Lets the app take the node's updates until `done` holds, then draws.
fn wait(harness: &mut Harness<'static, KithApp>, what: &str, done: impl Fn(&AppState) -> bool) {
    let held = harness.state_mut().wait_until(WAIT, done);
    assert!(held, "timed out waiting until {what}");
    harness.run();
}

fn state<'a>(harness: &'a Harness<'static, KithApp>) -> &'a AppState {
    harness.state().state().expect("unlocked")
}

fn type_and_enter(harness: &mut Harness<'static, KithApp>, text: &str) {
    harness.get_by_label("Write a message").focus();
    harness.run();
    harness.get_by_label("Write a message").type_text(text);
    harness.key_press(egui::Key::Enter);
    harness.run();
}

#[test]
fn alice_writes_bob_reads_then_a_room_then_mute() {
    let (alice_dir, bob_dir) = (temp_dir("alice"), temp_dir("bob"));
    let alice_key = account(&alice_dir, "Alice");
    let bob_key = account(&bob_dir, "Bob");
    let (alice_addr, bob_addr) = (free_port(), free_port());
    let mut alice = app(
        &alice_dir,
        alice_addr,
        PeerAddr {
            public: bob_key.clone(),
            addr: bob_addr,
        },
    );
    let mut bob = app(
        &bob_dir,
        bob_addr,
        PeerAddr {
            public: alice_key.clone(),
            addr: alice_addr,
        },
    );
    let (alice_id, bob_id) = (alice_key.peer_id(), bob_key.peer_id());

    // Alice sees Bob (a configured peer is a contact) and clicks his name
    // in the People list to write to him.
    wait(&mut alice, "Bob is listed", |s| {
        s.people.contains_key(&bob_id)
    });
    assert_eq!(
        state(&alice).people[&bob_id].info.relation,
        Relation::Contact
    );
    let bob_name = state(&alice).display_name(bob_id);
    alice.get_by_label(&bob_name).click();
    alice.run();
    assert_eq!(state(&alice).open, Some(direct_room(alice_id, bob_id)));
    type_and_enter(&mut alice, "hello Bob");

    // Bob's window shows it, unread, in a chat named after Alice.
    let chat = direct_room(alice_id, bob_id);
    // The count is the node's: its event follows the message.
    wait(&mut bob, "Bob has the message, unread", |s| {
        s.histories
            .get(&chat)
            .is_some_and(|h| h.messages.iter().any(|m| m.text == "hello Bob"))
            && s.total_unread() == 1
    });
    assert_eq!(state(&bob).total_unread(), 1);
    // Times are wall-clock milliseconds (not the envelope's hybrid clock).
    let arrived = state(&bob).histories[&chat].messages[0].timestamp;
    assert!(
        arrived.abs_diff(kith::ui::backend::now_millis()) < 60_000,
        "{arrived}"
    );
    assert_eq!(state(&bob).title(), "kith — 1 unread");
    let name = state(&bob).room_name(&state(&bob).rooms[&chat]);
    bob.get_by_label(&format!("@ {name}")).click();
    bob.run();
    bob.get_by_label("hello Bob");
    assert_eq!(state(&bob).total_unread(), 0);

    // Alice's message reaches "delivered".
    wait(&mut alice, "delivered to Bob", |s| {
        s.histories[&chat].messages.iter().any(|m| {
            m.own.as_ref().is_some_and(
                |o| matches!(&o.delivery, Delivery::Sent { delivered, .. } if delivered.contains(&bob_id)),
            )
        })
    });
    alice.get_by_label_contains("delivered");

    // Alice makes a room with Bob from the New room dialog.
    alice.get_by_label("+ Room").click();
    alice.run();
    alice.get_by_label("Room name").focus();
    alice.run();
    alice.get_by_label("Room name").type_text("kitchen");
    alice.run();
    alice
        .get_by_role_and_label(egui::accesskit::Role::CheckBox, &bob_name)
        .click();
    alice.run();
    alice.get_by_label("Create room").click();
    alice.run();
    wait(&mut alice, "the room is made", |s| {
        s.open
            .and_then(|r| s.rooms.get(&r))
            .is_some_and(|r| r.info.name == "kitchen")
    });
    let room = state(&alice).open.expect("the new room is open");

    // Bob accepts the invitation in his window.
    wait(&mut bob, "Bob is invited", |s| {
        s.rooms.get(&room).is_some_and(|r| r.info.invited)
    });
    bob.get_by_label("# kitchen").click();
    bob.run();
    bob.get_by_label("Accept invitation").click();
    bob.run();
    wait(&mut bob, "Bob is in the room", |s| {
        s.rooms
            .get(&room)
            .is_some_and(|r| !r.info.invited && r.info.members.len() == 2)
    });
    wait(&mut alice, "Alice sees Bob in the room", |s| {
        s.rooms
            .get(&room)
            .is_some_and(|r| r.info.members.contains(&bob_id))
    });

    // Alice writes; Bob's window shows it; Alice sees it delivered.
    type_and_enter(&mut alice, "dinner at 8?");
    wait(&mut bob, "Bob has the room message", |s| {
        s.histories
            .get(&room)
            .is_some_and(|h| h.messages.iter().any(|m| m.text == "dinner at 8?"))
    });
    bob.get_by_label("dinner at 8?");
    wait(&mut alice, "delivered to 1 of 1", |s| {
        s.histories[&room]
            .messages
            .iter()
            .filter_map(|m| m.own.as_ref())
            .any(|o| s.delivery_label(o, true) == "delivered to 1 of 1")
    });
    alice.get_by_label_contains("delivered to 1 of 1");

    // Bob opens his chat with Alice, then mutes the room from the sidebar.
    bob.get_by_label(&format!("@ {name}")).click();
    bob.run();
    bob.get_by_label("# kitchen").click_secondary();
    bob.run();
    bob.get_by_label("Mute").hover();
    bob.run();
    bob.get_by_label("1 hour").click();
    bob.run();
    // The node confirms it in the next room list.
    wait(&mut bob, "the node has the mute", |s| {
        s.rooms.get(&room).is_some_and(|r| r.info.muted.is_some())
    });
    type_and_enter(&mut alice, "anyone?");
    wait(&mut bob, "Bob has the muted message", |s| {
        s.histories
            .get(&room)
            .is_some_and(|h| h.messages.iter().any(|m| m.text == "anyone?"))
    });
    // Stored and shown, but no badge and no count in the title.
    let bob_state = state(&bob);
    assert_eq!(bob_state.rooms[&room].unread, 0);
    assert_eq!(bob_state.title(), "kith");
    bob.get_by_label_contains("🔕 until");

    drop(alice);
    drop(bob);
    for dir in [alice_dir, bob_dir] {
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
