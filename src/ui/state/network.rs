//! The Network panel: what discovery sees (interfaces, mDNS, the
//! registry, every peer heard) and what the node dropped, refreshed while
//! the panel is open; and adding a peer by address and key, for networks
//! where mDNS is blocked.
//!
//! The report is plain data made by the backend from the node's
//! `Discovery` and `Status` answers; the panel asks for a new one every
//! [`NETWORK_REFRESH_MILLIS`] while it is open (through
//! [`AppState::poll_requests`], never from the frame callback itself).

use super::{AppState, Dialog, Millis, Request};
use crate::proto::crypto::PublicIdentity;
use crate::proto::ids::PeerId;
use std::net::SocketAddr;

/// How often the open Network panel asks for a new report.
pub const NETWORK_REFRESH_MILLIS: Millis = 1_500;
/// A report asked for and not answered in this long is asked again (the
/// node may have been busy; the answer then is dropped as stale).
const NETWORK_RETRY_MILLIS: Millis = 10_000;

/// mDNS as the panel shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MdnsInfo {
    /// The name we announce.
    pub name: String,
    /// Announcements of peers found, lost, and refused (bad or forged).
    pub found: u64,
    pub lost: u64,
    pub rejected: u64,
    /// Errors of the mDNS daemon.
    pub errors: u64,
}

/// The registry link as the panel shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryInfo {
    pub addr: String,
    /// The registry confirmed our registration.
    pub registered: bool,
    /// The addresses we publish there.
    pub published: Vec<String>,
    /// Since the registry last answered us.
    pub last_answer_ago: Option<Millis>,
    pub lookups: u64,
    pub found: u64,
    pub dropped: u64,
}

/// One peer heard of, as the panel lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeardPeer {
    pub peer: PeerId,
    /// What it announced by mDNS, or empty.
    pub name: String,
    /// Where datagrams to it go now.
    pub addr: Option<String>,
    /// Where that address came from: "mDNS", "registry" or "direct".
    pub source: Option<String>,
    /// "online", "offline" or "nearby".
    pub presence: String,
    /// Since its last authenticated datagram.
    pub heard_ago: Option<Millis>,
    /// Since it was last announced (mDNS or registry).
    pub sighted_ago: Option<Millis>,
    pub contact: bool,
}

/// Everything the Network panel shows, made from one `Discovery` and one
/// `Status` answer of the node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkReport {
    /// The interfaces mDNS uses.
    pub interfaces: Vec<String>,
    /// `None`: mDNS is off.
    pub mdns: Option<MdnsInfo>,
    /// `None`: no registry configured.
    pub registry: Option<RegistryInfo>,
    /// Seconds between keep-alives while messages flow, and at most.
    pub keepalive_secs: (u64, u64),
    pub peers: Vec<HeardPeer>,
    /// Datagrams received and sent by the socket.
    pub received: u64,
    pub sent: u64,
    /// Every drop counter that is not zero, as (what, how many), in the
    /// node's order.
    pub drops: Vec<(String, u64)>,
    /// Every datagram the node dropped.
    pub dropped_total: u64,
}

/// The Network panel's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkState {
    /// The newest report, and when (window clock) it came.
    pub report: Option<(NetworkReport, Millis)>,
    /// Why the last report could not be read.
    pub error: Option<String>,
    /// When the report under way was asked for.
    pub(super) asked: Option<Millis>,
    /// An address added is under way.
    pub adding: bool,
    /// Why the add-a-peer form was refused (shown under it).
    pub add_error: Option<String>,
    /// The peer last added.
    pub added: Option<PeerId>,
    /// How many peers were added since the app started (the form clears
    /// when this moves on).
    pub added_count: u64,
    /// The key (hex) and address of the peer being added.
    adding_addr: Option<(String, SocketAddr)>,
    /// Requests decided while applying an update (saving a peer added),
    /// handed out by [`AppState::poll_requests`].
    pending: Vec<Request>,
}

/// What the user does in the Network panel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkIntent {
    /// Add a peer by `address` (`ip:port`) and public key (64 hex
    /// characters, as `kith id` prints it), as typed.
    AddPeer { address: String, key: String },
}

/// What the node does for the Network panel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkRequest {
    /// Read discovery and the counters; answered by
    /// [`NetworkUpdate::Report`].
    Report,
    /// Add (or re-address) a contact; answered by [`NetworkUpdate::Added`].
    AddPeer {
        key: Box<PublicIdentity>,
        addr: SocketAddr,
    },
}

/// Answers for the Network panel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkUpdate {
    Report(Result<Box<NetworkReport>, String>),
    /// `peer` (the key's peer id) was added, or why not.
    Added {
        peer: PeerId,
        result: Result<(), String>,
    },
}

/// Reads `address` as `ip:port` (IPv4, or IPv6 in brackets); the error is
/// a sentence for the form.
pub fn parse_peer_address(address: &str) -> Result<SocketAddr, String> {
    let address = address.trim();
    if address.is_empty() {
        return Err("Enter the address, as ip:port (e.g. 192.168.1.20:47474).".to_owned());
    }
    let addr: SocketAddr = address.parse().map_err(|_| {
        if address.parse::<std::net::IpAddr>().is_ok() {
            format!("{address} has no port: add it, e.g. {address}:47474.")
        } else {
            format!("{address:?} is not an address as ip:port (e.g. 192.168.1.20:47474).")
        }
    })?;
    if addr.port() == 0 {
        return Err("Port 0 is not a port anyone listens on.".to_owned());
    }
    if addr.ip().is_unspecified() || addr.ip().is_multicast() {
        return Err(format!("{} is not the address of one machine.", addr.ip()));
    }
    Ok(addr)
}

/// Reads a public key as `kith id` prints it (64 hexadecimal characters);
/// the error is a sentence for the form.
pub fn parse_public_key(key: &str) -> Result<PublicIdentity, String> {
    let key: String = key.split_whitespace().collect();
    if key.is_empty() {
        return Err("Paste their public key: `kith id` or their You dialog shows it.".to_owned());
    }
    crate::ui::settings::public_key_from_hex(&key, "A public key")
}

impl AppState {
    pub(super) fn handle_network(&mut self, intent: NetworkIntent) -> Vec<Request> {
        match intent {
            NetworkIntent::AddPeer { address, key } => {
                let checked = parse_public_key(&key).and_then(|key| {
                    if key.peer_id() == self.me {
                        return Err("That is your own key: paste the other person's.".to_owned());
                    }
                    Ok((key, parse_peer_address(&address)?))
                });
                match checked {
                    Ok((key, addr)) => {
                        self.network.add_error = None;
                        self.network.added = None;
                        self.network.adding = true;
                        self.network.adding_addr = Some((PeerId(key.to_bytes()).to_hex(), addr));
                        vec![Request::Network(NetworkRequest::AddPeer {
                            key: Box::new(key),
                            addr,
                        })]
                    }
                    Err(error) => {
                        self.network.add_error = Some(error);
                        Vec::new()
                    }
                }
            }
        }
    }

    pub(super) fn apply_network(&mut self, update: NetworkUpdate) {
        match update {
            NetworkUpdate::Report(result) => {
                self.network.asked = None;
                match result {
                    Ok(report) => {
                        self.network.report = Some((*report, self.now));
                        self.network.error = None;
                    }
                    Err(error) => self.network.error = Some(error),
                }
            }
            NetworkUpdate::Added { peer, result } => {
                self.network.adding = false;
                match result {
                    Ok(()) => {
                        self.network.added = Some(peer);
                        self.network.added_count += 1;
                        self.network.add_error = None;
                        let adding = self.network.adding_addr.take();
                        let at = adding
                            .as_ref()
                            .map_or(String::new(), |(_, addr)| format!(" at {addr}"));
                        // Remembered for the next starts (the node forgets
                        // addresses given to it when it stops).
                        if let Some((key, addr)) = adding {
                            self.settings.saved.remember_peer(&key, addr);
                            self.network.pending.push(Request::Settings(
                                super::SettingsRequest::Save(self.settings.saved.clone()),
                            ));
                        }
                        self.toast(
                            format!(
                                "Added {}{at}: write to them under People; they see you as \
                                 a contact request.",
                                peer.short()
                            ),
                            false,
                        );
                        // Ask at once: the new peer shows in the panel.
                        self.network.asked = None;
                        self.network.report = self.network.report.take().map(|(r, _)| (r, 0));
                    }
                    Err(error) => self.network.add_error = Some(error),
                }
            }
        }
    }

    /// The next report to ask for, if the Network panel is open and its
    /// report is due (see [`AppState::poll_requests`]).
    pub(super) fn network_due(&mut self) -> Vec<Request> {
        let mut requests = std::mem::take(&mut self.network.pending);
        requests.extend(self.report_due());
        requests
    }

    fn report_due(&mut self) -> Option<Request> {
        if self.dialog != Some(Dialog::Network) {
            return None;
        }
        let now = self.now;
        if let Some(asked) = self.network.asked
            && now.saturating_sub(asked) < NETWORK_RETRY_MILLIS
        {
            return None;
        }
        let due = match &self.network.report {
            Some((_, taken)) => now.saturating_sub(*taken) >= NETWORK_REFRESH_MILLIS,
            None => true,
        };
        due.then(|| {
            self.network.asked = Some(now);
            Request::Network(NetworkRequest::Report)
        })
    }
}

/// "just now", "12 s ago", "4 min ago", "2 h ago", "3 d ago".
pub fn ago_label(ago: Millis) -> String {
    let secs = ago / 1000;
    match secs {
        0..2 => "just now".to_owned(),
        2..120 => format!("{secs} s ago"),
        120..7200 => format!("{} min ago", secs / 60),
        7200..172_800 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// A counter's name as people read it: `dropped_UnknownPeer` is "unknown
/// peer", `net_queue_drops` "send queue full".
pub fn drop_label(counter: &str) -> String {
    let known = match counter {
        "net_oversize_dropped" => Some("too large to receive"),
        "net_own_echo_dropped" => Some("our own datagrams echoed back"),
        "net_queue_drops" => Some("send queue full"),
        "net_oversize_transmit_dropped" => Some("too large to send"),
        "net_multicast_disabled_drops" => Some("room multicast is off"),
        "registry_foreign_dropped" => Some("registry datagrams from elsewhere"),
        "registry_rejected_dropped" => Some("registry answers refused"),
        "net_recv_errors" => Some("receive errors"),
        "net_send_errors" => Some("send errors"),
        _ => None,
    };
    if let Some(label) = known {
        return label.to_owned();
    }
    let name = counter.strip_prefix("dropped_").unwrap_or(counter);
    let mut out = String::new();
    for c in name.chars() {
        if c == '_' {
            out.push(' ');
        } else if c.is_uppercase() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::state::{Intent, Update};
    use rand::SeedableRng;

    fn key(seed: u64) -> String {
        let identity =
            crate::proto::crypto::Identity::generate(&mut rand::rngs::StdRng::seed_from_u64(seed));
        PeerId(identity.public().to_bytes()).to_hex()
    }

    fn state() -> AppState {
        let me = PublicIdentity::from_bytes(&PeerId::from_hex(&key(1)).expect("hex").0)
            .expect("a key")
            .peer_id();
        let mut state = AppState::new(me, key(1), "Robin".into());
        state.apply(Update::Tick { now: 10_000 });
        state
    }

    fn add(state: &mut AppState, address: &str, key: &str) -> Vec<Request> {
        state.handle_intent(Intent::Network(NetworkIntent::AddPeer {
            address: address.into(),
            key: key.into(),
        }))
    }

    #[test]
    fn the_open_panel_asks_for_a_report_every_refresh_and_never_twice_at_once() {
        let mut state = state();
        // Closed: nothing is asked.
        assert_eq!(state.poll_requests(), []);
        state.handle_intent(Intent::OpenDialog(Dialog::Network));
        let report = [Request::Network(NetworkRequest::Report)];
        assert_eq!(state.poll_requests(), report);
        // Under way: not asked again, even later.
        state.apply(Update::Tick { now: 13_000 });
        assert_eq!(state.poll_requests(), []);
        state.apply(Update::Network(NetworkUpdate::Report(Ok(Box::new(
            NetworkReport {
                interfaces: vec!["eth0".into()],
                ..NetworkReport::default()
            },
        )))));
        assert_eq!(
            state
                .network
                .report
                .as_ref()
                .map(|(r, at)| (r.interfaces.len(), *at)),
            Some((1, 13_000))
        );
        assert_eq!(state.poll_requests(), []);
        state.apply(Update::Tick {
            now: 13_000 + NETWORK_REFRESH_MILLIS,
        });
        assert_eq!(state.poll_requests(), report);
        // An answer that never comes is asked again after a while.
        state.apply(Update::Tick { now: 30_000 });
        assert_eq!(state.poll_requests(), report);
        // While open the window repaints often enough to ask.
        assert!(state.next_change() <= std::time::Duration::from_millis(500));
        // A failure is shown; the old report stays.
        state.apply(Update::Network(NetworkUpdate::Report(Err(
            "node busy".into()
        ))));
        assert_eq!(state.network.error.as_deref(), Some("node busy"));
        assert!(state.network.report.is_some());
        // Closed: nothing more is asked.
        state.handle_intent(Intent::CloseDialog);
        state.apply(Update::Tick { now: 60_000 });
        assert_eq!(state.poll_requests(), []);
    }

    #[test]
    fn adding_a_peer_checks_address_and_key_before_asking_the_node() {
        let mut state = state();
        state.handle_intent(Intent::OpenDialog(Dialog::Network));
        let bob = key(2);
        let cases = [
            ("", &bob[..], "Enter the address"),
            ("192.168.1.20", &bob[..], "has no port"),
            ("kith.example", &bob[..], "is not an address as ip:port"),
            ("192.168.1.20:0", &bob[..], "Port 0"),
            ("0.0.0.0:47474", &bob[..], "not the address of one machine"),
            (
                "239.255.0.1:47474",
                &bob[..],
                "not the address of one machine",
            ),
            ("192.168.1.20:47474", "", "Paste their public key"),
            ("192.168.1.20:47474", &bob[..10], "this has 10"),
            ("192.168.1.20:47474", &"zz".repeat(32), "hexadecimal"),
            ("192.168.1.20:47474", &state.my_key.clone(), "your own key"),
        ];
        for (address, key, problem) in cases {
            assert_eq!(add(&mut state, address, key), [], "{address} {key}");
            let error = state.network.add_error.clone().unwrap_or_default();
            assert!(error.contains(problem), "{address} {key}: {error}");
        }
        // Good input (spaces around and inside the pasted key are fine).
        let spaced = format!(" {} {} ", &bob[..32], &bob[32..]);
        let requests = add(&mut state, " [fe80::1]:47474 ", &spaced);
        let public =
            PublicIdentity::from_bytes(&PeerId::from_hex(&bob).expect("hex").0).expect("a key");
        let id = public.peer_id();
        assert_eq!(
            requests,
            [Request::Network(NetworkRequest::AddPeer {
                key: Box::new(public),
                addr: "[fe80::1]:47474".parse().expect("literal"),
            })]
        );
        assert!(state.network.adding);
        assert_eq!(state.network.add_error, None);
        // The node refuses: said under the form.
        state.apply(Update::Network(NetworkUpdate::Added {
            peer: id,
            result: Err("Could not add the peer: no".into()),
        }));
        assert!(!state.network.adding);
        assert_eq!(
            state.network.add_error.as_deref(),
            Some("Could not add the peer: no")
        );
        // The node adds it: a note, and the report is asked for at once.
        add(&mut state, "10.0.0.2:47474", &bob);
        assert_eq!(
            state.poll_requests(),
            [Request::Network(NetworkRequest::Report)]
        );
        state.apply(Update::Network(NetworkUpdate::Report(Ok(Box::default()))));
        state.apply(Update::Network(NetworkUpdate::Added {
            peer: id,
            result: Ok(()),
        }));
        assert_eq!(state.network.added, Some(id));
        assert_eq!(state.network.added_count, 1);
        // Remembered for the next starts.
        assert_eq!(
            state.settings.saved.peers,
            [format!("{bob}@10.0.0.2:47474")]
        );
        let note = format!("Added {} at 10.0.0.2:47474: ", id.short());
        assert!(state.toasts.iter().any(|t| t.text.starts_with(&note)));
        // Saved, and the report asked for at once.
        assert_eq!(
            state.poll_requests(),
            [
                Request::Settings(crate::ui::state::SettingsRequest::Save(
                    state.settings.saved.clone()
                )),
                Request::Network(NetworkRequest::Report)
            ]
        );
    }

    #[test]
    fn labels_read_as_sentences() {
        assert_eq!(ago_label(0), "just now");
        assert_eq!(ago_label(12_400), "12 s ago");
        assert_eq!(ago_label(5 * 60_000), "5 min ago");
        assert_eq!(ago_label(3 * 3_600_000), "3 h ago");
        assert_eq!(ago_label(3 * 86_400_000), "3 d ago");
        assert_eq!(drop_label("dropped_UnknownPeer"), "unknown peer");
        assert_eq!(drop_label("dropped_TooLarge"), "too large");
        assert_eq!(drop_label("net_queue_drops"), "send queue full");
        assert_eq!(drop_label("some_new_counter"), "some new counter");
    }
}
