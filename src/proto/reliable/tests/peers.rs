//! Peers that go silent, come back or restart.

use super::*;

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
