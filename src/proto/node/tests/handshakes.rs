//! Handshakes: simultaneous opens, lost messages, reachability, keep-alive
//! probes, leaving, and rekeying on a timer.

use super::*;

#[test]
fn simultaneous_open_settles_on_one_session() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(now);
    a.send_direct(now, b.peer_id(), "from a").expect("send");
    b.send_direct(now, a.peer_id(), "from b").expect("send");
    let trace = run(&mut a, &mut b, &mut now, Duration::from_secs(3));
    assert_eq!(received(&trace.a_events).len(), 1);
    assert_eq!(received(&trace.b_events).len(), 1);
    assert_eq!(a.stats().sessions_established, 1);
    assert_eq!(b.stats().sessions_established, 1);
    assert_eq!(
        a.stats().simultaneous_opens + b.stats().simultaneous_opens,
        1
    );
}

#[test]
fn lost_handshake_messages_are_retransmitted() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(now);
    a.send_direct(now, b.peer_id(), "hi").expect("send");
    // Lose A's first message 1.
    assert!(!transmits(&mut a).is_empty());
    now += Duration::from_millis(150);
    a.handle_timeout(now);
    // The retransmitted message 1 gets an answer; lose message 3 and the
    // data sealed after it.
    for t in transmits(&mut a) {
        b.handle_datagram(now, &t.bytes)
            .expect("message 1 is answered");
    }
    for t in transmits(&mut b) {
        a.handle_datagram(now, &t.bytes)
            .expect("message 2 completes");
    }
    assert!(!transmits(&mut a).is_empty());
    assert!(!b.has_session(&a.peer_id()));
    let trace = run(&mut a, &mut b, &mut now, Duration::from_secs(3));
    assert_eq!(received(&trace.b_events).len(), 1);
    assert!(b.has_session(&a.peer_id()));
}

#[test]
fn unreachable_peer_gets_nothing_until_reachable() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(now);
    a.set_reachable(now, b.peer_id(), false);
    for i in 0..5 {
        a.send_direct(now, b.peer_id(), &format!("m{i}"))
            .expect("send");
    }
    for _ in 0..10 {
        now += Duration::from_secs(1);
        a.handle_timeout(now);
        assert!(
            transmits(&mut a).is_empty(),
            "nothing goes to an absent peer"
        );
    }
    a.set_reachable(now, b.peer_id(), true);
    let trace = run(&mut a, &mut b, &mut now, Duration::from_secs(2));
    let bodies: Vec<Vec<u8>> = received(&trace.b_events)
        .into_iter()
        .map(|(b, _)| b)
        .collect();
    let want: Vec<Vec<u8>> = (0..5).map(|i| format!("m{i}").into_bytes()).collect();
    assert_eq!(bodies, want);
}

#[test]
fn keepalive_starts_a_handshake_then_probes_and_is_answered() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(now);
    let idb = b.peer_id();
    // No session yet: the probe is a handshake, whose answer authenticates B.
    a.keepalive(now, idb);
    let init = transmits(&mut a);
    assert_eq!(init.len(), 1);
    assert_eq!(
        b.handle_datagram(now, &init[0].bytes),
        Ok(Heard::Claimed(a.peer_id()))
    );
    let response = transmits(&mut b);
    assert_eq!(
        a.handle_datagram(now, &response[0].bytes),
        Ok(Heard::Proven(idb))
    );
    run(&mut a, &mut b, &mut now, Duration::from_millis(500));
    assert!(a.has_session(&idb) && b.has_session(&a.peer_id()));
    // With a session: one sealed probe, one sealed answer, nothing else.
    a.keepalive(now, idb);
    let probe = transmits(&mut a);
    assert_eq!(probe.len(), 1);
    assert_eq!(
        b.handle_datagram(now, &probe[0].bytes),
        Ok(Heard::Proven(a.peer_id()))
    );
    let answer = transmits(&mut b);
    assert_eq!(answer.len(), 1);
    assert_eq!(
        a.handle_datagram(now, &answer[0].bytes),
        Ok(Heard::Proven(idb))
    );
    assert!(transmits(&mut a).is_empty(), "an answer is never answered");
    assert_eq!(a.stats().keepalives_sent, 1);
    assert_eq!(b.stats().keepalives_answered, 1);
    // A replayed probe is dropped, not answered again.
    assert_eq!(
        b.handle_datagram(now, &probe[0].bytes),
        Err(DropReason::Replayed)
    );
    assert!(transmits(&mut b).is_empty());
    // A blocked peer's probes get nothing.
    b.block(a.peer_id());
    a.keepalive(now, idb);
    for t in transmits(&mut a) {
        // Blocking dropped B's session with A, so nothing says whose the
        // frame is: dropped before any cryptography either way.
        assert_eq!(
            b.handle_datagram(now, &t.bytes),
            Err(DropReason::UnknownSession)
        );
    }
    assert!(transmits(&mut b).is_empty());
}

#[test]
fn leaving_reaches_only_as_the_authenticated_peer_and_only_once() {
    let (mut a, mut b, now) = warmed_pair();
    let (ida, idb) = (a.peer_id(), b.peer_id());
    events(&mut b);
    // Mallory, another contact of B with her own session, relabels A's
    // "leaving" as hers and hers as A's: neither opens.
    let mut m = node(3, now);
    b.add_contact(now, identity(3).public());
    m.add_contact(now, identity(2).public());
    m.set_reachable(now, idb, true);
    m.keepalive(now, idb);
    let mut later = now;
    let _ = run(&mut m, &mut b, &mut later, Duration::from_secs(1));
    assert!(m.has_session(&idb));
    events(&mut b);

    assert!(a.leaving(later, idb));
    let bye = transmits(&mut a);
    assert_eq!(bye.len(), 1, "one sealed datagram");
    let a_session = sealed_session(&bye[0].bytes);
    assert!(m.leaving(later, idb));
    let m_bye = transmits(&mut m);
    let m_session = sealed_session(&m_bye[0].bytes);
    let relabelled = with_session(&bye[0].bytes, m_session);
    let result = b.handle_datagram(later, &relabelled);
    assert!(
        matches!(
            result,
            Err(DropReason::UnknownSession | DropReason::Forged | DropReason::Replayed)
        ),
        "{result:?}"
    );
    let spoofed = with_session(&m_bye[0].bytes, a_session);
    let result = b.handle_datagram(later, &spoofed);
    assert!(
        matches!(
            result,
            Err(DropReason::UnknownSession | DropReason::Forged | DropReason::Replayed)
        ),
        "{result:?}"
    );
    assert!(
        !events(&mut b)
            .iter()
            .any(|e| matches!(e, NodeEvent::PeerLeaving { .. })),
        "nothing forged says leaving"
    );

    // (A frame of an unknown session may start a handshake; not ours to test.)
    transmits(&mut b);
    // The real one is reported once, naming A, and is not answered.
    assert_eq!(
        b.handle_datagram(later, &bye[0].bytes),
        Ok(Heard::Proven(ida))
    );
    assert_eq!(events(&mut b), vec![NodeEvent::PeerLeaving { peer: ida }]);
    assert!(transmits(&mut b).is_empty(), "a goodbye is not answered");
    // A replay is refused by the session.
    assert_eq!(
        b.handle_datagram(later, &bye[0].bytes),
        Err(DropReason::Replayed)
    );
    assert!(events(&mut b).is_empty());
    // Without a session there is nobody to tell.
    let mut lone = node(4, later);
    lone.add_contact(later, identity(2).public());
    assert!(!lone.leaving(later, idb));
    assert!(transmits(&mut lone).is_empty());
}

#[test]
fn an_unanswered_probe_costs_one_datagram_and_a_queued_message_retries() {
    let mut now = Instant::now();
    let (mut a, _b) = pair(now);
    let idb = identity(2).public().peer_id();
    // Nobody answers: one message 1, no retransmission, then given up.
    a.keepalive(now, idb);
    assert_eq!(transmits(&mut a).len(), 1);
    let end = now + Duration::from_secs(60);
    let mut later = 0;
    while let Some(at) = a.poll_timeout() {
        if at > end {
            break;
        }
        now = at;
        a.handle_timeout(now);
        later += transmits(&mut a).len();
    }
    assert_eq!(later, 0, "an unanswered probe is not retransmitted");
    // The next probe starts a new one (presence paces them).
    a.keepalive(now, idb);
    assert_eq!(transmits(&mut a).len(), 1);
    // A message queued meanwhile makes it a retransmitted handshake.
    a.send_direct(now, idb, "hello").expect("B is a contact");
    let end = now + Duration::from_secs(10);
    let mut retries = 0;
    while let Some(at) = a.poll_timeout() {
        if at > end {
            break;
        }
        now = at;
        a.handle_timeout(now);
        retries += transmits(&mut a).len();
    }
    assert!(retries >= 3, "{retries} retransmissions");
}

/// The sealed frames of `wire` that A sent.
fn sealed_from_a(wire: &[(bool, Vec<u8>)]) -> Vec<Vec<u8>> {
    wire.iter()
        .filter(|(from_a, bytes)| {
            *from_a
                && matches!(
                    Datagram::parse(bytes).map(|d| d.frame),
                    Ok(Frame::Sealed { .. })
                )
        })
        .map(|(_, bytes)| bytes.clone())
        .collect()
}

/// Issue 17, item 7: a pairwise session is replaced by a fresh handshake
/// every `rekey_after` (the lower id starts it), traffic goes on across
/// the change, and once the grace is over the old session's keys are gone:
/// frames recorded under it open with nothing the node holds.
#[test]
fn sessions_are_rekeyed_on_a_timer_and_the_old_keys_dropped() {
    let (mut a, mut b, mut now) = warmed_pair();
    let (ida, idb) = (a.peer_id(), b.peer_id());
    let config = NodeConfig::default();
    let first = a.session_ids(&idb);
    assert_eq!(first.len(), 1);
    assert_eq!(b.session_ids(&ida), first);
    // Traffic recorded under the first session.
    a.send_direct(now, idb, "recorded").expect("send");
    let trace = run(&mut a, &mut b, &mut now, Duration::from_secs(1));
    confirm_all(&mut b, now, &trace.b_events);
    let recorded = sealed_from_a(&trace.wire);
    assert!(!recorded.is_empty());

    let mut sessions = vec![first[0]];
    for round in 1..=3 {
        let trace = run(&mut a, &mut b, &mut now, config.rekey_after);
        confirm_all(&mut b, now, &trace.b_events);
        let current = a.session_ids(&idb)[0];
        assert!(!sessions.contains(&current), "round {round}: a new session");
        assert_eq!(b.session_ids(&ida)[0], current);
        sessions.push(current);
        // Traffic goes on over the new session.
        let text = format!("after rekey {round}");
        a.send_direct(now, idb, &text).expect("send");
        let trace = run(&mut a, &mut b, &mut now, Duration::from_secs(1));
        let got: Vec<Vec<u8>> = received(&trace.b_events)
            .into_iter()
            .map(|(b, _)| b)
            .collect();
        assert_eq!(got, vec![text.into_bytes()]);
        confirm_all(&mut b, now, &trace.b_events);
    }
    let rekeys = a.stats().rekeys_started + b.stats().rekeys_started;
    assert_eq!(rekeys, 3, "one side starts each rekey");
    assert_eq!(a.stats().rekeys_started, if ida < idb { 3 } else { 0 });
    // The replaced session still opens frames in flight for a while.
    assert_eq!(a.session_ids(&idb).len(), 2);
    let _ = run(&mut a, &mut b, &mut now, config.previous_session_grace);
    // Past the grace only the current session's keys are held.
    assert_eq!(a.session_ids(&idb).len(), 1);
    assert_eq!(b.session_ids(&ida).len(), 1);
    let unknown = b.stats().dropped(DropReason::UnknownSession);
    for frame in &recorded {
        assert_eq!(
            b.handle_datagram(now, frame),
            Err(DropReason::UnknownSession)
        );
    }
    assert_eq!(
        b.stats().dropped(DropReason::UnknownSession),
        unknown + recorded.len() as u64
    );
}
