//! Delivery on the real core under a store that cannot write and a store
//! that lost its last writes.

use std::time::Duration;

use kith::daemon::Delivery;
use kith::proto::sim::LinkConfig;

use crate::sim_support::Cluster;

/// "Delivered" means stored: with the receiver's disk full nothing it
/// gets is acknowledged, so the sender reports nothing delivered and keeps
/// every message; once space is freed each is stored once, in order, and
/// reported delivered once. (Before, the receiver dropped what it could
/// not journal, then refused every retransmission as a replay: the
/// messages stayed "queued" until it restarted.)
#[test]
fn delivered_waits_for_the_receivers_store() {
    let mut c = Cluster::new(7, 2, LinkConfig::lossy(0.1));
    c.run_for(Duration::from_millis(500));
    c.set_full_disk(1, true);
    let sent: Vec<_> = (0..10).map(|i| c.send(0, 1, &format!("m{i}"))).collect();
    c.run_for(Duration::from_secs(20));
    assert!(
        c.delivered(0).is_empty(),
        "nothing delivered to a full disk"
    );
    assert!(c.received(1).is_empty(), "nothing reported as received");
    for id in &sent {
        assert_ne!(c.delivery(0, 1, *id), Some(Delivery::Stored));
    }
    c.set_full_disk(1, false);
    let all = |c: &mut Cluster| sent.iter().all(|id| c.delivered(0).contains(id));
    assert!(
        c.run_until(Duration::from_secs(120), all),
        "delivered once freed"
    );
    let texts: Vec<String> = c.received(1).into_iter().map(|(_, t)| t).collect();
    let want: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(texts, want, "each stored once, in order");
    for id in &sent {
        assert_eq!(c.delivered(0).iter().filter(|d| *d == id).count(), 1);
    }
}

/// A receiver whose disk lost its last writes (restored from a snapshot
/// taken before the messages came) gets them again from the sender by
/// reconciliation, though the sender had them delivered.
#[test]
fn a_receiver_restored_from_before_the_messages_gets_them_again_by_sync() {
    let mut c = Cluster::new(8, 2, LinkConfig::default());
    c.run_for(Duration::from_millis(500));
    let before = c.snapshot(1);
    let sent: Vec<_> = (0..5).map(|i| c.send(0, 1, &format!("m{i}"))).collect();
    let all = |c: &mut Cluster| sent.iter().all(|id| c.delivered(0).contains(id));
    assert!(c.run_until(Duration::from_secs(30), all));
    c.restore(1, &before);
    let room = kith::proto::node::direct_room(c.id(0), c.id(1));
    assert!(c.held(1, room).is_empty(), "the restored store lost them");
    let back = |c: &mut Cluster| c.held(1, room).len() == 5;
    assert!(
        c.run_until(Duration::from_secs(300), back),
        "reconciliation brings them back"
    );
}
