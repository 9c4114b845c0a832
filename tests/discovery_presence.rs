//! Presence in virtual time: online from evidence, offline within the bound,
//! keep-alive schedule (adaptive, only to watched peers), goodbyes,
//! blocking. No sleeps: time is an `Instant` we move by hand.

use kith::discovery::presence::{KeepAlive, Presence, PresenceConfig, PresenceEvent};
use kith::proto::ids::PeerId;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const S: Duration = Duration::from_secs(1);

fn peer(n: u8) -> PeerId {
    PeerId([n; 32])
}

/// Presence watching peers 1 to 199 (contacts, say), as of `t0`.
fn watching(config: PresenceConfig, blocked: HashSet<PeerId>, t0: Instant) -> Presence {
    let mut presence = Presence::new(config, blocked);
    for n in 1..200 {
        presence.watch(t0, peer(n), true);
    }
    presence
}

fn addr() -> Vec<SocketAddr> {
    vec!["10.77.0.2:7777".parse().expect("literal socket address")]
}

fn events(presence: &mut Presence) -> Vec<PresenceEvent> {
    std::iter::from_fn(|| presence.poll_event()).collect()
}

fn keepalives(presence: &mut Presence) -> Vec<KeepAlive> {
    std::iter::from_fn(|| presence.poll_keepalive()).collect()
}

/// Runs timers the way the node does: jump to each `poll_timeout` up to `end`.
fn run_until(presence: &mut Presence, end: Instant) -> Vec<(Instant, PresenceEvent)> {
    let mut seen = Vec::new();
    while let Some(at) = presence.poll_timeout() {
        if at > end {
            break;
        }
        presence.handle_timeout(at);
        keepalives(presence);
        seen.extend(events(presence).into_iter().map(|e| (at, e)));
    }
    seen
}

#[test]
fn heard_is_online_and_silence_is_offline_at_exactly_three_intervals() {
    let t0 = Instant::now();
    let mut presence = watching(PresenceConfig::default(), HashSet::new(), t0);
    presence.heard(t0, peer(1));
    assert_eq!(
        events(&mut presence),
        vec![PresenceEvent::Online {
            peer: peer(1),
            addresses: vec![]
        }]
    );
    assert!(presence.is_online(&peer(1)));

    let seen = run_until(&mut presence, t0 + 60 * S);
    assert_eq!(
        seen,
        vec![(t0 + 15 * S, PresenceEvent::Offline { peer: peer(1) })]
    );
    assert!(!presence.is_online(&peer(1)));
    // Offline and never announced: forgotten, no more timers.
    assert_eq!(presence.poll_timeout(), None);
}

#[test]
fn keepalive_evidence_keeps_a_peer_online() {
    let t0 = Instant::now();
    let mut presence = watching(PresenceConfig::default(), HashSet::new(), t0);
    presence.found(t0, peer(1), addr());
    presence.heard(t0, peer(1));
    assert_eq!(events(&mut presence).len(), 1, "online once");
    for second in (5..=100).step_by(5) {
        let now = t0 + second * S;
        presence.heard(now, peer(1));
        assert_eq!(run_until(&mut presence, now), vec![]);
    }
    assert!(presence.is_online(&peer(1)));
    assert_eq!(presence.online_peers().collect::<Vec<_>>(), vec![peer(1)]);
}

#[test]
fn a_sighting_alone_is_not_online_but_probes_at_once_and_every_interval() {
    let t0 = Instant::now();
    let mut presence = watching(PresenceConfig::default(), HashSet::new(), t0);
    presence.found(t0, peer(1), addr());
    assert_eq!(events(&mut presence), vec![]);
    assert!(!presence.is_online(&peer(1)));

    let mut probes = Vec::new();
    while let Some(at) = presence.poll_timeout() {
        if at > t0 + 12 * S {
            break;
        }
        presence.handle_timeout(at);
        for keepalive in keepalives(&mut presence) {
            assert_eq!(keepalive.addresses, addr());
            probes.push(at);
        }
    }
    assert_eq!(probes, vec![t0, t0 + 5 * S, t0 + 10 * S]);
    assert_eq!(events(&mut presence), vec![]);

    // The reply to a probe is the evidence.
    presence.heard(t0 + 11 * S, peer(1));
    assert_eq!(
        events(&mut presence),
        vec![PresenceEvent::Online {
            peer: peer(1),
            addresses: addr()
        }]
    );
}

#[test]
fn configured_bound_is_honoured() {
    let config = PresenceConfig {
        keepalive_interval: Duration::from_millis(200),
        missed_keepalives: 2,
        ..PresenceConfig::default()
    };
    assert_eq!(config.offline_after(), Duration::from_millis(400));
    let t0 = Instant::now();
    let mut presence = watching(config, HashSet::new(), t0);
    presence.heard(t0, peer(1));
    events(&mut presence);
    let seen = run_until(&mut presence, t0 + 10 * S);
    assert_eq!(
        seen,
        vec![(
            t0 + Duration::from_millis(400),
            PresenceEvent::Offline { peer: peer(1) }
        )]
    );
}

#[test]
fn goodbye_after_silence_is_offline_at_once_but_not_while_talking() {
    let t0 = Instant::now();
    let mut presence = watching(PresenceConfig::default(), HashSet::new(), t0);
    for p in [peer(1), peer(2)] {
        presence.found(t0, p, addr());
        presence.heard(t0, p);
    }
    events(&mut presence);
    // Peer 2 keeps talking; peer 1 went quiet 6 s ago.
    presence.heard(t0 + 5 * S, peer(2));
    presence.lost(t0 + 6 * S, peer(1));
    presence.lost(t0 + 6 * S, peer(2));
    assert_eq!(
        events(&mut presence),
        vec![PresenceEvent::Offline { peer: peer(1) }]
    );
    assert!(presence.is_online(&peer(2)));
    // Peer 2 still goes offline within the bound once it stops.
    let seen = run_until(&mut presence, t0 + 60 * S);
    assert_eq!(
        seen,
        vec![(t0 + 20 * S, PresenceEvent::Offline { peer: peer(2) })]
    );
    assert_eq!(presence.poll_timeout(), None);
}

#[test]
fn authenticated_leaving_is_offline_at_once_even_while_talking() {
    let t0 = Instant::now();
    let mut presence = watching(PresenceConfig::default(), HashSet::new(), t0);
    // Peer 1 is announced, peer 2 is only heard (a `--peer` without mDNS).
    presence.found(t0, peer(1), addr());
    for p in [peer(1), peer(2)] {
        presence.heard(t0, p);
    }
    events(&mut presence);
    // Both talked 100 ms ago; both say (authenticated) they are stopping.
    let t1 = t0 + Duration::from_millis(100);
    presence.left(peer(1));
    presence.left(peer(2));
    assert_eq!(
        events(&mut presence),
        vec![
            PresenceEvent::Offline { peer: peer(1) },
            PresenceEvent::Offline { peer: peer(2) }
        ]
    );
    assert!(!presence.is_online(&peer(1)) && !presence.is_online(&peer(2)));
    // No second offline later; the announced one is still probed.
    let seen = run_until(&mut presence, t1 + 60 * S);
    assert!(seen.is_empty(), "{seen:?}");
    // It comes back: its next authenticated datagram is evidence again.
    presence.heard(t1 + 61 * S, peer(1));
    assert_eq!(
        events(&mut presence),
        vec![PresenceEvent::Online {
            peer: peer(1),
            addresses: addr()
        }]
    );
    // A leaving from a peer we never tracked changes nothing.
    presence.left(peer(9));
    assert!(events(&mut presence).is_empty());
}

#[test]
fn offline_peer_still_announced_is_probed_and_comes_back() {
    let t0 = Instant::now();
    let mut presence = watching(PresenceConfig::default(), HashSet::new(), t0);
    presence.found(t0, peer(1), addr());
    presence.heard(t0, peer(1));
    events(&mut presence);
    let seen = run_until(&mut presence, t0 + 30 * S);
    assert_eq!(
        seen,
        vec![(t0 + 15 * S, PresenceEvent::Offline { peer: peer(1) })]
    );
    // Still announced, so still probed: link back up, the probe is answered.
    assert!(presence.poll_timeout().is_some());
    presence.heard(t0 + 31 * S, peer(1));
    assert_eq!(
        events(&mut presence),
        vec![PresenceEvent::Online {
            peer: peer(1),
            addresses: addr()
        }]
    );
}

#[test]
fn blocked_peers_are_never_reported() {
    let t0 = Instant::now();
    let blocked: HashSet<PeerId> = [peer(9)].into();
    let mut presence = watching(PresenceConfig::default(), blocked, t0);
    presence.found(t0, peer(9), addr());
    presence.heard(t0, peer(9));
    assert_eq!(events(&mut presence), vec![]);
    assert_eq!(presence.poll_timeout(), None);
    assert!(!presence.is_online(&peer(9)));

    // Blocking an online peer reports it offline once, then never again.
    presence.heard(t0, peer(1));
    events(&mut presence);
    presence.block(peer(1));
    assert_eq!(
        events(&mut presence),
        vec![PresenceEvent::Offline { peer: peer(1) }]
    );
    presence.heard(t0 + S, peer(1));
    presence.found(t0 + S, peer(1), addr());
    assert_eq!(run_until(&mut presence, t0 + 60 * S), vec![]);
    assert_eq!(keepalives(&mut presence), vec![]);

    presence.unblock(peer(1));
    presence.heard(t0 + 61 * S, peer(1));
    assert_eq!(
        events(&mut presence),
        vec![PresenceEvent::Online {
            peer: peer(1),
            addresses: vec![]
        }]
    );
}

#[test]
fn lost_for_unknown_peer_and_empty_machine_are_harmless() {
    let t0 = Instant::now();
    let mut presence = watching(PresenceConfig::default(), HashSet::new(), t0);
    assert_eq!(presence.poll_timeout(), None);
    presence.lost(t0, peer(3));
    presence.handle_timeout(t0 + 100 * S);
    assert_eq!(events(&mut presence), vec![]);
    assert_eq!(keepalives(&mut presence), vec![]);
}

#[test]
fn unanswered_probes_back_off_to_minutes_and_all_probes_stay_under_the_cap() {
    let t0 = Instant::now();
    let config = PresenceConfig::default();
    let mut presence = watching(config, HashSet::new(), t0);
    presence.found(t0, peer(1), addr());
    // One peer nobody answers for: 3 probes at 5 s, then doubling to 300 s.
    let mut at = Vec::new();
    while let Some(next) = presence.poll_timeout() {
        if next > t0 + 3600 * S {
            break;
        }
        presence.handle_timeout(next);
        if !keepalives(&mut presence).is_empty() {
            at.push(next.duration_since(t0).as_secs());
        }
    }
    assert_eq!(&at[..11], &[0, 5, 10, 15, 25, 45, 85, 165, 325, 625, 925]);
    assert_eq!(at.len(), 19, "then every 300 s: {at:?}");
    // Evidence resets it: online, then keep-alives every interval.
    let back = t0 + 3601 * S;
    presence.heard(back, peer(1));
    events(&mut presence);
    assert_eq!(presence.poll_timeout(), Some(back + 5 * S));

    // 100 sighted peers at once: at most 20 probes in any second.
    let mut presence = watching(config, HashSet::new(), t0);
    for n in 10..110 {
        presence.found(t0, peer(n), addr());
    }
    let mut sent: Vec<Instant> = Vec::new();
    while let Some(next) = presence.poll_timeout() {
        if next > t0 + 60 * S {
            break;
        }
        presence.handle_timeout(next);
        sent.extend(keepalives(&mut presence).iter().map(|_| next));
    }
    for (i, first) in sent.iter().enumerate() {
        let in_window = sent[i..].iter().take_while(|t| **t < *first + S).count();
        assert!(in_window <= 20, "{in_window} probes in a second");
    }
    // Everybody still got probed, in the first 5 s.
    assert!(sent.iter().filter(|t| **t < t0 + 5 * S).count() >= 100);
}

#[test]
fn nearby_peers_are_never_probed_nor_reported_until_watched() {
    let t0 = Instant::now();
    let mut presence = Presence::new(PresenceConfig::default(), HashSet::new());
    // Announced and even heard from (it keeps us alive: we are its
    // contact), but not ours: nothing goes to it, it is neither online nor
    // offline.
    presence.found(t0, peer(1), addr());
    presence.heard(t0, peer(1));
    assert_eq!(events(&mut presence), vec![]);
    assert_eq!(presence.poll_timeout(), None);
    presence.handle_timeout(t0 + 3600 * S);
    assert_eq!(keepalives(&mut presence), vec![]);
    assert!(!presence.is_online(&peer(1)) && !presence.is_watched(&peer(1)));

    // It becomes a contact: probed at once, online at the answer.
    let t1 = t0 + 3601 * S;
    presence.watch(t1, peer(1), true);
    assert_eq!(presence.poll_timeout(), Some(t1));
    presence.handle_timeout(t1);
    assert_eq!(keepalives(&mut presence).len(), 1);
    presence.heard(t1, peer(1));
    assert_eq!(
        events(&mut presence),
        vec![PresenceEvent::Online {
            peer: peer(1),
            addresses: addr()
        }]
    );

    // No longer ours (contact removed, left our last room): offline once,
    // then nearby again, never probed.
    presence.watch(t1 + S, peer(1), false);
    assert_eq!(
        events(&mut presence),
        vec![PresenceEvent::Offline { peer: peer(1) }]
    );
    assert_eq!(run_until(&mut presence, t1 + 3600 * S), vec![]);
    assert_eq!(presence.poll_timeout(), None);
}

#[test]
fn idle_keepalives_back_off_to_a_minute_and_traffic_brings_them_back() {
    let t0 = Instant::now();
    let config = PresenceConfig::default();
    let mut presence = watching(config, HashSet::new(), t0);
    presence.found(t0, peer(1), addr());
    presence.heard(t0, peer(1));
    events(&mut presence);
    // Every keep-alive answered at once, nothing else exchanged.
    let mut at = Vec::new();
    while let Some(next) = presence.poll_timeout() {
        if next > t0 + 200 * S {
            break;
        }
        presence.handle_timeout(next);
        if !keepalives(&mut presence).is_empty() {
            at.push(next.duration_since(t0).as_secs());
            if next <= t0 + 135 * S {
                presence.heard(next, peer(1));
            }
        }
    }
    // 5, 10, 20, 40, then every 60 s; then unanswered: again 5 s later.
    assert_eq!(at, vec![5, 15, 35, 75, 135, 195, 200]);
    // Silent since 135 s while idle at 60 s: offline after 60 + 2 × 5 s.
    assert_eq!(
        run_until(&mut presence, t0 + 300 * S),
        vec![(t0 + 205 * S, PresenceEvent::Offline { peer: peer(1) })]
    );

    // Idle at a minute again; then a message: keep-alives every 5 s, and
    // silence is noticed within the short bound.
    let t1 = t0 + 1000 * S;
    presence.heard(t1, peer(1));
    events(&mut presence);
    for n in 0..5 {
        let due = presence.poll_timeout().expect("a keep-alive is due");
        presence.handle_timeout(due);
        keepalives(&mut presence);
        presence.heard(due, peer(1));
        assert!(n < 4 || due >= t1 + 135 * S);
    }
    let t2 = presence.poll_timeout().expect("a keep-alive is due") - 30 * S;
    presence.activity(t2, peer(1));
    assert_eq!(presence.poll_timeout(), Some(t2 + 5 * S));
    assert_eq!(
        run_until(&mut presence, t2 + 100 * S),
        vec![(t2 + 15 * S, PresenceEvent::Offline { peer: peer(1) })]
    );
}
