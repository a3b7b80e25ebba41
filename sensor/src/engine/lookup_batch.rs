//! How the engine looks up a batch's flows: how many frames together ([`super::BATCH`]
//! at most), whether one chunk ahead of the updates, and into which cache level the
//! flows found are requested, chosen by timing the ways on the traffic itself.
//!
//! Why: the best way depends on the host and on the flow table. On the Zen 3 host 32
//! frames beat 16 at a million flows (67–75 against 76–80 ns a packet); on a Zen 4
//! host 16 beat 32 there by 1.15× (`engine_bench`, 9.8–10.3 against 8.4–8.7 Mpps),
//! and at replay's 50,000 flows the two were within the noise (16 took 1.065 and 0.969
//! of 32's CPU in two runs). On the Zen 4 host 8 frames one chunk ahead beat 16 at a
//! million flows by ~7 % (10.6–11.3 against 9.8–10.6 Mpps), and lost 1–7 % at 1,000
//! and 100,000 flows. benches/RESULTS.md has the runs.
//!
//! The cache level: on the Zen 4 host, flows requested into L2 (`prefetcht1`) instead
//! of L1 made the engine 1.15–1.2× faster at 1 M and 4 M flows (`engine_bench`, 13–14
//! against 11–12 Mpps at 1 M), the same at 1,000 and 100,000 flows, and the one-engine
//! replay of the benchmark capture 1.2× slower (its L2 is busy with the file's bytes):
//! each way is tried both ways. On a Zen 5 host the default is the fastest at 1 M and
//! 4 M flows (18.9–19.4 Mpps at 1 M, 32 into L2 18.8, the others 15.8–16.5), and a
//! way two chunks ahead, tried there, the slowest (15.4–16.1), so it is not one.
//!
//! So every [`RETRIAL_FRAMES`] frames (and at the start) the engine spends
//! [`TRIAL_CALLS`] batch calls taking the [`WAYS`] in turn (calls of up to 64 frames:
//! a parsed batch of more is run in calls of 64, `Engine::process_parsed`), each call
//! timed by the core's cycle counter, and keeps the way whose median cycles per frame
//! are lowest; another than the default only when it is clearly lower
//! ([`MARGIN_PCT`]), since the default was chosen on more hosts. A call costs two counter reads during a trial and
//! a subtraction otherwise. The way never changes what the engine gives, only how fast
//! (`tests/offline/engine_batch.rs`).

/// A way to look up a batch's flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Way {
    /// Frames looked up together (a chunk).
    pub size: usize,
    /// Chunk k parsed and looked up before chunk k − 1 is updated.
    pub ahead: bool,
    /// The flows found are requested into the second-level cache (`prefetcht1`), not
    /// the first.
    pub l2: bool,
}

impl Way {
    const fn new(size: usize, ahead: bool, l2: bool) -> Way {
        Way { size, ahead, l2 }
    }
}

/// The ways tried: the default first.
const WAYS: [Way; 6] = [
    Way::new(super::BATCH, false, false),
    Way::new(super::BATCH / 2, false, false),
    Way::new(super::BATCH / 4, true, false),
    Way::new(super::BATCH, false, true),
    Way::new(super::BATCH / 2, false, true),
    Way::new(super::BATCH / 4, true, true),
];

/// Batch calls in a trial, all ways together (in turn).
const TRIAL_CALLS: usize = 1536;

/// Frames between trials: the table, and with it the best way, changes as flows come
/// and go.
const RETRIAL_FRAMES: u64 = 1 << 24;

/// Another way than the default is kept only when its median is this much lower, in
/// percent.
const MARGIN_PCT: u64 = 3;

/// The chooser. [`LookupBatch::way`] before each batch call, [`LookupBatch::done`]
/// after it.
#[derive(Debug)]
pub(super) struct LookupBatch {
    chosen: Way,
    /// Frames to go before the next trial.
    until_trial: u64,
    /// Cycles per frame (× 256) of the calls of the trial under way, per way; empty
    /// outside trials.
    samples: [Vec<u32>; WAYS.len()],
    /// The way of the current call during a trial (index into [`WAYS`]).
    trying: usize,
    started: u64,
}

impl LookupBatch {
    pub(super) fn new() -> LookupBatch {
        LookupBatch {
            chosen: WAYS[0],
            until_trial: 0,
            samples: Default::default(),
            trying: 0,
            started: 0,
        }
    }

    /// The way for the next batch call.
    #[inline]
    pub(super) fn way(&mut self) -> Way {
        if self.until_trial > 0 {
            return self.chosen;
        }
        self.trying = self.calls() % WAYS.len();
        self.started = crate::sys::cycles();
        WAYS[self.trying]
    }

    /// Calls timed so far in the trial under way.
    fn calls(&self) -> usize {
        self.samples.iter().map(Vec::len).sum()
    }

    /// Accounts a batch call of `frames` frames made with the last [`Self::way`].
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
        if self.calls() >= TRIAL_CALLS {
            self.chosen = self.choose();
            self.samples = Default::default();
            self.until_trial = RETRIAL_FRAMES;
        }
    }

    /// The way of the trial's lowest median, the default unless that is [`MARGIN_PCT`]
    /// lower than the default's.
    fn choose(&mut self) -> Way {
        let medians = self.samples.each_mut().map(|s| median(s));
        let Some(default) = medians[0] else {
            return WAYS[0];
        };
        let best = (1..WAYS.len())
            .filter_map(|i| medians[i].map(|m| (m, i)))
            .min();
        match best {
            Some((m, i)) if m * 100 < default * (100 - MARGIN_PCT) => WAYS[i],
            _ => WAYS[0],
        }
    }

    /// The way in use outside trials (tests, stats).
    #[cfg(test)]
    pub(super) fn chosen(&self) -> Way {
        self.chosen
    }

    /// A trial is under way (tests).
    #[cfg(test)]
    pub(super) fn in_trial(&self) -> bool {
        self.until_trial == 0
    }

    /// Frames a trial takes when each call has `frames` of them (tests).
    #[cfg(test)]
    pub(super) const fn trial_frames(frames: usize) -> usize {
        TRIAL_CALLS * frames
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

    /// Runs a trial in which a call of way `w` costs `cost(w)` per frame.
    fn trial(t: &mut LookupBatch, cost: impl Fn(Way) -> u64) {
        for _ in 0..TRIAL_CALLS {
            let way = t.way();
            t.record(64, cost(way) * 64);
        }
    }

    /// A cost of `cheap` for way `i` of [`WAYS`], 100 for the others.
    fn cheaper(i: usize, cheap: u64) -> impl Fn(Way) -> u64 {
        move |w| if w == WAYS[i] { cheap } else { 100 }
    }

    #[test]
    fn the_cheapest_way_is_kept_and_tried_again_later() {
        let mut t = LookupBatch::new();
        trial(&mut t, cheaper(1, 80));
        assert_eq!(t.chosen(), WAYS[1]);
        // Until the next trial, no timing: the chosen way, frames counted down.
        for _ in 0..10 {
            assert_eq!(t.way(), WAYS[1]);
            t.done(64);
        }
        assert_eq!(t.until_trial, RETRIAL_FRAMES - 640);
        t.until_trial = 64;
        t.way();
        t.done(64);
        assert_eq!(t.until_trial, 0, "a trial is due");
        trial(&mut t, |w| match w.ahead {
            true => 70,
            false if w == WAYS[1] => 120,
            false => 100,
        });
        assert_eq!(t.chosen(), WAYS[2]);
        t.until_trial = 0;
        trial(&mut t, cheaper(1, 120));
        assert_eq!(t.chosen(), WAYS[0]);
        // A way into L2 is kept the same way.
        t.until_trial = 0;
        trial(&mut t, cheaper(3, 80));
        assert_eq!((t.chosen(), t.chosen().l2), (WAYS[3], true));
    }

    #[test]
    fn the_default_stays_unless_another_is_clearly_cheaper() {
        let mut t = LookupBatch::new();
        trial(&mut t, cheaper(2, 99));
        assert_eq!(t.chosen(), WAYS[0], "1 % is within the margin");
        let mut t = LookupBatch::new();
        trial(&mut t, |_| 100);
        assert_eq!(t.chosen(), WAYS[0]);
        // Of two cheaper ways, the cheaper.
        let mut t = LookupBatch::new();
        trial(&mut t, |w| {
            if w == WAYS[0] {
                100
            } else if w.ahead {
                85
            } else {
                90
            }
        });
        assert_eq!(t.chosen(), WAYS[2]);
    }

    #[test]
    fn a_trial_takes_the_ways_in_turn() {
        let mut t = LookupBatch::new();
        let ways: Vec<Way> = (0..2 * WAYS.len())
            .map(|_| {
                let w = t.way();
                t.done(64);
                w
            })
            .collect();
        assert_eq!(ways, [WAYS, WAYS].concat());
        assert_eq!(
            WAYS.map(|w| (w.size, w.ahead, w.l2)),
            [
                (32, false, false),
                (16, false, false),
                (8, true, false),
                (32, false, true),
                (16, false, true),
                (8, true, true)
            ]
        );
    }
}
