//! The Network panel: how this node finds people (interfaces, mDNS, the
//! registry, keep-alives), every peer heard with its address, where the
//! address came from and when it was last heard, what was dropped; and a
//! form to add a peer by address and public key where mDNS is blocked.

use super::Local;
use crate::ui::state::{
    AppState, HeardPeer, Intent, NetworkIntent, NetworkReport, ago_label, drop_label,
};

/// What the panel's form holds while it is open.
#[derive(Debug, Default)]
pub struct Form {
    pub address: String,
    pub key: String,
    /// How many additions had cleared the form (see
    /// `NetworkState::added_count`).
    pub cleared_at: u64,
}

/// Draws the panel's content.
pub fn show(ui: &mut egui::Ui, state: &AppState, local: &mut Local) -> Vec<Intent> {
    let mut out = Vec::new();
    ui.set_min_width(560.0);
    ui.set_max_width(640.0);
    match &state.settings.listen {
        Some(addr) => ui.label(format!("This node listens on {addr} (UDP).")),
        None => ui.label("This node's address is not known yet."),
    };
    let max_height = (ui.ctx().content_rect().height() - 260.0).max(160.0);
    egui::ScrollArea::vertical()
        .id_salt("network panel")
        .max_height(max_height)
        .auto_shrink([false, true])
        .show(ui, |ui| match &state.network.report {
            None => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Asking the node…");
                });
            }
            Some((report, taken)) => {
                ui.weak(format!(
                    "Updated {}; refreshed every second or two while this is open.",
                    ago_label(state.now.saturating_sub(*taken))
                ));
                finding(ui, report);
                ui.separator();
                peers(ui, state, report);
                ui.separator();
                traffic(ui, report);
            }
        });
    if let Some(error) = &state.network.error {
        ui.colored_label(ui.visuals().error_fg_color, error.as_str());
    }
    ui.separator();
    add_peer(ui, state, local, &mut out);
    out
}

fn finding(ui: &mut egui::Ui, report: &NetworkReport) {
    ui.strong("Finding people");
    egui::Grid::new("network finding")
        .num_columns(2)
        .spacing([12.0, 4.0])
        .show(ui, |ui| {
            ui.label("Interfaces");
            match (report.interfaces.is_empty(), report.mdns.is_some()) {
                (true, _) => ui.label("none: nobody is found nearby by mDNS"),
                (false, true) => ui.label(report.interfaces.join(", ")),
                (false, false) => ui.label(format!(
                    "{} (not used: mDNS is off)",
                    report.interfaces.join(", ")
                )),
            };
            ui.end_row();
            ui.label("mDNS");
            match &report.mdns {
                None => ui.label("off"),
                Some(m) => ui.label(format!(
                    "announcing as \"{}\" · {} found · {} gone · {} refused · {} errors",
                    m.name, m.found, m.lost, m.rejected, m.errors
                )),
            };
            ui.end_row();
            ui.label("Registry");
            match &report.registry {
                None => ui.label("none (one can be set in Settings)"),
                Some(r) => {
                    let state = if r.registered {
                        "registered"
                    } else {
                        "not registered yet"
                    };
                    let answer = r
                        .last_answer_ago
                        .map_or("never answered".to_owned(), |ago| {
                            format!("last answer {}", ago_label(ago))
                        });
                    let published = if r.published.is_empty() {
                        "nothing published".to_owned()
                    } else {
                        format!("publishes {}", r.published.join(", "))
                    };
                    ui.label(format!(
                        "{}: {state}, {answer}; {published}; {} lookups, {} found, {} dropped",
                        r.addr, r.lookups, r.found, r.dropped
                    ))
                }
            };
            ui.end_row();
            ui.label("Keep-alive");
            let (every, most) = report.keepalive_secs;
            ui.label(format!(
                "every {every} s while messages flow, up to every {most} s when idle"
            ));
            ui.end_row();
        });
}

/// How the panel names a peer: as everywhere in the window when known,
/// else by what it announced (marked `~`: anyone can announce any name).
fn peer_name(state: &AppState, peer: &HeardPeer) -> String {
    if state.people.contains_key(&peer.peer) {
        state.display_name(peer.peer)
    } else if !peer.name.is_empty() {
        format!("~{} ({})", peer.name, peer.peer.short())
    } else {
        peer.peer.short()
    }
}

fn peers(ui: &mut egui::Ui, state: &AppState, report: &NetworkReport) {
    ui.strong(format!("Peers heard ({})", report.peers.len()));
    if report.peers.is_empty() {
        ui.weak(
            "Nobody yet. People on the same network appear here once mDNS finds them; \
             elsewhere, add them by address below.",
        );
        return;
    }
    egui::Grid::new("network peers")
        .num_columns(5)
        .striped(true)
        .spacing([12.0, 3.0])
        .show(ui, |ui| {
            for title in ["Who", "Address", "From", "State", "Last heard"] {
                ui.weak(title);
            }
            ui.end_row();
            for peer in &report.peers {
                ui.label(peer_name(state, peer));
                ui.monospace(peer.addr.as_deref().unwrap_or("no address"));
                ui.label(peer.source.as_deref().unwrap_or("–"));
                ui.label(&peer.presence);
                let heard = match (peer.heard_ago, peer.sighted_ago) {
                    (Some(ago), _) => ago_label(ago),
                    (None, Some(ago)) => format!("announced {}", ago_label(ago)),
                    (None, None) => "never".to_owned(),
                };
                ui.label(heard);
                ui.end_row();
            }
        });
}

fn traffic(ui: &mut egui::Ui, report: &NetworkReport) {
    ui.strong("Traffic");
    ui.label(format!(
        "{} datagrams received, {} sent.",
        report.received, report.sent
    ));
    if report.drops.is_empty() {
        ui.label("Nothing dropped.");
        return;
    }
    ui.label(format!(
        "Dropped {} (bad, forged, unasked or undeliverable datagrams are counted, never \
         shown):",
        report.dropped_total
    ));
    egui::Grid::new("network drops")
        .num_columns(2)
        .spacing([12.0, 2.0])
        .show(ui, |ui| {
            for (counter, value) in &report.drops {
                ui.label(drop_label(counter));
                ui.label(value.to_string());
                ui.end_row();
            }
        });
}

fn add_peer(ui: &mut egui::Ui, state: &AppState, local: &mut Local, out: &mut Vec<Intent>) {
    let form = &mut local.network;
    if form.cleared_at != state.network.added_count {
        form.address.clear();
        form.key.clear();
        form.cleared_at = state.network.added_count;
    }
    ui.strong("Add a peer by address");
    ui.weak(
        "Where mDNS is blocked: their address and port (the Network panel on their side \
         shows it) and their public key (their You dialog, or `kith id`).",
    );
    egui::Grid::new("network add peer")
        .num_columns(2)
        .spacing([8.0, 4.0])
        .show(ui, |ui| {
            let label = ui.label("Peer address");
            ui.add(
                egui::TextEdit::singleline(&mut form.address)
                    .hint_text("192.168.1.20:47474")
                    .desired_width(220.0),
            )
            .labelled_by(label.id);
            ui.end_row();
            let label = ui.label("Peer public key");
            ui.add(
                egui::TextEdit::singleline(&mut form.key)
                    .hint_text("64 hexadecimal characters")
                    .font(egui::TextStyle::Monospace)
                    .char_limit(200)
                    .desired_width(440.0),
            )
            .labelled_by(label.id);
            ui.end_row();
        });
    ui.horizontal(|ui| {
        let busy = state.network.adding;
        if ui
            .add_enabled(!busy, egui::Button::new("Add peer"))
            .clicked()
        {
            out.push(Intent::Network(NetworkIntent::AddPeer {
                address: form.address.clone(),
                key: form.key.clone(),
            }));
        }
        if busy {
            ui.spinner();
        }
    });
    if let Some(error) = &state.network.add_error {
        ui.colored_label(ui.visuals().error_fg_color, error.as_str());
    }
}
