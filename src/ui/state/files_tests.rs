//! The file rules of the main window, checked on plain data: a file
//! offered, downloaded with progress, opened; a failed download retried;
//! our own file available at once; the picker and the downloads folder.

use super::*;
use std::path::PathBuf;

const T0: Millis = 1_765_000_000_000;

fn peer(n: u8) -> PeerId {
    PeerId([n; 32])
}

const KITCHEN: RoomId = RoomId([10; 32]);

fn msg_id(n: u8) -> MessageId {
    MessageId([n; 32])
}

fn meta(n: u8, name: &str, size: u64) -> FileMeta {
    FileMeta {
        id: FileId([n; 32]),
        name: name.to_owned(),
        size,
    }
}

/// Me (0) with Sam (1) in "kitchen", which is open.
fn state() -> AppState {
    let mut state = AppState::new(peer(0), "00".repeat(32), "Me".into());
    state.apply(Update::Tick { now: T0 });
    state.apply(Update::People(vec![PersonInfo {
        id: peer(1),
        public_key: String::new(),
        name: "Sam".into(),
        relation: Relation::Contact,
        online: true,
        last_seen: None,
        muted: None,
    }]));
    state.apply(Update::Rooms(vec![RoomInfo {
        id: KITCHEN,
        name: "kitchen".into(),
        direct: None,
        admin: Some(peer(0)),
        members: vec![peer(0), peer(1)],
        muted: None,
        invited: false,
    }]));
    state.apply(Update::History {
        room: KITCHEN,
        messages: Vec::new(),
        complete: true,
    });
    state.open = Some(KITCHEN);
    state
}

fn offered(state: &mut AppState, n: u8, file: FileMeta) {
    state.apply(Update::File(FileUpdate::Offered {
        message: MessageInfo {
            room: KITCHEN,
            from: peer(1),
            id: msg_id(n),
            timestamp: T0 + 1_000,
            text: file_text(&file.name),
            cursor: None,
            hlc: 0,
            deliveries: None,
        },
        file,
        muted: false,
    }));
}

fn row_status(state: &AppState, n: u8) -> FileStatus<'_> {
    let message = state.histories[&KITCHEN]
        .messages
        .iter()
        .find(|m| m.id == Some(msg_id(n)))
        .expect("the message is shown");
    state.file_row(message).expect("a file row").status
}

#[test]
fn a_file_is_offered_downloaded_with_progress_then_opened() {
    let mut state = state();
    offered(&mut state, 1, meta(7, "report.pdf", 2_400_000));
    let message = &state.histories[&KITCHEN].messages[0];
    let row = state.file_row(message).expect("a file row");
    assert_eq!(
        (row.name, row.size, row.status),
        ("report.pdf", Some(2_400_000), FileStatus::Offered)
    );
    // The sidebar's preview names the file.
    assert_eq!(
        state.rooms[&KITCHEN].preview,
        Some((peer(1), "📎 report.pdf".to_owned()))
    );

    let requests = state.handle_intent(Intent::File(FileIntent::Download(msg_id(1))));
    assert_eq!(
        requests,
        [Request::File(FileRequest::Download {
            file: meta(7, "report.pdf", 2_400_000),
            room: KITCHEN,
            message: msg_id(1),
            from: peer(1),
            dir: None,
        })]
    );
    assert_eq!(
        row_status(&state, 1),
        FileStatus::Downloading { received: 0 }
    );
    // A second click while it runs asks nothing more.
    assert!(
        state
            .handle_intent(Intent::File(FileIntent::Download(msg_id(1))))
            .is_empty()
    );

    for received in [600_000, 1_200_000, 900_000] {
        state.apply(Update::File(FileUpdate::Progress {
            file: FileId([7; 32]),
            received,
        }));
    }
    // Progress never goes back (an older report arriving late).
    assert_eq!(
        row_status(&state, 1),
        FileStatus::Downloading {
            received: 1_200_000
        }
    );

    let path = PathBuf::from("/home/me/Downloads/report.pdf");
    state.apply(Update::File(FileUpdate::Downloaded {
        file: FileId([7; 32]),
        path: path.clone(),
    }));
    assert_eq!(row_status(&state, 1), FileStatus::Available { path: &path });
    assert_eq!(
        state.handle_intent(Intent::File(FileIntent::Open(msg_id(1)))),
        [Request::File(FileRequest::Open {
            path: path.clone(),
            reveal: false
        })]
    );
    assert_eq!(
        state.handle_intent(Intent::File(FileIntent::ShowInFolder(msg_id(1)))),
        [Request::File(FileRequest::Open { path, reveal: true })]
    );
    // Downloaded already: Download asks nothing.
    assert!(
        state
            .handle_intent(Intent::File(FileIntent::Download(msg_id(1))))
            .is_empty()
    );
}

#[test]
fn a_failed_download_shows_why_and_retries() {
    let mut state = state();
    offered(&mut state, 1, meta(7, "big.iso", 9_000_000));
    state.handle_intent(Intent::File(FileIntent::Download(msg_id(1))));
    state.apply(Update::File(FileUpdate::DownloadFailed {
        file: FileId([7; 32]),
        error: "Sam went offline".into(),
    }));
    assert_eq!(
        row_status(&state, 1),
        FileStatus::Failed("Sam went offline")
    );
    // Opening a file that is not here asks nothing.
    assert!(
        state
            .handle_intent(Intent::File(FileIntent::Open(msg_id(1))))
            .is_empty()
    );
    let retry = state.handle_intent(Intent::File(FileIntent::Download(msg_id(1))));
    assert!(matches!(
        retry.as_slice(),
        [Request::File(FileRequest::Download { message, .. })] if *message == msg_id(1)
    ));
    assert_eq!(
        row_status(&state, 1),
        FileStatus::Downloading { received: 0 }
    );
}

#[test]
fn a_fetch_started_elsewhere_shows_its_progress() {
    let mut state = state();
    offered(&mut state, 1, meta(7, "big.iso", 9_000));
    // `kith fetch` on the same node, or the node retrying by itself.
    state.apply(Update::File(FileUpdate::Progress {
        file: FileId([7; 32]),
        received: 4_000,
    }));
    assert_eq!(
        row_status(&state, 1),
        FileStatus::Downloading { received: 4_000 }
    );
    state.apply(Update::File(FileUpdate::DownloadFailed {
        file: FileId([7; 32]),
        error: "gone".into(),
    }));
    state.apply(Update::File(FileUpdate::Progress {
        file: FileId([7; 32]),
        received: 100,
    }));
    assert_eq!(
        row_status(&state, 1),
        FileStatus::Downloading { received: 100 }
    );
    state.apply(Update::File(FileUpdate::Downloaded {
        file: FileId([7; 32]),
        path: "/tmp/big.iso".into(),
    }));
    // A late report does not take an available file back.
    state.apply(Update::File(FileUpdate::Progress {
        file: FileId([7; 32]),
        received: 9_000,
    }));
    assert!(matches!(
        row_status(&state, 1),
        FileStatus::Available { .. }
    ));
}

#[test]
fn the_same_file_offered_twice_is_downloaded_once() {
    let mut state = state();
    offered(&mut state, 1, meta(7, "notes.txt", 10));
    offered(&mut state, 2, meta(7, "notes-again.txt", 10));
    state.handle_intent(Intent::File(FileIntent::Download(msg_id(1))));
    state.apply(Update::File(FileUpdate::Downloaded {
        file: FileId([7; 32]),
        path: "/tmp/notes.txt".into(),
    }));
    assert!(matches!(
        row_status(&state, 2),
        FileStatus::Available { .. }
    ));
}

#[test]
fn our_own_file_is_available_as_soon_as_it_is_shared() {
    let mut state = state();
    let path = PathBuf::from("/home/me/photo.jpg");
    let requests = state.handle_intent(Intent::File(FileIntent::Share(path.clone())));
    let [
        Request::File(FileRequest::Share {
            local,
            room,
            peer: to,
            path: asked,
            caption: None,
        }),
    ] = requests.as_slice()
    else {
        panic!("one share request: {requests:?}");
    };
    assert_eq!((*room, *to, asked), (KITCHEN, None, &path));
    let local = *local;
    // Shown at once, "preparing" (the node reads and hashes it).
    let shown = state.histories[&KITCHEN].messages.last().expect("a row");
    assert_eq!(shown.text, "📎 photo.jpg");
    let row = state.file_row(shown).expect("a file row");
    assert_eq!(
        (row.name, row.size, row.status),
        ("photo.jpg", None, FileStatus::Preparing)
    );
    assert_eq!(
        state.rooms[&KITCHEN].preview,
        Some((peer(0), "📎 photo.jpg".to_owned()))
    );

    state.apply(Update::File(FileUpdate::Shared {
        local,
        result: Ok((msg_id(9), meta(3, "photo.jpg", 1_234))),
    }));
    assert_eq!(row_status(&state, 9), FileStatus::Available { path: &path });
    let shown = state.histories[&KITCHEN].messages.last().expect("a row");
    assert!(matches!(
        shown.own.as_ref().map(|o| &o.delivery),
        Some(Delivery::Sent { .. })
    ));
    assert!(state.files.pending.is_empty());
}

#[test]
fn a_failed_share_shows_why_and_shares_again() {
    let mut state = state();
    let path = PathBuf::from("/home/me/huge.bin");
    let requests = state.handle_intent(Intent::File(FileIntent::Share(path.clone())));
    let [Request::File(FileRequest::Share { local, .. })] = requests.as_slice() else {
        panic!("one share request: {requests:?}");
    };
    let local = *local;
    state.apply(Update::File(FileUpdate::Shared {
        local,
        result: Err("the file is larger than 256 MiB".into()),
    }));
    let shown = state.histories[&KITCHEN].messages.last().expect("a row");
    assert_eq!(
        state.file_row(shown).expect("a file row").status,
        FileStatus::ShareFailed {
            local,
            error: "the file is larger than 256 MiB"
        }
    );
    assert!(
        state
            .toasts
            .iter()
            .any(|t| t.error && t.text.contains("256 MiB"))
    );
    assert_eq!(
        state.handle_intent(Intent::File(FileIntent::RetryShare(local))),
        [Request::File(FileRequest::Share {
            local,
            room: KITCHEN,
            peer: None,
            path,
            caption: None,
        })]
    );
    let shown = state.histories[&KITCHEN].messages.last().expect("a row");
    assert_eq!(
        state.file_row(shown).expect("a file row").status,
        FileStatus::Preparing
    );
}

#[test]
fn files_in_history_and_ours_from_before_are_known() {
    let mut state = state();
    state.apply(Update::File(FileUpdate::Known(vec![
        (msg_id(1), meta(1, "a.txt", 5), Transfer::Offered),
        (
            msg_id(2),
            meta(2, "b.txt", 6),
            Transfer::Available {
                path: "/tmp/b.txt".into(),
            },
        ),
        (
            msg_id(3),
            meta(3, "c.txt", 7),
            Transfer::Downloading { received: 3 },
        ),
    ])));
    state.apply(Update::History {
        room: KITCHEN,
        messages: [(1, "a.txt"), (2, "b.txt"), (3, "c.txt")]
            .into_iter()
            .map(|(n, name)| MessageInfo {
                room: KITCHEN,
                from: peer(1),
                id: msg_id(n),
                timestamp: T0 + u64::from(n),
                text: file_text(name),
                cursor: Some(u64::from(n)),
                hlc: 0,
                deliveries: None,
            })
            .collect(),
        complete: true,
    });
    assert_eq!(row_status(&state, 1), FileStatus::Offered);
    assert!(matches!(
        row_status(&state, 2),
        FileStatus::Available { .. }
    ));
}

#[test]
fn the_picker_lists_directories_and_shares_into_the_room_it_was_opened_for() {
    let mut state = state();
    assert_eq!(
        state.handle_intent(Intent::File(FileIntent::Attach)),
        [Request::File(FileRequest::List { dir: None })]
    );
    state.apply(Update::File(FileUpdate::Listing {
        dir: "/home/me".into(),
        entries: Ok(vec![DirEntry {
            name: "Pictures".into(),
            dir: true,
            size: 0,
        }]),
    }));
    let picker = state.files.picker.as_ref().expect("open");
    assert_eq!(picker.dir, Some(PathBuf::from("/home/me")));
    assert_eq!(
        state.handle_intent(Intent::File(FileIntent::Browse("/home/me/Pictures".into()))),
        [Request::File(FileRequest::List {
            dir: Some("/home/me/Pictures".into())
        })]
    );
    state.apply(Update::File(FileUpdate::Listing {
        dir: "/home/me/Pictures".into(),
        entries: Ok(Vec::new()),
    }));
    // Another room is opened meanwhile: the file goes where it was meant.
    state.open = None;
    let requests = state.handle_intent(Intent::File(FileIntent::Share(
        "/home/me/Pictures/cat.png".into(),
    )));
    assert!(matches!(
        requests.as_slice(),
        [Request::File(FileRequest::Share { room, .. })] if *room == KITCHEN
    ));
    assert!(state.files.picker.is_none());
    // The next picker opens where this one ended.
    state.open = Some(KITCHEN);
    assert_eq!(
        state.handle_intent(Intent::File(FileIntent::Attach)),
        [Request::File(FileRequest::List {
            dir: Some("/home/me/Pictures".into())
        })]
    );
}

#[test]
fn the_system_picker_is_used_when_there_and_the_own_one_when_not() {
    let mut state = state();
    state.apply(Update::File(FileUpdate::NativePicker(true)));
    assert_eq!(
        state.handle_intent(Intent::File(FileIntent::Attach)),
        [Request::File(FileRequest::PickNative { dir: None })]
    );
    // Open already: a second click opens no second one.
    assert!(
        state
            .handle_intent(Intent::File(FileIntent::Attach))
            .is_empty()
    );
    state.apply(Update::File(FileUpdate::NativePicked {
        path: Some("/home/me/a.txt".into()),
        missing: false,
    }));
    let requests = state.poll_requests();
    assert!(
        matches!(
            requests.as_slice(),
            [Request::File(FileRequest::Share { room, path, .. })]
                if *room == KITCHEN && path == &PathBuf::from("/home/me/a.txt")
        ),
        "{requests:?}"
    );
    // Cancelled: nothing.
    state.handle_intent(Intent::File(FileIntent::Attach));
    state.apply(Update::File(FileUpdate::NativePicked {
        path: None,
        missing: false,
    }));
    assert!(state.poll_requests().is_empty());
    assert!(state.files.picker.is_none());
    // Not there after all: the app's own picker, there and from now on.
    assert_eq!(
        state.handle_intent(Intent::File(FileIntent::Attach)),
        [Request::File(FileRequest::PickNative {
            dir: Some("/home/me".into())
        })]
    );
    state.apply(Update::File(FileUpdate::NativePicked {
        path: None,
        missing: true,
    }));
    assert_eq!(
        state.poll_requests(),
        [Request::File(FileRequest::List {
            dir: Some("/home/me".into())
        })]
    );
    assert!(state.files.picker.is_some());
    state.handle_intent(Intent::File(FileIntent::ClosePicker));
    assert_eq!(
        state.handle_intent(Intent::File(FileIntent::Attach)),
        [Request::File(FileRequest::List {
            dir: Some("/home/me".into())
        })]
    );
}

#[test]
fn a_typed_path_is_full_or_from_home() {
    let mut state = state();
    assert!(
        state
            .handle_intent(Intent::File(FileIntent::Share("notes.txt".into())))
            .is_empty()
    );
    assert!(state.toasts.iter().any(|t| t.text.contains("full path")));
    assert!(matches!(
        state
            .handle_intent(Intent::File(FileIntent::Share("~/notes.txt".into())))
            .as_slice(),
        [Request::File(FileRequest::Share { .. })]
    ));
}

#[test]
fn nothing_is_shared_where_nothing_can_be_sent() {
    let mut state = state();
    state.apply(Update::Removed { room: KITCHEN });
    assert!(
        state
            .handle_intent(Intent::File(FileIntent::Attach))
            .is_empty()
    );
    assert!(
        state
            .handle_intent(Intent::File(FileIntent::Share("/etc/hosts".into())))
            .is_empty()
    );
    assert!(state.files.picker.is_none());
    assert!(state.toasts.iter().any(|t| t.text.contains("removed")));
}

#[test]
fn downloads_go_where_settings_say() {
    let mut state = state();
    offered(&mut state, 1, meta(7, "a.txt", 1));
    state.apply(Update::File(FileUpdate::SaveTo {
        dir: "/home/me/Downloads".into(),
        chosen: false,
    }));
    // The default is the node's to resolve.
    let requests = state.handle_intent(Intent::File(FileIntent::Download(msg_id(1))));
    assert!(matches!(
        requests.as_slice(),
        [Request::File(FileRequest::Download { dir: None, .. })]
    ));
    assert_eq!(
        state.handle_intent(Intent::File(FileIntent::SetSaveTo("~/Files".into()))),
        [Request::File(FileRequest::SetSaveTo {
            dir: Some("~/Files".into())
        })]
    );
    assert!(
        state
            .handle_intent(Intent::File(FileIntent::SetSaveTo("relative/dir".into())))
            .is_empty()
    );
    assert_eq!(
        state.handle_intent(Intent::File(FileIntent::SetSaveTo(" ".into()))),
        [Request::File(FileRequest::SetSaveTo { dir: None })]
    );
    state.apply(Update::File(FileUpdate::SaveTo {
        dir: "/srv/files".into(),
        chosen: true,
    }));
    state.apply(Update::File(FileUpdate::DownloadFailed {
        file: FileId([7; 32]),
        error: "x".into(),
    }));
    let requests = state.handle_intent(Intent::File(FileIntent::Download(msg_id(1))));
    assert!(matches!(
        requests.as_slice(),
        [Request::File(FileRequest::Download { dir: Some(dir), .. })] if dir == &PathBuf::from("/srv/files")
    ));
}

#[test]
fn sizes_read_as_people_write_them() {
    assert_eq!(size_label(0), "0 B");
    assert_eq!(size_label(999), "999 B");
    assert_eq!(size_label(1_000), "1.0 kB");
    assert_eq!(size_label(2_400_000), "2.4 MB");
    assert_eq!(size_label(12_345_678), "12 MB");
    assert_eq!(size_label(999_999), "1.0 MB");
    assert_eq!(size_label(3 * 1_000_000_000), "3.0 GB");
    assert_eq!(size_label(u64::MAX), "18447 PB");
}

#[test]
fn names_cannot_hide_their_real_extension() {
    assert_eq!(plain_name("invoice\u{202E}fdp.exe"), "invoice_fdp.exe");
    assert_eq!(plain_name("a\u{2066}b\u{2069}\u{200B}.txt"), "a_b__.txt");
    assert_eq!(plain_name("résumé 2027.pdf"), "résumé 2027.pdf");
}

/// Types `text` into `room`'s composer, as the composer reports it.
fn draft(state: &mut AppState, room: RoomId, text: &str) {
    assert!(
        state
            .handle_intent(Intent::Draft {
                room,
                text: text.to_owned()
            })
            .is_empty()
    );
}

/// The caption of the one share request in `requests`.
fn shared_caption(requests: &[Request]) -> Option<String> {
    match requests {
        [Request::File(FileRequest::Share { caption, .. })] => caption.clone(),
        other => panic!("one share request: {other:?}"),
    }
}

#[test]
fn the_composer_text_goes_with_a_shared_file_as_its_caption() {
    let mut state = state();
    draft(&mut state, KITCHEN, "  here's the invoice\n");
    let requests = state.handle_intent(Intent::File(FileIntent::Share(
        "/home/me/invoice.pdf".into(),
    )));
    assert_eq!(
        shared_caption(&requests).as_deref(),
        Some("here's the invoice")
    );
    // One message: the file, its caption under it; the composer is empty.
    let messages = &state.histories[&KITCHEN].messages;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].text, "📎 invoice.pdf\nhere's the invoice");
    assert!(state.file_row(&messages[0]).is_some());
    assert!(!state.drafts.contains_key(&KITCHEN));
    // The preview names the file (its first line).
    assert_eq!(
        state.rooms[&KITCHEN].preview,
        Some((peer(0), "📎 invoice.pdf…".to_owned()))
    );
    // A failed share is retried with the same caption.
    let [Request::File(FileRequest::Share { local, .. })] = requests.as_slice() else {
        unreachable!("checked above");
    };
    let local = *local;
    state.apply(Update::File(FileUpdate::Shared {
        local,
        result: Err("cannot read it".into()),
    }));
    let again = state.handle_intent(Intent::File(FileIntent::RetryShare(local)));
    assert_eq!(
        shared_caption(&again).as_deref(),
        Some("here's the invoice")
    );
    // Without text, no caption; blank text is none either.
    assert_eq!(
        shared_caption(
            &state.handle_intent(Intent::File(FileIntent::Share("/home/me/a.txt".into())))
        ),
        None
    );
    draft(&mut state, KITCHEN, " \n ");
    assert_eq!(
        shared_caption(
            &state.handle_intent(Intent::File(FileIntent::Share("/home/me/b.txt".into())))
        ),
        None
    );
    assert_eq!(
        state.histories[&KITCHEN]
            .messages
            .last()
            .map(|m| m.text.as_str()),
        Some("📎 b.txt")
    );
}

#[test]
fn a_caption_is_the_draft_of_the_room_the_file_goes_to() {
    let mut state = state();
    let other = RoomId([11; 32]);
    draft(&mut state, other, "for the other room");
    draft(&mut state, KITCHEN, "for the kitchen");
    // The system's picker was opened over the kitchen; the text is read
    // when the file is picked (what the composer holds then).
    state.files.native = true;
    state.handle_intent(Intent::File(FileIntent::Attach));
    draft(&mut state, KITCHEN, "for the kitchen, edited");
    state.open = Some(other);
    state.apply(Update::File(FileUpdate::NativePicked {
        path: Some("/home/me/menu.pdf".into()),
        missing: false,
    }));
    assert_eq!(
        shared_caption(&state.poll_requests()).as_deref(),
        Some("for the kitchen, edited")
    );
    assert!(!state.drafts.contains_key(&KITCHEN));
    assert_eq!(
        state.drafts.get(&other).map(String::as_str),
        Some("for the other room")
    );
    // Sending the text is the composer's business: the draft it reports
    // (emptied) is what stays.
    draft(&mut state, other, "");
    assert!(state.drafts.is_empty());
}

#[test]
fn files_dropped_together_carry_the_caption_on_the_first() {
    let mut state = state();
    draft(&mut state, KITCHEN, "photos from Saturday");
    let requests = state.handle_intent(Intent::File(FileIntent::ShareAll(vec![
        "/home/me/1.jpg".into(),
        "/home/me/2.jpg".into(),
        "/home/me/3.jpg".into(),
    ])));
    let captions: Vec<(PathBuf, Option<String>)> = requests
        .into_iter()
        .map(|r| match r {
            Request::File(FileRequest::Share { path, caption, .. }) => (path, caption),
            other => panic!("a share request: {other:?}"),
        })
        .collect();
    assert_eq!(
        captions,
        [
            ("/home/me/1.jpg".into(), Some("photos from Saturday".into())),
            ("/home/me/2.jpg".into(), None),
            ("/home/me/3.jpg".into(), None),
        ]
    );
    let texts: Vec<&str> = state.histories[&KITCHEN]
        .messages
        .iter()
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(
        texts,
        ["📎 1.jpg\nphotos from Saturday", "📎 2.jpg", "📎 3.jpg"]
    );
    assert!(state.drafts.is_empty());
}

#[test]
fn a_text_too_long_for_a_caption_shares_nothing_and_says_why() {
    let mut state = state();
    // Exactly the limit is fine (bytes, not characters: "é" is two).
    let longest = "é".repeat(MAX_CAPTION / 2);
    draft(&mut state, KITCHEN, &longest);
    let requests = state.handle_intent(Intent::File(FileIntent::Share("/home/me/a.txt".into())));
    assert_eq!(shared_caption(&requests), Some(longest));

    let long = format!("{}é", "é".repeat(MAX_CAPTION / 2));
    draft(&mut state, KITCHEN, &long);
    let before = state.histories[&KITCHEN].messages.len();
    // The app's picker: stays open, nothing shared, a toast says why.
    state.handle_intent(Intent::File(FileIntent::Attach));
    assert!(state.files.picker.is_some());
    assert!(
        state
            .handle_intent(Intent::File(FileIntent::Share("/home/me/b.txt".into())))
            .is_empty()
    );
    assert!(state.files.picker.is_some());
    let why = state.room_caption(KITCHEN).expect_err("too long");
    assert!(why.contains("1024 bytes, it has 1026"), "{why}");
    // Dropped files: nothing shared, one toast (not one per file).
    let toasts = state.toasts.len();
    assert!(
        state
            .handle_intent(Intent::File(FileIntent::ShareAll(vec![
                "/home/me/c.txt".into(),
                "/home/me/d.txt".into()
            ])))
            .is_empty()
    );
    assert_eq!(state.toasts.len(), toasts + 1);
    // The system's picker: the same.
    state.files.picker = None;
    state.files.native = true;
    state.handle_intent(Intent::File(FileIntent::Attach));
    state.apply(Update::File(FileUpdate::NativePicked {
        path: Some("/home/me/e.txt".into()),
        missing: false,
    }));
    assert!(state.poll_requests().is_empty());
    // Nothing cut, nothing lost: the text is all still there.
    assert_eq!(state.histories[&KITCHEN].messages.len(), before);
    assert_eq!(state.drafts.get(&KITCHEN), Some(&long));
    assert!(state.toasts.iter().all(|t| {
        t.error
            && t.text
                .starts_with("Your text is too long to go with a file")
    }));
}
