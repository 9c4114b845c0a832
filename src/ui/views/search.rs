//! The search panel: a query over the open room or every room, run by the
//! node; the results newest first, each with its room, author and time; a
//! click opens the room at that message.

use super::{Local, person_color};
use crate::ui::state::{AppState, Intent, SearchHit, snippet};
use egui::RichText;
use egui::text::{LayoutJob, TextFormat};

/// The search field's accessible name.
pub const LABEL: &str = "Search messages";
/// The button that fetches the next page of results.
pub const MORE: &str = "More results";
/// Characters of a result's text shown.
const SNIPPET: usize = 90;

/// Draws the panel; returns what the user asked for.
pub fn show(ui: &mut egui::Ui, state: &AppState, local: &mut Local) -> Vec<Intent> {
    let mut out = Vec::new();
    let search = &state.search;
    ui.add_space(6.0);
    ui.horizontal(|ui| {
        ui.strong("Search");
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if ui.small_button("×").on_hover_text("Close search").clicked() {
                out.push(Intent::CloseSearch);
            }
        });
    });
    // Where: every room, or the open one.
    let open_room = state
        .open
        .and_then(|r| state.rooms.get(&r))
        .filter(|r| !r.info.invited);
    let mut scope = search.room;
    ui.horizontal(|ui| {
        ui.selectable_value(&mut scope, None, "All rooms");
        if let Some(room) = open_room {
            let name = match room.info.direct {
                Some(_) => format!("With {}", state.room_name(room)),
                None => format!("In # {}", state.room_name(room)),
            };
            ui.selectable_value(&mut scope, Some(room.info.id), name);
        }
    });
    let label = ui.label(RichText::new(LABEL).small().weak());
    let field = ui
        .add(
            egui::TextEdit::singleline(&mut local.search_text)
                .hint_text("Words in messages…")
                .desired_width(f32::INFINITY),
        )
        .labelled_by(label.id);
    let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
    if enter || scope != search.room {
        out.push(Intent::Search {
            text: local.search_text.clone(),
            room: scope,
        });
        if enter {
            field.request_focus();
        }
    }
    ui.add_space(4.0);
    if search.busy {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.weak("Searching…");
        });
    } else if let Some(error) = &search.error {
        ui.colored_label(ui.visuals().error_fg_color, error.as_str());
    } else if !search.text.is_empty() {
        ui.weak(match search.hits.len() {
            0 => format!("No messages with “{}”.", search.text),
            1 => "1 message".to_owned(),
            n if search.more => format!("The newest {n} messages"),
            n => format!("{n} messages"),
        });
    }
    ui.separator();
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            for hit in &search.hits {
                if result(ui, state, hit) {
                    out.push(Intent::OpenHit {
                        room: hit.room,
                        id: hit.id,
                    });
                }
                ui.add_space(6.0);
            }
            // Older matches, a page at a time.
            if search.more
                && !search.busy
                && ui
                    .button(MORE)
                    .on_hover_text("Older messages that match")
                    .clicked()
            {
                out.push(Intent::MoreResults);
            }
        });
    out
}

/// One result; whether it was clicked.
fn result(ui: &mut egui::Ui, state: &AppState, hit: &SearchHit) -> bool {
    let dark = ui.visuals().dark_mode;
    let room = state
        .rooms
        .get(&hit.room)
        .map(|r| match r.info.direct {
            Some(_) => format!("@ {}", state.room_name(r)),
            None => format!("# {}", state.room_name(r)),
        })
        .unwrap_or_else(|| "a room you left".to_owned());
    let when = if state.local_day(hit.timestamp) == state.local_day(state.now) {
        state.clock(hit.timestamp)
    } else {
        format!(
            "{} {}",
            state.short_date(hit.timestamp),
            state.clock(hit.timestamp)
        )
    };
    let selected = state.search.target == Some(hit.id);
    let frame = egui::Frame::new()
        .inner_margin(egui::Margin::symmetric(6, 4))
        .corner_radius(4.0)
        .fill(if selected {
            ui.visuals().selection.bg_fill.gamma_multiply(0.5)
        } else {
            ui.visuals().faint_bg_color
        });
    let shown = frame.show(ui, |ui| {
        ui.set_width(ui.available_width());
        ui.horizontal(|ui| {
            ui.label(
                RichText::new(state.display_name(hit.from))
                    .strong()
                    .color(person_color(hit.from, dark)),
            );
            ui.weak(format!("{room} · {when}"));
        });
        let (text, found) = snippet(&hit.text, &state.search.text, SNIPPET);
        let mut job = LayoutJob::default();
        let normal = TextFormat {
            color: ui.visuals().text_color(),
            font_id: egui::TextStyle::Body.resolve(ui.style()),
            ..TextFormat::default()
        };
        let marked = TextFormat {
            background: ui.visuals().selection.bg_fill,
            color: ui.visuals().strong_text_color(),
            ..normal.clone()
        };
        match found {
            Some(range) => {
                job.append(&text[..range.start], 0.0, normal.clone());
                job.append(&text[range.clone()], 0.0, marked);
                job.append(&text[range.end..], 0.0, normal);
            }
            None => job.append(&text, 0.0, normal),
        }
        ui.add(egui::Label::new(job).wrap().sense(egui::Sense::click()))
    });
    let whole = ui.interact(
        shown.response.rect,
        ui.make_persistent_id(("search hit", hit.id)),
        egui::Sense::click(),
    );
    let clicked = shown.inner.clicked() || whole.clicked();
    if shown.inner.hovered() || whole.hovered() {
        ui.ctx().set_cursor_icon(egui::CursorIcon::PointingHand);
    }
    clicked
}
