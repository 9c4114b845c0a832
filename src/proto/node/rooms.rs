//! Group rooms: rooms of more than two, run by an admin.
//!
//! - **Membership has one author.** The admin (the creator, or after the
//!   admin leaves, the remaining member with the lowest peer id) is the only
//!   member whose invites and member lists are accepted, so every member
//!   applies the same changes in the same order (they travel on the admin's
//!   ordered pairwise stream to each member).
//! - **Every change starts an epoch.** Each member then seals with a fresh
//!   sender chain whose key goes, pairwise, only to the members of the new
//!   epoch: a removed member cannot read anything sent after the change, and
//!   a new member cannot read anything sent before it joined.
//! - **Keys travel pairwise, envelopes in the room.** Sender keys, invites and
//!   member lists go over the pairwise (direct-room) streams; envelopes go
//!   over the room's own stream. A key may therefore overtake the member list
//!   that makes its sender a member: such keys wait in a bounded buffer
//!   (`early_keys`), and envelopes wait for their key as in direct rooms.

use rand::RngExt;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::chains::{Dirty, origin_digest};
use super::{
    Control, DropReason, Followed, Group, MAX_ROOM_MEMBERS, MAX_ROOM_NAME, MemberKey, Node,
    NodeError, NodeEvent, RoomKind, RoomState, SentMessage, control_from_distribution,
};
use crate::proto::crypto::SenderKeyDistribution;
use crate::proto::crypto::{ChainId, PublicIdentity, ReceiverChain, SecretKey, SenderChain};
use crate::proto::ids::{PeerId, RoomId};
use crate::proto::reliable::RoomConfig;

/// Group keys held at most while their room or epoch is not known yet.
const MAX_EARLY_KEYS: usize = 256;

/// Who created a group room and the nonce drawn then: the room's id is
/// derived from them, so every member can check an invitation's room id
/// and nobody can pick one (such as the id of a direct chat of others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomFounding {
    pub founder: PeerId,
    pub nonce: [u8; 32],
}

impl RoomFounding {
    /// Draws a new room's founding.
    pub(super) fn new<R: rand::Rng + ?Sized>(founder: PeerId, rng: &mut R) -> Self {
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        RoomFounding { founder, nonce }
    }

    /// The room id it gives: `blake3::derive_key("kith group room id v1",
    /// founder ‖ nonce)`, a different domain than direct rooms'.
    pub fn room_id(&self) -> RoomId {
        let mut hasher = blake3::Hasher::new_derive_key("kith group room id v1");
        hasher.update(&self.founder.0);
        hasher.update(&self.nonce);
        RoomId(*hasher.finalize().as_bytes())
    }

    /// The 64 bytes the shell stores: founder, then nonce.
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.founder.0);
        out[32..].copy_from_slice(&self.nonce);
        out
    }

    /// Reads what [`RoomFounding::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8; 64]) -> Self {
        let mut founder = [0u8; 32];
        let mut nonce = [0u8; 32];
        founder.copy_from_slice(&bytes[..32]);
        nonce.copy_from_slice(&bytes[32..]);
        RoomFounding {
            founder: PeerId(founder),
            nonce,
        }
    }
}

/// A room as the shell shows and stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    pub id: RoomId,
    /// The group's name; empty for a direct room.
    pub name: String,
    /// For a direct room, the other peer.
    pub direct: Option<PeerId>,
    /// For a group room, the member who runs it.
    pub admin: Option<PeerId>,
    /// Current epoch (0 for direct rooms).
    pub epoch: u32,
    /// Every member, us included, in peer id order.
    pub members: Vec<PeerId>,
    /// For a group room, the current epoch's key for multicast frames
    /// (the shell keeps it in the store, sealed).
    pub group_key: Option<GroupKey>,
    /// For a group room, what its id derives from; `None` for a room kept
    /// by a version that did not store it (it cannot invite anyone new).
    pub founding: Option<RoomFounding>,
    /// For a group room, the epoch from which each member is in it (as
    /// `members`); empty for a direct room. Restoring a room, a member not
    /// listed starts at the current epoch.
    pub joined: Vec<(PeerId, u32)>,
    /// For a group room, who takes over when the admin leaves, as the
    /// admin named it; `None` if it named nobody (the lowest remaining
    /// peer id takes over then).
    pub successor: Option<PeerId>,
}

/// A group room's multicast frame key. `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupKey(pub [u8; 32]);

impl std::fmt::Debug for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupKey(..)")
    }
}

/// Invitations held at once, waiting for the user's answer.
const MAX_INVITATIONS: usize = 64;

/// An invite the user has not answered.
pub(super) struct Invitation {
    from: PeerId,
    name: String,
    update: Update,
    founding: RoomFounding,
    /// Who the admin named to take over, if it did since inviting us.
    successor: Option<PeerId>,
}

/// A member list from the admin: an invite's or a new epoch's.
pub(super) struct Update {
    pub(super) room: RoomId,
    pub(super) epoch: u32,
    pub(super) members: Vec<MemberKey>,
    pub(super) group_key: SecretKey,
}

/// What [`Node::take_invitation_updates`] hands the shell to keep: the
/// invitation as it arrived and the members' keys that came with it.
#[derive(serde::Serialize, serde::Deserialize)]
struct InvitationRecord {
    version: u8,
    #[serde(with = "serde_bytes")]
    invite: Vec<u8>,
    keys: Vec<RecordedKey>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct RecordedKey {
    #[serde(with = "serde_bytes")]
    sender: [u8; 32],
    epoch: u32,
    start_seq: u64,
    #[serde(with = "serde_bytes")]
    chain_key: [u8; 32],
}

const INVITATION_RECORD_VERSION: u8 = 1;

impl InvitationRecord {
    fn encode(&self) -> Vec<u8> {
        // Plain data with fixed-size fields: encoding cannot fail.
        rmp_serde::to_vec(self).unwrap_or_default()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let record: Self = crate::proto::wire::decode_exact(bytes).ok()?;
        (record.version == INVITATION_RECORD_VERSION && record.keys.len() <= MAX_EARLY_KEYS)
            .then_some(record)
    }
}

impl Update {
    pub(super) fn new(
        room: RoomId,
        epoch: u32,
        members: Vec<MemberKey>,
        group_key: [u8; 32],
    ) -> Self {
        Update {
            room,
            epoch,
            members,
            group_key: SecretKey::from_bytes(group_key),
        }
    }
}

impl Node {
    /// Every room we are in: direct rooms with contacts and group rooms.
    pub fn rooms(&self) -> Vec<RoomInfo> {
        let mut rooms: Vec<RoomInfo> = self.rooms.keys().filter_map(|id| self.room(id)).collect();
        rooms.sort_by_key(|r| r.id);
        rooms
    }

    /// One room, if we are in it.
    pub fn room(&self, room: &RoomId) -> Option<RoomInfo> {
        let state = self.rooms.get(room)?;
        Some(match &state.kind {
            RoomKind::Direct { peer } => {
                let mut members = vec![self.me, *peer];
                members.sort();
                RoomInfo {
                    id: *room,
                    name: String::new(),
                    direct: Some(*peer),
                    admin: None,
                    epoch: 0,
                    members,
                    group_key: None,
                    founding: None,
                    joined: Vec::new(),
                    successor: None,
                }
            }
            RoomKind::Group(group) => RoomInfo {
                id: *room,
                name: group.name.clone(),
                direct: None,
                admin: Some(group.admin),
                epoch: group.epoch,
                members: group.members.iter().copied().collect(),
                group_key: Some(GroupKey(*group.group_key.as_bytes())),
                founding: group.founding,
                joined: group.joined.iter().map(|(p, e)| (*p, *e)).collect(),
                successor: group.successor,
            },
        })
    }

    /// Whether we hold the key to read `sender`'s messages of `epoch` in
    /// `room` (what a removed member must never have for later epochs).
    pub fn can_read(&self, room: &RoomId, epoch: u32, sender: &PeerId) -> bool {
        self.receivers.contains_key(&ChainId {
            room: *room,
            epoch,
            sender: *sender,
        })
    }

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

    /// Sends `text` to every member of group `room`.
    pub fn send_room_message(
        &mut self,
        now: Instant,
        room: RoomId,
        text: &str,
    ) -> Result<SentMessage, NodeError> {
        self.prepare_room(now, room, text)?;
        let wall = self.wall_millis(now);
        self.seal_and_send(now, room, wall, text)
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

    // --- control messages from the pairwise streams ---------------------------

    pub(super) fn on_invite(
        &mut self,
        now: Instant,
        from: PeerId,
        name: String,
        admin: [u8; 32],
        update: Update,
        founding: RoomFounding,
    ) -> Result<(), DropReason> {
        let (room, epoch) = (update.room, update.epoch);
        if crate::proto::crypto::peer_id_of(&admin) != from {
            // Only the admin invites, and the admin is whoever sent it.
            return Err(DropReason::Foreign);
        }
        if founding.room_id() != room {
            // A room id the inviter chose: it could alias a direct chat of
            // ours, or another room.
            return Err(DropReason::Foreign);
        }
        if self.rooms.contains_key(&room) {
            // A second invite to a room we are in can only be the admin's
            // newer member list (we were removed and added back unseen).
            let is_update = self
                .group(&room)
                .is_some_and(|g| g.admin == from && epoch > g.epoch);
            return if is_update {
                self.on_members(now, from, update)
            } else {
                Err(DropReason::Foreign)
            };
        }
        if name.len() > MAX_ROOM_NAME {
            return Err(DropReason::ControlMalformed);
        }
        let publics = member_keys(&update.members)?;
        let ids: BTreeSet<PeerId> = publics.iter().map(PublicIdentity::peer_id).collect();
        if !ids.contains(&self.me) || !ids.contains(&from) {
            return Err(DropReason::Foreign);
        }
        if !self.config.auto_accept_invites {
            // Held until the user accepts or declines; a newer invite (the
            // admin's next epoch) replaces it.
            if self.invitations.len() >= MAX_INVITATIONS && !self.invitations.contains_key(&room) {
                return Err(DropReason::HeldOverflow);
            }
            if self
                .invitations
                .get(&room)
                .is_some_and(|i| i.update.epoch >= epoch)
            {
                return Err(DropReason::Foreign);
            }
            self.events.push_back(NodeEvent::RoomInvited {
                room,
                name: name.clone(),
                from,
            });
            self.invitations.insert(
                room,
                Invitation {
                    from,
                    name,
                    update,
                    founding,
                    successor: None,
                },
            );
            self.dirty_invitations.insert(room);
            return Ok(());
        }
        self.join(now, from, name, update, founding, None);
        Ok(())
    }

    /// Joins a room we were invited to.
    fn join(
        &mut self,
        now: Instant,
        from: PeerId,
        name: String,
        update: Update,
        founding: RoomFounding,
        successor: Option<PeerId>,
    ) {
        let room = update.room;
        let Ok(publics) = member_keys(&update.members) else {
            return;
        };
        let ids: BTreeSet<PeerId> = publics.iter().map(PublicIdentity::peer_id).collect();
        self.learn_contacts(now, publics);
        self.start_group(
            room,
            Group {
                name,
                admin: from,
                epoch: update.epoch,
                members: ids,
                group_key: update.group_key,
                previous_key: None,
                joined: BTreeMap::new(),
                founding: Some(founding),
                successor,
                epoch_since: now,
                epoch_active: false,
            },
        );
        for peer in self.others(&room) {
            self.send_group_key(now, room, peer);
        }
        self.apply_early_keys(now, room);
        self.events.push_back(NodeEvent::RoomJoined { room });
    }

    /// Rooms we were invited to and have not answered, as (room, name, who
    /// invited us).
    pub fn invitations(&self) -> Vec<(RoomId, String, PeerId)> {
        let mut out: Vec<_> = self
            .invitations
            .iter()
            .map(|(room, i)| (*room, i.name.clone(), i.from))
            .collect();
        out.sort();
        out
    }

    /// Invitations that arrived, changed or were answered since the last
    /// call, for the shell to keep: `(room, Some(record))` to store (the
    /// record holds the room's group key: store it sealed), `(room, None)`
    /// to forget. Unanswered invitations so survive a restart
    /// ([`Node::restore_invitation`]).
    pub fn take_invitation_updates(&mut self) -> Vec<(RoomId, Option<Vec<u8>>)> {
        let dirty = std::mem::take(&mut self.dirty_invitations);
        dirty
            .into_iter()
            .map(|room| {
                let record = self.invitations.get(&room).map(|invitation| {
                    let invite = Control::RoomInvite {
                        room,
                        name: invitation.name.clone(),
                        epoch: invitation.update.epoch,
                        admin: invitation.from.0,
                        members: invitation.update.members.clone(),
                        group_key: *invitation.update.group_key.as_bytes(),
                        founder: invitation.founding.founder,
                        nonce: invitation.founding.nonce,
                    }
                    .encode();
                    // Members' keys that came with the invitation: they
                    // are not sent again, and without them we could not
                    // read the room after accepting.
                    let keys = self
                        .early_keys
                        .iter()
                        .filter(|d| d.chain.room == room)
                        .map(|d| RecordedKey {
                            sender: d.chain.sender.0,
                            epoch: d.chain.epoch,
                            start_seq: d.start_seq,
                            chain_key: *d.chain_key.as_bytes(),
                        })
                        .collect();
                    InvitationRecord {
                        version: INVITATION_RECORD_VERSION,
                        invite,
                        keys,
                    }
                    .encode()
                });
                (room, record)
            })
            .collect()
    }

    /// Brings back an unanswered invitation the shell kept (a record from
    /// [`Node::take_invitation_updates`]), at start. It is checked like one
    /// that arrives; no event is raised (it was reported when it came).
    pub fn restore_invitation(&mut self, record: &[u8]) -> Result<RoomId, NodeError> {
        let record = InvitationRecord::decode(record).ok_or(NodeError::BadRecord)?;
        let Ok(Control::RoomInvite {
            room,
            name,
            epoch,
            admin,
            members,
            group_key,
            founder,
            nonce,
        }) = Control::decode(&record.invite)
        else {
            return Err(NodeError::BadRecord);
        };
        let founding = RoomFounding { founder, nonce };
        if founding.room_id() != room {
            return Err(NodeError::BadRecord);
        }
        let from = PeerId(admin);
        let ids: BTreeSet<PeerId> = member_keys(&members)
            .map_err(|_| NodeError::BadRecord)?
            .iter()
            .map(PublicIdentity::peer_id)
            .collect();
        if !ids.contains(&self.me) || !ids.contains(&from) || name.len() > MAX_ROOM_NAME {
            return Err(NodeError::BadRecord);
        }
        if self.rooms.contains_key(&room) {
            // Joined meanwhile (the answer's write was lost): nothing to ask.
            return Ok(room);
        }
        let update = Update::new(room, epoch, members, group_key);
        self.invitations.insert(
            room,
            Invitation {
                from,
                name,
                update,
                founding,
                successor: None,
            },
        );
        for key in record
            .keys
            .into_iter()
            .filter(|k| ids.contains(&PeerId(k.sender)))
        {
            let distribution = SenderKeyDistribution {
                chain: ChainId {
                    room,
                    epoch: key.epoch,
                    sender: PeerId(key.sender),
                },
                start_seq: key.start_seq,
                chain_key: SecretKey::from_bytes(key.chain_key),
            };
            self.hold_early_key(distribution);
        }
        Ok(room)
    }

    /// Removes an invitation being answered (the store forgets it too).
    fn take_invitation(&mut self, room: RoomId) -> Result<Invitation, NodeError> {
        let invitation = self
            .invitations
            .remove(&room)
            .ok_or(NodeError::UnknownRoom(room))?;
        self.dirty_invitations.insert(room);
        Ok(invitation)
    }

    /// Accepts an invitation: we join the room and hand our key to its
    /// members.
    pub fn accept_invite(&mut self, now: Instant, room: RoomId) -> Result<(), NodeError> {
        self.advance(now);
        let invitation = self.take_invitation(room)?;
        self.join(
            now,
            invitation.from,
            invitation.name,
            invitation.update,
            invitation.founding,
            invitation.successor,
        );
        self.pump_events(now);
        Ok(())
    }

    /// Declines an invitation: the admin is told we leave, so it removes
    /// us; the other members never hear from us.
    pub fn decline_invite(&mut self, now: Instant, room: RoomId) -> Result<(), NodeError> {
        self.advance(now);
        let invitation = self.take_invitation(room)?;
        self.early_keys.retain(|d| d.chain.room != room);
        self.send_pairwise(now, invitation.from, &Control::RoomLeave { room });
        self.pump_events(now);
        Ok(())
    }

    pub(super) fn on_members(
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

    pub(super) fn on_leave(
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

    /// A group sender key from `distribution.chain.sender`'s pairwise
    /// stream.
    pub(super) fn on_group_key(&mut self, now: Instant, distribution: SenderKeyDistribution) {
        let chain = distribution.chain;
        match self.group(&chain.room) {
            Some(group) if chain.epoch < group.joined.get(&self.me).copied().unwrap_or(0) => {
                // A key of an epoch before we were in the room: what was
                // said then is not ours to read.
                self.stats.count(DropReason::Foreign);
            }
            Some(group) if chain.epoch <= group.epoch => {
                if group.members.contains(&chain.sender) {
                    self.install_key(now, &distribution);
                } else {
                    self.stats.count(DropReason::Foreign);
                }
            }
            _ => {
                // Ahead of the invite or member list that explains it.
                if self.invitations.contains_key(&chain.room) {
                    // Kept with the invitation, across restarts.
                    self.dirty_invitations.insert(chain.room);
                }
                if self.hold_early_key(distribution) {
                    self.stats.count(DropReason::HeldOverflow);
                }
            }
        }
    }

    /// Keeps a key that came before the member list explaining it (the
    /// newest for its chain), within [`MAX_EARLY_KEYS`]; `true` when the
    /// oldest held key had to go.
    fn hold_early_key(&mut self, distribution: SenderKeyDistribution) -> bool {
        self.early_keys.retain(|d| d.chain != distribution.chain);
        let evicted = self.early_keys.len() >= MAX_EARLY_KEYS;
        if evicted {
            self.early_keys.pop_front();
        }
        self.early_keys.push_back(distribution);
        evicted
    }

    /// Starts following a chain and opens what waited for it.
    pub(super) fn install_key(&mut self, now: Instant, distribution: &SenderKeyDistribution) {
        let digest = origin_digest(distribution);
        // A repeat of the distribution we follow, or a later position of
        // the same chain (the sender re-sent its key, and the key overtook
        // messages sealed before it on their own stream): our state stays,
        // so those messages still open. Nor does an earlier key of the
        // chain we follow (the sender restarted and handed out its origin
        // again) ever move us back: messages past it would then be too far
        // ahead to open. That one is recognised by ratcheting it forward to
        // our position once; its digest is kept then (and stored), so its
        // next repeats cost nothing.
        let (repeat, ancestor) = match self.receivers.get(&distribution.chain) {
            Some(f) if f.origin == Some(digest) || f.chain.continues_to(distribution) => {
                (true, false)
            }
            Some(f) => {
                let ancestor = f
                    .chain
                    .descends_from(distribution, super::chains::MAX_ANCESTRY_STEPS);
                if !ancestor && distribution.start_seq < f.chain.next_seq() {
                    self.stats.chains_restarted += 1;
                }
                (ancestor, ancestor)
            }
            None => (false, false),
        };
        if ancestor
            && let Some(followed) = self.receivers.get_mut(&distribution.chain)
            && (followed.origin.is_none() || distribution.start_seq <= followed.start)
        {
            followed.origin = Some(digest);
            self.dirty_chains
                .insert((distribution.chain, Dirty::Receiving));
        }
        if !repeat {
            // The newest distribution wins: it came in order on the sender's
            // authenticated stream, so everything sealed after it uses
            // positions at or after `start_seq`. (A repeat of the one we
            // follow, sent again after the sender restarted, changes
            // nothing: our position and replay window stay.)
            self.receivers.insert(
                distribution.chain,
                Followed {
                    chain: ReceiverChain::from_distribution(distribution),
                    start: distribution.start_seq,
                    origin: Some(digest),
                },
            );
            self.dirty_chains
                .insert((distribution.chain, Dirty::Receiving));
            self.follow_origins
                .insert(distribution.chain, distribution.clone());
        }
        let from_start = self
            .receivers
            .get(&distribution.chain)
            .is_some_and(|f| distribution.start_seq <= f.start);
        if repeat && from_start && !self.follow_origins.contains_key(&distribution.chain) {
            // After our restart the origins of others' chains are gone;
            // the repeat brings it back, for forwarded envelopes.
            self.follow_origins
                .insert(distribution.chain, distribution.clone());
        }
        self.release_held(now, distribution.chain);
        // Also on a repeat: what was stored unreadable of this chain (too
        // far ahead when it came) may open now.
        self.events.push_back(NodeEvent::ChainKnown {
            chain: distribution.chain,
        });
    }

    // --- helpers ---------------------------------------------------------------

    /// The admin starts a new epoch: changes the members, bumps the epoch
    /// and draws the new multicast key (the old one stays for frames in
    /// flight, for `group_key_grace`).
    fn next_epoch(
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
    pub(super) fn group_rotation_due(&self) -> Option<Instant> {
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
    pub(super) fn rotate_group_epochs(&mut self, now: Instant) {
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

    /// As admin: keeps the successor we named while it is a member, else
    /// names one of the members who have been in the room longest, at
    /// random (so neither a key ground to sort first nor a late join puts
    /// anyone next in line).
    pub(super) fn name_successor(&mut self, room: &RoomId) {
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

    /// The admin named `successor` for `room`'s epoch `epoch`.
    pub(super) fn on_successor(
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

    /// The first epoch of `room` whose history `peer` may have: the later
    /// of its join epoch and ours (0 for a direct room). Reconciliation,
    /// forwarding and chain origins stay at or after it.
    pub fn shared_epoch(&self, room: &RoomId, peer: &PeerId) -> u32 {
        let Some(group) = self.group(room) else {
            return 0;
        };
        let of = |p: &PeerId| group.joined.get(p).copied().unwrap_or(group.epoch);
        of(&self.me).max(of(peer))
    }

    /// The epoch we joined `room` in (0 for a direct room).
    pub(super) fn joined_epoch(&self, room: &RoomId) -> u32 {
        self.group(room)
            .and_then(|g| g.joined.get(&self.me).copied())
            .unwrap_or(0)
    }

    pub(super) fn group(&self, room: &RoomId) -> Option<&Group> {
        self.rooms.get(room).and_then(RoomState::group)
    }

    pub(super) fn group_mut(&mut self, room: &RoomId) -> Option<&mut Group> {
        // Whatever changes may be its keys.
        self.group_tags.touch();
        match &mut self.rooms.get_mut(room)?.kind {
            RoomKind::Group(group) => Some(group),
            RoomKind::Direct { .. } => None,
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

    /// `peer` just became known to the node: if it is a member of a room
    /// restored without its key, it gets our chain of that room from its
    /// origin (so it can open everything we sealed on it). In every other
    /// case a new member is not in any of our rooms yet, and this does
    /// nothing.
    pub(super) fn hand_room_keys(&mut self, now: Instant, peer: PeerId) {
        let shared: Vec<(RoomId, ChainId)> = self
            .rooms
            .iter()
            .filter(|(_, state)| state.group().is_some_and(|g| g.members.contains(&peer)))
            .map(|(room, state)| (*room, state.chain.chain()))
            .collect();
        for (room, chain) in shared {
            if self.origins.contains_key(&chain) {
                self.send_origin(now, chain, peer);
            } else {
                self.send_group_key(now, room, peer);
            }
        }
    }

    /// Members of `room` other than us.
    pub(super) fn others(&self, room: &RoomId) -> Vec<PeerId> {
        self.group(room)
            .map(|g| {
                g.members
                    .iter()
                    .copied()
                    .filter(|p| *p != self.me)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn start_group(&mut self, room: RoomId, mut group: Group) {
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

    /// A new chain for the group's current epoch, its key to every member,
    /// and the reliable layer's member list brought up to date.
    fn rekey(&mut self, now: Instant, room: RoomId) {
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

    fn forget_room(&mut self, room: RoomId) {
        self.rooms.remove(&room);
        self.reliable.leave_room(room);
        self.receivers.retain(|chain, _| chain.room != room);
        self.held.retain(|h| h.envelope.header.room != room);
        self.early_keys.retain(|d| d.chain.room != room);
    }

    /// Installs the early keys `room`'s current epoch explains.
    fn apply_early_keys(&mut self, now: Instant, room: RoomId) {
        let Some(group) = self.group(&room) else {
            return;
        };
        let (epoch, members) = (group.epoch, group.members.clone());
        let mut ready = Vec::new();
        let mut foreign = 0;
        self.early_keys.retain(|d| {
            if d.chain.room != room || d.chain.epoch > epoch {
                return true;
            }
            if members.contains(&d.chain.sender) {
                ready.push(d.clone());
            } else {
                foreign += 1;
            }
            false
        });
        for _ in 0..foreign {
            self.stats.count(DropReason::Foreign);
        }
        for distribution in ready {
            self.install_key(now, &distribution);
        }
    }

    /// Makes every member we did not know a contact.
    fn learn_contacts(&mut self, now: Instant, publics: Vec<PublicIdentity>) {
        for public in publics {
            let peer = public.peer_id();
            if peer != self.me && !self.peers.contains_key(&peer) {
                self.add_contact(now, public.clone());
                self.events.push_back(NodeEvent::ContactLearned { public });
            }
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
    pub(super) fn send_successor(&mut self, now: Instant, room: RoomId, peer: PeerId) {
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

    fn send_members(&mut self, now: Instant, room: RoomId, peer: PeerId) {
        let Some((epoch, group_key)) = self
            .group(&room)
            .map(|g| (g.epoch, *g.group_key.as_bytes()))
        else {
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

    /// Our current chain in `room`, to `peer` over the pairwise stream.
    pub(super) fn send_group_key(&mut self, now: Instant, room: RoomId, peer: PeerId) {
        let Some(state) = self.rooms.get(&room) else {
            return;
        };
        let key = control_from_distribution(&state.chain.distribution());
        if let Some(id) = self.send_pairwise(now, peer, &key) {
            self.origin_control_sent(id, &key, peer);
        }
    }

    /// Queues a control message on the direct-room stream with `peer`.
    /// Like `queue_pairwise`, for controls whose loss is only counted.
    pub(super) fn send_pairwise(
        &mut self,
        now: Instant,
        peer: PeerId,
        control: &Control,
    ) -> Option<crate::proto::ids::MessageId> {
        let queued = self.queue_pairwise(now, peer, control);
        if queued.is_err() {
            self.stats.control_not_queued += 1;
        }
        queued.ok()
    }
}

/// Parses a member list: every key valid, no duplicates, within the cap.
fn member_keys(members: &[MemberKey]) -> Result<Vec<PublicIdentity>, DropReason> {
    if members.len() > MAX_ROOM_MEMBERS {
        return Err(DropReason::ControlMalformed);
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(members.len());
    for key in members {
        let public =
            PublicIdentity::from_bytes(&key.0).map_err(|_| DropReason::ControlMalformed)?;
        if !seen.insert(public.peer_id()) {
            return Err(DropReason::ControlMalformed);
        }
        out.push(public);
    }
    Ok(out)
}
