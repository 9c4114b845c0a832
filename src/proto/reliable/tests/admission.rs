//! Who may say what: strangers, group frames and what they may carry.

use super::*;

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
