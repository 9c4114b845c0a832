//! The desktop app driven headless with egui_kittest: create an account by
//! typing a passphrase and clicking, see your identity, verify a contact;
//! then a wrong passphrase on reopening shows the error.
#![cfg(feature = "gui")]

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use kith::store::KdfParams;
use kith::ui::{KithApp, UnlockState};
use std::path::PathBuf;
use std::time::Duration;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kith-ui-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn harness(dir: &std::path::Path) -> Harness<'static, KithApp> {
    Harness::new_ui_state(
        |ui, app: &mut KithApp| app.show(ui),
        KithApp::new(dir.to_owned(), KdfParams::insecure_fast_for_tests()),
    )
}

fn submit_passphrase(harness: &mut Harness<'static, KithApp>, button: &str, passphrase: &str) {
    harness.get_by_label("Passphrase").focus();
    harness.run();
    harness.get_by_label("Passphrase").type_text(passphrase);
    harness.run();
    harness.get_by_label(button).click();
    harness.run();
    harness
        .state_mut()
        .wait_for_worker(Duration::from_secs(30));
    harness.run();
}

#[test]
fn create_account_then_verify_a_contact_then_wrong_passphrase() {
    let dir = temp_dir("create");
    let mut app = harness(&dir);
    app.get_by_label("Welcome to kith");
    submit_passphrase(&mut app, "Create account", "correct horse");
    let peer_id = match app.state() {
        UnlockState::Unlocked { account, .. } => account.peer_id.clone(),
        other => panic!("not unlocked: {other:?}"),
    };
    // The screen shows the identity that the store now holds.
    app.get_by_label(&peer_id);

    // Paste a contact's key: a safety number appears.
    let contact = kith::proto::crypto::Identity::generate(&mut rand::rng()).public();
    let contact_hex = kith::proto::ids::PeerId(contact.to_bytes()).to_hex();
    app.get_by_label("Their public key").focus();
    app.run();
    app.get_by_label("Their public key").type_text(&contact_hex);
    app.run();
    app.get_by_label("Safety number: read it aloud together; it must match.");
    drop(app);

    // Reopen with the wrong passphrase: a clear error, still locked.
    let mut app = harness(&dir);
    app.get_by_label("Unlock kith");
    submit_passphrase(&mut app, "Unlock", "wrong horse");
    assert!(matches!(app.state(), UnlockState::Locked { .. }));
    app.get_by_label("wrong passphrase");
    drop(app);

    // And the right one unlocks the same identity.
    let mut app = harness(&dir);
    submit_passphrase(&mut app, "Unlock", "correct horse");
    app.get_by_label(&peer_id);
    drop(app);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
