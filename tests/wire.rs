//! Wire format: every frame type round-trips, and no input makes a parser
//! panic or accept something outside the limits.

use kith::proto::crypto::{
    ENVELOPE_HEADER_LEN, Envelope, EnvelopeParseError, MAX_BATCH_DEPTH, MAX_ENVELOPE_LEN,
};
use kith::proto::ids::PeerId;
use kith::proto::wire::*;
use proptest::prelude::*;

fn id32() -> impl Strategy<Value = [u8; 32]> {
    proptest::array::uniform32(any::<u8>())
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        id32().prop_map(|ephemeral| Frame::HandshakeInit { ephemeral }),
        (
            id32(),
            proptest::collection::vec(any::<u8>(), HANDSHAKE_SEALED_LEN)
        )
            .prop_map(|(ephemeral, sealed)| Frame::HandshakeResponse { ephemeral, sealed }),
        proptest::collection::vec(any::<u8>(), HANDSHAKE_SEALED_LEN)
            .prop_map(|sealed| Frame::HandshakeFinish { sealed }),
        (
            proptest::array::uniform16(any::<u8>()),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 16..=MAX_SEALED_CIPHERTEXT)
        )
            .prop_map(|(session, counter, ciphertext)| Frame::Sealed {
                session,
                counter,
                ciphertext
            }),
        (
            proptest::array::uniform16(any::<u8>()),
            proptest::collection::vec(any::<u8>(), MIN_GROUP_PAYLOAD..=MAX_GROUP_PAYLOAD)
        )
            .prop_map(|(tag, payload)| Frame::Group { tag, payload }),
    ]
}

fn datagram() -> impl Strategy<Value = Datagram> {
    (id32(), frame()).prop_map(|(from, frame)| Datagram {
        from: frame.names_sender().then_some(PeerId(from)),
        frame,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_frame_round_trips_within_the_size_limit(datagram in datagram()) {
        let bytes = datagram.emit().expect("frames within their caps encode");
        prop_assert!(bytes.len() <= MAX_DATAGRAM, "{} bytes", bytes.len());
        prop_assert_eq!(Datagram::parse(&bytes), Ok(datagram.clone()));
        prop_assert_eq!(datagram.frame.kind(), Datagram::parse(&bytes).expect("parsed").frame.kind());
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = Datagram::parse(&bytes);
        let _ = Envelope::parse(&bytes);
    }

    #[test]
    fn random_bodies_behind_a_valid_preamble_never_panic(body in proptest::collection::vec(any::<u8>(), 0..1300)) {
        let mut bytes = MAGIC.to_vec();
        bytes.push(VERSION);
        bytes.extend_from_slice(&body);
        if let Ok(datagram) = Datagram::parse(&bytes) {
            // Anything accepted is within limits and re-encodes.
            prop_assert!(datagram.emit().is_ok());
        }
    }

    #[test]
    fn mutated_valid_datagrams_never_panic(
        datagram in datagram(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut bytes = datagram.emit().expect("valid");
        for (position, value) in edits {
            let index = position % bytes.len();
            bytes[index] = value;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        if let Ok(parsed) = Datagram::parse(&bytes) {
            prop_assert!(parsed.emit().is_ok());
        }
    }

    #[test]
    fn envelope_parse_respects_limits(len in 0usize..(MAX_ENVELOPE_LEN + 64), version in any::<u8>()) {
        // Zero bytes after the version: a version-2 envelope with an empty
        // batch proof (depth 0, no side bits) is two bytes longer than a
        // version-1 one.
        let shortest = match version {
            1 => Some(ENVELOPE_HEADER_LEN + 64 + 16),
            2 => Some(ENVELOPE_HEADER_LEN + 64 + 2 + 16),
            _ => None,
        };
        let accepted = shortest.is_some_and(|shortest| (shortest..=MAX_ENVELOPE_LEN).contains(&len));
        let mut bytes = vec![0u8; len];
        if let Some(first) = bytes.first_mut() {
            *first = version;
        }
        match Envelope::parse(&bytes) {
            Ok(envelope) => {
                prop_assert!(accepted);
                prop_assert_eq!(envelope.version(), version);
                prop_assert_eq!(envelope.emit(), bytes);
            }
            Err(_) => prop_assert!(!accepted),
        }
    }

    #[test]
    fn envelope_batch_proofs_parse_only_canonically(depth in 0u8..8, left in any::<u8>(), extra in 16usize..64) {
        let mut bytes = vec![0u8; ENVELOPE_HEADER_LEN + 64 + 2 + 32 * usize::from(depth) + extra];
        bytes[0] = 2;
        bytes[ENVELOPE_HEADER_LEN + 64] = depth;
        bytes[ENVELOPE_HEADER_LEN + 64 + 1] = left;
        let canonical = usize::from(depth) <= MAX_BATCH_DEPTH && u16::from(left) >> depth == 0;
        match Envelope::parse(&bytes) {
            Ok(envelope) => {
                prop_assert!(canonical);
                prop_assert_eq!(envelope.proof.map(|p| p.siblings.len()), Some(usize::from(depth)));
                prop_assert_eq!(envelope.ciphertext.len(), extra);
            }
            Err(error) => {
                prop_assert!(!canonical);
                prop_assert_eq!(error, EnvelopeParseError::BadProof);
            }
        }
    }
}

#[test]
fn largest_frames_fit_one_datagram() {
    let sealed = Datagram {
        from: None,
        frame: Frame::Sealed {
            session: [0xff; 16],
            counter: u64::MAX,
            ciphertext: vec![0xff; MAX_SEALED_CIPHERTEXT],
        },
    };
    let group = Datagram {
        from: None,
        frame: Frame::Group {
            tag: [0xff; 16],
            payload: vec![0xff; MAX_GROUP_PAYLOAD],
        },
    };
    for datagram in [sealed, group] {
        let bytes = datagram.emit().expect("largest frame still fits");
        assert_eq!(bytes.len(), MAX_DATAGRAM);
        let mut more = datagram.clone();
        match &mut more.frame {
            Frame::Sealed { ciphertext, .. } => ciphertext.push(0),
            Frame::Group { payload, .. } => payload.push(0),
            _ => unreachable!("only sealed and group frames here"),
        }
        assert!(more.emit().is_err());
    }
}

/// Found by the `group_frame` fuzzer: MessagePack arrays nested hundreds
/// deep made the decoder recurse once per level (rmp-serde allows 1024),
/// and a debug build overflowed a 2 MiB thread stack, aborting the process
/// on an 839-byte packet. Every MessagePack decoder of outside bytes now
/// refuses such nesting with an error; run here on a small stack.
#[test]
fn deeply_nested_messagepack_is_refused_not_a_stack_overflow() {
    use kith::proto::node::Control;
    use kith::proto::reliable::Packet;
    use kith::registry::wire::{Answer, Message, Registration};

    // A struct (as a map) with an unknown field `x` holding `[[[...nil]]]`:
    // serde skips an unknown field's value, however deep it is.
    let strukt = [&[0x81, 0xa1, b'x'][..], &vec![0x91; 1_000], &[0xc0]].concat();
    // An enum: `{0: struct}`, variant 0.
    let enumeration = [&[0x81, 0x00][..], &strukt].concat();
    let datagram = [&MAGIC[..], &[VERSION], &strukt].concat();
    let registry = [&b"kr"[..], &[1], &enumeration].concat();
    let versioned = [&[1u8][..], &enumeration].concat();
    // The fuzzer's own input, opened from its group frame.
    let found = include_bytes!("../fuzz/corpus/group_frame/crash-nesting-depth");
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            assert!(Datagram::parse(&datagram).is_err());
            assert!(Packet::decode(&versioned).is_err());
            assert!(Packet::decode(found).is_err());
            assert!(Control::decode(&versioned).is_err());
            assert!(Message::parse(&registry).is_err());
            assert!(Registration::parse(&strukt).is_err());
            assert!(Answer::parse(&strukt).is_err());
        })
        .expect("spawn")
        .join()
        .expect("no decoder overflows its stack");
}
