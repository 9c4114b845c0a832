//! The Network panel and adding a peer by address and key, driven headless
//! with egui_kittest: over a fake node (fixed report and clock, for the
//! snapshot and the form's errors), and two apps with real nodes on
//! loopback and mDNS off, where A adds B from the form, writes to B, and
//! B's window shows it.
#![cfg(feature = "gui")]

mod ui_support;

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use kith::proto::ids::PeerId;
use kith::proto::node::direct_room;
use kith::ui::KithApp;
use kith::ui::backend::{FakeLauncher, Me};
use kith::ui::state::{
    Dialog, HeardPeer, MdnsInfo, NetworkReport, NetworkRequest, RegistryInfo, Relation, Request,
};
use std::sync::Arc;
use ui_support::{Settle, account, app, config, free_port, state, temp_dir, type_and_enter, wait};

/// The window's clock: Tuesday 1 December 2026, 18:00 UTC.
const NOW: u64 = 1_796_148_000_000;

fn peer(n: u8) -> PeerId {
    PeerId([n; 32])
}

fn heard(n: u8, name: &str, addr: &str, source: &str, presence: &str, ago: u64) -> HeardPeer {
    HeardPeer {
        peer: peer(n),
        name: name.into(),
        addr: Some(addr.into()),
        source: Some(source.into()),
        presence: presence.into(),
        heard_ago: Some(ago),
        sighted_ago: Some(ago),
        contact: presence != "nearby",
    }
}

/// A LAN with two peers found by mDNS, one added by hand and one from the
/// registry, and a few drops.
fn report() -> NetworkReport {
    NetworkReport {
        interfaces: vec!["wlp2s0".into()],
        mdns: Some(MdnsInfo {
            name: "Robin".into(),
            found: 3,
            lost: 1,
            rejected: 0,
            errors: 0,
        }),
        registry: Some(RegistryInfo {
            addr: "203.0.113.7:47480".into(),
            registered: true,
            published: vec!["192.168.1.20:47474".into()],
            last_answer_ago: Some(4_000),
            lookups: 2,
            found: 1,
            dropped: 0,
        }),
        keepalive_secs: (5, 60),
        peers: vec![
            heard(1, "Sam", "192.168.1.31:47474", "mDNS", "online", 2_000),
            heard(3, "Lee", "192.168.1.44:47474", "mDNS", "nearby", 95_000),
            heard(2, "", "10.8.0.5:47474", "direct", "offline", 1_200_000),
            heard(6, "", "198.51.100.9:40112", "registry", "online", 9_000),
        ],
        received: 1_204,
        sent: 1_187,
        drops: vec![
            ("net_own_echo_dropped".into(), 12),
            ("dropped_UnknownPeer".into(), 3),
        ],
        dropped_total: 15,
    }
}

#[test]
fn network_panel_shows_the_report_and_checks_the_form() {
    let dir = temp_dir("network-fake");
    let launcher = FakeLauncher::new(Me {
        peer: peer(0),
        public_key: "00".repeat(32),
        name: "Robin".into(),
    });
    let mut app = Harness::builder()
        .with_size(egui::vec2(1000.0, 660.0))
        .with_max_steps(32)
        .build_ui_state(
            |ui, app: &mut KithApp| app.show(ui),
            KithApp::new(dir.clone(), launcher.clone()).with_clock(Arc::new(|| NOW), 0),
        );
    // No account in `dir`: the first screen creates one.
    for (label, text) in [
        ("Your name", "Robin"),
        ("Passphrase", "four random words here"),
        ("Passphrase again", "four random words here"),
    ] {
        app.get_by_label(label).focus();
        app.run();
        app.get_by_label(label).type_text(text);
        app.run();
    }
    app.get_by_label("Create account").click();
    app.step();
    app.state_mut().wait_for_worker(ui_support::WAIT);
    app.run();
    let fake = launcher.backend().expect("unlocked");
    fake.set_network_report(report());
    fake.push(kith::ui::state::Update::People(vec![
        kith::ui::state::PersonInfo {
            id: peer(1),
            public_key: String::new(),
            name: "Sam".into(),
            relation: Relation::Contact,
            online: true,
            last_seen: None,
            muted: None,
        },
    ]));
    app.run();

    app.get_by_label("🌐 Network").click();
    app.run();
    let s = app.state().state().expect("unlocked");
    assert_eq!(s.dialog, Some(Dialog::Network));
    assert!(
        fake.take_requests()
            .contains(&Request::Network(NetworkRequest::Report))
    );
    // Readable lines, not a dump.
    app.get_by_label("announcing as \"Robin\" · 3 found · 1 gone · 0 refused · 0 errors");
    app.get_by_label_contains("203.0.113.7:47480: registered, last answer 4 s ago");
    app.get_by_label("every 5 s while messages flow, up to every 60 s when idle");
    app.get_by_label("Peers heard (4)");
    // A contact by the name the window knows; others by what they
    // announced, or their short id.
    // (In the sidebar and in the panel.)
    assert_eq!(app.query_all_by_label("Sam").count(), 2);
    app.get_by_label(&format!("~Lee ({})", peer(3).short()));
    app.get_by_label("192.168.1.44:47474");
    app.get_by_label("95 s ago");
    app.get_by_label("20 min ago");
    app.get_by_label("1204 datagrams received, 1187 sent.");
    app.get_by_label("our own datagrams echoed back");
    app.get_by_label("unknown peer");

    // Bad input is refused with a sentence; nothing goes to the node.
    app.get_by_label("Peer address").focus();
    app.run();
    app.get_by_label("Peer address").type_text("192.168.1.50");
    app.run();
    app.get_by_label("Add peer").click();
    app.run();
    app.get_by_label("Paste their public key: `kith id` or their You dialog shows it.");
    app.get_by_label("Peer public key").focus();
    app.run();
    app.get_by_label("Peer public key")
        .type_text(&"ab".repeat(20));
    app.run();
    app.get_by_label("Add peer").click();
    app.run();
    app.get_by_label("A public key is 64 hexadecimal characters (0-9, a-f); this has 40.");
    assert!(
        !fake
            .take_requests()
            .iter()
            .any(|r| matches!(r, Request::Network(NetworkRequest::AddPeer { .. })))
    );
    app.hover_at(egui::pos2(990.0, 650.0));
    app.run();
    app.snapshot("network");
    drop(app);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn with_mdns_off_a_adds_b_by_address_and_key_and_writes_to_b() {
    let (a_dir, b_dir) = (temp_dir("net-add-a"), temp_dir("net-add-b"));
    let _a_key = account(&a_dir, "Ana");
    let b_key = account(&b_dir, "Ben");
    let (a_addr, b_addr) = (free_port(), free_port());
    // No peers configured and no interface: neither can find the other.
    let (mut a_config, mut b_config) = (config(a_addr, Vec::new()), config(b_addr, Vec::new()));
    a_config.discovery.mdns = false;
    b_config.discovery.mdns = false;
    let mut a = app(&a_dir, a_config);
    let mut b = app(&b_dir, b_config);
    let (a_id, b_id) = (state(&a).me, b_key.peer_id());
    assert!(!state(&a).people.contains_key(&b_id));

    // A opens the Network panel: mDNS is off, nobody is heard yet.
    // Steps, not `run`: the panel spins until the node answers, and a
    // busy machine answers after more frames than `run` allows.
    a.get_by_label("🌐 Network").click();
    a.run_steps(2);
    wait(&mut a, "the first report", |s| s.network.report.is_some());
    a.get_by_label("off");
    a.get_by_label("Peers heard (0)");

    // A types B's address and key (as `kith id` prints it) and adds B.
    let key = PeerId(b_key.to_bytes()).to_hex();
    for (label, text) in [
        ("Peer address", b_addr.to_string()),
        ("Peer public key", key),
    ] {
        a.get_by_label(label).focus();
        a.settle();
        a.get_by_label(label).type_text(&text);
        a.settle();
    }
    a.get_by_label("Add peer").click();
    a.run_steps(2);
    let added = a
        .state_mut()
        .wait_until(ui_support::WAIT, |s| s.network.added == Some(b_id));
    assert!(added, "{:?}", state(&a).network);
    let shown = a.state_mut().wait_until(ui_support::WAIT, |s| {
        s.network.added == Some(b_id)
            && s.network.report.as_ref().is_some_and(|(r, _)| {
                r.peers
                    .iter()
                    .any(|p| p.peer == b_id && p.addr.as_deref() == Some(&b_addr.to_string()))
            })
    });
    assert!(shown, "{:?}", state(&a).network);
    // The form cleared; B is a contact under People.
    wait(&mut a, "B is a contact", |s| {
        s.people
            .get(&b_id)
            .is_some_and(|p| p.info.relation == Relation::Contact)
    });
    a.settle();
    a.get_by_label("Peers heard (1)");
    a.get_by_label(&b_addr.to_string());

    // A writes to B from the People list.
    a.key_press(egui::Key::Escape);
    a.settle();
    a.state_mut()
        .perform(kith::ui::state::Intent::Message(b_id));
    a.settle();
    type_and_enter(&mut a, "found you by address");

    // B's window shows it, from someone new.
    let chat = direct_room(a_id, b_id);
    wait(&mut b, "B has A's message", |s| {
        s.histories
            .get(&chat)
            .is_some_and(|h| h.messages.iter().any(|m| m.text == "found you by address"))
    });
    // B's panel lists A as heard, by the authenticated datagram (direct).
    b.get_by_label("🌐 Network").click();
    b.run_steps(2);
    wait(&mut b, "B hears A", |s| {
        s.network.report.as_ref().is_some_and(|(r, _)| {
            r.peers
                .iter()
                .any(|p| p.peer == a_id && p.heard_ago.is_some())
        })
    });
    drop(a);
    drop(b);

    // A remembers B's address (the node forgets addresses when it stops):
    // the next start knows where B is without adding B again.
    let saved = kith::ui::settings::AppSettings::load(&a_dir);
    assert_eq!(
        saved.peers,
        [format!("{}@{b_addr}", PeerId(b_key.to_bytes()).to_hex())]
    );
    let mut a_config = config(a_addr, Vec::new());
    a_config.discovery.mdns = false;
    let launcher = Arc::new(kith::ui::backend::NodeLauncher {
        kdf: kith::account::KdfParams::insecure_fast_for_tests(),
        config: a_config,
        interfaces: kith::ui::backend::InterfaceSource::Configured,
        saved_choices: Some(kith::ui::backend::Given::default()),
    });
    let mut a = Harness::builder()
        .with_size(egui::vec2(1000.0, 660.0))
        .with_max_steps(256)
        .build_ui_state(
            |ui, app: &mut KithApp| app.show(ui),
            KithApp::new(a_dir.clone(), launcher),
        );
    a.get_by_label("Passphrase").focus();
    a.settle();
    a.get_by_label("Passphrase").type_text(ui_support::PASS);
    a.settle();
    a.get_by_label("Unlock").click();
    a.step();
    a.state_mut().wait_for_worker(ui_support::WAIT);
    a.settle();
    a.get_by_label("🌐 Network").click();
    a.settle();
    wait(&mut a, "B's address is known again", |s| {
        s.network.report.as_ref().is_some_and(|(r, _)| {
            r.peers
                .iter()
                .any(|p| p.peer == b_id && p.addr.as_deref() == Some(&b_addr.to_string()))
        })
    });
    drop(a);
    let _ = std::fs::remove_dir_all(&a_dir);
    let _ = std::fs::remove_dir_all(&b_dir);
}
