//! Invitations to group rooms: checked on arrival, held until the user
//! answers (and kept by the shell across restarts), then joined or
//! declined.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::keys::MAX_EARLY_KEYS;
use super::{Group, RoomFounding, member_keys};
use crate::proto::crypto::SenderKeyDistribution;
use crate::proto::crypto::{ChainId, PublicIdentity, SecretKey};
use crate::proto::ids::{PeerId, RoomId};
use crate::proto::node::{
    Control, DropReason, MAX_ROOM_NAME, MemberKey, Node, NodeError, NodeEvent,
};

/// Invitations held at once, waiting for the user's answer.
const MAX_INVITATIONS: usize = 64;

/// An invite the user has not answered.
pub(in crate::proto::node) struct Invitation {
    pub(super) from: PeerId,
    pub(super) name: String,
    pub(super) update: Update,
    pub(super) founding: RoomFounding,
    /// Who the admin named to take over, if it did since inviting us.
    pub(super) successor: Option<PeerId>,
}

/// A member list from the admin: an invite's or a new epoch's.
pub(in crate::proto::node) struct Update {
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
    pub(in crate::proto::node) fn new(
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
    pub(in crate::proto::node) fn on_invite(
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
}
