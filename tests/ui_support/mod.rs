//! Helpers for the tests that run desktop apps with real nodes on
//! loopback, each app with its own data directory and node, driven
//! headless with egui_kittest.

#![allow(dead_code)] // Each test binary uses a different subset.

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use kith::account::{Account, KdfParams};
use kith::daemon::{DaemonConfig, PeerAddr};
use kith::proto::crypto::PublicIdentity;
use kith::proto::profile::SignedProfile;
use kith::store::StoredProfile;
use kith::ui::KithApp;
use kith::ui::state::AppState;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Generous: the machine running the tests may be heavily loaded.
pub const WAIT: Duration = Duration::from_secs(45);
pub const PASS: &str = "pass phrase";

/// A fresh directory for one app, unique to this test process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kith-ui-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[path = "../common/ports.rs"]
mod ports;

/// A loopback port free now that no other test takes before the node
/// binds it a moment later (see `tests/common/ports.rs`).
pub fn free_port() -> SocketAddr {
    ports::free_port()
}

/// An account in `dir` whose display name is `name`: announced by mDNS
/// and, signed, sent to contacts (as `kith init --name` stores it).
pub fn account(dir: &Path, name: &str) -> PublicIdentity {
    let mut account = Account::create(dir, PASS, KdfParams::insecure_fast_for_tests())
        .expect("create the account");
    std::fs::write(dir.join(kith::ui::backend::NAME_FILE), name).expect("name file");
    let record = SignedProfile::sign(&account.identity, 1, name).expect("a valid name");
    account
        .store
        .put_profile(&StoredProfile {
            peer: account.identity.peer_id(),
            seq: 1,
            name: record.profile.name,
            record: record.bytes,
        })
        .expect("store the profile");
    account.identity.public()
}

/// A node listening on `listen` that knows `peers` (a configured peer is a
/// contact).
pub fn config(listen: SocketAddr, peers: Vec<PeerAddr>) -> DaemonConfig {
    let mut config = DaemonConfig::default();
    config.net.unicast_bind = listen;
    config.peers = peers;
    config
}

/// The app for `dir`, unlocked through its first screen.
pub fn app(dir: &Path, config: DaemonConfig) -> Harness<'static, KithApp> {
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1000.0, 660.0))
        // A real node answers in wall time: a spinner waiting for it keeps
        // repainting, and a loaded machine draws many frames meanwhile.
        .with_max_steps(256)
        .build_ui_state(
            |ui, app: &mut KithApp| app.show(ui),
            KithApp::with_node(dir.to_owned(), KdfParams::insecure_fast_for_tests(), config),
        );
    harness.get_by_label("Passphrase").focus();
    harness.run();
    harness.get_by_label("Passphrase").type_text(PASS);
    harness.run();
    harness.get_by_label("Unlock").click();
    harness.step();
    harness.state_mut().wait_for_worker(WAIT);
    harness.settle();
    assert!(harness.state().state().is_some(), "unlocked");
    harness
}

/// `run` for an app with a real node behind it.
pub trait Settle {
    /// Draws frames until the window stops asking for the next one at
    /// once, however long the node takes to answer: a spinner waiting for
    /// the node repaints every frame, and on a loaded machine the node may
    /// answer only after more frames than [`Harness::run`] allows (its
    /// step bound), so that would fail a test that is right. Returns as
    /// soon as the window is still; panics after [`WAIT`].
    fn settle(&mut self);
}

impl Settle for Harness<'static, KithApp> {
    #[track_caller]
    fn settle(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            self.step();
            let asks_again = self
                .output()
                .viewport_output
                .get(&egui::ViewportId::ROOT)
                .is_some_and(|viewport| viewport.repaint_delay.is_zero());
            if !asks_again {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the window still repaints after {WAIT:?}: {:?}",
                self.ctx.repaint_causes()
            );
            // Give the node's threads the processor between frames rather
            // than drawing hundreds of frames while it waits for it.
            std::thread::sleep(Duration::from_millis(2));
        }
        // Still now, as after `run`; and its check, as `run` would.
        self.check_accessibility();
    }
}

/// Lets the app take the node's updates until `done` holds, then draws.
#[track_caller]
pub fn wait(harness: &mut Harness<'static, KithApp>, what: &str, done: impl Fn(&AppState) -> bool) {
    let held = harness.state_mut().wait_until(WAIT, done);
    if !held && let Some(s) = harness.state().state() {
        // What the app had instead, to tell a slow node from a wrong view.
        for (room, h) in &s.histories {
            let texts: Vec<&str> = h.messages.iter().map(|m| m.text.as_str()).collect();
            eprintln!("{room:?}: {texts:?} complete {}", h.complete);
        }
        for room in s.rooms.values() {
            eprintln!("{:?} unread {}", room.info.id, room.unread);
        }
    }
    assert!(held, "timed out waiting until {what}");
    harness.settle();
}

pub fn state<'a>(harness: &'a Harness<'static, KithApp>) -> &'a AppState {
    harness.state().state().expect("unlocked")
}

/// Types `text` into the composer and presses Enter.
pub fn type_and_enter(harness: &mut Harness<'static, KithApp>, text: &str) {
    type_text(harness, text);
    harness.key_press(egui::Key::Enter);
    harness.settle();
}

/// Types `text` into the composer (not sent).
pub fn type_text(harness: &mut Harness<'static, KithApp>, text: &str) {
    harness.get_by_label("Write a message").focus();
    harness.settle();
    harness.get_by_label("Write a message").type_text(text);
    harness.settle();
}
