//! History reconciliation: two reconcilers run against each other in
//! memory. Whatever the sets, sizes, overlaps, ties and budgets, each side
//! must end with exactly the other's missing ids; malformed input must fail
//! with a typed error and never panic; the caps must hold.

use std::collections::BTreeSet;

use kith::proto::ids::MessageId;
use kith::proto::sync::{
    Bound, Digest, FINGERPRINT_LEN, Item, ItemSet, Message, Mode, Range, Reconciler, SALT_LEN,
    SHORT_ID_LEN, SYNC_VERSION, SortedItems, SyncConfig, SyncError, shared_salt,
};
use kith::store::Position;
use proptest::prelude::*;

/// What one exchange produced.
#[derive(Debug)]
struct Run {
    a_have: BTreeSet<MessageId>,
    a_need: BTreeSet<MessageId>,
    b_have: BTreeSet<MessageId>,
    b_need: BTreeSet<MessageId>,
    /// Rounds (one side's batch of messages), both directions.
    batches: usize,
    bytes: usize,
}

/// Runs initiator `a` against responder `b` until both are done. Every
/// message must fit its sender's budget.
fn run(a: &SortedItems, b: &SortedItems, ca: SyncConfig, cb: SyncConfig) -> Result<Run, SyncError> {
    let a_budget = ca.max_message_bytes.max(SyncConfig::MIN_MESSAGE_BYTES);
    let b_budget = cb.max_message_bytes.max(SyncConfig::MIN_MESSAGE_BYTES);
    let mut ra = Reconciler::initiator(ca, [7; SALT_LEN]);
    let mut rb = Reconciler::responder(cb);
    ra.initiate(a);
    let mut batches = 0;
    let mut bytes = 0;
    for turn in 0.. {
        assert!(turn < 2000, "exchange does not terminate");
        let (from, to, to_set, budget) = if turn % 2 == 0 {
            (&mut ra, &mut rb, b, a_budget)
        } else {
            (&mut rb, &mut ra, a, b_budget)
        };
        let mut batch = Vec::new();
        while let Some(message) = from.poll_message() {
            assert!(message.len() <= budget, "{} > {budget}", message.len());
            batch.push(message);
        }
        if batch.is_empty() {
            break;
        }
        batches += 1;
        for message in batch {
            bytes += message.len();
            to.handle_message(to_set, &message)?;
        }
    }
    assert!(ra.is_done() && rb.is_done(), "both sides finish");
    Ok(Run {
        a_have: ra.have_ids().copied().collect(),
        a_need: ra.need_ids().copied().collect(),
        b_have: rb.have_ids().copied().collect(),
        b_need: rb.need_ids().copied().collect(),
        batches,
        bytes,
    })
}

fn ids(set: &SortedItems) -> BTreeSet<MessageId> {
    set.as_slice().iter().map(|item| item.id).collect()
}

fn assert_union(a: &SortedItems, b: &SortedItems, run: &Run) {
    let a_ids = ids(a);
    let b_ids = ids(b);
    let a_only: BTreeSet<_> = a_ids.difference(&b_ids).copied().collect();
    let b_only: BTreeSet<_> = b_ids.difference(&a_ids).copied().collect();
    assert_eq!(run.a_have, a_only, "a sends what b lacks");
    assert_eq!(run.b_need, a_only, "b fetches what it lacks");
    assert_eq!(run.b_have, b_only, "b sends what a lacks");
    assert_eq!(run.a_need, b_only, "a fetches what it lacks");
}

fn id_from(seed: u64) -> MessageId {
    MessageId(*blake3::hash(&seed.to_le_bytes()).as_bytes())
}

/// `n` items, one second apart in HLC units, a few sharing a timestamp.
fn items(n: u64) -> Vec<Item> {
    (0..n)
        .map(|i| Item {
            timestamp: (1_700_000_000_000 + (i - i % 3) * 1000) << 16,
            id: id_from(i),
        })
        .collect()
}

#[test]
fn identical_sets_take_one_round_trip_and_few_bytes() {
    let set = SortedItems::new(items(1000));
    let run = run(&set, &set, SyncConfig::default(), SyncConfig::default()).expect("valid run");
    assert_union(&set, &set, &run);
    assert_eq!(run.batches, 2, "one round trip");
    assert!(run.bytes <= 400, "{} bytes", run.bytes);
}

#[test]
fn empty_sets_reconcile() {
    let empty = SortedItems::default();
    let run = run(&empty, &empty, SyncConfig::default(), SyncConfig::default()).expect("valid");
    assert_union(&empty, &empty, &run);
    assert_eq!(run.batches, 2);
}

#[test]
fn one_side_empty_gets_everything() {
    let full = SortedItems::new(items(5000));
    let empty = SortedItems::default();
    for (a, b) in [(&full, &empty), (&empty, &full)] {
        let run = run(a, b, SyncConfig::default(), SyncConfig::default()).expect("valid");
        assert_union(a, b, &run);
    }
}

#[test]
fn offline_tail_costs_close_to_the_ids() {
    let all = items(10_000);
    let b = SortedItems::new(all.clone());
    let a = SortedItems::new(all[..9_000].to_vec());
    let run = run(&a, &b, SyncConfig::default(), SyncConfig::default()).expect("valid");
    assert_union(&a, &b, &run);
    let bound = 1000 * 32;
    assert!(run.bytes <= bound * 3 / 2, "{} bytes", run.bytes);
}

#[test]
fn item_order_matches_store_positions() {
    let mut items: Vec<Item> = (0..200u64)
        .map(|i| Item {
            timestamp: i % 7,
            id: id_from(i),
        })
        .collect();
    let mut positions: Vec<Position> = items
        .iter()
        .map(|item| Position {
            timestamp: item.timestamp,
            id: item.id,
        })
        .collect();
    items.sort();
    positions.sort();
    for (item, position) in items.iter().zip(&positions) {
        assert_eq!((item.timestamp, item.id), (position.timestamp, position.id));
    }
}

#[test]
fn bounds_separate_neighbours() {
    let a = Item {
        timestamp: 5,
        id: MessageId([1; 32]),
    };
    let mut next_id = [1; 32];
    next_id[3] = 2;
    let b = Item {
        timestamp: 5,
        id: MessageId(next_id),
    };
    let bound = Bound::between(&a, &b);
    assert!(!bound.is_above(&b) && bound.is_above(&a));
    assert!(matches!(bound, Bound::At { prefix_len: 4, .. }));
    let c = Item {
        timestamp: 0x1_0000_0123,
        id: MessageId([0; 32]),
    };
    let gap = Bound::between(&b, &c);
    assert!(!gap.is_above(&c) && gap.is_above(&b));
    assert!(matches!(
        gap,
        Bound::At {
            timestamp: 0x1_0000_0000,
            prefix_len: 0,
            ..
        }
    ));
}

fn arb_config() -> impl Strategy<Value = SyncConfig> {
    (
        100usize..1300,
        2usize..20,
        2usize..8,
        0usize..12,
        1usize..40,
    )
        .prop_map(|(bytes, buckets, branching, threshold, reply)| SyncConfig {
            max_message_bytes: bytes,
            initial_buckets: buckets,
            branching,
            list_threshold: threshold,
            max_reply_items: reply,
            ..SyncConfig::default()
        })
}

/// Items from a small timestamp range and ids sharing prefixes, so ties
/// and long bound prefixes are common; `side` 0 = a only, 1 = b only,
/// 2 = both.
fn arb_sets() -> impl Strategy<Value = (SortedItems, SortedItems)> {
    prop::collection::vec((0u64..6, 0u8..3, any::<[u8; 30]>(), 0u8..3), 0..300).prop_map(|raw| {
        let mut a = Vec::new();
        let mut b = Vec::new();
        for (timestamp, prefix, rest, side) in raw {
            let mut id = [prefix; 32];
            id[2..].copy_from_slice(&rest);
            let timestamp = if timestamp == 5 { u64::MAX } else { timestamp };
            let item = Item {
                timestamp,
                id: MessageId(id),
            };
            if side != 1 {
                a.push(item);
            }
            if side != 0 {
                b.push(item);
            }
        }
        (SortedItems::new(a), SortedItems::new(b))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// For random pairs of sets, reconciliation yields exactly the union.
    #[test]
    fn reconciliation_yields_exactly_the_union(
        (a, b) in arb_sets(),
        ca in arb_config(),
        cb in arb_config(),
    ) {
        let result = run(&a, &b, ca, cb).expect("honest peers stay within the caps");
        assert_union(&a, &b, &result);
    }

    /// One side holds a prefix of the other, plus a few items of its own or
    /// not: the digest shortcut and its fallback both yield the union.
    #[test]
    fn prefixes_with_and_without_extras(
        n in 0u64..600,
        cut in any::<prop::sample::Index>(),
        extras in prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        initiator_behind in any::<bool>(),
        ca in arb_config(),
        cb in arb_config(),
    ) {
        let all = items(n);
        let cut = if all.is_empty() { 0 } else { cut.index(all.len() + 1) };
        let mut short: BTreeSet<Item> = all[..cut].iter().copied().collect();
        let mut long: BTreeSet<Item> = all.iter().copied().collect();
        for extra in extras {
            if let Some(item) = all.get(extra.index(all.len().max(1))) {
                if short.contains(item) { long.remove(item); } else { short.insert(*item); }
            }
        }
        let short = SortedItems::new(short.into_iter().collect());
        let long = SortedItems::new(long.into_iter().collect());
        let (a, b) = if initiator_behind { (short, long) } else { (long, short) };
        let result = run(&a, &b, ca, cb).expect("honest peers stay within the caps");
        assert_union(&a, &b, &result);
    }

    /// Larger sets with few scattered differences, default configuration.
    #[test]
    fn scattered_differences_in_larger_sets(
        n in 0u64..3000,
        picks in prop::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 0..40),
    ) {
        let all = items(n);
        let mut a_set: BTreeSet<Item> = all.iter().copied().collect();
        let mut b_set = a_set.clone();
        if !all.is_empty() {
            for (index, to_a) in picks {
                let item = all[index.index(all.len())];
                if to_a { b_set.remove(&item); } else { a_set.remove(&item); }
            }
        }
        let a = SortedItems::new(a_set.into_iter().collect());
        let b = SortedItems::new(b_set.into_iter().collect());
        let result = run(&a, &b, SyncConfig::default(), SyncConfig::default()).expect("valid");
        assert_union(&a, &b, &result);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1400)) {
        let _ = Message::parse(&bytes);
        let set = SortedItems::new(items(100));
        let mut responder = Reconciler::responder(SyncConfig::default());
        let _ = responder.handle_message(&set, &bytes);
        let mut initiator = Reconciler::initiator(SyncConfig::default(), [1; SALT_LEN]);
        initiator.initiate(&set);
        let _ = initiator.handle_message(&set, &bytes);
    }

    /// Valid messages with a flipped byte fail cleanly or parse to
    /// something else; they never panic.
    #[test]
    fn mutated_messages_never_panic(position in any::<prop::sample::Index>(), value in any::<u8>()) {
        let a = SortedItems::new(items(300));
        let mut initiator = Reconciler::initiator(SyncConfig::default(), [1; SALT_LEN]);
        initiator.initiate(&a);
        let mut message = initiator.poll_message().expect("first message");
        let index = position.index(message.len());
        message[index] = value;
        let mut responder = Reconciler::responder(SyncConfig::default());
        let _ = responder.handle_message(&a, &message);
    }

    #[test]
    fn messages_round_trip(
        ranges in prop::collection::vec((1u64..1 << 40, 0u8..33, any::<[u8; 32]>(), 0u8..4, 0usize..5), 1..20),
        id_count in 0usize..4,
        salt in any::<Option<[u8; SALT_LEN]>>(),
        digest in any::<Option<(u64, [u8; FINGERPRINT_LEN])>>(),
    ) {
        let mut timestamp = 0u64;
        let mut bounds = Vec::new();
        for (delta, prefix_len, raw, mode, count) in ranges {
            timestamp += delta;
            let mut id = [0u8; 32];
            id[..usize::from(prefix_len)].copy_from_slice(&raw[..usize::from(prefix_len)]);
            // A 31-byte prefix travels as 32 bytes.
            let prefix_len = if prefix_len == 31 { 32 } else { prefix_len };
            let mode = match mode {
                0 => Mode::Skip,
                1 => Mode::Fingerprint([mode; FINGERPRINT_LEN]),
                2 => Mode::List(vec![[3; SHORT_ID_LEN]; count]),
                _ => Mode::Need(vec![[4; SHORT_ID_LEN]; count]),
            };
            bounds.push((Bound::At { timestamp, id, prefix_len }, mode));
        }
        let message = Message {
            salt,
            nonce: None,
            digest: digest.map(|(count, fingerprint)| Digest { count, fingerprint }),
            last: true,
            start: Bound::MIN,
            ranges: bounds,
            ids: (0..id_count as u64).map(id_from).collect(),
        };
        let bytes = message.emit();
        prop_assert_eq!(Message::parse(&bytes), Ok(message));
    }
}

#[test]
fn malformed_messages_are_rejected() {
    assert_eq!(Message::parse(&[]), Err(SyncError::Truncated));
    assert_eq!(Message::parse(&[9, 0]), Err(SyncError::UnknownVersion(9)));
    // The previous format is refused, not misread.
    assert_eq!(Message::parse(&[1, 0]), Err(SyncError::UnknownVersion(1)));
    let v = SYNC_VERSION;
    assert!(matches!(
        Message::parse(&[v, 0x80]),
        Err(SyncError::Malformed(_))
    ));
    assert_eq!(Message::parse(&[v, 0, 0]), Err(SyncError::TrailingBytes(1)));
    // A digest whose count does not fit 64 bits, and one cut short.
    let mut huge = vec![v, 16];
    huge.extend_from_slice(&[0xff; 10]);
    huge.push(0x7f);
    huge.extend_from_slice(&[0; FINGERPRINT_LEN]);
    assert!(matches!(
        Message::parse(&huge),
        Err(SyncError::Malformed(_))
    ));
    assert_eq!(Message::parse(&[v, 16, 5, 0]), Err(SyncError::Truncated));
    assert_eq!(
        Message::parse(&vec![1; 1300]),
        Err(SyncError::TooLarge(1300))
    );
    // An id list claiming 2^60 ids in a short message.
    let mut forged = vec![v, 8];
    forged.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]);
    assert!(matches!(
        Message::parse(&forged),
        Err(SyncError::Malformed(_))
    ));
    // Bounds that do not increase.
    let message = Message {
        salt: None,
        nonce: None,
        digest: None,
        last: true,
        start: Bound::MIN,
        ranges: vec![
            (
                Bound::At {
                    timestamp: 10,
                    id: [0; 32],
                    prefix_len: 0,
                },
                Mode::Skip,
            ),
            (
                Bound::At {
                    timestamp: 10,
                    id: [0; 32],
                    prefix_len: 0,
                },
                Mode::Skip,
            ),
        ],
        ids: Vec::new(),
    };
    assert!(matches!(
        Message::parse(&message.emit()),
        Err(SyncError::Malformed(_))
    ));
}

#[test]
fn protocol_order_is_enforced() {
    let set = SortedItems::new(items(10));
    let mut initiator = Reconciler::initiator(SyncConfig::default(), [1; SALT_LEN]);
    initiator.initiate(&set);
    let first = initiator.poll_message().expect("first message");
    // The initiator never accepts a salt; the responder wants one first.
    assert!(matches!(
        initiator.handle_message(&set, &first),
        Err(SyncError::OutOfTurn(_))
    ));
    assert!(initiator.is_done(), "an error ends the session");
    let mut responder = Reconciler::responder(SyncConfig::default());
    let unsalted = Message {
        salt: None,
        nonce: None,
        digest: None,
        last: true,
        start: Bound::MIN,
        ranges: Vec::new(),
        ids: Vec::new(),
    };
    assert!(matches!(
        responder.handle_message(&set, &unsalted.emit()),
        Err(SyncError::OutOfTurn(_))
    ));
}

fn cap_error(a: &SortedItems, b: &SortedItems, cb: SyncConfig) -> SyncError {
    run(a, b, SyncConfig::default(), cb).expect_err("cap must trip")
}

#[test]
fn caps_hold() {
    let all = items(20_000);
    let b = SortedItems::new(all.clone());
    let a = SortedItems::new(all.iter().step_by(2).copied().collect());
    let rounds = SyncConfig {
        max_rounds: 1,
        ..SyncConfig::default()
    };
    assert_eq!(cap_error(&a, &b, rounds), SyncError::CapExceeded("rounds"));
    let differences = SyncConfig {
        max_differences: 100,
        ..SyncConfig::default()
    };
    assert_eq!(
        cap_error(&a, &b, differences),
        SyncError::CapExceeded("differences")
    );
    let open = SyncConfig {
        max_open_ranges: 8,
        ..SyncConfig::default()
    };
    assert_eq!(
        cap_error(&a, &b, open),
        SyncError::CapExceeded("open ranges")
    );
    // An honest peer keeps its rounds within a quarter of this cap, so a
    // forged round of two messages is what trips it.
    let mut responder = Reconciler::responder(SyncConfig {
        max_messages_per_round: 1,
        ..SyncConfig::default()
    });
    let open = Message {
        salt: Some([4; SALT_LEN]),
        nonce: None,
        digest: None,
        last: false,
        start: Bound::MIN,
        ranges: Vec::new(),
        ids: Vec::new(),
    };
    responder
        .handle_message(&b, &open.emit())
        .expect("first message of the round");
    let more = Message {
        salt: None,
        nonce: None,
        last: true,
        ..open
    };
    assert_eq!(
        responder.handle_message(&b, &more.emit()),
        Err(SyncError::CapExceeded("messages per round"))
    );
}

/// A peer that lists nothing over everything asks us for our whole set; we
/// answer with fingerprints of a split, not 20 000 ids in one round.
#[test]
fn a_huge_list_request_is_split_not_answered_in_full() {
    let set = SortedItems::new(items(20_000));
    let empty_list = Message {
        salt: Some([2; SALT_LEN]),
        nonce: None,
        digest: None,
        last: true,
        start: Bound::MIN,
        ranges: vec![(Bound::Infinity, Mode::List(Vec::new()))],
        ids: Vec::new(),
    };
    let mut responder = Reconciler::responder(SyncConfig::default());
    responder
        .handle_message(&set, &empty_list.emit())
        .expect("valid message");
    let mut total = 0;
    while let Some(message) = responder.poll_message() {
        total += message.len();
    }
    assert!(total < 1000, "{total} bytes");
    assert_eq!(responder.have_ids().count(), 0);
    // The set agrees with itself through the trait, too.
    assert_eq!(set.summary(&Range::ALL).count(), 20_000);
}

/// An honest sender keeps within the peer's caps: a backlog far larger
/// than one round allows converges over more rounds instead of failing.
#[test]
fn large_backlogs_converge_within_small_caps() {
    let all = items(20_000);
    let full = SortedItems::new(all.clone());
    let half = SortedItems::new(all.iter().step_by(2).copied().collect());
    let empty = SortedItems::default();
    let tight = SyncConfig {
        max_open_ranges: 1024,
        max_messages_per_round: 64,
        max_rounds: 10_000,
        ..SyncConfig::default()
    };
    for (a, b) in [(&half, &full), (&empty, &full), (&full, &empty)] {
        let result = run(a, b, tight.clone(), tight.clone()).expect("stays within caps");
        assert_union(a, b, &result);
        assert!(result.batches > 4, "needs more rounds: {}", result.batches);
    }
}

/// The offline case in either direction: one side holds a prefix of the
/// other. The digest settles it in one round trip (1.5 when the responder
/// is the one behind), at the cost of the missing ids plus a small fixed
/// overhead (salt, count and fingerprint).
#[test]
fn a_missing_tail_costs_its_ids_plus_a_digest() {
    let full = SortedItems::new(items(10_000));
    let all = full.as_slice();
    for missing in [1usize, 2, 100] {
        let behind = SortedItems::new(all[..all.len() - missing].to_vec());
        let ahead = run(&behind, &full, SyncConfig::default(), SyncConfig::default())
            .expect("initiator behind");
        assert_union(&behind, &full, &ahead);
        assert_eq!(ahead.batches, 2, "one round trip");
        assert!(ahead.bytes <= missing * 32 + 40, "{} bytes", ahead.bytes);
        let back = run(&full, &behind, SyncConfig::default(), SyncConfig::default())
            .expect("responder behind");
        assert_union(&full, &behind, &back);
        assert_eq!(back.batches, 3, "the responder answers with its digest");
    }
}

/// A digest is compared once per session; a peer repeating it, or lying
/// about its count, gets nothing for free.
#[test]
fn forged_digests_are_refused_or_fall_back() {
    let set = SortedItems::new(items(500));
    for count in [u64::MAX, 499, 500, 501, 0] {
        let first = Message {
            salt: Some([3; SALT_LEN]),
            nonce: None,
            digest: Some(Digest {
                count,
                fingerprint: [0; FINGERPRINT_LEN],
            }),
            last: true,
            start: Bound::MIN,
            ranges: Vec::new(),
            ids: Vec::new(),
        };
        let mut responder = Reconciler::responder(SyncConfig::default());
        responder
            .handle_message(&set, &first.emit())
            .expect("a wrong fingerprint is a difference, not an error");
        assert_eq!(responder.have_ids().count(), 0, "nothing sent unproven");
        assert!(responder.poll_message().is_some(), "fingerprints go back");
        let again = Message {
            salt: None,
            nonce: None,
            ..first
        };
        assert_eq!(
            responder.handle_message(&set, &again.emit()),
            Err(SyncError::OutOfTurn("second digest"))
        );
    }
}

/// An [`ItemSet`] without positional access: the default `pair_at`.
struct Bisecting(SortedItems);

impl ItemSet for Bisecting {
    fn summary(&self, range: &Range) -> kith::proto::sync::Accumulator {
        self.0.summary(range)
    }
    fn items(&self, range: &Range, limit: usize) -> Vec<Item> {
        self.0.items(range, limit)
    }
    fn split_pairs(&self, range: &Range, parts: usize) -> Vec<(Item, Item)> {
        self.0.split_pairs(range, parts)
    }
}

#[test]
fn default_pair_at_agrees_with_positional_access() {
    let set = SortedItems::new(items(700));
    let bisecting = Bisecting(set.clone());
    for index in [
        0u64,
        1,
        2,
        63,
        64,
        65,
        349,
        350,
        351,
        698,
        699,
        700,
        u64::MAX,
    ] {
        assert_eq!(bisecting.pair_at(index), set.pair_at(index), "{index}");
    }
    assert!(set.pair_at(350).is_some() && set.pair_at(700).is_none());
    // And a whole exchange through the default agrees too.
    let all = SortedItems::new(items(3000));
    let a = Bisecting(SortedItems::new(all.as_slice()[..2990].to_vec()));
    let b = Bisecting(all);
    let mut ra = Reconciler::initiator(SyncConfig::default(), [5; SALT_LEN]);
    let mut rb = Reconciler::responder(SyncConfig::default());
    ra.initiate(&a);
    let first = ra.poll_message().expect("digest");
    rb.handle_message(&b, &first).expect("valid");
    let reply = rb.poll_message().expect("the tail");
    ra.handle_message(&a, &reply).expect("valid");
    assert!(ra.is_done() && rb.is_done());
    assert_eq!(ra.need_ids().count(), 10);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Opened with a nonce between peers sharing a secret, a session still
    /// yields exactly the union, and its opening is the digest plus a
    /// couple of bytes (no salt on the wire).
    #[test]
    fn a_shared_secret_session_yields_the_union(
        a in proptest::collection::btree_set(0u64..400, 0..120),
        b in proptest::collection::btree_set(0u64..400, 0..120),
        nonce in any::<u64>(),
    ) {
        let item = |n: &u64| Item { timestamp: n / 3, id: MessageId(*blake3::hash(&n.to_le_bytes()).as_bytes()) };
        let set_a = SortedItems::new(a.iter().map(item).collect());
        let set_b = SortedItems::new(b.iter().map(item).collect());
        let secret = [9u8; 32];
        let mut ra = Reconciler::initiator_shared(SyncConfig::default(), &secret, nonce);
        let mut rb = Reconciler::responder_shared(SyncConfig::default(), secret);
        ra.initiate(&set_a);
        let first = ra.poll_message().expect("an opening");
        let parsed = Message::parse(&first).expect("valid");
        prop_assert!(parsed.salt.is_none() && parsed.nonce == Some(nonce));
        let mut to_b = vec![first];
        let mut turns = 0;
        while !(ra.is_done() && rb.is_done()) && turns < 40 {
            turns += 1;
            for m in std::mem::take(&mut to_b) {
                let _ = rb.handle_message(&set_b, &m);
            }
            let to_a: Vec<Vec<u8>> = std::iter::from_fn(|| rb.poll_message()).collect();
            for m in to_a {
                let _ = ra.handle_message(&set_a, &m);
            }
            to_b = std::iter::from_fn(|| ra.poll_message()).collect();
            if to_b.is_empty() && ra.is_done() {
                break;
            }
        }
        let a_ids: std::collections::BTreeSet<MessageId> = set_a.as_slice().iter().map(|i| i.id).collect();
        let b_ids: std::collections::BTreeSet<MessageId> = set_b.as_slice().iter().map(|i| i.id).collect();
        let a_gets: std::collections::BTreeSet<MessageId> = rb.have_ids().copied().chain(ra.need_ids().copied()).collect();
        let b_gets: std::collections::BTreeSet<MessageId> = ra.have_ids().copied().chain(rb.need_ids().copied()).collect();
        let want_a: std::collections::BTreeSet<MessageId> = b_ids.difference(&a_ids).copied().collect();
        let want_b: std::collections::BTreeSet<MessageId> = a_ids.difference(&b_ids).copied().collect();
        prop_assert_eq!(a_gets, want_a);
        prop_assert_eq!(b_gets, want_b);
    }
}

#[test]
fn a_nonce_opening_needs_the_shared_secret() {
    let set = SortedItems::new(Vec::new());
    let mut initiator = Reconciler::initiator_shared(SyncConfig::default(), &[1; 32], 7);
    initiator.initiate(&set);
    let first = initiator.poll_message().expect("an opening");
    let mut plain = Reconciler::responder(SyncConfig::default());
    assert!(matches!(
        plain.handle_message(&set, &first),
        Err(SyncError::OutOfTurn(_))
    ));
    assert_eq!(
        shared_salt(&[1; 32], 7),
        shared_salt(&[1; 32], 7),
        "both sides derive the same salt"
    );
    assert_ne!(shared_salt(&[1; 32], 7), shared_salt(&[1; 32], 8));
    assert_ne!(shared_salt(&[1; 32], 7), shared_salt(&[2; 32], 7));
}
