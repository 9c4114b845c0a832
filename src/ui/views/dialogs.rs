//! Dialogs: New room (name + members), Add to room, Verify (safety
//! number), You (identity, and verifying a pasted key), room details; and
//! the toasts in the corner.

use super::{Local, pickable_people, presence_dot};
use crate::proto::crypto::safety_number;
use crate::proto::ids::PeerId;
use crate::ui::state::{AppState, Dialog, Intent, TOAST_MILLIS};
use egui::{Align2, RichText};

/// Draws the open dialog, if any.
pub fn show(ctx: &egui::Context, state: &AppState, local: &mut Local) -> Vec<Intent> {
    let mut out = Vec::new();
    let Some(dialog) = &state.dialog else {
        return out;
    };
    let title = match dialog {
        Dialog::NewRoom => "New room",
        Dialog::AddToRoom(_) => "Add to room",
        Dialog::Verify(_) => "Verify",
        Dialog::Me => "You",
        Dialog::Details(_) => "Room details",
        Dialog::Settings => "Settings",
        Dialog::Network => "Network",
    };
    let mut open = true;
    egui::Window::new(title)
        .collapsible(false)
        .resizable(false)
        .anchor(Align2::CENTER_CENTER, [0.0, 0.0])
        .open(&mut open)
        .show(ctx, |ui| match dialog {
            Dialog::NewRoom => new_room(ui, state, local, &mut out),
            Dialog::AddToRoom(room) => add_to_room(ui, state, *room, local, &mut out),
            Dialog::Verify(peer) => verify(ui, state, *peer),
            Dialog::Me => me(ui, state, local, &mut out),
            Dialog::Details(room) => details(ui, state, *room, &mut out),
            Dialog::Settings => out.extend(super::settings::show(ui, state, local)),
            Dialog::Network => out.extend(super::network::show(ui, state, local)),
        });
    if !open || ctx.input(|i| i.key_pressed(egui::Key::Escape)) {
        out.push(Intent::CloseDialog);
    }
    if out.iter().any(|i| {
        matches!(
            i,
            Intent::CloseDialog | Intent::CreateRoom { .. } | Intent::AddToRoom { .. }
        )
    }) {
        local.new_room_name.clear();
        local.picked.clear();
    }
    if out.iter().any(|i| matches!(i, Intent::CloseDialog)) {
        local.settings = None;
        local.network = super::network::Form::default();
    }
    out
}

fn pick_list(ui: &mut egui::Ui, state: &AppState, people: &[PeerId], local: &mut Local) {
    if people.is_empty() {
        ui.weak("Nobody to add yet: people appear here once they are nearby or have written.");
    }
    egui::ScrollArea::vertical()
        .max_height(220.0)
        .show(ui, |ui| {
            for peer in people {
                let online = state.people.get(peer).is_some_and(|p| p.info.online);
                ui.horizontal(|ui| {
                    presence_dot(ui, online);
                    let mut picked = local.picked.contains(peer);
                    if ui
                        .checkbox(&mut picked, state.display_name(*peer))
                        .changed()
                    {
                        if picked {
                            local.picked.insert(*peer);
                        } else {
                            local.picked.remove(peer);
                        }
                    }
                });
            }
        });
}

fn new_room(ui: &mut egui::Ui, state: &AppState, local: &mut Local, out: &mut Vec<Intent>) {
    let label = ui.label("Room name");
    let field = ui
        .text_edit_singleline(&mut local.new_room_name)
        .labelled_by(label.id);
    if local.new_room_name.is_empty() && !field.has_focus() && ui.memory(|m| m.focused().is_none())
    {
        field.request_focus();
    }
    ui.add_space(6.0);
    ui.label("Members");
    let people = pickable_people(state);
    pick_list(ui, state, &people, local);
    ui.add_space(6.0);
    ui.horizontal(|ui| {
        let name = local.new_room_name.trim().to_owned();
        let ready = !name.is_empty() && !local.picked.is_empty();
        if ui
            .add_enabled(ready, egui::Button::new("Create room"))
            .on_disabled_hover_text("Give it a name and pick at least one member")
            .clicked()
        {
            out.push(Intent::CreateRoom {
                name,
                members: local.picked.iter().copied().collect(),
            });
        }
        if ui.button("Cancel").clicked() {
            out.push(Intent::CloseDialog);
        }
    });
}

fn add_to_room(
    ui: &mut egui::Ui,
    state: &AppState,
    room: crate::proto::ids::RoomId,
    local: &mut Local,
    out: &mut Vec<Intent>,
) {
    let Some(entry) = state.rooms.get(&room) else {
        out.push(Intent::CloseDialog);
        return;
    };
    ui.label(format!("Add people to {}", state.room_name(entry)));
    let people: Vec<PeerId> = pickable_people(state)
        .into_iter()
        .filter(|p| !entry.info.members.contains(p))
        .collect();
    pick_list(ui, state, &people, local);
    ui.horizontal(|ui| {
        if ui
            .add_enabled(!local.picked.is_empty(), egui::Button::new("Add"))
            .clicked()
        {
            out.push(Intent::AddToRoom {
                room,
                peers: local.picked.iter().copied().collect(),
            });
        }
        if ui.button("Cancel").clicked() {
            out.push(Intent::CloseDialog);
        }
    });
}

/// The safety number between our key and `their_key` (hex), or why not.
pub fn safety_number_with(my_key: &str, their_key: &str) -> Result<String, String> {
    let parse = |hex: &str| crate::ui::settings::public_key_from_hex(hex, "A public key");
    Ok(safety_number(&parse(my_key)?, &parse(their_key)?))
}

fn verify(ui: &mut egui::Ui, state: &AppState, peer: PeerId) {
    let name = state.display_name(peer);
    let key = state
        .people
        .get(&peer)
        .map(|p| p.info.public_key.clone())
        .unwrap_or_default();
    ui.label(format!(
        "Compare this number with {name}, in person or on a call. If both of you see the same, \
         nobody is in between."
    ));
    match safety_number_with(&state.my_key, &key) {
        Ok(number) => {
            ui.label("Safety number");
            ui.monospace(RichText::new(number).size(16.0));
        }
        Err(problem) => {
            ui.colored_label(ui.visuals().error_fg_color, problem);
        }
    }
}

fn me(ui: &mut egui::Ui, state: &AppState, local: &mut Local, out: &mut Vec<Intent>) {
    ui.horizontal(|ui| {
        if !state.my_name.is_empty() {
            ui.heading(&state.my_name);
        }
        if ui.button("Settings…").clicked() {
            out.push(Intent::OpenDialog(Dialog::Settings));
        }
    });
    ui.label("Your peer id");
    ui.monospace(state.me.to_hex());
    ui.label("Your public key (give it to a contact to compare safety numbers)");
    ui.monospace(&state.my_key);
    ui.separator();
    ui.heading("Verify a contact");
    let label = ui.label("Their public key");
    ui.text_edit_singleline(&mut local.contact_key)
        .labelled_by(label.id);
    if !local.contact_key.trim().is_empty() {
        match safety_number_with(&state.my_key, &local.contact_key) {
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

fn details(
    ui: &mut egui::Ui,
    state: &AppState,
    room: crate::proto::ids::RoomId,
    out: &mut Vec<Intent>,
) {
    let Some(entry) = state.rooms.get(&room) else {
        out.push(Intent::CloseDialog);
        return;
    };
    ui.heading(state.room_name(entry));
    ui.label(format!("Key epoch · room id {}", PeerId(room.0).short()));
    if let Some(mute) = state.room_mute(entry) {
        ui.label(format!("🔕 Muted {}", state.mute_label(mute)));
    }
    ui.separator();
    ui.label(format!("{} members", entry.info.members.len()));
    for member in &entry.info.members {
        let online = *member == state.me || state.people.get(member).is_some_and(|p| p.info.online);
        let row = ui.horizontal(|ui| {
            presence_dot(ui, online);
            let label = ui.label(state.display_name(*member));
            if entry.info.admin == Some(*member) {
                ui.weak("admin");
            }
            label
        });
        if *member != state.me {
            row.inner.context_menu(|ui| {
                super::context_menu(ui, state, Some(room), Some(*member), out);
            });
        }
    }
    if entry.info.admin == Some(state.me) && ui.button("Add people…").clicked() {
        out.push(Intent::OpenDialog(Dialog::AddToRoom(room)));
    }
}

/// The toasts, bottom right, fading in their last second.
pub fn toasts(ctx: &egui::Context, state: &AppState) -> Vec<Intent> {
    let mut out = Vec::new();
    if state.toasts.is_empty() {
        return out;
    }
    egui::Area::new(egui::Id::unique("kith toasts"))
        .anchor(Align2::RIGHT_BOTTOM, [-12.0, -12.0])
        .order(egui::Order::Foreground)
        .show(ctx, |ui| {
            for toast in &state.toasts {
                let left = TOAST_MILLIS.saturating_sub(state.now.saturating_sub(toast.born));
                let alpha = (left as f32 / 1000.0).clamp(0.0, 1.0);
                ui.set_opacity(alpha);
                let fill = if toast.error {
                    egui::Color32::from_rgb(0x8c, 0x1d, 0x18)
                } else {
                    egui::Color32::from_rgb(0x2b, 0x3a, 0x55)
                };
                egui::Frame::new()
                    .fill(fill)
                    .corner_radius(6.0)
                    .inner_margin(8.0)
                    .show(ui, |ui| {
                        ui.set_max_width(320.0);
                        ui.horizontal(|ui| {
                            ui.label(RichText::new(&toast.text).color(egui::Color32::WHITE));
                            if ui.small_button("×").clicked() {
                                out.push(Intent::DismissToast(toast.id));
                            }
                        });
                    });
                ui.add_space(4.0);
            }
        });
    out
}
