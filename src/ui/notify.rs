//! Delivering desktop notifications. Which messages are notified is
//! decided by `AppState` (see `state/notify.rs`); this only shows them.
//!
//! [`DesktopNotifier`] sends over D-Bus (`org.freedesktop.Notifications`,
//! through `notify-rust`) from its own thread, through a short queue: the
//! window never waits for a notification server, and when there is none, or
//! it hangs, notifications are skipped silently (and counted). Text from
//! the network is stripped of control and direction-changing characters
//! and its markup escaped (servers read `<a href>` and `<img>` in bodies).
//!
//! A click on a notification opens its room: each shown notification is
//! waited on by a short-lived thread of its own (it ends when the server
//! says the notification was clicked or closed), at most
//! [`MAX_WAITING`] at once; past that a notification is shown without the
//! click action. The click is handed to the window through
//! [`Notifier::clicked`], and the window is woken.

use super::state::Notification;
use crate::proto::ids::RoomId;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Shows notifications; `notify` never blocks.
pub trait Notifier: Send + Sync {
    fn notify(&self, notification: Notification);

    /// The rooms whose notification was clicked since the last call,
    /// oldest first.
    fn clicked(&self) -> Vec<RoomId> {
        Vec::new()
    }
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
    clicks: Arc<Mutex<Vec<RoomId>>>,
}

impl Recorder {
    /// As if the user clicked `room`'s notification.
    pub fn click(&self, room: RoomId) {
        self.clicks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(room);
    }

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

    fn clicked(&self) -> Vec<RoomId> {
        std::mem::take(
            &mut *self
                .clicks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// Notifications waiting for the sending thread; more are dropped.
const QUEUE: usize = 8;
/// Shown notifications waited on for a click at once (a thread each).
pub const MAX_WAITING: usize = 4;
/// Clicks kept until the window takes them.
const MAX_CLICKS: usize = 16;
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

/// Sends one notification, blocking; an error is a sentence. A click on
/// it is reported to the [`Clicks`].
pub type SendFn = Box<dyn Fn(&Notification, &Clicks) -> Result<(), String> + Send>;

/// Where clicks on notifications go: kept for the window, which is woken.
#[derive(Clone)]
pub struct Clicks {
    rooms: Arc<Mutex<Vec<RoomId>>>,
    wake: Arc<dyn Fn() + Send + Sync>,
    waiting: Arc<AtomicUsize>,
}

/// A place among the [`MAX_WAITING`] waiters; freed when dropped.
pub struct WaitSlot(Arc<AtomicUsize>);

impl Drop for WaitSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Clicks {
    fn new(wake: Arc<dyn Fn() + Send + Sync>) -> Self {
        Clicks {
            rooms: Arc::default(),
            wake,
            waiting: Arc::default(),
        }
    }

    /// `room`'s notification was clicked: kept (the oldest dropped past
    /// [`MAX_CLICKS`]) and the window woken.
    pub fn report(&self, room: RoomId) {
        {
            let mut rooms = self
                .rooms
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if rooms.len() >= MAX_CLICKS {
                rooms.remove(0);
            }
            rooms.push(room);
        }
        (self.wake)();
    }

    /// A place to wait for a click, unless [`MAX_WAITING`] wait already.
    pub fn slot(&self) -> Option<WaitSlot> {
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_WAITING).then_some(n + 1)
            })
            .ok()
            .map(|_| WaitSlot(self.waiting.clone()))
    }

    fn take(&self) -> Vec<RoomId> {
        std::mem::take(
            &mut *self
                .rooms
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// Desktop notifications over D-Bus, sent from a thread of their own.
pub struct DesktopNotifier {
    queue: Option<SyncSender<Notification>>,
    stats: Arc<NotifierStats>,
    clicks: Clicks,
}

impl DesktopNotifier {
    /// Notifications through the desktop's notification server; `wake`
    /// (typically `ctx.request_repaint()`) is called after a click.
    pub fn start(wake: Arc<dyn Fn() + Send + Sync>) -> Self {
        Self::with_sender_waking(Box::new(show_on_desktop), wake)
    }

    /// Notifications through `send` (tests give one that fails or hangs).
    pub fn with_sender(send: SendFn) -> Self {
        Self::with_sender_waking(send, Arc::new(|| {}))
    }

    fn with_sender_waking(send: SendFn, wake: Arc<dyn Fn() + Send + Sync>) -> Self {
        let (queue, jobs) = sync_channel(QUEUE);
        let stats = Arc::new(NotifierStats::default());
        let thread_stats = stats.clone();
        let clicks = Clicks::new(wake);
        let thread_clicks = clicks.clone();
        let started = std::thread::Builder::new()
            .name("kith-notify".into())
            .spawn(move || run(&jobs, &send, &thread_stats, &thread_clicks));
        DesktopNotifier {
            // Without the thread every notification is skipped.
            queue: started.ok().map(|_| queue),
            stats,
            clicks,
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

    fn clicked(&self) -> Vec<RoomId> {
        self.clicks.take()
    }
}

fn run(jobs: &Receiver<Notification>, send: &SendFn, stats: &NotifierStats, clicks: &Clicks) {
    let mut paused_until: Option<Instant> = None;
    // Ends when the window drops its notifier.
    while let Ok(notification) = jobs.recv() {
        if paused_until.is_some_and(|end| Instant::now() < end) {
            stats.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        // A panic in the D-Bus code must not end notifications for good.
        match catch_unwind(AssertUnwindSafe(|| send(&notification, clicks))) {
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

/// Shows `notification` through the desktop's notification server; a
/// thread of its own waits for a click on it (a server ends the wait when
/// the notification is clicked, dismissed or expires).
fn show_on_desktop(notification: &Notification, clicks: &Clicks) -> Result<(), String> {
    let slot = clicks.slot();
    let mut shown = notify_rust::Notification::new();
    shown
        .appname("kith")
        .summary(&plain(&notification.title))
        .body(&escape_markup(&plain(&notification.body)));
    if slot.is_some() {
        // "default": a click on the notification itself.
        shown.action("default", "Open");
    }
    let handle = shown.show().map_err(|e| e.to_string())?;
    if let Some(slot) = slot {
        let clicks = clicks.clone();
        let room = notification.room;
        // Not started: the handle is dropped and the click goes unheard.
        let _ = std::thread::Builder::new()
            .name("kith-notify-click".into())
            .spawn(move || {
                let _slot = slot;
                handle.wait_for_action(|action| {
                    if action == "default" {
                        clicks.report(room);
                    }
                });
            });
    }
    Ok(())
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
        let deadline = Instant::now() + Duration::from_secs(60);
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
        let notifier = DesktopNotifier::with_sender(Box::new(move |_, _| {
            let _ = hang.lock().map(|h| h.recv());
            Ok(())
        }));
        let started = Instant::now();
        for n in 0..100 {
            notifier.notify(note(n));
        }
        // A call that waited for the hung server at all (even 100 ms each)
        // would take this long; the bound is far above a loaded machine's
        // stalls.
        assert!(started.elapsed() < Duration::from_secs(10));
        let stats = notifier.stats();
        // One taken by the thread, QUEUE waiting, the rest skipped.
        assert!(until(&stats, |s| s.skipped.load(Ordering::Relaxed)
            >= 100 - QUEUE as u64 - 1));
        drop(release);
    }

    #[test]
    fn no_service_or_a_panic_is_skipped_silently_and_paused() {
        let notifier = DesktopNotifier::with_sender(Box::new(|n: &Notification, _: &Clicks| {
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
        let notifier =
            DesktopNotifier::with_sender(Box::new(move |n: &Notification, _: &Clicks| {
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
    fn a_click_reaches_the_window_and_wakes_it() {
        let woken = Arc::new(AtomicUsize::new(0));
        let counter = woken.clone();
        // The server "clicks" each notification at once.
        let notifier = DesktopNotifier::with_sender_waking(
            Box::new(|n: &Notification, clicks: &Clicks| {
                clicks.report(n.room);
                Ok(())
            }),
            Arc::new(move || {
                counter.fetch_add(1, Ordering::Relaxed);
            }),
        );
        notifier.notify(note(3));
        assert!(until(&notifier.stats(), |_| woken.load(Ordering::Relaxed) == 1));
        assert_eq!(notifier.clicked(), [RoomId([3; 32])]);
        assert!(notifier.clicked().is_empty());
    }

    #[test]
    fn waiting_for_clicks_and_kept_clicks_are_bounded() {
        let clicks = Clicks::new(Arc::new(|| {}));
        let slots: Vec<WaitSlot> = (0..MAX_WAITING).filter_map(|_| clicks.slot()).collect();
        assert_eq!(slots.len(), MAX_WAITING);
        // All taken: the next notification is shown without the action.
        assert!(clicks.slot().is_none());
        drop(slots);
        assert!(clicks.slot().is_some());
        for n in 0..100 {
            clicks.report(RoomId([n; 32]));
        }
        let kept = clicks.take();
        assert_eq!(kept.len(), MAX_CLICKS);
        assert_eq!(kept.last(), Some(&RoomId([99; 32])));
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
