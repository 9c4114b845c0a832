//! Drawing. Each view draws from `&AppState` (plus the few things only the
//! screen needs, in [`Local`]: drafts, checkboxes, what is expanded) and
//! returns the user's [`Intent`]s; the app applies them after the frame.

pub mod chat;
pub mod composer;
pub mod dialogs;
pub mod files;
pub mod network;
pub mod search;
pub mod settings;
pub mod sidebar;

use super::state::{AppState, Intent, MUTE_CHOICES, Relation, Target};
use crate::proto::ids::{PeerId, RoomId};
use egui::Color32;
use std::collections::BTreeSet;

/// What only the screen keeps: text being typed and choices being made.
#[derive(Debug, Default)]
pub struct Local {
    pub new_room_name: String,
    /// Members ticked in the New room and Add to room dialogs.
    pub picked: BTreeSet<PeerId>,
    /// A key pasted into the "You" dialog to verify.
    pub contact_key: String,
    /// The sidebar's filter.
    pub search: String,
    /// Scroll the chat to its end on the next frame (after sending).
    pub scroll_to_end: bool,
    /// The open room's measured row heights.
    pub heights: chat::RowHeights,
    /// The Settings dialog's edits, while it is open.
    pub settings: Option<settings::Draft>,
    /// The search panel's text.
    pub search_text: String,
    /// The search result last scrolled to, and for how many more frames
    /// to keep it in view (row heights settle as rows are measured).
    pub scrolled_to: Option<(crate::proto::ids::MessageId, u8)>,
    /// The Network panel's add-a-peer form.
    pub network: network::Form,
    /// The file picker's path and the "Save files to" field.
    pub files: files::FilesLocal,
}

/// A stable colour for a person's name, readable on light and dark.
pub fn person_color(peer: PeerId, dark: bool) -> Color32 {
    const DARK: [Color32; 8] = [
        Color32::from_rgb(0x8a, 0xb4, 0xf8),
        Color32::from_rgb(0xf2, 0x8b, 0x82),
        Color32::from_rgb(0x81, 0xc9, 0x95),
        Color32::from_rgb(0xfd, 0xd6, 0x63),
        Color32::from_rgb(0xc5, 0x8a, 0xf9),
        Color32::from_rgb(0x78, 0xd9, 0xec),
        Color32::from_rgb(0xfc, 0xad, 0x70),
        Color32::from_rgb(0xff, 0x8b, 0xcb),
    ];
    const LIGHT: [Color32; 8] = [
        Color32::from_rgb(0x1a, 0x57, 0xc4),
        Color32::from_rgb(0xb3, 0x26, 0x1e),
        Color32::from_rgb(0x13, 0x73, 0x33),
        Color32::from_rgb(0x8a, 0x5a, 0x00),
        Color32::from_rgb(0x7b, 0x1f, 0xa2),
        Color32::from_rgb(0x00, 0x6c, 0x7a),
        Color32::from_rgb(0xb0, 0x4a, 0x00),
        Color32::from_rgb(0xa8, 0x1c, 0x6b),
    ];
    let index = usize::from(peer.0[0] % 8);
    if dark { DARK[index] } else { LIGHT[index] }
}

/// The green of "online".
pub const ONLINE: Color32 = Color32::from_rgb(0x3b, 0xb2, 0x5a);

/// The same menu everywhere a room, a person or a member is shown
/// (right-click, or the ⋯ button).
pub fn context_menu(
    ui: &mut egui::Ui,
    state: &AppState,
    room: Option<RoomId>,
    peer: Option<PeerId>,
    out: &mut Vec<Intent>,
) {
    let room = room.and_then(|r| state.rooms.get(&r));
    let person = peer.and_then(|p| state.people.get(&p));
    // For a direct chat, the person is what is muted and blocked.
    let peer = peer.or(room.and_then(|r| r.info.direct));
    if let Some(peer) = peer
        && room.is_none_or(|r| r.info.direct.is_none())
        && ui.button("Message").clicked()
    {
        out.push(Intent::Message(peer));
        ui.close();
    }
    if let Some(peer) = peer {
        let admin_rooms: Vec<_> = state
            .sorted_rooms()
            .into_iter()
            .filter(|r| {
                r.info.direct.is_none()
                    && r.info.admin == Some(state.me)
                    && !r.info.members.contains(&peer)
            })
            .collect();
        if !admin_rooms.is_empty() {
            ui.menu_button("Add to room", |ui| {
                for r in admin_rooms {
                    if ui.button(state.room_name(r)).clicked() {
                        out.push(Intent::AddToRoom {
                            room: r.info.id,
                            peers: vec![peer],
                        });
                        ui.close();
                    }
                }
            });
        }
    }
    if let Some(r) = room
        && r.info.direct.is_none()
        && r.info.admin == Some(state.me)
        && ui.button("Add people…").clicked()
    {
        out.push(Intent::OpenDialog(super::state::Dialog::AddToRoom(
            r.info.id,
        )));
        ui.close();
    }
    let target = match (room, peer) {
        (Some(r), _) => Some(state.room_target(r)),
        (None, Some(p)) => Some(Target::Peer(p)),
        (None, None) => None,
    };
    if let Some(target) = target {
        let muted = match target {
            Target::Room(_) => room.is_some_and(|r| state.room_muted(r)),
            Target::Peer(p) => state.people.get(&p).is_some_and(|p| state.person_muted(p)),
        };
        ui.menu_button("Mute", |ui| {
            for (label, duration) in MUTE_CHOICES {
                if ui.button(label).clicked() {
                    out.push(Intent::Mute(target, duration));
                    ui.close();
                }
            }
        });
        if muted && ui.button("Unmute").clicked() {
            out.push(Intent::Unmute(target));
            ui.close();
        }
    }
    if let Some(peer) = peer {
        let blocked = state.is_blocked(peer);
        if !blocked && ui.button("Block").clicked() {
            out.push(Intent::Block(peer));
            ui.close();
        }
        if blocked && ui.button("Unblock").clicked() {
            out.push(Intent::Unblock(peer));
            ui.close();
        }
        if person.is_some_and(|p| !p.info.public_key.is_empty()) && ui.button("Verify…").clicked()
        {
            out.push(Intent::OpenDialog(super::state::Dialog::Verify(peer)));
            ui.close();
        }
    }
    if let (Some(r), Some(member)) = (room, peer)
        && r.info.direct.is_none()
        && r.info.admin == Some(state.me)
        && member != state.me
        && r.info.members.contains(&member)
        && ui.button("Remove from room").clicked()
    {
        out.push(Intent::Remove {
            room: r.info.id,
            peer: member,
        });
        ui.close();
    }
    if let Some(r) = room
        && r.info.direct.is_none()
        && peer.is_none()
    {
        if ui.button("Details").clicked() {
            out.push(Intent::OpenDialog(super::state::Dialog::Details(r.info.id)));
            ui.close();
        }
        if ui.button("Leave room").clicked() {
            out.push(Intent::Leave(r.info.id));
            ui.close();
        }
    }
}

/// A green dot for online, a hollow grey one otherwise (painted: the
/// bundled fonts have no such glyph).
pub fn presence_dot(ui: &mut egui::Ui, online: bool) {
    let (rect, response) = ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
    let center = rect.center();
    if online {
        ui.painter().circle_filled(center, 4.0, ONLINE);
    } else {
        let color = ui.visuals().weak_text_color();
        ui.painter().circle_stroke(center, 3.5, (1.2, color));
    }
    response.on_hover_text(if online { "online" } else { "offline" });
}

/// People that can be picked as members: contacts and nearby, by name.
pub fn pickable_people(state: &AppState) -> Vec<PeerId> {
    let mut people: Vec<PeerId> = state
        .people_with(Relation::Contact)
        .into_iter()
        .chain(state.people_with(Relation::Nearby))
        .map(|p| p.info.id)
        .collect();
    people.dedup();
    people
}
