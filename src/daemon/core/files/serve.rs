//! Serving a file: requests from members checked against the offer's
//! room, chunks queued per peer and sealed as they go out.

use super::super::*;
use super::*;

impl DaemonCore {
    /// A file-protocol message from `peer`, a member of `room`.
    pub(in crate::daemon::core) fn on_file_message(
        &mut self,
        now: Instant,
        room: RoomId,
        peer: PeerId,
        payload: &[u8],
    ) {
        if self.node.is_blocked(&peer) {
            self.status.files.requests_refused += 1;
            return;
        }
        let Ok(message) = FileMessage::parse(payload) else {
            self.status.files.malformed += 1;
            return;
        };
        match message {
            FileMessage::Get {
                offer,
                first,
                count,
            } => self.on_get(now, room, peer, offer, first, count),
            FileMessage::Chunk {
                offer,
                index,
                sealed,
            } => self.on_chunk(now, room, peer, offer, index, &sealed),
            FileMessage::Unavailable { offer } => self.on_unavailable(now, peer, offer),
        }
    }

    pub(in crate::daemon::core) fn on_get(
        &mut self,
        now: Instant,
        room: RoomId,
        peer: PeerId,
        offer: MessageId,
        first: u32,
        count: u32,
    ) {
        let stored = match self.store.offer(&offer) {
            Ok(Some(stored)) if stored.room == room => stored,
            Ok(_) => {
                // Not a file offered in a room this peer shares with us.
                self.status.files.requests_refused += 1;
                return;
            }
            Err(error) => {
                self.store_error("read a file offer", error);
                return;
            }
        };
        let chunks = stored.offer.chunks();
        if count == 0 || count > MAX_GET_CHUNKS || first >= chunks {
            self.status.files.requests_refused += 1;
            return;
        }
        if !self.store.blob_exists(&stored.offer.hash) {
            let answer = FileMessage::Unavailable { offer }.emit();
            let _ = self.node.send_file(now, peer, room, answer);
            return;
        }
        let last = first.saturating_add(count).min(chunks);
        let queue = self.files.serving.entry(peer).or_default();
        for index in first..last {
            if queue.len() >= MAX_SERVE_QUEUE {
                self.status.files.requests_over_limit += 1;
                continue;
            }
            queue.push_back((room, offer, index));
        }
        self.serve(now);
    }

    /// Sends queued chunks until each peer's stream is full.
    pub(in crate::daemon::core) fn serve(&mut self, now: Instant) {
        self.files.serve_at = None;
        let peers: Vec<PeerId> = self.files.serving.keys().copied().collect();
        for peer in peers {
            while let Some(&(room, offer, index)) =
                self.files.serving.get(&peer).and_then(|q| q.front())
            {
                let chunk = match self.sealed_chunk(&offer, index) {
                    Ok(chunk) => chunk,
                    Err(error) => {
                        log::warn!("cannot serve chunk {index} of {}: {error}", offer.short());
                        if let Some(queue) = self.files.serving.get_mut(&peer) {
                            queue.pop_front();
                        }
                        continue;
                    }
                };
                let message = FileMessage::Chunk {
                    offer,
                    index,
                    sealed: chunk,
                };
                match self.node.send_file(now, peer, room, message.emit()) {
                    Ok(()) => {
                        self.status.files.chunks_sent += 1;
                        if let Some(queue) = self.files.serving.get_mut(&peer) {
                            queue.pop_front();
                        }
                    }
                    Err(NodeError::Backpressure) => {
                        self.files.serve_at = Some(now + SERVE_RETRY);
                        break;
                    }
                    Err(_) => {
                        // No longer a member, or not a contact: drop it all.
                        self.files.serving.remove(&peer);
                        break;
                    }
                }
            }
        }
        self.files.serving.retain(|_, q| !q.is_empty());
    }

    pub(in crate::daemon::core) fn sealed_chunk(
        &self,
        offer: &MessageId,
        index: u32,
    ) -> Result<Vec<u8>, DaemonError> {
        let stored = self
            .store
            .offer(offer)?
            .ok_or_else(|| file_error("offer gone"))?;
        let plain = self
            .store
            .read_blob_chunk(&stored.offer.hash, stored.offer.size, index)?;
        seal_chunk(&stored.offer, index, &plain).map_err(file_error)
    }
}
