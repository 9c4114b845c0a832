//! Delivery: fragmentation, "stored" and "refused" acknowledgements,
//! immediate ACKs, NACKs and duplicate suppression.

use super::*;

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
