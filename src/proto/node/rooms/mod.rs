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
//!
//! The parts: this file holds what a room is (our state of it, what the
//! shell sees of it); `invitations` the invites we hold until answered,
//! `admin` what the admin does (members, epochs, successor), `membership`
//! what a member does with the admin's changes, `keys` the sender keys
//! handed around in a room.

mod admin;
mod invitations;
mod keys;
mod membership;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::{DropReason, MAX_ROOM_MEMBERS, MemberKey, Node, NodeError, SentMessage};
use crate::proto::crypto::{ChainId, PublicIdentity, SecretKey, SenderChain};
use crate::proto::ids::{PeerId, RoomId};

pub(super) use self::invitations::{Invitation, Update};

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

/// Our side of a room: who is in it and our sending chain.
pub(super) struct RoomState {
    pub(super) kind: RoomKind,
    pub(super) chain: SenderChain,
    /// Direct rooms: our chain's starting key is queued in the reliable
    /// stream. (Group rooms send their key to every member when an epoch
    /// starts.)
    pub(super) key_sent: bool,
    /// The chain position the store's reservation covers: nothing at or
    /// after it was ever sealed. Sealing there first asks for a new one
    /// (see [`chains::RESERVE_AHEAD`]); 0 until the first is taken.
    pub(super) reserved: u64,
    /// When our current chain key was drawn (or restored) and the position
    /// it starts at: when it is due to be rotated.
    pub(super) chain_since: Instant,
    pub(super) chain_start: u64,
}

pub(super) enum RoomKind {
    /// The 1:1 room with a contact.
    Direct { peer: PeerId },
    /// A room of more than two.
    Group(Box<Group>),
}

/// Membership of a group room as we know it.
pub(super) struct Group {
    pub(super) name: String,
    /// The only member whose invites and member lists we accept.
    pub(super) admin: PeerId,
    /// Bumped by the admin on every membership change; each epoch has
    /// fresh sender chains, handed only to its members.
    pub(super) epoch: u32,
    /// Every member, us included.
    pub(super) members: BTreeSet<PeerId>,
    /// This epoch's key for multicast frames (from the admin).
    pub(super) group_key: SecretKey,
    /// The previous epoch's, for frames still in flight across a change,
    /// until its grace runs out.
    pub(super) previous_key: Option<PreviousKey>,
    /// What the room's id derives from, handed on with every invitation;
    /// `None` for a room kept by an older version.
    pub(super) founding: Option<RoomFounding>,
    /// The epoch from which each member is in the room as we saw it (for
    /// us: the epoch we joined in). A member may read, and is handed, only
    /// the history of epochs from then on.
    pub(super) joined: BTreeMap<PeerId, u32>,
    /// Who takes over when the admin leaves, as the admin named it
    /// (`Control::RoomSuccessor`); `None` when it named nobody yet (an
    /// older admin): then the lowest remaining peer id does.
    pub(super) successor: Option<PeerId>,
    /// When the current epoch began (as we saw it), and whether messages
    /// were sent in it since: an admin rotates an epoch in use after
    /// [`NodeConfig::group_rotate_after`].
    pub(super) epoch_since: Instant,
    pub(super) epoch_active: bool,
}

/// A group key of the epoch before the current one, kept for a grace.
pub(super) struct PreviousKey {
    pub(super) epoch: u32,
    pub(super) key: SecretKey,
    /// From then on it opens nothing and is dropped.
    pub(super) until: Instant,
}

impl Group {
    /// Moves to `epoch` with `key`, keeping the old key until `until`.
    pub(super) fn advance_epoch(&mut self, epoch: u32, key: SecretKey, until: Instant) {
        let old = std::mem::replace(&mut self.group_key, key);
        self.previous_key = Some(PreviousKey {
            epoch: self.epoch,
            key: old,
            until,
        });
        self.epoch = epoch;
    }

    /// Members the list gained start at the current epoch; members it lost
    /// are forgotten (back later, they start again from then).
    pub(super) fn note_joined(&mut self) {
        let epoch = self.epoch;
        self.joined.retain(|peer, _| self.members.contains(peer));
        for member in &self.members {
            self.joined.entry(*member).or_insert(epoch);
        }
    }
}

impl RoomState {
    pub(super) fn direct_peer(&self) -> Option<PeerId> {
        match self.kind {
            RoomKind::Direct { peer } => Some(peer),
            RoomKind::Group(_) => None,
        }
    }

    pub(super) fn group(&self) -> Option<&Group> {
        match &self.kind {
            RoomKind::Group(group) => Some(group),
            RoomKind::Direct { .. } => None,
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

    /// Sends `text` to every member of group `room`.
    pub fn send_room_message(
        &mut self,
        now: Instant,
        room: RoomId,
        text: &str,
    ) -> Result<SentMessage, NodeError> {
        self.prepare_room(now, room, text.len())?;
        let wall = self.wall_millis(now);
        self.seal_and_send(now, room, wall, text)
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
