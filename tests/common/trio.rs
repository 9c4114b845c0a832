//! Three in-process daemons on 127.0.0.1 that know each other's
//! addresses, and bounded waits for their events: shared by the daemon
//! tests that need a room of three.

use std::net::SocketAddr;
use std::sync::mpsc::Receiver;

use kith::daemon::{DaemonHandle, Event};
use kith::proto::crypto::PublicIdentity;
use kith::proto::ids::{PeerId, RoomId};

use super::TempDir;
use super::daemons::wait_for;

pub struct Member {
    pub dir: TempDir,
    pub public: PublicIdentity,
    pub addr: SocketAddr,
    pub handle: Option<DaemonHandle>,
}

impl Member {
    pub fn handle(&self) -> &DaemonHandle {
        self.handle.as_ref().expect("running")
    }
}

/// Three daemons that know each other's addresses.
pub fn trio(name: &str) -> Vec<Member> {
    super::daemons::trio(name)
        .into_iter()
        .map(|(dir, public, handle)| Member {
            dir,
            public,
            addr: handle.local_addr(),
            handle: Some(handle),
        })
        .collect()
}

/// A creates "kitchen" with B and C; both accept.
pub fn join_room(nodes: &[Member], events: &[Receiver<Event>]) -> RoomId {
    let ids: Vec<PeerId> = nodes.iter().map(|n| n.public.peer_id()).collect();
    let room = nodes[0]
        .handle()
        .create_room("kitchen", &[ids[1], ids[2]])
        .expect("A creates the room");
    for (node, rx) in nodes[1..].iter().zip(&events[1..]) {
        wait_for(rx, |e| {
            matches!(e, Event::RoomInvited { room: r, .. } if *r == room).then_some(())
        });
        node.handle().answer_invite(room, true).expect("accept");
        wait_for(rx, |e| {
            matches!(e, Event::RoomJoined { room: r, .. } if *r == room).then_some(())
        });
    }
    room
}
