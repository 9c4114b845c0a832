//! What the desktop app keeps outside the encrypted store, as small plain
//! files in the data directory (nothing in them is secret, and they must
//! be readable before the passphrase is typed): the LAN interfaces chosen
//! at first run, the registry, keep-alive and room multicast choices, the
//! theme, and the window's size and place. And the
//! machine's interfaces, for the first-run screen and the Settings dialog.
//!
//! The files are `key = value` lines; an unknown key, a bad value or an
//! unreadable file is ignored (the defaults apply), never an error: the
//! app must open even if someone edited them by hand.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

/// The interfaces and the theme.
pub const SETTINGS_FILE: &str = "app-settings";
/// The window's size and place.
pub const WINDOW_FILE: &str = "app-window";
/// Longer files are not read (they are a few lines).
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Light, dark, or as the system says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Theme {
    #[default]
    System,
    Light,
    Dark,
}

impl Theme {
    /// Every choice, as the Settings dialog lists them.
    pub const ALL: [(Theme, &'static str); 3] = [
        (Theme::System, "As the system"),
        (Theme::Light, "Light"),
        (Theme::Dark, "Dark"),
    ];

    fn word(self) -> &'static str {
        match self {
            Theme::System => "system",
            Theme::Light => "light",
            Theme::Dark => "dark",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        match word {
            "system" => Some(Theme::System),
            "light" => Some(Theme::Light),
            "dark" => Some(Theme::Dark),
            _ => None,
        }
    }
}

/// The choices saved in [`SETTINGS_FILE`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppSettings {
    /// The interfaces mDNS announces and browses on, by name. `None`: never
    /// chosen (the default route's interface is used); empty: none (people
    /// are found only by `--peer`, added addresses or the registry).
    pub interfaces: Option<Vec<String>>,
    pub theme: Theme,
    /// The registry to register with and look contacts up in (`None`:
    /// none), as [`check_registry`] accepted it.
    pub registry: Option<RegistrySetting>,
    /// Seconds between keep-alives while messages flow (`None`: the
    /// default, [`DEFAULT_KEEPALIVE_SECS`]).
    pub keepalive_secs: Option<u64>,
    /// Group rooms by multicast on the interfaces in use (else unicast to
    /// each member).
    pub room_multicast: bool,
    /// Peers added by address in the Network panel, as
    /// `PUBLICKEYHEX@IP:PORT` (what `--peer` takes): the node learns
    /// their addresses again at every start. At most [`MAX_SAVED_PEERS`].
    pub peers: Vec<String>,
}

/// The most peers added by address that are remembered.
pub const MAX_SAVED_PEERS: usize = 64;

impl AppSettings {
    /// Remembers `public` at `addr` (replacing its old address); the
    /// oldest is forgotten past [`MAX_SAVED_PEERS`].
    pub fn remember_peer(&mut self, public_hex: &str, addr: std::net::SocketAddr) {
        let prefix = format!("{public_hex}@");
        self.peers.retain(|p| !p.starts_with(&prefix));
        self.peers.push(format!("{public_hex}@{addr}"));
        if self.peers.len() > MAX_SAVED_PEERS {
            self.peers.remove(0);
        }
    }
}

/// The registry, keep-alive and room multicast a run of the app uses, and
/// which of them the command line chose (it wins over what is saved).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeChoices {
    /// The registry's address, `None`: none.
    pub registry: Option<String>,
    pub registry_given: bool,
    /// Seconds between keep-alives while messages flow.
    pub keepalive_secs: u64,
    pub keepalive_given: bool,
    /// The IPv4 addresses group rooms use multicast on (empty: unicast).
    pub room_multicast: Vec<std::net::Ipv4Addr>,
    pub room_multicast_given: bool,
}

/// A registry's address (`host:port`) and its public key (64 hex
/// characters), both checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrySetting {
    pub addr: String,
    pub key: String,
}

/// The keep-alive interval when none is chosen (as `kith daemon`'s).
pub const DEFAULT_KEEPALIVE_SECS: u64 = 5;
/// The longest keep-alive interval the Settings dialog accepts.
pub const MAX_KEEPALIVE_SECS: u64 = 600;

/// Checks a registry's address and key as typed; both empty is "no
/// registry". The error is a sentence for the user.
pub fn check_registry(addr: &str, key: &str) -> Result<Option<RegistrySetting>, String> {
    let (addr, key) = (addr.trim(), key.split_whitespace().collect::<String>());
    match (addr.is_empty(), key.is_empty()) {
        (true, true) => return Ok(None),
        (true, false) => return Err("Enter the registry's address too, as host:port.".into()),
        (false, true) => {
            return Err("Enter the registry's public key too (`kith registry` prints it).".into());
        }
        (false, false) => {}
    }
    if addr.parse::<std::net::SocketAddr>().is_err() {
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| format!("{addr:?} has no port: write it as host:port."))?;
        if !matches!(port.parse::<u16>(), Ok(1..)) {
            return Err(format!("{port:?} is not a port (1 to 65535)."));
        }
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !host_ok {
            return Err(format!("{host:?} is not a host name or IP address."));
        }
    } else if addr.ends_with(":0") {
        return Err("Port 0 is not a port anyone listens on.".into());
    }
    let public = public_key_from_hex(&key, "A registry key")?;
    Ok(Some(RegistrySetting {
        addr: addr.to_owned(),
        // The key itself, written as `kith registry` prints it.
        key: crate::proto::ids::PeerId(public.to_bytes()).to_hex(),
    }))
}

/// Reads a public key typed or pasted as 64 hexadecimal characters
/// (whitespace anywhere, as a paste over two lines brings, is left out);
/// the error is a sentence for the user, naming the key as `what` ("A
/// public key", "A registry key"). The one parser of hex keys in the app:
/// the add-peer form, the registry setting (and `--registry-key`), and
/// safety numbers.
pub fn public_key_from_hex(
    key: &str,
    what: &str,
) -> Result<crate::proto::crypto::PublicIdentity, String> {
    let key: String = key.split_whitespace().collect();
    let id = crate::proto::ids::PeerId::from_hex(&key).ok_or_else(|| {
        match key.chars().find(|c| !c.is_ascii_hexdigit()) {
            Some(c) if key.chars().count() == 64 => {
                format!("{what} is 64 hexadecimal characters (0-9, a-f); {c:?} is not one of them.")
            }
            _ => format!(
                "{what} is 64 hexadecimal characters (0-9, a-f); this has {}.",
                key.chars().count()
            ),
        }
    })?;
    crate::proto::crypto::PublicIdentity::from_bytes(&id.0)
        .map_err(|_| "That is not a valid public key: check it was copied whole.".to_owned())
}

/// Checks a keep-alive interval as typed, in seconds.
pub fn check_keepalive(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(secs @ 1..=MAX_KEEPALIVE_SECS) => Ok(secs),
        _ => Err(format!(
            "The keep-alive is a whole number of seconds, 1 to {MAX_KEEPALIVE_SECS}."
        )),
    }
}

impl AppSettings {
    /// Reads the settings of `data_dir`; the defaults where there are none.
    pub fn load(data_dir: &Path) -> Self {
        Self::parse(&read_small(&data_dir.join(SETTINGS_FILE)).unwrap_or_default())
    }

    /// Saves them in `data_dir` (replacing the file at once, so that a
    /// crash leaves the old or the new one).
    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        write_replacing(&data_dir.join(SETTINGS_FILE), &self.emit())
    }

    /// Reads the file's text (see the module docs for what is ignored).
    pub fn parse(text: &str) -> Self {
        let fields = fields(text);
        AppSettings {
            interfaces: fields.get("interfaces").map(|list| {
                list.split_whitespace()
                    .filter(|name| valid_interface_name(name))
                    .map(str::to_owned)
                    .collect()
            }),
            theme: fields
                .get("theme")
                .and_then(|word| Theme::parse(word))
                .unwrap_or_default(),
            // Both or neither, and only if they pass the dialog's checks.
            registry: match (fields.get("registry"), fields.get("registry_key")) {
                (Some(addr), Some(key)) => check_registry(addr, key).ok().flatten(),
                _ => None,
            },
            keepalive_secs: fields
                .get("keepalive_secs")
                .and_then(|secs| check_keepalive(secs).ok()),
            room_multicast: fields.get("room_multicast") == Some(&"on"),
            peers: fields
                .get("peers")
                .map(|list| {
                    list.split_whitespace()
                        .filter(|p| p.parse::<crate::daemon::PeerAddr>().is_ok())
                        .take(MAX_SAVED_PEERS)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The file's text.
    pub fn emit(&self) -> String {
        let mut out = String::from(
            "# The kith desktop app's choices (plain text, not secret; see README).\n",
        );
        if let Some(interfaces) = &self.interfaces {
            out.push_str(&format!("interfaces = {}\n", interfaces.join(" ")));
        }
        out.push_str(&format!("theme = {}\n", self.theme.word()));
        if let Some(registry) = &self.registry {
            out.push_str(&format!("registry = {}\n", registry.addr));
            out.push_str(&format!("registry_key = {}\n", registry.key));
        }
        if let Some(secs) = self.keepalive_secs {
            out.push_str(&format!("keepalive_secs = {secs}\n"));
        }
        if self.room_multicast {
            out.push_str("room_multicast = on\n");
        }
        if !self.peers.is_empty() {
            out.push_str(&format!("peers = {}\n", self.peers.join(" ")));
        }
        out
    }

    /// The interfaces to use when the command line names none: the saved
    /// choice, else `default` (the default route's interface, if any).
    pub fn interfaces_or(&self, default: Option<String>) -> Vec<String> {
        match &self.interfaces {
            Some(chosen) => chosen.clone(),
            None => default.into_iter().collect(),
        }
    }
}

/// The window's size and place, in points, saved in [`WINDOW_FILE`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowGeometry {
    /// The inner size (what the app draws in).
    pub size: [f32; 2],
    /// The outer top-left corner on the screen, when known.
    pub position: Option<[f32; 2]>,
}

/// The smallest window the app allows.
pub const MIN_WINDOW: [f32; 2] = [560.0, 380.0];
/// Larger sizes or places are taken for a damaged file.
const MAX_WINDOW: f32 = 16_384.0;

impl WindowGeometry {
    /// Reads the saved geometry of `data_dir`, if it is sane.
    pub fn load(data_dir: &Path) -> Option<Self> {
        Self::parse(&read_small(&data_dir.join(WINDOW_FILE))?)
    }

    /// Saves it in `data_dir`.
    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        write_replacing(&data_dir.join(WINDOW_FILE), &self.emit())
    }

    /// Reads the file's text; `None` without a sane size.
    pub fn parse(text: &str) -> Option<Self> {
        let fields = fields(text);
        let pair = |key: &str| -> Option<[f32; 2]> {
            let mut numbers = fields.get(key)?.split_whitespace().map(str::parse::<f32>);
            let pair = [numbers.next()?.ok()?, numbers.next()?.ok()?];
            (numbers.next().is_none() && pair.iter().all(|n| n.is_finite())).then_some(pair)
        };
        let size = pair("size")?;
        if size[0] < MIN_WINDOW[0]
            || size[1] < MIN_WINDOW[1]
            || size.iter().any(|n| *n > MAX_WINDOW)
        {
            return None;
        }
        // A place far off any screen is dropped (the window manager then
        // places the window); a little off the left or top edge is allowed.
        let position = pair("position").filter(|p| {
            p.iter()
                .all(|n| (-size[0].max(size[1])..MAX_WINDOW).contains(n))
        });
        Some(WindowGeometry { size, position })
    }

    /// The file's text.
    pub fn emit(&self) -> String {
        let mut out = format!("size = {} {}\n", self.size[0], self.size[1]);
        if let Some([x, y]) = self.position {
            out.push_str(&format!("position = {x} {y}\n"));
        }
        out
    }
}

/// One network interface of this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LanInterface {
    pub name: String,
    /// Its addresses, IPv4 first.
    pub addrs: Vec<IpAddr>,
    /// It can multicast (mDNS needs that).
    pub multicast: bool,
    pub loopback: bool,
}

impl LanInterface {
    /// "eth0 · 192.168.1.20": how the lists show it (its IPv6 addresses
    /// only when it has no IPv4 one: kith listens on IPv4 by default).
    pub fn label(&self) -> String {
        let v4 = self.has_ipv4();
        let addrs: Vec<String> = self
            .addrs
            .iter()
            .filter(|a| a.is_ipv4() || !v4)
            .map(IpAddr::to_string)
            .collect();
        if addrs.is_empty() {
            self.name.clone()
        } else {
            format!("{} · {}", self.name, addrs.join(", "))
        }
    }

    /// Whether it has an IPv4 address.
    pub fn has_ipv4(&self) -> bool {
        self.addrs.iter().any(IpAddr::is_ipv4)
    }

    /// Whether it looks like a container's or a VM's bridge (not a LAN
    /// people are on).
    fn virtual_bridge(&self) -> bool {
        [
            "docker", "veth", "virbr", "br-", "vmnet", "vboxnet", "lxc", "cni",
        ]
        .iter()
        .any(|prefix| self.name.starts_with(prefix))
    }

    fn private_v4(&self) -> bool {
        self.addrs.iter().any(|a| match a {
            IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
            IpAddr::V6(_) => false,
        })
    }
}

/// The machine's interfaces with their addresses (loopback last), as
/// the first-run screen and the Settings dialog list them.
pub fn list_interfaces() -> Vec<LanInterface> {
    let Ok(all) = if_addrs::get_if_addrs() else {
        return Vec::new();
    };
    let mut by_name: Vec<LanInterface> = Vec::new();
    for iface in all {
        let ip = iface.ip();
        let index = match by_name.iter().position(|i| i.name == iface.name) {
            Some(index) => index,
            None => {
                let flags = interface_flags(&iface.name).unwrap_or(0);
                by_name.push(LanInterface {
                    multicast: flags & IFF_MULTICAST != 0,
                    loopback: iface.is_loopback() || flags & IFF_LOOPBACK != 0,
                    name: iface.name.clone(),
                    addrs: Vec::new(),
                });
                by_name.len() - 1
            }
        };
        by_name[index].addrs.push(ip);
    }
    for iface in &mut by_name {
        iface.addrs.sort_by_key(|a| (a.is_ipv6(), *a));
    }
    by_name.sort_by_key(|i| i.loopback);
    by_name
}

const IFF_LOOPBACK: u32 = 0x8;
const IFF_MULTICAST: u32 = 0x1000;

/// The interface's flags from `/sys/class/net` (Linux).
fn interface_flags(name: &str) -> Option<u32> {
    if !valid_interface_name(name) {
        return None;
    }
    let flags = std::fs::read_to_string(format!("/sys/class/net/{name}/flags")).ok()?;
    u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).ok()
}

/// Whether `name` can be an interface name (as Linux allows, and as the
/// settings file stores them: no whitespace).
fn valid_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && !name.contains('/')
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The interface of the default route in `/proc/net/route`'s text (the
/// one with the lowest metric when there are several).
pub fn default_route_interface(routes: &str) -> Option<String> {
    routes
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (name, destination, flags, metric, mask) = (
                fields.first()?,
                fields.get(1)?,
                fields.get(3)?,
                fields.get(6)?,
                fields.get(7)?,
            );
            const RTF_UP: u32 = 0x1;
            let up = u32::from_str_radix(flags, 16).ok()? & RTF_UP != 0;
            if !up || *destination != "00000000" || *mask != "00000000" {
                return None;
            }
            Some((metric.parse::<u32>().ok()?, (*name).to_owned()))
        })
        .min()
        .map(|(_, name)| name)
}

/// The interface of this machine's default route, if it can multicast.
pub fn default_interface() -> Option<String> {
    let name = default_route_interface(&std::fs::read_to_string("/proc/net/route").ok()?)?;
    (interface_flags(&name)? & IFF_MULTICAST != 0).then_some(name)
}

/// What the first-run screen ticks: the default route's interface if it
/// can multicast; without one, every interface that can and holds a
/// private IPv4 address (a LAN), leaving out loopback and container or VM
/// bridges. Possibly nothing.
pub fn preselect(interfaces: &[LanInterface], default_route: Option<&str>) -> Vec<String> {
    let usable = |i: &&LanInterface| i.multicast && !i.loopback && !i.addrs.is_empty();
    if let Some(default) = default_route
        && let Some(iface) = interfaces.iter().filter(usable).find(|i| i.name == default)
    {
        return vec![iface.name.clone()];
    }
    interfaces
        .iter()
        .filter(usable)
        .filter(|i| !i.virtual_bridge() && i.private_v4())
        .map(|i| i.name.clone())
        .collect()
}

fn fields(text: &str) -> BTreeMap<&str, &str> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim(), value.trim()))
        .collect()
}

fn read_small(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_FILE_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

fn write_replacing(path: &Path, text: &str) -> std::io::Result<()> {
    let temp = path.with_extension("new");
    std::fs::write(&temp, text)?;
    std::fs::rename(&temp, path)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn iface(name: &str, addr: &str, multicast: bool) -> LanInterface {
        LanInterface {
            name: name.into(),
            addrs: vec![addr.parse().expect("literal")],
            multicast,
            loopback: name == "lo",
        }
    }

    /// A valid public key, as `kith id` prints one.
    fn valid_key() -> String {
        use rand::SeedableRng;
        let identity =
            crate::proto::crypto::Identity::generate(&mut rand::rngs::StdRng::seed_from_u64(7));
        crate::proto::ids::PeerId(identity.public().to_bytes()).to_hex()
    }

    /// 32 bytes that are no Ed25519 public key, as hex.
    pub(crate) fn not_a_point() -> String {
        (0u8..=255)
            .map(|b| [b; 32])
            .find(|bytes| crate::proto::crypto::PublicIdentity::from_bytes(bytes).is_err())
            .map(|bytes| crate::proto::ids::PeerId(bytes).to_hex())
            .expect("invariant: about half of all 32-byte strings are no curve point")
    }

    #[test]
    fn hex_keys_are_read_whole_and_bad_ones_say_why() {
        let key = valid_key();
        let read = |text: &str| public_key_from_hex(text, "A public key");
        let bytes =
            |text: &str| read(text).map(|k| crate::proto::ids::PeerId(k.to_bytes()).to_hex());
        assert_eq!(bytes(&key), Ok(key.clone()));
        // Pasted over two lines, with spaces around: the same key.
        let pasted = format!("  {}\n{} ", &key[..32], &key[32..]);
        assert_eq!(bytes(&pasted), Ok(key.clone()));
        assert_eq!(bytes(&key.to_uppercase()), Ok(key.clone()));
        for (text, problem) in [
            (String::new(), "this has 0."),
            ("abc".to_owned(), "this has 3."),
            (format!("{key}0"), "this has 65."),
            (format!("{}g", &key[..63]), "'g' is not one of them."),
            (format!("{}é", &key[..63]), "'é' is not one of them."),
            (not_a_point(), "not a valid public key"),
        ] {
            let error = read(&text).expect_err(&text);
            assert!(error.contains(problem), "{text:?}: {error}");
        }
        assert!(
            public_key_from_hex("abc", "A registry key")
                .expect_err("short")
                .starts_with("A registry key is 64")
        );
    }

    #[test]
    fn registry_and_keepalive_are_checked_and_bad_ones_never_read() {
        let key = valid_key();
        let key = key.as_str();
        assert_eq!(check_registry(" ", ""), Ok(None));
        let ok = |addr: &str| check_registry(addr, key).map(|r| r.map(|r| r.addr));
        assert_eq!(
            ok("203.0.113.7:47480"),
            Ok(Some("203.0.113.7:47480".into()))
        );
        assert_eq!(
            ok(" kith.example.org:47480 "),
            Ok(Some("kith.example.org:47480".into()))
        );
        assert_eq!(
            ok("[2001:db8::1]:47480"),
            Ok(Some("[2001:db8::1]:47480".into()))
        );
        for (addr, key, problem) in [
            ("", key, "address too"),
            ("kith.example.org:47480", "", "public key too"),
            ("kith.example.org", key, "has no port"),
            ("kith.example.org:0", key, "is not a port"),
            ("kith.example.org:99999", key, "is not a port"),
            ("10.0.0.1:0", key, "Port 0"),
            ("bad host!:47480", key, "not a host name"),
            ("-x.org:47480", key, "not a host name"),
            ("kith.example.org:47480", "abc", "this has 3"),
        ] {
            let error = check_registry(addr, key).expect_err(addr);
            assert!(error.contains(problem), "{addr} {key}: {error}");
        }
        assert_eq!(check_keepalive(" 12 "), Ok(12));
        for bad in ["0", "-1", "601", "five", ""] {
            assert!(check_keepalive(bad).is_err(), "{bad}");
        }
        // A hand-edited file with bad values: they are not used.
        let edited = AppSettings::parse(
            "registry = no port\nregistry_key = abc\nkeepalive_secs = 0\nroom_multicast = yes",
        );
        assert_eq!(edited, AppSettings::default());
        // A peer that does not parse is dropped, the others kept.
        let peers = AppSettings::parse(&format!(
            "peers = nonsense {}@10.0.0.2:47474 {}@nowhere",
            valid_key(),
            valid_key()
        ))
        .peers;
        assert_eq!(peers, [format!("{}@10.0.0.2:47474", valid_key())]);
        // Half a registry is none.
        assert_eq!(
            AppSettings::parse("registry = 10.0.0.1:47480").registry,
            None
        );
    }

    #[test]
    fn settings_round_trip_and_tolerate_damage() {
        let settings = AppSettings {
            interfaces: Some(vec!["eth0".into(), "wlan0".into()]),
            theme: Theme::Dark,
            registry: Some(RegistrySetting {
                addr: "registry.example.org:47480".into(),
                key: valid_key(),
            }),
            keepalive_secs: Some(12),
            room_multicast: true,
            peers: vec![format!("{}@10.0.0.2:47474", valid_key())],
        };
        assert_eq!(AppSettings::parse(&settings.emit()), settings);
        // Chosen, but none: kept as an empty choice, not "never chosen".
        let none = AppSettings {
            interfaces: Some(Vec::new()),
            ..AppSettings::default()
        };
        assert_eq!(AppSettings::parse(&none.emit()), none);
        assert_eq!(
            none.interfaces_or(Some("eth0".into())),
            Vec::<String>::new()
        );
        assert_eq!(
            AppSettings::default().interfaces_or(Some("eth0".into())),
            ["eth0"]
        );
        // Hand-edited: unknown keys, a bad theme and a bad name are ignored.
        let edited = AppSettings::parse(
            "colour = red\ntheme = purple\n interfaces = eth0 a/b  wlan0 \nno equals sign",
        );
        assert_eq!(
            edited,
            AppSettings {
                interfaces: Some(vec!["eth0".into(), "wlan0".into()]),
                ..AppSettings::default()
            }
        );
        assert_eq!(
            AppSettings::parse("\u{0}\u{ff}garbage"),
            AppSettings::default()
        );
    }

    #[test]
    fn settings_files_save_and_load() {
        let dir = std::env::temp_dir().join(format!("kith-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        assert_eq!(AppSettings::load(&dir), AppSettings::default());
        assert_eq!(WindowGeometry::load(&dir), None);
        let settings = AppSettings {
            interfaces: Some(vec!["eth0".into()]),
            theme: Theme::Light,
            ..AppSettings::default()
        };
        settings.save(&dir).expect("save");
        assert_eq!(AppSettings::load(&dir), settings);
        let geometry = WindowGeometry {
            size: [1200.0, 800.0],
            position: Some([40.0, 30.0]),
        };
        geometry.save(&dir).expect("save");
        assert_eq!(WindowGeometry::load(&dir), Some(geometry));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn window_geometry_refuses_what_cannot_be_a_window() {
        let parse = WindowGeometry::parse;
        assert_eq!(
            parse("size = 800 600"),
            Some(WindowGeometry {
                size: [800.0, 600.0],
                position: None
            })
        );
        assert_eq!(parse("size = 10 10"), None);
        assert_eq!(parse("size = NaN 600"), None);
        assert_eq!(parse("size = 800 600 3"), None);
        assert_eq!(parse("size = 1e9 600"), None);
        assert_eq!(parse("position = 0 0"), None);
        // Far off the screen: the size stays, the place goes.
        assert_eq!(
            parse("size = 800 600\nposition = 99999 5").and_then(|g| g.position),
            None
        );
        assert_eq!(
            parse("size = 800 600\nposition = -20 5").and_then(|g| g.position),
            Some([-20.0, 5.0])
        );
    }

    #[test]
    fn default_route_is_read_from_proc_net_route() {
        let routes = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
            eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(default_route_interface(routes).as_deref(), Some("eth0"));
        // A route that is down does not count; no default route at all.
        let down = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
            eth0\t00000000\t010200C0\t0002\t0\t0\t0\t00000000\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n";
        assert_eq!(default_route_interface(down), None);
        assert_eq!(default_route_interface(""), None);
        assert_eq!(default_route_interface("header\ngarbage line"), None);
    }

    #[test]
    fn preselection_prefers_the_default_route_then_private_lans() {
        let list = vec![
            iface("eth0", "192.168.1.20", true),
            iface("docker0", "172.17.0.1", true),
            iface("wlan0", "10.0.0.7", true),
            iface("tun0", "10.8.0.2", false),
            iface("lo", "127.0.0.1", false),
        ];
        assert_eq!(preselect(&list, Some("wlan0")), ["wlan0"]);
        // The default route's interface cannot multicast: the LANs instead.
        assert_eq!(preselect(&list, Some("tun0")), ["eth0", "wlan0"]);
        assert_eq!(preselect(&list, None), ["eth0", "wlan0"]);
        // A public address only: nothing is guessed.
        let public = vec![iface("eth0", "203.0.113.5", true)];
        assert_eq!(preselect(&public, None), Vec::<String>::new());
        assert_eq!(preselect(&public, Some("eth0")), ["eth0"]);
        assert_eq!(list[0].label(), "eth0 · 192.168.1.20");
        let mut both = iface("eth1", "fe80::1", true);
        assert_eq!(both.label(), "eth1 · fe80::1");
        both.addrs.push("10.1.2.3".parse().expect("literal"));
        assert_eq!(both.label(), "eth1 · 10.1.2.3");
    }

    #[test]
    fn this_machine_lists_its_interfaces() {
        // Every Linux machine has a loopback interface with 127.0.0.1.
        let list = list_interfaces();
        let lo = list
            .iter()
            .find(|i| i.loopback)
            .expect("a loopback interface");
        assert!(lo.addrs.contains(&"127.0.0.1".parse().expect("literal")));
        assert!(list.last().is_some_and(|i| i.loopback));
    }
}
