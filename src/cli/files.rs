//! `kith share`, `kith files`, `kith fetch`: file sharing through the
//! running daemon. Every answer is JSON (see README, "JSON output").

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kith::daemon::control::{Client, Request};
use serde_json::{Value, json};

/// How often `kith fetch` asks how its file stands while it waits.
const POLL: Duration = Duration::from_millis(100);

/// `kith share`: prints `{"id"}` (the file message).
pub(super) fn share(data_dir: &Path, to: &str, path: &Path, caption: Option<String>) -> Result<()> {
    // The daemon may run elsewhere in the file system: it gets an absolute
    // path.
    let path =
        std::fs::canonicalize(path).with_context(|| format!("cannot read {}", path.display()))?;
    let line = Request::Share {
        to: to.to_owned(),
        path: path.to_string_lossy().into_owned(),
        caption,
    }
    .emit();
    let (_, id) = Client::connect(data_dir)?.request(&line)?;
    outln!("{}", json!({ "id": id }))
}

/// `kith files`: prints `{"files": [...]}`.
pub(super) fn list(data_dir: &Path, room: &str) -> Result<()> {
    let line = Request::Files {
        room: room.to_owned(),
    }
    .emit();
    let (data, _) = Client::connect(data_dir)?.request(&line)?;
    outln!("{}", data.first().map_or("{\"files\":[]}", String::as_str))
}

/// `kith fetch`: starts the fetch; with `wait`, waits until the file is
/// complete (prints `{"hash", "path"}`) or failed (an error).
pub(super) fn fetch(data_dir: &Path, file: &str, to: &Path, wait: bool) -> Result<()> {
    let file = file.trim().to_ascii_lowercase();
    if kith::daemon::FileHash::from_hex(&file).is_none() {
        bail!("{file:?} is not a file hash or message id (64 hex digits; see `kith files`)");
    }
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    let to = std::fs::canonicalize(to).with_context(|| format!("cannot use {}", to.display()))?;
    let line = Request::Fetch {
        file: file.clone(),
        to_dir: to.to_string_lossy().into_owned(),
    }
    .emit();
    Client::connect(data_dir)?.request(&line)?;
    if !wait {
        return outln!("{}", json!({ "fetching": file }));
    }
    let ask = Request::File { file: file.clone() }.emit();
    let mut shown_have = None;
    loop {
        let data = match Client::connect(data_dir)?.request(&ask) {
            Ok((data, _)) => data,
            // Checking a large file ties the daemon up for a moment.
            Err(error) if error.to_string().contains("did not answer in time") => {
                std::thread::sleep(POLL);
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        let value: Value = serde_json::from_str(data.first().map_or("", String::as_str))
            .context("the daemon's answer is not JSON")?;
        let entry = &value["files"][0];
        match entry["state"].as_str() {
            Some("complete") if !entry["path"].is_null() => {
                return outln!(
                    "{}",
                    json!({ "hash": entry["hash"], "path": entry["path"], "size": entry["size"] })
                );
            }
            Some("failed") => bail!(
                "fetching {} failed: {}",
                entry["name"].as_str().unwrap_or("the file"),
                entry["reason"].as_str().unwrap_or("unknown reason")
            ),
            _ => {
                let have = entry["have"].as_u64();
                if have != shown_have {
                    shown_have = have;
                    eprintln!(
                        "{} of {} bytes",
                        have.unwrap_or(0),
                        entry["size"].as_u64().unwrap_or(0)
                    );
                }
            }
        }
        std::thread::sleep(POLL);
    }
}
