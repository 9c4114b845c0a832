//! The desktop app driven headless with egui_kittest, with its real node
//! on loopback: create an account by typing a name and the passphrase
//! twice, land in the main window, see your identity and verify a contact;
//! then a wrong passphrase on reopening shows the error and changes
//! nothing, and the right one unlocks the same identity.
#![cfg(feature = "gui")]

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use kith::account::KdfParams;
use kith::daemon::DaemonConfig;
use kith::ui::KithApp;
use std::path::PathBuf;
use std::time::Duration;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kith-ui-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A node on loopback only: any free port, no mDNS, no control socket.
fn loopback() -> DaemonConfig {
    let mut config = DaemonConfig::default();
    config.net.unicast_bind = "127.0.0.1:0".parse().expect("literal address");
    config
}

fn harness(dir: &std::path::Path) -> Harness<'static, KithApp> {
    Harness::builder()
        .with_size(egui::vec2(1000.0, 660.0))
        .build_ui_state(
            |ui, app: &mut KithApp| app.show(ui),
            KithApp::with_node(
                dir.to_owned(),
                KdfParams::insecure_fast_for_tests(),
                loopback(),
            ),
        )
}

fn type_into(harness: &mut Harness<'static, KithApp>, label: &str, text: &str) {
    harness.get_by_label(label).focus();
    harness.run();
    harness.get_by_label(label).type_text(text);
    harness.run();
}

fn submit(harness: &mut Harness<'static, KithApp>, button: &str) {
    harness.get_by_label(button).click();
    // One frame handles the click and starts the worker; `run` would wait
    // for the spinner to stop, which it does only when the worker answers.
    harness.step();
    harness.state_mut().wait_for_worker(Duration::from_secs(60));
    harness.run();
}

#[test]
fn create_account_then_verify_a_contact_then_wrong_passphrase() {
    let dir = temp_dir("create");
    let mut app = harness(&dir);
    app.get_by_label("Welcome to kith");
    type_into(&mut app, "Your name", "Robin");
    type_into(&mut app, "Passphrase", "correct horse");
    // Typed once: the button stays disabled, and says why.
    app.get_by_label("Create account").click();
    app.step();
    assert!(app.state().unlock_state().is_some_and(|s| !s.busy));
    type_into(&mut app, "Passphrase again", "correct horse");
    submit(&mut app, "Create account");
    let state = app.state().state().expect("the main window is shown");
    let peer_id = state.me.to_hex();
    assert_eq!(state.my_name, "Robin");

    // The "You" dialog shows the identity that the store now holds.
    app.get_by_label("👤 Robin").click();
    app.run();
    app.get_by_label(&peer_id);

    // Paste a contact's key: a safety number appears.
    let contact = kith::proto::crypto::Identity::generate(&mut rand::rng()).public();
    let contact_hex = kith::proto::ids::PeerId(contact.to_bytes()).to_hex();
    type_into(&mut app, "Their public key", &contact_hex);
    app.get_by_label("Safety number: read it aloud together; it must match.");
    // Dropping the app stops its node cleanly.
    drop(app);

    // Reopen with the wrong passphrase: a clear error, still locked.
    let mut app = harness(&dir);
    app.get_by_label("Unlock kith");
    type_into(&mut app, "Passphrase", "wrong horse");
    submit(&mut app, "Unlock");
    assert!(app.state().unlock_state().is_some());
    app.get_by_label("wrong passphrase");
    drop(app);

    // And the right one unlocks the same identity, with the same name.
    let mut app = harness(&dir);
    type_into(&mut app, "Passphrase", "correct horse");
    submit(&mut app, "Unlock");
    let state = app.state().state().expect("unlocked");
    assert_eq!(state.me.to_hex(), peer_id);
    app.get_by_label("👤 Robin");
    drop(app);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn a_data_directory_in_use_is_reported_in_the_window() {
    let dir = temp_dir("busy");
    let account =
        kith::account::Account::create(&dir, "correct horse", KdfParams::insecure_fast_for_tests())
            .expect("create");
    drop(account);
    // A running daemon holds the control socket of this directory.
    let mut config = loopback();
    config.control_socket = true;
    let daemon = kith::daemon::start(&dir, "correct horse", config.clone()).expect("daemon");
    let mut app = Harness::builder().build_ui_state(
        |ui, app: &mut KithApp| app.show(ui),
        KithApp::with_node(dir.clone(), KdfParams::insecure_fast_for_tests(), config),
    );
    type_into(&mut app, "Passphrase", "correct horse");
    submit(&mut app, "Unlock");
    let error = app
        .state()
        .unlock_state()
        .and_then(|s| s.error.clone())
        .expect("an error in the window");
    assert!(error.contains("already open"), "{error}");
    assert!(error.contains("Is a kith daemon"), "{error}");
    // Nothing changed: the screen still asks for the passphrase.
    assert!(app.state().unlock_state().is_some_and(|s| !s.busy));
    drop(app);
    daemon.shutdown().expect("shutdown");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
