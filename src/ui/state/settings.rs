//! The Settings dialog's state: name, interfaces, theme.

use super::*;

pub use crate::ui::settings::{AppSettings, LanInterface, Theme};

/// What the Settings dialog shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettingsState {
    /// Where the account lives.
    pub data_dir: String,
    /// The address this node listens on, once known.
    pub listen: Option<String>,
    /// The interfaces mDNS uses in this run.
    pub interfaces_in_use: Vec<String>,
    /// This run's interfaces came from `--interface` on the command line
    /// (the saved choice is used when it names none).
    pub from_command_line: bool,
    /// What is saved in the data directory (interfaces and theme).
    pub saved: AppSettings,
    /// The machine's interfaces, for picking.
    pub available: Vec<LanInterface>,
}

/// What the user changes in the Settings dialog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettingsIntent {
    /// Our display name (the signed profile contacts receive).
    Rename(String),
    /// The interfaces to use from the next start.
    SetInterfaces(Vec<String>),
    SetTheme(Theme),
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
                self.toast(
                    "Saved. kith uses these interfaces from its next start.".to_owned(),
                    false,
                );
                vec![Request::Settings(SettingsRequest::Save(
                    self.settings.saved.clone(),
                ))]
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

    pub(super) fn apply_settings(&mut self, update: SettingsUpdate) {
        match update {
            SettingsUpdate::Renamed(name) => {
                self.toast(format!("You are now {name}."), false);
                self.my_name = name;
            }
        }
    }

    /// Whether the interfaces saved differ from those in use (a restart
    /// would change them; not when the command line chose).
    pub fn interfaces_need_restart(&self) -> bool {
        !self.settings.from_command_line
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
