//! One side of one reconciliation session: whose turn it is, what a
//! round of the peer asks, and what this side answers.

use std::collections::{BTreeSet, HashSet, VecDeque};

use super::builder::Builder;
use super::codec::{Digest, Message, Mode, Opening};
use super::config::{FINGERPRINT_LEN, SALT_LEN, SHORT_ID_LEN, SyncConfig, SyncError};
use super::fingerprint::{Keys, ShortId, shared_salt};
use super::items::{Bound, ItemSet, Range};
use crate::proto::ids::MessageId;

/// Whose turn it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Responder before the first message.
    AwaitingInit,
    /// Receiving a round from the peer.
    Receiving,
    /// Finished: nothing more will be sent or accepted.
    Done,
}

/// One side of one reconciliation session with one peer.
///
/// Drive it: the initiator calls [`Reconciler::initiate`]; both sides feed
/// every message from the peer to [`Reconciler::handle_message`] and send
/// what [`Reconciler::poll_message`] yields, until
/// [`Reconciler::is_done`]. Then [`Reconciler::have_ids`] are the ids to
/// send (the peer lacks them) and [`Reconciler::need_ids`] the ids to fetch.
pub struct Reconciler {
    config: SyncConfig,
    keys: Option<Keys>,
    /// The initiator's opening; `None` on a responder.
    opening: Option<Opening>,
    /// A responder's secret shared with the peer, for nonce openings.
    shared: Option<[u8; 32]>,
    state: State,
    outgoing: VecDeque<Vec<u8>>,
    builder: Option<Builder>,
    /// Whether the round being received asks for an answer.
    round_asks: bool,
    round_messages: u32,
    round_open: usize,
    /// Once this round's budget is spent: the span whose remaining work is
    /// handed back to the peer as one fingerprint at the end of the round.
    deferred: Option<(Bound, Bound)>,
    /// Whether the peer's digest showed it holds a prefix of our set: we
    /// sent the rest, and the ranges of this round need no answer.
    round_settled: bool,
    /// Whether a digest arrived already (one per session and side).
    digest_seen: bool,
    rounds: u32,
    have: BTreeSet<MessageId>,
    need: BTreeSet<MessageId>,
}

impl Reconciler {
    /// The side that starts, with a fresh random salt from the caller's RNG.
    pub fn initiator(config: SyncConfig, salt: [u8; SALT_LEN]) -> Self {
        let mut reconciler = Reconciler::responder(config);
        reconciler.keys = Some(Keys::new(&salt));
        reconciler.opening = Some(Opening::Salt(salt));
        reconciler.state = State::Receiving;
        reconciler
    }

    /// The side that starts, between peers that share `secret` (their
    /// pairwise session's exporter): the first message carries `nonce` (a
    /// byte or a few) instead of the 16-byte salt, which both derive
    /// ([`shared_salt`]). Use a fresh nonce per session with the peer.
    pub fn initiator_shared(config: SyncConfig, secret: &[u8; 32], nonce: u64) -> Self {
        let mut reconciler = Reconciler::responder(config);
        reconciler.keys = Some(Keys::new(&shared_salt(secret, nonce)));
        reconciler.opening = Some(Opening::Nonce(nonce));
        reconciler.state = State::Receiving;
        reconciler
    }

    /// The side that answers, sharing `secret` with the initiator: it
    /// accepts a nonce opening as well as a salt.
    pub fn responder_shared(config: SyncConfig, secret: [u8; 32]) -> Self {
        let mut reconciler = Reconciler::responder(config);
        reconciler.shared = Some(secret);
        reconciler
    }

    /// The side that answers.
    pub fn responder(config: SyncConfig) -> Self {
        Reconciler {
            config: config.normalized(),
            keys: None,
            opening: None,
            shared: None,
            state: State::AwaitingInit,
            outgoing: Default::default(),
            builder: None,
            round_asks: false,
            round_messages: 0,
            round_open: 0,
            deferred: None,
            round_settled: false,
            digest_seen: false,
            rounds: 0,
            have: BTreeSet::new(),
            need: BTreeSet::new(),
        }
    }

    /// Queues the first round: the digest of the local set (its count and
    /// whole-set fingerprint). Call once, on an initiator.
    ///
    /// # Panics
    /// On a responder, which has no salt to start with (a caller bug).
    pub fn initiate(&mut self, set: &impl ItemSet) {
        let keys = self
            .keys
            .clone()
            .expect("only initiators start, and they are built with a salt");
        let mut builder = Builder::new(self.config.max_message_bytes, self.opening);
        builder.digest(Self::digest_of(set, &keys));
        let (messages, _) = builder.finish(true);
        self.outgoing.extend(messages);
    }

    fn digest_of(set: &impl ItemSet, keys: &Keys) -> Digest {
        let summary = set.summary(&Range::ALL);
        Digest {
            count: summary.count(),
            fingerprint: summary.fingerprint(keys),
        }
    }

    /// Answers the peer's digest. When the peer's set equals our first
    /// `count` items, it lacks exactly the rest: send those and settle the
    /// round. Otherwise a responder opens the range exchange (with its own
    /// digest when it holds fewer items, so the peer can do the same
    /// check), and an initiator answers the ranges that came with it.
    fn handle_digest(
        &mut self,
        set: &impl ItemSet,
        keys: &Keys,
        theirs: &Digest,
        builder: &mut Builder,
    ) -> Result<(), SyncError> {
        if self.digest_seen {
            return Err(SyncError::OutOfTurn("second digest"));
        }
        self.digest_seen = true;
        self.round_asks = true;
        let mine = set.summary(&Range::ALL);
        if mine.count() >= theirs.count {
            let cut = if theirs.count == 0 {
                Bound::MIN
            } else if theirs.count == mine.count() {
                Bound::Infinity
            } else {
                // 0 < theirs.count < mine.count(), so the pair exists.
                let (below, above) = set.pair_at(theirs.count).expect("index is inside the set");
                Bound::between(&below, &above)
            };
            let prefix = Range {
                lower: Bound::MIN,
                upper: cut,
            };
            if set.summary(&prefix).fingerprint(keys) == theirs.fingerprint {
                self.round_settled = true;
                if cut != Bound::Infinity {
                    self.send_from(set, keys, cut, builder)?;
                }
                return Ok(());
            }
        }
        if self.state == State::Receiving && self.rounds == 1 && self.opening.is_none() {
            // The responder's first answer: open the range exchange.
            if mine.count() < theirs.count {
                builder.digest(Self::digest_of(set, keys));
            }
            if mine.count() <= self.config.list_threshold as u64 {
                let shorts = set
                    .items(&Range::ALL, self.config.list_threshold)
                    .iter()
                    .map(|item| keys.short(&item.id))
                    .collect();
                builder.range(Bound::MIN, Bound::Infinity, Mode::List(shorts));
            } else {
                // Stay well inside the peer's caps on open ranges and on
                // messages per round (a range costs about 9 bytes).
                let by_messages = self.config.max_messages_per_round as usize / 2
                    * (self.config.max_message_bytes / 12);
                let most = self
                    .config
                    .initial_buckets
                    .min(self.config.max_open_ranges / 2)
                    .min(by_messages)
                    .max(2);
                let parts = (mine.count() / self.config.list_threshold as u64).clamp(2, most as u64)
                    as usize;
                self.split(set, keys, &Range::ALL, parts, builder);
            }
        }
        Ok(())
    }

    /// Sends every local item from `lower` up as a full id, within this
    /// round's id budget; what does not fit goes back as one fingerprint.
    fn send_from(
        &mut self,
        set: &impl ItemSet,
        keys: &Keys,
        lower: Bound,
        builder: &mut Builder,
    ) -> Result<(), SyncError> {
        let budget = self.id_budget();
        let range = Range {
            lower,
            upper: Bound::Infinity,
        };
        let items = set.items(&range, budget + 1);
        for item in items.iter().take(budget) {
            self.add_have(item.id)?;
            builder.id(item.id);
        }
        if items.len() > budget {
            let rest = Range {
                lower: Bound::between(&items[budget - 1], &items[budget]),
                upper: Bound::Infinity,
            };
            let fp = set.summary(&rest).fingerprint(keys);
            builder.range(rest.lower, rest.upper, Mode::Fingerprint(fp));
        }
        Ok(())
    }

    /// Handles one message from the peer.
    pub fn handle_message(&mut self, set: &impl ItemSet, bytes: &[u8]) -> Result<(), SyncError> {
        let result = self.handle_inner(set, bytes);
        if result.is_err() {
            self.state = State::Done;
            self.outgoing.clear();
        }
        result
    }

    fn handle_inner(&mut self, set: &impl ItemSet, bytes: &[u8]) -> Result<(), SyncError> {
        if self.state == State::Done {
            return Err(SyncError::OutOfTurn("session is finished"));
        }
        let message = Message::parse(bytes)?;
        let keys = self.accept_opening(&message)?;
        let mut builder = self.begin_message()?;
        if let Some(digest) = &message.digest {
            self.handle_digest(set, &keys, digest, &mut builder)?;
        }
        let ranges: &[(Bound, Mode)] = if self.round_settled {
            // The peer holds a prefix of our set and got the rest: nothing
            // it asks in this round needs an answer.
            &[]
        } else {
            &message.ranges
        };
        let mut lower = message.start;
        for (upper, mode) in ranges {
            let range = Range {
                lower,
                upper: *upper,
            };
            lower = *upper;
            self.handle_range(set, &keys, range, mode, &mut builder)?;
        }
        self.add_needs(&message.ids)?;
        if !message.last {
            self.builder = Some(builder);
            return Ok(());
        }
        self.finish_round(set, &keys, builder);
        Ok(())
    }

    /// Checks the message's salt or nonce against whose turn it is; on a
    /// responder's first message, derives the session keys from it.
    /// Returns the session keys.
    fn accept_opening(&mut self, message: &Message) -> Result<Keys, SyncError> {
        match (self.state, message.salt, message.nonce) {
            (State::AwaitingInit, Some(salt), None) => {
                self.keys = Some(Keys::new(&salt));
                self.state = State::Receiving;
            }
            (State::AwaitingInit, None, Some(nonce)) => {
                let secret = self.shared.ok_or(SyncError::OutOfTurn(
                    "a nonce opening without a shared secret",
                ))?;
                self.keys = Some(Keys::new(&shared_salt(&secret, nonce)));
                self.state = State::Receiving;
            }
            (State::AwaitingInit, _, _) => {
                return Err(SyncError::OutOfTurn("first message carries no salt"));
            }
            (_, Some(_), _) | (_, _, Some(_)) => {
                return Err(SyncError::OutOfTurn("salt after the start"));
            }
            (_, None, None) => {}
        }
        // Initiators are built with keys; responders get them from the
        // first message, checked just above.
        Ok(self.keys.clone().expect("keys are set once receiving"))
    }

    /// Counts one more message of the round being received, starting the
    /// round (and its answer) on its first message, within the caps on
    /// rounds and messages per round. Returns the answer being built.
    fn begin_message(&mut self) -> Result<Builder, SyncError> {
        if self.builder.is_none() {
            self.rounds += 1;
            if self.rounds > self.config.max_rounds {
                return Err(SyncError::CapExceeded("rounds"));
            }
            self.builder = Some(Builder::new(self.config.max_message_bytes, None));
            self.round_asks = false;
            self.round_messages = 0;
            self.round_open = 0;
            self.deferred = None;
            self.round_settled = false;
        }
        self.round_messages += 1;
        if self.round_messages > self.config.max_messages_per_round {
            return Err(SyncError::CapExceeded("messages per round"));
        }
        Ok(self.builder.take().expect("created above"))
    }

    /// Handles one range of the peer's message: counts it against the cap
    /// on open ranges, folds it into the deferred span once this round's
    /// budget is spent, and otherwise answers it by its mode.
    fn handle_range(
        &mut self,
        set: &impl ItemSet,
        keys: &Keys,
        range: Range,
        mode: &Mode,
        builder: &mut Builder,
    ) -> Result<(), SyncError> {
        if !matches!(mode, Mode::Skip) {
            self.round_asks = true;
            self.round_open += 1;
            if self.round_open > self.config.max_open_ranges {
                return Err(SyncError::CapExceeded("open ranges"));
            }
        }
        if let Some((from, to)) = &mut self.deferred
            && !matches!(mode, Mode::Need(_))
        {
            // Everything after the budget ran out is answered as one
            // range; a Need costs only ids, so it is still served.
            if range.lower.less_than(from) {
                *from = range.lower;
            }
            if to.less_than(&range.upper) {
                *to = range.upper;
            }
            return Ok(());
        }
        if matches!(mode, Mode::Fingerprint(_) | Mode::List(_))
            && builder.messages() > 0
            && builder.messages() * 4 + 4 > self.config.max_messages_per_round as usize
        {
            // Ranges of this round fill a quarter of the messages the
            // peer accepts (ids may fill half): the rest goes back as
            // one range, as with open ranges.
            self.deferred = Some((range.lower, range.upper));
            return Ok(());
        }
        match mode {
            Mode::Skip => Ok(()),
            Mode::Fingerprint(theirs) => {
                self.answer_fingerprint(set, keys, &range, theirs, builder);
                Ok(())
            }
            Mode::List(theirs) => self.answer_list(set, keys, &range, theirs, builder),
            Mode::Need(wanted) => self.answer_need(set, keys, &range, wanted, builder),
        }
    }

    /// A peer's fingerprint: nothing when ours matches, else our list of
    /// short ids when the range is small, else a split.
    fn answer_fingerprint(
        &mut self,
        set: &impl ItemSet,
        keys: &Keys,
        range: &Range,
        theirs: &[u8; FINGERPRINT_LEN],
        builder: &mut Builder,
    ) {
        let summary = set.summary(range);
        if summary.fingerprint(keys) == *theirs {
            // The range matches: nothing to answer.
            return;
        }
        if summary.count() <= self.config.list_threshold as u64 {
            let shorts = set
                .items(range, self.config.list_threshold)
                .iter()
                .map(|item| keys.short(&item.id))
                .collect();
            builder.range(range.lower, range.upper, Mode::List(shorts));
        } else {
            self.split_or_defer(set, keys, range, builder);
        }
    }

    /// A peer's list: send the full ids it lacks and ask for the short ids
    /// we lack, unless the range is too large to list (split it) or this
    /// round already carries enough ids (defer it).
    fn answer_list(
        &mut self,
        set: &impl ItemSet,
        keys: &Keys,
        range: &Range,
        theirs: &[ShortId],
        builder: &mut Builder,
    ) -> Result<(), SyncError> {
        let summary = set.summary(range);
        let count = summary.count();
        if count > self.config.max_reply_items as u64 {
            self.split_or_defer(set, keys, range, builder);
            return Ok(());
        }
        if builder.ids > 0 && builder.ids + count as usize > self.id_budget() {
            // This round carries enough ids; the peer lists
            // again after comparing our fingerprint.
            self.deferred = Some((range.lower, range.upper));
            return Ok(());
        }
        let theirs: HashSet<ShortId> = theirs.iter().copied().collect();
        let mine = set.items(range, self.config.max_reply_items);
        let mut mine_short = HashSet::with_capacity(mine.len());
        for item in &mine {
            let short = keys.short(&item.id);
            mine_short.insert(short);
            if !theirs.contains(&short) {
                self.add_have(item.id)?;
                builder.id(item.id);
            }
        }
        let mut wanted: Vec<ShortId> = theirs
            .iter()
            .filter(|short| !mine_short.contains(*short))
            .copied()
            .collect();
        if !wanted.is_empty() {
            wanted.sort_unstable();
            self.emit_need(range, wanted, builder);
        }
        Ok(())
    }

    /// A peer's need: send the full ids of ours it names.
    fn answer_need(
        &mut self,
        set: &impl ItemSet,
        keys: &Keys,
        range: &Range,
        wanted: &[ShortId],
        builder: &mut Builder,
    ) -> Result<(), SyncError> {
        let wanted: HashSet<ShortId> = wanted.iter().copied().collect();
        // We listed at most `list_threshold` items for this range;
        // the cap keeps a forged range from costing more.
        let limit = self.config.list_threshold.max(self.config.max_reply_items);
        for item in set.items(range, limit) {
            if wanted.contains(&keys.short(&item.id)) {
                self.add_have(item.id)?;
                builder.id(item.id);
            }
        }
        Ok(())
    }

    /// Records the full ids the peer sent as ids we lack.
    fn add_needs(&mut self, ids: &[MessageId]) -> Result<(), SyncError> {
        for id in ids {
            if self.need.insert(*id)
                && self.have.len() + self.need.len() > self.config.max_differences
            {
                return Err(SyncError::CapExceeded("differences"));
            }
        }
        Ok(())
    }

    /// The round is complete: answer it, with the deferred span as one
    /// fingerprint. An empty answer is still sent when the peer asked
    /// something, so it knows everything matched; a round that asks
    /// nothing back ends the session.
    fn finish_round(&mut self, set: &impl ItemSet, keys: &Keys, mut builder: Builder) {
        if let Some((lower, upper)) = self.deferred.take() {
            let range = Range { lower, upper };
            let fp = set.summary(&range).fingerprint(keys);
            builder.range(lower, upper, Mode::Fingerprint(fp));
        }
        let (messages, asks) = builder.finish(self.round_asks);
        self.outgoing.extend(messages);
        if !asks {
            self.state = State::Done;
        }
    }

    /// Sends `wanted` short ids for `range`, in several ranges of the same
    /// extent (each in its own message) when they do not fit one message;
    /// the peer answers each, and repeated answers deduplicate.
    fn emit_need(&self, range: &Range, wanted: Vec<ShortId>, builder: &mut Builder) {
        let per_message = (self.config.max_message_bytes.saturating_sub(120) / SHORT_ID_LEN).max(1);
        for chunk in wanted.chunks(per_message) {
            builder.range(range.lower, range.upper, Mode::Need(chunk.to_vec()));
        }
    }

    fn add_have(&mut self, id: MessageId) -> Result<(), SyncError> {
        if self.have.insert(id) && self.have.len() + self.need.len() > self.config.max_differences {
            return Err(SyncError::CapExceeded("differences"));
        }
        Ok(())
    }

    /// Splits a differing range, or, when this round already asks the peer
    /// about half as many ranges as its cap allows, defers it: everything
    /// from here to the end of the round goes back as one fingerprint, which
    /// the peer splits next round. Either way
    /// the exchange progresses, and an honest sender never makes the peer
    /// trip [`SyncConfig::max_open_ranges`].
    fn split_or_defer(
        &mut self,
        set: &impl ItemSet,
        keys: &Keys,
        range: &Range,
        builder: &mut Builder,
    ) {
        // The first split of a round always happens, so rounds progress.
        if builder.open > 0
            && builder.open + self.config.branching > self.config.max_open_ranges / 2
        {
            self.deferred = Some((range.lower, range.upper));
        } else {
            self.split(set, keys, range, self.config.branching, builder);
        }
    }

    /// Most full ids one outgoing round carries: half of what fits the
    /// peer's message cap, so an honest sender never trips it.
    fn id_budget(&self) -> usize {
        let per_message = (self.config.max_message_bytes - 16) / 32;
        (self.config.max_messages_per_round as usize / 2 * per_message).max(1)
    }

    /// Emits fingerprints of `parts` sub-ranges of `range` split at local
    /// items.
    fn split(
        &self,
        set: &impl ItemSet,
        keys: &Keys,
        range: &Range,
        parts: usize,
        builder: &mut Builder,
    ) {
        let mut lower = range.lower;
        let pairs = set.split_pairs(range, parts.max(2));
        let bounds = pairs
            .iter()
            .map(|(a, b)| Bound::between(a, b))
            .chain(std::iter::once(range.upper));
        for upper in bounds {
            let sub = Range { lower, upper };
            let fp = set.summary(&sub).fingerprint(keys);
            builder.range(lower, upper, Mode::Fingerprint(fp));
            lower = upper;
        }
    }

    /// The next message to send to the peer, if any.
    pub fn poll_message(&mut self) -> Option<Vec<u8>> {
        self.outgoing.pop_front()
    }

    /// Whether the session is over (after draining [`Self::poll_message`]).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Ids the peer lacks: send their envelopes.
    pub fn have_ids(&self) -> impl Iterator<Item = &MessageId> {
        self.have.iter()
    }

    /// Ids we lack: fetch their envelopes.
    pub fn need_ids(&self) -> impl Iterator<Item = &MessageId> {
        self.need.iter()
    }

    /// Rounds received so far.
    pub fn rounds(&self) -> u32 {
        self.rounds
    }
}
