//! Replays every fuzz corpus (`fuzz/corpus/<target>/*`) through the same
//! checks the fuzz targets run (`fuzz/checks.rs`), so CI exercises them on
//! stable without libFuzzer; and keeps the seed inputs in step with the
//! encoders that produced them.
//!
//! The seeds are real encodings. After a deliberate format change, write
//! them again with `KITH_WRITE_FUZZ_SEEDS=1 cargo test --test fuzz_corpora`.

#[allow(dead_code)]
#[path = "../fuzz/checks.rs"]
mod checks;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Instant;

use kith::daemon::control::{ListenFormat, Listing, Request};
use kith::proto::crypto::{
    ChainId, Identity, Initiator, OutgoingMessage, ReceiverChain, Responder, SecretKey,
    SenderChain, seal_envelope, seal_group_frame, seal_unsigned, sign_batch,
};
use kith::proto::ids::{MessageId, PeerId};
use kith::proto::node::{Control, MemberKey};
use kith::proto::profile::SignedProfile;
use kith::proto::reliable::Packet;
use kith::proto::sync::{Item, Reconciler, SALT_LEN, SortedItems, SyncConfig};
use kith::proto::wire::{Datagram, Frame, HANDSHAKE_SEALED_LEN};
use kith::registry::{RegistryClient, RegistryClientConfig, RegistryConfig, RegistryState};
use kith::store::Mute;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// `fuzz/corpus`, or `KITH_FUZZ_CORPUS`: a fuzzer's working corpora (one
/// directory per target) replayed here run with debug assertions, which
/// the fuzz builds leave out, so an overflow shows up as a panic.
fn corpus_root() -> PathBuf {
    std::env::var_os("KITH_FUZZ_CORPUS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus"),
        PathBuf::from,
    )
}

#[test]
fn every_corpus_file_passes_its_targets_checks() {
    let started = Instant::now();
    let working = std::env::var_os("KITH_FUZZ_CORPUS").is_some();
    let mut dirs = BTreeSet::new();
    let mut files = 0;
    for entry in std::fs::read_dir(corpus_root()).expect("fuzz/corpus exists") {
        let dir = entry.expect("readable corpus entry").path();
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("UTF-8 name");
        let Some((_, check)) = checks::TARGETS.iter().find(|(target, _)| *target == name) else {
            // A working directory may hold more than corpora (logs).
            assert!(working, "corpus {name} has no fuzz target");
            continue;
        };
        for file in std::fs::read_dir(&dir).expect("corpus directory") {
            let path = file.expect("readable corpus file").path();
            let bytes = std::fs::read(&path).expect("readable corpus file");
            // The check panics (with the input's path in the report) on a
            // failure, as the fuzz target would.
            eprintln!("{}", path.display());
            check(&bytes);
            files += 1;
        }
        dirs.insert(name.to_owned());
    }
    let targets: BTreeSet<String> = checks::TARGETS.iter().map(|(t, _)| t.to_string()).collect();
    if !working {
        assert_eq!(dirs, targets, "every target has a corpus, and no more");
    }
    eprintln!("{files} corpus files in {:?}", started.elapsed());
}

#[test]
fn seeds_are_in_the_corpora() {
    let write = std::env::var_os("KITH_WRITE_FUZZ_SEEDS").is_some();
    for (target, inputs) in seeds() {
        assert!(
            checks::TARGETS.iter().any(|(t, _)| *t == target),
            "{target} is a target"
        );
        let dir = corpus_root().join(target);
        for (index, input) in inputs.iter().enumerate() {
            // A seed passes the check and is accepted: one that is
            // refused tests no more than noise would.
            let (_, check) = checks::TARGETS
                .iter()
                .find(|(t, _)| *t == target)
                .expect("checked just above");
            assert!(check(input), "{target} seed {index} is accepted");
            let path = dir.join(format!("seed-{index}"));
            if write {
                std::fs::create_dir_all(&dir).expect("create corpus directory");
                std::fs::write(&path, input).expect("write seed");
            } else {
                let on_disk = std::fs::read(&path).unwrap_or_default();
                assert!(
                    on_disk == *input,
                    "{} differs from its encoder's output; if the format changed on \
                     purpose, run KITH_WRITE_FUZZ_SEEDS=1 cargo test --test fuzz_corpora",
                    path.display()
                );
            }
        }
    }
}

fn identity(seed: u64) -> Identity {
    Identity::generate(&mut StdRng::seed_from_u64(seed))
}

/// A few valid encodings per target, from the real encoders.
fn seeds() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let room = checks::GROUP_ROOM;
    let alice = identity(1);
    let chain_id = ChainId {
        room,
        epoch: 2,
        sender: alice.peer_id(),
    };
    let mut rng = StdRng::seed_from_u64(5);
    let mut chain = SenderChain::new(&mut rng, chain_id);
    let message = |plaintext| OutgoingMessage {
        kind: 1,
        timestamp: 1_700_000_000_000 << 16,
        plaintext,
    };
    let single = seal_envelope(&alice, &mut chain, message(b"hello")).expect("seals");
    let batch: Vec<_> = (0..3)
        .map(|_| seal_unsigned(&mut chain, message(b"in a batch")).expect("seals"))
        .collect();
    let batched = sign_batch(&alice, batch).pop().expect("three envelopes");
    let receiving = ReceiverChain::from_distribution(&chain.distribution()).snapshot(0);
    let sending = chain.snapshot();

    let (_, init) = Initiator::start(&mut rng, None);
    let (_, response) = Responder::handle_init(&mut rng, &identity(2), &init).expect("responds");
    let mut response_bytes = response.ephemeral.to_vec();
    response_bytes.extend_from_slice(&response.sealed);

    let packets = [
        Packet::Data {
            room,
            session: 9,
            seq: 4,
            low: 2,
            frag: 1,
            frags: 2,
            id: MessageId([5; 32]),
            chunk: b"fragment".to_vec(),
            ack_now: true,
        },
        Packet::Ack {
            room,
            session: 9,
            receiver_session: 8,
            ack_no: 3,
            received: 5,
            ranges: vec![(7, 9)],
            stored: 4,
            largest: Some(8),
            delay_us: 250,
            mcast_rx: 2,
            refused: vec![(1, 2)],
        },
        Packet::Nack {
            room,
            session: 9,
            missing: vec![(5, 7)],
            mcast_rx: 0,
        },
        Packet::Heartbeat {
            room,
            session: 9,
            low: 0,
            next: 10,
        },
    ];

    let from = alice.peer_id();
    let datagrams = [
        Frame::HandshakeInit {
            ephemeral: init.ephemeral,
        },
        Frame::HandshakeFinish {
            sealed: vec![6; HANDSHAKE_SEALED_LEN],
        },
        Frame::Sealed {
            session: [4; 16],
            counter: 12,
            ciphertext: vec![8; 40],
        },
        Frame::Group {
            tag: [5; 16],
            payload: vec![2; 60],
        },
    ]
    .map(|frame| {
        Datagram {
            from: frame.names_sender().then_some(from),
            frame,
        }
        .emit()
        .expect("fits")
    });

    let controls = [
        Control::SenderKey {
            room,
            epoch: 2,
            start_seq: 7,
            chain_key: [9; 32],
        },
        Control::RoomInvite {
            room,
            name: "kitchen".to_owned(),
            epoch: 3,
            admin: [5; 32],
            members: vec![MemberKey([5; 32]), MemberKey([6; 32])],
            group_key: [7; 32],
            founder: from,
            nonce: [8; 32],
        },
        Control::Forward {
            envelope: single.emit(),
        },
        Control::Profile {
            record: SignedProfile::sign(&alice, 1_700_000_000_000, "Alice")
                .expect("a good name")
                .bytes,
        },
    ]
    .map(|control| control.encode());
    let profiles = [
        ("Alice", 1),
        ("Zoë 🦀 李 the longest name of them all ok", u64::MAX),
    ]
    .map(|(name, seq)| {
        SignedProfile::sign(&checks::profile_signer(), seq, name)
            .expect("a good name")
            .bytes
    });

    let group_key = SecretKey::from_bytes(checks::GROUP_KEY);
    let mut group_payload = 2u32.to_le_bytes().to_vec();
    let data = packets[0].encode();
    group_payload
        .extend(seal_group_frame(&group_key, &[1; 24], checks::GROUP_AAD, &data).expect("seals"));

    let items: Vec<Item> = (0..40u64)
        .map(|i| Item {
            timestamp: (1_700_000_000_000 + i * 1000) << 16,
            id: MessageId(*blake3::hash(&i.to_le_bytes()).as_bytes()),
        })
        .collect();
    let mut initiator = Reconciler::initiator(SyncConfig::default(), [7; SALT_LEN]);
    initiator.initiate(&SortedItems::new(items.clone()));
    let mut sync_messages: Vec<Vec<u8>> = std::iter::from_fn(|| initiator.poll_message()).collect();
    let mut responder = Reconciler::responder(SyncConfig::default());
    let half = SortedItems::new(items[..20].to_vec());
    for message in sync_messages.clone() {
        responder.handle_message(&half, &message).expect("valid");
    }
    sync_messages.extend(std::iter::from_fn(|| responder.poll_message()));
    sync_messages.truncate(4);

    let mut registry = RegistryState::new(identity(10), [7; 32], RegistryConfig::default());
    let mut client = RegistryClient::new(
        identity(11),
        RegistryClientConfig::new(registry.public_key()),
        [11; 32],
    )
    .expect("valid registry key");
    let source = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 11)), 4011);
    client.set_addresses(vec![source]).expect("one address");
    let now = Instant::now();
    let register = client.register(now, 1_800_000_000_000);
    registry.handle_datagram(now, 1_800_000_000_000, source, &register);
    let mut registry_messages = vec![register, client.lookup(alice.peer_id())];
    registry_messages.extend(std::iter::from_fn(|| registry.poll_transmit()).map(|t| t.payload));

    // Journal records, as `JournalRecord::encode` lays them out (the type
    // is crate-private): version 3 with a row and a chain; version 2.
    let put = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    };
    let row = |out: &mut Vec<u8>, epoch: Option<u32>| {
        out.extend_from_slice(&single.id().0);
        out.extend_from_slice(&room.0);
        out.extend_from_slice(&from.0);
        out.extend_from_slice(&1u64.to_le_bytes());
        out.extend_from_slice(&(1_700_000_000_000u64 << 16).to_le_bytes());
        out.push(0);
        if let Some(epoch) = epoch {
            out.push(1);
            out.extend_from_slice(&epoch.to_le_bytes());
        }
        put(out, b"sealed row");
    };
    let mut journal_v3 = vec![3];
    journal_v3.extend_from_slice(&1u32.to_le_bytes());
    row(&mut journal_v3, Some(2));
    journal_v3.extend_from_slice(&1u32.to_le_bytes());
    put(&mut journal_v3, &sending.encode());
    let mut journal_v2 = vec![2];
    journal_v2.extend_from_slice(&1u32.to_le_bytes());
    row(&mut journal_v2, None);
    journal_v2.extend_from_slice(&0u32.to_le_bytes());

    let requests = [
        Request::Send {
            to: "bob".to_owned(),
            text: "hi there".to_owned(),
        },
        Request::Create {
            name: "kitchen".to_owned(),
            members: vec!["bob".to_owned(), "carol".to_owned()],
        },
        Request::Mute {
            target: "kitchen".to_owned(),
            mute: Some(Mute::Until(1_800_000_000_000)),
        },
        Request::Listen(ListenFormat::Json),
        Request::Peers,
        Request::ListenSince(ListenFormat::Text, 1234),
        Request::Json(Listing::Rooms),
        Request::History {
            room: "kitchen".to_owned(),
            before: Some(99),
            limit: 50,
            json: true,
        },
        Request::Read {
            room: "kitchen".to_owned(),
            up_to: None,
        },
    ]
    .map(|request| request.emit().into_bytes());

    // Shape 0b101010: `id`, `v` and `pk` all carry values.
    let mut txt = vec![0b10_10_10];
    txt.extend_from_slice(from.to_hex().as_bytes());
    txt.push(0);
    txt.extend_from_slice(kith::proto::wire::VERSION.to_string().as_bytes());
    txt.push(0);
    txt.extend_from_slice(PeerId(alice.public().to_bytes()).to_hex().as_bytes());
    let mut txt_without_key = vec![0b00_10_10];
    txt_without_key.extend_from_slice(from.to_hex().to_uppercase().as_bytes());
    txt_without_key.push(0);
    txt_without_key.extend_from_slice(kith::proto::wire::VERSION.to_string().as_bytes());

    vec![
        ("datagram", datagrams.to_vec()),
        (
            "reliable_packet",
            packets.iter().map(Packet::encode).collect(),
        ),
        ("envelope", vec![single.emit(), batched.emit()]),
        ("handshake", vec![init.ephemeral.to_vec(), response_bytes]),
        ("sync_message", sync_messages),
        ("node_control", controls.to_vec()),
        ("group_frame", vec![group_payload, packets[3].encode()]),
        ("registry", registry_messages),
        (
            "chain_snapshot",
            vec![sending.encode().to_vec(), receiving.encode().to_vec()],
        ),
        ("journal_record", vec![journal_v3, journal_v2]),
        ("control_line", requests.to_vec()),
        ("mdns_txt", vec![txt, txt_without_key]),
        ("profile_record", profiles.to_vec()),
    ]
}
