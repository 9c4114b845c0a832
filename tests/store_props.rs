//! Property tests: whatever messages arrive, in whatever batches and with
//! whatever duplicates, paging and sync ranges agree with a simple model.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{TempDir, message};
use kith::proto::ids::{MessageId, RoomId};
use kith::store::{KdfParams, Position, Store};
use proptest::prelude::*;

/// Small timestamps force ties (ordered by id); some sit near `u64::MAX` to
/// exercise the sign-bit mapping.
fn timestamp(raw: u64) -> u64 {
    if raw.is_multiple_of(5) {
        u64::MAX - raw
    } else {
        raw
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn paging_and_ranges_match_a_model(
        arrivals in prop::collection::vec((0u64..25, 0u8..3), 1..80),
        batch_sizes in prop::collection::vec(1usize..12, 1..10),
        page in 1usize..15,
        (low, high) in (0u64..30, 0u64..30),
    ) {
        let dir = TempDir::new("props");
        let mut store = Store::create(&dir.db(), "p", KdfParams::insecure_fast_for_tests()).unwrap();
        let messages: Vec<_> = arrivals
            .iter()
            .enumerate()
            .map(|(n, &(ts, room))| message(RoomId([room; 32]), n as u64, timestamp(ts), b"m"))
            .collect();

        let mut model: BTreeMap<RoomId, BTreeSet<Position>> = BTreeMap::new();
        let mut rest = messages.as_slice();
        for size in batch_sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (batch, tail) = rest.split_at((*size).min(rest.len()));
            let fresh = store.insert_messages(batch).unwrap();
            prop_assert_eq!(fresh.len(), batch.len());
            for message in batch {
                model.entry(message.room).or_default().insert(Position {
                    timestamp: message.timestamp,
                    id: message.id,
                });
            }
            rest = tail;
        }
        // Everything again: all duplicates, nothing new.
        prop_assert!(store.insert_messages(&messages).unwrap().is_empty());

        for room in (0u8..3).map(|byte| RoomId([byte; 32])) {
            let expected: Vec<Position> = model.get(&room).map(|set| set.iter().rev().copied().collect()).unwrap_or_default();
            let mut paged = Vec::new();
            let mut before = None;
            loop {
                let chunk = store.messages_in_room(&room, before, page).unwrap();
                prop_assert!(chunk.len() <= page);
                let Some(last) = chunk.last() else { break };
                before = Some(Position { timestamp: last.timestamp, id: last.id });
                paged.extend(chunk.iter().map(|message| Position { timestamp: message.timestamp, id: message.id }));
            }
            prop_assert_eq!(&paged, &expected);

            let lower = Position { timestamp: timestamp(low), id: MessageId([0x80; 32]) };
            let upper = Position { timestamp: timestamp(high), id: MessageId([0x80; 32]) };
            let want: Vec<Position> = expected.iter().rev().filter(|p| **p >= lower && **p < upper).copied().collect();
            prop_assert_eq!(store.messages_in_range(&room, lower, Some(upper)).unwrap(), want);
            let open_ended: Vec<Position> = expected.iter().rev().filter(|p| **p >= lower).copied().collect();
            prop_assert_eq!(store.messages_in_range(&room, lower, None).unwrap(), open_ended);
        }
    }
}
