//! File sharing in the main window, driven headless with egui_kittest over
//! the fake backend: the 📎 picker shares a file, a dropped file is shared,
//! a file row shows its name and size, Download turns into progress and
//! then Open; a failure shows why with Retry; the composer's text goes
//! with a shared file as its caption; a snapshot of the rows.
//! Then two apps with real nodes on loopback: Alice types a caption and
//! drops a file on her window, Bob sees the caption, downloads the file,
//! and the bytes are the same.
#![cfg(feature = "gui")]

mod ui_support;

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use kith::daemon::PeerAddr;
use kith::proto::ids::{MessageId, PeerId, RoomId};
use kith::proto::node::direct_room;
use kith::ui::KithApp;
use kith::ui::backend::{FakeBackend, FakeLauncher, Me};
use kith::ui::state::{
    AppState, FileId, FileMeta, FileRequest, FileStatus, FileUpdate, MessageInfo, PersonInfo,
    Relation, Request, RoomInfo, Update, file_text,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn peer(n: u8) -> PeerId {
    PeerId([n; 32])
}

/// The window's clock: Tuesday 1 December 2026, 18:00 UTC.
const NOW: u64 = 1_796_148_000_000;
const KITCHEN: RoomId = RoomId([10; 32]);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kith-ui-files-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

struct App {
    harness: Harness<'static, KithApp>,
    fake: FakeBackend,
    dir: PathBuf,
}

impl App {
    fn requests(&self) -> Vec<Request> {
        self.fake.take_requests()
    }

    fn file_requests(&self) -> Vec<FileRequest> {
        self.requests()
            .into_iter()
            .filter_map(|r| match r {
                Request::File(f) => Some(f),
                _ => None,
            })
            .collect()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An account made through the first screen, with Sam and Alex in
/// "kitchen", which is open.
fn kitchen(name: &str) -> App {
    let dir = temp_dir(name);
    let launcher = FakeLauncher::new(Me {
        peer: peer(0),
        public_key: "00".repeat(32),
        name: String::new(),
    });
    let app = KithApp::new(dir.join("data"), launcher.clone()).with_clock(Arc::new(|| NOW), 0);
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1000.0, 660.0))
        .with_max_steps(32)
        // A frame per input event, as quick as a person's clicks (the
        // default, a quarter second, makes a double click two).
        .with_step_dt(0.02)
        .build_ui_state(|ui, app: &mut KithApp| app.show(ui), app);
    for (label, text) in [
        ("Your name", "Robin"),
        ("Passphrase", "four random words here"),
        ("Passphrase again", "four random words here"),
    ] {
        harness.get_by_label(label).focus();
        harness.run();
        harness.get_by_label(label).type_text(text);
        harness.run();
    }
    harness.get_by_label("Create account").click();
    harness.step();
    harness.state_mut().wait_for_worker(Duration::from_secs(10));
    harness.run();
    let fake = launcher.backend().expect("the fake was handed out");
    let person = |n: u8, name: &str| PersonInfo {
        id: peer(n),
        public_key: String::new(),
        name: name.to_owned(),
        relation: Relation::Contact,
        online: true,
        last_seen: None,
        muted: None,
    };
    fake.push(Update::People(vec![person(1, "Sam"), person(2, "Alex")]));
    fake.push(Update::Rooms(vec![RoomInfo {
        id: KITCHEN,
        name: "kitchen".into(),
        direct: None,
        admin: Some(peer(0)),
        members: vec![peer(0), peer(1), peer(2)],
        muted: None,
        invited: false,
    }]));
    fake.set_history(KITCHEN, Vec::new());
    harness.run();
    harness.get_by_label("# kitchen").click();
    harness.run();
    let _ = fake.take_requests();
    App { harness, fake, dir }
}

fn offer(app: &App, n: u8, from: u8, minutes_ago: u64, name: &str, size: u64) -> MessageId {
    let id = MessageId([n; 32]);
    app.fake.push(Update::File(FileUpdate::Offered {
        message: MessageInfo {
            room: KITCHEN,
            from: peer(from),
            id,
            timestamp: NOW - minutes_ago * 60_000,
            text: file_text(name),
            cursor: None,
            hlc: 0,
            deliveries: None,
        },
        file: FileMeta {
            id: FileId([n; 32]),
            name: name.to_owned(),
            size,
        },
        muted: false,
    }));
    id
}

/// Types `text` into the composer (without sending it).
fn type_in_composer(app: &mut App, text: &str) {
    app.harness.get_by_label("Write a message").focus();
    app.harness.run();
    app.harness.get_by_label("Write a message").type_text(text);
    app.harness.run();
}

fn composer_text(app: &App) -> String {
    app.harness
        .get_by_label("Write a message")
        .value()
        .unwrap_or_default()
}

fn drop_files(app: &mut App, paths: &[PathBuf]) {
    for path in paths {
        app.harness
            .input_mut()
            .dropped_files
            .push(Arc::new(Dropped(path.clone())));
    }
    app.harness.run();
}

fn write(path: &Path, bytes: usize) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, vec![7u8; bytes]).expect("write");
}

#[test]
fn attach_a_file_with_the_picker() {
    let mut app = kitchen("attach");
    let folder = app.dir.join("stuff");
    write(&folder.join("plan.txt"), 2_400);
    std::fs::create_dir_all(folder.join("old")).expect("mkdir");

    app.harness.get_by_label("📎").click();
    app.harness.run();
    assert_eq!(
        app.file_requests(),
        [FileRequest::List { dir: None }],
        "the picker starts at home"
    );
    app.harness.get_by_label("Share a file");
    // Into the test's folder, as typed (a path ending in "/" is browsed).
    app.harness.get_by_label("File").focus();
    app.harness.run();
    // The field holds the folder shown (home): replace it.
    app.harness
        .key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    app.harness
        .get_by_label("File")
        .type_text(&format!("{}/", folder.display()));
    app.harness.key_press(egui::Key::Enter);
    app.harness.run();
    assert_eq!(
        app.file_requests(),
        [FileRequest::List {
            dir: Some(folder.clone())
        }]
    );
    // The folder's entries, folders first; a click picks the file.
    app.harness.get_by_label("📁 old");
    app.harness.get_by_label("📄 plan.txt   (2.4 kB)").click();
    app.harness.run();
    app.harness.get_by_label("Share").click();
    app.harness.run();
    let shared = app.file_requests();
    assert!(
        matches!(
            shared.as_slice(),
            [FileRequest::Share { room, peer: None, path, .. }]
                if *room == KITCHEN && *path == folder.join("plan.txt")
        ),
        "{shared:?}"
    );
    // The picker is gone; the fake offered it at once: our row, with its
    // size, available to open.
    assert!(app.harness.query_by_label("Share a file").is_none());
    app.harness.get_by_label("plan.txt");
    app.harness.get_by_label("2.4 kB");
    app.harness.get_by_label("Open").click();
    app.harness.run();
    assert_eq!(
        app.file_requests(),
        [FileRequest::Open {
            path: folder.join("plan.txt"),
            reveal: false
        }]
    );
    // The sidebar's preview names it.
    app.harness.get_by_label_contains(": 📎 plan.txt");
}

/// A file dropped on the window (egui hands the path over).
#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

#[test]
fn a_file_dropped_on_the_window_is_shared_in_the_open_room() {
    let mut app = kitchen("drop");
    let path = app.dir.join("photo.jpg");
    write(&path, 1_500_000);
    app.harness
        .input_mut()
        .dropped_files
        .push(Arc::new(Dropped(path.clone())));
    app.harness.run();
    let shared = app.file_requests();
    assert!(
        matches!(
            shared.as_slice(),
            [FileRequest::Share { room, path: p, .. }] if *room == KITCHEN && *p == path
        ),
        "{shared:?}"
    );
    app.harness.get_by_label("photo.jpg");
    app.harness.get_by_label("1.5 MB");
}

#[test]
fn download_shows_progress_then_open_and_show_in_folder() {
    let mut app = kitchen("download");
    let id = offer(&app, 1, 1, 2, "report.pdf", 2_400_000);
    app.harness.run();
    app.harness.get_by_label("report.pdf");
    app.harness.get_by_label("2.4 MB");
    app.harness.get_by_label("⬇ Download").click();
    app.harness.run();
    assert_eq!(
        app.file_requests(),
        [FileRequest::Download {
            file: FileMeta {
                id: FileId([1; 32]),
                name: "report.pdf".into(),
                size: 2_400_000,
            },
            room: KITCHEN,
            message: id,
            from: peer(1),
            dir: None,
        }]
    );
    app.fake.push(Update::File(FileUpdate::Progress {
        file: FileId([1; 32]),
        received: 1_200_000,
    }));
    app.harness.run();
    app.harness.get_by_label("1.2 MB of 2.4 MB");
    assert!(app.harness.query_by_label("⬇ Download").is_none());
    let path = app.dir.join("Downloads/report.pdf");
    app.fake.push(Update::File(FileUpdate::Downloaded {
        file: FileId([1; 32]),
        path: path.clone(),
    }));
    app.harness.run();
    app.harness.get_by_label("Open").click();
    app.harness.run();
    app.harness.get_by_label("Show in folder").click();
    app.harness.run();
    assert_eq!(
        app.file_requests(),
        [
            FileRequest::Open {
                path: path.clone(),
                reveal: false
            },
            FileRequest::Open { path, reveal: true }
        ]
    );
}

#[test]
fn a_failed_download_says_why_and_retries() {
    let mut app = kitchen("failed");
    offer(&app, 1, 2, 1, "big.iso", 700_000_000);
    app.harness.run();
    app.harness.get_by_label("⬇ Download").click();
    app.harness.run();
    app.fake.push(Update::File(FileUpdate::DownloadFailed {
        file: FileId([1; 32]),
        error: "Alex is offline".into(),
    }));
    app.harness.run();
    app.harness.get_by_label("⚠ Alex is offline");
    let _ = app.file_requests();
    app.harness.get_by_label("Retry").click();
    app.harness.run();
    assert!(matches!(
        app.file_requests().as_slice(),
        [FileRequest::Download { .. }]
    ));
    app.harness.get_by_label("0 B of 700 MB");
}

#[test]
fn save_files_to_is_a_setting() {
    let mut app = kitchen("settings");
    app.fake.push(Update::File(FileUpdate::SaveTo {
        dir: "/home/robin/Downloads".into(),
        chosen: false,
    }));
    app.harness.run();
    app.harness.get_by_label("⚙ Settings").click();
    app.harness.run();
    assert_eq!(
        app.harness.get_by_label("Save files to").value().as_deref(),
        Some("/home/robin/Downloads")
    );
    app.harness.get_by_label("Save files to").focus();
    app.harness.run();
    app.harness
        .key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    app.harness
        .get_by_label("Save files to")
        .type_text("/srv/files");
    app.harness.run();
    app.harness.get_by_label("Save folder").click();
    app.harness.run();
    assert_eq!(
        app.file_requests(),
        [FileRequest::SetSaveTo {
            dir: Some("/srv/files".into())
        }]
    );
    // The fake took it: the default can come back.
    app.harness.get_by_label("Default");
}

#[test]
fn snapshot_of_file_rows() {
    let mut app = kitchen("snapshot");
    let path = app.dir.join("menu.pdf");
    write(&path, 48_213);
    offer(&app, 1, 1, 9, "holiday-photos.zip", 182_400_000);
    // A caption goes under its file.
    let id = MessageId([5; 32]);
    app.fake.push(Update::File(FileUpdate::Offered {
        message: MessageInfo {
            room: KITCHEN,
            from: peer(1),
            id,
            timestamp: NOW - 8 * 60_000,
            text: format!("{}\nthe menu for Saturday", file_text("menu-saturday.pdf")),
            cursor: None,
            hlc: 0,
            deliveries: None,
        },
        file: FileMeta {
            id: FileId([5; 32]),
            name: "menu-saturday.pdf".into(),
            size: 312_000,
        },
        muted: false,
    }));
    offer(&app, 2, 2, 7, "budget 2027.xlsx", 2_400_000);
    offer(&app, 3, 1, 5, "song.mp3", 5_100_000);
    offer(&app, 4, 2, 4, "talk.mkv", 1_250_000_000);
    app.harness.run();
    // Downloading, done, failed (the last three).
    for _ in 0..3 {
        app.harness
            .get_all_by_label("⬇ Download")
            .last()
            .expect("a Download button")
            .click();
        app.harness.run();
    }
    app.fake.push(Update::File(FileUpdate::Progress {
        file: FileId([2; 32]),
        received: 1_000_000,
    }));
    app.fake.push(Update::File(FileUpdate::Downloaded {
        file: FileId([3; 32]),
        path: "/home/robin/Downloads/song.mp3".into(),
    }));
    app.fake.push(Update::File(FileUpdate::DownloadFailed {
        file: FileId([4; 32]),
        error: "Alex went offline".into(),
    }));
    // Ours, with what was typed as its caption.
    type_in_composer(&mut app, "and Sunday's, for comparison");
    drop_files(&mut app, &[path]);
    app.harness.get_by_label("1.0 MB of 2.4 MB");
    app.harness.get_by_label("⚠ Alex went offline");
    app.harness.get_by_label("menu.pdf");
    app.harness.get_by_label("the menu for Saturday");
    app.harness.get_by_label("and Sunday's, for comparison");
    app.harness.snapshot("file_rows");
}

/// Whether `room`'s history in `state` has a file row whose status
/// `wanted` accepts.
fn has_file(state: &AppState, room: RoomId, wanted: impl Fn(&FileStatus<'_>) -> bool) -> bool {
    state.histories.get(&room).is_some_and(|h| {
        h.messages
            .iter()
            .filter_map(|m| state.file_row(m))
            .any(|row| wanted(&row.status))
    })
}

#[test]
fn alice_drops_a_file_and_bob_downloads_the_same_bytes() {
    use ui_support::{account, app, config, free_port, state, temp_dir, wait};
    let (alice_dir, bob_dir) = (temp_dir("files-alice"), temp_dir("files-bob"));
    let alice_key = account(&alice_dir, "Alice");
    let bob_key = account(&bob_dir, "Bob");
    // Bob saves to the test's folder (Settings' choice), where a file of
    // the same name is already: it must stay as it is.
    let saved = bob_dir.join("saved");
    std::fs::create_dir_all(&saved).expect("mkdir");
    std::fs::write(saved.join("notes.bin"), b"Bob's own notes").expect("write");
    std::fs::write(
        bob_dir.join(kith::ui::backend::files::SAVE_TO_FILE),
        saved.to_str().expect("a text path"),
    )
    .expect("save the choice");
    // Bytes that are not all alike, over several chunks.
    let source = alice_dir.join("outbox").join("notes.bin");
    let bytes: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::create_dir_all(source.parent().expect("a parent")).expect("mkdir");
    std::fs::write(&source, &bytes).expect("write");

    let (alice_addr, bob_addr) = (free_port(), free_port());
    let mut alice = app(
        &alice_dir,
        config(
            alice_addr,
            vec![PeerAddr {
                public: bob_key.clone(),
                addr: bob_addr,
            }],
        ),
    );
    let mut bob = app(
        &bob_dir,
        config(
            bob_addr,
            vec![PeerAddr {
                public: alice_key.clone(),
                addr: alice_addr,
            }],
        ),
    );
    let (alice_id, bob_id) = (alice_key.peer_id(), bob_key.peer_id());
    let chat = direct_room(alice_id, bob_id);

    wait(&mut alice, "Bob is listed by his name", |s| {
        s.people.contains_key(&bob_id) && s.display_name(bob_id).starts_with("Bob")
    });
    let bob_name = state(&alice).display_name(bob_id);
    // Steps, not `run`: the chat's history spins until the node answers.
    alice.get_by_label(&bob_name).click();
    alice.run_steps(2);
    wait(&mut alice, "the chat is open", |s| {
        s.open == Some(chat) && s.histories.get(&chat).is_some_and(|h| !h.loading)
    });
    // Alice types a line, then drops the file on her window: the line is
    // its caption; her row is there at once and hers to open once her
    // node has it.
    ui_support::type_text(&mut alice, "the notes from Monday");
    alice
        .input_mut()
        .dropped_files
        .push(Arc::new(Dropped(source.clone())));
    alice.run_steps(2);
    wait(&mut alice, "Alice's file is shared", |s| {
        has_file(s, chat, |f| matches!(f, FileStatus::Available { .. }))
    });
    alice.get_by_label("notes.bin");
    alice.get_by_label("300 kB");
    alice.get_by_label("the notes from Monday");
    assert_eq!(
        alice
            .get_by_label("Write a message")
            .value()
            .unwrap_or_default(),
        ""
    );

    // Bob's window offers it; he downloads it.
    wait(&mut bob, "Bob is offered the file", |s| {
        has_file(s, chat, |f| *f == FileStatus::Offered)
            && s.display_name(alice_id).starts_with("Alice")
    });
    let name = state(&bob).room_name(&state(&bob).rooms[&chat]);
    bob.get_by_label(&format!("@ {name}")).click();
    bob.run_steps(2);
    wait(&mut bob, "Bob's chat is open", |s| {
        s.open == Some(chat) && s.histories.get(&chat).is_some_and(|h| !h.loading)
    });
    bob.get_by_label("notes.bin");
    bob.get_by_label("the notes from Monday");
    bob.get_by_label("⬇ Download").click();
    bob.run_steps(2);
    wait(&mut bob, "Bob has the file", |s| {
        has_file(s, chat, |f| matches!(f, FileStatus::Available { .. }))
    });
    let path = state(&bob)
        .histories
        .get(&chat)
        .and_then(|h| {
            h.messages
                .iter()
                .find_map(|m| match state(&bob).file_row(m)?.status {
                    FileStatus::Available { path } => Some(path.to_owned()),
                    _ => None,
                })
        })
        .expect("a downloaded file");
    assert_eq!(path.parent(), Some(saved.as_path()), "{}", path.display());
    assert_ne!(path, saved.join("notes.bin"), "an existing file is kept");
    assert_eq!(std::fs::read(&path).expect("read the download"), bytes);
    assert_eq!(
        std::fs::read(saved.join("notes.bin")).expect("read"),
        b"Bob's own notes"
    );
    bob.get_by_label("Open");
    bob.get_by_label("Show in folder");

    // Bob's search box finds the file by its name (the node's search),
    // and shows it as the chat does.
    use ui_support::Settle;
    let search = || (egui::accesskit::Role::TextInput, "🔍");
    bob.get_by_role_and_label(search().0, search().1).focus();
    bob.settle();
    bob.get_by_role_and_label(search().0, search().1)
        .type_text("NOTES.bin");
    bob.settle();
    bob.get_by_label("🔍 Messages with “NOTES.bin”").click();
    bob.run_steps(2);
    wait(&mut bob, "the search answers", |s| {
        !s.search.busy && !s.search.hits.is_empty()
    });
    let hits = &state(&bob).search.hits;
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(
        (hits[0].room, hits[0].text.as_str()),
        (chat, "📎 notes.bin\nthe notes from Monday")
    );
    bob.get_by_label("1 message");

    drop((alice, bob));
    let _ = std::fs::remove_dir_all(&alice_dir);
    let _ = std::fs::remove_dir_all(&bob_dir);
}

#[test]
fn a_double_click_in_the_picker_shares_the_file() {
    let mut app = kitchen("double");
    let folder = app.dir.join("docs");
    write(&folder.join("a.txt"), 10);
    app.harness.get_by_label("📎").click();
    app.harness.run();
    app.harness.get_by_label("File").focus();
    app.harness.run();
    app.harness
        .key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    app.harness
        .get_by_label("File")
        .type_text(&format!("{}/", folder.display()));
    app.harness.key_press(egui::Key::Enter);
    app.harness.run();
    let _ = app.file_requests();
    let entry = "📄 a.txt   (10 B)";
    app.harness.get_by_label(entry).click();
    app.harness.step();
    app.harness.get_by_label(entry).click();
    app.harness.run();
    let shared = app.file_requests();
    assert!(
        matches!(
            shared.as_slice(),
            [FileRequest::Share { path, .. }] if *path == folder.join("a.txt")
        ),
        "{shared:?}"
    );
    assert!(app.harness.query_by_label("Share a file").is_none());
}

#[test]
fn a_file_that_cannot_be_read_says_why_and_is_shared_again() {
    let mut app = kitchen("unreadable");
    let path = app.dir.join("later.txt");
    app.harness
        .input_mut()
        .dropped_files
        .push(Arc::new(Dropped(path.clone())));
    app.harness.run();
    // The fake could not read it: the row says so, and so does a toast.
    app.harness.get_by_label("later.txt");
    app.harness.get_by_label_contains("⚠ cannot read");
    app.harness.get_by_label_contains("Not shared: cannot read");
    let _ = app.file_requests();
    write(&path, 1_234);
    app.harness.get_by_label("Retry").click();
    app.harness.run();
    assert!(matches!(
        app.file_requests().as_slice(),
        [FileRequest::Share { path: p, .. }] if *p == path
    ));
    app.harness.get_by_label("1.2 kB");
    app.harness.get_by_label("Open");
    assert!(app.harness.query_by_label("Retry").is_none());
}

#[test]
fn the_text_typed_goes_with_a_dropped_file_as_its_caption() {
    let mut app = kitchen("caption");
    let invoice = app.dir.join("invoice.pdf");
    write(&invoice, 52_000);
    type_in_composer(&mut app, "here's the invoice");
    drop_files(&mut app, std::slice::from_ref(&invoice));
    let shared = app.file_requests();
    assert!(
        matches!(
            shared.as_slice(),
            [FileRequest::Share { path, caption: Some(caption), .. }]
                if *path == invoice && caption == "here's the invoice"
        ),
        "{shared:?}"
    );
    // One message: the file with the caption under it; the composer is
    // empty, and nothing was sent as text.
    app.harness.get_by_label("invoice.pdf");
    app.harness.get_by_label("52 kB");
    app.harness.get_by_label("here's the invoice");
    assert_eq!(composer_text(&app), "");
    let state = app.harness.state().state().expect("unlocked");
    let texts: Vec<&str> = state.histories[&KITCHEN]
        .messages
        .iter()
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(texts, ["📎 invoice.pdf\nhere's the invoice"]);

    // Two files at once: the caption goes with the first only.
    let (a, b) = (app.dir.join("a.jpg"), app.dir.join("b.jpg"));
    write(&a, 10);
    write(&b, 20);
    type_in_composer(&mut app, "the two photos");
    drop_files(&mut app, &[a.clone(), b.clone()]);
    let shared: Vec<(PathBuf, Option<String>)> = app
        .file_requests()
        .into_iter()
        .filter_map(|r| match r {
            FileRequest::Share { path, caption, .. } => Some((path, caption)),
            _ => None,
        })
        .collect();
    assert_eq!(shared, [(a, Some("the two photos".to_owned())), (b, None)]);
    assert_eq!(app.harness.get_all_by_label("the two photos").count(), 1);
    assert_eq!(composer_text(&app), "");
}

#[test]
fn the_picker_says_what_goes_with_the_file() {
    let mut app = kitchen("caption-picker");
    let folder = app.dir.join("docs");
    write(&folder.join("plan.txt"), 100);
    type_in_composer(&mut app, "the plan, v2");
    app.harness.get_by_label("📎").click();
    app.harness.run();
    app.harness.get_by_label("With your text as its caption:");
    app.harness.get_by_label("the plan, v2");
    app.harness.get_by_label("File").focus();
    app.harness.run();
    app.harness
        .key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    app.harness
        .get_by_label("File")
        .type_text(&folder.join("plan.txt").display().to_string());
    app.harness.run();
    let _ = app.file_requests();
    app.harness.get_by_label("Share").click();
    app.harness.run();
    let shared = app.file_requests();
    assert!(
        matches!(
            shared.as_slice(),
            [FileRequest::Share { caption: Some(c), .. }] if c == "the plan, v2"
        ),
        "{shared:?}"
    );
    assert!(app.harness.query_by_label("Share a file").is_none());
    assert_eq!(composer_text(&app), "");
}

#[test]
fn a_text_too_long_for_a_caption_is_kept_and_the_app_says_why() {
    let mut app = kitchen("caption-long");
    let path = app.dir.join("report.pdf");
    write(&path, 1_000);
    // 1,100 bytes: over the 1,024 a caption may hold.
    let long = "words ".repeat(183) + "ok";
    assert_eq!(long.len(), 1_100);
    type_in_composer(&mut app, &long);
    drop_files(&mut app, std::slice::from_ref(&path));
    assert!(app.file_requests().is_empty(), "nothing is shared");
    app.harness.get_by_label_contains(
        "Your text is too long to go with a file: a caption holds 1024 bytes, it has 1100.",
    );
    // Nothing cut: the text is all in the composer, no row was added.
    assert_eq!(composer_text(&app), long);
    assert!(app.harness.query_by_label("report.pdf").is_none());
    // The picker says so before anything is picked.
    app.harness.get_by_label("📎").click();
    app.harness.run();
    assert!(
        app.harness
            .query_all_by_label_contains("a caption holds 1024 bytes")
            .count()
            >= 2,
        "the picker warns too"
    );
}
