//! Malformed commands, payloads and datagrams, and a full hold buffer.

use super::*;
use proptest::prelude::*;

#[test]
fn commands_are_checked() {
    let now = Instant::now();
    let (mut a, b) = pair(now);
    let stranger = PeerId([9; 32]);
    assert_eq!(
        a.send_direct(now, stranger, "x"),
        Err(NodeError::UnknownPeer(stranger))
    );
    let long = "x".repeat(MAX_TEXT + 1);
    assert_eq!(
        a.send_direct(now, b.peer_id(), &long),
        Err(NodeError::TooLarge(MAX_TEXT + 1))
    );
    let longest = "x".repeat(MAX_TEXT);
    a.send_direct(now, b.peer_id(), &longest)
        .expect("the largest text fits the reliable layer");
}

#[test]
fn malformed_control_payloads_do_not_stall_the_stream() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(now);
    // A buggy (but authenticated) peer: raw garbage straight into the
    // reliable stream, then a proper message.
    let room = direct_room(a.peer_id(), b.peer_id());
    a.reliable
        .send(now, room, MessageId([1; 32]), b"\x01garbage")
        .expect("queue");
    a.reliable
        .send(now, room, MessageId([2; 32]), &[9, 9, 9])
        .expect("queue");
    a.send_direct(now, b.peer_id(), "after").expect("send");
    let trace = run(&mut a, &mut b, &mut now, Duration::from_secs(2));
    assert_eq!(b.stats().dropped(DropReason::ControlMalformed), 2);
    assert_eq!(received(&trace.b_events).len(), 1);
    // Dropped is not stored: the sender hears "refused", never "delivered".
    let refused: Vec<MessageId> = trace
        .a_events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::Refused { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(refused, vec![MessageId([1; 32]), MessageId([2; 32])]);
    let delivered = delivered(&trace.a_events);
    assert!(!delivered.contains(&MessageId([1; 32])));
    assert!(!delivered.contains(&MessageId([2; 32])));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random bytes, and valid datagrams with random bit flips, never panic
    /// and never surface a message.
    #[test]
    fn hostile_datagrams_never_panic(
        junk in prop::collection::vec(any::<u8>(), 0..1300),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut now = Instant::now();
        let (mut a, mut b) = pair(now);
        a.send_direct(now, b.peer_id(), "seed").expect("send");
        let trace = run(&mut a, &mut b, &mut now, Duration::from_millis(500));
        let _ = b.handle_datagram(now, &junk);
        let mut preamble = wire::MAGIC.to_vec();
        preamble.push(wire::VERSION);
        preamble.extend_from_slice(&junk);
        let _ = b.handle_datagram(now, &preamble);
        let (_, original) = &trace.wire[pick.index(trace.wire.len())];
        let mut bytes = original.clone();
        for (index, bit) in flips {
            let at = index.index(bytes.len());
            bytes[at] ^= 1 << bit;
        }
        let before = received(&events(&mut b)).len();
        let _ = b.handle_datagram(now, &bytes);
        let _ = a.handle_datagram(now, &bytes);
        now += Duration::from_secs(1);
        b.handle_timeout(now);
        a.handle_timeout(now);
        prop_assert_eq!(before, 0);
        prop_assert!(received(&events(&mut b)).is_empty());
    }
}

#[test]
fn held_overflow_is_stored_unreadable_not_acknowledged_unstored() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(now);
    a.send_direct(now, b.peer_id(), "before").expect("send");
    let first = run(&mut a, &mut b, &mut now, Duration::from_secs(1));
    for (_, receipt) in received(&first.b_events) {
        b.confirm_stored(now, receipt);
    }
    let _ = run(&mut a, &mut b, &mut now, Duration::from_secs(1));
    // B restarts without its chains, with room for only two held envelopes.
    let config = NodeConfig {
        max_held: 2,
        ..NodeConfig::default()
    };
    b = Node::new(identity(2), config, StdRng::seed_from_u64(99), now);
    b.add_contact(now, identity(1).public());
    b.set_reachable(now, a.peer_id(), true);
    let early: Vec<MessageId> = (0..5)
        .map(|i| {
            a.send_direct(now, b.peer_id(), &format!("early {i}"))
                .expect("send")
        })
        .collect();
    let trace = run(&mut a, &mut b, &mut now, Duration::from_secs(5));
    let unreadable: Vec<(MessageId, Receipt)> = trace
        .b_events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::Undecryptable { id, receipt, .. } => Some((*id, *receipt)),
            _ => None,
        })
        .collect();
    assert_eq!(
        unreadable.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        early,
        "every early message reaches the store, in order"
    );
    assert_eq!(b.stats().dropped(DropReason::HeldOverflow), 3);
    assert!(delivered(&trace.a_events).is_empty(), "nothing stored yet");
    for (_, receipt) in unreadable {
        b.confirm_stored(now, receipt);
    }
    let done = run(&mut a, &mut b, &mut now, Duration::from_secs(2));
    assert_eq!(delivered(&done.a_events), early);
    assert_eq!(b.held_len(), 0);
}
