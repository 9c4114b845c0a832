//! The sidebar: rooms and direct chats by last activity, people with
//! presence, nearby people, contact requests, and (collapsed) blocked ones.

use super::{Local, context_menu, person_color, presence_dot};
use crate::ui::state::{AppState, Dialog, Intent, Relation, Room};
use egui::{Align, Layout, RichText};

/// Draws the sidebar; returns what the user asked for.
pub fn show(ui: &mut egui::Ui, state: &AppState, local: &mut Local) -> Vec<Intent> {
    let mut out = Vec::new();
    ui.add_space(4.0);
    let mut search_messages = false;
    ui.horizontal(|ui| {
        let label = ui.label("🔍");
        let field = ui
            .add(
                egui::TextEdit::singleline(&mut local.search)
                    .hint_text("Search…")
                    .desired_width(ui.available_width() - 70.0),
            )
            .labelled_by(label.id);
        // Enter searches the messages too (typing filters names).
        search_messages |= field.lost_focus()
            && ui.input(|i| i.key_pressed(egui::Key::Enter))
            && !local.search.trim().is_empty();
        if ui
            .button("+ Room")
            .on_hover_text("Make a room and pick who is in it")
            .clicked()
        {
            out.push(Intent::OpenDialog(Dialog::NewRoom));
        }
    });
    if !local.search.trim().is_empty() {
        search_messages |= ui
            .button(format!("🔍 Messages with “{}”", local.search.trim()))
            .on_hover_text("Search the text of messages in every room")
            .clicked();
    }
    if search_messages {
        local.search_text = local.search.trim().to_owned();
        out.push(Intent::Search {
            text: local.search_text.clone(),
            room: None,
        });
    }
    let filter = local.search.trim().to_lowercase();
    let matches = |name: &str| filter.is_empty() || name.to_lowercase().contains(&filter);
    ui.add_space(4.0);
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            // While filtering, a section with no match is left out.
            let filtering = !filter.is_empty();
            let rooms: Vec<_> = state
                .sorted_rooms()
                .into_iter()
                .filter(|r| matches(&state.room_name(r)))
                .collect();
            if !(filtering && rooms.is_empty()) {
                heading(ui, "ROOMS");
            }
            if rooms.is_empty() && !filtering {
                ui.weak("No rooms yet: message someone, or + Room.");
            }
            for room in rooms {
                room_row(ui, state, room, &mut out);
            }

            let contacts: Vec<_> = state
                .people_with(Relation::Contact)
                .into_iter()
                .filter(|p| matches(&state.display_name(p.info.id)))
                .collect();
            if !(filtering && contacts.is_empty()) {
                heading(ui, "PEOPLE");
            }
            if contacts.is_empty() && !filtering {
                ui.weak("Nobody yet.");
            }
            for person in contacts {
                let name = state.display_name(person.info.id);
                let row = ui.horizontal(|ui| {
                    presence_dot(ui, person.info.online);
                    let label = ui.add(
                        egui::Label::new(
                            RichText::new(&name)
                                .color(person_color(person.info.id, ui.visuals().dark_mode)),
                        )
                        .sense(egui::Sense::click()),
                    );
                    if label.clicked() {
                        out.push(Intent::Message(person.info.id));
                    }
                    if state.person_muted(person) {
                        ui.weak("🔕");
                    }
                    if let Some(seen) = state.last_seen_label(person) {
                        ui.weak(seen);
                    }
                    label
                });
                row.inner.context_menu(|ui| {
                    context_menu(ui, state, None, Some(person.info.id), &mut out);
                });
            }

            let nearby: Vec<_> = state
                .people_with(Relation::Nearby)
                .into_iter()
                .filter(|p| matches(&state.display_name(p.info.id)))
                .collect();
            if !nearby.is_empty() {
                heading(ui, "NEARBY");
                for person in nearby {
                    let name = state.display_name(person.info.id);
                    let row = ui.horizontal(|ui| {
                        presence_dot(ui, person.info.online);
                        let label = ui.label(&name);
                        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                            if ui
                                .button("Message")
                                .on_hover_text(format!("Write to {name}"))
                                .clicked()
                            {
                                out.push(Intent::Message(person.info.id));
                            }
                        });
                        label
                    });
                    row.inner.context_menu(|ui| {
                        context_menu(ui, state, None, Some(person.info.id), &mut out);
                    });
                }
            }

            let requests: Vec<_> = state
                .people_with(Relation::Request)
                .into_iter()
                .filter(|p| matches(&state.display_name(p.info.id)))
                .collect();
            if !requests.is_empty() {
                heading(ui, "REQUESTS");
                for person in requests {
                    let name = state.display_name(person.info.id);
                    ui.horizontal(|ui| {
                        ui.label(format!("{name} wrote to you"));
                        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                            if ui
                                .button("Decline")
                                .on_hover_text("Decline and block")
                                .clicked()
                            {
                                out.push(Intent::DeclineRequest(person.info.id));
                            }
                            if ui.button("Accept").clicked() {
                                out.push(Intent::AcceptRequest(person.info.id));
                            }
                        });
                    });
                }
            }

            let blocked = state.blocked_people();
            if !blocked.is_empty() {
                ui.add_space(6.0);
                egui::CollapsingHeader::new(format!("Blocked ({})", blocked.len()))
                    .default_open(false)
                    .show(ui, |ui| {
                        for person in blocked {
                            let name = state.display_name(person.info.id);
                            ui.horizontal(|ui| {
                                let label = ui.weak(&name);
                                ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                                    if ui.small_button("Unblock").clicked() {
                                        out.push(Intent::Unblock(person.info.id));
                                    }
                                });
                                label.context_menu(|ui| {
                                    context_menu(ui, state, None, Some(person.info.id), &mut out);
                                });
                            });
                        }
                    });
            }
        });
    out
}

fn heading(ui: &mut egui::Ui, text: &str) {
    ui.add_space(8.0);
    ui.label(RichText::new(text).small().strong().weak());
}

fn room_row(ui: &mut egui::Ui, state: &AppState, room: &Room, out: &mut Vec<Intent>) {
    let name = state.room_name(room);
    let open = state.open == Some(room.info.id);
    let sigil = if room.info.direct.is_some() { "@" } else { "#" };
    let mut clicked = false;
    let inner = ui.horizontal(|ui| {
        let title = ui.selectable_label(open, format!("{sigil} {name}"));
        clicked |= title.clicked();
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            let menu = ui.small_button("…").on_hover_text("More");
            egui::Popup::menu(&menu)
                .show(|ui| context_menu(ui, state, Some(room.info.id), None, out));
            if room.last_activity > 0 {
                ui.weak(state.clock(room.last_activity));
            }
            if let Some(mute) = state.room_mute(room) {
                ui.weak(format!("🔕 {}", state.mute_label(mute)))
                    .on_hover_text("Muted: no badge, no notification");
            } else if let Some(n) = state.badge(room) {
                egui::Frame::new()
                    .fill(egui::Color32::from_rgb(0x2f, 0x6f, 0xd6))
                    .corner_radius(8.0)
                    .inner_margin(egui::Margin::symmetric(6, 1))
                    .show(ui, |ui| {
                        ui.label(
                            RichText::new(n.to_string())
                                .strong()
                                .color(egui::Color32::WHITE),
                        )
                        .on_hover_text(format!("{n} unread"));
                    });
            }
            if let Some(direct) = room.info.direct
                && state.people.get(&direct).is_some_and(|p| p.info.online)
            {
                super::presence_dot(ui, true);
            }
        });
        title
    });
    inner.inner.context_menu(|ui| {
        context_menu(ui, state, Some(room.info.id), None, out);
    });
    if room.info.invited {
        let from = room
            .invited_by
            .or(room.info.admin)
            .map(|p| state.display_name(p))
            .unwrap_or_else(|| "someone".into());
        ui.horizontal(|ui| {
            ui.add_space(16.0);
            ui.weak(format!("invited by {from}"));
            if ui.small_button("Accept").clicked() {
                out.push(Intent::AnswerInvite {
                    room: room.info.id,
                    accept: true,
                });
            }
            if ui.small_button("Decline").clicked() {
                out.push(Intent::AnswerInvite {
                    room: room.info.id,
                    accept: false,
                });
            }
        });
    } else if let Some((from, text)) = &room.preview {
        let who = state.display_name(*from);
        ui.horizontal(|ui| {
            ui.add_space(16.0);
            ui.add(egui::Label::new(RichText::new(format!("{who}: {text}")).weak()).truncate());
        });
    }
    if clicked {
        out.push(Intent::OpenRoom(room.info.id));
    }
}
