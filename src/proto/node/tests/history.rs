//! Forwarded envelopes and the ratchet work they may cost.

use super::*;

#[test]
fn forwarded_envelopes_cost_a_bounded_amount_of_ratchet_work() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(now);
    let room = a.create_room(now, "bounded", &[b.peer_id()]).expect("room");
    let trace = run(&mut a, &mut b, &mut now, Duration::from_millis(300));
    assert!(trace.b_events.contains(&NodeEvent::RoomInvited {
        room,
        name: "bounded".into(),
        from: a.peer_id()
    }));
    b.accept_invite(now, room).expect("accept");
    run(&mut a, &mut b, &mut now, Duration::from_millis(300));
    // A near envelope A already has, forwarded: a duplicate, no work.
    let near = b.send_room_message(now, room, "near").expect("send");
    let trace = run(&mut a, &mut b, &mut now, Duration::from_millis(300));
    for (_, receipt) in received(&trace.a_events) {
        a.confirm_stored(now, receipt);
    }
    let replayed = a.stats().dropped(DropReason::Replayed);
    b.forward(now, a.peer_id(), &near.envelope)
        .expect("forward");
    let trace = run(&mut a, &mut b, &mut now, Duration::from_millis(300));
    assert!(received(&trace.a_events).is_empty(), "not surfaced twice");
    assert_eq!(a.stats().dropped(DropReason::Replayed), replayed + 1);
    assert_eq!(a.stats().forwards_opened, 0);
    // One still on its way from its author (its datagram is lost here),
    // forwarded: opened on the chain A follows, and the author's own copy,
    // when it is sent again, is not surfaced a second time.
    let ahead = b.send_room_message(now, room, "ahead").expect("send");
    let _lost = transmits(&mut b);
    let rejected = a.stats().dropped(DropReason::EnvelopeRejected);
    let replayed = a.stats().dropped(DropReason::Replayed);
    b.forward(now, a.peer_id(), &ahead.envelope)
        .expect("forward");
    let mut got = Vec::new();
    let mut delivered_ids = Vec::new();
    for _ in 0..2 {
        let trace = run(&mut a, &mut b, &mut now, Duration::from_secs(1));
        for (body, receipt) in received(&trace.a_events) {
            a.confirm_stored(now, receipt);
            got.push(body);
        }
        delivered_ids.extend(delivered(&trace.b_events));
    }
    assert_eq!(got, vec![b"ahead".to_vec()], "surfaced once");
    assert_eq!(a.stats().forwards_opened, 1, "on the chain A follows");
    assert_eq!(
        a.stats().dropped(DropReason::Replayed),
        replayed + 1,
        "the author's own copy, sent again, was the duplicate"
    );
    assert_eq!(
        a.stats().dropped(DropReason::EnvelopeRejected),
        rejected,
        "and it was not taken for a bad one"
    );
    assert!(delivered_ids.contains(&ahead.id), "and it was acknowledged");
    // A far one: more ratchet steps than a forwarder may make us spend in a
    // second. Stored unreadable, not computed.
    let far_chain = &mut b.rooms.get_mut(&room).expect("room").chain;
    far_chain.skip(FORWARD_STEPS_PER_SECOND + 10).expect("skip");
    let far = b.send_room_message(now, room, "far").expect("send");
    run(&mut a, &mut b, &mut now, Duration::from_millis(300));
    b.forward(now, a.peer_id(), &far.envelope).expect("forward");
    let trace = run(&mut a, &mut b, &mut now, Duration::from_millis(300));
    assert_eq!(a.stats().forward_work_refused, 1);
    assert!(
        trace
            .a_events
            .iter()
            .any(|e| matches!(e, NodeEvent::Undecryptable { id, .. } if *id == far.id))
    );
}
