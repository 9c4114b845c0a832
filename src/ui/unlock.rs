//! The unlock screen: creating an account (name, passphrase twice, the
//! LAN interfaces to find people on) or unlocking one; its state has no IO.

use super::backend;
use super::settings::LanInterface;
use std::collections::BTreeSet;

/// The unlock screen's state; no IO in here.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UnlockState {
    /// The data directory has no account: create one.
    pub creating: bool,
    /// The display name others see (creating only).
    pub name: String,
    pub passphrase: String,
    /// The passphrase again (creating only).
    pub repeat: String,
    pub error: Option<String>,
    /// A worker is unlocking.
    pub busy: bool,
    /// The machine's interfaces, to pick the LAN(s) to find people on
    /// (creating only).
    pub interfaces: Vec<LanInterface>,
    /// The interfaces ticked.
    pub picked: BTreeSet<String>,
    /// Interfaces given with `--interface`: used this run instead.
    pub command_line: Vec<String>,
}

/// Inputs to [`UnlockState::apply`].
pub enum UnlockEvent {
    Submitted,
    Finished(Result<(), String>),
}

impl UnlockState {
    /// The first screen for a data directory.
    pub fn new(account_exists: bool) -> Self {
        UnlockState {
            creating: !account_exists,
            ..Default::default()
        }
    }

    /// Why the form cannot be submitted yet, if so.
    pub fn problem(&self) -> Option<&'static str> {
        if self.passphrase.is_empty() {
            Some("Enter a passphrase.")
        } else if self.creating && self.repeat != self.passphrase {
            Some("The two passphrases differ.")
        } else {
            None
        }
    }

    /// A hint on a new passphrase's strength (creating only).
    pub fn strength(&self) -> Option<&'static str> {
        if !self.creating || self.passphrase.is_empty() {
            return None;
        }
        let length = self.passphrase.chars().count();
        let words = self.passphrase.split_whitespace().count();
        Some(if length < 10 {
            "Weak: anyone with this device could guess it. Use four or more words."
        } else if length < 16 && words < 3 {
            "Fair: longer is stronger; a few unrelated words are easy to remember."
        } else {
            "Strong."
        })
    }

    /// Moves the state along; returns the passphrase and name to try when
    /// a worker should start.
    pub fn apply(&mut self, event: UnlockEvent) -> Option<(String, String)> {
        match event {
            UnlockEvent::Submitted if !self.busy && self.problem().is_none() => {
                self.busy = true;
                self.error = None;
                self.repeat.clear();
                Some((std::mem::take(&mut self.passphrase), self.name.clone()))
            }
            UnlockEvent::Submitted => None,
            UnlockEvent::Finished(result) => {
                self.busy = false;
                if let Err(message) = result {
                    self.error = Some(message);
                }
                None
            }
        }
    }
}

/// Draws the unlock screen; whether the user submitted it.
pub(super) fn unlock_screen(ui: &mut egui::Ui, form: &mut UnlockState) -> bool {
    let mut submit = false;
    egui::CentralPanel::default().show(ui, |ui| {
        ui.add_space(ui.available_height() * 0.12);
        ui.vertical_centered(|ui| {
            ui.set_max_width(380.0);
            ui.heading(if form.creating {
                "Welcome to kith"
            } else {
                "Unlock kith"
            });
            ui.add_space(6.0);
            ui.label(if form.creating {
                "Choose the name people nearby will see, and a passphrase. The passphrase \
                 encrypts everything kith keeps on this device."
            } else {
                "Enter your passphrase."
            });
            ui.add_space(10.0);
            let busy = form.busy;
            let mut enter = false;
            if form.creating {
                let label = ui.label("Your name");
                ui.add_enabled(
                    !busy,
                    egui::TextEdit::singleline(&mut form.name)
                        .hint_text("e.g. Sam")
                        .char_limit(backend::MAX_NAME_CHARS),
                )
                .labelled_by(label.id);
            }
            let label = ui.label("Passphrase");
            let field = ui
                .add_enabled(
                    !busy,
                    egui::TextEdit::singleline(&mut form.passphrase).password(true),
                )
                .labelled_by(label.id);
            enter |= field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if form.creating {
                let label = ui.label("Passphrase again");
                let field = ui
                    .add_enabled(
                        !busy,
                        egui::TextEdit::singleline(&mut form.repeat).password(true),
                    )
                    .labelled_by(label.id);
                enter |= field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                if let Some(hint) = form.strength() {
                    ui.weak(hint);
                }
                if !form.repeat.is_empty() && form.repeat != form.passphrase {
                    ui.weak("The two passphrases differ.");
                }
                ui.add_space(8.0);
                // As wide as the fields above, and under them.
                let width = ui.spacing().text_edit_width;
                ui.allocate_ui_with_layout(
                    egui::vec2(width, 0.0),
                    egui::Layout::top_down(egui::Align::Min),
                    |ui| interface_picker(ui, &form.interfaces, &mut form.picked, !busy),
                );
                if !form.command_line.is_empty() {
                    ui.weak(format!(
                        "This time kith uses {} (--interface); your choice here is kept for \
                         later starts.",
                        form.command_line.join(", ")
                    ));
                }
            }
            ui.add_space(6.0);
            let button = ui.add_enabled(
                !busy && form.problem().is_none(),
                egui::Button::new(if form.creating {
                    "Create account"
                } else {
                    "Unlock"
                }),
            );
            submit = (button.clicked() || enter) && form.problem().is_none();
            if busy {
                ui.spinner();
            }
            if let Some(error) = &form.error {
                ui.colored_label(ui.visuals().error_fg_color, error.as_str());
            }
        });
    });
    submit
}

/// The machine's LAN interfaces as check boxes ("eth0 · 192.168.1.20"),
/// loopback left out; `picked` holds the names ticked.
pub fn interface_picker(
    ui: &mut egui::Ui,
    interfaces: &[LanInterface],
    picked: &mut BTreeSet<String>,
    enabled: bool,
) {
    ui.label("Find people on");
    // Interfaces without IPv4 (kith listens on IPv4 by default) are no
    // use, unless chosen before.
    let shown: Vec<&LanInterface> = interfaces
        .iter()
        .filter(|i| !i.loopback && (i.has_ipv4() || picked.contains(&i.name)))
        .collect();
    if shown.is_empty() {
        ui.weak(
            "No network found. You can still add people by address (🌐 Network, once \
             you are in), and pick a network later in Settings.",
        );
        return;
    }
    egui::ScrollArea::vertical()
        .id_salt("interfaces")
        .max_height(110.0)
        .show(ui, |ui| {
            // Left-aligned, also inside the centred first-run screen.
            ui.with_layout(egui::Layout::top_down(egui::Align::Min), |ui| {
                interface_rows(ui, &shown, picked, enabled);
            });
        });
    if picked.is_empty() {
        ui.weak(
            "None ticked: nobody nearby finds you; add people by address in 🌐 Network \
             (they need yours too).",
        );
    }
}

fn interface_rows(
    ui: &mut egui::Ui,
    shown: &[&LanInterface],
    picked: &mut BTreeSet<String>,
    enabled: bool,
) {
    for iface in shown {
        let mut on = picked.contains(&iface.name);
        let label = if iface.multicast {
            iface.label()
        } else {
            format!("{} (cannot announce here)", iface.label())
        };
        let response = ui
            .add_enabled(enabled, egui::Checkbox::new(&mut on, label))
            .on_hover_text(
                "kith announces itself and finds people with mDNS on the networks \
                         ticked here.",
            );
        if response.changed() {
            if on {
                picked.insert(iface.name.clone());
            } else {
                picked.remove(&iface.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlock_flow() {
        let mut state = UnlockState::new(false);
        assert!(state.creating);
        state.passphrase.push_str("secret words here");
        state.name.push_str("Sam");
        // Typed once only: nothing starts.
        assert_eq!(state.apply(UnlockEvent::Submitted), None);
        assert_eq!(state.problem(), Some("The two passphrases differ."));
        state.repeat.push_str("secret words here");
        assert_eq!(state.strength(), Some("Strong."));
        assert_eq!(
            state.apply(UnlockEvent::Submitted),
            Some(("secret words here".into(), "Sam".into()))
        );
        // A second submit while busy starts nothing.
        assert_eq!(state.apply(UnlockEvent::Submitted), None);
        state.apply(UnlockEvent::Finished(Err("wrong passphrase".into())));
        assert_eq!(state.error.as_deref(), Some("wrong passphrase"));
        assert!(!state.busy);
        assert_eq!(state.passphrase, "");
    }

    #[test]
    fn passphrase_strength_hints() {
        let mut state = UnlockState::new(false);
        state.passphrase = "abc".into();
        assert!(state.strength().is_some_and(|s| s.starts_with("Weak")));
        state.passphrase = "abcdefghijkl".into();
        assert!(state.strength().is_some_and(|s| s.starts_with("Fair")));
        let unlocking = UnlockState {
            passphrase: "abc".into(),
            ..UnlockState::new(true)
        };
        assert_eq!(unlocking.strength(), None);
        assert_eq!(unlocking.problem(), None);
    }
}
