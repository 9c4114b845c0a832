//! Display names between peers: our signed profile record goes to every
//! peer we hold a pairwise session with (contacts and room members) when
//! it changes and whenever a session is installed (either side may have
//! restarted and lost what was in flight), as a [`Control::Profile`] on
//! the pairwise stream. A record received is checked against the sending
//! peer's key ([`SignedProfile::verify`]) and must be newer than the last
//! one kept for that peer; forgeries (`DropReason::ProfileForged`) and
//! older records (`DropReason::ProfileStale`) are dropped and counted, and
//! an identical copy of the one kept is ignored. The shell stores what is
//! reported ([`NodeEvent::ProfileReceived`]) and gives it back at start
//! ([`Node::restore_profile`], [`Node::remember_profile`]).
//!
//! A record travels only from its owner: one about another peer is
//! refused as forged, so a member cannot hand around someone else's name
//! (an old one included).
//!
//! Each peer's records are taken at most [`PROFILE_BURST`] at once and
//! then one per [`PROFILE_INTERVAL`]: a record over that budget waits
//! (only the newest one, per peer) instead of costing a signature check
//! and a store write at once, so a peer cannot make us spend more on its
//! names than on a trickle, while its last name still arrives.
//!
//! A stranger that opened a session with us (see `strangers.rs`) is not
//! told our name until the shell shares it ([`Node::share_profile`]: the
//! user accepted it, or wrote to it) or it shares a group room with us, so
//! nobody learns a name by opening a handshake.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::token_bucket::TokenBucket;
use super::{Control, DropReason, Node, NodeError, NodeEvent, Receipt};
use crate::proto::ids::PeerId;
use crate::proto::profile::{ProfileError, SignedProfile};

/// Records of one peer taken at once before the budget applies.
pub const PROFILE_BURST: u32 = 4;

/// Then one record of a peer per this long.
pub const PROFILE_INTERVAL: Duration = Duration::from_secs(2);

/// What the node knows of profiles.
#[derive(Default)]
pub(super) struct Profiles {
    /// Our own record, sent to every peer we hold a session with.
    own: Option<SignedProfile>,
    /// The newest sequence number kept per peer.
    seen: BTreeMap<PeerId, u64>,
    /// Strangers met that our profile is withheld from.
    withheld: BTreeSet<PeerId>,
    /// Each sending peer's budget of records.
    budgets: BTreeMap<PeerId, TokenBucket>,
    /// The newest record over a peer's budget, and when it is looked at.
    waiting: BTreeMap<PeerId, (Instant, Vec<u8>)>,
}

impl Profiles {
    /// When a waiting record is due.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.waiting.values().map(|(at, _)| *at).min()
    }
}

impl Node {
    /// Signs `name` (checked by [`crate::proto::profile::check_name`]) as
    /// our new profile, numbered after the wall clock and always above the
    /// previous one, and sends it to every peer we hold a session with
    /// (the others get it when a session is installed). Returns the record
    /// for the shell to store.
    pub fn set_profile(&mut self, now: Instant, name: &str) -> Result<SignedProfile, NodeError> {
        self.advance(now);
        let previous = self.profiles.own.as_ref().map_or(0, |p| p.profile.seq);
        let seq = self.wall_millis(now).max(previous.saturating_add(1));
        let record = SignedProfile::sign(&self.identity, seq, name)?;
        self.profiles.own = Some(record.clone());
        let peers: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(id, state)| state.session.is_some() && !self.blocked.contains(id))
            .map(|(id, _)| *id)
            .collect();
        for peer in peers {
            self.send_profile(now, peer);
        }
        self.pump_events(now);
        Ok(record)
    }

    /// Our profile as the store kept it, at start: sent from now on. A
    /// record that is not ours (or does not check out) is refused.
    pub fn restore_profile(&mut self, record: &[u8]) -> Result<(), NodeError> {
        let record = SignedProfile::verify(record, &self.identity.public())
            .map_err(|_| NodeError::BadRecord)?;
        self.profiles.own = Some(record);
        Ok(())
    }

    /// Our profile, if we have one.
    pub fn profile(&self) -> Option<&SignedProfile> {
        self.profiles.own.as_ref()
    }

    /// A peer's newest profile number as the store kept it, at start: only
    /// newer records are taken from it.
    pub fn remember_profile(&mut self, peer: PeerId, seq: u64) {
        let seen = self.profiles.seen.entry(peer).or_insert(seq);
        *seen = (*seen).max(seq);
    }

    /// Tells `peer` our profile from now on, if it was withheld (a
    /// stranger met): the user accepted it or wrote to it. Cheap to call
    /// for anyone else (nothing is sent again).
    pub fn share_profile(&mut self, now: Instant, peer: PeerId) {
        if self.profiles.withheld.remove(&peer) && self.has_session(&peer) {
            self.send_profile(now, peer);
            self.pump_events(now);
        }
    }

    /// A stranger completed a handshake with us: our name waits for
    /// [`Node::share_profile`] (or a group room shared with it).
    pub(super) fn withhold_profile(&mut self, peer: PeerId) {
        self.profiles.withheld.insert(peer);
    }

    /// Queues our profile (if any) for `peer` on the pairwise stream.
    /// Backpressure only delays it: the next installed session sends it.
    pub(super) fn send_profile(&mut self, now: Instant, peer: PeerId) {
        let Some(record) = &self.profiles.own else {
            return;
        };
        if self.blocked.contains(&peer) {
            return;
        }
        if self.profiles.withheld.contains(&peer)
            && !self
                .rooms
                .values()
                .any(|r| r.group().is_some_and(|g| g.members.contains(&peer)))
        {
            return;
        }
        let control = Control::Profile {
            record: record.bytes.clone(),
        };
        if self.queue_pairwise(now, peer, &control).is_err() {
            self.stats.control_not_queued += 1;
        }
    }

    /// A profile record from `receipt.from` on our pairwise stream (the
    /// stream is confirmed already: a record is not a message). Over the
    /// peer's budget it waits, replacing one that waited before it (a
    /// later record on the peer's ordered stream is its newer one).
    pub(super) fn on_profile(&mut self, now: Instant, receipt: Receipt, record: &[u8]) {
        let from = receipt.from;
        let budget = self.profiles.budgets.entry(from).or_insert_with(|| {
            TokenBucket::new(
                now,
                1.0 / PROFILE_INTERVAL.as_secs_f64(),
                f64::from(PROFILE_BURST),
            )
        });
        if self.profiles.waiting.contains_key(&from) || !budget.take(now) {
            let due = self
                .profiles
                .waiting
                .get(&from)
                .map_or(now + PROFILE_INTERVAL, |(at, _)| *at);
            self.profiles.waiting.insert(from, (due, record.to_vec()));
            return;
        }
        self.take_profile(from, record);
    }

    /// Looks at the waiting records that are due, as the budgets allow.
    pub(super) fn release_profiles(&mut self, now: Instant) {
        let due: Vec<PeerId> = self
            .profiles
            .waiting
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in due {
            let ready = self
                .profiles
                .budgets
                .get_mut(&peer)
                .is_none_or(|budget| budget.take(now));
            if !ready {
                if let Some(waiting) = self.profiles.waiting.get_mut(&peer) {
                    waiting.0 = now + PROFILE_INTERVAL;
                }
                continue;
            }
            if let Some((_, record)) = self.profiles.waiting.remove(&peer) {
                self.take_profile(peer, &record);
            }
        }
    }

    /// Checks a record from `from` and keeps it if it is its newest.
    fn take_profile(&mut self, from: PeerId, record: &[u8]) {
        let Some(public) = self.public_of(&from) else {
            self.stats.count(DropReason::UnknownPeer);
            return;
        };
        let record = match SignedProfile::verify(record, &public) {
            Ok(record) => record,
            Err(ProfileError::Forged) => {
                self.stats.count(DropReason::ProfileForged);
                return;
            }
            Err(_) => {
                self.stats.count(DropReason::ControlMalformed);
                return;
            }
        };
        let seq = record.profile.seq;
        match self.profiles.seen.get(&from) {
            // The record we keep, sent again (a new session): nothing new.
            Some(&kept) if kept == seq => return,
            Some(&kept) if kept > seq => {
                self.stats.count(DropReason::ProfileStale);
                return;
            }
            _ => {}
        }
        self.profiles.seen.insert(from, seq);
        self.events.push_back(NodeEvent::ProfileReceived {
            peer: from,
            seq,
            name: record.profile.name,
            record: record.bytes,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use crate::proto::crypto::Identity;
    use crate::proto::ids::{PeerId, RoomId};
    use crate::proto::node::{
        Control, DropReason, Node, NodeConfig, NodeError, NodeEvent, direct_room,
    };
    use crate::proto::profile::{NameError, SignedProfile};
    use crate::proto::reliable::Destination;

    fn identity(seed: u64) -> Identity {
        Identity::generate(&mut StdRng::seed_from_u64(seed))
    }

    /// Nodes that are each other's contacts, with instant delivery; every
    /// received message is confirmed stored at once, and every other event
    /// is kept per node.
    struct Mesh {
        nodes: Vec<Node>,
        index: HashMap<PeerId, usize>,
        events: Vec<Vec<NodeEvent>>,
        /// Texts each node stored: (author, text).
        texts: Vec<Vec<(PeerId, Vec<u8>)>>,
        now: Instant,
    }

    impl Mesh {
        fn new(count: u64) -> Self {
            Self::knowing(count, |_, _| true)
        }

        /// Node `i` has node `j` as a contact where `knows(i, j)`.
        fn knowing(count: u64, knows: impl Fn(u64, u64) -> bool) -> Self {
            let now = Instant::now();
            let config = NodeConfig {
                auto_accept_invites: true,
                wall_clock_millis: 1_700_000_000_000,
                ..NodeConfig::default()
            };
            let mut nodes: Vec<Node> = (0..count)
                .map(|i| {
                    Node::new(
                        identity(i),
                        config.clone(),
                        StdRng::seed_from_u64(100 + i),
                        now,
                    )
                })
                .collect();
            for (i, node) in nodes.iter_mut().enumerate() {
                for j in 0..count {
                    if j as usize != i && knows(i as u64, j) {
                        let public = identity(j).public();
                        let id = public.peer_id();
                        node.add_contact(now, public);
                        node.set_reachable(now, id, true);
                    }
                }
            }
            let index = nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.peer_id(), i))
                .collect();
            Mesh {
                events: vec![Vec::new(); nodes.len()],
                texts: vec![Vec::new(); nodes.len()],
                nodes,
                index,
                now,
            }
        }

        fn id(&self, i: usize) -> PeerId {
            self.nodes[i].peer_id()
        }

        /// Delivers everything until quiet, then runs timers for `duration`.
        fn run(&mut self, duration: Duration) {
            let until = self.now + duration;
            loop {
                let mut moved = true;
                while moved {
                    moved = false;
                    for i in 0..self.nodes.len() {
                        while let Some(t) = self.nodes[i].poll_transmit() {
                            moved = true;
                            if let Destination::Peer(peer) = t.to
                                && let Some(&j) = self.index.get(&peer)
                            {
                                let _ = self.nodes[j].handle_datagram(self.now, &t.bytes);
                            }
                        }
                        while let Some(event) = self.nodes[i].poll_event() {
                            moved = true;
                            match event {
                                NodeEvent::MessageReceived {
                                    receipt,
                                    from,
                                    body,
                                    ..
                                } => {
                                    self.texts[i].push((from, body));
                                    self.nodes[i].confirm_stored(self.now, receipt);
                                }
                                NodeEvent::Undecryptable { receipt, .. } => {
                                    self.nodes[i].confirm_stored(self.now, receipt);
                                }
                                other => self.events[i].push(other),
                            }
                        }
                    }
                }
                let next = self.nodes.iter().filter_map(Node::poll_timeout).min();
                match next {
                    Some(t) if t <= until => {
                        self.now = self.now.max(t);
                        for node in &mut self.nodes {
                            node.handle_timeout(self.now);
                        }
                    }
                    _ => {
                        self.now = until;
                        return;
                    }
                }
            }
        }

        /// The names node `i` was told of, per peer, in order.
        fn names(&self, i: usize) -> Vec<(PeerId, String)> {
            self.events[i]
                .iter()
                .filter_map(|e| match e {
                    NodeEvent::ProfileReceived { peer, name, .. } => Some((*peer, name.clone())),
                    _ => None,
                })
                .collect()
        }
    }

    /// A room of three run by node 0, everyone joined, sessions up.
    fn room_of_three() -> (Mesh, RoomId) {
        let mut mesh = Mesh::new(3);
        let now = mesh.now;
        let members = [mesh.id(1), mesh.id(2)];
        let room = mesh.nodes[0]
            .create_room(now, "kitchen", &members)
            .expect("a room");
        mesh.run(Duration::from_secs(1));
        for i in 1..3 {
            assert!(mesh.nodes[i].room(&room).is_some(), "node {i} joined");
        }
        (mesh, room)
    }

    #[test]
    fn a_rename_reaches_every_member_once_and_the_newest_wins() {
        let (mut mesh, _room) = room_of_three();
        let now = mesh.now;
        let alice = mesh.id(2);
        mesh.nodes[2]
            .set_profile(now, "Alice")
            .expect("a good name");
        mesh.run(Duration::from_millis(500));
        for i in 0..2 {
            assert_eq!(mesh.names(i), vec![(alice, "Alice".to_owned())], "node {i}");
        }
        let now = mesh.now + Duration::from_millis(5);
        mesh.nodes[2]
            .set_profile(now, "Alice B.")
            .expect("a good name");
        mesh.run(Duration::from_millis(500));
        for i in 0..2 {
            assert_eq!(
                mesh.names(i).last(),
                Some(&(alice, "Alice B.".to_owned())),
                "node {i}"
            );
            assert_eq!(mesh.names(i).len(), 2);
            assert_eq!(mesh.nodes[i].stats().dropped(DropReason::ProfileStale), 0);
            assert_eq!(mesh.nodes[i].stats().dropped(DropReason::ProfileForged), 0);
        }
    }

    #[test]
    fn a_new_session_sends_the_profile_and_a_copy_changes_nothing() {
        let mut mesh = Mesh::new(2);
        let now = mesh.now;
        // Named before any session exists: it goes out with the first one.
        mesh.nodes[0].set_profile(now, "Bob").expect("a good name");
        let to = mesh.id(1);
        mesh.nodes[0]
            .send_direct_message(now, to, "hello")
            .expect("sent");
        mesh.run(Duration::from_millis(500));
        assert_eq!(mesh.names(1), vec![(mesh.id(0), "Bob".to_owned())]);
        // The same record again (a re-handshake sends it again): ignored,
        // not counted as a replay.
        let record = mesh.nodes[0].profile().expect("named").bytes.clone();
        let now = mesh.now;
        let peer = mesh.id(1);
        mesh.nodes[0]
            .queue_pairwise(now, peer, &Control::Profile { record })
            .expect("queued");
        mesh.run(Duration::from_millis(500));
        assert_eq!(mesh.names(1).len(), 1);
        assert_eq!(mesh.nodes[1].stats().dropped(DropReason::ProfileStale), 0);
    }

    #[test]
    fn an_older_record_replayed_later_is_dropped_and_counted() {
        let (mut mesh, _room) = room_of_three();
        let now = mesh.now;
        let old = mesh.nodes[2]
            .set_profile(now, "Alice")
            .expect("a good name");
        mesh.run(Duration::from_millis(100));
        let now = mesh.now + Duration::from_millis(5);
        mesh.nodes[2]
            .set_profile(now, "Mallory's victim")
            .expect("good");
        mesh.run(Duration::from_millis(100));
        // Node 2 itself (or anyone replaying its traffic into a new stream
        // position) hands the old record out again.
        let now = mesh.now;
        let to = mesh.id(0);
        mesh.nodes[2]
            .queue_pairwise(now, to, &Control::Profile { record: old.bytes })
            .expect("queued");
        mesh.run(Duration::from_millis(500));
        assert_eq!(mesh.nodes[0].stats().dropped(DropReason::ProfileStale), 1);
        assert_eq!(
            mesh.names(0).last().map(|(_, n)| n.as_str()),
            Some("Mallory's victim")
        );
        assert_eq!(mesh.names(0).len(), 2);
        // After a restart the store's number still holds the line.
        let mut fresh = Node::new(
            identity(0),
            NodeConfig::default(),
            StdRng::seed_from_u64(7),
            now,
        );
        fresh.add_contact(now, identity(2).public());
        fresh.remember_profile(mesh.id(2), u64::MAX);
        assert_eq!(fresh.profiles.seen[&mesh.id(2)], u64::MAX);
    }

    #[test]
    fn a_record_signed_by_another_key_is_dropped_and_counted() {
        let (mut mesh, _room) = room_of_three();
        let now = mesh.now;
        let (alice, mallory, me) = (mesh.id(2), mesh.id(1), mesh.id(0));
        // Mallory (node 1) sends Alice's name signed with its own key but
        // naming Alice's key, and a record of its own naming Alice.
        let forged = SignedProfile::sign(&identity(1), u64::MAX, "Alice").expect("good");
        let mut claiming = forged.bytes.clone();
        claiming[1..33].copy_from_slice(&identity(2).public().to_bytes());
        for record in [claiming, forged.bytes.clone()] {
            let now = mesh.now;
            mesh.nodes[1]
                .queue_pairwise(now, me, &Control::Profile { record })
                .expect("queued");
        }
        // And one of Alice's real records, relayed by Mallory: not its own.
        let real = mesh.nodes[2].set_profile(now, "Alice").expect("good");
        mesh.nodes[1]
            .queue_pairwise(now, me, &Control::Profile { record: real.bytes })
            .expect("queued");
        mesh.run(Duration::from_millis(500));
        let names = mesh.names(0);
        // Mallory's own record names Mallory, under Mallory's key: that one
        // is authentic (Mallory may call itself "Alice"; labels tell the two
        // apart). Nothing else from Mallory got through.
        assert_eq!(
            names,
            vec![(mallory, "Alice".to_owned()), (alice, "Alice".to_owned())]
        );
        assert_eq!(mesh.nodes[0].stats().dropped(DropReason::ProfileForged), 2);
        // The stream went on: a message after the forgeries arrives.
        let now = mesh.now;
        mesh.nodes[1]
            .send_direct_message(now, me, "still here")
            .expect("sent");
        mesh.run(Duration::from_millis(500));
        assert_eq!(
            mesh.texts[0],
            vec![(mallory, b"still here".to_vec())],
            "the stream goes on after the forgeries"
        );
        assert_eq!(
            mesh.nodes[0].stats().dropped(DropReason::ControlMalformed),
            0
        );
    }

    #[test]
    fn a_burst_of_renames_costs_a_bounded_amount_and_the_last_still_arrives() {
        let (mut mesh, _room) = room_of_three();
        let alice = mesh.id(2);
        for n in 0..12u64 {
            let now = mesh.now + Duration::from_millis(n);
            mesh.nodes[2]
                .set_profile(now, &format!("Alice {n}"))
                .expect("a good name");
        }
        mesh.run(Duration::from_millis(100));
        let burst = usize::try_from(super::PROFILE_BURST).expect("small");
        assert_eq!(mesh.names(0).len(), burst, "the burst, then a wait");
        mesh.run(super::PROFILE_INTERVAL * 2);
        assert_eq!(mesh.names(0).len(), burst + 1, "only the newest waited");
        assert_eq!(
            mesh.names(0).last(),
            Some(&(alice, "Alice 11".to_owned())),
            "the last name arrives"
        );
        assert_eq!(mesh.nodes[0].stats().dropped(DropReason::ProfileStale), 0);
    }

    #[test]
    fn a_stranger_learns_our_name_only_once_shared() {
        // Node 1 knows node 0; node 0 has never heard of node 1.
        let mut mesh = Mesh::knowing(2, |i, _| i == 1);
        let now = mesh.now;
        mesh.nodes[0]
            .set_profile(now, "Alice")
            .expect("a good name");
        mesh.nodes[1]
            .set_profile(now, "Stranger")
            .expect("a good name");
        let (alice, stranger) = (mesh.id(0), mesh.id(1));
        mesh.nodes[1]
            .send_direct_message(now, alice, "hello, who are you?")
            .expect("sent");
        mesh.run(Duration::from_millis(500));
        assert_eq!(mesh.texts[0].len(), 1, "the stranger's message arrived");
        // The stranger told us its name; we told it nothing.
        assert_eq!(mesh.names(0), vec![(stranger, "Stranger".to_owned())]);
        assert!(mesh.names(1).is_empty());
        // Once the user accepts it (or writes to it), it is told.
        let now = mesh.now;
        mesh.nodes[0].share_profile(now, stranger);
        mesh.run(Duration::from_millis(500));
        assert_eq!(mesh.names(1), vec![(alice, "Alice".to_owned())]);
        // Sharing again sends nothing more.
        let now = mesh.now;
        mesh.nodes[0].share_profile(now, stranger);
        mesh.run(Duration::from_millis(500));
        assert_eq!(mesh.names(1).len(), 1);
    }

    #[test]
    fn bad_names_are_refused_before_anything_is_sent() {
        let mut mesh = Mesh::new(2);
        let now = mesh.now;
        for bad in ["", "  ", "Sam\u{202e}", "a\nb", "x\u{200b}y"] {
            assert!(
                matches!(
                    mesh.nodes[0].set_profile(now, bad),
                    Err(NodeError::Name(NameError::Empty | NameError::Forbidden(_)))
                ),
                "{bad:?}"
            );
        }
        assert!(mesh.nodes[0].profile().is_none());
        // Oversized records never decode.
        let huge = Control::Profile {
            record: vec![1; crate::proto::profile::MAX_RECORD + 1],
        };
        assert!(Control::decode(&huge.encode()).is_err());
        // Someone else's record is refused as our own.
        let theirs = SignedProfile::sign(&identity(5), 1, "Eve").expect("good");
        assert_eq!(
            mesh.nodes[0].restore_profile(&theirs.bytes),
            Err(NodeError::BadRecord)
        );
        let direct = direct_room(mesh.id(0), mesh.id(1));
        assert_ne!(direct, RoomId([0; 32]));
    }
}
