//! The Settings dialog: display name, LAN interfaces, registry,
//! keep-alive, multicast for rooms, theme; and where the account lives and
//! what this node listens on.

use super::Local;
use crate::ui::settings::DEFAULT_KEEPALIVE_SECS;
use crate::ui::state::{AppState, Intent, MAX_PROFILE_NAME, SettingsIntent, Theme};
use std::collections::BTreeSet;

/// What the dialog edits before it is saved (dropped when it closes).
#[derive(Debug, Default)]
pub struct Draft {
    pub name: String,
    pub picked: BTreeSet<String>,
    pub registry_addr: String,
    pub registry_key: String,
    pub keepalive: String,
}

/// Draws the dialog's content.
pub fn show(ui: &mut egui::Ui, state: &AppState, local: &mut Local) -> Vec<Intent> {
    let mut out = Vec::new();
    let settings = &state.settings;
    let draft = local.settings.get_or_insert_with(|| Draft {
        name: state.my_name.clone(),
        picked: settings
            .saved
            .interfaces
            .clone()
            .unwrap_or_else(|| settings.interfaces_in_use.clone())
            .into_iter()
            .collect(),
        registry_addr: settings
            .saved
            .registry
            .as_ref()
            .map(|r| r.addr.clone())
            .unwrap_or_default(),
        registry_key: settings
            .saved
            .registry
            .as_ref()
            .map(|r| r.key.clone())
            .unwrap_or_default(),
        keepalive: settings
            .saved
            .keepalive_secs
            .unwrap_or(DEFAULT_KEEPALIVE_SECS)
            .to_string(),
    });
    // Two columns: the window's height is the scarcer.
    ui.horizontal_top(|ui| {
        ui.vertical(|ui| {
            ui.set_width(400.0);
            you_and_this_device(ui, state, draft, &mut out);
        });
        ui.separator();
        ui.vertical(|ui| {
            ui.set_width(360.0);
            out.extend(node_choices(ui, state, draft));
            ui.separator();
            out.extend(super::files::save_to_setting(ui, state, &mut local.files));
        });
    });
    out
}

/// Name, interfaces, theme and data directory.
fn you_and_this_device(
    ui: &mut egui::Ui,
    state: &AppState,
    draft: &mut Draft,
    out: &mut Vec<Intent>,
) {
    let settings = &state.settings;

    ui.strong("Your name");
    ui.horizontal(|ui| {
        let label = ui.label("Name");
        let field = ui
            .add(
                egui::TextEdit::singleline(&mut draft.name)
                    .char_limit(MAX_PROFILE_NAME)
                    .desired_width(220.0),
            )
            .labelled_by(label.id);
        let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        let changed = !draft.name.trim().is_empty() && draft.name.trim() != state.my_name;
        if (ui
            .add_enabled(changed, egui::Button::new("Save name"))
            .clicked()
            || enter)
            && changed
        {
            out.push(Intent::Settings(SettingsIntent::Rename(
                draft.name.trim().to_owned(),
            )));
        }
    });
    ui.weak(
        "Contacts and room members get the new name at once (those away, when they are \
         back); nearby people see it after kith restarts.",
    );

    ui.separator();
    ui.strong("Network");
    if settings.mdns_off {
        // Said first and plainly: ticking a box finds nobody in this run.
        ui.label(
            "mDNS is off (kith was started with --no-mdns): nobody nearby is found on \
             these interfaces, and nobody nearby finds you. Add people by address \
             (🌐 Network) or through a registry.",
        );
        if !settings.in_use.room_multicast.is_empty() || settings.in_use.registry.is_some() {
            ui.weak(
                "The interfaces in use still carry multicast for rooms and give the \
                 addresses the registry is told.",
            );
        }
    }
    crate::ui::interface_picker(ui, &settings.available, &mut draft.picked, true);
    let saved: Option<Vec<String>> = settings.saved.interfaces.clone();
    let picked: Vec<String> = draft.picked.iter().cloned().collect();
    ui.horizontal(|ui| {
        let changed = saved.as_ref() != Some(&picked);
        if ui
            .add_enabled(changed, egui::Button::new("Save networks"))
            .clicked()
        {
            out.push(Intent::Settings(SettingsIntent::SetInterfaces(
                picked.clone(),
            )));
        }
        if settings.mdns_off {
            ui.weak("For mDNS the next time kith starts without --no-mdns.");
        } else {
            ui.weak("Takes effect the next time kith starts.");
        }
    });
    let in_use = if settings.mdns_off || settings.interfaces_in_use.is_empty() {
        "none (mDNS is off)".to_owned()
    } else {
        settings.interfaces_in_use.join(", ")
    };
    if settings.mdns_off {
        ui.label(format!("In use now: {in_use}."));
    } else if settings.from_command_line {
        ui.label(format!(
            "In use now: {in_use}, from the command line (--interface wins over what is saved)."
        ));
    } else if state.interfaces_need_restart() {
        ui.label(format!(
            "In use now: {in_use}. Restart kith to use the saved choice."
        ));
    } else {
        ui.label(format!("In use now: {in_use}."));
    }
    match &settings.listen {
        Some(addr) => ui.label(format!("This node listens on {addr} (UDP).")),
        None => ui.label("This node's address is not known yet."),
    };
    if ui
        .button("Add a peer by address…")
        .on_hover_text("Where mDNS is blocked: opens the Network panel")
        .clicked()
    {
        out.push(Intent::OpenDialog(crate::ui::state::Dialog::Network));
    }

    ui.separator();
    ui.strong("Appearance");
    ui.horizontal(|ui| {
        for (theme, label) in Theme::ALL {
            if ui.radio(settings.saved.theme == theme, label).clicked() {
                out.push(Intent::Settings(SettingsIntent::SetTheme(theme)));
            }
        }
    });

    ui.separator();
    ui.strong("Data directory");
    ui.horizontal_wrapped(|ui| {
        ui.monospace(&settings.data_dir);
    });
    ui.weak(
        "Messages and keys in there are encrypted with your passphrase; these settings, the \
         window's size and the name announced nearby are plain files.",
    );
}

/// "From the command line this time" or "from the next start", honestly.
fn when(given: bool) -> &'static str {
    if given {
        "The command line chooses this now (it wins over what is saved here)."
    } else {
        "Used from kith's next start."
    }
}

/// The registry, keep-alive and multicast for rooms.
fn node_choices(ui: &mut egui::Ui, state: &AppState, draft: &mut Draft) -> Vec<Intent> {
    let mut out = Vec::new();
    let settings = &state.settings;
    let in_use = &settings.in_use;
    ui.strong("Registry");
    ui.weak(
        "A registry helps people find each other where mDNS cannot reach (another \
         network). Leave both empty for none.",
    );
    egui::Grid::new("settings registry")
        .num_columns(2)
        .spacing([8.0, 4.0])
        .show(ui, |ui| {
            let label = ui.label("Registry address");
            ui.add(
                egui::TextEdit::singleline(&mut draft.registry_addr)
                    .hint_text("host:port")
                    .desired_width(260.0),
            )
            .labelled_by(label.id);
            ui.end_row();
            let label = ui.label("Registry key");
            ui.add(
                egui::TextEdit::singleline(&mut draft.registry_key)
                    .hint_text("64 hexadecimal characters")
                    .font(egui::TextStyle::Monospace)
                    .char_limit(200)
                    .desired_width(260.0),
            )
            .labelled_by(label.id);
            ui.end_row();
        });
    let saved_addr = settings.saved.registry.as_ref().map(|r| r.addr.as_str());
    let saved_key = settings.saved.registry.as_ref().map(|r| r.key.as_str());
    let changed = draft.registry_addr.trim() != saved_addr.unwrap_or("")
        || draft.registry_key.trim() != saved_key.unwrap_or("");
    ui.horizontal(|ui| {
        if ui
            .add_enabled(changed, egui::Button::new("Save registry"))
            .clicked()
        {
            out.push(Intent::Settings(SettingsIntent::SetRegistry {
                addr: draft.registry_addr.clone(),
                key: draft.registry_key.clone(),
            }));
        }
        ui.weak(when(in_use.registry_given));
    });
    ui.label(match &in_use.registry {
        Some(addr) => format!("In use now: {addr}."),
        None => "In use now: none.".to_owned(),
    });

    ui.add_space(6.0);
    ui.strong("Presence");
    ui.horizontal(|ui| {
        let label = ui.label("Keep-alive every (seconds)");
        ui.add(egui::TextEdit::singleline(&mut draft.keepalive).desired_width(50.0))
            .labelled_by(label.id);
        let saved = settings
            .saved
            .keepalive_secs
            .unwrap_or(DEFAULT_KEEPALIVE_SECS)
            .to_string();
        if ui
            .add_enabled(
                draft.keepalive.trim() != saved,
                egui::Button::new("Save keep-alive"),
            )
            .clicked()
        {
            out.push(Intent::Settings(SettingsIntent::SetKeepalive(
                draft.keepalive.clone(),
            )));
        }
    });
    ui.weak(format!(
        "Contacts are offline after 3 missed keep-alives; shorter notices sooner and sends \
         more. In use now: every {} s. {}",
        in_use.keepalive_secs,
        when(in_use.keepalive_given)
    ));

    ui.add_space(6.0);
    let mut multicast = settings.saved.room_multicast;
    if ui
        .checkbox(&mut multicast, "Multicast for rooms")
        .on_hover_text(
            "Group rooms send one datagram to everyone on the networks in use instead of \
             one per member.",
        )
        .changed()
    {
        out.push(Intent::Settings(SettingsIntent::SetRoomMulticast(
            multicast,
        )));
    }
    let now = if in_use.room_multicast.is_empty() {
        "In use now: off (one datagram per member).".to_owned()
    } else {
        let addrs: Vec<String> = in_use
            .room_multicast
            .iter()
            .map(ToString::to_string)
            .collect();
        format!("In use now: on {}.", addrs.join(", "))
    };
    ui.weak(format!("{now} {}", when(in_use.room_multicast_given)));
    if let Some(problem) = &settings.problem {
        ui.colored_label(ui.visuals().error_fg_color, problem.as_str());
    }
    out
}
