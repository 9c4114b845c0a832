//! History and read markers across app restarts, with real nodes on
//! loopback: Alice writes to Bob while his app is closed (his node runs
//! headless, as `kith daemon` would, and stops again); Bob's window then
//! shows the messages from the node's history with an unread badge of 3;
//! opening the chat clears it; after a restart of Bob's app the badge is
//! still gone and the history is still there.
#![cfg(feature = "gui")]

mod ui_support;

use egui_kittest::kittest::Queryable;
use kith::daemon::{self, DaemonHandle, PeerAddr};
use kith::proto::node::direct_room;
use kith::ui::state::AppState;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;
use ui_support::{PASS, Settle, WAIT, account, app, config, free_port, state, temp_dir, wait};

const TEXTS: [&str; 3] = ["first while away", "second while away", "third while away"];

/// A node without a window.
fn node(dir: &Path, listen: SocketAddr, other: PeerAddr) -> DaemonHandle {
    daemon::start(dir, PASS, config(listen, vec![other])).expect("start the node")
}

fn shows_history(s: &AppState, room: kith::proto::ids::RoomId) -> bool {
    s.histories.get(&room).is_some_and(|h| {
        let texts: Vec<&str> = h.messages.iter().map(|m| m.text.as_str()).collect();
        texts == TEXTS
    })
}

#[test]
fn history_and_read_markers_survive_app_restarts() {
    let (alice_dir, bob_dir) = (temp_dir("hist-alice"), temp_dir("hist-bob"));
    let alice_key = account(&alice_dir, "Alice");
    let bob_key = account(&bob_dir, "Bob");
    let (alice_addr, bob_addr) = (free_port(), free_port());
    let to_bob = PeerAddr {
        public: bob_key.clone(),
        addr: bob_addr,
    };
    let to_alice = PeerAddr {
        public: alice_key.clone(),
        addr: alice_addr,
    };
    let (alice_id, bob_id) = (alice_key.peer_id(), bob_key.peer_id());
    let chat = direct_room(alice_id, bob_id);

    // Bob's app is closed; his node stores what Alice writes.
    let alice = node(&alice_dir, alice_addr, to_bob.clone());
    let bob_node = node(&bob_dir, bob_addr, to_alice.clone());
    for text in TEXTS {
        alice.send(bob_id, text).expect("Alice sends");
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let rooms = bob_node.rooms().expect("Bob's rooms");
        if rooms.iter().any(|r| r.id == chat && r.unread == 3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Bob's node never stored all three"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    bob_node.shutdown().expect("Bob's node stops");

    // Bob starts his app: the chat is listed with its history and a badge
    // of 3 before he opens it.
    let mut bob = app(&bob_dir, config(bob_addr, vec![to_alice.clone()]));
    wait(&mut bob, "the history and the node's count are in", |s| {
        shows_history(s, chat) && s.rooms.get(&chat).is_some_and(|r| s.badge(r) == Some(3))
    });
    assert_eq!(state(&bob).title(), "kith — 3 unread");
    // The badge in the sidebar.
    bob.get_by_label("3");
    let name = state(&bob).room_name(&state(&bob).rooms[&chat]);

    // Opening the chat shows the messages and clears the badge; the node
    // confirms (its count is what the badge shows).
    bob.get_by_label(&format!("@ {name}")).click();
    bob.settle();
    for text in TEXTS {
        bob.get_by_label(text);
    }
    assert_eq!(state(&bob).total_unread(), 0);
    wait(&mut bob, "the node counts nothing unread", |s| {
        s.total_unread() == 0
    });
    // The divider sits above the three that were unread.
    assert_eq!(state(&bob).histories[&chat].divider, Some(0));
    drop(bob);

    // After a restart the read marker holds and the history is there.
    let mut bob = app(&bob_dir, config(bob_addr, vec![to_alice.clone()]));
    wait(&mut bob, "the history is back", |s| shows_history(s, chat));
    // The node's count came before the page (same channel, in order).
    assert!(state(&bob).unread_from_node());
    assert_eq!(state(&bob).rooms[&chat].unread, 0);
    assert_eq!(state(&bob).title(), "kith");
    assert!(bob.query_by_label("3").is_none());
    drop(bob);

    // The marker is the node's, not the window's: a headless node agrees.
    let bob_node = node(&bob_dir, bob_addr, to_alice);
    let rooms = bob_node.rooms().expect("Bob's rooms");
    assert!(rooms.iter().any(|r| r.id == chat && r.unread == 0));
    bob_node.shutdown().expect("Bob's node stops");
    alice.shutdown().expect("Alice's node stops");
    for dir in [alice_dir, bob_dir] {
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
