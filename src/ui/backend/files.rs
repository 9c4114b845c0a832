//! What the window's file sharing needs from this machine, off the frame
//! thread: listing a directory for the picker, where downloads go (and a
//! name not taken there), opening a file with the system's program.

use super::Outbox;
use crate::daemon::DaemonHandle;
use crate::ui::state::{DirEntry, FileRequest, FileUpdate, Update};
use std::path::{Path, PathBuf};

/// The file in the data directory naming where downloads go (chosen in
/// Settings; absent: the default).
pub const SAVE_TO_FILE: &str = "downloads-dir";
/// Most entries a directory listing shows.
pub const MAX_LISTING: usize = 2_000;
/// Longest file name kept, in bytes (as most file systems allow).
const MAX_NAME_BYTES: usize = 255;

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

/// A file name from another machine made safe to create here: no path
/// separators or control characters, not `.` or `..`, not hidden, at most
/// 255 bytes; never empty.
pub fn clean_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| match c {
            '/' | '\\' | '\0' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim().to_owned();
    let mut cleaned = if cleaned.is_empty() {
        "file".to_owned()
    } else {
        cleaned
    };
    if cleaned.len() > MAX_NAME_BYTES {
        // Keep the extension (if short) and cut the stem at a character.
        let ext = Path::new(&cleaned)
            .extension()
            .and_then(|e| e.to_str())
            .filter(|e| e.len() <= 16)
            .map(|e| format!(".{e}"))
            .unwrap_or_default();
        let mut stem = String::new();
        for c in cleaned.chars() {
            if stem.len() + c.len_utf8() + ext.len() > MAX_NAME_BYTES {
                break;
            }
            stem.push(c);
        }
        cleaned = format!("{stem}{ext}");
    }
    cleaned
}

/// The `n`th alternative to `name`: `report (1).pdf`, `archive (2).tar.gz`.
fn numbered(name: &str, n: u32) -> String {
    // `.tar.gz` and the like stay whole.
    let split = match name.find(".tar.") {
        Some(at) if at > 0 => Some(at),
        _ => name.rfind('.').filter(|at| *at > 0),
    };
    match split {
        Some(at) => format!("{} ({n}){}", &name[..at], &name[at..]),
        None => format!("{name} ({n})"),
    }
}

/// Creates a new empty file for `name` in `dir` (made if missing), never
/// touching an existing one: `name`, else `name (1).ext`, `(2)`, ...
/// Returns its path; the download is written there.
pub fn reserve(dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let name = clean_name(name);
    for n in 0..10_000 {
        let candidate = if n == 0 {
            name.clone()
        } else {
            numbered(&name, n)
        };
        let path = dir.join(candidate);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(_) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "too many files of that name",
    ))
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
        FileRequest::Share { local, .. } => out.send(Update::File(FileUpdate::Shared {
            local,
            result: Err("this node cannot share files yet".to_owned()),
        })),
        FileRequest::Download { file, .. } => out.send(Update::File(FileUpdate::DownloadFailed {
            file: file.id,
            error: "this node cannot download files yet".to_owned(),
        })),
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
    fn names_from_elsewhere_cannot_leave_the_directory() {
        assert_eq!(clean_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(clean_name(".."), "file");
        assert_eq!(clean_name(".bashrc"), "bashrc");
        assert_eq!(clean_name("a\\b\nc"), "a_b_c");
        assert_eq!(clean_name(""), "file");
        let long = format!("{}.pdf", "é".repeat(300));
        let cleaned = clean_name(&long);
        assert!(
            cleaned.len() <= 255 && cleaned.ends_with(".pdf"),
            "{cleaned}"
        );
    }

    #[test]
    fn a_download_never_overwrites_an_existing_file() {
        let dir = temp("reserve");
        std::fs::write(dir.join("report.pdf"), b"mine").expect("write");
        let first = reserve(&dir, "report.pdf").expect("reserve");
        assert_eq!(first, dir.join("report (1).pdf"));
        let second = reserve(&dir, "report.pdf").expect("reserve");
        assert_eq!(second, dir.join("report (2).pdf"));
        assert_eq!(
            std::fs::read(dir.join("report.pdf")).expect("read"),
            b"mine"
        );
        assert_eq!(
            reserve(&dir, "a.tar.gz").expect("reserve"),
            dir.join("a.tar.gz")
        );
        assert_eq!(
            reserve(&dir, "a.tar.gz").expect("reserve"),
            dir.join("a (1).tar.gz")
        );
        assert_eq!(
            reserve(&dir, "README").expect("reserve"),
            dir.join("README")
        );
        assert_eq!(
            reserve(&dir, "README").expect("reserve"),
            dir.join("README (1)")
        );
        // Made when missing.
        let nested = dir.join("new/dir");
        assert_eq!(reserve(&nested, "x").expect("reserve"), nested.join("x"));
        let _ = std::fs::remove_dir_all(&dir);
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
