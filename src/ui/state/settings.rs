//! The Settings dialog's state: name, interfaces, registry, keep-alive,
//! room multicast, theme.

use super::*;

pub use crate::ui::settings::{AppSettings, LanInterface, NodeChoices, RegistrySetting, Theme};
use crate::ui::settings::{check_keepalive, check_registry};

/// What the Settings dialog shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettingsState {
    /// Where the account lives.
    pub data_dir: String,
    /// The address this node listens on, once known.
    pub listen: Option<String>,
    /// The interfaces this run was given: those mDNS uses, unless
    /// `mdns_off`.
    pub interfaces_in_use: Vec<String>,
    /// mDNS is off in this run (`--no-mdns`): no interface is used to
    /// find anyone, nor to be found; the choice waits for a start with
    /// mDNS on.
    pub mdns_off: bool,
    /// This run's interfaces came from `--interface` on the command line
    /// (the saved choice is used when it names none).
    pub from_command_line: bool,
    /// What is saved in the data directory (interfaces and theme).
    pub saved: AppSettings,
    /// The machine's interfaces, for picking.
    pub available: Vec<LanInterface>,
    /// The registry, keep-alive and room multicast this run uses, and
    /// which of them the command line chose.
    pub in_use: NodeChoices,
    /// Why the last change was refused (shown in the dialog).
    pub problem: Option<String>,
}

/// What the user changes in the Settings dialog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettingsIntent {
    /// Our display name (the signed profile contacts receive).
    Rename(String),
    /// The interfaces to use from the next start.
    SetInterfaces(Vec<String>),
    SetTheme(Theme),
    /// The registry's address and key as typed (both empty: none), from
    /// the next start.
    SetRegistry {
        addr: String,
        key: String,
    },
    /// Seconds between keep-alives as typed, from the next start.
    SetKeepalive(String),
    /// Group rooms by multicast on the interfaces in use, from the next
    /// start.
    SetRoomMulticast(bool),
}

/// What the node (or its worker) does for the Settings dialog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettingsRequest {
    /// Sign and send our new profile name; answered by
    /// [`SettingsUpdate::Renamed`] or an error.
    Rename(String),
    /// Write the settings file of the data directory.
    Save(AppSettings),
}

/// Answers for the Settings dialog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettingsUpdate {
    /// Our name is now this.
    Renamed(String),
}

/// Longest display name, in characters (as the node's profiles allow).
pub const MAX_PROFILE_NAME: usize = 64;

impl AppState {
    pub(super) fn handle_settings(&mut self, intent: SettingsIntent) -> Vec<Request> {
        match intent {
            SettingsIntent::Rename(name) => {
                let name = name.trim().to_owned();
                if name.is_empty() || name.chars().count() > MAX_PROFILE_NAME {
                    self.toast(
                        format!("A name has 1 to {MAX_PROFILE_NAME} characters."),
                        true,
                    );
                    return Vec::new();
                }
                if name == self.my_name {
                    return Vec::new();
                }
                vec![Request::Settings(SettingsRequest::Rename(name))]
            }
            SettingsIntent::SetInterfaces(mut names) => {
                names.sort();
                names.dedup();
                if self.settings.saved.interfaces.as_ref() == Some(&names) {
                    return Vec::new();
                }
                self.settings.saved.interfaces = Some(names);
                let when = if self.settings.mdns_off {
                    "for mDNS the next time it starts without --no-mdns"
                } else {
                    "from its next start"
                };
                self.toast(format!("Saved. kith uses these interfaces {when}."), false);
                vec![Request::Settings(SettingsRequest::Save(
                    self.settings.saved.clone(),
                ))]
            }
            SettingsIntent::SetRegistry { addr, key } => match check_registry(&addr, &key) {
                Ok(registry) => {
                    let given = self.settings.in_use.registry_given;
                    self.save_choice(given, |saved| saved.registry = registry)
                }
                Err(problem) => self.refuse(problem),
            },
            SettingsIntent::SetKeepalive(text) => match check_keepalive(&text) {
                Ok(secs) => {
                    let given = self.settings.in_use.keepalive_given;
                    // The default is saved as none (it may change).
                    let secs =
                        (secs != crate::ui::settings::DEFAULT_KEEPALIVE_SECS).then_some(secs);
                    self.save_choice(given, |saved| saved.keepalive_secs = secs)
                }
                Err(problem) => self.refuse(problem),
            },
            SettingsIntent::SetRoomMulticast(on) => {
                let given = self.settings.in_use.room_multicast_given;
                self.save_choice(given, |saved| saved.room_multicast = on)
            }
            SettingsIntent::SetTheme(theme) => {
                if self.settings.saved.theme == theme {
                    return Vec::new();
                }
                self.settings.saved.theme = theme;
                vec![Request::Settings(SettingsRequest::Save(
                    self.settings.saved.clone(),
                ))]
            }
        }
    }

    /// Saves a node choice changed by `change`, saying honestly when it
    /// applies: from the next start, unless the command line (`given`)
    /// chooses it then too.
    fn save_choice(&mut self, given: bool, change: impl FnOnce(&mut AppSettings)) -> Vec<Request> {
        let mut saved = self.settings.saved.clone();
        change(&mut saved);
        self.settings.problem = None;
        if saved == self.settings.saved {
            return Vec::new();
        }
        self.settings.saved = saved;
        self.toast(
            if given {
                "Saved. The command line chooses this for now; kith uses what you saved when \
                 started without it."
            } else {
                "Saved. kith uses this from its next start."
            }
            .to_owned(),
            false,
        );
        vec![Request::Settings(SettingsRequest::Save(
            self.settings.saved.clone(),
        ))]
    }

    /// Refuses a change: nothing is saved, the dialog and a toast say why.
    fn refuse(&mut self, problem: String) -> Vec<Request> {
        self.settings.problem = Some(problem.clone());
        self.toast(problem, true);
        Vec::new()
    }

    pub(super) fn apply_settings(&mut self, update: SettingsUpdate) {
        match update {
            SettingsUpdate::Renamed(name) => {
                self.toast(format!("You are now {name}."), false);
                self.my_name = name;
            }
        }
    }

    /// Whether the interfaces saved differ from those in use (a restart
    /// would change them; not when the command line chose, nor while mDNS
    /// is off: a restart with `--no-mdns` uses none either).
    pub fn interfaces_need_restart(&self) -> bool {
        !self.settings.from_command_line
            && !self.settings.mdns_off
            && self
                .settings
                .saved
                .interfaces
                .as_ref()
                .is_some_and(|saved| {
                    let mut in_use = self.settings.interfaces_in_use.clone();
                    in_use.sort();
                    *saved != in_use
                })
    }
}
