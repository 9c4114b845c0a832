//! Room membership under chaos, on the real core: the admin removes and
//! invites members back while daemons are killed and restarted, disks
//! fill and free, and the network splits and heals. Afterwards the room
//! must not be split: every member agrees with the admin on who is in it
//! and in which epoch, and everything each member says then reaches every
//! other member once, readable.

use std::collections::BTreeSet;
use std::time::Duration;

use kith::daemon::{Request, RoomSummary};
use kith::proto::ids::{PeerId, RoomId};
use kith::proto::sim::LinkConfig;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::sim_support::{Cluster, RoomSent};

const HOSTS: usize = 4;

/// Host `i`'s view of `room`: its members and epoch, if it is in it (an
/// invitation not answered yet is not being in it).
fn view(c: &mut Cluster, i: usize, room: &RoomId) -> Option<(BTreeSet<PeerId>, u32)> {
    c.room(i, room)
        .filter(|r: &RoomSummary| !r.invited)
        .map(|r| (r.members.into_iter().collect(), r.epoch))
}

/// Whether every host the admin counts as a member sees exactly the
/// admin's member list and epoch, and no other host thinks it is in.
fn agreed(c: &mut Cluster, room: &RoomId) -> bool {
    let Some((members, epoch)) = view(c, 0, room) else {
        return false;
    };
    (1..HOSTS).all(|i| {
        let id = c.id(i);
        let theirs = view(c, i, room);
        if members.contains(&id) {
            theirs == Some((members.clone(), epoch))
        } else {
            theirs.is_none()
        }
    })
}

/// Accepts every invitation host `i` holds for `room`.
fn accept_if_invited(c: &mut Cluster, i: usize, room: RoomId) {
    if c.room(i, &room).is_some_and(|r| r.invited) {
        c.ask(i, Request::AnswerInvite { room, accept: true });
    }
}

#[test]
fn a_room_is_never_split_by_removals_crashes_and_partitions() {
    for seed in 0..30u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut c = Cluster::new(5300 + seed, HOSTS, LinkConfig::lossy(0.05));
        let room = c.create_room(0, "membership", &[1, 2, 3]);
        assert!(c.run_until(Duration::from_secs(30), |c| c.all_in(
            &[0, 1, 2, 3],
            &room,
            4
        )));
        let mut full = [false; HOSTS];
        let mut log = Vec::new();
        for step in 0..50 {
            let op = rng.random_range(0..10);
            match op {
                0 => {
                    let i = rng.random_range(0..HOSTS);
                    full[i] = !full[i];
                    c.set_full_disk(i, full[i]);
                    log.push(format!("{step}: disk {i} full {}", full[i]));
                }
                1 => {
                    let i = rng.random_range(0..HOSTS);
                    c.crash_and_restart(i);
                    c.set_full_disk(i, full[i]);
                    log.push(format!("{step}: crash {i}"));
                }
                2 => {
                    let alone = rng.random_range(0..HOSTS);
                    let others: Vec<usize> = (0..HOSTS).filter(|j| *j != alone).collect();
                    c.net.partition(&[&[alone], &others]);
                    log.push(format!("{step}: partition {alone} alone"));
                }
                3 => {
                    c.net.heal();
                    log.push(format!("{step}: heal"));
                }
                4 | 5 => {
                    let peer = rng.random_range(1..HOSTS);
                    let id = c.id(peer);
                    let answer = c.ask_now(0, Request::RemoveMember { room, peer: id });
                    log.push(format!("{step}: remove {peer}: {answer:?}"));
                }
                6 | 7 => {
                    let peer = rng.random_range(1..HOSTS);
                    let id = c.id(peer);
                    let answer = c.ask_now(0, Request::Invite { room, peer: id });
                    log.push(format!("{step}: invite {peer}: {answer:?}"));
                }
                _ => {
                    let from = rng.random_range(0..HOSTS);
                    let answer = c.ask_now(
                        from,
                        Request::Send {
                            to: kith::daemon::Target::Room(room),
                            text: format!("{from} at step {step}"),
                        },
                    );
                    log.push(format!(
                        "{step}: {from} says: {}",
                        answer.is_some_and(|a| a.is_ok())
                    ));
                }
            }
            for i in 1..HOSTS {
                accept_if_invited(&mut c, i, room);
            }
            c.run_for(Duration::from_millis(rng.random_range(10..3_000)));
        }
        for i in 0..HOSTS {
            c.set_full_disk(i, false);
        }
        c.net.heal();
        let settled = |c: &mut Cluster| {
            for i in 1..HOSTS {
                accept_if_invited(c, i, room);
            }
            agreed(c, &room)
        };
        let ok = c.run_until(Duration::from_secs(600), settled);
        if !ok {
            eprintln!("seed {seed}:\n{}", log.join("\n"));
            for i in 0..HOSTS {
                eprintln!("view of {i}: {:?}", c.room(i, &room));
            }
        }
        assert!(ok, "seed {seed}: every member agrees with the admin");
        let (members, _) = view(&mut c, 0, &room).expect("the admin is in");
        let members: Vec<usize> = (0..HOSTS).filter(|i| members.contains(&c.id(*i))).collect();
        let mut sent = RoomSent::new();
        for &i in &members {
            let text = format!("after, from {i}");
            let request = Request::Send {
                to: kith::daemon::Target::Room(room),
                text,
            };
            match c.ask_now(i, request) {
                Some(Ok(kith::daemon::Reply::Sent(id))) => sent.push((i, id)),
                other => {
                    eprintln!("seed {seed}:\n{}", log.join("\n"));
                    let st = c.status(i);
                    panic!(
                        "seed {seed}: {i} cannot send: {other:?}; store errors {}",
                        st.store_errors
                    );
                }
            }
        }
        assert!(
            c.run_until(Duration::from_secs(120), |c| c
                .room_converged(room, &members, &sent)),
            "seed {seed}: the members {members:?} hear each other"
        );
        for &i in &members {
            let page = c.room_history(i, room);
            for (author, id) in &sent {
                let copies = page.rows.iter().filter(|r| r.id == *id).count();
                assert_eq!(copies, 1, "seed {seed}: {author}'s message once at {i}");
                let readable = page.rows.iter().any(|r| r.id == *id && r.text.is_some());
                assert!(readable, "seed {seed}: {author}'s message readable at {i}");
            }
        }
    }
}

/// A member removed while it was away learns it is out when it comes
/// back, also when the admin restarted meanwhile (the member list for it
/// was lost then): its reconciliation with the admin gets an answer that
/// it is not in the room (before, it showed the room for good, and what
/// it wrote there went nowhere). The answer carries no key and names no
/// other member.
#[test]
fn a_member_removed_while_away_learns_it_across_an_admin_restart() {
    for seed in 0..4 {
        let mut c = Cluster::new(900 + seed, HOSTS, LinkConfig::lossy(0.05));
        let room = c.create_room(0, "r", &[1, 2, 3]);
        assert!(c.run_until(Duration::from_secs(30), |c| c.all_in(
            &[0, 1, 2, 3],
            &room,
            4
        )));
        c.net.partition(&[&[0, 1, 3], &[2]]);
        let away = c.id(2);
        c.ask(0, Request::RemoveMember { room, peer: away });
        c.run_for(Duration::from_secs(5));
        for _ in 0..=seed % 2 {
            c.crash_and_restart(0);
            c.run_for(Duration::from_secs(5));
        }
        c.run_for(Duration::from_secs(60 * (seed / 2)));
        c.net.heal();
        assert!(
            c.run_until(Duration::from_secs(300), |c| agreed(c, &room)),
            "seed {seed}: the removed member learns it is out"
        );
        assert!(c.room(2, &room).is_none(), "seed {seed}");
        let still = c.all_in(&[0, 1, 3], &room, 3);
        assert!(still, "seed {seed}: the others are still in the room");
    }
}
