//! Sealed frames between two peers: delivery, replays, forgeries, a third
//! party relabelling frames, blocking, and padding.

use super::*;
use crate::proto::reliable::{MAX_CHUNK, MAX_FRAGS, MAX_PACKET, MAX_RANGES, MAX_SEQ, Packet};

#[test]
fn worst_case_reliable_packets_fit_a_sealed_frame() {
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
    for packet in [data, ack] {
        let len = packet.encode().len();
        assert!(len <= MAX_PACKET);
        let datagram = Datagram {
            from: None,
            frame: Frame::Sealed {
                session: [0xff; 16],
                counter: u64::MAX,
                ciphertext: vec![
                    0xff;
                    wire::pad(&vec![0xff; len], wire::SEALED_OVERHEAD).len() + TAG_LEN
                ],
            },
        };
        let bytes = datagram.emit().expect("a sealed worst-case packet fits");
        assert!(bytes.len() <= wire::MAX_DATAGRAM, "{} bytes", bytes.len());
        let group = wire::pad(&vec![0xff; len], wire::GROUP_OVERHEAD).len();
        assert!(
            group + wire::GROUP_OVERHEAD <= wire::MAX_DATAGRAM,
            "{group} bytes of padded group plaintext"
        );
    }
}

#[test]
fn direct_room_is_symmetric_and_distinct() {
    let (x, y, z) = (PeerId([1; 32]), PeerId([2; 32]), PeerId([3; 32]));
    assert_eq!(direct_room(x, y), direct_room(y, x));
    assert_ne!(direct_room(x, y), direct_room(x, z));
}

#[test]
fn message_round_trip_and_delivered_only_after_store() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(now);
    let id = a
        .send_direct(now, b.peer_id(), "hello")
        .expect("contact can be messaged");
    let first = run(&mut a, &mut b, &mut now, Duration::from_secs(2));
    assert!(a.has_session(&b.peer_id()) && b.has_session(&a.peer_id()));
    let got = received(&first.b_events);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, b"hello");
    match &first.b_events[..] {
        [
            NodeEvent::ChainKnown { chain },
            NodeEvent::MessageReceived { from, id: rid, .. },
        ] if chain.sender == a.peer_id() => {
            assert_eq!(*from, a.peer_id());
            assert_eq!(*rid, id);
        }
        other => panic!("unexpected events {other:?}"),
    }
    // Received, acknowledged as received, but not stored: no Delivered.
    assert!(delivered(&first.a_events).is_empty());
    b.confirm_stored(now, got[0].1);
    let second = run(&mut a, &mut b, &mut now, Duration::from_secs(2));
    assert_eq!(delivered(&second.a_events), vec![id]);
    assert_eq!(a.stats().total_dropped(), 0, "{:?}", a.stats());
    assert_eq!(b.stats().total_dropped(), 0, "{:?}", b.stats());
    // Everything settled: no timers left running but the sessions' rekey,
    // half an hour out.
    let _ = run(&mut a, &mut b, &mut now, Duration::from_secs(10));
    let far = now + NodeConfig::default().rekey_after - Duration::from_secs(60);
    assert!(a.poll_timeout().is_some_and(|t| t > far));
    assert!(b.poll_timeout().is_some_and(|t| t > far));
}

#[test]
fn replayed_and_bit_flipped_datagrams_are_dropped_and_counted() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(now);
    a.send_direct(now, b.peer_id(), "one").expect("send");
    let trace = run(&mut a, &mut b, &mut now, Duration::from_secs(1));
    let sealed: Vec<Vec<u8>> = trace
        .wire
        .iter()
        .filter(|(from_a, bytes)| {
            *from_a
                && matches!(
                    Datagram::parse(bytes),
                    Ok(Datagram {
                        frame: Frame::Sealed { .. },
                        ..
                    })
                )
        })
        .map(|(_, bytes)| bytes.clone())
        .collect();
    assert!(!sealed.is_empty());
    let before = b.stats().clone();
    for bytes in &sealed {
        assert_eq!(b.handle_datagram(now, bytes), Err(DropReason::Replayed));
    }
    assert_eq!(
        b.stats().dropped(DropReason::Replayed),
        before.dropped(DropReason::Replayed) + sealed.len() as u64
    );
    // A fresh frame B has not seen, with one bit flipped in the ciphertext
    // (the last byte is in the AEAD tag): forged. The original still opens,
    // because a failed check never moves the replay window.
    a.send_direct(now, b.peer_id(), "two").expect("send");
    let fresh = transmits(&mut a);
    let mut flipped = fresh[0].bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_eq!(b.handle_datagram(now, &flipped), Err(DropReason::Forged));
    assert_eq!(
        b.handle_datagram(now, &fresh[0].bytes),
        Ok(Heard::Proven(a.peer_id()))
    );
    assert_eq!(received(&events(&mut b)).len(), 1);
    // And in the counter field instead: a fresh counter, but the AAD and
    // nonce no longer match the ciphertext.
    let Ok(Datagram {
        from,
        frame:
            Frame::Sealed {
                session,
                counter,
                ciphertext,
            },
    }) = Datagram::parse(&sealed[0])
    else {
        unreachable!("filtered to sealed frames above");
    };
    let moved = Datagram {
        from,
        frame: Frame::Sealed {
            session,
            counter: counter + 5000,
            ciphertext,
        },
    }
    .emit()
    .expect("valid frame");
    assert_eq!(b.handle_datagram(now, &moved), Err(DropReason::Forged));
    assert!(received(&events(&mut b)).is_empty());
}

/// M's first sealed frame in a trace where M is the first node.
fn m_trace_first(trace: &Run) -> Vec<u8> {
    trace
        .wire
        .iter()
        .find(|(from_m, bytes)| *from_m && Datagram::parse(bytes).is_ok_and(|d| d.from.is_none()))
        .map(|(_, bytes)| bytes.clone())
        .expect("M sent a sealed frame")
}

#[test]
fn a_third_party_cannot_speak_as_a_contact() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(now);
    a.send_direct(now, b.peer_id(), "one").expect("send");
    let trace = run(&mut a, &mut b, &mut now, Duration::from_secs(1));
    // Mallory, a contact of B, re-labels A's frame as her own, and sends her
    // own session traffic labelled as A's.
    let mut m = node(3, now);
    let pm = identity(3).public();
    b.add_contact(now, pm);
    m.add_contact(now, identity(2).public());
    m.set_reachable(now, b.peer_id(), true);
    m.send_direct(now, b.peer_id(), "from m").expect("send");
    let m_trace = run(&mut m, &mut b, &mut now, Duration::from_secs(1));
    let (_, a_frame) = trace
        .wire
        .iter()
        .find(|(from_a, bytes)| {
            *from_a
                && matches!(
                    Datagram::parse(bytes),
                    Ok(Datagram {
                        frame: Frame::Sealed { .. },
                        ..
                    })
                )
        })
        .expect("A sent sealed frames");
    // No sender id travels: the session id is the label to swap.
    let (a_session, m_session) = (
        sealed_session(a_frame),
        sealed_session(&m_trace_first(&m_trace)),
    );
    let relabelled = with_session(a_frame, m_session);
    let result = b.handle_datagram(now, &relabelled);
    assert!(
        matches!(
            result,
            Err(DropReason::UnknownSession | DropReason::Forged | DropReason::Replayed)
        ),
        "{result:?}"
    );
    let (_, m_frame) = m_trace
        .wire
        .iter()
        .rev()
        .find(|(from_m, bytes)| {
            *from_m
                && matches!(
                    Datagram::parse(bytes),
                    Ok(Datagram {
                        frame: Frame::Sealed { .. },
                        ..
                    })
                )
        })
        .expect("M sent sealed frames");
    let spoofed = with_session(m_frame, a_session);
    let result = b.handle_datagram(now, &spoofed);
    assert!(
        matches!(
            result,
            Err(DropReason::UnknownSession | DropReason::Forged | DropReason::Replayed)
        ),
        "{result:?}"
    );
    assert!(
        received(&events(&mut b)).is_empty(),
        "nothing forged reaches the shell"
    );
}

#[test]
fn blocked_peer_is_dropped_before_crypto_and_gets_no_answer() {
    let mut now = Instant::now();
    let (mut a, mut b) = pair(now);
    b.block(a.peer_id());
    a.send_direct(now, b.peer_id(), "hi").expect("send");
    let hello = transmits(&mut a);
    assert!(!hello.is_empty(), "A starts a handshake");
    for t in &hello {
        assert_eq!(b.handle_datagram(now, &t.bytes), Err(DropReason::Blocked));
    }
    assert!(transmits(&mut b).is_empty(), "no handshake answer");
    assert_eq!(b.stats().dropped(DropReason::Blocked), hello.len() as u64);
    assert_eq!(
        b.send_direct(now, a.peer_id(), "x"),
        Err(NodeError::Blocked(a.peer_id()))
    );
    // Unblocked, the retransmitted handshake gets through and the message
    // arrives.
    b.unblock(now, a.peer_id());
    let trace = run(&mut a, &mut b, &mut now, Duration::from_secs(3));
    assert_eq!(received(&trace.b_events).len(), 1);
}

/// Padding: an observer sees a size bucket, not a message's length.
#[test]
fn messages_of_different_lengths_in_one_bucket_give_equal_datagrams() {
    let (mut a, mut b, mut now) = warmed_pair();
    let short = direct_datagrams(&mut a, &b, now, &["hi"]);
    let _ = run(&mut a, &mut b, &mut now, Duration::from_secs(1));
    let long = direct_datagrams(
        &mut a,
        &b,
        now,
        &[&"a longer reply, still a chat line".repeat(3)],
    );
    assert_eq!((short.len(), long.len()), (1, 1));
    assert_eq!(short[0].len(), long[0].len(), "same bucket, same size");
    assert!(
        wire::SIZE_BUCKETS.contains(&short[0].len()),
        "{}",
        short[0].len()
    );
    // ACKs and keep-alives are padded too, and every sealed datagram of
    // the run fills a bucket exactly.
    a.keepalive(now, b.peer_id());
    let trace = run(&mut a, &mut b, &mut now, Duration::from_secs(1));
    let sealed: Vec<usize> = trace
        .wire
        .iter()
        .filter(|(_, bytes)| {
            matches!(
                Datagram::parse(bytes),
                Ok(Datagram {
                    frame: Frame::Sealed { .. },
                    ..
                })
            )
        })
        .map(|(_, bytes)| bytes.len())
        .collect();
    assert!(!sealed.is_empty());
    assert!(
        sealed.iter().all(|len| wire::SIZE_BUCKETS.contains(len)),
        "{sealed:?}"
    );
    // A message a bucket larger takes the next bucket.
    let big = direct_datagrams(&mut a, &b, now, &[&"x".repeat(400)]);
    assert!(big[0].len() > long[0].len() && wire::SIZE_BUCKETS.contains(&big[0].len()));
}

/// Sealed frames name no sender: the session id tells the receiver whose
/// keys open it, so the peer id appears only in handshakes.
#[test]
fn sealed_frames_carry_no_sender_id() {
    let (mut a, mut b, mut now) = warmed_pair();
    let ida = a.peer_id();
    let datagrams = direct_datagrams(&mut a, &b, now, &["no name on the envelope"]);
    a.keepalive(now, b.peer_id());
    let mut all = datagrams.clone();
    all.extend(transmits(&mut a).into_iter().map(|t| t.bytes));
    for bytes in &all {
        assert!(Datagram::parse(bytes).is_ok_and(|d| d.from.is_none()));
        assert!(!bytes.windows(32).any(|w| w == ida.0), "A's id in clear");
    }
    // B still knows who sent it.
    for bytes in &datagrams {
        assert_eq!(b.handle_datagram(now, bytes), Ok(Heard::Proven(ida)));
    }
    let _ = run(&mut a, &mut b, &mut now, Duration::from_secs(1));
}
