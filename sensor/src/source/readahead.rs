//! The bytes of a mapped window past a batch's records, for the batch's consumer to
//! bring into the cache a few lines at a time while it works on the batch.
//!
//! Why: a mapped capture is in memory, not in the cache, and one core brings it in
//! only as fast as its line fill buffers allow (~16 lines in flight). Requested in a
//! burst by the reader, the lines keep the core waiting on those buffers, and the walk
//! of the file cost a quarter to a third of a mapped replay. Requested a few lines
//! before each frame the engine processes, the same transfers overlap the engine's
//! work (benches/RESULTS.md, "Reading ahead during the engine's work"). pcap only:
//! pcapng replays took more CPU with it, for a reason not found (`ng_blocks`).

use crate::sys;

/// How far past the end of the records handed on the consumer is given lines to
/// request: about a batch and a half of the benchmark capture's frames (64 of 664
/// bytes on average), so the engine's requests, not the reader's, bring in the next
/// batch. 64 KiB took 0.794 and 0.856 of the CPU of the build before against 0.861
/// and 0.941 for 128 KiB, in two alternating runs (benches/RESULTS.md).
pub(super) const READAHEAD_BYTES: usize = 64 << 10;

/// Lines still to be requested: `[next, end)`, `per_step` bytes of them a
/// [`Readahead::step`]. Addresses only, never read: a prefetch is a hint that does not
/// fault, so an address past a window's end or of a window since unmapped is harmless.
#[derive(Debug, Clone, Copy)]
pub struct Readahead {
    next: *const u8,
    end: *const u8,
    per_step: usize,
}

impl Readahead {
    /// Nothing to request (a consumer's steps do nothing).
    pub const NONE: Readahead = Readahead {
        next: std::ptr::null(),
        end: std::ptr::null(),
        per_step: 0,
    };

    /// The lines of `bytes[from..to]`, spread over `steps` steps (whole lines each).
    pub(super) fn over(bytes: &[u8], from: usize, to: usize, steps: usize) -> Readahead {
        let to = to.min(bytes.len());
        if from >= to || steps == 0 {
            return Readahead::NONE;
        }
        let lines = (to - from).div_ceil(64);
        let base = bytes.as_ptr();
        Readahead {
            next: base.wrapping_add(from),
            end: base.wrapping_add(to),
            per_step: lines.div_ceil(steps) * 64,
        }
    }

    /// The offset in `bytes` (the slice it was made [`over`](Readahead::over)) up to
    /// which its lines have been requested.
    pub(super) fn reached(&self, bytes: &[u8]) -> usize {
        (self.next as usize).saturating_sub(bytes.as_ptr() as usize)
    }

    /// The addresses `[next, end)` still to be requested (tests).
    #[cfg(test)]
    pub(super) fn bounds(&self) -> (usize, usize) {
        (self.next as usize, self.end as usize)
    }

    /// Requests the next lines, into L2 (the engine's own lookups and flows keep L1).
    #[inline(always)]
    pub fn step(&mut self) {
        if self.next < self.end {
            self.step_some();
        }
    }

    #[inline(always)]
    fn step_some(&mut self) {
        let stop = self.end.min(self.next.wrapping_add(self.per_step));
        while self.next < stop {
            sys::prefetch_to_l2(self.next);
            self.next = self.next.wrapping_add(64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_cover_the_lines_in_order_and_stop_at_the_end() {
        let bytes = vec![0u8; 10_000];
        // 100..5,000: 77 lines over 10 steps, 8 lines (512 bytes) a step.
        let mut ahead = Readahead::over(&bytes, 100, 5_000, 10);
        assert_eq!(ahead.reached(&bytes), 100);
        ahead.step();
        assert_eq!(ahead.reached(&bytes), 100 + 512);
        for _ in 0..8 {
            ahead.step();
        }
        assert_eq!(ahead.reached(&bytes), 100 + 9 * 512);
        // The last step stops at the end, a line past it at most (whole lines).
        ahead.step();
        let reached = ahead.reached(&bytes);
        assert!((5_000..5_064).contains(&reached), "{reached}");
        ahead.step();
        assert_eq!(ahead.reached(&bytes), reached);
    }

    #[test]
    fn nothing_to_request_when_the_range_is_empty_or_past_the_bytes() {
        let bytes = vec![0u8; 1_000];
        for (from, to, steps) in [(500, 500, 4), (600, 500, 4), (1_000, 5_000, 4), (0, 100, 0)] {
            let mut ahead = Readahead::over(&bytes, from, to, steps);
            ahead.step();
            assert_eq!(ahead.reached(&bytes), 0, "{from}..{to} in {steps}");
        }
        // A range past the end is cut at the end.
        let mut ahead = Readahead::over(&bytes, 900, 5_000, 1);
        ahead.step();
        assert_eq!(ahead.reached(&bytes), 900 + 128);
        let mut none = Readahead::NONE;
        none.step();
        assert_eq!(none.reached(&bytes), 0);
    }
}
