//! Wire format limits and parsing robustness.

use super::*;
use proptest::prelude::*;

fn arb_ranges() -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec(
        (0..MAX_SEQ - 1).prop_flat_map(|s| (Just(s), s + 1..=MAX_SEQ)),
        0..=MAX_RANGES,
    )
}

pub(super) fn arb_packet() -> impl Strategy<Value = Packet> {
    let id = any::<[u8; 32]>();
    let data = (
        id,
        any::<u64>(),
        1..MAX_SEQ,
        1..=MAX_FRAGS,
        prop::collection::vec(any::<u8>(), 0..=MAX_CHUNK),
    )
        .prop_flat_map(|(room, session, seq, frags, chunk)| {
            let max_frag = u64::from(frags - 1).min(seq) as u16;
            (
                Just((room, session, seq, frags, chunk)),
                0..=max_frag,
                0..=seq,
                any::<[u8; 32]>(),
            )
        })
        .prop_map(
            |((room, session, seq, frags, chunk), frag, low, id)| Packet::Data {
                room: RoomId(room),
                session,
                seq,
                low,
                frag,
                frags,
                id: MessageId(id),
                chunk,
                ack_now: true,
            },
        );
    let ack = (
        id,
        any::<u64>(),
        any::<u64>(),
        0..=MAX_SEQ,
        arb_ranges(),
        any::<Option<u64>>(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_flat_map(
            |(room, session, ack_no, received, ranges, largest, delay_us, mcast_rx)| {
                (
                    Just((
                        room, session, ack_no, received, ranges, largest, delay_us, mcast_rx,
                    )),
                    0..=received,
                    arb_ranges(),
                )
            },
        )
        .prop_map(
            |(
                (room, session, ack_no, received, ranges, largest, delay_us, mcast_rx),
                stored,
                refused,
            )| {
                Packet::Ack {
                    room: RoomId(room),
                    session,
                    receiver_session: session.rotate_left(17) ^ ack_no,
                    ack_no,
                    received,
                    ranges,
                    stored,
                    largest: largest.map(|l| l % MAX_SEQ),
                    delay_us,
                    mcast_rx,
                    refused,
                }
            },
        );
    let nack = (id, any::<u64>(), arb_ranges(), any::<u64>()).prop_map(
        |(room, session, missing, mcast_rx)| Packet::Nack {
            room: RoomId(room),
            session,
            missing,
            mcast_rx,
        },
    );
    let heartbeat = (id, any::<u64>(), 0..=MAX_SEQ)
        .prop_flat_map(|(room, session, next)| (Just((room, session, next)), 0..=next))
        .prop_map(|((room, session, next), low)| Packet::Heartbeat {
            room: RoomId(room),
            session,
            low,
            next,
        });
    prop_oneof![data, ack, nack, heartbeat]
}

proptest! {
    /// Every valid packet of every kind survives encode → decode unchanged
    /// and fits the size limit.
    #[test]
    fn round_trip(packet in arb_packet()) {
        let bytes = packet.encode();
        prop_assert!(bytes.len() <= MAX_PACKET, "{} bytes", bytes.len());
        prop_assert_eq!(Packet::decode(&bytes), Ok(packet));
    }

    /// Arbitrary bytes never panic the parser or the state machine.
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1400)) {
        let now = Instant::now();
        let (_, mut b) = pair(now);
        let _ = Packet::decode(&bytes);
        let mut with_version = vec![VERSION];
        with_version.extend_from_slice(&bytes);
        let _ = b.handle_datagram(now, peer(1), Via::Unicast, &bytes);
        let _ = b.handle_datagram(now, peer(1), Via::Multicast, &with_version);
        b.handle_timeout(now + Duration::from_secs(1));
        let _ = all_transmits(&mut b, now + Duration::from_secs(1));
        let _ = all_events(&mut b);
    }

    /// Valid packets with flipped bits or truncated never panic; whatever
    /// still decodes passes validation.
    #[test]
    fn mutated_packets_never_panic(packet in arb_packet(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let mut bytes = packet.encode();
        for (at, bits) in flips {
            let len = bytes.len();
            bytes[at % len] ^= bits;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        if let Ok(decoded) = Packet::decode(&bytes) {
            prop_assert_eq!(decoded.validate(), Ok(()));
        }
        let now = Instant::now();
        let (_, mut b) = pair(now);
        let _ = b.handle_datagram(now, peer(1), Via::Unicast, &bytes);
        b.handle_timeout(now + Duration::from_secs(40));
    }
}

#[test]
fn worst_case_packets_fit_the_limit() {
    let data = Packet::Data {
        room: RoomId([0xff; 32]),
        session: u64::MAX,
        seq: MAX_SEQ - 1,
        low: MAX_SEQ - 1,
        frag: MAX_FRAGS - 1,
        frags: MAX_FRAGS,
        id: MessageId([0xff; 32]),
        chunk: vec![0xff; MAX_CHUNK],
        ack_now: true,
    };
    assert!(
        data.encode().len() <= MAX_PACKET,
        "data: {}",
        data.encode().len()
    );
    let ack = Packet::Ack {
        room: RoomId([0xff; 32]),
        session: u64::MAX,
        receiver_session: u64::MAX,
        ack_no: u64::MAX,
        received: MAX_SEQ,
        ranges: vec![(MAX_SEQ - 1, MAX_SEQ); MAX_RANGES],
        stored: MAX_SEQ,
        largest: Some(MAX_SEQ - 1),
        delay_us: u32::MAX,
        mcast_rx: u64::MAX,
        refused: vec![(MAX_SEQ - 1, MAX_SEQ); MAX_RANGES],
    };
    assert!(
        ack.encode().len() <= MAX_PACKET,
        "ack: {}",
        ack.encode().len()
    );
    assert_eq!(Packet::decode(&ack.encode()), Ok(ack));
}

#[test]
fn oversized_datagram_is_rejected_before_parsing() {
    let mut bytes = vec![VERSION];
    bytes.resize(MAX_PACKET + 1, 0);
    assert_eq!(
        Packet::decode(&bytes),
        Err(PacketError::TooLarge(MAX_PACKET + 1))
    );
}

#[test]
fn bad_versions_and_empty_datagrams_are_rejected() {
    let packet = Packet::Heartbeat {
        room: room_id(),
        session: 1,
        low: 0,
        next: 1,
    };
    let mut bytes = packet.encode();
    bytes[0] = VERSION + 1;
    assert_eq!(
        Packet::decode(&bytes),
        Err(PacketError::Version(VERSION + 1))
    );
    assert_eq!(Packet::decode(&[]), Err(PacketError::Empty));
    assert_eq!(Packet::decode(&[VERSION]), Err(PacketError::Malformed));
}

#[test]
fn trailing_bytes_are_rejected() {
    // A packet has exactly one encoding: bytes after the MessagePack value
    // could otherwise smuggle data past the id hash or make two encodings
    // of one packet.
    let packet = Packet::Heartbeat {
        room: room_id(),
        session: 1,
        low: 0,
        next: 1,
    };
    let mut bytes = packet.encode();
    assert_eq!(Packet::decode(&bytes), Ok(packet));
    bytes.push(0xc0);
    assert_eq!(Packet::decode(&bytes), Err(PacketError::Malformed));
}

#[test]
fn a_packet_with_trailing_bytes_is_dropped_and_counted() {
    let now = Instant::now();
    let (mut a, mut b) = pair(now);
    a.send(now, room_id(), msg(1), b"x")
        .expect("queue is empty");
    let transmits = all_transmits(&mut a, now);
    let mut padded = transmits[0].bytes.clone();
    padded.push(0xc0);
    assert_eq!(
        b.handle_datagram(now, peer(1), Via::Unicast, &padded),
        Err(PacketError::Malformed)
    );
    assert_eq!(b.stats().malformed, 1);
    assert!(all_events(&mut b).is_empty(), "nothing of it surfaces");
    // The exact packet still goes through: the padded copy moved nothing.
    b.handle_datagram(now, peer(1), Via::Unicast, &transmits[0].bytes)
        .expect("the exact packet is accepted");
    assert_eq!(b.stats().malformed, 1);
    assert!(
        all_events(&mut b)
            .iter()
            .any(|event| matches!(event, Event::Received { .. })),
        "the exact packet is delivered"
    );
}

#[test]
fn count_and_range_caps_are_enforced() {
    let too_many = Packet::Nack {
        room: room_id(),
        session: 1,
        missing: vec![(1, 2); MAX_RANGES + 1],
        mcast_rx: 0,
    };
    assert_eq!(
        Packet::decode(&too_many.encode()),
        Err(PacketError::Invalid("too many ranges"))
    );
    let empty_range = Packet::Nack {
        room: room_id(),
        session: 1,
        missing: vec![(5, 5)],
        mcast_rx: 0,
    };
    assert_eq!(
        Packet::decode(&empty_range.encode()),
        Err(PacketError::Invalid("range"))
    );
    let data = |frag, frags, chunk: usize, seq| Packet::Data {
        room: room_id(),
        session: 1,
        seq,
        low: 0,
        frag,
        frags,
        id: msg(1),
        chunk: vec![0; chunk],
        ack_now: true,
    };
    assert_eq!(
        Packet::decode(&data(2, 2, 1, 10).encode()),
        Err(PacketError::Invalid("frag"))
    );
    assert_eq!(
        Packet::decode(&data(0, 0, 1, 10).encode()),
        Err(PacketError::Invalid("frag"))
    );
    assert_eq!(
        Packet::decode(&data(0, MAX_FRAGS + 1, 1, 10).encode()),
        Err(PacketError::Invalid("frag"))
    );
    assert_eq!(
        Packet::decode(&data(0, 1, MAX_CHUNK + 1, 10).encode()),
        Err(PacketError::Invalid("chunk"))
    );
    assert_eq!(
        Packet::decode(&data(0, 1, 1, MAX_SEQ).encode()),
        Err(PacketError::Invalid("seq"))
    );
    let stored_ahead = Packet::Ack {
        room: room_id(),
        session: 1,
        receiver_session: 2,
        ack_no: 1,
        received: 3,
        ranges: vec![],
        stored: 4,
        largest: None,
        delay_us: 0,
        mcast_rx: 0,
        refused: vec![],
    };
    assert_eq!(
        Packet::decode(&stored_ahead.encode()),
        Err(PacketError::Invalid("ack cursor"))
    );
}
