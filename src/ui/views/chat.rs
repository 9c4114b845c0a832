//! The open room: a header (name, members, who is online, menu), then the
//! loaded messages with day separators, author names in a stable colour,
//! times, a "new messages" divider, and our own messages' delivery state.
//! Reaching the top asks for the page before.

use super::{Local, context_menu, person_color};
use crate::proto::ids::{MessageId, RoomId};
use crate::ui::state::{AppState, Delivery, Dialog, History, Intent, Message, Room, links};
use egui::{Align, Layout, RichText};
use std::collections::HashMap;

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
            if ui
                .button("🔍")
                .on_hover_text("Search this conversation")
                .clicked()
            {
                out.push(Intent::OpenSearch(Some(room.info.id)));
            }
        });
    });
    out
}

/// Measured heights of the open room's rows, so that only the rows in view
/// are laid out: each row is measured when first drawn (at this width) and
/// estimated before.
#[derive(Debug, Default)]
pub struct RowHeights {
    room: Option<RoomId>,
    width: f32,
    heights: HashMap<RowKey, f32>,
    /// The first message and how many there were last frame, and the
    /// scroll offset then: to keep the view still when a page is prepended.
    first: Option<(Option<MessageId>, u64)>,
    count: usize,
    offset: f32,
}

/// A row: its message (id, or local number while queued) and what it
/// draws besides the message (separator, divider, author line).
type RowKey = (Option<MessageId>, u64, u8);

/// One row of the chat: a message, with what goes above it.
struct Row<'a> {
    message: &'a Message,
    new_day: bool,
    divider: bool,
    continued: bool,
}

impl Row<'_> {
    /// Which message the row shows, whatever goes above it.
    fn message_key(&self) -> (Option<MessageId>, u64) {
        let local = self.message.own.as_ref().map_or(0, |o| o.local);
        (self.message.id, local)
    }

    fn key(&self) -> RowKey {
        let flags =
            u8::from(self.new_day) | u8::from(self.divider) << 1 | u8::from(self.continued) << 2;
        let local = self.message.own.as_ref().map_or(0, |o| o.local);
        (self.message.id, local, flags)
    }

    fn estimate(&self) -> f32 {
        let mut height = if self.continued { 26.0 } else { 52.0 };
        height += 24.0 * f32::from(u8::from(self.new_day) + u8::from(self.divider));
        height + 16.0 * self.message.text.lines().count().saturating_sub(1) as f32
    }
}

/// Height of what is drawn above the first message.
const TOP: f32 = 32.0;

/// Draws the loaded messages of the open room; only rows in view are laid
/// out. Reaching the top asks for the page before.
pub fn show(ui: &mut egui::Ui, state: &AppState, room: &Room, local: &mut Local) -> Vec<Intent> {
    let mut out = Vec::new();
    let Some(history) = state.histories.get(&room.info.id) else {
        return out;
    };
    let group = room.info.direct.is_none();
    let rows = rows(state, history);
    // The scroll bar is drawn over the rows' right edge (or takes it, when
    // solid) once they overflow: that strip stays free, so right-aligned
    // delivery labels are never hidden under it.
    let bar = &ui.spacing().scroll;
    let bar_room = if bar.floating {
        bar.bar_width + bar.bar_inner_margin
    } else {
        bar.allocated_width()
    };
    let width = ui.available_width() - bar_room;
    let cache = &mut local.heights;
    if cache.room != Some(room.info.id) || (cache.width - width).abs() > 0.5 {
        *cache = RowHeights {
            room: Some(room.info.id),
            width,
            ..RowHeights::default()
        };
    }
    let mut tops = Vec::with_capacity(rows.len() + 1);
    let banner = room.info.invited || is_request(state, room);
    let mut y = TOP + if banner { 70.0 } else { 0.0 };
    for row in &rows {
        tops.push(y);
        y += cache
            .heights
            .get(&row.key())
            .copied()
            .unwrap_or_else(|| row.estimate());
    }
    let total = y + 8.0;
    // A page came in above: keep the rows in view where they were.
    let first = rows.first().map(Row::message_key);
    let mut scroll = egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .stick_to_bottom(true);
    if cache.first.is_some() && first != cache.first && rows.len() > cache.count {
        let added = rows.len() - cache.count;
        if rows.get(added).map(Row::message_key) == cache.first {
            scroll = scroll.vertical_scroll_offset(cache.offset + tops[added] - tops[0]);
        }
    }
    cache.first = first;
    cache.count = rows.len();
    let scroll_to_end = std::mem::take(&mut local.scroll_to_end);
    // A search result opened here: bring it into view (for a few frames,
    // while the rows around it are measured).
    let target = state.search.target;
    if let Some(id) = target
        && local.scrolled_to.is_none_or(|(done, _)| done != id)
    {
        local.scrolled_to = Some((id, 3));
    }
    let target_row = target.and_then(|id| rows.iter().position(|r| r.message.id == Some(id)));
    let scroll_to_target = match (&mut local.scrolled_to, target_row) {
        (Some((_, frames)), Some(index)) if *frames > 0 => {
            *frames -= 1;
            Some(index)
        }
        _ => None,
    };
    let output = scroll.show_viewport(ui, |ui, viewport| {
        ui.set_width(width);
        ui.set_height(total);
        let origin = ui.min_rect().min;
        let top = egui::Rect::from_min_size(origin, egui::vec2(width, TOP));
        ui.scope_builder(egui::UiBuilder::new().max_rect(top), |ui| {
            ui.add_space(4.0);
            if history.loading {
                ui.vertical_centered(|ui| ui.spinner());
            } else if history.complete {
                ui.vertical_centered(|ui| ui.weak("Beginning of the conversation"));
            }
            if room.info.invited {
                invitation(ui, state, room, &mut out);
            }
            request_banner(ui, state, room, &mut out);
        });
        let first_visible = tops
            .partition_point(|t| *t < viewport.min.y)
            .saturating_sub(1);
        let mut changed = false;
        for (index, row) in rows.iter().enumerate().skip(first_visible) {
            let y = tops[index];
            if y > viewport.max.y {
                break;
            }
            let rect =
                egui::Rect::from_min_size(origin + egui::vec2(0.0, y), egui::vec2(width, 4000.0));
            let marked = target_row == Some(index);
            let background = ui.painter().add(egui::Shape::Noop);
            let drawn = ui.scope_builder(egui::UiBuilder::new().max_rect(rect), |ui| {
                if row.new_day {
                    separator(ui, &state.long_date(row.message.timestamp), false);
                }
                if row.divider {
                    separator(ui, "new messages", true);
                }
                draw_row(ui, state, room, row.message, row.continued, group, &mut out);
            });
            if marked {
                // The search result opened: behind the row, tinted.
                let fill = ui.visuals().selection.bg_fill.gamma_multiply(0.35);
                let drawn = drawn.response.rect;
                let across = egui::Rect::from_x_y_ranges(
                    origin.x..=origin.x + width,
                    drawn.min.y - 2.0..=drawn.max.y + 2.0,
                );
                ui.painter()
                    .set(background, egui::Shape::rect_filled(across, 4.0, fill));
            }
            let height = drawn.response.rect.height();
            let known = cache.heights.insert(row.key(), height);
            changed |= known.is_none_or(|h| (h - height).abs() > 0.5);
        }
        if changed {
            // Rows below move once the real heights are known.
            ui.ctx().request_repaint();
        }
        if rows.is_empty() && !history.loading {
            let rect = egui::Rect::from_min_size(
                origin + egui::vec2(0.0, TOP + 20.0),
                egui::vec2(width, 30.0),
            );
            ui.scope_builder(egui::UiBuilder::new().max_rect(rect), |ui| {
                ui.vertical_centered(|ui| ui.weak("No messages yet. Say hello!"));
            });
        }
        if let Some(index) = scroll_to_target {
            let height = tops.get(index + 1).map_or(40.0, |next| next - tops[index]);
            let rect = egui::Rect::from_min_size(
                origin + egui::vec2(0.0, tops[index]),
                egui::vec2(width, height),
            );
            ui.scroll_to_rect_animation(
                rect,
                Some(Align::Center),
                egui::style::ScrollAnimation::none(),
            );
        } else if scroll_to_end {
            let bottom = egui::Rect::from_min_size(
                origin + egui::vec2(0.0, total - 1.0),
                egui::vec2(1.0, 1.0),
            );
            ui.scroll_to_rect(bottom, Some(Align::BOTTOM));
        }
    });
    cache.offset = output.state.clamped_offset().y;
    // The top is visible: load the page before (the state asks only once).
    if output.state.clamped_offset().y <= 1.0 && !history.complete && !history.loading {
        out.push(Intent::LoadOlder);
    }
    out
}

/// The rows of a history: day separators, the "new messages" divider, and
/// whether the author line is shared with the message before.
fn rows<'a>(state: &AppState, history: &'a History) -> Vec<Row<'a>> {
    let mut rows = Vec::with_capacity(history.messages.len());
    let mut previous: Option<&Message> = None;
    for (index, message) in history.messages.iter().enumerate() {
        let new_day = previous
            .is_none_or(|p| state.local_day(p.timestamp) != state.local_day(message.timestamp));
        let divider = history.divider == Some(index);
        let continued = !new_day
            && !divider
            && previous.is_some_and(|p| {
                p.from == message.from
                    && message.timestamp.saturating_sub(p.timestamp) < GROUP_MILLIS
            });
        rows.push(Row {
            message,
            new_day,
            divider,
            continued,
        });
        previous = Some(message);
    }
    rows
}

/// A direct chat with someone who wrote first and is not accepted yet.
fn is_request(state: &AppState, room: &Room) -> bool {
    room.info
        .direct
        .and_then(|p| state.people.get(&p))
        .is_some_and(|p| p.info.relation == crate::ui::state::Relation::Request && !p.blocked)
}

/// "Pat wants to talk to you" with Accept and Decline, above their messages.
fn request_banner(ui: &mut egui::Ui, state: &AppState, room: &Room, out: &mut Vec<Intent>) {
    let Some(peer) = room.info.direct.filter(|_| is_request(state, room)) else {
        return;
    };
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.label(format!(
            "{} wants to talk to you. Accept to make them a contact; decline to block them.",
            state.display_name(peer)
        ));
        ui.horizontal(|ui| {
            if ui.button("Accept request").clicked() {
                out.push(Intent::AcceptRequest(peer));
            }
            if ui.button("Decline request").clicked() {
                out.push(Intent::DeclineRequest(peer));
            }
        });
    });
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

fn draw_row(
    ui: &mut egui::Ui,
    state: &AppState,
    room: &Room,
    message: &Message,
    continued: bool,
    group: bool,
    out: &mut Vec<Intent>,
) {
    let dark = ui.visuals().dark_mode;
    // A message's lines sit close together; the space goes between authors.
    ui.spacing_mut().item_spacing.y = 1.0;
    if !continued {
        ui.add_space(10.0);
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
    ui.add_space(2.0);
    ui.horizontal_top(|ui| {
        ui.add_space(12.0);
        let own = message.own.as_ref();
        let width = ui.available_width() - if own.is_some() { 150.0 } else { 0.0 };
        ui.allocate_ui_with_layout(
            egui::vec2(width.max(80.0), 0.0),
            Layout::top_down(Align::Min),
            |ui| match state.file_row(message) {
                Some(file) => {
                    super::files::card(ui, message, &file, out);
                    ui.add_space(3.0);
                    // A caption comes after the file's line.
                    if let Some((_, caption)) = message.text.split_once('\n') {
                        message_text(ui, caption);
                    }
                }
                None => message_text(ui, &message.text),
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

/// A message's text: selectable, web links clickable (opened in the
/// browser on a click), and a menu to copy it (right-click).
fn message_text(ui: &mut egui::Ui, text: &str) {
    let menu = |response: egui::Response, link: Option<&str>| {
        response.context_menu(|ui| {
            if ui.button("Copy text").clicked() {
                ui.ctx().copy_text(text.to_owned());
                ui.close();
            }
            if let Some(url) = link
                && ui.button("Copy link").clicked()
            {
                ui.ctx().copy_text(url.to_owned());
                ui.close();
            }
        });
    };
    if !links::has_link(text) {
        let response = ui.add(egui::Label::new(text).wrap().selectable(true));
        menu(response, None);
        return;
    }
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 0.0;
        for piece in links::pieces(text) {
            match piece {
                links::Piece::Text(plain) => {
                    let response = ui.add(egui::Label::new(plain).wrap().selectable(true));
                    menu(response, None);
                }
                links::Piece::Link { text, url } => {
                    // Only http(s) links are made: nothing else is ever opened.
                    let response = ui
                        .add(egui::Hyperlink::from_label_and_url(text, &url))
                        .on_hover_text(&url);
                    menu(response, Some(&url));
                }
            }
        }
    });
}
