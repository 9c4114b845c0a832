//! The desktop app (feature `gui`).
//!
//! The first screen creates (display name, passphrase typed twice) or
//! unlocks the account; then the node starts in-process and the main window
//! shows rooms, people and chats.
//!
//! Shape (see `ARCHITECTURE.md`):
//! - [`state`]: the plain [`AppState`](state::AppState) the window shows,
//!   changed only by `apply(Update)` and `handle_intent(Intent)`;
//! - [`views`]: drawing from `&AppState`, returning the user's `Intent`s;
//! - [`backend`]: requests to the node and updates back, on worker threads.
//!
//! The UI never blocks: unlocking (Argon2id, SQLCipher, starting the node)
//! and every call to the node run on worker threads, and their answers
//! arrive as messages that wake the window.

pub mod backend;
pub mod notify;
pub mod settings;
pub mod state;
mod unlock;
pub mod views;

use crate::account::{Account, KdfParams};
use crate::daemon::DaemonConfig;
pub use backend::Given;
use backend::{
    Backend, Connection, InterfaceSource, LaunchArgs, Launcher, NodeLauncher, Waker, now_millis,
};
use notify::Notifier;
use settings::{AppSettings, LanInterface, Theme, WindowGeometry};
use state::{AppState, Dialog, Intent, SettingsState, Update};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::time::{Duration, Instant};
use unlock::unlock_screen;
pub use unlock::{UnlockEvent, UnlockState, interface_picker};
use views::Local;

/// What draws the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Renderer {
    /// wgpu on Vulkan (Metal, DX12): the default. It alone, without
    /// wgpu's OpenGL backend, so that one driver stack is loaded, not two
    /// (`WGPU_BACKEND` still chooses).
    #[default]
    Wgpu,
    /// OpenGL through glow: where wgpu finds no adapter.
    Glow,
}

/// Whether `error` means wgpu could not start (then the glow renderer may).
pub fn renderer_failed(error: &eframe::Error) -> bool {
    matches!(error, eframe::Error::Wgpu(_))
}

/// Runs the desktop app on the calling thread until its window closes.
/// `config` is how the node runs (sockets, discovery, control socket).
/// With `passphrase`, an existing account is unlocked at once.
/// `given`: the node choices the command line made (they win over the
/// saved ones, as `--interface` does).
pub fn run(
    data_dir: PathBuf,
    config: DaemonConfig,
    given: Given,
    passphrase: Option<String>,
    renderer: Renderer,
) -> Result<(), eframe::Error> {
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("kith")
        .with_inner_size([1000.0, 660.0])
        .with_min_inner_size(settings::MIN_WINDOW);
    if let Some(geometry) = WindowGeometry::load(&data_dir) {
        viewport = viewport.with_inner_size(geometry.size);
        if let Some(position) = geometry.position {
            viewport = viewport.with_position(position);
        }
    }
    let mut options = eframe::NativeOptions {
        viewport,
        renderer: match renderer {
            Renderer::Wgpu => eframe::Renderer::Wgpu,
            Renderer::Glow => eframe::Renderer::Glow,
        },
        ..Default::default()
    };
    // wgpu's default is Vulkan and OpenGL together, which loads both driver
    // stacks (with Mesa's software renderers, two copies of their state:
    // about 50 MB more private memory). Vulkan alone, unless WGPU_BACKEND
    // says; without a Vulkan adapter `kith app` falls back to glow.
    if let eframe::egui_wgpu::WgpuSetup::CreateNew(setup) = &mut options.wgpu_options.wgpu_setup
        && eframe::wgpu::Backends::from_env().is_none()
    {
        setup.instance_descriptor.backends = eframe::wgpu::Backends::PRIMARY;
    }
    // `--interface` on the command line wins over the saved choice.
    let command_line: Vec<String> = config
        .discovery
        .interfaces
        .iter()
        .map(ToString::to_string)
        .collect();
    let launcher = Arc::new(NodeLauncher {
        kdf: KdfParams::default(),
        interfaces: if command_line.is_empty() {
            InterfaceSource::Saved
        } else {
            InterfaceSource::Configured
        },
        saved_choices: Some(given),
        config,
    });
    eframe::run_native(
        "kith",
        options,
        Box::new(move |creation| {
            let default_route = std::fs::read_to_string("/proc/net/route")
                .ok()
                .and_then(|routes| settings::default_route_interface(&routes));
            Ok(Box::new(
                KithApp::new(data_dir, launcher)
                    .with_interfaces(settings::list_interfaces(), default_route.as_deref())
                    .with_command_line_interfaces(command_line)
                    .remembering_window()
                    .unlocking_with(passphrase)
                    .with_notifier(Arc::new(notify::DesktopNotifier::start({
                        let ctx = creation.egui_ctx.clone();
                        Arc::new(move || ctx.request_repaint())
                    }))),
            ))
        }),
    )
}

/// The wall clock the window reads, in milliseconds since the epoch;
/// injectable so that tests (and snapshot images) do not depend on today.
pub type Clock = Arc<dyn Fn() -> state::Millis + Send + Sync>;

/// The app: the unlock screen, then the main window.
pub struct KithApp {
    data_dir: PathBuf,
    launcher: Arc<dyn Launcher>,
    screen: Screen,
    clock: Clock,
    /// The local time zone's offset; `None`: the system's.
    utc_offset: Option<i64>,
    /// A passphrase to unlock with at once (`kith app` with
    /// `KITH_PASSPHRASE` or `--passphrase-file`).
    auto_unlock: Option<String>,
    /// The choices saved in the data directory (the theme applies before
    /// unlocking too).
    saved: AppSettings,
    /// The machine's interfaces (for the Settings dialog).
    interfaces: Vec<LanInterface>,
    /// The window's size and place, saved when the app closes (the real
    /// window only).
    window: Option<WindowGeometry>,
    remember_window: bool,
    /// Shows desktop notifications (none unless given).
    notifier: Arc<dyn Notifier>,
}

enum Screen {
    Unlock {
        form: UnlockState,
        worker: Option<Receiver<Result<Connection, String>>>,
    },
    Main(Box<MainWindow>),
}

/// The main window: its state, the backend and what only the screen keeps.
pub struct MainWindow {
    state: AppState,
    backend: Box<dyn Backend>,
    updates: Receiver<Update>,
    local: Local,
    title: String,
    clock: Clock,
    notifier: Arc<dyn Notifier>,
}

impl KithApp {
    /// An app for `data_dir` whose account is opened by `launcher`.
    pub fn new(data_dir: PathBuf, launcher: Arc<dyn Launcher>) -> Self {
        Self {
            screen: Screen::Unlock {
                form: UnlockState::new(Account::exists(&data_dir)),
                worker: None,
            },
            saved: AppSettings::load(&data_dir),
            data_dir,
            launcher,
            clock: Arc::new(now_millis),
            utc_offset: None,
            auto_unlock: None,
            interfaces: Vec::new(),
            window: None,
            remember_window: false,
            notifier: Arc::new(notify::Silent),
        }
    }

    /// Lists `interfaces` (the machine's) on the first-run screen and in
    /// Settings; on first run, ticks those [`settings::preselect`] picks
    /// with `default_route` (the default route's interface).
    pub fn with_interfaces(
        mut self,
        interfaces: Vec<LanInterface>,
        default_route: Option<&str>,
    ) -> Self {
        if let Screen::Unlock { form, .. } = &mut self.screen {
            form.picked = settings::preselect(&interfaces, default_route)
                .into_iter()
                .collect();
            form.interfaces = interfaces.clone();
        }
        self.interfaces = interfaces;
        self
    }

    /// Interfaces given with `--interface` (used instead of the saved
    /// choice; the first-run screen says so).
    pub fn with_command_line_interfaces(mut self, interfaces: Vec<String>) -> Self {
        if let Screen::Unlock { form, .. } = &mut self.screen {
            form.command_line = interfaces;
        }
        self
    }

    /// Saves the window's size and place in the data directory when the
    /// app closes (the real window; not tests).
    pub fn remembering_window(mut self) -> Self {
        self.remember_window = true;
        self
    }

    /// Shows desktop notifications through `notifier`.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// Unlocks with `passphrase` on the first frame, if the account
    /// exists (creating one still asks for a name and the passphrase twice).
    pub fn unlocking_with(mut self, passphrase: Option<String>) -> Self {
        self.auto_unlock = passphrase.filter(|p| !p.is_empty());
        self
    }

    /// Reads time from `clock` in `utc_offset_secs`' time zone instead of
    /// the system's.
    pub fn with_clock(mut self, clock: Clock, utc_offset_secs: i64) -> Self {
        self.clock = clock;
        self.utc_offset = Some(utc_offset_secs);
        self
    }

    /// An app that runs a real node with `config`; `kdf` is used only when
    /// creating an account.
    pub fn with_node(data_dir: PathBuf, kdf: KdfParams, config: DaemonConfig) -> Self {
        Self::new(
            data_dir,
            Arc::new(NodeLauncher {
                kdf,
                config,
                interfaces: InterfaceSource::Configured,
                saved_choices: None,
            }),
        )
    }

    /// The unlock screen's state, while it is shown.
    pub fn unlock_state(&self) -> Option<&UnlockState> {
        match &self.screen {
            Screen::Unlock { form, .. } => Some(form),
            Screen::Main(_) => None,
        }
    }

    /// The main window's state, once unlocked.
    pub fn state(&self) -> Option<&AppState> {
        match &self.screen {
            Screen::Main(main) => Some(&main.state),
            Screen::Unlock { .. } => None,
        }
    }

    /// Blocks until the unlock worker has answered (or `timeout` passed),
    /// then applies its answer. For tests: the app itself never blocks.
    pub fn wait_for_worker(&mut self, timeout: Duration) {
        if let Screen::Unlock { worker, .. } = &mut self.screen
            && let Some(receiver) = worker.take()
        {
            let result = receiver
                .recv_timeout(timeout)
                .unwrap_or_else(|_| Err("unlocking took too long".to_owned()));
            self.finish_unlock(result);
        }
    }

    /// Applies the node's updates as they come until `done` holds or
    /// `timeout` passes; whether it holds. For tests: the app itself never
    /// blocks.
    pub fn wait_until(&mut self, timeout: Duration, done: impl Fn(&AppState) -> bool) -> bool {
        let Screen::Main(main) = &mut self.screen else {
            return false;
        };
        let deadline = Instant::now() + timeout;
        loop {
            main.state.apply(Update::Tick {
                now: (main.clock)(),
            });
            // What the state asks by itself (the Network panel's reports).
            for request in main.state.poll_requests() {
                main.backend.submit(request);
            }
            if done(&main.state) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match main
                .updates
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(update) => main.state.apply(update),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return done(&main.state),
            }
        }
    }

    /// Runs an intent as if the user had done it (for tests and scripts).
    pub fn perform(&mut self, intent: Intent) {
        if let Screen::Main(main) = &mut self.screen {
            main.run_intents(vec![intent]);
        }
    }

    fn start_unlock(&mut self, ctx: &egui::Context, passphrase: String, name: String) {
        let Screen::Unlock { form, worker } = &mut self.screen else {
            return;
        };
        let (sender, receiver) = channel();
        let args = LaunchArgs {
            data_dir: self.data_dir.clone(),
            passphrase,
            creating: form.creating,
            name,
            interfaces: form.creating.then(|| form.picked.iter().cloned().collect()),
        };
        let launcher = self.launcher.clone();
        let repaint = ctx.clone();
        let waker: Waker = Arc::new(move || repaint.request_repaint());
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            let result = launcher.launch(args, waker);
            // The app may have closed meanwhile; then nobody needs the answer
            // (and dropping the connection stops the node).
            let _ = sender.send(result);
            ctx.request_repaint();
        });
        *worker = Some(receiver);
    }

    fn poll_worker(&mut self) {
        let Screen::Unlock {
            worker: Some(receiver),
            ..
        } = &self.screen
        else {
            return;
        };
        let result = match receiver.try_recv() {
            Ok(result) => result,
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Disconnected) => Err("unlocking stopped unexpectedly".to_owned()),
        };
        if let Screen::Unlock { worker, .. } = &mut self.screen {
            *worker = None;
        }
        self.finish_unlock(result);
    }

    fn finish_unlock(&mut self, result: Result<Connection, String>) {
        match result {
            Ok(connection) => {
                let me = connection.me;
                let mut state = AppState::new(me.peer, me.public_key, me.name);
                state.utc_offset_secs = self.utc_offset.unwrap_or_else(utc_offset_secs);
                state.apply(Update::Tick {
                    now: (self.clock)(),
                });
                let node = connection.node;
                state.settings = SettingsState {
                    data_dir: self.data_dir.display().to_string(),
                    listen: node.listen.map(|addr| addr.to_string()),
                    interfaces_in_use: node.interfaces,
                    from_command_line: node.from_command_line,
                    mdns_off: node.mdns_off,
                    // The launcher read the interfaces; the theme was
                    // read when the app opened (and is on screen already).
                    saved: AppSettings {
                        theme: self.saved.theme,
                        ..node.saved
                    },
                    available: self.interfaces.clone(),
                    in_use: node.choices,
                    problem: None,
                };
                for note in node.notes {
                    state.apply(Update::Info(note));
                }
                self.screen = Screen::Main(Box::new(MainWindow {
                    state,
                    backend: connection.backend,
                    updates: connection.updates,
                    local: Local::default(),
                    title: String::new(),
                    clock: self.clock.clone(),
                    notifier: self.notifier.clone(),
                }));
            }
            Err(message) => {
                if let Screen::Unlock { form, .. } = &mut self.screen {
                    form.apply(UnlockEvent::Finished(Err(message)));
                    // An account may exist now even if starting failed.
                    form.creating = !Account::exists(&self.data_dir);
                }
            }
        }
    }
}

impl eframe::App for KithApp {
    /// Also called while the window is hidden (minimised): messages are
    /// taken and notified then too.
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        if let Screen::Main(main) = &mut self.screen {
            main.pump(ctx);
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }
}

impl KithApp {
    /// Draws one frame and handles its input.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        self.poll_worker();
        let theme = match &self.screen {
            Screen::Main(main) => main.state.settings.saved.theme,
            Screen::Unlock { .. } => self.saved.theme,
        };
        apply_theme(ui.ctx(), theme);
        if self.remember_window {
            self.window = current_geometry(ui.ctx()).or(self.window);
        }
        let auto = match &mut self.screen {
            Screen::Unlock { form, .. } if !form.creating => self.auto_unlock.take(),
            _ => None,
        };
        match &mut self.screen {
            Screen::Unlock { form, .. } => {
                let mut submit = unlock_screen(ui, form);
                if let Some(passphrase) = auto {
                    form.passphrase = passphrase;
                    submit = true;
                }
                if submit {
                    let creating = form.creating;
                    if let Some((passphrase, name)) = form.apply(UnlockEvent::Submitted) {
                        let name = if creating { name } else { String::new() };
                        let ctx = ui.ctx().clone();
                        self.start_unlock(&ctx, passphrase, name);
                    }
                }
            }
            Screen::Main(main) => main.show(ui),
        }
    }
}

impl Drop for KithApp {
    /// Remembers the window's size and place for the next start.
    fn drop(&mut self) {
        if let Some(geometry) = self.window.filter(|_| self.remember_window)
            && let Err(error) = geometry.save(&self.data_dir)
        {
            log::warn!("the window's size was not saved: {error}");
        }
    }
}

/// Switches egui to `theme` if it is not on already.
fn apply_theme(ctx: &egui::Context, theme: Theme) {
    let wanted = match theme {
        Theme::System => egui::ThemePreference::System,
        Theme::Light => egui::ThemePreference::Light,
        Theme::Dark => egui::ThemePreference::Dark,
    };
    if ctx.options(|o| o.theme_preference) != wanted {
        ctx.set_theme(wanted);
    }
}

/// The window's inner size and outer place now, when the platform tells
/// (and the window is not minimised, maximised or full screen, whose
/// sizes are not the one to come back to).
fn current_geometry(ctx: &egui::Context) -> Option<WindowGeometry> {
    ctx.input(|i| {
        let viewport = i.viewport();
        let special = viewport.minimized == Some(true)
            || viewport.maximized == Some(true)
            || viewport.fullscreen == Some(true);
        let inner = viewport.inner_rect.filter(|_| !special)?;
        Some(WindowGeometry {
            size: [inner.width(), inner.height()],
            position: viewport.outer_rect.map(|r| [r.min.x, r.min.y]),
        })
    })
}

impl MainWindow {
    /// Takes the node's updates, sends what the state decided on by
    /// itself, and shows the notifications it decided on.
    fn pump(&mut self, ctx: &egui::Context) {
        self.state.apply(Update::Tick {
            now: (self.clock)(),
        });
        let focused = ctx.input(|i| i.focused && i.viewport().minimized != Some(true));
        self.state.set_focused(focused);
        while let Ok(update) = self.updates.try_recv() {
            self.state.apply(update);
        }
        for request in self.state.poll_requests() {
            self.backend.submit(request);
        }
        for notification in self.state.poll_notifications() {
            self.notifier.notify(notification);
        }
        // A click on a notification: its room, in a window brought forward.
        for room in self.notifier.clicked() {
            for request in self.state.open_from_notification(room) {
                self.backend.submit(request);
            }
            ctx.send_viewport_cmd(egui::ViewportCommand::Minimized(false));
            ctx.send_viewport_cmd(egui::ViewportCommand::Focus);
        }
    }

    fn show(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.pump(&ctx);
        // Toasts fade, mutes end and "last seen" moves with the clock.
        ctx.request_repaint_after(self.state.next_change());
        let title = self.state.title();
        if title != self.title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
        let state = &self.state;
        let local = &mut self.local;
        let mut intents = Vec::new();
        egui::Panel::left("sidebar")
            .resizable(true)
            .default_size(300.0)
            .min_size(220.0)
            .show(ui, |ui| {
                intents.extend(views::sidebar::show(ui, state, local));
                ui.with_layout(egui::Layout::bottom_up(egui::Align::Min), |ui| {
                    ui.add_space(4.0);
                    let me = if state.my_name.is_empty() {
                        "You".to_owned()
                    } else {
                        state.my_name.clone()
                    };
                    // Two rows (bottom up): a long name must not push the
                    // buttons out of the sidebar.
                    ui.horizontal(|ui| {
                        if ui
                            .button("⚙ Settings")
                            .on_hover_text("Your name, networks and theme")
                            .clicked()
                        {
                            intents.push(Intent::OpenDialog(Dialog::Settings));
                        }
                        if ui
                            .button("🌐 Network")
                            .on_hover_text("Who is heard and how; add someone by address")
                            .clicked()
                        {
                            intents.push(Intent::OpenDialog(Dialog::Network));
                        }
                    });
                    ui.horizontal(|ui| {
                        if ui
                            .button(format!("👤 {me}"))
                            .on_hover_text("Your identity and safety numbers")
                            .clicked()
                        {
                            intents.push(Intent::OpenDialog(Dialog::Me));
                        }
                    });
                });
            });
        if state.search.open {
            egui::Panel::right("search")
                .resizable(true)
                .default_size(320.0)
                .min_size(240.0)
                .show(ui, |ui| {
                    intents.extend(views::search::show(ui, state, local));
                });
        }
        egui::CentralPanel::default().show(ui, |ui| {
            let room = state.open.and_then(|r| state.rooms.get(&r));
            let Some(room) = room else {
                ui.centered_and_justified(|ui| {
                    ui.weak("Pick a room or a person on the left, or make a room with + Room.");
                });
                return;
            };
            egui::Panel::top("chat header").show(ui, |ui| {
                ui.add_space(4.0);
                intents.extend(views::chat::header(ui, state, room));
                ui.add_space(2.0);
            });
            egui::Panel::bottom("composer").show(ui, |ui| {
                intents.extend(views::composer::show(ui, state, room, local));
            });
            egui::CentralPanel::default().show(ui, |ui| {
                intents.extend(views::chat::show(ui, state, room, local));
            });
        });
        intents.extend(views::files::picker(&ctx, state, local));
        intents.extend(views::files::dropped(&ctx, state));
        intents.extend(views::dialogs::show(&ctx, state, local));
        intents.extend(views::dialogs::toasts(&ctx, state));
        self.run_intents(intents);
        // Whatever arrives in the open room while the window has focus is read.
        if ctx.input(|i| i.focused)
            && let Some(request) = self.state.mark_open_read()
        {
            self.backend.submit(request);
        }
    }

    fn run_intents(&mut self, intents: Vec<Intent>) {
        for intent in intents {
            for request in self.state.handle_intent(intent) {
                self.backend.submit(request);
            }
        }
    }
}

/// The local time zone's offset from UTC now, in seconds.
fn utc_offset_secs() -> i64 {
    // SAFETY: `time` with a null pointer only returns the time;
    // `localtime_r` writes into the `tm` we own and reads the zone files.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            0
        } else {
            tm.tm_gmtoff
        }
    }
}

/// The interface of the default route, if it can multicast (for mDNS):
/// what the app uses when none is chosen.
pub fn default_interface() -> Option<String> {
    settings::default_interface()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safety_number_with_pasted_key() {
        use rand::SeedableRng;
        let key = |seed| {
            let identity = crate::proto::crypto::Identity::generate(
                &mut rand::rngs::StdRng::seed_from_u64(seed),
            );
            crate::proto::ids::PeerId(identity.public().to_bytes()).to_hex()
        };
        let (me, them) = (key(1), key(2));
        let number = views::dialogs::safety_number_with(&me, &them).expect("valid keys");
        assert_eq!(
            number,
            views::dialogs::safety_number_with(&them, &me).expect("valid keys")
        );
        assert!(views::dialogs::safety_number_with(&me, "abc").is_err());
        // Bad input, either side, says why in the app's words.
        let why = |mine: &str, theirs: &str| {
            views::dialogs::safety_number_with(mine, theirs).expect_err("bad key")
        };
        assert!(why(&me, "abc").starts_with("A public key is 64 hexadecimal characters"));
        assert!(why("", &them).contains("this has 0"));
        assert!(why(&me, &format!("{}x", &them[..63])).contains("'x' is not one of them"));
        assert!(
            why(&me, &crate::ui::settings::tests::not_a_point()).contains("not a valid public key")
        );
        // A key pasted over two lines is the same key.
        let pasted = format!("{}\n  {}", &them[..20], &them[20..]);
        assert_eq!(views::dialogs::safety_number_with(&me, &pasted), Ok(number));
    }
}
