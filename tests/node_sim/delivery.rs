//! Direct delivery on the real core ([`kith::daemon::sim::SimDaemon`]):
//! exactly once and in order under loss, duplication and reordering; to
//! a peer that was away; across a receiver killed mid-burst; under a
//! store that cannot write and a store that lost its last writes. In the
//! exactly-once, offline and restart scenarios every `Delivered` a sender
//! reports is checked, after every step of the network, against the
//! receiver's store at that moment ([`DeliveredCheck`]): "delivered"
//! means stored.

use std::collections::HashMap;
use std::time::Duration;

use kith::daemon::sim::SimEvent;
use kith::daemon::{Delivery, Event};
use kith::proto::ids::MessageId;
use kith::proto::node::{DropReason, direct_room};
use kith::proto::sim::LinkConfig;
use proptest::prelude::*;

use crate::sim_support::{Cluster, lan_link};

/// "Delivered" means stored: with the receiver's disk full nothing it
/// gets is acknowledged, so the sender reports nothing delivered and keeps
/// every message; once space is freed each is stored once, in order, and
/// reported delivered once. (Before, the receiver dropped what it could
/// not journal, then refused every retransmission as a replay: the
/// messages stayed "queued" until it restarted.)
#[test]
fn delivered_waits_for_the_receivers_store() {
    let mut c = Cluster::new(7, 2, LinkConfig::lossy(0.1));
    c.run_for(Duration::from_millis(500));
    c.set_full_disk(1, true);
    let sent: Vec<_> = (0..10).map(|i| c.send(0, 1, &format!("m{i}"))).collect();
    c.run_for(Duration::from_secs(20));
    assert!(
        c.delivered(0).is_empty(),
        "nothing delivered to a full disk"
    );
    assert!(c.received(1).is_empty(), "nothing reported as received");
    for id in &sent {
        assert_ne!(c.delivery(0, 1, *id), Some(Delivery::Stored));
    }
    c.set_full_disk(1, false);
    let all = |c: &mut Cluster| sent.iter().all(|id| c.delivered(0).contains(id));
    assert!(
        c.run_until(Duration::from_secs(120), all),
        "delivered once freed"
    );
    let texts: Vec<String> = c.received(1).into_iter().map(|(_, t)| t).collect();
    let want: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, want, "each stored once, in order");
    for id in &sent {
        assert_eq!(c.delivered(0).iter().filter(|d| *d == id).count(), 1);
    }
}

/// A receiver whose disk lost its last writes (restored from a snapshot
/// taken before the messages came) gets them again from the sender by
/// reconciliation, though the sender had them delivered.
#[test]
fn a_receiver_restored_from_before_the_messages_gets_them_again_by_sync() {
    let mut c = Cluster::new(8, 2, LinkConfig::default());
    c.run_for(Duration::from_millis(500));
    let before = c.snapshot(1);
    let sent: Vec<_> = (0..5).map(|i| c.send(0, 1, &format!("m{i}"))).collect();
    let all = |c: &mut Cluster| sent.iter().all(|id| c.delivered(0).contains(id));
    assert!(c.run_until(Duration::from_secs(30), all));
    c.restore(1, &before);
    let room = kith::proto::node::direct_room(c.id(0), c.id(1));
    assert!(c.held(1, room).is_empty(), "the restored store lost them");
    let back = |c: &mut Cluster| c.held(1, room).len() == 5;
    assert!(
        c.run_until(Duration::from_secs(300), back),
        "reconciliation brings them back"
    );
}

// Direct delivery under loss, peers away and receivers restarting, with
// every "delivered" checked against the receiver's store as it happens:
// the ports of the old model's exactly-once, offline and receiver-restart
// scenarios (`node_sim/internals.rs`) onto the real core.

/// A direct message sent: from, to, its id, its text.
type Sent = (usize, usize, MessageId, String);

/// Watches every sender's `Delivered` events as they come, step by step,
/// and checks each against the receiver's store at that moment: the
/// message must be there (journaled or settled, readable or not).
/// Asking the store reads only ([`kith::store::Store::holds_message`]):
/// settling from the check would change the run it checks. Direct
/// messages only (the room a `Delivered` is of is the chat with `to`).
struct DeliveredCheck {
    /// How many of each host's events were looked at.
    seen: Vec<usize>,
    /// Each `Delivered` seen: (sender, message) → how many times.
    delivered: HashMap<(usize, MessageId), u32>,
}

impl DeliveredCheck {
    fn new(n: usize) -> Self {
        DeliveredCheck {
            seen: vec![0; n],
            delivered: HashMap::new(),
        }
    }

    /// Checks the `Delivered` events reported since the last call.
    fn check(&mut self, c: &Cluster) {
        for (i, seen) in self.seen.iter_mut().enumerate() {
            let events = c.net.events(i);
            for event in &events[*seen..] {
                let SimEvent::Event(at, Event::Delivered { to, id, .. }) = event else {
                    continue;
                };
                let j = c.net.index_of(to).expect("delivered to a host");
                let room = direct_room(c.id(i), *to);
                let held = c.hosts[j]
                    .store()
                    .holds_message(&room, id)
                    .expect("the receiver's store answers");
                assert!(
                    held,
                    "{i} heard {id:?} delivered before {j}'s store held it \
                     ({:?} into the run)",
                    c.net.elapsed() - (c.net.now() - *at)
                );
                *self.delivered.entry((i, *id)).or_default() += 1;
            }
            *seen = events.len();
        }
    }

    /// Whether every one of `sent` was reported delivered.
    fn all_delivered(&self, sent: &[Sent]) -> bool {
        sent.iter()
            .all(|(from, _, id, _)| self.delivered.contains_key(&(*from, *id)))
    }

    /// Steps the network until `done` or `limit`, checking after every
    /// step; whether `done`.
    fn run_until(
        &mut self,
        c: &mut Cluster,
        limit: Duration,
        mut done: impl FnMut(&Self, &mut Cluster) -> bool,
    ) -> bool {
        let until = c.now() + limit;
        loop {
            self.check(c);
            if done(self, c) {
                return true;
            }
            if !c.net.step(&mut c.hosts, until) {
                self.check(c);
                return done(self, c);
            }
        }
    }

    /// Until every one of `sent` is reported delivered, or `limit`.
    fn run_until_delivered(&mut self, c: &mut Cluster, limit: Duration, sent: &[Sent]) -> bool {
        self.run_until(c, limit, |check, _| check.all_delivered(sent))
    }

    /// Steps the network for `duration`, checking after every step.
    fn run_for(&mut self, c: &mut Cluster, duration: Duration) {
        self.run_until(c, duration, |_, _| false);
    }

    /// Host `from` sends `text` to `to` (its `Delivered` events checked
    /// from now on as every other's).
    fn send(&mut self, c: &mut Cluster, sent: &mut Vec<Sent>, from: usize, to: usize, text: &str) {
        let id = c.send(from, to, text);
        sent.push((from, to, id, text.to_owned()));
        self.check(c);
    }
}

/// The old model's traffic: every host sends `count` messages to every
/// other, four rounds at one instant (a burst), then 20 ms pass.
fn chatter(c: &mut Cluster, check: &mut DeliveredCheck, sent: &mut Vec<Sent>, count: usize) {
    let n = c.hosts.len();
    for round in 0..count {
        for from in 0..n {
            for to in (0..n).filter(|to| *to != from) {
                check.send(c, sent, from, to, &format!("{from}->{to} #{round}"));
            }
        }
        if round % 4 == 3 {
            check.run_for(c, Duration::from_millis(20));
        }
    }
}

/// Ids host `i` reported as received (readable) and as stored unreadable,
/// with how many times each.
fn reported(c: &Cluster, i: usize) -> (HashMap<MessageId, u32>, HashMap<MessageId, u32>) {
    let (mut received, mut unreadable) = (HashMap::new(), HashMap::new());
    for event in c.events(i) {
        match event {
            Event::MessageReceived { id, .. } => *received.entry(*id).or_default() += 1,
            Event::Undecryptable { id, .. } => *unreadable.entry(*id).or_default() += 1,
            _ => {}
        }
    }
    (received, unreadable)
}

/// What every exactly-once scenario ends with: each recipient holds
/// exactly the messages sent to it, once each, readable with the text
/// sent, in send order per sender; it reported each received exactly
/// once (`reported_once`: all but those whose report a crash may have
/// taken, at most once) and nothing else; each sender heard each of its
/// messages delivered exactly once and nothing else delivered; an honest
/// network counts nothing of `never` (forged, rejected, malformed).
fn check_exactly_once_in_order(
    c: &mut Cluster,
    check: &DeliveredCheck,
    sent: &[Sent],
    reported_once: impl Fn(&MessageId) -> bool,
    never: &[DropReason],
) {
    let n = c.hosts.len();
    for to in 0..n {
        let (received, unreadable) = reported(c, to);
        assert!(
            unreadable.is_empty(),
            "host {to}: nothing stored unreadable"
        );
        for from in (0..n).filter(|from| *from != to) {
            let want: Vec<(MessageId, Option<String>)> = sent
                .iter()
                .filter(|(f, t, _, _)| (*f, *t) == (from, to))
                .map(|(_, _, id, text)| (*id, Some(text.clone())))
                .collect();
            let room = direct_room(c.id(from), c.id(to));
            let from_id = c.id(from);
            let got: Vec<(MessageId, Option<String>)> = c
                .room_history(to, room)
                .rows
                .into_iter()
                .filter(|r| r.author == from_id)
                .map(|r| (r.id, r.text))
                .collect();
            assert_eq!(
                got, want,
                "messages {from} -> {to}: once, in order, readable"
            );
        }
        for (id, times) in &received {
            assert!(
                sent.iter().any(|(_, t, s, _)| (*t, s) == (to, id)),
                "host {to} reported a message nobody sent it"
            );
            assert_eq!(*times, 1, "host {to} reported {id:?} once");
        }
        for (_, _, id, _) in sent.iter().filter(|s| s.1 == to) {
            if reported_once(id) {
                assert!(received.contains_key(id), "host {to} reported {id:?}");
            }
        }
        let status = c.status(to).node;
        for reason in never {
            assert_eq!(status.dropped(*reason), 0, "{reason:?} at {to}: {status:?}");
        }
    }
    for (from, _, id, _) in sent {
        assert_eq!(
            check.delivered.get(&(*from, *id)),
            Some(&1),
            "Delivered exactly once"
        );
    }
    for (from, id) in check.delivered.keys() {
        assert!(
            sent.iter().any(|(f, _, s, _)| (f, s) == (from, id)),
            "{from} heard a message delivered it never sent"
        );
    }
}

/// What an honest network never counts.
const HONEST: [DropReason; 3] = [
    DropReason::Forged,
    DropReason::EnvelopeRejected,
    DropReason::ControlMalformed,
];

/// `n` daemons, no warm-up (the first messages open the sessions), the
/// model's chatter of `count` rounds over `link`; everything is delivered
/// within five minutes, exactly once, in order, and no `Delivered` ever
/// came before the receiver's store held the message.
fn exactly_once_under_loss(seed: u64, n: usize, link: LinkConfig, count: usize) {
    let loss = link.loss;
    let mut c = Cluster::new(seed, n, link);
    let mut check = DeliveredCheck::new(n);
    let mut sent = Vec::new();
    chatter(&mut c, &mut check, &mut sent, count);
    assert!(
        check.run_until_delivered(&mut c, Duration::from_secs(300), &sent),
        "loss {loss} seed {seed}: not everything delivered"
    );
    // The last reports wait for the receivers' settling.
    check.run_for(&mut c, Duration::from_secs(1));
    check_exactly_once_in_order(&mut c, &check, &sent, |_| true, &HONEST);
}

/// Two daemons, the old model's sweep (loss 0, 10 %, 30 %; eight seeds
/// each; 24 rounds, 48 messages a run).
#[test]
fn two_daemons_exactly_once_in_order_under_loss() {
    for loss in [0.0, 0.1, 0.3] {
        for seed in 0..8 {
            exactly_once_under_loss(seed, 2, lan_link(loss), 24);
        }
    }
}

/// Three daemons, the old model's sweep (loss 0, 10 %, 30 %; five seeds
/// each; 12 rounds, 72 messages a run).
#[test]
fn three_daemons_exactly_once_in_order_under_loss() {
    for loss in [0.0, 0.1, 0.3] {
        for seed in 0..5 {
            exactly_once_under_loss(100 + seed, 3, lan_link(loss), 12);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Random seeds, loss rates and traffic shapes keep every invariant,
    /// over the model's links or over jittery, bandwidth-limited ones
    /// ([`LinkConfig::lossy`]).
    #[test]
    fn random_networks_keep_exactly_once(
        seed in 0u64..1_000_000,
        loss in 0.0f64..0.3,
        peers in 2usize..4,
        count in 1usize..10,
        jittery in any::<bool>(),
    ) {
        let link = if jittery { LinkConfig::lossy(loss) } else { lan_link(loss) };
        exactly_once_under_loss(seed, peers, link, count);
    }
}

/// A receiver that goes away (a closed lid: it neither receives nor runs
/// timers) after a first message gets the 40 written meanwhile promptly
/// once it is back: the sender reports it offline while it is away, hears
/// it again by its own probes and keep-alives (what the model's shell
/// hint stood for), and sends everything queued at once, exactly once, in
/// order.
#[test]
fn offline_peer_gets_queued_messages_when_back() {
    for seed in 200..204 {
        let mut c = Cluster::new(seed, 2, lan_link(0.1));
        let mut check = DeliveredCheck::new(2);
        let mut sent = Vec::new();
        check.send(&mut c, &mut sent, 0, 1, "before");
        assert!(check.run_until_delivered(&mut c, Duration::from_secs(30), &sent));
        c.net.set_up(&mut c.hosts, 1, false);
        for i in 0..40 {
            check.send(&mut c, &mut sent, 0, 1, &format!("offline {i}"));
        }
        check.run_for(&mut c, Duration::from_secs(60));
        let b = c.id(1);
        assert!(
            c.events(0)
                .any(|e| matches!(e, Event::PeerOffline { peer, .. } if *peer == b)),
            "seed {seed}: the sender noticed"
        );
        assert_eq!(check.delivered.len(), 1, "nothing else delivered meanwhile");
        for (_, _, id, _) in &sent[1..] {
            assert_eq!(c.delivery(0, 1, *id), Some(Delivery::Queued));
        }
        let offline_events = c.events(0).count();
        c.net.set_up(&mut c.hosts, 1, true);
        assert!(
            check.run_until_delivered(&mut c, Duration::from_secs(10), &sent),
            "seed {seed}: queued messages went out promptly"
        );
        assert!(
            c.events(0)
                .skip(offline_events)
                .any(|e| matches!(e, Event::PeerOnline { peer, .. } if *peer == b)),
            "seed {seed}: the sender saw it back"
        );
        check.run_for(&mut c, Duration::from_secs(1));
        check_exactly_once_in_order(&mut c, &check, &sent, |_| true, &HONEST);
    }
}

/// A receiver away from the very start (no session was ever opened) gets
/// the 20 messages queued for it within 30 s of coming back, by the
/// daemons' own handshake retries, retransmissions and probes alone.
#[test]
fn offline_peer_reached_without_a_hint_from_the_shell() {
    let mut c = Cluster::new(300, 2, lan_link(0.0));
    let mut check = DeliveredCheck::new(2);
    let mut sent = Vec::new();
    c.net.set_up(&mut c.hosts, 1, false);
    for i in 0..20 {
        check.send(&mut c, &mut sent, 0, 1, &format!("queued {i}"));
    }
    check.run_for(&mut c, Duration::from_secs(30));
    assert!(
        check.delivered.is_empty(),
        "nothing delivered to a host away"
    );
    c.net.set_up(&mut c.hosts, 1, true);
    assert!(check.run_until_delivered(&mut c, Duration::from_secs(30), &sent));
    check.run_for(&mut c, Duration::from_secs(1));
    check_exactly_once_in_order(&mut c, &check, &sent, |_| true, &HONEST);
}

/// A receiver killed (kill -9) in the middle of a burst, with messages it
/// acknowledged held only in its journal, then written to at once, before
/// any new session: it loses nothing it acknowledged and lies about
/// nothing. Every message is held once, with the text sent (it
/// starts again with the chains its store kept, so even the ones sealed
/// before the crash open: stronger than the model, which lost the chains
/// and could only store those unreadable), in order; every `Delivered`
/// came after the receiver's store held the message (checked after every
/// step, across the crash) and came once; nothing is reported twice.
/// Messages journaled before the crash but not yet settled may go
/// unreported (their report died with the process), never held twice.
#[test]
fn receiver_restart_loses_nothing_and_lies_about_nothing() {
    for seed in 700..704 {
        let mut c = Cluster::new(seed, 2, lan_link(0.1));
        let mut check = DeliveredCheck::new(2);
        let mut sent = Vec::new();
        chatter(&mut c, &mut check, &mut sent, 5);
        assert!(check.run_until_delivered(&mut c, Duration::from_secs(60), &sent));
        // Killed in the middle of a burst, at a moment its store holds
        // messages journaled (and acknowledged) but not settled: the
        // journal is all that keeps them.
        let before_crash = sent.len();
        for i in 0..5 {
            check.send(&mut c, &mut sent, 0, 1, &format!("in flight {i}"));
        }
        let unsettled = |_: &DeliveredCheck, c: &mut Cluster| !c.hosts[1].store().is_settled();
        assert!(
            check.run_until(&mut c, Duration::from_secs(1), unsettled),
            "seed {seed}: killed with messages only in the journal"
        );
        c.crash_and_restart(1);
        for i in 0..5 {
            check.send(&mut c, &mut sent, 0, 1, &format!("early {i}"));
        }
        assert!(
            check.run_until_delivered(&mut c, Duration::from_secs(60), &sent),
            "seed {seed}: every message across the crash delivered"
        );
        for i in 0..5 {
            check.send(&mut c, &mut sent, 0, 1, &format!("late {i}"));
            check.send(&mut c, &mut sent, 1, 0, &format!("reply {i}"));
        }
        assert!(check.run_until_delivered(&mut c, Duration::from_secs(60), &sent));
        check.run_for(&mut c, Duration::from_secs(1));
        let in_flight: Vec<MessageId> = sent[before_crash..before_crash + 5]
            .iter()
            .map(|s| s.2)
            .collect();
        check_exactly_once_in_order(&mut c, &check, &sent, |id| !in_flight.contains(id), &HONEST);
    }
}

/// A reconciliation started under a pairwise session that is replaced
/// before it ends (the peer restarted) ends with it, and the next one runs
/// under the new session's secret: nothing either side holds is forwarded.
/// Seed 701 is a run where the restarted receiver's probe handshakes are
/// lost, so the new session comes ten seconds later, by the sender's
/// silence re-handshake, after the sender opened a reconciliation under
/// the old one. (Before, the stale reconciliation, salted with the old
/// secret, went on against the peer's answers under the new one: every
/// message looked missing on both sides and the whole chat was forwarded
/// both ways, each side counting its own messages coming back as
/// rejected envelopes.)
#[test]
fn a_reconciliation_from_before_a_restart_forwards_nothing_held() {
    let mut c = Cluster::new(701, 2, lan_link(0.1));
    let mut check = DeliveredCheck::new(2);
    let mut sent = Vec::new();
    chatter(&mut c, &mut check, &mut sent, 5);
    assert!(check.run_until_delivered(&mut c, Duration::from_secs(60), &sent));
    for i in 0..5 {
        check.send(&mut c, &mut sent, 0, 1, &format!("in flight {i}"));
    }
    check.run_for(&mut c, Duration::from_millis(3));
    c.crash_and_restart(1);
    for i in 0..5 {
        check.send(&mut c, &mut sent, 0, 1, &format!("early {i}"));
    }
    assert!(check.run_until_delivered(&mut c, Duration::from_secs(60), &sent));
    check.run_for(&mut c, Duration::from_secs(3));
    assert!(
        c.hosts[0].node().stats().silence_rehandshakes > 0,
        "the run replaced the session after a silence"
    );
    for i in 0..2 {
        let status = c.status(i);
        assert!(status.sync.sessions_completed > 0, "{i} reconciled");
        assert_eq!(status.node.forwarded, 0, "{i} forwarded nothing held");
        assert_eq!(status.sync.ids_pushed, 0, "{i} found nothing missing");
    }
    check_exactly_once_in_order(&mut c, &check, &sent, |_| true, &HONEST);
}
