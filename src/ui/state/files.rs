//! Files shared in rooms, as the window shows them: the 📎 picker, a file
//! message's row (name, size, and Download → progress → Open), the
//! downloads directory.
//!
//! A file message is a message like any other in a room's history (its
//! text is "📎 name", then its caption on a line of its own, so that
//! previews, notifications and search read well); what makes it a file is
//! kept here beside it, by message id (by local number while our own share
//! is being prepared).
//!
//! A caption is what the user typed: the room's composer text (its draft)
//! goes with the file shared there, as one message, and the composer
//! empties, as in the messengers people know. Several files dropped at
//! once carry it on the first only: the text says something about the
//! batch, once, where the batch starts (repeated on every file it would
//! read as several messages; on none it would stay behind, which is what
//! the user did not want). A text longer than a caption may be
//! ([`MAX_CAPTION`] bytes) shares nothing and says so, the text kept. How far a file's
//! download got is kept by file id: the same file shared twice is
//! downloaded once. Reading, hashing, sharing and downloading happen in
//! the node; this only records what it said.

use super::*;
pub use crate::daemon::files::MAX_CAPTION;
use std::path::PathBuf;

/// A shared file's id (the node's content address: its hash).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub [u8; 32]);

/// What a file message offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMeta {
    pub id: FileId,
    /// The name it was shared under (as the sender's node gave it: shown
    /// only, never used as a path without cleaning).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// How far a file is on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transfer {
    /// Offered; not downloaded.
    Offered,
    /// Being downloaded: `received` of the file's bytes are in.
    Downloading { received: u64 },
    /// Here, at `path` (downloaded, or our own shared file).
    Available { path: PathBuf },
    /// The download failed: why (a sentence).
    Failed(String),
}

/// Our own file being shared (hashed and offered by the node) before the
/// node answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub path: PathBuf,
    pub name: String,
    pub room: RoomId,
    /// What goes with it (the composer's text when it was shared).
    pub caption: Option<String>,
    /// Why sharing failed, if it did (the row offers Retry).
    pub error: Option<String>,
}

/// An entry of a directory listed in the picker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub dir: bool,
    /// Bytes (0 for a directory).
    pub size: u64,
}

/// The 📎 picker: a directory's entries and a path that can be typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Picker {
    /// Where the file goes.
    pub room: RoomId,
    /// The directory listed (`None` until the node answered: home).
    pub dir: Option<PathBuf>,
    /// Its entries (directories first, by name), or why it could not be
    /// read; `None` while asked.
    pub listing: Option<Result<Vec<DirEntry>, String>>,
}

/// Everything about files the window keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Files {
    /// The file each file message offers.
    pub by_message: HashMap<MessageId, FileMeta>,
    /// Our shares the node has not answered yet, by local number.
    pub pending: HashMap<u64, Pending>,
    /// How far each file is here.
    pub transfers: HashMap<FileId, Transfer>,
    /// The picker, while open.
    pub picker: Option<Picker>,
    /// Where downloads go (as the node resolved it; `None` until it said).
    pub save_to: Option<PathBuf>,
    /// Whether `save_to` was chosen in Settings (else the default).
    pub save_to_chosen: bool,
    /// The directory the picker showed last (it opens there again).
    pub last_dir: Option<PathBuf>,
    /// The system's file picker may be there (the node's worker said so):
    /// 📎 opens it; else, or once it turned out missing, the app's own.
    pub native: bool,
    /// The system's picker is open, for this room.
    pub native_open: Option<RoomId>,
    /// Requests decided on by an update (sent by `poll_requests`).
    pub(super) requests: Vec<Request>,
}

/// What the user does with files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileIntent {
    /// The 📎 button: open the picker for the open room.
    Attach,
    /// List this directory in the picker.
    Browse(PathBuf),
    ClosePicker,
    /// Share this file in the open room (picked or typed in the picker);
    /// the room's composer text goes with it as its caption.
    Share(PathBuf),
    /// Share these files (dropped on the window together) in the open
    /// room; the composer's text goes with the first as its caption.
    ShareAll(Vec<PathBuf>),
    /// Share our failed file (local number) again.
    RetryShare(u64),
    /// Download the file a message offers (also Retry after a failure).
    Download(MessageId),
    /// Open the file a message offers with the system's program.
    Open(MessageId),
    /// Show it in the file manager.
    ShowInFolder(MessageId),
    /// Save downloads here (empty: the default) from now on.
    SetSaveTo(String),
}

/// What the app asks the node (or its worker) about files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileRequest {
    /// Read, hash and offer the file at `path` in `room` (to `peer` for a
    /// direct chat) with `caption` (at most [`MAX_CAPTION`] bytes);
    /// answered by [`FileUpdate::Shared`].
    Share {
        local: u64,
        room: RoomId,
        peer: Option<PeerId>,
        path: PathBuf,
        caption: Option<String>,
    },
    /// Fetch the file `message` offers from `from` into `dir` (`None`:
    /// the default downloads directory) under a name not taken there;
    /// answered by progress, then done or failed.
    Download {
        file: FileMeta,
        room: RoomId,
        message: MessageId,
        from: PeerId,
        dir: Option<PathBuf>,
    },
    /// Open `path` with the system's program, or (`reveal`) its folder;
    /// a failure comes back as an error.
    Open { path: PathBuf, reveal: bool },
    /// List a directory for the picker (`None`: the home directory);
    /// answered by [`FileUpdate::Listing`].
    List { dir: Option<PathBuf> },
    /// Save downloads in `dir` (`None`: the default) from now on;
    /// answered by [`FileUpdate::SaveTo`].
    SetSaveTo { dir: Option<PathBuf> },
    /// Open the system's file picker (at `dir`, else where it likes) on a
    /// thread of its own; answered by [`FileUpdate::NativePicked`].
    PickNative { dir: Option<PathBuf> },
}

/// What the node says about files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileUpdate {
    /// Someone shared a file: a message (text "📎 name") and what it offers.
    Offered {
        message: MessageInfo,
        file: FileMeta,
        muted: bool,
    },
    /// File messages in history about to be (or already) shown, and how
    /// far each is on this machine (own files, earlier downloads).
    Known(Vec<(MessageId, FileMeta, Transfer)>),
    /// Our share number `local` was offered as message `id` (or failed).
    Shared {
        local: u64,
        result: Result<(MessageId, FileMeta), String>,
    },
    Progress {
        file: FileId,
        received: u64,
    },
    Downloaded {
        file: FileId,
        path: PathBuf,
    },
    DownloadFailed {
        file: FileId,
        error: String,
    },
    /// A directory's entries for the picker.
    Listing {
        dir: PathBuf,
        entries: Result<Vec<DirEntry>, String>,
    },
    /// Downloads go to `dir`; `chosen`: picked in Settings (else the
    /// default).
    SaveTo {
        dir: PathBuf,
        chosen: bool,
    },
    /// Whether the system's file picker may be there.
    NativePicker(bool),
    /// The system's picker closed: the file picked, if any; `missing`: it
    /// could not be shown (the app's own picker opens instead).
    NativePicked {
        path: Option<PathBuf>,
        missing: bool,
    },
}

/// A file message's row as the chat view draws it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRow<'a> {
    pub name: &'a str,
    /// Bytes, once known (our own file: when the node answered).
    pub size: Option<u64>,
    pub status: FileStatus<'a>,
}

/// What a file row offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileStatus<'a> {
    /// Ours, being read and hashed by the node.
    Preparing,
    /// Ours, sharing failed: why (Retry shares again).
    ShareFailed { local: u64, error: &'a str },
    /// Download button.
    Offered,
    /// A progress bar.
    Downloading { received: u64 },
    /// Open and Show in folder.
    Available { path: &'a std::path::Path },
    /// Why, and Retry.
    Failed(&'a str),
}

/// A size as people read it: "512 B", "2.4 MB" (powers of 1000).
pub fn size_label(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 999.95 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if value < 9.95 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// A file name from another machine as the window shows it: characters
/// that reorder or hide text (bidirectional overrides and isolates,
/// zero-width ones) become `_`, so that "invoice\u{202E}fdp.exe" cannot
/// pass for a PDF in a notification that lays text out bidirectionally.
pub fn plain_name(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{061C}'
            | '\u{FEFF}' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect()
}

/// The text a file message carries (previews, notifications, search).
pub fn file_text(name: &str) -> String {
    format!("📎 {name}")
}

/// A file message's text with its caption: "📎 name", then the caption on
/// a line of its own (the chat shows it under the file).
pub fn captioned_text(name: &str, caption: Option<&str>) -> String {
    let mut text = file_text(name);
    if let Some(caption) = caption.map(str::trim).filter(|c| !c.is_empty()) {
        text.push('\n');
        text.push_str(caption);
    }
    text
}

/// What a draft gives as a caption: the text trimmed, `None` if empty;
/// `Err` with a sentence if it is longer than a caption may be.
pub fn draft_caption(draft: &str) -> Result<Option<&str>, String> {
    let caption = draft.trim();
    if caption.len() > MAX_CAPTION {
        return Err(format!(
            "Your text is too long to go with a file: a caption holds {MAX_CAPTION} bytes, \
             it has {}. Shorten it, or send it first (Enter), then share the file.",
            caption.len()
        ));
    }
    Ok((!caption.is_empty()).then_some(caption))
}

impl AppState {
    pub(super) fn handle_file(&mut self, intent: FileIntent) -> Vec<Request> {
        match intent {
            FileIntent::Attach => {
                let Some(room) = self.open else {
                    return Vec::new();
                };
                if let Some(reason) = self.cannot_send(room) {
                    self.toast(reason.to_owned(), true);
                    return Vec::new();
                }
                // Where the last file was picked, else home.
                let dir = self.files.last_dir.clone();
                if self.files.native {
                    if self.files.native_open.is_some() {
                        return Vec::new();
                    }
                    self.files.native_open = Some(room);
                    return vec![Request::File(FileRequest::PickNative { dir })];
                }
                self.files.picker = Some(Picker {
                    room,
                    dir: None,
                    listing: None,
                });
                vec![Request::File(FileRequest::List { dir })]
            }
            FileIntent::Browse(dir) => {
                let Some(picker) = &mut self.files.picker else {
                    return Vec::new();
                };
                picker.listing = None;
                vec![Request::File(FileRequest::List { dir: Some(dir) })]
            }
            FileIntent::ClosePicker => {
                self.files.picker = None;
                Vec::new()
            }
            FileIntent::Share(path) => {
                let room = self.files.picker.as_ref().map(|p| p.room).or(self.open);
                let Some(room) = room else {
                    return Vec::new();
                };
                // A text too long to be a caption: nothing is shared, and
                // the picker stays open to share once it is shortened.
                if let Err(why) = self.room_caption(room) {
                    self.toast(why, true);
                    return Vec::new();
                }
                if let Some(dir) = self.files.picker.as_ref().and_then(|p| p.dir.clone()) {
                    self.files.last_dir = Some(dir);
                }
                self.files.picker = None;
                self.share(room, path)
            }
            FileIntent::ShareAll(paths) => {
                let Some(room) = self.open else {
                    return Vec::new();
                };
                if let Err(why) = self.room_caption(room) {
                    self.toast(why, true);
                    return Vec::new();
                }
                // The first file shared takes the draft; the others find
                // it empty.
                paths
                    .into_iter()
                    .flat_map(|path| self.share(room, path))
                    .collect()
            }
            FileIntent::RetryShare(local) => {
                let Some(pending) = self.files.pending.get_mut(&local) else {
                    return Vec::new();
                };
                pending.error = None;
                let (room, path) = (pending.room, pending.path.clone());
                let caption = pending.caption.clone();
                if let Some(message) = self.own_message_mut(|own| own.local == local)
                    && let Some(own) = &mut message.own
                {
                    own.delivery = Delivery::Queued;
                }
                let peer = self.rooms.get(&room).and_then(|r| r.info.direct);
                vec![Request::File(FileRequest::Share {
                    local,
                    room,
                    peer,
                    path,
                    caption,
                })]
            }
            FileIntent::Download(id) => self.download(id),
            FileIntent::Open(id) | FileIntent::ShowInFolder(id) => {
                let reveal = matches!(intent, FileIntent::ShowInFolder(_));
                let path = self
                    .files
                    .by_message
                    .get(&id)
                    .and_then(|meta| self.files.transfers.get(&meta.id))
                    .and_then(|t| match t {
                        Transfer::Available { path } => Some(path.clone()),
                        _ => None,
                    });
                match path {
                    Some(path) => vec![Request::File(FileRequest::Open { path, reveal })],
                    None => Vec::new(),
                }
            }
            FileIntent::SetSaveTo(text) => {
                let text = text.trim();
                if text.is_empty() {
                    return vec![Request::File(FileRequest::SetSaveTo { dir: None })];
                }
                // `~` is the home directory (the node's worker expands it).
                let dir = PathBuf::from(text);
                if !(dir.is_absolute() || text == "~" || text.starts_with("~/")) {
                    self.toast(
                        "Save files to: give a full path (starting with / or ~).".to_owned(),
                        true,
                    );
                    return Vec::new();
                }
                vec![Request::File(FileRequest::SetSaveTo { dir: Some(dir) })]
            }
        }
    }

    /// The caption the composer's text in `room` would give a file shared
    /// there now; `Err`: why it cannot (too long).
    pub fn room_caption(&self, room: RoomId) -> Result<Option<&str>, String> {
        draft_caption(self.drafts.get(&room).map_or("", String::as_str))
    }

    /// Shares `path` in `room` with the room's composer text as its
    /// caption (the composer empties): a row at once ("preparing"), the
    /// node reads and offers it. A text too long for a caption shares
    /// nothing and says why (the text stays).
    fn share(&mut self, room_id: RoomId, path: PathBuf) -> Vec<Request> {
        if let Some(reason) = self.cannot_send(room_id) {
            self.toast(reason.to_owned(), true);
            return Vec::new();
        }
        // A path typed in the picker: from the root or home (the node's
        // worker expands `~`), never from wherever the app was started.
        if !(path.is_absolute() || path.starts_with("~")) {
            self.toast(
                format!(
                    "{}: give the file's full path (starting with / or ~).",
                    path.display()
                ),
                true,
            );
            return Vec::new();
        }
        let Some(name) = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
        else {
            self.toast(format!("{} is not a file.", path.display()), true);
            return Vec::new();
        };
        // A name on this machine may hold a line break as well as a
        // received one: shown the same way.
        let name = plain_name(&name);
        let caption = match self.room_caption(room_id) {
            Ok(caption) => caption.map(str::to_owned),
            Err(why) => {
                self.toast(why, true);
                return Vec::new();
            }
        };
        let text = captioned_text(&name, caption.as_deref());
        let Some((local, peer)) = self.post_own(room_id, text) else {
            return Vec::new();
        };
        // The text went with the file: the composer is empty again.
        self.drafts.remove(&room_id);
        self.files.pending.insert(
            local,
            Pending {
                path: path.clone(),
                name,
                room: room_id,
                caption: caption.clone(),
                error: None,
            },
        );
        vec![Request::File(FileRequest::Share {
            local,
            room: room_id,
            peer,
            path,
            caption,
        })]
    }

    fn download(&mut self, id: MessageId) -> Vec<Request> {
        let Some(meta) = self.files.by_message.get(&id).cloned() else {
            return Vec::new();
        };
        let found = self.histories.iter().find_map(|(room, h)| {
            h.messages
                .iter()
                .find(|m| m.id == Some(id))
                .map(|m| (*room, m.from))
        });
        let Some((room, from)) = found else {
            return Vec::new();
        };
        if let Some(Transfer::Downloading { .. } | Transfer::Available { .. }) =
            self.files.transfers.get(&meta.id)
        {
            return Vec::new();
        }
        self.files
            .transfers
            .insert(meta.id, Transfer::Downloading { received: 0 });
        vec![Request::File(FileRequest::Download {
            file: meta,
            room,
            message: id,
            from,
            dir: self
                .files
                .save_to_chosen
                .then(|| self.files.save_to.clone())
                .flatten(),
        })]
    }

    pub(super) fn apply_file(&mut self, update: FileUpdate) {
        match update {
            FileUpdate::Offered {
                message,
                file,
                muted,
            } => {
                self.files
                    .transfers
                    .entry(file.id)
                    .or_insert(Transfer::Offered);
                self.files.by_message.insert(message.id, file);
                self.received(message, muted);
            }
            FileUpdate::Known(list) => {
                for (id, file, known) in list {
                    let transfer = self
                        .files
                        .transfers
                        .entry(file.id)
                        .or_insert(Transfer::Offered);
                    // The node's word, unless the window knows better
                    // already (a later event than the node's list).
                    let keep = match (&*transfer, &known) {
                        (Transfer::Available { .. }, _) => true,
                        (Transfer::Downloading { .. }, Transfer::Offered) => true,
                        (
                            Transfer::Downloading { received: a },
                            Transfer::Downloading { received: b },
                        ) => a > b,
                        _ => false,
                    };
                    if !keep {
                        *transfer = known;
                    }
                    self.files.by_message.insert(id, file);
                }
            }
            FileUpdate::Shared { local, result } => match result {
                Ok((id, file)) => {
                    if let Some(pending) = self.files.pending.remove(&local) {
                        // Ours: here from the start, at the path it came from.
                        self.files
                            .transfers
                            .insert(file.id, Transfer::Available { path: pending.path });
                    }
                    self.files.by_message.insert(id, file);
                    self.apply(Update::Sent { local, id });
                }
                Err(error) => {
                    if let Some(pending) = self.files.pending.get_mut(&local) {
                        pending.error = Some(error.clone());
                    }
                    if let Some(message) = self.own_message_mut(|own| own.local == local)
                        && let Some(own) = &mut message.own
                    {
                        own.delivery = Delivery::Failed(error.clone());
                    }
                    self.toast(format!("Not shared: {error}"), true);
                }
            },
            // The node's events come in order: progress after a failure is
            // a new fetch (asked again, or with `kith fetch`).
            FileUpdate::Progress { file, received } => {
                let transfer = self
                    .files
                    .transfers
                    .entry(file)
                    .or_insert(Transfer::Offered);
                match transfer {
                    Transfer::Downloading { received: was } => *was = (*was).max(received),
                    Transfer::Available { .. } => {}
                    Transfer::Offered | Transfer::Failed(_) => {
                        *transfer = Transfer::Downloading { received };
                    }
                }
            }
            FileUpdate::Downloaded { file, path } => {
                self.files
                    .transfers
                    .insert(file, Transfer::Available { path });
            }
            FileUpdate::DownloadFailed { file, error } => {
                self.files.transfers.insert(file, Transfer::Failed(error));
            }
            FileUpdate::Listing { dir, entries } => {
                if let Some(picker) = &mut self.files.picker {
                    picker.dir = Some(dir);
                    picker.listing = Some(entries);
                }
            }
            FileUpdate::NativePicker(possible) => self.files.native = possible,
            FileUpdate::NativePicked { path, missing } => {
                let Some(room) = self.files.native_open.take() else {
                    return;
                };
                if let Some(path) = path {
                    if let Some(dir) = path.parent() {
                        self.files.last_dir = Some(dir.to_owned());
                    }
                    let requests = self.share(room, path);
                    self.files.requests.extend(requests);
                } else if missing {
                    // Not there after all: the app's own, from now on.
                    self.files.native = false;
                    self.files.picker = Some(Picker {
                        room,
                        dir: None,
                        listing: None,
                    });
                    let dir = self.files.last_dir.clone();
                    self.files
                        .requests
                        .push(Request::File(FileRequest::List { dir }));
                }
            }
            FileUpdate::SaveTo { dir, chosen } => {
                self.files.save_to = Some(dir);
                self.files.save_to_chosen = chosen;
            }
        }
    }

    /// The file row of `message`, if it is a file message.
    pub fn file_row<'a>(&'a self, message: &Message) -> Option<FileRow<'a>> {
        if let Some(meta) = message.id.and_then(|id| self.files.by_message.get(&id)) {
            let status = match self.files.transfers.get(&meta.id) {
                None | Some(Transfer::Offered) => FileStatus::Offered,
                Some(Transfer::Downloading { received }) => FileStatus::Downloading {
                    received: *received,
                },
                Some(Transfer::Available { path }) => FileStatus::Available { path },
                Some(Transfer::Failed(why)) => FileStatus::Failed(why),
            };
            return Some(FileRow {
                name: &meta.name,
                size: Some(meta.size),
                status,
            });
        }
        let local = message.own.as_ref().map(|o| o.local)?;
        let pending = self.files.pending.get(&local)?;
        Some(FileRow {
            name: &pending.name,
            size: None,
            status: match &pending.error {
                Some(error) => FileStatus::ShareFailed { local, error },
                None => FileStatus::Preparing,
            },
        })
    }
}
