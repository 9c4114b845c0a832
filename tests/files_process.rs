//! File sharing with the real binary: two `kith daemon` processes on
//! 127.0.0.1; `kith share` on one, `kith files` and `kith fetch` on the
//! other, and the bytes arrive equal. Hostile names never leave the
//! download directory. Every wait is bounded.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::TempDir;
use kith::account::Account;
use kith::proto::crypto::PublicIdentity;
use kith::proto::ids::PeerId;
use kith::store::KdfParams;

const PASS: &str = "files process test passphrase";
const WAIT: Duration = Duration::from_secs(120);

fn account(dir: &TempDir, name: &str) -> (PathBuf, PublicIdentity) {
    let data = dir.path().join(name);
    let account = Account::create(&data, PASS, KdfParams::insecure_fast_for_tests())
        .expect("a fresh temp dir takes an account");
    (data, account.identity.public())
}

fn kith(data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kith"));
    command.arg("--data").arg(data).env("KITH_PASSPHRASE", PASS);
    command
}

/// A `kith daemon` child, killed if still running when dropped.
struct Daemon(Child);

impl Daemon {
    fn start(data: &Path, listen: SocketAddr, peer: &PublicIdentity, at: SocketAddr) -> Self {
        let mut child = kith(data)
            .args([
                "daemon",
                "--no-mdns",
                "--listen",
                &listen.to_string(),
                "--peer",
            ])
            .arg(format!("{}@{at}", PeerId(peer.to_bytes()).to_hex()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the kith binary runs");
        let stdout = child.stdout.take().expect("stdout was piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        loop {
            let line = rx
                .recv_timeout(WAIT)
                .expect("the daemon prints its address");
            if line.starts_with("listening") {
                break;
            }
        }
        Daemon(child)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `kith ARGS`; stdout, or a panic with stderr.
fn ok(data: &Path, args: &[&str]) -> String {
    let output = kith(data)
        .args(args)
        .output()
        .expect("the kith binary runs");
    assert!(
        output.status.success(),
        "kith {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(data: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(data, args)).expect("JSON output")
}

/// Two free ports on 127.0.0.1.
fn two_ports() -> (SocketAddr, SocketAddr) {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    (a.local_addr().unwrap(), b.local_addr().unwrap())
}

#[test]
fn kith_share_on_one_daemon_and_kith_fetch_on_the_other() {
    let dir = TempDir::new("files-process");
    let (a_data, a_pub) = account(&dir, "a");
    let (b_data, b_pub) = account(&dir, "b");
    let (a_addr, b_addr) = two_ports();
    let _a = Daemon::start(&a_data, a_addr, &b_pub, b_addr);
    let _b = Daemon::start(&b_data, b_addr, &a_pub, a_addr);
    let a_id = a_pub.peer_id().to_hex();
    let b_id = b_pub.peer_id().to_hex();

    let mut content = vec![0u8; 3 * 1024 * 1024 + 123];
    blake3::Hasher::new().finalize_xof().fill(&mut content);
    // A name that tries to climb out of the download directory: only its
    // last component is offered.
    let nested = dir.path().join("etc");
    std::fs::create_dir_all(&nested).unwrap();
    let source = nested.join("passwd");
    std::fs::write(&source, &content).unwrap();

    let shared = json(
        &a_data,
        &[
            "share",
            &b_id,
            source.to_str().unwrap(),
            "--caption",
            "the numbers",
        ],
    );
    let id = shared["id"].as_str().expect("a message id").to_owned();

    // The offer reaches B (bounded wait on the listing).
    let deadline = Instant::now() + WAIT;
    let entry = loop {
        let files = json(&b_data, &["files", &a_id]);
        if let Some(entry) = files["files"].as_array().and_then(|f| f.first()) {
            break entry.clone();
        }
        assert!(Instant::now() < deadline, "the offer never arrived");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(entry["message"], id.as_str());
    assert_eq!(entry["name"], "passwd");
    assert_eq!(entry["caption"], "the numbers");
    assert_eq!(entry["state"], "offered");
    assert_eq!(entry["size"], content.len() as u64);
    let hash = entry["hash"].as_str().unwrap().to_owned();
    assert_eq!(hash, blake3::hash(&content).to_hex().as_str());

    let downloads = dir.path().join("downloads");
    let fetched = json(
        &b_data,
        &["fetch", &hash, "--to", downloads.to_str().unwrap()],
    );
    let path = PathBuf::from(fetched["path"].as_str().expect("a path"));
    assert_eq!(path, downloads.canonicalize().unwrap().join("passwd"));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        content,
        "the bytes are equal"
    );
    let files = json(&b_data, &["files", &a_id]);
    assert_eq!(files["files"][0]["state"], "complete");

    // The history shows the file message as a file.
    let history = json(&b_data, &["history", &a_id, "--json"]);
    let row = &history["messages"][0];
    assert_eq!(row["file"]["hash"], hash.as_str());
    assert_eq!(row["text"], "the numbers");
    // The same chat by A's public key (what `--peer` and `kith id` use).
    let a_key = PeerId(a_pub.to_bytes()).to_hex();
    let by_key = json(&b_data, &["history", &a_key, "--json"]);
    assert_eq!(by_key["messages"], history["messages"], "history by key");

    // `kith search` finds the file by its name, and says what it offers.
    let found = ok(&b_data, &["search", "PASSWD"]);
    assert!(
        found.contains(&format!(
            "[file passwd ({} bytes) {hash}] the numbers",
            content.len()
        )),
        "{found}"
    );
    let found = json(&b_data, &["search", "numbers", "--json"]);
    assert_eq!(found["results"][0]["id"], id.as_str(), "{found}");

    // A hash nobody offered is a sentence, not a hang.
    let output = kith(&b_data)
        .args(["fetch", &"ab".repeat(32), "--to"])
        .arg(&downloads)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no file"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
