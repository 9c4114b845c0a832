//! The desktop app (feature `gui`).
//!
//! Today it unlocks (or creates) the account and shows who you are: your
//! peer id, your public key, and the safety number with a contact whose key
//! you paste. Chats arrive with the node.
//!
//! The UI never blocks: unlocking runs Argon2id and SQLCipher on a worker
//! thread, and the screen is a pure [`UnlockState`] that the frame loop only
//! renders and feeds with events.

pub mod backend;
pub mod state;

use crate::account::{Account, AccountError};
use crate::proto::crypto::{PublicIdentity, safety_number};
use crate::store::KdfParams;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError, channel};

/// What the app knows about the unlocked account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountSummary {
    pub peer_id: String,
    pub public_key: String,
    public: PublicIdentity,
}

/// The screen's state; no IO in here.
#[derive(Debug, PartialEq, Eq)]
pub enum UnlockState {
    /// Waiting for a passphrase. `creating` when the data dir has no account.
    Locked {
        creating: bool,
        passphrase: String,
        error: Option<String>,
        busy: bool,
    },
    /// Unlocked: who we are, and a contact key being checked.
    Unlocked {
        account: Box<AccountSummary>,
        contact_key: String,
    },
}

/// Inputs to [`UnlockState::apply`].
pub enum UnlockEvent {
    Submitted,
    Finished(Result<Box<AccountSummary>, String>),
}

impl UnlockState {
    /// The first screen for a data directory.
    pub fn new(account_exists: bool) -> Self {
        UnlockState::Locked {
            creating: !account_exists,
            passphrase: String::new(),
            error: None,
            busy: false,
        }
    }

    /// Moves the state along; returns the passphrase to try when a worker
    /// should start.
    pub fn apply(&mut self, event: UnlockEvent) -> Option<String> {
        match (self, event) {
            (
                UnlockState::Locked {
                    passphrase,
                    error,
                    busy,
                    ..
                },
                UnlockEvent::Submitted,
            ) if !*busy => {
                *busy = true;
                *error = None;
                Some(std::mem::take(passphrase))
            }
            (state @ UnlockState::Locked { .. }, UnlockEvent::Finished(Ok(account))) => {
                *state = UnlockState::Unlocked {
                    account,
                    contact_key: String::new(),
                };
                None
            }
            (UnlockState::Locked { error, busy, .. }, UnlockEvent::Finished(Err(message))) => {
                *busy = false;
                *error = Some(message);
                None
            }
            _ => None,
        }
    }
}

/// The safety number with a pasted contact key, or why there is none.
pub fn contact_safety_number(
    account: &AccountSummary,
    contact_key: &str,
) -> Result<String, String> {
    let bytes = crate::proto::ids::PeerId::from_hex(contact_key.trim())
        .ok_or_else(|| "a public key is 64 hexadecimal characters".to_owned())?;
    let contact = PublicIdentity::from_bytes(&bytes.0)
        .map_err(|_| "that is not a valid public key".to_owned())?;
    Ok(safety_number(&account.public, &contact))
}

fn summarize(account: &Account) -> Box<AccountSummary> {
    Box::new(AccountSummary::new(account.identity.public()))
}

impl AccountSummary {
    fn new(public: PublicIdentity) -> Self {
        AccountSummary {
            peer_id: public.peer_id().to_hex(),
            public_key: crate::proto::ids::PeerId(public.to_bytes()).to_hex(),
            public,
        }
    }
}

/// Runs the desktop app on the calling thread until its window closes.
pub fn run(data_dir: PathBuf) -> Result<(), eframe::Error> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("kith")
            .with_inner_size([720.0, 480.0]),
        ..Default::default()
    };
    eframe::run_native(
        "kith",
        options,
        Box::new(move |_creation| Ok(Box::new(KithApp::new(data_dir, KdfParams::default())))),
    )
}

/// The app: the unlock screen's state plus the worker that unlocks.
pub struct KithApp {
    data_dir: PathBuf,
    kdf: KdfParams,
    state: UnlockState,
    worker: Option<Receiver<Result<Box<AccountSummary>, String>>>,
}

impl KithApp {
    /// An app for `data_dir`; `kdf` is used only when creating an account.
    pub fn new(data_dir: PathBuf, kdf: KdfParams) -> Self {
        Self {
            state: UnlockState::new(Account::exists(&data_dir)),
            data_dir,
            kdf,
            worker: None,
        }
    }

    /// The screen's state, for tests and diagnostics.
    pub fn state(&self) -> &UnlockState {
        &self.state
    }

    /// Blocks until the unlock worker has answered (or `timeout` passed),
    /// then applies its answer. For tests: the app itself never blocks.
    pub fn wait_for_worker(&mut self, timeout: std::time::Duration) {
        if let Some(receiver) = self.worker.take() {
            let result = receiver
                .recv_timeout(timeout)
                .unwrap_or_else(|_| Err("unlocking took too long".to_owned()));
            self.state.apply(UnlockEvent::Finished(result));
        }
    }

    fn start_unlock(&mut self, ctx: &egui::Context, passphrase: String, creating: bool) {
        let (sender, receiver) = channel();
        let data_dir = self.data_dir.clone();
        let kdf = self.kdf;
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            let result = if creating {
                Account::create(&data_dir, &passphrase, kdf)
            } else {
                Account::open(&data_dir, &passphrase)
            };
            let message = result
                .map(|account| summarize(&account))
                .map_err(|error: AccountError| error.to_string());
            // The app may have closed meanwhile; then nobody needs the answer.
            let _ = sender.send(message);
            ctx.request_repaint();
        });
        self.worker = Some(receiver);
    }

    fn poll_worker(&mut self) {
        let Some(receiver) = &self.worker else {
            return;
        };
        let result = match receiver.try_recv() {
            Ok(result) => result,
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Disconnected) => Err("unlocking stopped unexpectedly".to_owned()),
        };
        self.worker = None;
        self.state.apply(UnlockEvent::Finished(result));
    }
}

impl eframe::App for KithApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }
}

impl KithApp {
    /// Draws one frame and handles its input.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        self.poll_worker();
        let mut submit = false;
        egui::CentralPanel::default().show(ui, |ui| match &mut self.state {
            UnlockState::Locked {
                creating,
                passphrase,
                error,
                busy,
            } => {
                ui.heading(if *creating {
                    "Welcome to kith"
                } else {
                    "Unlock kith"
                });
                ui.label(if *creating {
                    "Choose a passphrase. It encrypts everything kith keeps on this device."
                } else {
                    "Enter your passphrase."
                });
                let label = ui.label("Passphrase");
                let field = ui
                    .add_enabled(
                        !*busy,
                        egui::TextEdit::singleline(passphrase).password(true),
                    )
                    .labelled_by(label.id);
                let pressed_enter =
                    field.lost_focus() && ui.input(|input| input.key_pressed(egui::Key::Enter));
                let button = ui.add_enabled(
                    !*busy && !passphrase.is_empty(),
                    egui::Button::new(if *creating {
                        "Create account"
                    } else {
                        "Unlock"
                    }),
                );
                submit = (button.clicked() || pressed_enter) && !passphrase.is_empty();
                if *busy {
                    ui.spinner();
                }
                if let Some(error) = error {
                    ui.colored_label(ui.visuals().error_fg_color, error.as_str());
                }
            }
            UnlockState::Unlocked {
                account,
                contact_key,
            } => {
                ui.heading("You");
                ui.label("Your peer id");
                ui.monospace(&account.peer_id);
                ui.label("Your public key (give it to a contact to compare safety numbers)");
                ui.monospace(&account.public_key);
                ui.separator();
                ui.heading("Verify a contact");
                let label = ui.label("Their public key");
                ui.text_edit_singleline(contact_key).labelled_by(label.id);
                if !contact_key.trim().is_empty() {
                    match contact_safety_number(account, contact_key) {
                        Ok(number) => {
                            ui.label("Safety number: read it aloud together; it must match.");
                            ui.monospace(number);
                        }
                        Err(problem) => {
                            ui.colored_label(ui.visuals().error_fg_color, problem);
                        }
                    }
                }
            }
        });
        if submit {
            let creating = matches!(self.state, UnlockState::Locked { creating: true, .. });
            if let Some(passphrase) = self.state.apply(UnlockEvent::Submitted) {
                let ctx = ui.ctx().clone();
                self.start_unlock(&ctx, passphrase, creating);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn summary(seed: u64) -> Box<AccountSummary> {
        let identity =
            crate::proto::crypto::Identity::generate(&mut rand::rngs::StdRng::seed_from_u64(seed));
        Box::new(AccountSummary::new(identity.public()))
    }

    #[test]
    fn unlock_flow() {
        let mut state = UnlockState::new(true);
        if let UnlockState::Locked { passphrase, .. } = &mut state {
            passphrase.push_str("secret");
        }
        assert_eq!(state.apply(UnlockEvent::Submitted), Some("secret".into()));
        // A second submit while busy starts nothing.
        assert_eq!(state.apply(UnlockEvent::Submitted), None);
        state.apply(UnlockEvent::Finished(Err("wrong passphrase".into())));
        assert!(matches!(
            &state,
            UnlockState::Locked { error: Some(e), busy: false, .. } if e == "wrong passphrase"
        ));
        state.apply(UnlockEvent::Submitted);
        state.apply(UnlockEvent::Finished(Ok(summary(1))));
        assert!(matches!(state, UnlockState::Unlocked { .. }));
    }

    #[test]
    fn safety_number_with_pasted_key() {
        let me = summary(1);
        let them = summary(2);
        let number = contact_safety_number(&me, &them.public_key).expect("valid key");
        assert_eq!(
            number,
            contact_safety_number(&them, &me.public_key).expect("valid key")
        );
        assert!(contact_safety_number(&me, "abc").is_err());
    }
}
