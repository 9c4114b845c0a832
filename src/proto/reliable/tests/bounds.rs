//! Bounded queues, fairness between rooms, pacing, and a hostile member
//! that cannot push any buffer past its bound.

use super::packet::arb_packet;
use super::*;
use proptest::prelude::*;

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
