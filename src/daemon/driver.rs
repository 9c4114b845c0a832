//! The IO shell around the daemon's core: a [`Driver`] for the network
//! loop. It owns the [`DaemonCore`], reads the clocks once per input and
//! hands them in ([`Now`]), and does the IO the core only asks for: the
//! subscribers' channels and wakers, and the search thread. Everything it
//! decides is in [`super::core`].

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Sender;
use std::time::Instant;

use super::address_book::DiscoveryConfig;
use super::api::{ReplyTo, Update};
use super::clock::Now;
// Named through the driver by its callers too.
pub(crate) use super::command::{Command, Sink};
use super::core::{DaemonCore, FileJob, Output};
use super::file_jobs::FileWorker;
use super::search::{SearchResult, Searcher};
use super::{DaemonError, Event, PeerAddr};
use crate::account::Account;
use crate::net::{CommandSender, Driver, Transmit, Via};
use crate::proto::node::NodeConfig;

/// A listener.
struct Subscriber {
    id: u64,
    sink: Sink,
    waker: Option<Box<dyn Fn() + Send>>,
    /// Replaying what was stored after a cursor: `(since, replayed up to)`.
    /// Message events stored after `since` are left out meanwhile: the
    /// replay reads them from the store.
    replay: Option<(u64, u64)>,
}

impl Subscriber {
    /// Queues `update`; `false` once the subscriber is gone.
    fn send(&self, update: Update) -> bool {
        match (&self.sink, update) {
            (Sink::Events(tx), Update::Event(event)) => tx.send(event).is_ok(),
            // A plain event channel gets no replies or replay ends.
            (Sink::Events(_), _) => true,
            (Sink::Updates(tx), update) => tx.send(update).is_ok(),
        }
    }

    fn wake(&self) {
        if let Some(waker) = &self.waker {
            waker();
        }
    }
}

/// Owns the core; lives on the `kith-net` thread.
pub(crate) struct NodeDriver {
    core: DaemonCore,
    subscribers: Vec<Subscriber>,
    /// The id the next subscriber gets.
    next_subscriber: u64,
    /// The search thread, started at the first search.
    searcher: Option<Searcher>,
    /// The time of the last input, for a replay's next chunk "at once".
    last_input: Instant,
    /// The file thread, started at the first file job.
    file_worker: Option<FileWorker>,
    /// How the file thread reaches the loop (given once it runs).
    file_results: Option<CommandSender<Command>>,
}

impl NodeDriver {
    /// Rebuilds the core from the store (see [`DaemonCore::new`]), with a
    /// fresh random seed.
    pub(crate) fn new(
        account: Account,
        config: NodeConfig,
        peers: &[PeerAddr],
        discovery: DiscoveryConfig,
        clock: Now,
    ) -> Result<Self, DaemonError> {
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        let core = DaemonCore::new(account, config, peers, discovery, clock, seed)?;
        Ok(NodeDriver {
            core,
            subscribers: Vec::new(),
            next_subscriber: 0,
            searcher: None,
            last_input: clock.mono,
            file_worker: None,
            file_results: None,
        })
    }

    /// Checkpoints the store; called once the loop has stopped.
    pub(crate) fn flush(mut self, clock: Now) -> Result<(), DaemonError> {
        // A file being read is cancelled (its share was answered at
        // `stopping`) before the store closes.
        self.file_worker.take();
        self.core.shutdown(clock)
    }

    /// Adds a listener for every event from now on (after replaying what
    /// was stored after `since`, if given); returns its id.
    pub(crate) fn subscribe(
        &mut self,
        sink: Sink,
        since: Option<u64>,
        waker: Option<Box<dyn Fn() + Send>>,
    ) -> u64 {
        let id = self.next_subscriber;
        self.next_subscriber += 1;
        self.subscribers.push(Subscriber {
            id,
            sink,
            waker,
            replay: since.map(|since| (since, since)),
        });
        self.core.set_listening(true);
        id
    }

    /// The time of an input, read once here for everything it does.
    fn input(&mut self, now: Instant) -> Now {
        self.last_input = now;
        Now::at(now)
    }

    /// Hands out what the core produced: replies at once, events in one
    /// batch per subscriber (woken once).
    fn deliver(&mut self) {
        let mut events = Vec::new();
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Reply(to, result) => self.reply(to, result),
                Output::Event(event) => events.push(event),
                Output::Job(job) => self.run_job(job),
            }
        }
        if !events.is_empty() {
            self.deliver_events(&events);
        }
    }

    /// Hands `job` to the file thread (started if needed); without one it
    /// runs here, as before there was one.
    fn run_job(&mut self, job: FileJob) {
        if self.file_worker.is_none()
            && let Some(commands) = &self.file_results
        {
            let commands = commands.clone();
            let started = FileWorker::start(self.core.store().blob_worker(), move |done| {
                // Fails only once the loop has stopped; nobody waits then.
                let _ = commands.send(Command::FileJobDone(done));
            });
            match started {
                Ok(worker) => self.file_worker = Some(worker),
                Err(error) => log::warn!("{error}; reading shared files on the network thread"),
            }
        }
        let job = match &self.file_worker {
            Some(worker) => match worker.submit(job) {
                Ok(()) => return,
                Err(job) => job,
            },
            None => job,
        };
        let done = job.run(&self.core.store().blob_worker(), &AtomicBool::new(false));
        let now = self.input(Instant::now());
        self.core.handle_file_job_done(now, done);
    }

    /// Answers a request: on its caller's channel, or in its subscriber's
    /// stream of updates.
    fn reply(&mut self, to: ReplyTo, result: Result<super::api::Reply, DaemonError>) {
        match to {
            ReplyTo::Channel(tx) => {
                // A caller that stopped waiting is not an error here.
                let _ = tx.send(result);
            }
            ReplyTo::Subscriber(id, request) => {
                if let Some(index) = self.subscribers.iter().position(|s| s.id == id) {
                    if self.subscribers[index].send(Update::Reply(request, result)) {
                        self.subscribers[index].wake();
                    } else {
                        self.subscribers.remove(index);
                        self.core.set_listening(!self.subscribers.is_empty());
                    }
                }
            }
        }
    }

    fn deliver_events(&mut self, events: &[Event]) {
        self.subscribers.retain(|subscriber| {
            let mut sent = false;
            for event in events {
                // A subscriber catching up reads stored messages from the
                // store, in order; their live events would repeat them or
                // come ahead of older ones.
                if let (Some((since, _)), Some(cursor)) = (subscriber.replay, event.cursor())
                    && cursor > since
                {
                    continue;
                }
                if !subscriber.send(Update::Event(event.clone())) {
                    return false;
                }
                sent = true;
            }
            if sent {
                subscriber.wake();
            }
            true
        });
        self.core.set_listening(!self.subscribers.is_empty());
    }

    /// Hands each subscriber that is catching up the next chunk of what
    /// was stored after its cursor; one that reaches the end is told
    /// ([`Update::CaughtUp`]) and from then on gets live events.
    fn replay_step(&mut self) {
        for index in 0..self.subscribers.len() {
            let Some((since, done_up_to)) = self.subscribers[index].replay else {
                continue;
            };
            let chunk = self.core.replay_after(done_up_to);
            let mut updates: Vec<Update> = chunk.events.into_iter().map(Update::Event).collect();
            let subscriber = &mut self.subscribers[index];
            if chunk.finished {
                subscriber.replay = None;
                updates.push(Update::CaughtUp { cursor: chunk.last });
            } else {
                subscriber.replay = Some((since, chunk.last));
            }
            let mut alive = true;
            for update in updates {
                if !subscriber.send(update) {
                    alive = false;
                    break;
                }
            }
            subscriber.wake();
            if !alive {
                // Dropped at the next delivery.
                subscriber.replay = None;
            }
        }
    }

    /// Starts the search thread if needed and hands it the core's job;
    /// the thread replies.
    fn search(
        &mut self,
        room: Option<&str>,
        query: crate::store::SearchQuery,
        reply: Sender<Result<Vec<SearchResult>, DaemonError>>,
    ) {
        let submitted = self
            .core
            .search_job(room, query, reply.clone())
            .and_then(|job| {
                if self.searcher.is_none() {
                    self.searcher = Some(Searcher::start(self.core.store())?);
                }
                if let Some(searcher) = &self.searcher {
                    searcher.submit(job);
                }
                Ok(())
            });
        if let Err(error) = submitted {
            // A caller that stopped waiting is not an error here.
            let _ = reply.send(Err(error));
        }
    }
}

impl Driver for NodeDriver {
    type Command = Command;

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, _via: Via, bytes: &[u8]) {
        let now = self.input(now);
        self.core.handle_datagram(now, from, bytes);
        self.deliver();
    }

    fn handle_timeout(&mut self, now: Instant) {
        let now = self.input(now);
        self.core.handle_timeout(now);
        self.deliver();
    }

    fn handle_command(&mut self, now: Instant, command: Command) {
        let now = self.input(now);
        match command {
            Command::Request { request, reply } => self.core.handle_request(now, request, reply),
            Command::Subscribe {
                sink,
                since,
                waker,
                reply,
            } => {
                let id = self.subscribe(sink, since, waker);
                let _ = reply.send(id);
                self.core.handle_wake(now);
            }
            // The events are drained by the core's pump.
            Command::DiscoveryWake => self.core.handle_wake(now),
            Command::AttachDiscovery(attach) => self.core.handle_attach(now, *attach),
            Command::Search {
                text,
                room,
                before,
                limit,
                reply,
            } => {
                let query = crate::store::SearchQuery {
                    text,
                    before,
                    limit,
                };
                self.search(room.as_deref(), query, reply);
                self.core.handle_wake(now);
            }
            Command::AttachFileJobs(commands) => self.file_results = Some(commands),
            Command::FileJobDone(done) => self.core.handle_file_job_done(now, done),
            Command::SetProfile { name, reply } => {
                let result = self.core.handle_set_profile(now, &name);
                let _ = reply.send(result);
            }
        }
        self.deliver();
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.core.poll_transmit()
    }

    fn flush(&mut self, now: Instant) {
        let now = self.input(now);
        self.core.end_burst(now);
        self.deliver();
    }

    /// The datagrams are out: the core commits its sends and the
    /// subscribers hear what happened (see [`DaemonCore::sent`]).
    fn sent(&mut self, now: Instant) {
        let now = self.input(now);
        self.core.sent(now);
        self.deliver();
        self.replay_step();
    }

    fn stopping(&mut self, now: Instant) {
        let now = self.input(now);
        self.core.stopping(now);
        self.deliver();
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        // A subscriber catching up gets its next chunk at the next turn.
        let replaying = self
            .subscribers
            .iter()
            .any(|s| s.replay.is_some())
            .then_some(self.last_input);
        self.core.poll_timeout().into_iter().chain(replaying).min()
    }
}
