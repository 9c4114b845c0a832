//! The sliding replay window of a pairwise direction or a room chain.

use super::error::CryptoError;

/// A sliding window over sequence numbers: accepts each number at most once,
/// in any order, as long as it is no more than [`ReplayWindow::SIZE`] - 1
/// behind the highest number seen.
///
/// Checking and marking are separate so that a packet which fails
/// authentication after the check never moves the window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// One past the highest sequence number marked; 0 when none was.
    pub(super) top: u64,
    /// A ring of `SIZE` bits indexed by `seq % SIZE`: set when that number,
    /// which lies in `top - SIZE .. top`, was seen. Marking is O(1).
    pub(super) bits: Box<[u64; 16]>,
}

impl ReplayWindow {
    /// How many sequence numbers the window spans.
    pub const SIZE: u64 = 1024;

    /// Would `seq` be accepted?
    pub fn check(&self, seq: u64) -> Result<(), CryptoError> {
        if seq >= self.top {
            return Ok(());
        }
        if self.top - seq > Self::SIZE {
            return Err(CryptoError::TooOld);
        }
        if self.bit(seq) {
            Err(CryptoError::Replay)
        } else {
            Ok(())
        }
    }

    /// Records `seq` as received. Call only after the packet authenticated.
    pub fn mark(&mut self, seq: u64) {
        if seq >= self.top {
            // Clear the slots that the window slides over: they held numbers
            // that now fall out of it.
            let advance = seq + 1 - self.top;
            if advance >= Self::SIZE {
                self.bits.fill(0);
            } else {
                for stale in self.top..=seq {
                    self.set_bit(stale, false);
                }
            }
            self.top = seq + 1;
        }
        if self.top - seq <= Self::SIZE {
            self.set_bit(seq, true);
        }
    }

    /// The highest sequence number marked so far, if any.
    pub fn highest(&self) -> Option<u64> {
        self.top.checked_sub(1)
    }

    fn bit(&self, seq: u64) -> bool {
        let slot = seq % Self::SIZE;
        self.bits[(slot / 64) as usize] & (1 << (slot % 64)) != 0
    }

    fn set_bit(&mut self, seq: u64, value: bool) {
        let slot = seq % Self::SIZE;
        let word = &mut self.bits[(slot / 64) as usize];
        if value {
            *word |= 1 << (slot % 64);
        } else {
            *word &= !(1 << (slot % 64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_window_accepts_each_once_in_any_order() {
        let mut window = ReplayWindow::default();
        for seq in [5u64, 3, 9, 4, 0, 1000, 1001, 999] {
            assert_eq!(window.check(seq), Ok(()), "first {seq}");
            window.mark(seq);
            assert_eq!(window.check(seq), Err(CryptoError::Replay), "again {seq}");
        }
        // 1001 is the top; 1001 - 1023 = -22, so 0 is still inside but marked.
        assert_eq!(window.check(0), Err(CryptoError::Replay));
        window.mark(5000);
        assert_eq!(window.check(3000), Err(CryptoError::TooOld));
        assert_eq!(window.check(5000 - 1023), Ok(()));
        assert_eq!(window.check(5000 - 1024), Err(CryptoError::TooOld));
        assert_eq!(window.highest(), Some(5000));
    }
}
