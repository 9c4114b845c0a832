use super::names::display_name_of;
use super::*;

#[test]
fn display_name_is_the_instance_label_as_received() {
    let id = PeerId([0xab; 32]);
    assert_eq!(
        display_name_of("J. Smith._kith._udp.local.", &id),
        "J. Smith"
    );
    assert_eq!(display_name_of("a\\b._KITH._udp.local.", &id), "a\\b");
    assert_eq!(display_name_of("odd", &id), "odd");
    assert_eq!(display_name_of("._kith._udp.local.", &id), "");
    // Our suffix goes, for the id it names only.
    assert_eq!(
        display_name_of("Alice [abababab]._kith._udp.local.", &id),
        "Alice"
    );
    assert_eq!(
        display_name_of("Alice [ABABABAB]._kith._udp.local.", &id),
        "Alice"
    );
    let other = PeerId([0xcd; 32]);
    assert_eq!(
        display_name_of("Alice [abababab]._kith._udp.local.", &other),
        "Alice [abababab]"
    );
    // A name that is only the suffix stays whole.
    assert_eq!(
        display_name_of(" [abababab]._kith._udp.local.", &id),
        "[abababab]"
    );
}

#[test]
fn instance_names_carry_the_peer_id_and_fit_one_label() {
    let id = PeerId([0x12; 32]);
    assert_eq!(instance_name_for(&id, "Alice"), "Alice [12121212]");
    assert_eq!(instance_name_for(&id, "  "), "kith [12121212]");
    let long = "é".repeat(40);
    let name = instance_name_for(&id, &long);
    assert!(name.len() <= MAX_INSTANCE_NAME, "{}", name.len());
    assert!(name.ends_with(" [12121212]"), "{name}");
    // Same display name, different peers: different instance names.
    assert_ne!(
        instance_name_for(&id, "Alice"),
        instance_name_for(&PeerId([0x13; 32]), "Alice")
    );
}

#[test]
fn record_ttl_grows_with_the_link_between_its_bounds() {
    let rule = RecordTtl::default();
    // Small links: RFC 6762's 120 s, as upstream.
    assert_eq!(rule.secs_for(1), 120);
    assert_eq!(rule.secs_for(5), 120);
    assert_eq!(rule.secs_for(13), 120);
    // Then 9 s per node, which holds a round (one query, one answer
    // per node, every 80 % of the TTL) near 8 packets a minute...
    assert_eq!(rule.secs_for(14), 126);
    assert_eq!(rule.secs_for(19), 171);
    // ... up to the bound on how long a vanished node stays nearby.
    assert_eq!(rule.secs_for(20), 180);
    assert_eq!(rule.secs_for(1000), 180);
    assert_eq!(rule.secs_for(usize::MAX), 180);
    let fixed = RecordTtl::fixed(Duration::from_secs(3));
    assert_eq!((fixed.secs_for(1), fixed.secs_for(500)), (3, 3));
    // Never 0 (a goodbye) and never below `min`, even if misconfigured.
    assert_eq!(RecordTtl::fixed(Duration::ZERO).secs_for(4), 1);
    let inverted = RecordTtl {
        min: Duration::from_secs(60),
        max: Duration::from_secs(30),
        per_host: Duration::from_secs(1),
    };
    assert_eq!(inverted.secs_for(100), 60);
}

#[test]
fn record_ttl_is_retuned_as_peers_come_and_go() {
    let rule = RecordTtl::default();
    let mut shared = Shared {
        record_ttl: rule.secs_for(1),
        ..Shared::default()
    };
    let name = |i: usize| format!("p{i}._kith._udp.local.");
    // 12 peers and us: still 120 s, nothing to change.
    for i in 0..12 {
        shared.tracked.insert(name(i), PeerId([i as u8; 32]));
        assert_eq!(shared.retune_ttl(&rule), None);
    }
    shared.tracked.insert(name(12), PeerId([12; 32]));
    assert_eq!(shared.retune_ttl(&rule), Some(126));
    assert_eq!(shared.retune_ttl(&rule), None, "told once");
    shared.tracked.remove(&name(12));
    assert_eq!(shared.retune_ttl(&rule), Some(120));
}
