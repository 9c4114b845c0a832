//! What a group room's admin does: changes its members, starts its
//! epochs, names its successor, and tells the members.

use rand::RngExt;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::{Group, RoomFounding, RoomState};
use crate::proto::crypto::{ChainId, SecretKey, SenderChain};
use crate::proto::ids::{PeerId, RoomId};
use crate::proto::node::{
    Control, MAX_ROOM_MEMBERS, MAX_ROOM_NAME, MemberKey, Node, NodeError, NodeEvent,
};

/// How often a peer that is not in one of our rooms is told so again
/// ([`Node::tell_not_a_member`]): its reconciliations come every minute.
pub(in crate::proto::node) const TELL_NOT_MEMBER_EVERY: Duration = Duration::from_secs(30);

/// Most (room, peer) pairs remembered as told.
const MAX_TOLD_NOT_MEMBER: usize = 1024;

impl Node {
    /// Creates a group room named `name` with us as admin and invites
    /// `members` (contacts, not blocked). Returns its id.
    pub fn create_room(
        &mut self,
        now: Instant,
        name: &str,
        members: &[PeerId],
    ) -> Result<RoomId, NodeError> {
        self.advance(now);
        if name.len() > MAX_ROOM_NAME {
            return Err(NodeError::NameTooLong);
        }
        let mut all: BTreeSet<PeerId> = BTreeSet::from([self.me]);
        for peer in members.iter().filter(|p| **p != self.me) {
            self.check_contact(peer)?;
            all.insert(*peer);
        }
        if all.len() > MAX_ROOM_MEMBERS {
            return Err(NodeError::TooManyMembers);
        }
        let founding = RoomFounding::new(self.me, &mut self.rng);
        let room = founding.room_id();
        let group_key = SecretKey::random(&mut self.rng);
        self.start_group(
            room,
            Group {
                name: name.to_owned(),
                admin: self.me,
                epoch: 0,
                members: all,
                group_key,
                previous_key: None,
                joined: BTreeMap::new(),
                founding: Some(founding),
                successor: None,
                epoch_since: now,
                epoch_active: false,
            },
        );
        self.name_successor(&room);
        for peer in self.others(&room) {
            self.send_invite(now, room, peer);
            self.send_group_key(now, room, peer);
        }
        self.pump_events(now);
        Ok(room)
    }

    /// Adds contact `peer` to group `room` (admin only). Starts a new epoch.
    pub fn invite(&mut self, now: Instant, room: RoomId, peer: PeerId) -> Result<(), NodeError> {
        self.advance(now);
        let group = self.admin_group(&room)?;
        if group.founding.is_none() {
            return Err(NodeError::NoFounding);
        }
        if group.members.contains(&peer) {
            return Err(NodeError::AlreadyMember(peer));
        }
        if group.members.len() >= MAX_ROOM_MEMBERS {
            return Err(NodeError::TooManyMembers);
        }
        self.check_contact(&peer)?;
        self.check_member_keys(&room, None)?;
        let old = self.others(&room);
        self.next_epoch(now, &room, |members| {
            members.insert(peer);
        });
        for member in old {
            self.send_members(now, room, member);
        }
        self.send_invite(now, room, peer);
        self.rekey(now, room);
        self.events.push_back(NodeEvent::RoomChanged { room });
        self.pump_events(now);
        Ok(())
    }

    /// Removes `peer` from group `room` (admin only). Starts a new epoch
    /// whose keys `peer` never gets; it is told it was removed.
    pub fn remove_member(
        &mut self,
        now: Instant,
        room: RoomId,
        peer: PeerId,
    ) -> Result<(), NodeError> {
        self.advance(now);
        let group = self.admin_group(&room)?;
        if peer == self.me || !group.members.contains(&peer) {
            return Err(NodeError::NotMember(peer));
        }
        self.check_member_keys(&room, Some(peer))?;
        self.next_epoch(now, &room, |members| {
            members.remove(&peer);
        });
        for member in self.others(&room) {
            self.send_members(now, room, member);
        }
        self.send_members(now, room, peer);
        self.rekey(now, room);
        self.events.push_back(NodeEvent::RoomChanged { room });
        self.pump_events(now);
        Ok(())
    }

    /// The admin starts a new epoch: changes the members, bumps the epoch
    /// and draws the new multicast key (the old one stays for frames in
    /// flight, for `group_key_grace`).
    pub(super) fn next_epoch(
        &mut self,
        now: Instant,
        room: &RoomId,
        change: impl FnOnce(&mut BTreeSet<PeerId>),
    ) {
        let key = SecretKey::random(&mut self.rng);
        let until = now + self.config.group_key_grace;
        if let Some(group) = self.group_mut(room) {
            change(&mut group.members);
            let epoch = group.epoch + 1;
            group.advance_epoch(epoch, key, until);
            group.note_joined();
            group.epoch_since = now;
            group.epoch_active = false;
        }
        self.name_successor(room);
    }

    /// When the next epoch of a group room we run is due (see
    /// [`NodeConfig::group_rotate_after`]).
    pub(in crate::proto::node) fn group_rotation_due(&self) -> Option<Instant> {
        self.rooms
            .values()
            .filter_map(RoomState::group)
            .filter(|g| g.admin == self.me && g.epoch_active)
            .map(|g| g.epoch_since + self.config.group_rotate_after)
            .min()
    }

    /// As admin: starts the next epoch (same members) of every group room
    /// whose epoch is due, so every member's chain is replaced by a fresh
    /// one handed out under the current pairwise sessions. A room with a
    /// member whose key we do not know waits (its member list could not
    /// name it).
    pub(in crate::proto::node) fn rotate_group_epochs(&mut self, now: Instant) {
        let me = self.me;
        let after = self.config.group_rotate_after;
        let due: Vec<RoomId> = self
            .rooms
            .iter()
            .filter(|(_, state)| {
                state.group().is_some_and(|g| {
                    g.admin == me && g.epoch_active && g.epoch_since + after <= now
                })
            })
            .map(|(id, _)| *id)
            .collect();
        for room in due {
            if self.check_member_keys(&room, None).is_err() {
                if let Some(group) = self.group_mut(&room) {
                    // Tried again after another period.
                    group.epoch_since = now;
                }
                continue;
            }
            self.next_epoch(now, &room, |_| {});
            for member in self.others(&room) {
                self.send_members(now, room, member);
            }
            self.rekey(now, room);
            self.stats.chains_rotated += 1;
            self.events.push_back(NodeEvent::RoomChanged { room });
        }
    }

    /// A new chain for the group's current epoch, its key to every member,
    /// and the reliable layer's member list brought up to date.
    pub(super) fn rekey(&mut self, now: Instant, room: RoomId) {
        let Some(epoch) = self.group(&room).map(|g| g.epoch) else {
            return;
        };
        let chain = SenderChain::new(
            &mut self.rng,
            ChainId {
                room,
                epoch,
                sender: self.me,
            },
        );
        self.adopt_chain(&chain);
        if let Some(state) = self.rooms.get_mut(&room) {
            state.chain = chain;
            state.reserved = 0;
        }
        let others = self.others(&room);
        self.reliable.set_members(room, others.iter().copied());
        for peer in others {
            self.send_group_key(now, room, peer);
        }
    }

    /// As admin: keeps the successor we named while it is a member, else
    /// names one of the members who have been in the room longest, at
    /// random (so neither a key ground to sort first nor a late join puts
    /// anyone next in line).
    pub(in crate::proto::node) fn name_successor(&mut self, room: &RoomId) {
        let me = self.me;
        let Some(group) = self.group(room).filter(|g| g.admin == me) else {
            return;
        };
        if group
            .successor
            .is_some_and(|s| s != me && group.members.contains(&s))
        {
            return;
        }
        let others: Vec<(PeerId, u32)> = group
            .members
            .iter()
            .filter(|p| **p != me)
            .map(|p| (*p, group.joined.get(p).copied().unwrap_or(group.epoch)))
            .collect();
        let Some(earliest) = others.iter().map(|(_, e)| *e).min() else {
            return;
        };
        let longest: Vec<PeerId> = others
            .into_iter()
            .filter(|(_, e)| *e == earliest)
            .map(|(p, _)| p)
            .collect();
        let pick = longest[self.rng.random_range(0..longest.len())];
        if let Some(group) = self.group_mut(room) {
            group.successor = Some(pick);
        }
    }

    /// The group, if we run it.
    fn admin_group(&self, room: &RoomId) -> Result<&Group, NodeError> {
        let group = self.group(room).ok_or(NodeError::UnknownRoom(*room))?;
        if group.admin != self.me {
            return Err(NodeError::NotAdmin);
        }
        Ok(group)
    }

    /// Every member of `room` (but `leaving`) has a key we know, so the
    /// member list we hand out names them all (see [`Node::restore_room`]).
    fn check_member_keys(&self, room: &RoomId, leaving: Option<PeerId>) -> Result<(), NodeError> {
        let Some(group) = self.group(room) else {
            return Err(NodeError::UnknownRoom(*room));
        };
        match group
            .members
            .iter()
            .find(|p| **p != self.me && Some(**p) != leaving && !self.peers.contains_key(*p))
        {
            Some(unknown) => Err(NodeError::MemberKeyUnknown(*unknown)),
            None => Ok(()),
        }
    }

    fn member_list(&self, room: &RoomId) -> Vec<MemberKey> {
        let Some(group) = self.group(room) else {
            return Vec::new();
        };
        group
            .members
            .iter()
            .filter_map(|p| {
                if *p == self.me {
                    Some(MemberKey(self.identity.public().to_bytes()))
                } else {
                    self.peers.get(p).map(|s| MemberKey(s.public.to_bytes()))
                }
            })
            .collect()
    }

    fn send_invite(&mut self, now: Instant, room: RoomId, peer: PeerId) {
        let Some(group) = self.group(&room) else {
            return;
        };
        let Some(founding) = group.founding else {
            // Kept by an older version: no invitation it sends would be
            // accepted (`Node::invite` refuses before we get here).
            return;
        };
        let invite = Control::RoomInvite {
            room,
            name: group.name.clone(),
            epoch: group.epoch,
            admin: self.identity.public().to_bytes(),
            members: self.member_list(&room),
            group_key: *group.group_key.as_bytes(),
            founder: founding.founder,
            nonce: founding.nonce,
        };
        self.send_pairwise(now, peer, &invite);
        self.send_successor(now, room, peer);
    }

    /// As admin: tells `peer` who takes over `room` when we leave, right
    /// after the invite or member list of the epoch (same stream, so in
    /// order).
    pub(in crate::proto::node) fn send_successor(
        &mut self,
        now: Instant,
        room: RoomId,
        peer: PeerId,
    ) {
        let Some(group) = self.group(&room) else {
            return;
        };
        let Some(successor) = group.successor else {
            return;
        };
        let control = Control::RoomSuccessor {
            room,
            epoch: group.epoch,
            successor,
        };
        self.send_pairwise(now, peer, &control);
    }

    /// `peer` spoke of `room` (a reconciliation, a file request) but is
    /// not in it: removed while it was away, its member list was lost (we
    /// restarted before it came back), and it still shows the room. If we
    /// are the admin, we tell it it is out: a member list of the admin
    /// alone, which names nobody else and carries no key. At most once per
    /// peer and room every [`TELL_NOT_MEMBER_EVERY`].
    pub(in crate::proto::node) fn tell_not_a_member(
        &mut self,
        now: Instant,
        room: RoomId,
        peer: PeerId,
    ) {
        let Some(epoch) = self
            .group(&room)
            .filter(|g| g.admin == self.me && !g.members.contains(&peer))
            .map(|g| g.epoch)
        else {
            return;
        };
        if self
            .told_not_member
            .get(&(room, peer))
            .is_some_and(|at| now < *at + TELL_NOT_MEMBER_EVERY)
        {
            return;
        }
        if self.told_not_member.len() >= MAX_TOLD_NOT_MEMBER {
            self.told_not_member.clear();
        }
        self.told_not_member.insert((room, peer), now);
        let only_us = Control::RoomMembers {
            room,
            epoch,
            members: vec![MemberKey(self.identity.public().to_bytes())],
            group_key: [0; 32],
        };
        self.send_pairwise(now, peer, &only_us);
    }

    pub(super) fn send_members(&mut self, now: Instant, room: RoomId, peer: PeerId) {
        let Some((epoch, group_key)) = self.group(&room).map(|g| {
            // A removed member learns it is out, not the new epoch's key.
            let key = if g.members.contains(&peer) {
                *g.group_key.as_bytes()
            } else {
                [0; 32]
            };
            (g.epoch, key)
        }) else {
            return;
        };
        let members = Control::RoomMembers {
            room,
            epoch,
            members: self.member_list(&room),
            group_key,
        };
        self.send_pairwise(now, peer, &members);
        self.send_successor(now, room, peer);
    }
}
