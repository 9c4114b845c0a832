//! Answering a request from the handle, a subscription or the control
//! socket.

use super::*;

impl DaemonCore {
    /// Carries out one request; its answer comes out of
    /// [`DaemonCore::poll_output`] (a send's once it is stored, at the end
    /// of its batch).
    pub(crate) fn handle_request(&mut self, now: Now, request: Request, reply: ReplyTo) {
        self.clock = now;
        self.request(now.mono, request, reply);
        self.pump(now.mono);
    }

    fn request(&mut self, now: Instant, request: Request, reply: ReplyTo) {
        // Reads of what lives in memory need no store; everything else
        // sees the sends before it, and every message and delivery state,
        // in the database (no transaction when nothing waits).
        let in_memory = matches!(
            request,
            Request::Send { .. }
                | Request::Peers
                | Request::Rooms
                | Request::Status
                | Request::Blocked
                | Request::Discovery
                | Request::Resolve { .. }
        );
        let sends = matches!(request, Request::Send { .. } | Request::ShareFile { .. });
        if !in_memory || (sends && self.journal.disk_full().is_some()) {
            // A send after the disk was full tries the store first: space
            // may have been freed since the last retry.
            self.commit_sends(now);
            if let Err(error) = self.write_deliveries() {
                self.store_error("store journaled messages and deliveries", error);
            }
        }
        if let Request::ShareFile { to, path, caption } = request {
            if let Some(why) = self.journal.disk_full().map(str::to_owned) {
                self.reply(reply, Err(DaemonError::NotSent(why)));
                return;
            }
            self.share_file(to, &path, caption, reply);
            return;
        }
        if let Request::Send { to, text } = request {
            if let Some(why) = self.journal.disk_full().map(str::to_owned) {
                // Refused before it goes out: a message sent and not stored
                // would be missing from our history and never sent again.
                self.reply(reply, Err(DaemonError::NotSent(why)));
                return;
            }
            self.send(now, to, text, reply);
            return;
        }
        let result = self.answer(now, request);
        self.reply(reply, result);
    }

    /// Seals and queues a message; it is signed with the rest of the batch.
    fn send(&mut self, now: Instant, to: Target, text: String, reply: ReplyTo) {
        {
            match self.prepare_send(now, to, &text) {
                Ok(recipients) => {
                    for peer in &recipients {
                        self.discovery.activity(now, *peer);
                    }
                    self.unsaved_sends.push(UnsavedSend {
                        body: text.into_bytes(),
                        recipients,
                        reply,
                    });
                }
                Err(error) => self.reply(reply, Err(error)),
            }
        }
    }

    /// The answer to any request but a send.
    pub(super) fn answer(&mut self, now: Instant, request: Request) -> Result<Reply, DaemonError> {
        Ok(match request {
            Request::Send { .. } | Request::ShareFile { .. } => {
                return Err(DaemonError::BadReply);
            }
            Request::FetchFile { file, to_dir } => {
                self.fetch_file(now, file, to_dir)?;
                Reply::Done
            }
            Request::Files { room } => Reply::Files(self.files_in(room)?),
            Request::File { file } => Reply::Files(vec![self.file_entry(file)?]),
            Request::AddPeer(peer) => {
                self.add_peer(now, *peer)?;
                Reply::Done
            }
            Request::Peers => Reply::Peers(self.peers()),
            Request::Status => {
                let mut status = self.status.clone();
                status.node = self.node.stats().clone();
                status.sync = self.sync.stats().clone();
                Reply::Status(Box::new(status))
            }
            Request::Rooms => Reply::Rooms(self.rooms()),
            Request::CreateRoom { name, members } => {
                Reply::Room(self.create_room(now, &name, &members)?)
            }
            Request::Invite { room, peer } => {
                self.node.invite(now, room, peer)?;
                self.persist_room(&room)?;
                Reply::Done
            }
            Request::RemoveMember { room, peer } => {
                self.node.remove_member(now, room, peer)?;
                self.persist_room(&room)?;
                Reply::Done
            }
            Request::Leave { room } => {
                self.node.leave_room(now, room)?;
                self.members_changed = true;
                self.db()?.leave_group(&room)?;
                Reply::Done
            }
            Request::Block { peer, blocked } => Reply::Peer(self.block(now, peer, blocked)?),
            Request::Mute { target, mute } => {
                self.mute_and_recount(target, mute)?;
                Reply::Done
            }
            Request::Blocked => Reply::Blocked(self.store.blocked()?),
            Request::AnswerInvite { room, accept } => {
                if accept {
                    self.node.accept_invite(now, room)?;
                } else {
                    self.node.decline_invite(now, room)?;
                }
                Reply::Done
            }
            Request::Accept { peer } => Reply::Peer(self.accept(now, peer)?),
            Request::Discovery => Reply::Discovery(Box::new(self.discovery.report(now))),
            Request::History {
                room,
                before,
                limit,
            } => Reply::History(self.history(room, before, limit)?),
            Request::MarkRead { room, up_to } => Reply::Unread(self.mark_read(room, up_to)?),
            Request::Resolve { text, kind } => Reply::Target(self.resolve(&text, kind)?),
        })
    }
}
