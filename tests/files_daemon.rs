//! File sharing on in-process daemons over loopback: reading a shared
//! file into the store happens off the network thread, so the daemon
//! keeps answering requests and traffic meanwhile, and a share cut short
//! by a stop leaves a readable error and nothing half-stored. Every wait
//! is bounded and waits for a condition.

mod common;

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::TempDir;
use common::daemons::{WAIT, collect_until, connected_pair};
use kith::daemon::{
    DaemonError, Event, FileRef, FileState, Reply, Request, RequestId, SubscribeOptions,
    Subscription, Target, Update,
};
use kith::proto::ids::PeerId;

/// A 64 MiB file, mostly holes, with a few marked places (so its hash is
/// its own): large enough that reading and encrypting it takes seconds
/// in a debug build.
fn large_file(dir: &Path, name: &str, mark: u8) -> PathBuf {
    let path = dir.join(name);
    let mut file = File::create(&path).expect("a temp file");
    file.set_len(64 << 20).expect("a sparse file");
    for at in [0u64, 1 << 20, 33 << 20, (64 << 20) - 4096] {
        file.seek(SeekFrom::Start(at)).expect("seekable");
        file.write_all(&[mark; 4096]).expect("writable");
    }
    path
}

/// The answer to request `id` in `sub`, if it came (other updates are
/// dropped).
fn reply_of(sub: &Subscription, id: RequestId) -> Option<Result<Reply, DaemonError>> {
    while let Some(update) = sub.try_recv() {
        if let Update::Reply(got, result) = update
            && got == id
        {
            return Some(result);
        }
    }
    None
}

/// Waits for the answer to request `id`.
#[track_caller]
fn wait_reply(sub: &Subscription, id: RequestId) -> Result<Reply, DaemonError> {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match sub.recv_timeout(left.max(Duration::from_millis(1))) {
            Ok(Update::Reply(got, result)) if got == id => return result,
            Ok(_) => {}
            Err(error) => panic!("no answer to the share within {WAIT:?}: {error}"),
        }
    }
}

/// The names in A's blob directory.
fn blob_names(dir: &TempDir) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.path().join("data")) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().ends_with(".files") {
            for blob in std::fs::read_dir(entry.path()).expect("readable").flatten() {
                names.push(blob.file_name().to_string_lossy().into_owned());
            }
        }
    }
    names
}

#[test]
fn the_daemon_answers_requests_and_messages_while_a_large_file_is_being_shared() {
    let ((dir_a, pub_a, a), (_dir_b, pub_b, b)) = connected_pair("files-busy");
    let b_events = b.events().expect("B is running");
    let to_b = PeerId(pub_b.to_bytes());
    // A session first, so the round trip below needs no handshake.
    let first = a.send(to_b, "before").expect("B is a peer");
    collect_until(
        &b_events,
        |event| matches!(event, Event::MessageReceived { id, .. } if *id == first),
    );

    let path = large_file(dir_a.path(), "large.bin", 7);
    let sub = a
        .subscribe(SubscribeOptions::default())
        .expect("A is running");
    let share = sub
        .request(Request::ShareFile {
            to: Target::Peer(pub_b.peer_id()),
            path: path.clone(),
            caption: Some("big".into()),
        })
        .expect("A takes the request");

    // While A reads the file: a request is answered, and a message goes
    // out, arrives and is acknowledged. On a network thread busy reading
    // the file, these would wait until the share was answered.
    let status = a.status().expect("A answers while it reads the file");
    assert!(status.files.chunks_sent == 0, "{status:?}");
    let during = a.send(to_b, "while sharing").expect("A sends meanwhile");
    collect_until(
        &b_events,
        |event| matches!(event, Event::MessageReceived { id, from, .. } if *id == during && *from == pub_a.peer_id()),
    );
    assert!(
        reply_of(&sub, share).is_none(),
        "the share was answered before the message sent after it arrived: \
         the file was read on the network thread (or the machine is very fast)"
    );

    // The share ends with its message id, the file complete and its
    // message delivered to B.
    let Reply::Sent(id) = wait_reply(&sub, share).expect("the file is shared") else {
        panic!("a share is answered with its message id");
    };
    collect_until(
        &b_events,
        |event| matches!(event, Event::MessageReceived { id: got, .. } if *got == id),
    );
    let Reply::Files(entries) = a
        .ask(Request::File {
            file: FileRef::Message(id),
        })
        .expect("A answers")
    else {
        panic!("a file request is answered with files");
    };
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].state, FileState::Complete);
    assert_eq!(entries[0].info.size, 64 << 20);
    assert_eq!(entries[0].info.hash.0, *common::file_hash(&path).as_bytes());
    a.shutdown().expect("A stops cleanly");
    b.shutdown().expect("B stops cleanly");
}

/// Sharing the same file twice at once gives two messages of one blob;
/// a stop while a file is read answers the share (stored or a sentence)
/// and leaves no half-written blob.
#[test]
fn twin_shares_and_a_stop_during_a_share_leave_the_store_whole() {
    let ((dir_a, _pub_a, a), (_dir_b, pub_b, b)) = connected_pair("files-stop");
    let path = large_file(dir_a.path(), "twice.bin", 3);
    let sub = a
        .subscribe(SubscribeOptions::default())
        .expect("A is running");
    let share = |path: &Path| {
        sub.request(Request::ShareFile {
            to: Target::Peer(pub_b.peer_id()),
            path: path.to_owned(),
            caption: None,
        })
        .expect("A takes the request")
    };
    let (one, two) = (share(&path), share(&path));
    let Ok(Reply::Sent(first)) = wait_reply(&sub, one) else {
        panic!("the first share is answered with its id");
    };
    let Ok(Reply::Sent(second)) = wait_reply(&sub, two) else {
        panic!("the second share is answered with its id");
    };
    assert_ne!(first, second, "two shares are two messages");
    let blobs = blob_names(&dir_a);
    assert_eq!(blobs.len(), 1, "one blob for the same bytes: {blobs:?}");

    // A share in progress when the daemon stops.
    let other = large_file(dir_a.path(), "cut.bin", 9);
    let cut = share(&other);
    a.shutdown().expect("A stops cleanly");
    let answer = {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match sub.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(Update::Reply(got, result)) if got == cut => break Some(result),
                Ok(_) => {}
                // The loop ended without a word: a stopped daemon.
                Err(_) => break None,
            }
        }
    };
    drop(sub);
    b.shutdown().expect("B stops cleanly");
    let blobs = blob_names(&dir_a);
    assert!(
        blobs.iter().all(|n| !n.ends_with(".import")),
        "no half-imported blob is left: {blobs:?}"
    );
    let cut_hex = hex(common::file_hash(&other).as_bytes());
    match answer {
        Some(Ok(Reply::Sent(_))) => {
            assert!(blobs.contains(&cut_hex), "a posted share has its bytes")
        }
        Some(Err(error)) => {
            assert!(error.to_string().contains("stopped"), "{error}");
            assert!(!blobs.contains(&cut_hex), "{blobs:?}");
        }
        Some(Ok(other)) => panic!("unexpected answer {other:?}"),
        None => assert!(!blobs.contains(&cut_hex), "{blobs:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
