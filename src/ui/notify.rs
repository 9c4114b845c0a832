//! Delivering desktop notifications. Which messages are notified is
//! decided by `AppState` (see `state/notify.rs`); this only shows them.
//!
//! [`DesktopNotifier`] sends over D-Bus (`org.freedesktop.Notifications`,
//! through `notify-rust`) from its own thread, through a short queue: the
//! window never waits for a notification server, and when there is none, or
//! it hangs, notifications are skipped silently (and counted). Text from
//! the network is stripped of control and direction-changing characters
//! and its markup escaped (servers read `<a href>` and `<img>` in bodies).

use super::state::Notification;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Shows notifications; `notify` never blocks.
pub trait Notifier: Send + Sync {
    fn notify(&self, notification: Notification);
}

/// Shows nothing (tests, and where notifications are off).
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Notifier for Silent {
    fn notify(&self, _notification: Notification) {}
}

/// Keeps what it was asked to show, for tests.
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    shown: Arc<Mutex<Vec<Notification>>>,
}

impl Recorder {
    /// Everything shown so far, and forgets it.
    pub fn take(&self) -> Vec<Notification> {
        std::mem::take(
            &mut *self
                .shown
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl Notifier for Recorder {
    fn notify(&self, notification: Notification) {
        self.shown
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(notification);
    }
}

/// Notifications waiting for the sending thread; more are dropped.
const QUEUE: usize = 8;
/// After a failure (no notification service), nothing is tried for this long.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(60);

/// What happened to the notifications handed to a [`DesktopNotifier`].
#[derive(Debug, Default)]
pub struct NotifierStats {
    /// Accepted by the notification server.
    pub shown: AtomicU64,
    /// Refused, or no server could be reached (or the sender panicked).
    pub failed: AtomicU64,
    /// Not tried: the queue was full (the server is slow or hangs), or a
    /// failure a moment ago paused sending.
    pub skipped: AtomicU64,
}

/// Sends one notification, blocking; an error is a sentence.
pub type SendFn = Box<dyn Fn(&Notification) -> Result<(), String> + Send>;

/// Desktop notifications over D-Bus, sent from a thread of their own.
pub struct DesktopNotifier {
    queue: Option<SyncSender<Notification>>,
    stats: Arc<NotifierStats>,
}

impl DesktopNotifier {
    /// Notifications through the desktop's notification server.
    pub fn start() -> Self {
        Self::with_sender(Box::new(show_on_desktop))
    }

    /// Notifications through `send` (tests give one that fails or hangs).
    pub fn with_sender(send: SendFn) -> Self {
        let (queue, jobs) = sync_channel(QUEUE);
        let stats = Arc::new(NotifierStats::default());
        let thread_stats = stats.clone();
        let started = std::thread::Builder::new()
            .name("kith-notify".into())
            .spawn(move || run(&jobs, &send, &thread_stats));
        DesktopNotifier {
            // Without the thread every notification is skipped.
            queue: started.ok().map(|_| queue),
            stats,
        }
    }

    /// The counters, shared with the sending thread.
    pub fn stats(&self) -> Arc<NotifierStats> {
        self.stats.clone()
    }
}

impl Notifier for DesktopNotifier {
    fn notify(&self, notification: Notification) {
        let queued = match &self.queue {
            Some(queue) => match queue.try_send(notification) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if !queued {
            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn run(jobs: &Receiver<Notification>, send: &SendFn, stats: &NotifierStats) {
    let mut paused_until: Option<Instant> = None;
    // Ends when the window drops its notifier.
    while let Ok(notification) = jobs.recv() {
        if paused_until.is_some_and(|end| Instant::now() < end) {
            stats.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        // A panic in the D-Bus code must not end notifications for good.
        match catch_unwind(AssertUnwindSafe(|| send(&notification))) {
            Ok(Ok(())) => {
                stats.shown.fetch_add(1, Ordering::Relaxed);
                paused_until = None;
            }
            Ok(Err(_)) | Err(_) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                paused_until = Some(Instant::now() + PAUSE_AFTER_FAILURE);
            }
        }
    }
}

/// Shows `notification` through the desktop's notification server.
fn show_on_desktop(notification: &Notification) -> Result<(), String> {
    notify_rust::Notification::new()
        .appname("kith")
        .summary(&plain(&notification.title))
        .body(&escape_markup(&plain(&notification.body)))
        .show()
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Text without control characters or characters that change the
/// direction of what follows (a peer's name or message could otherwise
/// disguise itself or what comes after it).
pub fn plain(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .filter(|c| !matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
        .collect()
}

/// `text` with the characters notification markup reads escaped, so that
/// a message is shown as written (no link, image or formatting from it).
pub fn escape_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ids::{PeerId, RoomId};
    use std::sync::mpsc::channel;

    fn note(n: u8) -> Notification {
        Notification {
            room: RoomId([n; 32]),
            from: PeerId([n; 32]),
            title: format!("Sam {n}"),
            body: "hi".into(),
        }
    }

    /// Waits (bounded) until `done` holds of the counters.
    fn until(stats: &NotifierStats, done: impl Fn(&NotifierStats) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if done(stats) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn a_hanging_server_never_blocks_the_window() {
        // The sender blocks until the test ends, like a server that never
        // answers: the window's calls still return at once, and what does
        // not fit in the queue is skipped.
        let (release, hang) = channel::<()>();
        let hang = Mutex::new(hang);
        let notifier = DesktopNotifier::with_sender(Box::new(move |_| {
            let _ = hang.lock().map(|h| h.recv());
            Ok(())
        }));
        let started = Instant::now();
        for n in 0..100 {
            notifier.notify(note(n));
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        let stats = notifier.stats();
        // One taken by the thread, QUEUE waiting, the rest skipped.
        assert!(until(&stats, |s| s.skipped.load(Ordering::Relaxed)
            >= 100 - QUEUE as u64 - 1));
        drop(release);
    }

    #[test]
    fn no_service_or_a_panic_is_skipped_silently_and_paused() {
        let notifier = DesktopNotifier::with_sender(Box::new(|n: &Notification| {
            if n.title == "Sam 1" {
                panic!("a bug in the D-Bus code");
            }
            Err("org.freedesktop.Notifications was not provided".into())
        }));
        notifier.notify(note(1));
        let stats = notifier.stats();
        assert!(until(&stats, |s| s.failed.load(Ordering::Relaxed) == 1));
        // Paused after the failure: the next ones are not tried.
        notifier.notify(note(2));
        notifier.notify(note(3));
        assert!(until(&stats, |s| s.skipped.load(Ordering::Relaxed) == 2));
        assert_eq!(stats.failed.load(Ordering::Relaxed), 1);
        assert_eq!(stats.shown.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn shown_ones_are_counted() {
        let (tx, rx) = channel();
        let tx = Mutex::new(tx);
        let notifier = DesktopNotifier::with_sender(Box::new(move |n: &Notification| {
            let _ = tx.lock().map(|tx| tx.send(n.title.clone()));
            Ok(())
        }));
        notifier.notify(note(7));
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).as_deref(),
            Ok("Sam 7")
        );
        assert!(until(&notifier.stats(), |s| s
            .shown
            .load(Ordering::Relaxed)
            == 1));
    }

    #[test]
    fn message_text_cannot_inject_markup_or_reorder_text() {
        let body = "<a href=\"http://evil\">x</a> & <img src=\"file:///etc/passwd\"/>";
        let escaped = escape_markup(body);
        assert!(!escaped.contains('<') && !escaped.contains('>') && !escaped.contains('"'));
        assert_eq!(
            escaped,
            "&lt;a href=&quot;http://evil&quot;&gt;x&lt;/a&gt; &amp; \
             &lt;img src=&quot;file:///etc/passwd&quot;/&gt;"
        );
        assert_eq!(plain("Sam\u{202e}txt.exe\u{7}\n"), "Samtxt.exe  ");
    }
}
