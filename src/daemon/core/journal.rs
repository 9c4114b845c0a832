//! Received messages: journaled before they are acknowledged, moved into
//! the database at the next settling (see [`SETTLE_AFTER`]), reported in
//! order once there; chain state stored with the messages it opened or
//! sealed. [`Journal`] holds what waits and when it settles; the core
//! moves it into the store and reports it.

use super::*;
use crate::daemon::files::{FileInfo, file_of, message_text};

/// What waits for the journal to settle, in the order it happened.
pub(super) enum Waiting {
    /// A received message: reported once it is in the database, if it
    /// turned out new or replaced an unreadable copy. Until it is
    /// `journaled` it cannot be there, and it and what follows it wait.
    Message {
        message: Message,
        event: Event,
        journaled: bool,
    },
    /// Any other event published after such a message: it stays behind it.
    Other(Event),
}

impl Waiting {
    /// A message that is not in the journal yet (so not in the database).
    fn unjournaled(&self) -> bool {
        matches!(
            self,
            Waiting::Message {
                journaled: false,
                ..
            }
        )
    }
}

/// How long journaled messages wait before they move into the database:
/// long enough that a message's acknowledgement, and the sender's
/// "delivered", never wait behind a transaction, short enough that a burst
/// still makes one transaction of a few milliseconds' messages.
pub(crate) const SETTLE_AFTER: Duration = Duration::from_millis(2);

/// How long after `failures` failed settlings in a row the next one is
/// tried: doubling from [`SETTLE_AFTER`] up to about a second (a disk that
/// filled up is retried that often until space is freed).
pub(super) fn settle_retry_delay(failures: u32) -> Duration {
    SETTLE_AFTER * 2u32.pow(failures.min(9))
}

/// The journal's side of the core: received messages on their way into
/// the store's journal, what waits for the next settling, and when that
/// comes.
#[derive(Default)]
pub(super) struct Journal {
    /// Received messages not journaled yet (only while `deferring`).
    uncommitted: Vec<(Message, Receipt)>,
    /// Inside a burst of datagrams: commits wait for its end.
    pub(super) deferring: bool,
    /// Received messages durable in the store's journal (and acknowledged)
    /// whose reports wait for the settling, and the events published after
    /// them, in order.
    waiting: Vec<Waiting>,
    /// When journaled messages (received or sent) move into the database.
    settle_at: Option<Instant>,
    /// Settlings that failed in a row: the next try waits longer (see
    /// [`settle_retry_delay`]), so a full disk is not retried, and logged,
    /// every 2 ms.
    failures: u32,
    /// Why the store cannot grow (a full disk), until a settling succeeds:
    /// sends are refused before they go out meanwhile.
    disk_full: Option<String>,
    /// Our sent messages whose append failed: they went out (a datagram
    /// is never held for a write), so they are kept for the next append,
    /// never dropped from our own history.
    held_sends: Vec<Message>,
    /// Chain states taken from the node with messages whose append
    /// failed: appended with them, before any newer state, when it is
    /// tried again (a chain state stored out of order would go back).
    unjournaled_chains: Vec<ChainSnapshot>,
    /// Forgotten origins whose deletion failed (a full disk): deleted at
    /// the next try, or a thief of the store would find them.
    undeleted_origins: Vec<(ChainId, ChainRole)>,
    /// An append failed (a full disk): received messages are kept,
    /// unconfirmed, and sent ones kept, until one succeeds. The next try
    /// is the settling's retry (`settle_at`), which appends them first.
    append_failed: bool,
    /// Rooms whose new state (members, epoch) could not be stored: stored
    /// with the next append; meanwhile the node's datagrams wait, so no
    /// member hears of a state a crash would take back from us.
    unsaved_rooms: std::collections::BTreeSet<RoomId>,
}

impl Journal {
    /// A received message for the next append, reported after the
    /// settling that follows it.
    fn receive(&mut self, message: Message, receipt: Receipt, event: Event) {
        self.uncommitted.push((message.clone(), receipt));
        self.waiting.push(Waiting::Message {
            message,
            event,
            journaled: false,
        });
    }

    /// Whether received messages (or sent ones whose append failed) wait
    /// for an append.
    pub(super) fn has_uncommitted(&self) -> bool {
        !self.uncommitted.is_empty()
            || !self.held_sends.is_empty()
            || !self.unjournaled_chains.is_empty()
            || !self.unsaved_rooms.is_empty()
    }

    /// `room`'s state could not be stored (see `unsaved_rooms`): it is
    /// tried again with the next append, later still if it keeps failing.
    pub(super) fn hold_room(&mut self, now: Instant, room: RoomId) {
        self.unsaved_rooms.insert(room);
        self.append_failed = true;
        self.retry_later(now);
    }

    /// Chain states that could not be stored (or must wait behind what a
    /// failed append holds): they go with the next append.
    fn hold_chains(&mut self, chains: Vec<ChainSnapshot>) {
        self.unjournaled_chains.extend(chains);
    }

    /// Whether the node's datagrams wait for chain states to be stored.
    /// None may leave meanwhile: an acknowledgement would tell a peer we
    /// hold a key or a message we would lose in a crash (the peer would
    /// never send it again, and what it sealed later would never open),
    /// and a seal past a reservation not stored would, after a crash, hand
    /// its message key out again.
    pub(super) fn withholds_datagrams(&self) -> bool {
        !self.unjournaled_chains.is_empty() || !self.unsaved_rooms.is_empty()
    }

    /// Whether an append failed and what it held waits for the next one.
    pub(super) fn holds_failed_append(&self) -> bool {
        self.append_failed
    }

    /// Keeps `event` behind the received messages waiting to be reported;
    /// gives it back when none wait.
    pub(super) fn queue_behind(&mut self, event: Event) -> Option<Event> {
        if self.waiting.is_empty() {
            Some(event)
        } else {
            self.waiting.push(Waiting::Other(event));
            None
        }
    }

    /// A settling is due at `SETTLE_AFTER` from `now`, unless one is
    /// already.
    pub(super) fn schedule(&mut self, now: Instant) {
        self.settle_at.get_or_insert(now + SETTLE_AFTER);
    }

    /// When the next settling is due.
    pub(super) fn settle_at(&self) -> Option<Instant> {
        self.settle_at
    }

    /// Whether the settling is due at `now`.
    pub(super) fn settle_due(&self, now: Instant) -> bool {
        self.settle_at.is_some_and(|at| at <= now)
    }

    /// Why sends are refused now (a full disk), if they are.
    pub(super) fn disk_full(&self) -> Option<&str> {
        self.disk_full.as_deref()
    }

    /// Remembers that the store cannot grow, if that is what `error` says.
    pub(super) fn note_failure(&mut self, error: &StoreError) {
        if matches!(error, StoreError::DiskFull(_)) {
            self.disk_full = Some(error.to_string());
        }
    }

    /// A settling failed: what it held is still journaled, so still
    /// durable; it is tried again later, later still if it keeps failing.
    pub(super) fn settle_failed(&mut self, now: Instant, error: &StoreError) {
        self.retry_later(now);
        self.note_failure(error);
    }

    /// The next settling is tried later, later still if they keep failing.
    fn retry_later(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        self.settle_at = Some(now + settle_retry_delay(self.failures));
    }

    /// A settling succeeded; another is due if `more` (delivery states
    /// gathered meanwhile keep their turn).
    fn settled(&mut self, now: Instant, more: bool) {
        self.failures = 0;
        self.disk_full = None;
        self.settle_at = more.then(|| now + SETTLE_AFTER);
    }

    /// The received messages of this round, for one append.
    fn take_uncommitted(&mut self) -> Vec<(Message, Receipt)> {
        std::mem::take(&mut self.uncommitted)
    }

    /// Sent messages and chain states a failed append held, for the next
    /// one (they go first: they are older than anything taken since).
    pub(super) fn take_held(&mut self) -> (Vec<Message>, Vec<ChainSnapshot>) {
        (
            std::mem::take(&mut self.held_sends),
            std::mem::take(&mut self.unjournaled_chains),
        )
    }

    /// This round's messages are in the journal.
    fn mark_journaled(&mut self) {
        for entry in self.waiting.iter_mut().rev() {
            match entry {
                Waiting::Message {
                    journaled: true, ..
                } => break,
                Waiting::Message { journaled, .. } => *journaled = true,
                Waiting::Other(_) => {}
            }
        }
    }

    /// This round's append failed (`DaemonCore::journal` scheduled the
    /// retry): its messages are kept, unconfirmed (so unacknowledged:
    /// their senders keep them and say nothing delivered), and appended
    /// again with the next settling, later still if it keeps failing. They
    /// cannot be dropped and left to come again: the node accepted them
    /// once, so a retransmission is a duplicate to it, and the chain
    /// state that opened them has moved on.
    pub(super) fn append_failed(
        &mut self,
        round: Vec<(Message, Receipt)>,
        sends: Vec<Message>,
        chains: Vec<ChainSnapshot>,
    ) {
        // Nothing was received between the take and the failure, but keep
        // the order if anything was.
        let later = std::mem::replace(&mut self.uncommitted, round);
        self.uncommitted.extend(later);
        let later = std::mem::replace(&mut self.held_sends, sends);
        self.held_sends.extend(later);
        let later = std::mem::replace(&mut self.unjournaled_chains, chains);
        self.unjournaled_chains.extend(later);
        self.append_failed = true;
    }

    /// The append of this round's messages succeeded.
    pub(super) fn appended(&mut self) {
        self.append_failed = false;
    }

    /// What the settling that just happened may report: everything up to
    /// the first message not journaled yet (this round's), which waits with
    /// what follows it for the next one.
    fn take_ready(&mut self) -> Vec<Waiting> {
        let ready = self
            .waiting
            .iter()
            .position(Waiting::unjournaled)
            .unwrap_or(self.waiting.len());
        let later = self.waiting.split_off(ready);
        std::mem::replace(&mut self.waiting, later)
    }
}

/// A received message as the store keeps it.
pub(super) fn stored(
    room: crate::proto::ids::RoomId,
    from: PeerId,
    id: MessageId,
    timestamp: u64,
    body: Vec<u8>,
    envelope: Vec<u8>,
) -> Message {
    // The node surfaced this envelope after parsing and verifying it, so
    // it parses; 0 would only lose the chain position, not the message.
    let sender_seq = Envelope::parse(&envelope).map_or(0, |e| e.header.seq);
    Message {
        id,
        room,
        sender: from,
        sender_seq,
        timestamp,
        body,
        envelope,
    }
}

impl DaemonCore {
    /// What subscribers hear of a readable received message.
    pub(super) fn received_event(&mut self, message: &Message) -> Event {
        let file = file_of(&message.envelope, &message.body);
        // A file message's text is its caption.
        let text = message_text(&message.envelope, &message.body, file.as_ref());
        Event::MessageReceived {
            room: message.room,
            from: message.sender,
            from_name: self.profiles.label(&message.sender),
            id: message.id,
            timestamp: message.timestamp,
            text,
            file: file.as_ref().map(FileInfo::from),
            muted: self.is_muted(&message.room, &message.sender),
            // Known once it is in the database (see `settle_with`).
            cursor: 0,
        }
    }

    /// A received message for the store: journaled with the rest of its
    /// round, reported (in order with every other event) once it is in the
    /// database.
    pub(super) fn receive(
        &mut self,
        now: Instant,
        message: Message,
        receipt: Receipt,
        mut event: Event,
    ) {
        self.profiles.name_event(&mut event);
        // Someone who is not a contact wrote: a contact request, reported
        // before the message.
        self.promote(now, message.sender);
        self.journal.receive(message, receipt, event);
    }

    /// Makes messages (ours or received) and the chain states that sealed
    /// or opened them durable in the store's journal: no transaction before
    /// an acknowledgement or a sender's answer. They move into the database
    /// at `settle_at`, or before anything else uses the store (`db`).
    pub(super) fn journal(
        &mut self,
        now: Instant,
        messages: &[Message],
        chains: Vec<ChainSnapshot>,
    ) -> Result<(), StoreError> {
        let rooms: HashSet<RoomId> = messages.iter().map(|m| m.room).collect();
        self.sync.rooms_changed(&rooms);
        if let Err(error) = self.store.journal_messages_and_chains(messages, chains) {
            // A settling is tried again later: it finds out when the store
            // takes writes again, and only a settling lifts the refusal of
            // sends (`disk_full`), which nothing else may look at again.
            self.journal.settle_failed(now, &error);
            return Err(error);
        }
        self.journal.schedule(now);
        Ok(())
    }

    /// The store, with every journaled message moved into the database
    /// first, so nothing read or written through it misses them or gets
    /// ahead of them (a chain state written after a journaled one).
    pub(super) fn db(&mut self) -> Result<&mut Store, StoreError> {
        self.settle()?;
        Ok(&mut self.store)
    }

    /// Moves the journaled messages into the database in one transaction,
    /// then reports the received ones that were new (a message sent again
    /// because its acknowledgement was lost is acknowledged again but
    /// reported once).
    pub(super) fn settle(&mut self) -> Result<(), StoreError> {
        self.settle_with(&[])
    }

    /// [`DaemonCore::settle`], writing `deliveries` in the same transaction.
    pub(super) fn settle_with(
        &mut self,
        deliveries: &[(MessageKey, PeerId, DeliveryState)],
    ) -> Result<(), StoreError> {
        if self.journal.holds_failed_append() {
            // What a failed append held goes in first: the delivery states
            // and reads that follow are about it.
            // A failure was counted and a retry scheduled by `journal`.
            self.append_waiting(self.clock.mono, Vec::new())?;
        }
        let fresh: HashMap<MessageId, u64> = if self.store.is_settled() && deliveries.is_empty() {
            HashMap::new()
        } else {
            match self.store.settle_with_cursors(deliveries) {
                Ok(ids) => ids.into_iter().collect(),
                Err(error) => {
                    self.journal.settle_failed(self.clock.mono, &error);
                    return Err(error);
                }
            }
        };
        // Delivery states gathered meanwhile (when this settling was not
        // theirs) keep their turn.
        let more = !self.outbox.deliveries.is_empty();
        self.journal.settled(self.clock.mono, more);
        let waiting = self.journal.take_ready();
        if !waiting.is_empty() {
            self.report_settled(waiting, fresh);
        }
        Ok(())
    }

    /// Reports `waiting`, what waited for the settling that just moved the
    /// messages in `fresh` (id → cursor) into the database: the new ones (and
    /// readable copies of ones held unreadable) as events with their
    /// cursors, with every event published behind them, in order; and
    /// the unread counts they changed.
    fn report_settled(&mut self, waiting: Vec<Waiting>, mut fresh: HashMap<MessageId, u64>) {
        let mut report = vec![false; waiting.len()];
        // A readable copy of a message we hold unreadable (forwarded to us
        // before its author's key arrived) takes its place, and is reported
        // then.
        let mut readable_again = Vec::new();
        let mut cursors = vec![0u64; waiting.len()];
        let me = self.node.peer_id();
        let mut unread_changed: Vec<RoomId> = Vec::new();
        for (index, entry) in waiting.iter().enumerate() {
            match entry {
                Waiting::Message { message, event, .. } if fresh.contains_key(&message.id) => {
                    report[index] = true;
                    cursors[index] = fresh.remove(&message.id).unwrap_or_default();
                    if message.sender != me
                        && self.count_unread(message, event)
                        && !unread_changed.contains(&message.room)
                    {
                        unread_changed.push(message.room);
                    }
                }
                Waiting::Message { message, .. } if !message.body.is_empty() => {
                    readable_again.push((index, message.clone()));
                }
                Waiting::Message { .. } => {}
                Waiting::Other(_) => report[index] = true,
            }
        }
        if !readable_again.is_empty() {
            self.upgrade_readable(readable_again, &mut report, &mut cursors);
        }
        for ((entry, report), cursor) in waiting.into_iter().zip(report).zip(cursors) {
            match entry {
                Waiting::Message { mut event, .. } if report => {
                    self.status.messages_received += 1;
                    if self.listening {
                        event.set_cursor(cursor);
                        self.unpublished.push(event);
                    }
                }
                Waiting::Other(event) => self.unpublished.push(event),
                Waiting::Message { .. } => {}
            }
        }
        if self.listening {
            for room in unread_changed {
                let unread = self.unread.get(&room);
                self.unpublished.push(Event::UnreadChanged {
                    room,
                    unread: unread.count,
                    unread_muted: unread.muted,
                });
            }
        }
    }

    /// Counts a new message of someone else as unread if it is after the
    /// room's read marker; whether it was.
    fn count_unread(&mut self, message: &Message, event: &Event) -> bool {
        let muted = match event {
            Event::MessageReceived { muted, .. } => *muted,
            _ => self
                .mutes
                .is_muted(&message.room.0, &message.sender.0, self.clock.wall_ms),
        };
        self.unread.count_new(message, muted)
    }

    /// Stores readable copies of messages held unreadable in their place;
    /// those that replaced one are reported, with their cursors.
    fn upgrade_readable(
        &mut self,
        readable_again: Vec<(usize, Message)>,
        report: &mut [bool],
        cursors: &mut [u64],
    ) {
        let messages: Vec<Message> = readable_again.iter().map(|(_, m)| m.clone()).collect();
        match self.store.upgrade_unreadable(&messages) {
            Ok(ids) => {
                let mut upgraded: HashSet<MessageId> = ids.into_iter().collect();
                for (index, message) in readable_again {
                    report[index] = upgraded.remove(&message.id);
                    if report[index] {
                        cursors[index] = self
                            .store
                            .cursor_of(&message.room, &message.key().position())
                            .ok()
                            .flatten()
                            .unwrap_or_default();
                    }
                }
            }
            Err(error) => self.store_error("replace unreadable messages", error),
        }
    }

    /// Settles the journal and records the delivery states gathered since
    /// the last call, in one transaction.
    pub(super) fn write_deliveries(&mut self) -> Result<(), StoreError> {
        let updates = std::mem::take(&mut self.outbox.deliveries);
        if let Err(error) = self.settle_with(&updates) {
            // Kept for the next try, ahead of those gathered since.
            let later = std::mem::replace(&mut self.outbox.deliveries, updates);
            self.outbox.deliveries.extend(later);
            return Err(error);
        }
        Ok(())
    }

    /// Opens what was stored unreadable of the chains whose key arrived
    /// (their author's messages overtook the key, more than the node holds
    /// back), stores the readable copies in its place and reports them.
    /// A chain whose store access fails (a full disk) is kept for the next
    /// time: dropped, its messages would stay unreadable for good.
    pub(super) fn reopen_unreadable(&mut self) {
        let mut chains = std::mem::take(&mut self.chains_known).into_iter();
        while let Some(chain) = chains.next() {
            let stored = match self
                .db()
                .and_then(|db| db.unreadable_messages(&chain.room, &chain.sender))
            {
                Ok(stored) => stored,
                Err(error) => {
                    self.store_error("read unreadable messages", error);
                    self.chains_known.push(chain);
                    self.chains_known.extend(chains);
                    return;
                }
            };
            let opened: Vec<Message> = stored
                .into_iter()
                .filter_map(|mut message| {
                    message.body = self.node.open_stored(&message.envelope)?;
                    Some(message)
                })
                .collect();
            if opened.is_empty() {
                continue;
            }
            // The chain positions they used are stored with the next round.
            let upgraded: HashSet<MessageId> =
                match self.db().and_then(|db| db.upgrade_unreadable(&opened)) {
                    Ok(ids) => ids.into_iter().collect(),
                    Err(error) => {
                        self.store_error("replace unreadable messages", error);
                        self.chains_known.push(chain);
                        self.chains_known.extend(chains);
                        return;
                    }
                };
            for message in opened.iter().filter(|m| upgraded.contains(&m.id)) {
                self.status.messages_received += 1;
                self.note_file_message(message);
                let mut event = self.received_event(message);
                if let Ok(Some(cursor)) = self
                    .store
                    .cursor_of(&message.room, &message.key().position())
                {
                    event.set_cursor(cursor);
                }
                self.publish(event);
            }
        }
    }

    /// Keeps unanswered invitations in the store as they come and go.
    pub(super) fn save_invitations(&mut self) {
        let updates = self.node.take_invitation_updates();
        if !updates.is_empty()
            && let Err(error) = self.db().and_then(|db| db.put_invitations(&updates))
        {
            self.store_error("store invitations", error);
        }
    }

    /// Journals the sending chains' new reservations before the datagrams
    /// of the seals that asked for them leave (see
    /// `proto::node::chains::RESERVE_AHEAD`): after a crash a chain goes on
    /// from the last reservation, never from a position already handed out.
    pub(super) fn save_reservations(&mut self, now: Instant) {
        let reservations = self.node.take_reservations();
        if reservations.is_empty() {
            return;
        }
        if self.journal.holds_failed_append() {
            // Behind what waits, so no chain state goes back.
            self.journal.hold_chains(reservations);
            return;
        }
        if let Err(error) = self.journal(now, &[], reservations.clone()) {
            self.journal
                .append_failed(Vec::new(), Vec::new(), reservations);
            self.store_error("store chain reservations", error);
        }
    }

    /// Stores chain positions that moved outside a message round (keys
    /// received, rooms created or rekeyed).
    pub(super) fn save_chains(&mut self) {
        if !self.unsaved_sends.is_empty() || !self.signed_sends.is_empty() {
            // They commit the chains with them, in one transaction.
            return;
        }
        let chains = self.node.take_chain_updates();
        if !chains.is_empty()
            && let Err(error) = self.db().and_then(|db| db.put_chains(&chains))
        {
            // Kept for the next append (see `Journal::withholds_datagrams`).
            self.journal.hold_chains(chains);
            self.store_error("store chain state", error);
        }
        // Origins every member holds the chain of: deleted (after the
        // journal settled, so no older copy of them comes back). Those a
        // failed deletion left go again, unless the chain was rotated
        // since: its new origin has the same row, and replaces the old one.
        let mut forgotten = std::mem::take(&mut self.journal.undeleted_origins);
        forgotten.retain(|(chain, _)| !self.node.holds_origin(chain));
        forgotten.extend(
            self.node
                .take_forgotten_origins()
                .into_iter()
                .map(|chain| (chain, ChainRole::Receiving)),
        );
        if forgotten.is_empty() {
            return;
        }
        if let Err(error) = self.db().and_then(|db| db.forget_chains(&forgotten)) {
            self.journal.undeleted_origins = forgotten;
            self.store_error("forget chain origins", error);
        }
    }

    /// Journals this round's received messages (and the chains that
    /// opened them) in one append, with what an earlier failed append
    /// held, then confirms them to the node, which acknowledges them.
    /// `false` if the append failed: nothing is confirmed then (the
    /// senders keep the messages), and everything is kept for a later
    /// append (see [`Journal::append_failed`]).
    pub(super) fn journal_received(&mut self, now: Instant) -> bool {
        self.append_waiting(now, Vec::new()).is_ok()
    }

    /// Appends, in one record, what a failed append held, our `new_sends`,
    /// every received message not journaled yet, and every chain state
    /// the node changed: the chains are stored with the messages they
    /// sealed or opened, so after a crash neither is ahead of the other
    /// (a receiving chain ahead of a message not stored would never open
    /// it again). Then confirms the received ones to the node. On an
    /// error all of it is kept for the next append.
    pub(super) fn append_waiting(
        &mut self,
        now: Instant,
        new_sends: Vec<Message>,
    ) -> Result<(), StoreError> {
        let (received, receipts): (Vec<Message>, Vec<Receipt>) =
            self.journal.take_uncommitted().into_iter().unzip();
        let (mut messages, mut chains) = self.journal.take_held();
        chains.extend(self.node.take_chain_updates());
        messages.extend(new_sends);
        let sent = messages.len();
        messages.extend(received);
        if let Err(error) = self.journal(now, &messages, chains.clone()) {
            let received = messages.split_off(sent);
            let round = received.into_iter().zip(receipts).collect();
            self.journal.append_failed(round, messages, chains);
            self.store_error("store messages", &error);
            return Err(error);
        }
        self.journal.appended();
        for room in std::mem::take(&mut self.journal.unsaved_rooms) {
            if let Err(error) = self.persist_room(&room) {
                self.journal.hold_room(now, room);
                self.store_error("store a room", error);
            }
        }
        for message in &messages[..sent] {
            self.note_if_file(message);
        }
        self.journal.mark_journaled();
        for receipt in receipts {
            self.node.confirm_stored(now, receipt);
        }
        Ok(())
    }
}
