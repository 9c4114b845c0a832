//! The open room: a header (name, members, who is online, menu), then the
//! loaded messages with day separators, author names in a stable colour,
//! times, a "new messages" divider, and our own messages' delivery state.
//! Reaching the top asks for the page before.

use super::{Local, context_menu, person_color};
use crate::ui::state::{AppState, Delivery, Dialog, Intent, Message, Room};
use egui::{Align, Layout, RichText};

/// Consecutive messages from one author within this long share a header.
const GROUP_MILLIS: u64 = 5 * 60_000;

/// Draws the room header.
pub fn header(ui: &mut egui::Ui, state: &AppState, room: &Room) -> Vec<Intent> {
    let mut out = Vec::new();
    ui.horizontal(|ui| {
        let name = state.room_name(room);
        match room.info.direct {
            Some(peer) => {
                ui.heading(format!("@ {name}"));
                let online = state.people.get(&peer).is_some_and(|p| p.info.online);
                if online {
                    super::presence_dot(ui, true);
                    ui.colored_label(super::ONLINE, "online");
                } else if let Some(seen) = state
                    .people
                    .get(&peer)
                    .and_then(|p| state.last_seen_label(p))
                {
                    ui.weak(seen);
                }
            }
            None => {
                ui.heading(format!("# {name}"));
                let members = room.info.members.len();
                let online = room
                    .info
                    .members
                    .iter()
                    .filter(|m| {
                        **m == state.me || state.people.get(m).is_some_and(|p| p.info.online)
                    })
                    .count();
                ui.weak(format!("· {members} members · {online} online"));
            }
        }
        if let Some(mute) = state.room_mute(room) {
            ui.weak(format!("🔕 {}", state.mute_label(mute)));
        }
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            let menu = ui.button("…").on_hover_text("Room menu");
            egui::Popup::menu(&menu)
                .show(|ui| context_menu(ui, state, Some(room.info.id), None, &mut out));
            if room.info.direct.is_none() && ui.button("ℹ").on_hover_text("Details").clicked() {
                out.push(Intent::OpenDialog(Dialog::Details(room.info.id)));
            }
        });
    });
    out
}

/// Draws the loaded messages of the open room.
pub fn show(ui: &mut egui::Ui, state: &AppState, room: &Room, local: &mut Local) -> Vec<Intent> {
    let mut out = Vec::new();
    let Some(history) = state.histories.get(&room.info.id) else {
        return out;
    };
    let group = room.info.direct.is_none();
    let scroll = egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .stick_to_bottom(true);
    let scroll_to_end = std::mem::take(&mut local.scroll_to_end);
    let output = scroll.show(ui, |ui| {
        ui.add_space(4.0);
        if history.loading {
            ui.vertical_centered(|ui| ui.spinner());
        } else if history.complete {
            ui.vertical_centered(|ui| ui.weak("Beginning of the conversation"));
        }
        if room.info.invited {
            invitation(ui, state, room, &mut out);
        }
        let mut previous: Option<&Message> = None;
        for (index, message) in history.messages.iter().enumerate() {
            let day = state.local_day(message.timestamp);
            let new_day = previous.is_none_or(|p| state.local_day(p.timestamp) != day);
            if new_day {
                separator(ui, &state.long_date(message.timestamp), false);
            }
            let divider = history.divider == Some(index);
            if divider {
                separator(ui, "new messages", true);
            }
            let continued = !new_day
                && !divider
                && previous.is_some_and(|p| {
                    p.from == message.from
                        && message.timestamp.saturating_sub(p.timestamp) < GROUP_MILLIS
                });
            row(ui, state, room, message, continued, group, &mut out);
            previous = Some(message);
        }
        if scroll_to_end {
            ui.scroll_to_cursor(Some(Align::BOTTOM));
        }
        if history.messages.is_empty() && !history.loading {
            ui.add_space(20.0);
            ui.vertical_centered(|ui| ui.weak("No messages yet. Say hello!"));
        }
    });
    // The top is visible: load the page before (the state asks only once).
    if output.state.clamped_offset().y <= 1.0 && !history.complete && !history.loading {
        out.push(Intent::LoadOlder);
    }
    out
}

fn invitation(ui: &mut egui::Ui, state: &AppState, room: &Room, out: &mut Vec<Intent>) {
    let from = room
        .invited_by
        .or(room.info.admin)
        .map(|p| state.display_name(p))
        .unwrap_or_else(|| "Someone".into());
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.label(format!("{from} invites you to {}.", state.room_name(room)));
        ui.horizontal(|ui| {
            if ui.button("Accept invitation").clicked() {
                out.push(Intent::AnswerInvite {
                    room: room.info.id,
                    accept: true,
                });
            }
            if ui.button("Decline invitation").clicked() {
                out.push(Intent::AnswerInvite {
                    room: room.info.id,
                    accept: false,
                });
            }
        });
    });
}

fn separator(ui: &mut egui::Ui, text: &str, accent: bool) {
    ui.add_space(6.0);
    ui.horizontal(|ui| {
        let width = ui.available_width();
        let galley_width = text.len() as f32 * 7.0 + 16.0;
        let side = ((width - galley_width) / 2.0).max(8.0);
        let color = if accent {
            ui.visuals().error_fg_color
        } else {
            ui.visuals().weak_text_color()
        };
        let line = |ui: &mut egui::Ui| {
            let (rect, _) = ui.allocate_exact_size(egui::vec2(side, 12.0), egui::Sense::hover());
            ui.painter()
                .hline(rect.x_range(), rect.center().y, (1.0, color));
        };
        line(ui);
        ui.label(RichText::new(text).small().color(color));
        line(ui);
    });
    ui.add_space(2.0);
}

fn row(
    ui: &mut egui::Ui,
    state: &AppState,
    room: &Room,
    message: &Message,
    continued: bool,
    group: bool,
    out: &mut Vec<Intent>,
) {
    let dark = ui.visuals().dark_mode;
    if !continued {
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            let name = state.display_name(message.from);
            let author = ui.add(
                egui::Label::new(
                    RichText::new(name)
                        .strong()
                        .color(person_color(message.from, dark)),
                )
                .sense(egui::Sense::click()),
            );
            if message.from != state.me {
                author.context_menu(|ui| {
                    context_menu(ui, state, Some(room.info.id), Some(message.from), out);
                });
            }
            ui.weak(state.clock(message.timestamp));
        });
    }
    ui.horizontal(|ui| {
        ui.add_space(12.0);
        let own = message.own.as_ref();
        let width = ui.available_width() - if own.is_some() { 150.0 } else { 0.0 };
        ui.allocate_ui_with_layout(
            egui::vec2(width.max(80.0), 0.0),
            Layout::top_down(Align::Min),
            |ui| {
                ui.add(egui::Label::new(&message.text).wrap().selectable(true));
            },
        );
        if let Some(own) = own {
            ui.with_layout(Layout::right_to_left(Align::Min), |ui| {
                let label = state.delivery_label(own, group);
                let (icon, hover) = match &own.delivery {
                    Delivery::Queued => ("🕓", "Waiting for your node".to_owned()),
                    Delivery::Failed(why) => ("⚠", why.clone()),
                    Delivery::Sent { delivered, .. } => {
                        let names: Vec<String> = own
                            .recipients
                            .iter()
                            .map(|r| {
                                let mark = if delivered.contains(r) {
                                    "✔✔"
                                } else {
                                    "…"
                                };
                                format!("{mark} {}", state.display_name(*r))
                            })
                            .collect();
                        let icon = if !delivered.is_empty() {
                            "✔✔"
                        } else {
                            "✔"
                        };
                        (icon, names.join("\n"))
                    }
                };
                let color = match own.delivery {
                    Delivery::Failed(_) => ui.visuals().error_fg_color,
                    _ => ui.visuals().weak_text_color(),
                };
                ui.label(
                    RichText::new(format!("{icon} {label}"))
                        .small()
                        .color(color),
                )
                .on_hover_text(hover);
            });
        }
    });
}
