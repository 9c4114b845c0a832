//! Two desktop apps, each with its own data directory and its own node on
//! loopback, driven headless with egui_kittest: Alice messages Bob from
//! the People list and Bob's window shows it; Alice makes a room with Bob
//! from the New room dialog, Bob accepts the invitation in his window,
//! Alice writes and sees "delivered to 1 of 1"; Bob mutes the room from
//! the sidebar and Alice's next message raises no badge.
#![cfg(feature = "gui")]

mod ui_support;

use egui_kittest::kittest::Queryable;
use kith::daemon::PeerAddr;
use kith::proto::node::direct_room;
use kith::ui::state::{Delivery, Intent, Relation};
use std::time::Duration;
use ui_support::{Settle, account, app, config, free_port, state, temp_dir, type_and_enter, wait};

#[test]
fn alice_writes_bob_reads_then_a_room_then_mute() {
    let (alice_dir, bob_dir) = (temp_dir("two-alice"), temp_dir("two-bob"));
    let alice_key = account(&alice_dir, "Alice");
    let bob_key = account(&bob_dir, "Bob");
    let (alice_addr, bob_addr) = (free_port(), free_port());
    let mut alice = app(
        &alice_dir,
        config(
            alice_addr,
            vec![PeerAddr {
                public: bob_key.clone(),
                addr: bob_addr,
            }],
        ),
    );
    let mut bob = app(
        &bob_dir,
        config(
            bob_addr,
            vec![PeerAddr {
                public: alice_key.clone(),
                addr: alice_addr,
            }],
        ),
    );
    let (alice_id, bob_id) = (alice_key.peer_id(), bob_key.peer_id());

    // Alice sees Bob (a configured peer is a contact) and clicks his name
    // in the People list to write to him.
    // By the name his signed profile gives (until it arrives he is listed
    // by his short id, and a name read then goes stale).
    wait(&mut alice, "Bob is listed by his name", |s| {
        s.people.contains_key(&bob_id) && s.display_name(bob_id).starts_with("Bob")
    });
    assert_eq!(
        state(&alice).people[&bob_id].info.relation,
        Relation::Contact
    );
    let bob_name = state(&alice).display_name(bob_id);
    alice.get_by_label(&bob_name).click();
    alice.settle();
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
            && s.display_name(alice_id).starts_with("Alice")
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
    bob.settle();
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
    alice.settle();
    alice.get_by_label("Room name").focus();
    alice.settle();
    alice.get_by_label("Room name").type_text("kitchen");
    alice.settle();
    alice
        .get_by_role_and_label(egui::accesskit::Role::CheckBox, &bob_name)
        .click();
    alice.settle();
    alice.get_by_label("Create room").click();
    alice.settle();
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
    bob.settle();
    bob.get_by_label("Accept invitation").click();
    bob.settle();
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
    bob.settle();
    bob.get_by_label("# kitchen").click_secondary();
    bob.settle();
    bob.get_by_label("Mute").hover();
    bob.settle();
    bob.get_by_label("1 hour").click();
    bob.settle();
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

/// Three apps: Alice makes a room with Bob and Carol from the New room
/// dialog and writes; both windows show it under her name (Carol finds it
/// with the sidebar's search too) and hers says "delivered to 2 of 2".
/// Then Alice blocks Bob from the sidebar: his next
/// messages (which Carol gets) never appear at Alice, and Bob sees Alice
/// offline.
#[test]
fn three_apps_a_room_for_three_then_block_from_the_sidebar() {
    let names = ["Alice", "Bob", "Carol"];
    let dirs: Vec<_> = names
        .iter()
        .map(|n| temp_dir(&format!("three-{n}")))
        .collect();
    let keys: Vec<_> = dirs.iter().zip(names).map(|(d, n)| account(d, n)).collect();
    let addrs: Vec<_> = (0..3).map(|_| free_port()).collect();
    let ids: Vec<_> = keys.iter().map(|k| k.peer_id()).collect();
    let mut apps: Vec<_> = (0..3)
        .map(|i| {
            let peers = (0..3)
                .filter(|j| *j != i)
                .map(|j| PeerAddr {
                    public: keys[j].clone(),
                    addr: addrs[j],
                })
                .collect();
            let mut config = config(addrs[i], peers);
            // Offline is noticed within seconds, not a minute.
            config.discovery.presence.keepalive_interval = Duration::from_millis(300);
            config.discovery.presence.max_keepalive_interval = Duration::from_millis(600);
            app(&dirs[i], config)
        })
        .collect();
    let [alice, bob, carol] = &mut apps[..] else {
        unreachable!("three apps")
    };

    // Alice: + Room, a name, tick Bob and Carol, Create room.
    // Their signed names arrive with their first packets.
    wait(alice, "Bob and Carol are listed by name", |s| {
        s.display_name(ids[1]) == "Bob" && s.display_name(ids[2]) == "Carol"
    });
    alice.get_by_label("+ Room").click();
    alice.settle();
    alice.get_by_label("Room name").focus();
    alice.settle();
    alice.get_by_label("Room name").type_text("trio");
    alice.settle();
    for name in ["Bob", "Carol"] {
        alice
            .get_by_role_and_label(egui::accesskit::Role::CheckBox, name)
            .click();
        alice.settle();
    }
    alice.get_by_label("Create room").click();
    alice.settle();
    wait(alice, "the room is made", |s| {
        s.open
            .and_then(|r| s.rooms.get(&r))
            .is_some_and(|r| r.info.name == "trio")
    });
    let room = state(alice).open.expect("the new room is open");

    // Bob and Carol accept in their windows.
    for other in [&mut *bob, &mut *carol] {
        wait(other, "invited", |s| {
            s.rooms.get(&room).is_some_and(|r| r.info.invited)
        });
        other.get_by_label("# trio").click();
        other.settle();
        other.get_by_label("Accept invitation").click();
        other.settle();
        wait(other, "in the room", |s| {
            s.rooms
                .get(&room)
                .is_some_and(|r| !r.info.invited && r.info.members.len() == 3)
        });
    }
    wait(alice, "Alice sees both in the room", |s| {
        s.rooms
            .get(&room)
            .is_some_and(|r| r.info.members.len() == 3)
    });

    // Alice writes; both windows show it under her name.
    type_and_enter(alice, "hello both");
    for other in [&mut *bob, &mut *carol] {
        wait(other, "the message arrives", |s| {
            s.histories
                .get(&room)
                .is_some_and(|h| h.messages.iter().any(|m| m.text == "hello both"))
        });
        other.get_by_label("hello both");
        let shown = state(other);
        let message = shown.histories[&room]
            .messages
            .iter()
            .find(|m| m.text == "hello both")
            .expect("shown");
        assert_eq!(message.from, ids[0]);
        assert_eq!(shown.display_name(ids[0]), "Alice");
        // The author line (the People list has her name too).
        assert!(other.get_all_by_label("Alice").count() >= 2);
    }
    // Carol finds it with the sidebar's search: the node's own search, run
    // beside the window's other requests.
    carol
        .get_by_role_and_label(egui::accesskit::Role::TextInput, "🔍")
        .focus();
    carol.settle();
    carol
        .get_by_role_and_label(egui::accesskit::Role::TextInput, "🔍")
        .type_text("HELLO");
    carol.settle();
    carol.get_by_label("🔍 Messages with “HELLO”").click();
    // Steps: the search spins until the node answers.
    carol.run_steps(2);
    wait(carol, "the search answers", |s| {
        !s.search.busy && !s.search.hits.is_empty()
    });
    let hits = &state(carol).search.hits;
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(
        (hits[0].room, hits[0].from, hits[0].text.as_str()),
        (room, ids[0], "hello both")
    );
    carol.get_by_label("1 message");
    wait(alice, "delivered to 2 of 2", |s| {
        s.histories[&room]
            .messages
            .iter()
            .filter_map(|m| m.own.as_ref())
            .any(|o| s.delivery_label(o, true) == "delivered to 2 of 2")
    });
    alice.get_by_label_contains("delivered to 2 of 2");
    wait(bob, "Bob sees Alice online", |s| {
        s.people.get(&ids[0]).is_some_and(|p| p.info.online)
    });

    // Alice blocks Bob from the People list.
    alice.get_by_label("Bob").click_secondary();
    alice.settle();
    alice.get_by_label("Block").click();
    alice.settle();
    assert!(state(alice).is_blocked(ids[1]));
    alice.get_by_label("Blocked (1)");

    // Bob writes to the room and to Alice; Carol gets the room message.
    assert_eq!(state(bob).open, Some(room), "still open since he accepted");
    type_and_enter(bob, "can you hear me?");
    wait(carol, "Carol has Bob's message", |s| {
        s.histories
            .get(&room)
            .is_some_and(|h| h.messages.iter().any(|m| m.text == "can you hear me?"))
    });
    // Carol has it, Alice does not.
    wait(bob, "delivered to 1 of 2", |s| {
        s.histories[&room]
            .messages
            .iter()
            .filter_map(|m| m.own.as_ref())
            .any(|o| s.delivery_label(o, true) == "delivered to 1 of 2")
    });
    bob.state_mut().perform(Intent::Message(ids[0]));
    bob.settle();
    type_and_enter(bob, "Alice?");
    // Bob sees Alice offline: she no longer answers him.
    wait(bob, "Bob sees Alice offline", |s| {
        s.people.get(&ids[0]).is_some_and(|p| !p.info.online)
    });
    assert!(bob.get_all_by_label_contains("last seen").count() >= 1);
    // Alice would have had the room message when Carol did, and the direct
    // one before Bob saw her go silent (a moment more for anything in
    // flight): she has neither, nor any trace.
    alice
        .state_mut()
        .wait_until(Duration::from_secs(2), |_| false);
    alice.settle();
    let seen = state(alice);
    for history in seen.histories.values() {
        assert!(
            !history.messages.iter().any(|m| m.from == ids[1]),
            "a message from the blocked Bob appeared"
        );
    }
    assert_eq!(seen.total_unread(), 0);
    assert!(alice.query_by_label("can you hear me?").is_none());

    drop(apps);
    for dir in dirs {
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
