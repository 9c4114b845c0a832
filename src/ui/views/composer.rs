//! The composer: Enter sends, Shift+Enter starts a new line; disabled with
//! the reason when nothing can be sent to the room. Its text is the room's
//! draft in [`AppState::drafts`] (a file shared meanwhile takes it as its
//! caption): edited here on a copy, handed back as [`Intent::Draft`].

use super::Local;
use crate::ui::state::{AppState, Intent, Room};
use egui::{Key, Modifiers};

/// The composer's accessible name, for tests and screen readers.
pub const LABEL: &str = "Write a message";

/// Draws the composer for `room`.
pub fn show(ui: &mut egui::Ui, state: &AppState, room: &Room, local: &mut Local) -> Vec<Intent> {
    let mut out = Vec::new();
    let reason = state.cannot_send(room.info.id);
    let id = ui.make_persistent_id(("composer", room.info.id));
    let focused = ui.memory(|m| m.has_focus(id));
    // Take a plain Enter before the text field turns it into a new line.
    let enter = focused
        && reason.is_none()
        && ui.input_mut(|i| {
            !i.modifiers.shift && !i.modifiers.alt && i.consume_key(Modifiers::NONE, Key::Enter)
        });
    let room_id = room.info.id;
    let mut text = state.drafts.get(&room_id).cloned().unwrap_or_default();
    let draft = &mut text;
    ui.add_space(4.0);
    let label = ui.label(egui::RichText::new(LABEL).small().weak());
    let hint = match reason {
        Some(reason) => reason.to_owned(),
        None => format!(
            "Write to {}…   (Enter sends, Shift+Enter new line)",
            state.room_name(room)
        ),
    };
    ui.horizontal(|ui| {
        super::files::attach_button(ui, reason.is_none(), !draft.trim().is_empty(), &mut out);
        let field = ui
            .add_enabled(
                reason.is_none(),
                egui::TextEdit::multiline(draft)
                    .id(id)
                    .hint_text(hint)
                    .desired_rows(2)
                    .desired_width(ui.available_width() - 60.0),
            )
            .labelled_by(label.id);
        let send = ui.add_enabled(
            reason.is_none() && !draft.trim().is_empty(),
            egui::Button::new("Send"),
        );
        if field.changed() {
            out.push(Intent::Draft {
                room: room_id,
                text: draft.clone(),
            });
        }
        if (enter || send.clicked()) && !draft.trim().is_empty() {
            out.push(Intent::Send(std::mem::take(draft)));
            out.push(Intent::Draft {
                room: room_id,
                text: String::new(),
            });
            local.scroll_to_end = true;
            field.request_focus();
        }
    });
    ui.add_space(4.0);
    out
}
