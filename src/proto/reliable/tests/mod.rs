//! Unit tests: wire format limits, parsing robustness, and the state
//! machine driven by hand (no simulator), so single decisions are visible.

use super::*;
use proptest::prelude::*;
use rand::SeedableRng;

fn peer(n: u8) -> PeerId {
    PeerId([n; 32])
}

fn room_id() -> RoomId {
    RoomId([7; 32])
}

fn msg(n: u64) -> MessageId {
    MessageId(*blake3::hash(&n.to_le_bytes()).as_bytes())
}

fn endpoint(n: u8, seed: u64, now: Instant) -> Reliable {
    Reliable::new(peer(n), Config::default(), StdRng::seed_from_u64(seed), now)
}

fn all_transmits(ep: &mut Reliable, now: Instant) -> Vec<Transmit> {
    std::iter::from_fn(|| ep.poll_transmit(now)).collect()
}

fn all_events(ep: &mut Reliable) -> Vec<Event> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

fn decode(transmit: &Transmit) -> Packet {
    Packet::decode(&transmit.bytes).expect("the endpoint only emits valid packets")
}

/// Two endpoints in a unicast room.
fn pair(now: Instant) -> (Reliable, Reliable) {
    let mut a = endpoint(1, 1, now);
    let mut b = endpoint(2, 2, now);
    a.join_room(
        room_id(),
        RoomConfig { multicast: false },
        [peer(1), peer(2)],
    );
    b.join_room(
        room_id(),
        RoomConfig { multicast: false },
        [peer(1), peer(2)],
    );
    (a, b)
}

fn deliver_all(from: &mut Reliable, to: &mut Reliable, now: Instant) -> usize {
    let transmits = all_transmits(from, now);
    for t in &transmits {
        to.handle_datagram(now, from.me(), Via::Unicast, &t.bytes)
            .expect("valid packet from a member");
    }
    transmits.len()
}

// --- wire format ---------------------------------------------------------

fn arb_ranges() -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec(
        (0..MAX_SEQ - 1).prop_flat_map(|s| (Just(s), s + 1..=MAX_SEQ)),
        0..=MAX_RANGES,
    )
}

fn arb_packet() -> impl Strategy<Value = Packet> {
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

// --- state machine --------------------------------------------------------

#[test]
fn rto_has_a_floor_and_follows_samples() {
    let config = Config {
        max_ack_delay: Duration::ZERO,
        ..Config::default()
    };
    let mut rtt = Rtt::new(config.initial_rtt);
    for _ in 0..20 {
        rtt.sample(Duration::from_micros(300));
    }
    assert_eq!(
        rtt.rto(&config),
        config.rto_min,
        "sub-millisecond LAN RTTs hit the floor"
    );
    for _ in 0..20 {
        rtt.sample(Duration::from_millis(200));
    }
    let rto = rtt.rto(&config);
    assert!(
        rto > Duration::from_millis(200) && rto < Duration::from_millis(300),
        "{rto:?}"
    );
    // The receiver's ACK delay is part of the timeout, so a delayed ACK
    // does not look like a loss.
    let with_delay = Config::default();
    assert_eq!(rtt.rto(&with_delay), rto + with_delay.max_ack_delay);
}

#[test]
fn a_64_kib_message_is_fragmented_and_reassembled() {
    let now = Instant::now();
    let (mut a, mut b) = pair(now);
    let payload: Vec<u8> = (0..MAX_MESSAGE).map(|i| (i % 251) as u8).collect();
    a.send(now, room_id(), msg(1), &payload)
        .expect("queue is empty");
    assert_eq!(a.buffer_usage().queued_packets, usize::from(MAX_FRAGS));
    // Deliver the fragments in reverse order.
    let mut transmits = all_transmits(&mut a, now);
    assert_eq!(transmits.len(), usize::from(MAX_FRAGS));
    transmits.reverse();
    for t in &transmits {
        assert!(t.bytes.len() <= MAX_PACKET);
        b.handle_datagram(now, peer(1), Via::Unicast, &t.bytes)
            .expect("valid");
    }
    let events = all_events(&mut b);
    assert_eq!(events.len(), 1);
    let Event::Received {
        payload: got, id, ..
    } = &events[0]
    else {
        panic!("expected Received, got {events:?}")
    };
    assert_eq!(*id, msg(1));
    assert_eq!(got, &payload);
    assert_eq!(b.buffer_usage().reassembly_bytes, 0);
    assert_eq!(
        a.send(now, room_id(), msg(2), &vec![0; MAX_MESSAGE + 1]),
        Err(SendError::TooLarge(MAX_MESSAGE + 1))
    );
}

#[test]
fn acknowledged_as_stored_only_after_confirm() {
    let start = Instant::now();
    let (mut a, mut b) = pair(start);
    a.send(start, room_id(), msg(1), b"hello")
        .expect("queue is empty");
    deliver_all(&mut a, &mut b, start);
    let events = all_events(&mut b);
    let [Event::Received { seq, .. }] = events.as_slice() else {
        panic!("{events:?}")
    };
    // The first ACK of a quiet stream goes out at once, and says
    // "received", not "stored".
    let later = b.poll_timeout().expect("an ACK is due");
    assert_eq!(later, start);
    b.handle_timeout(later);
    let acks = all_transmits(&mut b, later);
    let [ack] = acks.as_slice() else {
        panic!("{acks:?}")
    };
    let Packet::Ack {
        received, stored, ..
    } = decode(ack)
    else {
        panic!()
    };
    assert_eq!((received, stored), (1, 0));
    a.handle_datagram(later, peer(2), Via::Unicast, &ack.bytes)
        .expect("valid");
    assert!(
        all_events(&mut a).is_empty(),
        "no Delivered before the store commit"
    );
    assert_eq!(a.buffer_usage().queued_packets, 1, "kept until stored");
    b.confirm_stored(later, room_id(), peer(1), *seq);
    // A lone message (nothing older in flight, `ack_now`) gets its "stored"
    // ACK at once too; busy streams are paced (see the pacing test).
    let later = b.poll_timeout().expect("an ACK is due");
    assert_eq!(later, start);
    b.handle_timeout(later);
    let acks = all_transmits(&mut b, later);
    let [ack] = acks.as_slice() else {
        panic!("{acks:?}")
    };
    let Packet::Ack { stored, .. } = decode(ack) else {
        panic!()
    };
    assert_eq!(stored, 1);
    a.handle_datagram(later, peer(2), Via::Unicast, &ack.bytes)
        .expect("valid");
    assert_eq!(
        all_events(&mut a),
        vec![Event::Delivered {
            room: room_id(),
            to: peer(2),
            id: msg(1)
        }]
    );
    assert_eq!(a.buffer_usage().queued_packets, 0);
    assert_eq!(a.poll_timeout(), None, "nothing left to retransmit");
}

#[test]
fn a_refused_message_is_reported_refused_never_delivered() {
    let start = Instant::now();
    let (mut a, mut b) = pair(start);
    for n in 1..=3 {
        a.send(start, room_id(), msg(n), b"hello").expect("queued");
    }
    let mut now = start;
    let mut seen = Vec::new();
    for _ in 0..50 {
        deliver_all(&mut a, &mut b, now);
        for event in all_events(&mut b) {
            if let Event::Received { seq, id, .. } = event {
                // The second message fails the application's checks.
                if id == msg(2) {
                    b.refuse(now, room_id(), peer(1), seq);
                } else {
                    b.confirm_stored(now, room_id(), peer(1), seq);
                }
            }
        }
        if let Some(t) = b.poll_timeout() {
            now = now.max(t);
            b.handle_timeout(now);
        }
        deliver_all(&mut b, &mut a, now);
        seen.extend(all_events(&mut a));
        if let Some(t) = a.poll_timeout() {
            now = now.max(t);
            a.handle_timeout(now);
        }
        if seen.len() == 3 {
            break;
        }
    }
    let delivered = |n| Event::Delivered {
        room: room_id(),
        to: peer(2),
        id: msg(n),
    };
    assert_eq!(
        seen,
        vec![
            delivered(1),
            Event::Refused {
                room: room_id(),
                to: peer(2),
                id: msg(2)
            },
            delivered(3)
        ]
    );
    assert_eq!(a.buffer_usage().queued_packets, 0, "not retransmitted");
}

/// Any member can seal a group frame in another's name, so what a group
/// frame's header says about the claimed sender's stream is not believed
/// where it would matter: a new session does not retire the stream, and
/// what a forged `low` skips is acknowledged as refused, never as stored.
#[test]
fn a_forged_group_header_neither_retires_a_stream_nor_fakes_delivery() {
    let now = Instant::now();
    let mut a = endpoint(1, 1, now);
    let mut b = endpoint(2, 2, now);
    for endpoint in [&mut a, &mut b] {
        endpoint.join_room(
            room_id(),
            RoomConfig { multicast: true },
            [peer(1), peer(2)],
        );
    }
    a.send(now, room_id(), msg(1), b"heard")
        .expect("queue is empty");
    let first = all_transmits(&mut a, now);
    let Packet::Data { session, .. } = decode(&first[0]) else {
        panic!("{first:?}")
    };
    for t in &first {
        b.handle_group_datagram(now, peer(1), room_id(), &t.bytes)
            .expect("valid");
    }
    let events = all_events(&mut b);
    let [Event::Received { seq, .. }] = events.as_slice() else {
        panic!("{events:?}")
    };
    // A member claims peer 1 restarted: the stream is not retired.
    let restart = Packet::Heartbeat {
        room: room_id(),
        session: session ^ 1,
        low: 0,
        next: 0,
    };
    assert_eq!(
        b.handle_group_datagram(now, peer(1), room_id(), &restart.encode()),
        Ok(())
    );
    assert_eq!(b.stats().group_session_switches, 1);
    b.confirm_stored(now, room_id(), peer(1), *seq);
    // The second message never reaches peer 2; a member claims peer 1 has
    // nothing below its end any more.
    a.send(now, room_id(), msg(2), b"lost")
        .expect("room in the queue");
    let lost = all_transmits(&mut a, now);
    let skip = Packet::Heartbeat {
        room: room_id(),
        session,
        low: 2,
        next: 2,
    };
    b.handle_group_datagram(now, peer(1), room_id(), &skip.encode())
        .expect("valid");
    let later = b.poll_timeout().expect("an ACK is due");
    b.handle_timeout(later);
    for t in all_transmits(&mut b, later) {
        a.handle_datagram(later, peer(2), Via::Unicast, &t.bytes)
            .expect("valid");
    }
    let events = all_events(&mut a);
    assert!(events.contains(&Event::Delivered {
        room: room_id(),
        to: peer(2),
        id: msg(1)
    }));
    assert!(
        events.contains(&Event::Refused {
            room: room_id(),
            to: peer(2),
            id: msg(2)
        }),
        "{events:?}"
    );
    assert!(!events.contains(&Event::Delivered {
        room: room_id(),
        to: peer(2),
        id: msg(2)
    }));
    assert!(!lost.is_empty());
}

#[test]
fn refusals_over_the_range_cap_merge_and_are_never_lost() {
    let mut refused = Vec::new();
    for seq in (0..40).step_by(2) {
        add_refused(&mut refused, seq, seq + 1);
    }
    assert_eq!(refused.len(), MAX_RANGES);
    for seq in (0..40).step_by(2) {
        assert!(
            refused.iter().any(|&(s, e)| (s..e).contains(&seq)),
            "{seq} still reported"
        );
    }
    // Contiguous refusals share a range.
    let mut contiguous = Vec::new();
    for seq in 5..9 {
        add_refused(&mut contiguous, seq, seq + 1);
    }
    assert_eq!(contiguous, vec![(5, 9)]);
    // So do overlapping ones, added in any order.
    add_refused(&mut contiguous, 12, 20);
    add_refused(&mut contiguous, 2, 6);
    add_refused(&mut contiguous, 9, 12);
    assert_eq!(contiguous, vec![(2, 20)]);
}

/// Sends `id` from A and runs both ends (stored at once) until A hears
/// "delivered"; returns when that was.
fn send_until_delivered(
    a: &mut Reliable,
    b: &mut Reliable,
    start: Instant,
    id: MessageId,
) -> Instant {
    a.send(start, room_id(), id, b"next")
        .expect("queue is empty");
    let mut now = start;
    for _ in 0..1000 {
        deliver_all(a, b, now);
        for event in all_events(b) {
            if let Event::Received { from, seq, .. } = event {
                b.confirm_stored(now, room_id(), from, seq);
            }
        }
        deliver_all(b, a, now);
        if all_events(a)
            .iter()
            .any(|e| matches!(e, Event::Delivered { id: got, .. } if *got == id))
        {
            return now;
        }
        let next = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .expect("something is due until it is delivered");
        now = next.max(now);
        a.handle_timeout(now);
        b.handle_timeout(now);
    }
    panic!("never delivered")
}

#[test]
fn stop_and_wait_sends_are_acknowledged_at_once_in_a_unicast_room() {
    let start = Instant::now();
    let (mut a, mut b) = pair(start);
    // Each message goes out right after the previous one was delivered,
    // well inside `lone_gap`: each is still acknowledged at once, not after
    // `max_ack_delay`.
    let mut now = start;
    for n in 0..5 {
        let delivered = send_until_delivered(&mut a, &mut b, now, msg(n));
        assert_eq!(delivered, now, "message {n} waited for a paced ACK");
        now = delivered + Duration::from_micros(300);
    }
    // A stream with older packets still held keeps paced ACKs: ten sent at
    // once cost far fewer than ten ACKs.
    for n in 10..20 {
        a.send(now, room_id(), msg(n), b"stream")
            .expect("room in the queue");
    }
    deliver_all(&mut a, &mut b, now);
    let mut acks = 0;
    for event in all_events(&mut b) {
        if let Event::Received { from, seq, .. } = event {
            b.confirm_stored(now, room_id(), from, seq);
            acks += all_transmits(&mut b, now).len();
        }
    }
    assert!(acks <= 2, "{acks} ACKs for a stream of ten");
}

#[test]
fn a_burst_of_losses_is_asked_for_in_one_nack() {
    let now = Instant::now();
    let (mut a, mut b) = pair(now);
    for n in 0..10 {
        a.send(now, room_id(), msg(n), b"x")
            .expect("queue has room");
    }
    let transmits = all_transmits(&mut a, now);
    assert_eq!(transmits.len(), 10);
    for t in [&transmits[0], &transmits[9]] {
        b.handle_datagram(now, peer(1), Via::Unicast, &t.bytes)
            .expect("valid");
    }
    // First the immediate ACK of a quiet stream, then the NACK.
    assert_eq!(b.poll_timeout(), Some(now));
    b.handle_timeout(now);
    let acks: Vec<Packet> = all_transmits(&mut b, now).iter().map(decode).collect();
    assert!(
        matches!(acks.as_slice(), [Packet::Ack { received: 1, .. }]),
        "{acks:?}"
    );
    let nack_at = b.poll_timeout().expect("a gap arms the NACK timer");
    let config = Config::default();
    assert!(
        nack_at >= now + config.nack_delay
            && nack_at < now + config.nack_delay + config.nack_jitter
    );
    b.handle_timeout(nack_at);
    let nacks: Vec<Packet> = all_transmits(&mut b, nack_at).iter().map(decode).collect();
    let [Packet::Nack { missing, .. }] = nacks.as_slice() else {
        panic!("{nacks:?}")
    };
    assert_eq!(missing, &vec![(1, 9)]);
}

#[test]
fn a_message_id_is_never_surfaced_twice_even_from_a_restarted_sender() {
    let now = Instant::now();
    let (mut a, mut b) = pair(now);
    a.send(now, room_id(), msg(1), b"once")
        .expect("queue is empty");
    deliver_all(&mut a, &mut b, now);
    // The sender restarts (new session) and sends the same message again.
    let mut a2 = endpoint(1, 99, now);
    a2.join_room(room_id(), RoomConfig { multicast: false }, [peer(2)]);
    a2.send(now, room_id(), msg(1), b"once")
        .expect("queue is empty");
    deliver_all(&mut a2, &mut b, now);
    let received = all_events(&mut b)
        .into_iter()
        .filter(|e| matches!(e, Event::Received { .. }))
        .count();
    assert_eq!(received, 1);
    assert_eq!(b.stats().duplicate_messages, 1);
}

#[test]
fn packets_from_strangers_are_dropped_and_counted() {
    let now = Instant::now();
    let (mut a, mut b) = pair(now);
    a.send(now, room_id(), msg(1), b"x")
        .expect("queue is empty");
    let transmits = all_transmits(&mut a, now);
    assert_eq!(
        b.handle_datagram(now, peer(9), Via::Unicast, &transmits[0].bytes),
        Err(PacketError::NotMember)
    );
    let other_room = Packet::Heartbeat {
        room: RoomId([1; 32]),
        session: 1,
        low: 0,
        next: 1,
    };
    assert_eq!(
        b.handle_datagram(now, peer(1), Via::Unicast, &other_room.encode()),
        Err(PacketError::UnknownRoom)
    );
    assert_eq!(b.stats().foreign, 2);
    assert!(all_events(&mut b).is_empty());
}

/// A group frame only proves that some member of its room sealed it, so
/// its packet may not speak for another room the two share (such as the
/// claimed sender's direct room with us, where it could pass for them).
#[test]
fn a_group_frame_carries_only_its_own_rooms_packets() {
    let now = Instant::now();
    let (mut a, mut b) = pair(now);
    let group = RoomId([3; 32]);
    for endpoint in [&mut a, &mut b] {
        endpoint.join_room(group, RoomConfig { multicast: true }, [peer(1), peer(2)]);
    }
    a.send(now, room_id(), msg(1), b"direct")
        .expect("queue is empty");
    let direct = all_transmits(&mut a, now);
    assert_eq!(
        b.handle_group_datagram(now, peer(1), group, &direct[0].bytes),
        Err(PacketError::WrongRoom)
    );
    assert_eq!(b.stats().foreign, 1);
    assert!(all_events(&mut b).is_empty());
    // The same packet in a frame of its own room is taken.
    assert_eq!(
        b.handle_group_datagram(now, peer(1), room_id(), &direct[0].bytes),
        Ok(())
    );
    assert!(matches!(
        all_events(&mut b).as_slice(),
        [Event::Received { room, .. }] if *room == room_id()
    ));
}

/// A group frame does not prove which member sealed it, so feedback (what
/// a member says it received and stored) is taken only from the pairwise
/// session: an ACK or NACK in a group frame is dropped and counted, and
/// the endpoint never sends one to the group.
#[test]
fn acknowledgements_never_travel_in_group_frames() {
    let now = Instant::now();
    let mut a = endpoint(1, 1, now);
    let mut b = endpoint(2, 2, now);
    for endpoint in [&mut a, &mut b] {
        endpoint.join_room(
            room_id(),
            RoomConfig { multicast: true },
            [peer(1), peer(2)],
        );
    }
    a.send(now, room_id(), msg(1), b"to the group")
        .expect("queue is empty");
    for t in all_transmits(&mut a, now) {
        assert_eq!(t.destination, Destination::Group(room_id()));
        b.handle_group_datagram(now, peer(1), room_id(), &t.bytes)
            .expect("data in a group frame is taken");
    }
    let seq = all_events(&mut b)
        .iter()
        .find_map(|e| match e {
            Event::Received { seq, .. } => Some(*seq),
            _ => None,
        })
        .expect("received");
    b.confirm_stored(now, room_id(), peer(1), seq);
    let later = b.poll_timeout().expect("an ACK is due");
    b.handle_timeout(later);
    let feedback = all_transmits(&mut b, later);
    assert!(!feedback.is_empty());
    for t in &feedback {
        assert!(matches!(t.kind, PacketKind::Ack | PacketKind::Nack));
        assert_eq!(t.destination, Destination::Peer(peer(1)), "pairwise only");
        assert_eq!(
            a.handle_group_datagram(later, peer(2), room_id(), &t.bytes),
            Err(PacketError::FeedbackInGroup)
        );
    }
    assert_eq!(a.stats().group_feedback, feedback.len() as u64);
    assert!(
        all_events(&mut a).is_empty(),
        "no Delivered from a group frame"
    );
    // The same ACK over the pairwise session counts.
    for t in &feedback {
        a.handle_datagram(later, peer(2), Via::Unicast, &t.bytes)
            .expect("valid");
    }
    assert!(
        all_events(&mut a)
            .iter()
            .any(|e| matches!(e, Event::Delivered { to, .. } if *to == peer(2)))
    );
}

#[test]
fn a_silent_peer_becomes_unreachable_and_is_redriven_when_seen() {
    let start = Instant::now();
    let (mut a, _b) = pair(start);
    a.send(start, room_id(), msg(1), b"x")
        .expect("queue is empty");
    let mut now = start;
    let mut data = all_transmits(&mut a, now).len();
    let mut unreachable_at = None;
    while unreachable_at.is_none() {
        now = a
            .poll_timeout()
            .expect("a queued message keeps a timer armed");
        a.handle_timeout(now);
        data += all_transmits(&mut a, now).len();
        if all_events(&mut a).contains(&Event::PeerUnreachable { peer: peer(2) }) {
            unreachable_at = Some(now);
        }
        assert!(now - start < Duration::from_secs(120), "never gave up");
    }
    assert!(
        data > Config::default().max_retries as usize,
        "backed-off retransmissions before giving up"
    );
    assert_eq!(
        a.buffer_usage().queued_packets,
        1,
        "the message stays queued"
    );
    // Still probed, but only at the capped interval.
    let next = a.poll_timeout().expect("still probing");
    assert!(next - now <= Config::default().rto_max);
    a.peer_seen(now, peer(2));
    assert_eq!(
        all_events(&mut a),
        vec![Event::PeerReachable { peer: peer(2) }]
    );
    assert_eq!(a.poll_timeout(), Some(now), "re-driven at once");
}

#[test]
fn the_send_queue_is_bounded() {
    let now = Instant::now();
    let config = Config {
        max_queued: 4,
        ..Config::default()
    };
    let mut a = Reliable::new(peer(1), config, StdRng::seed_from_u64(1), now);
    a.join_room(room_id(), RoomConfig::default(), [peer(2)]);
    for n in 0..4 {
        a.send(now, room_id(), msg(n), b"x")
            .expect("within the bound");
    }
    assert_eq!(
        a.send(now, room_id(), msg(9), b"x"),
        Err(SendError::Backpressure)
    );
    assert_eq!(
        a.send(now, RoomId([0; 32]), msg(9), b"x"),
        Err(SendError::UnknownRoom)
    );
}

#[test]
fn rooms_take_turns_sending() {
    let now = Instant::now();
    let mut a = endpoint(1, 1, now);
    let (big, small) = (RoomId([1; 32]), RoomId([2; 32]));
    a.join_room(big, RoomConfig { multicast: false }, [peer(2)]);
    a.join_room(small, RoomConfig { multicast: false }, [peer(3)]);
    a.send(now, big, msg(1), &vec![0; MAX_MESSAGE])
        .expect("queue is empty");
    a.send(now, small, msg(2), b"hi").expect("queue is empty");
    let first: Vec<Destination> = all_transmits(&mut a, now)
        .iter()
        .take(2)
        .map(|t| t.destination)
        .collect();
    assert!(
        first.contains(&Destination::Peer(peer(3))),
        "the small room waited behind the big one: {first:?}"
    );
}

#[test]
fn a_restarted_receiver_is_believed_and_skips_what_it_stored() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(now);
    let step = Config::default().max_ack_delay * 2;
    // A few rounds, so the receiver's ACK numbers climb.
    let round = |a: &mut Reliable, b: &mut Reliable, n: u64, now: Instant| {
        a.send(now, room_id(), msg(n), b"x")
            .expect("queue has room");
        deliver_all(a, b, now);
        for event in all_events(b) {
            if let Event::Received { from, seq, .. } = event {
                b.confirm_stored(now, room_id(), from, seq);
            }
        }
        b.handle_timeout(now);
        deliver_all(b, a, now);
        all_events(a)
    };
    for n in 0..5 {
        now += step;
        let events = round(&mut a, &mut b, n, now);
        assert_eq!(
            events,
            vec![Event::Delivered {
                room: room_id(),
                to: peer(2),
                id: msg(n)
            }]
        );
    }
    // The receiver restarts with empty state; the next message must still be
    // delivered and acknowledged even though its ACK numbers start over.
    let mut b2 = endpoint(2, 77, now);
    b2.join_room(room_id(), RoomConfig { multicast: false }, [peer(1)]);
    now += step;
    let events = round(&mut a, &mut b2, 5, now);
    assert_eq!(
        events,
        vec![Event::Delivered {
            room: room_id(),
            to: peer(2),
            id: msg(5)
        }]
    );
    assert_eq!(a.buffer_usage().queued_packets, 0);
}

#[test]
fn the_token_bucket_bounds_bursts() {
    let start = Instant::now();
    let config = Config {
        burst: 10,
        rate: 1000,
        ..Config::default()
    };
    let mut a = Reliable::new(peer(1), config, StdRng::seed_from_u64(1), start);
    a.join_room(room_id(), RoomConfig { multicast: false }, [peer(2)]);
    for n in 0..100 {
        a.send(start, room_id(), msg(n), b"x")
            .expect("queue has room");
    }
    assert_eq!(all_transmits(&mut a, start).len(), 10, "one burst");
    // The next token is due 1 ms later, and the timer says so.
    assert_eq!(a.poll_timeout(), Some(start + Duration::from_millis(1)));
    let later = start + Duration::from_millis(20);
    assert_eq!(
        all_transmits(&mut a, later).len(),
        10,
        "refilled at the rate, capped at the burst"
    );
}

/// Replaces the room of a generated packet with the test room, so it gets
/// past the membership check and into the state machine.
fn in_test_room(mut packet: Packet) -> Packet {
    match &mut packet {
        Packet::Data { room, .. }
        | Packet::Ack { room, .. }
        | Packet::Nack { room, .. }
        | Packet::Heartbeat { room, .. } => *room = room_id(),
    }
    packet
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A member sending arbitrary valid packets (absurd sequence numbers,
    /// ACKs for things never sent, NACK floods, session changes) cannot make
    /// the state machine panic or grow a buffer past its bound.
    #[test]
    fn hostile_member_cannot_break_bounds(
        packets in prop::collection::vec((arb_packet(), any::<bool>(), 0u64..50_000), 1..60),
    ) {
        let start = Instant::now();
        let (mut a, mut b) = pair(start);
        let config = Config::default();
        let mut now = start;
        for (n, (packet, multicast, advance_us)) in packets.into_iter().enumerate() {
            now += Duration::from_micros(advance_us);
            let _ = a.send(now, room_id(), msg(n as u64), &[7; 3000]);
            let packet = in_test_room(packet);
            let via = if multicast { Via::Multicast } else { Via::Unicast };
            let _ = a.handle_datagram(now, peer(2), via, &packet.encode());
            if a.poll_timeout().is_some_and(|t| t <= now) {
                a.handle_timeout(now);
            }
            // Whatever `a` sends is still valid for an honest peer.
            for t in all_transmits(&mut a, now) {
                prop_assert!(t.bytes.len() <= MAX_PACKET);
                prop_assert!(Packet::decode(&t.bytes).is_ok());
                let _ = b.handle_datagram(now, peer(1), Via::Unicast, &t.bytes);
            }
            let _ = all_events(&mut a);
            let usage = a.buffer_usage();
            prop_assert!(usage.queued_packets <= config.max_queued);
            prop_assert!(usage.reassembly_bytes <= config.max_reassembly_per_peer);
            prop_assert!(usage.reassembly_packets as u64 <= config.recv_window);
            prop_assert!(usage.unconfirmed <= config.max_unconfirmed);
            prop_assert!(usage.retransmit_queue <= config.max_queued * 2 + 64);
            prop_assert!(usage.control_queue <= 8, "control queue {}", usage.control_queue);
        }
    }
}
