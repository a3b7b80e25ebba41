//! How many frames the engine looks up together ([`super::BATCH`] at most), chosen by
//! timing both sizes on the traffic itself.
//!
//! Why: the best size depends on the host and on the flow table. On the Zen 3 host 32
//! frames beat 16 at a million flows (67–75 against 76–80 ns a packet); on a Zen 4
//! host 16 beat 32 there by 1.15× (`engine_bench`, 9.8–10.3 against 8.4–8.7 Mpps),
//! and at replay's 50,000 flows the two were within the noise (16 took 1.065 and 0.969
//! of 32's CPU in two runs). benches/RESULTS.md has the runs.
//!
//! So every [`RETRIAL_FRAMES`] frames (and at the start) the engine spends
//! [`TRIAL_CALLS`] batch calls alternating the two sizes, each call timed by the
//! core's cycle counter, and keeps the size whose median cycles per frame are lower;
//! 16 only when it is clearly lower ([`MARGIN_PCT`]), since the default was chosen on
//! more hosts. A call costs two counter reads during a trial and a subtraction
//! otherwise. The size never changes what the engine gives, only how fast
//! (`tests/offline/engine_batch.rs`).

/// The sizes tried: the default first.
const SIZES: [usize; 2] = [super::BATCH, super::BATCH / 2];

/// Batch calls in a trial, both sizes together (alternating).
const TRIAL_CALLS: usize = 1024;

/// Frames between trials: the table, and with it the best size, changes as flows come
/// and go.
const RETRIAL_FRAMES: u64 = 1 << 24;

/// The smaller size is kept only when its median is this much lower, in percent.
const MARGIN_PCT: u64 = 3;

/// The chooser. [`LookupBatch::size`] before each batch call, [`LookupBatch::done`]
/// after it.
#[derive(Debug)]
pub(super) struct LookupBatch {
    chosen: usize,
    /// Frames to go before the next trial.
    until_trial: u64,
    /// Cycles per frame (× 256) of the calls of the trial under way, per size; empty
    /// outside trials.
    samples: [Vec<u32>; 2],
    /// The size of the current call during a trial (index into [`SIZES`]).
    trying: usize,
    started: u64,
}

impl LookupBatch {
    pub(super) fn new() -> LookupBatch {
        LookupBatch {
            chosen: SIZES[0],
            until_trial: 0,
            samples: [Vec::new(), Vec::new()],
            trying: 0,
            started: 0,
        }
    }

    /// The size for the next batch call.
    #[inline]
    pub(super) fn size(&mut self) -> usize {
        if self.until_trial > 0 {
            return self.chosen;
        }
        self.trying = (self.samples[0].len() + self.samples[1].len()) % 2;
        self.started = crate::sys::cycles();
        SIZES[self.trying]
    }

    /// Accounts a batch call of `frames` frames made with the last [`Self::size`].
    #[inline]
    pub(super) fn done(&mut self, frames: usize) {
        if self.until_trial > 0 {
            self.until_trial = self.until_trial.saturating_sub(frames as u64);
            return;
        }
        self.record(frames, crate::sys::cycles().wrapping_sub(self.started));
    }

    #[cold]
    fn record(&mut self, frames: usize, spent: u64) {
        if frames > 0 {
            let per_frame = (spent.saturating_mul(256) / frames as u64).min(u32::MAX as u64);
            self.samples[self.trying].push(per_frame as u32);
        }
        if self.samples[0].len() + self.samples[1].len() >= TRIAL_CALLS {
            self.chosen = self.choose();
            self.samples = [Vec::new(), Vec::new()];
            self.until_trial = RETRIAL_FRAMES;
        }
    }

    /// The size of the trial's lower median, the default unless the other is
    /// [`MARGIN_PCT`] lower.
    fn choose(&mut self) -> usize {
        let [a, b] = [0, 1].map(|i| median(&mut self.samples[i]));
        match (a, b) {
            (Some(a), Some(b)) if b * 100 < a * (100 - MARGIN_PCT) => SIZES[1],
            _ => SIZES[0],
        }
    }

    /// The size in use outside trials (tests, stats).
    #[cfg(test)]
    pub(super) fn chosen(&self) -> usize {
        self.chosen
    }
}

fn median(v: &mut [u32]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(u64::from(v[v.len() / 2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a trial in which a call of `size` costs `cost(size)` per frame.
    fn trial(t: &mut LookupBatch, cost: impl Fn(usize) -> u64) {
        for _ in 0..TRIAL_CALLS {
            let size = t.size();
            t.record(64, cost(size) * 64);
        }
    }

    #[test]
    fn the_cheaper_size_is_kept_and_tried_again_later() {
        let mut t = LookupBatch::new();
        trial(&mut t, |size| if size == 16 { 80 } else { 100 });
        assert_eq!(t.chosen(), 16);
        // Until the next trial, no timing: the chosen size, frames counted down.
        for _ in 0..10 {
            assert_eq!(t.size(), 16);
            t.done(64);
        }
        assert_eq!(t.until_trial, RETRIAL_FRAMES - 640);
        t.until_trial = 64;
        t.size();
        t.done(64);
        assert_eq!(t.until_trial, 0, "a trial is due");
        trial(&mut t, |size| if size == 16 { 120 } else { 100 });
        assert_eq!(t.chosen(), 32);
    }

    #[test]
    fn the_default_stays_unless_the_other_is_clearly_cheaper() {
        let mut t = LookupBatch::new();
        trial(&mut t, |size| if size == 16 { 99 } else { 100 });
        assert_eq!(t.chosen(), 32, "1 % is within the margin");
        let mut t = LookupBatch::new();
        trial(&mut t, |_| 100);
        assert_eq!(t.chosen(), 32);
    }

    #[test]
    fn a_trial_alternates_the_sizes() {
        let mut t = LookupBatch::new();
        let sizes: Vec<usize> = (0..6)
            .map(|_| {
                let s = t.size();
                t.done(64);
                s
            })
            .collect();
        assert_eq!(sizes, [32, 16, 32, 16, 32, 16]);
    }
}
