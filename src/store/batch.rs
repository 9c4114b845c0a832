//! Adaptive group commit, as pure logic.
//!
//! Every commit costs a WAL write, so committing each received message on its
//! own caps throughput, while always waiting to fill a batch adds latency when
//! the room is quiet. [`CommitBatcher`] does both: when no commit happened in
//! the last `max_delay`, the first write is flushed at once (idle: lowest
//! latency); while commits are frequent, writes are held until `max_batch`
//! are pending or the oldest has waited `max_delay` (load: bigger batches).
//!
//! The batcher owns no clock and no store. The node pushes writes with the
//! current `Instant`, asks [`CommitBatcher::poll_flush`] whether to commit,
//! commits the batch it gets, and only then acknowledges the messages in it.
//! [`CommitBatcher::poll_timeout`] says when to ask again.

use std::time::{Duration, Instant};

/// Tuning of [`CommitBatcher`].
#[derive(Clone, Copy, Debug)]
pub struct BatchConfig {
    /// Flush as soon as this many writes are pending.
    pub max_batch: usize,
    /// Longest a write waits under load before its batch is flushed; also
    /// how long after a flush the batcher still counts as "under load".
    pub max_delay: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch: 512,
            max_delay: Duration::from_millis(2),
        }
    }
}

/// Decides when pending writes are committed. See the module docs.
#[derive(Debug)]
pub struct CommitBatcher<T> {
    config: BatchConfig,
    pending: Vec<T>,
    /// When the pending writes must be flushed at the latest: the arrival
    /// of the first one when idle, `max_delay` later under load.
    deadline: Option<Instant>,
    last_flush: Option<Instant>,
}

impl<T> CommitBatcher<T> {
    /// An empty batcher.
    pub fn new(config: BatchConfig) -> Self {
        Self {
            config,
            pending: Vec::new(),
            deadline: None,
            last_flush: None,
        }
    }

    /// Queues a write that arrived at `now`.
    pub fn push(&mut self, write: T, now: Instant) {
        if self.deadline.is_none() {
            // Idle means nothing was committed within the last `max_delay`:
            // then this write goes out at once, otherwise it waits for company.
            let idle = self
                .last_flush
                .is_none_or(|last| now.saturating_duration_since(last) >= self.config.max_delay);
            self.deadline = Some(if idle {
                now
            } else {
                now + self.config.max_delay
            });
        }
        self.pending.push(write);
    }

    /// Number of writes waiting.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The writes to commit now, or `None` to keep waiting. The caller must
    /// commit the returned batch before acknowledging anything in it.
    pub fn poll_flush(&mut self, now: Instant) -> Option<Vec<T>> {
        let deadline = self.deadline?;
        if now < deadline && self.pending.len() < self.config.max_batch {
            return None;
        }
        self.deadline = None;
        self.last_flush = Some(now);
        Some(std::mem::take(&mut self.pending))
    }

    /// When [`CommitBatcher::poll_flush`] will flush the pending writes at
    /// the latest; `None` when nothing is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }
}

impl<T> Default for CommitBatcher<T> {
    fn default() -> Self {
        Self::new(BatchConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BatchConfig {
        BatchConfig {
            max_batch: 4,
            max_delay: Duration::from_millis(2),
        }
    }

    #[test]
    fn idle_write_is_flushed_at_once() {
        let start = Instant::now();
        let mut batcher = CommitBatcher::new(config());
        assert_eq!(batcher.poll_flush(start), None);
        assert_eq!(batcher.poll_timeout(), None);
        batcher.push(1, start);
        assert_eq!(batcher.poll_flush(start), Some(vec![1]));
        // Quiet for longer than max_delay: idle again, flushed at once.
        let later = start + Duration::from_millis(10);
        batcher.push(2, later);
        assert_eq!(batcher.poll_flush(later), Some(vec![2]));
    }

    #[test]
    fn under_load_writes_wait_for_delay_or_size() {
        let start = Instant::now();
        let mut batcher = CommitBatcher::new(config());
        batcher.push(0, start);
        assert_eq!(batcher.poll_flush(start), Some(vec![0]));

        // Right after a flush: held until max_delay since the oldest.
        let t1 = start + Duration::from_micros(100);
        batcher.push(1, t1);
        batcher.push(2, t1);
        assert_eq!(batcher.poll_flush(t1), None);
        assert_eq!(batcher.poll_timeout(), Some(t1 + Duration::from_millis(2)));
        let t2 = t1 + Duration::from_micros(1999);
        assert_eq!(batcher.poll_flush(t2), None);
        let t3 = t1 + Duration::from_millis(2);
        assert_eq!(batcher.poll_flush(t3), Some(vec![1, 2]));

        // Under load again: the size limit flushes before the delay.
        let t4 = t3 + Duration::from_micros(10);
        for n in 3..6 {
            batcher.push(n, t4);
            assert_eq!(batcher.poll_flush(t4), None);
        }
        batcher.push(6, t4);
        assert_eq!(batcher.poll_flush(t4), Some(vec![3, 4, 5, 6]));
        assert_eq!(batcher.pending(), 0);
        assert_eq!(batcher.poll_timeout(), None);
    }
}
