//! The bytes of a mapped window past a batch's records, for the batch's consumer to
//! bring into the cache a few lines at a time while it works on the batch.
//!
//! Why: a mapped capture is in memory, not in the cache, and one core brings it in
//! only as fast as its line fill buffers allow (~16 lines in flight). Requested in a
//! burst by the reader, the lines keep the core waiting on those buffers, and the walk
//! of the file cost a quarter to a third of a mapped replay. Requested a few lines
//! before each frame the engine processes, the same transfers overlap the engine's
//! work (benches/RESULTS.md, "Reading ahead during the engine's work"). A request
//! for a page the kernel has not yet mapped into the process is dropped, so each
//! step first reads a byte of every fault-around block it enters ([`touch_blocks`]).
//! pcap and pcapng alike. pcapng replays took more CPU with it until the touch, most
//! likely for the reason above (dropped requests, whose lines the walk then skipped as
//! requested); with the touch, 0.85 of the CPU they took without it (`ng_blocks`).
//! The `replay --workers` reader steps it too, while it hashes each frame for its
//! engine.

use crate::sys;

/// How far past the end of the records handed on the consumer is given lines to
/// request: about a batch and a half of the benchmark capture's frames (64 of 664
/// bytes on average), so the engine's requests, not the reader's, bring in the next
/// batch. 64 KiB took 0.794 and 0.856 of the CPU of the build before against 0.861
/// and 0.941 for 128 KiB, in two alternating runs (benches/RESULTS.md).
pub(super) const READAHEAD_BYTES: usize = 64 << 10;

/// The kernel's fault-around unit (`fault_around_bytes`, 64 KiB by default): a read
/// fault on a mapped file maps the page-cache pages of the aligned 64 KiB around it, no
/// more. A prefetch of a page not yet mapped is dropped (a hint never faults), so the
/// lines of each such block are requested only once one of its bytes has been read.
const FAULT_AROUND: usize = 64 << 10;

/// Lines still to be requested: `bytes[next..end]`, `per_step` bytes of them a
/// [`Readahead::step`]. Holds the window it was made over, so it cannot outlive it.
#[derive(Debug, Clone, Copy)]
pub struct Readahead<'a> {
    bytes: &'a [u8],
    next: usize,
    end: usize,
    per_step: usize,
}

impl Readahead<'_> {
    /// Nothing to request (a consumer's steps do nothing).
    pub const NONE: Readahead<'static> = Readahead {
        bytes: &[],
        next: 0,
        end: 0,
        per_step: 0,
    };
}

impl<'a> Readahead<'a> {
    /// The lines of `bytes[from..to]`, spread over `steps` steps (whole lines each).
    pub(super) fn over(bytes: &'a [u8], from: usize, to: usize, steps: usize) -> Readahead<'a> {
        let to = to.min(bytes.len());
        if from >= to || steps == 0 {
            return Readahead::NONE;
        }
        let lines = (to - from).div_ceil(64);
        Readahead {
            bytes,
            next: from,
            end: to,
            per_step: lines.div_ceil(steps) * 64,
        }
    }

    /// The offset in the bytes it was made [`over`](Readahead::over) up to which its
    /// lines have been requested.
    pub(super) fn reached(&self) -> usize {
        self.next
    }

    /// The addresses `[next, end)` still to be requested (tests).
    #[cfg(test)]
    pub(super) fn bounds(&self) -> (usize, usize) {
        let base = self.bytes.as_ptr() as usize;
        (base + self.next, base + self.end)
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
        let stop = self.end.min(self.next + self.per_step);
        touch_blocks(self.bytes, self.next, stop);
        let base = self.bytes.as_ptr();
        while self.next < stop {
            sys::prefetch_to_l2(base.wrapping_add(self.next));
            self.next += 64;
        }
    }
}

/// Reads the first byte of each fault-around block that starts in `bytes[from..to]`,
/// so that the kernel maps its pages before their lines are prefetched
/// ([`FAULT_AROUND`]). Without it, on the AMD host on 2026-12-04, the engine's
/// requests for the next 64 KiB mostly fell on pages not yet mapped and were
/// dropped; the reader then waited on nearly every record header, and reading the
/// file ran a fifth faster than mapping it (benches/RESULTS.md).
#[inline(always)]
fn touch_blocks(bytes: &[u8], from: usize, to: usize) {
    let base = bytes.as_ptr() as usize;
    // The first block boundary at or after `from`, by address (blocks are aligned).
    let mut at = (base + from).next_multiple_of(FAULT_AROUND) - base;
    while at < to {
        if let Some(&b) = bytes.get(at) {
            std::hint::black_box(b);
        }
        at += FAULT_AROUND;
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
        assert_eq!(ahead.reached(), 100);
        ahead.step();
        assert_eq!(ahead.reached(), 100 + 512);
        for _ in 0..8 {
            ahead.step();
        }
        assert_eq!(ahead.reached(), 100 + 9 * 512);
        // The last step stops at the end, a line past it at most (whole lines).
        ahead.step();
        let reached = ahead.reached();
        assert!((5_000..5_064).contains(&reached), "{reached}");
        ahead.step();
        assert_eq!(ahead.reached(), reached);
    }

    #[test]
    fn nothing_to_request_when_the_range_is_empty_or_past_the_bytes() {
        let bytes = vec![0u8; 1_000];
        for (from, to, steps) in [(500, 500, 4), (600, 500, 4), (1_000, 5_000, 4), (0, 100, 0)] {
            let mut ahead = Readahead::over(&bytes, from, to, steps);
            ahead.step();
            assert_eq!(ahead.reached(), 0, "{from}..{to} in {steps}");
        }
        // A range past the end is cut at the end.
        let mut ahead = Readahead::over(&bytes, 900, 5_000, 1);
        ahead.step();
        assert_eq!(ahead.reached(), 900 + 128);
        let mut none = Readahead::NONE;
        none.step();
        assert_eq!(none.reached(), 0);
    }

    /// Whether the page at `addr` is in this process's page tables (bit 63 of its
    /// `/proc/self/pagemap` entry, readable without privileges).
    fn mapped(addr: usize) -> bool {
        use std::os::unix::fs::FileExt;
        let pagemap = std::fs::File::open("/proc/self/pagemap").unwrap();
        let mut entry = [0u8; 8];
        let page = crate::sys::page_size();
        pagemap
            .read_exact_at(&mut entry, (addr / page * 8) as u64)
            .unwrap();
        u64::from_le_bytes(entry) >> 63 == 1
    }

    /// Stepping through a freshly mapped file maps every fault-around block it
    /// requests lines of: the prefetches alone would map none (they never fault).
    ///
    /// Blocks past the steps' range are not required to stay unmapped: a fault maps
    /// the whole page-cache folio it lands in, and the kernel (6.18 here) may cache
    /// the file in folios larger than a block. One CI run on 2026-12-04 found the
    /// block right after the range mapped; 30 runs alone did not.
    #[test]
    fn steps_map_the_blocks_they_request() {
        let len = 16 * FAULT_AROUND;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, &vec![7u8; len]).unwrap();
        let changed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let map = crate::sys::FileMapping::new(f.as_file(), 0, len, &changed).unwrap();
        let blocks = |bytes: &[u8]| {
            let base = bytes.as_ptr() as usize;
            (base.next_multiple_of(FAULT_AROUND)..base + bytes.len()).step_by(FAULT_AROUND)
        };
        // Untouched, nothing of the mapping is in the page tables yet.
        assert!(blocks(&map).all(|b| !mapped(b)));
        // The first half, as the engine steps it (two steps a frame of 64 frames).
        let mut ahead = Readahead::over(&map, 0, len / 2, 128);
        while ahead.reached() < len / 2 {
            ahead.step();
        }
        let half = map.as_ptr() as usize + len / 2;
        for b in blocks(&map).filter(|&b| b < half) {
            assert!(mapped(b), "block at {:#x}", b - map.as_ptr() as usize);
        }
    }
}
