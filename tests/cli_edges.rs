//! The `kith` binary at its edges: a reader that closed stdout (`kith
//! discovery | head -1`), a store file it cannot open, and the registry
//! stopped by SIGTERM. Every wait is bounded.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{TempDir, no_spawn_under_way, spawn};
use kith::account::Account;
use kith::daemon::{self, DaemonConfig};
use kith::net::NetConfig;
use kith::proto::crypto::Identity;
use kith::proto::ids::PeerId;
use kith::registry::{ClientEvent, RegistryClient, RegistryClientConfig};
use kith::store::KdfParams;

const PASS: &str = "cli edges test passphrase";
const WAIT: Duration = Duration::from_secs(60);

fn account(dir: &TempDir) -> PathBuf {
    let data = dir.path().join("data");
    drop(Account::create(&data, PASS, KdfParams::insecure_fast_for_tests()).expect("create"));
    data
}

fn kith(data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kith"));
    command
        .arg("--data")
        .arg(data)
        .env("KITH_PASSPHRASE", PASS)
        .stdin(Stdio::null());
    command
}

/// A stdout whose reader has already gone, like `| head -1` after its
/// line: every write gets EPIPE, whenever the command gets to it.
fn closed_stdout() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    Stdio::from(writer)
}

/// Runs `command` with stdout closed and stderr captured, bounded by WAIT.
fn run_with_closed_stdout(mut command: Command) -> Output {
    let child = spawn(command.stdout(closed_stdout()).stderr(Stdio::piped()))
        .expect("the kith binary runs");
    wait_bounded(child)
}

fn wait_bounded(child: Child) -> Output {
    let (tx, rx) = mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(output) => output.expect("the child is waited for"),
        Err(_) => {
            // SAFETY: kill only sends a signal to our own child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            panic!("kith did not exit within {WAIT:?}");
        }
    }
}

fn assert_quiet_success(output: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.is_empty(),
        "{what}: {:?}, stderr: {stderr}",
        output.status
    );
}

#[test]
fn commands_exit_quietly_when_the_reader_closed_stdout() {
    let dir = TempDir::new("cli-epipe");
    let data = account(&dir);

    let mut id = kith(&data);
    id.arg("id");
    assert_quiet_success(&run_with_closed_stdout(id), "kith id");

    let config = DaemonConfig {
        net: NetConfig::loopback(),
        control_socket: true,
        ..DaemonConfig::default()
    };
    no_spawn_under_way();
    let daemon = daemon::start(&data, PASS, config).expect("the daemon starts");
    for request in ["discovery", "status", "peers", "rooms"] {
        let mut command = kith(&data);
        command.arg(request);
        assert_quiet_success(&run_with_closed_stdout(command), request);
    }
    daemon.shutdown().expect("clean shutdown");
}

#[test]
fn a_daemon_whose_stdout_is_closed_stops_cleanly_and_quietly() {
    let dir = TempDir::new("cli-epipe-daemon");
    let data = account(&dir);
    let mut command = kith(&data);
    command.args(["daemon", "--listen", "127.0.0.1:0"]);
    assert_quiet_success(&run_with_closed_stdout(command), "kith daemon");
    // Its store was closed: the lock is free again.
    no_spawn_under_way();
    drop(Account::open(&data, PASS).expect("the store is free after the daemon"));
}

#[test]
fn a_lock_path_that_is_a_directory_is_one_line_naming_it() {
    let dir = TempDir::new("cli-lockdir");
    let data = account(&dir);
    let lock = data.join("kith.db.lock");
    std::fs::remove_file(&lock).expect("the lock file is there after create");
    std::fs::create_dir(&lock).expect("a directory in its place");
    let output = wait_bounded(
        spawn(
            kith(&data)
                .arg("id")
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        )
        .expect("the kith binary runs"),
    );
    assert_eq!(output.status.code(), Some(1));
    let os = std::io::Error::from_raw_os_error(libc::EISDIR);
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!("kith: cannot open the lock file {}: {os}\n", lock.display())
    );
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as u64
}

/// A child killed (SIGKILL) if the test fails before it was waited for.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn the_registry_prints_its_counters_when_stopped_by_sigterm() {
    let child = spawn(
        Command::new(env!("CARGO_BIN_EXE_kith"))
            .args(["registry", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .expect("the kith binary runs");
    let pid = child.id();
    let mut child = KillOnDrop(Some(child));
    let (tx, lines) = mpsc::channel();
    let stdout = child
        .0
        .as_mut()
        .and_then(|c| c.stdout.take())
        .expect("stdout was piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = || {
        lines
            .recv_timeout(WAIT)
            .expect("the registry prints a line (or exits with an error on stderr)")
    };
    let addr: std::net::SocketAddr = next_line()
        .strip_prefix("kith registry listening on ")
        .expect("the address comes first")
        .parse()
        .expect("a socket address");
    let key = PeerId::from_hex(
        next_line()
            .strip_prefix("public key")
            .expect("then the key")
            .trim(),
    )
    .expect("64 hex characters");

    // One registration, answered, so the counters have something to show.
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut client = RegistryClient::new(
        Identity::generate(&mut rand::rng()),
        RegistryClientConfig::new(key.0),
        [7; 32],
    )
    .expect("a valid registry key");
    client
        .set_addresses(vec![socket.local_addr().expect("bound")])
        .expect("one address");
    socket
        .send_to(&client.register(Instant::now(), unix_ms()), addr)
        .expect("send");
    let mut buffer = [0u8; 1500];
    let (len, _) = socket.recv_from(&mut buffer).expect("the registry answers");
    let event = client
        .handle_datagram(Instant::now(), unix_ms(), &buffer[..len])
        .expect("the answer verifies");
    assert!(matches!(event, Some(ClientEvent::Registered)), "{event:?}");

    // SAFETY: kill only sends a signal to our own child.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) }, 0);
    let stopped = loop {
        let line = next_line();
        if line.starts_with("kith registry stopped: ") {
            break line;
        }
    };
    assert!(stopped.contains("registrations 1, "), "{stopped}");
    assert!(stopped.contains("malformed 0"), "{stopped}");
    let output = wait_bounded(child.0.take().expect("not waited for yet"));
    let status: ExitStatus = output.status;
    assert!(
        status.success(),
        "{status:?}, stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_daemon_warning_is_one_stderr_line_naming_the_daemon() {
    let dir = TempDir::new("cli-warning");
    let data = account(&dir);
    let key = PeerId(Identity::generate(&mut rand::rng()).public().to_bytes()).to_hex();
    // A wildcard listen address and only an interface that does not exist
    // leave no address to publish to the registry: the daemon warns (from
    // deep in the library, through `log`) and carries on. Nothing is sent
    // to the registry's loopback address before a registration.
    let child = spawn(
        kith(&data)
            .args(["daemon", "--listen", "0.0.0.0:0", "--no-mdns"])
            .args(["--interface", "kith-none0", "--registry", "127.0.0.1:9"])
            .args(["--registry-key", &key])
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
    .expect("the kith binary runs");
    let mut child = KillOnDrop(Some(child));
    let stderr = child
        .0
        .as_mut()
        .and_then(|c| c.stderr.take())
        .expect("stderr was piped");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = lines
        .recv_timeout(WAIT)
        .expect("the daemon warns on stderr");
    assert_eq!(
        line,
        "kith daemon: no address to publish to the registry; listen on a specific address \
         or name an --interface"
    );
    drop(child);
}
