//! Our sends: sealed and queued in a batch, signed together, stored once
//! their datagrams are out; acknowledgements; the stored outbox a message
//! enters when it stays unacknowledged (see [`OUTBOX_AFTER`]).

use super::*;

/// A sent message enters the stored outbox (its `Pending` deliveries) only
/// if it is still unacknowledged this long after it was stored: on a LAN
/// almost every message is acknowledged within a millisecond, and its
/// delivery then costs one write instead of three. A crash inside this
/// window leaves such a message stored but out of the outbox; the next
/// reconciliation with its recipient hands it over all the same.
pub(crate) const OUTBOX_AFTER: Duration = Duration::from_secs(1);

/// Our messages waiting for acknowledgements: which recipients each
/// waits for, when each enters the stored outbox, and the delivery states
/// gathered for the next settling.
#[derive(Default)]
pub(super) struct Outbox {
    /// Our messages not yet acknowledged by everyone, by id.
    inflight: HashMap<MessageId, Inflight>,
    /// Sent messages not in the stored outbox yet, oldest first, with when
    /// they go into it (see [`OUTBOX_AFTER`]).
    due: VecDeque<(Instant, MessageId)>,
    /// Delivery states to record, in one transaction per settling.
    pub(super) deliveries: Vec<(MessageKey, PeerId, DeliveryState)>,
}

impl Outbox {
    /// Our message `key` was stored at `now`, for `recipients`.
    pub(super) fn sent(&mut self, now: Instant, key: MessageKey, recipients: Vec<PeerId>) {
        let id = key.id;
        self.inflight.insert(
            id,
            Inflight {
                key,
                recipients: recipients.len(),
                waiting: recipients,
                in_outbox: false,
            },
        );
        self.due.push_back((now + OUTBOX_AFTER, id));
    }

    /// Our message `key` (sent again as `id`) from the stored outbox waits
    /// for `peer`.
    pub(super) fn resent(&mut self, id: MessageId, key: MessageKey, peer: PeerId) {
        self.inflight
            .entry(id)
            .or_insert(Inflight {
                key,
                waiting: Vec::new(),
                in_outbox: true,
                recipients: 0,
            })
            .waiting
            .push(peer);
    }

    /// Messages unacknowledged [`OUTBOX_AFTER`] after they were stored
    /// (all of them with `all`) get their `Pending` deliveries.
    pub(super) fn enter(&mut self, now: Instant, all: bool) {
        while let Some(&(due, id)) = self.due.front() {
            if !all && due > now {
                break;
            }
            self.due.pop_front();
            if let Some(inflight) = self.inflight.get_mut(&id)
                && !inflight.in_outbox
            {
                inflight.in_outbox = true;
                for peer in &inflight.waiting {
                    self.deliveries
                        .push((inflight.key, *peer, DeliveryState::Pending));
                }
            }
        }
    }

    /// When the next message enters the stored outbox.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.due.front().map(|(due, _)| *due)
    }

    /// The recipients message `id` still waits for.
    pub(super) fn waiting_for(&self, id: &MessageId) -> &[PeerId] {
        self.inflight.get(id).map_or(&[], |i| &i.waiting)
    }

    /// `to` acknowledged `id`: its `Delivered` state is gathered; for one
    /// of our waiting messages, `(room, recipients, still waiting)`.
    pub(super) fn acknowledged(
        &mut self,
        id: MessageId,
        to: PeerId,
    ) -> Option<(RoomId, usize, usize)> {
        let inflight = self.inflight.get_mut(&id)?;
        self.deliveries
            .push((inflight.key, to, DeliveryState::Delivered));
        let before = inflight.waiting.len();
        inflight.waiting.retain(|peer| *peer != to);
        let receipt = (inflight.waiting.len() < before).then_some((
            inflight.key.room,
            inflight.recipients,
            inflight.waiting.len(),
        ));
        if inflight.waiting.is_empty() {
            self.inflight.remove(&id);
        }
        receipt
    }

    /// Messages for `peer` waiting for its acknowledgement: `stored` (the
    /// stored outbox, read without settling) with the delivery states
    /// gathered since applied, and those too recent to be in it.
    pub(super) fn len_for(&self, peer: &PeerId, mut stored: HashSet<MessageId>) -> usize {
        for (key, to, state) in &self.deliveries {
            if to != peer {
                continue;
            }
            match state {
                DeliveryState::Pending => {
                    stored.insert(key.id);
                }
                DeliveryState::Delivered | DeliveryState::Read => {
                    stored.remove(&key.id);
                }
            }
        }
        let recent = self
            .inflight
            .values()
            .filter(|i| !i.in_outbox && i.waiting.contains(peer))
            .count();
        stored.len() + recent
    }
}

/// One of our messages that not every recipient acknowledged yet.
struct Inflight {
    /// Its stored copy.
    key: MessageKey,
    /// Recipients that have not acknowledged it.
    waiting: Vec<PeerId>,
    /// Whether its `Pending` deliveries are in the store (the outbox).
    in_outbox: bool,
    /// How many recipients it had when sent (0: not known, a message
    /// from the stored outbox).
    recipients: usize,
}

/// A message the node sealed and queued: at the end of the current batch
/// of commands it is signed with the batch's other messages, sent, and its
/// stored copy committed with theirs (group commit), with the caller
/// waiting for its id.
pub(super) struct UnsavedSend {
    /// The text, as stored.
    pub(super) body: Vec<u8>,
    pub(super) recipients: Vec<PeerId>,
    pub(super) reply: ReplyTo,
}

/// A signed send whose datagrams are queued; stored once they are out.
pub(super) struct SignedSend {
    pub(super) message: Message,
    pub(super) recipients: Vec<PeerId>,
    pub(super) reply: ReplyTo,
}

impl DaemonCore {
    /// Seals `text` for `to` and queues it; the stored copy is committed by
    /// [`DaemonCore::commit_sends`] with the rest of the batch. Returns its
    /// recipients.
    pub(super) fn prepare_send(
        &mut self,
        now: Instant,
        to: Target,
        text: &str,
    ) -> Result<Vec<PeerId>, DaemonError> {
        self.prepare_send_kind(now, to, crate::proto::node::KIND_TEXT, text.as_bytes())
    }

    /// Like [`DaemonCore::prepare_send`] for a message of envelope `kind`
    /// whose `body` is encoded already (a file offer).
    pub(super) fn prepare_send_kind(
        &mut self,
        now: Instant,
        to: Target,
        kind: u8,
        body: &[u8],
    ) -> Result<Vec<PeerId>, DaemonError> {
        match to {
            Target::Peer(peer) => {
                if !self.peers.contains_key(&peer)
                    && let Some(public) = self.discovery.public_of(&peer)
                {
                    // A peer discovery found nearby: messaging it is how we
                    // meet it.
                    self.learn_contact(now, public)?;
                }
                self.node.queue_direct_kind(now, peer, kind, body)?;
                // Writing to a stranger tells it who we are.
                self.node.share_profile(now, peer);
                Ok(vec![peer])
            }
            Target::Room(room) => {
                if self.node.room(&room).is_none_or(|r| r.admin.is_none()) {
                    return Err(DaemonError::UnknownRoom(PeerId(room.0).to_hex()));
                }
                self.node.queue_room_kind(now, room, kind, body)?;
                let me = self.node.peer_id();
                Ok(self
                    .node
                    .room(&room)
                    .map(|r| r.members.into_iter().filter(|p| *p != me).collect())
                    .unwrap_or_default())
            }
        }
    }

    /// Signs the batch's sends together (one signature for up to 32) and
    /// queues their datagrams; [`DaemonCore::commit_sends`] stores them
    /// once the datagrams are out (at `Driver::sent`).
    pub(super) fn sign_sends(&mut self, now: Instant) {
        if self.unsaved_sends.is_empty() {
            return;
        }
        let sends = std::mem::take(&mut self.unsaved_sends);
        // One result per queued message, in order: the driver queues one
        // per `UnsavedSend` and signs them all here.
        let mut signed = self.node.sign_queued(now).into_iter();
        for send in sends {
            match signed.next() {
                Some(Ok(sent)) => {
                    self.status.messages_sent += 1;
                    let message = Message {
                        id: sent.id,
                        room: sent.room,
                        sender: self.node.peer_id(),
                        sender_seq: sent.seq,
                        timestamp: sent.timestamp,
                        body: send.body,
                        envelope: sent.envelope,
                    };
                    self.signed_sends.push(SignedSend {
                        message,
                        recipients: send.recipients,
                        reply: send.reply,
                    });
                }
                Some(Err(error)) => self.reply(send.reply, Err(error.into())),
                None => self.reply(
                    send.reply,
                    Err(DaemonError::NotStored(
                        "the message was not signed".to_owned(),
                    )),
                ),
            }
        }
    }

    /// Stores the signed sends (messages and the chain positions that
    /// sealed them; their outbox entries come later, see `OUTBOX_AFTER`)
    /// with one journal append, then answers their callers. Their datagrams
    /// are out before this: a crash in between loses only our own copy
    /// (the recipients have it), and a restored sending chain skips ahead,
    /// so no message key is used twice. An append that fails (a full disk)
    /// keeps them for the next one: their callers hear they were sent but
    /// not stored, and they enter our history once there is space.
    pub(super) fn commit_sends(&mut self, now: Instant) {
        self.sign_sends(now);
        if self.signed_sends.is_empty() {
            return;
        }
        let mut messages = Vec::with_capacity(self.signed_sends.len());
        let mut waiting = Vec::with_capacity(self.signed_sends.len());
        for send in std::mem::take(&mut self.signed_sends) {
            messages.push(send.message);
            waiting.push((send.recipients, send.reply));
        }
        let keys: Vec<MessageKey> = messages.iter().map(Message::key).collect();
        // Their `Pending` deliveries wait (see `OUTBOX_AFTER`). An append
        // that fails keeps them for the next one; until then they are not
        // durable, and their callers are told so.
        let stored = self
            .append_waiting(now, messages)
            .map_err(|error| error.to_string());
        for (key, (recipients, reply)) in keys.into_iter().zip(waiting) {
            let id = key.id;
            self.outbox.sent(now, key, recipients);
            let answer = match &stored {
                Ok(()) => Ok(Reply::Sent(id)),
                Err(why) => Err(DaemonError::NotStored(format!(
                    "{why}; it is saved here once there is space, unless kith stops first"
                ))),
            };
            self.reply(reply, answer);
        }
    }

    /// Our file message, once stored, is one we serve.
    pub(super) fn note_if_file(&mut self, message: &Message) {
        if crate::daemon::files::envelope_kind(&message.envelope)
            == Some(crate::proto::node::KIND_FILE)
        {
            self.note_file_message(message);
        }
    }

    /// Sent messages still unacknowledged [`OUTBOX_AFTER`] after they were
    /// stored (all of them with `all`) get their `Pending` deliveries,
    /// written with this round's delivery states.
    pub(super) fn enter_outbox(&mut self, now: Instant, all: bool) {
        self.outbox.enter(now, all);
    }

    /// How many recipients a message in `room` has: its other members.
    pub(super) fn recipients_of(&self, room: &RoomId) -> usize {
        let me = self.node.peer_id();
        self.node
            .room(room)
            .map_or(1, |r| r.members.iter().filter(|p| **p != me).count().max(1))
    }

    /// Messages for `peer` that wait for its acknowledgement: the stored
    /// outbox and those too recent to be in it.
    pub(super) fn outbox_len(&self, peer: &PeerId) -> usize {
        // Read without settling (a listing must not cost a transaction):
        // delivery states gathered since the last settling are applied
        // here on top of the stored outbox.
        let outbox: HashSet<MessageId> = self
            .store
            .outbox(peer)
            .map(|keys| keys.into_iter().map(|k| k.id).collect())
            .unwrap_or_default();
        self.outbox.len_for(peer, outbox)
    }

    /// `to` acknowledged our message `id`: its delivery state is recorded
    /// with the next settling, and listeners hear of it (with a receipt
    /// "delivered to k of n" when it was one of our waiting messages).
    pub(super) fn on_delivered(&mut self, now: Instant, to: PeerId, id: MessageId) {
        self.discovery.activity(now, to);
        let receipt = self.outbox.acknowledged(id, to);
        self.status.delivered += 1;
        self.publish(Event::Delivered {
            to,
            to_name: String::new(),
            id,
        });
        if let Some((room, recipients, waiting)) = receipt {
            let of = if recipients > 0 {
                recipients
            } else {
                self.recipients_of(&room)
            }
            .max(waiting + 1);
            self.publish(Event::Receipt {
                room,
                id,
                delivered: of - waiting,
                of,
            });
        }
    }
}
