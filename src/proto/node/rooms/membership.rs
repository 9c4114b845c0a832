//! A member's side of a group room: joining and restoring it, applying the
//! admin's member lists, members leaving, and leaving ourselves.

use std::collections::BTreeSet;
use std::time::Instant;

use super::{Group, RoomInfo, RoomKind, RoomState, Update, member_keys};
use crate::proto::crypto::{ChainId, PublicIdentity, SecretKey, SenderChain};
use crate::proto::ids::{PeerId, RoomId};
use crate::proto::node::{Control, DropReason, Node, NodeError, NodeEvent};
use crate::proto::reliable::RoomConfig;

impl Node {
    /// Leaves group `room`: tells every member and forgets the room and
    /// its keys.
    pub fn leave_room(&mut self, now: Instant, room: RoomId) -> Result<(), NodeError> {
        self.advance(now);
        if self.group(&room).is_none() {
            return Err(NodeError::UnknownRoom(room));
        }
        for member in self.others(&room) {
            self.send_pairwise(now, member, &Control::RoomLeave { room });
        }
        self.forget_room(room);
        self.pump_events(now);
        Ok(())
    }

    /// Takes back a group room from the shell's store at start-up, with
    /// the public keys the shell kept for its members (`keys`: keys of
    /// non-members and our own are ignored). Then [`Node::restore_chains`]
    /// and [`Node::resume`] bring back our chain and hand it out again.
    ///
    /// A member the node does not know becomes one of its peers, as a
    /// member learned from an invitation does, so it can be reached; no
    /// [`NodeEvent::ContactLearned`] is raised, since being in a room does
    /// not make it one of the user's contacts.
    ///
    /// A member whose key was not kept (a store written before member keys
    /// were, for a member who was not a contact) does not cost the room:
    /// it stays a member, but cannot be reached until its key is learned
    /// again (seen nearby, its own handshake, or the admin's next member
    /// list), and then gets our key at once. Until then, as admin we refuse
    /// to change the room ([`NodeError::MemberKeyUnknown`]), since the
    /// member list we would hand out could not name it.
    pub fn restore_room(
        &mut self,
        now: Instant,
        info: &RoomInfo,
        keys: &[PublicIdentity],
    ) -> Result<(), NodeError> {
        self.advance(now);
        let Some(admin) = info.admin else {
            // Direct rooms come back with their contact.
            return Ok(());
        };
        let members: BTreeSet<PeerId> = info.members.iter().copied().collect();
        if !members.contains(&self.me) {
            return Err(NodeError::NotMember(self.me));
        }
        for public in keys {
            if members.contains(&public.peer_id()) {
                self.add_contact(now, public.clone());
            }
        }
        let group_key = match &info.group_key {
            Some(key) => SecretKey::from_bytes(key.0),
            // Kept by an older version: multicast frames of this epoch will
            // not open until the admin's next epoch.
            None => SecretKey::random(&mut self.rng),
        };
        // A founding that does not give this id is ignored (as if an older
        // version had kept the room): the room stays, it takes no one new.
        let founding = info.founding.filter(|f| f.room_id() == info.id);
        let successor = info
            .successor
            .filter(|s| *s != admin && members.contains(s));
        let joined = info
            .joined
            .iter()
            .filter(|(peer, epoch)| members.contains(peer) && *epoch <= info.epoch)
            .copied()
            .collect();
        self.start_group(
            info.id,
            Group {
                name: info.name.clone(),
                admin,
                epoch: info.epoch,
                members,
                group_key,
                previous_key: None,
                joined,
                founding,
                successor,
                epoch_since: now,
                epoch_active: false,
            },
        );
        Ok(())
    }

    pub(in crate::proto::node) fn on_members(
        &mut self,
        now: Instant,
        from: PeerId,
        update: Update,
    ) -> Result<(), DropReason> {
        let (room, epoch) = (update.room, update.epoch);
        if let Some(invitation) = self.invitations.get(&room) {
            // The room changed while we had not answered yet.
            if invitation.from != from || epoch <= invitation.update.epoch {
                return Err(DropReason::Foreign);
            }
            let publics = member_keys(&update.members)?;
            if publics.iter().any(|p| p.peer_id() == self.me) {
                if let Some(invitation) = self.invitations.get_mut(&room) {
                    invitation.update = update;
                }
            } else {
                self.invitations.remove(&room);
                self.events.push_back(NodeEvent::RoomRemoved { room });
            }
            self.dirty_invitations.insert(room);
            return Ok(());
        }
        let current = self.group(&room).ok_or(DropReason::Foreign)?;
        let publics = member_keys(&update.members)?;
        let ids: BTreeSet<PeerId> = publics.iter().map(PublicIdentity::peer_id).collect();
        // The successor the admin named runs the room once the admin is
        // gone, also for a member that never heard the admin leave (its
        // leave went to some members only): a list from the successor
        // without the admin in it says so.
        let took_over = current.admin != from
            && current.successor == Some(from)
            && !ids.contains(&current.admin);
        if current.admin != from && !took_over {
            return Err(DropReason::Foreign);
        }
        if epoch <= current.epoch {
            return Err(DropReason::Foreign);
        }
        if !ids.contains(&self.me) {
            self.forget_room(room);
            self.events.push_back(NodeEvent::RoomRemoved { room });
            return Ok(());
        }
        if !ids.contains(&from) {
            // An admin leaves with a RoomLeave, not by dropping itself.
            return Err(DropReason::Foreign);
        }
        self.learn_contacts(now, publics);
        let until = now + self.config.group_key_grace;
        if let Some(group) = self.group_mut(&room) {
            if took_over {
                group.admin = from;
                group.successor = None;
            }
            group.epoch_since = now;
            group.epoch_active = false;
            group.advance_epoch(epoch, update.group_key, until);
            group.members = ids;
            group.note_joined();
            if group.successor.is_some_and(|s| !group.members.contains(&s)) {
                // Named for an earlier epoch; the admin names another.
                group.successor = None;
            }
        }
        self.rekey(now, room);
        self.apply_early_keys(now, room);
        self.events.push_back(NodeEvent::RoomChanged { room });
        Ok(())
    }

    pub(in crate::proto::node) fn on_leave(
        &mut self,
        now: Instant,
        from: PeerId,
        room: RoomId,
    ) -> Result<(), DropReason> {
        let me = self.me;
        let group = self.group_mut(&room).ok_or(DropReason::Foreign)?;
        if !group.members.remove(&from) {
            return Err(DropReason::Foreign);
        }
        group.note_joined();
        if group.admin == from {
            // The successor the admin named in its last member list, the
            // same for every member who had that list; only for an admin
            // that named nobody (an older version) the lowest remaining
            // peer id, which a member could have ground its key for.
            group.admin = group
                .successor
                .take()
                .filter(|s| group.members.contains(s))
                .or_else(|| group.members.first().copied())
                .unwrap_or(me);
        } else if group.successor == Some(from) {
            group.successor = None;
        }
        let now_admin = group.admin == me;
        if now_admin {
            self.next_epoch(now, &room, |_| {});
            for member in self.others(&room) {
                self.send_members(now, room, member);
            }
            self.rekey(now, room);
        } else {
            // Stop waiting for the leaver's acknowledgements at once; the
            // admin's new epoch follows.
            let others = self.others(&room);
            self.reliable.set_members(room, others);
        }
        self.events.push_back(NodeEvent::RoomChanged { room });
        Ok(())
    }

    /// The admin named `successor` for `room`'s epoch `epoch`.
    pub(in crate::proto::node) fn on_successor(
        &mut self,
        from: PeerId,
        room: RoomId,
        epoch: u32,
        successor: PeerId,
    ) -> Result<(), DropReason> {
        if let Some(invitation) = self.invitations.get_mut(&room) {
            if invitation.from != from || invitation.update.epoch != epoch || successor == from {
                return Err(DropReason::Foreign);
            }
            invitation.successor = Some(successor);
            return Ok(());
        }
        let group = self
            .group_mut(&room)
            .filter(|g| g.admin == from && g.epoch == epoch)
            .ok_or(DropReason::Foreign)?;
        if successor == from || !group.members.contains(&successor) {
            return Err(DropReason::Foreign);
        }
        if group.successor != Some(successor) {
            group.successor = Some(successor);
            // For the shell to keep.
            self.events.push_back(NodeEvent::RoomChanged { room });
        }
        Ok(())
    }

    pub(super) fn start_group(&mut self, room: RoomId, mut group: Group) {
        self.group_tags.touch();
        group.note_joined();
        let chain = SenderChain::new(
            &mut self.rng,
            ChainId {
                room,
                epoch: group.epoch,
                sender: self.me,
            },
        );
        let others: Vec<PeerId> = group
            .members
            .iter()
            .copied()
            .filter(|p| *p != self.me)
            .collect();
        self.reliable.join_room(
            room,
            RoomConfig {
                multicast: self.config.group_multicast,
            },
            others,
        );
        self.adopt_chain(&chain);
        self.rooms.insert(
            room,
            RoomState {
                kind: RoomKind::Group(Box::new(group)),
                chain,
                key_sent: true,
                reserved: 0,
                chain_since: self.now,
                chain_start: 0,
            },
        );
    }

    fn forget_room(&mut self, room: RoomId) {
        self.rooms.remove(&room);
        self.reliable.leave_room(room);
        self.receivers.retain(|chain, _| chain.room != room);
        self.held.retain(|h| h.envelope.header.room != room);
        self.early_keys.retain(|d| d.chain.room != room);
    }

    /// Makes every member we did not know a contact.
    pub(super) fn learn_contacts(&mut self, now: Instant, publics: Vec<PublicIdentity>) {
        for public in publics {
            let peer = public.peer_id();
            if peer != self.me && !self.peers.contains_key(&peer) {
                self.add_contact(now, public.clone());
                self.events.push_back(NodeEvent::ContactLearned { public });
            }
        }
    }
}
