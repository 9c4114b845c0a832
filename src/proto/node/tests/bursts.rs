//! Bursts: messages signed in batches and their signatures checked once.

use super::*;
use crate::proto::crypto::{OutgoingMessage, seal_envelope};

#[test]
fn a_burst_verifies_its_messages_in_one_batch_and_keeps_their_order() {
    let (mut a, mut b, room, now) = warmed_room();
    let checked_before = b.stats().signatures_checked;
    let texts: Vec<String> = (0..10).map(|i| format!("burst {i}")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let datagrams = room_datagrams(&mut a, room, now, &refs);
    b.begin_burst();
    for bytes in &datagrams {
        assert!(b.handle_datagram(now, bytes).is_ok());
    }
    assert!(
        received(&events(&mut b)).is_empty(),
        "nothing surfaces before the burst ends"
    );
    assert!(
        b.poll_timeout().is_some_and(|t| t <= now),
        "a shell that forgets end_burst is reminded"
    );
    b.end_burst(now);
    let got: Vec<Vec<u8>> = received(&events(&mut b))
        .into_iter()
        .map(|(body, _)| body)
        .collect();
    let want: Vec<Vec<u8>> = texts.iter().map(|t| t.as_bytes().to_vec()).collect();
    assert_eq!(got, want);
    assert_eq!(b.stats().batch_verified, 10);
    assert_eq!(b.stats().signatures_checked, checked_before + 10);
    assert_eq!(b.stats().total_dropped(), 0, "{:?}", b.stats());
}

#[test]
fn direct_messages_from_their_author_are_authenticated_by_the_session() {
    let (mut a, mut b, now) = warmed_pair();
    let checked_before = b.stats().signatures_checked;
    let texts = ["one", "two", "three"];
    let datagrams = direct_datagrams(&mut a, &b, now, &texts);
    let got = burst(&mut b, now, &datagrams);
    let want: Vec<Vec<u8>> = texts.iter().map(|t| t.as_bytes().to_vec()).collect();
    assert_eq!(got, want);
    assert_eq!(
        b.stats().signatures_checked,
        checked_before,
        "the pairwise session proved the author: no signature check"
    );
    assert_eq!(b.stats().total_dropped(), 0, "{:?}", b.stats());
}

#[test]
fn queued_sends_share_one_signature_checked_once_across_bursts() {
    let (mut a, mut b, room, now) = warmed_room();
    let checked_before = b.stats().signatures_checked;
    let texts: Vec<String> = (0..40).map(|i| format!("queued {i}")).collect();
    for text in &texts {
        a.queue_room_message(now, room, text).expect("queued");
    }
    assert!(
        transmits(&mut a).is_empty(),
        "nothing leaves before signing"
    );
    let sent: Vec<SentMessage> = a
        .sign_queued(now)
        .into_iter()
        .map(|r| r.expect("sent"))
        .collect();
    assert_eq!(sent.len(), 40);
    assert!(!a.has_queued());
    let datagrams: Vec<Vec<u8>> = transmits(&mut a).into_iter().map(|t| t.bytes).collect();
    assert!(datagrams.len() >= 31, "{} datagrams", datagrams.len());
    // Three bursts of uneven size, then one at a time: 40 messages in two
    // signed batches (32 + 8) cost two signature checks.
    let mut got = Vec::new();
    for burst in [&datagrams[..3], &datagrams[3..20], &datagrams[20..30]]
        .into_iter()
        .chain(datagrams[30..].chunks(1))
    {
        b.begin_burst();
        for bytes in burst {
            assert!(b.handle_datagram(now, bytes).is_ok());
        }
        b.end_burst(now);
        for event in events(&mut b) {
            if let NodeEvent::MessageReceived {
                id, body, receipt, ..
            } = event
            {
                got.push((id, body));
                b.confirm_stored(now, receipt);
            }
        }
    }
    // In order, with the ids A reported.
    let want: Vec<(MessageId, Vec<u8>)> = sent
        .iter()
        .zip(&texts)
        .map(|(s, t)| (s.id, t.as_bytes().to_vec()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        b.stats().signatures_checked,
        checked_before + 2,
        "{:?}",
        b.stats()
    );
    assert_eq!(b.stats().total_dropped(), 0, "{:?}", b.stats());
}

/// A's envelope in `room`, sealed on A's chain there, with its signature
/// broken, queued on the reliable stream of `stream`.
fn forged_envelope(a: &mut Node, now: Instant, room: RoomId, stream: RoomId) -> Vec<Vec<u8>> {
    let state = a.rooms.get_mut(&room).expect("the room exists");
    let mut forged = seal_envelope(
        &a.identity,
        &mut state.chain,
        OutgoingMessage {
            kind: KIND_TEXT,
            timestamp: 1,
            plaintext: b"forged",
        },
    )
    .expect("seals");
    forged.signature[0] ^= 1;
    let payload = Control::Message {
        envelope: forged.emit(),
    }
    .encode();
    a.reliable
        .send(now, stream, forged.id(), &payload)
        .expect("queued");
    transmits(a).into_iter().map(|t| t.bytes).collect()
}

#[test]
fn a_forged_signature_in_a_burst_costs_only_its_own_message() {
    let (mut a, mut b, room, now) = warmed_room();
    let mut datagrams = room_datagrams(&mut a, room, now, &["before"]);
    // A (a member) sends an envelope whose signature does not verify: only
    // the sender's identity key signs.
    datagrams.extend(forged_envelope(&mut a, now, room, room));
    datagrams.extend(room_datagrams(&mut a, room, now, &["after"]));
    assert_eq!(
        burst(&mut b, now, &datagrams),
        vec![b"before".to_vec(), b"after".to_vec()]
    );
    assert_eq!(
        b.stats().batch_verified,
        0,
        "the batch failed and was checked one by one"
    );
    assert_eq!(b.stats().dropped(DropReason::EnvelopeRejected), 1);
    // The pairwise session proves who sent a group envelope on the direct
    // stream (a resend after a restart), not that it is the author's to
    // hand to the room: its signature is still checked.
    let direct = direct_room(a.peer_id(), b.peer_id());
    let datagrams = forged_envelope(&mut a, now, room, direct);
    assert!(burst(&mut b, now, &datagrams).is_empty());
    assert_eq!(b.stats().dropped(DropReason::EnvelopeRejected), 2);
}

#[test]
fn a_control_message_in_a_burst_comes_after_the_messages_before_it() {
    let (mut a, mut b, now) = warmed_pair();
    let datagrams = direct_datagrams(&mut a, &b, now, &["one", "two"]);
    // A room invitation travels on the same pairwise stream.
    let room = a
        .create_room(now, "after two", &[b.peer_id()])
        .expect("room created");
    let mut all = datagrams;
    all.extend(transmits(&mut a).into_iter().map(|t| t.bytes));
    b.begin_burst();
    for bytes in &all {
        let _ = b.handle_datagram(now, bytes);
    }
    b.end_burst(now);
    let kinds: Vec<String> = events(&mut b)
        .into_iter()
        .filter_map(|e| match e {
            NodeEvent::MessageReceived { body, .. } => {
                Some(String::from_utf8_lossy(&body).into_owned())
            }
            NodeEvent::RoomInvited { room: r, .. } if r == room => Some("invite".to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, vec!["one", "two", "invite"]);
}
