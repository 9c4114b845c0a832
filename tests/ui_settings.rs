//! First run picks the LAN interfaces, and the Settings dialog: driven
//! headless with egui_kittest, over a fake backend and over a real node on
//! loopback (which never uses mDNS here: no interface of this machine is
//! ever given to it).
#![cfg(feature = "gui")]

mod ui_support;

use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use kith::account::KdfParams;
use kith::daemon::DaemonConfig;
use kith::proto::ids::PeerId;
use kith::ui::KithApp;
use kith::ui::backend::{FakeLauncher, Given, InterfaceSource, Me, NodeLauncher};
use kith::ui::settings::{AppSettings, LanInterface, Theme};
use kith::ui::state::{Request, SettingsRequest};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use ui_support::{Settle, WAIT};

/// The window's clock: Tuesday 1 December 2026, 18:00 UTC.
const NOW: u64 = 1_796_148_000_000;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kith-ui-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A machine with a wired LAN (the default route), Wi-Fi, a container
/// bridge and loopback. Names no real interface: nothing here is used.
fn interfaces() -> Vec<LanInterface> {
    let iface = |name: &str, addrs: &[&str], multicast: bool| LanInterface {
        name: name.into(),
        addrs: addrs.iter().map(|a| a.parse().expect("literal")).collect(),
        multicast,
        loopback: name == "lo",
    };
    vec![
        iface("enp0s31f6", &["192.168.1.20", "fe80::1"], true),
        iface("wlp2s0", &["10.0.0.7"], true),
        iface("docker0", &["172.17.0.1"], true),
        iface("lo", &["127.0.0.1"], false),
    ]
}

type App = Harness<'static, KithApp>;

fn harness(app: KithApp) -> App {
    Harness::builder()
        .with_size(egui::vec2(1000.0, 660.0))
        // A real node's updates each wake the window, and a spinner waits
        // for its answers in wall time.
        .with_max_steps(256)
        .build_ui_state(|ui, app: &mut KithApp| app.show(ui), app)
}

fn type_into(harness: &mut App, label: &str, text: &str) {
    harness.get_by_label(label).focus();
    harness.settle();
    harness.get_by_label(label).type_text(text);
    harness.settle();
}

fn create_account(harness: &mut App, name: &str) {
    type_into(harness, "Your name", name);
    type_into(harness, "Passphrase", "four random words here");
    type_into(harness, "Passphrase again", "four random words here");
    harness.get_by_label("Create account").click();
    harness.step();
    harness.state_mut().wait_for_worker(WAIT);
    harness.settle();
}

fn checkbox(harness: &App, label: &str) -> bool {
    let node = harness.get_by_role_and_label(egui::accesskit::Role::CheckBox, label);
    node.accesskit_node().toggled() == Some(egui::accesskit::Toggled::True)
}

fn fake_app(dir: &Path) -> (KithApp, Arc<FakeLauncher>) {
    let launcher = FakeLauncher::new(Me {
        peer: PeerId([0; 32]),
        public_key: "00".repeat(32),
        name: String::new(),
    });
    let app = KithApp::new(dir.to_owned(), launcher.clone())
        .with_clock(Arc::new(|| NOW), 0)
        .with_interfaces(interfaces(), Some("enp0s31f6"));
    (app, launcher)
}

#[test]
fn first_run_lists_interfaces_and_preselects_the_default_route() {
    let dir = temp_dir("first-run-pick");
    let (app, _launcher) = fake_app(&dir);
    let mut app = harness(app);
    app.run();
    app.get_by_label("Find people on");
    assert!(checkbox(&app, "enp0s31f6 · 192.168.1.20"));
    assert!(!checkbox(&app, "wlp2s0 · 10.0.0.7"));
    assert!(!checkbox(&app, "docker0 · 172.17.0.1"));
    // Loopback is no LAN: not offered.
    assert!(app.query_by_label_contains("127.0.0.1").is_none());
    // Pick Wi-Fi instead.
    app.get_by_label("enp0s31f6 · 192.168.1.20").click();
    app.get_by_label("wlp2s0 · 10.0.0.7").click();
    app.run();
    create_account(&mut app, "Robin");
    let state = app.state().state().expect("unlocked");
    assert_eq!(
        state.settings.saved.interfaces.as_deref(),
        Some(&["wlp2s0".to_owned()][..])
    );
    drop(app);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn first_run_with_no_interface_ticked_says_what_that_means() {
    let dir = temp_dir("first-run-none");
    let (app, _launcher) = fake_app(&dir);
    let mut app = harness(app);
    app.get_by_label("enp0s31f6 · 192.168.1.20").click();
    app.run();
    app.get_by_label("None ticked: nobody nearby finds you; add people by address in 🌐 Network (they need yours too).");
    // And with no network at all, it says so instead of an empty list.
    let (app, _launcher) = fake_app(&dir);
    let mut app = harness(app.with_interfaces(Vec::new(), None));
    app.run();
    app.get_by_label_contains("No network found.");
}

/// With a real node: the pick is saved in the data directory; a later
/// start uses the saved choice (here: none, so mDNS stays off), and the
/// Settings dialog shows that, the listen address and the data directory.
#[test]
fn the_choice_is_saved_and_used_by_later_starts() {
    let registry_key = {
        use rand::SeedableRng;
        let identity =
            kith::proto::crypto::Identity::generate(&mut rand::rngs::StdRng::seed_from_u64(9));
        PeerId(identity.public().to_bytes()).to_hex()
    };
    let dir = temp_dir("first-run-saved");
    let mut config = DaemonConfig::default();
    config.net.unicast_bind = "127.0.0.1:0".parse().expect("literal address");
    let app = KithApp::with_node(
        dir.clone(),
        KdfParams::insecure_fast_for_tests(),
        config.clone(),
    )
    .with_interfaces(interfaces(), Some("enp0s31f6"));
    let mut app = harness(app);
    // Nothing ticked: nothing of this machine is ever used by the test.
    app.get_by_label("enp0s31f6 · 192.168.1.20").click();
    app.settle();
    create_account(&mut app, "Robin");
    assert!(app.state().state().is_some(), "unlocked");
    drop(app);
    assert_eq!(
        AppSettings::load(&dir),
        AppSettings {
            interfaces: Some(Vec::new()),
            theme: Theme::System,
            ..AppSettings::default()
        }
    );

    // A later start that follows the saved choice.
    let launcher = Arc::new(NodeLauncher {
        kdf: KdfParams::insecure_fast_for_tests(),
        config: config.clone(),
        interfaces: InterfaceSource::Saved,
        saved_choices: Some(Given::default()),
    });
    let mut app = harness(
        KithApp::new(dir.clone(), launcher).with_interfaces(interfaces(), Some("enp0s31f6")),
    );
    type_into(&mut app, "Passphrase", "four random words here");
    app.get_by_label("Unlock").click();
    app.step();
    app.state_mut().wait_for_worker(WAIT);
    app.settle();
    let settings = app.state().state().expect("unlocked").settings.clone();
    assert_eq!(settings.interfaces_in_use, Vec::<String>::new());
    assert!(!settings.from_command_line);
    let listen = settings.listen.clone().expect("the node's address");
    assert!(listen.starts_with("127.0.0.1:"), "{listen}");
    app.get_by_label("⚙ Settings").click();
    app.settle();
    app.get_by_label("In use now: none (mDNS is off).");
    app.get_by_label(&format!("This node listens on {listen} (UDP)."));
    app.get_by_label(&dir.display().to_string());

    // Renaming goes through the node's signed profile.
    app.get_by_label("Name").focus();
    app.settle();
    app.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    app.settle();
    app.get_by_label("Name").type_text("Robin Hood");
    app.settle();
    app.get_by_label("Save name").click();
    app.settle();
    assert!(
        app.state_mut()
            .wait_until(WAIT, |s| s.my_name == "Robin Hood")
    );

    // Registry, keep-alive and room multicast: a bad value is refused and
    // never saved; good ones are saved and used from the next start.
    app.get_by_label("Keep-alive every (seconds)").focus();
    app.settle();
    app.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    app.get_by_label("Keep-alive every (seconds)")
        .type_text("0");
    app.settle();
    app.get_by_label("Save keep-alive").click();
    app.settle();
    // Said in the dialog and in a toast.
    let refused = "The keep-alive is a whole number of seconds, 1 to 600.";
    assert_eq!(app.query_all_by_label(refused).count(), 2);
    assert_eq!(AppSettings::load(&dir).keepalive_secs, None);
    app.get_by_label("Keep-alive every (seconds)").focus();
    app.settle();
    app.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    app.get_by_label("Keep-alive every (seconds)")
        .type_text("12");
    app.settle();
    app.get_by_label("Save keep-alive").click();
    app.settle();
    type_into(&mut app, "Registry address", "127.0.0.1");
    type_into(&mut app, "Registry key", &registry_key);
    app.get_by_label("Save registry").click();
    app.settle();
    let refused = "\"127.0.0.1\" has no port: write it as host:port.";
    assert_eq!(app.query_all_by_label(refused).count(), 2);
    assert_eq!(AppSettings::load(&dir).registry, None);
    app.get_by_label("Registry address").focus();
    app.settle();
    app.get_by_label("Registry address").type_text(":47999");
    app.settle();
    app.get_by_label("Save registry").click();
    app.settle();
    app.get_by_label("Multicast for rooms").click();
    app.settle();
    assert!(
        app.state_mut()
            .wait_until(WAIT, |s| s.my_name == "Robin Hood")
    );
    drop(app);
    assert_eq!(kith::ui::backend::read_name(&dir), "Robin Hood");
    let saved = AppSettings::load(&dir);
    assert_eq!(saved.keepalive_secs, Some(12));
    assert_eq!(
        saved
            .registry
            .as_ref()
            .map(|r| (r.addr.as_str(), r.key.as_str())),
        Some(("127.0.0.1:47999", registry_key.as_str()))
    );
    assert!(saved.room_multicast);

    // The next start builds the node from them (no interface in use: room
    // multicast cannot be, and a note says so).
    let launcher = Arc::new(NodeLauncher {
        kdf: KdfParams::insecure_fast_for_tests(),
        config: config.clone(),
        interfaces: InterfaceSource::Saved,
        saved_choices: Some(Given::default()),
    });
    let mut app = harness(KithApp::new(dir.clone(), launcher));
    type_into(&mut app, "Passphrase", "four random words here");
    app.get_by_label("Unlock").click();
    app.step();
    app.state_mut().wait_for_worker(WAIT);
    app.settle();
    let state = app.state().state().expect("unlocked");
    assert_eq!(
        state.settings.in_use.registry.as_deref(),
        Some("127.0.0.1:47999")
    );
    assert_eq!(state.settings.in_use.keepalive_secs, 12);
    assert!(state.settings.in_use.room_multicast.is_empty());
    assert!(
        state
            .toasts
            .iter()
            .any(|t| t.text.starts_with("Multicast for rooms is on in Settings"))
    );
    // The node runs with them: its Network panel says so.
    app.get_by_label("🌐 Network").click();
    app.settle();
    let shown = app.state_mut().wait_until(WAIT, |s| {
        s.network.report.as_ref().is_some_and(|(r, _)| {
            r.keepalive_secs.0 == 12
                && r.registry
                    .as_ref()
                    .is_some_and(|g| g.addr == "127.0.0.1:47999")
        })
    });
    let state = app.state().state().expect("unlocked");
    assert!(shown, "{:?} {:?}", state.dialog, state.network);
    drop(app);
    // The command line wins over what is saved.
    let mut given = config.clone();
    given.discovery.presence.keepalive_interval = Duration::from_secs(7);
    let launcher = Arc::new(NodeLauncher {
        kdf: KdfParams::insecure_fast_for_tests(),
        config: given,
        interfaces: InterfaceSource::Saved,
        saved_choices: Some(Given {
            keepalive: true,
            ..Given::default()
        }),
    });
    let mut app = harness(KithApp::new(dir.clone(), launcher));
    type_into(&mut app, "Passphrase", "four random words here");
    app.get_by_label("Unlock").click();
    app.step();
    app.state_mut().wait_for_worker(WAIT);
    app.settle();
    let state = app.state().state().expect("unlocked");
    assert_eq!(state.settings.in_use.keepalive_secs, 7);
    assert!(state.settings.in_use.keepalive_given);
    assert_eq!(
        state.settings.in_use.registry.as_deref(),
        Some("127.0.0.1:47999")
    );
    drop(app);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn settings_dialog_changes_name_networks_and_theme() {
    // Shown in the snapshot, so the same on every machine; the fake
    // backend writes nothing there.
    let dir = PathBuf::from("/home/robin/.local/share/kith");
    let (app, launcher) = fake_app(&dir);
    let mut app = harness(app);
    create_account(&mut app, "Robin");
    let fake = launcher.backend().expect("unlocked");
    // From the "You" dialog, as from the button beside it.
    app.get_by_label("👤 Robin").click();
    app.run();
    app.get_by_label("Settings…").click();
    app.run();
    app.get_by_label("In use now: enp0s31f6.");
    app.get_by_label("Takes effect the next time kith starts.");

    app.get_by_label("Name").focus();
    app.run();
    app.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    app.run();
    app.get_by_label("Name").type_text("Robin Hood");
    app.run();
    app.get_by_label("Save name").click();
    app.run();
    assert_eq!(app.state().state().expect("unlocked").my_name, "Robin Hood");

    app.get_by_label("wlp2s0 · 10.0.0.7").click();
    app.run();
    app.get_by_label("Save networks").click();
    app.run();
    app.get_by_label("In use now: enp0s31f6. Restart kith to use the saved choice.");

    assert_eq!(
        app.ctx.options(|o| o.theme_preference),
        egui::ThemePreference::System
    );
    app.get_by_label("Light").click();
    app.run();
    assert_eq!(app.ctx.theme(), egui::Theme::Light);
    app.hover_at(egui::pos2(900.0, 100.0));
    app.run();
    app.snapshot("settings");

    let requests = fake.take_requests();
    assert!(
        requests.contains(&Request::Settings(SettingsRequest::Rename(
            "Robin Hood".into()
        )))
    );
    assert!(
        requests.contains(&Request::Settings(SettingsRequest::Save(AppSettings {
            interfaces: Some(vec!["enp0s31f6".into(), "wlp2s0".into()]),
            theme: Theme::System,
            ..AppSettings::default()
        })))
    );
    assert!(
        requests.contains(&Request::Settings(SettingsRequest::Save(AppSettings {
            interfaces: Some(vec!["enp0s31f6".into(), "wlp2s0".into()]),
            theme: Theme::Light,
            ..AppSettings::default()
        })))
    );
    drop(app);
    assert!(!dir.exists(), "the fake wrote into {}", dir.display());
}

/// A node started with mDNS off (`--no-mdns`): the dialog says plainly
/// that no interface finds anyone in this run, shows the saved choice as
/// it stands (nothing to save), never asks for a restart that would change
/// nothing, and saving another choice says it waits for mDNS.
#[test]
fn with_mdns_off_the_interface_boxes_say_they_find_nobody_now() {
    let dir = temp_dir("settings-no-mdns");
    let mut config = DaemonConfig::default();
    config.net.unicast_bind = "127.0.0.1:0".parse().expect("literal address");
    config.discovery.mdns = false;
    // An account to unlock, made by a first start that saves its choice
    // (the default route's interface, preselected).
    let first = KithApp::with_node(
        dir.clone(),
        KdfParams::insecure_fast_for_tests(),
        config.clone(),
    )
    .with_interfaces(interfaces(), Some("enp0s31f6"));
    let mut app = harness(first);
    create_account(&mut app, "Robin");
    assert!(app.state().state().is_some(), "unlocked");
    drop(app);
    let launcher = Arc::new(NodeLauncher {
        kdf: KdfParams::insecure_fast_for_tests(),
        config,
        interfaces: InterfaceSource::Saved,
        saved_choices: Some(Given::default()),
    });
    let mut app = harness(
        KithApp::new(dir.clone(), launcher).with_interfaces(interfaces(), Some("enp0s31f6")),
    );
    type_into(&mut app, "Passphrase", "four random words here");
    app.get_by_label("Unlock").click();
    app.step();
    app.state_mut().wait_for_worker(Duration::from_secs(30));
    app.run();
    let settings = &app.state().state().expect("unlocked").settings;
    assert!(settings.mdns_off);
    assert_eq!(settings.interfaces_in_use, ["enp0s31f6"]);
    app.get_by_label("⚙ Settings").click();
    app.run();
    app.get_by_label(
        "mDNS is off (kith was started with --no-mdns): nobody nearby is found on these \
         interfaces, and nobody nearby finds you. Add people by address (🌐 Network) or \
         through a registry.",
    );
    app.get_by_label("In use now: none (mDNS is off).");
    app.get_by_label("For mDNS the next time kith starts without --no-mdns.");
    assert_eq!(
        app.query_all_by_label_contains("Restart kith").count(),
        0,
        "a restart with --no-mdns would use no interface either"
    );
    // The saved choice, ticked as it stands: nothing to save.
    assert!(checkbox(&app, "enp0s31f6 · 192.168.1.20"));
    assert!(!checkbox(&app, "wlp2s0 · 10.0.0.7"));
    assert!(
        app.get_by_label("Save networks")
            .accesskit_node()
            .is_disabled()
    );
    app.get_by_label("wlp2s0 · 10.0.0.7").click();
    app.run();
    app.get_by_label("Save networks").click();
    app.run_steps(2);
    let said = "Saved. kith uses these interfaces for mDNS the next time it starts without \
                --no-mdns.";
    assert!(app.state_mut().wait_until(Duration::from_secs(10), |s| {
        s.toasts.iter().any(|t| t.text == said)
    }));
    assert_eq!(app.query_all_by_label_contains("Restart kith").count(), 0);
    drop(app);
    assert_eq!(
        AppSettings::load(&dir).interfaces,
        Some(vec!["enp0s31f6".into(), "wlp2s0".into()])
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// The first-run screen with its interface list, as an image.
#[test]
fn snapshot_of_first_run() {
    let dir = temp_dir("snapshot-first-run");
    let (app, _launcher) = fake_app(&dir);
    let mut app = harness(app);
    app.run();
    app.snapshot("first_run");
}

/// An account made with `kith init --name` (no name file, a signed
/// profile) shows its name, and `--no-mdns` shows as no interface in use.
#[test]
fn an_account_made_by_the_cli_shows_its_profile_name() {
    let dir = temp_dir("cli-account");
    drop(
        kith::account::Account::create(&dir, "correct horse", KdfParams::insecure_fast_for_tests())
            .expect("create"),
    );
    let mut config = DaemonConfig::default();
    config.net.unicast_bind = "127.0.0.1:0".parse().expect("literal address");
    let daemon = kith::daemon::start(&dir, "correct horse", config.clone()).expect("daemon");
    daemon.set_profile("Kim").expect("profile");
    daemon.shutdown().expect("shutdown");
    // Named, but mDNS is off: nothing of this machine is used.
    config.discovery.interfaces = vec!["lo".parse().expect("literal")];
    config.discovery.mdns = false;
    let mut app = harness(KithApp::with_node(
        dir.clone(),
        KdfParams::insecure_fast_for_tests(),
        config,
    ));
    type_into(&mut app, "Passphrase", "correct horse");
    app.get_by_label("Unlock").click();
    app.step();
    app.state_mut().wait_for_worker(WAIT);
    app.settle();
    let state = app.state().state().expect("unlocked");
    assert_eq!(state.my_name, "Kim");
    // Listed as named, and flagged: with mDNS off none is used to find
    // anyone.
    assert!(state.settings.mdns_off);
    assert_eq!(state.settings.interfaces_in_use, ["lo"]);
    app.get_by_label("👤 Kim");
    drop(app);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
