//! The desktop app, headless (egui_kittest), figures printed beside the
//! goals of issue 15:
//!
//! 1. `cold`: cold start to the first chat frame with a real node and a
//!    100 000-message room, production Argon2id included: the passphrase
//!    is submitted, the store opens, the node starts, the room appears in
//!    the sidebar, it is clicked and its last page is laid out (and then
//!    drawn once by wgpu, a software renderer here). Then the resident
//!    memory with that room open, and where the heap goes (a counting
//!    allocator: live bytes after each step).
//! 2. `scroll`: the UI pass per frame while scrolling up through a
//!    10 000-message room (pages of 50 loaded as the top shows) and while
//!    1 000 messages a second arrive, over the fake backend: what is
//!    measured is the window's own work (layout, state), not the store.
//!
//! Run: `cargo bench --bench gui` (name sections after `--` to run only
//! those). The store of section 1 is built once per run in a temp dir.

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use kith::account::{Account, KdfParams};
use kith::daemon::DaemonConfig;
use kith::proto::crypto::Identity;
use kith::proto::ids::{MessageId, PeerId, RoomId};
use kith::store::Message;
use kith::ui::KithApp;
use kith::ui::backend::{FakeLauncher, InterfaceSource, Me, NodeLauncher};
use kith::ui::state::{HISTORY_PAGE, MessageInfo, PersonInfo, Relation, RoomInfo, Update};
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Counts the heap's live bytes, to tell where memory goes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; the
// counter only adds and subtracts the sizes it was asked for.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// CPU time this process has used (every thread), from getrusage.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    micros(usage.ru_utime) + micros(usage.ru_stime)
}

fn heap_mib() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0)
}

/// Whether the command line asks for `section` (no names: every section).
fn wanted(section: &str) -> bool {
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    named.is_empty() || named.iter().any(|a| a == section)
}

const NOW: u64 = 1_796_148_000_000;
const ROOM: RoomId = RoomId([10; 32]);
const HISTORY: u32 = 10_000;

fn message(i: u32, at: u64) -> MessageInfo {
    let mut id = [7; 32];
    id[..4].copy_from_slice(&i.to_be_bytes());
    let text = if i.is_multiple_of(7) {
        format!(
            "message {i}: a longer one that wraps over more than one line in the chat view, \
             as people write when they explain something"
        )
    } else {
        format!("message {i}")
    };
    MessageInfo {
        room: ROOM,
        from: PeerId([1 + (i % 3) as u8; 32]),
        id: MessageId(id),
        timestamp: at,
        text,
        cursor: None,
        hlc: 0,
        deliveries: None,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn report(what: &str, mut frames: Vec<Duration>) {
    frames.sort();
    let p50 = percentile(&frames, 0.50);
    let p99 = percentile(&frames, 0.99);
    let max = frames.last().copied().unwrap_or_default();
    println!(
        "{what:<44} frames {:>5}  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms  (goal p99 <= 8 ms)",
        frames.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
    );
}

fn resident_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

fn main() {
    // The store is built by a child process (see `cold_start`).
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--build-store") {
        let dir = std::path::PathBuf::from(args.get(at + 1).expect("a directory"));
        match build_store(&dir) {
            Ok(room) => println!("{}", PeerId(room.0).to_hex()),
            Err(error) => {
                eprintln!("{error}");
                std::process::exit(1);
            }
        }
        return;
    }
    if wanted("cold") {
        cold_start();
    }
    if wanted("scroll") {
        scroll_and_arrivals();
    }
}

const PASS: &str = "gui bench passphrase";
const COLD_MESSAGES: u64 = 100_000;

/// Section 1: see the module docs.
fn cold_start() {
    let dir = std::env::temp_dir().join(format!("kith-bench-gui-cold-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let started = Instant::now();
    // In another process, so that what building it left in this one
    // (allocator arenas, the page cache of a second open) counts nowhere.
    let built = std::env::current_exe().and_then(|exe| {
        std::process::Command::new(exe)
            .arg("--build-store")
            .arg(&dir)
            .stderr(std::process::Stdio::inherit())
            .output()
    });
    let room = match built {
        Ok(out) if out.status.success() => {
            match PeerId::from_hex(String::from_utf8_lossy(&out.stdout).trim()) {
                Some(id) => RoomId(id.0),
                None => {
                    println!("cold start: the store builder said no room id");
                    return;
                }
            }
        }
        Ok(out) => {
            println!("cold start: cannot build the store ({})", out.status);
            return;
        }
        Err(error) => {
            println!("cold start: cannot run the store builder: {error}");
            return;
        }
    };
    println!(
        "built a store with {COLD_MESSAGES} messages in one room in {:.1?} (not timed below)",
        started.elapsed()
    );
    let heap_before = heap_mib();
    let rss_before = resident_mib();
    let mut config = DaemonConfig::default();
    config.net.unicast_bind = "127.0.0.1:0".parse().expect("literal address");
    let launcher = Arc::new(NodeLauncher {
        kdf: KdfParams::default(),
        config,
        interfaces: InterfaceSource::Configured,
        saved_choices: None,
    });
    let app = KithApp::new(dir.clone(), launcher);
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1000.0, 660.0))
        .wgpu()
        .build_ui_state(|ui, app: &mut KithApp| app.show(ui), app);
    harness.get_by_label("Passphrase").focus();
    harness.run();
    harness.get_by_label("Passphrase").type_text(PASS);
    harness.run();
    let heap_window = heap_mib();
    let rss_window = resident_mib();

    let deadline = Duration::from_secs(120);
    let t0 = Instant::now();
    let cpu0 = cpu_time();
    harness.get_by_label("Unlock").click();
    // Frames as the window draws them while it waits (the spinner turns).
    let step_until =
        |harness: &mut Harness<'static, KithApp>, done: &dyn Fn(&KithApp) -> bool| -> bool {
            while !done(harness.state()) {
                if t0.elapsed() > deadline {
                    return false;
                }
                harness.step();
                std::thread::sleep(Duration::from_micros(500));
            }
            true
        };
    if !step_until(&mut harness, &|app| app.state().is_some()) {
        println!("cold start: the account did not unlock within {deadline:?}");
        return;
    }
    let unlocked = t0.elapsed();
    let listed = |app: &KithApp| {
        app.state().is_some_and(|s| {
            s.rooms.contains_key(&room) && s.histories.get(&room).is_some_and(|h| h.started)
        })
    };
    if !step_until(&mut harness, &listed) {
        println!("cold start: the room never showed in the sidebar");
        return;
    }
    let shown = t0.elapsed();
    harness.get_by_label("# kitchen").click();
    harness.step();
    let page_open = |app: &KithApp| {
        app.state().is_some_and(|s| {
            s.open == Some(room)
                && s.histories
                    .get(&room)
                    .is_some_and(|h| h.messages.len() >= HISTORY_PAGE)
        })
    };
    if !step_until(&mut harness, &page_open) {
        println!("cold start: the room's last page never showed");
        return;
    }
    // One more frame lays the page out (the click's frame may have run
    // before the page was merged).
    harness.step();
    let first_frame = t0.elapsed();
    let first_frame_cpu = cpu_time().saturating_sub(cpu0);
    let last = format!("message {}", COLD_MESSAGES - 1);
    let drawn = harness.query_by_label_contains(&last).is_some();
    let render = Instant::now();
    let rendered = harness.render().map(|_| render.elapsed());
    let total = t0.elapsed();
    println!(
        "cold start, {COLD_MESSAGES}-message room, production Argon2id: unlocked {:.0} ms, room \
         in sidebar {:.0} ms, first chat frame {:.0} ms{} (goal <= 1000 ms)",
        unlocked.as_secs_f64() * 1e3,
        shown.as_secs_f64() * 1e3,
        first_frame.as_secs_f64() * 1e3,
        if drawn {
            ""
        } else {
            " (its last message not found!)"
        },
    );
    println!(
        "  CPU time of the process for it (every thread; less sensitive to a loaded machine \
         than the wall clock): {:.0} ms",
        first_frame_cpu.as_secs_f64() * 1e3
    );
    match rendered {
        Ok(took) => println!(
            "  + drawing that frame with wgpu (software renderer here): {:.0} ms, total {:.0} ms",
            took.as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e3
        ),
        Err(error) => println!("  (not drawn: {error})"),
    }
    println!(
        "resident memory with that room open: {:.0} MiB (goal <= 150 MB; headless, wgpu \
         test renderer loaded)",
        resident_mib()
    );
    println!(
        "  Rust heap (live bytes; SQLite, OpenSSL and Mesa allocate outside it): {:.1} MiB \
         before the window, {:.1} MiB on the unlock screen, {:.1} MiB with the room open",
        heap_before,
        heap_window,
        heap_mib()
    );
    println!(
        "  resident: {:.0} MiB before the window, {:.0} MiB on the unlock screen",
        rss_before, rss_window
    );
    drop(harness);
    let _ = std::fs::remove_dir_all(&dir);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "  (load average now {}: figures on a shared machine grow with it)",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// An account (production Argon2id) with a group room holding
/// [`COLD_MESSAGES`] messages; the room's id.
fn build_store(dir: &Path) -> Result<RoomId, String> {
    drop(Account::create(dir, PASS, KdfParams::default()).map_err(|e| e.to_string())?);
    let member = Identity::generate(&mut rand::rng()).public();
    let mut config = DaemonConfig::default();
    config.net.unicast_bind = "127.0.0.1:0".parse().expect("literal address");
    let handle = kith::daemon::start(dir, PASS, config).map_err(|e| e.to_string())?;
    // Nobody listens there: the invitation just waits in the outbox.
    handle
        .add_peer(member.clone(), "127.0.0.1:9".parse().expect("literal"))
        .map_err(|e| e.to_string())?;
    let room = handle
        .create_room("kitchen", &[member.peer_id()])
        .map_err(|e| e.to_string())?;
    handle.shutdown().map_err(|e| e.to_string())?;
    let mut account = Account::open(dir, PASS).map_err(|e| e.to_string())?;
    let sender = member.peer_id();
    for first in (0..COLD_MESSAGES).step_by(1_000) {
        let batch: Vec<Message> = (first..first + 1_000)
            .map(|n| Message {
                id: MessageId(*blake3::hash(&n.to_le_bytes()).as_bytes()),
                room,
                sender,
                sender_seq: n + 1,
                timestamp: (NOW - 100_000_000 + n * 1_000) << 16,
                body: format!("message {n}").into_bytes(),
                envelope: vec![b'e'; 300],
            })
            .collect();
        account
            .store
            .insert_messages(&batch)
            .map_err(|e| e.to_string())?;
    }
    Ok(room)
}

/// Section 2: see the module docs.
fn scroll_and_arrivals() {
    let dir = std::env::temp_dir().join(format!("kith-bench-gui-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let launcher = FakeLauncher::new(Me {
        peer: PeerId([0; 32]),
        public_key: "00".repeat(32),
        name: "Robin".into(),
    });
    let app = KithApp::new(dir, launcher.clone()).with_clock(Arc::new(|| NOW), 0);
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1000.0, 660.0))
        .with_max_steps(64)
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
    let fake = launcher.backend().expect("unlocked");
    fake.push(Update::People(
        (1..=3)
            .map(|n| PersonInfo {
                id: PeerId([n; 32]),
                public_key: String::new(),
                name: ["Sam", "Alex", "Kim"][usize::from(n - 1)].into(),
                relation: Relation::Contact,
                online: true,
                last_seen: None,
                muted: None,
            })
            .collect(),
    ));
    fake.push(Update::Rooms(vec![RoomInfo {
        id: ROOM,
        name: "kitchen".into(),
        direct: None,
        admin: Some(PeerId([0; 32])),
        members: (0..4).map(|n| PeerId([n; 32])).collect(),
        muted: None,
        invited: false,
    }]));
    fake.set_history(
        ROOM,
        (0..HISTORY)
            .map(|i| message(i, NOW - 86_400_000 + u64::from(i) * 8_000))
            .collect(),
    );
    harness.run();
    harness.get_by_label("# kitchen").click();
    harness.run();

    // Scrolling up through the whole history, 300 points a frame.
    let mut frames = Vec::new();
    let start = Instant::now();
    while !harness
        .state()
        .state()
        .is_some_and(|s| s.histories.get(&ROOM).is_some_and(|h| h.complete))
    {
        harness.event(egui::Event::PointerMoved(egui::pos2(650.0, 300.0)));
        harness.event(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Point,
            delta: egui::vec2(0.0, 300.0),
            phase: egui::TouchPhase::Move,
            source: egui::MouseWheelSource::Wheel,
            modifiers: egui::Modifiers::NONE,
        });
        let t = Instant::now();
        harness.step();
        frames.push(t.elapsed());
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "scrolling did not reach the beginning"
        );
    }
    let loaded = harness
        .state()
        .state()
        .map_or(0, |s| s.histories[&ROOM].messages.len());
    report(&format!("UI pass, scrolling up {loaded} messages"), frames);

    // 1 000 messages a second arriving, at 60 frames a second, for 3 s.
    let mut frames = Vec::new();
    let mut n = HISTORY;
    for frame in 0..180u32 {
        let due = (frame + 1) * 1000 / 60;
        while n - HISTORY < due {
            fake.push(Update::Received {
                message: message(n, NOW + u64::from(n)),
                muted: false,
            });
            n += 1;
        }
        let t = Instant::now();
        harness.step();
        frames.push(t.elapsed());
    }
    report(
        &format!("UI pass, {} messages arriving at 1000/s", n - HISTORY),
        frames,
    );
    println!(
        "resident memory with the room open, {} messages loaded: {:.0} MiB (goal <= 150 MB)",
        n,
        resident_mib()
    );
}
