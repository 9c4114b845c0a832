//! Files in the window: a file message's card (icon, name, size, and
//! Download → progress → Open / Show in folder, or why it failed and
//! Retry), the 📎 picker, files dropped on the window, and the "Save
//! files to" setting.

use super::Local;
use crate::ui::state::{
    AppState, FileIntent, FileRow, FileStatus, Intent, Message, preview_chars, size_label,
};
use egui::RichText;
use std::path::{Path, PathBuf};

/// The 📎 button's accessible name.
pub const ATTACH: &str = "📎";
/// The picker window's title.
pub const PICKER_TITLE: &str = "Share a file";
/// The picker's path field's accessible name.
pub const PATH_LABEL: &str = "File to share";
/// The Settings field's accessible name.
pub const SAVE_TO_LABEL: &str = "Save files to";

/// What only the screen keeps for files.
#[derive(Debug, Default)]
pub struct FilesLocal {
    /// The path typed or picked in the picker.
    pub path: String,
    /// The directory the picker's field was last filled from.
    pub shown_dir: Option<PathBuf>,
    /// The "Save files to" field while edited.
    pub save_to: Option<String>,
    /// The directory the field was filled from (a new answer refills it).
    pub save_to_seen: Option<PathBuf>,
    /// The picker's entry clicked last, and when (egui's clock): a second
    /// click on it soon after shares it.
    pub last_click: Option<(PathBuf, f64)>,
}

/// Two clicks on a file in the picker within this long share it.
const DOUBLE_CLICK_SECS: f64 = 0.5;

/// An icon by the name's extension.
pub fn icon(name: &str) -> &'static str {
    let ext = Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "png" | "jpg" | "jpeg" | "gif" | "webp" | "bmp" | "svg" | "heic" => "🖼",
        "mp3" | "ogg" | "flac" | "wav" | "m4a" | "opus" => "🎵",
        "mp4" | "mkv" | "webm" | "mov" | "avi" => "🎞",
        "zip" | "gz" | "tgz" | "xz" | "bz2" | "zst" | "7z" | "rar" | "tar" => "📦",
        _ => "📄",
    }
}

/// Draws a file message's card; what the user clicks goes to `out`.
pub fn card(ui: &mut egui::Ui, message: &Message, row: &FileRow<'_>, out: &mut Vec<Intent>) {
    egui::Frame::group(ui.style())
        .corner_radius(6.0)
        .inner_margin(egui::Margin::symmetric(10, 6))
        .show(ui, |ui| {
            ui.set_max_width(420.0);
            ui.horizontal(|ui| {
                ui.label(RichText::new(icon(row.name)).size(26.0));
                ui.vertical(|ui| {
                    ui.spacing_mut().item_spacing.y = 3.0;
                    ui.add(egui::Label::new(RichText::new(row.name).strong()).truncate())
                        .on_hover_text(row.name);
                    ui.horizontal(|ui| status(ui, message, row, out));
                });
            });
        });
}

fn status(ui: &mut egui::Ui, message: &Message, row: &FileRow<'_>, out: &mut Vec<Intent>) {
    let size = row.size.map(size_label);
    let id = message.id;
    match &row.status {
        FileStatus::Preparing => {
            ui.weak("Preparing…");
        }
        FileStatus::ShareFailed { local, error } => {
            ui.colored_label(ui.visuals().error_fg_color, format!("⚠ {error}"));
            if ui.button("Retry").clicked() {
                out.push(Intent::File(FileIntent::RetryShare(*local)));
            }
        }
        FileStatus::Offered => {
            if let Some(size) = &size {
                ui.weak(size);
            }
            if ui.button("⬇ Download").clicked()
                && let Some(id) = id
            {
                out.push(Intent::File(FileIntent::Download(id)));
            }
        }
        FileStatus::Downloading { received } => {
            let total = row.size.unwrap_or(0);
            let fraction = if total == 0 {
                0.0
            } else {
                (*received as f64 / total as f64).clamp(0.0, 1.0) as f32
            };
            ui.add(
                egui::ProgressBar::new(fraction)
                    .desired_width(160.0)
                    .desired_height(12.0),
            );
            ui.weak(format!(
                "{} of {}",
                size_label(*received),
                size_label(total)
            ));
        }
        FileStatus::Available { path } => {
            if let Some(size) = &size {
                ui.weak(size);
            }
            if ui
                .button("Open")
                .on_hover_text(path.display().to_string())
                .clicked()
                && let Some(id) = id
            {
                out.push(Intent::File(FileIntent::Open(id)));
            }
            if ui.button("Show in folder").clicked()
                && let Some(id) = id
            {
                out.push(Intent::File(FileIntent::ShowInFolder(id)));
            }
        }
        FileStatus::Failed(why) => {
            ui.colored_label(ui.visuals().error_fg_color, format!("⚠ {why}"));
            if ui.button("Retry").clicked()
                && let Some(id) = id
            {
                out.push(Intent::File(FileIntent::Download(id)));
            }
        }
    }
}

/// The 📎 button beside the composer; `drafted`: text is typed there (it
/// goes with the file as its caption, which the hover says).
pub fn attach_button(ui: &mut egui::Ui, enabled: bool, drafted: bool, out: &mut Vec<Intent>) {
    let hover = if drafted {
        "Share a file (or drop it on the window): the text you typed goes with it as its caption"
    } else {
        "Share a file (or drop it on the window)"
    };
    if ui
        .add_enabled(enabled, egui::Button::new(ATTACH))
        .on_hover_text(hover)
        .clicked()
    {
        out.push(Intent::File(FileIntent::Attach));
    }
}

/// The picker: the directory's entries (folders open, a file is picked,
/// a double click shares it) and a path that can be typed.
pub fn picker(ctx: &egui::Context, state: &AppState, local: &mut Local) -> Vec<Intent> {
    let mut out = Vec::new();
    let Some(picker) = &state.files.picker else {
        local.files.shown_dir = None;
        return out;
    };
    let form = &mut local.files;
    if picker.dir.is_some() && form.shown_dir != picker.dir {
        form.shown_dir.clone_from(&picker.dir);
        form.path = picker
            .dir
            .as_ref()
            .map(|d| with_slash(d))
            .unwrap_or_default();
    }
    let room = state
        .rooms
        .get(&picker.room)
        .map(|r| state.room_name(r))
        .unwrap_or_default();
    let mut open = true;
    egui::Window::new(PICKER_TITLE)
        .collapsible(false)
        .resizable(true)
        .default_size([460.0, 420.0])
        .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
        .open(&mut open)
        .show(ctx, |ui| {
            ui.label(format!("Pick a file to share in {room}."));
            // What goes with it: the composer's text, or why it cannot.
            match state.room_caption(picker.room) {
                Ok(Some(caption)) => {
                    ui.horizontal_wrapped(|ui| {
                        ui.weak("With your text as its caption:");
                        ui.label(RichText::new(preview_chars(caption, 60)).italics());
                    });
                }
                Ok(None) => {}
                Err(why) => {
                    ui.colored_label(ui.visuals().error_fg_color, why);
                }
            }
            ui.horizontal(|ui| {
                let up = picker.dir.as_ref().and_then(|d| d.parent());
                if ui
                    .add_enabled(up.is_some(), egui::Button::new("⬆ Up"))
                    .clicked()
                    && let Some(up) = up
                {
                    out.push(Intent::File(FileIntent::Browse(up.to_owned())));
                }
                if let Some(dir) = &picker.dir {
                    ui.weak(dir.display().to_string());
                }
            });
            // A steady size while folders are browsed.
            egui::ScrollArea::vertical()
                .max_height(260.0)
                .auto_shrink([false, false])
                .show(ui, |ui| match &picker.listing {
                    None => {
                        ui.weak("Reading…");
                    }
                    Some(Err(error)) => {
                        ui.colored_label(ui.visuals().error_fg_color, error);
                    }
                    Some(Ok(entries)) if entries.is_empty() => {
                        ui.weak("Nothing here.");
                    }
                    Some(Ok(entries)) => {
                        let Some(dir) = &picker.dir else {
                            return;
                        };
                        for entry in entries {
                            let path = dir.join(&entry.name);
                            let text = if entry.dir {
                                format!("📁 {}", entry.name)
                            } else {
                                format!(
                                    "{} {}   ({})",
                                    icon(&entry.name),
                                    entry.name,
                                    size_label(entry.size)
                                )
                            };
                            let selected = form.path == path.display().to_string();
                            let response = ui.selectable_label(selected, text);
                            if entry.dir && response.clicked() {
                                out.push(Intent::File(FileIntent::Browse(path)));
                            } else if response.clicked() {
                                // Timed here: egui's own double click is
                                // not reported once the first click has
                                // changed the row (seen under X11).
                                let now = ui.input(|i| i.time);
                                let again = form.last_click.as_ref().is_some_and(|(p, at)| {
                                    *p == path && now - at < DOUBLE_CLICK_SECS
                                });
                                if again || response.double_clicked() {
                                    form.last_click = None;
                                    out.push(Intent::File(FileIntent::Share(path)));
                                } else {
                                    form.path = path.display().to_string();
                                    form.last_click = Some((path, now));
                                }
                            }
                        }
                    }
                });
            ui.separator();
            ui.horizontal(|ui| {
                let label = ui.label("File");
                let field = ui
                    .add(egui::TextEdit::singleline(&mut form.path).desired_width(300.0))
                    .labelled_by(label.id);
                let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                let text = form.path.trim().to_owned();
                // A path ending in "/" is a directory to look into.
                let is_dir = text.ends_with('/');
                let share = ui
                    .add_enabled(!text.is_empty() && !is_dir, egui::Button::new("Share"))
                    .on_hover_text(PATH_LABEL);
                if (share.clicked() || enter) && !text.is_empty() {
                    let path = PathBuf::from(&text);
                    out.push(Intent::File(if is_dir {
                        FileIntent::Browse(path)
                    } else {
                        FileIntent::Share(path)
                    }));
                }
            });
        });
    if !open || ctx.input(|i| i.key_pressed(egui::Key::Escape)) {
        out.push(Intent::File(FileIntent::ClosePicker));
    }
    out
}

fn with_slash(dir: &Path) -> String {
    let text = dir.display().to_string();
    if text.ends_with('/') {
        text
    } else {
        format!("{text}/")
    }
}

/// Files dropped on the window go to the open room; while some are held
/// over it, a note says where they would go.
pub fn dropped(ctx: &egui::Context, state: &AppState) -> Vec<Intent> {
    let (hovering, dropped) = ctx.input(|i| {
        (
            !i.raw.hovered_files.is_empty(),
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_owned())
                .filter(|p| !p.as_os_str().is_empty())
                .collect::<Vec<PathBuf>>(),
        )
    });
    let room = state.open.and_then(|r| state.rooms.get(&r));
    if hovering {
        let text = match room {
            Some(room) => match state.cannot_send(room.info.id) {
                Some(reason) => reason.to_owned(),
                None => format!("Drop to share in {}", state.room_name(room)),
            },
            None => "Open a room to share files in it".to_owned(),
        };
        let screen = ctx.content_rect();
        let painter = ctx.layer_painter(egui::LayerId::new(
            egui::Order::Foreground,
            egui::Id::unique("file drop"),
        ));
        painter.rect_filled(screen, 0.0, egui::Color32::from_black_alpha(150));
        painter.text(
            screen.center(),
            egui::Align2::CENTER_CENTER,
            text,
            egui::FontId::proportional(22.0),
            egui::Color32::WHITE,
        );
    }
    if room.is_none() {
        return Vec::new();
    }
    if dropped.is_empty() {
        return Vec::new();
    }
    // Together: the composer's text goes with the first.
    vec![Intent::File(FileIntent::ShareAll(dropped))]
}

/// The "Save files to" row of the Settings dialog.
pub fn save_to_setting(ui: &mut egui::Ui, state: &AppState, local: &mut FilesLocal) -> Vec<Intent> {
    let mut out = Vec::new();
    let files = &state.files;
    let current = files
        .save_to
        .as_ref()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    ui.strong("Files");
    if local.save_to_seen != files.save_to {
        local.save_to_seen.clone_from(&files.save_to);
        local.save_to = None;
    }
    let mut reset = false;
    let draft = local.save_to.get_or_insert_with(|| current.clone());
    ui.horizontal(|ui| {
        let label = ui.label(SAVE_TO_LABEL);
        let field = ui
            .add(egui::TextEdit::singleline(draft).desired_width(220.0))
            .labelled_by(label.id);
        let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        let changed = draft.trim() != current;
        if (ui
            .add_enabled(changed, egui::Button::new("Save folder"))
            .clicked()
            || enter)
            && changed
        {
            out.push(Intent::File(FileIntent::SetSaveTo(draft.trim().to_owned())));
        }
        if files.save_to_chosen && ui.button("Default").clicked() {
            out.push(Intent::File(FileIntent::SetSaveTo(String::new())));
            reset = true;
        }
    });
    if reset {
        local.save_to = None;
    }
    if !files.save_to_chosen {
        ui.weak("The default: ~/Downloads, or the data directory's downloads.");
    }
    ui.weak("A file of the same name there is never replaced: \"name (1).ext\".");
    out
}
