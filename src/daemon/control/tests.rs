use super::*;
use crate::daemon::DaemonError;
use crate::store::Mute;

#[test]
fn hex_round_trips_and_rejects_garbage() {
    let text = "héllo\nworld";
    assert_eq!(
        hex_decode(&hex_encode(text.as_bytes())).as_deref(),
        Some(text.as_bytes())
    );
    assert_eq!(hex_decode(""), Some(Vec::new()));
    assert_eq!(hex_decode("abc"), None);
    assert_eq!(hex_decode("zz"), None);
    assert_eq!(hex_decode("é1"), None);
}

#[test]
fn requests_round_trip_and_bad_lines_are_refused() {
    let word = |w: &str| w.to_owned();
    for request in [
        Request::Send {
            to: word("bob"),
            text: word("hi there\nsecond line"),
        },
        Request::Peers,
        Request::Blocked,
        Request::Accept { peer: word("ab12") },
        Request::Rooms,
        Request::Create {
            name: word("kitchen"),
            members: vec![word("bob"), word("carol")],
        },
        Request::Create {
            name: word("alone"),
            members: vec![],
        },
        Request::Invite {
            room: word("kitchen"),
            peer: word("dave"),
        },
        Request::Remove {
            room: word("kitchen"),
            peer: word("dave"),
        },
        Request::Answer {
            room: word("kitchen"),
            accept: true,
        },
        Request::Answer {
            room: word("kitchen"),
            accept: false,
        },
        Request::Leave {
            room: word("kitchen"),
        },
        Request::Block {
            peer: word("eve"),
            blocked: true,
        },
        Request::Block {
            peer: word("eve"),
            blocked: false,
        },
        Request::Mute {
            target: word("kitchen"),
            mute: Some(Mute::Until(1_700_000_000_000)),
        },
        Request::Mute {
            target: word("kitchen"),
            mute: Some(Mute::Indefinitely),
        },
        Request::Mute {
            target: word("kitchen"),
            mute: None,
        },
        Request::Status,
        Request::Listen(ListenFormat::Json),
        Request::Listen(ListenFormat::Text),
        Request::Listen(ListenFormat::TextWithMuted),
        Request::Stop,
        Request::Discovery,
        Request::Profile {
            name: word("Sam the man"),
        },
        Request::Search {
            text: word("dinner at"),
            room: None,
            before: None,
            limit: 50,
        },
        Request::Search {
            text: word("dinner"),
            room: Some(word("kitchen")),
            before: Some(crate::store::Position {
                timestamp: 17,
                id: crate::proto::ids::MessageId([3; 32]),
            }),
            limit: 1,
        },
        Request::ListenSince(ListenFormat::Json, 42),
        Request::Json(Listing::Peers),
        Request::Json(Listing::Rooms),
        Request::Json(Listing::Status),
        Request::Json(Listing::Discovery),
        Request::Json(Listing::Blocked),
        Request::History {
            room: word("kitchen"),
            before: None,
            limit: 50,
            json: true,
        },
        Request::History {
            room: word("kitchen"),
            before: Some(7),
            limit: 1,
            json: false,
        },
        Request::Read {
            room: word("kitchen"),
            up_to: None,
        },
        Request::Read {
            room: word("kitchen"),
            up_to: Some(9),
        },
    ] {
        assert_eq!(Request::parse(&request.emit()).ok(), Some(request));
    }
    assert_eq!(
        Request::parse("listen").ok(),
        Some(Request::Listen(ListenFormat::Json))
    );
    for bad in [
        "",
        "frobnicate",
        "send",
        "send 626f62",
        "send zz 6869",
        "send 626f62 ff",
        "listen xml",
        "mute 6b",
        "mute 6b soon",
        "create 6b  6c",
        "search 6b",
        "search 6b - - many",
        "search 6b - 12.zz 5",
        "é",
        "listen json since",
        "listen json since x",
        "listen json until 3",
        "json frobs",
        "history 6b",
        "history 6b 50 - xml",
        "history 6b x - json",
        "read 6b",
        "read 6b -3",
    ] {
        assert!(Request::parse(bad).is_err(), "{bad:?} parsed");
    }
    let long = format!("send 626f62 {}", "61".repeat(MAX_TEXT + 1));
    assert!(matches!(
        Request::parse(&long),
        Err(DaemonError::MessageTooLong(_))
    ));
}
