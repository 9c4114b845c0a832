//! What every fuzz target does with one input, shared with the corpus
//! replay test (`tests/fuzz_corpora.rs`), so CI replays the corpora on
//! stable with the same checks.
//!
//! Each check hands untrusted bytes to one decoder of outside bytes. None
//! may panic. Where an encoder exists, whatever decodes must encode to
//! bytes that decode to the same value, byte for byte where the format is
//! canonical (envelopes, chain snapshots). Allocation is bounded by running
//! the fuzzers under libFuzzer's `-malloc_limit_mb` and `-rss_limit_mb`.
//!
//! A check returns whether the input was accepted (decoded), so the seed
//! test can tell a valid seed from noise; the fuzz targets ignore it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use kith::daemon::control::Request;
use kith::discovery::mdns::{
    MAX_INSTANCE_NAME, sanitize_display_name, validate_public_key, validate_txt,
};
use kith::proto::crypto::{
    ChainSnapshot, Envelope, HandshakeFinish, HandshakeInit, HandshakeResponse, Identity,
    Initiator, Responder, SecretKey, open_group_frame, seal_group_frame,
};
use kith::proto::ids::{PeerId, RoomId};
use kith::proto::node::Control;
use kith::proto::profile::{SignedProfile, check_name};
use kith::proto::reliable::{Config, Packet, Reliable, RoomConfig};
use kith::proto::sync;
use kith::proto::wire::Datagram;
use kith::registry::wire::{Answer, Message as RegistryMessage, Registration};
use kith::registry::{RegistryConfig, RegistryState};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// A check: `true` if the input was accepted.
pub type Check = fn(&[u8]) -> bool;

/// Every target: its name (the fuzz target and corpus directory) and check.
pub const TARGETS: &[(&str, Check)] = &[
    ("datagram", datagram),
    ("reliable_packet", reliable_packet),
    ("envelope", envelope),
    ("handshake", handshake),
    ("sync_message", sync_message),
    ("node_control", node_control),
    ("group_frame", group_frame),
    ("registry", registry),
    ("chain_snapshot", chain_snapshot),
    ("journal_record", journal_record),
    ("control_line", control_line),
    ("mdns_txt", mdns_txt),
    ("profile_record", profile_record),
];

/// The identity whose profile records [`profile_record`] accepts.
pub fn profile_signer() -> Identity {
    Identity::from_secret_bytes(&[0x11; 32])
}

/// A `kt` datagram (`proto::wire`), the outermost layer of peer traffic.
pub fn datagram(data: &[u8]) -> bool {
    let Ok(datagram) = Datagram::parse(data) else {
        return false;
    };
    let bytes = datagram.emit().expect("a parsed datagram re-encodes");
    assert_eq!(Datagram::parse(&bytes), Ok(datagram));
    true
}

/// A reliable-layer packet, as it comes out of a pairwise session.
pub fn reliable_packet(data: &[u8]) -> bool {
    let Ok(packet) = Packet::decode(data) else {
        return false;
    };
    assert_eq!(Packet::decode(&packet.encode()), Ok(packet));
    true
}

/// A signed room message. Its encoding is canonical (the id hashes it).
pub fn envelope(data: &[u8]) -> bool {
    let Ok(envelope) = Envelope::parse(data) else {
        return false;
    };
    assert_eq!(envelope.emit(), data, "an envelope has one encoding");
    true
}

/// Handshake messages 1–3 from a stranger: the first 32 bytes (zero
/// padded) are an ephemeral key, the rest a sealed identity. Bytes that do
/// not come from the real peer never complete a handshake.
pub fn handshake(data: &[u8]) -> bool {
    let mut rng = StdRng::seed_from_u64(1);
    let ours = Identity::generate(&mut rng);
    let mut ephemeral = [0u8; 32];
    let split = data.len().min(32);
    ephemeral[..split].copy_from_slice(&data[..split]);
    let sealed = data[split..].to_vec();

    // We respond to their message 1, then get their message 3.
    let responded = Responder::handle_init(&mut rng, &ours, &HandshakeInit { ephemeral });
    let accepted = responded.is_ok();
    if let Ok((responder, _)) = responded {
        let finish = HandshakeFinish {
            sealed: sealed.clone(),
        };
        assert!(responder.handle_finish(&finish).is_err());
    }
    // We initiated; their message 2 answers ours.
    let (initiator, _) = Initiator::start(&mut rng, None);
    let response = HandshakeResponse { ephemeral, sealed };
    assert!(initiator.handle_response(&ours, &response).is_err());
    accepted
}

/// A history-reconciliation message.
pub fn sync_message(data: &[u8]) -> bool {
    let Ok(message) = sync::Message::parse(data) else {
        return false;
    };
    assert_eq!(sync::Message::parse(&message.emit()), Ok(message));
    true
}

/// A control message (sender keys, invitations, member lists, ...).
pub fn node_control(data: &[u8]) -> bool {
    let Ok(control) = Control::decode(data) else {
        return false;
    };
    assert_eq!(Control::decode(&control.encode()), Ok(control));
    true
}

/// A multicast group frame's payload, `epoch (4) ‖ nonce ‖ sealed packet`,
/// as `Node` opens it with the room's epoch key (`GROUP_KEY`, with
/// `GROUP_AAD`). Sealing then opening gives the bytes back. What opened,
/// or else the bytes themselves (a member can seal anything), goes to the
/// reliable layer of a multicast room the claimed sender is a member of.
pub fn group_frame(data: &[u8]) -> bool {
    let key = SecretKey::from_bytes(GROUP_KEY);
    let sealed = seal_group_frame(&key, &[9; 24], GROUP_AAD, data).expect("sealing never fails");
    assert_eq!(
        open_group_frame(&key, GROUP_AAD, &sealed).expect("our own frame opens"),
        data
    );
    let opened = data
        .split_at_checked(4)
        .and_then(|(_epoch, sealed)| open_group_frame(&key, GROUP_AAD, sealed).ok());
    let packet = opened.as_deref().unwrap_or(data);

    let (me, member) = (PeerId([1; 32]), PeerId([2; 32]));
    let now = Instant::now();
    let mut reliable = Reliable::new(me, Config::default(), StdRng::seed_from_u64(2), now);
    reliable.join_room(GROUP_ROOM, RoomConfig { multicast: true }, [me, member]);
    let accepted = reliable
        .handle_group_datagram(now, member, GROUP_ROOM, packet)
        .is_ok();
    while reliable.poll_event().is_some() {}
    while reliable.poll_transmit(now).is_some() {}
    accepted
}

/// The room, epoch key and associated data of [`group_frame`].
pub const GROUP_ROOM: RoomId = RoomId([3; 32]);
pub const GROUP_KEY: [u8; 32] = [7; 32];
pub const GROUP_AAD: &[u8] = b"fuzz group frame";

/// A `kr` registry datagram, both as the wire decoder sees it (with the
/// signed bodies inside) and as a registry and its clients handle it.
pub fn registry(data: &[u8]) -> bool {
    let parsed = RegistryMessage::parse(data);
    let accepted = parsed.is_ok();
    if let Ok(message) = parsed {
        let bytes = message.emit().expect("a parsed message re-encodes");
        assert_eq!(RegistryMessage::parse(&bytes), Ok(message.clone()));
        match &message {
            RegistryMessage::Register(signed) => {
                if let Ok(body) = Registration::parse(&signed.body) {
                    assert_eq!(Registration::parse(&body.emit()), Ok(body));
                }
            }
            RegistryMessage::Answer(signed) => {
                if let Ok(body) = Answer::parse(&signed.body) {
                    assert_eq!(Answer::parse(&body.emit()), Ok(body));
                }
            }
            _ => {}
        }
    }
    let mut rng = StdRng::seed_from_u64(3);
    let mut state = RegistryState::new(
        Identity::generate(&mut rng),
        [7; 32],
        RegistryConfig::default(),
    );
    let source = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 4000);
    state.handle_datagram(Instant::now(), 1_800_000_000_000, source, data);
    while state.poll_transmit().is_some() {}
    accepted
}

/// A sealed chain state as the store keeps it. Canonical: decoding then
/// encoding gives the same bytes.
pub fn chain_snapshot(data: &[u8]) -> bool {
    let Ok(snapshot) = ChainSnapshot::decode(data) else {
        return false;
    };
    assert_eq!(&snapshot.encode()[..], data, "a snapshot has one encoding");
    true
}

/// A journal record's plaintext, as read back after a crash.
pub fn journal_record(data: &[u8]) -> bool {
    use kith::store::fuzz::journal_record_reencode;
    let Some(bytes) = journal_record_reencode(data) else {
        return false;
    };
    // Version 2 records come back as version 3, so compare the second
    // encoding with the first rather than with the input.
    assert_eq!(journal_record_reencode(&bytes).as_ref(), Some(&bytes));
    true
}

/// A control-socket request line (the daemon refuses non-UTF-8 first).
pub fn control_line(data: &[u8]) -> bool {
    let Ok(line) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(request) = Request::parse(line) else {
        return false;
    };
    assert_eq!(Request::parse(&request.emit()).ok(), Some(request));
    true
}

/// The TXT values of an mDNS announcement and its instance name. The first
/// byte says, two bits per key (`id`, `v`, `pk`), whether the key is absent
/// (0), present without a value (1) or has a value (2, 3); the values are
/// the rest, split at zero bytes.
pub fn mdns_txt(data: &[u8]) -> bool {
    let Some((&shape, rest)) = data.split_first() else {
        return false;
    };
    let mut values = rest.split(|&b| b == 0);
    let mut key = |index: u32| match (shape >> (2 * index)) & 3 {
        0 => None,
        1 => Some(None),
        _ => Some(Some(values.next().unwrap_or_default())),
    };
    let (id, version, public_key) = (key(0), key(1), key(2));
    let name = sanitize_display_name(&String::from_utf8_lossy(data));
    assert!(name.len() <= MAX_INSTANCE_NAME);
    assert!(!name.chars().any(char::is_control));
    assert_eq!(sanitize_display_name(&name), name);
    let Ok(peer) = validate_txt(id, version) else {
        return false;
    };
    let text = id.flatten().expect("a valid id was present");
    assert!(text.eq_ignore_ascii_case(peer.to_hex().as_bytes()));
    match validate_public_key(peer, public_key) {
        Ok(Some(public)) => assert_eq!(public.peer_id(), peer),
        Ok(None) => assert!(public_key.is_none()),
        Err(_) => return false,
    }
    true
}

/// A profile record (`proto::profile`), as a peer hands it over: checked
/// against [`profile_signer`], the key the receiver holds for the sender.
/// Whatever it accepts holds a name that passes the name rules. The name
/// rules themselves take any text.
pub fn profile_record(data: &[u8]) -> bool {
    let _ = check_name(&String::from_utf8_lossy(data));
    let Ok(record) = SignedProfile::verify(data, &profile_signer().public()) else {
        return false;
    };
    assert_eq!(record.bytes, data);
    assert_eq!(
        check_name(&record.profile.name),
        Ok(record.profile.name.clone())
    );
    true
}
