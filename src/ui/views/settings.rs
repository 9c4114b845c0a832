//! The Settings dialog: display name, LAN interfaces, theme; and where the
//! account lives and what this node listens on.

use super::Local;
use crate::ui::state::{AppState, Intent, MAX_PROFILE_NAME, SettingsIntent, Theme};
use std::collections::BTreeSet;

/// What the dialog edits before it is saved (dropped when it closes).
#[derive(Debug, Default)]
pub struct Draft {
    pub name: String,
    pub picked: BTreeSet<String>,
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
    });
    ui.set_max_width(460.0);

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
        ui.weak("Takes effect the next time kith starts.");
    });
    let in_use = if settings.interfaces_in_use.is_empty() {
        "none (mDNS is off)".to_owned()
    } else {
        settings.interfaces_in_use.join(", ")
    };
    if settings.from_command_line {
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
    out
}
