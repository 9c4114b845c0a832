//! The desktop app's UI pass, headless (egui_kittest, no rendering): time
//! per frame while scrolling up through a 10 000-message room (pages of 50
//! loaded as the top shows) and while 1 000 messages a second arrive; and
//! the process's resident memory after both. Figures are printed beside
//! the goals of issue 15. The node is the fake backend: what is measured
//! is the window's own work (layout, state), not the store.
//!
//! Not measured here yet: cold start to the first chat frame with a
//! 100 000-message store (it needs the daemon's history API).

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use kith::proto::ids::{MessageId, PeerId, RoomId};
use kith::ui::KithApp;
use kith::ui::backend::{FakeLauncher, Me};
use kith::ui::state::{MessageInfo, PersonInfo, Relation, RoomInfo, Update};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
