//! The Settings dialog's rules, checked on plain data.

use super::*;

fn state() -> AppState {
    let mut state = AppState::new(PeerId([0; 32]), String::new(), "Robin".into());
    state.apply(Update::Tick { now: 1_000 });
    state.settings.interfaces_in_use = vec!["eth0".into()];
    state
}

#[test]
fn renaming_asks_the_node_and_takes_the_name_it_confirms() {
    let mut state = state();
    let requests = state.handle_intent(Intent::Settings(SettingsIntent::Rename(
        "  Robin Hood ".into(),
    )));
    assert_eq!(
        requests,
        [Request::Settings(SettingsRequest::Rename(
            "Robin Hood".into()
        ))]
    );
    // Not before the node signed it.
    assert_eq!(state.my_name, "Robin");
    state.apply(Update::Settings(SettingsUpdate::Renamed(
        "Robin Hood".into(),
    )));
    assert_eq!(state.my_name, "Robin Hood");
    assert!(
        state
            .toasts
            .iter()
            .any(|t| t.text == "You are now Robin Hood.")
    );
    // The same name again asks nothing.
    let same = state.handle_intent(Intent::Settings(SettingsIntent::Rename(
        "Robin Hood".into(),
    )));
    assert!(same.is_empty());
}

#[test]
fn an_empty_or_long_name_is_refused_with_a_toast() {
    let mut state = state();
    for name in ["   ", &"x".repeat(MAX_PROFILE_NAME + 1)] {
        let requests =
            state.handle_intent(Intent::Settings(SettingsIntent::Rename(name.to_owned())));
        assert!(requests.is_empty(), "{name:?}");
    }
    assert_eq!(state.toasts.iter().filter(|t| t.error).count(), 2);
    assert_eq!(state.my_name, "Robin");
}

#[test]
fn interfaces_are_saved_for_the_next_start() {
    let mut state = state();
    assert!(!state.interfaces_need_restart());
    let requests = state.handle_intent(Intent::Settings(SettingsIntent::SetInterfaces(vec![
        "wlan0".into(),
        "eth0".into(),
        "wlan0".into(),
    ])));
    let saved = AppSettings {
        interfaces: Some(vec!["eth0".into(), "wlan0".into()]),
        theme: Theme::System,
        ..AppSettings::default()
    };
    assert_eq!(
        requests,
        [Request::Settings(SettingsRequest::Save(saved.clone()))]
    );
    assert_eq!(state.settings.saved, saved);
    // In use is still eth0 alone: a restart would change it.
    assert!(state.interfaces_need_restart());
    assert!(state.toasts.iter().any(|t| t.text.contains("next start")));
    // Saving the same again asks nothing.
    let again = state.handle_intent(Intent::Settings(SettingsIntent::SetInterfaces(vec![
        "eth0".into(),
        "wlan0".into(),
    ])));
    assert!(again.is_empty());
    // The command line wins: no restart would change what it chose.
    state.settings.from_command_line = true;
    assert!(!state.interfaces_need_restart());
}

/// With mDNS off (`--no-mdns`) no interface is used to find anyone: a
/// choice that differs from this run's is no reason to restart (a restart
/// with the same flag uses none either), and saving one says when it
/// applies.
#[test]
fn with_mdns_off_the_choice_waits_for_a_start_with_mdns() {
    let mut state = state();
    state.settings.mdns_off = true;
    state.settings.saved.interfaces = Some(vec!["wlan0".into()]);
    assert!(!state.interfaces_need_restart());
    let requests = state.handle_intent(Intent::Settings(SettingsIntent::SetInterfaces(vec![
        "eth0".into(),
    ])));
    assert_eq!(requests.len(), 1);
    assert!(!state.interfaces_need_restart());
    assert!(state.toasts.iter().any(|t| t.text
        == "Saved. kith uses these interfaces for mDNS the next time it starts without --no-mdns."));
    // With mDNS on, the same saved choice is one a restart would use.
    state.settings.mdns_off = false;
    state.settings.saved.interfaces = Some(vec!["wlan0".into()]);
    assert!(state.interfaces_need_restart());
}

#[test]
fn the_theme_is_saved_with_the_interfaces() {
    let mut state = state();
    state.settings.saved.interfaces = Some(vec!["eth0".into()]);
    let requests = state.handle_intent(Intent::Settings(SettingsIntent::SetTheme(Theme::Dark)));
    assert_eq!(
        requests,
        [Request::Settings(SettingsRequest::Save(AppSettings {
            interfaces: Some(vec!["eth0".into()]),
            theme: Theme::Dark,
            ..AppSettings::default()
        }))]
    );
    assert_eq!(state.settings.saved.theme, Theme::Dark);
    assert!(
        state
            .handle_intent(Intent::Settings(SettingsIntent::SetTheme(Theme::Dark)))
            .is_empty()
    );
}

#[test]
fn registry_keepalive_and_multicast_are_checked_saved_and_said_when_they_apply() {
    use rand::SeedableRng;
    let key = {
        let identity =
            crate::proto::crypto::Identity::generate(&mut rand::rngs::StdRng::seed_from_u64(3));
        PeerId(identity.public().to_bytes()).to_hex()
    };
    let mut state = state();
    let set = |state: &mut AppState, intent| state.handle_intent(Intent::Settings(intent));
    // Refused: nothing saved, the dialog and a toast say why.
    for intent in [
        SettingsIntent::SetRegistry {
            addr: "kith.example.org".into(),
            key: key.clone(),
        },
        SettingsIntent::SetRegistry {
            addr: "kith.example.org:47480".into(),
            key: "abc".into(),
        },
        SettingsIntent::SetKeepalive("0".into()),
        SettingsIntent::SetKeepalive("soon".into()),
    ] {
        assert_eq!(set(&mut state, intent.clone()), [], "{intent:?}");
        let problem = state.settings.problem.clone().expect("a reason");
        assert!(state.toasts.iter().any(|t| t.error && t.text == problem));
    }
    assert_eq!(state.settings.saved, AppSettings::default());
    // Accepted: saved, from the next start.
    let requests = set(
        &mut state,
        SettingsIntent::SetRegistry {
            addr: " kith.example.org:47480 ".into(),
            key: key.clone(),
        },
    );
    let registry = Some(RegistrySetting {
        addr: "kith.example.org:47480".into(),
        key: key.clone(),
    });
    assert_eq!(state.settings.saved.registry, registry);
    assert_eq!(state.settings.problem, None);
    assert_eq!(
        requests,
        [Request::Settings(SettingsRequest::Save(
            state.settings.saved.clone()
        ))]
    );
    assert!(
        state
            .toasts
            .iter()
            .any(|t| t.text == "Saved. kith uses this from its next start.")
    );
    set(&mut state, SettingsIntent::SetKeepalive(" 12 ".into()));
    assert_eq!(state.settings.saved.keepalive_secs, Some(12));
    // The default is kept as "none chosen".
    set(&mut state, SettingsIntent::SetKeepalive("5".into()));
    assert_eq!(state.settings.saved.keepalive_secs, None);
    // When the command line chose, saving says that it wins for now.
    state.settings.in_use.room_multicast_given = true;
    set(&mut state, SettingsIntent::SetRoomMulticast(true));
    assert!(state.settings.saved.room_multicast);
    assert!(
        state
            .toasts
            .last()
            .is_some_and(|t| t.text.starts_with("Saved. The command line chooses this"))
    );
    // Unchanged: nothing asked. Both empty: no registry.
    assert_eq!(set(&mut state, SettingsIntent::SetRoomMulticast(true)), []);
    set(
        &mut state,
        SettingsIntent::SetRegistry {
            addr: String::new(),
            key: " ".into(),
        },
    );
    assert_eq!(state.settings.saved.registry, None);
}
