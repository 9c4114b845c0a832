//! Strangers, and openings in a contact's name: answered at a bounded rate.

use super::*;

#[test]
fn strangers_get_no_handshake_answer_when_not_accepted() {
    let now = Instant::now();
    let mut a = node(1, now);
    let mut b = Node::new(
        identity(2),
        NodeConfig {
            accept_strangers: false,
            ..NodeConfig::default()
        },
        StdRng::seed_from_u64(1002),
        now,
    );
    a.add_contact(now, identity(2).public());
    a.set_reachable(now, b.peer_id(), true);
    a.send_direct(now, b.peer_id(), "hi").expect("send");
    for t in transmits(&mut a) {
        assert_eq!(
            b.handle_datagram(now, &t.bytes),
            Err(DropReason::UnknownPeer)
        );
    }
    assert!(transmits(&mut b).is_empty());
}

#[test]
fn a_stranger_meets_us_by_sending_a_message() {
    let mut now = Instant::now();
    let mut a = node(1, now);
    let mut b = node(2, now);
    a.add_contact(now, identity(2).public());
    a.set_reachable(now, b.peer_id(), true);
    let id = a
        .send_direct(now, b.peer_id(), "hello, we have not met")
        .expect("send");
    let trace = run(&mut a, &mut b, &mut now, Duration::from_millis(300));
    assert!(
        trace.b_events.contains(&NodeEvent::StrangerMet {
            public: identity(1).public()
        }),
        "B learns who wrote"
    );
    let got = received(&trace.b_events);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, b"hello, we have not met");
    b.confirm_stored(now, got[0].1);
    let trace = run(&mut a, &mut b, &mut now, Duration::from_millis(300));
    assert_eq!(delivered(&trace.a_events), vec![id]);
    // Declining is blocking: nothing more is answered or accepted.
    b.block(a.peer_id());
    a.send_direct(now, b.peer_id(), "again").expect("send");
    for t in transmits(&mut a) {
        // Blocking dropped B's session with A, so nothing says whose the
        // frame is: dropped before any cryptography either way.
        assert_eq!(
            b.handle_datagram(now, &t.bytes),
            Err(DropReason::UnknownSession)
        );
    }
}

#[test]
fn strangers_are_answered_at_a_bounded_rate() {
    let now = Instant::now();
    let mut b = node(2, now);
    let mut answered = 0;
    let mut limited = 0;
    for seed in 0..200u64 {
        let mut stranger = node(10_000 + seed, now);
        stranger.add_contact(now, identity(2).public());
        stranger.keepalive(now, b.peer_id());
        for t in transmits(&mut stranger) {
            match b.handle_datagram(now, &t.bytes) {
                Ok(Heard::Claimed(_)) => answered += 1,
                Err(DropReason::StrangerLimit) => limited += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(answered, STRANGER_BURST as usize, "a burst, then the rate");
    assert_eq!(limited, 200 - answered);
    assert!(b.strangers.len() <= MAX_STRANGERS);
    assert_eq!(transmits(&mut b).len(), answered);
    // A second later, about STRANGER_RATE more are answered.
    let later = now + Duration::from_secs(1);
    let mut more = 0;
    for seed in 0..100u64 {
        let mut stranger = node(20_000 + seed, later);
        stranger.add_contact(later, identity(2).public());
        stranger.keepalive(later, b.peer_id());
        for t in transmits(&mut stranger) {
            if matches!(b.handle_datagram(later, &t.bytes), Ok(Heard::Claimed(_))) {
                more += 1;
            }
        }
    }
    assert_eq!(more, STRANGER_RATE as usize);
}

/// A message 1 in `claimed`'s name from someone without its key: it is
/// well formed, so answering it costs the full work, but it can never be
/// finished.
fn forged_init(claimed: PeerId, rng: &mut StdRng) -> Vec<u8> {
    let (_, init) = Initiator::start(rng, None);
    Datagram {
        from: Some(claimed),
        frame: Frame::from(&init),
    }
    .emit()
    .expect("valid frame")
}

#[test]
fn openings_in_a_contacts_name_neither_break_its_handshake_nor_cost_unbounded_work() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(now);
    let mut mallory = StdRng::seed_from_u64(66);
    a.send_direct(now, b.peer_id(), "hi").expect("send");
    // A's message 1 reaches B; then, every 10 ms for 3 s, 20 forged
    // openings in A's name reach B before each of the real handshake's
    // messages. Whatever B sends goes to A, as the shell would send it.
    let mut flooded = 0u64;
    let until = now + Duration::from_secs(3);
    let mut to_b: Vec<Vec<u8>> = transmits(&mut a).into_iter().map(|t| t.bytes).collect();
    let mut got = Vec::new();
    while now < until {
        for bytes in to_b.drain(..) {
            let _ = b.handle_datagram(now, &bytes);
            for _ in 0..20 {
                let _ = b.handle_datagram(now, &forged_init(a.peer_id(), &mut mallory));
                flooded += 1;
            }
        }
        for t in transmits(&mut b) {
            let _ = a.handle_datagram(now, &t.bytes);
        }
        to_b.extend(transmits(&mut a).into_iter().map(|t| t.bytes));
        got.extend(received(&events(&mut b)));
        if to_b.is_empty() {
            now += Duration::from_millis(10);
            a.handle_timeout(now);
            b.handle_timeout(now);
            for _ in 0..20 {
                let _ = b.handle_datagram(now, &forged_init(a.peer_id(), &mut mallory));
                flooded += 1;
            }
            to_b.extend(transmits(&mut a).into_iter().map(|t| t.bytes));
        }
    }
    assert!(flooded > 5_000);
    assert_eq!(
        got.len(),
        1,
        "the real handshake finished and the message came"
    );
    assert_eq!(got[0].0, b"hi");
    // B's work for the flood is bounded by the rate limit, not the flood.
    let answered = b.stats().handshakes_answered;
    let bound = CONTACT_OPENING_BURST + 3.0 * CONTACT_OPENING_RATE + 1.0;
    assert!(
        (answered as f64) <= bound,
        "{answered} openings answered for {flooded} sent"
    );
    assert!(
        b.stats().dropped(DropReason::HandshakeBusy)
            + b.stats().dropped(DropReason::HandshakeLimit)
            >= flooded - answered
    );

    // A restarts (same identity, nothing remembered) and writes again: a
    // new session, even though B still has the old one and the flood left
    // a half-open handshake in A's name.
    let mut restarted = Node::new(
        identity(1),
        NodeConfig::default(),
        // A fresh RNG, as after a real restart: the same seed would replay
        // the first handshake's ephemeral, which B rightly ignores.
        StdRng::seed_from_u64(7_777),
        now,
    );
    restarted.add_contact(now, identity(2).public());
    restarted.set_reachable(now, b.peer_id(), true);
    restarted
        .send_direct(now, b.peer_id(), "back")
        .expect("send");
    let trace = run(&mut restarted, &mut b, &mut now, Duration::from_secs(6));
    let got = received(&trace.b_events);
    assert_eq!(got.len(), 1, "{:?}", b.stats());
    assert_eq!(got[0].0, b"back");
}
