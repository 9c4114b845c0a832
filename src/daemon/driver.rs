//! The IO shell around the node: a [`Driver`] for the network loop that owns
//! the [`Node`] and the [`Store`], maps peer ids to socket addresses, commits
//! received messages before acknowledging them and keeps the outbox.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::discovery::{Attach, Discovery, DiscoveryConfig, DiscoveryReport, is_registry_datagram};
use super::{DaemonError, Event, PeerAddr, PeerInfo, Status};
use crate::account::Account;
use crate::net::{Destination, Driver, Transmit, Via};
use crate::proto::crypto::{Envelope, Identity, PublicIdentity};
use crate::proto::ids::{MessageId, PeerId};
use crate::proto::node::{Node, NodeConfig, NodeEvent, Receipt, direct_room};
use crate::proto::reliable;
use crate::store::{Contact, DeliveryState, Message, MessageKey, Store};

/// How many of the newest stored messages per peer seed the node's
/// duplicate filter at start.
const REMEMBER_PER_PEER: usize = 4096;

/// What the daemon handle and the control socket ask of the network thread.
pub(crate) enum Command {
    Send {
        to: PeerId,
        text: String,
        reply: Sender<Result<MessageId, DaemonError>>,
    },
    AddPeer {
        peer: PeerAddr,
        reply: Sender<Result<(), DaemonError>>,
    },
    Peers {
        reply: Sender<Vec<PeerInfo>>,
    },
    Status {
        reply: Sender<Status>,
    },
    Subscribe(Sender<Event>),
    /// mDNS queued events for the loop (sent by its bridge thread).
    DiscoveryWake,
    /// The socket is bound: start mDNS and the registry.
    AttachDiscovery(Box<Attach>),
    /// What `kith discovery` shows.
    Discovery {
        reply: Sender<DiscoveryReport>,
    },
    /// Blocks (`true`) or unblocks a peer.
    Block {
        peer: PeerId,
        blocked: bool,
        reply: Sender<Result<(), DaemonError>>,
    },
}

/// A contact. Its address and presence live in [`Discovery`].
struct PeerEntry {
    public: PublicIdentity,
}

/// Owns the node and the store; lives on the `kith-net` thread.
pub(crate) struct NodeDriver {
    node: Node,
    store: Store,
    peers: HashMap<PeerId, PeerEntry>,
    /// Our messages not yet acknowledged, by the id the node sent them
    /// under, with the key of their stored copy (which differs for messages
    /// re-queued from the outbox after a restart).
    inflight: HashMap<MessageId, MessageKey>,
    subscribers: Vec<Sender<Event>>,
    status: Status,
    /// Address book and presence: mDNS, registry, keep-alives.
    discovery: Discovery,
}

pub(super) fn wall_clock_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl NodeDriver {
    pub(crate) fn new(
        account: Account,
        mut config: NodeConfig,
        peers: &[PeerAddr],
        discovery: DiscoveryConfig,
    ) -> Result<Self, DaemonError> {
        let now = Instant::now();
        config.wall_clock_millis = wall_clock_millis();
        // The registry client signs our registrations with the same identity.
        let registry_identity = Identity::from_secret_bytes(&account.identity.secret_bytes());
        let discovery = Discovery::new(discovery, registry_identity)?;
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        let node = Node::new(account.identity, config, StdRng::from_seed(seed), now);
        let mut driver = NodeDriver {
            node,
            store: account.store,
            peers: HashMap::new(),
            inflight: HashMap::new(),
            subscribers: Vec::new(),
            status: Status::default(),
            discovery,
        };
        for peer in peers {
            driver.add_peer(now, peer.clone())?;
        }
        for public in driver.discovery.configured_contacts() {
            driver.add_contact(now, public, None)?;
        }
        // Contacts from earlier runs are kept by id only: discovery finds
        // their keys (mDNS, registry) and then they become full contacts.
        for contact in driver.store.contacts()? {
            if !driver.peers.contains_key(&contact.peer) && contact.peer != driver.node.peer_id() {
                driver.discovery.want(now, contact.peer, None, None);
            }
        }
        Ok(driver)
    }

    /// Checkpoints the store; called once the loop has stopped.
    pub(crate) fn flush(self) -> Result<(), DaemonError> {
        self.store.checkpoint()?;
        Ok(())
    }

    /// Makes `peer` a contact at `addr`, seeds the duplicate filter with
    /// what we stored from it, and queues our outbox for it again.
    fn add_peer(&mut self, now: Instant, peer: PeerAddr) -> Result<(), DaemonError> {
        self.add_contact(now, peer.public, Some(peer.addr))
    }

    /// Makes `public` a contact, at `addr` if known (else discovery finds
    /// it); see [`NodeDriver::add_peer`].
    fn add_contact(
        &mut self,
        now: Instant,
        public: PublicIdentity,
        addr: Option<SocketAddr>,
    ) -> Result<(), DaemonError> {
        let id = public.peer_id();
        if id == self.node.peer_id() {
            return Err(DaemonError::UnknownPeer("our own id".to_owned()));
        }
        if self.node.is_blocked(&id) {
            return Err(DaemonError::Blocked(id.to_hex()));
        }
        self.discovery.want(now, id, Some(public.clone()), addr);
        if self.peers.contains_key(&id) {
            // Only the address changed; the node state stays as it is.
            return Ok(());
        }
        self.peers.insert(
            id,
            PeerEntry {
                public: public.clone(),
            },
        );
        if !self.store.contacts()?.iter().any(|c| c.peer == id) {
            self.store.upsert_contact(&Contact {
                peer: id,
                display_name: id.short(),
                verified: false,
            })?;
        }
        self.node.add_contact(now, public);
        if addr.is_some() {
            // A static address: send at once; presence probes it and says
            // when the peer stops answering.
            self.node.set_reachable(now, id, true);
        }
        let room = direct_room(self.node.peer_id(), id);
        let recent = self
            .store
            .messages_in_room(&room, None, REMEMBER_PER_PEER)?;
        self.node.remember_stored(recent.iter().map(|m| m.id));
        for key in self.store.outbox(&id)? {
            let Some(message) = self.store.message(&key)? else {
                continue;
            };
            let text = String::from_utf8_lossy(&message.body);
            let sent = self.node.send_direct_message(now, id, &text)?;
            self.inflight.insert(sent.id, key);
            self.status.messages_sent += 1;
        }
        Ok(())
    }

    /// Resolves what a user typed: a peer id, or a peer's public key.
    fn resolve(&self, to: PeerId) -> Option<PeerId> {
        if self.peers.contains_key(&to) {
            return Some(to);
        }
        self.peers
            .iter()
            .find(|(_, entry)| entry.public.to_bytes() == to.0)
            .map(|(id, _)| *id)
    }

    fn send(&mut self, now: Instant, to: PeerId, text: &str) -> Result<MessageId, DaemonError> {
        let to = match self.resolve(to) {
            Some(id) => id,
            None => {
                // A peer discovery knows (nearby): messaging it makes it a
                // contact.
                let public = self
                    .discovery
                    .public_of(&to)
                    .ok_or_else(|| DaemonError::UnknownPeer(to.to_hex()))?;
                let id = public.peer_id();
                self.add_contact(now, public, None)?;
                id
            }
        };
        let sent = self.node.send_direct_message(now, to, text)?;
        self.status.messages_sent += 1;
        let message = Message {
            id: sent.id,
            room: sent.room,
            sender: self.node.peer_id(),
            sender_seq: sent.seq,
            timestamp: sent.timestamp,
            body: text.as_bytes().to_vec(),
            envelope: sent.envelope,
        };
        let key = message.key();
        // The node already queued the message; if the store fails it still
        // goes out, but would not be re-sent after a restart.
        self.store.insert_messages(&[message])?;
        self.store.set_delivery(&key, &to, DeliveryState::Pending)?;
        self.inflight.insert(sent.id, key);
        Ok(sent.id)
    }

    /// Adds a listener for every event from now on.
    pub(crate) fn subscribe(&mut self, tx: Sender<Event>) {
        self.subscribers.push(tx);
    }

    fn publish(&mut self, event: Event) {
        self.subscribers.retain(|tx| tx.send(event.clone()).is_ok());
    }

    fn store_error(&mut self, what: &str, error: impl std::fmt::Display) {
        self.status.store_errors += 1;
        eprintln!("kith daemon: could not {what}: {error}");
    }

    /// Runs discovery's output: keep-alives into the node, online/offline
    /// to listeners, learned keys of stored contacts into full contacts.
    fn run_discovery(&mut self, now: Instant) {
        for event in self.discovery.drive(now, &mut self.node) {
            self.publish(event);
        }
        for public in self.discovery.take_learned() {
            if let Err(error) = self.add_contact(now, public, None) {
                self.store_error("restore a contact", error);
            }
        }
    }

    /// A nearby peer that messaged us becomes a contact.
    fn promote(&mut self, now: Instant, peer: PeerId) {
        if self.peers.contains_key(&peer) {
            return;
        }
        if let Some(public) = self.discovery.public_of(&peer) {
            self.discovery.mark_contact(peer);
            if let Err(error) = self.add_contact(now, public, None) {
                self.store_error("add a contact", error);
            }
        }
    }

    /// Drains discovery, then the node's events: commits every received
    /// message of this round in one transaction, then confirms them (which
    /// may produce more events, hence the loop).
    fn pump(&mut self, now: Instant) {
        self.run_discovery(now);
        loop {
            let mut batch: Vec<(Message, Receipt, Event)> = Vec::new();
            while let Some(event) = self.node.poll_event() {
                match event {
                    NodeEvent::MessageReceived {
                        room,
                        from,
                        id,
                        timestamp,
                        body,
                        envelope,
                        receipt,
                        ..
                    } => {
                        let text = String::from_utf8_lossy(&body).into_owned();
                        let message = stored(room, from, id, timestamp, body, envelope);
                        let event = Event::MessageReceived {
                            from,
                            id,
                            timestamp,
                            text,
                        };
                        batch.push((message, receipt, event));
                    }
                    NodeEvent::Undecryptable {
                        room,
                        from,
                        id,
                        timestamp,
                        envelope,
                        receipt,
                    } => {
                        // Stored with an empty body: the envelope is kept, so
                        // a later key can still open it.
                        let message = stored(room, from, id, timestamp, Vec::new(), envelope);
                        batch.push((message, receipt, Event::Undecryptable { from, id }));
                    }
                    NodeEvent::Delivered { to, id, .. } => {
                        if let Some(key) = self.inflight.remove(&id)
                            && let Err(error) =
                                self.store.set_delivery(&key, &to, DeliveryState::Delivered)
                        {
                            self.store_error("record a delivery", error);
                        }
                        self.status.delivered += 1;
                        self.publish(Event::Delivered { to, id });
                    }
                    NodeEvent::Undelivered { to, id, .. } => {
                        self.publish(Event::Undelivered { to, id });
                    }
                    // Presence (keep-alives) decides online and offline; the
                    // reliable layer's view only paces its retransmissions.
                    NodeEvent::PeerReachable { .. } | NodeEvent::PeerUnreachable { .. } => {}
                }
            }
            if batch.is_empty() {
                return;
            }
            let messages: Vec<Message> = batch.iter().map(|(m, _, _)| m.clone()).collect();
            if let Err(error) = self.store.insert_messages(&messages) {
                // Not confirmed, so not acknowledged: the sender keeps the
                // messages and they are not lost.
                self.store_error("store received messages", error);
                return;
            }
            for (message, receipt, event) in batch {
                self.promote(now, message.sender);
                self.status.messages_received += 1;
                self.node.confirm_stored(now, receipt);
                self.publish(event);
            }
        }
    }
}

/// A received message as the store keeps it.
fn stored(
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

impl Driver for NodeDriver {
    type Command = Command;

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, _via: Via, bytes: &[u8]) {
        if is_registry_datagram(bytes) {
            self.discovery
                .handle_registry_datagram(now, from, bytes, &mut self.node);
        } else if let Ok(Some(peer)) = self.node.handle_datagram(now, bytes) {
            // Authenticated: the peer is there, at this address.
            self.discovery.heard(now, peer, from);
        }
        // A dropped datagram is already counted by reason in the node.
        self.pump(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.node.handle_timeout(now);
        self.discovery.handle_timeout(now);
        self.pump(now);
    }

    fn handle_command(&mut self, now: Instant, command: Command) {
        // A caller that stopped waiting for a reply is not an error here,
        // so failed reply sends are ignored.
        match command {
            Command::Send { to, text, reply } => {
                let result = self.send(now, to, &text);
                let _ = reply.send(result);
            }
            Command::AddPeer { peer, reply } => {
                let result = self.add_peer(now, peer);
                let _ = reply.send(result);
            }
            Command::Peers { reply } => {
                let mut peers: Vec<PeerInfo> = self
                    .peers
                    .iter()
                    .filter(|(id, _)| !self.node.is_blocked(id))
                    .map(|(id, entry)| PeerInfo {
                        peer: *id,
                        public: entry.public.clone(),
                        addr: self.discovery.addr_of(id),
                        online: self.discovery.is_online(id),
                        outbox: self.store.outbox(id).map_or(0, |o| o.len()),
                        contact: true,
                    })
                    .collect();
                let nearby = self
                    .discovery
                    .nearby()
                    .filter(|(id, _, _)| !self.peers.contains_key(id));
                peers.extend(nearby.map(|(id, public, addr)| PeerInfo {
                    peer: id,
                    public,
                    addr,
                    online: self.discovery.is_online(&id),
                    outbox: 0,
                    contact: false,
                }));
                peers.sort_by_key(|p| p.peer);
                let _ = reply.send(peers);
            }
            Command::Status { reply } => {
                let mut status = self.status.clone();
                status.node = self.node.stats().clone();
                let _ = reply.send(status);
            }
            Command::Subscribe(tx) => self.subscribe(tx),
            // The events are drained by `pump` below.
            Command::DiscoveryWake => {}
            Command::AttachDiscovery(attach) => self.discovery.attach(now, *attach),
            Command::Discovery { reply } => {
                let _ = reply.send(self.discovery.report(now));
            }
            Command::Block {
                peer,
                blocked,
                reply,
            } => {
                let result = if peer == self.node.peer_id() {
                    Err(DaemonError::UnknownPeer("our own id".to_owned()))
                } else {
                    self.discovery
                        .set_blocked(now, peer, blocked, &mut self.node);
                    Ok(())
                };
                let _ = reply.send(result);
            }
        }
        self.pump(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some((addr, bytes)) = self.discovery.poll_transmit() {
            return Some(Transmit {
                to: Destination::Addr(addr),
                bytes,
            });
        }
        loop {
            let transmit = self.node.poll_transmit()?;
            let addr = match transmit.to {
                reliable::Destination::Peer(peer) => self.discovery.addr_of(&peer),
                // Rooms over multicast are not part of the daemon yet.
                reliable::Destination::Group(_) => None,
            };
            match addr {
                Some(addr) => {
                    return Some(Transmit {
                        to: Destination::Addr(addr),
                        bytes: transmit.bytes,
                    });
                }
                None => self.status.unroutable += 1,
            }
        }
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        [self.node.poll_timeout(), self.discovery.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }
}
