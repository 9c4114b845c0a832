//! Unit tests of the state machine driven by hand (no simulator), so
//! single decisions are visible; one file per topic.

mod admission;
mod bounds;
mod delivery;
mod packet;
mod peers;

use super::*;
use rand::SeedableRng;

fn peer(n: u8) -> PeerId {
    PeerId([n; 32])
}

fn room_id() -> RoomId {
    RoomId([7; 32])
}

fn msg(n: u64) -> MessageId {
    MessageId(*blake3::hash(&n.to_le_bytes()).as_bytes())
}

fn endpoint(n: u8, seed: u64, now: Instant) -> Reliable {
    Reliable::new(peer(n), Config::default(), StdRng::seed_from_u64(seed), now)
}

fn all_transmits(ep: &mut Reliable, now: Instant) -> Vec<Transmit> {
    std::iter::from_fn(|| ep.poll_transmit(now)).collect()
}

fn all_events(ep: &mut Reliable) -> Vec<Event> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

fn decode(transmit: &Transmit) -> Packet {
    Packet::decode(&transmit.bytes).expect("the endpoint only emits valid packets")
}

/// Two endpoints in a unicast room.
fn pair(now: Instant) -> (Reliable, Reliable) {
    let mut a = endpoint(1, 1, now);
    let mut b = endpoint(2, 2, now);
    a.join_room(
        room_id(),
        RoomConfig { multicast: false },
        [peer(1), peer(2)],
    );
    b.join_room(
        room_id(),
        RoomConfig { multicast: false },
        [peer(1), peer(2)],
    );
    (a, b)
}

fn deliver_all(from: &mut Reliable, to: &mut Reliable, now: Instant) -> usize {
    let transmits = all_transmits(from, now);
    for t in &transmits {
        to.handle_datagram(now, from.me(), Via::Unicast, &t.bytes)
            .expect("valid packet from a member");
    }
    transmits.len()
}
