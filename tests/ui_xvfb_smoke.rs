//! Start-up smoke test: the real `kith` binary opens its window on an X
//! server (Xvfb, with Mesa's software renderer), unlocks from
//! `KITH_PASSPHRASE`, starts its node (whose control socket then answers
//! `kith status`), and draws something a screenshot can see. Skips with a
//! message where Xvfb or imagemagick is missing, except under `CI=true`
//! (`.ci/run` installs both), where that is a failure.
#![cfg(feature = "gui")]

use kith::account::{Account, KdfParams};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills and reaps a child when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kith-xvfb-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Polls `check` until it holds or `timeout` passes.
fn wait_for(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    check()
}

/// Starts Xvfb on a free display; its number and the process.
fn start_xvfb() -> (u32, Reaped) {
    let first = 200 + std::process::id() % 300;
    for display in first..first + 50 {
        if Path::new(&format!("/tmp/.X{display}-lock")).exists() {
            continue;
        }
        let child = Command::new("Xvfb")
            .arg(format!(":{display}"))
            .args(["-screen", "0", "1024x700x24", "-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb starts");
        let mut xvfb = Reaped(child);
        let socket = format!("/tmp/.X11-unix/X{display}");
        let up = wait_for(Duration::from_secs(30), || {
            Path::new(&socket).exists() || matches!(xvfb.0.try_wait(), Ok(Some(_)))
        });
        if up && matches!(xvfb.0.try_wait(), Ok(None)) {
            return (display, xvfb);
        }
    }
    panic!("no free X display for Xvfb");
}

/// How many colours a screenshot of the whole screen has.
fn screenshot_colours(display: u32, file: &Path) -> usize {
    let taken = Command::new("import")
        .args(["-display", &format!(":{display}"), "-window", "root"])
        .arg(file)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !taken {
        return 0;
    }
    Command::new("convert")
        .arg(file)
        .args(["-format", "%k", "info:"])
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_app_opens_its_window_under_xvfb() {
    let missing: Vec<&str> = ["Xvfb", "import", "convert"]
        .into_iter()
        .filter(|p| !installed(p))
        .collect();
    if !missing.is_empty() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {missing:?} is not installed (.ci/run installs xvfb and imagemagick)"
        );
        eprintln!("skipped: {missing:?} not installed (apt-get install xvfb imagemagick)");
        return;
    }
    let dir = temp_dir("app");
    let data = dir.join("data");
    drop(
        Account::create(&data, "pass phrase", KdfParams::insecure_fast_for_tests())
            .expect("create the account"),
    );
    let runtime = dir.join("xdg");
    std::fs::create_dir_all(&runtime).expect("runtime dir");
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("runtime dir private");

    let (display, _xvfb) = start_xvfb();
    let kith = env!("CARGO_BIN_EXE_kith");
    let app = Command::new(kith)
        .arg("--data")
        .arg(&data)
        // Loopback only, no mDNS: the test sends nothing anywhere else.
        .args(["app", "--listen", "127.0.0.1:0", "--no-mdns"])
        .env("DISPLAY", format!(":{display}"))
        .env("KITH_PASSPHRASE", "pass phrase")
        .env("XDG_RUNTIME_DIR", &runtime)
        .env_remove("WAYLAND_DISPLAY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the app starts");
    let mut app = Reaped(app);

    // Unlocked and the node is up once its control socket answers.
    let socket = data.join(kith::daemon::control::SOCKET_FILE);
    let up = wait_for(Duration::from_secs(60), || {
        socket.exists() || matches!(app.0.try_wait(), Ok(Some(_)))
    });
    if let Ok(Some(status)) = app.0.try_wait() {
        let mut stderr = String::new();
        if let Some(mut pipe) = app.0.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        panic!("the app exited ({status}): {stderr}");
    }
    assert!(up, "the app's node did not start");
    let status = Command::new(kith)
        .arg("--data")
        .arg(&data)
        .arg("status")
        .output()
        .expect("kith status runs");
    assert!(status.status.success(), "kith status failed: {status:?}");
    assert!(String::from_utf8_lossy(&status.stdout).contains("messages_sent"));

    // The window is drawn: the screen is no longer one flat colour.
    let shot = dir.join("screenshot.png");
    let drawn = wait_for(Duration::from_secs(60), || {
        screenshot_colours(display, &shot) >= 8
    });
    assert!(drawn, "nothing was drawn on the X server");
    assert!(
        matches!(app.0.try_wait(), Ok(None)),
        "the app is still running"
    );
    drop(app);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
