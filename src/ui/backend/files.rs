//! What the window's file sharing needs from this machine, off the frame
//! thread: sharing and fetching through the node, listing a directory for
//! the picker, where downloads go, opening a file with the system's
//! program, the system's file picker. (The node names a download so that
//! no file already there is replaced: "report (1).pdf".)

use super::Outbox;
use crate::daemon::{self, DaemonError, DaemonHandle, FileEntry, FileInfo, FileRef, FileState};
use crate::proto::ids::{MessageId, RoomId};
use crate::ui::state::{
    DirEntry, FileId, FileMeta, FileRequest, FileUpdate, MessageInfo, Transfer, Update,
    captioned_text, plain_name,
};
use std::path::{Path, PathBuf};

/// The file in the data directory naming where downloads go (chosen in
/// Settings; absent: the default).
pub const SAVE_TO_FILE: &str = "downloads-dir";
/// Most entries a directory listing shows.
pub const MAX_LISTING: usize = 2_000;

/// The home directory, if known.
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// `~` and `~/x` as the home directory's; anything else as it is.
pub fn expand_home(path: &Path) -> PathBuf {
    let Some(text) = path.to_str() else {
        return path.to_owned();
    };
    match (text.strip_prefix('~'), home_dir()) {
        (Some(""), Some(home)) => home,
        (Some(rest), Some(home)) if rest.starts_with('/') => home.join(&rest[1..]),
        _ => path.to_owned(),
    }
}

/// Where downloads go: the directory chosen in Settings, else
/// `~/Downloads` when it exists, else the data directory's `downloads`.
/// The second value says whether it was chosen.
pub fn save_to(data_dir: &Path) -> (PathBuf, bool) {
    let chosen = std::fs::read_to_string(data_dir.join(SAVE_TO_FILE))
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    match chosen {
        Some(dir) => (dir, true),
        None => (default_save_to(data_dir), false),
    }
}

/// `~/Downloads` when it exists, else the data directory's `downloads`.
pub fn default_save_to(data_dir: &Path) -> PathBuf {
    home_dir()
        .map(|home| home.join("Downloads"))
        .filter(|d| d.is_dir())
        .unwrap_or_else(|| data_dir.join("downloads"))
}

/// Saves the choice of downloads directory (`None`: the default again);
/// returns where downloads go now.
pub fn set_save_to(data_dir: &Path, dir: Option<&Path>) -> std::io::Result<(PathBuf, bool)> {
    match dir {
        Some(dir) => {
            let dir = expand_home(dir);
            let text = dir.to_str().ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the path is not valid text",
                )
            })?;
            std::fs::write(data_dir.join(SAVE_TO_FILE), format!("{text}\n"))?;
        }
        None => match std::fs::remove_file(data_dir.join(SAVE_TO_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        },
    }
    Ok(save_to(data_dir))
}

/// A directory's entries for the picker: directories first, then files,
/// each by name; hidden ones (a leading dot) left out; at most
/// [`MAX_LISTING`].
pub fn list_dir(dir: &Path) -> Result<Vec<DirEntry>, String> {
    let read = std::fs::read_dir(dir).map_err(|e| format!("Cannot list {}: {e}", dir.display()))?;
    let mut entries: Vec<DirEntry> = read
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                return None;
            }
            // Follows links: a link to a directory is browsed into.
            let meta = std::fs::metadata(entry.path()).ok()?;
            Some(DirEntry {
                name,
                dir: meta.is_dir(),
                size: if meta.is_dir() { 0 } else { meta.len() },
            })
        })
        .take(MAX_LISTING)
        .collect();
    entries.sort_by(|a, b| {
        b.dir
            .cmp(&a.dir)
            .then_with(|| a.name.to_lowercase().cmp(&b.name.to_lowercase()))
    });
    Ok(entries)
}

/// The program that opens files here, and its arguments for `path` (or,
/// with `reveal`, for showing it in its folder).
pub fn opener(path: &Path, reveal: bool) -> (&'static str, Vec<std::ffi::OsString>) {
    if cfg!(target_os = "macos") {
        let mut args = Vec::new();
        if reveal {
            args.push("-R".into());
        }
        args.push(path.as_os_str().to_owned());
        ("open", args)
    } else {
        let target = if reveal {
            path.parent().unwrap_or(path)
        } else {
            path
        };
        ("xdg-open", vec![target.as_os_str().to_owned()])
    }
}

/// Opens `path` (or its folder) with the system's program on a thread of
/// its own; `failed` gets a sentence if that does not work.
pub fn open_detached(path: PathBuf, reveal: bool, failed: impl FnOnce(String) + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name("kith-ui-open".into())
        .spawn(move || {
            let (program, args) = opener(&path, reveal);
            let what = path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            let status = std::process::Command::new(program)
                .args(&args)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            match status {
                Ok(status) if status.success() => {}
                Ok(status) => failed(format!(
                    "Could not open {what}: {program} ended with {status}."
                )),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => failed(format!(
                    "Could not open {what}: no program opens files here ({program} is not \
                     installed). It is in {}.",
                    path.parent().unwrap_or(&path).display()
                )),
                Err(e) => failed(format!("Could not open {what}: cannot run {program}: {e}.")),
            }
        });
    if let Err(e) = spawned {
        log::warn!("cannot start a thread to open a file: {e}");
    }
}

/// Tells the window where downloads go (at start).
pub(super) fn announce_save_to(handle: &DaemonHandle, out: &Outbox) {
    let (dir, chosen) = save_to(handle.data_dir());
    out.send(Update::File(FileUpdate::SaveTo { dir, chosen }));
    out.send(Update::File(FileUpdate::NativePicker(
        native_picker_possible(),
    )));
}

/// Whether the system's file picker may be there: a display, and the
/// desktop portal's bus or zenity. (Whether it really is shows only when
/// it is asked: see [`pick_native`].)
pub fn native_picker_possible() -> bool {
    let var = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    let display = var("DISPLAY") || var("WAYLAND_DISPLAY");
    let zenity = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("zenity").is_file()));
    display && (var("DBUS_SESSION_BUS_ADDRESS") || zenity)
}

/// A picker that answers "nothing" sooner than this was not shown: nobody
/// cancels a dialog that fast.
const NATIVE_MISSING_MILLIS: u128 = 250;

/// Shows the system's file picker on a thread of its own (it blocks until
/// closed) and sends what was picked.
pub(super) fn pick_native(dir: Option<PathBuf>, out: Outbox) {
    let fallback = out.clone();
    let spawned = std::thread::Builder::new()
        .name("kith-ui-picker".into())
        .spawn(move || {
            let started = std::time::Instant::now();
            let mut dialog = rfd::FileDialog::new().set_title("Share a file");
            if let Some(dir) = dir.or_else(home_dir) {
                dialog = dialog.set_directory(dir);
            }
            let path = dialog.pick_file();
            let missing = path.is_none() && started.elapsed().as_millis() < NATIVE_MISSING_MILLIS;
            out.send(Update::File(FileUpdate::NativePicked { path, missing }));
        });
    if spawned.is_err() {
        // The app's own picker instead.
        fallback.send(Update::File(FileUpdate::NativePicked {
            path: None,
            missing: true,
        }));
    }
}

/// Answers a file request on the node's worker thread.
pub(super) fn answer(handle: &DaemonHandle, out: &Outbox, request: FileRequest) {
    match request {
        FileRequest::Share {
            local,
            room,
            peer,
            path,
            caption,
        } => {
            let to = match peer {
                Some(peer) => daemon::Target::Peer(peer),
                None => daemon::Target::Room(room),
            };
            // Reads, hashes and stores the file (blocking the node a while
            // for a large one; never the window).
            let result = handle
                .share_file(to, &expand_home(&path), caption.as_deref())
                .map_err(|e| share_error(&e))
                .map(|id| (id, shared_meta(handle, room, id, &path)));
            out.send(Update::File(FileUpdate::Shared { local, result }));
        }
        FileRequest::Download {
            file, message, dir, ..
        } => {
            let dir = match dir {
                Some(dir) => expand_home(&dir),
                None => save_to(handle.data_dir()).0,
            };
            // The node reports progress, then the copy or why it failed.
            if let Err(error) = handle.fetch_file(FileRef::Message(message), &dir) {
                out.send(Update::File(FileUpdate::DownloadFailed {
                    file: file.id,
                    error: error.to_string(),
                }));
            }
        }
        FileRequest::Open { path, reveal } => {
            let out = out.clone();
            open_detached(path, reveal, move |error| out.send(Update::Error(error)));
        }
        FileRequest::List { dir } => {
            let dir = dir
                .map(|d| expand_home(&d))
                .or_else(home_dir)
                .unwrap_or_else(|| PathBuf::from("/"));
            out.send(Update::File(FileUpdate::Listing {
                entries: list_dir(&dir),
                dir,
            }));
        }
        FileRequest::PickNative { dir } => pick_native(dir, out.clone()),
        FileRequest::SetSaveTo { dir } => match set_save_to(handle.data_dir(), dir.as_deref()) {
            Ok((dir, chosen)) => out.send(Update::File(FileUpdate::SaveTo { dir, chosen })),
            Err(e) => out.send(Update::Error(format!("Could not save where files go: {e}"))),
        },
    }
}

/// Why a share failed, as a sentence.
fn share_error(error: &DaemonError) -> String {
    match error {
        DaemonError::File(why) => why.clone(),
        other => other.to_string(),
    }
}

/// What our just-shared message `id` offers, as the node lists it (from
/// the file itself if the list does not have it).
fn shared_meta(handle: &DaemonHandle, room: RoomId, id: MessageId, path: &Path) -> FileMeta {
    let listed = handle
        .files(room)
        .ok()
        .and_then(|files| files.into_iter().find(|f| f.message == id));
    match listed {
        Some(entry) => meta(&entry.info),
        None => FileMeta {
            // Named by the message until the node lists it.
            id: FileId(id.0),
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            size: std::fs::metadata(path).map_or(0, |m| m.len()),
        },
    }
}

/// A file offer as the window keeps it.
pub(super) fn meta(info: &FileInfo) -> FileMeta {
    FileMeta {
        id: FileId(info.hash.0),
        name: plain_name(&info.name),
        size: info.size,
    }
}

/// A file message's text: "📎 name", then its caption on a line of its own.
pub(super) fn message_text(info: &FileInfo, caption: &str) -> String {
    captioned_text(&plain_name(&info.name), Some(caption))
}

/// A message from the node: a file message as its offer, text as text.
pub(super) fn received(message: MessageInfo, file: Option<FileInfo>, muted: bool) -> Update {
    match file {
        Some(info) => Update::File(FileUpdate::Offered {
            message: MessageInfo {
                text: message_text(&info, &message.text),
                ..message
            },
            file: meta(&info),
            muted,
        }),
        None => Update::Received { message, muted },
    }
}

/// How a file the node lists stands, as the window shows it.
fn transfer(entry: &FileEntry) -> Transfer {
    match (&entry.state, &entry.path) {
        (FileState::Fetching { have }, _) => Transfer::Downloading { received: *have },
        (FileState::Failed { reason }, _) => Transfer::Failed(reason.clone()),
        // A complete file with a copy to open; without one, Download
        // writes a copy at once.
        (FileState::Complete, Some(path)) => Transfer::Available { path: path.clone() },
        (FileState::Complete | FileState::Offered, _) => Transfer::Offered,
    }
}

/// Before a history page of `room` holding file messages (`ids`): how
/// each of their files stands here. `None` when the page has none or the
/// node cannot say (the rows then show Download).
pub(super) fn known(handle: &DaemonHandle, room: RoomId, ids: &[MessageId]) -> Option<Update> {
    if ids.is_empty() {
        return None;
    }
    let files = handle.files(room).ok()?;
    let known = files
        .iter()
        .filter(|f| ids.contains(&f.message))
        .map(|f| (f.message, meta(&f.info), transfer(f)))
        .collect();
    Some(Update::File(FileUpdate::Known(known)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kith-ui-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn listing_puts_directories_first_and_hides_dot_files() {
        let dir = temp("list");
        std::fs::create_dir(dir.join("zeta")).expect("mkdir");
        std::fs::write(dir.join("Alpha.txt"), b"12345").expect("write");
        std::fs::write(dir.join(".hidden"), b"").expect("write");
        let entries = list_dir(&dir).expect("list");
        let names: Vec<(&str, bool, u64)> = entries
            .iter()
            .map(|e| (e.name.as_str(), e.dir, e.size))
            .collect();
        assert_eq!(names, [("zeta", true, 0), ("Alpha.txt", false, 5)]);
        assert!(list_dir(&dir.join("missing")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_downloads_choice_is_saved_and_forgotten() {
        let dir = temp("save-to");
        let (default, chosen) = save_to(&dir);
        assert!(!chosen);
        assert_eq!(default, default_save_to(&dir));
        let (dir2, chosen) = set_save_to(&dir, Some(Path::new("/srv/files"))).expect("save");
        assert_eq!((dir2, chosen), (PathBuf::from("/srv/files"), true));
        assert_eq!(save_to(&dir), (PathBuf::from("/srv/files"), true));
        let (_, chosen) = set_save_to(&dir, None).expect("forget");
        assert!(!chosen);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
